//! `INSERT INTO t VALUES (…)` without a column list, into a sharded table.
//!
//! The planner places each row by its shard key, so it must know which value is the key; a
//! statement without a column list gives the values in the table's column order, which only
//! the server knows. The session asks the default shard for that order
//! (`information_schema.COLUMNS`, without INVISIBLE columns, which such an INSERT does not
//! fill either), writes the list into the statement after the table name, and plans the result:
//! the same statement, spelt out (for a prepared statement, at prepare: its executes then run
//! as for any INSERT with columns). Nothing is cached, so a table altered behind the proxy's
//! back is still read right; the extra round trip is paid only by statements of this form.
//! Only `VALUES` forms are filled in (`INSERT … SET` names its columns, `INSERT … SELECT` into
//! a sharded table is refused anyway).

use crate::lex::{tokenize, Token, TokenKind};

/// Where an INSERT without a column list names its table.
#[derive(Debug, PartialEq, Eq)]
pub struct Slot {
    /// `db` of `db.table`, if given.
    pub schema: Option<String>,
    pub table: String,
    /// Byte offset right after the table name, where the column list goes.
    pub at: usize,
}

/// The slot of `INSERT|REPLACE [modifiers] [INTO] [db.]table VALUES|VALUE …`; `None` for any
/// other statement (including one that has a column list).
pub fn slot(sql: &str) -> Option<Slot> {
    let t = tokenize(sql);
    let word = |i: usize| t.get(i).and_then(Token::word).unwrap_or("");
    if !matches!(word(0), "INSERT" | "REPLACE") {
        return None;
    }
    let mut i = 1;
    while matches!(
        word(i),
        "LOW_PRIORITY" | "DELAYED" | "HIGH_PRIORITY" | "IGNORE"
    ) {
        i += 1;
    }
    if word(i) == "INTO" {
        i += 1;
    }
    let name = |tok: &Token| match &tok.kind {
        TokenKind::Word(_) => Some(sql[tok.start..tok.end].to_string()),
        TokenKind::Quoted(q) => Some(q.clone()),
        _ => None,
    };
    let first = name(t.get(i)?)?;
    let (schema, table, last) = if t.get(i + 1).is_some_and(|d| d.is_punct('.')) {
        (Some(first), name(t.get(i + 2)?)?, i + 2)
    } else {
        (None, first, i)
    };
    if !matches!(word(last + 1), "VALUES" | "VALUE") {
        return None;
    }
    Some(Slot {
        schema,
        table,
        at: t[last].end,
    })
}

/// The statement with `columns` listed after the table name.
pub fn splice(sql: &str, slot: &Slot, columns: &[String]) -> String {
    let list: Vec<String> = columns
        .iter()
        .map(|c| format!("`{}`", c.replace('`', "``")))
        .collect();
    format!(
        "{} ({}){}",
        &sql[..slot.at],
        list.join(", "),
        &sql[slot.at..]
    )
}

/// The query that lists a table's columns in the order an INSERT without a column list fills.
pub fn columns_query(schema: &str, table: &str) -> String {
    format!(
        "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = {} AND \
         TABLE_NAME = {} AND EXTRA NOT LIKE '%INVISIBLE%' ORDER BY ORDINAL_POSITION",
        quote(schema),
        quote(table)
    )
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_table_of_an_insert_without_columns() {
        let sql = "INSERT INTO accounts VALUES (1, 'a')";
        let s = slot(sql).unwrap();
        assert_eq!((s.schema.as_deref(), s.table.as_str()), (None, "accounts"));
        assert_eq!(
            splice(sql, &s, &["account_id".into(), "name".into()]),
            "INSERT INTO accounts (`account_id`, `name`) VALUES (1, 'a')"
        );
        let sql = "replace low_priority fund.`acc``ts` value (1)";
        let s = slot(sql).unwrap();
        assert_eq!(s.schema.as_deref(), Some("fund"));
        assert_eq!(s.table, "acc`ts");
        assert_eq!(
            splice(sql, &s, &["id".into()]),
            "replace low_priority fund.`acc``ts` (`id`) value (1)"
        );
        let s = slot("INSERT IGNORE t VALUES (1)").unwrap();
        assert_eq!(s.table, "t");
    }

    #[test]
    fn leaves_other_statements_alone() {
        for sql in [
            "INSERT INTO accounts (account_id) VALUES (1)",
            "INSERT INTO accounts SET account_id = 1",
            "INSERT INTO accounts SELECT * FROM other",
            "INSERT INTO accounts PARTITION (p0) VALUES (1)",
            "UPDATE accounts SET a = 1",
            "SELECT 'INSERT INTO t VALUES (1)'",
        ] {
            assert_eq!(slot(sql), None, "{sql}");
        }
    }

    #[test]
    fn the_columns_query_quotes_names() {
        assert_eq!(
            columns_query("fund", "o'k"),
            "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = 'fund' AND \
             TABLE_NAME = 'o''k' AND EXTRA NOT LIKE '%INVISIBLE%' ORDER BY ORDINAL_POSITION"
        );
    }
}
