//! Many proxies, one decision: the leader lease and the shared topology in etcd
//! (`[coordination]`).
//!
//! Without `[coordination]` a proxy decides failovers alone (the embedded default). With it,
//! every proxy of the cluster runs [`Coordinator::run`], and etcd (not a protocol of ours) does
//! the agreeing:
//!
//! - **The lease.** Each proxy holds an etcd lease of `lease_ttl_s` seconds and renews it every
//!   third of that. The leader is the proxy named in `/shardproxy/<cluster>/leader`, a key
//!   created only if absent (a transaction on its create revision) and attached to the
//!   creator's lease: when that proxy dies or loses etcd, its lease expires, etcd deletes the
//!   key, and another proxy creates it at its next renewal.
//! - **Fencing by time.** A proxy may decide (promote a replica) only before its own
//!   *deadline*: the moment it **sent** its last successful renewal, plus the TTL etcd granted
//!   in the answer, less [`MARGIN`]. etcd counts that TTL from when it **received** the renewal,
//!   which is later, so the deadline falls before etcd's expiry, and no other proxy can hold the
//!   key before that expiry. A promotion starts only with at least [`DECIDE_BOUND`] left before
//!   the deadline, and its steps on the servers are cut off at that bound
//!   (`failover::promote`): a leader that loses its lease has stopped deciding before another
//!   can start. Both sides measure with monotonic clocks; the margin covers their rates.
//! - **The topology.** After a promotion the leader writes the new topology to
//!   `/shardproxy/<cluster>/topology`, in a transaction that succeeds only while the leader key
//!   still names it; every proxy watches that key ([`Coordinator::topologies`]) and applies the
//!   change with the same swap a local promotion does (`failover::follow`), within the watch's
//!   delivery time (milliseconds).
//! - **Acknowledged writes.** Each proxy knows the GTIDs it acknowledged to its own clients;
//!   at every renewal it writes them (per shard) to `/shardproxy/<cluster>/acked/<name>`,
//!   attached to its lease, and the leader merges every proxy's before it chooses a replica
//!   ([`Coordinator::acked_everywhere`]), so no proxy's acknowledged writes are forgotten.
//!   Writes acknowledged since a proxy's last renewal are not in it yet (semi-sync covers them:
//!   they are on a replica), nor are those of a proxy whose lease expired.
//! - **etcd down.** Nobody can renew: the leader stops deciding at its deadline and nobody else
//!   can start. Every proxy keeps serving the topology it has; a shard whose primary dies then
//!   has its statements held and then refused (no promotion without the lease) until etcd is
//!   back.
//! - **A resharding's cutover.** Every proxy takes part in it through the keys of
//!   [`cutover`]: the driver announces the hold, the others close their gates and acknowledge,
//!   and the switch (or the abort) reaches them by the watch of that key.

pub mod cutover;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, EventType, PutOptions, Txn, TxnOp, TxnOpResponse,
    WatchOptions,
};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::gtid::GtidPos;
use super::persisted::PersistedTopology;
use crate::config::Coordination;

/// The longest a decision may take once started: a promotion needs this much lease left, and
/// its server steps are cut off after it.
pub const DECIDE_BOUND: Duration = Duration::from_secs(2);

/// Taken off the lease's TTL for the deadline: covers the rate difference of the two monotonic
/// clocks and the time etcd takes to act on an expiry.
pub const MARGIN: Duration = Duration::from_millis(500);

/// Longest wait for one etcd call.
const CALL_TIMEOUT: Duration = Duration::from_secs(1);

/// What the leader writes to the topology key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedTopology {
    /// The proxy that wrote it.
    pub by: String,
    /// Every shard's primary and fenced servers.
    pub topology: PersistedTopology,
}

/// Why this proxy may not decide now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotLeader {
    #[error("this proxy ({me}) does not hold the coordination lease; the leader is {}", .leader.as_deref().unwrap_or("unknown (etcd unreachable?)"))]
    Follower { me: String, leader: Option<String> },
    #[error("this proxy's coordination lease has {left_ms} ms left, a decision needs {need_ms} ms: not deciding")]
    LeaseShort { left_ms: u64, need_ms: u64 },
}

/// This proxy's part in the coordination: its lease, who leads, the topology etcd holds.
pub struct Coordinator {
    /// The settings it started with.
    settings: Coordination,
    /// This proxy's name: the leader key's value when it leads.
    pub name: String,
    /// Until when this proxy may decide; `None`: it does not lead.
    deadline: Mutex<Option<Instant>>,
    /// The leader as last seen in etcd (`None`: unknown, etcd unreachable).
    leader: Mutex<Option<String>>,
    /// A client to the etcd cluster, once connected (clones share one channel).
    client: Mutex<Option<Client>>,
    /// The lease of the current session: the leader key must be attached to it for a write
    /// of the topology to succeed (two proxies given the same name still cannot both write).
    lease: Mutex<Option<i64>>,
    /// A topology the leader still has to write (etcd did not take it yet).
    pending: Mutex<Option<PersistedTopology>>,
    /// The topology in etcd, as the watch delivers it.
    topology: watch::Sender<Option<Arc<SharedTopology>>>,
    /// A resharding's shared cutover key, as the watch delivers it (`None`: absent).
    cutover: watch::Sender<Option<Arc<cutover::CutoverMsg>>>,
}

/// This proxy's acknowledged position per shard (`shard → GTID position`), as published.
pub type AckedByShard = BTreeMap<String, String>;

impl Coordinator {
    /// A coordinator that has not talked to etcd yet (see [`Self::run`]). `listen`: the data
    /// port, part of the default name.
    pub fn new(settings: &Coordination, listen: &str) -> Arc<Coordinator> {
        let name = settings.name.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_string())
                .unwrap_or_else(|_| "localhost".to_string());
            format!("{host}:{}:{listen}", std::process::id())
        });
        Arc::new(Coordinator {
            settings: settings.clone(),
            name,
            deadline: Mutex::new(None),
            leader: Mutex::new(None),
            client: Mutex::new(None),
            lease: Mutex::new(None),
            pending: Mutex::new(None),
            topology: watch::channel(None).0,
            cutover: watch::channel(None).0,
        })
    }

    fn key(&self, what: &str) -> String {
        format!("/shardproxy/{}/{what}", self.settings.cluster)
    }

    /// Whether this proxy leads now (its deadline has not passed).
    pub fn is_leader(&self) -> bool {
        self.may_decide(Duration::ZERO).is_ok()
    }

    /// The leader as last seen (`None`: unknown).
    pub fn leader(&self) -> Option<String> {
        lock(&self.leader).clone()
    }

    /// Ok if this proxy leads and holds its lease for at least `need` more.
    pub fn may_decide(&self, need: Duration) -> Result<(), NotLeader> {
        let Some(deadline) = *lock(&self.deadline) else {
            return Err(NotLeader::Follower {
                me: self.name.clone(),
                leader: self.leader(),
            });
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if left >= need && left > Duration::ZERO {
            Ok(())
        } else {
            Err(NotLeader::LeaseShort {
                left_ms: left.as_millis() as u64,
                need_ms: need.as_millis() as u64,
            })
        }
    }

    /// As [`Self::may_decide`], waiting up to one renewal period for a renewal that makes
    /// enough room.
    pub async fn wait_decide(&self, need: Duration) -> Result<(), NotLeader> {
        let until = Instant::now() + self.renew_every() + CALL_TIMEOUT;
        loop {
            match self.may_decide(need) {
                Ok(()) => return Ok(()),
                Err(NotLeader::LeaseShort { .. }) if Instant::now() < until => {
                    tokio::time::sleep(Duration::from_millis(20)).await
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn renew_every(&self) -> Duration {
        Duration::from_secs(self.settings.lease_ttl_s) / 3
    }

    /// The topology in etcd, updated at each change.
    pub fn topologies(&self) -> watch::Receiver<Option<Arc<SharedTopology>>> {
        self.topology.subscribe()
    }

    /// Writes `t` as the cluster's topology, if this proxy still leads (checked by etcd in the
    /// same transaction). On failure it is kept and written again at the next renewal while
    /// this proxy leads.
    pub async fn publish(&self, t: &PersistedTopology) -> Result<(), String> {
        *lock(&self.pending) = Some(t.clone());
        self.write_pending().await
    }

    async fn write_pending(&self) -> Result<(), String> {
        let Some(t) = lock(&self.pending).clone() else {
            return Ok(());
        };
        let (Some(mut client), Some(lease)) = (lock(&self.client).clone(), *lock(&self.lease))
        else {
            return Err("etcd not connected".to_string());
        };
        let value = serde_json::to_string(&SharedTopology {
            by: self.name.clone(),
            topology: t.clone(),
        })
        .map_err(|e| e.to_string())?;
        let txn = Txn::new()
            .when([
                Compare::value(self.key("leader"), CompareOp::Equal, self.name.clone()),
                Compare::lease(self.key("leader"), CompareOp::Equal, lease),
            ])
            .and_then([TxnOp::put(self.key("topology"), value, None)]);
        let r = tokio::time::timeout(CALL_TIMEOUT, client.txn(txn))
            .await
            .map_err(|_| format!("etcd did not answer within {CALL_TIMEOUT:?}"))?
            .map_err(|e| e.to_string())?;
        if !r.succeeded() {
            *lock(&self.pending) = None;
            return Err(format!(
                "{} does not lead any more: topology not written",
                self.name
            ));
        }
        let mut p = lock(&self.pending);
        if p.as_ref() == Some(&t) {
            *p = None;
        }
        Ok(())
    }

    /// The acknowledged position of `shard` merged over every live proxy's published one and
    /// `own` (this proxy's, the freshest). etcd unreachable: `own` alone, logged.
    pub async fn acked_everywhere(&self, shard: &str, own: &GtidPos) -> GtidPos {
        let mut all = own.clone();
        let Some(mut client) = lock(&self.client).clone() else {
            return all;
        };
        let prefix = self.key("acked/");
        let got = tokio::time::timeout(
            CALL_TIMEOUT,
            client.get(prefix, Some(etcd_client::GetOptions::new().with_prefix())),
        )
        .await;
        match got {
            Ok(Ok(r)) => {
                for kv in r.kvs() {
                    let pos = serde_json::from_slice::<AckedByShard>(kv.value())
                        .ok()
                        .and_then(|m| m.get(shard).cloned())
                        .and_then(|p| GtidPos::parse(&p).ok());
                    if let Some(p) = pos {
                        all.merge(&p);
                    }
                }
            }
            Ok(Err(e)) => {
                tracing::error!(shard, "coordination: the other proxies' acknowledged GTIDs are unreadable, using this proxy's: {e}")
            }
            Err(_) => {
                tracing::error!(shard, "coordination: etcd did not give the other proxies' acknowledged GTIDs within {CALL_TIMEOUT:?}, using this proxy's")
            }
        }
        all
    }

    /// Holds the lease, campaigns for the leader key, publishes `acked()` (this proxy's
    /// acknowledged positions) and watches the topology until `shutdown` changes; reconnects
    /// (after 500 ms) whenever etcd fails. On shutdown a leader revokes its lease, so another
    /// proxy takes over at once.
    pub async fn run(
        self: Arc<Self>,
        acked: impl Fn() -> AckedByShard + Send + Sync + 'static,
        mut shutdown: watch::Receiver<bool>,
    ) {
        loop {
            let r = tokio::select! {
                r = self.session(&acked) => r,
                _ = shutdown.changed() => Ok(()),
            };
            *lock(&self.deadline) = None;
            *lock(&self.leader) = None;
            let id = lock(&self.lease).take();
            let client = lock(&self.client).clone();
            if *shutdown.borrow() {
                if let (Some(id), Some(mut c)) = (id, client) {
                    let _ = tokio::time::timeout(CALL_TIMEOUT, c.lease_revoke(id)).await;
                }
                return;
            }
            if let Err(e) = r {
                tracing::warn!(proxy = %self.name, "coordination: etcd session ended, not deciding failovers until it is back: {e}");
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    /// One connection to etcd with one lease: returns when either fails.
    async fn session(&self, acked: &(impl Fn() -> AckedByShard + Sync)) -> Result<(), String> {
        let e = |e: etcd_client::Error| e.to_string();
        let ttl = self.settings.lease_ttl_s as i64;
        let opts = ConnectOptions::new()
            .with_connect_timeout(CALL_TIMEOUT)
            .with_timeout(CALL_TIMEOUT);
        let mut client = Client::connect(&self.settings.etcd, Some(opts))
            .await
            .map_err(e)?;
        *lock(&self.client) = Some(client.clone());
        let lease = client.lease_grant(ttl, None).await.map_err(e)?.id();
        *lock(&self.lease) = Some(lease);
        let (mut keeper, mut renewals) = client.lease_keep_alive(lease).await.map_err(e)?;
        // The topology as it is now, then every change after it.
        let now = client.get(self.key("topology"), None).await.map_err(e)?;
        if let Some(kv) = now.kvs().first() {
            self.seen(kv.value());
        }
        let rev = now.header().map_or(0, |h| h.revision());
        let mut changes = client
            .watch(
                self.key("topology"),
                Some(WatchOptions::new().with_start_revision(rev + 1)),
            )
            .await
            .map_err(e)?;
        // The cutover key as it is now (a change missed while etcd was away is seen), then
        // every change after it.
        let now = client
            .get(self.key("reshard/cutover"), None)
            .await
            .map_err(e)?;
        self.cutover_refresh(now.kvs().first().map(|kv| kv.value()));
        let rev = now.header().map_or(0, |h| h.revision());
        let mut cutovers = client
            .watch(
                self.key("reshard/cutover"),
                Some(WatchOptions::new().with_start_revision(rev + 1)),
            )
            .await
            .map_err(e)?;
        tracing::info!(proxy = %self.name, lease, ttl_s = ttl, "coordination: connected to etcd");
        let mut next_renewal = tokio::time::Instant::now();
        let mut published: Option<AckedByShard> = None;
        loop {
            tokio::select! {
                m = changes.message() => {
                    let Some(m) = m.map_err(e)? else {
                        return Err("the topology watch ended".to_string());
                    };
                    if m.canceled() {
                        return Err(format!("the topology watch was cancelled: {}", m.cancel_reason()));
                    }
                    for ev in m.events() {
                        if let (EventType::Put, Some(kv)) = (ev.event_type(), ev.kv()) {
                            self.seen(kv.value());
                        }
                    }
                }
                m = cutovers.message() => {
                    let Some(m) = m.map_err(e)? else {
                        return Err("the cutover watch ended".to_string());
                    };
                    if m.canceled() {
                        return Err(format!("the cutover watch was cancelled: {}", m.cancel_reason()));
                    }
                    for ev in m.events() {
                        match (ev.event_type(), ev.kv()) {
                            (EventType::Put, Some(kv)) => self.cutover_seen(Some(kv.value())),
                            (EventType::Delete, _) => self.cutover_seen(None),
                            _ => {}
                        }
                    }
                }
                _ = tokio::time::sleep_until(next_renewal) => {
                    let sent = Instant::now();
                    next_renewal = tokio::time::Instant::from_std(sent + self.renew_every());
                    keeper.keep_alive().await.map_err(e)?;
                    let granted = match tokio::time::timeout(CALL_TIMEOUT, renewals.message()).await {
                        Ok(Ok(Some(r))) if r.ttl() > 0 => Duration::from_secs(r.ttl() as u64),
                        Ok(Ok(Some(_))) => return Err(format!("lease {lease} expired")),
                        Ok(Ok(None)) => return Err("the lease renewal stream ended".to_string()),
                        Ok(Err(err)) => return Err(err.to_string()),
                        Err(_) => return Err(format!("no lease renewal answer within {CALL_TIMEOUT:?}")),
                    };
                    self.campaign(&mut client, lease, sent + granted.saturating_sub(MARGIN)).await?;
                    let now = acked();
                    if published.as_ref() != Some(&now) {
                        let value = serde_json::to_string(&now).map_err(|e| e.to_string())?;
                        let key = self.key(&format!("acked/{}", self.name));
                        let put = client.put(key, value, Some(PutOptions::new().with_lease(lease)));
                        tokio::time::timeout(CALL_TIMEOUT, put)
                            .await
                            .map_err(|_| format!("etcd did not answer within {CALL_TIMEOUT:?}"))?
                            .map_err(e)?;
                        published = Some(now);
                    }
                }
            }
        }
    }

    /// Creates the leader key if absent (attached to `lease`) and records who leads; this
    /// proxy's deadline becomes `deadline` if it does.
    async fn campaign(
        &self,
        client: &mut Client,
        lease: i64,
        deadline: Instant,
    ) -> Result<(), String> {
        let key = self.key("leader");
        let txn = Txn::new()
            .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(
                key.clone(),
                self.name.clone(),
                Some(PutOptions::new().with_lease(lease)),
            )])
            .or_else([TxnOp::get(key, None)]);
        let r = tokio::time::timeout(CALL_TIMEOUT, client.txn(txn))
            .await
            .map_err(|_| format!("etcd did not answer within {CALL_TIMEOUT:?}"))?
            .map_err(|e| e.to_string())?;
        let (leader, mine) = if r.succeeded() {
            (Some(self.name.clone()), true)
        } else {
            let held = r.op_responses().into_iter().find_map(|o| match o {
                TxnOpResponse::Get(g) => g.kvs().first().map(|kv| {
                    (
                        String::from_utf8_lossy(kv.value()).into_owned(),
                        kv.lease() == lease,
                    )
                }),
                _ => None,
            });
            match held {
                Some((name, mine)) => (Some(name), mine),
                None => (None, false),
            }
        };
        let was = lock(&self.deadline).is_some();
        *lock(&self.deadline) = mine.then_some(deadline);
        if mine != was {
            tracing::warn!(proxy = %self.name, leader = ?leader, "coordination: {}", if mine { "this proxy now decides failovers (leader lease held)" } else { "this proxy no longer decides failovers" });
        }
        *lock(&self.leader) = leader;
        if mine {
            if let Err(err) = self.write_pending().await {
                tracing::error!(proxy = %self.name, "coordination: topology still not written to etcd: {err}");
            }
        } else if lock(&self.pending).take().is_some() {
            tracing::error!(proxy = %self.name, "coordination: lost the lease before the topology was written to etcd; the next leader decides again");
        }
        Ok(())
    }

    fn seen(&self, value: &[u8]) {
        match serde_json::from_slice::<SharedTopology>(value) {
            Ok(t) => {
                self.topology.send_replace(Some(Arc::new(t)));
            }
            Err(err) => {
                tracing::error!(proxy = %self.name, "coordination: unreadable topology in etcd, ignored: {err}")
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Coordination {
        Coordination {
            etcd: vec!["127.0.0.1:1".into()],
            cluster: "c1".into(),
            lease_ttl_s: 3,
            name: Some("p1".into()),
        }
    }

    #[test]
    fn only_a_proxy_within_its_deadline_with_room_may_decide() {
        let c = Coordinator::new(&settings(), "127.0.0.1:6033");
        assert_eq!(c.key("leader"), "/shardproxy/c1/leader");
        assert_eq!(
            c.may_decide(Duration::ZERO),
            Err(NotLeader::Follower {
                me: "p1".into(),
                leader: None
            })
        );
        *lock(&c.deadline) = Some(Instant::now() + Duration::from_secs(1));
        assert!(c.is_leader());
        assert!(c.may_decide(Duration::from_millis(500)).is_ok());
        assert!(matches!(
            c.may_decide(DECIDE_BOUND),
            Err(NotLeader::LeaseShort { need_ms: 2000, .. })
        ));
        *lock(&c.deadline) = Some(Instant::now());
        assert!(!c.is_leader());
    }

    #[test]
    fn the_default_name_is_unique_per_process_and_port() {
        let mut s = settings();
        s.name = None;
        let n = Coordinator::new(&s, "127.0.0.1:7000").name.clone();
        assert!(
            n.ends_with(&format!(":{}:127.0.0.1:7000", std::process::id())),
            "{n}"
        );
    }
}
