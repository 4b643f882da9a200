//! How the answers of several shards are combined into the one answer a single server would
//! give. The planner ([`super`]) writes a [`MergeSpec`]; the merge engine executes it over the
//! shards' [`ResultSet`](crate::protocol::resultset::ResultSet)s.
//!
//! Column indices refer to the columns of the SQL each shard receives. The client sees the first
//! `visible_columns` of them; trailing columns are helpers the planner added (e.g. the SUM and
//! COUNT behind an AVG, or an ORDER BY expression that is not selected).
//!
//! A [`MergeSpec`] describes itself (its `Display`): PREVIEW prints that next to each shard's
//! SQL, and the slow-query log writes it ([`MergeSpec::summary`]).

use std::fmt;

use super::ALL_COLUMNS;

/// The whole recipe for combining shard results.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MergeSpec {
    /// Columns the client sees: the leading `visible_columns` of each shard row.
    pub visible_columns: usize,
    /// Group keys (column indices). Empty with non-empty `aggregates`: one group over all rows
    /// (a plain `SELECT COUNT(*) FROM t`), which yields one row even when every shard is empty.
    pub group_by: Vec<usize>,
    /// A finer grouping merged first, for [`AggregateKind::CountDistinct`]: the group keys and
    /// the distinct expression (a hidden column the shards also group by). Shard rows with equal
    /// values of all of these are merged into one (so a value found on several shards counts
    /// once), then those rows are grouped by `group_by`. Empty: no such stage.
    pub pre_group_by: Vec<usize>,
    /// Aggregate columns, recombined per group. Columns neither grouped nor aggregated take the
    /// value of the group's first row (as MariaDB does without ONLY_FULL_GROUP_BY).
    pub aggregates: Vec<AggregateSpec>,
    /// Filter applied to merged groups (HAVING), evaluated by the proxy because shards only see
    /// partial groups.
    pub having: Option<Box<Filter>>,
    /// Remove duplicate rows (over the visible columns) after grouping.
    pub distinct: bool,
    /// Final order. Empty: shard results are concatenated in shard order.
    pub order_by: Vec<SortKey>,
    /// Rows skipped after ordering.
    pub offset: u64,
    /// Rows returned after the offset; `None` = all.
    pub limit: Option<u64>,
    /// Select items the proxy evaluates over the merged groups: expressions over aggregates
    /// and grouped columns (`SUM(a)/COUNT(*)`, `CONCAT(city, ':', COUNT(*))`). The shard SQL
    /// keeps each one in its column (for its column definition: the same types on every
    /// server); its value is replaced by the one computed from the merged helpers.
    pub computed: Vec<Computed>,
    /// A `SELECT *` (or `t.*`) whose width only the shards' column definitions tell, with
    /// columns the merge refers to: see [`Wildcard`]. `None`: every index above is final (or
    /// `visible_columns` is [`ALL_COLUMNS`], every column visible).
    pub wildcard: Option<Wildcard>,
}

/// Where the columns of `*` / `t.*` items sit among the shard SQL's columns.
///
/// The planner does not know a table's columns (no schema guessing): it counts each wildcard
/// item as one column and writes every index in that *planned* numbering. The wildcard items
/// (and any item between two of them) form one region of unknown width; the merge never refers
/// to a column inside it (the planner fetches such a column again as a hidden one), so once
/// the shards' answer tells the real column count, every index after the region moves by the
/// region's real width minus its planned width ([`MergeSpec::resolve`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wildcard {
    /// Planned index of the region's first column (the first wildcard item).
    pub start: u32,
    /// Planned columns in the region (from the first to the last wildcard item).
    pub planned_width: u32,
    /// Planned columns in all, visible and hidden.
    pub planned_total: u32,
}

impl MergeSpec {
    /// The shards' answers concatenated as they are, every column visible (a one-shard read
    /// answered through the executor, a join's side, a typing query).
    pub fn concat() -> MergeSpec {
        MergeSpec {
            visible_columns: ALL_COLUMNS,
            ..MergeSpec::default()
        }
    }

    /// The slow-query log's description of a scatter read merged by this spec.
    pub fn summary(&self) -> String {
        format!("scatter, {self}")
    }

    /// The spec in the numbering of shard rows that have `ncols` columns: `SELECT *`'s "all
    /// columns" made a count, a [`Wildcard`] region given its real width. Without a wildcard
    /// the spec is unchanged, so resolving twice is harmless.
    pub fn resolve(&self, ncols: usize) -> MergeSpec {
        let mut s = self.clone();
        if s.visible_columns == ALL_COLUMNS {
            s.visible_columns = ncols;
        }
        let Some(w) = s.wildcard.take() else {
            return s;
        };
        // Columns outside the region are as planned; the region takes the rest.
        let (start, planned_width) = (w.start as usize, w.planned_width as usize);
        let outside = w.planned_total as usize - planned_width;
        let width = ncols.saturating_sub(outside);
        let after = start + planned_width;
        let map = |c: usize| {
            if c >= after {
                c + width - planned_width
            } else {
                c
            }
        };
        s.visible_columns = map(s.visible_columns);
        for c in s.group_by.iter_mut().chain(s.pre_group_by.iter_mut()) {
            *c = map(*c);
        }
        for a in &mut s.aggregates {
            a.column = map(a.column);
            if let AggregateKind::GroupConcat(g) = &mut a.kind {
                g.value = map(g.value);
                g.count = g.count.map(map);
                for k in &mut g.keys {
                    k.column = map(k.column);
                }
            }
            if let AggregateKind::Avg {
                sum_column,
                count_column,
            }
            | AggregateKind::AvgDistinct {
                sum_column,
                count_column,
            } = &mut a.kind
            {
                *sum_column = map(*sum_column);
                *count_column = map(*count_column);
            }
        }
        for k in &mut s.order_by {
            k.column = map(k.column);
        }
        if let Some(f) = &mut s.having {
            f.map_columns(&map);
        }
        for c in &mut s.computed {
            c.column = map(c.column);
            c.expr.map_columns(&map);
        }
        s
    }
}

/// `merge: ` and the steps, e.g. `merge: 2 visible columns; group by [0]; Count(col 1)`.
impl fmt::Display for MergeSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("merge: ")?;
        if self.visible_columns == ALL_COLUMNS {
            f.write_str("all columns")?;
        } else {
            write!(f, "{} visible columns", self.visible_columns)?;
        }
        if !self.group_by.is_empty() {
            write!(f, "; group by {:?}", self.group_by)?;
        }
        for a in &self.aggregates {
            write!(f, "; {:?}(col {})", a.kind, a.column)?;
        }
        for c in &self.computed {
            write!(f, "; col {} = {} (in proxy)", c.column, c.expr)?;
        }
        if self.having.is_some() {
            f.write_str("; having (in proxy)")?;
        }
        if self.distinct {
            f.write_str("; distinct")?;
        }
        if !self.order_by.is_empty() {
            f.write_str("; order by ")?;
            for (i, k) in self.order_by.iter().enumerate() {
                let sep = if i == 0 { "" } else { ", " };
                let desc = if k.descending { " desc" } else { "" };
                write!(f, "{sep}{}{desc}", k.column)?;
            }
        }
        if self.offset > 0 {
            write!(f, "; offset {}", self.offset)?;
        }
        if let Some(l) = self.limit {
            write!(f, "; limit {l}")?;
        }
        if let Some(w) = &self.wildcard {
            write!(
                f,
                "; columns of * from col {} (width from the shards' answer)",
                w.start
            )?;
        }
        Ok(())
    }
}

/// One aggregate output column and how partial results recombine.
#[derive(Debug, Clone, PartialEq)]
pub struct AggregateSpec {
    /// The column holding this aggregate in shard rows and in the merged row.
    pub column: usize,
    pub kind: AggregateKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum AggregateKind {
    /// COUNT(…): partial counts add up.
    Count,
    /// SUM(…): partial sums add up exactly (DECIMAL stays DECIMAL); NULL when every part is NULL.
    Sum,
    Min,
    Max,
    /// AVG(x): the shard SQL keeps AVG(x) in `column` (for its column definition) and adds
    /// hidden columns `sum_column` = SUM(x) and `count_column` = COUNT(x). Merged value =
    /// total sum / total count, rounded to the AVG column's `decimals` as MariaDB rounds.
    Avg {
        sum_column: usize,
        count_column: usize,
    },
    /// COUNT(DISTINCT x) where x is the shard key: distinct sets are disjoint, counts add up.
    CountDistinctDisjoint,
    /// SUM(DISTINCT x) of a non-key `x`: grouped on the shards by `x` as for
    /// [`AggregateKind::CountDistinct`]; each value is kept once in the first stage, then
    /// they add up.
    SumDistinct,
    /// AVG(DISTINCT x) of a non-key `x`: hidden SUM(DISTINCT x) and COUNT(DISTINCT x) kept once
    /// per value in the first stage, then divided as [`AggregateKind::Avg`].
    AvgDistinct {
        sum_column: usize,
        count_column: usize,
    },
    /// GROUP_CONCAT([DISTINCT] x ORDER BY …, x … [SEPARATOR s]): see [`GroupConcat`].
    GroupConcat(Box<GroupConcat>),
    /// COUNT(DISTINCT x) of anything else: the same value may be on several shards. The shards
    /// group by x as well (see [`MergeSpec::pre_group_by`]), so each of their rows counts one
    /// value (1, or 0 for NULL); the first merge stage keeps one count per value (the maximum),
    /// the second adds them up.
    CountDistinct,
}

/// A select item the proxy computes after the merge (see [`MergeSpec::computed`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Computed {
    /// The column the value goes to (its definition, from the shards, gives the result type).
    pub column: usize,
    pub expr: Calc,
}

/// An expression over merged columns, evaluated by `merge/eval.rs` with MariaDB's types and
/// DECIMAL arithmetic.
#[derive(Debug, Clone, PartialEq)]
pub enum Calc {
    /// A merged column: an aggregate, or a grouped column (read in its column's type).
    Column(usize),
    /// AVG(x) from its hidden SUM(x) and COUNT(x) columns, divided as MariaDB divides.
    Avg {
        sum: usize,
        count: usize,
    },
    Literal(Literal),
    Neg(Box<Calc>),
    Arith {
        op: ArithOp,
        left: Box<Calc>,
        right: Box<Calc>,
    },
    /// ROUND(x, places) (places ≥ 0, a constant).
    Round {
        arg: Box<Calc>,
        places: u32,
    },
    /// CONCAT(…): NULL when any argument is.
    Concat(Vec<Calc>),
}

/// Arithmetic operators of [`Calc::Arith`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArithOp {
    Add,
    Sub,
    Mul,
    Div,
}

impl Calc {
    /// Renumbers the columns the expression reads (see [`MergeSpec::resolve`]).
    fn map_columns(&mut self, map: &impl Fn(usize) -> usize) {
        match self {
            Calc::Column(c) => *c = map(*c),
            Calc::Avg { sum, count } => {
                *sum = map(*sum);
                *count = map(*count);
            }
            Calc::Literal(_) => {}
            Calc::Neg(a) | Calc::Round { arg: a, .. } => a.map_columns(map),
            Calc::Arith { left, right, .. } => {
                left.map_columns(map);
                right.map_columns(map);
            }
            Calc::Concat(args) => args.iter_mut().for_each(|a| a.map_columns(map)),
        }
    }

    /// Every column the expression reads.
    pub fn columns(&self, out: &mut Vec<usize>) {
        match self {
            Calc::Column(c) => out.push(*c),
            Calc::Avg { sum, count } => out.extend([*sum, *count]),
            Calc::Literal(_) => {}
            Calc::Neg(a) | Calc::Round { arg: a, .. } => a.columns(out),
            Calc::Arith { left, right, .. } => {
                left.columns(out);
                right.columns(out);
            }
            Calc::Concat(args) => args.iter().for_each(|a| a.columns(out)),
        }
    }
}

/// PREVIEW's form: `(col 3 / col 4)`, `round(avg(col 5, col 6), 2)`.
impl fmt::Display for Calc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Calc::Column(c) => write!(f, "col {c}"),
            Calc::Avg { sum, count } => write!(f, "avg(col {sum} / col {count})"),
            Calc::Literal(Literal::Null) => f.write_str("NULL"),
            Calc::Literal(Literal::Number(n)) => f.write_str(n),
            Calc::Literal(Literal::String(s)) => write!(f, "'{}'", s.replace('\'', "''")),
            Calc::Neg(a) => write!(f, "-{a}"),
            Calc::Arith { op, left, right } => {
                let op = match op {
                    ArithOp::Add => "+",
                    ArithOp::Sub => "-",
                    ArithOp::Mul => "*",
                    ArithOp::Div => "/",
                };
                write!(f, "({left} {op} {right})")
            }
            Calc::Round { arg, places } => write!(f, "round({arg}, {places})"),
            Calc::Concat(args) => {
                f.write_str("concat(")?;
                for (i, a) in args.iter().enumerate() {
                    write!(f, "{}{a}", if i == 0 { "" } else { ", " })?;
                }
                f.write_str(")")
            }
        }
    }
}

/// How a GROUP_CONCAT recombines. A shard's concatenation cannot be split again (a value may
/// hold the separator), so the shards also group by the value and the ORDER BY keys (hidden
/// columns) and count each such row; the merge keeps one row per (group, value, keys), adds
/// their counts, sorts a group's rows by the keys and joins the values, each repeated its
/// count. The keys must include the value itself, so the order is fixed (ties of other keys
/// are in no order MariaDB promises).
#[derive(Debug, Clone, PartialEq)]
pub struct GroupConcat {
    /// The hidden column holding the concatenated value.
    pub value: usize,
    /// The ORDER BY keys over hidden columns (the value's among them).
    pub keys: Vec<SortKey>,
    /// The separator (`,` by default).
    pub separator: String,
    /// The hidden COUNT(*) of each (group, value, keys) row; `None` with DISTINCT (once each).
    pub count: Option<usize>,
}

impl AggregateKind {
    /// The hidden SUM and COUNT columns of an AVG.
    pub fn avg_helpers(&self) -> Option<(usize, usize)> {
        match *self {
            AggregateKind::Avg {
                sum_column,
                count_column,
            }
            | AggregateKind::AvgDistinct {
                sum_column,
                count_column,
            } => Some((sum_column, count_column)),
            _ => None,
        }
    }
}

/// Sort key of the final order.
#[derive(Debug, Clone, PartialEq)]
pub struct SortKey {
    pub column: usize,
    pub descending: bool,
}

/// A HAVING condition over merged rows.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    And(Box<Filter>, Box<Filter>),
    Or(Box<Filter>, Box<Filter>),
    Not(Box<Filter>),
    /// `column <op> literal`; a NULL on either side makes the comparison not true.
    Compare {
        column: usize,
        op: CompareOp,
        value: Literal,
    },
    IsNull {
        column: usize,
        negated: bool,
    },
}

impl Filter {
    /// Renumbers the columns the filter reads (see [`MergeSpec::resolve`]).
    fn map_columns(&mut self, map: &impl Fn(usize) -> usize) {
        match self {
            Filter::And(a, b) | Filter::Or(a, b) => {
                a.map_columns(map);
                b.map_columns(map);
            }
            Filter::Not(a) => a.map_columns(map),
            Filter::Compare { column, .. } | Filter::IsNull { column, .. } => {
                *column = map(*column)
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    Eq,
    NotEq,
    Lt,
    LtEq,
    Gt,
    GtEq,
}

/// A constant in a filter.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    Null,
    /// A number as written (compared as DECIMAL when it parses, else as a double).
    Number(String),
    String(String),
}
