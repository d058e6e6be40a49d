#!/usr/bin/env bash
# `make test`: every CI gate, in order of cost — format, lints, layering, schema drift,
# compose validation, rule corpus lint, the whole test suite against real PostgreSQL, Redis,
# RabbitMQ and sshd, then schemathesis over the API's OpenAPI document.
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
ensure_infra
ensure_sshd_binary
ensure_sudo
command -v cargo-nextest >/dev/null 2>&1 || ensure_cargo_tool cargo-nextest cargo-nextest

log "cargo fmt --check"
cargo fmt --all --check
log "cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets -- -D warnings
"$ROOT/scripts/layering-guard.sh"
"$ROOT/scripts/check-schema-drift.sh"
"$ROOT/scripts/validate-compose.sh"
log "openwatch rules lint (strict load + every fixture)"
cargo run --quiet -p openwatch-cli -- rules lint --rules "$ROOT/rules"
log "cargo nextest run --workspace"
cargo nextest run --workspace --no-fail-fast
"$ROOT/scripts/fuzz-api.sh"
