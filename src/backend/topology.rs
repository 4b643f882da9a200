//! The shards' servers: one pool per server, looked up by shard name, and who is primary.
//!
//! A [`Topology`] is immutable: a promotion builds the next one with [`Topology::promoted`]
//! (same pools, so their connections and statistics carry over; roles changed) and the proxy
//! swaps the `Arc`. The hot path therefore stays one read lock and one `Arc` clone, as before.
//! What must outlive a swap lives in each shard's [`ShardState`], shared by every topology of
//! that shard: the highest GTID acknowledged to a client, the fenced servers, and the write
//! gate that holds statements during a switch ([`super::gate`]).
//!
//! The primary named in the config is only the first one: if a state file exists
//! (`failover.state_file`, written at every topology change: [`super::persisted`]),
//! its primaries and fenced servers win, so a restarted proxy keeps the promoted topology
//! without the config being rewritten.

use std::collections::HashMap;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::gate::Gate;
use super::gtid::{Gtid, GtidPos};
use super::lag::PrimaryMarks;
use super::persisted::{PersistedShard, PersistedTopology};
use super::pool::{Pool, PoolSettings, Role};
use crate::config::Config;
use crate::protocol::session_track::TrackedGtid;

/// What a shard keeps across topology swaps.
#[derive(Default)]
pub struct ShardState {
    /// The highest GTID (per domain) of a commit the proxy acknowledged to a client: a
    /// replica is promoted only if it holds this.
    pub acked: Mutex<GtidPos>,
    /// Holds (or refuses) the shard's statements while its primary is down or switching.
    pub gate: Gate,
    /// The primary's GTID positions as its health checks saw them: replicas' lag is measured
    /// against them ([`super::lag`]).
    pub primary_marks: PrimaryMarks,
    /// Turns reads among the shard's replicas ([`super::read_set::choose`]).
    pub next_read: AtomicUsize,
}

impl ShardState {
    /// Records a commit acknowledged to a client.
    pub fn record_ack(&self, g: TrackedGtid) {
        self.acked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .advance(Gtid {
                domain: g.domain,
                server: g.server,
                seq: g.seq,
            });
    }

    /// The highest acknowledged position so far.
    pub fn acked(&self) -> GtidPos {
        self.acked.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// One shard's pools.
pub struct ShardPools {
    pub name: String,
    pub weight: u32,
    /// The current primary: where writes go.
    pub primary: Arc<Pool>,
    /// The replicas following it.
    pub replicas: Vec<Arc<Pool>>,
    /// Former primaries: never routed to as primary again (shown, health-checked).
    pub fenced: Vec<Arc<Pool>>,
    /// State shared with every other topology of this shard.
    pub state: Arc<ShardState>,
}

/// Every shard's pools.
pub struct Topology {
    pub shards: Vec<ShardPools>,
    index: HashMap<String, usize>,
}

/// Why a promotion could not be applied to the topology.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PromoteError {
    #[error("unknown shard '{0}'")]
    UnknownShard(String),
    #[error("'{addr}' is not a replica of shard '{shard}'")]
    NotAReplica { shard: String, addr: String },
    #[error("'{addr}' is not a fenced server of shard '{shard}'")]
    NotFenced { shard: String, addr: String },
}

impl Topology {
    /// One pool per server of the config, each with `idle_lists` idle lists (see
    /// [`PoolSettings::idle_lists`]); primaries and fenced servers as the state file says, if
    /// the config names one and it exists.
    pub fn from_config(c: &Config, idle_lists: usize) -> Topology {
        Topology::load(c, idle_lists, None)
    }

    /// The topology of a reloaded config: as [`Self::from_config`], keeping each remaining
    /// shard's [`ShardState`] (acknowledged GTIDs, the gate) from `previous`.
    pub fn reloaded(c: &Config, idle_lists: usize, previous: &Topology) -> Topology {
        Topology::load(c, idle_lists, Some(previous))
    }

    fn load(c: &Config, idle_lists: usize, previous: Option<&Topology>) -> Topology {
        let persisted =
            c.failover
                .state_file
                .as_deref()
                .and_then(|p| match PersistedTopology::load(p) {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::error!(
                            "failover state file {p} unreadable, using the config's primaries: {e}"
                        );
                        None
                    }
                });
        Topology::from_config_and_state(c, idle_lists, persisted.as_ref(), previous)
    }

    /// As [`Self::from_config`], with the persisted topology given, and the shard states of
    /// `previous` kept (a config reload must not forget acknowledged GTIDs).
    pub fn from_config_and_state(
        c: &Config,
        idle_lists: usize,
        persisted: Option<&PersistedTopology>,
        previous: Option<&Topology>,
    ) -> Topology {
        let b = &c.backend;
        let settings = PoolSettings {
            user: b.user.clone(),
            password: b.password.clone(),
            connect_timeout: Duration::from_millis(b.connect_timeout_ms),
            read_timeout: (b.query_timeout_ms > 0)
                .then(|| Duration::from_millis(b.query_timeout_ms)),
            wait: Duration::from_millis(b.pool_wait_ms),
            max: b.pool_max,
            idle_max: b.pool_idle,
            idle_lists,
            tls: None,
        };
        let mut cas = super::tls::CaCache::default();
        let shards: Vec<ShardPools> = c
            .shards
            .iter()
            .map(|s| {
                let settings = PoolSettings {
                    tls: cas.for_shard(s, b),
                    ..settings.clone()
                };
                let mut servers: Vec<&String> = std::iter::once(&s.primary)
                    .chain(s.replicas.iter())
                    .collect();
                let p = persisted.and_then(|p| p.shards.get(&s.name));
                let primary_addr = match p {
                    Some(p) if servers.contains(&&p.primary) => &p.primary,
                    _ => &s.primary,
                };
                let fenced_addrs: Vec<&String> = p
                    .map(|p| p.fenced.iter().filter(|f| servers.contains(f)).collect())
                    .unwrap_or_default();
                // A fenced server named again in the config stays out: it comes back only by
                // the rejoin check (`failover::rejoin`) or when the operator clears it in the
                // state file.
                servers.retain(|a| *a != primary_addr && !fenced_addrs.contains(a));
                ShardPools {
                    name: s.name.clone(),
                    weight: s.weight,
                    primary: Pool::new(primary_addr, &s.name, Role::Primary, &settings),
                    replicas: servers
                        .iter()
                        .map(|r| Pool::new(r, &s.name, Role::Replica, &settings))
                        .collect(),
                    fenced: fenced_addrs
                        .iter()
                        .map(|r| Pool::new(r, &s.name, Role::Fenced, &settings))
                        .collect(),
                    state: previous
                        .and_then(|t| t.shard(&s.name))
                        .map(|p| p.state.clone())
                        .unwrap_or_default(),
                }
            })
            .collect();
        Topology::of(shards)
    }

    fn of(shards: Vec<ShardPools>) -> Topology {
        let index = shards
            .iter()
            .enumerate()
            .map(|(i, s)| (s.name.clone(), i))
            .collect();
        Topology { shards, index }
    }

    /// The next topology after `new_primary` (a replica of `shard`) is promoted: the old
    /// primary is fenced, the other replicas follow the new one. Same pools; roles updated.
    pub fn promoted(&self, shard: &str, new_primary: &str) -> Result<Topology, PromoteError> {
        let Some(cur) = self.shard(shard) else {
            return Err(PromoteError::UnknownShard(shard.to_string()));
        };
        let Some(np) = cur.replicas.iter().find(|r| r.addr == new_primary) else {
            return Err(PromoteError::NotAReplica {
                shard: shard.to_string(),
                addr: new_primary.to_string(),
            });
        };
        np.set_role(Role::Primary);
        // Lag is measured against the new primary's positions from now on.
        cur.state.primary_marks.clear();
        cur.primary.set_role(Role::Fenced);
        cur.primary.clear_idle();
        let mut fenced = cur.fenced.clone();
        fenced.push(cur.primary.clone());
        Ok(self.with_shard(ShardPools {
            name: cur.name.clone(),
            weight: cur.weight,
            primary: np.clone(),
            replicas: cur
                .replicas
                .iter()
                .filter(|r| r.addr != new_primary)
                .cloned()
                .collect(),
            fenced,
            state: cur.state.clone(),
        }))
    }

    /// This topology with `next` in place of the shard of the same name; the other shards
    /// keep their pools (shallow copies).
    fn with_shard(&self, next: ShardPools) -> Topology {
        let mut next = Some(next);
        let shards = self
            .shards
            .iter()
            .map(|s| match next.take_if(|n| n.name == s.name) {
                Some(n) => n,
                None => s.clone_shallow(),
            })
            .collect();
        Topology::of(shards)
    }

    /// The next topology after the fenced server `addr` of `shard` rejoined as a replica of
    /// its primary. Same pools; its role updated.
    pub fn rejoined(&self, shard: &str, addr: &str) -> Result<Topology, PromoteError> {
        let Some(cur) = self.shard(shard) else {
            return Err(PromoteError::UnknownShard(shard.to_string()));
        };
        let Some(back) = cur.fenced.iter().find(|f| f.addr == addr) else {
            return Err(PromoteError::NotFenced {
                shard: shard.to_string(),
                addr: addr.to_string(),
            });
        };
        // Its `draining` flag stays set: a connection a session kept there while it was the
        // primary must never serve that session again (replica connections are never kept).
        back.set_role(Role::Replica);
        let mut replicas = cur.replicas.clone();
        replicas.push(back.clone());
        Ok(self.with_shard(ShardPools {
            name: cur.name.clone(),
            weight: cur.weight,
            primary: cur.primary.clone(),
            replicas,
            fenced: cur
                .fenced
                .iter()
                .filter(|f| f.addr != addr)
                .cloned()
                .collect(),
            state: cur.state.clone(),
        }))
    }

    /// Looked up on every statement: a short scan beats hashing the name for the few shards
    /// of a typical cluster; the index takes over for large ones.
    pub fn shard(&self, name: &str) -> Option<&ShardPools> {
        if self.shards.len() <= 16 {
            return self.shards.iter().find(|s| s.name == name);
        }
        self.index.get(name).map(|&i| &self.shards[i])
    }

    /// Every pool, primaries first, then replicas, then fenced servers.
    pub fn pools(&self) -> impl Iterator<Item = &Arc<Pool>> {
        self.shards
            .iter()
            .map(|s| &s.primary)
            .chain(self.shards.iter().flat_map(|s| s.replicas.iter()))
            .chain(self.shards.iter().flat_map(|s| s.fenced.iter()))
    }

    /// What a state file records of this topology.
    pub fn persisted(&self) -> PersistedTopology {
        PersistedTopology {
            shards: self
                .shards
                .iter()
                .map(|s| {
                    (
                        s.name.clone(),
                        PersistedShard {
                            primary: s.primary.addr.clone(),
                            fenced: s.fenced.iter().map(|f| f.addr.clone()).collect(),
                        },
                    )
                })
                .collect(),
        }
    }
}

impl ShardPools {
    /// The same shard in another topology (pools and state shared).
    fn clone_shallow(&self) -> ShardPools {
        ShardPools {
            name: self.name.clone(),
            weight: self.weight,
            primary: self.primary.clone(),
            replicas: self.replicas.clone(),
            fenced: self.fenced.clone(),
            state: self.state.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn promotion_fences_the_old_primary_and_keeps_pools_and_state() {
        let c = crate::plan::rules::tests::test_config(2);
        let mut c = c;
        c.shards[0].replicas = vec!["127.0.0.1:1".into(), "127.0.0.1:2".into()];
        let t = Topology::from_config(&c, 1);
        let s0 = &t.shards[0];
        let old = s0.primary.clone();
        let r1 = s0.replicas[0].clone();
        s0.state.record_ack(TrackedGtid {
            domain: 0,
            server: 1,
            seq: 7,
        });
        let t2 = t.promoted(&s0.name, "127.0.0.1:1").unwrap();
        let n0 = &t2.shards[0];
        assert!(Arc::ptr_eq(&n0.primary, &r1));
        assert_eq!(n0.primary.role(), Role::Primary);
        assert_eq!(n0.replicas.len(), 1);
        assert_eq!(n0.replicas[0].addr, "127.0.0.1:2");
        assert!(Arc::ptr_eq(&n0.fenced[0], &old));
        assert_eq!(old.role(), Role::Fenced);
        assert_eq!(n0.state.acked().to_string(), "0-1-7");
        assert!(Arc::ptr_eq(&t2.shards[1].primary, &t.shards[1].primary));
        assert_eq!(
            t2.promoted(&n0.name, &old.addr).err(),
            Some(PromoteError::NotAReplica {
                shard: n0.name.clone(),
                addr: old.addr.clone()
            })
        );
        assert_eq!(t2.pools().count(), 4);
        // The fenced former primary rejoins as a replica of the new one.
        let t3 = t2.rejoined(&n0.name, &old.addr).unwrap();
        assert_eq!(old.role(), Role::Replica);
        assert!(!old.keeps_sessions());
        assert!(t3.shards[0].fenced.is_empty());
        assert_eq!(t3.shards[0].replicas.len(), 2);
        assert!(t3.persisted().shards["s1"].fenced.is_empty());
        assert!(t3.rejoined(&n0.name, &old.addr).is_err());
    }

    #[test]
    fn a_promotion_survives_a_restart() {
        let dir = std::env::temp_dir().join(format!("sp-state-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("topology.json").to_string_lossy().into_owned();
        let mut c = crate::plan::rules::tests::test_config(2);
        c.shards[0].replicas = vec!["127.0.0.1:1".into(), "127.0.0.1:2".into()];
        c.failover.state_file = Some(path.clone());
        let t = Topology::from_config(&c, 1);
        assert_eq!(t.shards[0].primary.addr, c.shards[0].primary);
        let t2 = t.promoted("s1", "127.0.0.1:2").unwrap();
        t2.persisted().save(&path).unwrap();
        // A restarted proxy with the same config.
        let t3 = Topology::from_config(&c, 1);
        assert_eq!(t3.shards[0].primary.addr, "127.0.0.1:2");
        assert_eq!(t3.shards[0].replicas.len(), 1);
        assert_eq!(t3.shards[0].replicas[0].addr, "127.0.0.1:1");
        assert_eq!(t3.shards[0].fenced[0].addr, c.shards[0].primary);
        assert_eq!(t3.shards[1].primary.addr, c.shards[1].primary);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
