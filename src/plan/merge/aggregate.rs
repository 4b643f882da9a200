//! Grouping and recombination of partial aggregates.
//!
//! Each shard ran the aggregate over its own rows; the rows of all shards are grouped again by
//! the group keys (typed equality, NULLs together) and the partial aggregates recombine:
//! COUNT adds, SUM adds exactly, MIN/MAX take the typed extreme, AVG divides the total of its
//! hidden SUM by the total of its hidden COUNT. Other columns keep the group's first row.
//!
//! Groups come out in order of first appearance (shard order); the pipeline sorts them.

use std::collections::HashMap;

use bytes::Bytes;
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;

use super::number::{divide_rounded, format_decimal, format_double_column, parse_decimal};
use super::sort::compare_rows;
use super::value::{self, Key, ValueKind};
use super::MergeError;
use crate::plan::spec::{AggregateKind, AggregateSpec, GroupConcat, MergeSpec};
use crate::protocol::resultset::{ColumnDef, TextRow};

/// Groups `rows` by `spec.group_by` and recombines `spec.aggregates`.
///
/// Without group keys and aggregates the rows pass through untouched. With aggregates and no
/// group keys there is exactly one output row, even when no shard returned a row.
pub fn aggregate(
    spec: &MergeSpec,
    columns: &[ColumnDef],
    kinds: &[ValueKind],
    rows: Vec<TextRow>,
) -> Result<Vec<TextRow>, MergeError> {
    if spec.group_by.is_empty() && spec.aggregates.is_empty() {
        return Ok(rows);
    }
    let implicit = spec.group_by.is_empty();
    let mut index: HashMap<Vec<Key>, usize> = HashMap::new();
    let mut groups: Vec<Group> = Vec::new();
    for row in rows {
        let gi = if implicit {
            if groups.is_empty() {
                groups.push(Group::new(spec));
            }
            0
        } else {
            let key: Vec<Key> = spec
                .group_by
                .iter()
                .map(|&c| value::key(kinds[c], row[c].as_deref()))
                .collect();
            let next = groups.len();
            let gi = *index.entry(key).or_insert(next);
            if gi == next {
                groups.push(Group::new(spec));
            }
            gi
        };
        groups[gi].add(spec, kinds, row, implicit)?;
    }
    if implicit && groups.is_empty() {
        return Ok(vec![empty_row(spec, columns.len())]);
    }
    groups
        .into_iter()
        .map(|g| g.finish(spec, columns, kinds))
        .collect()
}

/// The first stage of a merge with [`MergeSpec::pre_group_by`]: shard rows with equal group
/// keys *and* distinct value become one row. Partial aggregates recombine as usual, except the
/// COUNT(DISTINCT) columns: each shard row counted the one value it stands for (1, or 0 for
/// NULL), and a value found on several shards must still count once, so they take the maximum.
/// The rows that come out are the input of [`aggregate`] over `spec.group_by`.
pub fn pre_group(
    spec: &MergeSpec,
    columns: &[ColumnDef],
    kinds: &[ValueKind],
    rows: Vec<TextRow>,
) -> Result<Vec<TextRow>, MergeError> {
    if spec.pre_group_by.is_empty() {
        return Ok(rows);
    }
    let stage = MergeSpec {
        group_by: spec.pre_group_by.clone(),
        pre_group_by: Vec::new(),
        aggregates: spec
            .aggregates
            .iter()
            .filter_map(|a| {
                let kind = match a.kind {
                    // One value per row: kept once however many shards have it.
                    AggregateKind::CountDistinct | AggregateKind::SumDistinct => AggregateKind::Max,
                    // Its helpers (that value, and 1 or 0) keep the first row's.
                    AggregateKind::AvgDistinct { .. } => return None,
                    // Rows of one (value, keys) from several shards: their counts add up.
                    AggregateKind::GroupConcat(ref g) => {
                        return g.count.map(|column| AggregateSpec {
                            column,
                            kind: AggregateKind::Count,
                        })
                    }
                    ref k => k.clone(),
                };
                Some(AggregateSpec {
                    column: a.column,
                    kind,
                })
            })
            .collect(),
        ..MergeSpec::default()
    };
    aggregate(&stage, columns, kinds, rows)
}

/// The spec of the grouping after [`pre_group`]: the values each row stands for add up as a
/// SUM and divide as an AVG.
pub fn main_stage(spec: &MergeSpec) -> std::borrow::Cow<'_, MergeSpec> {
    let distinct_values = |k: &AggregateKind| {
        matches!(
            k,
            AggregateKind::SumDistinct | AggregateKind::AvgDistinct { .. }
        )
    };
    if !spec.aggregates.iter().any(|a| distinct_values(&a.kind)) {
        return std::borrow::Cow::Borrowed(spec);
    }
    let mut s = spec.clone();
    for a in &mut s.aggregates {
        a.kind = match a.kind {
            AggregateKind::SumDistinct => AggregateKind::Sum,
            AggregateKind::AvgDistinct {
                sum_column,
                count_column,
            } => AggregateKind::Avg {
                sum_column,
                count_column,
            },
            ref k => k.clone(),
        };
    }
    std::borrow::Cow::Owned(s)
}

/// The one row of an aggregate without GROUP BY over no rows at all: COUNT 0, NULL elsewhere.
fn empty_row(spec: &MergeSpec, ncols: usize) -> TextRow {
    let mut row: TextRow = vec![None; ncols];
    let zero = || Some(Bytes::from_static(b"0"));
    for a in &spec.aggregates {
        match a.kind {
            AggregateKind::Count
            | AggregateKind::CountDistinctDisjoint
            | AggregateKind::CountDistinct => row[a.column] = zero(),
            AggregateKind::Avg { count_column, .. }
            | AggregateKind::AvgDistinct { count_column, .. } => row[count_column] = zero(),
            _ => {}
        }
    }
    // A COUNT that is also some AVG's helper stays 0; an AVG column stays NULL.
    for a in &spec.aggregates {
        if a.kind.avg_helpers().is_some() {
            row[a.column] = None;
        }
    }
    row
}

struct Group {
    first: Option<TextRow>,
    /// Whether `first` looks like the answer of a shard with no matching rows (every COUNT 0).
    first_is_empty_partial: bool,
    accs: Vec<Acc>,
}

enum Acc {
    Count(i128),
    Sum(SumAcc),
    Min(Option<Bytes>),
    Max(Option<Bytes>),
    Avg {
        sum: SumAcc,
        count: i128,
    },
    /// GROUP_CONCAT: the group's (value, keys, count) rows, joined at the end.
    Concat(Vec<TextRow>),
}

/// A running exact (or, for FLOAT/DOUBLE, `f64`) sum; `Null` until a non-NULL part arrives.
#[derive(Debug, Clone, Copy, PartialEq)]
enum SumAcc {
    Null,
    Dec(Decimal),
    Float(f64),
}

impl SumAcc {
    fn add(&mut self, kind: ValueKind, v: Option<&[u8]>) -> Result<(), MergeError> {
        let Some(v) = v else { return Ok(()) };
        if kind == ValueKind::Float || matches!(self, SumAcc::Float(_)) {
            let f = value::parse_f64(v).ok_or_else(|| bad_value("SUM", v))?;
            *self = SumAcc::Float(self.as_f64() + f);
            return Ok(());
        }
        let d = parse_decimal(v).ok_or_else(|| {
            if value::DecimalText::parse(v).is_some() {
                MergeError::out_of_precision(
                    "SUM of a DECIMAL with more digits than the merge computes exactly",
                )
            } else {
                bad_value("SUM", v)
            }
        })?;
        *self = match *self {
            SumAcc::Null => SumAcc::Dec(d),
            SumAcc::Dec(x) => SumAcc::Dec(x.checked_add(d).ok_or_else(|| {
                MergeError::out_of_precision("SUM exceeds the precision the merge computes exactly")
            })?),
            SumAcc::Float(_) => unreachable!("handled above"),
        };
        Ok(())
    }

    fn as_f64(self) -> f64 {
        match self {
            SumAcc::Null => 0.0,
            SumAcc::Dec(d) => d.to_f64().unwrap_or(f64::NAN),
            SumAcc::Float(f) => f,
        }
    }

    /// The sum's text as the column `col` prints it.
    fn format(self, col: &ColumnDef) -> Result<Option<Bytes>, MergeError> {
        let kind = ValueKind::of(col);
        let text = match self {
            SumAcc::Null => return Ok(None),
            SumAcc::Float(f) => format_double_column(f, col.decimals),
            SumAcc::Dec(_) if kind == ValueKind::Float => {
                format_double_column(self.as_f64(), col.decimals)
            }
            SumAcc::Dec(d) => {
                let scale = (matches!(kind, ValueKind::Integer | ValueKind::Decimal)
                    && col.decimals <= 28)
                    .then_some(col.decimals as u32);
                format_decimal(d, scale)?
            }
        };
        Ok(Some(Bytes::from(text)))
    }
}

fn bad_value(what: &str, v: &[u8]) -> MergeError {
    MergeError::internal(format!(
        "merge: a shard returned {:?} for {what}, which is not a number",
        String::from_utf8_lossy(v)
    ))
}

fn parse_count(v: Option<&[u8]>) -> Result<i128, MergeError> {
    match v {
        None => Ok(0),
        Some(v) => value::parse_i128(v).ok_or_else(|| bad_value("COUNT", v)),
    }
}

fn add_count(total: &mut i128, v: Option<&[u8]>) -> Result<(), MergeError> {
    *total = total
        .checked_add(parse_count(v)?)
        .ok_or_else(|| MergeError::out_of_precision("COUNT overflow"))?;
    Ok(())
}

impl Group {
    fn new(spec: &MergeSpec) -> Group {
        Group {
            first: None,
            first_is_empty_partial: false,
            accs: spec
                .aggregates
                .iter()
                .map(|a| match a.kind {
                    AggregateKind::Count
                    | AggregateKind::CountDistinctDisjoint
                    | AggregateKind::CountDistinct => Acc::Count(0),
                    AggregateKind::Sum | AggregateKind::SumDistinct => Acc::Sum(SumAcc::Null),
                    AggregateKind::Min => Acc::Min(None),
                    AggregateKind::Max => Acc::Max(None),
                    AggregateKind::GroupConcat(_) => Acc::Concat(Vec::new()),
                    AggregateKind::Avg { .. } | AggregateKind::AvgDistinct { .. } => Acc::Avg {
                        sum: SumAcc::Null,
                        count: 0,
                    },
                })
                .collect(),
        }
    }

    fn add(
        &mut self,
        spec: &MergeSpec,
        kinds: &[ValueKind],
        row: TextRow,
        implicit: bool,
    ) -> Result<(), MergeError> {
        for (a, acc) in spec.aggregates.iter().zip(&mut self.accs) {
            let v = row[a.column].as_deref();
            let kind = kinds[a.column];
            match acc {
                Acc::Count(n) => add_count(n, v)?,
                Acc::Concat(rows) => rows.push(row.clone()),
                Acc::Sum(s) => s.add(kind, v)?,
                Acc::Min(best) => {
                    if let Some(v) = v {
                        if best
                            .as_deref()
                            .is_none_or(|b| value::compare(kind, v, b).is_lt())
                        {
                            *best = row[a.column].clone();
                        }
                    }
                }
                Acc::Max(best) => {
                    if let Some(v) = v {
                        if best
                            .as_deref()
                            .is_none_or(|b| value::compare(kind, v, b).is_gt())
                        {
                            *best = row[a.column].clone();
                        }
                    }
                }
                Acc::Avg { sum, count } => {
                    let Some((sum_column, count_column)) = a.kind.avg_helpers() else {
                        unreachable!("Avg accumulator for a non-AVG aggregate")
                    };
                    sum.add(kinds[sum_column], row[sum_column].as_deref())?;
                    add_count(count, row[count_column].as_deref())?;
                }
            }
        }
        // The first row supplies the columns that are neither grouped nor aggregated. Without
        // GROUP BY, a shard with no matching rows answers one row anyway (COUNT 0, NULLs): prefer
        // a row from a shard that had rows when a COUNT tells them apart.
        let empty_partial = implicit && is_empty_partial(spec, &row);
        if self.first.is_none() || (self.first_is_empty_partial && !empty_partial) {
            self.first = Some(row);
            self.first_is_empty_partial = empty_partial;
        }
        Ok(())
    }

    fn finish(
        self,
        spec: &MergeSpec,
        columns: &[ColumnDef],
        kinds: &[ValueKind],
    ) -> Result<TextRow, MergeError> {
        let mut row = self.first.expect("a group has at least one row");
        // AVG helpers first, so an aggregate that shares a helper column has the last word.
        let order = spec
            .aggregates
            .iter()
            .zip(&self.accs)
            .filter(|(a, _)| a.kind.avg_helpers().is_some())
            .chain(
                spec.aggregates
                    .iter()
                    .zip(&self.accs)
                    .filter(|(a, _)| a.kind.avg_helpers().is_none()),
            );
        for (a, acc) in order {
            finish_one(a, acc, columns, kinds, &mut row)?;
        }
        Ok(row)
    }
}

fn is_empty_partial(spec: &MergeSpec, row: &TextRow) -> bool {
    let mut counts = spec.aggregates.iter().filter_map(|a| match a.kind {
        AggregateKind::Count
        | AggregateKind::CountDistinctDisjoint
        | AggregateKind::CountDistinct => Some(a.column),
        _ => None,
    });
    let Some(c) = counts.next() else { return false };
    std::iter::once(c)
        .chain(counts)
        .all(|c| row[c].as_deref().is_none_or(|v| v == b"0"))
}

fn finish_one(
    a: &AggregateSpec,
    acc: &Acc,
    columns: &[ColumnDef],
    kinds: &[ValueKind],
    row: &mut TextRow,
) -> Result<(), MergeError> {
    let col = &columns[a.column];
    row[a.column] = match acc {
        Acc::Count(n) => Some(Bytes::from(n.to_string())),
        Acc::Sum(s) => s.format(col)?,
        Acc::Min(v) | Acc::Max(v) => v.clone(),
        Acc::Concat(rows) => {
            let AggregateKind::GroupConcat(g) = &a.kind else {
                unreachable!("Concat accumulator for a non-GROUP_CONCAT aggregate")
            };
            group_concat(g, rows, columns, kinds)?
        }
        Acc::Avg { sum, count } => {
            let Some((sum_column, count_column)) = a.kind.avg_helpers() else {
                unreachable!("Avg accumulator for a non-AVG aggregate")
            };
            row[sum_column] = sum.format(&columns[sum_column])?;
            row[count_column] = Some(Bytes::from(count.to_string()));
            average(*sum, *count, col, kinds[a.column])?
        }
    };
    Ok(())
}

/// MariaDB's default `group_concat_max_len`: a longer result would be cut (with a warning) by
/// a server whose session keeps the default; the merge refuses rather than guess the setting.
const GROUP_CONCAT_MAX_LEN: usize = 1_048_576;

/// A group's GROUP_CONCAT from its (value, keys, count) rows; NULL when every value is NULL.
fn group_concat(
    g: &GroupConcat,
    rows: &[TextRow],
    columns: &[ColumnDef],
    kinds: &[ValueKind],
) -> Result<Option<Bytes>, MergeError> {
    if let Some(k) = g
        .keys
        .iter()
        .find(|k| value::sorts_by_hidden_order(&columns[k.column]))
    {
        return Err(MergeError::not_supported(format!(
            "GROUP_CONCAT ordered by the ENUM/SET column {} across shards",
            k.column
        )));
    }
    let mut sorted: Vec<&TextRow> = rows.iter().collect();
    sorted.sort_by(|a, b| compare_rows(&g.keys, kinds, a, b));
    let mut out: Vec<u8> = Vec::new();
    let mut any = false;
    for r in sorted {
        let Some(v) = r[g.value].as_deref() else {
            continue;
        };
        let times = match g.count {
            None => 1,
            Some(c) => std::str::from_utf8(r[c].as_deref().unwrap_or(b"0"))
                .ok()
                .and_then(|n| n.parse::<u64>().ok())
                .ok_or_else(|| MergeError::internal("merge: GROUP_CONCAT's count"))?,
        };
        for _ in 0..times {
            if any {
                out.extend_from_slice(g.separator.as_bytes());
            }
            out.extend_from_slice(v);
            any = true;
            if out.len() > GROUP_CONCAT_MAX_LEN {
                return Err(MergeError::not_supported(
                    "a GROUP_CONCAT across shards longer than the default group_concat_max_len                      (1 MiB), which a server would cut: query one shard",
                ));
            }
        }
    }
    Ok(any.then(|| Bytes::from(out)))
}

/// AVG = total sum / total count, printed as the AVG column prints; NULL over no values.
fn average(
    sum: SumAcc,
    count: i128,
    col: &ColumnDef,
    kind: ValueKind,
) -> Result<Option<Bytes>, MergeError> {
    if count == 0 {
        return Ok(None);
    }
    let text = match (sum, kind) {
        (SumAcc::Null, _) => {
            return Err(MergeError::internal(
                "merge: AVG has a non-zero count but a NULL sum",
            ))
        }
        (_, ValueKind::Float) | (SumAcc::Float(_), _) => {
            format_double_column(sum.as_f64() / count as f64, col.decimals)
        }
        (SumAcc::Dec(d), _) => {
            if col.decimals > 30 {
                return Err(MergeError::not_supported(
                    "merge: AVG column without a fixed number of decimals",
                ));
            }
            divide_rounded(d, count, col.decimals as u32)?
        }
    };
    Ok(Some(Bytes::from(text)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::merge::tests::util::*;

    fn run(spec: &MergeSpec, cols: &[ColumnDef], rows: Vec<TextRow>) -> Vec<TextRow> {
        let kinds: Vec<ValueKind> = cols.iter().map(ValueKind::of).collect();
        aggregate(spec, cols, &kinds, rows).unwrap()
    }

    #[test]
    fn passthrough_without_grouping() {
        let cols = [int_col()];
        let rows = vec![row(&[Some("1")]), row(&[Some("2")])];
        assert_eq!(run(&MergeSpec::default(), &cols, rows.clone()), rows);
    }

    #[test]
    fn decimal_sum_is_exact() {
        // SUM over DECIMAL(20,2): MariaDB's result column has decimals 2.
        let cols = [dec_col(2)];
        let spec = one_aggregate(AggregateKind::Sum);
        let out = run(
            &spec,
            &cols,
            vec![row(&[Some("0.10")]), row(&[Some("0.20")])],
        );
        assert_eq!(out, vec![row(&[Some("0.30")])]);
        let out = run(&spec, &cols, vec![row(&[Some("0.1")]), row(&[Some("0.2")])]);
        assert_eq!(out, vec![row(&[Some("0.30")])]);
        let out = run(
            &spec,
            &cols,
            vec![row(&[Some("1.50")]), row(&[Some("-1.50")])],
        );
        assert_eq!(out, vec![row(&[Some("0.00")])]);
    }

    #[test]
    fn integer_sum_stays_integer_and_exceeds_u64() {
        let cols = [dec_col(0)];
        let spec = one_aggregate(AggregateKind::Sum);
        let out = run(
            &spec,
            &cols,
            vec![row(&[Some("18446744073709551615")]), row(&[Some("1")])],
        );
        assert_eq!(out, vec![row(&[Some("18446744073709551616")])]);
    }

    #[test]
    fn sum_of_nulls_and_of_nothing_is_null_count_is_zero() {
        let cols = [dec_col(2), bigint_col()];
        let spec = MergeSpec {
            visible_columns: 2,
            aggregates: vec![agg(0, AggregateKind::Sum), agg(1, AggregateKind::Count)],
            ..Default::default()
        };
        // Two shards with no matching rows: each answers (NULL, 0).
        let out = run(
            &spec,
            &cols,
            vec![row(&[None, Some("0")]), row(&[None, Some("0")])],
        );
        assert_eq!(out, vec![row(&[None, Some("0")])]);
        // No rows at all (e.g. every shard answered an empty set): still one row.
        let out = run(&spec, &cols, vec![]);
        assert_eq!(out, vec![row(&[None, Some("0")])]);
        // One shard empty, one not: no double counting.
        let out = run(
            &spec,
            &cols,
            vec![row(&[None, Some("0")]), row(&[Some("2.50"), Some("3")])],
        );
        assert_eq!(out, vec![row(&[Some("2.50"), Some("3")])]);
    }

    #[test]
    fn implicit_group_prefers_a_row_from_a_non_empty_shard() {
        // SELECT COUNT(*), name FROM t: shard 0 has no rows, shard 1 has.
        let cols = [bigint_col(), text_col()];
        let spec = MergeSpec {
            visible_columns: 2,
            aggregates: vec![agg(0, AggregateKind::Count)],
            ..Default::default()
        };
        let out = run(
            &spec,
            &cols,
            vec![row(&[Some("0"), None]), row(&[Some("2"), Some("x")])],
        );
        assert_eq!(out, vec![row(&[Some("2"), Some("x")])]);
    }

    #[test]
    fn groups_case_insensitively_keeping_the_first_value() {
        let cols = [text_col(), bigint_col()];
        let spec = grouped_by_first(AggregateKind::Count);
        let out = run(
            &spec,
            &cols,
            vec![
                row(&[Some("a"), Some("1")]),
                row(&[Some("b"), Some("2")]),
                row(&[Some("A"), Some("3")]),
                row(&[Some("a  "), Some("4")]),
                row(&[None, Some("5")]),
                row(&[None, Some("6")]),
            ],
        );
        assert_eq!(
            out,
            vec![
                row(&[Some("a"), Some("8")]),
                row(&[Some("b"), Some("2")]),
                row(&[None, Some("11")]),
            ]
        );
    }

    #[test]
    fn binary_groups_are_case_sensitive() {
        let cols = [bin_col(), bigint_col()];
        let spec = grouped_by_first(AggregateKind::Count);
        let out = run(
            &spec,
            &cols,
            vec![row(&[Some("a"), Some("1")]), row(&[Some("A"), Some("3")])],
        );
        assert_eq!(out.len(), 2);
    }

    #[test]
    fn numeric_groups_compare_by_value() {
        let cols = [dec_col(2), bigint_col()];
        let spec = grouped_by_first(AggregateKind::Count);
        let out = run(
            &spec,
            &cols,
            vec![
                row(&[Some("1.50"), Some("1")]),
                row(&[Some("1.5"), Some("3")]),
            ],
        );
        assert_eq!(out, vec![row(&[Some("1.50"), Some("4")])]);
    }

    #[test]
    fn min_max_typed() {
        let cols = [int_col(), int_col(), text_col(), text_col()];
        let spec = MergeSpec {
            visible_columns: 4,
            aggregates: vec![
                agg(0, AggregateKind::Min),
                agg(1, AggregateKind::Max),
                agg(2, AggregateKind::Min),
                agg(3, AggregateKind::Max),
            ],
            ..Default::default()
        };
        let out = run(
            &spec,
            &cols,
            vec![
                row(&[Some("9"), Some("9"), Some("b"), Some("b")]),
                row(&[Some("10"), Some("10"), Some("B "), Some("B ")]),
                row(&[None, None, None, None]),
                row(&[Some("-3"), Some("-3"), Some("C"), Some("a")]),
            ],
        );
        // 'b' = 'B ': the first one stays (as MariaDB keeps it).
        assert_eq!(
            out,
            vec![row(&[Some("-3"), Some("10"), Some("b"), Some("b")])]
        );
    }

    #[test]
    fn avg_recombines_and_rounds() {
        // SELECT AVG(i) with hidden SUM(i), COUNT(i); AVG of an integer has 4 decimals.
        let cols = [avg_col(4), dec_col(0), bigint_col()];
        let spec = avg_spec();
        let out = run(
            &spec,
            &cols,
            vec![
                row(&[Some("1.0000"), Some("1"), Some("1")]),
                row(&[Some("1.5000"), Some("3"), Some("2")]),
            ],
        );
        assert_eq!(out[0][0].as_deref(), Some(&b"1.3333"[..]));
        // 5/3 rounds up.
        let out = run(
            &spec,
            &cols,
            vec![
                row(&[Some("2.0000"), Some("4"), Some("2")]),
                row(&[Some("1.0000"), Some("1"), Some("1")]),
            ],
        );
        assert_eq!(out[0][0].as_deref(), Some(&b"1.6667"[..]));
        // No values at all: NULL.
        let out = run(
            &spec,
            &cols,
            vec![row(&[None, None, Some("0")]), row(&[None, None, Some("0")])],
        );
        assert_eq!(out[0][0], None);
        let out = run(&spec, &cols, vec![]);
        assert_eq!(out, vec![row(&[None, None, Some("0")])]);
    }

    #[test]
    fn avg_of_decimal_has_scale_plus_four() {
        let cols = [avg_col(6), dec_col(2), bigint_col()];
        let spec = avg_spec();
        let out = run(
            &spec,
            &cols,
            vec![
                row(&[Some("0.100000"), Some("0.10"), Some("1")]),
                row(&[Some("0.200000"), Some("0.20"), Some("1")]),
                row(&[Some("0.010000"), Some("0.01"), Some("1")]),
            ],
        );
        // 0.31 / 3 = 0.103333…
        assert_eq!(out[0][0].as_deref(), Some(&b"0.103333"[..]));
    }

    #[test]
    fn double_sum_and_avg() {
        let cols = [double_col(), double_col(), double_col(), bigint_col()];
        let spec = MergeSpec {
            visible_columns: 2,
            aggregates: vec![
                agg(0, AggregateKind::Sum),
                agg(
                    1,
                    AggregateKind::Avg {
                        sum_column: 2,
                        count_column: 3,
                    },
                ),
            ],
            ..Default::default()
        };
        let out = run(
            &spec,
            &cols,
            vec![
                row(&[Some("0.1"), Some("0.1"), Some("0.1"), Some("1")]),
                row(&[Some("0.2"), Some("0.2"), Some("0.2"), Some("1")]),
            ],
        );
        assert_eq!(
            out[0][..2],
            row(&[Some("0.30000000000000004"), Some("0.15000000000000002")])[..]
        );
    }

    #[test]
    fn count_distinct_disjoint_adds() {
        let cols = [bigint_col()];
        let spec = one_aggregate(AggregateKind::CountDistinctDisjoint);
        let out = run(&spec, &cols, vec![row(&[Some("3")]), row(&[Some("4")])]);
        assert_eq!(out, vec![row(&[Some("7")])]);
    }

    #[test]
    fn malformed_values_are_errors() {
        let cols = [bigint_col()];
        let kinds = [ValueKind::Integer];
        let spec = one_aggregate(AggregateKind::Count);
        let err = aggregate(&spec, &cols, &kinds, vec![row(&[Some("x")])]).unwrap_err();
        assert_eq!(err.code, 1105);
        let spec = one_aggregate(AggregateKind::Sum);
        assert!(aggregate(&spec, &cols, &kinds, vec![row(&[Some("1x")])]).is_err());
    }

    #[test]
    fn decimal_overflow_is_an_error_not_a_rounding() {
        let cols = [dec_col(0)];
        let kinds = [ValueKind::Decimal];
        let spec = one_aggregate(AggregateKind::Sum);
        // A DECIMAL(65,30) value: too many digits to add exactly here.
        let err = aggregate(
            &spec,
            &cols,
            &kinds,
            vec![row(&[Some("1.000000000000000000000000000001")])],
        )
        .unwrap_err();
        assert!(err.message.contains("more digits"), "{err:?}");
        let big = "79228162514264337593543950335";
        let err = aggregate(
            &spec,
            &cols,
            &kinds,
            vec![row(&[Some(big)]), row(&[Some(big)])],
        )
        .unwrap_err();
        assert_eq!(err.code, 1105);
    }
}
