//! End-to-end tests of the `fund` application through shardproxy; they run with every
//! `cargo test` (nothing to enable). They need the `fund` binary, which the workspace builds
//! next to `shardproxy` (`scripts/test.sh` builds all bins first).
//!
//! `stack()` starts a 2-shard cluster per test and a proxy with `ProxyConfig::fund_schema()`
//! (tests/harness); everything else only needs a `mysql://…` URL, the shard names and the
//! `fund` binary. Seen once (2026-11-26, load average ~15): check_after_concurrent_load failed
//! in `fund seed` with "1159 Backend … unavailable: connect timed out after 3s".
//!
//! Each test starts its own cluster and drops/creates the tables (`fresh`).
//!
//! Scenarios:
//! 1. `domain_rules`: earning from D+1, instant cap 10,000.00/day, standard redemption paid by the
//!    next settlement, never more than available, income rounded down to the cent.
//! 2. `idempotent_requests`: a retried request id replays the original answer and moves money
//!    once (also under 20 concurrent identical requests); reusing an id with other parameters
//!    is 409; an account opened with its first subscription (one request) replays that
//!    subscription, and a refused one creates no account.
//! 3. `settlement_killed_halfway_pays_exactly_once`: SIGKILL a settlement mid-run (and a
//!    deterministic variant with --max-batches), rerun, every account is paid exactly once and
//!    the total equals the independently computed expectation; a third run settles nothing.
//! 4. `check_after_concurrent_load`: `fund load` and a settlement run concurrently, then
//!    `fund check` exits 0; a corrupted row makes it exit 1 naming the violation.

mod harness;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use rust_decimal::Decimal;
use serde_json::{json, Value};
use sqlx::mysql::MySqlPoolOptions;
use sqlx::{MySqlPool, Row};

// ---------------------------------------------------------------------------------------------
// The stack: a cluster and a proxy from the shared harness.

struct Stack {
    url: String,
    shards: Vec<String>,
    _proxy: harness::Proxy,
    _cluster: harness::Cluster,
}

async fn stack() -> Stack {
    // A cluster per test (2 shards, no replicas): tests may run in parallel.
    let cluster = tokio::task::spawn_blocking(|| harness::Cluster::start(2, 0))
        .await
        .unwrap();
    let cfg = harness::ProxyConfig::for_cluster(&cluster)
        .fund_schema()
        .render();
    let proxy = harness::Proxy::start(&cfg);
    Stack {
        url: proxy.url(),
        shards: cluster.shards.iter().map(|s| s.name.clone()).collect(),
        _proxy: proxy,
        _cluster: cluster,
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers.

fn fund_bin() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_shardproxy"))
        .parent()
        .unwrap()
        .join("fund")
}

fn fund(s: &Stack, args: &[&str]) -> Output {
    let out = Command::new(fund_bin())
        .args(args)
        .env("FUND_DATABASE_URL", &s.url)
        .env("FUND_SHARDS", s.shards.join(","))
        .output()
        .expect("run fund");
    eprintln!(
        "fund {}:\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn fund_ok(s: &Stack, args: &[&str]) -> String {
    let out = fund(s, args);
    assert!(out.status.success(), "fund {args:?} failed");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A `fund serve` process with a fixed business date; killed on drop.
struct Server {
    child: Child,
    addr: String,
}

impl Server {
    fn start(s: &Stack, today: &str) -> Server {
        let addr = format!("127.0.0.1:{}", harness::free_port());
        let child = Command::new(fund_bin())
            .args(["serve", "--listen", &addr, "--today", today])
            .env("FUND_DATABASE_URL", &s.url)
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        assert!(
            harness::wait_port(&addr, Duration::from_secs(20)),
            "fund serve did not start"
        );
        Server { child, addr }
    }

    /// One HTTP/1.1 request (Connection: close); returns (status, replayed header, JSON body).
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, bool, Value) {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let r = harness::http_request(
            &self.addr,
            method,
            path,
            Some(&body),
            Duration::from_secs(300),
        );
        let replayed = r
            .header("idempotent-replayed")
            .is_some_and(|v| v.to_ascii_lowercase().starts_with("true"));
        let v = serde_json::from_str(&r.body).unwrap_or(Value::String(r.body));
        (r.status, replayed, v)
    }

    fn new_account(&self, name: &str) -> i64 {
        let (st, _, v) = self.call("POST", "/accounts", Some(json!({ "name": name })));
        assert_eq!(st, 201, "{v}");
        v["account_id"].as_i64().unwrap()
    }

    fn money(&self, id: i64, what: &str, body: Value) -> (u16, bool, Value) {
        self.call("POST", &format!("/accounts/{id}/{what}"), Some(body))
    }

    fn account(&self, id: i64) -> Value {
        let (st, _, v) = self.call("GET", &format!("/accounts/{id}"), None);
        assert_eq!(st, 200, "{v}");
        v
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn dec(v: &Value) -> Decimal {
    v.as_str().unwrap().parse().unwrap()
}

fn d(s: &str) -> Decimal {
    s.parse().unwrap()
}

async fn pool(s: &Stack) -> MySqlPool {
    MySqlPoolOptions::new()
        .max_connections(4)
        .connect(&s.url)
        .await
        .unwrap()
}

async fn scalar_i64(p: &MySqlPool, sql: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_string()))
        .fetch_one(p)
        .await
        .unwrap()
}

/// A fresh database for one test (the harness may give one per test; otherwise drop and init).
async fn fresh(s: &Stack) {
    let p = pool(s).await;
    for t in [
        "accounts",
        "ledger",
        "requests",
        "income",
        "pending_redemptions",
        "fund_yield",
    ] {
        // DROP goes to every shard through the proxy (DDL broadcast).
        let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP TABLE IF EXISTS {t}")))
            .execute(&p)
            .await;
    }
    fund_ok(s, &["init"]);
    fund_ok(s, &["init"]); // idempotent
}

// ---------------------------------------------------------------------------------------------
// 1. Domain rules.

#[tokio::test(flavor = "multi_thread")]
async fn domain_rules() {
    let s = stack().await;
    fresh(&s).await;
    let day1 = Server::start(&s, "2026-03-01");
    let a = day1.new_account("alice");
    let b = day1.new_account("bob");

    let (st, _, v) = day1.money(
        a,
        "subscribe",
        json!({"amount": "20000.00", "request_id": "a1"}),
    );
    assert_eq!(st, 200, "{v}");
    assert_eq!(dec(&v["shares"]), d("20000.00"));
    // Instant redemption cap: 10,000.00 per account per day.
    let (st, _, _) = day1.money(
        a,
        "redeem",
        json!({"amount": "6000", "mode": "instant", "request_id": "a2"}),
    );
    assert_eq!(st, 200);
    let (st, _, v) = day1.money(
        a,
        "redeem",
        json!({"amount": "4000.01", "mode": "instant", "request_id": "a3"}),
    );
    assert_eq!(
        (st, v["code"].as_str()),
        (422, Some("instant_cap_exceeded"))
    );
    let (st, _, _) = day1.money(
        a,
        "redeem",
        json!({"amount": "4000.00", "mode": "instant", "request_id": "a3b"}),
    );
    assert_eq!(st, 200);
    // Standard redemption: no cap, paid by the next settlement.
    let (st, _, v) = day1.money(
        a,
        "redeem",
        json!({"amount": "5000", "mode": "standard", "request_id": "a4"}),
    );
    assert_eq!(st, 200, "{v}");
    // Pay: one transaction on the account's shard.
    let (st, _, v) = day1.money(
        a,
        "pay",
        json!({"amount": "100.50", "merchant": "coffee", "request_id": "a5"}),
    );
    assert_eq!(st, 200, "{v}");
    assert_eq!(dec(&v["shares"]), d("4899.50"));
    // Never more than available.
    for (what, extra) in [
        ("pay", json!({"merchant": "car"})),
        ("redeem", json!({"mode": "standard"})),
    ] {
        let mut body = json!({"amount": "4899.51", "request_id": format!("over-{what}")});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let (st, _, v) = day1.money(a, what, body);
        assert_eq!(
            (st, v["code"].as_str()),
            (422, Some("insufficient_shares")),
            "{v}"
        );
    }
    // Malformed input and unknown accounts.
    let (st, _, _) = day1.money(
        a,
        "subscribe",
        json!({"amount": "1.001", "request_id": "bad"}),
    );
    assert_eq!(st, 400);
    let (st, _, _) = day1.money(a, "subscribe", json!({"amount": 5, "request_id": "bad2"}));
    assert_eq!(st, 400);
    let (st, _, v) = day1.call("GET", "/accounts/1", None);
    assert_eq!((st, v["code"].as_str()), (404, Some("account_not_found")));

    let (st, _, _) = day1.money(
        b,
        "subscribe",
        json!({"amount": "10000.00", "request_id": "b1"}),
    );
    assert_eq!(st, 200);
    let v = day1.account(b);
    assert_eq!(dec(&v["earning_shares"]), d("0")); // subscribed today: earns from tomorrow
    assert_eq!(dec(&v["fresh_shares"]), d("10000"));
    let v = day1.account(a);
    assert_eq!(dec(&v["pending_redemptions"]), d("5000"));
    drop(day1);

    // Day 1 settles: nobody earned on day 1.
    fund_ok(
        &s,
        &["yield", "--date", "2026-03-01", "--per-10k", "0.6523"],
    );
    fund_ok(&s, &["settle", "--date", "2026-03-01"]);
    let p = pool(&s).await;
    assert_eq!(
        scalar_i64(
            &p,
            "SELECT COUNT(*) FROM income WHERE income_date = '2026-03-01' AND amount > 0"
        )
        .await,
        0
    );

    // Day 2: bob subscribes more (not earning on day 2), alice pays a little (reduces day 2).
    let day2 = Server::start(&s, "2026-03-02");
    let (st, _, _) = day2.money(
        b,
        "subscribe",
        json!({"amount": "5000.00", "request_id": "b2"}),
    );
    assert_eq!(st, 200);
    let (st, _, _) = day2.money(
        a,
        "pay",
        json!({"amount": "899.50", "merchant": "rent", "request_id": "a6"}),
    );
    assert_eq!(st, 200);
    // The instant cap is per day: 10,000 available again (but only 4,000 shares left).
    let v = day2.account(a);
    assert_eq!(dec(&v["instant_remaining_today"]), d("10000"));
    drop(day2);

    fund_ok(
        &s,
        &["yield", "--date", "2026-03-02", "--per-10k", "0.6523"],
    );
    fund_ok(&s, &["settle", "--date", "2026-03-02"]);
    // alice: 4899.50 held at the end of day 1, 899.50 out on day 2 -> 4000 earning
    //        floor(4000 × 0.6523 / 10000) = floor(0.26092) = 0.26
    // bob:   10000 earning (the 5000 of day 2 earn from day 3)
    //        floor(10000 × 0.6523 / 10000) = 0.65 (0.6523 rounded down)
    let inc = |id: i64| {
        format!("SELECT amount FROM income WHERE account_id = {id} AND income_date = '2026-03-02'")
    };
    let got: Decimal = sqlx::query_scalar(sqlx::AssertSqlSafe(inc(a)))
        .fetch_one(&p)
        .await
        .unwrap();
    assert_eq!(got, d("0.26"));
    let got: Decimal = sqlx::query_scalar(sqlx::AssertSqlSafe(inc(b)))
        .fetch_one(&p)
        .await
        .unwrap();
    assert_eq!(got, d("0.65"));
    // Standard redemption of day 1 paid by the settlement of day 2.
    let paid: Option<String> = sqlx::query_scalar(
        "SELECT CAST(paid_on AS CHAR) FROM pending_redemptions WHERE account_id = ? AND request_id = 'a4'",
    )
    .bind(a)
    .fetch_one(&p)
    .await
    .unwrap();
    assert_eq!(paid.as_deref(), Some("2026-03-02"));
    // Income is reinvested as shares.
    let day3 = Server::start(&s, "2026-03-03");
    let v = day3.account(b);
    assert_eq!(dec(&v["shares"]), d("15000.65"));
    assert_eq!(dec(&v["yesterday_income"]), d("0.65"));
    assert_eq!(dec(&v["earning_shares"]), d("15000.65"));
    // The report aggregates across shards.
    let (st, _, r) = day3.call("GET", "/fund/report?date=2026-03-02", None);
    assert_eq!(st, 200);
    assert_eq!(r["accounts"].as_i64(), Some(2));
    assert_eq!(dec(&r["income"]["amount"]), d("0.91"));
    assert_eq!(dec(&r["total_shares"]), d("4000.26") + d("15000.65"));
    assert!(fund(&s, &["check"]).status.success());
}

// ---------------------------------------------------------------------------------------------
// 2. Idempotent retries.

#[tokio::test(flavor = "multi_thread")]
async fn idempotent_requests() {
    let s = stack().await;
    fresh(&s).await;
    let srv = Server::start(&s, "2026-04-01");
    let a = srv.new_account("carol");
    let body = json!({"amount": "123.45", "request_id": "sub-1"});
    let (st1, rep1, v1) = srv.money(a, "subscribe", body.clone());
    let (st2, rep2, v2) = srv.money(a, "subscribe", body.clone());
    assert_eq!((st1, rep1), (200, false));
    assert_eq!((st2, rep2), (200, true));
    assert_eq!(v1, v2, "a retry returns the original answer");
    assert_eq!(dec(&srv.account(a)["shares"]), d("123.45"));
    // The same id with other parameters is a conflict, and moves nothing.
    let (st, _, v) = srv.money(
        a,
        "subscribe",
        json!({"amount": "1.00", "request_id": "sub-1"}),
    );
    assert_eq!((st, v["code"].as_str()), (409, Some("request_id_reused")));
    // A rejected request replays its rejection, even once money would be available.
    let (st, _, _) = srv.money(
        a,
        "pay",
        json!({"amount": "500", "merchant": "m", "request_id": "pay-1"}),
    );
    assert_eq!(st, 422);
    srv.money(
        a,
        "subscribe",
        json!({"amount": "1000", "request_id": "sub-2"}),
    );
    let (st, rep, _) = srv.money(
        a,
        "pay",
        json!({"amount": "500", "merchant": "m", "request_id": "pay-1"}),
    );
    assert_eq!((st, rep), (422, true));
    // 20 concurrent copies of one request: exactly one applies.
    let body = json!({"amount": "7.00", "mode": "instant", "request_id": "red-1"});
    std::thread::scope(|sc| {
        for _ in 0..20 {
            sc.spawn(|| {
                let (st, _, v) = srv.money(a, "redeem", body.clone());
                assert_eq!(st, 200, "{v}");
            });
        }
    });
    assert_eq!(
        dec(&srv.account(a)["shares"]),
        d("123.45") + d("1000") - d("7")
    );
    let p = pool(&s).await;
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM ledger WHERE account_id = ? AND request_id = 'red-1'",
    )
    .bind(a)
    .fetch_one(&p)
    .await
    .unwrap();
    assert_eq!(n, 1);
    // Opening with the first subscription: one request, one transaction; a retry of that
    // subscription on the new account replays its answer; a refused one creates nothing.
    let (st, _, v) = srv.call(
        "POST",
        "/accounts",
        Some(json!({"name": "dave", "initial_subscription": {"amount": "250.50", "request_id": "open-1"}})),
    );
    assert_eq!(st, 201, "{v}");
    let dave = v["account_id"].as_i64().unwrap();
    assert_eq!(v["subscription"]["balance"], json!("250.50"), "{v}");
    let (st, rep, v2) = srv.money(
        dave,
        "subscribe",
        json!({"amount": "250.50", "request_id": "open-1"}),
    );
    assert_eq!((st, rep), (200, true));
    assert_eq!(v2, v["subscription"]);
    assert_eq!(dec(&srv.account(dave)["fresh_shares"]), d("250.50"));
    let before = scalar_i64(&p, "SELECT COUNT(*) FROM accounts").await;
    let (st, _, v) = srv.call(
        "POST",
        "/accounts",
        Some(json!({"name": "eve", "initial_subscription": {"amount": "-1", "request_id": "open-2"}})),
    );
    assert_eq!((st, v["code"].as_str()), (400, Some("invalid_amount")));
    assert_eq!(
        scalar_i64(&p, "SELECT COUNT(*) FROM accounts").await,
        before
    );
    assert!(fund(&s, &["check"]).status.success());
}

// ---------------------------------------------------------------------------------------------
// 3. Settlement killed halfway, then rerun: each account paid exactly once.

async fn expected_income(s: &Stack, per_10k: &str) -> (i64, Decimal) {
    // Computed independently of fund's settlement code: every seeded account earns on all its
    // shares (subscribed the day before), floor to the cent, summed shard by shard.
    let p = pool(s).await;
    let (mut n, mut sum) = (0i64, Decimal::ZERO);
    for sh in &s.shards {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "/* shard={sh} */ SELECT COUNT(*), SUM(FLOOR(shares * {per_10k} / 100) / 100) FROM accounts"
        )))
        .fetch_one(&p)
        .await
        .unwrap();
        n += row.get::<i64, _>(0);
        sum += row.get::<Option<Decimal>, _>(1).unwrap_or_default();
    }
    (n, sum)
}

async fn income_of(s: &Stack, date: &str) -> (i64, Decimal) {
    let p = pool(s).await;
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT COUNT(*), SUM(amount) FROM income WHERE income_date = '{date}'"
    )))
    .fetch_one(&p)
    .await
    .unwrap();
    (
        row.get(0),
        row.get::<Option<Decimal>, _>(1).unwrap_or_default(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn settlement_killed_halfway_pays_exactly_once() {
    let s = stack().await;
    fresh(&s).await;
    fund_ok(&s, &["seed", "--accounts", "60000", "--date", "2026-05-01"]);
    fund_ok(
        &s,
        &["yield", "--date", "2026-05-02", "--per-10k", "0.7123"],
    );
    let (accounts, want) = expected_income(&s, "0.7123").await;
    assert_eq!(accounts, 60000);

    // a) Killed with SIGKILL while running.
    let mut child = Command::new(fund_bin())
        .args([
            "settle",
            "--date",
            "2026-05-02",
            "--batch",
            "500",
            "--workers",
            "1",
        ])
        .env("FUND_DATABASE_URL", &s.url)
        .env("FUND_SHARDS", s.shards.join(","))
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (n, _) = income_of(&s, "2026-05-02").await;
        if n > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "settlement made no progress");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().unwrap(); // SIGKILL: no cleanup, an open batch transaction is rolled back
    child.wait().unwrap();
    let (partial, _) = income_of(&s, "2026-05-02").await;
    assert!(
        partial > 0 && partial < accounts,
        "killed halfway: {partial} of {accounts}"
    );
    // Whatever committed is complete per account: income rows == settled markers.
    let p = pool(&s).await;
    let settled = scalar_i64(
        &p,
        "SELECT COUNT(*) FROM accounts WHERE settled_through = '2026-05-02'",
    )
    .await;
    assert_eq!(settled, partial);

    // Rerun: finishes, pays the rest, nobody twice.
    let out = fund_ok(&s, &["settle", "--date", "2026-05-02"]);
    assert!(out.contains("accounts not yet settled: 0"), "{out}");
    assert_eq!(income_of(&s, "2026-05-02").await, (accounts, want));
    // A third run settles nothing.
    let out = fund_ok(&s, &["settle", "--date", "2026-05-02"]);
    assert!(out.starts_with("settled 0 accounts"), "{out}");
    assert_eq!(income_of(&s, "2026-05-02").await, (accounts, want));

    // b) Deterministic variant: stop after 3 batches per shard, then resume.
    fund_ok(
        &s,
        &["yield", "--date", "2026-05-03", "--per-10k", "0.6999"],
    );
    fund_ok(
        &s,
        &[
            "settle",
            "--date",
            "2026-05-03",
            "--batch",
            "1000",
            "--max-batches",
            "3",
        ],
    );
    let (n, _) = income_of(&s, "2026-05-03").await;
    assert_eq!(n, 3 * 1000 * s.shards.len() as i64);
    fund_ok(&s, &["settle", "--date", "2026-05-03"]);
    let (n, _) = income_of(&s, "2026-05-03").await;
    assert_eq!(n, accounts);
    // One income row per account and date, shares reconcile.
    let out = fund(&s, &["check"]);
    assert!(out.status.success());
}

// ---------------------------------------------------------------------------------------------
// 4. `fund check` after a concurrent load (and it does catch a corruption).

#[tokio::test(flavor = "multi_thread")]
async fn check_after_concurrent_load() {
    let s = stack().await;
    fresh(&s).await;
    fund_ok(&s, &["seed", "--accounts", "20000", "--date", "2026-06-01"]);
    fund_ok(&s, &["yield", "--date", "2026-06-02", "--per-10k", "0.65"]);
    let srv = Server::start(&s, "2026-06-03");
    let url = format!("http://{}", srv.addr);
    let load = Command::new(fund_bin())
        .args([
            "load",
            "--url",
            &url,
            "--accounts",
            "300",
            "--duration",
            "15",
            "--concurrency",
            "16",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Settlement of the previous day, concurrently with the load (same shards, same tables).
    std::thread::sleep(Duration::from_secs(5));
    let settle = fund(&s, &["settle", "--date", "2026-06-02", "--batch", "1000"]);
    assert!(settle.status.success());
    let load = load.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&load.stdout);
    eprintln!("{stdout}{}", String::from_utf8_lossy(&load.stderr));
    assert!(load.status.success(), "load had errors");
    assert!(stdout.contains("p99"));
    drop(srv);
    let out = fund(&s, &["check"]);
    assert!(out.status.success(), "invariants violated after load");

    // Corrupt one account on one shard: check must fail and say which invariant.
    let p = pool(&s).await;
    let id: i64 = sqlx::query_scalar("/* shard=s1 */ SELECT account_id FROM accounts LIMIT 1")
        .fetch_one(&p)
        .await
        .unwrap();
    sqlx::query("UPDATE accounts SET shares = shares + 1 WHERE account_id = ?")
        .bind(id)
        .execute(&p)
        .await
        .unwrap();
    let out = fund(&s, &["check"]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("VIOLATION shares_mismatch shard=s1 account={id}")),
        "{text}"
    );
}
