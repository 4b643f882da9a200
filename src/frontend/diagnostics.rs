//! What `ROW_COUNT()`, `FOUND_ROWS()`, `SHOW WARNINGS` and friends answer right after a
//! statement the proxy ran on several shards.
//!
//! After a statement on one shard, the session keeps that backend connection ("sticky", see
//! [`super::session`]) and the server itself answers these questions about its previous
//! statement. After a split INSERT, a multi-key UPDATE/DELETE or a scatter SELECT there is no
//! single connection that ran "the previous statement": each shard's connection only saw its
//! part (ROW_COUNT() there would be that shard's share). The proxy composed the client's answer,
//! so it knows what one MariaDB would say and keeps it as [`Diagnostics`]:
//!
//! | question | after a multi-shard write | after a scatter SELECT |
//! |---|---|---|
//! | `ROW_COUNT()` | summed affected rows (-1 after an error) | -1 |
//! | `FOUND_ROWS()` | refused (MariaDB answers the row count of the last SELECT before) | rows sent |
//! | `@@warning_count`, `SHOW COUNT(*) WARNINGS` | warnings of every shard | same |
//! | `SHOW WARNINGS [LIMIT …]`, `SHOW ERRORS` | every shard's warnings, in shard order (each collected with `SHOW WARNINGS` on that shard's connection before it was released) | same |
//!
//! `LAST_INSERT_ID()` needs nothing here: the session tracks its value and restores it on
//! whichever connection reads it.
//!
//! The answer is given by rewriting the statement ([`answer`]): each `ROW_COUNT()` becomes
//! `IF(1, <n>, ROW_COUNT())`, which has exactly the type, length and flags of `ROW_COUNT()`
//! itself, so the client sees the same column metadata as from one server; a select item that
//! was just the function (or an expression without an alias) gets its original text as alias,
//! which is how MariaDB names such a column. The rewritten statement then runs like any other.
//! A shape the rewrite cannot name exactly is refused (1235), never answered with a wrong name.
//!
//! Lifetime: like MariaDB, which keeps warnings across statements that use no table, the
//! diagnostics stay while the session asks only these questions (`SHOW WARNINGS` twice shows
//! the same warnings; `ROW_COUNT()` then answers -1, the row count of a SELECT); any other
//! statement clears them and the backends answer again.

use crate::exec::diagnostics::{Condition, Diagnostics, FoundRows};
use crate::lex::{tokenize, Token, TokenKind};

/// How to answer a statement that asks about the previous one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Run this text instead (the values are in place).
    Rewrite(String),
    /// `SHOW WARNINGS` / `SHOW ERRORS` with `LIMIT [offset,] count`: rows from the diagnostics.
    Show {
        errors_only: bool,
        offset: usize,
        limit: Option<usize>,
    },
    /// Nothing to answer from the diagnostics: run the statement as it is.
    AsIs,
    /// Refused with this reason.
    Refuse(String),
}

/// Words that end a SELECT's item list.
const END_OF_ITEMS: &[&str] = &[
    "FROM",
    "WHERE",
    "GROUP",
    "HAVING",
    "ORDER",
    "LIMIT",
    "INTO",
    "UNION",
    "EXCEPT",
    "INTERSECT",
    "FOR",
    "LOCK",
    "WINDOW",
    "PROCEDURE",
];

/// Modifiers between SELECT and its first item (not part of the item's name).
const SELECT_MODIFIERS: &[&str] = &[
    "ALL",
    "DISTINCT",
    "DISTINCTROW",
    "HIGH_PRIORITY",
    "STRAIGHT_JOIN",
    "SQL_SMALL_RESULT",
    "SQL_BIG_RESULT",
    "SQL_BUFFER_RESULT",
    "SQL_CACHE",
    "SQL_NO_CACHE",
    "SQL_CALC_FOUND_ROWS",
];

/// How to answer `sql` (a statement `classify` marked `needs_previous`) from `d`.
pub fn answer(sql: &str, d: &Diagnostics) -> Answer {
    let tokens = tokenize(sql);
    let end = tokens
        .iter()
        .position(|t| t.is_punct(';'))
        .unwrap_or(tokens.len());
    if tokens.len() > end + 1 {
        return Answer::Refuse("several statements in one query".into());
    }
    let t = &tokens[..end];
    if t.first().is_some_and(|t| t.is_word("SHOW")) {
        return show(t, sql, d);
    }
    // Replacements: (token range, new text).
    let mut edits: Vec<(usize, usize, String)> = Vec::new();
    let mut i = 0;
    while i < t.len() {
        let call = |name: &str| {
            t[i].is_word(name)
                && t.get(i + 1).is_some_and(|n| n.is_punct('('))
                && t.get(i + 2).is_some_and(|n| n.is_punct(')'))
        };
        let original = |from: usize, to: usize| &sql[t[from].start..t[to].end];
        if call("ROW_COUNT") {
            edits.push((
                i,
                i + 2,
                format!("IF(1, {}, {})", d.row_count, original(i, i + 2)),
            ));
            i += 3;
        } else if call("FOUND_ROWS") {
            match d.found_rows {
                FoundRows::Known(n) => {
                    edits.push((i, i + 2, format!("IF(1, {n}, {})", original(i, i + 2))))
                }
                FoundRows::Backend => {}
                FoundRows::Unknown => {
                    return Answer::Refuse(
                        "FOUND_ROWS() right after a write the proxy ran on several shards (it \
                         would answer the row count of the SELECT before it, which the proxy \
                         does not track)"
                            .into(),
                    )
                }
            }
            i += 3;
        } else if let TokenKind::SysVar(v) = &t[i].kind {
            let n = match v.as_str() {
                "warning_count" => Some(d.warning_count),
                "error_count" => Some(d.error_count()),
                _ => None,
            };
            if let Some(n) = n {
                // CAST keeps the UNSIGNED type of the variable (a plain literal would make the
                // IF a DECIMAL).
                edits.push((
                    i,
                    i,
                    format!("IF(1, CAST({n} AS UNSIGNED), {})", original(i, i)),
                ));
            }
            i += 1;
        } else {
            i += 1;
        }
    }
    if edits.is_empty() {
        return Answer::AsIs;
    }
    let aliases = match item_aliases(t, sql, &edits) {
        Ok(a) => a,
        Err(why) => return Answer::Refuse(why),
    };
    // Apply edits and aliases in text order.
    let mut inserts: Vec<(usize, usize, String)> = edits
        .iter()
        .map(|(a, b, text)| (t[*a].start, t[*b].end, text.clone()))
        .collect();
    inserts.extend(aliases.into_iter().map(|(at, text)| (at, at, text)));
    inserts.sort_by_key(|(a, b, _)| (*a, *b));
    let mut out = String::with_capacity(sql.len() + 64);
    let mut last = 0;
    for (a, b, text) in inserts {
        out.push_str(&sql[last..a]);
        out.push_str(&text);
        last = b;
    }
    out.push_str(&sql[last..]);
    Answer::Rewrite(out)
}

/// ` AS `name`` to insert after the select items whose name would change with the rewrite:
/// (byte offset, text). Items with an alias keep it.
fn item_aliases(
    t: &[Token],
    sql: &str,
    edits: &[(usize, usize, String)],
) -> Result<Vec<(usize, String)>, String> {
    if !t.first().is_some_and(|t| t.is_word("SELECT")) {
        // DO, SET, INSERT … : no result-set column is named after the expression, except in a
        // subquery.
        if t.iter().any(|t| t.is_word("SELECT")) {
            return Err("a subquery asking about the previous statement".into());
        }
        return Ok(Vec::new());
    }
    if t.iter().skip(1).any(|t| t.is_word("SELECT")) {
        return Err("a subquery asking about the previous statement".into());
    }
    // The item list: after SELECT and its modifiers, up to the first clause word at depth 0.
    let mut start = 1;
    while t
        .get(start)
        .and_then(|t| t.word())
        .is_some_and(|w| SELECT_MODIFIERS.contains(&w))
    {
        start += 1;
    }
    let mut depth = 0i32;
    let mut items: Vec<(usize, usize)> = Vec::new();
    let mut item_start = start;
    let mut end = t.len();
    for (i, tok) in t.iter().enumerate().skip(start) {
        if tok.is_punct('(') {
            depth += 1;
        } else if tok.is_punct(')') {
            depth -= 1;
        } else if depth == 0 {
            if tok.is_punct(',') {
                items.push((item_start, i));
                item_start = i + 1;
            } else if tok.word().is_some_and(|w| END_OF_ITEMS.contains(&w)) {
                end = i;
                break;
            }
        }
    }
    items.push((item_start, end));
    let mut out = Vec::new();
    for (a, b) in items {
        if a >= b {
            continue;
        }
        let edited = edits.iter().any(|(ea, _, _)| *ea >= a && *ea < b);
        if !edited {
            continue;
        }
        let item = &t[a..b];
        let n = item.len();
        let is_name = |t: &Token| {
            matches!(
                t.kind,
                TokenKind::Word(_) | TokenKind::Quoted(_) | TokenKind::Str
            )
        };
        // `expr AS name`, or `f() name` (an implicit alias right after the call).
        let explicit = n >= 3 && item[n - 2].is_word("AS") && is_name(&item[n - 1]);
        let implicit = n >= 2
            && is_name(&item[n - 1])
            && (item[n - 2].is_punct(')') || matches!(item[n - 2].kind, TokenKind::SysVar(_)))
            && edits.iter().any(|(_, eb, _)| *eb == a + n - 2);
        if explicit || implicit {
            continue;
        }
        if is_name(&item[n - 1]) {
            // Could be an implicit alias of an expression, or a keyword (`IS NULL`): the
            // column name cannot be derived safely.
            return Err(
                "an expression using it without `AS alias`; give the column an alias".into(),
            );
        }
        let text = &sql[item[0].start..item[n - 1].end];
        if text.chars().count() > 64 {
            return Err("a long unaliased expression using it; give the column an alias".into());
        }
        out.push((
            item[n - 1].end,
            format!(" AS `{}`", text.replace('`', "``")),
        ));
    }
    Ok(out)
}

/// `SHOW WARNINGS|ERRORS [LIMIT [o,] n]`, `SHOW COUNT(*) WARNINGS|ERRORS`.
fn show(t: &[Token], sql: &str, d: &Diagnostics) -> Answer {
    let word = |i: usize| t.get(i).and_then(|t| t.word()).unwrap_or("");
    if word(1) == "COUNT"
        && t.get(2).is_some_and(|x| x.is_punct('('))
        && t.get(3).is_some_and(|x| x.is_punct('*'))
        && t.get(4).is_some_and(|x| x.is_punct(')'))
        && matches!(word(5), "WARNINGS" | "ERRORS")
        && t.len() == 6
    {
        let (n, var) = if word(5) == "WARNINGS" {
            (d.warning_count, "warning_count")
        } else {
            (d.error_count(), "error_count")
        };
        return Answer::Rewrite(format!(
            "SELECT IF(1, CAST({n} AS UNSIGNED), @@{var}) AS `@@session.{var}`"
        ));
    }
    let errors_only = match word(1) {
        "WARNINGS" => false,
        "ERRORS" => true,
        _ => return Answer::Refuse("this SHOW form".into()),
    };
    let num = |i: usize| -> Option<usize> {
        let x = t.get(i)?;
        (x.kind == TokenKind::Number)
            .then(|| sql[x.start..x.end].parse().ok())
            .flatten()
    };
    let (offset, limit) = match t.len() {
        2 => (0, None),
        4 if word(2) == "LIMIT" => match num(3) {
            Some(n) => (0, Some(n)),
            None => return Answer::Refuse("this SHOW WARNINGS LIMIT".into()),
        },
        6 if word(2) == "LIMIT" && t[4].is_punct(',') => match (num(3), num(5)) {
            (Some(o), Some(n)) => (o, Some(n)),
            _ => return Answer::Refuse("this SHOW WARNINGS LIMIT".into()),
        },
        _ => return Answer::Refuse("this SHOW WARNINGS form".into()),
    };
    Answer::Show {
        errors_only,
        offset,
        limit,
    }
}

/// The rows `SHOW WARNINGS`/`SHOW ERRORS` lists.
pub fn listed(
    d: &Diagnostics,
    errors_only: bool,
    offset: usize,
    limit: Option<usize>,
) -> Vec<&Condition> {
    d.conditions
        .iter()
        .filter(|c| !errors_only || c.level == "Error")
        .skip(offset)
        .take(limit.unwrap_or(usize::MAX))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d() -> Diagnostics {
        Diagnostics {
            row_count: 4,
            found_rows: FoundRows::Known(7),
            conditions: vec![
                Condition {
                    level: "Warning".into(),
                    code: 1062,
                    message: "Duplicate entry '1' for key 'PRIMARY'".into(),
                },
                Condition {
                    level: "Error".into(),
                    code: 1146,
                    message: "x".into(),
                },
            ],
            warning_count: 2,
        }
    }

    fn rewrite(sql: &str) -> String {
        match answer(sql, &d()) {
            Answer::Rewrite(s) => s,
            other => panic!("{sql}: {other:?}"),
        }
    }

    #[test]
    fn functions_become_values_with_the_same_type_and_name() {
        assert_eq!(
            rewrite("SELECT ROW_COUNT()"),
            "SELECT IF(1, 4, ROW_COUNT()) AS `ROW_COUNT()`"
        );
        assert_eq!(
            rewrite("select row_count( ) as n, FOUND_ROWS() f;"),
            "select IF(1, 4, row_count( )) as n, IF(1, 7, FOUND_ROWS()) f;"
        );
        assert_eq!(
            rewrite("SELECT ROW_COUNT() + 1, 2"),
            "SELECT IF(1, 4, ROW_COUNT()) + 1 AS `ROW_COUNT() + 1`, 2"
        );
        assert_eq!(
            rewrite("SELECT @@warning_count, @@session.error_count"),
            "SELECT IF(1, CAST(2 AS UNSIGNED), @@warning_count) AS `@@warning_count`, \
             IF(1, CAST(1 AS UNSIGNED), @@session.error_count) AS `@@session.error_count`"
        );
        assert_eq!(
            rewrite("SELECT ROW_COUNT() AS after_split_insert"),
            "SELECT IF(1, 4, ROW_COUNT()) AS after_split_insert"
        );
        assert_eq!(
            rewrite("SELECT a FROM t WHERE ROW_COUNT() > 0"),
            "SELECT a FROM t WHERE IF(1, 4, ROW_COUNT()) > 0"
        );
        assert_eq!(
            rewrite("SHOW COUNT(*) WARNINGS"),
            "SELECT IF(1, CAST(2 AS UNSIGNED), @@warning_count) AS `@@session.warning_count`"
        );
    }

    #[test]
    fn unnameable_shapes_are_refused() {
        for sql in [
            "SELECT ROW_COUNT() IS NULL",
            "SELECT (SELECT ROW_COUNT())",
            "SELECT ROW_COUNT(); SELECT 1",
            "SHOW WARNINGS LIKE 'x'",
        ] {
            assert!(matches!(answer(sql, &d()), Answer::Refuse(_)), "{sql}");
        }
        let mut w = d();
        w.found_rows = FoundRows::Backend;
        assert_eq!(answer("SELECT FOUND_ROWS()", &w), Answer::AsIs);
        w.found_rows = FoundRows::Unknown;
        assert!(matches!(
            answer("SELECT FOUND_ROWS()", &w),
            Answer::Refuse(_)
        ));
    }

    #[test]
    fn show_warnings_forms() {
        assert_eq!(
            answer("SHOW WARNINGS", &d()),
            Answer::Show {
                errors_only: false,
                offset: 0,
                limit: None
            }
        );
        assert_eq!(
            answer("show errors limit 1, 2;", &d()),
            Answer::Show {
                errors_only: true,
                offset: 1,
                limit: Some(2)
            }
        );
        let x = d();
        assert_eq!(listed(&x, true, 0, None).len(), 1);
        assert_eq!(listed(&x, false, 1, Some(5)).len(), 1);
    }
}
