//! Which parts of the key space change shard between two rings.
//!
//! A ring is a circle of 2^64 positions; each virtual node owns the arc from the previous node
//! (exclusive) to itself (inclusive), wrapping around (see the parent module). Two rings cut the
//! circle at the union of their node positions; inside each piece both rings have one owner, so
//! a sweep over the merged positions tells, piece by piece, which shard held it before and which
//! holds it after. Pieces whose owner changes are the arcs a resharding must copy.
//!
//! The result is exact: a key at position `p` moves from `a` to `b` if and only if `p` lies in
//! one of the arcs reported for `(a, b)` (the tests check this against [`Ring::shard_for`] key
//! by key). The copy itself still decides row by row with [`Ring::shard_for`] on the new ring;
//! the arcs are for planning: which shard pairs are involved and what share of each moves.

use super::Ring;

/// One arc of the key space, `(start, end]` in ring positions; `start > end` wraps past zero,
/// `start == end` is the whole circle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// Exclusive start position.
    pub start: u64,
    /// Inclusive end position.
    pub end: u64,
}

impl Span {
    /// The number of positions in the arc.
    pub fn positions(&self) -> u128 {
        if self.start == self.end {
            // One cut only: the span is the whole circle.
            u64::MAX as u128 + 1
        } else if self.end > self.start {
            (self.end - self.start) as u128
        } else {
            (u64::MAX - self.start) as u128 + self.end as u128 + 1
        }
    }

    /// Whether the arc holds `pos`.
    pub fn contains(&self, pos: u64) -> bool {
        if self.start < self.end {
            pos > self.start && pos <= self.end
        } else {
            pos > self.start || pos <= self.end
        }
    }
}

/// Everything that moves from one shard to another.
#[derive(Debug, Clone, PartialEq)]
pub struct Move {
    /// The shard that holds these keys under the old ring.
    pub from: String,
    /// The shard that holds them under the new ring.
    pub to: String,
    /// Fraction of the whole key space that moves (0..=1).
    pub share: f64,
    /// Fraction of `from`'s own keys that move (0..=1): what share of its rows to expect.
    pub share_of_source: f64,
    /// The moving arcs, in ring order.
    pub arcs: Vec<Span>,
}

impl Ring {
    /// The index of the shard that owns ring position `pos` (what [`Ring::shard_for`] answers
    /// for a key hashed to `pos`).
    fn owner_at(&self, pos: u64) -> usize {
        let i = self.positions.partition_point(|&(p, _)| p < pos);
        let i = if i == self.positions.len() { 0 } else { i };
        self.positions[i].1
    }

    /// Every shard pair whose keys move from `self` to `new`, with the arcs and shares, sorted
    /// by source then target shard name. Empty when the two rings place every key alike.
    pub fn moves_to(&self, new: &Ring) -> Vec<Move> {
        let mut cuts: Vec<u64> = self
            .positions
            .iter()
            .chain(new.positions.iter())
            .map(|&(p, _)| p)
            .collect();
        cuts.sort_unstable();
        cuts.dedup();
        let mut pairs: Vec<Move> = Vec::new();
        let old_shares = self.shares();
        let total = (u64::MAX as u128 + 1) as f64;
        let n = cuts.len();
        for i in 0..n {
            let end = cuts[i];
            let start = if i == 0 { cuts[n - 1] } else { cuts[i - 1] };
            // Every position in (start, end] has the owners of `end` (no node lies inside).
            let (a, b) = (self.owner_at(end), new.owner_at(end));
            let (from, to) = (&self.names[a], &new.names[b]);
            if from == to {
                continue;
            }
            let arc = Span { start, end };
            match pairs.iter_mut().find(|m| &m.from == from && &m.to == to) {
                Some(m) => {
                    // Adjacent pieces join into one arc.
                    match m.arcs.last_mut() {
                        Some(last) if last.end == start => last.end = end,
                        _ => m.arcs.push(arc),
                    }
                }
                None => pairs.push(Move {
                    from: from.clone(),
                    to: to.clone(),
                    share: 0.0,
                    share_of_source: 0.0,
                    arcs: vec![arc],
                }),
            }
        }
        for m in &mut pairs {
            let len: u128 = m.arcs.iter().map(Span::positions).sum();
            m.share = len as f64 / total;
            let source = old_shares
                .iter()
                .find(|(name, _)| name == &m.from)
                .map_or(0.0, |s| s.1);
            m.share_of_source = if source > 0.0 { m.share / source } else { 0.0 };
        }
        pairs.sort_by(|x, y| (&x.from, &x.to).cmp(&(&y.from, &y.to)));
        pairs
    }
}

#[cfg(test)]
mod tests {
    use std::hash::BuildHasher;

    use hashring::DefaultHashBuilder;

    use super::*;
    use crate::ring::KeyValue;

    fn ring(shards: &[(&str, u32)], vnodes: u32) -> Ring {
        let s: Vec<(String, u32)> = shards.iter().map(|(n, w)| (n.to_string(), *w)).collect();
        Ring::new(&s, vnodes)
    }

    /// Key by key: a key moves exactly when its position lies in an arc of its pair.
    fn check_exact(old: &Ring, new: &Ring) {
        let moves = old.moves_to(new);
        let mut moved = 0usize;
        for v in 0..20_000i64 {
            let k = KeyValue::from(v);
            let pos = DefaultHashBuilder.hash_one(&k);
            let (a, b) = (old.shard_for(&k), new.shard_for(&k));
            let hit: Vec<&Move> = moves
                .iter()
                .filter(|m| m.arcs.iter().any(|arc| arc.contains(pos)))
                .collect();
            if a == b {
                assert!(hit.is_empty(), "key {v} stays on {a} but lies in {hit:?}");
            } else {
                moved += 1;
                assert_eq!(hit.len(), 1, "key {v} moves {a} -> {b}: {hit:?}");
                assert_eq!(
                    (hit[0].from.as_str(), hit[0].to.as_str()),
                    (a, b),
                    "key {v}"
                );
            }
        }
        let share: f64 = moves.iter().map(|m| m.share).sum();
        let frac = moved as f64 / 20_000.0;
        assert!(
            (share - frac).abs() < 0.02,
            "share {share}, keys moved {frac}"
        );
    }

    #[test]
    fn same_ring_moves_nothing() {
        let r = ring(&[("s1", 1), ("s2", 1)], 64);
        assert!(r.moves_to(&r.clone()).is_empty());
        // Shard order does not place keys: only names, weights and vnodes do.
        assert!(r.moves_to(&ring(&[("s2", 1), ("s1", 1)], 64)).is_empty());
    }

    #[test]
    fn adding_a_shard_moves_only_to_it() {
        let old = ring(&[("s1", 1), ("s2", 1)], 256);
        let new = ring(&[("s1", 1), ("s2", 1), ("s3", 1)], 256);
        let moves = old.moves_to(&new);
        assert_eq!(moves.len(), 2, "{moves:?}");
        assert!(moves.iter().all(|m| m.to == "s3"));
        let share: f64 = moves.iter().map(|m| m.share).sum();
        assert!((share - 1.0 / 3.0).abs() < 0.05, "{share}");
        for m in &moves {
            assert!((m.share_of_source - 1.0 / 3.0).abs() < 0.08, "{m:?}");
        }
        check_exact(&old, &new);
    }

    #[test]
    fn removing_a_shard_and_changing_weights_are_exact() {
        let three = ring(&[("s1", 1), ("s2", 1), ("s3", 1)], 128);
        let two = ring(&[("s1", 1), ("s2", 1)], 128);
        let moves = three.moves_to(&two);
        assert!(moves.iter().all(|m| m.from == "s3"), "{moves:?}");
        let from_s3: f64 = moves.iter().map(|m| m.share_of_source).sum();
        assert!((from_s3 - 1.0).abs() < 1e-9, "all of s3 moves: {from_s3}");
        check_exact(&three, &two);
        check_exact(&two, &ring(&[("s1", 2), ("s2", 1)], 128));
        check_exact(&two, &ring(&[("s1", 1), ("s2", 1)], 96));
    }

    #[test]
    fn arcs_wrap_and_measure() {
        let a = Span {
            start: u64::MAX - 1,
            end: 1,
        };
        assert_eq!(a.positions(), 3);
        assert!(a.contains(u64::MAX) && a.contains(0) && a.contains(1));
        assert!(!a.contains(u64::MAX - 1) && !a.contains(2));
        let b = Span { start: 10, end: 20 };
        assert_eq!(b.positions(), 10);
        assert!(b.contains(11) && b.contains(20) && !b.contains(10));
    }
}
