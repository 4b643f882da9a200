//! The contract between the admin side (admin port, HTTP status page, SIGHUP) and the core.
//!
//! The core implements [`AdminOps`] once, over its live state (config, ring, pools, health
//! checker, session registry) and hands an `Arc<dyn AdminOps>` to [`crate::admin::serve_admin`],
//! [`crate::http::serve_http`] and [`crate::admin::reload_on_sighup`]. Everything the operator
//! sees goes through this trait; nothing else of the core is reached from here.
//!
//! Rules for implementors:
//! - The `fn`s that only read (`shards`, `backends`, …) are called on a tokio worker thread for
//!   every `SHOW …` and every status-page poll (every 2 s per open browser tab): take a snapshot,
//!   never block, never do network I/O.
//! - The `async fn`s change things (`reload_config`, `kill`, `switchover`) and may take time.
//! - Failures are [`AdminError`]s: a MySQL error code and a message, sent to the client as is.
//!   Use the constructors; a code that opensrv-mysql 0.7 does not know goes out as 1105.

use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;

use crate::protocol::resultset::ResultSet;

/// Up or down, as the health checker last saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    Up,
    Down,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Up => "up",
            Health::Down => "down",
        }
    }
}

/// The role of a backend server within its shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Primary,
    Replica,
    /// A former primary taken out by a failover: never a primary again.
    Fenced,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Primary => "primary",
            Role::Replica => "replica",
            Role::Fenced => "fenced",
        }
    }
}

/// One shard, as `SHOW SHARDS` prints it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ShardStatus {
    pub name: String,
    /// Address of the current primary.
    pub primary: String,
    pub replicas: Vec<String>,
    pub weight: u32,
    /// Free text chosen by the core; suggested values: `ok` (primary up), `degraded` (a replica
    /// down), `down` (primary down), `failing over`, `read-only`.
    pub status: String,
}

/// One backend server, as `SHOW BACKENDS` prints it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BackendStatus {
    pub address: String,
    pub shard: String,
    pub role: Role,
    pub health: Health,
    /// Replication lag in seconds (`Seconds_Behind_Master`); `None` for a primary or unknown.
    pub lag_seconds: Option<u64>,
    pub pool_in_use: u64,
    pub pool_idle: u64,
    /// Statements sent to this backend since start.
    pub queries: u64,
    /// Errors from this backend (connect failures and error packets) since start.
    pub errors: u64,
    /// Its GTID position (`@@gtid_current_pos`) at the last health check; empty unknown.
    pub gtid_position: String,
    /// `@@read_only` at the last health check; `None` unknown.
    pub read_only: Option<bool>,
    /// Replication lag in ms measured from GTID positions (`backend::lag`); `None` for a
    /// primary, or unknown (replication not running, not checked yet).
    pub lag_ms: Option<u64>,
    /// A replica that answers reads now (up, replicating, within `max_replica_lag_ms`).
    pub in_read_set: bool,
    /// Reads sent to this backend since start (on a replica: by `read_from`).
    pub reads: u64,
    /// A fenced former primary: the GTIDs it holds that the shard's primary lacks (why it does
    /// not rejoin as a replica); empty otherwise.
    pub extra_gtids: String,
}

/// One shard's part of the consistent-hash ring, as `SHOW RING` prints it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RingShare {
    pub shard: String,
    /// Virtual nodes of this shard on the ring (weight × ring.vnodes).
    pub vnodes: u32,
    /// Fraction of the 64-bit key space owned by this shard, 0.0 ..= 1.0.
    pub share: f64,
}

/// One client session of the data port, as `SHOW SESSIONS` prints it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SessionInfo {
    /// The connection id the client saw in its handshake; `KILL <id>` takes it.
    pub id: u64,
    /// Client `ip:port`.
    pub client: String,
    pub user: String,
    pub db: Option<String>,
    /// Free text chosen by the core, e.g. `idle`, `query`, `in transaction`.
    pub state: String,
    /// Whether the session holds a backend connection of its own (transaction, user variables,
    /// temporary tables, prepared statements …).
    pub pinned: bool,
    /// The statement running now, if any.
    pub statement: Option<String>,
    /// Time since the session entered its current state.
    #[serde(serialize_with = "as_millis")]
    pub time_in_state: Duration,
}

fn as_millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis().min(u64::MAX as u128) as u64)
}

/// How a table is placed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TableKind {
    /// Rows spread over the ring by a key column.
    Sharded,
    /// A full copy on every shard; writes go to all.
    Reference,
    /// Lives on the default shard only (every table not declared otherwise).
    Default,
}

impl TableKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TableKind::Sharded => "sharded",
            TableKind::Reference => "reference",
            TableKind::Default => "default",
        }
    }
}

/// One placement rule, as `SHOW TABLE RULES` prints it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TableRule {
    /// Table name as configured (`t` or `db.t`); `*` for the default rule.
    pub table: String,
    pub kind: TableKind,
    /// Shard key column of a sharded table.
    pub key: Option<String>,
    /// Shards holding rows of this table.
    pub shards: Vec<String>,
}

/// An error answered to the admin client: MySQL error code and message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} (error {code})")]
pub struct AdminError {
    pub code: u16,
    pub message: String,
}

impl AdminError {
    /// 1064 ER_PARSE_ERROR (SQLSTATE 42000).
    pub const PARSE: u16 = 1064;
    /// 1094 ER_NO_SUCH_THREAD (HY000).
    pub const NO_SUCH_THREAD: u16 = 1094;
    /// 1105 ER_UNKNOWN_ERROR (HY000).
    pub const UNKNOWN: u16 = 1105;
    /// 1146 ER_NO_SUCH_TABLE (42S02).
    pub const NO_SUCH_TABLE: u16 = 1146;
    /// 1210 ER_WRONG_ARGUMENTS (HY000).
    pub const WRONG_ARGUMENTS: u16 = 1210;
    /// 1235 ER_NOT_SUPPORTED_YET (42000).
    pub const NOT_SUPPORTED_YET: u16 = 1235;

    pub fn new(code: u16, message: impl Into<String>) -> AdminError {
        AdminError {
            code,
            message: message.into(),
        }
    }

    /// A statement the admin port cannot read (1064).
    pub fn parse(message: impl Into<String>) -> AdminError {
        AdminError::new(Self::PARSE, message)
    }

    /// A feature that has not landed yet (1235).
    pub fn not_supported(message: impl Into<String>) -> AdminError {
        AdminError::new(Self::NOT_SUPPORTED_YET, message)
    }

    /// `KILL` of a session that does not exist (1094, MariaDB's wording).
    pub fn no_such_session(id: u64) -> AdminError {
        AdminError::new(Self::NO_SUCH_THREAD, format!("Unknown thread id: {id}"))
    }

    /// A bad argument: unknown shard, unknown table, key of the wrong shape… (1210).
    pub fn wrong_arguments(message: impl Into<String>) -> AdminError {
        AdminError::new(Self::WRONG_ARGUMENTS, message)
    }

    /// Anything else (1105), e.g. a config file that does not validate.
    pub fn other(message: impl Into<String>) -> AdminError {
        AdminError::new(Self::UNKNOWN, message)
    }
}

/// What the core offers to operators. See the module docs for the rules.
#[async_trait]
pub trait AdminOps: Send + Sync + 'static {
    /// Every configured shard, in config order.
    fn shards(&self) -> Vec<ShardStatus>;

    /// Every backend server, grouped by shard, primary first.
    fn backends(&self) -> Vec<BackendStatus>;

    /// Every shard's share of the ring, in config order.
    fn ring(&self) -> Vec<RingShare>;

    /// Every open data-port session.
    fn sessions(&self) -> Vec<SessionInfo>;

    /// Counters as (name, value) pairs, in display order. Names the status page and the docs
    /// know: `version`, `uptime_seconds`, `connections`, `connections_total`, `questions`,
    /// `qps`, `errors`, `plan_cache_hits`, `plan_cache_misses`, `text_plan_cache_hits`,
    /// `text_plan_cache_misses`, `config_file`,
    /// `config_loaded_at`. Others are shown as given.
    fn proxy_status(&self) -> Vec<(String, String)>;

    /// Placement rules: every sharded table, every reference table, then the default rule.
    fn table_rules(&self) -> Vec<TableRule>;

    /// The plan of `sql` (without running it) as rows, e.g. columns `step`, `shard`, `sql`,
    /// `merge`. `sql` is the text after `PREVIEW`, trailing `;` removed.
    fn preview(&self, sql: &str) -> Result<ResultSet, AdminError>;

    /// The shard holding the row of `table` whose shard key is `key` (as the client would write
    /// it in SQL, quotes removed). A reference or default table: the shard(s) it lives on.
    fn where_is(&self, table: &str, key: &str) -> Result<String, AdminError>;

    /// Re-reads the config file, validates it, applies it without dropping sessions and
    /// returns the changes, one line each (empty: no change). A file that does not read or
    /// validate: `Err` with the reason, and the running config stays. Also called on SIGHUP.
    async fn reload_config(&self) -> Result<Vec<String>, AdminError>;

    /// Ends a data-port session (`query_only == false`, like `KILL`), or only the statement it
    /// runs (`KILL QUERY`). Unknown id: [`AdminError::no_such_session`].
    async fn kill(&self, session_id: u64, query_only: bool) -> Result<(), AdminError>;

    /// Planned switchover of `shard` to its best replica; returns a one-line account of what
    /// happened. Until failover lands: not supported.
    async fn switchover(&self, shard: &str) -> Result<String, AdminError> {
        let _ = shard;
        Err(AdminError::not_supported(
            "SWITCHOVER is not supported yet (lands with failover)",
        ))
    }

    /// What moving the running config to the config file at `path` would move, as
    /// `(section, detail)` lines ([`crate::plan::reshard::ReshardPlan::lines`]); rows are
    /// counted (approximately) on the running shards. Changes nothing.
    async fn reshard_plan(&self, path: &str) -> Result<Vec<(String, String)>, AdminError> {
        let _ = path;
        Err(AdminError::not_supported(
            "RESHARD PLAN is not available here",
        ))
    }

    /// Planned switchover of `shard` to `target` (or its best replica): `SWITCHOVER <shard>
    /// [TO <replica>]`; a one-line account of what happened (with the write pause).
    async fn switchover_to(&self, shard: &str, target: Option<&str>) -> Result<String, AdminError> {
        match target {
            None => self.switchover(shard).await,
            Some(_) => Err(AdminError::not_supported(
                "SWITCHOVER ... TO is not supported",
            )),
        }
    }

    /// Unplanned failover of `shard` now: `FAILOVER <shard> [FORCE]`. Without FORCE only a
    /// replica holding every acknowledged write is promoted; with it, the best one anyway.
    async fn failover(&self, shard: &str, force: bool) -> Result<String, AdminError> {
        let _ = (shard, force);
        Err(AdminError::not_supported("FAILOVER is not supported"))
    }

    /// `SHOW FAILOVERS`: past switches with their timings and reasons.
    fn failovers(&self) -> Result<ResultSet, AdminError> {
        Err(AdminError::not_supported("SHOW FAILOVERS is not supported"))
    }

    /// Progress of a resharding as rows (`super::render::reshard_status`).
    fn reshard_status(&self) -> Result<ResultSet, AdminError> {
        Err(AdminError::not_supported(
            "SHOW RESHARD STATUS is not available here",
        ))
    }

    /// `RESHARD START '<file>'`: starts moving the rows to that config's placement; returns
    /// what started, one line each.
    async fn reshard_start(&self, path: &str) -> Result<Vec<String>, AdminError> {
        let _ = path;
        Err(AdminError::not_supported(
            "RESHARD START is not available here",
        ))
    }

    /// `RESHARD CANCEL`: stops a resharding before its cutover and rolls it back.
    async fn reshard_cancel(&self) -> Result<String, AdminError> {
        Err(AdminError::not_supported(
            "RESHARD CANCEL is not available here",
        ))
    }

    /// `RESHARD CLEANUP`: after the cutover, deletes the moved rows from their old shards.
    async fn reshard_cleanup(&self) -> Result<String, AdminError> {
        Err(AdminError::not_supported(
            "RESHARD CLEANUP is not available here",
        ))
    }
}
