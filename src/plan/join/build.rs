//! Planning a proxy-executed join: the statement split into the two tables' queries, the
//! join equalities, the select list and ORDER BY mapped onto the sides' columns.

use sqlparser::ast::{
    BinaryOperator, Distinct, Expr, JoinConstraint, JoinOperator, OrderByKind, OrderBySort, Query,
    Select, SelectItem, SelectItemQualifiedWildcardKind, TableFactor,
};
use sqlparser::dialect::MySqlDialect;
use sqlparser::parser::Parser;

use super::refs::{plain_column, sides};
use super::{JoinPlan, JoinSide, JoinSort, Probe, Residual, SideCol};
use crate::plan::reject::not_supported;
use crate::plan::route::{analyze, conjuncts, target_shards, From, Relation};
use crate::plan::spec::CompareOp;
use crate::plan::{scatter, Cx, Plan};

type R<T> = Result<T, Plan>;

fn refuse(why: impl std::fmt::Display) -> Plan {
    not_supported(format!(
        "this join of sharded tables that does not match rows by their shard keys cannot be \
         executed by the proxy: {why}"
    ))
}

/// The kind of the join between the two tables.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Inner,
    /// Rows of this side are kept when unmatched (0: LEFT JOIN, 1: RIGHT JOIN).
    Preserve(usize),
}

/// What one side's query is being built from.
#[derive(Default)]
struct Draft {
    hidden: Vec<String>,
    items: Vec<String>,
    wildcards: Vec<bool>,
    filter: Vec<String>,
    filter_exprs: Vec<Expr>,
}

impl Draft {
    fn hide(&mut self, e: &Expr) -> usize {
        self.hidden.push(e.to_string());
        self.hidden.len() - 1
    }
}

/// Plans the join of `from`'s two sharded tables, or refuses with the reason.
pub(crate) fn plan_join(q: &Query, sel: &Select, from: &From<'_>, cx: &Cx) -> Plan {
    match build(q, sel, from, cx) {
        Ok(p) | Err(p) => p,
    }
}

fn build(q: &Query, sel: &Select, from: &From<'_>, cx: &Cx) -> R<Plan> {
    let rels: [Relation; 2] = match from.relations.as_slice() {
        [a, b] if a.key().is_some() && b.key().is_some() => [a.clone(), b.clone()],
        _ => return Err(refuse("only joins of exactly two sharded tables are")),
    };
    if rels[0].qualifier == rels[1].qualifier {
        return Err(refuse("the two tables need different aliases"));
    }
    if cx.scan.backslash_in_string {
        return Err(refuse(
            "string literals with backslash escapes (use doubled quotes)",
        ));
    }
    if sel.into.is_some()
        || q.fetch.is_some()
        || q.for_clause.is_some()
        || !q.pipe_operators.is_empty()
        || !sel.named_window.is_empty()
        || sel.qualify.is_some()
        || sel.top.is_some()
        || !sel.lateral_views.is_empty()
        || cx.scan.has_keyword("over")
    {
        return Err(refuse("this query clause"));
    }
    if super::grouped::wanted(sel, cx) {
        return Err(super::grouped::plan_grouped(q, sel, from, cx));
    }
    if !matches!(sel.distinct, None | Some(Distinct::All)) {
        return Err(refuse("DISTINCT ON"));
    }
    // The two factors and the join between them.
    let (factors, kind, on): ([&TableFactor; 2], Kind, Option<&Expr>) = match sel.from.as_slice() {
        [t] if t.joins.len() == 1 => {
            let j = &t.joins[0];
            use JoinOperator::*;
            let (kind, c) = match &j.join_operator {
                Join(c) | Inner(c) | StraightJoin(c) => (Kind::Inner, c),
                Left(c) | LeftOuter(c) => (Kind::Preserve(0), c),
                Right(c) | RightOuter(c) => (Kind::Preserve(1), c),
                _ => return Err(refuse("this join type")),
            };
            let on = match c {
                JoinConstraint::On(e) => Some(e),
                JoinConstraint::None => None,
                _ => return Err(refuse("USING and NATURAL (write the equality in ON)")),
            };
            ([&t.relation, &j.relation], kind, on)
        }
        [a, b] if a.joins.is_empty() && b.joins.is_empty() => {
            ([&a.relation, &b.relation], Kind::Inner, None)
        }
        _ => return Err(refuse("this FROM form")),
    };
    if kind != Kind::Inner && on.is_none() {
        return Err(refuse("an outer join needs ON"));
    }
    let mut on_conj = Vec::new();
    if let Some(e) = on {
        conjuncts(e, &mut on_conj);
    }
    let mut where_conj = Vec::new();
    if let Some(w) = &sel.selection {
        conjuncts(w, &mut where_conj);
    }
    if kind == Kind::Inner {
        // For an inner join ON and WHERE mean the same.
        on_conj.append(&mut where_conj);
    }
    let mut drafts = [Draft::default(), Draft::default()];
    let mut pairs: Vec<[usize; 2]> = Vec::new();
    let mut pair_cols: Vec<[String; 2]> = Vec::new();
    let mut residual: Vec<Residual> = Vec::new();
    let mut on_text = Vec::new();
    // The side that gets conditions on no column (a constant): any one side filters them
    // for an inner join; the preserved side for an outer join.
    let anchor = match kind {
        Kind::Preserve(p) => p,
        Kind::Inner => 0,
    };
    let push = |drafts: &mut [Draft; 2], side: usize, c: &Expr| {
        drafts[side].filter.push(format!("({c})"));
        drafts[side].filter_exprs.push(c.clone());
    };
    for c in on_conj {
        if let Expr::BinaryOp {
            left,
            op: BinaryOperator::Eq,
            right,
        } = c
        {
            if let (Some((ls, lc)), Some((rs, rc))) =
                (plain_column(left, &rels), plain_column(right, &rels))
            {
                if ls != rs {
                    let (e0, e1, c0, c1) = if ls == 0 {
                        (left, right, lc, rc)
                    } else {
                        (right, left, rc, lc)
                    };
                    let h0 = drafts[0].hide(e0);
                    let h1 = drafts[1].hide(e1);
                    pairs.push([h0, h1]);
                    pair_cols.push([c0, c1]);
                    on_text.push(c.to_string());
                    continue;
                }
            }
        }
        if let (Kind::Inner, Some((op, [e0, e1]))) = (kind, cross_comparison(c, &rels)) {
            let cols = [drafts[0].hide(e0), drafts[1].hide(e1)];
            residual.push(Residual { cols, op });
            on_text.push(c.to_string());
            continue;
        }
        let s = sides(c, &rels).map_err(refuse)?;
        match (kind, s) {
            (_, 3) => {
                return Err(refuse(format!(
                    "the condition `{c}` reads both tables (the proxy evaluates only `x.col = \
                     y.col` and, in an inner join, AND-ed `x.col <op> y.col` comparisons of two \
                     columns)"
                )))
            }
            (Kind::Inner, 0) => push(&mut drafts, anchor, c),
            (Kind::Inner, s) => push(&mut drafts, s as usize - 1, c),
            (Kind::Preserve(p), s) if s as usize == 2 - p => push(&mut drafts, 1 - p, c),
            (Kind::Preserve(_), _) => {
                return Err(refuse(format!(
                    "the ON condition `{c}` of an outer join reads only the preserved table"
                )))
            }
        }
    }
    for c in where_conj {
        // Only outer joins keep WHERE apart: it filters joined rows, NULLs included.
        let Kind::Preserve(p) = kind else {
            unreachable!("moved into the ON list")
        };
        let s = sides(c, &rels).map_err(refuse)?;
        if s == 0 || s as usize == p + 1 {
            push(&mut drafts, p, c);
        } else {
            return Err(refuse(format!(
                "the WHERE condition `{c}` reads the table an outer join may fill with NULLs"
            )));
        }
    }
    if pairs.is_empty() {
        return Err(refuse(
            "it has no equality between a column of each table (`x.col = y.col`)",
        ));
    }
    // Which side is looked up: an outer join reads its preserved side first; an inner join
    // looks up the side whose shard key is a join column (each value then goes to one shard).
    let outer = match kind {
        Kind::Preserve(p) => p,
        Kind::Inner => {
            let key_of = |s: usize| {
                pair_cols
                    .iter()
                    .any(|c| rels[s].key() == Some(c[s].as_str()))
            };
            if !key_of(1) && key_of(0) {
                1
            } else {
                0
            }
        }
    };
    let inner = 1 - outer;
    let probe_pair = pair_cols
        .iter()
        .position(|c| rels[inner].key() == Some(c[inner].as_str()))
        .unwrap_or(0);
    let probe = Probe {
        pair: probe_pair,
        inner_column: drafts[inner].hidden[pairs[probe_pair][inner]].clone(),
        by_key: rels[inner].key() == Some(pair_cols[probe_pair][inner].as_str()),
    };
    // The select list, each item computed by the side it reads.
    let mut projection = sel.projection.clone();
    let visible = projection.len();
    scatter::keep_names(cx.sql, &mut projection, visible);
    let mut output = Vec::new();
    let mut aliases: Vec<(String, usize)> = Vec::new();
    for item in &projection {
        let (side, text) = match item {
            SelectItem::Wildcard(_) => {
                for (s, d) in drafts.iter_mut().enumerate() {
                    d.items.push(format!("{}.*", rels[s].qualifier));
                    d.wildcards.push(true);
                    output.push((s, d.items.len() - 1));
                }
                continue;
            }
            SelectItem::QualifiedWildcard(SelectItemQualifiedWildcardKind::ObjectName(n), _) => {
                let q =
                    n.0.last()
                        .map(|p| p.to_string().to_lowercase())
                        .unwrap_or_default();
                let q = q.trim_matches('`').to_string();
                let Some(s) = rels.iter().position(|r| r.qualifier == q) else {
                    return Err(refuse(format!("{n}.* names no table of the join")));
                };
                drafts[s].items.push(item.to_string());
                drafts[s].wildcards.push(true);
                output.push((s, drafts[s].items.len() - 1));
                continue;
            }
            SelectItem::UnnamedExpr(e) => (sides(e, &rels).map_err(refuse)?, item.to_string()),
            SelectItem::ExprWithAlias { expr, alias } => {
                aliases.push((alias.value.to_lowercase(), output.len()));
                (sides(expr, &rels).map_err(refuse)?, item.to_string())
            }
            _ => return Err(refuse("this select item form")),
        };
        let s = match side {
            0 => anchor,
            3 => {
                return Err(refuse(format!(
                    "the select item `{text}` reads both tables (compute it per table)"
                )))
            }
            s => s as usize - 1,
        };
        drafts[s].items.push(text);
        drafts[s].wildcards.push(false);
        output.push((s, drafts[s].items.len() - 1));
    }
    // ORDER BY.
    let mut order_by = Vec::new();
    if let Some(ob) = &q.order_by {
        let OrderByKind::Expressions(list) = &ob.kind else {
            return Err(refuse("ORDER BY ALL"));
        };
        for o in list {
            if o.options.nulls_first.is_some() || o.with_fill.is_some() {
                return Err(refuse("NULLS FIRST/LAST and WITH FILL"));
            }
            let descending = match &o.options.sort {
                None | Some(OrderBySort::Asc) => false,
                Some(OrderBySort::Desc) => true,
                Some(_) => return Err(refuse("ORDER BY … USING")),
            };
            let by_item = |i: usize| -> R<JoinSort> {
                let (side, item) = output[i];
                if drafts[side].wildcards[item] {
                    return Err(refuse("ORDER BY a position or alias of `*`"));
                }
                Ok(JoinSort {
                    side,
                    column: SideCol::Item(item),
                    descending,
                })
            };
            let key = match &o.expr {
                Expr::Value(v) => {
                    let p: usize = v
                        .to_string()
                        .parse()
                        .map_err(|_| refuse("ORDER BY a constant that is not a column position"))?;
                    if p == 0 || p > output.len() {
                        return Err(refuse(format!("ORDER BY position {p}")));
                    }
                    if output[..p].iter().any(|&(s, i)| drafts[s].wildcards[i]) {
                        return Err(refuse("ORDER BY a position after `*`"));
                    }
                    by_item(p - 1)?
                }
                Expr::Identifier(id) => {
                    let name = id.value.to_lowercase();
                    match aliases.iter().find(|(a, _)| *a == name) {
                        Some(&(_, i)) => by_item(i)?,
                        None => return Err(refuse(sides(&o.expr, &rels).unwrap_err())),
                    }
                }
                e => match sides(e, &rels).map_err(refuse)? {
                    s @ (1 | 2) => {
                        let side = s as usize - 1;
                        JoinSort {
                            side,
                            column: SideCol::Hidden(drafts[side].hide(e)),
                            descending,
                        }
                    }
                    _ => return Err(refuse(format!("ORDER BY `{e}`"))),
                },
            };
            order_by.push(key);
        }
    }
    let (offset, limit) = scatter::offset_and_limit(q.limit_clause.as_ref())?;
    // The two queries.
    let mut built = Vec::with_capacity(2);
    for (s, d) in drafts.into_iter().enumerate() {
        let mut cols = d.hidden.clone();
        cols.extend(d.items.iter().cloned());
        let select = format!("SELECT {} FROM {}", cols.join(", "), factors[s]);
        let filter = (!d.filter.is_empty()).then(|| d.filter.join(" AND "));
        let side = JoinSide {
            table: factors[s].to_string(),
            select,
            filter,
            hidden: d.hidden.len(),
            wildcards: d.wildcards,
            shards: side_shards(&rels[s], &d.filter_exprs, cx),
        };
        let check = side.sql_with(Some(&format!("{} IN (0)", probe.inner_column)));
        let parsed = Parser::parse_sql(&MySqlDialect {}, &check);
        if parsed.map(|v| v.len() != 1).unwrap_or(true) {
            return Err(refuse("the query of one table could not be verified"));
        }
        built.push(side);
    }
    let second = built.pop().expect("two sides");
    let first = built.pop().expect("two sides");
    Ok(Plan::Join(Box::new(JoinPlan {
        sides: [first, second],
        outer,
        keep_unmatched: kind != Kind::Inner,
        pairs,
        probe,
        output,
        order_by,
        offset,
        limit,
        residual,
        on_text: on_text.join(" AND "),
        grouped: None,
    })))
}

/// `x.col <op> y.col` with a column of each table and `op` one of `<>`, `<`, `<=`, `>`, `>=`:
/// the comparison with the first table's column on the left, and the two columns.
fn cross_comparison<'e>(c: &'e Expr, rels: &[Relation; 2]) -> Option<(CompareOp, [&'e Expr; 2])> {
    let Expr::BinaryOp { left, op, right } = c else {
        return None;
    };
    let op = match op {
        BinaryOperator::NotEq => CompareOp::NotEq,
        BinaryOperator::Lt => CompareOp::Lt,
        BinaryOperator::LtEq => CompareOp::LtEq,
        BinaryOperator::Gt => CompareOp::Gt,
        BinaryOperator::GtEq => CompareOp::GtEq,
        _ => return None,
    };
    let ((ls, _), (rs, _)) = (plain_column(left, rels)?, plain_column(right, rels)?);
    match (ls, rs) {
        (0, 1) => Some((op, [left, right])),
        // `second.col < first.col` is `first.col > second.col`.
        (1, 0) => Some((
            match op {
                CompareOp::Lt => CompareOp::Gt,
                CompareOp::LtEq => CompareOp::GtEq,
                CompareOp::Gt => CompareOp::Lt,
                CompareOp::GtEq => CompareOp::LtEq,
                o => o,
            },
            [right, left],
        )),
        _ => None,
    }
}

/// The shards that may hold a side's rows: those its own conditions pin by its key, else all.
fn side_shards(rel: &Relation, filter: &[Expr], cx: &Cx) -> Vec<String> {
    let all = || cx.rules().shards.clone();
    let Some(first) = filter.first() else {
        return all();
    };
    let cond = filter[1..]
        .iter()
        .fold(first.clone(), |acc, c| Expr::BinaryOp {
            left: Box::new(acc),
            op: BinaryOperator::And,
            right: Box::new(c.clone()),
        });
    let one = From {
        relations: vec![rel.clone()],
        on: Vec::new(),
        using_pairs: Vec::new(),
    };
    match analyze(&one, Some(&cond), cx.sql, cx.scan) {
        Ok(route) => target_shards(&route, cx.rules()).unwrap_or_else(all),
        Err(_) => all(),
    }
}
