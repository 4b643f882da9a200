//! MariaDB GTID positions: what a server wrote or applied, as a list of `domain-server-seq`
//! triples (one per replication domain), e.g. `0-1-42,1-2-7`.
//!
//! Failover rests on one question: does this replica hold everything the proxy acknowledged?
//! MariaDB's sequence numbers grow per domain regardless of which server wrote the event, so a
//! position *contains* another when, for every domain of the other, its sequence number is at
//! least as high. The server id is kept (it is shown, and `MASTER_GTID_WAIT` wants it back) but
//! does not take part in the comparison.

use std::collections::BTreeMap;
use std::fmt;

/// One global transaction id: `domain-server-seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gtid {
    /// Replication domain (`gtid_domain_id`).
    pub domain: u32,
    /// Server that wrote the transaction (`server_id`).
    pub server: u32,
    /// Sequence number within the domain.
    pub seq: u64,
}

impl Gtid {
    /// Parses `domain-server-seq`; anything else is `None`.
    pub fn parse(s: &str) -> Option<Gtid> {
        let mut it = s.trim().splitn(3, '-');
        let domain = it.next()?.parse().ok()?;
        let server = it.next()?.parse().ok()?;
        let seq = it.next()?.parse().ok()?;
        Some(Gtid {
            domain,
            server,
            seq,
        })
    }
}

impl fmt::Display for Gtid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}-{}", self.domain, self.server, self.seq)
    }
}

/// A GTID position: the last transaction per domain.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GtidPos {
    /// The last GTID of each domain, by domain.
    by_domain: BTreeMap<u32, Gtid>,
}

/// A position that could not be read: the offending text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a GTID position: '{0}'")]
pub struct BadGtidPos(pub String);

impl GtidPos {
    /// Parses a comma-separated list (`@@gtid_binlog_pos` and friends); the empty string is
    /// the empty position.
    pub fn parse(s: &str) -> Result<GtidPos, BadGtidPos> {
        let mut pos = GtidPos::default();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let g = Gtid::parse(part).ok_or_else(|| BadGtidPos(s.to_string()))?;
            pos.advance(g);
        }
        Ok(pos)
    }

    /// Records `g`: its domain's entry moves forward (never back).
    pub fn advance(&mut self, g: Gtid) {
        match self.by_domain.get_mut(&g.domain) {
            Some(cur) if cur.seq >= g.seq => {}
            Some(cur) => *cur = g,
            None => {
                self.by_domain.insert(g.domain, g);
            }
        }
    }

    /// Every domain of `other` moved forward to at least its sequence number.
    pub fn merge(&mut self, other: &GtidPos) {
        for g in other.by_domain.values() {
            self.advance(*g);
        }
    }

    /// Whether this position holds every transaction of `other` (per domain, a sequence
    /// number at least as high).
    pub fn contains(&self, other: &GtidPos) -> bool {
        other.by_domain.values().all(|g| self.contains_gtid(g))
    }

    /// Whether this position holds the transaction `g`.
    pub fn contains_gtid(&self, g: &Gtid) -> bool {
        self.by_domain
            .get(&g.domain)
            .is_some_and(|cur| cur.seq >= g.seq)
    }

    /// Nothing recorded.
    pub fn is_empty(&self) -> bool {
        self.by_domain.is_empty()
    }

    /// Sum of the sequence numbers: orders positions of one shard's servers (which share their
    /// domains) by how much they hold.
    pub fn total(&self) -> u64 {
        self.by_domain.values().map(|g| g.seq).sum()
    }
}

impl fmt::Display for GtidPos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for g in self.by_domain.values() {
            if !first {
                f.write_str(",")?;
            }
            first = false;
            write!(f, "{g}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_renders() {
        let p = GtidPos::parse("1-2-7, 0-1-42").unwrap();
        assert_eq!(p.to_string(), "0-1-42,1-2-7");
        assert!(GtidPos::parse("").unwrap().is_empty());
        assert_eq!(GtidPos::parse("0-1"), Err(BadGtidPos("0-1".to_string())));
        assert!(GtidPos::parse("0-1-x").is_err());
        assert_eq!(Gtid::parse("0-3-9").unwrap().to_string(), "0-3-9");
    }

    #[test]
    fn contains_compares_sequence_per_domain_not_server() {
        let replica = GtidPos::parse("0-1-42,1-2-7").unwrap();
        assert!(replica.contains(&GtidPos::parse("0-1-42").unwrap()));
        assert!(replica.contains(&GtidPos::parse("0-9-41,1-2-7").unwrap()));
        assert!(!replica.contains(&GtidPos::parse("0-1-43").unwrap()));
        assert!(!replica.contains(&GtidPos::parse("2-1-1").unwrap()));
        assert!(replica.contains(&GtidPos::default()));
        assert!(!GtidPos::default().contains(&replica));
    }

    #[test]
    fn advance_never_goes_back() {
        let mut p = GtidPos::default();
        p.advance(Gtid::parse("0-1-5").unwrap());
        p.advance(Gtid::parse("0-1-3").unwrap());
        p.advance(Gtid::parse("0-2-6").unwrap());
        assert_eq!(p.to_string(), "0-2-6");
        let mut q = GtidPos::parse("1-1-1").unwrap();
        q.merge(&p);
        assert_eq!(q.to_string(), "0-2-6,1-1-1");
        assert_eq!(q.total(), 7);
    }
}
