//! Reads: one shard when the WHERE clause pins the shard key, otherwise scatter-gather.
//!
//! UNION [ALL] of scattered selects is planned by [`scatter::plan_union`], a derived table of a
//! row-wise select by [`scatter::plan_derived`].
//!
//! Subqueries in the select list, WHERE and HAVING are [`subquery`]'s: run first (a staged
//! plan) or, correlated on the shard key, left to the shards.
//!
//! A WITH clause is [`cte`]'s: its CTEs put in place as derived tables, or the whole statement
//! sent to the one shard it reads.
//!
//! Refused: other subqueries once a sharded table is involved (a subquery's rows may
//! live on other shards than the outer query's, and counting `SELECT` keywords in the text
//! catches a subquery wherever it hides), other derived tables, joins of sharded tables that do not
//! match rows by key, and joins of sharded tables with unlisted tables (which live only on the
//! default shard).

use sqlparser::ast::{Query, SetExpr};

use super::reject::not_supported;
use super::route::{analyze, collect_from, param_key, target_shards};
use super::rules::TableKind;
use super::{cte, scatter, subquery, Cx, Plan, SingleReason};

pub(crate) fn plan_select(q: &Query, cx: &Cx) -> (Plan, Option<usize>) {
    if !cx.mentions_sharded {
        return (
            Plan::single(cx.default_shard(), SingleReason::ReferenceCopy),
            None,
        );
    }
    if let Some(with) = &q.with {
        return cte::plan_with(q, with, cx);
    }
    if matches!(q.body.as_ref(), SetExpr::SetOperation { .. }) {
        return (scatter::plan_union(q, cx), None);
    }
    if let SetExpr::Select(sel) = q.body.as_ref() {
        if let Some(p) = scatter::plan_derived(q, sel, cx) {
            return (p, None);
        }
    }
    // Uncorrelated subqueries run first; those correlated on the shard key stay in place.
    let mut pushed_down = false;
    if let SetExpr::Select(sel) = q.body.as_ref() {
        match subquery::plan_subqueries(q, sel, cx) {
            subquery::Found::Plan(p) => return (*p, None),
            subquery::Found::PushDown => pushed_down = true,
            subquery::Found::None => {}
        }
    }
    if !pushed_down && (cx.scan.selects > 1 || cx.scan.set_operation) {
        return (
            not_supported(
                "subqueries and UNION over sharded tables are not supported (their rows may \
                 live on other shards); run the parts separately",
            ),
            None,
        );
    }
    let SetExpr::Select(sel) = q.body.as_ref() else {
        return (
            not_supported("this query form is not supported over sharded tables"),
            None,
        );
    };
    let from = match collect_from(&sel.from, cx.rules(), cx.cur_db()) {
        Ok(f) => f,
        Err(p) => return (p, None),
    };
    let sharded = from
        .relations
        .iter()
        .any(|r| matches!(r.kind, TableKind::Sharded { .. }));
    if !sharded {
        return (
            Plan::single(cx.default_shard(), SingleReason::NoShardedTableInFrom),
            None,
        );
    }
    if let Some(u) = from
        .relations
        .iter()
        .find(|r| r.kind == TableKind::Unlisted)
    {
        return (
            not_supported(format!(
                "table {} is not sharded and lives only on the default shard; it cannot be \
                 joined with sharded tables (declare it a reference table)",
                u.table
            )),
            None,
        );
    }
    let route = match analyze(&from, sel.selection.as_ref(), cx.sql, cx.scan) {
        Ok(r) => r,
        // Sharded tables not matched by their keys: a join the proxy executes (plan/join/).
        Err(_) if from.relations.len() == 2 => {
            return (super::join::plan_join(q, sel, &from, cx), None)
        }
        Err(p) => return (p, None),
    };
    let param = param_key(&route);
    let plan = match target_shards(&route, cx.rules()) {
        Some(shards) if shards.len() == 1 => Plan::single(&shards[0], SingleReason::Key(route)),
        Some(shards) => scatter::plan_scatter(q, sel, &from.relations, &shards, cx),
        None => scatter::plan_scatter(q, sel, &from.relations, &cx.rules().shards, cx),
    };
    (plan, param)
}

#[cfg(test)]
mod tests {
    use crate::plan::testutil::*;
    use crate::plan::Plan;

    #[test]
    fn key_equality_routes_to_one_shard() {
        let r = rules(3);
        let s7 = shard_of(&r, 7);
        for sql in [
            "SELECT * FROM accounts WHERE account_id = 7",
            "SELECT * FROM accounts WHERE 7 = account_id",
            "select * from ACCOUNTS where (ACCOUNT_ID = 7)",
            "SELECT * FROM accounts WHERE balance > 0 AND (account_id = '7' AND x = 1)",
            "SELECT * FROM accounts a WHERE a.account_id = 7 ORDER BY x LIMIT 3",
            "SELECT * FROM mydb.accounts WHERE mydb.accounts.account_id = 7",
            "SELECT * FROM `accounts` WHERE `account_id` = 007",
            "SELECT * FROM accounts WHERE account_id IN (7)",
            "SELECT COUNT(*) FROM accounts WHERE account_id = 7 GROUP BY x HAVING COUNT(*) > 1",
        ] {
            assert_eq!(expect_single(&plan_with(sql, &r)), s7, "{sql}");
        }
    }

    #[test]
    fn reason_names_the_key_values() {
        let r = rules(3);
        match plan_with(
            "SELECT * FROM accounts WHERE account_id = 0042 AND x = 1",
            &r,
        ) {
            Plan::Single { reason, .. } => assert_eq!(reason.to_string(), "key = 42"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn string_keys_fold_case_and_trailing_spaces() {
        let r = rules(3);
        let a = plan_with("SELECT * FROM users WHERE name = 'Alice  '", &r);
        let b = plan_with("SELECT * FROM users WHERE name = 'alice'", &r);
        assert_eq!(a.shards(), b.shards());
        assert_eq!(a.shards().len(), 1);
    }

    #[test]
    fn or_and_unroutable_values_scatter() {
        let r = rules(3);
        for sql in [
            "SELECT * FROM accounts WHERE account_id = 7 OR x = 1",
            "SELECT * FROM accounts WHERE account_id = 7.0",
            "SELECT * FROM accounts WHERE account_id = '007'",
            "SELECT * FROM accounts WHERE account_id = other_col",
            "SELECT * FROM accounts WHERE NOT (account_id = 7)",
            "SELECT * FROM accounts WHERE account_id <> 7",
            "SELECT * FROM users WHERE name = 'José'",
        ] {
            match plan_with(sql, &r) {
                Plan::Scatter { targets, .. } => assert_eq!(targets.len(), 3, "{sql}"),
                other => panic!("{sql}: {other:?}"),
            }
        }
    }

    #[test]
    fn in_list_goes_to_involved_shards_only() {
        let r = rules(3);
        let (a, b) = keys_on_two_shards(&r);
        let sql = format!("SELECT * FROM accounts WHERE account_id IN ({a}, {b})");
        match plan_with(&sql, &r) {
            Plan::Scatter { targets, .. } => {
                let mut got: Vec<String> = targets.iter().map(|t| t.shard.clone()).collect();
                let mut want = vec![shard_of(&r, a), shard_of(&r, b)];
                got.sort();
                want.sort();
                assert_eq!(got, want);
            }
            other => panic!("{other:?}"),
        }
        // Intersected with an equality: one shard.
        let sql =
            format!("SELECT * FROM accounts WHERE account_id IN ({a}, {b}) AND account_id = {b}");
        assert_eq!(expect_single(&plan_with(&sql, &r)), shard_of(&r, b));
    }

    #[test]
    fn colocated_join_with_key_routes_to_one_shard() {
        let r = rules(3);
        let s = shard_of(&r, 5);
        for sql in [
            "SELECT * FROM accounts a JOIN transactions t ON a.account_id = t.account_id WHERE a.account_id = 5",
            "SELECT * FROM accounts a JOIN transactions t ON t.account_id = a.account_id AND t.amount > 0 WHERE t.account_id = 5",
            "SELECT * FROM accounts a, transactions t WHERE a.account_id = t.account_id AND a.account_id = 5",
            "SELECT * FROM accounts JOIN transactions USING (account_id) WHERE account_id = 5",
            "SELECT * FROM accounts a LEFT JOIN transactions t ON a.account_id = t.account_id WHERE a.account_id = 5",
            "SELECT * FROM accounts a JOIN fund_yield f ON f.fund = a.fund WHERE a.account_id = 5",
        ] {
            assert_eq!(expect_single(&plan_with(sql, &r)), s, "{sql}");
        }
    }

    #[test]
    fn self_join_and_differently_named_keys_colocate_by_equality() {
        let r = rules(3);
        let s = shard_of(&r, 5);
        for sql in [
            "SELECT * FROM accounts a JOIN accounts b ON a.account_id = b.account_id WHERE b.account_id = 5",
            "SELECT * FROM accounts a JOIN bank.ledger l ON l.id = a.account_id WHERE a.account_id = 5",
        ] {
            assert_eq!(expect_single(&plan_with(sql, &r)), s, "{sql}");
        }
        // Not matched by the keys: a join the proxy executes (plan/join/).
        assert!(matches!(
            plan_with(
                "SELECT * FROM accounts a JOIN accounts b ON a.parent = b.account_id WHERE a.account_id = 5",
                &r,
            ),
            Plan::Join(_)
        ));
        // The key equality inside an OR does not colocate (nor can the proxy join by it).
        expect_reject(
            &plan_with(
                "SELECT * FROM accounts a JOIN transactions t ON a.account_id = t.account_id OR a.x = t.y",
                &r,
            ),
            "reads both tables",
        );
    }

    #[test]
    fn key_in_left_join_condition_does_not_pin() {
        // Rows of `a` are all returned whatever the ON clause says about `t`.
        let r = rules(3);
        let p = plan_with(
            "SELECT a.account_id FROM accounts a LEFT JOIN transactions t ON a.account_id = t.account_id AND t.account_id = 5",
            &r,
        );
        assert_eq!(p.shards().len(), 3, "{p:?}");
    }

    #[test]
    fn colocated_join_without_key_scatters() {
        let r = rules(3);
        let p = plan_with(
            "SELECT a.account_id, t.amount FROM accounts a JOIN transactions t ON a.account_id = t.account_id",
            &r,
        );
        assert!(matches!(p, Plan::Scatter { .. }), "{p:?}");
    }

    #[test]
    fn refusals() {
        let r = rules(3);
        for (sql, why) in [
            // Two tables not matched by their keys are joined by the proxy (plan/join/); three are not.
            ("SELECT * FROM accounts a JOIN transactions t ON a.id = t.account_id JOIN users u ON u.name = a.name", "does not match rows"),
            ("SELECT * FROM accounts WHERE account_id IN (SELECT account_id FROM transactions) ORDER BY (SELECT 1)", "subqueries"),
            ("SELECT * FROM accounts WHERE account_id = 1 UNION SELECT * FROM fund_yield", "UNION branch"),
            ("SELECT * FROM (SELECT * FROM accounts ORDER BY a LIMIT 1) x", "derived table"),
            ("SELECT * FROM (SELECT COUNT(*) FROM accounts) x", "aggregates"),
            ("WITH RECURSIVE x AS (SELECT 1 AS n UNION ALL SELECT n + 1 FROM x WHERE n < 3) SELECT * FROM accounts a JOIN x ON x.n = a.account_id", "WITH RECURSIVE"),
            ("SELECT * FROM accounts a JOIN other o ON o.id = a.account_id", "default shard"),
            ("SELECT * FROM fund_yield f LEFT JOIN accounts a ON a.fund = f.fund", "outer join"),
            ("SELECT * FROM accounts a RIGHT JOIN fund_yield f ON a.fund = f.fund", "outer join"),
            ("SELECT * FROM accounts NATURAL JOIN transactions", "NATURAL"),
        ] {
            expect_reject(&plan_with(sql, &r), why);
        }
    }

    #[test]
    fn derived_table_of_a_row_wise_select_scatters_the_whole_statement() {
        let r = rules(3);
        let sql = "SELECT d.fund, COUNT(*) FROM (SELECT fund, balance FROM accounts WHERE balance > 0) d GROUP BY d.fund";
        match plan_with(sql, &r) {
            Plan::Scatter { targets, merge } => {
                assert_eq!(targets.len(), 3);
                assert_eq!(targets[0].sql, sql);
                assert_eq!(merge.group_by, vec![0]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn reference_and_unlisted_reads_go_to_default() {
        let r = rules(3);
        for sql in [
            "SELECT * FROM fund_yield",
            "SELECT * FROM fund_yield f JOIN other o ON o.x = f.x",
            "SELECT accounts FROM other",
            "SELECT * FROM fund_yield WHERE x IN (SELECT y FROM currencies)",
        ] {
            assert_eq!(expect_single(&plan_with(sql, &r)), "s1", "{sql}");
        }
    }

    #[test]
    fn db_qualified_rule_uses_current_db() {
        let r = rules(3);
        let sql = "SELECT * FROM ledger WHERE id = 5";
        assert_eq!(expect_single(&plan_with(sql, &r)), "s1");
        let p = crate::plan::plan(
            sql,
            &crate::plan::PlanContext {
                rules: &r,
                current_db: Some("bank"),
                allow_scatter_writes: false,
            },
        );
        assert_eq!(expect_single(&p), shard_of(&r, 5));
        let p = plan_with("SELECT * FROM bank.ledger WHERE id = 5", &r);
        assert_eq!(expect_single(&p), shard_of(&r, 5));
    }
}
