//! Many proxies, one decision (issue 11): two proxies on the same config with
//! `[coordination]` in a real etcd, one shard with a primary and two semi-sync replicas
//! (real mariadbd). The primary is killed (`kill -9`) under a write load through BOTH proxies
//! that records every acknowledged insert. Afterwards exactly one promotion happened (counted
//! in `SHOW FAILOVERS` of both proxies and on the servers: one replica became writable, the
//! other follows it), both proxies route writes to that same new primary, the topology in etcd
//! names it, and every acknowledged write is on it exactly once (each proxy published its
//! acknowledged GTIDs to etcd, the leader checked the replicas against all). Then the leading proxy is
//! killed: the other takes the lease over once it expires. Last, etcd is killed and then the
//! new primary: nothing is promoted without the lease, and the last replica is once etcd is
//! back.
//!
//! etcd is required (CI installs `etcd-server`): without the binary the test fails.

mod harness;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use harness::mysql::tcp_opts;
use harness::{wait_until, Cluster, Etcd, Proxy, ProxyConfig};
use mysql_async::prelude::Queryable;

/// Writers per proxy.
const WRITERS: u64 = 2;

/// The lease TTL of the test (seconds): a dead leader blocks failovers for this long.
const TTL_S: u64 = 3;

fn config(cluster: &Cluster, etcd: &Etcd, state_file: &str) -> String {
    ProxyConfig::for_cluster(cluster)
        .sharded_table("co_w", "id")
        .backend("health_interval_ms = 200")
        .backend("health_timeout_ms = 400")
        .backend("health_fail_after = 2")
        .backend("connect_timeout_ms = 500")
        .backend("query_timeout_ms = 2000")
        .extra(&format!(
            "[failover]\nafter_ms = 500\nbuffer_ms = 10000\ncatchup_ms = 2000\nstate_file = {state_file:?}\n\
             [replication]\nuser = \"repl\"\npassword = \"repl\"\n\
             [coordination]\netcd = [{:?}]\ncluster = \"t\"\nlease_ttl_s = {TTL_S}\n",
            etcd.endpoint()
        ))
        .render()
}

/// What the writers saw: (proxy index, key, seq, when acknowledged) and errors.
#[derive(Default)]
struct Record {
    acked: Vec<(usize, u64, u64, Instant)>,
    errors: Vec<(usize, Instant, String)>,
}

struct Load {
    record: Arc<Mutex<Record>>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// `WRITERS` writers per proxy, each inserting `(key, seq)` rows with its own key.
fn start_load(proxies: &[&Proxy]) -> Load {
    let record = Arc::new(Mutex::new(Record::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for (pi, p) in proxies.iter().enumerate() {
        for w in 0..WRITERS {
            let key = pi as u64 * 100 + w + 1;
            let (record, stop) = (record.clone(), stop.clone());
            let opts = tcp_opts(p.port(), "app", "app").db_name(Some("fund"));
            tasks.push(tokio::spawn(async move {
                let mut conn: Option<mysql_async::Conn> = None;
                let mut seq = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    if conn.is_none() {
                        match mysql_async::Conn::new(opts.clone()).await {
                            Ok(c) => conn = Some(c),
                            Err(e) => {
                                record.lock().unwrap().errors.push((
                                    pi,
                                    Instant::now(),
                                    format!("connect: {e}"),
                                ));
                                tokio::time::sleep(Duration::from_millis(50)).await;
                                continue;
                            }
                        }
                    }
                    seq += 1;
                    let sql = format!("INSERT INTO co_w (id, seq) VALUES ({key}, {seq})");
                    let r = conn.as_mut().unwrap().query_drop(sql).await;
                    let mut rec = record.lock().unwrap();
                    match r {
                        Ok(()) => rec.acked.push((pi, key, seq, Instant::now())),
                        Err(e) => {
                            rec.errors.push((pi, Instant::now(), e.to_string()));
                            conn = None;
                        }
                    }
                }
            }));
        }
    }
    Load {
        record,
        stop,
        tasks,
    }
}

impl Load {
    async fn finish(self) -> Record {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            t.await.unwrap();
        }
        Arc::try_unwrap(self.record)
            .ok()
            .unwrap()
            .into_inner()
            .unwrap()
    }
}

fn primary_of(proxy: &Proxy) -> String {
    let rows = proxy.admin_query("SHOW SHARDS").unwrap();
    rows.iter().find(|r| r[0] == "s1").unwrap()[1].clone()
}

/// `SHOW FAILOVERS` rows whose outcome (last column) starts with `what`.
fn failovers(proxy: &Proxy, what: &str) -> Vec<Vec<String>> {
    proxy
        .admin_query("SHOW FAILOVERS")
        .unwrap()
        .into_iter()
        .filter(|r| r.last().is_some_and(|o| o.starts_with(what)))
        .collect()
}

/// Which proxies say, in their log, that they took the lease (and did not give it up).
fn leaders(proxies: &[&Proxy]) -> Vec<usize> {
    proxies
        .iter()
        .enumerate()
        .filter(|(_, p)| {
            let log = p.log();
            let took = log.rfind("now decides failovers");
            let lost = log.rfind("no longer decides failovers");
            took.is_some() && took > lost
        })
        .map(|(i, _)| i)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_proxies_kill9_of_the_primary_one_promotion_both_follow_no_acked_write_lost() {
    let etcd = Etcd::start();
    let mut cluster = Cluster::start(1, 2);
    let dir = tempfile::tempdir().unwrap();
    let state = |i: usize| dir.path().join(format!("topology-{i}.json"));
    let a = Proxy::start(&config(&cluster, &etcd, state(0).to_str().unwrap()));
    let b = Proxy::start(&config(&cluster, &etcd, state(1).to_str().unwrap()));
    let proxies = [&a, &b];
    assert!(
        wait_until(Duration::from_secs(10), || leaders(&proxies).len() == 1),
        "not exactly one leader: {:?}\n--- a\n{}\n--- b\n{}",
        leaders(&proxies),
        a.log(),
        b.log()
    );
    let leader = leaders(&proxies)[0];
    // A follower refuses to decide by hand, naming the leader.
    for cmd in ["FAILOVER s1", "SWITCHOVER s1"] {
        let err = proxies[1 - leader].admin_query(cmd).unwrap_err();
        assert!(
            err.contains("does not hold the coordination lease") && err.contains("the leader is"),
            "{cmd}: {err}"
        );
    }
    a.cli_query("USE fund; CREATE TABLE co_w (id BIGINT, seq BIGINT, PRIMARY KEY (id, seq))")
        .unwrap();
    let old = cluster.shards[0].primary_addr();
    assert_eq!(primary_of(&a), old);
    assert_eq!(primary_of(&b), old);

    let load = start_load(&proxies);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // Each proxy published what it acknowledged; the leader merges them before choosing.
    assert!(
        tokio::task::block_in_place(|| wait_until(Duration::from_secs(5), || {
            let acked = etcd.get_prefix("/shardproxy/t/acked/");
            acked.len() == 2 && acked.iter().all(|(_, v)| v.contains("\"s1\":\"0-"))
        })),
        "acknowledged positions in etcd: {:?}",
        etcd.get_prefix("/shardproxy/t/acked/")
    );
    let t0 = Instant::now();
    cluster.shards[0].primary.kill();
    // Both proxies name the same new primary.
    let both = tokio::task::block_in_place(|| {
        wait_until(Duration::from_secs(20), || {
            let (pa, pb) = (primary_of(&a), primary_of(&b));
            pa != old && pa == pb
        })
    });
    let switched = t0.elapsed();
    assert!(
        both,
        "the proxies do not agree on a new primary: a {} b {}\n--- a\n{}\n--- b\n{}",
        primary_of(&a),
        primary_of(&b),
        a.log(),
        b.log()
    );
    let new = primary_of(&a);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let rec = load.finish().await;

    // Exactly one promotion, by the leader; the other proxy followed it.
    let promoted: Vec<_> = proxies.iter().map(|p| failovers(p, "promoted")).collect();
    let followed: Vec<_> = proxies.iter().map(|p| failovers(p, "followed")).collect();
    println!(
        "kill -9 of {old}: both proxies on {new} after {switched:?}; promotions a {} b {}, followed a {} b {}; acknowledged writes {}; client errors {}",
        promoted[0].len(),
        promoted[1].len(),
        followed[0].len(),
        followed[1].len(),
        rec.acked.len(),
        rec.errors.len()
    );
    for e in rec.errors.iter().take(10) {
        println!(
            "  proxy {} error at +{:?}: {}",
            e.0,
            e.1.saturating_duration_since(t0),
            e.2
        );
    }
    assert_eq!(
        promoted[leader].len(),
        1,
        "{promoted:?}\n--- leader log\n{}",
        proxies[leader].log()
    );
    assert_eq!(promoted[1 - leader].len(), 0, "{promoted:?}");
    assert_eq!(followed[1 - leader].len(), 1, "{followed:?}");
    assert_eq!(followed[leader].len(), 0, "{followed:?}");
    // The follower tried nothing itself.
    assert!(
        failovers(proxies[1 - leader], "").len() == 1,
        "{:?}",
        proxies[1 - leader].admin_query("SHOW FAILOVERS")
    );

    // On the servers: one replica became the writable primary, the other follows it.
    let shard = &cluster.shards[0];
    let writable: Vec<String> = shard
        .replicas
        .iter()
        .filter(|r| r.query_value("SELECT @@read_only").as_deref() == Some("0"))
        .map(|r| r.addr())
        .collect();
    assert_eq!(writable, vec![new.clone()], "writable replicas");
    let new_server = shard.replicas.iter().find(|r| r.addr() == new).unwrap();
    assert!(
        new_server.slave_status().is_empty(),
        "{:?}",
        new_server.slave_status()
    );
    let other = shard.replicas.iter().find(|r| r.addr() != new).unwrap();
    let new_port = new.rsplit(':').next().unwrap().to_string();
    assert!(
        wait_until(Duration::from_secs(10), || other
            .slave_field("Master_Port")
            .as_deref()
            == Some(new_port.as_str())),
        "other replica not repointed: {:?}",
        other.slave_status()
    );
    // The topology in etcd names it; so does each proxy's state file.
    let shared = etcd
        .get("/shardproxy/t/topology")
        .expect("no topology in etcd");
    assert!(shared.contains(&new), "{shared}");
    for i in 0..2 {
        let text = std::fs::read_to_string(state(i)).unwrap();
        assert!(text.contains(&new), "state file {i}: {text}");
    }

    // Writes went on through both proxies after the switch, and none acknowledged is lost.
    for pi in 0..2 {
        assert!(
            rec.acked.iter().any(|a| a.0 == pi && a.3 > t0 + switched),
            "no write acknowledged through proxy {pi} after the switch"
        );
    }
    let rows = new_server.query("SELECT id, seq, COUNT(*) FROM fund.co_w GROUP BY id, seq");
    let have: HashMap<(u64, u64), u64> = rows
        .iter()
        .map(|r| {
            (
                (r[0].parse().unwrap(), r[1].parse().unwrap()),
                r[2].parse().unwrap(),
            )
        })
        .collect();
    for (pi, k, seq, _) in &rec.acked {
        assert_eq!(
            have.get(&(*k, *seq)),
            Some(&1),
            "write {k}/{seq} acknowledged through proxy {pi} not exactly once on {new}"
        );
    }

    // The leader dies: the other proxy takes the lease once it expires.
    let (mut a, mut b) = (a, b);
    let t_kill = Instant::now();
    if leader == 0 {
        a.kill();
    } else {
        b.kill();
    }
    let survivor = if leader == 0 { &b } else { &a };
    assert!(
        wait_until(Duration::from_secs(TTL_S + 10), || leaders(&[survivor])
            == [0]),
        "the surviving proxy did not take the lease\n{}",
        survivor.log()
    );
    let took = t_kill.elapsed();
    println!("leader proxy killed: the other took the lease after {took:?} (TTL {TTL_S} s)");
    assert!(
        took >= Duration::from_secs(TTL_S) - Duration::from_millis(1500),
        "took the lease after {took:?}, before the dead leader's lease could expire"
    );
    assert!(etcd
        .get("/shardproxy/t/leader")
        .is_some_and(|l| survivor.log().contains(&l)));

    // etcd dies: no automatic promotion without the lease. The new primary dies meanwhile:
    // nothing is promoted until etcd is back, then the lease holder promotes the last replica.
    let mut etcd = etcd;
    etcd.kill();
    let (s, t) = (survivor, std::time::Duration::from_secs(TTL_S));
    assert!(
        wait_until(t + Duration::from_secs(5), || s
            .log()
            .contains("not deciding failovers until it is back")),
        "the proxy did not notice etcd is gone\n{}",
        s.log()
    );
    cluster.shards[0]
        .replicas
        .iter_mut()
        .find(|r| r.addr() == new)
        .unwrap()
        .kill();
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        failovers(s, "promoted").len(),
        0,
        "{:?}",
        s.admin_query("SHOW FAILOVERS")
    );
    assert_eq!(primary_of(s), new, "promoted without the lease");
    let last = cluster.shards[0]
        .replicas
        .iter()
        .find(|r| r.addr() != new)
        .unwrap();
    assert_eq!(last.query_value("SELECT @@read_only").as_deref(), Some("1"));
    let t_back = Instant::now();
    etcd.restart();
    let last_addr = last.addr();
    assert!(
        tokio::task::block_in_place(
            || wait_until(t + Duration::from_secs(15), || primary_of(s) == last_addr)
        ),
        "no promotion after etcd came back\n{:?}\n{}",
        s.admin_query("SHOW FAILOVERS"),
        s.log()
    );
    println!(
        "etcd down: no promotion for 4 s with the primary dead; etcd back: {last_addr} promoted after {:?}",
        t_back.elapsed()
    );
    assert_eq!(failovers(s, "promoted").len(), 1);
    assert_eq!(last.query_value("SELECT @@read_only").as_deref(), Some("0"));
}
