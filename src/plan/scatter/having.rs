//! HAVING across shards: evaluated by the proxy, on merged groups.
//!
//! HAVING is true of a whole group, not of the partial group one shard sees (`HAVING COUNT(*) >
//! 5` may fail on every shard and hold for the sum). So it is removed from the shard SQL and
//! becomes a [`Filter`] the merge applies to the merged groups. What it compares must therefore
//! be a column of the shard rows: a selected item, or an aggregate or expression added as a
//! hidden column ([`Builder::column_for`]). Only comparisons of such columns with constants
//! (`=`, `<>`, `<`, `<=`, `>`, `>=`, BETWEEN, IS [NOT] NULL), combined by AND/OR/NOT, are
//! expressible; anything else is refused.

use sqlparser::ast::{BinaryOperator, Expr, UnaryOperator, Value};

use super::columns::Builder;
use super::R;
use crate::plan::reject::not_supported;
use crate::plan::spec::{CompareOp, Filter, Literal};

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

/// Step 3: the HAVING condition `e` as a filter over the columns of `b` (adding hidden ones).
pub(super) fn having_filter(e: &Expr, b: &mut Builder) -> R<Filter> {
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

#[cfg(test)]
mod tests {
    use crate::plan::spec::*;
    use crate::plan::testutil::*;

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
            m.having.as_deref(),
            Some(&Filter::And(
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
            m.having.as_deref(),
            Some(&Filter::Or(
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
}
