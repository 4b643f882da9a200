//! Writes on several shards: a multi-row INSERT split by key, an UPDATE/DELETE over several
//! keys, a write to a reference table (repeated on every shard), DDL on every shard. Their OK
//! packets combine into one: affected rows summed (a reference write reports one copy's
//! count, since every copy changed the same rows), the first insert id, warnings summed.
//!
//! Whether the legs run in their own transactions is the caller's policy ([`Commit`]): inside
//! the client's transaction a write stays on that transaction's shard and runs as sent;
//! outside one, a write on several shards runs in a transaction on each and is committed only
//! when every shard succeeded.

use super::{lease_legs, run_legs, Access, Collected, Diagnostics, Done, FoundRows, ShardConn};
use super::{Leg, Shards};
use crate::backend::conn::{BackendError, QueryResult};
use crate::plan::{MultiKind, ShardSql};
use crate::protocol::packets::{ErrInfo, OkInfo};

/// How the legs of a write end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Commit {
    /// Each leg runs as sent, in whatever transaction its connection has (the client's, on
    /// one shard; or autocommit).
    AsSent,
    /// Each leg runs in a transaction of its own, committed when every leg succeeded and
    /// rolled back otherwise. A failure between two COMMITs can still leave one shard
    /// committed: atomic commit needs two-phase commit.
    AllOrNone,
}

/// Runs a write on several shards; the answer is the combined OK (its `status` left 0: the
/// session knows the status the client should see).
pub async fn write<S: Shards>(
    shards: &mut S,
    targets: &[ShardSql],
    kind: MultiKind,
    commit: Commit,
) -> Done<OkInfo> {
    let legs = match lease_legs(shards, targets, Access::Write).await {
        Ok(legs) => legs,
        Err(e) => return Done::not_run(e),
    };
    let in_own_transactions = commit == Commit::AllOrNone;
    let runs = run_legs(legs, targets, in_own_transactions).await;
    let any_failed = runs.iter().any(|r| r.result.is_err());
    let mut total = OkInfo::default();
    let mut keep: Vec<Leg<S::Conn>> = Vec::with_capacity(runs.len());
    let mut c = Collected::default();
    for (i, mut run) in runs.into_iter().enumerate() {
        let shard = run.leg.shard.as_str();
        c.conditions.extend(run.warnings);
        match run.result {
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
                    run.leg.conn.forget_insert_id();
                }
                total.warnings = total.warnings.saturating_add(ok.warnings);
                c.warning_count += u64::from(ok.warnings);
            }
            Ok(QueryResult::Rows(_)) => {}
            Err(BackendError::Server(e)) => c.server_error(shard, e),
            Err(e) => {
                let e = e.to_err_info();
                c.fail(|| ErrInfo {
                    message: format!("{} (on shard {shard})", e.message),
                    ..e
                });
                shards.lost(&run.leg.shard, run.leg.conn);
                continue;
            }
        }
        if in_own_transactions {
            let end = if any_failed { "ROLLBACK" } else { "COMMIT" };
            if let Err(e) = run.leg.conn.query(end).await {
                let e = e.to_err_info();
                c.fail(|| ErrInfo {
                    message: format!("{end} failed on shard {shard}: {}", e.message),
                    ..e
                });
                shards.lost(&run.leg.shard, run.leg.conn);
                continue;
            }
        }
        keep.push(run.leg);
    }
    super::give_back_all(shards, keep);
    match c.finish() {
        Ok((conditions, warning_count)) => Done {
            diagnostics: Some(Diagnostics {
                row_count: total.affected_rows as i64,
                found_rows: FoundRows::Unknown,
                conditions,
                warning_count,
            }),
            answer: Ok(total),
        },
        Err((e, d)) => Done::failed(e, d),
    }
}
