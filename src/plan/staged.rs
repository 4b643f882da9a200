//! A staged plan: a statement whose uncorrelated subqueries run first, on their own, through
//! the ordinary planner and executor (each may itself scatter and merge); their answers are put
//! in place as literals, and the statement that results is planned and run as if the client
//! had sent it (so `key IN (SELECT …)` goes only to the shards its values name).
//!
//! This file is the second half of that: the [`Staged`] plan ([`super::subquery`] builds it)
//! and the *rendering* of the outer statement from the subqueries' answers, spliced into the
//! client's original text by byte ranges the planner found and checked (never re-rendered
//! from the AST, NOTES: forward the original text).
//!
//! # Values as literals, exactly
//! A value keeps its meaning only if its literal has the same type as the column it came from:
//! integers and DECIMALs as their digits (a DECIMAL literal is exact), `DATE'…'`,
//! `TIMESTAMP'…'`, `TIME'…'` for temporal values, strings quoted with `''` doubled (no
//! backslash or NUL byte, whose meaning depends on the session's `sql_mode`), binary strings
//! and BITs as `X'…'`, NULL as `NULL`. FLOAT and DOUBLE are refused: their text form is
//! rounded, so the literal would not equal the value. In the select list a scalar subquery
//! keeps its column's type: integers and DECIMALs are written as a `CAST` to the inner
//! column's type.
//!
//! # MariaDB's semantics
//! - `x IN (SELECT …)` with no rows is false, `x NOT IN (SELECT …)` true, whatever `x` (even
//!   NULL): the whole predicate becomes `(0)` or `(1)`; otherwise `x IN (v1, v2, …)`, which
//!   keeps SQL's three-valued logic for NULLs on either side (`NOT IN` a set with a NULL is
//!   never true).
//! - A scalar subquery with no rows is NULL; with more than one row, error 1242
//!   (ER_SUBQUERY_NO_1_ROW, SQLSTATE 21000), as MariaDB gives it.
//! - A subquery with the wrong number of columns for its place: error 1241
//!   (ER_OPERAND_COLUMNS, SQLSTATE 21000).
//! - `EXISTS (SELECT …)` is `(1)` when the subquery returned a row, else `(0)`.
//!
//! The number of values is bounded by `[merge] max_subquery_values`; past it the statement
//! fails with error 1235 naming the bound, before the outer statement runs.

use std::fmt;
use std::ops::Range;

use bytes::Bytes;

use super::Plan;
use crate::protocol::resultset::BINARY_CHARSET;
use crate::protocol::resultset::{column_flags, column_type as ct, ColumnDef, TextRow};

/// A statement whose subqueries run first.
#[derive(Debug, Clone, PartialEq)]
pub struct Staged {
    /// The statement as the client sent it; every range below indexes into it.
    pub sql: String,
    /// The subqueries run first, in text order, not overlapping.
    pub parts: Vec<Part>,
    /// Unaliased select items that hold a subquery: where the item ends and its original
    /// text, given as an alias so the column keeps the name MariaDB gives it.
    pub names: Vec<(usize, String)>,
    /// When a select item holds a subquery: the statement itself with `WHERE FALSE`, whose
    /// answer (no rows, from any one shard) has the column definitions MariaDB gives the
    /// statement. A spliced literal is typed by its text (`x IN (1, 2)` is an INT(1) where
    /// `x IN (SELECT …)` is an INT(21); `596` is an INT(3) where `(SELECT COUNT(*) …)` is a
    /// BIGINT(21)), so the session puts these definitions on the answer.
    pub types_sql: Option<String>,
}

/// One subquery of a staged plan.
#[derive(Debug, Clone, PartialEq)]
pub struct Part {
    /// The bytes of [`Staged::sql`] the subquery's values replace.
    pub span: Range<usize>,
    /// How its values replace them.
    pub kind: PartKind,
    /// The subquery's own text (inside its parentheses), planned and run alone.
    pub inner_sql: String,
    /// Its plan.
    pub inner: Plan,
}

/// Where a subquery sits, which decides how its answer is written.
#[derive(Debug, Clone, PartialEq)]
pub enum PartKind {
    /// `left [NOT] IN (SELECT …)`: the span covers the whole predicate; `left` is the range
    /// of the left operand's text, `width` the number of values it has (a row `(a, b)`: 2).
    In {
        left: Range<usize>,
        negated: bool,
        width: usize,
    },
    /// `(SELECT …)` giving one value; the span covers the parentheses. `in_select_list`: the
    /// value is a column of the answer, so its literal keeps the inner column's type.
    Scalar { in_select_list: bool },
    /// `EXISTS (SELECT …)`: the span covers `EXISTS (…)`.
    Exists,
}

/// A subquery's answer: its columns and rows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Answer {
    /// The column definitions of the subquery's result.
    pub columns: Vec<ColumnDef>,
    /// Its rows, in the order they came.
    pub rows: Vec<TextRow>,
}

/// Why the outer statement could not be written from the answers. Each renders its MariaDB
/// error code, SQLSTATE and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StageError {
    /// A scalar subquery returned more than one row (1242, 21000).
    MoreThanOneRow,
    /// A subquery returned `got` columns where its place takes `want` (1241, 21000).
    Columns { want: usize },
    /// More values than `[merge] max_subquery_values` (1235, 42000).
    TooManyValues { bound: usize },
    /// A value with no exact literal (1235, 42000): what it is.
    NoExactLiteral(&'static str),
}

impl StageError {
    /// The MySQL error code the client gets.
    pub fn code(&self) -> u16 {
        match self {
            StageError::MoreThanOneRow => 1242,
            StageError::Columns { .. } => 1241,
            StageError::TooManyValues { .. } | StageError::NoExactLiteral(_) => 1235,
        }
    }

    /// The SQLSTATE the client gets.
    pub fn sqlstate(&self) -> &'static str {
        match self {
            StageError::MoreThanOneRow | StageError::Columns { .. } => "21000",
            StageError::TooManyValues { .. } | StageError::NoExactLiteral(_) => "42000",
        }
    }
}

impl fmt::Display for StageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StageError::MoreThanOneRow => f.write_str("Subquery returns more than 1 row"),
            StageError::Columns { want } => write!(f, "Operand should contain {want} column(s)"),
            StageError::TooManyValues { bound } => write!(
                f,
                "shardproxy: a subquery over sharded tables returned more than {bound} values \
                 ([merge] max_subquery_values), which the proxy puts in place of the subquery; \
                 narrow the subquery or raise the bound"
            ),
            StageError::NoExactLiteral(what) => write!(
                f,
                "shardproxy: a subquery over sharded tables returned {what}, which the proxy \
                 cannot write as an exact literal in place of the subquery"
            ),
        }
    }
}

impl Part {
    /// The columns the subquery's place takes.
    pub fn width(&self) -> usize {
        match &self.kind {
            PartKind::In { width, .. } => *width,
            PartKind::Scalar { .. } => 1,
            // EXISTS ignores the select list.
            PartKind::Exists => 0,
        }
    }

    /// Checks an answer's shape against the subquery's place as it arrives: the number of
    /// columns, and for a scalar subquery at most one row. Called by the executor before
    /// the rows are rendered, so a bad shape fails without reading further.
    pub fn check(&self, columns: usize, rows: usize) -> Result<(), StageError> {
        let want = self.width();
        if want != 0 && columns != want {
            return Err(StageError::Columns { want });
        }
        if matches!(self.kind, PartKind::Scalar { .. }) && rows > 1 {
            return Err(StageError::MoreThanOneRow);
        }
        Ok(())
    }

    /// The text that replaces the part's span, given its answer.
    pub fn replacement(&self, sql: &str, a: &Answer) -> Result<String, StageError> {
        self.check(a.columns.len(), a.rows.len())?;
        match &self.kind {
            PartKind::Exists => Ok(if a.rows.is_empty() { "(0)" } else { "(1)" }.into()),
            // In its parentheses: `a-(SELECT …)` must not become `a--5`.
            PartKind::Scalar { in_select_list } => {
                let v = a.rows.first().and_then(|row| row[0].as_ref());
                Ok(format!("({})", literal(&a.columns[0], v, *in_select_list)?))
            }
            PartKind::In {
                left,
                negated,
                width,
            } => {
                if a.rows.is_empty() {
                    // No rows: false for IN, true for NOT IN, even for a NULL operand.
                    return Ok(if *negated { "(1)" } else { "(0)" }.into());
                }
                let mut list = String::new();
                for (i, row) in a.rows.iter().enumerate() {
                    if i > 0 {
                        list.push_str(", ");
                    }
                    if *width > 1 {
                        list.push('(');
                    }
                    for (j, (col, v)) in a.columns.iter().zip(row).enumerate() {
                        if j > 0 {
                            list.push_str(", ");
                        }
                        list.push_str(&literal(col, v.as_ref(), false)?);
                    }
                    if *width > 1 {
                        list.push(')');
                    }
                }
                let not = if *negated { "NOT " } else { "" };
                Ok(format!("{} {not}IN ({list})", &sql[left.clone()]))
            }
        }
    }
}

impl Staged {
    /// The outer statement with every part's answer in place (`answers[i]` is `parts[i]`'s)
    /// and the names of select items that held a subquery kept as aliases.
    pub fn render(&self, answers: &[Answer]) -> Result<String, StageError> {
        let mut edits: Vec<(Range<usize>, String)> = Vec::new();
        for (part, a) in self.parts.iter().zip(answers) {
            edits.push((part.span.clone(), part.replacement(&self.sql, a)?));
        }
        for (at, name) in &self.names {
            edits.push((*at..*at, format!(" AS `{}`", name.replace('`', "``"))));
        }
        edits.sort_by_key(|(r, _)| (r.start, r.end));
        let mut out = String::with_capacity(self.sql.len() + 64);
        let mut pos = 0;
        for (r, text) in edits {
            out.push_str(&self.sql[pos..r.start]);
            out.push_str(&text);
            pos = r.end;
        }
        out.push_str(&self.sql[pos..]);
        Ok(out)
    }
}

/// The literal of one value of column `col`. `keep_type`: in the select list, where the
/// literal is the answer's column, integers and DECIMALs are cast to the column's type.
pub fn literal(col: &ColumnDef, v: Option<&Bytes>, keep_type: bool) -> Result<String, StageError> {
    let unsigned = col.flags & column_flags::UNSIGNED != 0;
    let cast = |v: &str| -> Option<String> {
        match col.column_type {
            ct::TINY | ct::SHORT | ct::LONG | ct::INT24 | ct::LONGLONG => {
                let to = if unsigned { "UNSIGNED" } else { "SIGNED" };
                Some(format!("CAST({v} AS {to})"))
            }
            ct::DECIMAL | ct::NEWDECIMAL => {
                let d = u32::from(col.decimals.min(38));
                let overhead = u32::from(d > 0) + u32::from(!unsigned);
                let m = col.length.saturating_sub(overhead).clamp(d.max(1), 65);
                Some(format!("CAST({v} AS DECIMAL({m},{d}))"))
            }
            _ => None,
        }
    };
    let Some(v) = v else {
        return Ok(match keep_type.then(|| cast("NULL")).flatten() {
            Some(c) => c,
            None => "NULL".into(),
        });
    };
    let text = std::str::from_utf8(v).ok();
    let digits = |t: &str| {
        !t.is_empty()
            && t.bytes()
                .all(|b| b.is_ascii_digit() || matches!(b, b'-' | b'+' | b'.'))
    };
    match col.column_type {
        ct::TINY
        | ct::SHORT
        | ct::LONG
        | ct::INT24
        | ct::LONGLONG
        | ct::YEAR
        | ct::DECIMAL
        | ct::NEWDECIMAL => match text.filter(|t| digits(t)) {
            Some(t) => Ok(match keep_type.then(|| cast(t)).flatten() {
                Some(c) => c,
                None => t.to_string(),
            }),
            None => Err(StageError::NoExactLiteral("a number the proxy cannot read")),
        },
        ct::FLOAT | ct::DOUBLE => Err(StageError::NoExactLiteral(
            "FLOAT or DOUBLE values (their text form is rounded)",
        )),
        ct::DATE | ct::NEWDATE | ct::DATETIME | ct::TIMESTAMP | ct::TIME => {
            let t = text
                .filter(|t| {
                    t.bytes()
                        .all(|b| b.is_ascii_digit() || b" -:.".contains(&b))
                })
                .ok_or(StageError::NoExactLiteral(
                    "a temporal value the proxy cannot read",
                ))?;
            // A zero date has no typed literal; as a string it compares the same way.
            if t.bytes().all(|b| !(b'1'..=b'9').contains(&b)) {
                return Ok(format!("'{t}'"));
            }
            let kind = match col.column_type {
                ct::DATE | ct::NEWDATE => "DATE",
                ct::TIME => "TIME",
                _ => "TIMESTAMP",
            };
            Ok(format!("{kind}'{t}'"))
        }
        ct::BIT => Ok(hex(v)),
        ct::GEOMETRY => Err(StageError::NoExactLiteral("a geometry value")),
        _ if col.charset == BINARY_CHARSET => Ok(hex(v)),
        _ => match text {
            Some(t) if !t.contains('\\') && !t.contains('\0') => {
                Ok(format!("'{}'", t.replace('\'', "''")))
            }
            Some(_) => Err(StageError::NoExactLiteral(
                "a string with a backslash or NUL byte",
            )),
            None => Err(StageError::NoExactLiteral("a string that is not UTF-8")),
        },
    }
}

/// `X'…'`: bytes as a hexadecimal literal.
fn hex(v: &[u8]) -> String {
    let mut s = String::with_capacity(3 + v.len() * 2);
    s.push_str("X'");
    for b in v {
        s.push_str(&format!("{b:02X}"));
    }
    s.push('\'');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(column_type: u8) -> ColumnDef {
        let mut c = ColumnDef::text("v");
        c.column_type = column_type;
        c
    }

    fn answer(columns: Vec<ColumnDef>, rows: &[&[Option<&str>]]) -> Answer {
        Answer {
            columns,
            rows: rows
                .iter()
                .map(|r| {
                    r.iter()
                        .map(|v| v.map(|s| Bytes::copy_from_slice(s.as_bytes())))
                        .collect()
                })
                .collect(),
        }
    }

    fn staged(sql: &str, parts: Vec<(&str, PartKind)>) -> Staged {
        let parts = parts
            .into_iter()
            .map(|(text, kind)| {
                let start = sql.find(text).unwrap();
                Part {
                    span: start..start + text.len(),
                    kind,
                    inner_sql: String::new(),
                    inner: Plan::single("s1", super::super::SingleReason::NoShardedTable),
                }
            })
            .collect();
        Staged {
            sql: sql.into(),
            parts,
            names: Vec::new(),
            types_sql: None,
        }
    }

    fn in_part(sql: &str, left: &str, negated: bool) -> PartKind {
        let s = sql.find(left).unwrap();
        PartKind::In {
            left: s..s + left.len(),
            negated,
            width: 1,
        }
    }

    #[test]
    fn in_list_quotes_every_type_exactly() {
        let sql = "SELECT * FROM t WHERE a IN (SELECT x FROM u) AND b = 1";
        let st = staged(
            sql,
            vec![("a IN (SELECT x FROM u)", in_part(sql, "a", false))],
        );
        let cases: Vec<(u8, &str, &str)> = vec![
            (ct::LONGLONG, "-42", "-42"),
            (ct::NEWDECIMAL, "12.30", "12.30"),
            (ct::DATE, "2026-01-02", "DATE'2026-01-02'"),
            (ct::DATE, "0000-00-00", "'0000-00-00'"),
            (
                ct::DATETIME,
                "2026-01-02 03:04:05.25",
                "TIMESTAMP'2026-01-02 03:04:05.25'",
            ),
            (ct::TIME, "-01:02:03", "TIME'-01:02:03'"),
            (ct::VAR_STRING, "O'Brien", "'O''Brien'"),
            (ct::VAR_STRING, "Zoë", "'Zoë'"),
        ];
        for (t, v, want) in cases {
            let a = answer(vec![col(t)], &[&[Some(v)], &[None]]);
            assert_eq!(
                st.render(&[a]).unwrap(),
                format!("SELECT * FROM t WHERE a IN ({want}, NULL) AND b = 1")
            );
        }
        let mut bin = col(ct::BLOB);
        bin.charset = BINARY_CHARSET;
        let a = answer(vec![bin], &[&[Some("a\\b")]]);
        assert_eq!(
            st.render(&[a]).unwrap(),
            "SELECT * FROM t WHERE a IN (X'615C62') AND b = 1"
        );
    }

    #[test]
    fn values_without_an_exact_literal_are_refused() {
        for (t, v) in [
            (ct::DOUBLE, "0.1"),
            (ct::FLOAT, "0.1"),
            (ct::VAR_STRING, "a\\b"),
            (ct::LONGLONG, "1; DROP"),
            (ct::DATE, "2026-01-01' OR '1"),
        ] {
            let e = literal(&col(t), Some(&Bytes::copy_from_slice(v.as_bytes())), false);
            let e = e.unwrap_err();
            assert_eq!((e.code(), e.sqlstate()), (1235, "42000"), "{v}");
        }
    }

    #[test]
    fn empty_in_is_false_and_empty_not_in_true() {
        let sql = "SELECT a NOT IN (SELECT x FROM u), b FROM t WHERE NOT a IN (SELECT y FROM v)";
        let st = staged(
            sql,
            vec![
                ("a NOT IN (SELECT x FROM u)", in_part(sql, "a", true)),
                ("a IN (SELECT y FROM v)", {
                    let s = sql.rfind("a IN").unwrap();
                    PartKind::In {
                        left: s..s + 1,
                        negated: false,
                        width: 1,
                    }
                }),
            ],
        );
        let empty = answer(vec![col(ct::LONG)], &[]);
        assert_eq!(
            st.render(&[empty.clone(), empty]).unwrap(),
            "SELECT (1), b FROM t WHERE NOT (0)"
        );
        let some = answer(vec![col(ct::LONG)], &[&[Some("1")], &[None]]);
        assert_eq!(
            st.render(&[some.clone(), some]).unwrap(),
            "SELECT a NOT IN (1, NULL), b FROM t WHERE NOT a IN (1, NULL)"
        );
    }

    #[test]
    fn row_in_writes_tuples_and_checks_the_width() {
        let sql = "SELECT * FROM t WHERE (a, b) IN (SELECT x, y FROM u)";
        let s = sql.find("(a, b)").unwrap();
        let kind = PartKind::In {
            left: s..s + 6,
            negated: false,
            width: 2,
        };
        let st = staged(sql, vec![("(a, b) IN (SELECT x, y FROM u)", kind)]);
        let a = answer(
            vec![col(ct::LONG), col(ct::VAR_STRING)],
            &[&[Some("1"), Some("x")], &[Some("2"), None]],
        );
        assert_eq!(
            st.render(&[a]).unwrap(),
            "SELECT * FROM t WHERE (a, b) IN ((1, 'x'), (2, NULL))"
        );
        let one = answer(vec![col(ct::LONG)], &[&[Some("1")]]);
        let e = st.render(&[one]).unwrap_err();
        assert_eq!((e.code(), e.sqlstate()), (1241, "21000"));
    }

    #[test]
    fn scalar_gives_null_one_value_or_error_1242() {
        let sql = "SELECT * FROM t WHERE a > (SELECT MAX(x) FROM u)";
        let kind = PartKind::Scalar {
            in_select_list: false,
        };
        let st = staged(sql, vec![("(SELECT MAX(x) FROM u)", kind)]);
        let none = answer(vec![col(ct::NEWDECIMAL)], &[]);
        assert_eq!(
            st.render(&[none]).unwrap(),
            "SELECT * FROM t WHERE a > (NULL)"
        );
        let one = answer(vec![col(ct::NEWDECIMAL)], &[&[Some("3.50")]]);
        assert_eq!(
            st.render(&[one]).unwrap(),
            "SELECT * FROM t WHERE a > (3.50)"
        );
        let two = answer(vec![col(ct::NEWDECIMAL)], &[&[Some("1")], &[Some("2")]]);
        let e = st.render(&[two]).unwrap_err();
        assert_eq!((e.code(), e.sqlstate()), (1242, "21000"));
        assert_eq!(e.to_string(), "Subquery returns more than 1 row");
        let wide = answer(vec![col(ct::LONG), col(ct::LONG)], &[&[Some("1"), None]]);
        assert_eq!(st.render(&[wide]).unwrap_err().code(), 1241);
    }

    #[test]
    fn select_list_scalar_keeps_its_type_and_name() {
        let sql = "SELECT (SELECT COUNT(*) FROM u), 1 FROM t";
        let kind = PartKind::Scalar {
            in_select_list: true,
        };
        let mut st = staged(sql, vec![("(SELECT COUNT(*) FROM u)", kind)]);
        let end = sql.find(", 1").unwrap();
        st.names.push((end, "(SELECT COUNT(*) FROM u)".into()));
        let mut count = col(ct::LONGLONG);
        count.length = 21;
        let a = answer(vec![count], &[&[Some("7")]]);
        assert_eq!(
            st.render(&[a]).unwrap(),
            "SELECT (CAST(7 AS SIGNED)) AS `(SELECT COUNT(*) FROM u)`, 1 FROM t"
        );
        let mut sum = col(ct::NEWDECIMAL);
        sum.length = 44;
        sum.decimals = 2;
        let a = answer(vec![sum], &[&[None]]);
        assert_eq!(
            st.render(&[a]).unwrap(),
            "SELECT (CAST(NULL AS DECIMAL(42,2))) AS `(SELECT COUNT(*) FROM u)`, 1 FROM t"
        );
    }

    #[test]
    fn exists_is_one_or_zero() {
        let sql = "SELECT * FROM t WHERE NOT EXISTS (SELECT 1 FROM u)";
        let st = staged(sql, vec![("EXISTS (SELECT 1 FROM u)", PartKind::Exists)]);
        let a = answer(vec![col(ct::LONG)], &[&[Some("1")]]);
        assert_eq!(st.render(&[a]).unwrap(), "SELECT * FROM t WHERE NOT (1)");
        let a = answer(vec![col(ct::LONG)], &[]);
        assert_eq!(st.render(&[a]).unwrap(), "SELECT * FROM t WHERE NOT (0)");
    }

    #[test]
    fn the_bound_names_itself() {
        let e = StageError::TooManyValues { bound: 10_000 };
        assert_eq!(e.code(), 1235);
        assert!(e
            .to_string()
            .contains("10000 values ([merge] max_subquery_values)"));
    }
}
