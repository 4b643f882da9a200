//! INSERTs whose shard key comes from a global sequence (`sequence = true` on a sharded table).
//!
//! A sharded table cannot use AUTO_INCREMENT for its key: every shard would count on its own,
//! ids would collide across shards, and the proxy would not know a row's shard before the
//! server picked its id. Instead, when an INSERT into a table declared with a sequence does not
//! give the key, the proxy allocates the ids itself from a global sequence (see
//! [`crate::sequence`]: blocks reserved in a table on the default shard, so several proxies
//! never hand out the same id) and then places each row by its id like any INSERT with a key.
//!
//! # Which rows get an id
//! A row gets the next id when its key is *generated* by MariaDB's AUTO_INCREMENT rules:
//! - the key column is not in the column list (or the `SET` assignments);
//! - its value is `NULL` or `DEFAULT`;
//! - its value is the literal `0`, unless the session's `sql_mode` has NO_AUTO_VALUE_ON_ZERO
//!   (decided at execution, from the session's state: see [`SequenceInsert::render`]).
//!
//! Rows with an explicit key keep it and are placed by it. The generated ids of one statement
//! are consecutive, in row order, and the first one is the statement's `LAST_INSERT_ID()`, as
//! with InnoDB.
//!
//! # Rewriting
//! Like [`super::insert_split`], the statement is spliced from the client's original text,
//! never re-rendered from the AST: the key column is added at the head of the column list (or
//! of the `SET` list) and each generated row gets its id as a literal at the head of its
//! parentheses (or in place of its `NULL` / `DEFAULT` / `0`). The plan keeps the text around
//! each id slot; the ids are filled in at execution, then rows are grouped per shard.
//!
//! Refused: `VALUES ROW(…)` with several rows (the splice joins rows with plain commas), and
//! everything [`super::insert_split`] refuses.

use std::fmt::Write as _;

use super::rules::{Rules, SequenceRule};
use super::ShardSql;
use crate::ring::KeyValue;

/// A planned INSERT with ids to fill in from a sequence.
#[derive(Debug, Clone, PartialEq)]
pub struct SequenceInsert {
    pub sequence: SequenceRule,
    /// The table as the statement spells it: where the sequence's first value is derived
    /// from when it does not exist yet. `db` is the qualifier as written, if any.
    pub db: Option<String>,
    pub table: String,
    /// The key column (lowercase).
    pub key: String,
    /// Text before the first row (with the key column added to the column list if needed).
    pub(crate) prefix: String,
    pub(crate) rows: Vec<RowTemplate>,
    /// Text after the last row (`ON DUPLICATE KEY UPDATE …`), kept for every shard.
    pub(crate) suffix: String,
    /// An id slot holds a `?` placeholder (a prepared statement's key bound to NULL or 0 runs
    /// as text with the value in place; in a text query a `?` is a syntax error).
    pub placeholder_slot: bool,
}

/// One row of a [`SequenceInsert`].
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum RowTemplate {
    /// The row gives its key: placed by it, text untouched.
    Explicit { text: String, key: KeyValue },
    /// The row's id goes between `before` and `after`. `zero` holds the original text when the
    /// row gave the literal 0, which generates an id only without NO_AUTO_VALUE_ON_ZERO.
    Generated {
        before: String,
        after: String,
        zero: Option<String>,
    },
}

impl RowTemplate {
    fn generates(&self, zero_key: ZeroKey) -> bool {
        match self {
            RowTemplate::Explicit { .. } => false,
            RowTemplate::Generated { zero, .. } => {
                zero.is_none() || zero_key == ZeroKey::GeneratesId
            }
        }
    }
}

impl SequenceInsert {
    /// How many ids the statement needs.
    pub fn ids_needed(&self, zero_key: ZeroKey) -> u64 {
        self.rows.iter().filter(|r| r.generates(zero_key)).count() as u64
    }

    /// The SQL per shard once ids `first, first + 1, …` are allocated (one per generated row,
    /// in row order), grouped in the rules' shard order. `zero_key`: what a key of 0 means in the
    /// session's sql_mode ([`zero_generates`]).
    /// sql_mode lacks NO_AUTO_VALUE_ON_ZERO, so a key of 0 means "generate".
    pub fn render(&self, first: u64, rules: &Rules, zero_key: ZeroKey) -> Vec<ShardSql> {
        let mut next = first;
        let mut placed: Vec<(String, String)> = Vec::with_capacity(self.rows.len());
        for row in &self.rows {
            let (key, text) = match row {
                RowTemplate::Explicit { text, key } => (key.clone(), text.clone()),
                RowTemplate::Generated {
                    before,
                    after,
                    zero,
                } => match zero {
                    Some(z) if zero_key == ZeroKey::StaysZero => {
                        (KeyValue::from(0i64), format!("{before}{z}{after}"))
                    }
                    _ => {
                        let id = next;
                        next += 1;
                        (KeyValue::from(id), format!("{before}{id}{after}"))
                    }
                },
            };
            placed.push((rules.ring.shard_for(&key).to_string(), text));
        }
        rules
            .shards
            .iter()
            .filter_map(|shard| {
                let rows: Vec<&str> = placed
                    .iter()
                    .filter(|(s, _)| s == shard)
                    .map(|(_, t)| t.as_str())
                    .collect();
                (!rows.is_empty()).then(|| ShardSql {
                    shard: shard.clone(),
                    sql: format!("{}{}{}", self.prefix, rows.join(", "), self.suffix),
                })
            })
            .collect()
    }

    /// The statement with a marker in each id slot (what PREVIEW shows).
    pub fn template(&self) -> String {
        let mut s = self.prefix.clone();
        for (i, row) in self.rows.iter().enumerate() {
            if i > 0 {
                s.push_str(", ");
            }
            match row {
                RowTemplate::Explicit { text, .. } => s.push_str(text),
                RowTemplate::Generated { before, after, .. } => {
                    let _ = write!(s, "{before}<next id>{after}");
                }
            }
        }
        s.push_str(&self.suffix);
        s
    }

    /// PREVIEW's note: where the ids come from and how rows are placed.
    pub fn note(&self) -> String {
        format!(
            "key {} from global sequence '{}' (blocks of {} ids reserved in \
             shardproxy.sequences on the default shard); {} of {} rows get consecutive ids, \
             each row goes to its id's shard",
            self.key,
            self.sequence.name,
            self.sequence.block,
            self.ids_needed(ZeroKey::GeneratesId),
            self.rows.len()
        )
    }
}

/// What a shard key of 0 in the INSERT means for a table whose keys come from a sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZeroKey {
    /// 0 generates an id, as NULL does (the server's default sql_mode).
    GeneratesId,
    /// 0 is stored as 0 (sql_mode has NO_AUTO_VALUE_ON_ZERO).
    StaysZero,
}

/// What a key of 0 generates in this sql_mode (MariaDB's NO_AUTO_VALUE_ON_ZERO). `sql_mode` is
/// the session's assignment text (`sql_mode = '…'`) if it set one; without it the server's
/// default applies, which does not have the flag.
pub fn zero_generates(sql_mode: Option<&str>) -> ZeroKey {
    if sql_mode.is_some_and(|m| m.to_ascii_uppercase().contains("NO_AUTO_VALUE_ON_ZERO")) {
        ZeroKey::StaysZero
    } else {
        ZeroKey::GeneratesId
    }
}

#[cfg(test)]
mod tests {
    use super::ZeroKey::{GeneratesId, StaysZero};
    use crate::plan::testutil::*;
    use crate::plan::Plan;

    fn seq(sql: &str) -> crate::plan::SequenceInsert {
        match plan_with(sql, &rules(3)) {
            Plan::Sequence(s) => s,
            other => panic!("{sql}: {other:?}"),
        }
    }

    #[test]
    fn omitted_key_is_added_to_columns_and_rows() {
        let r = rules(3);
        let s = seq("INSERT INTO orders (note, qty) VALUES ('a, (b)', 1), ('é', 2)");
        assert_eq!(s.ids_needed(GeneratesId), 2);
        assert_eq!(s.sequence.name, "orders");
        assert_eq!(
            s.template(),
            "INSERT INTO orders (`order_id`, note, qty) VALUES (<next id>, 'a, (b)', 1), (<next id>, 'é', 2)"
        );
        let targets = s.render(41, &r, GeneratesId);
        let all: Vec<String> = targets.iter().map(|t| t.sql.clone()).collect();
        let (a, b) = (shard_of(&r, 41), shard_of(&r, 42));
        if a == b {
            assert_eq!(
                all,
                vec!["INSERT INTO orders (`order_id`, note, qty) VALUES (41, 'a, (b)', 1), (42, 'é', 2)"]
            );
        } else {
            assert_eq!(targets.len(), 2);
            let t41 = targets.iter().find(|t| t.shard == a).unwrap();
            assert_eq!(
                t41.sql,
                "INSERT INTO orders (`order_id`, note, qty) VALUES (41, 'a, (b)', 1)"
            );
        }
    }

    #[test]
    fn null_default_and_zero_keys_are_generated_explicit_keys_kept() {
        let r = rules(3);
        let s = seq(
            "INSERT INTO orders (note, order_id) VALUES ('a', NULL), ('b', 77), ('c', DEFAULT), ('d', 0) ON DUPLICATE KEY UPDATE note = VALUES(note)",
        );
        assert_eq!(s.ids_needed(GeneratesId), 3);
        assert_eq!(s.ids_needed(StaysZero), 2);
        let sqls: Vec<String> = s
            .render(5, &r, GeneratesId)
            .into_iter()
            .map(|t| t.sql)
            .collect();
        let joined = sqls.join(" | ");
        for row in ["('a', 5)", "('b', 77)", "('c', 6)", "('d', 7)"] {
            assert!(joined.contains(row), "{row} missing in {joined}");
        }
        assert!(sqls
            .iter()
            .all(|s| s.ends_with(" ON DUPLICATE KEY UPDATE note = VALUES(note)")));
        // With NO_AUTO_VALUE_ON_ZERO the 0 stays, and is placed by 0.
        let t = s.render(5, &r, StaysZero);
        let zero = t.iter().find(|t| t.sql.contains("('d', 0)")).unwrap();
        assert_eq!(zero.shard, shard_of(&r, 0));
    }

    #[test]
    fn set_form_gets_the_key_assignment() {
        let r = rules(3);
        let s = seq("INSERT INTO orders SET note = 'x', qty = 2");
        assert_eq!(
            s.template(),
            "INSERT INTO orders SET `order_id` = <next id>, note = 'x', qty = 2"
        );
        let s = seq("INSERT INTO `orders` SET `order_id` = NULL, note = 'x'");
        let t = s.render(9, &r, GeneratesId);
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].shard, shard_of(&r, 9));
        assert_eq!(
            t[0].sql,
            "INSERT INTO `orders` SET `order_id` = 9, note = 'x'"
        );
    }

    #[test]
    fn rows_with_only_explicit_keys_route_as_usual() {
        let r = rules(3);
        let p = plan_with("INSERT INTO orders (order_id, note) VALUES (12, 'x')", &r);
        assert_eq!(expect_single(&p), shard_of(&r, 12));
    }

    #[test]
    fn refusals_still_apply() {
        let r = rules(3);
        expect_reject(
            &plan_with("INSERT INTO orders VALUES (1, 'x')", &r),
            "column list",
        );
        expect_reject(
            &plan_with("INSERT INTO orders (note) SELECT note FROM other", &r),
            "SELECT",
        );
        expect_reject(
            &plan_with("INSERT INTO orders (order_id) VALUES (1 + 1)", &r),
            "not an integer",
        );
        // Without a sequence, a missing key is still refused, and the message says how to
        // get one.
        expect_reject(
            &plan_with("INSERT INTO accounts (balance) VALUES (1)", &r),
            "sequence",
        );
    }

    #[test]
    fn zero_generates_follows_sql_mode() {
        assert_eq!(super::zero_generates(None), GeneratesId);
        assert_eq!(
            super::zero_generates(Some("sql_mode = 'STRICT_ALL_TABLES'")),
            GeneratesId
        );
        assert_eq!(
            super::zero_generates(Some("sql_mode = 'no_auto_value_on_zero,ANSI'")),
            StaysZero
        );
    }
}
