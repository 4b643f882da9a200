//! The columns of the shard SQL, and which one holds a given expression.
//!
//! A shard's row starts with the client's select list, item for item (the *visible* columns);
//! after them come *hidden* columns the rewrite needs and the client never sees: a GROUP BY or
//! ORDER BY expression that is not selected, the argument of a COUNT(DISTINCT x), the SUM and
//! COUNT behind an AVG. [`Builder`] keeps that list as the rewrite walks the statement, and
//! resolves an expression of GROUP BY, HAVING or ORDER BY to its column: a select alias first,
//! then an item with the same rendered text, else a new hidden column.
//!
//! Expressions are matched by their rendered, lowercased text (`SUM(balance)` in ORDER BY is the
//! selected `sum(balance)`): exact for what the parser produced, and never a false match.

use sqlparser::ast::{Expr, SelectItem};

use super::aggregates::contains_aggregate;
use super::R;
use crate::plan::reject::not_supported;
use crate::plan::route::Relation;
use crate::plan::spec::{AggregateKind, AggregateSpec, Computed};

/// One output column of the shard SQL.
pub(super) struct Col {
    /// Rendered expression (for matching ORDER BY / GROUP BY / HAVING expressions).
    pub text: String,
    pub alias: Option<String>,
    /// Identifier the item is (for `SELECT name` matching `GROUP BY name`).
    pub is_plain_ident: Option<String>,
    pub agg: bool,
}

/// The shard SQL's columns and the aggregates found so far.
pub(super) struct Builder<'a> {
    pub cols: Vec<Col>,
    /// The hidden select items, in column order after the visible ones.
    pub hidden: Vec<SelectItem>,
    pub aggregates: Vec<AggregateSpec>,
    /// Select items the proxy evaluates after the merge (`scatter/computed.rs`).
    pub computed: Vec<Computed>,
    /// The arguments of the `…(DISTINCT x)` aggregates of a non-key `x` registered so far.
    pub distinct_args: Vec<Expr>,
    /// The GROUP_CONCAT value and order keys the shards must also group by, with their hidden
    /// columns.
    pub concat_group: Vec<(Expr, usize)>,
    pub rels: &'a [Relation],
    /// The columns from the first to the last `*` / `t.*` item (`first..=last`), whose real
    /// width only the shards' answer tells; nothing refers into it (see
    /// [`Wildcard`](crate::plan::spec::Wildcard)).
    pub wild: Option<(usize, usize)>,
    /// Whether every column of every table is selected (an unqualified `*`, or `t.*` of the
    /// only table): then any column reference is a function of the visible columns.
    pub all_columns_visible: bool,
}

/// The text expressions are matched by.
pub(super) fn lc_text(e: &Expr) -> String {
    e.to_string().to_lowercase()
}

impl<'a> Builder<'a> {
    pub fn new(rels: &'a [Relation]) -> Builder<'a> {
        Builder {
            cols: Vec::new(),
            hidden: Vec::new(),
            aggregates: Vec::new(),
            computed: Vec::new(),
            distinct_args: Vec::new(),
            concat_group: Vec::new(),
            rels,
            wild: None,
            all_columns_visible: false,
        }
    }

    /// Step 1, the select list: one visible column per item, its aggregates registered.
    /// Returns whether it holds a `*` (then the column count is the table's, unknown here).
    pub fn select_list(&mut self, projection: &[SelectItem]) -> R<bool> {
        let mut wildcard = false;
        let mut deferred_avgs = Vec::new();
        let mut deferred_computed = Vec::new();
        for item in projection {
            let (e, alias) = match item {
                SelectItem::UnnamedExpr(e) => (e, None),
                SelectItem::ExprWithAlias { expr, alias } => {
                    (expr, Some(alias.value.to_lowercase()))
                }
                SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..) => {
                    wildcard = true;
                    let at = self.cols.len();
                    self.wild = Some(self.wild.map_or((at, at), |(first, _)| (first, at)));
                    self.all_columns_visible |=
                        matches!(item, SelectItem::Wildcard(_)) || self.rels.len() == 1;
                    self.cols.push(Col {
                        text: "*".into(),
                        alias: None,
                        is_plain_ident: None,
                        agg: false,
                    });
                    continue;
                }
                _ => return Err(not_supported("this select item form across shards")),
            };
            let col = self.cols.len();
            let kind = self.aggregate(e)?;
            let computed = kind.is_none() && contains_aggregate(e);
            if computed {
                // Its parts may add hidden columns: after every visible one.
                deferred_computed.push((e.clone(), col));
            }
            self.cols.push(Col {
                text: lc_text(e),
                alias,
                is_plain_ident: match e {
                    Expr::Identifier(i) => Some(i.value.to_lowercase()),
                    _ => None,
                },
                agg: kind.is_some() || computed,
            });
            if let Some(k) = kind {
                if k.avg_helpers().is_some() || matches!(k, AggregateKind::GroupConcat(_)) {
                    // AVG and GROUP_CONCAT add hidden columns: after every visible one.
                    deferred_avgs.push((e.clone(), k, col));
                } else {
                    self.register_aggregate(e, k, col);
                }
            }
        }
        for (e, k, col) in deferred_avgs {
            self.register_aggregate(&e, k, col);
        }
        for (e, col) in deferred_computed {
            self.register_computed(&e, col)?;
        }
        if let Some((first, last)) = self.wild {
            // Items between two wildcards sit at unknown positions: never matched, and no
            // aggregate may live there.
            if self.cols[first..=last].iter().any(|c| c.agg) {
                return Err(not_supported(
                    "an aggregate between two wildcard items (t.*) across shards: select it \
                     before or after them",
                ));
            }
            for c in &mut self.cols[first..=last] {
                c.text.clear();
                c.alias = None;
                c.is_plain_ident = None;
            }
        }
        Ok(wildcard)
    }

    /// Appends hidden column `e`; returns its index.
    pub fn push_hidden(&mut self, e: Expr, agg: bool) -> usize {
        self.cols.push(Col {
            text: lc_text(&e),
            alias: None,
            is_plain_ident: None,
            agg,
        });
        self.hidden.push(SelectItem::UnnamedExpr(e));
        self.cols.len() - 1
    }

    /// Whether planned column `col` is at or after the first wildcard item among the
    /// visible columns (`visible`: the select list's length): a position that names it
    /// (`ORDER BY 3`) cannot be resolved without the table's columns.
    pub fn position_unknown(&self, col: usize, visible: usize) -> bool {
        self.wild
            .is_some_and(|(first, _)| col >= first && col < visible)
    }

    /// The column whose expression renders as `e` does.
    pub fn by_text(&self, e: &Expr) -> Option<usize> {
        let t = lc_text(e);
        if t.is_empty() {
            return None;
        }
        self.cols.iter().position(|c| c.text == t)
    }

    /// The column whose alias is the identifier `e`.
    pub fn by_alias(&self, e: &Expr) -> Option<usize> {
        let Expr::Identifier(id) = e else { return None };
        let name = id.value.to_lowercase();
        self.cols
            .iter()
            .position(|c| c.alias.as_deref() == Some(name.as_str()))
    }

    /// The column holding `e`, adding a hidden one if `e` is not selected. Aggregates are
    /// registered so the merge recombines them.
    pub fn column_for(&mut self, e: &Expr) -> R<usize> {
        if let Some(i) = self.by_alias(e).or_else(|| self.by_text(e)) {
            return Ok(i);
        }
        if let Some(kind) = self.aggregate(e)? {
            let col = self.cols.len();
            let c = self.push_hidden(e.clone(), true);
            debug_assert_eq!(c, col);
            self.register_aggregate(e, kind, col);
            return Ok(col);
        }
        if contains_aggregate(e) {
            return Err(not_supported(
                "an aggregate inside an ORDER BY, GROUP BY or HAVING expression across shards: \
                 select the expression with an alias and use the alias",
            ));
        }
        Ok(self.push_hidden(e.clone(), false))
    }
}

#[cfg(test)]
mod tests {
    use crate::plan::spec::{MergeSpec, SortKey};
    use crate::plan::testutil::*;
    use crate::plan::ALL_COLUMNS;

    #[test]
    fn plain_scatter_concatenates() {
        let (sql, m) = scatter("SELECT account_id, balance FROM accounts WHERE balance > 10");
        assert_eq!(
            sql,
            "SELECT account_id, balance FROM accounts WHERE balance > 10"
        );
        assert_eq!(m.visible_columns, 2);
        assert_eq!(
            m,
            MergeSpec {
                visible_columns: 2,
                ..Default::default()
            }
        );
    }

    #[test]
    fn star_without_order_is_all_columns() {
        let (sql, m) = scatter("SELECT * FROM accounts LIMIT 5");
        assert_eq!(sql, "SELECT * FROM accounts LIMIT 5");
        assert_eq!(m.visible_columns, ALL_COLUMNS);
        assert_eq!(m.limit, Some(5));
    }

    #[test]
    fn order_by_alias_and_hidden_expression() {
        let (sql, m) =
            scatter("SELECT account_id AS id FROM accounts ORDER BY id, created_at DESC");
        assert_eq!(
            sql,
            "SELECT account_id AS id, created_at FROM accounts ORDER BY id, created_at DESC"
        );
        assert_eq!(m.visible_columns, 1);
        assert_eq!(
            m.order_by,
            vec![
                SortKey {
                    column: 0,
                    descending: false
                },
                SortKey {
                    column: 1,
                    descending: true
                }
            ]
        );
    }

    #[test]
    fn unselected_group_key_is_hidden() {
        let (sql, m) = scatter("SELECT COUNT(*) FROM accounts GROUP BY fund");
        assert_eq!(sql, "SELECT COUNT(*), fund FROM accounts GROUP BY fund");
        assert_eq!(m.group_by, vec![1]);
        assert_eq!(m.visible_columns, 1);
    }
}

#[cfg(test)]
mod wildcard_tests {
    use crate::plan::spec::{SortKey, Wildcard};
    use crate::plan::testutil::*;

    #[test]
    fn star_with_order_by_fetches_the_key_as_a_hidden_column() {
        let (sql, m) = scatter("SELECT * FROM accounts ORDER BY account_id LIMIT 3");
        assert_eq!(
            sql,
            "SELECT *, account_id FROM accounts ORDER BY account_id LIMIT 3"
        );
        assert_eq!(m.visible_columns, 1);
        assert_eq!(
            m.wildcard,
            Some(Wildcard {
                start: 0,
                planned_width: 1,
                planned_total: 2
            })
        );
        // A 6-column table: shard rows have 7 columns, the hidden key last.
        let r = m.resolve(7);
        assert_eq!(r.visible_columns, 6);
        assert_eq!(
            r.order_by,
            vec![SortKey {
                column: 6,
                descending: false
            }]
        );
        assert_eq!(r.wildcard, None);
        assert_eq!(r.resolve(7), r, "resolving twice changes nothing");
    }

    #[test]
    fn items_after_the_star_move_by_its_width() {
        let (sql, m) = scatter(
            "SELECT a.*, balance * 2 AS b2 FROM accounts a GROUP BY a.account_id ORDER BY b2 DESC",
        );
        assert_eq!(
            sql,
            "SELECT a.*, balance * 2 AS b2, a.account_id FROM accounts a GROUP BY a.account_id ORDER BY b2 DESC"
        );
        let r = m.resolve(4 + 2);
        // `a.*` is 4 columns: b2 is column 4, the group key column 5.
        assert_eq!(r.visible_columns, 5);
        assert_eq!(r.group_by, vec![5]);
        assert_eq!(r.order_by[0].column, 4);
    }

    #[test]
    fn distinct_star_may_order_by_a_column() {
        let (sql, m) = scatter("SELECT DISTINCT * FROM accounts ORDER BY fund DESC");
        assert_eq!(
            sql,
            "SELECT DISTINCT *, fund FROM accounts ORDER BY fund DESC"
        );
        assert!(m.distinct);
        assert_eq!(m.resolve(3).visible_columns, 2);
    }

    #[test]
    fn star_with_an_aggregate_after_it() {
        let (_, m) = scatter("SELECT *, COUNT(*) AS n FROM accounts GROUP BY account_id");
        let r = m.resolve(3 + 2);
        assert_eq!(r.aggregates[0].column, 3);
        assert_eq!(r.group_by, vec![4]);
        assert_eq!(r.visible_columns, 4);
    }
}
