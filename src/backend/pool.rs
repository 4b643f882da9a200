//! A pool of connections to one backend server.
//!
//! Connections are keyed by the client capability bits they mirror and the handshake
//! collation (a connection answers in the shape its login asked for). A lease holds a permit
//! of the pool's size limit; waiting for a permit is bounded, so a saturated backend gives the
//! client an error, never a hang. Only clean connections come back (no open transaction, no
//! pinned state); anything doubtful is closed instead, which makes the server roll back and
//! release locks.
//!
//! Idle connections are kept per thread: a connection belongs to the runtime that opened it,
//! so a session only gets back connections its own thread opened. A pool is made with its
//! number of idle lists ([`PoolSettings::idle_lists`]); each thread says once which list is
//! its own ([`use_idle_list`], called by `workers` when a session thread starts), and every
//! `get`/`put` uses the calling thread's list, read from a thread-local.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::conn::{BackendConn, BackendError, ConnectParams};
use crate::protocol::constants::{cap, status, DEFAULT_COLLATION};
use crate::session_state::SessionVars;

/// Idle connections older than this are pinged before reuse.
const IDLE_CHECK_AFTER: Duration = Duration::from_secs(5);

thread_local! {
    /// The idle list of every pool that the calling thread uses ([`use_idle_list`]).
    static IDLE_LIST: Cell<usize> = const { Cell::new(0) };
}

/// Makes the calling thread use idle list `i` of every pool from now on. Session threads call
/// it once when they start (list 1..=n); every other thread uses list 0. A pool with fewer
/// lists gives such a thread its list 0.
pub fn use_idle_list(i: usize) {
    IDLE_LIST.with(|c| c.set(i));
}

/// The server's role in its shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Primary,
    Replica,
    /// A former primary taken out by a failover or switchover: never routed to as primary
    /// again.
    Fenced,
}

impl Role {
    pub fn as_str(&self) -> &'static str {
        match self {
            Role::Primary => "primary",
            Role::Replica => "replica",
            Role::Fenced => "fenced",
        }
    }

    fn to_u8(self) -> u8 {
        self as u8
    }

    fn from_u8(v: u8) -> Role {
        match v {
            0 => Role::Primary,
            1 => Role::Replica,
            _ => Role::Fenced,
        }
    }
}

/// Counters shown by the admin port and metrics.
#[derive(Debug, Default)]
pub struct PoolStats {
    pub in_use: AtomicUsize,
    pub idle: AtomicUsize,
    pub queries: AtomicU64,
    pub errors: AtomicU64,
    pub connects: AtomicU64,
    /// Health as seen by the last check (true until a check fails).
    pub healthy: AtomicBool,
    /// Replication lag in seconds from the last check; -1 unknown.
    pub lag_seconds: AtomicI64,
    /// Replication lag in ms measured from GTID positions ([`super::lag`]) at the last check;
    /// -1 unknown, or replication not running (then the replica answers no reads).
    pub lag_ms: AtomicI64,
    /// Reads sent here (by the read set, on a replica; plain reads on a primary).
    pub reads: AtomicU64,
    /// What the last health check saw (positions, read_only, semi-sync, failures in a row).
    pub observed: Mutex<super::observed::Observed>,
    /// A switchover is taking writes away from this server: a session must not reuse a
    /// connection it kept here between statements.
    pub draining: AtomicBool,
}

/// Connections to one server.
pub struct Pool {
    pub addr: String,
    /// The same address, shared cheaply (what a running statement records for KILL).
    pub addr_shared: Arc<str>,
    pub shard: String,
    /// The server's current role ([`Role`] as a byte: a promotion changes it in place, so a
    /// pool keeps its stats across topology changes).
    role: std::sync::atomic::AtomicU8,
    pub stats: PoolStats,
    user: String,
    password: String,
    connect_timeout: Duration,
    read_timeout: Option<Duration>,
    wait: Duration,
    /// `pool_idle` shared out among the session threads' lists.
    idle_per_list: usize,
    /// Idle connections, one list per thread ([`use_idle_list`]). Boxed as leases hold them:
    /// taking one out or putting it back moves a pointer.
    idle: Vec<Mutex<IdleList>>,
    permits: Arc<Semaphore>,
    /// TLS to this server (`Err`: the CA file could not be loaded; every login fails with it).
    tls: Option<Result<Arc<super::tls::BackendTls>, String>>,
}

/// Idle connections of one thread, boxed as leases hold them.
#[allow(clippy::vec_box)]
type IdleList = Vec<Box<BackendConn>>;

/// A connection taken from a pool. Dropping it closes the connection; [`Pool::put`] returns
/// it.
pub struct Lease {
    /// Boxed: a lease moves between the pool, the session and its held slot on every
    /// statement, and a connection (buffers, prepared statements, session state) is large.
    pub conn: Box<BackendConn>,
    pub pool: Arc<Pool>,
    _in_use: InUse,
}

/// Counts a lease in `in_use` for as long as it lives, and holds its pool permit.
struct InUse(Arc<Pool>, #[allow(dead_code)] OwnedSemaphorePermit);

impl Drop for InUse {
    fn drop(&mut self) {
        self.0.stats.in_use.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Settings shared by every pool.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    pub user: String,
    pub password: String,
    pub connect_timeout: Duration,
    pub read_timeout: Option<Duration>,
    pub wait: Duration,
    pub max: usize,
    pub idle_max: usize,
    /// Idle lists per pool: one per session thread plus list 0, which every other thread uses
    /// (the main runtime: listeners, admin port, health checks). 1 without session threads.
    pub idle_lists: usize,
    /// TLS to the server (`Err`: the CA file could not be loaded); `None`: clear text.
    pub tls: Option<Result<Arc<super::tls::BackendTls>, String>>,
}

impl Pool {
    pub fn new(addr: &str, shard: &str, role: Role, s: &PoolSettings) -> Arc<Pool> {
        let stats = PoolStats::default();
        stats.healthy.store(true, Ordering::Relaxed);
        stats.lag_seconds.store(-1, Ordering::Relaxed);
        stats.lag_ms.store(-1, Ordering::Relaxed);
        Arc::new(Pool {
            addr: addr.to_string(),
            addr_shared: Arc::from(addr),
            shard: shard.to_string(),
            role: std::sync::atomic::AtomicU8::new(role.to_u8()),
            stats,
            user: s.user.clone(),
            password: s.password.clone(),
            connect_timeout: s.connect_timeout,
            read_timeout: s.read_timeout,
            wait: s.wait,
            idle_per_list: match s.idle_lists.max(1) {
                1 => s.idle_max,
                n => s.idle_max.div_ceil(n - 1).max(1),
            },
            idle: (0..s.idle_lists.max(1))
                .map(|_| Mutex::new(Vec::new()))
                .collect(),
            permits: Arc::new(Semaphore::new(s.max)),
            tls: s.tls.clone(),
        })
    }

    /// The server's current role in its shard.
    pub fn role(&self) -> Role {
        Role::from_u8(self.role.load(Ordering::Relaxed))
    }

    /// Whether a session may keep using a connection it holds to this server between
    /// statements: not once it is fenced or being switched away from (one atomic load).
    #[inline]
    pub fn keeps_sessions(&self) -> bool {
        !self.stats.draining.load(Ordering::Relaxed)
    }

    /// Records a new role (a promotion or fencing; the topology is swapped alongside).
    pub fn set_role(&self, role: Role) {
        if role == Role::Fenced {
            self.stats.draining.store(true, Ordering::Relaxed);
        }
        self.role.store(role.to_u8(), Ordering::Relaxed);
    }

    /// Parameters to open a connection of the given shape.
    pub fn connect_params(&self, relay_caps: u32, collation: u8) -> ConnectParams {
        ConnectParams {
            addr: self.addr.clone(),
            user: self.user.clone(),
            password: self.password.clone(),
            relay_caps,
            collation,
            connect_timeout: self.connect_timeout,
            read_timeout: self.read_timeout,
            tls: self.tls.clone(),
        }
    }

    /// Takes an idle connection of this shape (preferring one whose session state already
    /// equals `wanted`) or opens one.
    pub async fn get(
        self: &Arc<Self>,
        relay_caps: u32,
        collation: u8,
        wanted: &SessionVars,
    ) -> Result<Lease, BackendError> {
        let relay_caps = relay_caps & cap::RELAY_RELEVANT;
        // The common case takes a free permit at once, without arming a timer.
        let permit = match self.permits.clone().try_acquire_owned() {
            Ok(p) => Ok(Ok(p)),
            Err(_) => tokio::time::timeout(self.wait, self.permits.clone().acquire_owned()).await,
        };
        let permit = match permit {
            Ok(Ok(p)) => p,
            _ => {
                return Err(BackendError::Lost {
                    addr: self.addr.clone(),
                    reason: format!(
                        "no free connection within {:?} (pool of {} is full)",
                        self.wait,
                        self.permits.available_permits()
                    ),
                })
            }
        };
        let found = {
            let mut idle = self.idle_list().lock().unwrap_or_else(|e| e.into_inner());
            let mut pick = None;
            for (i, c) in idle.iter().enumerate().rev() {
                if c.relay_caps == relay_caps && c.collation == collation {
                    if &c.vars == wanted {
                        pick = Some(i);
                        break;
                    }
                    if pick.is_none() {
                        pick = Some(i);
                    }
                }
            }
            let c = pick.map(|i| idle.swap_remove(i));
            if c.is_some() {
                self.stats.idle.fetch_sub(1, Ordering::Relaxed);
            }
            c
        };
        // A connection idle for a while may have been closed by the server (wait_timeout, a
        // restart): check it before trusting it with a statement that might not be retryable.
        let found = match found {
            Some(mut c) if c.last_used.elapsed() > IDLE_CHECK_AFTER => {
                if c.ping().await {
                    Some(c)
                } else {
                    self.clear_idle();
                    None
                }
            }
            other => other,
        };
        let conn = match found {
            Some(c) => c,
            None => {
                let c = BackendConn::connect(&self.connect_params(relay_caps, collation)).await;
                self.stats.connects.fetch_add(1, Ordering::Relaxed);
                match c {
                    Ok(c) => Box::new(c),
                    Err(e) => {
                        self.stats.errors.fetch_add(1, Ordering::Relaxed);
                        return Err(e);
                    }
                }
            }
        };
        self.stats.in_use.fetch_add(1, Ordering::Relaxed);
        Ok(Lease {
            conn,
            pool: self.clone(),
            _in_use: InUse(self.clone(), permit),
        })
    }

    /// Gives a connection back if it is clean; otherwise closes it.
    pub fn put(&self, lease: Lease) {
        let Lease { mut conn, .. } = lease;
        conn.last_used = std::time::Instant::now();
        if conn.status & status::IN_TRANS != 0 || conn.reader.has_buffered() {
            return;
        }
        let mut idle = self.idle_list().lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < self.idle_per_list {
            idle.push(conn);
            self.stats.idle.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The calling thread's idle list.
    fn idle_list(&self) -> &Mutex<IdleList> {
        // A pool made with fewer lists than there are threads: share the first.
        self.idle
            .get(IDLE_LIST.with(|i| i.get()))
            .unwrap_or(&self.idle[0])
    }

    /// Asks the server for its version string (what clients are shown), on a connection of
    /// its own.
    pub async fn server_version(&self) -> Result<String, BackendError> {
        let c = BackendConn::connect(&self.connect_params(0, DEFAULT_COLLATION)).await?;
        Ok(c.server_version)
    }

    /// Closes every idle connection (after a failover or a config change).
    pub fn clear_idle(&self) {
        for list in &self.idle {
            let mut idle = list.lock().unwrap_or_else(|e| e.into_inner());
            self.stats.idle.fetch_sub(idle.len(), Ordering::Relaxed);
            idle.clear();
        }
    }
}
