# Developer entry points. `make up` gives a running local stack: MariaDB cluster (2 shards,
# primary + replica each), the proxy on 6033 (admin 6032, HTTP 9033) and, when built, the fund
# app. Everything runtime lives in ./run (gitignored).
SHELL := /bin/bash
.ONESHELL:
# The recipes are scripts: print what they say, not their source.
.SILENT:
.SHELLFLAGS := -euo pipefail -c

# `make up CONFIG=...` runs the proxy with another config (e.g. a cluster on CLUSTER_PORT_PREFIX).
CONFIG ?= config/local.toml
# Accounts `make up` creates the first time.
DEMO_ACCOUNTS ?= 10000
# Seconds of load `make soak` runs against the `make up` stack.
SOAK_SECONDS ?= 120
export CONFIG DEMO_ACCOUNTS

.PHONY: up down test bench soak cluster-up cluster-down status

# The recipes of up and down are scripts/stack.sh: binaries from where cargo put them
# (CARGO_TARGET_DIR honoured), and a failed `up` stops what it started.
up:
	scripts/stack.sh up

down:
	scripts/stack.sh down

status:
	scripts/cluster.sh status

cluster-up:
	scripts/cluster.sh up

cluster-down:
	scripts/cluster.sh down

test:
	scripts/test.sh

bench:
	if [ -x benches/e2e.sh ]; then benches/e2e.sh; else echo "bench: benches/e2e.sh does not exist yet"; fi

# A soak run against the stack `make up` started: the fund's request mix for SOAK_SECONDS,
# a settlement of yesterday, then the invariants (fails on any violation).
soak:
	fund="$$(scripts/target-dir.sh)/release/fund"
	"$$fund" load --duration $(SOAK_SECONDS)
	"$$fund" settle --date "$$(date -u -d yesterday +%F)"
	"$$fund" check

# Failover chaos runs (issue 11): kill -9 and SIGSTOP of a primary and a switchover, each under
# a recorded write load of CHAOS_LOAD_MS before the fault (the `make test` runs use 1500).
CHAOS_LOAD_MS ?= 20000
.PHONY: chaos-failover
chaos-failover:
	CHAOS_LOAD_MS=$(CHAOS_LOAD_MS) cargo test --test failover -- --nocapture --test-threads=1
