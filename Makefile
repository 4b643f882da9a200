# Developer entry points. `make up` gives a running local stack: MariaDB cluster (2 shards,
# primary + replica each), the proxy on 6033 (admin 6032, HTTP 9033) and, when built, the fund
# app. Everything runtime lives in ./run (gitignored).
SHELL := /bin/bash
.ONESHELL:
# The recipes are scripts: print what they say, not their source.
.SILENT:
.SHELLFLAGS := -euo pipefail -c

RUN := run
PROXY_BIN := target/release/shardproxy
FUND_BIN := target/release/fund
# `make up CONFIG=...` runs the proxy with another config (e.g. a cluster on CLUSTER_PORT_PREFIX).
CONFIG ?= config/local.toml
# Accounts `make up` creates the first time.
DEMO_ACCOUNTS ?= 10000
# Seconds of load `make soak` runs against the `make up` stack.
SOAK_SECONDS ?= 120

.PHONY: up down test bench soak cluster-up cluster-down status

up:
	if ! command -v mariadbd >/dev/null 2>&1 && [ ! -x /usr/sbin/mariadbd ]; then
		# policy-rc.d 101: installing must not start a system MariaDB service.
		if [ ! -e /usr/sbin/policy-rc.d ]; then printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; trap 'rm -f /usr/sbin/policy-rc.d' EXIT; fi
		apt-get update && apt-get install -y mariadb-server mariadb-client
	fi
	cargo build --release --workspace
	scripts/cluster.sh up
	mkdir -p $(RUN)
	# start_bg NAME PIDFILE LOG CMD...: starts CMD detached unless its pid file names a live process.
	start_bg() {
		local name="$$1" pidf="$$2" log="$$3"; shift 3
		if [ -f "$$pidf" ] && grep -qa "$$name" /proc/"$$(cat "$$pidf")"/cmdline 2>/dev/null; then
			echo "$$name already running (pid $$(cat "$$pidf"))"; return 0
		fi
		setsid "$$@" </dev/null >>"$$log" 2>&1 &
		echo $$! >"$$pidf"
		echo "started $$name (pid $$!), log $$log"
	}
	wait_port() {
		local port="$$1" name="$$2" log="$$3"
		for _ in $$(seq 300); do
			if (exec 3<>/dev/tcp/127.0.0.1/$$port) 2>/dev/null; then return 0; fi
			sleep 0.1
		done
		echo "$$name did not accept on 127.0.0.1:$$port within 30 s; last log lines:" >&2
		tail -n 30 "$$log" >&2 || true
		return 1
	}
	# Another proxy on 6033 would make the wait below succeed for the wrong process.
	if ! grep -qa shardproxy /proc/"$$(cat $(RUN)/proxy.pid 2>/dev/null || echo none)"/cmdline 2>/dev/null \
		&& (exec 3<>/dev/tcp/127.0.0.1/6033) 2>/dev/null; then
		echo "port 6033 is already in use by another process; not starting shardproxy" >&2; exit 1
	fi
	start_bg shardproxy $(RUN)/proxy.pid $(RUN)/proxy.log $(PROXY_BIN) --config $(CONFIG)
	wait_port 6033 shardproxy $(RUN)/proxy.log || exit 1
	# A skeleton binary that ignores its arguments also "succeeds": require real help text.
	if [ -x $(FUND_BIN) ] && $(FUND_BIN) serve --help 2>&1 | grep -qi usage; then
		# Schema (idempotent) and, the first time, demo data: accounts, yesterday's yield.
		$(FUND_BIN) init
		if [ ! -f $(RUN)/fund.seeded ]; then
			$(FUND_BIN) seed --accounts $(DEMO_ACCOUNTS) --date "$$(date -u -d '2 days ago' +%F)"
			$(FUND_BIN) yield --date "$$(date -u -d yesterday +%F)" --per-10k 0.6523
			touch $(RUN)/fund.seeded
		fi
		start_bg fund $(RUN)/fund.pid $(RUN)/fund.log $(FUND_BIN) serve
		if wait_port 8080 fund $(RUN)/fund.log 2>/dev/null; then
			echo "Fund API: http://127.0.0.1:8080   (e.g. curl http://127.0.0.1:8080/fund/report)"
		else
			echo "fund serve is not listening on 8080; see $(RUN)/fund.log"
		fi
	else
		echo "fund app: $(FUND_BIN) serve not available yet, not started"
	fi
	echo
	echo "Connect:  mysql -h127.0.0.1 -P6033 -uapp -papp fund"
	echo "Admin:    mysql -h127.0.0.1 -P6032 -uadmin -padmin"
	echo "Metrics:  curl http://127.0.0.1:9033/metrics"
	echo "Stop:     make down"

down:
	# stop_pid NAME PIDFILE: SIGTERM, SIGKILL after 15 s; only the pid our pid file names.
	stop_pid() {
		local name="$$1" pidf="$$2" pid
		[ -f "$$pidf" ] || return 0
		pid="$$(cat "$$pidf")"
		# The pid must still be our program, not a recycled pid.
		if grep -qa "$$name" /proc/"$$pid"/cmdline 2>/dev/null; then
			kill -TERM "$$pid" 2>/dev/null || true
			for _ in $$(seq 150); do kill -0 "$$pid" 2>/dev/null || break; sleep 0.1; done
			kill -KILL "$$pid" 2>/dev/null || true
			echo "stopped $$name"
		fi
		rm -f "$$pidf"
	}
	stop_pid fund $(RUN)/fund.pid
	stop_pid shardproxy $(RUN)/proxy.pid
	scripts/cluster.sh down

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
	$(FUND_BIN) load --duration $(SOAK_SECONDS)
	$(FUND_BIN) settle --date "$$(date -u -d yesterday +%F)"
	$(FUND_BIN) check
