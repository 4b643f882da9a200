//! The admin port through real MySQL clients: mysql_async and the `mariadb` CLI.

mod harness;

use std::process::Output;

use harness::fixed_ops::{start_admin, FixedOps, DOWN_BACKEND};
use harness::mysql::{tcp_opts, text_rows};
use mysql_async::prelude::Queryable;
use mysql_async::Conn;
use shardproxy::admin::command::STATEMENTS;

/// Every client step gets 10 s: a protocol bug must fail the test, not hang CI.
async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(std::time::Duration::from_secs(10), f)
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer within 10 s"))
}

async fn connect(port: u16) -> Conn {
    within("connect", Conn::new(tcp_opts(port, "admin", "admin")))
        .await
        .unwrap()
}

/// Column names and rows as strings (NULL → None).
async fn query(conn: &mut Conn, sql: &str) -> (Vec<String>, Vec<Vec<Option<String>>>) {
    within(sql, text_rows(conn, sql)).await
}

async fn server_error(conn: &mut Conn, sql: &str) -> mysql_async::ServerError {
    match within(sql, conn.query_drop(sql)).await {
        Err(mysql_async::Error::Server(e)) => e,
        other => panic!("{sql}: expected a server error, got {other:?}"),
    }
}

fn setup() -> (tempfile::TempDir, std::sync::Arc<FixedOps>) {
    let dir = tempfile::tempdir().unwrap();
    let ops = FixedOps::new(dir.path());
    (dir, ops)
}

#[tokio::test(flavor = "multi_thread")]
async fn show_statements_answer_result_sets() {
    let (_dir, ops) = setup();
    let port = start_admin(ops).await;
    let mut conn = connect(port).await;

    let (cols, rows) = query(&mut conn, "SHOW SHARDS").await;
    assert_eq!(cols, ["shard", "primary", "replicas", "weight", "status"]);
    assert_eq!(rows.len(), 3);
    assert_eq!(
        rows[1],
        [
            Some("s2".into()),
            Some("127.0.0.1:3321".into()),
            Some("127.0.0.1:3322".into()),
            Some("2".into()),
            Some("degraded".into())
        ]
    );

    let (cols, rows) = query(&mut conn, "show backends;").await;
    assert_eq!(
        cols,
        [
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
            "extra_gtids"
        ]
    );
    assert_eq!(rows.len(), 5);
    let down = rows
        .iter()
        .find(|r| r[0].as_deref() == Some(DOWN_BACKEND))
        .unwrap();
    assert_eq!(down[2].as_deref(), Some("replica"));
    assert_eq!(down[3].as_deref(), Some("down"));
    assert_eq!(down[4], None, "lag of a down replica is NULL");
    assert_eq!(
        down[12].as_deref(),
        Some("no"),
        "a down replica answers no reads"
    );
    assert_eq!(rows[0][4], None, "a primary has no lag");

    let (cols, rows) = query(&mut conn, "  Show Ring ").await;
    assert_eq!(cols, ["shard", "vnodes", "share_pct"]);
    assert_eq!(
        rows[1],
        [Some("s2".into()), Some("512".into()), Some("50.00".into())]
    );

    let (cols, rows) = query(&mut conn, "SHOW SESSIONS").await;
    assert_eq!(
        cols,
        [
            "id",
            "client",
            "user",
            "db",
            "state",
            "pinned",
            "statement",
            "time_s"
        ]
    );
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[1][5].as_deref(), Some("yes"));
    assert_eq!(rows[1][7].as_deref(), Some("12"));

    let (cols, rows) = query(&mut conn, "SHOW PROXY STATUS").await;
    assert_eq!(cols, ["Variable_name", "Value"]);
    assert!(rows.contains(&vec![Some("qps".into()), Some("1234.5".into())]));

    let (cols, rows) = query(&mut conn, "SHOW TABLE RULES").await;
    assert_eq!(cols, ["table", "kind", "shard_key", "shards"]);
    assert_eq!(
        rows,
        [
            [
                Some("accounts".to_string()),
                Some("sharded".into()),
                Some("user_id".into()),
                Some("s1,s2,s3".into())
            ],
            [
                Some("currencies".into()),
                Some("reference".into()),
                None,
                Some("s1,s2,s3".into())
            ],
            [
                Some("*".into()),
                Some("default".into()),
                None,
                Some("s1".into())
            ],
        ]
    );

    let (cols, rows) = query(&mut conn, "help").await;
    assert_eq!(cols, ["statement", "description"]);
    assert_eq!(rows.len(), STATEMENTS.len());
}

#[tokio::test(flavor = "multi_thread")]
async fn preview_and_where_is() {
    let (_dir, ops) = setup();
    let port = start_admin(ops).await;
    let mut conn = connect(port).await;

    let (cols, rows) = query(&mut conn, "PREVIEW SELECT COUNT(*) FROM accounts;").await;
    assert_eq!(cols, ["step", "shard", "sql", "merge"]);
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0][2].as_deref(), Some("SELECT COUNT(*) FROM accounts"));
    let e = server_error(&mut conn, "PREVIEW garbage here").await;
    assert_eq!(e.code, 1064);

    let (cols, rows) = query(&mut conn, "WHERE IS accounts 'abc'").await;
    assert_eq!(cols, ["table", "key", "shard"]);
    // 'a'+'b'+'c' = 294 = 0 mod 3 → s1 in FixedOps.
    assert_eq!(
        rows,
        [[
            Some("accounts".into()),
            Some("abc".into()),
            Some("s1".into())
        ]]
    );
    let e = server_error(&mut conn, "WHERE IS nosuch 1").await;
    assert_eq!(e.code, 1210);
    assert!(e.message.contains("not sharded"), "{}", e.message);
    let e = server_error(&mut conn, "WHERE IS accounts").await;
    assert_eq!(e.code, 1064);
    assert!(e.message.contains("WHERE IS <table> <key>"));
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_switchover_reshard() {
    let (_dir, ops) = setup();
    let port = start_admin(ops).await;
    let mut conn = connect(port).await;

    conn.query_drop("KILL QUERY 7").await.unwrap();
    conn.query_drop("kill 8;").await.unwrap();
    let (_, rows) = query(&mut conn, "SHOW SESSIONS").await;
    assert_eq!(rows.len(), 1, "KILL 8 removed session 8");
    assert_eq!(rows[0][0].as_deref(), Some("7"));
    assert_eq!(rows[0][6], None, "KILL QUERY 7 stopped its statement");
    let e = server_error(&mut conn, "KILL 99").await;
    assert_eq!(e.code, 1094);
    assert_eq!(e.message, "Unknown thread id: 99");
    assert_eq!(e.state, "HY000");

    let e = server_error(&mut conn, "SWITCHOVER s1").await;
    assert_eq!(e.code, 1235);
    assert!(e.message.contains("not supported yet"), "{}", e.message);
    // The fixed backend reports a move in its catch-up: the admin port renders its rows.
    let (cols, rows) = query(&mut conn, "SHOW RESHARD STATUS").await;
    assert_eq!(cols[0], "phase");
    assert_eq!(rows.len(), harness::fixed_ops::RESHARD_ROWS.len());
    assert_eq!(rows[0][0].as_deref(), Some("catch-up"));
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_statement_lists_the_statements_that_exist() {
    let (_dir, ops) = setup();
    let port = start_admin(ops).await;
    let mut conn = connect(port).await;
    let e = server_error(&mut conn, "SELECT * FROM accounts").await;
    assert_eq!(e.code, 1064);
    assert_eq!(e.state, "42000");
    for (syntax, _) in STATEMENTS {
        assert!(
            e.message.contains(syntax),
            "{syntax} missing: {}",
            e.message
        );
    }
    // The session survives the error.
    let (_, rows) = query(&mut conn, "SHOW SHARDS").await;
    assert_eq!(rows.len(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn reload_config_shows_changes_and_rejects_a_bad_file() {
    let (_dir, ops) = setup();
    let port = start_admin(ops.clone()).await;
    let mut conn = connect(port).await;

    let (cols, rows) = query(&mut conn, "RELOAD CONFIG").await;
    assert_eq!(cols, ["change"]);
    assert_eq!(rows, [[Some("no changes".to_string())]]);

    let text = harness::fixed_ops::config().replace("127.0.0.1:3331", "127.0.0.1:3333");
    std::fs::write(&ops.config_path, text).unwrap();
    let (_, rows) = query(&mut conn, "reload config;").await;
    assert_eq!(
        rows,
        [[Some(
            r#"shards[2].primary: "127.0.0.1:3331" -> "127.0.0.1:3333""#.to_string()
        )]]
    );
    let (_, rows) = query(&mut conn, "SHOW SHARDS").await;
    assert_eq!(rows[2][1].as_deref(), Some("127.0.0.1:3333"));

    // A bad file: the reason comes back, the running config stays.
    let bad =
        harness::fixed_ops::config().replace("default_shard = \"s1\"", "default_shard = \"s9\"");
    std::fs::write(&ops.config_path, bad).unwrap();
    let e = server_error(&mut conn, "RELOAD CONFIG").await;
    assert_eq!(e.code, 1105);
    assert!(e.message.contains("s9"), "{}", e.message);
    let (_, rows) = query(&mut conn, "SHOW SHARDS").await;
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[2][1].as_deref(), Some("127.0.0.1:3333"));
}

#[tokio::test(flavor = "multi_thread")]
async fn authentication() {
    let (_dir, ops) = setup();
    let port = start_admin(ops.clone()).await;
    // password_hash user.
    let mut conn = Conn::new(tcp_opts(port, "ops", "admin")).await.unwrap();
    let (_, rows) = query(&mut conn, "SELECT CURRENT_USER()").await;
    assert_eq!(rows[0][0].as_deref(), Some("ops@%"));
    drop(conn);

    for (user, pass) in [("admin", "wrong"), ("nobody", "admin"), ("admin", "")] {
        match Conn::new(tcp_opts(port, user, pass)).await {
            Err(mysql_async::Error::Server(e)) => {
                assert!(e.code == 1698 || e.code == 1045, "{user}: {e:?}")
            }
            other => panic!("{user}/{pass} must be refused, got {other:?}"),
        }
    }

    // Admin users follow a config reload.
    let text = harness::fixed_ops::config().replace("password = \"admin\"", "password = \"n3w\"");
    std::fs::write(&ops.config_path, text).unwrap();
    let mut conn = connect(port).await;
    let (_, rows) = query(&mut conn, "RELOAD CONFIG").await;
    assert_eq!(
        rows,
        [[Some("admin_users[0].password: (changed)".to_string())]]
    );
    assert!(Conn::new(tcp_opts(port, "admin", "admin")).await.is_err());
    Conn::new(tcp_opts(port, "admin", "n3w")).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn client_housekeeping_statements() {
    let (_dir, ops) = setup();
    let port = start_admin(ops).await;
    // A database in the handshake is accepted.
    let mut conn = Conn::new(tcp_opts(port, "admin", "admin").db_name(Some("fund")))
        .await
        .unwrap();
    conn.query_drop("SET NAMES utf8mb4").await.unwrap();
    conn.query_drop("SET autocommit = 1").await.unwrap();
    conn.query_drop("USE fund").await.unwrap();
    let (cols, rows) = query(&mut conn, "select @@version_comment limit 1").await;
    assert_eq!(cols, ["@@version_comment"]);
    assert_eq!(rows[0][0].as_deref(), Some("shardproxy admin port"));
    let (_, rows) = query(&mut conn, "SELECT DATABASE(), @@max_allowed_packet").await;
    assert_eq!(rows[0], [None, Some("67108864".into())]);
    let e = server_error(&mut conn, "PREPARE x FROM 'SHOW SHARDS'").await;
    assert_eq!(e.code, 1064);
    // Binary protocol: refused with a clear error, the session goes on.
    assert!(conn.exec_drop("SHOW SHARDS", ()).await.is_err());
    let (_, rows) = query(&mut conn, "SHOW SHARDS").await;
    assert_eq!(rows.len(), 3);
}

fn mariadb(port: u16, args: &[&str]) -> Output {
    harness::mariadb_cli(port, "admin", "admin")
        .args(args)
        .output()
        .expect("the mariadb CLI must be installed (Debian package mariadb-client)")
}

#[tokio::test(flavor = "multi_thread")]
async fn mariadb_cli_prints_tables() {
    let (_dir, ops) = setup();
    let port = start_admin(ops).await;

    let out = tokio::task::spawn_blocking(move || {
        (
            mariadb(port, &["--batch", "-e", "SHOW SHARDS"]),
            mariadb(port, &["--table", "-e", "show backends;"]),
            mariadb(port, &["--batch", "-e", "SHOW NONSENSE"]),
            mariadb(
                port,
                &["--batch", "-e", "SHOW RING; WHERE IS accounts 42; HELP"],
            ),
        )
    })
    .await
    .unwrap();

    let (shards, backends, wrong, multi) = out;
    let stdout = String::from_utf8_lossy(&shards.stdout);
    assert!(shards.status.success(), "{shards:?}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], "shard\tprimary\treplicas\tweight\tstatus");
    assert_eq!(lines[1], "s1\t127.0.0.1:3311\t127.0.0.1:3312\t1\tok");
    assert_eq!(lines[3], "s3\t127.0.0.1:3331\t\t1\tok");
    assert_eq!(lines.len(), 4);

    let table = String::from_utf8_lossy(&backends.stdout);
    assert!(backends.status.success(), "{backends:?}");
    assert!(table.starts_with("+-"), "{table}");
    assert!(
        table.contains("| address        | shard | role    | health | lag_seconds |"),
        "{table}"
    );
    assert!(
        table.contains("| 127.0.0.1:3322 | s2    | replica | down   |        NULL |"),
        "{table}"
    );

    assert!(!wrong.status.success());
    let err = String::from_utf8_lossy(&wrong.stderr);
    assert!(
        err.contains("ERROR 1064 (42000)")
            && err.contains("Unknown admin statement 'SHOW NONSENSE'"),
        "{err}"
    );
    assert!(err.contains("SHOW SHARDS, SHOW BACKENDS"), "{err}");

    let text = String::from_utf8_lossy(&multi.stdout);
    assert!(multi.status.success(), "{multi:?}");
    assert!(
        text.contains("shard\tvnodes\tshare_pct\ns1\t256\t25.00\n"),
        "{text}"
    );
    assert!(text.contains("table\tkey\tshard\naccounts\t42\t"), "{text}");
    assert!(
        text.contains("statement\tdescription\nSHOW SHARDS\t"),
        "{text}"
    );
}
