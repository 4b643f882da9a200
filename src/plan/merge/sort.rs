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
    rows: &mut Vec<TextRow>,
) -> Result<(), MergeError> {
    sort_top(keys, columns, kinds, rows, None)
}

/// Like [`sort`], but only the first `keep` rows of the result need to be in place: the rows
/// after them are dropped. The kept rows are exactly the first `keep` of a full stable sort.
pub fn sort_top(
    keys: &[SortKey],
    columns: &[ColumnDef],
    kinds: &[ValueKind],
    rows: &mut Vec<TextRow>,
    keep: Option<usize>,
) -> Result<(), MergeError> {
    check_orderable(keys, columns)?;
    sort_rows(keys, kinds, rows, keep);
    Ok(())
}

/// Refuses ordering by an ENUM or SET column: a server sorts those by member index, which the
/// text of the values does not show, so the proxy could not order shards' rows as one server.
pub fn check_orderable(keys: &[SortKey], columns: &[ColumnDef]) -> Result<(), MergeError> {
    match keys
        .iter()
        .find(|k| value::sorts_by_hidden_order(&columns[k.column]))
    {
        Some(k) => Err(MergeError::not_supported(format!(
            "merge: ordering by the ENUM/SET column {} across shards (order by its member \
             index, col+0, instead)",
            k.column
        ))),
        None => Ok(()),
    }
}

/// Decorate (parse every sort value once), sort row indices with the original position as the
/// last key (so an unstable sort or a partial selection gives the stable order), undecorate.
fn sort_rows(keys: &[SortKey], kinds: &[ValueKind], rows: &mut Vec<TextRow>, keep: Option<usize>) {
    let n = rows.len();
    let keep = keep.unwrap_or(n).min(n);
    if keys.is_empty() || n < 2 {
        rows.truncate(keep);
        return;
    }
    let mut order: Vec<usize> = {
        let decorated: Vec<Vec<SortVal>> = rows
            .iter()
            .map(|r| {
                keys.iter()
                    .map(|k| SortVal::new(kinds[k.column], r[k.column].as_deref()))
                    .collect()
            })
            .collect();
        let cmp = |&a: &usize, &b: &usize| {
            for (i, k) in keys.iter().enumerate() {
                let o = decorated[a][i].cmp(&decorated[b][i], kinds[k.column]);
                let o = if k.descending { o.reverse() } else { o };
                if o != Ordering::Equal {
                    return o;
                }
            }
            a.cmp(&b)
        };
        let mut order: Vec<usize> = (0..n).collect();
        if keep == 0 {
            order.clear();
        } else if keep < n {
            order.select_nth_unstable_by(keep - 1, cmp);
            order.truncate(keep);
            order.sort_unstable_by(cmp);
        } else {
            order.sort_unstable_by(cmp);
        }
        order
    };
    let mut taken: Vec<Option<TextRow>> = std::mem::take(rows).into_iter().map(Some).collect();
    rows.extend(
        order
            .drain(..)
            .map(|i| taken[i].take().expect("each index once")),
    );
}

/// A sort value parsed once: the common cases compare without re-parsing; any other pair
/// compares its texts through [`value::compare`], so the order is exactly
/// [`value::compare_nullable`]'s.
struct SortVal<'a> {
    text: Option<&'a [u8]>,
    parsed: Parsed<'a>,
}

enum Parsed<'a> {
    No,
    Int(i128),
    Dec(value::DecimalText<'a>),
    Float(f64),
    Folded(Vec<u32>),
}

impl<'a> SortVal<'a> {
    fn new(kind: ValueKind, text: Option<&'a [u8]>) -> SortVal<'a> {
        let parsed = text
            .and_then(|v| match kind {
                ValueKind::Integer => value::parse_i128(v).map(Parsed::Int),
                ValueKind::Decimal => value::DecimalText::parse(v).map(Parsed::Dec),
                ValueKind::Float => value::parse_f64(v).map(Parsed::Float),
                ValueKind::CaseInsensitive => Some(Parsed::Folded(value::fold(v).collect())),
                _ => None,
            })
            .unwrap_or(Parsed::No);
        SortVal { text, parsed }
    }

    fn cmp(&self, other: &SortVal, kind: ValueKind) -> Ordering {
        let (a, b) = match (self.text, other.text) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(a), Some(b)) => (a, b),
        };
        match (&self.parsed, &other.parsed) {
            (Parsed::Int(x), Parsed::Int(y)) => x.cmp(y),
            (Parsed::Dec(x), Parsed::Dec(y)) => x.cmp(y),
            (Parsed::Float(x), Parsed::Float(y)) => x.partial_cmp(y).unwrap_or(Ordering::Equal),
            (Parsed::Folded(x), Parsed::Folded(y)) => {
                value::compare_padded(x.iter().copied(), y.iter().copied())
            }
            _ => value::compare(kind, a, b),
        }
    }
}

/// The implicit order of GROUP BY results in MariaDB (without ORDER BY): the group keys,
/// ascending. Refused like [`sort`] when a group key is an ENUM or SET column (the planner can
/// order by a hidden `col+0`, the member index, instead).
pub fn sort_groups(
    group_by: &[usize],
    columns: &[ColumnDef],
    kinds: &[ValueKind],
    rows: &mut Vec<TextRow>,
    keep: Option<usize>,
) -> Result<(), MergeError> {
    let keys: Vec<SortKey> = group_by
        .iter()
        .map(|&column| SortKey {
            column,
            descending: false,
        })
        .collect();
    sort_top(&keys, columns, kinds, rows, keep)
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
    fn implicit_group_order_on_enum_is_refused() {
        let mut c = text_col();
        c.flags |= value::SET_FLAG;
        let kinds = [ValueKind::of(&c)];
        let mut rows = vec![row(&[Some("x")])];
        let err = sort_groups(&[0], &[c], &kinds, &mut rows, None).unwrap_err();
        assert_eq!(err.code, 1235);
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

    proptest::proptest! {
        /// The decorated, partially selected sort gives exactly the first rows of a plain
        /// stable sort with [`compare_rows`], for parsable and unparsable values alike.
        #[test]
        fn decorated_sort_equals_plain_stable_sort(
            values in proptest::collection::vec(
                (
                    proptest::option::of(proptest::sample::select(vec![
                        "10", "9", "-1", "1e3", "abc", "", " 5", "0.50", "0.5", "A", "a ", "a\t",
                        "-0", "99999999999999999999999999999999999999999", "ä", "Ä",
                    ])),
                    proptest::option::of(0u8..3),
                ),
                0..30,
            ),
            kind in proptest::sample::select(vec![
                ValueKind::Integer,
                ValueKind::Decimal,
                ValueKind::Float,
                ValueKind::CaseInsensitive,
                ValueKind::BinaryPadded,
                ValueKind::Bytes,
                ValueKind::Time,
            ]),
            desc in proptest::bool::ANY,
            keep in proptest::option::of(0usize..35),
        ) {
            let rows: Vec<TextRow> = values
                .iter()
                .map(|(v, t)| {
                    let t = t.map(|t| t.to_string());
                    row(&[*v, t.as_deref()])
                })
                .collect();
            let kinds = [kind, ValueKind::Integer];
            let keys = [key(0, desc), key(1, !desc)];
            let mut expected = rows.clone();
            expected.sort_by(|a, b| compare_rows(&keys, &kinds, a, b));
            expected.truncate(keep.unwrap_or(usize::MAX));
            let mut got = rows;
            sort_rows(&keys, &kinds, &mut got, keep);
            proptest::prop_assert_eq!(got, expected);
        }
    }
}
