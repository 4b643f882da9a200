//! The cutover with several proxies (`[coordination]`): every proxy of the cluster closes its
//! resharding gate for it, and every one switches to the new ring at the commit point.
//!
//! The exchange is two-phase, over the etcd keys of
//! [`crate::backend::coordination::cutover`]:
//!
//! 1. The driver writes `reshard/cutover` = `{id, phase: hold, config}` *before* it closes its
//!    own gate ([`Announced::hold`]).
//! 2. Every other proxy ([`follow`]) sees it by its watch, closes its gate, waits until its
//!    statements and transactions are quiet (the same bound), and writes
//!    `reshard/held/<name>` = id, attached to its lease.
//! 3. The driver waits for the acknowledgement of every live proxy (those with an
//!    `acked/<name>` key, i.e. a lease) ([`Announced::wait_held`]); the log is drained to
//!    empty; then it moves the key from `hold` to `commit` in one etcd transaction
//!    ([`Announced::commit`]). A proxy tired of holding moves it from `hold` to `abort` the
//!    same way: exactly one of the two succeeds.
//! 4. Only after its `commit`, the driver persists `done` (the commit point) and installs the
//!    new config, then writes `switch`: every proxy installs the config text and opens.
//!
//! A holding proxy that hears nothing: before a `commit` it aborts (then the driver cannot
//! commit); after a `commit` it keeps holding until the `switch`, the `abort`, or, the key
//! gone (the driver's lease expired), the persisted state decides: `done` → the new ring,
//! anything else → the old one. The argument is in docs/resharding.md.

use std::sync::atomic::{fence, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::admin::reshard_sql::{self as sql, Db};
use crate::backend::coordination::cutover::{CutoverMsg, CutoverPhase};
use crate::backend::coordination::Coordinator;
use crate::backend::gate::GateState;
use crate::config::Config;
use crate::plan::reshard::placement_changes;
use crate::plan::reshard_state::{Phase, ReshardState};
use crate::proxy::Proxy;

/// How much longer than the driver's bound a proxy waits for the `commit` before it aborts:
/// covers the driver's drain and the etcd round trips after the last acknowledgement.
const GRACE: Duration = Duration::from_millis(1000);

/// A cutover announced by this proxy (the driver).
pub(super) struct Announced {
    /// The coordination this proxy takes part in.
    c: Arc<Coordinator>,
    /// The `hold` value written: the transactions compare with it.
    hold: CutoverMsg,
    /// Whether the key went to `commit` (then no other proxy can abort).
    committed: bool,
}

impl Announced {
    /// Step 1: announces the hold, with the target config's text (read from `to_path`).
    pub(super) async fn hold(
        c: &Arc<Coordinator>,
        to_path: &str,
        bound_ms: u64,
    ) -> Result<Announced, String> {
        let config = std::fs::read_to_string(to_path).map_err(|e| format!("{to_path}: {e}"))?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let hold = CutoverMsg {
            id: format!("{}#{nanos}", c.name),
            by: c.name.clone(),
            phase: CutoverPhase::Hold,
            bound_ms,
            config,
        };
        c.announce(&hold).await?;
        Ok(Announced {
            c: c.clone(),
            hold,
            committed: false,
        })
    }

    /// Step 3: every live proxy acknowledged the hold before `deadline`; else why not.
    pub(super) async fn wait_held(&self, deadline: Instant) -> Result<(), String> {
        let mut cutovers = self.c.cutovers();
        loop {
            let others = self.c.other_live_proxies().await?;
            let held = self.c.held_for(&self.hold.id).await?;
            let missing: Vec<&String> = others.iter().filter(|n| !held.contains(n)).collect();
            if missing.is_empty() {
                return Ok(());
            }
            let now = cutovers.borrow_and_update().clone();
            if let Some(m) = now.filter(|m| m.id == self.hold.id) {
                if m.phase == CutoverPhase::Abort {
                    return Err("another proxy could not hold and aborted the cutover".into());
                }
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "proxies {missing:?} did not hold within {} ms",
                    self.hold.bound_ms
                ));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// The cutover's id (what a proxy fences on the default shard).
    pub(super) fn id(&self) -> &str {
        &self.hold.id
    }

    /// `hold` → `commit` in one etcd transaction; `false`: another proxy aborted first.
    pub(super) async fn commit(&mut self) -> Result<bool, String> {
        let commit = self.hold.with_phase(CutoverPhase::Commit);
        self.committed = self.c.replace_cutover(&self.hold, &commit).await?;
        Ok(self.committed)
    }

    /// Step 4's end: the new ring serves here; every proxy installs it.
    pub(super) async fn switch(&self) {
        if let Err(e) = self
            .c
            .announce(&self.hold.with_phase(CutoverPhase::Switch))
            .await
        {
            tracing::error!("reshard: the switch was not written to etcd ({e}); the other proxies find `done` persisted when their hold ends");
        }
    }

    /// The cutover is abandoned before the commit point: every proxy reopens on the old ring.
    pub(super) async fn abort(&self) {
        let abort = self.hold.with_phase(CutoverPhase::Abort);
        let r = if self.committed {
            // `done` was not persisted: only this proxy can still move the key.
            self.c.announce(&abort).await
        } else {
            self.c.replace_cutover(&self.hold, &abort).await.map(|_| ())
        };
        if let Err(e) = r {
            tracing::warn!("reshard: the abort was not written to etcd ({e}); the other proxies abort by themselves when their hold ends");
        }
    }
}

/// Waits until no client statement is past the resharding gate and no session holds an open
/// transaction, or `deadline` passes (`false`).
pub(super) async fn quiet(proxy: &Proxy, deadline: Instant) -> bool {
    loop {
        let running = proxy.statements_running.load(Ordering::SeqCst);
        let open_transaction = || {
            proxy
                .registry
                .all()
                .iter()
                .any(|h| h.snapshot().pinned == Some("transaction"))
        };
        if running == 0 && !open_transaction() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// How a cutover this proxy held for ended.
enum Outcome {
    /// The new ring serves: this config text.
    New(String),
    /// The old ring keeps serving (why).
    Old(String),
}

/// Every other proxy's part (started with the proxy when `[coordination]` is set): holds for
/// each cutover another proxy announces, until it ends.
pub async fn follow(proxy: Arc<Proxy>, c: Arc<Coordinator>) {
    let mut cutovers = c.cutovers();
    let mut shutdown = proxy.shutdown.subscribe();
    loop {
        tokio::select! {
            r = cutovers.changed() => if r.is_err() { return },
            _ = shutdown.changed() => return,
        }
        let Some(msg) = cutovers.borrow_and_update().clone() else {
            continue;
        };
        if msg.by == c.name {
            continue;
        }
        let outcome = match msg.phase {
            CutoverPhase::Hold => take_part(&proxy, &c, &mut cutovers, &msg).await,
            // A switch this proxy did not hold for (it was not live when the hold came, or
            // it reconnected to etcd): followed only if the move is persisted as done and
            // the config changes the placement here.
            CutoverPhase::Switch => {
                let differs = Config::parse(&msg.config)
                    .is_ok_and(|new| !placement_changes(&proxy.config(), &new).is_empty());
                if !differs || !matches!(persisted_done(&proxy).await, Ok(true)) {
                    continue;
                }
                Outcome::New(msg.config.clone())
            }
            CutoverPhase::Commit | CutoverPhase::Abort => continue,
        };
        finish(&proxy, &msg, outcome);
    }
}

/// Installs the outcome and opens the gate.
fn finish(proxy: &Proxy, msg: &CutoverMsg, outcome: Outcome) {
    match outcome {
        Outcome::New(text) => match Config::parse(&text) {
            Ok(mut new) => {
                keep_own(&proxy.config(), &mut new);
                proxy.install_config(new);
                tracing::info!(id = %msg.id, by = %msg.by, "reshard: shared cutover done, the new ring serves");
            }
            Err(e) => {
                // Never reached with a driver that checked the same text; refusing beats
                // serving the old ring.
                tracing::error!(id = %msg.id, "reshard: the new config from etcd does not parse ({e:#}); statements stay held");
                return;
            }
        },
        Outcome::Old(why) => {
            tracing::warn!(id = %msg.id, by = %msg.by, "reshard: shared cutover abandoned, the old ring serves: {why}")
        }
    }
    proxy.reshard_gate.set(GateState::Open);
}

/// The driver's config text names its own ports, coordination name and state file: this
/// proxy keeps its own, also at a restart that installs the persisted target (the ring, the
/// shards, the tables and the users are what the cutover changes).
pub(super) fn keep_own(own: &Config, new: &mut Config) {
    new.listen = own.listen.clone();
    new.admin_listen = own.admin_listen.clone();
    new.http_listen = own.http_listen.clone();
    new.coordination = own.coordination.clone();
    new.failover.state_file = own.failover.state_file.clone();
}

/// Closes the gate for `hold`, acknowledges once quiet, and waits for its end.
async fn take_part(
    proxy: &Arc<Proxy>,
    c: &Arc<Coordinator>,
    cutovers: &mut tokio::sync::watch::Receiver<Option<Arc<CutoverMsg>>>,
    hold: &CutoverMsg,
) -> Outcome {
    let received = Instant::now();
    let bound = Duration::from_millis(hold.bound_ms);
    proxy
        .reshard_gate
        .set(GateState::Held(format!("resharding cutover ({})", hold.by)));
    // Pairs with the sessions' count-then-look (`enter_statement`).
    fence(Ordering::SeqCst);
    let abort = hold.with_phase(CutoverPhase::Abort);
    if !quiet(proxy, received + bound).await {
        let _ = c.replace_cutover(hold, &abort).await;
        return Outcome::Old(format!("statements still open after {} ms", hold.bound_ms));
    }
    if let Err(e) = c.ack_held(&hold.id).await {
        // The write may have landed all the same (a timeout): hold on, and reopen only
        // once the abort below succeeds.
        tracing::warn!("reshard: the hold could not be acknowledged in etcd ({e}); holding until the cutover ends or is aborted");
    }
    let give_up = received + bound + GRACE;
    let mut committed = false;
    loop {
        let now = cutovers.borrow_and_update().clone();
        match now.as_deref() {
            Some(m) if m.id == hold.id => match m.phase {
                CutoverPhase::Hold => {}
                CutoverPhase::Commit => committed = true,
                CutoverPhase::Switch => return Outcome::New(m.config.clone()),
                CutoverPhase::Abort => return Outcome::Old("the driver aborted".into()),
            },
            // The key is gone (the driver's lease expired) or names another cutover: the
            // persisted state decides (a `commit` the watch skipped may have been followed
            // by `done` before the driver died).
            _ => {
                return match fence_or_done(proxy, &hold.id).await {
                    Ok(true) => Outcome::New(hold.config.clone()),
                    Ok(false) if !committed => {
                        Outcome::Old("the driver is gone before the commit".into())
                    }
                    Ok(false) => Outcome::Old(
                        "the driver is gone after the commit, `done` was not persisted".into(),
                    ),
                    Err(e) => {
                        tracing::error!("reshard: the driver is gone after the commit and the persisted state is unreadable ({e}); holding");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        continue;
                    }
                };
            }
        }
        if Instant::now() >= give_up {
            if !committed {
                match c.replace_cutover(hold, &abort).await {
                    Ok(true) => {
                        return Outcome::Old(format!(
                            "no commit within {} ms: aborted",
                            (bound + GRACE).as_millis()
                        ))
                    }
                    // The key moved meanwhile (the watch delivers it), or etcd is away: the
                    // persisted state may already tell.
                    Ok(false) => {}
                    Err(e) => {
                        // etcd away: the fence on the default shard decides instead.
                        tracing::error!("reshard: cannot abort the cutover in etcd ({e}); fencing it on the default shard");
                        match fence_or_done(proxy, &hold.id).await {
                            Ok(true) => return Outcome::New(hold.config.clone()),
                            Ok(false) => {
                                return Outcome::Old(
                                    "no commit, etcd away: fenced on the default shard".into(),
                                )
                            }
                            Err(e) => tracing::error!(
                                "reshard: cannot fence the cutover either ({e}); holding"
                            ),
                        }
                    }
                }
                if let Ok(true) = persisted_done(proxy).await {
                    return Outcome::New(hold.config.clone());
                }
            } else if let Ok(true) = persisted_done(proxy).await {
                // The driver persisted `done` but its switch has not come (yet).
                return Outcome::New(hold.config.clone());
            }
        }
        let wait = if Instant::now() >= give_up {
            Duration::from_millis(500)
        } else {
            give_up - Instant::now()
        };
        tokio::select! {
            _ = cutovers.changed() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// A connection to the default shard's primary, where the move's state is persisted.
async fn home_db(proxy: &Proxy) -> Result<Db, String> {
    let config = proxy.config();
    let home = &config.sharding.default_shard;
    let addr = proxy
        .topology()
        .shard(home)
        .map(|p| p.primary.addr.clone())
        .ok_or_else(|| format!("no shard {home}"))?;
    Db::connect(&addr, &config).await
}

/// Fences cutover `id` on the default shard ([`sql::fence_cutover`]) and says whether `done`
/// was persisted before the fence (`true`: the new ring; `false`: the driver can no longer
/// persist it, the old ring is safe).
async fn fence_or_done(proxy: &Proxy, id: &str) -> Result<bool, String> {
    let mut db = home_db(proxy).await?;
    let phase = serde_json::to_value(Phase::Cutover).map_err(|e| e.to_string())?;
    let Some(json) = sql::fence_cutover(&mut db, id, phase.as_str().unwrap_or_default()).await?
    else {
        return Ok(false);
    };
    Ok(ReshardState::from_json(&json)?.phase.after_cutover())
}

/// Whether the state persisted on the default shard says the cutover happened.
async fn persisted_done(proxy: &Proxy) -> Result<bool, String> {
    let mut db = home_db(proxy).await?;
    let Some(json) = sql::load_state(&mut db).await? else {
        return Ok(false);
    };
    Ok(ReshardState::from_json(&json)?.phase.after_cutover())
}
