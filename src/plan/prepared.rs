//! Prepared statements: the plan is built once at PREPARE (the lead caches it per statement);
//! when the route depends on a `?` parameter (`WHERE key = ?`, a one-row `INSERT … VALUES (?, …)`)
//! it is resolved at EXECUTE with the bound value, which costs one ring lookup.
//!
//! The executor decodes the parameter values of COM_STMT_EXECUTE into `Option<KeyValue>`:
//! - TINY/SHORT/LONG/LONGLONG/INT24 → `KeyValue::from(i64)`, or `from(u64)` with the unsigned flag;
//! - string types and NEWDECIMAL (sent as text) → `KeyValue::from_str_value(text)`, which
//!   accepts `"42"` as the integer 42 and refuses `"42.0"`;
//! - NULL, FLOAT, DOUBLE, dates, blobs → `None`.
//!
//! With `None` the statement takes its fallback plan: a read scatters (exact; its SQL keeps the
//! `?` placeholders, so each shard prepares it), a write without a placeable key is refused,
//! except an INSERT into a table with a global sequence: NULL (and 0, see
//! [`super::sequence`]) as its key means "generate one", so it runs as text with the values in
//! place, planned again as a [`Plan::Sequence`].
//!
//! A statement with subqueries over sharded tables ([`Plan::Staged`]) is always
//! [`PreparedPlan::Fixed`]: each execute runs as text with its values in place, its
//! subqueries run first with those values.

use std::sync::Arc;

use super::{plan_full, Plan, PlanContext, SingleReason};
use crate::ring::{KeyValue, Ring};

/// The cached plan of a prepared statement.
#[derive(Debug, Clone)]
pub enum PreparedPlan {
    /// The route does not depend on parameters.
    Fixed(Plan),
    /// The route depends on parameter `param_index` (0-based): its shard gets the original
    /// statement; `fallback` applies when the value is `None` (cannot be placed).
    ByParam {
        param_index: usize,
        ring: Arc<Ring>,
        fallback: Box<Plan>,
        /// A bound 0 takes the fallback too: the key of a table with a sequence, where 0 may
        /// mean "generate an id" (decided with the session's sql_mode when it runs).
        zero_falls_back: bool,
    },
}

/// Plans a statement with `?` placeholders (see the module doc).
pub fn plan_prepared(sql: &str, ctx: &PlanContext) -> PreparedPlan {
    let (mut plan, mut param) = plan_full(sql, ctx);
    if matches!(plan, Plan::Reject(_)) {
        // `LIMIT ?` across shards: the merge needs the number, which only an execute brings.
        // Every execute across shards runs as text with its values in place and is planned
        // again then (`frontend/session/prepared.rs`), so here it is enough to know the shape
        // is answerable: plan it with 1 in place of the LIMIT/OFFSET placeholders (the last
        // ones, so the other placeholders keep their indices).
        if let Some(text) = limit_placeholders_as_one(sql) {
            let (p, k) = plan_full(&text, ctx);
            if !matches!(p, Plan::Reject(_)) {
                (plan, param) = (p, k);
            }
        }
    }
    if let Plan::Staged(_) = plan {
        // Subqueries over sharded tables: each execute writes its values into the text and
        // stages the subqueries then (frontend/session/staged.rs), so no parameter may pin
        // the statement to one shard before they ran.
        param = None;
    }
    match (param, &plan) {
        // A literal already pins one shard: no parameter matters.
        (_, Plan::Single { .. }) | (None, _) => PreparedPlan::Fixed(plan),
        (Some(param_index), _) => PreparedPlan::ByParam {
            param_index,
            ring: ctx.rules.ring.clone(),
            zero_falls_back: matches!(plan, Plan::Sequence(_)),
            fallback: Box::new(plan),
        },
    }
}

/// `sql` with `1` in place of the placeholders of a trailing `LIMIT ?`, `LIMIT ?, ?` or
/// `LIMIT ? OFFSET ?`; `None` when there are none, or when another placeholder follows them.
fn limit_placeholders_as_one(sql: &str) -> Option<String> {
    let s = super::scan::scan(sql);
    let (&last, _) = s.placeholders.split_last()?;
    let limit = s
        .words
        .iter()
        .rev()
        .find(|w| !w.quoted && w.text == "limit" && w.offset < last)?;
    let in_clause: Vec<usize> = s
        .placeholders
        .iter()
        .copied()
        .filter(|&p| p > limit.offset)
        .collect();
    // Only numbers, commas, OFFSET and the placeholders between LIMIT and the end.
    let tail = &sql[limit.offset + "limit".len()..];
    let plain = tail
        .split(|c: char| c.is_whitespace() || c == ',')
        .all(|t| {
            t.is_empty() || t == "?" || t.eq_ignore_ascii_case("offset") || t.parse::<u64>().is_ok()
        });
    if !plain || in_clause.is_empty() {
        return None;
    }
    let mut out = sql.to_string();
    for p in in_clause {
        out.replace_range(p..p + 1, "1");
    }
    Some(out)
}

impl PreparedPlan {
    /// The plan for one execution with these decoded parameter values.
    pub fn bind(&self, params: &[Option<KeyValue>]) -> Plan {
        match self {
            PreparedPlan::Fixed(p) => p.clone(),
            PreparedPlan::ByParam {
                param_index,
                ring,
                fallback,
                zero_falls_back,
            } => match params.get(*param_index) {
                Some(Some(k)) if !(*zero_falls_back && *k == KeyValue::from(0i64)) => {
                    Plan::Single {
                        shard: ring.shard_for(k).to_string(),
                        reason: SingleReason::KeyParam {
                            index: *param_index,
                            value: k.clone(),
                        },
                    }
                }
                _ => (**fallback).clone(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::testutil::*;

    fn prep(sql: &str, r: &crate::plan::Rules) -> PreparedPlan {
        plan_prepared(
            sql,
            &PlanContext {
                rules: r,
                current_db: None,
                allow_scatter_writes: false,
            },
        )
    }

    #[test]
    fn point_select_binds_by_parameter() {
        let r = rules(3);
        let p = prep("SELECT c FROM accounts WHERE x = ? AND account_id = ?", &r);
        let PreparedPlan::ByParam { param_index, .. } = &p else {
            panic!("{p:?}")
        };
        assert_eq!(*param_index, 1);
        for k in [1i64, 2, 3, 50, 99] {
            let plan = p.bind(&[None, Some(KeyValue::from(k))]);
            assert_eq!(expect_single(&plan), shard_of(&r, k));
        }
        // Unplaceable value: the read scatters.
        assert!(matches!(p.bind(&[None, None]), Plan::Scatter { .. }));
    }

    #[test]
    fn insert_and_update_bind_by_parameter() {
        let r = rules(3);
        let p = prep(
            "INSERT INTO accounts (balance, account_id) VALUES (?, ?)",
            &r,
        );
        assert_eq!(
            expect_single(&p.bind(&[None, Some(KeyValue::from(8i64))])),
            shard_of(&r, 8)
        );
        expect_reject(&p.bind(&[None, None]), "cannot be placed");
        let p = prep("UPDATE accounts SET balance = ? WHERE account_id = ?", &r);
        assert_eq!(
            expect_single(&p.bind(&[None, Some(KeyValue::from(8i64))])),
            shard_of(&r, 8)
        );
        expect_reject(&p.bind(&[None, None]), "scatter_writes");
    }

    #[test]
    fn sequence_key_parameter_falls_back_on_null_and_zero() {
        let r = rules(3);
        let p = prep("INSERT INTO orders (order_id, note) VALUES (?, ?)", &r);
        assert_eq!(
            expect_single(&p.bind(&[Some(KeyValue::from(8i64)), None])),
            shard_of(&r, 8)
        );
        assert!(matches!(p.bind(&[None, None]), Plan::Sequence(_)), "{p:?}");
        assert!(matches!(
            p.bind(&[Some(KeyValue::from(0i64)), None]),
            Plan::Sequence(_)
        ));
        // Without the key column, every execution takes the sequence.
        let p = prep("INSERT INTO orders (note) VALUES (?), (?)", &r);
        assert!(matches!(p, PreparedPlan::Fixed(Plan::Sequence(_))), "{p:?}");
    }

    #[test]
    fn placeholder_index_counts_across_lines_and_multibyte_text() {
        let r = rules(3);
        let p = prep(
            "SELECT c FROM accounts\n WHERE note = 'é?' AND x = ?\n   AND account_id = ?",
            &r,
        );
        let PreparedPlan::ByParam { param_index, .. } = &p else {
            panic!("{p:?}")
        };
        assert_eq!(*param_index, 1);
    }

    #[test]
    fn limit_placeholders_across_shards_are_planned_with_their_shape() {
        let r = rules(3);
        for sql in [
            "SELECT account_id, name FROM accounts ORDER BY account_id LIMIT ?",
            "SELECT * FROM accounts ORDER BY account_id LIMIT ?, ?",
            "SELECT account_id FROM accounts WHERE balance > ? ORDER BY account_id LIMIT ? OFFSET ?",
        ] {
            let p = prep(sql, &r);
            assert!(
                matches!(p, PreparedPlan::Fixed(Plan::Scatter { .. })),
                "{sql}: {p:?}"
            );
        }
        // The key placeholder keeps its index.
        let p = prep(
            "SELECT name FROM accounts WHERE account_id = ? ORDER BY name LIMIT ?",
            &r,
        );
        let PreparedPlan::ByParam { param_index, .. } = &p else {
            panic!("{p:?}")
        };
        assert_eq!(*param_index, 0);
        assert!(matches!(p.bind(&[None, None]), Plan::Scatter { .. }));
        // What cannot be answered stays refused.
        expect_reject(
            &p_plan(prep(
                "SELECT a, ROW_NUMBER() OVER (ORDER BY a) FROM accounts LIMIT ?",
                &r,
            )),
            "window",
        );
        assert_eq!(
            limit_placeholders_as_one("SELECT a FROM t LIMIT ? , ?").as_deref(),
            Some("SELECT a FROM t LIMIT 1 , 1")
        );
        assert_eq!(
            limit_placeholders_as_one("SELECT a FROM t WHERE b = ?"),
            None
        );
        assert_eq!(
            limit_placeholders_as_one("SELECT a FROM t LIMIT ? INTO @x"),
            None
        );
    }

    fn p_plan(p: PreparedPlan) -> Plan {
        match p {
            PreparedPlan::Fixed(p) => p,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn subqueries_over_sharded_tables_are_staged_at_each_execute() {
        let r = rules(3);
        for sql in [
            "SELECT name FROM accounts WHERE account_id IN \
             (SELECT account_id FROM transactions WHERE amount > ?)",
            // A key parameter outside the subquery must not pin the statement to one shard
            // before the subquery (over every shard) ran.
            "SELECT name FROM accounts WHERE account_id = ? AND balance > \
             (SELECT MAX(amount) FROM transactions WHERE kind = ?)",
            "SELECT COUNT(*) FROM accounts WHERE EXISTS (SELECT 1 FROM transactions)",
        ] {
            let p = prep(sql, &r);
            assert!(
                matches!(p, PreparedPlan::Fixed(Plan::Staged(_))),
                "{sql}: {p:?}"
            );
            assert!(matches!(
                p.bind(&[Some(KeyValue::from(1i64)), None]),
                Plan::Staged(_)
            ));
        }
    }

    #[test]
    fn literal_key_is_fixed() {
        let r = rules(3);
        let p = prep("SELECT c FROM accounts WHERE account_id = 4 AND x = ?", &r);
        assert!(
            matches!(p, PreparedPlan::Fixed(Plan::Single { .. })),
            "{p:?}"
        );
        let p = prep("SELECT c FROM other WHERE id = ?", &r);
        assert!(
            matches!(p, PreparedPlan::Fixed(Plan::Single { .. })),
            "{p:?}"
        );
    }
}

/// The statements sysbench's oltp_read_write prepares, with `sbtest1` sharded by `id`.
#[cfg(test)]
mod sysbench {
    use super::*;
    use crate::config::Config;
    use crate::plan::Rules;

    fn rules() -> Rules {
        let text =
            "[backend]\nuser = \"u\"\npassword = \"p\"\n[sharding]\ndefault_shard = \"s1\"\n\
                    [[sharding.tables]]\nname = \"sbtest1\"\nkey = \"id\"\n\
                    [[shards]]\nname = \"s1\"\nprimary = \"a:1\"\n\
                    [[shards]]\nname = \"s2\"\nprimary = \"a:2\"\n";
        Rules::from_config(&Config::parse(text).unwrap())
    }

    #[test]
    fn oltp_read_write_statements() {
        let r = rules();
        let ctx = PlanContext {
            rules: &r,
            current_db: Some("sbtest"),
            allow_scatter_writes: false,
        };
        let by_param = [
            ("SELECT c FROM sbtest1 WHERE id=?", 0),
            ("UPDATE sbtest1 SET k=k+1 WHERE id=?", 0),
            ("UPDATE sbtest1 SET c=? WHERE id=?", 1),
            ("DELETE FROM sbtest1 WHERE id=?", 0),
            ("INSERT INTO sbtest1 (id, k, c, pad) VALUES (?, ?, ?, ?)", 0),
        ];
        for (sql, idx) in by_param {
            match plan_prepared(sql, &ctx) {
                PreparedPlan::ByParam { param_index, .. } => assert_eq!(param_index, idx, "{sql}"),
                other => panic!("{sql}: {other:?}"),
            }
        }
        for sql in [
            "SELECT c FROM sbtest1 WHERE id BETWEEN ? AND ?",
            "SELECT SUM(k) FROM sbtest1 WHERE id BETWEEN ? AND ?",
            "SELECT c FROM sbtest1 WHERE id BETWEEN ? AND ? ORDER BY c",
            "SELECT DISTINCT c FROM sbtest1 WHERE id BETWEEN ? AND ? ORDER BY c",
        ] {
            match plan_prepared(sql, &ctx) {
                PreparedPlan::Fixed(Plan::Scatter { targets, .. }) => {
                    assert_eq!(targets.len(), 2, "{sql}");
                    // The parameters stay in place, in order.
                    assert_eq!(targets[0].sql.matches('?').count(), 2, "{sql}");
                }
                other => panic!("{sql}: {other:?}"),
            }
        }
    }
}
