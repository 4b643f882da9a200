#!/usr/bin/env bash
# A local MariaDB cluster for shardproxy: N shards, each a primary and one GTID replica with
# semi-sync, everything (datadirs, sockets, pid files, logs) under ./run/.
#
#   scripts/cluster.sh up [--shards N] [--record FILE]
#                                        start (or complete) the cluster, default 2 shards;
#                                        appends the name of every instance this call starts
#                                        to FILE (scripts/stack.sh stops them if it fails later)
#   scripts/cluster.sh status            show every instance, its replication and semi-sync
#   scripts/cluster.sh down [NAME...]    stop exactly the instances `up` started (pid files),
#                                        or only the named ones (e.g. s1-primary)
#   scripts/cluster.sh clean             down, then delete the instances' data (keeps template)
#
# An `up` that fails stops the instances it started itself (not those already running).
#
# Ports: shard sK primary 33K1, replica 33K2 (s1 3311/3312, s2 3321/3322, ...).
# CLUSTER_PORT_PREFIX=43 (with SHARDPROXY_RUN=<other dir>) runs a second cluster on 43K1/43K2
# beside one already on 33xx (config/local.toml assumes 33). A port answered by a server
# that is not ours is an error, never silently used.
# Users on every instance: app/app (ALL), repl/repl (replication), root without password
# from 127.0.0.1. Database `fund` exists everywhere.
#
# Fast and idempotent: one template datadir is made once with mariadb-install-db (users and the
# fund database baked in by scripts/mariadb-init.sql) and copied per instance; running
# instances are left alone; replication is configured only where it is missing.
# The system MariaDB (3306, /etc/mysql/my.cnf) is never read or touched: every mariadbd and
# mariadb call here uses its own defaults file or --no-defaults.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RUN="${SHARDPROXY_RUN:-$ROOT/run}"
INIT_SQL="$ROOT/scripts/mariadb-init.sql"
START_TIMEOUT="${CLUSTER_START_TIMEOUT:-60}"
PORT_PREFIX="${CLUSTER_PORT_PREFIX:-33}"

die() { echo "cluster.sh: $*" >&2; exit 1; }

command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ] || die "mariadbd not found (apt-get install mariadb-server)"
MARIADBD="$(command -v mariadbd || echo /usr/sbin/mariadbd)"
command -v mariadb >/dev/null 2>&1 || die "mariadb client not found (apt-get install mariadb-client)"

# Runs SQL on an instance as root over TCP; -N -B for machine-readable output.
sql() {
    local port="$1"; shift
    mariadb --no-defaults --protocol=tcp -h127.0.0.1 -P"$port" -uroot -N -B "$@"
}

# The port of instance sK-primary / sK-replica.
port_of() {
    local shard="$1" role="$2"
    if [ "$role" = primary ]; then echo "${PORT_PREFIX}${shard}1"; else echo "${PORT_PREFIX}${shard}2"; fi
}

# The pid of the instance in dir $1 if it runs, else fails. The server's pid file, or the pid
# `up` launched (a server that has not written its pid file yet); either must really be our
# mariadbd (its command line names our defaults file), so a recycled pid is never trusted.
our_pid() {
    local dir="$1" f pid
    for f in "$dir/mysqld.pid" "$dir/launch.pid"; do
        pid="$(cat "$f" 2>/dev/null)" || continue
        [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || continue
        # No pipeline here: under pipefail, grep -q closing early would fail the writer (SIGPIPE).
        if grep -qaF -- "--defaults-file=$dir/my.cnf" "/proc/$pid/cmdline" 2>/dev/null; then
            echo "$pid"
            return 0
        fi
    done
    return 1
}

# Is the instance in dir $1 running?
alive() {
    our_pid "$1" >/dev/null
}

# Creates the template datadir once per MariaDB version; built aside and renamed so an
# interrupted run never leaves a half-made template behind.
template() {
    local version tpl tmp
    version="$("$MARIADBD" --version | awk '{print $3}')"
    tpl="$RUN/template-$version"
    if [ ! -d "$tpl" ]; then
        tmp="$RUN/template.tmp.$$"
        rm -rf "$tmp"
        mkdir -p "$RUN"
        local userarg=()
        [ "$(id -u)" = 0 ] && userarg=(--user=root)
        if ! mariadb-install-db --no-defaults "${userarg[@]}" --datadir="$tmp" \
            --auth-root-authentication-method=normal --skip-test-db --skip-name-resolve \
            --innodb-log-file-size=8M --innodb-buffer-pool-size=64M \
            --extra-file="$INIT_SQL" >"$RUN/template-install.log" 2>&1; then
            cat "$RUN/template-install.log" >&2
            rm -rf "$tmp"
            die "mariadb-install-db failed"
        fi
        mv "$tmp" "$tpl"
    fi
    echo "$tpl"
}

# Writes the instance's defaults file. server_id = 10*shard + (1 primary | 2 replica).
write_cnf() {
    local dir="$1" port="$2" server_id="$3"
    {
        echo "[mariadbd]"
        echo "datadir=$dir/data"
        echo "socket=$dir/mysqld.sock"
        echo "pid-file=$dir/mysqld.pid"
        echo "log-error=$dir/error.log"
        echo "port=$port"
        echo "bind-address=127.0.0.1"
        [ "$(id -u)" = 0 ] && echo "user=root"
        cat <<EOF
server_id=$server_id
log_bin=mysql-bin
binlog_format=ROW
log_slave_updates=ON
gtid_strict_mode=ON
max_allowed_packet=64M
local_infile=1
skip-name-resolve
innodb_buffer_pool_size=64M
innodb_log_file_size=8M
character-set-server=utf8mb4
collation-server=utf8mb4_general_ci
# Semi-sync both ways so a promoted replica keeps it; AFTER_SYNC so an acknowledged commit is
# on the replica before any client sees it; a short timeout so a dead replica only stalls a
# commit for one second before the primary falls back to asynchronous replication.
rpl_semi_sync_master_enabled=ON
rpl_semi_sync_slave_enabled=ON
rpl_semi_sync_master_timeout=1000
rpl_semi_sync_master_wait_point=AFTER_SYNC
EOF
    } >"$dir/my.cnf"
}

# Starts one instance in the background (no wait). Creates it from the template if new.
start_instance() {
    local shard="$1" role="$2" tpl="$3" dir port sid
    dir="$RUN/s$shard-$role"
    port="$(port_of "$shard" "$role")"
    if [ "$role" = primary ]; then sid=$((shard * 10 + 1)); else sid=$((shard * 10 + 2)); fi
    if alive "$dir"; then
        return 0
    fi
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        die "port $port (s$shard-$role) is already in use by another process; see CLUSTER_PORT_PREFIX"
    fi
    mkdir -p "$dir"
    if [ ! -d "$dir/data" ]; then
        cp -a "$tpl" "$dir/data.tmp"
        mv "$dir/data.tmp" "$dir/data"
    fi
    write_cnf "$dir" "$port" "$sid"
    rm -f "$dir/mysqld.pid"
    # setsid: the server must outlive this script and not get the terminal's signals.
    setsid "$MARIADBD" --defaults-file="$dir/my.cnf" </dev/null >>"$dir/stdout.log" 2>&1 &
    echo $! >"$dir/launch.pid"
    LAUNCHED+=("s$shard-$role")
    [ -z "$RECORD" ] || echo "s$shard-$role" >>"$RECORD"
    echo "started s$shard-$role on 127.0.0.1:$port"
}

# Waits until the instance accepts SQL; shows its error log on timeout.
wait_instance() {
    local shard="$1" role="$2" dir port deadline
    dir="$RUN/s$shard-$role"
    port="$(port_of "$shard" "$role")"
    deadline=$((SECONDS + START_TIMEOUT))
    # Answering is not enough: the server on the port must be ours (our datadir).
    until [ "$(sql "$port" -e 'SELECT @@datadir' 2>/dev/null)" = "$dir/data/" ]; do
        local launched
        launched="$(cat "$dir/launch.pid" 2>/dev/null || true)"
        if [ -n "$launched" ] && ! kill -0 "$launched" 2>/dev/null; then
            echo "--- $dir/error.log (last 30 lines)" >&2
            tail -n 30 "$dir/error.log" >&2 || true
            die "s$shard-$role exited during startup (port $port)"
        fi
        if [ $SECONDS -ge $deadline ]; then
            echo "--- $dir/error.log (last 30 lines)" >&2
            tail -n 30 "$dir/error.log" >&2 || true
            die "s$shard-$role did not accept connections on port $port within ${START_TIMEOUT}s"
        fi
        sleep 0.1
    done
}

# Field $2 of SHOW SLAVE STATUS on port $1 (empty if replication is not configured).
slave_field() {
    mariadb --no-defaults --protocol=tcp -h127.0.0.1 -P"$1" -uroot -e 'SHOW SLAVE STATUS\G' 2>/dev/null |
        awk -F': ' -v f="$2" '$1 ~ "^ *"f"$" {print $2}'
}

# Points the replica at its primary (GTID, slave_pos) unless already configured, then waits
# until its IO thread is connected.
setup_replication() {
    local shard="$1" pport rport deadline
    pport="$(port_of "$shard" primary)"
    rport="$(port_of "$shard" replica)"
    if [ -z "$(slave_field "$rport" Master_Host)" ]; then
        sql "$rport" -e "CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT=$pport,
            MASTER_USER='repl', MASTER_PASSWORD='repl', MASTER_USE_GTID=slave_pos,
            MASTER_CONNECT_RETRY=1; START SLAVE;"
    elif [ "$(slave_field "$rport" Slave_IO_Running)" = No ] || [ "$(slave_field "$rport" Slave_SQL_Running)" = No ]; then
        sql "$rport" -e "START SLAVE" || true
    fi
    # Not in my.cnf: a promoted replica must stay writable across restarts. The app user has
    # ALL (READ_ONLY ADMIN) and is not stopped by it: it marks the role for humans and tools.
    sql "$rport" -e "SET GLOBAL read_only=ON"
    deadline=$((SECONDS + START_TIMEOUT))
    until [ "$(slave_field "$rport" Slave_IO_Running)" = Yes ] && [ "$(slave_field "$rport" Slave_SQL_Running)" = Yes ]; do
        if [ $SECONDS -ge $deadline ]; then
            sql "$rport" -e 'SHOW SLAVE STATUS\G' >&2 || true
            die "s$shard-replica: replication from port $pport did not start"
        fi
        sleep 0.1
    done
}

# Instances this `up` started (names), and the file it also writes them to (--record).
LAUNCHED=()
RECORD=""

# EXIT trap of `up`: on failure, stop the instances this call started, so a failed `up`
# leaves nothing of its own running.
up_failed() {
    local rc=$?
    if [ $rc -ne 0 ] && [ ${#LAUNCHED[@]} -gt 0 ]; then
        echo "cluster.sh: up failed; stopping what it started: ${LAUNCHED[*]}" >&2
        cmd_down "${LAUNCHED[@]}" >&2 || true
    fi
    exit $rc
}

cmd_up() {
    local shards=2
    while [ $# -gt 0 ]; do
        case "$1" in
            --shards) shards="${2:?--shards needs a number}"; shift 2 ;;
            --shards=*) shards="${1#--shards=}"; shift ;;
            --record) RECORD="${2:?--record needs a file}"; shift 2 ;;
            --record=*) RECORD="${1#--record=}"; shift ;;
            *) die "up: unknown argument $1" ;;
        esac
    done
    trap up_failed EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    [[ "$shards" =~ ^[1-9]$ ]] || die "--shards must be 1..9 (ports 33K1/33K2)"
    local tpl s
    tpl="$(template)"
    for s in $(seq 1 "$shards"); do
        start_instance "$s" primary "$tpl"
        start_instance "$s" replica "$tpl"
    done
    for s in $(seq 1 "$shards"); do
        wait_instance "$s" primary
        wait_instance "$s" replica
    done
    for s in $(seq 1 "$shards"); do
        setup_replication "$s"
    done
    trap - EXIT INT TERM
    echo "cluster up: $shards shard(s)"
    cmd_status
}

# Instance directories that exist, in order.
instances() {
    local d
    for d in "$RUN"/s[0-9]-primary "$RUN"/s[0-9]-replica; do
        [ -f "$d/my.cnf" ] && echo "$d"
    done | sort
}

cmd_status() {
    local d name port state role io sqlr lag semi gtid any=0
    printf '%-12s %-6s %-8s %-8s %-9s %-9s %-5s %-8s %s\n' \
        INSTANCE PORT STATE ROLE IO_RUN SQL_RUN LAG SEMISYNC GTID_CURRENT_POS
    for d in $(instances); do
        any=1
        name="$(basename "$d")"
        port="$(awk -F= '$1=="port"{print $2}' "$d/my.cnf")"
        if alive "$d"; then state=up; else state=down; fi
        role=- io=- sqlr=- lag=- semi=- gtid=-
        if [ $state = up ] && sql "$port" -e 'SELECT 1' >/dev/null 2>&1; then
            io="$(slave_field "$port" Slave_IO_Running)"
            if [ -n "$io" ]; then
                role=replica
                sqlr="$(slave_field "$port" Slave_SQL_Running)"
                lag="$(slave_field "$port" Seconds_Behind_Master)"
                semi="$(sql "$port" -e "SHOW STATUS LIKE 'Rpl_semi_sync_slave_status'" | awk '{print $2}')"
            else
                role=primary io=-
                semi="$(sql "$port" -e "SHOW STATUS LIKE 'Rpl_semi_sync_master_status'" | awk '{print $2}')"
            fi
            gtid="$(sql "$port" -e 'SELECT @@gtid_current_pos')"
        elif [ $state = up ]; then
            state=starting
        fi
        printf '%-12s %-6s %-8s %-8s %-9s %-9s %-5s %-8s %s\n' \
            "$name" "$port" "$state" "$role" "$io" "$sqlr" "${lag:--}" "${semi:--}" "${gtid:--}"
    done
    [ $any = 1 ] || echo "(no instances under $RUN)"
}

# Stops every instance that has a pid file of ours, or only the named ones (s1-primary, ...):
# SIGTERM, then SIGKILL after 30 s.
cmd_down() {
    local d pid pids=() dirs=() only=" $* "
    for d in $(instances); do
        [ $# -eq 0 ] || [[ "$only" == *" $(basename "$d") "* ]] || continue
        if pid="$(our_pid "$d")"; then
            kill -TERM "$pid" 2>/dev/null || true
            pids+=("$pid")
            dirs+=("$d")
        fi
    done
    local i deadline=$((SECONDS + 30))
    for i in "${!pids[@]}"; do
        while kill -0 "${pids[$i]}" 2>/dev/null; do
            if [ $SECONDS -ge $deadline ]; then
                echo "killing $(basename "${dirs[$i]}") (pid ${pids[$i]}) after 30 s" >&2
                kill -KILL "${pids[$i]}" 2>/dev/null || true
                break
            fi
            sleep 0.1
        done
        echo "stopped $(basename "${dirs[$i]}")"
    done
    [ ${#pids[@]} -gt 0 ] || echo "no running instances"
}

cmd_clean() {
    cmd_down
    local d
    for d in $(instances); do
        rm -rf "$d"
    done
    echo "removed instance data under $RUN"
}

case "${1:-}" in
    up) shift; cmd_up "$@" ;;
    down) shift; cmd_down "$@" ;;
    status) cmd_status ;;
    clean) cmd_clean ;;
    *) echo "usage: $0 up [--shards N] [--record FILE] | down [NAME...] | status | clean" >&2; exit 2 ;;
esac
