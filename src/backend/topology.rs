//! The shards' servers: one pool per server, looked up by shard name.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::pool::{Pool, PoolSettings, Role};
use crate::config::Config;

/// One shard's pools.
pub struct ShardPools {
    pub name: String,
    pub weight: u32,
    pub primary: Arc<Pool>,
    pub replicas: Vec<Arc<Pool>>,
}

/// Every shard's pools.
pub struct Topology {
    pub shards: Vec<ShardPools>,
    index: HashMap<String, usize>,
}

impl Topology {
    /// One pool per server of the config, each with `idle_lists` idle lists (see
    /// [`PoolSettings::idle_lists`]).
    pub fn from_config(c: &Config, idle_lists: usize) -> Topology {
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
                ShardPools {
                    name: s.name.clone(),
                    weight: s.weight,
                    primary: Pool::new(&s.primary, &s.name, Role::Primary, &settings),
                    replicas: s
                        .replicas
                        .iter()
                        .map(|r| Pool::new(r, &s.name, Role::Replica, &settings))
                        .collect(),
                }
            })
            .collect();
        let index = shards
            .iter()
            .enumerate()
            .map(|(i, s)| (s.name.clone(), i))
            .collect();
        Topology { shards, index }
    }

    /// Looked up on every statement: a short scan beats hashing the name for the few shards
    /// of a typical cluster; the index takes over for large ones.
    pub fn shard(&self, name: &str) -> Option<&ShardPools> {
        if self.shards.len() <= 16 {
            return self.shards.iter().find(|s| s.name == name);
        }
        self.index.get(name).map(|&i| &self.shards[i])
    }

    /// Every pool, primaries first.
    pub fn pools(&self) -> impl Iterator<Item = &Arc<Pool>> {
        self.shards
            .iter()
            .map(|s| &s.primary)
            .chain(self.shards.iter().flat_map(|s| s.replicas.iter()))
    }
}
