#!/usr/bin/env bash
# Commit latency of transactions on 1, 2 and 3 shards through shardproxy's two-phase commit
# (issue 13), against the same one-shard transaction sent to MariaDB directly, in one run:
#
#   benches/commit_latency.sh                  # 10 s per cell, 1 thread, 3 rounds
#   DURATION=5 ROUNDS=5 THREADS=4 benches/commit_latency.sh
#   BASELINE_BIN=path/to/old/shardproxy benches/commit_latency.sh
#                                              # also an older build, in the same rounds
#
# Each transaction is BEGIN, one UPDATE of one row on each of N shards, COMMIT
# (benches/commit_latency.lua). A one-shard transaction is plain (no XA, no decision row); on
# 2 or 3 shards the proxy runs XA legs and writes the decision in the home leg. Each cell is
# the median over ROUNDS rounds of sysbench's average and 95th-percentile latency (ms), and
# its transactions/s; every round runs all four cells back to back.
#
# It starts a 3-shard cluster with scripts/cluster.sh (ports 3311, 3321, 3331, each with a
# semi-sync replica, as `make up`) unless one is running, and shardproxy (release build) on
# 127.0.0.1:6037. `scripts/cluster.sh down` stops the cluster afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/common.sh
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
THREADS=${THREADS:-1}
ROWS=${ROWS:-300}
RUN=run/bench-commit
mkdir -p "$RUN"
command -v sysbench >/dev/null || { echo "missing sysbench (apt-get install sysbench)" >&2; exit 1; }

cargo build --release --bin shardproxy >&2
scripts/cluster.sh up --shards 3 >&2
PRIMARIES=(127.0.0.1:3311 127.0.0.1:3321 127.0.0.1:3331)

{
  printf 'listen = "127.0.0.1:6037"\n[[users]]\nname = "app"\npassword = "app"\n'
  printf '[backend]\nuser = "app"\npassword = "app"\n'
  for i in 1 2 3; do
    printf '[[shards]]\nname = "s%s"\nprimary = "%s"\n' "$i" "${PRIMARIES[$((i - 1))]}"
  done
  printf '[sharding]\ndefault_shard = "s1"\n[[sharding.tables]]\nname = "cl"\nkey = "id"\n'
  printf '[transactions]\ntransaction_mode = "twopc"\n'
} > "$RUN/proxy.toml"

# The builds compared: this tree's, and BASELINE_BIN's (run first in every round) if set.
BINS=("$(release_bin shardproxy)")
LABELS=("proxy")
if [ -n "${BASELINE_BIN:-}" ]; then
  BINS=("$BASELINE_BIN" "${BINS[0]}")
  LABELS=("baseline" "proxy")
fi
cleanup() { [ -n "${PROXY_PID:-}" ] && kill "$PROXY_PID" 2>/dev/null || true; }
trap cleanup EXIT
# start_proxy BIN: shardproxy BIN on 6037 (the one running stopped first).
start_proxy() {
  if [ -n "${PROXY_PID:-}" ]; then kill "$PROXY_PID" 2>/dev/null || true; wait "$PROXY_PID" 2>/dev/null || true; fi
  for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/6037) 2>/dev/null || break; sleep 0.1; done
  "$1" --config "$RUN/proxy.toml" --log warn >> "$RUN/proxy.log" 2>&1 &
  PROXY_PID=$!
  for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/6037) 2>/dev/null && break; sleep 0.1; done
}
: > "$RUN/proxy.log"
start_proxy "${BINS[0]}"

sql() { mariadb --no-defaults --protocol=tcp -h127.0.0.1 -P"$1" -uapp -papp -N -B -e "$2"; }
# The table on every shard (DDL through the proxy runs on all), ROWS rows spread by the ring.
# The database on every primary (CREATE DATABASE through the proxy reaches the default shard).
for p in "${PRIMARIES[@]}"; do sql "${p##*:}" "CREATE DATABASE IF NOT EXISTS bench"; done
sql 6037 "DROP TABLE IF EXISTS bench.cl; CREATE TABLE bench.cl (id BIGINT PRIMARY KEY, v BIGINT NOT NULL)"
values=$(seq 1 "$ROWS" | sed 's/.*/(&, 0)/' | paste -sd,)
sql 6037 "INSERT INTO bench.cl (id, v) VALUES $values"
# Which ids each shard holds, read from the shards themselves.
keys=""
for p in "${PRIMARIES[@]}"; do
  ids=$(sql "${p##*:}" "SELECT GROUP_CONCAT(id) FROM (SELECT id FROM bench.cl ORDER BY id LIMIT 100) x")
  [ -n "$ids" ] && [ "$ids" != NULL ] || { echo "no rows on $p: raise ROWS" >&2; exit 1; }
  keys="${keys:+$keys;}$ids"
done
s1_keys=${keys%%;*}

SB=(--db-driver=mysql --mysql-host=127.0.0.1 --mysql-user=app --mysql-password=app
    --mysql-db=bench --threads="$THREADS" --time="$DURATION" --report-interval=0 --percentile=95)
# One cell: "avg_ms p95_ms tps".
cell() {
  local port=$1 legs=$2 k=$3 out
  out=$(sysbench benches/commit_latency.lua "${SB[@]}" --mysql-port="$port" --legs="$legs" --keys="$k" run 2>&1) \
    || { echo "$out" >&2; echo "0 0 0"; return; }
  echo "$out" | awk '
    /transactions:/ { gsub(/\(/, "", $3); tps = $3 }
    /avg:/ { avg = $2 }
    /95th percentile:/ { p95 = $3 }
    END { print avg, p95, tps }'
}
median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

declare -A AVG P95 TPS
# Cells: "direct" and, for each build b, "b:1" "b:2" "b:3" (shards per transaction).
CELLS=(direct)
for b in "${!BINS[@]}"; do CELLS+=("$b:1" "$b:2" "$b:3"); done
name() {
  case $1 in
    direct) echo "direct, 1 shard" ;;
    *) echo "${LABELS[${1%%:*}]}, ${1##*:} shard$([ "${1##*:}" = 1 ] || echo s)" ;;
  esac
}
for r in $(seq 1 "$ROUNDS"); do
  running=""
  for n in "${CELLS[@]}"; do
    case $n in
      direct) res=$(cell "${PRIMARIES[0]##*:}" 1 "$s1_keys") ;;
      *)
        b=${n%%:*}
        if [ "$running" != "$b" ]; then start_proxy "${BINS[$b]}"; running=$b; fi
        res=$(cell 6037 "${n##*:}" "$keys") ;;
    esac
    read -r a p t <<<"$res"
    AVG[$n]+="$a "; P95[$n]+="$p "; TPS[$n]+="$t "
    echo "round $r, $(name "$n"): avg $a ms, p95 $p ms, $t tps" >&2
  done
done

med() { echo "$1" | tr ' ' '\n' | grep . | median; }
echo
echo "Commit latency, $THREADS thread(s), ${DURATION} s per cell, median of $ROUNDS rounds ($(nproc) cores, $(date -u +%F), load average $(cut -d' ' -f1-3 /proc/loadavg))"
echo
echo "| transaction | avg ms | p95 ms | TPS | avg / same build's 1 shard |"
echo "|---|---:|---:|---:|---:|"
for n in "${CELLS[@]}"; do
  a=$(med "${AVG[$n]}")
  p=$(med "${P95[$n]}")
  t=$(med "${TPS[$n]}")
  case $n in
    direct) one=$(med "${AVG[$((${#BINS[@]} - 1)):1]}") ;;
    *) one=$(med "${AVG[${n%%:*}:1]}") ;;
  esac
  ratio=$(awk -v a="$a" -v b="$one" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }')
  echo "| $(name "$n") | $a | $p | $t | $ratio |"
done
