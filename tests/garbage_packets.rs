//! Garbage on the wire (issue 14): random and truncated packets at every phase of a connection
//! (before the handshake response, as a bad handshake response, after login: unknown command
//! bytes, truncated COM_STMT_EXECUTE, oversized lengths, random commands). The proxy never
//! panics (its log is checked for "panicked"), the connection gets an error packet or is
//! closed (or waits for the rest of a packet it was promised), and a session opened before
//! keeps working.

mod harness;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use harness::{Cluster, Proxy, ProxyConfig, APP_PASSWORD, APP_USER};
use mysql_async::prelude::Queryable;
use rand::{Rng, SeedableRng};
use sha1::{Digest, Sha1};

fn packet(seq: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = (payload.len() as u32).to_le_bytes()[..3].to_vec();
    v.push(seq);
    v.extend_from_slice(payload);
    v
}

/// Reads one packet (seq, payload); None when the connection closed or timed out.
fn read_packet(s: &mut TcpStream) -> Option<(u8, Vec<u8>)> {
    let mut h = [0u8; 4];
    s.read_exact(&mut h).ok()?;
    let n = h[0] as usize | (h[1] as usize) << 8 | (h[2] as usize) << 16;
    let mut p = vec![0u8; n];
    s.read_exact(&mut p).ok()?;
    Some((h[3], p))
}

/// What the proxy did after garbage: an error packet, a closed connection, or nothing yet
/// (it waits for the rest of a packet).
#[derive(Debug, PartialEq)]
enum After {
    Err(u16),
    Other(u8),
    Closed,
    Waiting,
}

fn after(s: &mut TcpStream) -> After {
    s.set_read_timeout(Some(Duration::from_millis(150)))
        .unwrap();
    let mut h = [0u8; 4];
    match s.read(&mut h[..1]) {
        Ok(0) => return After::Closed,
        Ok(_) => {}
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            return After::Waiting
        }
        Err(_) => return After::Closed,
    }
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    if s.read_exact(&mut h[1..]).is_err() {
        return After::Closed;
    }
    let n = h[0] as usize | (h[1] as usize) << 8 | (h[2] as usize) << 16;
    let mut p = vec![0u8; n];
    if s.read_exact(&mut p).is_err() {
        return After::Closed;
    }
    match p.as_slice().first() {
        Some(0xff) if p.len() >= 3 => After::Err(u16::from_le_bytes([p[1], p[2]])),
        Some(&b) => After::Other(b),
        None => After::Other(0),
    }
}

fn connect(port: u16) -> (TcpStream, Vec<u8>) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let (_, greeting) = read_packet(&mut s).expect("greeting");
    (s, greeting)
}

/// The 20-byte scramble of a greeting (HandshakeV10).
fn scramble(g: &[u8]) -> Vec<u8> {
    let v_end = 1 + g[1..].iter().position(|&b| b == 0).unwrap();
    let p = v_end + 1 + 4;
    let mut salt = g[p..p + 8].to_vec();
    let rest = p + 8 + 1 + 2 + 1 + 2 + 2 + 1 + 10;
    salt.extend_from_slice(&g[rest..rest + 12]);
    salt
}

fn native(password: &str, salt: &[u8]) -> Vec<u8> {
    let h1 = Sha1::digest(password.as_bytes());
    let h2 = Sha1::digest(h1);
    let mut m = Sha1::new();
    m.update(salt);
    m.update(h2);
    let h3 = m.finalize();
    h1.iter().zip(h3.iter()).map(|(a, b)| a ^ b).collect()
}

const CAPS: u32 = 1 | 4 | 0x200 | 0x2000 | 0x8000 | 0x80000;

fn handshake_response(salt: &[u8]) -> Vec<u8> {
    let mut p = CAPS.to_le_bytes().to_vec();
    p.extend_from_slice(&(1u32 << 24).to_le_bytes());
    p.push(45);
    p.extend_from_slice(&[0u8; 23]);
    p.extend_from_slice(APP_USER.as_bytes());
    p.push(0);
    let auth = native(APP_PASSWORD, salt);
    p.push(auth.len() as u8);
    p.extend_from_slice(&auth);
    p.extend_from_slice(b"mysql_native_password\0");
    p
}

/// A logged-in connection with `SELECT ?, ?` prepared, and the statement id.
fn login_prepared(port: u16) -> (TcpStream, u32) {
    let mut s = login(port);
    s.write_all(&packet(0, b"\x16SELECT ?, ?")).unwrap();
    let (_, ok) = read_packet(&mut s).unwrap();
    assert_eq!(ok[0], 0, "prepare: {ok:?}");
    let stmt_id = u32::from_le_bytes([ok[1], ok[2], ok[3], ok[4]]);
    // The parameter and column definitions with their EOFs.
    s.set_read_timeout(Some(Duration::from_millis(150)))
        .unwrap();
    while read_packet(&mut s).is_some() {}
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    (s, stmt_id)
}

fn login(port: u16) -> TcpStream {
    let (mut s, g) = connect(port);
    s.write_all(&packet(1, &handshake_response(&scramble(&g))))
        .unwrap();
    let (_, ok) = read_packet(&mut s).expect("login answer");
    assert_eq!(ok[0], 0, "login failed: {ok:?}");
    s
}

fn random_bytes(rng: &mut impl Rng, max: usize) -> Vec<u8> {
    (0..rng.gen_range(0..max)).map(|_| rng.gen()).collect()
}

#[test]
fn garbage_at_every_phase_never_panics_and_spares_other_sessions() {
    let proxy = Proxy::start(&ProxyConfig::for_cluster(Cluster::shared()).render());
    let port = proxy.port();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut survivor = rt.block_on(harness::mysql::connect(&proxy.url()));
    rt.block_on(survivor.query_drop("SET @kept = 1")).unwrap();
    let seed: u64 = rand::random();
    println!("seed {seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut outcomes: std::collections::BTreeMap<String, usize> = Default::default();
    let mut note = |phase: &str, a: &After| {
        let kind = match a {
            After::Err(c) => format!("{phase}: error {c}"),
            After::Other(b) => format!("{phase}: packet {b:#04x}"),
            After::Closed => format!("{phase}: closed"),
            After::Waiting => format!("{phase}: waiting for more"),
        };
        *outcomes.entry(kind).or_default() += 1;
    };
    let started = Instant::now();

    // 1. Before the handshake response: random bytes, raw or framed as packet 1.
    for i in 0..30 {
        let (mut s, _) = connect(port);
        let junk = random_bytes(&mut rng, 200);
        let bytes = if i % 2 == 0 { junk } else { packet(1, &junk) };
        let _ = s.write_all(&bytes);
        let a = after(&mut s);
        assert!(
            !matches!(a, After::Other(0)),
            "garbage logged in: {bytes:?}"
        );
        note("before login", &a);
    }
    // 2. Bad handshake responses: a good one truncated or mutated, an oversized length.
    for i in 0..45 {
        let (mut s, g) = connect(port);
        let mut resp = handshake_response(&scramble(&g));
        match i % 3 {
            0 => resp.truncate(rng.gen_range(0..resp.len())),
            1 => {
                for _ in 0..rng.gen_range(1..4) {
                    let j = rng.gen_range(0..resp.len());
                    resp[j] = rng.gen();
                }
            }
            _ => {}
        }
        let bytes = if i % 3 == 2 {
            // A header promising 16 MiB - 1, then a few bytes and the end.
            let mut b = vec![0xff, 0xff, 0xff, 1];
            b.extend_from_slice(&resp[..10]);
            b
        } else {
            packet(1, &resp)
        };
        let _ = s.write_all(&bytes);
        let a = after(&mut s);
        note("handshake response", &a);
    }
    // 3. After login.
    let (mut prepared, stmt_id) = login_prepared(port);
    // Unknown command bytes: an error, the session goes on.
    for cmd in [0x00u8, 0x20, 0x7f, 0xee, 0xff] {
        prepared.write_all(&packet(0, &[cmd, 1, 2, 3])).unwrap();
        let a = after(&mut prepared);
        assert!(matches!(a, After::Err(1047)), "command {cmd:#04x}: {a:?}");
        note("unknown command", &a);
    }
    // Truncated and mutated COM_STMT_EXECUTE on a real statement.
    let mut good = vec![0x17];
    good.extend_from_slice(&stmt_id.to_le_bytes());
    good.extend_from_slice(&[0, 1, 0, 0, 0, 0, 1, 8, 0, 0xfd, 0]);
    good.extend_from_slice(&7i64.to_le_bytes());
    good.extend_from_slice(b"\x03abc");
    let mut s = prepared;
    for i in 0..80 {
        let mut p = good.clone();
        if i % 2 == 0 {
            p.truncate(rng.gen_range(1..p.len()));
        } else {
            for _ in 0..rng.gen_range(1..4) {
                let j = rng.gen_range(5..p.len());
                p[j] = rng.gen();
            }
        }
        s.write_all(&packet(0, &p)).unwrap();
        let a = after(&mut s);
        note("stmt_execute", &a);
        assert_ne!(
            a,
            After::Closed,
            "closed without an error after execute {p:02x?}"
        );
        if a == After::Closed && std::env::var_os("GARBAGE_DEBUG").is_some() {
            println!("closed after execute {p:02x?}");
        }
        // 1835 (malformed packet) is followed by the close of the connection.
        if matches!(a, After::Closed | After::Waiting | After::Err(1835)) {
            (s, _) = login_prepared(port);
        } else {
            // Drain the rest of an answer (a result set) before the next command.
            s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
            while read_packet(&mut s).is_some() {}
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        }
    }
    // Random commands and oversized or lying lengths after login.
    for i in 0..45 {
        let mut s = login(port);
        let bytes = match i % 3 {
            0 => packet(0, &random_bytes(&mut rng, 100)),
            1 => {
                let mut b = vec![0xff, 0xff, 0xff, 0];
                b.extend(random_bytes(&mut rng, 100));
                b
            }
            _ => {
                let mut p = vec![
                    [0x03u8, 0x04, 0x11, 0x18, 0x19, 0x1a, 0x1c, 0x0e, 0x02, 0x0c]
                        [rng.gen_range(0..10)],
                ];
                p.extend(random_bytes(&mut rng, 12));
                packet(rng.gen_range(0..3), &p)
            }
        };
        let _ = s.write_all(&bytes);
        let a = after(&mut s);
        note("after login", &a);
    }
    println!(
        "{} garbage connections in {:?}",
        30 + 45 + 80 + 45,
        started.elapsed()
    );
    for (k, n) in &outcomes {
        println!("{n:4}  {k}");
    }
    let log = proxy.log();
    assert!(!log.contains("panicked"), "the proxy panicked:\n{log}");
    // The session opened before is untouched (its pinned state too).
    let kept: Option<i64> = rt.block_on(survivor.query_first("SELECT @kept")).unwrap();
    assert_eq!(kept, Some(1));
    // And the proxy still serves new clients.
    let mut fresh = rt.block_on(harness::mysql::connect(&proxy.url()));
    let one: Option<i64> = rt.block_on(fresh.query_first("SELECT 1")).unwrap();
    assert_eq!(one, Some(1));
}
