//! The connection phase: the server's greeting (HandshakeV10) and the client's answer
//! (HandshakeResponse41), in both directions: the proxy is a server to its clients and a
//! client to its backends.

use bytes::{BufMut, Bytes, BytesMut};

use super::buf::{put_lenenc_bytes, put_lenenc_int, Reader};
use super::constants::cap;

/// A server greeting.
#[derive(Debug, Clone, PartialEq)]
pub struct Greeting {
    pub server_version: String,
    pub connection_id: u32,
    /// The 20-byte scramble (both parts joined, without the trailing NUL).
    pub scramble: Vec<u8>,
    pub capabilities: u32,
    pub collation: u8,
    pub status: u16,
    pub auth_plugin: String,
}

impl Greeting {
    pub fn encode(&self) -> BytesMut {
        let mut out = BytesMut::with_capacity(128);
        out.put_u8(10);
        out.put_slice(self.server_version.as_bytes());
        out.put_u8(0);
        out.put_u32_le(self.connection_id);
        out.put_slice(&self.scramble[..8]);
        out.put_u8(0);
        out.put_u16_le(self.capabilities as u16);
        out.put_u8(self.collation);
        out.put_u16_le(self.status);
        out.put_u16_le((self.capabilities >> 16) as u16);
        out.put_u8(self.scramble.len() as u8 + 1);
        out.put_slice(&[0u8; 10]);
        out.put_slice(&self.scramble[8..]);
        out.put_u8(0);
        out.put_slice(self.auth_plugin.as_bytes());
        out.put_u8(0);
        out
    }

    pub fn parse(payload: &[u8]) -> Option<Greeting> {
        let mut r = Reader::new(payload);
        if r.u8()? != 10 {
            return None;
        }
        let server_version = String::from_utf8_lossy(r.null_str()?).into_owned();
        let connection_id = r.u32()?;
        let mut scramble = r.take(8)?.to_vec();
        r.u8()?;
        let cap_lo = r.u16()? as u32;
        let collation = r.u8().unwrap_or(0);
        let status = r.u16().unwrap_or(0);
        let cap_hi = r.u16().unwrap_or(0) as u32;
        let capabilities = cap_lo | cap_hi << 16;
        let auth_len = r.u8().unwrap_or(0) as usize;
        r.skip(10);
        if capabilities & cap::SECURE_CONNECTION != 0 {
            let n = auth_len.saturating_sub(9).max(12);
            scramble.extend_from_slice(r.take(n.min(r.remaining()))?);
            if r.peek() == Some(0) {
                r.u8();
            }
        }
        let auth_plugin = if capabilities & cap::PLUGIN_AUTH != 0 {
            r.null_str()
                .or_else(|| Some(r.rest()))
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default()
        } else {
            String::new()
        };
        Some(Greeting {
            server_version,
            connection_id,
            scramble,
            capabilities,
            collation,
            status,
            auth_plugin,
        })
    }
}

/// A client's handshake answer.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct HandshakeResponse {
    pub capabilities: u32,
    pub max_packet: u32,
    pub collation: u8,
    pub user: String,
    pub auth_response: Vec<u8>,
    pub database: Option<String>,
    pub auth_plugin: Option<String>,
    /// Connection attributes, raw (key/value lenenc pairs).
    pub attrs: Option<Bytes>,
}

impl HandshakeResponse {
    /// Parses HandshakeResponse41. Clients without CLIENT_PROTOCOL_41 are refused by the
    /// caller (no client this century lacks it).
    pub fn parse(payload: &[u8]) -> Option<HandshakeResponse> {
        let mut r = Reader::new(payload);
        let capabilities = r.u32()?;
        let max_packet = r.u32()?;
        let collation = r.u8()?;
        r.skip(23)?;
        let user = String::from_utf8_lossy(r.null_str()?).into_owned();
        let auth_response = if capabilities & cap::PLUGIN_AUTH_LENENC_CLIENT_DATA != 0 {
            r.lenenc_bytes()?.to_vec()
        } else if capabilities & cap::SECURE_CONNECTION != 0 {
            let n = r.u8()? as usize;
            r.take(n)?.to_vec()
        } else {
            r.null_str()?.to_vec()
        };
        let mut database = None;
        if capabilities & cap::CONNECT_WITH_DB != 0 && !r.is_empty() {
            let db = r.null_str().or_else(|| Some(r.rest()))?;
            if !db.is_empty() {
                database = Some(String::from_utf8_lossy(db).into_owned());
            }
        }
        let mut auth_plugin = None;
        if capabilities & cap::PLUGIN_AUTH != 0 && !r.is_empty() {
            let p = r.null_str().or_else(|| Some(r.rest()))?;
            auth_plugin = Some(String::from_utf8_lossy(p).into_owned());
        }
        let mut attrs = None;
        if capabilities & cap::CONNECT_ATTRS != 0 && !r.is_empty() {
            attrs = Some(Bytes::copy_from_slice(r.lenenc_bytes()?));
        }
        Some(HandshakeResponse {
            capabilities,
            max_packet,
            collation,
            user,
            auth_response,
            database,
            auth_plugin,
            attrs,
        })
    }

    pub fn encode(&self) -> BytesMut {
        let mut out = BytesMut::with_capacity(128);
        out.put_u32_le(self.capabilities);
        out.put_u32_le(self.max_packet);
        out.put_u8(self.collation);
        out.put_slice(&[0u8; 23]);
        out.put_slice(self.user.as_bytes());
        out.put_u8(0);
        if self.capabilities & cap::PLUGIN_AUTH_LENENC_CLIENT_DATA != 0 {
            put_lenenc_bytes(&mut out, &self.auth_response);
        } else {
            out.put_u8(self.auth_response.len() as u8);
            out.put_slice(&self.auth_response);
        }
        if self.capabilities & cap::CONNECT_WITH_DB != 0 {
            out.put_slice(self.database.as_deref().unwrap_or("").as_bytes());
            out.put_u8(0);
        }
        if self.capabilities & cap::PLUGIN_AUTH != 0 {
            out.put_slice(self.auth_plugin.as_deref().unwrap_or("").as_bytes());
            out.put_u8(0);
        }
        if self.capabilities & cap::CONNECT_ATTRS != 0 {
            let attrs = self.attrs.clone().unwrap_or_default();
            put_lenenc_int(&mut out, attrs.len() as u64);
            out.put_slice(&attrs);
        }
        out
    }
}

/// The SSL request a client sends instead of its handshake response when it wants TLS: the
/// first 32 bytes of a HandshakeResponse41 (capabilities with `CLIENT_SSL`, maximum packet,
/// collation, filler). The real response follows over TLS.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SslRequest {
    pub capabilities: u32,
    pub max_packet: u32,
    pub collation: u8,
}

impl SslRequest {
    /// The SSL request in `payload`, or `None` when it is a full handshake response (or
    /// does not ask for TLS).
    pub fn parse(payload: &[u8]) -> Option<SslRequest> {
        if payload.len() != 32 {
            return None;
        }
        let mut r = Reader::new(payload);
        let capabilities = r.u32()?;
        let max_packet = r.u32()?;
        let collation = r.u8()?;
        (capabilities & cap::SSL != 0).then_some(SslRequest {
            capabilities,
            max_packet,
            collation,
        })
    }

    pub fn encode(&self) -> BytesMut {
        let mut out = BytesMut::with_capacity(32);
        out.put_u32_le(self.capabilities);
        out.put_u32_le(self.max_packet);
        out.put_u8(self.collation);
        out.put_slice(&[0u8; 23]);
        out
    }
}

/// COM_CHANGE_USER's payload (after the command byte).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ChangeUser {
    pub user: String,
    pub auth_response: Vec<u8>,
    pub database: Option<String>,
    pub collation: Option<u16>,
    pub auth_plugin: Option<String>,
}

impl ChangeUser {
    pub fn parse(payload: &[u8], capabilities: u32) -> Option<ChangeUser> {
        let mut r = Reader::new(payload);
        let user = String::from_utf8_lossy(r.null_str()?).into_owned();
        let auth_response = if capabilities & cap::SECURE_CONNECTION != 0 {
            let n = r.u8()? as usize;
            r.take(n)?.to_vec()
        } else {
            r.null_str()?.to_vec()
        };
        let db = r.null_str().unwrap_or(b"");
        let database = (!db.is_empty()).then(|| String::from_utf8_lossy(db).into_owned());
        let collation = if r.remaining() >= 2 { r.u16() } else { None };
        let auth_plugin = if capabilities & cap::PLUGIN_AUTH != 0 && !r.is_empty() {
            r.null_str()
                .or_else(|| Some(r.rest()))
                .map(|b| String::from_utf8_lossy(b).into_owned())
        } else {
            None
        };
        Some(ChangeUser {
            user,
            auth_response,
            database,
            collation,
            auth_plugin,
        })
    }
}

/// An AuthSwitchRequest: 0xFE, plugin name, plugin data (scramble + NUL).
pub fn auth_switch_request(plugin: &str, scramble: &[u8]) -> BytesMut {
    let mut out = BytesMut::with_capacity(2 + plugin.len() + scramble.len() + 1);
    out.put_u8(0xFE);
    out.put_slice(plugin.as_bytes());
    out.put_u8(0);
    out.put_slice(scramble);
    out.put_u8(0);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greeting_roundtrip() {
        let g = Greeting {
            server_version: "5.5.5-10.11.19-MariaDB".into(),
            connection_id: 42,
            scramble: b"abcdefghijklmnopqrst".to_vec(),
            capabilities: cap::PROXY_OFFERS,
            collation: 45,
            status: 2,
            auth_plugin: "mysql_native_password".into(),
        };
        assert_eq!(Greeting::parse(&g.encode()).unwrap(), g);
    }

    #[test]
    fn response_roundtrip() {
        let h = HandshakeResponse {
            capabilities: cap::PROXY_OFFERS,
            max_packet: 1 << 24,
            collation: 45,
            user: "app".into(),
            auth_response: vec![1; 20],
            database: Some("fund".into()),
            auth_plugin: Some("mysql_native_password".into()),
            attrs: Some(Bytes::from_static(b"\x03_os\x05Linux")),
        };
        assert_eq!(HandshakeResponse::parse(&h.encode()).unwrap(), h);
    }

    #[test]
    fn ssl_request_is_told_apart_from_a_response() {
        let r = SslRequest {
            capabilities: cap::PROXY_OFFERS | cap::SSL,
            max_packet: 1 << 24,
            collation: 45,
        };
        assert_eq!(SslRequest::parse(&r.encode()), Some(r));
        let no_ssl = SslRequest {
            capabilities: cap::PROXY_OFFERS,
            ..r
        };
        assert_eq!(SslRequest::parse(&no_ssl.encode()), None);
        let full = HandshakeResponse {
            capabilities: cap::PROXY_OFFERS | cap::SSL,
            user: "app".into(),
            ..Default::default()
        };
        assert_eq!(SslRequest::parse(&full.encode()), None);
    }

    #[test]
    fn truncated_response_is_none() {
        let h = HandshakeResponse {
            capabilities: cap::PROXY_OFFERS,
            user: "app".into(),
            ..Default::default()
        };
        let enc = h.encode();
        for n in 0..33 {
            assert!(HandshakeResponse::parse(&enc[..n]).is_none());
        }
    }
}
