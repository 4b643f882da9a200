//! The proxy's join (`exec/join.rs`) on fake shards holding small tables: the planner's plan,
//! run as the session runs it, against what one server would answer.

use super::*;
use crate::exec::join::{join, JoinLimits};
use crate::plan::testutil::{plan_with, rules, shard_of};
use crate::plan::Plan;
use crate::protocol::resultset::TextRow;

/// A fake table row: column name → value.
type FakeRow = Vec<(&'static str, Option<&'static str>)>;

/// A shard answering `SELECT q.c1, q.c2 … FROM <table> q [WHERE … q.col IN (…)] [LIMIT n]`
/// from its rows of each table: the columns by name, the IN list applied (`fold`: compared
/// case-insensitively, as a `_ci` collation does).
fn table_shard(tables: Vec<(&'static str, Vec<FakeRow>)>, fold: bool) -> Answer {
    Arc::new(move |sql: &str| {
        let select = sql.strip_prefix("SELECT ").expect("a SELECT");
        let (cols, rest) = select.split_once(" FROM ").unwrap();
        let table = rest.split(' ').next().unwrap();
        let rows = &tables.iter().find(|(t, _)| *t == table).expect(table).1;
        let names: Vec<(&str, &str)> = cols
            .split(", ")
            .map(|c| c.split_once('.').unwrap())
            .collect();
        let filter: Option<(String, Vec<String>)> =
            rest.split_once(" IN (").map(|(before, list)| {
                let col = before
                    .rsplit(' ')
                    .next()
                    .unwrap()
                    .split_once('.')
                    .unwrap()
                    .1;
                let list = list.split_once(')').unwrap().0;
                let vals = list
                    .split(", ")
                    .map(|v| v.trim_matches('\'').replace("''", "'"))
                    .collect();
                (col.to_string(), vals)
            });
        let same = |a: &str, b: &str| {
            if fold {
                a.eq_ignore_ascii_case(b)
            } else {
                a == b
            }
        };
        let mut out = Vec::new();
        for r in rows {
            let get = |c: &str| r.iter().find(|(n, _)| *n == c).map(|(_, v)| *v).unwrap();
            if let Some((col, vals)) = &filter {
                match get(col) {
                    Some(v) if vals.iter().any(|x| same(x, v)) => {}
                    _ => continue,
                }
            }
            if rest.contains("WHERE FALSE") {
                continue;
            }
            let row: TextRow = names
                .iter()
                .map(|(_, c)| get(c).map(|v| Bytes::from(v.to_string())))
                .collect();
            out.push(row);
        }
        let columns = names
            .iter()
            .map(|(_, c)| {
                if ["name", "note", "status"].contains(c) {
                    ColumnDef::text(c)
                } else {
                    ColumnDef::bigint(c)
                }
            })
            .collect();
        Ok(QueryResult::Rows(ResultSet {
            columns,
            rows: out,
            warnings: 0,
        }))
    })
}

fn order(payer: Option<&'static str>, note: &'static str, amount: &'static str) -> FakeRow {
    vec![
        ("payer_id", payer),
        ("note", Some(note)),
        ("amount", Some(amount)),
    ]
}

fn account(id: i64, name: &'static str) -> FakeRow {
    let id: &'static str = Box::leak(id.to_string().into_boxed_str());
    vec![
        ("account_id", Some(id)),
        ("name", Some(name)),
        ("status", Some("active")),
    ]
}

/// Three shards: orders spread anyhow (a payer's orders on several shards, one without a
/// payer, one whose payer does not exist), accounts 1 and 2 on the shards the ring names.
fn fake() -> Fake {
    let r = rules(3);
    let orders = [
        vec![order(Some("1"), "n1", "10"), order(Some("2"), "n2", "20")],
        vec![order(Some("1"), "n3", "30"), order(None, "n4", "40")],
        vec![order(Some("99"), "n5", "50")],
    ];
    let mut accounts: Vec<Vec<FakeRow>> = vec![vec![], vec![], vec![]];
    for (id, name) in [(1, "alice"), (2, "bob")] {
        let s = shard_of(&r, id);
        let n: usize = s[1..].parse().unwrap();
        accounts[n - 1].push(account(id, name));
    }
    let shards = orders
        .into_iter()
        .zip(accounts)
        .enumerate()
        .map(|(i, (o, a))| {
            let name: &'static str = ["s1", "s2", "s3"][i];
            (
                name,
                table_shard(vec![("orders", o), ("accounts", a)], false),
            )
        })
        .collect();
    Fake::new(shards)
}

fn planned(sql: &str) -> crate::plan::join::JoinPlan {
    match plan_with(sql, &rules(3)) {
        Plan::Join(j) => *j,
        other => panic!("{sql}: {other:?}"),
    }
}

fn texts(rs: &ResultSet) -> Vec<Vec<Option<String>>> {
    rs.rows
        .iter()
        .map(|r| {
            r.iter()
                .map(|v| v.as_ref().map(|b| String::from_utf8_lossy(b).into_owned()))
                .collect()
        })
        .collect()
}

fn s(v: &str) -> Option<String> {
    Some(v.to_string())
}

const NO_BOUND: JoinLimits = JoinLimits { max_rows: 0 };

#[tokio::test]
async fn inner_join_pairs_rows_by_value_and_looks_keys_up_on_their_shards_only() {
    let r = rules(3);
    let plan = planned(
        "SELECT o.note, a.name FROM orders o JOIN accounts a ON a.account_id = o.payer_id \
         ORDER BY o.note DESC",
    );
    let mut fake = fake();
    let done = join(&mut fake, &plan, &r.ring, NO_BOUND).await;
    let rs = done.answer.unwrap();
    assert_eq!(
        texts(&rs),
        vec![
            vec![s("n3"), s("alice")],
            vec![s("n2"), s("bob")],
            vec![s("n1"), s("alice")],
        ]
    );
    let names: Vec<&[u8]> = rs.columns.iter().map(|c| &c.name[..]).collect();
    assert_eq!(names, vec![&b"note"[..], b"name"]);
    // The accounts were asked for once per distinct payer, each on its own shard.
    let lookups: Vec<(String, String)> = fake
        .ran()
        .into_iter()
        .filter(|(_, sql)| sql.contains("FROM accounts"))
        .collect();
    let mut asked: Vec<(String, String)> = lookups
        .iter()
        .map(|(sh, sql)| (sh.clone(), sql.split(" IN (").nth(1).unwrap().to_string()))
        .collect();
    asked.sort();
    let mut want = vec![
        (shard_of(&r, 1), "1) LIMIT 1".to_string()),
        (shard_of(&r, 2), "2) LIMIT 1".to_string()),
        (shard_of(&r, 99), "99) LIMIT 1".to_string()),
    ];
    // Keys on one shard share its query.
    want.sort();
    if shard_of(&r, 1) == shard_of(&r, 2)
        || shard_of(&r, 99) == shard_of(&r, 1)
        || shard_of(&r, 99) == shard_of(&r, 2)
    {
        assert!(asked.len() < 3, "{asked:?}");
    } else {
        for (a, w) in asked.iter().zip(&want) {
            assert_eq!(a.0, w.0);
            assert!(a.1.starts_with(w.1.split(')').next().unwrap()), "{asked:?}");
        }
    }
    // Every connection came back.
    let log = fake.log.lock().unwrap();
    assert_eq!(log.given_back.len(), log.leased.len());
    assert!(log.leased.iter().all(|(_, a)| *a == Access::Read));
}

#[tokio::test]
async fn left_join_keeps_unmatched_rows_with_nulls() {
    let r = rules(3);
    let plan = planned(
        "SELECT o.note, a.name, a.account_id FROM orders o LEFT JOIN accounts a ON \
         a.account_id = o.payer_id ORDER BY o.note",
    );
    let mut fake = fake();
    let rs = join(&mut fake, &plan, &r.ring, NO_BOUND)
        .await
        .answer
        .unwrap();
    assert_eq!(
        texts(&rs),
        vec![
            vec![s("n1"), s("alice"), s("1")],
            vec![s("n2"), s("bob"), s("2")],
            vec![s("n3"), s("alice"), s("1")],
            vec![s("n4"), None, None],
            vec![s("n5"), None, None],
        ]
    );
}

#[tokio::test]
async fn limit_and_offset_apply_after_the_sort() {
    let r = rules(3);
    let plan = planned(
        "SELECT a.name, o.amount FROM orders o JOIN accounts a ON a.account_id = o.payer_id \
         ORDER BY o.amount DESC LIMIT 1 OFFSET 1",
    );
    let mut fake = fake();
    let rs = join(&mut fake, &plan, &r.ring, NO_BOUND)
        .await
        .answer
        .unwrap();
    assert_eq!(texts(&rs), vec![vec![s("bob"), s("20")]]);
}

#[tokio::test]
async fn past_the_bound_the_join_fails_with_1235_naming_the_setting() {
    let r = rules(3);
    let plan =
        planned("SELECT o.note, a.name FROM orders o JOIN accounts a ON a.account_id = o.payer_id");
    let mut fake = fake();
    let done = join(&mut fake, &plan, &r.ring, JoinLimits { max_rows: 4 }).await;
    let e = done.answer.unwrap_err();
    assert_eq!(e.code, 1235);
    assert!(e.message.contains("max_join_rows"), "{}", e.message);
    assert!(e.message.contains("more than 4"), "{}", e.message);
    // Each shard was asked for one row more than the bound, no more.
    assert!(
        fake.ran().iter().all(|(_, sql)| sql.ends_with("LIMIT 5")),
        "{:?}",
        fake.ran()
    );
    // The error is what SHOW WARNINGS would list.
    let d = done.diagnostics.unwrap();
    assert_eq!(d.conditions.last().unwrap().code, 1235);
    // The outer rows and the inner rows fetched count together: 5 orders + 2 accounts.
    let mut fake = super::join::fake();
    let e = join(&mut fake, &plan, &r.ring, JoinLimits { max_rows: 6 })
        .await
        .answer
        .unwrap_err();
    assert!(e.message.contains("more than 6 rows"), "{}", e.message);
    let mut fake = super::join::fake();
    assert!(join(&mut fake, &plan, &r.ring, JoinLimits { max_rows: 7 })
        .await
        .answer
        .is_ok());
}

#[tokio::test]
async fn a_string_is_not_paired_with_a_number() {
    let r = rules(3);
    let plan = planned("SELECT o.note FROM orders o JOIN accounts a ON a.name = o.payer_id");
    let mut fake = fake();
    let e = join(&mut fake, &plan, &r.ring, NO_BOUND)
        .await
        .answer
        .unwrap_err();
    assert_eq!(e.code, 1235);
    assert!(e.message.contains("cannot compare"), "{}", e.message);
}

/// Strings of a case-insensitive collation: paired case-insensitively and looked up once per
/// distinct folded value; a non-ASCII value is refused, never paired by guess.
#[tokio::test]
async fn ascii_strings_pair_case_insensitively_and_non_ascii_is_refused() {
    let r = rules(3);
    let users = |names: &[&'static str]| -> Vec<FakeRow> {
        names
            .iter()
            .map(|n| vec![("name", Some(*n)), ("note", Some(*n))])
            .collect()
    };
    let shard = |o: Vec<FakeRow>, u: Vec<&'static str>| {
        table_shard(vec![("orders", o), ("users", users(&u))], true)
    };
    let o = |note: &'static str| vec![("note", Some(note)), ("payer_id", Some("1"))];
    let plan = planned("SELECT o.note, u.name FROM orders o JOIN users u ON u.name = o.note ORDER BY o.note, u.name");
    assert!(!plan.probe.by_key || plan.probe.inner_column == "u.name");
    // users is sharded by name: each user on the shard the ring names.
    let home = |n: &str| {
        let s = r
            .ring
            .shard_for(&crate::ring::KeyValue::from_str_value(n).unwrap());
        s[1..].parse::<usize>().unwrap() - 1
    };
    let mut placed: Vec<Vec<&'static str>> = vec![vec![], vec![], vec![]];
    for u in ["BOB", "Carol", "dave"] {
        placed[home(u)].push(u);
    }
    let mut outer = vec![vec![o("Bob"), o("bob ")], vec![o("carol")], vec![]].into_iter();
    let mut fake = Fake::new(
        placed
            .into_iter()
            .enumerate()
            .map(|(i, u)| (["s1", "s2", "s3"][i], shard(outer.next().unwrap(), u)))
            .collect(),
    );
    let rs = join(&mut fake, &plan, &r.ring, NO_BOUND)
        .await
        .answer
        .unwrap();
    assert_eq!(
        texts(&rs),
        vec![
            vec![s("Bob"), s("BOB")],
            vec![s("bob "), s("BOB")],
            vec![s("carol"), s("Carol")],
        ]
    );
    // "Bob" and "bob " are one value for the lookup.
    let lookups: Vec<String> = fake
        .ran()
        .into_iter()
        .filter(|(_, sql)| sql.contains("FROM users"))
        .map(|(_, sql)| sql)
        .collect();
    assert!(
        lookups
            .iter()
            .all(|l| !(l.contains("'Bob'") && l.contains("'bob '"))),
        "{lookups:?}"
    );
    let mut fake = Fake::new(vec![
        ("s1", shard(vec![o("Émile")], vec!["emile"])),
        ("s2", shard(vec![], vec![])),
        ("s3", shard(vec![], vec![])),
    ]);
    let e = join(&mut fake, &plan, &r.ring, NO_BOUND)
        .await
        .answer
        .unwrap_err();
    assert!(e.message.contains("non-ASCII"), "{}", e.message);
}

/// Cross-table comparisons other than `=` are checked on each matched pair: numbers by value,
/// `<>` of strings as the negation of their equality; an ordering of strings (a collation's
/// order, not reproduced) is refused with 1235.
#[tokio::test]
async fn cross_table_comparisons_filter_the_matched_pairs() {
    let r = rules(3);
    let ring = &r.ring;
    let run = |sql: &'static str| {
        let plan = planned(sql);
        async move {
            let mut fake = fake();
            join(&mut fake, &plan, ring, NO_BOUND).await.answer
        }
    };
    let none = run(
        "SELECT o.note, a.name FROM orders o JOIN accounts a ON a.account_id = o.payer_id \
         AND a.account_id >= o.amount",
    )
    .await
    .unwrap();
    assert!(none.rows.is_empty());
    let all = run(
        "SELECT o.note, a.name FROM orders o JOIN accounts a ON a.account_id = o.payer_id \
         AND o.amount > a.account_id WHERE a.name <> o.note ORDER BY o.note",
    )
    .await
    .unwrap();
    assert_eq!(
        texts(&all),
        vec![
            vec![s("n1"), s("alice")],
            vec![s("n2"), s("bob")],
            vec![s("n3"), s("alice")]
        ]
    );
    // Two case-insensitive ASCII strings order as the merge compares them.
    let ordered = run(
        "SELECT o.note FROM orders o JOIN accounts a ON a.account_id = o.payer_id \
         AND a.name > o.note ORDER BY o.note",
    )
    .await
    .unwrap();
    assert!(
        ordered.rows.is_empty(),
        "'alice' and 'bob' sort before 'n1'…'n3'"
    );
    let ordered = run(
        "SELECT o.note FROM orders o JOIN accounts a ON a.account_id = o.payer_id \
         AND a.name < o.note ORDER BY o.note",
    )
    .await
    .unwrap();
    assert_eq!(ordered.rows.len(), 3);
    // A string against a number is not ordered by the proxy.
    let e = run(
        "SELECT o.note FROM orders o JOIN accounts a ON a.account_id = o.payer_id \
         AND a.name < o.amount",
    )
    .await
    .unwrap_err();
    assert_eq!(e.code, 1235);
    assert!(e.message.contains("only by equality"), "{}", e.message);
}
