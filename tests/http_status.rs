//! The HTTP port through real HTTP requests, and the status page in headless Chromium.

mod harness;

use std::time::Duration;

use harness::fixed_ops::{start_http, FixedOps, DOWN_BACKEND, RESHARD_ROWS};

/// A plain HTTP/1.1 GET; returns (status code, headers in lower case, body).
async fn get(port: u16, path: &str) -> (u16, String, String) {
    let path = path.to_string();
    let r =
        tokio::task::spawn_blocking(move || harness::http_get(&format!("127.0.0.1:{port}"), &path))
            .await
            .unwrap();
    let head = r.head.to_ascii_lowercase();
    assert!(
        !head.contains("transfer-encoding: chunked"),
        "expected a sized body: {}",
        r.head
    );
    (r.status, head, r.body)
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_endpoint_serves_prometheus_text() {
    let dir = tempfile::tempdir().unwrap();
    let port = start_http(FixedOps::new(dir.path())).await;
    shardproxy::metrics::record_query("select", "s1", Duration::from_millis(2));
    shardproxy::metrics::set_backend_health(DOWN_BACKEND, false, None);
    shardproxy::metrics::record_error(1064);

    let (code, head, body) = get(port, "/metrics").await;
    assert_eq!(code, 200);
    assert!(
        head.contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    for needle in [
        "# TYPE shardproxy_queries_total counter",
        r#"shardproxy_queries_total{kind="select",shard="s1"} 1"#,
        "# TYPE shardproxy_query_duration_seconds histogram",
        r#"shardproxy_query_duration_seconds_bucket{kind="select",shard="s1",le="0.0025"} 1"#,
        r#"shardproxy_backend_up{backend="127.0.0.1:3322"} 0"#,
        r#"shardproxy_backend_lag_seconds{backend="127.0.0.1:3322"} NaN"#,
        r#"shardproxy_errors_total{code="1064"} 1"#,
        // Refreshed from AdminOps::backends at the scrape.
        r#"shardproxy_backend_up{backend="127.0.0.1:3311"} 1"#,
        r#"shardproxy_backend_lag_seconds{backend="127.0.0.1:3312"} 0"#,
        r#"shardproxy_pool_connections{backend="127.0.0.1:3311",state="in_use"} 2"#,
        r#"shardproxy_pool_connections{backend="127.0.0.1:3322",state="idle"} 0"#,
    ] {
        assert!(body.contains(needle), "missing {needle:?} in\n{body}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn status_json_and_page() {
    let dir = tempfile::tempdir().unwrap();
    let port = start_http(FixedOps::new(dir.path())).await;

    let (code, head, body) = get(port, "/api/status").await;
    assert_eq!(code, 200);
    assert!(head.contains("content-type: application/json"), "{head}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let shards: Vec<&str> = v["shards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(shards, ["s1", "s2", "s3"]);
    let down: Vec<&serde_json::Value> = v["backends"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["health"] == "down")
        .collect();
    assert_eq!(down.len(), 1);
    assert_eq!(down[0]["address"], DOWN_BACKEND);
    assert_eq!(down[0]["lag_seconds"], serde_json::Value::Null);
    assert_eq!(v["ring"][1]["share"], 0.5);
    assert!(v["status"]
        .as_array()
        .unwrap()
        .contains(&serde_json::json!(["qps", "1234.5"])));
    // A running move: SHOW RESHARD STATUS's rows, phase, rows copied and catch-up lag.
    let rs = &v["reshard"];
    assert_eq!(rs["columns"][0], "phase");
    assert_eq!(rs["columns"][5], "rows_copied");
    assert_eq!(rs["columns"][9], "catch_up_lag");
    assert_eq!(rs["rows"].as_array().unwrap().len(), RESHARD_ROWS.len());
    assert_eq!(rs["rows"][0][0], "catch-up");
    assert_eq!(rs["rows"][0][5], "512");
    assert_eq!(rs["rows"][0][9], "42");

    let (code, head, body) = get(port, "/").await;
    assert_eq!(code, 200);
    assert!(head.contains("content-type: text/html"), "{head}");
    assert!(body.contains("/api/status"));
    assert!(
        !body.contains("http://") && !body.contains("https://") && !body.contains("src="),
        "the page must not load external assets"
    );

    let (code, _, _) = get(port, "/nope").await;
    assert_eq!(code, 404);
}

/// The DOM of `url` in headless Chromium (`harness::chromium_dom`), off the runtime's threads.
async fn chromium_dom(url: &str) -> String {
    let url = url.to_string();
    tokio::task::spawn_blocking(move || harness::chromium_dom(&url))
        .await
        .unwrap()
}

/// The `<tr …>…</tr>` whose opening tag contains `attr`.
fn row_with<'a>(dom: &'a str, attr: &str) -> &'a str {
    let start = dom
        .find(attr)
        .unwrap_or_else(|| panic!("no element with {attr} in the DOM:\n{dom}"));
    let start = dom[..start].rfind("<tr").unwrap();
    let end = start + dom[start..].find("</tr>").unwrap();
    &dom[start..end]
}

#[tokio::test(flavor = "multi_thread")]
async fn status_page_in_headless_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let ops = FixedOps::new(dir.path());
    let port = start_http(ops.clone()).await;
    let url = format!("http://127.0.0.1:{port}/");

    let dom = chromium_dom(&url).await;
    assert!(
        dom.contains("class=\"ok\""),
        "the page reached /api/status:\n{dom}"
    );
    for shard in ["s1", "s2", "s3"] {
        let row = row_with(&dom, &format!("data-shard=\"{shard}\""));
        assert!(row.contains(&format!("<td>{shard}</td>")), "{row}");
        assert!(
            dom.contains(&format!("data-ring-shard=\"{shard}\"")),
            "ring row of {shard}"
        );
    }
    let down = row_with(&dom, &format!("data-backend=\"{DOWN_BACKEND}\""));
    assert!(down.contains("data-health=\"down\""), "{down}");
    assert!(down.contains(">DOWN</span>"), "{down}");
    let up = row_with(&dom, "data-backend=\"127.0.0.1:3331\"");
    assert!(
        up.contains("data-health=\"up\"") && up.contains(">up</span>"),
        "{up}"
    );
    assert!(row_with(&dom, "data-shard=\"s2\"").contains("1 / 2"));
    assert!(dom.contains("<b id=\"qps\">1234.5</b>"), "QPS shown");
    assert!(dom.contains("50.00 %"), "ring share of s2 shown");
    // The running move's row: phase, rows copied, catch-up lag.
    let mv = row_with(&dom, "data-reshard-table=\"accounts\"");
    assert!(
        mv.contains("data-phase=\"catch-up\"")
            && mv.contains("<td>s1</td><td>s3</td>")
            && mv.contains("<td>512</td>")
            && mv.contains("<td>42</td>"),
        "{mv}"
    );
    assert!(
        !dom.contains("<section id=\"reshard\" hidden"),
        "the section shows"
    );

    // Stop a backend: the next load marks it down.
    ops.set_down("127.0.0.1:3331", true);
    let dom = chromium_dom(&url).await;
    let row = row_with(&dom, "data-backend=\"127.0.0.1:3331\"");
    assert!(
        row.contains("data-health=\"down\"") && row.contains(">DOWN</span>"),
        "{row}"
    );
    let shard = row_with(&dom, "data-shard=\"s3\"");
    assert!(
        shard.contains("<td>down</td>") && shard.contains("0 / 1"),
        "{shard}"
    );
}
