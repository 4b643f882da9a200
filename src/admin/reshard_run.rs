//! `RESHARD START | CANCEL | CLEANUP` and `SHOW RESHARD STATUS`: the driver of an online move
//! of rows between shards, its cutover, and its resumption after a restart.
//!
//! The driver runs the phases of [`Phase`] in order on its own connections (see
//! [`super::reshard_copy`]), persisting the state on the running config's default shard after
//! every phase ([`super::reshard_sql::save_state`]). The running proxy keeps the old ring
//! until the cutover:
//!
//! 1. the change log is drained while traffic runs (the pause only covers what is left);
//! 2. the proxy's resharding gate closes ([`Proxy::reshard_gate`], a
//!    [`crate::backend::gate::Gate`] like the failover's): new statements wait *before* they
//!    are planned; statements under way and open transactions finish (bounded by
//!    `reshard.cutover_timeout_ms`);
//! 3. the log is drained to empty, the state `done` is persisted (the commit point: a proxy
//!    restarting after it serves the new ring), the new config is installed
//!    ([`Proxy::install_config`]), the log is drained once more;
//! 4. the gate opens and the waiting statements are planned on the new ring.
//!
//! Past the bound the cutover is abandoned: the gates open on the old ring, the catch-up goes
//! on, and the cutover is tried again (at most [`CUTOVER_TRIES`] times, then the move stops).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::ops::AdminError;
use super::reshard_copy::{Mover, Work};
use super::reshard_sql::{self as sql, Db};
use crate::backend::gate::GateState;
use crate::config::Config;
use crate::plan::reshard::{placement_changes, PlacementChange};
use crate::plan::reshard_state::{PairProgress, Phase, ReshardState};
use crate::proxy::Proxy;
use crate::ring::Ring;

/// Cutovers tried before the move stops (each abandoned one resumes the old ring).
pub const CUTOVER_TRIES: u32 = 10;

/// What the admin port shares with the running driver.
#[derive(Default)]
pub struct Reshards {
    /// The move's state as last published, and the driver's control.
    inner: Arc<Mutex<Shared>>,
}

/// The part shared with the driver task.
#[derive(Default)]
struct Shared {
    /// The move's state (`None`: none since the proxy started and none persisted).
    state: Option<ReshardState>,
    /// `RESHARD CANCEL` asked the driver to stop; it does not enter the cutover after this.
    cancelled: bool,
    /// The driver task, while it runs.
    task: Option<tokio::task::JoinHandle<()>>,
    /// The config the move started from (what `RESHARD CLEANUP` compares the new ring with).
    from: Option<Arc<Config>>,
}

fn lock(m: &Mutex<Shared>) -> std::sync::MutexGuard<'_, Shared> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The changes `RESHARD START` can carry out: the ring's shards, weights and virtual nodes.
fn check_supported(changes: &[PlacementChange]) -> Result<(), AdminError> {
    let unsupported: Vec<String> = changes
        .iter()
        .filter(|c| {
            !matches!(
                c,
                PlacementChange::ShardAdded(_)
                    | PlacementChange::ShardRemoved(_)
                    | PlacementChange::WeightChanged { .. }
                    | PlacementChange::VnodesChanged { .. }
            )
        })
        .map(ToString::to_string)
        .collect();
    if changes.is_empty() {
        return Err(AdminError::wrong_arguments(
            "that config moves no rows: RELOAD CONFIG applies it",
        ));
    }
    if !unsupported.is_empty() {
        return Err(AdminError::not_supported(format!(
            "RESHARD START moves rows between shards of the ring (shards added or removed, \
             weights, vnodes); it does not do yet: {}",
            unsupported.join("; ")
        )));
    }
    Ok(())
}

/// Everything a driver needs, built from the running proxy and the target config.
async fn build(proxy: &Proxy, old: &Config, new: &Config) -> Result<(Mover, Vec<String>), String> {
    let topology = proxy.topology();
    let mut dbs: HashMap<String, Db> = HashMap::new();
    for s in &old.shards {
        let addr = topology
            .shard(&s.name)
            .map(|p| p.primary.addr.clone())
            .unwrap_or_else(|| s.primary.clone());
        dbs.insert(s.name.clone(), Db::connect(&addr, old).await?);
    }
    let new_shards: Vec<String> = new
        .shards
        .iter()
        .filter(|s| !dbs.contains_key(&s.name))
        .map(|s| s.name.clone())
        .collect();
    for s in new.shards.iter().filter(|s| new_shards.contains(&s.name)) {
        dbs.insert(s.name.clone(), Db::connect(&s.primary, new).await?);
    }
    // The change log and the state table first: every later step writes to them.
    for db in dbs.values_mut() {
        sql::create_log(db).await?;
    }
    let (old_ring, new_ring) = (Ring::from_config(old), Ring::from_config(new));
    let mut targets: Vec<(String, Vec<String>)> = Vec::new();
    for m in old_ring.moves_to(&new_ring) {
        match targets.iter_mut().find(|(s, _)| *s == m.from) {
            Some((_, t)) => t.push(m.to.clone()),
            None => targets.push((m.from.clone(), vec![m.to.clone()])),
        }
    }
    let mut work = Vec::new();
    for t in &new.sharding.tables {
        let same =
            old.sharding.tables.iter().any(|o| {
                o.name.eq_ignore_ascii_case(&t.name) && o.key.eq_ignore_ascii_case(&t.key)
            });
        if !same {
            continue;
        }
        for (source, to) in &targets {
            let db = dbs.get_mut(source).ok_or("no connection")?;
            for (schema, name) in sql::resolve(db, &t.name).await? {
                let info = sql::table_info(db, &schema, &name, Some(&t.key)).await?;
                work.push(Work {
                    config_name: t.name.clone(),
                    info,
                    source: source.clone(),
                    targets: to.clone(),
                    reference: false,
                });
            }
        }
    }
    if !new_shards.is_empty() {
        let default = old.sharding.default_shard.clone();
        for r in &new.sharding.reference_tables {
            let db = dbs
                .get_mut(&default)
                .ok_or("no connection to the default shard")?;
            for (schema, name) in sql::resolve(db, r).await? {
                let info = sql::table_info(db, &schema, &name, None).await?;
                work.push(Work {
                    config_name: r.clone(),
                    info,
                    source: default.clone(),
                    targets: new_shards.clone(),
                    reference: true,
                });
            }
        }
    }
    let mover = Mover {
        old: Arc::new(old_ring),
        new: Arc::new(new_ring),
        dbs,
        work,
        batch_rows: new.reshard.batch_rows.max(1),
        batch_pause: Duration::from_millis(new.reshard.batch_pause_ms),
        progress: None,
    };
    Ok((mover, new_shards))
}

/// The progress rows of a move: one per table and shard pair.
fn pairs_of(work: &[Work]) -> Vec<PairProgress> {
    let mut out: Vec<PairProgress> = Vec::new();
    for w in work {
        for t in &w.targets {
            if !out
                .iter()
                .any(|p| p.table == w.config_name && p.from == w.source && &p.to == t)
            {
                out.push(PairProgress {
                    table: w.config_name.clone(),
                    from: w.source.clone(),
                    to: t.clone(),
                    ..Default::default()
                });
            }
        }
    }
    out
}

/// One running move: the mover, the state, where it is persisted.
struct Driver {
    proxy: Arc<Proxy>,
    mover: Mover,
    state: ReshardState,
    /// Shards the old ring does not have (they get the schema).
    new_shards: Vec<String>,
    /// The old config's default shard (where the state is kept).
    home: String,
    /// The target config.
    new: Config,
    shared: Arc<Mutex<Shared>>,
}

impl Driver {
    /// Publishes the state to `SHOW RESHARD STATUS` and persists it.
    async fn save(&mut self) -> Result<(), String> {
        lock(&self.shared).state = Some(self.state.clone());
        let json = self.state.to_json();
        let db = self
            .mover
            .dbs
            .get_mut(&self.home)
            .ok_or("no connection to the default shard")?;
        sql::save_state(db, &json).await
    }

    async fn enter(&mut self, phase: Phase) -> Result<(), String> {
        self.state.phase = phase;
        tracing::info!(phase = %phase, "reshard: phase");
        self.save().await
    }

    /// Runs the move from `from` to the end (or until it stops).
    async fn run(mut self, from: Phase) {
        let r = self.phases(from).await;
        if let Err(e) = r {
            tracing::error!("reshard stopped, the old ring keeps serving: {e}");
            self.state.phase = Phase::Stopped;
            self.state.note = Some(e);
            let _ = self.save().await;
        }
        lock(&self.shared).task = None;
    }

    async fn phases(&mut self, from: Phase) -> Result<(), String> {
        if from <= Phase::Schema {
            self.enter(Phase::Schema).await?;
            self.schema().await?;
        }
        if from <= Phase::Triggers {
            self.enter(Phase::Triggers).await?;
            for w in self.mover.work.clone() {
                let db = self.mover.dbs.get_mut(&w.source).ok_or("no connection")?;
                sql::create_triggers(db, &w.info).await?;
            }
        }
        if from <= Phase::Copy {
            self.enter(Phase::Copy).await?;
            for p in &mut self.state.pairs {
                (p.scanned, p.copied, p.rows_per_s) = (0, 0, 0.0);
            }
            let n = self.mover.copy(&mut self.state).await?;
            tracing::info!(rows = n, "reshard: copy done");
        }
        let mut tries = 0;
        loop {
            self.enter(Phase::CatchUp).await?;
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let (_, left) = self.mover.catch_up_once(&mut self.state, 5000).await?;
                lock(&self.shared).state = Some(self.state.clone());
                if left < 200 || Instant::now() >= deadline {
                    break;
                }
            }
            self.enter(Phase::Verify).await?;
            self.mover.verify(&mut self.state).await?;
            {
                let mut s = lock(&self.shared);
                if s.cancelled {
                    return Ok(());
                }
                self.state.phase = Phase::Cutover;
                s.state = Some(self.state.clone());
            }
            self.save().await?;
            match self.cutover().await? {
                None => break,
                Some(why) => {
                    tries += 1;
                    self.state.cutover_attempts = tries;
                    self.state.note = Some(format!("cutover abandoned: {why}"));
                    tracing::warn!("reshard: cutover abandoned, the old ring serves: {why}");
                    if tries >= CUTOVER_TRIES {
                        return Err(format!("{tries} cutovers abandoned, last: {why}"));
                    }
                    tokio::time::sleep(Duration::from_millis(200 * tries as u64)).await;
                }
            }
        }
        // The new ring serves: the log and the triggers are no longer needed.
        if let Err(e) = self.mover.drop_triggers().await {
            tracing::warn!("reshard: dropping the change-log triggers: {e}");
        }
        tracing::info!(
            pause_ms = self.state.cutover_pause_ms.unwrap_or(0),
            "reshard: done, the new ring serves; RESHARD CLEANUP deletes the moved rows from their old shards"
        );
        Ok(())
    }

    /// The tables on the new shards (from the source of each work), reference rows included
    /// later by the copy.
    async fn schema(&mut self) -> Result<(), String> {
        let mut done: Vec<(String, String, String)> = Vec::new();
        for w in self.mover.work.clone() {
            for target in &self.new_shards {
                let k = (target.clone(), w.info.db.clone(), w.info.name.clone());
                if done.contains(&k) {
                    continue;
                }
                let [Some(src), Some(dst)] = self.mover.dbs.get_disjoint_mut([&w.source, target])
                else {
                    return Err(format!("no connection to {} or {target}", w.source));
                };
                sql::copy_schema(src, dst, &w.info.db, &w.info.name).await?;
                done.push(k);
            }
        }
        Ok(())
    }

    /// One cutover. `None`: the new ring serves; `Some(why)`: abandoned, the old ring serves.
    async fn cutover(&mut self) -> Result<Option<String>, String> {
        let config = self.proxy.config();
        // Held statements wait at most failover.buffer_ms: the pause must end before.
        let bound = config
            .reshard
            .cutover_timeout_ms
            .min(config.failover.buffer_ms.saturating_sub(250))
            .max(50);
        // Most of the log is applied while traffic runs.
        self.mover
            .drain(&mut self.state, Instant::now() + Duration::from_secs(10))
            .await?;
        let sources: Vec<String> = {
            let mut s: Vec<String> = self.mover.work.iter().map(|w| w.source.clone()).collect();
            s.sort();
            s.dedup();
            s
        };
        let proxy = self.proxy.clone();
        let gate = &proxy.reshard_gate;
        let held_at = Instant::now();
        let deadline = held_at + Duration::from_millis(bound);
        gate.set(GateState::Held("resharding cutover".into()));
        // Pairs with the sessions' count-then-look (`enter_statement`).
        std::sync::atomic::fence(Ordering::SeqCst);
        let r: Result<Option<String>, String> = async {
            if !self.quiet(deadline).await {
                return Ok(Some(format!(
                    "statements or transactions still open after {bound} ms (sources {})",
                    sources.join(", ")
                )));
            }
            if !self.mover.drain(&mut self.state, deadline).await? {
                return Ok(Some(format!("changes still arriving after {bound} ms")));
            }
            // The commit point: from here a restarted proxy serves the new ring.
            self.state.phase = Phase::Done;
            self.state.cutover_pause_ms = Some(held_at.elapsed().as_millis() as u64);
            self.state.cutover_held = Some(gate.waiting() as u64);
            self.state.note = None;
            if let Err(e) = self.save().await {
                self.state.phase = Phase::Cutover;
                return Ok(Some(format!("the state could not be saved: {e}")));
            }
            self.proxy.install_config(self.new.clone());
            // Nothing ran on the old ring since the log was empty; drained once more anyway
            // (cheap, and a change a trigger logged late is not left behind).
            self.mover
                .drain(&mut self.state, Instant::now() + Duration::from_millis(200))
                .await?;
            Ok(None)
        }
        .await;
        let pause = held_at.elapsed();
        let held = gate.waiting();
        gate.set(GateState::Open);
        match &r {
            Ok(None) => {
                self.state.cutover_pause_ms = Some(pause.as_millis() as u64);
                self.state.cutover_held = Some(held as u64);
                let _ = self.save().await;
                tracing::info!(
                    pause_ms = pause.as_millis() as u64,
                    held,
                    "reshard: cutover done, the new ring serves"
                );
            }
            _ => {
                if self.state.phase == Phase::Done {
                    // The drain after the switch failed: the new ring serves regardless.
                    return Ok(None);
                }
            }
        }
        r
    }

    /// Waits until no client statement is past the resharding gate and no session holds an
    /// open transaction, or `deadline` passes.
    async fn quiet(&self, deadline: Instant) -> bool {
        loop {
            let running = self.proxy.statements_running.load(Ordering::SeqCst);
            let open_transaction = || {
                self.proxy
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
}

impl Reshards {
    /// `RESHARD START '<file>'`: checks the file, builds the move and starts it.
    pub async fn start(&self, proxy: &Arc<Proxy>, path: &str) -> Result<Vec<String>, AdminError> {
        {
            let s = lock(&self.inner);
            if s.task.is_some() {
                return Err(AdminError::other(
                    "a resharding is under way: SHOW RESHARD STATUS, or RESHARD CANCEL",
                ));
            }
            if let Some(st) = &s.state {
                if st.phase == Phase::Done {
                    return Err(AdminError::other(
                        "the last resharding is done but its moved rows are still on their old \
                         shards: RESHARD CLEANUP first",
                    ));
                }
            }
        }
        let new = Config::load(std::path::Path::new(path))
            .map_err(|e| AdminError::other(format!("{path}: {e:#}")))?;
        let old = proxy.config();
        check_supported(&placement_changes(&old, &new))?;
        let (mover, new_shards) = build(proxy, &old, &new).await.map_err(AdminError::other)?;
        let pairs = pairs_of(&mover.work);
        let state = ReshardState::new(path, pairs, now_unix());
        let lines = vec![
            format!(
                "resharding to {path} started: {} table(s) from {} source(s); SHOW RESHARD STATUS shows progress",
                mover.work.len(),
                {
                    let mut s: Vec<&str> = mover.work.iter().map(|w| w.source.as_str()).collect();
                    s.sort();
                    s.dedup();
                    s.len()
                }
            ),
        ];
        lock(&self.inner).from = Some(old.clone());
        self.spawn(
            proxy,
            mover,
            state,
            new_shards,
            old.sharding.default_shard.clone(),
            new,
            Phase::Schema,
        );
        Ok(lines)
    }

    #[allow(clippy::too_many_arguments)]
    fn spawn(
        &self,
        proxy: &Arc<Proxy>,
        mover: Mover,
        state: ReshardState,
        new_shards: Vec<String>,
        home: String,
        new: Config,
        from: Phase,
    ) {
        let mut mover = mover;
        let shared = self.inner.clone();
        mover.progress = Some(Box::new(move |st: &ReshardState| {
            lock(&shared).state = Some(st.clone());
        }));
        let driver = Driver {
            proxy: proxy.clone(),
            mover,
            state: state.clone(),
            new_shards,
            home,
            new,
            shared: self.inner.clone(),
        };
        let mut s = lock(&self.inner);
        s.state = Some(state);
        s.cancelled = false;
        s.task = Some(tokio::spawn(driver.run(from)));
    }

    /// `SHOW RESHARD STATUS`: the state's rows (empty: no move known).
    pub fn status(&self) -> Option<ReshardState> {
        lock(&self.inner).state.clone()
    }

    /// `RESHARD CANCEL`: stops the driver before the cutover, drops the triggers and the
    /// copies; the old ring kept serving all along.
    pub async fn cancel(&self, proxy: &Arc<Proxy>) -> Result<String, AdminError> {
        let (mut state, task) =
            {
                let mut s = lock(&self.inner);
                let Some(st) = s.state.clone() else {
                    return Err(AdminError::other("no resharding to cancel"));
                };
                match st.phase {
                    Phase::Cutover => return Err(AdminError::other(
                        "the cutover is under way (at most reshard.cutover_timeout_ms): try again",
                    )),
                    p if p.after_cutover() => return Err(AdminError::other(
                        "the cutover happened: the new ring serves. RESHARD CLEANUP deletes the \
                         moved rows from their old shards",
                    )),
                    Phase::Cancelled => {
                        return Err(AdminError::other("the resharding is cancelled already"))
                    }
                    _ => {}
                }
                s.cancelled = true;
                (st, s.task.take())
            };
        // The driver is stopped and gone before anything is rolled back.
        if let Some(t) = task {
            t.abort();
            let _ = t.await;
        }
        let old = proxy.config();
        let new = Config::load(std::path::Path::new(&state.to_path))
            .map_err(|e| AdminError::other(format!("{}: {e:#}", state.to_path)))?;
        let (mut mover, _) = build(proxy, &old, &new).await.map_err(AdminError::other)?;
        mover.drop_triggers().await.map_err(AdminError::other)?;
        let old_shards: Vec<String> = old.shards.iter().map(|s| s.name.clone()).collect();
        // Twice: a batch the stopped driver had sent may have committed after the first pass
        // read what to delete (its connection closed, the server finished the statement).
        for _ in 0..2 {
            mover
                .remove_copies(&old_shards)
                .await
                .map_err(AdminError::other)?;
        }
        state.phase = Phase::Cancelled;
        state.note = Some("cancelled: the old ring serves, triggers and copies removed".into());
        let db = mover
            .dbs
            .get_mut(&old.sharding.default_shard)
            .ok_or_else(|| AdminError::other("no connection to the default shard"))?;
        sql::save_state(db, &state.to_json())
            .await
            .map_err(AdminError::other)?;
        lock(&self.inner).state = Some(state);
        tracing::info!("reshard: cancelled, the old ring serves");
        Ok(
            "resharding cancelled: the old placement serves, the copies and triggers are gone"
                .into(),
        )
    }

    /// `RESHARD CLEANUP`: after the cutover, deletes the moved rows from their old shards.
    pub async fn cleanup(&self, proxy: &Arc<Proxy>) -> Result<String, AdminError> {
        let from = lock(&self.inner).from.clone();
        let (Some(mut state), Some(from)) = (self.status(), from) else {
            return Err(AdminError::other("no resharding to clean up after"));
        };
        if state.phase != Phase::Done {
            return Err(AdminError::other(format!(
                "RESHARD CLEANUP runs only after the cutover (the resharding is {})",
                state.phase
            )));
        }
        let new = proxy.config();
        let (mut mover, _) = build(proxy, &from, &new).await.map_err(AdminError::other)?;
        let n = mover.cleanup().await.map_err(AdminError::other)?;
        state.phase = Phase::CleanedUp;
        state.note = Some(format!("{n} moved rows deleted from their old shards"));
        let db = mover
            .dbs
            .get_mut(&from.sharding.default_shard)
            .ok_or_else(|| AdminError::other("no connection to the default shard"))?;
        sql::save_state(db, &state.to_json())
            .await
            .map_err(AdminError::other)?;
        lock(&self.inner).state = Some(state);
        tracing::info!(rows = n, "reshard: cleanup done");
        Ok(format!("{n} moved rows deleted from their old shards"))
    }

    /// At start, before clients are served: a persisted move after its cutover makes the
    /// proxy serve the new ring; one before it is resumed (from the catch-up if the copy had
    /// finished, else from the start: every step is idempotent).
    pub async fn resume(&self, proxy: &Arc<Proxy>) -> Result<(), String> {
        let old = proxy.config();
        let home = old.sharding.default_shard.clone();
        let Some(addr) = proxy
            .topology()
            .shard(&home)
            .map(|p| p.primary.addr.clone())
        else {
            return Ok(());
        };
        let mut db = Db::connect(&addr, &old).await?;
        let Some(json) = sql::load_state(&mut db).await? else {
            return Ok(());
        };
        let state = ReshardState::from_json(&json)?;
        {
            let mut s = lock(&self.inner);
            s.state = Some(state.clone());
            s.from = Some(old.clone());
        }
        if state.phase.after_cutover() {
            let new = Config::load(std::path::Path::new(&state.to_path))
                .map_err(|e| format!("{}: {e:#}", state.to_path))?;
            if !placement_changes(&old, &new).is_empty() {
                tracing::info!(to = %state.to_path, "reshard: the cutover happened before the restart: serving the new ring");
                proxy.install_config(new);
            }
            return Ok(());
        }
        if !state.phase.running() {
            return Ok(());
        }
        let new = Config::load(std::path::Path::new(&state.to_path))
            .map_err(|e| format!("{}: {e:#}", state.to_path))?;
        let (mover, new_shards) = build(proxy, &old, &new).await?;
        let from = if state.phase >= Phase::CatchUp {
            Phase::CatchUp
        } else {
            Phase::Schema
        };
        tracing::info!(phase = %state.phase, resume_at = %from, "reshard: resuming the move interrupted by the restart");
        self.spawn(proxy, mover, state, new_shards, home, new, from);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_ring_changes_are_carried_out() {
        assert!(check_supported(&[]).is_err());
        assert!(check_supported(&[PlacementChange::ShardAdded("s3".into())]).is_ok());
        let e = check_supported(&[
            PlacementChange::ShardAdded("s3".into()),
            PlacementChange::TableUnsharded("t".into()),
        ])
        .unwrap_err();
        assert!(
            e.message.contains("table t stops being sharded"),
            "{}",
            e.message
        );
    }
}
