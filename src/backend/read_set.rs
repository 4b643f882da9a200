//! Reads on replicas: which server of a shard answers a read, and why.
//!
//! The session decides whether a statement may leave the primary at all (a read outside a
//! transaction that locks nothing, from a session with no state a replica connection lacks,
//! with `read_from` other than `primary`); this module decides which replica, if any, may
//! answer it. A replica is in the read set while its health check passes, its replication
//! threads run and its lag ([`super::lag`], measured from GTID positions) is within the
//! shard's `max_replica_lag_ms`; anything else leaves it out without an error reaching a
//! client, and it comes back at the first check that finds it fit again. For read-your-writes
//! a session also passes the GTID of its last write on the shard: only a replica whose
//! observed applied position holds it may answer (an observed position is a past state of
//! the replica, so this never sends a read to a replica that lacks the write).
//!
//! Every decision is a [`ReadTarget`] that renders its own reason (PREVIEW shows it).

use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::gtid::GtidPos;
use super::pool::{Pool, Role};
use super::topology::ShardPools;

/// Where one read goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadTarget {
    /// The shard's primary, and why not a replica.
    Primary(OnPrimary),
    /// This replica (its address and its lag when last checked).
    Replica { addr: Arc<str>, lag_ms: u64 },
}

/// Why a statement stays on the primary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnPrimary {
    /// The session's `read_from` is `primary` (the default).
    Setting,
    /// Not a plain read: a write, DDL, SHOW or another statement a replica must not answer.
    NotARead,
    /// The read locks rows or has side effects (`FOR UPDATE`, `LOCK IN SHARE MODE`,
    /// `GET_LOCK()`, sequences, `INTO OUTFILE` …): `what`.
    LocksOrSideEffects(&'static str),
    /// The session is in a transaction (or autocommit is off, or a BEGIN waits).
    Transaction,
    /// The session holds state a replica connection lacks (temporary table, user lock,
    /// user variable …).
    SessionState(&'static str),
    /// No replica is up, replicating and within `max_replica_lag_ms`.
    NoUsableReplica,
    /// No usable replica has applied the session's last write on this shard yet.
    NotCaughtUp,
    /// The statement reads no table: it runs where the session's connection is.
    NoTable,
}

impl fmt::Display for OnPrimary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OnPrimary::Setting => write!(f, "read_from = primary"),
            OnPrimary::NotARead => write!(f, "not a plain read"),
            OnPrimary::LocksOrSideEffects(what) => write!(f, "the read {what}"),
            OnPrimary::Transaction => write!(f, "in a transaction"),
            OnPrimary::SessionState(why) => {
                write!(f, "the session holds state a replica lacks ({why})")
            }
            OnPrimary::NoUsableReplica => write!(
                f,
                "no replica up, replicating and within max_replica_lag_ms"
            ),
            OnPrimary::NotCaughtUp => {
                write!(
                    f,
                    "no usable replica has applied the session's last write yet"
                )
            }
            OnPrimary::NoTable => write!(f, "reads no table"),
        }
    }
}

impl fmt::Display for ReadTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadTarget::Primary(why) => write!(f, "primary ({why})"),
            ReadTarget::Replica { addr, lag_ms } => write!(f, "replica {addr} (lag {lag_ms} ms)"),
        }
    }
}

/// Whether `pool` may answer reads now: a replica, up, replicating, with a known lag within
/// `max_lag_ms`; returns its lag.
pub fn usable(pool: &Pool, max_lag_ms: u64) -> Option<u64> {
    if pool.role() != Role::Replica || !pool.stats.healthy.load(Ordering::Relaxed) {
        return None;
    }
    let lag = pool.stats.lag_ms.load(Ordering::Relaxed);
    (lag >= 0 && lag as u64 <= max_lag_ms).then_some(lag as u64)
}

/// A replica of `shard` for a read, taken in turn among the usable ones; `written`: the
/// session's last write on the shard, which the replica must have applied. `Err`: why the
/// primary answers instead.
pub fn choose(
    shard: &ShardPools,
    max_lag_ms: u64,
    written: Option<&GtidPos>,
) -> Result<(Arc<Pool>, u64), OnPrimary> {
    let n = shard.replicas.len();
    if n == 0 {
        return Err(OnPrimary::NoUsableReplica);
    }
    let start = shard.state.next_read.fetch_add(1, Ordering::Relaxed);
    let mut behind_write = false;
    for i in 0..n {
        let r = &shard.replicas[(start + i) % n];
        let Some(lag) = usable(r, max_lag_ms) else {
            continue;
        };
        if let Some(w) = written {
            let o = r.stats.observed.lock().unwrap_or_else(|e| e.into_inner());
            if !(o.slave_pos.contains(w) || o.current_pos.contains(w)) {
                behind_write = true;
                continue;
            }
        }
        return Ok((r.clone(), lag));
    }
    Err(if behind_write {
        OnPrimary::NotCaughtUp
    } else {
        OnPrimary::NoUsableReplica
    })
}

/// A usable replica of `shard`, taken in turn, whatever it has applied (for a read that
/// will wait on it for the session's last write: `MASTER_GTID_WAIT`).
pub fn any_usable(shard: &ShardPools, max_lag_ms: u64) -> Option<(Arc<Pool>, u64)> {
    choose(shard, max_lag_ms, None).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::topology::Topology;

    fn topology() -> Topology {
        let mut c = crate::plan::rules::tests::test_config(1);
        c.shards[0].replicas = vec!["127.0.0.1:1".into(), "127.0.0.1:2".into()];
        Topology::from_config(&c, 1)
    }

    fn set(p: &Pool, healthy: bool, lag_ms: i64, applied: &str) {
        p.stats.healthy.store(healthy, Ordering::Relaxed);
        p.stats.lag_ms.store(lag_ms, Ordering::Relaxed);
        p.stats.observed.lock().unwrap().slave_pos = GtidPos::parse(applied).unwrap();
    }

    #[test]
    fn only_fit_replicas_answer_reads_in_turn() {
        let t = topology();
        let s = &t.shards[0];
        let (a, b) = (&s.replicas[0], &s.replicas[1]);
        // A replica whose lag is unknown (not checked yet, or not replicating) is out.
        assert_eq!(
            choose(s, 1000, None).err(),
            Some(OnPrimary::NoUsableReplica)
        );
        set(a, true, 10, "0-1-5");
        set(b, true, 20, "0-1-9");
        let picks: Vec<String> = (0..4)
            .map(|_| choose(s, 1000, None).unwrap().0.addr.clone())
            .collect();
        assert!(
            picks.contains(&a.addr) && picks.contains(&b.addr),
            "{picks:?}"
        );
        // Past the bound, or down: out; back when fit again.
        set(b, true, 5000, "0-1-9");
        set(a, false, 10, "0-1-5");
        assert_eq!(
            choose(s, 1000, None).err(),
            Some(OnPrimary::NoUsableReplica)
        );
        set(b, true, 0, "0-1-9");
        assert_eq!(choose(s, 1000, None).unwrap().0.addr, b.addr);
        // Read-your-writes: only a replica that applied the session's write.
        set(a, true, 0, "0-1-5");
        let w = GtidPos::parse("0-1-7").unwrap();
        for _ in 0..4 {
            assert_eq!(choose(s, 1000, Some(&w)).unwrap().0.addr, b.addr);
        }
        let w = GtidPos::parse("0-1-10").unwrap();
        assert_eq!(
            choose(s, 1000, Some(&w)).err(),
            Some(OnPrimary::NotCaughtUp)
        );
        // The primary is never in the read set.
        assert!(usable(&s.primary, u64::MAX).is_none());
    }

    #[test]
    fn decisions_render_their_reason() {
        assert_eq!(
            ReadTarget::Primary(OnPrimary::LocksOrSideEffects("locks rows (FOR UPDATE)"))
                .to_string(),
            "primary (the read locks rows (FOR UPDATE))"
        );
        assert_eq!(
            ReadTarget::Replica {
                addr: Arc::from("127.0.0.1:3307"),
                lag_ms: 0
            }
            .to_string(),
            "replica 127.0.0.1:3307 (lag 0 ms)"
        );
    }
}
