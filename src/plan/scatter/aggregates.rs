//! Aggregates across shards: which ones recombine, and what the shards must return for them.
//!
//! Each shard aggregates its own rows; the merge then combines the partial results:
//! - `COUNT`s and `SUM`s add up, `MIN`/`MAX` is the MIN/MAX of the partial ones.
//! - `AVG(x)` does not (an average of averages is wrong): the shard SQL keeps `AVG(x)` (for its
//!   column definition) and gets hidden trailing columns `SUM(x), COUNT(x)`; the merge divides.
//! - `COUNT(DISTINCT key)` adds up because each key value lives on one shard
//!   ([`AggregateKind::CountDistinctDisjoint`]). `COUNT(DISTINCT x)` of anything else does not
//!   (the same value may sit on several shards): the shards also group by `x` (a hidden
//!   column), so each shard row stands for one value of `x` per group, and the merge counts each
//!   value once however many shards have it ([`MergeSpec::pre_group_by`]). Several
//!   COUNT(DISTINCT) of different expressions, or of several arguments, would need one such
//!   grouping each and are refused.
//!
//! - `SUM(DISTINCT x)` and `AVG(DISTINCT x)` (even of the key) group by `x` on the shards the
//!   same way: each value is kept once in the merge's first stage, then they add up
//!   ([`AggregateKind::SumDistinct`], [`AggregateKind::AvgDistinct`] with hidden
//!   `SUM(DISTINCT x), COUNT(DISTINCT x)`).
//!
//! - `GROUP_CONCAT(x ORDER BY …, x …)`: the shards group by the value and the order keys too
//!   and count each such row ([`AggregateKind::GroupConcat`]); the merge sorts and joins. Only
//!   with an ORDER BY that includes the value (any other order is one no server promises), one
//!   per query, not beside a `…(DISTINCT)` aggregate.
//!
//! Expressions over aggregates are `computed.rs`'s. Refused: window functions, FILTER/WITHIN
//! GROUP, aggregates nested in aggregates, and the aggregate functions that do not recombine
//! (STD, VARIANCE, BIT_*, JSON_*AGG).
//!
//! [`MergeSpec::pre_group_by`]: crate::plan::spec::MergeSpec::pre_group_by

use sqlparser::ast::{
    DuplicateTreatment, Expr, Function, FunctionArg, FunctionArgExpr, FunctionArgumentClause,
    FunctionArgumentList, FunctionArguments, Ident, ObjectName, OrderBySort, Value,
};

use super::columns::{lc_text, Builder};
use super::R;
use crate::plan::reject::not_supported;
use crate::plan::route::key_ref;
use crate::plan::scan::scan;
use crate::plan::spec::{AggregateKind, AggregateSpec, GroupConcat, SortKey};

/// Aggregate functions MariaDB knows; only the first five can be recombined.
pub(crate) const AGGREGATES: &[&str] = &[
    "count",
    "sum",
    "min",
    "max",
    "avg",
    "group_concat",
    "std",
    "stddev",
    "stddev_pop",
    "stddev_samp",
    "variance",
    "var_pop",
    "var_samp",
    "bit_and",
    "bit_or",
    "bit_xor",
    "json_arrayagg",
    "json_objectagg",
];

fn func_name(f: &Function) -> String {
    f.name.to_string().to_lowercase()
}

/// Whether the rendered expression calls an aggregate function anywhere.
pub(super) fn contains_aggregate(e: &Expr) -> bool {
    let s = scan(&e.to_string());
    AGGREGATES.iter().any(|a| s.has_call(a))
}

fn single_arg(f: &Function) -> R<(Option<&FunctionArgExpr>, bool, Vec<&FunctionArgExpr>)> {
    let FunctionArguments::List(list) = &f.args else {
        return Err(not_supported(format!("{} without arguments", f.name)));
    };
    if !list.clauses.is_empty() {
        return Err(not_supported(format!(
            "{} with ORDER BY/SEPARATOR clauses across shards",
            f.name
        )));
    }
    let distinct = matches!(list.duplicate_treatment, Some(DuplicateTreatment::Distinct));
    let args: Vec<&FunctionArgExpr> = list
        .args
        .iter()
        .map(|a| match a {
            FunctionArg::Unnamed(x) => Ok(x),
            _ => Err(not_supported("named function arguments")),
        })
        .collect::<R<_>>()?;
    Ok((args.first().copied(), distinct, args))
}

/// A GROUP_CONCAT's value, ORDER BY keys (expression, descending), separator and DISTINCT,
/// refused unless the order is fixed (see [`GroupConcat`]).
type ConcatParts = (Expr, Vec<(Expr, bool)>, String, bool);

fn group_concat_parts(f: &Function) -> R<ConcatParts> {
    let FunctionArguments::List(list) = &f.args else {
        return Err(not_supported("GROUP_CONCAT without arguments"));
    };
    let distinct = matches!(list.duplicate_treatment, Some(DuplicateTreatment::Distinct));
    let [FunctionArg::Unnamed(FunctionArgExpr::Expr(value))] = list.args.as_slice() else {
        return Err(not_supported(
            "GROUP_CONCAT of several expressions across shards (concatenate them with CONCAT)",
        ));
    };
    let mut keys = Vec::new();
    let mut separator = ",".to_string();
    for c in &list.clauses {
        match c {
            FunctionArgumentClause::OrderBy(list) => {
                for o in list {
                    if o.options.nulls_first.is_some() {
                        return Err(not_supported("GROUP_CONCAT … NULLS FIRST/LAST"));
                    }
                    let desc = matches!(o.options.sort, Some(OrderBySort::Desc));
                    if matches!(&o.expr, Expr::Value(_)) {
                        return Err(not_supported("GROUP_CONCAT … ORDER BY a position"));
                    }
                    keys.push((o.expr.clone(), desc));
                }
            }
            FunctionArgumentClause::Separator(v) => match &v.value {
                Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => {
                    separator = s.clone()
                }
                _ => return Err(not_supported("this GROUP_CONCAT SEPARATOR")),
            },
            _ => return Err(not_supported("this GROUP_CONCAT clause across shards")),
        }
    }
    let text = lc_text(value);
    let orders_by_value = keys.iter().any(|(k, _)| lc_text(k) == text);
    let only_value = keys.iter().all(|(k, _)| lc_text(k) == text);
    if !orders_by_value || (distinct && !only_value) || contains_aggregate(value) {
        return Err(not_supported(
            "GROUP_CONCAT across shards needs an ORDER BY that includes the value itself \
             (GROUP_CONCAT(x ORDER BY x)), only the value with DISTINCT: otherwise the order \
             of the values is one no server promises",
        ));
    }
    Ok((value.clone(), keys, separator, distinct))
}

pub(super) fn rename(f: &Function, name: &str) -> Function {
    let mut g = f.clone();
    g.name = ObjectName::from(vec![Ident::new(name)]);
    g
}

impl Builder<'_> {
    /// Classifies an aggregate call; `None` if `e` is not a recombinable aggregate call.
    pub fn aggregate(&self, e: &Expr) -> R<Option<AggregateKind>> {
        let Expr::Function(f) = e else {
            return Ok(None);
        };
        let name = func_name(f);
        if !AGGREGATES.contains(&name.as_str()) {
            return Ok(None);
        }
        if f.over.is_some() {
            return Err(not_supported(
                "window functions are not supported across shards",
            ));
        }
        if f.filter.is_some() || !f.within_group.is_empty() {
            return Err(not_supported("aggregate FILTER/WITHIN GROUP across shards"));
        }
        if name == "group_concat" {
            group_concat_parts(f)?;
            return Ok(Some(AggregateKind::GroupConcat(Box::new(GroupConcat {
                value: 0,
                keys: Vec::new(),
                separator: String::new(),
                count: None,
            }))));
        }
        let (_, distinct, args) = single_arg(f)?;
        let kind = match name.as_str() {
            "count" if distinct => {
                let on_key = args.iter().any(|a| match a {
                    FunctionArgExpr::Expr(x) => !key_ref(x, self.rels).is_empty(),
                    _ => false,
                });
                if on_key {
                    AggregateKind::CountDistinctDisjoint
                } else if args.len() == 1 && matches!(args[0], FunctionArgExpr::Expr(_)) {
                    AggregateKind::CountDistinct
                } else {
                    return Err(not_supported(
                        "COUNT(DISTINCT …) of several expressions other than the shard key \
                         across shards (count one expression, or query one shard)",
                    ));
                }
            }
            "count" => AggregateKind::Count,
            // Even of the key: the finer grouping by `x` is exact either way.
            "sum" if distinct => AggregateKind::SumDistinct,
            "avg" if distinct => AggregateKind::AvgDistinct {
                sum_column: 0,
                count_column: 0,
            },
            "sum" => AggregateKind::Sum,
            "min" => AggregateKind::Min,
            "max" => AggregateKind::Max,
            "avg" => AggregateKind::Avg {
                sum_column: 0,
                count_column: 0,
            },
            other => {
                return Err(not_supported(format!(
                    "{}() cannot be combined across shards",
                    other.to_uppercase()
                )))
            }
        };
        if args.len() != 1 && !matches!(kind, AggregateKind::CountDistinctDisjoint) {
            return Err(not_supported(format!("{name} with several arguments")));
        }
        for a in &args {
            if let FunctionArgExpr::Expr(x) = a {
                if contains_aggregate(x) {
                    return Err(not_supported("nested aggregates"));
                }
            }
        }
        Ok(Some(kind))
    }

    /// Registers aggregate `e` at column `column` (adding AVG's hidden helpers).
    pub fn register_aggregate(&mut self, e: &Expr, kind: AggregateKind, column: usize) {
        let kind = match kind {
            AggregateKind::Avg { .. } => {
                let Expr::Function(f) = e else { unreachable!() };
                let sum_column = self.push_hidden(Expr::Function(rename(f, "SUM")), false);
                let count_column = self.push_hidden(Expr::Function(rename(f, "COUNT")), false);
                AggregateKind::Avg {
                    sum_column,
                    count_column,
                }
            }
            AggregateKind::AvgDistinct { .. } => {
                let Expr::Function(f) = e else { unreachable!() };
                self.push_distinct_arg(e);
                let sum_column = self.push_hidden(Expr::Function(rename(f, "SUM")), false);
                let count_column = self.push_hidden(Expr::Function(rename(f, "COUNT")), false);
                AggregateKind::AvgDistinct {
                    sum_column,
                    count_column,
                }
            }
            AggregateKind::GroupConcat(_) => {
                let Expr::Function(f) = e else { unreachable!() };
                let Ok((value, keys, separator, distinct)) = group_concat_parts(f) else {
                    unreachable!("classified by aggregate()")
                };
                let value_col = self.push_hidden(value.clone(), false);
                self.concat_group.push((value.clone(), value_col));
                let text = lc_text(&value);
                let keys = keys
                    .into_iter()
                    .map(|(k, descending)| {
                        let column = if lc_text(&k) == text {
                            value_col
                        } else {
                            let c = self.push_hidden(k.clone(), false);
                            self.concat_group.push((k, c));
                            c
                        };
                        SortKey { column, descending }
                    })
                    .collect();
                let count = (!distinct).then(|| {
                    let star = Expr::Function(rename(f, "COUNT"));
                    let Expr::Function(mut star) = star else {
                        unreachable!()
                    };
                    star.args = FunctionArguments::List(FunctionArgumentList {
                        duplicate_treatment: None,
                        args: vec![FunctionArg::Unnamed(FunctionArgExpr::Wildcard)],
                        clauses: vec![],
                    });
                    self.push_hidden(Expr::Function(star), false)
                });
                AggregateKind::GroupConcat(Box::new(GroupConcat {
                    value: value_col,
                    keys,
                    separator,
                    count,
                }))
            }
            k @ (AggregateKind::CountDistinct | AggregateKind::SumDistinct) => {
                self.push_distinct_arg(e);
                k
            }
            k => k,
        };
        self.aggregates.push(AggregateSpec { column, kind });
    }

    /// Remembers the argument `x` of a `…(DISTINCT x)` the shards must also group by.
    fn push_distinct_arg(&mut self, e: &Expr) {
        if let Expr::Function(f) = e {
            if let Ok((Some(FunctionArgExpr::Expr(arg)), _, _)) = single_arg(f) {
                self.distinct_args.push(arg.clone());
            }
        }
    }

    /// COUNT(DISTINCT x) of a non-key expression: the shards group by `x` too. Called once
    /// every aggregate is registered; returns the finer grouping for the merge's first stage
    /// (`group_by` plus `x`'s hidden column) and `x`, to add to the shard SQL's GROUP BY. Both
    /// empty when there is no such aggregate.
    pub fn distinct_grouping(&mut self, group_by: &[usize]) -> R<(Vec<usize>, Vec<Expr>)> {
        let concats = self
            .aggregates
            .iter()
            .filter(|a| matches!(a.kind, AggregateKind::GroupConcat(_)))
            .count();
        if concats > 0 {
            if concats > 1 || !self.distinct_args.is_empty() {
                return Err(not_supported(
                    "GROUP_CONCAT beside another GROUP_CONCAT or …(DISTINCT) aggregate across \
                     shards (each would need its own grouping)",
                ));
            }
            if self
                .aggregates
                .iter()
                .any(|a| a.kind == AggregateKind::CountDistinctDisjoint)
            {
                return Err(not_supported(
                    "GROUP_CONCAT together with COUNT(DISTINCT key) across shards",
                ));
            }
            let mut pre_group_by = group_by.to_vec();
            pre_group_by.extend(self.concat_group.iter().map(|(_, c)| *c));
            let exprs = self.concat_group.iter().map(|(e, _)| e.clone()).collect();
            return Ok((pre_group_by, exprs));
        }
        let Some(arg) = self.distinct_args.first().cloned() else {
            return Ok((Vec::new(), Vec::new()));
        };
        let text = lc_text(&arg);
        if self.distinct_args.iter().any(|a| lc_text(a) != text) {
            return Err(not_supported(
                "COUNT(DISTINCT …) of different expressions in one query across shards (each \
                 would need its own grouping); run one query per expression",
            ));
        }
        // The finer grouping would count one key value once per value of `arg`.
        if self
            .aggregates
            .iter()
            .any(|a| a.kind == AggregateKind::CountDistinctDisjoint)
        {
            return Err(not_supported(
                "COUNT(DISTINCT …) of the shard key together with COUNT(DISTINCT …) of \
                 another expression across shards",
            ));
        }
        let col = self.push_hidden(arg.clone(), false);
        let mut pre_group_by = group_by.to_vec();
        pre_group_by.push(col);
        Ok((pre_group_by, vec![arg]))
    }
}

#[cfg(test)]
mod tests {
    use crate::plan::spec::*;
    use crate::plan::testutil::*;
    use crate::plan::Plan;

    #[test]
    fn avg_hidden_columns_come_after_every_visible_column() {
        let r = rules(2);
        let Plan::Scatter { merge: m, targets } = plan_with(
            "SELECT AVG(balance), SUM(shares), COUNT(*) FROM accounts",
            &r,
        ) else {
            panic!()
        };
        assert_eq!(m.visible_columns, 3);
        for a in &m.aggregates {
            if let AggregateKind::Avg {
                sum_column,
                count_column,
            } = a.kind
            {
                assert!(sum_column >= 3 && count_column >= 3, "{m:?}");
            }
        }
        assert!(
            targets[0].sql.contains("SUM(balance)"),
            "{}",
            targets[0].sql
        );
    }

    #[test]
    fn count_sum_min_max() {
        let (sql, m) =
            scatter("SELECT COUNT(*), SUM(balance), MIN(balance), MAX(balance) FROM accounts");
        assert_eq!(
            sql,
            "SELECT COUNT(*), SUM(balance), MIN(balance), MAX(balance) FROM accounts"
        );
        let kinds: Vec<_> = m
            .aggregates
            .iter()
            .map(|a| (a.column, a.kind.clone()))
            .collect();
        assert_eq!(
            kinds,
            vec![
                (0, AggregateKind::Count),
                (1, AggregateKind::Sum),
                (2, AggregateKind::Min),
                (3, AggregateKind::Max)
            ]
        );
        assert!(m.group_by.is_empty());
    }

    #[test]
    fn avg_gets_hidden_sum_and_count() {
        let (sql, m) = scatter("SELECT fund, AVG(balance) AS a FROM accounts GROUP BY fund");
        assert_eq!(
            sql,
            "SELECT fund, AVG(balance) AS a, SUM(balance), COUNT(balance) FROM accounts GROUP BY fund"
        );
        assert_eq!(m.visible_columns, 2);
        assert_eq!(m.group_by, vec![0]);
        // Implicit GROUP BY order, as MariaDB returns it.
        assert_eq!(
            m.order_by,
            vec![SortKey {
                column: 0,
                descending: false
            }]
        );
        assert_eq!(
            m.aggregates,
            vec![AggregateSpec {
                column: 1,
                kind: AggregateKind::Avg {
                    sum_column: 2,
                    count_column: 3
                }
            }]
        );
    }

    #[test]
    fn distinct_and_count_distinct_key() {
        let (sql, m) = scatter("SELECT DISTINCT fund FROM accounts LIMIT 4");
        assert_eq!(sql, "SELECT DISTINCT fund FROM accounts");
        assert!(m.distinct);
        assert_eq!(m.limit, Some(4));
        let (_, m) = scatter("SELECT COUNT(DISTINCT account_id) FROM transactions");
        assert_eq!(m.aggregates[0].kind, AggregateKind::CountDistinctDisjoint);
        assert!(m.pre_group_by.is_empty());
    }

    #[test]
    fn count_distinct_of_another_column_groups_by_it_on_the_shards() {
        let (sql, m) = scatter("SELECT COUNT(DISTINCT fund) FROM accounts");
        assert_eq!(
            sql,
            "SELECT COUNT(DISTINCT fund), fund FROM accounts GROUP BY fund"
        );
        assert_eq!(m.aggregates[0].kind, AggregateKind::CountDistinct);
        assert!(m.group_by.is_empty());
        assert_eq!(m.pre_group_by, vec![1]);
        assert_eq!(m.visible_columns, 1);
        // With group keys, other aggregates, HAVING on it and a limit.
        let (sql, m) = scatter(
            "SELECT region, COUNT(DISTINCT fund) AS n, SUM(balance) FROM accounts \
             GROUP BY region HAVING COUNT(DISTINCT fund) > 1 ORDER BY n DESC LIMIT 3",
        );
        assert_eq!(
            sql,
            "SELECT region, COUNT(DISTINCT fund) AS n, SUM(balance), fund FROM accounts \
             GROUP BY region, fund ORDER BY n DESC"
        );
        assert_eq!(m.group_by, vec![0]);
        assert_eq!(m.pre_group_by, vec![0, 3]);
        assert_eq!(m.limit, Some(3));
        assert!(m.having.is_some());
        // The same expression twice is one grouping.
        let (_, m) =
            scatter("SELECT COUNT(DISTINCT fund) AS a, COUNT(DISTINCT fund) AS b FROM accounts");
        assert_eq!(m.pre_group_by.len(), 1);
    }
}

#[cfg(test)]
mod distinct_value_tests {
    use crate::plan::spec::*;
    use crate::plan::testutil::*;

    #[test]
    fn sum_and_avg_distinct_group_by_the_value_on_the_shards() {
        let (sql, m) = scatter(
            "SELECT fund, SUM(DISTINCT balance), AVG(DISTINCT balance) FROM accounts GROUP BY fund",
        );
        assert_eq!(
            sql,
            "SELECT fund, SUM(DISTINCT balance), AVG(DISTINCT balance), SUM(DISTINCT balance), \
             COUNT(DISTINCT balance), balance FROM accounts GROUP BY fund, balance"
        );
        assert_eq!(m.group_by, vec![0]);
        assert_eq!(m.pre_group_by, vec![0, 5]);
        assert_eq!(
            m.aggregates,
            vec![
                AggregateSpec {
                    column: 1,
                    kind: AggregateKind::SumDistinct
                },
                AggregateSpec {
                    column: 2,
                    kind: AggregateKind::AvgDistinct {
                        sum_column: 3,
                        count_column: 4
                    }
                }
            ]
        );
    }
}

#[cfg(test)]
mod group_concat_tests {
    use crate::plan::spec::*;
    use crate::plan::testutil::*;

    #[test]
    fn group_concat_groups_by_its_value_and_keys_on_the_shards() {
        let (sql, m) = scatter(
            "SELECT fund, GROUP_CONCAT(name ORDER BY region DESC, name SEPARATOR '; ') FROM accounts GROUP BY fund",
        );
        assert_eq!(
            sql,
            "SELECT fund, GROUP_CONCAT(name ORDER BY region DESC, name SEPARATOR '; '), name, \
             region, COUNT(*) FROM accounts GROUP BY fund, name, region"
        );
        assert_eq!(m.group_by, vec![0]);
        assert_eq!(m.pre_group_by, vec![0, 2, 3]);
        let AggregateKind::GroupConcat(g) = &m.aggregates[0].kind else {
            panic!("{m:?}")
        };
        assert_eq!(g.value, 2);
        assert_eq!(
            g.keys,
            vec![
                SortKey {
                    column: 3,
                    descending: true
                },
                SortKey {
                    column: 2,
                    descending: false
                }
            ]
        );
        assert_eq!((g.separator.as_str(), g.count), ("; ", Some(4)));
        // DISTINCT: no count, each value once.
        let (_, m) = scatter("SELECT GROUP_CONCAT(DISTINCT fund ORDER BY fund DESC) FROM accounts");
        let AggregateKind::GroupConcat(g) = &m.aggregates[0].kind else {
            panic!("{m:?}")
        };
        assert_eq!((g.separator.as_str(), g.count), (",", None));
    }
}
