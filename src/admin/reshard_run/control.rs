//! `RESHARD CANCEL` (before the cutover: triggers and copies removed) and `RESHARD CLEANUP`
//! (after it: the moved rows deleted from their old shards).

use std::sync::Arc;

use super::{build, lock, Reshards};
use crate::admin::ops::AdminError;
use crate::admin::reshard_sql as sql;
use crate::config::Config;
use crate::plan::reshard_state::Phase;
use crate::proxy::Proxy;

impl Reshards {
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

    /// With `[reshard] cleanup_after_s` set, runs `RESHARD CLEANUP` that many seconds from now
    /// (called at the cutover, and at a start that finds the move done). An operator's
    /// CLEANUP before it makes this one a no-op: the phase is no longer `done`.
    pub(super) fn cleanup_later(&self, proxy: &Arc<Proxy>) {
        let after = proxy.config().reshard.cleanup_after_s;
        if after == 0 {
            return;
        }
        tracing::info!(
            after_s = after,
            "reshard: RESHARD CLEANUP will run by itself ([reshard] cleanup_after_s)"
        );
        let this = Reshards {
            inner: self.inner.clone(),
        };
        let proxy = proxy.clone();
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_secs(after)).await;
            if this.status().map(|s| s.phase) != Some(Phase::Done) {
                return;
            }
            match this.cleanup(&proxy).await {
                Ok(what) => tracing::info!("reshard: scheduled cleanup: {what}"),
                Err(e) => tracing::error!(
                    "reshard: the scheduled cleanup failed ({e}); RESHARD CLEANUP runs it again"
                ),
            }
        });
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
        let to = state.to_path.clone();
        let config_path = {
            let mut s = lock(&self.inner);
            s.state = Some(state);
            s.config_path.clone()
        };
        tracing::info!(rows = n, "reshard: cleanup done");
        let mut what = format!("{n} moved rows deleted from their old shards");
        if let Some(path) = config_path {
            match install_target_file(&path, std::path::Path::new(&to)) {
                Ok(Some(kept)) => {
                    tracing::info!(config = %path.display(), kept = %kept.display(), "reshard: the config file now holds the target's config");
                    what.push_str(&format!(
                        "; {} now holds {to} (the old file kept as {})",
                        path.display(),
                        kept.display()
                    ));
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!("reshard: the config file was not replaced: {e}");
                    what.push_str(&format!(
                        "; {} was NOT replaced ({e}): copy {to} over it before a restart",
                        path.display()
                    ));
                }
            }
        }
        Ok(what)
    }
}

/// Gives the proxy's config file the target's contents once the move is over, keeping the old
/// one as `<file>.before-reshard`, so the file on disk names the ring that serves. Written to a
/// temporary file beside it and renamed, so a crash leaves one whole file or the other.
/// `None`: the file already is the target.
fn install_target_file(
    path: &std::path::Path,
    target: &std::path::Path,
) -> std::io::Result<Option<std::path::PathBuf>> {
    let new = std::fs::read(target)?;
    let old = std::fs::read(path)?;
    if old == new {
        return Ok(None);
    }
    let mut kept = path.as_os_str().to_owned();
    kept.push(".before-reshard");
    let kept = std::path::PathBuf::from(kept);
    std::fs::write(&kept, &old)?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".reshard-tmp");
    let tmp = std::path::PathBuf::from(tmp);
    std::fs::write(&tmp, &new)?;
    std::fs::rename(&tmp, path)?;
    Ok(Some(kept))
}

#[cfg(test)]
mod tests {
    use super::install_target_file;

    #[test]
    fn the_target_file_replaces_the_config_and_the_old_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("proxy.toml");
        let target = dir.path().join("three.toml");
        std::fs::write(&cfg, "old").unwrap();
        std::fs::write(&target, "new").unwrap();
        let kept = install_target_file(&cfg, &target).unwrap().unwrap();
        assert_eq!(std::fs::read_to_string(&cfg).unwrap(), "new");
        assert_eq!(std::fs::read_to_string(&kept).unwrap(), "old");
        assert!(kept.ends_with("proxy.toml.before-reshard"));
        assert_eq!(install_target_file(&cfg, &target).unwrap(), None);
    }
}
