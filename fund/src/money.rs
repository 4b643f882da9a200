//! The money transactions behind the HTTP API, each one transaction on the account's shard, in
//! as few round trips as the rules allow.
//!
//! A money request (subscribe, redeem, pay) on an existing account:
//! 1. `BEGIN` (the proxy holds it back until the first statement names a shard);
//! 2. one `SELECT … FROM accounts a LEFT JOIN requests r … FOR UPDATE`: the account row locked
//!    and, in the same answer, the stored outcome of this request id if there is one (a retry
//!    replays it and moves nothing);
//! 3. the pure rule from `domain` decides; on success `UPDATE accounts`, `INSERT INTO ledger`
//!    (and `pending_redemptions` for a standard redemption);
//! 4. `INSERT INTO requests` the outcome (success or the rule's refusal), `COMMIT`.
//!
//! Opening an account with its first subscription needs no lock and no lookup (the account is
//! new): `BEGIN`, `INSERT INTO accounts` with the position the subscription leaves, the ledger
//! row, the stored outcome, `COMMIT`. A later retry of that subscription on
//! `/accounts/{id}/subscribe` with the same request id replays the stored answer, as for any
//! other subscription.
//!
//! Every statement carries `account_id = ?`, so the proxy routes it to one shard.

use axum::http::StatusCode;
use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde_json::json;
use sqlx::mysql::MySqlArguments;
use sqlx::query::Query;
use sqlx::{MySql, MySqlPool, Row, Transaction};

use crate::api::ApiError;
use crate::db;
use crate::domain::{Op, Position};

/// The position columns of `accounts` (alias `a`), read by [`position_from_row`].
pub const A_POSITION_COLS: &str = "a.shares, a.biz_day, a.base_shares, a.day_in, a.day_out, \
     a.instant_out, a.prev_day, a.prev_earning";

/// Reads a [`Position`] from a row that has the [`A_POSITION_COLS`] columns.
pub fn position_from_row(row: &sqlx::mysql::MySqlRow) -> Result<Position, sqlx::Error> {
    Ok(Position {
        shares: row.try_get("shares")?,
        day: row.try_get("biz_day")?,
        base_shares: row.try_get("base_shares")?,
        day_in: row.try_get("day_in")?,
        day_out: row.try_get("day_out")?,
        instant_out: row.try_get("instant_out")?,
        prev_day: row.try_get("prev_day")?,
        prev_earning: row.try_get("prev_earning")?,
    })
}

/// What a money transaction answered.
pub enum Outcome {
    /// Decided now (and stored for retries).
    Done(StatusCode, String),
    /// The stored answer of an earlier request with the same id.
    Replayed(StatusCode, String),
}

/// Why a money transaction did not answer.
pub enum TxError {
    /// An answer for the client (no such account, request id reused).
    Api(ApiError),
    /// A database error (the caller retries the transient ones).
    Db(sqlx::Error),
}

impl From<sqlx::Error> for TxError {
    fn from(e: sqlx::Error) -> Self {
        TxError::Db(e)
    }
}

/// One money request: what it moves and how it is identified.
pub struct MoneyReq<'a> {
    /// The account.
    pub id: i64,
    /// The operation.
    pub op: Op,
    /// Its amount (validated, two decimals).
    pub amount: Decimal,
    /// The client's request id (idempotency key).
    pub request_id: &'a str,
    /// The merchant of a payment.
    pub merchant: Option<&'a str>,
    /// `kind|amount|merchant`: tells a retry from a reused id with other parameters.
    pub fingerprint: &'a str,
}

/// The decision of the rule on a position: the new position (None: refused) and the answer.
struct Decision {
    /// The position after the operation; `None` when a rule refused it.
    after: Option<Position>,
    /// HTTP status of the answer.
    status: StatusCode,
    /// JSON body of the answer.
    body: String,
}

fn decide(r: &MoneyReq<'_>, today: NaiveDate, pos: &Position) -> Decision {
    match pos.apply(today, r.op, r.amount) {
        Ok(p) => {
            let mut body = json!({
                "account_id": r.id,
                "request_id": r.request_id,
                "kind": r.op.kind(),
                "amount": r.amount,
                "business_date": today,
                "shares": p.shares,
                "balance": p.shares,
            });
            if r.op == Op::RedeemStandard {
                body["paid_by_settlement_of"] = json!(today.succ_opt());
            }
            if let Some(m) = r.merchant {
                body["merchant"] = json!(m);
            }
            Decision {
                after: Some(p),
                status: StatusCode::OK,
                body: body.to_string(),
            }
        }
        Err(rule) => Decision {
            after: None,
            status: StatusCode::UNPROCESSABLE_ENTITY,
            body: json!({"code": rule.code, "message": rule.message}).to_string(),
        },
    }
}

/// The ledger row (and the pending standard redemption) of an accepted operation.
async fn write_moves(
    tx: &mut Transaction<'_, MySql>,
    r: &MoneyReq<'_>,
    today: NaiveDate,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO ledger (account_id, request_id, kind, amount, biz_date, merchant) \
         VALUES (?, ?, ?, ?, ?, ?)",
    )
    .bind(r.id)
    .bind(r.request_id)
    .bind(r.op.kind())
    .bind(r.amount)
    .bind(today)
    .bind(r.merchant)
    .execute(&mut **tx)
    .await?;
    if r.op == Op::RedeemStandard {
        sqlx::query(
            "INSERT INTO pending_redemptions (account_id, request_id, amount, req_date) \
             VALUES (?, ?, ?, ?)",
        )
        .bind(r.id)
        .bind(r.request_id)
        .bind(r.amount)
        .bind(today)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// Stores the answer for retries of the same request id.
async fn store_outcome(
    tx: &mut Transaction<'_, MySql>,
    r: &MoneyReq<'_>,
    d: &Decision,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO requests (account_id, request_id, fingerprint, status, response) \
         VALUES (?, ?, ?, ?, ?)",
    )
    .bind(r.id)
    .bind(r.request_id)
    .bind(r.fingerprint)
    .bind(d.status.as_u16() as i16)
    .bind(&d.body)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// A money request on an existing account (see the module doc).
pub async fn money_tx(
    pool: &MySqlPool,
    today: NaiveDate,
    r: &MoneyReq<'_>,
) -> Result<Outcome, TxError> {
    let mut tx = pool.begin().await?;
    // Both tables are read with locks, so both reads see the newest committed rows: a
    // concurrent twin of this request, waiting on the account lock, finds the outcome the first
    // one committed. (A consistent read of `requests` here could use a snapshot taken before
    // the lock was granted.)
    let sql = format!(
        "SELECT {A_POSITION_COLS}, r.fingerprint, r.status, r.response \
         FROM accounts a LEFT JOIN requests r \
         ON r.account_id = a.account_id AND r.request_id = ? \
         WHERE a.account_id = ? FOR UPDATE"
    );
    let Some(row) = sqlx::query(db::sql(sql))
        .bind(r.request_id)
        .bind(r.id)
        .fetch_optional(&mut *tx)
        .await?
    else {
        tx.rollback().await?;
        return Err(TxError::Api(ApiError::not_found(r.id)));
    };
    if let Some(fp) = row.try_get::<Option<String>, _>("fingerprint")? {
        tx.rollback().await?;
        if fp != r.fingerprint {
            return Err(TxError::Api(ApiError::new(
                StatusCode::CONFLICT,
                "request_id_reused",
                format!(
                    "request_id {} was already used with different parameters ({fp})",
                    r.request_id
                ),
            )));
        }
        let status: i16 = row.try_get("status")?;
        let body: String = row.try_get("response")?;
        let status = StatusCode::from_u16(status as u16).unwrap_or(StatusCode::OK);
        return Ok(Outcome::Replayed(status, body));
    }
    let pos = position_from_row(&row)?;
    let d = decide(r, today, &pos);
    if let Some(p) = &d.after {
        sqlx::query(
            "UPDATE accounts SET shares = ?, biz_day = ?, base_shares = ?, day_in = ?, \
             day_out = ?, instant_out = ?, prev_day = ?, prev_earning = ? WHERE account_id = ?",
        )
        .bind_position(p)
        .bind(r.id)
        .execute(&mut *tx)
        .await?;
        write_moves(&mut tx, r, today).await?;
    }
    store_outcome(&mut tx, r, &d).await?;
    tx.commit().await?;
    Ok(Outcome::Done(d.status, d.body))
}

/// What opening an account answered.
pub enum Opened {
    /// Created, with the first subscription's answer.
    Created(String),
    /// The account id is taken (1062): try another one.
    IdTaken,
    /// A rule refused the first subscription: nothing was created.
    Refused(StatusCode, String),
}

/// Opens account `r.id` named `name` on `today` with its first subscription `r` (see the module
/// doc). `r.op` is [`Op::Subscribe`].
pub async fn open_tx(
    pool: &MySqlPool,
    today: NaiveDate,
    name: &str,
    r: &MoneyReq<'_>,
) -> Result<Opened, sqlx::Error> {
    let d = decide(r, today, &Position::new(today));
    let Some(p) = &d.after else {
        return Ok(Opened::Refused(d.status, d.body));
    };
    let mut tx = pool.begin().await?;
    let ins = sqlx::query(
        "INSERT INTO accounts (account_id, name, shares, biz_day, base_shares, day_in, day_out, \
         instant_out, prev_day, prev_earning) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(r.id)
    .bind(name)
    .bind_position(p)
    .execute(&mut *tx)
    .await;
    match ins {
        Ok(_) => {}
        Err(e) if db::error_number(&e) == Some(1062) => {
            tx.rollback().await?;
            return Ok(Opened::IdTaken);
        }
        Err(e) => return Err(e),
    }
    write_moves(&mut tx, r, today).await?;
    store_outcome(&mut tx, r, &d).await?;
    tx.commit().await?;
    Ok(Opened::Created(d.body))
}

/// Binds the stored columns of a [`Position`] in the order `accounts` lists them after `name`:
/// shares, biz_day, base_shares, day_in, day_out, instant_out, prev_day, prev_earning (the
/// UPDATE and the INSERT of an account both write these eight).
trait BindPosition<'q> {
    fn bind_position(self, p: &'q Position) -> Self;
}

impl<'q> BindPosition<'q> for Query<'q, MySql, MySqlArguments> {
    fn bind_position(self, p: &'q Position) -> Self {
        self.bind(p.shares)
            .bind(p.day)
            .bind(p.base_shares)
            .bind(p.day_in)
            .bind(p.day_out)
            .bind(p.instant_out)
            .bind(p.prev_day)
            .bind(p.prev_earning)
    }
}
