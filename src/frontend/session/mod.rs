//! One client connection, from handshake to quit: one tokio task per client.
//!
//! The session reads a command, decides where it goes, takes a backend connection (the one it
//! holds, or one from the pool brought to the session's state), forwards the client's packet
//! untouched and relays the answer packets back untouched. After each statement it decides
//! whether to keep the connection:
//! - **pinned** for good when the session created state that cannot move (user variables,
//!   locks, temporary tables, cursors …);
//! - **transaction** while the server says a transaction is open;
//! - **sticky** until the next statement when the answer left something the next statement
//!   may ask about (warnings, errors, affected rows, an insert id: SHOW WARNINGS,
//!   ROW_COUNT() …);
//! - otherwise it goes back to the pool at once.
//!
//! # Where each part lives
//! This file holds the [`Session`] itself, [`serve`], the command loop and the dispatch of
//! each command to the file that owns it. Following one text statement:
//! 1. [`handshake`]: greeting, authentication, the initial database (also COM_CHANGE_USER
//!    and COM_RESET_CONNECTION, which start the session over).
//! 2. [`query`]: a COM_QUERY is classified, planned and sent down one of the paths below;
//!    [`transaction`] handles BEGIN/COMMIT/ROLLBACK and the held-back BEGIN.
//! 3. [`single`]: a plan for one shard takes a connection ([`hold`]: which connection serves
//!    the statement, and whether the session keeps it afterwards) and relays the answer
//!    ([`relay`]: packets copied between the two sockets untouched).
//! 4. [`multi_shard`]: a plan for several shards goes to the multi-shard executor.
//! 5. [`own_answers`]: what the proxy answers itself (PREVIEW, result sets it composed,
//!    questions about a statement it ran on several shards, INSERTs with sequence ids).
//!
//! Prepared statements have their own file ([`prepared`]), and so does KILL ([`kill`]).
//! Each child file adds methods to [`Session`] for its concern only; the fields below are the
//! whole state they share.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use tokio::net::TcpStream;

use crate::exec::Diagnostics;
use crate::frontend::registry::SessionHandle;
use crate::plan::Rejection;
use crate::protocol::buf::Reader;
use crate::protocol::constants::{cap, com, err, status, DEFAULT_COLLATION};
use crate::protocol::packet::{PacketError, PacketReader, PacketWriter};
use crate::protocol::packets::{build_err, build_ok, ErrInfo, OkInfo};
use crate::protocol::response::ResponseKind;
use crate::proxy::Proxy;
use crate::session_state::SessionVars;

mod audit_log;
mod finishing;
mod handshake;
mod hold;
mod idle;
mod join;
mod kill;
mod multi_shard;
mod own_answers;
mod prepared;
mod processlist;
mod proxy_settings;
mod query;
mod relay;
mod replica_reads;
mod rights;
mod single;
mod staged;
mod transaction;

use hold::{Held, HoldWhy};
use prepared::ClientStmt;
use relay::{ClientReader, ClientWriter};

/// Whether the session goes on after a command.
enum Flow {
    /// Read the next command.
    Continue,
    /// End the session (COM_QUIT, KILL of itself, a broken client, a malformed packet).
    Close,
}

/// One client's session: its identity, its state as one server would hold it, and the backend
/// connection it keeps between statements.
pub struct Session {
    /// What all sessions share: config, topology, rules, users, the registry.
    proxy: Arc<Proxy>,
    /// The proxy's connection id for this client (handshake, `CONNECTION_ID()`, KILL).
    id: u32,
    /// This session's entry in the registry (SHOW SESSIONS, KILL); set after login.
    handle: Option<Arc<SessionHandle>>,
    /// Reads the client's packets.
    reader: ClientReader,
    /// Writes to the client.
    writer: ClientWriter,
    /// The client's address, for logs and access-denied messages.
    peer: String,
    /// Capability flags agreed with the client (what the proxy offers and the client asked).
    caps: u32,
    /// The client's character set and collation (backends are connected with the same).
    collation: u8,
    /// The authenticated user name.
    user: String,
    /// The 20-byte challenge of the current authentication exchange.
    scramble: Vec<u8>,
    /// The session state that moves with the session between backend connections (database,
    /// `SET` variables, character set, multi-statements).
    vars: SessionVars,
    /// The backend connection kept between statements, with its shard and why it is kept.
    held: Option<Held>,
    /// Why the session is pinned to its held connection for good (user variables, locks,
    /// temporary tables, an open cursor …), if it is.
    pin: Option<&'static str>,
    /// The client's prepared statements by the ids the proxy gave them.
    stmts: HashMap<u32, ClientStmt>,
    /// The id the next prepared statement gets.
    next_stmt: u32,
    /// The client's `LAST_INSERT_ID()`, restored on a connection that holds another.
    last_insert_id: u64,
    /// The server status flags the client last saw (autocommit, in transaction …).
    status: u16,
    /// BEGIN held back until the first statement picks the transaction's shard.
    pending_begin: Option<String>,
    /// `SET shardproxy_allow_scatter_writes = 1`: UPDATE/DELETE without a key allowed.
    allow_scatter_writes: bool,
    /// Why the held connection was held, while a multi-shard statement borrows it.
    held_why_on_loan: Option<HoldWhy>,
    /// This session's handles of the per-statement metrics.
    metrics: crate::metrics::SessionMetrics,
    /// What one server would report about the previous statement when the proxy ran it on
    /// several shards (ROW_COUNT(), SHOW WARNINGS …; see `frontend::diagnostics`).
    diag: Option<Diagnostics>,
    /// What one server would report about the previous statement when it left nothing behind
    /// and its connection went back to the pool (see `Diagnostics::after_released`).
    released: Option<Diagnostics>,
    /// The held connection's diagnostics area holds warnings or an error of this session's
    /// last statements (a statement that uses no table, `SELECT 1`, leaves them in place).
    held_diagnostics: bool,
    /// The statement being run got the held connection back (set by `acquire`).
    reused_held: bool,
    /// The session's `wait_timeout` (see [`idle`]): idle longer, it is disconnected; `None`: no
    /// limit.
    idle_timeout: Option<std::time::Duration>,
    /// What the running statement's paths noted for its audit record (see
    /// [`crate::frontend::audit`]).
    audit_note: crate::frontend::audit::Note,
    /// The client connection is encrypted (upgraded to TLS in the handshake).
    tls: bool,
    /// What the user may do (`frontend::privileges`); `None`: everything, nothing checked.
    rights: Option<Arc<crate::frontend::privileges::Rights>>,
    /// This session counted against its user's `max_connections`.
    user_slot: Option<rights::UserSlot>,
    /// `transactions.transaction_mode`, or the session's `SET shardproxy_transaction_mode`.
    transaction_mode: crate::config::TransactionMode,
    /// The open transaction once it reached a second shard (two-phase commit): its xid and
    /// its XA legs (see [`transaction`]).
    dtx: Option<transaction::Distributed>,
    /// The connection a prepared statement's execute was prepared on, handed to
    /// `run_single` when the session holds another one (its transaction's) that it keeps.
    exec_stash: Option<Held>,
    /// Where the session's reads outside a transaction may go: the user's `read_from`, or
    /// the session's `SET shardproxy_read_from` (see [`replica_reads`]).
    read_from: crate::config::ReadFrom,
    /// The GTID of the session's last write per shard (from the OK packets): its reads there
    /// go to a replica only once that replica has applied it (read-your-writes).
    written: Vec<(String, crate::backend::gtid::GtidPos)>,
    /// The running text read may go to replicas (set by `query` for one statement, read
    /// when its connections are leased).
    reads_on_replicas: bool,
    /// The `XA START` of the leg just opened for the statement being relayed, to be sent in
    /// the same packet as the statement (see `Session::open_xa_leg`).
    xa_start_due: Option<String>,
    /// Committed transactions' XA legs whose `XA COMMIT` still runs behind the client's OK
    /// (see [`finishing`]).
    finishing: Vec<finishing::Finishing>,
}

/// Serves one client connection until it quits, is killed, or the proxy shuts down.
pub async fn serve(proxy: Arc<Proxy>, stream: TcpStream) {
    stream.set_nodelay(true).ok();
    let peer = stream
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let (r, w) = stream.into_split();
    let max = proxy.config().frontend.max_allowed_packet;
    let write_timeout = match proxy.config().frontend.write_timeout_ms {
        0 => None,
        ms => Some(std::time::Duration::from_millis(ms)),
    };
    let mut s = Session {
        id: proxy.next_connection_id(),
        proxy,
        handle: None,
        reader: PacketReader::new(crate::protocol::stream::StreamRead::Plain(r), max),
        writer: {
            let mut w = PacketWriter::new(crate::protocol::stream::StreamWrite::Plain(w));
            w.set_write_timeout(write_timeout);
            w
        },
        peer,
        caps: 0,
        collation: DEFAULT_COLLATION,
        user: String::new(),
        scramble: Vec::new(),
        vars: SessionVars::default(),
        held: None,
        pin: None,
        stmts: HashMap::new(),
        next_stmt: 1,
        last_insert_id: 0,
        status: status::AUTOCOMMIT,
        pending_begin: None,
        allow_scatter_writes: false,
        held_why_on_loan: None,
        metrics: Default::default(),
        diag: None,
        released: None,
        held_diagnostics: false,
        reused_held: false,
        idle_timeout: None,
        audit_note: Default::default(),
        tls: false,
        rights: None,
        user_slot: None,
        transaction_mode: crate::config::TransactionMode::default(),
        dtx: None,
        exec_stash: None,
        read_from: crate::config::ReadFrom::Primary,
        written: Vec::new(),
        reads_on_replicas: false,
        xa_start_due: None,
        finishing: Vec::new(),
    };
    s.transaction_mode = s.proxy.config().transactions.transaction_mode;
    s.proxy
        .counters
        .connections_total
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    match s.handshake_within_timeout().await {
        Ok(true) => {
            tracing::info!(session = s.id, client = %s.peer, user = %s.user, "client connected");
            crate::metrics::record_client_connected();
            let connected = Instant::now();
            s.audit_session("connect", None);
            s.run().await;
            s.audit_session("disconnect", Some(connected));
            crate::metrics::record_client_disconnected();
            tracing::info!(session = s.id, client = %s.peer, "client disconnected");
        }
        Ok(false) => {}
        Err(e) => tracing::debug!(client = %s.peer, "handshake failed: {e}"),
    }
    s.cleanup();
}

impl Session {
    fn deprecate_eof(&self) -> bool {
        self.caps & cap::DEPRECATE_EOF != 0
    }

    async fn send_err(&mut self, seq: u8, e: &ErrInfo) -> std::io::Result<()> {
        crate::metrics::record_error(e.code);
        self.audit_note.code = e.code;
        tracing::info!(session = self.id, code = e.code, sqlstate = %e.sqlstate, message = %e.message, "error sent to client");
        self.proxy
            .counters
            .errors
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.writer.write(seq, &build_err(e)).await?;
        self.writer.flush().await
    }

    /// Answers a statement the planner refused; the session goes on.
    async fn send_refusal(&mut self, r: Rejection) -> std::io::Result<Flow> {
        let e = ErrInfo {
            code: r.code(),
            sqlstate: r.sqlstate().to_string(),
            message: r.message(),
        };
        // No backend saw the statement: SHOW WARNINGS, ROW_COUNT() next answer about the
        // refusal, as a server would about its own error.
        self.diag = Some(Diagnostics::failed(Vec::new(), &e));
        self.send_err(1, &e).await?;
        Ok(Flow::Continue)
    }

    async fn send_ok(&mut self, seq: u8, info: OkInfo) -> std::io::Result<()> {
        self.writer.write(seq, &build_ok(&info, "")).await?;
        self.writer.flush().await
    }

    fn local_ok(&self) -> OkInfo {
        OkInfo {
            status: self.status & !status::MORE_RESULTS_EXISTS,
            ..OkInfo::default()
        }
    }

    async fn run(&mut self) {
        let handle = self.handle.clone().expect("registered after login");
        let mut shutdown = self.proxy.shutdown.subscribe();
        if *shutdown.borrow_and_update() {
            return;
        }
        // Made once for the whole session, not per command: each of these registers with
        // (and later leaves) a waiter list behind a lock, which would cost every statement.
        // `changed()` also sees a shutdown signalled before its first poll.
        let killed = handle.kill_notify.notified();
        let stopping = shutdown.changed();
        // The idle timer (`wait_timeout`): one for the session, re-armed only when it fires.
        self.idle_timeout = self.login_idle_timeout();
        let mut last_active = tokio::time::Instant::now();
        let idle = tokio::time::sleep_until(last_active + self.idle_timeout.unwrap_or_default());
        tokio::pin!(killed, stopping, idle);
        loop {
            if handle.is_killed() {
                break;
            }
            let timeout = self.idle_timeout;
            let read = {
                let read = self.reader.read();
                tokio::pin!(read);
                loop {
                    tokio::select! {
                        biased;
                        r = &mut read => break Some(r),
                        _ = &mut killed => break None,
                        _ = &mut stopping => break None,
                        _ = &mut idle, if timeout.is_some() => {
                            match idle::expired(last_active, timeout.unwrap_or_default()) {
                                Ok(()) => break None,
                                Err(deadline) => idle.as_mut().reset(deadline),
                            }
                        }
                    }
                }
            };
            let Some(read) = read else {
                if timeout.is_some_and(|t| idle::expired(last_active, t).is_ok()) {
                    tracing::info!(session = self.id, client = %self.peer, "client idle longer than wait_timeout: disconnected");
                }
                break;
            };
            let pkt = match read {
                Ok(p) => p,
                Err(PacketError::TooLarge(n, max)) => {
                    let e = ErrInfo::new(
                        err::ER_NET_PACKET_TOO_LARGE,
                        format!(
                            "Got a packet bigger than 'max_allowed_packet' bytes ({n} > {max})"
                        ),
                    );
                    let _ = self.send_err(1, &e).await;
                    break;
                }
                Err(PacketError::OutOfOrder { .. }) => {
                    let e =
                        ErrInfo::new(err::ER_NET_PACKETS_OUT_OF_ORDER, "Got packets out of order");
                    let _ = self.send_err(1, &e).await;
                    break;
                }
                Err(_) => break,
            };
            if pkt.seq != 0 || pkt.payload.is_empty() {
                let e = ErrInfo::new(
                    err::ER_NET_PACKETS_OUT_OF_ORDER,
                    "Got packets out of order (a command must start with sequence id 0)",
                );
                let _ = self.send_err(pkt.next_seq(), &e).await;
                break;
            }
            self.proxy
                .counters
                .queries
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let audited = self
                .proxy
                .audit
                .as_ref()
                .map(|_| (pkt.payload.clone(), Instant::now()));
            // A resharding cutover holds statements here, before they are planned.
            let running = match self.enter_statement().await {
                Ok(r) => r,
                Err(e) => {
                    let _ = self.send_err(1, &e).await;
                    continue;
                }
            };
            let flow = self.dispatch(pkt.payload).await;
            if let Some((payload, started)) = audited {
                self.audit_statement(&payload, started);
            }
            if let Flow::Close = flow {
                break;
            }
            let now = Instant::now();
            last_active = now.into();
            handle.update(|i| {
                i.state = "idle";
                i.statement = None;
                i.since = Some(now);
                i.running_on = None;
                if i.db != self.vars.db {
                    i.db = self.vars.db.clone();
                }
                i.pinned = self.pin.or(match &self.held {
                    Some(h) if h.why == HoldWhy::Transaction => Some("transaction"),
                    _ => None,
                });
            });
            // After the session shows its open transaction (the cutover waits for both).
            drop(running);
        }
    }

    async fn dispatch(&mut self, payload: Bytes) -> Flow {
        // Diagnostics of a multi-shard statement answer only the command right after it.
        let (diag, released) = match payload[0] {
            com::PING | com::STMT_CLOSE | com::STMT_SEND_LONG_DATA => {
                (self.diag.clone(), self.released.clone())
            }
            _ => (self.diag.take(), self.released.take()),
        };
        let r = match payload[0] {
            com::QUIT => return Flow::Close,
            com::QUERY => self.com_query(payload, diag, released).await,
            com::PING => self
                .send_ok(1, self.local_ok())
                .await
                .map(|_| Flow::Continue),
            com::INIT_DB => self.com_init_db(payload).await,
            com::FIELD_LIST => self.forward_default(payload, ResponseKind::FieldList).await,
            com::STATISTICS => {
                self.forward_default(payload, ResponseKind::Statistics)
                    .await
            }
            com::SET_OPTION => self.com_set_option(payload).await,
            com::RESET_CONNECTION | com::CHANGE_USER => {
                let r = if payload[0] == com::CHANGE_USER {
                    self.com_change_user(payload).await
                } else {
                    self.com_reset_connection().await
                };
                // The session's variables start over, its wait_timeout with them.
                self.idle_timeout = self.login_idle_timeout();
                r
            }
            com::PROCESS_KILL => {
                let mut r = Reader::new(&payload[1..]);
                match r.u32() {
                    Some(id) => self.kill(id as u64, false).await,
                    None => self.malformed().await,
                }
            }
            com::STMT_PREPARE => self.stmt_prepare(payload).await,
            com::STMT_EXECUTE => self.stmt_execute(payload, diag).await,
            com::STMT_SEND_LONG_DATA => self.stmt_long_data(payload),
            com::STMT_CLOSE => {
                if payload.len() >= 5 {
                    let id = u32::from_le_bytes([payload[1], payload[2], payload[3], payload[4]]);
                    self.stmts.remove(&id);
                }
                Ok(Flow::Continue)
            }
            com::STMT_RESET => self.stmt_reset(payload).await,
            com::STMT_FETCH => self.stmt_fetch(payload).await,
            other => {
                let e = ErrInfo::new(err::ER_UNKNOWN_COM, format!("Unknown command {other:#04x}"));
                self.send_err(1, &e).await.map(|_| Flow::Continue)
            }
        };
        r.unwrap_or(Flow::Close)
    }

    async fn malformed(&mut self) -> std::io::Result<Flow> {
        let e = ErrInfo::new(err::ER_MALFORMED_PACKET, "Malformed communication packet");
        self.send_err(1, &e).await?;
        Ok(Flow::Close)
    }

    fn cleanup(&mut self) {
        // A distributed transaction's XA legs die with their connections (rolled back by
        // their servers); the held home leg is dropped below with its transaction.
        self.forget_distributed();
        if let Some(h) = self.held.take() {
            if h.why == HoldWhy::Sticky && h.lease.conn.status & status::IN_TRANS == 0 {
                h.lease.pool.clone().put(h.lease);
            }
        }
        self.proxy.registry.remove(self.id);
    }
}

/// The statement text of commands that have none (COM_FIELD_LIST, COM_STMT_FETCH …).
fn no_text() -> Arc<str> {
    static EMPTY: std::sync::OnceLock<Arc<str>> = std::sync::OnceLock::new();
    EMPTY.get_or_init(|| Arc::from("")).clone()
}
