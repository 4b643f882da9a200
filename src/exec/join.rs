//! Joins executed by the proxy ([`JoinPlan`], planned in `plan/join/`): the outer table read as
//! a scatter query, its join values looked up on the inner table in batches of `IN (…)`, the
//! rows paired by a hash join with MariaDB's comparison of the two columns' types, then ORDER
//! BY, LIMIT and the select list.
//!
//! Both reads go through [`scatter::scatter`], so inside a transaction they read through the
//! transaction's held connections, like every scatter read.
//!
//! # Exactness
//! Two join columns are paired only when the proxy compares their values exactly as the
//! server does:
//! * integers and DECIMALs with each other: by numeric value (`5` = `5.00`);
//! * strings with a case-insensitive collation: only while every value on both sides is
//!   printable ASCII (accents and real collations' expansions are not modelled: a non-ASCII
//!   value is refused, never paired by guess); `_bin` collations by code point;
//! * DATE with DATE, DATETIME with DATETIME …, binary strings with binary strings: byte for byte.
//!
//! Anything else (a string with a number, FLOAT, TIME, BIT) is refused with 1235. NULL never
//! matches. The values are deduplicated by the same comparison before they are sent, so an
//! inner row is fetched once even when `'Bob'` and `'bob'` both occur outside.
//!
//! # Cross-table comparisons
//! The plan's [`Residual`]s (`o.amount < a.balance`, inner joins only) are checked on each
//! matched pair before it is kept, as exactly: integers and DECIMALs by exact value (beyond 28
//! significant digits refused), DATE/DATETIME/TIMESTAMP against the same type with the same
//! fractional digits by their text (fixed-width, so it sorts as the values do), two
//! case-insensitive (or two `_bin`) strings while both values are printable ASCII (the merge's
//! comparison: letters weighed as upper case, trailing spaces ignored), and `<>` of any two
//! columns an equality may pair as the negation of that equality. Other orderings (non-ASCII
//! text, a `_ci` against a `_bin` string, other types) are refused with 1235. NULL is never
//! true.
//!
//! # The bound
//! The rows the proxy holds (the outer rows plus the inner rows fetched) and the joined rows
//! are each bounded by `[sharding] max_join_rows`; each shard is asked for at most one row more
//! than the bound, and past it the statement fails with 1235 naming the setting.

use std::collections::{HashMap, HashSet};

use super::scatter::scatter;
use super::{Condition, Diagnostics, Done, FoundRows, Shards};
use crate::plan::join::{JoinPlan, Residual, SideCol};
use crate::plan::merge::number::parse_decimal;
use crate::plan::merge::sort::compare_rows;
use crate::plan::merge::value::{key, Key, ValueKind};
use crate::plan::spec::{CompareOp, MergeSpec, SortKey};
use crate::plan::ShardSql;
use crate::protocol::constants::err;
use crate::protocol::packets::ErrInfo;
use crate::protocol::resultset::{column_type, ColumnDef, ResultSet, TextRow, BINARY_CHARSET};
use crate::ring::{KeyValue, Ring};

/// Values per `IN (…)` list sent to the inner table.
pub const BATCH: usize = 500;

/// The bound of a join (`[sharding] max_join_rows`; 0: none).
#[derive(Debug, Clone, Copy)]
pub struct JoinLimits {
    /// Most rows the proxy holds for one join.
    pub max_rows: usize,
}

fn refused(message: impl Into<String>) -> ErrInfo {
    ErrInfo::new(err::ER_NOT_SUPPORTED_YET, message.into())
}

fn too_many(limits: JoinLimits, what: &str) -> ErrInfo {
    refused(format!(
        "the join executed by the proxy holds more than {} {what}, the bound set by \
         [sharding] max_join_rows; narrow the query (conditions on each table) or raise the \
         setting",
        limits.max_rows
    ))
}

/// The conditions and warnings of every read the join made.
#[derive(Default)]
struct Seen {
    /// Every read's notes, errors and warnings, in order.
    conditions: Vec<Condition>,
    /// The warnings the reads counted.
    warning_count: u64,
}

impl Seen {
    /// The answer of one read, its diagnostics kept.
    fn take<T>(&mut self, done: Done<T>) -> Result<T, ErrInfo> {
        if let Some(d) = done.diagnostics {
            self.warning_count += d.warning_count;
            self.conditions.extend(d.conditions);
        }
        done.answer
    }

    fn fail<T>(self, e: ErrInfo) -> Done<T> {
        let d = Diagnostics::failed(self.conditions, &e);
        Done::failed(e, d)
    }
}

/// How the values of one join equality are compared (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pairing {
    /// By [`key`] with each column's own kind.
    Exact,
    /// Case-insensitively, only while every value is printable ASCII.
    AsciiFolded,
}

fn describe_type(c: &ColumnDef) -> &'static str {
    match ValueKind::of(c) {
        ValueKind::Integer => "an integer column",
        ValueKind::Decimal => "a DECIMAL column",
        ValueKind::Float => "a FLOAT/DOUBLE column",
        ValueKind::Time => "a TIME column",
        ValueKind::Bytes => match c.column_type {
            column_type::DATE | column_type::NEWDATE => "a DATE column",
            column_type::DATETIME => "a DATETIME column",
            column_type::TIMESTAMP => "a TIMESTAMP column",
            _ if c.charset == BINARY_CHARSET => "a binary string column",
            _ => "a BIT/GEOMETRY column",
        },
        ValueKind::BinaryPadded => "a string column with a _bin collation",
        ValueKind::CaseInsensitive => "a case-insensitive string column",
    }
}

/// How the outer column `o` and the inner column `i` pair, or why they cannot.
fn pairing(o: &ColumnDef, i: &ColumnDef) -> Result<Pairing, ErrInfo> {
    use ValueKind::*;
    let (ko, ki) = (ValueKind::of(o), ValueKind::of(i));
    let ok = match (ko, ki) {
        (Integer | Decimal, Integer | Decimal) => Some(Pairing::Exact),
        (CaseInsensitive, CaseInsensitive) => Some(Pairing::AsciiFolded),
        (BinaryPadded, BinaryPadded) => Some(Pairing::Exact),
        (Bytes, Bytes) if o.column_type == i.column_type => {
            let binary_string = o.charset == BINARY_CHARSET && i.charset == BINARY_CHARSET;
            let temporal = matches!(
                o.column_type,
                column_type::DATE | column_type::DATETIME | column_type::TIMESTAMP
            );
            (binary_string || temporal).then_some(Pairing::Exact)
        }
        _ => None,
    };
    ok.ok_or_else(|| {
        refused(format!(
            "a join executed by the proxy cannot compare {} with {} exactly as the server does",
            describe_type(o),
            describe_type(i)
        ))
    })
}

/// How a cross-table comparison ([`Residual`]) compares its two columns.
#[derive(Debug, Clone, Copy)]
enum Ordered {
    /// Integers and DECIMALs: by exact numeric value.
    Number,
    /// DATE, DATETIME or TIMESTAMP with the same fractional digits: their text sorts as they do.
    Temporal,
    /// `<>` of any two columns a join equality may pair: the negation of that equality.
    Unequal(Pairing, ValueKind, ValueKind),
    /// Two case-insensitive strings (or two `_bin` ones): by the merge's comparison of that
    /// kind, only while both values are printable ASCII (where `utf8mb4_general_ci` and
    /// `latin1_swedish_ci` order alike, letters weighed as upper case).
    Text(ValueKind),
}

/// How the first side's column `a` and the second's `b` are compared by `op`, or why not.
fn ordered(a: &ColumnDef, b: &ColumnDef, op: CompareOp) -> Result<Ordered, ErrInfo> {
    use ValueKind::*;
    let (ka, kb) = (ValueKind::of(a), ValueKind::of(b));
    if matches!((ka, kb), (Integer | Decimal, Integer | Decimal)) {
        return Ok(Ordered::Number);
    }
    if op == CompareOp::NotEq {
        return Ok(Ordered::Unequal(pairing(a, b)?, ka, kb));
    }
    let temporal = matches!(
        a.column_type,
        column_type::DATE | column_type::DATETIME | column_type::TIMESTAMP
    );
    if ka == kb && matches!(ka, CaseInsensitive | BinaryPadded) {
        return Ok(Ordered::Text(ka));
    }
    if (ka, kb) == (Bytes, Bytes)
        && temporal
        && a.column_type == b.column_type
        && a.decimals == b.decimals
    {
        return Ok(Ordered::Temporal);
    }
    Err(refused(format!(
        "a join executed by the proxy orders {} against {} only by equality or `<>` (it does \
         not reproduce the server's ordering of these types)",
        describe_type(a),
        describe_type(b)
    )))
}

/// Whether `a <op> b` is true (a NULL on either side: not true).
fn holds(how: Ordered, op: CompareOp, a: Option<&[u8]>, b: Option<&[u8]>) -> Result<bool, ErrInfo> {
    use std::cmp::Ordering;
    let (Some(a), Some(b)) = (a, b) else {
        return Ok(false);
    };
    let ord = match how {
        Ordered::Number => match (parse_decimal(a), parse_decimal(b)) {
            (Some(x), Some(y)) => x.cmp(&y),
            _ => {
                return Err(refused(
                    "a join executed by the proxy compares numbers of at most 28 significant \
                     digits exactly; a value is beyond that",
                ))
            }
        },
        Ordered::Temporal => a.cmp(b),
        Ordered::Text(kind) => {
            if !(plain_ascii(a) && plain_ascii(b)) {
                return Err(non_ascii());
            }
            crate::plan::merge::value::compare(kind, a, b)
        }
        Ordered::Unequal(p, ka, kb) => {
            if p == Pairing::AsciiFolded && !(plain_ascii(a) && plain_ascii(b)) {
                return Err(non_ascii());
            }
            return Ok(key(ka, Some(a)) != key(kb, Some(b)));
        }
    };
    Ok(match op {
        CompareOp::Eq => ord == Ordering::Equal,
        CompareOp::NotEq => ord != Ordering::Equal,
        CompareOp::Lt => ord == Ordering::Less,
        CompareOp::LtEq => ord != Ordering::Greater,
        CompareOp::Gt => ord == Ordering::Greater,
        CompareOp::GtEq => ord != Ordering::Less,
    })
}

/// Printable ASCII: the values whose case-insensitive comparison the proxy reproduces.
fn plain_ascii(v: &[u8]) -> bool {
    v.iter().all(|&b| (0x20..0x7f).contains(&b))
}

fn non_ascii() -> ErrInfo {
    refused(
        "a join executed by the proxy compares strings case-insensitively only when they are \
         printable ASCII; a join value is non-ASCII",
    )
}

/// `v` of column `c` as an SQL literal for the inner table's `IN (…)` list.
fn literal(c: &ColumnDef, v: &[u8]) -> Result<String, ErrInfo> {
    match ValueKind::of(c) {
        ValueKind::Integer | ValueKind::Decimal
            if !v.is_empty() && v.iter().all(|b| b.is_ascii_digit() || b"-.".contains(b)) =>
        {
            Ok(String::from_utf8_lossy(v).into_owned())
        }
        ValueKind::CaseInsensitive | ValueKind::BinaryPadded | ValueKind::Bytes
            if c.charset != BINARY_CHARSET =>
        {
            if !plain_ascii(v) || v.contains(&b'\\') {
                return Err(non_ascii());
            }
            Ok(format!(
                "'{}'",
                String::from_utf8_lossy(v).replace('\'', "''")
            ))
        }
        ValueKind::Bytes => {
            let hex: String = v.iter().map(|b| format!("{b:02X}")).collect();
            Ok(format!("X'{hex}'"))
        }
        _ => Err(refused(
            "a join value of this type cannot be sent back exactly",
        )),
    }
}

/// The shard of the inner table that holds key `v` (a value of outer column `c`), when it can
/// be routed exactly.
fn key_shard<'r>(ring: &'r Ring, c: &ColumnDef, v: &[u8]) -> Option<&'r str> {
    let text = std::str::from_utf8(v).ok()?;
    let kv = match ValueKind::of(c) {
        ValueKind::Integer | ValueKind::Decimal => KeyValue::from_number_literal(text)?,
        ValueKind::CaseInsensitive => KeyValue::from_str_value(text)?,
        _ => return None,
    };
    Some(ring.shard_for(&kv))
}

/// Where the columns of each side's select items start, and their widths.
fn item_ranges(
    side: &crate::plan::join::JoinSide,
    ncols: usize,
) -> Result<Vec<(usize, usize)>, ErrInfo> {
    let wild = side.wildcards.iter().filter(|w| **w).count();
    let fixed = side.hidden + side.wildcards.len() - wild;
    if ncols < fixed || wild > 1 {
        return Err(ErrInfo::new(
            (1105, "HY000"),
            format!(
                "{} answered {ncols} columns, not the planned select list",
                side.table
            ),
        ));
    }
    let wild_width = ncols - fixed;
    let mut at = side.hidden;
    Ok(side
        .wildcards
        .iter()
        .map(|&w| {
            let width = if w { wild_width } else { 1 };
            let r = (at, width);
            at += width;
            r
        })
        .collect())
}

fn col_index(c: SideCol, ranges: &[(usize, usize)]) -> usize {
    match c {
        SideCol::Hidden(h) => h,
        SideCol::Item(i) => ranges[i].0,
    }
}

/// The join key of `row` over the `cols` (one per equality), `None` when a value is NULL.
fn join_key(
    row: &TextRow,
    cols: &[usize],
    kinds: &[ValueKind],
    pairings: &[Pairing],
) -> Result<Option<Vec<Key>>, ErrInfo> {
    let mut k = Vec::with_capacity(cols.len());
    for (n, &c) in cols.iter().enumerate() {
        let Some(v) = row[c].as_deref() else {
            return Ok(None);
        };
        if pairings[n] == Pairing::AsciiFolded && !plain_ascii(v) {
            return Err(non_ascii());
        }
        k.push(key(kinds[n], Some(v)));
    }
    Ok(Some(k))
}

fn bounded(sql: String, limits: JoinLimits) -> String {
    if limits.max_rows == 0 {
        sql
    } else {
        format!("{sql} LIMIT {}", limits.max_rows.saturating_add(1))
    }
}

/// Runs a join planned by `plan/join/` (see the module doc).
pub async fn join<S: Shards>(
    shards: &mut S,
    plan: &JoinPlan,
    ring: &Ring,
    limits: JoinLimits,
) -> Done<ResultSet> {
    let mut seen = Seen::default();
    let mut answer = run(shards, plan, ring, limits, &mut seen).await;
    if let (Ok(rows), Some(g)) = (&mut answer, &plan.grouped) {
        let joined = std::mem::take(rows);
        let typing = super::join_group::typing_target(g);
        answer = match seen.take(scatter(shards, &typing, &MergeSpec::concat()).await) {
            Ok(typed) => super::join_group::group(g, joined, typed),
            Err(e) => Err(e),
        };
    }
    match answer {
        Ok(rs) => Done {
            diagnostics: Some(Diagnostics {
                row_count: -1,
                found_rows: FoundRows::Known(rs.rows.len() as u64),
                conditions: seen.conditions,
                warning_count: seen.warning_count,
            }),
            answer: Ok(rs),
        },
        Err(e) => seen.fail(e),
    }
}

async fn run<S: Shards>(
    shards: &mut S,
    plan: &JoinPlan,
    ring: &Ring,
    limits: JoinLimits,
    seen: &mut Seen,
) -> Result<ResultSet, ErrInfo> {
    let over = |n: usize| limits.max_rows > 0 && n > limits.max_rows;
    let (o, i) = (plan.outer, plan.inner());
    // 1. The outer table.
    let osql = bounded(plan.sides[o].sql_with(None), limits);
    let targets: Vec<ShardSql> = plan.sides[o]
        .shards
        .iter()
        .map(|s| ShardSql {
            shard: s.clone(),
            sql: osql.clone(),
        })
        .collect();
    let outer = seen.take(scatter(shards, &targets, &MergeSpec::concat()).await)?;
    if over(outer.rows.len()) {
        return Err(too_many(limits, "rows"));
    }
    // 2. Its distinct join values, looked up on the inner table.
    let pc = plan.pairs[plan.probe.pair][o];
    let pcol = &outer.columns[pc];
    let pkind = ValueKind::of(pcol);
    let mut distinct = HashSet::new();
    let mut values: Vec<&[u8]> = Vec::new();
    for r in &outer.rows {
        if let Some(v) = r[pc].as_deref() {
            if pkind == ValueKind::CaseInsensitive && !plain_ascii(v) {
                return Err(non_ascii());
            }
            if distinct.insert(key(pkind, Some(v))) {
                values.push(v);
            }
        }
    }
    let inner_side = &plan.sides[i];
    let column = &plan.probe.inner_column;
    let mut inner: Option<ResultSet> = None;
    let mut batches: Vec<Vec<ShardSql>> = Vec::new();
    let in_sql = |vals: &[&[u8]]| -> Result<String, ErrInfo> {
        let lits: Result<Vec<String>, ErrInfo> = vals.iter().map(|v| literal(pcol, v)).collect();
        Ok(bounded(
            inner_side.sql_with(Some(&format!("{column} IN ({})", lits?.join(", ")))),
            limits,
        ))
    };
    for chunk in values.chunks(BATCH) {
        let mut per_shard: Vec<(String, Vec<&[u8]>)> = Vec::new();
        for &v in chunk {
            let to: Vec<&str> = match plan
                .probe
                .by_key
                .then(|| key_shard(ring, pcol, v))
                .flatten()
            {
                // A key held by a shard the inner table's own conditions exclude matches nothing.
                Some(s) if !inner_side.shards.iter().any(|x| x == s) => continue,
                Some(s) => vec![s],
                None => inner_side.shards.iter().map(String::as_str).collect(),
            };
            for s in to {
                match per_shard.iter_mut().find(|(x, _)| x == s) {
                    Some((_, vs)) => vs.push(v),
                    None => per_shard.push((s.to_string(), vec![v])),
                }
            }
        }
        let mut targets = Vec::with_capacity(per_shard.len());
        for (shard, vs) in per_shard {
            targets.push(ShardSql {
                shard,
                sql: in_sql(&vs)?,
            });
        }
        if !targets.is_empty() {
            batches.push(targets);
        }
    }
    if batches.is_empty() {
        // No value to look up: the inner table's columns are still needed (their definitions,
        // and NULLs for an outer join).
        let sql = inner_side.sql_with(Some("FALSE"));
        let shard = inner_side.shards[0].clone();
        batches.push(vec![ShardSql { shard, sql }]);
    }
    for targets in batches {
        let rs = seen.take(scatter(shards, &targets, &MergeSpec::concat()).await)?;
        match &mut inner {
            None => inner = Some(rs),
            Some(all) => {
                all.warnings = all.warnings.saturating_add(rs.warnings);
                all.rows.extend(rs.rows);
            }
        }
        let held = inner.as_ref().map_or(0, |r| r.rows.len());
        if over(outer.rows.len() + held) {
            return Err(too_many(limits, "rows"));
        }
    }
    let inner = inner.expect("at least one batch ran");
    // 3. The hash join.
    let (ocols, icols): (Vec<usize>, Vec<usize>) = plan.pairs.iter().map(|p| (p[o], p[i])).unzip();
    let mut pairings = Vec::with_capacity(ocols.len());
    for (&a, &b) in ocols.iter().zip(&icols) {
        pairings.push(pairing(&outer.columns[a], &inner.columns[b])?);
    }
    let okinds: Vec<ValueKind> = ocols
        .iter()
        .map(|&c| ValueKind::of(&outer.columns[c]))
        .collect();
    let ikinds: Vec<ValueKind> = icols
        .iter()
        .map(|&c| ValueKind::of(&inner.columns[c]))
        .collect();
    let mut table: HashMap<Vec<Key>, Vec<usize>> = HashMap::new();
    for (n, r) in inner.rows.iter().enumerate() {
        if let Some(k) = join_key(r, &icols, &ikinds, &pairings)? {
            table.entry(k).or_default().push(n);
        }
    }
    // The cross-table comparisons, over the first table's and the second's columns.
    let (cols0, cols1) = if o == 0 {
        (&outer.columns, &inner.columns)
    } else {
        (&inner.columns, &outer.columns)
    };
    let mut checks: Vec<(Residual, Ordered)> = Vec::with_capacity(plan.residual.len());
    for &res in &plan.residual {
        checks.push((
            res,
            ordered(&cols0[res.cols[0]], &cols1[res.cols[1]], res.op)?,
        ));
    }
    let kept = |first: &TextRow, second: &TextRow| -> Result<bool, ErrInfo> {
        for &(res, how) in &checks {
            let (a, b) = (
                first[res.cols[0]].as_deref(),
                second[res.cols[1]].as_deref(),
            );
            if !holds(how, res.op, a, b)? {
                return Ok(false);
            }
        }
        Ok(true)
    };
    let (ow, iw) = (outer.columns.len(), inner.columns.len());
    let mut joined: Vec<TextRow> = Vec::new();
    for r in &outer.rows {
        let matches = match join_key(r, &ocols, &okinds, &pairings)? {
            Some(k) => table.get(&k).map(Vec::as_slice).unwrap_or(&[]),
            None => &[],
        };
        let mut emit = |inner_row: Option<&TextRow>| {
            let mut row = Vec::with_capacity(ow + iw);
            let inner_part = || inner_row.cloned().unwrap_or_else(|| vec![None; iw]);
            if o == 0 {
                row.extend(r.iter().cloned());
                row.extend(inner_part());
            } else {
                row.extend(inner_part());
                row.extend(r.iter().cloned());
            }
            joined.push(row);
        };
        if matches.is_empty() && plan.keep_unmatched {
            emit(None);
        }
        for &m in matches {
            let m = &inner.rows[m];
            let (first, second) = if o == 0 { (r, m) } else { (m, r) };
            if kept(first, second)? {
                emit(Some(m));
            }
        }
        if over(joined.len()) {
            return Err(too_many(limits, "joined rows"));
        }
    }
    // 4. ORDER BY, LIMIT and the select list, over the first table's columns then the second's.
    let (first, second) = if o == 0 {
        (&outer, &inner)
    } else {
        (&inner, &outer)
    };
    let columns: Vec<ColumnDef> = first
        .columns
        .iter()
        .chain(&second.columns)
        .cloned()
        .collect();
    let ranges = [
        item_ranges(&plan.sides[0], first.columns.len())?,
        item_ranges(&plan.sides[1], second.columns.len())?,
    ];
    let base = [0, first.columns.len()];
    if !plan.order_by.is_empty() {
        let keys: Vec<SortKey> = plan
            .order_by
            .iter()
            .map(|k| SortKey {
                column: base[k.side] + col_index(k.column, &ranges[k.side]),
                descending: k.descending,
            })
            .collect();
        crate::plan::merge::sort::check_orderable(&keys, &columns)
            .map_err(|e| ErrInfo::new((e.code, e.sqlstate), e.message))?;
        let kinds: Vec<ValueKind> = columns.iter().map(ValueKind::of).collect();
        joined.sort_by(|a, b| compare_rows(&keys, &kinds, a, b));
    }
    let skip = usize::try_from(plan.offset).unwrap_or(usize::MAX);
    let take = plan
        .limit
        .map_or(usize::MAX, |l| usize::try_from(l).unwrap_or(usize::MAX));
    let picked: Vec<usize> = plan
        .output
        .iter()
        .flat_map(|&(s, item)| {
            let (start, width) = ranges[s][item];
            (base[s] + start)..(base[s] + start + width)
        })
        .collect();
    let rows = joined
        .into_iter()
        .skip(skip)
        .take(take)
        .map(|r| picked.iter().map(|&c| r[c].clone()).collect())
        .collect();
    Ok(ResultSet {
        columns: picked.iter().map(|&c| columns[c].clone()).collect(),
        rows,
        warnings: outer.warnings.saturating_add(inner.warnings),
    })
}
