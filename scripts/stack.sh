#!/usr/bin/env bash
# The local stack of `make up` / `make down`: the MariaDB cluster (scripts/cluster.sh), the
# proxy on 6033 (admin 6032, HTTP 9033) and, when built, the fund app on 8080.
#
# With PROXIES=N (N >= 2): etcd on 2379, N proxies deciding as one through it (`[coordination]`
# appended to a copy of CONFIG per proxy, run/proxy-I.toml), proxy I on 6033+10*I (admin
# 6032+10*I, HTTP 9033+10*I), and HAProxy on 6033 in front of them: still one address to
# connect to.
#
#   scripts/stack.sh up     build (release), start what is not running yet, seed the fund demo
#   scripts/stack.sh down   stop fund, HAProxy, the proxies, etcd, cluster (what pid files name)
#
# Environment: PROXIES (default 1), CONFIG (proxy config, default config/local.toml), DEMO_ACCOUNTS (accounts seeded
# the first time, default 10000), SHARDPROXY_RUN (pid files, logs, data; default ./run),
# CLUSTER_PORT_PREFIX (see scripts/cluster.sh). The binaries are run from where cargo builds
# them (scripts/target-dir.sh: CARGO_TARGET_DIR and cargo configs are honoured).
#
# An `up` that fails stops what that `up` started (cluster instances, proxy, fund) and nothing
# else: what was already running stays.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
RUN="${SHARDPROXY_RUN:-$ROOT/run}"
CONFIG="${CONFIG:-config/local.toml}"
DEMO_ACCOUNTS="${DEMO_ACCOUNTS:-10000}"
PROXIES="${PROXIES:-1}"
[[ "$PROXIES" =~ ^[1-9]$ ]] || { echo "stack.sh: PROXIES must be 1 to 9" >&2; exit 2; }

die() { echo "stack.sh: $*" >&2; exit 1; }

# stop_pid NAME PIDFILE: SIGTERM, SIGKILL after 15 s; only the pid our pid file names, and only
# while it still is NAME (not a recycled pid).
stop_pid() {
    local name="$1" pidf="$2" pid
    [ -f "$pidf" ] || return 0
    pid="$(cat "$pidf")"
    if grep -qa "$name" /proc/"$pid"/cmdline 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
        echo "stopped $name"
    fi
    rm -f "$pidf"
}

# running NAME PIDFILE: the pid file names a live NAME process.
running() {
    [ -f "$2" ] && grep -qa "$1" /proc/"$(cat "$2")"/cmdline 2>/dev/null
}

# Pid file and log of each program: $RUN/proxy.pid and proxy.log, $RUN/fund.pid and fund.log.
PROXY=(shardproxy "$RUN/proxy.pid" "$RUN/proxy.log")
FUND=(fund "$RUN/fund.pid" "$RUN/fund.log")
# With PROXIES >= 2: etcd, HAProxy, and proxy I as $RUN/proxy-I.pid, proxy-I.log, proxy-I.toml.
ETCD=(etcd "$RUN/etcd.pid" "$RUN/etcd.log")
HAPROXY=(haproxy "$RUN/haproxy.pid" "$RUN/haproxy.log")
ETCD_PORT=2379
ETCD_PEER_PORT=2380

# What this `up` started, stopped again by up_failed if `up` does not get to the end: NAME:PIDFILE
# of the programs, and the file where scripts/cluster.sh writes the instances it started.
STARTED_PROCS=()
CLUSTER_RECORD=""

up_failed() {
    local rc=$? i names=()
    trap - EXIT
    [ $rc -ne 0 ] || exit 0
    [ -z "$CLUSTER_RECORD" ] || mapfile -t names <"$CLUSTER_RECORD"
    if [ ${#STARTED_PROCS[@]} -gt 0 ] || [ ${#names[@]} -gt 0 ]; then
        echo "stack.sh: up failed; stopping what it started: ${STARTED_PROCS[*]} ${names[*]}" >&2
        for ((i = ${#STARTED_PROCS[@]} - 1; i >= 0; i--)); do
            stop_pid "${STARTED_PROCS[$i]%%:*}" "${STARTED_PROCS[$i]#*:}" >&2 || true
        done
        [ ${#names[@]} -eq 0 ] || scripts/cluster.sh down "${names[@]}" >&2 || true
    fi
    [ -z "$CLUSTER_RECORD" ] || rm -f "$CLUSTER_RECORD"
    exit $rc
}

# start_bg NAME PIDFILE LOG CMD...: starts CMD detached unless PIDFILE names a live NAME process.
start_bg() {
    local name="$1" pidf="$2" log="$3"
    shift 3
    if running "$name" "$pidf"; then
        echo "$name already running (pid $(cat "$pidf"))"
        return 0
    fi
    setsid "$@" </dev/null >>"$log" 2>&1 &
    echo $! >"$pidf"
    STARTED_PROCS+=("$name:$pidf")
    echo "started $name (pid $!), log $log"
}

# wait_port PORT NAME PIDFILE LOG: until 127.0.0.1:PORT accepts, at most 30 s; fails early when
# the process PIDFILE names exits.
wait_port() {
    local port="$1" name="$2" pidf="$3" log="$4"
    for _ in $(seq 300); do
        if (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null; then return 0; fi
        # Liveness by pid, not by `running`: just after start_bg the child may not have
        # exec'd its program yet, and its command line is still the shell's.
        if ! kill -0 "$(cat "$pidf")" 2>/dev/null; then
            echo "$name exited before accepting on 127.0.0.1:$port; last log lines:" >&2
            tail -n 30 "$log" >&2 || true
            return 1
        fi
        sleep 0.1
    done
    echo "$name did not accept on 127.0.0.1:$port within 30 s; last log lines:" >&2
    tail -n 30 "$log" >&2 || true
    return 1
}

cmd_up() {
    [ -f "$CONFIG" ] || die "no proxy config $CONFIG"
    local need=()
    command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ] || need+=(mariadb-server mariadb-client)
    if [ "$PROXIES" -gt 1 ]; then
        command -v etcd >/dev/null 2>&1 || need+=(etcd-server etcd-client)
        command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || need+=(haproxy)
    fi
    if [ ${#need[@]} -gt 0 ]; then
        # policy-rc.d 101: installing must not start a system MariaDB (etcd, HAProxy) service.
        if [ ! -e /usr/sbin/policy-rc.d ]; then
            printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
            chmod +x /usr/sbin/policy-rc.d
            trap 'rm -f /usr/sbin/policy-rc.d' EXIT
        fi
        apt-get update && apt-get install -y "${need[@]}"
        rm -f /usr/sbin/policy-rc.d
        trap - EXIT
    fi
    cargo build --release --workspace
    local bin proxy_bin fund_bin
    bin="$(scripts/target-dir.sh)/release"
    proxy_bin="$bin/shardproxy"
    fund_bin="$bin/fund"
    [ -x "$proxy_bin" ] || die "cargo built no $proxy_bin"

    mkdir -p "$RUN"
    CLUSTER_RECORD="$(mktemp "$RUN/.up-started.XXXXXX")"
    # Interrupted (Ctrl-C, SIGTERM) counts as failed: the EXIT trap runs for an exit.
    trap up_failed EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    scripts/cluster.sh up --record "$CLUSTER_RECORD"
    if [ "$PROXIES" -gt 1 ]; then
        up_many "$proxy_bin"
    else
        # Another proxy on 6033 would make the wait below succeed for the wrong process.
        if ! running "${PROXY[@]:0:2}" && (exec 3<>/dev/tcp/127.0.0.1/6033) 2>/dev/null; then
            die "port 6033 is already in use by another process; not starting shardproxy"
        fi
        start_bg "${PROXY[@]}" "$proxy_bin" --config "$CONFIG"
        wait_port 6033 "${PROXY[@]}"
    fi
    # A skeleton binary that ignores its arguments also "succeeds": require real help text.
    if [ -x "$fund_bin" ] && "$fund_bin" serve --help 2>&1 | grep -qi usage; then
        # Schema (idempotent) and, the first time, demo data: accounts, yesterday's yield.
        "$fund_bin" init
        if [ ! -f "$RUN/fund.seeded" ]; then
            "$fund_bin" seed --accounts "$DEMO_ACCOUNTS" --date "$(date -u -d '2 days ago' +%F)"
            "$fund_bin" yield --date "$(date -u -d yesterday +%F)" --per-10k 0.6523
            touch "$RUN/fund.seeded"
        fi
        start_bg "${FUND[@]}" "$fund_bin" serve
        if wait_port 8080 "${FUND[@]}" 2>/dev/null; then
            echo "Fund API: http://127.0.0.1:8080   (e.g. curl http://127.0.0.1:8080/fund/report)"
        else
            echo "fund serve is not listening on 8080; see ${FUND[2]}"
        fi
    else
        echo "fund app: $fund_bin serve not available yet, not started"
    fi
    # Up: nothing to undo any more.
    trap - EXIT INT TERM
    rm -f "$CLUSTER_RECORD"
    echo
    if [ "$PROXIES" -gt 1 ]; then
        echo "Connect:  mysql -h127.0.0.1 -P6033 -uapp -papp fund   (HAProxy in front of $PROXIES proxies)"
        local i
        for i in $(seq "$PROXIES"); do
            echo "Proxy $i:  data $((6033 + 10 * i)), admin mysql -h127.0.0.1 -P$((6032 + 10 * i)) -uadmin -padmin, metrics http://127.0.0.1:$((9033 + 10 * i))/metrics"
        done
        echo "etcd:     etcdctl --endpoints=http://127.0.0.1:$ETCD_PORT get --prefix /shardproxy/"
    else
        echo "Connect:  mysql -h127.0.0.1 -P6033 -uapp -papp fund"
        echo "Admin:    mysql -h127.0.0.1 -P6032 -uadmin -padmin"
        echo "Metrics:  curl http://127.0.0.1:9033/metrics"
    fi
    echo "Stop:     make down"
}

# proxy_config I: CONFIG with proxy I's ports (and state file), plus `[coordination]` on the
# local etcd unless CONFIG has its own.
proxy_config() {
    local i="$1"
    sed -E -e "s/^listen *=.*/listen = \"127.0.0.1:$((6033 + 10 * i))\"/" \
        -e "s/^admin_listen *=.*/admin_listen = \"127.0.0.1:$((6032 + 10 * i))\"/" \
        -e "s/^http_listen *=.*/http_listen = \"127.0.0.1:$((9033 + 10 * i))\"/" \
        -e "s/^(state_file *= *\"[^\"]*)\"/\1.$i\"/" "$CONFIG"
    if ! grep -q '^\[coordination\]' "$CONFIG"; then
        printf '\n# Added by scripts/stack.sh (PROXIES=%s).\n[coordination]\netcd = ["127.0.0.1:%s"]\ncluster = "local"\nname = "proxy-%s"\n' \
            "$PROXIES" "$ETCD_PORT" "$i"
    fi
}

# up_many PROXY_BIN: etcd, PROXIES proxies, HAProxy on 6033 in front of them.
up_many() {
    local proxy_bin="$1" i port servers="" haproxy_bin
    if ! running "${ETCD[@]:0:2}" && (exec 3<>/dev/tcp/127.0.0.1/"$ETCD_PORT") 2>/dev/null; then
        die "port $ETCD_PORT is already in use by another process; not starting etcd"
    fi
    start_bg "${ETCD[@]}" etcd --name=local --data-dir="$RUN/etcd-data" \
        --listen-client-urls="http://127.0.0.1:$ETCD_PORT" \
        --advertise-client-urls="http://127.0.0.1:$ETCD_PORT" \
        --listen-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
        --initial-advertise-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
        --initial-cluster="local=http://127.0.0.1:$ETCD_PEER_PORT"
    wait_port "$ETCD_PORT" "${ETCD[@]}"
    for i in $(seq "$PROXIES"); do
        port=$((6033 + 10 * i))
        local p=(shardproxy "$RUN/proxy-$i.pid" "$RUN/proxy-$i.log")
        if ! running "${p[@]:0:2}" && (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null; then
            die "port $port is already in use by another process; not starting proxy $i"
        fi
        proxy_config "$i" >"$RUN/proxy-$i.toml"
        start_bg "${p[@]}" "$proxy_bin" --config "$RUN/proxy-$i.toml"
        wait_port "$port" "${p[@]}"
        servers+="    server proxy-$i 127.0.0.1:$port check inter 1s"$'\n'
    done
    if ! running "${HAPROXY[@]:0:2}" && (exec 3<>/dev/tcp/127.0.0.1/6033) 2>/dev/null; then
        die "port 6033 is already in use by another process; not starting HAProxy"
    fi
    {
        echo "# Written by scripts/stack.sh: one address (6033) in front of the $PROXIES proxies."
        echo "global"
        echo "    maxconn 4096"
        echo "defaults"
        echo "    mode tcp"
        echo "    timeout connect 2s"
        echo "    timeout client 1h"
        echo "    timeout server 1h"
        echo "listen shardproxy"
        echo "    bind 127.0.0.1:6033"
        echo "    balance leastconn"
        printf '%s' "$servers"
    } >"$RUN/haproxy.cfg"
    haproxy_bin="$(command -v haproxy || echo /usr/sbin/haproxy)"
    start_bg "${HAPROXY[@]}" "$haproxy_bin" -db -f "$RUN/haproxy.cfg"
    wait_port 6033 "${HAPROXY[@]}"
}

cmd_down() {
    local f
    stop_pid "${FUND[@]:0:2}"
    stop_pid "${HAPROXY[@]:0:2}"
    stop_pid "${PROXY[@]:0:2}"
    for f in "$RUN"/proxy-[0-9].pid; do
        if [ -e "$f" ]; then stop_pid shardproxy "$f"; fi
    done
    stop_pid "${ETCD[@]:0:2}"
    scripts/cluster.sh down
}

case "${1:-}" in
    up) cmd_up ;;
    down) cmd_down ;;
    *) echo "usage: $0 up | down" >&2; exit 2 ;;
esac
