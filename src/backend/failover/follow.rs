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

#[cfg(test)]
mod tests {
    use std::sync::{Mutex, RwLock};

    use super::*;
    use crate::backend::failover::Failovers;
    use crate::backend::persisted::{PersistedShard, PersistedTopology};
    use crate::backend::pool::Role;
    use crate::config::Config;

    /// A host with a topology and nothing else.
    struct Fake {
        config: Arc<Config>,
        topology: RwLock<Arc<Topology>>,
        failovers: Failovers,
        installs: Mutex<usize>,
    }

    impl Host for Fake {
        fn topology(&self) -> Arc<Topology> {
            self.topology.read().unwrap().clone()
        }
        fn config(&self) -> Arc<Config> {
            self.config.clone()
        }
        fn install(&self, t: Arc<Topology>) {
            *self.installs.lock().unwrap() += 1;
            *self.topology.write().unwrap() = t;
        }
        fn failovers(&self) -> &Failovers {
            &self.failovers
        }
        fn coordinator(&self) -> Option<Arc<crate::backend::coordination::Coordinator>> {
            None
        }
    }

    fn shared(primary: &str, fenced: &[&str]) -> SharedTopology {
        let mut t = PersistedTopology::default();
        t.shards.insert(
            "s1".into(),
            PersistedShard {
                primary: primary.into(),
                fenced: fenced.iter().map(|f| f.to_string()).collect(),
            },
        );
        SharedTopology {
            by: "leader-1".into(),
            topology: t,
        }
    }

    #[test]
    fn a_follower_swaps_to_the_leaders_primary_once_and_opens_the_gate() {
        let mut c = crate::plan::rules::tests::test_config(2);
        c.shards[0].replicas = vec!["127.0.0.1:1".into(), "127.0.0.1:2".into()];
        let old = c.shards[0].primary.clone();
        let host = Fake {
            topology: RwLock::new(Arc::new(Topology::from_config(&c, 1))),
            config: Arc::new(c),
            failovers: Failovers::default(),
            installs: Mutex::new(0),
        };
        let s1 = &host.topology().shards[0];
        s1.state.gate.set(GateState::Held("primary is down".into()));

        let t = shared("127.0.0.1:2", &[&old]);
        assert_eq!(apply(&host, &t), vec!["s1".to_string()]);
        let now = host.topology();
        assert_eq!(now.shards[0].primary.addr, "127.0.0.1:2");
        assert_eq!(now.shards[0].primary.role(), Role::Primary);
        assert_eq!(now.shards[0].fenced[0].addr, old);
        assert_eq!(now.shards[0].replicas[0].addr, "127.0.0.1:1");
        assert!(now.shards[0].state.gate.is_open());
        let h = host.failovers.history();
        assert_eq!(h.len(), 1);
        assert_eq!(h[0].trigger, Trigger::Followed);
        assert_eq!(h[0].outcome, "followed leader-1");

        // The same topology again (the watch's echo, a reconnect): nothing changes.
        assert!(apply(&host, &t).is_empty());
        assert_eq!(*host.installs.lock().unwrap(), 1);
        // A primary this proxy does not know as a replica is not followed.
        assert!(apply(&host, &shared("127.0.0.1:9", &[])).is_empty());
        assert_eq!(host.topology().shards[0].primary.addr, "127.0.0.1:2");
        assert_eq!(host.failovers.history().len(), 1);
    }
}
