#!/usr/bin/env bash
# Validates the compose files' syntax and merge (no Docker engine needed).
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
command -v docker-compose >/dev/null 2>&1 || apt_install docker-compose
docker-compose -f docker-compose.yml config -q
docker-compose -f docker-compose.yml -f docker-compose.override.yml config -q
log "compose files are valid (base and base+override)"
