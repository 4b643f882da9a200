//! One connection from the proxy to a backend server: login, simple internal queries, and the
//! packet reader/writer the frontend relays through.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use tokio::net::TcpStream;

use crate::protocol::auth;
use crate::protocol::constants::{cap, com};
use crate::protocol::handshake::{Greeting, HandshakeResponse, SslRequest};
use crate::protocol::packet::{Packet, PacketError, PacketReader, PacketWriter};
use crate::protocol::packets::{build_command, parse_err, parse_ok, ErrInfo, OkInfo};
use crate::protocol::response::{ResponseKind, ResponseTracker, Step};
use crate::protocol::resultset::{parse_text_row, ColumnDef, ResultSet};
use crate::protocol::stream::{StreamRead, StreamWrite};
use crate::session_state::SessionVars;

/// Why talking to a backend failed.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The backend answered with an error packet; the connection is still usable.
    #[error("{0}")]
    Server(ErrInfo),
    /// The connection is unusable (network error, timeout, protocol violation).
    #[error("backend {addr}: {reason}")]
    Lost { addr: String, reason: String },
}

impl BackendError {
    /// The MySQL error to give a client for this failure.
    pub fn to_err_info(&self) -> ErrInfo {
        match self {
            BackendError::Server(e) => e.clone(),
            BackendError::Lost { addr, reason } => ErrInfo::new(
                if reason.contains("within") || reason.contains("timed out") {
                    crate::protocol::constants::err::ER_NET_READ_INTERRUPTED
                } else {
                    crate::protocol::constants::err::ER_NET_READ_ERROR
                },
                format!("Backend {addr} unavailable: {reason}"),
            ),
        }
    }
}

/// A statement prepared on this connection.
#[derive(Debug, Clone, Copy)]
pub struct BackendStmt {
    pub id: u32,
    pub params: u16,
    pub columns: u16,
}

/// Login parameters for a backend.
#[derive(Debug, Clone)]
pub struct ConnectParams {
    pub addr: String,
    pub user: String,
    pub password: String,
    /// Client capability bits to mirror (see `cap::RELAY_RELEVANT`).
    pub relay_caps: u32,
    pub collation: u8,
    pub connect_timeout: Duration,
    /// Longest wait for one packet of an answer; `None` waits forever.
    pub read_timeout: Option<Duration>,
    /// TLS to the server (`Err`: its CA file could not be loaded); `None`: clear text.
    pub tls: Option<Result<std::sync::Arc<super::tls::BackendTls>, String>>,
}

/// An open, authenticated backend connection.
pub struct BackendConn {
    pub reader: PacketReader<StreamRead>,
    pub writer: PacketWriter<StreamWrite>,
    pub addr: String,
    /// The backend's own connection id (what `KILL` on the backend needs).
    pub thread_id: u32,
    pub capabilities: u32,
    /// The client capability bits this connection mirrors (its pool key, with `collation`).
    pub relay_caps: u32,
    pub collation: u8,
    pub server_version: String,
    /// `LAST_INSERT_ID()` on this connection as far as the proxy knows.
    pub last_insert_id: u64,
    /// Session state applied on this connection.
    pub vars: SessionVars,
    /// Status flags after the last answer.
    pub status: u16,
    /// Statements prepared here, by SQL text.
    pub prepared: HashMap<Bytes, BackendStmt>,
    /// When this connection last finished an answer (idle connections are checked before
    /// reuse: the server may have closed them).
    pub last_used: std::time::Instant,
    read_timeout: Option<Duration>,
    /// The GTID of the last commit an internal query ([`Self::query`]) reported through
    /// session tracking, until the caller takes it to record it as acknowledged.
    pub last_gtid: Option<crate::protocol::session_track::TrackedGtid>,
}

pub(super) fn lost(addr: &str, reason: impl std::fmt::Display) -> BackendError {
    BackendError::Lost {
        addr: addr.to_string(),
        reason: reason.to_string(),
    }
}

impl BackendConn {
    /// Opens and authenticates a connection within the connect timeout.
    pub async fn connect(p: &ConnectParams) -> Result<BackendConn, BackendError> {
        match tokio::time::timeout(p.connect_timeout, Self::connect_inner(p)).await {
            Ok(r) => r,
            Err(_) => Err(lost(
                &p.addr,
                format!("connect timed out after {:?}", p.connect_timeout),
            )),
        }
    }

    async fn connect_inner(p: &ConnectParams) -> Result<BackendConn, BackendError> {
        let stream = TcpStream::connect(&p.addr)
            .await
            .map_err(|e| lost(&p.addr, format!("cannot connect: {e}")))?;
        stream.set_nodelay(true).ok();
        // Closed with a reset, not a FIN: a connection the proxy drops after a timeout may
        // still hold a statement the server never received (a network cut), and a FIN would
        // leave the kernel retransmitting it, so the server would run it once the network
        // heals, after the client was told it failed (tests/netcut.rs). The proxy sends no
        // COM_QUIT, so the server counts an aborted connection either way.
        stream.set_zero_linger().ok();
        let (r, w) = stream.into_split();
        let mut reader = PacketReader::new(StreamRead::Plain(r), 1 << 30);
        let mut writer = PacketWriter::new(StreamWrite::Plain(w));
        let greet_pkt = reader.read().await.map_err(|e| lost(&p.addr, e))?;
        if greet_pkt.first() == Some(0xFF) {
            let e = parse_err(&greet_pkt.payload)
                .unwrap_or_else(|| ErrInfo::new((2013, "HY000"), "refused"));
            return Err(lost(&p.addr, e));
        }
        let greeting =
            Greeting::parse(&greet_pkt.payload).ok_or_else(|| lost(&p.addr, "bad greeting"))?;
        // Session tracking: commits report their GTID in the OK packet (for failover); the
        // relay cuts the state off before a client sees it.
        let capabilities =
            (cap::BACKEND_BASE | cap::SESSION_TRACK | (p.relay_caps & cap::RELAY_RELEVANT))
                & (greeting.capabilities | cap::LONG_PASSWORD);
        let mut seq = greet_pkt.next_seq();
        let tls = match &p.tls {
            None => false,
            Some(t) => {
                let t = t.as_ref().map_err(|e| lost(&p.addr, e))?;
                seq = Self::start_tls(p, t, &mut reader, &mut writer, &greeting, capabilities, seq)
                    .await?;
                true
            }
        };
        let capabilities = if tls {
            capabilities | cap::SSL
        } else {
            capabilities
        };
        let plugin = if greeting.auth_plugin == auth::CACHING_SHA2 {
            auth::CACHING_SHA2
        } else {
            auth::NATIVE
        };
        let scramble = &greeting.scramble[..greeting.scramble.len().min(20)];
        let resp = HandshakeResponse {
            capabilities,
            max_packet: 1 << 30,
            collation: p.collation,
            user: p.user.clone(),
            auth_response: scramble_for(plugin, p.password.as_bytes(), scramble),
            database: None,
            auth_plugin: Some(plugin.to_string()),
            attrs: None,
        };
        writer
            .write(seq, &resp.encode())
            .await
            .map_err(|e| lost(&p.addr, e))?;
        writer.flush().await.map_err(|e| lost(&p.addr, e))?;
        let mut plugin = plugin.to_string();
        loop {
            let pkt = reader.read().await.map_err(|e| lost(&p.addr, e))?;
            let seq = pkt.next_seq();
            match pkt.first() {
                Some(0x00) => break,
                Some(0xFF) => {
                    let e = parse_err(&pkt.payload)
                        .unwrap_or_else(|| ErrInfo::new((1045, "28000"), "access denied"));
                    return Err(lost(&p.addr, format!("login refused: {e}")));
                }
                Some(0xFE) => {
                    // Auth switch: plugin name, then its scramble.
                    let body = &pkt.payload[1..];
                    let end = body.iter().position(|&b| b == 0).unwrap_or(body.len());
                    plugin = String::from_utf8_lossy(&body[..end]).into_owned();
                    let data = body.get(end + 1..).unwrap_or(&[]);
                    let data = &data[..data.len().min(20)];
                    if plugin != auth::NATIVE && plugin != auth::CACHING_SHA2 {
                        return Err(lost(
                            &p.addr,
                            format!("backend asks for unsupported auth plugin {plugin}"),
                        ));
                    }
                    let answer = scramble_for(&plugin, p.password.as_bytes(), data);
                    writer
                        .write(seq, &answer)
                        .await
                        .map_err(|e| lost(&p.addr, e))?;
                    writer.flush().await.map_err(|e| lost(&p.addr, e))?;
                }
                Some(0x01) if plugin == auth::CACHING_SHA2 => {
                    // 0x01 0x03: fast auth succeeded, an OK follows. 0x01 0x04: full auth,
                    // which needs TLS or the server's RSA key; backends should allow the fast
                    // path (or use mysql_native_password).
                    if pkt.payload.get(1) == Some(&0x04) && tls {
                        // Over TLS the password goes as it is (NUL-terminated).
                        let mut pw = p.password.as_bytes().to_vec();
                        pw.push(0);
                        writer.write(seq, &pw).await.map_err(|e| lost(&p.addr, e))?;
                        writer.flush().await.map_err(|e| lost(&p.addr, e))?;
                    } else if pkt.payload.get(1) == Some(&0x04) {
                        return Err(lost(
                            &p.addr,
                            "backend requires caching_sha2_password full authentication; \
                             use mysql_native_password for the proxy's backend user",
                        ));
                    }
                }
                _ => return Err(lost(&p.addr, "unexpected packet during login")),
            }
        }
        let mut conn = BackendConn {
            reader,
            writer,
            addr: p.addr.clone(),
            thread_id: greeting.connection_id,
            capabilities,
            relay_caps: p.relay_caps & cap::RELAY_RELEVANT,
            last_insert_id: 0,
            collation: p.collation,
            server_version: greeting.server_version,
            vars: SessionVars::default(),
            status: greeting.status,
            prepared: HashMap::new(),
            last_used: std::time::Instant::now(),
            read_timeout: p.read_timeout,
            last_gtid: None,
        };
        if conn.capabilities & cap::SESSION_TRACK != 0 {
            conn.query(crate::protocol::session_track::TRACK_LAST_GTID_SQL)
                .await?;
        }
        Ok(conn)
    }

    /// Asks the server for TLS (an SSL request after its greeting) and runs the TLS handshake,
    /// replacing the clear-text halves; returns the sequence id of the handshake response.
    async fn start_tls(
        p: &ConnectParams,
        t: &super::tls::BackendTls,
        reader: &mut PacketReader<StreamRead>,
        writer: &mut PacketWriter<StreamWrite>,
        greeting: &Greeting,
        capabilities: u32,
        seq: u8,
    ) -> Result<u8, BackendError> {
        if greeting.capabilities & cap::SSL == 0 {
            return Err(lost(
                &p.addr,
                "TLS is configured for this backend but the server does not offer it",
            ));
        }
        let req = SslRequest {
            capabilities: capabilities | cap::SSL,
            max_packet: 1 << 30,
            collation: p.collation,
        };
        let seq = writer
            .write(seq, &req.encode())
            .await
            .map_err(|e| lost(&p.addr, e))?;
        writer.flush().await.map_err(|e| lost(&p.addr, e))?;
        if reader.has_buffered() {
            return Err(lost(&p.addr, "server sent data before the TLS handshake"));
        }
        let r = std::mem::replace(reader.get_mut(), StreamRead::Detached);
        let w = std::mem::replace(writer.get_mut(), StreamWrite::Detached);
        let tcp = crate::protocol::stream::reunite(r, w).map_err(|e| lost(&p.addr, e))?;
        let (r, w) = t
            .connect(&p.addr, tcp)
            .await
            .map_err(|e| lost(&p.addr, format!("{e} (CA file {})", t.ca_path)))?;
        *reader.get_mut() = r;
        *writer.get_mut() = w;
        Ok(seq)
    }

    pub fn deprecate_eof(&self) -> bool {
        self.capabilities & cap::DEPRECATE_EOF != 0
    }

    /// Reads the next packet of an answer, within the read timeout.
    pub async fn read(&mut self) -> Result<Packet, BackendError> {
        // Already here: no timer to arm (most packets of an answer arrive together).
        if let Some(p) = self.reader.try_buffered() {
            return Ok(p);
        }
        let r = match self.read_timeout {
            Some(t) => match tokio::time::timeout(t, self.reader.read()).await {
                Ok(r) => r,
                Err(_) => return Err(lost(&self.addr, format!("no answer within {t:?}"))),
            },
            None => self.reader.read().await,
        };
        r.map_err(|e: PacketError| lost(&self.addr, e))
    }

    /// Sends a command packet (sequence id 0) and flushes.
    pub async fn send_command(&mut self, payload: &[u8]) -> Result<(), BackendError> {
        self.writer
            .write(0, payload)
            .await
            .map_err(|e| lost(&self.addr, e))?;
        self.writer.flush().await.map_err(|e| lost(&self.addr, e))
    }

    /// Reads the next packet of an answer and feeds it to `tracker`: the packet, and where the
    /// answer stands. A LOCAL INFILE request is refused as a lost connection: the proxy's own
    /// statements and streamed reads never ask for a file, so a backend that does is out of
    /// step with us.
    pub(super) async fn read_step(
        &mut self,
        tracker: &mut ResponseTracker,
    ) -> Result<(Packet, Step), BackendError> {
        let pkt = self.read().await?;
        let step = tracker
            .feed(&pkt.payload)
            .map_err(|e| lost(&self.addr, e))?;
        if step == Step::LocalInfile {
            return Err(lost(&self.addr, "unexpected LOCAL INFILE request"));
        }
        Ok((pkt, step))
    }

    /// Runs a statement for the proxy's own use and collects its whole answer. Only for small
    /// answers (state restore, health checks, scatter legs).
    pub async fn query(&mut self, sql: &str) -> Result<QueryResult, BackendError> {
        self.send_command(&build_command(com::QUERY, sql.as_bytes()))
            .await?;
        self.collect(ResponseKind::Query).await
    }

    /// Runs two statements in one round trip: both are sent before either answer is read
    /// (the server runs commands one after the other on a connection, so the second waits
    /// for the first), then both answers are collected in order. Only for a pair whose
    /// second statement is harmless when the first fails (`XA END` then `XA PREPARE`: a
    /// prepare after a failed end fails too); never to guard a write with a statement
    /// before it.
    pub async fn query_pipelined(
        &mut self,
        first: &str,
        then: &str,
    ) -> (
        Result<QueryResult, BackendError>,
        Result<QueryResult, BackendError>,
    ) {
        let sent: std::io::Result<()> = async {
            self.writer
                .write(0, &build_command(com::QUERY, first.as_bytes()))
                .await?;
            self.writer
                .write(0, &build_command(com::QUERY, then.as_bytes()))
                .await?;
            self.writer.flush().await
        }
        .await;
        if let Err(e) = sent {
            return (Err(lost(&self.addr, &e)), Err(lost(&self.addr, e)));
        }
        let a = self.collect(ResponseKind::Query).await;
        if let Err(BackendError::Lost { reason, .. }) = &a {
            let b = Err(lost(&self.addr, reason));
            return (a, b);
        }
        let b = self.collect(ResponseKind::Query).await;
        (a, b)
    }

    /// Collects one answer of the given kind (text rows).
    pub async fn collect(&mut self, kind: ResponseKind) -> Result<QueryResult, BackendError> {
        let mut tracker = ResponseTracker::new(kind, self.deprecate_eof());
        let mut rs: Option<ResultSet> = None;
        let mut ncols = 0usize;
        let mut in_defs = 0usize;
        loop {
            let (pkt, step) = self.read_step(&mut tracker).await?;
            let first = pkt.first().unwrap_or(0);
            // Track result-set shape for collection (first result set only).
            if rs.is_none() && tracker.outcome.result_set && step == Step::More && ncols == 0 {
                let mut r = crate::protocol::buf::Reader::new(&pkt.payload);
                ncols = r.lenenc_int().unwrap_or(0) as usize;
                in_defs = ncols;
                rs = Some(ResultSet::default());
            } else if let Some(set) = rs.as_mut() {
                if in_defs > 0 {
                    let def = ColumnDef::parse(&pkt.payload)
                        .ok_or_else(|| lost(&self.addr, "bad column definition"))?;
                    set.columns.push(def);
                    in_defs -= 1;
                } else if step == Step::More
                    && first != 0xFE
                    && set.columns.len() == ncols
                    && tracker.outcome.error.is_none()
                {
                    if let Some(row) = parse_text_row(&pkt.payload, ncols) {
                        set.rows.push(row);
                    }
                }
            }
            if step == Step::Done {
                break;
            }
        }
        let o = tracker.outcome;
        self.status = o.status;
        if o.last_gtid.is_some() {
            self.last_gtid = o.last_gtid;
        }
        if let Some(e) = o.error {
            return Err(BackendError::Server(e));
        }
        Ok(match rs {
            Some(mut set) => {
                set.warnings = o.warnings;
                QueryResult::Rows(set)
            }
            None => QueryResult::Ok(OkInfo {
                affected_rows: o.affected_rows,
                last_insert_id: o.last_insert_id,
                status: o.status,
                warnings: o.warnings,
            }),
        })
    }

    /// COM_PING: whether the connection still works.
    pub async fn ping(&mut self) -> bool {
        if self.send_command(&[com::PING]).await.is_err() {
            return false;
        }
        matches!(self.read().await, Ok(p) if p.first() == Some(0x00))
    }

    /// COM_INIT_DB.
    pub async fn init_db(&mut self, db: &str) -> Result<(), BackendError> {
        let mut cmd = vec![com::INIT_DB];
        cmd.extend_from_slice(db.as_bytes());
        self.send_command(&cmd).await?;
        let pkt = self.read().await?;
        if let Some(ok) = parse_ok(&pkt.payload) {
            self.status = ok.status;
            Ok(())
        } else if let Some(e) = parse_err(&pkt.payload) {
            Err(BackendError::Server(e))
        } else {
            Err(lost(&self.addr, "bad answer to COM_INIT_DB"))
        }
    }

    /// COM_SET_OPTION (multi-statements on or off). Answered by an EOF packet.
    pub async fn set_option(&mut self, multi_statements: bool) -> Result<(), BackendError> {
        let opt: u16 = if multi_statements { 0 } else { 1 };
        let mut cmd = vec![com::SET_OPTION];
        cmd.extend_from_slice(&opt.to_le_bytes());
        self.send_command(&cmd).await?;
        let pkt = self.read().await?;
        if let Some(e) = parse_err(&pkt.payload) {
            return Err(BackendError::Server(e));
        }
        Ok(())
    }

    /// Prepares `sql` here unless already prepared; the answer is consumed, not relayed.
    pub async fn ensure_prepared(&mut self, sql: &Bytes) -> Result<BackendStmt, BackendError> {
        if let Some(s) = self.prepared.get(sql) {
            return Ok(*s);
        }
        self.send_command(&build_command(com::STMT_PREPARE, sql))
            .await?;
        let mut tracker = ResponseTracker::new(ResponseKind::Prepare, self.deprecate_eof());
        loop {
            if self.read_step(&mut tracker).await?.1 == Step::Done {
                break;
            }
        }
        if let Some(e) = tracker.outcome.error {
            return Err(BackendError::Server(e));
        }
        let (id, columns, params) = tracker
            .outcome
            .prepared
            .ok_or_else(|| lost(&self.addr, "no statement id"))?;
        let stmt = BackendStmt {
            id,
            params,
            columns,
        };
        self.remember_prepared(sql.clone(), stmt).await;
        Ok(stmt)
    }

    /// Records a statement prepared here, closing the oldest ones past a bound so a long-lived
    /// connection does not hit the server's max_prepared_stmt_count.
    pub async fn remember_prepared(&mut self, sql: Bytes, stmt: BackendStmt) {
        const MAX_PREPARED: usize = 512;
        if self.prepared.len() >= MAX_PREPARED {
            let victims: Vec<Bytes> = self.prepared.keys().take(64).cloned().collect();
            for v in victims {
                if let Some(s) = self.prepared.remove(&v) {
                    let mut cmd = vec![com::STMT_CLOSE];
                    cmd.extend_from_slice(&s.id.to_le_bytes());
                    let _ = self.send_command(&cmd).await;
                }
            }
        }
        self.prepared.insert(sql, stmt);
    }
}

/// The collected answer of an internal query.
#[derive(Debug, Clone, PartialEq)]
pub enum QueryResult {
    Ok(OkInfo),
    Rows(ResultSet),
}

/// The auth answer for a plugin.
pub fn scramble_for(plugin: &str, password: &[u8], scramble: &[u8]) -> Vec<u8> {
    if plugin == auth::CACHING_SHA2 {
        auth::sha2_scramble(password, scramble)
    } else {
        auth::native_scramble(password, scramble)
    }
}
