//! DISTINCT over the visible columns: typed equality (so `'a'` = `'A'` in a case-insensitive
//! column, `1.50` = `1.5` in a DECIMAL one), NULLs equal; the first occurrence stays, in order.

use std::collections::HashSet;

use super::value::{self, Key, ValueKind};
use crate::protocol::resultset::TextRow;

/// Removes rows whose first `visible` values equal those of an earlier row.
pub fn distinct(kinds: &[ValueKind], visible: usize, rows: Vec<TextRow>) -> Vec<TextRow> {
    let mut seen: HashSet<Vec<Key>> = HashSet::with_capacity(rows.len());
    rows.into_iter()
        .filter(|row| {
            let key = row[..visible]
                .iter()
                .zip(kinds)
                .map(|(v, &k)| value::key(k, v.as_deref()))
                .collect();
            seen.insert(key)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::merge::tests::util::*;
    use crate::protocol::resultset::ColumnDef;

    fn kinds(cols: &[ColumnDef]) -> Vec<ValueKind> {
        cols.iter().map(ValueKind::of).collect()
    }

    #[test]
    fn keeps_first_occurrence_and_treats_nulls_equal() {
        let k = kinds(&[text_col(), int_col()]);
        let out = distinct(
            &k,
            2,
            vec![
                row(&[Some("b"), Some("1")]),
                row(&[Some("a"), None]),
                row(&[Some("B "), Some("01")]),
                row(&[Some("A"), None]),
                row(&[None, None]),
                row(&[None, None]),
            ],
        );
        assert_eq!(
            out,
            vec![
                row(&[Some("b"), Some("1")]),
                row(&[Some("a"), None]),
                row(&[None, None]),
            ]
        );
    }

    #[test]
    fn only_visible_columns_count() {
        let k = kinds(&[int_col(), int_col()]);
        let out = distinct(
            &k,
            1,
            vec![row(&[Some("1"), Some("5")]), row(&[Some("1"), Some("6")])],
        );
        assert_eq!(out, vec![row(&[Some("1"), Some("5")])]);
    }

    #[test]
    fn binary_is_case_sensitive() {
        let k = kinds(&[bin_col()]);
        let out = distinct(&k, 1, vec![row(&[Some("a")]), row(&[Some("A")])]);
        assert_eq!(out.len(), 2);
    }
}
