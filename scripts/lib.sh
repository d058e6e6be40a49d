#!/usr/bin/env bash
# Shared helpers of the OpenWatch set-up scripts: find or install, then start or reuse,
# PostgreSQL, Redis and RabbitMQ on loopback. Sourced by bootstrap.sh, run.sh and test.sh.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RUN_DIR="$ROOT/.run"
mkdir -p "$RUN_DIR/logs"

log() { printf '\033[1;34m==>\033[0m %s\n' "$*"; }
die() { printf '\033[1;31merror:\033[0m %s\n' "$*" >&2; exit 1; }

is_root() { [ "$(id -u)" -eq 0 ]; }

APT_UPDATED=0
# apt_install PKG... — installs Debian packages when running as root; otherwise explains.
apt_install() {
  if ! is_root; then
    die "missing: $* — install them (sudo apt-get install $*) or run this as root"
  fi
  if [ "$APT_UPDATED" -eq 0 ]; then
    log "apt-get update"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    APT_UPDATED=1
  fi
  log "apt-get install $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# port_open HOST PORT — true when something accepts TCP connections there.
port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

wait_port() {
  local host=$1 port=$2 what=$3 tries=${4:-60}
  for _ in $(seq "$tries"); do port_open "$host" "$port" && return 0; sleep 1; done
  die "$what did not start listening on $host:$port"
}

ensure_postgres() {
  if port_open 127.0.0.1 5432; then log "PostgreSQL already running on 127.0.0.1:5432 — reusing it"; return; fi
  command -v pg_ctlcluster >/dev/null 2>&1 || apt_install postgresql postgresql-contrib
  command -v psql >/dev/null 2>&1 || apt_install postgresql-client
  local version
  version=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n1)
  [ -n "$version" ] || die "PostgreSQL is installed but has no cluster in /etc/postgresql"
  log "starting PostgreSQL $version on 127.0.0.1:5432"
  # Loopback only, and trust for local connections so the dev stack needs no password.
  sed -i "s/^#\?listen_addresses.*/listen_addresses = '127.0.0.1'/" "/etc/postgresql/$version/main/postgresql.conf"
  local hba="/etc/postgresql/$version/main/pg_hba.conf"
  grep -q '^host all all 127.0.0.1/32 trust' "$hba" || sed -i '1i host all all 127.0.0.1/32 trust' "$hba"
  pg_ctlcluster --skip-systemctl-redirect "$version" main start
  wait_port 127.0.0.1 5432 PostgreSQL
}

ensure_redis() {
  if port_open 127.0.0.1 6379; then log "Redis already running on 127.0.0.1:6379 — reusing it"; return; fi
  command -v redis-server >/dev/null 2>&1 || apt_install redis-server
  log "starting Redis on 127.0.0.1:6379"
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save '' --appendonly no \
    --logfile "$RUN_DIR/logs/redis.log"
  wait_port 127.0.0.1 6379 Redis
}

ensure_rabbitmq() {
  if port_open 127.0.0.1 5672; then log "RabbitMQ already running on 127.0.0.1:5672 — reusing it"; return; fi
  command -v rabbitmq-server >/dev/null 2>&1 || apt_install rabbitmq-server
  log "starting RabbitMQ on 127.0.0.1:5672"
  if is_root; then
    mkdir -p /etc/rabbitmq
    grep -qs '^NODE_IP_ADDRESS=127.0.0.1' /etc/rabbitmq/rabbitmq-env.conf \
      || echo 'NODE_IP_ADDRESS=127.0.0.1' >> /etc/rabbitmq/rabbitmq-env.conf
  fi
  rabbitmq-server -detached
  rabbitmqctl await_startup --timeout 120 >/dev/null
  wait_port 127.0.0.1 5672 RabbitMQ
}

ensure_infra() {
  ensure_postgres
  ensure_redis
  ensure_rabbitmq
}

# ensure_sshd_binary — installs OpenSSH's server (and ssh-keygen) when missing. Nothing is
# started: SSH tests run private sshd instances of their own on 127.0.0.x loopback addresses.
ensure_sshd_binary() {
  if [ -x /usr/sbin/sshd ] && command -v ssh-keygen >/dev/null 2>&1; then return; fi
  apt_install openssh-server openssh-client
}

# ensure_sudo — the SSH scan tests log in as an unprivileged user and elevate with `sudo -n`.
ensure_sudo() {
  command -v sudo >/dev/null 2>&1 || apt_install sudo
}

# ensure_cargo_tool BIN INSTALL-ARGS... — installs a cargo tool when missing.
ensure_cargo_tool() {
  local bin=$1; shift
  command -v "$bin" >/dev/null 2>&1 && return
  log "cargo install $*"
  cargo install --locked "$@"
}
