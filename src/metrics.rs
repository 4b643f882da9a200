//! Every Prometheus metric of the proxy: names, labels and the helpers the core calls.
//!
//! The list is documented in `docs/operations.md` (keep both in step). The helpers are cheap
//! (an atomic per call once the label set has been seen) and do nothing until [`install`]
//! has run, so unit tests of the core may call them freely.
//!
//! Label values must come from a small set (statement kinds, shard and backend names from the
//! config, error codes): never put SQL text, user names or client addresses in a label.

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{
    counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, Counter,
    Histogram, Unit,
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Statements answered, by kind and shard. Labels: `kind`, `shard`.
pub const QUERIES_TOTAL: &str = "shardproxy_queries_total";
/// Latency of statements as the proxy saw it, by kind and shard. Labels: `kind`, `shard`.
pub const QUERY_DURATION_SECONDS: &str = "shardproxy_query_duration_seconds";
/// Errors sent to clients, by MySQL error code. Label: `code`.
pub const ERRORS_TOTAL: &str = "shardproxy_errors_total";
/// Backend connections in the pools. Labels: `backend`, `state` (`in_use` | `idle`).
pub const POOL_CONNECTIONS: &str = "shardproxy_pool_connections";
/// 1 if the health checker sees the backend up, else 0. Label: `backend`.
pub const BACKEND_UP: &str = "shardproxy_backend_up";
/// Replication lag of a replica in seconds; NaN when unknown (a primary, replication stopped).
/// Label: `backend`.
pub const BACKEND_LAG_SECONDS: &str = "shardproxy_backend_lag_seconds";
/// Reads sent to each backend (replicas answer them with `read_from`), by backend.
pub const BACKEND_READS_TOTAL: &str = "shardproxy_backend_reads_total";
/// Failovers and switchovers completed. Label: `shard`.
pub const FAILOVERS_TOTAL: &str = "shardproxy_failovers_total";
/// Plan-cache lookups. Label: `result` (`hit` | `miss`).
pub const PLAN_CACHE_TOTAL: &str = "shardproxy_plan_cache_total";
/// Text plan-cache lookups. Label: `result` (`hit` | `miss`).
pub const TEXT_PLAN_CACHE_TOTAL: &str = "shardproxy_text_plan_cache_total";
/// Client connections open now.
pub const CLIENT_CONNECTIONS: &str = "shardproxy_client_connections";
/// Client connections accepted since start.
pub const CLIENT_CONNECTIONS_TOTAL: &str = "shardproxy_client_connections_total";
/// Statements slower than `frontend.slow_query_ms`.
pub const SLOW_QUERIES_TOTAL: &str = "shardproxy_slow_queries_total";
/// Config reloads (RELOAD CONFIG, SIGHUP). Label: `result` (`ok` | `rejected`).
pub const CONFIG_RELOADS_TOTAL: &str = "shardproxy_config_reloads_total";
/// Transaction ends by kind. Labels: `kind` (`one_shard` | `two_phase`), `result`
/// (`committed` | `rolled_back` | `failed`).
pub const TRANSACTIONS_TOTAL: &str = "shardproxy_transactions_total";
/// Prepared XA legs resolved by recovery. Label: `action` (`commit` | `rollback`).
pub const XA_RECOVERIES_TOTAL: &str = "shardproxy_xa_recoveries_total";

/// Histogram buckets of [`QUERY_DURATION_SECONDS`]: 100 µs … 10 s.
pub const DURATION_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Installs the Prometheus recorder as the process's global metrics recorder (once; later
/// calls return the same handle) and describes every metric. Serve `handle.render()` at
/// `GET /metrics` ([`crate::http`] does).
pub fn install() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full(QUERY_DURATION_SECONDS.to_string()),
                    DURATION_BUCKETS,
                )
                .expect("buckets are not empty");
            let handle = match builder.install_recorder() {
                Ok(h) => h,
                Err(e) => {
                    // Another recorder owns the process (a test harness?): keep a private one so
                    // /metrics still answers, without the proxy's numbers.
                    tracing::warn!(error = %e, "metrics recorder not installed");
                    PrometheusBuilder::new().build_recorder().handle()
                }
            };
            describe();
            handle
        })
        .clone()
}

fn describe() {
    describe_counter!(
        QUERIES_TOTAL,
        Unit::Count,
        "Statements answered, by kind and shard."
    );
    describe_histogram!(
        QUERY_DURATION_SECONDS,
        Unit::Seconds,
        "Statement latency seen by the proxy, by kind and shard."
    );
    describe_counter!(
        ERRORS_TOTAL,
        Unit::Count,
        "Errors sent to clients, by MySQL error code."
    );
    describe_gauge!(
        POOL_CONNECTIONS,
        Unit::Count,
        "Backend connections in the pool, by state."
    );
    describe_gauge!(
        BACKEND_UP,
        "1 if the backend passes its health check, else 0."
    );
    describe_gauge!(
        BACKEND_LAG_SECONDS,
        Unit::Seconds,
        "Replication lag of a replica; NaN when unknown."
    );
    describe_counter!(
        BACKEND_READS_TOTAL,
        Unit::Count,
        "Reads sent to the backend (replicas answer them with read_from)."
    );
    describe_counter!(
        FAILOVERS_TOTAL,
        Unit::Count,
        "Failovers and switchovers completed, by shard."
    );
    describe_counter!(
        PLAN_CACHE_TOTAL,
        Unit::Count,
        "Plan-cache lookups, by result (hit, miss)."
    );
    describe_counter!(
        TEXT_PLAN_CACHE_TOTAL,
        Unit::Count,
        "Text plan-cache lookups, by result (hit, miss)."
    );
    describe_gauge!(CLIENT_CONNECTIONS, Unit::Count, "Client connections open.");
    describe_counter!(
        CLIENT_CONNECTIONS_TOTAL,
        Unit::Count,
        "Client connections accepted."
    );
    describe_counter!(
        SLOW_QUERIES_TOTAL,
        Unit::Count,
        "Statements slower than frontend.slow_query_ms."
    );
    describe_counter!(
        CONFIG_RELOADS_TOTAL,
        Unit::Count,
        "Config reloads, by result (ok, rejected)."
    );
    describe_counter!(
        TRANSACTIONS_TOTAL,
        Unit::Count,
        "Transaction ends, by kind (one_shard, two_phase) and result."
    );
    describe_counter!(
        XA_RECOVERIES_TOTAL,
        Unit::Count,
        "Prepared XA legs resolved by recovery, by action (commit, rollback)."
    );
}

/// One statement sent to `shard` took `duration`. `kind`: `select`, `insert`, `update`,
/// `delete`, `replace`, `begin`, `commit`, `rollback`, `set`, `use`, `ddl`, `other`. A statement
/// spread over several shards is recorded once per shard it touched.
pub fn record_query(kind: &'static str, shard: &str, duration: Duration) {
    counter!(QUERIES_TOTAL, "kind" => kind, "shard" => shard.to_string()).increment(1);
    histogram!(QUERY_DURATION_SECONDS, "kind" => kind, "shard" => shard.to_string())
        .record(duration.as_secs_f64());
}

/// One session's handles of the per-statement metrics ([`record_query`], plan-cache hits).
///
/// Looking a labelled metric up builds its key (allocating the label values), hashes it and
/// takes the registry's lock: about a microsecond, on every statement. A session sees few
/// (kind, shard) pairs, so it keeps their handles and pays an atomic add instead.
#[derive(Default)]
pub struct SessionMetrics {
    queries: Vec<(&'static str, Box<str>, Counter, Histogram)>,
    plan_cache_hit: Option<Counter>,
    /// The text plan cache's hit and miss counters.
    text_plan_cache: Option<(Counter, Counter)>,
}

impl SessionMetrics {
    /// As [`record_query`], through the cached handles.
    pub fn record_query(&mut self, kind: &'static str, shard: &str, duration: Duration) {
        let i = match self
            .queries
            .iter()
            .position(|(k, s, ..)| *k == kind && &**s == shard)
        {
            Some(i) => i,
            None => {
                self.queries.push((
                    kind,
                    shard.into(),
                    counter!(QUERIES_TOTAL, "kind" => kind, "shard" => shard.to_string()),
                    histogram!(QUERY_DURATION_SECONDS, "kind" => kind, "shard" => shard.to_string()),
                ));
                self.queries.len() - 1
            }
        };
        let (_, _, count, latency) = &self.queries[i];
        count.increment(1);
        latency.record(duration.as_secs_f64());
    }

    /// As `record_plan_cache(true)`, through a cached handle.
    pub fn record_plan_cache_hit(&mut self) {
        self.plan_cache_hit
            .get_or_insert_with(|| counter!(PLAN_CACHE_TOTAL, "result" => "hit"))
            .increment(1);
    }

    /// A text statement's plan came from the text plan cache (`hit`) or from the parser.
    pub fn record_text_plan_cache(&mut self, hit: bool) {
        let (h, m) = self.text_plan_cache.get_or_insert_with(|| {
            (
                counter!(TEXT_PLAN_CACHE_TOTAL, "result" => "hit"),
                counter!(TEXT_PLAN_CACHE_TOTAL, "result" => "miss"),
            )
        });
        if hit { h } else { m }.increment(1);
    }
}

/// An error packet with MySQL error `code` was sent to a client (the proxy's own or a
/// backend's).
pub fn record_error(code: u16) {
    counter!(ERRORS_TOTAL, "code" => code.to_string()).increment(1);
}

/// The pool of `backend` (`host:port`) now has `in_use` connections lent out and `idle` kept.
/// `/metrics` also refreshes this from [`crate::admin::AdminOps::backends`] at every scrape.
pub fn set_pool(backend: &str, in_use: u64, idle: u64) {
    gauge!(POOL_CONNECTIONS, "backend" => backend.to_string(), "state" => "in_use")
        .set(in_use as f64);
    gauge!(POOL_CONNECTIONS, "backend" => backend.to_string(), "state" => "idle").set(idle as f64);
}

/// The latest health check of `backend`: up or not, and its replication lag if it is a
/// replica that reports one. `/metrics` also refreshes this from
/// [`crate::admin::AdminOps::backends`] at every scrape.
pub fn set_backend_health(backend: &str, up: bool, lag: Option<Duration>) {
    gauge!(BACKEND_UP, "backend" => backend.to_string()).set(if up { 1.0 } else { 0.0 });
    gauge!(BACKEND_LAG_SECONDS, "backend" => backend.to_string())
        .set(lag.map_or(f64::NAN, |l| l.as_secs_f64()));
}

/// `backend` (`host:port`) has been sent `reads` reads since start (kept in its pool's
/// statistics; `/metrics` sets this from [`crate::admin::AdminOps::backends`] at every
/// scrape, so the hot path counts with one atomic add).
pub fn set_backend_reads(backend: &str, reads: u64) {
    counter!(BACKEND_READS_TOTAL, "backend" => backend.to_string()).absolute(reads);
}

/// A failover or switchover of `shard` completed.
pub fn record_failover(shard: &str) {
    counter!(FAILOVERS_TOTAL, "shard" => shard.to_string()).increment(1);
}

/// One plan-cache lookup.
pub fn record_plan_cache(hit: bool) {
    counter!(PLAN_CACHE_TOTAL, "result" => if hit { "hit" } else { "miss" }).increment(1);
}

/// A client connection was accepted.
pub fn record_client_connected() {
    counter!(CLIENT_CONNECTIONS_TOTAL).increment(1);
    gauge!(CLIENT_CONNECTIONS).increment(1.0);
}

/// A client connection ended (whatever the reason).
pub fn record_client_disconnected() {
    gauge!(CLIENT_CONNECTIONS).decrement(1.0);
}

/// A statement exceeded `frontend.slow_query_ms` (the slow-query log has the details).
pub fn record_slow_query() {
    counter!(SLOW_QUERIES_TOTAL).increment(1);
}

/// A config reload was applied (`ok`) or rejected. Called by [`crate::admin::reload_logged`].
pub fn record_config_reload(ok: bool) {
    counter!(CONFIG_RELOADS_TOTAL, "result" => if ok { "ok" } else { "rejected" }).increment(1);
}

/// A transaction ended. `two_phase`: it reached several shards; `result`: `committed`,
/// `rolled_back` or `failed` (a COMMIT that rolled back).
pub fn record_transaction(two_phase: bool, result: &'static str) {
    let kind = if two_phase { "two_phase" } else { "one_shard" };
    counter!(TRANSACTIONS_TOTAL, "kind" => kind, "result" => result).increment(1);
}

/// Recovery resolved one prepared XA leg (`commit` or `rollback`).
pub fn record_xa_recovery(commit: bool) {
    let action = if commit { "commit" } else { "rollback" };
    counter!(XA_RECOVERIES_TOTAL, "action" => action).increment(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpers_show_up_in_the_rendered_text() {
        let handle = install();
        record_query("select", "s1", Duration::from_micros(700));
        let mut cached = SessionMetrics::default();
        cached.record_query("select", "s2", Duration::from_micros(700));
        cached.record_query("select", "s2", Duration::from_micros(700));
        cached.record_plan_cache_hit();
        record_error(1064);
        set_pool("127.0.0.1:3311", 3, 5);
        set_backend_health("127.0.0.1:3312", false, Some(Duration::from_secs(4)));
        set_backend_reads("127.0.0.1:3312", 9);
        record_failover("s1");
        record_plan_cache(true);
        record_plan_cache(false);
        record_client_connected();
        record_slow_query();
        record_config_reload(false);
        let text = handle.render();
        for needle in [
            r#"shardproxy_queries_total{kind="select",shard="s1"} 1"#,
            r#"shardproxy_queries_total{kind="select",shard="s2"} 2"#,
            r#"shardproxy_query_duration_seconds_bucket{kind="select",shard="s1",le="0.001"} 1"#,
            r#"shardproxy_errors_total{code="1064"} 1"#,
            r#"shardproxy_pool_connections{backend="127.0.0.1:3311",state="in_use"} 3"#,
            r#"shardproxy_pool_connections{backend="127.0.0.1:3311",state="idle"} 5"#,
            r#"shardproxy_backend_up{backend="127.0.0.1:3312"} 0"#,
            r#"shardproxy_backend_reads_total{backend="127.0.0.1:3312"} 9"#,
            r#"shardproxy_backend_lag_seconds{backend="127.0.0.1:3312"} 4"#,
            r#"shardproxy_failovers_total{shard="s1"} 1"#,
            r#"shardproxy_plan_cache_total{result="hit"} 2"#,
            r#"shardproxy_plan_cache_total{result="miss"} 1"#,
            "shardproxy_client_connections 1",
            "shardproxy_slow_queries_total 1",
            r#"shardproxy_config_reloads_total{result="rejected"} 1"#,
            "# HELP shardproxy_queries_total",
            "# TYPE shardproxy_query_duration_seconds histogram",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in\n{text}");
        }
    }
}
