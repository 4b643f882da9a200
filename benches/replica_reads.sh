#!/usr/bin/env bash
# Reads on replicas (issue 11) measured with sysbench: the same shardproxy binary twice, one
# serving reads from the primary (`read_from = "primary"`, port 6036) and one from the replica
# (`read_from = "replica"`, port 6037), against the 1-shard bench cluster (primary 3311, its
# semi-sync replica 3312), interleaved in the same rounds with MariaDB direct. Prints a markdown
# table of medians, and the share of reads each proxy's SHOW BACKENDS counted on the replica.
#
#   benches/replica_reads.sh                          # oltp_point_select, 8 and 32 threads
#   DURATION=5 THREADS="1 32" ROUNDS=5 benches/replica_reads.sh
#
# On one machine the replica shares the cores with the primary, so this shows what routing
# reads to a replica costs or gives on the same hardware, not the capacity a replica on its
# own machine adds.
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/common.sh
DURATION=${DURATION:-10}
THREADS=${THREADS:-"8 32"}
WORKLOAD=${WORKLOAD:-oltp_point_select}
TABLES=${TABLES:-4}
TABLE_SIZE=${TABLE_SIZE:-100000}
ROUNDS=${ROUNDS:-3}
RUN=run/bench-replica
mkdir -p "$RUN"
for tool in sysbench mariadbd; do
  command -v "$tool" >/dev/null || PATH="$PATH:/usr/sbin"
  command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install sysbench mariadb-server)" >&2; exit 1; }
done
cargo build --release --bin shardproxy >&2
scripts/cluster.sh up --shards 1 >&2
PRIMARY=127.0.0.1:3311
REPLICA=127.0.0.1:3312

# make_config LISTEN ADMIN READ_FROM FILE: the 1-shard config with its replica, the user's
# read_from, and an admin port (admin/admin) for SHOW BACKENDS.
make_config() {
  cat > "$4" <<CFG
listen = "$1"
admin_listen = "$2"
[[users]]
name = "app"
password = "app"
read_from = "$3"
[[admin_users]]
name = "admin"
password = "admin"
[backend]
user = "app"
password = "app"
[[shards]]
name = "s1"
primary = "$PRIMARY"
replicas = ["$REPLICA"]
[sharding]
default_shard = "s1"
CFG
}
make_config 127.0.0.1:6036 127.0.0.1:6046 primary "$RUN/primary.toml"
make_config 127.0.0.1:6037 127.0.0.1:6047 replica "$RUN/replica.toml"

PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
for which in primary replica; do
  "$(release_bin shardproxy)" --config "$RUN/$which.toml" --log warn > "$RUN/$which.log" 2>&1 &
  PIDS+=($!)
done
for port in 6036 6037; do
  for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
done

SB=(--db-driver=mysql --mysql-user=app --mysql-password=app --mysql-db=sbtest
    --tables="$TABLES" --table-size="$TABLE_SIZE" --percentile=95)
M=(mariadb --no-defaults --protocol=tcp -h127.0.0.1 -uapp -papp)
"${M[@]}" -P3311 -e "CREATE DATABASE IF NOT EXISTS sbtest"
if [ "$("${M[@]}" -P3311 -N -e "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema='sbtest'")" != "$TABLES" ]; then
  echo "preparing $TABLES x $TABLE_SIZE rows ..." >&2
  sysbench oltp_read_write "${SB[@]}" --mysql-host=127.0.0.1 --mysql-port=3311 cleanup >/dev/null 2>&1 || true
  sysbench oltp_read_write "${SB[@]}" --mysql-host=127.0.0.1 --mysql-port=3311 --threads=4 prepare >&2
fi
# The replica must hold the tables before reads go there.
for _ in $(seq 100); do
  [ "$("${M[@]}" -P3312 -N -e "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema='sbtest'" 2>/dev/null)" = "$TABLES" ] && break
  sleep 0.2
done

tps() {
  sysbench "$WORKLOAD" "${SB[@]}" --mysql-host=127.0.0.1 --mysql-port="$1" --threads="$2" \
    --time="$DURATION" --report-interval=0 run 2>&1 | awk '/transactions:/ {gsub(/\(/,"",$3); print $3}'
}
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.2f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else printf "n/a" }'; }
# The reads SHOW BACKENDS counted per backend, as "role address reads" lines.
reads() {
  "${M[@]}" -uadmin -padmin -P"$1" -e "SHOW BACKENDS" 2>/dev/null | awk -F'\t' '
    NR == 1 { for (i = 1; i <= NF; i++) { if ($i == "address") a = i; if ($i == "role") o = i; if ($i == "reads") r = i } next }
    a && r { printf "%s %s reads=%s; ", $o, $a, $r }'
}

echo "| $WORKLOAD threads | direct primary TPS | shardproxy read_from=primary TPS | shardproxy read_from=replica TPS | replica/primary (proxy) | proxy replica/direct |"
echo "|---:|---:|---:|---:|---:|---:|"
for t in $THREADS; do
  d=() p=() r=()
  for _ in $(seq "$ROUNDS"); do
    d+=("$(tps 3311 "$t")"); p+=("$(tps 6036 "$t")"); r+=("$(tps 6037 "$t")")
  done
  dt=$(median "${d[@]}") pt=$(median "${p[@]}") rt=$(median "${r[@]}")
  printf "| %s | %.0f | %.0f | %.0f | %s | %s |\n" "$t" "$dt" "$pt" "$rt" "$(ratio "$rt" "$pt")" "$(ratio "$rt" "$dt")"
done
echo
echo "reads counted per backend (SHOW BACKENDS), read_from=primary: $(reads 6046)"
echo "reads counted per backend (SHOW BACKENDS), read_from=replica: $(reads 6047)"
