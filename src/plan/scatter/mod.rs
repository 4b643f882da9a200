//! Scatter-gather reads: rewrite the SELECT for the shards and describe in a [`MergeSpec`] how
//! the merge engine combines their answers into the one answer a single server would give.
//!
//! # The rewrite
//! Each shard holds part of the rows, so each shard answers a *partial* query, and the merge
//! turns the partial answers into the whole one. One concern per file:
//! - [`columns`]: the shard SQL's columns: the client's select list (the *visible* columns),
//!   then *hidden* helper columns appended after it; `visible_columns` says how many the client
//!   sees.
//! - [`aggregates`]: partial `COUNT`s and `SUM`s add up, `MIN`/`MAX` of partial `MIN`/`MAX`;
//!   `AVG` gets hidden `SUM` and `COUNT`; `COUNT(DISTINCT x)` adds up for the shard key and
//!   otherwise makes the shards group by `x` too.
//! - [`having`]: HAVING is true of a whole group, not of a partial one: it is removed from the
//!   shard SQL and becomes a [`Filter`](super::spec::Filter) the proxy applies to merged groups.
//! - [`order`]: GROUP BY and ORDER BY keys (a key that is not selected becomes a hidden column;
//!   without ORDER BY, groups come sorted by their keys as MariaDB returns them), and LIMIT:
//!   each shard returns its first `offset + limit` rows unless the merge groups, removes
//!   duplicates or filters.
//!
//! - [`computed`]: select items that are expressions over aggregates, evaluated by the proxy
//!   from merged parts.
//! - [`names`]: unaliased expression items keep the name MariaDB gives them (their text).
//! - `SELECT *` / `t.*` beside keys the merge needs: the planner does not know the table's
//!   columns, so it counts a wildcard as one column, fetches any key again as a hidden column,
//!   and the merge moves the indices after it once the shards' column definitions tell its
//!   width ([`Wildcard`]).
//! - [`union`]: UNION [ALL] of such selects; [`derived`]: a derived table of a row-wise select.
//!
//! This file walks the statement through those steps in order (the order hidden columns are
//! appended in), renders the rewritten SELECT from the AST and parses it again as a check.
//! Refused here: window functions, `SELECT … INTO`, DISTINCT ON, FETCH/FOR clauses, positions
//! (`ORDER BY 2`) that fall in or after a `*`, placeholders in what the proxy evaluates or adds
//! (HAVING, LIMIT, hidden columns; a prepared `LIMIT ?` is planned with its values in place,
//! `plan/prepared.rs`), and string literals with backslash escapes (the renderer would change
//! their meaning).

mod aggregates;
mod columns;
mod computed;
mod derived;
mod having;
mod names;
mod order;
mod union;

pub(crate) use aggregates::AGGREGATES;
pub(crate) use derived::{derived_selects, plan_derived};
pub(crate) use names::item_ranges;
pub(crate) use names::keep_names;
pub(crate) use order::offset_and_limit;
pub(crate) use union::plan_union;

use sqlparser::ast::{Distinct, GroupByExpr, Query, Select, SetExpr};

use sqlparser::dialect::MySqlDialect;
use sqlparser::parser::Parser;

use self::columns::Builder;
use super::reject::not_supported;
use super::route::Relation;
use super::scan::scan;
use super::spec::{MergeSpec, Wildcard};
use super::{Cx, Plan, ShardSql, ALL_COLUMNS};

/// A step's result: the refusal is the error.
type R<T> = Result<T, Plan>;

/// Plans a SELECT over `shards` (all shards, or the subset an IN list names).
pub(crate) fn plan_scatter(
    q: &Query,
    sel: &Select,
    rels: &[Relation],
    shards: &[String],
    cx: &Cx,
) -> Plan {
    match build(q, sel, rels, shards, cx) {
        Ok(p) | Err(p) => p,
    }
}

fn build(q: &Query, sel: &Select, rels: &[Relation], shards: &[String], cx: &Cx) -> R<Plan> {
    if cx.scan.backslash_in_string {
        return Err(not_supported(
            "string literals with backslash escapes cannot be rewritten for a query that spans \
             shards; use doubled quotes ('') instead",
        ));
    }
    if sel.into.is_some() {
        return Err(not_supported("SELECT … INTO across shards"));
    }
    if !sel.named_window.is_empty() || sel.qualify.is_some() || cx.scan.has_keyword("over") {
        return Err(not_supported(
            "window functions are not supported across shards",
        ));
    }
    if q.fetch.is_some() || q.for_clause.is_some() || !q.pipe_operators.is_empty() {
        return Err(not_supported(
            "this query clause is not supported across shards",
        ));
    }
    let distinct = match &sel.distinct {
        None | Some(Distinct::All) => false,
        Some(Distinct::Distinct) => true,
        Some(_) => return Err(not_supported("DISTINCT ON")),
    };
    let mut b = Builder::new(rels);
    // 1. The select list.
    let wildcard = b.select_list(&sel.projection)?;
    let visible = sel.projection.len();
    // 2. GROUP BY.
    let group_by = order::group_keys(&sel.group_by, visible, &mut b)?;
    // 3. HAVING.
    let having = match &sel.having {
        Some(h) => Some(Box::new(having::having_filter(h, &mut b)?)),
        None => None,
    };
    // 4. ORDER BY.
    let order_by = order::sort_keys(q.order_by.as_ref(), &group_by, visible, distinct, &mut b)?;
    // HAVING and ORDER BY may have added aggregates: decide grouping only now.
    let grouped = !group_by.is_empty() || !b.aggregates.is_empty();
    // COUNT(DISTINCT x) of a non-key expression: the shards group by x too.
    let (pre_group_by, extra_group_keys) = b.distinct_grouping(&group_by)?;
    // `SELECT *` beside columns the merge refers to: their indices move by the width of `*`,
    // which the shards' column definitions tell (no schema guessing).
    let refers = grouped || !order_by.is_empty() || having.is_some() || !b.hidden.is_empty();
    let wildcard_spec = match b.wild {
        Some((first, last)) if refers => {
            let n = |x: usize| {
                u32::try_from(x).map_err(|_| not_supported("a select list this long across shards"))
            };
            Some(Wildcard {
                start: n(first)?,
                planned_width: n(last + 1 - first)?,
                planned_total: n(b.cols.len())?,
            })
        }
        _ => None,
    };
    // 5. LIMIT / OFFSET.
    let (offset, limit) = order::offset_and_limit(q.limit_clause.as_ref())?;
    let merge = MergeSpec {
        visible_columns: if wildcard && wildcard_spec.is_none() {
            ALL_COLUMNS
        } else {
            visible
        },
        group_by,
        pre_group_by,
        aggregates: b.aggregates,
        computed: b.computed,
        having,
        distinct,
        order_by,
        offset,
        limit,
        wildcard: wildcard_spec,
    };
    // 6. The shard SQL.
    let mut shard_q = q.clone();
    let SetExpr::Select(shard_sel) = shard_q.body.as_mut() else {
        return Err(not_supported("this query form"));
    };
    names::keep_names(cx.sql, &mut shard_sel.projection, visible);
    shard_sel.projection.extend(b.hidden.iter().cloned());
    shard_sel.having = None;
    if !extra_group_keys.is_empty() {
        match &mut shard_sel.group_by {
            GroupByExpr::Expressions(exprs, _) => exprs.extend(extra_group_keys),
            GroupByExpr::All(_) => return Err(not_supported("GROUP BY ALL")),
        }
    }
    shard_q.limit_clause = order::shard_limit(&merge);
    let shard_sql = shard_q.to_string();
    // The rendering must be SQL MariaDB reads, with the same placeholders in the same order.
    let reparsed = Parser::parse_sql(&MySqlDialect {}, &shard_sql);
    if reparsed.map(|s| s.len() != 1).unwrap_or(true) {
        return Err(not_supported(
            "the rewritten query for the shards could not be verified",
        ));
    }
    let hidden_params = b
        .hidden
        .iter()
        .any(|h| !scan(&h.to_string()).placeholders.is_empty());
    if hidden_params || scan(&shard_sql).placeholders.len() != cx.scan.placeholders.len() {
        return Err(not_supported(
            "placeholders in HAVING, LIMIT or hidden ORDER BY columns of a query that spans \
             shards",
        ));
    }
    Ok(Plan::Scatter {
        targets: shards
            .iter()
            .map(|s| ShardSql {
                shard: s.clone(),
                sql: shard_sql.clone(),
            })
            .collect(),
        merge,
    })
}

#[cfg(test)]
mod tests {
    use crate::plan::testutil::*;

    #[test]
    fn scatter_refusals() {
        let r = rules(3);
        for (sql, why) in [
            (
                "SELECT COUNT(DISTINCT fund), COUNT(DISTINCT region) FROM accounts",
                "different expressions",
            ),
            (
                "SELECT COUNT(DISTINCT fund, region) FROM accounts",
                "several expressions",
            ),
            (
                "SELECT COUNT(DISTINCT fund), COUNT(DISTINCT account_id) FROM accounts",
                "together with",
            ),
            ("SELECT GROUP_CONCAT(a) FROM accounts", "GROUP_CONCAT"),
            (
                "SELECT GROUP_CONCAT(a ORDER BY b) FROM accounts",
                "includes the value",
            ),
            (
                "SELECT GROUP_CONCAT(DISTINCT a ORDER BY b, a) FROM accounts",
                "includes the value",
            ),
            (
                "SELECT GROUP_CONCAT(a ORDER BY a), COUNT(DISTINCT b) FROM accounts",
                "beside another",
            ),
            (
                "SELECT a, ROW_NUMBER() OVER (ORDER BY a) FROM accounts",
                "window",
            ),
            ("SELECT * FROM accounts ORDER BY 2", "position 2"),
            ("SELECT a.*, COUNT(*), t.* FROM accounts a JOIN transactions t ON a.account_id = t.account_id GROUP BY a.account_id", "between two wildcard"),
            ("SELECT DISTINCT a.* FROM accounts a JOIN transactions t ON a.account_id = t.account_id ORDER BY t.amount", "DISTINCT"),
            (
                "SELECT fund, COUNT(*) FROM accounts GROUP BY fund HAVING COUNT(*) > MAX(x)",
                "HAVING",
            ),
            (
                "SELECT fund, COUNT(*) FROM accounts GROUP BY fund WITH ROLLUP",
                "ROLLUP",
            ),
            ("SELECT DISTINCT a FROM accounts ORDER BY b", "DISTINCT"),
            ("SELECT a FROM accounts WHERE b = 'x\\'y'", "backslash"),
            (
                "SELECT LOWER(name) AS name, COUNT(*) FROM accounts GROUP BY name",
                "alias",
            ),
            (
                "SELECT SUM(DISTINCT a), COUNT(DISTINCT b) FROM accounts",
                "different expressions",
            ),
        ] {
            expect_reject(&plan_with(sql, &r), why);
        }
    }
}

#[cfg(test)]
mod render_tests {
    use crate::plan::testutil::*;
    use crate::plan::Plan;

    /// The shard SQL is re-rendered from the AST: MariaDB-specific syntax must survive.
    #[test]
    fn rendering_keeps_mariadb_syntax() {
        let r = rules(3);
        for (sql, want) in [
            (
                "SELECT `a`, \"str\", 'it''s' FROM `accounts` WHERE d > NOW() - INTERVAL 1 DAY ORDER BY `a` LIMIT 3",
                "SELECT `a`, \"str\", 'it''s' FROM `accounts` WHERE d > NOW() - INTERVAL 1 DAY ORDER BY `a` LIMIT 3",
            ),
            (
                "SELECT SQL_CALC_FOUND_ROWS a FROM accounts ORDER BY a LIMIT 1",
                "SELECT SQL_CALC_FOUND_ROWS a FROM accounts ORDER BY a LIMIT 1",
            ),
            (
                "SELECT HIGH_PRIORITY STRAIGHT_JOIN a FROM accounts FOR UPDATE",
                "SELECT HIGH_PRIORITY STRAIGHT_JOIN a FROM accounts FOR UPDATE",
            ),
            (
                "SELECT a FROM accounts USE INDEX (ix) WHERE a LIKE 'x%' ESCAPE '!' ORDER BY a LIMIT 2",
                "SELECT a FROM accounts USE INDEX (ix) WHERE a LIKE 'x%' ESCAPE '!' ORDER BY a LIMIT 2",
            ),
            (
                "SELECT a, b FROM accounts WHERE c IS NOT NULL AND d IN (1,2) ORDER BY a DESC LIMIT 1 OFFSET 1",
                "SELECT a, b FROM accounts WHERE c IS NOT NULL AND d IN (1, 2) ORDER BY a DESC LIMIT 2",
            ),
            (
                "SELECT a FROM accounts ORDER BY a LIMIT 1 FOR UPDATE SKIP LOCKED",
                "SELECT a FROM accounts ORDER BY a LIMIT 1 FOR UPDATE SKIP LOCKED",
            ),
        ] {
            match plan_with(sql, &r) {
                Plan::Scatter { targets, .. } => assert_eq!(targets[0].sql, want),
                other => panic!("{sql}: {other:?}"),
            }
        }
    }
}
