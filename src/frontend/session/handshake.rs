//! The connection phase: the greeting with the proxy's scramble and connection id, the
//! authentication exchange against `[[users]]` (mysql_native_password, caching_sha2_password
//! with the RSA exchange, an auth switch for any other plugin), and the check of the initial
//! database on the default shard. COM_CHANGE_USER and COM_RESET_CONNECTION live here too: they
//! forget the session's state and, for a change of user, authenticate again.
//!
//! Touches the client socket and the session's identity (user, capabilities, collation,
//! database); reaches a backend only to check that a database exists.

use bytes::Bytes;
use rand::RngCore;

use super::hold::HoldWhy;
use super::{Flow, Session};
use crate::backend::conn::BackendError;
use crate::protocol::auth;
use crate::protocol::constants::{cap, err, status, DEFAULT_COLLATION};
use crate::protocol::handshake::{auth_switch_request, ChangeUser, Greeting, HandshakeResponse};
use crate::protocol::packet::PacketError;
use crate::protocol::packets::ErrInfo;
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
    pub(super) async fn check_database(&mut self, db: &str) -> Result<(), ErrInfo> {
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

    /// Forgets all session state, as a fresh login would have it (user and database stay).
    pub(super) fn reset_state(&mut self) {
        self.forget_distributed();
        self.exec_stash = None;
        self.transaction_mode = self.proxy.config().transactions.transaction_mode;
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
