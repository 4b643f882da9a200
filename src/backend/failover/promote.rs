//! The steps of a switch on the servers themselves: choosing the replica ([`choose`]), stopping
//! writes on a live primary ([`stop_writes`]), waiting for a replica ([`catch_up`]), and the
//! promotion ([`promote`]: the new primary, the other replicas repointed, the old primary
//! fenced, the topology persisted and installed, the gate opened).
//!
//! [`promote`] is the one function every switch ends in (failover, forced failover,
//! switchover); later work (finishing prepared XA legs on the new primary) hooks in there.

use std::time::{Duration, Instant, SystemTime};

use super::{FailoverError, Host, SwitchRecord, Trigger};
use crate::backend::conn::{BackendConn, ConnectParams, QueryResult};
use crate::backend::coordination::DECIDE_BOUND;
use crate::backend::gate::GateState;
use crate::backend::gtid::GtidPos;
use crate::backend::topology::ShardPools;
use crate::config::Config;
use crate::protocol::constants::DEFAULT_COLLATION;

/// Time allowed to reach a server during a switch (a dead one must not stall it).
const STEP_TIMEOUT: Duration = Duration::from_millis(1500);

/// How long a promotion waits for the old primary to be fenced before writes resume.
const FENCE_WAIT: Duration = Duration::from_millis(300);

/// A connection of the proxy's backend login to `addr`, for the switch's own statements.
pub(super) async fn admin_conn(addr: &str, config: &Config) -> Result<BackendConn, String> {
    let p = ConnectParams {
        addr: addr.to_string(),
        user: config.backend.user.clone(),
        password: config.backend.password.clone(),
        relay_caps: 0,
        collation: DEFAULT_COLLATION,
        connect_timeout: STEP_TIMEOUT,
        read_timeout: None,
        // Known gap: the switch's own connections do not use backend TLS yet.
        tls: None,
    };
    BackendConn::connect(&p).await.map_err(|e| e.to_string())
}

pub(super) async fn exec(c: &mut BackendConn, sql: &str) -> Result<(), String> {
    c.query(sql)
        .await
        .map(|_| ())
        .map_err(|e| format!("{sql}: {e}"))
}

pub(super) async fn value(c: &mut BackendConn, sql: &str) -> Result<Option<String>, String> {
    match c.query(sql).await.map_err(|e| format!("{sql}: {e}"))? {
        QueryResult::Rows(rs) => Ok(rs
            .rows
            .first()
            .and_then(|r| r.first().cloned().flatten())
            .map(|v| String::from_utf8_lossy(&v).into_owned())),
        QueryResult::Ok(_) => Ok(None),
    }
}

/// What one replica holds once it applied what it received.
async fn applied_position(addr: &str, config: &Config) -> Result<GtidPos, String> {
    let wait = Duration::from_millis(config.failover.catchup_ms);
    let r = tokio::time::timeout(wait + STEP_TIMEOUT * 2, async {
        let mut c = admin_conn(addr, config).await?;
        let received = match c.query("SHOW SLAVE STATUS").await {
            Ok(QueryResult::Rows(rs)) => rs
                .columns
                .iter()
                .position(|col| col.name.as_ref() == b"Gtid_IO_Pos")
                .and_then(|i| rs.rows.first()?.get(i)?.clone())
                .map(|v| String::from_utf8_lossy(&v).into_owned())
                .unwrap_or_default(),
            _ => String::new(),
        };
        if !received.is_empty() {
            let secs = wait.as_secs_f64();
            // -1 is a timeout: what it applied by then still counts below.
            value(
                &mut c,
                &format!("SELECT MASTER_GTID_WAIT('{received}', {secs:.3})"),
            )
            .await?;
        }
        let cur = value(&mut c, "SELECT @@gtid_current_pos")
            .await?
            .unwrap_or_default();
        GtidPos::parse(&cur).map_err(|e| e.to_string())
    })
    .await;
    r.unwrap_or_else(|_| Err(format!("{addr}: no answer within {wait:?}")))
}

/// The replica to promote and its position: of the healthy replicas, after each applied what it
/// received, one that holds `acked` and most; with `force`, the one holding most.
pub async fn choose(
    s: &ShardPools,
    acked: &GtidPos,
    config: &Config,
    force: bool,
) -> Result<(String, GtidPos), FailoverError> {
    let candidates: Vec<String> = s
        .replicas
        .iter()
        .filter(|r| r.stats.healthy.load(std::sync::atomic::Ordering::Relaxed))
        .map(|r| r.addr.clone())
        .collect();
    let positions = futures::future::join_all(
        candidates
            .iter()
            .map(|a| async move { (a.clone(), applied_position(a, config).await) }),
    )
    .await;
    let mut best: Option<(String, GtidPos)> = None;
    for (addr, pos) in positions {
        match pos {
            Ok(p) => {
                tracing::info!(shard = %s.name, replica = %addr, position = %p, acked = %acked, holds_acked = p.contains(acked), "failover candidate");
                if best.as_ref().is_none_or(|(_, b)| p.total() > b.total()) {
                    best = Some((addr, p));
                }
            }
            Err(e) => {
                tracing::warn!(shard = %s.name, replica = %addr, "failover candidate unreachable: {e}")
            }
        }
    }
    let Some((addr, pos)) = best else {
        return Err(FailoverError::NoReplica {
            shard: s.name.clone(),
        });
    };
    if !force && !pos.contains(acked) {
        return Err(FailoverError::AckedGtidMissing {
            shard: s.name.clone(),
            acked: acked.to_string(),
            best: pos.to_string(),
        });
    }
    Ok((addr, pos))
}

/// Stops writes on a live primary for a switchover: `read_only=1`, its client connections
/// closed (a login with ALL PRIVILEGES writes through read_only), and returns its final binlog
/// position.
pub async fn stop_writes(s: &ShardPools, config: &Config) -> Result<GtidPos, FailoverError> {
    let addr = s.primary.addr.clone();
    let err = |why: String| FailoverError::Promote {
        target: addr.clone(),
        why,
    };
    // Let statements already running finish (bounded): new ones wait at the gate, and sessions
    // let go of the connections they kept here at their next statement.
    s.primary
        .stats
        .draining
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let deadline =
        Instant::now() + Duration::from_millis((config.failover.buffer_ms / 4).min(1000));
    while s
        .primary
        .stats
        .in_use
        .load(std::sync::atomic::Ordering::Relaxed)
        > 0
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut c = admin_conn(&addr, config).await.map_err(err)?;
    exec(&mut c, "SET GLOBAL read_only=1").await.map_err(err)?;
    kill_clients(&mut c).await.map_err(err)?;
    s.primary.clear_idle();
    let pos = value(&mut c, "SELECT @@gtid_binlog_pos")
        .await
        .map_err(err)?
        .unwrap_or_default();
    GtidPos::parse(&pos).map_err(|e| err(e.to_string()))
}

/// Undoes [`stop_writes`] after a switchover that did not happen.
pub async fn resume_writes(s: &ShardPools, config: &Config) -> Result<(), String> {
    s.primary
        .stats
        .draining
        .store(false, std::sync::atomic::Ordering::Relaxed);
    let mut c = admin_conn(&s.primary.addr, config).await?;
    exec(&mut c, "SET GLOBAL read_only=0").await
}

/// Waits (`failover.catchup_ms`) until `target` has applied `pos`.
pub async fn catch_up(target: &str, config: &Config, pos: &GtidPos) -> Result<(), FailoverError> {
    let ms = config.failover.catchup_ms;
    let fail = || FailoverError::CatchUp {
        target: target.to_string(),
        pos: pos.to_string(),
        ms,
    };
    let mut c = admin_conn(target, config).await.map_err(|_| fail())?;
    let r = value(
        &mut c,
        &format!(
            "SELECT MASTER_GTID_WAIT('{pos}', {:.3})",
            ms as f64 / 1000.0
        ),
    )
    .await
    .map_err(|_| fail())?;
    if r.as_deref() == Some("0") {
        Ok(())
    } else {
        Err(fail())
    }
}

/// `STOP SLAVE` on a replica, its IO thread killed first. When its primary hangs or is cut
/// off, that thread waits in a read that never returns, and MariaDB's STOP SLAVE signals it,
/// waits 2 s, and only then signals it again: measured 2.0 s per STOP SLAVE under a network
/// cut and under SIGSTOP, inside the write pause of a failover. `KILL` of the thread closes its
/// socket at once (measured under a cut: KILL then STOP SLAVE 13–44 ms in 10 of 12 tries, no
/// worse than STOP SLAVE alone in the others; docs/benchmarks.md). Best effort: without it (no
/// `CONNECTION ADMIN`, thread gone) STOP SLAVE alone is as correct, only slower.
async fn stop_slave(c: &mut BackendConn) -> Result<(), String> {
    let io = thread_ids(
        c,
        "SELECT id FROM information_schema.processlist WHERE command = 'Slave_IO'",
    )
    .await
    .unwrap_or_default();
    for id in io {
        let _ = c.query(&format!("KILL {id}")).await;
    }
    exec(c, "STOP SLAVE").await
}

/// The first column of every row of `sql`, a query of `information_schema.processlist`.
async fn thread_ids(c: &mut BackendConn, sql: &str) -> Result<Vec<String>, String> {
    Ok(match c.query(sql).await.map_err(|e| e.to_string())? {
        QueryResult::Rows(rs) => rs
            .rows
            .iter()
            .filter_map(|r| r.first().cloned().flatten())
            .map(|v| String::from_utf8_lossy(&v).into_owned())
            .collect::<Vec<_>>(),
        QueryResult::Ok(_) => vec![],
    })
}

/// Closes every client connection of a server except the caller's own and replication's.
async fn kill_clients(c: &mut BackendConn) -> Result<(), String> {
    let ids = thread_ids(
        c,
        "SELECT id FROM information_schema.processlist WHERE id <> CONNECTION_ID() \
         AND command NOT IN ('Binlog Dump', 'Daemon', 'Slave_IO', 'Slave_SQL', 'Slave_worker') \
         AND user NOT IN ('system user', 'event_scheduler')",
    )
    .await?;
    for id in ids {
        // Gone already is fine.
        let _ = c.query(&format!("KILL {id}")).await;
    }
    Ok(())
}

/// Fences a former primary if it answers: `read_only=1` and its client connections closed. It
/// is out of the topology whatever this returns.
pub async fn fence(addr: &str, config: &Config) -> Result<(), String> {
    tokio::time::timeout(STEP_TIMEOUT * 2, async {
        let mut c = admin_conn(addr, config).await?;
        exec(&mut c, "SET GLOBAL read_only=1").await?;
        kill_clients(&mut c).await
    })
    .await
    .unwrap_or_else(|_| Err(format!("{addr}: no answer within {:?}", STEP_TIMEOUT * 2)))
}

/// `host:port` of an address.
pub(super) fn host_port(addr: &str) -> (&str, &str) {
    addr.rsplit_once(':').unwrap_or((addr, "3306"))
}

/// Makes `target` (a replica of `shard`) the shard's primary: promotes it on the server, points
/// the other replicas at it, fences the old primary, persists and installs the new topology and
/// opens the shard's gate. `since`/`held_at`: when the outage (or command) began and when
/// statements began to wait, for the record; `acked`: the position the choice was made for.
pub async fn promote(
    host: &dyn Host,
    shard: &str,
    target: &str,
    trigger: Trigger,
    since: Instant,
    held_at: Instant,
    acked: &GtidPos,
) -> Result<SwitchRecord, FailoverError> {
    let config = host.config();
    let topo = host.topology();
    let Some(s) = topo.shard(shard) else {
        return Err(FailoverError::UnknownShard(shard.to_string()));
    };
    let old = s.primary.addr.clone();
    let perr = |why: String| FailoverError::Promote {
        target: target.to_string(),
        why,
    };
    // 1. The new primary. With coordination, only with the lease held for the whole step,
    // which is cut off at that bound (the fencing argument in `coordination`).
    let coordinator = host.coordinator();
    if let Some(c) = &coordinator {
        c.wait_decide(DECIDE_BOUND).await?;
    }
    let step = async {
        let mut c = admin_conn(target, &config).await?;
        stop_slave(&mut c).await?;
        for sql in [
            "RESET SLAVE ALL",
            "SET GLOBAL rpl_semi_sync_master_enabled=ON",
            "SET GLOBAL read_only=0",
        ] {
            exec(&mut c, sql).await?;
        }
        value(&mut c, "SELECT @@gtid_current_pos").await
    };
    let position = match &coordinator {
        Some(_) => tokio::time::timeout(DECIDE_BOUND, step)
            .await
            .map_err(|_| {
                perr(format!(
                    "the promotion steps took more than {DECIDE_BOUND:?}"
                ))
            })?,
        None => step.await,
    }
    .map_err(perr)?
    .unwrap_or_default();
    // 2. The new topology, persisted before anything routes to it, installed, then written
    // to etcd for the other proxies (a failed write is retried while this proxy leads). In
    // that order, the write's echo through the watch finds it installed here already.
    let next = topo
        .promoted(shard, target)
        .map_err(|e| perr(e.to_string()))?;
    if let Some(path) = &config.failover.state_file {
        next.persisted()
            .save(path)
            .map_err(|e| FailoverError::Persist(e.to_string()))?;
    }
    let next = std::sync::Arc::new(next);
    host.install(next.clone());
    if let Some(c) = &coordinator {
        if let Err(e) = c.publish(&next.persisted()).await {
            tracing::error!(shard, new_primary = %target, "coordination: the new topology is not in etcd yet (retried while this proxy leads): {e}");
        }
    }
    // 3. Fence the old primary (best effort: it is out of the topology already, and sessions
    // let go of what they kept there). One that hangs is not waited for: the monitor fences it
    // when it answers again with writes allowed.
    let fenced = match tokio::time::timeout(FENCE_WAIT, fence(&old, &config)).await {
        Ok(r) => r,
        Err(_) => Err(format!("no answer within {FENCE_WAIT:?}")),
    };
    // 4. Writes resume.
    let write_pause = held_at.elapsed();
    if let Some(ns) = next.shard(shard) {
        ns.state.gate.set(GateState::Open);
    }
    // 5. The other replicas follow the new primary (writes need not wait for this: semi-sync
    // holds commits until one of them acknowledges, bounded by its timeout).
    let others: Vec<String> = next
        .shard(shard)
        .map(|ns| ns.replicas.iter().map(|r| r.addr.clone()).collect())
        .unwrap_or_default();
    repoint(&others, target, &config).await;
    tracing::warn!(
        shard,
        trigger = trigger.as_str(),
        old_primary = %old,
        new_primary = %target,
        acked = %acked,
        position = %position,
        fenced = %fenced.as_ref().map_or_else(|e| format!("unreachable ({e}); out of routing"), |_| "read_only=1, connections closed".to_string()),
        total_ms = since.elapsed().as_millis() as u64,
        write_pause_ms = write_pause.as_millis() as u64,
        "topology changed: new primary"
    );
    Ok(SwitchRecord {
        at: SystemTime::now(),
        shard: shard.to_string(),
        trigger,
        old_primary: old,
        new_primary: Some(target.to_string()),
        acked: acked.to_string(),
        position,
        total: since.elapsed(),
        write_pause,
        outcome: "promoted".to_string(),
    })
}

/// Points `replicas` at `primary` (`[replication]` credentials, GTID `slave_pos`).
async fn repoint(replicas: &[String], primary: &str, config: &Config) {
    let Some(repl) = &config.replication else {
        if !replicas.is_empty() {
            tracing::error!(new_primary = %primary, "no [replication] credentials in the config: replicas {replicas:?} not repointed");
        }
        return;
    };
    let (h, p) = host_port(primary);
    for r in replicas {
        let res = async {
            let mut c = admin_conn(r, config).await?;
            stop_slave(&mut c).await?;
            exec(
                &mut c,
                &format!(
                    "CHANGE MASTER TO MASTER_HOST='{h}', MASTER_PORT={p}, MASTER_USER='{}', \
                     MASTER_PASSWORD='{}', MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1",
                    repl.user.replace('\'', "''"),
                    repl.password.replace('\'', "''")
                ),
            )
            .await?;
            exec(&mut c, "START SLAVE").await
        }
        .await;
        match res {
            Ok(()) => tracing::info!(replica = %r, new_primary = %primary, "replica repointed"),
            Err(e) => {
                tracing::error!(replica = %r, new_primary = %primary, "cannot repoint replica: {e}")
            }
        }
    }
}
