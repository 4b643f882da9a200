//! State shared by every session: the running config, the backend topology, the users, the
//! registry of live sessions, counters.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use tokio::sync::watch;

use crate::backend::topology::Topology;
use crate::config::{Config, User};
use crate::frontend::registry::Registry;
use crate::protocol::auth;

/// How a user's password is checked.
pub struct UserAuth {
    /// `SHA1(SHA1(pw))`; `None` for the empty password.
    pub native: Option<[u8; 20]>,
    /// `SHA256(SHA256(pw))`, known from a clear-text password or learnt at the first full
    /// caching_sha2 authentication.
    pub sha2: Mutex<Option<[u8; 32]>>,
    /// The user may log in only over TLS (`require_tls`).
    pub require_tls: bool,
    /// What the user may do (`databases`, `role`); `None`: everything.
    pub rights: Option<Arc<crate::frontend::privileges::Rights>>,
    /// The user's `max_connections`.
    pub max_connections: Option<usize>,
    /// The user's open sessions (counted against `max_connections`).
    pub sessions: AtomicUsize,
    /// Where the user's reads go unless a session says otherwise (`read_from`).
    pub read_from: crate::config::ReadFrom,
}

impl UserAuth {
    pub fn from_user(u: &User) -> UserAuth {
        let (native, sha2) = match (&u.password, &u.password_hash) {
            (Some(p), _) if p.is_empty() => (None, None),
            (Some(p), _) => (
                Some(auth::native_stage2(p.as_bytes())),
                Some(auth::sha2_stage2(p.as_bytes())),
            ),
            (None, Some(h)) => (auth::parse_native_hash(h), None),
            (None, None) => (None, None),
        };
        UserAuth {
            native,
            sha2: Mutex::new(sha2),
            require_tls: u.require_tls,
            rights: crate::frontend::privileges::Rights::of_user(u).map(Arc::new),
            max_connections: u.max_connections,
            sessions: AtomicUsize::new(0),
            read_from: u.read_from.unwrap_or_default(),
        }
    }
}

/// Process-wide counters.
#[derive(Default)]
pub struct Counters {
    pub connections_total: AtomicU64,
    pub queries: AtomicU64,
    pub errors: AtomicU64,
    /// Prepared-statement plans reused at execute (hits) and built at prepare (misses).
    pub plan_cache_hits: AtomicU64,
    pub plan_cache_misses: AtomicU64,
    /// Text statements planned from the text plan cache (hits) or parsed (misses).
    pub text_plan_cache_hits: AtomicU64,
    pub text_plan_cache_misses: AtomicU64,
}

/// Everything sessions share.
pub struct Proxy {
    pub config: RwLock<Arc<Config>>,
    pub topology: RwLock<Arc<Topology>>,
    pub users: RwLock<Arc<HashMap<String, Arc<UserAuth>>>>,
    /// Placement rules (sharded and reference tables, the ring), rebuilt on config reload.
    pub rules: RwLock<Arc<crate::plan::Rules>>,
    pub registry: Registry,
    /// Global sequences for the keys of sharded tables (blocks reserved on the default shard).
    pub sequences: crate::sequence::Sequences,
    pub counters: Counters,
    pub started: Instant,
    /// The version string clients see: the default shard's own, so client libraries enable
    /// exactly the features the backends have.
    pub server_version: String,
    pub rsa: crate::frontend::rsa_key::RsaKey,
    /// Idle lists per pool, kept for the topologies of reloaded configs
    /// ([`crate::backend::pool::PoolSettings::idle_lists`]).
    pub pool_idle_lists: usize,
    next_id: AtomicU32,
    pub shutdown: watch::Sender<bool>,
    /// Failovers and switchovers: their history and per-shard locks.
    pub failovers: crate::backend::failover::Failovers,
    /// The audit log, when `audit.path` is set (started with the proxy; not changed by a
    /// config reload).
    pub audit: Option<crate::frontend::audit::Audit>,
    /// The data port's TLS acceptor, from `[tls]` (loaded at start; a reload keeps it).
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// Failed logins per client address (`frontend.max_connect_errors`).
    pub login_guard: crate::frontend::login_guard::LoginGuard,
    /// The etcd coordination of several proxies, from `[coordination]` at start (a reload
    /// keeps it); `None`: this proxy decides failovers alone.
    pub coordinator: Option<Arc<crate::backend::coordination::Coordinator>>,
    /// Closed during a resharding's cutover: statements wait here *before* they are planned,
    /// so they are planned on the new ring once it opens (sessions with an open transaction
    /// pass, so that it can finish).
    pub reshard_gate: crate::backend::gate::Gate,
    /// Statements of client sessions past the resharding gate and not finished yet (what the
    /// cutover waits to reach zero).
    pub statements_running: AtomicUsize,
}

/// Failover reaches the running proxy through this (it sits in a lower layer).
impl crate::backend::failover::Host for Proxy {
    fn topology(&self) -> Arc<Topology> {
        Proxy::topology(self)
    }

    fn config(&self) -> Arc<Config> {
        Proxy::config(self)
    }

    fn install(&self, t: Arc<Topology>) {
        *self.topology.write().unwrap_or_else(|e| e.into_inner()) = t;
    }

    fn failovers(&self) -> &crate::backend::failover::Failovers {
        &self.failovers
    }

    fn coordinator(&self) -> Option<Arc<crate::backend::coordination::Coordinator>> {
        self.coordinator.clone()
    }
}

impl Proxy {
    /// A proxy whose pools keep one idle list (no session threads: tests, tools).
    pub fn new(config: Config, server_version: String) -> anyhow::Result<Arc<Proxy>> {
        Proxy::with_pool_idle_lists(config, server_version, 1)
    }

    /// A proxy whose pools keep `idle_lists` idle lists: one per session thread plus one
    /// ([`crate::workers::Workers::pool_idle_lists`]).
    pub fn with_pool_idle_lists(
        config: Config,
        server_version: String,
        idle_lists: usize,
    ) -> anyhow::Result<Arc<Proxy>> {
        crate::backend::tls::check_config(&config).map_err(|e| anyhow::anyhow!(e))?;
        let topology = Topology::from_config(&config, idle_lists);
        let users = users_of(&config);
        let rules = crate::plan::Rules::from_config(&config);
        let rsa = crate::frontend::rsa_key::RsaKey::new(config.frontend.rsa_private_key.clone());
        let (tx, _) = watch::channel(false);
        let audit = crate::frontend::audit::Audit::start(&config.audit).map_err(|e| {
            anyhow::anyhow!("cannot open the audit log {:?}: {e}", config.audit.path)
        })?;
        let tls = config
            .tls
            .as_ref()
            .map(crate::frontend::tls::acceptor)
            .transpose()?;
        let coordinator = config
            .coordination
            .as_ref()
            .map(|c| crate::backend::coordination::Coordinator::new(c, &config.listen));
        Ok(Arc::new(Proxy {
            config: RwLock::new(Arc::new(config)),
            topology: RwLock::new(Arc::new(topology)),
            users: RwLock::new(Arc::new(users)),
            rules: RwLock::new(Arc::new(rules)),
            registry: Registry::default(),
            sequences: crate::sequence::Sequences::default(),
            counters: Counters::default(),
            started: Instant::now(),
            server_version,
            rsa,
            pool_idle_lists: idle_lists,
            next_id: AtomicU32::new(1),
            shutdown: tx,
            failovers: Default::default(),
            audit,
            tls,
            login_guard: Default::default(),
            coordinator,
            reshard_gate: Default::default(),
            statements_running: AtomicUsize::new(0),
        }))
    }

    pub fn config(&self) -> Arc<Config> {
        self.config
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn topology(&self) -> Arc<Topology> {
        self.topology
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn rules(&self) -> Arc<crate::plan::Rules> {
        self.rules.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn user(&self, name: &str) -> Option<Arc<UserAuth>> {
        self.users
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }

    /// Installs a validated config: users, placement rules and topology follow it (a config
    /// reload and a resharding's cutover). Sessions keep the leases they hold; new statements
    /// use the new pools. Pools first, so that rules naming a new shard find its pool.
    pub fn install_config(&self, new: Config) {
        let topology = Topology::reloaded(&new, self.pool_idle_lists, &self.topology());
        *self.topology.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(topology);
        let rules = crate::plan::Rules::from_config(&new);
        *self.rules.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(rules);
        let users = users_of(&new);
        *self.users.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(users);
        *self.config.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(new);
    }

    /// A new connection id for a client (what it sees in the handshake and uses in KILL).
    pub fn next_connection_id(&self) -> u32 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }
}

pub fn users_of(c: &Config) -> HashMap<String, Arc<UserAuth>> {
    c.users
        .iter()
        .map(|u| (u.name.clone(), Arc::new(UserAuth::from_user(u))))
        .collect()
}
