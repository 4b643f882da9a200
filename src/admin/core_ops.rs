//! [`AdminOps`] over the running proxy ([`Proxy`]), and [`start_operator_ports`], the one call
//! that opens the admin port, the HTTP port and the SIGHUP reload from a config.
//!
//! `PREVIEW` plans as a session without a current database and with scatter writes off would.
//! The online resharding (`RESHARD START` and after) is [`super::reshard_run`]; a persisted one
//! is resumed in [`start_operator_ports`], before the data port serves.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::net::TcpListener;

use super::ops::{
    AdminError, AdminOps, BackendStatus, Health, RingShare, Role, SessionInfo, ShardStatus,
    TableKind, TableRule,
};
use super::AdminUsers;
use crate::backend::kill::kill_backend;
use crate::backend::pool::{self, Pool};
use crate::config::Config;
use crate::plan::preview::preview_result_set;
use crate::plan::reshard::{placement_changes, MovesData};
use crate::plan::rules::TableKind as RuleKind;
use crate::plan::PlanContext;
use crate::protocol::resultset::ResultSet;
use crate::proxy::Proxy;
use crate::ring::KeyValue;

/// The admin view of a running [`Proxy`].
pub struct CoreOps {
    pub proxy: Arc<Proxy>,
    /// The file `RELOAD CONFIG` and SIGHUP re-read; `None`: reloads are refused.
    pub config_path: Option<PathBuf>,
    /// Replaced on reload.
    pub admin_users: AdminUsers,
    qps: Mutex<QpsMeter>,
    /// The online resharding (`RESHARD START` and after).
    pub reshards: super::reshard_run::Reshards,
}

/// Statements per second over the last interval of at least one second between two reads.
struct QpsMeter {
    at: Instant,
    count: u64,
    rate: f64,
}

impl CoreOps {
    pub fn new(proxy: Arc<Proxy>, config_path: Option<PathBuf>) -> Arc<CoreOps> {
        let admin_users = AdminUsers::new(proxy.config().admin_users.clone());
        let count = proxy.counters.queries.load(Ordering::Relaxed);
        let reshards = super::reshard_run::Reshards::new(config_path.clone());
        Arc::new(CoreOps {
            proxy,
            config_path,
            admin_users,
            qps: Mutex::new(QpsMeter {
                at: Instant::now(),
                count,
                rate: 0.0,
            }),
            reshards,
        })
    }

    fn qps(&self) -> f64 {
        let now = Instant::now();
        let count = self.proxy.counters.queries.load(Ordering::Relaxed);
        let mut m = self.qps.lock().unwrap_or_else(|e| e.into_inner());
        let elapsed = now.duration_since(m.at).as_secs_f64();
        if elapsed >= 1.0 {
            m.rate = count.saturating_sub(m.count) as f64 / elapsed;
            m.at = now;
            m.count = count;
        }
        m.rate
    }
}

fn health(p: &Pool) -> Health {
    if p.stats.healthy.load(Ordering::Relaxed) {
        Health::Up
    } else {
        Health::Down
    }
}

/// One backend as SHOW BACKENDS shows it; `max_lag_ms`: its shard's `max_replica_lag_ms`.
fn backend(p: &Pool, max_lag_ms: u64) -> BackendStatus {
    let lag = p.stats.lag_seconds.load(Ordering::Relaxed);
    let lag_ms = p.stats.lag_ms.load(Ordering::Relaxed);
    // One lock, released before the literal below (its temporaries would live to the end).
    let (gtid_position, read_only, extra_gtids) = {
        let o = p.stats.observed.lock().unwrap_or_else(|e| e.into_inner());
        (
            o.current_pos.to_string(),
            o.read_only,
            o.extra_gtids.clone(),
        )
    };
    BackendStatus {
        address: p.addr.clone(),
        shard: p.shard.clone(),
        role: match p.role() {
            pool::Role::Primary => Role::Primary,
            pool::Role::Replica => Role::Replica,
            pool::Role::Fenced => Role::Fenced,
        },
        health: health(p),
        lag_seconds: (p.role() == pool::Role::Replica && lag >= 0).then_some(lag as u64),
        pool_in_use: p.stats.in_use.load(Ordering::Relaxed) as u64,
        pool_idle: p.stats.idle.load(Ordering::Relaxed) as u64,
        queries: p.stats.queries.load(Ordering::Relaxed),
        errors: p.stats.errors.load(Ordering::Relaxed),
        gtid_position,
        read_only,
        lag_ms: (p.role() == pool::Role::Replica && lag_ms >= 0).then_some(lag_ms as u64),
        in_read_set: crate::backend::read_set::usable(p, max_lag_ms).is_some(),
        reads: p.stats.reads.load(Ordering::Relaxed),
        extra_gtids: if p.role() == pool::Role::Fenced {
            extra_gtids
        } else {
            String::new()
        },
    }
}

#[async_trait]
impl AdminOps for CoreOps {
    fn shards(&self) -> Vec<ShardStatus> {
        self.proxy
            .topology()
            .shards
            .iter()
            .map(|s| ShardStatus {
                name: s.name.clone(),
                primary: s.primary.addr.clone(),
                replicas: s.replicas.iter().map(|r| r.addr.clone()).collect(),
                weight: s.weight,
                status: {
                    let base = if health(&s.primary) == Health::Down {
                        "down"
                    } else if s.replicas.iter().any(|r| health(r) == Health::Down) {
                        "degraded"
                    } else {
                        "ok"
                    };
                    match super::failover_ops::shard_notes(s) {
                        Some(n) => format!("{base} ({n})"),
                        None => base.to_string(),
                    }
                },
            })
            .collect()
    }

    fn backends(&self) -> Vec<BackendStatus> {
        let topo = self.proxy.topology();
        let config = self.proxy.config();
        let mut out = Vec::new();
        for s in &topo.shards {
            let max_lag = config.max_replica_lag_ms(&s.name);
            out.push(backend(&s.primary, max_lag));
            out.extend(s.replicas.iter().map(|r| backend(r, max_lag)));
            out.extend(s.fenced.iter().map(|r| backend(r, max_lag)));
        }
        out
    }

    fn ring(&self) -> Vec<RingShare> {
        let config = self.proxy.config();
        let rules = self.proxy.rules();
        rules
            .ring
            .shares()
            .into_iter()
            .map(|(shard, share)| RingShare {
                vnodes: config
                    .shard(&shard)
                    .map_or(0, |s| s.weight.saturating_mul(config.ring.vnodes)),
                shard,
                share,
            })
            .collect()
    }

    fn sessions(&self) -> Vec<SessionInfo> {
        let now = Instant::now();
        self.proxy
            .registry
            .all()
            .iter()
            .map(|h| {
                let i = h.snapshot();
                SessionInfo {
                    id: u64::from(h.id),
                    client: h.client.clone(),
                    user: h.user.clone(),
                    db: i.db,
                    state: i.state.to_string(),
                    pinned: i.pinned.is_some(),
                    statement: i.statement.map(|s| s.chars().take(200).collect()),
                    time_in_state: i.since.map_or(Duration::ZERO, |t| now.duration_since(t)),
                }
            })
            .collect()
    }

    fn proxy_status(&self) -> Vec<(String, String)> {
        let c = &self.proxy.counters;
        let mut v = vec![
            ("version", env!("CARGO_PKG_VERSION").to_string()),
            ("server_version", self.proxy.server_version.clone()),
            (
                "uptime_seconds",
                self.proxy.started.elapsed().as_secs().to_string(),
            ),
            ("connections", self.proxy.registry.len().to_string()),
            (
                "connections_total",
                c.connections_total.load(Ordering::Relaxed).to_string(),
            ),
            ("questions", c.queries.load(Ordering::Relaxed).to_string()),
            ("qps", format!("{:.1}", self.qps())),
            ("errors", c.errors.load(Ordering::Relaxed).to_string()),
            (
                "plan_cache_hits",
                c.plan_cache_hits.load(Ordering::Relaxed).to_string(),
            ),
            (
                "plan_cache_misses",
                c.plan_cache_misses.load(Ordering::Relaxed).to_string(),
            ),
            (
                "text_plan_cache_hits",
                c.text_plan_cache_hits.load(Ordering::Relaxed).to_string(),
            ),
            (
                "text_plan_cache_misses",
                c.text_plan_cache_misses.load(Ordering::Relaxed).to_string(),
            ),
        ];
        if let Some(p) = &self.config_path {
            v.push(("config_file", p.display().to_string()));
        }
        v.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
    }

    fn table_rules(&self) -> Vec<TableRule> {
        table_rules(&self.proxy.config())
    }

    fn preview(&self, sql: &str) -> Result<ResultSet, AdminError> {
        let rules = self.proxy.rules();
        let ctx = PlanContext {
            rules: &rules,
            current_db: None,
            allow_scatter_writes: false,
        };
        let plan = crate::plan::plan(sql, &ctx);
        Ok(preview_result_set(&plan, sql))
    }

    fn where_is(&self, table: &str, key: &str) -> Result<String, AdminError> {
        let rules = self.proxy.rules();
        let (db, name) = match table.split_once('.') {
            Some((d, t)) => (Some(d), t),
            None => (None, table),
        };
        match rules.classify(db, name, None) {
            RuleKind::Sharded { key: column } => {
                let numeric = key
                    .strip_prefix('-')
                    .unwrap_or(key)
                    .chars()
                    .all(|c| c.is_ascii_digit());
                let value = if numeric && !key.is_empty() {
                    KeyValue::from_number_literal(key)
                } else {
                    KeyValue::from_str_value(key)
                };
                let value = value.ok_or_else(|| {
                    AdminError::wrong_arguments(format!(
                        "key {key:?} of {table}.{column} cannot be placed exactly (decimals, \
                         non-canonical numbers and non-ASCII strings are not routed)"
                    ))
                })?;
                Ok(rules.ring.shard_for(&value).to_string())
            }
            RuleKind::Reference => Ok(format!("{} (reference table)", rules.shards.join(","))),
            RuleKind::Unlisted => Ok(format!("{} (default shard)", rules.default_shard)),
        }
    }

    async fn reload_config(&self) -> Result<Vec<String>, AdminError> {
        let Some(path) = &self.config_path else {
            return Err(AdminError::other(
                "the proxy was started without a config file: nothing to reload",
            ));
        };
        let new = Config::load(path).map_err(|e| AdminError::other(format!("{e:#}")))?;
        let old = self.proxy.config();
        let changes = super::diff::config_diff(&old, &new);
        if changes.is_empty() {
            return Ok(changes);
        }
        // A change that moves rows would make the proxy look for them where they are not yet.
        let moves = placement_changes(&old, &new);
        if !moves.is_empty() {
            return Err(AdminError::other(MovesData(moves).to_string()));
        }
        apply(&self.proxy, new);
        self.admin_users
            .replace(self.proxy.config().admin_users.clone());
        Ok(changes)
    }

    async fn reshard_plan(&self, path: &str) -> Result<Vec<(String, String)>, AdminError> {
        let new = Config::load(std::path::Path::new(path))
            .map_err(|e| AdminError::other(format!("{path}: {e:#}")))?;
        let old = self.proxy.config();
        let plan = super::reshard::plan_with_rows(&old, &new, &self.proxy.topology()).await;
        Ok(plan.lines())
    }

    async fn kill(&self, session_id: u64, query_only: bool) -> Result<(), AdminError> {
        let target = u32::try_from(session_id)
            .ok()
            .and_then(|i| self.proxy.registry.get(i))
            .ok_or_else(|| AdminError::no_such_session(session_id))?;
        let running = target.snapshot().running_on;
        if !query_only {
            target.kill();
        }
        if let Some((addr, tid)) = running {
            kill_backend(&self.proxy.topology(), &addr, tid, query_only).await;
        }
        Ok(())
    }

    async fn switchover(&self, shard: &str) -> Result<String, AdminError> {
        super::failover_ops::switchover(&self.proxy, shard, None).await
    }

    async fn switchover_to(&self, shard: &str, target: Option<&str>) -> Result<String, AdminError> {
        super::failover_ops::switchover(&self.proxy, shard, target).await
    }

    async fn failover(&self, shard: &str, force: bool) -> Result<String, AdminError> {
        super::failover_ops::failover_now(&self.proxy, shard, force).await
    }

    fn failovers(&self) -> Result<ResultSet, AdminError> {
        Ok(super::failover_ops::history(&self.proxy))
    }

    fn reshard_status(&self) -> Result<ResultSet, AdminError> {
        Ok(super::render::reshard_status(
            self.reshards.status().as_ref(),
        ))
    }

    async fn reshard_start(&self, path: &str) -> Result<Vec<String>, AdminError> {
        self.reshards.start(&self.proxy, path).await
    }

    async fn reshard_cancel(&self) -> Result<String, AdminError> {
        self.reshards.cancel(&self.proxy).await
    }

    async fn reshard_cleanup(&self) -> Result<String, AdminError> {
        self.reshards.cleanup(&self.proxy).await
    }
}

/// Placement rules of a config: sharded tables, reference tables, then the default rule.
pub fn table_rules(config: &Config) -> Vec<TableRule> {
    let all: Vec<String> = config.shards.iter().map(|s| s.name.clone()).collect();
    let mut rules: Vec<TableRule> = config
        .sharding
        .tables
        .iter()
        .map(|t| TableRule {
            table: t.name.clone(),
            kind: TableKind::Sharded,
            key: Some(t.key.clone()),
            shards: all.clone(),
        })
        .collect();
    rules.extend(config.sharding.reference_tables.iter().map(|t| TableRule {
        table: t.clone(),
        kind: TableKind::Reference,
        key: None,
        shards: all.clone(),
    }));
    rules.push(TableRule {
        table: "*".into(),
        kind: TableKind::Default,
        key: None,
        shards: vec![config.sharding.default_shard.clone()],
    });
    rules
}

/// Installs a validated config ([`Proxy::install_config`]). (Pools of unchanged servers are
/// rebuilt too: their idle connections are dropped and their health restarts as up until the
/// next check.)
fn apply(proxy: &Proxy, new: Config) {
    proxy.install_config(new);
}

/// Opens what the config asks for: the admin port (`admin_listen`), the HTTP port
/// (`http_listen`, with the Prometheus recorder installed) and the SIGHUP reload (always).
/// Binding errors are returned; the servers run in background tasks.
pub async fn start_operator_ports(
    proxy: Arc<Proxy>,
    config_path: Option<PathBuf>,
) -> anyhow::Result<Arc<CoreOps>> {
    let ops = CoreOps::new(proxy.clone(), config_path);
    // A resharding persisted before a restart: after its cutover the new ring must serve
    // before the first client is (the data port accepts only after this returns).
    if let Err(e) = ops.reshards.resume(&proxy).await {
        tracing::error!("reshard: the persisted resharding could not be resumed: {e}");
    }
    // Several proxies: this one holds for, and switches at, the cutovers the others drive.
    if let Some(c) = &proxy.coordinator {
        tokio::spawn(super::reshard_run::follow_cutovers(
            proxy.clone(),
            c.clone(),
        ));
    }
    let config = proxy.config();
    let metrics = crate::metrics::install();
    if let Some(addr) = &config.admin_listen {
        let l = TcpListener::bind(addr)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on admin_listen {addr}: {e}"))?;
        tracing::info!(listen = %l.local_addr()?, "admin port serving");
        tokio::spawn(super::serve_admin(l, ops.clone(), ops.admin_users.clone()));
    }
    if let Some(addr) = &config.http_listen {
        let l = TcpListener::bind(addr)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on http_listen {addr}: {e}"))?;
        tracing::info!(listen = %l.local_addr()?, "HTTP port serving /metrics and the status page");
        let ops: Arc<dyn AdminOps> = ops.clone();
        tokio::spawn(async move {
            if let Err(e) = crate::http::serve_http(l, ops, metrics).await {
                tracing::error!("HTTP port stopped: {e}");
            }
        });
    }
    let sighup_ops: Arc<dyn AdminOps> = ops.clone();
    tokio::spawn(async move {
        if let Err(e) = super::reload_on_sighup(sighup_ops).await {
            tracing::error!("cannot handle SIGHUP: {e}");
        }
    });
    Ok(ops)
}
