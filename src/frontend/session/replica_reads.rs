//! Reads on replicas: the session's side of the read set ([`crate::backend::read_set`]).
//!
//! A read (a text statement, or the execute of a prepared one: `session::prepared`, which
//! prepares it on the replica's connection as needed) may leave the primary when all of these hold, checked in this order (the first
//! that fails is the reason PREVIEW shows, an [`OnPrimary`]):
//! 1. the session's `read_from` is `replica` or `replica_preferred` (the user's `[[users]]`
//!    entry, or `SET shardproxy_read_from = ...`);
//! 2. it is a plain SELECT that locks nothing and has no side effect (the statement's
//!    `replica_unsafe` fact from `frontend::classify`);
//! 3. the session is in no transaction: none open, none held back, autocommit on;
//! 4. the session holds no state a replica connection lacks (it is not pinned: temporary
//!    tables, named locks, user variables …);
//! 5. the statement reads a table (a statement that reads none stays where the session's
//!    connection is, with its diagnostics);
//! 6. a replica of the shard is up, replicating, within `max_replica_lag_ms`, and has
//!    applied the session's last write on that shard (read-your-writes: the GTID of that
//!    write came back in its OK packet, `protocol::session_track`).
//!
//! When 6 fails because no fit replica has applied the session's last write yet, `replica`
//! waits on one for it (`MASTER_GTID_WAIT`, at most `backend.read_your_writes_wait_ms`) and
//! reads there if it arrives; otherwise, and always for `replica_preferred`, the primary
//! answers. No client ever gets an error because a replica is down or behind. The replica's connection is brought to
//! the session's movable state like any pooled one (`session_state`), and it is never held
//! after the statement, so the next statement (a write, say) cannot land on it.

use std::sync::Arc;

use super::hold::HoldWhy;
use super::Session;
use crate::backend::conn::QueryResult;
use crate::backend::gtid::{Gtid, GtidPos};
use crate::backend::pool::{Lease, Pool};
use crate::backend::read_set::{self, OnPrimary, ReadTarget};
use crate::config::ReadFrom;
use crate::frontend::classify::{names_no_table, Classified, Kind};
use crate::plan::SingleReason;
use crate::protocol::constants::status;
use crate::protocol::packets::ErrInfo;
use crate::protocol::session_track::TrackedGtid;

/// Whether a single-shard plan reads a table (check 5): not a statement that names none, nor
/// one sent to the session's connection because any shard answers it.
pub(super) fn reads_table(reason: &SingleReason, sql: &str) -> bool {
    !(matches!(reason, SingleReason::OnHeldConnection(_))
        || (*reason == SingleReason::NoShardedTable && names_no_table(sql)))
}

/// The session setting that says where reads go.
pub(super) const READ_FROM_SETTING: &str = "shardproxy_read_from";

impl Session {
    /// Whether the statement may be answered by a replica (checks 1–5 of the module's list);
    /// `reads_table`: the plan reads a table (not a statement that reads none).
    pub(super) fn replica_policy(
        &self,
        c: &Classified,
        reads_table: bool,
    ) -> Result<(), OnPrimary> {
        if self.read_from == ReadFrom::Primary {
            return Err(OnPrimary::Setting);
        }
        if let Some(what) = c.replica_unsafe {
            return Err(if what.starts_with("is not") {
                OnPrimary::NotARead
            } else {
                OnPrimary::LocksOrSideEffects(what)
            });
        }
        if c.needs_previous {
            return Err(OnPrimary::NotARead);
        }
        let held_why = self.held.as_ref().map(|h| h.why);
        if self.pending_begin.is_some()
            || self.dtx.is_some()
            || self.status & status::IN_TRANS != 0
            || self.status & status::AUTOCOMMIT == 0
            || held_why == Some(HoldWhy::Transaction)
        {
            return Err(OnPrimary::Transaction);
        }
        if let Some(why) = self.pin.or(c.pin) {
            return Err(OnPrimary::SessionState(why));
        }
        if held_why == Some(HoldWhy::Pinned) {
            return Err(OnPrimary::SessionState("pinned connection"));
        }
        if !reads_table {
            return Err(OnPrimary::NoTable);
        }
        Ok(())
    }

    /// Whether a prepared statement's execute, planned on one shard for `reason`, may be
    /// answered by a replica (checks 1–5, as for the same statement sent as text).
    pub(super) fn reads_on_replica_allowed(
        &self,
        c: &Classified,
        reason: &SingleReason,
        sql: &str,
    ) -> bool {
        c.kind == Kind::Read && self.replica_policy(c, reads_table(reason, sql)).is_ok()
    }

    /// The replica that answers a read on `shard` now (check 6), or why the primary does.
    pub(super) fn choose_replica(&self, shard: &str) -> Result<(Arc<Pool>, u64), OnPrimary> {
        let topo = self.proxy.topology();
        let Some(pools) = topo.shard(shard) else {
            return Err(OnPrimary::NoUsableReplica);
        };
        let max_lag = self.proxy.config().max_replica_lag_ms(shard);
        read_set::choose(pools, max_lag, self.written_on(shard))
    }

    /// Where a read on `shard` goes, for PREVIEW (without taking a connection).
    pub(super) fn read_target(&self, shard: &str, policy: Result<(), OnPrimary>) -> ReadTarget {
        match policy.and_then(|()| self.choose_replica(shard)) {
            Ok((pool, lag_ms)) => ReadTarget::Replica {
                addr: pool.addr_shared.clone(),
                lag_ms,
            },
            Err(why) => ReadTarget::Primary(why),
        }
    }

    /// A connection to a replica of `shard` for the running read, brought to the session's
    /// state; `None`: the primary answers (no replica fits, or the chosen one failed to give
    /// a connection: logged, never the client's error). A connection the session kept only
    /// for its diagnostics goes back to its pool first, as on any other shard change.
    pub(super) async fn replica_lease(&mut self, shard: &str) -> Option<Lease> {
        // A committed transaction's leg still finishing there: its GTID first.
        self.wait_finished(shard).await;
        let (pool, wait_for) = match self.choose_replica(shard) {
            Ok((pool, _)) => (pool, None),
            Err(OnPrimary::NotCaughtUp) if self.read_from == ReadFrom::Replica => {
                let config = self.proxy.config();
                let wait = config.backend.read_your_writes_wait_ms;
                if wait == 0 {
                    return None;
                }
                let topo = self.proxy.topology();
                let max_lag = config.max_replica_lag_ms(shard);
                let (pool, _) = read_set::any_usable(topo.shard(shard)?, max_lag)?;
                let pos = self.written_on(shard)?.to_string();
                (pool, Some((pos, wait)))
            }
            Err(_) => return None,
        };
        if self.held.as_ref().is_some_and(|h| h.why == HoldWhy::Sticky) {
            let h = self.held.take().expect("checked");
            self.held_diagnostics = false;
            h.lease.pool.clone().put(h.lease);
        }
        match self.lease_on(&pool).await {
            Ok(lease) => match wait_for {
                None => Some(lease),
                Some((pos, ms)) => self.wait_for_write(lease, &pos, ms).await,
            },
            Err(e) => {
                tracing::info!(session = self.id, shard, replica = %pool.addr, "replica read on the primary instead: {}", e.message);
                None
            }
        }
    }

    /// Waits (at most `ms`) on a replica connection until the replica has applied `pos`, the
    /// session's last write there: `Some` the connection, for the read; `None` the primary
    /// answers (timed out, or the wait failed).
    async fn wait_for_write(&self, mut lease: Lease, pos: &str, ms: u64) -> Option<Lease> {
        let sql = format!("SELECT MASTER_GTID_WAIT('{pos}', {})", ms as f64 / 1000.0);
        match lease.conn.query(&sql).await {
            Ok(QueryResult::Rows(rs))
                if rs
                    .rows
                    .first()
                    .and_then(|r| r.first())
                    .is_some_and(|v| v.as_deref() == Some(b"0".as_slice())) =>
            {
                Some(lease)
            }
            Ok(_) => {
                lease.pool.clone().put(lease);
                None
            }
            // A failed connection is dropped, not pooled.
            Err(_) => None,
        }
    }

    /// The GTID of the session's last write on `shard` (its OK packet's `last_gtid`), if any.
    fn written_on(&self, shard: &str) -> Option<&GtidPos> {
        self.written
            .iter()
            .find(|(s, _)| s == shard)
            .map(|(_, p)| p)
    }

    /// Remembers the GTID of a write of this session on `shard`: its reads there go to a
    /// replica only once the replica has applied it.
    pub(super) fn note_write(&mut self, shard: &str, g: TrackedGtid) {
        let g = Gtid {
            domain: g.domain,
            server: g.server,
            seq: g.seq,
        };
        match self.written.iter_mut().find(|(s, _)| s == shard) {
            Some((_, p)) => p.advance(g),
            None => {
                let mut p = GtidPos::default();
                p.advance(g);
                self.written.push((shard.to_string(), p));
            }
        }
    }

    /// `SET shardproxy_read_from = 'primary' | 'replica' | 'replica_preferred'`; the value
    /// text as the classifier kept it (`name = value`).
    pub(super) fn set_read_from(&mut self, assignment: &str) -> Result<(), ErrInfo> {
        let value = assignment.split_once('=').map_or("", |(_, v)| v).trim();
        let value = value.trim_matches(|c| c == '\'' || c == '"' || c == '`');
        match ReadFrom::parse(value) {
            Some(r) => {
                self.read_from = r;
                Ok(())
            }
            None => Err(ErrInfo::new(
                (1231, "42000"),
                format!(
                    "Variable '{READ_FROM_SETTING}' can't be set to the value of '{value}' (primary, replica or replica_preferred)"
                ),
            )),
        }
    }

    /// The user's configured `read_from` (what a login and COM_RESET_CONNECTION start with).
    pub(super) fn configured_read_from(&self) -> ReadFrom {
        self.proxy
            .user(&self.user)
            .map_or(ReadFrom::Primary, |u| u.read_from)
    }
}
