//! What `PREVIEW <statement>` answers, on the data port (the session) and on the admin port
//! alike: the plan as a result set, one row per shard.

use bytes::Bytes;

use super::Plan;
use crate::protocol::resultset::{ColumnDef, ResultSet};

/// One row per shard with the SQL it gets and how results combine ([`Plan::describe`]).
pub fn preview_result_set(plan: &Plan, sql: &str) -> ResultSet {
    ResultSet {
        columns: vec![
            ColumnDef::text("shard"),
            ColumnDef::text("sql"),
            ColumnDef::text("plan"),
        ],
        rows: plan
            .describe(sql)
            .into_iter()
            .map(|(shard, sql, notes)| {
                vec![
                    Some(Bytes::from(shard)),
                    Some(Bytes::from(sql)),
                    Some(Bytes::from(notes)),
                ]
            })
            .collect(),
        warnings: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::testutil::*;

    #[test]
    fn one_row_per_shard_with_shard_sql_and_plan() {
        let r = rules(3);
        let sql = "SELECT COUNT(*) FROM accounts";
        let rs = preview_result_set(&plan_with(sql, &r), sql);
        let names: Vec<&[u8]> = rs.columns.iter().map(|c| c.name.as_ref()).collect();
        assert_eq!(names, [&b"shard"[..], b"sql", b"plan"]);
        assert_eq!(rs.rows.len(), 3);
        assert!(rs
            .rows
            .iter()
            .all(|r| r.len() == 3 && r.iter().all(Option::is_some)));
    }
}
