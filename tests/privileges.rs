//! Users with privileges (issue 14), differentially: each proxy user gets the same rights as a
//! MariaDB account created with GRANTs on a plain mariadbd, the same statements run through
//! the proxy and directly (the `mariadb` CLI with `--force`, one session, so a refusal must
//! leave the session usable), and the outputs must be identical: error code, SQLSTATE and
//! message, and the rows of the statements allowed. The server's tables are checked after the
//! proxy's run: nothing refused reached it. Also: `max_connections` per user (1226 as from
//! MariaDB), and admin-port and data-port users kept apart.

mod harness;

use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use harness::{mariadb_cli, wait_until, Mariadb, MariadbOpts, Proxy, ProxyConfig};

/// The backend every test here uses, with the accounts and tables of the comparisons.
fn server() -> &'static Mariadb {
    static S: OnceLock<Mariadb> = OnceLock::new();
    S.get_or_init(|| {
        let m = Mariadb::start(MariadbOpts {
            log_bin: false,
            semi_sync: false,
            name: "privileges".into(),
            ..MariadbOpts::default()
        });
        m.exec(
            "CREATE TABLE fund.accounts (id INT PRIMARY KEY, v INT); \
             INSERT INTO fund.accounts VALUES (1, 10); \
             CREATE DATABASE other; CREATE TABLE other.t (a INT); \
             CREATE USER ro@'%' IDENTIFIED BY 'ro'; \
             GRANT SELECT ON fund.* TO ro@'%'; \
             CREATE USER rw@'%' IDENTIFIED BY 'rw'; \
             GRANT SELECT, INSERT, UPDATE, DELETE, EXECUTE ON fund.* TO rw@'%'; \
             CREATE USER ddl@'%' IDENTIFIED BY 'ddl'; \
             GRANT SELECT, INSERT, UPDATE, DELETE, EXECUTE, CREATE, DROP, ALTER, INDEX, \
               CREATE VIEW, TRIGGER ON fund.* TO ddl@'%'; \
             CREATE USER lim@'%' IDENTIFIED BY 'lim' WITH MAX_USER_CONNECTIONS 1; \
             GRANT ALL ON *.* TO lim@'%'",
        );
        m
    })
}

fn proxy() -> Proxy {
    let users = [("ro", "read_only"), ("rw", "read_write"), ("ddl", "ddl")];
    let mut c = ProxyConfig::default().shard("s1", &server().addr(), &[]);
    for (name, role) in users {
        c = c.user_with(
            name,
            &format!("password = \"{name}\"\ndatabases = [\"fund\"]\nrole = \"{role}\""),
        );
    }
    c = c.user_with("lim", "password = \"lim\"\nmax_connections = 1");
    Proxy::start(&c.render())
}

/// Runs `sql` (statements separated by `;`, one per line) as `user` on database `fund` in one
/// session with `--force`: (stdout, stderr).
fn batch(port: u16, user: &str, sql: &str) -> (String, String) {
    let out = mariadb_cli(port, user, user)
        .args(["--skip-ssl", "--force", "-N", "-B", "fund"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(sql.as_bytes())?;
            child.wait_with_output()
        })
        .expect("run mariadb");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The statements compared for every user: writes, DDL, another database, global privileges,
/// and reads between them that must still answer.
const STATEMENTS: &str = "\
SELECT id, v FROM accounts;
INSERT INTO accounts VALUES (2, 20);
UPDATE accounts SET v = 11 WHERE id = 1;
DELETE FROM accounts WHERE id = 1;
REPLACE INTO accounts VALUES (3, 30);
SELECT COUNT(*) FROM accounts;
CREATE TABLE made_here (a INT);
ALTER TABLE accounts ADD COLUMN w INT;
CREATE INDEX iv ON accounts (v);
TRUNCATE TABLE accounts;
DROP TABLE accounts;
SELECT * FROM other.t;
INSERT INTO other.t VALUES (1);
USE other;
CREATE DATABASE made_here_db;
DROP DATABASE other;
CREATE USER someone@'%';
SELECT 'still here';
";

fn compare(user: &str, proxy: &Proxy) -> (String, String) {
    let through = batch(proxy.port(), user, STATEMENTS);
    (through.0, through.1)
}

/// The server's tables as the comparisons left them.
fn state() -> Vec<Vec<String>> {
    server().query(
        "SELECT CONCAT_WS(',', (SELECT GROUP_CONCAT(CONCAT(id, ':', v) ORDER BY id) FROM fund.accounts), \
         (SELECT COUNT(*) FROM other.t), \
         (SELECT COUNT(*) FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = 'fund' AND TABLE_NAME = 'accounts'), \
         (SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_NAME = 'made_here'), \
         (SELECT COUNT(*) FROM information_schema.STATISTICS WHERE INDEX_NAME = 'iv'))",
    )
}

/// read_only: every write, DDL, other-database and global statement is refused exactly as
/// MariaDB refuses it for `GRANT SELECT ON fund.*`, and nothing reaches the server.
#[test]
fn read_only_matches_mariadb_grants() {
    let p = proxy();
    let before = state();
    let (out, err) = compare("ro", &p);
    assert_eq!(state(), before, "a refused statement reached the server");
    let (dout, derr) = batch(server().port(), "ro", STATEMENTS);
    println!("--- through the proxy\n{out}{err}--- direct\n{dout}{derr}");
    assert_eq!(err, derr);
    assert_eq!(out, dout);
    assert!(err.contains("ERROR 1142 (42000)"), "{err}");
    assert!(err.contains("ERROR 1044 (42000)"), "{err}");
    assert!(out.contains("still here"), "{out}");
}

/// read_write and ddl: the writes they may do run (the same rows change as directly), what
/// they may not is refused as by MariaDB. The proxy runs first, then the same statements run
/// directly on a server restored to the same rows.
#[test]
fn read_write_and_ddl_match_mariadb_grants() {
    let p = proxy();
    // Only statements whose effect is undone below, so both runs start equal.
    let stmts = "\
INSERT INTO accounts VALUES (2, 20);
DELETE FROM accounts WHERE id = 2;
CREATE TABLE made_here (a INT);
DROP TABLE made_here;
SELECT * FROM other.t;
INSERT INTO other.t VALUES (1);
CREATE DATABASE made_here_db;
CREATE USER someone@'%';
SELECT COUNT(*) FROM accounts;
";
    for user in ["rw", "ddl"] {
        let before = state();
        let through = batch(p.port(), user, stmts);
        let direct = batch(server().port(), user, stmts);
        println!(
            "--- {user} through the proxy\n{}{}--- direct\n{}{}",
            through.0, through.1, direct.0, direct.1
        );
        assert_eq!(through, direct, "{user}");
        assert_eq!(state(), before, "{user}");
    }
}

/// `max_connections = 1`: a second session of the user gets MariaDB's 1226 (the account has
/// `MAX_USER_CONNECTIONS 1` on the server), and a new one is allowed once the first ended.
#[test]
fn max_connections_per_user_matches_mariadb() {
    let p = proxy();
    let second_login = |port: u16| {
        let mut first = mariadb_cli(port, "lim", "lim")
            .args(["--skip-ssl", "-e", "SELECT SLEEP(3)"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn first session");
        // The first session is logged in once the server (or the proxy) runs its SLEEP.
        let up = wait_until(Duration::from_secs(10), || {
            server()
                .query("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO = 'SELECT SLEEP(3)'")
                .first()
                .is_some_and(|r| r[0] != "0")
        });
        assert!(up, "first session did not start");
        let (_, err) = batch(port, "lim", "SELECT 1;\n");
        let _ = first.wait();
        err
    };
    let through = second_login(p.port());
    let direct = second_login(server().port());
    println!("through: {through}direct:  {direct}");
    assert!(direct.contains("ERROR 1226 (42000)"), "{direct}");
    assert_eq!(through, direct);
    let (out, err) = batch(p.port(), "lim", "SELECT 1;\n");
    assert_eq!((out.as_str(), err.as_str()), ("1\n", ""));
}

/// Admin-port users cannot log in on the data port and data-port users not on the admin
/// port: each port has its own `[[..users]]` list.
#[test]
fn admin_and_data_users_are_separate() {
    let p = proxy();
    let admin_port: u16 = p
        .admin_listen
        .as_ref()
        .and_then(|a| a.rsplit(':').next())
        .and_then(|s| s.parse().ok())
        .expect("admin port");
    let try_login = |port: u16, user: &str, password: &str| {
        let out = Command::new("mariadb")
            .args([
                "--no-defaults",
                "--protocol=tcp",
                "-h127.0.0.1",
                "--skip-ssl",
            ])
            .arg(format!("-P{port}"))
            .arg(format!("-u{user}"))
            .arg(format!("-p{password}"))
            .args(["-e", "SELECT 1"])
            .stdin(Stdio::null())
            .output()
            .expect("run mariadb");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // Each works on its own port …
    assert!(try_login(p.port(), "app", "app").0);
    assert!(try_login(admin_port, "admin", "admin").0);
    // … and not on the other.
    let (ok, err) = try_login(p.port(), "admin", "admin");
    assert!(!ok && err.contains("1045"), "admin on the data port: {err}");
    // The admin port (opensrv-mysql) answers a failed login with 1698 (28000).
    let (ok, err) = try_login(admin_port, "app", "app");
    assert!(
        !ok && err.contains("(28000)"),
        "app on the admin port: {err}"
    );
    println!("app on the admin port: {}", err.trim());
}

/// `shardproxy hash-password` prints the `password_hash` that logs the user in (and is
/// MariaDB's own `PASSWORD()` of it).
#[test]
fn hash_password_prints_a_working_hash() {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_shardproxy"))
        .arg("hash-password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run shardproxy hash-password");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"s3cret pass\n")
        .expect("write password");
    let out = child.wait_with_output().expect("hash-password output");
    assert!(out.status.success());
    let hash = String::from_utf8(out.stdout)
        .expect("UTF-8")
        .trim()
        .to_string();
    let mariadb = server().query_value("SELECT PASSWORD('s3cret pass')");
    assert_eq!(Some(hash.clone()), mariadb);
    let p = Proxy::start(
        &ProxyConfig::default()
            .shard("s1", &server().addr(), &[])
            .user_with_hash("hashed", &hash)
            .render(),
    );
    let ok = harness::cli_query(p.port(), "hashed", "s3cret pass", "SELECT 7").unwrap();
    assert_eq!(ok, vec![vec!["7".to_string()]]);
}

/// Repeated failed logins from one address: after `max_connect_errors` of them the address is
/// refused with MariaDB's 1129 (even with the right password) until the block ends; then the
/// right password logs in again.
#[test]
fn failed_logins_block_the_address_for_a_while() {
    let p = Proxy::start(
        &ProxyConfig::default()
            .shard("s1", &server().addr(), &[])
            .frontend("max_connect_errors = 3")
            .frontend("connect_error_block_ms = 1500")
            .render(),
    );
    for _ in 0..3 {
        let e = harness::cli_query(p.port(), "app", "wrong", "SELECT 1").unwrap_err();
        assert!(e.contains("ERROR 1045 (28000)"), "{e}");
    }
    let e = harness::cli_query(p.port(), "app", "app", "SELECT 1").unwrap_err();
    println!("blocked: {e}");
    // Sent instead of the greeting, as MariaDB does (the CLI, which would start TLS, says
    // so before the error).
    assert!(
        e.contains(
            "1129 - Host '127.0.0.1' is blocked because of many connection errors; \
             unblock with 'mariadb-admin flush-hosts'"
        ),
        "{e}"
    );
    std::thread::sleep(Duration::from_millis(1600));
    assert_eq!(
        harness::cli_query(p.port(), "app", "app", "SELECT 1").unwrap(),
        vec![vec!["1".to_string()]]
    );
    assert!(p.log().contains("address blocked"), "{}", p.log());
}

/// A client that opens a connection and never answers the greeting is dropped after
/// `handshake_timeout_ms`, and the drop is logged.
#[test]
fn unfinished_handshake_is_dropped() {
    use std::io::Read;
    let p = Proxy::start(
        &ProxyConfig::default()
            .shard("s1", &server().addr(), &[])
            .frontend("handshake_timeout_ms = 300")
            .render(),
    );
    let mut s = std::net::TcpStream::connect(&p.listen).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut greeting = [0u8; 512];
    let n = s.read(&mut greeting).expect("greeting");
    assert!(n > 4, "no greeting");
    let started = std::time::Instant::now();
    let mut rest = [0u8; 64];
    let closed = s
        .read(&mut rest)
        .expect("the proxy closes, not the read timeout");
    let waited = started.elapsed();
    println!("dropped after {waited:?}");
    assert_eq!(closed, 0);
    assert!(waited < Duration::from_secs(3), "{waited:?}");
    assert!(
        wait_until(Duration::from_secs(2), || p
            .log()
            .contains("handshake not finished")),
        "{}",
        p.log()
    );
}
