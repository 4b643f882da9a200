//! The wire relay: a command goes to the backend as the client sent it, and the answer comes
//! back packet by packet, untouched, while [`ResponseTracker`] follows it to learn where it
//! ends and what it left (status, warnings, affected rows, insert id). Packets already in the
//! read buffer are copied as whole frames, without a packet object or a timer. `LOAD DATA
//! LOCAL INFILE` packets are relayed the other way. A PREPARE answer is relayed with the
//! proxy's statement id in place of the backend's.
//!
//! Touches the two sockets and one backend connection; knows nothing of the session.

use bytes::BytesMut;

use crate::backend::conn::{BackendConn, BackendError};
use crate::protocol::packet::{PacketReader, PacketWriter};
use crate::protocol::packets::build_err;
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
    let mut tracker = ResponseTracker::new(kind, conn.deprecate_eof());
    let mut next_seq = 1u8;
    loop {
        // A packet already buffered (the usual case after the first one of an answer) is
        // looked at in place and its frame copied to the client as it is: no packet object,
        // no timer. Otherwise wait for the next packet (bounded by the backend timeout).
        let fed = match conn.reader.peek_frame() {
            Some(frame) => {
                let fed = tracker.feed(&frame[4..]);
                if let (Ok(_), Some(st)) = (&fed, tracker.session_state.take()) {
                    // The client did not ask for session state: relay the OK without it.
                    next_seq = client_w
                        .write(frame[3], &session_track::strip(&frame[4..], &st))
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
                        .write(pkt.seq, stripped.as_deref().unwrap_or(&pkt.payload))
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
                    conn.writer.write(p.seq, &p.payload).await.map_err(|e| {
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
