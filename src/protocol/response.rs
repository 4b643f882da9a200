//! Where a backend's answer ends, and what it said.
//!
//! The proxy relays answer packets untouched, but it must know when an answer is complete (to
//! read the client's next command and to give the connection back to the pool) and a few facts
//! in it: the final status flags (is a transaction open?), the warning count, affected rows,
//! the last insert id, or the error. [`ResponseTracker`] is fed each packet of an answer in order
//! and says whether more packets follow. It does no I/O, so it is tested without a network.

use super::buf::Reader;
use super::constants::status;
use super::packets::{parse_err, parse_ok, parse_terminator, ErrInfo, OkInfo};
use super::session_track::{self, SessionState, TrackedGtid, SESSION_STATE_CHANGED};

/// Which command the answer belongs to: each has its own shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseKind {
    /// COM_QUERY: OK, ERR, LOCAL INFILE request, or result sets (text rows), possibly several.
    Query,
    /// COM_STMT_EXECUTE: OK, ERR, or result sets with binary rows, possibly with a cursor.
    Execute,
    /// COM_STMT_FETCH: rows and a terminator, or ERR.
    Fetch,
    /// COM_FIELD_LIST: column definitions and a terminator, or ERR.
    FieldList,
    /// COM_STMT_PREPARE: PREPARE_OK with parameter and column definitions, or ERR.
    Prepare,
    /// COM_STATISTICS: one string packet.
    Statistics,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Start,
    ColumnDefs(u64),
    ColumnsEof,
    Rows,
    PrepareParams(u16, u16),
    PrepareParamsEof(u16),
    PrepareColumns(u16),
    PrepareColumnsEof,
    Done,
}

/// What the whole answer said, once complete.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outcome {
    /// Status flags of the last OK/EOF (the session's state after the statement).
    pub status: u16,
    pub warnings: u16,
    pub affected_rows: u64,
    pub last_insert_id: u64,
    pub error: Option<ErrInfo>,
    /// At least one result set was sent.
    pub result_set: bool,
    /// Rows of the last result set (what `FOUND_ROWS()` reports next).
    pub rows: u64,
    /// For PREPARE: statement id, columns, parameters.
    pub prepared: Option<(u32, u16, u16)>,
    /// The GTID of the commit this answer reported through session tracking (the last one, if
    /// several statements committed).
    pub last_gtid: Option<TrackedGtid>,
}

/// The tracker's verdict on one packet.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// More packets of this answer follow.
    More,
    /// The server asks for a local file: the client's file packets must be relayed to the
    /// server up to an empty packet; then the answer continues.
    LocalInfile,
    /// That was the answer's last packet.
    Done,
}

/// Follows the packets of one answer.
#[derive(Debug, Clone)]
pub struct ResponseTracker {
    kind: ResponseKind,
    deprecate_eof: bool,
    state: State,
    pub outcome: Outcome,
    /// The packet just fed was an OK carrying session state: where it is, so the relay can
    /// cut it off for a client that did not ask for it (taken by the relay).
    pub session_state: Option<SessionState>,
}

/// The packet did not fit the protocol: the connection it came from cannot be trusted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed answer packet: {0}")]
pub struct Malformed(pub &'static str);

impl ResponseTracker {
    pub fn new(kind: ResponseKind, deprecate_eof: bool) -> Self {
        let state = match kind {
            ResponseKind::Fetch | ResponseKind::FieldList => State::Rows,
            _ => State::Start,
        };
        ResponseTracker {
            kind,
            deprecate_eof,
            state,
            outcome: Outcome::default(),
            session_state: None,
        }
    }

    fn finish_ok(&mut self, ok: OkInfo) -> Step {
        self.outcome.status = ok.status;
        self.outcome.warnings = ok.warnings;
        if self.state == State::Start {
            self.outcome.affected_rows = ok.affected_rows;
            if ok.last_insert_id != 0 {
                self.outcome.last_insert_id = ok.last_insert_id;
            }
        }
        if ok.status & status::MORE_RESULTS_EXISTS != 0 && self.kind != ResponseKind::Fetch {
            self.state = State::Start;
            Step::More
        } else {
            self.state = State::Done;
            Step::Done
        }
    }

    fn error(&mut self, payload: &[u8]) -> Result<Step, Malformed> {
        let e = parse_err(payload).ok_or(Malformed("bad ERR packet"))?;
        self.outcome.error = Some(e);
        self.state = State::Done;
        Ok(Step::Done)
    }

    /// Feeds the next packet's payload.
    pub fn feed(&mut self, payload: &[u8]) -> Result<Step, Malformed> {
        let first = *payload.first().ok_or(Malformed("empty packet"))?;
        match self.state {
            State::Done => Err(Malformed("packet after the end of an answer")),
            State::Start => {
                if self.kind == ResponseKind::Statistics {
                    self.state = State::Done;
                    return Ok(Step::Done);
                }
                match first {
                    0xFF => self.error(payload),
                    0x00 if self.kind == ResponseKind::Prepare => {
                        let mut r = Reader::new(payload);
                        r.u8();
                        let id = r.u32().ok_or(Malformed("short PREPARE_OK"))?;
                        let cols = r.u16().ok_or(Malformed("short PREPARE_OK"))?;
                        let params = r.u16().ok_or(Malformed("short PREPARE_OK"))?;
                        r.u8();
                        self.outcome.warnings = r.u16().unwrap_or(0);
                        self.outcome.prepared = Some((id, cols, params));
                        self.state = State::PrepareParams(params, cols);
                        Ok(self.advance_prepare())
                    }
                    0x00 => {
                        let ok = parse_ok(payload).ok_or(Malformed("bad OK packet"))?;
                        // Parsed only when the server says a state block follows.
                        if ok.status & SESSION_STATE_CHANGED != 0 {
                            self.session_state = session_track::parse(payload);
                            if let Some(g) = self.session_state.and_then(|s| s.last_gtid) {
                                self.outcome.last_gtid = Some(g);
                            }
                        }
                        Ok(self.finish_ok(ok))
                    }
                    0xFB if self.kind == ResponseKind::Query => Ok(Step::LocalInfile),
                    _ => {
                        let mut r = Reader::new(payload);
                        let n = r.lenenc_int().ok_or(Malformed("bad column count"))?;
                        if n == 0 || !r.is_empty() {
                            return Err(Malformed("bad column count"));
                        }
                        self.outcome.result_set = true;
                        self.outcome.rows = 0;
                        self.state = State::ColumnDefs(n);
                        Ok(Step::More)
                    }
                }
            }
            State::ColumnDefs(n) => {
                self.state = if n > 1 {
                    State::ColumnDefs(n - 1)
                } else if self.deprecate_eof {
                    State::Rows
                } else {
                    State::ColumnsEof
                };
                Ok(Step::More)
            }
            State::ColumnsEof => {
                let eof = parse_terminator(false, payload).ok_or(Malformed("expected EOF"))?;
                if eof.status & status::CURSOR_EXISTS != 0 {
                    self.outcome.status = eof.status;
                    self.outcome.warnings = eof.warnings;
                    self.state = State::Done;
                    return Ok(Step::Done);
                }
                self.state = State::Rows;
                Ok(Step::More)
            }
            State::Rows => {
                if first == 0xFF {
                    return self.error(payload);
                }
                if super::packets::is_terminator(payload) {
                    let t = parse_terminator(self.deprecate_eof, payload)
                        .ok_or(Malformed("bad terminator"))?;
                    return Ok(self.finish_ok(OkInfo {
                        affected_rows: 0,
                        last_insert_id: 0,
                        ..t
                    }));
                }
                self.outcome.rows += 1;
                Ok(Step::More)
            }
            State::PrepareParams(..) | State::PrepareColumns(_) => Ok(self.advance_prepare_def()),
            State::PrepareParamsEof(cols) => {
                self.state = State::PrepareColumns(cols);
                Ok(self.advance_prepare())
            }
            State::PrepareColumnsEof => {
                self.state = State::Done;
                Ok(Step::Done)
            }
        }
    }

    /// After PREPARE_OK or a definition: where to go when a count reaches zero.
    fn advance_prepare(&mut self) -> Step {
        match self.state {
            State::PrepareParams(0, cols) => {
                self.state = State::PrepareColumns(cols);
                self.advance_prepare()
            }
            State::PrepareColumns(0) => {
                self.state = State::Done;
                Step::Done
            }
            _ => Step::More,
        }
    }

    fn advance_prepare_def(&mut self) -> Step {
        match self.state {
            State::PrepareParams(p, cols) => {
                self.state = if p > 1 {
                    State::PrepareParams(p - 1, cols)
                } else if self.deprecate_eof {
                    State::PrepareColumns(cols)
                } else {
                    State::PrepareParamsEof(cols)
                };
                if p == 1 && self.deprecate_eof {
                    return self.advance_prepare();
                }
                Step::More
            }
            State::PrepareColumns(c) => {
                if c > 1 {
                    self.state = State::PrepareColumns(c - 1);
                    Step::More
                } else if self.deprecate_eof {
                    self.state = State::Done;
                    Step::Done
                } else {
                    self.state = State::PrepareColumnsEof;
                    Step::More
                }
            }
            _ => Step::More,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::packets::{build_eof, build_err, build_ok, build_terminator};
    use crate::protocol::resultset::{encode_text_row, ColumnDef};
    use bytes::Bytes;

    fn run(kind: ResponseKind, deprecate: bool, packets: &[Vec<u8>]) -> (Vec<Step>, Outcome) {
        let mut t = ResponseTracker::new(kind, deprecate);
        let steps = packets.iter().map(|p| t.feed(p).unwrap()).collect();
        (steps, t.outcome)
    }

    fn result_set(deprecate: bool, status: u16) -> Vec<Vec<u8>> {
        let mut v = vec![vec![1u8], ColumnDef::text("a").encode().to_vec()];
        if !deprecate {
            v.push(build_eof(0, 0).to_vec());
        }
        v.push(encode_text_row(&[Some(Bytes::from_static(b"x"))]).to_vec());
        v.push(build_terminator(deprecate, status, 1).to_vec());
        v
    }

    #[test]
    fn ok_ends_at_once() {
        let ok = build_ok(
            &OkInfo {
                affected_rows: 3,
                last_insert_id: 9,
                status: 2,
                warnings: 0,
            },
            "",
        );
        let (steps, out) = run(ResponseKind::Query, false, &[ok.to_vec()]);
        assert_eq!(steps, vec![Step::Done]);
        assert_eq!(out.affected_rows, 3);
        assert_eq!(out.last_insert_id, 9);
    }

    #[test]
    fn result_set_with_and_without_eof() {
        for deprecate in [false, true] {
            let pkts = result_set(deprecate, 2);
            let (steps, out) = run(ResponseKind::Query, deprecate, &pkts);
            assert_eq!(*steps.last().unwrap(), Step::Done);
            assert!(steps[..steps.len() - 1].iter().all(|s| *s == Step::More));
            assert_eq!(out.warnings, 1);
            assert!(out.result_set);
        }
    }

    #[test]
    fn multiple_results_continue() {
        let mut pkts = result_set(false, 2 | status::MORE_RESULTS_EXISTS);
        pkts.push(build_ok(&OkInfo::default(), "").to_vec());
        let (steps, _) = run(ResponseKind::Query, false, &pkts);
        assert_eq!(steps.iter().filter(|s| **s == Step::Done).count(), 1);
        assert_eq!(*steps.last().unwrap(), Step::Done);
    }

    #[test]
    fn error_mid_rows_ends() {
        let mut pkts = result_set(true, 2);
        pkts.truncate(3);
        pkts.push(build_err(&ErrInfo::new((1317, "70100"), "interrupted")).to_vec());
        let (steps, out) = run(ResponseKind::Query, true, &pkts);
        assert_eq!(*steps.last().unwrap(), Step::Done);
        assert_eq!(out.error.unwrap().code, 1317);
    }

    #[test]
    fn prepare_shapes() {
        for deprecate in [false, true] {
            for (cols, params) in [(0u16, 0u16), (2, 0), (0, 3), (1, 1)] {
                let mut ok = vec![0u8];
                ok.extend_from_slice(&7u32.to_le_bytes());
                ok.extend_from_slice(&cols.to_le_bytes());
                ok.extend_from_slice(&params.to_le_bytes());
                ok.extend_from_slice(&[0, 0, 0]);
                let mut pkts = vec![ok];
                let def = ColumnDef::text("p").encode().to_vec();
                for _ in 0..params {
                    pkts.push(def.clone());
                }
                if params > 0 && !deprecate {
                    pkts.push(build_eof(0, 0).to_vec());
                }
                for _ in 0..cols {
                    pkts.push(def.clone());
                }
                if cols > 0 && !deprecate {
                    pkts.push(build_eof(0, 0).to_vec());
                }
                let (steps, out) = run(ResponseKind::Prepare, deprecate, &pkts);
                assert_eq!(
                    *steps.last().unwrap(),
                    Step::Done,
                    "{cols} {params} {deprecate}"
                );
                assert_eq!(steps.iter().filter(|s| **s == Step::Done).count(), 1);
                assert_eq!(out.prepared, Some((7, cols, params)));
            }
        }
    }

    #[test]
    fn cursor_execute_ends_after_columns() {
        let pkts = vec![
            vec![1u8],
            ColumnDef::text("a").encode().to_vec(),
            build_eof(status::CURSOR_EXISTS | 2, 0).to_vec(),
        ];
        let (steps, out) = run(ResponseKind::Execute, false, &pkts);
        assert_eq!(*steps.last().unwrap(), Step::Done);
        assert!(out.status & status::CURSOR_EXISTS != 0);
    }

    #[test]
    fn local_infile_is_signalled() {
        let mut t = ResponseTracker::new(ResponseKind::Query, false);
        assert_eq!(t.feed(b"\xFB/tmp/x.csv").unwrap(), Step::LocalInfile);
        assert_eq!(
            t.feed(&build_ok(&OkInfo::default(), "")).unwrap(),
            Step::Done
        );
    }

    #[test]
    fn garbage_is_malformed_not_panic() {
        let mut t = ResponseTracker::new(ResponseKind::Query, false);
        assert!(t.feed(&[]).is_err());
        let mut t = ResponseTracker::new(ResponseKind::Query, false);
        assert!(t.feed(&[0xFC]).is_err());
    }
}
