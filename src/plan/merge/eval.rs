//! The typed evaluator of expressions over merged groups ([`Calc`]): `SUM(a)/COUNT(*)`,
//! `MAX(x)-MIN(x)`, `ROUND(AVG(x),2)`, `CONCAT(city, ':', COUNT(*))`, `COUNT(*)*2`, computed
//! by the proxy once every shard's partial groups are merged, as one MariaDB 10.11 computes
//! them.
//!
//! # Types and arithmetic (checked against a real MariaDB, `tests/differential.rs`)
//! * A value is an integer (integer columns, COUNT, integer literals), a DECIMAL (DECIMAL
//!   columns, SUM and AVG of integers and DECIMALs, literals like `1.5`), a double (FLOAT and
//!   DOUBLE columns, `1e3`, any arithmetic on a string) or a string.
//! * `+ - *` of integers are integers (BIGINT: out of range is error 1690, as on the server);
//!   with a DECIMAL they are exact DECIMALs (`+`/`-` keep the larger scale, `*` adds the
//!   scales); with a double, doubles.
//! * `/` of integers and DECIMALs is a DECIMAL, computed as MariaDB's `decimal_div` does: the
//!   quotient is *truncated* to `frac` digits, where each operand's scale is first rounded up to
//!   a multiple of 9 (its storage words) and `div_precision_increment` (4) is added only for what
//!   those words do not already hold, the sum again rounded up to 9s. So `1/3` holds
//!   0.333333333, and `1/3*3` prints `1.0000`, `2/3*3000000000` prints `1999999998.0000`. The
//!   item's own scale (what it prints with) is the dividend's + 4. Division by zero is NULL.
//! * AVG(x) inside an expression is SUM(x)/COUNT(x) divided that way (its hidden columns), not
//!   the rounded AVG text.
//! * ROUND(d, n) rounds half away from zero and prints `n` digits (`ROUND(1.10, 5)` is
//!   `1.10000`); ROUND of an integer is the integer. ROUND of a double is refused (the server
//!   rounds its binary value).
//! * CONCAT joins the text forms: a DECIMAL item with its scale (`CONCAT(1/3)` is `0.3333`),
//!   a column's value as the shard sent it. Any NULL argument makes NULL.
//! * The result is printed as its column's definition says (the shards computed the same
//!   expression over their partial groups, so they sent its type): a DECIMAL rounded half away
//!   from zero to the column's decimals.
//!
//! A DECIMAL beyond about 28 significant digits is refused (1235), never rounded.

use rust_decimal::prelude::ToPrimitive;
use rust_decimal::{Decimal, RoundingStrategy};

use super::number::{format_decimal, format_double, format_double_column, parse_decimal};
use super::MergeError;
use crate::plan::spec::{ArithOp, Calc, Literal};
use crate::protocol::resultset::{column_flags, column_type, ColumnDef, TextRow};

/// MariaDB's default `div_precision_increment`.
const DIV_PRECISION_INCREMENT: u32 = 4;

/// An intermediate value and the scale its item prints with.
#[derive(Debug, Clone, PartialEq)]
enum Val {
    Null,
    /// An integer; `unsigned` when it came from an UNSIGNED column (a negative result of
    /// unsigned arithmetic is out of range, as on the server).
    Int {
        v: i128,
        unsigned: bool,
    },
    /// A DECIMAL value (its scale is the value's own, which may hold more digits than the
    /// item prints) and the scale the item prints with.
    Dec {
        v: Decimal,
        item_scale: u32,
    },
    Double(f64),
    Str(Vec<u8>),
}

fn out_of_range(what: &str) -> MergeError {
    MergeError {
        code: 1690,
        sqlstate: "22003",
        message: format!("BIGINT value is out of range in '{what}'"),
    }
}

/// Refused (1235) rather than rounded: the server would answer, the proxy cannot exactly.
fn too_precise() -> MergeError {
    MergeError::not_supported(
        "an expression over merged groups needs more DECIMAL digits (about 28 significant) \
         than the proxy computes exactly; query one shard",
    )
}

/// Reads merged column `c` in its column's type.
fn column(row: &TextRow, columns: &[ColumnDef], c: usize) -> Result<Val, MergeError> {
    let def = columns
        .get(c)
        .ok_or_else(|| MergeError::internal(format!("merge: expression reads column {c}")))?;
    let Some(raw) = row.get(c).and_then(|v| v.as_ref()) else {
        return Ok(Val::Null);
    };
    let bad = || {
        MergeError::internal(format!(
            "merge: column {c} holds {:?}, not a value of its type",
            String::from_utf8_lossy(raw)
        ))
    };
    use column_type::*;
    Ok(match def.column_type {
        TINY | SHORT | LONG | LONGLONG | INT24 | YEAR => {
            let s = std::str::from_utf8(raw).map_err(|_| bad())?;
            Val::Int {
                v: s.parse().map_err(|_| bad())?,
                unsigned: def.flags & column_flags::UNSIGNED != 0,
            }
        }
        DECIMAL | NEWDECIMAL => Val::Dec {
            v: parse_decimal(raw).ok_or_else(bad)?,
            item_scale: u32::from(def.decimals),
        },
        FLOAT | DOUBLE => {
            let s = std::str::from_utf8(raw).map_err(|_| bad())?;
            Val::Double(s.parse().map_err(|_| bad())?)
        }
        _ => Val::Str(raw.to_vec()),
    })
}

fn literal(l: &Literal) -> Result<Val, MergeError> {
    Ok(match l {
        Literal::Null => Val::Null,
        Literal::String(s) => Val::Str(s.as_bytes().to_vec()),
        Literal::Number(n) => {
            if let Ok(v) = n.parse::<i128>() {
                Val::Int { v, unsigned: false }
            } else if n.contains(['e', 'E']) {
                Val::Double(
                    n.parse()
                        .map_err(|_| MergeError::internal(format!("merge: literal {n}")))?,
                )
            } else {
                let v = Decimal::from_str_exact(n).map_err(|_| too_precise())?;
                Val::Dec {
                    item_scale: v.scale(),
                    v,
                }
            }
        }
    })
}

/// MariaDB's conversion of a string to a number in arithmetic: its longest numeric prefix as a
/// double (`'12abc'` is 12), 0 when there is none.
fn str_to_double(s: &[u8]) -> f64 {
    let t = String::from_utf8_lossy(s);
    let t = t.trim_start();
    let mut end = 0;
    for i in (1..=t.len()).rev() {
        if t.is_char_boundary(i) && t[..i].parse::<f64>().is_ok() {
            end = i;
            break;
        }
    }
    t[..end].parse().unwrap_or(0.0)
}

fn as_double(v: &Val) -> f64 {
    match v {
        Val::Int { v, .. } => *v as f64,
        Val::Dec { v, .. } => v.to_f64().unwrap_or(f64::NAN),
        Val::Double(d) => *d,
        Val::Str(s) => str_to_double(s),
        Val::Null => 0.0,
    }
}

/// An integer or DECIMAL as a DECIMAL value (the item scale of an integer is 0).
fn as_decimal(v: &Val) -> Option<(Decimal, u32)> {
    match v {
        Val::Int { v, .. } => Some((Decimal::from_i128_with_scale(*v, 0), 0)),
        Val::Dec { v, item_scale } => Some((*v, *item_scale)),
        _ => None,
    }
}

/// Rounds `n` up to whole 9-digit storage words.
fn words(n: u32) -> u32 {
    n.div_ceil(9) * 9
}

/// `a / b` as MariaDB's `decimal_div` computes it (see the module doc); `None` for a zero
/// divisor.
fn decimal_div(a: Decimal, b: Decimal) -> Result<Option<Decimal>, MergeError> {
    if b.is_zero() {
        return Ok(None);
    }
    let (f1, f2) = (a.scale(), b.scale());
    let (r1, r2) = (words(f1), words(f2));
    let incr = DIV_PRECISION_INCREMENT.saturating_sub((r1 - f1) + (r2 - f2));
    let frac = words(r1 + r2 + incr);
    if frac > 28 {
        return Err(too_precise());
    }
    // a/b = (ma / 10^f1) / (mb / 10^f2); the quotient with `frac` digits is
    // ma * 10^(frac + f2 - f1) / mb, truncated toward zero.
    let num = 10i128
        .checked_pow(frac + f2 - f1)
        .and_then(|p| p.checked_mul(a.mantissa()))
        .ok_or_else(too_precise)?;
    let q = num / b.mantissa();
    Decimal::try_from_i128_with_scale(q, frac)
        .map(Some)
        .map_err(|_| too_precise())
}

fn arith(op: ArithOp, l: Val, r: Val) -> Result<Val, MergeError> {
    if l == Val::Null || r == Val::Null {
        return Ok(Val::Null);
    }
    let is_double = |v: &Val| matches!(v, Val::Double(_) | Val::Str(_));
    if is_double(&l) || is_double(&r) {
        let (a, b) = (as_double(&l), as_double(&r));
        let v = match op {
            ArithOp::Add => a + b,
            ArithOp::Sub => a - b,
            ArithOp::Mul => a * b,
            ArithOp::Div if b == 0.0 => return Ok(Val::Null),
            ArithOp::Div => a / b,
        };
        return Ok(Val::Double(v));
    }
    if let (Val::Int { v: a, unsigned: ua }, Val::Int { v: b, unsigned: ub }, false) =
        (&l, &r, op == ArithOp::Div)
    {
        let v = match op {
            ArithOp::Add => a + b,
            ArithOp::Sub => a - b,
            _ => a.checked_mul(*b).ok_or_else(|| out_of_range("*"))?,
        };
        let unsigned = *ua || *ub;
        let fits = if unsigned {
            (0..=i128::from(u64::MAX)).contains(&v)
        } else {
            (i128::from(i64::MIN)..=i128::from(i64::MAX)).contains(&v)
        };
        if !fits {
            return Err(out_of_range(match op {
                ArithOp::Add => "+",
                ArithOp::Sub => "-",
                _ => "*",
            }));
        }
        return Ok(Val::Int { v, unsigned });
    }
    let ((a, sa), (b, sb)) = (
        as_decimal(&l).ok_or_else(too_precise)?,
        as_decimal(&r).ok_or_else(too_precise)?,
    );
    let (v, item_scale, want_scale) = match op {
        ArithOp::Add => (a.checked_add(b), sa.max(sb), Some(a.scale().max(b.scale()))),
        ArithOp::Sub => (a.checked_sub(b), sa.max(sb), Some(a.scale().max(b.scale()))),
        ArithOp::Mul => (a.checked_mul(b), sa + sb, Some(a.scale() + b.scale())),
        ArithOp::Div => match decimal_div(a, b)? {
            None => return Ok(Val::Null),
            Some(q) => (Some(q), (sa + DIV_PRECISION_INCREMENT).min(38), None),
        },
    };
    let mut v = v.ok_or_else(too_precise)?;
    if let Some(s) = want_scale {
        // rust_decimal drops digits silently when a result is too long: refuse instead.
        if v.scale() != s {
            v.rescale(s);
            if v.scale() != s {
                return Err(too_precise());
            }
        }
    }
    Ok(Val::Dec { v, item_scale })
}

fn eval(e: &Calc, row: &TextRow, columns: &[ColumnDef]) -> Result<Val, MergeError> {
    Ok(match e {
        Calc::Column(c) => column(row, columns, *c)?,
        Calc::Avg { sum, count } => {
            let s = column(row, columns, *sum)?;
            let n = column(row, columns, *count)?;
            match (&s, &n) {
                (Val::Double(_), _) => arith(ArithOp::Div, s, n)?,
                (Val::Null, _) | (_, Val::Null) => Val::Null,
                _ => arith(ArithOp::Div, s, n)?,
            }
        }
        Calc::Literal(l) => literal(l)?,
        Calc::Neg(a) => match eval(a, row, columns)? {
            Val::Null => Val::Null,
            Val::Int { v, .. } => {
                if -v < i128::from(i64::MIN) {
                    return Err(out_of_range("-"));
                }
                Val::Int {
                    v: -v,
                    unsigned: false,
                }
            }
            Val::Dec { v, item_scale } => Val::Dec { v: -v, item_scale },
            other => Val::Double(-as_double(&other)),
        },
        Calc::Arith { op, left, right } => {
            arith(*op, eval(left, row, columns)?, eval(right, row, columns)?)?
        }
        Calc::Round { arg, places } => match eval(arg, row, columns)? {
            Val::Null => Val::Null,
            i @ Val::Int { .. } => i,
            Val::Dec { v, .. } => {
                let mut r =
                    v.round_dp_with_strategy(*places, RoundingStrategy::MidpointAwayFromZero);
                r.rescale(r.scale().max(*places).min(28));
                Val::Dec {
                    v: r,
                    item_scale: *places,
                }
            }
            _ => {
                return Err(MergeError::not_supported(
                    "ROUND of a floating-point or string value over merged groups (the server \
                     rounds its binary value); round a DECIMAL",
                ))
            }
        },
        Calc::Concat(args) => {
            let mut out = Vec::new();
            for a in args {
                match text(eval(a, row, columns)?)? {
                    None => return Ok(Val::Null),
                    Some(t) => out.extend(t),
                }
            }
            Val::Str(out)
        }
    })
}

/// A value's text form as its item prints it.
fn text(v: Val) -> Result<Option<Vec<u8>>, MergeError> {
    Ok(match v {
        Val::Null => None,
        Val::Int { v, .. } => Some(v.to_string().into_bytes()),
        Val::Dec { v, item_scale } => Some(round_to(v, item_scale)?.into_bytes()),
        Val::Double(d) => Some(format_double(d).into_bytes()),
        Val::Str(s) => Some(s),
    })
}

/// A DECIMAL rounded half away from zero and printed with exactly `scale` digits.
fn round_to(v: Decimal, scale: u32) -> Result<String, MergeError> {
    let r = v.round_dp_with_strategy(scale, RoundingStrategy::MidpointAwayFromZero);
    format_decimal(r, Some(scale))
}

/// Evaluates `e` over merged row `row` and prints the result as column `def` says.
pub fn evaluate(
    e: &Calc,
    row: &TextRow,
    columns: &[ColumnDef],
    def: &ColumnDef,
) -> Result<Option<bytes::Bytes>, MergeError> {
    let v = eval(e, row, columns)?;
    if v == Val::Null {
        return Ok(None);
    }
    use column_type::*;
    let printed = match (def.column_type, v) {
        (DECIMAL | NEWDECIMAL, v) => match as_decimal(&v) {
            Some((d, _)) => round_to(d, u32::from(def.decimals))?.into_bytes(),
            None => return Err(mismatch(def)),
        },
        (TINY | SHORT | LONG | LONGLONG | INT24, Val::Int { v, .. }) => v.to_string().into_bytes(),
        (FLOAT | DOUBLE, v @ (Val::Double(_) | Val::Int { .. } | Val::Dec { .. })) => {
            format_double_column(as_double(&v), def.decimals).into_bytes()
        }
        (TINY | SHORT | LONG | LONGLONG | INT24 | FLOAT | DOUBLE, _) => return Err(mismatch(def)),
        (_, v) => text(v)?.unwrap_or_default(),
    };
    Ok(Some(bytes::Bytes::from(printed)))
}

fn mismatch(def: &ColumnDef) -> MergeError {
    MergeError::not_supported(format!(
        "the proxy's evaluation of column '{}' does not give the type the server reports \
         (type {}); query one shard",
        String::from_utf8_lossy(&def.name),
        def.column_type
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::spec::Calc::*;

    fn num(n: &str) -> Calc {
        Literal(crate::plan::spec::Literal::Number(n.into()))
    }
    fn op(op: ArithOp, l: Calc, r: Calc) -> Calc {
        Arith {
            op,
            left: Box::new(l),
            right: Box::new(r),
        }
    }
    fn dec_col(decimals: u8) -> ColumnDef {
        ColumnDef {
            column_type: column_type::NEWDECIMAL,
            decimals,
            ..ColumnDef::text("d")
        }
    }
    fn run(e: &Calc, def: &ColumnDef) -> String {
        let row: TextRow = vec![];
        String::from_utf8(evaluate(e, &row, &[], def).unwrap().unwrap().to_vec()).unwrap()
    }

    /// Each figure was printed by MariaDB 10.11 for the same expression.
    #[test]
    fn decimal_division_truncates_to_whole_words_as_mariadb() {
        use ArithOp::*;
        let third = op(Div, num("1"), num("3"));
        assert_eq!(
            run(&op(Mul, third.clone(), num("3")), &dec_col(4)),
            "1.0000"
        );
        let two_thirds = op(Div, num("2"), num("3"));
        assert_eq!(
            run(&op(Mul, two_thirds.clone(), num("3000000000")), &dec_col(4)),
            "1999999998.0000"
        );
        assert_eq!(
            run(&op(Div, third.clone(), num("3")), &dec_col(8)),
            "0.11111111"
        );
        let c = op(
            Mul,
            op(Div, op(Div, num("1"), num("7")), num("7")),
            num("1000000000000"),
        );
        assert_eq!(run(&c, &dec_col(8)), "20408163142.85714200");
        assert_eq!(
            run(&op(Div, num("1.10"), num("3")), &dec_col(6)),
            "0.366667"
        );
        assert_eq!(
            run(&op(Mul, two_thirds.clone(), two_thirds), &dec_col(8)),
            "0.44444444"
        );
        assert_eq!(
            run(
                &op(Add, op(Mul, third.clone(), num("3")), num("0.1")),
                &dec_col(4)
            ),
            "1.1000"
        );
        assert_eq!(run(&Neg(Box::new(third)), &dec_col(4)), "-0.3333");
        assert_eq!(
            evaluate(&op(Div, num("1"), num("0")), &vec![], &[], &dec_col(4)).unwrap(),
            None
        );
    }

    #[test]
    fn round_and_concat_print_like_mariadb() {
        let round = |e: Calc, places| Round {
            arg: Box::new(e),
            places,
        };
        assert_eq!(run(&round(num("1.10"), 5), &dec_col(5)), "1.10000");
        assert_eq!(run(&round(num("1.255"), 2), &dec_col(2)), "1.26");
        assert_eq!(run(&round(num("-2.5"), 0), &dec_col(0)), "-3");
        let text = ColumnDef::text("c");
        let concat = Concat(vec![
            Literal(crate::plan::spec::Literal::String("a".into())),
            op(ArithOp::Div, num("1"), num("3")),
            Literal(crate::plan::spec::Literal::String(":".into())),
            num("2.50"),
            num("3"),
        ]);
        assert_eq!(run(&concat, &text), "a0.3333:2.503");
        let with_null = Concat(vec![num("1"), Literal(crate::plan::spec::Literal::Null)]);
        assert_eq!(evaluate(&with_null, &vec![], &[], &text).unwrap(), None);
    }

    #[test]
    fn integers_stay_integers_and_overflow_is_an_error() {
        let int = ColumnDef {
            column_type: column_type::LONGLONG,
            ..ColumnDef::text("n")
        };
        assert_eq!(run(&op(ArithOp::Mul, num("21"), num("2")), &int), "42");
        let e = evaluate(
            &op(ArithOp::Mul, num("9223372036854775807"), num("2")),
            &vec![],
            &[],
            &int,
        )
        .unwrap_err();
        assert_eq!(e.code, 1690);
    }

    #[test]
    fn columns_are_read_in_their_type() {
        let cols = vec![
            dec_col(2),
            ColumnDef {
                column_type: column_type::LONGLONG,
                ..ColumnDef::text("n")
            },
        ];
        let row: TextRow = vec![Some("10.35".into()), Some("4".into())];
        let avg = Avg { sum: 0, count: 1 };
        let out = evaluate(&avg, &row, &cols, &dec_col(6)).unwrap().unwrap();
        assert_eq!(&out[..], b"2.587500");
        let x3 = op(ArithOp::Mul, Avg { sum: 0, count: 1 }, num("3"));
        let out = evaluate(&x3, &row, &cols, &dec_col(6)).unwrap().unwrap();
        assert_eq!(&out[..], b"7.762500");
    }
}
