//! The sharding rules the planner applies, built once from the config.
//!
//! Table names are matched case-insensitively. A rule written `db.table` matches `db.table` and,
//! when the session's current database is `db`, an unqualified `table`. A rule written `table`
//! matches that table in any database.

use std::collections::HashMap;
use std::sync::Arc;

use crate::config::Config;
use crate::ring::Ring;

/// How a table is placed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TableKind {
    /// Rows spread over the ring by this key column (lowercase).
    Sharded { key: String },
    /// A full copy on every shard.
    Reference,
    /// Not in the config: lives on the default shard only.
    Unlisted,
}

/// Where a sharded table's missing keys come from (`sequence = …` in the config).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SequenceRule {
    /// Lowercase sequence name (the row in `shardproxy.sequences`).
    pub name: String,
    /// Ids reserved per block.
    pub block: u64,
}

/// One `[[sharding.tables]]` rule.
#[derive(Debug, Clone)]
struct ShardedRule {
    /// Lowercase database qualifier of the rule, if any.
    db: Option<String>,
    /// Lowercase key column.
    key: String,
    sequence: Option<SequenceRule>,
}

/// Sharding rules (see the module doc).
#[derive(Debug, Clone)]
pub struct Rules {
    /// Sharded tables: lowercase table name → their rules.
    sharded: HashMap<String, Vec<ShardedRule>>,
    /// Reference tables: lowercase table name → [optional lowercase db].
    reference: HashMap<String, Vec<Option<String>>>,
    pub default_shard: String,
    /// All shard names in config order.
    pub shards: Vec<String>,
    pub ring: Arc<Ring>,
}

fn split_name(name: &str) -> (Option<String>, String) {
    let lower = name.to_ascii_lowercase();
    match lower.split_once('.') {
        Some((db, t)) => (Some(db.to_string()), t.to_string()),
        None => (None, lower),
    }
}

impl Rules {
    pub fn from_config(config: &Config) -> Rules {
        let mut sharded: HashMap<String, Vec<ShardedRule>> = HashMap::new();
        for t in &config.sharding.tables {
            let (db, table) = split_name(&t.name);
            sharded.entry(table).or_default().push(ShardedRule {
                db,
                key: t.key.to_ascii_lowercase(),
                sequence: t.sequence_name().map(|name| SequenceRule {
                    name,
                    block: t.sequence_block(),
                }),
            });
        }
        let mut reference: HashMap<String, Vec<Option<String>>> = HashMap::new();
        for r in &config.sharding.reference_tables {
            let (db, table) = split_name(r);
            reference.entry(table).or_default().push(db);
        }
        Rules {
            sharded,
            reference,
            default_shard: config.sharding.default_shard.clone(),
            shards: config.shards.iter().map(|s| s.name.clone()).collect(),
            ring: Arc::new(Ring::from_config(config)),
        }
    }

    /// Whether a lowercase word could name a sharded or reference table (the scanner's test).
    /// These rules with `names` (lowercase, unqualified) also read as reference tables: how
    /// [`super::cte`] asks whether a query over CTEs it knows to be whole on every shard it
    /// considers goes to one shard.
    pub(crate) fn with_reference_tables(&self, names: &[String]) -> Rules {
        let mut r = self.clone();
        for n in names {
            r.reference.entry(n.clone()).or_default().push(None);
        }
        r
    }

    pub fn mentions(&self, word: &str) -> bool {
        self.sharded.contains_key(word) || self.reference.contains_key(word)
    }

    /// Whether a lowercase word could name a sharded table.
    pub fn mentions_sharded(&self, word: &str) -> bool {
        self.sharded.contains_key(word)
    }

    /// Placement of `db.table` (`db` as written, else the session's current database).
    pub fn classify(&self, db: Option<&str>, table: &str, current_db: Option<&str>) -> TableKind {
        let table = table.to_ascii_lowercase();
        if let Some(r) = self.sharded_rule(db, &table, current_db) {
            return TableKind::Sharded { key: r.key.clone() };
        }
        let db = db.or(current_db).map(|d| d.to_ascii_lowercase());
        let db_matches = |rule: &Option<String>| match rule {
            None => true,
            Some(r) => db.as_deref() == Some(r.as_str()),
        };
        if let Some(rules) = self.reference.get(&table) {
            if rules.iter().any(db_matches) {
                return TableKind::Reference;
            }
        }
        TableKind::Unlisted
    }

    /// The sequence a sharded table's missing keys come from (same matching as [`classify`]).
    ///
    /// [`classify`]: Rules::classify
    pub fn sequence(
        &self,
        db: Option<&str>,
        table: &str,
        current_db: Option<&str>,
    ) -> Option<&SequenceRule> {
        self.sharded_rule(db, &table.to_ascii_lowercase(), current_db)
            .and_then(|r| r.sequence.as_ref())
    }

    /// The rule for a lowercase table name, if it is sharded.
    fn sharded_rule(
        &self,
        db: Option<&str>,
        table: &str,
        current_db: Option<&str>,
    ) -> Option<&ShardedRule> {
        let db = db.or(current_db).map(|d| d.to_ascii_lowercase());
        self.sharded.get(table)?.iter().find(|r| match &r.db {
            None => true,
            Some(d) => db.as_deref() == Some(d.as_str()),
        })
    }

    pub fn is_shard(&self, name: &str) -> bool {
        self.shards.iter().any(|s| s == name)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The config most planner tests use: 3 shards, accounts and transactions sharded by
    /// account_id, users by name, `bank.ledger` by id, fund_yield a reference table.
    pub fn test_config(shards: usize) -> Config {
        let mut text = String::from(
            "[backend]\nuser = \"u\"\npassword = \"p\"\n[sharding]\ndefault_shard = \"s1\"\n\
             reference_tables = [\"fund_yield\", \"currencies\"]\n\
             [[sharding.tables]]\nname = \"accounts\"\nkey = \"account_id\"\n\
             [[sharding.tables]]\nname = \"transactions\"\nkey = \"Account_ID\"\n\
             [[sharding.tables]]\nname = \"users\"\nkey = \"name\"\n\
             [[sharding.tables]]\nname = \"bank.ledger\"\nkey = \"id\"\n\
             [[sharding.tables]]\nname = \"orders\"\nkey = \"order_id\"\nsequence = true\n",
        );
        for i in 1..=shards {
            text.push_str(&format!(
                "[[shards]]\nname = \"s{i}\"\nprimary = \"127.0.0.1:33{i:02}\"\n"
            ));
        }
        Config::parse(&text).unwrap()
    }

    pub fn test_rules() -> Rules {
        Rules::from_config(&test_config(3))
    }

    #[test]
    fn classify_tables() {
        let r = test_rules();
        assert_eq!(
            r.classify(None, "ACCOUNTS", None),
            TableKind::Sharded {
                key: "account_id".into()
            }
        );
        assert_eq!(
            r.classify(Some("x"), "transactions", None),
            TableKind::Sharded {
                key: "account_id".into()
            }
        );
        assert_eq!(r.classify(None, "fund_yield", None), TableKind::Reference);
        assert_eq!(r.classify(None, "other", None), TableKind::Unlisted);
        assert_eq!(r.classify(None, "ledger", None), TableKind::Unlisted);
        assert_eq!(
            r.classify(None, "ledger", Some("Bank")),
            TableKind::Sharded { key: "id".into() }
        );
        assert_eq!(
            r.classify(Some("bank"), "ledger", Some("x")),
            TableKind::Sharded { key: "id".into() }
        );
        assert!(r.mentions("fund_yield") && r.mentions("ledger") && !r.mentions("other"));
        assert_eq!(
            r.sequence(None, "Orders", None),
            Some(&SequenceRule {
                name: "orders".into(),
                block: crate::config::DEFAULT_SEQUENCE_CACHE
            })
        );
        assert_eq!(r.sequence(None, "accounts", None), None);
    }
}
