//! Subqueries in a SELECT over sharded tables: which ones the proxy evaluates first, which
//! ones the shards answer as they are, and which it refuses.
//!
//! A subquery's rows may live on other shards than the outer row that needs them, so a shard
//! cannot answer it for the outer query in general. Two shapes are answered exactly:
//!
//! - **Uncorrelated** (the subquery does not mention the outer query's tables): it is planned
//!   and run alone first, through the ordinary planner and executor (it may scatter and
//!   merge), and its answer replaces it as literals ([`super::staged`]). Found in the select
//!   list, WHERE and HAVING: `x [NOT] IN (SELECT …)`, `(a, b) IN (SELECT …)`, scalar
//!   `(SELECT …)`, `EXISTS (SELECT …)`. The result is a [`Plan::Staged`].
//! - **Correlated on the shard key**: `EXISTS (SELECT … FROM o WHERE o.key = a.key …)` where
//!   `o` and the outer `a` are both sharded (one ring places equal keys on one shard): every
//!   row the subquery needs for an outer row sits on that row's shard, so each shard answers
//!   for its own rows and the statement is pushed down as it is ([`Found::PushDown`]).
//!
//! Any other correlated subquery over a sharded table is refused. The outer FROM may be a
//! derived table of a row-wise select (what a CTE becomes, [`super::cte`]): it stays in the
//! text and the statement with the values is planned by [`super::scatter::plan_derived`].
//!
//! # Finding a subquery in the text
//! The outer statement is rewritten by splicing the client's text, never re-rendered: the
//! AST says what a subquery is, its tokens say where (sqlparser's span of the inner SELECT
//! keyword, the `(` before it, the matching `)` found by the lexer), and the text found must
//! parse back to the same expression, or the statement is refused. A subquery the walk does
//! not find (in FROM, ORDER BY, a function's arguments the walk skips) stays in the text, and
//! the statement is refused: the count of SELECT keywords must add up.

use std::ops::Range;

use sqlparser::ast::{
    Expr, FunctionArg, FunctionArgExpr, FunctionArguments, InTarget, Query, Select, SelectItem,
    SetExpr, Spanned, TableFactor, TableWithJoins,
};
use sqlparser::dialect::MySqlDialect;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::Location;

use super::reject::not_supported;
use super::route::object_name;
use super::rules::TableKind;
use super::scan::scan;
use super::staged::{Part, PartKind, Staged};
use super::{plan, Cx, Plan};
use crate::lex::{tokenize, TokenKind};

/// What the select's subqueries call for.
pub(crate) enum Found {
    /// No subquery in the places this file looks.
    None,
    /// A plan for the whole statement: staged, or a refusal.
    Plan(Box<Plan>),
    /// Every subquery is correlated on the shard key: plan the statement as if it had none,
    /// and let the shards answer them.
    PushDown,
}

/// One subquery found in the outer select.
struct Hit<'a> {
    /// The expression that holds it (`x IN (SELECT …)`, `(SELECT …)`, `EXISTS (…)`).
    expr: &'a Expr,
    /// The subquery.
    query: &'a Query,
    /// The index of the select item it is in; `None` in WHERE or HAVING.
    item: Option<usize>,
}

/// Looks at the subqueries of `sel` (the body of `q`) and decides (see the module doc).
pub(crate) fn plan_subqueries(q: &Query, sel: &Select, cx: &Cx) -> Found {
    let mut hits = Vec::new();
    for (i, item) in sel.projection.iter().enumerate() {
        if let SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } = item {
            walk(e, Some(i), &mut hits);
        }
    }
    for e in sel.selection.iter().chain(sel.having.iter()) {
        walk(e, None, &mut hits);
    }
    if hits.is_empty() {
        return Found::None;
    }
    match stage(q, sel, &hits, cx) {
        Ok(found) => found,
        Err(p) => Found::Plan(Box::new(p)),
    }
}

fn stage(q: &Query, sel: &Select, hits: &[Hit], cx: &Cx) -> Result<Found, Plan> {
    let sql = cx.sql;
    if q.with.is_some() {
        return Err(not_supported(
            "WITH (common table expressions) over sharded tables is not supported",
        ));
    }
    let outer = qualifiers(&sel.from);
    let mut parts = Vec::new();
    let mut names = Vec::new();
    let mut inner_selects = 0;
    let mut pushed = 0;
    for hit in hits {
        let (span, open, close, kind) = locate(sql, hit)?;
        let inner_sql = sql[open + 1..close].to_string();
        let inner_scan = scan(&inner_sql);
        inner_selects += inner_scan.selects;
        if let Some(q) = correlated(hit.query, &inner_sql, &outer) {
            if shard_key_correlated(hit.query, sel, cx) {
                pushed += 1;
                continue;
            }
            return Err(not_supported(format!(
                "a correlated subquery over sharded tables (it refers to the outer table `{q}`) \
                 is answered only when it matches rows by the shard key of tables sharded alike \
                 (`inner.key = {q}.key`); rewrite it as a join on the key or an uncorrelated \
                 subquery"
            )));
        }
        if let Some(i) = hit.item {
            if let SelectItem::UnnamedExpr(_) = &sel.projection[i] {
                let (start, end) = item_range(sql, i).ok_or_else(|| {
                    not_supported("a subquery in a select item the proxy could not delimit")
                })?;
                let text = &sql[start..end];
                if !names.iter().any(|(at, _)| *at == end) {
                    names.push((end, text.to_string()));
                }
            }
        }
        let inner = plan(&inner_sql, cx.ctx);
        if let Plan::Reject(_) = inner {
            return Err(inner);
        }
        parts.push(Part {
            span,
            kind,
            inner_sql,
            inner,
        });
    }
    // A derived table of the form `scatter::plan_derived` answers stays in place: the
    // statement with the subqueries' values is planned there.
    let from_selects = super::scatter::derived_selects(sel, cx);
    if cx.scan.selects != 1 + inner_selects + from_selects || cx.scan.set_operation {
        return Err(not_supported(
            "subqueries over sharded tables are answered in the select list, WHERE and \
             HAVING only (not in FROM, ORDER BY or beside a UNION); run the parts separately",
        ));
    }
    if parts.is_empty() {
        debug_assert!(pushed > 0);
        return Ok(Found::PushDown);
    }
    parts.sort_by_key(|p| p.span.start);
    if parts.windows(2).any(|w| w[0].span.end > w[1].span.start) {
        return Err(not_supported("nested subqueries in one expression"));
    }
    let in_select_list = hits.iter().any(|h| h.item.is_some());
    let types_sql = (in_select_list && !cx.scan.backslash_in_string).then(|| {
        let mut typed = q.clone();
        if let sqlparser::ast::SetExpr::Select(s) = typed.body.as_mut() {
            s.selection = Some(Expr::Value(
                sqlparser::ast::Value::Boolean(false).with_empty_span(),
            ));
        }
        typed.to_string()
    });
    Ok(Found::Plan(Box::new(Plan::Staged(Box::new(Staged {
        sql: sql.to_string(),
        parts,
        names,
        types_sql,
    })))))
}

/// Collects the subqueries of `e` (not those inside them) in text order.
fn walk<'a>(e: &'a Expr, item: Option<usize>, out: &mut Vec<Hit<'a>>) {
    match e {
        Expr::In {
            target: InTarget::Subquery(query),
            ..
        } => out.push(Hit {
            expr: e,
            query,
            item,
        }),
        Expr::Subquery(query)
        | Expr::Exists {
            subquery: query, ..
        } => out.push(Hit {
            expr: e,
            query,
            item,
        }),
        Expr::In {
            expr,
            target: InTarget::List(list),
            ..
        } => {
            walk(expr, item, out);
            list.iter().for_each(|x| walk(x, item, out));
        }
        Expr::BinaryOp { left, right, .. } => {
            walk(left, item, out);
            walk(right, item, out);
        }
        Expr::UnaryOp { expr, .. }
        | Expr::Nested(expr)
        | Expr::IsNull(expr)
        | Expr::IsNotNull(expr)
        | Expr::IsTrue(expr)
        | Expr::IsNotTrue(expr)
        | Expr::IsFalse(expr)
        | Expr::IsNotFalse(expr)
        | Expr::Cast { expr, .. } => walk(expr, item, out),
        Expr::Between {
            expr, low, high, ..
        } => {
            walk(expr, item, out);
            walk(low, item, out);
            walk(high, item, out);
        }
        Expr::Like { expr, pattern, .. } => {
            walk(expr, item, out);
            walk(pattern, item, out);
        }
        Expr::Tuple(list) => list.iter().for_each(|x| walk(x, item, out)),
        Expr::Case {
            operand,
            conditions,
            else_result,
            ..
        } => {
            if let Some(x) = operand {
                walk(x, item, out);
            }
            for c in conditions {
                walk(&c.condition, item, out);
                walk(&c.result, item, out);
            }
            if let Some(x) = else_result {
                walk(x, item, out);
            }
        }
        Expr::Function(f) => {
            if let FunctionArguments::List(l) = &f.args {
                for a in &l.args {
                    if let FunctionArg::Unnamed(FunctionArgExpr::Expr(x)) = a {
                        walk(x, item, out);
                    }
                }
            }
        }
        _ => {}
    }
}

/// Byte offset of a sqlparser location (1-based line and column, columns in characters).
fn offset(sql: &str, loc: Location) -> Option<usize> {
    if loc.line == 0 {
        return None;
    }
    let mut line = 1;
    let mut line_start = 0;
    if loc.line > 1 {
        for (i, b) in sql.bytes().enumerate() {
            if b == b'\n' {
                line += 1;
                if line == loc.line {
                    line_start = i + 1;
                    break;
                }
            }
        }
        if line != loc.line {
            return None;
        }
    }
    let col = usize::try_from(loc.column).ok()?.checked_sub(1)?;
    sql[line_start..]
        .char_indices()
        .nth(col)
        .map(|(i, _)| line_start + i)
}

/// Where a hit is in the text: the range its values replace, its `(` and `)`, and its kind;
/// the range's text parsed again must be the hit's expression.
fn locate(sql: &str, hit: &Hit) -> Result<(Range<usize>, usize, usize, PartKind), Plan> {
    let lost = || not_supported("a subquery the proxy could not locate in the statement's text");
    let select_at = offset(sql, hit.query.body.span().start).ok_or_else(lost)?;
    let open = sql[..select_at]
        .trim_end()
        .len()
        .checked_sub(1)
        .ok_or_else(lost)?;
    if sql.as_bytes()[open] != b'(' {
        return Err(lost());
    }
    let tokens = tokenize(sql);
    let first = tokens
        .iter()
        .position(|t| t.start == open)
        .ok_or_else(lost)?;
    let mut depth = 0usize;
    let mut close = None;
    for t in &tokens[first..] {
        match t.kind {
            TokenKind::Punct('(') => depth += 1,
            TokenKind::Punct(')') => {
                depth -= 1;
                if depth == 0 {
                    close = Some(t.start);
                    break;
                }
            }
            _ => {}
        }
    }
    let close = close.ok_or_else(lost)?;
    let before = |i: usize| first.checked_sub(i).map(|j| &tokens[j]);
    let (start, kind) = match hit.expr {
        Expr::In { expr, negated, .. } => {
            let span_start = offset(sql, expr.span().start).ok_or_else(lost)?;
            let in_kw = before(1).filter(|t| t.is_word("IN")).ok_or_else(lost)?;
            let left_end = match before(2) {
                Some(t) if *negated && t.is_word("NOT") => before(3),
                _ if *negated => None,
                t => t,
            }
            .filter(|t| t.end <= in_kw.start && t.end > span_start)
            .ok_or_else(lost)?
            .end;
            let width = match expr.as_ref() {
                Expr::Tuple(items) => items.len(),
                _ => 1,
            };
            // A row `(a, b)`: its span starts inside its parentheses; the left operand is the
            // first start, going back over `(`, whose text parses to the operand.
            let mut start = span_start;
            loop {
                if reparse(&sql[start..left_end]).is_some_and(|e| &e == expr.as_ref()) {
                    break;
                }
                let trimmed = sql[..start].trim_end();
                if !trimmed.ends_with('(') || span_start - trimmed.len() > 8 {
                    return Err(lost());
                }
                start = trimmed.len() - 1;
            }
            let left = start..left_end;
            (
                start,
                PartKind::In {
                    left,
                    negated: *negated,
                    width,
                },
            )
        }
        Expr::Exists { .. } => {
            let kw = before(1).filter(|t| t.is_word("EXISTS")).ok_or_else(lost)?;
            (kw.start, PartKind::Exists)
        }
        _ => (
            open,
            PartKind::Scalar {
                in_select_list: hit.item.is_some(),
            },
        ),
    };
    let span = start..close + 1;
    let found = reparse(&sql[span.clone()]).ok_or_else(lost)?;
    let same = match (&found, hit.expr) {
        // `NOT EXISTS`: the NOT stays in the text, outside the span.
        (Expr::Exists { subquery: a, .. }, Expr::Exists { subquery: b, .. }) => a == b,
        (a, b) => a == b,
    };
    if !same {
        return Err(lost());
    }
    Ok((span, open, close, kind))
}

/// `text` parsed as one expression.
fn reparse(text: &str) -> Option<Expr> {
    let mut p = Parser::new(&MySqlDialect {}).try_with_sql(text).ok()?;
    let e = p.parse_expr().ok()?;
    (p.peek_token().token == sqlparser::tokenizer::Token::EOF).then_some(e)
}

/// The names columns are qualified with in a FROM clause (aliases, else table names),
/// lowercased.
fn qualifiers(from: &[TableWithJoins]) -> Vec<String> {
    let mut out = Vec::new();
    let mut add = |f: &TableFactor| match f {
        TableFactor::Table { name, alias, .. } => out.push(match alias {
            Some(a) => a.name.value.to_lowercase(),
            None => object_name(name).1,
        }),
        TableFactor::Derived { alias: Some(a), .. } => out.push(a.name.value.to_lowercase()),
        _ => {}
    };
    for t in from {
        add(&t.relation);
        for j in &t.joins {
            add(&j.relation);
        }
    }
    out
}

/// The qualifiers the subquery's own FROM clauses define (every branch of a UNION).
fn inner_qualifiers(q: &Query) -> Vec<String> {
    fn body(s: &SetExpr, out: &mut Vec<String>) {
        match s {
            SetExpr::Select(sel) => out.extend(qualifiers(&sel.from)),
            SetExpr::SetOperation { left, right, .. } => {
                body(left, out);
                body(right, out);
            }
            SetExpr::Query(q) => body(&q.body, out),
            _ => {}
        }
    }
    let mut out = Vec::new();
    body(&q.body, &mut out);
    out
}

/// The outer qualifier the subquery refers to (`a` of `a.col`, a name its own FROM does not
/// define), if any. A reference to an outer column without a qualifier is not seen here: run
/// alone, the subquery either finds that column in its own tables (as SQL resolves it) or
/// fails with MariaDB's unknown-column error.
fn correlated(q: &Query, inner_sql: &str, outer: &[String]) -> Option<String> {
    let own = inner_qualifiers(q);
    let tokens = tokenize(inner_sql);
    let name = |k: &TokenKind| match k {
        TokenKind::Word(w) => Some(w.to_lowercase()),
        TokenKind::Quoted(w) => Some(w.to_lowercase()),
        _ => None,
    };
    tokens.windows(3).find_map(|w| {
        let q = name(&w[0].kind)?;
        (w[1].is_punct('.') && name(&w[2].kind).is_some()).then_some(())?;
        // `db.table.column` starts with a database name, not a qualifier.
        let after_dot = tokens
            .iter()
            .position(|t| t.start == w[0].start)
            .and_then(|i| i.checked_sub(1))
            .is_some_and(|i| tokens[i].is_punct('.'));
        (!after_dot && outer.contains(&q) && !own.contains(&q)).then_some(q)
    })
}

/// The subquery reads one sharded table and a conjunct of its WHERE equates that table's
/// shard key with the shard key of a sharded table of the outer FROM: the rows it needs for
/// an outer row are on that row's shard.
fn shard_key_correlated(q: &Query, outer: &Select, cx: &Cx) -> bool {
    let SetExpr::Select(inner) = q.body.as_ref() else {
        return false;
    };
    let ([t], None) = (inner.from.as_slice(), q.limit_clause.as_ref()) else {
        return false;
    };
    if !t.joins.is_empty() {
        return false;
    }
    let TableFactor::Table { name, alias, .. } = &t.relation else {
        return false;
    };
    let (db, table) = object_name(name);
    let TableKind::Sharded { key: inner_key } =
        cx.rules().classify(db.as_deref(), &table, cx.cur_db())
    else {
        return false;
    };
    let inner_q = alias
        .as_ref()
        .map(|a| a.name.value.to_lowercase())
        .unwrap_or(table);
    // The outer relations: qualifier and shard key.
    let mut outer_keys = Vec::new();
    for twj in &outer.from {
        for f in std::iter::once(&twj.relation).chain(twj.joins.iter().map(|j| &j.relation)) {
            if let TableFactor::Table { name, alias, .. } = f {
                let (db, table) = object_name(name);
                if let TableKind::Sharded { key } =
                    cx.rules().classify(db.as_deref(), &table, cx.cur_db())
                {
                    let qual = alias
                        .as_ref()
                        .map(|a| a.name.value.to_lowercase())
                        .unwrap_or(table);
                    outer_keys.push((qual, key));
                }
            }
        }
    }
    let column = |e: &Expr| -> Option<(Option<String>, String)> {
        match e {
            Expr::Identifier(i) => Some((None, i.value.to_lowercase())),
            Expr::CompoundIdentifier(p) if p.len() == 2 => {
                Some((Some(p[0].value.to_lowercase()), p[1].value.to_lowercase()))
            }
            _ => None,
        }
    };
    let is_inner_key = |c: &(Option<String>, String)| {
        c.1 == inner_key && c.0.as_ref().is_none_or(|q| *q == inner_q)
    };
    let is_outer_key = |c: &(Option<String>, String)| {
        c.0.as_ref()
            .is_some_and(|q| *q != inner_q && outer_keys.iter().any(|(oq, k)| oq == q && *k == c.1))
    };
    let mut conj = Vec::new();
    if let Some(w) = &inner.selection {
        super::route::conjuncts(w, &mut conj);
    }
    conj.iter().any(|c| match c {
        Expr::BinaryOp {
            left,
            op: sqlparser::ast::BinaryOperator::Eq,
            right,
        } => match (column(left), column(right)) {
            (Some(l), Some(r)) => {
                (is_inner_key(&l) && is_outer_key(&r)) || (is_inner_key(&r) && is_outer_key(&l))
            }
            _ => false,
        },
        _ => false,
    })
}

/// The byte range of the `i`th item of the statement's first select list.
fn item_range(sql: &str, i: usize) -> Option<(usize, usize)> {
    super::scatter::item_ranges(sql).get(i).copied()
}

#[cfg(test)]
mod tests {
    use crate::plan::staged::PartKind;
    use crate::plan::testutil::*;
    use crate::plan::Plan;

    fn staged(sql: &str) -> crate::plan::staged::Staged {
        let r = rules(3);
        match plan_with(sql, &r) {
            Plan::Staged(s) => *s,
            other => panic!("{sql}: expected Staged, got {other:?}"),
        }
    }

    #[test]
    fn in_subquery_is_located_by_its_text() {
        let sql = "SELECT name FROM accounts WHERE account_id NOT IN ( SELECT account_id FROM transactions WHERE kind = 'buy' ) ORDER BY name";
        let s = staged(sql);
        assert_eq!(s.parts.len(), 1);
        let p = &s.parts[0];
        assert_eq!(
            &sql[p.span.clone()],
            "account_id NOT IN ( SELECT account_id FROM transactions WHERE kind = 'buy' )"
        );
        assert_eq!(
            p.inner_sql,
            " SELECT account_id FROM transactions WHERE kind = 'buy' "
        );
        match &p.kind {
            PartKind::In {
                left,
                negated,
                width,
            } => {
                assert_eq!(&sql[left.clone()], "account_id");
                assert!(*negated);
                assert_eq!(*width, 1);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(p.inner, Plan::Scatter { .. }), "{:?}", p.inner);
    }

    #[test]
    fn scalar_subqueries_in_where_and_select_list() {
        let sql = "SELECT account_id, (SELECT COUNT(*) FROM ledger) , balance - (SELECT MIN(balance) FROM accounts) AS d FROM accounts WHERE balance >\n(SELECT AVG(balance) FROM accounts)";
        let s = staged(sql);
        let texts: Vec<&str> = s.parts.iter().map(|p| &sql[p.span.clone()]).collect();
        assert_eq!(
            texts,
            [
                "(SELECT COUNT(*) FROM ledger)",
                "(SELECT MIN(balance) FROM accounts)",
                "(SELECT AVG(balance) FROM accounts)"
            ]
        );
        assert_eq!(
            s.names,
            [(
                sql.find(" ,").unwrap(),
                "(SELECT COUNT(*) FROM ledger)".to_string()
            )]
        );
        assert_eq!(
            s.parts[0].kind,
            PartKind::Scalar {
                in_select_list: true
            }
        );
        assert_eq!(
            s.parts[2].kind,
            PartKind::Scalar {
                in_select_list: false
            }
        );
        // A select item holds a subquery: the column types come from the statement itself
        // over no rows.
        assert_eq!(
            s.types_sql.as_deref(),
            Some(
                "SELECT account_id, (SELECT COUNT(*) FROM ledger), balance - (SELECT \
                 MIN(balance) FROM accounts) AS d FROM accounts WHERE false"
            )
        );
    }

    #[test]
    fn row_in_and_exists_and_reference_inner() {
        let sql = "SELECT * FROM accounts WHERE (account_id, status) IN (SELECT account_id, kind FROM ledger) AND NOT EXISTS (SELECT 1 FROM fund_yield WHERE per_10k > 2)";
        let s = staged(sql);
        assert_eq!(
            s.parts[0].kind,
            PartKind::In {
                left: 29..49,
                negated: false,
                width: 2
            }
        );
        assert_eq!(
            &sql[s.parts[1].span.clone()],
            "EXISTS (SELECT 1 FROM fund_yield WHERE per_10k > 2)"
        );
        assert_eq!(s.parts[1].kind, PartKind::Exists);
        assert_eq!(expect_single(&s.parts[1].inner), "s1");
        // Subqueries in WHERE only do not change the columns' types.
        assert_eq!(s.types_sql, None);
    }

    #[test]
    fn correlation_on_the_shard_key_is_pushed_down() {
        let r = rules(3);
        let sql = "SELECT a.account_id FROM accounts a WHERE EXISTS (SELECT 1 FROM transactions t WHERE t.account_id = a.account_id AND t.amount > 0)";
        match plan_with(sql, &r) {
            Plan::Scatter { targets, .. } => {
                assert_eq!(targets.len(), 3);
                assert!(targets[0]
                    .sql
                    .contains("EXISTS (SELECT 1 FROM transactions t"));
            }
            other => panic!("{other:?}"),
        }
        let sql = "SELECT a.account_id FROM accounts a WHERE a.account_id = 7 AND NOT EXISTS (SELECT 1 FROM transactions t WHERE a.account_id = t.account_id)";
        assert_eq!(expect_single(&plan_with(sql, &r)), shard_of(&r, 7));
    }

    #[test]
    fn other_correlations_are_refused() {
        let r = rules(3);
        for sql in [
            "SELECT * FROM accounts a WHERE EXISTS (SELECT 1 FROM transactions t WHERE t.fund = a.fund)",
            "SELECT * FROM accounts a WHERE EXISTS (SELECT 1 FROM transactions t WHERE t.account_id = a.parent)",
            "SELECT * FROM accounts a WHERE a.x IN (SELECT y FROM fund_yield f WHERE f.fund = a.fund)",
            "SELECT * FROM accounts a WHERE EXISTS (SELECT 1 FROM transactions t WHERE t.account_id = a.account_id OR t.x = 1)",
        ] {
            expect_reject(&plan_with(sql, &r), "correlated");
        }
    }

    #[test]
    fn subqueries_elsewhere_are_refused() {
        let r = rules(3);
        for (sql, why) in [
            ("SELECT * FROM accounts WHERE x = 1 ORDER BY (SELECT MAX(a) FROM accounts)", "subqueries"),
            ("SELECT * FROM accounts WHERE x = (SELECT MAX(a) FROM accounts) ORDER BY (SELECT 1)", "select list, WHERE and HAVING"),
            ("SELECT * FROM accounts WHERE x IN (SELECT y FROM t WHERE z IN (SELECT w FROM accounts))", "WHERE"),
        ] {
            match plan_with(sql, &r) {
                // A nested subquery is staged in its turn when its outer one runs.
                Plan::Staged(s) if sql.contains("z IN") => {
                    assert!(matches!(s.parts[0].inner, Plan::Staged(_)), "{sql}")
                }
                p => expect_reject(&p, why),
            }
        }
    }
}
