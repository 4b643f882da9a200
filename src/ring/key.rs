//! The shard key value and its canonical byte form.
//!
//! Placement hashes bytes, but MariaDB compares values: `42`, `'42'` and `'42 '` find the same
//! row of an INT key, and `'Alice'` finds `'alice '` under the default `_ci` collations with PAD
//! SPACE. Two values that MariaDB may consider equal **must** hash to the same shard, or a row is
//! looked for on the wrong shard and silently missed. Folding *more* than MariaDB does is harmless
//! (two different keys share a shard; the shard still compares exactly), folding *less* is a
//! wrong answer. So the canonical form is chosen coarse:
//!
//! | value | canonical bytes |
//! |---|---|
//! | integer (any sign, up to the full `BIGINT UNSIGNED` range) | decimal ASCII, `-` for negatives, no leading zeros: `42`, `-7`, `18446744073709551615` |
//! | string that is the canonical decimal form of an integer (after trimming trailing spaces) | the same decimal ASCII, so `'42'` routes like `42` |
//! | other ASCII string | trailing spaces trimmed, ASCII lowercased: `'Alice  '` → `alice` |
//!
//! Values the proxy refuses to route ([`KeyValue::from_str_value`] and
//! [`KeyValue::from_number_literal`] return `None`), because MariaDB might match them to keys
//! with a different canonical form:
//! - decimals and floats (`42.0`, `4.2e1`): equal to the integer 42 for an INT key;
//! - strings that look numeric but are not canonical (`'042'`, `' 42'`, `'+42'`, `'42abc'`,
//!   `'4.2e1'`): an INT key converts them to 42;
//! - strings with non-ASCII characters: `_ci` collations also fold accents and other letters
//!   (`'José'` = `'jose'`), which a simple byte form cannot reproduce;
//! - NULL: never equal to anything.
//!
//! The planner scatters a read whose key cannot be routed (exact, just slower) and refuses a
//! write that needs a placement. Residual assumption: an
//! application compares a key column with literals of the column's own kind; comparing an INT
//! key with a non-numeric string (MariaDB converts it to 0) is not supported.

use std::hash::{Hash, Hasher};

/// A shard key value in canonical form. Build one with [`KeyValue::from`] (integers),
/// [`KeyValue::from_str_value`] (strings) or [`KeyValue::from_number_literal`] (SQL number
/// literals); the constructors refuse values that cannot be routed exactly.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct KeyValue {
    canonical: String,
}

impl KeyValue {
    /// The canonical bytes that placement hashes (see the module doc).
    pub fn canonical(&self) -> &[u8] {
        self.canonical.as_bytes()
    }

    /// The canonical form as text (for PREVIEW and logs).
    pub fn as_str(&self) -> &str {
        &self.canonical
    }

    /// A string value (a quoted SQL literal's content, or a string parameter of a prepared
    /// statement). `None` when the string cannot be routed exactly (see the module doc).
    pub fn from_str_value(s: &str) -> Option<KeyValue> {
        if !s.is_ascii() {
            return None;
        }
        let trimmed = s.trim_end_matches(' ');
        if let Some(int) = canonical_integer(trimmed) {
            return Some(KeyValue { canonical: int });
        }
        // Anything MariaDB's string-to-number conversion would read as a number, in a form
        // other than the canonical one, is ambiguous against an INT key.
        let first = trimmed.trim_start().chars().next();
        if matches!(first, Some(c) if c.is_ascii_digit() || c == '+' || c == '-' || c == '.') {
            return None;
        }
        // Leading whitespace before non-numeric text is still significant in a string compare
        // but `' 42'` was handled above; keep it.
        Some(KeyValue {
            canonical: trimmed.to_ascii_lowercase(),
        })
    }

    /// An SQL number literal as written (`42`, `-7`, `42.0`, `1e3`). `None` unless it is an
    /// exact integer written in integer form.
    pub fn from_number_literal(text: &str) -> Option<KeyValue> {
        canonical_integer_loose(text).map(|canonical| KeyValue { canonical })
    }
}

impl From<i64> for KeyValue {
    fn from(v: i64) -> KeyValue {
        KeyValue {
            canonical: v.to_string(),
        }
    }
}

impl From<u64> for KeyValue {
    fn from(v: u64) -> KeyValue {
        KeyValue {
            canonical: v.to_string(),
        }
    }
}

impl From<i32> for KeyValue {
    fn from(v: i32) -> KeyValue {
        KeyValue::from(v as i64)
    }
}

impl std::fmt::Display for KeyValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.canonical)
    }
}

/// Placement feeds the canonical bytes exactly once: `str`'s own `Hash` would append a 0xff
/// terminator, and derived impls would change with the struct layout.
impl Hash for KeyValue {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write(self.canonical.as_bytes());
    }
}

/// `s` if it already is the canonical decimal form of an integer: optional `-`, digits, no
/// leading zeros, no `-0`, within the i64/u64 range MariaDB integer columns can hold.
fn canonical_integer(s: &str) -> Option<String> {
    let digits = s.strip_prefix('-').unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if digits.len() > 1 && digits.starts_with('0') {
        return None;
    }
    if s.starts_with('-') {
        if digits == "0" {
            return None;
        }
        s.parse::<i64>().ok()?;
    } else {
        s.parse::<u64>().ok()?;
    }
    Some(s.to_string())
}

/// A number literal in integer form (`007` is the integer 7 in SQL, unlike the string `'007'`).
fn canonical_integer_loose(s: &str) -> Option<String> {
    let (neg, digits) = match s.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let digits = digits.trim_start_matches('0');
    let digits = if digits.is_empty() { "0" } else { digits };
    if neg && digits != "0" {
        let v: i64 = format!("-{digits}").parse().ok()?;
        Some(v.to_string())
    } else {
        let v: u64 = digits.parse().ok()?;
        Some(v.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> Option<String> {
        KeyValue::from_str_value(v).map(|k| k.as_str().to_string())
    }
    fn n(v: &str) -> Option<String> {
        KeyValue::from_number_literal(v).map(|k| k.as_str().to_string())
    }

    #[test]
    fn integer_and_its_string_agree() {
        assert_eq!(
            KeyValue::from(42i64),
            KeyValue::from_str_value("42").unwrap()
        );
        assert_eq!(
            KeyValue::from(42i64),
            KeyValue::from_str_value("42  ").unwrap()
        );
        assert_eq!(
            KeyValue::from(42u64),
            KeyValue::from_number_literal("42").unwrap()
        );
        assert_eq!(
            KeyValue::from(-7i64),
            KeyValue::from_str_value("-7").unwrap()
        );
    }

    #[test]
    fn number_literals() {
        assert_eq!(n("007").as_deref(), Some("7"));
        assert_eq!(n("-0").as_deref(), Some("0"));
        assert_eq!(n("+5").as_deref(), Some("5"));
        assert_eq!(
            n("18446744073709551615").as_deref(),
            Some("18446744073709551615")
        );
        assert_eq!(
            n("-9223372036854775808").as_deref(),
            Some("-9223372036854775808")
        );
        assert_eq!(n("18446744073709551616"), None, "beyond BIGINT UNSIGNED");
        assert_eq!(n("-9223372036854775809"), None);
        assert_eq!(n("42.0"), None);
        assert_eq!(n("4.2e1"), None);
        assert_eq!(n("0x2a"), None);
    }

    #[test]
    fn strings_fold_case_and_trailing_spaces() {
        assert_eq!(s("Alice  ").as_deref(), Some("alice"));
        assert_eq!(s("ALICE"), s("alice"));
        assert_eq!(s(" alice").as_deref(), Some(" alice"));
        assert_eq!(s("").as_deref(), Some(""));
    }

    #[test]
    fn ambiguous_strings_are_refused() {
        for v in [
            "042", " 42", "+42", "42abc", "4.2e1", "42.0", "-0", ".5", "José",
        ] {
            assert_eq!(s(v), None, "{v:?} must not be routable");
        }
    }

    #[test]
    fn hash_feeds_canonical_bytes_once() {
        use std::hash::BuildHasher;
        let b = hashring::DefaultHashBuilder;
        let mut h = b.build_hasher();
        h.write(b"42");
        assert_eq!(b.hash_one(KeyValue::from(42i64)), h.finish());
    }
}
