//! The plan cache of text statements: a repeated statement with other values skips the SQL
//! parser (about 5 µs a statement here, `docs/benchmarks.md`).
//!
//! Statements are keyed by their *shape*, the way ProxySQL digests queries: the text with its
//! integer literals taken out (`SELECT c FROM sbtest1 WHERE id=?`), plus what else the plan
//! depends on (the current database, the scatter-writes setting; the routing rules, whose
//! replacement empties the cache). One cache per session thread ([`plan_cached`]), so a
//! lookup takes no lock; each holds at most `plan_cache.size` shapes, the least recently used
//! dropped first ([`lru`]).
//!
//! # What is cached, and why the cached plan is the plan a fresh parse gives
//! Correctness comes first, so only two kinds of shape are cached:
//! * **no literal at all** (no integer outside comments and quoted identifiers): the text is
//!   the key, so the plan, a function of the text and the context, is the same plan;
//! * **exactly one integer literal, and it routes the statement**: the fresh plan is
//!   `Single` by that key (`WHERE key = 5`, or a one-row `INSERT` giving the key 5), and the
//!   prepared-statement planner, given the shape with a `?` in its place, agrees that this
//!   placeholder alone decides the shard ([`super::prepared`]). A later statement of the
//!   shape gets the same plan with its own literal re-bound: its key value
//!   ([`KeyValue::from_number_literal`], what the planner itself uses), its shard on the ring.
//!   Before a shape is cached, the re-bound plan for the statement that taught it must equal
//!   its fresh plan.
//!
//! Anything else (a quoted string, two literals, a decimal or hex number, a `?` in the text, a
//! statement longer than 4 KiB) is planned afresh every time: a shape the cache cannot re-bind exactly is not a shape it
//! keeps. `tests` checks with random literals that a cached plan equals the uncached one.

use std::cell::RefCell;
use std::num::NonZeroUsize;
use std::sync::Arc;

use lru::LruCache;

use super::reason::SingleReason;
use super::route::{KeyAtom, KeyRoute};
use super::{Plan, PlanContext, Rules};
use crate::ring::KeyValue;

/// What a lookup found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// The plan came from the cache: no parse.
    Hit,
    /// The statement was planned afresh (and its shape cached if it can be).
    Miss,
    /// The cache is off (`plan_cache.size = 0`).
    Off,
}

/// How a cached shape becomes a plan.
#[derive(Debug, Clone)]
enum Entry {
    /// A shape without literals: its plan.
    Fixed(Plan),
    /// One integer literal routes the statement.
    Keyed(Template),
}

/// How a key literal's statement is routed.
#[derive(Debug, Clone, PartialEq)]
enum Template {
    /// `Single` by a WHERE clause pinning the key to the literal.
    Where,
    /// `Single` by a one-row INSERT giving the key `column` the literal.
    Insert {
        /// The key column, as the planner names it.
        column: String,
    },
}

impl Template {
    /// The template of a fresh plan whose route is `value` alone, if it has one.
    fn of(plan: &Plan, value: &KeyValue) -> Option<Template> {
        let Plan::Single { reason, .. } = plan else {
            return None;
        };
        match reason {
            SingleReason::Key(route)
                if route.sets.len() == 1
                    && route.sets[0].len() == 1
                    && route.sets[0][0] == KeyAtom::Value(value.clone()) =>
            {
                Some(Template::Where)
            }
            SingleReason::InsertKey { column, value: v } if v == value => Some(Template::Insert {
                column: column.clone(),
            }),
            _ => None,
        }
    }

    /// The plan of a statement of this shape whose key literal is `value`.
    fn bind(&self, value: KeyValue, rules: &Rules) -> Plan {
        let shard = rules.ring.shard_for(&value).to_string();
        let reason = match self {
            Template::Where => SingleReason::Key(KeyRoute {
                sets: vec![vec![KeyAtom::Value(value)]],
            }),
            Template::Insert { column } => SingleReason::InsertKey {
                column: column.clone(),
                value,
            },
        };
        Plan::Single { shard, reason }
    }
}

/// A statement's shape: `digest` is the text with each integer literal replaced by `?`.
#[derive(Debug, Default)]
struct Shape {
    /// The text with the literal (if any) replaced by `?`.
    digest: String,
    /// The byte span of the one integer literal in the original text.
    literal: Option<(usize, usize)>,
}

/// The shape of `sql`, or `None` when the cache cannot re-bind it exactly (a quoted string,
/// two integer literals, a number that is not plain digits, a `?`, a literal after `.`).
fn shape(sql: &str, out: &mut Shape) -> Option<()> {
    out.digest.clear();
    out.literal = None;
    let b = sql.as_bytes();
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c >= 0x80;
    let mut i = 0;
    let mut copied = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            b'\'' | b'"' | b'?' => return None,
            b'`' => {
                let end = b[i + 1..].iter().position(|&x| x == b'`')?;
                i += end + 2;
            }
            b'#' => {
                i = b[i..]
                    .iter()
                    .position(|&x| x == b'\n')
                    .map_or(b.len(), |p| i + p)
            }
            b'-' if b.get(i + 1) == Some(&b'-')
                && b.get(i + 2)
                    .is_none_or(|x| x.is_ascii_whitespace() || *x < 0x20) =>
            {
                i = b[i..]
                    .iter()
                    .position(|&x| x == b'\n')
                    .map_or(b.len(), |p| i + p);
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i = sql[i + 2..].find("*/").map_or(b.len(), |p| i + 2 + p + 2);
            }
            b'0'..=b'9' if i == 0 || !(ident(b[i - 1]) || b[i - 1] == b'.') => {
                let end = b[i..]
                    .iter()
                    .position(|&x| !(ident(x) || x == b'.'))
                    .map_or(b.len(), |p| i + p);
                if !b[i..end].iter().all(u8::is_ascii_digit) || out.literal.is_some() {
                    return None;
                }
                out.digest.push_str(&sql[copied..i]);
                out.digest.push('?');
                out.literal = Some((i, end));
                copied = end;
                i = end;
            }
            _ if ident(c) => {
                while i < b.len() && ident(b[i]) {
                    i += 1;
                }
            }
            _ => i += 1,
        }
    }
    out.digest.push_str(&sql[copied..]);
    Some(())
}

/// One session thread's cache.
struct Cache {
    /// Shapes (context prefix + digest) and their entries.
    map: LruCache<String, Entry>,
    /// The rules the entries were planned with (kept so a replaced set is told apart).
    rules: Option<Arc<Rules>>,
    /// The lookup key, built in place (no allocation on a hit).
    key: String,
    /// The statement's shape, built in place.
    shape: Shape,
}

thread_local! {
    /// The cache of this session thread (sessions never move between threads).
    static CACHE: RefCell<Option<Cache>> = const { RefCell::new(None) };
}

/// Plans `sql`, from this thread's cache when its shape is there; `rules` is the `Arc` behind
/// `ctx.rules` (the cache empties itself when it changes), `size` the configured bound.
pub fn plan_cached(
    sql: &str,
    ctx: &PlanContext,
    rules: &Arc<Rules>,
    size: usize,
) -> (Plan, Lookup) {
    let Some(size) = NonZeroUsize::new(size) else {
        return (super::plan(sql, ctx), Lookup::Off);
    };
    CACHE.with(|cell| {
        let mut slot = cell.borrow_mut();
        let cache = slot.get_or_insert_with(|| Cache {
            map: LruCache::new(size),
            rules: None,
            key: String::new(),
            shape: Shape::default(),
        });
        if cache.map.cap() != size {
            cache.map.resize(size);
        }
        if !cache.rules.as_ref().is_some_and(|r| Arc::ptr_eq(r, rules)) {
            cache.map.clear();
            cache.rules = Some(rules.clone());
        }
        lookup(cache, sql, ctx)
    })
}

/// Statements longer than this are not cached: the cache's memory stays about
/// `plan_cache.size` × this, and long statements (bulk INSERTs) rarely repeat.
const MAX_CACHED_LEN: usize = 4096;

/// The cached plan of `sql`, or a fresh one (cached when its shape can be).
fn lookup(cache: &mut Cache, sql: &str, ctx: &PlanContext) -> (Plan, Lookup) {
    if sql.len() > MAX_CACHED_LEN || shape(sql, &mut cache.shape).is_none() {
        return (super::plan(sql, ctx), Lookup::Miss);
    }
    cache.key.clear();
    cache.key.push_str(ctx.current_db.unwrap_or(""));
    cache.key.push_str(if ctx.allow_scatter_writes {
        "\0w\0"
    } else {
        "\0r\0"
    });
    cache.key.push_str(&cache.shape.digest);
    let literal = cache
        .shape
        .literal
        .and_then(|(s, e)| KeyValue::from_number_literal(&sql[s..e]));
    if let Some(entry) = cache.map.get(cache.key.as_str()) {
        match (entry, &literal) {
            (Entry::Fixed(p), None) => return (p.clone(), Lookup::Hit),
            (Entry::Keyed(t), Some(_)) => {
                let k = literal.expect("matched Some");
                return (t.bind(k, ctx.rules), Lookup::Hit);
            }
            _ => {}
        }
    }
    let plan = super::plan(sql, ctx);
    let entry = match (&cache.shape.literal, literal) {
        (None, _) => Some(Entry::Fixed(plan.clone())),
        (Some(_), Some(k)) => keyed(&cache.shape.digest, &plan, k, ctx).map(Entry::Keyed),
        (Some(_), None) => None,
    };
    if let Some(entry) = entry {
        cache.map.put(cache.key.clone(), entry);
    }
    (plan, Lookup::Miss)
}

/// The template of a one-literal shape, when the literal alone routes it (see the module
/// doc): the fresh plan is `Single` by this value, the prepared planner routes the shape by
/// its one placeholder, and re-binding the value gives the fresh plan back.
fn keyed(digest: &str, plan: &Plan, value: KeyValue, ctx: &PlanContext) -> Option<Template> {
    let t = Template::of(plan, &value)?;
    // A table with a global sequence: a key of 0 may mean "generate one" (decided with the
    // session's sql_mode), so the literal does not route alone.
    let (fallback, param) = super::plan_full(digest, ctx);
    if param != Some(0) || matches!(fallback, Plan::Sequence(_)) {
        return None;
    }
    (t.bind(value, ctx.rules) == *plan).then_some(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::testutil::rules;

    fn ctx(r: &Rules) -> PlanContext<'_> {
        PlanContext {
            rules: r,
            current_db: None,
            allow_scatter_writes: false,
        }
    }

    fn digest(sql: &str) -> Option<String> {
        let mut s = Shape::default();
        shape(sql, &mut s).map(|()| s.digest)
    }

    #[test]
    fn shapes_take_out_one_integer_literal() {
        assert_eq!(
            digest("SELECT c FROM sbtest1 WHERE id=5042").as_deref(),
            Some("SELECT c FROM sbtest1 WHERE id=?")
        );
        // Digits in identifiers, quoted identifiers and comments are part of the shape.
        assert_eq!(
            digest("SELECT `a1 2` /* 7 */ FROM t2 -- 9\n WHERE x1 = 3").as_deref(),
            Some("SELECT `a1 2` /* 7 */ FROM t2 -- 9\n WHERE x1 = ?")
        );
        assert_eq!(
            digest("SELECT 1 FROM t").as_deref(),
            Some("SELECT ? FROM t")
        );
        assert_eq!(
            digest("SELECT a FROM t").as_deref(),
            Some("SELECT a FROM t")
        );
        // Digits after a dot are kept (the text is then its own shape).
        assert_eq!(digest("SELECT t.5").as_deref(), Some("SELECT t.5"));
        for uncached in [
            "SELECT 1, 2",
            "SELECT 'a'",
            "SELECT \"a\"",
            "SELECT 1.5",
            "SELECT 0x1F",
            "SELECT 1e3",
            "SELECT a FROM t WHERE id = ?",
            "SELECT `unterminated",
        ] {
            assert_eq!(digest(uncached), None, "{uncached}");
        }
    }

    #[test]
    fn a_point_select_hits_and_rebinds_its_key() {
        let r = Arc::new(rules(3));
        let c = ctx(&r);
        let (p1, l1) = plan_cached("SELECT c FROM accounts WHERE account_id = 1", &c, &r, 16);
        assert_eq!(l1, Lookup::Miss);
        assert_eq!(
            p1,
            super::super::plan("SELECT c FROM accounts WHERE account_id = 1", &c)
        );
        for k in 2..40 {
            let sql = format!("SELECT c FROM accounts WHERE account_id = {k}");
            let (p, l) = plan_cached(&sql, &c, &r, 16);
            assert_eq!(l, Lookup::Hit, "{sql}");
            assert_eq!(p, super::super::plan(&sql, &c), "{sql}");
        }
        // New rules: the cache starts again.
        let r2 = Arc::new(rules(2));
        let c2 = ctx(&r2);
        let (p, l) = plan_cached("SELECT c FROM accounts WHERE account_id = 7", &c2, &r2, 16);
        assert_eq!(l, Lookup::Miss);
        assert_eq!(
            p,
            super::super::plan("SELECT c FROM accounts WHERE account_id = 7", &c2)
        );
    }

    #[test]
    fn shapes_whose_literal_does_not_route_alone_are_planned_afresh() {
        let r = Arc::new(rules(3));
        let c = ctx(&r);
        for sql in [
            // The literal is not the key: a scatter whose SQL holds the literal.
            "SELECT c FROM accounts WHERE balance > 5",
            // A negative key: `-?` is not a routable placeholder.
            "SELECT c FROM accounts WHERE account_id = -5",
        ] {
            plan_cached(sql, &c, &r, 16);
            let (p, l) = plan_cached(sql, &c, &r, 16);
            assert_eq!(l, Lookup::Miss, "{sql}");
            assert_eq!(p, super::super::plan(sql, &c));
        }
    }

    #[test]
    fn a_sequence_key_literal_is_never_rebound() {
        // 0 may mean "generate an id": the shape is planned afresh every time.
        let r = Arc::new(rules(3));
        let c = ctx(&r);
        for k in ["5", "0", "7", "0"] {
            let sql = format!("INSERT INTO orders (order_id, note) VALUES ({k}, NULL)");
            let (p, l) = plan_cached(&sql, &c, &r, 16);
            assert_eq!(l, Lookup::Miss, "{sql}");
            assert_eq!(p, super::super::plan(&sql, &c), "{sql}");
        }
    }

    #[test]
    fn a_zero_size_turns_the_cache_off() {
        let r = Arc::new(rules(3));
        let (_, l) = plan_cached("SELECT 1", &ctx(&r), &r, 0);
        assert_eq!(l, Lookup::Off);
    }

    proptest::proptest! {
        /// For random literal values, in shapes that are cached and shapes that are not, the
        /// plan from the cache equals the plan a fresh parse gives (same shard, same reason,
        /// same refusal).
        #[test]
        fn cached_plan_equals_fresh_plan(
            values in proptest::collection::vec(
                proptest::prop_oneof![proptest::strategy::Just(0u64), 0u64..20, 0u64..u64::MAX],
                1..12,
            ),
            template in proptest::sample::select(vec![
                "SELECT c FROM accounts WHERE account_id = {}",
                "SELECT c FROM accounts WHERE account_id={} FOR UPDATE",
                "SELECT * FROM accounts WHERE account_id IN ({})",
                "UPDATE accounts SET balance = balance WHERE account_id = {}",
                "DELETE FROM accounts WHERE account_id = {}",
                "INSERT INTO accounts (account_id, balance) VALUES ({}, balance)",
                "INSERT INTO orders (order_id, note) VALUES ({}, NULL)",
                "SELECT c FROM accounts WHERE account_id = {} OR account_id = account_id",
                "SELECT c FROM accounts WHERE balance = {}",
                "SELECT c FROM accounts ORDER BY account_id LIMIT {}",
                "SELECT COUNT(*) FROM accounts WHERE account_id > {}",
                "SELECT c FROM users WHERE name = {}",
                "SELECT {} FROM fund_yield",
                "SELECT c FROM accounts /* shard=s2 */ WHERE account_id = {}",
            ]),
            scatter_writes in proptest::bool::ANY,
        ) {
            let r = Arc::new(rules(3));
            let c = PlanContext { rules: &r, current_db: None, allow_scatter_writes: scatter_writes };
            for v in values {
                let sql = template.replace("{}", &v.to_string());
                let (cached, _) = plan_cached(&sql, &c, &r, 8);
                proptest::prop_assert_eq!(cached, super::super::plan(&sql, &c), "{}", sql);
            }
        }
    }
}
