//! The text plan cache end to end (issue 15, "Plan cache for text statements"): text point
//! selects of one shape with other keys reach the right shard (the row comes back), are
//! counted as hits in SHOW PROXY STATUS, and a shape that cannot be re-bound (a string key)
//! is still answered right and counted as a miss.

mod harness;

use harness::mysql::connect;
use harness::{Cluster, Proxy, ProxyConfig};
use mysql_async::prelude::*;

/// A counter of SHOW PROXY STATUS on the admin port.
fn status(proxy: &Proxy, name: &str) -> u64 {
    let rows = proxy.admin_query("SHOW PROXY STATUS").unwrap();
    rows.iter()
        .find(|r| r[0] == name)
        .unwrap_or_else(|| panic!("{name} missing from {rows:?}"))[1]
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_point_selects_hit_the_cache_and_reach_the_key_shard() {
    let cluster = Cluster::shared();
    let proxy = Proxy::start(
        &ProxyConfig::for_cluster(cluster)
            .sharded_table("tpc_accounts", "account_id")
            .render(),
    );
    let mut p = connect(&proxy.url()).await;
    p.query_drop("DROP TABLE IF EXISTS tpc_accounts")
        .await
        .unwrap();
    p.query_drop("CREATE TABLE tpc_accounts (account_id BIGINT PRIMARY KEY, name VARCHAR(20))")
        .await
        .unwrap();
    let values: Vec<String> = (1..=60).map(|i| format!("({i}, 'n{i}')")).collect();
    p.query_drop(format!(
        "INSERT INTO tpc_accounts VALUES {}",
        values.join(", ")
    ))
    .await
    .unwrap();
    let (hits0, misses0) = (
        status(&proxy, "text_plan_cache_hits"),
        status(&proxy, "text_plan_cache_misses"),
    );
    for i in 1..=60 {
        let name: Option<String> = p
            .query_first(format!(
                "SELECT name FROM tpc_accounts WHERE account_id = {i}"
            ))
            .await
            .unwrap();
        assert_eq!(name.as_deref(), Some(format!("n{i}").as_str()), "key {i}");
    }
    let hits = status(&proxy, "text_plan_cache_hits") - hits0;
    let misses = status(&proxy, "text_plan_cache_misses") - misses0;
    println!("60 point selects of one shape: {hits} hits, {misses} misses");
    assert_eq!((hits, misses), (59, 1));
    // A quoted key is not re-bound: planned afresh, answered right.
    for i in [7, 8] {
        let name: Option<String> = p
            .query_first(format!(
                "SELECT name FROM tpc_accounts WHERE account_id = '{i}'"
            ))
            .await
            .unwrap();
        assert_eq!(name, Some(format!("n{i}")));
    }
    assert_eq!(status(&proxy, "text_plan_cache_hits") - hits0, 59);
    assert_eq!(status(&proxy, "text_plan_cache_misses") - misses0, 3);
}
