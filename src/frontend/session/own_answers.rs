//! The statements the session answers from what it knows itself rather than by relaying a
//! backend's answer: questions about a statement it ran on several shards (`ROW_COUNT()`,
//! `SHOW WARNINGS` …, see [`crate::frontend::diagnostics`]) and INSERTs whose keys come from a
//! global sequence (see [`crate::plan::sequence`] and [`crate::sequence`]). Kept out of
//! `session.rs`, whose relay path is the hot path.

use super::*;

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
                self.send_result_set(&rs).await?;
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
                    self.diag = Some(failed_diagnostics(Vec::new(), &e));
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

/// A shard connection's `SHOW WARNINGS`, read right after its part of a multi-shard statement
/// (empty if it cannot be read: the count is still reported).
pub(super) async fn shard_warnings(conn: &mut BackendConn) -> Vec<Condition> {
    match conn.query("SHOW WARNINGS").await {
        Ok(QueryResult::Rows(rs)) => rs
            .rows
            .iter()
            .filter_map(|r| {
                let text = |i: usize| {
                    r.get(i)
                        .cloned()
                        .flatten()
                        .map(|b| String::from_utf8_lossy(&b).into_owned())
                };
                Some(Condition {
                    level: text(0)?,
                    code: text(1)?.parse().ok()?,
                    message: text(2)?,
                })
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// Diagnostics after a multi-shard statement failed with `e` (what the client was sent).
pub(super) fn failed_diagnostics(mut conditions: Vec<Condition>, e: &ErrInfo) -> Diagnostics {
    conditions.push(Condition {
        level: "Error".into(),
        code: e.code,
        message: e.message.clone(),
    });
    Diagnostics {
        row_count: -1,
        found_rows: FoundRows::Unknown,
        warning_count: conditions.len() as u64,
        conditions,
    }
}
