//! `CoreOps` (AdminOps over the real `Proxy`) through the admin port, without backends:
//! topology, health flags, sessions, KILL, RELOAD CONFIG, and `start_operator_ports`.

mod harness;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use harness::mysql::{tcp_opts, text_rows};
use harness::{free_port, ProxyConfig};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, OptsBuilder};
use shardproxy::admin::core_ops::{start_operator_ports, CoreOps};
use shardproxy::config::Config;
use shardproxy::proxy::Proxy;

/// Two shards on ports nothing listens on (s1 with a replica), `accounts` sharded by
/// `user_id`; no listeners unless added (the first test opens its own admin port).
fn two_shards() -> ProxyConfig {
    ProxyConfig::default()
        .without_listeners()
        .shard("s1", "127.0.0.1:1", &["127.0.0.1:2".to_string()])
        .shard("s2", "127.0.0.1:3", &[])
        .sharded_table("accounts", "user_id")
}

fn config() -> String {
    two_shards().render()
}

async fn rows(conn: &mut Conn, sql: &str) -> Vec<Vec<Option<String>>> {
    text_rows(conn, sql).await.1
}

fn opts(port: u16) -> OptsBuilder {
    tcp_opts(port, "admin", "admin")
}

#[tokio::test(flavor = "multi_thread")]
async fn core_ops_through_the_admin_port() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shardproxy.toml");
    std::fs::write(&path, config()).unwrap();
    let proxy = Proxy::new(Config::load(&path).unwrap(), "10.11.0-MariaDB".into()).unwrap();
    let ops = CoreOps::new(proxy.clone(), Some(path.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(shardproxy::admin::serve_admin(
        listener,
        ops.clone(),
        ops.admin_users.clone(),
    ));
    let mut conn = Conn::new(opts(port)).await.unwrap();

    // Health as the checker left it: s1's replica down, the rest up.
    for p in proxy.topology().pools() {
        p.stats
            .healthy
            .store(p.addr != "127.0.0.1:2", Ordering::Relaxed);
        p.stats.lag_seconds.store(-1, Ordering::Relaxed);
    }
    let shards = rows(&mut conn, "SHOW SHARDS").await;
    assert_eq!(shards[0][4].as_deref(), Some("degraded"));
    assert_eq!(shards[1][4].as_deref(), Some("ok"));
    let backends = rows(&mut conn, "SHOW BACKENDS").await;
    assert_eq!(backends.len(), 3);
    assert_eq!(backends[1][0].as_deref(), Some("127.0.0.1:2"));
    assert_eq!(backends[1][3].as_deref(), Some("down"));
    assert_eq!(backends[1][4], None);

    // A session in the registry shows up and can be killed.
    let handle = proxy.registry.register(42, "app", "127.0.0.1:50000");
    handle.update(|i| {
        i.state = "query";
        i.statement = Some("SELECT 1".into());
    });
    let sessions = rows(&mut conn, "SHOW SESSIONS").await;
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0][0].as_deref(), Some("42"));
    assert_eq!(sessions[0][6].as_deref(), Some("SELECT 1"));
    conn.query_drop("KILL QUERY 42").await.unwrap();
    assert!(!handle.is_killed());
    conn.query_drop("KILL 42").await.unwrap();
    assert!(handle.is_killed());
    match conn.query_drop("KILL 43").await {
        Err(mysql_async::Error::Server(e)) => assert_eq!(e.code, 1094),
        other => panic!("{other:?}"),
    }

    let status = rows(&mut conn, "SHOW PROXY STATUS").await;
    assert!(status.iter().any(|r| r[0].as_deref() == Some("qps")));
    let rules = rows(&mut conn, "SHOW TABLE RULES").await;
    assert_eq!(rules[0][0].as_deref(), Some("accounts"));

    // The real ring and planner.
    let ring = rows(&mut conn, "SHOW RING").await;
    assert_eq!(ring.len(), 2);
    let total: f64 = ring
        .iter()
        .map(|r| r[2].as_deref().unwrap().parse::<f64>().unwrap())
        .sum();
    assert!((total - 100.0).abs() < 0.02, "{ring:?}");
    let expected = proxy
        .rules()
        .ring
        .shard_for(&shardproxy::ring::KeyValue::from(42i64))
        .to_string();
    let place = rows(&mut conn, "WHERE IS accounts 42").await;
    assert_eq!(place[0][2].as_deref(), Some(expected.as_str()));
    let quoted = rows(&mut conn, "WHERE IS accounts '42'").await;
    assert_eq!(quoted, place, "'42' routes like 42");
    let other = rows(&mut conn, "WHERE IS orders 42").await;
    assert_eq!(other[0][2].as_deref(), Some("s1 (default shard)"));
    let preview = rows(
        &mut conn,
        "PREVIEW SELECT * FROM accounts WHERE user_id = 42",
    )
    .await;
    assert_eq!(preview.len(), 1, "{preview:?}");
    assert_eq!(preview[0][0].as_deref(), Some(expected.as_str()));
    let scatter = rows(&mut conn, "PREVIEW SELECT COUNT(*) FROM accounts").await;
    assert_eq!(scatter.len(), 2, "{scatter:?}");

    // Reload: the diff comes back and the topology follows.
    std::fs::write(&path, config().replace("127.0.0.1:3", "127.0.0.1:4")).unwrap();
    let changes = rows(&mut conn, "RELOAD CONFIG").await;
    assert_eq!(
        changes,
        [[Some(
            r#"shards[1].primary: "127.0.0.1:3" -> "127.0.0.1:4""#.to_string()
        )]]
    );
    assert_eq!(
        proxy.topology().shard("s2").unwrap().primary.addr,
        "127.0.0.1:4"
    );
    std::fs::write(&path, "[[shards]]").unwrap();
    match conn.query_drop("RELOAD CONFIG").await {
        Err(mysql_async::Error::Server(e)) => assert_eq!(e.code, 1105),
        other => panic!("{other:?}"),
    }
    assert_eq!(proxy.config().shards[1].primary, "127.0.0.1:4");
}

#[tokio::test(flavor = "multi_thread")]
async fn start_operator_ports_opens_what_the_config_asks_for() {
    let (admin, http) = (free_port(), free_port());
    let text = two_shards()
        .top(&format!("admin_listen = \"127.0.0.1:{admin}\""))
        .top(&format!("http_listen = \"127.0.0.1:{http}\""))
        .render();
    let proxy: Arc<Proxy> = Proxy::new(Config::parse(&text).unwrap(), "x".into()).unwrap();
    start_operator_ports(proxy, None).await.unwrap();

    let mut conn = Conn::new(opts(admin)).await.unwrap();
    assert_eq!(rows(&mut conn, "SHOW SHARDS").await.len(), 2);
    match conn.query_drop("RELOAD CONFIG").await {
        Err(mysql_async::Error::Server(e)) => {
            assert!(e.message.contains("without a config file"), "{}", e.message)
        }
        other => panic!("{other:?}"),
    }

    let r = tokio::task::spawn_blocking(move || {
        harness::http_get(&format!("127.0.0.1:{http}"), "/api/status")
    })
    .await
    .unwrap();
    let body = format!("{}\r\n\r\n{}", r.head, r.body);
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    assert!(body.contains("\"127.0.0.1:2\""), "{body}");
}
