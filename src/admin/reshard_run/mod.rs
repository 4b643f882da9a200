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
//!
//! Files, one phase each: [`build`] (the mover from the two configs), [`driver`] (the phases
//! in order, persisted), [`triggers`] (the change-log triggers, each table's in a gated pause),
//! [`cutover`] (the gated switch), [`shared_cutover`] (the other proxies' part in it, with
//! `[coordination]`), [`control`] (CANCEL and CLEANUP), [`resume`] (a persisted move at
//! start).

mod build;
mod control;
mod cutover;
mod driver;
mod resume;
mod shared_cutover;
mod triggers;

use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use super::ops::AdminError;
use super::reshard_copy::Mover;
use crate::config::Config;
use crate::plan::reshard::{placement_changes, PlacementChange};
use crate::plan::reshard_state::{Phase, ReshardState};
use crate::proxy::Proxy;
use build::{build, pairs_of};
pub use shared_cutover::follow as follow_cutovers;

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
    /// The file the proxy was started from: after the cleanup it is given the target's
    /// contents (the old kept beside it), so a restart or a reload reads the ring that serves.
    config_path: Option<std::path::PathBuf>,
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

/// One running move: the mover, the state, where it is persisted.
struct Driver {
    /// The live proxy (its gate, its config, its sessions).
    proxy: Arc<Proxy>,
    /// The data steps over the move's connections.
    mover: Mover,
    /// The move's state as the driver knows it (published and persisted by `save`).
    state: ReshardState,
    /// Shards the old ring does not have (they get the schema).
    new_shards: Vec<String>,
    /// The old config's default shard (where the state is kept).
    home: String,
    /// The target config.
    new: Config,
    /// What the admin port shares with this driver.
    shared: Arc<Mutex<Shared>>,
}

impl Reshards {
    /// A move's driver for a proxy started from `config_path` (`None`: no file to rewrite).
    pub fn new(config_path: Option<std::path::PathBuf>) -> Reshards {
        let r = Reshards::default();
        lock(&r.inner).config_path = config_path;
        r
    }

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
        let mut state = ReshardState::new(path, pairs, now_unix());
        state.to_config = std::fs::read_to_string(path).ok();
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
