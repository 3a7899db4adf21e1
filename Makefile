# idemkit: `make help` lists the targets. `make test` is the test command CI runs.
SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help
GO ?= go

.PHONY: help test test-integration services-up services-down services-status vet fmt bench demo

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  %-18s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

test: ## Run all tests with the race detector; integration tests use the servers in IDEM_* env vars, else skip (fail with IDEM_REQUIRE_SERVERS=1)
	$(GO) test -race -count=1 ./...

test-integration: services-up ## Start Cassandra, moto and ministack if not running (testenv/), then run all tests against them
	eval "$$(testenv/env.sh)" && $(GO) test -race -count=1 ./...

services-up: ## Install and start the real test servers on loopback, no Docker (IDEM_PAXOS_VARIANT=v2 for Paxos v2)
	testenv/up.sh

services-down: ## Stop the servers testenv started
	testenv/down.sh

services-status: ## Show which testenv servers run, where, and their memory
	@testenv/cassandra.sh status || true
	@testenv/moto.sh status || true
	@testenv/ministack.sh status || true

vet: ## Run go vet
	$(GO) vet ./...

fmt: ## Format all Go code with gofmt -s
	gofmt -s -w $$(git ls-files '*.go')

bench: ## Run the benchmarks (no tests)
	$(GO) test -run '^$$' -bench . -benchmem ./...

demo: ## Run the payments demo on the embedded store
	$(GO) run ./examples/payments
