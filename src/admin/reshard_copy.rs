//! The data steps of an online resharding over every moving table: copy from a snapshot,
//! catch up from the change log, verify, clean up, roll back. The driver
//! (`super::reshard_run`) calls them in order and persists the progress between them.
//!
//! A [`Work`] is one table on one source shard with the shards its rows go to. Rows are placed
//! in Rust with [`Ring::shard_for`] on the shard key read as text (MariaDB cannot compute the
//! ring's SipHash, see `crate::ring`): a sharded table's row goes to the shard the new ring
//! names when that is not its source; a reference table's rows go whole to every new shard.
//!
//! The steps are idempotent (`REPLACE` and `DELETE` by primary key), so a step interrupted by
//! a crash is simply run again; the change log keeps every change until it was applied.

use std::collections::{HashMap, HashSet};
use std::hash::{DefaultHasher, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::reshard_sql::{literal, Db, Row, TableInfo};
use crate::plan::reshard_state::ReshardState;
use crate::ring::{KeyValue, Ring};

/// One table on one source and where its rows go.
#[derive(Debug, Clone)]
pub struct Work {
    /// The table as the config names it (the progress rows use it).
    pub config_name: String,
    /// Its columns and keys on the source.
    pub info: TableInfo,
    /// The source shard.
    pub source: String,
    /// The shards that receive rows of it.
    pub targets: Vec<String>,
    /// A reference table: every row goes to every target.
    pub reference: bool,
}

/// The connections and rings a move works with.
pub struct Mover {
    /// Placement before the move.
    pub old: Arc<Ring>,
    /// Placement after it.
    pub new: Arc<Ring>,
    /// One connection per shard (old and new ones), by shard name.
    pub dbs: HashMap<String, Db>,
    /// What moves.
    pub work: Vec<Work>,
    /// Rows per batch.
    pub batch_rows: usize,
    /// Pause between batches of the copy.
    pub batch_pause: Duration,
    /// Called with the state after every batch of the copy (`SHOW RESHARD STATUS` shows it).
    pub progress: Option<Progress>,
}

/// What receives the state after every batch of the copy.
pub type Progress = Box<dyn Fn(&ReshardState) + Send + Sync>;

/// Why a step stopped.
pub type StepResult<T> = Result<T, String>;

/// A primary key as SQL literals (what names a row in the change log and in `DELETE`s).
type PkKey = Vec<String>;

fn pk_key(pk: &[Option<Bytes>]) -> PkKey {
    pk.iter()
        .map(|v| match v {
            Some(b) => literal(b),
            None => "NULL".into(),
        })
        .collect()
}

/// A logged primary key (`[5, "x"]`) as SQL literals.
fn pk_from_json(text: &str) -> Option<PkKey> {
    let v: Vec<serde_json::Value> = serde_json::from_str(text).ok()?;
    Some(
        v.iter()
            .map(|x| match x {
                serde_json::Value::Null => "NULL".into(),
                serde_json::Value::String(s) => literal(s.as_bytes()),
                other => literal(other.to_string().as_bytes()),
            })
            .collect(),
    )
}

/// A digest of a row's values (hex text): what verify compares.
fn digest(values: &[Option<Bytes>]) -> u64 {
    let mut h = DefaultHasher::new();
    for v in values {
        match v {
            None => h.write_u8(0),
            Some(b) => {
                h.write_u8(1);
                h.write(b);
            }
        }
    }
    h.finish()
}

impl Work {
    /// Where a row of this work goes: its targets (empty: it stays).
    fn destinations<'a>(&'a self, key: Option<&str>, new: &Ring) -> StepResult<Vec<&'a str>> {
        if self.reference {
            return Ok(self.targets.iter().map(String::as_str).collect());
        }
        let key = key.ok_or_else(|| format!("{}: a row has a NULL shard key", self.config_name))?;
        let kv = KeyValue::from_str_value(key).ok_or_else(|| {
            format!(
                "{}: shard key value {key:?} cannot be placed on the ring",
                self.config_name
            )
        })?;
        let to = new.shard_for(&kv);
        Ok(match self.targets.iter().find(|t| *t == to) {
            Some(t) if to != self.source => vec![t.as_str()],
            _ => Vec::new(),
        })
    }

    /// Whether a row on `target` came from this work's source (a target may hold its own rows
    /// and rows from other sources).
    fn came_from(&self, key: Option<&str>, target: &str, old: &Ring, new: &Ring) -> bool {
        if self.reference {
            return true;
        }
        match key.and_then(KeyValue::from_str_value) {
            Some(kv) => old.shard_for(&kv) == self.source && new.shard_for(&kv) == target,
            None => false,
        }
    }

    /// One page of rows after `after` (a primary key as literals), in key order.
    fn page_sql(&self, after: Option<&PkKey>, limit: usize) -> String {
        let t = &self.info;
        let mut sql = format!("SELECT {} FROM {}", t.select_list(), t.qualified());
        if let Some(k) = after {
            sql += &format!(" WHERE {} > ({})", t.pk_tuple(), k.join(", "));
        }
        let order: Vec<String> = t.pk.iter().map(|c| super::reshard_sql::ident(c)).collect();
        sql += &format!(" ORDER BY {} LIMIT {limit}", order.join(", "));
        sql
    }
}

impl Mover {
    fn db(&mut self, shard: &str) -> StepResult<&mut Db> {
        self.dbs
            .get_mut(shard)
            .ok_or_else(|| format!("no connection to shard {shard}"))
    }

    /// Copies every work's moving rows from one consistent snapshot of its source, batch by
    /// batch, updating `state` (the caller persists it). Returns the rows written.
    pub async fn copy(&mut self, state: &mut ReshardState) -> StepResult<u64> {
        let mut total = 0;
        for w in self.work.clone() {
            let started = Instant::now();
            let estimate = self
                .db(&w.source)?
                .value(&format!(
                    "SELECT TABLE_ROWS FROM information_schema.TABLES WHERE TABLE_SCHEMA = {} AND \
                     TABLE_NAME = {}",
                    literal(w.info.db.as_bytes()),
                    literal(w.info.name.as_bytes())
                ))
                .await?
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
            for t in &w.targets {
                if let Some(p) = state.pair_mut(&w.config_name, &w.source, t) {
                    p.source_rows = estimate;
                }
            }
            self.db(&w.source)?
                .exec("START TRANSACTION WITH CONSISTENT SNAPSHOT")
                .await?;
            let mut after: Option<PkKey> = None;
            loop {
                let sql = w.page_sql(after.as_ref(), self.batch_rows);
                let rows = self.db(&w.source)?.rows(&sql).await?;
                if rows.is_empty() {
                    break;
                }
                let mut by_target: HashMap<&str, Vec<&[Option<Bytes>]>> = HashMap::new();
                for r in &rows {
                    let (_, key, values) = w.info.split(r);
                    for t in w.destinations(key.as_deref(), &self.new)? {
                        by_target.entry(t).or_default().push(values);
                    }
                }
                let mut written: HashMap<String, u64> = HashMap::new();
                for (t, values) in by_target {
                    let sql = w.info.replace_sql(&values);
                    self.db(t)?.exec(&sql).await?;
                    *written.entry(t.to_string()).or_default() += values.len() as u64;
                }
                after = rows.last().map(|r| pk_key(w.info.split(r).0));
                let secs = started.elapsed().as_secs_f64().max(1e-3);
                for t in &w.targets {
                    if let Some(p) = state.pair_mut(&w.config_name, &w.source, t) {
                        p.scanned += rows.len() as u64;
                        p.copied += written.get(t).copied().unwrap_or(0);
                        p.rows_per_s = p.copied as f64 / secs;
                    }
                }
                total += written.values().sum::<u64>();
                if let Some(f) = &self.progress {
                    f(state);
                }
                if rows.len() < self.batch_rows {
                    break;
                }
                if !self.batch_pause.is_zero() {
                    tokio::time::sleep(self.batch_pause).await;
                }
            }
            self.db(&w.source)?.exec("COMMIT").await?;
            tracing::info!(
                table = %w.config_name,
                from = %w.source,
                secs = started.elapsed().as_secs_f64(),
                "reshard: copy of the table from this source done"
            );
        }
        Ok(total)
    }

    /// Applies up to `limit` logged changes of each source to the targets and deletes them
    /// from the log. Returns (changes applied, changes left in the logs at the last look).
    pub async fn catch_up_once(
        &mut self,
        state: &mut ReshardState,
        limit: usize,
    ) -> StepResult<(u64, u64)> {
        let mut applied = 0;
        let mut left = 0;
        let sources: Vec<String> = unique(self.work.iter().map(|w| w.source.clone()));
        for source in sources {
            let log = self
                .db(&source)?
                .rows(&format!(
                    "SELECT seq, db_name, table_name, pk FROM shardproxy.reshard_changes \
                     ORDER BY seq LIMIT {limit}"
                ))
                .await?;
            if log.is_empty() {
                continue;
            }
            let text = |r: &Row, i: usize| {
                r.get(i)
                    .cloned()
                    .flatten()
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .unwrap_or_default()
            };
            // Keys per table, each once: the row's current state is what is applied.
            let mut keys: HashMap<(String, String), Vec<PkKey>> = HashMap::new();
            let mut seen: HashSet<(String, String, PkKey)> = HashSet::new();
            let mut seqs = Vec::with_capacity(log.len());
            for r in &log {
                seqs.push(text(r, 0));
                let (db, table) = (text(r, 1), text(r, 2));
                if let Some(pk) = pk_from_json(&text(r, 3)) {
                    if seen.insert((db.clone(), table.clone(), pk.clone())) {
                        keys.entry((db, table)).or_default().push(pk);
                    }
                }
            }
            for ((db, table), pks) in keys {
                let Some(w) = self
                    .work
                    .iter()
                    .find(|w| w.source == source && w.info.db == db && w.info.name == table)
                    .cloned()
                else {
                    continue;
                };
                applied += self.apply_keys(&w, &pks).await?;
                for t in &w.targets {
                    if let Some(p) = state.pair_mut(&w.config_name, &w.source, t) {
                        p.applied += pks.len() as u64;
                    }
                }
            }
            // By sequence number, never by range: an entry with a smaller number may commit
            // later than the ones read now, and must stay until it is seen.
            self.db(&source)?.exec(&forget_sql(&seqs)).await?;
            let n = self
                .db(&source)?
                .value("SELECT COUNT(*) FROM shardproxy.reshard_changes")
                .await?;
            left += n.and_then(|n| n.parse::<u64>().ok()).unwrap_or(0);
        }
        state.pending_changes = left;
        Ok((applied, left))
    }

    /// Brings the rows named by `pks` on `w`'s targets to the source's current state.
    async fn apply_keys(&mut self, w: &Work, pks: &[PkKey]) -> StepResult<u64> {
        let t = &w.info;
        let tuples: Vec<String> = pks.iter().map(|k| format!("({})", k.join(", "))).collect();
        let sql = format!(
            "SELECT {} FROM {} WHERE {} IN ({})",
            t.select_list(),
            t.qualified(),
            t.pk_tuple(),
            tuples.join(", ")
        );
        let rows = self.db(&w.source)?.rows(&sql).await?;
        let mut upserts: HashMap<&str, Vec<&[Option<Bytes>]>> = HashMap::new();
        let mut placed: HashMap<PkKey, Vec<&str>> = HashMap::new();
        for r in &rows {
            let (pk, key, values) = t.split(r);
            let to = w.destinations(key.as_deref(), &self.new)?;
            for d in &to {
                upserts.entry(d).or_default().push(values);
            }
            placed.insert(pk_key(pk), to);
        }
        // A key gone from the source, or no longer moving to a target, leaves that target.
        let mut deletes: HashMap<&str, Vec<PkKey>> = HashMap::new();
        for k in pks {
            let to = placed.get(k).cloned().unwrap_or_default();
            for target in &w.targets {
                if !to.contains(&target.as_str()) {
                    deletes.entry(target).or_default().push(k.clone());
                }
            }
        }
        for (target, keys) in deletes {
            let sql = t.delete_sql(&keys);
            self.db(target)?.exec(&sql).await?;
        }
        for (target, values) in upserts {
            let sql = t.replace_sql(&values);
            self.db(target)?.exec(&sql).await?;
        }
        Ok(pks.len() as u64)
    }

    /// Applies logged changes until the logs are empty or `deadline` passes. Returns whether
    /// they are empty.
    pub async fn drain(&mut self, state: &mut ReshardState, deadline: Instant) -> StepResult<bool> {
        loop {
            let (_, left) = self.catch_up_once(state, 5000).await?;
            if left == 0 {
                return Ok(true);
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
        }
    }

    /// Every row of `w` on `shard` that `keep` selects, by primary key, as digests.
    async fn digests(
        &mut self,
        w: &Work,
        shard: &str,
        keep: &(dyn Fn(Option<&str>) -> bool + Send + Sync),
    ) -> StepResult<HashMap<PkKey, u64>> {
        let mut out = HashMap::new();
        let mut after: Option<PkKey> = None;
        loop {
            let sql = w.page_sql(after.as_ref(), self.batch_rows.max(1000));
            let rows = self.db(shard)?.rows(&sql).await?;
            for r in &rows {
                let (pk, key, values) = w.info.split(r);
                if keep(key.as_deref()) {
                    out.insert(pk_key(pk), digest(values));
                }
            }
            if rows.len() < self.batch_rows.max(1000) {
                return Ok(out);
            }
            after = rows.last().map(|r| pk_key(w.info.split(r).0));
        }
    }

    /// Compares, per work and target, the rows that move on the source with those on the
    /// target (count and per-row digest). Rows that differ must all have a change waiting in
    /// the log (changed since, applied at the next catch-up); any other difference stops the
    /// move with where it is. The catch-up must not run meanwhile (the caller's loop).
    pub async fn verify(&mut self, state: &mut ReshardState) -> StepResult<()> {
        for w in self.work.clone() {
            for target in &w.targets {
                let new = self.new.clone();
                let old = self.old.clone();
                let source_rows = {
                    let w2 = w.clone();
                    let t = target.clone();
                    let n = new.clone();
                    self.digests(&w, &w.source.clone(), &move |k| {
                        w2.destinations(k, &n)
                            .map(|d| d.contains(&t.as_str()))
                            .unwrap_or(true)
                    })
                    .await?
                };
                let target_rows = {
                    let w2 = w.clone();
                    let t = target.clone();
                    self.digests(&w, target, &move |k| w2.came_from(k, &t, &old, &new))
                        .await?
                };
                let mut differ: Vec<&PkKey> = source_rows
                    .iter()
                    .filter(|(k, d)| target_rows.get(*k) != Some(d))
                    .map(|(k, _)| k)
                    .collect();
                differ.extend(target_rows.keys().filter(|k| !source_rows.contains_key(*k)));
                if !differ.is_empty() {
                    let pending = self.pending_keys(&w).await?;
                    let unexplained: Vec<&&PkKey> =
                        differ.iter().filter(|k| !pending.contains(**k)).collect();
                    if let Some(first) = unexplained.first() {
                        return Err(format!(
                            "verify: table {} from {} to {}: {} rows on the source, {} on the \
                             target, {} differ with no change pending (first: primary key ({}))",
                            w.config_name,
                            w.source,
                            target,
                            source_rows.len(),
                            target_rows.len(),
                            unexplained.len(),
                            first.join(", ")
                        ));
                    }
                }
                if let Some(p) = state.pair_mut(&w.config_name, &w.source, target) {
                    p.verified = (source_rows.len() - differ.len().min(source_rows.len())) as u64;
                }
            }
        }
        Ok(())
    }

    /// The primary keys of `w` with a change waiting in its source's log.
    async fn pending_keys(&mut self, w: &Work) -> StepResult<HashSet<PkKey>> {
        let sql = format!(
            "SELECT pk FROM shardproxy.reshard_changes WHERE db_name = {} AND table_name = {}",
            literal(w.info.db.as_bytes()),
            literal(w.info.name.as_bytes())
        );
        let rows = self.db(&w.source)?.rows(&sql).await?;
        Ok(rows
            .iter()
            .filter_map(|r| r.first().cloned().flatten())
            .filter_map(|b| pk_from_json(&String::from_utf8_lossy(&b)))
            .collect())
    }

    /// Deletes from every source the rows of its sharded tables that moved away (after the
    /// cutover only). Returns the rows deleted.
    pub async fn cleanup(&mut self) -> StepResult<u64> {
        let mut deleted = 0;
        for w in self.work.clone() {
            if w.reference {
                continue;
            }
            let mut after: Option<PkKey> = None;
            loop {
                let sql = w.page_sql(after.as_ref(), self.batch_rows);
                let rows = self.db(&w.source)?.rows(&sql).await?;
                let mut gone = Vec::new();
                for r in &rows {
                    let (pk, key, _) = w.info.split(r);
                    if !w.destinations(key.as_deref(), &self.new)?.is_empty() {
                        gone.push(pk_key(pk));
                    }
                }
                if !gone.is_empty() {
                    let sql = w.info.delete_sql(&gone);
                    deleted += self.db(&w.source)?.exec(&sql).await?;
                }
                if rows.len() < self.batch_rows {
                    break;
                }
                after = rows.last().map(|r| pk_key(w.info.split(r).0));
            }
        }
        Ok(deleted)
    }

    /// Drops the change-log triggers on every source and empties the logs.
    pub async fn drop_triggers(&mut self) -> StepResult<()> {
        for w in self.work.clone() {
            super::reshard_sql::drop_triggers(self.db(&w.source)?, &w.info).await?;
        }
        for s in unique(self.work.iter().map(|w| w.source.clone())) {
            self.db(&s)?
                .exec("DELETE FROM shardproxy.reshard_changes")
                .await?;
        }
        Ok(())
    }

    /// Removes the copies from the targets: a shard the old ring does not have loses the
    /// tables the move created; a shard that serves already loses only the rows that came
    /// from the work's source.
    pub async fn remove_copies(&mut self, old_shards: &[String]) -> StepResult<()> {
        let mut dropped: HashSet<(String, String, String)> = HashSet::new();
        for w in self.work.clone() {
            for target in &w.targets {
                if !old_shards.contains(target) {
                    if dropped.insert((target.clone(), w.info.db.clone(), w.info.name.clone())) {
                        let sql = format!("DROP TABLE IF EXISTS {}", w.info.qualified());
                        self.db(target)?.exec(&sql).await?;
                    }
                    continue;
                }
                let (old, new) = (self.old.clone(), self.new.clone());
                let w2 = w.clone();
                let t = target.clone();
                let keys: Vec<PkKey> = self
                    .digests(&w, target, &move |k| w2.came_from(k, &t, &old, &new))
                    .await?
                    .into_keys()
                    .collect();
                for chunk in keys.chunks(self.batch_rows.max(1)) {
                    let sql = w.info.delete_sql(chunk);
                    self.db(target)?.exec(&sql).await?;
                }
            }
        }
        Ok(())
    }
}

/// The `DELETE` of applied log entries, by their sequence numbers, one primary-key lookup each.
///
/// A plain `DELETE … WHERE seq IN (…)` is run by InnoDB as a scan of the whole log as soon as
/// the list is long against the log's size (on MariaDB 10.11, from about 100 of 600 entries,
/// and `FORCE INDEX (PRIMARY)` only turns it into a full index scan), and a locking scan waits
/// on every row it meets, among them the entries that open client transactions' triggers wrote
/// and hold locked: the catch-up stalls until those transactions end, and stops with 1205 past
/// `innodb_lock_wait_timeout`. Here the numbers are a `JSON_TABLE` read first
/// (`STRAIGHT_JOIN`), and each is looked up in the log by its primary key (`eq_ref`, checked
/// with `EXPLAIN` for 5 to 3000 numbers): only the listed entries are locked (all committed:
/// the catch-up read them), with no gap lock (unique-key equality), so a client's uncommitted
/// entry is neither waited for nor blocked. The numbers are the server's own decimal text;
/// the target is named by its table, not an alias (an alias needs a current database).
fn forget_sql(seqs: &[String]) -> String {
    format!(
        "DELETE shardproxy.reshard_changes FROM JSON_TABLE('[{}]', '$[*]' COLUMNS (seq BIGINT \
         UNSIGNED PATH '$')) AS v STRAIGHT_JOIN shardproxy.reshard_changes ON \
         shardproxy.reshard_changes.seq = v.seq",
        seqs.join(",")
    )
}

/// The distinct values of `it`, in first-seen order.
fn unique(it: impl Iterator<Item = String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for s in it {
        if !out.contains(&s) {
            out.push(s);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logged_keys_match_read_keys() {
        assert_eq!(
            pk_from_json("[5]").unwrap(),
            pk_key(&[Some(Bytes::from("5"))])
        );
        assert_eq!(
            pk_from_json("[\"a'b\", 7]").unwrap(),
            pk_key(&[Some(Bytes::from("a'b")), Some(Bytes::from("7"))])
        );
        assert!(pk_from_json("not json").is_none());
        assert_ne!(
            digest(&[Some(Bytes::from("31")), None]),
            digest(&[None, Some(Bytes::from("31"))])
        );
    }

    #[test]
    fn applied_entries_are_forgotten_by_primary_key_lookups() {
        assert_eq!(
            forget_sql(&["7".into(), "12".into()]),
            "DELETE shardproxy.reshard_changes FROM JSON_TABLE('[7,12]', '$[*]' COLUMNS (seq \
             BIGINT UNSIGNED PATH '$')) AS v STRAIGHT_JOIN shardproxy.reshard_changes ON \
             shardproxy.reshard_changes.seq = v.seq"
        );
    }

    #[test]
    fn rows_go_where_the_new_ring_says() {
        let old = Ring::new(&[("s1".into(), 1), ("s2".into(), 1)], 64);
        let new = Ring::new(&[("s1".into(), 1), ("s2".into(), 1), ("s3".into(), 1)], 64);
        let w = Work {
            config_name: "t".into(),
            info: TableInfo {
                db: "d".into(),
                name: "t".into(),
                columns: vec!["id".into()],
                pk: vec!["id".into()],
                key: Some("id".into()),
            },
            source: "s1".into(),
            targets: vec!["s3".into()],
            reference: false,
        };
        let mut moved = 0;
        for v in 0..2000i64 {
            let k = v.to_string();
            let kv = KeyValue::from(v);
            if old.shard_for(&kv) != "s1" {
                continue;
            }
            let d = w.destinations(Some(&k), &new).unwrap();
            assert_eq!(d.is_empty(), new.shard_for(&kv) == "s1", "key {v}");
            if !d.is_empty() {
                moved += 1;
                assert!(w.came_from(Some(&k), "s3", &old, &new));
            }
        }
        assert!(moved > 100, "{moved}");
        assert!(w.destinations(None, &new).is_err());
    }
}
