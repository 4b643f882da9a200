//! Cross-primitive properties: a row is always looked for where it was written.
//!
//! Every primitive places keys through the same [`crate::ring::Ring::shard_for`], but each
//! extracts the key from a different syntax (INSERT values, WHERE equalities, IN lists, bound
//! parameters). These property tests generate keys and check that all paths agree, on 2- and
//! 3-shard configs, and that a split INSERT sends each row to exactly its shard.

use proptest::prelude::*;

use super::sequence::ZeroKey;
use super::testutil::*;
use super::{plan_prepared, Plan, PlanContext, Rules};
use crate::ring::KeyValue;

fn single(p: &Plan) -> String {
    expect_single(p).to_string()
}

fn agree_int(r: &Rules, k: i64) {
    let want = r.ring.shard_for(&KeyValue::from(k)).to_string();
    for sql in [
        format!("INSERT INTO accounts (account_id, b) VALUES ({k}, 1)"),
        format!("INSERT INTO accounts (b, account_id) VALUES (1, '{k}')"),
        format!("SELECT * FROM accounts WHERE account_id = {k}"),
        format!("SELECT * FROM transactions t WHERE t.account_id IN ({k})"),
        format!("UPDATE accounts SET b = 2 WHERE account_id = '{k}'"),
        format!("DELETE FROM transactions WHERE {k} = account_id"),
    ] {
        assert_eq!(single(&plan_with(&sql, r)), want, "{sql}");
    }
    let ctx = PlanContext {
        rules: r,
        current_db: None,
        allow_scatter_writes: false,
    };
    let p = plan_prepared("SELECT * FROM accounts WHERE account_id = ?", &ctx);
    assert_eq!(single(&p.bind(&[Some(KeyValue::from(k))])), want);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn integer_keys_agree_everywhere(k in any::<i64>()) {
        agree_int(&rules(2), k);
        agree_int(&rules(3), k);
    }

    #[test]
    fn string_keys_agree_across_case_and_trailing_spaces(
        s in "[a-zA-Z][a-zA-Z0-9_]{0,12}",
        pad in 0usize..3,
    ) {
        let r = rules(3);
        let ins = plan_with(&format!("INSERT INTO users (name) VALUES ('{}')", s.to_lowercase()), &r);
        let sel = plan_with(
            &format!("SELECT * FROM users WHERE name = '{}{}'", s.to_uppercase(), " ".repeat(pad)),
            &r,
        );
        prop_assert_eq!(single(&ins), single(&sel));
    }

    #[test]
    fn split_insert_sends_each_row_to_its_shard(keys in proptest::collection::vec(0i64..100_000, 1..30)) {
        let r = rules(3);
        let rows: Vec<String> = keys.iter().map(|k| format!("({k}, 'r{k}')")).collect();
        let sql = format!("INSERT INTO accounts (account_id, note) VALUES {}", rows.join(", "));
        let targets = match plan_with(&sql, &r) {
            Plan::Single { shard, .. } => vec![(shard, sql.clone())],
            Plan::Multi { targets, .. } => targets.into_iter().map(|t| (t.shard, t.sql)).collect(),
            other => panic!("{other:?}"),
        };
        for k in &keys {
            let want = shard_of(&r, *k);
            let row = format!("({k}, 'r{k}')");
            let holders: Vec<&String> = targets
                .iter()
                .filter(|(_, sql)| sql.contains(&row))
                .map(|(s, _)| s)
                .collect();
            prop_assert!(!holders.is_empty());
            prop_assert!(holders.iter().all(|s| **s == want), "row {} sent to {:?}, wants {}", row, holders, want);
        }
        // No shard gets more rows than were sent.
        let total: usize = targets.iter().map(|(_, sql)| sql.matches("'r").count()).sum();
        prop_assert_eq!(total, keys.len());
    }

    #[test]
    fn sequence_ids_go_where_reads_of_them_look(first in 1u64..(i64::MAX as u64 / 2), n in 1usize..20) {
        for r in [rules(2), rules(3)] {
            let rows: Vec<String> = (0..n).map(|i| format!("('r{i}')")).collect();
            let sql = format!("INSERT INTO orders (note) VALUES {}", rows.join(", "));
            let Plan::Sequence(s) = plan_with(&sql, &r) else { panic!("{sql}") };
            prop_assert_eq!(s.ids_needed(ZeroKey::GeneratesId), n as u64);
            let targets = s.render(first, &r, ZeroKey::GeneratesId);
            let mut seen = 0;
            for t in &targets {
                for i in 0..n {
                    let id = first + i as u64;
                    if t.sql.contains(&format!("({id}, 'r{i}')")) {
                        seen += 1;
                        let read = plan_with(&format!("SELECT * FROM orders WHERE order_id = {id}"), &r);
                        prop_assert_eq!(single(&read), t.shard.clone());
                    }
                }
            }
            prop_assert_eq!(seen, n);
        }
    }
}
