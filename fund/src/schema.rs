//! The schema, created through the connection with idempotent `CREATE TABLE IF NOT EXISTS`.
//!
//! Every per-account table carries `account_id` and has it as the first primary-key column, so
//! the proxy can shard them all on `account_id` and every statement the API issues routes to
//! one shard. `fund_yield` is a reference table (copied to every shard).
//!
//! Proxy configuration this schema expects: sharded tables `accounts`, `ledger`, `requests`,
//! `income`, `pending_redemptions` with key `account_id`; reference table `fund_yield`.

use anyhow::{Context, Result};
use sqlx::MySqlPool;

/// Sharded tables (key `account_id`).
pub const SHARDED_TABLES: &[&str] = &[
    "accounts",
    "ledger",
    "requests",
    "income",
    "pending_redemptions",
];

/// Reference tables (copied to every shard).
pub const REFERENCE_TABLES: &[&str] = &["fund_yield"];

/// The DDL, one statement per entry.
pub const DDL: &[&str] = &[
    // One row per investor. `shares` is the whole position at NAV 1.00 (pending standard
    // redemptions are already deducted). The `biz_day`… columns describe the business day `biz_day`:
    // `base_shares` were held at its start (they earn for it minus that day's outflows),
    // `day_in` were subscribed on it (earning from the next day), `day_out` left on it,
    // `instant_out` is the instant-redemption total on it (capped). `prev_day`/`prev_earning`
    // keep the earning shares of the previous active day for a settlement that runs after the
    // account was already active again. `settled_through` is the last settled date: the
    // settlement's exactly-once marker, updated in the same transaction as the income row.
    "CREATE TABLE IF NOT EXISTS accounts (
        account_id BIGINT NOT NULL,
        name VARCHAR(100) NOT NULL,
        shares DECIMAL(20,2) NOT NULL DEFAULT 0,
        biz_day DATE NOT NULL,
        base_shares DECIMAL(20,2) NOT NULL DEFAULT 0,
        day_in DECIMAL(20,2) NOT NULL DEFAULT 0,
        day_out DECIMAL(20,2) NOT NULL DEFAULT 0,
        instant_out DECIMAL(20,2) NOT NULL DEFAULT 0,
        prev_day DATE NOT NULL DEFAULT '1970-01-01',
        prev_earning DECIMAL(20,2) NOT NULL DEFAULT 0,
        settled_through DATE NOT NULL DEFAULT '1970-01-01',
        total_income DECIMAL(20,2) NOT NULL DEFAULT 0,
        created_at DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
        PRIMARY KEY (account_id)
    ) ENGINE=InnoDB",
    // Every share movement caused by a request: subscribe, redeem_instant, redeem_standard,
    // pay. `amount` is positive; the kind gives the sign. One row per (account, request id).
    "CREATE TABLE IF NOT EXISTS ledger (
        account_id BIGINT NOT NULL,
        request_id VARCHAR(64) NOT NULL,
        kind VARCHAR(16) NOT NULL,
        amount DECIMAL(20,2) NOT NULL,
        biz_date DATE NOT NULL,
        merchant VARCHAR(100) NULL,
        created_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
        PRIMARY KEY (account_id, request_id)
    ) ENGINE=InnoDB",
    // Idempotency: the first outcome of each request id (success or rule violation), replayed
    // on retries. `fingerprint` detects a reused id with different parameters.
    "CREATE TABLE IF NOT EXISTS requests (
        account_id BIGINT NOT NULL,
        request_id VARCHAR(64) NOT NULL,
        fingerprint VARCHAR(255) NOT NULL,
        status SMALLINT NOT NULL,
        response TEXT NOT NULL,
        created_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
        PRIMARY KEY (account_id, request_id)
    ) ENGINE=InnoDB",
    // Daily income, at most one row per account and date (the primary key).
    "CREATE TABLE IF NOT EXISTS income (
        account_id BIGINT NOT NULL,
        income_date DATE NOT NULL,
        earning_shares DECIMAL(20,2) NOT NULL,
        per_10k DECIMAL(10,4) NOT NULL,
        amount DECIMAL(20,2) NOT NULL,
        PRIMARY KEY (account_id, income_date),
        KEY income_by_date (income_date)
    ) ENGINE=InnoDB",
    // Standard (T+1) redemptions: shares already deducted, money paid by the settlement of the
    // next day (`paid_on`).
    "CREATE TABLE IF NOT EXISTS pending_redemptions (
        account_id BIGINT NOT NULL,
        request_id VARCHAR(64) NOT NULL,
        amount DECIMAL(20,2) NOT NULL,
        req_date DATE NOT NULL,
        paid_on DATE NULL,
        PRIMARY KEY (account_id, request_id)
    ) ENGINE=InnoDB",
    // Reference table: the fund's daily yield per 10,000 shares and 7-day annualised yield (%).
    "CREATE TABLE IF NOT EXISTS fund_yield (
        yield_date DATE NOT NULL,
        per_10k DECIMAL(10,4) NOT NULL,
        annual_7d DECIMAL(10,4) NOT NULL,
        PRIMARY KEY (yield_date)
    ) ENGINE=InnoDB",
];

/// Creates every table that does not exist yet.
pub async fn init(pool: &MySqlPool) -> Result<()> {
    for ddl in DDL {
        sqlx::raw_sql(*ddl)
            .execute(pool)
            .await
            .with_context(|| format!("DDL failed: {}", ddl.lines().next().unwrap_or("")))?;
    }
    Ok(())
}
