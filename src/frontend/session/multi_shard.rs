//! Statements that span shards: scatter reads (each shard's SQL in parallel, the answers
//! merged exactly, one result set to the client) and writes on several shards (a split
//! INSERT, a multi-key UPDATE/DELETE, a reference-table write, DDL). The session's part is
//! the policy (which legs may run inside the client's transaction) and the answer to the
//! client; the diagnostics of the statement are kept for ROW_COUNT(), SHOW WARNINGS ….

use std::time::Instant;

use super::hold::HoldWhy;
use super::own_answers::{failed_diagnostics, shard_warnings};
use super::{Flow, Session};
use crate::backend::conn::{BackendError, QueryResult};
use crate::frontend::diagnostics::{Diagnostics, FoundRows};
use crate::plan::spec::MergeSpec;
use crate::plan::{merge, MultiKind, ShardSql};
use crate::protocol::constants::{err, status};
use crate::protocol::packets::{ErrInfo, OkInfo};

impl Session {
    /// Runs a scatter read: each shard's SQL in parallel, answers merged exactly, sent as one
    /// result set (binary rows when answering a prepared statement).
    pub(super) async fn run_scatter(
        &mut self,
        targets: Vec<ShardSql>,
        merge_spec: MergeSpec,
        binary: Option<()>,
    ) -> std::io::Result<Flow> {
        let mut legs = Vec::with_capacity(targets.len());
        for t in &targets {
            match self.leg_lease(&t.shard).await {
                Ok((l, h)) => legs.push((t.shard.clone(), l, h)),
                Err(e) => {
                    self.return_legs(legs);
                    self.send_err(1, &e).await?;
                    return Ok(Flow::Continue);
                }
            }
        }
        let runs = legs
            .into_iter()
            .zip(targets.iter())
            .map(|((shard, mut lease, held), t)| {
                let sql = t.sql.clone();
                async move {
                    let r = lease.conn.query(&sql).await;
                    let warnings = match &r {
                        Ok(QueryResult::Rows(rs)) if rs.warnings > 0 => {
                            shard_warnings(&mut lease.conn).await
                        }
                        _ => Vec::new(),
                    };
                    (shard, lease, held, r, warnings)
                }
            });
        let started = Instant::now();
        let results = futures::future::join_all(runs).await;
        self.log_if_slow(
            started,
            &targets,
            &format!("scatter, {}", merge_summary(&merge_spec)),
        );
        let mut inputs = Vec::with_capacity(results.len());
        let mut legs = Vec::new();
        let mut failure: Option<ErrInfo> = None;
        let mut conditions = Vec::new();
        let mut warning_count = 0u64;
        // The first shard's error as the server worded it (what SHOW WARNINGS lists).
        let mut server_error: Option<ErrInfo> = None;
        for (shard, lease, held, r, warnings) in results {
            conditions.extend(warnings);
            if let Ok(QueryResult::Rows(rs)) = &r {
                warning_count += u64::from(rs.warnings);
            }
            lease
                .pool
                .stats
                .queries
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            match r {
                Ok(QueryResult::Rows(rs)) => inputs.push(rs),
                Ok(QueryResult::Ok(_)) => {
                    failure.get_or_insert_with(|| {
                        ErrInfo::new(
                            err::ER_NOT_SUPPORTED_YET,
                            format!("shard {shard} returned no result set"),
                        )
                    });
                }
                Err(BackendError::Server(e)) => {
                    if failure.is_none() {
                        server_error = Some(e.clone());
                    }
                    failure.get_or_insert_with(|| ErrInfo {
                        message: format!("{} (on shard {shard})", e.message),
                        ..e
                    });
                }
                Err(e) => {
                    failure.get_or_insert_with(|| e.to_err_info());
                    if held {
                        self.held_why_on_loan = None;
                    }
                    continue; // the connection is gone
                }
            }
            legs.push((shard, lease, held));
        }
        self.return_legs(legs);
        if let Some(e) = failure {
            self.diag = Some(failed_diagnostics(
                conditions,
                server_error.as_ref().unwrap_or(&e),
            ));
            self.send_err(1, &e).await?;
            return Ok(Flow::Continue);
        }
        // SQL_CALC_FOUND_ROWS would make FOUND_ROWS() count rows past the LIMIT on every
        // shard: not tracked, so FOUND_ROWS() is refused after it.
        let calc_found_rows = targets
            .first()
            .is_some_and(|t| t.sql.to_ascii_uppercase().contains("SQL_CALC_FOUND_ROWS"));
        match merge::merge(&merge_spec, inputs) {
            Ok(rs) => {
                self.diag = Some(Diagnostics {
                    row_count: -1,
                    found_rows: if calc_found_rows {
                        FoundRows::Unknown
                    } else {
                        FoundRows::Known(rs.rows.len() as u64)
                    },
                    conditions,
                    warning_count,
                });
                if binary.is_some() {
                    self.send_binary_result_set(&rs).await?;
                } else {
                    self.send_result_set(&rs).await?;
                }
            }
            Err(e) => {
                let e = ErrInfo::new((e.code, e.sqlstate), e.message.clone());
                self.diag = Some(failed_diagnostics(conditions, &e));
                self.send_err(1, &e).await?;
            }
        }
        Ok(Flow::Continue)
    }

    /// The slow-query log of statements that span shards: the plan and every shard's SQL.
    pub(super) fn log_if_slow(&self, started: Instant, targets: &[ShardSql], plan: &str) {
        let slow = self.proxy.config().frontend.slow_query_ms;
        let elapsed = started.elapsed();
        if slow > 0 && elapsed.as_millis() as u64 >= slow {
            crate::metrics::record_slow_query();
            let shards: Vec<String> = targets
                .iter()
                .map(|t| {
                    format!(
                        "{}: {}",
                        t.shard,
                        t.sql.chars().take(300).collect::<String>()
                    )
                })
                .collect();
            tracing::warn!(session = self.id, elapsed_ms = elapsed.as_millis() as u64, plan, shards = ?shards, "slow query");
        }
    }

    /// Runs a write on several shards. Outside a transaction, a split INSERT or a multi-shard
    /// UPDATE/DELETE runs in a transaction on every shard, committed only when every shard
    /// succeeded; inside one, it must stay on the transaction's shard. `generated_id`: the
    /// first id a sequence generated for this INSERT (the client's LAST_INSERT_ID()).
    ///
    /// The client's OK is composed here, so the session records what one server would report
    /// about it (`self.diag`: summed affected rows, every shard's warnings).
    pub(super) async fn run_multi(
        &mut self,
        targets: Vec<ShardSql>,
        kind: MultiKind,
        generated_id: Option<u64>,
    ) -> std::io::Result<Flow> {
        let mut shards: Vec<&str> = targets.iter().map(|t| t.shard.as_str()).collect();
        shards.sort_unstable();
        shards.dedup();
        if let Some(first) = self
            .transaction_shard()
            .map(str::to_string)
            .or_else(|| self.pending_begin.as_ref().map(|_| String::new()))
        {
            if shards.len() > 1 || (!first.is_empty() && shards[0] != first) {
                let bound = if first.is_empty() {
                    "a transaction".to_string()
                } else {
                    format!("a transaction on shard '{first}'")
                };
                let e = ErrInfo::new(
                    err::ER_NOT_SUPPORTED_YET,
                    format!(
                        "This write needs shards {} but the session is in {bound}; distributed transactions are not supported: commit first",
                        shards.join(", ")
                    ),
                );
                self.diag = Some(failed_diagnostics(Vec::new(), &e));
                self.send_err(1, &e).await?;
                return Ok(Flow::Continue);
            }
        }
        let atomic = matches!(kind, MultiKind::InsertSplit | MultiKind::Write)
            && shards.len() > 1
            && self.transaction_shard().is_none();
        let mut legs = Vec::with_capacity(targets.len());
        for t in &targets {
            let r = match self.leg_lease(&t.shard).await {
                Ok((mut l, h)) => match self.start_pending_transaction(&mut l).await {
                    Ok(()) => Ok((l, h)),
                    Err(e) => Err(e),
                },
                Err(e) => Err(e),
            };
            match r {
                Ok((l, h)) => legs.push((t.shard.clone(), l, h)),
                Err(e) => {
                    self.return_legs(legs);
                    self.send_err(1, &e).await?;
                    return Ok(Flow::Continue);
                }
            }
        }
        let runs = legs
            .into_iter()
            .zip(targets.iter())
            .map(|((shard, mut lease, held), t)| {
                let sql = t.sql.clone();
                async move {
                    let r = async {
                        if atomic {
                            lease.conn.query("BEGIN").await?;
                        }
                        lease.conn.query(&sql).await
                    }
                    .await;
                    // Before COMMIT, which would clear them.
                    let warnings = match &r {
                        Ok(QueryResult::Ok(ok)) if ok.warnings > 0 => {
                            shard_warnings(&mut lease.conn).await
                        }
                        _ => Vec::new(),
                    };
                    (shard, lease, held, r, warnings)
                }
            });
        let started = Instant::now();
        let results = futures::future::join_all(runs).await;
        self.log_if_slow(started, &targets, &format!("multi-shard write ({kind:?})"));
        let failed = results.iter().any(|r| r.3.is_err());
        let mut total = OkInfo {
            status: self.status & !status::MORE_RESULTS_EXISTS,
            ..OkInfo::default()
        };
        let mut failure: Option<ErrInfo> = None;
        let mut legs = Vec::new();
        let mut conditions = Vec::new();
        let mut warning_count = 0u64;
        // The first shard's error as the server worded it (what SHOW WARNINGS lists).
        let mut server_error: Option<ErrInfo> = None;
        for (i, (shard, mut lease, held, r, warnings)) in results.into_iter().enumerate() {
            conditions.extend(warnings);
            lease
                .pool
                .stats
                .queries
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            match r {
                Ok(QueryResult::Ok(ok)) => {
                    if kind == MultiKind::ReferenceWrite {
                        if i == 0 {
                            total.affected_rows = ok.affected_rows;
                        }
                    } else {
                        total.affected_rows += ok.affected_rows;
                    }
                    if total.last_insert_id == 0 {
                        total.last_insert_id = ok.last_insert_id;
                    }
                    if ok.last_insert_id != 0 {
                        // The OK's id is also set by an explicit value in an AUTO_INCREMENT
                        // column, which leaves LAST_INSERT_ID() alone: what the connection
                        // holds now is unknown, so the next reader restores it.
                        lease.conn.last_insert_id = u64::MAX;
                    }
                    total.warnings = total.warnings.saturating_add(ok.warnings);
                    warning_count += u64::from(ok.warnings);
                }
                Ok(QueryResult::Rows(_)) => {}
                Err(BackendError::Server(e)) => {
                    if failure.is_none() {
                        server_error = Some(e.clone());
                    }
                    failure.get_or_insert_with(|| ErrInfo {
                        message: format!("{} (on shard {shard})", e.message),
                        ..e
                    });
                }
                Err(e) => {
                    failure.get_or_insert_with(|| ErrInfo {
                        message: format!("{} (on shard {shard})", e.to_err_info().message),
                        ..e.to_err_info()
                    });
                    continue;
                }
            }
            if atomic {
                let end = if failed { "ROLLBACK" } else { "COMMIT" };
                if let Err(e) = lease.conn.query(end).await {
                    failure.get_or_insert_with(|| ErrInfo {
                        message: format!(
                            "{end} failed on shard {shard}: {}",
                            e.to_err_info().message
                        ),
                        ..e.to_err_info()
                    });
                    continue;
                }
            }
            if held {
                legs.push((shard, lease, held));
            } else if lease.conn.status & status::IN_TRANS != 0 {
                // The held-back BEGIN went here: this is now the transaction's connection.
                self.held_why_on_loan = Some(HoldWhy::Transaction);
                legs.push((shard, lease, true));
            } else {
                legs.push((shard, lease, false));
            }
        }
        self.return_legs(legs);
        if let Some(e) = failure {
            self.diag = Some(failed_diagnostics(
                conditions,
                server_error.as_ref().unwrap_or(&e),
            ));
            self.send_err(1, &e).await?;
            return Ok(Flow::Continue);
        }
        if let Some(id) = generated_id {
            // The shards saw explicit keys; the client asked for generated ones.
            total.last_insert_id = id;
        }
        if total.last_insert_id != 0 {
            self.last_insert_id = total.last_insert_id;
        }
        self.diag = Some(Diagnostics {
            row_count: total.affected_rows as i64,
            found_rows: FoundRows::Unknown,
            conditions,
            warning_count,
        });
        total.status = self
            .held
            .as_ref()
            .map_or(self.status, |h| h.lease.conn.status)
            & !status::MORE_RESULTS_EXISTS;
        self.send_ok(1, total).await?;
        Ok(Flow::Continue)
    }
}

/// A short description of a merge for logs.
pub(super) fn merge_summary(m: &MergeSpec) -> String {
    format!(
        "{} group keys, {} aggregates, {} sort keys, offset {}, limit {:?}{}",
        m.group_by.len(),
        m.aggregates.len(),
        m.order_by.len(),
        m.offset,
        m.limit,
        if m.distinct { ", distinct" } else { "" }
    )
}
