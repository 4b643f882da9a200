//! TLS on both sides of the proxy (issue 14), with real clients and a real mariadbd:
//! - client side: the `mariadb` CLI with CA verification, PyMySQL with `ssl=`, mysql_async and
//!   sqlx (rustls) verifying the certificate against the test CA, clear text still
//!   accepted, `require_tls` users refused over clear text with MariaDB's own error (compared
//!   with what MariaDB answers for a `REQUIRE SSL` account), caching_sha2_password full
//!   authentication over TLS without the RSA exchange;
//! - backend side: the proxy's logins to a mariadbd started with `--ssl-cert/--ssl-key/--ssl-ca`
//!   are encrypted and verified against the configured CA, and refused with another CA.
//!
//! One mariadbd with TLS serves every test of this file (shard s1); each test starts its own
//! proxy. Certificates are made at test time (`harness::certs`).

mod harness;

use std::sync::OnceLock;

use harness::certs::TestCerts;
use harness::{cli_rows, mariadb_cli, output_ok, Mariadb, MariadbOpts, Proxy, ProxyConfig};

struct Fixture {
    certs: TestCerts,
    server: Mariadb,
}

/// The certificates and the TLS-enabled server shared by the tests of this file.
fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let certs = TestCerts::new();
        let server = Mariadb::start(MariadbOpts {
            log_bin: false,
            semi_sync: false,
            extra_args: certs.mariadbd_args(),
            name: "tls".into(),
            ..MariadbOpts::default()
        });
        Fixture { certs, server }
    })
}

fn toml_path(p: &std::path::Path) -> String {
    toml::Value::String(p.display().to_string()).to_string()
}

/// A proxy over the TLS server, with `[tls]` set to the test certificate.
fn tls_proxy(f: impl FnOnce(ProxyConfig) -> ProxyConfig) -> Proxy {
    let fx = fixture();
    let base = ProxyConfig::default()
        .shard("s1", &fx.server.addr(), &[])
        .extra(&format!(
            "[tls]\ncert = {}\nkey = {}",
            toml_path(&fx.certs.cert()),
            toml_path(&fx.certs.key())
        ));
    Proxy::start(&f(base).render())
}

/// The `mariadb` CLI verifying the proxy's certificate against the test CA.
fn cli_tls(port: u16, user: &str, password: &str, sql: &str) -> Result<Vec<Vec<String>>, String> {
    let ca = fixture().certs.ca();
    cli_rows(mariadb_cli(port, user, password).args([
        "--ssl".to_string(),
        format!("--ssl-ca={}", ca.display()),
        "--ssl-verify-server-cert".into(),
        "--connect-timeout=5".into(),
        "-N".into(),
        "-B".into(),
        "-e".into(),
        sql.into(),
    ]))
}

/// The `mariadb` CLI without TLS.
fn cli_plain(port: u16, user: &str, password: &str, sql: &str) -> Result<Vec<Vec<String>>, String> {
    cli_rows(mariadb_cli(port, user, password).args([
        "--skip-ssl",
        "--connect-timeout=5",
        "-N",
        "-B",
        "-e",
        sql,
    ]))
}

/// The server's `Ssl_cipher` for the backend connection that serves a statement of user `app`
/// through the proxy on `port` (`SHOW SESSION STATUS` is relayed to the shard).
fn backend_cipher(port: u16) -> Vec<Vec<String>> {
    cli_plain(port, "app", "app", "SHOW SESSION STATUS LIKE 'Ssl_cipher'").unwrap()
}

/// What [`backend_cipher`] shows for a clear-text backend connection.
fn no_cipher() -> Vec<Vec<String>> {
    vec![vec!["Ssl_cipher".to_string(), String::new()]]
}

/// The CLI's `status` over TLS names the cipher in use; statements run; clear text is still
/// accepted from clients that do not ask for TLS.
#[test]
fn mariadb_cli_over_tls_and_clear_text() {
    let proxy = tls_proxy(|c| c);
    let status = output_ok(mariadb_cli(proxy.port(), "app", "app").args([
        "--ssl".to_string(),
        format!("--ssl-ca={}", fixture().certs.ca().display()),
        "--ssl-verify-server-cert".into(),
        "-e".into(),
        "status".into(),
    ]));
    let ssl_line = status
        .lines()
        .find(|l| l.starts_with("SSL:"))
        .unwrap_or_else(|| panic!("no SSL line in status:\n{status}"));
    println!("over TLS: {ssl_line}");
    assert!(ssl_line.contains("Cipher in use is"), "{ssl_line}");
    assert_eq!(
        cli_tls(proxy.port(), "app", "app", "SELECT 1 + 1").unwrap(),
        vec![vec!["2".to_string()]]
    );
    let status =
        output_ok(mariadb_cli(proxy.port(), "app", "app").args(["--skip-ssl", "-e", "status"]));
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("SSL:") && l.contains("Not in use")),
        "{status}"
    );
    assert_eq!(
        cli_plain(proxy.port(), "app", "app", "SELECT 3").unwrap(),
        vec![vec!["3".to_string()]]
    );
}

/// A client verifying against a CA that did not sign the proxy's certificate refuses it.
#[test]
fn wrong_ca_is_refused_by_the_client() {
    let proxy = tls_proxy(|c| c);
    let err = cli_rows(mariadb_cli(proxy.port(), "app", "app").args([
        "--ssl".to_string(),
        format!("--ssl-ca={}", fixture().certs.other_ca().display()),
        "--ssl-verify-server-cert".into(),
        "-e".into(),
        "SELECT 1".into(),
    ]))
    .unwrap_err();
    assert!(
        err.contains("2026") || err.to_lowercase().contains("certificate"),
        "{err}"
    );
}

/// `require_tls = true`: clear text gets MariaDB's own answer for a `REQUIRE SSL` account
/// (1045 access denied, the same text as MariaDB's); TLS logs in.
#[test]
fn require_tls_refuses_clear_text_as_mariadb_does() {
    let fx = fixture();
    fx.server.exec(
        "CREATE USER IF NOT EXISTS 'tls_only'@'%' IDENTIFIED BY 'pw' REQUIRE SSL; \
         GRANT ALL ON *.* TO 'tls_only'@'%'",
    );
    let direct = cli_plain(fx.server.port(), "tls_only", "pw", "SELECT 1").unwrap_err();
    let proxy = tls_proxy(|c| c.user_with("tls_only", "password = \"pw\"\nrequire_tls = true"));
    let through = cli_plain(proxy.port(), "tls_only", "pw", "SELECT 1").unwrap_err();
    println!("direct:  {}\nthrough: {}", direct.trim(), through.trim());
    assert!(direct.contains("ERROR 1045 (28000)"), "{direct}");
    assert_eq!(through.trim(), direct.trim());
    // Over TLS both let the user in.
    assert_eq!(
        cli_tls(fx.server.port(), "tls_only", "pw", "SELECT 1").unwrap(),
        vec![vec!["1".to_string()]]
    );
    assert_eq!(
        cli_tls(proxy.port(), "tls_only", "pw", "SELECT 1").unwrap(),
        vec![vec!["1".to_string()]]
    );
}

const PYMYSQL_TLS: &str = r#"
import sys, pymysql
port, ca, user, password, use_tls = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5] == "tls"
kw = dict(ssl_ca=ca, ssl_verify_cert=True, ssl_verify_identity=True) if use_tls else dict(ssl_disabled=True)
try:
    c = pymysql.connect(host="127.0.0.1", port=port, user=user, password=password, database="fund", **kw)
except pymysql.err.OperationalError as e:
    print("refused", e.args[0], file=sys.stdout); print(e, file=sys.stderr)
    sys.exit(0)
cur = c.cursor()
cur.execute("SELECT 40 + 2")
version = c._sock.version() if hasattr(c._sock, "version") else "clear"
print("ok", cur.fetchone()[0], version)
"#;

fn pymysql(port: u16, user: &str, password: &str, tls: bool) -> String {
    let ca = fixture().certs.ca().display().to_string();
    let port = port.to_string();
    output_ok(&mut harness::python(
        PYMYSQL_TLS,
        &[
            &port,
            &ca,
            user,
            password,
            if tls { "tls" } else { "clear" },
        ],
    ))
    .trim()
    .to_string()
}

/// PyMySQL with `ssl_ca` (verifying the certificate and the host name) through the proxy.
#[test]
fn pymysql_over_tls() {
    let proxy = tls_proxy(|c| c);
    let out = pymysql(proxy.port(), "app", "app", true);
    println!("PyMySQL: {out}");
    assert!(out.starts_with("ok 42 TLSv1."), "{out}");
}

/// caching_sha2_password full authentication (a user given by `password_hash`, so the proxy
/// has no SHA-256 digest cached) over TLS takes the password as the client sends it, without
/// the RSA exchange: the RSA key is made unusable here, so the same login over clear text
/// (which needs it) fails while the one over TLS succeeds.
#[test]
fn caching_sha2_full_auth_over_tls_needs_no_rsa() {
    let hash = shardproxy::protocol::auth::native_hash_string(b"sha2pw");
    let proxy = tls_proxy(|c| {
        c.user_with_hash("sha2user", &hash)
            .frontend("auth_plugin = \"caching_sha2_password\"")
            .frontend("rsa_private_key = \"/nonexistent/shardproxy-test-rsa.pem\"")
    });
    let clear = pymysql(proxy.port(), "sha2user", "sha2pw", false);
    println!("clear text: {clear}");
    assert_eq!(clear, "refused 1045");
    let tls = pymysql(proxy.port(), "sha2user", "sha2pw", true);
    println!("TLS: {tls}");
    assert!(tls.starts_with("ok 42 TLSv1."), "{tls}");
    let wrong = pymysql(proxy.port(), "sha2user", "nope", true);
    assert_eq!(wrong, "refused 1045");
}

/// `backend.tls` with the CA: the proxy's backend connections are encrypted (the server's
/// `Ssl_cipher` of the connection serving the statement is set, and empty without TLS).
#[test]
fn backend_tls_with_ca_verification() {
    let fx = fixture();
    let ca = toml_path(&fx.certs.ca());
    let tls = tls_proxy(|c| c.backend("tls = true").backend(&format!("tls_ca = {ca}")));
    let cipher = backend_cipher(tls.port());
    println!("backend connection through a TLS proxy: {cipher:?}");
    assert_eq!(cipher.len(), 1, "{cipher:?}");
    assert!(
        cipher[0].get(1).is_some_and(|c| !c.is_empty()),
        "no cipher on the backend connection: {cipher:?}"
    );
    // Sharded writes and reads still go through.
    assert_eq!(
        cli_plain(
            tls.port(),
            "app",
            "app",
            "SELECT COUNT(*) FROM information_schema.TABLES WHERE 0"
        )
        .unwrap(),
        vec![vec!["0".to_string()]]
    );
    let clear = tls_proxy(|c| c);
    let cipher = backend_cipher(clear.port());
    assert_eq!(cipher, no_cipher());
}

/// A backend whose certificate the configured CA did not sign is refused: the statement gets
/// the proxy's backend error naming the certificate problem, and nothing runs in clear text.
#[test]
fn backend_tls_refuses_an_unknown_ca() {
    let fx = fixture();
    let other = toml_path(&fx.certs.other_ca());
    let proxy = tls_proxy(|c| {
        c.backend("tls = true")
            .backend(&format!("tls_ca = {other}"))
    });
    let err = cli_plain(proxy.port(), "app", "app", "SELECT 1").unwrap_err();
    println!("with the wrong CA: {}", err.trim());
    assert!(
        err.contains("certificate") || err.contains("UnknownIssuer"),
        "{err}"
    );
}

/// A per-shard `tls = false` overrides `backend.tls`.
#[test]
fn shard_setting_overrides_backend_tls() {
    let fx = fixture();
    let ca = toml_path(&fx.certs.ca());
    let base = ProxyConfig::default()
        .backend("tls = true")
        .backend(&format!("tls_ca = {ca}"))
        .extra(&format!(
            "[[shards]]\nname = \"s1\"\nprimary = \"{}\"\ntls = false",
            fx.server.addr()
        ));
    let proxy = Proxy::start(&base.render());
    let cipher = backend_cipher(proxy.port());
    assert_eq!(cipher, no_cipher());
}

/// A proxy with the user `tls_rust`, who may log in over TLS only: a login that succeeds
/// proves the client spoke TLS (the proxy refuses that user in clear text, as checked by
/// [`require_tls_refuses_clear_text_as_mariadb_does`]).
fn tls_only_proxy() -> Proxy {
    tls_proxy(|c| c.user_with("tls_rust", "password = \"pw\"\nrequire_tls = true"))
}

/// mysql_async with rustls: the test CA as the only root, the host name checked; text and
/// prepared statements run; the same client with another CA is refused before any login.
#[tokio::test]
async fn mysql_async_over_tls() {
    use mysql_async::prelude::*;
    use mysql_async::{OptsBuilder, SslOpts};
    let fx = fixture();
    let proxy = tls_only_proxy();
    let opts = |ca: std::path::PathBuf| {
        OptsBuilder::default()
            .ip_or_hostname("localhost")
            .tcp_port(proxy.port())
            .user(Some("tls_rust"))
            .pass(Some("pw"))
            .db_name(Some("fund"))
            .ssl_opts(Some(
                SslOpts::default()
                    .with_root_certs(vec![ca.into()])
                    .with_disable_built_in_roots(true),
            ))
    };
    let mut conn = mysql_async::Conn::new(opts(fx.certs.ca())).await.unwrap();
    let text: Option<i64> = conn.query_first("SELECT 40 + 2").await.unwrap();
    let prepared: Option<i64> = conn.exec_first("SELECT ? + 2", (40,)).await.unwrap();
    println!("mysql_async over TLS: text {text:?}, prepared {prepared:?}");
    assert_eq!((text, prepared), (Some(42), Some(42)));
    conn.disconnect().await.unwrap();
    let err = mysql_async::Conn::new(opts(fx.certs.other_ca()))
        .await
        .map(|_| ())
        .unwrap_err();
    println!("mysql_async with another CA: {err}");
    assert!(!matches!(err, mysql_async::Error::Server(_)), "{err}");
}

/// sqlx with rustls (`ssl-mode=VERIFY_IDENTITY` and the test CA): text and prepared statements
/// run; another CA is refused.
#[tokio::test]
async fn sqlx_over_tls() {
    use sqlx::mysql::{MySqlConnectOptions, MySqlSslMode};
    use sqlx::{ConnectOptions, Row};
    let fx = fixture();
    let proxy = tls_only_proxy();
    let opts = |ca: std::path::PathBuf| {
        MySqlConnectOptions::new()
            .host("localhost")
            .port(proxy.port())
            .username("tls_rust")
            .password("pw")
            .database("fund")
            .ssl_mode(MySqlSslMode::VerifyIdentity)
            .ssl_ca(ca)
    };
    let mut conn = opts(fx.certs.ca()).connect().await.unwrap();
    let text: i64 = sqlx::raw_sql("SELECT 40 + 2")
        .fetch_one(&mut conn)
        .await
        .unwrap()
        .get(0);
    let prepared: i64 = sqlx::query_scalar("SELECT CAST(? + 2 AS SIGNED)")
        .bind(40i64)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    println!("sqlx over TLS: text {text}, prepared {prepared}");
    assert_eq!((text, prepared), (42, 42));
    let err = opts(fx.certs.other_ca())
        .connect()
        .await
        .map(|_| ())
        .unwrap_err();
    println!("sqlx with another CA: {err}");
    assert!(err.as_database_error().is_none(), "{err}");
}

/// mysql-connector-python (pure Python) with `ssl_ca` and identity verification.
#[test]
fn mysql_connector_python_over_tls() {
    let proxy = tls_proxy(|c| c);
    let script = r#"
import sys, mysql.connector
c = mysql.connector.connect(host="127.0.0.1", port=int(sys.argv[1]), user="app", password="app",
    database="fund", ssl_ca=sys.argv[2], ssl_verify_cert=True, ssl_verify_identity=True, use_pure=True)
cur = c.cursor()
cur.execute("SELECT 40 + 2")
print("ok", cur.fetchone()[0], c._socket.sock.version())
"#;
    let ca = fixture().certs.ca().display().to_string();
    let out = output_ok(&mut harness::python(
        script,
        &[&proxy.port().to_string(), &ca],
    ));
    println!("mysql-connector-python: {}", out.trim());
    assert!(out.trim().starts_with("ok 42 TLSv1."), "{out}");
}

/// sysbench (libmariadb) with `--mysql-ssl=on` runs point selects through the TLS port, as
/// `TLS=1 benches/e2e.sh` does; the clear-text figure of the same proxy is printed beside it
/// (a debug build on a shared machine: the release comparison is the benchmark's).
#[test]
fn sysbench_point_selects_over_tls() {
    let fx = fixture();
    fx.server.exec("CREATE DATABASE IF NOT EXISTS sbtest_tls");
    let proxy = tls_proxy(|c| c);
    let sb = harness::Sysbench::new("oltp_point_select", proxy.port(), "sbtest_tls")
        .tables(1)
        .table_size(200)
        .in_dir(&fx.certs.sysbench_dir());
    sb.cleanup();
    sb.prepare();
    let tls = sb.run(2, 2, &["--mysql-ssl=on"]);
    let clear = sb.run(2, 2, &["--mysql-ssl=off"]);
    println!(
        "sysbench point select, 2 threads, 2 s, debug build: TLS {:.0} TPS, clear text {:.0} TPS",
        tls.tps, clear.tps
    );
    assert!(
        tls.transactions > 0 && tls.ignored_errors == 0,
        "{}",
        tls.text
    );
    assert!(clear.transactions > 0, "{}", clear.text);
}
