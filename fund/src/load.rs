//! `fund load`: a realistic request mix through the HTTP API (the whole stack: fund server →
//! proxy → shards), at a target rate or flat out, with a progress line and a final latency
//! histogram (p50/p95/p99 per kind of request).
//!
//! It first creates accounts (POST /accounts, then an initial subscribe), then runs the mix:
//! balance reads 40 %, subscribe 25 %, pay 15 %, instant redeem 12 %, standard redeem 8 %.
//! About 5 % of money requests are sent twice with the same request id and the replay must
//! return the identical answer. 422 answers (a rule said no) are expected and counted apart.
//! Each worker has one HTTP/1.1 keep-alive connection (hyper's client).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rand::Rng;
use tokio::net::TcpStream;

/// Load options.
#[derive(Debug, Clone)]
pub struct LoadOpts {
    pub url: String,
    pub accounts: usize,
    pub duration: Duration,
    pub requests: u64,
    pub concurrency: usize,
    pub rate: f64,
    /// Open accounts with two requests (POST /accounts, then the subscription) instead of one
    /// POST /accounts carrying `initial_subscription`.
    pub two_step_open: bool,
}

/// An HTTP/1.1 keep-alive client for one connection (hyper's client connection): each worker
/// owns one, so requests on it are sequential, as a browser tab or an app session would send.
pub struct Http {
    /// `host:port` of the server.
    addr: String,
    /// The open connection's request sender; `None` until the first request or after an error.
    sender: Option<SendRequest<Full<Bytes>>>,
}

/// A response: status, replay header, body.
pub struct Resp {
    pub status: u16,
    pub replayed: bool,
    pub body: String,
}

impl Http {
    pub fn new(addr: &str) -> Self {
        Http {
            addr: addr.to_string(),
            sender: None,
        }
    }

    /// Sends one request, reconnecting once if the kept-alive connection was closed.
    pub async fn call(&mut self, method: &str, path: &str, body: Option<&str>) -> Result<Resp> {
        match self.try_call(method, path, body).await {
            Ok(r) => Ok(r),
            Err(_) => {
                self.sender = None;
                self.try_call(method, path, body).await
            }
        }
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>> {
        let s = TcpStream::connect(&self.addr)
            .await
            .with_context(|| format!("connecting to {}", self.addr))?;
        s.set_nodelay(true)?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s)).await?;
        // The connection's I/O runs as its own task; it ends when the sender is dropped.
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(sender)
    }

    async fn try_call(&mut self, method: &str, path: &str, body: Option<&str>) -> Result<Resp> {
        if self.sender.as_ref().is_none_or(|s| s.is_closed()) {
            self.sender = Some(self.connect().await?);
        }
        let sender = self.sender.as_mut().expect("connected above");
        sender.ready().await?;
        let req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, &self.addr)
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body.unwrap_or("").to_owned())))?;
        let resp = sender.send_request(req).await?;
        let status = resp.status().as_u16();
        let replayed = resp
            .headers()
            .get("idempotent-replayed")
            .is_some_and(|v| v.as_bytes() == b"true");
        let body = resp.into_body().collect().await?.to_bytes();
        Ok(Resp {
            status,
            replayed,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }
}

/// `host:port` of an `http://host:port[/]` URL.
pub fn host_port(url: &str) -> Result<String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| anyhow!("only http:// URLs are supported: {url}"))?;
    Ok(rest.split('/').next().unwrap_or(rest).to_string())
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Balance,
    Subscribe,
    Pay,
    RedeemInstant,
    RedeemStandard,
}

const KINDS: [Kind; 5] = [
    Kind::Balance,
    Kind::Subscribe,
    Kind::Pay,
    Kind::RedeemInstant,
    Kind::RedeemStandard,
];

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Balance => "balance",
            Kind::Subscribe => "subscribe",
            Kind::Pay => "pay",
            Kind::RedeemInstant => "redeem_instant",
            Kind::RedeemStandard => "redeem_standard",
        }
    }
    fn pick(r: u32) -> Kind {
        match r % 100 {
            0..=39 => Kind::Balance,
            40..=64 => Kind::Subscribe,
            65..=79 => Kind::Pay,
            80..=91 => Kind::RedeemInstant,
            _ => Kind::RedeemStandard,
        }
    }
}

#[derive(Default)]
struct Counters {
    ok: AtomicU64,
    rejected: AtomicU64,
    errors: AtomicU64,
    replays_ok: AtomicU64,
    replays_bad: AtomicU64,
}

fn cents(rng: &mut impl Rng, lo: i64, hi: i64) -> String {
    let c = rng.gen_range(lo * 100..=hi * 100);
    format!("{}.{:02}", c / 100, c % 100)
}

/// Runs the load; returns an error if any request failed unexpectedly.
pub async fn run(o: &LoadOpts) -> Result<()> {
    let addr = host_port(&o.url)?;
    let run_id: u32 = rand::thread_rng().gen();
    // 1. Accounts, each with an initial subscription.
    let start = Instant::now();
    let ids =
        Arc::new(open_accounts(&addr, run_id, o.accounts, o.concurrency, o.two_step_open).await?);
    let secs = start.elapsed().as_secs_f64();
    eprintln!(
        "created {} accounts with an initial subscription in {secs:.1}s ({:.0} accounts/s, {})",
        ids.len(),
        ids.len() as f64 / secs.max(1e-9),
        if o.two_step_open {
            "POST /accounts then POST /accounts/{id}/subscribe"
        } else {
            "one POST /accounts with initial_subscription"
        }
    );
    let r = mix(&addr, run_id, ids, o).await?;
    report(o, &r);
    if r.errors > 0 || r.replays_bad > 0 {
        bail!("{} requests failed", r.errors + r.replays_bad);
    }
    Ok(())
}

/// One answered request of the mix.
#[derive(Clone, Copy)]
pub struct Sample {
    /// What it was.
    kind: Kind,
    /// Its latency in µs.
    pub us: u32,
    /// When it ended, in ms since the mix started.
    pub at_ms: u32,
}

/// What a mix run measured.
pub struct MixReport {
    /// Every request (replays not included).
    pub samples: Vec<Sample>,
    /// Wall time of the mix.
    pub secs: f64,
    /// 200 answers.
    pub ok: u64,
    /// 422 answers (a rule said no: expected).
    pub rejected: u64,
    /// Any other answer or a failed request.
    pub errors: u64,
    /// Replays that returned the identical answer with the replay header.
    pub replays_ok: u64,
    /// Replays that did not.
    pub replays_bad: u64,
    /// The first failure, for the message.
    pub first_error: Option<String>,
}

/// The request mix on accounts `ids` for `o.duration` (or `o.requests`), at `o.rate` or flat
/// out, over `o.concurrency` connections, with a progress line per second.
pub async fn mix(addr: &str, run_id: u32, ids: Arc<Vec<i64>>, o: &LoadOpts) -> Result<MixReport> {
    if ids.is_empty() {
        bail!("no accounts to run the mix on");
    }
    let addr = addr.to_string();
    let counters = Arc::new(Counters::default());
    let issued = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let ticker = {
        let counters = counters.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut last = 0u64;
            while !stop.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let ok = counters.ok.load(Ordering::Relaxed);
                let rej = counters.rejected.load(Ordering::Relaxed);
                let err = counters.errors.load(Ordering::Relaxed);
                let all = ok + rej + err;
                eprintln!(
                    "  {:>5.1}s requests={all} ok={ok} rejected(422)={rej} errors={err} {} req/s",
                    start.elapsed().as_secs_f64(),
                    all - last
                );
                last = all;
            }
        })
    };
    let mut tasks = Vec::new();
    for w in 0..o.concurrency.max(1) {
        let addr = addr.clone();
        let ids = ids.clone();
        let counters = counters.clone();
        let issued = issued.clone();
        let o = o.clone();
        tasks.push(tokio::spawn(async move {
            let mut http = Http::new(&addr);
            let mut lat: Vec<Sample> = Vec::new();
            let mut seq = 0u64;
            let mut first_error: Option<String> = None;
            loop {
                let k = issued.fetch_add(1, Ordering::Relaxed);
                if (o.requests > 0 && k >= o.requests)
                    || (o.requests == 0 && start.elapsed() >= o.duration)
                {
                    break;
                }
                if o.rate > 0.0 {
                    let due = start + Duration::from_secs_f64(k as f64 / o.rate);
                    tokio::time::sleep_until(due.into()).await;
                }
                let (kind, id, amount, replay) = {
                    let mut rng = rand::thread_rng();
                    let kind = Kind::pick(rng.gen());
                    let id = ids[rng.gen_range(0..ids.len())];
                    let amount = match kind {
                        Kind::Subscribe => cents(&mut rng, 10, 1_000),
                        Kind::Pay => cents(&mut rng, 1, 200),
                        _ => cents(&mut rng, 1, 500),
                    };
                    (kind, id, amount, rng.gen_ratio(1, 20))
                };
                seq += 1;
                let rid = format!("{run_id:08x}-{w}-{seq}");
                let (path, body) = match kind {
                    Kind::Balance => (format!("/accounts/{id}"), None),
                    Kind::Subscribe => (
                        format!("/accounts/{id}/subscribe"),
                        Some(format!("{{\"amount\":\"{amount}\",\"request_id\":\"{rid}\"}}")),
                    ),
                    Kind::Pay => (
                        format!("/accounts/{id}/pay"),
                        Some(format!(
                            "{{\"amount\":\"{amount}\",\"merchant\":\"shop-{}\",\"request_id\":\"{rid}\"}}",
                            seq % 97
                        )),
                    ),
                    Kind::RedeemInstant | Kind::RedeemStandard => (
                        format!("/accounts/{id}/redeem"),
                        Some(format!(
                            "{{\"amount\":\"{amount}\",\"mode\":\"{}\",\"request_id\":\"{rid}\"}}",
                            if kind == Kind::RedeemInstant { "instant" } else { "standard" }
                        )),
                    ),
                };
                let method = if body.is_some() { "POST" } else { "GET" };
                let t0 = Instant::now();
                let r = http.call(method, &path, body.as_deref()).await;
                let us = t0.elapsed().as_micros().min(u32::MAX as u128) as u32;
                let at_ms = start.elapsed().as_millis().min(u32::MAX as u128) as u32;
                lat.push(Sample { kind, us, at_ms });
                let r = match r {
                    Ok(r) if r.status == 200 => {
                        counters.ok.fetch_add(1, Ordering::Relaxed);
                        r
                    }
                    Ok(r) if r.status == 422 => {
                        counters.rejected.fetch_add(1, Ordering::Relaxed);
                        r
                    }
                    Ok(r) => {
                        counters.errors.fetch_add(1, Ordering::Relaxed);
                        first_error.get_or_insert(format!("{path}: {} {}", r.status, r.body));
                        continue;
                    }
                    Err(e) => {
                        counters.errors.fetch_add(1, Ordering::Relaxed);
                        first_error.get_or_insert(format!("{path}: {e:#}"));
                        continue;
                    }
                };
                if replay && body.is_some() {
                    match http.call(method, &path, body.as_deref()).await {
                        Ok(r2) if r2.status == r.status && r2.body == r.body && r2.replayed => {
                            counters.replays_ok.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(r2) => {
                            counters.replays_bad.fetch_add(1, Ordering::Relaxed);
                            first_error.get_or_insert(format!(
                                "replay of {rid} differs: {} {} vs {} {}",
                                r.status, r.body, r2.status, r2.body
                            ));
                        }
                        Err(e) => {
                            counters.replays_bad.fetch_add(1, Ordering::Relaxed);
                            first_error.get_or_insert(format!("replay of {rid}: {e:#}"));
                        }
                    }
                }
            }
            (lat, first_error)
        }));
    }
    let mut samples = Vec::new();
    let mut first_error = None;
    for t in tasks {
        let (l, e) = t.await?;
        samples.extend(l);
        if first_error.is_none() {
            first_error = e;
        }
    }
    stop.store(true, Ordering::Relaxed);
    ticker.abort();
    let c = &counters;
    Ok(MixReport {
        samples,
        secs: start.elapsed().as_secs_f64(),
        ok: c.ok.load(Ordering::Relaxed),
        rejected: c.rejected.load(Ordering::Relaxed),
        errors: c.errors.load(Ordering::Relaxed),
        replays_ok: c.replays_ok.load(Ordering::Relaxed),
        replays_bad: c.replays_bad.load(Ordering::Relaxed),
        first_error,
    })
}

/// Prints the summary line, the latency table per kind and the histogram.
fn report(o: &LoadOpts, r: &MixReport) {
    println!(
        "load via HTTP {}: {} requests in {:.1}s = {:.0} req/s (concurrency {}, target {}), ok={} rejected(422)={} errors={}, replays ok={} bad={}",
        o.url,
        r.samples.len(),
        r.secs,
        r.samples.len() as f64 / r.secs,
        o.concurrency,
        if o.rate > 0.0 { format!("{} req/s", o.rate) } else { "flat out".into() },
        r.ok,
        r.rejected,
        r.errors,
        r.replays_ok,
        r.replays_bad,
    );
    println!(
        "{:<16} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "latency (ms)", "count", "p50", "p95", "p99", "max"
    );
    let mut all: Vec<u32> = r.samples.iter().map(|x| x.us).collect();
    for k in KINDS {
        let mut v: Vec<u32> = r
            .samples
            .iter()
            .filter(|x| x.kind == k)
            .map(|x| x.us)
            .collect();
        print_row(k.name(), &mut v);
    }
    print_row("all", &mut all);
    print_histogram(&all);
    if let Some(e) = &r.first_error {
        eprintln!("first error: {e}");
    }
}

/// Opens `n` accounts, each with a first subscription of 1,000.00–50,000.00, over
/// `concurrency` connections; returns their ids. `two_step`: POST /accounts, then POST
/// /accounts/{id}/subscribe; otherwise one POST /accounts with `initial_subscription`.
pub async fn open_accounts(
    addr: &str,
    run_id: u32,
    n: usize,
    concurrency: usize,
    two_step: bool,
) -> Result<Vec<i64>> {
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..concurrency.clamp(1, 64) {
        let addr = addr.to_string();
        let next = next.clone();
        let n = n as u64;
        tasks.push(tokio::spawn(async move {
            let mut http = Http::new(&addr);
            let mut ids = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                let amount = cents(&mut rand::thread_rng(), 1_000, 50_000);
                let name = format!("load-{run_id:08x}-{i}");
                let rid = format!("init-{run_id:08x}");
                let body = if two_step {
                    format!("{{\"name\":\"{name}\"}}")
                } else {
                    format!(
                        "{{\"name\":\"{name}\",\"initial_subscription\":{{\"amount\":\"{amount}\",\"request_id\":\"{rid}\"}}}}"
                    )
                };
                let r = http.call("POST", "/accounts", Some(&body)).await?;
                if r.status != 201 {
                    bail!("POST /accounts: {} {}", r.status, r.body);
                }
                let v: serde_json::Value = serde_json::from_str(&r.body)?;
                let id = v["account_id"]
                    .as_i64()
                    .ok_or_else(|| anyhow!("no account_id in {}", r.body))?;
                if two_step {
                    let r = http
                        .call(
                            "POST",
                            &format!("/accounts/{id}/subscribe"),
                            Some(&format!("{{\"amount\":\"{amount}\",\"request_id\":\"{rid}\"}}")),
                        )
                        .await?;
                    if r.status != 200 {
                        bail!("initial subscribe: {} {}", r.status, r.body);
                    }
                } else if v["subscription"]["amount"].as_str() != Some(amount.as_str()) {
                    bail!("POST /accounts: the subscription is missing in {}", r.body);
                }
                ids.push(id);
            }
            anyhow::Ok(ids)
        }));
    }
    let mut ids = Vec::with_capacity(n);
    for t in tasks {
        ids.extend(t.await??);
    }
    Ok(ids)
}

/// Percentile (nearest rank) of sorted values.
pub fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(us: u32) -> String {
    format!("{:.2}", us as f64 / 1000.0)
}

fn print_row(name: &str, v: &mut [u32]) {
    v.sort_unstable();
    println!(
        "{:<16} {:>9} {:>9} {:>9} {:>9} {:>9}",
        name,
        v.len(),
        ms(percentile(v, 50.0)),
        ms(percentile(v, 95.0)),
        ms(percentile(v, 99.0)),
        ms(v.last().copied().unwrap_or(0))
    );
}

fn print_histogram(v: &[u32]) {
    if v.is_empty() {
        return;
    }
    // Power-of-two buckets from 0.25 ms.
    let mut buckets = [0u64; 16];
    for &us in v {
        let mut b = 0;
        let mut edge = 250u32;
        while us >= edge && b < 15 {
            b += 1;
            edge = edge.saturating_mul(2);
        }
        buckets[b] += 1;
    }
    let max = *buckets.iter().max().unwrap_or(&1);
    println!("histogram (all requests):");
    let mut lo = 0.0f64;
    let mut hi = 0.25f64;
    let last = buckets.iter().rposition(|&c| c > 0).unwrap_or(0);
    for (i, &c) in buckets.iter().enumerate().take(last + 1) {
        let label = if i == 15 {
            format!(">= {lo:.2} ms")
        } else {
            format!("{lo:>7.2} - {hi:<7.2} ms")
        };
        let bar = "#".repeat(((c as f64 / max as f64) * 50.0).round() as usize);
        println!("  {label:<22} {c:>9} {bar}");
        lo = hi;
        hi *= 2.0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let v: Vec<u32> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), 50);
        assert_eq!(percentile(&v, 99.0), 99);
        assert_eq!(percentile(&v, 100.0), 100);
        assert_eq!(percentile(&[], 50.0), 0);
    }

    #[test]
    fn urls() {
        assert_eq!(
            host_port("http://127.0.0.1:8080/").unwrap(),
            "127.0.0.1:8080"
        );
        assert!(host_port("https://x").is_err());
    }
}
