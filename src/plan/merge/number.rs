//! Exact arithmetic and MariaDB's text forms for recombined aggregates.
//!
//! DECIMAL and integer sums are exact ([`rust_decimal`], 28–29 significant digits: enough for
//! `SUM` of any `BIGINT` or `DECIMAL(p,s)` with p ≤ 28 over realistic row counts; a sum beyond
//! that is refused with an error, never rounded). AVG divides with integer arithmetic and rounds
//! half away from zero, as MariaDB's decimal rounding does. FLOAT/DOUBLE results are printed in
//! MariaDB's `my_gcvt` form: the shortest digits that round-trip, positional unless the decimal
//! exponent is below -14 or above 15 (`1e20`, `1.5e-16`, `0.30000000000000004`).

use rust_decimal::Decimal;

use super::MergeError;

/// Parses a decimal text exactly (no rounding).
pub fn parse_decimal(v: &[u8]) -> Option<Decimal> {
    let s = std::str::from_utf8(v).ok()?;
    Decimal::from_str_exact(s).ok()
}

/// Prints a decimal with exactly `scale` fraction digits (when given); zero is never negative.
pub fn format_decimal(mut d: Decimal, scale: Option<u32>) -> Result<String, MergeError> {
    if let Some(scale) = scale {
        if d.scale() != scale {
            d.rescale(scale);
            if d.scale() != scale {
                return Err(MergeError::out_of_precision(
                    "a merged DECIMAL needs more digits than the merge computes exactly",
                ));
            }
        }
    }
    if d.is_zero() {
        d.set_sign_positive(true);
    }
    Ok(d.to_string())
}

/// `sum / count` rounded half away from zero to `decimals` fraction digits, exactly.
pub fn divide_rounded(sum: Decimal, count: i128, decimals: u32) -> Result<String, MergeError> {
    debug_assert!(count > 0);
    let overflow =
        || MergeError::out_of_precision("AVG needs more digits than the merge computes exactly");
    // sum = m / 10^s, so sum / count * 10^d = m * 10^d / (count * 10^s).
    let m = sum.mantissa();
    let s = sum.scale();
    let (num, den) = if s >= decimals {
        let den = 10i128
            .checked_pow(s - decimals)
            .and_then(|p| p.checked_mul(count))
            .ok_or_else(overflow)?;
        (m, den)
    } else {
        let num = 10i128
            .checked_pow(decimals - s)
            .and_then(|p| p.checked_mul(m))
            .ok_or_else(overflow)?;
        (num, count)
    };
    let mut q = num / den;
    let r = num % den;
    // |r| * 2 >= den: round away from zero.
    if r.unsigned_abs() >= den.unsigned_abs() - r.unsigned_abs() && r != 0 {
        q += if num < 0 { -1 } else { 1 };
    }
    Ok(format_scaled(q, decimals))
}

/// Prints `q / 10^decimals` with exactly `decimals` fraction digits.
pub fn format_scaled(q: i128, decimals: u32) -> String {
    let digits = q.unsigned_abs().to_string();
    let d = decimals as usize;
    let padded = if digits.len() <= d {
        format!("{}{}", "0".repeat(d + 1 - digits.len()), digits)
    } else {
        digits
    };
    let (int, frac) = padded.split_at(padded.len() - d);
    let sign = if q < 0 { "-" } else { "" };
    if d == 0 {
        format!("{sign}{int}")
    } else {
        format!("{sign}{int}.{frac}")
    }
}

/// MariaDB's `NOT_FIXED_DEC`: a FLOAT/DOUBLE column whose `decimals` is at least this prints in
/// the shortest form; below it, with exactly `decimals` fraction digits.
pub const NOT_FIXED_DEC: u8 = 31;

/// Prints a double as a column with `decimals` would: fixed digits, or MariaDB's shortest form.
pub fn format_double_column(f: f64, decimals: u8) -> String {
    if decimals < NOT_FIXED_DEC {
        let s = format!("{:.*}", decimals as usize, f);
        if s.starts_with('-') && s[1..].bytes().all(|c| c == b'0' || c == b'.') {
            return s[1..].to_string();
        }
        s
    } else {
        format_double(f)
    }
}

/// A double in MariaDB's shortest text form (`my_gcvt` with shortest round-trip digits).
pub fn format_double(f: f64) -> String {
    if f == 0.0 {
        return "0".to_string();
    }
    // `{:e}` gives the shortest round-trip digits: "d.ddde-x".
    let e = format!("{:e}", f.abs());
    let (mantissa, exp) = e.split_once('e').expect("exponent form");
    let exp: i32 = exp.parse().expect("exponent");
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let len = digits.len() as i32;
    // MariaDB's `decpt`: the value is 0.DIGITS * 10^decpt.
    let decpt = exp + 1;
    let sign = if f < 0.0 { "-" } else { "" };
    let positional = decpt >= -14 && (decpt <= 15 || len > decpt);
    if positional {
        if decpt <= 0 {
            format!("{sign}0.{}{digits}", "0".repeat((-decpt) as usize))
        } else if decpt >= len {
            format!("{sign}{digits}{}", "0".repeat((decpt - len) as usize))
        } else {
            let (i, fr) = digits.split_at(decpt as usize);
            format!("{sign}{i}.{fr}")
        }
    } else {
        format!("{sign}{mantissa}e{exp}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(s: &str) -> Decimal {
        parse_decimal(s.as_bytes()).unwrap()
    }

    #[test]
    fn decimal_exact_sum_keeps_scale() {
        let s = dec("0.10") + dec("0.20");
        assert_eq!(format_decimal(s, Some(2)).unwrap(), "0.30");
        assert_eq!(format_decimal(dec("1"), Some(2)).unwrap(), "1.00");
        assert_eq!(format_decimal(dec("-0.00"), Some(2)).unwrap(), "0.00");
        assert_eq!(format_decimal(dec("12"), Some(0)).unwrap(), "12");
    }

    #[test]
    fn parse_rejects_garbage() {
        assert!(parse_decimal(b"abc").is_none());
        assert!(parse_decimal(b"").is_none());
        assert_eq!(parse_decimal(b"-1.50").unwrap().to_string(), "-1.50");
    }

    #[test]
    fn avg_rounds_half_away_from_zero() {
        // Checked against MariaDB 10.11: AVG over 32 rows with one 1 = 0.0313.
        assert_eq!(divide_rounded(dec("1"), 32, 4).unwrap(), "0.0313");
        assert_eq!(divide_rounded(dec("-1"), 32, 4).unwrap(), "-0.0313");
        assert_eq!(divide_rounded(dec("3"), 32, 4).unwrap(), "0.0938");
        assert_eq!(divide_rounded(dec("0.01"), 32, 6).unwrap(), "0.000313");
        assert_eq!(divide_rounded(dec("3"), 2, 4).unwrap(), "1.5000");
        assert_eq!(divide_rounded(dec("4"), 3, 4).unwrap(), "1.3333");
        assert_eq!(divide_rounded(dec("5"), 3, 4).unwrap(), "1.6667");
        assert_eq!(divide_rounded(dec("-5"), 3, 4).unwrap(), "-1.6667");
        assert_eq!(divide_rounded(dec("-0.20"), 4, 6).unwrap(), "-0.050000");
        assert_eq!(divide_rounded(dec("0.30"), 2, 6).unwrap(), "0.150000");
        assert_eq!(divide_rounded(dec("1"), 3, 0).unwrap(), "0");
        assert_eq!(divide_rounded(dec("2"), 3, 0).unwrap(), "1");
        assert_eq!(
            divide_rounded(dec("18446744073709551616"), 2, 4).unwrap(),
            "9223372036854775808.0000"
        );
    }

    #[test]
    fn avg_overflow_is_an_error() {
        let big = Decimal::MAX;
        assert!(divide_rounded(big, 3, 20).is_err());
    }

    #[test]
    fn scaled_format() {
        assert_eq!(format_scaled(5, 4), "0.0005");
        assert_eq!(format_scaled(-5, 4), "-0.0005");
        assert_eq!(format_scaled(12345, 2), "123.45");
        assert_eq!(format_scaled(7, 0), "7");
        assert_eq!(format_scaled(0, 2), "0.00");
    }

    #[test]
    fn doubles_print_like_mariadb() {
        // Each pair checked against MariaDB 10.11 (`SELECT <literal>e0`).
        for (f, s) in [
            (0.1 + 0.2, "0.30000000000000004"),
            (1e15, "1e15"),
            (1e20, "1e20"),
            (-1e20, "-1e20"),
            (123456789012345.0, "123456789012345"),
            (1e-5, "0.00001"),
            (1e-15, "0.000000000000001"),
            (1e-16, "1e-16"),
            (1.5e-16, "1.5e-16"),
            (1.5e-7, "0.00000015"),
            (1234567890123456.0, "1.234567890123456e15"),
            (12345678901234567.0, "1.2345678901234568e16"),
            (-0.5, "-0.5"),
            (1e301, "1e301"),
            (100.0, "100"),
            (0.0, "0"),
            (-0.0, "0"),
            (2.5e19, "2.5e19"),
            (0.15000000000000002, "0.15000000000000002"),
        ] {
            assert_eq!(format_double(f), s, "{f:e}");
        }
    }

    #[test]
    fn fixed_doubles() {
        assert_eq!(format_double_column(1.005, 2), "1.00");
        assert_eq!(format_double_column(2.5, 1), "2.5");
        assert_eq!(format_double_column(-0.001, 2), "0.00");
        assert_eq!(format_double_column(0.25, 31), "0.25");
    }
}
