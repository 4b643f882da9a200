//! Unit tests of CTE planning: the rewritten SQL, the one-shard shortcut, the refusals.

use crate::plan::testutil::*;
use crate::plan::{Plan, SingleReason};

/// The SQL every shard of a 3-shard scatter gets.
fn shard_sql(sql: &str) -> String {
    scatter(sql).0
}

#[test]
fn a_cte_read_once_becomes_a_derived_table() {
    for (sql, want) in [
        (
            "WITH c AS (SELECT account_id, balance FROM accounts WHERE balance > 0) SELECT account_id FROM c ORDER BY account_id LIMIT 3",
            "SELECT account_id FROM (SELECT account_id, balance FROM accounts WHERE balance > 0) AS c ORDER BY account_id LIMIT 3",
        ),
        // An alias of the reference names the derived table; a quoted name stays quoted.
        (
            "WITH `c` AS (SELECT account_id FROM accounts) SELECT x.account_id FROM `c` AS x",
            "SELECT x.account_id FROM (SELECT account_id FROM accounts) AS x",
        ),
        (
            "with c as (select fund from accounts) select fund, count(*) from c group by fund",
            "SELECT fund, count(*) FROM (SELECT fund FROM accounts) AS c GROUP BY fund",
        ),
        // A CTE's unaliased expressions keep their names as written (the shards get the
        // statement re-rendered, `balance * 2`).
        (
            "WITH c AS (SELECT account_id, balance*2, `fund` FROM accounts) SELECT * FROM c",
            "SELECT * FROM (SELECT account_id, balance * 2 AS `balance*2`, `fund` FROM accounts) AS c",
        ),
        // Located by the parser's line/column spans after multi-byte text and line breaks.
        (
            "WITH c AS (SELECT account_id, /* café */ name FROM accounts WHERE name <> 'é')\nSELECT COUNT(*)\n  FROM `c`",
            "SELECT COUNT(*) FROM (SELECT account_id, name FROM accounts WHERE name <> 'é') AS `c`",
        ),
        // A CTE read by a later one is put in place inside it first.
        (
            "WITH a AS (SELECT account_id, fund FROM accounts WHERE balance > 0), b AS (SELECT fund FROM a WHERE account_id > 3) SELECT fund, COUNT(*) FROM b GROUP BY fund",
            "SELECT fund, COUNT(*) FROM (SELECT fund FROM (SELECT account_id, fund FROM accounts WHERE balance > 0) AS a WHERE account_id > 3) AS b GROUP BY fund",
        ),
        // Joined with a reference table; a CTE never read is dropped (MariaDB does not run it).
        (
            "WITH unused AS (SELECT * FROM transactions), c AS (SELECT * FROM accounts) SELECT * FROM c LEFT JOIN fund_yield f ON f.fund = c.fund",
            "SELECT * FROM (SELECT * FROM accounts) AS c LEFT JOIN fund_yield f ON f.fund = c.fund",
        ),
    ] {
        assert_eq!(shard_sql(sql), want, "{sql}");
    }
}

#[test]
fn a_cte_of_reference_tables_joins_like_one() {
    let r = rules(3);
    let sql = "WITH a AS (SELECT account_id, fund FROM accounts), f AS (SELECT fund, rate FROM fund_yield WHERE rate > 1) SELECT a.account_id, f.rate FROM a JOIN f ON f.fund = a.fund";
    assert_eq!(
        shard_sql(sql),
        "SELECT a.account_id, f.rate FROM (SELECT account_id, fund FROM accounts) AS a JOIN (SELECT fund, rate FROM fund_yield WHERE rate > 1) AS f ON f.fund = a.fund"
    );
    // Not when each shard could compute it otherwise, or it keeps unmatched rows of its own.
    for sql in [
        "WITH a AS (SELECT account_id, fund FROM accounts), f AS (SELECT fund FROM fund_yield LIMIT 2) SELECT * FROM a JOIN f ON f.fund = a.fund",
        "WITH a AS (SELECT account_id, fund FROM accounts), f AS (SELECT fund, RAND() AS x FROM fund_yield) SELECT * FROM a JOIN f ON f.fund = a.fund",
        "WITH a AS (SELECT account_id, fund FROM accounts), f AS (SELECT fund, COUNT(*) AS n FROM fund_yield GROUP BY fund) SELECT * FROM a JOIN f ON f.fund = a.fund",
        "WITH a AS (SELECT account_id, fund FROM accounts), f AS (SELECT fund FROM other) SELECT * FROM a JOIN f ON f.fund = a.fund",
        "WITH a AS (SELECT account_id, fund FROM accounts), f AS (SELECT fund FROM fund_yield) SELECT * FROM f LEFT JOIN a ON f.fund = a.fund",
    ] {
        expect_reject(&plan_with(sql, &r), "");
    }
}

#[test]
fn preview_shows_the_rewritten_sql_the_shards_get() {
    let r = rules(3);
    let sql = "WITH c AS (SELECT fund FROM accounts) SELECT COUNT(*) FROM c";
    let rows = plan_with(sql, &r).describe(sql);
    assert_eq!(rows.len(), 3);
    assert!(rows
        .iter()
        .all(|row| row.1 == "SELECT COUNT(*) FROM (SELECT fund FROM accounts) AS c"));
    // A CTE inside a subquery: the subquery runs first, the outer statement is rewritten.
    let sql = "WITH f AS (SELECT fund FROM fund_yield WHERE rate > 1) SELECT * FROM accounts WHERE fund IN (SELECT fund FROM f)";
    let p = plan_with(sql, &r);
    let Plan::Staged(s) = &p else { panic!("{p:?}") };
    assert_eq!(
        s.parts[0].inner_sql,
        "SELECT fund FROM (SELECT fund FROM fund_yield WHERE rate > 1) AS f"
    );
    let rows = p.describe(sql);
    assert_eq!(rows.last().unwrap().1, s.sql);
    assert!(!s.sql.contains("WITH"), "{}", s.sql);
}

#[test]
fn a_cte_in_from_beside_a_subquery_run_first() {
    let r = rules(3);
    let sql = "WITH big AS (SELECT account_id FROM transactions WHERE amount > 9), acc AS (SELECT account_id, fund FROM accounts) SELECT fund, COUNT(*) FROM acc WHERE account_id IN (SELECT account_id FROM big) GROUP BY fund";
    let p = plan_with(sql, &r);
    let Plan::Staged(s) = &p else { panic!("{p:?}") };
    assert_eq!(
        s.sql,
        "SELECT fund, COUNT(*) FROM (SELECT account_id, fund FROM accounts) AS acc WHERE account_id IN (SELECT account_id FROM (SELECT account_id FROM transactions WHERE amount > 9) AS big) GROUP BY fund"
    );
    assert_eq!(
        s.parts[0].inner_sql,
        "SELECT account_id FROM (SELECT account_id FROM transactions WHERE amount > 9) AS big"
    );
    assert!(matches!(s.parts[0].inner, Plan::Scatter { .. }));
    // With the values in place, the statement is a scatter read over the derived table.
    let outer = "SELECT fund, COUNT(*) FROM (SELECT account_id, fund FROM accounts) AS acc WHERE account_id IN (1, 2) GROUP BY fund";
    assert!(matches!(plan_with(outer, &r), Plan::Scatter { .. }));
    // A subquery inside the derived table is not one the outer statement runs first.
    expect_reject(
        &plan_with("SELECT * FROM (SELECT * FROM accounts WHERE fund IN (SELECT fund FROM transactions)) d WHERE x IN (SELECT x FROM transactions)", &r),
        "",
    );
}

#[test]
fn everything_on_one_shard_is_sent_whole() {
    let r = rules(3);
    let s7 = shard_of(&r, 7);
    for sql in [
        "WITH c AS (SELECT * FROM accounts WHERE account_id = 7) SELECT c.*, f.rate FROM c JOIN fund_yield f ON f.fund = c.fund",
        // Aggregates and ORDER BY/LIMIT inside the CTE: one server computes them whole.
        "WITH t AS (SELECT fund, SUM(amount) AS s FROM transactions WHERE account_id = 7 GROUP BY fund ORDER BY s LIMIT 2) SELECT * FROM t",
        "WITH a AS (SELECT * FROM accounts WHERE account_id = 7), f AS (SELECT fund FROM fund_yield) SELECT a.fund FROM a JOIN f ON f.fund = a.fund",
        "WITH a AS (SELECT * FROM accounts WHERE account_id = 7), b AS (SELECT * FROM a WHERE x > 1) SELECT COUNT(*) FROM b",
        // The main query's own sharded table pinned to the same shard.
        "WITH a AS (SELECT * FROM accounts WHERE account_id = 7) SELECT a.x, t.amount FROM a JOIN transactions t ON t.account_id = a.account_id WHERE t.account_id = 7",
    ] {
        match plan_with(sql, &r) {
            Plan::Single { shard, reason } => {
                assert_eq!(shard, s7, "{sql}");
                assert_eq!(reason, SingleReason::CtesOnOneShard, "{sql}");
            }
            other => panic!("{sql}: {other:?}"),
        }
    }
    // Keys on two shards, or an unlisted table (on the default shard only) beside a key
    // elsewhere: not one shard.
    let (a, b) = keys_on_two_shards(&r);
    let sql = format!("WITH x AS (SELECT * FROM accounts WHERE account_id = {a}) SELECT * FROM x JOIN transactions t ON t.account_id = x.account_id WHERE t.account_id = {b}");
    assert!(plan_with(&sql, &r).shards().len() != 1, "{sql}");
    // A table qualified by its database is not the CTE: no shortcut.
    let sql = "WITH c AS (SELECT * FROM accounts WHERE account_id = 7) SELECT * FROM c JOIN transactions t ON t.account_id = c.account_id JOIN mydb.c d ON d.x = c.x WHERE t.account_id = 7";
    assert!(!matches!(plan_with(sql, &r), Plan::Single { .. }), "{sql}");
    let sql = format!("WITH x AS (SELECT * FROM accounts WHERE account_id = {a}), y AS (SELECT * FROM transactions WHERE account_id = {b}) SELECT * FROM x JOIN y ON y.account_id = x.account_id");
    assert!(plan_with(&sql, &r).shards().len() != 1, "{sql}");
    let k = (1..100).find(|&k| shard_of(&r, k) != "s1").unwrap();
    let sql = format!("WITH x AS (SELECT fund FROM accounts WHERE account_id = {k}) SELECT * FROM x JOIN other o ON o.fund = x.fund");
    expect_reject(&plan_with(&sql, &r), "");
}

#[test]
fn recursive_ctes_over_sharded_tables_are_refused() {
    let r = rules(3);
    let sql = "WITH RECURSIVE t AS (SELECT account_id, parent FROM accounts WHERE account_id = 1 UNION ALL SELECT a.account_id, a.parent FROM accounts a JOIN t ON a.parent = t.account_id) SELECT * FROM t";
    expect_reject(&plan_with(sql, &r), "WITH RECURSIVE over sharded tables");
    expect_reject(&plan_with(sql, &r), "previous step");
    // RECURSIVE without a CTE that reads itself: ordinary CTEs.
    let sql = "WITH RECURSIVE c AS (SELECT fund FROM accounts) SELECT COUNT(*) FROM c";
    assert_eq!(
        shard_sql(sql),
        "SELECT COUNT(*) FROM (SELECT fund FROM accounts) AS c"
    );
    // Over reference tables only: the default shard, as before.
    for sql in [
        "WITH RECURSIVE n AS (SELECT 1 AS i UNION ALL SELECT i + 1 FROM n WHERE i < 5) SELECT i FROM n",
        "WITH RECURSIVE n AS (SELECT 1 AS accounts UNION ALL SELECT accounts + 1 FROM n WHERE accounts < 5) SELECT * FROM n JOIN fund_yield f ON f.x = n.accounts",
    ] {
        assert_eq!(expect_single(&plan_with(sql, &r)), "s1", "{sql}");
    }
}

#[test]
fn refusals() {
    let r = rules(3);
    for (sql, why) in [
        ("WITH c AS (SELECT account_id FROM accounts) SELECT * FROM c WHERE account_id IN (SELECT account_id FROM c)", "referenced 2 times"),
        ("WITH c AS (SELECT account_id FROM accounts) SELECT * FROM c JOIN c AS d ON d.account_id = c.account_id", "referenced 2 times"),
        ("WITH c(a) AS (SELECT account_id FROM accounts) SELECT a FROM c", "column list"),
        ("WITH c AS (SELECT 1), C AS (SELECT account_id FROM accounts) SELECT * FROM C", "two CTEs named"),
        ("WITH c AS (SELECT account_id FROM accounts) SELECT * FROM C", "letter case"),
        ("WITH c AS (SELECT * FROM c JOIN accounts a ON a.account_id = c.id) SELECT * FROM c", "itself or to a later"),
        ("WITH a AS (SELECT * FROM b), b AS (SELECT * FROM accounts) SELECT * FROM a", "itself or to a later"),
        ("WITH c AS (WITH d AS (SELECT * FROM accounts) SELECT * FROM d) SELECT * FROM c", "could not follow"),
        ("WITH c AS (SELECT account_id FROM accounts USE INDEX (ix)) SELECT * FROM c USE INDEX (ix)", "index hints"),
        // The rewritten statement's own refusals.
        ("WITH c AS (SELECT fund, COUNT(*) AS n FROM accounts GROUP BY fund) SELECT * FROM c", "aggregates"),
        ("WITH c AS (SELECT * FROM accounts ORDER BY balance LIMIT 3) SELECT * FROM c", "ORDER BY or LIMIT"),
        ("WITH c AS (SELECT * FROM accounts) SELECT * FROM fund_yield f LEFT JOIN c ON c.fund = f.fund", "preserved side"),
        ("WITH c AS (SELECT * FROM accounts) SELECT * FROM c JOIN transactions t ON t.account_id = c.account_id", "with its CTEs read as derived tables: `SELECT * FROM (SELECT * FROM accounts) AS c JOIN"),
        // `?`s the rewrite would reorder (a prepared statement binds them by position).
        ("WITH c AS (SELECT account_id FROM accounts WHERE balance > ?) SELECT ? AS v, account_id FROM c", "placeholders"),
    ] {
        expect_reject(&plan_with(sql, &r), why);
    }
}

#[test]
fn a_select_item_over_a_cte_keeps_its_name_as_written() {
    let r = rules(3);
    let sql = "WITH c AS (SELECT account_id FROM accounts) SELECT (SELECT COUNT(*) FROM c), 1 + (SELECT MAX(account_id) FROM c) AS m";
    expect_reject(&plan_with(sql, &r), "referenced 2 times");
    let sql = "WITH c AS (SELECT account_id FROM accounts) SELECT fund, (SELECT COUNT(*) FROM c) FROM fund_yield";
    let Plan::Staged(s) = plan_with(sql, &r) else {
        panic!("{sql}")
    };
    assert_eq!(
        s.sql,
        "SELECT fund, (SELECT COUNT(*) FROM (SELECT account_id FROM accounts) AS c) AS `(SELECT COUNT(*) FROM c)` FROM fund_yield"
    );
    assert!(s.names.is_empty(), "{:?}", s.names);
    // In a CTE's select list: the CTE's column keeps that name too (the statement is then
    // refused, whose message shows the rewritten text).
    let sql = "WITH c AS (SELECT account_id FROM accounts), d AS (SELECT (SELECT COUNT(*) FROM c), 2 FROM fund_yield) SELECT * FROM fund_yield WHERE x IN (SELECT * FROM d)";
    expect_reject(
        &plan_with(sql, &r),
        "(SELECT (SELECT COUNT(*) FROM (SELECT account_id FROM accounts) AS c) AS `(SELECT COUNT(*) FROM c)`, 2 AS `2`",
    );
}
