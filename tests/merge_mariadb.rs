//! Differential test of the merge engine against a real MariaDB.
//!
//! One table is split by id range into three "shard" tables in the same database. Each case
//! runs the shard SQL on every shard table, merges the answers with
//! [`shardproxy::plan::merge::merge`], and compares with the original statement run over the
//! whole table: rows must be byte-for-byte equal.
//!
//! Runs against a MariaDB the test harness starts (database `merge_difftest`, as root).

mod harness;

use mysql_async::prelude::*;
use mysql_async::{Column, Conn, Opts, Value};

use shardproxy::plan::merge::merge;
use shardproxy::plan::spec::{
    AggregateKind, AggregateSpec, CompareOp, Filter, Literal, MergeSpec, SortKey,
};
use shardproxy::protocol::resultset::{ColumnDef, ResultSet, TextRow};

const SHARDS: usize = 3;
const ROWS: u64 = 300;

fn column_def(c: &Column) -> ColumnDef {
    ColumnDef {
        schema: c.schema_ref().to_vec().into(),
        table: c.table_ref().to_vec().into(),
        org_table: c.org_table_ref().to_vec().into(),
        name: c.name_ref().to_vec().into(),
        org_name: c.org_name_ref().to_vec().into(),
        charset: c.character_set(),
        length: c.column_length(),
        column_type: c.column_type() as u8,
        flags: c.flags().bits(),
        decimals: c.decimals(),
    }
}

async fn query(conn: &mut Conn, sql: &str) -> ResultSet {
    let mut result = conn
        .query_iter(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let columns: Vec<ColumnDef> = result
        .columns()
        .map(|cs| cs.iter().map(column_def).collect())
        .unwrap_or_default();
    let rows: Vec<mysql_async::Row> = result.collect().await.unwrap();
    drop(result);
    let rows: Vec<TextRow> = rows
        .into_iter()
        .map(|r| {
            r.unwrap()
                .into_iter()
                .map(|v| match v {
                    Value::NULL => None,
                    Value::Bytes(b) => Some(b.into()),
                    other => panic!("text protocol gave {other:?}"),
                })
                .collect()
        })
        .collect();
    ResultSet {
        columns,
        rows,
        warnings: conn.get_warnings(),
    }
}

/// A deterministic pseudo-random sequence (64-bit LCG).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

async fn setup(conn: &mut Conn) {
    conn.query_drop("DROP DATABASE IF EXISTS merge_difftest")
        .await
        .unwrap();
    conn.query_drop("CREATE DATABASE merge_difftest")
        .await
        .unwrap();
    conn.query_drop("USE merge_difftest").await.unwrap();
    let schema =
        "(id INT PRIMARY KEY, g VARCHAR(10) CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci, \
                  i INT, d DECIMAL(20,2), f DOUBLE, u BIGINT UNSIGNED, t TIME, b VARBINARY(10), \
                  lat VARCHAR(10) CHARACTER SET latin1, bn VARCHAR(10) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin, \
                  dt DATETIME(3), fl FLOAT, dd DECIMAL(30,10), ti TINYINT UNSIGNED, ch CHAR(4))";
    let mut tables = vec!["full".to_string()];
    tables.extend((0..SHARDS).map(|s| format!("s{s}")));
    for t in &tables {
        conn.query_drop(format!("CREATE TABLE {t} {schema}"))
            .await
            .unwrap();
    }
    // `_`, `[` and `~` sort after the letters under the case-insensitive collations (they
    // weigh letters as upper case): a merge folding to lower case would put `_` before `a`.
    let groups = [
        "'a'", "'A'", "'b'", "'B '", "'c'", "NULL", "'ab'", "'Ab'", "'_'", "'['", "'z~'",
    ];
    let bins = ["'a'", "'A'", "'b'", "NULL", "'a '"];
    let mut rng = Lcg(42);
    let mut values = Vec::new();
    for id in 1..=ROWS {
        let g = groups[rng.below(groups.len() as u64) as usize];
        let i = if rng.below(8) == 0 {
            "NULL".to_string()
        } else {
            (rng.below(200) as i64 - 100).to_string()
        };
        let d = if rng.below(8) == 0 {
            "NULL".to_string()
        } else {
            let c = rng.below(2_000_000) as i64 - 1_000_000;
            format!(
                "{}{}.{:02}",
                if c < 0 { "-" } else { "" },
                c.abs() / 100,
                c.abs() % 100
            )
        };
        // Multiples of 0.25 add exactly in any order.
        let f = format!("{}", (rng.below(4000) as f64 - 2000.0) * 0.25);
        let u = (u64::MAX - rng.below(1000) * 1_000_000_007).to_string();
        let t = format!(
            "'{}{}:{:02}:{:02}'",
            if rng.below(3) == 0 { "-" } else { "" },
            rng.below(120),
            rng.below(60),
            rng.below(60)
        );
        let b = bins[rng.below(bins.len() as u64) as usize];
        let strs = [
            "'x'", "'X'", "'x '", "'y'", "'Y'", "NULL", "'xy'", "''", "'x_'", "'^'",
        ];
        let lat = strs[rng.below(strs.len() as u64) as usize];
        let bn = strs[rng.below(strs.len() as u64) as usize];
        let ch = strs[rng.below(strs.len() as u64) as usize];
        let dt = format!(
            "'20{:02}-{:02}-{:02} {:02}:{:02}:{:02}.{:03}'",
            rng.below(30),
            1 + rng.below(12),
            1 + rng.below(28),
            rng.below(24),
            rng.below(60),
            rng.below(60),
            rng.below(1000)
        );
        let fl = format!("{}", (rng.below(2000) as f64 - 1000.0) * 0.5);
        let dd = format!(
            "{}{}.{:010}",
            if rng.below(2) == 0 { "-" } else { "" },
            rng.below(1_000_000_000_000),
            rng.below(10_000_000_000)
        );
        let ti = rng.below(256);
        values.push((
            id,
            format!(
                "({id}, {g}, {i}, {d}, {f}, {u}, {t}, {b}, {lat}, {bn}, {dt}, {fl}, {dd}, {ti}, {ch})"
            ),
        ));
    }
    let all: Vec<&str> = values.iter().map(|(_, v)| v.as_str()).collect();
    conn.query_drop(format!("INSERT INTO full VALUES {}", all.join(",")))
        .await
        .unwrap();
    // Range placement keeps the shards' concatenation in id order, the order a full scan of
    // `full` reads, so "first row of a group" is the same row on both sides.
    for s in 0..SHARDS as u64 {
        let part: Vec<&str> = values
            .iter()
            .filter(|(id, _)| (id - 1) * SHARDS as u64 / ROWS == s)
            .map(|(_, v)| v.as_str())
            .collect();
        conn.query_drop(format!("INSERT INTO s{s} VALUES {}", part.join(",")))
            .await
            .unwrap();
    }
}

struct Case {
    /// The client's statement over `{t}` = `full`.
    original: &'static str,
    /// What each shard runs, `{t}` = its table.
    shard: &'static str,
    spec: MergeSpec,
}

fn key(column: usize, descending: bool) -> SortKey {
    SortKey { column, descending }
}

fn agg(column: usize, kind: AggregateKind) -> AggregateSpec {
    AggregateSpec { column, kind }
}

fn count(column: usize) -> AggregateSpec {
    agg(column, AggregateKind::Count)
}

fn count_distinct(column: usize) -> AggregateSpec {
    agg(column, AggregateKind::CountDistinct)
}

fn sum(column: usize) -> AggregateSpec {
    agg(column, AggregateKind::Sum)
}

fn min(column: usize) -> AggregateSpec {
    agg(column, AggregateKind::Min)
}

fn max(column: usize) -> AggregateSpec {
    agg(column, AggregateKind::Max)
}

fn compare(column: usize, op: CompareOp, value: Literal) -> Filter {
    Filter::Compare { column, op, value }
}

fn number(n: &str) -> Literal {
    Literal::Number(n.into())
}

fn text(s: &str) -> Literal {
    Literal::String(s.into())
}

fn or(a: Filter, b: Filter) -> Filter {
    Filter::Or(Box::new(a), Box::new(b))
}

fn and(a: Filter, b: Filter) -> Filter {
    Filter::And(Box::new(a), Box::new(b))
}

fn avg(column: usize, sum_column: usize, count_column: usize) -> AggregateSpec {
    agg(
        column,
        AggregateKind::Avg {
            sum_column,
            count_column,
        },
    )
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            original: "SELECT id, g, i, d FROM {t} ORDER BY g, i DESC, id LIMIT 3, 40",
            shard: "SELECT id, g, i, d FROM {t} ORDER BY g, i DESC, id LIMIT 43",
            spec: MergeSpec {
                visible_columns: 4,
                order_by: vec![key(1, false), key(2, true), key(0, false)],
                offset: 3,
                limit: Some(40),
                ..Default::default()
            },
        },
        Case {
            original: "SELECT id, d, u, f, t FROM {t} ORDER BY d DESC, id",
            shard: "SELECT id, d, u, f, t FROM {t} ORDER BY d DESC, id",
            spec: MergeSpec {
                visible_columns: 5,
                order_by: vec![key(1, true), key(0, false)],
                ..Default::default()
            },
        },
        Case {
            original: "SELECT id, u FROM {t} ORDER BY u, id LIMIT 50",
            shard: "SELECT id, u FROM {t} ORDER BY u, id LIMIT 50",
            spec: MergeSpec {
                visible_columns: 2,
                order_by: vec![key(1, false), key(0, false)],
                limit: Some(50),
                ..Default::default()
            },
        },
        Case {
            original: "SELECT id, t FROM {t} ORDER BY t DESC, id LIMIT 60",
            shard: "SELECT id, t FROM {t} ORDER BY t DESC, id LIMIT 60",
            spec: MergeSpec {
                visible_columns: 2,
                order_by: vec![key(1, true), key(0, false)],
                limit: Some(60),
                ..Default::default()
            },
        },
        Case {
            original: "SELECT id, b FROM {t} ORDER BY b, id",
            shard: "SELECT id, b FROM {t} ORDER BY b, id",
            spec: MergeSpec {
                visible_columns: 2,
                order_by: vec![key(1, false), key(0, false)],
                ..Default::default()
            },
        },
        Case {
            original: "SELECT id, f FROM {t} ORDER BY f, id LIMIT 30",
            shard: "SELECT id, f FROM {t} ORDER BY f, id LIMIT 30",
            spec: MergeSpec {
                visible_columns: 2,
                order_by: vec![key(1, false), key(0, false)],
                limit: Some(30),
                ..Default::default()
            },
        },
        Case {
            original: "SELECT g, COUNT(*), SUM(d), MIN(i), MAX(i), AVG(i), AVG(d), SUM(f), \
                       AVG(f), MIN(g), MAX(t), SUM(u), AVG(u), COUNT(i) FROM {t} GROUP BY g",
            shard: "SELECT g, COUNT(*), SUM(d), MIN(i), MAX(i), AVG(i), AVG(d), SUM(f), \
                    AVG(f), MIN(g), MAX(t), SUM(u), AVG(u), COUNT(i), \
                    SUM(i), COUNT(i), SUM(d), COUNT(d), SUM(f), COUNT(f), SUM(u), COUNT(u) \
                    FROM {t} GROUP BY g",
            spec: MergeSpec {
                visible_columns: 14,
                group_by: vec![0],
                aggregates: vec![
                    count(1),
                    sum(2),
                    min(3),
                    max(4),
                    avg(5, 14, 15),
                    avg(6, 16, 17),
                    sum(7),
                    avg(8, 18, 19),
                    min(9),
                    max(10),
                    sum(11),
                    avg(12, 20, 21),
                    count(13),
                ],
                ..Default::default()
            },
        },
        Case {
            original: "SELECT COUNT(*), SUM(d), AVG(d), MIN(g), MAX(u), AVG(i) FROM {t}",
            shard: "SELECT COUNT(*), SUM(d), AVG(d), MIN(g), MAX(u), AVG(i), \
                    SUM(d), COUNT(d), SUM(i), COUNT(i) FROM {t}",
            spec: MergeSpec {
                visible_columns: 6,
                aggregates: vec![count(0), sum(1), avg(2, 6, 7), min(3), max(4), avg(5, 8, 9)],
                ..Default::default()
            },
        },
        Case {
            original: "SELECT COUNT(*), SUM(d), AVG(d), MIN(g), MAX(u), g FROM {t} WHERE i > 1000",
            shard: "SELECT COUNT(*), SUM(d), AVG(d), MIN(g), MAX(u), g, SUM(d), COUNT(d) \
                    FROM {t} WHERE i > 1000",
            spec: MergeSpec {
                visible_columns: 6,
                aggregates: vec![count(0), sum(1), avg(2, 6, 7), min(3), max(4)],
                ..Default::default()
            },
        },
        Case {
            original: "SELECT g, SUM(d) FROM {t} GROUP BY g HAVING SUM(d) > 0 OR AVG(d) < -700 \
                       ORDER BY SUM(d) DESC",
            shard: "SELECT g, SUM(d), AVG(d), SUM(d), COUNT(d) FROM {t} GROUP BY g",
            spec: MergeSpec {
                visible_columns: 2,
                group_by: vec![0],
                aggregates: vec![sum(1), avg(2, 3, 4)],
                having: Some(Box::new(or(
                    compare(1, CompareOp::Gt, number("0")),
                    compare(2, CompareOp::Lt, number("-700")),
                ))),
                order_by: vec![key(1, true)],
                ..Default::default()
            },
        },
        Case {
            original: "SELECT i, COUNT(*) FROM {t} GROUP BY i HAVING COUNT(*) >= 3 OR i IS NULL \
                       ORDER BY COUNT(*) DESC, i LIMIT 10",
            shard: "SELECT i, COUNT(*) FROM {t} GROUP BY i",
            spec: MergeSpec {
                visible_columns: 2,
                group_by: vec![0],
                aggregates: vec![count(1)],
                having: Some(Box::new(or(
                    compare(1, CompareOp::GtEq, number("3")),
                    Filter::IsNull {
                        column: 0,
                        negated: false,
                    },
                ))),
                order_by: vec![key(1, true), key(0, false)],
                limit: Some(10),
                ..Default::default()
            },
        },
        Case {
            original: "SELECT DISTINCT b FROM {t} ORDER BY b",
            shard: "SELECT DISTINCT b FROM {t} ORDER BY b",
            spec: MergeSpec {
                visible_columns: 1,
                distinct: true,
                order_by: vec![key(0, false)],
                ..Default::default()
            },
        },
        Case {
            original: "SELECT g, i FROM {t} GROUP BY g, i",
            shard: "SELECT g, i FROM {t} GROUP BY g, i",
            spec: MergeSpec {
                visible_columns: 2,
                group_by: vec![0, 1],
                ..Default::default()
            },
        },
        Case {
            original: "SELECT id, lat, bn, ch FROM {t} ORDER BY lat DESC, bn, ch, id",
            shard: "SELECT id, lat, bn, ch FROM {t} ORDER BY lat DESC, bn, ch, id",
            spec: MergeSpec {
                visible_columns: 4,
                order_by: vec![key(1, true), key(2, false), key(3, false), key(0, false)],
                ..Default::default()
            },
        },
        Case {
            original: "SELECT id, dt, fl, dd, ti FROM {t} ORDER BY dt DESC, id LIMIT 100",
            shard: "SELECT id, dt, fl, dd, ti FROM {t} ORDER BY dt DESC, id LIMIT 100",
            spec: MergeSpec {
                visible_columns: 5,
                order_by: vec![key(1, true), key(0, false)],
                limit: Some(100),
                ..Default::default()
            },
        },
        Case {
            original: "SELECT id, fl, dd FROM {t} ORDER BY fl, dd DESC, id LIMIT 100",
            shard: "SELECT id, fl, dd FROM {t} ORDER BY fl, dd DESC, id LIMIT 100",
            spec: MergeSpec {
                visible_columns: 3,
                order_by: vec![key(1, false), key(2, true), key(0, false)],
                limit: Some(100),
                ..Default::default()
            },
        },
        Case {
            original: "SELECT lat, COUNT(*), MIN(bn), MAX(dt), SUM(dd), AVG(dd), SUM(fl), \
                       AVG(ti), SUM(ti), MIN(fl), MAX(dd), MIN(ch) FROM {t} GROUP BY lat",
            shard: "SELECT lat, COUNT(*), MIN(bn), MAX(dt), SUM(dd), AVG(dd), SUM(fl), \
                    AVG(ti), SUM(ti), MIN(fl), MAX(dd), MIN(ch), \
                    SUM(dd), COUNT(dd), SUM(ti), COUNT(ti) FROM {t} GROUP BY lat",
            spec: MergeSpec {
                visible_columns: 12,
                group_by: vec![0],
                aggregates: vec![
                    count(1),
                    min(2),
                    max(3),
                    sum(4),
                    avg(5, 12, 13),
                    sum(6),
                    avg(7, 14, 15),
                    sum(8),
                    min(9),
                    max(10),
                    min(11),
                ],
                ..Default::default()
            },
        },
        Case {
            original: "SELECT bn, COUNT(*) FROM {t} GROUP BY bn",
            shard: "SELECT bn, COUNT(*) FROM {t} GROUP BY bn",
            spec: MergeSpec {
                visible_columns: 2,
                group_by: vec![0],
                aggregates: vec![count(1)],
                ..Default::default()
            },
        },
        Case {
            original: "SELECT DISTINCT lat, ch FROM {t} ORDER BY lat, ch",
            shard: "SELECT DISTINCT lat, ch FROM {t} ORDER BY lat, ch",
            spec: MergeSpec {
                visible_columns: 2,
                distinct: true,
                order_by: vec![key(0, false), key(1, false)],
                ..Default::default()
            },
        },
        Case {
            original: "SELECT ch, lat, SUM(ti) FROM {t} GROUP BY ch, lat \
                       HAVING ch = 'X' AND SUM(ti) >= 100 ORDER BY SUM(ti), lat",
            shard: "SELECT ch, lat, SUM(ti) FROM {t} GROUP BY ch, lat",
            spec: MergeSpec {
                visible_columns: 3,
                group_by: vec![0, 1],
                aggregates: vec![sum(2)],
                having: Some(Box::new(and(
                    compare(0, CompareOp::Eq, text("X")),
                    compare(2, CompareOp::GtEq, number("100")),
                ))),
                order_by: vec![key(2, false), key(1, false)],
                ..Default::default()
            },
        },
        Case {
            original:
                "SELECT id, dt FROM {t} GROUP BY id HAVING dt >= '2015-06-01' ORDER BY dt LIMIT 20",
            shard: "SELECT id, dt FROM {t} GROUP BY id",
            spec: MergeSpec {
                visible_columns: 2,
                group_by: vec![0],
                having: Some(Box::new(compare(1, CompareOp::GtEq, text("2015-06-01")))),
                order_by: vec![key(1, false)],
                limit: Some(20),
                ..Default::default()
            },
        },
        // COUNT(DISTINCT) of a column that is not the shard key: the shards group by it too.
        Case {
            original: "SELECT COUNT(DISTINCT i) FROM {t}",
            shard: "SELECT COUNT(DISTINCT i), i FROM {t} GROUP BY i",
            spec: MergeSpec {
                visible_columns: 1,
                pre_group_by: vec![1],
                aggregates: vec![count_distinct(0)],
                ..Default::default()
            },
        },
        Case {
            // Case- and trailing-space-insensitive values count once however they are spelled.
            original: "SELECT COUNT(DISTINCT g), COUNT(*) FROM {t}",
            shard: "SELECT COUNT(DISTINCT g), COUNT(*), g FROM {t} GROUP BY g",
            spec: MergeSpec {
                visible_columns: 2,
                pre_group_by: vec![2],
                aggregates: vec![count_distinct(0), count(1)],
                ..Default::default()
            },
        },
        Case {
            // Grouped by a number: which spelling of a case-insensitive group key shows is
            // the first row's, and the first row of a finer group is not the first scanned.
            original: "SELECT ti DIV 64, COUNT(DISTINCT i), SUM(d), COUNT(*), AVG(i), MAX(t) \
                       FROM {t} GROUP BY ti DIV 64",
            shard: "SELECT ti DIV 64, COUNT(DISTINCT i), SUM(d), COUNT(*), AVG(i), MAX(t), \
                    SUM(i), COUNT(i), i FROM {t} GROUP BY ti DIV 64, i",
            spec: MergeSpec {
                visible_columns: 6,
                group_by: vec![0],
                pre_group_by: vec![0, 8],
                aggregates: vec![count_distinct(1), sum(2), count(3), avg(4, 6, 7), max(5)],
                ..Default::default()
            },
        },
        Case {
            // Over no rows at all: one row, 0.
            original: "SELECT COUNT(DISTINCT d) FROM {t} WHERE id < 0",
            shard: "SELECT COUNT(DISTINCT d), d FROM {t} WHERE id < 0 GROUP BY d",
            spec: MergeSpec {
                visible_columns: 1,
                pre_group_by: vec![1],
                aggregates: vec![count_distinct(0)],
                ..Default::default()
            },
        },
    ]
}

#[tokio::test]
async fn merge_equals_one_server() {
    let server = test_server();
    let url = format!("mysql://root@127.0.0.1:{}/", server.port());
    let mut conn = Conn::new(Opts::from_url(&url).unwrap()).await.unwrap();
    setup(&mut conn).await;
    let mut failures = Vec::new();
    for case in cases() {
        let expected = query(&mut conn, &case.original.replace("{t}", "full")).await;
        let mut inputs = Vec::new();
        for s in 0..SHARDS {
            inputs.push(query(&mut conn, &case.shard.replace("{t}", &format!("s{s}"))).await);
        }
        let merged = match merge(&case.spec, inputs) {
            Ok(m) => m,
            Err(e) => {
                failures.push(format!("{}: merge error {e:?}", case.original));
                continue;
            }
        };
        let show = |rows: &[TextRow]| -> Vec<String> {
            rows.iter()
                .map(|r| {
                    r.iter()
                        .map(|v| {
                            v.as_ref().map_or("NULL".to_string(), |b| {
                                format!("{:?}", String::from_utf8_lossy(b))
                            })
                        })
                        .collect::<Vec<_>>()
                        .join(" | ")
                })
                .collect()
        };
        eprintln!(
            "{} rows, {} columns: {}",
            expected.rows.len(),
            expected.columns.len(),
            case.original
        );
        if merged.rows != expected.rows {
            failures.push(format!(
                "{}\n  merged:   {:?}\n  expected: {:?}",
                case.original,
                show(&merged.rows),
                show(&expected.rows)
            ));
        }
        let types = |cs: &[ColumnDef]| {
            cs.iter()
                .map(|c| (c.column_type, c.decimals))
                .collect::<Vec<_>>()
        };
        if types(&merged.columns) != types(&expected.columns) {
            failures.push(format!("{}: column types differ", case.original));
        }
    }
    if std::env::var_os("MERGE_TEST_KEEP").is_none() {
        conn.query_drop("DROP DATABASE merge_difftest")
            .await
            .unwrap();
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// ENUM columns sort by member index: ordering by one is refused, ordering by a hidden `e+0`
/// gives the server's answer.
#[tokio::test]
async fn enum_order_refused_or_by_index() {
    let server = test_server();
    let url = format!("mysql://root@127.0.0.1:{}/", server.port());
    let mut conn = Conn::new(Opts::from_url(&url).unwrap()).await.unwrap();
    for sql in [
        "DROP DATABASE IF EXISTS merge_difftest_enum",
        "CREATE DATABASE merge_difftest_enum",
        "USE merge_difftest_enum",
        "CREATE TABLE full (id INT PRIMARY KEY, e ENUM('z','y','x'))",
        "CREATE TABLE s0 LIKE full",
        "CREATE TABLE s1 LIKE full",
        "INSERT INTO full VALUES (1,'x'),(2,'z'),(3,NULL),(4,'y'),(5,'x'),(6,'z')",
        "INSERT INTO s0 SELECT * FROM full WHERE id <= 3",
        "INSERT INTO s1 SELECT * FROM full WHERE id > 3",
    ] {
        conn.query_drop(sql).await.unwrap();
    }
    // GROUP BY e without ORDER BY: MariaDB sorts by member index; refused.
    let inputs = shards(&mut conn, "SELECT e, COUNT(*) FROM {t} GROUP BY e").await;
    let spec = MergeSpec {
        visible_columns: 2,
        group_by: vec![0],
        aggregates: vec![count(1)],
        ..Default::default()
    };
    assert_eq!(merge(&spec, inputs).unwrap_err().code, 1235);
    // With a hidden e+0 to order by: the server's answer.
    let inputs = shards(&mut conn, "SELECT e, COUNT(*), e+0 FROM {t} GROUP BY e").await;
    let spec = MergeSpec {
        visible_columns: 2,
        group_by: vec![0],
        aggregates: vec![count(1)],
        order_by: vec![key(2, false)],
        ..Default::default()
    };
    let merged = merge(&spec, inputs).unwrap();
    let expected = query(&mut conn, "SELECT e, COUNT(*) FROM full GROUP BY e").await;
    assert_eq!(merged.rows, expected.rows);
    conn.query_drop("DROP DATABASE merge_difftest_enum")
        .await
        .unwrap();
}

async fn shards(conn: &mut Conn, sql: &str) -> Vec<ResultSet> {
    vec![
        query(conn, &sql.replace("{t}", "s0")).await,
        query(conn, &sql.replace("{t}", "s1")).await,
    ]
}

/// One MariaDB per test binary, shared by its tests.
fn test_server() -> &'static harness::Mariadb {
    static SERVER: std::sync::OnceLock<harness::Mariadb> = std::sync::OnceLock::new();
    SERVER.get_or_init(|| harness::Mariadb::start(harness::MariadbOpts::default()))
}
