//! `SELECT … FROM (SELECT … FROM sharded …) d …`: a derived table whose query returns rows one
//! by one (no aggregate, GROUP BY, DISTINCT, ORDER BY or LIMIT of its own, the checks of a
//! UNION branch) splits its rows between the shards as a sharded table does, so the outer
//! query is planned as a scatter read over it: the whole statement runs on every shard that
//! holds rows, and the outer query's ORDER BY, GROUP BY, aggregates and LIMIT merge as usual.
//!
//! The same holds, level by level, for a derived table of such a derived table (`FROM (SELECT
//! … FROM (SELECT … FROM accounts) a WHERE …) b`, what a CTE read by a later CTE becomes,
//! [`crate::plan::cte`]): each level keeps or drops rows one by one, which each shard does for
//! its own rows.
//!
//! Beside the derived table the outer FROM may join reference tables, whose rows every shard
//! holds whole: each of the derived table's rows meets the same reference rows on its shard as
//! on one server. Not when an outer join keeps the reference rows that match nothing in the
//! derived table (`f LEFT JOIN d`): every shard would return them. A derived table of
//! reference tables that every shard computes alike counts as a reference table (what a CTE
//! over a reference table becomes). Any other table beside it (sharded, unlisted, a second
//! derived table over sharded tables) is not this form.

use sqlparser::ast::{JoinOperator, Query, Select, SetExpr, TableFactor, TableWithJoins};

use super::union::{branch_shards, row_wise};
use super::{plan_scatter, R};
use crate::plan::reject::not_supported;
use crate::plan::route::relation_of;
use crate::plan::rules::TableKind;
use crate::plan::scan::scan;
use crate::plan::walk::Walk;
use crate::plan::{Cx, Plan, NONDETERMINISTIC};

/// Plans the statement as a scatter read over its derived table (see the module doc); `None`
/// when the statement is not of that form.
pub(crate) fn plan_derived(q: &Query, sel: &Select, cx: &Cx) -> Option<Plan> {
    if q.with.is_some() {
        return None;
    }
    let (subquery, beside) = match derived_of(sel, cx)? {
        Ok(s) => s,
        Err(p) => return Some(p),
    };
    // Every SELECT of the statement is one of the chain's levels or a derived table of
    // reference tables beside it: a subquery elsewhere is someone else's (and is refused
    // there if it cannot be answered).
    if cx.scan.selects != 1 + depth(subquery) + beside {
        return None;
    }
    Some(match shards(subquery, cx) {
        Ok(shards) => plan_scatter(q, sel, &[], &shards, cx),
        Err(p) => p,
    })
}

/// The SELECTs of the outer FROM's derived table when the statement has the form planned here,
/// else 0: [`crate::plan::subquery`] leaves them in place when it runs the statement's
/// subqueries first, and the statement with their values is planned here.
pub(crate) fn derived_selects(sel: &Select, cx: &Cx) -> usize {
    match derived_of(sel, cx) {
        Some(Ok((q, beside))) => depth(q) + beside,
        _ => 0,
    }
}

/// The one derived table over sharded tables of the outer FROM, if everything beside it is a
/// reference table or a derived table of one ([`reference_rows`]), and how many of the latter.
fn derived_of<'a>(sel: &'a Select, cx: &Cx) -> Option<R<(&'a Query, usize)>> {
    let mut derived = None;
    let mut beside = 0;
    for twj in &sel.from {
        let mut seen_derived = false;
        let ops = std::iter::once(None).chain(twj.joins.iter().map(|j| Some(&j.join_operator)));
        let factors = std::iter::once(&twj.relation).chain(twj.joins.iter().map(|j| &j.relation));
        for (f, op) in factors.zip(ops) {
            let this_derived = match f {
                TableFactor::Derived {
                    lateral: false,
                    subquery,
                    ..
                } if reference_rows(subquery, cx) => {
                    beside += 1;
                    false
                }
                TableFactor::Derived {
                    lateral: false,
                    subquery,
                    ..
                } => {
                    if derived.replace(subquery.as_ref()).is_some() {
                        return None;
                    }
                    true
                }
                TableFactor::Table {
                    name, args: None, ..
                } => {
                    if relation_of(name, None, cx.rules(), cx.cur_db()).kind != TableKind::Reference
                    {
                        return None;
                    }
                    false
                }
                _ => return None,
            };
            use JoinOperator::*;
            let hazard = match op {
                None | Some(Join(_) | Inner(_) | StraightJoin(_) | CrossJoin(_)) => false,
                Some(Left(_) | LeftOuter(_)) => this_derived,
                Some(Right(_) | RightOuter(_)) => seen_derived && !this_derived,
                Some(_) => return None,
            };
            if hazard {
                return Some(Err(not_supported(
                    "an outer join that keeps the unmatched rows of a reference table against a \
                     derived table over sharded tables would repeat them on every shard; put the \
                     derived table on the preserved side",
                )));
            }
            seen_derived |= this_derived;
        }
    }
    derived.map(|d| Ok((d, beside)))
}

/// A derived table every shard computes alike, as the one server would: one SELECT (no
/// subquery) returning the rows of reference tables one by one, no ORDER BY/LIMIT (which
/// could pick other rows on another shard), no function whose value differs between servers.
fn reference_rows(q: &Query, cx: &Cx) -> bool {
    let SetExpr::Select(s) = q.body.as_ref() else {
        return false;
    };
    if q.order_by.is_some() || q.limit_clause.is_some() || q.with.is_some() {
        return false;
    }
    if row_wise(s, false).is_err() {
        return false;
    }
    let mut walk = Walk::default();
    walk.query(q);
    let text = scan(&q.to_string());
    !walk.unknown
        && walk.selects == 1
        && walk.tables.iter().all(|t| match t.factor {
            TableFactor::Table {
                name, args: None, ..
            } => relation_of(name, None, cx.rules(), cx.cur_db()).kind == TableKind::Reference,
            _ => false,
        })
        && !text
            .words
            .iter()
            .any(|w| !w.quoted && NONDETERMINISTIC.contains(&w.text.as_str()))
}

/// The derived table's query, read as a chain of `SELECT … FROM (SELECT …)` levels.
fn inner_derived(s: &Select) -> Option<&Query> {
    match s.from.as_slice() {
        [TableWithJoins {
            relation:
                TableFactor::Derived {
                    lateral: false,
                    subquery,
                    ..
                },
            joins,
        }] if joins.is_empty() => Some(subquery),
        _ => None,
    }
}

/// The number of SELECT levels of a derived table's query.
fn depth(q: &Query) -> usize {
    match q.body.as_ref() {
        SetExpr::Select(s) => 1 + inner_derived(s).map_or(0, depth),
        _ => 1,
    }
}

/// The shards holding the rows of a derived table's query, refusing a level that does not
/// return its rows one by one.
fn shards(sub: &Query, cx: &Cx) -> R<Vec<String>> {
    if sub.order_by.is_some() || sub.limit_clause.is_some() || sub.with.is_some() {
        return Err(not_supported(
            "a derived table with its own ORDER BY or LIMIT over sharded tables (it would \
             apply to each shard's part)",
        ));
    }
    let SetExpr::Select(inner) = sub.body.as_ref() else {
        return Err(not_supported(
            "a derived table over sharded tables whose query is a UNION or another form than \
             one SELECT",
        ));
    };
    match inner_derived(inner) {
        Some(next) => {
            row_wise(inner, false)?;
            shards(next, cx)
        }
        None => branch_shards(inner, false, cx),
    }
}
