//! Column names of the rewritten select list.
//!
//! MariaDB names an unaliased select item after its text as the client typed it
//! (`COUNT(*)*2`). The shard SQL is rendered from the AST, which spells expressions its own way
//! (`COUNT(*) * 2`), so each shard would name the column differently from one server. Each
//! such item is given its original text as an alias in the shard SQL; the text is found by
//! splitting the client's select list at its top-level commas (comments and strings skipped by
//! the lexer) and kept only when it parses back to the same expression.

use sqlparser::ast::{Expr, Ident, SelectItem};
use sqlparser::dialect::MySqlDialect;
use sqlparser::parser::Parser;

use crate::lex::{tokenize, TokenKind};

/// Words that may follow SELECT before the first item.
const MODIFIERS: &[&str] = &[
    "DISTINCT",
    "DISTINCTROW",
    "ALL",
    "HIGH_PRIORITY",
    "STRAIGHT_JOIN",
    "SQL_SMALL_RESULT",
    "SQL_BIG_RESULT",
    "SQL_BUFFER_RESULT",
    "SQL_CACHE",
    "SQL_NO_CACHE",
    "SQL_CALC_FOUND_ROWS",
];

/// Words that end the select list at the top level.
const ENDS: &[&str] = &[
    "FROM",
    "WHERE",
    "GROUP",
    "HAVING",
    "ORDER",
    "LIMIT",
    "INTO",
    "FOR",
    "LOCK",
    "WINDOW",
    "UNION",
    "EXCEPT",
    "INTERSECT",
];

/// The original text of each item of the first SELECT's list, in order.
fn item_texts(sql: &str) -> Vec<&str> {
    item_ranges(sql)
        .into_iter()
        .map(|(s, e)| &sql[s..e])
        .collect()
}

/// The byte range of each item of the first SELECT's list, in order (also where a staged
/// plan puts the alias that keeps a select item's name: `plan/subquery.rs`).
pub(crate) fn item_ranges(sql: &str) -> Vec<(usize, usize)> {
    let tokens = tokenize(sql);
    let Some(start) = tokens.iter().position(|t| t.is_word("SELECT")) else {
        return Vec::new();
    };
    let mut i = start + 1;
    while tokens
        .get(i)
        .and_then(|t| t.word())
        .is_some_and(|w| MODIFIERS.contains(&w))
    {
        i += 1;
    }
    let mut items = Vec::new();
    let mut depth = 0usize;
    let mut first: Option<usize> = None;
    let mut last = 0;
    for t in &tokens[i..] {
        match &t.kind {
            TokenKind::Punct('(') => depth += 1,
            TokenKind::Punct(')') => depth = depth.saturating_sub(1),
            TokenKind::Punct(',') | TokenKind::Punct(';') if depth == 0 => {
                if let Some(f) = first.take() {
                    items.push((f, last));
                }
                if t.is_punct(';') {
                    return items;
                }
                continue;
            }
            TokenKind::Word(w) if depth == 0 && ENDS.contains(&w.as_str()) => break,
            _ => {}
        }
        first.get_or_insert(t.start);
        last = t.end;
    }
    if let Some(f) = first {
        items.push((f, last));
    }
    items
}

/// Gives each unaliased expression item among the first `visible` its original text as alias.
pub(crate) fn keep_names(sql: &str, projection: &mut [SelectItem], visible: usize) {
    let texts = item_texts(sql);
    if texts.len() != visible {
        return;
    }
    for (item, text) in projection.iter_mut().zip(texts) {
        let SelectItem::UnnamedExpr(e) = item else {
            continue;
        };
        if matches!(e, Expr::Identifier(_) | Expr::CompoundIdentifier(_)) {
            continue;
        }
        let rendered = e.to_string();
        let commented = text.contains("/*") || text.contains('#') || text.contains("--");
        if text == rendered || commented || text.contains('`') || text.len() > 250 {
            continue;
        }
        let same = Parser::new(&MySqlDialect {})
            .try_with_sql(text)
            .and_then(|mut p| p.parse_expr())
            .is_ok_and(|parsed| parsed.to_string() == rendered);
        if same {
            *item = SelectItem::ExprWithAlias {
                expr: e.clone(),
                alias: Ident::with_quote('`', text),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_split_at_top_level_commas() {
        assert_eq!(
            item_texts("select DISTINCT COUNT(*)*2, CONCAT(a, ',', b) c, x /* , */ FROM t, u"),
            ["COUNT(*)*2", "CONCAT(a, ',', b) c", "x"]
        );
        assert_eq!(item_texts("SELECT 1+1"), ["1+1"]);
    }

    #[test]
    fn shard_sql_names_columns_as_typed() {
        use crate::plan::testutil::*;
        let (sql, _) =
            scatter("SELECT COUNT(*)*2, SUM(balance)/COUNT(*) r, fund FROM accounts GROUP BY fund");
        assert_eq!(
            sql,
            "SELECT COUNT(*) * 2 AS `COUNT(*)*2`, SUM(balance) / COUNT(*) AS r, fund, COUNT(*), SUM(balance) FROM accounts GROUP BY fund"
        );
    }
}
