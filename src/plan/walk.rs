//! The walk of a statement's queries: every table named in a FROM clause, with the scope it
//! is in (the main query, or the body of a CTE: [`super::cte`]), and the number of SELECTs
//! seen, which callers compare with the lexer's count (a SELECT the walk missed could hide a
//! table). Also how [`super::scatter`] checks that a derived table reads reference tables
//! only.

use sqlparser::ast::{
    Expr, FunctionArg, FunctionArgExpr, FunctionArguments, InTarget, JoinConstraint, JoinOperator,
    OrderByKind, Query, Select, SelectItem, SetExpr, TableFactor, TableWithJoins,
};

/// A table factor found by the walk, and where.
pub(crate) struct Found<'a> {
    /// `None` in the main query, `Some(i)` in the body of CTE `i`.
    pub scope: Option<usize>,
    /// The table factor.
    pub factor: &'a TableFactor,
}

/// The walk of a statement's queries: every table named in a FROM clause, and the number of
/// SELECTs seen (checked against the lexer's count).
#[derive(Default)]
pub(crate) struct Walk<'a> {
    /// The scope being walked.
    pub scope: Option<usize>,
    /// The tables found, in walk order.
    pub tables: Vec<Found<'a>>,
    /// SELECTs seen.
    pub selects: usize,
    /// Something the walk does not follow (a nested WITH, a table function, …).
    pub unknown: bool,
}

impl<'a> Walk<'a> {
    pub(crate) fn query(&mut self, q: &'a Query) {
        if q.with.is_some() {
            self.unknown = true;
        }
        self.set_expr(&q.body);
        self.order_by(q);
    }

    pub(super) fn order_by(&mut self, q: &'a Query) {
        if let Some(ob) = &q.order_by {
            if let OrderByKind::Expressions(list) = &ob.kind {
                list.iter().for_each(|o| self.expr(&o.expr));
            }
        }
    }

    pub(super) fn set_expr(&mut self, s: &'a SetExpr) {
        match s {
            SetExpr::Select(sel) => self.select(sel),
            SetExpr::Query(q) => self.query(q),
            SetExpr::SetOperation { left, right, .. } => {
                self.set_expr(left);
                self.set_expr(right);
            }
            _ => self.unknown = true,
        }
    }

    fn select(&mut self, sel: &'a Select) {
        self.selects += 1;
        for item in &sel.projection {
            if let SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } = item {
                self.expr(e);
            }
        }
        sel.from.iter().for_each(|t| self.from(t));
        sel.selection.iter().for_each(|e| self.expr(e));
        if let sqlparser::ast::GroupByExpr::Expressions(g, _) = &sel.group_by {
            g.iter().for_each(|e| self.expr(e));
        }
        sel.having.iter().for_each(|e| self.expr(e));
    }

    fn from(&mut self, t: &'a TableWithJoins) {
        self.factor(&t.relation);
        for j in &t.joins {
            self.factor(&j.relation);
            use JoinOperator::*;
            if let Join(c) | Inner(c) | StraightJoin(c) | CrossJoin(c) | Left(c) | LeftOuter(c)
            | Right(c) | RightOuter(c) | FullOuter(c) = &j.join_operator
            {
                if let JoinConstraint::On(e) = c {
                    self.expr(e);
                }
            }
        }
    }

    fn factor(&mut self, f: &'a TableFactor) {
        match f {
            TableFactor::Table { .. } => self.tables.push(Found {
                scope: self.scope,
                factor: f,
            }),
            TableFactor::Derived { subquery, .. } => self.query(subquery),
            TableFactor::NestedJoin {
                table_with_joins, ..
            } => self.from(table_with_joins),
            _ => self.unknown = true,
        }
    }

    /// The queries inside an expression; a kind of expression not followed here hides its
    /// subqueries from the walk, which the SELECT count then catches.
    fn expr(&mut self, e: &'a Expr) {
        match e {
            Expr::Subquery(q) | Expr::Exists { subquery: q, .. } => self.query(q),
            Expr::In { expr, target, .. } => {
                self.expr(expr);
                match target {
                    InTarget::Subquery(q) => self.query(q),
                    InTarget::List(list) => list.iter().for_each(|x| self.expr(x)),
                    _ => self.unknown = true,
                }
            }
            Expr::BinaryOp { left, right, .. }
            | Expr::AnyOp { left, right, .. }
            | Expr::AllOp { left, right, .. } => {
                self.expr(left);
                self.expr(right);
            }
            Expr::UnaryOp { expr, .. }
            | Expr::Nested(expr)
            | Expr::IsNull(expr)
            | Expr::IsNotNull(expr)
            | Expr::IsTrue(expr)
            | Expr::IsNotTrue(expr)
            | Expr::IsFalse(expr)
            | Expr::IsNotFalse(expr)
            | Expr::Cast { expr, .. } => self.expr(expr),
            Expr::Between {
                expr, low, high, ..
            } => {
                self.expr(expr);
                self.expr(low);
                self.expr(high);
            }
            Expr::Like { expr, pattern, .. } => {
                self.expr(expr);
                self.expr(pattern);
            }
            Expr::Tuple(list) => list.iter().for_each(|x| self.expr(x)),
            Expr::Case {
                operand,
                conditions,
                else_result,
                ..
            } => {
                operand.iter().for_each(|x| self.expr(x));
                for c in conditions {
                    self.expr(&c.condition);
                    self.expr(&c.result);
                }
                else_result.iter().for_each(|x| self.expr(x));
            }
            Expr::Function(f) => {
                if let FunctionArguments::List(l) = &f.args {
                    for a in &l.args {
                        if let FunctionArg::Unnamed(FunctionArgExpr::Expr(x)) = a {
                            self.expr(x);
                        }
                    }
                }
                if let FunctionArguments::Subquery(q) = &f.args {
                    self.query(q);
                }
            }
            _ => {}
        }
    }
}
