//! The join planner: which side is read first, what each side's query holds, how the select
//! list and ORDER BY map onto the sides, and what is refused.

use super::{JoinPlan, SideCol};
use crate::plan::testutil::*;
use crate::plan::Plan;

fn join(sql: &str) -> JoinPlan {
    match plan_with(sql, &rules(3)) {
        Plan::Join(j) => *j,
        other => panic!("{sql}: expected a Join plan, got {other:?}"),
    }
}

#[test]
fn key_of_one_side_is_looked_up_by_the_other_sides_values() {
    let j = join(
        "SELECT o.note, a.name FROM orders o JOIN accounts a ON a.account_id = o.payer_id \
         WHERE o.amount > 5 AND a.status = 'active'",
    );
    // orders first; accounts looked up by key.
    assert_eq!(j.outer, 0);
    assert!(j.probe.by_key);
    assert_eq!(j.probe.inner_column, "a.account_id");
    assert_eq!(
        j.sides[0].sql_with(None),
        "SELECT o.payer_id, o.note FROM orders o WHERE (o.amount > 5)"
    );
    assert_eq!(
        j.sides[1].sql_with(Some("a.account_id IN (1)")),
        "SELECT a.account_id, a.name FROM accounts a WHERE (a.status = 'active') AND \
         a.account_id IN (1)"
    );
    assert_eq!(j.pairs, vec![[0, 0]]);
    assert_eq!(j.output, vec![(0, 0), (1, 0)]);
    assert!(!j.keep_unmatched);
    // Written the other way round, the key side is still the one looked up.
    let j = join("SELECT * FROM accounts a, orders o WHERE o.payer_id = a.account_id");
    assert_eq!(j.outer, 1);
    assert_eq!(j.output, vec![(0, 0), (1, 0)]);
    assert_eq!(j.sides[0].wildcards, vec![true]);
}

#[test]
fn a_sides_own_key_condition_narrows_its_shards() {
    let r = rules(3);
    let j = join(
        "SELECT a.name, b.name FROM accounts a JOIN accounts b ON a.name = b.name \
         WHERE a.account_id = 7",
    );
    assert_eq!(j.sides[0].shards, vec![shard_of(&r, 7)]);
    assert_eq!(j.sides[1].shards.len(), 3);
    assert!(!j.probe.by_key);
}

#[test]
fn order_by_limit_and_aliases_map_onto_the_sides() {
    let j = join(
        "SELECT o.amount AS amt, a.name FROM orders o JOIN accounts a ON a.account_id = \
         o.payer_id ORDER BY amt DESC, a.created, 2 LIMIT 5 OFFSET 1",
    );
    assert_eq!(j.order_by.len(), 3);
    assert_eq!(
        (j.order_by[0].side, j.order_by[0].column),
        (0, SideCol::Item(0))
    );
    assert!(j.order_by[0].descending);
    // a.created is fetched as a hidden column of accounts, after the join column.
    assert_eq!(
        (j.order_by[1].side, j.order_by[1].column),
        (1, SideCol::Hidden(1))
    );
    assert_eq!(
        (j.order_by[2].side, j.order_by[2].column),
        (1, SideCol::Item(0))
    );
    assert_eq!((j.offset, j.limit), (1, Some(5)));
    assert!(j.sides[1]
        .select
        .starts_with("SELECT a.account_id, a.created, a.name FROM"));
}

#[test]
fn unaliased_expressions_keep_their_text_as_name() {
    let j = join(
        "SELECT o.amount*2, CONCAT(a.name,'!') FROM orders o JOIN accounts a ON \
         a.account_id = o.payer_id",
    );
    assert!(
        j.sides[0].select.contains("o.amount * 2 AS `o.amount*2`"),
        "{}",
        j.sides[0].select
    );
    assert!(
        j.sides[1].select.contains("AS `CONCAT(a.name,'!')`"),
        "{}",
        j.sides[1].select
    );
}

#[test]
fn outer_joins_read_the_preserved_side_first() {
    let j = join(
        "SELECT o.note, a.name FROM orders o LEFT JOIN accounts a ON a.account_id = o.payer_id \
         AND a.status = 'active' WHERE o.amount > 0",
    );
    assert!(j.keep_unmatched);
    assert_eq!(j.outer, 0);
    assert_eq!(j.sides[1].filter.as_deref(), Some("(a.status = 'active')"));
    assert_eq!(j.sides[0].filter.as_deref(), Some("(o.amount > 0)"));
    let j = join("SELECT o.note FROM accounts a RIGHT JOIN orders o ON a.account_id = o.payer_id");
    assert!(j.keep_unmatched);
    assert_eq!(j.outer, 1);
}

#[test]
fn preview_shows_both_steps() {
    let j = join("SELECT o.note FROM orders o JOIN accounts a ON a.account_id = o.payer_id");
    let rows = j.describe();
    assert_eq!(rows.len(), 4);
    assert!(
        rows[0].2.contains("join step 1: rows of orders o"),
        "{rows:?}"
    );
    assert_eq!(rows[3].0, "(shards of the values)");
    assert!(rows[3].1.ends_with("a.account_id IN (…)"), "{rows:?}");
    assert!(
        rows[3].2.contains("on a.account_id = o.payer_id"),
        "{rows:?}"
    );
}

#[test]
fn cross_table_comparisons_become_residual_checks() {
    use super::Residual;
    use crate::plan::spec::CompareOp;
    let j = join(
        "SELECT o.note FROM orders o JOIN accounts a ON a.account_id = o.payer_id \
         AND a.balance > o.amount WHERE o.note <> a.name",
    );
    // Both columns of each comparison are fetched as hidden columns after the join column;
    // the first table's column is put on the left (`a.balance > o.amount`: `o.amount <`).
    assert_eq!(
        j.sides[0].sql_with(None),
        "SELECT o.payer_id, o.amount, o.note, o.note FROM orders o"
    );
    assert_eq!(
        j.residual,
        vec![
            Residual {
                cols: [1, 1],
                op: CompareOp::Lt
            },
            Residual {
                cols: [2, 2],
                op: CompareOp::NotEq
            },
        ]
    );
    assert!(j
        .to_string()
        .contains("a.balance > o.amount AND o.note <> a.name"));
}

#[test]
fn what_stays_refused() {
    let r = rules(3);
    for (sql, needle) in [
        ("SELECT o.note FROM orders o JOIN accounts a ON a.balance > o.amount", "no equality"),
        ("SELECT o.note FROM orders o LEFT JOIN accounts a ON a.account_id = o.payer_id AND a.balance > o.amount", "reads both tables"),
        ("SELECT o.note FROM orders o JOIN accounts a ON a.account_id = o.payer_id WHERE a.balance + 1 > o.amount", "reads both tables"),
        ("SELECT o.amount + a.balance FROM orders o JOIN accounts a ON a.account_id = o.payer_id", "reads both tables"),
        ("SELECT note FROM orders o JOIN accounts a ON a.account_id = o.payer_id", "must be qualified"),
        ("SELECT o.note FROM orders o JOIN accounts a USING (note)", "USING"),
        ("SELECT o.note FROM orders o, accounts a", "no equality"),
        ("SELECT o.note FROM orders o JOIN accounts a ON a.account_id = o.payer_id OR a.x = o.y", "reads both tables"),
        ("SELECT o.note FROM orders o LEFT JOIN accounts a ON a.account_id = o.payer_id WHERE a.x = 1", "outer join may fill"),
        ("SELECT o.note FROM orders o LEFT JOIN accounts a ON a.account_id = o.payer_id AND o.x = 1", "preserved table"),
        ("SELECT o.note FROM orders o JOIN accounts a ON a.account_id = o.payer_id JOIN users u ON u.name = a.name", "does not match rows"),
        ("SELECT o.note FROM orders o JOIN accounts a ON a.account_id = o.payer_id WHERE o.note = 'a\\'b'", "backslash"),
        ("SELECT o.note, RAND() FROM orders o JOIN accounts a ON a.account_id = o.payer_id", "rand()"),
    ] {
        expect_reject(&plan_with(sql, &r), needle);
    }
}

#[test]
fn a_grouped_join_reads_one_row_partial_aggregates_and_merges_them() {
    let j = join(
        "SELECT a.status, COUNT(*), SUM(o.amount), AVG(o.amount), MAX(a.name) FROM orders o \
         JOIN accounts a ON a.account_id = o.payer_id GROUP BY a.status HAVING COUNT(*) > 1 \
         ORDER BY 2 DESC",
    );
    // Each joined row is a group of one: COUNT(*) is 1, SUM/MAX the value, AVG written by the
    // merge from the hidden SUM and COUNT (whose COUNT(x) is `x IS NOT NULL`).
    assert_eq!(
        j.sides[0].sql_with(None),
        "SELECT o.payer_id, 1, (o.amount), NULL, (o.amount), (o.amount) IS NOT NULL FROM orders o"
    );
    assert_eq!(
        j.sides[1].sql_with(None),
        "SELECT a.account_id, a.status, (a.name) FROM accounts a"
    );
    // No ORDER BY or LIMIT on the joined rows: the merge sorts the groups.
    assert!(j.order_by.is_empty() && j.limit.is_none());
    let g = j.grouped.as_ref().expect("grouped");
    assert_eq!(
        g.types_sql,
        "SELECT a.status, COUNT(*), SUM(o.amount), AVG(o.amount), MAX(a.name), SUM(o.amount), \
         COUNT(o.amount) FROM orders o JOIN accounts a ON a.account_id = o.payer_id WHERE false \
         GROUP BY a.status ORDER BY 2 DESC"
    );
    assert_eq!(g.merge.group_by, vec![0]);
    assert!(g.merge.having.is_some());
    assert_eq!(g.merge.visible_columns, 5);
    assert!(j.to_string().contains("grouped"), "{j}");
}

#[test]
fn distinct_and_expressions_over_aggregates_in_a_join_are_merged_too() {
    let j = join(
        "SELECT DISTINCT a.status FROM orders o JOIN accounts a ON a.account_id = o.payer_id \
         ORDER BY a.status LIMIT 2",
    );
    let g = j.grouped.as_ref().expect("grouped");
    assert!(g.merge.distinct);
    assert_eq!(g.merge.limit, Some(2));
    assert_eq!(j.limit, None);
    // An item the merge computes is NULL in the joined rows.
    let j = join(
        "SELECT COUNT(*), SUM(o.amount)/COUNT(o.amount) FROM orders o JOIN accounts a \
         ON a.account_id = o.payer_id",
    );
    assert_eq!(
        j.sides[0].sql_with(None),
        "SELECT o.payer_id, 1, NULL, (o.amount), (o.amount) IS NOT NULL FROM orders o"
    );
    assert_eq!(j.grouped.unwrap().merge.computed.len(), 1);
}

#[test]
fn a_grouped_join_refuses_what_one_row_partials_cannot_recombine() {
    let r = rules(3);
    for (sql, why) in [
        ("SELECT COUNT(DISTINCT a.status) FROM orders o JOIN accounts a ON a.account_id = o.payer_id", "DISTINCT"),
        ("SELECT SUM(DISTINCT o.amount) FROM orders o JOIN accounts a ON a.account_id = o.payer_id", "DISTINCT"),
        ("SELECT GROUP_CONCAT(o.note ORDER BY o.note) FROM orders o JOIN accounts a ON a.account_id = o.payer_id", "group_concat"),
        ("SELECT STD(o.amount) FROM orders o JOIN accounts a ON a.account_id = o.payer_id", "STD"),
        ("SELECT SUM(o.amount * a.balance) FROM orders o JOIN accounts a ON a.account_id = o.payer_id", "reads both tables"),
        ("SELECT a.status, COUNT(*) FROM orders o JOIN accounts a ON a.account_id = o.payer_id GROUP BY a.status, o.note || a.name", "reads both tables"),
    ] {
        match plan_with(sql, &r) {
            Plan::Reject(rej) => assert!(rej.to_string().contains(why), "{sql}: {rej}"),
            other => panic!("{sql}: expected a refusal, got {other:?}"),
        }
    }
}
