//! Which backend connection serves the next statement, and whether the session keeps it.
//!
//! [`Session::acquire`] gives back the held connection when the statement is for its shard,
//! else a pooled one brought to the session's state ([`Session::fresh_lease`]);
//! [`Session::after_statement`] records what the statement changed and decides whether to hold
//! the connection (pinned, open transaction, sticky diagnostics) or return it to the pool.
//! The legs of a multi-shard statement borrow the held connection through the session's
//! [`Shards`] implementation, the multi-shard executor's way to reach shards.
//!
//! Touches only the session's connection state (`held`, `pin`, `vars`, `last_insert_id`);
//! never writes to the client.

use super::Session;
use crate::backend::conn::QueryResult;
use crate::backend::conn::{BackendConn, BackendError};
use crate::backend::gate::GateRefusal;
use crate::backend::pool::Lease;
use crate::exec::{Access, ShardConn, Shards, StreamConn};
use crate::frontend::classify::{Classified, Kind};
use crate::protocol::constants::{err, status};
use crate::protocol::packets::ErrInfo;
use crate::protocol::response::Outcome;
use crate::protocol::session_track::TrackedGtid;

/// Why the session keeps a backend connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum HoldWhy {
    /// Until the next statement: the answer left something it may ask about (warnings,
    /// affected rows, an insert id).
    Sticky,
    /// While the server reports an open transaction.
    Transaction,
    /// For good: the session made state that cannot move to another connection.
    Pinned,
}

/// The backend connection a session keeps between statements.
pub(super) struct Held {
    /// The shard the connection is on.
    pub(super) shard: String,
    /// The connection, leased from that shard's pool.
    pub(super) lease: Lease,
    /// Why it is kept.
    pub(super) why: HoldWhy,
}

impl Session {
    /// Takes the connection for a statement on `shard`: the held one, or one from the pool
    /// brought to the session's state. `carry`: the caller relays a text statement and can
    /// send a new XA leg's `XA START` with it (see [`Session::open_xa_leg`]).
    pub(super) async fn acquire(
        &mut self,
        shard: &str,
        c: &Classified,
        carry: bool,
    ) -> Result<Lease, ErrInfo> {
        self.reused_held = false;
        if let Some(h) = self.exec_stash.take() {
            if h.shard == shard {
                self.reused_held = true;
                return Ok(h.lease);
            }
        }
        if let Some(mut lease) = self.take_xa_leg(shard)? {
            // The shard's leg of the session's distributed transaction.
            self.restore_last_insert_id(&mut lease, c).await?;
            return Ok(lease);
        }
        if let Some(h) = self.held.take() {
            // A connection kept only for diagnostics to a server being switched away from is
            // let go: the statement waits at the shard's gate and runs on the new primary.
            if h.why == HoldWhy::Sticky && !h.lease.pool.keeps_sessions() {
                self.held_diagnostics = false;
                drop(h);
                let mut lease = self.fresh_lease(shard).await?;
                self.restore_last_insert_id(&mut lease, c).await?;
                return Ok(lease);
            }
            if h.shard == shard {
                self.reused_held = true;
                let mut lease = h.lease;
                self.restore_last_insert_id(&mut lease, c).await?;
                return Ok(lease);
            }
            match h.why {
                HoldWhy::Sticky => {
                    self.held_diagnostics = false;
                    h.lease.pool.clone().put(h.lease)
                }
                HoldWhy::Transaction | HoldWhy::Pinned => {
                    let first = h.shard.clone();
                    let why = h.why;
                    // A pinned session can also be in a transaction: the held connection's
                    // status says so, whatever the reason it is held for.
                    let in_transaction =
                        why == HoldWhy::Transaction || h.lease.conn.status & status::IN_TRANS != 0;
                    self.held = Some(h);
                    // In a transaction, reads elsewhere run on their own (autocommit) connection
                    // but writes would make it distributed. A pinned session may use other
                    // shards unless the statement itself needs the pinned state.
                    let joins = in_transaction && c.kind != Kind::Read;
                    let needs_pin = why == HoldWhy::Pinned && c.pin.is_some();
                    if joins && !needs_pin && self.two_phase() {
                        // `twopc`: the write joins the transaction as an XA leg.
                        let mut lease = self.open_xa_leg(shard, &first, carry).await?;
                        self.restore_last_insert_id(&mut lease, c).await?;
                        return Ok(lease);
                    }
                    if joins || needs_pin {
                        let pin = self.pin.unwrap_or("pinned session");
                        let bound = if needs_pin {
                            pin.to_string()
                        } else if why == HoldWhy::Pinned {
                            // twopc opens XA legs on pooled connections, which lack the state
                            // that pinned this session.
                            format!("open transaction of a session pinned by {pin}")
                        } else {
                            "open transaction".to_string()
                        };
                        return Err(ErrInfo::new(
                            err::ER_NOT_SUPPORTED_YET,
                            format!(
                                "This statement needs shard '{shard}' but the session is bound to shard '{first}' ({bound}); distributed transactions are not supported: commit first"
                            ),
                        ));
                    }
                }
            }
        }
        let mut lease = self.fresh_lease(shard).await?;
        self.restore_last_insert_id(&mut lease, c).await?;
        Ok(lease)
    }

    pub(super) async fn restore_last_insert_id(
        &mut self,
        lease: &mut Lease,
        c: &Classified,
    ) -> Result<(), ErrInfo> {
        if c.uses_last_insert_id && lease.conn.last_insert_id != self.last_insert_id {
            let sql = format!("DO LAST_INSERT_ID({})", self.last_insert_id);
            lease.conn.query(&sql).await.map_err(|e| e.to_err_info())?;
            lease.conn.last_insert_id = self.last_insert_id;
        }
        Ok(())
    }

    /// A pooled connection to `shard`'s primary with the session's state applied. While the
    /// shard fails over, waits at its gate (bounded) and then takes the new primary.
    pub(super) async fn fresh_lease(&mut self, shard: &str) -> Result<Lease, ErrInfo> {
        // A committed transaction's leg still finishing there: read its writes.
        self.wait_finished(shard).await;
        let mut first_failure: Option<std::time::Instant> = None;
        let (pool, lease) = loop {
            let topo = self.proxy.topology();
            let Some(pools) = topo.shard(shard) else {
                return Err(ErrInfo::new(
                    err::ER_NOT_SUPPORTED_YET,
                    format!("Unknown shard '{shard}'"),
                ));
            };
            if !pools.state.gate.is_open() {
                let f = self.proxy.config().failover.clone();
                pools
                    .state
                    .gate
                    .pass(
                        shard,
                        std::time::Duration::from_millis(f.buffer_ms),
                        f.buffer_max,
                    )
                    .await
                    .map_err(|e| gate_error(&e))?;
                // The primary may have changed meanwhile.
                continue;
            }
            let pool = pools.primary.clone();
            match pool.get(self.caps, self.collation, &self.vars).await {
                Ok(l) => break (pool, l),
                Err(e) => {
                    // Nothing was sent: a primary that just died is worth waiting for (the
                    // health checks close the gate, failover opens it on the new primary).
                    let f = self.proxy.config().failover.clone();
                    let since = *first_failure.get_or_insert_with(std::time::Instant::now);
                    if !f.enabled
                        || pools.replicas.is_empty()
                        || !matches!(e, BackendError::Lost { .. })
                        || since.elapsed() >= std::time::Duration::from_millis(f.buffer_ms)
                    {
                        return Err(e.to_err_info());
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        };
        self.bring_to_state(&pool, lease).await
    }

    /// A pooled connection to `pool`'s server (a replica, for a read) with the session's
    /// state applied.
    pub(super) async fn lease_on(
        &mut self,
        pool: &std::sync::Arc<crate::backend::pool::Pool>,
    ) -> Result<Lease, ErrInfo> {
        let lease = pool
            .get(self.caps, self.collation, &self.vars)
            .await
            .map_err(|e| e.to_err_info())?;
        self.bring_to_state(pool, lease).await
    }

    /// Applies the session's movable state (database, `SET` variables, multi-statements) to
    /// a connection of `pool`, or takes a new one when the state cannot be brought back.
    async fn bring_to_state(
        &self,
        pool: &std::sync::Arc<crate::backend::pool::Pool>,
        mut lease: Lease,
    ) -> Result<Lease, ErrInfo> {
        let plan = match lease.conn.vars.sync(&self.vars) {
            Some(p) => p,
            None => {
                // The connection's state cannot be brought back: use a new one.
                lease.conn = Box::new(
                    BackendConn::connect(&pool.connect_params(self.caps, self.collation))
                        .await
                        .map_err(|e| e.to_err_info())?,
                );
                lease.conn.vars.sync(&self.vars).unwrap_or_default()
            }
        };
        if !plan.is_empty() {
            let c = &mut lease.conn;
            let r: Result<(), BackendError> = async {
                if let Some(db) = &plan.init_db {
                    c.init_db(db).await?;
                }
                if let Some(sql) = &plan.set_sql {
                    c.query(sql).await?;
                }
                if let Some(on) = plan.set_option {
                    c.set_option(on).await?;
                }
                Ok(())
            }
            .await;
            if let Err(e) = r {
                return Err(e.to_err_info());
            }
            lease.conn.vars = self.vars.clone();
        }
        Ok(lease)
    }

    /// Records what the statement changed and decides whether to keep its connection.
    pub(super) fn after_statement(
        &mut self,
        shard: &str,
        lease: Lease,
        c: &Classified,
        o: &Outcome,
    ) {
        self.after_statement_keeping(shard, lease, c, o, false);
    }

    /// As [`Self::after_statement`]; `keep_diagnostics`: the connection lists warnings the
    /// client may still ask about, so it stays held even if this statement left none.
    /// Returns whether the session now holds this statement's connection.
    pub(super) fn after_statement_keeping(
        &mut self,
        shard: &str,
        mut lease: Lease,
        c: &Classified,
        o: &Outcome,
        keep_diagnostics: bool,
    ) -> bool {
        if o.error.is_none() {
            match &c.kind {
                Kind::SetSession { vars, names } => {
                    for (k, v) in vars {
                        self.vars.vars.insert(k.clone(), v.clone());
                    }
                    if names.is_some() {
                        self.vars.names = names.clone();
                    }
                }
                Kind::Use(db) => self.vars.db = Some(db.clone()),
                _ => {}
            }
            // Most statements change nothing: no copy then.
            if lease.conn.vars != self.vars {
                lease.conn.vars = self.vars.clone();
            }
        }
        if o.last_insert_id != 0 {
            self.last_insert_id = o.last_insert_id;
            lease.conn.last_insert_id = o.last_insert_id;
        }
        if let Some(g) = o.last_gtid {
            self.record_ack(shard, g);
            self.note_write(shard, g);
        }
        if let Some(p) = c.pin {
            self.pin = self.pin.or(Some(p));
        }
        if o.status & status::CURSOR_EXISTS != 0 {
            self.pin = self.pin.or(Some("open cursor"));
        }
        self.status = o.status;
        let Some(lease) = self.return_xa_leg(shard, lease) else {
            // Kept by the distributed transaction as its leg on this shard.
            return true;
        };
        let why = if lease.pool.role() == crate::backend::pool::Role::Replica {
            // A replica answered a read: never kept, so the next statement (a write, say)
            // cannot land on it.
            None
        } else if self.pin.is_some() {
            Some(HoldWhy::Pinned)
        } else if lease.conn.status & status::IN_TRANS != 0 {
            Some(HoldWhy::Transaction)
        } else if o.warnings > 0
            || o.error.is_some()
            || o.affected_rows > 0
            || o.last_insert_id != 0
            // A write that changed nothing: ROW_COUNT() next must still answer its 0.
            || (c.kind == Kind::Other && !o.result_set)
            || keep_diagnostics
        {
            Some(HoldWhy::Sticky)
        } else {
            None
        };
        match why {
            // A read on another shard while bound: keep the binding.
            Some(_) if self.held.is_some() => {
                lease.pool.clone().put(lease);
                false
            }
            Some(why) => {
                self.held_diagnostics = o.warnings > 0 || o.error.is_some() || keep_diagnostics;
                self.held = Some(Held {
                    shard: shard.to_string(),
                    lease,
                    why,
                });
                true
            }
            None => {
                if self.held.is_none() {
                    self.held_diagnostics = false;
                }
                lease.pool.clone().put(lease);
                false
            }
        }
    }
}

/// A leg's connection as the session lends it to the multi-shard executor.
pub struct LegLease {
    /// The pooled (or held) connection.
    lease: Lease,
    /// It is the session's held connection, to be held again afterwards.
    held: bool,
    /// The result set being streamed on it (a streamed scatter read), if any.
    cursor: Option<crate::backend::rows::RowCursor>,
    /// It is an XA leg of the session's distributed transaction, to be given back to it.
    xa: bool,
}

impl ShardConn for LegLease {
    async fn query(&mut self, sql: &str) -> Result<QueryResult, BackendError> {
        self.lease.conn.query(sql).await
    }

    async fn query_pipelined(
        &mut self,
        first: &str,
        then: &str,
    ) -> (
        Result<QueryResult, BackendError>,
        Result<QueryResult, BackendError>,
    ) {
        self.lease.conn.query_pipelined(first, then).await
    }

    fn forget_insert_id(&mut self) {
        self.lease.conn.last_insert_id = u64::MAX;
    }
}

impl StreamConn for LegLease {
    async fn start_rows(
        &mut self,
        sql: &str,
    ) -> Result<crate::backend::rows::StreamHead, BackendError> {
        let (head, cursor) = self.lease.conn.start_rows(sql).await?;
        self.cursor = cursor;
        Ok(head)
    }

    async fn next_row(&mut self) -> Result<crate::backend::rows::RowStep, BackendError> {
        let Some(cursor) = self.cursor.as_mut() else {
            return Ok(crate::backend::rows::RowStep::End { warnings: 0 });
        };
        let step = cursor.next(&mut self.lease.conn).await;
        if !matches!(step, Ok(crate::backend::rows::RowStep::Row(_))) {
            self.cursor = None;
        }
        step
    }
}

/// The executor's legs take the held connection when it is on their shard (so a transaction
/// sees its own changes), else a pooled one; a write's leg also gets the held-back BEGIN.
impl Shards for Session {
    type Conn = LegLease;

    async fn lease(&mut self, shard: &str, access: Access) -> Result<LegLease, ErrInfo> {
        if let Some(lease) = self.take_xa_leg(shard)? {
            return Ok(LegLease {
                lease,
                held: false,
                cursor: None,
                xa: true,
            });
        }
        if let Some(home) = self.distributed_home().map(str::to_string) {
            if access == Access::Write && home != shard {
                let lease = self.open_xa_leg(shard, &home, false).await?;
                return Ok(LegLease {
                    lease,
                    held: false,
                    cursor: None,
                    xa: true,
                });
            }
        }
        let mut leg = if self.held.as_ref().is_some_and(|h| h.shard == shard) {
            let h = self.held.take().expect("checked");
            self.held_why_on_loan = Some(h.why);
            LegLease {
                lease: h.lease,
                held: true,
                cursor: None,
                xa: false,
            }
        } else {
            let replica = if access == Access::Read && self.reads_on_replicas {
                self.replica_lease(shard).await
            } else {
                None
            };
            let lease = match replica {
                Some(l) => l,
                None => self.fresh_lease(shard).await?,
            };
            if access == Access::Read {
                count_read(&lease);
            }
            LegLease {
                lease,
                held: false,
                cursor: None,
                xa: false,
            }
        };
        if access == Access::Write {
            self.start_pending_transaction(&mut leg.lease).await?;
        }
        Ok(leg)
    }

    fn give_back(&mut self, shard: &str, mut leg: LegLease) {
        count_query(&leg.lease);
        if let Some(g) = leg.lease.conn.last_gtid.take() {
            self.record_ack(shard, g);
            self.note_write(shard, g);
        }
        if leg.xa {
            if let Some(lease) = self.return_xa_leg(shard, leg.lease) {
                lease.pool.clone().put(lease);
            }
            return;
        }
        let why = if leg.held {
            Some(self.held_why_on_loan.take().unwrap_or(HoldWhy::Sticky))
        } else if leg.lease.conn.status & status::IN_TRANS != 0 {
            // The held-back BEGIN went here: this is now the transaction's connection.
            Some(HoldWhy::Transaction)
        } else {
            None
        };
        match why {
            Some(why) => {
                self.held = Some(Held {
                    shard: shard.to_string(),
                    lease: leg.lease,
                    why,
                })
            }
            None => leg.lease.pool.clone().put(leg.lease),
        }
    }

    fn lost(&mut self, _shard: &str, leg: LegLease) {
        count_query(&leg.lease);
        if leg.held {
            self.held_why_on_loan = None;
        }
    }
}

impl Session {
    /// Records a commit acknowledged to the client as the shard's highest acknowledged GTID
    /// (failover promotes only a replica that holds it).
    pub(super) fn record_ack(&self, shard: &str, g: TrackedGtid) {
        if let Some(s) = self.proxy.topology().shard(shard) {
            s.state.record_ack(g);
        }
    }
}

/// One statement counted in [`crate::proxy::Proxy::statements_running`]; the count ends when
/// this is dropped (also when the session's task ends in the middle of a statement).
pub(super) struct Running(std::sync::Arc<crate::proxy::Proxy>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0
            .statements_running
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Session {
    /// Counts work the running statement leaves behind it (a deferred `XA COMMIT`,
    /// `finishing.rs`) in [`crate::proxy::Proxy::statements_running`] until the [`Running`]
    /// returned is dropped. Taken while the statement itself is still counted, so the count
    /// never falls to zero in between (a resharding cutover waits for both).
    pub(super) fn keep_running(&self) -> Running {
        self.proxy
            .statements_running
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Running(self.proxy.clone())
    }

    /// Counts the statement in [`crate::proxy::Proxy::statements_running`] once the
    /// resharding gate lets it through (at once when it is open or the session has an open
    /// transaction, which must be able to finish), until the [`Running`] returned is dropped.
    /// Counting first and looking at the gate second (both sequentially consistent) means a
    /// cutover that closed the gate either sees the count or is seen by the statement.
    pub(super) async fn enter_statement(&mut self) -> Result<Running, ErrInfo> {
        use std::sync::atomic::{fence, Ordering::SeqCst};
        let in_transaction = self
            .held
            .as_ref()
            .is_some_and(|h| h.why == HoldWhy::Transaction)
            || self.dtx.is_some();
        loop {
            self.proxy.statements_running.fetch_add(1, SeqCst);
            let running = Running(self.proxy.clone());
            fence(SeqCst);
            if in_transaction || self.proxy.reshard_gate.is_open() {
                return Ok(running);
            }
            drop(running);
            let f = self.proxy.config().failover.clone();
            self.proxy
                .reshard_gate
                .pass(
                    "*",
                    std::time::Duration::from_millis(f.buffer_ms),
                    f.buffer_max,
                )
                .await
                .map_err(|e| {
                    let text = match e {
                        GateRefusal::TimedOut { waited_ms, .. } => format!(
                            "held {waited_ms} ms (failover.buffer_ms) by a resharding cutover that did not end"
                        ),
                        GateRefusal::TooMany { max, .. } => format!(
                            "{max} statements (failover.buffer_max) already wait for a resharding cutover"
                        ),
                        GateRefusal::Refused { reason, .. } => reason,
                    };
                    ErrInfo::new(err::ER_NET_READ_INTERRUPTED, text)
                })?;
        }
    }
}

/// The client's error for a statement the shard's gate did not let through.
fn gate_error(e: &GateRefusal) -> ErrInfo {
    let code = match e {
        GateRefusal::TimedOut { .. } => err::ER_NET_READ_INTERRUPTED,
        GateRefusal::Refused { .. } | GateRefusal::TooMany { .. } => err::ER_NET_READ_ERROR,
    };
    ErrInfo::new(code, e.to_string())
}

/// Counts a read in the statistics of the connection's pool (SHOW BACKENDS, metrics).
pub(super) fn count_read(lease: &Lease) {
    lease
        .pool
        .stats
        .reads
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

/// Counts a statement in the statistics of the connection's pool.
fn count_query(lease: &Lease) {
    lease
        .pool
        .stats
        .queries
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}
