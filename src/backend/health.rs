//! Health checks: one task pings every backend server on its own connection each
//! `backend.health_interval_ms`, and reads replicas' lag from `SHOW SLAVE STATUS`. The results
//! feed the admin port, the metrics and the status page (and, later, failover).
//!
//! It follows config reloads through the two functions it is given (the server passes the
//! running proxy's current topology and config).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::conn::{BackendConn, QueryResult};
use super::pool::{Pool, Role};
use super::topology::Topology;
use crate::config::Config;
use crate::protocol::constants::DEFAULT_COLLATION;

/// Checks every pool of `topology()` every `backend.health_interval_ms` of `config()` (both
/// read again each round) until `shutdown` changes.
pub async fn run(
    topology: impl Fn() -> Arc<Topology>,
    config: impl Fn() -> Arc<Config>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut conns: Vec<(Arc<Pool>, Option<BackendConn>)> = Vec::new();
    loop {
        let topo = topology();
        // Follow config reloads: keep a connection per current pool.
        conns.retain(|(p, _)| topo.pools().any(|q| Arc::ptr_eq(p, q)));
        for p in topo.pools() {
            if !conns.iter().any(|(q, _)| Arc::ptr_eq(p, q)) {
                conns.push((p.clone(), None));
            }
        }
        for (pool, conn) in conns.iter_mut() {
            check(pool, conn).await;
        }
        let interval = Duration::from_millis(config().backend.health_interval_ms.max(50));
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.changed() => return,
        }
    }
}

async fn check(pool: &Arc<Pool>, conn: &mut Option<BackendConn>) {
    if conn.is_none() {
        match BackendConn::connect(&pool.connect_params(0, DEFAULT_COLLATION)).await {
            Ok(c) => *conn = Some(c),
            Err(e) => {
                mark(pool, false, -1, &e.to_string());
                return;
            }
        }
    }
    let c = conn.as_mut().expect("connected above");
    let ok = tokio::time::timeout(Duration::from_secs(2), c.ping())
        .await
        .unwrap_or(false);
    if !ok {
        *conn = None;
        mark(pool, false, -1, "no answer to ping");
        return;
    }
    let mut lag = -1;
    if pool.role == Role::Replica {
        if let Ok(Ok(QueryResult::Rows(rs))) =
            tokio::time::timeout(Duration::from_secs(2), c.query("SHOW SLAVE STATUS")).await
        {
            let col = rs
                .columns
                .iter()
                .position(|c| c.name.as_ref() == b"Seconds_Behind_Master");
            if let (Some(i), Some(row)) = (col, rs.rows.first()) {
                lag = row[i]
                    .as_ref()
                    .and_then(|v| std::str::from_utf8(v).ok())
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(-1);
            }
        }
    }
    mark(pool, true, lag, "");
}

fn mark(pool: &Pool, healthy: bool, lag: i64, why: &str) {
    let was = pool.stats.healthy.swap(healthy, Ordering::Relaxed);
    pool.stats.lag_seconds.store(lag, Ordering::Relaxed);
    if was != healthy {
        if healthy {
            tracing::info!(backend = %pool.addr, shard = %pool.shard, role = pool.role.as_str(), "backend is up");
        } else {
            tracing::warn!(backend = %pool.addr, shard = %pool.shard, role = pool.role.as_str(), "backend is down: {why}");
            pool.clear_idle();
        }
    }
}
