//! What one server would show (issue 14): the process list lists the proxy's client sessions
//! with the ids `CONNECTION_ID()` and `KILL` use, column for column as MariaDB; `KILL` of a
//! listed id acts on that session only; `wait_timeout` disconnects an idle client; the audit
//! log records a short session line by line. Real MariaDB (the harness), real clients
//! (mysql_async, the mariadb CLI).

mod harness;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use harness::mysql::{connect, text_rows};
use harness::{Cluster, Proxy, ProxyConfig};
use mysql_async::prelude::*;
use mysql_async::{Conn, Row};

fn proxy_with(f: impl FnOnce(ProxyConfig) -> ProxyConfig) -> Proxy {
    Proxy::start(&f(ProxyConfig::for_cluster(Cluster::shared())).render())
}

/// (name, type, charset, length, flags, decimals) of each column of a query's answer.
async fn shape(conn: &mut Conn, sql: &str, with_flags: bool) -> Vec<String> {
    let r = conn.query_iter(sql).await.unwrap();
    let cols: Vec<String> = r
        .columns_ref()
        .iter()
        .map(|c| {
            let flags = if with_flags {
                format!("{:?}", c.flags())
            } else {
                String::new()
            };
            format!(
                "{} {:?} cs={} len={} {flags} dec={}",
                c.name_str(),
                c.column_type(),
                c.character_set(),
                c.column_length(),
                c.decimals()
            )
        })
        .collect();
    r.drop_result().await.unwrap();
    cols
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_list_columns_are_mariadbs() {
    let proxy = proxy_with(|c| c);
    let mut p = connect(&proxy.url()).await;
    let mut d = connect(&Cluster::shared().shard("s1").primary.url()).await;
    for sql in ["SHOW PROCESSLIST", "SHOW FULL PROCESSLIST"] {
        let (a, b) = (
            shape(&mut p, sql, true).await,
            shape(&mut d, sql, true).await,
        );
        assert_eq!(a, b, "{sql}");
        println!("{sql}: {a:?}");
    }
    // The proxy's table has MariaDB's column types, except that INFO, a LONGTEXT, does not
    // report the length of the server's internal table (4294967295 instead of 786420).
    let sql = "SELECT * FROM information_schema.PROCESSLIST";
    let (mut a, mut b) = (
        shape(&mut p, sql, false).await,
        shape(&mut d, sql, false).await,
    );
    assert!(a[7].starts_with("INFO MYSQL_TYPE_BLOB cs=45"), "{a:?}");
    assert!(b[7].starts_with("INFO MYSQL_TYPE_BLOB cs=45"), "{b:?}");
    a.remove(7);
    b.remove(7);
    assert_eq!(a, b, "{sql}");
    let (cols, _) = text_rows(&mut p, "SHOW PROCESSLIST").await;
    assert_eq!(
        cols,
        ["Id", "User", "Host", "db", "Command", "Time", "State", "Info", "Progress"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_by_the_listed_id_acts_on_that_session_only() {
    let proxy =
        proxy_with(|c| c.user_with_hash("other", "*023494FBCDFBF9C93B6B2663B348A1C4A939B247"));
    let mut victim = connect(&proxy.url()).await;
    let mut observer = connect(&proxy.url()).await;
    let mut bystander = connect(&proxy.url()).await;
    let ids: BTreeSet<String> = [victim.id(), observer.id(), bystander.id()]
        .iter()
        .map(|i| i.to_string())
        .collect();
    let victim_id = victim.id();

    // Only the proxy's sessions are listed, with their handshake ids.
    let (_, rows) = text_rows(&mut observer, "SHOW FULL PROCESSLIST").await;
    let listed: BTreeSet<String> = rows.iter().map(|r| r[0].clone().unwrap()).collect();
    assert_eq!(listed, ids, "{rows:?}");
    let me = rows
        .iter()
        .find(|r| r[0].as_deref() == Some(&observer.id().to_string()))
        .unwrap();
    assert_eq!(me[4].as_deref(), Some("Query"));
    assert_eq!(me[7].as_deref(), Some("SHOW FULL PROCESSLIST"));

    for (query_only, kill) in [(true, "KILL QUERY"), (false, "KILL")] {
        let sleeper = tokio::spawn(async move {
            let t = Instant::now();
            let r = victim.query_drop("SELECT SLEEP(5)").await;
            (victim, r, t.elapsed())
        });
        // Find the running statement as an operator would, by the process list.
        let deadline = Instant::now() + Duration::from_secs(5);
        let listed_id = loop {
            let (_, rows) = text_rows(
                &mut observer,
                "SELECT ID, COMMAND FROM information_schema.PROCESSLIST WHERE INFO = 'SELECT SLEEP(5)'",
            )
            .await;
            if let Some(r) = rows.first() {
                assert_eq!(r[1].as_deref(), Some("Query"));
                break r[0].clone().unwrap();
            }
            assert!(Instant::now() < deadline, "the sleep never showed up");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(listed_id, victim_id.to_string());
        let (_, show) = text_rows(&mut observer, "SHOW PROCESSLIST").await;
        let row = show
            .iter()
            .find(|r| r[0].as_deref() == Some(listed_id.as_str()))
            .unwrap();
        assert_eq!(row[7].as_deref(), Some("SELECT SLEEP(5)"));
        observer
            .query_drop(format!("{kill} {listed_id}"))
            .await
            .unwrap();
        let (v, r, elapsed) = sleeper.await.unwrap();
        victim = v;
        println!("{kill} {listed_id}: the sleep ended after {elapsed:?}: {r:?}");
        assert!(elapsed < Duration::from_secs(3), "{kill}: {elapsed:?}");
        if query_only {
            match &r {
                Err(mysql_async::Error::Server(e)) => assert_eq!(e.code, 1317, "{e:?}"),
                other => panic!("KILL QUERY: {other:?}"),
            }
            // The victim goes on.
            let one: Option<i64> = victim.query_first("SELECT 1").await.unwrap();
            assert_eq!(one, Some(1));
        } else {
            // The statement ends with MariaDB's 1317, then the connection is closed.
            match &r {
                Err(mysql_async::Error::Server(e)) => assert_eq!(e.code, 1317, "{e:?}"),
                other => panic!("KILL: {other:?}"),
            }
            assert!(victim.query_drop("SELECT 1").await.is_err());
        }
        // Nobody else was touched.
        let one: Option<i64> = bystander.query_first("SELECT 1").await.unwrap();
        assert_eq!(one, Some(1));
    }
    let (_, rows) = text_rows(&mut observer, "SHOW PROCESSLIST").await;
    assert!(
        !rows
            .iter()
            .any(|r| r[0].as_deref() == Some(&victim_id.to_string())),
        "the killed session is gone from the list"
    );

    match observer.query_drop("KILL 999999").await {
        Err(mysql_async::Error::Server(e)) => assert_eq!(e.code, 1094),
        other => panic!("{other:?}"),
    }

    // A user without PROCESS sees its own sessions only, and may not kill another's.
    let url = proxy.url().replace("app:app@", "other:other@");
    let mut other = connect(&url).await;
    let (_, rows) = text_rows(&mut other, "SHOW PROCESSLIST").await;
    let listed: Vec<String> = rows.iter().map(|r| r[0].clone().unwrap()).collect();
    assert_eq!(listed, [other.id().to_string()]);
    let (_, rows) = text_rows(
        &mut other,
        "SELECT COUNT(*) FROM information_schema.PROCESSLIST",
    )
    .await;
    assert_eq!(rows[0][0].as_deref(), Some("1"));
    match other.query_drop(format!("KILL {}", bystander.id())).await {
        Err(mysql_async::Error::Server(e)) => assert_eq!(e.code, 1095),
        other => panic!("{other:?}"),
    }
    let one: Option<i64> = bystander.query_first("SELECT 1").await.unwrap();
    assert_eq!(one, Some(1));
}

/// The mysql CLI's SHOW PROCESSLIST through the proxy lists the proxy's sessions.
#[test]
fn mysql_cli_process_list() {
    let proxy = proxy_with(|c| c);
    let rows = proxy
        .cli_query("SELECT CONNECTION_ID(); SHOW PROCESSLIST")
        .unwrap();
    let me = &rows[0][0];
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(&rows[1][0], me, "{rows:?}");
    assert_eq!(rows[1][1], "app");
    assert_eq!(rows[1][7], "SHOW PROCESSLIST");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_timeout_disconnects_idle_clients() {
    let proxy = proxy_with(|c| c.frontend("wait_timeout = 3"));
    // Active within its limit: never disconnected.
    let mut active = connect(&proxy.url()).await;
    active.query_drop("SET wait_timeout = 2").await.unwrap();
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let one: Option<i64> = active.query_first("SELECT 1").await.unwrap();
        assert_eq!(one, Some(1));
    }
    drop(active);
    let mut by_default = connect(&proxy.url()).await;
    let mut by_set = connect(&proxy.url()).await;
    by_set.query_drop("SET wait_timeout = 1").await.unwrap();
    tokio::time::sleep(Duration::from_millis(1700)).await;
    assert!(
        by_set.query_drop("SELECT 1").await.is_err(),
        "idle 1.7 s with wait_timeout = 1"
    );
    let one: Option<i64> = by_default.query_first("SELECT 1").await.unwrap();
    assert_eq!(one, Some(1), "idle 1.7 s with the configured 3 s");
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let r = by_default.query_drop("SELECT 1").await;
    println!("after 3.5 s idle: {r:?}");
    assert!(r.is_err(), "idle 3.5 s with the configured 3 s");
    let log = proxy.log();
    assert_eq!(
        log.matches("idle longer than wait_timeout").count(),
        2,
        "{log}"
    );
    // New sessions are fine.
    let mut fresh = connect(&proxy.url()).await;
    let one: Option<i64> = fresh.query_first("SELECT 1").await.unwrap();
    assert_eq!(one, Some(1));
}

fn lines(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

fn wait_for_disconnect(path: &std::path::Path, session: u32) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let l = lines(path);
        if l.iter()
            .any(|r| r["event"] == "disconnect" && r["session"] == session)
        {
            return l;
        }
        assert!(Instant::now() < deadline, "no disconnect line: {l:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_log_line_by_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let proxy = proxy_with(|c| {
        c.extra(&format!(
            "[audit]\npath = {:?}\nstatements = \"digest\"\n",
            path.display().to_string()
        ))
    });
    let mut c = connect(&proxy.url()).await;
    let id = c.id();
    c.query_drop("USE fund").await.unwrap();
    let _: Vec<Row> = c.query("SELECT 42, 'secret-literal'").await.unwrap();
    assert!(c.query_drop("SELECT * FROM no_such_table_x").await.is_err());
    let _: Vec<Row> = c.query("SHOW PROCESSLIST").await.unwrap();
    c.disconnect().await.unwrap();
    let l = wait_for_disconnect(&path, id);
    for r in &l {
        println!("{r}");
    }
    let mine: Vec<&serde_json::Value> = l.iter().filter(|r| r["session"] == id).collect();
    assert_eq!(mine[0]["event"], "connect");
    assert_eq!(mine[mine.len() - 1]["event"], "disconnect");
    for r in &mine {
        assert_eq!(r["user"], "app");
        assert!(r["client"].as_str().unwrap().starts_with("127.0.0.1:"));
        assert!(r["time"].as_str().unwrap().ends_with('Z'));
    }
    let stmt = |text: &str| -> &serde_json::Value {
        mine.iter()
            .find(|r| r["statement"] == text)
            .unwrap_or_else(|| panic!("no line for {text}: {mine:?}"))
    };
    let select = stmt("SELECT ?, ?");
    assert_eq!(select["code"], 0);
    assert_eq!(select["rows"], 1);
    assert_eq!(select["db"], "fund");
    assert_eq!(select["shards"], serde_json::json!(["s1"]));
    assert!(select["duration_us"].as_u64().is_some());
    assert_eq!(stmt("SELECT * FROM no_such_table_x")["code"], 1146);
    let show = stmt("SHOW PROCESSLIST");
    assert_eq!(show["shards"], serde_json::json!([]));
    assert_eq!(show["rows"], 1);
    assert_eq!(stmt("USE fund")["db"], "fund");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        !text.contains("secret-literal"),
        "a literal in the digest log"
    );

    // Rotation: move the file away, SIGHUP, the next session goes to a new file.
    let rotated = dir.path().join("audit.log.1");
    std::fs::rename(&path, &rotated).unwrap();
    proxy.signal(libc::SIGHUP);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut c = connect(&proxy.url()).await;
    let id2 = c.id();
    c.query_drop("SELECT 1").await.unwrap();
    c.disconnect().await.unwrap();
    let l = wait_for_disconnect(&path, id2);
    assert!(
        l.iter().all(|r| r["session"] != id),
        "old lines in the new file"
    );
    assert!(lines(&rotated).iter().all(|r| r["session"] != id2));
}

mod raw {
    //! Just enough of the client protocol to log in with chosen capability flags.
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::time::Duration;

    use sha1::{Digest, Sha1};

    pub fn write(s: &mut TcpStream, seq: u8, payload: &[u8]) {
        let mut v = (payload.len() as u32).to_le_bytes()[..3].to_vec();
        v.push(seq);
        v.extend_from_slice(payload);
        s.write_all(&v).unwrap();
    }

    /// One packet's payload; None when the connection is closed.
    pub fn read(s: &mut TcpStream) -> Option<Vec<u8>> {
        let mut h = [0u8; 4];
        s.read_exact(&mut h).ok()?;
        let mut p = vec![0u8; h[0] as usize | (h[1] as usize) << 8 | (h[2] as usize) << 16];
        s.read_exact(&mut p).ok()?;
        Some(p)
    }

    /// Logs in as app/app with mysql_native_password and `extra` capability flags.
    pub fn login(port: u16, extra: u32) -> TcpStream {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let g = read(&mut s).unwrap();
        let v_end = 1 + g[1..].iter().position(|&b| b == 0).unwrap();
        let p = v_end + 1 + 4;
        let mut salt = g[p..p + 8].to_vec();
        let rest = p + 27;
        salt.extend_from_slice(&g[rest..rest + 12]);
        let h1 = Sha1::digest(b"app");
        let h2 = Sha1::digest(h1);
        let mut m = Sha1::new();
        m.update(&salt);
        m.update(h2);
        let auth: Vec<u8> = h1
            .iter()
            .zip(m.finalize().iter())
            .map(|(a, b)| a ^ b)
            .collect();
        let caps: u32 = 1 | 4 | 0x200 | 0x2000 | 0x8000 | 0x80000 | extra;
        let mut r = caps.to_le_bytes().to_vec();
        r.extend_from_slice(&(1u32 << 24).to_le_bytes());
        r.push(45);
        r.extend_from_slice(&[0u8; 23]);
        r.extend_from_slice(b"app\0");
        r.push(20);
        r.extend_from_slice(&auth);
        r.extend_from_slice(b"mysql_native_password\0");
        write(&mut s, 1, &r);
        assert_eq!(read(&mut s).unwrap()[0], 0, "login");
        s
    }
}

/// CLIENT_INTERACTIVE clients get `interactive_timeout`, the others `wait_timeout`.
#[test]
fn interactive_clients_get_interactive_timeout() {
    let proxy = proxy_with(|c| {
        c.frontend("wait_timeout = 30")
            .frontend("interactive_timeout = 1")
    });
    let mut interactive = raw::login(proxy.port(), 0x400);
    let mut batch = raw::login(proxy.port(), 0);
    std::thread::sleep(Duration::from_millis(1800));
    raw::write(&mut batch, 0, &[0x0e]);
    assert_eq!(
        raw::read(&mut batch).map(|p| p[0]),
        Some(0),
        "batch client pinged"
    );
    raw::write(&mut interactive, 0, &[0x0e]);
    assert_eq!(
        raw::read(&mut interactive),
        None,
        "interactive client idle 1.8 s with interactive_timeout = 1"
    );
}
