//! Health checks: one task per backend server checks it on its own connection every
//! `backend.health_interval_ms`, each check bounded by `backend.health_timeout_ms`. A backend
//! counts as down after `backend.health_fail_after` failed checks in a row (one slow answer is
//! not an outage) and up again after one good check. A check reads the server's GTID positions
//! (`@@gtid_binlog_pos`, `@@gtid_slave_pos`, `@@gtid_current_pos`), `@@read_only`, on a primary
//! `Rpl_semi_sync_master_status`, on a replica `SHOW SLAVE STATUS` (lag, received position,
//! threads). A primary's positions are marked in its shard's state and each replica's lag is
//! measured against them ([`super::lag`]), for the read set ([`super::read_set`]). The
//! results ([`Observed`], in the pool's stats) feed failover, the admin port, the metrics and
//! the status page.
//!
//! One task per server, so a server that hangs (SIGSTOP) delays only its own checks. It
//! follows config reloads and promotions through the two functions it is given (the server
//! passes the running proxy's current topology and config).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::conn::{BackendConn, QueryResult};
use super::gtid::GtidPos;
use super::observed::Observed;
use super::pool::{Pool, Role};
use super::topology::{ShardState, Topology};
use crate::config::Config;
use crate::protocol::constants::DEFAULT_COLLATION;
use crate::protocol::resultset::ResultSet;

/// Keeps one check task per pool of `topology()` (read again every 200 ms) until `shutdown`
/// changes.
pub async fn run(
    topology: impl Fn() -> Arc<Topology> + Send + Sync + 'static,
    config: impl Fn() -> Arc<Config> + Send + Sync + 'static,
    mut shutdown: watch::Receiver<bool>,
) {
    let config = Arc::new(config);
    let topology = Arc::new(topology);
    let mut tasks: HashMap<usize, (Arc<Pool>, tokio::task::JoinHandle<()>)> = HashMap::new();
    loop {
        let topo = (*topology)();
        let current: HashMap<usize, &Arc<Pool>> =
            topo.pools().map(|p| (Arc::as_ptr(p) as usize, p)).collect();
        tasks.retain(|k, (_, h)| {
            let keep = current.contains_key(k);
            if !keep {
                h.abort();
            }
            keep
        });
        for (k, p) in current {
            tasks.entry(k).or_insert_with(|| {
                let (pool, cfg, topo) = (p.clone(), config.clone(), topology.clone());
                let shard = p.shard.clone();
                let state = move || (*topo)().shard(&shard).map(|s| s.state.clone());
                let h = tokio::spawn(async move { check_loop(pool, move || cfg(), state).await });
                (p.clone(), h)
            });
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            _ = shutdown.changed() => {
                for (_, (_, h)) in tasks.drain() {
                    h.abort();
                }
                return;
            }
        }
    }
}

/// Checks one server forever (aborted when it leaves the topology); `state`: its shard's
/// state in the current topology (where a primary's positions are marked and a replica's lag
/// measured).
async fn check_loop(
    pool: Arc<Pool>,
    config: impl Fn() -> Arc<Config>,
    state: impl Fn() -> Option<Arc<ShardState>>,
) {
    let mut conn: Option<BackendConn> = None;
    loop {
        let c = config();
        let b = &c.backend;
        let timeout = Duration::from_millis(b.health_timeout_ms.max(10));
        let result = match tokio::time::timeout(timeout, check(&pool, &mut conn)).await {
            Ok(r) => r,
            Err(_) => {
                conn = None;
                Err(format!("no answer within {timeout:?}"))
            }
        };
        if let (Ok(r), Some(s)) = (&result, state()) {
            measure_lag(&pool, r, &s);
        }
        record(&pool, result, b.health_fail_after.max(1));
        let interval = Duration::from_millis(b.health_interval_ms.max(20));
        tokio::time::sleep(interval).await;
    }
}

/// What one good check read.
struct Reading {
    binlog_pos: GtidPos,
    slave_pos: GtidPos,
    current_pos: GtidPos,
    read_only: Option<bool>,
    semi_sync: Option<bool>,
    lag: i64,
    received_pos: GtidPos,
    replicating: Option<bool>,
}

async fn check(pool: &Arc<Pool>, conn: &mut Option<BackendConn>) -> Result<Reading, String> {
    if conn.is_none() {
        let c = BackendConn::connect(&pool.connect_params(0, DEFAULT_COLLATION))
            .await
            .map_err(|e| e.to_string())?;
        *conn = Some(c);
    }
    let c = conn.as_mut().expect("connected above");
    let r = read(pool, c).await;
    if r.is_err() {
        *conn = None;
    }
    r
}

async fn read(pool: &Pool, c: &mut BackendConn) -> Result<Reading, String> {
    let rs = rows(
        c,
        "SELECT @@gtid_binlog_pos, @@gtid_slave_pos, @@gtid_current_pos, @@read_only",
    )
    .await?;
    let cell = |i: usize| text(&rs, 0, i).unwrap_or_default();
    let pos = |i: usize| GtidPos::parse(&cell(i)).unwrap_or_default();
    let mut r = Reading {
        binlog_pos: pos(0),
        slave_pos: pos(1),
        current_pos: pos(2),
        read_only: Some(cell(3) == "1"),
        semi_sync: None,
        lag: -1,
        received_pos: GtidPos::default(),
        replicating: None,
    };
    match pool.role() {
        Role::Primary => {
            let rs = rows(c, "SHOW GLOBAL STATUS LIKE 'Rpl_semi_sync_master_status'").await?;
            r.semi_sync = text(&rs, 0, 1).map(|v| v.eq_ignore_ascii_case("ON"));
        }
        Role::Replica | Role::Fenced => {
            let rs = rows(c, "SHOW SLAVE STATUS").await?;
            let col = |name: &str| -> Option<String> {
                let i = rs
                    .columns
                    .iter()
                    .position(|c| c.name.as_ref() == name.as_bytes())?;
                text(&rs, 0, i)
            };
            r.lag = col("Seconds_Behind_Master")
                .and_then(|v| v.parse().ok())
                .unwrap_or(-1);
            r.received_pos = col("Gtid_IO_Pos")
                .and_then(|v| GtidPos::parse(&v).ok())
                .unwrap_or_default();
            if !rs.rows.is_empty() {
                r.replicating = Some(
                    col("Slave_IO_Running").as_deref() == Some("Yes")
                        && col("Slave_SQL_Running").as_deref() == Some("Yes"),
                );
            }
        }
    }
    Ok(r)
}

async fn rows(c: &mut BackendConn, sql: &str) -> Result<ResultSet, String> {
    match c.query(sql).await {
        Ok(QueryResult::Rows(rs)) => Ok(rs),
        Ok(QueryResult::Ok(_)) => Ok(ResultSet::default()),
        Err(e) => Err(e.to_string()),
    }
}

fn text(rs: &ResultSet, row: usize, col: usize) -> Option<String> {
    rs.rows
        .get(row)?
        .get(col)?
        .as_ref()
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

/// A primary's reading marks its position; a replica's gets its lag measured against those
/// marks ([`super::lag`]): unknown (-1) while its replication threads are not both running,
/// so it leaves the read set at once.
fn measure_lag(pool: &Pool, r: &Reading, state: &ShardState) {
    let now = Instant::now();
    let lag_ms = match pool.role() {
        Role::Primary => {
            state.primary_marks.mark(&r.binlog_pos, now);
            -1
        }
        Role::Replica if r.replicating == Some(true) => {
            let mut applied = r.slave_pos.clone();
            applied.merge(&r.current_pos);
            state
                .primary_marks
                .lag_of(&applied, now)
                .map_or(-1, |d| d.as_millis().min(i64::MAX as u128) as i64)
        }
        Role::Replica | Role::Fenced => -1,
    };
    pool.stats.lag_ms.store(lag_ms, Ordering::Relaxed);
}

/// Records a check's result; marks the backend down after `fail_after` failures in a row.
fn record(pool: &Pool, result: Result<Reading, String>, fail_after: u32) {
    let mut o = pool
        .stats
        .observed
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    o.checked_at = Some(Instant::now());
    match result {
        Ok(r) => {
            o.failed_checks = 0;
            o.failing_since = None;
            o.last_error.clear();
            o.binlog_pos = r.binlog_pos;
            o.slave_pos = r.slave_pos;
            o.current_pos = r.current_pos;
            o.read_only = r.read_only;
            o.semi_sync = r.semi_sync;
            o.received_pos = r.received_pos;
            o.replicating = r.replicating;
            let summary = summary(&o);
            drop(o);
            mark(pool, true, r.lag, &summary);
        }
        Err(why) => {
            o.failed_checks += 1;
            o.failing_since.get_or_insert_with(Instant::now);
            o.last_error = why.clone();
            let down = o.failed_checks >= fail_after;
            drop(o);
            if down {
                pool.stats.lag_ms.store(-1, Ordering::Relaxed);
                mark(pool, false, -1, &why);
            }
        }
    }
}

fn summary(o: &Observed) -> String {
    format!("gtid_current_pos {}", o.current_pos)
}

fn mark(pool: &Pool, healthy: bool, lag: i64, why: &str) {
    let was = pool.stats.healthy.swap(healthy, Ordering::Relaxed);
    pool.stats.lag_seconds.store(lag, Ordering::Relaxed);
    if was != healthy {
        if healthy {
            tracing::info!(backend = %pool.addr, shard = %pool.shard, role = pool.role().as_str(), "backend is up ({why})");
        } else {
            tracing::warn!(backend = %pool.addr, shard = %pool.shard, role = pool.role().as_str(), "backend is down: {why}");
            pool.clear_idle();
        }
    }
}
