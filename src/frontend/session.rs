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

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use bytes::{BufMut, Bytes, BytesMut};
use rand::RngCore;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

use super::classify::{classify, Classified, Kind};
use super::diagnostics::{self, Condition, Diagnostics, FoundRows};
use super::registry::SessionHandle;
use crate::backend::conn::{BackendConn, BackendError, QueryResult};
use crate::backend::kill::kill_backend;
use crate::backend::pool::Lease;
use crate::plan::spec::MergeSpec;
use crate::plan::{self, merge, MultiKind, Plan, PlanContext, PreparedPlan, ShardSql};
use crate::protocol::auth;
use crate::protocol::buf::Reader;
use crate::protocol::constants::{cap, com, err, status, DEFAULT_COLLATION};
use crate::protocol::handshake::{auth_switch_request, ChangeUser, Greeting, HandshakeResponse};
use crate::protocol::packet::{PacketError, PacketReader, PacketWriter};
use crate::protocol::packets::{
    build_command, build_eof, build_err, build_ok, build_terminator, ErrInfo, OkInfo,
};
use crate::protocol::response::{Outcome, ResponseKind, ResponseTracker, Step};
use crate::protocol::resultset::{encode_text_row, ResultSet};
use crate::proxy::Proxy;
use crate::ring::KeyValue;
use crate::session_state::SessionVars;

mod own_answers;
use own_answers::{failed_diagnostics, shard_warnings};

/// Why the session keeps a backend connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HoldWhy {
    Sticky,
    Transaction,
    Pinned,
}

struct Held {
    shard: String,
    lease: Lease,
    why: HoldWhy,
}

/// A statement the client prepared, remembered so it can be prepared lazily on whichever
/// backend connection executes it.
struct ClientStmt {
    sql: Bytes,
    /// The same text, decoded once for logs, SHOW SESSIONS and text fallbacks.
    text: Arc<str>,
    /// The statement's classification, computed once at prepare time.
    class: Classified,
    /// Its plan, computed once; bound to parameter values at each execute.
    plan: PreparedPlan,
    shard: String,
    params: u16,
    /// Parameter types from the last execute that sent them (2 bytes each).
    param_types: Option<Bytes>,
    /// COM_STMT_SEND_LONG_DATA chunks by parameter, sent before the next execute.
    long_data: Vec<(u16, Bytes)>,
}

/// What a relay failure means for the session.
enum RelayError {
    /// The backend connection is unusable; the client has been told (or will be).
    Backend(BackendError),
    /// The client went away.
    Client,
}

/// Whether the session goes on after a command.
enum Flow {
    Continue,
    Close,
}

type ClientReader = PacketReader<OwnedReadHalf>;
type ClientWriter = PacketWriter<OwnedWriteHalf>;

pub struct Session {
    proxy: Arc<Proxy>,
    id: u32,
    handle: Option<Arc<SessionHandle>>,
    reader: ClientReader,
    writer: ClientWriter,
    peer: String,
    caps: u32,
    collation: u8,
    user: String,
    scramble: Vec<u8>,
    vars: SessionVars,
    held: Option<Held>,
    pin: Option<&'static str>,
    stmts: HashMap<u32, ClientStmt>,
    next_stmt: u32,
    last_insert_id: u64,
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
}

/// The session setting that allows UPDATE/DELETE without a shard key.
const SCATTER_WRITES_SETTING: &str = "shardproxy_allow_scatter_writes";

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
        reader: PacketReader::new(r, max),
        writer: {
            let mut w = PacketWriter::new(w);
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
    };
    s.proxy
        .counters
        .connections_total
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    match s.handshake().await {
        Ok(true) => {
            tracing::info!(session = s.id, client = %s.peer, user = %s.user, "client connected");
            crate::metrics::record_client_connected();
            s.run().await;
            crate::metrics::record_client_disconnected();
            tracing::info!(session = s.id, client = %s.peer, "client disconnected");
        }
        Ok(false) => {}
        Err(e) => tracing::debug!(client = %s.peer, "handshake failed: {e}"),
    }
    s.cleanup();
}

fn random_scramble() -> Vec<u8> {
    // Printable bytes without NUL, as servers send them.
    let mut b = [0u8; 20];
    rand::thread_rng().fill_bytes(&mut b);
    b.iter().map(|x| 0x21 + (x % 0x5e)).collect()
}

impl Session {
    fn deprecate_eof(&self) -> bool {
        self.caps & cap::DEPRECATE_EOF != 0
    }

    async fn send_err(&mut self, seq: u8, e: &ErrInfo) -> std::io::Result<()> {
        crate::metrics::record_error(e.code);
        tracing::info!(session = self.id, code = e.code, sqlstate = %e.sqlstate, message = %e.message, "error sent to client");
        self.proxy
            .counters
            .errors
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.writer.write(seq, &build_err(e)).await?;
        self.writer.flush().await
    }

    /// Answers a statement the planner refused; the session goes on.
    async fn send_refusal(
        &mut self,
        code: u16,
        sqlstate: String,
        message: String,
    ) -> std::io::Result<Flow> {
        let e = ErrInfo {
            code,
            sqlstate,
            message,
        };
        // No backend saw the statement: SHOW WARNINGS, ROW_COUNT() next answer about the
        // refusal, as a server would about its own error.
        self.diag = Some(failed_diagnostics(Vec::new(), &e));
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

    // ----- connection phase -----

    /// Greets, authenticates, checks the initial database. `Ok(false)`: refused (the client
    /// has been told why).
    async fn handshake(&mut self) -> Result<bool, PacketError> {
        let config = self.proxy.config();
        if self.proxy.registry.len() >= config.frontend.max_connections {
            let e = ErrInfo::new(err::ER_CON_COUNT, "Too many connections");
            self.send_err(0, &e).await?;
            return Ok(false);
        }
        self.scramble = random_scramble();
        let plugin = config.frontend.auth_plugin.clone();
        let greeting = Greeting {
            server_version: self.proxy.server_version.clone(),
            connection_id: self.id,
            scramble: self.scramble.clone(),
            capabilities: cap::PROXY_OFFERS,
            collation: DEFAULT_COLLATION,
            status: status::AUTOCOMMIT,
            auth_plugin: plugin.clone(),
        };
        self.writer.write(0, &greeting.encode()).await?;
        self.writer.flush().await?;
        let pkt = self.reader.read().await?;
        let Some(resp) = HandshakeResponse::parse(&pkt.payload) else {
            let e = ErrInfo::new((1043, "08S01"), "Bad handshake");
            self.send_err(pkt.next_seq(), &e).await?;
            return Ok(false);
        };
        if resp.capabilities & cap::PROTOCOL_41 == 0 || resp.capabilities & cap::SSL != 0 {
            let e = ErrInfo::new(
                (1043, "08S01"),
                "Bad handshake: the proxy needs CLIENT_PROTOCOL_41 and does not offer TLS yet",
            );
            self.send_err(pkt.next_seq(), &e).await?;
            return Ok(false);
        }
        self.caps = resp.capabilities & cap::PROXY_OFFERS;
        self.collation = if resp.collation == 0 {
            DEFAULT_COLLATION
        } else {
            resp.collation
        };
        self.user = resp.user.clone();
        let client_plugin = resp
            .auth_plugin
            .clone()
            .unwrap_or_else(|| auth::NATIVE.into());
        let mut seq = pkt.next_seq();
        let ok = self
            .authenticate(
                &resp.user,
                &client_plugin,
                resp.auth_response.clone(),
                &plugin,
                &mut seq,
            )
            .await?;
        if !ok {
            let e = ErrInfo::new(
                err::ER_ACCESS_DENIED,
                format!(
                    "Access denied for user '{}'@'{}' (using password: {})",
                    resp.user,
                    self.peer.split(':').next().unwrap_or(""),
                    if resp.auth_response.is_empty() {
                        "NO"
                    } else {
                        "YES"
                    }
                ),
            );
            self.send_err(seq, &e).await?;
            return Ok(false);
        }
        self.handle = Some(
            self.proxy
                .registry
                .register(self.id, &self.user, &self.peer),
        );
        if let Some(db) = resp.database.filter(|d| !d.is_empty()) {
            if let Err(e) = self.check_database(&db).await {
                self.send_err(seq, &e).await?;
                return Ok(false);
            }
            self.vars.db = Some(db);
        }
        self.send_ok(seq, self.local_ok()).await?;
        Ok(true)
    }

    /// Runs an authentication exchange; `seq` is the next sequence id and is advanced.
    async fn authenticate(
        &mut self,
        user: &str,
        client_plugin: &str,
        mut answer: Vec<u8>,
        server_plugin: &str,
        seq: &mut u8,
    ) -> Result<bool, PacketError> {
        let Some(auth) = self.proxy.user(user) else {
            return Ok(false);
        };
        let mut plugin = client_plugin.to_string();
        if plugin != auth::NATIVE && plugin != auth::CACHING_SHA2 {
            // Ask the client to switch to a plugin we speak, with a fresh scramble.
            self.scramble = random_scramble();
            plugin = server_plugin.to_string();
            *seq = self
                .writer
                .write(*seq, &auth_switch_request(&plugin, &self.scramble))
                .await?;
            self.writer.flush().await?;
            let p = self.reader.read().await?;
            *seq = p.next_seq();
            answer = p.payload.to_vec();
        }
        if plugin == auth::NATIVE {
            return Ok(auth::native_verify(
                auth.native.as_ref(),
                &self.scramble,
                &answer,
            ));
        }
        // caching_sha2_password.
        if answer.is_empty() || answer == [0] {
            return Ok(auth.native.is_none());
        }
        let cached = *auth.sha2.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(stage2) = cached {
            if !auth::sha2_verify(&stage2, &self.scramble, &answer) {
                return Ok(false);
            }
            *seq = self.writer.write(*seq, &[0x01, 0x03]).await?;
            return Ok(true);
        }
        // Full authentication: the client needs our RSA public key (no TLS here).
        *seq = self.writer.write(*seq, &[0x01, 0x04]).await?;
        self.writer.flush().await?;
        let mut p = self.reader.read().await?;
        *seq = p.next_seq();
        if p.payload.as_ref() == [0x02] {
            let pem = match self.proxy.rsa.public_pem() {
                Ok(p) => p,
                Err(e) => {
                    tracing::error!("RSA key unavailable: {e}");
                    return Ok(false);
                }
            };
            let mut more = vec![0x01];
            more.extend_from_slice(pem.as_bytes());
            *seq = self.writer.write(*seq, &more).await?;
            self.writer.flush().await?;
            p = self.reader.read().await?;
            *seq = p.next_seq();
        }
        let Ok(plain) = self.proxy.rsa.decrypt(&p.payload) else {
            return Ok(false);
        };
        let mut password = auth::xor_with_scramble(&plain, &self.scramble);
        if password.last() == Some(&0) {
            password.pop();
        }
        let ok = match &auth.native {
            Some(stage2) => &auth::native_stage2(&password) == stage2,
            None => password.is_empty(),
        };
        if ok {
            *auth.sha2.lock().unwrap_or_else(|e| e.into_inner()) =
                Some(auth::sha2_stage2(&password));
        }
        Ok(ok)
    }

    /// Whether `db` exists (asked of the default shard), as a server checks at connect.
    async fn check_database(&mut self, db: &str) -> Result<(), ErrInfo> {
        let shard = self.proxy.config().sharding.default_shard.clone();
        let mut lease = self.fresh_lease(&shard).await?;
        match lease.conn.init_db(db).await {
            Ok(()) => {
                lease.conn.vars.db = Some(db.to_string());
                lease.pool.clone().put(lease);
                Ok(())
            }
            Err(BackendError::Server(e)) => {
                lease.pool.clone().put(lease);
                Err(e)
            }
            Err(e) => Err(e.to_err_info()),
        }
    }

    // ----- command phase -----

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
        tokio::pin!(killed, stopping);
        loop {
            if handle.is_killed() {
                break;
            }
            let read = tokio::select! {
                r = self.reader.read() => r,
                _ = &mut killed => break,
                _ = &mut stopping => break,
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
            match self.dispatch(pkt.payload).await {
                Flow::Continue => {}
                Flow::Close => break,
            }
            handle.update(|i| {
                i.state = "idle";
                i.statement = None;
                i.since = Some(Instant::now());
                i.running_on = None;
                if i.db != self.vars.db {
                    i.db = self.vars.db.clone();
                }
                i.pinned = self.pin.or(match &self.held {
                    Some(h) if h.why == HoldWhy::Transaction => Some("transaction"),
                    _ => None,
                });
            });
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
            com::RESET_CONNECTION => self.com_reset_connection().await,
            com::CHANGE_USER => self.com_change_user(payload).await,
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

    /// Plans a text statement. Statements that name no sharded or reference table may run on
    /// any shard: they go where the session already holds a connection (its transaction, its
    /// pinned state, its last statement's diagnostics), else to the default shard.
    fn plan_text(&self, sql: &str) -> Plan {
        let rules = self.proxy.rules();
        let ctx = PlanContext {
            rules: &rules,
            current_db: self.vars.db.as_deref(),
            allow_scatter_writes: self.allow_scatter_writes,
        };
        let plan = plan::plan(sql, &ctx);
        self.prefer_held(plan, sql)
    }

    /// A statement that reads no table at all (`SELECT @@x`, `SET …`, `SHOW WARNINGS`) runs
    /// where the session already holds a connection; one on an unsharded table still goes to
    /// the default shard, where the table is.
    fn prefer_held(&self, plan: Plan, sql: &str) -> Plan {
        match (plan, &self.held) {
            (Plan::Single { reason, .. }, Some(h))
                if (reason == plan::REASON_NO_SHARDED_TABLE && names_no_table(sql))
                    || reason.starts_with(plan::REASON_REFERENCE_ONLY) =>
            {
                Plan::Single {
                    shard: h.shard.clone(),
                    reason: format!("{reason}; the session's connection is on this shard"),
                }
            }
            (p, _) => p,
        }
    }

    /// A text statement. `diag`, `released`: what the session knows about the previous
    /// statement, for the statements that ask about it.
    async fn com_query(
        &mut self,
        payload: Bytes,
        diag: Option<Diagnostics>,
        released: Option<Diagnostics>,
    ) -> std::io::Result<Flow> {
        let sql = String::from_utf8_lossy(&payload[1..]).into_owned();
        let c = classify(&sql);
        if c.needs_previous {
            let d = diag.or_else(|| released.filter(|_| self.held.is_none()));
            if let Some(d) = d {
                return self.answer_from_diagnostics(&sql, d).await;
            }
        }
        match &c.kind {
            Kind::Kill { query_only, id } => return self.kill(*id, *query_only).await,
            Kind::Preview(stmt) => {
                let stmt = stmt.clone();
                return self.preview(&stmt).await;
            }
            Kind::Begin => return self.begin(payload, &sql, &c).await,
            Kind::Commit | Kind::Rollback => return self.end_transaction(payload, &sql, &c).await,
            Kind::SetSession { vars, names: None }
                if vars.len() == 1 && vars[0].0 == SCATTER_WRITES_SETTING =>
            {
                let value = vars[0]
                    .1
                    .rsplit('=')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase();
                self.allow_scatter_writes = matches!(value.as_str(), "1" | "on" | "true");
                self.send_ok(1, self.local_ok()).await?;
                return Ok(Flow::Continue);
            }
            _ => {}
        }
        // CONNECTION_ID() and @@socket are the proxy's to answer (see frontend::rewrite).
        let (sql, payload) = match super::rewrite::proxy_values(&sql, self.id) {
            Some(rewritten) => {
                let p = build_command(com::QUERY, rewritten.as_bytes());
                (rewritten, p)
            }
            None => (sql, payload),
        };
        match self.plan_text(&sql) {
            Plan::Single { shard, reason } => {
                // A read that any shard answers (no table, or reference tables only) does not
                // decide where a held-back transaction runs.
                let floating = c.kind == Kind::Read
                    && self.held.is_none()
                    && ((reason == plan::REASON_NO_SHARDED_TABLE && names_no_table(&sql))
                        || reason.starts_with(plan::REASON_REFERENCE_ONLY));
                let pending = if floating {
                    self.pending_begin.take()
                } else {
                    None
                };
                let text: Arc<str> = Arc::from(sql);
                let r = self
                    .run_single(&shard, payload, &text, &c, ResponseKind::Query)
                    .await;
                if pending.is_some() {
                    self.pending_begin = pending;
                }
                r
            }
            Plan::Scatter { targets, merge } => self.run_scatter(targets, merge, None).await,
            Plan::Multi { targets, kind } => self.run_multi(targets, kind, None).await,
            Plan::Sequence(s) if s.placeholder_slot => {
                // What MariaDB answers for a `?` outside a prepared statement.
                let e = ErrInfo::new(
                    (1064, "42000"),
                    "You have an error in your SQL syntax: '?' outside a prepared statement",
                );
                self.send_err(1, &e).await?;
                Ok(Flow::Continue)
            }
            Plan::Sequence(s) => self.run_sequence(s).await,
            Plan::Reject {
                code,
                sqlstate,
                message,
            } => {
                if message.contains(plan::insert_split::NO_COLUMN_LIST) {
                    if let Some(spelt_out) = self.fill_column_list(&sql).await {
                        // The same statement with its columns named: planned as if sent so.
                        let p = build_command(com::QUERY, spelt_out.as_bytes());
                        return Box::pin(self.com_query(p, None, None)).await;
                    }
                }
                self.send_refusal(code, sqlstate, message).await
            }
        }
    }

    /// `INSERT INTO t VALUES …` into a sharded table, with the table's columns listed after
    /// its name (read from the default shard: `frontend::column_list`); `None` when the
    /// statement is not of that form or the columns cannot be read.
    async fn fill_column_list(&mut self, sql: &str) -> Option<String> {
        let slot = super::column_list::slot(sql)?;
        let schema = slot.schema.clone().or_else(|| self.vars.db.clone())?;
        let shard = self.proxy.config().sharding.default_shard.clone();
        let mut lease = self.fresh_lease(&shard).await.ok()?;
        let query = super::column_list::columns_query(&schema, &slot.table);
        let columns: Vec<String> = match lease.conn.query(&query).await {
            Ok(QueryResult::Rows(rs)) => rs
                .rows
                .iter()
                .filter_map(|r| r.first().cloned().flatten())
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .collect(),
            // A failed connection is dropped, not pooled.
            _ => return None,
        };
        lease.pool.clone().put(lease);
        if columns.is_empty() {
            return None;
        }
        Some(super::column_list::splice(sql, &slot, &columns))
    }

    /// BEGIN / START TRANSACTION: inside a transaction it goes to its connection (which
    /// commits implicitly, as on one server); otherwise it is held back until the first
    /// statement that picks a shard, and sent there first.
    async fn begin(&mut self, payload: Bytes, sql: &str, c: &Classified) -> std::io::Result<Flow> {
        if let Some(h) = &self.held {
            if h.why == HoldWhy::Transaction || h.why == HoldWhy::Pinned {
                let shard = h.shard.clone();
                return self
                    .run_single(&shard, payload, &Arc::from(sql), c, ResponseKind::Query)
                    .await;
            }
        }
        self.pending_begin = Some(sql.to_string());
        self.status |= status::IN_TRANS;
        self.send_ok(1, self.local_ok()).await?;
        Ok(Flow::Continue)
    }

    /// COMMIT / ROLLBACK: to the transaction's connection; answered by the proxy when no
    /// statement ran since BEGIN (nothing to commit).
    async fn end_transaction(
        &mut self,
        payload: Bytes,
        sql: &str,
        c: &Classified,
    ) -> std::io::Result<Flow> {
        self.pending_begin = None;
        if let Some(h) = &self.held {
            if h.lease.conn.status & status::IN_TRANS != 0 || h.why == HoldWhy::Pinned {
                let shard = h.shard.clone();
                return self
                    .run_single(&shard, payload, &Arc::from(sql), c, ResponseKind::Query)
                    .await;
            }
        }
        self.status &= !status::IN_TRANS;
        self.send_ok(1, self.local_ok()).await?;
        Ok(Flow::Continue)
    }

    /// Runs a prepared statement that spans shards as text SQL with its values in place, and
    /// answers in the binary protocol.
    async fn execute_as_text(
        &mut self,
        sql: &str,
        values: &[crate::protocol::binary::ParamValue],
    ) -> std::io::Result<Flow> {
        let backslash = !self
            .vars
            .vars
            .get("sql_mode")
            .is_some_and(|v| v.to_ascii_uppercase().contains("NO_BACKSLASH_ESCAPES"));
        let literals: Option<Vec<String>> =
            values.iter().map(|v| v.to_sql_literal(backslash)).collect();
        let text = literals.and_then(|l| crate::protocol::binary::interpolate(sql, &l));
        let Some(text) = text else {
            let e = ErrInfo::new(
                err::ER_NOT_SUPPORTED_YET,
                "a prepared statement spanning shards cannot use long data or non-finite values",
            );
            self.send_err(1, &e).await?;
            return Ok(Flow::Continue);
        };
        match self.plan_text(&text) {
            Plan::Scatter { targets, merge } => self.run_scatter(targets, merge, Some(())).await,
            Plan::Multi { targets, kind } => self.run_multi(targets, kind, None).await,
            // An OK packet is the same in the binary protocol.
            Plan::Sequence(s) => self.run_sequence(s).await,
            Plan::Single { shard, .. } => {
                let target = vec![ShardSql {
                    shard,
                    sql: text.clone(),
                }];
                if classify(&text).kind == Kind::Read {
                    let spec = MergeSpec {
                        visible_columns: plan::ALL_COLUMNS,
                        ..MergeSpec::default()
                    };
                    self.run_scatter(target, spec, Some(())).await
                } else {
                    self.run_multi(target, MultiKind::Write, None).await
                }
            }
            Plan::Reject {
                code,
                sqlstate,
                message,
            } => self.send_refusal(code, sqlstate, message).await,
        }
    }

    /// Sends a held-back BEGIN on the connection that will run the transaction.
    async fn start_pending_transaction(&mut self, lease: &mut Lease) -> Result<(), ErrInfo> {
        if let Some(begin) = self.pending_begin.take() {
            if lease.conn.status & status::IN_TRANS == 0 {
                if let Err(e) = lease.conn.query(&begin).await {
                    return Err(e.to_err_info());
                }
            }
        }
        Ok(())
    }

    /// The shard bound by an open (or pending) transaction, if any.
    fn transaction_shard(&self) -> Option<&str> {
        match &self.held {
            Some(h)
                if h.why == HoldWhy::Transaction || h.lease.conn.status & status::IN_TRANS != 0 =>
            {
                Some(h.shard.as_str())
            }
            _ => None,
        }
    }

    /// Takes a connection for one leg of a multi-shard statement: the held one if it is on
    /// that shard (so a transaction sees its own changes), else a pooled one.
    async fn leg_lease(&mut self, shard: &str) -> Result<(Lease, bool), ErrInfo> {
        if self.held.as_ref().is_some_and(|h| h.shard == shard) {
            let h = self.held.take().expect("checked");
            self.held_why_on_loan = Some(h.why);
            return Ok((h.lease, true));
        }
        Ok((self.fresh_lease(shard).await?, false))
    }

    /// Gives back the legs' connections: the held one to `held`, the others to their pools.
    fn return_legs(&mut self, legs: Vec<(String, Lease, bool)>) {
        for (shard, lease, was_held) in legs {
            if was_held {
                let why = self.held_why_on_loan.take().unwrap_or(HoldWhy::Sticky);
                self.held = Some(Held { shard, lease, why });
            } else {
                lease.pool.clone().put(lease);
            }
        }
    }

    /// Runs a scatter read: each shard's SQL in parallel, answers merged exactly, sent as one
    /// result set (binary rows when answering a prepared statement).
    async fn run_scatter(
        &mut self,
        targets: Vec<ShardSql>,
        merge_spec: MergeSpec,
        binary: Option<()>,
    ) -> std::io::Result<Flow> {
        let mut legs = Vec::with_capacity(targets.len());
        for t in &targets {
            match self.leg_lease(&t.shard).await {
                Ok((l, h)) => legs.push((t.shard.clone(), l, h)),
                Err(e) => {
                    self.return_legs(legs);
                    self.send_err(1, &e).await?;
                    return Ok(Flow::Continue);
                }
            }
        }
        let runs = legs
            .into_iter()
            .zip(targets.iter())
            .map(|((shard, mut lease, held), t)| {
                let sql = t.sql.clone();
                async move {
                    let r = lease.conn.query(&sql).await;
                    let warnings = match &r {
                        Ok(QueryResult::Rows(rs)) if rs.warnings > 0 => {
                            shard_warnings(&mut lease.conn).await
                        }
                        _ => Vec::new(),
                    };
                    (shard, lease, held, r, warnings)
                }
            });
        let started = Instant::now();
        let results = futures::future::join_all(runs).await;
        self.log_if_slow(
            started,
            &targets,
            &format!("scatter, {}", merge_summary(&merge_spec)),
        );
        let mut inputs = Vec::with_capacity(results.len());
        let mut legs = Vec::new();
        let mut failure: Option<ErrInfo> = None;
        let mut conditions = Vec::new();
        let mut warning_count = 0u64;
        // The first shard's error as the server worded it (what SHOW WARNINGS lists).
        let mut server_error: Option<ErrInfo> = None;
        for (shard, lease, held, r, warnings) in results {
            conditions.extend(warnings);
            if let Ok(QueryResult::Rows(rs)) = &r {
                warning_count += u64::from(rs.warnings);
            }
            lease
                .pool
                .stats
                .queries
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            match r {
                Ok(QueryResult::Rows(rs)) => inputs.push(rs),
                Ok(QueryResult::Ok(_)) => {
                    failure.get_or_insert_with(|| {
                        ErrInfo::new(
                            err::ER_NOT_SUPPORTED_YET,
                            format!("shard {shard} returned no result set"),
                        )
                    });
                }
                Err(BackendError::Server(e)) => {
                    if failure.is_none() {
                        server_error = Some(e.clone());
                    }
                    failure.get_or_insert_with(|| ErrInfo {
                        message: format!("{} (on shard {shard})", e.message),
                        ..e
                    });
                }
                Err(e) => {
                    failure.get_or_insert_with(|| e.to_err_info());
                    if held {
                        self.held_why_on_loan = None;
                    }
                    continue; // the connection is gone
                }
            }
            legs.push((shard, lease, held));
        }
        self.return_legs(legs);
        if let Some(e) = failure {
            self.diag = Some(failed_diagnostics(
                conditions,
                server_error.as_ref().unwrap_or(&e),
            ));
            self.send_err(1, &e).await?;
            return Ok(Flow::Continue);
        }
        // SQL_CALC_FOUND_ROWS would make FOUND_ROWS() count rows past the LIMIT on every
        // shard: not tracked, so FOUND_ROWS() is refused after it.
        let calc_found_rows = targets
            .first()
            .is_some_and(|t| t.sql.to_ascii_uppercase().contains("SQL_CALC_FOUND_ROWS"));
        match merge::merge(&merge_spec, inputs) {
            Ok(rs) => {
                self.diag = Some(Diagnostics {
                    row_count: -1,
                    found_rows: if calc_found_rows {
                        FoundRows::Unknown
                    } else {
                        FoundRows::Known(rs.rows.len() as u64)
                    },
                    conditions,
                    warning_count,
                });
                if binary.is_some() {
                    self.send_binary_result_set(&rs).await?;
                } else {
                    self.send_result_set(&rs).await?;
                }
            }
            Err(e) => {
                let e = ErrInfo::new((e.code, e.sqlstate), e.message.clone());
                self.diag = Some(failed_diagnostics(conditions, &e));
                self.send_err(1, &e).await?;
            }
        }
        Ok(Flow::Continue)
    }

    /// The slow-query log of statements that span shards: the plan and every shard's SQL.
    fn log_if_slow(&self, started: Instant, targets: &[ShardSql], plan: &str) {
        let slow = self.proxy.config().frontend.slow_query_ms;
        let elapsed = started.elapsed();
        if slow > 0 && elapsed.as_millis() as u64 >= slow {
            crate::metrics::record_slow_query();
            let shards: Vec<String> = targets
                .iter()
                .map(|t| {
                    format!(
                        "{}: {}",
                        t.shard,
                        t.sql.chars().take(300).collect::<String>()
                    )
                })
                .collect();
            tracing::warn!(session = self.id, elapsed_ms = elapsed.as_millis() as u64, plan, shards = ?shards, "slow query");
        }
    }

    /// Runs a write on several shards. Outside a transaction, a split INSERT or a multi-shard
    /// UPDATE/DELETE runs in a transaction on every shard, committed only when every shard
    /// succeeded; inside one, it must stay on the transaction's shard. `generated_id`: the
    /// first id a sequence generated for this INSERT (the client's LAST_INSERT_ID()).
    ///
    /// The client's OK is composed here, so the session records what one server would report
    /// about it (`self.diag`: summed affected rows, every shard's warnings).
    async fn run_multi(
        &mut self,
        targets: Vec<ShardSql>,
        kind: MultiKind,
        generated_id: Option<u64>,
    ) -> std::io::Result<Flow> {
        let mut shards: Vec<&str> = targets.iter().map(|t| t.shard.as_str()).collect();
        shards.sort_unstable();
        shards.dedup();
        if let Some(first) = self
            .transaction_shard()
            .map(str::to_string)
            .or_else(|| self.pending_begin.as_ref().map(|_| String::new()))
        {
            if shards.len() > 1 || (!first.is_empty() && shards[0] != first) {
                let bound = if first.is_empty() {
                    "a transaction".to_string()
                } else {
                    format!("a transaction on shard '{first}'")
                };
                let e = ErrInfo::new(
                    err::ER_NOT_SUPPORTED_YET,
                    format!(
                        "This write needs shards {} but the session is in {bound}; distributed transactions are not supported: commit first",
                        shards.join(", ")
                    ),
                );
                self.diag = Some(failed_diagnostics(Vec::new(), &e));
                self.send_err(1, &e).await?;
                return Ok(Flow::Continue);
            }
        }
        let atomic = matches!(kind, MultiKind::InsertSplit | MultiKind::Write)
            && shards.len() > 1
            && self.transaction_shard().is_none();
        let mut legs = Vec::with_capacity(targets.len());
        for t in &targets {
            let r = match self.leg_lease(&t.shard).await {
                Ok((mut l, h)) => match self.start_pending_transaction(&mut l).await {
                    Ok(()) => Ok((l, h)),
                    Err(e) => Err(e),
                },
                Err(e) => Err(e),
            };
            match r {
                Ok((l, h)) => legs.push((t.shard.clone(), l, h)),
                Err(e) => {
                    self.return_legs(legs);
                    self.send_err(1, &e).await?;
                    return Ok(Flow::Continue);
                }
            }
        }
        let runs = legs
            .into_iter()
            .zip(targets.iter())
            .map(|((shard, mut lease, held), t)| {
                let sql = t.sql.clone();
                async move {
                    let r = async {
                        if atomic {
                            lease.conn.query("BEGIN").await?;
                        }
                        lease.conn.query(&sql).await
                    }
                    .await;
                    // Before COMMIT, which would clear them.
                    let warnings = match &r {
                        Ok(QueryResult::Ok(ok)) if ok.warnings > 0 => {
                            shard_warnings(&mut lease.conn).await
                        }
                        _ => Vec::new(),
                    };
                    (shard, lease, held, r, warnings)
                }
            });
        let started = Instant::now();
        let results = futures::future::join_all(runs).await;
        self.log_if_slow(started, &targets, &format!("multi-shard write ({kind:?})"));
        let failed = results.iter().any(|r| r.3.is_err());
        let mut total = OkInfo {
            status: self.status & !status::MORE_RESULTS_EXISTS,
            ..OkInfo::default()
        };
        let mut failure: Option<ErrInfo> = None;
        let mut legs = Vec::new();
        let mut conditions = Vec::new();
        let mut warning_count = 0u64;
        // The first shard's error as the server worded it (what SHOW WARNINGS lists).
        let mut server_error: Option<ErrInfo> = None;
        for (i, (shard, mut lease, held, r, warnings)) in results.into_iter().enumerate() {
            conditions.extend(warnings);
            lease
                .pool
                .stats
                .queries
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            match r {
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
                        // The OK's id is also set by an explicit value in an AUTO_INCREMENT
                        // column, which leaves LAST_INSERT_ID() alone: what the connection
                        // holds now is unknown, so the next reader restores it.
                        lease.conn.last_insert_id = u64::MAX;
                    }
                    total.warnings = total.warnings.saturating_add(ok.warnings);
                    warning_count += u64::from(ok.warnings);
                }
                Ok(QueryResult::Rows(_)) => {}
                Err(BackendError::Server(e)) => {
                    if failure.is_none() {
                        server_error = Some(e.clone());
                    }
                    failure.get_or_insert_with(|| ErrInfo {
                        message: format!("{} (on shard {shard})", e.message),
                        ..e
                    });
                }
                Err(e) => {
                    failure.get_or_insert_with(|| ErrInfo {
                        message: format!("{} (on shard {shard})", e.to_err_info().message),
                        ..e.to_err_info()
                    });
                    continue;
                }
            }
            if atomic {
                let end = if failed { "ROLLBACK" } else { "COMMIT" };
                if let Err(e) = lease.conn.query(end).await {
                    failure.get_or_insert_with(|| ErrInfo {
                        message: format!(
                            "{end} failed on shard {shard}: {}",
                            e.to_err_info().message
                        ),
                        ..e.to_err_info()
                    });
                    continue;
                }
            }
            if held {
                legs.push((shard, lease, held));
            } else if lease.conn.status & status::IN_TRANS != 0 {
                // The held-back BEGIN went here: this is now the transaction's connection.
                self.held_why_on_loan = Some(HoldWhy::Transaction);
                legs.push((shard, lease, true));
            } else {
                legs.push((shard, lease, false));
            }
        }
        self.return_legs(legs);
        if let Some(e) = failure {
            self.diag = Some(failed_diagnostics(
                conditions,
                server_error.as_ref().unwrap_or(&e),
            ));
            self.send_err(1, &e).await?;
            return Ok(Flow::Continue);
        }
        if let Some(id) = generated_id {
            // The shards saw explicit keys; the client asked for generated ones.
            total.last_insert_id = id;
        }
        if total.last_insert_id != 0 {
            self.last_insert_id = total.last_insert_id;
        }
        self.diag = Some(Diagnostics {
            row_count: total.affected_rows as i64,
            found_rows: FoundRows::Unknown,
            conditions,
            warning_count,
        });
        total.status = self
            .held
            .as_ref()
            .map_or(self.status, |h| h.lease.conn.status)
            & !status::MORE_RESULTS_EXISTS;
        self.send_ok(1, total).await?;
        Ok(Flow::Continue)
    }

    /// Runs one command on one shard and relays its answer.
    async fn run_single(
        &mut self,
        shard: &str,
        payload: Bytes,
        statement: &Arc<str>,
        c: &Classified,
        kind: ResponseKind,
    ) -> std::io::Result<Flow> {
        let mut lease = match self.acquire(shard, c).await {
            Ok(l) => l,
            Err(e) => {
                self.send_err(1, &e).await?;
                return Ok(Flow::Continue);
            }
        };
        if let Err(e) = self.start_pending_transaction(&mut lease).await {
            self.send_err(1, &e).await?;
            return Ok(Flow::Continue);
        }
        if let Some(h) = &self.handle {
            let (addr, tid) = (lease.pool.addr_shared.clone(), lease.conn.thread_id);
            h.update(|i| {
                i.state = "query";
                i.statement = Some(statement.clone());
                i.since = Some(Instant::now());
                i.running_on = Some((addr, tid));
            });
        }
        let started = Instant::now();
        let result = relay(
            &mut self.reader,
            &mut self.writer,
            &mut lease.conn,
            &payload,
            kind,
        )
        .await;
        // The connection may go back to the pool below: KILL must no longer find it here,
        // or it would hit whichever session uses the connection next.
        if let Some(h) = &self.handle {
            h.update(|i| i.running_on = None);
        }
        let elapsed = started.elapsed();
        let slow = self.proxy.config().frontend.slow_query_ms;
        self.metrics
            .record_query(query_kind(kind, c), shard, elapsed);
        if slow > 0 && elapsed.as_millis() as u64 >= slow {
            crate::metrics::record_slow_query();
            tracing::warn!(session = self.id, shard, plan = "single shard, relayed", elapsed_ms = elapsed.as_millis() as u64, sql = %statement.chars().take(500).collect::<String>(), "slow query");
        }
        match result {
            Ok(outcome) => {
                lease
                    .pool
                    .stats
                    .queries
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if let Some(e) = &outcome.error {
                    // A backend's own error, relayed: logged and counted like the proxy's.
                    crate::metrics::record_error(e.code);
                    tracing::info!(session = self.id, shard, code = e.code, sqlstate = %e.sqlstate, message = %e.message, "error sent to client");
                }
                // Warnings of an earlier statement survive one that uses no table: keep the
                // connection that lists them (checked only then: it costs a tokenization).
                let keep_diagnostics = std::mem::take(&mut self.reused_held)
                    && self.held_diagnostics
                    && outcome.warnings == 0
                    && outcome.error.is_none()
                    && names_no_table(statement);
                let kept =
                    self.after_statement_keeping(shard, lease, c, &outcome, keep_diagnostics);
                if !kept
                    && kind == ResponseKind::Query
                    && outcome.warnings == 0
                    && outcome.error.is_none()
                {
                    self.released = Some(Diagnostics::after_released(
                        outcome.result_set,
                        outcome.affected_rows,
                        outcome.rows,
                    ));
                }
                Ok(Flow::Continue)
            }
            Err(RelayError::Client) => Ok(Flow::Close),
            Err(RelayError::Backend(e)) => {
                lease
                    .pool
                    .stats
                    .errors
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::warn!(session = self.id, shard, "backend failed: {e}");
                if e.to_err_info().code == err::ER_NET_READ_INTERRUPTED.0 {
                    // A timeout: the server may still be working on the statement; stop it
                    // (and its connection, which the proxy no longer reads).
                    let (addr, tid) = (lease.conn.addr.clone(), lease.conn.thread_id);
                    kill_backend(&self.proxy.topology(), &addr, tid, false).await;
                }
                // The connection is gone (and with it any transaction): forget it.
                if self.pin.is_some() {
                    self.pin = None;
                }
                Ok(Flow::Continue)
            }
        }
    }

    /// Takes the connection for a statement on `shard`: the held one, or one from the pool
    /// brought to the session's state.
    async fn acquire(&mut self, shard: &str, c: &Classified) -> Result<Lease, ErrInfo> {
        self.reused_held = false;
        if let Some(h) = self.held.take() {
            if h.shard == shard {
                self.reused_held = true;
                let mut lease = h.lease;
                self.restore_last_insert_id(&mut lease, c).await?;
                return Ok(lease);
            }
            match h.why {
                HoldWhy::Sticky => {
                    self.held_diagnostics = false;
                    h.lease.pool.clone().put(h.lease)
                }
                HoldWhy::Transaction | HoldWhy::Pinned => {
                    let first = h.shard.clone();
                    let why = h.why;
                    self.held = Some(h);
                    // In a transaction, reads elsewhere run on their own (autocommit) connection
                    // but writes would make it distributed. A pinned session may use other
                    // shards unless the statement itself needs the pinned state.
                    let refuse = match why {
                        HoldWhy::Transaction => c.kind != Kind::Read,
                        _ => c.pin.is_some(),
                    };
                    if refuse {
                        return Err(ErrInfo::new(
                            err::ER_NOT_SUPPORTED_YET,
                            format!(
                                "This statement needs shard '{shard}' but the session is bound to shard '{first}' ({}); distributed transactions are not supported: commit first",
                                if why == HoldWhy::Transaction { "open transaction" } else { self.pin.unwrap_or("pinned session") }
                            ),
                        ));
                    }
                }
            }
        }
        let mut lease = self.fresh_lease(shard).await?;
        self.restore_last_insert_id(&mut lease, c).await?;
        Ok(lease)
    }

    async fn restore_last_insert_id(
        &mut self,
        lease: &mut Lease,
        c: &Classified,
    ) -> Result<(), ErrInfo> {
        if c.uses_last_insert_id && lease.conn.last_insert_id != self.last_insert_id {
            let sql = format!("DO LAST_INSERT_ID({})", self.last_insert_id);
            lease.conn.query(&sql).await.map_err(|e| e.to_err_info())?;
            lease.conn.last_insert_id = self.last_insert_id;
        }
        Ok(())
    }

    /// A pooled connection to `shard`'s primary with the session's state applied.
    async fn fresh_lease(&mut self, shard: &str) -> Result<Lease, ErrInfo> {
        let topo = self.proxy.topology();
        let Some(pools) = topo.shard(shard) else {
            return Err(ErrInfo::new(
                err::ER_NOT_SUPPORTED_YET,
                format!("Unknown shard '{shard}'"),
            ));
        };
        let pool = pools.primary.clone();
        let mut lease = pool
            .get(self.caps, self.collation, &self.vars)
            .await
            .map_err(|e| e.to_err_info())?;
        let plan = match lease.conn.vars.sync(&self.vars) {
            Some(p) => p,
            None => {
                // The connection's state cannot be brought back: use a new one.
                lease.conn = Box::new(
                    BackendConn::connect(&pool.connect_params(self.caps, self.collation))
                        .await
                        .map_err(|e| e.to_err_info())?,
                );
                lease.conn.vars.sync(&self.vars).unwrap_or_default()
            }
        };
        if !plan.is_empty() {
            let c = &mut lease.conn;
            let r: Result<(), BackendError> = async {
                if let Some(db) = &plan.init_db {
                    c.init_db(db).await?;
                }
                if let Some(sql) = &plan.set_sql {
                    c.query(sql).await?;
                }
                if let Some(on) = plan.set_option {
                    c.set_option(on).await?;
                }
                Ok(())
            }
            .await;
            if let Err(e) = r {
                return Err(e.to_err_info());
            }
            lease.conn.vars = self.vars.clone();
        }
        Ok(lease)
    }

    /// Records what the statement changed and decides whether to keep its connection.
    fn after_statement(&mut self, shard: &str, lease: Lease, c: &Classified, o: &Outcome) {
        self.after_statement_keeping(shard, lease, c, o, false);
    }

    /// As [`Self::after_statement`]; `keep_diagnostics`: the connection lists warnings the
    /// client may still ask about, so it stays held even if this statement left none.
    /// Returns whether the session now holds this statement's connection.
    fn after_statement_keeping(
        &mut self,
        shard: &str,
        mut lease: Lease,
        c: &Classified,
        o: &Outcome,
        keep_diagnostics: bool,
    ) -> bool {
        if o.error.is_none() {
            match &c.kind {
                Kind::SetSession { vars, names } => {
                    for (k, v) in vars {
                        self.vars.vars.insert(k.clone(), v.clone());
                    }
                    if names.is_some() {
                        self.vars.names = names.clone();
                    }
                }
                Kind::Use(db) => self.vars.db = Some(db.clone()),
                _ => {}
            }
            // Most statements change nothing: no copy then.
            if lease.conn.vars != self.vars {
                lease.conn.vars = self.vars.clone();
            }
        }
        if o.last_insert_id != 0 {
            self.last_insert_id = o.last_insert_id;
            lease.conn.last_insert_id = o.last_insert_id;
        }
        if let Some(p) = c.pin {
            self.pin = self.pin.or(Some(p));
        }
        if o.status & status::CURSOR_EXISTS != 0 {
            self.pin = self.pin.or(Some("open cursor"));
        }
        self.status = o.status;
        let why = if self.pin.is_some() {
            Some(HoldWhy::Pinned)
        } else if lease.conn.status & status::IN_TRANS != 0 {
            Some(HoldWhy::Transaction)
        } else if o.warnings > 0
            || o.error.is_some()
            || o.affected_rows > 0
            || o.last_insert_id != 0
            // A write that changed nothing: ROW_COUNT() next must still answer its 0.
            || (c.kind == Kind::Other && !o.result_set)
            || keep_diagnostics
        {
            Some(HoldWhy::Sticky)
        } else {
            None
        };
        match why {
            // A read on another shard while bound: keep the binding.
            Some(_) if self.held.is_some() => {
                lease.pool.clone().put(lease);
                false
            }
            Some(why) => {
                self.held_diagnostics = o.warnings > 0 || o.error.is_some() || keep_diagnostics;
                self.held = Some(Held {
                    shard: shard.to_string(),
                    lease,
                    why,
                });
                true
            }
            None => {
                if self.held.is_none() {
                    self.held_diagnostics = false;
                }
                lease.pool.clone().put(lease);
                false
            }
        }
    }

    async fn forward_default(
        &mut self,
        payload: Bytes,
        kind: ResponseKind,
    ) -> std::io::Result<Flow> {
        let shard = self.proxy.config().sharding.default_shard.clone();
        let c = classify("");
        let shard = self.held.as_ref().map(|h| h.shard.clone()).unwrap_or(shard);
        self.run_single(&shard, payload, &no_text(), &c, kind).await
    }

    async fn com_init_db(&mut self, payload: Bytes) -> std::io::Result<Flow> {
        let db = String::from_utf8_lossy(&payload[1..]).into_owned();
        let shard = self
            .held
            .as_ref()
            .map(|h| h.shard.clone())
            .unwrap_or_else(|| self.proxy.config().sharding.default_shard.clone());
        let c = Classified {
            kind: Kind::Use(db),
            pin: None,
            needs_previous: false,
            uses_last_insert_id: false,
        };
        self.run_single(&shard, payload, &no_text(), &c, ResponseKind::Query)
            .await
    }

    async fn com_set_option(&mut self, payload: Bytes) -> std::io::Result<Flow> {
        let mut r = Reader::new(&payload[1..]);
        let on = match r.u16() {
            Some(0) => true,
            Some(1) => false,
            _ => {
                let e = ErrInfo::new((1047, "08S01"), "Unknown COM_SET_OPTION value");
                self.send_err(1, &e).await?;
                return Ok(Flow::Continue);
            }
        };
        self.vars.multi_statements = Some(on);
        if on {
            self.caps |= cap::MULTI_STATEMENTS;
        } else {
            self.caps &= !cap::MULTI_STATEMENTS;
        }
        if let Some(h) = self.held.as_mut() {
            if let Err(e) = h.lease.conn.set_option(on).await {
                self.held = None;
                self.send_err(1, &e.to_err_info()).await?;
                return Ok(Flow::Continue);
            }
            h.lease.conn.vars.multi_statements = Some(on);
        }
        self.writer.write(1, &build_eof(self.status, 0)).await?;
        self.writer.flush().await?;
        Ok(Flow::Continue)
    }

    /// Forgets all session state, as a fresh login would have it (user and database stay).
    fn reset_state(&mut self) {
        if let Some(h) = self.held.take() {
            if h.why == HoldWhy::Sticky {
                h.lease.pool.clone().put(h.lease);
            }
            // A held transaction or pinned connection is closed: the server rolls back and
            // drops locks, temporary tables and user variables.
        }
        let db = self.vars.db.take();
        self.vars = SessionVars {
            db,
            ..SessionVars::default()
        };
        self.pin = None;
        self.stmts.clear();
        self.last_insert_id = 0;
        self.status = status::AUTOCOMMIT;
    }

    async fn com_reset_connection(&mut self) -> std::io::Result<Flow> {
        self.reset_state();
        self.send_ok(1, self.local_ok()).await?;
        Ok(Flow::Continue)
    }

    async fn com_change_user(&mut self, payload: Bytes) -> std::io::Result<Flow> {
        let Some(cu) = ChangeUser::parse(&payload[1..], self.caps) else {
            return self.malformed().await;
        };
        self.reset_state();
        let plugin = self.proxy.config().frontend.auth_plugin.clone();
        // Always re-authenticate with a fresh scramble through an auth switch: the client's
        // first answer was computed over the old one.
        self.scramble = random_scramble();
        let mut seq = self
            .writer
            .write(1, &auth_switch_request(&plugin, &self.scramble))
            .await?;
        self.writer.flush().await?;
        let p = match self.reader.read().await {
            Ok(p) => p,
            Err(_) => return Ok(Flow::Close),
        };
        seq = seq.max(p.next_seq());
        let ok = match self
            .authenticate(&cu.user, &plugin, p.payload.to_vec(), &plugin, &mut seq)
            .await
        {
            Ok(ok) => ok,
            Err(_) => return Ok(Flow::Close),
        };
        if !ok {
            let e = ErrInfo::new(
                err::ER_ACCESS_DENIED,
                format!("Access denied for user '{}'", cu.user),
            );
            self.send_err(seq, &e).await?;
            return Ok(Flow::Close);
        }
        self.user = cu.user.clone();
        if let Some(c) = cu.collation {
            if c > 0 && c < 256 {
                self.collation = c as u8;
            }
        }
        self.vars.db = None;
        if let Some(db) = cu.database {
            if let Err(e) = self.check_database(&db).await {
                self.send_err(seq, &e).await?;
                return Ok(Flow::Continue);
            }
            self.vars.db = Some(db);
        }
        self.send_ok(seq, self.local_ok()).await?;
        Ok(Flow::Continue)
    }

    // ----- KILL -----

    async fn kill(&mut self, id: u64, query_only: bool) -> std::io::Result<Flow> {
        let target = u32::try_from(id)
            .ok()
            .and_then(|i| self.proxy.registry.get(i));
        let Some(target) = target else {
            let e = ErrInfo::new(err::ER_NO_SUCH_THREAD, format!("Unknown thread id: {id}"));
            self.send_err(1, &e).await?;
            return Ok(Flow::Continue);
        };
        if target.user != self.user {
            let e = ErrInfo::new((1095, "HY000"), format!("You are not owner of thread {id}"));
            self.send_err(1, &e).await?;
            return Ok(Flow::Continue);
        }
        let running = target.snapshot().running_on;
        if !query_only {
            target.kill();
        }
        if let Some((addr, tid)) = running {
            // Still the same statement? (It may have ended and its connection been reused.)
            let still = target.snapshot().running_on == Some((addr.clone(), tid));
            if target.id != self.id && still {
                kill_backend(&self.proxy.topology(), &addr, tid, query_only).await;
            }
        }
        if !query_only && target.id == self.id {
            return Ok(Flow::Close);
        }
        self.send_ok(1, self.local_ok()).await?;
        Ok(Flow::Continue)
    }

    // ----- proxy-answered statements -----

    async fn preview(&mut self, stmt: &str) -> std::io::Result<Flow> {
        let plan = self.plan_text(stmt);
        let rs = plan::preview::preview_result_set(&plan, stmt);
        self.send_result_set(&rs).await?;
        Ok(Flow::Continue)
    }

    /// Sends a result set the proxy composed (text protocol).
    async fn send_result_set(&mut self, rs: &ResultSet) -> std::io::Result<()> {
        let mut seq = 1u8;
        let mut count = BytesMut::new();
        crate::protocol::buf::put_lenenc_int(&mut count, rs.columns.len() as u64);
        seq = self.writer.write(seq, &count).await?;
        for c in &rs.columns {
            seq = self.writer.write(seq, &c.encode()).await?;
        }
        let status = self.status & !status::MORE_RESULTS_EXISTS;
        if !self.deprecate_eof() {
            seq = self.writer.write(seq, &build_eof(status, 0)).await?;
        }
        for r in &rs.rows {
            seq = self.writer.write(seq, &encode_text_row(r)).await?;
        }
        self.writer
            .write(
                seq,
                &build_terminator(self.deprecate_eof(), status, rs.warnings),
            )
            .await?;
        self.writer.flush().await
    }

    /// Sends a result set the proxy composed as binary rows (the answer to an execute).
    async fn send_binary_result_set(&mut self, rs: &ResultSet) -> std::io::Result<()> {
        let mut rows = Vec::with_capacity(rs.rows.len());
        for r in &rs.rows {
            match crate::protocol::binary::encode_binary_row(&rs.columns, r) {
                Some(b) => rows.push(b),
                None => {
                    let e = ErrInfo::new(
                        (1105, "HY000"),
                        "a merged value does not fit its column type in the binary protocol",
                    );
                    return self.send_err(1, &e).await;
                }
            }
        }
        let mut seq = 1u8;
        let mut count = BytesMut::new();
        crate::protocol::buf::put_lenenc_int(&mut count, rs.columns.len() as u64);
        seq = self.writer.write(seq, &count).await?;
        for c in &rs.columns {
            seq = self.writer.write(seq, &c.encode()).await?;
        }
        let status = self.status & !status::MORE_RESULTS_EXISTS;
        if !self.deprecate_eof() {
            seq = self.writer.write(seq, &build_eof(status, 0)).await?;
        }
        for r in &rows {
            seq = self.writer.write(seq, r).await?;
        }
        self.writer
            .write(
                seq,
                &build_terminator(self.deprecate_eof(), status, rs.warnings),
            )
            .await?;
        self.writer.flush().await
    }

    // ----- prepared statements -----

    async fn stmt_prepare(&mut self, payload: Bytes) -> std::io::Result<Flow> {
        let sql_bytes = payload.slice(1..);
        let sql = String::from_utf8_lossy(&sql_bytes).into_owned();
        // CONNECTION_ID() and @@socket are the proxy's to answer (see frontend::rewrite): the
        // statement is prepared on backends with the proxy's values in place.
        let (sql, sql_bytes, payload) = match super::rewrite::proxy_values(&sql, self.id) {
            Some(rewritten) => {
                let p = build_command(com::STMT_PREPARE, rewritten.as_bytes());
                (rewritten, p.slice(1..), p)
            }
            None => (sql, sql_bytes, payload),
        };
        let c = classify(&sql);
        let prepared_plan = {
            let rules = self.proxy.rules();
            let ctx = PlanContext {
                rules: &rules,
                current_db: self.vars.db.as_deref(),
                allow_scatter_writes: self.allow_scatter_writes,
            };
            plan::plan_prepared(&sql, &ctx)
        };
        self.proxy
            .counters
            .plan_cache_misses
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        crate::metrics::record_plan_cache(false);
        // Where to prepare for the client's metadata: the statement's shard when fixed; for a
        // route that depends on parameters, any shard that has the tables.
        let shard = match &prepared_plan {
            PreparedPlan::Fixed(Plan::Reject {
                code,
                sqlstate,
                message,
            }) => {
                if message.contains(plan::insert_split::NO_COLUMN_LIST) {
                    if let Some(spelt_out) = self.fill_column_list(&sql).await {
                        // Prepared with its columns named: the same parameters, the same
                        // answer shape, and executes place their rows by the key.
                        let p = build_command(com::STMT_PREPARE, spelt_out.as_bytes());
                        return Box::pin(self.stmt_prepare(p)).await;
                    }
                }
                return self
                    .send_refusal(*code, sqlstate.clone(), message.clone())
                    .await;
            }
            PreparedPlan::Fixed(p) => match self.prefer_held(p.clone(), &sql) {
                Plan::Single { shard, .. } => shard,
                other => other
                    .shards()
                    .first()
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| self.proxy.config().sharding.default_shard.clone()),
            },
            // Every shard has the tables: prepare where the session already is, if anywhere.
            PreparedPlan::ByParam { fallback, .. } => match &self.held {
                Some(h) => h.shard.clone(),
                None => fallback
                    .shards()
                    .first()
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| self.proxy.config().sharding.default_shard.clone()),
            },
        };
        // Preparing changes nothing on the server: it may use any shard, even inside a
        // transaction bound elsewhere (the execute is what must stay on that shard).
        let prepare_only = Classified {
            kind: Kind::Read,
            pin: None,
            needs_previous: false,
            uses_last_insert_id: false,
        };
        let mut lease = match self.acquire(&shard, &prepare_only).await {
            Ok(l) => l,
            Err(e) => {
                self.send_err(1, &e).await?;
                return Ok(Flow::Continue);
            }
        };
        let client_id = self.next_stmt;
        let r = relay_prepare(&mut self.writer, &mut lease.conn, &payload, client_id).await;
        match r {
            Ok(outcome) => {
                if let Some((backend_id, cols, params)) = outcome.prepared {
                    self.next_stmt = self.next_stmt.wrapping_add(1).max(1);
                    lease
                        .conn
                        .remember_prepared(
                            sql_bytes.clone(),
                            crate::backend::conn::BackendStmt {
                                id: backend_id,
                                params,
                                columns: cols,
                            },
                        )
                        .await;
                    self.stmts.insert(
                        client_id,
                        ClientStmt {
                            text: Arc::from(sql.as_str()),
                            sql: sql_bytes,
                            class: c.clone(),
                            plan: prepared_plan,
                            shard: shard.clone(),
                            params,
                            param_types: None,
                            long_data: Vec::new(),
                        },
                    );
                }
                let c = Classified {
                    kind: Kind::Read,
                    pin: None,
                    needs_previous: false,
                    uses_last_insert_id: false,
                };
                self.after_statement(
                    &shard,
                    lease,
                    &c,
                    &Outcome {
                        status: self.status,
                        ..outcome
                    },
                );
                Ok(Flow::Continue)
            }
            Err(RelayError::Client) => Ok(Flow::Close),
            Err(RelayError::Backend(e)) => {
                tracing::warn!(session = self.id, "backend failed during prepare: {e}");
                Ok(Flow::Continue)
            }
        }
    }

    fn stmt_long_data(&mut self, payload: Bytes) -> std::io::Result<Flow> {
        if payload.len() < 7 {
            return Ok(Flow::Continue);
        }
        let id = u32::from_le_bytes([payload[1], payload[2], payload[3], payload[4]]);
        let param = u16::from_le_bytes([payload[5], payload[6]]);
        if let Some(s) = self.stmts.get_mut(&id) {
            s.long_data.push((param, payload.slice(7..)));
        }
        Ok(Flow::Continue)
    }

    async fn unknown_stmt(&mut self, id: u32, what: &str) -> std::io::Result<Flow> {
        let e = ErrInfo::new(
            err::ER_UNKNOWN_STMT_HANDLER,
            format!("Unknown prepared statement handler ({id}) given to {what}"),
        );
        self.send_err(1, &e).await?;
        Ok(Flow::Continue)
    }

    async fn stmt_execute(
        &mut self,
        payload: Bytes,
        diag: Option<Diagnostics>,
    ) -> std::io::Result<Flow> {
        if payload.len() < 10 {
            return self.malformed().await;
        }
        let id = u32::from_le_bytes([payload[1], payload[2], payload[3], payload[4]]);
        let Some(stmt) = self.stmts.get_mut(&id) else {
            return self.unknown_stmt(id, "mysqld_stmt_execute").await;
        };
        if diag.is_some() && stmt.class.needs_previous {
            // The proxy answers these by rewriting the text; a prepared statement's answer
            // would need binary rows of the rewritten statement.
            self.diag = diag;
            let e = ErrInfo::new(
                err::ER_NOT_SUPPORTED_YET,
                "shardproxy: a prepared statement asking about the previous statement \
                 (ROW_COUNT(), FOUND_ROWS(), warnings) right after one the proxy ran on several \
                 shards; send it as a text query",
            );
            self.send_err(1, &e).await?;
            return Ok(Flow::Continue);
        }
        let sql = stmt.sql.clone();
        let text = stmt.text.clone();
        let mut shard = stmt.shard.clone();
        let class = stmt.class.clone();
        // Parameter types come only with the first execute: keep them before routing, which
        // may answer this execute without reaching the code below.
        if stmt.params > 0 {
            let bound_at = 10 + (stmt.params as usize).div_ceil(8);
            if payload.get(bound_at) == Some(&1) {
                let end = bound_at + 1 + 2 * stmt.params as usize;
                if payload.len() < end {
                    return self.malformed().await;
                }
                stmt.param_types = Some(payload.slice(bound_at + 1..end));
            }
        }
        self.proxy
            .counters
            .plan_cache_hits
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.metrics.record_plan_cache_hit();
        // Route this execution: fixed single-shard plans need no parameter decoding.
        let needs_params = !matches!(&stmt.plan, PreparedPlan::Fixed(Plan::Single { .. }));
        if needs_params {
            let long_ids: Vec<u16> = stmt.long_data.iter().map(|(p, _)| *p).collect();
            let types = stmt.param_types.clone().unwrap_or_default();
            let Some(values) = crate::protocol::binary::decode_params(
                &payload,
                stmt.params as usize,
                &types,
                &long_ids,
            ) else {
                return self.malformed().await;
            };
            let keys: Vec<Option<KeyValue>> = values.iter().map(param_key).collect();
            let bound = stmt.plan.bind(&keys);
            let bound = self.prefer_held(bound, &text);
            match bound {
                Plan::Single { shard: s, .. } => shard = s,
                Plan::Reject {
                    code,
                    sqlstate,
                    message,
                } => return self.send_refusal(code, sqlstate, message).await,
                Plan::Scatter { .. } | Plan::Multi { .. } | Plan::Sequence(_) => {
                    // Several shards: run it as text with the values in place, then answer
                    // in the binary protocol.
                    return self.execute_as_text(&text, &values).await;
                }
            }
        }
        let stmt = self.stmts.get_mut(&id).expect("looked up above");
        let long_data = std::mem::take(&mut stmt.long_data);
        // Make the packet self-contained: parameter types are sent only on the first execute,
        // but the next one may run on another backend connection.
        let mut body = BytesMut::from(&payload[..]);
        if stmt.params > 0 {
            let nb = (stmt.params as usize).div_ceil(8);
            let bound_at = 10 + nb;
            match body.get(bound_at).copied() {
                Some(1) => {
                    let end = bound_at + 1 + 2 * stmt.params as usize;
                    if body.len() < end {
                        return self.malformed().await;
                    }
                    stmt.param_types = Some(Bytes::copy_from_slice(&body[bound_at + 1..end]));
                }
                Some(0) => {
                    if let Some(types) = &stmt.param_types {
                        let mut b = BytesMut::with_capacity(body.len() + types.len());
                        b.extend_from_slice(&body[..bound_at]);
                        b.put_u8(1);
                        b.extend_from_slice(types);
                        b.extend_from_slice(&body[bound_at + 1..]);
                        body = b;
                    }
                }
                _ => return self.malformed().await,
            }
        }
        let cursor = payload[5] & 0x07 != 0;
        let c = Classified {
            kind: Kind::Other,
            pin: None,
            needs_previous: false,
            uses_last_insert_id: false,
        };
        let mut lease = match self.acquire(&shard, &c).await {
            Ok(l) => l,
            Err(e) => {
                self.send_err(1, &e).await?;
                return Ok(Flow::Continue);
            }
        };
        let prepared = match lease.conn.ensure_prepared(&sql).await {
            Ok(p) => p,
            Err(BackendError::Server(e)) => {
                lease.pool.clone().put(lease);
                self.send_err(1, &e).await?;
                return Ok(Flow::Continue);
            }
            Err(e) => {
                self.send_err(1, &e.to_err_info()).await?;
                return Ok(Flow::Continue);
            }
        };
        for (param, data) in long_data {
            let mut p = BytesMut::with_capacity(data.len() + 7);
            p.put_u8(com::STMT_SEND_LONG_DATA);
            p.put_u32_le(prepared.id);
            p.put_u16_le(param);
            p.extend_from_slice(&data);
            if let Err(e) = lease.conn.send_command(&p).await {
                self.send_err(1, &e.to_err_info()).await?;
                return Ok(Flow::Continue);
            }
        }
        body[1..5].copy_from_slice(&prepared.id.to_le_bytes());
        // A cursor pins through the answer's CURSOR_EXISTS status (see after_statement).
        let _ = cursor;
        let c = class;
        if !self.reused_held {
            // A fresh connection lists nothing of this session's.
            self.held_diagnostics = false;
        }
        self.held = Some(Held {
            shard: shard.clone(),
            lease,
            why: HoldWhy::Sticky,
        });
        // run_single takes the held connection back: the statement runs where it was prepared.
        self.run_single(&shard, body.freeze(), &text, &c, ResponseKind::Execute)
            .await
    }

    async fn stmt_fetch(&mut self, payload: Bytes) -> std::io::Result<Flow> {
        if payload.len() < 9 {
            return self.malformed().await;
        }
        let id = u32::from_le_bytes([payload[1], payload[2], payload[3], payload[4]]);
        let Some(stmt) = self.stmts.get(&id) else {
            return self.unknown_stmt(id, "mysqld_stmt_fetch").await;
        };
        let sql = stmt.sql.clone();
        let Some(h) = self.held.as_ref() else {
            return self.unknown_stmt(id, "mysqld_stmt_fetch").await;
        };
        let Some(backend) = h.lease.conn.prepared.get(&sql).copied() else {
            return self.unknown_stmt(id, "mysqld_stmt_fetch").await;
        };
        let shard = h.shard.clone();
        let mut body = BytesMut::from(&payload[..]);
        body[1..5].copy_from_slice(&backend.id.to_le_bytes());
        let c = classify("");
        self.run_single(&shard, body.freeze(), &no_text(), &c, ResponseKind::Fetch)
            .await
    }

    async fn stmt_reset(&mut self, payload: Bytes) -> std::io::Result<Flow> {
        if payload.len() < 5 {
            return self.malformed().await;
        }
        let id = u32::from_le_bytes([payload[1], payload[2], payload[3], payload[4]]);
        let Some(stmt) = self.stmts.get_mut(&id) else {
            return self.unknown_stmt(id, "mysqld_stmt_reset").await;
        };
        stmt.long_data.clear();
        let sql = stmt.sql.clone();
        if let Some(h) = self.held.as_mut() {
            if let Some(backend) = h.lease.conn.prepared.get(&sql).copied() {
                let mut body = BytesMut::from(&payload[..]);
                body[1..5].copy_from_slice(&backend.id.to_le_bytes());
                let shard = h.shard.clone();
                let c = classify("");
                return self
                    .run_single(&shard, body.freeze(), &no_text(), &c, ResponseKind::Query)
                    .await;
            }
        }
        self.send_ok(1, self.local_ok()).await?;
        Ok(Flow::Continue)
    }

    fn cleanup(&mut self) {
        if let Some(h) = self.held.take() {
            if h.why == HoldWhy::Sticky && h.lease.conn.status & status::IN_TRANS == 0 {
                h.lease.pool.clone().put(h.lease);
            }
        }
        self.proxy.registry.remove(self.id);
    }
}

/// Forwards a command and relays its whole answer, packet by packet, untouched.
async fn relay(
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
                if fed.is_ok() {
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
                    next_seq = client_w
                        .write(pkt.seq, &pkt.payload)
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
async fn relay_prepare(
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

/// The shard key a decoded parameter stands for, if it can be routed exactly.
fn param_key(v: &crate::protocol::binary::ParamValue) -> Option<KeyValue> {
    use crate::protocol::binary::ParamValue as P;
    match v {
        P::Int(i) => Some(KeyValue::from(*i)),
        P::UInt(u) => Some(KeyValue::from(*u)),
        P::Bytes { data, .. } => std::str::from_utf8(data)
            .ok()
            .and_then(KeyValue::from_str_value),
        P::Decimal(d) => KeyValue::from_number_literal(d),
        _ => None,
    }
}

/// The statement text of commands that have none (COM_FIELD_LIST, COM_STMT_FETCH …).
fn no_text() -> Arc<str> {
    static EMPTY: std::sync::OnceLock<Arc<str>> = std::sync::OnceLock::new();
    EMPTY.get_or_init(|| Arc::from("")).clone()
}

/// Whether a statement reads or writes no table (so any connection can answer it).
fn names_no_table(sql: &str) -> bool {
    let tokens = crate::lex::tokenize(sql);
    let first = tokens.first().and_then(|t| t.word()).unwrap_or("");
    match first {
        "SET" | "DO" | "COMMIT" | "ROLLBACK" | "BEGIN" | "START" | "SAVEPOINT" | "RELEASE" => true,
        "SHOW" => matches!(
            tokens.get(1).and_then(|t| t.word()),
            Some("WARNINGS" | "ERRORS" | "COUNT" | "VARIABLES" | "SESSION" | "STATUS")
        ),
        "SELECT" => !tokens.iter().any(|t| t.is_word("FROM")),
        _ => false,
    }
}

/// The metrics label of a statement.
fn query_kind(kind: ResponseKind, c: &Classified) -> &'static str {
    match (kind, &c.kind) {
        (ResponseKind::Execute, _) => "execute",
        (ResponseKind::Prepare, _) => "prepare",
        (_, Kind::Read) => "read",
        (_, Kind::SetSession { .. } | Kind::Use(_)) => "session",
        (_, Kind::Begin | Kind::Commit | Kind::Rollback) => "transaction",
        _ => "write",
    }
}

/// A short description of a merge for logs.
fn merge_summary(m: &MergeSpec) -> String {
    format!(
        "{} group keys, {} aggregates, {} sort keys, offset {}, limit {:?}{}",
        m.group_by.len(),
        m.aggregates.len(),
        m.order_by.len(),
        m.offset,
        m.limit,
        if m.distinct { ", distinct" } else { "" }
    )
}
