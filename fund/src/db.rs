//! Database access helpers: connecting to the proxy (or a plain MariaDB) over the MySQL wire,
//! shard-target hints, transient-error classification and SQL literal formatting.
//!
//! fund never links proxy code: everything goes through sqlx as if to one MySQL server. The only
//! proxy-specific thing is the `/* shard=NAME */` comment that sends a statement to one named
//! shard; a plain MariaDB ignores it.

use std::str::FromStr;
use std::time::Duration;

use anyhow::{Context, Result};
use chrono::NaiveDate;
use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions, MySqlSslMode};

/// Default URL: the proxy that `make up` starts.
pub const DEFAULT_DATABASE_URL: &str = "mysql://app:app@127.0.0.1:6033/fund";

/// Connects a pool of at most `max` connections.
///
/// The session setup is kept to a plain `SET NAMES …`: sqlx's default `SET sql_mode=(SELECT …)`
/// and time-zone statements are switched off so the proxy sees nothing exotic. TLS is off unless
/// the URL asks for it (`?ssl-mode=…`).
pub async fn connect(url: &str, max: u32) -> Result<MySqlPool> {
    let mut opts = MySqlConnectOptions::from_str(url)
        .with_context(|| format!("invalid database URL {url}"))?
        .pipes_as_concat(false)
        .no_engine_substitution(false)
        .timezone(None);
    if !url.contains("ssl-mode") && !url.contains("ssl_mode") {
        opts = opts.ssl_mode(MySqlSslMode::Disabled);
    }
    MySqlPoolOptions::new()
        .max_connections(max)
        .min_connections(0)
        .acquire_timeout(Duration::from_secs(30))
        .connect_with(opts)
        .await
        .with_context(|| format!("cannot connect to {}", redact(url)))
}

/// The URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let userinfo = &url[s + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{}:***{}", &url[..s + 3], user, &url[at..])
        }
        _ => url.to_string(),
    }
}

/// The comment that routes a statement to one named shard.
pub fn hint(shard: &str) -> String {
    format!("/* shard={shard} */ ")
}

/// Parses a shard list such as `s1,s2`.
pub fn parse_shards(s: &str) -> Vec<String> {
    s.split(',')
        .map(|x| x.trim().to_string())
        .filter(|x| !x.is_empty())
        .collect()
}

/// A date as an SQL literal (`'2026-11-26'`). Dates come from our own typed values only.
pub fn date_lit(d: NaiveDate) -> String {
    format!("'{}'", d.format("%Y-%m-%d"))
}

/// MySQL error number of an sqlx error, if it came from the server.
pub fn error_number(e: &sqlx::Error) -> Option<u16> {
    match e {
        sqlx::Error::Database(db) => db
            .try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>()
            .map(|m| m.number()),
        _ => None,
    }
}

/// Deadlock (1213), lock wait timeout (1205) and lost connections are worth retrying. So is
/// the proxy's 1235 "session is bound to shard … (open transaction)": the failed transaction
/// is dropped, sqlx sends ROLLBACK on that connection before its next use, which unbinds it.
/// (Seen once under load on 2026-11-26; logged so the proxy-side cause stays visible.)
pub fn is_transient(e: &sqlx::Error) -> bool {
    match error_number(e) {
        Some(1213) | Some(1205) => true,
        Some(1235) if e.to_string().contains("bound to shard") => {
            tracing::warn!("proxy says the session is still bound to another shard: {e}");
            true
        }
        Some(_) => false,
        None => matches!(
            e,
            sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::Protocol(_)
        ),
    }
}

/// Marks a statement we built ourselves (only from typed values) as safe to send.
pub fn sql(s: String) -> sqlx::AssertSqlSafe<String> {
    sqlx::AssertSqlSafe(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_password() {
        assert_eq!(
            redact("mysql://app:secret@127.0.0.1:6033/fund"),
            "mysql://app:***@127.0.0.1:6033/fund"
        );
    }

    #[test]
    fn literals() {
        assert_eq!(
            date_lit(NaiveDate::from_ymd_opt(2026, 1, 2).unwrap()),
            "'2026-01-02'"
        );
        assert_eq!(parse_shards(" s1, s2,,"), vec!["s1", "s2"]);
    }
}
