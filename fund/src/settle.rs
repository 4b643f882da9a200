//! Daily settlement for a date D, shard by shard in parallel via `/* shard=… */` hints, in
//! batches of consecutive account ids, set-based SQL.
//!
//! One batch is one transaction on one shard:
//! 1. `INSERT INTO income … SELECT …` the income of every not-yet-settled account of the range
//!    (`settled_through < D`) with earning shares > 0;
//! 2. `UPDATE accounts …` adds the same income (same expression over the same, now locked, rows)
//!    to the shares and sets `settled_through = D` for the same accounts;
//! 3. marks the range's standard redemptions requested before D as paid on D.
//!
//! Because the marker and the income row commit together, a rerun or a resumed run after a
//! crash skips settled accounts: each account is paid exactly once for D (the income primary
//! key (account_id, income_date) would refuse a second row anyway).
//!
//! Earning shares for D (same rule as `domain::Position::earning_on`): the account's day
//! position if it was active on D, all shares if it was last active before D, else the saved
//! previous day. Run the settlement of D before accounts are active on D+2.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use chrono::NaiveDate;
use rust_decimal::Decimal;
use sqlx::MySqlPool;

use crate::db::{self, date_lit, hint};

/// Settlement options.
#[derive(Debug, Clone)]
pub struct SettleOpts {
    pub date: NaiveDate,
    pub shards: Vec<String>,
    pub batch: u32,
    pub workers_per_shard: usize,
    /// Stop after this many batches per shard (for crash tests); 0 = no limit.
    pub max_batches: u64,
}

/// The SQL expression for the earning shares of date `d` (a literal).
pub fn earning_sql(d: &str, next: &str) -> String {
    format!(
        "CASE WHEN biz_day = {d} THEN GREATEST(base_shares - day_out, 0) \
         WHEN biz_day < {d} THEN shares \
         WHEN prev_day = {d} THEN prev_earning \
         WHEN prev_day < {d} AND biz_day = {next} THEN base_shares \
         ELSE 0 END"
    )
}

struct Progress {
    settled: AtomicU64,
    batches: AtomicU64,
}

/// Reads the yield of `date` (reference table: any shard answers).
pub async fn yield_of(pool: &MySqlPool, date: NaiveDate) -> Result<Option<Decimal>> {
    Ok(
        sqlx::query_scalar("SELECT per_10k FROM fund_yield WHERE yield_date = ?")
            .bind(date)
            .fetch_optional(pool)
            .await?,
    )
}

/// What a settlement run did.
pub struct Settled {
    /// Accounts this run settled.
    pub settled: u64,
    /// Its wall time in seconds.
    pub secs: f64,
}

/// Runs the settlement; prints progress and the final rate.
pub async fn run(pool: &MySqlPool, o: &SettleOpts) -> Result<Settled> {
    let Some(per_10k) = yield_of(pool, o.date).await? else {
        bail!(
            "no yield for {}: set it first with `fund yield --date {} --per-10k X`",
            o.date,
            o.date
        );
    };
    let d = date_lit(o.date);
    // Totals to do, per shard.
    let mut todo = Vec::new();
    for s in &o.shards {
        let n: i64 = sqlx::query_scalar(db::sql(format!(
            "{}SELECT COUNT(*) FROM accounts WHERE settled_through < {d}",
            hint(s)
        )))
        .fetch_one(pool)
        .await
        .with_context(|| format!("counting accounts on shard {s}"))?;
        todo.push(n as u64);
    }
    let total: u64 = todo.iter().sum();
    eprintln!(
        "settling {} at {} per 10,000 shares on shards {} ({} accounts to settle: {})",
        o.date,
        per_10k,
        o.shards.join(","),
        total,
        o.shards
            .iter()
            .zip(&todo)
            .map(|(s, n)| format!("{s}={n}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let progress: Vec<Arc<Progress>> = o
        .shards
        .iter()
        .map(|_| {
            Arc::new(Progress {
                settled: AtomicU64::new(0),
                batches: AtomicU64::new(0),
            })
        })
        .collect();
    let start = Instant::now();
    let ticker = {
        let progress = progress.clone();
        let shards = o.shards.clone();
        tokio::spawn(async move {
            let mut last = 0u64;
            let mut last_t = Instant::now();
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let done: u64 = progress
                    .iter()
                    .map(|p| p.settled.load(Ordering::Relaxed))
                    .sum();
                let now = Instant::now();
                let rate = (done - last) as f64 / now.duration_since(last_t).as_secs_f64();
                let per: Vec<String> = shards
                    .iter()
                    .zip(&progress)
                    .map(|(s, p)| format!("{s}={}", p.settled.load(Ordering::Relaxed)))
                    .collect();
                eprintln!(
                    "  {:>6.1}s settled {done}/{total} ({}) {rate:.0} accounts/s",
                    start.elapsed().as_secs_f64(),
                    per.join(" ")
                );
                last = done;
                last_t = now;
            }
        })
    };
    let mut tasks = Vec::new();
    for (i, s) in o.shards.iter().enumerate() {
        let pool = pool.clone();
        let s = s.clone();
        let o = o.clone();
        let p = progress[i].clone();
        tasks.push(tokio::spawn(async move {
            settle_shard(&pool, &o, &s, per_10k, &p).await
        }));
    }
    let mut err = None;
    for t in tasks {
        if let Err(e) = t.await? {
            err.get_or_insert(e);
        }
    }
    ticker.abort();
    let secs = start.elapsed().as_secs_f64();
    let done: u64 = progress
        .iter()
        .map(|p| p.settled.load(Ordering::Relaxed))
        .sum();
    let batches: u64 = progress
        .iter()
        .map(|p| p.batches.load(Ordering::Relaxed))
        .sum();
    println!(
        "settled {done} accounts for {} in {secs:.2}s: {:.0} accounts/s ({batches} batches)",
        o.date,
        done as f64 / secs.max(1e-9),
    );
    if let Some(e) = err {
        return Err(e);
    }
    // Totals for D over every shard, including batches committed by an earlier (interrupted) run.
    let (mut n, mut paid, mut left) = (0i64, Decimal::ZERO, 0i64);
    for s in &o.shards {
        let (c, a): (i64, Option<Decimal>) = sqlx::query_as(db::sql(format!(
            "{}SELECT COUNT(*), SUM(amount) FROM income WHERE income_date = {d}",
            hint(s)
        )))
        .fetch_one(pool)
        .await?;
        n += c;
        paid += a.unwrap_or_default();
        let l: i64 = sqlx::query_scalar(db::sql(format!(
            "{}SELECT COUNT(*) FROM accounts WHERE settled_through < {d}",
            hint(s)
        )))
        .fetch_one(pool)
        .await?;
        left += l;
    }
    println!(
        "income for {}: {n} accounts, {} in total; accounts not yet settled: {left}",
        o.date,
        paid.round_dp(2)
    );
    Ok(Settled {
        settled: done,
        secs,
    })
}

/// Cuts a shard's accounts into ranges (lo, hi] of about `batch` accounts by walking the
/// primary key; together the ranges cover every id (the first starts at 0, the last ends at
/// i64::MAX).
pub async fn cut_ranges(pool: &MySqlPool, shard: &str, batch: u32) -> Result<Vec<(i64, i64)>> {
    let h = hint(shard);
    let batch = batch.max(1);
    let mut ranges = Vec::new();
    let mut lo = 0i64;
    loop {
        let hi: Option<i64> = sqlx::query_scalar(db::sql(format!(
            "{h}SELECT account_id FROM accounts WHERE account_id > {lo} ORDER BY account_id LIMIT 1 OFFSET {}",
            batch - 1
        )))
        .fetch_optional(pool)
        .await?;
        ranges.push((lo, hi.unwrap_or(i64::MAX)));
        match hi {
            Some(h) => lo = h,
            None => break,
        }
    }
    Ok(ranges)
}

/// One shard: first walk the primary key to cut ranges of `batch` accounts, then split the
/// ranges into one contiguous run per worker. Workers on adjacent ranges would deadlock on the
/// next-key locks at range boundaries; contiguous runs meet at one boundary only (and a
/// deadlock there is retried).
async fn settle_shard(
    pool: &MySqlPool,
    o: &SettleOpts,
    shard: &str,
    per_10k: Decimal,
    p: &Progress,
) -> Result<()> {
    let ranges = cut_ranges(pool, shard, o.batch)
        .await
        .with_context(|| format!("shard {shard}: cutting ranges"))?;
    let workers = o.workers_per_shard.clamp(1, ranges.len());
    let per = ranges.len().div_ceil(workers);
    let started = AtomicU64::new(0);
    let mut tasks = Vec::new();
    for run in ranges.chunks(per) {
        let started = &started;
        tasks.push(async move {
            for &(lo, hi) in run {
                if o.max_batches > 0 && started.fetch_add(1, Ordering::SeqCst) >= o.max_batches {
                    break;
                }
                settle_range(pool, o.date, shard, per_10k, lo, hi, p).await?;
            }
            anyhow::Ok(())
        });
    }
    futures::future::try_join_all(tasks)
        .await
        .with_context(|| format!("shard {shard}"))?;
    Ok(())
}

/// Settles accounts in (lo, hi] on one shard, in one transaction, retrying deadlocks.
async fn settle_range(
    pool: &MySqlPool,
    date: NaiveDate,
    shard: &str,
    per_10k: Decimal,
    lo: i64,
    hi: i64,
    p: &Progress,
) -> Result<()> {
    let h = hint(shard);
    let d = date_lit(date);
    let next = date_lit(date.succ_opt().context("date overflow")?);
    let y = per_10k.to_string();
    let range = format!("account_id > {lo} AND account_id <= {hi}");
    let earning = earning_sql(&d, &next);
    let ins = format!(
        "{h}INSERT INTO income (account_id, income_date, earning_shares, per_10k, amount) \
         SELECT account_id, {d}, e, {y}, FLOOR(e * {y} / 100) / 100 FROM \
         (SELECT account_id, {earning} AS e FROM accounts WHERE {range} AND settled_through < {d}) t \
         WHERE e > 0"
    );
    // The same income expression as the INSERT, recomputed from the same (locked) row state: no
    // join back to `income`. `shares` is assigned before `base_shares` and the earning
    // expression never reads `shares` when `base_shares` changes, so MariaDB's left-to-right
    // assignment order and a simultaneous one give the same result.
    let inc = format!("(FLOOR(({earning}) * {y} / 100) / 100)");
    let upd = format!(
        "{h}UPDATE accounts SET \
         total_income = total_income + {inc}, \
         shares = shares + {inc}, \
         base_shares = IF(biz_day > {d}, base_shares + {inc}, base_shares), \
         settled_through = {d} \
         WHERE {range} AND settled_through < {d}"
    );
    let pend = format!(
        "{h}UPDATE pending_redemptions SET paid_on = {d} \
         WHERE {range} AND paid_on IS NULL AND req_date < {d}"
    );
    let mut attempt = 0u64;
    loop {
        attempt += 1;
        let r: Result<u64, sqlx::Error> = async {
            let mut tx = pool.begin().await?;
            sqlx::raw_sql(db::sql(ins.clone()))
                .execute(&mut *tx)
                .await?;
            let settled = sqlx::raw_sql(db::sql(upd.clone()))
                .execute(&mut *tx)
                .await?
                .rows_affected();
            sqlx::raw_sql(db::sql(pend.clone()))
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(settled)
        }
        .await;
        match r {
            Ok(settled) => {
                p.settled.fetch_add(settled, Ordering::Relaxed);
                p.batches.fetch_add(1, Ordering::Relaxed);
                return Ok(());
            }
            Err(e) if db::is_transient(&e) && attempt < 10 => {
                tracing::warn!("shard {shard} batch ({lo},{hi}] retry {attempt}: {e}");
                tokio::time::sleep(Duration::from_millis(20 * attempt)).await;
            }
            Err(e) => {
                return Err(
                    anyhow::Error::new(e).context(format!("shard {shard} batch ({lo},{hi}]"))
                )
            }
        }
    }
}
