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
# `make up PROXIES=2`: etcd, two proxies deciding failovers as one, HAProxy on 6033 in front.
PROXIES ?= 1
export CONFIG DEMO_ACCOUNTS PROXIES

.PHONY: up down test bench soak cluster-up cluster-down status memtest reshard-demo

# Rows of the table `make reshard-demo` moves (tests/reshard.rs, the ignored test).
RESHARD_ROWS ?= 50000

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

# The proxy's memory during a scattered ORDER BY over a million rows read by a slow client
# (tests/merge_memory.rs, the ignored test); prints the figures.
memtest:
	cargo build --bins
	cargo test --test merge_memory -- --ignored --nocapture

# Online resharding 2 -> 3 shards under writes, a cancelled shrink and the shrink to its end,
# on RESHARD_ROWS rows (tests/reshard.rs, the ignored test); prints the figures.
reshard-demo:
	cargo build --bins
	RESHARD_ROWS=$(RESHARD_ROWS) cargo test --test reshard reshard_demo_large -- --ignored --nocapture

bench:
	if [ -x benches/e2e.sh ]; then benches/e2e.sh; else echo "bench: benches/e2e.sh does not exist yet"; fi

# A soak run against the stack `make up` started: the fund's request mix for SOAK_SECONDS,
# a settlement of yesterday, then the invariants (fails on any violation).
soak:
	fund="$$(scripts/target-dir.sh)/release/fund"
	"$$fund" load --duration $(SOAK_SECONDS)
	"$$fund" settle --date "$$(date -u -d yesterday +%F)"
	"$$fund" check

# Fuzzing: the stable loop over the corpus and random mutations for FUZZ_SECONDS per target
# (tests/fuzz_decoders.rs; `make test` runs it for 2 s each), then, when cargo-fuzz and a
# nightly toolchain are installed, libFuzzer on each target for FUZZ_SECONDS.
FUZZ_SECONDS ?= 60
.PHONY: fuzz
fuzz:
	FUZZ_SECONDS=$(FUZZ_SECONDS) cargo test --release --test fuzz_decoders -- --nocapture
	if cargo +nightly fuzz --version >/dev/null 2>&1; then
		for t in packet_reader handshake_response stmt_execute_params lexer_classifier planner; do
			cargo +nightly fuzz run "$$t" -- -max_total_time=$(FUZZ_SECONDS)
		done
	else
		echo "fuzz: cargo-fuzz (nightly) not installed: ran the stable loop only"
	fi

# Failover chaos runs (issue 11): kill -9 and SIGSTOP of a primary and a switchover, each under
# a recorded write load of CHAOS_LOAD_MS before the fault (the `make test` runs use 1500).
CHAOS_LOAD_MS ?= 20000
.PHONY: chaos-failover
chaos-failover:
	CHAOS_LOAD_MS=$(CHAOS_LOAD_MS) cargo test --test failover -- --nocapture --test-threads=1

# Reads on replicas (issue 11): a simple loop of point selects through the proxy with
# read_from = primary, then replica (tests/replica_reads.rs, the ignored test); prints both
# rates and the share the replicas answered.
.PHONY: replica-reads-loop
replica-reads-loop:
	cargo test --test replica_reads -- --ignored --nocapture
