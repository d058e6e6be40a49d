#!/usr/bin/env bash
# Fails when crates/db/src/schema.rs differs from what `diesel print-schema` generates for
# the migrations in migrations/.
#
# Creates a scratch database, applies every migration with diesel_cli (installed if
# missing), prints the schema, diffs it against the committed file and drops the database.
# Exit 0: no drift. Exit 1: drift (the diff is printed). Exit 2: setup failure.
#
# Environment:
#   OPENWATCH_TEST_DATABASE_URL  server to use (any database on it; default
#                                postgres://postgres@127.0.0.1:5432/postgres)
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

base_url="${OPENWATCH_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
schema_file="crates/db/src/schema.rs"

if ! command -v diesel >/dev/null 2>&1; then
    echo "diesel_cli not found; installing it (needs libpq-dev)…" >&2
    cargo install diesel_cli --no-default-features --features postgres --locked >&2 || exit 2
    export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
fi
if ! command -v psql >/dev/null 2>&1; then
    echo "psql not found (install postgresql-client)" >&2
    exit 2
fi

# Same server, scratch database name: replace the path of the URL (keep any ?query).
scratch_db="openwatch_schema_drift_$$_$(date +%s)"
server="${base_url%%\?*}"
query=""
if [[ "$base_url" == *\?* ]]; then query="?${base_url#*\?}"; fi
server="${server%/*}"
scratch_url="${server}/${scratch_db}${query}"

generated="$(mktemp)"
cleanup() {
    rm -f "$generated"
    psql "$base_url" -v ON_ERROR_STOP=1 -qc "DROP DATABASE IF EXISTS \"${scratch_db}\" WITH (FORCE)" \
        >/dev/null 2>&1 || echo "warning: could not drop scratch database ${scratch_db}" >&2
}
trap cleanup EXIT

psql "$base_url" -v ON_ERROR_STOP=1 -qc "CREATE DATABASE \"${scratch_db}\"" || exit 2

# --locked-schema would compare too, but we want the diff and must not rewrite the file:
# point print_schema elsewhere by running print-schema explicitly.
DATABASE_URL="$scratch_url" diesel migration run --migration-dir migrations \
    --config-file /dev/null >/dev/null || { echo "migrations failed to apply" >&2; exit 2; }
DATABASE_URL="$scratch_url" diesel print-schema --config-file diesel.toml >"$generated" || exit 2

if diff -u --label "$schema_file (committed)" --label "$schema_file (generated)" \
    "$schema_file" "$generated"; then
    echo "schema.rs is up to date with the migrations"
else
    echo >&2
    echo "schema drift: regenerate with scripts/check-schema-drift.sh's steps or" >&2
    echo "  DATABASE_URL=<migrated db> diesel print-schema > $schema_file" >&2
    exit 1
fi
