#!/usr/bin/env bash
# sysbench oltp_read_write WITH its transactions (no --skip-trx) on sbtest tables sharded over
# two shards through shardproxy (two-phase commit when a transaction writes on both), against
# the same workload on one plain MariaDB, direct and through HAProxy (TCP only), in one run:
#
#   benches/twopc_sysbench.sh                 # 10 s per cell, 8 and 32 threads, 3 rounds
#   DURATION=5 ROUNDS=1 THREADS="8" benches/twopc_sysbench.sh
#
# It starts a 3-shard cluster with scripts/cluster.sh unless one is running: s1 (3311) and s2
# (3321) are the proxy's shards; s3's primary (3331) serves as the one plain MariaDB holding
# every row (direct and HAProxy on 127.0.0.1:6035). shardproxy (release) listens on 6037.
# Each cell is the median of ROUNDS rounds: TPS, p95 ms and the errors sysbench counted
# (deadlocks and lock waits it retries are "ignored errors"). `scripts/cluster.sh down` after.
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/common.sh
DURATION=${DURATION:-10}
THREADS=${THREADS:-"8 32"}
ROUNDS=${ROUNDS:-3}
TABLES=${TABLES:-2}
TABLE_SIZE=${TABLE_SIZE:-20000}
RUN=run/bench-2pc
mkdir -p "$RUN"
for tool in sysbench haproxy; do
  command -v "$tool" >/dev/null || PATH="$PATH:/usr/sbin"
  command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install sysbench haproxy)" >&2; exit 1; }
done

cargo build --release --bin shardproxy >&2
scripts/cluster.sh up --shards 3 >&2
PLAIN=127.0.0.1:3331

{
  printf 'listen = "127.0.0.1:6037"\n[[users]]\nname = "app"\npassword = "app"\n'
  printf '[backend]\nuser = "app"\npassword = "app"\n'
  printf '[[shards]]\nname = "s1"\nprimary = "127.0.0.1:3311"\n'
  printf '[[shards]]\nname = "s2"\nprimary = "127.0.0.1:3321"\n'
  printf '[sharding]\ndefault_shard = "s1"\n'
  for t in $(seq 1 "$TABLES"); do
    printf '[[sharding.tables]]\nname = "sbtest%s"\nkey = "id"\nsequence = true\n' "$t"
  done
  printf '[transactions]\ntransaction_mode = "twopc"\n'
} > "$RUN/proxy.toml"
cat > "$RUN/haproxy.cfg" <<CFG
global
  maxconn 4096
defaults
  mode tcp
  timeout connect 5s
  timeout client 1h
  timeout server 1h
listen mariadb
  bind 127.0.0.1:6035
  server plain $PLAIN
CFG

cleanup() {
  [ -f "$RUN/haproxy.pid" ] && kill "$(cat "$RUN/haproxy.pid")" 2>/dev/null || true
  [ -n "${PROXY_PID:-}" ] && kill "$PROXY_PID" 2>/dev/null || true
}
trap cleanup EXIT
haproxy -D -f "$RUN/haproxy.cfg" -p "$RUN/haproxy.pid"
"$(release_bin shardproxy)" --config "$RUN/proxy.toml" --log warn > "$RUN/proxy.log" 2>&1 &
PROXY_PID=$!
for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/6037) 2>/dev/null && break; sleep 0.1; done

SB=(--db-driver=mysql --mysql-host=127.0.0.1 --mysql-user=app --mysql-password=app
    --mysql-db=sbtest2pc --tables="$TABLES" --table-size="$TABLE_SIZE" --percentile=95)
sql() { mariadb --no-defaults --protocol=tcp -h127.0.0.1 -P"$1" -uapp -papp -N -B -e "$2"; }
for port in 3311 3321 3331; do sql "$port" "CREATE DATABASE IF NOT EXISTS sbtest2pc"; done
prepared() { sql "$1" "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema='sbtest2pc'"; }
if [ "$(prepared 3331)" != "$TABLES" ]; then
  echo "preparing $TABLES x $TABLE_SIZE rows on the plain MariaDB ..." >&2
  sysbench oltp_read_write "${SB[@]}" --mysql-port=3331 cleanup >/dev/null 2>&1 || true
  sysbench oltp_read_write "${SB[@]}" --mysql-port=3331 prepare >&2
fi
if [ "$(prepared 3311)" != "$TABLES" ] || [ "$(prepared 3321)" != "$TABLES" ]; then
  echo "preparing $TABLES x $TABLE_SIZE rows through the proxy (sharded) ..." >&2
  sysbench oltp_read_write "${SB[@]}" --mysql-port=6037 cleanup >/dev/null 2>&1 || true
  start=$(date +%s.%N)
  sysbench oltp_read_write "${SB[@]}" --mysql-port=6037 prepare >&2
  awk -v s="$start" -v e="$(date +%s.%N)" -v n="$((TABLES * TABLE_SIZE))" \
    'BEGIN { printf "prepare through the proxy: %d rows in %.1f s (%.0f rows/s)\n", n, e - s, n / (e - s) }' >&2
fi

# One cell: "tps p95_ms errors".
cell() {
  local port=$1 threads=$2 out
  out=$(sysbench oltp_read_write "${SB[@]}" --mysql-port="$port" --threads="$threads" \
        --time="$DURATION" --report-interval=0 run 2>&1) || { echo "$out" >&2; echo "0 0 -"; return; }
  echo "$out" | awk '
    /transactions:/ { gsub(/\(/, "", $3); tps = $3 }
    /95th percentile:/ { p95 = $3 }
    /ignored errors:/ { err = $3 }
    END { print tps, p95, err }'
}
median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

names=(direct haproxy shardproxy)
ports=(3331 6035 6037)
declare -A T P E
for th in $THREADS; do
  for r in $(seq 1 "$ROUNDS"); do
    for i in 0 1 2; do
      read -r t p e <<<"$(cell "${ports[$i]}" "$th")"
      T[$th,$i]+="$t "; P[$th,$i]+="$p "; E[$th,$i]+="$e "
      echo "threads $th round $r ${names[$i]}: $t tps, p95 $p ms, ignored errors $e" >&2
    done
  done
done

echo
echo "oltp_read_write with transactions, ${DURATION} s per cell, median of $ROUNDS rounds ($(nproc) cores, $(date -u +%F)); shardproxy over 2 shards (twopc), direct and HAProxy on one MariaDB"
echo
echo "| threads | direct TPS | HAProxy TPS | shardproxy TPS | shardproxy / HAProxy | p95 ms direct / HAProxy / shardproxy | errors (ignored) direct / HAProxy / shardproxy |"
echo "|---:|---:|---:|---:|---:|---|---|"
for th in $THREADS; do
  med() { echo "${1}" | tr ' ' '\n' | grep . | median; }
  td=$(med "${T[$th,0]}"); th_=$(med "${T[$th,1]}"); ts=$(med "${T[$th,2]}")
  ratio=$(awk -v a="$ts" -v b="$th_" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }')
  echo "| $th | $td | $th_ | $ts | $ratio | $(med "${P[$th,0]}") / $(med "${P[$th,1]}") / $(med "${P[$th,2]}") | ${E[$th,0]}/ ${E[$th,1]}/ ${E[$th,2]}|"
done
