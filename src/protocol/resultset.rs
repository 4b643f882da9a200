//! Result sets as values: column definitions and text-protocol rows.
//!
//! Where one backend answers, the proxy relays its packets untouched and never builds these.
//! They exist for answers the proxy composes itself: merged scatter-gather results and the
//! proxy's own statements (PREVIEW, SHOW …).

use bytes::{BufMut, Bytes, BytesMut};

use super::buf::{put_lenenc_bytes, put_lenenc_int, Reader};

/// MySQL column type codes (`enum_field_types`).
pub mod column_type {
    pub const DECIMAL: u8 = 0x00;
    pub const TINY: u8 = 0x01;
    pub const SHORT: u8 = 0x02;
    pub const LONG: u8 = 0x03;
    pub const FLOAT: u8 = 0x04;
    pub const DOUBLE: u8 = 0x05;
    pub const NULL: u8 = 0x06;
    pub const TIMESTAMP: u8 = 0x07;
    pub const LONGLONG: u8 = 0x08;
    pub const INT24: u8 = 0x09;
    pub const DATE: u8 = 0x0a;
    pub const TIME: u8 = 0x0b;
    pub const DATETIME: u8 = 0x0c;
    pub const YEAR: u8 = 0x0d;
    pub const NEWDATE: u8 = 0x0e;
    pub const VARCHAR: u8 = 0x0f;
    pub const BIT: u8 = 0x10;
    pub const JSON: u8 = 0xf5;
    pub const NEWDECIMAL: u8 = 0xf6;
    pub const ENUM: u8 = 0xf7;
    pub const SET: u8 = 0xf8;
    pub const TINY_BLOB: u8 = 0xf9;
    pub const MEDIUM_BLOB: u8 = 0xfa;
    pub const LONG_BLOB: u8 = 0xfb;
    pub const BLOB: u8 = 0xfc;
    pub const VAR_STRING: u8 = 0xfd;
    pub const STRING: u8 = 0xfe;
    pub const GEOMETRY: u8 = 0xff;
}

/// Column flags that matter to merging.
pub mod column_flags {
    pub const NOT_NULL: u16 = 1;
    pub const PRI_KEY: u16 = 2;
    pub const UNSIGNED: u16 = 32;
    pub const BINARY: u16 = 128;
}

/// The binary character set id: columns with it compare bytewise.
pub const BINARY_CHARSET: u16 = 63;

/// One column definition (Protocol::ColumnDefinition41).
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnDef {
    pub schema: Bytes,
    pub table: Bytes,
    pub org_table: Bytes,
    pub name: Bytes,
    pub org_name: Bytes,
    pub charset: u16,
    pub length: u32,
    pub column_type: u8,
    pub flags: u16,
    pub decimals: u8,
}

impl ColumnDef {
    /// A column of the proxy's own answers (PREVIEW, SHOW …): a utf8mb4 VAR_STRING.
    pub fn text(name: &str) -> ColumnDef {
        ColumnDef {
            schema: Bytes::new(),
            table: Bytes::new(),
            org_table: Bytes::new(),
            name: Bytes::copy_from_slice(name.as_bytes()),
            org_name: Bytes::new(),
            charset: 45,
            length: 1024,
            column_type: column_type::VAR_STRING,
            flags: 0,
            decimals: 0,
        }
    }

    /// A BIGINT column of the proxy's own answers.
    pub fn bigint(name: &str) -> ColumnDef {
        ColumnDef {
            column_type: column_type::LONGLONG,
            charset: BINARY_CHARSET,
            length: 21,
            flags: column_flags::BINARY,
            ..ColumnDef::text(name)
        }
    }

    /// Parses a column definition packet payload.
    pub fn parse(payload: &[u8]) -> Option<ColumnDef> {
        let mut r = Reader::new(payload);
        let _catalog = r.lenenc_bytes()?;
        let schema = Bytes::copy_from_slice(r.lenenc_bytes()?);
        let table = Bytes::copy_from_slice(r.lenenc_bytes()?);
        let org_table = Bytes::copy_from_slice(r.lenenc_bytes()?);
        let name = Bytes::copy_from_slice(r.lenenc_bytes()?);
        let org_name = Bytes::copy_from_slice(r.lenenc_bytes()?);
        let _fixed_len = r.lenenc_int()?;
        let charset = r.u16()?;
        let length = r.u32()?;
        let column_type = r.u8()?;
        let flags = r.u16()?;
        let decimals = r.u8()?;
        Some(ColumnDef {
            schema,
            table,
            org_table,
            name,
            org_name,
            charset,
            length,
            column_type,
            flags,
            decimals,
        })
    }

    /// Encodes the column definition packet payload.
    pub fn encode(&self) -> BytesMut {
        let mut out = BytesMut::with_capacity(64);
        put_lenenc_bytes(&mut out, b"def");
        put_lenenc_bytes(&mut out, &self.schema);
        put_lenenc_bytes(&mut out, &self.table);
        put_lenenc_bytes(&mut out, &self.org_table);
        put_lenenc_bytes(&mut out, &self.name);
        put_lenenc_bytes(&mut out, &self.org_name);
        put_lenenc_int(&mut out, 0x0c);
        out.put_u16_le(self.charset);
        out.put_u32_le(self.length);
        out.put_u8(self.column_type);
        out.put_u16_le(self.flags);
        out.put_u8(self.decimals);
        out.put_u16_le(0);
        out
    }

    /// Whether values of this column are numbers (compare numerically when merging).
    pub fn is_numeric(&self) -> bool {
        use column_type::*;
        matches!(
            self.column_type,
            DECIMAL | NEWDECIMAL | TINY | SHORT | LONG | FLOAT | DOUBLE | LONGLONG | INT24 | YEAR
        )
    }
}

/// A row in the text protocol: one optional byte string per column (`None` is SQL NULL).
pub type TextRow = Vec<Option<Bytes>>;

/// Parses a text-protocol row packet payload with `ncols` values.
pub fn parse_text_row(payload: &[u8], ncols: usize) -> Option<TextRow> {
    let mut r = Reader::new(payload);
    let mut row = Vec::with_capacity(ncols);
    for _ in 0..ncols {
        if r.peek()? == 0xFB {
            r.u8();
            row.push(None);
        } else {
            row.push(Some(Bytes::copy_from_slice(r.lenenc_bytes()?)));
        }
    }
    if !r.is_empty() {
        return None;
    }
    Some(row)
}

/// Encodes a text-protocol row packet payload.
pub fn encode_text_row(row: &[Option<Bytes>]) -> BytesMut {
    let mut out = BytesMut::with_capacity(row.len() * 8);
    for v in row {
        match v {
            None => out.put_u8(0xFB),
            Some(b) => put_lenenc_bytes(&mut out, b),
        }
    }
    out
}

/// How the rows of a result set go on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowFormat {
    /// Text rows: the answer to COM_QUERY.
    Text,
    /// Binary rows: the answer to COM_STMT_EXECUTE.
    Binary,
}

/// A complete result set, held in memory.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResultSet {
    pub columns: Vec<ColumnDef>,
    pub rows: Vec<TextRow>,
    /// Warnings the backends reported (summed when merged).
    pub warnings: u16,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn column_def_roundtrip() {
        let c = ColumnDef::bigint("n");
        let enc = c.encode();
        assert_eq!(ColumnDef::parse(&enc).unwrap(), c);
    }

    #[test]
    fn text_row_roundtrip() {
        let row = vec![Some(Bytes::from_static(b"12")), None, Some(Bytes::new())];
        let enc = encode_text_row(&row);
        assert_eq!(parse_text_row(&enc, 3).unwrap(), row);
        assert!(parse_text_row(&enc, 2).is_none());
    }
}
