//! The proxy: its config rendered from a builder ([`ProxyConfig`]), and the binary running with
//! one ([`Proxy`]).

use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::{
    cli_query, cli_rows, free_port, mariadb_cli, new_instance_dir, signal_child, spawn_tied,
    wait_child, wait_port, Cluster, APP_PASSWORD, APP_USER,
};

/// Builds a proxy config (TOML), the one source of config text for every test: users app/app
/// (plus any added), admin admin/admin (plus any added), `[backend]` app/app, the shards,
/// default shard s1, the table rules and whatever a test adds. `render` fills `listen`,
/// `admin_listen` and `http_listen` with free ports unless set with [`ProxyConfig::top`] or
/// left out with [`ProxyConfig::without_listeners`].
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    shards: Vec<ShardEntry>,
    default_shard: String,
    /// (name, key, further lines of its `[[sharding.tables]]`)
    sharded_tables: Vec<(String, String, Vec<String>)>,
    reference_tables: Vec<String>,
    /// (name, `password = ..` or `password_hash = ..` line)
    users: Vec<(String, String)>,
    admin_users: Vec<(String, String)>,
    listeners: bool,
    top_lines: Vec<String>,
    backend_lines: Vec<String>,
    frontend_lines: Vec<String>,
    ring_lines: Vec<String>,
    extra: String,
}

#[derive(Debug, Clone)]
struct ShardEntry {
    name: String,
    primary: String,
    replicas: Vec<String>,
    weight: Option<u32>,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            shards: Vec::new(),
            default_shard: "s1".into(),
            sharded_tables: Vec::new(),
            reference_tables: Vec::new(),
            users: vec![(
                APP_USER.into(),
                format!("password = {}", toml_str(APP_PASSWORD)),
            )],
            admin_users: vec![("admin".into(), "password = \"admin\"".into())],
            listeners: true,
            top_lines: Vec::new(),
            backend_lines: Vec::new(),
            frontend_lines: Vec::new(),
            ring_lines: Vec::new(),
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
        self.shards.push(ShardEntry {
            name: name.into(),
            primary: primary.into(),
            replicas: replicas.to_vec(),
            weight: None,
        });
        self
    }

    /// `weight = ..` of a shard added before.
    pub fn weight(mut self, shard: &str, weight: u32) -> Self {
        let s = self
            .shards
            .iter_mut()
            .find(|s| s.name == shard)
            .unwrap_or_else(|| panic!("weight: no shard {shard} yet"));
        s.weight = Some(weight);
        self
    }

    pub fn default_shard(mut self, name: &str) -> Self {
        self.default_shard = name.into();
        self
    }

    /// `[[sharding.tables]] name = .. key = ..`
    pub fn sharded_table(mut self, name: &str, key: &str) -> Self {
        self.sharded_tables
            .push((name.into(), key.into(), Vec::new()));
        self
    }

    /// A sharded table whose key comes from a global sequence: `sequence = true` (the table's
    /// own) or `sequence = "<name>"` (shared by the tables naming it), and `sequence_cache`.
    pub fn sequence_table(
        mut self,
        name: &str,
        key: &str,
        sequence: Option<&str>,
        cache: Option<u64>,
    ) -> Self {
        let mut lines = vec![format!(
            "sequence = {}",
            sequence.map_or("true".to_string(), toml_str)
        )];
        lines.extend(cache.map(|c| format!("sequence_cache = {c}")));
        self.sharded_tables.push((name.into(), key.into(), lines));
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

    /// Another `[[users]]` entry that logs in with a `password_hash` (`PASSWORD('..')` form).
    pub fn user_with_hash(mut self, name: &str, hash: &str) -> Self {
        self.users
            .push((name.into(), format!("password_hash = {}", toml_str(hash))));
        self
    }

    /// Another `[[users]]` entry with its lines as given (a password line and any others,
    /// e.g. `"password = \"pw\"\nrequire_tls = true"`).
    pub fn user_with(mut self, name: &str, lines: &str) -> Self {
        self.users.push((name.into(), lines.into()));
        self
    }

    /// Another `[[admin_users]]` entry with a `password_hash`.
    pub fn admin_user_with_hash(mut self, name: &str, hash: &str) -> Self {
        self.admin_users
            .push((name.into(), format!("password_hash = {}", toml_str(hash))));
        self
    }

    /// No `listen`, `admin_listen` or `http_listen` unless set with [`ProxyConfig::top`]: for
    /// configs that tests load in process rather than run.
    pub fn without_listeners(mut self) -> Self {
        self.listeners = false;
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

    /// A `key = value` line in `[frontend]` (e.g. `max_allowed_packet = 1048576`).
    pub fn frontend(mut self, line: &str) -> Self {
        self.frontend_lines.push(line.into());
        self
    }

    /// A `key = value` line in `[ring]` (e.g. `vnodes = 64`).
    pub fn ring(mut self, line: &str) -> Self {
        self.ring_lines.push(line.into());
        self
    }

    /// TOML appended at the end, for tables no method above writes. Do not repeat a table
    /// the methods write (`[backend]`, `[frontend]`, `[ring]`, `[sharding]`).
    pub fn extra(mut self, toml_text: &str) -> Self {
        self.extra.push_str(toml_text);
        self.extra.push('\n');
        self
    }

    /// The TOML text.
    pub fn render(&self) -> String {
        let mut t = String::new();
        let has = |k: &str| {
            self.top_lines
                .iter()
                .any(|l| l.split('=').next().map(str::trim) == Some(k))
        };
        for k in ["listen", "admin_listen", "http_listen"] {
            if self.listeners && !has(k) {
                t += &format!("{k} = \"127.0.0.1:{}\"\n", free_port());
            }
        }
        for l in &self.top_lines {
            t += l;
            t.push('\n');
        }
        for (table, users) in [("users", &self.users), ("admin_users", &self.admin_users)] {
            for (name, password) in users {
                t += &format!("\n[[{table}]]\nname = {}\n{password}\n", toml_str(name));
            }
        }
        t += &format!(
            "\n[backend]\nuser = {}\npassword = {}\n",
            toml_str(APP_USER),
            toml_str(APP_PASSWORD)
        );
        for l in &self.backend_lines {
            t += l;
            t.push('\n');
        }
        for (table, lines) in [
            ("frontend", &self.frontend_lines),
            ("ring", &self.ring_lines),
        ] {
            if !lines.is_empty() {
                t += &format!("\n[{table}]\n{}\n", lines.join("\n"));
            }
        }
        for s in &self.shards {
            let reps: Vec<String> = s.replicas.iter().map(|r| toml_str(r)).collect();
            t += &format!(
                "\n[[shards]]\nname = {}\nprimary = {}\nreplicas = [{}]\n",
                toml_str(&s.name),
                toml_str(&s.primary),
                reps.join(", ")
            );
            if let Some(w) = s.weight {
                t += &format!("weight = {w}\n");
            }
        }
        let refs: Vec<String> = self.reference_tables.iter().map(|r| toml_str(r)).collect();
        t += &format!(
            "\n[sharding]\ndefault_shard = {}\nreference_tables = [{}]\n",
            toml_str(&self.default_shard),
            refs.join(", ")
        );
        for (name, key, lines) in &self.sharded_tables {
            t += &format!(
                "\n[[sharding.tables]]\nname = {}\nkey = {}\n",
                toml_str(name),
                toml_str(key)
            );
            for l in lines {
                t += l;
                t.push('\n');
            }
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

    /// The proxy process's id (for /proc/PID/status), while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
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

    /// Runs statements on the admin port with the `mariadb` CLI as admin/admin; rows as
    /// tab-separated fields, Err the CLI's message as it printed it.
    pub fn admin_query(&self, sql: &str) -> Result<Vec<Vec<String>>, String> {
        let addr = self.admin_listen.as_ref().expect("admin port configured");
        let port = addr
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("admin_listen has a port");
        cli_rows(mariadb_cli(port, "admin", "admin").args([
            "--batch",
            "--skip-column-names",
            "-e",
            sql,
        ]))
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
