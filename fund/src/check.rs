//! `fund check`: the fund's invariants, verified shard by shard (hinted, so joins within a
//! shard are fine) and once more through the proxy's scatter-gather aggregates.
//!
//! Invariants: shares ≥ 0 for every account; shares = subscriptions + reinvested income −
//! redemptions − payments (per account, from `ledger` and `income`); `total_income` matches the
//! income rows; each income row is floor(earning × yield / 10,000); at most one income row per
//! account and date; no request id applied twice (ledger ↔ requests ↔ pending redemptions are
//! one-to-one); instant redemptions ≤ 10,000.00 per account per day; no row of an account lives
//! on a shard without that account; the fund's total shares (scatter SUM through the proxy)
//! equal the sum over shards and the sum of all movements.

use anyhow::Result;
use rust_decimal::Decimal;
use sqlx::{MySqlPool, Row};

use crate::db::{self, hint};
use crate::settle;

/// Per-shard queries that must return no rows; each row is a violation. `{R}` (or `{Ra}` for
/// alias `a`, …) is replaced by an account-id range so that big shards are checked in slices.
const SHARD_CHECKS: &[(&str, &str)] = &[
    (
        "negative_balance",
        "SELECT account_id, CONCAT('shares=', shares, ' base=', base_shares, ' day_out=', day_out, \
         ' instant_out=', instant_out) FROM accounts \
         WHERE {R} AND (shares < 0 OR base_shares < 0 OR day_in < 0 OR day_out < 0 \
         OR instant_out < 0 OR instant_out > 10000) LIMIT 100",
    ),
    (
        "shares_mismatch",
        "SELECT a.account_id, CONCAT('shares=', a.shares, ' movements=', COALESCE(l.net, 0), \
         ' income=', COALESCE(i.inc, 0), ' total_income=', a.total_income) \
         FROM accounts a \
         LEFT JOIN (SELECT account_id, SUM(CASE WHEN kind = 'subscribe' THEN amount ELSE -amount END) AS net \
                    FROM ledger WHERE {R} GROUP BY account_id) l ON l.account_id = a.account_id \
         LEFT JOIN (SELECT account_id, SUM(amount) AS inc FROM income WHERE {R} GROUP BY account_id) i \
                    ON i.account_id = a.account_id \
         WHERE {Ra} AND (a.shares <> COALESCE(l.net, 0) + COALESCE(i.inc, 0) \
            OR a.total_income <> COALESCE(i.inc, 0)) LIMIT 100",
    ),
    (
        "income_rounding",
        "SELECT account_id, CONCAT('date=', income_date, ' earning=', earning_shares, ' per_10k=', per_10k, \
         ' amount=', amount) FROM income \
         WHERE {R} AND (amount <> FLOOR(earning_shares * per_10k / 100) / 100 OR amount < 0) LIMIT 100",
    ),
    (
        "income_twice",
        "SELECT account_id, CONCAT('date=', income_date, ' rows=', COUNT(*)) FROM income \
         WHERE {R} GROUP BY account_id, income_date HAVING COUNT(*) > 1 LIMIT 100",
    ),
    (
        "ledger_without_request",
        "SELECT l.account_id, CONCAT('request_id=', l.request_id, ' kind=', l.kind, ' status=', \
         COALESCE(r.status, 'none')) FROM ledger l \
         LEFT JOIN requests r ON r.account_id = l.account_id AND r.request_id = l.request_id \
         WHERE {Rl} AND l.request_id <> 'seed' AND (r.request_id IS NULL OR r.status <> 200) LIMIT 100",
    ),
    (
        "request_without_ledger",
        "SELECT r.account_id, CONCAT('request_id=', r.request_id) FROM requests r \
         LEFT JOIN ledger l ON l.account_id = r.account_id AND l.request_id = r.request_id \
         WHERE {Rr} AND r.status = 200 AND l.request_id IS NULL LIMIT 100",
    ),
    (
        "pending_mismatch",
        "SELECT p.account_id, CONCAT('request_id=', p.request_id, ' amount=', p.amount) \
         FROM pending_redemptions p \
         LEFT JOIN ledger l ON l.account_id = p.account_id AND l.request_id = p.request_id \
         WHERE {Rp} AND (l.request_id IS NULL OR l.kind <> 'redeem_standard' OR l.amount <> p.amount \
            OR (p.paid_on IS NOT NULL AND p.paid_on <= p.req_date)) LIMIT 100",
    ),
    (
        "standard_without_pending",
        "SELECT l.account_id, CONCAT('request_id=', l.request_id) FROM ledger l \
         LEFT JOIN pending_redemptions p ON p.account_id = l.account_id AND p.request_id = l.request_id \
         WHERE {Rl} AND l.kind = 'redeem_standard' AND p.request_id IS NULL LIMIT 100",
    ),
    (
        "instant_cap_exceeded",
        "SELECT account_id, CONCAT('date=', biz_date, ' instant=', SUM(amount)) FROM ledger \
         WHERE {R} AND kind = 'redeem_instant' GROUP BY account_id, biz_date HAVING SUM(amount) > 10000 LIMIT 100",
    ),
    (
        "orphan_rows",
        "SELECT x.account_id, CONCAT('table=', x.t) FROM ( \
           SELECT account_id, 'ledger' AS t FROM ledger WHERE {R} UNION ALL \
           SELECT account_id, 'income' FROM income WHERE {R} UNION ALL \
           SELECT account_id, 'requests' FROM requests WHERE {R} UNION ALL \
           SELECT account_id, 'pending_redemptions' FROM pending_redemptions WHERE {R}) x \
         LEFT JOIN accounts a ON a.account_id = x.account_id WHERE a.account_id IS NULL LIMIT 100",
    ),
];

/// Accounts per slice.
const RANGE: u32 = 50_000;

/// Substitutes the range placeholders of a check.
fn with_range(q: &str, lo: i64, hi: i64) -> String {
    let mut out = q.to_string();
    for alias in ["a", "l", "r", "p", ""] {
        let col = if alias.is_empty() {
            "account_id".to_string()
        } else {
            format!("{alias}.account_id")
        };
        out = out.replace(
            &format!("{{R{alias}}}"),
            &format!("{col} > {lo} AND {col} <= {hi}"),
        );
    }
    out
}

/// Runs every check; returns the number of violations (each printed).
pub async fn run(pool: &MySqlPool, shards: &[String]) -> Result<u64> {
    let mut violations = 0u64;
    let mut shard_accounts = 0i64;
    let mut shard_shares = Decimal::ZERO;
    for s in shards {
        let h = hint(s);
        let ranges = settle::cut_ranges(pool, s, RANGE).await?;
        for (name, q) in SHARD_CHECKS {
            let mut found = 0u64;
            for &(lo, hi) in &ranges {
                let q = with_range(q, lo, hi);
                let rows = sqlx::query(db::sql(format!("{h}{q}")))
                    .fetch_all(pool)
                    .await?;
                for r in &rows {
                    let id: i64 = r.try_get(0)?;
                    let detail: Option<String> = r.try_get(1)?;
                    println!(
                        "VIOLATION {name} shard={s} account={id} {}",
                        detail.unwrap_or_default()
                    );
                }
                found += rows.len() as u64;
                if found >= 100 {
                    break;
                }
            }
            violations += found;
            if found == 0 {
                println!("ok  {name:<24} shard={s}");
            }
        }
        let (n, sh): (i64, Option<Decimal>) = sqlx::query_as(db::sql(format!(
            "{h}SELECT COUNT(*), SUM(shares) FROM accounts"
        )))
        .fetch_one(pool)
        .await?;
        let net: Option<Decimal> = sqlx::query_scalar(db::sql(format!(
            "{h}SELECT SUM(CASE WHEN kind = 'subscribe' THEN amount ELSE -amount END) FROM ledger"
        )))
        .fetch_one(pool)
        .await?;
        let inc: Option<Decimal> =
            sqlx::query_scalar(db::sql(format!("{h}SELECT SUM(amount) FROM income")))
                .fetch_one(pool)
                .await?;
        let sh = sh.unwrap_or_default();
        let mv = net.unwrap_or_default() + inc.unwrap_or_default();
        println!("    shard={s} accounts={n} shares={sh} movements={mv}");
        if sh != mv {
            println!("VIOLATION shard_total shard={s} shares={sh} movements={mv}");
            violations += 1;
        }
        shard_accounts += n;
        shard_shares += sh;
    }
    // The fund as a whole, through the proxy's scatter-gather (no hint, simple aggregates).
    let (n, sh): (i64, Option<Decimal>) =
        sqlx::query_as("SELECT COUNT(*), SUM(shares) FROM accounts")
            .fetch_one(pool)
            .await?;
    let by_kind: Vec<(String, Option<Decimal>)> =
        sqlx::query_as("SELECT kind, SUM(amount) FROM ledger GROUP BY kind")
            .fetch_all(pool)
            .await?;
    let inc: Option<Decimal> = sqlx::query_scalar("SELECT SUM(amount) FROM income")
        .fetch_one(pool)
        .await?;
    let mut movements = inc.unwrap_or_default();
    for (k, a) in &by_kind {
        let a = a.unwrap_or_default();
        if k == "subscribe" {
            movements += a;
        } else {
            movements -= a;
        }
    }
    let sh = sh.unwrap_or_default();
    println!(
        "    fund (scatter): accounts={n} shares={sh} movements={movements}; sum over shards: accounts={shard_accounts} shares={shard_shares}"
    );
    if sh != movements || sh != shard_shares || n != shard_accounts {
        println!(
            "VIOLATION fund_total scatter_shares={sh} scatter_movements={movements} shard_shares={shard_shares} scatter_accounts={n} shard_accounts={shard_accounts}"
        );
        violations += 1;
    }
    Ok(violations)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_check_is_sliced() {
        for (name, q) in SHARD_CHECKS {
            assert!(q.contains("{R"), "{name} has no range");
            let q = with_range(q, 5, 9);
            assert!(!q.contains("{R"), "{name}: {q}");
            assert!(q.contains("account_id > 5 AND"), "{name}");
        }
    }
}
