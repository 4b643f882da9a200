//! DDL: every shard must hold the same definition of a sharded or reference table, so CREATE,
//! ALTER, DROP and TRUNCATE TABLE and CREATE/DROP INDEX on such a table run on every shard
//! (the executor reports a failure with the shard's name). DDL on other tables goes to the
//! default shard. Refused: statements that name both kinds (they would fail on the shards that
//! lack the unsharded table), `CREATE TABLE … AS SELECT` / `LIKE` from a table that is not on
//! every shard, and RENAME of a sharded or reference table (the config names it).

use sqlparser::ast::{AlterTableOperation, CreateTableLikeKind, ObjectName, ObjectType, Statement};

use super::reject::not_supported;
use super::route::object_name;
use super::rules::TableKind;
use super::{Cx, MultiKind, Plan, SingleReason};

pub(crate) fn plan_ddl(stmt: &Statement, cx: &Cx) -> Plan {
    let mut names: Vec<&ObjectName> = Vec::new();
    match stmt {
        Statement::CreateTable(c) => {
            names.push(&c.name);
            if c.query.is_some() && cx.mentions_sharded {
                return not_supported("CREATE TABLE … AS SELECT involving sharded tables");
            }
            if let Some(like) = &c.like {
                let src = match like {
                    CreateTableLikeKind::Parenthesized(l) | CreateTableLikeKind::Plain(l) => {
                        &l.name
                    }
                };
                names.push(src);
            }
        }
        Statement::AlterTable(a) => {
            let renames_table = a
                .operations
                .iter()
                .any(|op| matches!(op, AlterTableOperation::RenameTable { .. }));
            if renames_table {
                let (db, t) = object_name(&a.name);
                if cx.rules().classify(db.as_deref(), &t, cx.cur_db()) != TableKind::Unlisted {
                    return not_supported(format!(
                        "renaming sharded or reference table {t}; change the config instead"
                    ));
                }
            }
            names.push(&a.name);
        }
        Statement::Drop {
            object_type,
            names: n,
            table,
            ..
        } => match object_type {
            ObjectType::Table => names.extend(n.iter()),
            ObjectType::Index => match table {
                Some(t) => names.push(t),
                None => {
                    return Plan::single(cx.default_shard(), SingleReason::DropIndexWithoutTable)
                }
            },
            _ => return Plan::single(cx.default_shard(), SingleReason::NotATable),
        },
        Statement::Truncate(t) => names.extend(t.table_names.iter().map(|t| &t.name)),
        Statement::CreateIndex(c) => names.push(&c.table_name),
        Statement::RenameTable(r) => {
            for x in r {
                for n in [&x.old_name, &x.new_name] {
                    let (db, t) = object_name(n);
                    if cx.rules().classify(db.as_deref(), &t, cx.cur_db()) != TableKind::Unlisted {
                        return not_supported(format!(
                            "renaming sharded or reference table {t}; change the config instead"
                        ));
                    }
                }
            }
            return Plan::single(cx.default_shard(), SingleReason::UnshardedTables);
        }
        _ => return Plan::single(cx.default_shard(), SingleReason::Ddl),
    }
    let kinds: Vec<TableKind> = names
        .iter()
        .map(|n| {
            let (db, t) = object_name(n);
            cx.rules().classify(db.as_deref(), &t, cx.cur_db())
        })
        .collect();
    let everywhere = kinds.iter().filter(|k| **k != TableKind::Unlisted).count();
    if everywhere == 0 {
        return Plan::single(cx.default_shard(), SingleReason::UnshardedTable);
    }
    if everywhere != kinds.len() {
        return not_supported(
            "one DDL statement naming both sharded/reference tables and unsharded tables; split \
             it",
        );
    }
    Plan::Multi {
        targets: cx.all_shards(cx.sql),
        kind: MultiKind::Ddl,
    }
}

#[cfg(test)]
mod tests {
    use crate::plan::testutil::*;
    use crate::plan::{MultiKind, Plan};

    fn expect_all(sql: &str) {
        let r = rules(3);
        match plan_with(sql, &r) {
            Plan::Multi { targets, kind } => {
                assert_eq!(kind, MultiKind::Ddl, "{sql}");
                let shards: Vec<&str> = targets.iter().map(|t| t.shard.as_str()).collect();
                assert_eq!(shards, ["s1", "s2", "s3"], "{sql}");
                assert!(targets.iter().all(|t| t.sql == sql));
            }
            other => panic!("{sql}: {other:?}"),
        }
    }

    #[test]
    fn ddl_on_sharded_and_reference_tables_runs_everywhere() {
        for sql in [
            "CREATE TABLE accounts (account_id BIGINT PRIMARY KEY, balance DECIMAL(20,2))",
            "CREATE TABLE IF NOT EXISTS fund_yield (d DATE, rate DECIMAL(10,6))",
            "ALTER TABLE transactions ADD COLUMN note VARCHAR(100)",
            "ALTER TABLE accounts RENAME COLUMN a TO b",
            "DROP TABLE IF EXISTS accounts, transactions",
            "TRUNCATE TABLE accounts",
            "CREATE INDEX ix_bal ON accounts (balance)",
            "DROP INDEX ix_bal ON accounts",
        ] {
            expect_all(sql);
        }
    }

    #[test]
    fn ddl_on_other_tables_goes_to_default() {
        let r = rules(3);
        let p = plan_with("CREATE TABLE other (accounts INT)", &r);
        assert_eq!(expect_single(&p), "s1");
    }

    #[test]
    fn ddl_refusals() {
        let r = rules(3);
        expect_reject(&plan_with("DROP TABLE accounts, other", &r), "split");
        expect_reject(
            &plan_with("CREATE TABLE x AS SELECT * FROM accounts", &r),
            "AS SELECT",
        );
        expect_reject(&plan_with("RENAME TABLE accounts TO a2", &r), "renaming");
        expect_reject(
            &plan_with("ALTER TABLE accounts RENAME TO a2", &r),
            "renaming",
        );
        expect_reject(&plan_with("CREATE TABLE t2 LIKE accounts", &r), "split");
    }
}
