//! The binary protocol of prepared statements, for the cases where the proxy must understand
//! it rather than relay it: reading the parameter values of COM_STMT_EXECUTE (to route by the
//! shard key, or to turn a statement spanning shards into text SQL per shard), and encoding a
//! merged text result as binary rows (what the client of a prepared statement expects).

use bytes::{BufMut, Bytes, BytesMut};

use super::buf::{put_lenenc_bytes, Reader};
use super::resultset::{column_flags, column_type as t, ColumnDef, TextRow};

/// One decoded parameter value.
#[derive(Debug, Clone, PartialEq)]
pub enum ParamValue {
    Null,
    Int(i64),
    UInt(u64),
    Double(f64),
    /// Bytes of a string-like parameter; `binary` when the client declared a BLOB type.
    Bytes {
        data: Bytes,
        binary: bool,
    },
    /// DECIMAL sent as text: a number literal.
    Decimal(String),
    /// Date or time, as a quoted-literal body (`2026-11-26 10:00:00.000001`).
    Temporal(String),
    /// Sent with COM_STMT_SEND_LONG_DATA: not in the execute packet.
    LongData,
}

/// An integer parameter: `u` when the client flagged it unsigned, else `i`.
fn integer(unsigned: bool, u: u64, i: i64) -> ParamValue {
    if unsigned {
        ParamValue::UInt(u)
    } else {
        ParamValue::Int(i)
    }
}

/// Decodes the parameters of a COM_STMT_EXECUTE payload (starting with the command byte),
/// given the parameter count and the types (2 bytes each) that apply. `long_data` lists
/// parameters whose values came by COM_STMT_SEND_LONG_DATA. `None`: malformed.
pub fn decode_params(
    payload: &[u8],
    count: usize,
    types: &[u8],
    long_data: &[u16],
) -> Option<Vec<ParamValue>> {
    if count == 0 {
        return Some(Vec::new());
    }
    let mut r = Reader::new(payload);
    r.skip(10)?;
    let nulls = r.take(count.div_ceil(8))?;
    let bound = r.u8()?;
    let types: &[u8] = if bound == 1 {
        r.take(2 * count)?
    } else {
        types
    };
    if types.len() < 2 * count {
        return None;
    }
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        if nulls[i / 8] & (1 << (i % 8)) != 0 {
            out.push(ParamValue::Null);
            continue;
        }
        if long_data.contains(&(i as u16)) {
            out.push(ParamValue::LongData);
            continue;
        }
        let ty = types[2 * i];
        let unsigned = types[2 * i + 1] & 0x80 != 0;
        let v = match ty {
            // The same bits read as unsigned or, sign-extended, as signed.
            t::TINY => r
                .u8()
                .map(|b| integer(unsigned, b as u64, b as i8 as i64))?,
            t::SHORT | t::YEAR => r
                .u16()
                .map(|b| integer(unsigned, b as u64, b as i16 as i64))?,
            t::LONG | t::INT24 => r
                .u32()
                .map(|b| integer(unsigned, b as u64, b as i32 as i64))?,
            t::LONGLONG => r.u64().map(|b| integer(unsigned, b, b as i64))?,
            t::FLOAT => ParamValue::Double(f32::from_bits(r.u32()?) as f64),
            t::DOUBLE => ParamValue::Double(f64::from_bits(r.u64()?)),
            t::DECIMAL | t::NEWDECIMAL => {
                ParamValue::Decimal(String::from_utf8_lossy(r.lenenc_bytes()?).into_owned())
            }
            t::DATE | t::DATETIME | t::TIMESTAMP | t::NEWDATE => {
                let n = r.u8()? as usize;
                let b = r.take(n)?;
                ParamValue::Temporal(format_datetime(b, ty == t::DATE || ty == t::NEWDATE)?)
            }
            t::TIME => {
                let n = r.u8()? as usize;
                let b = r.take(n)?;
                ParamValue::Temporal(format_time(b)?)
            }
            t::NULL => ParamValue::Null,
            t::TINY_BLOB | t::MEDIUM_BLOB | t::LONG_BLOB | t::BLOB | t::GEOMETRY => {
                ParamValue::Bytes {
                    data: Bytes::copy_from_slice(r.lenenc_bytes()?),
                    binary: true,
                }
            }
            _ => ParamValue::Bytes {
                data: Bytes::copy_from_slice(r.lenenc_bytes()?),
                binary: false,
            },
        };
        out.push(v);
    }
    Some(out)
}

fn format_datetime(b: &[u8], date_only: bool) -> Option<String> {
    let (y, mo, d) = if b.len() >= 4 {
        (u16::from_le_bytes([b[0], b[1]]), b[2], b[3])
    } else {
        (0, 0, 0)
    };
    if date_only {
        return Some(format!("{y:04}-{mo:02}-{d:02}"));
    }
    let (h, mi, s) = if b.len() >= 7 {
        (b[4], b[5], b[6])
    } else {
        (0, 0, 0)
    };
    let us = if b.len() >= 11 {
        u32::from_le_bytes([b[7], b[8], b[9], b[10]])
    } else {
        0
    };
    Some(if us > 0 {
        format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}.{us:06}")
    } else {
        format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}")
    })
}

fn format_time(b: &[u8]) -> Option<String> {
    if b.is_empty() {
        return Some("00:00:00".into());
    }
    if b.len() < 8 {
        return None;
    }
    let neg = b[0] == 1;
    let days = u32::from_le_bytes([b[1], b[2], b[3], b[4]]);
    // In u64: a malformed day count (up to 2^32) must not overflow (found by fuzzing).
    let (h, m, s) = (u64::from(b[5]) + u64::from(days) * 24, b[6], b[7]);
    let us = if b.len() >= 12 {
        u32::from_le_bytes([b[8], b[9], b[10], b[11]])
    } else {
        0
    };
    let sign = if neg { "-" } else { "" };
    Some(if us > 0 {
        format!("{sign}{h:02}:{m:02}:{s:02}.{us:06}")
    } else {
        format!("{sign}{h:02}:{m:02}:{s:02}")
    })
}

impl ParamValue {
    /// The value as an SQL literal. `backslash_escapes`: whether the session's sql_mode lets
    /// backslashes escape (no NO_BACKSLASH_ESCAPES). `None` for long data (not available).
    pub fn to_sql_literal(&self, backslash_escapes: bool) -> Option<String> {
        Some(match self {
            ParamValue::Null => "NULL".into(),
            ParamValue::Int(v) => v.to_string(),
            ParamValue::UInt(v) => v.to_string(),
            ParamValue::Double(v) => {
                if v.is_finite() {
                    format!("{v:e}")
                } else {
                    return None;
                }
            }
            ParamValue::Decimal(s) => {
                if s.bytes()
                    .all(|c| c.is_ascii_digit() || b"+-.eE".contains(&c))
                    && !s.is_empty()
                {
                    s.clone()
                } else {
                    return None;
                }
            }
            ParamValue::Temporal(s) => format!("'{s}'"),
            ParamValue::Bytes { data, binary } => {
                let mut out = String::with_capacity(data.len() + 10);
                if *binary || std::str::from_utf8(data).is_err() {
                    // Hex keeps any byte intact; _binary makes it a string, not a number.
                    out.push_str("_binary X'");
                    for b in data.iter() {
                        out.push_str(&format!("{b:02X}"));
                    }
                    out.push('\'');
                    return Some(out);
                }
                out.push('\'');
                for ch in std::str::from_utf8(data).ok()?.chars() {
                    match ch {
                        '\'' => out.push_str("''"),
                        '\\' if backslash_escapes => out.push_str("\\\\"),
                        '\0' if backslash_escapes => out.push_str("\\0"),
                        c => out.push(c),
                    }
                }
                out.push('\'');
                out
            }
            ParamValue::LongData => return None,
        })
    }
}

/// Encodes a text row as a binary-protocol row for these columns. `None` when a value does not
/// fit its column type (the caller refuses rather than send something wrong).
pub fn encode_binary_row(columns: &[ColumnDef], row: &TextRow) -> Option<BytesMut> {
    let n = columns.len();
    let mut out = BytesMut::with_capacity(16 + row.len() * 8);
    out.put_u8(0x00);
    let bitmap_len = (n + 7 + 2) / 8;
    let bitmap_at = out.len();
    out.put_bytes(0, bitmap_len);
    for (i, (col, v)) in columns.iter().zip(row.iter()).enumerate() {
        let Some(v) = v else {
            let bit = i + 2;
            out[bitmap_at + bit / 8] |= 1 << (bit % 8);
            continue;
        };
        let s = std::str::from_utf8(v).ok();
        let unsigned = col.flags & column_flags::UNSIGNED != 0;
        match col.column_type {
            t::TINY => put_int(&mut out, s?, unsigned, 1)?,
            t::SHORT | t::YEAR => put_int(&mut out, s?, unsigned, 2)?,
            t::LONG | t::INT24 => put_int(&mut out, s?, unsigned, 4)?,
            t::LONGLONG => put_int(&mut out, s?, unsigned, 8)?,
            t::FLOAT => out.put_f32_le(s?.parse().ok()?),
            t::DOUBLE => out.put_f64_le(s?.parse().ok()?),
            t::DATE | t::NEWDATE | t::DATETIME | t::TIMESTAMP => put_datetime(&mut out, s?)?,
            t::TIME => put_time(&mut out, s?)?,
            _ => put_lenenc_bytes(&mut out, v),
        }
    }
    Some(out)
}

fn put_int(out: &mut BytesMut, s: &str, unsigned: bool, width: usize) -> Option<()> {
    let v: u64 = if unsigned {
        s.parse::<u64>().ok()?
    } else {
        s.parse::<i64>().ok()? as u64
    };
    out.put_uint_le(v & (u64::MAX >> (64 - 8 * width)), width);
    Some(())
}

fn put_datetime(out: &mut BytesMut, s: &str) -> Option<()> {
    let (date, time) = s.split_once(' ').unwrap_or((s, ""));
    let mut d = date.split('-');
    let y: u16 = d.next()?.parse().ok()?;
    let mo: u8 = d.next()?.parse().ok()?;
    let da: u8 = d.next()?.parse().ok()?;
    let (mut h, mut mi, mut se, mut us) = (0u8, 0u8, 0u8, 0u32);
    if !time.is_empty() {
        let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
        let mut p = hms.split(':');
        h = p.next()?.parse().ok()?;
        mi = p.next()?.parse().ok()?;
        se = p.next()?.parse().ok()?;
        if !frac.is_empty() {
            let padded = format!("{frac:0<6}");
            us = padded.get(..6)?.parse().ok()?;
        }
    }
    if us > 0 {
        out.put_u8(11);
    } else if h > 0 || mi > 0 || se > 0 {
        out.put_u8(7);
    } else if y > 0 || mo > 0 || da > 0 {
        out.put_u8(4);
    } else {
        out.put_u8(0);
        return Some(());
    }
    out.put_u16_le(y);
    out.put_u8(mo);
    out.put_u8(da);
    if h > 0 || mi > 0 || se > 0 || us > 0 {
        out.put_u8(h);
        out.put_u8(mi);
        out.put_u8(se);
    }
    if us > 0 {
        out.put_u32_le(us);
    }
    Some(())
}

fn put_time(out: &mut BytesMut, s: &str) -> Option<()> {
    let (neg, s) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s),
    };
    let (hms, frac) = s.split_once('.').unwrap_or((s, ""));
    let mut p = hms.split(':');
    let hours: u32 = p.next()?.parse().ok()?;
    let m: u8 = p.next()?.parse().ok()?;
    let sec: u8 = p.next()?.parse().ok()?;
    let us: u32 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<6}").get(..6)?.parse().ok()?
    };
    if !neg && hours == 0 && m == 0 && sec == 0 && us == 0 {
        out.put_u8(0);
        return Some(());
    }
    out.put_u8(if us > 0 { 12 } else { 8 });
    out.put_u8(neg as u8);
    out.put_u32_le(hours / 24);
    out.put_u8((hours % 24) as u8);
    out.put_u8(m);
    out.put_u8(sec);
    if us > 0 {
        out.put_u32_le(us);
    }
    Some(())
}

/// Replaces the `?` placeholders of `sql` (outside strings and comments) with literals.
/// `None` when the counts differ.
pub fn interpolate(sql: &str, literals: &[String]) -> Option<String> {
    let tokens = crate::lex::tokenize(sql);
    let marks: Vec<usize> = tokens
        .iter()
        .filter(|t| t.is_punct('?'))
        .map(|t| t.start)
        .collect();
    if marks.len() != literals.len() {
        return None;
    }
    let mut out =
        String::with_capacity(sql.len() + literals.iter().map(|l| l.len()).sum::<usize>());
    let mut last = 0;
    for (pos, lit) in marks.iter().zip(literals) {
        out.push_str(&sql[last..*pos]);
        out.push_str(lit);
        last = pos + 1;
    }
    out.push_str(&sql[last..]);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn execute_packet(types: &[(u8, u8)], values: &[u8], nulls: u8) -> Vec<u8> {
        let mut p = vec![0x17, 1, 0, 0, 0, 0, 1, 0, 0, 0, nulls, 1];
        for (t, f) in types {
            p.push(*t);
            p.push(*f);
        }
        p.extend_from_slice(values);
        p
    }

    #[test]
    fn decodes_common_parameter_types() {
        let mut values = Vec::new();
        values.extend_from_slice(&(-5i64).to_le_bytes());
        values.extend_from_slice(&[3, b'a', b'\'', b'b']);
        values.extend_from_slice(&42u32.to_le_bytes());
        let p = execute_packet(
            &[
                (t::LONGLONG, 0),
                (t::VAR_STRING, 0),
                (t::LONG, 0x80),
                (t::LONG, 0),
            ],
            &values,
            0b1000,
        );
        let v = decode_params(&p, 4, &[], &[]).unwrap();
        assert_eq!(v[0], ParamValue::Int(-5));
        assert_eq!(v[2], ParamValue::UInt(42));
        assert_eq!(v[3], ParamValue::Null);
        assert_eq!(v[1].to_sql_literal(true).unwrap(), "'a''b'");
    }

    #[test]
    fn truncated_parameters_are_none() {
        let p = execute_packet(&[(t::LONGLONG, 0)], &[1, 2, 3], 0);
        assert!(decode_params(&p, 1, &[], &[]).is_none());
        assert!(decode_params(&p[..5], 1, &[], &[]).is_none());
    }

    #[test]
    fn interpolation_skips_strings_and_comments() {
        let sql = "SELECT '?' /* ? */, a FROM t WHERE id = ? AND b = ?";
        let out = interpolate(sql, &["1".into(), "'x'".into()]).unwrap();
        assert_eq!(out, "SELECT '?' /* ? */, a FROM t WHERE id = 1 AND b = 'x'");
        assert!(interpolate(sql, &["1".into()]).is_none());
    }

    #[test]
    fn binary_rows() {
        let cols = vec![
            ColumnDef {
                column_type: t::LONG,
                ..ColumnDef::text("a")
            },
            ColumnDef::text("b"),
            ColumnDef {
                column_type: t::DATETIME,
                ..ColumnDef::text("c")
            },
        ];
        let row = vec![
            Some(Bytes::from_static(b"-2")),
            None,
            Some(Bytes::from_static(b"2026-11-26 10:00:01.5")),
        ];
        let enc = encode_binary_row(&cols, &row).unwrap();
        assert_eq!(enc[0], 0);
        assert_eq!(enc[1], 0b0000_1000);
        assert_eq!(&enc[2..6], &(-2i32).to_le_bytes());
        assert_eq!(enc[6], 11);
        assert!(encode_binary_row(&cols[..1], &vec![Some(Bytes::from_static(b"x"))]).is_none());
    }

    proptest::proptest! {
        #[test]
        fn decoder_never_panics(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64), n in 0usize..5) {
            let _ = decode_params(&data, n, &[], &[]);
        }
    }
}
