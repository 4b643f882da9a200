//! Placement: which shard holds a key. One function, [`Ring::shard_for`], used by everything
//! (router, PREVIEW, resharding, tests).
//!
//! # How placement works
//! A consistent-hash ring (crate `hashring`, pinned `=0.3.6`, SipHash-2-4 with zero keys) holds
//! `weight × vnodes` virtual nodes per shard. Virtual node `i` of shard `s1` sits at
//! `siphash("s1#i")`; a key sits at `siphash(canonical bytes of the key)` (see [`key`]) and
//! belongs to the first virtual node at or after it, wrapping around. Many virtual nodes per
//! shard spread each shard's share evenly; adding a shard to `N` takes about `1/(N+1)` of the
//! keys, all from existing shards, and moves no key between old shards.
//!
//! Both node and key types implement `Hash` by one `state.write(bytes)` so the position depends
//! only on the bytes documented here, not on std's `Hash` impls. The golden tests below pin the
//! placement of fixed keys: if a dependency bump or a code change moves keys, they fail.
//!
//! # Resharding
//! Rows that move are found by computing [`Ring::shard_for`] in Rust while copying (the copy
//! reads the key column and asks the new ring); MariaDB cannot compute SipHash, so no SQL-side
//! filter is promised.

pub mod key;
pub mod moves;

use std::hash::{BuildHasher, Hash, Hasher};

use hashring::{DefaultHashBuilder, HashRing};

pub use key::KeyValue;

use crate::config::Config;

/// One virtual node: `label` = `"<shard>#<i>"`, the bytes hashed.
#[derive(Debug, Clone)]
struct VNode {
    shard: usize,
    label: Box<[u8]>,
}

impl Hash for VNode {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write(&self.label);
    }
}

/// The consistent-hash ring over the configured shards.
#[derive(Debug, Clone)]
pub struct Ring {
    names: Vec<String>,
    ring: HashRing<VNode>,
    /// Sorted positions of all virtual nodes (for [`Ring::shares`]).
    positions: Vec<(u64, usize)>,
}

impl Ring {
    /// A ring over `(shard name, weight)` with `weight × vnodes` virtual nodes per shard.
    /// Weights of 0 are treated as 1 (config validation refuses them anyway).
    pub fn new(shards: &[(String, u32)], vnodes: u32) -> Ring {
        let mut ring = HashRing::new();
        let mut nodes = Vec::new();
        let mut positions = Vec::new();
        let builder = DefaultHashBuilder;
        for (idx, (name, weight)) in shards.iter().enumerate() {
            let count = (*weight).max(1) as u64 * vnodes.max(1) as u64;
            for i in 0..count {
                let node = VNode {
                    shard: idx,
                    label: format!("{name}#{i}").into_bytes().into_boxed_slice(),
                };
                positions.push((builder.hash_one(&node), idx));
                nodes.push(node);
            }
        }
        ring.batch_add(nodes);
        positions.sort();
        Ring {
            names: shards.iter().map(|(n, _)| n.clone()).collect(),
            ring,
            positions,
        }
    }

    /// The ring of a config: its `[[shards]]` (name, weight) and `[ring] vnodes`.
    pub fn from_config(config: &Config) -> Ring {
        let shards: Vec<(String, u32)> = config
            .shards
            .iter()
            .map(|s| (s.name.clone(), s.weight))
            .collect();
        Ring::new(&shards, config.ring.vnodes)
    }

    /// The shard that holds `key`.
    pub fn shard_for(&self, key: &KeyValue) -> &str {
        match self.ring.get(key) {
            Some(node) => &self.names[node.shard],
            // Only an empty ring has no node; a config always has at least one shard.
            None => self.names.first().map(String::as_str).unwrap_or(""),
        }
    }

    /// Each shard's fraction of the 64-bit key space, in config order (for SHOW RING).
    pub fn shares(&self) -> Vec<(String, f64)> {
        let mut owned = vec![0u128; self.names.len()];
        let n = self.positions.len();
        for (i, &(pos, shard)) in self.positions.iter().enumerate() {
            // A node owns the arc from the previous node (exclusive) to itself (inclusive).
            let prev = if i == 0 {
                self.positions[n - 1].0
            } else {
                self.positions[i - 1].0
            };
            let arc = if i == 0 {
                (u64::MAX - prev) as u128 + pos as u128 + 1
            } else {
                (pos - prev) as u128
            };
            owned[shard] += arc;
        }
        let total = (u64::MAX as u128 + 1) as f64;
        self.names
            .iter()
            .zip(owned)
            .map(|(name, o)| (name.clone(), o as f64 / total))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(names: &[&str], vnodes: u32) -> Ring {
        let shards: Vec<(String, u32)> = names.iter().map(|n| (n.to_string(), 1)).collect();
        Ring::new(&shards, vnodes)
    }

    fn place(r: &Ring, keys: &[KeyValue]) -> Vec<String> {
        keys.iter().map(|k| r.shard_for(k).to_string()).collect()
    }

    fn golden_keys() -> Vec<KeyValue> {
        let mut keys: Vec<KeyValue> = [1i64, 2, 3, 42, 1000, 123456789, -5]
            .iter()
            .map(|&v| KeyValue::from(v))
            .collect();
        for s in ["alice", "bob", "carol"] {
            keys.push(KeyValue::from_str_value(s).unwrap());
        }
        keys
    }

    /// Placement of fixed keys on a fixed 2-shard ring. If this fails, placement changed:
    /// existing data would be looked for on the wrong shard. Do not "fix" the expectation
    /// without a resharding plan.
    #[test]
    fn golden_two_shards() {
        let r = ring(&["s1", "s2"], 256);
        assert_eq!(place(&r, &golden_keys()), GOLDEN_2);
    }

    #[test]
    fn golden_three_shards() {
        let r = ring(&["s1", "s2", "s3"], 256);
        assert_eq!(place(&r, &golden_keys()), GOLDEN_3);
    }

    const GOLDEN_2: [&str; 10] = ["s2", "s2", "s2", "s1", "s1", "s2", "s2", "s2", "s2", "s1"];
    const GOLDEN_3: [&str; 10] = ["s2", "s2", "s2", "s3", "s3", "s2", "s2", "s2", "s2", "s3"];

    /// Exact per-shard counts of keys 0..10000 on a 3-shard ring: pins placement of many keys.
    #[test]
    fn golden_counts_three_shards() {
        let r = ring(&["s1", "s2", "s3"], 256);
        let mut counts = [0usize; 3];
        for v in 0..10_000i64 {
            let s = r.shard_for(&KeyValue::from(v));
            counts[s[1..].parse::<usize>().unwrap() - 1] += 1;
        }
        assert_eq!(counts, GOLDEN_COUNTS_3);
    }

    const GOLDEN_COUNTS_3: [usize; 3] = [3435, 3141, 3424];

    #[test]
    fn int_and_string_agree() {
        let r = ring(&["s1", "s2", "s3"], 256);
        for v in 0..2000i64 {
            let a = KeyValue::from(v);
            let b = KeyValue::from_str_value(&v.to_string()).unwrap();
            assert_eq!(r.shard_for(&a), r.shard_for(&b));
        }
    }

    #[test]
    fn weights_are_respected() {
        let r = Ring::new(&[("a".into(), 1), ("b".into(), 3)], 256);
        let mut count_b = 0;
        for v in 0..100_000i64 {
            if r.shard_for(&KeyValue::from(v)) == "b" {
                count_b += 1;
            }
        }
        let frac = count_b as f64 / 100_000.0;
        assert!(
            (0.70..0.80).contains(&frac),
            "b holds {frac}, expected ~0.75"
        );
        let shares = r.shares();
        assert!((shares[1].1 - 0.75).abs() < 0.05, "{shares:?}");
    }

    #[test]
    fn shares_sum_to_one_and_are_even() {
        let r = ring(&["s1", "s2", "s3"], 256);
        let shares = r.shares();
        let sum: f64 = shares.iter().map(|s| s.1).sum();
        assert!((sum - 1.0).abs() < 1e-9, "{sum}");
        for (name, share) in shares {
            assert!((share - 1.0 / 3.0).abs() < 0.05, "{name} {share}");
        }
    }

    #[test]
    fn adding_a_shard_moves_about_one_over_n_plus_one() {
        for n in [2usize, 3, 4] {
            let names: Vec<String> = (1..=n).map(|i| format!("s{i}")).collect();
            let before = Ring::new(
                &names.iter().map(|s| (s.clone(), 1)).collect::<Vec<_>>(),
                256,
            );
            let mut more = names.clone();
            more.push(format!("s{}", n + 1));
            let after = Ring::new(
                &more.iter().map(|s| (s.clone(), 1)).collect::<Vec<_>>(),
                256,
            );
            let mut moved = 0;
            for v in 0..100_000i64 {
                let k = KeyValue::from(v);
                let (a, b) = (before.shard_for(&k), after.shard_for(&k));
                if a != b {
                    // A moved key only ever moves to the new shard.
                    assert_eq!(b, format!("s{}", n + 1));
                    moved += 1;
                }
            }
            let expected = 100_000.0 / (n as f64 + 1.0);
            let ratio = moved as f64 / expected;
            assert!(
                (0.85..1.15).contains(&ratio),
                "n={n}: moved {moved}, expected ~{expected}"
            );
        }
    }

    #[test]
    fn single_shard_gets_everything() {
        let r = ring(&["only"], 4);
        assert_eq!(r.shard_for(&KeyValue::from(7i64)), "only");
        assert_eq!(r.shares(), vec![("only".to_string(), 1.0)]);
    }
}
