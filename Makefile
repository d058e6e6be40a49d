# The commands a newcomer types. See README.md.
SHELL := /bin/bash
PROFILE ?= dev

.PHONY: run stop test migrate infra build fmt lint compose-check fuzz-api help

help: ## list the commands
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

run: ## bring up infrastructure, migrate, build and start the five services in the background
	@PROFILE=$(PROFILE) scripts/run.sh

stop: ## stop the services started by `make run` (graceful SIGTERM)
	@scripts/stop.sh

test: ## every CI gate: fmt, clippy, layering guard, schema drift, compose files, all tests
	@scripts/test.sh

migrate: infra ## apply pending database migrations (one shot)
	@set -a; source .env.example; [ -f .env ] && source .env; set +a; \
	  cargo run --quiet -p openwatch-db --bin openwatch-migrate -- up

infra: ## start (or reuse) PostgreSQL, Redis and RabbitMQ on loopback
	@scripts/bootstrap.sh

build: ## build every binary
	cargo build --profile $(PROFILE) --bins

fmt: ## format the code
	cargo fmt --all

lint: ## clippy with warnings as errors, and the layering guard
	cargo clippy --workspace --all-targets -- -D warnings
	@scripts/layering-guard.sh

fuzz-api: ## fuzz every API operation against the OpenAPI document (schemathesis; also part of `make test`)
	@scripts/fuzz-api.sh

compose-check: ## validate docker-compose files (no engine needed)
	@scripts/validate-compose.sh
