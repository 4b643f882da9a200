# Sourced by the benchmark scripts: what they share.

# single_shard_config LISTEN PRIMARY: a shardproxy config for the 1-shard bench cluster (user
# app/app, every table on s1), on stdout.
single_shard_config() {
  cat <<CFG
listen = "$1"
[[users]]
name = "app"
password = "app"
[backend]
user = "app"
password = "app"
[[shards]]
name = "s1"
primary = "$2"
[sharding]
default_shard = "s1"
CFG
}

# release_bin NAME: the release binary NAME where cargo builds it (CARGO_TARGET_DIR honoured).
release_bin() {
  echo "$(scripts/target-dir.sh)/release/$1"
}
