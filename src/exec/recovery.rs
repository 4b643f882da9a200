//! Recovery of two-phase commits: finishes the prepared XA legs that a coordinator left
//! behind (a proxy killed between `XA PREPARE` and `XA COMMIT`, a connection that broke).
//!
//! Every proxy runs a round at start and then every `transactions.recovery_interval_ms`
//! ([`run`]); a round ([`recover_round`]) does, over every shard's *current* primary:
//! 1. reads the old `commit` decisions of each shard (for the cleanup in step 4);
//! 2. `XA RECOVER`, keeping the xids with the proxy's format id ([`super::twopc::FORMAT_ID`]);
//! 3. for each prepared leg, reads its transaction's decision on the home shard named in the
//!    gtrid. No decision and older than `recovery_timeout_ms`: it writes `abort` itself
//!    (`INSERT IGNORE`, which waits for a coordinator's uncommitted `commit` row and fences
//!    a coordinator that has not written one yet: see [`super::twopc`]) and reads again. Then
//!    `XA COMMIT` or `XA ROLLBACK` of the leg. `XAER_NOTA` (1397) means another proxy finished
//!    it first, or its coordinator's session still owns it: nothing to do this round;
//! 4. deletes the `commit` rows read in step 1 whose transaction has no prepared leg left on
//!    any shard (only when every shard answered `XA RECOVER`: a leg on an unreachable shard
//!    still needs its row), and the `abort` rows older than
//!    [`super::twopc::ABORT_RETENTION`].
//!
//! Several proxies may run rounds at once: the decision row is unique per xid, so they all
//! apply the same decision, and each leg is committed or rolled back once (the second
//! attempt gets 1397). Recovery takes the shards' current primaries each round, so after a
//! failover it finishes the legs the promoted replica holds (MariaDB writes `XA PREPARE` to
//! the binlog, so a replica applies it as a prepared transaction).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::twopc::{quote, xid_sql, Xid, CREATE_DECISIONS, DECISIONS_TABLE, ER_XAER_NOTA};
use super::twopc::{ABORT_RETENTION, FORMAT_ID};
use super::{Access, ShardConn, Shards};
use crate::backend::conn::{BackendConn, BackendError, QueryResult};
use crate::backend::topology::Topology;
use crate::config::Config;
use crate::protocol::constants::DEFAULT_COLLATION;
use crate::protocol::packets::ErrInfo;

/// How long a `commit` decision is kept at least (its legs are finished well before).
const COMMIT_ROW_MIN_AGE_S: u64 = 30;

/// One prepared XA leg of the proxy's, as `XA RECOVER` listed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedLeg {
    /// The shard whose primary holds it.
    pub shard: String,
    /// Its transaction's gtrid.
    pub gtrid: String,
    /// Its branch qualifier (the leg's shard name).
    pub bqual: String,
    /// What this round did with it.
    pub action: Action,
}

/// What a round did with one prepared leg.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Committed: its decision is `commit`.
    Committed,
    /// Rolled back: its decision is `abort` (written by recovery when there was none).
    RolledBack,
    /// Left prepared: younger than the timeout without a decision, its home shard
    /// unreachable, or owned by a live session or another proxy (1397).
    Waiting,
}

impl Action {
    /// The name `SHOW TRANSACTIONS` shows.
    pub fn name(self) -> &'static str {
        match self {
            Action::Committed => "committed by recovery",
            Action::RolledBack => "rolled back by recovery",
            Action::Waiting => "prepared, waiting",
        }
    }
}

/// What one round found and did.
#[derive(Debug, Default, Clone)]
pub struct Round {
    /// Every prepared leg of the proxy's that `XA RECOVER` listed.
    pub prepared: Vec<PreparedLeg>,
    /// Decision rows deleted.
    pub deleted: u64,
    /// Shards that could not be reached or answered with an error.
    pub errors: Vec<String>,
}

/// Runs one recovery round over `shards` (see the module doc). `timeout`: how old a
/// prepared leg without a decision must be to be rolled back; `skip`: gtrids of this proxy's
/// own transactions still being committed (never fenced by their own proxy).
pub async fn recover_round<S: Shards>(
    shards: &mut S,
    names: &[String],
    timeout: Duration,
    skip: &HashSet<String>,
    create_table: bool,
) -> Round {
    let mut round = Round::default();
    let mut conns: HashMap<String, S::Conn> = HashMap::new();
    for name in names {
        match shards.lease(name, Access::Write).await {
            Ok(c) => {
                conns.insert(name.clone(), c);
            }
            Err(e) => round.errors.push(format!("{name}: {}", e.message)),
        }
    }
    // 1. Old commit decisions (read before XA RECOVER: see step 4).
    let mut old_commits: HashMap<String, Vec<String>> = HashMap::new();
    for (name, c) in conns.iter_mut() {
        if create_table {
            for sql in CREATE_DECISIONS {
                if let Err(e) = c.query(sql).await {
                    round.errors.push(format!("{name}: {e}"));
                }
            }
        }
        let sql = format!(
            "SELECT xid FROM {DECISIONS_TABLE} WHERE decision = 'commit' AND decided_at < NOW(6) - INTERVAL {COMMIT_ROW_MIN_AGE_S} SECOND"
        );
        if let Ok(QueryResult::Rows(rs)) = c.query(&sql).await {
            let xids = rs
                .rows
                .iter()
                .filter_map(|r| r.first().cloned().flatten())
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .collect();
            old_commits.insert(name.clone(), xids);
        }
    }
    // 2. Prepared legs.
    let mut all_listed = round.errors.is_empty();
    for name in names {
        let Some(c) = conns.get_mut(name) else {
            continue;
        };
        match c.query("XA RECOVER").await {
            Ok(QueryResult::Rows(rs)) => {
                for r in &rs.rows {
                    if let Some((gtrid, bqual)) = parse_recover_row(r) {
                        round.prepared.push(PreparedLeg {
                            shard: name.clone(),
                            gtrid,
                            bqual,
                            action: Action::Waiting,
                        });
                    }
                }
            }
            other => {
                all_listed = false;
                round
                    .errors
                    .push(format!("{name}: XA RECOVER: {}", describe(other)));
            }
        }
    }
    // 3. Resolve each by its decision.
    let now_ms = unix_ms();
    for i in 0..round.prepared.len() {
        let leg = round.prepared[i].clone();
        if skip.contains(&leg.gtrid) {
            continue;
        }
        let Some(home) = Xid::home_of(&leg.gtrid).map(str::to_string) else {
            continue;
        };
        let Some(hc) = conns.get_mut(&home) else {
            continue;
        };
        let mut decision = read_decision(hc, &leg.gtrid).await;
        let old = Xid::started_ms(&leg.gtrid)
            .is_none_or(|t| now_ms.saturating_sub(t) >= timeout.as_millis() as u64);
        if decision.is_none() && old {
            let fence = format!(
                "SET STATEMENT innodb_lock_wait_timeout = 5 FOR INSERT IGNORE INTO {DECISIONS_TABLE} (xid, decision) VALUES ({}, 'abort')",
                quote(&leg.gtrid)
            );
            if hc.query(&fence).await.is_ok() {
                decision = read_decision(hc, &leg.gtrid).await;
            }
        }
        let Some(commit) = decision else {
            continue;
        };
        let Some(c) = conns.get_mut(&leg.shard) else {
            continue;
        };
        let sql = format!(
            "XA {} {}",
            if commit { "COMMIT" } else { "ROLLBACK" },
            xid_sql(&leg.gtrid, &leg.bqual)
        );
        match c.query(&sql).await {
            Ok(_) => {
                crate::metrics::record_xa_recovery(commit);
                tracing::info!(shard = %leg.shard, xid = %leg.gtrid, commit, "recovery resolved a prepared XA leg");
                round.prepared[i].action = if commit {
                    Action::Committed
                } else {
                    Action::RolledBack
                };
            }
            Err(BackendError::Server(e)) if e.code == ER_XAER_NOTA => {}
            Err(e) => round.errors.push(format!("{}: {sql}: {e}", leg.shard)),
        }
    }
    // 4. Cleanup of the decision log.
    if all_listed {
        let still: HashSet<&str> = round
            .prepared
            .iter()
            .filter(|p| p.action == Action::Waiting)
            .map(|p| p.gtrid.as_str())
            .collect();
        for (name, xids) in &old_commits {
            let done: Vec<String> = xids
                .iter()
                .filter(|x| !still.contains(x.as_str()))
                .map(|x| quote(x))
                .collect();
            let Some(c) = conns.get_mut(name) else {
                continue;
            };
            for chunk in done.chunks(500) {
                let sql = format!(
                    "DELETE FROM {DECISIONS_TABLE} WHERE decision = 'commit' AND xid IN ({})",
                    chunk.join(", ")
                );
                if let Ok(QueryResult::Ok(ok)) = c.query(&sql).await {
                    round.deleted += ok.affected_rows;
                }
            }
            let sql = format!(
                "DELETE FROM {DECISIONS_TABLE} WHERE decision = 'abort' AND decided_at < NOW(6) - INTERVAL {} SECOND",
                ABORT_RETENTION.as_secs()
            );
            if let Ok(QueryResult::Ok(ok)) = c.query(&sql).await {
                round.deleted += ok.affected_rows;
            }
        }
    }
    for (name, c) in conns {
        shards.give_back(&name, c);
    }
    round
}

/// `Some(true)` for a `commit` decision, `Some(false)` for `abort`, `None` when there is none
/// (or it cannot be read).
async fn read_decision<C: ShardConn>(c: &mut C, gtrid: &str) -> Option<bool> {
    let sql = format!(
        "SELECT decision FROM {DECISIONS_TABLE} WHERE xid = {}",
        quote(gtrid)
    );
    match c.query(&sql).await {
        Ok(QueryResult::Rows(rs)) => rs
            .rows
            .first()
            .and_then(|r| r.first().cloned().flatten())
            .map(|d| &d[..] == b"commit"),
        _ => None,
    }
}

/// One `XA RECOVER` row (`formatID, gtrid_length, bqual_length, data`) if it is the proxy's.
pub fn parse_recover_row(r: &[Option<bytes::Bytes>]) -> Option<(String, String)> {
    let text = |i: usize| {
        r.get(i)
            .cloned()
            .flatten()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
    };
    let format: u64 = text(0)?.parse().ok()?;
    if format != FORMAT_ID {
        return None;
    }
    let glen: usize = text(1)?.parse().ok()?;
    let data = r.get(3).cloned().flatten()?;
    if glen > data.len() {
        return None;
    }
    Some((
        String::from_utf8_lossy(&data[..glen]).into_owned(),
        String::from_utf8_lossy(&data[glen..]).into_owned(),
    ))
}

fn describe(r: Result<QueryResult, BackendError>) -> String {
    match r {
        Ok(_) => "unexpected answer".into(),
        Err(e) => e.to_string(),
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The last round's prepared legs (for `SHOW TRANSACTIONS`).
pub fn last_round() -> &'static Mutex<Round> {
    static LAST: OnceLock<Mutex<Round>> = OnceLock::new();
    LAST.get_or_init(Default::default)
}

impl ShardConn for BackendConn {
    async fn query(&mut self, sql: &str) -> Result<QueryResult, BackendError> {
        BackendConn::query(self, sql).await
    }

    async fn query_pipelined(
        &mut self,
        first: &str,
        then: &str,
    ) -> (
        Result<QueryResult, BackendError>,
        Result<QueryResult, BackendError>,
    ) {
        BackendConn::query_pipelined(self, first, then).await
    }

    fn forget_insert_id(&mut self) {}
}

/// Recovery's own connections to the shards' current primaries (not pooled: they never
/// carry a client's session state), kept between rounds and reopened after a failure or a
/// change of primary.
pub struct Primaries {
    /// The topology of this round.
    topology: Arc<Topology>,
    /// Open connections by shard, with the primary address they reach.
    conns: HashMap<String, (String, BackendConn)>,
}

impl Primaries {
    /// No connections yet.
    pub fn new(topology: Arc<Topology>) -> Primaries {
        Primaries {
            topology,
            conns: HashMap::new(),
        }
    }

    /// Uses `topology` for the next round (a reload or a failover may have changed it).
    pub fn set_topology(&mut self, topology: Arc<Topology>) {
        self.topology = topology;
    }
}

impl Shards for Primaries {
    type Conn = BackendConn;

    async fn lease(&mut self, shard: &str, _access: Access) -> Result<BackendConn, ErrInfo> {
        let Some(pools) = self.topology.shard(shard) else {
            return Err(ErrInfo::new(
                (1105, "HY000"),
                format!("Unknown shard '{shard}'"),
            ));
        };
        let addr = pools.primary.addr.clone();
        if let Some((a, c)) = self.conns.remove(shard) {
            if a == addr {
                return Ok(c);
            }
        }
        BackendConn::connect(&pools.primary.connect_params(0, DEFAULT_COLLATION))
            .await
            .map_err(|e| e.to_err_info())
    }

    fn give_back(&mut self, shard: &str, conn: BackendConn) {
        self.conns
            .insert(shard.to_string(), (conn.addr.clone(), conn));
    }

    fn lost(&mut self, _shard: &str, _conn: BackendConn) {}
}

/// Runs recovery rounds until shutdown: one at start (which also creates the decision log
/// on every shard), then every `recovery_interval_ms`. `topology`, `config`: the running
/// proxy's current ones.
pub async fn run(
    topology: impl Fn() -> Arc<Topology>,
    config: impl Fn() -> Arc<Config>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut primaries = Primaries::new(topology());
    let mut first = true;
    loop {
        let cfg = config();
        primaries.set_topology(topology());
        let names: Vec<String> = cfg.shards.iter().map(|s| s.name.clone()).collect();
        let skip: HashSet<String> = super::twopc::open_transactions()
            .lock()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        let timeout = Duration::from_millis(cfg.transactions.recovery_timeout_ms);
        let round = recover_round(&mut primaries, &names, timeout, &skip, first).await;
        if !round.errors.is_empty() {
            tracing::warn!(errors = ?round.errors, "XA recovery round incomplete");
        }
        // Created on every shard only when all answered; else tried again next round.
        first = first && !round.errors.is_empty();
        if let Ok(mut last) = last_round().lock() {
            *last = round;
        }
        let wait = Duration::from_millis(cfg.transactions.recovery_interval_ms.max(1));
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => return,
        }
    }
}
