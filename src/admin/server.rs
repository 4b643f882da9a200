//! The admin listener: the MySQL protocol (opensrv-mysql) in front of [`AdminOps`].

use std::io;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use opensrv_mysql::{
    AsyncMysqlIntermediary, AsyncMysqlShim, Column, ColumnFlags, ColumnType, ErrorKind, InitWriter,
    OkResponse, ParamParser, QueryResultWriter, StatementMetaWriter,
};
use rand::Rng;
use sha1::{Digest, Sha1};
use tokio::io::AsyncWrite;
use tokio::net::{TcpListener, TcpStream};

use super::command::{self, Command};
use super::ops::{AdminError, AdminOps};
use super::render::{self, SessionFacts};
use crate::config::User;
use crate::protocol::resultset::ResultSet;

/// The server version the admin port announces.
pub const ADMIN_VERSION: &str = concat!("5.7.0-shardproxy-admin-", env!("CARGO_PKG_VERSION"));

/// The admin users, shared with the core so that a config reload can replace them
/// ([`AdminUsers::replace`]); sessions already logged in stay.
#[derive(Clone, Default, Debug)]
pub struct AdminUsers(Arc<RwLock<Vec<User>>>);

impl AdminUsers {
    pub fn new(users: Vec<User>) -> AdminUsers {
        AdminUsers(Arc::new(RwLock::new(users)))
    }

    /// Replaces the whole list (after a config reload).
    pub fn replace(&self, users: Vec<User>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = users;
    }

    fn find(&self, name: &str) -> Option<User> {
        self.0
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|u| u.name == name)
            .cloned()
    }
}

/// Accepts admin connections on `listener` forever; each runs in its own task. Abort the task
/// running this to stop accepting (open admin sessions end when their client leaves).
pub async fn serve_admin(listener: TcpListener, ops: Arc<dyn AdminOps>, users: AdminUsers) {
    static NEXT_ID: AtomicU32 = AtomicU32::new(1);
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "admin port: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let ops = ops.clone();
        let users = users.clone();
        tokio::spawn(async move {
            tracing::info!(admin_session = id, client = %peer, "admin port: connection");
            match run_session(stream, id, ops, users).await {
                Ok(()) => tracing::info!(admin_session = id, "admin port: disconnected"),
                Err(e) => {
                    tracing::info!(admin_session = id, error = %e, "admin port: session ended")
                }
            }
        });
    }
}

async fn run_session(
    stream: TcpStream,
    id: u32,
    ops: Arc<dyn AdminOps>,
    users: AdminUsers,
) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let (r, w) = stream.into_split();
    let shim = AdminShim {
        ops,
        users,
        connection_id: id,
        salt: new_salt(),
        user: Mutex::new(String::new()),
    };
    AsyncMysqlIntermediary::run_on(shim, r, w).await
}

fn new_salt() -> [u8; 20] {
    let mut rng = rand::thread_rng();
    let mut salt = [0u8; 20];
    for b in salt.iter_mut() {
        // Printable ASCII without '$' (opensrv bumps 0 and '$'; avoid both).
        loop {
            let c = rng.gen_range(0x21u8..0x7f);
            if c != b'$' {
                *b = c;
                break;
            }
        }
    }
    salt
}

/// SHA1(SHA1(password)) of a user: from the clear-text password or the `*HEX` hash.
fn stored_hash(user: &User) -> Option<[u8; 20]> {
    if let Some(p) = &user.password {
        if p.is_empty() {
            return None;
        }
        let once = Sha1::digest(p.as_bytes());
        return Some(Sha1::digest(once).into());
    }
    let hex = user.password_hash.as_deref()?.strip_prefix('*')?;
    let mut out = [0u8; 20];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// mysql_native_password: the client sends SHA1(pw) XOR SHA1(salt + SHA1(SHA1(pw))).
pub(crate) fn verify_native(user: &User, salt: &[u8], auth: &[u8]) -> bool {
    let Some(stored) = stored_hash(user) else {
        // No password configured: only an empty answer logs in.
        return auth.is_empty();
    };
    if auth.len() != 20 {
        return false;
    }
    let mut h = Sha1::new();
    h.update(salt);
    h.update(stored);
    let mask = h.finalize();
    let candidate: Vec<u8> = auth.iter().zip(mask.iter()).map(|(a, m)| a ^ m).collect();
    let check: [u8; 20] = Sha1::digest(&candidate).into();
    // Constant-time comparison.
    check
        .iter()
        .zip(stored.iter())
        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
        == 0
}

/// opensrv-mysql's `ErrorKind::from(u16)` panics on codes it does not know: map ours here.
/// An unlisted code goes out as 1105 (the message still says what happened).
pub fn error_kind(code: u16) -> ErrorKind {
    match code {
        1045 => ErrorKind::ER_ACCESS_DENIED_ERROR,
        1047 => ErrorKind::ER_UNKNOWN_COM_ERROR,
        1064 => ErrorKind::ER_PARSE_ERROR,
        1065 => ErrorKind::ER_EMPTY_QUERY,
        1094 => ErrorKind::ER_NO_SUCH_THREAD,
        1146 => ErrorKind::ER_NO_SUCH_TABLE,
        1149 => ErrorKind::ER_SYNTAX_ERROR,
        1210 => ErrorKind::ER_WRONG_ARGUMENTS,
        1235 => ErrorKind::ER_NOT_SUPPORTED_YET,
        1290 => ErrorKind::ER_OPTION_PREVENTS_STATEMENT,
        _ => ErrorKind::ER_UNKNOWN_ERROR,
    }
}

struct AdminShim {
    ops: Arc<dyn AdminOps>,
    users: AdminUsers,
    connection_id: u32,
    salt: [u8; 20],
    /// Set once authentication succeeds (authenticate gets `&self`).
    user: Mutex<String>,
}

enum Reply {
    Rows(ResultSet),
    Ok,
}

impl AdminShim {
    async fn execute(&self, sql: &str) -> Result<Reply, AdminError> {
        let cmd = command::parse(sql)?;
        let audited = !matches!(
            cmd,
            Command::Select(_) | Command::Set | Command::Use | Command::ShowWarnings
        );
        if audited {
            let user = self.user.lock().unwrap_or_else(|e| e.into_inner()).clone();
            tracing::info!(
                admin_session = self.connection_id,
                user = %user,
                statement = %command::strip(sql),
                "admin statement"
            );
        }
        let ops = &self.ops;
        Ok(match cmd {
            Command::ShowShards => Reply::Rows(render::shards(&ops.shards())),
            Command::ShowBackends => Reply::Rows(render::backends(&ops.backends())),
            Command::ShowRing => Reply::Rows(render::ring(&ops.ring())),
            Command::ShowSessions => Reply::Rows(render::sessions(&ops.sessions())),
            Command::ShowTransactions => Reply::Rows(render::transactions()),
            Command::ShowProxyStatus => Reply::Rows(render::proxy_status(&ops.proxy_status())),
            Command::ShowTableRules => Reply::Rows(render::table_rules(&ops.table_rules())),
            Command::ShowReshardStatus => Reply::Rows(ops.reshard_status()?),
            Command::Preview(stmt) => Reply::Rows(ops.preview(&stmt)?),
            Command::WhereIs { table, key } => {
                let shard = ops.where_is(&table, &key)?;
                Reply::Rows(render::where_is(&table, &key, &shard))
            }
            Command::ReloadConfig => {
                let changes = super::reload_logged(ops.as_ref(), "RELOAD CONFIG").await?;
                Reply::Rows(render::reload(&changes))
            }
            Command::Kill { id, query_only } => {
                ops.kill(id, query_only).await?;
                Reply::Ok
            }
            Command::Switchover(shard) => {
                let outcome = ops.switchover(&shard).await?;
                Reply::Rows(render::switchover(&shard, &outcome))
            }
            Command::ReshardPlan(path) => {
                Reply::Rows(render::reshard_plan(&ops.reshard_plan(&path).await?))
            }
            Command::ReshardStart(path) => {
                Reply::Rows(render::reshard_outcome(&ops.reshard_start(&path).await?))
            }
            Command::ReshardCancel => {
                Reply::Rows(render::reshard_outcome(&[ops.reshard_cancel().await?]))
            }
            Command::ReshardCleanup => {
                Reply::Rows(render::reshard_outcome(&[ops.reshard_cleanup().await?]))
            }
            Command::SwitchoverTo { shard, target } => {
                let outcome = ops.switchover_to(&shard, Some(&target)).await?;
                Reply::Rows(render::switchover(&shard, &outcome))
            }
            Command::Failover { shard, force } => {
                let outcome = ops.failover(&shard, force).await?;
                Reply::Rows(render::switchover(&shard, &outcome))
            }
            Command::ShowFailovers => Reply::Rows(ops.failovers()?),
            Command::Help => Reply::Rows(render::help()),
            Command::ShowWarnings => Reply::Rows(render::warnings()),
            Command::Select(items) => {
                let user = self.user.lock().unwrap_or_else(|e| e.into_inner()).clone();
                let facts = SessionFacts {
                    user: &user,
                    connection_id: self.connection_id,
                    version: ADMIN_VERSION,
                };
                Reply::Rows(render::select(&items, &facts))
            }
            Command::Set | Command::Use => Reply::Ok,
        })
    }
}

/// Writes a whole result set in the text protocol.
pub async fn write_result_set<W: AsyncWrite + Send + Unpin>(
    results: QueryResultWriter<'_, W>,
    rs: &ResultSet,
) -> io::Result<()> {
    let columns: Vec<Column> = rs
        .columns
        .iter()
        .map(|c| Column {
            table: String::new(),
            column: String::from_utf8_lossy(&c.name).into_owned(),
            coltype: if c.is_numeric() {
                ColumnType::MYSQL_TYPE_LONGLONG
            } else {
                ColumnType::MYSQL_TYPE_VAR_STRING
            },
            colflags: ColumnFlags::empty(),
        })
        .collect();
    let mut w = results.start(&columns).await?;
    for row in &rs.rows {
        for v in row {
            w.write_col(v.as_deref())?;
        }
        w.end_row().await?;
    }
    w.finish().await
}

#[async_trait]
impl<W: AsyncWrite + Send + Unpin> AsyncMysqlShim<W> for AdminShim {
    type Error = io::Error;

    fn version(&self) -> String {
        ADMIN_VERSION.to_string()
    }

    fn connect_id(&self) -> u32 {
        self.connection_id
    }

    fn salt(&self) -> [u8; 20] {
        self.salt
    }

    async fn authenticate(
        &self,
        auth_plugin: &str,
        username: &[u8],
        salt: &[u8],
        auth_data: &[u8],
    ) -> bool {
        let name = String::from_utf8_lossy(username).into_owned();
        let ok = auth_plugin == "mysql_native_password"
            && self
                .users
                .find(&name)
                .is_some_and(|u| verify_native(&u, salt, auth_data));
        if ok {
            *self.user.lock().unwrap_or_else(|e| e.into_inner()) = name;
        } else {
            tracing::warn!(
                admin_session = self.connection_id,
                user = %name,
                "admin port: access denied"
            );
        }
        ok
    }

    /// `USE db`, COM_INIT_DB and a database in the handshake: accepted (the admin port has no
    /// databases). opensrv's default answers nothing, which hangs the client.
    async fn on_init<'a>(&'a mut self, _db: &'a str, writer: InitWriter<'a, W>) -> io::Result<()> {
        writer.ok().await
    }

    async fn on_prepare<'a>(
        &'a mut self,
        _query: &'a str,
        info: StatementMetaWriter<'a, W>,
    ) -> io::Result<()> {
        info.error(
            ErrorKind::ER_UNKNOWN_COM_ERROR,
            b"the admin port does not support prepared statements; send statements as text",
        )
        .await
    }

    async fn on_execute<'a>(
        &'a mut self,
        _id: u32,
        _params: ParamParser<'a>,
        results: QueryResultWriter<'a, W>,
    ) -> io::Result<()> {
        results
            .error(
                ErrorKind::ER_UNKNOWN_COM_ERROR,
                b"the admin port does not support prepared statements",
            )
            .await
    }

    async fn on_close<'a>(&'a mut self, _stmt: u32)
    where
        W: 'async_trait,
    {
    }

    async fn on_query<'a>(
        &'a mut self,
        query: &'a str,
        results: QueryResultWriter<'a, W>,
    ) -> io::Result<()> {
        match self.execute(query).await {
            Ok(Reply::Rows(rs)) => write_result_set(results, &rs).await,
            Ok(Reply::Ok) => results.completed(OkResponse::default()).await,
            Err(e) => {
                tracing::debug!(admin_session = self.connection_id, error = %e, "admin statement failed");
                results
                    .error(error_kind(e.code), e.message.as_bytes())
                    .await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(password: Option<&str>, hash: Option<&str>) -> User {
        User {
            name: "admin".into(),
            password: password.map(Into::into),
            password_hash: hash.map(Into::into),
            require_tls: false,
            databases: None,
            role: None,
            max_connections: None,
            read_from: None,
        }
    }

    /// What a client computes for mysql_native_password.
    fn scramble(password: &str, salt: &[u8]) -> Vec<u8> {
        let p1 = Sha1::digest(password.as_bytes());
        let p2 = Sha1::digest(p1);
        let mut h = Sha1::new();
        h.update(salt);
        h.update(p2);
        let m = h.finalize();
        p1.iter().zip(m.iter()).map(|(a, b)| a ^ b).collect()
    }

    #[test]
    fn native_password_from_clear_text_and_hash() {
        let salt = new_salt();
        let auth = scramble("s3cret", &salt);
        assert!(verify_native(&user(Some("s3cret"), None), &salt, &auth));
        assert!(!verify_native(&user(Some("other"), None), &salt, &auth));
        // PASSWORD('s3cret') in MariaDB.
        let hash = {
            let p2 = Sha1::digest(Sha1::digest(b"s3cret"));
            let hex: String = p2.iter().map(|b| format!("{b:02X}")).collect();
            format!("*{hex}")
        };
        assert!(verify_native(&user(None, Some(&hash)), &salt, &auth));
        assert!(!verify_native(&user(None, Some(&hash)), &salt, &[]));
    }

    #[test]
    fn empty_password_only_with_empty_answer() {
        let salt = new_salt();
        assert!(verify_native(&user(None, None), &salt, &[]));
        assert!(verify_native(&user(Some(""), None), &salt, &[]));
        assert!(!verify_native(
            &user(None, None),
            &salt,
            &scramble("x", &salt)
        ));
    }

    #[test]
    fn error_kind_never_panics() {
        for code in [0u16, 1, 1064, 1094, 1105, 1235, 9999, u16::MAX] {
            let _ = error_kind(code);
        }
        assert_eq!(error_kind(1064) as u16, 1064);
        assert_eq!(error_kind(4242) as u16, 1105);
    }
}
