//! The HTTP port (`http_listen`): Prometheus metrics and the read-only status page.
//!
//! - `GET /metrics`: Prometheus text format (every metric is listed in [`crate::metrics`]);
//!   the backend gauges are refreshed from [`AdminOps::backends`] at each scrape.
//! - `GET /`: the status page, one HTML file with inline CSS and JS, no external assets; it
//!   polls `GET /api/status` every 2 s.
//! - `GET /api/status`: JSON snapshot: `shards`, `backends`, `ring`, `status` (the
//!   `SHOW PROXY STATUS` pairs as `[name, value]`), `reshard` (the `SHOW RESHARD STATUS` rows
//!   as `{columns, rows}`: phase, rows copied, catch-up lag per table and shard pair; `null`
//!   when no move was started), `time_ms`.
//!
//! Nothing here changes state: reloads, kills and switchovers are admin-port statements.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::header;
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;

use crate::admin::AdminOps;

/// The status page.
pub const STATUS_PAGE: &str = include_str!("status.html");

#[derive(Clone)]
struct AppState {
    ops: Arc<dyn AdminOps>,
    metrics: PrometheusHandle,
}

/// The routes, for embedding or testing without a socket.
pub fn router(ops: Arc<dyn AdminOps>, metrics: PrometheusHandle) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/api/status", get(status))
        .route("/metrics", get(prometheus))
        .with_state(AppState { ops, metrics })
}

/// Serves the HTTP port on `listener` until the task is aborted or the listener fails.
/// `metrics` is the handle [`crate::metrics::install`] returned.
pub async fn serve_http(
    listener: TcpListener,
    ops: Arc<dyn AdminOps>,
    metrics: PrometheusHandle,
) -> std::io::Result<()> {
    // Histograms are drained on render; upkeep bounds memory when nobody scrapes.
    let upkeep = metrics.clone();
    let upkeep_task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            upkeep.run_upkeep();
        }
    });
    let result = axum::serve(listener, router(ops, metrics)).await;
    upkeep_task.abort();
    result
}

async fn page() -> impl IntoResponse {
    ([(header::CACHE_CONTROL, "no-store")], Html(STATUS_PAGE))
}

async fn prometheus(State(state): State<AppState>) -> impl IntoResponse {
    refresh_gauges(state.ops.as_ref());
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
}

/// Sets the backend gauges (health, lag, pool) from [`AdminOps::backends`] at every scrape, so
/// they are right even where the core never calls the gauge helpers.
pub fn refresh_gauges(ops: &dyn AdminOps) {
    for b in ops.backends() {
        crate::metrics::set_backend_health(
            &b.address,
            b.health == crate::admin::Health::Up,
            b.lag_seconds.map(Duration::from_secs),
        );
        crate::metrics::set_pool(&b.address, b.pool_in_use, b.pool_idle);
        crate::metrics::set_backend_reads(&b.address, b.reads);
    }
}

/// The JSON behind the status page.
pub fn status_json(ops: &dyn AdminOps) -> serde_json::Value {
    let time_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    serde_json::json!({
        "shards": ops.shards(),
        "backends": ops.backends(),
        "ring": ops.ring(),
        "status": ops.proxy_status(),
        "reshard": reshard_json(ops),
        "time_ms": time_ms,
    })
}

/// `SHOW RESHARD STATUS` as `{columns, rows}` (each value text or `null`), `null` when no move
/// was started here (no rows) or the proxy has no resharding (an error).
fn reshard_json(ops: &dyn AdminOps) -> serde_json::Value {
    let Ok(rs) = ops.reshard_status() else {
        return serde_json::Value::Null;
    };
    if rs.rows.is_empty() {
        return serde_json::Value::Null;
    }
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let columns: Vec<String> = rs.columns.iter().map(|c| text(&c.name)).collect();
    let rows: Vec<Vec<Option<String>>> = rs
        .rows
        .iter()
        .map(|r| r.iter().map(|v| v.as_deref().map(text)).collect())
        .collect();
    serde_json::json!({ "columns": columns, "rows": rows })
}

async fn status(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CACHE_CONTROL, "no-store")],
        Json(status_json(state.ops.as_ref())),
    )
}
