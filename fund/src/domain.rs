//! Pure fund rules, no I/O: amounts, the per-account day position (which shares earn on which
//! date), the instant-redemption cap, income rounding and the 7-day annualised yield.
//!
//! NAV is fixed at 1.00, so money and shares are the same number. Shares subscribed on day D
//! earn from D+1; outflows (redemptions, payments) on D stop those shares earning on D. Income
//! for D is floor(earning shares × yield per 10,000 / 10,000) to the cent and counts as held at
//! the end of D (so it earns from D+1).

use chrono::NaiveDate;
use rust_decimal::{Decimal, RoundingStrategy};
use serde::Serialize;

/// Instant (T+0) redemption cap per account per business day.
pub const INSTANT_CAP: Decimal = Decimal::from_parts(1_000_000, 0, 0, false, 2); // 10,000.00

/// Largest accepted single amount (fits DECIMAL(20,2) with room to add).
pub const MAX_AMOUNT: Decimal = Decimal::from_parts(0x107A_3FFF, 0x5AF3, 0, false, 0); // 99,999,999,999,999

/// A business-rule violation (HTTP 422) or a malformed input (HTTP 400).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleError {
    pub code: &'static str,
    pub message: String,
}

impl RuleError {
    fn new(code: &'static str, message: impl Into<String>) -> Self {
        RuleError {
            code,
            message: message.into(),
        }
    }
}

/// Parses a client amount: a decimal string, > 0, at most 2 decimals, not absurdly large.
pub fn parse_amount(s: &str) -> Result<Decimal, RuleError> {
    let t = s.trim();
    let (int, frac) = t.split_once('.').unwrap_or((t, ""));
    let digits = |x: &str| x.bytes().all(|b| b.is_ascii_digit());
    if int.is_empty()
        || int.len() > 15
        || !digits(int)
        || !digits(frac)
        || (t.contains('.') && frac.is_empty())
    {
        return Err(RuleError::new(
            "invalid_amount",
            format!("not a decimal amount: {s:?}"),
        ));
    }
    let d: Decimal = t
        .parse()
        .map_err(|_| RuleError::new("invalid_amount", format!("not a decimal amount: {s:?}")))?;
    if d <= Decimal::ZERO {
        return Err(RuleError::new("invalid_amount", "amount must be positive"));
    }
    if d.normalize().scale() > 2 {
        return Err(RuleError::new(
            "invalid_amount",
            "amount has more than 2 decimals",
        ));
    }
    if d > MAX_AMOUNT {
        return Err(RuleError::new("invalid_amount", "amount too large"));
    }
    Ok(cents(d))
}

/// The value with exactly two decimals (for display: `6000` → `6000.00`).
pub fn cents(d: Decimal) -> Decimal {
    let mut d = d.round_dp(2);
    d.rescale(2);
    d
}

// `income`, `Position::new` and `Position::earning_on` state in Rust what the settlement SQL
// computes set-based; the unit tests pin the rules down.
/// Income for one account and day: earning shares × yield per 10,000 / 10,000, rounded down
/// to the cent. Never negative.
#[cfg_attr(not(test), allow(dead_code))]
pub fn income(earning_shares: Decimal, per_10k: Decimal) -> Decimal {
    if earning_shares <= Decimal::ZERO || per_10k <= Decimal::ZERO {
        return Decimal::ZERO;
    }
    (earning_shares * per_10k / Decimal::from(10_000))
        .round_dp_with_strategy(2, RoundingStrategy::ToZero)
}

/// 7-day annualised yield in percent from up to 7 daily yields per 10,000 shares:
/// mean(daily) × 365 / 10,000 × 100, rounded to 4 decimals.
pub fn annualised_7d(daily_per_10k: &[Decimal]) -> Decimal {
    if daily_per_10k.is_empty() {
        return Decimal::ZERO;
    }
    let sum: Decimal = daily_per_10k.iter().copied().sum();
    (sum / Decimal::from(daily_per_10k.len() as u64) * Decimal::from(365) / Decimal::from(100))
        .round_dp(4)
}

/// One account's position, as stored in the `accounts` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    /// All shares owned now (pending standard redemptions already deducted).
    pub shares: Decimal,
    /// The business day the `day_*` fields describe.
    pub day: NaiveDate,
    /// Shares held at the start of `day`.
    pub base_shares: Decimal,
    /// Subscribed on `day` (earning from the next day).
    pub day_in: Decimal,
    /// Redeemed or paid on `day`.
    pub day_out: Decimal,
    /// Instant redemptions on `day` (capped at [`INSTANT_CAP`]).
    pub instant_out: Decimal,
    /// The previous active day and its earning shares.
    pub prev_day: NaiveDate,
    pub prev_earning: Decimal,
}

/// An operation that moves shares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Subscribe,
    RedeemInstant,
    RedeemStandard,
    Pay,
}

impl Op {
    /// The `ledger.kind` value.
    pub fn kind(self) -> &'static str {
        match self {
            Op::Subscribe => "subscribe",
            Op::RedeemInstant => "redeem_instant",
            Op::RedeemStandard => "redeem_standard",
            Op::Pay => "pay",
        }
    }
}

impl Position {
    /// A new account created on `today`.
    pub fn new(today: NaiveDate) -> Self {
        Position {
            shares: Decimal::ZERO,
            day: today,
            base_shares: Decimal::ZERO,
            day_in: Decimal::ZERO,
            day_out: Decimal::ZERO,
            instant_out: Decimal::ZERO,
            prev_day: NaiveDate::from_ymd_opt(1970, 1, 1).unwrap(),
            prev_earning: Decimal::ZERO,
        }
    }

    /// Shares earning on `day` itself: those held at its start minus that day's outflows.
    pub fn earning_today(&self) -> Decimal {
        (self.base_shares - self.day_out).max(Decimal::ZERO)
    }

    /// Moves the position to business day `today` (no-op if it is already there or later):
    /// everything held now becomes earning from `today`, the previous day's earning shares are
    /// kept for a late settlement.
    pub fn roll(&self, today: NaiveDate) -> Position {
        if today <= self.day {
            return self.clone();
        }
        Position {
            shares: self.shares,
            day: today,
            base_shares: self.shares,
            day_in: Decimal::ZERO,
            day_out: Decimal::ZERO,
            instant_out: Decimal::ZERO,
            prev_day: self.day,
            prev_earning: self.earning_today(),
        }
    }

    /// Earning shares for settlement date `d`, the same rule as the settlement SQL
    /// (`settle::earning_sql`). Exact when settlement of `d` runs before the account is active
    /// on two later days; `None` where the position no longer knows.
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn earning_on(&self, d: NaiveDate) -> Option<Decimal> {
        if self.day == d {
            Some(self.earning_today())
        } else if self.day < d {
            Some(self.shares)
        } else if self.prev_day == d {
            Some(self.prev_earning)
        } else if self.prev_day < d && self.day == d.succ_opt()? {
            Some(self.base_shares)
        } else {
            None
        }
    }

    /// Applies an operation of `amount` on business day `today` (rolling first).
    pub fn apply(&self, today: NaiveDate, op: Op, amount: Decimal) -> Result<Position, RuleError> {
        let mut p = self.roll(today);
        match op {
            Op::Subscribe => {
                p.shares += amount;
                p.day_in += amount;
            }
            Op::RedeemInstant | Op::RedeemStandard | Op::Pay => {
                if amount > p.shares {
                    return Err(RuleError::new(
                        "insufficient_shares",
                        format!("{amount} requested, {} available", p.shares),
                    ));
                }
                if op == Op::RedeemInstant {
                    if p.instant_out + amount > INSTANT_CAP {
                        return Err(RuleError::new(
                            "instant_cap_exceeded",
                            format!(
                                "instant redemptions are capped at {INSTANT_CAP} per day; {} used today",
                                p.instant_out
                            ),
                        ));
                    }
                    p.instant_out += amount;
                }
                p.shares -= amount;
                p.day_out += amount;
            }
        }
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }
    fn day(n: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, n).unwrap()
    }

    #[test]
    fn constants() {
        assert_eq!(INSTANT_CAP, d("10000.00"));
        assert_eq!(MAX_AMOUNT, d("99999999999999"));
    }

    #[test]
    fn income_rounds_down_to_the_cent() {
        // 12345.67 × 0.6523 / 10000 = 0.80530...
        assert_eq!(income(d("12345.67"), d("0.6523")), d("0.80"));
        // 10000 × 0.9999 / 10000 = 0.9999 -> 0.99, never 1.00
        assert_eq!(income(d("10000"), d("0.9999")), d("0.99"));
        assert_eq!(income(d("0.99"), d("0.6523")), d("0.00"));
        assert_eq!(income(d("1000000.00"), d("0.5")), d("50.00"));
        assert_eq!(income(Decimal::ZERO, d("1")), Decimal::ZERO);
        assert_eq!(income(d("100"), Decimal::ZERO), Decimal::ZERO);
    }

    #[test]
    fn amounts_are_validated() {
        assert_eq!(parse_amount("12.30").unwrap(), d("12.30"));
        assert_eq!(parse_amount("5").unwrap(), d("5"));
        assert!(parse_amount("0").is_err());
        assert!(parse_amount("-1").is_err());
        assert!(parse_amount("1.001").is_err());
        assert!(parse_amount("abc").is_err());
        assert!(parse_amount("1e3").is_err());
        assert!(parse_amount("100000000000000").is_err());
        assert_eq!(parse_amount("1.10").unwrap(), d("1.10"));
        assert_eq!(parse_amount("6000").unwrap().to_string(), "6000.00");
        assert_eq!(cents(Decimal::ZERO).to_string(), "0.00");
    }

    #[test]
    fn subscriptions_earn_from_the_next_day() {
        let p = Position::new(day(1))
            .apply(day(1), Op::Subscribe, d("1000"))
            .unwrap();
        assert_eq!(p.earning_on(day(1)), Some(Decimal::ZERO));
        assert_eq!(p.earning_on(day(2)), Some(d("1000")));
        // Another subscription on day 2 does not earn on day 2.
        let p = p.apply(day(2), Op::Subscribe, d("500")).unwrap();
        assert_eq!(p.earning_on(day(2)), Some(d("1000")));
        assert_eq!(p.earning_on(day(1)), Some(Decimal::ZERO));
        assert_eq!(p.earning_on(day(3)), Some(d("1500")));
    }

    #[test]
    fn outflows_stop_earning_that_day() {
        let p = Position::new(day(1))
            .apply(day(1), Op::Subscribe, d("1000"))
            .unwrap();
        let p = p.apply(day(3), Op::Pay, d("300")).unwrap();
        assert_eq!(p.earning_on(day(2)), Some(d("1000")));
        assert_eq!(p.earning_on(day(3)), Some(d("700")));
        // Same-day in and out: out consumes earning shares first, never below zero.
        let p = p.apply(day(3), Op::Subscribe, d("5000")).unwrap();
        let p = p.apply(day(3), Op::RedeemStandard, d("5000")).unwrap();
        assert_eq!(p.earning_on(day(3)), Some(Decimal::ZERO));
        assert_eq!(p.shares, d("700"));
    }

    #[test]
    fn late_settlement_uses_the_previous_day() {
        let p = Position::new(day(1))
            .apply(day(1), Op::Subscribe, d("1000"))
            .unwrap();
        let p = p.apply(day(2), Op::Pay, d("100")).unwrap();
        // Active again on day 3 before day 2 was settled.
        let p = p.apply(day(3), Op::Subscribe, d("50")).unwrap();
        assert_eq!(p.earning_on(day(2)), Some(d("900")));
        // No activity on day 4, active on day 5: day 4 earned what was held at the end of 3.
        let p = p.apply(day(5), Op::Subscribe, d("1")).unwrap();
        assert_eq!(p.earning_on(day(4)), Some(d("950")));
        assert_eq!(p.earning_on(day(2)), None);
    }

    #[test]
    fn instant_redemption_is_capped_per_day() {
        let p = Position::new(day(1))
            .apply(day(1), Op::Subscribe, d("50000"))
            .unwrap();
        let p = p.apply(day(1), Op::RedeemInstant, d("6000")).unwrap();
        let p = p.apply(day(1), Op::RedeemInstant, d("4000")).unwrap();
        let e = p.apply(day(1), Op::RedeemInstant, d("0.01")).unwrap_err();
        assert_eq!(e.code, "instant_cap_exceeded");
        // Standard redemption has no cap.
        let p = p.apply(day(1), Op::RedeemStandard, d("20000")).unwrap();
        // The cap resets the next day.
        let p = p.apply(day(2), Op::RedeemInstant, d("10000")).unwrap();
        assert_eq!(p.shares, d("10000"));
    }

    #[test]
    fn never_more_than_available() {
        let p = Position::new(day(1))
            .apply(day(1), Op::Subscribe, d("100"))
            .unwrap();
        for op in [Op::RedeemInstant, Op::RedeemStandard, Op::Pay] {
            let e = p.apply(day(1), op, d("100.01")).unwrap_err();
            assert_eq!(e.code, "insufficient_shares");
        }
        let p = p.apply(day(1), Op::Pay, d("100")).unwrap();
        assert_eq!(p.shares, Decimal::ZERO);
    }

    #[test]
    fn seven_day_annualised() {
        let y = vec![d("0.6523"); 7];
        // 0.6523 × 365 / 100 = 2.380895 -> 2.3809 (%)
        assert_eq!(annualised_7d(&y), d("2.3809"));
        assert_eq!(annualised_7d(&[]), Decimal::ZERO);
        assert_eq!(annualised_7d(&[d("1"), d("0")]), d("1.825"));
    }
}
