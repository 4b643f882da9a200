//! Password scrambles of the two authentication plugins the proxy speaks.
//!
//! `mysql_native_password`: the client proves it knows the password by sending
//! `SHA1(pw) XOR SHA1(scramble ‖ SHA1(SHA1(pw)))`; the server needs only `SHA1(SHA1(pw))`
//! (what MySQL's `PASSWORD()` prints after a `*`).
//! `caching_sha2_password`: the fast path sends `SHA256(pw) XOR SHA256(SHA256(SHA256(pw)) ‖ scramble)`
//! and the server needs `SHA256(SHA256(pw))`. Without it (a user configured by a native hash
//! only) the server asks for full authentication: the client fetches the server's RSA public
//! key and sends the password encrypted with it.

use sha1::{Digest, Sha1};
use sha2::Sha256;

pub const NATIVE: &str = "mysql_native_password";
pub const CACHING_SHA2: &str = "caching_sha2_password";

pub fn sha1(data: &[&[u8]]) -> [u8; 20] {
    let mut h = Sha1::new();
    for d in data {
        h.update(d);
    }
    h.finalize().into()
}

pub fn sha256(data: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for d in data {
        h.update(d);
    }
    h.finalize().into()
}

/// What a client computes for mysql_native_password.
pub fn native_scramble(password: &[u8], scramble: &[u8]) -> Vec<u8> {
    if password.is_empty() {
        return Vec::new();
    }
    let stage1 = sha1(&[password]);
    let stage2 = sha1(&[&stage1]);
    let mix = sha1(&[scramble, &stage2]);
    stage1.iter().zip(mix.iter()).map(|(a, b)| a ^ b).collect()
}

/// `SHA1(SHA1(pw))`, the stored form of a native password.
pub fn native_stage2(password: &[u8]) -> [u8; 20] {
    sha1(&[&sha1(&[password])])
}

/// Checks a mysql_native_password answer against the stored `SHA1(SHA1(pw))`
/// (`None` = the empty password).
pub fn native_verify(stage2: Option<&[u8; 20]>, scramble: &[u8], answer: &[u8]) -> bool {
    match stage2 {
        None => answer.is_empty(),
        Some(stage2) => {
            if answer.len() != 20 {
                return false;
            }
            let mix = sha1(&[scramble, stage2]);
            let stage1: Vec<u8> = answer.iter().zip(mix.iter()).map(|(a, b)| a ^ b).collect();
            &sha1(&[&stage1]) == stage2
        }
    }
}

/// What a client computes for the caching_sha2_password fast path.
pub fn sha2_scramble(password: &[u8], scramble: &[u8]) -> Vec<u8> {
    if password.is_empty() {
        return Vec::new();
    }
    let stage1 = sha256(&[password]);
    let stage2 = sha256(&[&stage1]);
    let mix = sha256(&[&stage2, scramble]);
    stage1.iter().zip(mix.iter()).map(|(a, b)| a ^ b).collect()
}

/// `SHA256(SHA256(pw))`, what the fast path needs.
pub fn sha2_stage2(password: &[u8]) -> [u8; 32] {
    sha256(&[&sha256(&[password])])
}

/// Checks a caching_sha2_password fast-path answer against the stored `SHA256(SHA256(pw))`.
pub fn sha2_verify(stage2: &[u8; 32], scramble: &[u8], answer: &[u8]) -> bool {
    if answer.len() != 32 {
        return false;
    }
    let mix = sha256(&[stage2, scramble]);
    let stage1: Vec<u8> = answer.iter().zip(mix.iter()).map(|(a, b)| a ^ b).collect();
    &sha256(&[&stage1]) == stage2
}

/// XOR of `data` with the scramble repeated (how an RSA-encrypted password is masked).
pub fn xor_with_scramble(data: &[u8], scramble: &[u8]) -> Vec<u8> {
    data.iter()
        .enumerate()
        .map(|(i, b)| b ^ scramble[i % scramble.len()])
        .collect()
}

/// Parses MySQL's `*HEX` password hash into `SHA1(SHA1(pw))`.
pub fn parse_native_hash(h: &str) -> Option<[u8; 20]> {
    let hex = h.strip_prefix('*')?;
    if hex.len() != 40 {
        return None;
    }
    let mut out = [0u8; 20];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// MySQL's `PASSWORD()` form of a password, `*` and 40 upper-case hex digits of
/// `SHA1(SHA1(pw))`: what `[[users]] password_hash` takes (`shardproxy hash-password`).
pub fn native_hash_string(password: &[u8]) -> String {
    let mut s = String::with_capacity(41);
    s.push('*');
    for b in native_stage2(password) {
        s.push_str(&format!("{b:02X}"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn native_roundtrip() {
        let scramble = b"12345678901234567890";
        let ans = native_scramble(b"secret", scramble);
        assert!(native_verify(
            Some(&native_stage2(b"secret")),
            scramble,
            &ans
        ));
        assert!(!native_verify(
            Some(&native_stage2(b"other")),
            scramble,
            &ans
        ));
        assert!(native_verify(None, scramble, &[]));
        assert!(!native_verify(None, scramble, &ans));
    }

    #[test]
    fn known_native_hash() {
        // SELECT PASSWORD('app') in MariaDB.
        let h = parse_native_hash("*5BCB3E6AC345B435C7C2E6B7949A04CE6F6563D3").unwrap();
        assert_eq!(h, native_stage2(b"app"));
        assert_eq!(
            native_hash_string(b"app"),
            "*5BCB3E6AC345B435C7C2E6B7949A04CE6F6563D3"
        );
    }

    #[test]
    fn sha2_roundtrip() {
        let scramble = b"abcdefghijabcdefghij";
        let ans = sha2_scramble(b"pw", scramble);
        assert!(sha2_verify(&sha2_stage2(b"pw"), scramble, &ans));
        assert!(!sha2_verify(&sha2_stage2(b"px"), scramble, &ans));
    }
}
