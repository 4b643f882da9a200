//! Refusals. A refused statement gets MySQL error 1235 (ER_NOT_SUPPORTED_YET, SQLSTATE 42000)
//! with a message that says what was refused and why, so the application developer can rewrite
//! the statement. The planner refuses whatever it cannot execute exactly: a refusal is
//! acceptable, a wrong answer never is.
//!
//! A refusal is a [`Rejection`] value that renders its own code, SQLSTATE and message. The
//! refusals someone acts on have their own variant (the session spells out the column list of
//! an [`Rejection::InsertWithoutColumnList`] and plans again); the long tail of "not supported:
//! <reason>" refusals carries its rendered reason, which no code inspects.

use std::fmt;

use super::Plan;

/// ER_NOT_SUPPORTED_YET.
pub const ER_NOT_SUPPORTED_YET: u16 = 1235;
/// ER_PARSE_ERROR, for statements the proxy's parser cannot read and cannot route blindly.
pub const ER_PARSE_ERROR: u16 = 1064;
/// ER_UNKNOWN_ERROR, used for a routing hint naming an unknown shard.
pub const ER_UNKNOWN_ERROR: u16 = 1105;

/// Why the planner refused a statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// A routing hint names a shard the config does not have (1105, HY000); `shards` are the
    /// configured ones, listed in the message.
    UnknownShardHint { hint: String, shards: Vec<String> },
    /// `INSERT INTO t VALUES …` into sharded table `table` without a column list, so the shard
    /// key `key` cannot be found in the rows. The session may fill the list in from the table's
    /// definition and plan again (`frontend::column_list`).
    InsertWithoutColumnList { table: String, key: String },
    /// Anything else the proxy cannot execute exactly (1235, 42000): the reason as the client
    /// reads it, without the `shardproxy: ` prefix.
    NotSupported(String),
}

impl Rejection {
    /// The MySQL error code the client gets.
    pub fn code(&self) -> u16 {
        match self {
            Rejection::UnknownShardHint { .. } => ER_UNKNOWN_ERROR,
            Rejection::InsertWithoutColumnList { .. } | Rejection::NotSupported(_) => {
                ER_NOT_SUPPORTED_YET
            }
        }
    }

    /// The SQLSTATE the client gets.
    pub fn sqlstate(&self) -> &'static str {
        match self {
            Rejection::UnknownShardHint { .. } => "HY000",
            Rejection::InsertWithoutColumnList { .. } | Rejection::NotSupported(_) => "42000",
        }
    }

    /// The error message the client gets (its `Display`).
    pub fn message(&self) -> String {
        self.to_string()
    }
}

/// The message, prefixed so users know the proxy, not MariaDB, refused.
impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("shardproxy: ")?;
        match self {
            Rejection::UnknownShardHint { hint, shards } => write!(
                f,
                "unknown shard {hint:?} in hint; shards are: {}",
                shards.join(", ")
            ),
            Rejection::InsertWithoutColumnList { table, key } => write!(
                f,
                "INSERT into sharded table {table} without a column list: list the columns so \
                 the proxy can find the shard key {key}"
            ),
            Rejection::NotSupported(reason) => f.write_str(reason),
        }
    }
}

/// A 1235 refusal for `reason`.
pub fn not_supported(reason: impl Into<String>) -> Plan {
    Plan::Reject(Rejection::NotSupported(reason.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusal_carries_code_state_and_reason() {
        match not_supported("subqueries over sharded tables") {
            Plan::Reject(r) => {
                let (code, sqlstate, message) = (r.code(), r.sqlstate(), r.message());
                assert_eq!(code, 1235);
                assert_eq!(sqlstate, "42000");
                assert!(message.contains("subqueries"), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn messages_read_as_before() {
        let r = Rejection::UnknownShardHint {
            hint: "s9".into(),
            shards: vec!["s1".into(), "s2".into()],
        };
        assert_eq!(
            (r.code(), r.sqlstate(), r.message().as_str()),
            (
                1105,
                "HY000",
                "shardproxy: unknown shard \"s9\" in hint; shards are: s1, s2"
            )
        );
        let r = Rejection::InsertWithoutColumnList {
            table: "accounts".into(),
            key: "account_id".into(),
        };
        assert_eq!(
            (r.code(), r.sqlstate(), r.message().as_str()),
            (
                1235,
                "42000",
                "shardproxy: INSERT into sharded table accounts without a column list: list the \
                 columns so the proxy can find the shard key account_id"
            )
        );
    }
}
