//! The wire relay: a command goes to the backend as the client sent it, and the answer comes
//! back packet by packet, untouched, while [`ResponseTracker`] follows it to learn where it
//! ends and what it left (status, warnings, affected rows, insert id). Packets already in the
//! read buffer are copied as whole frames, without a packet object or a timer. `LOAD DATA
//! LOCAL INFILE` packets are relayed the other way. A PREPARE answer is relayed with the
//! proxy's statement id in place of the backend's. A statement can also be sent behind a
//! prefix of the proxy's own in one multi-statement packet ([`relay_prefixed`]: the
//! `XA START` of a new leg of a distributed transaction), the prefix's answer kept from the
//! client.
//!
//! Touches the two sockets and one backend connection; knows nothing of the session.

use bytes::BytesMut;

use crate::backend::conn::{BackendConn, BackendError};
use crate::protocol::constants::status;
use crate::protocol::packet::{PacketReader, PacketWriter};
use crate::protocol::packets::{build_err, build_ok, parse_err, parse_ok, ErrInfo, OkInfo};
use crate::protocol::response::{Outcome, ResponseKind, ResponseTracker, Step};
use crate::protocol::session_track;
use crate::protocol::stream::{StreamRead, StreamWrite};

/// What a relay failure means for the session.
pub(super) enum RelayError {
    /// The backend connection is unusable; the client has been told (or will be).
    Backend(BackendError),
    /// The client went away.
    Client,
}

pub(super) type ClientReader = PacketReader<StreamRead>;

pub(super) type ClientWriter = PacketWriter<StreamWrite>;

/// Forwards a command and relays its whole answer, packet by packet, untouched.
pub(super) async fn relay(
    client_r: &mut ClientReader,
    client_w: &mut ClientWriter,
    conn: &mut BackendConn,
    payload: &[u8],
    kind: ResponseKind,
) -> Result<Outcome, RelayError> {
    if let Err(e) = conn.send_command(payload).await {
        let _ = client_w.write(1, &build_err(&e.to_err_info())).await;
        let _ = client_w.flush().await;
        return Err(RelayError::Backend(e));
    }
    relay_answer(client_r, client_w, conn, kind, 0).await
}

/// How a statement sent behind a prefix ([`relay_prefixed`]) ended.
pub(super) enum Prefixed {
    /// The prefix succeeded and the statement's answer was relayed.
    Relayed(Outcome),
    /// The prefix failed, so the server ran nothing after it; the client has been told
    /// nothing yet.
    PrefixFailed(ErrInfo),
}

/// Sends `prefix` and the client's COM_QUERY `payload` as one multi-statement packet
/// (`prefix;statement`: one round trip instead of two), reads the prefix's own answer
/// (not relayed), then relays the statement's answer as [`relay`] does, its sequence ids
/// put back in the client's count. The server stops a multi-statement at its first error,
/// so the statement runs only if the prefix succeeded. The connection must have
/// multi-statements on.
pub(super) async fn relay_prefixed(
    client_r: &mut ClientReader,
    client_w: &mut ClientWriter,
    conn: &mut BackendConn,
    prefix: &str,
    payload: &[u8],
) -> Result<Prefixed, RelayError> {
    let mut combined = Vec::with_capacity(payload.len() + prefix.len() + 1);
    combined.push(payload[0]);
    combined.extend_from_slice(prefix.as_bytes());
    combined.push(b';');
    combined.extend_from_slice(&payload[1..]);
    let first = match conn.send_command(&combined).await {
        Ok(()) => conn.read().await,
        Err(e) => Err(e),
    };
    let first = match first {
        Ok(p) => p,
        Err(e) => {
            let _ = client_w.write(1, &build_err(&e.to_err_info())).await;
            let _ = client_w.flush().await;
            return Err(RelayError::Backend(e));
        }
    };
    match (parse_ok(&first.payload), parse_err(&first.payload)) {
        (_, Some(e)) if first.first() == Some(0xFF) => Ok(Prefixed::PrefixFailed(e)),
        (Some(ok), _) if first.first() == Some(0x00) => {
            if ok.status & status::MORE_RESULTS_EXISTS != 0 {
                return relay_answer(client_r, client_w, conn, ResponseKind::Query, 1)
                    .await
                    .map(Prefixed::Relayed);
            }
            // Nothing followed the prefix (the client's text held no statement): its OK is
            // the answer.
            conn.status = ok.status;
            let answer = OkInfo {
                affected_rows: 0,
                last_insert_id: 0,
                status: ok.status,
                warnings: 0,
            };
            client_w
                .write(1, &build_ok(&answer, ""))
                .await
                .map_err(|_| RelayError::Client)?;
            client_w.flush().await.map_err(|_| RelayError::Client)?;
            Ok(Prefixed::Relayed(Outcome {
                status: ok.status,
                ..Outcome::default()
            }))
        }
        _ => {
            let e = BackendError::Lost {
                addr: conn.addr.clone(),
                reason: "unexpected answer to a statement's prefix".into(),
            };
            let _ = client_w.write(1, &build_err(&e.to_err_info())).await;
            let _ = client_w.flush().await;
            Err(RelayError::Backend(e))
        }
    }
}

/// Relays the answer to a command already sent. `seq_shift`: how many packets of the
/// backend's answer the client does not see before this one (a prefix's answer, read by
/// [`relay_prefixed`]); their sequence ids are taken off the client's.
async fn relay_answer(
    client_r: &mut ClientReader,
    client_w: &mut ClientWriter,
    conn: &mut BackendConn,
    kind: ResponseKind,
    seq_shift: u8,
) -> Result<Outcome, RelayError> {
    let mut tracker = ResponseTracker::new(kind, conn.deprecate_eof());
    let mut next_seq = 1u8;
    loop {
        // A packet already buffered (the usual case after the first one of an answer) is
        // looked at in place and its frame copied to the client as it is: no packet object,
        // no timer. Otherwise wait for the next packet (bounded by the backend timeout).
        let fed = match conn.reader.peek_frame() {
            Some(frame) => {
                let fed = tracker.feed(&frame[4..]);
                let seq = frame[3].wrapping_sub(seq_shift);
                if let (Ok(_), Some(st)) = (&fed, tracker.session_state.take()) {
                    // The client did not ask for session state: relay the OK without it.
                    next_seq = client_w
                        .write(seq, &session_track::strip(&frame[4..], &st))
                        .await
                        .map_err(|_| RelayError::Client)?;
                } else if fed.is_ok() && seq_shift != 0 {
                    next_seq = client_w
                        .write(seq, &frame[4..])
                        .await
                        .map_err(|_| RelayError::Client)?;
                } else if fed.is_ok() {
                    next_seq = client_w
                        .write_frame(frame)
                        .await
                        .map_err(|_| RelayError::Client)?;
                }
                let n = frame.len();
                conn.reader.consume(n);
                fed
            }
            None => {
                let pkt = match conn.read().await {
                    Ok(p) => p,
                    Err(e) => {
                        let _ = client_w.write(next_seq, &build_err(&e.to_err_info())).await;
                        let _ = client_w.flush().await;
                        return Err(RelayError::Backend(e));
                    }
                };
                let fed = tracker.feed(&pkt.payload);
                if fed.is_ok() {
                    let stripped = tracker
                        .session_state
                        .take()
                        .map(|st| session_track::strip(&pkt.payload, &st));
                    next_seq = client_w
                        .write(
                            pkt.seq.wrapping_sub(seq_shift),
                            stripped.as_deref().unwrap_or(&pkt.payload),
                        )
                        .await
                        .map_err(|_| RelayError::Client)?;
                }
                fed
            }
        };
        let step = match fed {
            Ok(s) => s,
            Err(m) => {
                let e = BackendError::Lost {
                    addr: conn.addr.clone(),
                    reason: m.to_string(),
                };
                let _ = client_w.write(next_seq, &build_err(&e.to_err_info())).await;
                let _ = client_w.flush().await;
                return Err(RelayError::Backend(e));
            }
        };
        match step {
            Step::More => {}
            Step::Done => break,
            Step::LocalInfile => {
                client_w.flush().await.map_err(|_| RelayError::Client)?;
                // Relay the file's packets to the server up to the empty one.
                loop {
                    let p = client_r.read().await.map_err(|_| RelayError::Client)?;
                    let seq = p.seq.wrapping_add(seq_shift);
                    conn.writer.write(seq, &p.payload).await.map_err(|e| {
                        RelayError::Backend(BackendError::Lost {
                            addr: conn.addr.clone(),
                            reason: e.to_string(),
                        })
                    })?;
                    if p.payload.is_empty() {
                        break;
                    }
                }
                conn.writer.flush().await.map_err(|e| {
                    RelayError::Backend(BackendError::Lost {
                        addr: conn.addr.clone(),
                        reason: e.to_string(),
                    })
                })?;
            }
        }
    }
    client_w.flush().await.map_err(|_| RelayError::Client)?;
    conn.status = tracker.outcome.status;
    Ok(tracker.outcome)
}

/// Relays a PREPARE answer, giving the client the proxy's statement id instead of the
/// backend's.
pub(super) async fn relay_prepare(
    client_w: &mut ClientWriter,
    conn: &mut BackendConn,
    payload: &[u8],
    client_id: u32,
) -> Result<Outcome, RelayError> {
    if let Err(e) = conn.send_command(payload).await {
        let _ = client_w.write(1, &build_err(&e.to_err_info())).await;
        let _ = client_w.flush().await;
        return Err(RelayError::Backend(e));
    }
    let mut tracker = ResponseTracker::new(ResponseKind::Prepare, conn.deprecate_eof());
    let mut first = true;
    loop {
        let pkt = match conn.read().await {
            Ok(p) => p,
            Err(e) => {
                let _ = client_w.write(1, &build_err(&e.to_err_info())).await;
                let _ = client_w.flush().await;
                return Err(RelayError::Backend(e));
            }
        };
        let step = tracker.feed(&pkt.payload).map_err(|m| {
            RelayError::Backend(BackendError::Lost {
                addr: conn.addr.clone(),
                reason: m.to_string(),
            })
        })?;
        if first && pkt.first() == Some(0x00) && pkt.payload.len() >= 5 {
            let mut p = BytesMut::from(&pkt.payload[..]);
            p[1..5].copy_from_slice(&client_id.to_le_bytes());
            client_w
                .write(pkt.seq, &p)
                .await
                .map_err(|_| RelayError::Client)?;
        } else {
            client_w
                .write(pkt.seq, &pkt.payload)
                .await
                .map_err(|_| RelayError::Client)?;
        }
        first = false;
        if step == Step::Done {
            break;
        }
    }
    client_w.flush().await.map_err(|_| RelayError::Client)?;
    Ok(tracker.outcome)
}
