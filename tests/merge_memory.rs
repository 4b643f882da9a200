//! Memory of streamed scatter reads (issue 15, "Streaming and memory"): a scattered
//! `SELECT … ORDER BY key` (and the same without ORDER BY) over many rows on two shards, read
//! by a client that pauses as it reads, while the proxy's resident memory (VmRSS in
//! /proc/PID/status) is sampled every 20 ms. The peak must stay within 64 MiB of the idle
//! figure whatever the row count: the proxy holds one row per shard and its socket buffers,
//! not the result. The figures are printed.
//!
//! `make test` runs the 200,000-row version; `make memtest` runs the ignored 1,000,000-row one,
//! which also measures a DISTINCT over the same rows (merged in memory, as every scatter read
//! was before streaming) for comparison.

mod harness;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use harness::mysql::connect;
use harness::{Cluster, Proxy, ProxyConfig};
use mysql_async::prelude::*;

/// The bound the issue sets: 64 MiB above idle.
const BOUND_KIB: u64 = 64 * 1024;

/// VmRSS of process `pid`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Samples the peak VmRSS of `pid` until stopped.
struct Sampler {
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sampler {
    fn start(pid: u32) -> Sampler {
        let peak = Arc::new(AtomicU64::new(rss_kib(pid)));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (peak.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                p.fetch_max(rss_kib(pid), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        Sampler {
            peak,
            stop,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        self.peak.load(Ordering::Relaxed)
    }
}

/// Reads `sql` through the proxy, pausing 20 ms every 20,000 rows (a slow client); returns the
/// row count, whether the first column came in ascending order, and the peak VmRSS.
async fn read_slowly(proxy: &Proxy, sql: &str) -> (u64, bool, u64, Duration) {
    let pid = proxy.pid().expect("proxy runs");
    let mut c = connect(&proxy.url()).await;
    let sampler = Sampler::start(pid);
    let t = Instant::now();
    let mut result = c.query_iter(sql).await.unwrap();
    let (mut n, mut ascending, mut last) = (0u64, true, i64::MIN);
    while let Some(row) = result.next().await.unwrap() {
        let id: i64 = row.get(0).unwrap();
        ascending &= id > last;
        last = id;
        n += 1;
        if n % 20_000 == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    drop(result);
    let took = t.elapsed();
    (n, ascending, sampler.finish(), took)
}

/// Two shards, `rows` rows (odd ids on s1, even on s2), the proxy; returns the idle VmRSS.
fn setup(rows: u64, extra: &str) -> (Cluster, Proxy, u64) {
    let cluster = Cluster::start(2, 0);
    let proxy = Proxy::start(
        &ProxyConfig::for_cluster(&cluster)
            .sharded_table("mem_rows", "id")
            .extra(extra)
            .render(),
    );
    let t = Instant::now();
    std::thread::scope(|s| {
        for (i, shard) in cluster.shards.iter().enumerate() {
            s.spawn(move || {
                shard.primary.exec(
                    "CREATE TABLE fund.mem_rows (id BIGINT PRIMARY KEY, name VARCHAR(40), \
                     shares DECIMAL(20,4), day DATE)",
                );
                shard.primary.exec(&format!(
                    "INSERT INTO fund.mem_rows SELECT seq, CONCAT('account-', seq), seq / 7, \
                     DATE('2026-01-01') + INTERVAL (seq MOD 365) DAY FROM fund.seq_1_to_{rows} \
                     WHERE seq MOD 2 = {}",
                    (i + 1) % 2
                ));
            });
        }
    });
    println!("loaded {rows} rows on 2 shards in {:?}", t.elapsed());
    let idle = rss_kib(proxy.pid().unwrap());
    (cluster, proxy, idle)
}

async fn check_streaming(rows: u64) {
    let (_cluster, proxy, idle) = setup(rows, "");
    for (what, sql, ordered) in [
        (
            "ORDER BY id",
            "SELECT id, name, shares, day FROM mem_rows ORDER BY id",
            true,
        ),
        (
            "no ORDER BY",
            "SELECT id, name, shares, day FROM mem_rows",
            false,
        ),
    ] {
        let (n, ascending, peak, took) = read_slowly(&proxy, sql).await;
        let grew = peak.saturating_sub(idle);
        println!(
            "{rows} rows, {what}: idle VmRSS {} KiB, peak {} KiB, +{} KiB ({:.1} MiB), read in {took:?}",
            idle,
            peak,
            grew,
            grew as f64 / 1024.0
        );
        assert_eq!(n, rows, "{what}: every row arrives");
        if ordered {
            assert!(ascending, "{what}: rows in key order");
        }
        assert!(
            grew < BOUND_KIB,
            "{what}: the proxy grew by {grew} KiB, more than {BOUND_KIB} KiB"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scattered_order_by_over_200k_rows_streams_in_bounded_memory() {
    check_streaming(200_000).await;
}

/// `make memtest`: a million rows, and for comparison the same rows merged in memory (a
/// DISTINCT, which the proxy merges after reading every shard row, as it merged every scatter
/// read before streaming).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "loads a million rows; run by `make memtest`"]
async fn a_scattered_order_by_over_a_million_rows_streams_in_bounded_memory() {
    check_streaming(1_000_000).await;
    let (_cluster, proxy, idle) = setup(1_000_000, "[merge]\nmax_groups = 2000000");
    let (n, _, peak, took) = read_slowly(
        &proxy,
        "SELECT DISTINCT id, name, shares, day FROM mem_rows ORDER BY id",
    )
    .await;
    assert_eq!(n, 1_000_000);
    println!(
        "1000000 rows, DISTINCT (merged in memory): idle VmRSS {idle} KiB, peak {peak} KiB, +{:.1} MiB, read in {took:?}",
        peak.saturating_sub(idle) as f64 / 1024.0
    );
}
