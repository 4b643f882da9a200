//! An etcd server for the coordination tests: one member on free loopback ports, its data in
//! an instance directory, SIGKILLed on drop like every harness process. The `etcd` binary
//! (Debian `etcd-server`, which `.ci/run` installs) is required: a missing one fails the test
//! loudly instead of skipping it.

use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::{free_port, new_instance_dir, signal_child, spawn_tied, tail, wait_port};

/// A running single-member etcd.
pub struct Etcd {
    child: Option<Child>,
    dir: PathBuf,
    /// The client port, on 127.0.0.1.
    pub port: u16,
    /// The peer port (kept for [`Etcd::restart`]).
    peer: u16,
}

/// Path of etcd: `$ETCD`, or the one on PATH (Debian puts it in /usr/bin).
fn etcd_bin() -> PathBuf {
    std::env::var_os("ETCD")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("etcd"))
}

impl Etcd {
    /// Starts etcd and waits until it answers `etcdctl endpoint health`; panics with its log
    /// otherwise (and with an install hint when the binary is missing).
    pub fn start() -> Etcd {
        let dir = new_instance_dir("etcd");
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (port, peer) = (free_port(), free_port());
            match Etcd::launch(&dir, port, peer) {
                Ok(child) => {
                    return Etcd {
                        child: Some(child),
                        dir,
                        port,
                        peer,
                    }
                }
                Err(e) if attempt < 5 && e.contains("address already in use") => continue,
                Err(e) => panic!("{e}"),
            }
        }
    }

    fn launch(dir: &std::path::Path, port: u16, peer: u16) -> Result<Child, String> {
        let log = dir.join("etcd.log");
        let out = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(|e| format!("create etcd.log: {e}"))?;
        let err = out.try_clone().map_err(|e| format!("dup etcd.log: {e}"))?;
        let data = dir.join("data");
        let client = format!("http://127.0.0.1:{port}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let mut cmd = Command::new(etcd_bin());
        cmd.arg("--name=test")
            .arg(format!("--data-dir={}", data.display()))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster=test={peer_url}"))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        let mut child = spawn_tied(cmd).map_err(|e| {
            format!(
                "cannot run {}: {e} (the coordination tests need etcd: apt-get install etcd-server)",
                etcd_bin().display()
            )
        })?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(st)) = child.try_wait() {
                return Err(format!(
                    "etcd exited during startup with {st}\n--- {}\n{}",
                    log.display(),
                    tail(&log, 30)
                ));
            }
            if wait_port(&format!("127.0.0.1:{port}"), Duration::ZERO) {
                let health = Command::new("etcdctl")
                    .env("ETCDCTL_API", "3")
                    .arg(format!("--endpoints={client}"))
                    .args(["endpoint", "health"])
                    .output();
                if health.is_ok_and(|o| o.status.success()) {
                    return Ok(child);
                }
            }
            if Instant::now() >= deadline {
                signal_child(&child, libc::SIGKILL);
                let _ = child.wait();
                return Err(format!(
                    "etcd not healthy on port {port} within 30 s\n--- {}\n{}",
                    log.display(),
                    tail(&log, 30)
                ));
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// `127.0.0.1:<port>`, as `[coordination] etcd` takes it.
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `etcdctl get <key> --print-value-only`: the value, `None` if absent.
    pub fn get(&self, key: &str) -> Option<String> {
        let out = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints=http://{}", self.endpoint()))
            .args(["get", key, "--print-value-only"])
            .output()
            .expect("run etcdctl");
        assert!(
            out.status.success(),
            "etcdctl get {key}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v = String::from_utf8_lossy(&out.stdout).trim().to_string();
        (!v.is_empty()).then_some(v)
    }

    /// `etcdctl get --prefix <prefix>`: every (key, value) under it.
    pub fn get_prefix(&self, prefix: &str) -> Vec<(String, String)> {
        let out = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints=http://{}", self.endpoint()))
            .args(["get", "--prefix", prefix])
            .output()
            .expect("run etcdctl");
        assert!(
            out.status.success(),
            "etcdctl get --prefix {prefix}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let lines: Vec<&str> = text.lines().collect();
        lines
            .chunks(2)
            .filter(|kv| kv.len() == 2)
            .map(|kv| (kv[0].to_string(), kv[1].to_string()))
            .collect()
    }

    /// The server's log.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("etcd.log")).unwrap_or_default()
    }

    /// Starts it again after [`Etcd::kill`]: same ports, same data (leases and keys kept).
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "etcd is running");
        self.child =
            Some(Etcd::launch(&self.dir, self.port, self.peer).unwrap_or_else(|e| panic!("{e}")));
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            signal_child(&c, libc::SIGKILL);
            let _ = c.wait();
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill();
        if !thread::panicking() {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}
