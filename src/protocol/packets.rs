//! The generic answer packets: OK, ERR and EOF, parsed (to learn status flags, affected rows,
//! warnings) and built (for answers the proxy gives itself).

use bytes::{BufMut, Bytes, BytesMut};

use super::buf::{put_lenenc_int, Reader};

/// What an OK packet (or an EOF that ends a result set) tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OkInfo {
    pub affected_rows: u64,
    pub last_insert_id: u64,
    pub status: u16,
    pub warnings: u16,
}

/// Parses an OK packet payload (header 0x00, or 0xFE when it ends a result set under
/// CLIENT_DEPRECATE_EOF).
pub fn parse_ok(payload: &[u8]) -> Option<OkInfo> {
    let mut r = Reader::new(payload);
    let h = r.u8()?;
    if h != 0x00 && h != 0xFE {
        return None;
    }
    let affected_rows = r.lenenc_int()?;
    let last_insert_id = r.lenenc_int()?;
    let status = r.u16()?;
    let warnings = r.u16()?;
    Some(OkInfo {
        affected_rows,
        last_insert_id,
        status,
        warnings,
    })
}

/// Parses a classic EOF packet (0xFE, warnings, status; 5 bytes).
pub fn parse_eof(payload: &[u8]) -> Option<OkInfo> {
    let mut r = Reader::new(payload);
    if r.u8()? != 0xFE {
        return None;
    }
    let warnings = r.u16()?;
    let status = r.u16()?;
    Some(OkInfo {
        warnings,
        status,
        ..OkInfo::default()
    })
}

/// Parses whatever ends a result set: under CLIENT_DEPRECATE_EOF an OK packet with a 0xFE
/// header, otherwise a classic 5-byte EOF.
pub fn parse_terminator(deprecate_eof: bool, payload: &[u8]) -> Option<OkInfo> {
    if deprecate_eof {
        parse_ok(payload)
    } else {
        parse_eof(payload)
    }
}

/// Whether a packet in the rows phase ends the result set (an EOF or an OK with a 0xFE
/// header). A row can also begin with 0xFE (an 8-byte length), but only if it is larger than
/// 16 MiB, which the length test excludes.
pub fn is_terminator(payload: &[u8]) -> bool {
    payload.first() == Some(&0xFE) && payload.len() < 0xFF_FFFF
}

/// An ERR packet's contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrInfo {
    pub code: u16,
    pub sqlstate: String,
    pub message: String,
}

impl std::fmt::Display for ErrInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ERROR {} ({}): {}",
            self.code, self.sqlstate, self.message
        )
    }
}

impl ErrInfo {
    pub fn new(code: (u16, &str), message: impl Into<String>) -> ErrInfo {
        ErrInfo {
            code: code.0,
            sqlstate: code.1.to_string(),
            message: message.into(),
        }
    }
}

pub fn parse_err(payload: &[u8]) -> Option<ErrInfo> {
    let mut r = Reader::new(payload);
    if r.u8()? != 0xFF {
        return None;
    }
    let code = r.u16()?;
    let mut sqlstate = String::from("HY000");
    if r.peek() == Some(b'#') {
        r.u8();
        sqlstate = String::from_utf8_lossy(r.take(5)?).into_owned();
    }
    let message = String::from_utf8_lossy(r.rest()).into_owned();
    Some(ErrInfo {
        code,
        sqlstate,
        message,
    })
}

pub fn build_ok(info: &OkInfo, message: &str) -> BytesMut {
    let mut out = BytesMut::with_capacity(16 + message.len());
    out.put_u8(0x00);
    put_lenenc_int(&mut out, info.affected_rows);
    put_lenenc_int(&mut out, info.last_insert_id);
    out.put_u16_le(info.status);
    out.put_u16_le(info.warnings);
    out.put_slice(message.as_bytes());
    out
}

/// The packet that ends a result set: a classic EOF, or under CLIENT_DEPRECATE_EOF an OK
/// packet with a 0xFE header.
pub fn build_terminator(deprecate_eof: bool, status: u16, warnings: u16) -> BytesMut {
    if deprecate_eof {
        let mut out = build_ok(
            &OkInfo {
                status,
                warnings,
                ..OkInfo::default()
            },
            "",
        );
        out[0] = 0xFE;
        out
    } else {
        build_eof(status, warnings)
    }
}

/// A command packet's payload: the command byte, then its argument (SQL text for COM_QUERY
/// and COM_STMT_PREPARE).
pub fn build_command(command: u8, argument: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(argument.len() + 1);
    out.put_u8(command);
    out.extend_from_slice(argument);
    out.freeze()
}

pub fn build_eof(status: u16, warnings: u16) -> BytesMut {
    let mut out = BytesMut::with_capacity(5);
    out.put_u8(0xFE);
    out.put_u16_le(warnings);
    out.put_u16_le(status);
    out
}

pub fn build_err(e: &ErrInfo) -> BytesMut {
    let mut out = BytesMut::with_capacity(9 + e.message.len());
    out.put_u8(0xFF);
    out.put_u16_le(e.code);
    out.put_u8(b'#');
    let mut state = e.sqlstate.as_bytes().to_vec();
    state.resize(5, b'0');
    out.put_slice(&state);
    out.put_slice(e.message.as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ok_roundtrip() {
        let info = OkInfo {
            affected_rows: 300,
            last_insert_id: 70000,
            status: 3,
            warnings: 2,
        };
        assert_eq!(parse_ok(&build_ok(&info, "Rows matched")).unwrap(), info);
    }

    #[test]
    fn err_roundtrip() {
        let e = ErrInfo::new((1146, "42S02"), "Table 'x.y' doesn't exist");
        assert_eq!(parse_err(&build_err(&e)).unwrap(), e);
    }

    #[test]
    fn terminators() {
        let eof = build_terminator(false, 2, 1);
        assert!(is_terminator(&eof));
        assert_eq!(parse_terminator(false, &eof).unwrap().warnings, 1);
        let ok = build_terminator(true, 10, 0);
        assert!(is_terminator(&ok));
        assert_eq!(parse_terminator(true, &ok).unwrap().status, 10);
    }

    #[test]
    fn garbage_is_not_parsed() {
        assert!(parse_ok(&[0x00, 0xFF]).is_none());
        assert!(parse_err(&[0xFF, 1]).is_none());
        assert!(parse_eof(&[]).is_none());
    }
}
