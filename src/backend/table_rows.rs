//! About how many rows a table holds on one server, for planning (RESHARD PLAN).
//!
//! Read from `information_schema.TABLES.TABLE_ROWS`: InnoDB's estimate, free to read however
//! large the table (an exact `COUNT(*)` would scan it). A config may name a table without its
//! database (`accounts` matches that table in any database), so the estimate sums every
//! database's table of that name, as the proxy's routing would see them.

use super::conn::{BackendConn, QueryResult};
use super::pool::Pool;
use crate::protocol::constants::DEFAULT_COLLATION;

/// A string as an SQL literal: quotes and backslashes escaped.
fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
}

/// The query that estimates the rows of `table` (`db.table` or `table`).
fn estimate_sql(table: &str) -> String {
    let filter = match table.split_once('.') {
        Some((db, t)) => format!(
            "TABLE_SCHEMA = {} AND TABLE_NAME = {}",
            literal(db),
            literal(t)
        ),
        None => format!("TABLE_NAME = {}", literal(table)),
    };
    format!("SELECT CAST(COALESCE(SUM(TABLE_ROWS), 0) AS UNSIGNED) FROM information_schema.TABLES WHERE {filter}")
}

/// InnoDB's estimate of the rows of `table` on `pool`'s server, on a connection of its own.
pub async fn approximate_rows(pool: &Pool, table: &str) -> anyhow::Result<u64> {
    // The connect error names the server already.
    let mut c = BackendConn::connect(&pool.connect_params(0, DEFAULT_COLLATION)).await?;
    let answer = c
        .query(&estimate_sql(table))
        .await
        .map_err(|e| anyhow::anyhow!("{}: {e}", pool.addr))?;
    let QueryResult::Rows(rs) = answer else {
        anyhow::bail!("{}: no rows for a row estimate", pool.addr);
    };
    let cell = rs
        .rows
        .first()
        .and_then(|r| r.first().cloned().flatten())
        .and_then(|v| String::from_utf8(v.to_vec()).ok())
        .and_then(|v| v.parse::<u64>().ok());
    cell.ok_or_else(|| anyhow::anyhow!("{}: unreadable row estimate", pool.addr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_estimate_query_quotes_names() {
        assert!(estimate_sql("fund.accounts")
            .ends_with("WHERE TABLE_SCHEMA = 'fund' AND TABLE_NAME = 'accounts'"));
        assert!(estimate_sql("o'k").ends_with("WHERE TABLE_NAME = 'o''k'"));
    }
}
