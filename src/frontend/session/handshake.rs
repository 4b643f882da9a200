//! The connection phase: the greeting with the proxy's scramble and connection id, the
//! authentication exchange against `[[users]]` (mysql_native_password, caching_sha2_password
//! with the RSA exchange, an auth switch for any other plugin), and the check of the initial
//! database on the default shard. COM_CHANGE_USER and COM_RESET_CONNECTION live here too: they
//! forget the session's state and, for a change of user, authenticate again.
//!
//! With `[tls]` the greeting offers TLS, and a client's SSL request upgrades the connection
//! before its real login (`frontend::tls`); `require_tls` users are refused in clear text, and
//! a caching_sha2 full authentication over TLS takes the password as sent, without RSA. The
//! whole handshake is bounded by `frontend.handshake_timeout_ms`, and failed logins are counted
//! per address (`frontend::login_guard`).
//!
//! Touches the client socket and the session's identity (user, capabilities, collation,
//! database); reaches a backend only to check that a database exists.

use bytes::Bytes;
use rand::RngCore;

use super::hold::HoldWhy;
use super::{Flow, Session};
use crate::backend::conn::BackendError;
use crate::frontend::tls;
use crate::protocol::auth;
use crate::protocol::constants::{cap, err, status, DEFAULT_COLLATION};
use crate::protocol::handshake::{
    auth_switch_request, ChangeUser, Greeting, HandshakeResponse, SslRequest,
};
use crate::protocol::packet::{Packet, PacketError};
use crate::protocol::packets::ErrInfo;
use crate::protocol::stream::{StreamRead, StreamWrite};
use crate::proxy::UserAuth;
use crate::session_state::SessionVars;

pub(super) fn random_scramble() -> Vec<u8> {
    // Printable bytes without NUL, as servers send them.
    let mut b = [0u8; 20];
    rand::thread_rng().fill_bytes(&mut b);
    b.iter().map(|x| 0x21 + (x % 0x5e)).collect()
}

impl Session {
    /// Greets, authenticates, checks the initial database. `Ok(false)`: refused (the client
    /// has been told why).
    pub(super) async fn handshake(&mut self) -> Result<bool, PacketError> {
        let config = self.proxy.config();
        if let Err(blocked) = self.proxy.login_guard.check(self.client_host()) {
            tracing::warn!(client = %self.peer, "connection refused: too many failed logins from this address");
            self.send_err(0, &blocked.to_err_info()).await?;
            return Ok(false);
        }
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
            capabilities: self.offered_capabilities(),
            collation: DEFAULT_COLLATION,
            status: status::AUTOCOMMIT,
            auth_plugin: plugin.clone(),
        };
        self.writer.write(0, &greeting.encode()).await?;
        self.writer.flush().await?;
        let Some(pkt) = self.read_handshake_response().await? else {
            return Ok(false);
        };
        let Some(resp) = HandshakeResponse::parse(&pkt.payload) else {
            let e = ErrInfo::new((1043, "08S01"), "Bad handshake");
            self.send_err(pkt.next_seq(), &e).await?;
            return Ok(false);
        };
        if resp.capabilities & cap::PROTOCOL_41 == 0
            || (resp.capabilities & cap::SSL != 0) != self.tls
        {
            let e = ErrInfo::new(
                (1043, "08S01"),
                "Bad handshake: the proxy needs CLIENT_PROTOCOL_41, and CLIENT_SSL only after an SSL request",
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
            self.login_failed("access denied");
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
        if let Some(e) = self.login_rights(resp.database.as_deref()) {
            self.send_err(seq, &e).await?;
            return Ok(false);
        }
        self.proxy.login_guard.succeeded(self.client_host());
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
    pub(super) async fn authenticate(
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
        if !self.transport_allowed(user, &auth) {
            return Ok(false);
        }
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
        // Full authentication: the client sends its password, in clear over TLS, else
        // encrypted with our RSA public key.
        *seq = self.writer.write(*seq, &[0x01, 0x04]).await?;
        self.writer.flush().await?;
        let Some(password) = self.full_auth_password(seq).await? else {
            return Ok(false);
        };
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
    pub(super) async fn check_database(&mut self, db: &str) -> Result<(), ErrInfo> {
        let shard = self.proxy.config().sharding.default_shard.clone();
        if !self.default_primary_usable(&shard) {
            return self.check_database_elsewhere(&shard, db).await;
        }
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

    /// Whether the default shard's primary takes statements now (not down, not failing over):
    /// a login must not wait for, or fail with, a dead primary.
    fn default_primary_usable(&self, shard: &str) -> bool {
        let topo = self.proxy.topology();
        topo.shard(shard).is_some_and(|s| {
            s.state.gate.is_open()
                && s.primary
                    .stats
                    .healthy
                    .load(std::sync::atomic::Ordering::Relaxed)
        })
    }

    /// The initial database checked on a healthy replica of the default shard while its
    /// primary is down; accepted unchecked if none answers (the first statement that needs it
    /// reports a missing database as the server would).
    async fn check_database_elsewhere(&mut self, shard: &str, db: &str) -> Result<(), ErrInfo> {
        let topo = self.proxy.topology();
        let replicas: Vec<_> = topo
            .shard(shard)
            .map(|s| {
                s.replicas
                    .iter()
                    .filter(|r| r.stats.healthy.load(std::sync::atomic::Ordering::Relaxed))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        for r in replicas {
            let Ok(mut lease) = r.get(self.caps, self.collation, &self.vars).await else {
                continue;
            };
            match lease.conn.init_db(db).await {
                Ok(()) => {
                    lease.conn.vars.db = Some(db.to_string());
                    r.put(lease);
                    return Ok(());
                }
                Err(BackendError::Server(e)) => {
                    r.put(lease);
                    return Err(e);
                }
                Err(_) => continue,
            }
        }
        tracing::debug!(
            session = self.id,
            shard,
            db,
            "default shard's primary down: initial database accepted unchecked"
        );
        Ok(())
    }

    /// Forgets all session state, as a fresh login would have it (user and database stay).
    pub(super) fn reset_state(&mut self) {
        self.forget_distributed();
        self.exec_stash = None;
        self.transaction_mode = self.proxy.config().transactions.transaction_mode;
        self.read_from = self.configured_read_from();
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

    pub(super) async fn com_reset_connection(&mut self) -> std::io::Result<Flow> {
        self.reset_state();
        self.send_ok(1, self.local_ok()).await?;
        Ok(Flow::Continue)
    }

    pub(super) async fn com_change_user(&mut self, payload: Bytes) -> std::io::Result<Flow> {
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
        if let Some(e) = self.login_rights(cu.database.as_deref()) {
            self.send_err(seq, &e).await?;
            return Ok(Flow::Close);
        }
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
}

/// Handshake limits: the time a client gets to log in, failed logins counted per address.
impl Session {
    /// [`Session::handshake`] bounded by `frontend.handshake_timeout_ms`: a client that has
    /// not logged in by then is dropped, and counts as a failed login of its address.
    pub(super) async fn handshake_within_timeout(&mut self) -> Result<bool, PacketError> {
        let ms = self.proxy.config().frontend.handshake_timeout_ms;
        if ms == 0 {
            return self.handshake().await;
        }
        let limit = std::time::Duration::from_millis(ms);
        match tokio::time::timeout(limit, self.handshake()).await {
            Ok(r) => r,
            Err(_) => {
                tracing::warn!(session = self.id, client = %self.peer, "client dropped: handshake not finished within {limit:?}");
                self.login_failed("handshake timeout");
                Ok(false)
            }
        }
    }

    /// Counts a failed login of the client's address; logs when the address gets blocked.
    fn login_failed(&self, why: &str) {
        let f = &self.proxy.config().frontend;
        let block = std::time::Duration::from_millis(f.connect_error_block_ms);
        if self
            .proxy
            .login_guard
            .failed(self.client_host(), f.max_connect_errors, block)
        {
            tracing::warn!(client = %self.peer, why, max_connect_errors = f.max_connect_errors, "address blocked for {block:?} after repeated failed logins");
        }
    }
}

/// TLS in the connection phase: what the greeting offers, the upgrade after an SSL request,
/// the transport a user requires, and how the password arrives in a full caching_sha2
/// authentication.
impl Session {
    /// The capabilities of the greeting: the proxy's, with `CLIENT_SSL` when `[tls]` is set.
    fn offered_capabilities(&self) -> u32 {
        match self.proxy.tls {
            Some(_) => cap::PROXY_OFFERS | cap::SSL,
            None => cap::PROXY_OFFERS,
        }
    }

    /// Reads the client's handshake response. When the client sent an SSL request instead,
    /// the connection is upgraded to TLS first and the real response read over it.
    /// `Ok(None)`: refused (the client has been told why).
    async fn read_handshake_response(&mut self) -> Result<Option<Packet>, PacketError> {
        let pkt = self.read_first_packet().await?;
        if SslRequest::parse(&pkt.payload).is_none() {
            return Ok(Some(pkt));
        }
        let Some(acceptor) = self.proxy.tls.clone() else {
            let e = ErrInfo::new(
                (1043, "08S01"),
                "Bad handshake: TLS is not configured on this proxy",
            );
            self.send_err(pkt.next_seq(), &e).await?;
            return Ok(None);
        };
        self.writer.flush().await?;
        let r = std::mem::replace(self.reader.get_mut(), StreamRead::Detached);
        let w = std::mem::replace(self.writer.get_mut(), StreamWrite::Detached);
        let (r, w) = tls::upgrade(&acceptor, r, w).await.inspect_err(|e| {
            tracing::info!(session = self.id, client = %self.peer, "TLS handshake failed: {e}");
        })?;
        *self.reader.get_mut() = r;
        *self.writer.get_mut() = w;
        self.tls = true;
        let next = self.reader.read().await?;
        if next.seq != pkt.next_seq() {
            return Err(PacketError::OutOfOrder {
                got: next.seq,
                expected: pkt.next_seq(),
            });
        }
        Ok(Some(next))
    }

    /// The client's first packet, read from the socket exactly (header, then payload) rather
    /// than through the packet reader's buffer: a TLS client sends its TLS ClientHello right
    /// behind its SSL request without waiting, and those bytes belong to the TLS handshake.
    async fn read_first_packet(&mut self) -> Result<Packet, PacketError> {
        use tokio::io::AsyncReadExt;
        let mut header = [0u8; 4];
        let stream = self.reader.get_mut();
        stream
            .read_exact(&mut header)
            .await
            .map_err(eof_is_closed)?;
        let len = u32::from_le_bytes([header[0], header[1], header[2], 0]) as usize;
        if len > FIRST_PACKET_MAX {
            return Err(PacketError::TooLarge(len, FIRST_PACKET_MAX));
        }
        let mut payload = vec![0u8; len];
        stream
            .read_exact(&mut payload)
            .await
            .map_err(eof_is_closed)?;
        Ok(Packet {
            seq: header[3],
            chunks: 1,
            payload: Bytes::from(payload),
        })
    }

    /// Whether the user may log in over this connection (`require_tls` needs TLS). A refusal
    /// is an access denied, as MariaDB answers for a `REQUIRE SSL` account.
    fn transport_allowed(&self, user: &str, auth: &UserAuth) -> bool {
        if auth.require_tls && !self.tls {
            tracing::info!(session = self.id, client = %self.peer, user, "login refused: the user requires TLS");
            return false;
        }
        true
    }

    /// The clear-text password of a caching_sha2_password full authentication, after the
    /// proxy asked for it: sent as it is over TLS, else encrypted with the proxy's RSA key
    /// (which the client may ask for first). `None`: it could not be decrypted.
    async fn full_auth_password(&mut self, seq: &mut u8) -> Result<Option<Vec<u8>>, PacketError> {
        let mut p = self.reader.read().await?;
        *seq = p.next_seq();
        if self.tls {
            let mut password = p.payload.to_vec();
            if password.last() == Some(&0) {
                password.pop();
            }
            return Ok(Some(password));
        }
        if p.payload.as_ref() == [0x02] {
            let pem = match self.proxy.rsa.public_pem() {
                Ok(p) => p,
                Err(e) => {
                    tracing::error!("RSA key unavailable: {e}");
                    return Ok(None);
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
            return Ok(None);
        };
        let mut password = auth::xor_with_scramble(&plain, &self.scramble);
        if password.last() == Some(&0) {
            password.pop();
        }
        Ok(Some(password))
    }
}

/// Largest first packet of a client (a handshake response with its attributes is far smaller).
const FIRST_PACKET_MAX: usize = 64 * 1024;

fn eof_is_closed(e: std::io::Error) -> PacketError {
    match e.kind() {
        std::io::ErrorKind::UnexpectedEof => PacketError::Closed,
        _ => PacketError::Io(e),
    }
}
