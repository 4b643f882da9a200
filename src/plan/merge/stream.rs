//! The streaming side of the merge: what a scatter read can send as its rows arrive, and the
//! k-way merge of shard streams that are already sorted.
//!
//! A [`MergeSpec`] without grouping, aggregates, HAVING or DISTINCT needs no row but the next
//! one of each shard:
//! * without ORDER BY ([`Shape::Relay`]) the shards' rows are relayed shard after shard (the
//!   order [`super::merge`] gives: shard order), the others waiting in their sockets;
//! * with ORDER BY ([`Shape::Ordered`]) each shard sorted its own rows (the planner keeps the
//!   ORDER BY in the shard SQL, `plan/scatter/order.rs`), so the next row of the result is the
//!   smallest of the shards' next rows ([`KWay`]); ties go to the lower shard, which is the
//!   stable order of [`super::merge`]. With a LIMIT the merge stops after `offset + limit`
//!   rows: the k-way merge is its own top-k, holding one row per shard.
//!
//! Everything else ([`Shape::InMemory`]) is merged by [`super::merge`] over rows held in
//! memory; the shards group first, so what is held is bounded by the number of groups times
//! the number of shards, and the executor bounds it (`merge.max_groups`).
//!
//! # Trust, checked
//! The k-way merge is only right if every shard's order is the proxy's order. Each shard's
//! next row is compared with its previous one ([`KWay::check_next`]): a shard whose order
//! disagrees with the proxy's typed comparison (a collation the proxy does not model) ends the
//! result with error 1235 rather than a wrongly ordered answer. Text with non-ASCII characters
//! in a case-insensitive sort column is refused the same way (as [`super::merge`] refuses it).

use std::cmp::Ordering;

use super::sort::compare_rows;
use super::value::ValueKind;
use super::MergeError;
use crate::plan::spec::{MergeSpec, SortKey};
use crate::protocol::resultset::{ColumnDef, TextRow};

/// How a scatter read's rows reach the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// Relayed as they arrive, shard after shard.
    Relay,
    /// A k-way merge of the shards' sorted streams.
    Ordered,
    /// Merged in memory (groups, aggregates, HAVING, DISTINCT), then sent.
    InMemory,
}

/// Which way `spec` is executed.
pub fn shape(spec: &MergeSpec) -> Shape {
    if !spec.group_by.is_empty()
        || !spec.pre_group_by.is_empty()
        || !spec.aggregates.is_empty()
        || spec.having.is_some()
        || spec.distinct
        || !spec.computed.is_empty()
    {
        Shape::InMemory
    } else if spec.order_by.is_empty() {
        Shape::Relay
    } else {
        Shape::Ordered
    }
}

/// The spec in the numbering of the shards' rows (see [`MergeSpec::resolve`]).
pub fn resolve(spec: &MergeSpec, ncols: usize) -> MergeSpec {
    spec.resolve(ncols)
}

/// Checks the shards' column definitions agree (count and types) and the spec fits them, and
/// refuses an order the proxy cannot reproduce (ENUM/SET by member index): all before the
/// first row is sent.
pub fn check_columns(spec: &MergeSpec, legs: &[&[ColumnDef]]) -> Result<(), MergeError> {
    let first = legs
        .first()
        .ok_or_else(|| MergeError::internal("merge: no shard results"))?;
    let ncols = first.len();
    for (i, cols) in legs.iter().enumerate().skip(1) {
        if cols.len() != ncols {
            return Err(MergeError::column_count(format!(
                "merge: shard result {i} has {} columns, shard result 0 has {ncols}",
                cols.len()
            )));
        }
        for (c, (a, b)) in first.iter().zip(cols.iter()).enumerate() {
            if a.column_type != b.column_type {
                return Err(MergeError::internal(format!(
                    "merge: shard results disagree on the type of column {c} ({} vs {})",
                    a.column_type, b.column_type
                )));
            }
        }
    }
    super::validate(spec, first)?;
    super::sort::check_orderable(&spec.order_by, first)
}

/// The k-way merge of sorted shard streams: one head row per shard.
#[derive(Debug)]
pub struct KWay {
    /// The final order.
    keys: Vec<SortKey>,
    /// Each column's comparison.
    kinds: Vec<ValueKind>,
    /// Sort columns compared case-insensitively (checked for non-ASCII text).
    folded: Vec<usize>,
    /// Column names, for messages.
    names: Vec<String>,
    /// Each shard's next row (`None`: that shard has no more rows, or not read yet).
    pub heads: Vec<Option<TextRow>>,
}

impl KWay {
    /// A merge of `shards` streams by `spec`'s order, over these columns.
    pub fn new(spec: &MergeSpec, columns: &[ColumnDef], shards: usize) -> KWay {
        let kinds: Vec<ValueKind> = columns.iter().map(ValueKind::of).collect();
        let folded = spec
            .order_by
            .iter()
            .map(|k| k.column)
            .filter(|&c| kinds[c] == ValueKind::CaseInsensitive)
            .collect();
        KWay {
            keys: spec.order_by.clone(),
            kinds,
            folded,
            names: columns
                .iter()
                .map(|c| String::from_utf8_lossy(&c.name).into_owned())
                .collect(),
            heads: vec![None; shards],
        }
    }

    /// The shard whose head row comes next (the lowest shard among equal rows), or `None`
    /// when every stream is exhausted.
    pub fn pick(&self) -> Option<usize> {
        let mut best: Option<(usize, &TextRow)> = None;
        for (i, h) in self.heads.iter().enumerate() {
            let Some(row) = h else { continue };
            match best {
                Some((_, b)) if compare_rows(&self.keys, &self.kinds, row, b) != Ordering::Less => {
                }
                _ => best = Some((i, row)),
            }
        }
        best.map(|(i, _)| i)
    }

    /// Checks a row a shard sent: its case-insensitive sort values are ASCII, and it does not
    /// sort before the shard's previous row (`prev`), i.e. the shard's order is the proxy's.
    pub fn check_next(&self, prev: Option<&TextRow>, next: &TextRow) -> Result<(), MergeError> {
        for &c in &self.folded {
            if next[c].as_deref().is_some_and(|v| !v.is_ascii()) {
                return Err(MergeError::not_supported(format!(
                    "comparing text with non-ASCII characters in column '{}' across shards: the \
                     proxy does not reproduce the accent rules of its case-insensitive \
                     collation; order by a binary collation (e.g. COLLATE utf8mb4_bin) or query \
                     one shard",
                    self.names[c]
                )));
            }
        }
        if let Some(prev) = prev {
            if compare_rows(&self.keys, &self.kinds, next, prev) == Ordering::Less {
                return Err(MergeError::not_supported(
                    "merge: a shard's ORDER BY disagrees with the proxy's comparison of these \
                     values (a collation or type the proxy does not model); the result was \
                     cut short rather than sent out of order",
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::merge::tests::util::*;
    use crate::protocol::resultset::ResultSet;

    fn ordered(desc: bool) -> MergeSpec {
        MergeSpec {
            visible_columns: 2,
            order_by: vec![SortKey {
                column: 0,
                descending: desc,
            }],
            ..MergeSpec::default()
        }
    }

    /// Drives a [`KWay`] over in-memory shard streams the way the executor does.
    fn kway(spec: &MergeSpec, cols: &[ColumnDef], shards: Vec<Vec<TextRow>>) -> Vec<TextRow> {
        let mut k = KWay::new(spec, cols, shards.len());
        let mut iters: Vec<_> = shards.into_iter().map(|s| s.into_iter()).collect();
        for (i, it) in iters.iter_mut().enumerate() {
            k.heads[i] = it.next();
        }
        let mut out = Vec::new();
        while let Some(i) = k.pick() {
            let row = k.heads[i].take().unwrap();
            let next = iters[i].next();
            if let Some(n) = &next {
                k.check_next(Some(&row), n).unwrap();
            }
            k.heads[i] = next;
            out.push(row);
        }
        out
    }

    #[test]
    fn shapes() {
        assert_eq!(shape(&MergeSpec::default()), Shape::Relay);
        assert_eq!(shape(&ordered(false)), Shape::Ordered);
        let grouped = MergeSpec {
            group_by: vec![0],
            ..ordered(false)
        };
        assert_eq!(shape(&grouped), Shape::InMemory);
        let distinct = MergeSpec {
            distinct: true,
            ..MergeSpec::default()
        };
        assert_eq!(shape(&distinct), Shape::InMemory);
    }

    #[test]
    fn out_of_order_shard_is_refused() {
        let cols = [int_col(), int_col()];
        let k = KWay::new(&ordered(false), &cols, 1);
        let a = row(&[Some("5"), Some("0")]);
        let b = row(&[Some("4"), Some("0")]);
        assert_eq!(k.check_next(Some(&a), &b).unwrap_err().code, 1235);
        assert!(k.check_next(Some(&b), &a).is_ok());
        assert!(k.check_next(Some(&a), &a).is_ok(), "ties are in order");
    }

    #[test]
    fn non_ascii_case_insensitive_sort_value_is_refused() {
        let cols = [text_col(), int_col()];
        let k = KWay::new(&ordered(false), &cols, 1);
        let r = row(&[Some("é"), Some("0")]);
        assert_eq!(k.check_next(None, &r).unwrap_err().code, 1235);
    }

    #[test]
    fn enum_order_is_refused_before_any_row() {
        let mut c = text_col();
        c.flags |= crate::plan::merge::value::ENUM_FLAG;
        let cols = [c, int_col()];
        let e = check_columns(&ordered(false), &[&cols, &cols]).unwrap_err();
        assert_eq!(e.code, 1235);
    }

    #[test]
    fn disagreeing_column_counts_are_refused() {
        let a = [int_col(), int_col()];
        let b = [int_col()];
        assert_eq!(
            check_columns(&ordered(false), &[&a, &b]).unwrap_err().code,
            1222
        );
    }

    proptest::proptest! {
        /// The k-way merge of sorted shard streams gives exactly what the in-memory merge
        /// gives over the same shards (ties in shard order), ascending and descending, with
        /// NULLs, and with any OFFSET/LIMIT applied to the merged stream.
        #[test]
        fn kway_equals_in_memory_merge(
            shards in proptest::collection::vec(
                proptest::collection::vec(proptest::option::of(-20i32..20), 0..25),
                1..5,
            ),
            desc in proptest::bool::ANY,
            offset in 0u64..10,
            limit in proptest::option::of(0u64..30),
        ) {
            let cols = vec![int_col(), int_col()];
            let spec = MergeSpec { offset, limit, ..ordered(desc) };
            let kinds: Vec<ValueKind> = cols.iter().map(ValueKind::of).collect();
            // Each shard sorts its own part (what ORDER BY in the shard SQL does).
            let streams: Vec<Vec<TextRow>> = shards
                .iter()
                .enumerate()
                .map(|(s, vals)| {
                    let mut rows: Vec<TextRow> = vals
                        .iter()
                        .enumerate()
                        .map(|(i, v)| {
                            let v = v.map(|v| v.to_string());
                            let tag = (s * 100 + i).to_string();
                            row(&[v.as_deref(), Some(&tag)])
                        })
                        .collect();
                    rows.sort_by(|a, b| compare_rows(&spec.order_by, &kinds, a, b));
                    rows
                })
                .collect();
            let inputs: Vec<ResultSet> = streams
                .iter()
                .map(|rows| ResultSet { columns: cols.clone(), rows: rows.clone(), warnings: 0 })
                .collect();
            let expected = crate::plan::merge::merge(&spec, inputs).unwrap().rows;
            let merged = kway(&spec, &cols, streams);
            let got: Vec<TextRow> = merged
                .into_iter()
                .skip(offset as usize)
                .take(limit.map_or(usize::MAX, |l| l as usize))
                .collect();
            proptest::prop_assert_eq!(got, expected);
        }
    }
}
