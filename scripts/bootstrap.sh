#!/usr/bin/env bash
# Brings up (or reuses) PostgreSQL, Redis and RabbitMQ on loopback.
source "$(dirname "$0")/lib.sh"
ensure_infra
