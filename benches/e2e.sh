#!/usr/bin/env bash
# End-to-end benchmark: sysbench against MariaDB directly, through HAProxy (TCP only) and
# through shardproxy, all in the same run on the same machine, printed as a markdown table
# with ratios to direct. Numbers from different runs are not comparable (noise ±10-15 %).
#
#   benches/e2e.sh                     # 10 s per cell, 1/8/32 threads, 3 rounds
#   DURATION=5 THREADS="1 32" benches/e2e.sh
#   ROUNDS=5 PROXY_ARGS="--threads 1" benches/e2e.sh
#   TLS=1 benches/e2e.sh               # also: shardproxy in clear text against TLS, same run
#   SB_ARGS=--db-ps-mode=disable WORKLOADS=oltp_point_select benches/e2e.sh
#                                      # text statements (the proxy's text plan cache)
# Each cell is the median of ROUNDS rounds (default 3); each round runs the three targets back
# to back. The last column is the CPU time HAProxy and shardproxy spent per query (from
# /proc/PID/stat), which moves less with the machine's load than TPS does.
#
# It starts its own single-shard cluster with scripts/cluster.sh (ports 3311/3312) unless one
# is running, HAProxy on 127.0.0.1:6035 and shardproxy (release build) on 127.0.0.1:6036.
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/common.sh
DURATION=${DURATION:-10}
THREADS=${THREADS:-"1 8 32"}
WORKLOADS=${WORKLOADS:-"oltp_point_select oltp_read_write"}
TABLES=${TABLES:-4}
TABLE_SIZE=${TABLE_SIZE:-100000}
# Rounds per cell: each round runs direct, HAProxy and shardproxy back to back.
ROUNDS=${ROUNDS:-3}
# Extra shardproxy flags, e.g. PROXY_ARGS="--threads 1".
PROXY_ARGS=${PROXY_ARGS:-}
# TLS=1: a second table, shardproxy's clear-text port against its TLS port (sysbench
# --mysql-ssl=on), interleaved in the same rounds. Certificates are made here with openssl.
TLS=${TLS:-0}
# Extra sysbench options for every cell, e.g. SB_ARGS=--db-ps-mode=disable (text statements).
SB_ARGS=${SB_ARGS:-}
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
single_shard_config 127.0.0.1:6036 "$PRIMARY" > "$RUN/proxy.toml"
if [ "$TLS" = 1 ]; then
  # A throwaway self-signed certificate (sysbench does not verify it).
  openssl req -x509 -newkey rsa:2048 -nodes -keyout "$RUN/tls.key" -out "$RUN/tls.pem" \
    -days 1 -subj "/CN=127.0.0.1" -addext "subjectAltName=IP:127.0.0.1" >/dev/null 2>&1
  # sysbench 1.0's --mysql-ssl=on loads these names from its working directory.
  mkdir -p "$RUN/sysbench-tls"
  cp "$RUN/tls.pem" "$RUN/sysbench-tls/cacert.pem"
  openssl req -x509 -newkey rsa:2048 -nodes -keyout "$RUN/sysbench-tls/client-key.pem" \
    -out "$RUN/sysbench-tls/client-cert.pem" -days 1 -subj "/CN=sysbench" >/dev/null 2>&1
  printf '\n[tls]\ncert = "%s"\nkey = "%s"\n' "$PWD/$RUN/tls.pem" "$PWD/$RUN/tls.key" >> "$RUN/proxy.toml"
fi

cleanup() {
  [ -f "$RUN/haproxy.pid" ] && kill "$(cat "$RUN/haproxy.pid")" 2>/dev/null || true
  [ -n "${PROXY_PID:-}" ] && kill "$PROXY_PID" 2>/dev/null || true
}
trap cleanup EXIT
haproxy -D -f "$RUN/haproxy.cfg" -p "$RUN/haproxy.pid"
# shellcheck disable=SC2086 # PROXY_ARGS is a list of flags
"$(release_bin shardproxy)" --config "$RUN/proxy.toml" --log warn $PROXY_ARGS > "$RUN/proxy.log" 2>&1 &
PROXY_PID=$!
for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/6036) 2>/dev/null && break; sleep 0.1; done

SB=(--db-driver=mysql --mysql-user=app --mysql-password=app --mysql-db=sbtest
    --tables="$TABLES" --table-size="$TABLE_SIZE" --percentile=95)
# shellcheck disable=SC2206 # SB_ARGS is a list of options
SB+=($SB_ARGS)
mariadb --no-defaults --protocol=tcp -h127.0.0.1 -P3311 -uapp -papp -e "CREATE DATABASE IF NOT EXISTS sbtest"
if [ "$(mariadb --no-defaults --protocol=tcp -h127.0.0.1 -P3311 -uapp -papp -N -e "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema='sbtest'")" != "$TABLES" ]; then
  echo "preparing $TABLES x $TABLE_SIZE rows ..." >&2
  sysbench oltp_read_write "${SB[@]}" --mysql-host=127.0.0.1 --mysql-port=3311 cleanup >/dev/null 2>&1 || true
  sysbench oltp_read_write "${SB[@]}" --mysql-host=127.0.0.1 --mysql-port=3311 --threads=4 prepare >&2
fi

# CPU time (user + system, in clock ticks) a process has used so far; 0 for "not measured".
cpu_ticks() { if [ -n "${1:-}" ] && [ -r "/proc/$1/stat" ]; then awk '{print $14 + $15}' "/proc/$1/stat"; else echo 0; fi; }
TICK=$(getconf CLK_TCK)

# One sysbench cell: prints "tps p95_ms cpu_us_per_query", the last for process $4 (the relay
# under test: HAProxy or shardproxy), "-" when none is given.
cell() {
  local workload=$1 port=$2 threads=$3 pid=${4:-} ssl=${5:-off} out before after
  before=$(cpu_ticks "$pid")
  local dir=.
  [ "$ssl" = on ] && dir="$RUN/sysbench-tls"
  out=$(cd "$dir" && sysbench "$workload" "${SB[@]}" --mysql-host=127.0.0.1 --mysql-port="$port" --mysql-ssl="$ssl" \
        --threads="$threads" --time="$DURATION" --report-interval=0 run 2>&1) || { echo "0 0 -"; echo "$out" >&2; return; }
  after=$(cpu_ticks "$pid")
  local tps p95 queries
  tps=$(echo "$out" | awk '/transactions:/ {gsub(/\(/,"",$3); print $3}')
  p95=$(echo "$out" | awk '/95th percentile:/ {print $3}')
  queries=$(echo "$out" | awk '/queries:/ {print $2; exit}')
  if [ -n "$pid" ]; then
    cpu=$(awk -v a="$before" -v b="$after" -v q="${queries:-0}" -v t="$TICK" 'BEGIN { if (q > 0) printf "%.1f", (b - a) / t * 1e6 / q; else print "-" }')
  else
    cpu="-"
  fi
  echo "${tps:-0} ${p95:-0} $cpu"
}

# The median of the numbers given as arguments.
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.2f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else printf "n/a" }'; }

HAPROXY_PID=$(cat "$RUN/haproxy.pid" 2>/dev/null || true)
echo "| workload | threads | direct TPS | HAProxy TPS | shardproxy TPS | HAProxy/direct | shardproxy/direct | shardproxy/HAProxy | p95 ms direct / HAProxy / shardproxy | CPU µs/query HAProxy / shardproxy |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---|---|"
for w in $WORKLOADS; do
  for t in $THREADS; do
    # ROUNDS rounds, the three targets interleaved in each, so that a slow phase of the
    # machine hits all three alike; the table shows medians.
    d_tps=() h_tps=() p_tps=() d_p95=() h_p95=() p_p95=() h_cpu=() p_cpu=()
    for _ in $(seq "$ROUNDS"); do
      read -r a b _ < <(cell "$w" 3311 "$t"); d_tps+=("$a"); d_p95+=("$b")
      read -r a b c < <(cell "$w" 6035 "$t" "$HAPROXY_PID"); h_tps+=("$a"); h_p95+=("$b"); h_cpu+=("$c")
      read -r a b c < <(cell "$w" 6036 "$t" "$PROXY_PID"); p_tps+=("$a"); p_p95+=("$b"); p_cpu+=("$c")
    done
    dt=$(median "${d_tps[@]}") ht=$(median "${h_tps[@]}") pt=$(median "${p_tps[@]}")
    printf "| %s | %s | %.0f | %.0f | %.0f | %s | %s | %s | %s / %s / %s | %s / %s |\n" "$w" "$t" "$dt" "$ht" "$pt" \
      "$(ratio "$ht" "$dt")" "$(ratio "$pt" "$dt")" "$(ratio "$pt" "$ht")" \
      "$(median "${d_p95[@]}")" "$(median "${h_p95[@]}")" "$(median "${p_p95[@]}")" \
      "$(median "${h_cpu[@]}")" "$(median "${p_cpu[@]}")"
  done
done
if [ "$TLS" = 1 ]; then
  echo
  echo "| workload | threads | shardproxy TPS clear | shardproxy TPS TLS | TLS/clear | p95 ms clear / TLS | CPU µs/query clear / TLS |"
  echo "|---|---:|---:|---:|---:|---|---|"
  for w in $WORKLOADS; do
    for t in $THREADS; do
      c_tps=() s_tps=() c_p95=() s_p95=() c_cpu=() s_cpu=()
      for _ in $(seq "$ROUNDS"); do
        read -r a b c < <(cell "$w" 6036 "$t" "$PROXY_PID" off); c_tps+=("$a"); c_p95+=("$b"); c_cpu+=("$c")
        read -r a b c < <(cell "$w" 6036 "$t" "$PROXY_PID" on); s_tps+=("$a"); s_p95+=("$b"); s_cpu+=("$c")
      done
      ct=$(median "${c_tps[@]}") st=$(median "${s_tps[@]}")
      printf "| %s | %s | %.0f | %.0f | %s | %s / %s | %s / %s |\n" "$w" "$t" "$ct" "$st" "$(ratio "$st" "$ct")" \
        "$(median "${c_p95[@]}")" "$(median "${s_p95[@]}")" "$(median "${c_cpu[@]}")" "$(median "${s_cpu[@]}")"
    done
  done
fi
echo
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -r); $(mariadbd --version | awk '{print $3}'); sysbench $(sysbench --version | awk '{print $2}'); $(haproxy -v | head -1 | awk '{print $1, $3}')"
echo "command: DURATION=$DURATION THREADS=\"$THREADS\" ROUNDS=$ROUNDS PROXY_ARGS=\"$PROXY_ARGS\" TLS=$TLS SB_ARGS=\"$SB_ARGS\" benches/e2e.sh (tables=$TABLES, table_size=$TABLE_SIZE); medians of $ROUNDS interleaved rounds"
