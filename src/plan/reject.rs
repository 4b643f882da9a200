//! Refusals. A refused statement gets MySQL error 1235 (ER_NOT_SUPPORTED_YET, SQLSTATE 42000)
//! with a message that says what was refused and why, so the application developer can rewrite
//! the statement. The planner refuses whatever it cannot execute exactly: a refusal is
//! acceptable, a wrong answer never is.

use super::Plan;

/// ER_NOT_SUPPORTED_YET.
pub const ER_NOT_SUPPORTED_YET: u16 = 1235;
/// ER_PARSE_ERROR, for statements the proxy's parser cannot read and cannot route blindly.
pub const ER_PARSE_ERROR: u16 = 1064;
/// ER_UNKNOWN_ERROR, used for a routing hint naming an unknown shard.
pub const ER_UNKNOWN_ERROR: u16 = 1105;

/// A 1235 refusal with `message` (prefixed so users know the proxy, not MariaDB, refused).
pub fn not_supported(message: impl AsRef<str>) -> Plan {
    Plan::Reject {
        code: ER_NOT_SUPPORTED_YET,
        sqlstate: "42000".into(),
        message: format!("shardproxy: {}", message.as_ref()),
    }
}

/// A refusal with a specific code and SQLSTATE.
pub fn error(code: u16, sqlstate: &str, message: impl AsRef<str>) -> Plan {
    Plan::Reject {
        code,
        sqlstate: sqlstate.into(),
        message: format!("shardproxy: {}", message.as_ref()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusal_carries_code_state_and_reason() {
        match not_supported("subqueries over sharded tables") {
            Plan::Reject {
                code,
                sqlstate,
                message,
            } => {
                assert_eq!(code, 1235);
                assert_eq!(sqlstate, "42000");
                assert!(message.contains("subqueries"), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }
}
