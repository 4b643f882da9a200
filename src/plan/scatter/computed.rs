//! Select items that are expressions over aggregates (`SUM(a)/COUNT(*)`, `MAX(x)-MIN(x)`,
//! `ROUND(AVG(x),2)`, `CONCAT(city, ':', COUNT(*))`): the shards cannot compute them (a
//! shard's ratio of partial sums is not the ratio of the totals), so the proxy does, after the
//! merge, from the parts.
//!
//! Each aggregate inside the expression becomes a merged column of its own (the selected one
//! with the same text, or a hidden one, recombined like any other); AVG becomes its hidden SUM
//! and COUNT; a plain column (a group key) is read from its column. The item itself stays in
//! the shard SQL: every shard reports its column definition, which is the type one server gives
//! (types follow from the argument types, not from the values), and the merge replaces the
//! shard's partial value with the one it computes ([`Calc`], evaluated by `merge/eval.rs`).
//!
//! Understood: `+ - * /`, unary minus, numbers, strings, NULL, ROUND(x[, n]) with a constant
//! `n ≥ 0`, CONCAT. Any other function or operator is refused with its name: imitating a
//! function the proxy does not know would risk a wrong answer.

use sqlparser::ast::{
    BinaryOperator, Expr, FunctionArg, FunctionArgExpr, FunctionArguments, UnaryOperator, Value,
};

use super::aggregates::{contains_aggregate, rename};
use super::columns::Builder;
use super::R;
use crate::plan::reject::not_supported;
use crate::plan::spec::{ArithOp, Calc, Computed, Literal};

impl Builder<'_> {
    /// Registers select item `e` (at column `column`) as computed by the proxy.
    pub fn register_computed(&mut self, e: &Expr, column: usize) -> R<()> {
        let expr = self.calc(e)?;
        self.computed.push(Computed { column, expr });
        Ok(())
    }

    /// The merged column holding `e` (an aggregate or a plain column), hidden if not selected.
    /// Unlike ORDER BY, a name inside an expression is a table column, never a select alias.
    fn part(&mut self, e: &Expr) -> R<usize> {
        if let Some(i) = self.by_text(e) {
            return Ok(i);
        }
        if let Some(kind) = self.aggregate(e)? {
            let col = self.push_hidden(e.clone(), true);
            self.register_aggregate(e, kind, col);
            return Ok(col);
        }
        Ok(self.push_hidden(e.clone(), false))
    }

    fn calc(&mut self, e: &Expr) -> R<Calc> {
        if !contains_aggregate(e) {
            return Ok(match e {
                Expr::Value(v) => Calc::Literal(match &v.value {
                    Value::Number(n, _) => Literal::Number(n.clone()),
                    Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => {
                        Literal::String(s.clone())
                    }
                    Value::Null => Literal::Null,
                    other => {
                        return Err(not_supported(format!(
                            "the literal {other} in an expression over aggregates across shards"
                        )))
                    }
                }),
                Expr::Nested(x) => self.calc(x)?,
                Expr::Identifier(_) | Expr::CompoundIdentifier(_) => Calc::Column(self.part(e)?),
                Expr::UnaryOp { .. } | Expr::BinaryOp { .. } | Expr::Function(_) => {
                    self.operation(e)?
                }
                other => {
                    return Err(not_supported(format!(
                        "{other} in an expression over aggregates is not evaluated by the proxy \
                         across shards"
                    )))
                }
            });
        }
        if let Some(kind) = self.aggregate(e)? {
            if kind.avg_helpers().is_some() {
                let Expr::Function(f) = e else {
                    return Err(not_supported("AVG"));
                };
                let sum = self.part(&Expr::Function(rename(f, "SUM")))?;
                let count = self.part(&Expr::Function(rename(f, "COUNT")))?;
                return Ok(Calc::Avg { sum, count });
            }
            return Ok(Calc::Column(self.part(e)?));
        }
        match e {
            Expr::Nested(x) => self.calc(x),
            _ => self.operation(e),
        }
    }

    /// Operators and the functions the evaluator knows.
    fn operation(&mut self, e: &Expr) -> R<Calc> {
        match e {
            Expr::UnaryOp {
                op: UnaryOperator::Minus,
                expr,
            } => Ok(Calc::Neg(Box::new(self.calc(expr)?))),
            Expr::UnaryOp {
                op: UnaryOperator::Plus,
                expr,
            } => self.calc(expr),
            Expr::BinaryOp { left, op, right } => {
                let op = match op {
                    BinaryOperator::Plus => ArithOp::Add,
                    BinaryOperator::Minus => ArithOp::Sub,
                    BinaryOperator::Multiply => ArithOp::Mul,
                    BinaryOperator::Divide => ArithOp::Div,
                    other => {
                        return Err(not_supported(format!(
                            "the operator {other} over aggregates is not evaluated by the proxy \
                             across shards"
                        )))
                    }
                };
                Ok(Calc::Arith {
                    op,
                    left: Box::new(self.calc(left)?),
                    right: Box::new(self.calc(right)?),
                })
            }
            Expr::Function(f) => {
                let name = f.name.to_string().to_uppercase();
                let args = match &f.args {
                    FunctionArguments::List(l)
                        if l.duplicate_treatment.is_none()
                            && l.clauses.is_empty()
                            && f.over.is_none()
                            && f.filter.is_none() =>
                    {
                        l.args
                            .iter()
                            .map(|a| match a {
                                FunctionArg::Unnamed(FunctionArgExpr::Expr(x)) => Ok(x),
                                _ => Err(not_supported(format!("{name}() with this argument"))),
                            })
                            .collect::<R<Vec<&Expr>>>()?
                    }
                    _ => return Err(not_supported(format!("{name}() in this form"))),
                };
                match (name.as_str(), args.as_slice()) {
                    ("ROUND", [x]) => Ok(Calc::Round {
                        arg: Box::new(self.calc(x)?),
                        places: 0,
                    }),
                    ("ROUND", [x, n]) => {
                        let places = match n {
                            Expr::Value(v) => match &v.value {
                                Value::Number(n, _) => n.parse::<u32>().ok().filter(|&p| p <= 28),
                                _ => None,
                            },
                            _ => None,
                        };
                        let Some(places) = places else {
                            return Err(not_supported(
                                "ROUND over aggregates across shards needs a constant number of \
                                 places from 0 to 28",
                            ));
                        };
                        Ok(Calc::Round {
                            arg: Box::new(self.calc(x)?),
                            places,
                        })
                    }
                    ("CONCAT", args) if !args.is_empty() => Ok(Calc::Concat(
                        args.iter().map(|a| self.calc(a)).collect::<R<_>>()?,
                    )),
                    _ => Err(not_supported(format!(
                        "{name}() over aggregates is not evaluated by the proxy across shards \
                         (it knows + - * /, ROUND and CONCAT); select the aggregates and apply \
                         {name}() in the application"
                    ))),
                }
            }
            other => Err(not_supported(format!(
                "{other}: this expression over aggregates is not evaluated by the proxy across \
                 shards"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::plan::spec::*;
    use crate::plan::testutil::*;

    #[test]
    fn ratio_of_aggregates_reads_hidden_parts() {
        let (sql, m) =
            scatter("SELECT fund, SUM(balance)/COUNT(*) AS r FROM accounts GROUP BY fund");
        assert_eq!(
            sql,
            "SELECT fund, SUM(balance) / COUNT(*) AS r, SUM(balance), COUNT(*) FROM accounts GROUP BY fund"
        );
        assert_eq!(m.visible_columns, 2);
        assert_eq!(
            m.computed,
            vec![Computed {
                column: 1,
                expr: Calc::Arith {
                    op: ArithOp::Div,
                    left: Box::new(Calc::Column(2)),
                    right: Box::new(Calc::Column(3)),
                }
            }]
        );
        assert_eq!(m.aggregates.len(), 2);
    }

    #[test]
    fn selected_aggregates_are_reused_and_avg_is_sum_over_count() {
        let (sql, m) = scatter(
            "SELECT MAX(x) - MIN(x), MAX(x), ROUND(AVG(x), 2), CONCAT(city, ':', COUNT(*)) FROM accounts GROUP BY city",
        );
        assert_eq!(
            sql,
            "SELECT MAX(x) - MIN(x), MAX(x), ROUND(AVG(x), 2), CONCAT(city, ':', COUNT(*)), MIN(x), SUM(x), COUNT(x), city, COUNT(*) FROM accounts GROUP BY city"
        );
        let shown: Vec<String> = m.computed.iter().map(|c| c.expr.to_string()).collect();
        assert_eq!(
            shown,
            [
                "(col 1 - col 4)",
                "round(avg(col 5 / col 6), 2)",
                "concat(col 7, ':', col 8)"
            ]
        );
        assert_eq!(m.group_by, vec![7]);
    }

    #[test]
    fn unknown_functions_are_refused_by_name() {
        let r = rules(3);
        for (sql, why) in [
            ("SELECT SQRT(SUM(a)) FROM accounts", "SQRT()"),
            ("SELECT SUM(a) DIV COUNT(*) FROM accounts", "DIV"),
            ("SELECT ROUND(SUM(a), b) FROM accounts", "constant number"),
            ("SELECT ROUND(SUM(a), -1) FROM accounts", "constant number"),
        ] {
            expect_reject(&plan_with(sql, &r), why);
        }
    }
}
