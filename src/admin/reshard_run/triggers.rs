//! The triggers phase: each table's change-log triggers created on its source while no client
//! statement of this proxy runs.
//!
//! # Why the gate
//! MariaDB 10.11 can fail a statement that runs while a trigger is being added to its table
//! (MDEV-26048, the error pt-online-schema-change users meet): a statement that waited behind
//! the `CREATE TRIGGER` for the table's metadata lock, and then ran with the new trigger,
//! failed here with `1146 Table 'shardproxy.reshard_changes' doesn't exist` although the log
//! table existed (seen under `fund load`, on a prepared `UPDATE accounts` inside a transaction).
//! So each table's three triggers are created the way the cutover switches the ring: the
//! proxy's resharding gate holds new statements before they are planned, the statements under
//! way and the open transactions end ([`Driver::quiet`]), the triggers are created, the gate
//! opens. No client statement of this proxy is then near the table while its trigger set
//! changes; a held statement waits a few milliseconds and runs. Between two tables' pauses the
//! load runs for at least as long as the last pause lasted, so the pauses of a move with many
//! tables do not add up to one long stall.
//!
//! The pause is bounded like the cutover's (`reshard.cutover_timeout_ms`, below
//! `failover.buffer_ms`); when sessions do not become quiet in time the gate opens, and the
//! table is tried again after a growing sleep, at most [`CUTOVER_TRIES`] times before the move
//! stops. Clients connected to a shard directly are not held (a known gap, docs/resharding.md).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::{Driver, CUTOVER_TRIES};
use crate::admin::reshard_copy::Work;
use crate::admin::reshard_sql as sql;
use crate::backend::gate::GateState;

impl Driver {
    /// Creates `w`'s change-log triggers on its source inside a gated pause (see the module
    /// doc); the pause's length is logged.
    pub(super) async fn create_triggers_quietly(&mut self, w: &Work) -> Result<(), String> {
        let config = self.proxy.config();
        let bound = config
            .reshard
            .cutover_timeout_ms
            .min(config.failover.buffer_ms.saturating_sub(250))
            .max(50);
        let proxy = self.proxy.clone();
        let gate = &proxy.reshard_gate;
        for attempt in 1..=CUTOVER_TRIES {
            let held_at = Instant::now();
            gate.set(GateState::Held("resharding: change-log triggers".into()));
            // Pairs with the sessions' count-then-look (`enter_statement`).
            std::sync::atomic::fence(Ordering::SeqCst);
            let quiet =
                super::shared_cutover::quiet(&self.proxy, held_at + Duration::from_millis(bound))
                    .await;
            let created = if quiet {
                let db = self
                    .mover
                    .dbs
                    .get_mut(&w.source)
                    .ok_or("no connection to the source")?;
                Some(sql::create_triggers(db, &w.info).await)
            } else {
                None
            };
            let pause = held_at.elapsed();
            gate.set(GateState::Open);
            match created {
                Some(r) => {
                    r?;
                    tracing::info!(
                        table = %w.info.name,
                        source = %w.source,
                        pause_ms = pause.as_millis() as u64,
                        "reshard: change-log triggers created"
                    );
                    // The load runs between two pauses at least as long as one lasted.
                    tokio::time::sleep(pause.max(Duration::from_millis(50))).await;
                    return Ok(());
                }
                None => {
                    tracing::warn!(
                        table = %w.info.name,
                        source = %w.source,
                        attempt,
                        "reshard: sessions still busy after {bound} ms; the triggers are tried again"
                    );
                    tokio::time::sleep(Duration::from_millis(200 * attempt as u64)).await;
                }
            }
        }
        Err(format!(
            "the change-log triggers of {} on {} could not be created: statements or \
             transactions were still open after {bound} ms, {CUTOVER_TRIES} times",
            w.info.name, w.source
        ))
    }
}
