//! Transactions. BEGIN is held back until the first statement that picks a shard, then sent
//! there first; COMMIT and ROLLBACK go to the transaction's connection, or are answered by
//! the proxy when nothing ran since BEGIN. The transaction's connection is held by the
//! session until the server reports the transaction closed (see [`super::hold`]).
//!
//! # Transactions on several shards (`transaction_mode = "twopc"`)
//! The first shard's transaction is a plain one (a transaction that stays there pays
//! nothing). A plain transaction cannot become an XA one afterwards, so it stays plain and
//! becomes the **home** leg: when the transaction first writes to another shard, that
//! shard's leg starts with `XA START` ([`Distributed`]), and later statements for that shard
//! (reads included) run on its leg. COMMIT is a two-phase commit whose decision row is written
//! inside the home leg (`crate::exec::twopc`); ROLLBACK, a client that disconnects, or a
//! session reset roll every leg back. In `single` mode a write on a second shard is refused
//! with both shards named, as before.
//!
//! Inside a distributed transaction, statements that would commit the home leg alone (DDL,
//! LOCK TABLES …) and savepoints (which would apply to one leg only) are refused.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use super::hold::{Held, HoldWhy};
use super::{Flow, Session};
use crate::backend::conn::{BackendError, QueryResult};
use crate::backend::pool::Lease;
use crate::config::TransactionMode;
use crate::exec::twopc::{self, OpenTransaction, XaLeg, Xid};
use crate::exec::{Diagnostics, Leg, ShardConn};
use crate::frontend::classify::{Classified, Kind};
use crate::protocol::constants::{cap, err, status};
use crate::protocol::packets::ErrInfo;
use crate::protocol::response::ResponseKind;

/// The session setting that chooses the transaction mode (`single` | `twopc`).
pub(super) const TRANSACTION_MODE_SETTING: &str = "shardproxy_transaction_mode";

/// A transaction that reached a second shard.
pub(super) struct Distributed {
    /// Its xid (which names its home shard).
    xid: Xid,
    /// Its XA legs, in the order they joined.
    legs: Vec<DistLeg>,
}

/// One XA leg of the session's distributed transaction.
struct DistLeg {
    /// The leg's shard.
    shard: String,
    /// Its connection, while the session keeps it (`None` while a statement uses it, or once
    /// it was lost).
    lease: Option<Lease>,
    /// A statement is using the connection now; a leg still on loan when the next statement
    /// or the COMMIT comes lost its connection.
    on_loan: bool,
}

impl Session {
    /// BEGIN / START TRANSACTION: inside a transaction it goes to its connection (which
    /// commits implicitly, as on one server); otherwise it is held back until the first
    /// statement that picks a shard, and sent there first.
    pub(super) async fn begin(
        &mut self,
        payload: Bytes,
        sql: &str,
        c: &Classified,
    ) -> std::io::Result<Flow> {
        self.drop_empty_distributed();
        if self.dtx.is_some() {
            return self.distributed_control(Kind::Begin).await;
        }
        if let Some(h) = &self.held {
            if h.why == HoldWhy::Transaction || h.why == HoldWhy::Pinned {
                let shard = h.shard.clone();
                return self
                    .run_single(&shard, payload, &Arc::from(sql), c, ResponseKind::Query)
                    .await;
            }
        }
        self.pending_begin = Some(sql.to_string());
        self.status |= status::IN_TRANS;
        self.send_ok(1, self.local_ok()).await?;
        Ok(Flow::Continue)
    }

    /// COMMIT / ROLLBACK: to the transaction's connection; answered by the proxy when no
    /// statement ran since BEGIN (nothing to commit).
    pub(super) async fn end_transaction(
        &mut self,
        payload: Bytes,
        sql: &str,
        c: &Classified,
    ) -> std::io::Result<Flow> {
        self.pending_begin = None;
        self.drop_empty_distributed();
        if self.dtx.is_some() {
            return self.distributed_control(c.kind.clone()).await;
        }
        if let Some(h) = &self.held {
            if h.lease.conn.status & status::IN_TRANS != 0 || h.why == HoldWhy::Pinned {
                crate::metrics::record_transaction(
                    false,
                    if c.kind == Kind::Commit {
                        "committed"
                    } else {
                        "rolled_back"
                    },
                );
                let shard = h.shard.clone();
                return self
                    .run_single(&shard, payload, &Arc::from(sql), c, ResponseKind::Query)
                    .await;
            }
        }
        self.status &= !status::IN_TRANS;
        self.send_ok(1, self.local_ok()).await?;
        Ok(Flow::Continue)
    }

    /// Sends a held-back BEGIN on the connection that will run the transaction.
    pub(super) async fn start_pending_transaction(
        &mut self,
        lease: &mut Lease,
    ) -> Result<(), ErrInfo> {
        if let Some(begin) = self.pending_begin.take() {
            if lease.conn.status & status::IN_TRANS == 0 {
                if let Err(e) = lease.conn.query(&begin).await {
                    return Err(e.to_err_info());
                }
            }
        }
        Ok(())
    }

    /// The shard bound by an open (or pending) transaction, if any.
    pub(super) fn transaction_shard(&self) -> Option<&str> {
        match &self.held {
            Some(h)
                if h.why == HoldWhy::Transaction || h.lease.conn.status & status::IN_TRANS != 0 =>
            {
                Some(h.shard.as_str())
            }
            _ => None,
        }
    }
}

impl Session {
    /// Whether a write on a second shard joins the transaction (two-phase commit).
    pub(super) fn two_phase(&self) -> bool {
        self.transaction_mode == TransactionMode::Twopc && self.pin.is_none()
    }

    /// Makes the open transaction a distributed one with `home` as its home shard (no-op
    /// when it already is).
    pub(super) fn begin_distributed(&mut self, home: &str) {
        if self.dtx.is_some() {
            return;
        }
        let xid = Xid::new(home);
        if let Ok(mut open) = twopc::open_transactions().lock() {
            open.insert(
                xid.gtrid.clone(),
                OpenTransaction {
                    session: self.id,
                    shards: vec![home.to_string()],
                    state: "active",
                    since: Instant::now(),
                },
            );
        }
        self.dtx = Some(Distributed {
            xid,
            legs: Vec::new(),
        });
    }

    /// The home shard of the session's distributed transaction, if it has one.
    pub(super) fn distributed_home(&self) -> Option<&str> {
        self.dtx.as_ref().map(|d| d.xid.home())
    }

    /// Takes the XA leg's connection on `shard` for a statement, if the distributed
    /// transaction has a leg there; an error when that leg lost its connection.
    pub(super) fn take_xa_leg(&mut self, shard: &str) -> Result<Option<Lease>, ErrInfo> {
        let Some(d) = self.dtx.as_mut() else {
            return Ok(None);
        };
        let Some(leg) = d.legs.iter_mut().find(|l| l.shard == shard) else {
            return Ok(None);
        };
        match leg.lease.take() {
            Some(lease) => {
                leg.on_loan = true;
                Ok(Some(lease))
            }
            None => Err(ErrInfo::new(
                err::ER_NET_READ_ERROR,
                format!(
                    "The transaction's connection to shard '{shard}' was lost: its part there is rolled back; ROLLBACK the transaction"
                ),
            )),
        }
    }

    /// Opens the XA leg on `shard` (`XA START`) for a write of the open transaction, whose
    /// home shard is `home`; the caller gives the connection back with
    /// [`Self::return_xa_leg`]. `carry`: the caller relays a text statement next and can
    /// send the `XA START` in the same packet ([`super::relay::relay_prefixed`]); when the
    /// connection has multi-statements on, the `XA START` is then left in
    /// `self.xa_start_due` instead of being sent here (one round trip fewer), and the
    /// caller must send it before anything else, or [`Self::discard_xa_leg`] when it fails.
    pub(super) async fn open_xa_leg(
        &mut self,
        shard: &str,
        home: &str,
        carry: bool,
    ) -> Result<Lease, ErrInfo> {
        self.begin_distributed(home);
        let mut lease = self.fresh_lease(shard).await?;
        let xid = self.dtx.as_ref().expect("just begun").xid.clone();
        let start = format!("XA START {}", xid.sql(shard));
        if carry && multi_statements_on(&lease) {
            self.xa_start_due = Some(start);
        } else {
            lease
                .conn
                .query(&start)
                .await
                .map_err(|e| e.to_err_info())?;
        }
        if let Ok(mut open) = twopc::open_transactions().lock() {
            if let Some(t) = open.get_mut(&xid.gtrid) {
                t.shards.push(shard.to_string());
            }
        }
        if let Some(d) = self.dtx.as_mut() {
            d.legs.push(DistLeg {
                shard: shard.to_string(),
                lease: None,
                on_loan: true,
            });
        }
        Ok(lease)
    }

    /// Forgets the leg on `shard` opened by [`Self::open_xa_leg`] whose `XA START`, carried
    /// with the first statement, failed: the server ran neither, so the connection (on loan
    /// to the caller, in no transaction) is an ordinary one again.
    pub(super) fn discard_xa_leg(&mut self, shard: &str) {
        if let Some(d) = self.dtx.as_mut() {
            d.legs.retain(|l| !(l.shard == shard && l.on_loan));
            if let Ok(mut open) = twopc::open_transactions().lock() {
                if let Some(t) = open.get_mut(&d.xid.gtrid) {
                    if let Some(i) = t.shards.iter().rposition(|s| s == shard) {
                        t.shards.remove(i);
                    }
                }
            }
        }
        self.drop_empty_distributed();
    }

    /// Gives an XA leg's connection back to the distributed transaction after a statement;
    /// `Some(lease)` back when `shard` has no leg on loan (the caller keeps or pools it).
    pub(super) fn return_xa_leg(&mut self, shard: &str, lease: Lease) -> Option<Lease> {
        let Some(d) = self.dtx.as_mut() else {
            return Some(lease);
        };
        match d.legs.iter_mut().find(|l| l.shard == shard && l.on_loan) {
            Some(leg) => {
                leg.on_loan = false;
                leg.lease = Some(lease);
                None
            }
            None => Some(lease),
        }
    }

    /// Ends the distributed transaction: a two-phase commit, or a rollback of every leg.
    /// `Err`: the client's error (the transaction is then rolled back, or its outcome is left
    /// to recovery when the home shard did not answer the COMMIT).
    pub(super) async fn end_distributed(&mut self, commit: bool) -> Result<(), ErrInfo> {
        let Some(d) = self.dtx.take() else {
            return Ok(());
        };
        let home_shard = d.xid.home().to_string();
        if let Ok(mut open) = twopc::open_transactions().lock() {
            if let Some(t) = open.get_mut(&d.xid.gtrid) {
                t.state = if commit { "committing" } else { "rolling back" };
            }
        }
        // The home leg: the held connection on the home shard, in its transaction.
        let mut home_why = HoldWhy::Transaction;
        let mut home: Option<LeaseConn> = match self.held.take() {
            Some(h) if h.shard == home_shard && h.lease.conn.status & status::IN_TRANS != 0 => {
                home_why = h.why;
                Some(LeaseConn(h.lease))
            }
            Some(h) => {
                // Not the transaction's connection: keep it as it was.
                self.held = Some(h);
                None
            }
            None => None,
        };
        let mut legs: Vec<XaLeg<LeaseConn>> = d
            .legs
            .into_iter()
            .map(|l| Leg {
                shard: l.shard,
                conn: l.lease.map(LeaseConn),
            })
            .collect();
        let result = if commit {
            match twopc::decide(&d.xid, &mut home, &mut legs).await {
                Ok(()) => {
                    crate::metrics::record_transaction(true, "committed");
                    if let Some(LeaseConn(h)) = home.as_mut() {
                        if let Some(g) = h.conn.last_gtid.take() {
                            self.record_ack(&home_shard, g);
                            self.note_write(&home_shard, g);
                        }
                    }
                    // The decision is durable: the client gets its OK now, and the legs'
                    // XA COMMIT finishes behind it (`finishing.rs`).
                    self.finish_later(&d.xid, std::mem::take(&mut legs));
                    Ok(())
                }
                Err(failed) => {
                    crate::metrics::record_transaction(true, "failed");
                    Err(failed.into_error())
                }
            }
        } else {
            twopc::abort(&d.xid, &mut home, &mut legs).await;
            crate::metrics::record_transaction(true, "rolled_back");
            Ok(())
        };
        if let Ok(mut open) = twopc::open_transactions().lock() {
            open.remove(&d.xid.gtrid);
        }
        for leg in legs {
            if let Some(LeaseConn(lease)) = leg.conn {
                lease.pool.clone().put(lease);
            }
        }
        if let Some(LeaseConn(lease)) = home {
            if home_why == HoldWhy::Pinned && self.held.is_none() {
                self.held = Some(Held {
                    shard: home_shard,
                    lease,
                    why: home_why,
                });
            } else if lease.conn.status & status::IN_TRANS == 0 {
                lease.pool.clone().put(lease);
            }
        }
        result
    }

    /// BEGIN (which commits first, as on one server), COMMIT or ROLLBACK of a distributed
    /// transaction, text or prepared; answers the client.
    pub(super) async fn distributed_control(&mut self, kind: Kind) -> std::io::Result<Flow> {
        let r = self.end_distributed(kind != Kind::Rollback).await;
        self.status &= !status::IN_TRANS;
        match r {
            Ok(()) => {
                if kind == Kind::Begin {
                    self.pending_begin = Some("BEGIN".to_string());
                    self.status |= status::IN_TRANS;
                }
                self.send_ok(1, self.local_ok()).await?
            }
            Err(e) => {
                self.diag = Some(Diagnostics::failed(Vec::new(), &e));
                self.send_err(1, &e).await?
            }
        }
        Ok(Flow::Continue)
    }

    /// A distributed transaction whose XA legs never opened (the statement that was to open
    /// them failed first) is an ordinary one on its home shard.
    fn drop_empty_distributed(&mut self) {
        if self.dtx.as_ref().is_some_and(|d| d.legs.is_empty()) {
            if let Some(d) = self.dtx.take() {
                if let Ok(mut open) = twopc::open_transactions().lock() {
                    open.remove(&d.xid.gtrid);
                }
            }
        }
    }

    /// Drops the distributed transaction without a word to its servers: its connections
    /// close, and each server rolls its leg back (a disconnecting client, a session reset).
    pub(super) fn forget_distributed(&mut self) {
        if let Some(d) = self.dtx.take() {
            if let Ok(mut open) = twopc::open_transactions().lock() {
                open.remove(&d.xid.gtrid);
            }
            crate::metrics::record_transaction(true, "rolled_back");
        }
    }
}

/// A statement that cannot run inside a distributed transaction: it would commit the home
/// leg alone (DDL, LOCK TABLES …), or a savepoint, which would apply to one leg only.
pub(super) fn breaks_distributed(sql: &str) -> Option<ErrInfo> {
    let tokens = crate::lex::tokenize(sql);
    let w = |i: usize| tokens.get(i).and_then(|t| t.word()).unwrap_or("");
    let why = match w(0) {
        "CREATE" | "ALTER" | "DROP" | "RENAME" | "TRUNCATE" | "LOCK" | "UNLOCK" | "GRANT"
        | "REVOKE" | "ANALYZE" | "OPTIMIZE" | "REPAIR" | "FLUSH" | "INSTALL" | "UNINSTALL"
        | "XA" => "it would commit part of the transaction",
        "SAVEPOINT" | "RELEASE" => "savepoints apply to one shard only",
        "ROLLBACK" if w(1) == "TO" => "savepoints apply to one shard only",
        _ => return None,
    };
    Some(ErrInfo::new(
        err::ER_NOT_SUPPORTED_YET,
        format!("This statement is not supported inside a transaction on several shards: {why}; COMMIT or ROLLBACK first"),
    ))
}

/// Whether multi-statements are on for `lease`'s connection: as its handshake asked,
/// unless COM_SET_OPTION switched them.
fn multi_statements_on(lease: &Lease) -> bool {
    lease
        .conn
        .vars
        .multi_statements
        .unwrap_or(lease.conn.capabilities & cap::MULTI_STATEMENTS != 0)
}

/// A connection of the session's distributed transaction, as the executor's two-phase
/// commit uses it.
pub(super) struct LeaseConn(pub(super) Lease);

impl ShardConn for LeaseConn {
    async fn query(&mut self, sql: &str) -> Result<QueryResult, BackendError> {
        self.0.conn.query(sql).await
    }

    async fn query_pipelined(
        &mut self,
        first: &str,
        then: &str,
    ) -> (
        Result<QueryResult, BackendError>,
        Result<QueryResult, BackendError>,
    ) {
        self.0.conn.query_pipelined(first, then).await
    }

    fn forget_insert_id(&mut self) {
        self.0.conn.last_insert_id = u64::MAX;
    }
}
