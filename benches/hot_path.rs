//! Per-statement CPU cost of the proxy's own work on the hot path, without the network:
//! decoding a client packet, classifying the statement, following the backend's answer.
//! Run: `cargo bench --bench hot_path`. Results go to docs/benchmarks.md.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use shardproxy::config::Config;
use shardproxy::frontend::classify::classify;
use shardproxy::plan::text_cache::plan_cached;
use shardproxy::plan::{plan, plan_prepared, PlanContext, Rules};
use shardproxy::protocol::packet::{PacketReader, PacketWriter};
use shardproxy::protocol::packets::{build_eof, build_terminator};
use shardproxy::protocol::response::{ResponseKind, ResponseTracker};
use shardproxy::protocol::resultset::{encode_text_row, ColumnDef};
use shardproxy::ring::KeyValue;

const POINT_SELECT: &str = "SELECT c FROM sbtest1 WHERE id=50321";

fn wire(payload: &[u8]) -> Vec<u8> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut out = Vec::new();
        let mut w = PacketWriter::new(&mut out);
        w.write(0, payload).await.unwrap();
        w.flush().await.unwrap();
        out
    })
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut cmd = vec![3u8];
    cmd.extend_from_slice(POINT_SELECT.as_bytes());
    let bytes = wire(&cmd);
    c.bench_function("decode COM_QUERY packet", |b| {
        b.iter(|| {
            rt.block_on(async {
                let mut r = PacketReader::new(black_box(&bytes[..]), 1 << 24);
                r.read().await.unwrap()
            })
        })
    });
    c.bench_function("classify point select", |b| {
        b.iter(|| classify(black_box(POINT_SELECT)))
    });
    let config = Config::parse(
        r#"
        [backend]
        user = "app"
        password = "app"
        [[shards]]
        name = "s1"
        primary = "127.0.0.1:3311"
        [[shards]]
        name = "s2"
        primary = "127.0.0.1:3321"
        [sharding]
        default_shard = "s1"
        [[sharding.tables]]
        name = "sbtest1"
        key = "id"
        "#,
    )
    .unwrap();
    let rules = Rules::from_config(&config);
    let ctx = PlanContext {
        rules: &rules,
        current_db: Some("sbtest"),
        allow_scatter_writes: false,
    };
    c.bench_function("plan sharded point select (parse + route)", |b| {
        b.iter(|| plan(black_box(POINT_SELECT), &ctx))
    });
    c.bench_function("plan unsharded statement (lexical fast path)", |b| {
        b.iter(|| plan(black_box("SELECT c FROM other WHERE id=5"), &ctx))
    });
    // The text plan cache: point selects of one shape with other keys (every lookup a hit
    // after the first; the key literal re-bound, its shard looked up on the ring).
    let shared = std::sync::Arc::new(Rules::from_config(&config));
    let cached_ctx = PlanContext {
        rules: &shared,
        current_db: Some("sbtest"),
        allow_scatter_writes: false,
    };
    let texts: Vec<String> = (0..1024)
        .map(|i| format!("SELECT c FROM sbtest1 WHERE id={}", 50_000 + i * 7))
        .collect();
    let mut i = 0usize;
    c.bench_function("plan cached text point select (text plan cache hit)", |b| {
        b.iter(|| {
            i = (i + 1) % texts.len();
            plan_cached(black_box(&texts[i]), &cached_ctx, &shared, 1024)
        })
    });
    let prepared = plan_prepared("SELECT c FROM sbtest1 WHERE id=?", &ctx);
    let key = [Some(KeyValue::from(50321i64))];
    c.bench_function("bind cached prepared plan (route by parameter)", |b| {
        b.iter(|| prepared.bind(black_box(&key)))
    });
    let answer: Vec<Vec<u8>> = vec![
        vec![1],
        ColumnDef::text("c").encode().to_vec(),
        build_eof(2, 0).to_vec(),
        encode_text_row(&[Some(bytes::Bytes::from(vec![b'x'; 120]))]).to_vec(),
        build_terminator(false, 2, 0).to_vec(),
    ];
    c.bench_function("track point-select answer", |b| {
        b.iter(|| {
            let mut t = ResponseTracker::new(ResponseKind::Query, false);
            for p in &answer {
                t.feed(black_box(p)).unwrap();
            }
            t.outcome.status
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
