//! Joins of two sharded tables that do not match rows by their shard keys, executed by the
//! proxy (a [`JoinPlan`], run by `exec/join.rs`).
//!
//! # The shape
//! `SELECT … FROM orders o JOIN accounts a ON a.account_id = o.payer_id WHERE …`: the rows of
//! one `payer_id` live on every shard, so no shard can answer the join alone. The proxy runs it
//! as a *hash join with a key lookup*, the way Vitess's join primitive feeds one side's values
//! to the other:
//! 1. the **outer** side is read first, as a scatter query of its own: its select items, its
//!    join columns and sort keys, and every condition that reads only its table;
//! 2. the distinct non-NULL values of its join column are sent to the **inner** side as
//!    `WHERE inner.col IN (…)` (in batches; routed to the shard of each value when `inner.col`
//!    is the inner table's shard key, else to every shard), with the inner table's own
//!    conditions;
//! 3. the proxy pairs the rows on every join equality with MariaDB's comparison of the two
//!    columns' types (numbers by value, strings case-insensitively only when every value is
//!    printable ASCII, dates and binary strings byte for byte; other combinations are refused at
//!    execution), keeps unmatched outer rows with NULLs for a LEFT/RIGHT join, sorts by ORDER
//!    BY, applies LIMIT and picks the select list's columns.
//!
//! Every select item and sort key is computed by a shard on the one table it reads (so its name
//! and type are the server's own); every rows held by the proxy count against
//! `[sharding] max_join_rows` (error 1235 past it, naming the setting).
//!
//! # Refused (with the reason)
//! More than two tables, USING/NATURAL/CROSS joins without an equality between the two tables'
//! columns, unqualified columns (the proxy does not know which table has them), select items,
//! sort keys or conditions that read both tables other than `x.col = y.col` and, in an inner
//! join, the comparisons `x.col <> y.col`, `<`, `<=`, `>`, `>=` (AND-ed; the proxy checks them
//! on each matched pair, see [`Residual`]), and in an outer join a condition on the inner table
//! in WHERE or on the preserved table in ON.
//!
//! # Grouped joins
//! GROUP BY, HAVING, DISTINCT and the aggregates COUNT, SUM, AVG, MIN and MAX over the joined
//! rows: the joined rows are fed to the merge engine as one-row partial groups ([`grouped`]).
//! DISTINCT aggregates, GROUP_CONCAT and the other aggregates are refused there.

mod build;
mod grouped;
mod refs;
#[cfg(test)]
mod tests;

use std::fmt;

use crate::plan::spec::CompareOp;

pub(crate) use build::plan_join;
pub use grouped::Grouped;

/// One column of a side's answer: its hidden columns come first (join columns, then sort keys),
/// then one entry per select item (a `*` expands to the table's width, known at execution).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SideCol {
    /// The n-th hidden column.
    Hidden(usize),
    /// The n-th select item of this side.
    Item(usize),
}

/// The query of one table of the join.
#[derive(Debug, Clone, PartialEq)]
pub struct JoinSide {
    /// The table as written in the FROM list (`orders o`), for messages.
    pub table: String,
    /// `SELECT <hidden columns>, <items> FROM <table>`.
    pub select: String,
    /// The conditions that read only this table, AND-ed (rendered SQL).
    pub filter: Option<String>,
    /// How many hidden columns start the select list.
    pub hidden: usize,
    /// Per select item of this side: whether it is a `*` (its width known only at execution).
    pub wildcards: Vec<bool>,
    /// The shards that may hold the side's rows (narrowed when its own conditions pin its key).
    pub shards: Vec<String>,
}

impl JoinSide {
    /// The side's SQL with `extra` AND-ed to its own conditions.
    pub fn sql_with(&self, extra: Option<&str>) -> String {
        match (&self.filter, extra) {
            (None, None) => self.select.clone(),
            (Some(f), None) => format!("{} WHERE {f}", self.select),
            (None, Some(x)) => format!("{} WHERE {x}", self.select),
            (Some(f), Some(x)) => format!("{} WHERE {f} AND {x}", self.select),
        }
    }
}

/// How the inner side is looked up by the outer side's values.
#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    /// Index in [`JoinPlan::pairs`] of the equality whose outer values go into the IN list.
    pub pair: usize,
    /// The inner column as SQL (`a.account_id`).
    pub inner_column: String,
    /// The inner column is the inner table's shard key: each value goes to its shard only.
    pub by_key: bool,
}

/// A sort key of the joined rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JoinSort {
    /// 0: the first table of the FROM list, 1: the second.
    pub side: usize,
    /// The column of that side's answer.
    pub column: SideCol,
    pub descending: bool,
}

/// A join of two sharded tables executed by the proxy (see the module doc).
#[derive(Debug, Clone, PartialEq)]
pub struct JoinPlan {
    /// The two tables, in FROM order (the joined row is the first's columns then the second's).
    pub sides: [JoinSide; 2],
    /// Which side is read first (0 or 1); the other is looked up by its values.
    pub outer: usize,
    /// A LEFT/RIGHT join: outer rows without a match are kept, with NULLs for the inner side.
    pub keep_unmatched: bool,
    /// The join equalities: the hidden column of the first side and of the second side.
    pub pairs: Vec<[usize; 2]>,
    /// How the inner side is looked up.
    pub probe: Probe,
    /// The select list: per item, the side and that side's item.
    pub output: Vec<(usize, usize)>,
    /// ORDER BY, evaluated by the proxy over the joined rows.
    pub order_by: Vec<JoinSort>,
    /// OFFSET of the whole answer.
    pub offset: u64,
    /// LIMIT of the whole answer.
    pub limit: Option<u64>,
    /// Comparisons of a column of each table other than `=` (`o.amount < a.balance`, inner
    /// joins only), evaluated by the proxy on each matched pair (see `exec/join.rs`).
    pub residual: Vec<Residual>,
    /// The equalities as written (`a.account_id = o.payer_id`), for PREVIEW.
    pub on_text: String,
    /// GROUP BY, aggregates, HAVING or DISTINCT: the joined rows (one row's partial aggregates,
    /// see [`grouped`]) go through the merge engine. `None`: the joined rows are the answer.
    pub grouped: Option<Box<Grouped>>,
}

/// `first.col <op> second.col`: a cross-table comparison the proxy evaluates after pairing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Residual {
    /// The hidden column of the first side and of the second side.
    pub cols: [usize; 2],
    /// The comparison, with the first side's column on its left.
    pub op: CompareOp,
}

impl JoinPlan {
    /// The inner side.
    pub fn inner(&self) -> usize {
        1 - self.outer
    }

    /// PREVIEW's rows: the outer side's SQL on each of its shards, then the inner side's
    /// template.
    pub fn describe(&self) -> Vec<(String, String, String)> {
        let outer = &self.sides[self.outer];
        let inner = &self.sides[self.inner()];
        let mut rows: Vec<(String, String, String)> = outer
            .shards
            .iter()
            .map(|s| {
                (
                    s.clone(),
                    outer.sql_with(None),
                    format!("join step 1: rows of {}", outer.table),
                )
            })
            .collect();
        let target = if self.probe.by_key {
            "(shards of the values)".to_string()
        } else {
            inner.shards.join(", ")
        };
        rows.push((
            target,
            inner.sql_with(Some(&format!("{} IN (…)", self.probe.inner_column))),
            format!("join step 2: {self}"),
        ));
        if let Some(g) = &self.grouped {
            rows.push((
                g.types_shard.clone(),
                g.types_sql.clone(),
                format!(
                    "join step 3: column types; the joined rows merged: {}",
                    g.merge
                ),
            ));
        }
        rows
    }
}

impl fmt::Display for JoinPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} join in the proxy on {}: rows of {} looked up by the values of {}{}",
            if self.keep_unmatched { "outer" } else { "hash" },
            self.on_text,
            self.sides[self.inner()].table,
            self.sides[self.outer].table,
            if self.probe.by_key {
                " (routed by key)"
            } else {
                " (on every shard)"
            }
        )?;
        if self.grouped.is_some() {
            f.write_str(", grouped")?;
        }
        if !self.order_by.is_empty() {
            f.write_str(", sorted")?;
        }
        if let Some(l) = self.limit {
            write!(f, ", limit {l}")?;
            if self.offset > 0 {
                write!(f, " offset {}", self.offset)?;
            }
        }
        Ok(())
    }
}
