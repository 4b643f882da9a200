//! Reading and writing the protocol's primitive types: fixed-width little-endian integers,
//! length-encoded integers and strings, NUL-terminated strings.
//!
//! Readers never panic: a short or malformed buffer gives `None`, so bad input from the network
//! becomes an error for that one connection.

use bytes::{BufMut, Bytes, BytesMut};

/// A cursor over a packet payload.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }
    pub fn pos(&self) -> usize {
        self.pos
    }
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }
    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }
    pub fn rest(&mut self) -> &'a [u8] {
        let r = &self.buf[self.pos..];
        self.pos = self.buf.len();
        r
    }
    pub fn peek(&self) -> Option<u8> {
        self.buf.get(self.pos).copied()
    }
    pub fn u8(&mut self) -> Option<u8> {
        let v = *self.buf.get(self.pos)?;
        self.pos += 1;
        Some(v)
    }
    pub fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.remaining() < n {
            return None;
        }
        let r = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Some(r)
    }
    pub fn skip(&mut self, n: usize) -> Option<()> {
        self.take(n).map(|_| ())
    }
    pub fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_le_bytes([b[0], b[1]]))
    }
    pub fn u24(&mut self) -> Option<u32> {
        self.take(3)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], 0]))
    }
    pub fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    pub fn u64(&mut self) -> Option<u64> {
        self.take(8).map(|b| {
            let mut a = [0u8; 8];
            a.copy_from_slice(b);
            u64::from_le_bytes(a)
        })
    }
    /// A length-encoded integer. `0xFB` (NULL in rows) and `0xFF` are not integers: `None`.
    pub fn lenenc_int(&mut self) -> Option<u64> {
        match self.u8()? {
            n @ 0..=0xFA => Some(n as u64),
            0xFC => self.u16().map(|v| v as u64),
            0xFD => self.u24().map(|v| v as u64),
            0xFE => self.u64(),
            _ => None,
        }
    }
    pub fn lenenc_bytes(&mut self) -> Option<&'a [u8]> {
        let n = self.lenenc_int()?;
        if n > self.remaining() as u64 {
            return None;
        }
        self.take(n as usize)
    }
    /// A string up to (not including) the next NUL, which is consumed.
    pub fn null_str(&mut self) -> Option<&'a [u8]> {
        let rest = &self.buf[self.pos..];
        let end = rest.iter().position(|&b| b == 0)?;
        self.pos += end + 1;
        Some(&rest[..end])
    }
}

pub fn put_lenenc_int(out: &mut BytesMut, v: u64) {
    if v < 0xFB {
        out.put_u8(v as u8);
    } else if v <= 0xFFFF {
        out.put_u8(0xFC);
        out.put_u16_le(v as u16);
    } else if v <= 0xFF_FFFF {
        out.put_u8(0xFD);
        out.put_uint_le(v, 3);
    } else {
        out.put_u8(0xFE);
        out.put_u64_le(v);
    }
}

pub fn put_lenenc_bytes(out: &mut BytesMut, b: &[u8]) {
    put_lenenc_int(out, b.len() as u64);
    out.put_slice(b);
}

/// Length of a value written by [`put_lenenc_int`].
pub fn lenenc_int_len(v: u64) -> usize {
    if v < 0xFB {
        1
    } else if v <= 0xFFFF {
        3
    } else if v <= 0xFF_FFFF {
        4
    } else {
        9
    }
}

/// Copies `b` into a `Bytes`.
pub fn bytes(b: &[u8]) -> Bytes {
    Bytes::copy_from_slice(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn lenenc_roundtrip(v in any::<u64>()) {
            let mut out = BytesMut::new();
            put_lenenc_int(&mut out, v);
            prop_assert_eq!(out.len(), lenenc_int_len(v));
            let mut r = Reader::new(&out);
            prop_assert_eq!(r.lenenc_int(), Some(v));
            prop_assert!(r.is_empty());
        }

        #[test]
        fn reader_never_panics(data in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut r = Reader::new(&data);
            while !r.is_empty() {
                if r.lenenc_bytes().is_none() && r.null_str().is_none() && r.u16().is_none() {
                    r.u8();
                }
            }
        }
    }
}
