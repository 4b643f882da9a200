//! The driver's phases in order, each persisted before it runs: schema, triggers, copy, then
//! rounds of catch-up, verify and cutover until a cutover succeeds or too many were abandoned.

use std::time::{Duration, Instant};

use super::{lock, Driver, CUTOVER_TRIES};
use crate::admin::reshard_sql as sql;
use crate::plan::reshard_state::Phase;

impl Driver {
    /// Publishes the state to `SHOW RESHARD STATUS` and persists it.
    pub(super) async fn save(&mut self) -> Result<(), String> {
        lock(&self.shared).state = Some(self.state.clone());
        let json = self.state.to_json();
        let db = self
            .mover
            .dbs
            .get_mut(&self.home)
            .ok_or("no connection to the default shard")?;
        sql::save_state(db, &json).await
    }

    /// As [`Self::save`], for the `done` of a cutover shared with other proxies: only if none
    /// of them fenced cutover `id` on the default shard (`Ok(false)`: one did).
    pub(super) async fn save_unfenced(&mut self, id: &str) -> Result<bool, String> {
        let json = self.state.to_json();
        let db = self
            .mover
            .dbs
            .get_mut(&self.home)
            .ok_or("no connection to the default shard")?;
        let saved = sql::save_state_unfenced(db, &json, id).await?;
        if saved {
            lock(&self.shared).state = Some(self.state.clone());
        }
        Ok(saved)
    }

    pub(super) async fn enter(&mut self, phase: Phase) -> Result<(), String> {
        self.state.phase = phase;
        tracing::info!(phase = %phase, "reshard: phase");
        self.save().await
    }

    /// Runs the move from `from` to the end (or until it stops).
    pub(super) async fn run(mut self, from: Phase) {
        let r = self.phases(from).await;
        if r.is_ok() && self.state.phase == Phase::Done {
            super::Reshards {
                inner: self.shared.clone(),
            }
            .cleanup_later(&self.proxy);
        }
        if let Err(e) = r {
            tracing::error!("reshard stopped, the old ring keeps serving: {e}");
            self.state.phase = Phase::Stopped;
            self.state.note = Some(e);
            let _ = self.save().await;
        }
        lock(&self.shared).task = None;
    }

    pub(super) async fn phases(&mut self, from: Phase) -> Result<(), String> {
        if from <= Phase::Schema {
            self.enter(Phase::Schema).await?;
            self.schema().await?;
        }
        if from <= Phase::Triggers {
            self.enter(Phase::Triggers).await?;
            for w in self.mover.work.clone() {
                self.create_triggers_quietly(&w).await?;
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
    pub(super) async fn schema(&mut self) -> Result<(), String> {
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
}
