#!/usr/bin/env bash
# The layering guard: the domain crates must stay free of infrastructure dependencies
# (ARCHITECTURE §2). Fails listing any forbidden crate found in their normal dependency tree.
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
forbidden='^(diesel|diesel-async|diesel_migrations|lapin|actix-web|redis|deadpool-redis|tokio-postgres)$'
status=0
for crate in openwatch-common openwatch-engine; do
  [ -f "crates/${crate#openwatch-}/Cargo.toml" ] || continue
  found=$(cargo tree -p "$crate" -e normal --prefix none --format '{p}' | awk '{print $1}' | sort -u | grep -E "$forbidden" || true)
  if [ -n "$found" ]; then
    echo "layering violation: $crate depends on: $(echo $found)" >&2
    status=1
  else
    log "layering guard: $crate is free of database, broker, HTTP and cache crates"
  fi
done
exit $status
