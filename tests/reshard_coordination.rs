//! Online resharding with several proxies (issue 12 with issue 11's `[coordination]`): two
//! proxies on the same 3-server cluster, 2 shards in their config, in a real etcd. Writers
//! insert through BOTH proxies while a 2 -> 3 move runs, started on one of them (the driver).
//! Every proxy takes part in the cutover (`src/admin/reshard_run/shared_cutover.rs`): after
//! `done`, the other proxy serves the 3-shard ring without a restart (SHOW SHARDS lists s3),
//! rows inserted through it land on the shard the new ring names, every acknowledged row is on
//! its new-ring shard, and neither proxy's clients saw an error. Then the driver is killed
//! (`kill -9`) while it holds a cutover, before its commit point: the other proxy reopens on
//! the old ring by itself, its writers saw no error, and nothing it acknowledged is lost. Each
//! shard is read directly.
//!
//! etcd is required (CI installs `etcd-server`): without the binary the test fails.

mod harness;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use harness::mysql::tcp_opts;
use harness::{wait_until, Cluster, Etcd, Proxy, ProxyConfig};
use mysql_async::prelude::Queryable;
use shardproxy::config::Config;
use shardproxy::ring::{KeyValue, Ring};

/// Writers per proxy.
const WRITERS: u64 = 2;

fn config(cluster: &Cluster, etcd: &Etcd, reshard: &str) -> String {
    let s = |n: &str| cluster.shard(n).primary_addr();
    ProxyConfig::default()
        .shard("s1", &s("s1"), &[])
        .shard("s2", &s("s2"), &[])
        .sharded_table("rc_w", "id")
        .extra(&format!(
            "[reshard]\ncutover_timeout_ms = 3000\n{reshard}\n\
             [coordination]\netcd = [{:?}]\ncluster = \"rc\"\nlease_ttl_s = 3\n",
            etcd.endpoint()
        ))
        .render()
}

/// What the writers saw: acknowledged ids (with the proxy) and errors.
#[derive(Default)]
struct Record {
    acked: Vec<(usize, u64)>,
    errors: Vec<(usize, String)>,
    /// The slowest acknowledged insert (ms): how long a hold kept a writer waiting.
    worst_ms: u128,
}

/// `WRITERS` writers per proxy, each inserting rows with its own ids (`base` + proxy and
/// writer + a counter).
fn start_load(
    proxies: &[&Proxy],
    base: u64,
    record: Arc<Mutex<Record>>,
    stop: Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    for (pi, p) in proxies.iter().enumerate() {
        for w in 0..WRITERS {
            let first = base + (pi as u64 * 10 + w + 1) * 1_000_000;
            let (record, stop) = (record.clone(), stop.clone());
            let opts = tcp_opts(p.port(), "app", "app").db_name(Some("fund"));
            tasks.push(tokio::spawn(async move {
                let mut conn: Option<mysql_async::Conn> = None;
                let mut id = first;
                while !stop.load(Ordering::Relaxed) {
                    let Some(c) = conn.as_mut() else {
                        match mysql_async::Conn::new(opts.clone()).await {
                            Ok(c) => conn = Some(c),
                            Err(e) => {
                                record
                                    .lock()
                                    .unwrap()
                                    .errors
                                    .push((pi, format!("connect: {e}")));
                                tokio::time::sleep(Duration::from_millis(100)).await;
                            }
                        }
                        continue;
                    };
                    id += 1;
                    let sql = format!("INSERT INTO rc_w (id, via) VALUES ({id}, {pi})");
                    let started = Instant::now();
                    let r = c.query_drop(sql).await;
                    let failed = r.is_err();
                    {
                        let mut rec = record.lock().unwrap();
                        rec.worst_ms = rec.worst_ms.max(started.elapsed().as_millis());
                        match r {
                            Ok(()) => rec.acked.push((pi, id)),
                            Err(e) => rec.errors.push((pi, format!("insert {id}: {e}"))),
                        }
                    }
                    if failed {
                        // A dead proxy: do not spin (the runtime could not stop this task).
                        conn = None;
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }));
        }
    }
    tasks
}

fn shard_ids(cluster: &Cluster, shard: &str) -> std::collections::HashSet<u64> {
    cluster
        .shard(shard)
        .primary
        .query("SELECT id FROM fund.rc_w")
        .into_iter()
        .map(|r| r[0].parse().unwrap())
        .collect()
}

/// Two proxies on `cluster` (2 of its 3 shards in their config), both live in etcd; the
/// table `rc_w` with 3000 rows; the 3-shard config written beside the first one's.
fn setup(cluster: &Cluster, etcd: &Etcd, reshard: &str) -> (Proxy, Proxy, std::path::PathBuf) {
    let a = Proxy::start(&config(cluster, etcd, reshard));
    let b = Proxy::start(&config(cluster, etcd, reshard));
    // Both live (each has its lease and its acked key) before the move.
    assert!(
        wait_until(Duration::from_secs(10), || etcd
            .get_prefix("/shardproxy/rc/acked/")
            .len()
            == 2),
        "{:?}",
        etcd.get_prefix("/shardproxy/rc/acked/")
    );
    a.cli_query("USE fund; CREATE TABLE rc_w (id BIGINT PRIMARY KEY, via INT)")
        .unwrap();
    let values: Vec<String> = (1..=3000).map(|i| format!("({i}, 9)")).collect();
    a.cli_query(&format!(
        "USE fund; INSERT INTO rc_w (id, via) VALUES {}",
        values.join(", ")
    ))
    .unwrap();
    let running = std::fs::read_to_string(a.config_path()).unwrap();
    let three = harness::with_shard(&running, "s3", &cluster.shard("s3").primary_addr());
    assert_ne!(three, running);
    let three_path = a.config_path().with_extension("three.toml");
    std::fs::write(&three_path, &three).unwrap();
    assert_eq!(shards_of(&b), ["s1", "s2"]);
    (a, b, three_path)
}

fn phase(p: &Proxy) -> String {
    p.admin_query("SHOW RESHARD STATUS")
        .ok()
        .and_then(|r| r.first().map(|r| r[0].clone()))
        .unwrap_or_default()
}

fn shards_of(p: &Proxy) -> Vec<String> {
    p.admin_query("SHOW SHARDS")
        .unwrap()
        .into_iter()
        .map(|r| r[0].clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_proxies_switch_together_at_the_cutover_of_a_move_started_on_one() {
    let etcd = Etcd::start();
    let cluster = Cluster::start(3, 0);
    let (a, b, three_path) =
        tokio::task::block_in_place(|| setup(&cluster, &etcd, "batch_rows = 500"));
    let new_ring = Ring::from_config(&Config::load(&three_path).unwrap());

    let record = Arc::new(Mutex::new(Record::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let load = start_load(&[&a, &b], 0, record.clone(), stop.clone());
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let out = a
        .admin_query(&format!("RESHARD START '{}'", three_path.display()))
        .unwrap();
    assert!(out[0][0].contains("started"), "{out:?}");
    let t0 = Instant::now();
    let ended = tokio::task::block_in_place(|| {
        wait_until(Duration::from_secs(120), || {
            ["done", "stopped"].contains(&phase(&a).as_str())
        })
    });
    assert!(
        ended && phase(&a) == "done",
        "not done: {:?}\n{}",
        a.admin_query("SHOW RESHARD STATUS"),
        a.log()
    );
    // The other proxy serves the 3-shard ring without a restart, at once.
    assert_eq!(shards_of(&b), ["s1", "s2", "s3"], "{}", b.log());
    tokio::time::sleep(Duration::from_millis(700)).await;
    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.await.unwrap();
    }
    let rec = std::mem::take(&mut *record.lock().unwrap());
    let status = a.admin_query("SHOW RESHARD STATUS").unwrap();
    let per_proxy = |pi: usize| rec.acked.iter().filter(|(p, _)| *p == pi).count();
    println!(
        "shared cutover 2 -> 3 in {:?}: acknowledged inserts via a {}, via b {}, errors {}; {}",
        t0.elapsed(),
        per_proxy(0),
        per_proxy(1),
        rec.errors.len(),
        status.last().unwrap()[11]
    );
    assert!(rec.errors.is_empty(), "client errors: {:?}", rec.errors);
    assert!(per_proxy(0) > 20 && per_proxy(1) > 20, "hardly any writes");
    assert!(
        b.log().contains("shared cutover done, the new ring serves"),
        "{}",
        b.log()
    );

    // Rows inserted through the OTHER proxy now land on the shard the new ring names (and not
    // on the old ring's).
    let ids: Vec<u64> = (90_000_001..=90_000_200).collect();
    for id in &ids {
        b.cli_query(&format!(
            "USE fund; INSERT INTO rc_w (id, via) VALUES ({id}, 1)"
        ))
        .unwrap();
    }
    let on: Vec<_> = ["s1", "s2", "s3"]
        .iter()
        .map(|s| (s.to_string(), shard_ids(&cluster, s)))
        .collect();
    let mut on_s3 = 0;
    for id in &ids {
        let want = new_ring.shard_for(&KeyValue::from(*id as i64));
        for (s, have) in &on {
            assert_eq!(
                have.contains(id),
                *s == want,
                "row {id} inserted through b after the cutover: on {s} = {}, the new ring names {want}",
                have.contains(id)
            );
        }
        on_s3 += usize::from(want == "s3");
    }
    assert!(
        on_s3 > 20,
        "the new ring sends only {on_s3} of 200 rows to s3"
    );
    // Every acknowledged insert (through either proxy, before, during and after the cutover)
    // is on the shard the new ring names: none was written on the old ring after the switch.
    for (pi, id) in &rec.acked {
        let want = new_ring.shard_for(&KeyValue::from(*id as i64));
        let have = &on.iter().find(|(s, _)| *s == want).unwrap().1;
        assert!(
            have.contains(id),
            "row {id} (via proxy {pi}) is not on {want}"
        );
    }
    // And they read back through both proxies, once the moved rows' old copies are deleted.
    let out = a.admin_query("RESHARD CLEANUP").unwrap();
    assert!(out[0][0].contains("deleted"), "{out:?}");
    for p in [&a, &b] {
        let n: usize = p
            .cli_query("USE fund; SELECT COUNT(*) FROM rc_w WHERE id >= 1000000")
            .unwrap()[0][0]
            .parse()
            .unwrap();
        assert_eq!(n, rec.acked.len() + ids.len());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_driver_killed_during_the_hold_the_other_proxy_reopens_on_the_old_ring() {
    let etcd = Etcd::start();
    let cluster = Cluster::start(3, 0);
    // A slow copy: there is time to open a transaction on the driver before its cutover.
    let (mut a, b, three_path) = tokio::task::block_in_place(|| {
        setup(&cluster, &etcd, "batch_rows = 100\nbatch_pause_ms = 100")
    });
    let old_ring = Ring::from_config(&Config::load(&a.config_path()).unwrap());
    let record = Arc::new(Mutex::new(Record::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let load = start_load(&[&b], 0, record.clone(), stop.clone());
    tokio::time::sleep(Duration::from_millis(500)).await;
    a.admin_query(&format!("RESHARD START '{}'", three_path.display()))
        .unwrap();
    let copying =
        tokio::task::block_in_place(|| wait_until(Duration::from_secs(30), || phase(&a) == "copy"));
    assert!(copying, "{:?}", a.admin_query("SHOW RESHARD STATUS"));
    // A transaction left open through the driver: its own wait for quiet holds its cutover
    // (after the other proxy acknowledged) short of the commit.
    let opts = tcp_opts(a.port(), "app", "app").db_name(Some("fund"));
    let mut txn = mysql_async::Conn::new(opts).await.unwrap();
    txn.query_drop("BEGIN").await.unwrap();
    txn.query_drop("INSERT INTO rc_w (id, via) VALUES (80000001, 0)")
        .await
        .unwrap();
    let held = tokio::task::block_in_place(|| {
        wait_until(Duration::from_secs(60), || {
            let cut = etcd
                .get("/shardproxy/rc/reshard/cutover")
                .unwrap_or_default();
            cut.contains("\"phase\":\"hold\"")
                && etcd
                    .get_prefix("/shardproxy/rc/reshard/held/")
                    .iter()
                    .any(|(_, id)| cut.contains(&format!("\"id\":\"{id}\"")))
        })
    });
    assert!(
        held,
        "no acknowledged hold: {:?} {:?}\n{}",
        etcd.get("/shardproxy/rc/reshard/cutover"),
        etcd.get_prefix("/shardproxy/rc/reshard/held/"),
        a.log()
    );
    a.kill();
    let killed = Instant::now();
    let reopened = tokio::task::block_in_place(|| {
        wait_until(Duration::from_secs(15), || {
            b.log()
                .contains("shared cutover abandoned, the old ring serves")
        })
    });
    let took = killed.elapsed();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.await.unwrap();
    }
    drop(txn);
    assert!(reopened, "the other proxy did not reopen:\n{}", b.log());
    let rec = std::mem::take(&mut *record.lock().unwrap());
    let log = b.log();
    let why = log
        .lines()
        .find(|l| l.contains("shared cutover abandoned"))
        .and_then(|l| l.split("serves: ").nth(1))
        .and_then(|w| w.split('\u{1b}').next())
        .unwrap_or_default()
        .to_string();
    println!(
        "driver killed while holding the cutover: the other proxy reopened on the old ring {took:?} after the kill ({why}); {} inserts acknowledged through it, {} errors, slowest {} ms",
        rec.acked.len(),
        rec.errors.len(),
        rec.worst_ms
    );
    assert!(rec.errors.is_empty(), "client errors: {:?}", rec.errors);
    // Its writers were held (its gate closed for the hold), then went on.
    assert!(
        rec.worst_ms >= 1000,
        "the other proxy did not hold: {} ms",
        rec.worst_ms
    );
    assert!(rec.acked.len() > 20, "hardly any writes");
    assert_eq!(shards_of(&b), ["s1", "s2"], "{}", b.log());
    // The commit point was not reached.
    let state = cluster
        .shard("s1")
        .primary
        .query_value("SELECT state FROM shardproxy.reshard WHERE id = 1")
        .unwrap_or_default();
    assert!(!state.contains("\"phase\":\"done\""), "{state}");
    // And it cannot be any more: the other proxy fenced this cutover on the default shard
    // before it reopened (the driver's save of `done` is conditional on no fence).
    assert!(state.contains("fenced"), "{state}");
    // Nothing acknowledged through the other proxy is lost: each row on its old-ring shard,
    // and the rows inserted after it reopened too.
    let on: Vec<_> = ["s1", "s2"]
        .iter()
        .map(|s| (s.to_string(), shard_ids(&cluster, s)))
        .collect();
    for (_, id) in &rec.acked {
        let want = old_ring.shard_for(&KeyValue::from(*id as i64));
        let have = &on.iter().find(|(s, _)| *s == want).unwrap().1;
        assert!(have.contains(id), "row {id} is not on {want}");
    }
    let n: usize = b
        .cli_query("USE fund; SELECT COUNT(*) FROM rc_w WHERE id >= 1000000")
        .unwrap()[0][0]
        .parse()
        .unwrap();
    assert_eq!(n, rec.acked.len(), "rows through the old ring");
}
