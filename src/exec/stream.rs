//! Streamed scatter reads: the shards' rows reach the client as they are decided, with memory
//! bounded independently of the result's size.
//!
//! [`open`] leases a connection per shard, sends every shard its SQL (they run in parallel)
//! and reads each answer's column definitions; the caller then sends the result set's header
//! and pulls rows with [`ScatterStream::next`], writing each to the client before asking for
//! the next. The stream reads one row from a shard only when the client has taken the
//! previous one, so a slow client makes the proxy stop reading the shards: their rows wait in
//! the sockets, then in the servers (back-pressure). How rows are decided is
//! [`crate::plan::merge::stream`]'s: relayed shard after shard, a k-way merge of the shards'
//! sorted streams for ORDER BY (a LIMIT stops it), or, for grouped / aggregated / DISTINCT
//! results, the in-memory merge over at most `merge.max_groups` shard rows.
//!
//! # Errors in the middle of a result
//! A shard error after rows were sent ends the result with an ERR packet (MariaDB itself can
//! send ERR after rows): [`ScatterStream::next`] returns it, then [`ScatterStream::finish`]
//! reads the other shards' answers to their end (a connection in the middle of an answer is
//! never given back) and gives their connections back; a broken connection is dropped. If
//! the client goes away, [`ScatterStream::abandon`] drops every connection still in the
//! middle of an answer.
//!
//! The diagnostics (`FOUND_ROWS()`, every shard's warnings in shard order) are those of
//! [`super::scatter::scatter`], which stays the collect-then-merge primitive for answers the
//! proxy needs whole.

use std::collections::VecDeque;

use super::{lease_legs, shard_warnings, Access, Collected, Done, FoundRows, Leg};
use super::{Shards, StreamConn};
use crate::backend::conn::BackendError;
use crate::backend::rows::{RowStep, StreamHead};
use crate::plan::merge::stream::{self as mstream, KWay, Shape};
use crate::plan::merge::{self, MergeError};
use crate::plan::spec::MergeSpec;
use crate::plan::ShardSql;
use crate::protocol::constants::err;
use crate::protocol::packets::ErrInfo;
use crate::protocol::resultset::{ColumnDef, ResultSet, TextRow};

/// Bounds of a streamed scatter read (from the `[merge]` config).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most shard rows an in-memory (grouped, aggregated, DISTINCT) merge may hold; 0: none.
    pub max_groups: usize,
}

/// Where one leg's answer is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LegState {
    /// In the middle of its rows: to be read to the end or dropped.
    Open,
    /// Its answer ended (rows, an OK, a server error): the connection is usable.
    Ended,
    /// Its connection broke: to be dropped.
    Broken,
}

/// One leg of a streamed scatter read.
struct Slot<C> {
    /// The leased leg.
    leg: Leg<C>,
    /// Where its answer is.
    state: LegState,
    /// The warning count of its answer's end.
    warnings: u16,
}

/// Where the next row comes from.
enum Source {
    /// Shard after shard; the index of the shard being relayed.
    Relay(usize),
    /// A k-way merge of sorted shard streams.
    Ordered(KWay),
    /// Rows merged in memory, sent in order.
    Buffered(VecDeque<TextRow>),
}

/// A scatter read whose rows are being sent.
pub struct ScatterStream<C> {
    /// The legs, in shard order.
    slots: Vec<Slot<C>>,
    /// The client's columns (hidden helper columns removed).
    columns: Vec<ColumnDef>,
    /// Where rows come from.
    source: Source,
    /// Rows still to skip (OFFSET), for the streamed shapes.
    skip: u64,
    /// Rows still to send (LIMIT); `None`: all.
    remaining: Option<u64>,
    /// Columns the client sees.
    visible: usize,
    /// Failures, server errors and warnings so far.
    collected: Collected,
    /// Rows sent so far (FOUND_ROWS()).
    sent: u64,
    /// SQL_CALC_FOUND_ROWS was asked for: FOUND_ROWS() is not known afterwards.
    calc_found_rows: bool,
}

/// What a merge error tells the client.
fn merge_err(e: MergeError) -> ErrInfo {
    ErrInfo::new((e.code, e.sqlstate), e.message)
}

/// Leases the legs, starts every shard's SQL and reads the answers' column definitions; for
/// an in-memory merge, also reads and merges every row. An `Err` is the whole answer (an
/// error before the result set began); its legs are already given back.
pub async fn open<S: Shards>(
    shards: &mut S,
    targets: &[ShardSql],
    spec: &MergeSpec,
    limits: Limits,
) -> Result<ScatterStream<S::Conn>, Done<u16>>
where
    S::Conn: StreamConn,
{
    let legs = lease_legs(shards, targets, Access::Read)
        .await
        .map_err(Done::not_run)?;
    let started = futures::future::join_all(legs.into_iter().zip(targets).map(
        |(mut leg, t)| async move {
            let head = leg.conn.start_rows(&t.sql).await;
            (leg, head)
        },
    ))
    .await;
    let calc_found_rows = targets
        .first()
        .is_some_and(|t| t.sql.to_ascii_uppercase().contains("SQL_CALC_FOUND_ROWS"));
    let mut st = ScatterStream {
        slots: Vec::with_capacity(started.len()),
        columns: Vec::new(),
        source: Source::Relay(0),
        skip: spec.offset,
        remaining: spec.limit,
        visible: 0,
        collected: Collected::default(),
        sent: 0,
        calc_found_rows,
    };
    let mut heads: Vec<Vec<ColumnDef>> = Vec::new();
    for (leg, head) in started {
        let shard = leg.shard.clone();
        let state = match head {
            Ok(StreamHead::Rows(cols)) => {
                heads.push(cols);
                LegState::Open
            }
            Ok(StreamHead::Ok(ok)) => {
                st.collected.fail(|| {
                    ErrInfo::new(
                        err::ER_NOT_SUPPORTED_YET,
                        format!("shard {shard} returned no result set"),
                    )
                });
                st.slots.push(Slot {
                    leg,
                    state: LegState::Ended,
                    warnings: ok.warnings,
                });
                continue;
            }
            Err(BackendError::Server(e)) => {
                st.collected.server_error(&shard, e);
                LegState::Ended
            }
            Err(e) => {
                st.collected.fail(|| e.to_err_info());
                LegState::Broken
            }
        };
        st.slots.push(Slot {
            leg,
            state,
            warnings: 0,
        });
    }
    if st.collected.failure.is_some() {
        return Err(st.finish(shards).await);
    }
    let ncols = heads.first().map_or(0, Vec::len);
    let spec = mstream::resolve(spec, ncols);
    let refs: Vec<&[ColumnDef]> = heads.iter().map(Vec::as_slice).collect();
    if let Err(e) = mstream::check_columns(&spec, &refs) {
        st.collected.fail(|| merge_err(e));
        return Err(st.finish(shards).await);
    }
    let mut columns = heads.swap_remove(0);
    st.visible = spec.visible_columns;
    st.source = match mstream::shape(&spec) {
        Shape::Relay => Source::Relay(0),
        Shape::Ordered => {
            let mut k = KWay::new(&spec, &columns, st.slots.len());
            for i in 0..st.slots.len() {
                match st.read_leg(i).await {
                    Ok(Some(row)) => {
                        if let Err(e) = k.check_next(None, &row) {
                            st.collected.fail(|| merge_err(e));
                            return Err(st.finish(shards).await);
                        }
                        k.heads[i] = Some(row);
                    }
                    Ok(None) => {}
                    Err(_) => return Err(st.finish(shards).await),
                }
            }
            Source::Ordered(k)
        }
        Shape::InMemory => {
            let rows = match st.read_all(&columns, limits).await {
                Ok(inputs) => merge::merge(&spec, inputs),
                Err(None) => return Err(st.finish(shards).await),
                Err(Some(e)) => Err(e),
            };
            match rows {
                Ok(rs) => {
                    // The merge applied OFFSET/LIMIT and dropped the hidden columns.
                    st.skip = 0;
                    st.remaining = None;
                    Source::Buffered(rs.rows.into())
                }
                Err(e) => {
                    st.collected.fail(|| merge_err(e));
                    return Err(st.finish(shards).await);
                }
            }
        }
    };
    columns.truncate(st.visible);
    st.columns = columns;
    Ok(st)
}

impl<C: StreamConn + Send> ScatterStream<C> {
    /// The columns of the result set the client gets.
    pub fn columns(&self) -> &[ColumnDef] {
        &self.columns
    }

    /// The next row for the client; `Ok(None)` at the end. An `Err` ends the result (the
    /// client gets it as an ERR packet after the rows sent); then call [`Self::finish`].
    pub async fn next(&mut self) -> Result<Option<TextRow>, ErrInfo> {
        loop {
            if self.remaining == Some(0) {
                return Ok(None);
            }
            let Some(mut row) = self.next_merged().await? else {
                return Ok(None);
            };
            if self.skip > 0 {
                self.skip -= 1;
                continue;
            }
            if let Some(r) = self.remaining.as_mut() {
                *r -= 1;
            }
            row.truncate(self.visible);
            self.sent += 1;
            return Ok(Some(row));
        }
    }

    /// The next row of the merged order, before OFFSET/LIMIT.
    async fn next_merged(&mut self) -> Result<Option<TextRow>, ErrInfo> {
        let failure = |c: &Collected| {
            c.failure
                .clone()
                .unwrap_or_else(|| ErrInfo::new((1105, "HY000"), "scatter read failed"))
        };
        match &mut self.source {
            Source::Buffered(rows) => Ok(rows.pop_front()),
            Source::Relay(i) => {
                let mut i = *i;
                while i < self.slots.len() {
                    match self.read_leg(i).await {
                        Ok(Some(row)) => return Ok(Some(row)),
                        Ok(None) => {
                            i += 1;
                            self.source = Source::Relay(i);
                        }
                        Err(()) => return Err(failure(&self.collected)),
                    }
                }
                Ok(None)
            }
            Source::Ordered(k) => {
                let Some(i) = k.pick() else { return Ok(None) };
                let row = k.heads[i].take().expect("picked a head");
                let next = match self.read_leg(i).await {
                    Ok(next) => next,
                    Err(()) => return Err(failure(&self.collected)),
                };
                let Source::Ordered(k) = &mut self.source else {
                    unreachable!("the source does not change")
                };
                if let Some(n) = &next {
                    if let Err(e) = k.check_next(Some(&row), n) {
                        let e = merge_err(e);
                        self.collected.fail(|| e.clone());
                        return Err(e);
                    }
                }
                k.heads[i] = next;
                Ok(Some(row))
            }
        }
    }

    /// Reads leg `i`'s next row: `Ok(None)` when its answer ended, `Err(())` when it failed
    /// (recorded in `collected`).
    async fn read_leg(&mut self, i: usize) -> Result<Option<TextRow>, ()> {
        let slot = &mut self.slots[i];
        if slot.state != LegState::Open {
            return Ok(None);
        }
        match slot.leg.conn.next_row().await {
            Ok(RowStep::Row(row)) => Ok(Some(row)),
            Ok(RowStep::End { warnings }) => {
                slot.state = LegState::Ended;
                slot.warnings = warnings;
                Ok(None)
            }
            Err(BackendError::Server(e)) => {
                slot.state = LegState::Ended;
                let shard = slot.leg.shard.clone();
                self.collected.server_error(&shard, e);
                Err(())
            }
            Err(e) => {
                slot.state = LegState::Broken;
                self.collected.fail(|| e.to_err_info());
                Err(())
            }
        }
    }

    /// Reads every leg's rows for an in-memory merge, bounded by `limits.max_groups`.
    /// `Err(None)`: a leg failed (recorded); `Err(Some(_))`: the bound was passed.
    async fn read_all(
        &mut self,
        columns: &[ColumnDef],
        limits: Limits,
    ) -> Result<Vec<ResultSet>, Option<MergeError>> {
        let mut inputs = Vec::with_capacity(self.slots.len());
        let mut held = 0usize;
        for i in 0..self.slots.len() {
            let mut rows = Vec::new();
            while let Some(row) = self.read_leg(i).await.map_err(|()| None)? {
                held += 1;
                if limits.max_groups > 0 && held > limits.max_groups {
                    return Err(Some(MergeError {
                        code: 1038,
                        sqlstate: "HY001",
                        message: format!(
                            "shardproxy: merging this grouped, aggregated or DISTINCT result \
                             across shards would hold more than {} shard rows in memory \
                             (merge.max_groups); narrow the query, or raise merge.max_groups",
                            limits.max_groups
                        ),
                    }));
                }
                rows.push(row);
            }
            inputs.push(ResultSet {
                columns: columns.to_vec(),
                rows,
                warnings: self.slots[i].warnings,
            });
        }
        Ok(inputs)
    }

    /// Records a failure the caller found while sending (a value that does not fit the
    /// binary protocol): the result ends with it.
    pub fn fail(&mut self, e: ErrInfo) {
        self.collected.fail(|| e);
    }

    /// Ends the statement: reads every answer still open to its end (so its connection can
    /// be reused), reads the warnings of the shards that had some, gives the connections back
    /// (dropping broken ones). The answer is the warning count of the result's end, or the
    /// error that ends it.
    pub async fn finish<S: Shards<Conn = C>>(mut self, shards: &mut S) -> Done<u16> {
        for i in 0..self.slots.len() {
            while self.slots[i].state == LegState::Open {
                // Rows are dropped; a failure is recorded and changes the state.
                let _ = self.read_leg(i).await;
            }
        }
        let mut c = std::mem::take(&mut self.collected);
        for slot in self.slots {
            if slot.state == LegState::Broken {
                shards.lost(&slot.leg.shard, slot.leg.conn);
                continue;
            }
            let mut leg = slot.leg;
            c.warning_count += u64::from(slot.warnings);
            if slot.warnings > 0 {
                c.conditions.extend(shard_warnings(&mut leg.conn).await);
            }
            shards.give_back(&leg.shard, leg.conn);
        }
        let warnings = c.warning_count.min(u64::from(u16::MAX)) as u16;
        let found_rows = if self.calc_found_rows {
            FoundRows::Unknown
        } else {
            FoundRows::Known(self.sent)
        };
        c.done(warnings, -1, found_rows)
    }

    /// The client went away in the middle of the result: connections in the middle of an
    /// answer are dropped, the others given back.
    pub fn abandon<S: Shards<Conn = C>>(self, shards: &mut S) {
        for slot in self.slots {
            match slot.state {
                LegState::Ended => shards.give_back(&slot.leg.shard, slot.leg.conn),
                LegState::Open | LegState::Broken => shards.lost(&slot.leg.shard, slot.leg.conn),
            }
        }
    }
}
