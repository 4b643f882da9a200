//! ORDER BY over merged rows: typed comparison per key, NULL first ascending and last
//! descending (MariaDB), a stable sort (ties keep shard order).

use std::cmp::Ordering;

use super::value::{self, ValueKind};
use super::MergeError;
use crate::plan::spec::SortKey;
use crate::protocol::resultset::{ColumnDef, TextRow};

/// Sorts `rows` by `keys`. ORDER BY an ENUM or SET column is refused: they sort by member
/// index, which text results do not carry.
pub fn sort(
    keys: &[SortKey],
    columns: &[ColumnDef],
    kinds: &[ValueKind],
    rows: &mut [TextRow],
) -> Result<(), MergeError> {
    if let Some(k) = keys
        .iter()
        .find(|k| value::sorts_by_hidden_order(&columns[k.column]))
    {
        return Err(MergeError::not_supported(format!(
            "merge: ORDER BY the ENUM/SET column {} across shards",
            k.column
        )));
    }
    rows.sort_by(|a, b| compare_rows(keys, kinds, a, b));
    Ok(())
}

/// The implicit order of GROUP BY results in MariaDB: the group keys, ascending.
///
/// ENUM/SET group keys are ordered by their text here (MariaDB uses the member index); an
/// explicit ORDER BY on them is refused by [`sort`], this implicit order is only approximated.
pub fn sort_groups(group_by: &[usize], kinds: &[ValueKind], rows: &mut [TextRow]) {
    let keys: Vec<SortKey> = group_by
        .iter()
        .map(|&column| SortKey {
            column,
            descending: false,
        })
        .collect();
    rows.sort_by(|a, b| compare_rows(&keys, kinds, a, b));
}

/// Compares two rows by `keys`.
pub fn compare_rows(keys: &[SortKey], kinds: &[ValueKind], a: &TextRow, b: &TextRow) -> Ordering {
    for k in keys {
        let c = k.column;
        let o = value::compare_nullable(kinds[c], a[c].as_deref(), b[c].as_deref());
        let o = if k.descending { o.reverse() } else { o };
        if o != Ordering::Equal {
            return o;
        }
    }
    Ordering::Equal
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::merge::tests::util::*;

    fn key(column: usize, descending: bool) -> SortKey {
        SortKey { column, descending }
    }

    fn sorted(cols: &[ColumnDef], keys: &[SortKey], mut rows: Vec<TextRow>) -> Vec<TextRow> {
        let kinds: Vec<ValueKind> = cols.iter().map(ValueKind::of).collect();
        sort(keys, cols, &kinds, &mut rows).unwrap();
        rows
    }

    #[test]
    fn nulls_first_ascending_last_descending() {
        let cols = [int_col()];
        let rows = vec![row(&[Some("2")]), row(&[None]), row(&[Some("-1")])];
        assert_eq!(
            sorted(&cols, &[key(0, false)], rows.clone()),
            vec![row(&[None]), row(&[Some("-1")]), row(&[Some("2")])]
        );
        assert_eq!(
            sorted(&cols, &[key(0, true)], rows),
            vec![row(&[Some("2")]), row(&[Some("-1")]), row(&[None])]
        );
    }

    #[test]
    fn numbers_sort_numerically_not_as_text() {
        let cols = [int_col()];
        let rows = vec![row(&[Some("10")]), row(&[Some("9")]), row(&[Some("-20")])];
        assert_eq!(
            sorted(&cols, &[key(0, false)], rows),
            vec![row(&[Some("-20")]), row(&[Some("9")]), row(&[Some("10")])]
        );
    }

    #[test]
    fn multiple_keys_and_stability() {
        let cols = [text_col(), int_col()];
        let rows = vec![
            row(&[Some("b"), Some("1")]),
            row(&[Some("a"), Some("1")]),
            row(&[Some("B"), Some("2")]),
            row(&[Some("A"), Some("1")]),
        ];
        assert_eq!(
            sorted(&cols, &[key(1, true), key(0, false)], rows),
            vec![
                row(&[Some("B"), Some("2")]),
                row(&[Some("a"), Some("1")]),
                row(&[Some("A"), Some("1")]),
                row(&[Some("b"), Some("1")]),
            ]
        );
    }

    #[test]
    fn enum_order_is_refused() {
        let mut c = text_col();
        c.flags |= value::ENUM_FLAG;
        let kinds = [ValueKind::of(&c)];
        let mut rows = vec![row(&[Some("x")])];
        let err = sort(&[key(0, false)], &[c], &kinds, &mut rows).unwrap_err();
        assert_eq!(err.code, 1235);
    }
}
