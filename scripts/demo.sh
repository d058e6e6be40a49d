#!/usr/bin/env bash
# The first scan `make run` shows (skip with OPENWATCH_DEMO=0): registers this machine as a
# host through the API — reached over a private sshd on 127.0.0.1:${OPENWATCH_DEMO_SSH_PORT:-2222}
# with a freshly generated key for the unprivileged user `openwatch-scan` (sudo without a
# password) — requests a scan, waits for it to go through the queues, and prints the score
# and the top failing rules with their evidence. Idempotent: later runs reuse the host, the
# credential and the sshd host key (all under .run/demo-sshd), and just scan again.
#
# Talks to the API with a 30-minute API token minted by `openwatch-admin create-api-token`
# (audited; kept in a shell variable only). The private key exists in clear only in memory
# and, for the moment ssh-keygen needs, in a mode-700 directory on /dev/shm.
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

API="http://${API_GATEWAY_HTTP_ADDR:?}/api"
BIN_DIR=${BIN_DIR:?}
ADMIN_USER=${OPENWATCH_ADMIN_USERNAME:-admin}
SSH_PORT=${OPENWATCH_DEMO_SSH_PORT:-2222}
SCAN_USER=openwatch-scan
SSHD_DIR="$RUN_DIR/demo-sshd"
HOST_NAME="$(hostname)-local"
command -v python3 >/dev/null 2>&1 || apt_install python3
ensure_sshd_binary
ensure_sudo

json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }

# --- the scan user and a private sshd on loopback --------------------------------------------
if ! id "$SCAN_USER" >/dev/null 2>&1; then
  useradd --create-home --shell /bin/sh "$SCAN_USER"
fi
usermod -p '*' "$SCAN_USER" 2>/dev/null || true   # key login only (`!` would refuse it under UsePAM no)
echo "$SCAN_USER ALL=(ALL) NOPASSWD: ALL" >/etc/sudoers.d/openwatch-scan && chmod 440 /etc/sudoers.d/openwatch-scan
mkdir -p "$SSHD_DIR" /run/sshd && chmod 755 "$SSHD_DIR"
[ -f "$SSHD_DIR/host_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -f "$SSHD_DIR/host_ed25519"
cat >"$SSHD_DIR/sshd_config" <<CONF
Port $SSH_PORT
ListenAddress 127.0.0.1
HostKey $SSHD_DIR/host_ed25519
PidFile $SSHD_DIR/sshd.pid
AuthorizedKeysFile $SSHD_DIR/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
AllowUsers $SCAN_USER
CONF
if ! { [ -f "$SSHD_DIR/sshd.pid" ] && kill -0 "$(cat "$SSHD_DIR/sshd.pid")" 2>/dev/null; }; then
  /usr/sbin/sshd -f "$SSHD_DIR/sshd_config" || die "could not start the demo sshd on 127.0.0.1:$SSH_PORT"
fi

# --- the API --------------------------------------------------------------------------------
TOKEN=$(OPENWATCH_DATABASE_URL="$OPENWATCH_DATABASE_URL" "$BIN_DIR/openwatch-admin" create-api-token \
  --username "$ADMIN_USER" --name make-run-demo --expires-in-minutes 30) || die "could not mint an API token"
call() { curl -sS -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' "$@"; }

HOST_ID=$(call "$API/hosts?name=$HOST_NAME" | json 'd["items"][0]["id"] if d.get("items") else ""')
if [ -z "$HOST_ID" ]; then
  HOST_ID=$(call -X POST "$API/hosts" -d "{\"name\":\"$HOST_NAME\",\"address\":\"127.0.0.1\",\"port\":$SSH_PORT,\"tags\":[\"demo\"]}" \
    | json 'd["id"]') || die "registering this machine failed"
  log "registered this machine as host $HOST_NAME ($HOST_ID)"
fi

# A host credential with a fresh key, unless one exists and its public key is still authorized.
CREDENTIAL_ID=$(call "$API/credentials?host_id=$HOST_ID" | json 'd["items"][0]["id"] if d.get("items") else ""')
if [ -z "$CREDENTIAL_ID" ] || [ ! -s "$SSHD_DIR/authorized_keys" ]; then
  KEY_DIR=$(mktemp -d -p /dev/shm 2>/dev/null || mktemp -d)
  chmod 700 "$KEY_DIR"
  ssh-keygen -q -t ed25519 -N '' -C openwatch-demo -f "$KEY_DIR/key"
  PRIVATE_KEY=$(python3 -c 'import json,sys; print(json.dumps(open(sys.argv[1]).read()))' "$KEY_DIR/key")
  cp "$KEY_DIR/key.pub" "$SSHD_DIR/authorized_keys" && chmod 644 "$SSHD_DIR/authorized_keys"
  rm -rf "$KEY_DIR"
  if [ -z "$CREDENTIAL_ID" ]; then
    call -X POST "$API/credentials" -o /dev/null -w '%{http_code}' -d "{\"name\":\"$HOST_NAME key\",\"scope\":\"host\",\"host_id\":\"$HOST_ID\",\"username\":\"$SCAN_USER\",\"auth_method\":\"private_key\",\"private_key\":$PRIVATE_KEY}" \
      | grep -q '^201$' || die "storing the demo credential failed"
  else
    call -X PUT "$API/credentials/$CREDENTIAL_ID/secret" -o /dev/null -d "{\"username\":\"$SCAN_USER\",\"auth_method\":\"private_key\",\"private_key\":$PRIVATE_KEY}"
  fi
  unset PRIVATE_KEY
fi

# --- a scan through the queues --------------------------------------------------------------
SCAN_ID=$(call -X POST "$API/scans" -d "{\"host_ids\":[\"$HOST_ID\"]}" | json 'd["scan_ids"][0]') || die "requesting a scan failed"
log "scan $SCAN_ID requested; waiting for scan-worker and result-processor"
STATUS=queued
for _ in $(seq 300); do
  SCAN=$(call "$API/scans/$SCAN_ID")
  STATUS=$(json 'd["status"]' <<<"$SCAN")
  case "$STATUS" in completed|failed|cancelled) break ;; esac
  sleep 1
done
case "$STATUS" in
  completed) ;;
  failed) die "the scan failed: $(json 'd.get("failure_reason")' <<<"$SCAN") (logs: .run/logs/scan-worker.log)" ;;
  *) die "the scan did not finish in 5 minutes (status: $STATUS; logs: .run/logs/)" ;;
esac

SCORE=$(json 'round(d["score"], 1) if d.get("score") is not None else "n/a"' <<<"$SCAN")
echo
echo "First scan of this machine ($HOST_NAME): score $SCORE % — $(json '"%s rules" % d.get("progress", {}).get("rules_total", "?")' <<<"$SCAN")"
echo "Top failing rules (worst first):"
call "$API/scans/$SCAN_ID/findings?status=fail&limit=500" | python3 -c '
import json, sys
order = {"critical": 0, "high": 1, "medium": 2, "low": 3, "info": 4}
items = sorted(json.load(sys.stdin)["items"], key=lambda f: (order.get(f["severity"], 9), f["rule_id"]))
for f in items[:10]:
    e = f.get("evidence") or {}
    severity, rule = f["severity"], f["rule_id"]
    source, expected, actual = e.get("source", "?"), e.get("expected") or "", e.get("actual") or ""
    print(f"  [{severity:>8}] {rule}")
    print(f"             examined: {source}")
    if expected or actual:
        print(f"             expected: {expected[:90]}  found: {actual[:90]}")
print(f"  ({len(items)} failing in all)")
'
echo
echo "This host now stays on the adaptive schedule (maintenance dispatches its next scans)."
