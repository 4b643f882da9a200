//! A network namespace of its own for one server, reached from the host over a veth pair, so a
//! test can cut that server's network the way a real partition does: packets vanish, nothing is
//! refused, connections hang.
//!
//! Layout, for the `n`-th namespace of the test process `pid`:
//! - namespace `sp-<pid>-<n>`; veth `sp<pid>h<n>` on the host, `sp<pid>n<n>` inside;
//! - a private /30, `10.213.<k>.0/30`: the host side is `.1`, the namespace side `.2` (the
//!   server binds there). `k` is the first block no interface of the host uses yet, taken under
//!   a file lock so parallel test processes do not pick the same one;
//! - permanent neighbour entries on both sides: with ARP cut too, a neighbour that fails to
//!   resolve would turn the cut into a quick "no route to host", a refusal, not a partition.
//!
//! [`Netns::cut`] puts the `blackhole` qdisc on both ends of the pair (it drops every packet
//! and tells the sender it was sent; this kernel has no netem, no matchall filter, no
//! iptables or nft); [`Netns::heal`] removes it, and TCP connections that survived resume.
//!
//! Dropping a [`Netns`] deletes the namespace and the veth pair (also when the test panics:
//! drops run while unwinding). A process killed outright leaves them behind: namespaces of
//! dead test processes are swept at the next [`Netns::create`].
//!
//! Needs root and the `ip` and `tc` programs: [`Netns::unavailable`] says why not, and a test
//! that needs a namespace prints that and returns (see `tests/failover.rs`).

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use super::{is_root, lock_file, target_dir};

/// One network namespace with a veth pair to the host; deleted on drop.
pub struct Netns {
    /// `sp-<pid>-<n>`.
    name: String,
    /// The host end of the veth pair.
    host_veth: String,
    /// The namespace end of the veth pair.
    ns_veth: String,
    /// The host side's address (`10.213.k.1`).
    host_ip: String,
    /// The namespace side's address (`10.213.k.2`), where the server binds.
    ns_ip: String,
    /// True while [`Netns::cut`] is in force.
    cut: bool,
}

/// Runs `prog args`; Err carries the command and what it printed.
fn run(prog: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(prog)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {prog}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{prog} {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `ip netns exec <ns> prog args`.
fn run_in(ns: &str, prog: &str, args: &[&str]) -> Result<String, String> {
    let mut all = vec!["netns", "exec", ns, prog];
    all.extend_from_slice(args);
    run("ip", &all)
}

impl Netns {
    /// Why namespaces cannot be made here (not root, `ip` or `tc` missing, creation refused),
    /// or None when they can: tries a throwaway namespace once per process.
    pub fn unavailable() -> Option<String> {
        static WHY: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
        WHY.get_or_init(|| {
            if !is_root() {
                return Some("not running as root".into());
            }
            for prog in ["ip", "tc"] {
                if let Err(e) = run(prog, &["-V"]) {
                    return Some(e);
                }
            }
            match Netns::create() {
                Ok(ns) => {
                    let probe = ns.cut_probe();
                    drop(ns);
                    probe.err()
                }
                Err(e) => Some(e),
            }
        })
        .clone()
    }

    /// A new namespace with its veth pair up and addressed.
    pub fn create() -> Result<Netns, String> {
        static N: AtomicU32 = AtomicU32::new(0);
        sweep_stale();
        let pid = std::process::id();
        let n = N.fetch_add(1, Ordering::Relaxed);
        let name = format!("sp-{pid}-{n}");
        let host_veth = format!("sp{pid}h{n}");
        let ns_veth = format!("sp{pid}n{n}");
        // The lock covers choosing the block and putting it on the interface.
        let _lock = lock_file(&target_dir().join("netns-subnet.lock"));
        let used = run("ip", &["-o", "-4", "addr", "show"])?;
        let routes = run("ip", &["-4", "route", "show"])?;
        let k = (0..=255u32)
            .find(|k| {
                let prefix = format!("10.213.{k}.");
                !used.contains(&prefix) && !routes.contains(&prefix)
            })
            .ok_or("no free 10.213.k.0/30 block")?;
        let mut ns = Netns {
            name,
            host_veth,
            ns_veth,
            host_ip: format!("10.213.{k}.1"),
            ns_ip: format!("10.213.{k}.2"),
            cut: false,
        };
        run("ip", &["netns", "add", &ns.name])?;
        // From here on a failure still deletes what was made (drop).
        ns.setup()?;
        Ok(ns)
    }

    fn setup(&mut self) -> Result<(), String> {
        let (h, v, name) = (&self.host_veth, &self.ns_veth, &self.name);
        run("ip", &["link", "add", h, "type", "veth", "peer", "name", v])?;
        run("ip", &["link", "set", v, "netns", name])?;
        run(
            "ip",
            &["addr", "add", &format!("{}/30", self.host_ip), "dev", h],
        )?;
        run("ip", &["link", "set", h, "up"])?;
        run_in(
            name,
            "ip",
            &["addr", "add", &format!("{}/30", self.ns_ip), "dev", v],
        )?;
        run_in(name, "ip", &["link", "set", v, "up"])?;
        run_in(name, "ip", &["link", "set", "lo", "up"])?;
        let host_mac = std::fs::read_to_string(format!("/sys/class/net/{h}/address"))
            .map_err(|e| format!("mac of {h}: {e}"))?;
        let ns_mac = run_in(name, "cat", &[&format!("/sys/class/net/{v}/address")])?;
        run(
            "ip",
            &[
                "neigh",
                "replace",
                &self.ns_ip,
                "lladdr",
                ns_mac.trim(),
                "dev",
                h,
                "nud",
                "permanent",
            ],
        )?;
        run_in(
            name,
            "ip",
            &[
                "neigh",
                "replace",
                &self.host_ip,
                "lladdr",
                host_mac.trim(),
                "dev",
                v,
                "nud",
                "permanent",
            ],
        )?;
        Ok(())
    }

    /// Cuts and heals once, to learn whether this kernel has the blackhole qdisc.
    fn cut_probe(&self) -> Result<(), String> {
        run(
            "tc",
            &["qdisc", "add", "dev", &self.host_veth, "root", "blackhole"],
        )?;
        run("tc", &["qdisc", "del", "dev", &self.host_veth, "root"]).map(|_| ())
    }

    /// `sp-<pid>-<n>`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The address inside the namespace, where its server listens.
    pub fn ip(&self) -> &str {
        &self.ns_ip
    }

    /// The host end's address.
    pub fn host_ip(&self) -> &str {
        &self.host_ip
    }

    /// `ip netns exec <name> program`: a command that runs inside the namespace (`ip netns
    /// exec` execs the program, so the child's pid is the program's).
    pub fn command(&self, program: &Path) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).arg(program);
        cmd
    }

    /// Every packet between the host and the namespace is dropped silently, both ways.
    pub fn cut(&mut self) {
        run(
            "tc",
            &[
                "qdisc",
                "replace",
                "dev",
                &self.host_veth,
                "root",
                "blackhole",
            ],
        )
        .unwrap_or_else(|e| panic!("{e}"));
        run_in(
            &self.name,
            "tc",
            &[
                "qdisc",
                "replace",
                "dev",
                &self.ns_veth,
                "root",
                "blackhole",
            ],
        )
        .unwrap_or_else(|e| panic!("{e}"));
        self.cut = true;
    }

    /// Undoes [`Netns::cut`].
    pub fn heal(&mut self) {
        run("tc", &["qdisc", "del", "dev", &self.host_veth, "root"])
            .unwrap_or_else(|e| panic!("{e}"));
        run_in(
            &self.name,
            "tc",
            &["qdisc", "del", "dev", &self.ns_veth, "root"],
        )
        .unwrap_or_else(|e| panic!("{e}"));
        self.cut = false;
    }

    /// True while cut.
    pub fn is_cut(&self) -> bool {
        self.cut
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting the namespace deletes its veth end, and with it the host end; the explicit
        // delete covers a namespace whose veth never moved in.
        let _ = run("ip", &["netns", "del", &self.name]);
        let _ = run("ip", &["link", "del", &self.host_veth]);
    }
}

/// Deletes `sp-<pid>-<n>` namespaces (and their host veths) of test processes that are gone.
/// Once per process.
fn sweep_stale() {
    static SWEPT: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    SWEPT.get_or_init(|| {
        let Ok(list) = run("ip", &["netns", "list"]) else {
            return;
        };
        for line in list.lines() {
            let Some(name) = line.split_whitespace().next() else {
                continue;
            };
            let mut parts = name.split('-');
            let (Some("sp"), Some(pid), Some(n)) = (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            let Ok(pid) = pid.parse::<u32>() else {
                continue;
            };
            if pid != std::process::id() && !alive(pid) {
                let _ = run("ip", &["netns", "del", name]);
                let _ = run("ip", &["link", "del", &format!("sp{pid}h{n}")]);
            }
        }
    });
}

/// Whether process `pid` still runs: a zombie (killed, not yet reaped by whoever adopted it)
/// counts as gone.
fn alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // "pid (comm) S ...": the state follows the last ')'.
    let state = stat.rsplit_once(')').map(|(_, rest)| rest.trim_start());
    !matches!(state.and_then(|r| r.chars().next()), Some('Z') | Some('X'))
}
