//! The HTTP JSON API (axum). Amounts travel as decimal strings; errors are
//! `{"code","message"}` with 400 (malformed), 404 (no such account), 409 (request id reused
//! with other parameters) or 422 (a fund rule says no).
//!
//! Every money-moving request is one transaction on the account's shard (`money`): lock the
//! account row and look the request id up in one statement (a retry replays the stored outcome,
//! header `idempotent-replayed: true`), apply the pure rule from `domain`, write account +
//! ledger (+ pending redemption) + request outcome, commit. Every statement carries
//! `account_id = ?`. `POST /accounts` may carry the first subscription
//! (`"initial_subscription": {"amount","request_id"}`): account and subscription are then
//! written in one transaction, and the account exists only if the subscription is accepted.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use chrono::{NaiveDate, Utc};
use rand::Rng;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::{MySqlPool, Row};

use crate::db;
use crate::domain::{self, cents, Op};
use crate::money::{self, position_from_row, MoneyReq, Opened, Outcome, TxError, A_POSITION_COLS};

/// Shared state of the server.
pub struct AppState {
    pub pool: MySqlPool,
    /// Fixed business date (tests, demos); otherwise today's UTC date.
    pub today: Option<NaiveDate>,
}

impl AppState {
    fn today(&self) -> NaiveDate {
        self.today.unwrap_or_else(|| Utc::now().date_naive())
    }
}

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }
    fn bad(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }
    pub(crate) fn not_found(id: i64) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "account_not_found",
            format!("no account {id}"),
        )
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        tracing::warn!("database error: {e}");
        let status = if db::is_transient(&e) {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::INTERNAL_SERVER_ERROR
        };
        ApiError::new(status, "database_error", e.to_string())
    }
}

impl From<domain::RuleError> for ApiError {
    fn from(e: domain::RuleError) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, e.code, e.message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        json_response(
            self.status,
            json!({"code": self.code, "message": self.message}).to_string(),
        )
    }
}

fn json_response(status: StatusCode, body: String) -> Response {
    let mut r = (status, body).into_response();
    r.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// The router with every route.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/accounts", post(create_account))
        .route("/accounts/{id}", get(get_account))
        .route("/accounts/{id}/history", get(history))
        .route("/accounts/{id}/subscribe", post(subscribe))
        .route("/accounts/{id}/redeem", post(redeem))
        .route("/accounts/{id}/pay", post(pay))
        .route("/fund/report", get(report))
        .route("/health", get(|| async { "ok" }))
        .with_state(state)
}

/// Serves the API until Ctrl-C.
pub async fn serve(pool: MySqlPool, listen: &str, today: Option<NaiveDate>) -> anyhow::Result<()> {
    let state = Arc::new(AppState { pool, today });
    let listener = tokio::net::TcpListener::bind(listen).await?;
    tracing::info!("fund API listening on http://{}", listener.local_addr()?);
    axum::serve(listener, router(state))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

/// A new random positive 53-bit account id (never 0; safe as a JSON number).
pub fn new_account_id() -> i64 {
    rand::thread_rng().gen_range(1..(1i64 << 53))
}

fn parse_id(s: &str) -> Result<i64, ApiError> {
    match s.parse::<i64>() {
        Ok(id) if id > 0 => Ok(id),
        _ => Err(ApiError::bad(
            "invalid_account_id",
            format!("not an account id: {s:?}"),
        )),
    }
}

fn parse_body<T: for<'de> Deserialize<'de>>(body: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::bad("invalid_json", e.to_string()))
}

fn check_request_id(r: &str) -> Result<(), ApiError> {
    if r.is_empty() || r.len() > 64 || !r.chars().all(|c| c.is_ascii_graphic()) {
        return Err(ApiError::bad(
            "invalid_request_id",
            "request_id must be 1-64 printable ASCII characters",
        ));
    }
    Ok(())
}

#[derive(Deserialize)]
struct CreateAccount {
    name: String,
    /// The first subscription, written in the same transaction as the account.
    #[serde(default)]
    initial_subscription: Option<InitialSubscription>,
}

#[derive(Deserialize)]
struct InitialSubscription {
    amount: String,
    request_id: String,
}

async fn create_account(
    State(st): State<Arc<AppState>>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req: CreateAccount = parse_body(&body)?;
    let name = req.name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(ApiError::bad(
            "invalid_name",
            "name must be 1-100 characters",
        ));
    }
    let today = st.today();
    if let Some(init) = &req.initial_subscription {
        return open_with_subscription(&st, name, init).await;
    }
    for _ in 0..5 {
        let id = new_account_id();
        let r = sqlx::query("INSERT INTO accounts (account_id, name, biz_day) VALUES (?, ?, ?)")
            .bind(id)
            .bind(name)
            .bind(today)
            .execute(&st.pool)
            .await;
        match r {
            Ok(_) => {
                return Ok(json_response(
                    StatusCode::CREATED,
                    json!({"account_id": id, "name": name}).to_string(),
                ))
            }
            Err(e) if db::error_number(&e) == Some(1062) => continue, // id collision: new id
            Err(e) => return Err(e.into()),
        }
    }
    Err(id_generation_failed())
}

fn id_generation_failed() -> ApiError {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "id_generation_failed",
        "could not find a free account id",
    )
}

/// `POST /accounts` with `initial_subscription`: one transaction (`money::open_tx`); 201 with
/// `{"account_id","name","subscription":{…the subscribe answer…}}`, or the rule's 422 (and no
/// account). Transient database errors are retried with a new account id (nothing committed).
async fn open_with_subscription(
    st: &AppState,
    name: &str,
    init: &InitialSubscription,
) -> Result<Response, ApiError> {
    check_request_id(&init.request_id)?;
    let amount = domain::parse_amount(&init.amount)?;
    let fingerprint = format!("{}|{}|", Op::Subscribe.kind(), amount.normalize());
    let mut attempt = 0;
    while attempt < 5 {
        attempt += 1;
        let req = MoneyReq {
            id: new_account_id(),
            op: Op::Subscribe,
            amount,
            request_id: &init.request_id,
            merchant: None,
            fingerprint: &fingerprint,
        };
        match money::open_tx(&st.pool, st.today(), name, &req).await {
            Ok(Opened::Created(sub)) => {
                return Ok(json_response(
                    StatusCode::CREATED,
                    format!(
                        "{{\"account_id\":{},\"name\":{},\"subscription\":{sub}}}",
                        req.id,
                        serde_json::Value::from(name)
                    ),
                ))
            }
            Ok(Opened::Refused(status, body)) => return Ok(json_response(status, body)),
            Ok(Opened::IdTaken) => continue,
            Err(e) if db::is_transient(&e) && attempt < 5 => {
                tokio::time::sleep(std::time::Duration::from_millis(5 * attempt)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(id_generation_failed())
}

#[derive(Serialize)]
struct AccountView {
    account_id: i64,
    name: String,
    business_date: NaiveDate,
    balance: Decimal,
    shares: Decimal,
    earning_shares: Decimal,
    fresh_shares: Decimal,
    pending_redemptions: Decimal,
    instant_redeemed_today: Decimal,
    instant_remaining_today: Decimal,
    yesterday_income: Decimal,
    total_income: Decimal,
    settled_through: NaiveDate,
}

async fn get_account(
    State(st): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    let today = st.today();
    let yesterday = today.pred_opt().unwrap_or(today);
    // One round trip: the account, yesterday's income (at most one row: the primary key) and the
    // sum of its unpaid standard redemptions, joined on the shard key so the proxy sends it to
    // the account's shard.
    let sql = format!(
        "SELECT a.name, {A_POSITION_COLS}, a.settled_through, a.total_income, \
         MAX(i.amount) AS yincome, SUM(p.amount) AS pending \
         FROM accounts a \
         LEFT JOIN income i ON i.account_id = a.account_id AND i.income_date = ? \
         LEFT JOIN pending_redemptions p ON p.account_id = a.account_id AND p.paid_on IS NULL \
         WHERE a.account_id = ? GROUP BY a.account_id"
    );
    let Some(row) = sqlx::query(db::sql(sql))
        .bind(yesterday)
        .bind(id)
        .fetch_optional(&st.pool)
        .await?
    else {
        return Err(ApiError::not_found(id));
    };
    let pos = position_from_row(&row)?.roll(today);
    let pending: Option<Decimal> = row.try_get("pending")?;
    let yincome: Option<Decimal> = row.try_get("yincome")?;
    let view = AccountView {
        account_id: id,
        name: row.try_get("name")?,
        business_date: today,
        balance: cents(pos.shares),
        shares: cents(pos.shares),
        earning_shares: cents(pos.earning_today()),
        fresh_shares: cents(pos.day_in),
        pending_redemptions: cents(pending.unwrap_or_default()),
        instant_redeemed_today: cents(pos.instant_out),
        instant_remaining_today: cents((domain::INSTANT_CAP - pos.instant_out).max(Decimal::ZERO)),
        yesterday_income: cents(yincome.unwrap_or_default()),
        total_income: row.try_get("total_income")?,
        settled_through: row.try_get("settled_through")?,
    };
    Ok(json_response(
        StatusCode::OK,
        serde_json::to_string(&view).unwrap(),
    ))
}

#[derive(Deserialize)]
struct HistoryQuery {
    limit: Option<u32>,
}

async fn history(
    State(st): State<Arc<AppState>>,
    Path(id): Path<String>,
    Query(q): Query<HistoryQuery>,
) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    let limit = q.limit.unwrap_or(100).clamp(1, 1000) as i64;
    let exists: Option<i64> =
        sqlx::query_scalar("SELECT account_id FROM accounts WHERE account_id = ?")
            .bind(id)
            .fetch_optional(&st.pool)
            .await?;
    if exists.is_none() {
        return Err(ApiError::not_found(id));
    }
    let tx = newest_rows(&st, id, "ledger", "created_at", limit, LEDGER_FIELDS).await?;
    let inc = newest_rows(&st, id, "income", "income_date", limit, INCOME_FIELDS).await?;
    let red = newest_rows(
        &st,
        id,
        "pending_redemptions",
        "req_date",
        limit,
        REDEEM_FIELDS,
    )
    .await?;
    Ok(json_response(
        StatusCode::OK,
        json!({"account_id": id, "transactions": tx, "income": inc, "standard_redemptions": red})
            .to_string(),
    ))
}

/// How a column of [`newest_rows`] is read and shown.
#[derive(Clone, Copy)]
enum Field {
    Text,
    OptText,
    Dec,
    Date,
    OptDate,
    /// A DATETIME(6), shown as `2026-03-01T10:11:12.123456`.
    Stamp,
}

/// What the history shows of each table: (JSON name, column, how it is read).
const LEDGER_FIELDS: &[(&str, &str, Field)] = &[
    ("request_id", "request_id", Field::Text),
    ("kind", "kind", Field::Text),
    ("amount", "amount", Field::Dec),
    ("business_date", "biz_date", Field::Date),
    ("merchant", "merchant", Field::OptText),
    ("created_at", "created_at", Field::Stamp),
];
const INCOME_FIELDS: &[(&str, &str, Field)] = &[
    ("date", "income_date", Field::Date),
    ("earning_shares", "earning_shares", Field::Dec),
    ("per_10k", "per_10k", Field::Dec),
    ("amount", "amount", Field::Dec),
];
const REDEEM_FIELDS: &[(&str, &str, Field)] = &[
    ("request_id", "request_id", Field::Text),
    ("amount", "amount", Field::Dec),
    ("requested_on", "req_date", Field::Date),
    ("paid_on", "paid_on", Field::OptDate),
];

/// An account's newest rows of `table` (ordered by `order` descending, at most `limit`), each as
/// a JSON object of `fields`: (JSON name, column, how it is read).
async fn newest_rows(
    st: &AppState,
    id: i64,
    table: &str,
    order: &str,
    limit: i64,
    fields: &[(&str, &str, Field)],
) -> Result<Vec<serde_json::Value>, ApiError> {
    let columns: Vec<&str> = fields.iter().map(|f| f.1).collect();
    // LIMIT as a literal (a clamped integer): simpler for the proxy's parser than a placeholder.
    let rows = sqlx::query(db::sql(format!(
        "SELECT {} FROM {table} WHERE account_id = ? ORDER BY {order} DESC LIMIT {limit}",
        columns.join(", ")
    )))
    .bind(id)
    .fetch_all(&st.pool)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        let mut obj = serde_json::Map::new();
        for &(name, column, field) in fields {
            let v = match field {
                Field::Text => json!(r.try_get::<String, _>(column)?),
                Field::OptText => json!(r.try_get::<Option<String>, _>(column)?),
                Field::Dec => json!(r.try_get::<Decimal, _>(column)?),
                Field::Date => json!(r.try_get::<NaiveDate, _>(column)?),
                Field::OptDate => json!(r.try_get::<Option<NaiveDate>, _>(column)?),
                Field::Stamp => json!(r
                    .try_get::<chrono::NaiveDateTime, _>(column)?
                    .format("%Y-%m-%dT%H:%M:%S%.6f")
                    .to_string()),
            };
            obj.insert(name.to_string(), v);
        }
        out.push(serde_json::Value::Object(obj));
    }
    Ok(out)
}

#[derive(Deserialize)]
struct MoneyBody {
    amount: String,
    request_id: String,
    #[serde(default)]
    mode: Option<String>,
    #[serde(default)]
    merchant: Option<String>,
}

async fn subscribe(
    State(st): State<Arc<AppState>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    let b: MoneyBody = parse_body(&body)?;
    money(&st, id, Op::Subscribe, &b, None).await
}

async fn redeem(
    State(st): State<Arc<AppState>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    let b: MoneyBody = parse_body(&body)?;
    let op = match b.mode.as_deref() {
        Some("instant") => Op::RedeemInstant,
        Some("standard") => Op::RedeemStandard,
        _ => {
            return Err(ApiError::bad(
                "invalid_mode",
                "mode must be \"instant\" or \"standard\"",
            ))
        }
    };
    money(&st, id, op, &b, None).await
}

async fn pay(
    State(st): State<Arc<AppState>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    let b: MoneyBody = parse_body(&body)?;
    let merchant = b.merchant.as_deref().map(str::trim).unwrap_or("");
    if merchant.is_empty() || merchant.chars().count() > 100 {
        return Err(ApiError::bad(
            "invalid_merchant",
            "merchant must be 1-100 characters",
        ));
    }
    let merchant = merchant.to_string();
    money(&st, id, Op::Pay, &b, Some(merchant)).await
}

/// Validates, then runs the money transaction with retries on deadlocks and lost connections
/// (safe: the request id makes the retry idempotent).
async fn money(
    st: &AppState,
    id: i64,
    op: Op,
    b: &MoneyBody,
    merchant: Option<String>,
) -> Result<Response, ApiError> {
    check_request_id(&b.request_id)?;
    let amount = domain::parse_amount(&b.amount)?;
    let fingerprint = format!(
        "{}|{}|{}",
        op.kind(),
        amount.normalize(),
        merchant.as_deref().unwrap_or("")
    );
    let mut attempt = 0;
    loop {
        attempt += 1;
        let req = MoneyReq {
            id,
            op,
            amount,
            request_id: &b.request_id,
            merchant: merchant.as_deref(),
            fingerprint: &fingerprint,
        };
        match money::money_tx(&st.pool, st.today(), &req).await {
            Ok(Outcome::Done(status, body)) => return Ok(json_response(status, body)),
            Ok(Outcome::Replayed(status, body)) => {
                let mut r = json_response(status, body);
                r.headers_mut()
                    .insert("idempotent-replayed", HeaderValue::from_static("true"));
                return Ok(r);
            }
            Err(TxError::Api(e)) => return Err(e),
            Err(TxError::Db(e)) if db::is_transient(&e) && attempt < 5 => {
                tokio::time::sleep(std::time::Duration::from_millis(5 * attempt)).await;
                continue;
            }
            Err(TxError::Db(e)) => return Err(e.into()),
        }
    }
}

#[derive(Deserialize)]
struct ReportQuery {
    date: Option<NaiveDate>,
}

/// Totals across all shards, each a scatter-gather aggregate through the proxy (no key, simple
/// aggregates only).
async fn report(
    State(st): State<Arc<AppState>>,
    Query(q): Query<ReportQuery>,
) -> Result<Response, ApiError> {
    let date = q
        .date
        .unwrap_or_else(|| st.today().pred_opt().unwrap_or(st.today()));
    let a = sqlx::query(
        "SELECT COUNT(*) AS n, SUM(shares) AS s, SUM(total_income) AS ti FROM accounts",
    )
    .fetch_one(&st.pool)
    .await?;
    let i = sqlx::query(
        "SELECT COUNT(*) AS n, SUM(amount) AS s, SUM(earning_shares) AS e FROM income WHERE income_date = ?",
    )
    .bind(date)
    .fetch_one(&st.pool)
    .await?;
    let p = sqlx::query(
        "SELECT COUNT(*) AS n, SUM(amount) AS s FROM pending_redemptions WHERE paid_on IS NULL",
    )
    .fetch_one(&st.pool)
    .await?;
    let y = sqlx::query("SELECT per_10k, annual_7d FROM fund_yield WHERE yield_date = ?")
        .bind(date)
        .fetch_optional(&st.pool)
        .await?;
    let dec = |r: &sqlx::mysql::MySqlRow, c: &str| -> Result<Decimal, sqlx::Error> {
        Ok(r.try_get::<Option<Decimal>, _>(c)?
            .unwrap_or_default()
            .round_dp(2))
    };
    let body = json!({
        "date": date,
        "accounts": a.try_get::<i64, _>("n")?,
        "total_shares": dec(&a, "s")?,
        "total_assets": dec(&a, "s")?,
        "total_income_all_time": dec(&a, "ti")?,
        "income": {
            "accounts_paid": i.try_get::<i64, _>("n")?,
            "amount": dec(&i, "s")?,
            "earning_shares": dec(&i, "e")?,
        },
        "pending_standard_redemptions": {
            "count": p.try_get::<i64, _>("n")?,
            "amount": dec(&p, "s")?,
        },
        "yield": match y {
            Some(y) => json!({
                "per_10k": y.try_get::<Decimal, _>("per_10k")?,
                "annual_7d_percent": y.try_get::<Decimal, _>("annual_7d")?,
            }),
            None => serde_json::Value::Null,
        },
    });
    Ok(json_response(StatusCode::OK, body.to_string()))
}
