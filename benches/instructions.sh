#!/usr/bin/env bash
# The proxy's own CPU work per statement, counted in instructions by valgrind's callgrind: the
# same binary and inputs give the same count whatever else the machine is doing, so this figure
# can be compared between commits when TPS figures cannot (the machine is shared and noisy).
#
#   benches/instructions.sh                 # 20,000 prepared point selects, 1 client thread
#   EVENTS=50000 benches/instructions.sh
#   PROXY_ARGS="--threads 1" benches/instructions.sh
#
# It uses the single-shard cluster of scripts/cluster.sh (ports 3311/3312) and the sbtest tables
# that benches/e2e.sh prepares, runs the release build under callgrind on 127.0.0.1:6039, drives
# it with sysbench oltp_point_select, and prints the instructions per statement spent in the
# session task (`frontend::session::serve`: decode, route, pool, relay) and in the whole
# process (which adds tokio's scheduler and I/O driver, and the one-time start-up cost spread
# over EVENTS statements). Kernel work (system calls, TCP) is not counted by callgrind.
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/common.sh
EVENTS=${EVENTS:-20000}
PROXY_ARGS=${PROXY_ARGS:-}
RUN=run/bench
mkdir -p "$RUN"
for tool in valgrind callgrind_annotate sysbench; do
  command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install valgrind sysbench)" >&2; exit 1; }
done
cargo build --release --bin shardproxy >&2
scripts/cluster.sh up --shards 1 >&2
if [ "$(mariadb --no-defaults --protocol=tcp -h127.0.0.1 -P3311 -uapp -papp -N -e "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema='sbtest'" 2>/dev/null || echo 0)" = 0 ]; then
  echo "no sbtest tables on 127.0.0.1:3311: run benches/e2e.sh once first (it prepares them)" >&2
  exit 1
fi
single_shard_config 127.0.0.1:6039 127.0.0.1:3311 > "$RUN/callgrind.toml"
out="$RUN/callgrind.out"
rm -f "$out"
# shellcheck disable=SC2086 # PROXY_ARGS is a list of flags
valgrind --tool=callgrind --callgrind-out-file="$out" "$(release_bin shardproxy)" \
  --config "$RUN/callgrind.toml" --log warn $PROXY_ARGS >"$RUN/callgrind.log" 2>&1 &
vg=$!
trap 'kill "$vg" 2>/dev/null || true' EXIT
for _ in $(seq 240); do (exec 3<>/dev/tcp/127.0.0.1/6039) 2>/dev/null && break; sleep 0.5; done
sysbench oltp_point_select --db-driver=mysql --mysql-user=app --mysql-password=app \
  --mysql-db=sbtest --tables=4 --table-size=100000 --mysql-host=127.0.0.1 --mysql-port=6039 \
  --threads=1 --events="$EVENTS" --time=0 run >"$RUN/callgrind.sysbench" 2>&1
kill -TERM "$vg"
wait "$vg" || true
trap - EXIT
report=$(callgrind_annotate --inclusive=yes "$out" 2>/dev/null)
# Here-strings, not pipes: awk stops reading at its first match (pipefail would see SIGPIPE).
total=$(awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1; exit}' <<<"$report")
session=$(awk '/frontend::session::serve::\{\{closure\}\} \[/ {gsub(",", "", $1); print $1; exit}' <<<"$report")
awk -v t="$total" -v s="$session" -v n="$EVENTS" 'BEGIN {
  printf "statements: %d (prepared point selects, 1 client thread)\n", n
  printf "instructions per statement, session task: %.0f\n", s / n
  printf "instructions per statement, whole process (incl. start-up): %.0f\n", t / n
}'
echo "command: EVENTS=$EVENTS PROXY_ARGS=\"$PROXY_ARGS\" benches/instructions.sh; callgrind output in $out"
