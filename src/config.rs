//! The proxy's configuration: one TOML file, the DBA's interface.
//!
//! Every field is documented in `docs/configuration.md`; `config/example.toml` is a commented
//! example. A config is validated as a whole before it is used ([`Config::validate`]), so a
//! running proxy never holds a half-valid config: a bad file is rejected with the reason.

use std::collections::HashSet;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address of the MySQL data port, e.g. `127.0.0.1:6033`.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Address of the admin port (mysql CLI), e.g. `127.0.0.1:6032`. Absent: no admin port.
    #[serde(default)]
    pub admin_listen: Option<String>,
    /// Address of the HTTP port serving `/metrics` and the status page. Absent: not served.
    #[serde(default)]
    pub http_listen: Option<String>,
    /// Who may connect to the data port.
    #[serde(default)]
    pub users: Vec<User>,
    /// Who may connect to the admin port.
    #[serde(default)]
    pub admin_users: Vec<User>,
    /// How the proxy logs in to every backend and how it treats them.
    pub backend: Backend,
    /// Settings of the frontend (client-facing) side.
    #[serde(default)]
    pub frontend: Frontend,
    /// The shards, each a primary and its replicas.
    pub shards: Vec<Shard>,
    /// The consistent-hash ring.
    #[serde(default)]
    pub ring: Ring,
    /// Which tables are sharded and how.
    pub sharding: Sharding,
    /// Automatic failover: when to promote a replica, how long statements wait meanwhile,
    /// where the topology is persisted.
    #[serde(default)]
    pub failover: Failover,
    /// The replication login new primaries are followed with (`CHANGE MASTER TO`). Absent:
    /// the other replicas are not repointed after a promotion (logged).
    #[serde(default)]
    pub replication: Option<Replication>,
    /// The audit log (absent: none).
    #[serde(default)]
    pub audit: AuditConfig,
    /// TLS on the data port (`[tls]` with `cert` and `key`). Absent: clear text only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<Tls>,
    /// Bounds of the merge of scatter reads.
    #[serde(default)]
    pub merge: Merge,
    /// The plan cache of text statements.
    #[serde(default)]
    pub plan_cache: PlanCache,
    /// Transactions that reach several shards (two-phase commit and its recovery).
    #[serde(default)]
    pub transactions: Transactions,
    /// Several proxies deciding failovers as one, through etcd. Absent: this proxy decides
    /// alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coordination: Option<Coordination>,
    /// Online resharding (`RESHARD START`): the cutover's bound and the copy's batch size.
    #[serde(default)]
    pub reshard: Reshard,
}

/// `[coordination]`: several proxies of one cluster agree through etcd on who decides
/// failovers (a lease on a leader key) and on the topology (one key every proxy watches).
/// Read at start only: a reload does not change it.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Coordination {
    /// etcd client endpoints, `host:port` (or `http://host:port`).
    pub etcd: Vec<String>,
    /// Names the proxies that share one topology: their keys live under
    /// `/shardproxy/<cluster>/`.
    #[serde(default = "default_coordination_cluster")]
    pub cluster: String,
    /// Time to live of the leader's lease, in seconds (at least 3): how long a dead leader
    /// blocks failovers, and the bound of the fencing argument (docs/operations.md).
    #[serde(default = "default_lease_ttl_s")]
    pub lease_ttl_s: u64,
    /// This proxy's name in etcd and in the logs. Absent: `<hostname>:<pid>:<listen>`.
    #[serde(default)]
    pub name: Option<String>,
}

fn default_coordination_cluster() -> String {
    "default".to_string()
}
fn default_lease_ttl_s() -> u64 {
    5
}

/// `[reshard]`: how an online move of rows between shards runs (docs/resharding.md).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Reshard {
    /// Longest write pause at the cutover; past it the cutover is abandoned, traffic resumes
    /// on the old ring and the cutover is tried again. Bounded by `failover.buffer_ms` (held
    /// statements wait at most that long).
    #[serde(default = "default_reshard_cutover_timeout_ms")]
    pub cutover_timeout_ms: u64,
    /// Rows read and written per batch of the copy.
    #[serde(default = "default_reshard_batch_rows")]
    pub batch_rows: usize,
    /// Pause between two batches of the copy, so the live load keeps its latency.
    #[serde(default)]
    pub batch_pause_ms: u64,
    /// Seconds after the cutover at which the proxy runs `RESHARD CLEANUP` by itself (the
    /// moved rows deleted from their old shards); 0: only when an operator asks.
    #[serde(default)]
    pub cleanup_after_s: u64,
}

impl Default for Reshard {
    fn default() -> Self {
        Reshard {
            cutover_timeout_ms: default_reshard_cutover_timeout_ms(),
            batch_rows: default_reshard_batch_rows(),
            batch_pause_ms: 0,
            cleanup_after_s: 0,
        }
    }
}

fn default_reshard_cutover_timeout_ms() -> u64 {
    2000
}
fn default_reshard_batch_rows() -> usize {
    1000
}

/// `[failover]`: automatic promotion of a replica when a shard's primary is down.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Failover {
    /// Promote automatically (otherwise only `FAILOVER`/`SWITCHOVER` on the admin port).
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// How long a primary must have been down (failed health checks) before a promotion.
    #[serde(default = "default_failover_after_ms")]
    pub after_ms: u64,
    /// Longest time a statement for a failing shard waits for its new primary.
    #[serde(default = "default_failover_buffer_ms")]
    pub buffer_ms: u64,
    /// Most statements that may wait for one shard at once; more get an error at once.
    #[serde(default = "default_failover_buffer_max")]
    pub buffer_max: usize,
    /// Longest wait for the chosen replica to apply what it received (`MASTER_GTID_WAIT`).
    #[serde(default = "default_failover_catchup_ms")]
    pub catchup_ms: u64,
    /// File where the topology (primaries, fenced servers) is written at every change and read
    /// at start. Absent: promotions are forgotten at restart.
    #[serde(default)]
    pub state_file: Option<String>,
}

impl Default for Failover {
    fn default() -> Self {
        Failover {
            enabled: true,
            after_ms: default_failover_after_ms(),
            buffer_ms: default_failover_buffer_ms(),
            buffer_max: default_failover_buffer_max(),
            catchup_ms: default_failover_catchup_ms(),
            state_file: None,
        }
    }
}

/// `[transactions]`: what a transaction that reaches a second shard does (see
/// `docs/transactions.md`).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Transactions {
    /// `twopc` (the default): atomic across shards with two-phase commit over MariaDB XA;
    /// `single`: a transaction stays on its first shard and a write elsewhere is refused.
    /// A session changes its own with `SET shardproxy_transaction_mode = ...`.
    #[serde(default)]
    pub transaction_mode: TransactionMode,
    /// How often each proxy looks for prepared XA transactions on every shard primary and
    /// resolves them by the decision log.
    #[serde(default = "default_recovery_interval_ms")]
    pub recovery_interval_ms: u64,
    /// A prepared transaction with no decision after this long is rolled back by recovery
    /// (its coordinator is presumed gone; a coordinator still alive is fenced off by the
    /// decision row recovery writes, so this only bounds how long locks stay held).
    #[serde(default = "default_recovery_timeout_ms")]
    pub recovery_timeout_ms: u64,
}

impl Default for Transactions {
    fn default() -> Self {
        Transactions {
            transaction_mode: TransactionMode::default(),
            recovery_interval_ms: default_recovery_interval_ms(),
            recovery_timeout_ms: default_recovery_timeout_ms(),
        }
    }
}

/// Bounds of the merge of scatter reads (`[merge]`). Plain and ordered scatter reads stream
/// (one row per shard in memory); grouped, aggregated and DISTINCT results are merged in
/// memory, so they are bounded here.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Merge {
    /// Most shard rows a grouped, aggregated or DISTINCT merge may hold (the shards group
    /// first, so this is at most the number of groups times the number of shards); past it
    /// the statement fails with error 1038. 0: no bound.
    #[serde(default = "default_merge_max_groups")]
    pub max_groups: usize,
    /// Most values (rows times columns) an uncorrelated subquery over sharded tables may
    /// return: the proxy runs it first and writes its values into the outer statement; past
    /// it the statement fails with error 1235 naming this key. 0: no bound.
    #[serde(default = "default_merge_max_subquery_values")]
    pub max_subquery_values: usize,
}

impl Default for Merge {
    fn default() -> Self {
        Merge {
            max_groups: default_merge_max_groups(),
            max_subquery_values: default_merge_max_subquery_values(),
        }
    }
}

fn default_merge_max_subquery_values() -> usize {
    10_000
}

/// The audit log: one JSON line per session start and end and per statement.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// The file the lines are appended to; reopened on SIGHUP (log rotation). Absent: no log.
    #[serde(default)]
    pub path: Option<String>,
    /// What a statement line shows of the statement.
    #[serde(default)]
    pub statements: AuditStatements,
    /// Records waiting for the writer at most; when full, records are dropped and counted,
    /// statements never wait.
    #[serde(default = "default_audit_queue")]
    pub queue: usize,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            path: None,
            statements: AuditStatements::default(),
            queue: default_audit_queue(),
        }
    }
}

fn default_merge_max_groups() -> usize {
    1_000_000
}

/// The plan cache of text statements (`[plan_cache]`): plans by statement shape (literals
/// taken out), per session thread.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PlanCache {
    /// Shapes kept per session thread (least recently used dropped first); 0 disables the
    /// cache.
    #[serde(default = "default_plan_cache_size")]
    pub size: usize,
}

impl Default for PlanCache {
    fn default() -> Self {
        PlanCache {
            size: default_plan_cache_size(),
        }
    }
}

/// `[replication]`: the login replicas use to follow a new primary.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Replication {
    pub user: String,
    pub password: String,
}

fn default_true() -> bool {
    true
}
fn default_failover_after_ms() -> u64 {
    1500
}
fn default_failover_buffer_ms() -> u64 {
    8000
}
fn default_failover_buffer_max() -> usize {
    1000
}
fn default_failover_catchup_ms() -> u64 {
    2000
}
fn default_health_timeout_ms() -> u64 {
    1000
}
fn default_health_fail_after() -> u32 {
    2
}
fn default_max_replica_lag_ms() -> u64 {
    5000
}
fn default_read_your_writes_wait_ms() -> u64 {
    100
}

/// What the audit log shows of each statement.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AuditStatements {
    /// The text with literals replaced by `?` (no data in the log).
    #[default]
    Digest,
    /// The text as the client sent it.
    Text,
    /// No statement text.
    None,
}

fn default_audit_queue() -> usize {
    10_000
}

/// The data port's TLS certificate and key (PEM files). With them the proxy offers TLS in
/// its greeting and upgrades the connections that ask for it.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    /// PEM file with the certificate chain, the proxy's own certificate first.
    pub cert: String,
    /// PEM file with the private key (PKCS#8, PKCS#1 or SEC1).
    pub key: String,
}

fn default_plan_cache_size() -> usize {
    1024
}

/// What a transaction does when it reaches a second shard.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum TransactionMode {
    /// Refused with both shards named (error 1235): transactions stay on one shard.
    Single,
    /// Atomic commit across shards (two-phase commit over MariaDB XA).
    #[default]
    Twopc,
}

impl TransactionMode {
    /// The mode named by `SET shardproxy_transaction_mode = ...` (case-insensitive).
    pub fn parse(name: &str) -> Option<TransactionMode> {
        match name.to_ascii_lowercase().as_str() {
            "single" => Some(TransactionMode::Single),
            "twopc" => Some(TransactionMode::Twopc),
            _ => None,
        }
    }

    /// The mode's name as configured.
    pub fn name(self) -> &'static str {
        match self {
            TransactionMode::Single => "single",
            TransactionMode::Twopc => "twopc",
        }
    }
}

fn default_recovery_interval_ms() -> u64 {
    5_000
}
fn default_recovery_timeout_ms() -> u64 {
    30_000
}

/// A user allowed to log in to the proxy.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct User {
    pub name: String,
    /// Clear-text password.
    #[serde(default)]
    pub password: Option<String>,
    /// Stored hash instead of clear text, in MySQL's `PASSWORD()` form: `*` followed by
    /// 40 hex digits of SHA1(SHA1(password)).
    #[serde(default)]
    pub password_hash: Option<String>,
    /// Refuse this user's login over clear text (MariaDB's `REQUIRE SSL`): the client gets
    /// 1045 access denied, as from MariaDB.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub require_tls: bool,
    /// The databases this user may use (`["fund"]`); absent: all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub databases: Option<Vec<String>>,
    /// What this user may do: `"read_only"`, `"read_write"`, `"ddl"`, `"all"`, or a list of
    /// privileges (`["select", "insert"]`); absent: all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<RoleSetting>,
    /// Most sessions this user may have open at once (MariaDB's `max_user_connections`);
    /// absent: no limit of its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<usize>,
    /// Where this user's reads outside a transaction go: `"primary"` (absent), `"replica"`
    /// or `"replica_preferred"` (see `docs/routing.md`); a session changes its own with
    /// `SET shardproxy_read_from = ...`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_from: Option<ReadFrom>,
}

/// Where a session's reads outside a transaction may go (`read_from`).
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum ReadFrom {
    /// Every statement on the shard's primary.
    #[default]
    Primary,
    /// Reads on a usable replica only; the primary when none is usable (said in PREVIEW and
    /// counted per backend), never an error.
    Replica,
    /// Reads on a usable replica when there is one, else the primary.
    ReplicaPreferred,
}

impl ReadFrom {
    /// The setting named by `SET shardproxy_read_from = ...` (case-insensitive).
    pub fn parse(name: &str) -> Option<ReadFrom> {
        match name.to_ascii_lowercase().as_str() {
            "primary" => Some(ReadFrom::Primary),
            "replica" => Some(ReadFrom::Replica),
            "replica_preferred" => Some(ReadFrom::ReplicaPreferred),
            _ => None,
        }
    }

    /// The setting's name as configured.
    pub fn name(self) -> &'static str {
        match self {
            ReadFrom::Primary => "primary",
            ReadFrom::Replica => "replica",
            ReadFrom::ReplicaPreferred => "replica_preferred",
        }
    }
}

/// A user's `role`: a named role or the list of privileges it gives.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(untagged)]
pub enum RoleSetting {
    Named(Role),
    Kinds(Vec<Privilege>),
}

/// The named roles (see `frontend::privileges` for what each gives).
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// SELECT only (and the statements that change nothing: SHOW, SET, transactions).
    ReadOnly,
    /// SELECT, INSERT, UPDATE, DELETE, EXECUTE (CALL).
    ReadWrite,
    /// read_write and CREATE, DROP, ALTER, INDEX, CREATE VIEW, TRIGGER.
    Ddl,
    /// Everything, including GRANT, users, global settings, replication.
    All,
}

/// A privilege, as MariaDB names it, in a user's `role` list.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Privilege {
    Select,
    Insert,
    Update,
    Delete,
    Create,
    Drop,
    Alter,
    Index,
    CreateView,
    Trigger,
    Execute,
    /// Global privileges: GRANT, CREATE USER, SET GLOBAL, FLUSH, replication, anything the
    /// proxy does not recognise.
    Admin,
}

impl Privilege {
    /// Every privilege.
    pub const ALL: [Privilege; 12] = [
        Privilege::Select,
        Privilege::Insert,
        Privilege::Update,
        Privilege::Delete,
        Privilege::Create,
        Privilege::Drop,
        Privilege::Alter,
        Privilege::Index,
        Privilege::CreateView,
        Privilege::Trigger,
        Privilege::Execute,
        Privilege::Admin,
    ];

    /// The name MariaDB's messages use (`SELECT command denied …`).
    pub fn sql_name(self) -> &'static str {
        match self {
            Privilege::Select => "SELECT",
            Privilege::Insert => "INSERT",
            Privilege::Update => "UPDATE",
            Privilege::Delete => "DELETE",
            Privilege::Create => "CREATE",
            Privilege::Drop => "DROP",
            Privilege::Alter => "ALTER",
            Privilege::Index => "INDEX",
            Privilege::CreateView => "CREATE VIEW",
            Privilege::Trigger => "TRIGGER",
            Privilege::Execute => "EXECUTE",
            Privilege::Admin => "SUPER",
        }
    }
}

/// Backend login and limits.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Backend {
    pub user: String,
    pub password: String,
    /// Time allowed to open and authenticate one backend connection.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// Longest wait for the next packet of a backend's answer; 0 waits forever.
    #[serde(default = "default_query_timeout_ms")]
    pub query_timeout_ms: u64,
    /// Longest wait for a free pooled connection when the pool is at its size limit.
    #[serde(default = "default_pool_wait_ms")]
    pub pool_wait_ms: u64,
    /// Most connections the proxy opens to one backend server.
    #[serde(default = "default_pool_max")]
    pub pool_max: usize,
    /// Idle connections kept per backend server.
    #[serde(default = "default_pool_idle")]
    pub pool_idle: usize,
    /// Interval between health checks of every backend.
    #[serde(default = "default_health_interval_ms")]
    pub health_interval_ms: u64,
    /// Longest wait for one health check's answer; slower counts as a failed check.
    #[serde(default = "default_health_timeout_ms")]
    pub health_timeout_ms: u64,
    /// Failed checks in a row before a backend counts as down.
    #[serde(default = "default_health_fail_after")]
    pub health_fail_after: u32,
    /// A replica whose applied position is older than this (ms) leaves the read set until it
    /// catches up (a shard may set its own). Measured against the primary's positions seen by
    /// the health checks, so its resolution is `health_interval_ms`.
    #[serde(default = "default_max_replica_lag_ms")]
    pub max_replica_lag_ms: u64,
    /// With `read_from = "replica"`, how long a read after the session's own write may wait
    /// on a replica for that write (`MASTER_GTID_WAIT`) before it goes to the primary; 0:
    /// never waits. `replica_preferred` never waits.
    #[serde(default = "default_read_your_writes_wait_ms")]
    pub read_your_writes_wait_ms: u64,
    /// Log in to every backend over TLS, verifying its certificate against `tls_ca` (a shard
    /// may say otherwise with its own `tls`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tls: bool,
    /// PEM file of the CA(s) that signed the backends' certificates; needed with TLS. The
    /// certificate must name the host of the server's address (IP or DNS name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_ca: Option<String>,
}

/// Client-facing settings.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Frontend {
    /// Authentication plugin proposed in the handshake: `mysql_native_password` or
    /// `caching_sha2_password`. A client may answer with the other one; both are accepted.
    #[serde(default = "default_auth_plugin")]
    pub auth_plugin: String,
    /// Maximum client connections.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// On SIGTERM, how long running statements may take to finish before the proxy exits.
    #[serde(default = "default_shutdown_grace_ms")]
    pub shutdown_grace_ms: u64,
    /// Largest client packet payload accepted (bytes), like MariaDB's `max_allowed_packet`.
    #[serde(default = "default_max_allowed_packet")]
    pub max_allowed_packet: usize,
    /// Path of a PEM RSA private key for caching_sha2_password full authentication. Absent: a
    /// key is generated at start.
    #[serde(default)]
    pub rsa_private_key: Option<String>,
    /// Statements slower than this are logged with their plan; 0 disables the slow log.
    #[serde(default = "default_slow_query_ms")]
    pub slow_query_ms: u64,
    /// How long the proxy waits for a client that stops reading its answer before closing that
    /// connection (MariaDB's `net_write_timeout`); 0 waits forever.
    #[serde(default = "default_write_timeout_ms")]
    pub write_timeout_ms: u64,
    /// Seconds a client session may stay idle before the proxy disconnects it (MariaDB's
    /// `wait_timeout`; a client's `SET wait_timeout = N` changes it for its session); 0: never.
    #[serde(default = "default_idle_timeout_s")]
    pub wait_timeout: u64,
    /// The same for clients that connect with CLIENT_INTERACTIVE (the mysql CLI): MariaDB's
    /// `interactive_timeout`, which becomes such a session's `wait_timeout`.
    #[serde(default = "default_idle_timeout_s")]
    pub interactive_timeout: u64,
    /// A client that has not finished its handshake (greeting to login) after this long is
    /// dropped (MariaDB's `connect_timeout`); 0 waits forever.
    #[serde(default = "default_handshake_timeout_ms")]
    pub handshake_timeout_ms: u64,
    /// Failed logins in a row after which a client address is refused with 1129 (MariaDB's
    /// `max_connect_errors`); 0 never refuses.
    #[serde(default = "default_max_connect_errors")]
    pub max_connect_errors: u32,
    /// How long a refused address stays refused.
    #[serde(default = "default_connect_error_block_ms")]
    pub connect_error_block_ms: u64,
}

impl Default for Frontend {
    fn default() -> Self {
        Frontend {
            auth_plugin: default_auth_plugin(),
            max_connections: default_max_connections(),
            shutdown_grace_ms: default_shutdown_grace_ms(),
            max_allowed_packet: default_max_allowed_packet(),
            rsa_private_key: None,
            slow_query_ms: default_slow_query_ms(),
            write_timeout_ms: default_write_timeout_ms(),
            wait_timeout: default_idle_timeout_s(),
            interactive_timeout: default_idle_timeout_s(),
            handshake_timeout_ms: default_handshake_timeout_ms(),
            max_connect_errors: default_max_connect_errors(),
            connect_error_block_ms: default_connect_error_block_ms(),
        }
    }
}

/// One shard: a primary and zero or more replicas holding the same rows.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Shard {
    pub name: String,
    pub primary: String,
    #[serde(default)]
    pub replicas: Vec<String>,
    /// Share of the key space relative to other shards (virtual nodes = weight × ring.vnodes).
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// TLS to this shard's servers, instead of `backend.tls`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<bool>,
    /// This shard's CA file, instead of `backend.tls_ca`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_ca: Option<String>,
    /// This shard's bound on replica lag for reads, instead of `backend.max_replica_lag_ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_replica_lag_ms: Option<u64>,
}

/// How the proxy talks to one shard's servers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Transport<'a> {
    /// Clear-text TCP.
    Clear,
    /// TLS, verifying the servers' certificates against this CA file.
    Tls { ca: &'a str },
    /// TLS asked for without a CA file (refused by validation).
    TlsWithoutCa,
}

impl Shard {
    /// TLS or clear text to this shard's servers: the shard's own `tls`/`tls_ca`, else the
    /// `[backend]` ones.
    pub fn transport<'a>(&'a self, backend: &'a Backend) -> Transport<'a> {
        if !self.tls.unwrap_or(backend.tls) {
            return Transport::Clear;
        }
        match self.tls_ca.as_deref().or(backend.tls_ca.as_deref()) {
            Some(ca) => Transport::Tls { ca },
            None => Transport::TlsWithoutCa,
        }
    }
}

/// The consistent-hash ring.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Ring {
    /// Virtual nodes per unit of weight.
    #[serde(default = "default_vnodes")]
    pub vnodes: u32,
}

impl Default for Ring {
    fn default() -> Self {
        Ring {
            vnodes: default_vnodes(),
        }
    }
}

/// Table placement rules.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Sharding {
    /// Where every table not declared sharded lives.
    pub default_shard: String,
    /// Tables copied to every shard; writes go to all shards.
    #[serde(default)]
    pub reference_tables: Vec<String>,
    /// Sharded tables.
    #[serde(default)]
    pub tables: Vec<ShardedTable>,
    /// Most rows a join executed by the proxy may hold (the rows read from both tables, and
    /// the joined rows, each); past it the statement fails with error 1235. 0: no bound.
    #[serde(default = "default_max_join_rows")]
    pub max_join_rows: usize,
}

fn default_max_join_rows() -> usize {
    100_000
}

/// A table whose rows are spread over the ring by one key column.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ShardedTable {
    /// Table name, optionally `db.table`.
    pub name: String,
    /// The shard key column.
    pub key: String,
    /// The key comes from a global sequence when an INSERT does not give it (omitted, NULL,
    /// `DEFAULT`, or 0 unless the session's sql_mode has NO_AUTO_VALUE_ON_ZERO): `true` names
    /// the sequence after the table, a string names it (tables naming the same sequence share
    /// one id space). See `crate::sequence`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequence: Option<SequenceSetting>,
    /// Ids a proxy reserves from the sequence at a time (one short transaction on the default
    /// shard per block). Ids of a block not used before the proxy stops are skipped, as InnoDB
    /// skips auto-increment values after a restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequence_cache: Option<u64>,
}

/// `sequence = true | false | "name"` of a sharded table.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(untagged)]
pub enum SequenceSetting {
    On(bool),
    Named(String),
}

/// Ids reserved per block when `sequence_cache` is not given.
pub const DEFAULT_SEQUENCE_CACHE: u64 = 1000;

impl ShardedTable {
    /// The sequence this table's key comes from (lowercase name), if any.
    pub fn sequence_name(&self) -> Option<String> {
        match &self.sequence {
            None | Some(SequenceSetting::On(false)) => None,
            Some(SequenceSetting::On(true)) => Some(self.name.to_ascii_lowercase()),
            Some(SequenceSetting::Named(n)) => Some(n.to_ascii_lowercase()),
        }
    }

    /// Ids reserved per block.
    pub fn sequence_block(&self) -> u64 {
        self.sequence_cache.unwrap_or(DEFAULT_SEQUENCE_CACHE)
    }
}

fn default_listen() -> String {
    "127.0.0.1:6033".into()
}
fn default_connect_timeout_ms() -> u64 {
    10_000
}
fn default_query_timeout_ms() -> u64 {
    0
}
fn default_pool_wait_ms() -> u64 {
    5000
}
fn default_pool_max() -> usize {
    256
}
fn default_pool_idle() -> usize {
    64
}
fn default_health_interval_ms() -> u64 {
    1000
}
fn default_auth_plugin() -> String {
    "mysql_native_password".into()
}
fn default_max_connections() -> usize {
    4096
}
fn default_shutdown_grace_ms() -> u64 {
    10_000
}
fn default_max_allowed_packet() -> usize {
    64 << 20
}
fn default_slow_query_ms() -> u64 {
    1000
}
fn default_write_timeout_ms() -> u64 {
    60_000
}
fn default_idle_timeout_s() -> u64 {
    28_800
}

fn default_handshake_timeout_ms() -> u64 {
    30_000
}
fn default_max_connect_errors() -> u32 {
    100
}
fn default_connect_error_block_ms() -> u64 {
    300_000
}
fn default_weight() -> u32 {
    1
}
fn default_vnodes() -> u32 {
    256
}

impl Config {
    /// Reads, parses and validates a config file.
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read config {}: {e}", path.display()))?;
        Config::parse(&text).map_err(|e| anyhow::anyhow!("config {}: {e}", path.display()))
    }

    /// Parses and validates config text.
    pub fn parse(text: &str) -> anyhow::Result<Config> {
        let config: Config = toml::from_str(text)?;
        config.validate()?;
        Ok(config)
    }

    /// Checks what serde cannot: references between sections, duplicates, known values.
    pub fn validate(&self) -> anyhow::Result<()> {
        use anyhow::bail;
        if self.shards.is_empty() {
            bail!("at least one [[shards]] entry is required");
        }
        let mut names = HashSet::new();
        for s in &self.shards {
            if s.name.is_empty() {
                bail!("a shard has an empty name");
            }
            if !names.insert(s.name.as_str()) {
                bail!("shard {:?} is declared twice", s.name);
            }
            if s.weight == 0 {
                bail!(
                    "shard {:?} has weight 0; use a weight of at least 1",
                    s.name
                );
            }
        }
        for s in &self.shards {
            if s.transport(&self.backend) == Transport::TlsWithoutCa {
                bail!(
                    "shard {:?}: TLS to the backends needs a CA file (backend.tls_ca or the shard's tls_ca)",
                    s.name
                );
            }
        }
        if let Some(t) = &self.tls {
            if t.cert.is_empty() || t.key.is_empty() {
                bail!("[tls] needs both cert and key (PEM files)");
            }
        }
        if !names.contains(self.sharding.default_shard.as_str()) {
            bail!(
                "sharding.default_shard {:?} is not a declared shard",
                self.sharding.default_shard
            );
        }
        if self.ring.vnodes == 0 {
            bail!("ring.vnodes must be at least 1");
        }
        if self.transactions.recovery_interval_ms == 0 {
            bail!("transactions.recovery_interval_ms must be at least 1");
        }
        if let Some(c) = &self.coordination {
            if c.etcd.is_empty() || c.etcd.iter().any(|e| e.trim().is_empty()) {
                bail!("coordination.etcd needs at least one endpoint (\"host:port\")");
            }
            if c.cluster.is_empty()
                || !c
                    .cluster
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '_' | '.' | '-'))
            {
                bail!("coordination.cluster must be letters, digits, '_', '.' or '-'");
            }
            if !(3..=3600).contains(&c.lease_ttl_s) {
                bail!("coordination.lease_ttl_s must be between 3 and 3600 (seconds)");
            }
        }
        for u in self.users.iter().chain(self.admin_users.iter()) {
            match (&u.password, &u.password_hash) {
                (Some(_), Some(_)) => {
                    bail!(
                        "user {:?}: give password or password_hash, not both",
                        u.name
                    )
                }
                (None, Some(h))
                    if !(h.len() == 41
                        && h.starts_with('*')
                        && h[1..].chars().all(|c| c.is_ascii_hexdigit())) =>
                {
                    bail!(
                        "user {:?}: password_hash must be '*' and 40 hex digits",
                        u.name
                    );
                }
                _ => {}
            }
        }
        match self.frontend.auth_plugin.as_str() {
            "mysql_native_password" | "caching_sha2_password" => {}
            other => bail!(
                "frontend.auth_plugin {other:?} is not supported; use mysql_native_password or caching_sha2_password"
            ),
        }
        let mut tables = HashSet::new();
        for t in &self.sharding.tables {
            if !tables.insert(t.name.to_ascii_lowercase()) {
                bail!("sharded table {:?} is declared twice", t.name);
            }
            if t.key.is_empty() {
                bail!("sharded table {:?} has no key column", t.name);
            }
            if let Some(name) = t.sequence_name() {
                // The name is stored as a string literal in shardproxy.sequences: keep it plain.
                if name.is_empty()
                    || name.len() > 64
                    || !name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
                {
                    bail!(
                        "sharded table {:?}: sequence name {name:?} must be 1 to 64 letters, \
                         digits, '_', '.' or '-'",
                        t.name
                    );
                }
            } else if t.sequence_cache.is_some() {
                bail!(
                    "sharded table {:?}: sequence_cache is set but the table has no sequence",
                    t.name
                );
            }
            if let Some(c) = t.sequence_cache {
                if c == 0 || c > 1_000_000_000 {
                    bail!(
                        "sharded table {:?}: sequence_cache must be between 1 and 1000000000",
                        t.name
                    );
                }
            }
        }
        for r in &self.sharding.reference_tables {
            if tables.contains(&r.to_ascii_lowercase()) {
                bail!("table {r:?} is declared both sharded and reference");
            }
        }
        Ok(())
    }

    /// The shard with this name.
    pub fn shard(&self, name: &str) -> Option<&Shard> {
        self.shards.iter().find(|s| s.name == name)
    }

    /// The bound on replica lag for reads on `shard`: its own `max_replica_lag_ms`, else
    /// `backend.max_replica_lag_ms`.
    pub fn max_replica_lag_ms(&self, shard: &str) -> u64 {
        self.shard(shard)
            .and_then(|s| s.max_replica_lag_ms)
            .unwrap_or(self.backend.max_replica_lag_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
        [[users]]
        name = "app"
        password = "app"
        [backend]
        user = "app"
        password = "app"
        [[shards]]
        name = "s1"
        primary = "127.0.0.1:3311"
        replicas = ["127.0.0.1:3312"]
        [sharding]
        default_shard = "s1"
    "#;

    #[test]
    fn minimal_config_gets_defaults() {
        let c = Config::parse(MINIMAL).unwrap();
        assert_eq!(c.listen, "127.0.0.1:6033");
        assert_eq!(c.ring.vnodes, 256);
        assert_eq!(c.shards[0].weight, 1);
        assert_eq!(c.frontend.auth_plugin, "mysql_native_password");
    }

    #[test]
    fn transaction_mode_defaults_to_twopc_and_accepts_single() {
        let c = Config::parse(MINIMAL).unwrap();
        assert_eq!(c.transactions.transaction_mode, TransactionMode::Twopc);
        let text = format!("{MINIMAL}\n[transactions]\ntransaction_mode = \"single\"\n");
        let c = Config::parse(&text).unwrap();
        assert_eq!(c.transactions.transaction_mode, TransactionMode::Single);
        let bad = format!("{MINIMAL}\n[transactions]\ntransaction_mode = \"xa\"\n");
        assert!(Config::parse(&bad).is_err());
        assert_eq!(
            TransactionMode::parse("TwoPC"),
            Some(TransactionMode::Twopc)
        );
        assert_eq!(TransactionMode::parse("both"), None);
    }

    #[test]
    fn coordination_is_optional_with_defaults_and_checked() {
        assert_eq!(Config::parse(MINIMAL).unwrap().coordination, None);
        let text = format!("{MINIMAL}\n[coordination]\netcd = [\"127.0.0.1:2379\"]\n");
        let c = Config::parse(&text).unwrap().coordination.unwrap();
        assert_eq!(c.etcd, vec!["127.0.0.1:2379".to_string()]);
        assert_eq!((c.cluster.as_str(), c.lease_ttl_s), ("default", 5));
        for bad in [
            "etcd = []",
            "etcd = [\"127.0.0.1:2379\"]\nlease_ttl_s = 1",
            "etcd = [\"127.0.0.1:2379\"]\ncluster = \"a/b\"",
        ] {
            let text = format!("{MINIMAL}\n[coordination]\n{bad}\n");
            assert!(Config::parse(&text).is_err(), "{bad}");
        }
    }

    #[test]
    fn unknown_default_shard_is_rejected() {
        let text = MINIMAL.replace("default_shard = \"s1\"", "default_shard = \"s9\"");
        let err = Config::parse(&text).unwrap_err().to_string();
        assert!(err.contains("s9"), "{err}");
    }

    #[test]
    fn unknown_field_is_rejected() {
        let text = format!("bogus = 1\n{MINIMAL}");
        assert!(Config::parse(&text).is_err());
    }

    #[test]
    fn sequence_settings() {
        let with = |extra: &str| {
            Config::parse(&format!(
                "{MINIMAL}\n[[sharding.tables]]\nname = \"Orders\"\nkey = \"id\"\n{extra}"
            ))
        };
        let c = with("").unwrap();
        assert_eq!(c.sharding.tables[0].sequence_name(), None);
        let c = with("sequence = true").unwrap();
        assert_eq!(
            c.sharding.tables[0].sequence_name().as_deref(),
            Some("orders")
        );
        assert_eq!(
            c.sharding.tables[0].sequence_block(),
            DEFAULT_SEQUENCE_CACHE
        );
        let c = with("sequence = \"Ids\"\nsequence_cache = 50").unwrap();
        assert_eq!(c.sharding.tables[0].sequence_name().as_deref(), Some("ids"));
        assert_eq!(c.sharding.tables[0].sequence_block(), 50);
        assert_eq!(
            with("sequence = false").unwrap().sharding.tables[0].sequence_name(),
            None
        );
        for bad in [
            "sequence = \"a'b\"",
            "sequence = \"\"",
            "sequence = true\nsequence_cache = 0",
            "sequence_cache = 10",
            "sequence = 3",
        ] {
            assert!(with(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bad_password_hash_is_rejected() {
        let text = MINIMAL.replace(
            "password = \"app\"\n        [backend]",
            "password_hash = \"xyz\"\n        [backend]",
        );
        assert!(Config::parse(&text).is_err());
    }
}
