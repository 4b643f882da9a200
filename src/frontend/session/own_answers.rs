//! What the session answers itself rather than by relaying a backend's answer: PREVIEW,
//! result sets the proxy composed (sent as text rows, or binary rows for an execute),
//! questions about a statement it ran on several shards (`ROW_COUNT()`, `SHOW WARNINGS` …, see
//! [`crate::frontend::diagnostics`]) and INSERTs whose keys come from a global sequence (see
//! [`crate::plan::sequence`] and [`crate::sequence`]). Off the relay path, which is the hot
//! path.

use bytes::{Bytes, BytesMut};

use super::{Flow, Session};
use crate::backend::conn::{BackendError, QueryResult};
use crate::exec::Diagnostics;
use crate::frontend::classify::names_no_table;
use crate::frontend::diagnostics;
use crate::plan::{self, MultiKind};
use crate::protocol::constants::{com, err, status};
use crate::protocol::packets::{build_command, build_eof, build_terminator, ErrInfo};
use crate::protocol::resultset::{encode_text_row, ResultSet, RowFormat};

impl Session {
    /// Answers a statement about the previous one (ROW_COUNT(), SHOW WARNINGS …) when the
    /// proxy ran that one on several shards: from what the proxy recorded, not from a backend
    /// connection that saw only part of it.
    pub(super) async fn answer_from_diagnostics(
        &mut self,
        sql: &str,
        d: Diagnostics,
    ) -> std::io::Result<Flow> {
        match diagnostics::answer(sql, &d) {
            diagnostics::Answer::AsIs => {
                let payload = build_command(com::QUERY, sql.as_bytes());
                Box::pin(self.com_query(payload, None, None)).await
            }
            diagnostics::Answer::Refuse(why) => {
                self.diag = Some(d);
                let e = ErrInfo::new(
                    err::ER_NOT_SUPPORTED_YET,
                    format!(
                        "shardproxy: cannot answer this about the previous statement, which ran \
                         on several shards: {why}"
                    ),
                );
                self.send_err(1, &e).await?;
                Ok(Flow::Continue)
            }
            diagnostics::Answer::Show {
                errors_only,
                offset,
                limit,
            } => {
                // The column definitions come from a server, so they match what it would send
                // in this session's character set; the rows are the proxy's.
                let shape = match self.held.as_mut() {
                    // SHOW does not clear the held connection's own diagnostics.
                    Some(h) => {
                        let r = h.lease.conn.query("SHOW WARNINGS LIMIT 0").await;
                        if matches!(r, Err(BackendError::Lost { .. })) {
                            self.held = None;
                        }
                        r.map_err(|e| e.to_err_info())
                    }
                    None => {
                        let shard = self.proxy.config().sharding.default_shard.clone();
                        match self.fresh_lease(&shard).await {
                            Ok(mut lease) => {
                                let r = lease.conn.query("SHOW WARNINGS LIMIT 0").await;
                                if !matches!(r, Err(BackendError::Lost { .. })) {
                                    lease.pool.clone().put(lease);
                                }
                                r.map_err(|e| e.to_err_info())
                            }
                            Err(e) => Err(e),
                        }
                    }
                };
                let mut rs = match shape {
                    Ok(QueryResult::Rows(rs)) => rs,
                    Ok(QueryResult::Ok(_)) => ResultSet::default(),
                    Err(e) => {
                        self.diag = Some(d);
                        self.send_err(1, &e).await?;
                        return Ok(Flow::Continue);
                    }
                };
                rs.rows = diagnostics::listed(&d, errors_only, offset, limit)
                    .into_iter()
                    .map(|c| {
                        vec![
                            Some(Bytes::from(c.level.clone())),
                            Some(Bytes::from(c.code.to_string())),
                            Some(Bytes::from(c.message.clone())),
                        ]
                    })
                    .collect();
                rs.warnings = d.warning_count.min(u16::MAX as u64) as u16;
                self.send_result_set(&rs, RowFormat::Text).await?;
                self.diag = Some(d.after_answer());
                Ok(Flow::Continue)
            }
            diagnostics::Answer::Rewrite(text) => {
                let payload = build_command(com::QUERY, text.as_bytes());
                let names_table = !names_no_table(&text);
                let flow = Box::pin(self.com_query(payload, None, None)).await?;
                // MariaDB keeps the warnings across statements that use no table.
                if !names_table && self.diag.is_none() {
                    self.diag = Some(d.after_answer());
                }
                Ok(flow)
            }
        }
    }

    /// Runs an INSERT whose keys come from a global sequence: allocates the ids, renders the
    /// statement per shard, and runs it like a split INSERT; the client's OK carries the first
    /// generated id, as AUTO_INCREMENT's would.
    pub(super) async fn run_sequence(&mut self, s: plan::SequenceInsert) -> std::io::Result<Flow> {
        let zero_generates =
            plan::sequence::zero_generates(self.vars.vars.get("sql_mode").map(String::as_str));
        let n = s.ids_needed(zero_generates);
        let first = if n == 0 {
            0
        } else {
            let Some(db) = s.db.clone().or_else(|| self.vars.db.clone()) else {
                let e = ErrInfo::new((1046, "3D000"), "No database selected");
                self.send_err(1, &e).await?;
                return Ok(Flow::Continue);
            };
            let src = crate::sequence::Source {
                rule: &s.sequence,
                db: &db,
                table: &s.table,
                key: &s.key,
            };
            let proxy = self.proxy.clone();
            let (topology, config) = (proxy.topology(), proxy.config());
            let backends = crate::sequence::Backends {
                topology: &topology,
                default_shard: &config.sharding.default_shard,
            };
            // In a transaction bound to a shard, one row can only go there: take an id that
            // lands there rather than one that would make the write distributed.
            let bound = (n == 1)
                .then(|| self.transaction_shard().map(str::to_string))
                .flatten();
            let allocated = match &bound {
                Some(shard) => {
                    let rules = proxy.rules();
                    proxy
                        .sequences
                        .allocate_on(backends, &src, &rules.ring, shard)
                        .await
                }
                None => proxy.sequences.allocate(backends, &src, n).await,
            };
            match allocated {
                Ok(first) => first,
                Err(e) => {
                    self.diag = Some(Diagnostics::failed(Vec::new(), &e));
                    self.send_err(1, &e).await?;
                    return Ok(Flow::Continue);
                }
            }
        };
        let rules = self.proxy.rules();
        let targets = s.render(first, &rules, zero_generates);
        self.run_multi(targets, MultiKind::InsertSplit, (n > 0).then_some(first))
            .await
    }
}

impl Session {
    pub(super) async fn preview(&mut self, stmt: &str) -> std::io::Result<Flow> {
        let plan = self.plan_text(stmt);
        let mut rs = plan::preview::preview_result_set(&plan, stmt);
        if self.read_from != crate::config::ReadFrom::Primary {
            // Where each shard's part would be read, with the reason.
            let c = crate::frontend::classify::classify(stmt);
            let reads_table = match &plan {
                plan::Plan::Single { reason, .. } => {
                    super::replica_reads::reads_table(reason, stmt)
                }
                _ => true,
            };
            let policy = self.replica_policy(&c, reads_table);
            for row in &mut rs.rows {
                let shard = row[0]
                    .as_ref()
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                    .unwrap_or_default();
                let target = self.read_target(&shard, policy);
                if let Some(notes) = row.get_mut(2) {
                    let text = notes
                        .as_ref()
                        .map(|b| String::from_utf8_lossy(b).into_owned())
                        .unwrap_or_default();
                    *notes = Some(bytes::Bytes::from(format!("{text}; read on {target}")));
                }
            }
        }
        self.send_result_set(&rs, RowFormat::Text).await?;
        Ok(Flow::Continue)
    }

    /// Sends a result set the proxy composed, as text rows or as binary rows (the answer to
    /// an execute). A value that does not fit its column in the binary protocol is an error,
    /// sent before anything of the result set.
    pub(super) async fn send_result_set(
        &mut self,
        rs: &ResultSet,
        format: RowFormat,
    ) -> std::io::Result<()> {
        // Binary rows are encoded first, so a value that does not fit fails cleanly; text
        // rows are encoded as they are written.
        let binary_rows = match format {
            RowFormat::Text => None,
            RowFormat::Binary => {
                let encoded: Option<Vec<BytesMut>> = rs
                    .rows
                    .iter()
                    .map(|r| crate::protocol::binary::encode_binary_row(&rs.columns, r))
                    .collect();
                let Some(rows) = encoded else {
                    let e = ErrInfo::new(
                        (1105, "HY000"),
                        "a merged value does not fit its column type in the binary protocol",
                    );
                    return self.send_err(1, &e).await;
                };
                Some(rows)
            }
        };
        self.audit_note.rows = rs.rows.len() as u64;
        let mut seq = self.send_result_header(&rs.columns).await?;
        let status = self.status & !status::MORE_RESULTS_EXISTS;
        match &binary_rows {
            Some(rows) => {
                for r in rows {
                    seq = self.writer.write(seq, r).await?;
                }
            }
            None => {
                for r in &rs.rows {
                    seq = self.writer.write(seq, &encode_text_row(r)).await?;
                }
            }
        }
        self.writer
            .write(
                seq,
                &build_terminator(self.deprecate_eof(), status, rs.warnings),
            )
            .await?;
        self.writer.flush().await
    }

    /// Writes a result set's header (column count, definitions, and the EOF unless the
    /// client deprecated it); returns the sequence id of the first row.
    pub(super) async fn send_result_header(
        &mut self,
        columns: &[crate::protocol::resultset::ColumnDef],
    ) -> std::io::Result<u8> {
        let mut count = BytesMut::new();
        crate::protocol::buf::put_lenenc_int(&mut count, columns.len() as u64);
        let mut seq = self.writer.write(1, &count).await?;
        for c in columns {
            seq = self.writer.write(seq, &c.encode()).await?;
        }
        if !self.deprecate_eof() {
            let status = self.status & !status::MORE_RESULTS_EXISTS;
            seq = self.writer.write(seq, &build_eof(status, 0)).await?;
        }
        Ok(seq)
    }
}
