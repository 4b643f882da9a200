//! The last step of a grouped join ([`Grouped`], planned in `plan/join/grouped.rs`): the joined
//! rows, each a partial group of one row, merged by the merge engine into the statement's
//! groups, then HAVING, DISTINCT, ORDER BY and LIMIT.
//!
//! The joined rows carry the types of their one-row values (`1` for `COUNT(*)`, the column
//! itself for `SUM(col)`); the merge needs the statement's own column definitions, which one
//! shard gives by answering the statement over no rows (`WHERE FALSE`). Before they replace the
//! joined rows' definitions, each value is checked to mean the same under its new type:
//! * a COUNT's value is an integer (1 or 0);
//! * the values a SUM or AVG adds up are integers or DECIMALs (exact; a FLOAT, a string or a
//!   date would be added up by other rules than the server's, so it is refused);
//! * every other column (MIN/MAX values, group keys, plain columns) has the same type as in
//!   the statement, so it compares and prints the same.
//!
//! Items the merge computes (`SUM(x)/COUNT(*)`) and the AVG columns are `NULL` in the joined
//! rows: the merge writes their values.

use crate::plan::join::Grouped;
use crate::plan::merge::{self, value::ValueKind};
use crate::plan::spec::{AggregateKind, MergeSpec};
use crate::plan::ShardSql;
use crate::protocol::constants::err;
use crate::protocol::packets::ErrInfo;
use crate::protocol::resultset::{ColumnDef, ResultSet};

fn refused(message: String) -> ErrInfo {
    ErrInfo::new(err::ER_NOT_SUPPORTED_YET, message)
}

/// What a column of the joined rows must hold for the merge to read it under the statement's
/// column definition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Holds {
    /// A count: an integer.
    Count,
    /// Values added up: exact numbers.
    Addend,
    /// Written by the merge: anything (it is `NULL`).
    Written,
    /// The value itself: the statement's type.
    Same,
}

/// What each of `ncols` columns must hold under `spec` (already resolved to `ncols`).
fn holds(spec: &MergeSpec, ncols: usize) -> Vec<Holds> {
    let mut h = vec![Holds::Same; ncols];
    let mut set = |c: usize, v: Holds| {
        if let Some(x) = h.get_mut(c) {
            *x = v;
        }
    };
    for a in &spec.aggregates {
        match &a.kind {
            AggregateKind::Count => set(a.column, Holds::Count),
            AggregateKind::Sum => set(a.column, Holds::Addend),
            AggregateKind::Avg {
                sum_column,
                count_column,
            } => {
                set(a.column, Holds::Written);
                set(*sum_column, Holds::Addend);
                set(*count_column, Holds::Count);
            }
            // MIN/MAX keep their column's values; the planner refused the other kinds.
            _ => {}
        }
    }
    for c in &spec.computed {
        set(c.column, Holds::Written);
    }
    h
}

/// Whether the joined rows' column `row` can be read under the statement's column `stmt`.
fn fits(how: Holds, row: &ColumnDef, stmt: &ColumnDef) -> bool {
    let kind = ValueKind::of(row);
    match how {
        Holds::Count => kind == ValueKind::Integer,
        Holds::Addend => matches!(kind, ValueKind::Integer | ValueKind::Decimal),
        Holds::Written => true,
        Holds::Same => {
            row.column_type == stmt.column_type
                && kind == ValueKind::of(stmt)
                && row.decimals == stmt.decimals
        }
    }
}

/// The statement a grouped join's column definitions come from, on one shard (see the
/// module doc).
pub(super) fn typing_target(g: &Grouped) -> [ShardSql; 1] {
    [ShardSql {
        shard: g.types_shard.clone(),
        sql: g.types_sql.clone(),
    }]
}

/// Merges the joined rows of a grouped join into its answer, under the column definitions of
/// `typed` (the answer of [`typing_target`]; see the module doc).
pub(super) fn group(
    g: &Grouped,
    joined: ResultSet,
    typed: ResultSet,
) -> Result<ResultSet, ErrInfo> {
    let ncols = typed.columns.len();
    if joined.columns.len() != ncols {
        return Err(ErrInfo::new(
            (1105, "HY000"),
            format!(
                "the grouped join's rows have {} columns where the statement has {ncols}",
                joined.columns.len()
            ),
        ));
    }
    let spec = g.merge.resolve(ncols);
    for (c, how) in holds(&spec, ncols).into_iter().enumerate() {
        let (row, stmt) = (&joined.columns[c], &typed.columns[c]);
        if !fits(how, row, stmt) {
            return Err(refused(format!(
                "a grouped join executed by the proxy cannot compute column {} (`{}`) exactly: \
                 {}",
                c + 1,
                String::from_utf8_lossy(&stmt.name),
                match how {
                    Holds::Addend => "SUM and AVG add up only integer and DECIMAL values here",
                    _ => "its values over the joined rows have another type than its own",
                }
            )));
        }
    }
    let input = ResultSet {
        columns: typed.columns,
        rows: joined.rows,
        warnings: joined.warnings,
    };
    merge::merge(&spec, vec![input]).map_err(|e| ErrInfo::new((e.code, e.sqlstate), e.message))
}
