#!/usr/bin/env bash
# Validates the compose files' syntax and merge (no Docker engine needed).
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
command -v docker-compose >/dev/null 2>&1 || apt_install docker-compose
# Placeholder secrets: the files refuse to render without them (as they should).
export OPENWATCH_SECRET_KEY=${OPENWATCH_SECRET_KEY:-compose-validation-only-secret-key-0123456789}
export OPENWATCH_MASTER_KEY=${OPENWATCH_MASTER_KEY:-AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=}
docker-compose -f docker-compose.yml config -q
docker-compose -f docker-compose.yml -f docker-compose.override.yml config -q
log "compose files are valid (base and base+override)"
