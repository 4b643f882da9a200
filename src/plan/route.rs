//! Route analysis: which tables a statement touches, whether its sharded tables are colocated,
//! and which key values its WHERE clause pins.
//!
//! # Colocation
//! Tables sharded on "the same key" (e.g. `accounts.account_id` and
//! `transactions.account_id`) keep the rows of one key value on one shard, so a join between
//! them is local to each shard *if the join matches rows by that key*. The planner puts sharded
//! tables in one class when an equality between their key columns appears as a top-level
//! conjunct of a join's `ON`, of `WHERE`, or in `USING (key)`; a statement whose sharded tables
//! are not all in one class is refused (its join would need rows from several shards).
//! Reference tables exist on every shard, so joining them is always local, with one exception:
//! an outer join that preserves reference rows against a sharded table would repeat the
//! unmatched reference rows on every shard, so it is refused.
//!
//! # Key values
//! Only top-level conjuncts of `WHERE` pin key values: `key = v`, `v = key` (parenthesised or
//! not, AND-ed with anything) and `key IN (v1, v2, …)`. Any conjunct narrows the shard set; an
//! OR, a NOT, or a value that cannot be routed exactly (see [`crate::ring::key`]) pins nothing,
//! so the statement goes to all shards, which is slower but exact.

use sqlparser::ast::{
    BinaryOperator, Expr, InTarget, JoinConstraint, JoinOperator, ObjectName, ObjectNamePart,
    TableFactor, TableWithJoins, UnaryOperator, Value,
};
use sqlparser::tokenizer::Location;

use super::reject::not_supported;
use super::rules::{Rules, TableKind};
use super::scan::Scan;
use super::Plan;
use crate::ring::KeyValue;

/// One table in a statement's FROM/JOIN/UPDATE/DELETE list.
#[derive(Debug, Clone)]
pub struct Relation {
    /// Lowercase table name.
    pub table: String,
    /// Lowercase database qualifier as written.
    pub db: Option<String>,
    /// Lowercase name that columns use to qualify: the alias, else the table name.
    pub qualifier: String,
    pub kind: TableKind,
}

impl Relation {
    pub fn key(&self) -> Option<&str> {
        match &self.kind {
            TableKind::Sharded { key } => Some(key),
            _ => None,
        }
    }
}

/// A key value found in the statement.
#[derive(Debug, Clone, PartialEq)]
pub enum KeyAtom {
    Value(KeyValue),
    /// The n-th (0-based) `?` placeholder.
    Param(usize),
    /// A literal that cannot be routed exactly (NULL, 42.0, '042', non-ASCII text, …).
    Unroutable,
}

/// What the FROM part holds.
#[derive(Debug, Default)]
pub struct From<'a> {
    pub relations: Vec<Relation>,
    /// `ON` conditions of all joins.
    pub on: Vec<&'a Expr>,
    /// Pairs of relation indices joined by `USING (key)`.
    pub using_pairs: Vec<(usize, usize)>,
}

/// `db.table` parts of an object name, lowercased.
pub fn object_name(name: &ObjectName) -> (Option<String>, String) {
    let parts: Vec<String> = name
        .0
        .iter()
        .map(|p| match p {
            ObjectNamePart::Identifier(i) => i.value.to_lowercase(),
            ObjectNamePart::Function(f) => f.to_string().to_lowercase(),
        })
        .collect();
    match parts.len() {
        0 => (None, String::new()),
        1 => (None, parts[0].clone()),
        n => (Some(parts[n - 2].clone()), parts[n - 1].clone()),
    }
}

pub fn relation_of(
    name: &ObjectName,
    alias: Option<&str>,
    rules: &Rules,
    cur: Option<&str>,
) -> Relation {
    let (db, table) = object_name(name);
    let kind = rules.classify(db.as_deref(), &table, cur);
    Relation {
        qualifier: alias
            .map(str::to_lowercase)
            .unwrap_or_else(|| table.clone()),
        table,
        db,
        kind,
    }
}

fn is_sharded(r: &Relation) -> bool {
    matches!(r.kind, TableKind::Sharded { .. })
}

/// Collects the relations of a FROM list, refusing shapes that cannot be planned exactly.
pub fn collect_from<'a>(
    from: &'a [TableWithJoins],
    rules: &Rules,
    cur: Option<&str>,
) -> Result<From<'a>, Plan> {
    let mut out = From::default();
    for twj in from {
        // A comma join: no outer-join hazard.
        add_factor(&twj.relation, &mut out, rules, cur)?;
        for join in &twj.joins {
            let before_sharded = out.relations.iter().any(is_sharded);
            let idx = out.relations.len();
            add_factor(&join.relation, &mut out, rules, cur)?;
            let this_sharded = is_sharded(&out.relations[idx]);
            use JoinOperator::*;
            let (constraint, kind) = match &join.join_operator {
                Join(c) | Inner(c) | StraightJoin(c) => (Some(c), "inner"),
                CrossJoin(c) => (Some(c), "inner"),
                Left(c) | LeftOuter(c) => (Some(c), "left"),
                Right(c) | RightOuter(c) => (Some(c), "right"),
                _ => {
                    return Err(not_supported(
                        "this join type is not supported on sharded tables",
                    ))
                }
            };
            // An outer join repeats preserved non-sharded rows on every shard.
            let hazard = match kind {
                "left" => this_sharded && !before_sharded,
                "right" => !this_sharded && before_sharded,
                _ => false,
            };
            if hazard {
                return Err(not_supported(
                    "an outer join that keeps unmatched rows of a non-sharded table against a \
                     sharded table would repeat them on every shard; put the sharded table on \
                     the preserved side",
                ));
            }
            match constraint {
                Some(JoinConstraint::On(e)) => out.on.push(e),
                Some(JoinConstraint::Using(cols)) => {
                    for c in cols {
                        let (_, col) = object_name(c);
                        if out.relations[idx].key() == Some(col.as_str()) {
                            for (j, r) in out.relations[..idx].iter().enumerate() {
                                if r.key() == Some(col.as_str()) {
                                    out.using_pairs.push((j, idx));
                                }
                            }
                        }
                    }
                }
                Some(JoinConstraint::None) | None => {}
                Some(_) => {
                    if this_sharded || before_sharded {
                        return Err(not_supported(
                            "NATURAL joins of sharded tables are not supported; use ON or USING",
                        ));
                    }
                }
            }
        }
    }
    Ok(out)
}

fn add_factor(
    f: &TableFactor,
    out: &mut From<'_>,
    rules: &Rules,
    cur: Option<&str>,
) -> Result<(), Plan> {
    match f {
        TableFactor::Table {
            name,
            alias,
            args: None,
            ..
        } => {
            let alias = alias.as_ref().map(|a| a.name.value.as_str());
            out.relations.push(relation_of(name, alias, rules, cur));
            Ok(())
        }
        TableFactor::Derived { .. } => Err(not_supported(
            "derived tables (subqueries in FROM) are not supported with sharded tables",
        )),
        _ => Err(not_supported(
            "this kind of table reference is not supported with sharded tables",
        )),
    }
}

/// Flattens AND and parentheses into conjuncts.
pub fn conjuncts<'a>(e: &'a Expr, out: &mut Vec<&'a Expr>) {
    match e {
        Expr::BinaryOp {
            left,
            op: BinaryOperator::And,
            right,
        } => {
            conjuncts(left, out);
            conjuncts(right, out);
        }
        Expr::Nested(inner) => conjuncts(inner, out),
        _ => out.push(e),
    }
}

/// Indices of the sharded relations whose key column `e` names.
pub fn key_ref(e: &Expr, rels: &[Relation]) -> Vec<usize> {
    match e {
        Expr::Nested(inner) => key_ref(inner, rels),
        Expr::Identifier(id) => {
            let col = id.value.to_lowercase();
            rels.iter()
                .enumerate()
                .filter(|(_, r)| r.key() == Some(col.as_str()))
                .map(|(i, _)| i)
                .collect()
        }
        Expr::CompoundIdentifier(parts) if parts.len() >= 2 => {
            let col = parts[parts.len() - 1].value.to_lowercase();
            let q = parts[parts.len() - 2].value.to_lowercase();
            let db = (parts.len() >= 3).then(|| parts[parts.len() - 3].value.to_lowercase());
            rels.iter()
                .enumerate()
                .filter(|(_, r)| {
                    r.key() == Some(col.as_str())
                        && r.qualifier == q
                        && (db.is_none() || r.db.is_none() || r.db == db)
                })
                .map(|(i, _)| i)
                .collect()
        }
        _ => vec![],
    }
}

/// Byte offset in `sql` of a 1-based line/column location (columns count characters).
pub fn offset_of(sql: &str, loc: Location) -> Option<usize> {
    Offsets::new(sql).of(loc)
}

/// Line/column locations of one statement turned into byte offsets, with the line starts
/// found once: a multi-row INSERT asks for two offsets per row, and scanning the text from
/// its start for each made a 500-row INSERT cost time quadratic in its length.
pub struct Offsets<'a> {
    /// The statement.
    sql: &'a str,
    /// Byte offset of the start of each line (line 1 at index 0).
    line_starts: Vec<usize>,
    /// The text is ASCII: a column is then a byte count.
    ascii: bool,
}

impl<'a> Offsets<'a> {
    /// Scans `sql` once for its line starts.
    pub fn new(sql: &'a str) -> Offsets<'a> {
        let mut line_starts = vec![0];
        line_starts.extend(
            sql.bytes()
                .enumerate()
                .filter(|&(_, b)| b == b'\n')
                .map(|(i, _)| i + 1),
        );
        Offsets {
            sql,
            line_starts,
            ascii: sql.is_ascii(),
        }
    }

    /// The byte offset of a 1-based line/column location (as [`offset_of`]).
    pub fn of(&self, loc: Location) -> Option<usize> {
        if loc.line == 0 {
            return None;
        }
        let line_start = *self.line_starts.get((loc.line - 1) as usize)?;
        let col = (loc.column.max(1) - 1) as usize;
        if self.ascii {
            return Some((line_start + col).min(self.sql.len()));
        }
        match self.sql[line_start..].char_indices().nth(col) {
            Some((i, _)) => Some(line_start + i),
            None => Some(self.sql.len()),
        }
    }
}

/// The key value of a literal expression; `None` if `e` is not a literal at all (a column, a
/// function call: not a key constraint).
pub fn key_atom(e: &Expr, sql: &str, scan: &Scan) -> Option<KeyAtom> {
    match e {
        Expr::Nested(inner) => key_atom(inner, sql, scan),
        Expr::Value(v) => Some(match &v.value {
            Value::Number(n, _) => KeyValue::from_number_literal(n)
                .map(KeyAtom::Value)
                .unwrap_or(KeyAtom::Unroutable),
            Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => {
                KeyValue::from_str_value(s)
                    .map(KeyAtom::Value)
                    .unwrap_or(KeyAtom::Unroutable)
            }
            Value::Placeholder(p) if p == "?" => offset_of(sql, v.span.start)
                .and_then(|o| scan.placeholder_index(o))
                .map(KeyAtom::Param)
                .unwrap_or(KeyAtom::Unroutable),
            _ => KeyAtom::Unroutable,
        }),
        Expr::UnaryOp { op, expr } => match (op, expr.as_ref()) {
            (UnaryOperator::Minus, Expr::Value(v)) => match &v.value {
                Value::Number(n, _) => Some(
                    KeyValue::from_number_literal(&format!("-{n}"))
                        .map(KeyAtom::Value)
                        .unwrap_or(KeyAtom::Unroutable),
                ),
                _ => Some(KeyAtom::Unroutable),
            },
            (UnaryOperator::Plus, inner) => key_atom(inner, sql, scan),
            _ => None,
        },
        _ => None,
    }
}

/// Where a statement's sharded tables lead.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct KeyRoute {
    /// One entry per pinning conjunct: the values the key may take.
    pub sets: Vec<Vec<KeyAtom>>,
}

/// Checks colocation of all sharded relations and collects key values pinned by `where_`.
pub fn analyze(
    from: &From<'_>,
    where_: Option<&Expr>,
    sql: &str,
    scan: &Scan,
) -> Result<KeyRoute, Plan> {
    let rels = &from.relations;
    let sharded: Vec<usize> = (0..rels.len()).filter(|&i| is_sharded(&rels[i])).collect();
    let mut parent: Vec<usize> = (0..rels.len()).collect();
    fn find(p: &mut [usize], x: usize) -> usize {
        let mut x = x;
        while p[x] != x {
            p[x] = p[p[x]];
            x = p[x];
        }
        x
    }
    let union = |a: usize, b: usize, p: &mut Vec<usize>| {
        let (ra, rb) = (find(p, a), find(p, b));
        p[ra] = rb;
    };
    for &(a, b) in &from.using_pairs {
        union(a, b, &mut parent);
    }
    let mut all = Vec::new();
    for e in &from.on {
        conjuncts(e, &mut all);
    }
    let mut where_conj = Vec::new();
    if let Some(w) = where_ {
        conjuncts(w, &mut where_conj);
    }
    all.extend(where_conj.iter().copied());
    for c in &all {
        if let Expr::BinaryOp {
            left,
            op: BinaryOperator::Eq,
            right,
        } = c
        {
            let (l, r) = (key_ref(left, rels), key_ref(right, rels));
            for &a in &l {
                for &b in &r {
                    union(a, b, &mut parent);
                }
            }
        }
    }
    if let Some(&first) = sharded.first() {
        let root = find(&mut parent, first);
        for &i in &sharded[1..] {
            if find(&mut parent, i) != root {
                return Err(not_supported(format!(
                    "the join of sharded tables {} and {} does not match rows by their shard \
                     keys (add `{}.{} = {}.{}` to the join condition)",
                    rels[first].table,
                    rels[i].table,
                    rels[first].qualifier,
                    rels[first].key().unwrap_or(""),
                    rels[i].qualifier,
                    rels[i].key().unwrap_or(""),
                )));
            }
        }
    }
    let mut route = KeyRoute::default();
    for c in where_conj {
        match c {
            Expr::BinaryOp {
                left,
                op: BinaryOperator::Eq,
                right,
            } => {
                let atom = if !key_ref(left, rels).is_empty() {
                    key_atom(right, sql, scan)
                } else if !key_ref(right, rels).is_empty() {
                    key_atom(left, sql, scan)
                } else {
                    None
                };
                if let Some(a) = atom {
                    route.sets.push(vec![a]);
                }
            }
            Expr::In {
                expr,
                target: InTarget::List(list),
                negated: false,
                ..
            } if !key_ref(expr, rels).is_empty() => {
                let atoms: Option<Vec<KeyAtom>> =
                    list.iter().map(|e| key_atom(e, sql, scan)).collect();
                if let Some(atoms) = atoms {
                    route.sets.push(atoms);
                }
            }
            _ => {}
        }
    }
    Ok(route)
}

/// The shards a key route leads to, in config order; `None` = all shards (nothing pins the
/// key). Sets with placeholders or unroutable values pin nothing here.
pub fn target_shards(route: &KeyRoute, rules: &Rules) -> Option<Vec<String>> {
    let mut result: Option<Vec<bool>> = None;
    for set in &route.sets {
        let mut mask = vec![false; rules.shards.len()];
        let mut ok = true;
        for atom in set {
            match atom {
                KeyAtom::Value(v) => {
                    let shard = rules.ring.shard_for(v);
                    if let Some(i) = rules.shards.iter().position(|s| s == shard) {
                        mask[i] = true;
                    }
                }
                _ => {
                    ok = false;
                    break;
                }
            }
        }
        if !ok {
            continue;
        }
        result = Some(match result {
            None => mask,
            Some(prev) => {
                let inter: Vec<bool> = prev.iter().zip(&mask).map(|(a, b)| *a && *b).collect();
                // Contradictory conjuncts (k = 1 AND k = 2) match nothing: any one shard gives
                // the (empty) answer.
                if inter.iter().any(|b| *b) {
                    inter
                } else {
                    prev
                }
            }
        });
    }
    result.map(|mask| {
        rules
            .shards
            .iter()
            .zip(mask)
            .filter(|(_, m)| *m)
            .map(|(s, _)| s.clone())
            .collect()
    })
}

/// Human-readable key constraints for PREVIEW, e.g. `key = 7` or `key IN (1, 2)`.
pub fn describe(route: &KeyRoute) -> String {
    let parts: Vec<String> = route
        .sets
        .iter()
        .map(|set| {
            let vals: Vec<String> = set
                .iter()
                .map(|a| match a {
                    KeyAtom::Value(v) => v.to_string(),
                    KeyAtom::Param(i) => format!("?{}", i + 1),
                    KeyAtom::Unroutable => "(unplaceable)".into(),
                })
                .collect();
            if vals.len() == 1 {
                format!("key = {}", vals[0])
            } else {
                format!("key IN ({})", vals.join(", "))
            }
        })
        .collect();
    if parts.is_empty() {
        "no shard key in WHERE".into()
    } else {
        parts.join(" AND ")
    }
}

/// A key constraint `key = ?` that alone would pin the statement to one shard.
pub fn param_key(route: &KeyRoute) -> Option<usize> {
    route.sets.iter().find_map(|s| match s.as_slice() {
        [KeyAtom::Param(i)] => Some(*i),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_from_locations() {
        let sql = "SELECT\n  é, ?";
        let loc = Location { line: 2, column: 6 };
        assert_eq!(&sql[offset_of(sql, loc).unwrap()..], "?");
        assert_eq!(offset_of(sql, Location { line: 1, column: 1 }), Some(0));
        assert_eq!(offset_of(sql, Location { line: 0, column: 0 }), None);
        // The precomputed offsets give what a scan from the start gives, ASCII or not.
        for text in ["SELECT 1,\n  2\n,3", "SELECT 'é',\n 'ü' ,\n3"] {
            let o = Offsets::new(text);
            for line in 1..=4u64 {
                for column in 1..=14u64 {
                    let loc = Location { line, column };
                    let naive = (|| {
                        let start = if line == 1 {
                            0
                        } else {
                            text.match_indices('\n').nth(line as usize - 2)?.0 + 1
                        };
                        Some(
                            text[start..]
                                .char_indices()
                                .nth(column as usize - 1)
                                .map_or(text.len(), |(i, _)| start + i),
                        )
                    })();
                    assert_eq!(o.of(loc), naive, "{text:?} {line}:{column}");
                }
            }
        }
    }
}
