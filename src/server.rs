//! The listeners and the process lifecycle: accept clients, drain on SIGTERM. The admin and
//! HTTP ports and the SIGHUP reload start with `admin::core_ops::start_operator_ports`. The top
//! of the layers: it wires the session threads ([`Workers`]) to the session handler, and the
//! health checks to the running proxy.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::backend::health;
use crate::backend::topology::Topology;
use crate::config::Config;
use crate::frontend::session;
use crate::proxy::Proxy;
use crate::workers::Workers;

/// The session threads: client connections, each with the running proxy, served by
/// [`session::serve`].
pub type SessionThreads = Workers<Arc<Proxy>>;

/// Starts `n` session threads (at least one) that serve client sessions. Each builds its own
/// runtime: call it outside one (before the main runtime).
pub fn start_session_threads(n: usize) -> std::io::Result<Arc<SessionThreads>> {
    Workers::start(n, session::serve)
}

/// Starts the proxy from a config (read from `config_path`, which RELOAD CONFIG and SIGHUP
/// read again) and serves until SIGTERM/SIGINT, client sessions on `workers`' threads.
pub async fn run(
    config: Config,
    config_path: Option<std::path::PathBuf>,
    workers: Arc<SessionThreads>,
) -> anyhow::Result<()> {
    let listener = TcpListener::bind(&config.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.listen))?;
    let version = server_version(&config).await;
    let proxy = Proxy::with_pool_idle_lists(config, version, workers.pool_idle_lists())?;
    tracing::info!(listen = %listener.local_addr()?, "shardproxy serving");
    let (p, q) = (proxy.clone(), proxy.clone());
    tokio::spawn(health::run(
        move || p.topology(),
        move || q.config(),
        proxy.shutdown.subscribe(),
    ));
    tokio::spawn(crate::backend::failover::run(
        proxy.clone(),
        proxy.shutdown.subscribe(),
    ));
    if let Some(c) = &proxy.coordinator {
        let p = proxy.clone();
        let acked = move || {
            p.topology()
                .shards
                .iter()
                .map(|s| (s.name.clone(), s.state.acked().to_string()))
                .collect()
        };
        tokio::spawn(c.clone().run(acked, proxy.shutdown.subscribe()));
        tokio::spawn(crate::backend::failover::follow::run(
            proxy.clone(),
            c.topologies(),
            proxy.shutdown.subscribe(),
        ));
    }
    let (p, q) = (proxy.clone(), proxy.clone());
    tokio::spawn(crate::exec::recovery::run(
        move || p.topology(),
        move || q.config(),
        proxy.shutdown.subscribe(),
    ));
    crate::admin::core_ops::start_operator_ports(proxy.clone(), config_path).await?;
    if proxy.audit.is_some() {
        // Log rotation: SIGHUP (which also reloads the config) reopens the audit log.
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
        let p = proxy.clone();
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                if let Some(a) = &p.audit {
                    tracing::info!("SIGHUP: reopening the audit log");
                    a.reopen();
                }
            }
        });
    }
    // Histogram samples wait in the recorder until drained: drain them even when nobody
    // scrapes /metrics, so memory stays flat.
    let handle = crate::metrics::install();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            handle.run_upkeep();
        }
    });
    serve(proxy, listener, workers).await
}

/// The version string shown to clients: the default shard's, or a MariaDB-like default
/// when it cannot be reached at start.
async fn server_version(config: &Config) -> String {
    let topo = Topology::from_config(config, 1);
    if let Some(s) = topo.shard(&config.sharding.default_shard) {
        match s.primary.server_version().await {
            Ok(v) => return v,
            Err(e) => tracing::warn!("default shard unreachable at start: {e}"),
        }
    }
    "5.5.5-10.11.0-MariaDB-shardproxy".to_string()
}

pub async fn serve(
    proxy: Arc<Proxy>,
    listener: TcpListener,
    workers: Arc<SessionThreads>,
) -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, _)) => workers.serve(proxy.clone(), stream),
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    drop(listener);
    let grace = Duration::from_millis(proxy.config().frontend.shutdown_grace_ms);
    tracing::info!(
        sessions = proxy.registry.len(),
        "shutting down: no new connections; waiting up to {grace:?} for running statements"
    );
    let _ = proxy.shutdown.send(true);
    let deadline = tokio::time::Instant::now() + grace;
    while !proxy.registry.is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tracing::info!(remaining = proxy.registry.len(), "shardproxy stopped");
    Ok(())
}
