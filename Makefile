# Leadflow. `make help` lists the targets.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
GOTOOL := scripts/gotool
# Every workspace module, as package patterns (go test ./... from the root
# would cover nothing: there is no module here, only go.work).
MODULES = $(shell go list -m -f '{{.Dir}}/...')

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

.PHONY: generate
generate: ## regenerate pkg/gen from proto/ with the pinned plugins
	$(GOTOOL) buf generate

.PHONY: check-generate
check-generate: generate ## fail when the committed generated code is stale
	@if [ -n "$$(git status --porcelain -- pkg/gen)" ]; then \
	  git status --porcelain -- pkg/gen; \
	  echo "pkg/gen is stale: run 'make generate' and commit it"; exit 1; fi

.PHONY: lint
lint: ## buf lint and breaking, gofmt, go vet
	$(GOTOOL) buf lint
	scripts/breaking
	@out=$$(gofmt -l $$(go list -m -f '{{.Dir}}')); if [ -n "$$out" ]; then echo "gofmt: $$out"; exit 1; fi
	go vet $(MODULES)
	bash deploy/check.sh

.PHONY: test
test: check-generate lint ## every test of every module, with -race
	@# Built before the clock starts: devstack's test runs the printed nats commands.
	GOWORK=off go -C tools/nats tool -n nats >/dev/null
	go test -race -count=1 -timeout 15m $(MODULES)

.PHONY: run
run: ## the whole system on this machine with demo data (RUN_FLAGS=-port-offset 50 ...)
	go run ./services/devstack $(RUN_FLAGS)

.PHONY: bench
bench: ## throughput and latency, as ratios to raw JetStream in the same run (BENCH_FLAGS=-sync-always ...)
	go run ./services/bench $(BENCH_FLAGS)

.PHONY: chaos
chaos: ## intake to nurture and the projector, two replicas a service, sales working the leads, under kill -9 and server restarts, then every lead checked (CHAOS_FLAGS=-chaos 5m ...)
	go run ./services/bench $(or $(CHAOS_FLAGS),-chaos 2m)

.PHONY: fuzz
fuzz: ## every fuzz target for FUZZTIME each (default 1m); make test replays their seeds only
	scripts/fuzz

.PHONY: tidy
tidy: ## go mod tidy in every module (not tools/nats: natscli's tests import a module the proxy no longer serves)
	for d in pkg services tools tools/buf; do (cd $$d && GOWORK=off go mod tidy); done
