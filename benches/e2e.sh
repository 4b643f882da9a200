#!/usr/bin/env bash
# End-to-end benchmark: sysbench against MariaDB directly, through HAProxy (TCP only) and
# through shardproxy, all in the same run on the same machine, printed as a markdown table
# with ratios to direct. Numbers from different runs are not comparable (noise ±10-15 %).
#
#   benches/e2e.sh                     # 20 s per cell, 1/8/32 threads
#   DURATION=5 THREADS="1 32" benches/e2e.sh
#
# It starts its own single-shard cluster with scripts/cluster.sh (ports 3311/3312) unless one
# is running, HAProxy on 127.0.0.1:6035 and shardproxy (release build) on 127.0.0.1:6036.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-20}
THREADS=${THREADS:-"1 8 32"}
WORKLOADS=${WORKLOADS:-"oltp_point_select oltp_read_write"}
TABLES=${TABLES:-4}
TABLE_SIZE=${TABLE_SIZE:-100000}
RUN=run/bench
mkdir -p "$RUN"

for tool in sysbench haproxy mariadbd; do
  command -v "$tool" >/dev/null || PATH="$PATH:/usr/sbin"
  command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install sysbench haproxy mariadb-server)" >&2; exit 1; }
done

cargo build --release --bin shardproxy >&2
scripts/cluster.sh up --shards 1 >&2
PRIMARY=127.0.0.1:3311

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
  server s1 $PRIMARY
CFG
cat > "$RUN/proxy.toml" <<CFG
listen = "127.0.0.1:6036"
[[users]]
name = "app"
password = "app"
[backend]
user = "app"
password = "app"
[[shards]]
name = "s1"
primary = "$PRIMARY"
[sharding]
default_shard = "s1"
CFG

cleanup() {
  [ -f "$RUN/haproxy.pid" ] && kill "$(cat "$RUN/haproxy.pid")" 2>/dev/null || true
  [ -n "${PROXY_PID:-}" ] && kill "$PROXY_PID" 2>/dev/null || true
}
trap cleanup EXIT
haproxy -D -f "$RUN/haproxy.cfg" -p "$RUN/haproxy.pid"
target/release/shardproxy --config "$RUN/proxy.toml" --log warn > "$RUN/proxy.log" 2>&1 &
PROXY_PID=$!
for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/6036) 2>/dev/null && break; sleep 0.1; done

SB=(--db-driver=mysql --mysql-user=app --mysql-password=app --mysql-db=sbtest
    --tables="$TABLES" --table-size="$TABLE_SIZE" --percentile=95)
mariadb --no-defaults --protocol=tcp -h127.0.0.1 -P3311 -uapp -papp -e "CREATE DATABASE IF NOT EXISTS sbtest"
if [ "$(mariadb --no-defaults --protocol=tcp -h127.0.0.1 -P3311 -uapp -papp -N -e "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema='sbtest'")" != "$TABLES" ]; then
  echo "preparing $TABLES x $TABLE_SIZE rows ..." >&2
  sysbench oltp_read_write "${SB[@]}" --mysql-host=127.0.0.1 --mysql-port=3311 cleanup >/dev/null 2>&1 || true
  sysbench oltp_read_write "${SB[@]}" --mysql-host=127.0.0.1 --mysql-port=3311 --threads=4 prepare >&2
fi

# One sysbench cell: prints "tps p95_ms".
cell() {
  local workload=$1 port=$2 threads=$3 out
  out=$(sysbench "$workload" "${SB[@]}" --mysql-host=127.0.0.1 --mysql-port="$port" \
        --threads="$threads" --time="$DURATION" --report-interval=0 run 2>&1) || { echo "0 0"; echo "$out" >&2; return; }
  local tps p95
  tps=$(echo "$out" | awk '/transactions:/ {gsub(/\(/,"",$3); print $3}')
  p95=$(echo "$out" | awk '/95th percentile:/ {print $3}')
  echo "${tps:-0} ${p95:-0}"
}

echo "| workload | threads | direct TPS | HAProxy TPS | shardproxy TPS | HAProxy/direct | shardproxy/direct | shardproxy/HAProxy | p95 ms direct / HAProxy / shardproxy |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---|"
for w in $WORKLOADS; do
  for t in $THREADS; do
    read -r d_tps d_p95 < <(cell "$w" 3311 "$t")
    read -r h_tps h_p95 < <(cell "$w" 6035 "$t")
    read -r p_tps p_p95 < <(cell "$w" 6036 "$t")
    ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else printf "n/a" }'; }
    printf "| %s | %s | %.0f | %.0f | %.0f | %s | %s | %s | %s / %s / %s |\n" "$w" "$t" "$d_tps" "$h_tps" "$p_tps" \
      "$(ratio "$h_tps" "$d_tps")" "$(ratio "$p_tps" "$d_tps")" "$(ratio "$p_tps" "$h_tps")" "$d_p95" "$h_p95" "$p_p95"
  done
done
echo
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -r); $(mariadbd --version | awk '{print $3}'); sysbench $(sysbench --version | awk '{print $2}'); $(haproxy -v | head -1 | awk '{print $1, $3}')"
echo "command: DURATION=$DURATION THREADS=\"$THREADS\" benches/e2e.sh (tables=$TABLES, table_size=$TABLE_SIZE)"
