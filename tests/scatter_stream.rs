//! A streamed scatter read that fails in the middle (issue 15, "Streaming and memory"): the
//! statement on one shard is killed after it sent rows; the client gets the rows sent so far,
//! then the shard's error (an ERR packet after rows, as MariaDB sends), naming the shard; the
//! session and the pooled connections stay usable.

mod harness;

use std::time::Duration;

use harness::mysql::connect;
use harness::{Cluster, Proxy, ProxyConfig};
use mysql_async::prelude::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_error_after_rows_ends_the_result_with_that_error() {
    let cluster = Cluster::shared();
    let proxy = Proxy::start(
        &ProxyConfig::for_cluster(cluster)
            .sharded_table("ss_rows", "id")
            .render(),
    );
    let mut p = connect(&proxy.url()).await;
    p.query_drop("DROP TABLE IF EXISTS ss_rows").await.unwrap();
    p.query_drop("CREATE TABLE ss_rows (id BIGINT PRIMARY KEY)")
        .await
        .unwrap();
    let values: Vec<String> = (1..=80).map(|i| format!("({i})")).collect();
    p.query_drop(format!("INSERT INTO ss_rows VALUES {}", values.join(",")))
        .await
        .unwrap();
    // Rows larger than the server's network buffer are sent one by one, 50 ms apart.
    let sql =
        "SELECT id, REPEAT('x', 40000) AS ss_probe, SLEEP(0.05) AS z FROM ss_rows ORDER BY id";
    let mut result = p.query_iter(sql).await.unwrap();
    let primary = &cluster.shard("s1").primary;
    let mut killed = false;
    let mut got = 0u64;
    let mut last = 0i64;
    let error = loop {
        match result.next().await {
            Ok(Some(row)) => {
                let id: i64 = row.get(0).unwrap();
                assert!(id > last, "rows in key order");
                last = id;
                got += 1;
                if got == 5 && !killed {
                    let ids = primary.query(
                        "SELECT ID FROM information_schema.PROCESSLIST WHERE INFO LIKE '%ss_probe%' AND INFO NOT LIKE '%PROCESSLIST%'",
                    );
                    assert_eq!(ids.len(), 1, "the statement runs on s1: {ids:?}");
                    primary.exec(&format!("KILL QUERY {}", ids[0][0]));
                    killed = true;
                }
            }
            Ok(None) => panic!("the result ended without the shard's error after {got} rows"),
            Err(e) => break e,
        }
    };
    drop(result);
    println!("{got} rows, then: {error}");
    assert!(got >= 5, "rows came before the error");
    match error {
        mysql_async::Error::Server(e) => {
            assert_eq!(e.code, 1317, "{e:?}");
            assert!(e.message.contains("(on shard s1)"), "{e:?}");
        }
        other => panic!("expected the shard's error, got {other:?}"),
    }
    // The session goes on, and so do the shards' connections.
    for _ in 0..3 {
        let n: Option<i64> = tokio::time::timeout(
            Duration::from_secs(20),
            p.query_first("SELECT COUNT(*) FROM ss_rows"),
        )
        .await
        .expect("the session answers after the error")
        .unwrap();
        assert_eq!(n, Some(80));
    }
}
