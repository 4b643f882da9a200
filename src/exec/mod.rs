//! The multi-shard executor: one statement, several shards, one answer.
//!
//! A plan that spans shards ([`crate::plan::Plan::Scatter`], [`crate::plan::Plan::Multi`], and
//! a sequence INSERT once its ids are allocated) runs through here. Every such statement has
//! the same life, the *leg lifecycle*, written once in this module:
//! 1. **Lease** one connection per target shard ([`Shards::lease`]). Where the session already
//!    holds a connection on that shard (its transaction), the leg borrows it, so the statement
//!    sees the transaction's own changes. A lease that fails gives back the legs already open
//!    and answers the error.
//! 2. **Run** the legs in parallel, each on its own connection ([`run_legs`]); a leg that got
//!    warnings reads them with `SHOW WARNINGS` right away, before anything clears them.
//! 3. **Collect** ([`Collected`]): the first failure (named with its shard), the first server
//!    error as the server worded it (what SHOW WARNINGS lists afterwards), every shard's
//!    conditions in shard order, the summed warning counts.
//! 4. **Finish** each leg (for writes that run in their own transactions: COMMIT when every leg
//!    succeeded, else ROLLBACK), then **return** every connection ([`Shards::give_back`]), or
//!    drop it when it broke ([`Shards::lost`]).
//! 5. **Answer**: the merged result set or the combined OK, and the [`Diagnostics`] one server
//!    would report about the statement.
//!
//! The primitives are [`scatter::scatter`] (reads, merged by [`crate::plan::merge`]) and
//! [`write::write`] (writes, with a [`write::Commit`] policy). Two-phase commit and the
//! resharding cutover are further policies of the same lifecycle.
//!
//! The executor reaches shards only through the small [`Shards`] and [`ShardConn`] traits,
//! the way Vitess's engine primitives reach tablets through its VCursor: the session
//! implements them over its held connection and the pools, and the unit tests implement them
//! over an in-memory fake (`tests.rs`), so every rule here is tested without a server.

pub mod diagnostics;
pub mod join;
mod join_group;
pub mod recovery;
pub mod scatter;
pub mod stream;
pub mod twopc;
pub mod write;

#[cfg(test)]
mod tests;

use std::future::Future;

use crate::backend::conn::{BackendError, QueryResult};
use crate::backend::rows::{RowStep, StreamHead};
use crate::plan::ShardSql;
use crate::protocol::packets::ErrInfo;
pub use diagnostics::{Condition, Diagnostics, FoundRows};

/// What a leg's connection is for: a write may start the session's held-back transaction on
/// it, a read never does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// A scatter read.
    Read,
    /// A write (or DDL) on several shards.
    Write,
}

/// How the executor gets and returns the connection of each leg.
pub trait Shards {
    /// One leg's connection.
    type Conn: ShardConn + Send;

    /// A connection on `shard`, ready to run the leg's statement.
    fn lease(
        &mut self,
        shard: &str,
        access: Access,
    ) -> impl Future<Output = Result<Self::Conn, ErrInfo>> + Send;

    /// Takes back a leg's connection after the statement (it is still usable).
    fn give_back(&mut self, shard: &str, conn: Self::Conn);

    /// A leg's connection broke (network error, timeout): it is not to be used again.
    fn lost(&mut self, shard: &str, conn: Self::Conn);
}

/// One leg's connection, as the executor uses it.
pub trait ShardConn {
    /// Runs one statement and reads its whole answer.
    fn query(
        &mut self,
        sql: &str,
    ) -> impl Future<Output = Result<QueryResult, BackendError>> + Send;

    /// The statement's OK carried an insert id, which may come from an explicit value in an
    /// AUTO_INCREMENT column and leaves `LAST_INSERT_ID()` alone: what the connection holds
    /// now is unknown, so the next statement that reads it must restore it.
    fn forget_insert_id(&mut self);

    /// Runs two statements in one round trip where the connection allows it (both sent
    /// before either answer is read; `BackendConn::query_pipelined`), one after the other
    /// otherwise. Only for a pair whose second statement is harmless when the first fails.
    fn query_pipelined(
        &mut self,
        first: &str,
        then: &str,
    ) -> impl Future<
        Output = (
            Result<QueryResult, BackendError>,
            Result<QueryResult, BackendError>,
        ),
    > + Send;
}

/// A leg's connection that can also stream a result set row by row (streamed scatter reads,
/// [`stream`]). Two-phase commit and recovery need only [`ShardConn`].
pub trait StreamConn: ShardConn {
    /// Sends one statement and reads its answer up to the end of the column definitions: the
    /// rows are then read one at a time with [`StreamConn::next_row`] (a streamed scatter read,
    /// [`stream`]). Until `next_row` reports the end, the connection is in the middle of an
    /// answer: it must be read to the end or dropped, never given back.
    fn start_rows(
        &mut self,
        sql: &str,
    ) -> impl Future<Output = Result<StreamHead, BackendError>> + Send;

    /// The next row of the answer [`StreamConn::start_rows`] began.
    fn next_row(&mut self) -> impl Future<Output = Result<RowStep, BackendError>> + Send;
}

/// A leased leg: its shard and its connection.
pub struct Leg<C> {
    /// The shard this leg runs on.
    pub shard: String,
    /// Its connection.
    pub conn: C,
}

/// Leases a connection for every target. On a failure the legs already open are given back
/// and the error is returned.
pub async fn lease_legs<S: Shards>(
    shards: &mut S,
    targets: &[ShardSql],
    access: Access,
) -> Result<Vec<Leg<S::Conn>>, ErrInfo> {
    let mut legs = Vec::with_capacity(targets.len());
    for t in targets {
        match shards.lease(&t.shard, access).await {
            Ok(conn) => legs.push(Leg {
                shard: t.shard.clone(),
                conn,
            }),
            Err(e) => {
                give_back_all(shards, legs);
                return Err(e);
            }
        }
    }
    Ok(legs)
}

/// Gives back every leg's connection.
pub fn give_back_all<S: Shards>(shards: &mut S, legs: Vec<Leg<S::Conn>>) {
    for leg in legs {
        shards.give_back(&leg.shard, leg.conn);
    }
}

/// What one leg's run produced.
pub struct LegRun<C> {
    /// The leg, with its connection.
    pub leg: Leg<C>,
    /// The statement's answer.
    pub result: Result<QueryResult, BackendError>,
    /// The conditions `SHOW WARNINGS` listed right after it (empty when it had none).
    pub warnings: Vec<Condition>,
}

/// Runs every leg's SQL in parallel (`targets[i]` on `legs[i]`), each on its own connection;
/// `begin` first starts a transaction on each. A leg that answered with warnings reads them
/// at once, before a later statement (COMMIT) clears them.
pub async fn run_legs<C: ShardConn + Send>(
    legs: Vec<Leg<C>>,
    targets: &[ShardSql],
    begin: bool,
) -> Vec<LegRun<C>> {
    let runs = legs
        .into_iter()
        .zip(targets)
        .map(|(mut leg, t)| async move {
            let result = async {
                if begin {
                    leg.conn.query("BEGIN").await?;
                }
                leg.conn.query(&t.sql).await
            }
            .await;
            let warned = match &result {
                Ok(QueryResult::Rows(rs)) => rs.warnings > 0,
                Ok(QueryResult::Ok(ok)) => ok.warnings > 0,
                Err(_) => false,
            };
            let warnings = if warned {
                shard_warnings(&mut leg.conn).await
            } else {
                Vec::new()
            };
            LegRun {
                leg,
                result,
                warnings,
            }
        });
    futures::future::join_all(runs).await
}

/// A shard connection's `SHOW WARNINGS`, read right after its part of a multi-shard statement
/// (empty if it cannot be read: the count is still reported).
pub async fn shard_warnings<C: ShardConn>(conn: &mut C) -> Vec<Condition> {
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

/// What the legs reported besides their results, gathered in shard order.
#[derive(Debug, Default)]
pub struct Collected {
    /// The error the client gets: the first failure, named with its shard.
    pub failure: Option<ErrInfo>,
    /// The first shard's error as the server worded it (what SHOW WARNINGS lists).
    pub server_error: Option<ErrInfo>,
    /// Every shard's conditions, in shard order.
    pub conditions: Vec<Condition>,
    /// The summed warning counts of the shards' answers.
    pub warning_count: u64,
}

impl Collected {
    /// Records a server's error on `shard`; the first one is what the client gets.
    pub fn server_error(&mut self, shard: &str, e: ErrInfo) {
        if self.failure.is_none() {
            self.server_error = Some(e.clone());
        }
        self.failure.get_or_insert_with(|| ErrInfo {
            message: format!("{} (on shard {shard})", e.message),
            ..e
        });
    }

    /// Records a failure the proxy words itself (a broken connection, an unexpected answer);
    /// ignored when an earlier leg already failed.
    pub fn fail(&mut self, e: impl FnOnce() -> ErrInfo) {
        self.failure.get_or_insert_with(e);
    }

    /// Ends the collection: `Err` with the client's error and the diagnostics one server
    /// would report when a leg failed, else every shard's conditions and the warning count.
    pub fn finish(self) -> Result<(Vec<Condition>, u64), (ErrInfo, Diagnostics)> {
        match self.failure {
            Some(e) => {
                let d =
                    Diagnostics::failed(self.conditions, self.server_error.as_ref().unwrap_or(&e));
                Err((e, d))
            }
            None => Ok((self.conditions, self.warning_count)),
        }
    }

    /// Ends the collection of a statement that answered `answer` when no leg failed: the
    /// diagnostics one server would keep for it (`row_count` for ROW_COUNT(), `found_rows`
    /// for FOUND_ROWS()), or the failure.
    pub fn done<T>(self, answer: T, row_count: i64, found_rows: FoundRows) -> Done<T> {
        match self.finish() {
            Ok((conditions, warning_count)) => Done {
                answer: Ok(answer),
                diagnostics: Some(Diagnostics {
                    row_count,
                    found_rows,
                    conditions,
                    warning_count,
                }),
            },
            Err((e, d)) => Done::failed(e, d),
        }
    }
}

/// The answer of a multi-shard statement: what the client gets, and what the session keeps
/// for questions about it (`None` when no leg ran: a lease failed).
pub struct Done<T> {
    /// The result (a result set, a combined OK) or the error for the client.
    pub answer: Result<T, ErrInfo>,
    /// What one server would report about the statement.
    pub diagnostics: Option<Diagnostics>,
}

impl<T> Done<T> {
    /// No leg ran: only the error, nothing recorded about the statement.
    pub fn not_run(e: ErrInfo) -> Done<T> {
        Done {
            answer: Err(e),
            diagnostics: None,
        }
    }

    /// The statement failed after its legs ran.
    pub fn failed(e: ErrInfo, d: Diagnostics) -> Done<T> {
        Done {
            answer: Err(e),
            diagnostics: Some(d),
        }
    }
}
