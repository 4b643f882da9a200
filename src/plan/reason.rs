//! Why a statement goes whole to one shard: the reason of a [`Plan::Single`](super::Plan).
//!
//! The reason is a decision, not a text: the session matches on it (a statement that names no
//! table, or reads reference tables only, may run wherever the session already holds a
//! connection), and PREVIEW prints it through its `Display` (`key = 42`, `hint shard=s2`, …).
//! Values that only matter for the text (the key route, a bound parameter) are kept as they
//! are and rendered only when someone asks: planning a point select formats nothing.

use std::fmt;

use super::route::{describe, KeyRoute};
use crate::ring::KeyValue;

/// Why a [`Plan::Single`](super::Plan) goes to its shard.
#[derive(Debug, Clone, PartialEq)]
pub enum SingleReason {
    /// A routing hint (`/* shard=s2 */`) named the shard.
    Hint(String),
    /// The WHERE clause pins the shard key to values that all live on this shard.
    Key(KeyRoute),
    /// A one-row INSERT gives the shard key `column` this value.
    InsertKey { column: String, value: KeyValue },
    /// Every row of a multi-row INSERT lands on this shard.
    AllRowsOnOneShard,
    /// A prepared statement's shard-key parameter (`index`, 0-based) is bound to `value`.
    KeyParam { index: usize, value: KeyValue },
    /// The text names no sharded or reference table (decided before parsing): the default
    /// shard, or the session's connection when the statement reads no table at all.
    NoShardedTable,
    /// A SELECT naming reference (and unlisted) tables only, decided before parsing: any
    /// shard's copy answers.
    ReferenceOnly,
    /// The same, for a SELECT the parser cannot read.
    ReferenceOnlyUnparsed,
    /// A parsed read whose text names no sharded table: the default shard's reference copy.
    ReferenceCopy,
    /// A read whose FROM holds no sharded table (the text names one elsewhere, e.g. as a
    /// column name).
    NoShardedTableInFrom,
    /// A statement with CTEs whose every table read (in the CTEs and outside them) is on this
    /// shard: sent whole, WITH clause and all ([`super::cte`]).
    CtesOnOneShard,
    /// A write or DDL on a table that is neither sharded nor reference: it lives on the
    /// default shard.
    UnshardedTable,
    /// RENAME TABLE of unsharded tables only.
    UnshardedTables,
    /// DROP of something other than a table or an index.
    NotATable,
    /// DROP INDEX without `ON table`.
    DropIndexWithoutTable,
    /// Another DDL statement form.
    Ddl,
    /// EXPLAIN of a statement that goes to one shard: that shard explains it.
    ExplainOnShard,
    /// A metadata, session or maintenance statement: the default shard answers.
    NotADataStatement,
    /// A statement any shard may answer (it reads no table, or reference tables only), sent
    /// where the session already holds a connection instead (decided by the session).
    OnHeldConnection(Box<SingleReason>),
}

impl SingleReason {
    /// A read of reference tables only, which any shard's copy answers.
    pub fn is_reference_only(&self) -> bool {
        matches!(
            self,
            SingleReason::ReferenceOnly | SingleReason::ReferenceOnlyUnparsed
        )
    }
}

impl fmt::Display for SingleReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SingleReason::Hint(shard) => write!(f, "hint shard={shard}"),
            SingleReason::Key(route) => f.write_str(&describe(route)),
            SingleReason::InsertKey { column, value } => write!(f, "{column} = {value}"),
            SingleReason::AllRowsOnOneShard => f.write_str("all rows on one shard"),
            SingleReason::KeyParam { index, value } => {
                write!(f, "shard key parameter {} = {value}", index + 1)
            }
            SingleReason::NoShardedTable => f.write_str("no sharded or reference table"),
            SingleReason::ReferenceOnly => f.write_str("reference tables only"),
            SingleReason::ReferenceOnlyUnparsed => {
                f.write_str("reference tables only (not parsed)")
            }
            SingleReason::ReferenceCopy => f.write_str("no sharded table (reference copy)"),
            SingleReason::NoShardedTableInFrom => f.write_str("no sharded table in FROM"),
            SingleReason::CtesOnOneShard => {
                f.write_str("every table the statement and its CTEs read is on this shard")
            }
            SingleReason::UnshardedTable => f.write_str("unsharded table"),
            SingleReason::UnshardedTables => f.write_str("unsharded tables"),
            SingleReason::NotATable => f.write_str("not a table"),
            SingleReason::DropIndexWithoutTable => f.write_str("DROP INDEX without table"),
            SingleReason::Ddl => f.write_str("DDL"),
            SingleReason::ExplainOnShard => f.write_str("EXPLAIN on the statement's shard"),
            SingleReason::NotADataStatement => f.write_str("not a data statement"),
            SingleReason::OnHeldConnection(inner) => {
                write!(f, "{inner}; the session's connection is on this shard")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::route::KeyAtom;

    #[test]
    fn reasons_read_as_before() {
        let key = |n: i64| KeyAtom::Value(KeyValue::from(n));
        let route = KeyRoute {
            sets: vec![vec![key(1), key(2)], vec![key(2)]],
        };
        for (reason, text) in [
            (SingleReason::Hint("s2".into()), "hint shard=s2"),
            (SingleReason::Key(route), "key IN (1, 2) AND key = 2"),
            (
                SingleReason::InsertKey {
                    column: "account_id".into(),
                    value: KeyValue::from(7i64),
                },
                "account_id = 7",
            ),
            (
                SingleReason::KeyParam {
                    index: 1,
                    value: KeyValue::from(9i64),
                },
                "shard key parameter 2 = 9",
            ),
            (
                SingleReason::ReferenceOnlyUnparsed,
                "reference tables only (not parsed)",
            ),
            (
                SingleReason::OnHeldConnection(Box::new(SingleReason::NoShardedTable)),
                "no sharded or reference table; the session's connection is on this shard",
            ),
        ] {
            assert_eq!(reason.to_string(), text);
        }
    }
}
