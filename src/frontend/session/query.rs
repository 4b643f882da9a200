//! Text statements (COM_QUERY) and the few other commands that carry one: classification,
//! the proxy's own settings, planning, and the choice of path for the plan (one shard, a
//! scatter read, a multi-shard write, a sequence insert, a refusal). COM_INIT_DB,
//! COM_SET_OPTION and the commands that simply go to the default shard are here as well.
//!
//! Decides where a statement goes; running it is the business of [`super::single`] and
//! [`super::multi_shard`].

use std::sync::Arc;

use bytes::Bytes;

use super::{no_text, Flow, Session};
use crate::backend::conn::QueryResult;
use crate::exec::Diagnostics;
use crate::frontend::classify::names_no_table;
use crate::frontend::classify::{classify, Classified, Kind};
use crate::plan::{self, Plan, PlanContext, Rejection, SingleReason};
use crate::protocol::buf::Reader;
use crate::protocol::constants::{cap, com};
use crate::protocol::packets::{build_command, build_eof, ErrInfo};
use crate::protocol::response::ResponseKind;
use crate::protocol::resultset::RowFormat;

/// The session setting that allows UPDATE/DELETE without a shard key.
pub(super) const SCATTER_WRITES_SETTING: &str = "shardproxy_allow_scatter_writes";

impl Session {
    /// Plans a text statement. Statements that name no sharded or reference table may run on
    /// any shard: they go where the session already holds a connection (its transaction, its
    /// pinned state, its last statement's diagnostics), else to the default shard.
    pub(super) fn plan_text(&self, sql: &str) -> Plan {
        let rules = self.proxy.rules();
        let ctx = PlanContext {
            rules: &rules,
            current_db: self.vars.db.as_deref(),
            allow_scatter_writes: self.allow_scatter_writes,
        };
        let plan = plan::plan(sql, &ctx);
        self.prefer_held(plan, sql)
    }

    /// [`Self::plan_text`] through the session thread's text plan cache
    /// ([`crate::plan::text_cache`]), counted in SHOW PROXY STATUS and the metrics.
    pub(super) fn plan_text_cached(&mut self, sql: &str) -> Plan {
        let rules = self.proxy.rules();
        let size = self.proxy.config().plan_cache.size;
        let ctx = PlanContext {
            rules: &rules,
            current_db: self.vars.db.as_deref(),
            allow_scatter_writes: self.allow_scatter_writes,
        };
        let (plan, lookup) = crate::plan::text_cache::plan_cached(sql, &ctx, &rules, size);
        let counters = &self.proxy.counters;
        match lookup {
            crate::plan::text_cache::Lookup::Hit => {
                counters
                    .text_plan_cache_hits
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                self.metrics.record_text_plan_cache(true);
            }
            crate::plan::text_cache::Lookup::Miss => {
                counters
                    .text_plan_cache_misses
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                self.metrics.record_text_plan_cache(false);
            }
            crate::plan::text_cache::Lookup::Off => {}
        }
        self.prefer_held(plan, sql)
    }

    /// A statement that reads no table at all (`SELECT @@x`, `SET …`, `SHOW WARNINGS`) runs
    /// where the session already holds a connection; one on an unsharded table still goes to
    /// the default shard, where the table is.
    pub(super) fn prefer_held(&self, plan: Plan, sql: &str) -> Plan {
        match (plan, &self.held) {
            (Plan::Single { reason, .. }, Some(h))
                if (reason == SingleReason::NoShardedTable && names_no_table(sql))
                    || reason.is_reference_only() =>
            {
                Plan::Single {
                    shard: h.shard.clone(),
                    reason: SingleReason::OnHeldConnection(Box::new(reason)),
                }
            }
            (p, _) => p,
        }
    }

    /// A text statement. `diag`, `released`: what the session knows about the previous
    /// statement, for the statements that ask about it.
    pub(super) async fn com_query(
        &mut self,
        payload: Bytes,
        diag: Option<Diagnostics>,
        released: Option<Diagnostics>,
    ) -> std::io::Result<Flow> {
        let sql = String::from_utf8_lossy(&payload[1..]).into_owned();
        if self.rights.is_some() {
            if let Some(flow) = self.refuse_outside_rights(&sql).await? {
                return Ok(flow);
            }
        }
        let c = classify(&sql);
        let sets_idle_timeout = matches!(&c.kind, Kind::SetSession { vars, .. }
            if vars.iter().any(|(n, _)| n == "wait_timeout"));
        if c.needs_previous {
            let d = diag.or_else(|| released.filter(|_| self.held.is_none()));
            if let Some(d) = d {
                return self.answer_from_diagnostics(&sql, d).await;
            }
        }
        if let Some(q) = crate::frontend::proxy_vars::show_variables(&sql) {
            return self.show_proxy_variables(&q).await;
        }
        match &c.kind {
            Kind::Kill { query_only, id } => return self.kill(*id, *query_only).await,
            Kind::Preview(stmt) => {
                let stmt = stmt.clone();
                return self.preview(&stmt).await;
            }
            Kind::Read => {
                // The proxy's sessions, not the backend's threads (frontend::processlist).
                if let Some(req) = crate::frontend::processlist::request(&sql) {
                    return self.processlist(req, &sql).await;
                }
            }
            Kind::Begin => return self.begin(payload, &sql, &c).await,
            Kind::Commit | Kind::Rollback => return self.end_transaction(payload, &sql, &c).await,
            Kind::SetSession { vars, names: None }
                if vars.len() == 1 && vars[0].0 == super::transaction::TRANSACTION_MODE_SETTING =>
            {
                let value = vars[0].1.rsplit('=').next().unwrap_or("").trim();
                let value = value.trim_matches(|c| c == '\'' || c == '"' || c == '`');
                let e = match crate::config::TransactionMode::parse(value) {
                    Some(_) if self.dtx.is_some() => Some(ErrInfo::new(
                        (1568, "25001"),
                        "Transaction characteristics can't be changed while a transaction is in progress",
                    )),
                    Some(mode) => {
                        self.transaction_mode = mode;
                        None
                    }
                    None => Some(ErrInfo::new(
                        (1231, "42000"),
                        format!("Variable '{}' can't be set to the value of '{value}' (single or twopc)", super::transaction::TRANSACTION_MODE_SETTING),
                    )),
                };
                match e {
                    Some(e) => self.send_err(1, &e).await?,
                    None => self.send_ok(1, self.local_ok()).await?,
                }
                return Ok(Flow::Continue);
            }
            Kind::SetSession { vars, names: None }
                if vars.len() == 1 && vars[0].0 == super::replica_reads::READ_FROM_SETTING =>
            {
                match self.set_read_from(&vars[0].1.clone()) {
                    Ok(()) => self.send_ok(1, self.local_ok()).await?,
                    Err(e) => self.send_err(1, &e).await?,
                }
                return Ok(Flow::Continue);
            }
            Kind::SetSession { vars, names: None }
                if vars.len() == 1 && vars[0].0 == SCATTER_WRITES_SETTING =>
            {
                let value = vars[0]
                    .1
                    .rsplit('=')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase();
                self.allow_scatter_writes = matches!(value.as_str(), "1" | "on" | "true");
                self.send_ok(1, self.local_ok()).await?;
                return Ok(Flow::Continue);
            }
            _ => {}
        }
        if self.dtx.is_some() {
            if let Some(e) = super::transaction::breaks_distributed(&sql) {
                self.send_err(1, &e).await?;
                return Ok(Flow::Continue);
            }
        }
        // CONNECTION_ID() and @@socket are the proxy's to answer (see frontend::rewrite).
        let (sql, payload) =
            match crate::frontend::rewrite::proxy_values(&sql, self.id, || self.proxy_settings()) {
                Some(rewritten) => {
                    let p = build_command(com::QUERY, rewritten.as_bytes());
                    (rewritten, p)
                }
                None => (sql, payload),
            };
        match self.plan_text_cached(&sql) {
            Plan::Single { shard, reason } => {
                // Decided before a floating read takes the held-back BEGIN below: a read of a
                // session whose transaction waits for its first statement stays on the primary.
                let reads_table = super::replica_reads::reads_table(&reason, &sql);
                self.reads_on_replicas = self.replica_policy(&c, reads_table).is_ok();
                // A read that any shard answers (no table, or reference tables only) does not
                // decide where a held-back transaction runs.
                let floating = c.kind == Kind::Read
                    && self.held.is_none()
                    && ((reason == SingleReason::NoShardedTable && names_no_table(&sql))
                        || reason.is_reference_only());
                let pending = if floating {
                    self.pending_begin.take()
                } else {
                    None
                };
                let text: Arc<str> = Arc::from(sql);
                let r = self
                    .run_single(&shard, payload, &text, &c, ResponseKind::Query)
                    .await;
                self.reads_on_replicas = false;
                if pending.is_some() {
                    self.pending_begin = pending;
                }
                if sets_idle_timeout {
                    self.refresh_idle_timeout();
                }
                r
            }
            Plan::Scatter { targets, merge } => {
                self.mark_running(&sql);
                self.reads_on_replicas = self.replica_policy(&c, true).is_ok();
                let r = self.run_scatter(targets, merge, RowFormat::Text).await;
                self.reads_on_replicas = false;
                r
            }
            Plan::Join(j) => {
                self.mark_running(&sql);
                self.reads_on_replicas = self.replica_policy(&c, true).is_ok();
                let r = self.run_join(&j, RowFormat::Text).await;
                self.reads_on_replicas = false;
                r
            }
            Plan::Multi { targets, kind } => {
                self.mark_running(&sql);
                self.run_multi(targets, kind, None).await
            }
            Plan::Sequence(s) if s.placeholder_slot => {
                // What MariaDB answers for a `?` outside a prepared statement.
                let e = ErrInfo::new(
                    (1064, "42000"),
                    "You have an error in your SQL syntax: '?' outside a prepared statement",
                );
                self.send_err(1, &e).await?;
                Ok(Flow::Continue)
            }
            Plan::Sequence(s) => {
                self.mark_running(&sql);
                self.run_sequence(s).await
            }
            Plan::Staged(s) => {
                self.mark_running(&sql);
                self.run_staged(*s).await
            }
            Plan::Reject(r) => {
                if matches!(r, Rejection::InsertWithoutColumnList { .. }) {
                    if let Some(spelt_out) = self.fill_column_list(&sql).await {
                        // The same statement with its columns named: planned as if sent so.
                        let p = build_command(com::QUERY, spelt_out.as_bytes());
                        return Box::pin(self.com_query(p, None, None)).await;
                    }
                }
                self.send_refusal(r).await
            }
        }
    }

    /// `INSERT INTO t VALUES …` into a sharded table, with the table's columns listed after
    /// its name (read from the default shard: `frontend::column_list`); `None` when the
    /// statement is not of that form or the columns cannot be read.
    pub(super) async fn fill_column_list(&mut self, sql: &str) -> Option<String> {
        let slot = crate::frontend::column_list::slot(sql)?;
        let schema = slot.schema.clone().or_else(|| self.vars.db.clone())?;
        let shard = self.proxy.config().sharding.default_shard.clone();
        let mut lease = self.fresh_lease(&shard).await.ok()?;
        let query = crate::frontend::column_list::columns_query(&schema, &slot.table);
        let columns: Vec<String> = match lease.conn.query(&query).await {
            Ok(QueryResult::Rows(rs)) => rs
                .rows
                .iter()
                .filter_map(|r| r.first().cloned().flatten())
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .collect(),
            // A failed connection is dropped, not pooled.
            _ => return None,
        };
        lease.pool.clone().put(lease);
        if columns.is_empty() {
            return None;
        }
        Some(crate::frontend::column_list::splice(sql, &slot, &columns))
    }

    pub(super) async fn com_init_db(&mut self, payload: Bytes) -> std::io::Result<Flow> {
        let db = String::from_utf8_lossy(&payload[1..]).into_owned();
        if let Some(e) = self.database_denied(&db) {
            self.send_err(1, &e).await?;
            return Ok(Flow::Continue);
        }
        let shard = self
            .held
            .as_ref()
            .map(|h| h.shard.clone())
            .unwrap_or_else(|| self.proxy.config().sharding.default_shard.clone());
        let c = Classified::of_kind(Kind::Use(db));
        self.run_single(&shard, payload, &no_text(), &c, ResponseKind::Query)
            .await
    }

    pub(super) async fn com_set_option(&mut self, payload: Bytes) -> std::io::Result<Flow> {
        let mut r = Reader::new(&payload[1..]);
        let on = match r.u16() {
            Some(0) => true,
            Some(1) => false,
            _ => {
                let e = ErrInfo::new((1047, "08S01"), "Unknown COM_SET_OPTION value");
                self.send_err(1, &e).await?;
                return Ok(Flow::Continue);
            }
        };
        self.vars.multi_statements = Some(on);
        if on {
            self.caps |= cap::MULTI_STATEMENTS;
        } else {
            self.caps &= !cap::MULTI_STATEMENTS;
        }
        if let Some(h) = self.held.as_mut() {
            if let Err(e) = h.lease.conn.set_option(on).await {
                self.held = None;
                self.send_err(1, &e.to_err_info()).await?;
                return Ok(Flow::Continue);
            }
            h.lease.conn.vars.multi_statements = Some(on);
        }
        self.writer.write(1, &build_eof(self.status, 0)).await?;
        self.writer.flush().await?;
        Ok(Flow::Continue)
    }

    pub(super) async fn forward_default(
        &mut self,
        payload: Bytes,
        kind: ResponseKind,
    ) -> std::io::Result<Flow> {
        let shard = self.proxy.config().sharding.default_shard.clone();
        let c = classify("");
        let shard = self.held.as_ref().map(|h| h.shard.clone()).unwrap_or(shard);
        self.run_single(&shard, payload, &no_text(), &c, kind).await
    }
}
