//! Joins of sharded tables not matched by their keys, run by the executor (`exec/join.rs`,
//! planned in `plan/join/`): the session supplies its connections (a transaction's held ones
//! included), the ring and the `[sharding] max_join_rows` bound, and answers with the joined
//! rows (binary rows for a prepared statement).

use std::time::Instant;

use super::{Flow, Session};
use crate::exec::join::JoinLimits;
use crate::plan::join::JoinPlan;
use crate::plan::ShardSql;
use crate::protocol::resultset::RowFormat;

impl Session {
    /// Runs a proxy-executed join and sends its result set.
    pub(super) async fn run_join(
        &mut self,
        plan: &JoinPlan,
        format: RowFormat,
    ) -> std::io::Result<Flow> {
        self.audit_shards(
            plan.sides
                .iter()
                .flat_map(|s| s.shards.iter().map(String::as_str)),
        );
        let started = Instant::now();
        let limits = JoinLimits {
            max_rows: self.proxy.config().sharding.max_join_rows,
        };
        let rules = self.proxy.rules();
        let done = crate::exec::join::join(self, plan, &rules.ring, limits).await;
        let targets: Vec<ShardSql> = plan
            .describe()
            .into_iter()
            .map(|(shard, sql, _)| ShardSql { shard, sql })
            .collect();
        self.log_if_slow(started, &targets, || plan.to_string());
        if done.diagnostics.is_some() {
            self.diag = done.diagnostics;
        }
        match done.answer {
            Ok(rs) => self.send_result_set(&rs, format).await?,
            Err(e) => self.send_err(1, &e).await?,
        }
        Ok(Flow::Continue)
    }
}
