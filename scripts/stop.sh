#!/usr/bin/env bash
# `make stop`: stops the services started by `make run` (SIGTERM, so in-flight work
# finishes), waiting up to 30 s each. Infrastructure (PostgreSQL, Redis, RabbitMQ) is left
# running: other things on the machine may use it.
source "$(dirname "$0")/lib.sh"
quiet=${1:-}
for pidfile in "$RUN_DIR"/*.pid; do
  [ -e "$pidfile" ] || continue
  service=$(basename "$pidfile" .pid)
  pid=$(cat "$pidfile")
  if kill -0 "$pid" 2>/dev/null; then
    [ "$quiet" = --quiet ] || log "stopping $service (pid $pid)"
    kill -TERM "$pid"
    for _ in $(seq 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      echo "$service did not stop within 30 s; killing it" >&2
      kill -KILL "$pid" || true
    fi
  fi
  rm -f "$pidfile"
done
# The demo's private sshd (scripts/demo.sh), when it runs.
demo_pid="$RUN_DIR/demo-sshd/sshd.pid"
if [ -f "$demo_pid" ] && kill -0 "$(cat "$demo_pid")" 2>/dev/null; then
  kill -TERM "$(cat "$demo_pid")" || true
  rm -f "$demo_pid"
fi
[ "$quiet" = --quiet ] || log "stopped"
