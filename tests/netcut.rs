//! A statement the proxy gave up on during a network cut must not run on the server once the
//! network heals. The primary runs in a network namespace (`harness::Netns`); the network is
//! cut, an INSERT is sent through the proxy at once (before any health check notices), the
//! proxy answers `ERROR 1159` after `query_timeout_ms` and drops that backend connection, and
//! the network heals. The INSERT's packets were dropped on the way, so the kernel still holds
//! them: closed with a FIN, the socket keeps retransmitting its unacknowledged data, and after
//! the heal the server would receive the INSERT and commit it, a write the client was told had
//! failed, on a server that may have been fenced meanwhile (a transaction of its own that keeps
//! it from rejoining, or one that breaks its replication if it rejoined first). The proxy's
//! backend sockets close with a reset (`SO_LINGER` 0, `backend::conn`), which discards that
//! data. Failover is off here, so nothing but the dropped connection decides the outcome.
//! Without root or `ip`/`tc` the test prints why and returns.

mod harness;

use std::time::{Duration, Instant};

use harness::mysql::tcp_opts;
use harness::{Cluster, Netns, Proxy, ProxyConfig};
use mysql_async::prelude::Queryable;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_timed_out_during_a_cut_does_not_run_after_the_heal() {
    if let Some(why) = Netns::unavailable() {
        println!("network cut test not run: network namespaces unavailable here: {why}");
        return;
    }
    let mut cluster = Cluster::start_with_netns(1, 0, &["s1"]);
    let cfg = ProxyConfig::for_cluster(&cluster)
        .sharded_table("nc_t", "id")
        .backend("health_interval_ms = 200")
        .backend("health_timeout_ms = 400")
        .backend("query_timeout_ms = 1000")
        .extra("[failover]\nenabled = false\n")
        .render();
    let proxy = Proxy::start(&cfg);
    proxy
        .cli_query("USE fund; CREATE TABLE nc_t (id BIGINT PRIMARY KEY)")
        .unwrap();
    proxy
        .cli_query("USE fund; INSERT INTO nc_t (id) VALUES (1)")
        .unwrap();

    // Connected (and its backend connection used once) before the cut, so that only the
    // INSERT meets it.
    let mut conn =
        mysql_async::Conn::new(tcp_opts(proxy.port(), "app", "app").db_name(Some("fund")))
            .await
            .unwrap();
    conn.query_drop("INSERT INTO nc_t (id) VALUES (10)")
        .await
        .unwrap();

    cluster.shards[0].primary.netns_mut().unwrap().cut();
    let t0 = Instant::now();
    let r = conn.query_drop("INSERT INTO nc_t (id) VALUES (2)").await;
    let failed_after = t0.elapsed();
    assert!(r.is_err(), "the INSERT succeeded during the cut: {r:?}");
    cluster.shards[0].primary.netns_mut().unwrap().heal();
    let healed_after = t0.elapsed();

    // TCP retransmits with a doubling timeout (0.2 s, 0.4 s, ... from the first send): 10 s
    // after the heal covers several retries.
    let primary = &cluster.shards[0].primary;
    let mut seen = None;
    while t0.elapsed() < healed_after + Duration::from_secs(10) {
        if primary.query_value("SELECT COUNT(*) FROM fund.nc_t WHERE id = 2") == Some("1".into()) {
            seen = Some(t0.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    println!(
        "INSERT during the cut: failed after {failed_after:?} ({}); healed at +{healed_after:?}; \
         committed on the server after the heal: {}",
        r.unwrap_err(),
        seen.map_or("no (10 s watched)".to_string(), |t| format!(
            "yes, at +{t:?}"
        ))
    );
    assert_eq!(
        seen, None,
        "a statement the client saw fail was committed after the heal"
    );
    // The server and the proxy work again.
    assert!(harness::wait_until(Duration::from_secs(10), || proxy
        .cli_query("USE fund; INSERT INTO nc_t (id) VALUES (3)")
        .is_ok()));
}
