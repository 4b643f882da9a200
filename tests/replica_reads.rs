//! Reads on replicas (issue 11, "Health and reads"), against real mariadbd shards of one
//! primary and one replica each: which server answered is read from the answer itself
//! (`@@server_id` selected with the row), never guessed from the proxy's own counters alone.
//!
//! - `read_from = "replica"` on a `[[users]]` entry sends its plain reads to the replicas
//!   (SHOW BACKENDS counts them per backend, and `/metrics` exports the count);
//! - `SET shardproxy_read_from` changes a session's own setting; a bad value is 1231;
//! - a transaction, a locking read, a session with a temporary table stay on the primary;
//! - read-your-writes: a write then an immediate read, many times, never sees a stale row
//!   (the read waits on the replica for the write, or goes to the primary);
//! - a replica whose SQL thread stops, or that falls behind `max_replica_lag_ms`
//!   (`MASTER_DELAY`), leaves the read set without a client error and comes back.

mod harness;

use std::time::{Duration, Instant};

use harness::mysql::tcp_opts;
use harness::{Cluster, Proxy, ProxyConfig};
use mysql_async::prelude::Queryable;

/// The reading user of the tests (its `[[users]]` entry says `read_from = "replica"`).
const READER: &str = "reader";

fn config(cluster: &Cluster) -> String {
    ProxyConfig::for_cluster(cluster)
        .sharded_table("rr", "id")
        .user_with(READER, "password = \"reader\"\nread_from = \"replica\"")
        .backend("health_interval_ms = 100")
        .backend("health_timeout_ms = 500")
        .backend("health_fail_after = 2")
        .backend("max_replica_lag_ms = 1000")
        .render()
}

async fn conn(proxy: &Proxy, user: &str, password: &str) -> mysql_async::Conn {
    mysql_async::Conn::new(tcp_opts(proxy.port(), user, password).db_name(Some("fund")))
        .await
        .unwrap()
}

/// `v` of row `id` and the server id of the server that answered.
async fn read(c: &mut mysql_async::Conn, id: u64) -> (i64, u32) {
    let row: Option<(i64, u32)> = c
        .query_first(format!("SELECT v, @@server_id FROM rr WHERE id = {id}"))
        .await
        .unwrap();
    row.unwrap()
}

/// The SHOW BACKENDS row of `addr`, by column name.
fn backend(proxy: &Proxy, addr: &str, column: &str) -> String {
    let rows = proxy.admin_query("SHOW BACKENDS").unwrap();
    let names = [
        "address",
        "shard",
        "role",
        "health",
        "lag_seconds",
        "pool_in_use",
        "pool_idle",
        "queries",
        "errors",
        "gtid_position",
        "read_only",
        "lag_ms",
        "in_read_set",
        "reads",
        "extra_gtids",
    ];
    let i = names.iter().position(|n| *n == column).unwrap();
    rows.iter().find(|r| r[0] == addr).unwrap()[i].clone()
}

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("not within {timeout:?}: {what}");
}

/// One key per shard, found with WHERE IS.
fn key_per_shard(proxy: &Proxy) -> Vec<(String, u64)> {
    let mut out: Vec<(String, u64)> = Vec::new();
    for k in 1..100u64 {
        let rows = proxy.admin_query(&format!("WHERE IS rr {k}")).unwrap();
        let shard = rows[0][2].clone();
        if !out.iter().any(|(s, _)| *s == shard) {
            out.push((shard, k));
        }
        if out.len() == 2 {
            break;
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_go_to_replicas_that_are_fit_and_never_miss_the_sessions_writes() {
    let cluster = Cluster::start(2, 1);
    let proxy = Proxy::start(&config(&cluster));
    proxy
        .cli_query("USE fund; CREATE TABLE rr (id BIGINT PRIMARY KEY, v BIGINT NOT NULL)")
        .unwrap();
    let keys = key_per_shard(&proxy);
    assert_eq!(keys.len(), 2, "{keys:?}");
    let mut app = conn(&proxy, "app", "app").await;
    for (_, k) in &keys {
        app.query_drop(format!("INSERT INTO rr VALUES ({k}, 0)"))
            .await
            .unwrap();
    }
    for s in &cluster.shards {
        s.sync_replicas(Duration::from_secs(10));
    }
    let primary_id = |shard: &str| cluster.shard(shard).primary.server_id();
    let replica = |shard: &str| &cluster.shard(shard).replicas[0];
    // The replicas enter the read set once checked against their primary's position.
    for (s, _) in &keys {
        let addr = replica(s).addr();
        wait_for(
            &format!("{addr} in the read set"),
            Duration::from_secs(10),
            || backend(&proxy, &addr, "in_read_set") == "yes",
        );
    }

    // 1. The reader's plain reads are answered by the replicas, counted per backend.
    let mut reader = conn(&proxy, READER, "reader").await;
    let before: Vec<u64> = keys
        .iter()
        .map(|(s, _)| {
            backend(&proxy, &replica(s).addr(), "reads")
                .parse()
                .unwrap()
        })
        .collect();
    for _ in 0..20 {
        for (s, k) in &keys {
            let (_, id) = read(&mut reader, *k).await;
            assert_eq!(id, replica(s).server_id(), "read of {k} on {s}");
        }
    }
    for ((s, _), b) in keys.iter().zip(before) {
        let after: u64 = backend(&proxy, &replica(s).addr(), "reads")
            .parse()
            .unwrap();
        assert!(after >= b + 20, "{s}: reads {b} -> {after}");
    }
    // A scatter read too: every shard's part from its replica.
    let ids: Vec<u32> = reader
        .query("SELECT DISTINCT @@server_id FROM rr")
        .await
        .unwrap();
    let mut want: Vec<u32> = keys.iter().map(|(s, _)| replica(s).server_id()).collect();
    let mut got = ids.clone();
    want.sort();
    got.sort();
    assert_eq!(got, want, "scatter read answered by {ids:?}");
    let http = proxy.http_listen.clone().unwrap();
    let metrics = harness::clients::http_get(&http, "/metrics").body;
    let line = format!(
        "shardproxy_backend_reads_total{{backend=\"{}\"}}",
        replica(&keys[0].0).addr()
    );
    assert!(metrics.contains(&line), "no {line} in /metrics");

    // 2. What stays on the primary, for the reader: a transaction, a locking read, a session
    // with a temporary table.
    let (s0, k0) = (&keys[0].0, keys[0].1);
    reader.query_drop("BEGIN").await.unwrap();
    assert_eq!(
        read(&mut reader, k0).await.1,
        primary_id(s0),
        "in a transaction"
    );
    reader.query_drop("COMMIT").await.unwrap();
    let locked: Option<u32> = reader
        .query_first(format!(
            "SELECT @@server_id FROM rr WHERE id = {k0} FOR UPDATE"
        ))
        .await
        .unwrap();
    assert_eq!(locked, Some(primary_id(s0)), "FOR UPDATE");
    assert_eq!(read(&mut reader, k0).await.1, replica(s0).server_id());
    let preview: Vec<(String, String, String)> = reader
        .query(format!("PREVIEW SELECT v FROM rr WHERE id = {k0}"))
        .await
        .unwrap();
    assert!(
        preview[0]
            .2
            .contains(&format!("read on replica {}", replica(s0).addr())),
        "{preview:?}"
    );
    let preview: Vec<(String, String, String)> = reader
        .query(format!(
            "PREVIEW SELECT v FROM rr WHERE id = {k0} FOR UPDATE"
        ))
        .await
        .unwrap();
    assert!(
        preview[0]
            .2
            .contains("read on primary (the read locks rows (FOR UPDATE))"),
        "{preview:?}"
    );
    {
        let mut t = conn(&proxy, READER, "reader").await;
        t.query_drop("CREATE TEMPORARY TABLE tt (a INT)")
            .await
            .unwrap();
        assert_eq!(read(&mut t, k0).await.1, primary_id(s0), "temporary table");
    }

    // 3. Per session: the default user reads from the primary until it says otherwise.
    assert_eq!(read(&mut app, k0).await.1, primary_id(s0));
    app.query_drop("SET shardproxy_read_from = 'replica_preferred'")
        .await
        .unwrap();
    assert_eq!(read(&mut app, k0).await.1, replica(s0).server_id());
    app.query_drop("SET shardproxy_read_from = primary")
        .await
        .unwrap();
    assert_eq!(read(&mut app, k0).await.1, primary_id(s0));
    let e = app
        .query_drop("SET shardproxy_read_from = 'sometimes'")
        .await
        .unwrap_err();
    assert!(e.to_string().contains("1231"), "{e}");
    app.query_drop("SET shardproxy_read_from = 'replica'")
        .await
        .unwrap();
    reader
        .query_drop("SET shardproxy_read_from = 'primary'")
        .await
        .unwrap();
    assert_eq!(read(&mut reader, k0).await.1, primary_id(s0));
    reader
        .query_drop("SET shardproxy_read_from = 'replica'")
        .await
        .unwrap();

    // 4. Read-your-writes: a write and at once a read, many times: never stale. The other
    // shard, not written by this session, keeps reading from its replica meanwhile.
    let (s1, k1) = (&keys[1].0, keys[1].1);
    let mut on_replica = 0;
    let mut other_on_replica = 0;
    let n = 300;
    for i in 1..=n {
        reader
            .query_drop(format!("UPDATE rr SET v = {i} WHERE id = {k0}"))
            .await
            .unwrap();
        let (v, id) = read(&mut reader, k0).await;
        assert_eq!(v, i, "stale read {i} from server {id}");
        if id == replica(s0).server_id() {
            on_replica += 1;
        }
        if i % 10 == 0 {
            let (_, id) = read(&mut reader, k1).await;
            if id == replica(s1).server_id() {
                other_on_replica += 1;
            }
        }
    }
    // Once the replica has applied the write (seen by a health check), reads return to it.
    wait_for(
        "the read after the last write back on the replica",
        Duration::from_secs(5),
        || futures_read(&proxy, k0) == (n, replica(s0).server_id()),
    );
    println!(
        "read-your-writes: {n} writes each read back at once: {on_replica} answered by the replica, \
         {} by the primary; the other shard's replica answered {other_on_replica} of {}",
        n - on_replica,
        n / 10
    );
    assert!(
        other_on_replica > n / 20,
        "the other shard left its replica"
    );
    // `read_from = "replica"` waits on the replica for the session's write
    // (read_your_writes_wait_ms): with semi-sync the replica has received it already.
    assert!(
        on_replica > 0,
        "no read after a write waited on the replica"
    );

    // 5. A replica whose SQL thread stops leaves the read set at once; the reads keep being
    // answered (by the primary), and it comes back when it runs again.
    let r0 = replica(s0);
    r0.exec("STOP SLAVE SQL_THREAD");
    wait_for(
        "stopped replica out of the read set",
        Duration::from_secs(5),
        || backend(&proxy, &r0.addr(), "in_read_set") == "no",
    );
    app.query_drop(format!("UPDATE rr SET v = -1 WHERE id = {k0}"))
        .await
        .unwrap();
    for _ in 0..20 {
        let (v, id) = read(&mut reader, k0).await;
        assert_eq!((v, id), (-1, primary_id(s0)), "with the SQL thread stopped");
    }
    r0.exec("START SLAVE SQL_THREAD");
    wait_for(
        "replica back in the read set",
        Duration::from_secs(10),
        || backend(&proxy, &r0.addr(), "in_read_set") == "yes",
    );
    assert_eq!(read(&mut reader, k0).await, (-1, r0.server_id()));

    // 6. A replica that replicates but falls behind max_replica_lag_ms (MASTER_DELAY) leaves
    // the read set with its lag shown, and comes back once it catches up.
    r0.exec("STOP SLAVE; CHANGE MASTER TO MASTER_DELAY = 3; START SLAVE");
    app.query_drop(format!("UPDATE rr SET v = -2 WHERE id = {k0}"))
        .await
        .unwrap();
    wait_for(
        "delayed replica out of the read set, its lag shown",
        Duration::from_secs(5),
        || {
            backend(&proxy, &r0.addr(), "in_read_set") == "no"
                && backend(&proxy, &r0.addr(), "lag_ms")
                    .parse::<u64>()
                    .is_ok_and(|l| l > 1000)
        },
    );
    assert_eq!(backend(&proxy, &r0.addr(), "health"), "up");
    let mut errors = 0;
    for _ in 0..20 {
        match reader
            .query_first::<(i64, u32), _>(format!("SELECT v, @@server_id FROM rr WHERE id = {k0}"))
            .await
        {
            Ok(Some((v, id))) => assert_eq!((v, id), (-2, primary_id(s0)), "while delayed"),
            _ => errors += 1,
        }
    }
    assert_eq!(errors, 0);
    r0.exec("STOP SLAVE; CHANGE MASTER TO MASTER_DELAY = 0; START SLAVE");
    wait_for(
        "caught-up replica back in the read set",
        Duration::from_secs(10),
        || backend(&proxy, &r0.addr(), "in_read_set") == "yes",
    );
    assert_eq!(read(&mut reader, k0).await, (-2, r0.server_id()));
}

/// `v` of row `id` and the server that answered, by a prepared statement (the binary
/// protocol: COM_STMT_PREPARE once, COM_STMT_EXECUTE each time; mysql_async caches it).
async fn exec_read(c: &mut mysql_async::Conn, id: u64) -> Result<(i64, u32), mysql_async::Error> {
    let row: Option<(i64, u32)> = c
        .exec_first("SELECT v, @@server_id FROM rr WHERE id = ?", (id,))
        .await?;
    Ok(row.expect("the row exists"))
}

/// Prepared reads (COM_STMT_EXECUTE) follow the rules of text reads: a replica answers them
/// for `read_from = "replica"`, the statement prepared on the replica's connection; not in a
/// transaction; never before the replica has applied the session's own prepared write; and a
/// replica that stops or lags leaves them on the primary without a client error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_reads_go_to_replicas_under_the_rules_of_text_reads() {
    let cluster = Cluster::start(2, 1);
    let proxy = Proxy::start(&config(&cluster));
    proxy
        .cli_query("USE fund; CREATE TABLE rr (id BIGINT PRIMARY KEY, v BIGINT NOT NULL)")
        .unwrap();
    let keys = key_per_shard(&proxy);
    let mut app = conn(&proxy, "app", "app").await;
    for (_, k) in &keys {
        app.exec_drop("INSERT INTO rr VALUES (?, 0)", (k,))
            .await
            .unwrap();
    }
    for s in &cluster.shards {
        s.sync_replicas(Duration::from_secs(10));
    }
    let primary_id = |shard: &str| cluster.shard(shard).primary.server_id();
    let replica = |shard: &str| &cluster.shard(shard).replicas[0];
    for (s, _) in &keys {
        let addr = replica(s).addr();
        wait_for(
            &format!("{addr} in the read set"),
            Duration::from_secs(10),
            || backend(&proxy, &addr, "in_read_set") == "yes",
        );
    }
    let (s0, k0) = (&keys[0].0, keys[0].1);
    let mut reader = conn(&proxy, READER, "reader").await;

    // 1. Executes by key, and a statement without parameters, answered by the replicas and
    // counted as their reads.
    let before: u64 = backend(&proxy, &replica(s0).addr(), "reads")
        .parse()
        .unwrap();
    for _ in 0..20 {
        for (s, k) in &keys {
            let (_, id) = exec_read(&mut reader, *k).await.unwrap();
            assert_eq!(id, replica(s).server_id(), "prepared read of {k} on {s}");
        }
    }
    let fixed: Option<u32> = reader
        .exec_first(format!("SELECT @@server_id FROM rr WHERE id = {k0}"), ())
        .await
        .unwrap();
    assert_eq!(
        fixed,
        Some(replica(s0).server_id()),
        "fixed-route prepared read"
    );
    let after: u64 = backend(&proxy, &replica(s0).addr(), "reads")
        .parse()
        .unwrap();
    assert!(after >= before + 21, "replica reads {before} -> {after}");

    // 2. In a transaction, and with read_from = primary: the primary.
    reader.query_drop("BEGIN").await.unwrap();
    assert_eq!(exec_read(&mut reader, k0).await.unwrap().1, primary_id(s0));
    reader.query_drop("COMMIT").await.unwrap();
    reader
        .query_drop("SET shardproxy_read_from = 'primary'")
        .await
        .unwrap();
    assert_eq!(exec_read(&mut reader, k0).await.unwrap().1, primary_id(s0));
    reader
        .query_drop("SET shardproxy_read_from = 'replica'")
        .await
        .unwrap();
    assert_eq!(
        exec_read(&mut reader, k0).await.unwrap().1,
        replica(s0).server_id()
    );

    // 3. Read-your-writes through prepared statements only: a prepared UPDATE and at once a
    // prepared read of the row, many times: never stale.
    let n = 200;
    let mut on_replica = 0;
    for i in 1..=n {
        reader
            .exec_drop("UPDATE rr SET v = ? WHERE id = ?", (i, k0))
            .await
            .unwrap();
        let (v, id) = exec_read(&mut reader, k0).await.unwrap();
        assert_eq!(v, i, "stale prepared read {i} from server {id}");
        if id == replica(s0).server_id() {
            on_replica += 1;
        }
    }
    println!(
        "prepared read-your-writes: {n} prepared writes each read back at once: {on_replica} \
         answered by the replica, {} by the primary",
        n - on_replica
    );
    assert!(
        on_replica > 0,
        "no prepared read after a write on the replica"
    );

    // 4. A replica whose SQL thread stops, then one that lags past max_replica_lag_ms: the
    // prepared reads are answered by the primary, with no client error, and return after.
    let r0 = replica(s0);
    r0.exec("STOP SLAVE SQL_THREAD");
    wait_for(
        "stopped replica out of the read set",
        Duration::from_secs(5),
        || backend(&proxy, &r0.addr(), "in_read_set") == "no",
    );
    app.exec_drop("UPDATE rr SET v = ? WHERE id = ?", (-1, k0))
        .await
        .unwrap();
    for _ in 0..20 {
        let r = exec_read(&mut reader, k0).await;
        assert_eq!(
            r.unwrap(),
            (-1, primary_id(s0)),
            "with the SQL thread stopped"
        );
    }
    r0.exec("START SLAVE SQL_THREAD");
    wait_for(
        "replica back in the read set",
        Duration::from_secs(10),
        || backend(&proxy, &r0.addr(), "in_read_set") == "yes",
    );
    assert_eq!(
        exec_read(&mut reader, k0).await.unwrap(),
        (-1, r0.server_id())
    );
    r0.exec("STOP SLAVE; CHANGE MASTER TO MASTER_DELAY = 3; START SLAVE");
    app.exec_drop("UPDATE rr SET v = ? WHERE id = ?", (-2, k0))
        .await
        .unwrap();
    wait_for(
        "delayed replica out of the read set",
        Duration::from_secs(5),
        || backend(&proxy, &r0.addr(), "in_read_set") == "no",
    );
    for _ in 0..20 {
        let r = exec_read(&mut reader, k0).await;
        assert_eq!(r.unwrap(), (-2, primary_id(s0)), "while delayed");
    }
    r0.exec("STOP SLAVE; CHANGE MASTER TO MASTER_DELAY = 0; START SLAVE");
    wait_for(
        "caught-up replica back in the read set",
        Duration::from_secs(10),
        || backend(&proxy, &r0.addr(), "in_read_set") == "yes",
    );
    assert_eq!(
        exec_read(&mut reader, k0).await.unwrap(),
        (-2, r0.server_id())
    );
}

/// The column names and first row of a text query's answer.
async fn named_row(c: &mut mysql_async::Conn, sql: &str) -> (Vec<String>, Vec<String>) {
    let mut r = c.query_iter(sql).await.unwrap();
    let names = r
        .columns_ref()
        .iter()
        .map(|c| c.name_str().into_owned())
        .collect();
    let rows: Vec<mysql_async::Row> = r.collect().await.unwrap();
    let row = rows
        .first()
        .map(|r| {
            (0..r.len())
                .map(|i| r.get::<Option<String>, _>(i).unwrap().unwrap_or_default())
                .collect()
        })
        .unwrap_or_default();
    (names, row)
}

/// The proxy's settings read back as MariaDB reads a system variable: `SELECT @@x` (any
/// scope, named as written) and `SHOW VARIABLES LIKE 'shardproxy%'`, with the session's
/// values after its SETs; `@@global.` is what a new session of the user starts with.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxys_settings_read_back_as_system_variables() {
    let cluster = Cluster::shared();
    let proxy = Proxy::start(&config(cluster));
    let mut reader = conn(&proxy, READER, "reader").await;
    assert_eq!(
        named_row(&mut reader, "SELECT @@shardproxy_read_from").await,
        (
            vec!["@@shardproxy_read_from".into()],
            vec!["replica".into()]
        )
    );
    reader
        .query_drop("SET shardproxy_read_from = 'replica_preferred'")
        .await
        .unwrap();
    reader
        .query_drop("SET shardproxy_transaction_mode = 'single'")
        .await
        .unwrap();
    assert_eq!(
        named_row(
            &mut reader,
            "SELECT @@session.shardproxy_read_from, @@GLOBAL.shardproxy_read_from, \
             @@shardproxy_transaction_mode, @@shardproxy_allow_scatter_writes"
        )
        .await,
        (
            vec![
                "@@session.shardproxy_read_from".into(),
                "@@GLOBAL.shardproxy_read_from".into(),
                "@@shardproxy_transaction_mode".into(),
                "@@shardproxy_allow_scatter_writes".into()
            ],
            vec![
                "replica_preferred".into(),
                "replica".into(),
                "single".into(),
                "0".into()
            ]
        )
    );
    let shown: Vec<(String, String)> = reader
        .query("SHOW VARIABLES LIKE 'shardproxy%'")
        .await
        .unwrap();
    assert_eq!(
        shown,
        vec![
            ("shardproxy_allow_scatter_writes".into(), "OFF".into()),
            ("shardproxy_read_from".into(), "replica_preferred".into()),
            ("shardproxy_transaction_mode".into(), "single".into()),
        ]
    );
    let (names, _) = named_row(&mut reader, "SHOW GLOBAL VARIABLES LIKE 'shardproxy_read%'").await;
    assert_eq!(names, vec!["Variable_name".to_string(), "Value".into()]);
    let global: Vec<(String, String)> = reader
        .query("SHOW GLOBAL VARIABLES LIKE 'shardproxy_read%'")
        .await
        .unwrap();
    assert_eq!(
        global,
        vec![("shardproxy_read_from".into(), "replica".into())]
    );
    // In a WHERE clause too; an unknown name is MariaDB's 1193; a prepared statement that
    // reads a setting is refused (its text would freeze the value).
    let n: Option<u32> = reader
        .query_first("SELECT 1 FROM DUAL WHERE @@shardproxy_read_from = 'replica_preferred'")
        .await
        .unwrap();
    assert_eq!(n, Some(1));
    let e = reader
        .query_drop("SELECT @@shardproxy_nothing")
        .await
        .unwrap_err();
    assert!(e.to_string().contains("1193"), "{e}");
    let e = reader
        .exec_drop("SELECT @@shardproxy_read_from", ())
        .await
        .unwrap_err();
    assert!(e.to_string().contains("1235"), "{e}");
    // A new session starts from the user's configured value.
    let mut app = conn(&proxy, "app", "app").await;
    let (_, row) = named_row(&mut app, "SELECT @@shardproxy_read_from").await;
    assert_eq!(row, vec!["primary".to_string()]);
}

/// One read as the reader, on a fresh connection (for a wait loop outside async code).
fn futures_read(proxy: &Proxy, id: u64) -> (i64, u32) {
    let rows = harness::clients::cli_query(
        proxy.port(),
        READER,
        "reader",
        &format!("SELECT v, @@server_id FROM fund.rr WHERE id = {id}"),
    )
    .unwrap();
    (rows[0][0].parse().unwrap(), rows[0][1].parse().unwrap())
}

/// A rough figure, not a benchmark: point selects by key in a loop from 8 connections for 5 s,
/// once with `read_from = primary` and once with `replica`, through the debug build of the
/// proxy, with client, proxy and all four servers on the same cores. Prints both rates and the
/// share of the reads the replicas answered (SHOW BACKENDS). `cargo test --test replica_reads
/// -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn point_select_loop_primary_against_replica() {
    let cluster = Cluster::start(2, 1);
    let proxy = Proxy::start(&config(&cluster));
    proxy
        .cli_query("USE fund; CREATE TABLE rr (id BIGINT PRIMARY KEY, v BIGINT NOT NULL)")
        .unwrap();
    let mut app = conn(&proxy, "app", "app").await;
    let values: Vec<String> = (1..=1000).map(|i| format!("({i}, {i})")).collect();
    app.query_drop(format!("INSERT INTO rr VALUES {}", values.join(", ")))
        .await
        .unwrap();
    for s in &cluster.shards {
        s.sync_replicas(Duration::from_secs(10));
    }
    std::thread::sleep(Duration::from_millis(500));
    let reads_of = |role: &str| -> u64 {
        let rows = proxy.admin_query("SHOW BACKENDS").unwrap();
        rows.iter()
            .filter(|r| r[2] == role)
            .map(|r| r[13].parse::<u64>().unwrap())
            .sum()
    };
    for setting in ["primary", "replica"] {
        let (p0, r0) = (reads_of("primary"), reads_of("replica"));
        let stop = Instant::now() + Duration::from_secs(5);
        let mut tasks = Vec::new();
        for t in 0..8u64 {
            let opts = tcp_opts(proxy.port(), "app", "app").db_name(Some("fund"));
            let setting = setting.to_string();
            tasks.push(tokio::spawn(async move {
                let mut c = mysql_async::Conn::new(opts).await.unwrap();
                c.query_drop(format!("SET shardproxy_read_from = '{setting}'"))
                    .await
                    .unwrap();
                let mut n = 0u64;
                let mut k = t;
                while Instant::now() < stop {
                    k = (k * 7919 + 13) % 1000 + 1;
                    let v: Option<i64> = c
                        .query_first(format!("SELECT v FROM rr WHERE id = {k}"))
                        .await
                        .unwrap();
                    assert_eq!(v, Some(k as i64));
                    n += 1;
                }
                n
            }));
        }
        let mut total = 0;
        for t in tasks {
            total += t.await.unwrap();
        }
        let (p1, r1) = (reads_of("primary"), reads_of("replica"));
        let on_replicas = (r1 - r0) as f64 / ((p1 - p0) + (r1 - r0)).max(1) as f64;
        println!(
            "simple loop (debug build, 8 connections, 5 s, one 2-core box): read_from = {setting}: \
             {:.0} point selects/s, {:.1} % answered by replicas",
            total as f64 / 5.0,
            on_replicas * 100.0
        );
    }
}

/// The row of `addr` in SHOW BACKENDS, by column name (for the rejoin test).
fn role_of(proxy: &Proxy, addr: &str) -> String {
    backend(proxy, addr, "role")
}

/// A former primary that comes back read-only rejoins as a replica of the new primary when
/// its GTID history is a prefix of the new primary's (after a SWITCHOVER), and stays fenced,
/// its extra GTIDs named in SHOW BACKENDS, when it holds a transaction nobody else has.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_former_primary_rejoins_unless_it_holds_transactions_nobody_else_has() {
    let cluster = Cluster::start(1, 2);
    let cfg = ProxyConfig::for_cluster(&cluster)
        .backend("health_interval_ms = 100")
        .backend("health_timeout_ms = 500")
        .backend("health_fail_after = 2")
        .extra(
            "[failover]\nafter_ms = 500\ncatchup_ms = 500\n\
             [replication]\nuser = \"repl\"\npassword = \"repl\"\n",
        )
        .render();
    let proxy = Proxy::start(&cfg);
    proxy
        .cli_query("USE fund; CREATE TABLE rj (id BIGINT PRIMARY KEY, v BIGINT NOT NULL)")
        .unwrap();
    let mut app = conn(&proxy, "app", "app").await;
    app.query_drop("INSERT INTO rj VALUES (1, 1)")
        .await
        .unwrap();
    let shard = &cluster.shards[0];
    shard.sync_replicas(Duration::from_secs(10));
    let (p, r1, r2) = (&shard.primary, &shard.replicas[0], &shard.replicas[1]);

    // 1. A switchover: the old primary has nothing the new one lacks, so it rejoins.
    proxy
        .admin_query(&format!("SWITCHOVER s1 TO {}", r1.addr()))
        .unwrap();
    wait_for(
        "old primary rejoined as a replica",
        Duration::from_secs(10),
        || role_of(&proxy, &p.addr()) == "replica",
    );
    assert_eq!(
        p.slave_field("Master_Port"),
        Some(r1.port().to_string()),
        "{:?}",
        p.slave_status()
    );
    app.query_drop("INSERT INTO rj VALUES (2, 2)")
        .await
        .unwrap();
    wait_for(
        "the rejoined server replicates",
        Duration::from_secs(10),
        || p.query_value("SELECT COUNT(*) FROM fund.rj").as_deref() == Some("2"),
    );
    wait_for(
        "the rejoined server in the read set",
        Duration::from_secs(10),
        || backend(&proxy, &p.addr(), "in_read_set") == "yes",
    );
    assert_eq!(p.query_value("SELECT @@read_only").as_deref(), Some("1"));
    assert_eq!(backend(&proxy, &p.addr(), "extra_gtids"), "");

    // 2. The primary (r1) writes a transaction no replica receives, then is replaced: it
    // holds a GTID nobody else has, so it stays fenced and SHOW BACKENDS names it.
    wait_for("r2 follows r1", Duration::from_secs(10), || {
        r2.query_value("SELECT COUNT(*) FROM fund.rj").as_deref() == Some("2")
    });
    for s in [p, r2] {
        s.exec("STOP SLAVE");
    }
    r1.exec("INSERT INTO fund.rj VALUES (99, 99)");
    let lost = r1.query_value("SELECT @@gtid_binlog_pos").unwrap();
    proxy.admin_query("FAILOVER s1 FORCE").unwrap();
    wait_for("r1 fenced", Duration::from_secs(10), || {
        role_of(&proxy, &r1.addr()) == "fenced"
    });
    wait_for("r1's extra GTID named", Duration::from_secs(10), || {
        !backend(&proxy, &r1.addr(), "extra_gtids").is_empty()
    });
    let extra = backend(&proxy, &r1.addr(), "extra_gtids");
    assert!(
        lost.split(',').any(|g| extra.contains(g.trim())),
        "extra_gtids '{extra}' does not name r1's own write {lost}"
    );
    // Checked again later, it is still out.
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(role_of(&proxy, &r1.addr()), "fenced");
    assert_eq!(r1.query_value("SELECT @@read_only").as_deref(), Some("1"));
    println!(
        "divergent former primary {} kept fenced, extra GTIDs {extra}",
        r1.addr()
    );
}
