//! Proves the test harness against real MariaDB servers (no proxy needed): if these fail, every
//! other integration test's failure means nothing.

mod harness;

use std::time::Duration;

use harness::{Cluster, Mariadb, MariadbOpts, ProxyConfig};

/// A row written on a shard's primary shows up on its replica.
#[test]
fn row_written_on_primary_reaches_replica() {
    let c = Cluster::shared();
    for shard in &c.shards {
        let table = format!("fund.selftest_repl_{}", shard.name);
        shard.primary.exec(&format!(
            "CREATE TABLE {table} (id INT PRIMARY KEY, v VARCHAR(20)); \
             INSERT INTO {table} VALUES (1, 'from-{}')",
            shard.name
        ));
        let replica = &shard.replicas[0];
        let seen = harness::wait_until(Duration::from_secs(10), || {
            replica
                .try_query(&format!("SELECT v FROM {table} WHERE id = 1"))
                .map(|rows| rows == vec![vec![format!("from-{}", shard.name)]])
                .unwrap_or(false)
        });
        assert!(
            seen,
            "{}: row not replicated to {}: {:?}",
            shard.name,
            replica.addr(),
            replica.slave_status()
        );
        // And the replica is a GTID replica of this primary, not of some other server.
        assert_eq!(
            replica.slave_field("Master_Port"),
            Some(shard.primary.port().to_string())
        );
        assert_eq!(
            replica.slave_field("Using_Gtid").as_deref(),
            Some("Slave_Pos")
        );
        shard.sync_replicas(Duration::from_secs(10));
    }
}

/// Semi-sync is active on every primary (and every replica acknowledges). Waits a little: a
/// commit whose ack takes longer than the 1 s timeout on a loaded machine switches the primary
/// to async until the replica catches up.
#[test]
fn semi_sync_is_on() {
    let c = Cluster::shared();
    for shard in &c.shards {
        let on = harness::wait_until(Duration::from_secs(10), || {
            shard
                .primary
                .status("Rpl_semi_sync_master_status")
                .as_deref()
                == Some("ON")
        });
        assert!(
            on,
            "{} primary: Rpl_semi_sync_master_status is {:?}",
            shard.name,
            shard.primary.status("Rpl_semi_sync_master_status")
        );
        assert_eq!(
            shard
                .primary
                .status("Rpl_semi_sync_master_clients")
                .as_deref(),
            Some("1"),
            "{} primary",
            shard.name
        );
        for r in &shard.replicas {
            assert_eq!(
                r.status("Rpl_semi_sync_slave_status").as_deref(),
                Some("ON"),
                "{} replica {}",
                shard.name,
                r.addr()
            );
        }
    }
}

/// Database `fund` and the app user exist on every server of every shard.
#[test]
fn fund_database_and_app_user_everywhere() {
    let c = Cluster::shared();
    assert_eq!(c.shards.len(), 2);
    for server in c.servers() {
        let rows = harness::cli_query(
            server.port(),
            harness::APP_USER,
            harness::APP_PASSWORD,
            "SHOW DATABASES LIKE 'fund'",
        )
        .unwrap_or_else(|e| panic!("{}: {e}", server.addr()));
        assert_eq!(rows, vec![vec!["fund".to_string()]], "{}", server.addr());
    }
}

/// mysql_async reaches a server through `url()` as app/app.
#[tokio::test]
async fn mysql_async_connects_with_url() {
    use mysql_async::prelude::Queryable;
    let c = Cluster::shared();
    let primary = &c.shard("s1").primary;
    let mut conn = mysql_async::Conn::from_url(primary.url())
        .await
        .expect("connect");
    let (user, db, port): (String, String, u16) = conn
        .query_first("SELECT CURRENT_USER(), DATABASE(), @@port")
        .await
        .expect("query")
        .expect("one row");
    assert!(user.starts_with("app@"), "{user}");
    assert_eq!(db, "fund");
    assert_eq!(port, primary.port());
    conn.disconnect().await.expect("disconnect");
}

/// Two servers started at once get different ports and each answers as itself.
#[test]
fn parallel_servers_get_distinct_ports() {
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| {
            Mariadb::start(MariadbOpts {
                name: "par-a".into(),
                ..Default::default()
            })
        });
        let b = s.spawn(|| {
            Mariadb::start(MariadbOpts {
                name: "par-b".into(),
                ..Default::default()
            })
        });
        (a.join().unwrap(), b.join().unwrap())
    });
    assert_ne!(a.port(), b.port());
    for m in [&a, &b] {
        assert_eq!(m.query_value("SELECT @@port"), Some(m.port().to_string()));
        assert_eq!(
            m.query_value("SELECT @@server_id"),
            Some(m.server_id().to_string())
        );
    }
}

/// A killed server is gone, and restart brings it back on the same port with its data.
#[test]
fn kill_and_restart_keeps_port_and_data() {
    let mut m = Mariadb::start(MariadbOpts {
        name: "restart".into(),
        ..Default::default()
    });
    m.exec("CREATE TABLE fund.k (id INT PRIMARY KEY); INSERT INTO fund.k VALUES (7)");
    let port = m.port();
    m.kill();
    assert!(m.try_query("SELECT 1").is_err(), "killed server answers");
    m.restart();
    assert_eq!(m.port(), port);
    assert_eq!(m.query_value("SELECT id FROM fund.k"), Some("7".into()));
}

/// The rendered proxy config and config/local.toml are valid for the proxy's own parser.
#[test]
fn proxy_configs_parse() {
    let text = ProxyConfig::default()
        .shard("s1", "127.0.0.1:3311", &["127.0.0.1:3312".to_string()])
        .shard("s2", "127.0.0.1:3321", &[])
        .sharded_table("fund.accounts", "account_id")
        .reference_table("fund.products")
        .backend("pool_max = 8")
        .ring("vnodes = 64")
        .render();
    let c = shardproxy::config::Config::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(c.shards.len(), 2);
    assert_eq!(c.shards[0].replicas, vec!["127.0.0.1:3312".to_string()]);
    assert_eq!(c.sharding.default_shard, "s1");
    assert_eq!(c.sharding.tables[0].key, "account_id");
    assert_eq!(c.backend.pool_max, 8);
    assert_eq!(c.ring.vnodes, 64);
    assert!(c.admin_listen.is_some() && c.http_listen.is_some());
    assert_ne!(
        c.listen, "127.0.0.1:6033",
        "harness must not use the default port"
    );

    let local = harness::repo_root().join("config/local.toml");
    let local = shardproxy::config::Config::load(&local).unwrap_or_else(|e| panic!("{e}"));
    // config/local.toml and ProxyConfig::fund_schema describe the same placement.
    let fund = ProxyConfig::default()
        .shard("s1", "127.0.0.1:3311", &[])
        .fund_schema()
        .render();
    let fund = shardproxy::config::Config::parse(&fund).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(fund.sharding.tables, local.sharding.tables);
    assert_eq!(
        fund.sharding.reference_tables,
        local.sharding.reference_tables
    );
}

/// The Python venv has both client libraries.
/// First run creates target/pyvenv (pip from PyPI, ~20 s); later runs reuse it.
#[test]
fn python_venv_has_clients() {
    let out = harness::run_python("import pymysql, mysql.connector; print('ok')", &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok");
}

/// The proxy binary starts on harness-chosen ports in front of the shared cluster and answers
/// a query through the `mariadb` CLI (the end-to-end path every proxy test builds on).
#[test]
fn proxy_starts_and_answers() {
    let c = Cluster::shared();
    let proxy = harness::Proxy::start(&ProxyConfig::for_cluster(c).render());
    let rows = proxy
        .cli_query("SELECT 1")
        .unwrap_or_else(|e| panic!("{e}\n--- proxy log\n{}", proxy.log()));
    assert_eq!(rows, vec![vec!["1".to_string()]]);
}

/// A Python client (PyMySQL) from the venv reaches the proxy: the pattern client-library
/// tests use.
#[test]
fn python_client_through_proxy() {
    let c = Cluster::shared();
    let proxy = harness::Proxy::start(&ProxyConfig::for_cluster(c).render());
    let script = r#"
import sys, pymysql
c = pymysql.connect(host="127.0.0.1", port=int(sys.argv[1]), user="app", password="app",
                    database="fund")
with c.cursor() as cur:
    cur.execute("SELECT 1 + 1")
    print(cur.fetchone()[0])
"#;
    let port = proxy.port().to_string();
    let out = harness::run_python(script, &[&port]);
    assert!(
        out.status.success(),
        "{}\n--- proxy log\n{}",
        String::from_utf8_lossy(&out.stderr),
        proxy.log()
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "2");
}
