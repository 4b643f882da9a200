//! SIGHUP reloads the config like `RELOAD CONFIG` (own test binary: it signals its process).

mod harness;

use std::time::Duration;

use harness::fixed_ops::FixedOps;
use shardproxy::admin::AdminOps;

async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..100 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_reloads_and_a_bad_file_keeps_the_running_config() {
    let metrics = shardproxy::metrics::install();
    let dir = tempfile::tempdir().unwrap();
    let ops = FixedOps::new(dir.path());
    let task = tokio::spawn(shardproxy::admin::reload_on_sighup(ops.clone()));
    // Let the task install its handler before the first signal.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!task.is_finished(), "handler installed");

    std::fs::write(
        &ops.config_path,
        harness::fixed_ops::config().replace("127.0.0.1:3331", "127.0.0.1:3339"),
    )
    .unwrap();
    unsafe { libc::kill(libc::getpid(), libc::SIGHUP) };
    wait_for("the reload", || ops.shards()[2].primary == "127.0.0.1:3339").await;

    std::fs::write(&ops.config_path, "this is not toml").unwrap();
    unsafe { libc::kill(libc::getpid(), libc::SIGHUP) };
    wait_for("the rejected reload to be counted", || {
        metrics
            .render()
            .contains(r#"shardproxy_config_reloads_total{result="rejected"} 1"#)
    })
    .await;
    assert_eq!(ops.shards()[2].primary, "127.0.0.1:3339");
    assert!(metrics
        .render()
        .contains(r#"shardproxy_config_reloads_total{result="ok"} 1"#));
    task.abort();
}
