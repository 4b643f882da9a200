//! `fund day`: the seed's day at a chosen size, against a running `fund serve` and its proxy.
//!
//! 1. **Accounts**: `--accounts N` in all; all but `--open M` are bulk-seeded (multi-row
//!    INSERTs, subscribed the day before, so they earn today), then M new investors open an
//!    account with its first subscription over HTTP (one `POST /accounts` each).
//! 2. **Real time**: the request mix of `fund load` at `--rate R` for `--duration` seconds on
//!    the new investors' accounts.
//! 3. **Yield**: today's yield per 10,000 shares is published.
//! 4. **Settlement** of today for every account, then **`fund check`**.
//!
//! It prints a Markdown table of the figures and writes an SVG picture of the mix: requests per
//! second and latency (p50, p99) for each second of the run (plotters).
//!
//! The server's business date must be the day's date (`fund serve` without `--today` uses
//! today's UTC date, the default of `--date`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use chrono::NaiveDate;
use plotters::prelude::*;
use rand::Rng;
use rust_decimal::Decimal;
use sqlx::MySqlPool;

use crate::{check, load, seed, settle};

/// Options of one day.
pub struct DayOpts {
    /// Base URL of `fund serve`.
    pub url: String,
    /// Accounts in all at the end of the opening phase.
    pub accounts: u64,
    /// Of those, opened over HTTP (the rest are bulk-seeded).
    pub open: u64,
    /// Target rate of the mix (requests/s; 0 = flat out).
    pub rate: f64,
    /// Length of the mix.
    pub duration: Duration,
    /// HTTP connections.
    pub concurrency: usize,
    /// The business date (the server's).
    pub date: NaiveDate,
    /// The yield of the day per 10,000 shares.
    pub per_10k: Decimal,
    /// The shards (for the settlement and the check).
    pub shards: Vec<String>,
    /// Where the picture goes.
    pub svg: PathBuf,
}

/// One second of the mix: requests that ended in it and their latencies.
struct Second {
    /// Seconds since the mix started (the end of the bucket).
    t: f64,
    /// Requests completed in this second.
    rps: f64,
    /// Median latency (ms).
    p50: f64,
    /// 99th percentile latency (ms).
    p99: f64,
}

/// Runs the day; returns the number of invariant violations `fund check` found.
pub async fn run(pool: &MySqlPool, o: &DayOpts) -> Result<u64> {
    if o.open == 0 || o.open > o.accounts {
        bail!("--open must be between 1 and --accounts");
    }
    let addr = load::host_port(&o.url)?;
    let mut rows: Vec<(String, String)> = Vec::new();
    let total = Instant::now();

    // 1. Accounts.
    let seeded = o.accounts - o.open;
    if seeded > 0 {
        let yesterday = o.date.pred_opt().unwrap_or(o.date);
        let t = Instant::now();
        seed::run(pool, seeded, yesterday, 1000, 4).await?;
        let s = t.elapsed().as_secs_f64();
        rows.push((
            "accounts bulk-seeded (subscribed the day before)".into(),
            format!("{seeded} in {s:.1} s ({:.0}/s)", seeded as f64 / s),
        ));
    }
    let run_id: u32 = rand::thread_rng().gen();
    let t = Instant::now();
    let ids = load::open_accounts(&addr, run_id, o.open as usize, o.concurrency, false).await?;
    let s = t.elapsed().as_secs_f64();
    rows.push((
        "new investors over HTTP (account + first subscription)".into(),
        format!("{} in {s:.1} s ({:.0}/s)", ids.len(), ids.len() as f64 / s),
    ));

    // 2. Real time.
    let lo = load::LoadOpts {
        url: o.url.clone(),
        accounts: ids.len(),
        duration: o.duration,
        requests: 0,
        concurrency: o.concurrency,
        rate: o.rate,
        two_step_open: false,
    };
    let m = load::mix(&addr, run_id, Arc::new(ids), &lo).await?;
    let mut all: Vec<u32> = m.samples.iter().map(|x| x.us).collect();
    all.sort_unstable();
    let ms = |p: f64| load::percentile(&all, p) as f64 / 1000.0;
    rows.push((
        format!(
            "real-time mix ({})",
            if o.rate > 0.0 {
                format!("target {} req/s", o.rate)
            } else {
                "flat out".into()
            }
        ),
        format!(
            "{} requests in {:.1} s = {:.0} req/s; p50 {:.1} ms, p99 {:.1} ms; \
             ok {}, rejected by a rule {}, errors {}, replays ok {} bad {}",
            m.samples.len(),
            m.secs,
            m.samples.len() as f64 / m.secs,
            ms(50.0),
            ms(99.0),
            m.ok,
            m.rejected,
            m.errors,
            m.replays_ok,
            m.replays_bad
        ),
    ));

    // 3. Yield.
    let annual = seed::set_yield(pool, o.date, o.per_10k).await?;
    rows.push((
        "yield published".into(),
        format!(
            "{} per 10,000 shares ({annual} % 7-day annualised)",
            o.per_10k
        ),
    ));

    // 4. Settlement and check.
    let st = settle::run(
        pool,
        &settle::SettleOpts {
            date: o.date,
            shards: o.shards.clone(),
            batch: 5000,
            workers_per_shard: 2,
            max_batches: 0,
        },
    )
    .await?;
    rows.push((
        format!("settlement of {}", o.date),
        format!(
            "{} accounts in {:.1} s ({:.0} accounts/s)",
            st.settled,
            st.secs,
            st.settled as f64 / st.secs.max(1e-9)
        ),
    ));
    let t = Instant::now();
    let violations = check::run(pool, &o.shards).await?;
    rows.push((
        "fund check".into(),
        format!(
            "{} in {:.1} s",
            if violations == 0 {
                "all invariants hold".to_string()
            } else {
                format!("{violations} violation(s)")
            },
            t.elapsed().as_secs_f64()
        ),
    ));
    rows.push((
        "whole day".into(),
        format!("{:.1} s", total.elapsed().as_secs_f64()),
    ));

    let seconds = per_second(&m.samples, m.secs);
    draw(
        &o.svg,
        &format!(
            "fund day {}: {} accounts, mix {} for {} s",
            o.date,
            o.accounts,
            if o.rate > 0.0 {
                format!("at {} req/s", o.rate)
            } else {
                "flat out".into()
            },
            o.duration.as_secs()
        ),
        o.rate,
        &seconds,
    )?;
    rows.push(("picture".into(), o.svg.display().to_string()));

    println!("| phase | figure |\n|---|---|");
    for (k, v) in &rows {
        println!("| {k} | {v} |");
    }
    Ok(violations)
}

/// The mix cut into one-second buckets (by completion time).
fn per_second(samples: &[load::Sample], secs: f64) -> Vec<Second> {
    let n = secs.ceil().max(1.0) as usize;
    let mut buckets: Vec<Vec<u32>> = vec![Vec::new(); n];
    for s in samples {
        let b = ((s.at_ms / 1000) as usize).min(n - 1);
        buckets[b].push(s.us);
    }
    buckets
        .into_iter()
        .enumerate()
        .map(|(i, mut v)| {
            v.sort_unstable();
            Second {
                t: (i + 1) as f64,
                rps: v.len() as f64,
                p50: load::percentile(&v, 50.0) as f64 / 1000.0,
                p99: load::percentile(&v, 99.0) as f64 / 1000.0,
            }
        })
        .collect()
}

/// Writes the picture: throughput above, latency below, both over the seconds of the mix.
fn draw(path: &Path, title: &str, target: f64, s: &[Second]) -> Result<()> {
    let root = SVGBackend::new(path, (1000, 700)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(title, ("sans-serif", 22))?;
    let (top, bottom) = root.split_vertically(330);
    let tmax = s.last().map(|x| x.t).unwrap_or(1.0);
    let rmax = s.iter().map(|x| x.rps).fold(target, f64::max).max(1.0) * 1.15;
    let mut c = ChartBuilder::on(&top)
        .margin(12)
        .x_label_area_size(35)
        .y_label_area_size(60)
        .caption(
            "throughput (requests completed per second)",
            ("sans-serif", 16),
        )
        .build_cartesian_2d(0f64..tmax, 0f64..rmax)?;
    c.configure_mesh()
        .x_desc("seconds into the mix")
        .y_desc("requests/s")
        .draw()?;
    c.draw_series(LineSeries::new(s.iter().map(|x| (x.t, x.rps)), &BLUE))?
        .label("completed")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE));
    if target > 0.0 {
        c.draw_series(LineSeries::new(vec![(0.0, target), (tmax, target)], &BLACK))?
            .label("target")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK));
    }
    c.configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .draw()?;
    let lmax = s.iter().map(|x| x.p99).fold(1.0, f64::max) * 1.15;
    let mut c = ChartBuilder::on(&bottom)
        .margin(12)
        .x_label_area_size(35)
        .y_label_area_size(60)
        .caption("latency per second (ms)", ("sans-serif", 16))
        .build_cartesian_2d(0f64..tmax, 0f64..lmax)?;
    c.configure_mesh()
        .x_desc("seconds into the mix")
        .y_desc("ms")
        .draw()?;
    c.draw_series(LineSeries::new(s.iter().map(|x| (x.t, x.p50)), &GREEN))?
        .label("p50")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], GREEN));
    c.draw_series(LineSeries::new(s.iter().map(|x| (x.t, x.p99)), &RED))?
        .label("p99")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED));
    c.configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .draw()?;
    root.present()?;
    Ok(())
}
