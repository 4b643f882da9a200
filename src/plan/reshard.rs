//! What a config change does to where rows live, and the plan of a resharding.
//!
//! Most config changes are safe to apply at once (a new pool size, a user, a server's address).
//! Some change where keys live: the shards of the ring, their weights, the number of virtual
//! nodes, a table's key or its sharded/reference status, the default shard. Applied at once,
//! such a change makes the proxy look for rows where they are not yet: a count over a new
//! shard fails with 1146, or worse, answers silently wrong if the table exists there empty. So
//! [`placement_changes`] lists them as typed [`PlacementChange`]s, `RELOAD CONFIG` and SIGHUP
//! refuse a config that has any (and keep the running one), and the DBA is pointed at
//! `RESHARD PLAN`, which shows what would move: a [`ReshardPlan`] (the shard pairs and their
//! share of the key space from [`crate::ring::Ring::moves_to`], about how many rows of each
//! table, the steps).
//!
//! Everything here is pure: the callers count rows on the shards and hand the counts in.

use std::fmt;

use crate::config::Config;
use crate::ring::moves::Move;
use crate::ring::Ring;

/// One change between two configs that moves rows between shards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlacementChange {
    /// A shard joins the ring: part of every other shard's keys belongs to it.
    ShardAdded(String),
    /// A shard leaves the ring: all its keys belong to others.
    ShardRemoved(String),
    /// A shard's weight changes its share of the ring.
    WeightChanged {
        /// The shard.
        shard: String,
        /// Old weight.
        from: u32,
        /// New weight.
        to: u32,
    },
    /// `[ring] vnodes` changes every shard's virtual nodes.
    VnodesChanged {
        /// Old number of virtual nodes per unit of weight.
        from: u32,
        /// New number.
        to: u32,
    },
    /// A table becomes sharded: its rows, today on the default shard, spread over the ring.
    TableSharded {
        /// The table as the config names it.
        table: String,
        /// Its new key column.
        key: String,
    },
    /// A sharded table stops being sharded: its rows gather on the default shard.
    TableUnsharded(String),
    /// A sharded table's key column changes: every row's place is computed anew.
    KeyChanged {
        /// The table as the config names it.
        table: String,
        /// Old key column.
        from: String,
        /// New key column.
        to: String,
    },
    /// A table becomes a reference table: a full copy must be on every shard.
    ReferenceAdded(String),
    /// A reference table stops being one: only the default shard's copy is used.
    ReferenceRemoved(String),
    /// The default shard changes: unlisted tables and the sequences' table live there.
    DefaultShardChanged {
        /// Old default shard.
        from: String,
        /// New default shard.
        to: String,
    },
}

impl fmt::Display for PlacementChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ShardAdded(s) => write!(f, "shard {s} joins the ring (part of every shard's keys moves to it)"),
            Self::ShardRemoved(s) => write!(f, "shard {s} leaves the ring (all its keys move to the others)"),
            Self::WeightChanged { shard, from, to } => {
                write!(f, "shard {shard}'s weight changes from {from} to {to}")
            }
            Self::VnodesChanged { from, to } => {
                write!(f, "ring.vnodes changes from {from} to {to} (every shard's virtual nodes move)")
            }
            Self::TableSharded { table, key } => {
                write!(f, "table {table} becomes sharded by {key} (its rows leave the default shard)")
            }
            Self::TableUnsharded(t) => {
                write!(f, "table {t} stops being sharded (its rows must gather on the default shard)")
            }
            Self::KeyChanged { table, from, to } => {
                write!(f, "table {table}'s key changes from {from} to {to} (every row is placed anew)")
            }
            Self::ReferenceAdded(t) => {
                write!(f, "table {t} becomes a reference table (a full copy must be on every shard)")
            }
            Self::ReferenceRemoved(t) => write!(f, "table {t} stops being a reference table"),
            Self::DefaultShardChanged { from, to } => write!(
                f,
                "the default shard changes from {from} to {to} (unlisted tables and the sequences move)"
            ),
        }
    }
}

/// Every change from `old` to `new` that moves rows, in a fixed order (shards, ring, tables,
/// default shard). Empty when every row stays where it is.
pub fn placement_changes(old: &Config, new: &Config) -> Vec<PlacementChange> {
    let mut out = Vec::new();
    let has = |c: &Config, name: &str| c.shards.iter().any(|s| s.name == name);
    for s in &new.shards {
        match old.shards.iter().find(|o| o.name == s.name) {
            None => out.push(PlacementChange::ShardAdded(s.name.clone())),
            Some(o) if o.weight != s.weight => out.push(PlacementChange::WeightChanged {
                shard: s.name.clone(),
                from: o.weight,
                to: s.weight,
            }),
            Some(_) => {}
        }
    }
    for o in &old.shards {
        if !has(new, &o.name) {
            out.push(PlacementChange::ShardRemoved(o.name.clone()));
        }
    }
    if old.ring.vnodes != new.ring.vnodes {
        out.push(PlacementChange::VnodesChanged {
            from: old.ring.vnodes,
            to: new.ring.vnodes,
        });
    }
    let same = |a: &str, b: &str| a.eq_ignore_ascii_case(b);
    for t in &new.sharding.tables {
        match old.sharding.tables.iter().find(|o| same(&o.name, &t.name)) {
            None => out.push(PlacementChange::TableSharded {
                table: t.name.clone(),
                key: t.key.clone(),
            }),
            Some(o) if !same(&o.key, &t.key) => out.push(PlacementChange::KeyChanged {
                table: t.name.clone(),
                from: o.key.clone(),
                to: t.key.clone(),
            }),
            Some(_) => {}
        }
    }
    for o in &old.sharding.tables {
        if !new.sharding.tables.iter().any(|t| same(&o.name, &t.name)) {
            out.push(PlacementChange::TableUnsharded(o.name.clone()));
        }
    }
    let refs = |c: &Config, t: &str| c.sharding.reference_tables.iter().any(|r| same(r, t));
    for r in &new.sharding.reference_tables {
        if !refs(old, r) {
            out.push(PlacementChange::ReferenceAdded(r.clone()));
        }
    }
    for r in &old.sharding.reference_tables {
        if !refs(new, r) {
            out.push(PlacementChange::ReferenceRemoved(r.clone()));
        }
    }
    if old.sharding.default_shard != new.sharding.default_shard {
        out.push(PlacementChange::DefaultShardChanged {
            from: old.sharding.default_shard.clone(),
            to: new.sharding.default_shard.clone(),
        });
    }
    out
}

/// The refusal of a reload whose config moves rows: names every change and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MovesData(pub Vec<PlacementChange>);

impl fmt::Display for MovesData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        write!(
            f,
            "the new config moves rows between shards, which a reload cannot do: {}. The running \
             config stays. See what would move with RESHARD PLAN '<new config file>' on the admin \
             port (or: shardproxy reshard plan --from <running config> --to <new config>), and \
             move the rows online with RESHARD START '<new config file>'",
            list.join("; ")
        )
    }
}

/// Rows of one sharded table that move from one shard to another.
#[derive(Debug, Clone, PartialEq)]
pub struct TableMove {
    /// The table as the config names it.
    pub table: String,
    /// Source shard (old ring).
    pub from: String,
    /// Target shard (new ring).
    pub to: String,
    /// Fraction of the source's rows expected to move (its share of the source's keys).
    pub share_of_source: f64,
    /// Rows the source holds, when counted.
    pub rows_on_source: Option<u64>,
}

impl TableMove {
    /// About how many rows move: the source's rows times the moving share of its keys.
    pub fn rows_estimate(&self) -> Option<u64> {
        self.rows_on_source
            .map(|n| (n as f64 * self.share_of_source).round() as u64)
    }
}

/// What a resharding from one config to another would do (shown by `RESHARD PLAN`).
#[derive(Debug, Clone, PartialEq)]
pub struct ReshardPlan {
    /// The changes that move rows (empty: nothing to do).
    pub changes: Vec<PlacementChange>,
    /// Shard pairs of the ring and the key space that moves between them.
    pub moves: Vec<Move>,
    /// Per sharded table of the new config and per moving pair: the rows that move.
    pub tables: Vec<TableMove>,
    /// Shards of the new config that are not in the old one: they get the schema first.
    pub new_shards: Vec<String>,
    /// Reference tables of the new config: copied whole onto every new shard.
    pub reference_tables: Vec<String>,
}

impl ReshardPlan {
    /// The plan from `old` to `new`, with no row counts yet ([`ReshardPlan::set_rows`]).
    pub fn new(old: &Config, new: &Config) -> ReshardPlan {
        let changes = placement_changes(old, new);
        let moves = Ring::from_config(old).moves_to(&Ring::from_config(new));
        let mut tables = Vec::new();
        for t in &new.sharding.tables {
            // A table whose key changes, or that was not sharded, moves whole rows by rules
            // other than the ring's arcs: listed in `changes`, not estimated here.
            let moved_by_ring = old.sharding.tables.iter().any(|o| {
                o.name.eq_ignore_ascii_case(&t.name) && o.key.eq_ignore_ascii_case(&t.key)
            });
            if !moved_by_ring {
                continue;
            }
            for m in &moves {
                tables.push(TableMove {
                    table: t.name.clone(),
                    from: m.from.clone(),
                    to: m.to.clone(),
                    share_of_source: m.share_of_source,
                    rows_on_source: None,
                });
            }
        }
        let new_shards = new
            .shards
            .iter()
            .filter(|s| !old.shards.iter().any(|o| o.name == s.name))
            .map(|s| s.name.clone())
            .collect();
        ReshardPlan {
            changes,
            moves,
            tables,
            new_shards,
            reference_tables: new.sharding.reference_tables.clone(),
        }
    }

    /// The (table, source shard) pairs whose rows a caller should count.
    pub fn to_count(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = self
            .tables
            .iter()
            .map(|t| (t.table.clone(), t.from.clone()))
            .collect();
        out.dedup();
        out
    }

    /// Records that `shard` holds `rows` rows of `table`.
    pub fn set_rows(&mut self, table: &str, shard: &str, rows: u64) {
        for t in &mut self.tables {
            if t.table == table && t.from == shard {
                t.rows_on_source = Some(rows);
            }
        }
    }

    /// The plan as `(section, detail)` lines: what changes, what moves, the steps.
    pub fn lines(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        if self.changes.is_empty() {
            out.push((
                "result".into(),
                "no row moves: RELOAD CONFIG can apply this config".into(),
            ));
            return out;
        }
        for c in &self.changes {
            out.push(("change".into(), c.to_string()));
        }
        for m in &self.moves {
            out.push((
                "ring".into(),
                format!(
                    "{} -> {}: {:.1} % of the key space ({:.1} % of {}'s keys) in {} arcs",
                    m.from,
                    m.to,
                    m.share * 100.0,
                    m.share_of_source * 100.0,
                    m.from,
                    m.arcs.len()
                ),
            ));
        }
        for t in &self.tables {
            let rows = match (t.rows_estimate(), t.rows_on_source) {
                (Some(est), Some(all)) => format!("about {est} of its {all} rows"),
                _ => "rows not counted".into(),
            };
            out.push((
                "table".into(),
                format!("{} {} -> {}: {rows}", t.table, t.from, t.to),
            ));
        }
        for (i, step) in self.steps().iter().enumerate() {
            out.push(("step".into(), format!("{}. {step}", i + 1)));
        }
        out.push((
            "note".into(),
            "RESHARD START '<file>' runs these steps online (docs/resharding.md)".into(),
        ));
        out
    }

    /// The steps an online move takes, in order.
    pub fn steps(&self) -> Vec<String> {
        let mut steps = Vec::new();
        if !self.new_shards.is_empty() {
            let refs = if self.reference_tables.is_empty() {
                String::new()
            } else {
                format!(
                    "; copy the reference tables ({}) whole",
                    self.reference_tables.join(", ")
                )
            };
            steps.push(format!(
                "create the schema of every sharded and reference table and of shardproxy.sequences on {}{refs}",
                self.new_shards.join(", ")
            ));
        }
        steps.extend(
            [
                "copy the moving rows in batches from a consistent snapshot of each source, throttled",
                "catch up: apply every change made on the sources since the snapshot (trigger change log)",
                "verify: row counts and checksums of each moved range agree on source and target",
                "cut over: pause writes to the moving keys (bounded), apply the last changes, switch the ring",
                "clean up on request: delete the moved rows from their old shards",
            ]
            .map(String::from),
        );
        steps
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
        [backend]
        user = "app"
        password = "app"
        [[shards]]
        name = "s1"
        primary = "127.0.0.1:3311"
        [[shards]]
        name = "s2"
        primary = "127.0.0.1:3321"
        [sharding]
        default_shard = "s1"
        reference_tables = ["fund.products"]
        [[sharding.tables]]
        name = "fund.accounts"
        key = "account_id"
    "#;

    const S3: &str = "\n[[shards]]\nname = \"s3\"\nprimary = \"127.0.0.1:3331\"\n";

    fn cfg(text: &str) -> Config {
        Config::parse(text).unwrap()
    }

    /// BASE with s3 added: the shard goes before `[sharding]` so TOML keeps it in `shards`.
    fn with_s3() -> String {
        BASE.replace("        [sharding]", &format!("{S3}        [sharding]"))
    }

    #[test]
    fn safe_changes_move_nothing() {
        let new = BASE
            .replace("127.0.0.1:3321", "127.0.0.1:3322")
            .replace("password = \"app\"", "password = \"other\"");
        assert!(placement_changes(&cfg(BASE), &cfg(&new)).is_empty());
        let plan = ReshardPlan::new(&cfg(BASE), &cfg(&new));
        assert!(plan.moves.is_empty() && plan.tables.is_empty());
        assert_eq!(plan.lines().len(), 1);
    }

    #[test]
    fn every_kind_of_move_is_named() {
        let old = cfg(BASE);
        assert_eq!(
            placement_changes(&old, &cfg(&with_s3())),
            vec![PlacementChange::ShardAdded("s3".into())]
        );
        let weight = BASE.replace(
            "primary = \"127.0.0.1:3321\"",
            "primary = \"127.0.0.1:3321\"\nweight = 2",
        );
        assert!(matches!(
            placement_changes(&old, &cfg(&weight))[..],
            [PlacementChange::WeightChanged { from: 1, to: 2, .. }]
        ));
        let key = BASE.replace("key = \"account_id\"", "key = \"owner\"");
        assert!(matches!(
            &placement_changes(&old, &cfg(&key))[..],
            [PlacementChange::KeyChanged { .. }]
        ));
        let unref = BASE.replace("reference_tables = [\"fund.products\"]", "");
        assert_eq!(
            placement_changes(&old, &cfg(&unref)),
            vec![PlacementChange::ReferenceRemoved("fund.products".into())]
        );
        let default = BASE.replace("default_shard = \"s1\"", "default_shard = \"s2\"");
        assert!(placement_changes(&old, &cfg(&default))[0]
            .to_string()
            .contains("default shard changes from s1 to s2"));
        let refusal = MovesData(placement_changes(&old, &cfg(&with_s3()))).to_string();
        assert!(refusal.contains("shard s3 joins the ring"), "{refusal}");
        assert!(refusal.contains("RESHARD PLAN"), "{refusal}");
        // Removing s3 again names it.
        assert_eq!(
            placement_changes(&cfg(&with_s3()), &old),
            vec![PlacementChange::ShardRemoved("s3".into())]
        );
    }

    #[test]
    fn a_plan_estimates_rows_per_table_and_pair() {
        let mut plan = ReshardPlan::new(&cfg(BASE), &cfg(&with_s3()));
        assert_eq!(plan.new_shards, vec!["s3".to_string()]);
        assert_eq!(
            plan.to_count(),
            vec![
                ("fund.accounts".to_string(), "s1".to_string()),
                ("fund.accounts".to_string(), "s2".to_string())
            ]
        );
        plan.set_rows("fund.accounts", "s1", 3000);
        let s1 = plan.tables.iter().find(|t| t.from == "s1").unwrap();
        let est = s1.rows_estimate().unwrap();
        assert!((800..1200).contains(&est), "about a third of 3000: {est}");
        let lines = plan.lines();
        let text: Vec<String> = lines.iter().map(|(a, b)| format!("{a}: {b}")).collect();
        assert!(
            text.iter().any(|l| l.starts_with("ring: s1 -> s3:")),
            "{text:?}"
        );
        assert!(
            text.iter()
                .any(|l| l.starts_with("table: fund.accounts s1 -> s3: about ")),
            "{text:?}"
        );
        assert!(
            text.iter().any(
                |l| l.contains("table fund.accounts s2 -> s3: rows not counted")
                    || l.contains("fund.accounts s2 -> s3: rows not counted")
            ),
            "{text:?}"
        );
        assert!(
            text.iter()
                .any(|l| l.starts_with("step: 1. create the schema") && l.contains("s3")),
            "{text:?}"
        );
    }
}
