# idemkit: `make help` lists the targets. `make test` is the test command CI runs.
SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help
GO ?= go

.PHONY: docker-env docker-down lint help test test-integration services-up services-down services-status vet fmt bench demo cluster-up cluster-down cluster-status torture

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  %-18s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

test: ## Run all tests with the race detector, 8 parallel tests a package (most wait on servers and leases); integration tests use the servers in IDEM_* env vars, else skip (fail with IDEM_REQUIRE_SERVERS=1)
	$(GO) test -race -count=1 -parallel 8 -timeout 30m ./...

test-integration: services-up ## Start Cassandra, moto, ministack and Kafka if not running (testenv/), then run all tests against them
	eval "$$(testenv/env.sh)" && $(GO) test -race -count=1 -parallel 8 -timeout 30m ./...

services-up: ## Install and start the real test servers on loopback, no Docker (IDEM_PAXOS_VARIANT=v2 for Paxos v2)
	testenv/up.sh

services-down: ## Stop the servers testenv started
	testenv/down.sh

services-status: ## Show which testenv servers run, where, and their memory
	@testenv/status.sh

cluster-up: ## Start the 3-node Cassandra cluster on 127.0.0.11-13 (testenv/cluster.sh; ~3.3 GiB); its tests run when its env is set
	testenv/cluster.sh start

cluster-down: ## Stop the 3-node Cassandra cluster
	testenv/cluster.sh stop

cluster-status: ## Show the cluster's nodes, their memory, and which peers see them
	@testenv/cluster.sh status || true

torture: services-up ## The torture run at scale (>= 10^5 Do calls across moto, ministack and Cassandra), printing its figures
	eval "$$(testenv/env.sh)" && IDEM_REQUIRE_SERVERS=1 IDEM_TORTURE_SCALE=full $(GO) test -count=1 -timeout 60m -run 'TestTorture(Memstore|DynamoDB|Cassandra)$$' -v ./internal/torture/

vet: ## Run go vet
	$(GO) vet ./...

lint: vet ## Run go vet and staticcheck (fetched from the Go module proxy, pinned)
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...

fmt: ## Format all Go code with gofmt -s
	gofmt -s -w $$(git ls-files '*.go')

bench: ## Run the benchmarks (no tests); dynamo and cassandra run idemkit beside hand-written SDK/driver code, 480 calls a side, against the servers in IDEM_* env vars (else they skip)
	$(GO) test -run '^$$' -bench . -benchmem $$($(GO) list ./... | grep -v -e '/dynamo$$' -e '/cassandra$$')
	$(GO) test -run '^$$' -bench . -benchmem -benchtime 480x -timeout 20m ./dynamo ./cassandra

demo: ## Run the payments demo on the embedded store (DEMOFLAGS=-metrics prints its OpenTelemetry metrics)
	$(GO) run ./examples/payments $(DEMOFLAGS)

.PHONY: localstack-up localstack-down

docker-env: ## With Docker: start Cassandra and moto containers (testenv/docker, a module of its own) and print their env: eval "$(make -s docker-env)"
	cd testenv/docker && $(GO) run .

docker-down: ## Remove the containers of docker-env
	cd testenv/docker && $(GO) run . -down

localstack-up: ## Start LocalStack (DynamoDB) and Cassandra 5.0 in Docker, with idemkit's table and keyspace (localstack/)
	docker compose -f localstack/docker-compose.yml up -d --wait localstack cassandra
	docker compose -f localstack/docker-compose.yml run --rm cassandra-init
	@echo 'export IDEM_DYNAMODB_ENDPOINT=http://127.0.0.1:4566 IDEM_CASSANDRA_HOSTS=127.0.0.1:9042 AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test'

localstack-down: ## Stop the Docker servers of localstack-up and delete their data
	docker compose -f localstack/docker-compose.yml down -v
