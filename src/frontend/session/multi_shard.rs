//! Statements that span shards: scatter reads (each shard's SQL in parallel, the answers
//! merged exactly, one result set to the client) and writes on several shards (a split
//! INSERT, a multi-key UPDATE/DELETE, a reference-table write, DDL). The session's part is
//! the policy (which legs may run inside the client's transaction) and the answer to the
//! client; the diagnostics of the statement are kept for ROW_COUNT(), SHOW WARNINGS ….

use std::time::Instant;

use super::{Flow, Session};
use crate::exec::write::Commit;
use crate::exec::Diagnostics;
use crate::plan::spec::MergeSpec;
use crate::plan::{MultiKind, ShardSql};
use crate::protocol::constants::{err, status};
use crate::protocol::packets::{build_terminator, ErrInfo};
use crate::protocol::resultset::{encode_text_row, RowFormat};

impl Session {
    /// Runs a scatter read through the executor and streams the merged result set (binary
    /// rows when answering a prepared statement): each row is written to the client as it is
    /// decided, before the next is read from a shard, so a slow client slows the shards'
    /// reads rather than filling the proxy's memory (`exec/stream.rs`).
    pub(super) async fn run_scatter(
        &mut self,
        targets: Vec<ShardSql>,
        merge_spec: MergeSpec,
        format: RowFormat,
    ) -> std::io::Result<Flow> {
        self.audit_shards(targets.iter().map(|t| t.shard.as_str()));
        let started = Instant::now();
        let limits = crate::exec::stream::Limits {
            max_groups: self.proxy.config().merge.max_groups,
        };
        let opened = crate::exec::stream::open(self, &targets, &merge_spec, limits).await;
        let mut stream = match opened {
            Ok(s) => s,
            Err(done) => {
                self.log_if_slow(started, &targets, || merge_spec.summary());
                if done.diagnostics.is_some() {
                    self.diag = done.diagnostics;
                }
                if let Err(e) = done.answer {
                    self.send_err(1, &e).await?;
                }
                return Ok(Flow::Continue);
            }
        };
        let columns = stream.columns().to_vec();
        let mut seq = match self.send_result_header(&columns).await {
            Ok(seq) => seq,
            Err(e) => {
                stream.abandon(self);
                return Err(e);
            }
        };
        loop {
            let row = match stream.next().await {
                Ok(Some(row)) => row,
                Ok(None) => break,
                Err(_) => break,
            };
            let packet = match format {
                RowFormat::Text => encode_text_row(&row),
                RowFormat::Binary => {
                    match crate::protocol::binary::encode_binary_row(&columns, &row) {
                        Some(p) => p,
                        None => {
                            stream.fail(ErrInfo::new(
                                (1105, "HY000"),
                                "a merged value does not fit its column type in the binary protocol",
                            ));
                            break;
                        }
                    }
                }
            };
            match self.writer.write(seq, &packet).await {
                Ok(s) => seq = s,
                Err(e) => {
                    stream.abandon(self);
                    return Err(e);
                }
            }
        }
        let done = stream.finish(self).await;
        self.log_if_slow(started, &targets, || merge_spec.summary());
        if done.diagnostics.is_some() {
            self.diag = done.diagnostics;
        }
        match done.answer {
            Ok(warnings) => {
                let status = self.status & !status::MORE_RESULTS_EXISTS;
                let end = build_terminator(self.deprecate_eof(), status, warnings);
                self.writer.write(seq, &end).await?;
                self.writer.flush().await?;
            }
            // After rows, an ERR packet ends the result set, as MariaDB's own.
            Err(e) => self.send_err(seq, &e).await?,
        }
        Ok(Flow::Continue)
    }

    /// The slow-query log of statements that span shards: the plan (described only when the
    /// statement was slow) and every shard's SQL.
    pub(super) fn log_if_slow(
        &self,
        started: Instant,
        targets: &[ShardSql],
        plan: impl FnOnce() -> String,
    ) {
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
            let plan = plan();
            tracing::warn!(session = self.id, elapsed_ms = elapsed.as_millis() as u64, plan, shards = ?shards, "slow query");
        }
    }

    /// Runs a write on several shards. Outside a transaction, a split INSERT or a multi-shard
    /// UPDATE/DELETE runs in a transaction on every shard, committed only when every shard
    /// succeeded; inside one, it must stay on the transaction's shard. `generated_id`: the
    /// first id a sequence generated for this INSERT (the client's LAST_INSERT_ID()).
    ///
    /// The client's OK is composed by the executor, so the session records what one server
    /// would report about it (`self.diag`: summed affected rows, every shard's warnings).
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
            let spans = shards.len() > 1 || (!first.is_empty() && shards[0] != first);
            if spans && self.two_phase() {
                // `twopc`: the write's other legs join the transaction as XA legs; with only
                // a held-back BEGIN, the first target's shard becomes the home shard.
                let home = if first.is_empty() {
                    targets[0].shard.clone()
                } else {
                    first
                };
                self.begin_distributed(&home);
            } else if spans {
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
                self.diag = Some(Diagnostics::failed(Vec::new(), &e));
                self.send_err(1, &e).await?;
                return Ok(Flow::Continue);
            }
        }
        let commit = if matches!(kind, MultiKind::InsertSplit | MultiKind::Write)
            && shards.len() > 1
            && self.transaction_shard().is_none()
            && self.dtx.is_none()
            && self.pending_begin.is_none()
        {
            if self.transaction_mode == crate::config::TransactionMode::Twopc {
                Commit::TwoPhase
            } else {
                Commit::AllOrNone
            }
        } else {
            Commit::AsSent
        };
        self.audit_shards(targets.iter().map(|t| t.shard.as_str()));
        let started = Instant::now();
        let done = crate::exec::write::write(self, &targets, kind, commit).await;
        self.log_if_slow(started, &targets, || kind.summary());
        if done.diagnostics.is_some() {
            self.diag = done.diagnostics;
        }
        let mut total = match done.answer {
            Ok(total) => total,
            Err(e) => {
                self.send_err(1, &e).await?;
                return Ok(Flow::Continue);
            }
        };
        if let Some(id) = generated_id {
            // The shards saw explicit keys; the client asked for generated ones.
            total.last_insert_id = id;
        }
        if total.last_insert_id != 0 {
            self.last_insert_id = total.last_insert_id;
        }
        total.status = self
            .held
            .as_ref()
            .map_or(self.status, |h| h.lease.conn.status)
            & !status::MORE_RESULTS_EXISTS;
        self.audit_note.rows = total.affected_rows;
        self.send_ok(1, total).await?;
        Ok(Flow::Continue)
    }
}
