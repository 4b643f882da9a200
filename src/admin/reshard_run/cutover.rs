//! The cutover: the proxy's resharding gate closed, the statements in flight and the open
//! transactions finished, the log drained to empty, `done` persisted (the commit point), the
//! new config installed, the gate opened. Abandoned past `reshard.cutover_timeout_ms`.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

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
    pub(super) async fn quiet(&self, deadline: Instant) -> bool {
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
