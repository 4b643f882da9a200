//! The fuzz targets (`fuzz/targets.rs`) on stable Rust: each runs over its corpus in
//! `fuzz/corpus/<target>/` and then over random mutations of it (bit flips, truncations,
//! splices, random bytes) for a bounded time: `FUZZ_SECONDS` per target (default 2, so the
//! whole file stays under ~15 s in `make test`; `make fuzz` runs it longer, and cargo-fuzz
//! when installed). A panic prints the input (hex) that caused it and fails the test; add that
//! input to the corpus once fixed.

#[path = "../fuzz/targets.rs"]
mod targets;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut out: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| std::fs::read(e.ok()?.path()).ok())
        .collect();
    out.sort();
    assert!(!out.is_empty(), "empty corpus {}", dir.display());
    out
}

fn mutate(rng: &mut impl Rng, corpus: &[Vec<u8>]) -> Vec<u8> {
    let mut v = corpus[rng.gen_range(0..corpus.len())].clone();
    for _ in 0..rng.gen_range(1..6) {
        match rng.gen_range(0..7) {
            0 if !v.is_empty() => {
                let i = rng.gen_range(0..v.len());
                v[i] ^= 1 << rng.gen_range(0..8);
            }
            1 if !v.is_empty() => {
                let n = rng.gen_range(0..v.len());
                v.truncate(n);
            }
            2 => {
                let i = rng.gen_range(0..=v.len());
                let n = rng.gen_range(1..16);
                let bytes: Vec<u8> = (0..n).map(|_| rng.gen()).collect();
                v.splice(i..i, bytes);
            }
            3 if !v.is_empty() => {
                // An interesting byte: lengths, terminators, markers.
                let i = rng.gen_range(0..v.len());
                v[i] = *[0u8, 0xff, 0xfe, 0xfb, 0xfc, 0xfd, b'\'', b'`', b'?', b';']
                    .get(rng.gen_range(0..10))
                    .unwrap();
            }
            4 => {
                let other = &corpus[rng.gen_range(0..corpus.len())];
                let i = rng.gen_range(0..=v.len());
                let j = rng.gen_range(0..=other.len());
                v.splice(i..i, other[j..].iter().copied());
            }
            5 if v.len() > 1 => {
                let i = rng.gen_range(0..v.len());
                let j = rng.gen_range(i..v.len());
                v.drain(i..j);
            }
            _ => v = (0..rng.gen_range(0..64)).map(|_| rng.gen()).collect(),
        }
    }
    v
}

fn run(target: fn(&[u8]), input: &[u8], name: &str) {
    if catch_unwind(AssertUnwindSafe(|| target(input))).is_err() {
        let hex: String = input.iter().map(|b| format!("{b:02x}")).collect();
        panic!("{name} panicked on input (hex) {hex}");
    }
}

#[test]
fn fuzz_targets_over_corpus_and_mutations() {
    let seconds: u64 = std::env::var("FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2);
    let seed: u64 = std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    println!("FUZZ_SEED={seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    for (name, target) in targets::TARGETS {
        let corpus = corpus(name);
        for input in &corpus {
            run(*target, input, name);
        }
        let deadline = Instant::now() + Duration::from_secs(seconds);
        let mut n = 0u64;
        while Instant::now() < deadline {
            let input = mutate(&mut rng, &corpus);
            run(*target, &input, name);
            n += 1;
        }
        println!(
            "{name}: {} corpus inputs, {n} mutations in {seconds} s",
            corpus.len()
        );
    }
}
