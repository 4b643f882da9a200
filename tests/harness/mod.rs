//! The shared code of every test in `tests/`: the one place for helpers used by more than one
//! test file. Each `tests/<name>.rs` is a test binary of its own (cargo finds it, no manifest
//! entry) and starts with `mod harness;`; this directory is a module, not a test.
//!
//! - [`Mariadb`], [`Cluster`] (and [`Cluster::shared`]): real MariaDB servers, replicated shards.
//! - [`Netns`]: a network namespace for one server, whose network a test can cut.
//! - [`Etcd`]: a one-member etcd on free ports (the coordination tests).
//! - [`ProxyConfig`] (every proxy config a test needs, as a builder) and [`Proxy`] (the
//!   `shardproxy` binary running with one).
//! - [`clients`]: the `mariadb` CLI, Python clients, [`Sysbench`], [`chromium_dom`], HTTP.
//! - [`mysql`]: mysql_async helpers for async tests.
//! - [`fixed_ops`]: `FixedOps`, an in-process `AdminOps` over a fixed cluster, for the admin
//!   and HTTP ports without any server.
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
//!
//! Every test binary compiles all of it and uses a part: hence the `allow`.
#![allow(dead_code, unused_imports)]

pub mod certs;
pub mod clients;
mod etcd;
pub mod fixed_ops;
mod mariadb;
pub mod mysql;
pub mod netns;
mod proxy;

pub use clients::{
    chromium_dom, cli_query, cli_rows, http_get, http_request, mariadb_cli, mariadb_tool,
    output_ok, python, python_venv, run_python, HttpResponse, Sysbench, SysbenchReport,
    PYTHON_PACKAGES,
};
pub use etcd::Etcd;
pub use mariadb::{connect_replica, Cluster, Mariadb, MariadbOpts, Shard};
pub use netns::Netns;
pub use proxy::{Proxy, ProxyConfig};

use std::fs;
use std::io;
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::os::unix::io::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
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

/// `config` (a proxy config's TOML text) with one more `[[shards]]` entry, without replicas,
/// just before its `[sharding]` table: the target of a move that adds a shard.
pub fn with_shard(config: &str, name: &str, primary: &str) -> String {
    let entry =
        format!("\n[[shards]]\nname = \"{name}\"\nprimary = \"{primary}\"\nreplicas = []\n");
    let out = config.replacen("\n[sharding]", &format!("{entry}\n[sharding]"), 1);
    assert_ne!(out, config, "the config has no [sharding] table");
    out
}

/// A port that was free a moment ago (bound to port 0 and released). Another process may take
/// it before we do: callers that bind it later must detect and retry. Never the same port
/// twice in one test process: the kernel may hand a just-released port out again at once, and
/// a config's `listen` and `admin_listen` once got the same one (a proxy that could not start).
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = l.local_addr().expect("local_addr").port();
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
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
