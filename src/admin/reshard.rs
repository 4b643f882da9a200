//! `RESHARD PLAN` (admin port) and `shardproxy reshard plan` (command line): the plan of a
//! move from one config to another, with the rows of each moving table counted on the shards
//! that hold them now. Nothing is changed.

use crate::backend::table_rows::approximate_rows;
use crate::backend::topology::Topology;
use crate::config::Config;
use crate::plan::reshard::ReshardPlan;

/// The plan from `old` to `new`; rows are estimated on `topology`'s primaries (the servers of
/// `old`). A shard that cannot be asked leaves its rows "not counted" and a warning in the log.
pub async fn plan_with_rows(old: &Config, new: &Config, topology: &Topology) -> ReshardPlan {
    let mut plan = ReshardPlan::new(old, new);
    for (table, shard) in plan.to_count() {
        let Some(pools) = topology.shard(&shard) else {
            continue;
        };
        match approximate_rows(&pools.primary, &table).await {
            Ok(n) => plan.set_rows(&table, &shard, n),
            Err(e) => tracing::warn!(%table, %shard, "rows not counted: {e:#}"),
        }
    }
    plan
}
