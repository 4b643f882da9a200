//! Global sequences: ids for the keys of sharded tables, unique across shards and proxies.
//!
//! A table declared with `sequence = true` (or `sequence = "name"`) gets its missing keys from
//! here ([`crate::plan::sequence`] decides which rows need one). This is the Vitess sequence
//! design reduced to what a proxy needs:
//!
//! - **State** lives in one table on the default shard's primary, created if missing:
//!   `shardproxy.sequences (name VARCHAR(64) PRIMARY KEY, next_id BIGINT UNSIGNED)`. `next_id`
//!   is the first id no proxy has reserved yet.
//! - **Blocks.** A proxy reserves `sequence_cache` ids at a time in one short transaction
//!   (`SELECT next_id … FOR UPDATE`, `UPDATE … SET next_id = next_id + block`, `COMMIT`), then
//!   hands them out from memory. The row lock orders proxies sharing the cluster; a tokio mutex
//!   per sequence orders the sessions of one proxy, so no id is handed out twice.
//! - **Consecutive ids per statement.** A statement needing `n` ids gets `n` consecutive ids
//!   from one block; when the current block has fewer left, the rest is skipped and a new block
//!   of at least `n` is reserved. Ids are unique and increasing, with gaps (after a restart the
//!   unused part of the last block is skipped), like InnoDB's AUTO_INCREMENT.
//! - **First use.** When the sequence's row does not exist, it is created at one more than the
//!   largest key found on every shard (`SELECT MAX(key)` of the table the INSERT names), so
//!   existing rows never collide with generated ids. Two proxies creating it at once: one
//!   fails with a duplicate key or a deadlock (both held the gap lock of the missing row), and
//!   that proxy retries and reads the row.
//!
//! - **Inside a transaction** already bound to a shard, a one-row INSERT gets the next id that
//!   the ring places on that shard (the ids skipped are gaps): the row could not be written
//!   anywhere else without a distributed transaction.
//!
//! Not done: explicit keys written by clients do not move the sequence (InnoDB would move its
//! counter past them): give explicit keys below the sequence, or none.
//!
//! The caller says where the servers are ([`Backends`]: the current topology and the default
//! shard).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::backend::conn::{BackendConn, BackendError, QueryResult};
use crate::backend::topology::Topology;
use crate::plan::SequenceRule;
use crate::protocol::constants::DEFAULT_COLLATION;
use crate::protocol::packets::ErrInfo;
use crate::ring::{KeyValue, Ring};

/// The database and table holding every sequence's state, on the default shard.
pub const STATE_TABLE: &str = "shardproxy.sequences";

/// Ids handed out from memory.
#[derive(Debug, Default)]
struct Block {
    next: u64,
    /// One past the last id of the block.
    end: u64,
}

/// Where a sequence's first value is derived from: the table and key an INSERT names.
#[derive(Debug, Clone)]
pub struct Source<'a> {
    pub rule: &'a SequenceRule,
    pub db: &'a str,
    pub table: &'a str,
    pub key: &'a str,
}

/// Where reservations run: the servers of the running config. The state table lives on
/// `default_shard`'s primary; a sequence's first value reads every shard's primary.
#[derive(Clone, Copy)]
pub struct Backends<'a> {
    pub topology: &'a Topology,
    pub default_shard: &'a str,
}

/// The proxy's sequences (see the module doc).
#[derive(Default)]
pub struct Sequences {
    blocks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Block>>>>,
    /// The connection reservations run on (to the default shard's primary), opened on first
    /// use and reopened after a failure or a failover. Not pooled: it never carries a
    /// client's session state.
    conn: tokio::sync::Mutex<Option<BackendConn>>,
}

/// The MariaDB error a failed reservation gives the client.
fn reservation_error(name: &str, e: impl std::fmt::Display) -> ErrInfo {
    ErrInfo::new(
        (1105, "HY000"),
        format!("shardproxy: cannot reserve ids from sequence '{name}': {e}"),
    )
}

fn quote_ident(s: &str) -> String {
    format!("`{}`", s.replace('`', "``"))
}

impl Sequences {
    /// Allocates `n` (≥ 1) consecutive ids and returns the first.
    pub async fn allocate(
        &self,
        backends: Backends<'_>,
        src: &Source<'_>,
        n: u64,
    ) -> Result<u64, ErrInfo> {
        let cell = self.cell(&src.rule.name);
        let mut block = cell.lock().await;
        self.ensure(&mut block, backends, src, n).await?;
        let first = block.next;
        block.next += n;
        Ok(first)
    }

    /// Allocates one id that `ring` places on `shard`: the next such id, the ids skipped on
    /// the way are not used (gaps). For an INSERT inside a transaction already bound to that
    /// shard, which could not write a row anywhere else.
    pub async fn allocate_on(
        &self,
        backends: Backends<'_>,
        src: &Source<'_>,
        ring: &Ring,
        shard: &str,
    ) -> Result<u64, ErrInfo> {
        // A shard with a tiny share of the ring could need many ids; past this, refuse.
        const MAX_SKIPPED: u64 = 100_000;
        let cell = self.cell(&src.rule.name);
        let mut block = cell.lock().await;
        for _ in 0..MAX_SKIPPED {
            self.ensure(&mut block, backends, src, 1).await?;
            let id = block.next;
            block.next += 1;
            if ring.shard_for(&KeyValue::from(id)) == shard {
                return Ok(id);
            }
        }
        Err(reservation_error(
            &src.rule.name,
            format!("no id placed on shard {shard} among the next {MAX_SKIPPED}"),
        ))
    }

    fn cell(&self, name: &str) -> Arc<tokio::sync::Mutex<Block>> {
        let mut blocks = self.blocks.lock().unwrap_or_else(|e| e.into_inner());
        blocks.entry(name.to_string()).or_default().clone()
    }

    /// Makes sure `block` has at least `n` ids left, reserving a new block (the rest of the
    /// old one is skipped: one statement's ids are consecutive).
    async fn ensure(
        &self,
        block: &mut Block,
        backends: Backends<'_>,
        src: &Source<'_>,
        n: u64,
    ) -> Result<(), ErrInfo> {
        if block.end.saturating_sub(block.next) >= n {
            return Ok(());
        }
        let size = src.rule.block.max(n);
        let start = self.reserve(backends, src, size).await?;
        tracing::info!(
            sequence = %src.rule.name,
            start,
            size,
            "reserved a block of sequence ids"
        );
        *block = Block {
            next: start,
            end: start + size,
        };
        Ok(())
    }

    /// Reserves `size` ids in the state table; returns the first. Retries when another proxy
    /// created the sequence's row at the same moment.
    async fn reserve(
        &self,
        backends: Backends<'_>,
        src: &Source<'_>,
        size: u64,
    ) -> Result<u64, ErrInfo> {
        let name = &src.rule.name;
        let mut guard = self.conn.lock().await;
        let mut last_err = None;
        for _attempt in 0..3 {
            let conn = match self.connection(backends, &mut guard).await {
                Ok(c) => c,
                Err(e) => return Err(reservation_error(name, e)),
            };
            match reserve_on(conn, backends, src, size).await {
                Ok(start) => return Ok(start),
                Err(e) => {
                    let _ = conn.query("ROLLBACK").await;
                    // Two proxies creating the row at once: the loser gets a duplicate key, or a
                    // deadlock (both hold the gap lock of the missing row, then both insert).
                    let duplicate =
                        matches!(&e, BackendError::Server(s) if s.code == 1062 || s.code == 1213);
                    if !matches!(e, BackendError::Server(_)) {
                        // The connection is unusable: open a new one next time.
                        *guard = None;
                    }
                    if !duplicate {
                        return Err(match e {
                            // The server's own error (a missing table, no privilege …) keeps
                            // its code, as if the INSERT had met it.
                            BackendError::Server(s) => ErrInfo {
                                message: format!(
                                    "shardproxy: cannot reserve ids from sequence '{name}': {}",
                                    s.message
                                ),
                                ..s
                            },
                            other => reservation_error(name, other),
                        });
                    }
                    tracing::info!(sequence = %name, "retrying the id reservation: {e}");
                    last_err = Some(e);
                }
            }
        }
        Err(reservation_error(
            name,
            last_err.map_or_else(String::new, |e| e.to_string()),
        ))
    }

    /// The reservation connection, (re)opened to the current default shard primary, with the
    /// state table created if missing.
    async fn connection<'g>(
        &self,
        backends: Backends<'_>,
        guard: &'g mut Option<BackendConn>,
    ) -> Result<&'g mut BackendConn, String> {
        let default = backends.default_shard;
        let topo = backends.topology;
        let pool = topo
            .shard(default)
            .ok_or_else(|| format!("unknown default shard {default}"))?
            .primary
            .clone();
        if guard.as_ref().is_some_and(|c| c.addr != pool.addr) {
            // A failover moved the primary.
            *guard = None;
        }
        if guard.is_none() {
            let mut c = BackendConn::connect(&pool.connect_params(0, DEFAULT_COLLATION))
                .await
                .map_err(|e| e.to_string())?;
            for sql in [
                "CREATE DATABASE IF NOT EXISTS shardproxy",
                "CREATE TABLE IF NOT EXISTS shardproxy.sequences (\
                 name VARCHAR(64) NOT NULL PRIMARY KEY, \
                 next_id BIGINT UNSIGNED NOT NULL) ENGINE=InnoDB",
            ] {
                c.query(sql).await.map_err(|e| e.to_string())?;
            }
            *guard = Some(c);
        }
        Ok(guard.as_mut().expect("set above"))
    }
}

/// One reservation transaction on `conn`.
async fn reserve_on(
    conn: &mut BackendConn,
    backends: Backends<'_>,
    src: &Source<'_>,
    size: u64,
) -> Result<u64, BackendError> {
    let name = &src.rule.name;
    conn.query("BEGIN").await?;
    let current = match conn
        .query(&format!(
            "SELECT next_id FROM {STATE_TABLE} WHERE name = '{name}' FOR UPDATE"
        ))
        .await?
    {
        QueryResult::Rows(rs) => rs
            .rows
            .first()
            .and_then(|r| r.first().cloned().flatten())
            .and_then(|v| std::str::from_utf8(&v).ok()?.parse::<u64>().ok()),
        QueryResult::Ok(_) => None,
    };
    let start = match current {
        Some(next) => {
            check_room(name, next, size)?;
            conn.query(&format!(
                "UPDATE {STATE_TABLE} SET next_id = next_id + {size} WHERE name = '{name}'"
            ))
            .await?;
            next
        }
        None => {
            let start = max_key_on_all_shards(backends, src)
                .await?
                .saturating_add(1)
                .max(1);
            check_room(name, start, size)?;
            conn.query(&format!(
                "INSERT INTO {STATE_TABLE} (name, next_id) VALUES ('{name}', {})",
                start + size
            ))
            .await?;
            tracing::info!(sequence = %name, start, table = %src.table, "created sequence above the largest existing key");
            start
        }
    };
    conn.query("COMMIT").await?;
    Ok(start)
}

/// Ids stay within BIGINT (signed): key columns are usually signed.
fn check_room(name: &str, start: u64, size: u64) -> Result<(), BackendError> {
    if start.checked_add(size).is_none_or(|e| e > i64::MAX as u64) {
        return Err(BackendError::Server(ErrInfo::new(
            (1467, "HY000"),
            format!("sequence '{name}' is exhausted (next id {start})"),
        )));
    }
    Ok(())
}

/// The largest key of the table over every shard's primary (0 when all are empty; negative
/// keys count as 0).
async fn max_key_on_all_shards(
    backends: Backends<'_>,
    src: &Source<'_>,
) -> Result<u64, BackendError> {
    let sql = format!(
        "SELECT MAX({}) FROM {}.{}",
        quote_ident(src.key),
        quote_ident(src.db),
        quote_ident(src.table)
    );
    let topo = backends.topology;
    let mut max = 0u64;
    for shard in &topo.shards {
        let mut c =
            BackendConn::connect(&shard.primary.connect_params(0, DEFAULT_COLLATION)).await?;
        let r = c.query(&sql).await.map_err(|e| match e {
            BackendError::Server(s) => BackendError::Server(ErrInfo {
                message: format!(
                    "{} (on shard {}, reading the largest existing key to start the sequence)",
                    s.message, shard.name
                ),
                ..s
            }),
            other => other,
        })?;
        if let QueryResult::Rows(rs) = r {
            let v = rs
                .rows
                .first()
                .and_then(|r| r.first().cloned().flatten())
                .and_then(|v| std::str::from_utf8(&v).ok().map(str::to_string));
            match v {
                None => {}
                Some(t) if t.starts_with('-') => {}
                Some(t) => match t.parse::<u64>() {
                    Ok(n) => max = max.max(n),
                    Err(_) => {
                        return Err(BackendError::Server(ErrInfo::new(
                            (1105, "HY000"),
                            format!(
                                "key {} of {}.{} is not an integer column ({t:?} on shard {}): \
                                 a sequence needs an integer key",
                                src.key, src.db, src.table, shard.name
                            ),
                        )))
                    }
                },
            }
        }
    }
    Ok(max)
}
