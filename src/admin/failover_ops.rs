//! The admin port's failover statements over the live proxy: `SWITCHOVER <shard> [TO
//! <replica>]`, `FAILOVER <shard> [FORCE]`, `SHOW FAILOVERS`, and what SHOW SHARDS says of a
//! shard that is failing over or whose primary runs with semi-sync off. The work itself is in
//! `backend::failover`; this file only calls it and renders its answers.

use std::sync::Arc;
use std::time::{Instant, UNIX_EPOCH};

use bytes::Bytes;

use super::ops::AdminError;
use crate::backend::failover::{self, FailoverError, SwitchRecord, Trigger};
use crate::backend::gate::GateState;
use crate::backend::topology::ShardPools;
use crate::protocol::resultset::{ColumnDef, ResultSet};
use crate::proxy::Proxy;

fn admin_error(e: FailoverError) -> AdminError {
    AdminError::other(e.to_string())
}

/// One line about a switch that happened.
fn account(r: &SwitchRecord) -> String {
    format!(
        "{} {} -> {}: write pause {} ms, total {} ms, acknowledged {}, new primary at {}",
        r.trigger.as_str(),
        r.old_primary,
        r.new_primary.as_deref().unwrap_or("(none)"),
        r.write_pause.as_millis(),
        r.total.as_millis(),
        if r.acked.is_empty() { "-" } else { &r.acked },
        r.position
    )
}

/// `SWITCHOVER <shard> [TO <replica>]`.
pub async fn switchover(
    proxy: &Arc<Proxy>,
    shard: &str,
    target: Option<&str>,
) -> Result<String, AdminError> {
    failover::switchover(&**proxy, shard, target)
        .await
        .map(|r| account(&r))
        .map_err(admin_error)
}

/// `FAILOVER <shard> [FORCE]`.
pub async fn failover_now(
    proxy: &Arc<Proxy>,
    shard: &str,
    force: bool,
) -> Result<String, AdminError> {
    let trigger = if force {
        Trigger::Forced
    } else {
        Trigger::PrimaryDown
    };
    failover::failover_shard(&**proxy, shard, trigger, Instant::now())
        .await
        .map(|r| account(&r))
        .map_err(admin_error)
}

/// `SHOW FAILOVERS`.
pub fn history(proxy: &Proxy) -> ResultSet {
    let names = [
        "ended_at_unix_ms",
        "shard",
        "kind",
        "old_primary",
        "new_primary",
        "acked_gtid",
        "new_primary_position",
        "write_pause_ms",
        "total_ms",
        "outcome",
    ];
    let rows = proxy
        .failovers
        .history()
        .iter()
        .map(|r| {
            vec![
                r.at.duration_since(UNIX_EPOCH)
                    .map(|d| d.as_millis())
                    .unwrap_or(0)
                    .to_string(),
                r.shard.clone(),
                r.trigger.as_str().to_string(),
                r.old_primary.clone(),
                r.new_primary.clone().unwrap_or_default(),
                r.acked.clone(),
                r.position.clone(),
                r.write_pause.as_millis().to_string(),
                r.total.as_millis().to_string(),
                r.outcome.clone(),
            ]
            .into_iter()
            .map(|v| Some(Bytes::from(v)))
            .collect()
        })
        .collect();
    ResultSet {
        columns: names.iter().map(|n| ColumnDef::text(n)).collect(),
        rows,
        warnings: 0,
    }
}

/// What SHOW SHARDS adds to a shard's status: a switch under way or refused, semi-sync off.
pub fn shard_notes(s: &ShardPools) -> Option<String> {
    let mut notes = Vec::new();
    match s.state.gate.state() {
        GateState::Open => {}
        GateState::Held(why) => notes.push(format!("failing over: {why}")),
        GateState::Refused(why) => notes.push(format!("writes refused: {why}")),
    }
    let semi = s
        .primary
        .stats
        .observed
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .semi_sync;
    if semi == Some(false) {
        notes.push("semi-sync OFF on the primary: acknowledged writes may be on it alone".into());
    }
    (!notes.is_empty()).then(|| notes.join("; "))
}
