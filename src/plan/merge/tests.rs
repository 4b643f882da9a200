//! Pipeline tests of [`merge`](super::merge) and property tests against a reference
//! implementation over the unsplit table.

use bytes::Bytes;
use proptest::prelude::*;

use super::{merge, MergeError};
use crate::plan::spec::{AggregateKind, CompareOp, Filter, Literal, MergeSpec, SortKey};
use crate::protocol::resultset::{ColumnDef, ResultSet, TextRow};
use util::*;

/// Column definitions and rows for the merge tests.
pub mod util {
    use bytes::Bytes;

    use crate::plan::spec::{AggregateKind, AggregateSpec, MergeSpec};
    use crate::protocol::resultset::{
        column_flags, column_type, ColumnDef, TextRow, BINARY_CHARSET,
    };

    fn numeric(column_type: u8, decimals: u8) -> ColumnDef {
        ColumnDef {
            column_type,
            charset: BINARY_CHARSET,
            flags: column_flags::BINARY,
            decimals,
            ..ColumnDef::text("n")
        }
    }

    /// INT.
    pub fn int_col() -> ColumnDef {
        numeric(column_type::LONG, 0)
    }

    /// BIGINT (what COUNT returns).
    pub fn bigint_col() -> ColumnDef {
        ColumnDef::bigint("n")
    }

    /// DECIMAL(…, scale) (what SUM of a DECIMAL or of an integer returns).
    pub fn dec_col(scale: u8) -> ColumnDef {
        numeric(column_type::NEWDECIMAL, scale)
    }

    /// The DECIMAL column of an AVG with `decimals` digits.
    pub fn avg_col(decimals: u8) -> ColumnDef {
        numeric(column_type::NEWDECIMAL, decimals)
    }

    /// DOUBLE without fixed decimals.
    pub fn double_col() -> ColumnDef {
        numeric(column_type::DOUBLE, 31)
    }

    /// DATETIME.
    pub fn datetime_col() -> ColumnDef {
        numeric(column_type::DATETIME, 0)
    }

    /// VARCHAR utf8mb4_general_ci.
    pub fn text_col() -> ColumnDef {
        ColumnDef::text("s")
    }

    /// VARBINARY.
    pub fn bin_col() -> ColumnDef {
        ColumnDef {
            charset: BINARY_CHARSET,
            flags: column_flags::BINARY,
            ..ColumnDef::text("b")
        }
    }

    /// One aggregate of the merge.
    pub fn agg(column: usize, kind: AggregateKind) -> AggregateSpec {
        AggregateSpec { column, kind }
    }

    /// `SELECT AGG(x)`: one aggregate in column 0, no grouping.
    pub fn one_aggregate(kind: AggregateKind) -> MergeSpec {
        MergeSpec {
            visible_columns: 1,
            aggregates: vec![agg(0, kind)],
            ..Default::default()
        }
    }

    /// `SELECT g, AGG(x) … GROUP BY g`: the group key in column 0, the aggregate in column 1.
    pub fn grouped_by_first(kind: AggregateKind) -> MergeSpec {
        MergeSpec {
            visible_columns: 2,
            group_by: vec![0],
            aggregates: vec![agg(1, kind)],
            ..Default::default()
        }
    }

    /// `SELECT AVG(x)` as the shards answer it: the AVG in column 0, its hidden SUM and COUNT
    /// in columns 1 and 2.
    pub fn avg_spec() -> MergeSpec {
        MergeSpec {
            visible_columns: 1,
            aggregates: vec![agg(
                0,
                AggregateKind::Avg {
                    sum_column: 1,
                    count_column: 2,
                },
            )],
            ..Default::default()
        }
    }

    /// A row from optional strings.
    pub fn row(values: &[Option<&str>]) -> TextRow {
        values
            .iter()
            .map(|v| v.map(|s| Bytes::copy_from_slice(s.as_bytes())))
            .collect()
    }
}

fn rs(columns: &[ColumnDef], rows: Vec<TextRow>) -> ResultSet {
    ResultSet {
        columns: columns.to_vec(),
        rows,
        warnings: 0,
    }
}

fn key(column: usize, descending: bool) -> SortKey {
    SortKey { column, descending }
}

#[test]
fn no_inputs_is_an_error() {
    let err = merge(&MergeSpec::default(), vec![]).unwrap_err();
    assert_eq!(err.code, 1105);
}

#[test]
fn column_count_mismatch_is_an_error() {
    let spec = MergeSpec {
        visible_columns: 1,
        ..Default::default()
    };
    let a = rs(&[int_col()], vec![row(&[Some("1")])]);
    let b = rs(&[int_col(), int_col()], vec![row(&[Some("1"), Some("2")])]);
    let err = merge(&spec, vec![a, b]).unwrap_err();
    assert_eq!(err.code, 1222);
    assert_eq!(err.sqlstate, "21000");
    // A row with the wrong number of values is refused as well.
    let a = rs(&[int_col()], vec![row(&[Some("1"), Some("2")])]);
    assert_eq!(merge(&spec, vec![a]).unwrap_err().code, 1222);
}

#[test]
fn type_mismatch_is_an_error() {
    let spec = MergeSpec {
        visible_columns: 1,
        ..Default::default()
    };
    let a = rs(&[int_col()], vec![]);
    let b = rs(&[text_col()], vec![]);
    assert!(merge(&spec, vec![a, b]).is_err());
}

#[test]
fn spec_out_of_range_is_an_error() {
    let a = rs(&[int_col()], vec![]);
    for spec in [
        MergeSpec {
            visible_columns: 2,
            ..Default::default()
        },
        MergeSpec {
            visible_columns: 1,
            order_by: vec![key(1, false)],
            ..Default::default()
        },
        MergeSpec {
            visible_columns: 1,
            aggregates: vec![agg(
                0,
                AggregateKind::Avg {
                    sum_column: 1,
                    count_column: 0,
                },
            )],
            ..Default::default()
        },
        MergeSpec {
            visible_columns: 1,
            having: Some(Box::new(Filter::IsNull {
                column: 3,
                negated: false,
            })),
            ..Default::default()
        },
    ] {
        let err: MergeError = merge(&spec, vec![a.clone()]).unwrap_err();
        assert_eq!(err.code, 1105, "{spec:?}");
    }
}

#[test]
fn concatenates_in_shard_order_sums_warnings_and_drops_hidden_columns() {
    let cols = [int_col(), text_col()];
    let spec = MergeSpec {
        visible_columns: 1,
        ..Default::default()
    };
    let mut a = rs(&cols, vec![row(&[Some("2"), Some("x")])]);
    a.warnings = 2;
    let mut b = rs(&cols, vec![row(&[Some("1"), Some("y")])]);
    b.warnings = 3;
    let mut c = rs(&cols, vec![]);
    c.columns[0].name = Bytes::from_static(b"other");
    let out = merge(&spec, vec![a, b, c]).unwrap();
    assert_eq!(out.columns, vec![int_col()]);
    assert_eq!(out.rows, vec![row(&[Some("2")]), row(&[Some("1")])]);
    assert_eq!(out.warnings, 5);
}

#[test]
fn warnings_saturate() {
    let mut a = rs(&[int_col()], vec![]);
    a.warnings = u16::MAX;
    let b = a.clone();
    let spec = MergeSpec {
        visible_columns: 1,
        ..Default::default()
    };
    assert_eq!(merge(&spec, vec![a, b]).unwrap().warnings, u16::MAX);
}

#[test]
fn order_by_with_limit_and_offset_across_shards() {
    let cols = [int_col()];
    let spec = MergeSpec {
        visible_columns: 1,
        order_by: vec![key(0, true)],
        offset: 1,
        limit: Some(2),
        ..Default::default()
    };
    let a = rs(&cols, vec![row(&[Some("9")]), row(&[Some("3")])]);
    let b = rs(&cols, vec![row(&[Some("10")]), row(&[None])]);
    let c = rs(&cols, vec![]);
    let out = merge(&spec, vec![a.clone(), b.clone(), c]).unwrap();
    assert_eq!(out.rows, vec![row(&[Some("9")]), row(&[Some("3")])]);
    let spec = MergeSpec { offset: 4, ..spec };
    assert!(merge(&spec, vec![a, b]).unwrap().rows.is_empty());
}

#[test]
fn order_by_hidden_column() {
    // SELECT name FROM t ORDER BY id: id is a hidden trailing column.
    let cols = [text_col(), int_col()];
    let spec = MergeSpec {
        visible_columns: 1,
        order_by: vec![key(1, false)],
        ..Default::default()
    };
    let a = rs(&cols, vec![row(&[Some("c"), Some("3")])]);
    let b = rs(
        &cols,
        vec![row(&[Some("a"), Some("1")]), row(&[Some("b"), Some("2")])],
    );
    let out = merge(&spec, vec![a, b]).unwrap();
    assert_eq!(out.columns.len(), 1);
    assert_eq!(
        out.rows,
        vec![row(&[Some("a")]), row(&[Some("b")]), row(&[Some("c")])]
    );
}

#[test]
fn group_by_without_order_by_sorts_by_group_keys_like_mariadb() {
    // MariaDB 10.11 sorts GROUP BY results by the group keys (NULL first).
    let cols = [text_col(), bigint_col()];
    let spec = grouped_by_first(AggregateKind::Count);
    let a = rs(
        &cols,
        vec![row(&[Some("b"), Some("1")]), row(&[Some("a"), Some("2")])],
    );
    let b = rs(
        &cols,
        vec![
            row(&[Some("A"), Some("1")]),
            row(&[None, Some("1")]),
            row(&[Some("B "), Some("5")]),
        ],
    );
    let out = merge(&spec, vec![a, b]).unwrap();
    assert_eq!(
        out.rows,
        vec![
            row(&[None, Some("1")]),
            row(&[Some("a"), Some("3")]),
            row(&[Some("b"), Some("6")]),
        ]
    );
}

#[test]
fn having_applies_to_merged_groups() {
    // SELECT g, SUM(d) FROM t GROUP BY g HAVING SUM(d) > 1 — each shard alone is below 1.
    let cols = [text_col(), dec_col(2)];
    let spec = MergeSpec {
        visible_columns: 2,
        group_by: vec![0],
        aggregates: vec![agg(1, AggregateKind::Sum)],
        having: Some(Box::new(Filter::Compare {
            column: 1,
            op: CompareOp::Gt,
            value: Literal::Number("1".into()),
        })),
        order_by: vec![key(1, true)],
        ..Default::default()
    };
    let a = rs(
        &cols,
        vec![
            row(&[Some("x"), Some("0.60")]),
            row(&[Some("y"), Some("0.50")]),
        ],
    );
    let b = rs(
        &cols,
        vec![
            row(&[Some("x"), Some("0.60")]),
            row(&[Some("y"), Some("0.50")]),
        ],
    );
    let out = merge(&spec, vec![a, b]).unwrap();
    assert_eq!(out.rows, vec![row(&[Some("x"), Some("1.20")])]);
}

#[test]
fn decimal_sum_across_shards_point_one_plus_point_two() {
    let cols = [dec_col(2)];
    let spec = one_aggregate(AggregateKind::Sum);
    let a = rs(&cols, vec![row(&[Some("0.10")])]);
    let b = rs(&cols, vec![row(&[Some("0.20")])]);
    let c = rs(&cols, vec![row(&[None])]);
    let out = merge(&spec, vec![a, b, c]).unwrap();
    assert_eq!(out.rows, vec![row(&[Some("0.30")])]);
}

#[test]
fn count_over_empty_shards() {
    // SELECT COUNT(*) FROM t, every shard empty: each answers 0 (or, defensively, no row).
    let cols = [bigint_col()];
    let spec = one_aggregate(AggregateKind::Count);
    let out = merge(
        &spec,
        vec![
            rs(&cols, vec![row(&[Some("0")])]),
            rs(&cols, vec![]),
            rs(&cols, vec![row(&[Some("0")])]),
        ],
    )
    .unwrap();
    assert_eq!(out.rows, vec![row(&[Some("0")])]);
    // GROUP BY over empty shards: no rows.
    let spec = MergeSpec {
        visible_columns: 1,
        group_by: vec![0],
        ..spec
    };
    let out = merge(&spec, vec![rs(&cols, vec![]), rs(&cols, vec![])]).unwrap();
    assert!(out.rows.is_empty());
}

#[test]
fn avg_across_shards_with_hidden_helpers() {
    // SELECT AVG(i) FROM t → shards run AVG(i), SUM(i), COUNT(i).
    let cols = [avg_col(4), dec_col(0), bigint_col()];
    let spec = avg_spec();
    let a = rs(&cols, vec![row(&[Some("1.0000"), Some("1"), Some("1")])]);
    let b = rs(&cols, vec![row(&[Some("0.0000"), Some("0"), Some("31")])]);
    let out = merge(&spec, vec![a, b]).unwrap();
    // 1/32 = 0.03125 → 0.0313 (MariaDB rounds half away from zero).
    assert_eq!(out.rows, vec![row(&[Some("0.0313")])]);
    assert_eq!(out.columns, vec![avg_col(4)]);
}

#[test]
fn distinct_then_order_then_limit() {
    let cols = [text_col()];
    let spec = MergeSpec {
        visible_columns: 1,
        distinct: true,
        order_by: vec![key(0, false)],
        limit: Some(2),
        ..Default::default()
    };
    let a = rs(&cols, vec![row(&[Some("b")]), row(&[Some("a")])]);
    let b = rs(
        &cols,
        vec![row(&[Some("B")]), row(&[Some("A")]), row(&[None])],
    );
    let out = merge(&spec, vec![a, b]).unwrap();
    assert_eq!(out.rows, vec![row(&[None]), row(&[Some("a")])]);
}

#[test]
fn time_orders_by_value() {
    let mut col = ColumnDef::text("t");
    col.column_type = crate::protocol::resultset::column_type::TIME;
    col.charset = 63;
    let spec = MergeSpec {
        visible_columns: 1,
        order_by: vec![key(0, false)],
        ..Default::default()
    };
    let a = rs(
        std::slice::from_ref(&col),
        vec![row(&[Some("100:00:00")]), row(&[Some("-00:00:01")])],
    );
    let b = rs(
        std::slice::from_ref(&col),
        vec![
            row(&[Some("00:00:00")]),
            row(&[Some("-01:00:00")]),
            row(&[None]),
        ],
    );
    let out = merge(&spec, vec![a, b]).unwrap();
    // Checked against MariaDB 10.11: NULL, -01:00:00, -00:00:01, 00:00:00, 100:00:00.
    assert_eq!(
        out.rows,
        vec![
            row(&[None]),
            row(&[Some("-01:00:00")]),
            row(&[Some("-00:00:01")]),
            row(&[Some("00:00:00")]),
            row(&[Some("100:00:00")]),
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// Property tests: split a random table over 1–4 shards, let each "shard" compute its part the
// way MariaDB would, merge, and compare with a straightforward computation over the whole table.

/// A table row: unique id, nullable int, nullable string, nullable DECIMAL(10,2) in cents.
#[derive(Debug, Clone)]
struct Row {
    id: i64,
    a: Option<i64>,
    s: Option<&'static str>,
    d: Option<i64>,
}

const STRINGS: &[&str] = &["a", "A", "b", "B ", "b", "c", "", "ab", "Ab"];

fn cents(c: i64) -> String {
    let sign = if c < 0 { "-" } else { "" };
    format!("{sign}{}.{:02}", c.abs() / 100, c.abs() % 100)
}

/// The collation key the reference uses: lower case, trailing spaces removed.
fn ci(s: &str) -> String {
    s.trim_end_matches(' ').to_lowercase()
}

fn row_strategy() -> impl Strategy<Value = (Option<i64>, Option<&'static str>, Option<i64>)> {
    (
        proptest::option::weighted(0.8, -5i64..5),
        proptest::option::weighted(0.8, proptest::sample::select(STRINGS)),
        proptest::option::weighted(0.8, -100_000i64..100_000),
    )
}

fn table_strategy() -> impl Strategy<Value = (Vec<Row>, Vec<usize>, usize)> {
    (1usize..=4).prop_flat_map(|shards| {
        proptest::collection::vec((row_strategy(), 0..shards), 0..40).prop_map(move |v| {
            let rows = v
                .iter()
                .enumerate()
                .map(|(i, ((a, s, d), _))| Row {
                    id: i as i64,
                    a: *a,
                    s: *s,
                    d: *d,
                })
                .collect();
            let placement = v.iter().map(|(_, p)| *p).collect();
            (rows, placement, shards)
        })
    })
}

fn split(rows: &[Row], placement: &[usize], shards: usize) -> Vec<Vec<Row>> {
    let mut out = vec![Vec::new(); shards];
    for (r, &p) in rows.iter().zip(placement) {
        out[p].push(r.clone());
    }
    out
}

/// The reference order of one column: NULL first, then by value.
fn cmp_col(a: &Row, b: &Row, col: usize) -> std::cmp::Ordering {
    match col {
        0 => a.id.cmp(&b.id),
        1 => a.a.cmp(&b.a),
        2 => a.s.map(ci).cmp(&b.s.map(ci)),
        _ => a.d.cmp(&b.d),
    }
}

fn ref_sort(rows: &mut [Row], keys: &[(usize, bool)]) {
    rows.sort_by(|x, y| {
        for &(c, desc) in keys {
            let o = cmp_col(x, y, c);
            let o = if desc { o.reverse() } else { o };
            if o.is_ne() {
                return o;
            }
        }
        std::cmp::Ordering::Equal
    });
}

fn sort_columns() -> Vec<ColumnDef> {
    vec![int_col(), int_col(), text_col(), dec_col(2)]
}

fn to_text(r: &Row) -> TextRow {
    vec![
        Some(Bytes::from(r.id.to_string())),
        r.a.map(|v| Bytes::from(v.to_string())),
        r.s.map(|s| Bytes::from(s.to_string())),
        r.d.map(|c| Bytes::from(cents(c))),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    /// ORDER BY k1, k2 …, id LIMIT: each shard sorts and applies LIMIT offset+limit (as the
    /// planner pushes it down); the merge must equal sorting the whole table.
    #[test]
    fn order_by_limit_matches_reference(
        (rows, placement, shards) in table_strategy(),
        keys in proptest::collection::vec((1usize..4, any::<bool>()), 0..3),
        offset in 0u64..10,
        limit in proptest::option::of(0u64..15),
        id_desc in any::<bool>(),
    ) {
        let mut keys = keys;
        keys.push((0, id_desc));
        let pushed = limit.map(|l| (offset + l) as usize);
        let inputs: Vec<ResultSet> = split(&rows, &placement, shards)
            .into_iter()
            .map(|mut part| {
                ref_sort(&mut part, &keys);
                if let Some(n) = pushed {
                    part.truncate(n);
                }
                rs(&sort_columns(), part.iter().map(to_text).collect())
            })
            .collect();
        let spec = MergeSpec {
            visible_columns: 4,
            order_by: keys.iter().map(|&(c, d)| key(c, d)).collect(),
            offset,
            limit,
            ..Default::default()
        };
        let out = merge(&spec, inputs).unwrap();
        let mut expected = rows.clone();
        ref_sort(&mut expected, &keys);
        let expected: Vec<TextRow> = expected
            .iter()
            .skip(offset as usize)
            .take(limit.map_or(usize::MAX, |l| l as usize))
            .map(to_text)
            .collect();
        prop_assert_eq!(out.rows, expected);
    }

    /// SELECT s, COUNT(*), SUM(d), MIN(a), MAX(a), AVG(a) FROM t GROUP BY s (or without
    /// GROUP BY): shards aggregate their rows, the merge recombines; equal to aggregating the
    /// whole table.
    #[test]
    fn group_by_aggregates_match_reference(
        (rows, placement, shards) in table_strategy(),
        grouped in any::<bool>(),
        empty_shards_answer_nothing in any::<bool>(),
    ) {
        let parts = split(&rows, &placement, shards);
        let inputs: Vec<ResultSet> = parts
            .iter()
            .map(|part| {
                let mut out = reference_aggregate(part, grouped);
                if !grouped && part.is_empty() && empty_shards_answer_nothing {
                    out.clear();
                }
                rs(&aggregate_columns(), out)
            })
            .collect();
        let spec = MergeSpec {
            visible_columns: 6,
            group_by: if grouped { vec![0] } else { vec![] },
            aggregates: vec![
                agg(1, AggregateKind::Count),
                agg(2, AggregateKind::Sum),
                agg(3, AggregateKind::Min),
                agg(4, AggregateKind::Max),
                agg(5, AggregateKind::Avg { sum_column: 6, count_column: 7 }),
            ],
            ..Default::default()
        };
        let out = merge(&spec, inputs).unwrap();
        // The reference runs over the rows in shard order (that decides each group's first
        // value) and sorts groups by key as MariaDB does.
        let concatenated: Vec<Row> = parts.concat();
        let mut expected = reference_aggregate(&concatenated, grouped);
        for r in &mut expected {
            r.truncate(6);
        }
        if !grouped {
            // A no-GROUP-BY aggregate takes s from a row of a shard that had rows.
            expected[0][0] = concatenated.first().and_then(|r| r.s).map(|s| Bytes::from(s.to_string()));
        }
        prop_assert_eq!(out.rows, expected);
    }
}

/// s, COUNT(*), SUM(d), MIN(a), MAX(a), AVG(a), and the hidden SUM(a), COUNT(a).
fn aggregate_columns() -> Vec<ColumnDef> {
    vec![
        text_col(),
        bigint_col(),
        dec_col(2),
        int_col(),
        int_col(),
        avg_col(4),
        dec_col(0),
        bigint_col(),
    ]
}

/// What one MariaDB server answers for the aggregate over `rows`, groups sorted by key.
fn reference_aggregate(rows: &[Row], grouped: bool) -> Vec<TextRow> {
    let mut groups: Vec<(Option<String>, Vec<&Row>)> = Vec::new();
    for r in rows {
        let k = if grouped { r.s.map(ci) } else { None };
        match groups.iter_mut().find(|(gk, _)| *gk == k) {
            Some((_, v)) => v.push(r),
            None => groups.push((k, vec![r])),
        }
    }
    if !grouped && groups.is_empty() {
        groups.push((None, vec![]));
    }
    groups.sort_by(|x, y| x.0.cmp(&y.0));
    groups
        .into_iter()
        .map(|(_, g)| {
            let s = g.first().and_then(|r| r.s);
            let count = g.len();
            let ds: Vec<i64> = g.iter().filter_map(|r| r.d).collect();
            let sum_d = (!ds.is_empty()).then(|| cents(ds.iter().sum()));
            let as_: Vec<i64> = g.iter().filter_map(|r| r.a).collect();
            let min_a = as_.iter().min().map(|v| v.to_string());
            let max_a = as_.iter().max().map(|v| v.to_string());
            let sum_a: i64 = as_.iter().sum();
            let avg_a = (!as_.is_empty()).then(|| avg4(sum_a, as_.len() as i64));
            let t = |s: Option<String>| s.map(Bytes::from);
            vec![
                t(s.map(str::to_string)),
                t(Some(count.to_string())),
                t(sum_d),
                t(min_a),
                t(max_a),
                t(avg_a),
                t((!as_.is_empty()).then(|| sum_a.to_string())),
                t(Some(as_.len().to_string())),
            ]
        })
        .collect()
}

/// sum / count with 4 decimals, rounded half away from zero.
fn avg4(sum: i64, count: i64) -> String {
    let n = sum * 10_000;
    let mut q = n / count;
    let r = n % count;
    if 2 * r.abs() >= count {
        q += n.signum();
    }
    let sign = if q < 0 { "-" } else { "" };
    format!("{sign}{}.{:04}", q.abs() / 10_000, q.abs() % 10_000)
}

/// Rough cost figures for the module documentation:
/// `cargo test --release --lib cost_figures -- --ignored --nocapture`.
#[test]
#[ignore]
fn cost_figures() {
    let cols = [int_col(), text_col(), dec_col(2)];
    let shards = 4;
    let per_shard = 25_000;
    let inputs: Vec<ResultSet> = (0..shards)
        .map(|s| {
            let rows = (0..per_shard)
                .map(|i| {
                    let n = (i * 7919 + s * 104_729) % 100_003;
                    vec![
                        Some(Bytes::from(n.to_string())),
                        Some(Bytes::from(format!("Name {}", n % 5000))),
                        Some(Bytes::from(format!("{}.{:02}", n % 1000, n % 100))),
                    ]
                })
                .collect();
            rs(&cols, rows)
        })
        .collect();
    let cases = [
        (
            "ORDER BY int LIMIT 100",
            MergeSpec {
                visible_columns: 3,
                order_by: vec![key(0, false)],
                limit: Some(100),
                ..Default::default()
            },
        ),
        (
            "ORDER BY text, int",
            MergeSpec {
                visible_columns: 3,
                order_by: vec![key(1, false), key(0, false)],
                ..Default::default()
            },
        ),
        (
            "GROUP BY text, COUNT, SUM(decimal)",
            MergeSpec {
                visible_columns: 3,
                group_by: vec![1],
                aggregates: vec![agg(0, AggregateKind::Count), agg(2, AggregateKind::Sum)],
                ..Default::default()
            },
        ),
    ];
    for (name, spec) in cases {
        let input = inputs.clone();
        let start = std::time::Instant::now();
        let out = merge(&spec, input).unwrap();
        eprintln!(
            "{name}: {} input rows → {} rows in {:?}",
            shards * per_shard,
            out.rows.len(),
            start.elapsed()
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// SELECT s, SUM(d) FROM t GROUP BY s HAVING SUM(d) > x (optionally OR s IS NULL): HAVING
    /// must see whole groups, never a shard's part.
    #[test]
    fn having_sees_merged_groups(
        (rows, placement, shards) in table_strategy(),
        threshold in -200_000i64..200_000,
        or_null in any::<bool>(),
    ) {
        let parts = split(&rows, &placement, shards);
        let cols = [text_col(), dec_col(2)];
        let shard_answer = |part: &[Row]| -> Vec<TextRow> {
            reference_aggregate(part, true)
                .into_iter()
                .map(|r| vec![r[0].clone(), r[2].clone()])
                .collect()
        };
        let inputs: Vec<ResultSet> = parts.iter().map(|p| rs(&cols, shard_answer(p))).collect();
        let compare = Filter::Compare {
            column: 1,
            op: CompareOp::Gt,
            value: Literal::Number(cents(threshold)),
        };
        let having = if or_null {
            Filter::Or(
                Box::new(compare),
                Box::new(Filter::IsNull { column: 0, negated: false }),
            )
        } else {
            compare
        };
        let spec = MergeSpec {
            visible_columns: 2,
            group_by: vec![0],
            aggregates: vec![agg(1, AggregateKind::Sum)],
            having: Some(Box::new(having)),
            ..Default::default()
        };
        let out = merge(&spec, inputs).unwrap();
        let concatenated = parts.concat();
        let expected: Vec<TextRow> = reference_aggregate(&concatenated, true)
            .into_iter()
            .filter(|r| {
                let sum: Option<i64> = concatenated
                    .iter()
                    .filter(|x| x.s.map(ci) == r[0].as_deref().map(|b| ci(std::str::from_utf8(b).unwrap())))
                    .filter_map(|x| x.d)
                    .fold(None, |acc, d| Some(acc.unwrap_or(0) + d));
                sum.is_some_and(|s| s > threshold) || (or_null && r[0].is_none())
            })
            .map(|r| vec![r[0].clone(), r[2].clone()])
            .collect();
        prop_assert_eq!(out.rows, expected);
    }

    /// SELECT DISTINCT s, a FROM t ORDER BY s DESC, a: shards answer their own distinct rows;
    /// the merge removes duplicates across shards.
    #[test]
    fn distinct_matches_reference(
        (rows, placement, shards) in table_strategy(),
        limit in proptest::option::of(0u64..20),
    ) {
        let keys = [(2usize, true), (1usize, false)];
        let distinct_rows = |rows: &[Row]| -> Vec<Row> {
            let mut seen: Vec<(Option<String>, Option<i64>)> = Vec::new();
            let mut out = Vec::new();
            for r in rows {
                let k = (r.s.map(ci), r.a);
                if !seen.contains(&k) {
                    seen.push(k);
                    out.push(r.clone());
                }
            }
            ref_sort(&mut out, &keys);
            out
        };
        let project = |r: &Row| -> TextRow {
            let t = to_text(r);
            vec![t[2].clone(), t[1].clone()]
        };
        let cols = [text_col(), int_col()];
        let parts = split(&rows, &placement, shards);
        let inputs: Vec<ResultSet> = parts
            .iter()
            .map(|p| rs(&cols, distinct_rows(p).iter().map(project).collect()))
            .collect();
        let spec = MergeSpec {
            visible_columns: 2,
            distinct: true,
            order_by: vec![key(0, true), key(1, false)],
            limit,
            ..Default::default()
        };
        let out = merge(&spec, inputs).unwrap();
        let expected: Vec<TextRow> = distinct_rows(&parts.concat())
            .iter()
            .take(limit.map_or(usize::MAX, |l| l as usize))
            .map(project)
            .collect();
        prop_assert_eq!(out.rows, expected);
    }
}

/// `SELECT SUM(DISTINCT x), AVG(DISTINCT x) FROM t`: the shards grouped by `x` (column 4), so a
/// value found on two shards must count once.
#[test]
fn sum_and_avg_distinct_count_each_value_once() {
    let spec = MergeSpec {
        visible_columns: 2,
        pre_group_by: vec![4],
        aggregates: vec![
            util::agg(0, AggregateKind::SumDistinct),
            util::agg(
                1,
                AggregateKind::AvgDistinct {
                    sum_column: 2,
                    count_column: 3,
                },
            ),
        ],
        ..Default::default()
    };
    let cols = [dec_col(2), avg_col(6), dec_col(2), bigint_col(), dec_col(2)];
    let r = |x: Option<&str>, n: &str| row(&[x, x, x, Some(n), x]);
    let a = rs(
        &cols,
        vec![r(Some("1.00"), "1"), r(Some("2.00"), "1"), r(None, "0")],
    );
    let b = rs(&cols, vec![r(Some("2.00"), "1"), r(Some("4.00"), "1")]);
    let out = merge(&spec, vec![a, b]).unwrap();
    assert_eq!(out.rows, vec![row(&[Some("7.00"), Some("2.333333")])]);
    // No rows anywhere: NULL, NULL.
    let out = merge(&spec, vec![rs(&cols, vec![]), rs(&cols, vec![])]).unwrap();
    assert_eq!(out.rows, vec![row(&[None, None])]);
}

/// `SELECT g, SUM(a)/COUNT(*) FROM t GROUP BY g`: the ratio of the merged totals, printed with
/// the column's scale, replaces the shards' ratios of their parts.
#[test]
fn computed_columns_use_the_merged_parts() {
    use crate::plan::spec::{ArithOp, Calc, Computed};
    let spec = MergeSpec {
        visible_columns: 2,
        group_by: vec![0],
        aggregates: vec![
            util::agg(2, AggregateKind::Sum),
            util::agg(3, AggregateKind::Count),
        ],
        computed: vec![Computed {
            column: 1,
            expr: Calc::Arith {
                op: ArithOp::Div,
                left: Box::new(Calc::Column(2)),
                right: Box::new(Calc::Column(3)),
            },
        }],
        order_by: vec![key(1, true)],
        ..Default::default()
    };
    let cols = [text_col(), dec_col(6), dec_col(2), bigint_col()];
    let a = rs(
        &cols,
        vec![
            row(&[Some("p"), Some("1.100000"), Some("1.10"), Some("1")]),
            row(&[Some("q"), Some("2.250000"), Some("2.25"), Some("1")]),
        ],
    );
    let b = rs(
        &cols,
        vec![row(&[Some("p"), Some("0.000000"), Some("0.00"), Some("2")])],
    );
    let out = merge(&spec, vec![a, b]).unwrap();
    assert_eq!(
        out.rows,
        vec![
            row(&[Some("q"), Some("2.250000")]),
            row(&[Some("p"), Some("0.366667")]),
        ]
    );
}

/// `GROUP_CONCAT(x ORDER BY x DESC SEPARATOR '|')`: shard rows per (value) with their counts;
/// a value on two shards adds its counts, NULLs are skipped.
#[test]
fn group_concat_joins_sorted_values_with_their_counts() {
    use crate::plan::spec::GroupConcat;
    let spec = MergeSpec {
        visible_columns: 1,
        pre_group_by: vec![1],
        aggregates: vec![util::agg(
            0,
            AggregateKind::GroupConcat(Box::new(GroupConcat {
                value: 1,
                keys: vec![key(1, true)],
                separator: "|".into(),
                count: Some(2),
            })),
        )],
        ..Default::default()
    };
    let cols = [text_col(), int_col(), bigint_col()];
    let r = |x: Option<&str>, n: &str| row(&[x, x, Some(n)]);
    let a = rs(
        &cols,
        vec![r(Some("1"), "2"), r(Some("10"), "1"), r(None, "3")],
    );
    let b = rs(&cols, vec![r(Some("1"), "1"), r(Some("9"), "1")]);
    let out = merge(&spec, vec![a, b]).unwrap();
    assert_eq!(out.rows, vec![row(&[Some("10|9|1|1|1")])]);
    let out = merge(&spec, vec![rs(&cols, vec![])]).unwrap();
    assert_eq!(out.rows, vec![row(&[None])]);
}
