//! Reading a backend's result set row by row, for streamed scatter reads
//! (`exec::stream`): [`BackendConn::start_rows`] sends a query and reads up to the end of the
//! column definitions; [`RowCursor::next`] then reads one row at a time, so the proxy holds one
//! row per shard and a slow client's back-pressure reaches the server through the socket.

use super::conn::{lost, BackendConn, BackendError};
use crate::protocol::constants::com;
use crate::protocol::packets::{build_command, OkInfo};
use crate::protocol::response::{ResponseKind, ResponseTracker, Step};
use crate::protocol::resultset::{parse_text_row, ColumnDef};

/// The start of a streamed answer ([`BackendConn::start_rows`]).
#[derive(Debug, Clone, PartialEq)]
pub enum StreamHead {
    /// A result set: its column definitions; the rows follow ([`RowCursor::next`]).
    Rows(Vec<ColumnDef>),
    /// The statement answered with an OK: there are no rows to read.
    Ok(OkInfo),
}

/// One step of a streamed result set.
#[derive(Debug, Clone, PartialEq)]
pub enum RowStep {
    /// The next row.
    Row(crate::protocol::resultset::TextRow),
    /// The result set ended; the connection is free for the next statement.
    End {
        /// The warning count of the final EOF/OK.
        warnings: u16,
    },
}

/// Where a streamed answer is: in the column definitions, in the rows, or past the first
/// result set (further result sets of a multi-statement answer are read and dropped, as
/// [`BackendConn::collect`] keeps only the first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CursorPhase {
    /// Rows of the first result set.
    Rows,
    /// The first result set ended but the answer goes on (MORE_RESULTS_EXISTS).
    Trailing,
    /// The whole answer was read.
    Done,
}

/// Reads a result set row by row, so a scatter read holds one row per shard rather than
/// the whole answer: the socket's buffer (and the server, which blocks when it is full) holds
/// the rest. Made by [`BackendConn::start_rows`]; each [`RowCursor::next`] reads one packet
/// (or a few, past a trailing result set) from the same connection.
#[derive(Debug, Clone)]
pub struct RowCursor {
    /// Follows the answer's packets, to know where it ends and its final status.
    tracker: ResponseTracker,
    /// Values per row.
    ncols: usize,
    /// Where the answer is.
    phase: CursorPhase,
}

impl BackendConn {
    /// Sends `sql` and reads the answer up to the end of the column definitions (or the
    /// whole answer if it is an OK or an error). The rows are then read with the returned
    /// cursor; until it reports [`RowStep::End`] the connection is in the middle of an answer
    /// and must not be used for anything else (or pooled).
    pub async fn start_rows(
        &mut self,
        sql: &str,
    ) -> Result<(StreamHead, Option<RowCursor>), BackendError> {
        self.send_command(&build_command(com::QUERY, sql.as_bytes()))
            .await?;
        let mut tracker = ResponseTracker::new(ResponseKind::Query, self.deprecate_eof());
        let mut columns: Vec<ColumnDef> = Vec::new();
        let mut ncols: Option<usize> = None;
        loop {
            let (pkt, step) = self.read_step(&mut tracker).await?;
            if step == Step::Done {
                let o = &tracker.outcome;
                self.status = o.status;
                if let Some(e) = &o.error {
                    return Err(BackendError::Server(e.clone()));
                }
                if ncols.is_some() {
                    return Err(lost(&self.addr, "result set ended inside its header"));
                }
                let ok = OkInfo {
                    affected_rows: o.affected_rows,
                    last_insert_id: o.last_insert_id,
                    status: o.status,
                    warnings: o.warnings,
                };
                return Ok((StreamHead::Ok(ok), None));
            }
            let header_done = match ncols {
                None => {
                    let mut r = crate::protocol::buf::Reader::new(&pkt.payload);
                    let n = r.lenenc_int().unwrap_or(0) as usize;
                    ncols = Some(n);
                    columns.reserve(n);
                    n == 0 && self.deprecate_eof()
                }
                Some(n) if columns.len() < n => {
                    let def = ColumnDef::parse(&pkt.payload)
                        .ok_or_else(|| lost(&self.addr, "bad column definition"))?;
                    columns.push(def);
                    columns.len() == n && self.deprecate_eof()
                }
                // The EOF after the definitions (without DEPRECATE_EOF).
                Some(_) => true,
            };
            if header_done {
                let cursor = RowCursor {
                    tracker,
                    ncols: columns.len(),
                    phase: CursorPhase::Rows,
                };
                return Ok((StreamHead::Rows(columns), Some(cursor)));
            }
        }
    }
}

impl RowCursor {
    /// Reads the next row of the result set from `conn` (the connection that started it).
    /// A server error in the middle of the rows (MariaDB can send one after rows) is
    /// [`BackendError::Server`]: the answer is over and the connection usable.
    pub async fn next(&mut self, conn: &mut BackendConn) -> Result<RowStep, BackendError> {
        loop {
            if self.phase == CursorPhase::Done {
                return Ok(RowStep::End {
                    warnings: self.tracker.outcome.warnings,
                });
            }
            let (pkt, step) = conn.read_step(&mut self.tracker).await?;
            if step == Step::Done {
                self.phase = CursorPhase::Done;
                conn.status = self.tracker.outcome.status;
                conn.last_used = std::time::Instant::now();
                if let Some(e) = &self.tracker.outcome.error {
                    return Err(BackendError::Server(e.clone()));
                }
                continue;
            }
            match self.phase {
                CursorPhase::Rows if pkt.first() == Some(0xFE) => {
                    // The first result set's end, with more result sets after it.
                    self.phase = CursorPhase::Trailing;
                }
                CursorPhase::Rows => {
                    let row = parse_text_row(&pkt.payload, self.ncols)
                        .ok_or_else(|| lost(&conn.addr, "bad text row"))?;
                    return Ok(RowStep::Row(row));
                }
                _ => {}
            }
        }
    }
}
