//! Prepared statements (COM_STMT_PREPARE, EXECUTE, SEND_LONG_DATA, FETCH, RESET, CLOSE).
//!
//! A statement is planned once at prepare ([`crate::plan::plan_prepared`]) and remembered per
//! client id; it is prepared lazily on whichever backend connection executes it. At execute
//! the shard key parameter is decoded and bound to the plan; the packet is made
//! self-contained (parameter types put back in, long data replayed) because the next execute
//! may run on another connection. An execute that spans shards runs as text with the values
//! in place and is answered with binary rows; so does one with subqueries over sharded
//! tables (a staged plan): prepared on one shard for the client's metadata, its subqueries
//! run at each execute with that execute's values ([`super::staged`]).

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};

use super::hold::{Held, HoldWhy};
use super::relay::{relay_prepare, RelayError};
use super::{no_text, Flow, Session};
use crate::backend::conn::{BackendError, BackendStmt};
use crate::backend::pool::Lease;
use crate::exec::Diagnostics;
use crate::frontend::classify::{classify, Classified, Kind};
use crate::plan::spec::MergeSpec;
use crate::plan::{self, MultiKind, Plan, PlanContext, PreparedPlan, Rejection, ShardSql};
use crate::protocol::constants::{com, err};
use crate::protocol::packets::{build_command, ErrInfo};
use crate::protocol::response::{Outcome, ResponseKind};
use crate::protocol::resultset::RowFormat;
use crate::ring::KeyValue;

/// A statement the client prepared, remembered so it can be prepared lazily on whichever
/// backend connection executes it.
pub(super) struct ClientStmt {
    /// The statement's SQL as prepared on backends (with the proxy's values in place).
    pub(super) sql: Bytes,
    /// The same text, decoded once for logs, SHOW SESSIONS and text fallbacks.
    pub(super) text: Arc<str>,
    /// The statement's classification, computed once at prepare time.
    pub(super) class: Classified,
    /// Its plan, computed once; bound to parameter values at each execute.
    pub(super) plan: PreparedPlan,
    /// The shard it was prepared on (where a fixed plan's executes run).
    pub(super) shard: String,
    /// How many `?` parameters it has.
    pub(super) params: u16,
    /// Parameter types from the last execute that sent them (2 bytes each).
    pub(super) param_types: Option<Bytes>,
    /// COM_STMT_SEND_LONG_DATA chunks by parameter, sent before the next execute.
    pub(super) long_data: Vec<(u16, Bytes)>,
}

impl Session {
    pub(super) async fn stmt_prepare(&mut self, payload: Bytes) -> std::io::Result<Flow> {
        let sql_bytes = payload.slice(1..);
        let sql = String::from_utf8_lossy(&sql_bytes).into_owned();
        // CONNECTION_ID() and @@socket are the proxy's to answer (see frontend::rewrite): the
        // statement is prepared on backends with the proxy's values in place.
        if crate::frontend::rewrite::reads_proxy_setting(&sql) {
            let e = ErrInfo::new(
                err::ER_NOT_SUPPORTED_YET,
                "shardproxy: a prepared statement reading the proxy's own settings \
                 (@@shardproxy_...); send it as a text query",
            );
            self.send_err(1, &e).await?;
            return Ok(Flow::Continue);
        }
        let (sql, sql_bytes, payload) =
            match crate::frontend::rewrite::proxy_values(&sql, self.id, || self.proxy_settings()) {
                Some(rewritten) => {
                    let p = build_command(com::STMT_PREPARE, rewritten.as_bytes());
                    (rewritten, p.slice(1..), p)
                }
                None => (sql, sql_bytes, payload),
            };
        if self.rights.is_some() {
            if let Some(flow) = self.refuse_outside_rights(&sql).await? {
                return Ok(flow);
            }
        }
        let c = classify(&sql);
        let prepared_plan = {
            let rules = self.proxy.rules();
            let ctx = PlanContext {
                rules: &rules,
                current_db: self.vars.db.as_deref(),
                allow_scatter_writes: self.allow_scatter_writes,
            };
            plan::plan_prepared(&sql, &ctx)
        };
        self.proxy
            .counters
            .plan_cache_misses
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        crate::metrics::record_plan_cache(false);
        // Where to prepare for the client's metadata: the statement's shard when fixed; for a
        // route that depends on parameters, any shard that has the tables.
        let shard = match &prepared_plan {
            PreparedPlan::Fixed(Plan::Reject(r)) => {
                if matches!(r, Rejection::InsertWithoutColumnList { .. }) {
                    if let Some(spelt_out) = self.fill_column_list(&sql).await {
                        // Prepared with its columns named: the same parameters, the same
                        // answer shape, and executes place their rows by the key.
                        let p = build_command(com::STMT_PREPARE, spelt_out.as_bytes());
                        return Box::pin(self.stmt_prepare(p)).await;
                    }
                }
                return self.send_refusal(r.clone()).await;
            }
            PreparedPlan::Fixed(p) => match self.prefer_held(p.clone(), &sql) {
                Plan::Single { shard, .. } => shard,
                other => other
                    .shards()
                    .first()
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| self.proxy.config().sharding.default_shard.clone()),
            },
            // Every shard has the tables: prepare where the session already is, if anywhere.
            PreparedPlan::ByParam { fallback, .. } => match &self.held {
                Some(h) => h.shard.clone(),
                None => fallback
                    .shards()
                    .first()
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| self.proxy.config().sharding.default_shard.clone()),
            },
        };
        // Preparing changes nothing on the server: it may use any shard, even inside a
        // transaction bound elsewhere (the execute is what must stay on that shard).
        let prepare_only = Classified::of_kind(Kind::Read);
        let mut lease = match self.acquire(&shard, &prepare_only, false).await {
            Ok(l) => l,
            Err(e) => {
                self.send_err(1, &e).await?;
                return Ok(Flow::Continue);
            }
        };
        let client_id = self.next_stmt;
        let r = relay_prepare(&mut self.writer, &mut lease.conn, &payload, client_id).await;
        match r {
            Ok(outcome) => {
                if let Some((backend_id, cols, params)) = outcome.prepared {
                    self.next_stmt = self.next_stmt.wrapping_add(1).max(1);
                    lease
                        .conn
                        .remember_prepared(
                            sql_bytes.clone(),
                            crate::backend::conn::BackendStmt {
                                id: backend_id,
                                params,
                                columns: cols,
                            },
                        )
                        .await;
                    self.stmts.insert(
                        client_id,
                        ClientStmt {
                            text: Arc::from(sql.as_str()),
                            sql: sql_bytes,
                            class: c.clone(),
                            plan: prepared_plan,
                            shard: shard.clone(),
                            params,
                            param_types: None,
                            long_data: Vec::new(),
                        },
                    );
                }
                let c = Classified::of_kind(Kind::Read);
                self.after_statement(
                    &shard,
                    lease,
                    &c,
                    &Outcome {
                        status: self.status,
                        ..outcome
                    },
                );
                Ok(Flow::Continue)
            }
            Err(RelayError::Client) => Ok(Flow::Close),
            Err(RelayError::Backend(e)) => {
                tracing::warn!(session = self.id, "backend failed during prepare: {e}");
                Ok(Flow::Continue)
            }
        }
    }

    pub(super) fn stmt_long_data(&mut self, payload: Bytes) -> std::io::Result<Flow> {
        if payload.len() < 7 {
            return Ok(Flow::Continue);
        }
        let id = u32::from_le_bytes([payload[1], payload[2], payload[3], payload[4]]);
        let param = u16::from_le_bytes([payload[5], payload[6]]);
        if let Some(s) = self.stmts.get_mut(&id) {
            s.long_data.push((param, payload.slice(7..)));
        }
        Ok(Flow::Continue)
    }

    pub(super) async fn unknown_stmt(&mut self, id: u32, what: &str) -> std::io::Result<Flow> {
        let e = ErrInfo::new(
            err::ER_UNKNOWN_STMT_HANDLER,
            format!("Unknown prepared statement handler ({id}) given to {what}"),
        );
        self.send_err(1, &e).await?;
        Ok(Flow::Continue)
    }

    pub(super) async fn stmt_execute(
        &mut self,
        payload: Bytes,
        diag: Option<Diagnostics>,
    ) -> std::io::Result<Flow> {
        if payload.len() < 10 {
            return self.malformed().await;
        }
        let id = u32::from_le_bytes([payload[1], payload[2], payload[3], payload[4]]);
        let Some(stmt) = self.stmts.get_mut(&id) else {
            return self.unknown_stmt(id, "mysqld_stmt_execute").await;
        };
        if diag.is_some() && stmt.class.needs_previous {
            // The proxy answers these by rewriting the text; a prepared statement's answer
            // would need binary rows of the rewritten statement.
            self.diag = diag;
            let e = ErrInfo::new(
                err::ER_NOT_SUPPORTED_YET,
                "shardproxy: a prepared statement asking about the previous statement \
                 (ROW_COUNT(), FOUND_ROWS(), warnings) right after one the proxy ran on several \
                 shards; send it as a text query",
            );
            self.send_err(1, &e).await?;
            return Ok(Flow::Continue);
        }
        let sql = stmt.sql.clone();
        let text = stmt.text.clone();
        let mut shard = stmt.shard.clone();
        let class = stmt.class.clone();
        if self.dtx.is_some() {
            // A distributed transaction ends (or is refused a statement) as in text.
            if matches!(class.kind, Kind::Begin | Kind::Commit | Kind::Rollback) {
                return self.distributed_control(class.kind.clone()).await;
            }
            if let Some(e) = super::transaction::breaks_distributed(&text) {
                self.send_err(1, &e).await?;
                return Ok(Flow::Continue);
            }
        }
        // Parameter types come only with the first execute: keep them before routing, which
        // may answer this execute without reaching the code below.
        if stmt.params > 0 {
            let bound_at = 10 + (stmt.params as usize).div_ceil(8);
            if payload.get(bound_at) == Some(&1) {
                let end = bound_at + 1 + 2 * stmt.params as usize;
                if payload.len() < end {
                    return self.malformed().await;
                }
                stmt.param_types = Some(payload.slice(bound_at + 1..end));
            }
        }
        self.proxy
            .counters
            .plan_cache_hits
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.metrics.record_plan_cache_hit();
        // Route this execution: fixed single-shard plans need no parameter decoding.
        let needs_params = !matches!(&stmt.plan, PreparedPlan::Fixed(Plan::Single { .. }));
        // Why the execute goes to its shard: whether it reads a table decides whether a
        // replica may answer it (`replica_reads`).
        let mut reason = match &stmt.plan {
            PreparedPlan::Fixed(Plan::Single { reason, .. }) => Some(reason.clone()),
            _ => None,
        };
        if needs_params {
            let long_ids: Vec<u16> = stmt.long_data.iter().map(|(p, _)| *p).collect();
            let types = stmt.param_types.clone().unwrap_or_default();
            let Some(values) = crate::protocol::binary::decode_params(
                &payload,
                stmt.params as usize,
                &types,
                &long_ids,
            ) else {
                return self.malformed().await;
            };
            let keys: Vec<Option<KeyValue>> = values.iter().map(param_key).collect();
            let bound = stmt.plan.bind(&keys);
            let bound = self.prefer_held(bound, &text);
            match bound {
                Plan::Single {
                    shard: s,
                    reason: r,
                } => {
                    shard = s;
                    reason = Some(r);
                }
                Plan::Reject(r) => return self.send_refusal(r).await,
                Plan::Scatter { .. }
                | Plan::Multi { .. }
                | Plan::Sequence(_)
                | Plan::Join(_)
                | Plan::Staged(_) => {
                    // Several shards: run it as text with the values in place, then answer
                    // in the binary protocol.
                    return self.execute_as_text(&text, &values).await;
                }
            }
        }
        let stmt = self.stmts.get_mut(&id).expect("looked up above");
        let long_data = std::mem::take(&mut stmt.long_data);
        // Make the packet self-contained: parameter types are sent only on the first execute,
        // but the next one may run on another backend connection.
        let mut body = BytesMut::from(&payload[..]);
        if stmt.params > 0 {
            let nb = (stmt.params as usize).div_ceil(8);
            let bound_at = 10 + nb;
            match body.get(bound_at).copied() {
                Some(1) => {
                    let end = bound_at + 1 + 2 * stmt.params as usize;
                    if body.len() < end {
                        return self.malformed().await;
                    }
                    stmt.param_types = Some(Bytes::copy_from_slice(&body[bound_at + 1..end]));
                }
                Some(0) => {
                    if let Some(types) = &stmt.param_types {
                        let mut b = BytesMut::with_capacity(body.len() + types.len());
                        b.extend_from_slice(&body[..bound_at]);
                        b.put_u8(1);
                        b.extend_from_slice(types);
                        b.extend_from_slice(&body[bound_at + 1..]);
                        body = b;
                    }
                }
                _ => return self.malformed().await,
            }
        }
        // A read may be answered by a replica, under the rules of a text read; not one that
        // opens a cursor (its fetches need the connection after the execute).
        let cursor = payload[5] != 0;
        let replica = match &reason {
            Some(r) if !cursor && self.reads_on_replica_allowed(&class, r, &text) => {
                self.replica_prepared(&shard, &sql).await
            }
            _ => None,
        };
        let (mut lease, prepared) = match replica {
            Some(on_replica) => on_replica,
            None => match self.primary_prepared(&shard, &sql).await {
                Ok(p) => p,
                Err(e) => {
                    self.send_err(1, &e).await?;
                    return Ok(Flow::Continue);
                }
            },
        };
        for (param, data) in long_data {
            let mut p = BytesMut::with_capacity(data.len() + 7);
            p.put_u8(com::STMT_SEND_LONG_DATA);
            p.put_u32_le(prepared.id);
            p.put_u16_le(param);
            p.extend_from_slice(&data);
            if let Err(e) = lease.conn.send_command(&p).await {
                self.send_err(1, &e.to_err_info()).await?;
                return Ok(Flow::Continue);
            }
        }
        body[1..5].copy_from_slice(&prepared.id.to_le_bytes());
        // A cursor pins through the answer's CURSOR_EXISTS status (see after_statement).
        let c = class;
        if !self.reused_held {
            // A fresh connection lists nothing of this session's.
            self.held_diagnostics = false;
        }
        if lease.pool.role() == crate::backend::pool::Role::Replica {
            // A replica's connection serves this execute only: run_single takes it from the
            // stash, and after_statement gives it back to its pool.
            self.reused_held = false;
            self.exec_stash = Some(Held {
                shard: shard.clone(),
                lease,
                why: HoldWhy::Sticky,
            });
            return self
                .run_single(&shard, body.freeze(), &text, &c, ResponseKind::Execute)
                .await;
        }
        let Some(lease) = self.return_xa_leg(&shard, lease) else {
            // An XA leg: run_single takes it back from the distributed transaction.
            return self
                .run_single(&shard, body.freeze(), &text, &c, ResponseKind::Execute)
                .await;
        };
        let stashed = Held {
            shard: shard.clone(),
            lease,
            why: HoldWhy::Sticky,
        };
        if self.held.as_ref().is_some_and(|h| h.shard != shard) {
            // The session holds a connection elsewhere (its transaction): keep it.
            self.exec_stash = Some(stashed);
        } else {
            self.held = Some(stashed);
        }
        // run_single takes the connection back: the statement runs where it was prepared.
        self.run_single(&shard, body.freeze(), &text, &c, ResponseKind::Execute)
            .await
    }

    /// The connection for an execute on the shard's primary side (the held one or a pooled
    /// one, as `acquire` decides), with the statement prepared on it.
    async fn primary_prepared(
        &mut self,
        shard: &str,
        sql: &Bytes,
    ) -> Result<(Lease, BackendStmt), ErrInfo> {
        let c = Classified::of_kind(Kind::Other);
        let mut lease = self.acquire(shard, &c, false).await?;
        match lease.conn.ensure_prepared(sql).await {
            Ok(p) => Ok((lease, p)),
            Err(BackendError::Server(e)) => {
                lease.pool.clone().put(lease);
                Err(e)
            }
            // A failed connection is dropped, not pooled.
            Err(e) => Err(e.to_err_info()),
        }
    }

    /// A replica's connection for a read execute on `shard`, with the statement prepared on
    /// it; `None`: the primary answers (no fit replica, or preparing there failed: logged,
    /// never the client's error).
    async fn replica_prepared(&mut self, shard: &str, sql: &Bytes) -> Option<(Lease, BackendStmt)> {
        let mut lease = self.replica_lease(shard).await?;
        match lease.conn.ensure_prepared(sql).await {
            Ok(p) => Some((lease, p)),
            Err(e) => {
                tracing::info!(session = self.id, shard, replica = %lease.pool.addr, "prepared read on the primary instead: {e}");
                if matches!(e, BackendError::Server(_)) {
                    lease.pool.clone().put(lease);
                }
                None
            }
        }
    }

    pub(super) async fn stmt_fetch(&mut self, payload: Bytes) -> std::io::Result<Flow> {
        if payload.len() < 9 {
            return self.malformed().await;
        }
        let id = u32::from_le_bytes([payload[1], payload[2], payload[3], payload[4]]);
        let Some(stmt) = self.stmts.get(&id) else {
            return self.unknown_stmt(id, "mysqld_stmt_fetch").await;
        };
        let sql = stmt.sql.clone();
        let Some(h) = self.held.as_ref() else {
            return self.unknown_stmt(id, "mysqld_stmt_fetch").await;
        };
        let Some(backend) = h.lease.conn.prepared.get(&sql).copied() else {
            return self.unknown_stmt(id, "mysqld_stmt_fetch").await;
        };
        let shard = h.shard.clone();
        let mut body = BytesMut::from(&payload[..]);
        body[1..5].copy_from_slice(&backend.id.to_le_bytes());
        let c = classify("");
        self.run_single(&shard, body.freeze(), &no_text(), &c, ResponseKind::Fetch)
            .await
    }

    pub(super) async fn stmt_reset(&mut self, payload: Bytes) -> std::io::Result<Flow> {
        if payload.len() < 5 {
            return self.malformed().await;
        }
        let id = u32::from_le_bytes([payload[1], payload[2], payload[3], payload[4]]);
        let Some(stmt) = self.stmts.get_mut(&id) else {
            return self.unknown_stmt(id, "mysqld_stmt_reset").await;
        };
        stmt.long_data.clear();
        let sql = stmt.sql.clone();
        if let Some(h) = self.held.as_mut() {
            if let Some(backend) = h.lease.conn.prepared.get(&sql).copied() {
                let mut body = BytesMut::from(&payload[..]);
                body[1..5].copy_from_slice(&backend.id.to_le_bytes());
                let shard = h.shard.clone();
                let c = classify("");
                return self
                    .run_single(&shard, body.freeze(), &no_text(), &c, ResponseKind::Query)
                    .await;
            }
        }
        self.send_ok(1, self.local_ok()).await?;
        Ok(Flow::Continue)
    }

    /// Runs a prepared statement that spans shards as text SQL with its values in place, and
    /// answers in the binary protocol.
    pub(super) async fn execute_as_text(
        &mut self,
        sql: &str,
        values: &[crate::protocol::binary::ParamValue],
    ) -> std::io::Result<Flow> {
        let backslash = !self
            .vars
            .vars
            .get("sql_mode")
            .is_some_and(|v| v.to_ascii_uppercase().contains("NO_BACKSLASH_ESCAPES"));
        let literals: Option<Vec<String>> =
            values.iter().map(|v| v.to_sql_literal(backslash)).collect();
        let text = literals.and_then(|l| crate::protocol::binary::interpolate(sql, &l));
        let Some(text) = text else {
            let e = ErrInfo::new(
                err::ER_NOT_SUPPORTED_YET,
                "a prepared statement spanning shards cannot use long data or non-finite values",
            );
            self.send_err(1, &e).await?;
            return Ok(Flow::Continue);
        };
        let plan = self.plan_text(&text);
        self.run_plan_binary(plan, &text).await
    }

    /// Runs `plan`, the text plan of `text` (a prepared statement's with its values in
    /// place), answering in the binary protocol.
    pub(super) async fn run_plan_binary(
        &mut self,
        plan: Plan,
        text: &str,
    ) -> std::io::Result<Flow> {
        match plan {
            Plan::Scatter { targets, merge } => {
                self.run_scatter(targets, merge, RowFormat::Binary).await
            }
            Plan::Multi { targets, kind } => self.run_multi(targets, kind, None).await,
            Plan::Join(j) => self.run_join(&j, RowFormat::Binary).await,
            // An OK packet is the same in the binary protocol.
            Plan::Sequence(s) => self.run_sequence(s).await,
            Plan::Single { shard, .. } => {
                let target = vec![ShardSql {
                    shard,
                    sql: text.to_string(),
                }];
                if classify(text).kind == Kind::Read {
                    self.run_scatter(target, MergeSpec::concat(), RowFormat::Binary)
                        .await
                } else {
                    self.run_multi(target, MultiKind::Write, None).await
                }
            }
            // Subqueries over sharded tables: run first, their values put in place
            // (session/staged.rs), the statement that results answered in binary rows.
            Plan::Staged(s) => self.run_staged_binary(*s).await,
            Plan::Reject(r) => self.send_refusal(r).await,
        }
    }
}

/// The shard key a decoded parameter stands for, if it can be routed exactly.
pub(super) fn param_key(v: &crate::protocol::binary::ParamValue) -> Option<KeyValue> {
    use crate::protocol::binary::ParamValue as P;
    match v {
        P::Int(i) => Some(KeyValue::from(*i)),
        P::UInt(u) => Some(KeyValue::from(*u)),
        P::Bytes { data, .. } => std::str::from_utf8(data)
            .ok()
            .and_then(KeyValue::from_str_value),
        P::Decimal(d) => KeyValue::from_number_literal(d),
        _ => None,
    }
}
