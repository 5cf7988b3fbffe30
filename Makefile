# Kazoo pusher in Rust — task runner. `make help` lists the targets; CI runs `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help
CARGO ?= cargo

.PHONY: help build test lint fmt run demo services-up services-down services-status clean bench

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

build: ## Release build: target/release/pusherd and target/release/pusherctl
	$(CARGO) build --release --bins

test: ## Everything: services up, fmt/clippy, unit + integration tests (real RabbitMQ + pouchdb-server)
	scripts/test.sh

lint: ## cargo fmt --check and clippy -D warnings
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt: ## Format the code
	$(CARGO) fmt --all

run: ## Run pusherd in the foreground against the local services
	@eval "$$(scripts/services.sh up)"; \
	  PUSHER_AMQP_URI=$${PUSHER_AMQP_URI:-$$PUSHER_TEST_AMQP_URI} \
	  PUSHER_COUCH_URL=$${PUSHER_COUCH_URL:-$$PUSHER_TEST_COUCH_URL} \
	  $(CARGO) run --release --bin pusherd

demo: ## The whole flow: services, pusherd, a User-Agents rule, a replayed reg_success, before/after
	scripts/demo.sh

bench: ## Benchmark pusherd against raw baselines, scenarios P1–P10 (issues #6, #13); scripts/bench.sh --only p9,p10 for some; table in .run/bench/results.md
	scripts/bench.sh

services-up: ## Start RabbitMQ and pouchdb-server (installing them if needed)
	@scripts/services.sh up >/dev/null

services-down: ## Stop the services that services-up started (only those)
	@scripts/services.sh down

services-status: ## Show the services' status
	@scripts/services.sh status

clean: ## Remove build output and local caches
	$(CARGO) clean
	rm -rf .cache .run
