//! INSERT and REPLACE: each row goes to the shard its key names.
//!
//! The key of every row must be a literal the ring can place (or, in a prepared statement with
//! one row, a `?` resolved at execute time). Rows are grouped by shard; when they all land on
//! one shard the client's text goes there untouched, otherwise each shard gets a copy of the
//! statement with only its rows, spliced from the original text by the positions of each row's
//! parentheses (nothing is re-rendered, so literals keep their exact spelling). Everything after
//! the last row — `ON DUPLICATE KEY UPDATE …`, `AS new` — is kept for every shard, which is
//! exact because it only touches the row being inserted, which lives on that shard; assigning
//! the key column there is refused, like any key change.
//!
//! A row without a key, or with `NULL`/`DEFAULT`/`0` as its key, gets one from the table's
//! global sequence when the table declares one ([`super::sequence`]); otherwise it is refused.
//!
//! Refused on sharded tables: INSERT without a column list (the key's position is unknown
//! here; for a text statement the session then names the columns from the table's definition
//! and plans again, see `frontend::column_list`), without the key column when the table has no
//! sequence, INSERT … SELECT, and key values that are expressions or cannot be placed exactly.

use sqlparser::ast::{
    AssignmentTarget, Expr, Insert, ObjectName, ObjectNamePart, OnInsert, SetExpr, TableObject,
    Value, Values,
};

use super::reject::not_supported;
use super::route::{key_atom, object_name, offset_of, KeyAtom, Offsets};
use super::rules::TableKind;
use super::sequence::{RowTemplate, SequenceInsert};
use super::{Cx, MultiKind, Plan, Rejection, ShardSql, SingleReason, NONDETERMINISTIC};

pub(crate) fn plan_insert(ins: &Insert, cx: &Cx) -> (Plan, Option<usize>) {
    match plan(ins, cx) {
        Ok(x) => x,
        Err(p) => (p, None),
    }
}

type R<T> = Result<T, Plan>;

fn plan(ins: &Insert, cx: &Cx) -> R<(Plan, Option<usize>)> {
    let TableObject::TableName(name) = &ins.table else {
        return Err(not_supported("INSERT into a table function"));
    };
    let (db, table) = object_name(name);
    let kind = cx.rules().classify(db.as_deref(), &table, cx.cur_db());
    let key = match kind {
        TableKind::Unlisted => {
            if cx.scan.selects > 0 && cx.mentions_sharded {
                return Err(not_supported(
                    "INSERT … SELECT from a sharded table into an unsharded table",
                ));
            }
            return Ok((
                Plan::single(cx.default_shard(), SingleReason::UnshardedTable),
                None,
            ));
        }
        TableKind::Reference => {
            if cx.scan.selects > 0 {
                return Err(not_supported(
                    "INSERT … SELECT into a reference table (the source may differ per shard)",
                ));
            }
            if let Some(f) = NONDETERMINISTIC.iter().find(|f| cx.scan.has_keyword(f)) {
                return Err(not_supported(format!(
                    "{}() gives a different value on each shard; a reference-table write using \
                     it would make the copies differ",
                    f.to_uppercase()
                )));
            }
            return Ok((
                Plan::Multi {
                    targets: cx.all_shards(cx.sql),
                    kind: MultiKind::ReferenceWrite,
                },
                None,
            ));
        }
        TableKind::Sharded { key } => key,
    };
    if let Some(OnInsert::DuplicateKeyUpdate(assignments)) = &ins.on {
        for a in assignments {
            if let AssignmentTarget::ColumnName(n) = &a.target {
                if object_name(n).1 == key {
                    return Err(not_supported(format!(
                        "ON DUPLICATE KEY UPDATE of the shard key column {key}"
                    )));
                }
            }
        }
    }
    if cx.scan.selects > 0 {
        return Err(not_supported("INSERT … SELECT into a sharded table"));
    }
    let sequence = cx
        .rules()
        .sequence(db.as_deref(), &table, cx.cur_db())
        .cloned();
    // Table names are case-sensitive on most servers: the sequence's first value is read
    // from the table as the statement spells it.
    let (written_db, written_table) = written_name(name);
    let no_key = || {
        not_supported(format!(
            "INSERT into sharded table {table} must give the shard key column {key}: the table \
             has no global sequence to generate it (declare `sequence = true` for it in \
             [[sharding.tables]] to get AUTO_INCREMENT-like ids)"
        ))
    };
    let seq_plan = |prefix: String, rows: Vec<RowTemplate>, suffix: String, param: bool| {
        Plan::Sequence(SequenceInsert {
            placeholder_slot: param,
            sequence: sequence.clone().expect("only called for sequence tables"),
            db: written_db.clone(),
            table: written_table.clone(),
            key: key.clone(),
            prefix,
            rows,
            suffix,
        })
    };
    let quoted_key = format!("`{}`", key.replace('`', "``"));
    // INSERT … SET key = v
    if ins.source.is_none() {
        let given = ins
            .assignments
            .iter()
            .find(
                |a| matches!(&a.target, AssignmentTarget::ColumnName(n) if object_name(n).1 == key),
            )
            .map(|a| &a.value);
        if sequence.is_some() {
            match given {
                None => {
                    // The key assignment goes first: `SET key = <id>, …`.
                    let at = ins
                        .assignments
                        .first()
                        .and_then(|a| match &a.target {
                            AssignmentTarget::ColumnName(n) => ident_offset(n, cx.sql),
                            _ => None,
                        })
                        .ok_or_else(cannot_locate)?;
                    let row = RowTemplate::Generated {
                        before: format!("{}{quoted_key} = ", &cx.sql[..at]),
                        after: format!(", {}", &cx.sql[at..]),
                        zero: None,
                    };
                    return Ok((
                        seq_plan(String::new(), vec![row], String::new(), false),
                        None,
                    ));
                }
                Some(v) => {
                    if let Some(slot) = generated_slot(v, cx.sql, cx.scan) {
                        let row = slot.row(cx.sql, 0, cx.sql.len());
                        let param = slot.param;
                        // A `?` key: its bound value decides at execute; NULL or 0 gets the
                        // sequence (see `plan::prepared`).
                        let plan =
                            seq_plan(String::new(), vec![row], String::new(), param.is_some());
                        return Ok((plan, param));
                    }
                }
            }
        }
        let v = given.ok_or_else(no_key)?;
        return place_one(v, &table, &key, cx);
    }
    let source = ins.source.as_ref().expect("checked");
    let SetExpr::Values(values) = source.body.as_ref() else {
        return Err(not_supported("INSERT … SELECT into a sharded table"));
    };
    if ins.columns.is_empty() {
        return Err(Plan::Reject(Rejection::InsertWithoutColumnList {
            table: table.to_string(),
            key: key.to_string(),
        }));
    }
    let idx = ins.columns.iter().position(|c| object_name(c).1 == key);
    if sequence.is_some() {
        if values.explicit_row && values.rows.len() > 1 {
            return Err(not_supported(
                "VALUES ROW(…) with several rows into a table whose key comes from a sequence",
            ));
        }
        let spans = row_spans(values, cx.sql)?;
        let first_row = spans[0].0;
        let suffix = cx.sql[spans[spans.len() - 1].1..].to_string();
        let mut rows = Vec::with_capacity(spans.len());
        let mut generated = false;
        let mut param = None;
        for (n, (row, (o, c))) in values.rows.iter().zip(&spans).enumerate() {
            let Some(i) = idx else {
                // No key column: the id goes first in every row.
                generated = true;
                rows.push(RowTemplate::Generated {
                    before: "(".into(),
                    after: format!(", {}", &cx.sql[o + 1..*c]),
                    zero: None,
                });
                continue;
            };
            let v = row.content.get(i).ok_or_else(no_key)?;
            if let Some(slot) = generated_slot(v, cx.sql, cx.scan) {
                if slot.param.is_some() && values.rows.len() > 1 {
                    return Err(not_supported(
                        "a prepared multi-row INSERT into a sharded table; prepare one row per \
                         statement",
                    ));
                }
                generated = true;
                param = slot.param;
                rows.push(slot.row(cx.sql, *o, *c));
                continue;
            }
            match key_atom(v, cx.sql, cx.scan) {
                Some(KeyAtom::Value(k)) => rows.push(RowTemplate::Explicit {
                    text: cx.sql[*o..*c].to_string(),
                    key: k,
                }),
                Some(KeyAtom::Param(_)) => {
                    return Err(not_supported(
                        "a prepared multi-row INSERT into a sharded table; prepare one row per \
                         statement",
                    ))
                }
                _ => return Err(bad_key(v, n + 1, &key)),
            }
        }
        if generated {
            let prefix = match idx {
                Some(_) => cx.sql[..first_row].to_string(),
                None => {
                    // The key column goes first in the column list.
                    let at = ident_offset(&ins.columns[0], cx.sql).ok_or_else(cannot_locate)?;
                    format!("{}{quoted_key}, {}", &cx.sql[..at], &cx.sql[at..first_row])
                }
            };
            return Ok((seq_plan(prefix, rows, suffix, param.is_some()), param));
        }
    }
    let idx = idx.ok_or_else(no_key)?;
    if values.rows.len() == 1 {
        let row = &values.rows[0].content;
        let v = row.get(idx).ok_or_else(no_key)?;
        return place_one(v, &table, &key, cx);
    }
    // Several rows: place each.
    let mut shard_of_row = Vec::with_capacity(values.rows.len());
    for (n, row) in values.rows.iter().enumerate() {
        let v = row.content.get(idx).ok_or_else(no_key)?;
        match key_atom(v, cx.sql, cx.scan) {
            Some(KeyAtom::Value(k)) => shard_of_row.push(cx.rules().ring.shard_for(&k).to_string()),
            Some(KeyAtom::Param(_)) => {
                return Err(not_supported(
                    "a prepared multi-row INSERT into a sharded table; prepare one row per \
                     statement",
                ))
            }
            _ => return Err(bad_key(v, n + 1, &key)),
        }
    }
    let first = &shard_of_row[0];
    if shard_of_row.iter().all(|s| s == first) {
        return Ok((Plan::single(first, SingleReason::AllRowsOnOneShard), None));
    }
    if values.explicit_row {
        return Err(not_supported("VALUES ROW(…) split across shards"));
    }
    // Splice: prefix + this shard's rows + suffix, from the original text.
    let spans = row_spans(values, cx.sql)?;
    let prefix = &cx.sql[..spans[0].0];
    let suffix = &cx.sql[spans[spans.len() - 1].1..];
    let mut targets = Vec::new();
    for shard in &cx.rules().shards {
        let rows: Vec<&str> = spans
            .iter()
            .zip(&shard_of_row)
            .filter(|(_, s)| *s == shard)
            .map(|((o, c), _)| &cx.sql[*o..*c])
            .collect();
        if rows.is_empty() {
            continue;
        }
        targets.push(ShardSql {
            shard: shard.clone(),
            sql: format!("{prefix}{}{suffix}", rows.join(", ")),
        });
    }
    Ok((
        Plan::Multi {
            targets,
            kind: MultiKind::InsertSplit,
        },
        None,
    ))
}

/// `db.table` as written (not lowercased).
fn written_name(name: &ObjectName) -> (Option<String>, String) {
    let parts: Vec<String> = name
        .0
        .iter()
        .map(|p| match p {
            ObjectNamePart::Identifier(i) => i.value.clone(),
            ObjectNamePart::Function(f) => f.to_string(),
        })
        .collect();
    match parts.len() {
        0 => (None, String::new()),
        1 => (None, parts[0].clone()),
        n => (Some(parts[n - 2].clone()), parts[n - 1].clone()),
    }
}

/// Byte ranges of each VALUES row's parentheses, `(` included to `)` included.
fn row_spans(values: &Values, sql: &str) -> R<Vec<(usize, usize)>> {
    let mut spans = Vec::with_capacity(values.rows.len());
    let offsets = Offsets::new(sql);
    for row in &values.rows {
        let open = offsets.of(row.opening_token.0.span.start);
        let close = offsets.of(row.closing_token.0.span.start);
        match (open, close) {
            (Some(o), Some(c))
                if o < c
                    && sql.as_bytes().get(o) == Some(&b'(')
                    && sql.as_bytes().get(c) == Some(&b')') =>
            {
                spans.push((o, c + 1))
            }
            _ => {
                return Err(not_supported(
                    "could not locate the VALUES rows to split them",
                ))
            }
        }
    }
    if spans.is_empty() {
        return Err(not_supported("INSERT … VALUES without rows"));
    }
    Ok(spans)
}

fn cannot_locate() -> Plan {
    not_supported("could not locate the column list to add the key generated by the sequence")
}

/// Byte offset where a column name starts in the text (its opening backquote, if quoted).
fn ident_offset(name: &ObjectName, sql: &str) -> Option<usize> {
    let ObjectNamePart::Identifier(ident) = name.0.first()? else {
        return None;
    };
    let at = offset_of(sql, ident.span.start)?;
    let first = sql[at..].chars().next()?;
    let expected = match ident.quote_style {
        Some(q) => q,
        None => ident.value.chars().next()?,
    };
    first.eq_ignore_ascii_case(&expected).then_some(at)
}

/// A key value MariaDB's AUTO_INCREMENT would replace by a generated id, located in the text.
struct Slot {
    start: usize,
    end: usize,
    /// The original text when it is the literal 0 (generated only without
    /// NO_AUTO_VALUE_ON_ZERO).
    zero: Option<String>,
    /// The `?` parameter index, when the key is a placeholder (its value decides at execute).
    param: Option<usize>,
}

impl Slot {
    /// The row template for a row spanning `row_start..row_end` of `sql`.
    fn row(&self, sql: &str, row_start: usize, row_end: usize) -> RowTemplate {
        RowTemplate::Generated {
            before: sql[row_start..self.start].to_string(),
            after: sql[self.end..row_end].to_string(),
            zero: self.zero.clone(),
        }
    }
}

/// `NULL`, `DEFAULT`, `0` or `?` as the key value: where it is in the text.
fn generated_slot(v: &Expr, sql: &str, scan: &super::scan::Scan) -> Option<Slot> {
    let locate = |span: sqlparser::tokenizer::Span, want: &dyn Fn(&str) -> bool| {
        let start = offset_of(sql, span.start)?;
        let end = offset_of(sql, span.end)?;
        (start < end && end <= sql.len() && want(&sql[start..end])).then_some((start, end))
    };
    match v {
        Expr::Value(val) => match &val.value {
            Value::Null => {
                let (start, end) = locate(val.span, &|t| t.eq_ignore_ascii_case("null"))?;
                Some(Slot {
                    start,
                    end,
                    zero: None,
                    param: None,
                })
            }
            Value::Number(n, _) if n.bytes().all(|b| b == b'0') => {
                let (start, end) = locate(val.span, &|t| t == n)?;
                Some(Slot {
                    start,
                    end,
                    zero: Some(n.clone()),
                    param: None,
                })
            }
            Value::Placeholder(p) if p == "?" => {
                let (start, end) = locate(val.span, &|t| t == "?")?;
                Some(Slot {
                    start,
                    end,
                    zero: None,
                    param: Some(scan.placeholder_index(start)?),
                })
            }
            _ => None,
        },
        Expr::Identifier(id)
            if id.quote_style.is_none() && id.value.eq_ignore_ascii_case("default") =>
        {
            let (start, end) = locate(id.span, &|t| t.eq_ignore_ascii_case("default"))?;
            Some(Slot {
                start,
                end,
                zero: None,
                param: None,
            })
        }
        _ => None,
    }
}

fn bad_key(v: &Expr, row: usize, key: &str) -> Plan {
    not_supported(format!(
        "row {row}: shard key {key} = {v} is not an integer or string literal the proxy can place \
         exactly"
    ))
}

fn place_one(v: &Expr, _table: &str, key: &str, cx: &Cx) -> R<(Plan, Option<usize>)> {
    match key_atom(v, cx.sql, cx.scan) {
        Some(KeyAtom::Value(k)) => Ok((
            Plan::single(
                cx.rules().ring.shard_for(&k),
                SingleReason::InsertKey {
                    column: key.to_string(),
                    value: k,
                },
            ),
            None,
        )),
        Some(KeyAtom::Param(i)) => Ok((
            not_supported(format!(
                "the shard key {key} parameter is NULL or cannot be placed exactly"
            )),
            Some(i),
        )),
        _ => Err(bad_key(v, 1, key)),
    }
}

#[cfg(test)]
mod tests {
    use crate::plan::testutil::*;
    use crate::plan::{MultiKind, Plan};

    #[test]
    fn single_row_goes_to_its_shard_untouched() {
        let r = rules(3);
        let s = shard_of(&r, 11);
        for sql in [
            "INSERT INTO accounts (account_id, balance) VALUES (11, 5.00)",
            "insert into accounts (balance, `ACCOUNT_ID`) values (5, '11')",
            "INSERT INTO accounts SET account_id = 11, balance = 1",
            "REPLACE INTO accounts (account_id) VALUES (11)",
            "INSERT IGNORE INTO accounts (account_id, b) VALUE (11, 2)",
            "INSERT INTO accounts (account_id, b) VALUES (11, 2) ON DUPLICATE KEY UPDATE b = b + 1",
        ] {
            assert_eq!(expect_single(&plan_with(sql, &r)), s, "{sql}");
        }
    }

    #[test]
    fn multi_row_insert_is_split_per_shard() {
        let r = rules(3);
        let (a, b) = keys_on_two_shards(&r);
        let sql = format!(
            "INSERT INTO accounts (account_id, note) VALUES ({a}, 'x, (y)'),\n  ({b}, 'b'), ({a}, 'c') ON DUPLICATE KEY UPDATE note = VALUES(note)"
        );
        match plan_with(&sql, &r) {
            Plan::Multi { targets, kind } => {
                assert_eq!(kind, MultiKind::InsertSplit);
                assert_eq!(targets.len(), 2);
                let ta = targets.iter().find(|t| t.shard == shard_of(&r, a)).unwrap();
                let tb = targets.iter().find(|t| t.shard == shard_of(&r, b)).unwrap();
                assert_eq!(
                    ta.sql,
                    format!("INSERT INTO accounts (account_id, note) VALUES ({a}, 'x, (y)'), ({a}, 'c') ON DUPLICATE KEY UPDATE note = VALUES(note)")
                );
                assert_eq!(
                    tb.sql,
                    format!("INSERT INTO accounts (account_id, note) VALUES ({b}, 'b') ON DUPLICATE KEY UPDATE note = VALUES(note)")
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn split_locates_rows_after_multibyte_text() {
        let r = rules(3);
        let (a, b) = keys_on_two_shards(&r);
        let sql = format!(
            "INSERT INTO accounts (account_id, note) VALUES ({a}, 'héllo wörld'), ({b}, '日本')"
        );
        match plan_with(&sql, &r) {
            Plan::Multi { targets, .. } => {
                let tb = targets.iter().find(|t| t.shard == shard_of(&r, b)).unwrap();
                assert_eq!(
                    tb.sql,
                    format!("INSERT INTO accounts (account_id, note) VALUES ({b}, '日本')")
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn multi_row_on_one_shard_stays_single() {
        let r = rules(3);
        let s = shard_of(&r, 3);
        let sql = "INSERT INTO accounts (account_id) VALUES (3), ('3'), (003)";
        assert_eq!(expect_single(&plan_with(sql, &r)), s);
    }

    #[test]
    fn reference_insert_goes_everywhere() {
        let r = rules(3);
        match plan_with(
            "INSERT INTO fund_yield (d, rate) VALUES ('2026-01-01', 0.02)",
            &r,
        ) {
            Plan::Multi { targets, kind } => {
                assert_eq!(kind, MultiKind::ReferenceWrite);
                assert_eq!(targets.len(), 3);
            }
            other => panic!("{other:?}"),
        }
        expect_reject(
            &plan_with("INSERT INTO fund_yield (d, id) VALUES (1, UUID())", &r),
            "UUID() gives a different value",
        );
    }

    #[test]
    fn insert_refusals() {
        let r = rules(3);
        for (sql, why) in [
            ("INSERT INTO accounts VALUES (1, 2)", "column list"),
            ("INSERT INTO accounts (balance) VALUES (1)", "must give the shard key"),
            ("INSERT INTO accounts (account_id) VALUES (1 + 1)", "not an integer or string literal"),
            ("INSERT INTO accounts (account_id) VALUES (1), (2.5)", "row 2"),
            ("INSERT INTO accounts (account_id) VALUES (NULL)", "literal"),
            ("INSERT INTO accounts (account_id) SELECT id FROM other", "SELECT"),
            ("INSERT INTO other (x) SELECT account_id FROM accounts", "SELECT"),
            ("INSERT INTO accounts (account_id) VALUES (1) ON DUPLICATE KEY UPDATE account_id = 2", "shard key"),
            ("INSERT INTO users (name) VALUES ('Zoë')", "literal"),
        ] {
            expect_reject(&plan_with(sql, &r), why);
        }
    }
}
