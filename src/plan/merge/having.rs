//! HAVING: a [`Filter`] evaluated over merged rows with SQL's three-valued logic. A row is kept
//! only when the condition is TRUE (not FALSE, not UNKNOWN).
//!
//! Comparisons follow MariaDB's type rules for `column <op> literal`:
//! * integer/DECIMAL column with a number literal: exact decimal comparison;
//! * numeric column with a string literal, or string column with a number literal: both sides
//!   as doubles (the string's leading number, 0 if none), as MariaDB converts them;
//! * FLOAT/DOUBLE column: as doubles;
//! * string column with a string literal: the column's collation (see [`super::value`]);
//! * DATE/DATETIME/TIMESTAMP with a string literal: by their numeric fields (year, month, day,
//!   hour, minute, second, fraction), so `'2024-01-01'` = `'2024-01-01 00:00:00'`;
//!   TIME with a string literal: as TIME;
//! * temporal column with a number literal: refused (error 1235).

use std::cmp::Ordering;

use super::value::{self, DecimalText, ValueKind};
use super::MergeError;
use crate::plan::spec::{CompareOp, Filter, Literal};
use crate::protocol::resultset::{column_type, ColumnDef, TextRow};

/// Keeps the rows for which `f` is TRUE.
pub fn filter(
    f: &Filter,
    columns: &[ColumnDef],
    kinds: &[ValueKind],
    rows: Vec<TextRow>,
) -> Result<Vec<TextRow>, MergeError> {
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        if eval(f, columns, kinds, &row)? == Some(true) {
            out.push(row);
        }
    }
    Ok(out)
}

/// Evaluates `f` over one row: `Some(true)`, `Some(false)` or `None` (UNKNOWN).
pub fn eval(
    f: &Filter,
    columns: &[ColumnDef],
    kinds: &[ValueKind],
    row: &TextRow,
) -> Result<Option<bool>, MergeError> {
    Ok(match f {
        Filter::And(a, b) => {
            let x = eval(a, columns, kinds, row)?;
            if x == Some(false) {
                return Ok(Some(false));
            }
            match (x, eval(b, columns, kinds, row)?) {
                (_, Some(false)) => Some(false),
                (Some(true), Some(true)) => Some(true),
                _ => None,
            }
        }
        Filter::Or(a, b) => {
            let x = eval(a, columns, kinds, row)?;
            if x == Some(true) {
                return Ok(Some(true));
            }
            match (x, eval(b, columns, kinds, row)?) {
                (_, Some(true)) => Some(true),
                (Some(false), Some(false)) => Some(false),
                _ => None,
            }
        }
        Filter::Not(a) => eval(a, columns, kinds, row)?.map(|b| !b),
        Filter::IsNull { column, negated } => Some(row[*column].is_none() != *negated),
        Filter::Compare { column, op, value } => {
            let Some(v) = row[*column].as_deref() else {
                return Ok(None);
            };
            let ord = match compare_literal(&columns[*column], kinds[*column], v, value)? {
                Some(o) => o,
                None => return Ok(None),
            };
            Some(match op {
                CompareOp::Eq => ord == Ordering::Equal,
                CompareOp::NotEq => ord != Ordering::Equal,
                CompareOp::Lt => ord == Ordering::Less,
                CompareOp::LtEq => ord != Ordering::Greater,
                CompareOp::Gt => ord == Ordering::Greater,
                CompareOp::GtEq => ord != Ordering::Less,
            })
        }
    })
}

/// Compares a non-NULL column value with a literal; `None` when the literal is NULL.
fn compare_literal(
    col: &ColumnDef,
    kind: ValueKind,
    v: &[u8],
    lit: &Literal,
) -> Result<Option<Ordering>, MergeError> {
    let temporal = matches!(
        col.column_type,
        column_type::DATE
            | column_type::NEWDATE
            | column_type::DATETIME
            | column_type::TIMESTAMP
            | column_type::TIME
    );
    Ok(Some(match lit {
        Literal::Null => return Ok(None),
        Literal::Number(n) => {
            if temporal {
                return Err(MergeError::not_supported(
                    "merge: HAVING compares a temporal column with a number",
                ));
            }
            match kind {
                ValueKind::Integer | ValueKind::Decimal => {
                    match (DecimalText::parse(v), DecimalText::parse(n.as_bytes())) {
                        (Some(a), Some(b)) => a.cmp(&b),
                        _ => cmp_f64(leading_f64(v), leading_f64(n.as_bytes())),
                    }
                }
                _ => cmp_f64(leading_f64(v), leading_f64(n.as_bytes())),
            }
        }
        Literal::String(s) => {
            let s = s.as_bytes();
            if temporal {
                if kind == ValueKind::Time {
                    value::compare(kind, v, s)
                } else {
                    compare_datetime(v, s).ok_or_else(|| {
                        MergeError::not_supported(
                            "merge: HAVING compares a date with a string that is not a date",
                        )
                    })?
                }
            } else if kind.is_numeric() {
                cmp_f64(leading_f64(v), leading_f64(s))
            } else {
                value::compare(kind, v, s)
            }
        }
    }))
}

fn cmp_f64(a: f64, b: f64) -> Ordering {
    a.partial_cmp(&b).unwrap_or(Ordering::Equal)
}

/// MariaDB's string-to-double conversion: the longest leading number, 0 if there is none.
fn leading_f64(v: &[u8]) -> f64 {
    let s = String::from_utf8_lossy(v);
    let s = s.trim_start();
    let b = s.as_bytes();
    let mut end = 0;
    let mut best = 0.0;
    // Try every prefix that could be a number; keep the longest that parses.
    while end < b.len() && matches!(b[end], b'0'..=b'9' | b'.' | b'-' | b'+' | b'e' | b'E') {
        end += 1;
        if let Ok(f) = s[..end].parse::<f64>() {
            best = f;
        }
    }
    best
}

/// Compares DATE/DATETIME texts by their numeric fields; `None` if either is not a date.
fn compare_datetime(a: &[u8], b: &[u8]) -> Option<Ordering> {
    let (ai, af) = datetime_fields(a)?;
    let (bi, bf) = datetime_fields(b)?;
    Some(ai.cmp(&bi).then_with(|| af.cmp(&bf)))
}

/// `YYYY-MM-DD[ hh:mm:ss[.ffffff]]` as six integer fields (missing ones 0) and the fraction
/// digits without trailing zeros.
fn datetime_fields(v: &[u8]) -> Option<([u64; 6], Vec<u8>)> {
    let s = std::str::from_utf8(v).ok()?.trim();
    let (main, frac) = match s.split_once('.') {
        Some((m, f)) if f.bytes().all(|c| c.is_ascii_digit()) => (m, f),
        Some(_) => return None,
        None => (s, ""),
    };
    let mut fields = [0u64; 6];
    let mut n = 0;
    for part in main.split(['-', ' ', ':', 'T']) {
        if n == 6 || part.is_empty() || !part.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        fields[n] = part.parse().ok()?;
        n += 1;
    }
    if n < 3 {
        return None;
    }
    let frac = frac.trim_end_matches('0').as_bytes().to_vec();
    Some((fields, frac))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::merge::tests::util::*;

    fn cmp(column: usize, op: CompareOp, value: Literal) -> Filter {
        Filter::Compare { column, op, value }
    }

    fn num(s: &str) -> Literal {
        Literal::Number(s.to_string())
    }

    fn string(s: &str) -> Literal {
        Literal::String(s.to_string())
    }

    fn eval1(col: ColumnDef, f: &Filter, v: Option<&str>) -> Option<bool> {
        let kinds = [ValueKind::of(&col)];
        eval(f, &[col], &kinds, &row(&[v])).unwrap()
    }

    #[test]
    fn decimal_comparisons_are_exact() {
        let f = cmp(0, CompareOp::Eq, num("0.3"));
        assert_eq!(eval1(dec_col(2), &f, Some("0.30")), Some(true));
        let f = cmp(0, CompareOp::Gt, num("0.29999999999999999999"));
        assert_eq!(eval1(dec_col(2), &f, Some("0.30")), Some(true));
        let f = cmp(0, CompareOp::GtEq, num("10"));
        assert_eq!(eval1(int_col(), &f, Some("9")), Some(false));
        assert_eq!(eval1(int_col(), &f, Some("10")), Some(true));
    }

    #[test]
    fn null_makes_comparisons_unknown() {
        let f = cmp(0, CompareOp::NotEq, num("1"));
        assert_eq!(eval1(int_col(), &f, None), None);
        let f = cmp(0, CompareOp::Eq, Literal::Null);
        assert_eq!(eval1(int_col(), &f, Some("1")), None);
        // NOT UNKNOWN is UNKNOWN: the row is still dropped.
        let f = Filter::Not(Box::new(cmp(0, CompareOp::Eq, num("1"))));
        assert_eq!(eval1(int_col(), &f, None), None);
    }

    #[test]
    fn three_valued_and_or() {
        let unknown = cmp(0, CompareOp::Eq, Literal::Null);
        let t = Filter::IsNull {
            column: 0,
            negated: true,
        };
        let fls = Filter::IsNull {
            column: 0,
            negated: false,
        };
        let and = |a: &Filter, b: &Filter| Filter::And(Box::new(a.clone()), Box::new(b.clone()));
        let or = |a: &Filter, b: &Filter| Filter::Or(Box::new(a.clone()), Box::new(b.clone()));
        let v = Some("1");
        assert_eq!(eval1(int_col(), &and(&unknown, &fls), v), Some(false));
        assert_eq!(eval1(int_col(), &and(&unknown, &t), v), None);
        assert_eq!(eval1(int_col(), &and(&t, &t), v), Some(true));
        assert_eq!(eval1(int_col(), &or(&unknown, &t), v), Some(true));
        assert_eq!(eval1(int_col(), &or(&unknown, &fls), v), None);
        assert_eq!(eval1(int_col(), &or(&fls, &fls), v), Some(false));
    }

    #[test]
    fn strings_use_the_collation() {
        let f = cmp(0, CompareOp::Eq, string("ABC"));
        assert_eq!(eval1(text_col(), &f, Some("abc ")), Some(true));
        assert_eq!(eval1(bin_col(), &f, Some("abc")), Some(false));
        let f = cmp(0, CompareOp::Lt, string("b"));
        assert_eq!(eval1(text_col(), &f, Some("A")), Some(true));
    }

    #[test]
    fn mixed_string_number_compare_as_doubles() {
        let f = cmp(0, CompareOp::Eq, num("12"));
        assert_eq!(eval1(text_col(), &f, Some("12abc")), Some(true));
        assert_eq!(eval1(text_col(), &f, Some("x")), Some(false));
        let f = cmp(0, CompareOp::Eq, num("0"));
        assert_eq!(eval1(text_col(), &f, Some("x")), Some(true));
        let f = cmp(0, CompareOp::Gt, string("5"));
        assert_eq!(eval1(int_col(), &f, Some("10")), Some(true));
    }

    #[test]
    fn dates_compare_by_fields() {
        let f = cmp(0, CompareOp::Eq, string("2024-01-01"));
        assert_eq!(
            eval1(datetime_col(), &f, Some("2024-01-01 00:00:00")),
            Some(true)
        );
        let f = cmp(0, CompareOp::Lt, string("2024-1-2"));
        assert_eq!(
            eval1(datetime_col(), &f, Some("2024-01-01 23:59:59")),
            Some(true)
        );
        let f = cmp(0, CompareOp::Lt, num("20240102"));
        let col = datetime_col();
        let kinds = [ValueKind::of(&col)];
        let err = eval(&f, &[col], &kinds, &row(&[Some("2024-01-01 00:00:00")])).unwrap_err();
        assert_eq!(err.code, 1235);
    }
}
