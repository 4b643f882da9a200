//! The admin port: a MySQL-protocol listener (default `127.0.0.1:6032`) for operators using the
//! mysql CLI, and the SIGHUP config reload. Statements, columns and examples are in
//! `docs/operations.md`.
//!
//! - [`ops`]: the contract with the core ([`AdminOps`]), implemented by the core.
//! - [`command`]: the statement parser.
//! - [`render`]: report values → result sets.
//! - [`server`]: the listener ([`serve_admin`]).

pub mod command;
pub mod core_ops;
pub mod diff;
pub mod failover_ops;
pub mod ops;
pub mod render;
pub mod reshard;
pub mod reshard_copy;
pub mod reshard_run;
pub mod reshard_sql;
pub mod server;

use std::sync::Arc;

pub use ops::{
    AdminError, AdminOps, BackendStatus, Health, RingShare, Role, SessionInfo, ShardStatus,
    TableKind, TableRule,
};
pub use server::{serve_admin, AdminUsers};

/// Reloads the config on every SIGHUP through [`AdminOps::reload_config`], logging the
/// changes or the reason the file was rejected (the running config stays). Runs until the
/// task is aborted. Fails only if the signal handler cannot be installed.
pub async fn reload_on_sighup(ops: Arc<dyn AdminOps>) -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = signal(SignalKind::hangup())?;
    while hup.recv().await.is_some() {
        let _ = reload_logged(ops.as_ref(), "SIGHUP").await;
    }
    Ok(())
}

/// One reload, logged; returns what [`AdminOps::reload_config`] returned.
pub async fn reload_logged(ops: &dyn AdminOps, trigger: &str) -> Result<Vec<String>, AdminError> {
    let result = ops.reload_config().await;
    crate::metrics::record_config_reload(result.is_ok());
    match &result {
        Ok(changes) if changes.is_empty() => {
            tracing::info!(trigger, "config reloaded: no changes")
        }
        Ok(changes) => {
            for c in changes {
                tracing::info!(trigger, change = %c, "config reloaded");
            }
        }
        Err(e) => {
            tracing::error!(trigger, error = %e.message, "config reload rejected; the running config stays")
        }
    }
    result
}
