//! `shardproxy`: the sharding MySQL proxy's command line.

use std::path::{Path, PathBuf};

use clap::Parser;

/// A sharding proxy that speaks the MySQL wire protocol.
///
/// Clients connect to it as to one MariaDB/MySQL server; it routes every statement by the
/// shard key over a consistent-hash ring of backend shards (see docs/configuration.md).
///
/// Example: shardproxy --config config/local.toml
///
/// Tools: `shardproxy reshard plan --from OLD.toml --to NEW.toml` shows what a change of the
/// shards or the sharding rules would move (see `shardproxy reshard --help`);
/// `shardproxy hash-password` prints the `password_hash` of a password read from stdin.
#[derive(Parser, Debug)]
#[command(version, about, long_about, subcommand_negates_reqs = true)]
struct Args {
    /// A tool to run instead of the proxy.
    #[command(subcommand)]
    tool: Option<Tool>,
    /// The TOML config file (listen address, users, backend login, shards, sharding rules).
    /// See config/example.toml for every setting with comments.
    #[arg(short, long, env = "SHARDPROXY_CONFIG", required = true)]
    config: Option<PathBuf>,
    /// Write logs as JSON lines instead of human-readable text.
    #[arg(long)]
    log_json: bool,
    /// Log filter in tracing's EnvFilter syntax, e.g. `info`, `shardproxy=debug`.
    #[arg(long, env = "SHARDPROXY_LOG", default_value = "info")]
    log: String,
    /// Only check the config file and exit (0 = valid).
    #[arg(long)]
    check: bool,
    /// Session threads (default: half the CPU cores, at least one). Each runs many client
    /// sessions; the listener hands every new connection to the next thread in turn, and the
    /// session stays there with its backend connections, never handed between threads
    /// mid-statement. The listeners, admin port, HTTP and health checks run on the main thread.
    /// Half, because a proxy shares its machine (with the application or the database) and one
    /// busy thread batches more work per wake-up than two half-idle ones: on the 2-core test
    /// machine one thread beat two (docs/benchmarks.md). On a machine of its own, give it
    /// one per core.
    #[arg(long, env = "SHARDPROXY_THREADS", value_parser = clap::value_parser!(u16).range(1..=1024))]
    threads: Option<u16>,
}

/// Tools that run instead of the proxy and exit.
#[derive(clap::Subcommand, Debug)]
enum Tool {
    /// Resharding: moving rows when the shards or the sharding rules of the config change.
    #[command(subcommand)]
    Reshard(ReshardTool),
    /// Reads a password from standard input (one line) and prints its hash, the value of a
    /// `[[users]]` or `[[admin_users]]` entry's `password_hash` (MySQL's `PASSWORD()` form).
    /// Example: `read -rs PW && printf %s "$PW" | shardproxy hash-password`.
    HashPassword,
}

/// `shardproxy hash-password`: the hash of the first line of standard input.
fn hash_password() -> anyhow::Result<()> {
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    let password = line.strip_suffix('\n').unwrap_or(&line);
    let password = password.strip_suffix('\r').unwrap_or(password);
    println!(
        "{}",
        shardproxy::protocol::auth::native_hash_string(password.as_bytes())
    );
    Ok(())
}

#[derive(clap::Subcommand, Debug)]
enum ReshardTool {
    /// Shows, without changing anything, what moving from one config to another would move:
    /// the changes that move rows, which part of the ring goes from which shard to which,
    /// about how many rows of each sharded table (estimated on the shards of --from, which must
    /// be reachable for the counts), and the steps of the move.
    ///
    /// Example: shardproxy reshard plan --from config/local.toml --to /tmp/three-shards.toml
    Plan {
        /// The config the proxy runs now.
        #[arg(long)]
        from: PathBuf,
        /// The config to move to (for example with a shard added).
        #[arg(long)]
        to: PathBuf,
        /// Do not connect to the shards: print the plan without row counts.
        #[arg(long)]
        no_count: bool,
    },
}

/// `shardproxy reshard plan`: prints the plan, one line per item.
fn reshard_plan(from: &Path, to: &Path, count: bool) -> anyhow::Result<()> {
    use shardproxy::config::Config;
    let old = Config::load(from)?;
    let new = Config::load(to)?;
    let plan = if count {
        eprintln!("counting rows on the shards of {} ...", from.display());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let topology = shardproxy::backend::topology::Topology::from_config(&old, 1);
        rt.block_on(shardproxy::admin::reshard::plan_with_rows(
            &old, &new, &topology,
        ))
    } else {
        shardproxy::plan::reshard::ReshardPlan::new(&old, &new)
    };
    for (section, detail) in plan.lines() {
        println!("{section:<7} {detail}");
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(Tool::HashPassword) = args.tool {
        return hash_password();
    }
    let filter = tracing_subscriber::EnvFilter::try_new(&args.log)
        .map_err(|e| anyhow::anyhow!("bad --log filter {:?}: {e}", args.log))?;
    if args.tool.is_some() {
        // A tool's output is on stdout; its log lines go to stderr.
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init();
    } else if args.log_json {
        tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .init();
    } else {
        tracing_subscriber::fmt().with_env_filter(filter).init();
    }
    if let Some(Tool::Reshard(ReshardTool::Plan { from, to, no_count })) = &args.tool {
        return reshard_plan(from, to, !no_count);
    }
    let path = args.config.expect("clap requires --config without a tool");
    let config = shardproxy::config::Config::load(&path)?;
    if args.check {
        println!("{}: valid", path.display());
        return Ok(());
    }
    let threads = match args.threads {
        Some(n) => usize::from(n),
        None => std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1)),
    };
    // The session threads build their own runtimes: start them before the main one.
    let workers = shardproxy::server::start_session_threads(threads)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(shardproxy::server::run(config, Some(path), workers))
}
