//! UPDATE and DELETE.
//!
//! - On a sharded table with the key pinned (`WHERE key = v`, or `key IN (…)` with values on
//!   several shards): the original text goes to the shard(s) involved. Each shard holds only its
//!   own keys, so sending the whole IN list to each of them is exact.
//! - Without a pinned key: refused unless the session allows scatter writes, then sent to every
//!   shard. `ORDER BY … LIMIT` cannot be honoured across shards and is refused there.
//! - `SET key = …` is refused: the row would have to move to another shard.
//! - On reference tables (only): the same statement on every shard, so the copies stay equal;
//!   refused if it calls a function whose value differs per server (NOW(), RAND(), UUID(), …)
//!   or reads a table that is not on every shard.
//! - Multi-table statements mixing sharded and reference (or unlisted) tables are refused: which
//!   copy to write would be ambiguous.

use sqlparser::ast::{AssignmentTarget, Delete, Expr, FromTable, Update};

use super::reject::not_supported;
use super::route::{analyze, collect_from, object_name, param_key, target_shards, From, Relation};
use super::rules::TableKind;
use super::{Cx, MultiKind, Plan, ShardSql, SingleReason, NONDETERMINISTIC};

pub(crate) fn plan_update(u: &Update, cx: &Cx) -> (Plan, Option<usize>) {
    if u.from.is_some() {
        return (not_supported("UPDATE … FROM"), None);
    }
    let from = match collect_from(std::slice::from_ref(&u.table), cx.rules(), cx.cur_db()) {
        Ok(f) => f,
        Err(p) => return (p, None),
    };
    // Changing the key moves the row to another shard: refused.
    for a in &u.assignments {
        let targets = match &a.target {
            AssignmentTarget::ColumnName(n) => vec![n],
            AssignmentTarget::Tuple(ns) => ns.iter().collect(),
        };
        for n in targets {
            let (q, col) = object_name(n);
            let hit = from.relations.iter().any(|r| {
                r.key() == Some(col.as_str()) && q.as_ref().is_none_or(|q| *q == r.qualifier)
            });
            if hit {
                return (
                    not_supported(format!(
                        "UPDATE of the shard key column {col} is not supported (the row would \
                         have to move to another shard); delete and re-insert it"
                    )),
                    None,
                );
            }
        }
    }
    let ordered = !u.order_by.is_empty() || u.limit.is_some();
    plan_write(&from, u.selection.as_ref(), ordered, cx)
}

pub(crate) fn plan_delete(d: &Delete, cx: &Cx) -> (Plan, Option<usize>) {
    let mut list = match &d.from {
        FromTable::WithFromKeyword(t) | FromTable::WithoutKeyword(t) => t.clone(),
    };
    if let Some(using) = &d.using {
        list.extend(using.iter().cloned());
    }
    let from = match collect_from(&list, cx.rules(), cx.cur_db()) {
        Ok(f) => f,
        Err(p) => return (p, None),
    };
    let ordered = !d.order_by.is_empty() || d.limit.is_some();
    plan_write(&from, d.selection.as_ref(), ordered, cx)
}

fn plan_write(
    from: &From<'_>,
    selection: Option<&Expr>,
    ordered: bool,
    cx: &Cx,
) -> (Plan, Option<usize>) {
    let rels: &[Relation] = &from.relations;
    let sharded = rels
        .iter()
        .any(|r| matches!(r.kind, TableKind::Sharded { .. }));
    let reference = rels.iter().any(|r| r.kind == TableKind::Reference);
    let unlisted = rels.iter().any(|r| r.kind == TableKind::Unlisted);
    if !sharded {
        if !reference {
            return (
                Plan::single(cx.default_shard(), SingleReason::UnshardedTable),
                None,
            );
        }
        if unlisted || cx.scan.selects > 0 {
            return (
                not_supported(
                    "a write to a reference table that reads a table (or subquery) not copied \
                     to every shard",
                ),
                None,
            );
        }
        if let Some(f) = NONDETERMINISTIC.iter().find(|f| cx.scan.has_keyword(f)) {
            return (
                not_supported(format!(
                    "{}() gives a different value on each shard; a reference-table write using \
                     it would make the copies differ",
                    f.to_uppercase()
                )),
                None,
            );
        }
        if ordered {
            // `LIMIT n` may pick different rows on each copy (ties, physical order).
            return (
                not_supported("ORDER BY/LIMIT in a write to a reference table"),
                None,
            );
        }
        return (
            Plan::Multi {
                targets: cx.all_shards(cx.sql),
                kind: MultiKind::ReferenceWrite,
            },
            None,
        );
    }
    if reference || unlisted {
        return (
            not_supported(
                "a multi-table write mixing sharded tables with reference or unsharded tables",
            ),
            None,
        );
    }
    if cx.scan.selects > 0 || cx.scan.set_operation {
        return (
            not_supported("subqueries in a write to a sharded table"),
            None,
        );
    }
    let route = match analyze(from, selection, cx.sql, cx.scan) {
        Ok(r) => r,
        Err(p) => return (p, None),
    };
    let param = param_key(&route);
    let plan = match target_shards(&route, cx.rules()) {
        Some(s) if s.len() == 1 => Plan::single(&s[0], SingleReason::Key(route)),
        Some(s) => {
            if ordered {
                not_supported("ORDER BY/LIMIT in a write that spans shards")
            } else {
                Plan::Multi {
                    targets: s
                        .into_iter()
                        .map(|shard| ShardSql {
                            shard,
                            sql: cx.sql.to_string(),
                        })
                        .collect(),
                    kind: MultiKind::Write,
                }
            }
        }
        None if !cx.ctx.allow_scatter_writes => not_supported(
            "UPDATE/DELETE on a sharded table without the shard key in WHERE would run on every \
             shard; add `key = value`, or allow it for this session with \
             SET shardproxy_allow_scatter_writes = 1",
        ),
        None if ordered => not_supported("ORDER BY/LIMIT in a write that spans shards"),
        None => Plan::Multi {
            targets: cx.all_shards(cx.sql),
            kind: MultiKind::Write,
        },
    };
    (plan, param)
}

#[cfg(test)]
mod tests {
    use crate::plan::testutil::*;
    use crate::plan::{plan, MultiKind, Plan, PlanContext};

    #[test]
    fn update_and_delete_by_key_go_to_one_shard() {
        let r = rules(3);
        let s = shard_of(&r, 9);
        for sql in [
            "UPDATE accounts SET balance = balance + 1 WHERE account_id = 9",
            "UPDATE accounts a SET a.balance = 0 WHERE a.account_id = 9 AND a.balance < 0",
            "DELETE FROM accounts WHERE account_id = 9",
            "DELETE FROM transactions WHERE (account_id = '9') ORDER BY id LIMIT 1",
            "UPDATE accounts a JOIN transactions t ON a.account_id = t.account_id SET a.x = t.y WHERE a.account_id = 9",
        ] {
            assert_eq!(expect_single(&plan_with(sql, &r)), s, "{sql}");
        }
    }

    #[test]
    fn in_list_writes_go_to_involved_shards() {
        let r = rules(3);
        let (a, b) = keys_on_two_shards(&r);
        let sql = format!("DELETE FROM accounts WHERE account_id IN ({a}, {b})");
        match plan_with(&sql, &r) {
            Plan::Multi { targets, kind } => {
                assert_eq!(kind, MultiKind::Write);
                assert_eq!(targets.len(), 2);
                assert!(targets.iter().all(|t| t.sql == sql));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn scatter_writes_need_the_session_setting() {
        let r = rules(3);
        let sql = "UPDATE accounts SET frozen = 1 WHERE balance < 0";
        expect_reject(&plan_with(sql, &r), "shardproxy_allow_scatter_writes");
        let ctx = PlanContext {
            rules: &r,
            current_db: None,
            allow_scatter_writes: true,
        };
        match plan(sql, &ctx) {
            Plan::Multi { targets, kind } => {
                assert_eq!(kind, MultiKind::Write);
                assert_eq!(targets.len(), 3);
            }
            other => panic!("{other:?}"),
        }
        expect_reject(
            &plan("DELETE FROM accounts ORDER BY id LIMIT 5", &ctx),
            "ORDER BY/LIMIT",
        );
    }

    #[test]
    fn changing_the_key_is_refused() {
        let r = rules(3);
        expect_reject(
            &plan_with(
                "UPDATE accounts SET account_id = 5 WHERE account_id = 4",
                &r,
            ),
            "shard key",
        );
        expect_reject(
            &plan_with(
                "UPDATE accounts a SET a.ACCOUNT_ID = 5 WHERE a.account_id = 4",
                &r,
            ),
            "shard key",
        );
    }

    #[test]
    fn reference_writes_go_everywhere() {
        let r = rules(3);
        let sql = "UPDATE fund_yield SET rate = 0.02 WHERE fund = 'x'";
        match plan_with(sql, &r) {
            Plan::Multi { targets, kind } => {
                assert_eq!(kind, MultiKind::ReferenceWrite);
                assert_eq!(targets.len(), 3);
                assert!(targets.iter().all(|t| t.sql == sql));
            }
            other => panic!("{other:?}"),
        }
        expect_reject(
            &plan_with("DELETE FROM fund_yield LIMIT 1", &r),
            "reference table",
        );
        expect_reject(
            &plan_with("UPDATE fund_yield SET updated = NOW()", &r),
            "NOW()",
        );
        expect_reject(
            &plan_with(
                "UPDATE fund_yield f JOIN other o ON o.f = f.fund SET f.x = o.x",
                &r,
            ),
            "not copied",
        );
    }

    #[test]
    fn mixed_and_subquery_writes_are_refused() {
        let r = rules(3);
        expect_reject(
            &plan_with("UPDATE accounts a JOIN fund_yield f ON a.fund = f.fund SET a.x = f.rate WHERE a.account_id = 1", &r),
            "mixing",
        );
        expect_reject(
            &plan_with(
                "DELETE FROM accounts WHERE account_id = 1 AND x IN (SELECT y FROM other)",
                &r,
            ),
            "subqueries",
        );
    }

    #[test]
    fn unsharded_writes_go_to_default() {
        let r = rules(3);
        assert_eq!(
            expect_single(&plan_with("UPDATE other SET accounts = 1", &r)),
            "s1"
        );
    }
}
