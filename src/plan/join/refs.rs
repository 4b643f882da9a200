//! Which side of a two-table join an expression reads: the walk that decides where each
//! condition, select item and ORDER BY key of a proxy-executed join is computed.
//!
//! A column is attributed to a side by its qualifier (`o.amount`, `db.orders.amount`). An
//! unqualified column could belong to either table (the proxy does not know the schemas), so it
//! is refused with a message that asks for the qualifier; so is every expression form the walk
//! does not know (it must never attribute a column to the wrong side, or miss one).

use sqlparser::ast::{Expr, FunctionArg, FunctionArgExpr, FunctionArguments, InTarget};

use crate::plan::route::Relation;
// Aggregates are computed over groups of joined rows, not evaluated per side.
use crate::plan::scatter::AGGREGATES;

/// The sides an expression reads, as a bit set: bit 0 the first table of the FROM list, bit 1
/// the second.
pub(super) type Sides = u8;

/// Why a walk stopped: the message of the refusal.
pub(super) type Refusal = String;

/// The side of a qualified column reference `parts`.
fn side_of(parts: &[sqlparser::ast::Ident], rels: &[Relation; 2]) -> Result<Sides, Refusal> {
    let q = parts[parts.len() - 2].value.to_lowercase();
    let db = (parts.len() >= 3).then(|| parts[parts.len() - 3].value.to_lowercase());
    let mut found = 0;
    for (i, r) in rels.iter().enumerate() {
        if r.qualifier == q && (db.is_none() || r.db.is_none() || r.db == db) {
            found |= 1 << i;
        }
    }
    match found {
        0 => Err(format!(
            "column {} names no table of the join",
            parts
                .iter()
                .map(|p| p.value.as_str())
                .collect::<Vec<_>>()
                .join(".")
        )),
        1 | 2 => Ok(found),
        _ => Err(format!("qualifier {q} names both tables of the join")),
    }
}

/// The sides `e` reads (0 for a constant).
pub(super) fn sides(e: &Expr, rels: &[Relation; 2]) -> Result<Sides, Refusal> {
    let all = |list: &[&Expr]| -> Result<Sides, Refusal> {
        list.iter().try_fold(0, |acc, x| Ok(acc | sides(x, rels)?))
    };
    match e {
        Expr::Identifier(id) => Err(format!(
            "column `{}` must be qualified with its table (`t.{}`) in a join the proxy executes",
            id.value, id.value
        )),
        Expr::CompoundIdentifier(parts) if parts.len() >= 2 => side_of(parts, rels),
        Expr::Value(_) | Expr::TypedString(_) => Ok(0),
        Expr::Nested(x)
        | Expr::UnaryOp { expr: x, .. }
        | Expr::IsNull(x)
        | Expr::IsNotNull(x)
        | Expr::IsTrue(x)
        | Expr::IsNotTrue(x)
        | Expr::IsFalse(x)
        | Expr::IsNotFalse(x)
        | Expr::IsUnknown(x)
        | Expr::IsNotUnknown(x)
        | Expr::Cast { expr: x, .. }
        | Expr::Collate { expr: x, .. } => sides(x, rels),
        Expr::BinaryOp { left, right, .. }
        | Expr::IsDistinctFrom(left, right)
        | Expr::IsNotDistinctFrom(left, right) => all(&[left, right]),
        Expr::Between {
            expr, low, high, ..
        } => all(&[expr, low, high]),
        Expr::Like {
            expr,
            pattern,
            escape_char,
            any: false,
            ..
        } => {
            let mut s = all(&[expr, pattern])?;
            if let Some(c) = escape_char {
                s |= sides(c, rels)?;
            }
            Ok(s)
        }
        Expr::In {
            expr,
            target: InTarget::List(list),
            ..
        } => {
            let mut s = sides(expr, rels)?;
            for x in list {
                s |= sides(x, rels)?;
            }
            Ok(s)
        }
        Expr::Case {
            operand,
            conditions,
            else_result,
            ..
        } => {
            let mut s = 0;
            if let Some(o) = operand {
                s |= sides(o, rels)?;
            }
            for w in conditions {
                s |= all(&[&w.condition, &w.result])?;
            }
            if let Some(x) = else_result {
                s |= sides(x, rels)?;
            }
            Ok(s)
        }
        Expr::Function(f) => {
            let name = f.name.to_string().to_lowercase();
            if AGGREGATES.contains(&name.as_str()) {
                return Err(format!(
                    "{name}() in this place of a join the proxy executes (aggregates are \
                     computed over the groups of joined rows, in the select list and HAVING)"
                ));
            }
            if f.filter.is_some() || f.over.is_some() || !f.within_group.is_empty() {
                return Err("this function form in a join the proxy executes".into());
            }
            if matches!(
                name.as_str(),
                "rand" | "uuid" | "uuid_short" | "sleep" | "last_insert_id" | "row_count"
            ) {
                return Err(format!(
                    "{name}() in a join the proxy executes (it would run on another row set)"
                ));
            }
            match &f.args {
                FunctionArguments::None => Ok(0),
                FunctionArguments::List(l) if l.clauses.is_empty() => {
                    let mut s = 0;
                    for a in &l.args {
                        match a {
                            FunctionArg::Unnamed(FunctionArgExpr::Expr(x)) => s |= sides(x, rels)?,
                            _ => return Err("this function argument form in a join".into()),
                        }
                    }
                    Ok(s)
                }
                _ => Err("this function argument form in a join".into()),
            }
        }
        _ => Err(format!(
            "the expression `{e}` in a join the proxy executes (not analysed)"
        )),
    }
}

/// The side and column name when `e` is a plain qualified column.
pub(super) fn plain_column(e: &Expr, rels: &[Relation; 2]) -> Option<(usize, String)> {
    match e {
        Expr::Nested(x) => plain_column(x, rels),
        Expr::CompoundIdentifier(parts) if parts.len() >= 2 => {
            let s = side_of(parts, rels).ok()?;
            Some((s as usize - 1, parts[parts.len() - 1].value.to_lowercase()))
        }
        _ => None,
    }
}
