//! The cutover: the proxy's resharding gate closed, the statements in flight and the open
//! transactions finished, the log drained to empty, `done` persisted (the commit point), the
//! new config installed, the gate opened. Abandoned past `reshard.cutover_timeout_ms`.
//!
//! With `[coordination]` every other proxy of the cluster holds too ([`super::shared_cutover`]):
//! the hold is announced before this proxy's gate closes, the others' acknowledgements are
//! awaited after its own statements are quiet, the etcd key goes to `commit` before `done` is
//! persisted, and the switch is announced once the new config is installed here.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::shared_cutover::{quiet, Announced};
use super::Driver;
use crate::backend::gate::GateState;
use crate::plan::reshard_state::Phase;

impl Driver {
    /// One cutover. `None`: the new ring serves; `Some(why)`: abandoned, the old ring serves.
    pub(super) async fn cutover(&mut self) -> Result<Option<String>, String> {
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
        // Several proxies: the others hold first (or none switches).
        let mut shared = match &proxy.coordinator {
            Some(c) => match Announced::hold(c, &self.state.to_path, bound).await {
                Ok(a) => Some(a),
                Err(e) => return Ok(Some(format!("the other proxies cannot be held: {e}"))),
            },
            None => None,
        };
        let gate = &proxy.reshard_gate;
        let held_at = Instant::now();
        let deadline = held_at + Duration::from_millis(bound);
        gate.set(GateState::Held("resharding cutover".into()));
        // Pairs with the sessions' count-then-look (`enter_statement`).
        std::sync::atomic::fence(Ordering::SeqCst);
        let r: Result<Option<String>, String> = async {
            if !quiet(&self.proxy, deadline).await {
                return Ok(Some(format!(
                    "statements or transactions still open after {bound} ms (sources {})",
                    sources.join(", ")
                )));
            }
            if let Some(a) = &shared {
                if let Err(why) = a.wait_held(deadline).await {
                    return Ok(Some(why));
                }
            }
            if !self.mover.drain(&mut self.state, deadline).await? {
                return Ok(Some(format!("changes still arriving after {bound} ms")));
            }
            if let Some(a) = &mut shared {
                match a.commit().await {
                    Ok(true) => {}
                    Ok(false) => return Ok(Some("another proxy stopped holding first".into())),
                    Err(e) => return Ok(Some(format!("etcd did not take the commit: {e}"))),
                }
            }
            // The commit point: from here a restarted proxy serves the new ring.
            self.state.phase = Phase::Done;
            self.state.cutover_pause_ms = Some(held_at.elapsed().as_millis() as u64);
            self.state.cutover_held = Some(gate.waiting() as u64);
            self.state.note = None;
            let saved = match &shared {
                Some(a) => self.save_unfenced(a.id()).await,
                None => self.save().await.map(|()| true),
            };
            match saved {
                Ok(true) => {}
                Ok(false) => {
                    self.state.phase = Phase::Cutover;
                    return Ok(Some(
                        "another proxy fenced the cutover on the default shard (it reopened on \
                         the old ring)"
                            .into(),
                    ));
                }
                Err(e) => {
                    self.state.phase = Phase::Cutover;
                    return Ok(Some(format!("the state could not be saved: {e}")));
                }
            }
            self.proxy.install_config(self.new.clone());
            if let Some(a) = &shared {
                a.switch().await;
            }
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
                if let Some(a) = &shared {
                    a.abort().await;
                }
            }
        }
        r
    }
}
