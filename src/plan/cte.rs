//! Common table expressions over sharded tables: `WITH c AS (SELECT …) SELECT … FROM c`.
//!
//! # A CTE used once is a derived table
//! A non-recursive CTE names a query; MariaDB reads `FROM c` as that query in the place of the
//! name, with `c` as its alias, exactly as it reads a derived table `FROM (SELECT …) AS c`
//! (the columns keep the names of the CTE's select list in both). So a statement whose CTEs
//! are each referenced at most once is *rewritten* into the same statement without its WITH
//! clause, every reference replaced by the CTE's text in parentheses (a CTE used by a later
//! CTE is replaced inside that one first), and the result is planned again as if the client
//! had sent it: the derived-table planning ([`super::scatter::plan_derived`]), the subqueries
//! run first ([`super::subquery`], [`super::staged`]) and the refusals then apply to it. The
//! rewritten text is what the shards receive (PREVIEW shows it).
//!
//! The rewrite splices the client's text by the AST's spans (NOTES: never re-render the
//! statement): the name of each reference (`FROM c` → `FROM (SELECT …) AS c`, or `(SELECT …)`
//! before an alias the reference already has), the CTE bodies between the `(` after `AS` and
//! the closing parenthesis the parser recorded, each parsed back and compared with the AST.
//! A table reference the walk of the statement does not reach would be left pointing at a CTE
//! that no longer exists, so the walk must see every SELECT keyword the lexer counted, or the
//! statement is refused; placeholders must keep their order (a prepared statement binds them
//! by position).
//!
//! # One shard: pushed down whole
//! When every table the statement and its CTEs read is on one shard (each CTE over sharded
//! tables, planned alone, goes to that shard by its key; the others read reference tables),
//! the client's statement goes there unchanged, WITH clause and all: one server computes it
//! as it would alone. So does a rewritten statement that the planner sends to one shard.
//!
//! # Refused (error 1235, with what to do instead)
//! - `WITH RECURSIVE` over sharded tables: each step of the recursion reads the rows found by
//!   the previous one, which may be on any shard, so no shard computes it alone and the proxy
//!   does not iterate it. Over reference (and unlisted) tables only it goes to the default
//!   shard.
//! - A CTE referenced twice or more (the copies would be computed separately, which MariaDB
//!   does not promise either way for non-deterministic bodies, and the self-join that results
//!   is not planned), a column list `WITH c(a, b) AS …`, a WITH nested in another query, a
//!   reference to the CTE itself or a later one, a name written in other letter case than
//!   declared (whether it matches depends on the server's `lower_case_table_names`).
//! - Whatever the rewritten statement's planning refuses (e.g. a CTE with aggregates or
//!   ORDER BY/LIMIT of its own, unless pushed down whole).

use std::ops::Range;

use sqlparser::ast::{
    Cte, Expr, FunctionArg, FunctionArgExpr, FunctionArguments, InTarget, JoinConstraint,
    JoinOperator, ObjectNamePart, OrderByKind, Query, Select, SelectItem, SetExpr, Statement,
    TableFactor, TableWithJoins, With,
};
use sqlparser::dialect::MySqlDialect;
use sqlparser::parser::Parser;

use super::reject::not_supported;
use super::route::{object_name, Offsets};
use super::rules::TableKind;
use super::{plan, Cx, Plan, SingleReason};
use crate::lex::{tokenize, TokenKind};

/// A step's result: the refusal is the error.
type R<T> = Result<T, Plan>;

/// Plans a statement with a WITH clause over sharded tables (see the module doc).
pub(crate) fn plan_with(q: &Query, with: &With, cx: &Cx) -> (Plan, Option<usize>) {
    match plan_inner(q, with, cx) {
        Ok(p) | Err(p) => (p, None),
    }
}

fn plan_inner(q: &Query, with: &With, cx: &Cx) -> R<Plan> {
    let ctes = &with.cte_tables;
    let mut walk = Walk::default();
    for (i, cte) in ctes.iter().enumerate() {
        walk.scope = Some(i);
        walk.query(&cte.query);
    }
    walk.scope = None;
    walk.set_expr(&q.body);
    walk.order_by(q);
    if walk.unknown || walk.selects != cx.scan.selects {
        return Err(not_supported(
            "a WITH clause over sharded tables in a statement the proxy could not follow \
             through (a query in a place it does not look); use a derived table instead",
        ));
    }
    let cte_of = |name: &str| ctes.iter().position(|c| c.alias.name.value == name);
    let mut refs: Vec<Ref> = Vec::new();
    let mut own: Vec<(Option<usize>, TableKind)> = Vec::new();
    for f in &walk.tables {
        let TableFactor::Table { name, alias, .. } = f.factor else {
            continue;
        };
        let single = match name.0.as_slice() {
            [ObjectNamePart::Identifier(id)] => Some(id),
            _ => None,
        };
        let target = single.and_then(|id| cte_of(&id.value));
        if let (Some(id), None) = (single, target) {
            if ctes
                .iter()
                .any(|c| c.alias.name.value.eq_ignore_ascii_case(&id.value))
            {
                return Err(not_supported(format!(
                    "the table name `{}` differs from a CTE's name only in letter case (whether \
                     it refers to the CTE depends on the server's lower_case_table_names); write \
                     the name as the CTE declares it",
                    id.value
                )));
            }
        }
        match (target, single) {
            (Some(j), Some(id)) => {
                if !with.recursive && f.scope.is_some_and(|i| j >= i) {
                    return Err(not_supported(format!(
                        "CTE `{}` refers to itself or to a later CTE; without RECURSIVE a CTE \
                         reads only the CTEs declared before it",
                        id.value
                    )));
                }
                refs.push(Ref {
                    scope: f.scope,
                    cte: j,
                    ident: id,
                    aliased: alias.is_some(),
                    plain: plain_table(f.factor),
                });
            }
            _ => {
                let (db, table) = object_name(name);
                own.push((
                    f.scope,
                    cx.rules().classify(db.as_deref(), &table, cx.cur_db()),
                ));
            }
        }
    }
    let sharded = |k: &TableKind| matches!(k, TableKind::Sharded { .. });
    if with.recursive {
        if own.iter().any(|(_, k)| sharded(k)) {
            return Err(not_supported(
                "WITH RECURSIVE over sharded tables is not supported: each step of the \
                 recursion reads the rows the previous step found, which may live on any \
                 shard, so no shard can compute it alone and the proxy does not iterate it; \
                 run the steps as separate queries (one level at a time, e.g. `WHERE parent IN \
                 (…)` with the ids found), or keep the hierarchy in a reference table",
            ));
        }
        // Reference (and unlisted) tables only: the default shard holds them all.
        return Ok(Plan::single(
            cx.default_shard(),
            SingleReason::NoShardedTableInFrom,
        ));
    }
    for (i, cte) in ctes.iter().enumerate() {
        if !cte.alias.columns.is_empty() || cte.from.is_some() || cte.materialized.is_some() {
            return Err(not_supported(format!(
                "CTE `{}` with a column list over sharded tables is not supported; name the \
                 columns with aliases in its select list instead",
                cte.alias.name.value
            )));
        }
        let uses = refs.iter().filter(|r| r.cte == i).count();
        if uses > 1 {
            return Err(not_supported(format!(
                "CTE `{}` is referenced {uses} times; over sharded tables a CTE is answered \
                 when it is referenced once (as a derived table); repeat its query in each \
                 place, or run it separately",
                cte.alias.name.value
            )));
        }
    }
    if let Some(r) = refs.iter().find(|r| !r.plain) {
        return Err(not_supported(format!(
            "a reference to CTE `{}` with index hints or partitions",
            r.ident.value
        )));
    }
    let text = Text::locate(cx.sql, with, &refs)?;
    // 1. Every table read is on one shard: the statement goes there unchanged.
    if let Some(shard) = one_shard(&text, ctes, &refs, &own, cx)? {
        return Ok(Plan::single(&shard, SingleReason::CtesOnOneShard));
    }
    // 2. The statement with every CTE in its place, planned again.
    let pieces = text.expand(None, &refs);
    check_placeholders(&pieces, cx)?;
    let sql = render(cx.sql, &pieces);
    match plan(&sql, cx.ctx) {
        Plan::Scatter { targets, .. }
            if targets.iter().all(|t| t.shard == targets[0].shard) && !targets.is_empty() =>
        {
            Ok(Plan::single(
                &targets[0].shard,
                SingleReason::CtesOnOneShard,
            ))
        }
        p => Ok(p),
    }
}

/// The one shard every table the statement reads is on, if there is one: each CTE over
/// sharded tables planned alone (with the CTEs it uses in place) must go to one shard; the
/// main query must read no sharded table outside its CTEs.
fn one_shard(
    text: &Text,
    ctes: &[Cte],
    refs: &[Ref],
    own: &[(Option<usize>, TableKind)],
    cx: &Cx,
) -> R<Option<String>> {
    let mut on: Option<String> = None;
    let mut meet = |shard: &str| match &on {
        Some(s) => s == shard,
        None => {
            on = Some(shard.to_string());
            true
        }
    };
    for scope in std::iter::once(None).chain((0..ctes.len()).map(Some)) {
        let kinds = || own.iter().filter(|(s, _)| *s == scope).map(|(_, k)| k);
        if kinds().any(|k| matches!(k, TableKind::Sharded { .. })) {
            let Some(i) = scope else {
                return Ok(None);
            };
            if !refs.iter().any(|r| r.cte == i) {
                continue; // never read
            }
            let body = render(cx.sql, &text.expand(Some(i), refs));
            let shard = match plan(&body, cx.ctx) {
                Plan::Single { shard, .. } => shard,
                Plan::Scatter { targets, .. }
                    if !targets.is_empty()
                        && targets.iter().all(|t| t.shard == targets[0].shard) =>
                {
                    targets[0].shard.clone()
                }
                _ => return Ok(None),
            };
            if !meet(&shard) {
                return Ok(None);
            }
        } else if kinds().any(|k| *k == TableKind::Unlisted) && !meet(cx.default_shard()) {
            return Ok(None);
        }
    }
    Ok(Some(on.unwrap_or_else(|| cx.default_shard().to_string())))
}

/// A reference to a CTE in a FROM clause.
struct Ref<'a> {
    /// Where it is: `None` in the main query, `Some(i)` in the body of CTE `i`.
    scope: Option<usize>,
    /// The CTE it names.
    cte: usize,
    /// The name as parsed (its span locates it).
    ident: &'a sqlparser::ast::Ident,
    /// An alias follows the name (`FROM c AS x`): the derived table takes that one.
    aliased: bool,
    /// No index hints, partitions or arguments, which a derived table cannot take.
    plain: bool,
}

fn plain_table(f: &TableFactor) -> bool {
    matches!(f, TableFactor::Table { args: None, with_hints, partitions, index_directives, version: None, sample: None, .. }
        if with_hints.is_empty() && partitions.is_empty() && index_directives.is_empty())
}

/// A piece of the rewritten text: a range of the client's text or text the proxy adds.
#[derive(Debug, Clone)]
enum Piece {
    Orig(Range<usize>),
    Add(&'static str),
}

/// Where the WITH clause and the CTE bodies are in the client's text.
struct Text {
    /// Each CTE body, inside its parentheses.
    bodies: Vec<Range<usize>>,
    /// Each reference's name, by the reference's index.
    names: Vec<Range<usize>>,
    /// What is kept of the text before the WITH clause (nothing when it is blank).
    prefix: Range<usize>,
    /// The main query: from the end of the WITH clause (after blanks) to the end.
    main: Range<usize>,
}

impl Text {
    fn locate(sql: &str, with: &With, refs: &[Ref]) -> R<Text> {
        let lost = || not_supported("a CTE the proxy could not locate in the statement's text");
        let off = Offsets::new(sql);
        let start = off.of(with.with_token.0.span.start).ok_or_else(lost)?;
        if !sql[start..]
            .get(..4)
            .is_some_and(|w| w.eq_ignore_ascii_case("with"))
        {
            return Err(lost());
        }
        let tokens = tokenize(sql);
        let mut bodies = Vec::new();
        for cte in &with.cte_tables {
            let name_end = off.of(cte.alias.name.span.end).ok_or_else(lost)?;
            let at = tokens
                .iter()
                .position(|t| t.start >= name_end)
                .ok_or_else(lost)?;
            let (Some(kw), Some(open)) = (tokens.get(at), tokens.get(at + 1)) else {
                return Err(lost());
            };
            if !kw.is_word("AS") || open.kind != TokenKind::Punct('(') {
                return Err(lost());
            }
            let close = off
                .of(cte.closing_paren_token.0.span.start)
                .ok_or_else(lost)?;
            if sql.as_bytes().get(close) != Some(&b')') || close <= open.end {
                return Err(lost());
            }
            let body = open.end..close;
            match Parser::parse_sql(&MySqlDialect {}, &sql[body.clone()]).as_deref() {
                Ok([Statement::Query(b)]) if **b == *cte.query => bodies.push(body),
                _ => return Err(lost()),
            }
        }
        let end = bodies.last().map(|b| b.end + 1).ok_or_else(lost)?;
        let mut names = Vec::new();
        for r in refs {
            let id = r.ident;
            let at = off.of(id.span.start).ok_or_else(lost)?;
            let to = off.of(id.span.end).ok_or_else(lost)?;
            let written = match id.quote_style {
                Some(q) => format!("{q}{}{q}", id.value.replace(q, &format!("{q}{q}"))),
                None => id.value.clone(),
            };
            if sql.get(at..to) != Some(written.as_str()) {
                return Err(lost());
            }
            names.push(at..to);
        }
        let blank = sql[..start].trim().is_empty();
        Ok(Text {
            bodies,
            names,
            prefix: 0..if blank { 0 } else { start },
            main: sql.len() - sql[end..].trim_start().len()..sql.len(),
        })
    }

    /// The pieces of a scope's text (`None`: the main query without the WITH clause) with
    /// every CTE it references in place.
    fn expand(&self, scope: Option<usize>, refs: &[Ref]) -> Vec<Piece> {
        let mut edits: Vec<(&Range<usize>, &Ref)> = self
            .names
            .iter()
            .zip(refs)
            .filter(|(_, r)| r.scope == scope)
            .collect();
        edits.sort_by_key(|(n, _)| n.start);
        let mut out = Vec::new();
        let (mut pos, end) = match scope {
            Some(i) => (self.bodies[i].start, self.bodies[i].end),
            None => {
                out.push(Piece::Orig(self.prefix.clone()));
                (self.main.start, self.main.end)
            }
        };
        for (name, r) in edits {
            out.push(Piece::Orig(pos..name.start));
            out.push(Piece::Add("("));
            out.extend(self.expand(Some(r.cte), refs));
            out.push(Piece::Add(")"));
            if !r.aliased {
                out.push(Piece::Add(" AS "));
                out.push(Piece::Orig(name.clone()));
            }
            pos = name.end;
        }
        out.push(Piece::Orig(pos..end));
        out
    }
}

fn render(sql: &str, pieces: &[Piece]) -> String {
    let mut out = String::with_capacity(sql.len() * 2);
    for p in pieces {
        match p {
            Piece::Orig(r) => out.push_str(&sql[r.clone()]),
            Piece::Add(s) => out.push_str(s),
        }
    }
    out
}

/// The rewritten text must hold every placeholder of the client's, in the same order.
fn check_placeholders(pieces: &[Piece], cx: &Cx) -> R<()> {
    let mut seen: Vec<usize> = Vec::new();
    for p in pieces {
        if let Piece::Orig(r) = p {
            seen.extend(cx.scan.placeholders.iter().filter(|&&at| r.contains(&at)));
        }
    }
    if seen.len() != cx.scan.placeholders.len() || seen.windows(2).any(|w| w[0] >= w[1]) {
        return Err(not_supported(
            "placeholders in CTEs that the statement reads in another order than they are \
             written, or in a CTE it never reads; send the values in the text",
        ));
    }
    Ok(())
}

/// A table factor found by the walk, and where.
struct Found<'a> {
    /// `None` in the main query, `Some(i)` in the body of CTE `i`.
    scope: Option<usize>,
    factor: &'a TableFactor,
}

/// The walk of a statement's queries: every table named in a FROM clause, and the number of
/// SELECTs seen (checked against the lexer's count).
#[derive(Default)]
struct Walk<'a> {
    /// The scope being walked.
    scope: Option<usize>,
    /// The tables found, in walk order.
    tables: Vec<Found<'a>>,
    /// SELECTs seen.
    selects: usize,
    /// Something the walk does not follow (a nested WITH, a table function, …).
    unknown: bool,
}

impl<'a> Walk<'a> {
    fn query(&mut self, q: &'a Query) {
        if q.with.is_some() {
            self.unknown = true;
        }
        self.set_expr(&q.body);
        self.order_by(q);
    }

    fn order_by(&mut self, q: &'a Query) {
        if let Some(ob) = &q.order_by {
            if let OrderByKind::Expressions(list) = &ob.kind {
                list.iter().for_each(|o| self.expr(&o.expr));
            }
        }
    }

    fn set_expr(&mut self, s: &'a SetExpr) {
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

#[cfg(test)]
mod tests {
    use crate::plan::testutil::*;
    use crate::plan::{Plan, SingleReason};

    /// The SQL every shard of a 3-shard scatter gets.
    fn shard_sql(sql: &str) -> String {
        scatter(sql).0
    }

    #[test]
    fn a_cte_read_once_becomes_a_derived_table() {
        for (sql, want) in [
            (
                "WITH c AS (SELECT account_id, balance FROM accounts WHERE balance > 0) SELECT account_id FROM c ORDER BY account_id LIMIT 3",
                "SELECT account_id FROM (SELECT account_id, balance FROM accounts WHERE balance > 0) AS c ORDER BY account_id LIMIT 3",
            ),
            // An alias of the reference names the derived table; a quoted name stays quoted.
            (
                "WITH `c` AS (SELECT account_id FROM accounts) SELECT x.account_id FROM `c` AS x",
                "SELECT x.account_id FROM (SELECT account_id FROM accounts) AS x",
            ),
            (
                "with c as (select fund from accounts) select fund, count(*) from c group by fund",
                "SELECT fund, count(*) FROM (SELECT fund FROM accounts) AS c GROUP BY fund",
            ),
            // A CTE read by a later one is put in place inside it first.
            (
                "WITH a AS (SELECT account_id, fund FROM accounts WHERE balance > 0), b AS (SELECT fund FROM a WHERE account_id > 3) SELECT fund, COUNT(*) FROM b GROUP BY fund",
                "SELECT fund, COUNT(*) FROM (SELECT fund FROM (SELECT account_id, fund FROM accounts WHERE balance > 0) AS a WHERE account_id > 3) AS b GROUP BY fund",
            ),
            // Joined with a reference table; a CTE never read is dropped (MariaDB does not run it).
            (
                "WITH unused AS (SELECT * FROM transactions), c AS (SELECT * FROM accounts) SELECT * FROM c LEFT JOIN fund_yield f ON f.fund = c.fund",
                "SELECT * FROM (SELECT * FROM accounts) AS c LEFT JOIN fund_yield f ON f.fund = c.fund",
            ),
        ] {
            assert_eq!(shard_sql(sql), want, "{sql}");
        }
    }

    #[test]
    fn preview_shows_the_rewritten_sql_the_shards_get() {
        let r = rules(3);
        let sql = "WITH c AS (SELECT fund FROM accounts) SELECT COUNT(*) FROM c";
        let rows = plan_with(sql, &r).describe(sql);
        assert_eq!(rows.len(), 3);
        assert!(rows
            .iter()
            .all(|row| row.1 == "SELECT COUNT(*) FROM (SELECT fund FROM accounts) AS c"));
        // A CTE inside a subquery: the subquery runs first, the outer statement is rewritten.
        let sql = "WITH f AS (SELECT fund FROM fund_yield WHERE rate > 1) SELECT * FROM accounts WHERE fund IN (SELECT fund FROM f)";
        let p = plan_with(sql, &r);
        let Plan::Staged(s) = &p else { panic!("{p:?}") };
        assert_eq!(
            s.parts[0].inner_sql,
            "SELECT fund FROM (SELECT fund FROM fund_yield WHERE rate > 1) AS f"
        );
        let rows = p.describe(sql);
        assert_eq!(rows.last().unwrap().1, s.sql);
        assert!(!s.sql.contains("WITH"), "{}", s.sql);
    }

    #[test]
    fn everything_on_one_shard_is_sent_whole() {
        let r = rules(3);
        let s7 = shard_of(&r, 7);
        for sql in [
            "WITH c AS (SELECT * FROM accounts WHERE account_id = 7) SELECT c.*, f.rate FROM c JOIN fund_yield f ON f.fund = c.fund",
            // Aggregates and ORDER BY/LIMIT inside the CTE: one server computes them whole.
            "WITH t AS (SELECT fund, SUM(amount) AS s FROM transactions WHERE account_id = 7 GROUP BY fund ORDER BY s LIMIT 2) SELECT * FROM t",
            "WITH a AS (SELECT * FROM accounts WHERE account_id = 7), f AS (SELECT fund FROM fund_yield) SELECT a.fund FROM a JOIN f ON f.fund = a.fund",
            "WITH a AS (SELECT * FROM accounts WHERE account_id = 7), b AS (SELECT * FROM a WHERE x > 1) SELECT COUNT(*) FROM b",
        ] {
            match plan_with(sql, &r) {
                Plan::Single { shard, reason } => {
                    assert_eq!(shard, s7, "{sql}");
                    assert_eq!(reason, SingleReason::CtesOnOneShard, "{sql}");
                }
                other => panic!("{sql}: {other:?}"),
            }
        }
        // Keys on two shards, or an unlisted table (on the default shard only) beside a key
        // elsewhere: not one shard.
        let (a, b) = keys_on_two_shards(&r);
        let sql = format!("WITH x AS (SELECT * FROM accounts WHERE account_id = {a}), y AS (SELECT * FROM transactions WHERE account_id = {b}) SELECT * FROM x JOIN y ON y.account_id = x.account_id");
        assert!(plan_with(&sql, &r).shards().len() != 1, "{sql}");
        let k = (1..100).find(|&k| shard_of(&r, k) != "s1").unwrap();
        let sql = format!("WITH x AS (SELECT fund FROM accounts WHERE account_id = {k}) SELECT * FROM x JOIN other o ON o.fund = x.fund");
        expect_reject(&plan_with(&sql, &r), "");
    }

    #[test]
    fn recursive_ctes_over_sharded_tables_are_refused() {
        let r = rules(3);
        let sql = "WITH RECURSIVE t AS (SELECT account_id, parent FROM accounts WHERE account_id = 1 UNION ALL SELECT a.account_id, a.parent FROM accounts a JOIN t ON a.parent = t.account_id) SELECT * FROM t";
        expect_reject(&plan_with(sql, &r), "WITH RECURSIVE over sharded tables");
        expect_reject(&plan_with(sql, &r), "previous step");
        // Over reference tables only: the default shard, as before.
        for sql in [
            "WITH RECURSIVE n AS (SELECT 1 AS i UNION ALL SELECT i + 1 FROM n WHERE i < 5) SELECT i FROM n",
            "WITH RECURSIVE n AS (SELECT 1 AS accounts UNION ALL SELECT accounts + 1 FROM n WHERE accounts < 5) SELECT * FROM n JOIN fund_yield f ON f.x = n.accounts",
        ] {
            assert_eq!(expect_single(&plan_with(sql, &r)), "s1", "{sql}");
        }
    }

    #[test]
    fn refusals() {
        let r = rules(3);
        for (sql, why) in [
            ("WITH c AS (SELECT account_id FROM accounts) SELECT * FROM c WHERE account_id IN (SELECT account_id FROM c)", "referenced 2 times"),
            ("WITH c AS (SELECT account_id FROM accounts) SELECT * FROM c JOIN c AS d ON d.account_id = c.account_id", "referenced 2 times"),
            ("WITH c(a) AS (SELECT account_id FROM accounts) SELECT a FROM c", "column list"),
            ("WITH c AS (SELECT account_id FROM accounts) SELECT * FROM C", "letter case"),
            ("WITH c AS (SELECT * FROM c JOIN accounts a ON a.account_id = c.id) SELECT * FROM c", "itself or to a later"),
            ("WITH a AS (SELECT * FROM b), b AS (SELECT * FROM accounts) SELECT * FROM a", "itself or to a later"),
            ("WITH c AS (WITH d AS (SELECT * FROM accounts) SELECT * FROM d) SELECT * FROM c", "could not follow"),
            ("WITH c AS (SELECT account_id FROM accounts USE INDEX (ix)) SELECT * FROM c USE INDEX (ix)", "index hints"),
            // The rewritten statement's own refusals.
            ("WITH c AS (SELECT fund, COUNT(*) AS n FROM accounts GROUP BY fund) SELECT * FROM c", "aggregates"),
            ("WITH c AS (SELECT * FROM accounts ORDER BY balance LIMIT 3) SELECT * FROM c", "ORDER BY or LIMIT"),
            ("WITH c AS (SELECT * FROM accounts) SELECT * FROM fund_yield f LEFT JOIN c ON c.fund = f.fund", "preserved side"),
            // `?`s the rewrite would reorder (a prepared statement binds them by position).
            ("WITH c AS (SELECT account_id FROM accounts WHERE balance > ?) SELECT ? AS v, account_id FROM c", "placeholders"),
        ] {
            expect_reject(&plan_with(sql, &r), why);
        }
    }
}
