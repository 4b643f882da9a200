//! Aggregates, GROUP BY, HAVING and DISTINCT over the rows of a join the proxy executes.
//!
//! # The idea
//! The merge engine ([`crate::plan::merge`]) already turns *partial* groups into whole ones: it
//! adds up partial COUNTs and SUMs, takes the MIN of partial MINs, divides a hidden SUM by a
//! hidden COUNT for AVG, then applies HAVING, DISTINCT, ORDER BY and LIMIT. A joined row is a
//! group of one row, whose partial aggregates the proxy knows without asking anyone:
//!
//! | aggregate  | its value over one row        |
//! |------------|-------------------------------|
//! | `COUNT(*)` | `1`                           |
//! | `COUNT(x)` | `(x) IS NOT NULL` (1 or 0)    |
//! | `SUM(x)`, `MIN(x)`, `MAX(x)` | `x`         |
//! | `AVG(x)`   | not needed: the merge recomputes it from its hidden SUM and COUNT |
//!
//! So a grouped join is planned in three steps:
//! 1. the statement is planned as a scatter read ([`crate::plan::scatter`]), as if each shard
//!    could answer the join: that gives the *shard SQL* (partial aggregates, hidden columns for
//!    AVG, ORDER BY keys and HAVING) and its [`MergeSpec`];
//! 2. the shard SQL's select list is rewritten to the one-row values above (an item the merge
//!    computes itself, such as `SUM(x)/COUNT(*)`, becomes `NULL`), without GROUP BY, ORDER BY,
//!    LIMIT or DISTINCT, and that statement is planned as a plain join ([`super::build`]);
//! 3. at execution (`exec/join_group.rs`) the joined rows are the merge's input.
//!
//! # Column types
//! The joined rows carry the types of the one-row values (`1` is a BIGINT(1); a `DECIMAL(20,2)`
//! column is not the `DECIMAL(42,2)` its SUM is). The merge needs the partial aggregates' own
//! column definitions, and the client must get MariaDB's: every shard holds both tables, so
//! the shard SQL itself, with `WHERE FALSE`, is sent to one shard, which types the statement as
//! it would over all rows and returns none. Its definitions replace the joined rows' ones;
//! the executor checks first that each value fits its new type (a SUM or AVG adds up exact
//! numbers only, a MIN/MAX value keeps its column's type), and refuses otherwise.
//!
//! # Refused
//! DISTINCT aggregates (`COUNT(DISTINCT x)`, `SUM(DISTINCT x)`), GROUP_CONCAT, the statistical
//! and bit aggregates, and aggregates over an expression that reads both tables (each one-row
//! value is computed by the side it reads, as every item of a join is).

use sqlparser::ast::{
    DuplicateTreatment, Expr, FunctionArg, FunctionArgExpr, FunctionArguments, SelectItem, SetExpr,
    Statement,
};
use sqlparser::dialect::MySqlDialect;
use sqlparser::parser::Parser;

use super::JoinPlan;
use crate::plan::reject::not_supported;
use crate::plan::route::From;
use crate::plan::scatter::{self, AGGREGATES};
use crate::plan::spec::MergeSpec;
use crate::plan::{Cx, Plan};

/// How the joined rows of a grouped join become its answer (see the module doc).
#[derive(Debug, Clone, PartialEq)]
pub struct Grouped {
    /// The merge of the statement planned as a scatter read: its column numbers are those of
    /// the joined rows, which follow the shard SQL's select list one for one.
    pub merge: MergeSpec,
    /// The shard SQL with `WHERE FALSE`: sent to one shard for the answer's column definitions.
    pub types_sql: String,
    /// The shard that answers `types_sql`.
    pub types_shard: String,
}

fn refuse(why: impl std::fmt::Display) -> Plan {
    not_supported(format!(
        "this grouped join of sharded tables that does not match rows by their shard keys \
         cannot be executed by the proxy: {why}"
    ))
}

/// Whether the statement groups its joined rows: GROUP BY, HAVING, DISTINCT or an aggregate.
pub(super) fn wanted(sel: &sqlparser::ast::Select, cx: &Cx) -> bool {
    use sqlparser::ast::{Distinct, GroupByExpr};
    matches!(sel.distinct, Some(Distinct::Distinct))
        || sel.having.is_some()
        || !matches!(&sel.group_by, GroupByExpr::Expressions(g, _) if g.is_empty())
        || AGGREGATES.iter().any(|a| cx.scan.has_call(a))
}

/// Plans a grouped join (see the module doc), or refuses with the reason.
pub(super) fn plan_grouped(
    q: &sqlparser::ast::Query,
    sel: &sqlparser::ast::Select,
    from: &From<'_>,
    cx: &Cx,
) -> Plan {
    match build(q, sel, from, cx) {
        Ok(p) | Err(p) => p,
    }
}

fn build(
    q: &sqlparser::ast::Query,
    sel: &sqlparser::ast::Select,
    from: &From<'_>,
    cx: &Cx,
) -> Result<Plan, Plan> {
    // 1. The statement as a scatter read over the join.
    let shards = cx.rules().shards.clone();
    let (targets, merge) = match scatter::plan_scatter(q, sel, &from.relations, &shards, cx) {
        Plan::Scatter { targets, merge } => (targets, merge),
        Plan::Reject(r) => return Err(Plan::Reject(r)),
        other => return Err(refuse(format!("unexpected plan {other:?}"))),
    };
    let shard_sql = &targets[0].sql;
    let parsed = Parser::parse_sql(&MySqlDialect {}, shard_sql)
        .map_err(|e| refuse(format!("its shard query could not be read again ({e})")))?;
    let [Statement::Query(sq)] = parsed.as_slice() else {
        return Err(refuse("its shard query is not one SELECT"));
    };
    let SetExpr::Select(ssel) = sq.body.as_ref() else {
        return Err(refuse("its shard query is not one SELECT"));
    };
    // 2. One row's values of its select list.
    let computed: Vec<usize> = merge.computed.iter().map(|c| c.column).collect();
    let mut items = Vec::with_capacity(ssel.projection.len());
    for (n, item) in ssel.projection.iter().enumerate() {
        let expr = match item {
            SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => e,
            SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..) => {
                items.push(item.to_string());
                continue;
            }
            _ => return Err(refuse("this select item form")),
        };
        // A column the merge computes from others: its own value is never read. (The spec's
        // planned numbering counts a `*` as one column, as this enumeration of items does.)
        if computed.contains(&n) {
            items.push("NULL".into());
            continue;
        }
        items.push(one_row_value(expr).map_err(refuse)?);
    }
    let mut per_row = format!(
        "SELECT {} FROM {}",
        items.join(", "),
        ssel.from
            .iter()
            .map(|t| t.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    if let Some(w) = &ssel.selection {
        per_row.push_str(&format!(" WHERE {w}"));
    }
    let join = match crate::plan::plan_full(&per_row, cx.ctx).0 {
        Plan::Join(j) => j,
        Plan::Reject(r) => return Err(Plan::Reject(r)),
        other => {
            return Err(refuse(format!(
                "its rows were planned as {other:?}, not as a join"
            )))
        }
    };
    // The column definitions: the shard SQL over no rows.
    let mut typed = sq.clone();
    let SetExpr::Select(tsel) = typed.body.as_mut() else {
        unreachable!("checked above")
    };
    tsel.selection = Some(
        Parser::new(&MySqlDialect {})
            .try_with_sql("FALSE")
            .and_then(|mut p| p.parse_expr())
            .map_err(|e| refuse(e.to_string()))?,
    );
    let types_sql = typed.to_string();
    Ok(Plan::Join(Box::new(JoinPlan {
        grouped: Some(Box::new(Grouped {
            merge,
            types_sql,
            types_shard: shards[0].clone(),
        })),
        ..*join
    })))
}

/// The SQL of `e`'s value over one joined row (see the module doc's table).
fn one_row_value(e: &Expr) -> Result<String, String> {
    let e = match e {
        Expr::Nested(x) => x.as_ref(),
        e => e,
    };
    let Expr::Function(f) = e else {
        if AGGREGATES
            .iter()
            .any(|a| crate::plan::scan::scan(&e.to_string()).has_call(a))
        {
            return Err(format!("the aggregate expression `{e}`"));
        }
        return Ok(e.to_string());
    };
    let name = f.name.to_string().to_lowercase();
    if !AGGREGATES.contains(&name.as_str()) {
        return Ok(e.to_string());
    }
    let FunctionArguments::List(list) = &f.args else {
        return Err(format!("{name} without arguments"));
    };
    if !list.clauses.is_empty() || f.filter.is_some() || f.over.is_some() {
        return Err(format!("this form of {name}"));
    }
    let distinct = matches!(list.duplicate_treatment, Some(DuplicateTreatment::Distinct));
    let arg = match list.args.as_slice() {
        [FunctionArg::Unnamed(FunctionArgExpr::Expr(x))] => Some(x),
        [FunctionArg::Unnamed(FunctionArgExpr::Wildcard)] => None,
        _ => return Err(format!("{name} of several expressions")),
    };
    match (name.as_str(), arg) {
        (_, _) if distinct && !matches!(name.as_str(), "min" | "max") => Err(format!(
            "{}(DISTINCT …) (a value may occur in several joined rows)",
            name.to_uppercase()
        )),
        ("count", None) => Ok("1".into()),
        ("count", Some(x)) => Ok(format!("({x}) IS NOT NULL")),
        ("sum" | "min" | "max", Some(x)) => Ok(format!("({x})")),
        // The merge computes AVG from its hidden SUM and COUNT.
        ("avg", Some(_)) => Ok("NULL".into()),
        _ => Err(format!(
            "{} (only COUNT, SUM, AVG, MIN and MAX are recombined)",
            name.to_uppercase()
        )),
    }
}
