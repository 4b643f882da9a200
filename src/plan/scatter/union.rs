//! UNION ALL and UNION of scattered selects, with ORDER BY / LIMIT on the whole.
//!
//! A row of a branch over a sharded table lives on one shard, so running the whole union on
//! every shard and concatenating the answers gives every branch's rows exactly once: UNION ALL
//! needs nothing more. UNION (DISTINCT) removes duplicates within each shard; the merge removes
//! those across shards (the same row may come from two shards). ORDER BY and LIMIT on the whole
//! stay in the shard SQL (each shard sorts its part, returns its first `offset + limit` rows) and
//! the merge sorts (k-way) and limits, as for one SELECT ([`super::order`]).
//!
//! Each branch must be a plain row-returning SELECT whose rows are split between the shards:
//! it reads a sharded table (a branch over reference tables only would come back once per
//! shard), its joins match rows by key (checked as for a SELECT), and it has no aggregate,
//! GROUP BY, HAVING, DISTINCT (under UNION ALL) or ORDER BY/LIMIT of its own (parenthesized
//! branches are refused), since those would be computed over one shard's part. A DISTINCT
//! union followed by an ALL union (`a UNION b UNION ALL c`) dedupes only its left part and is
//! refused; EXCEPT and INTERSECT are refused (their rows compare across shards). The global
//! ORDER BY names result columns (the first branch's names or aliases) or positions.

use sqlparser::ast::{
    Expr, OrderByKind, OrderBySort, Query, Select, SelectItem, SetExpr, SetOperator, SetQuantifier,
};
use sqlparser::dialect::MySqlDialect;
use sqlparser::parser::Parser;

use super::aggregates::contains_aggregate;
use super::{names, order, R};
use crate::plan::reject::not_supported;
use crate::plan::route::{analyze, collect_from, target_shards};
use crate::plan::rules::TableKind;
use crate::plan::scan::scan;
use crate::plan::spec::{MergeSpec, SortKey};
use crate::plan::{Cx, Plan, ShardSql, ALL_COLUMNS};

/// Plans a UNION [ALL] whose body is `q.body` (a set operation).
pub(crate) fn plan_union(q: &Query, cx: &Cx) -> Plan {
    match build(q, cx) {
        Ok(p) | Err(p) => p,
    }
}

/// The branches left to right, and whether the union as a whole removes duplicates.
fn branches<'a>(body: &'a SetExpr, out: &mut Vec<&'a Select>, ops: &mut Vec<bool>) -> R<()> {
    match body {
        SetExpr::Select(s) => {
            out.push(s);
            Ok(())
        }
        SetExpr::SetOperation {
            op: SetOperator::Union,
            set_quantifier,
            left,
            right,
        } => {
            let distinct = match set_quantifier {
                SetQuantifier::All => false,
                SetQuantifier::Distinct | SetQuantifier::None => true,
                _ => return Err(not_supported("this UNION form across shards")),
            };
            branches(left, out, ops)?;
            ops.push(distinct);
            branches(right, out, ops)
        }
        SetExpr::SetOperation { op, .. } => Err(not_supported(format!(
            "{op} over sharded tables (it compares rows that live on different shards)"
        ))),
        _ => Err(not_supported(
            "a parenthesized UNION branch over sharded tables (its own ORDER BY/LIMIT would \
             apply to one shard's part)",
        )),
    }
}

fn build(q: &Query, cx: &Cx) -> R<Plan> {
    if cx.scan.backslash_in_string {
        return Err(not_supported(
            "string literals with backslash escapes cannot be rewritten for a query that spans \
             shards; use doubled quotes ('') instead",
        ));
    }
    if q.with.is_some()
        || q.fetch.is_some()
        || q.for_clause.is_some()
        || cx.scan.has_keyword("over")
    {
        return Err(not_supported("this UNION form across shards"));
    }
    let mut sels = Vec::new();
    let mut ops = Vec::new();
    branches(&q.body, &mut sels, &mut ops)?;
    if cx.scan.selects != sels.len() {
        return Err(not_supported(
            "subqueries inside a UNION over sharded tables are not supported",
        ));
    }
    // A DISTINCT union dedupes everything to its left; an ALL union after it keeps duplicates
    // of its right side only, which the merge cannot tell apart.
    let distinct = match ops.iter().rposition(|&d| d) {
        None => false,
        Some(i) if i == ops.len() - 1 => true,
        Some(_) => {
            return Err(not_supported(
                "UNION followed by UNION ALL across shards; use one kind throughout",
            ))
        }
    };
    let mut shards: Vec<String> = Vec::new();
    for sel in &sels {
        for s in branch_shards(sel, distinct, cx)? {
            if !shards.contains(&s) {
                shards.push(s);
            }
        }
    }
    // Shard order as configured (the order the merge's ties follow).
    shards.sort_by_key(|s| cx.rules().shards.iter().position(|x| x == s));
    let first = sels[0];
    let wildcard = first.projection.iter().any(|i| {
        matches!(
            i,
            SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..)
        )
    });
    let visible = first.projection.len();
    let order_by = sort_keys(q, first, wildcard)?;
    let (offset, limit) = order::offset_and_limit(q.limit_clause.as_ref())?;
    let merge = MergeSpec {
        visible_columns: if wildcard { ALL_COLUMNS } else { visible },
        distinct,
        order_by,
        offset,
        limit,
        ..MergeSpec::default()
    };
    let mut shard_q = q.clone();
    shard_q.limit_clause = order::shard_limit(&merge);
    let mut leftmost = shard_q.body.as_mut();
    while let SetExpr::SetOperation { left, .. } = leftmost {
        leftmost = left.as_mut();
    }
    if let SetExpr::Select(s) = leftmost {
        names::keep_names(cx.sql, &mut s.projection, visible);
    }
    let shard_sql = shard_q.to_string();
    let reparsed = Parser::parse_sql(&MySqlDialect {}, &shard_sql);
    if reparsed.map(|s| s.len() != 1).unwrap_or(true)
        || scan(&shard_sql).placeholders.len() != cx.scan.placeholders.len()
    {
        return Err(not_supported(
            "the rewritten UNION for the shards could not be verified",
        ));
    }
    Ok(Plan::Scatter {
        targets: shards
            .into_iter()
            .map(|shard| ShardSql {
                shard,
                sql: shard_sql.clone(),
            })
            .collect(),
        merge,
    })
}

/// Checks one branch splits its rows between the shards; returns the shards that hold them.
pub(super) fn branch_shards(sel: &Select, union_distinct: bool, cx: &Cx) -> R<Vec<String>> {
    let from = collect_from(&sel.from, cx.rules(), cx.cur_db())?;
    if !from
        .relations
        .iter()
        .any(|r| matches!(r.kind, TableKind::Sharded { .. }))
    {
        return Err(not_supported(
            "a UNION branch without a sharded table beside branches over sharded tables (its \
             rows would come back from every shard); query it separately",
        ));
    }
    if let Some(u) = from
        .relations
        .iter()
        .find(|r| r.kind == TableKind::Unlisted)
    {
        return Err(not_supported(format!(
            "table {} is not sharded and lives only on the default shard; it cannot be joined \
             with sharded tables (declare it a reference table)",
            u.table
        )));
    }
    row_wise(sel, union_distinct)?;
    let route = analyze(&from, sel.selection.as_ref(), cx.sql, cx.scan)?;
    Ok(target_shards(&route, cx.rules()).unwrap_or_else(|| cx.rules().shards.clone()))
}

/// Refuses a select that does not return its rows one by one: with aggregates, GROUP BY,
/// HAVING, DISTINCT (unless `union_distinct`: the UNION removes duplicates anyway), INTO or
/// windows, each shard would compute it over its own part of the rows.
pub(super) fn row_wise(sel: &Select, union_distinct: bool) -> R<()> {
    let simple = matches!(&sel.group_by, sqlparser::ast::GroupByExpr::Expressions(g, m) if g.is_empty() && m.is_empty())
        && sel.having.is_none()
        && sel.into.is_none()
        && sel.named_window.is_empty()
        && sel.qualify.is_none()
        && (sel.distinct.is_none() || union_distinct)
        && !sel.projection.iter().any(|i| match i {
            SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => {
                contains_aggregate(e)
            }
            _ => false,
        });
    if !simple {
        return Err(not_supported(
            "a UNION branch with aggregates, GROUP BY, HAVING or DISTINCT across shards (it \
             would be computed over each shard's part)",
        ));
    }
    Ok(())
}

/// The name a result column of the first branch goes by in the global ORDER BY.
fn result_name(item: &SelectItem) -> Option<String> {
    match item {
        SelectItem::ExprWithAlias { alias, .. } => Some(alias.value.to_lowercase()),
        SelectItem::UnnamedExpr(Expr::Identifier(i)) => Some(i.value.to_lowercase()),
        SelectItem::UnnamedExpr(Expr::CompoundIdentifier(p)) => {
            p.last().map(|i| i.value.to_lowercase())
        }
        _ => None,
    }
}

fn sort_keys(q: &Query, first: &Select, wildcard: bool) -> R<Vec<SortKey>> {
    let Some(ob) = &q.order_by else {
        return Ok(Vec::new());
    };
    let OrderByKind::Expressions(list) = &ob.kind else {
        return Err(not_supported("ORDER BY ALL"));
    };
    if wildcard {
        return Err(not_supported(
            "ORDER BY on a UNION whose first branch selects * across shards: list the columns",
        ));
    }
    let names: Vec<Option<String>> = first.projection.iter().map(result_name).collect();
    let mut keys = Vec::new();
    for o in list {
        if o.options.nulls_first.is_some() || o.with_fill.is_some() {
            return Err(not_supported("NULLS FIRST/LAST and WITH FILL"));
        }
        let descending = match &o.options.sort {
            None | Some(OrderBySort::Asc) => false,
            Some(OrderBySort::Desc) => true,
            Some(_) => return Err(not_supported("ORDER BY … USING")),
        };
        let column = match &o.expr {
            Expr::Value(v) => match &v.value {
                sqlparser::ast::Value::Number(n, _) => n
                    .parse::<usize>()
                    .ok()
                    .filter(|&p| p >= 1 && p <= names.len())
                    .map(|p| p - 1),
                _ => None,
            },
            Expr::Identifier(i) => {
                let n = i.value.to_lowercase();
                let mut hits = names
                    .iter()
                    .enumerate()
                    .filter(|(_, x)| x.as_deref() == Some(n.as_str()));
                match (hits.next(), hits.next()) {
                    (Some((c, _)), None) => Some(c),
                    _ => None,
                }
            }
            _ => None,
        };
        let Some(column) = column else {
            return Err(not_supported(format!(
                "ORDER BY {} on a UNION across shards: order by a result column's name or \
                 position",
                o.expr
            )));
        };
        keys.push(SortKey { column, descending });
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use crate::plan::spec::SortKey;
    use crate::plan::testutil::*;
    use crate::plan::Plan;

    #[test]
    fn union_all_runs_whole_on_every_shard() {
        let (sql, m) = scatter(
            "SELECT account_id, balance AS b FROM accounts WHERE balance > 0 UNION ALL SELECT account_id, amount FROM transactions ORDER BY b DESC, 1 LIMIT 5 OFFSET 2",
        );
        assert_eq!(
            sql,
            "SELECT account_id, balance AS b FROM accounts WHERE balance > 0 UNION ALL SELECT account_id, amount FROM transactions ORDER BY b DESC, 1 LIMIT 7"
        );
        assert!(!m.distinct);
        assert_eq!(
            m.order_by,
            vec![
                SortKey {
                    column: 1,
                    descending: true
                },
                SortKey {
                    column: 0,
                    descending: false
                }
            ]
        );
        assert_eq!((m.offset, m.limit), (2, Some(5)));
    }

    #[test]
    fn union_distinct_dedupes_in_the_merge() {
        let (_, m) = scatter(
            "SELECT fund FROM accounts UNION SELECT fund FROM accounts WHERE account_id = 3",
        );
        assert!(m.distinct);
        let (_, m) = scatter(
            "SELECT fund FROM accounts UNION ALL SELECT fund FROM transactions UNION SELECT x FROM accounts",
        );
        assert!(m.distinct);
    }

    #[test]
    fn union_refusals() {
        let r = rules(3);
        for (sql, why) in [
            ("SELECT COUNT(*) FROM accounts UNION ALL SELECT COUNT(*) FROM transactions", "aggregates"),
            ("SELECT a FROM accounts UNION SELECT a FROM accounts UNION ALL SELECT a FROM accounts", "UNION ALL"),
            ("SELECT a FROM accounts UNION ALL SELECT a FROM fund_yield", "without a sharded table"),
            ("SELECT a FROM accounts EXCEPT SELECT a FROM transactions", "EXCEPT"),
            ("SELECT a FROM accounts UNION ALL (SELECT a FROM accounts ORDER BY a LIMIT 1)", "parenthesized"),
            ("SELECT a FROM accounts UNION ALL SELECT a FROM accounts WHERE a IN (SELECT b FROM accounts)", "subqueries"),
            ("SELECT a FROM accounts UNION ALL SELECT a FROM accounts ORDER BY a + 1", "result column"),
            ("SELECT DISTINCT a FROM accounts UNION ALL SELECT a FROM accounts", "DISTINCT"),
        ] {
            expect_reject(&plan_with(sql, &r), why);
        }
        // Branches pinned to shards: only those shards.
        let (a, b) = keys_on_two_shards(&r);
        let p = plan_with(
            &format!("SELECT account_id FROM accounts WHERE account_id = {a} UNION ALL SELECT account_id FROM accounts WHERE account_id = {b}"),
            &r,
        );
        let Plan::Scatter { targets, .. } = p else {
            panic!("{p:?}")
        };
        assert_eq!(targets.len(), 2);
    }
}
