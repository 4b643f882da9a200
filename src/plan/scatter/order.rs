//! GROUP BY, ORDER BY and LIMIT across shards: which columns the merge groups and sorts by, and
//! how many rows each shard must return.
//!
//! - `GROUP BY`: the shards group their rows and the merge merges groups with equal keys. Each
//!   key is resolved to a column of the shard rows: a position (`GROUP BY 1`), a select alias
//!   that names the same column (MariaDB resolves a GROUP BY name to a table column before an
//!   alias), the text of a selected item, or a new hidden column. Without ORDER BY the merged
//!   groups are sorted by the group keys, as MariaDB returns them.
//! - `ORDER BY` stays in the shard SQL (each shard sorts its part) and becomes the merge's sort
//!   keys; an expression that is not selected becomes a hidden column (refused with DISTINCT,
//!   where a hidden column would change which rows are distinct).
//! - `LIMIT n OFFSET m`: each shard returns its first `m + n` rows (`LIMIT m+n`), the merge skips
//!   `m` and keeps `n` of the merged order. When the merge groups, removes duplicates or filters
//!   (HAVING), no limit is pushed down: a shard's first rows are not its share of the final
//!   rows. LIMIT and OFFSET must be integer constants (a placeholder could not be added up).

use sqlparser::ast::{Expr, GroupByExpr, LimitClause, OrderBy, OrderByKind, OrderBySort, Value};

use super::aggregates::contains_aggregate;
use super::columns::Builder;
use super::R;
use crate::plan::reject::not_supported;
use crate::plan::spec::{MergeSpec, SortKey};

/// A positional reference (`GROUP BY 2`, `ORDER BY 1`), or an integer constant.
fn position(e: &Expr) -> Option<u64> {
    match e {
        Expr::Value(v) => match &v.value {
            Value::Number(n, _) => n.parse().ok(),
            _ => None,
        },
        _ => None,
    }
}

fn u64_literal(e: &Expr, what: &str) -> R<u64> {
    position(e).ok_or_else(|| {
        not_supported(format!(
            "{what} must be an integer constant when a query spans shards"
        ))
    })
}

/// Step 2: the columns of the GROUP BY keys (`visible`: the select list's length).
pub(super) fn group_keys(group_by: &GroupByExpr, visible: usize, b: &mut Builder) -> R<Vec<usize>> {
    let mut keys = Vec::new();
    match group_by {
        GroupByExpr::Expressions(exprs, modifiers) => {
            if !modifiers.is_empty() {
                return Err(not_supported("GROUP BY … WITH ROLLUP across shards"));
            }
            for g in exprs {
                let col = if let Some(p) = position(g) {
                    if p == 0
                        || p as usize > visible
                        || b.cols[p as usize - 1].agg
                        || b.position_unknown(p as usize - 1, visible)
                    {
                        return Err(not_supported(format!("GROUP BY position {p}")));
                    }
                    p as usize - 1
                } else if let Some(i) = b.by_alias(g) {
                    // MariaDB resolves a GROUP BY name to a table column before an alias; safe
                    // only when the alias names that same column.
                    let id = match g {
                        Expr::Identifier(i) => i.value.to_lowercase(),
                        _ => String::new(),
                    };
                    if b.cols[i].is_plain_ident.as_deref() != Some(id.as_str()) {
                        return Err(not_supported(format!(
                            "GROUP BY {g} names a select alias, which MariaDB may resolve to a \
                             table column instead; group by the expression or its position"
                        )));
                    }
                    i
                } else if let Some(i) = b.by_text(g) {
                    i
                } else {
                    if contains_aggregate(g) {
                        return Err(not_supported("aggregates in GROUP BY"));
                    }
                    b.push_hidden(g.clone(), false)
                };
                if b.cols[col].agg {
                    return Err(not_supported("GROUP BY an aggregate"));
                }
                keys.push(col);
            }
        }
        GroupByExpr::All(_) => return Err(not_supported("GROUP BY ALL")),
    }
    Ok(keys)
}

/// Step 4: the merge's sort keys, from ORDER BY, else the group keys (MariaDB sorts GROUP BY
/// results by the group keys when there is no ORDER BY; so does the merged answer).
pub(super) fn sort_keys(
    order_by: Option<&OrderBy>,
    group_by: &[usize],
    visible: usize,
    distinct: bool,
    b: &mut Builder,
) -> R<Vec<SortKey>> {
    let Some(ob) = order_by else {
        return Ok(group_by
            .iter()
            .map(|&column| SortKey {
                column,
                descending: false,
            })
            .collect());
    };
    let OrderByKind::Expressions(list) = &ob.kind else {
        return Err(not_supported("ORDER BY ALL"));
    };
    if ob.interpolate.is_some() {
        return Err(not_supported("ORDER BY … INTERPOLATE"));
    }
    let mut keys = Vec::new();
    for o in list {
        if o.options.nulls_first.is_some() || o.with_fill.is_some() {
            return Err(not_supported("NULLS FIRST/LAST and WITH FILL"));
        }
        let descending = match &o.options.sort {
            None | Some(OrderBySort::Asc) => false,
            Some(OrderBySort::Desc) => true,
            Some(_) => return Err(not_supported("ORDER BY … USING")),
        };
        let column = if let Some(p) = position(&o.expr) {
            if p == 0 || p as usize > visible || b.position_unknown(p as usize - 1, visible) {
                return Err(not_supported(format!("ORDER BY position {p}")));
            }
            p as usize - 1
        } else {
            let before = b.cols.len();
            let c = b.column_for(&o.expr)?;
            // A hidden column would take part in the shards' DISTINCT; harmless only when it
            // is a column every visible row already determines (`SELECT DISTINCT *`).
            let determined = b.all_columns_visible
                && matches!(o.expr, Expr::Identifier(_) | Expr::CompoundIdentifier(_));
            if c >= before && distinct && !determined {
                return Err(not_supported(
                    "SELECT DISTINCT … ORDER BY an expression that is not selected, across \
                     shards",
                ));
            }
            c
        };
        keys.push(SortKey { column, descending });
    }
    Ok(keys)
}

/// Step 5: the statement's `(offset, limit)`.
pub(crate) fn offset_and_limit(clause: Option<&LimitClause>) -> R<(u64, Option<u64>)> {
    Ok(match clause {
        None => (0, None),
        Some(LimitClause::LimitOffset {
            limit,
            offset,
            limit_by,
        }) => {
            if !limit_by.is_empty() {
                return Err(not_supported("LIMIT BY"));
            }
            let off = match offset {
                Some(o) => u64_literal(&o.value, "OFFSET")?,
                None => 0,
            };
            let lim = match limit {
                Some(l) => Some(u64_literal(l, "LIMIT")?),
                None => None,
            };
            (off, lim)
        }
        Some(LimitClause::OffsetCommaLimit { offset, limit }) => (
            u64_literal(offset, "OFFSET")?,
            Some(u64_literal(limit, "LIMIT")?),
        ),
    })
}

/// The LIMIT of the shard SQL for a merge by `m`: `offset + limit` rows when a shard's first
/// rows are final rows, else none.
pub(super) fn shard_limit(m: &MergeSpec) -> Option<LimitClause> {
    let grouped = !m.group_by.is_empty() || !m.aggregates.is_empty();
    match m.limit {
        Some(l) if !grouped && !m.distinct && m.having.is_none() => {
            Some(LimitClause::LimitOffset {
                limit: Some(Expr::value(Value::Number(
                    l.saturating_add(m.offset).to_string(),
                    false,
                ))),
                offset: None,
                limit_by: vec![],
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use crate::plan::spec::*;
    use crate::plan::testutil::*;

    #[test]
    fn order_by_limit_offset_pushes_offset_plus_limit() {
        let (sql, m) = scatter(
            "SELECT account_id, balance FROM accounts ORDER BY balance DESC, 1 LIMIT 10 OFFSET 20",
        );
        assert_eq!(
            sql,
            "SELECT account_id, balance FROM accounts ORDER BY balance DESC, 1 LIMIT 30"
        );
        assert_eq!(
            m.order_by,
            vec![
                SortKey {
                    column: 1,
                    descending: true
                },
                SortKey {
                    column: 0,
                    descending: false
                }
            ]
        );
        assert_eq!((m.offset, m.limit), (20, Some(10)));
        let (sql, m) = scatter("SELECT a FROM accounts ORDER BY a LIMIT 20, 10");
        assert!(sql.ends_with("LIMIT 30"), "{sql}");
        assert_eq!((m.offset, m.limit), (20, Some(10)));
    }

    #[test]
    fn group_by_limit_is_not_pushed_down() {
        let (sql, m) = scatter(
            "SELECT fund, COUNT(*) FROM accounts GROUP BY fund ORDER BY COUNT(*) DESC LIMIT 3",
        );
        assert_eq!(
            sql,
            "SELECT fund, COUNT(*) FROM accounts GROUP BY fund ORDER BY COUNT(*) DESC"
        );
        assert_eq!(
            m.order_by,
            vec![SortKey {
                column: 1,
                descending: true
            }]
        );
        assert_eq!(m.limit, Some(3));
    }

    #[test]
    fn aggregate_only_in_having_or_order_disables_limit_pushdown() {
        let (sql, m) = scatter("SELECT fund FROM accounts HAVING COUNT(*) > 1 LIMIT 2");
        assert_eq!(sql, "SELECT fund, COUNT(*) FROM accounts");
        assert_eq!(m.aggregates.len(), 1);
        assert_eq!(m.limit, Some(2));
        let (sql, _) = scatter("SELECT fund FROM accounts ORDER BY MAX(balance) LIMIT 2");
        assert!(!sql.contains("LIMIT"), "{sql}");
    }

    #[test]
    fn having_without_grouping_disables_limit_pushdown() {
        // HAVING filters after the shards answered: a shard's first rows may all be filtered.
        let (sql, m) = scatter("SELECT a FROM accounts HAVING a > 1 ORDER BY a LIMIT 2");
        assert_eq!(sql, "SELECT a FROM accounts ORDER BY a");
        assert!(m.having.is_some());
        assert_eq!(m.limit, Some(2));
    }
}
