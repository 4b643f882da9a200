//! Test harness shared by the integration tests: real MariaDB servers, replicated clusters, the
//! proxy binary and a Python venv with client libraries.
//!
//! Include it from a test file in `integration/` with `mod harness;`.
//!
//! Design points:
//! - Every server and proxy is spawned by one long-lived thread with `PR_SET_PDEATHSIG =
//!   SIGKILL`, so they die with the test process even though `cargo test` never runs static
//!   destructors (the shared cluster) and kills nothing on panic. The death signal is tied to
//!   the spawning *thread*, hence a dedicated thread that never exits.
//! - Instances are copies of a template datadir built once per MariaDB version under
//!   `target/mariadb-template-<version>` (file lock: test binaries run in parallel), with the
//!   users and the `fund` database from `scripts/mariadb-init.sql`, the same file
//!   `scripts/cluster.sh` uses. A copy starts in well under a second.
//! - All harness SQL goes through the `mariadb` CLI, synchronously: it works from plain and
//!   `#[tokio::test]` tests alike (no nested runtime), and never reads `/etc/mysql/my.cnf`.
//! - Instance directories live in `$TMPDIR/shardproxy-test/<pid>-...`; directories of dead
//!   test processes are swept at the next start, because the shared cluster is never dropped.
#![allow(dead_code)]

pub mod fixed_ops;

use std::fs;
use std::io;
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::os::unix::io::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{mpsc, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

/// Default time a server may take to accept connections; generous because CI machines are
/// slow and several test binaries start servers at once.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Users every instance has (see `scripts/mariadb-init.sql`).
pub const APP_USER: &str = "app";
pub const APP_PASSWORD: &str = "app";
pub const REPL_USER: &str = "repl";
pub const REPL_PASSWORD: &str = "repl";

// ---------------------------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------------------------

/// A port that was free a moment ago (bound to port 0 and released). Another process may take
/// it before we do: callers that bind it later must detect and retry.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local_addr").port()
}

/// Waits until `addr` accepts TCP connections; false on timeout.
pub fn wait_port(addr: &str, timeout: Duration) -> bool {
    wait_until(timeout, || {
        addr.to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .map(|sa| TcpStream::connect_timeout(&sa, Duration::from_millis(200)).is_ok())
            .unwrap_or(false)
    })
}

/// Polls `cond` every 50 ms until it holds; false on timeout.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// The cargo target directory (`CARGO_TARGET_TMPDIR` is `<target>/tmp`).
pub fn target_dir() -> PathBuf {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent().unwrap_or(tmp).to_path_buf()
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// An exclusive `flock` held until dropped. Works across processes and, since every call
/// opens its own file description, across threads of one process.
struct FileLock(fs::File);

fn lock_file(path: &Path) -> FileLock {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).expect("create lock dir");
    }
    let f = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open lock {}: {e}", path.display()));
    // SAFETY: flock on a valid, owned file descriptor.
    let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) };
    assert_eq!(
        rc,
        0,
        "flock {}: {}",
        path.display(),
        io::Error::last_os_error()
    );
    FileLock(f)
}

/// Last `n` lines of a file, for error messages.
fn tail(path: &Path, n: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_else(|e| format!("<{}: {e}>", path.display()));
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

// ---------------------------------------------------------------------------------------------
// The spawner thread
// ---------------------------------------------------------------------------------------------

struct SpawnRequest {
    cmd: Command,
    reply: mpsc::Sender<io::Result<Child>>,
}

/// Spawns `cmd` from the harness's spawner thread with a parent-death signal, so the child is
/// SIGKILLed when the test process exits, however it exits.
pub fn spawn_tied(cmd: Command) -> io::Result<Child> {
    static SPAWNER: OnceLock<mpsc::Sender<SpawnRequest>> = OnceLock::new();
    let tx = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        thread::Builder::new()
            .name("harness-spawner".into())
            .spawn(move || {
                // Lives as long as the process: the static sender is never dropped.
                for mut req in rx {
                    let _ = req.reply.send(spawn_with_pdeathsig(&mut req.cmd));
                }
            })
            .expect("start harness-spawner thread");
        tx
    });
    let (reply, answer) = mpsc::channel();
    tx.send(SpawnRequest { cmd, reply })
        .map_err(|_| io::Error::other("harness spawner thread is gone"))?;
    answer
        .recv()
        .map_err(|_| io::Error::other("harness spawner thread did not answer"))?
}

fn spawn_with_pdeathsig(cmd: &mut Command) -> io::Result<Child> {
    // SAFETY: getpid has no preconditions.
    let parent = unsafe { libc::getpid() };
    // SAFETY: the closure only calls async-signal-safe functions (prctl, getppid, _exit).
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0 as libc::c_ulong,
                0 as libc::c_ulong,
                0 as libc::c_ulong,
            ) != 0
            {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died before prctl took effect: then nobody would kill us.
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
    cmd.spawn()
}

/// Sends `sig` to a child that may already have exited.
fn signal_child(child: &Child, sig: libc::c_int) {
    // SAFETY: kill on the pid of a child we have not reaped yet.
    unsafe {
        libc::kill(child.id() as libc::pid_t, sig);
    }
}

/// Waits for a child to exit; None on timeout.
fn wait_child(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(st)) => return Some(st),
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
            _ => return None,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Instance directories and the template datadir
// ---------------------------------------------------------------------------------------------

/// Where instance directories live: short paths, since a unix socket path has 108 bytes.
fn instances_base() -> PathBuf {
    std::env::temp_dir().join("shardproxy-test")
}

/// A fresh directory `<base>/<pid>-<n>-<name>` for one server or proxy.
fn new_instance_dir(name: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    sweep_stale_dirs();
    let n = N.fetch_add(1, Ordering::Relaxed);
    let dir = instances_base().join(format!("{}-{n}-{name}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    dir
}

/// Removes instance directories left by test processes that are gone (their servers died with
/// them through the death signal; only the files remain). Once per process.
fn sweep_stale_dirs() {
    static SWEPT: OnceLock<()> = OnceLock::new();
    SWEPT.get_or_init(|| {
        let Ok(entries) = fs::read_dir(instances_base()) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(pid) = name.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
                continue;
            };
            if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
                let _ = fs::remove_dir_all(e.path());
            }
        }
    });
}

/// Path of mariadbd: `$MARIADBD`, /usr/sbin/mariadbd, or the one on PATH.
pub fn mariadbd_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("MARIADBD") {
        return PathBuf::from(p);
    }
    let sbin = Path::new("/usr/sbin/mariadbd");
    if sbin.exists() {
        return sbin.to_path_buf();
    }
    PathBuf::from("mariadbd")
}

/// The server version, e.g. `10.11.19-MariaDB-0+deb12u1`; names the template.
pub fn mariadb_version() -> &'static str {
    static V: OnceLock<String> = OnceLock::new();
    V.get_or_init(|| {
        let out = Command::new(mariadbd_bin())
            .arg("--version")
            .output()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run {}: {e} (is mariadb-server installed?)",
                    mariadbd_bin().display()
                )
            });
        let text = String::from_utf8_lossy(&out.stdout);
        // "mariadbd  Ver 10.11.19-MariaDB-0+deb12u1 for debian-linux-gnu on x86_64 (Debian 12)"
        text.split_whitespace()
            .skip_while(|w| *w != "Ver")
            .nth(1)
            .unwrap_or("unknown")
            .to_string()
    })
}

/// The template datadir, created once (under a file lock) by mariadb-install-db.
fn template_datadir() -> &'static Path {
    static T: OnceLock<PathBuf> = OnceLock::new();
    T.get_or_init(|| {
        let target = target_dir();
        let version = mariadb_version();
        let tpl = target.join(format!("mariadb-template-{version}"));
        let _lock = lock_file(&target.join("mariadb-template.lock"));
        if tpl.is_dir() {
            return tpl;
        }
        // Built aside and renamed: the template either exists whole or not at all.
        let tmp = target.join(format!("mariadb-template-{version}.tmp"));
        let _ = fs::remove_dir_all(&tmp);
        let init_sql = repo_root().join("scripts/mariadb-init.sql");
        let mut cmd = Command::new("mariadb-install-db");
        cmd.arg("--no-defaults");
        if is_root() {
            cmd.arg("--user=root");
        }
        cmd.arg(format!("--datadir={}", tmp.display()))
            .arg("--auth-root-authentication-method=normal")
            .arg("--skip-test-db")
            .arg("--skip-name-resolve")
            .arg("--innodb-log-file-size=8M")
            .arg("--innodb-buffer-pool-size=64M")
            .arg(format!("--extra-file={}", init_sql.display()));
        let out = cmd
            .output()
            .unwrap_or_else(|e| panic!("cannot run mariadb-install-db: {e}"));
        if !out.status.success() {
            let _ = fs::remove_dir_all(&tmp);
            panic!(
                "mariadb-install-db failed ({}):\n{}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        fs::rename(&tmp, &tpl).expect("rename template datadir");
        tpl
    })
}

// ---------------------------------------------------------------------------------------------
// SQL through the mariadb CLI
// ---------------------------------------------------------------------------------------------

/// Runs SQL on `127.0.0.1:port` with the `mariadb` CLI and returns the rows (tab-separated
/// batch output split into columns; NULL reads as "NULL"). Err carries the CLI's message.
pub fn cli_query(
    port: u16,
    user: &str,
    password: &str,
    sql: &str,
) -> Result<Vec<Vec<String>>, String> {
    let mut cmd = Command::new("mariadb");
    cmd.arg("--no-defaults")
        .arg("--protocol=tcp")
        .arg("-h127.0.0.1")
        .arg(format!("-P{port}"))
        .arg(format!("-u{user}"))
        .arg("--connect-timeout=5")
        .arg("-N")
        .arg("-B");
    if !password.is_empty() {
        cmd.arg(format!("-p{password}"));
    }
    cmd.arg("-e").arg(sql).stdin(Stdio::null());
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run mariadb client: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "port {port}: {}: {}",
            sql,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split('\t').map(str::to_string).collect())
        .collect())
}

// ---------------------------------------------------------------------------------------------
// One MariaDB server
// ---------------------------------------------------------------------------------------------

/// Options of [`Mariadb::start`].
#[derive(Debug, Clone)]
pub struct MariadbOpts {
    /// Unique per replication topology; None: a process-unique id.
    pub server_id: Option<u32>,
    /// Binary log on (needed by primaries and by replicas that may be promoted).
    pub log_bin: bool,
    /// Semi-sync master and slave enabled (1 s master timeout, AFTER_SYNC).
    pub semi_sync: bool,
    /// Extra `--option=value` arguments for mariadbd.
    pub extra_args: Vec<String>,
    /// How long the server may take to accept connections.
    pub start_timeout: Duration,
    /// A label for the instance directory and messages.
    pub name: String,
}

impl Default for MariadbOpts {
    fn default() -> Self {
        MariadbOpts {
            server_id: None,
            log_bin: true,
            semi_sync: true,
            extra_args: Vec::new(),
            start_timeout: START_TIMEOUT,
            name: "mariadb".into(),
        }
    }
}

/// A mariadbd on its own port and datadir; SIGKILLed and deleted on drop.
pub struct Mariadb {
    child: Option<Child>,
    dir: PathBuf,
    port: u16,
    server_id: u32,
    opts: MariadbOpts,
}

impl Mariadb {
    /// Starts a server from a copy of the template; panics with its error log on failure.
    pub fn start(opts: MariadbOpts) -> Mariadb {
        static NEXT_ID: AtomicU32 = AtomicU32::new(1000);
        let server_id = opts
            .server_id
            .unwrap_or_else(|| NEXT_ID.fetch_add(1, Ordering::Relaxed));
        let dir = new_instance_dir(&opts.name);
        let out = Command::new("cp")
            .arg("-a")
            .arg(template_datadir())
            .arg(dir.join("data"))
            .output()
            .expect("run cp");
        assert!(
            out.status.success(),
            "copy template datadir: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut m = Mariadb {
            child: None,
            dir,
            port: 0,
            server_id,
            opts,
        };
        // The free port can be taken by another test process between our probe and the
        // server's bind: retry with a new port when the log says so.
        let mut attempt = 0;
        loop {
            attempt += 1;
            m.port = free_port();
            match m.launch() {
                Ok(()) => return m,
                Err(e) if attempt < 5 && e.contains("bind") => continue,
                Err(e) => panic!("{e}"),
            }
        }
    }

    /// Starts mariadbd on `self.port` and waits until it answers as itself.
    fn launch(&mut self) -> Result<(), String> {
        let log = self.dir.join("error.log");
        let log_start = fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
        let mut cmd = Command::new(mariadbd_bin());
        cmd.arg("--no-defaults");
        if is_root() {
            cmd.arg("--user=root");
        }
        let d = &self.dir;
        cmd.arg(format!("--datadir={}", d.join("data").display()))
            .arg(format!("--socket={}", d.join("mysqld.sock").display()))
            .arg(format!("--pid-file={}", d.join("mysqld.pid").display()))
            .arg(format!("--log-error={}", log.display()))
            .arg(format!("--port={}", self.port))
            .arg("--bind-address=127.0.0.1")
            .arg(format!("--server-id={}", self.server_id))
            .arg("--binlog-format=ROW")
            .arg("--log-slave-updates=ON")
            .arg("--gtid-strict-mode=ON")
            .arg("--max-allowed-packet=64M")
            .arg("--local-infile=1")
            .arg("--skip-name-resolve")
            .arg("--innodb-buffer-pool-size=64M")
            .arg("--innodb-log-file-size=8M")
            .arg("--character-set-server=utf8mb4")
            .arg("--collation-server=utf8mb4_general_ci");
        if self.opts.log_bin {
            cmd.arg("--log-bin=mysql-bin");
        }
        if self.opts.semi_sync {
            cmd.arg("--rpl-semi-sync-master-enabled=ON")
                .arg("--rpl-semi-sync-slave-enabled=ON")
                .arg("--rpl-semi-sync-master-timeout=1000")
                .arg("--rpl-semi-sync-master-wait-point=AFTER_SYNC");
        }
        cmd.args(&self.opts.extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = spawn_tied(cmd).map_err(|e| format!("spawn mariadbd: {e}"))?;
        self.child = Some(child);

        let datadir = format!("{}/", self.dir.join("data").display());
        let deadline = Instant::now() + self.opts.start_timeout;
        let failure = |why: String| {
            let text = fs::read_to_string(&log).unwrap_or_default();
            let new = text.get(log_start as usize..).unwrap_or(&text);
            let lines: Vec<&str> = new.lines().collect();
            format!(
                "mariadbd {} (port {}): {why}\n--- {} (last 40 lines)\n{}",
                self.opts.name,
                self.port,
                log.display(),
                lines[lines.len().saturating_sub(40)..].join("\n")
            )
        };
        loop {
            if let Some(st) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                let msg = failure(format!("exited during startup with {st}"));
                let bind = msg.contains("Address already in use") || msg.contains("Bind on");
                return Err(if bind { format!("bind: {msg}") } else { msg });
            }
            // Answering is not enough: another test's server may own this port. Ours reports
            // our datadir.
            if let Ok(rows) = cli_query(self.port, "root", "", "SELECT @@datadir") {
                if rows.first().and_then(|r| r.first()) == Some(&datadir) {
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                let msg = failure(format!(
                    "not accepting connections after {:?}",
                    self.opts.start_timeout
                ));
                self.kill();
                return Err(msg);
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn host(&self) -> &'static str {
        "127.0.0.1"
    }

    /// `127.0.0.1:<port>`, the form the proxy config uses.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn server_id(&self) -> u32 {
        self.server_id
    }

    /// The instance directory (datadir under `data/`, `error.log`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// mysql_async/sqlx URL as app/app on database `fund`.
    pub fn url(&self) -> String {
        format!(
            "mysql://{APP_USER}:{APP_PASSWORD}@127.0.0.1:{}/fund",
            self.port
        )
    }

    /// Runs SQL as root (no password); panics on error.
    pub fn query(&self, sql: &str) -> Vec<Vec<String>> {
        self.try_query(sql).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Runs SQL as root; Err carries the server's message.
    pub fn try_query(&self, sql: &str) -> Result<Vec<Vec<String>>, String> {
        cli_query(self.port, "root", "", sql)
    }

    /// First column of the first row, or None when there is no row.
    pub fn query_value(&self, sql: &str) -> Option<String> {
        self.query(sql)
            .into_iter()
            .next()
            .and_then(|r| r.into_iter().next())
    }

    /// Runs statements, ignoring any result.
    pub fn exec(&self, sql: &str) {
        self.query(sql);
    }

    /// A `SHOW STATUS` / `SHOW VARIABLES` value by exact name.
    pub fn status(&self, name: &str) -> Option<String> {
        self.query(&format!("SHOW GLOBAL STATUS LIKE '{name}'"))
            .into_iter()
            .next()
            .and_then(|r| r.into_iter().nth(1))
    }

    /// `SHOW SLAVE STATUS` as (field, value) pairs; empty on a server that is no replica.
    pub fn slave_status(&self) -> Vec<(String, String)> {
        let out = Command::new("mariadb")
            .args(["--no-defaults", "--protocol=tcp", "-h127.0.0.1", "-uroot"])
            .arg(format!("-P{}", self.port))
            .args(["-e", "SHOW SLAVE STATUS\\G"])
            .stdin(Stdio::null())
            .output()
            .expect("run mariadb client");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                let (k, v) = l.split_once(": ")?;
                Some((k.trim().to_string(), v.to_string()))
            })
            .collect()
    }

    /// One field of `SHOW SLAVE STATUS`.
    pub fn slave_field(&self, field: &str) -> Option<String> {
        self.slave_status()
            .into_iter()
            .find(|(k, _)| k == field)
            .map(|(_, v)| v)
    }

    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// SIGKILL, like a crash; the datadir stays so [`Mariadb::restart`] can bring it back.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            signal_child(&c, libc::SIGKILL);
            let _ = c.wait();
        }
    }

    /// Clean shutdown (SIGTERM), killing after 30 s.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            signal_child(&c, libc::SIGTERM);
            if wait_child(&mut c, Duration::from_secs(30)).is_none() {
                signal_child(&c, libc::SIGKILL);
                let _ = c.wait();
            }
        }
    }

    /// Starts the server again on the same port and datadir (after kill or stop).
    pub fn restart(&mut self) {
        self.stop();
        self.launch().unwrap_or_else(|e| panic!("{e}"));
    }

    /// The error log, for assertion messages.
    pub fn error_log(&self) -> String {
        tail(&self.dir.join("error.log"), 40)
    }
}

impl Drop for Mariadb {
    fn drop(&mut self) {
        self.kill();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

// ---------------------------------------------------------------------------------------------
// A cluster of shards
// ---------------------------------------------------------------------------------------------

/// One shard: a primary and its GTID replicas.
pub struct Shard {
    /// `s1`, `s2`, ...
    pub name: String,
    pub primary: Mariadb,
    pub replicas: Vec<Mariadb>,
}

impl Shard {
    pub fn primary_addr(&self) -> String {
        self.primary.addr()
    }

    pub fn replica_addrs(&self) -> Vec<String> {
        self.replicas.iter().map(Mariadb::addr).collect()
    }

    /// Every server of the shard, primary first.
    pub fn servers(&self) -> impl Iterator<Item = &Mariadb> {
        std::iter::once(&self.primary).chain(self.replicas.iter())
    }

    /// Waits until every replica has applied everything the primary has written
    /// (`MASTER_GTID_WAIT` on the primary's `gtid_binlog_pos`).
    pub fn sync_replicas(&self, timeout: Duration) {
        let pos = self
            .primary
            .query_value("SELECT @@gtid_binlog_pos")
            .unwrap_or_default();
        for r in &self.replicas {
            let res = r.query_value(&format!(
                "SELECT MASTER_GTID_WAIT('{pos}', {})",
                timeout.as_secs_f64()
            ));
            assert_eq!(
                res.as_deref(),
                Some("0"),
                "{} replica {} did not reach {pos} in {timeout:?}",
                self.name,
                r.addr()
            );
        }
    }
}

/// Shards of primary + replicas with GTID replication (`slave_pos`) and semi-sync; users
/// app/app and repl/repl and the database `fund` on every server.
pub struct Cluster {
    pub shards: Vec<Shard>,
}

impl Cluster {
    /// Starts `shards` shards named s1.. with `replicas_per_shard` replicas each; all servers
    /// start in parallel. Returns when every replica is connected and semi-sync is active.
    pub fn start(shards: usize, replicas_per_shard: usize) -> Cluster {
        static CLUSTER_NO: AtomicU32 = AtomicU32::new(0);
        let cno = CLUSTER_NO.fetch_add(1, Ordering::Relaxed);
        // Warm the template before the parallel starts, so the lock is not fought over.
        let _ = template_datadir();
        let mut shard_list: Vec<Shard> = thread::scope(|s| {
            let handles: Vec<_> = (1..=shards)
                .map(|i| {
                    s.spawn(move || {
                        let base_id = 100 * (cno + 1) + 10 * i as u32;
                        let servers: Vec<Mariadb> = thread::scope(|s2| {
                            let hs: Vec<_> = (0..=replicas_per_shard)
                                .map(|r| {
                                    s2.spawn(move || {
                                        let role = if r == 0 {
                                            "primary".to_string()
                                        } else {
                                            format!("replica{r}")
                                        };
                                        Mariadb::start(MariadbOpts {
                                            server_id: Some(base_id + r as u32 + 1),
                                            name: format!("c{cno}-s{i}-{role}"),
                                            ..MariadbOpts::default()
                                        })
                                    })
                                })
                                .collect();
                            hs.into_iter()
                                .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                                .collect()
                        });
                        let mut it = servers.into_iter();
                        let primary = it.next().expect("primary");
                        Shard {
                            name: format!("s{i}"),
                            primary,
                            replicas: it.collect(),
                        }
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect()
        });
        for shard in &mut shard_list {
            for r in &shard.replicas {
                connect_replica(r, &shard.primary);
            }
        }
        for shard in &shard_list {
            wait_replication(shard);
        }
        Cluster { shards: shard_list }
    }

    /// A process-wide cluster (2 shards, 1 replica each) shared by the tests of one binary.
    /// Never dropped: its servers die with the process (death signal). Tests that stop,
    /// kill or promote servers must start their own [`Cluster`].
    pub fn shared() -> &'static Cluster {
        static SHARED: OnceLock<Cluster> = OnceLock::new();
        SHARED.get_or_init(|| Cluster::start(2, 1))
    }

    /// The shard named `name` (`s1`, ...).
    pub fn shard(&self, name: &str) -> &Shard {
        self.shards
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no shard {name}"))
    }

    /// Every server of every shard.
    pub fn servers(&self) -> impl Iterator<Item = &Mariadb> {
        self.shards.iter().flat_map(Shard::servers)
    }
}

/// Points `replica` at `primary` with GTID (slave_pos) and starts replication.
pub fn connect_replica(replica: &Mariadb, primary: &Mariadb) {
    replica.exec(&format!(
        "STOP SLAVE; CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT={}, \
         MASTER_USER='{REPL_USER}', MASTER_PASSWORD='{REPL_PASSWORD}', \
         MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1; START SLAVE; \
         SET GLOBAL read_only=ON",
        primary.port()
    ));
}

/// Waits until every replica of the shard runs both threads and the primary counts them all
/// as semi-sync clients.
fn wait_replication(shard: &Shard) {
    for r in &shard.replicas {
        let ok = wait_until(Duration::from_secs(30), || {
            r.slave_field("Slave_IO_Running").as_deref() == Some("Yes")
                && r.slave_field("Slave_SQL_Running").as_deref() == Some("Yes")
        });
        assert!(
            ok,
            "{} replica {}: replication did not start: {:?}\n{}",
            shard.name,
            r.addr(),
            r.slave_status(),
            r.error_log()
        );
    }
    let want = shard.replicas.len().to_string();
    let ok = wait_until(Duration::from_secs(30), || {
        shard
            .primary
            .status("Rpl_semi_sync_master_clients")
            .as_deref()
            == Some(want.as_str())
    });
    assert!(
        ok,
        "{} primary {}: semi-sync clients {:?}, want {want}",
        shard.name,
        shard.primary.addr(),
        shard.primary.status("Rpl_semi_sync_master_clients")
    );
}

// ---------------------------------------------------------------------------------------------
// The proxy
// ---------------------------------------------------------------------------------------------

/// Renders a proxy config (TOML) for a cluster: ports, users app/app, admin admin/admin, the
/// shards, default shard s1, and whatever a test adds.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// (name, primary, replicas)
    shards: Vec<(String, String, Vec<String>)>,
    default_shard: String,
    sharded_tables: Vec<(String, String)>,
    reference_tables: Vec<String>,
    top_lines: Vec<String>,
    backend_lines: Vec<String>,
    extra: String,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            shards: Vec::new(),
            default_shard: "s1".into(),
            sharded_tables: Vec::new(),
            reference_tables: Vec::new(),
            top_lines: Vec::new(),
            backend_lines: Vec::new(),
            extra: String::new(),
        }
    }
}

fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

impl ProxyConfig {
    /// Every shard of the cluster with its primary and replicas.
    pub fn for_cluster(cluster: &Cluster) -> Self {
        let mut c = ProxyConfig::default();
        for s in &cluster.shards {
            c = c.shard(&s.name, &s.primary_addr(), &s.replica_addrs());
        }
        c
    }

    pub fn shard(mut self, name: &str, primary: &str, replicas: &[String]) -> Self {
        self.shards
            .push((name.into(), primary.into(), replicas.to_vec()));
        self
    }

    pub fn default_shard(mut self, name: &str) -> Self {
        self.default_shard = name.into();
        self
    }

    /// `[[sharding.tables]] name = .. key = ..`
    pub fn sharded_table(mut self, name: &str, key: &str) -> Self {
        self.sharded_tables.push((name.into(), key.into()));
        self
    }

    /// The fund app's placement (fund/src/schema.rs, same as config/local.toml): per-account
    /// tables sharded on `account_id`, `fund_yield` a reference table.
    pub fn fund_schema(self) -> Self {
        [
            "accounts",
            "ledger",
            "requests",
            "income",
            "pending_redemptions",
        ]
        .iter()
        .fold(self, |c, t| c.sharded_table(t, "account_id"))
        .reference_table("fund_yield")
    }

    pub fn reference_table(mut self, name: &str) -> Self {
        self.reference_tables.push(name.into());
        self
    }

    /// A top-level `key = value` line (e.g. `listen = "..."` to override the free port).
    pub fn top(mut self, line: &str) -> Self {
        self.top_lines.push(line.into());
        self
    }

    /// A `key = value` line in `[backend]` (e.g. `pool_max = 4`).
    pub fn backend(mut self, line: &str) -> Self {
        self.backend_lines.push(line.into());
        self
    }

    /// TOML appended at the end (new tables such as `[frontend]` or `[ring]`). Do not repeat
    /// `[backend]` or `[sharding]`: use [`ProxyConfig::backend`] and the table methods.
    pub fn extra(mut self, toml_text: &str) -> Self {
        self.extra.push_str(toml_text);
        self.extra.push('\n');
        self
    }

    /// The TOML text. listen/admin_listen/http_listen get free ports unless set by `top`.
    pub fn render(&self) -> String {
        let mut t = String::new();
        let has = |k: &str| {
            self.top_lines
                .iter()
                .any(|l| l.split('=').next().map(str::trim) == Some(k))
        };
        for k in ["listen", "admin_listen", "http_listen"] {
            if !has(k) {
                t += &format!("{k} = \"127.0.0.1:{}\"\n", free_port());
            }
        }
        for l in &self.top_lines {
            t += l;
            t.push('\n');
        }
        t += "\n[[users]]\nname = \"app\"\npassword = \"app\"\n";
        t += "\n[[admin_users]]\nname = \"admin\"\npassword = \"admin\"\n";
        t += &format!(
            "\n[backend]\nuser = {}\npassword = {}\n",
            toml_str(APP_USER),
            toml_str(APP_PASSWORD)
        );
        for l in &self.backend_lines {
            t += l;
            t.push('\n');
        }
        for (name, primary, replicas) in &self.shards {
            let reps: Vec<String> = replicas.iter().map(|r| toml_str(r)).collect();
            t += &format!(
                "\n[[shards]]\nname = {}\nprimary = {}\nreplicas = [{}]\n",
                toml_str(name),
                toml_str(primary),
                reps.join(", ")
            );
        }
        let refs: Vec<String> = self.reference_tables.iter().map(|r| toml_str(r)).collect();
        t += &format!(
            "\n[sharding]\ndefault_shard = {}\nreference_tables = [{}]\n",
            toml_str(&self.default_shard),
            refs.join(", ")
        );
        for (name, key) in &self.sharded_tables {
            t += &format!(
                "\n[[sharding.tables]]\nname = {}\nkey = {}\n",
                toml_str(name),
                toml_str(key)
            );
        }
        if !self.extra.is_empty() {
            t.push('\n');
            t += &self.extra;
        }
        t
    }
}

/// The proxy binary running with a given config; SIGKILLed on drop.
pub struct Proxy {
    child: Option<Child>,
    dir: PathBuf,
    /// Data port address (`listen`).
    pub listen: String,
    pub admin_listen: Option<String>,
    pub http_listen: Option<String>,
}

impl Proxy {
    /// Runs `shardproxy --config <file>`; top-level listen/admin_listen/http_listen missing
    /// from the text are filled with free ports. Waits until the data port accepts; panics
    /// with the proxy's log otherwise.
    pub fn start(config_toml: &str) -> Proxy {
        Proxy::try_start(config_toml).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Like [`Proxy::start`], returning the failure (with the log) instead of panicking.
    pub fn try_start(config_toml: &str) -> Result<Proxy, String> {
        let parsed: toml::Table = config_toml
            .parse()
            .map_err(|e| format!("proxy config is not TOML: {e}\n{config_toml}"))?;
        let mut head = String::new();
        let mut addr = |key: &str| -> String {
            match parsed.get(key).and_then(|v| v.as_str()) {
                Some(a) => a.to_string(),
                None => {
                    let a = format!("127.0.0.1:{}", free_port());
                    head += &format!("{key} = \"{a}\"\n");
                    a
                }
            }
        };
        let listen = addr("listen");
        let admin_listen = Some(addr("admin_listen"));
        let http_listen = Some(addr("http_listen"));
        let text = format!("{head}{config_toml}");
        let dir = new_instance_dir("proxy");
        let config = dir.join("proxy.toml");
        fs::write(&config, &text).map_err(|e| format!("write {}: {e}", config.display()))?;
        let log_path = dir.join("proxy.log");
        let log = fs::File::create(&log_path).map_err(|e| format!("create proxy.log: {e}"))?;
        let log2 = log.try_clone().map_err(|e| format!("dup proxy.log: {e}"))?;
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_shardproxy"));
        cmd.arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2);
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "info");
        }
        let child = spawn_tied(cmd).map_err(|e| format!("spawn shardproxy: {e}"))?;
        let mut p = Proxy {
            child: Some(child),
            dir,
            listen,
            admin_listen,
            http_listen,
        };
        let timeout = Duration::from_secs(30);
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = p.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                p.child = None;
                return Err(format!(
                    "shardproxy exited during startup with {st}\n--- config\n{text}\n--- log\n{}",
                    p.log()
                ));
            }
            if wait_port(&p.listen, Duration::ZERO) {
                return Ok(p);
            }
            if Instant::now() >= deadline {
                let log = p.log();
                p.kill();
                return Err(format!(
                    "shardproxy did not accept on {} within {timeout:?}\n--- config\n{text}\n--- log\n{log}",
                    p.listen
                ));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// mysql_async/sqlx URL as app/app on database `fund`.
    pub fn url(&self) -> String {
        format!("mysql://{APP_USER}:{APP_PASSWORD}@{}/fund", self.listen)
    }

    /// URL of the admin port as admin/admin.
    pub fn admin_url(&self) -> Option<String> {
        self.admin_listen
            .as_ref()
            .map(|a| format!("mysql://admin:admin@{a}"))
    }

    /// Port of the data listener.
    pub fn port(&self) -> u16 {
        self.listen
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("listen has a port")
    }

    /// Runs SQL through the proxy with the `mariadb` CLI as app/app.
    pub fn cli_query(&self, sql: &str) -> Result<Vec<Vec<String>>, String> {
        cli_query(self.port(), APP_USER, APP_PASSWORD, sql)
    }

    /// The config file the proxy runs with (RELOAD CONFIG and SIGHUP read it again).
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("proxy.toml")
    }

    /// Everything the proxy wrote to stdout and stderr.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("proxy.log")).unwrap_or_default()
    }

    /// Sends a signal (e.g. `libc::SIGTERM` to test graceful shutdown, `libc::SIGHUP`).
    pub fn signal(&self, sig: libc::c_int) {
        if let Some(c) = &self.child {
            signal_child(c, sig);
        }
    }

    /// Waits for the proxy to exit; None on timeout or if it is not running.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let st = wait_child(self.child.as_mut()?, timeout)?;
        self.child = None;
        Some(st)
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            signal_child(&c, libc::SIGKILL);
            let _ = c.wait();
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.kill();
        if !thread::panicking() {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
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
        let run = |cmd: &mut Command| {
            let out = cmd
                .output()
                .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
            assert!(
                out.status.success(),
                "{cmd:?} failed:\n{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        };
        run(Command::new("python3").arg("-m").arg("venv").arg(&venv));
        run(Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .args(PYTHON_PACKAGES));
        fs::write(&ready, PYTHON_PACKAGES.join("\n")).expect("write .ready");
        python
    })
    .clone()
}

/// Runs a Python script with the venv's python; `args` are its `sys.argv[1:]`.
pub fn run_python(script: &str, args: &[&str]) -> Output {
    Command::new(python_venv())
        .arg("-c")
        .arg(script)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run python")
}
