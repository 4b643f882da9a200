//! Scatter reads: every shard's SQL in parallel, the answers merged exactly into one result
//! set ([`crate::plan::merge`]: typed comparison, exact DECIMAL sums, AVG from hidden SUM and
//! COUNT, HAVING and LIMIT in the proxy).
//!
//! A read never starts the session's held-back transaction (a read does not pick the
//! transaction's shard), and a leg that answers with an OK instead of rows is a failure: the
//! merge would have nothing to merge.

use super::{lease_legs, run_legs, Access, Collected, Diagnostics, Done, FoundRows, Shards};
use crate::backend::conn::{BackendError, QueryResult};
use crate::plan::merge;
use crate::plan::spec::MergeSpec;
use crate::plan::ShardSql;
use crate::protocol::constants::err;
use crate::protocol::packets::ErrInfo;
use crate::protocol::resultset::ResultSet;

/// Runs a scatter read and merges its answers.
pub async fn scatter<S: Shards>(
    shards: &mut S,
    targets: &[ShardSql],
    spec: &MergeSpec,
) -> Done<ResultSet> {
    let legs = match lease_legs(shards, targets, Access::Read).await {
        Ok(legs) => legs,
        Err(e) => return Done::not_run(e),
    };
    let runs = run_legs(legs, targets, false).await;
    let mut inputs = Vec::with_capacity(runs.len());
    let mut keep = Vec::with_capacity(runs.len());
    let mut c = Collected::default();
    for run in runs {
        let shard = run.leg.shard.as_str();
        c.conditions.extend(run.warnings);
        match run.result {
            Ok(QueryResult::Rows(rs)) => {
                c.warning_count += u64::from(rs.warnings);
                inputs.push(rs);
            }
            Ok(QueryResult::Ok(_)) => c.fail(|| {
                ErrInfo::new(
                    err::ER_NOT_SUPPORTED_YET,
                    format!("shard {shard} returned no result set"),
                )
            }),
            Err(BackendError::Server(e)) => c.server_error(shard, e),
            Err(e) => {
                c.fail(|| e.to_err_info());
                shards.lost(&run.leg.shard, run.leg.conn);
                continue;
            }
        }
        keep.push(run.leg);
    }
    super::give_back_all(shards, keep);
    let (conditions, warning_count) = match c.finish() {
        Ok(v) => v,
        Err((e, d)) => return Done::failed(e, d),
    };
    // SQL_CALC_FOUND_ROWS would make FOUND_ROWS() count rows past the LIMIT on every shard:
    // not tracked, so FOUND_ROWS() is refused after it.
    let calc_found_rows = targets
        .first()
        .is_some_and(|t| t.sql.to_ascii_uppercase().contains("SQL_CALC_FOUND_ROWS"));
    match merge::merge(spec, inputs) {
        Ok(rs) => Done {
            diagnostics: Some(Diagnostics {
                row_count: -1,
                found_rows: if calc_found_rows {
                    FoundRows::Unknown
                } else {
                    FoundRows::Known(rs.rows.len() as u64)
                },
                conditions,
                warning_count,
            }),
            answer: Ok(rs),
        },
        Err(e) => {
            let e = ErrInfo::new((e.code, e.sqlstate), e.message.clone());
            let d = Diagnostics::failed(conditions, &e);
            Done::failed(e, d)
        }
    }
}
