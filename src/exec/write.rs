//! Writes on several shards: a multi-row INSERT split by key, an UPDATE/DELETE over several
//! keys, a write to a reference table (repeated on every shard), DDL on every shard. Their OK
//! packets combine into one: affected rows summed (a reference write reports one copy's
//! count, since every copy changed the same rows), the first insert id, warnings summed.
//!
//! Whether the legs run in their own transactions is the caller's policy ([`Commit`]): inside
//! the client's transaction a write stays on that transaction's shard and runs as sent;
//! outside one, a write on several shards runs in a transaction on each and is committed only
//! when every shard succeeded; or, in `twopc` mode, as one two-phase commit
//! ([`Commit::TwoPhase`], [`super::twopc`]): atomic even when a shard fails between commits.

use super::{lease_legs, run_legs, Access, Collected, Done, FoundRows, ShardConn};
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
    /// As `AllOrNone`, atomically: the first leg runs in a plain transaction (the home leg,
    /// which stores the decision), the others as XA transactions, ended by
    /// [`super::twopc::commit`].
    TwoPhase,
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
    if commit == Commit::TwoPhase && legs.len() > 1 {
        return write_two_phase(shards, legs, targets, kind).await;
    }
    let in_own_transactions = commit != Commit::AsSent;
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
    let row_count = total.affected_rows as i64;
    c.done(total, row_count, FoundRows::Unknown)
}

/// [`Commit::TwoPhase`]: `BEGIN` on the first leg, `XA START` on the others, the statement on
/// every leg, then one two-phase commit (or a rollback of every leg when one failed).
async fn write_two_phase<S: Shards>(
    shards: &mut S,
    legs: Vec<Leg<S::Conn>>,
    targets: &[ShardSql],
    kind: MultiKind,
) -> Done<OkInfo> {
    let xid = super::twopc::Xid::new(&legs[0].shard);
    let started = futures::future::join_all(legs.into_iter().enumerate().map(|(i, mut leg)| {
        let start = if i == 0 {
            "BEGIN".to_string()
        } else {
            format!("XA START {}", xid.sql(&leg.shard))
        };
        async move {
            let r = leg.conn.query(&start).await;
            (leg, r)
        }
    }))
    .await;
    let mut legs = Vec::with_capacity(started.len());
    let mut c = Collected::default();
    for (leg, r) in started {
        if let Err(e) = r {
            let e = e.to_err_info();
            c.fail(|| ErrInfo {
                message: format!("{} (on shard {})", e.message, leg.shard),
                ..e
            });
        }
        legs.push(leg);
    }
    let runs = if c.failure.is_none() {
        run_legs(legs, targets, false).await
    } else {
        legs.into_iter()
            .map(|leg| super::LegRun {
                leg,
                result: Ok(QueryResult::Ok(OkInfo::default())),
                warnings: Vec::new(),
            })
            .collect()
    };
    let mut total = OkInfo::default();
    let mut home: Option<S::Conn> = None;
    let mut home_shard = String::new();
    let mut xa: Vec<super::twopc::XaLeg<S::Conn>> = Vec::new();
    for (i, mut run) in runs.into_iter().enumerate() {
        let shard = run.leg.shard.clone();
        c.conditions.extend(run.warnings);
        let usable = match run.result {
            Ok(QueryResult::Ok(ok)) => {
                add_ok(&mut total, &ok, kind, i == 0, &mut c);
                if ok.last_insert_id != 0 {
                    run.leg.conn.forget_insert_id();
                }
                true
            }
            Ok(QueryResult::Rows(_)) => true,
            Err(BackendError::Server(e)) => {
                c.server_error(&shard, e);
                true
            }
            Err(e) => {
                let e = e.to_err_info();
                c.fail(|| ErrInfo {
                    message: format!("{} (on shard {shard})", e.message),
                    ..e
                });
                false
            }
        };
        let conn = if usable {
            Some(run.leg.conn)
        } else {
            shards.lost(&shard, run.leg.conn);
            None
        };
        if i == 0 {
            home = conn;
            home_shard = shard;
        } else {
            xa.push(Leg { shard, conn });
        }
    }
    if c.failure.is_some() {
        super::twopc::abort(&xid, &mut home, &mut xa).await;
    } else {
        match super::twopc::commit(&xid, &mut home, &mut xa).await {
            super::twopc::Ended::Committed { .. } => {}
            super::twopc::Ended::RolledBack(e) | super::twopc::Ended::Unknown(e) => c.fail(|| e),
        }
    }
    if let Some(h) = home {
        shards.give_back(&home_shard, h);
    }
    for leg in xa {
        if let Some(conn) = leg.conn {
            shards.give_back(&leg.shard, conn);
        }
    }
    let row_count = total.affected_rows as i64;
    c.done(total, row_count, FoundRows::Unknown)
}

/// Adds one leg's OK to the combined one (a reference write counts its first copy only).
fn add_ok(total: &mut OkInfo, ok: &OkInfo, kind: MultiKind, first: bool, c: &mut Collected) {
    if kind == MultiKind::ReferenceWrite {
        if first {
            total.affected_rows = ok.affected_rows;
        }
    } else {
        total.affected_rows += ok.affected_rows;
    }
    if total.last_insert_id == 0 {
        total.last_insert_id = ok.last_insert_id;
    }
    total.warnings = total.warnings.saturating_add(ok.warnings);
    c.warning_count += u64::from(ok.warnings);
}
