//! MariaDB servers: one [`Mariadb`], and [`Cluster`]s of replicated [`Shard`]s.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use super::netns::Netns;
use super::{
    cli_query, cli_rows, free_port, is_root, mariadb_cli, mariadbd_bin, new_instance_dir,
    signal_child, spawn_tied, tail, template_datadir, wait_child, wait_until, APP_PASSWORD,
    APP_USER, REPL_PASSWORD, REPL_USER, START_TIMEOUT,
};

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
    /// Runs in a network namespace of its own ([`Netns`]), bound to its address there, so a
    /// test can cut its network ([`Mariadb::netns_mut`]); the harness's own SQL goes through
    /// the server's unix socket, which no cut reaches.
    pub netns: bool,
    /// An address of the host's own that the server listens on besides 127.0.0.1, and is
    /// named by ([`Mariadb::addr`], hence the proxy config and `CHANGE MASTER`): the host end
    /// of a [`Netns`], so that the server inside the namespace can reach this one too.
    pub host_ip: Option<String>,
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
            netns: false,
            host_ip: None,
        }
    }
}

/// A mariadbd on its own port and datadir; SIGKILLed and deleted on drop.
pub struct Mariadb {
    /// The running server; None after kill or stop.
    child: Option<Child>,
    /// The instance directory.
    dir: PathBuf,
    /// Its TCP port (on 127.0.0.1, or on the namespace's address).
    port: u16,
    /// `--server-id`.
    server_id: u32,
    /// How it was started.
    opts: MariadbOpts,
    /// The namespace it runs in (with `opts.netns`); dropped after the server is killed.
    netns: Option<Netns>,
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
        let netns = opts
            .netns
            .then(|| Netns::create().unwrap_or_else(|e| panic!("network namespace: {e}")));
        let mut m = Mariadb {
            child: None,
            dir,
            port: 0,
            server_id,
            opts,
            netns,
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
        let mut cmd = match &self.netns {
            Some(ns) => ns.command(&mariadbd_bin()),
            None => Command::new(mariadbd_bin()),
        };
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
            .arg(match &self.opts.host_ip {
                Some(ip) => format!("--bind-address=127.0.0.1,{ip}"),
                None => format!("--bind-address={}", self.host()),
            })
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
            if let Ok(rows) = self.try_query("SELECT @@datadir") {
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

    /// The address it is named by: its namespace's, its `host_ip`, or 127.0.0.1.
    pub fn host(&self) -> &str {
        match (&self.netns, &self.opts.host_ip) {
            (Some(ns), _) => ns.ip(),
            (None, Some(ip)) => ip,
            (None, None) => "127.0.0.1",
        }
    }

    /// `<host>:<port>`, the form the proxy config uses.
    pub fn addr(&self) -> String {
        format!("{}:{}", self.host(), self.port)
    }

    /// Its network namespace, to cut and heal (None unless started with `opts.netns`).
    pub fn netns_mut(&mut self) -> Option<&mut Netns> {
        self.netns.as_mut()
    }

    /// Its network namespace, if it runs in one.
    pub fn netns(&self) -> Option<&Netns> {
        self.netns.as_ref()
    }

    /// The `mariadb` CLI as root: over TCP to 127.0.0.1, or, for a server in a namespace,
    /// over its unix socket (root logs in from localhost only, and a cut must not stop the
    /// test from looking at the server).
    fn root_cli(&self) -> Command {
        if self.netns.is_some() {
            let mut cmd = Command::new("mariadb");
            cmd.arg("--no-defaults")
                .arg("--protocol=socket")
                .arg(format!(
                    "--socket={}",
                    self.dir.join("mysqld.sock").display()
                ))
                .arg("-uroot");
            cmd
        } else {
            mariadb_cli(self.port, "root", "")
        }
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
            "mysql://{APP_USER}:{APP_PASSWORD}@{}:{}/fund",
            self.host(),
            self.port
        )
    }

    /// Runs SQL as root (no password); panics on error.
    pub fn query(&self, sql: &str) -> Vec<Vec<String>> {
        self.try_query(sql).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Runs SQL as root; Err carries the server's message.
    pub fn try_query(&self, sql: &str) -> Result<Vec<Vec<String>>, String> {
        if self.netns.is_none() {
            return cli_query(self.port, "root", "", sql);
        }
        cli_rows(
            self.root_cli()
                .args(["--connect-timeout=5", "-N", "-B", "-e", sql]),
        )
        .map_err(|e| format!("{}: {sql}: {}", self.addr(), e.trim()))
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
        let out = self
            .root_cli()
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

    /// SIGSTOP: the server hangs (connections stay open, nothing answers), unlike a crash.
    pub fn pause(&self) {
        if let Some(c) = &self.child {
            signal_child(c, libc::SIGSTOP);
        }
    }

    /// SIGCONT after [`Mariadb::pause`].
    pub fn resume(&self) {
        if let Some(c) = &self.child {
            signal_child(c, libc::SIGCONT);
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
        Cluster::start_with_netns(shards, replicas_per_shard, &[])
    }

    /// [`Cluster::start`], with the primaries of the shards named in `netns_primaries` (`s1`,
    /// ...) each in a network namespace of its own (see [`MariadbOpts::netns`]); their
    /// replicas, on the host, replicate from the namespace's address.
    pub fn start_with_netns(
        shards: usize,
        replicas_per_shard: usize,
        netns_primaries: &[&str],
    ) -> Cluster {
        static CLUSTER_NO: AtomicU32 = AtomicU32::new(0);
        let cno = CLUSTER_NO.fetch_add(1, Ordering::Relaxed);
        // Warm the template before the parallel starts, so the lock is not fought over.
        let _ = template_datadir();
        let mut shard_list: Vec<Shard> = thread::scope(|s| {
            let handles: Vec<_> = (1..=shards)
                .map(|i| {
                    s.spawn(move || {
                        let base_id = 100 * (cno + 1) + 10 * i as u32;
                        let opts = |r: usize| {
                            let role = if r == 0 {
                                "primary".to_string()
                            } else {
                                format!("replica{r}")
                            };
                            MariadbOpts {
                                server_id: Some(base_id + r as u32 + 1),
                                name: format!("c{cno}-s{i}-{role}"),
                                ..MariadbOpts::default()
                            }
                        };
                        // A primary in a namespace starts first: its replicas listen on the
                        // host end of its veth too, so that it can replicate from them later.
                        let in_netns = netns_primaries.contains(&format!("s{i}").as_str());
                        let first = in_netns.then(|| {
                            Mariadb::start(MariadbOpts {
                                netns: true,
                                ..opts(0)
                            })
                        });
                        let host_ip = first
                            .as_ref()
                            .and_then(|m| m.netns())
                            .map(|ns| ns.host_ip().to_string());
                        let rest: Vec<Mariadb> = thread::scope(|s2| {
                            let hs: Vec<_> = (usize::from(in_netns)..=replicas_per_shard)
                                .map(|r| {
                                    let host_ip = host_ip.clone();
                                    s2.spawn(move || {
                                        Mariadb::start(MariadbOpts { host_ip, ..opts(r) })
                                    })
                                })
                                .collect();
                            hs.into_iter()
                                .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                                .collect()
                        });
                        let servers = first.into_iter().chain(rest);
                        let mut it = servers;
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
        "STOP SLAVE; CHANGE MASTER TO MASTER_HOST='{}', MASTER_PORT={}, \
         MASTER_USER='{REPL_USER}', MASTER_PASSWORD='{REPL_PASSWORD}', \
         MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1; START SLAVE; \
         SET GLOBAL read_only=ON",
        primary.host(),
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
