//! Two-phase commit: one transaction on several shards, committed on all of them or on none.
//!
//! # The protocol
//! A transaction starts as an ordinary one on its first shard, the **home** shard (plain
//! `BEGIN`: a transaction that never leaves that shard pays nothing). When it first writes to
//! another shard, that shard's **leg** starts with `XA START xid` (the session sends it in
//! one packet with that first statement when it can); the home leg stays a plain
//! transaction. At COMMIT ([`commit`], or [`decide`] then [`finish`]):
//! 1. every XA leg runs `XA END` and `XA PREPARE` (pipelined: one round trip; its changes
//!    are now durable and can only be committed or rolled back), while the home leg, at the
//!    same time, inserts the **decision row** `(xid, 'commit')` into [`DECISIONS_TABLE`]
//!    inside its own transaction;
//! 2. `COMMIT` on the home leg. This is the commit point: the home shard's changes and the
//!    decision become durable together, atomically, on one server. Any failure before it
//!    rolls every leg back and the client gets an error;
//! 3. `XA COMMIT` on every XA leg ([`finish`]). A failure here changes nothing about the
//!    outcome: the leg stays prepared and recovery ([`super::recovery`]) commits it, because
//!    the decision row says so. Since nothing here can change the outcome, the session runs
//!    this phase after the client's OK (`frontend/session/finishing.rs`: the session's next
//!    use of that shard waits for it); a multi-shard write outside a transaction
//!    (`super::write`) runs it before answering.
//!
//! The decision is stored on a participant (as Vitess does), not on one proxy's disk, so any
//! proxy can finish the transaction after any crash. Storing it *inside* the home leg's own
//! transaction costs no extra commit: a two-shard commit is one `XA PREPARE`, one `COMMIT` and
//! one `XA COMMIT` (the first and the last are on the other shard).
//!
//! # Why it is atomic (and what fences a slow coordinator)
//! Recovery resolves a prepared leg by its transaction's decision row on the home shard. When
//! there is none, it inserts `(xid, 'abort')` itself before rolling the leg back. The primary
//! key orders the two writers: if the coordinator inserted its `commit` row first (not yet
//! committed), recovery's insert waits for the row lock and then finds `commit` (or nothing,
//! when the coordinator rolled back, and then writes `abort`); if recovery's `abort` row came
//! first, the coordinator's insert fails with a duplicate key and it rolls everything back.
//! Exactly one decision exists per xid, and every proxy reads the same one.
//!
//! `abort` rows are kept [`ABORT_RETENTION`]; a coordinator refuses to commit when its commit
//! started more than [`MAX_COMMIT_AGE`] ago, so it can never insert `commit` after an `abort`
//! row it would have collided with was deleted. `commit` rows are deleted by recovery once no
//! shard holds a prepared leg of theirs.
//!
//! # Xids
//! gtrid `<proxy>-<unix ms>-<counter>@<home shard>`, bqual the leg's shard name, format id
//! [`FORMAT_ID`] (which marks the transaction as the proxy's in `XA RECOVER`). The proxy part
//! is random per process, so xids are unique across proxies and restarts.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::{Leg, ShardConn};
use crate::backend::conn::BackendError;
use crate::protocol::packets::ErrInfo;

/// The decision log, one table per shard (every shard may be a transaction's home).
pub const DECISIONS_TABLE: &str = "shardproxy.xa_decisions";

/// Creates the decision log (run by recovery on every shard primary at start).
pub const CREATE_DECISIONS: &[&str] = &[
    "CREATE DATABASE IF NOT EXISTS shardproxy",
    "CREATE TABLE IF NOT EXISTS shardproxy.xa_decisions (\
     xid VARBINARY(64) NOT NULL PRIMARY KEY, \
     decision ENUM('commit','abort') NOT NULL, \
     decided_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)) ENGINE=InnoDB",
];

/// The XA format id of the proxy's transactions ("SPX").
pub const FORMAT_ID: u64 = 0x0053_5058;

/// How long `abort` decisions are kept.
pub const ABORT_RETENTION: Duration = Duration::from_secs(3600);

/// A coordinator whose commit began longer ago than this rolls back instead of committing
/// (see the module doc: it keeps a late `commit` row from outliving a deleted `abort` one).
pub const MAX_COMMIT_AGE: Duration = Duration::from_secs(600);

/// MariaDB's XAER_NOTA: the xid is not (or no longer) prepared here, or another session owns
/// it.
pub const ER_XAER_NOTA: u16 = 1397;

/// ER_DUP_ENTRY: another proxy's recovery already decided this transaction.
const ER_DUP_ENTRY: u16 = 1062;

/// The id of one distributed transaction (its gtrid).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Xid {
    /// `<proxy>-<unix ms>-<counter>@<home shard>`.
    pub gtrid: String,
}

impl Xid {
    /// A new xid for a transaction whose home (first) shard is `home`.
    pub fn new(home: &str) -> Xid {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        Xid {
            gtrid: format!("{:08x}-{}-{n}@{home}", proxy_id(), unix_ms()),
        }
    }

    /// The home shard named in a gtrid.
    pub fn home_of(gtrid: &str) -> Option<&str> {
        gtrid.split_once('@').map(|(_, h)| h)
    }

    /// When the transaction with this gtrid was given its xid (unix ms), if it is one of ours.
    pub fn started_ms(gtrid: &str) -> Option<u64> {
        let (head, _) = gtrid.split_once('@')?;
        head.split('-').nth(1)?.parse().ok()
    }

    /// The home shard of this transaction.
    pub fn home(&self) -> &str {
        Xid::home_of(&self.gtrid).unwrap_or("")
    }

    /// The XA xid of this transaction's leg on `shard`, as SQL: `'gtrid','shard',format`.
    pub fn sql(&self, shard: &str) -> String {
        xid_sql(&self.gtrid, shard)
    }
}

/// `'gtrid','bqual',FORMAT_ID` with both strings quoted.
pub fn xid_sql(gtrid: &str, bqual: &str) -> String {
    format!("{},{},{FORMAT_ID}", quote(gtrid), quote(bqual))
}

/// A string literal (quotes and backslashes escaped).
pub fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
}

/// This process's random id (part of every xid).
fn proxy_id() -> u32 {
    static ID: OnceLock<u32> = OnceLock::new();
    *ID.get_or_init(rand::random::<u32>)
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// One XA leg of a distributed transaction: its shard and its connection (`None` once the
/// connection broke or was closed to hand a prepared leg to recovery).
pub type XaLeg<C> = Leg<Option<C>>;

/// How a two-phase commit ended.
#[derive(Debug, PartialEq)]
pub enum Ended {
    /// Committed: the decision is durable. `unfinished` names the legs whose `XA COMMIT`
    /// did not complete; they stay prepared and recovery commits them.
    Committed {
        /// Shards whose leg recovery will commit.
        unfinished: Vec<String>,
    },
    /// Rolled back on every shard (or left for recovery to roll back): the client's error.
    RolledBack(ErrInfo),
    /// The home shard's COMMIT got no answer: the decision may or may not be durable; the
    /// prepared legs are left to recovery, which follows the decision log.
    Unknown(ErrInfo),
}

/// How [`decide`] ended when it did not commit: the client's error.
#[derive(Debug, PartialEq)]
pub enum NotCommitted {
    /// Rolled back on every shard (or left for recovery to roll back).
    RolledBack(ErrInfo),
    /// The home shard's COMMIT got no answer: recovery follows the decision log.
    Unknown(ErrInfo),
}

impl NotCommitted {
    /// The client's error.
    pub fn into_error(self) -> ErrInfo {
        match self {
            NotCommitted::RolledBack(e) | NotCommitted::Unknown(e) => e,
        }
    }
}

impl From<NotCommitted> for Ended {
    fn from(n: NotCommitted) -> Ended {
        match n {
            NotCommitted::RolledBack(e) => Ended::RolledBack(e),
            NotCommitted::Unknown(e) => Ended::Unknown(e),
        }
    }
}

/// Commits a distributed transaction (see the module doc): [`decide`], then [`finish`] the
/// XA legs before returning. `home`: the home leg's connection (its plain transaction),
/// `None` when it broke; `legs`: the XA legs. A connection that broke, or that had to be
/// closed to hand its prepared leg to recovery, is set to `None`; the others are ready for
/// reuse.
pub async fn commit<C: ShardConn + Send>(
    xid: &Xid,
    home: &mut Option<C>,
    legs: &mut [XaLeg<C>],
) -> Ended {
    match decide(xid, home, legs).await {
        Ok(()) => Ended::Committed {
            unfinished: finish(xid, legs).await,
        },
        Err(failed) => failed.into(),
    }
}

/// Phases 1 and 2 of [`commit`]: prepares every XA leg, writes the decision and commits the
/// home leg. `Ok`: the transaction is committed (the decision is durable) and every leg
/// with a connection is prepared, to be finished by [`finish`] on that connection (or, if
/// its connection closes, by recovery); `Err`: how it ended otherwise (rolled back, or left
/// to recovery when the home COMMIT got no answer).
pub async fn decide<C: ShardConn + Send>(
    xid: &Xid,
    home: &mut Option<C>,
    legs: &mut [XaLeg<C>],
) -> Result<(), NotCommitted> {
    let started = Instant::now();
    let Some(h) = home.as_mut() else {
        rollback_legs(xid, legs).await;
        return Err(NotCommitted::RolledBack(lost_home(xid)));
    };
    // Phase 1: prepare every XA leg while the home leg writes the decision.
    let decide = format!(
        "INSERT INTO {DECISIONS_TABLE} (xid, decision) VALUES ({}, 'commit')",
        quote(&xid.gtrid)
    );
    let prepares = futures::future::join_all(legs.iter_mut().map(|leg| async move {
        let xid_sql = xid.sql(&leg.shard);
        let Some(c) = leg.conn.as_mut() else {
            return Err(format!("the connection to shard {} was lost", leg.shard));
        };
        // One round trip: a PREPARE after a failed END fails too (the leg is not idle).
        let (ended, prepared) = c
            .query_pipelined(
                &format!("XA END {xid_sql}"),
                &format!("XA PREPARE {xid_sql}"),
            )
            .await;
        ended.and(prepared).map(|_| ()).map_err(|e| {
            let text = format!("XA PREPARE failed on shard {}: {}", leg.shard, e);
            if matches!(e, BackendError::Lost { .. }) {
                leg.conn = None;
            }
            text
        })
    }));
    let (prepared, decided) = futures::join!(prepares, h.query(&decide));
    let mut failure = prepared.into_iter().find_map(Result::err);
    if let Err(e) = &decided {
        let why = match e {
            BackendError::Server(s) if s.code == ER_DUP_ENTRY => {
                "recovery already rolled this transaction back".to_string()
            }
            other => format!("the decision could not be written: {other}"),
        };
        failure.get_or_insert(format!("on home shard {}: {why}", xid.home()));
        if matches!(e, BackendError::Lost { .. }) {
            *home = None;
        }
    }
    if failure.is_none() && started.elapsed() > MAX_COMMIT_AGE {
        failure = Some("the commit took too long".into());
    }
    if let Some(why) = failure {
        abort(xid, home, legs).await;
        return Err(NotCommitted::RolledBack(rolled_back(&why)));
    }
    // Phase 2: the commit point.
    let h = home.as_mut().expect("checked above");
    match h.query("COMMIT").await {
        Ok(_) => {}
        Err(BackendError::Server(e)) => {
            // The server refused the COMMIT: the home leg (and its decision row) rolled back.
            rollback_legs(xid, legs).await;
            return Err(NotCommitted::RolledBack(rolled_back(&format!(
                "COMMIT failed on home shard {}: {}",
                xid.home(),
                e.message
            ))));
        }
        Err(e) => {
            *home = None;
            // The prepared legs must leave their connections so recovery can resolve them.
            for leg in legs.iter_mut() {
                leg.conn = None;
            }
            return Err(NotCommitted::Unknown(ErrInfo::new(
                (1180, "HY000"),
                format!(
                    "COMMIT of a transaction on several shards: no answer from home shard {} ({e}); it is committed on every shard or on none, as recovery will find",
                    xid.home()
                ),
            )));
        }
    }
    Ok(())
}

/// Phase 3 of [`commit`], once [`decide`] made the decision durable: `XA COMMIT` on every
/// XA leg, in parallel. Returns the shards whose leg did not finish: their connection is
/// closed (set to `None`), which hands the prepared leg over to recovery, which commits it
/// because the decision row says so.
pub async fn finish<C: ShardConn + Send>(xid: &Xid, legs: &mut [XaLeg<C>]) -> Vec<String> {
    futures::future::join_all(legs.iter_mut().map(|leg| async move {
        let sql = format!("XA COMMIT {}", xid.sql(&leg.shard));
        let c = leg.conn.as_mut()?;
        match c.query(&sql).await {
            Ok(_) => None,
            Err(_) => {
                leg.conn = None;
                Some(leg.shard.clone())
            }
        }
    }))
    .await
    .into_iter()
    .flatten()
    .collect()
}

/// Rolls a distributed transaction back: ROLLBACK on the home leg, `XA END` + `XA ROLLBACK`
/// on every XA leg. A leg whose connection breaks is rolled back by its server (an XA
/// transaction not yet prepared dies with its connection; a prepared one has no decision,
/// so recovery rolls it back).
pub async fn abort<C: ShardConn + Send>(xid: &Xid, home: &mut Option<C>, legs: &mut [XaLeg<C>]) {
    let home_rollback = async {
        if let Some(h) = home.as_mut() {
            if h.query("ROLLBACK").await.is_err() {
                *home = None;
            }
        }
    };
    futures::join!(home_rollback, rollback_legs(xid, legs));
}

/// `XA END` (ignored when the leg is already ended or prepared) and `XA ROLLBACK` on every
/// XA leg.
pub async fn rollback_legs<C: ShardConn + Send>(xid: &Xid, legs: &mut [XaLeg<C>]) {
    futures::future::join_all(legs.iter_mut().map(|leg| async move {
        let xid_sql = xid.sql(&leg.shard);
        let Some(c) = leg.conn.as_mut() else { return };
        let ended = c.query(&format!("XA END {xid_sql}")).await;
        if matches!(ended, Err(BackendError::Lost { .. })) {
            leg.conn = None;
            return;
        }
        match c.query(&format!("XA ROLLBACK {xid_sql}")).await {
            Ok(_) => {}
            Err(BackendError::Server(e)) if e.code == ER_XAER_NOTA => {}
            Err(_) => leg.conn = None,
        }
    }))
    .await;
}

fn rolled_back(why: &str) -> ErrInfo {
    ErrInfo::new(
        (1180, "HY000"),
        format!("Transaction on several shards rolled back: {why}"),
    )
}

fn lost_home(xid: &Xid) -> ErrInfo {
    rolled_back(&format!(
        "the connection to home shard {} was lost",
        xid.home()
    ))
}

/// What the admin port lists about one open distributed transaction.
#[derive(Debug, Clone)]
pub struct OpenTransaction {
    /// The client session running it.
    pub session: u32,
    /// Its home shard and then its XA legs' shards.
    pub shards: Vec<String>,
    /// `active` until COMMIT, then `committing` / `rolling back`.
    pub state: &'static str,
    /// When it reached its second shard.
    pub since: Instant,
}

/// Open distributed transactions of this proxy by gtrid (for `SHOW TRANSACTIONS`).
pub fn open_transactions() -> &'static Mutex<BTreeMap<String, OpenTransaction>> {
    static OPEN: OnceLock<Mutex<BTreeMap<String, OpenTransaction>>> = OnceLock::new();
    OPEN.get_or_init(Default::default)
}
