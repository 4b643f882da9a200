//! `fund seed` (bulk demo/benchmark accounts) and `fund yield` (a day's yield).
//!
//! Seeding uses multi-row INSERTs without hints: the proxy splits the rows per shard. Each
//! seeded account subscribed a random amount on the seed date (ledger request id `seed`), so it
//! earns from the next day and `fund check` reconciles it. Not transactional across shards:
//! rerun a failed seed into an empty database.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use chrono::NaiveDate;
use rand::Rng;
use rust_decimal::Decimal;
use sqlx::MySqlPool;

use crate::api::new_account_id;
use crate::db::{self, date_lit};
use crate::domain;

/// Seeds `n` accounts subscribed on `date`, `batch` rows per statement, `concurrency`
/// statements in flight.
pub async fn run(
    pool: &MySqlPool,
    n: u64,
    date: NaiveDate,
    batch: u64,
    concurrency: usize,
) -> Result<()> {
    let start = Instant::now();
    let done = Arc::new(AtomicU64::new(0));
    let next = Arc::new(AtomicU64::new(0));
    let batch = batch.max(1);
    let ticker = {
        let done = done.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(2)).await;
                let d = done.load(Ordering::Relaxed);
                eprintln!(
                    "  {:>6.1}s seeded {d}/{n} ({:.0} accounts/s)",
                    start.elapsed().as_secs_f64(),
                    d as f64 / start.elapsed().as_secs_f64()
                );
            }
        })
    };
    let mut tasks = Vec::new();
    for _ in 0..concurrency.max(1) {
        let pool = pool.clone();
        let done = done.clone();
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            let d = date_lit(date);
            loop {
                let first = next.fetch_add(batch, Ordering::Relaxed);
                if first >= n {
                    break;
                }
                let count = batch.min(n - first);
                let mut acc = String::with_capacity(count as usize * 110 + 200);
                let mut led = String::with_capacity(count as usize * 70 + 200);
                acc.push_str(
                    "INSERT INTO accounts (account_id, name, shares, biz_day, base_shares, day_in, settled_through) VALUES ",
                );
                led.push_str(
                    "INSERT INTO ledger (account_id, request_id, kind, amount, biz_date) VALUES ",
                );
                {
                    let mut rng = rand::thread_rng();
                    for i in 0..count {
                        let id = new_account_id();
                        let amount = Decimal::new(rng.gen_range(10_000..10_000_000), 2);
                        if i > 0 {
                            acc.push(',');
                            led.push(',');
                        }
                        acc.push_str(&format!(
                            "({id},'demo-{}',{amount},{d},0,{amount},{d})",
                            first + i
                        ));
                        led.push_str(&format!("({id},'seed','subscribe',{amount},{d})"));
                    }
                }
                sqlx::raw_sql(db::sql(acc))
                    .execute(&pool)
                    .await
                    .context("inserting accounts")?;
                sqlx::raw_sql(db::sql(led))
                    .execute(&pool)
                    .await
                    .context("inserting ledger rows")?;
                done.fetch_add(count, Ordering::Relaxed);
            }
            anyhow::Ok(())
        }));
    }
    let mut err = None;
    for t in tasks {
        if let Err(e) = t.await? {
            err.get_or_insert(e);
        }
    }
    ticker.abort();
    if let Some(e) = err {
        return Err(e);
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "seeded {n} accounts subscribed on {date} in {secs:.1}s ({:.0} accounts/s)",
        n as f64 / secs
    );
    Ok(())
}

/// Sets the yield of `date` and its 7-day annualised yield from the days before it (written to
/// the reference table, i.e. to every shard).
pub async fn set_yield(pool: &MySqlPool, date: NaiveDate, per_10k: Decimal) -> Result<Decimal> {
    let from = date - chrono::Days::new(6);
    let mut days: Vec<Decimal> = sqlx::query_scalar(
        "SELECT per_10k FROM fund_yield WHERE yield_date >= ? AND yield_date < ? ORDER BY yield_date",
    )
    .bind(from)
    .bind(date)
    .fetch_all(pool)
    .await?;
    days.push(per_10k);
    let annual = domain::annualised_7d(&days);
    sqlx::raw_sql(db::sql(format!(
        "INSERT INTO fund_yield (yield_date, per_10k, annual_7d) VALUES ({}, {per_10k}, {annual}) \
         ON DUPLICATE KEY UPDATE per_10k = VALUES(per_10k), annual_7d = VALUES(annual_7d)",
        date_lit(date)
    )))
    .execute(pool)
    .await?;
    Ok(annual)
}
