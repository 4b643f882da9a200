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

    /// The new scatter plans say what the proxy does after the shards answered.
    #[test]
    fn describes_wildcards_computed_columns_and_unions() {
        let r = rules(2);
        let plan_text = |sql: &str| {
            let rs = preview_result_set(&plan_with(sql, &r), sql);
            String::from_utf8(rs.rows[0][2].clone().unwrap().to_vec()).unwrap()
        };
        let p = plan_text("SELECT * FROM accounts ORDER BY account_id LIMIT 3");
        assert!(p.contains("columns of * from col 0"), "{p}");
        assert!(p.contains("order by 1"), "{p}");
        let p = plan_text("SELECT fund, SUM(balance)/COUNT(*) FROM accounts GROUP BY fund");
        assert!(p.contains("col 1 = (col 2 / col 3) (in proxy)"), "{p}");
        let p = plan_text("SELECT fund FROM accounts UNION SELECT fund FROM transactions");
        assert!(p.contains("distinct"), "{p}");
    }
}
