//! The client programs tests drive: the `mariadb` CLI and its tools, Python with PyMySQL and
//! mysql-connector-python, sysbench, headless Chromium, and plain HTTP/1.1 requests. All are
//! blocking: from an async test, call them through `tokio::task::spawn_blocking`.

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use super::{lock_file, signal_child, spawn_tied, target_dir, wait_child, APP_PASSWORD, APP_USER};

/// Runs `cmd` to its end and returns its stdout; panics with stdout and stderr when it fails.
pub fn output_ok(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let stdout = String::from_utf8(out.stdout).expect("UTF-8 output");
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{stdout}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

// ---------------------------------------------------------------------------------------------
// The mariadb CLI
// ---------------------------------------------------------------------------------------------

/// `program` (`mariadb`, `mariadb-admin`) for `127.0.0.1:port` over TCP as `user`, reading no
/// option file; the caller adds what to run (`-e`, a database, commands).
pub fn mariadb_tool(program: &str, port: u16, user: &str, password: &str) -> Command {
    let mut cmd = Command::new(program);
    cmd.args(["--no-defaults", "--protocol=tcp", "-h127.0.0.1"])
        .arg(format!("-P{port}"))
        .arg(format!("-u{user}"));
    if !password.is_empty() {
        cmd.arg(format!("-p{password}"));
    }
    cmd
}

/// The `mariadb` CLI for `127.0.0.1:port`, see [`mariadb_tool`].
pub fn mariadb_cli(port: u16, user: &str, password: &str) -> Command {
    mariadb_tool("mariadb", port, user, password)
}

/// Runs a `mariadb` command and splits its batch output into rows of tab-separated fields;
/// Err is what it printed on stderr.
pub fn cli_rows(cmd: &mut Command) -> Result<Vec<Vec<String>>, String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run mariadb client: {e}"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split('\t').map(str::to_string).collect())
        .collect())
}

/// Runs SQL on `127.0.0.1:port` with the `mariadb` CLI and returns the rows (tab-separated
/// batch output split into columns; NULL reads as "NULL"). Err carries the CLI's message.
pub fn cli_query(
    port: u16,
    user: &str,
    password: &str,
    sql: &str,
) -> Result<Vec<Vec<String>>, String> {
    cli_rows(mariadb_cli(port, user, password).args(["--connect-timeout=5", "-N", "-B", "-e", sql]))
        .map_err(|e| format!("port {port}: {sql}: {}", e.trim()))
}

// ---------------------------------------------------------------------------------------------
// Python clients
// ---------------------------------------------------------------------------------------------

/// Python packages installed in the test venv.
pub const PYTHON_PACKAGES: &[&str] = &["PyMySQL", "mysql-connector-python", "cryptography"];

/// The python of a venv under `target/pyvenv` with [`PYTHON_PACKAGES`], created once (file
/// lock) with `python3 -m venv` and pip.
pub fn python_venv() -> PathBuf {
    static V: OnceLock<PathBuf> = OnceLock::new();
    V.get_or_init(|| {
        let target = target_dir();
        let venv = target.join("pyvenv");
        let python = venv.join("bin/python");
        let ready = venv.join(".ready");
        let _lock = lock_file(&target.join("pyvenv.lock"));
        if fs::read_to_string(&ready).ok().as_deref() == Some(PYTHON_PACKAGES.join("\n").as_str()) {
            return python;
        }
        let _ = fs::remove_dir_all(&venv);
        output_ok(Command::new("python3").arg("-m").arg("venv").arg(&venv));
        output_ok(
            Command::new(&python)
                .args([
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                ])
                .args(PYTHON_PACKAGES),
        );
        fs::write(&ready, PYTHON_PACKAGES.join("\n")).expect("write .ready");
        python
    })
    .clone()
}

/// A Python script run by the venv's python; `args` are its `sys.argv[1:]`.
pub fn python(script: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(python_venv());
    cmd.arg("-c").arg(script).args(args).stdin(Stdio::null());
    cmd
}

/// Runs a Python script with the venv's python; `args` are its `sys.argv[1:]`.
pub fn run_python(script: &str, args: &[&str]) -> Output {
    python(script, args).output().expect("run python")
}

// ---------------------------------------------------------------------------------------------
// sysbench
// ---------------------------------------------------------------------------------------------

/// A sysbench workload against `127.0.0.1:port` as app/app:
///
/// ```ignore
/// let sb = Sysbench::new("oltp_read_write", proxy.port(), "sbtest_core").tables(2).table_size(500);
/// sb.cleanup();
/// sb.prepare();
/// let report = sb.run(4, 5, &[]);
/// assert!(report.ignored_errors < 20, "{}", report.text);
/// ```
#[derive(Debug, Clone)]
pub struct Sysbench {
    workload: String,
    /// Options given to every command (connection, tables, table size, extras).
    options: Vec<String>,
    /// Working directory of the commands (`None`: the test's).
    dir: Option<PathBuf>,
}

/// What `sysbench run` printed, and the figures tests check.
#[derive(Debug, Clone)]
pub struct SysbenchReport {
    pub text: String,
    pub transactions: u64,
    pub tps: f64,
    /// `ignored errors:` (deadlocks and the codes of `--mysql-ignore-errors`), 0 if absent.
    pub ignored_errors: u64,
}

impl Sysbench {
    pub fn new(workload: &str, port: u16, db: &str) -> Sysbench {
        Sysbench {
            workload: workload.into(),
            options: vec![
                "--db-driver=mysql".into(),
                "--mysql-host=127.0.0.1".into(),
                format!("--mysql-port={port}"),
                format!("--mysql-user={APP_USER}"),
                format!("--mysql-password={APP_PASSWORD}"),
                format!("--mysql-db={db}"),
            ],
            dir: None,
        }
    }

    /// Runs the commands in `dir` (sysbench 1.0's `--mysql-ssl=on` reads `cacert.pem`,
    /// `client-cert.pem` and `client-key.pem` from its working directory).
    pub fn in_dir(mut self, dir: &std::path::Path) -> Sysbench {
        self.dir = Some(dir.to_path_buf());
        self
    }

    /// `--tables=n`.
    pub fn tables(self, n: u32) -> Sysbench {
        self.option(&format!("--tables={n}"))
    }

    /// `--table-size=rows`.
    pub fn table_size(self, rows: u64) -> Sysbench {
        self.option(&format!("--table-size={rows}"))
    }

    /// Another option for every command (e.g. `--auto-inc=off`).
    pub fn option(mut self, option: &str) -> Sysbench {
        self.options.push(option.into());
        self
    }

    /// `sysbench <workload> cleanup`; its output.
    pub fn cleanup(&self) -> String {
        self.command(&["cleanup"])
    }

    /// `sysbench <workload> prepare`; its output.
    pub fn prepare(&self) -> String {
        self.command(&["prepare"])
    }

    /// `sysbench <workload> --threads=.. --time=.. <extra> run`; panics when sysbench fails.
    pub fn run(&self, threads: u32, seconds: u32, extra: &[&str]) -> SysbenchReport {
        let mut args = vec![format!("--threads={threads}"), format!("--time={seconds}")];
        args.extend(extra.iter().map(|a| a.to_string()));
        args.push("run".into());
        let text = self.command(&args.iter().map(String::as_str).collect::<Vec<_>>());
        SysbenchReport::parse(text)
    }

    fn command(&self, args: &[&str]) -> String {
        let mut cmd = Command::new("sysbench");
        if let Some(d) = &self.dir {
            cmd.current_dir(d);
        }
        output_ok(cmd.arg(&self.workload).args(&self.options).args(args))
    }
}

impl SysbenchReport {
    fn parse(text: String) -> SysbenchReport {
        // "    transactions:                        1383   (276.19 per sec.)"
        let field = |label: &str, n: usize| -> Option<String> {
            let line = text.lines().find(|l| l.contains(label))?;
            let word = line.split_whitespace().nth(n)?;
            Some(word.trim_start_matches('(').to_string())
        };
        SysbenchReport {
            transactions: field("transactions:", 1)
                .and_then(|n| n.parse().ok())
                .unwrap_or(0),
            tps: field("transactions:", 2)
                .and_then(|n| n.parse().ok())
                .unwrap_or(0.0),
            ignored_errors: field("ignored errors:", 2)
                .and_then(|n| n.parse().ok())
                .unwrap_or(0),
            text,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Headless Chromium
// ---------------------------------------------------------------------------------------------

/// Loads `url` in headless Chromium and returns the DOM after 5 s of virtual time (the page's
/// scripts have run); panics when Chromium fails or takes more than 60 s.
pub fn chromium_dom(url: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let (dom, errors) = (dir.path().join("dom.html"), dir.path().join("stderr.txt"));
    let mut cmd = Command::new("chromium");
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--virtual-time-budget=5000",
        "--dump-dom",
    ])
    .arg(format!(
        "--user-data-dir={}",
        dir.path().join("profile").display()
    ))
    .arg(url)
    .stdin(Stdio::null())
    .stdout(fs::File::create(&dom).unwrap())
    .stderr(fs::File::create(&errors).unwrap());
    let mut child = spawn_tied(cmd)
        .expect("chromium must be installed for this test (Debian: apt-get install -y chromium)");
    let Some(status) = wait_child(&mut child, Duration::from_secs(60)) else {
        signal_child(&child, libc::SIGKILL);
        let _ = child.wait();
        panic!("chromium did not finish within 60 s");
    };
    assert!(
        status.success(),
        "chromium failed ({status}): {}",
        fs::read_to_string(&errors).unwrap_or_default()
    );
    fs::read_to_string(&dom).unwrap()
}

// ---------------------------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------------------------

/// An HTTP answer: status code, the header block as sent (status line first), the body.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl HttpResponse {
    /// The value of header `name` (any case), if sent.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// One HTTP/1.1 request to `addr` with `Connection: close`, the body (if any) sent as
/// `application/json`; each read waits at most `timeout`. Reads the answer to its end.
pub fn http_request(
    addr: &str,
    method: &str,
    path: &str,
    json_body: Option<&str>,
    timeout: Duration,
) -> HttpResponse {
    let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(timeout)).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(body) = json_body {
        req += &format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
    } else {
        req += "\r\n";
    }
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)
        .unwrap_or_else(|e| panic!("{method} {path}: no whole answer within {timeout:?}: {e}"));
    let text = String::from_utf8(raw).expect("a UTF-8 answer");
    let (head, body) = text.split_once("\r\n\r\n").expect("a header block");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {head}"));
    HttpResponse {
        status,
        head: head.to_string(),
        body: body.to_string(),
    }
}

/// `GET path` from `addr`, waiting at most 10 s for each read.
pub fn http_get(addr: &str, path: &str) -> HttpResponse {
    http_request(addr, "GET", path, None, Duration::from_secs(10))
}
