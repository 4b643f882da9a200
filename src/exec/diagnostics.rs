//! The record of what one server would report about a statement the proxy ran on several
//! shards: its row count, what `FOUND_ROWS()` answers, and every shard's warnings and errors.
//! The executor builds it from the legs ([`super::scatter`], [`super::write`]); the session
//! keeps it for the next statement, and [`crate::frontend::diagnostics`] answers
//! `ROW_COUNT()`, `SHOW WARNINGS` … from it.

use crate::protocol::packets::ErrInfo;

/// One condition, as `SHOW WARNINGS` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    /// `Note`, `Warning` or `Error`.
    pub level: String,
    /// The MySQL error code.
    pub code: u16,
    /// The message as the server worded it.
    pub message: String,
}

/// What `FOUND_ROWS()` answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FoundRows {
    /// The rows the proxy sent.
    Known(u64),
    /// Not known: refused (after a write, MariaDB reports the row count of the SELECT before
    /// it, which the proxy does not track).
    Unknown,
    /// Left in the statement for the backend to answer, as for any single-shard statement.
    Backend,
}

/// What one MariaDB would report about the statement the proxy just ran on several shards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostics {
    /// What `ROW_COUNT()` answers: affected rows, -1 after a result set or an error.
    pub row_count: i64,
    /// What `FOUND_ROWS()` answers.
    pub found_rows: FoundRows,
    /// Every shard's conditions, in shard order.
    pub conditions: Vec<Condition>,
    /// The summed warning counts (may exceed `conditions` when a shard listed only its first
    /// `max_error_count`).
    pub warning_count: u64,
}

impl Diagnostics {
    /// After a multi-shard statement failed with `e` (what the client was sent): the
    /// conditions the shards listed, then the error.
    pub fn failed(mut conditions: Vec<Condition>, e: &ErrInfo) -> Diagnostics {
        conditions.push(Condition {
            level: "Error".into(),
            code: e.code,
            message: e.message.clone(),
        });
        Diagnostics {
            row_count: -1,
            found_rows: FoundRows::Unknown,
            warning_count: conditions.len() as u64,
            conditions,
        }
    }

    /// What `@@error_count` answers.
    pub fn error_count(&self) -> u64 {
        self.conditions
            .iter()
            .filter(|c| c.level == "Error")
            .count() as u64
    }

    /// After a statement the proxy answered from these diagnostics: it was a SELECT or SHOW,
    /// so ROW_COUNT() is -1 and the row count of that answer is not tracked.
    pub fn after_answer(mut self) -> Diagnostics {
        self.row_count = -1;
        if self.found_rows != FoundRows::Backend {
            self.found_rows = FoundRows::Unknown;
        }
        self
    }

    /// After a single-shard statement that left no warning or error and whose connection went
    /// back to the pool (one that left warnings, or kept earlier ones by using no table, keeps
    /// its connection): nothing to list; ROW_COUNT() -1 after a result set, else the affected
    /// rows; FOUND_ROWS() the rows of that result set, or, after a statement without one,
    /// left to the backend (MariaDB answers about the SELECT before it). Asking the pool
    /// instead could reach a connection that last ran another session's statement.
    pub fn after_released(result_set: bool, affected_rows: u64, rows: u64) -> Diagnostics {
        Diagnostics {
            row_count: if result_set {
                -1
            } else {
                i64::try_from(affected_rows).unwrap_or(i64::MAX)
            },
            found_rows: if result_set {
                FoundRows::Known(rows)
            } else {
                FoundRows::Backend
            },
            conditions: Vec::new(),
            warning_count: 0,
        }
    }
}
