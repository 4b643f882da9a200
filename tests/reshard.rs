//! Online resharding (issue 12) against real mariadbd servers and the real proxy binary:
//! `RESHARD START` from 2 to 3 shards while clients keep writing through the proxy, then
//! `RESHARD CLEANUP`; and a shrink from 3 back to 2 that is cancelled halfway.
//!
//! What is checked, each time by reading every shard directly (never through the proxy):
//! zero client errors during the move and its cutover; every acknowledged write present exactly
//! once, with its last acknowledged value, and deleted rows absent; every row on exactly the
//! shard the new ring names (after cleanup, no copy left behind); the reference table copied
//! whole to the new shard; after a cancel, no trigger, no copy, and the old placement intact.
//! `RESHARD_ROWS` (default 3000) sets the table's size: `make reshard-demo` runs the ignored
//! larger version and prints the figures.

mod harness;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use harness::{Cluster, Proxy, ProxyConfig, APP_PASSWORD, APP_USER};
use mysql_async::prelude::Queryable;
use shardproxy::config::Config;
use shardproxy::ring::{KeyValue, Ring};

const WRITERS: u64 = 4;

/// What one writer knows it did: per id, the last acknowledged balance (`None`: deleted).
type Acked = BTreeMap<u64, Option<String>>;

/// Figures of one writer.
#[derive(Default)]
struct Tally {
    acked: Acked,
    writes: u64,
    errors: Vec<String>,
    worst_ms: u128,
    /// (when it was acknowledged, microseconds it took) per write.
    latencies: Vec<(Instant, u64)>,
}

/// p50 and p99 in milliseconds of the writes acknowledged in `[from, to)`.
fn percentiles(tallies: &[Tally], from: Instant, to: Instant) -> (f64, f64, usize) {
    let mut v: Vec<u64> = tallies
        .iter()
        .flat_map(|t| &t.latencies)
        .filter(|(at, _)| *at >= from && *at < to)
        .map(|(_, us)| *us)
        .collect();
    v.sort_unstable();
    if v.is_empty() {
        return (0.0, 0.0, 0);
    }
    let at = |q: f64| v[((v.len() as f64 * q) as usize).min(v.len() - 1)] as f64 / 1000.0;
    (at(0.5), at(0.99), v.len())
}

fn balance(i: u64, n: u64) -> String {
    format!("{}.{:02}", i * 7 + n, (i + n) % 100)
}

/// A writer through the proxy: updates its own share of the loaded rows, inserts new rows and
/// deletes some of them, one autocommit statement at a time, until `stop`.
async fn writer(
    port: u16,
    w: u64,
    rows: u64,
    base: u64,
    stop: Arc<AtomicBool>,
    count: Arc<AtomicU64>,
) -> Tally {
    let opts = harness::mysql::tcp_opts(port, APP_USER, APP_PASSWORD).db_name(Some("fund"));
    let mut conn = mysql_async::Conn::new(opts).await.expect("writer connects");
    let mut t = Tally::default();
    let mut n: u64 = 0;
    let mut mine: Vec<u64> = (1..=rows).filter(|id| id % WRITERS == w).collect();
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let (sql, id, after): (String, u64, Option<String>) = match n % 5 {
            0..=2 => {
                let id = mine[(n as usize * 7919) % mine.len()];
                let b = balance(id, n);
                (
                    format!("UPDATE rs_accounts SET balance = {b} WHERE id = {id}"),
                    id,
                    Some(b),
                )
            }
            3 => {
                let id = base + 1_000_000 * (w + 1) + n;
                let b = balance(id, n);
                mine.push(id);
                (
                    format!(
                        "INSERT INTO rs_accounts (id, owner, balance) VALUES ({id}, 'w{w}', {b})"
                    ),
                    id,
                    Some(b),
                )
            }
            _ => {
                // Delete the newest inserted row (never a loaded one, so updates keep hitting).
                match mine.last().copied().filter(|&id| id > rows) {
                    Some(id) => {
                        mine.pop();
                        (format!("DELETE FROM rs_accounts WHERE id = {id}"), id, None)
                    }
                    None => continue,
                }
            }
        };
        let started = Instant::now();
        match conn.query_drop(&sql).await {
            Ok(()) => {
                t.latencies
                    .push((Instant::now(), started.elapsed().as_micros() as u64));
                t.acked.insert(id, after);
                t.writes += 1;
                count.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => t.errors.push(format!("{sql}: {e}")),
        }
        t.worst_ms = t.worst_ms.max(started.elapsed().as_millis());
    }
    let _ = conn.disconnect().await;
    t
}

/// `fund.rs_accounts` of one server: id → balance.
fn shard_rows(cluster: &Cluster, shard: &str) -> HashMap<u64, String> {
    cluster
        .shard(shard)
        .primary
        .query("SELECT id, balance FROM fund.rs_accounts")
        .into_iter()
        .map(|r| (r[0].parse().unwrap(), r[1].clone()))
        .collect()
}

/// The status rows, waiting until the phase is one of `phases` (panics on `stopped` or after
/// `timeout`).
fn wait_phase(proxy: &Proxy, phases: &[&str], timeout: Duration) -> Vec<Vec<String>> {
    let deadline = Instant::now() + timeout;
    loop {
        // A restarted proxy opens its admin port once it has read the persisted state.
        let rows = match proxy.admin_query("SHOW RESHARD STATUS") {
            Ok(r) => r,
            Err(e) if Instant::now() < deadline => {
                eprintln!("admin port not ready: {e}");
                std::thread::sleep(Duration::from_millis(200));
                continue;
            }
            Err(e) => panic!("SHOW RESHARD STATUS: {e}"),
        };
        let phase = rows.first().map(|r| r[0].clone()).unwrap_or_default();
        if phases.contains(&phase.as_str()) {
            return rows;
        }
        assert!(
            phase != "stopped",
            "the resharding stopped: {rows:?}\n{}",
            proxy.log()
        );
        assert!(
            Instant::now() < deadline,
            "phase {phase} after {timeout:?}: {rows:?}\n{}",
            proxy.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Every id on exactly the shard `ring` names, the union equal to what was acknowledged.
fn check_placement(cluster: &Cluster, ring: &Ring, shards: &[&str], loaded: u64, acked: &Acked) {
    let mut seen: HashMap<u64, (String, String)> = HashMap::new();
    for s in shards {
        for (id, b) in shard_rows(cluster, s) {
            let want = ring.shard_for(&KeyValue::from(id as i64));
            assert_eq!(want, *s, "row {id} is on {s}, the ring names {want}");
            if let Some((other, _)) = seen.insert(id, (s.to_string(), b)) {
                panic!("row {id} is on both {other} and {s}");
            }
        }
    }
    for id in 1..=loaded {
        assert!(
            acked.contains_key(&id) || seen.contains_key(&id),
            "loaded row {id} is lost"
        );
    }
    for (id, want) in acked {
        match (want, seen.get(id)) {
            (Some(b), Some((_, got))) => assert_eq!(got, b, "row {id}: last acknowledged balance"),
            (Some(b), None) => panic!("acknowledged row {id} (balance {b}) is lost"),
            (None, Some((s, _))) => panic!("deleted row {id} is back on {s}"),
            (None, None) => {}
        }
    }
}

fn triggers(cluster: &Cluster, shard: &str) -> String {
    cluster
        .shard(shard)
        .primary
        .query_value("SELECT COUNT(*) FROM information_schema.TRIGGERS WHERE TRIGGER_NAME LIKE 'shardproxy_rs_%'")
        .unwrap_or_default()
}

fn run(rows: u64) {
    let cluster = Cluster::start(3, 0);
    let s = |n: &str| cluster.shard(n).primary_addr();
    let cfg = ProxyConfig::default()
        .shard("s1", &s("s1"), &[])
        .shard("s2", &s("s2"), &[])
        .sharded_table("rs_accounts", "id")
        .reference_table("rs_rates")
        .extra("[reshard]\ncutover_timeout_ms = 2000\nbatch_rows = 500\n")
        .render();
    let proxy = Proxy::start(&cfg);
    proxy
        .cli_query(
            "USE fund; CREATE TABLE rs_accounts (id BIGINT PRIMARY KEY, owner VARCHAR(40) \
             CHARACTER SET latin1, balance DECIMAL(20,2) NOT NULL, note BLOB); CREATE TABLE \
             rs_rates (code VARCHAR(8) PRIMARY KEY, rate DECIMAL(10,4))",
        )
        .unwrap();
    proxy
        .cli_query("USE fund; INSERT INTO rs_rates VALUES ('EUR', 1.0850), ('CNY', 0.1380)")
        .unwrap();
    let mut id = 1;
    while id <= rows {
        let values: Vec<String> = (id..(id + 2000).min(rows + 1))
            .map(|i| format!("({i}, 'Zoë{i}', {}, x'00ff{i:08x}')", balance(i, 0)))
            .collect();
        proxy
            .cli_query(&format!(
                "USE fund; INSERT INTO rs_accounts (id, owner, balance, note) VALUES {}",
                values.join(", ")
            ))
            .unwrap();
        id += 2000;
    }
    // The 3-shard config: the running one with s3 added.
    let running = std::fs::read_to_string(proxy.config_path()).unwrap();
    let three = harness::with_shard(&running, "s3", &s("s3"));
    assert_ne!(three, running);
    let three_path = proxy.config_path().with_extension("three.toml");
    std::fs::write(&three_path, &three).unwrap();
    let new_ring = Ring::from_config(&Config::load(&three_path).unwrap());

    // Writers through the proxy for the whole move.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            rt.spawn(writer(
                proxy.port(),
                w,
                rows,
                0,
                stop.clone(),
                count.clone(),
            ))
        })
        .collect();
    let load_started = Instant::now();
    std::thread::sleep(Duration::from_millis(1000));

    let started = Instant::now();
    let out = proxy
        .admin_query(&format!("RESHARD START '{}'", three_path.display()))
        .unwrap();
    assert!(out[0][0].contains("started"), "{out:?}");
    // A second start while one runs is refused.
    let e = proxy
        .admin_query(&format!("RESHARD START '{}'", three_path.display()))
        .map(|ok| {
            panic!(
                "a second start was accepted: {ok:?}, {:?}\n{}",
                proxy.admin_query("SHOW RESHARD STATUS"),
                proxy.log()
            )
        })
        .unwrap_err();
    assert!(e.contains("under way"), "{e}");
    let status = wait_phase(&proxy, &["done"], Duration::from_secs(300));
    let took = started.elapsed();
    let done_at = Instant::now();
    let during = count.load(Ordering::Relaxed);
    // Writes keep going on the new ring for a moment.
    std::thread::sleep(Duration::from_millis(700));
    stop.store(true, Ordering::Relaxed);
    let tallies: Vec<Tally> = writers
        .into_iter()
        .map(|h| rt.block_on(h).unwrap())
        .collect();
    let errors: Vec<&String> = tallies.iter().flat_map(|t| &t.errors).collect();
    let writes: u64 = tallies.iter().map(|t| t.writes).sum();
    let worst = tallies.iter().map(|t| t.worst_ms).max().unwrap_or(0);
    let summary = status.last().unwrap().clone();
    let (b50, b99, bn) = percentiles(&tallies, load_started, started);
    let (d50, d99, dn) = percentiles(&tallies, started, done_at);
    println!(
        "write latency before the move: p50 {b50:.2} ms, p99 {b99:.2} ms ({bn} writes); during \
         it: p50 {d50:.2} ms, p99 {d99:.2} ms ({dn} writes)"
    );
    println!(
        "reshard 2 -> 3: {rows} rows; moved {} rows ({} rows/s copy); {} changes caught up; \
         took {took:?}; {writes} writes acknowledged ({during} before done), {} errors; slowest \
         write {worst} ms; {}",
        summary[5],
        summary[6],
        summary[7],
        errors.len(),
        summary[11]
    );
    assert!(
        errors.is_empty(),
        "client errors during the move: {errors:?}"
    );
    assert!(writes > 50, "the writers hardly wrote: {writes}");
    let pause: u64 = summary[11]
        .split("cutover write pause ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no cutover pause in {summary:?}"));
    assert!(pause < 2000, "cutover pause {pause} ms");
    for r in &status[..status.len() - 1] {
        assert_eq!(r[3], "s3", "growing moves only to s3: {status:?}");
    }
    let mut acked = Acked::new();
    for t in &tallies {
        acked.extend(t.acked.clone());
    }
    // The proxy now routes by the new ring: a moved key is read from s3.
    let moved = (1..=rows)
        .find(|&i| new_ring.shard_for(&KeyValue::from(i as i64)) == "s3" && !acked.contains_key(&i))
        .expect("some loaded row moves to s3 untouched");
    let via_proxy = proxy
        .cli_query(&format!(
            "USE fund; SELECT owner, HEX(note) FROM rs_accounts WHERE id = {moved}"
        ))
        .unwrap();
    assert_eq!(via_proxy[0][0], format!("Zoë{moved}"), "latin1 text kept");
    assert_eq!(
        via_proxy[0][1],
        format!("00FF{moved:08X}"),
        "blob bytes kept"
    );
    assert_eq!(
        cluster
            .shard("s3")
            .primary
            .query("SELECT code, rate FROM fund.rs_rates ORDER BY code"),
        vec![
            vec!["CNY".to_string(), "0.1380".into()],
            vec!["EUR".into(), "1.0850".into()]
        ],
        "the reference table is copied whole to the new shard"
    );
    for sh in ["s1", "s2"] {
        assert_eq!(triggers(&cluster, sh), "0", "triggers left on {sh}");
    }
    // Before cleanup the moved rows are still on their old shards too; CANCEL is refused now.
    let e = proxy.admin_query("RESHARD CANCEL").unwrap_err();
    assert!(e.contains("cutover happened"), "{e}");
    let out = proxy.admin_query("RESHARD CLEANUP").unwrap();
    assert!(out[0][0].contains("deleted"), "{out:?}");
    check_placement(&cluster, &new_ring, &["s1", "s2", "s3"], rows, &acked);
    let live = acked.values().filter(|v| v.is_none()).count();
    let count_via_proxy: usize = proxy
        .cli_query("USE fund; SELECT COUNT(*) FROM rs_accounts")
        .unwrap()[0][0]
        .parse()
        .unwrap();
    let expected = (1..=rows).filter(|i| !acked.contains_key(i)).count()
        + acked.values().filter(|v| v.is_some()).count();
    assert_eq!(count_via_proxy, expected, "{live} deleted");

    // Shrinking back to 2, slowly, and cancelled during the copy: the 3-shard placement keeps
    // serving and nothing of the half-done move is left.
    let two = running.replace(
        "[reshard]\ncutover_timeout_ms = 2000\nbatch_rows = 500\n",
        "[reshard]\ncutover_timeout_ms = 2000\nbatch_rows = 20\nbatch_pause_ms = 100\n",
    );
    assert_ne!(two, running);
    let two_path = proxy.config_path().with_extension("two.toml");
    std::fs::write(&two_path, &two).unwrap();
    let before: Vec<HashMap<u64, String>> = ["s1", "s2", "s3"]
        .iter()
        .map(|s| shard_rows(&cluster, s))
        .collect();
    proxy
        .admin_query(&format!("RESHARD START '{}'", two_path.display()))
        .unwrap();
    wait_phase(&proxy, &["copy"], Duration::from_secs(30));
    std::thread::sleep(Duration::from_millis(500));
    let copied_some = (["s1", "s2"]
        .iter()
        .map(|s| shard_rows(&cluster, s).len())
        .sum::<usize>())
        > before[0].len() + before[1].len();
    // The copy's progress shows while it runs.
    let during = proxy.admin_query("SHOW RESHARD STATUS").unwrap();
    let sum = during.last().unwrap();
    assert_eq!(sum[0], "copy", "{during:?}");
    assert!(
        sum[5].parse::<u64>().unwrap() > 0,
        "no progress shown: {during:?}"
    );
    let out = proxy.admin_query("RESHARD CANCEL").unwrap();
    assert!(out[0][0].contains("cancelled"), "{out:?}");
    assert!(copied_some, "the cancel came before any row was copied");
    let after: Vec<HashMap<u64, String>> = ["s1", "s2", "s3"]
        .iter()
        .map(|s| shard_rows(&cluster, s))
        .collect();
    assert_eq!(
        after, before,
        "a cancelled move leaves every shard as it was"
    );
    for sh in ["s1", "s2", "s3"] {
        assert_eq!(triggers(&cluster, sh), "0", "triggers left on {sh}");
    }
    let status = proxy.admin_query("SHOW RESHARD STATUS").unwrap();
    assert_eq!(status[0][0], "cancelled", "{status:?}");
    let count_after: usize = proxy
        .cli_query("USE fund; SELECT COUNT(*) FROM rs_accounts")
        .unwrap()[0][0]
        .parse()
        .unwrap();
    assert_eq!(
        count_after, expected,
        "the 3-shard ring still serves every row"
    );
    println!("reshard 3 -> 2 cancelled during the copy: every shard as before, no trigger left");

    // The shrink again, to its end, under writes: every row back on the 2-shard ring, s3 empty.
    // The original 2-shard config (the proxy's own file now holds the 3-shard one: the
    // cleanup of the grow gave it the target's contents).
    let fast_path = proxy.config_path().with_extension("two-fast.toml");
    std::fs::write(&fast_path, &running).unwrap();
    let two_ring = Ring::from_config(&Config::load(&fast_path).unwrap());
    stop.store(false, Ordering::Relaxed);
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            rt.spawn(writer(
                proxy.port(),
                w,
                rows,
                100_000_000,
                stop.clone(),
                count.clone(),
            ))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    proxy
        .admin_query(&format!("RESHARD START '{}'", fast_path.display()))
        .unwrap();
    let status = wait_phase(&proxy, &["done"], Duration::from_secs(120));
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let tallies: Vec<Tally> = writers
        .into_iter()
        .map(|h| rt.block_on(h).unwrap())
        .collect();
    let errors: Vec<&String> = tallies.iter().flat_map(|t| &t.errors).collect();
    assert!(
        errors.is_empty(),
        "client errors during the shrink: {errors:?}"
    );
    for t in &tallies {
        acked.extend(t.acked.clone());
    }
    let summary = status.last().unwrap();
    println!(
        "reshard 3 -> 2: moved {} rows, {} changes caught up, {} writes acknowledged, 0 errors; {}",
        summary[5],
        summary[7],
        tallies.iter().map(|t| t.writes).sum::<u64>(),
        summary[11]
    );
    proxy.admin_query("RESHARD CLEANUP").unwrap();
    check_placement(&cluster, &two_ring, &["s1", "s2", "s3"], rows, &acked);
    assert_eq!(triggers(&cluster, "s3"), "0");
}

/// The proxy is SIGKILLed during the copy; the restarted proxy (same config file, still the
/// 2-shard one) resumes the move by itself and completes it; killed again after the cleanup,
/// it comes back serving the new ring (the old one would no longer find the moved rows).
#[test]
fn a_proxy_killed_during_the_copy_resumes_and_keeps_the_new_ring_after_restarts() {
    let rows = 2000;
    let cluster = Cluster::start(3, 0);
    let s = |n: &str| cluster.shard(n).primary_addr();
    let cfg = ProxyConfig::default()
        .shard("s1", &s("s1"), &[])
        .shard("s2", &s("s2"), &[])
        .sharded_table("rs_accounts", "id")
        .render();
    let mut proxy = Proxy::start(&cfg);
    proxy
        .cli_query(
            "USE fund; CREATE TABLE rs_accounts (id BIGINT PRIMARY KEY, owner VARCHAR(40), \
             balance DECIMAL(20,2) NOT NULL, note BLOB)",
        )
        .unwrap();
    let values: Vec<String> = (1..=rows)
        .map(|i| format!("({i}, 'o{i}', {})", balance(i, 0)))
        .collect();
    proxy
        .cli_query(&format!(
            "USE fund; INSERT INTO rs_accounts (id, owner, balance) VALUES {}",
            values.join(", ")
        ))
        .unwrap();
    // The target config outside the proxy's directory (it outlives the killed proxy), slow
    // enough to be killed during the copy.
    let dir = tempfile::tempdir().unwrap();
    let three = format!(
        "{}\n[reshard]\nbatch_rows = 20\nbatch_pause_ms = 40\n",
        harness::with_shard(&cfg, "s3", &s("s3"))
    );
    let three_path = dir.path().join("three.toml");
    std::fs::write(&three_path, &three).unwrap();
    let new_ring = Ring::from_config(&Config::load(&three_path).unwrap());
    proxy
        .admin_query(&format!("RESHARD START '{}'", three_path.display()))
        .unwrap();
    wait_phase(&proxy, &["copy"], Duration::from_secs(30));
    // Acknowledged writes during the copy: on moving and staying keys alike.
    let mut acked = Acked::new();
    for id in 1..=40u64 {
        let b = balance(id, 1);
        proxy
            .cli_query(&format!(
                "USE fund; UPDATE rs_accounts SET balance = {b} WHERE id = {id}"
            ))
            .unwrap();
        acked.insert(id, Some(b));
    }
    proxy
        .cli_query("USE fund; DELETE FROM rs_accounts WHERE id IN (41, 42, 43)")
        .unwrap();
    for id in 41..=43 {
        acked.insert(id, None);
    }
    std::thread::sleep(Duration::from_millis(300));
    proxy.kill();
    let on_s3 = shard_rows(&cluster, "s3").len();
    let moving = (1..=rows)
        .filter(|&i| new_ring.shard_for(&KeyValue::from(i as i64)) == "s3")
        .count();
    assert!(
        on_s3 < moving,
        "the copy was over before the kill ({on_s3} of {moving})"
    );
    println!("killed during the copy with {on_s3} of {moving} moving rows on s3");

    let mut proxy = Proxy::start(&cfg);
    let status = wait_phase(&proxy, &["done"], Duration::from_secs(120));
    assert!(
        proxy
            .log()
            .contains("resuming the move interrupted by the restart"),
        "{}",
        proxy.log()
    );
    println!("resumed after the restart: {:?}", status.last().unwrap());
    proxy.admin_query("RESHARD CLEANUP").unwrap();
    check_placement(&cluster, &new_ring, &["s1", "s2", "s3"], rows, &acked);
    let expected = rows as usize - 3;
    let count = |p: &Proxy| -> usize {
        p.cli_query("USE fund; SELECT COUNT(*) FROM rs_accounts")
            .unwrap()[0][0]
            .parse()
            .unwrap()
    };
    assert_eq!(count(&proxy), expected);
    proxy.kill();
    let proxy = Proxy::start(&cfg);
    // The data port is bound first; clients are served once the state is read.
    assert!(
        harness::wait_until(Duration::from_secs(20), || proxy
            .log()
            .contains("serving the new ring")),
        "{}",
        proxy.log()
    );
    assert_eq!(
        count(&proxy),
        expected,
        "the restarted proxy serves the new ring"
    );
    let moved = (1..=rows)
        .find(|&i| new_ring.shard_for(&KeyValue::from(i as i64)) == "s3")
        .unwrap();
    let got = proxy
        .cli_query(&format!(
            "USE fund; SELECT owner FROM rs_accounts WHERE id = {moved}"
        ))
        .unwrap();
    assert_eq!(got[0][0], format!("o{moved}"));
}

#[test]
fn grow_two_to_three_under_writes_then_a_cancelled_shrink() {
    run(std::env::var("RESHARD_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000));
}

/// The larger run for `make reshard-demo` (figures printed).
#[test]
#[ignore]
fn reshard_demo_large() {
    run(std::env::var("RESHARD_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50_000));
}

/// A client holds a transaction open, with a write to a moving key, while the catch-up runs
/// (a few seconds, then it commits). The catch-up's deletes from the change log must not wait
/// on the row that transaction's trigger wrote (the sources' `innodb_lock_wait_timeout` is
/// cut to 2 s, so a delete that waits stops the move with 1205 instead of after 50 s): the move
/// finishes, and the transaction's write is on its new shard.
#[test]
fn an_open_transaction_on_a_moving_key_during_the_catch_up_does_not_stop_the_move() {
    let rows = 2000;
    let cluster = Cluster::start(3, 0);
    let s = |n: &str| cluster.shard(n).primary_addr();
    for sh in ["s1", "s2"] {
        cluster
            .shard(sh)
            .primary
            .exec("SET GLOBAL innodb_lock_wait_timeout = 2");
    }
    let cfg = ProxyConfig::default()
        .shard("s1", &s("s1"), &[])
        .shard("s2", &s("s2"), &[])
        .sharded_table("rs_accounts", "id")
        .extra("[reshard]\ncutover_timeout_ms = 1000\nbatch_rows = 100\nbatch_pause_ms = 10\n")
        .render();
    let proxy = Proxy::start(&cfg);
    proxy
        .cli_query(
            "USE fund; CREATE TABLE rs_accounts (id BIGINT PRIMARY KEY, owner VARCHAR(40), \
             balance DECIMAL(20,2) NOT NULL, note BLOB)",
        )
        .unwrap();
    let values: Vec<String> = (1..=rows)
        .map(|i| format!("({i}, 'o{i}', {})", balance(i, 0)))
        .collect();
    proxy
        .cli_query(&format!(
            "USE fund; INSERT INTO rs_accounts (id, owner, balance) VALUES {}",
            values.join(", ")
        ))
        .unwrap();
    let running = std::fs::read_to_string(proxy.config_path()).unwrap();
    let three = harness::with_shard(&running, "s3", &s("s3"));
    let three_path = proxy.config_path().with_extension("three.toml");
    std::fs::write(&three_path, &three).unwrap();
    let new_ring = Ring::from_config(&Config::load(&three_path).unwrap());
    // The transaction's key: writer 0's share (no writer runs for it), moving to s3.
    let key = (1..=rows)
        .find(|&i| i % WRITERS == 0 && new_ring.shard_for(&KeyValue::from(i as i64)) == "s3")
        .unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    // The other writers keep committing changes, so the log always holds committed entries
    // numbered after the open transaction's one (what the catch-up reads and deletes).
    let writers: Vec<_> = (1..WRITERS)
        .map(|w| {
            rt.spawn(writer(
                proxy.port(),
                w,
                rows,
                0,
                stop.clone(),
                count.clone(),
            ))
        })
        .collect();
    proxy
        .admin_query(&format!("RESHARD START '{}'", three_path.display()))
        .unwrap();
    wait_phase(&proxy, &["copy", "catch-up"], Duration::from_secs(30));
    let opts = harness::mysql::tcp_opts(proxy.port(), APP_USER, APP_PASSWORD).db_name(Some("fund"));
    let mut tx = rt.block_on(mysql_async::Conn::new(opts)).expect("connects");
    let first = balance(key, 901);
    rt.block_on(tx.query_drop("BEGIN")).unwrap();
    rt.block_on(tx.query_drop(format!(
        "UPDATE rs_accounts SET balance = {first} WHERE id = {key}"
    )))
    .unwrap();
    // Held open through the catch-up (and the cutovers it makes the driver abandon).
    wait_phase(
        &proxy,
        &["catch-up", "verify", "cutover"],
        Duration::from_secs(60),
    );
    let held = Instant::now();
    while held.elapsed() < Duration::from_secs(5) {
        let phase = proxy.admin_query("SHOW RESHARD STATUS").unwrap();
        assert_ne!(phase[0][0], "stopped", "{phase:?}\n{}", proxy.log());
        std::thread::sleep(Duration::from_millis(200));
    }
    let last = balance(key, 902);
    rt.block_on(tx.query_drop(format!(
        "UPDATE rs_accounts SET balance = {last} WHERE id = {key}"
    )))
    .unwrap();
    rt.block_on(tx.query_drop("COMMIT")).unwrap();
    let status = wait_phase(&proxy, &["done"], Duration::from_secs(120));
    stop.store(true, Ordering::Relaxed);
    let tallies: Vec<Tally> = writers
        .into_iter()
        .map(|h| rt.block_on(h).unwrap())
        .collect();
    let errors: Vec<&String> = tallies.iter().flat_map(|t| &t.errors).collect();
    assert!(
        errors.is_empty(),
        "client errors during the move: {errors:?}"
    );
    println!(
        "move done with a transaction held 5 s in the catch-up: {:?}",
        status.last()
    );
    let mut acked = Acked::new();
    for t in &tallies {
        acked.extend(t.acked.clone());
    }
    acked.insert(key, Some(last.clone()));
    assert_eq!(
        shard_rows(&cluster, "s3").get(&key),
        Some(&last),
        "the transaction's write is on its new shard"
    );
    proxy.admin_query("RESHARD CLEANUP").unwrap();
    check_placement(&cluster, &new_ring, &["s1", "s2", "s3"], rows, &acked);
}

/// Ids of a global sequence drawn through the proxy before, during and after a move (blocks
/// of 20, so new blocks are reserved during the copy, the catch-up and after the cutover) are
/// all distinct, and each row ends on the shard the new ring names for its id.
#[test]
fn a_global_sequence_hands_out_unique_ids_across_the_move() {
    let cluster = Cluster::start(3, 0);
    let s = |n: &str| cluster.shard(n).primary_addr();
    let cfg = ProxyConfig::default()
        .shard("s1", &s("s1"), &[])
        .shard("s2", &s("s2"), &[])
        .sequence_table("rs_orders", "id", None, Some(20))
        .extra("[reshard]\ncutover_timeout_ms = 2000\nbatch_rows = 50\nbatch_pause_ms = 20\n")
        .render();
    let proxy = Proxy::start(&cfg);
    proxy
        .cli_query("USE fund; CREATE TABLE rs_orders (id BIGINT PRIMARY KEY, note VARCHAR(20))")
        .unwrap();
    let running = std::fs::read_to_string(proxy.config_path()).unwrap();
    let three = harness::with_shard(&running, "s3", &s("s3"));
    let three_path = proxy.config_path().with_extension("three.toml");
    std::fs::write(&three_path, &three).unwrap();
    let new_ring = Ring::from_config(&Config::load(&three_path).unwrap());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let opts = harness::mysql::tcp_opts(proxy.port(), APP_USER, APP_PASSWORD).db_name(Some("fund"));
    // (phase tag, id) per insert, from two sessions at once.
    let draw = |tag: &'static str, n: usize, stop: Option<Arc<AtomicBool>>| {
        let opts = opts.clone();
        rt.spawn(async move {
            let mut conn = mysql_async::Conn::new(opts).await.expect("connects");
            let mut ids = Vec::new();
            let mut errors = Vec::new();
            for i in 0.. {
                match &stop {
                    Some(s) if s.load(Ordering::Relaxed) => break,
                    None if i >= n => break,
                    _ => {}
                }
                match conn
                    .query_drop(format!("INSERT INTO rs_orders (note) VALUES ('{tag}{i}')"))
                    .await
                {
                    Ok(()) => ids.push((tag, conn.last_insert_id().expect("an insert id"))),
                    Err(e) => errors.push(e.to_string()),
                }
            }
            let _ = conn.disconnect().await;
            (ids, errors)
        })
    };
    let mut all: Vec<(&str, u64)> = Vec::new();
    let mut errors: Vec<String> = Vec::new();
    for h in [draw("before", 300, None), draw("before", 300, None)] {
        let (i, e) = rt.block_on(h).unwrap();
        all.extend(i);
        errors.extend(e);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let during = [
        draw("during", 0, Some(stop.clone())),
        draw("during", 0, Some(stop.clone())),
    ];
    proxy
        .admin_query(&format!("RESHARD START '{}'", three_path.display()))
        .unwrap();
    wait_phase(&proxy, &["done"], Duration::from_secs(120));
    stop.store(true, Ordering::Relaxed);
    for h in during {
        let (i, e) = rt.block_on(h).unwrap();
        all.extend(i);
        errors.extend(e);
    }
    for h in [draw("after", 200, None), draw("after", 200, None)] {
        let (i, e) = rt.block_on(h).unwrap();
        all.extend(i);
        errors.extend(e);
    }
    assert!(errors.is_empty(), "client errors: {errors:?}");
    let n_during = all.iter().filter(|(t, _)| *t == "during").count();
    assert!(n_during > 40, "only {n_during} ids drawn during the move");
    let mut ids: Vec<u64> = all.iter().map(|(_, id)| *id).collect();
    ids.sort_unstable();
    let n = ids.len();
    ids.dedup();
    assert_eq!(ids.len(), n, "an id was handed out twice");
    proxy.admin_query("RESHARD CLEANUP").unwrap();
    let mut on_shards: Vec<u64> = Vec::new();
    for sh in ["s1", "s2", "s3"] {
        for r in cluster
            .shard(sh)
            .primary
            .query("SELECT id FROM fund.rs_orders")
        {
            let id: u64 = r[0].parse().unwrap();
            assert_eq!(
                new_ring.shard_for(&KeyValue::from(id as i64)),
                sh,
                "id {id} on {sh}"
            );
            on_shards.push(id);
        }
    }
    on_shards.sort_unstable();
    assert_eq!(on_shards, ids, "every drawn id is one row, on one shard");
    println!("{n} distinct ids ({n_during} during the move)");
}

/// The proxy is SIGKILLed during the catch-up (the change log holds tens of thousands of
/// entries, written by whole-table UPDATEs during the copy, so the catch-up takes several
/// rounds); the restarted proxy resumes at the catch-up from the persisted state and completes
/// the move, with every update on every row present once and on its ring shard. A catch-up
/// round that was applied to the target but whose entries were not yet deleted from the log is
/// applied again after the restart: replaying a change is idempotent (the target row is
/// rewritten from the source's current row), so this must not double any update.
#[test]
fn a_proxy_killed_during_the_catch_up_resumes_there_and_completes_the_move() {
    let rows: u64 = 3000;
    let updates: u64 = 15;
    let cluster = Cluster::start(3, 0);
    let s = |n: &str| cluster.shard(n).primary_addr();
    let cfg = ProxyConfig::default()
        .shard("s1", &s("s1"), &[])
        .shard("s2", &s("s2"), &[])
        .sharded_table("rs_accounts", "id")
        .render();
    let mut proxy = Proxy::start(&cfg);
    proxy
        .cli_query(
            "USE fund; CREATE TABLE rs_accounts (id BIGINT PRIMARY KEY, owner VARCHAR(40), \
             balance DECIMAL(20,2) NOT NULL, note BLOB)",
        )
        .unwrap();
    let values: Vec<String> = (1..=rows)
        .map(|i| format!("({i}, 'o{i}', {})", balance(i, 0)))
        .collect();
    proxy
        .cli_query(&format!(
            "USE fund; INSERT INTO rs_accounts (id, owner, balance) VALUES {}",
            values.join(", ")
        ))
        .unwrap();
    // A slow copy, so the UPDATEs below all land while it runs and are left to the catch-up.
    let dir = tempfile::tempdir().unwrap();
    let three = format!(
        "{}\n[reshard]\nbatch_rows = 25\nbatch_pause_ms = 100\n",
        harness::with_shard(&cfg, "s3", &s("s3"))
    );
    let three_path = dir.path().join("three.toml");
    std::fs::write(&three_path, &three).unwrap();
    let new_ring = Ring::from_config(&Config::load(&three_path).unwrap());
    // Entries in the change logs of the two sources.
    let log_len = || -> u64 {
        ["s1", "s2"]
            .iter()
            .map(|sh| {
                cluster
                    .shard(sh)
                    .primary
                    .query_value("SELECT COUNT(*) FROM shardproxy.reshard_changes")
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0)
            })
            .sum()
    };
    proxy
        .admin_query(&format!("RESHARD START '{}'", three_path.display()))
        .unwrap();
    wait_phase(&proxy, &["copy"], Duration::from_secs(30));
    // Whole-table updates: every row is logged on its source once per statement.
    let update = "UPDATE rs_accounts SET balance = balance + 1; ".repeat(updates as usize);
    proxy
        .cli_query(&format!(
            "USE fund; SET shardproxy_allow_scatter_writes = 1; {update}"
        ))
        .unwrap();
    let status = proxy.admin_query("SHOW RESHARD STATUS").unwrap();
    assert_eq!(
        status[0][0], "copy",
        "the copy ended before the updates did: {status:?}"
    );
    let logged = log_len();
    wait_phase(&proxy, &["catch-up"], Duration::from_secs(120));
    // Killed once the catch-up has applied and forgotten some entries, not all.
    assert!(
        harness::wait_until(Duration::from_secs(60), || log_len() < logged),
        "the catch-up forgot no entry in 60 s"
    );
    let at_kill = proxy.admin_query("SHOW RESHARD STATUS").unwrap();
    proxy.kill();
    assert_eq!(
        at_kill[0][0], "catch-up",
        "killed after the catch-up: {at_kill:?}"
    );
    println!("killed during the catch-up with {logged} change-log entries written: {at_kill:?}");
    let left = log_len();
    println!("{left} entries still in the change log at the kill");
    assert!(
        left > 0,
        "the catch-up had drained the log before the kill: nothing was left to resume"
    );

    let proxy = Proxy::start(&cfg);
    let status = wait_phase(&proxy, &["done"], Duration::from_secs(180));
    assert!(
        harness::wait_until(Duration::from_secs(5), || proxy
            .log()
            .contains("resuming the move interrupted by the restart")),
        "{}",
        proxy.log()
    );
    assert!(
        without_colours(&proxy.log()).contains("resume_at=catch-up"),
        "the restart resumed elsewhere than at the catch-up:\n{}",
        without_colours(&proxy.log())
    );
    println!("resumed at the catch-up: {:?}", status.last().unwrap());
    proxy.admin_query("RESHARD CLEANUP").unwrap();
    // Every row got every update exactly once: balance(i, 0) + updates.
    let acked: Acked = (1..=rows)
        .map(|i| {
            let cents = (i * 7) * 100 + i % 100 + updates * 100;
            (i, Some(format!("{}.{:02}", cents / 100, cents % 100)))
        })
        .collect();
    check_placement(&cluster, &new_ring, &["s1", "s2", "s3"], rows, &acked);
    for sh in ["s1", "s2", "s3"] {
        assert_eq!(triggers(&cluster, sh), "0", "triggers left on {sh}");
    }
}

/// `[reshard] cleanup_after_s` in the target config: the proxy runs `RESHARD CLEANUP` by
/// itself after the cutover. Right after `done` the moved rows are still on their old shards
/// too; a little later, with nobody asking, the phase is `cleaned-up` and every row is on
/// exactly its ring shard. A proxy restarted between the two would count the delay again
/// (docs/configuration.md); this test checks the running proxy's timer.
#[test]
fn cleanup_after_s_deletes_the_moved_rows_by_itself_after_the_cutover() {
    let rows: u64 = 500;
    let cluster = Cluster::start(3, 0);
    let s = |n: &str| cluster.shard(n).primary_addr();
    let cfg = ProxyConfig::default()
        .shard("s1", &s("s1"), &[])
        .shard("s2", &s("s2"), &[])
        .sharded_table("rs_accounts", "id")
        .render();
    let proxy = Proxy::start(&cfg);
    proxy
        .cli_query(
            "USE fund; CREATE TABLE rs_accounts (id BIGINT PRIMARY KEY, owner VARCHAR(40), \
             balance DECIMAL(20,2) NOT NULL, note BLOB)",
        )
        .unwrap();
    let values: Vec<String> = (1..=rows)
        .map(|i| format!("({i}, 'o{i}', {})", balance(i, 0)))
        .collect();
    proxy
        .cli_query(&format!(
            "USE fund; INSERT INTO rs_accounts (id, owner, balance) VALUES {}",
            values.join(", ")
        ))
        .unwrap();
    let before = std::fs::read_to_string(proxy.config_path()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let three = format!(
        "{}\n[reshard]\ncleanup_after_s = 3\n",
        harness::with_shard(&before, "s3", &s("s3"))
    );
    let three_path = dir.path().join("three.toml");
    std::fs::write(&three_path, &three).unwrap();
    let new_ring = Ring::from_config(&Config::load(&three_path).unwrap());
    proxy
        .admin_query(&format!("RESHARD START '{}'", three_path.display()))
        .unwrap();
    wait_phase(&proxy, &["done"], Duration::from_secs(60));
    let on_old: usize = ["s1", "s2"]
        .iter()
        .map(|sh| shard_rows(&cluster, sh).len())
        .sum();
    assert_eq!(
        on_old, rows as usize,
        "right after the cutover the moved rows are still on their old shards"
    );
    let t0 = Instant::now();
    let status = wait_phase(&proxy, &["cleaned-up"], Duration::from_secs(30));
    println!(
        "cleaned up by itself {:.1} s after done was seen: {:?}",
        t0.elapsed().as_secs_f64(),
        status.last().unwrap()
    );
    let acked: Acked = Acked::new();
    check_placement(&cluster, &new_ring, &["s1", "s2", "s3"], rows, &acked);
    assert!(!shard_rows(&cluster, "s3").is_empty(), "no row moved to s3");
    // The proxy's own config file now holds the target's config (the old one kept beside it),
    // so a reload or a restart reads the ring that serves.
    let path = proxy.config_path();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), three);
    let kept = format!("{}.before-reshard", path.display());
    assert_eq!(std::fs::read_to_string(&kept).unwrap(), before);
    proxy.admin_query("RELOAD CONFIG").unwrap();
    let n: usize = proxy
        .cli_query("USE fund; SELECT COUNT(*) FROM rs_accounts")
        .unwrap()[0][0]
        .parse()
        .unwrap();
    assert_eq!(n, rows as usize);
}

/// The log without its ANSI colour sequences (`ESC [ … m`), so field values can be matched.
fn without_colours(log: &str) -> String {
    let mut out = String::with_capacity(log.len());
    let mut chars = log.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The `fund` binary, built beside `shardproxy`.
fn fund_bin() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_BIN_EXE_shardproxy"))
        .parent()
        .unwrap()
        .join("fund")
}

/// `fund <args>` against the proxy, asserting success; its stdout.
fn fund_ok(url: &str, shards: &str, args: &[&str]) -> String {
    let out = std::process::Command::new(fund_bin())
        .args(args)
        .env("FUND_DATABASE_URL", url)
        .env("FUND_SHARDS", shards)
        .output()
        .expect("run fund");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "fund {args:?} failed:\n{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The issue's own scenario: the fund application (its HTTP server and `fund load`, through
/// the proxy with an ordinary driver) keeps running while its five sharded tables move from 2
/// to 3 shards. The load sees no error, `fund check` passes on the 3 shards after the cleanup,
/// and every row of every table is on exactly the shard the new ring names (read directly).
#[test]
fn fund_load_runs_through_a_move_with_no_error_and_fund_check_passes() {
    use std::process::{Command, Stdio};
    let cluster = Cluster::start(3, 0);
    let s = |n: &str| cluster.shard(n).primary_addr();
    let cfg = ProxyConfig::default()
        .shard("s1", &s("s1"), &[])
        .shard("s2", &s("s2"), &[])
        .fund_schema()
        .render();
    let proxy = Proxy::start(&cfg);
    let url = proxy.url();
    fund_ok(&url, "s1,s2", &["init"]);
    fund_ok(
        &url,
        "s1,s2",
        &["seed", "--accounts", "3000", "--date", "2026-06-01"],
    );
    fund_ok(
        &url,
        "s1,s2",
        &["yield", "--date", "2026-06-02", "--per-10k", "0.65"],
    );
    let addr = format!("127.0.0.1:{}", harness::free_port());
    let mut server = Command::new(fund_bin())
        .args(["serve", "--listen", &addr, "--today", "2026-06-03"])
        .env("FUND_DATABASE_URL", &url)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    assert!(
        harness::wait_port(&addr, Duration::from_secs(20)),
        "fund serve did not start"
    );
    let load = Command::new(fund_bin())
        .args([
            "load",
            "--url",
            &format!("http://{addr}"),
            "--accounts",
            "200",
            "--duration",
            "30",
            "--concurrency",
            "8",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(5));
    let before = std::fs::read_to_string(proxy.config_path()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let three = harness::with_shard(&before, "s3", &s("s3"));
    let three_path = dir.path().join("three.toml");
    std::fs::write(&three_path, &three).unwrap();
    let new_ring = Ring::from_config(&Config::load(&three_path).unwrap());
    let t0 = Instant::now();
    proxy
        .admin_query(&format!("RESHARD START '{}'", three_path.display()))
        .unwrap();
    let status = wait_phase(&proxy, &["done"], Duration::from_secs(120));
    println!(
        "fund tables moved 2 -> 3 shards in {:.1} s under fund load: {:?}",
        t0.elapsed().as_secs_f64(),
        status
    );
    let log = without_colours(&proxy.log());
    for line in log
        .lines()
        .filter(|l| l.contains("change-log triggers created") || l.contains("cutover done"))
    {
        println!("{}", line.split_once(": ").map_or(line, |(_, rest)| rest));
    }
    let mut load = load;
    assert!(
        load.try_wait().unwrap().is_none(),
        "the load ended before the cutover: the move must happen under load"
    );
    let out = load.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    println!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success(),
        "fund load saw errors across the move\n{}",
        without_colours(&proxy.log())
    );
    assert!(stdout.contains("p99"), "{stdout}");
    let _ = server.kill();
    let _ = server.wait();
    proxy.admin_query("RESHARD CLEANUP").unwrap();
    wait_phase(&proxy, &["cleaned-up"], Duration::from_secs(60));
    println!("{}", fund_ok(&url, "s1,s2,s3", &["check"]));
    let mut moved = 0;
    for table in [
        "accounts",
        "ledger",
        "requests",
        "income",
        "pending_redemptions",
    ] {
        let mut owner: HashMap<String, String> = HashMap::new();
        for sh in ["s1", "s2", "s3"] {
            let rows = cluster
                .shard(sh)
                .primary
                .query(&format!("SELECT account_id FROM fund.{table}"));
            for r in rows {
                let id: i64 = r[0].parse().unwrap();
                let want = new_ring.shard_for(&KeyValue::from(id));
                assert_eq!(
                    want, sh,
                    "{table}: account {id} is on {sh}, the ring names {want}"
                );
                if let Some(other) = owner.insert(r[0].clone(), sh.to_string()) {
                    assert_eq!(other, sh, "{table}: account {id} on {other} and {sh}");
                }
                if sh == "s3" {
                    moved += 1;
                }
            }
        }
        if ["accounts", "ledger", "requests"].contains(&table) {
            assert!(!owner.is_empty(), "{table} is empty");
        }
    }
    assert!(moved > 0, "no row moved to s3");
    println!("{moved} rows of the fund's tables now on s3");
}
