//! `fund`: a Yu'e Bao-style money-market fund (NAV 1.00) that runs through shardproxy.
//!
//! It talks to the proxy only over the MySQL wire (sqlx), as if to one server. Subcommands:
//! `init`, `serve`, `seed`, `yield`, `settle`, `load`, `check`. Defaults reach the stack
//! `make up` starts (proxy 127.0.0.1:6033, user app/app, database fund; API 127.0.0.1:8080).

mod api;
mod check;
mod day;
mod db;
mod domain;
mod load;
mod money;
mod schema;
mod seed;
mod settle;

use std::time::Duration;

use anyhow::Result;
use chrono::{NaiveDate, Utc};
use clap::{Parser, Subcommand};
use rust_decimal::Decimal;

#[derive(Parser)]
#[command(
    name = "fund",
    version,
    about = "A money-market fund (NAV 1.00) on sharded MariaDB behind shardproxy",
    long_about = "A money-market fund (NAV 1.00) on sharded MariaDB behind shardproxy.\n\n\
        Typical session against the stack `make up` starts:\n  \
        fund init\n  fund seed --accounts 1000000 --date 2026-11-25\n  \
        fund yield --date 2026-11-26 --per-10k 0.6523\n  fund settle --date 2026-11-26\n  \
        fund serve &\n  fund load --duration 30\n  fund check\n\n\
        Against a plain MariaDB (no proxy) use --shards s1: the shard hints are only comments there."
)]
struct Cli {
    /// MySQL URL of the proxy (or of a plain MariaDB for development).
    #[arg(
        long,
        global = true,
        env = "FUND_DATABASE_URL",
        default_value = db::DEFAULT_DATABASE_URL
    )]
    database_url: String,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Create the tables (idempotent CREATE TABLE IF NOT EXISTS, through the connection).
    Init,
    /// Serve the JSON HTTP API.
    #[command(long_about = "Serve the JSON HTTP API:\n  \
        POST /accounts {\"name\"} -> {\"account_id\"}\n  \
        GET  /accounts/{id}            balance, shares, earning shares, pending redemptions, income\n  \
        GET  /accounts/{id}/history    transactions, income, standard redemptions\n  \
        POST /accounts/{id}/subscribe  {\"amount\":\"100.00\",\"request_id\":\"r1\"}\n  \
        POST /accounts/{id}/redeem     {\"amount\",\"mode\":\"instant\"|\"standard\",\"request_id\"}\n  \
        POST /accounts/{id}/pay        {\"amount\",\"merchant\",\"request_id\"}\n  \
        GET  /fund/report[?date=D]     totals across all shards (scatter-gather aggregates)\n\
        Errors are {\"code\",\"message\"} with 400, 404, 409 or 422. A retried request_id returns the \
        original answer (header idempotent-replayed: true) without moving money again.")]
    Serve {
        /// Address to listen on.
        #[arg(long, env = "FUND_LISTEN", default_value = "127.0.0.1:8080")]
        listen: String,
        /// Fixed business date (YYYY-MM-DD) instead of today's UTC date (tests, demos).
        #[arg(long, env = "FUND_TODAY")]
        today: Option<NaiveDate>,
        /// Database connections in the pool.
        #[arg(long, default_value_t = 32)]
        pool: u32,
    },
    /// Bulk-create demo/benchmark accounts with multi-row INSERTs (the proxy splits the rows).
    Seed {
        /// How many accounts.
        #[arg(long)]
        accounts: u64,
        /// Their subscription date (they earn from the day after); default yesterday (UTC).
        #[arg(long)]
        date: Option<NaiveDate>,
        /// Rows per INSERT statement.
        #[arg(long, default_value_t = 1000)]
        batch: u64,
        /// Statements in flight.
        #[arg(long, default_value_t = 4)]
        concurrency: usize,
    },
    /// Set a day's yield per 10,000 shares (the 7-day annualised yield is computed).
    Yield {
        /// The date.
        #[arg(long)]
        date: NaiveDate,
        /// Yield per 10,000 shares for that day, e.g. 0.6523.
        #[arg(long = "per-10k")]
        per_10k: Decimal,
    },
    /// Daily settlement for a date: pay income and standard redemptions, exactly once.
    #[command(
        long_about = "Daily settlement for date D, shard by shard in parallel.\n\n\
        For every account not yet settled for D: income = floor(earning shares x yield per 10,000 / \
        10,000) to the cent, reinvested as shares; standard redemptions requested before D are \
        marked paid. Batches of consecutive account ids, one transaction each, sent to one shard \
        with a /* shard=NAME */ hint. Rerunning, or resuming after a crash, pays each account \
        exactly once for D. Needs the yield of D (`fund yield`). Prints progress and accounts/s.\n\n\
        Against a plain MariaDB use --shards s1 (each listed shard is processed separately)."
    )]
    Settle {
        /// The date to settle.
        #[arg(long)]
        date: NaiveDate,
        /// Shards to work on, comma-separated.
        #[arg(long, env = "FUND_SHARDS", default_value = "s1,s2")]
        shards: String,
        /// Accounts per batch (transaction).
        #[arg(long, default_value_t = 5000)]
        batch: u32,
        /// Concurrent batches per shard.
        #[arg(long, default_value_t = 2)]
        workers: usize,
        /// Stop after this many batches per shard (simulates a crash; 0 = run to the end).
        #[arg(long, default_value_t = 0, hide = true)]
        max_batches: u64,
    },
    /// Generate a realistic request mix through the HTTP API and report latencies.
    Load {
        /// Base URL of `fund serve`.
        #[arg(long, env = "FUND_URL", default_value = "http://127.0.0.1:8080")]
        url: String,
        /// Accounts to create first.
        #[arg(long, default_value_t = 1000)]
        accounts: usize,
        /// Run for this many seconds (unless --requests is given).
        #[arg(long, default_value_t = 30)]
        duration: u64,
        /// Stop after this many requests instead (0 = use --duration).
        #[arg(long, default_value_t = 0)]
        requests: u64,
        /// Concurrent connections.
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        /// Target requests per second (0 = flat out).
        #[arg(long, default_value_t = 0.0)]
        rate: f64,
        /// Open each account with two requests (POST /accounts, then its first subscription)
        /// instead of one POST /accounts with `initial_subscription`.
        #[arg(long)]
        two_step_open: bool,
    },
    /// The seed's day at a chosen size against a running `fund serve`: accounts opened, the
    /// real-time mix at a target rate, the yield published, the settlement, `fund check`;
    /// prints a table of the figures and writes an SVG of throughput and latency.
    Day {
        /// Base URL of `fund serve` (its business date must be --date).
        #[arg(long, env = "FUND_URL", default_value = "http://127.0.0.1:8080")]
        url: String,
        /// Accounts in all (bulk-seeded, except the --open ones).
        #[arg(long)]
        accounts: u64,
        /// Of those, new investors opened over HTTP (account + first subscription).
        #[arg(long, default_value_t = 20000)]
        open: u64,
        /// Target rate of the real-time mix, requests/s (0 = flat out).
        #[arg(long)]
        rate: f64,
        /// Seconds of real-time mix.
        #[arg(long, default_value_t = 60)]
        duration: u64,
        /// HTTP connections.
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        /// The business date (the server's); default today (UTC).
        #[arg(long)]
        date: Option<NaiveDate>,
        /// The day's yield per 10,000 shares.
        #[arg(long = "per-10k", default_value = "0.6523")]
        per_10k: Decimal,
        /// Shards, comma-separated.
        #[arg(long, env = "FUND_SHARDS", default_value = "s1,s2")]
        shards: String,
        /// Where to write the picture.
        #[arg(long, default_value = "fund-day.svg")]
        svg: std::path::PathBuf,
    },
    /// Verify the fund's invariants; exits 1 on any violation (each printed).
    Check {
        /// Shards to check, comma-separated.
        #[arg(long, env = "FUND_SHARDS", default_value = "s1,s2")]
        shards: String,
    },
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,fund=info,sqlx=error".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match run(cli).await {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(2);
        }
    }
}

async fn run(cli: Cli) -> Result<i32> {
    let url = cli.database_url;
    match cli.cmd {
        Cmd::Init => {
            let pool = db::connect(&url, 1).await?;
            schema::init(&pool).await?;
            println!(
                "schema ready on {} (sharded on account_id: {}; reference: {})",
                db::redact(&url),
                schema::SHARDED_TABLES.join(", "),
                schema::REFERENCE_TABLES.join(", ")
            );
        }
        Cmd::Serve {
            listen,
            today,
            pool,
        } => {
            let pool = db::connect(&url, pool).await?;
            api::serve(pool, &listen, today).await?;
        }
        Cmd::Seed {
            accounts,
            date,
            batch,
            concurrency,
        } => {
            let date = date.unwrap_or_else(|| Utc::now().date_naive().pred_opt().unwrap());
            let pool = db::connect(&url, concurrency as u32).await?;
            seed::run(&pool, accounts, date, batch, concurrency).await?;
        }
        Cmd::Yield { date, per_10k } => {
            if per_10k < Decimal::ZERO || per_10k.scale() > 4 {
                anyhow::bail!("--per-10k must be >= 0 with at most 4 decimals");
            }
            let pool = db::connect(&url, 1).await?;
            let annual = seed::set_yield(&pool, date, per_10k).await?;
            println!("yield for {date}: {per_10k} per 10,000 shares, 7-day annualised {annual}%");
        }
        Cmd::Settle {
            date,
            shards,
            batch,
            workers,
            max_batches,
        } => {
            let shards = db::parse_shards(&shards);
            let pool = db::connect(&url, (shards.len() * (workers + 1)) as u32 + 1).await?;
            settle::run(
                &pool,
                &settle::SettleOpts {
                    date,
                    shards,
                    batch,
                    workers_per_shard: workers,
                    max_batches,
                },
            )
            .await?;
        }
        Cmd::Load {
            url: http,
            accounts,
            duration,
            requests,
            concurrency,
            rate,
            two_step_open,
        } => {
            load::run(&load::LoadOpts {
                url: http,
                accounts: accounts.max(1),
                duration: Duration::from_secs(duration),
                requests,
                concurrency,
                rate,
                two_step_open,
            })
            .await?;
        }
        Cmd::Day {
            url: http,
            accounts,
            open,
            rate,
            duration,
            concurrency,
            date,
            per_10k,
            shards,
            svg,
        } => {
            let shards = db::parse_shards(&shards);
            let pool = db::connect(&url, (shards.len() * 3) as u32 + 4).await?;
            let v = day::run(
                &pool,
                &day::DayOpts {
                    url: http,
                    accounts,
                    open: open.min(accounts),
                    rate,
                    duration: Duration::from_secs(duration),
                    concurrency,
                    date: date.unwrap_or_else(|| Utc::now().date_naive()),
                    per_10k,
                    shards,
                    svg,
                },
            )
            .await?;
            if v > 0 {
                println!("{v} violation(s)");
                return Ok(1);
            }
        }
        Cmd::Check { shards } => {
            let shards = db::parse_shards(&shards);
            let pool = db::connect(&url, 2).await?;
            let v = check::run(&pool, &shards).await?;
            if v > 0 {
                println!("{v} violation(s)");
                return Ok(1);
            }
            println!("all invariants hold");
        }
    }
    Ok(0)
}
