//! Statement planning: from SQL text to a [`Plan`] that says which shards get which SQL and how
//! their answers combine.
//!
//! # The path of one statement
//! 1. [`scan`] reads the text once: routing hints (`/* shard=s2 */`), words, placeholders. A
//!    hint decides at once; a statement that names no sharded or reference table goes to the
//!    default shard without being parsed (the hot path for unsharded traffic).
//! 2. Otherwise sqlparser (MySqlDialect) parses it and a primitive plans it, each in its own
//!    file, in the style of Vitess's `vtgate/engine`:
//!    - [`select`]: reads. One shard when the key is pinned, else [`scatter`] (rewritten SQL
//!      per shard + a [`spec::MergeSpec`]).
//!    - [`cte`]: WITH clauses: each CTE read once put in place as a derived table and the
//!      statement planned again, or the whole statement sent to the one shard it reads.
//!    - [`insert_split`]: INSERT/REPLACE, split per shard by each row's key.
//!    - [`write`]: UPDATE and DELETE.
//!    - [`ddl`]: CREATE/ALTER/DROP/TRUNCATE TABLE, CREATE/DROP INDEX.
//!    - [`prepared`]: statements with `?` whose route depends on a parameter.
//!    - [`route`]: the shared analysis (tables, colocation, key values).
//! 3. Whatever cannot be executed exactly is refused with error 1235 and a reason. A refusal is
//!    acceptable; a wrong answer never is.
//!
//! Decisions are typed: a `Single` plan says why in a [`SingleReason`], a refusal is a
//! [`Rejection`] ([`reject`]) that renders its own code, SQLSTATE and message. The session
//! matches on them, never on their text; their `Display` is what PREVIEW prints.
//!
//! A statement that goes whole to one shard is sent as the client's original text (the AST is
//! only used to decide); rewritten SQL exists only for scatter reads (re-rendered from the AST,
//! then re-parsed as a check) and split INSERTs (spliced from the original text).

// Primitives return `Result<_, Plan>` with the refusal as the error: refusals are the cold
// path, so the size of `Plan` in the error variant does not matter.
#![allow(clippy::result_large_err)]

#[cfg(test)]
mod consistency;
mod cte;
pub mod ddl;
pub mod insert_split;
pub mod join;
pub mod merge;
pub mod prepared;
pub mod preview;
pub mod reason;
pub mod reject;
pub mod reshard;
pub mod reshard_state;
pub mod route;
pub mod rules;
pub mod scan;
pub mod scatter;
pub mod select;
pub mod sequence;
pub mod spec;
pub mod staged;
mod subquery;
pub mod text_cache;
mod walk;
pub mod write;

use std::fmt;

use sqlparser::ast::Statement;
use sqlparser::dialect::MySqlDialect;
use sqlparser::parser::Parser;

pub use prepared::{plan_prepared, PreparedPlan};
pub use reason::SingleReason;
pub use reject::Rejection;
pub use rules::{Rules, SequenceRule, TableKind};
pub use sequence::SequenceInsert;
use spec::MergeSpec;

/// What the planner needs besides the SQL text.
#[derive(Debug, Clone, Copy)]
pub struct PlanContext<'a> {
    pub rules: &'a Rules,
    /// The session's current database (`USE db`), for matching `db.table` rules.
    pub current_db: Option<&'a str>,
    /// Session setting allowing UPDATE/DELETE without a key on sharded tables (sent to every
    /// shard). Off by default.
    pub allow_scatter_writes: bool,
}

/// The plan of one statement.
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    /// Send the client's original SQL text untouched to one shard (the lead relays packets).
    Single { shard: String, reason: SingleReason },
    /// Different SQL per shard (SELECT scatter-gather), answers merged by `merge`.
    Scatter {
        targets: Vec<ShardSql>,
        merge: MergeSpec,
    },
    /// Writes sent to several shards; their OK packets are combined (affected rows summed).
    Multi {
        targets: Vec<ShardSql>,
        kind: MultiKind,
    },
    /// An INSERT whose keys come from a global sequence: the executor allocates the ids, then
    /// renders one INSERT per shard ([`SequenceInsert::render`]) and runs them like `Multi`.
    Sequence(SequenceInsert),
    /// A join of sharded tables not matched by their keys, executed by the proxy
    /// ([`join::JoinPlan`]: one table read first, the other looked up by its values).
    Join(Box<join::JoinPlan>),
    /// Uncorrelated subqueries run first, each by its own plan; their answers are put in
    /// place as literals and the statement that results is planned and run
    /// ([`staged`], [`subquery`]).
    Staged(Box<staged::Staged>),
    /// Refused: the rejection renders the MySQL error code, SQLSTATE, and a message that says
    /// what and why.
    Reject(Rejection),
}

/// The SQL one shard receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardSql {
    pub shard: String,
    pub sql: String,
}

/// Why a statement goes to several shards (how to report and combine the OK packets). Its
/// `Display` (the variant's name) is what PREVIEW prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MultiKind {
    /// A multi-row INSERT split by key: each shard got only its rows.
    InsertSplit,
    /// UPDATE/DELETE over several shards (an IN list of keys, or a permitted scatter write).
    Write,
    /// A write to a reference table, repeated on every shard (every copy reports the same
    /// affected rows; report one shard's count, not the sum).
    ReferenceWrite,
    /// DDL on a sharded or reference table, run on every shard; a failure names the shard.
    Ddl,
}

impl MultiKind {
    /// The slow-query log's description of a write on several shards.
    pub fn summary(self) -> String {
        format!("multi-shard write ({self})")
    }
}

impl fmt::Display for MultiKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MultiKind::InsertSplit => "InsertSplit",
            MultiKind::Write => "Write",
            MultiKind::ReferenceWrite => "ReferenceWrite",
            MultiKind::Ddl => "Ddl",
        })
    }
}

/// `MergeSpec::visible_columns` value for `SELECT *` scatter plans, whose column count the
/// planner cannot know: every column of the shard rows is visible (no hidden columns exist).
pub const ALL_COLUMNS: usize = usize::MAX;

impl Plan {
    pub(crate) fn single(shard: &str, reason: SingleReason) -> Plan {
        Plan::Single {
            shard: shard.to_string(),
            reason,
        }
    }

    /// What PREVIEW prints: one row per shard with the SQL it gets and notes on merging.
    /// `original_sql` is the statement as the client sent it (what a Single plan forwards).
    pub fn describe(&self, original_sql: &str) -> Vec<(String, String, String)> {
        match self {
            Plan::Single { shard, reason } => {
                vec![(shard.clone(), original_sql.to_string(), reason.to_string())]
            }
            Plan::Scatter { targets, merge } => targets
                .iter()
                .map(|t| (t.shard.clone(), t.sql.clone(), merge.to_string()))
                .collect(),
            Plan::Multi { targets, kind } => targets
                .iter()
                .map(|t| (t.shard.clone(), t.sql.clone(), kind.to_string()))
                .collect(),
            Plan::Sequence(s) => vec![("(by generated id)".to_string(), s.template(), s.note())],
            Plan::Join(j) => j.describe(),
            Plan::Staged(s) => {
                let mut rows = Vec::new();
                for (i, part) in s.parts.iter().enumerate() {
                    for (shard, sql, note) in part.inner.describe(&part.inner_sql) {
                        rows.push((shard, sql, format!("subquery {}, run first: {note}", i + 1)));
                    }
                }
                rows.push((
                    "(by the subqueries' values)".to_string(),
                    s.sql.clone(),
                    "planned with the subqueries' values in place".to_string(),
                ));
                rows
            }
            Plan::Reject(r) => vec![(
                String::new(),
                original_sql.to_string(),
                format!("refused: ERROR {} ({}): {r}", r.code(), r.sqlstate()),
            )],
        }
    }

    /// Shard names this plan sends something to (none for `Sequence`: they depend on the ids
    /// allocated at execution).
    pub fn shards(&self) -> Vec<&str> {
        match self {
            Plan::Single { shard, .. } => vec![shard.as_str()],
            Plan::Scatter { targets, .. } | Plan::Multi { targets, .. } => {
                targets.iter().map(|t| t.shard.as_str()).collect()
            }
            // Not known before the ids are allocated at execution.
            Plan::Sequence(_) => vec![],
            Plan::Join(j) => j
                .sides
                .iter()
                .flat_map(|s| s.shards.iter().map(String::as_str))
                .collect(),
            // The outer statement's: not known before the subqueries ran.
            Plan::Staged(_) => vec![],
            Plan::Reject(_) => vec![],
        }
    }
}

/// Plans one statement (see the module doc).
pub fn plan(sql: &str, ctx: &PlanContext) -> Plan {
    plan_full(sql, ctx).0
}

/// The plan, plus the index of a `?` parameter that, when bound to a routable key value, would
/// pin the statement to one shard (used by [`prepared`]).
pub(crate) fn plan_full(sql: &str, ctx: &PlanContext) -> (Plan, Option<usize>) {
    let rules = ctx.rules;
    let scan = scan::scan(sql);
    if let Some(h) = scan.hints.first() {
        if scan.hints.iter().any(|o| o != h) {
            return (
                reject::not_supported(format!("conflicting shard hints {:?}", scan.hints)),
                None,
            );
        }
        return if rules.is_shard(h) {
            (Plan::single(h, SingleReason::Hint(h.clone())), None)
        } else {
            let refusal = Rejection::UnknownShardHint {
                hint: h.clone(),
                shards: rules.shards.clone(),
            };
            (Plan::Reject(refusal), None)
        };
    }
    let mentions_sharded = scan.words.iter().any(|w| rules.mentions_sharded(&w.text));
    let mentions_any = mentions_sharded || scan.words.iter().any(|w| rules.mentions(&w.text));
    if !mentions_any {
        return (
            Plan::single(&rules.default_shard, SingleReason::NoShardedTable),
            None,
        );
    }
    let first_word = scan.words.first().map(|w| w.text.as_str());
    if !mentions_sharded && first_word == Some("select") && !scan.has_keyword("into") {
        // A read of reference (and unlisted) tables only: any copy answers; skip the parser.
        return (
            Plan::single(&rules.default_shard, SingleReason::ReferenceOnly),
            None,
        );
    }
    // In DDL an executable comment carries table options (sysbench's `/*! ENGINE = innodb */`),
    // which do not change where the statement goes: every copy gets the original text.
    let ddl = matches!(
        first_word,
        Some("create" | "alter" | "drop" | "truncate" | "rename")
    );
    if scan.executable_comment && !ddl {
        return (
            reject::not_supported(
                "executable comments (/*! … */) in statements on sharded or reference tables \
                 are not supported",
            ),
            None,
        );
    }
    if scan.multiple_statements {
        return (
            reject::not_supported(
                "several statements in one query on sharded or reference tables; send them \
                 one at a time",
            ),
            None,
        );
    }
    let statements = match Parser::parse_sql(&MySqlDialect {}, sql) {
        Ok(s) => s,
        Err(e) => {
            // A read of reference tables only is answered by any copy.
            let first = scan.words.first().map(|w| w.text.as_str());
            if !mentions_sharded && first == Some("select") && !scan.has_keyword("into") {
                return (
                    Plan::single(&rules.default_shard, SingleReason::ReferenceOnlyUnparsed),
                    None,
                );
            }
            return (
                reject::not_supported(format!(
                    "the proxy's SQL parser could not read this statement, which names a \
                     sharded or reference table, so it cannot be routed safely ({e})"
                )),
                None,
            );
        }
    };
    let [stmt] = statements.as_slice() else {
        return (
            reject::not_supported("expected exactly one statement"),
            None,
        );
    };
    let cx = Cx {
        sql,
        ctx,
        scan: &scan,
        mentions_sharded,
    };
    match stmt {
        Statement::Query(q) => select::plan_select(q, &cx),
        Statement::Insert(i) => insert_split::plan_insert(i, &cx),
        Statement::Update(u) => write::plan_update(u, &cx),
        Statement::Delete(d) => write::plan_delete(d, &cx),
        Statement::CreateTable(_)
        | Statement::AlterTable(_)
        | Statement::Drop { .. }
        | Statement::Truncate(_)
        | Statement::CreateIndex(_)
        | Statement::RenameTable(_) => (ddl::plan_ddl(stmt, &cx), None),
        Statement::Explain { statement, .. } => {
            let inner = match statement.as_ref() {
                Statement::Query(q) => select::plan_select(q, &cx).0,
                Statement::Insert(i) => insert_split::plan_insert(i, &cx).0,
                Statement::Update(u) => write::plan_update(u, &cx).0,
                Statement::Delete(d) => write::plan_delete(d, &cx).0,
                _ => Plan::single(&rules.default_shard, SingleReason::ExplainOnShard),
            };
            match inner {
                Plan::Single { shard, .. } => {
                    (Plan::single(&shard, SingleReason::ExplainOnShard), None)
                }
                Plan::Reject(_) => (inner, None),
                _ => (
                    reject::not_supported(
                        "EXPLAIN of a statement that spans shards; use PREVIEW to see its plan",
                    ),
                    None,
                ),
            }
        }
        Statement::CreateView(_) if mentions_sharded => (
            reject::not_supported("views over sharded tables are not supported"),
            None,
        ),
        _ => {
            // Metadata, session and maintenance statements are answered by the default shard;
            // any other statement kind that names a sharded table (LOAD DATA, CALL, HANDLER,
            // LOCK TABLES, …) could read or write rows on every shard and is refused.
            let first = scan.words.first().map(|w| w.text.as_str()).unwrap_or("");
            if !mentions_sharded || DEFAULT_SHARD_STATEMENTS.contains(&first) {
                (
                    Plan::single(&rules.default_shard, SingleReason::NotADataStatement),
                    None,
                )
            } else {
                (
                    reject::not_supported(format!(
                        "{} statements on sharded tables are not supported",
                        first.to_uppercase()
                    )),
                    None,
                )
            }
        }
    }
}

/// Everything a primitive needs about the statement being planned.
pub(crate) struct Cx<'a> {
    pub sql: &'a str,
    pub ctx: &'a PlanContext<'a>,
    pub scan: &'a scan::Scan,
    /// The text names a sharded table somewhere (maybe only as a column name).
    pub mentions_sharded: bool,
}

impl Cx<'_> {
    pub fn rules(&self) -> &Rules {
        self.ctx.rules
    }
    pub fn cur_db(&self) -> Option<&str> {
        self.ctx.current_db
    }
    pub fn default_shard(&self) -> &str {
        &self.ctx.rules.default_shard
    }
    /// Every shard getting `sql`.
    pub fn all_shards(&self, sql: &str) -> Vec<ShardSql> {
        self.ctx
            .rules
            .shards
            .iter()
            .map(|s| ShardSql {
                shard: s.clone(),
                sql: sql.to_string(),
            })
            .collect()
    }
}

/// First words of statements that the default shard answers even when they name a sharded
/// table (metadata, session, maintenance).
const DEFAULT_SHARD_STATEMENTS: &[&str] = &[
    "show",
    "describe",
    "desc",
    "set",
    "use",
    "begin",
    "start",
    "commit",
    "rollback",
    "savepoint",
    "release",
    "analyze",
    "optimize",
    "check",
    "checksum",
    "flush",
    "kill",
];

/// Functions whose value differs between shards: a reference-table write using them would make
/// the copies diverge.
pub(crate) const NONDETERMINISTIC: &[&str] = &[
    "rand",
    "uuid",
    "uuid_short",
    "now",
    "sysdate",
    "current_timestamp",
    "curtime",
    "curdate",
    "current_time",
    "current_date",
    "localtime",
    "localtimestamp",
    "unix_timestamp",
    "utc_timestamp",
    "connection_id",
    "last_insert_id",
];

#[cfg(test)]
pub(crate) mod testutil {
    use super::*;

    pub fn rules(shards: usize) -> Rules {
        Rules::from_config(&rules::tests::test_config(shards))
    }

    pub fn plan_with(sql: &str, r: &Rules) -> Plan {
        plan(
            sql,
            &PlanContext {
                rules: r,
                current_db: None,
                allow_scatter_writes: false,
            },
        )
    }

    /// The shard a key lands on (tests compute expectations with the same ring).
    pub fn shard_of(r: &Rules, key: i64) -> String {
        r.ring
            .shard_for(&crate::ring::KeyValue::from(key))
            .to_string()
    }

    /// Two integer keys that land on different shards.
    pub fn keys_on_two_shards(r: &Rules) -> (i64, i64) {
        let a = 1;
        let b = (2..1000)
            .find(|&k| shard_of(r, k) != shard_of(r, a))
            .unwrap();
        (a, b)
    }

    /// A scatter read over 3 shards: the SQL every shard gets (the same for all) and the merge.
    pub fn scatter(sql: &str) -> (String, MergeSpec) {
        let r = rules(3);
        match plan_with(sql, &r) {
            Plan::Scatter { targets, merge } => {
                assert_eq!(targets.len(), 3);
                assert!(targets.iter().all(|t| t.sql == targets[0].sql));
                (targets[0].sql.clone(), merge)
            }
            other => panic!("{sql}: expected Scatter, got {other:?}"),
        }
    }

    pub fn expect_single(p: &Plan) -> &str {
        match p {
            Plan::Single { shard, .. } => shard,
            other => panic!("expected Single, got {other:?}"),
        }
    }

    pub fn expect_reject(p: &Plan, needle: &str) {
        match p {
            Plan::Reject(r) => {
                let (code, message) = (&r.code(), r.message());
                assert!(
                    message.to_lowercase().contains(&needle.to_lowercase()),
                    "message {message:?} lacks {needle:?}"
                );
                assert!(*code == 1235 || *code == 1105, "{code}");
            }
            other => panic!("expected Reject({needle}), got {other:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testutil::*;

    #[test]
    fn unsharded_statements_skip_the_parser_and_go_to_default() {
        let r = rules(3);
        for sql in [
            "SELECT 1",
            "SELECT * FROM other WHERE x = 1",
            "SET NAMES utf8mb4",
            "SELECT * FROM t LOCK IN SHARE MODE",
            "XA START 'x'",
            "SELECT 'accounts' FROM dual",
        ] {
            assert_eq!(expect_single(&plan_with(sql, &r)), "s1", "{sql}");
        }
    }

    #[test]
    fn hint_routes_to_named_shard() {
        let r = rules(3);
        let p = plan_with("/* shard=s3 */ DELETE FROM accounts", &r);
        assert_eq!(expect_single(&p), "s3");
        let p = plan_with("SELECT COUNT(*) FROM accounts -- shard=s2", &r);
        assert_eq!(expect_single(&p), "s2");
    }

    #[test]
    fn hint_with_unknown_shard_lists_shards() {
        let r = rules(3);
        let p = plan_with("/* shard=s9 */ SELECT 1", &r);
        expect_reject(&p, "s1, s2, s3");
        expect_reject(&p, "s9");
    }

    #[test]
    fn unparsable_statement_on_sharded_table_is_refused() {
        let r = rules(3);
        let p = plan_with(
            "SELECT * FROM accounts WHERE account_id = 1 LOCK IN SHARE MODE",
            &r,
        );
        expect_reject(&p, "parser could not read");
        // Reading only a reference table is answered by the default shard's copy.
        let p = plan_with("SELECT * FROM fund_yield LOCK IN SHARE MODE", &r);
        assert_eq!(expect_single(&p), "s1");
    }

    #[test]
    fn executable_comment_naming_sharded_table_is_refused() {
        let r = rules(3);
        let p = plan_with("SELECT 1 /*!50000 , (SELECT COUNT(*) FROM accounts) */", &r);
        expect_reject(&p, "executable comments");
    }

    #[test]
    fn multiple_statements_are_refused() {
        let r = rules(3);
        let p = plan_with(
            "DELETE FROM accounts WHERE account_id = 1; DELETE FROM accounts",
            &r,
        );
        expect_reject(&p, "one at a time");
    }

    #[test]
    fn other_statements_go_to_default_shard() {
        let r = rules(3);
        assert_eq!(
            expect_single(&plan_with("SHOW CREATE TABLE accounts", &r)),
            "s1"
        );
        assert_eq!(expect_single(&plan_with("DESCRIBE accounts", &r)), "s1");
        assert_eq!(
            expect_single(&plan_with("ANALYZE TABLE accounts", &r)),
            "s1"
        );
    }

    #[test]
    fn other_statements_on_sharded_tables_are_refused() {
        let r = rules(3);
        expect_reject(
            &plan_with("LOAD DATA INFILE '/tmp/x' INTO TABLE accounts", &r),
            "",
        );
        expect_reject(&plan_with("LOCK TABLES accounts WRITE", &r), "");
        expect_reject(
            &plan_with("CREATE VIEW v AS SELECT * FROM accounts", &r),
            "views",
        );
    }

    #[test]
    fn explain_follows_single_route_and_refuses_scatter() {
        let r = rules(3);
        let p = plan_with("EXPLAIN SELECT * FROM accounts WHERE account_id = 7", &r);
        assert_eq!(expect_single(&p), shard_of(&r, 7));
        expect_reject(&plan_with("EXPLAIN SELECT * FROM accounts", &r), "PREVIEW");
    }

    #[test]
    fn describe_lists_shards_sql_and_merge() {
        let r = rules(3);
        let sql = "SELECT * FROM accounts WHERE account_id = 7";
        let rows = plan_with(sql, &r).describe(sql);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].1, sql);
        let sql = "SELECT COUNT(*) FROM accounts";
        let rows = plan_with(sql, &r).describe(sql);
        assert_eq!(rows.len(), 3);
        assert!(rows[0].2.contains("Count"), "{:?}", rows[0]);
    }

    #[test]
    fn describe_notes_read_as_before() {
        let r = rules(3);
        let note = |sql: &str| plan_with(sql, &r).describe(sql)[0].2.clone();
        assert_eq!(
            note("SELECT fund, COUNT(*) FROM accounts GROUP BY fund ORDER BY 2 DESC LIMIT 5"),
            "merge: 2 visible columns; group by [0]; Count(col 1); order by 1 desc; limit 5"
        );
        assert_eq!(
            note("SELECT DISTINCT a, b FROM accounts HAVING a > 1 ORDER BY a, b DESC LIMIT 2, 3"),
            "merge: 2 visible columns; having (in proxy); distinct; order by 0, 1 desc; \
             offset 2; limit 3"
        );
        assert_eq!(note("SELECT * FROM accounts"), "merge: all columns");
        assert_eq!(
            note("DELETE FROM accounts WHERE account_id IN (1, 2, 3, 4)"),
            "Write"
        );
        assert_eq!(
            note("SELECT * FROM accounts WHERE account_id = 7"),
            "key = 7"
        );
        assert_eq!(note("/* shard=s2 */ SELECT 1"), "hint shard=s2");
        assert_eq!(
            note("/* shard=s9 */ SELECT 1"),
            "refused: ERROR 1105 (HY000): shardproxy: unknown shard \"s9\" in hint; shards are: \
             s1, s2, s3"
        );
        assert_eq!(
            note("INSERT INTO accounts VALUES (1, 2)"),
            "refused: ERROR 1235 (42000): shardproxy: INSERT into sharded table accounts without \
             a column list: list the columns so the proxy can find the shard key account_id"
        );
    }
}

#[cfg(test)]
mod timing {
    /// Rough cost of planning a point select (run with `--ignored --nocapture`, ideally in
    /// release mode).
    #[test]
    #[ignore]
    fn point_select_cost() {
        let r = super::testutil::rules(3);
        let n = 20_000;
        for sql in [
            "SELECT c FROM accounts WHERE account_id = 4242",
            "SELECT c FROM sbtest1 WHERE id = 4242",
            "SELECT COUNT(*), SUM(balance) FROM accounts GROUP BY fund ORDER BY 2 DESC LIMIT 5",
        ] {
            let t = std::time::Instant::now();
            for _ in 0..n {
                std::hint::black_box(super::testutil::plan_with(sql, &r));
            }
            println!(
                "{:>8.2} µs  {sql}",
                t.elapsed().as_secs_f64() * 1e6 / n as f64
            );
            let t = std::time::Instant::now();
            for _ in 0..n {
                std::hint::black_box(sqlparser::parser::Parser::parse_sql(
                    &sqlparser::dialect::MySqlDialect {},
                    sql,
                ))
                .ok();
            }
            println!(
                "{:>8.2} µs  (parse only)",
                t.elapsed().as_secs_f64() * 1e6 / n as f64
            );
            let t = std::time::Instant::now();
            for _ in 0..n {
                std::hint::black_box(super::scan::scan(sql));
            }
            println!(
                "{:>8.2} µs  (scan only)",
                t.elapsed().as_secs_f64() * 1e6 / n as f64
            );
        }
    }
}
