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
//! - `WITH RECURSIVE` over sharded tables where a CTE reads itself or a later one (without such
//!   a reference the CTEs are ordinary ones): each step of the recursion reads the rows found
//!   by the previous one, which may be on any shard, so no shard computes it alone and the proxy
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
    Cte, Expr, ObjectNamePart, Query, SelectItem, SetExpr, Statement, TableFactor, With,
};
use sqlparser::dialect::MySqlDialect;
use sqlparser::parser::Parser;

use super::reject::{not_supported, Rejection};
use super::route::{object_name, Offsets};
use super::rules::TableKind;
use super::scatter::item_ranges;
use super::walk::Walk;
use super::{plan, Cx, Plan, PlanContext, SingleReason};
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
    for (i, c) in ctes.iter().enumerate() {
        let name = &c.alias.name.value;
        if ctes[..i]
            .iter()
            .any(|d| d.alias.name.value.eq_ignore_ascii_case(name))
        {
            return Err(not_supported(format!(
                "two CTEs named `{name}` in one WITH clause"
            )));
        }
    }
    let cte_of = |name: &str| ctes.iter().position(|c| c.alias.name.value == name);
    let mut refs: Vec<Ref> = Vec::new();
    let mut own: Vec<(Option<usize>, TableKind)> = Vec::new();
    // A table named like a CTE (`db.c`): not read as the CTE.
    let mut shadowed = false;
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
                shadowed |= ctes
                    .iter()
                    .any(|c| c.alias.name.value.eq_ignore_ascii_case(&table));
                own.push((
                    f.scope,
                    cx.rules().classify(db.as_deref(), &table, cx.cur_db()),
                ));
            }
        }
    }
    let sharded = |k: &TableKind| matches!(k, TableKind::Sharded { .. });
    // RECURSIVE matters only where a CTE reads itself or a later one; without such a
    // reference the CTEs are ordinary ones.
    let recursing = refs.iter().any(|r| r.scope.is_some_and(|i| r.cte >= i));
    if recursing {
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
    let mut text = Text::locate(cx.sql, with, &refs)?;
    let mut aliases = item_aliases(q, None, &text.main, &text, &refs, cx)?;
    for (i, cte) in ctes.iter().enumerate() {
        aliases.extend(item_aliases(
            &cte.query,
            Some(i),
            &text.bodies[i],
            &text,
            &refs,
            cx,
        )?);
    }
    text.aliases = aliases;
    // 1. Every table read is on one shard: the statement goes there unchanged.
    if let Some(shard) = one_shard(&text, ctes, &refs, &own, shadowed, cx)? {
        return Ok(Plan::single(&shard, SingleReason::CtesOnOneShard));
    }
    // 2. The statement with every CTE in its place, planned again.
    let pieces = text.expand(None, &refs);
    check_placeholders(&pieces, cx)?;
    let sql = render(cx.sql, &pieces);
    let p = match plan(&sql, cx.ctx) {
        // Say that the refusal is about the rewritten statement, which the client never wrote.
        Plan::Reject(Rejection::NotSupported(why)) => {
            return Err(not_supported(format!(
                "{why} (with its CTEs read as derived tables: `{}`)",
                sql.chars().take(160).collect::<String>()
            )))
        }
        p => p,
    };
    Ok(match one_target(&p) {
        Some(shard) if matches!(p, Plan::Scatter { .. }) => {
            Plan::single(&shard, SingleReason::CtesOnOneShard)
        }
        _ => p,
    })
}

/// The unaliased select items of a scope's query that hold a reference to a CTE (in a
/// subquery), and in a CTE every unaliased expression (its column names, which a derived table
/// over several shards would take from the re-rendered text, `balance * 2` for `balance*2`):
/// they get their text as written as an alias, the name MariaDB gives them.
fn item_aliases(
    q: &Query,
    scope: Option<usize>,
    at: &Range<usize>,
    text: &Text,
    refs: &[Ref],
    cx: &Cx,
) -> R<Vec<(Option<usize>, Range<usize>)>> {
    let inside: Vec<&Range<usize>> = text
        .names
        .iter()
        .zip(refs)
        .filter(|(_, r)| r.scope == scope)
        .map(|(n, _)| n)
        .collect();
    let SetExpr::Select(sel) = q.body.as_ref() else {
        return Ok(Vec::new());
    };
    if inside.is_empty() && scope.is_none() {
        return Ok(Vec::new());
    }
    let base = at.start;
    let items = item_ranges(&cx.sql[at.clone()]);
    let mut out = Vec::new();
    for (i, item) in sel.projection.iter().enumerate() {
        let SelectItem::UnnamedExpr(expr) = item else {
            continue;
        };
        let named = matches!(expr, Expr::Identifier(_) | Expr::CompoundIdentifier(_));
        if named && scope.is_some() && inside.is_empty() {
            continue;
        }
        let Some(&(s, e)) = items.get(i).filter(|_| items.len() == sel.projection.len()) else {
            return Err(not_supported(
                "a select list the proxy could not delimit in a statement with CTEs",
            ));
        };
        let r = base + s..base + e;
        if (scope.is_some() && !named) || inside.iter().any(|n| r.contains(&n.start)) {
            if r.len() > 256 {
                return Err(not_supported(
                    "a select item longer than 256 characters without an alias in a statement \
                     with CTEs; give it an alias",
                ));
            }
            out.push((scope, r));
        }
    }
    Ok(out)
}

/// The one shard every table the statement reads is on, if there is one: each CTE over
/// sharded tables planned alone (with the CTEs it uses in place) must go to one shard, and so
/// must the main query's own sharded tables.
fn one_shard(
    text: &Text,
    ctes: &[Cte],
    refs: &[Ref],
    own: &[(Option<usize>, TableKind)],
    shadowed: bool,
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
                // The main query's own sharded tables: planned with the CTEs as tables whole
                // on every shard (which they are on the one shard found for them, checked
                // below), it must go to one shard too.
                let names: Vec<String> = ctes
                    .iter()
                    .map(|c| c.alias.name.value.to_ascii_lowercase())
                    .collect();
                if names.iter().any(|n| cx.rules().mentions(n)) || shadowed {
                    return Ok(None);
                }
                let rules = cx.rules().with_reference_tables(&names);
                let ctx = PlanContext {
                    rules: &rules,
                    ..*cx.ctx
                };
                let main = [
                    Piece::Orig(text.prefix.clone()),
                    Piece::Orig(text.main.clone()),
                ];
                match one_target(&plan(&render(cx.sql, &main), &ctx)) {
                    Some(shard) if meet(&shard) => continue,
                    _ => return Ok(None),
                }
            };
            if !refs.iter().any(|r| r.cte == i) {
                continue; // never read
            }
            let body = render(cx.sql, &text.expand(Some(i), refs));
            match one_target(&plan(&body, cx.ctx)) {
                Some(shard) if meet(&shard) => {}
                _ => return Ok(None),
            }
        } else if kinds().any(|k| *k == TableKind::Unlisted) && !meet(cx.default_shard()) {
            return Ok(None);
        }
    }
    Ok(Some(on.unwrap_or_else(|| cx.default_shard().to_string())))
}

/// The one shard a plan sends its statement to, if it sends it to one.
fn one_target(p: &Plan) -> Option<String> {
    match p {
        Plan::Single { shard, .. } => Some(shard.clone()),
        Plan::Scatter { targets, .. }
            if !targets.is_empty() && targets.iter().all(|t| t.shard == targets[0].shard) =>
        {
            Some(targets[0].shard.clone())
        }
        _ => None,
    }
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
    /// ` AS `…`` with this range of the client's text as the alias: a select item keeps the
    /// name MariaDB gives it from its text as written, not from the rewritten text.
    Alias(Range<usize>),
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
    /// The unaliased select items that hold a reference (in a subquery), by scope.
    aliases: Vec<(Option<usize>, Range<usize>)>,
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
            aliases: Vec::new(),
        })
    }

    /// The pieces of a scope's text (`None`: the main query without the WITH clause) with
    /// every CTE it references in place.
    fn expand(&self, scope: Option<usize>, refs: &[Ref]) -> Vec<Piece> {
        // A reference to put in place, or (None) the end of a select item to alias.
        let mut edits: Vec<(&Range<usize>, Option<&Ref>)> = self
            .names
            .iter()
            .zip(refs)
            .filter(|(_, r)| r.scope == scope)
            .map(|(n, r)| (n, Some(r)))
            .collect();
        edits.extend(
            self.aliases
                .iter()
                .filter(|(s, _)| *s == scope)
                .map(|(_, a)| (a, None)),
        );
        edits.sort_by_key(|(n, r)| (if r.is_some() { n.start } else { n.end }, r.is_none()));
        let mut out = Vec::new();
        let (mut pos, end) = match scope {
            Some(i) => (self.bodies[i].start, self.bodies[i].end),
            None => {
                out.push(Piece::Orig(self.prefix.clone()));
                (self.main.start, self.main.end)
            }
        };
        for (name, r) in edits {
            let Some(r) = r else {
                out.push(Piece::Orig(pos..name.end));
                out.push(Piece::Alias(name.clone()));
                pos = name.end;
                continue;
            };
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
            Piece::Alias(r) => {
                out.push_str(" AS `");
                out.push_str(&sql[r.clone()].replace('`', "``"));
                out.push('`');
            }
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

#[cfg(test)]
mod tests;
