//! The keys of a resharding cutover shared by every proxy of the cluster (`[coordination]`):
//! a small two-phase exchange in etcd, decided by etcd's transactions, not by a protocol of
//! ours (the steps, and why no proxy serves the old ring after the commit point, are in
//! `docs/resharding.md`, "The cutover with several proxies").
//!
//! - `/shardproxy/<cluster>/reshard/cutover`: the driving proxy's announcement
//!   ([`CutoverMsg`]), attached to its lease (it disappears when the driver dies). Its phase
//!   goes `hold` → `commit` → `switch`, or `hold` → `abort`.
//! - `/shardproxy/<cluster>/reshard/held/<name>`: each other proxy's "my gate is closed and my
//!   statements are quiet" for one cutover id, attached to that proxy's lease.
//!
//! `hold` → `commit` (the driver, before it persists `done`) and `hold` → `abort` (a proxy
//! tired of holding) are both transactions on the key's value: exactly one of them succeeds,
//! so a proxy that reopened on the old ring has made the driver's commit impossible.

use etcd_client::{Compare, CompareOp, GetOptions, PutOptions, Txn, TxnOp};
use serde::{Deserialize, Serialize};

use super::{lock, Coordinator, CALL_TIMEOUT};

/// Where a shared cutover is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CutoverPhase {
    /// Every proxy closes its resharding gate and acknowledges once it is quiet.
    Hold,
    /// The driver won the key: it persists `done` and switches; nobody may abort any more.
    Commit,
    /// The new ring serves: install `config` and open the gate.
    Switch,
    /// Abandoned before the commit: open the gate on the old ring.
    Abort,
}

/// The value of the cutover key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CutoverMsg {
    /// One cutover attempt (the driver's name and a counter): acknowledgements name it.
    pub id: String,
    /// The driving proxy.
    pub by: String,
    /// Where the cutover is.
    pub phase: CutoverPhase,
    /// How long a proxy may hold its gate for this cutover before it tries to abort (ms).
    pub bound_ms: u64,
    /// The target config's TOML text: what every proxy installs at the switch (also when it
    /// finds `done` persisted after the driver died).
    pub config: String,
}

impl CutoverMsg {
    /// The same cutover in another phase.
    pub fn with_phase(&self, phase: CutoverPhase) -> CutoverMsg {
        CutoverMsg {
            phase,
            ..self.clone()
        }
    }

    fn encode(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

fn timeout_err(_: tokio::time::error::Elapsed) -> String {
    format!("etcd did not answer within {CALL_TIMEOUT:?}")
}

impl Coordinator {
    fn connected(&self) -> Result<(etcd_client::Client, i64), String> {
        match (lock(&self.client).clone(), *lock(&self.lease)) {
            (Some(c), Some(l)) => Ok((c, l)),
            _ => Err("etcd not connected".to_string()),
        }
    }

    /// The cutover key as the watch delivers it (`None`: absent, e.g. the driver's lease
    /// expired).
    pub fn cutovers(&self) -> tokio::sync::watch::Receiver<Option<std::sync::Arc<CutoverMsg>>> {
        self.cutover.subscribe()
    }

    /// Writes `msg` to the cutover key, attached to this proxy's lease.
    pub async fn announce(&self, msg: &CutoverMsg) -> Result<(), String> {
        let (mut client, lease) = self.connected()?;
        let put = client.put(
            self.key("reshard/cutover"),
            msg.encode(),
            Some(PutOptions::new().with_lease(lease)),
        );
        tokio::time::timeout(CALL_TIMEOUT, put)
            .await
            .map_err(timeout_err)?
            .map_err(|e| e.to_string())?;
        Ok(())
    }

    /// Replaces the cutover key's value `from` with `to` (attached to this proxy's lease) only
    /// if it still is `from`, in one etcd transaction: `Ok(false)` when it was not.
    pub async fn replace_cutover(
        &self,
        from: &CutoverMsg,
        to: &CutoverMsg,
    ) -> Result<bool, String> {
        let (mut client, lease) = self.connected()?;
        let key = self.key("reshard/cutover");
        let txn = Txn::new()
            .when([Compare::value(key.clone(), CompareOp::Equal, from.encode())])
            .and_then([TxnOp::put(
                key,
                to.encode(),
                Some(PutOptions::new().with_lease(lease)),
            )]);
        let r = tokio::time::timeout(CALL_TIMEOUT, client.txn(txn))
            .await
            .map_err(timeout_err)?
            .map_err(|e| e.to_string())?;
        Ok(r.succeeded())
    }

    /// Says in etcd that this proxy holds for cutover `id` (its gate closed, quiet).
    pub async fn ack_held(&self, id: &str) -> Result<(), String> {
        let (mut client, lease) = self.connected()?;
        let put = client.put(
            self.key(&format!("reshard/held/{}", self.name)),
            id,
            Some(PutOptions::new().with_lease(lease)),
        );
        tokio::time::timeout(CALL_TIMEOUT, put)
            .await
            .map_err(timeout_err)?
            .map_err(|e| e.to_string())?;
        Ok(())
    }

    /// The names of the keys under `what/` and their values.
    async fn names_under(&self, what: &str) -> Result<Vec<(String, String)>, String> {
        let (mut client, _) = self.connected()?;
        let prefix = self.key(&format!("{what}/"));
        let get = client.get(prefix.clone(), Some(GetOptions::new().with_prefix()));
        let r = tokio::time::timeout(CALL_TIMEOUT, get)
            .await
            .map_err(timeout_err)?
            .map_err(|e| e.to_string())?;
        Ok(r.kvs()
            .iter()
            .map(|kv| {
                let k = String::from_utf8_lossy(kv.key());
                (
                    k.strip_prefix(&prefix).unwrap_or(&k).to_string(),
                    String::from_utf8_lossy(kv.value()).into_owned(),
                )
            })
            .collect())
    }

    /// The other live proxies: those whose `acked/<name>` key exists (it is attached to their
    /// lease, written at their first renewal).
    pub async fn other_live_proxies(&self) -> Result<Vec<String>, String> {
        Ok(self
            .names_under("acked")
            .await?
            .into_iter()
            .map(|(n, _)| n)
            .filter(|n| *n != self.name)
            .collect())
    }

    /// The proxies that acknowledged holding for cutover `id`.
    pub async fn held_for(&self, id: &str) -> Result<Vec<String>, String> {
        Ok(self
            .names_under("reshard/held")
            .await?
            .into_iter()
            .filter(|(_, v)| v == id)
            .map(|(n, _)| n)
            .collect())
    }

    /// The cutover key as read at a (re)connection: passed on only if it differs from what
    /// the watch last delivered (a reconnection alone is not a new cutover).
    pub(super) fn cutover_refresh(&self, value: Option<&[u8]>) {
        let now = value.and_then(|v| serde_json::from_slice::<CutoverMsg>(v).ok());
        self.cutover
            .send_if_modified(|seen| match (seen.as_deref(), &now) {
                (a, b) if a == b.as_ref() => false,
                _ => {
                    *seen = now.clone().map(std::sync::Arc::new);
                    true
                }
            });
    }

    /// What the watch saw at the cutover key (`None`: deleted).
    pub(super) fn cutover_seen(&self, value: Option<&[u8]>) {
        let msg = match value {
            None => None,
            Some(v) => match serde_json::from_slice::<CutoverMsg>(v) {
                Ok(m) => Some(std::sync::Arc::new(m)),
                Err(err) => {
                    tracing::error!(proxy = %self.name, "coordination: unreadable cutover key in etcd, ignored: {err}");
                    return;
                }
            },
        };
        self.cutover.send_replace(msg);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_phase_change_keeps_the_rest_and_encodes_the_phase_in_lowercase() {
        let m = CutoverMsg {
            id: "p1#1".into(),
            by: "p1".into(),
            phase: CutoverPhase::Hold,
            bound_ms: 2000,
            config: "listen = \"x\"".into(),
        };
        let c = m.with_phase(CutoverPhase::Commit);
        assert_eq!((c.id.as_str(), c.bound_ms), ("p1#1", 2000));
        assert!(
            c.encode().contains("\"phase\":\"commit\""),
            "{}",
            c.encode()
        );
        assert_ne!(m.encode(), c.encode());
        let back: CutoverMsg = serde_json::from_str(&m.encode()).unwrap();
        assert_eq!(back, m);
    }

    #[test]
    fn a_reconnection_passes_the_key_on_only_when_it_changed() {
        let settings = crate::config::Coordination {
            etcd: vec!["127.0.0.1:1".into()],
            cluster: "c1".into(),
            lease_ttl_s: 3,
            name: Some("p2".into()),
        };
        let c = Coordinator::new(&settings, "127.0.0.1:6033");
        let mut rx = c.cutovers();
        let hold = CutoverMsg {
            id: "p1#1".into(),
            by: "p1".into(),
            phase: CutoverPhase::Hold,
            bound_ms: 2000,
            config: String::new(),
        };
        c.cutover_seen(Some(hold.encode().as_bytes()));
        assert!(rx.has_changed().unwrap());
        rx.borrow_and_update();
        // The same value read again at a reconnection: no new cutover.
        c.cutover_refresh(Some(hold.encode().as_bytes()));
        assert!(!rx.has_changed().unwrap());
        // A switch written while etcd was away is passed on.
        let switch = hold.with_phase(CutoverPhase::Switch);
        c.cutover_refresh(Some(switch.encode().as_bytes()));
        assert!(rx.has_changed().unwrap());
        assert_eq!(rx.borrow_and_update().as_deref(), Some(&switch));
        // And the key gone.
        c.cutover_refresh(None);
        assert_eq!(*rx.borrow_and_update(), None);
        assert_eq!(c.key("reshard/cutover"), "/shardproxy/c1/reshard/cutover");
    }
}
