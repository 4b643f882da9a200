//! Scatter-gather reads: rewrite the SELECT for the shards and describe in a [`MergeSpec`] how
//! the merge engine combines their answers into the one answer a single server would give.
//!
//! # The rewrite
//! Each shard holds part of the rows, so each shard answers a *partial* query:
//! - Aggregates recombine: partial `COUNT`s and `SUM`s add up, `MIN`/`MAX` of partial
//!   `MIN`/`MAX`. `AVG(x)` does not (an average of averages is wrong), so the shard SQL keeps
//!   `AVG(x)` (for its column definition) and gets hidden trailing columns `SUM(x), COUNT(x)`.
//!   `COUNT(DISTINCT key)` adds up because each key value lives on one shard.
//!   `COUNT(DISTINCT x)` of anything else does not (the same value may sit on several shards):
//!   the shards also group by `x` (a hidden column), so each shard row stands for one value of
//!   `x` per group, and the merge counts each value once however many shards have it
//!   ([`MergeSpec::pre_group_by`]). Several COUNT(DISTINCT) of different expressions, or of
//!   several arguments, would need one such grouping each and are refused.
//! - `GROUP BY`: shards group their rows; the proxy merges groups with equal keys and, without
//!   ORDER BY, sorts them by the group keys as MariaDB does. A group key
//!   that is not selected becomes a hidden column.
//! - `HAVING` is true of a whole group, not of a partial one: it is removed from the shard SQL
//!   and becomes a [`Filter`] the proxy applies to merged groups. Only comparisons of selected
//!   (or hidden) columns with constants, combined by AND/OR/NOT, are expressible.
//! - `ORDER BY` stays in the shard SQL (each shard sorts its part) and becomes sort keys for the
//!   merge; an expression that is not selected becomes a hidden column.
//! - `LIMIT n OFFSET m`: each shard returns its first `m + n` rows (`LIMIT m+n`), the proxy skips
//!   `m` and keeps `n` of the merged order. With GROUP BY, aggregates or DISTINCT no limit is
//!   pushed down: a shard's first rows are not its share of the final groups.
//!
//! Hidden columns are appended after the client's columns; `visible_columns` says how many the
//! client sees. The rewritten SELECT is rendered from the AST and parsed again as a check.
//! Refused here: window functions, aggregates inside expressions (`SUM(a)/COUNT(b)`), other
//! aggregate functions (GROUP_CONCAT, STD, …), `WITH ROLLUP`, `SELECT *` with ORDER BY, GROUP
//! BY or DISTINCT (the planner does not know the table's columns), placeholder LIMITs, and
//! string literals with backslash escapes (the renderer would change their meaning).

use sqlparser::ast::{
    BinaryOperator, Distinct, DuplicateTreatment, Expr, Function, FunctionArg, FunctionArgExpr,
    FunctionArguments, GroupByExpr, Ident, LimitClause, ObjectName, OrderByKind, OrderBySort,
    Query, Select, SelectItem, SetExpr, UnaryOperator, Value,
};
use sqlparser::dialect::MySqlDialect;
use sqlparser::parser::Parser;

use super::reject::not_supported;
use super::route::{key_ref, Relation};
use super::scan::scan;
use super::spec::{AggregateKind, AggregateSpec, CompareOp, Filter, Literal, MergeSpec, SortKey};
use super::{Cx, Plan, ShardSql, ALL_COLUMNS};

/// Aggregate functions MariaDB knows; only the first five can be recombined.
const AGGREGATES: &[&str] = &[
    "count",
    "sum",
    "min",
    "max",
    "avg",
    "group_concat",
    "std",
    "stddev",
    "stddev_pop",
    "stddev_samp",
    "variance",
    "var_pop",
    "var_samp",
    "bit_and",
    "bit_or",
    "bit_xor",
    "json_arrayagg",
    "json_objectagg",
];

type R<T> = Result<T, Plan>;

/// One output column of the shard SQL.
struct Col {
    /// Rendered expression (for matching ORDER BY / GROUP BY / HAVING expressions).
    text: String,
    alias: Option<String>,
    /// Identifier the item is (for `SELECT name` matching `GROUP BY name`).
    is_plain_ident: Option<String>,
    agg: bool,
}

struct Builder<'a> {
    cols: Vec<Col>,
    hidden: Vec<SelectItem>,
    aggregates: Vec<AggregateSpec>,
    /// The arguments of the [`AggregateKind::CountDistinct`] aggregates registered so far.
    distinct_args: Vec<Expr>,
    rels: &'a [Relation],
}

fn lc_text(e: &Expr) -> String {
    e.to_string().to_lowercase()
}

fn func_name(f: &Function) -> String {
    f.name.to_string().to_lowercase()
}

/// Whether the rendered expression calls an aggregate function anywhere.
fn contains_aggregate(e: &Expr) -> bool {
    let s = scan(&e.to_string());
    AGGREGATES.iter().any(|a| s.has_call(a))
}

fn single_arg(f: &Function) -> R<(Option<&FunctionArgExpr>, bool, Vec<&FunctionArgExpr>)> {
    let FunctionArguments::List(list) = &f.args else {
        return Err(not_supported(format!("{} without arguments", f.name)));
    };
    if !list.clauses.is_empty() {
        return Err(not_supported(format!(
            "{} with ORDER BY/SEPARATOR clauses across shards",
            f.name
        )));
    }
    let distinct = matches!(list.duplicate_treatment, Some(DuplicateTreatment::Distinct));
    let args: Vec<&FunctionArgExpr> = list
        .args
        .iter()
        .map(|a| match a {
            FunctionArg::Unnamed(x) => Ok(x),
            _ => Err(not_supported("named function arguments")),
        })
        .collect::<R<_>>()?;
    Ok((args.first().copied(), distinct, args))
}

impl Builder<'_> {
    /// Classifies an aggregate call; `None` if `e` is not a recombinable aggregate call.
    fn aggregate(&self, e: &Expr) -> R<Option<AggregateKind>> {
        let Expr::Function(f) = e else {
            return Ok(None);
        };
        let name = func_name(f);
        if !AGGREGATES.contains(&name.as_str()) {
            return Ok(None);
        }
        if f.over.is_some() {
            return Err(not_supported(
                "window functions are not supported across shards",
            ));
        }
        if f.filter.is_some() || !f.within_group.is_empty() {
            return Err(not_supported("aggregate FILTER/WITHIN GROUP across shards"));
        }
        let (_, distinct, args) = single_arg(f)?;
        let kind = match name.as_str() {
            "count" if distinct => {
                let on_key = args.iter().any(|a| match a {
                    FunctionArgExpr::Expr(x) => !key_ref(x, self.rels).is_empty(),
                    _ => false,
                });
                if on_key {
                    AggregateKind::CountDistinctDisjoint
                } else if args.len() == 1 && matches!(args[0], FunctionArgExpr::Expr(_)) {
                    AggregateKind::CountDistinct
                } else {
                    return Err(not_supported(
                        "COUNT(DISTINCT …) of several expressions other than the shard key \
                         across shards (count one expression, or query one shard)",
                    ));
                }
            }
            "count" => AggregateKind::Count,
            "sum" | "avg" if distinct => {
                return Err(not_supported(format!(
                    "{}(DISTINCT …) cannot be combined across shards",
                    name.to_uppercase()
                )))
            }
            "sum" => AggregateKind::Sum,
            "min" => AggregateKind::Min,
            "max" => AggregateKind::Max,
            "avg" => AggregateKind::Avg {
                sum_column: 0,
                count_column: 0,
            },
            other => {
                return Err(not_supported(format!(
                    "{}() cannot be combined across shards",
                    other.to_uppercase()
                )))
            }
        };
        if args.len() != 1 && !matches!(kind, AggregateKind::CountDistinctDisjoint) {
            return Err(not_supported(format!("{name} with several arguments")));
        }
        for a in &args {
            if let FunctionArgExpr::Expr(x) = a {
                if contains_aggregate(x) {
                    return Err(not_supported("nested aggregates"));
                }
            }
        }
        Ok(Some(kind))
    }

    /// Registers aggregate `e` at column `column` (adding AVG's hidden helpers).
    fn register_aggregate(&mut self, e: &Expr, kind: AggregateKind, column: usize) {
        let kind = match kind {
            AggregateKind::Avg { .. } => {
                let Expr::Function(f) = e else { unreachable!() };
                let sum_column = self.push_hidden(Expr::Function(rename(f, "SUM")), false);
                let count_column = self.push_hidden(Expr::Function(rename(f, "COUNT")), false);
                AggregateKind::Avg {
                    sum_column,
                    count_column,
                }
            }
            AggregateKind::CountDistinct => {
                if let Expr::Function(f) = e {
                    if let Ok((Some(FunctionArgExpr::Expr(arg)), _, _)) = single_arg(f) {
                        self.distinct_args.push(arg.clone());
                    }
                }
                AggregateKind::CountDistinct
            }
            k => k,
        };
        self.aggregates.push(AggregateSpec { column, kind });
    }

    fn push_hidden(&mut self, e: Expr, agg: bool) -> usize {
        self.cols.push(Col {
            text: lc_text(&e),
            alias: None,
            is_plain_ident: None,
            agg,
        });
        self.hidden.push(SelectItem::UnnamedExpr(e));
        self.cols.len() - 1
    }

    fn by_text(&self, e: &Expr) -> Option<usize> {
        let t = lc_text(e);
        self.cols.iter().position(|c| c.text == t)
    }

    fn by_alias(&self, e: &Expr) -> Option<usize> {
        let Expr::Identifier(id) = e else { return None };
        let name = id.value.to_lowercase();
        self.cols
            .iter()
            .position(|c| c.alias.as_deref() == Some(name.as_str()))
    }

    /// The column holding `e`, adding a hidden one if `e` is not selected. Aggregates are
    /// registered so the merge recombines them.
    fn column_for(&mut self, e: &Expr) -> R<usize> {
        if let Some(i) = self.by_alias(e).or_else(|| self.by_text(e)) {
            return Ok(i);
        }
        if let Some(kind) = self.aggregate(e)? {
            let col = self.cols.len();
            let c = self.push_hidden(e.clone(), true);
            debug_assert_eq!(c, col);
            self.register_aggregate(e, kind, col);
            return Ok(col);
        }
        if contains_aggregate(e) {
            return Err(not_supported(
                "an aggregate inside an expression cannot be combined across shards; select \
                 the aggregates and compute the expression in the application",
            ));
        }
        Ok(self.push_hidden(e.clone(), false))
    }
}

fn rename(f: &Function, name: &str) -> Function {
    let mut g = f.clone();
    g.name = ObjectName::from(vec![Ident::new(name)]);
    g
}

fn position(e: &Expr) -> Option<u64> {
    match e {
        Expr::Value(v) => match &v.value {
            Value::Number(n, _) => n.parse().ok(),
            _ => None,
        },
        _ => None,
    }
}

fn literal(e: &Expr) -> Option<Literal> {
    match e {
        Expr::Nested(x) => literal(x),
        Expr::Value(v) => match &v.value {
            Value::Number(n, _) => Some(Literal::Number(n.clone())),
            Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => {
                Some(Literal::String(s.clone()))
            }
            Value::Null => Some(Literal::Null),
            _ => None,
        },
        Expr::UnaryOp {
            op: UnaryOperator::Minus,
            expr,
        } => match literal(expr)? {
            Literal::Number(n) => Some(Literal::Number(format!("-{n}"))),
            _ => None,
        },
        _ => None,
    }
}

fn compare_op(op: &BinaryOperator) -> Option<CompareOp> {
    Some(match op {
        BinaryOperator::Eq => CompareOp::Eq,
        BinaryOperator::NotEq => CompareOp::NotEq,
        BinaryOperator::Lt => CompareOp::Lt,
        BinaryOperator::LtEq => CompareOp::LtEq,
        BinaryOperator::Gt => CompareOp::Gt,
        BinaryOperator::GtEq => CompareOp::GtEq,
        _ => return None,
    })
}

fn flip(op: CompareOp) -> CompareOp {
    match op {
        CompareOp::Lt => CompareOp::Gt,
        CompareOp::LtEq => CompareOp::GtEq,
        CompareOp::Gt => CompareOp::Lt,
        CompareOp::GtEq => CompareOp::LtEq,
        o => o,
    }
}

fn having_filter(e: &Expr, b: &mut Builder) -> R<Filter> {
    let unsupported = || {
        not_supported(format!(
            "HAVING {e} cannot be evaluated by the proxy; only comparisons of selected columns \
             or aggregates with constants, joined by AND/OR/NOT, are supported across shards"
        ))
    };
    match e {
        Expr::Nested(x) => having_filter(x, b),
        Expr::BinaryOp {
            left,
            op: BinaryOperator::And,
            right,
        } => Ok(Filter::And(
            Box::new(having_filter(left, b)?),
            Box::new(having_filter(right, b)?),
        )),
        Expr::BinaryOp {
            left,
            op: BinaryOperator::Or,
            right,
        } => Ok(Filter::Or(
            Box::new(having_filter(left, b)?),
            Box::new(having_filter(right, b)?),
        )),
        Expr::UnaryOp {
            op: UnaryOperator::Not,
            expr,
        } => Ok(Filter::Not(Box::new(having_filter(expr, b)?))),
        Expr::BinaryOp { left, op, right } => {
            let op = compare_op(op).ok_or_else(unsupported)?;
            if let Some(value) = literal(right) {
                let column = b.column_for(left)?;
                Ok(Filter::Compare { column, op, value })
            } else if let Some(value) = literal(left) {
                let column = b.column_for(right)?;
                Ok(Filter::Compare {
                    column,
                    op: flip(op),
                    value,
                })
            } else {
                Err(unsupported())
            }
        }
        Expr::Between {
            expr,
            negated,
            low,
            high,
        } => {
            let (Some(lo), Some(hi)) = (literal(low), literal(high)) else {
                return Err(unsupported());
            };
            let column = b.column_for(expr)?;
            let f = Filter::And(
                Box::new(Filter::Compare {
                    column,
                    op: CompareOp::GtEq,
                    value: lo,
                }),
                Box::new(Filter::Compare {
                    column,
                    op: CompareOp::LtEq,
                    value: hi,
                }),
            );
            Ok(if *negated {
                Filter::Not(Box::new(f))
            } else {
                f
            })
        }
        Expr::IsNull(x) => Ok(Filter::IsNull {
            column: b.column_for(x)?,
            negated: false,
        }),
        Expr::IsNotNull(x) => Ok(Filter::IsNull {
            column: b.column_for(x)?,
            negated: true,
        }),
        _ => Err(unsupported()),
    }
}

fn u64_literal(e: &Expr, what: &str) -> R<u64> {
    position(e).ok_or_else(|| {
        not_supported(format!(
            "{what} must be an integer constant when a query spans shards"
        ))
    })
}

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
    let mut b = Builder {
        cols: Vec::new(),
        hidden: Vec::new(),
        aggregates: Vec::new(),
        distinct_args: Vec::new(),
        rels,
    };
    let mut wildcard = false;
    let mut deferred_avgs = Vec::new();
    // 1. The select list.
    for item in &sel.projection {
        let (e, alias) = match item {
            SelectItem::UnnamedExpr(e) => (e, None),
            SelectItem::ExprWithAlias { expr, alias } => (expr, Some(alias.value.to_lowercase())),
            SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..) => {
                wildcard = true;
                b.cols.push(Col {
                    text: "*".into(),
                    alias: None,
                    is_plain_ident: None,
                    agg: false,
                });
                continue;
            }
            _ => return Err(not_supported("this select item form across shards")),
        };
        let col = b.cols.len();
        let kind = b.aggregate(e)?;
        if kind.is_none() && contains_aggregate(e) {
            return Err(not_supported(format!(
                "{e}: an aggregate inside an expression cannot be combined across shards; \
                 select the aggregates themselves"
            )));
        }
        b.cols.push(Col {
            text: lc_text(e),
            alias,
            is_plain_ident: match e {
                Expr::Identifier(i) => Some(i.value.to_lowercase()),
                _ => None,
            },
            agg: kind.is_some(),
        });
        if let Some(k) = kind {
            if matches!(k, AggregateKind::Avg { .. }) {
                // AVG adds hidden columns; they must come after every visible one.
                deferred_avgs.push((e.clone(), k, col));
            } else {
                b.register_aggregate(e, k, col);
            }
        }
    }
    for (e, k, col) in deferred_avgs {
        b.register_aggregate(&e, k, col);
    }
    let visible = sel.projection.len();
    // 2. GROUP BY.
    let mut group_by = Vec::new();
    match &sel.group_by {
        GroupByExpr::Expressions(exprs, modifiers) => {
            if !modifiers.is_empty() {
                return Err(not_supported("GROUP BY … WITH ROLLUP across shards"));
            }
            for g in exprs {
                let col = if let Some(p) = position(g) {
                    if p == 0 || p as usize > visible || b.cols[p as usize - 1].agg {
                        return Err(not_supported(format!("GROUP BY position {p}")));
                    }
                    p as usize - 1
                } else if let Some(i) = b.by_alias(g) {
                    // MariaDB resolves a GROUP BY name to a table column before an alias; safe
                    // only when the alias names that same column.
                    let id = match g {
                        Expr::Identifier(i) => i.value.to_lowercase(),
                        _ => String::new(),
                    };
                    if b.cols[i].is_plain_ident.as_deref() != Some(id.as_str()) {
                        return Err(not_supported(format!(
                            "GROUP BY {g} names a select alias, which MariaDB may resolve to a \
                             table column instead; group by the expression or its position"
                        )));
                    }
                    i
                } else if let Some(i) = b.by_text(g) {
                    i
                } else {
                    if contains_aggregate(g) {
                        return Err(not_supported("aggregates in GROUP BY"));
                    }
                    b.push_hidden(g.clone(), false)
                };
                if b.cols[col].agg {
                    return Err(not_supported("GROUP BY an aggregate"));
                }
                group_by.push(col);
            }
        }
        GroupByExpr::All(_) => return Err(not_supported("GROUP BY ALL")),
    }
    // 3. HAVING.
    let having = match &sel.having {
        Some(h) => Some(having_filter(h, &mut b)?),
        None => None,
    };
    // 4. ORDER BY.
    let mut order_by = Vec::new();
    if let Some(ob) = &q.order_by {
        let OrderByKind::Expressions(list) = &ob.kind else {
            return Err(not_supported("ORDER BY ALL"));
        };
        if ob.interpolate.is_some() {
            return Err(not_supported("ORDER BY … INTERPOLATE"));
        }
        for o in list {
            if o.options.nulls_first.is_some() || o.with_fill.is_some() {
                return Err(not_supported("NULLS FIRST/LAST and WITH FILL"));
            }
            let descending = match &o.options.sort {
                None | Some(OrderBySort::Asc) => false,
                Some(OrderBySort::Desc) => true,
                Some(_) => return Err(not_supported("ORDER BY … USING")),
            };
            let column = if let Some(p) = position(&o.expr) {
                if p == 0 || p as usize > visible {
                    return Err(not_supported(format!("ORDER BY position {p}")));
                }
                p as usize - 1
            } else {
                let before = b.cols.len();
                let c = b.column_for(&o.expr)?;
                if c >= before && distinct {
                    return Err(not_supported(
                        "SELECT DISTINCT … ORDER BY an expression that is not selected, across \
                         shards",
                    ));
                }
                c
            };
            order_by.push(SortKey { column, descending });
        }
    }
    // MariaDB sorts GROUP BY results by the group keys when there is no ORDER BY; so does the
    // merged answer.
    if q.order_by.is_none() {
        order_by = group_by
            .iter()
            .map(|&column| SortKey {
                column,
                descending: false,
            })
            .collect();
    }
    // HAVING and ORDER BY may have added aggregates: decide grouping only now.
    let grouped = !group_by.is_empty() || !b.aggregates.is_empty();
    // COUNT(DISTINCT x) of a non-key expression: the shards group by x too.
    let mut pre_group_by = Vec::new();
    let mut extra_group_key = None;
    if let Some(arg) = b.distinct_args.first().cloned() {
        let text = lc_text(&arg);
        if b.distinct_args.iter().any(|a| lc_text(a) != text) {
            return Err(not_supported(
                "COUNT(DISTINCT …) of different expressions in one query across shards (each \
                 would need its own grouping); run one query per expression",
            ));
        }
        // The finer grouping would count one key value once per value of `arg`.
        if b.aggregates
            .iter()
            .any(|a| a.kind == AggregateKind::CountDistinctDisjoint)
        {
            return Err(not_supported(
                "COUNT(DISTINCT …) of the shard key together with COUNT(DISTINCT …) of \
                 another expression across shards",
            ));
        }
        let col = b.push_hidden(arg.clone(), false);
        pre_group_by = group_by.clone();
        pre_group_by.push(col);
        extra_group_key = Some(arg);
    }
    if wildcard
        && (grouped || distinct || !order_by.is_empty() || having.is_some() || !b.hidden.is_empty())
    {
        return Err(not_supported(
            "SELECT * with ORDER BY, GROUP BY, HAVING, DISTINCT or aggregates across shards: \
             list the columns",
        ));
    }
    // 5. LIMIT / OFFSET.
    let (offset, limit) = match &q.limit_clause {
        None => (0, None),
        Some(LimitClause::LimitOffset {
            limit,
            offset,
            limit_by,
        }) => {
            if !limit_by.is_empty() {
                return Err(not_supported("LIMIT BY"));
            }
            let off = match offset {
                Some(o) => u64_literal(&o.value, "OFFSET")?,
                None => 0,
            };
            let lim = match limit {
                Some(l) => Some(u64_literal(l, "LIMIT")?),
                None => None,
            };
            (off, lim)
        }
        Some(LimitClause::OffsetCommaLimit { offset, limit }) => (
            u64_literal(offset, "OFFSET")?,
            Some(u64_literal(limit, "LIMIT")?),
        ),
    };
    // 6. The shard SQL.
    let mut shard_q = q.clone();
    let SetExpr::Select(shard_sel) = shard_q.body.as_mut() else {
        return Err(not_supported("this query form"));
    };
    shard_sel.projection.extend(b.hidden.iter().cloned());
    shard_sel.having = None;
    if let Some(arg) = extra_group_key {
        match &mut shard_sel.group_by {
            GroupByExpr::Expressions(exprs, _) => exprs.push(arg),
            GroupByExpr::All(_) => return Err(not_supported("GROUP BY ALL")),
        }
    }
    shard_q.limit_clause = match limit {
        Some(l) if !grouped && !distinct && having.is_none() => Some(LimitClause::LimitOffset {
            limit: Some(Expr::value(Value::Number(
                l.saturating_add(offset).to_string(),
                false,
            ))),
            offset: None,
            limit_by: vec![],
        }),
        _ => None,
    };
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
    let merge = MergeSpec {
        visible_columns: if wildcard { ALL_COLUMNS } else { visible },
        group_by,
        pre_group_by,
        aggregates: b.aggregates,
        having,
        distinct,
        order_by,
        offset,
        limit,
    };
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
    use super::*;
    use crate::plan::testutil::*;

    fn scatter(sql: &str) -> (String, MergeSpec) {
        let r = rules(3);
        match plan_with(sql, &r) {
            Plan::Scatter { targets, merge } => {
                assert_eq!(targets.len(), 3);
                assert!(targets.iter().all(|t| t.sql == targets[0].sql));
                (targets[0].sql.clone(), merge)
            }
            other => panic!("{sql}: expected Scatter, got {other:?}"),
        }
    }

    #[test]
    fn plain_scatter_concatenates() {
        let (sql, m) = scatter("SELECT account_id, balance FROM accounts WHERE balance > 10");
        assert_eq!(
            sql,
            "SELECT account_id, balance FROM accounts WHERE balance > 10"
        );
        assert_eq!(m.visible_columns, 2);
        assert_eq!(
            m,
            MergeSpec {
                visible_columns: 2,
                ..Default::default()
            }
        );
    }

    #[test]
    fn star_without_order_is_all_columns() {
        let (sql, m) = scatter("SELECT * FROM accounts LIMIT 5");
        assert_eq!(sql, "SELECT * FROM accounts LIMIT 5");
        assert_eq!(m.visible_columns, ALL_COLUMNS);
        assert_eq!(m.limit, Some(5));
    }

    #[test]
    fn avg_hidden_columns_come_after_every_visible_column() {
        let r = rules(2);
        let Plan::Scatter { merge: m, targets } = plan_with(
            "SELECT AVG(balance), SUM(shares), COUNT(*) FROM accounts",
            &r,
        ) else {
            panic!()
        };
        assert_eq!(m.visible_columns, 3);
        for a in &m.aggregates {
            if let AggregateKind::Avg {
                sum_column,
                count_column,
            } = a.kind
            {
                assert!(sum_column >= 3 && count_column >= 3, "{m:?}");
            }
        }
        assert!(
            targets[0].sql.contains("SUM(balance)"),
            "{}",
            targets[0].sql
        );
    }

    #[test]
    fn order_by_limit_offset_pushes_offset_plus_limit() {
        let (sql, m) = scatter(
            "SELECT account_id, balance FROM accounts ORDER BY balance DESC, 1 LIMIT 10 OFFSET 20",
        );
        assert_eq!(
            sql,
            "SELECT account_id, balance FROM accounts ORDER BY balance DESC, 1 LIMIT 30"
        );
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
        assert_eq!((m.offset, m.limit), (20, Some(10)));
        let (sql, m) = scatter("SELECT a FROM accounts ORDER BY a LIMIT 20, 10");
        assert!(sql.ends_with("LIMIT 30"), "{sql}");
        assert_eq!((m.offset, m.limit), (20, Some(10)));
    }

    #[test]
    fn order_by_alias_and_hidden_expression() {
        let (sql, m) =
            scatter("SELECT account_id AS id FROM accounts ORDER BY id, created_at DESC");
        assert_eq!(
            sql,
            "SELECT account_id AS id, created_at FROM accounts ORDER BY id, created_at DESC"
        );
        assert_eq!(m.visible_columns, 1);
        assert_eq!(
            m.order_by,
            vec![
                SortKey {
                    column: 0,
                    descending: false
                },
                SortKey {
                    column: 1,
                    descending: true
                }
            ]
        );
    }

    #[test]
    fn count_sum_min_max() {
        let (sql, m) =
            scatter("SELECT COUNT(*), SUM(balance), MIN(balance), MAX(balance) FROM accounts");
        assert_eq!(
            sql,
            "SELECT COUNT(*), SUM(balance), MIN(balance), MAX(balance) FROM accounts"
        );
        let kinds: Vec<_> = m
            .aggregates
            .iter()
            .map(|a| (a.column, a.kind.clone()))
            .collect();
        assert_eq!(
            kinds,
            vec![
                (0, AggregateKind::Count),
                (1, AggregateKind::Sum),
                (2, AggregateKind::Min),
                (3, AggregateKind::Max)
            ]
        );
        assert!(m.group_by.is_empty());
    }

    #[test]
    fn avg_gets_hidden_sum_and_count() {
        let (sql, m) = scatter("SELECT fund, AVG(balance) AS a FROM accounts GROUP BY fund");
        assert_eq!(
            sql,
            "SELECT fund, AVG(balance) AS a, SUM(balance), COUNT(balance) FROM accounts GROUP BY fund"
        );
        assert_eq!(m.visible_columns, 2);
        assert_eq!(m.group_by, vec![0]);
        // Implicit GROUP BY order, as MariaDB returns it.
        assert_eq!(
            m.order_by,
            vec![SortKey {
                column: 0,
                descending: false
            }]
        );
        assert_eq!(
            m.aggregates,
            vec![AggregateSpec {
                column: 1,
                kind: AggregateKind::Avg {
                    sum_column: 2,
                    count_column: 3
                }
            }]
        );
    }

    #[test]
    fn group_by_limit_is_not_pushed_down() {
        let (sql, m) = scatter(
            "SELECT fund, COUNT(*) FROM accounts GROUP BY fund ORDER BY COUNT(*) DESC LIMIT 3",
        );
        assert_eq!(
            sql,
            "SELECT fund, COUNT(*) FROM accounts GROUP BY fund ORDER BY COUNT(*) DESC"
        );
        assert_eq!(
            m.order_by,
            vec![SortKey {
                column: 1,
                descending: true
            }]
        );
        assert_eq!(m.limit, Some(3));
    }

    #[test]
    fn unselected_group_key_is_hidden() {
        let (sql, m) = scatter("SELECT COUNT(*) FROM accounts GROUP BY fund");
        assert_eq!(sql, "SELECT COUNT(*), fund FROM accounts GROUP BY fund");
        assert_eq!(m.group_by, vec![1]);
        assert_eq!(m.visible_columns, 1);
    }

    #[test]
    fn having_becomes_proxy_filter() {
        let (sql, m) = scatter(
            "SELECT fund, COUNT(*) AS n FROM accounts GROUP BY fund HAVING n > 5 AND SUM(balance) <= 100",
        );
        assert_eq!(
            sql,
            "SELECT fund, COUNT(*) AS n, SUM(balance) FROM accounts GROUP BY fund"
        );
        assert_eq!(
            m.having,
            Some(Filter::And(
                Box::new(Filter::Compare {
                    column: 1,
                    op: CompareOp::Gt,
                    value: Literal::Number("5".into())
                }),
                Box::new(Filter::Compare {
                    column: 2,
                    op: CompareOp::LtEq,
                    value: Literal::Number("100".into())
                })
            ))
        );
        assert_eq!(m.aggregates.len(), 2);
        let (_, m) = scatter(
            "SELECT fund, COUNT(*) FROM accounts GROUP BY fund HAVING 3 < COUNT(*) OR fund IS NULL",
        );
        assert_eq!(
            m.having,
            Some(Filter::Or(
                Box::new(Filter::Compare {
                    column: 1,
                    op: CompareOp::Gt,
                    value: Literal::Number("3".into())
                }),
                Box::new(Filter::IsNull {
                    column: 0,
                    negated: false
                })
            ))
        );
    }

    #[test]
    fn aggregate_only_in_having_or_order_disables_limit_pushdown() {
        let (sql, m) = scatter("SELECT fund FROM accounts HAVING COUNT(*) > 1 LIMIT 2");
        assert_eq!(sql, "SELECT fund, COUNT(*) FROM accounts");
        assert_eq!(m.aggregates.len(), 1);
        assert_eq!(m.limit, Some(2));
        let (sql, _) = scatter("SELECT fund FROM accounts ORDER BY MAX(balance) LIMIT 2");
        assert!(!sql.contains("LIMIT"), "{sql}");
    }

    #[test]
    fn having_without_grouping_disables_limit_pushdown() {
        // HAVING filters after the shards answered: a shard's first rows may all be filtered.
        let (sql, m) = scatter("SELECT a FROM accounts HAVING a > 1 ORDER BY a LIMIT 2");
        assert_eq!(sql, "SELECT a FROM accounts ORDER BY a");
        assert!(m.having.is_some());
        assert_eq!(m.limit, Some(2));
    }

    #[test]
    fn distinct_and_count_distinct_key() {
        let (sql, m) = scatter("SELECT DISTINCT fund FROM accounts LIMIT 4");
        assert_eq!(sql, "SELECT DISTINCT fund FROM accounts");
        assert!(m.distinct);
        assert_eq!(m.limit, Some(4));
        let (_, m) = scatter("SELECT COUNT(DISTINCT account_id) FROM transactions");
        assert_eq!(m.aggregates[0].kind, AggregateKind::CountDistinctDisjoint);
        assert!(m.pre_group_by.is_empty());
    }

    #[test]
    fn count_distinct_of_another_column_groups_by_it_on_the_shards() {
        let (sql, m) = scatter("SELECT COUNT(DISTINCT fund) FROM accounts");
        assert_eq!(
            sql,
            "SELECT COUNT(DISTINCT fund), fund FROM accounts GROUP BY fund"
        );
        assert_eq!(m.aggregates[0].kind, AggregateKind::CountDistinct);
        assert!(m.group_by.is_empty());
        assert_eq!(m.pre_group_by, vec![1]);
        assert_eq!(m.visible_columns, 1);
        // With group keys, other aggregates, HAVING on it and a limit.
        let (sql, m) = scatter(
            "SELECT region, COUNT(DISTINCT fund) AS n, SUM(balance) FROM accounts \
             GROUP BY region HAVING COUNT(DISTINCT fund) > 1 ORDER BY n DESC LIMIT 3",
        );
        assert_eq!(
            sql,
            "SELECT region, COUNT(DISTINCT fund) AS n, SUM(balance), fund FROM accounts \
             GROUP BY region, fund ORDER BY n DESC"
        );
        assert_eq!(m.group_by, vec![0]);
        assert_eq!(m.pre_group_by, vec![0, 3]);
        assert_eq!(m.limit, Some(3));
        assert!(m.having.is_some());
        // The same expression twice is one grouping.
        let (_, m) =
            scatter("SELECT COUNT(DISTINCT fund) AS a, COUNT(DISTINCT fund) AS b FROM accounts");
        assert_eq!(m.pre_group_by.len(), 1);
    }

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
            (
                "SELECT SUM(a)/COUNT(b) FROM accounts",
                "inside an expression",
            ),
            ("SELECT GROUP_CONCAT(a) FROM accounts", "GROUP_CONCAT"),
            (
                "SELECT a, ROW_NUMBER() OVER (ORDER BY a) FROM accounts",
                "window",
            ),
            ("SELECT * FROM accounts ORDER BY a", "list the columns"),
            (
                "SELECT * FROM accounts HAVING COUNT(*) > 1",
                "list the columns",
            ),
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
            ("SELECT SUM(DISTINCT a) FROM accounts", "DISTINCT"),
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
