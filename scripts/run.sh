#!/usr/bin/env bash
# `make run`: brings up the whole stack on this machine — infrastructure (installed with apt
# when missing and run as root; reused when already running), database migrations, a build,
# then the five services in the background — and prints where everything listens.
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

PROFILE=${PROFILE:-dev}
TARGET_SUBDIR=$([ "$PROFILE" = dev ] && echo debug || echo "$PROFILE")
BIN_DIR="${CARGO_TARGET_DIR:-$ROOT/target}/$TARGET_SUBDIR"

command -v cargo >/dev/null 2>&1 || die "cargo not found: install Rust (https://rustup.rs) first"
command -v curl >/dev/null 2>&1 || apt_install curl ca-certificates
ensure_infra

# Settings: .env (yours, optional) overrides .env.example (the documented defaults).
set -a
# shellcheck disable=SC1091
source "$ROOT/.env.example"
# shellcheck disable=SC1091
[ -f "$ROOT/.env" ] && source "$ROOT/.env"
set +a

"$ROOT/scripts/stop.sh" --quiet

# Keys: from the environment or .env when set; otherwise generated once into
# .run/keys.env (mode 600, git-ignored) so restarts keep sessions and stored credentials.
KEYS_FILE="$RUN_DIR/keys.env"
if [ -z "${OPENWATCH_SECRET_KEY:-}" ] || [ -z "${OPENWATCH_MASTER_KEY:-}" ]; then
  if [ ! -f "$KEYS_FILE" ]; then
    log "generating OPENWATCH_SECRET_KEY and OPENWATCH_MASTER_KEY into $KEYS_FILE"
    (umask 077
     { echo "OPENWATCH_SECRET_KEY=$(head -c 48 /dev/urandom | base64 -w0)"
       echo "OPENWATCH_MASTER_KEY=$(head -c 32 /dev/urandom | base64 -w0)"; } >"$KEYS_FILE")
  fi
  set -a
  # shellcheck disable=SC1090
  source "$KEYS_FILE"
  set +a
fi

log "building (cargo build --profile $PROFILE)"
cargo build --profile "$PROFILE" --bins

log "migrating the database"
"$BIN_DIR/openwatch-migrate" up

# The first administrator: created once; the generated password is printed this one time.
ADMIN_USER=${OPENWATCH_ADMIN_USERNAME:-admin}
ADMIN_OUTPUT=$("$BIN_DIR/openwatch-admin" create-admin --username "$ADMIN_USER" --if-none-exists) \
  || die "creating the first administrator failed"
ADMIN_PASSWORD_LINE=$(grep '^Password' <<<"$ADMIN_OUTPUT" || true)

declare -A ADDR=(
  [api-gateway]=$API_GATEWAY_HTTP_ADDR
  [scan-worker]=$SCAN_WORKER_HTTP_ADDR
  [result-processor]=$RESULT_PROCESSOR_HTTP_ADDR
  [host-monitor]=$HOST_MONITOR_HTTP_ADDR
  [maintenance]=$MAINTENANCE_HTTP_ADDR
)
SERVICES=(api-gateway scan-worker result-processor host-monitor maintenance)

for service in "${SERVICES[@]}"; do
  OPENWATCH_HTTP_ADDR=${ADDR[$service]} nohup "$BIN_DIR/openwatch-$service" \
    >"$RUN_DIR/logs/$service.log" 2>&1 &
  echo $! >"$RUN_DIR/$service.pid"
done

log "waiting for the services to report healthy"
for service in "${SERVICES[@]}"; do
  url="http://${ADDR[$service]}/health"
  healthy=0
  for _ in $(seq 60); do
    if curl -fsS -o /dev/null "$url" 2>/dev/null; then healthy=1; break; fi
    kill -0 "$(cat "$RUN_DIR/$service.pid")" 2>/dev/null || break
    sleep 0.5
  done
  if [ $healthy -eq 0 ]; then
    echo "--- last log lines of $service ($RUN_DIR/logs/$service.log):" >&2
    tail -n 20 "$RUN_DIR/logs/$service.log" >&2 || true
    curl -sS "$url" >&2 || true
    die "$service is not healthy"
  fi
done

echo
echo "OpenWatch is running:"
for service in "${SERVICES[@]}"; do
  printf '  %-17s http://%s   (health: /health, metrics: /metrics, log: .run/logs/%s.log)\n' \
    "$service" "${ADDR[$service]}" "$service"
done
echo
echo "  PostgreSQL  127.0.0.1:5432 (database from OPENWATCH_DATABASE_URL)"
echo "  Redis       127.0.0.1:6379"
echo "  RabbitMQ    127.0.0.1:5672"
echo
if [ -n "$ADMIN_PASSWORD_LINE" ]; then
  echo "First administrator created: user \`$ADMIN_USER\`"
  echo "  ${ADMIN_PASSWORD_LINE}"
  echo "  (shown once; later runs keep the account. Change it with POST /api/auth/password.)"
else
  echo "Administrator account exists already (created on the first run)."
fi
echo "Log in:  curl -s -X POST http://${ADDR[api-gateway]}/api/auth/login -H 'Content-Type: application/json' \\"
echo "           -d '{\"username\":\"$ADMIN_USER\",\"password\":\"<password>\"}'"
echo "API reference: http://${ADDR[api-gateway]}/api/openapi.json (docs/API.md)"
echo
echo "Check:  curl -s http://${ADDR[api-gateway]}/health"
echo "Stop:   make stop"

if [ "${OPENWATCH_DEMO:-1}" != 0 ]; then
  echo
  BIN_DIR="$BIN_DIR" OPENWATCH_ADMIN_USERNAME="$ADMIN_USER" "$ROOT/scripts/demo.sh"
fi
