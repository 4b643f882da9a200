//! `FixedOps`: an [`AdminOps`] over a fixed in-memory cluster, for testing the admin port and
//! the HTTP port through real clients with answers known in advance, in process and without
//! servers (the real `CoreOps` is tested in tests/core_ops.rs and tests/operations.rs).
//! Shards, tables and admin users come from a config file (so `RELOAD CONFIG` can be exercised
//! for real); health, sessions and counters are fixed.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use shardproxy::admin::diff::config_diff;
use shardproxy::admin::{
    AdminError, AdminOps, AdminUsers, BackendStatus, Health, RingShare, Role, SessionInfo,
    ShardStatus, TableRule,
};
use shardproxy::config::Config;
use shardproxy::protocol::resultset::{ColumnDef, ResultSet};
use tokio::net::TcpListener;

use super::ProxyConfig;

/// The config `FixedOps` starts from: three shards (s2 with weight 2, s3 without a replica),
/// `accounts` sharded by `user_id`, `currencies` a reference table, and a second admin user
/// `ops` with a password hash.
pub fn config() -> String {
    let replica = |a: &str| vec![a.to_string()];
    ProxyConfig::default()
        .without_listeners()
        .top("admin_listen = \"127.0.0.1:6032\"")
        .top("http_listen = \"127.0.0.1:6080\"")
        // PASSWORD('admin')
        .admin_user_with_hash("ops", "*4ACFE3202A5FF5CF467898FC58AAB1D615029441")
        .shard("s1", "127.0.0.1:3311", &replica("127.0.0.1:3312"))
        .shard("s2", "127.0.0.1:3321", &replica("127.0.0.1:3322"))
        .weight("s2", 2)
        .shard("s3", "127.0.0.1:3331", &[])
        .reference_table("currencies")
        .sharded_table("accounts", "user_id")
        .render()
}

/// The backend the fixed health data reports down.
pub const DOWN_BACKEND: &str = "127.0.0.1:3322";

pub struct FixedOps {
    pub config_path: PathBuf,
    state: Mutex<State>,
    pub admin_users: AdminUsers,
}

struct State {
    config: Config,
    down: HashSet<String>,
    sessions: Vec<SessionInfo>,
}

impl FixedOps {
    /// Writes [`config`] to `dir/shardproxy.toml` and loads it.
    pub fn new(dir: &std::path::Path) -> Arc<FixedOps> {
        let config_path = dir.join("shardproxy.toml");
        std::fs::write(&config_path, config()).unwrap();
        let config = Config::load(&config_path).unwrap();
        let admin_users = AdminUsers::new(config.admin_users.clone());
        Arc::new(FixedOps {
            config_path,
            admin_users,
            state: Mutex::new(State {
                config,
                down: [DOWN_BACKEND.to_string()].into_iter().collect(),
                sessions: vec![
                    SessionInfo {
                        id: 7,
                        client: "127.0.0.1:50001".into(),
                        user: "app".into(),
                        db: Some("fund".into()),
                        state: "query".into(),
                        pinned: false,
                        statement: Some("SELECT * FROM accounts WHERE user_id = 1".into()),
                        time_in_state: Duration::from_millis(1500),
                    },
                    SessionInfo {
                        id: 8,
                        client: "127.0.0.1:50002".into(),
                        user: "app".into(),
                        db: None,
                        state: "in transaction".into(),
                        pinned: true,
                        statement: None,
                        time_in_state: Duration::from_secs(12),
                    },
                ],
            }),
        })
    }

    fn config(&self) -> Config {
        self.state.lock().unwrap().config.clone()
    }

    /// Marks a backend down or up (the status page test flips one).
    pub fn set_down(&self, backend: &str, down: bool) {
        let mut st = self.state.lock().unwrap();
        if down {
            st.down.insert(backend.to_string());
        } else {
            st.down.remove(backend);
        }
    }

    fn shard_for(&self, key: &str) -> String {
        let config = self.config();
        let sum: u64 = key.bytes().map(u64::from).sum();
        config.shards[(sum % config.shards.len() as u64) as usize]
            .name
            .clone()
    }
}

fn text_rs(cols: &[&str], rows: Vec<Vec<&str>>) -> ResultSet {
    ResultSet {
        columns: cols.iter().map(|c| ColumnDef::text(c)).collect(),
        rows: rows
            .into_iter()
            .map(|r| {
                r.into_iter()
                    .map(|v| Some(Bytes::copy_from_slice(v.as_bytes())))
                    .collect()
            })
            .collect(),
        warnings: 0,
    }
}

/// The `SHOW RESHARD STATUS` rows of a move in its catch-up (what the status page shows).
pub const RESHARD_ROWS: [[&str; 12]; 2] = [
    [
        "catch-up", "accounts", "s1", "s3", "1536", "512", "880.5", "300", "0", "42", "", "",
    ],
    [
        "catch-up",
        "*",
        "",
        "",
        "1536",
        "512",
        "880.5",
        "300",
        "0",
        "42",
        "",
        "to three.toml",
    ],
];

#[async_trait]
impl AdminOps for FixedOps {
    fn reshard_status(&self) -> Result<ResultSet, AdminError> {
        Ok(text_rs(
            &shardproxy::plan::reshard_state::ReshardState::COLUMNS,
            RESHARD_ROWS.iter().map(|r| r.to_vec()).collect(),
        ))
    }

    fn shards(&self) -> Vec<ShardStatus> {
        let st = self.state.lock().unwrap();
        st.config
            .shards
            .iter()
            .map(|s| ShardStatus {
                name: s.name.clone(),
                primary: s.primary.clone(),
                replicas: s.replicas.clone(),
                weight: s.weight,
                status: if st.down.contains(&s.primary) {
                    "down".into()
                } else if s.replicas.iter().any(|r| st.down.contains(r)) {
                    "degraded".into()
                } else {
                    "ok".into()
                },
            })
            .collect()
    }

    fn backends(&self) -> Vec<BackendStatus> {
        let st = self.state.lock().unwrap();
        let mut out = Vec::new();
        for (i, s) in st.config.shards.iter().enumerate() {
            let servers = std::iter::once((&s.primary, Role::Primary))
                .chain(s.replicas.iter().map(|r| (r, Role::Replica)));
            for (addr, role) in servers {
                let down = st.down.contains(addr);
                out.push(BackendStatus {
                    address: addr.clone(),
                    shard: s.name.clone(),
                    role,
                    health: if down { Health::Down } else { Health::Up },
                    lag_seconds: match (role, down) {
                        (Role::Replica, false) => Some(i as u64),
                        _ => None,
                    },
                    pool_in_use: if down { 0 } else { 2 },
                    pool_idle: if down { 0 } else { 6 },
                    queries: 1000 * (i as u64 + 1),
                    errors: if down { 17 } else { 0 },
                    gtid_position: String::new(),
                    read_only: None,
                    lag_ms: None,
                    in_read_set: false,
                    reads: 0,
                    extra_gtids: String::new(),
                });
            }
        }
        out
    }

    fn ring(&self) -> Vec<RingShare> {
        let config = self.config();
        let total: u32 = config.shards.iter().map(|s| s.weight).sum();
        config
            .shards
            .iter()
            .map(|s| RingShare {
                shard: s.name.clone(),
                vnodes: s.weight * config.ring.vnodes,
                share: f64::from(s.weight) / f64::from(total),
            })
            .collect()
    }

    fn sessions(&self) -> Vec<SessionInfo> {
        self.state.lock().unwrap().sessions.clone()
    }

    fn proxy_status(&self) -> Vec<(String, String)> {
        [
            ("version", "0.1.0"),
            ("uptime_seconds", "3723"),
            ("connections", "2"),
            ("connections_total", "40"),
            ("questions", "123456"),
            ("qps", "1234.5"),
            ("errors", "17"),
            ("plan_cache_hits", "900"),
            ("plan_cache_misses", "100"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    fn table_rules(&self) -> Vec<TableRule> {
        // The live proxy's own rendering of the placement rules, over this fake's config.
        shardproxy::admin::core_ops::table_rules(&self.config())
    }

    fn preview(&self, sql: &str) -> Result<ResultSet, AdminError> {
        if sql.to_ascii_lowercase().starts_with("garbage") {
            return Err(AdminError::parse(format!("cannot parse: {sql}")));
        }
        Ok(text_rs(
            &["step", "shard", "sql", "merge"],
            vec![
                vec!["1", "s1", sql, "concat"],
                vec!["1", "s2", sql, "concat"],
                vec!["1", "s3", sql, "concat"],
            ],
        ))
    }

    fn where_is(&self, table: &str, key: &str) -> Result<String, AdminError> {
        let config = self.config();
        if config
            .sharding
            .tables
            .iter()
            .any(|t| t.name.eq_ignore_ascii_case(table))
        {
            Ok(self.shard_for(key))
        } else {
            Err(AdminError::wrong_arguments(format!(
                "table {table:?} is not sharded"
            )))
        }
    }

    async fn reload_config(&self) -> Result<Vec<String>, AdminError> {
        let new =
            Config::load(&self.config_path).map_err(|e| AdminError::other(format!("{e:#}")))?;
        let mut st = self.state.lock().unwrap();
        let changes = config_diff(&st.config, &new);
        self.admin_users.replace(new.admin_users.clone());
        st.config = new;
        Ok(changes)
    }

    async fn kill(&self, session_id: u64, query_only: bool) -> Result<(), AdminError> {
        let mut st = self.state.lock().unwrap();
        let Some(i) = st.sessions.iter().position(|s| s.id == session_id) else {
            return Err(AdminError::no_such_session(session_id));
        };
        if query_only {
            st.sessions[i].statement = None;
            st.sessions[i].state = "idle".into();
        } else {
            st.sessions.remove(i);
        }
        Ok(())
    }
}

/// An admin port on an ephemeral port over `ops`; returns the port.
pub async fn start_admin(ops: Arc<FixedOps>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let users = ops.admin_users.clone();
    tokio::spawn(shardproxy::admin::serve_admin(listener, ops, users));
    port
}

/// An HTTP port on an ephemeral port over `ops`; returns the port.
pub async fn start_http(ops: Arc<FixedOps>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = shardproxy::metrics::install();
    tokio::spawn(shardproxy::http::serve_http(listener, ops, handle));
    port
}
