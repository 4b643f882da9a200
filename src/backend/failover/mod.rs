//! Automatic failover and planned switchover of a shard's primary.
//!
//! The monitor ([`run`]) watches every shard's primary as the health checks see it. When it is
//! marked down (see [`super::health`]) the shard's write gate closes ([`super::gate`]), so
//! statements for that shard wait instead of failing; when it has been failing for
//! `failover.after_ms`, [`failover_shard`] picks the replica to promote:
//!
//! 1. Each healthy replica is asked what it received (`Gtid_IO_Pos`) and given up to
//!    `failover.catchup_ms` to apply it (`MASTER_GTID_WAIT`); then its `@@gtid_current_pos`.
//! 2. Only a replica that holds the shard's highest acknowledged GTID (the GTID of every commit
//!    the proxy acknowledged to a client, learnt through session tracking) may be promoted; of
//!    those, the one holding most. If none holds it (semi-sync had fallen back to asynchronous),
//!    nothing is promoted: the gate refuses the shard's statements with the reason, the monitor
//!    keeps trying (a replica may still catch up), and `FAILOVER <shard> FORCE` on the admin port
//!    promotes anyway, logging what may be lost.
//! 3. [`promote::promote`] makes it primary (`STOP SLAVE; RESET SLAVE ALL`, semi-sync master on,
//!    `read_only=0`; its `Slave_IO` thread is killed before STOP SLAVE, which otherwise waits
//!    2 s when the old primary hangs or is cut off), points the other replicas at it (`[replication]` credentials), fences the
//!    old primary (if reachable: `read_only=1` and its client connections killed; in any case it
//!    is out of the topology's routing), persists and installs the new topology, opens the gate.
//!
//! A fenced former primary that answers again read-only is checked by [`rejoin`]: it rejoins as
//! a replica of the primary if its GTID history is a prefix of the primary's, else it stays
//! fenced and SHOW BACKENDS names the GTIDs only it holds.
//!
//! A planned [`switchover`] holds the shard's statements first, stops writes on the old primary,
//! waits for the target to apply everything, then does the same promotion: clients see a pause,
//! not an error. Every switch is logged (tracing) with its reason and GTID positions and kept
//! for `SHOW FAILOVERS` ([`Failovers`]).
//!
//! With `[coordination]` (several proxies, [`crate::backend::coordination`]) only the proxy
//! holding the etcd lease decides: the others hold their statements when they see the primary
//! down, and apply the leader's decision when it reaches them through etcd ([`follow`]).
//! `FAILOVER` and `SWITCHOVER` on a follower's admin port are refused with the leader's name.
//!
//! The proxy is reached through [`Host`] (backend sits below the proxy's layer).

pub mod follow;
pub mod promote;
pub mod rejoin;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::watch;

use super::coordination::Coordinator;
use super::gate::GateState;
use super::topology::Topology;
use crate::config::Config;

/// What failover needs of the running proxy.
pub trait Host: Send + Sync {
    /// The topology now.
    fn topology(&self) -> Arc<Topology>;
    /// The config now.
    fn config(&self) -> Arc<Config>;
    /// Makes `t` the topology every new statement uses.
    fn install(&self, t: Arc<Topology>);
    /// The switch history and the per-shard locks.
    fn failovers(&self) -> &Failovers;
    /// The etcd coordination, when `[coordination]` is configured.
    fn coordinator(&self) -> Option<Arc<Coordinator>>;
}

/// Why a switch happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// The primary was down for `failover.after_ms`.
    PrimaryDown,
    /// An operator forced a promotion although no replica holds every acknowledged write.
    Forced,
    /// A planned `SWITCHOVER`.
    Switchover,
    /// Another proxy (the coordination leader) promoted; this one applied its topology.
    Followed,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::PrimaryDown => "failover (primary down)",
            Trigger::Forced => "forced failover",
            Trigger::Switchover => "switchover",
            Trigger::Followed => "followed (decided by the coordination leader)",
        }
    }
}

/// Why a switch did not happen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FailoverError {
    #[error("unknown shard '{0}'")]
    UnknownShard(String),
    #[error("shard '{0}' is already switching")]
    Busy(String),
    #[error("shard '{shard}' has no healthy replica to promote")]
    NoReplica { shard: String },
    #[error("no replica of shard '{shard}' holds the acknowledged GTID {acked} (best: {best}); not promoting: FAILOVER {shard} FORCE promotes anyway and may lose the writes after {best}")]
    AckedGtidMissing {
        shard: String,
        acked: String,
        best: String,
    },
    #[error("'{target}' is not a replica of shard '{shard}'")]
    NotAReplica { shard: String, target: String },
    #[error("replica '{target}' did not reach {pos} within {ms} ms")]
    CatchUp {
        target: String,
        pos: String,
        ms: u64,
    },
    #[error("promoting '{target}' failed: {why}")]
    Promote { target: String, why: String },
    #[error("cannot persist the topology: {0}")]
    Persist(String),
    #[error("{0}")]
    NotLeader(#[from] super::coordination::NotLeader),
}

/// One switch, as `SHOW FAILOVERS` lists it.
#[derive(Debug, Clone)]
pub struct SwitchRecord {
    /// When it ended.
    pub at: SystemTime,
    pub shard: String,
    pub trigger: Trigger,
    /// The primary before.
    pub old_primary: String,
    /// The primary after (`None`: not promoted).
    pub new_primary: Option<String>,
    /// The highest acknowledged GTID when it was decided.
    pub acked: String,
    /// The promoted replica's position when promoted.
    pub position: String,
    /// From the first failed health check (failover) or the command (switchover) to the new
    /// primary taking writes.
    pub total: Duration,
    /// How long the shard's statements were held.
    pub write_pause: Duration,
    /// The outcome: `promoted` or the reason it was not.
    pub outcome: String,
}

/// The switch history and one lock per shard (one switch at a time).
#[derive(Default)]
pub struct Failovers {
    history: Mutex<Vec<SwitchRecord>>,
    busy: Mutex<HashMap<String, ()>>,
}

impl Failovers {
    /// Every switch so far, oldest first.
    pub fn history(&self) -> Vec<SwitchRecord> {
        self.history
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(crate) fn push(&self, r: SwitchRecord) {
        let mut h = self.history.lock().unwrap_or_else(|e| e.into_inner());
        h.push(r);
        let n = h.len();
        if n > 1000 {
            h.drain(..n - 1000);
        }
    }

    /// Takes the shard's lock; `None` if a switch is under way.
    fn begin<'a>(&'a self, shard: &str) -> Option<Busy<'a>> {
        let mut b = self.busy.lock().unwrap_or_else(|e| e.into_inner());
        if b.contains_key(shard) {
            return None;
        }
        b.insert(shard.to_string(), ());
        Some(Busy {
            f: self,
            shard: shard.to_string(),
        })
    }
}

/// A shard's switch lock, released on drop.
struct Busy<'a> {
    f: &'a Failovers,
    shard: String,
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.f
            .busy
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.shard);
    }
}

/// Watches every shard's primary every 100 ms until `shutdown` changes: closes the gate of a
/// shard whose primary is down, reopens it if the primary comes back, fails over when it has
/// been failing for `failover.after_ms`.
pub async fn run(host: Arc<dyn Host>, mut shutdown: watch::Receiver<bool>) {
    let mut last_attempt: HashMap<String, Instant> = HashMap::new();
    loop {
        let config = host.config();
        let topo = host.topology();
        for s in &topo.shards {
            // A fenced server that answers again with writes allowed (it was unreachable when
            // it was fenced: a hang, a network cut) is fenced again.
            for f in &s.fenced {
                let writable = f.stats.healthy.load(std::sync::atomic::Ordering::Relaxed)
                    && f.stats
                        .observed
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .read_only
                        == Some(false);
                let rejoinable = f.stats.healthy.load(std::sync::atomic::Ordering::Relaxed)
                    && !writable
                    && config.replication.is_some()
                    && s.state.gate.is_open()
                    && s.primary
                        .stats
                        .healthy
                        .load(std::sync::atomic::Ordering::Relaxed);
                if rejoinable && retry_rejoin(&mut last_attempt, &f.addr) {
                    // Back and read-only: a replica again if its history is a prefix of the
                    // primary's (rejoin), else it stays fenced with its extra GTIDs named.
                    let (h, shard, addr) = (host.clone(), s.name.clone(), f.addr.clone());
                    tokio::spawn(async move {
                        let Some(_busy) = h.failovers().begin(&shard) else {
                            return;
                        };
                        if let Err(e) = rejoin::try_rejoin(&*h, &shard, &addr).await {
                            tracing::warn!(shard = %shard, backend = %addr, "former primary not rejoined: {e}");
                        }
                    });
                }
                if writable && retry_fence(&mut last_attempt, &f.addr) {
                    let (addr, c) = (f.addr.clone(), config.clone());
                    tokio::spawn(async move {
                        match promote::fence(&addr, &c).await {
                            Ok(()) => {
                                tracing::warn!(backend = %addr, "fenced former primary was writable again: read_only=1, connections closed")
                            }
                            Err(e) => {
                                tracing::error!(backend = %addr, "cannot fence former primary: {e}")
                            }
                        }
                    });
                }
            }
            let healthy = s
                .primary
                .stats
                .healthy
                .load(std::sync::atomic::Ordering::Relaxed);
            let failing_since = s
                .primary
                .stats
                .observed
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .failing_since;
            let gate = s.state.gate.state();
            if healthy {
                if gate != GateState::Open && host.failovers().begin(&s.name).is_some() {
                    // Held for a primary that came back (not by a switch under way).
                    tracing::info!(shard = %s.name, primary = %s.primary.addr, "primary is back before failover: statements released");
                    s.state.gate.set(GateState::Open);
                }
                continue;
            }
            let f = &config.failover;
            if !f.enabled || s.replicas.is_empty() {
                // Nothing to fail over to: statements get the backend's own error at once.
                continue;
            }
            if gate == GateState::Open {
                s.state.gate.set(GateState::Held(format!(
                    "primary {} is down",
                    s.primary.addr
                )));
            }
            if host.coordinator().is_some_and(|c| !c.is_leader()) {
                // The leader decides; its topology reaches this proxy through etcd (`follow`).
                continue;
            }
            let down_for = failing_since.map_or(Duration::ZERO, |t| t.elapsed());
            let retry_ok = last_attempt
                .get(&s.name)
                .is_none_or(|t| t.elapsed() >= Duration::from_secs(1));
            if down_for >= Duration::from_millis(f.after_ms) && retry_ok {
                last_attempt.insert(s.name.clone(), Instant::now());
                let (h, name) = (host.clone(), s.name.clone());
                let since = failing_since.unwrap_or_else(Instant::now);
                tokio::spawn(async move {
                    let _ = failover_shard(&*h, &name, Trigger::PrimaryDown, since).await;
                });
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Whether to check the fenced `addr` for a rejoin now (at most every 2 s).
fn retry_rejoin(last: &mut HashMap<String, Instant>, addr: &str) -> bool {
    let key = format!("rejoin {addr}");
    if last
        .get(&key)
        .is_some_and(|t| t.elapsed() < Duration::from_secs(2))
    {
        return false;
    }
    last.insert(key, Instant::now());
    true
}

/// Whether to try fencing `addr` again now (at most once a second).
fn retry_fence(last: &mut HashMap<String, Instant>, addr: &str) -> bool {
    let key = format!("fence {addr}");
    if last
        .get(&key)
        .is_some_and(|t| t.elapsed() < Duration::from_secs(1))
    {
        return false;
    }
    last.insert(key, Instant::now());
    true
}

/// Fails `shard` over to its best replica (see the module text). `Trigger::Forced` promotes the
/// best replica even if it lacks acknowledged writes. `since`: when the outage began (for the
/// figures).
pub async fn failover_shard(
    host: &dyn Host,
    shard: &str,
    trigger: Trigger,
    since: Instant,
) -> Result<SwitchRecord, FailoverError> {
    if let Some(c) = host.coordinator() {
        c.may_decide(Duration::ZERO)?;
    }
    let Some(_busy) = host.failovers().begin(shard) else {
        return Err(FailoverError::Busy(shard.to_string()));
    };
    let topo = host.topology();
    let Some(s) = topo.shard(shard) else {
        return Err(FailoverError::UnknownShard(shard.to_string()));
    };
    let config = host.config();
    let held_at = Instant::now();
    if s.state.gate.is_open() {
        s.state
            .gate
            .set(GateState::Held(format!("{} under way", trigger.as_str())));
    }
    let mut acked = s.state.acked();
    if let Some(c) = host.coordinator() {
        // What every proxy acknowledged, not only this one (see `coordination`).
        acked = c.acked_everywhere(shard, &acked).await;
    }
    let r = promote::choose(s, &acked, &config, trigger == Trigger::Forced).await;
    let old = s.primary.addr.clone();
    let (target, position) = match r {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(shard, primary = %old, acked = %acked, "failover not done: {e}");
            if matches!(
                e,
                FailoverError::AckedGtidMissing { .. } | FailoverError::NoReplica { .. }
            ) {
                s.state.gate.set(GateState::Refused(e.to_string()));
            }
            host.failovers().push(SwitchRecord {
                at: SystemTime::now(),
                shard: shard.to_string(),
                trigger,
                old_primary: old,
                new_primary: None,
                acked: acked.to_string(),
                position: String::new(),
                total: since.elapsed(),
                write_pause: held_at.elapsed(),
                outcome: e.to_string(),
            });
            return Err(e);
        }
    };
    if trigger == Trigger::Forced && !position.contains(&acked) {
        tracing::warn!(shard, primary = %old, target = %target, acked = %acked, position = %position, "FORCED promotion: acknowledged writes after {position} may be lost");
    }
    let rec = promote::promote(host, shard, &target, trigger, since, held_at, &acked).await;
    match &rec {
        Ok(r) => host.failovers().push(r.clone()),
        Err(e) => {
            tracing::error!(shard, primary = %old, target = %target, "promotion failed: {e}");
            s.state.gate.set(GateState::Refused(e.to_string()));
        }
    }
    rec
}

/// A planned switch of `shard`'s primary to `target` (or its best replica): statements held,
/// writes stopped on the old primary, the target caught up, promoted, the others repointed, the
/// old primary fenced. The record's `write_pause` is how long statements waited.
pub async fn switchover(
    host: &dyn Host,
    shard: &str,
    target: Option<&str>,
) -> Result<SwitchRecord, FailoverError> {
    if let Some(c) = host.coordinator() {
        c.may_decide(Duration::ZERO)?;
    }
    let Some(_busy) = host.failovers().begin(shard) else {
        return Err(FailoverError::Busy(shard.to_string()));
    };
    let since = Instant::now();
    let topo = host.topology();
    let Some(s) = topo.shard(shard) else {
        return Err(FailoverError::UnknownShard(shard.to_string()));
    };
    let config = host.config();
    let target = match target {
        Some(t) => {
            if !s.replicas.iter().any(|r| r.addr == t) {
                return Err(FailoverError::NotAReplica {
                    shard: shard.to_string(),
                    target: t.to_string(),
                });
            }
            t.to_string()
        }
        None => {
            promote::choose(s, &s.state.acked(), &config, false)
                .await?
                .0
        }
    };
    s.state.gate.set(GateState::Held("switchover".to_string()));
    let held_at = Instant::now();
    let r = async {
        let final_pos = promote::stop_writes(s, &config).await?;
        promote::catch_up(&target, &config, &final_pos).await?;
        promote::promote(
            host,
            shard,
            &target,
            Trigger::Switchover,
            since,
            held_at,
            &final_pos,
        )
        .await
    }
    .await;
    match &r {
        Ok(rec) => host.failovers().push(rec.clone()),
        Err(e) => {
            tracing::error!(shard, target = %target, "switchover failed, old primary kept: {e}");
            // The old primary is still the primary: let writes through again.
            let _ = promote::resume_writes(s, &config).await;
            s.state.gate.set(GateState::Open);
        }
    }
    r
}
