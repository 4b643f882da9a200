//! A persisted move read at start, before clients are served: after its cutover the target
//! config is installed; before it the move is resumed.

use std::sync::Arc;

use super::{build, lock, Reshards};
use crate::admin::reshard_sql::{self as sql, Db};
use crate::config::Config;
use crate::plan::reshard::placement_changes;
use crate::plan::reshard_state::{Phase, ReshardState};
use crate::proxy::Proxy;

impl Reshards {
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
            // The text kept in the state first: the file may be on the driver's host only.
            let mut new = match &state.to_config {
                Some(text) => Config::parse(text),
                None => Config::load(std::path::Path::new(&state.to_path)),
            }
            .map_err(|e| format!("{}: {e:#}", state.to_path))?;
            super::shared_cutover::keep_own(&old, &mut new);
            if !placement_changes(&old, &new).is_empty() {
                tracing::info!(to = %state.to_path, "reshard: the cutover happened before the restart: serving the new ring");
                proxy.install_config(new);
            }
            if state.phase == Phase::Done {
                self.cleanup_later(proxy);
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
