//! Sharded routing end to end (issue 4): DDL on every shard, rows on the shard the ring names,
//! transactions bound to one shard, hints, refusals, prepared statements, PREVIEW, sysbench.

mod harness;

use harness::mysql::connect;
use harness::{Cluster, Proxy, ProxyConfig, Sysbench};
use mysql_async::prelude::*;
use mysql_async::{Conn, Row};
use shardproxy::config::Config;
use shardproxy::ring::{KeyValue, Ring};

fn sharded_config(cluster: &Cluster) -> ProxyConfig {
    ProxyConfig::for_cluster(cluster)
        .sharded_table("sp_accounts", "account_id")
        .sharded_table("sp_ledger", "account_id")
        .sharded_table("sbtest1", "id")
        .sharded_table("sbtest2", "id")
        .reference_table("sp_yield")
}

fn server_error(r: Result<(), mysql_async::Error>) -> mysql_async::ServerError {
    match r {
        Err(mysql_async::Error::Server(e)) => e,
        other => panic!("expected a server error, got {other:?}"),
    }
}

async fn setup(p: &mut Conn) {
    for sql in [
        "DROP TABLE IF EXISTS sp_accounts",
        "DROP TABLE IF EXISTS sp_ledger",
        "DROP TABLE IF EXISTS sp_yield",
        "CREATE TABLE sp_accounts (account_id BIGINT PRIMARY KEY, name VARCHAR(40), balance DECIMAL(20,2) NOT NULL DEFAULT 0)",
        "CREATE TABLE sp_ledger (id BIGINT NOT NULL, account_id BIGINT NOT NULL, amount DECIMAL(20,2), PRIMARY KEY (account_id, id))",
        "CREATE TABLE sp_yield (day DATE PRIMARY KEY, per_10k DECIMAL(10,4))",
    ] {
        p.query_drop(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ddl_reaches_every_shard_and_rows_live_where_the_ring_says() {
    let cluster = Cluster::shared();
    let cfg = sharded_config(cluster).render();
    let proxy = Proxy::start(&cfg);
    let mut p = connect(&proxy.url()).await;
    setup(&mut p).await;
    // The same definition on every shard.
    let defs: Vec<String> = cluster
        .shards
        .iter()
        .map(|s| s.primary.query("SHOW CREATE TABLE fund.sp_accounts")[0][1].clone())
        .collect();
    assert!(defs.iter().all(|d| d == &defs[0]), "{defs:?}");
    // One multi-row INSERT, split by the proxy.
    let values: Vec<String> = (1..=200)
        .map(|i| format!("({i}, 'n{i}', {i}.25)"))
        .collect();
    p.query_drop(format!(
        "INSERT INTO sp_accounts (account_id, name, balance) VALUES {}",
        values.join(", ")
    ))
    .await
    .unwrap();
    assert_eq!(p.affected_rows(), 200);
    let ring = Ring::from_config(&Config::parse(&cfg).unwrap());
    let mut per_shard = Vec::new();
    for s in &cluster.shards {
        let ids: Vec<i64> = s
            .primary
            .query("SELECT account_id FROM fund.sp_accounts")
            .into_iter()
            .map(|r| r[0].parse().unwrap())
            .collect();
        for id in &ids {
            assert_eq!(
                ring.shard_for(&KeyValue::from(*id)),
                s.name,
                "row {id} on the wrong shard"
            );
        }
        per_shard.push(ids.len());
    }
    assert_eq!(per_shard.iter().sum::<usize>(), 200);
    assert!(per_shard.iter().all(|n| *n > 40), "uneven: {per_shard:?}");
    // Point reads find every row; scatter aggregates see them all, exactly.
    for id in [1i64, 77, 200] {
        let name: Option<String> = p
            .query_first(format!(
                "SELECT name FROM sp_accounts WHERE account_id = {id}"
            ))
            .await
            .unwrap();
        assert_eq!(name, Some(format!("n{id}")));
    }
    let (n, total): (i64, String) = p
        .query_first("SELECT COUNT(*), SUM(balance) FROM sp_accounts")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n, 200);
    assert_eq!(total, "20150.00");
    let top: Vec<(i64, String)> = p
        .query("SELECT account_id, name FROM sp_accounts ORDER BY balance DESC LIMIT 3")
        .await
        .unwrap();
    assert_eq!(
        top.iter().map(|r| r.0).collect::<Vec<_>>(),
        vec![200, 199, 198]
    );
    // Reference table writes reach every shard.
    p.query_drop("INSERT INTO sp_yield (day, per_10k) VALUES ('2026-11-25', 0.6512)")
        .await
        .unwrap();
    for s in &cluster.shards {
        assert_eq!(
            s.primary
                .query_value("SELECT per_10k FROM fund.sp_yield")
                .as_deref(),
            Some("0.6512")
        );
    }
    // A join with the reference table, routed by key.
    let row: Option<(String, String)> = p
        .query_first(
            "SELECT a.name, y.per_10k FROM sp_accounts a JOIN sp_yield y WHERE a.account_id = 5",
        )
        .await
        .unwrap();
    assert_eq!(row, Some(("n5".into(), "0.6512".into())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_stay_on_one_shard_and_hints_pick_a_shard() {
    let cluster = Cluster::shared();
    let cfg = sharded_config(cluster).render();
    let ring = Ring::from_config(&Config::parse(&cfg).unwrap());
    drop(cfg);
    // A table of its own so parallel tests do not interfere.
    let proxy = Proxy::start(
        &sharded_config(cluster)
            .sharded_table("sp_tx", "account_id")
            .render(),
    );
    let mut p = connect(&proxy.url()).await;
    p.query_drop("DROP TABLE IF EXISTS sp_tx").await.unwrap();
    p.query_drop("CREATE TABLE sp_tx (account_id BIGINT PRIMARY KEY, v INT)")
        .await
        .unwrap();
    // Two keys on different shards.
    let a = 1i64;
    let b = (2..1000i64)
        .find(|k| ring.shard_for(&KeyValue::from(*k)) != ring.shard_for(&KeyValue::from(a)))
        .unwrap();
    let (sa, sb) = (
        ring.shard_for(&KeyValue::from(a)).to_string(),
        ring.shard_for(&KeyValue::from(b)).to_string(),
    );
    p.query_drop(format!(
        "INSERT INTO sp_tx (account_id, v) VALUES ({a}, 0), ({b}, 0)"
    ))
    .await
    .unwrap();
    // `single` mode: a transaction stays on its first shard (tests/two_phase.rs has `twopc`).
    p.query_drop("SET shardproxy_transaction_mode = 'single'")
        .await
        .unwrap();
    p.query_drop("BEGIN").await.unwrap();
    p.query_drop(format!("UPDATE sp_tx SET v = 1 WHERE account_id = {a}"))
        .await
        .unwrap();
    let e = server_error(
        p.query_drop(format!("UPDATE sp_tx SET v = 1 WHERE account_id = {b}"))
            .await,
    );
    assert_eq!(e.code, 1235);
    assert!(
        e.message.contains(&sa) && e.message.contains(&sb),
        "{}",
        e.message
    );
    // Reads elsewhere still work inside the transaction; the first shard's change is intact.
    let v: Option<i64> = p
        .query_first(format!("SELECT v FROM sp_tx WHERE account_id = {b}"))
        .await
        .unwrap();
    assert_eq!(v, Some(0));
    p.query_drop("COMMIT").await.unwrap();
    let vs: Vec<(i64, i64)> = p
        .query("SELECT account_id, v FROM sp_tx ORDER BY account_id")
        .await
        .unwrap();
    assert_eq!(
        vs,
        vec![
            (a.min(b), if a < b { 1 } else { 0 }),
            (a.max(b), if a < b { 0 } else { 1 })
        ]
    );
    // A hint sends a statement to one named shard.
    let n: Option<i64> = p
        .query_first(format!("/* shard={sb} */ SELECT COUNT(*) FROM sp_tx"))
        .await
        .unwrap();
    assert_eq!(n, Some(1));
    let e = server_error(p.query_drop("/* shard=nope */ SELECT 1").await);
    assert!(e.message.contains("nope"), "{}", e.message);
    // Writes without the key are refused unless the session allows them.
    let e = server_error(p.query_drop("UPDATE sp_tx SET v = 5").await);
    assert_eq!(e.code, 1235);
    assert!(
        e.message.contains("shardproxy_allow_scatter_writes"),
        "{}",
        e.message
    );
    p.query_drop("SET shardproxy_allow_scatter_writes = 1")
        .await
        .unwrap();
    p.query_drop("UPDATE sp_tx SET v = 5").await.unwrap();
    assert_eq!(p.affected_rows(), 2);
    // Changing the key column is refused.
    let e = server_error(
        p.query_drop(format!(
            "UPDATE sp_tx SET account_id = 9 WHERE account_id = {a}"
        ))
        .await,
    );
    assert_eq!(e.code, 1235);
    // PREVIEW names the shards and the SQL each gets.
    let rows: Vec<Row> = p.query("PREVIEW SELECT COUNT(*) FROM sp_tx").await.unwrap();
    assert_eq!(rows.len(), cluster.shards.len());
    let rows: Vec<(String, String, String)> = p
        .query(format!(
            "PREVIEW SELECT * FROM sp_tx WHERE account_id = {b}"
        ))
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].0, sb);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_statements_route_by_parameter_and_scatter_in_binary() {
    let cluster = Cluster::shared();
    let proxy = Proxy::start(
        &sharded_config(cluster)
            .sharded_table("sp_prep", "account_id")
            .render(),
    );
    let mut p = connect(&proxy.url()).await;
    p.query_drop("DROP TABLE IF EXISTS sp_prep").await.unwrap();
    p.query_drop("CREATE TABLE sp_prep (account_id BIGINT PRIMARY KEY, amount DECIMAL(20,2), day DATE, note VARCHAR(20))")
        .await
        .unwrap();
    for i in 1..=50i64 {
        p.exec_drop(
            "INSERT INTO sp_prep (account_id, amount, day, note) VALUES (?, ?, ?, ?)",
            (
                i,
                format!("{}.{:02}", i * 3, i % 100),
                format!("2026-11-{:02}", 1 + i % 28),
                format!("note {i}"),
            ),
        )
        .await
        .unwrap();
    }
    for i in [1i64, 17, 50] {
        let row: Option<(i64, String, String)> = p
            .exec_first(
                "SELECT account_id, amount, note FROM sp_prep WHERE account_id = ?",
                (i,),
            )
            .await
            .unwrap();
        assert_eq!(
            row,
            Some((i, format!("{}.{:02}", i * 3, i % 100), format!("note {i}")))
        );
    }
    // Spanning shards: executed as text per shard, merged, answered as binary rows.
    let rows: Vec<(i64, String, mysql_async::Value)> = p
        .exec("SELECT account_id, amount, day FROM sp_prep WHERE account_id BETWEEN ? AND ? ORDER BY account_id DESC LIMIT 5", (10, 40))
        .await
        .unwrap();
    assert_eq!(
        rows.iter().map(|r| r.0).collect::<Vec<_>>(),
        vec![40, 39, 38, 37, 36]
    );
    assert_eq!(rows[0].1, "120.40");
    // The DATE column arrives as a binary-protocol date, as from one server.
    assert!(
        matches!(
            rows[0].2,
            mysql_async::Value::Date(2026, 11, 13, 0, 0, 0, 0)
        ),
        "{:?}",
        rows[0].2
    );
    let total: Option<String> = p
        .exec_first("SELECT SUM(amount) FROM sp_prep WHERE account_id > ?", (0,))
        .await
        .unwrap();
    let expected: f64 = (1..=50)
        .map(|i| (i * 3) as f64 + (i % 100) as f64 / 100.0)
        .sum();
    assert_eq!(total, Some(format!("{expected:.2}")));
}

#[test]
fn sysbench_oltp_read_write_on_sharded_sbtest() {
    let cluster = Cluster::shared();
    let proxy = Proxy::start(&sharded_config(cluster).render());
    for s in &cluster.shards {
        s.primary
            .exec("CREATE DATABASE IF NOT EXISTS sbtest_sharded");
    }
    let sb = Sysbench::new("oltp_read_write", proxy.port(), "sbtest_sharded")
        .tables(2)
        .table_size(1000)
        // Explicit ids (the key), and no multi-shard transactions: each statement stands alone.
        .option("--auto-inc=off")
        .option("--skip-trx=on");
    sb.cleanup();
    sb.prepare();
    // Rows were spread over every shard.
    for s in &cluster.shards {
        let n: u64 = s
            .primary
            .query_value("SELECT COUNT(*) FROM sbtest_sharded.sbtest1")
            .unwrap()
            .parse()
            .unwrap();
        assert!(n > 100, "shard {} has {n} rows", s.name);
    }
    // Without transactions, two threads may delete and re-insert the same id at once: the
    // duplicate key is sysbench's race, not the proxy's (one server answers the same).
    let report = sb.run(4, 5, &["--mysql-ignore-errors=1062"]);
    assert!(report.text.contains("transactions:"), "{}", report.text);
    assert!(report.ignored_errors < 20, "{}", report.text);
}

/// The proxy config with `sp_seq` sharded by `id`, its keys from a global sequence reserved in
/// blocks of `cache` ids.
fn sequence_config(cluster: &Cluster, cache: u64) -> String {
    sharded_config(cluster)
        .sequence_table("sp_seq", "id", None, Some(cache))
        .render()
}

/// `(id, conn, n)` of every row of `fund.sp_seq`, read on each shard's primary directly, with
/// the shard it was found on.
fn seq_rows_by_shard(cluster: &Cluster) -> Vec<(u64, i64, i64, String)> {
    let mut out = Vec::new();
    for s in &cluster.shards {
        for r in s.primary.query("SELECT id, conn, n FROM fund.sp_seq") {
            out.push((
                r[0].parse().unwrap(),
                r[1].parse().unwrap(),
                r[2].parse().unwrap(),
                s.name.clone(),
            ));
        }
    }
    out
}

/// Global sequence (issue 4): ids generated by two proxies sharing the cluster, from several
/// connections at once, never collide; every row lives on the shard the ring names for its
/// id; a multi-row INSERT gets consecutive ids and reports the first as its insert id, which
/// LAST_INSERT_ID() then answers; the sequence starts above the largest existing key; a
/// restarted proxy continues after the ids reserved before (no reuse).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequence_ids_are_unique_placed_by_the_ring_and_survive_a_restart() {
    let cluster = Cluster::shared();
    let cfg = sequence_config(cluster, 7);
    let ring = Ring::from_config(&Config::parse(&cfg).unwrap());
    let proxy_a = Proxy::start(&cfg);
    let proxy_b = Proxy::start(&cfg);
    let mut p = connect(&proxy_a.url()).await;
    p.query_drop("DROP TABLE IF EXISTS sp_seq").await.unwrap();
    p.query_drop("CREATE TABLE sp_seq (id BIGINT NOT NULL PRIMARY KEY, conn INT, n INT)")
        .await
        .unwrap();
    // Rows that exist before the sequence does (explicit keys): it must start above them.
    p.query_drop("INSERT INTO sp_seq (id, conn, n) VALUES (3, -1, 0), (777, -1, 1), (15, -1, 2)")
        .await
        .unwrap();
    // PREVIEW says where the key comes from.
    let rows: Vec<(String, String, String)> = p
        .query("PREVIEW INSERT INTO sp_seq (conn, n) VALUES (1, 2)")
        .await
        .unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert!(
        rows[0].2.contains("global sequence 'sp_seq'") && rows[0].1.contains("<next id>"),
        "{rows:?}"
    );
    p.query_drop("INSERT INTO sp_seq (conn, n) VALUES (0, 0)")
        .await
        .unwrap();
    assert_eq!(
        p.last_insert_id(),
        Some(778),
        "first id after the largest key 777"
    );
    let last: Option<u64> = p.query_first("SELECT LAST_INSERT_ID()").await.unwrap();
    assert_eq!(last, Some(778));

    // 6 connections, 3 on each proxy, single-row and 3-row INSERTs at once. Blocks of 7 ids
    // make both proxies reserve many times while the other is reserving too.
    let mut tasks = Vec::new();
    for conn_no in 1..=6i64 {
        let url = if conn_no % 2 == 0 {
            proxy_a.url()
        } else {
            proxy_b.url()
        };
        tasks.push(tokio::spawn(async move {
            let mut c = connect(&url).await;
            // (first id, rows) of every statement.
            let mut stmts = Vec::new();
            for i in 0..25i64 {
                if i % 3 == 0 {
                    c.query_drop(format!(
                        "INSERT INTO sp_seq (conn, n) VALUES ({conn_no}, {}), ({conn_no}, {}), \
                         ({conn_no}, {})",
                        i * 10,
                        i * 10 + 1,
                        i * 10 + 2
                    ))
                    .await
                    .unwrap();
                    assert_eq!(c.affected_rows(), 3);
                    stmts.push((c.last_insert_id().unwrap(), i * 10, 3));
                } else {
                    c.exec_drop(
                        "INSERT INTO sp_seq (id, conn, n) VALUES (?, ?, ?)",
                        (None::<i64>, conn_no, i * 10),
                    )
                    .await
                    .unwrap();
                    stmts.push((c.last_insert_id().unwrap(), i * 10, 1));
                }
                let last: Option<u64> = c.query_first("SELECT LAST_INSERT_ID()").await.unwrap();
                assert_eq!(last, Some(stmts.last().unwrap().0), "connection {conn_no}");
            }
            (conn_no, stmts)
        }));
    }
    let mut expected: std::collections::HashMap<(i64, i64), u64> = Default::default();
    for t in tasks {
        let (conn_no, stmts) = t.await.unwrap();
        for (first, n0, rows) in stmts {
            for k in 0..rows {
                expected.insert((conn_no, n0 + k as i64), first + k);
            }
        }
    }
    let rows = seq_rows_by_shard(cluster);
    assert_eq!(rows.len(), 4 + expected.len(), "rows on the shards");
    let mut seen = std::collections::HashSet::new();
    for (id, conn, n, shard) in &rows {
        assert!(seen.insert(*id), "id {id} exists twice");
        assert_eq!(
            ring.shard_for(&KeyValue::from(*id)),
            shard,
            "row {id} on the wrong shard"
        );
        if *conn > 0 {
            assert!(*id > 778, "{id}");
            // Each statement's rows got consecutive ids starting at its insert id.
            assert_eq!(expected.get(&(*conn, *n)), Some(id), "row ({conn}, {n})");
        }
    }
    let per_shard: Vec<usize> = cluster
        .shards
        .iter()
        .map(|s| rows.iter().filter(|r| r.3 == s.name).count())
        .collect();
    assert!(per_shard.iter().all(|n| *n > 20), "uneven: {per_shard:?}");

    // The state row: past every id handed out.
    let s1 = &cluster.shard("s1").primary;
    let next: u64 = s1
        .query_value("SELECT next_id FROM shardproxy.sequences WHERE name = 'sp_seq'")
        .unwrap()
        .parse()
        .unwrap();
    let max = rows.iter().map(|r| r.0).max().unwrap();
    assert!(next > max, "next_id {next} <= max id {max}");
    // A restarted proxy continues after the reserved blocks: its first id is next_id.
    drop(p);
    drop(proxy_a);
    drop(proxy_b);
    let proxy = Proxy::start(&cfg);
    let mut p = connect(&proxy.url()).await;
    p.query_drop("INSERT INTO sp_seq (conn, n) VALUES (99, 0)")
        .await
        .unwrap();
    assert_eq!(p.last_insert_id(), Some(next), "first id after the restart");
    let on: Vec<Vec<String>> = cluster
        .shard(ring.shard_for(&KeyValue::from(next)))
        .primary
        .query(&format!("SELECT conn FROM fund.sp_seq WHERE id = {next}"));
    assert_eq!(on, vec![vec!["99".to_string()]]);
    // An explicit key is kept and placed by it; NULL asks for an id.
    p.query_drop("INSERT INTO sp_seq (id, conn, n) VALUES (5, 98, 0), (NULL, 98, 1)")
        .await
        .unwrap();
    assert_eq!(p.last_insert_id(), Some(next + 1));
    // ROW_COUNT() of that split INSERT is the sum over the shards.
    let rc: Option<i64> = p.query_first("SELECT ROW_COUNT()").await.unwrap();
    assert_eq!(rc, Some(2));
    // Inside a transaction bound to a shard, one-row INSERTs get ids placed on that shard.
    let bound = ring.shard_for(&KeyValue::from(5u64)).to_string();
    p.query_drop("SET shardproxy_transaction_mode = 'single'")
        .await
        .unwrap();
    p.query_drop("BEGIN").await.unwrap();
    p.query_drop("UPDATE sp_seq SET n = n + 1 WHERE id = 5")
        .await
        .unwrap();
    let mut in_tx = Vec::new();
    for i in 0..6 {
        p.query_drop(format!("INSERT INTO sp_seq (conn, n) VALUES (97, {i})"))
            .await
            .unwrap();
        in_tx.push(p.last_insert_id().unwrap());
    }
    // Twenty consecutive ids span both shards: that would be a distributed transaction.
    let rows: Vec<String> = (0..20).map(|i| format!("(96, {i})")).collect();
    let e = server_error(
        p.query_drop(format!(
            "INSERT INTO sp_seq (conn, n) VALUES {}",
            rows.join(", ")
        ))
        .await,
    );
    assert_eq!(e.code, 1235, "{}", e.message);
    p.query_drop("COMMIT").await.unwrap();
    assert!(in_tx.windows(2).all(|w| w[0] < w[1]), "{in_tx:?}");
    let on_bound: Vec<u64> = cluster
        .shard(&bound)
        .primary
        .query("SELECT id FROM fund.sp_seq WHERE conn = 97 ORDER BY id")
        .into_iter()
        .map(|r| r[0].parse().unwrap())
        .collect();
    assert_eq!(
        on_bound, in_tx,
        "rows of the transaction on its shard {bound}"
    );
    // A sequence whose table does not exist: the server's error, with its code.
    let nowhere = Proxy::start(
        &sharded_config(cluster)
            .sequence_table("sp_nowhere", "id", None, None)
            .render(),
    );
    let mut pn = connect(&nowhere.url()).await;
    let e = server_error(
        pn.query_drop("INSERT INTO sp_nowhere (conn) VALUES (1)")
            .await,
    );
    assert_eq!(e.code, 1146, "{}", e.message);
    assert!(e.message.contains("sp_nowhere"), "{}", e.message);
    // A sharded table without a sequence still refuses an INSERT without the key, and says
    // how to get one.
    let e = server_error(
        p.query_drop("INSERT INTO sp_accounts (name) VALUES ('x')")
            .await,
    );
    assert_eq!(e.code, 1235);
    assert!(e.message.contains("sequence = true"), "{}", e.message);
}

/// ROW_COUNT(), warnings and FOUND_ROWS() right after statements the proxy ran on several
/// shards answer what one MariaDB would: summed affected rows, every shard's warnings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_count_and_warnings_after_multi_shard_statements() {
    let cluster = Cluster::shared();
    let cfg = sharded_config(cluster)
        .sharded_table("sp_rc", "account_id")
        .render();
    let ring = Ring::from_config(&Config::parse(&cfg).unwrap());
    let proxy = Proxy::start(&cfg);
    let mut p = connect(&proxy.url()).await;
    p.query_drop("DROP TABLE IF EXISTS sp_rc").await.unwrap();
    p.query_drop("CREATE TABLE sp_rc (account_id BIGINT PRIMARY KEY, v INT)")
        .await
        .unwrap();
    let a = 1i64;
    let b = (11..1000i64)
        .find(|k| ring.shard_for(&KeyValue::from(*k)) != ring.shard_for(&KeyValue::from(a)))
        .unwrap();
    let ids: Vec<i64> = (1..=10).chain([b]).collect();
    let values: Vec<String> = ids.iter().map(|i| format!("({i}, 0)")).collect();
    p.query_drop(format!(
        "INSERT INTO sp_rc (account_id, v) VALUES {}",
        values.join(", ")
    ))
    .await
    .unwrap();
    let rc: Option<i64> = p.query_first("SELECT ROW_COUNT()").await.unwrap();
    assert_eq!(rc, Some(ids.len() as i64));
    // Asked twice: the second SELECT asks about the first (a SELECT: -1).
    let rc: Option<i64> = p.query_first("SELECT ROW_COUNT()").await.unwrap();
    assert_eq!(rc, Some(-1));
    p.query_drop(format!(
        "UPDATE sp_rc SET v = 1 WHERE account_id IN ({a}, {b}, 5000)"
    ))
    .await
    .unwrap();
    let rc: Option<(i64, i64)> = p
        .query_first("SELECT ROW_COUNT() AS n, ROW_COUNT() * 10")
        .await
        .unwrap();
    assert_eq!(rc, Some((2, 20)));
    // Warnings of both shards: one duplicate key per row.
    p.query_drop(format!(
        "INSERT IGNORE INTO sp_rc (account_id, v) VALUES ({a}, 9), ({b}, 9)"
    ))
    .await
    .unwrap();
    let rc: Option<i64> = p.query_first("SELECT ROW_COUNT()").await.unwrap();
    assert_eq!(rc, Some(0));
    let w: Vec<(String, u32, String)> = p.query("SHOW WARNINGS").await.unwrap();
    assert_eq!(w.len(), 2, "{w:?}");
    assert!(w.iter().all(|r| r.1 == 1062), "{w:?}");
    let n: Option<u64> = p.query_first("SELECT @@warning_count").await.unwrap();
    assert_eq!(n, Some(2));
    // SHOW WARNINGS does not clear them; a statement using a table does.
    let w: Vec<(String, u32, String)> = p.query("SHOW WARNINGS LIMIT 1").await.unwrap();
    assert_eq!(w.len(), 1);
    let _: Vec<i64> = p
        .query(format!("SELECT v FROM sp_rc WHERE account_id = {a}"))
        .await
        .unwrap();
    let w: Vec<(String, u32, String)> = p.query("SHOW WARNINGS").await.unwrap();
    assert!(w.is_empty(), "{w:?}");
    // DELETE over several keys; then FOUND_ROWS() after a scatter read.
    p.query_drop(format!(
        "DELETE FROM sp_rc WHERE account_id IN ({a}, {b}, 2, 3)"
    ))
    .await
    .unwrap();
    let rc: Option<i64> = p.query_first("SELECT ROW_COUNT()").await.unwrap();
    assert_eq!(rc, Some(4));
    let got: Vec<i64> = p
        .query("SELECT account_id FROM sp_rc ORDER BY account_id LIMIT 4")
        .await
        .unwrap();
    assert_eq!(got.len(), 4);
    let found: Option<u64> = p.query_first("SELECT FOUND_ROWS()").await.unwrap();
    assert_eq!(found, Some(4));
    // FOUND_ROWS() right after a multi-shard write would need the SELECT before it: refused,
    // never guessed.
    p.query_drop(format!("DELETE FROM sp_rc WHERE account_id IN (4, 5, {b})"))
        .await
        .unwrap();
    let e = server_error(p.query_drop("SELECT FOUND_ROWS()").await);
    assert_eq!(e.code, 1235, "{}", e.message);
    // After a refusal, SHOW WARNINGS lists it, as a server lists its own error.
    let e = server_error(p.query_drop("UPDATE sp_rc SET v = 2").await);
    assert_eq!(e.code, 1235);
    let w: Vec<(String, u32, String)> = p.query("SHOW WARNINGS").await.unwrap();
    assert_eq!(w.len(), 1, "{w:?}");
    assert_eq!((w[0].0.as_str(), w[0].1), ("Error", 1235));
    assert_eq!(w[0].2, e.message);
    let rc: Option<i64> = p.query_first("SELECT ROW_COUNT()").await.unwrap();
    assert_eq!(rc, Some(-1));
}

/// Two proxies whose first INSERTs into a table with a new sequence race to create its state
/// row: one creates it, the other retries and reads it; ids never collide and start above the
/// existing keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_proxies_creating_a_sequence_at_once_share_it() {
    let cluster = Cluster::shared();
    let cfg = sharded_config(cluster)
        .sequence_table("sp_seq2", "id", Some("sp_race"), Some(5))
        .render();
    let proxies = [Proxy::start(&cfg), Proxy::start(&cfg)];
    let mut p = connect(&proxies[0].url()).await;
    p.query_drop("DROP TABLE IF EXISTS sp_seq2").await.unwrap();
    p.query_drop("CREATE TABLE sp_seq2 (id BIGINT NOT NULL PRIMARY KEY, conn INT)")
        .await
        .unwrap();
    p.query_drop("INSERT INTO sp_seq2 (id, conn) VALUES (500, 0)")
        .await
        .unwrap();
    // Both proxies open their connections first, then all insert at once.
    let mut conns = Vec::new();
    for i in 0..8usize {
        conns.push(connect(&proxies[i % 2].url()).await);
    }
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(conns.len()));
    let tasks: Vec<_> = conns
        .into_iter()
        .enumerate()
        .map(|(i, mut c)| {
            let start = start.clone();
            tokio::spawn(async move {
                start.wait().await;
                let mut ids = Vec::new();
                for _ in 0..10 {
                    c.query_drop(format!("INSERT INTO sp_seq2 (conn) VALUES ({})", i + 1))
                        .await
                        .unwrap();
                    ids.push(c.last_insert_id().unwrap());
                }
                ids
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let unique: std::collections::BTreeSet<u64> = all.iter().copied().collect();
    assert_eq!(unique.len(), 80, "duplicate ids handed out: {all:?}");
    assert!(*unique.first().unwrap() > 500, "{unique:?}");
    let stored: usize = cluster
        .shards
        .iter()
        .map(|s| {
            s.primary
                .query("SELECT id FROM fund.sp_seq2 WHERE conn > 0")
                .len()
        })
        .sum();
    assert_eq!(stored, 80);
    let rows = cluster
        .shard("s1")
        .primary
        .query("SELECT COUNT(*) FROM shardproxy.sequences WHERE name = 'sp_race'");
    assert_eq!(rows, vec![vec!["1".to_string()]]);
    let logs = format!("{}{}", proxies[0].log(), proxies[1].log());
    assert_eq!(
        logs.matches("created sequence above the largest existing key")
            .count(),
        1,
        "exactly one proxy creates the sequence"
    );
    println!(
        "reservations retried after a concurrent creation: {}",
        logs.matches("retrying the id reservation").count()
    );
}

/// `INSERT INTO t VALUES …` without a column list into a sharded table: the proxy reads the
/// table's column order from the default shard, so each row goes to the shard its key names
/// and every value lands in its own column (an INVISIBLE column is skipped, as MariaDB skips
/// it); the same statement on a plain server gives the same rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insert_without_a_column_list_is_placed_by_its_key() {
    let cluster = Cluster::shared();
    let cfg = sharded_config(cluster)
        .sharded_table("sp_nocols", "account_id")
        .render();
    let proxy = Proxy::start(&cfg);
    let mut p = connect(&proxy.url()).await;
    for sql in [
        "DROP TABLE IF EXISTS sp_nocols",
        // The key is not the first column, and a hidden column sits between the others.
        "CREATE TABLE sp_nocols (name VARCHAR(20), account_id BIGINT PRIMARY KEY, \
         secret INT INVISIBLE DEFAULT 7, balance DECIMAL(20,2))",
    ] {
        p.query_drop(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    let rows: Vec<String> = (1..=40).map(|i| format!("('n{i}', {i}, {i}.50)")).collect();
    p.query_drop(format!("INSERT INTO sp_nocols VALUES {}", rows.join(", ")))
        .await
        .unwrap();
    assert_eq!(p.affected_rows(), 40);
    // Qualified and quoted names, REPLACE, one row.
    p.query_drop("REPLACE INTO fund.`sp_nocols` VALUE ('again', 41, 41.50)")
        .await
        .unwrap();
    // Prepared: placed at execute by the bound key.
    for (name, id) in [("prep", 42i64), ("prep", 43)] {
        p.exec_drop(
            "INSERT INTO sp_nocols VALUES (?, ?, ?)",
            (name, id, format!("{id}.50")),
        )
        .await
        .unwrap();
    }
    let ring = Ring::from_config(&Config::parse(&cfg).unwrap());
    let mut seen = 0;
    for s in &cluster.shards {
        for r in s
            .primary
            .query("SELECT account_id, name, balance, secret FROM fund.sp_nocols")
        {
            let id: i64 = r[0].parse().unwrap();
            assert_eq!(ring.shard_for(&KeyValue::from(id)), s.name, "row {id}");
            let name = match id {
                41 => "again".to_string(),
                42 | 43 => "prep".to_string(),
                _ => format!("n{id}"),
            };
            assert_eq!(r[1], name);
            assert_eq!(r[2], format!("{id}.50"));
            assert_eq!(r[3], "7");
            seen += 1;
        }
    }
    assert_eq!(seen, 43);
    // A row of the wrong width gets MariaDB's own error, not a misplaced row.
    let e = server_error(
        p.query_drop("INSERT INTO sp_nocols VALUES ('short', 99)")
            .await,
    );
    assert!(
        e.code == 1136 || e.code == 1235,
        "expected a column-count error or a refusal, got {e:?}"
    );
    assert_eq!(
        cluster
            .shards
            .iter()
            .map(|s| s
                .primary
                .query("SELECT COUNT(*) FROM fund.sp_nocols WHERE account_id = 99")[0][0]
                .clone())
            .collect::<Vec<_>>(),
        vec!["0".to_string(); cluster.shards.len()]
    );
}
