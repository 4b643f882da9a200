//! Session-state tracking in OK packets (CLIENT_SESSION_TRACK): the proxy asks every backend
//! connection to report `last_gtid`, so the OK packet after a commit names that commit's GTID.
//! Failover promotes only a replica that holds the highest GTID the proxy acknowledged.
//!
//! The proxy does not offer CLIENT_SESSION_TRACK to its clients, so an OK packet that carries
//! session state is relayed without it ([`strip`]): the state block cut off and
//! SERVER_SESSION_STATE_CHANGED cleared, which is exactly the packet the server would have sent
//! a client without the capability. Nothing is parsed unless that status flag is set: an OK
//! packet without state costs one bit test.

use super::buf::Reader;

/// Status flag: the OK packet carries a session-state block.
pub const SESSION_STATE_CHANGED: u16 = 0x4000;

/// Session-state entry type of a system variable (`SESSION_TRACK_SYSTEM_VARIABLES`).
const TRACK_SYSTEM_VARIABLES: u8 = 0;

/// The statement the backend logins run once, so commits report their GTID and nothing else
/// is tracked (no schema or other variables: fewer bytes, fewer parses).
pub const TRACK_LAST_GTID_SQL: &str =
    "SET session_track_system_variables='last_gtid', session_track_schema=OFF";

/// A GTID as the OK packet reports it: `domain-server-seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrackedGtid {
    /// Replication domain.
    pub domain: u32,
    /// Server id that wrote it.
    pub server: u32,
    /// Sequence number within the domain.
    pub seq: u64,
}

impl TrackedGtid {
    /// Parses `domain-server-seq`.
    pub fn parse(s: &[u8]) -> Option<TrackedGtid> {
        let s = std::str::from_utf8(s).ok()?;
        let mut it = s.trim().splitn(3, '-');
        Some(TrackedGtid {
            domain: it.next()?.parse().ok()?,
            server: it.next()?.parse().ok()?,
            seq: it.next()?.parse().ok()?,
        })
    }
}

/// Where an OK packet's session-state block starts and what it said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionState {
    /// Offset of the status flags in the payload.
    pub status_at: usize,
    /// Offset where the session-state block (after the info string) starts.
    pub state_at: usize,
    /// The `last_gtid` it reported, if any (empty outside a commit).
    pub last_gtid: Option<TrackedGtid>,
}

/// Reads the session state of an OK payload (header 0x00 or 0xFE) whose status has
/// [`SESSION_STATE_CHANGED`]. `None` if the packet has no such block or is malformed.
pub fn parse(payload: &[u8]) -> Option<SessionState> {
    let mut r = Reader::new(payload);
    let h = r.u8()?;
    if h != 0x00 && h != 0xFE {
        return None;
    }
    r.lenenc_int()?;
    r.lenenc_int()?;
    let status_at = payload.len() - r.remaining();
    let status = r.u16()?;
    if status & SESSION_STATE_CHANGED == 0 {
        return None;
    }
    r.u16()?;
    r.lenenc_bytes()?; // info
    let state_at = payload.len() - r.remaining();
    let block = r.lenenc_bytes()?;
    let mut b = Reader::new(block);
    let mut last_gtid = None;
    while b.remaining() > 0 {
        let kind = b.u8()?;
        let data = b.lenenc_bytes()?;
        if kind == TRACK_SYSTEM_VARIABLES {
            let mut d = Reader::new(data);
            let name = d.lenenc_bytes()?;
            let value = d.lenenc_bytes()?;
            if name.eq_ignore_ascii_case(b"last_gtid") {
                last_gtid = TrackedGtid::parse(value);
            }
        }
    }
    Some(SessionState {
        status_at,
        state_at,
        last_gtid,
    })
}

/// The payload a client without CLIENT_SESSION_TRACK expects: the state block cut off and its
/// status flag cleared.
pub fn strip(payload: &[u8], s: &SessionState) -> Vec<u8> {
    let mut out = payload[..s.state_at].to_vec();
    let st = u16::from_le_bytes([out[s.status_at], out[s.status_at + 1]]) & !SESSION_STATE_CHANGED;
    out[s.status_at..s.status_at + 2].copy_from_slice(&st.to_le_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An OK packet as MariaDB 10.11 sends it after an autocommit INSERT with `last_gtid`
    /// tracked.
    fn ok_with_gtid(gtid: &str) -> Vec<u8> {
        let mut var = vec![];
        var.push(9u8);
        var.extend_from_slice(b"last_gtid");
        var.push(gtid.len() as u8);
        var.extend_from_slice(gtid.as_bytes());
        let mut entry = vec![TRACK_SYSTEM_VARIABLES, var.len() as u8];
        entry.extend_from_slice(&var);
        let mut p = vec![0x00, 1, 0];
        p.extend_from_slice(&(0x0002u16 | SESSION_STATE_CHANGED).to_le_bytes());
        p.extend_from_slice(&0u16.to_le_bytes());
        p.push(0); // empty info
        p.push(entry.len() as u8);
        p.extend_from_slice(&entry);
        p
    }

    #[test]
    fn reads_last_gtid_and_strips_it() {
        let p = ok_with_gtid("0-1-42");
        let s = parse(&p).expect("has state");
        assert_eq!(
            s.last_gtid,
            Some(TrackedGtid {
                domain: 0,
                server: 1,
                seq: 42
            })
        );
        let stripped = strip(&p, &s);
        assert_eq!(stripped, vec![0x00, 1, 0, 0x02, 0x00, 0, 0, 0]);
        assert_eq!(parse(&stripped), None);
    }

    #[test]
    fn no_flag_no_state() {
        assert_eq!(parse(&[0x00, 0, 0, 2, 0, 0, 0]), None);
        assert_eq!(parse(&[0xFF, 0, 0]), None);
        // Flag set but truncated: malformed, not a panic.
        assert_eq!(parse(&[0x00, 0, 0, 0x02, 0x40, 0, 0, 5]), None);
    }
}
