//! The operator's side against the real proxy and a real cluster (issue 6): the admin port
//! through the mysql CLI, Prometheus metrics, and the status page in headless Chromium marking
//! a stopped backend as down.

mod harness;

use std::time::Duration;

use harness::{chromium_dom, http_get, Cluster, Proxy, ProxyConfig, APP_PASSWORD, APP_USER};

#[test]
fn admin_port_metrics_and_status_page_on_a_real_cluster() {
    // Its own cluster: this test stops a server.
    let mut cluster = Cluster::start(2, 1);
    let cfg = ProxyConfig::for_cluster(&cluster)
        .sharded_table("ops_accounts", "account_id")
        .backend("health_interval_ms = 200")
        .render();
    let proxy = Proxy::start(&cfg);
    proxy
        .cli_query("USE fund; CREATE TABLE IF NOT EXISTS ops_accounts (account_id BIGINT PRIMARY KEY, v INT)")
        .unwrap();
    proxy
        .cli_query(
            "USE fund; INSERT INTO ops_accounts (account_id, v) VALUES (1, 1), (2, 2), (3, 3)",
        )
        .unwrap();

    let shards = proxy.admin_query("SHOW SHARDS").unwrap();
    let names: Vec<&str> = shards.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(names, vec!["s1", "s2"]);
    let rules = proxy.admin_query("SHOW TABLE RULES").unwrap();
    assert!(rules.iter().any(|r| r[0] == "ops_accounts"), "{rules:?}");
    let ring = proxy.admin_query("SHOW RING").unwrap();
    assert_eq!(ring.len(), 2, "{ring:?}");
    let preview = proxy
        .admin_query("PREVIEW SELECT COUNT(*) FROM ops_accounts")
        .unwrap();
    assert_eq!(preview.len(), 2, "{preview:?}");
    let where_is = proxy.admin_query("WHERE IS ops_accounts 3").unwrap();
    let shard_of_3 = where_is[0]
        .iter()
        .find(|f| f.starts_with('s'))
        .cloned()
        .unwrap();
    let direct = cluster
        .shard(&shard_of_3)
        .primary
        .query("SELECT COUNT(*) FROM fund.ops_accounts WHERE account_id = 3");
    assert_eq!(
        direct[0][0], "1",
        "WHERE IS named {shard_of_3}, which lacks the row"
    );
    let e = proxy.admin_query("SHOW NONSENSE").unwrap_err();
    assert!(e.contains("SHOW SHARDS"), "{e}");
    let status = proxy.admin_query("SHOW PROXY STATUS").unwrap();
    assert!(
        status.iter().any(|r| r[0] == "plan_cache_hits"),
        "{status:?}"
    );

    // A live data-port session shows up in SHOW SESSIONS.
    let mut sleeper = harness::mariadb_cli(proxy.port(), APP_USER, APP_PASSWORD)
        .args(["fund", "-e", "SELECT SLEEP(3)"])
        .spawn()
        .unwrap();
    let seen = harness::wait_until(Duration::from_secs(5), || {
        proxy
            .admin_query("SHOW SESSIONS")
            .map(|rows| {
                rows.iter()
                    .any(|r| r.iter().any(|f| f.contains("SLEEP(3)")))
            })
            .unwrap_or(false)
    });
    assert!(seen, "running statement not in SHOW SESSIONS");
    let _ = sleeper.wait();

    // RELOAD CONFIG applies an edited file without dropping sessions; a bad file is refused
    // with the reason and the running config stays.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let url = proxy.url();
    let mut session = rt.block_on(harness::mysql::connect(&url));
    let path = proxy.config_path();
    let original = std::fs::read_to_string(&path).unwrap();
    // A change that moves rows (a new reference table) is refused, pointing to RESHARD PLAN,
    // and RESHARD PLAN on that file shows the change without applying anything.
    let moving = original.replace(
        "reference_tables = []",
        "reference_tables = [\"ops_rates\"]",
    );
    assert_ne!(
        moving, original,
        "config has no reference_tables line:\n{original}"
    );
    std::fs::write(&path, &moving).unwrap();
    let e = proxy.admin_query("RELOAD CONFIG").unwrap_err();
    assert!(e.contains("ops_rates") && e.contains("RESHARD PLAN"), "{e}");
    let plan = proxy
        .admin_query(&format!("RESHARD PLAN '{}'", path.display()))
        .unwrap();
    assert!(
        plan.iter()
            .any(|r| r[0] == "change" && r[1].contains("ops_rates")),
        "{plan:?}"
    );
    // A third shard: the ring moves about a third of each shard's keys to it, and the rows
    // of the sharded table are counted on the shards that hold them now.
    let three = original.replacen(
        "[sharding]",
        "[[shards]]\nname = \"s3\"\nprimary = \"127.0.0.1:1\"\n\n[sharding]",
        1,
    );
    assert_ne!(three, original, "config has no [sharding]:\n{original}");
    std::fs::write(&path, &three).unwrap();
    let e = proxy.admin_query("RELOAD CONFIG").unwrap_err();
    assert!(e.contains("shard s3 joins the ring"), "{e}");
    let plan = proxy
        .admin_query(&format!("RESHARD PLAN '{}'", path.display()))
        .unwrap();
    for pair in ["s1 -> s3", "s2 -> s3"] {
        assert!(
            plan.iter()
                .any(|r| r[0] == "ring" && r[1].starts_with(pair)),
            "{plan:?}"
        );
        assert!(
            plan.iter()
                .any(|r| r[0] == "table" && r[1].contains(&format!("ops_accounts {pair}: about "))),
            "rows not counted on the live shards: {plan:?}"
        );
    }
    // The command line shows the same plan from the two files, counting on the live shards.
    let running = path.with_extension("running.toml");
    std::fs::write(&running, &original).unwrap();
    let cli = std::process::Command::new(env!("CARGO_BIN_EXE_shardproxy"))
        .args(["reshard", "plan", "--from"])
        .arg(&running)
        .arg("--to")
        .arg(&path)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&cli.stdout);
    assert!(
        cli.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&cli.stderr)
    );
    assert!(out.contains("shard s3 joins the ring"), "{out}");
    assert!(out.contains("ops_accounts s1 -> s3: about "), "{out}");
    let shards = proxy.admin_query("SHOW SHARDS").unwrap();
    assert_eq!(shards.len(), 2, "a refused reload changed the shards");
    let rules = proxy.admin_query("SHOW TABLE RULES").unwrap();
    assert!(
        !rules.iter().any(|r| r[0] == "ops_rates"),
        "a refused reload changed the rules: {rules:?}"
    );
    // A change that moves nothing (one more user) is applied.
    let edited = original.replacen(
        "[[users]]",
        "[[users]]\nname = \"ops_extra\"\npassword = \"x\"\n\n[[users]]",
        1,
    );
    assert_ne!(edited, original, "config has no [[users]]:\n{original}");
    std::fs::write(&path, &edited).unwrap();
    let diff = proxy.admin_query("RELOAD CONFIG").unwrap();
    assert!(
        diff.iter().flatten().any(|l| l.contains("ops_extra")),
        "{diff:?}"
    );
    std::fs::write(&path, "this is not toml = = =").unwrap();
    let e = proxy.admin_query("RELOAD CONFIG").unwrap_err();
    assert!(e.to_lowercase().contains("config"), "{e}");
    // The running config (with the extra user) stays after the bad file.
    let login = harness::mariadb_cli(proxy.port(), "ops_extra", "x")
        .args(["-e", "SELECT 1"])
        .output()
        .unwrap();
    assert!(
        login.status.success(),
        "the user of the running config cannot log in: {}",
        String::from_utf8_lossy(&login.stderr)
    );
    std::fs::write(&path, &edited).unwrap();
    let one: Option<i64> = rt.block_on(async {
        use mysql_async::prelude::Queryable;
        session
            .query_first("SELECT v FROM fund.ops_accounts WHERE account_id = 2")
            .await
            .unwrap()
    });
    assert_eq!(
        one,
        Some(2),
        "the open session stopped working after the reload"
    );

    // Logs: a line per client connection and per error sent to a client.
    assert!(proxy
        .cli_query("SELECT * FROM fund.no_such_ops_table")
        .is_err());
    // The proxy logs the error after sending it: the CLI may exit before the line is written.
    harness::wait_until(Duration::from_secs(5), || {
        let log = proxy.log();
        log.contains("error sent to client") && log.contains("1146")
    });
    let log = proxy.log();
    assert!(log.contains("client connected"), "{log}");
    assert!(
        log.contains("error sent to client") && log.contains("1146"),
        "{log}"
    );

    // Metrics count the queries.
    let http = proxy.http_listen.clone().expect("http port configured");
    let metrics = http_get(&http, "/metrics").body;
    assert!(metrics.contains("shardproxy_queries_total"), "{metrics}");
    assert!(metrics.contains("shardproxy_backend_up"), "{metrics}");

    // The status page shows both shards, and marks a stopped replica as down.
    let url = format!("http://{http}/");
    let dom = chromium_dom(&url);
    for s in ["s1", "s2"] {
        assert!(dom.contains(&format!("data-shard=\"{s}\"")), "{dom}");
    }
    let replica = cluster.shards[1].replicas[0].addr();
    cluster.shards[1].replicas[0].stop();
    let down = harness::wait_until(Duration::from_secs(10), || {
        proxy
            .admin_query("SHOW BACKENDS")
            .map(|rows| {
                rows.iter()
                    .any(|r| r[0] == replica && r.iter().any(|f| f == "down"))
            })
            .unwrap_or(false)
    });
    assert!(
        down,
        "SHOW BACKENDS never marked {replica} down: {:?}",
        proxy.admin_query("SHOW BACKENDS")
    );
    let dom = chromium_dom(&url);
    let at = dom
        .find(&format!("data-backend=\"{replica}\""))
        .expect("backend row on the page");
    let row_end = at + dom[at..].find("</tr>").unwrap();
    assert!(dom[at..row_end].contains("DOWN"), "{}", &dom[at..row_end]);
}
