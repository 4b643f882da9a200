//! Staged plans ([`crate::plan::staged`]): the statement's uncorrelated subqueries run first,
//! each by its own plan, through the executor's streamed scatter read (one shard or several,
//! merged); their answers are put in the statement's text as literals, and the statement
//! that results is handled as if the client had sent it: planned again (an `IN` list of keys
//! now routes to the shards it names) and run.
//!
//! One function gives that final text ([`Session::staged_sql`]); two paths run it. A text
//! query's goes back through `com_query` (text rows). A prepared statement's execute first
//! has its `?` values written into its text (`execute_as_text` in [`super::prepared`]), is
//! planned as text, and when that plan is staged its final text is planned once more and
//! answered with binary rows, as every execute across shards is.
//!
//! When a select item holds a subquery, its spliced literal would give the column another
//! type than MariaDB gives the subquery (`x IN (1, 2)` is an INT(1), `x IN (SELECT …)` an
//! INT(21)): the final read is then answered from memory ([`Session::answer_typed`]) with the
//! column definitions of the original statement over no rows (`Staged::types_sql`).
//!
//! Each subquery reads through the executor's `Shards`, so inside a transaction it reads the
//! transaction's connection on its shard, as any scatter read does; its reads go to the
//! primaries (never to replicas). A subquery's answer is bounded by
//! `[merge] max_subquery_values`: past it the shards' answers are read to their end (so the
//! connections stay usable) without being kept, and the statement fails with 1235 before the
//! outer statement runs. An `EXISTS` subquery keeps its first row only (the rest is read to
//! its end, not kept), so a big table under `EXISTS` is never refused by that bound. A nested
//! subquery (a subquery of a subquery) is staged in its turn.

use super::{Flow, Session};
use crate::frontend::classify::{classify, Kind};
use crate::plan::merge::value::ValueKind;
use crate::plan::spec::MergeSpec;
use crate::plan::staged::{Answer, Part, PartKind, StageError, Staged};
use crate::plan::{Plan, ShardSql};
use crate::protocol::constants::com;
use crate::protocol::packets::{build_command, ErrInfo};
use crate::protocol::resultset::{ColumnDef, RowFormat};

/// Whether `plan` of the final text `sql` is a read [`Session::answer_typed`] answers.
fn typed_read(plan: &Plan, sql: &str) -> bool {
    match plan {
        Plan::Scatter { .. } => true,
        Plan::Single { .. } => classify(sql).kind == Kind::Read,
        _ => false,
    }
}

/// Puts the type of each column of `typed` (the original statement's) on the same column of
/// `columns` (the spliced one's) where both hold the same kind of value; names stay.
fn retype(columns: &mut [ColumnDef], typed: &[ColumnDef]) {
    if columns.len() != typed.len() {
        return;
    }
    for (c, t) in columns.iter_mut().zip(typed) {
        if ValueKind::of(c) == ValueKind::of(t) {
            c.column_type = t.column_type;
            c.length = t.length;
            c.decimals = t.decimals;
            c.charset = t.charset;
            c.flags = t.flags;
        }
    }
}

/// How deep subqueries may nest inside one another.
const MAX_DEPTH: usize = 8;

/// A staging error as the client gets it.
fn stage_err(e: StageError) -> ErrInfo {
    ErrInfo::new((e.code(), e.sqlstate()), e.to_string())
}

/// A statement whose subqueries' values still leave a subquery to stage.
fn left_in_place() -> ErrInfo {
    ErrInfo::new(
        crate::protocol::constants::err::ER_NOT_SUPPORTED_YET,
        "shardproxy: a subquery whose values leave another subquery in place",
    )
}

impl Session {
    /// Runs a staged plan of a text query: the subqueries first, then the statement with
    /// their values, handled as a text query the client sent (text rows).
    pub(super) async fn run_staged(&mut self, staged: Staged) -> std::io::Result<Flow> {
        match self.staged_sql(&staged).await {
            Ok(sql) => {
                if let Some(types) = &staged.types_sql {
                    let plan = self.plan_text(&sql);
                    if typed_read(&plan, &sql) {
                        return self.answer_typed(plan, &sql, types, RowFormat::Text).await;
                    }
                }
                let payload = build_command(com::QUERY, sql.as_bytes());
                Box::pin(self.com_query(payload, None, None)).await
            }
            Err(e) => {
                self.send_err(1, &e).await?;
                Ok(Flow::Continue)
            }
        }
    }

    /// Runs a staged plan of a prepared statement's execute (its `?` values already in the
    /// text): the subqueries first, then the statement with their values, planned again and
    /// answered with binary rows ([`Session::run_plan_binary`]).
    pub(super) async fn run_staged_binary(&mut self, staged: Staged) -> std::io::Result<Flow> {
        let sql = match self.staged_sql(&staged).await {
            Ok(sql) => sql,
            Err(e) => {
                self.send_err(1, &e).await?;
                return Ok(Flow::Continue);
            }
        };
        match self.plan_text(&sql) {
            // The values are literals now: one more round would not terminate by itself.
            Plan::Staged(_) => {
                self.send_err(1, &left_in_place()).await?;
                Ok(Flow::Continue)
            }
            plan => match &staged.types_sql {
                Some(types) if typed_read(&plan, &sql) => {
                    self.answer_typed(plan, &sql, types, RowFormat::Binary)
                        .await
                }
                _ => Box::pin(self.run_plan_binary(plan, &sql)).await,
            },
        }
    }

    /// Answers a staged read whose select list held a subquery: its rows as any read gives
    /// them (merged in memory), its column definitions those one shard gives the original
    /// statement over no rows ([`Staged::types_sql`]), where the two agree on the kind of
    /// value (so every value reads the same under the new definition). Should the typing
    /// query fail, the answer keeps the spliced statement's definitions: its values are right.
    async fn answer_typed(
        &mut self,
        plan: Plan,
        sql: &str,
        types_sql: &str,
        format: RowFormat,
    ) -> std::io::Result<Flow> {
        let (targets, spec) = match self.read_targets(plan, sql, 0).await {
            Ok(t) => t,
            Err(e) => {
                self.send_err(1, &e).await?;
                return Ok(Flow::Continue);
            }
        };
        self.audit_shards(targets.iter().map(|t| t.shard.as_str()));
        let done = crate::exec::scatter::scatter(self, &targets, &spec).await;
        if done.diagnostics.is_some() {
            self.diag = done.diagnostics;
        }
        let mut rs = match done.answer {
            Ok(rs) => rs,
            Err(e) => {
                self.send_err(1, &e).await?;
                return Ok(Flow::Continue);
            }
        };
        let typing = [ShardSql {
            shard: targets[0].shard.clone(),
            sql: types_sql.to_string(),
        }];
        if let Ok(typed) = crate::exec::scatter::scatter(self, &typing, &MergeSpec::concat())
            .await
            .answer
        {
            retype(&mut rs.columns, &typed.columns);
        }
        self.send_result_set(&rs, format).await?;
        Ok(Flow::Continue)
    }

    /// The final text of a staged statement: every subquery run (nested ones first) and
    /// its answer written in place as literals. Both the text path ([`Session::run_staged`])
    /// and the prepared path ([`Session::run_staged_binary`]) run what this gives.
    pub(super) async fn staged_sql(&mut self, staged: &Staged) -> Result<String, ErrInfo> {
        self.stage_text(staged, 0).await
    }

    /// The text of `staged`'s statement with every subquery's answer in place.
    async fn stage_text(&mut self, staged: &Staged, depth: usize) -> Result<String, ErrInfo> {
        let mut answers = Vec::with_capacity(staged.parts.len());
        for part in &staged.parts {
            answers.push(self.subquery_answer(part, depth).await?);
        }
        staged.render(&answers).map_err(stage_err)
    }

    /// What a read plan sends where: its targets and their merge. A nested staged plan is
    /// staged first and its text planned again.
    async fn read_targets(
        &mut self,
        plan: Plan,
        sql: &str,
        depth: usize,
    ) -> Result<(Vec<ShardSql>, MergeSpec), ErrInfo> {
        match self.prefer_held(plan, sql) {
            Plan::Single { shard, .. } => {
                let sql = sql.to_string();
                Ok((vec![ShardSql { shard, sql }], MergeSpec::concat()))
            }
            Plan::Scatter { targets, merge } => Ok((targets, merge)),
            Plan::Staged(inner) if depth < MAX_DEPTH => {
                let text = Box::pin(self.stage_text(&inner, depth + 1)).await?;
                let plan = self.plan_text(&text);
                if let Plan::Staged(_) = plan {
                    return Err(left_in_place());
                }
                Box::pin(self.read_targets(plan, &text, depth + 1)).await
            }
            Plan::Reject(r) => Err(ErrInfo::new((r.code(), r.sqlstate()), r.message())),
            Plan::Join(_) => Err(ErrInfo::new(
                crate::protocol::constants::err::ER_NOT_SUPPORTED_YET,
                "shardproxy: a subquery that is a join the proxy executes is not supported yet",
            )),
            Plan::Staged(_) | Plan::Multi { .. } | Plan::Sequence(_) => Err(ErrInfo::new(
                crate::protocol::constants::err::ER_NOT_SUPPORTED_YET,
                "shardproxy: this subquery is not a read the proxy can run first",
            )),
        }
    }

    /// Runs one subquery and collects its answer, within `[merge] max_subquery_values`.
    async fn subquery_answer(&mut self, part: &Part, depth: usize) -> Result<Answer, ErrInfo> {
        let (targets, spec) = self
            .read_targets(part.inner.clone(), &part.inner_sql, depth)
            .await?;
        let config = self.proxy.config();
        let bound = config.merge.max_subquery_values;
        let limits = crate::exec::stream::Limits {
            max_groups: config.merge.max_groups,
        };
        drop(config);
        self.audit_shards(targets.iter().map(|t| t.shard.as_str()));
        let mut stream = match crate::exec::stream::open(self, &targets, &spec, limits).await {
            Ok(s) => s,
            Err(done) => {
                return Err(done.answer.err().unwrap_or_else(|| {
                    ErrInfo::new((1105, "HY000"), "shardproxy: a subquery gave no result set")
                }))
            }
        };
        let mut answer = Answer {
            columns: stream.columns().to_vec(),
            rows: Vec::new(),
        };
        let width = answer.columns.len().max(1);
        let mut failed = part.check(answer.columns.len(), 0).err().map(stage_err);
        while failed.is_none() {
            match stream.next().await {
                Ok(Some(row)) => {
                    answer.rows.push(row);
                    if part.kind == PartKind::Exists {
                        // One row decides EXISTS: `finish` reads the rest to its end, unkept
                        // and uncounted against the bound.
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
            if let Err(e) = part.check(answer.columns.len(), answer.rows.len()) {
                failed = Some(stage_err(e));
            } else if bound > 0 && answer.rows.len().saturating_mul(width) > bound {
                failed = Some(stage_err(StageError::TooManyValues { bound }));
            }
        }
        if let Some(e) = &failed {
            // Read the rest to its end (not kept), so every connection stays usable.
            stream.fail(e.clone());
            answer.rows.clear();
        }
        let done = stream.finish(self).await;
        match (failed, done.answer) {
            (Some(e), _) | (None, Err(e)) => Err(e),
            (None, Ok(_warnings)) => Ok(answer),
        }
    }
}
