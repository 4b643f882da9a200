//! Following the leader's decisions (`[coordination]`): every topology the leader writes to
//! etcd ([`crate::backend::coordination`]) is applied here, on every proxy, with the same swap
//! a local promotion does ([`Topology::promoted`]): the named replica becomes the shard's
//! primary, the old primary is fenced, the state file is written, and the shard's held
//! statements go on to the new primary. The leader's own writes come back through the watch
//! and change nothing (its topology already names that primary).
//!
//! A follower never talks to the servers for this: the leader promoted, repointed and fenced
//! them. Each applied change is kept for `SHOW FAILOVERS` as [`Trigger::Followed`], so the
//! history of every proxy tells who decided.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;

use super::{Host, SwitchRecord, Trigger};
use crate::backend::coordination::SharedTopology;
use crate::backend::gate::GateState;
use crate::backend::topology::Topology;

/// Applies each topology etcd delivers until `shutdown` changes.
pub async fn run(
    host: Arc<dyn Host>,
    mut topologies: watch::Receiver<Option<Arc<SharedTopology>>>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let shared = topologies.borrow_and_update().clone();
        if let Some(t) = shared {
            apply(&*host, &t);
        }
        tokio::select! {
            r = topologies.changed() => if r.is_err() { return },
            _ = shutdown.changed() => return,
        }
    }
}

/// Makes the local topology name the primaries `shared` names; returns the shards changed.
pub fn apply(host: &dyn Host, shared: &SharedTopology) -> Vec<String> {
    let mut topo: Arc<Topology> = host.topology();
    let mut changed = Vec::new();
    let mut records = Vec::new();
    for (shard, p) in &shared.topology.shards {
        let Some(s) = topo.shard(shard) else {
            tracing::error!(shard, by = %shared.by, "coordination: etcd names a shard this proxy's config does not have");
            continue;
        };
        if s.primary.addr == p.primary {
            continue;
        }
        let old = s.primary.addr.clone();
        match topo.promoted(shard, &p.primary) {
            Ok(next) => {
                tracing::warn!(shard, old_primary = %old, new_primary = %p.primary, by = %shared.by, "topology changed: new primary (decided by the coordination leader)");
                records.push(SwitchRecord {
                    at: SystemTime::now(),
                    shard: shard.clone(),
                    trigger: Trigger::Followed,
                    old_primary: old,
                    new_primary: Some(p.primary.clone()),
                    acked: s.state.acked().to_string(),
                    position: String::new(),
                    total: Duration::ZERO,
                    write_pause: Duration::ZERO,
                    outcome: format!("followed {}", shared.by),
                });
                topo = Arc::new(next);
                changed.push(shard.clone());
            }
            Err(e) => {
                tracing::error!(shard, new_primary = %p.primary, by = %shared.by, "coordination: cannot follow the topology in etcd: {e}")
            }
        }
    }
    if changed.is_empty() {
        return changed;
    }
    let config = host.config();
    if let Some(path) = &config.failover.state_file {
        if let Err(e) = topo.persisted().save(path) {
            tracing::error!("cannot write the failover state file {path}: {e}");
        }
    }
    host.install(topo.clone());
    for shard in &changed {
        if let Some(s) = topo.shard(shard) {
            s.state.gate.set(GateState::Open);
        }
    }
    for r in records {
        host.failovers().push(r);
    }
    changed
}
