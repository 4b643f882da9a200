//! A statement for one shard: take its connection, send a held-back BEGIN if one waits,
//! relay the command and its answer, then let [`super::hold`] decide about the connection.
//! The hot path: a point select goes through here and nothing else. Metrics, the slow-query
//! log and the session's state in the registry (what KILL finds) are updated here.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use super::relay::{relay, relay_prefixed, Prefixed, RelayError};
use super::{Flow, Session};
use crate::backend::kill::kill_backend;
use crate::exec::Diagnostics;
use crate::frontend::classify::names_no_table;
use crate::frontend::classify::{Classified, Kind};
use crate::protocol::constants::{com, err};
use crate::protocol::response::ResponseKind;

impl Session {
    /// Runs one command on one shard and relays its answer.
    pub(super) async fn run_single(
        &mut self,
        shard: &str,
        payload: Bytes,
        statement: &Arc<str>,
        c: &Classified,
        kind: ResponseKind,
    ) -> std::io::Result<Flow> {
        let replica = if self.reads_on_replicas {
            self.replica_lease(shard).await
        } else {
            None
        };
        // A text statement can carry a new XA leg's `XA START` in its packet.
        let carry = kind == ResponseKind::Query && payload.first() == Some(&com::QUERY);
        let mut lease = match replica {
            Some(l) => l,
            None => match self.acquire(shard, c, carry).await {
                Ok(l) => l,
                Err(e) => {
                    self.xa_start_due = None;
                    self.send_err(1, &e).await?;
                    return Ok(Flow::Continue);
                }
            },
        };
        let xa_start = self.xa_start_due.take();
        if let Err(e) = self.start_pending_transaction(&mut lease).await {
            self.send_err(1, &e).await?;
            return Ok(Flow::Continue);
        }
        if let Some(h) = &self.handle {
            let (addr, tid) = (lease.pool.addr_shared.clone(), lease.conn.thread_id);
            h.update(|i| {
                i.state = "query";
                i.statement = Some(statement.clone());
                i.since = Some(Instant::now());
                i.running_on = Some((addr, tid));
            });
        }
        let started = Instant::now();
        let result = match xa_start {
            None => {
                relay(
                    &mut self.reader,
                    &mut self.writer,
                    &mut lease.conn,
                    &payload,
                    kind,
                )
                .await
            }
            Some(start) => {
                let r = relay_prefixed(
                    &mut self.reader,
                    &mut self.writer,
                    &mut lease.conn,
                    &start,
                    &payload,
                )
                .await;
                match r {
                    Ok(Prefixed::Relayed(outcome)) => Ok(outcome),
                    Ok(Prefixed::PrefixFailed(e)) => {
                        // Neither ran: no leg on this shard, the connection is a plain one.
                        if let Some(h) = &self.handle {
                            h.update(|i| i.running_on = None);
                        }
                        self.discard_xa_leg(shard);
                        lease.pool.clone().put(lease);
                        self.send_err(1, &e).await?;
                        return Ok(Flow::Continue);
                    }
                    Err(e) => Err(e),
                }
            }
        };
        // The connection may go back to the pool below: KILL must no longer find it here,
        // or it would hit whichever session uses the connection next.
        if let Some(h) = &self.handle {
            h.update(|i| i.running_on = None);
        }
        let elapsed = started.elapsed();
        let slow = self.proxy.config().frontend.slow_query_ms;
        self.metrics
            .record_query(query_kind(kind, c), shard, elapsed);
        if slow > 0 && elapsed.as_millis() as u64 >= slow {
            crate::metrics::record_slow_query();
            tracing::warn!(session = self.id, shard, plan = "single shard, relayed", elapsed_ms = elapsed.as_millis() as u64, sql = %statement.chars().take(500).collect::<String>(), "slow query");
        }
        match result {
            Ok(outcome) => {
                if self.proxy.audit.is_some() {
                    self.audit_shards(std::iter::once(shard));
                    self.audit_note.code = outcome.error.as_ref().map_or(0, |e| e.code);
                    self.audit_note.rows = outcome.rows.max(outcome.affected_rows);
                }
                lease
                    .pool
                    .stats
                    .queries
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if c.kind == Kind::Read {
                    super::hold::count_read(&lease);
                }
                if let Some(e) = &outcome.error {
                    // A backend's own error, relayed: logged and counted like the proxy's.
                    crate::metrics::record_error(e.code);
                    tracing::info!(session = self.id, shard, code = e.code, sqlstate = %e.sqlstate, message = %e.message, sql = %statement.chars().take(200).collect::<String>(), "error sent to client");
                }
                // Warnings of an earlier statement survive one that uses no table: keep the
                // connection that lists them (checked only then: it costs a tokenization).
                let keep_diagnostics = std::mem::take(&mut self.reused_held)
                    && self.held_diagnostics
                    && outcome.warnings == 0
                    && outcome.error.is_none()
                    && names_no_table(statement);
                let kept =
                    self.after_statement_keeping(shard, lease, c, &outcome, keep_diagnostics);
                if !kept
                    && kind == ResponseKind::Query
                    && outcome.warnings == 0
                    && outcome.error.is_none()
                {
                    self.released = Some(Diagnostics::after_released(
                        outcome.result_set,
                        outcome.affected_rows,
                        outcome.rows,
                    ));
                }
                Ok(Flow::Continue)
            }
            Err(RelayError::Client) => Ok(Flow::Close),
            Err(RelayError::Backend(e)) => {
                lease
                    .pool
                    .stats
                    .errors
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::warn!(session = self.id, shard, "backend failed: {e}");
                if e.to_err_info().code == err::ER_NET_READ_INTERRUPTED.0 {
                    // A timeout: the server may still be working on the statement; stop it
                    // (and its connection, which the proxy no longer reads).
                    let (addr, tid) = (lease.conn.addr.clone(), lease.conn.thread_id);
                    // Closed first, with a reset (`backend::conn`): after a network cut, packets
                    // of the statement that never reached the server are thrown away at once,
                    // not retransmitted (and run there) while the KILL waits for the server.
                    drop(lease);
                    kill_backend(&self.proxy.topology(), &addr, tid, false).await;
                }
                // The connection is gone (and with it any transaction): forget it.
                if self.pin.is_some() {
                    self.pin = None;
                }
                Ok(Flow::Continue)
            }
        }
    }
}

/// The metrics label of a statement.
pub(super) fn query_kind(kind: ResponseKind, c: &Classified) -> &'static str {
    match (kind, &c.kind) {
        (ResponseKind::Execute, _) => "execute",
        (ResponseKind::Prepare, _) => "prepare",
        (_, Kind::Read) => "read",
        (_, Kind::SetSession { .. } | Kind::Use(_)) => "session",
        (_, Kind::Begin | Kind::Commit | Kind::Rollback) => "transaction",
        _ => "write",
    }
}
