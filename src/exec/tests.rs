//! The executor's primitives against an in-memory fake backend: every shard is a function
//! from SQL to an answer, and the fake records what each leg ran, which connections came back
//! and which were dropped. No server, no socket: the leg lifecycle's rules are checked alone.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use super::scatter::scatter;
use super::write::{write, Commit};
use super::{Access, Condition, FoundRows, ShardConn, Shards, StreamConn};
use crate::backend::conn::{BackendError, QueryResult};
use crate::backend::rows::{RowStep, StreamHead};
use crate::plan::spec::{MergeSpec, SortKey};
use crate::plan::{MultiKind, ShardSql};
use crate::protocol::constants::err;
use crate::protocol::packets::{ErrInfo, OkInfo};
use crate::protocol::resultset::{ColumnDef, ResultSet};

/// How a fake shard answers one statement.
type Answer = Arc<dyn Fn(&str) -> Result<QueryResult, BackendError> + Send + Sync>;

/// Everything the fake saw, shared by its connections.
#[derive(Default)]
struct Log {
    /// `(shard, sql)` in the order the legs ran them.
    ran: Vec<(String, String)>,
    /// Shards whose connection came back usable.
    given_back: Vec<String>,
    /// Shards whose connection was dropped as broken.
    lost: Vec<String>,
    /// `(shard, access)` of every lease.
    leased: Vec<(String, Access)>,
    /// Shards whose connection was told its insert id is unknown.
    forgot_insert_id: Vec<String>,
    /// The shard of every streamed row read (`next_row` calls), in order.
    rows_read: Vec<String>,
}

/// The fake backend: shards by name, one of which may refuse to lease.
struct Fake {
    /// Each shard's answers.
    shards: HashMap<String, Answer>,
    /// A shard whose lease fails.
    unreachable: Option<String>,
    /// What happened.
    log: Arc<Mutex<Log>>,
    /// Shards whose streamed answer ends with this server error after its rows.
    fail_after_rows: HashMap<String, ErrInfo>,
}

/// A fake leg connection.
struct FakeConn {
    /// Its shard.
    shard: String,
    /// How its shard answers.
    answer: Answer,
    /// The fake's shared log.
    log: Arc<Mutex<Log>>,
    /// Rows of a streamed answer not read yet.
    pending: std::collections::VecDeque<crate::protocol::resultset::TextRow>,
    /// The warning count at the end of the streamed answer.
    end_warnings: u16,
    /// A server error this shard's streamed answer ends with after its rows.
    fail_after_rows: Option<ErrInfo>,
}

impl ShardConn for FakeConn {
    async fn query(&mut self, sql: &str) -> Result<QueryResult, BackendError> {
        self.log
            .lock()
            .unwrap()
            .ran
            .push((self.shard.clone(), sql.to_string()));
        (self.answer)(sql)
    }

    async fn query_pipelined(
        &mut self,
        first: &str,
        then: &str,
    ) -> (
        Result<QueryResult, BackendError>,
        Result<QueryResult, BackendError>,
    ) {
        let a = self.query(first).await;
        let b = self.query(then).await;
        (a, b)
    }

    fn forget_insert_id(&mut self) {
        self.log
            .lock()
            .unwrap()
            .forgot_insert_id
            .push(self.shard.clone());
    }
}

impl StreamConn for FakeConn {
    async fn start_rows(&mut self, sql: &str) -> Result<StreamHead, BackendError> {
        match self.query(sql).await? {
            QueryResult::Rows(rs) => {
                self.pending = rs.rows.into();
                self.end_warnings = rs.warnings;
                Ok(StreamHead::Rows(rs.columns))
            }
            QueryResult::Ok(ok) => Ok(StreamHead::Ok(ok)),
        }
    }

    async fn next_row(&mut self) -> Result<RowStep, BackendError> {
        self.log.lock().unwrap().rows_read.push(self.shard.clone());
        match self.pending.pop_front() {
            Some(row) => Ok(RowStep::Row(row)),
            None => match self.fail_after_rows.take() {
                Some(e) => Err(BackendError::Server(e)),
                None => Ok(RowStep::End {
                    warnings: self.end_warnings,
                }),
            },
        }
    }
}

impl Shards for Fake {
    type Conn = FakeConn;

    async fn lease(&mut self, shard: &str, access: Access) -> Result<FakeConn, ErrInfo> {
        self.log
            .lock()
            .unwrap()
            .leased
            .push((shard.to_string(), access));
        if self.unreachable.as_deref() == Some(shard) {
            return Err(ErrInfo::new(
                err::ER_NET_READ_ERROR,
                format!("Backend of {shard} unavailable"),
            ));
        }
        Ok(FakeConn {
            shard: shard.to_string(),
            answer: self.shards[shard].clone(),
            log: self.log.clone(),
            pending: Default::default(),
            end_warnings: 0,
            fail_after_rows: self.fail_after_rows.get(shard).cloned(),
        })
    }

    fn give_back(&mut self, shard: &str, _conn: FakeConn) {
        self.log.lock().unwrap().given_back.push(shard.to_string());
    }

    fn lost(&mut self, shard: &str, _conn: FakeConn) {
        self.log.lock().unwrap().lost.push(shard.to_string());
    }
}

impl Fake {
    fn new(shards: Vec<(&str, Answer)>) -> Fake {
        Fake {
            shards: shards
                .into_iter()
                .map(|(s, a)| (s.to_string(), a))
                .collect(),
            unreachable: None,
            log: Arc::default(),
            fail_after_rows: HashMap::new(),
        }
    }

    fn ran(&self) -> Vec<(String, String)> {
        self.log.lock().unwrap().ran.clone()
    }
}

/// One BIGINT column `id` with these values, and `warnings` warnings.
fn ids(values: &[i64], warnings: u16) -> QueryResult {
    QueryResult::Rows(ResultSet {
        columns: vec![ColumnDef::bigint("id")],
        rows: values
            .iter()
            .map(|v| vec![Some(Bytes::from(v.to_string()))])
            .collect(),
        warnings,
    })
}

/// A shard answering every statement with `rows`, and SHOW WARNINGS with one warning.
fn rows_shard(values: &'static [i64], warnings: u16) -> Answer {
    Arc::new(move |sql| {
        if sql == "SHOW WARNINGS" {
            Ok(QueryResult::Rows(ResultSet {
                columns: vec![
                    ColumnDef::text("Level"),
                    ColumnDef::text("Code"),
                    ColumnDef::text("Message"),
                ],
                rows: vec![vec![
                    Some(Bytes::from("Warning")),
                    Some(Bytes::from("1292")),
                    Some(Bytes::from(format!("warned on {}", values[0]))),
                ]],
                warnings: 0,
            }))
        } else {
            Ok(ids(values, warnings))
        }
    })
}

/// A shard answering writes with an OK of `affected` rows and insert id `id`.
fn ok_shard(affected: u64, id: u64) -> Answer {
    Arc::new(move |_| {
        Ok(QueryResult::Ok(OkInfo {
            affected_rows: affected,
            last_insert_id: id,
            ..OkInfo::default()
        }))
    })
}

/// A shard that answers its statement with a server error (BEGIN, COMMIT, ROLLBACK are fine).
fn error_shard() -> Answer {
    Arc::new(|sql| match sql {
        "BEGIN" | "COMMIT" | "ROLLBACK" => Ok(QueryResult::Ok(OkInfo::default())),
        _ => Err(BackendError::Server(ErrInfo::new(
            (1062, "23000"),
            "Duplicate entry '7' for key 'PRIMARY'",
        ))),
    })
}

/// A shard whose connection breaks on its statement.
fn broken_shard() -> Answer {
    Arc::new(|sql| match sql {
        "BEGIN" => Ok(QueryResult::Ok(OkInfo::default())),
        _ => Err(BackendError::Lost {
            addr: "127.0.0.1:1".into(),
            reason: "connection reset".into(),
        }),
    })
}

fn targets(sql: &[(&str, &str)]) -> Vec<ShardSql> {
    sql.iter()
        .map(|(shard, sql)| ShardSql {
            shard: shard.to_string(),
            sql: sql.to_string(),
        })
        .collect()
}

fn ordered() -> MergeSpec {
    MergeSpec {
        visible_columns: 1,
        order_by: vec![SortKey {
            column: 0,
            descending: false,
        }],
        ..MergeSpec::default()
    }
}

#[tokio::test]
async fn scatter_merges_every_leg_and_gives_every_connection_back() {
    let mut fake = Fake::new(vec![
        ("s1", rows_shard(&[1, 4], 0)),
        ("s2", rows_shard(&[2, 3], 0)),
    ]);
    let t = targets(&[("s1", "SELECT id FROM t"), ("s2", "SELECT id FROM t")]);
    let done = scatter(&mut fake, &t, &ordered()).await;
    let rs = done.answer.expect("merged");
    let got: Vec<&[u8]> = rs.rows.iter().map(|r| r[0].as_deref().unwrap()).collect();
    assert_eq!(got, vec![b"1", b"2", b"3", b"4"]);
    let d = done.diagnostics.expect("recorded");
    assert_eq!(d.row_count, -1);
    assert_eq!(d.found_rows, FoundRows::Known(4));
    let log = fake.log.lock().unwrap();
    assert_eq!(log.given_back, vec!["s1", "s2"]);
    assert!(log.lost.is_empty());
    assert!(log.leased.iter().all(|(_, a)| *a == Access::Read));
}

#[tokio::test]
async fn scatter_collects_warnings_in_shard_order() {
    let mut fake = Fake::new(vec![
        ("s1", rows_shard(&[1], 1)),
        ("s2", rows_shard(&[2], 0)),
        ("s3", rows_shard(&[3], 2)),
    ]);
    let t = targets(&[("s1", "SELECT 1"), ("s2", "SELECT 2"), ("s3", "SELECT 3")]);
    let done = scatter(&mut fake, &t, &ordered()).await;
    assert!(done.answer.is_ok());
    let d = done.diagnostics.unwrap();
    assert_eq!(d.warning_count, 3);
    let messages: Vec<&str> = d.conditions.iter().map(|c| c.message.as_str()).collect();
    assert_eq!(messages, vec!["warned on 1", "warned on 3"]);
    // SHOW WARNINGS only where the answer had warnings.
    let shows: Vec<String> = fake
        .ran()
        .into_iter()
        .filter(|(_, sql)| sql == "SHOW WARNINGS")
        .map(|(s, _)| s)
        .collect();
    assert_eq!(shows, vec!["s1", "s3"]);
}

#[tokio::test]
async fn scatter_names_the_failing_shard_and_keeps_the_servers_wording() {
    let mut fake = Fake::new(vec![("s1", rows_shard(&[1], 0)), ("s2", error_shard())]);
    let t = targets(&[("s1", "SELECT id FROM t"), ("s2", "SELECT id FROM t")]);
    let done = scatter(&mut fake, &t, &ordered()).await;
    let e = done.answer.expect_err("a leg failed");
    assert_eq!(e.code, 1062);
    assert_eq!(e.sqlstate, "23000");
    assert_eq!(
        e.message,
        "Duplicate entry '7' for key 'PRIMARY' (on shard s2)"
    );
    let d = done.diagnostics.expect("recorded");
    assert_eq!(
        d.conditions.last(),
        Some(&Condition {
            level: "Error".into(),
            code: 1062,
            message: "Duplicate entry '7' for key 'PRIMARY'".into(),
        })
    );
    assert_eq!(d.row_count, -1);
    // A server error leaves the connection usable.
    assert_eq!(fake.log.lock().unwrap().given_back, vec!["s1", "s2"]);
}

#[tokio::test]
async fn scatter_drops_a_broken_connection_and_returns_the_others() {
    let mut fake = Fake::new(vec![("s1", broken_shard()), ("s2", rows_shard(&[2], 0))]);
    let t = targets(&[("s1", "SELECT id FROM t"), ("s2", "SELECT id FROM t")]);
    let done = scatter(&mut fake, &t, &ordered()).await;
    let e = done.answer.expect_err("a leg broke");
    assert_eq!(e.code, err::ER_NET_READ_ERROR.0);
    let log = fake.log.lock().unwrap();
    assert_eq!(log.lost, vec!["s1"]);
    assert_eq!(log.given_back, vec!["s2"]);
}

#[tokio::test]
async fn scatter_refuses_an_ok_where_rows_were_expected() {
    let mut fake = Fake::new(vec![("s1", rows_shard(&[1], 0)), ("s2", ok_shard(0, 0))]);
    let t = targets(&[("s1", "SELECT id FROM t"), ("s2", "SELECT id FROM t")]);
    let e = scatter(&mut fake, &t, &ordered()).await.answer.unwrap_err();
    assert_eq!(e.code, err::ER_NOT_SUPPORTED_YET.0);
    assert_eq!(e.message, "shard s2 returned no result set");
}

#[tokio::test]
async fn a_failed_lease_runs_nothing_and_returns_the_legs_already_open() {
    let mut fake = Fake::new(vec![
        ("s1", rows_shard(&[1], 0)),
        ("s2", rows_shard(&[2], 0)),
        ("s3", rows_shard(&[3], 0)),
    ]);
    fake.unreachable = Some("s2".into());
    let t = targets(&[("s1", "SELECT 1"), ("s2", "SELECT 2"), ("s3", "SELECT 3")]);
    let done = scatter(&mut fake, &t, &ordered()).await;
    assert!(done.answer.unwrap_err().message.contains("s2"));
    assert!(done.diagnostics.is_none(), "no leg ran: nothing recorded");
    assert!(fake.ran().is_empty());
    let log = fake.log.lock().unwrap();
    assert_eq!(log.given_back, vec!["s1"]);
    assert_eq!(log.leased.len(), 2, "s3 is never leased");
}

#[tokio::test]
async fn all_or_none_commits_every_leg_when_every_leg_succeeded() {
    let mut fake = Fake::new(vec![("s1", ok_shard(2, 0)), ("s2", ok_shard(3, 0))]);
    let t = targets(&[("s1", "UPDATE t SET a=1"), ("s2", "UPDATE t SET a=1")]);
    let done = write(&mut fake, &t, MultiKind::Write, Commit::AllOrNone).await;
    let ok = done.answer.expect("committed");
    assert_eq!(ok.affected_rows, 5);
    assert_eq!(done.diagnostics.unwrap().row_count, 5);
    for shard in ["s1", "s2"] {
        let on: Vec<String> = fake
            .ran()
            .into_iter()
            .filter(|(s, _)| s == shard)
            .map(|(_, sql)| sql)
            .collect();
        assert_eq!(on, vec!["BEGIN", "UPDATE t SET a=1", "COMMIT"], "{shard}");
    }
    assert!(fake
        .log
        .lock()
        .unwrap()
        .leased
        .iter()
        .all(|(_, a)| *a == Access::Write));
}

#[tokio::test]
async fn all_or_none_rolls_every_leg_back_when_one_failed() {
    let mut fake = Fake::new(vec![("s1", ok_shard(2, 0)), ("s2", error_shard())]);
    let t = targets(&[("s1", "INSERT 1"), ("s2", "INSERT 2")]);
    let done = write(&mut fake, &t, MultiKind::InsertSplit, Commit::AllOrNone).await;
    let e = done.answer.expect_err("one leg failed");
    assert_eq!(e.code, 1062);
    assert!(e.message.ends_with("(on shard s2)"));
    let ends: Vec<(String, String)> = fake
        .ran()
        .into_iter()
        .filter(|(_, sql)| sql == "COMMIT" || sql == "ROLLBACK")
        .collect();
    assert_eq!(
        ends,
        vec![
            ("s1".to_string(), "ROLLBACK".to_string()),
            ("s2".to_string(), "ROLLBACK".to_string())
        ]
    );
    let d = done.diagnostics.unwrap();
    assert_eq!(d.row_count, -1);
    assert_eq!(d.conditions.last().unwrap().code, 1062);
}

#[tokio::test]
async fn as_sent_runs_the_statement_alone_and_a_reference_write_counts_one_copy() {
    let mut fake = Fake::new(vec![("s1", ok_shard(4, 0)), ("s2", ok_shard(4, 0))]);
    let t = targets(&[("s1", "UPDATE r SET a=1"), ("s2", "UPDATE r SET a=1")]);
    let done = write(&mut fake, &t, MultiKind::ReferenceWrite, Commit::AsSent).await;
    assert_eq!(done.answer.unwrap().affected_rows, 4);
    assert!(fake.ran().iter().all(|(_, sql)| sql == "UPDATE r SET a=1"));
}

#[tokio::test]
async fn an_insert_id_makes_the_connection_forget_its_last_insert_id() {
    let mut fake = Fake::new(vec![("s1", ok_shard(1, 0)), ("s2", ok_shard(1, 42))]);
    let t = targets(&[("s1", "INSERT 1"), ("s2", "INSERT 2")]);
    let ok = write(&mut fake, &t, MultiKind::InsertSplit, Commit::AsSent)
        .await
        .answer
        .unwrap();
    assert_eq!(ok.last_insert_id, 42);
    assert_eq!(fake.log.lock().unwrap().forgot_insert_id, vec!["s2"]);
}

#[tokio::test]
async fn a_write_leg_that_breaks_is_dropped_and_named() {
    let mut fake = Fake::new(vec![("s1", ok_shard(1, 0)), ("s2", broken_shard())]);
    let t = targets(&[("s1", "DELETE 1"), ("s2", "DELETE 2")]);
    let done = write(&mut fake, &t, MultiKind::Write, Commit::AllOrNone).await;
    let e = done.answer.unwrap_err();
    assert!(e.message.ends_with("(on shard s2)"), "{}", e.message);
    let log = fake.log.lock().unwrap();
    assert_eq!(log.lost, vec!["s2"]);
    assert_eq!(log.given_back, vec!["s1"]);
    assert!(log
        .ran
        .contains(&("s1".to_string(), "ROLLBACK".to_string())));
}

/// A plan primitive and the executor together: the planner's scatter of a COUNT(*) over three
/// shards, run on fake shards that hold 3, 5 and 0 rows, answers what one server would.
#[tokio::test]
async fn a_planned_scatter_count_sums_the_shards_counts() {
    use crate::plan::testutil::{plan_with, rules};
    use crate::plan::Plan;
    let r = rules(3);
    let Plan::Scatter { targets, merge } = plan_with("SELECT COUNT(*) FROM accounts", &r) else {
        panic!("a COUNT over a sharded table scatters");
    };
    assert_eq!(targets.len(), 3);
    let count = |n: i64| -> Answer { Arc::new(move |_| Ok(ids(&[n], 0))) };
    let mut fake = Fake::new(vec![("s1", count(3)), ("s2", count(5)), ("s3", count(0))]);
    let rs = scatter(&mut fake, &targets, &merge).await.answer.unwrap();
    assert_eq!(rs.rows, vec![vec![Some(Bytes::from("8"))]]);
    // Every shard got the planner's SQL for it.
    let ran: Vec<String> = fake.ran().into_iter().map(|(s, _)| s).collect();
    assert_eq!(ran, vec!["s1", "s2", "s3"]);
}

/// A planned UPDATE of two keys on two shards runs in a transaction on each of the two.
#[tokio::test]
async fn a_planned_two_key_update_commits_on_both_shards() {
    use crate::plan::testutil::{keys_on_two_shards, plan_with, rules, shard_of};
    use crate::plan::Plan;
    let r = rules(3);
    let (a, b) = keys_on_two_shards(&r);
    let sql = format!("UPDATE accounts SET name = 'x' WHERE account_id IN ({a}, {b})");
    let Plan::Multi { targets, kind } = plan_with(&sql, &r) else {
        panic!("two keys on two shards: a multi-shard write");
    };
    let answers: Vec<(String, Answer)> = targets
        .iter()
        .map(|t| (t.shard.clone(), ok_shard(1, 0)))
        .collect();
    let mut fake = Fake::new(
        answers
            .iter()
            .map(|(s, a)| (s.as_str(), a.clone()))
            .collect(),
    );
    let ok = write(&mut fake, &targets, kind, Commit::AllOrNone)
        .await
        .answer
        .unwrap();
    assert_eq!(ok.affected_rows, 2);
    for shard in [shard_of(&r, a), shard_of(&r, b)] {
        let on: Vec<String> = fake
            .ran()
            .into_iter()
            .filter(|(s, _)| *s == shard)
            .map(|(_, q)| q)
            .collect();
        assert_eq!(on.first().map(String::as_str), Some("BEGIN"), "{shard}");
        assert_eq!(on.last().map(String::as_str), Some("COMMIT"), "{shard}");
    }
}

/// Streamed scatter reads (`exec/stream.rs`) over the same fake.
mod streamed {
    use super::*;
    use crate::exec::stream::{open, Limits, ScatterStream};

    const LIMITS: Limits = Limits { max_groups: 0 };

    /// Pulls every row of an opened stream: the ids, and the error that ended it if any.
    async fn drain(st: &mut ScatterStream<FakeConn>) -> (Vec<String>, Option<ErrInfo>) {
        let mut got = Vec::new();
        loop {
            match st.next().await {
                Ok(Some(r)) => got.push(String::from_utf8_lossy(r[0].as_deref().unwrap()).into()),
                Ok(None) => return (got, None),
                Err(e) => return (got, Some(e)),
            }
        }
    }

    fn two_shards() -> Fake {
        Fake::new(vec![
            ("s1", rows_shard(&[1, 4, 5], 0)),
            ("s2", rows_shard(&[2, 3], 0)),
        ])
    }

    fn t2() -> Vec<ShardSql> {
        targets(&[("s1", "SELECT id FROM t"), ("s2", "SELECT id FROM t")])
    }

    #[tokio::test]
    async fn ordered_stream_merges_and_reads_one_row_per_shard_ahead() {
        let mut fake = two_shards();
        let t = t2();
        let mut st = open(&mut fake, &t, &ordered(), LIMITS).await.ok().unwrap();
        assert_eq!(
            fake.log.lock().unwrap().rows_read,
            vec!["s1", "s2"],
            "one head row per shard before the first row is sent"
        );
        assert_eq!(
            st.next().await.unwrap().unwrap()[0].as_deref(),
            Some(&b"1"[..])
        );
        assert_eq!(fake.log.lock().unwrap().rows_read.len(), 3);
        let (rest, e) = drain(&mut st).await;
        assert!(e.is_none());
        assert_eq!(rest, vec!["2", "3", "4", "5"]);
        let done = st.finish(&mut fake).await;
        assert_eq!(done.answer.unwrap(), 0);
        assert_eq!(done.diagnostics.unwrap().found_rows, FoundRows::Known(5));
        assert_eq!(fake.log.lock().unwrap().given_back, vec!["s1", "s2"]);
    }

    /// `SELECT * FROM t ORDER BY id` as planned: each shard answers `SELECT *, id FROM t
    /// ORDER BY id`, the width of `*` (here 2) known only from their column definitions.
    #[tokio::test]
    async fn select_star_orders_by_a_hidden_key_and_strips_it() {
        let shard = |rows: &'static [[&'static str; 3]]| -> Answer {
            Arc::new(move |_| {
                let rows = rows
                    .iter()
                    .map(|r| r.iter().map(|v| v.to_string()).collect())
                    .collect();
                text_rows(&["id", "name", "id"], rows)
            })
        };
        let mut fake = Fake::new(vec![
            // Each shard sorted its part (ORDER BY id DESC).
            ("s1", shard(&[["4", "d", "4"], ["1", "a", "1"]])),
            ("s2", shard(&[["3", "c", "3"], ["2", "b", "2"]])),
        ]);
        let spec = MergeSpec {
            visible_columns: 1,
            order_by: vec![SortKey {
                column: 1,
                descending: true,
            }],
            limit: Some(3),
            wildcard: Some(crate::plan::spec::Wildcard {
                start: 0,
                planned_width: 1,
                planned_total: 2,
            }),
            ..MergeSpec::default()
        };
        let mut st = open(&mut fake, &t2(), &spec, LIMITS).await.ok().unwrap();
        assert_eq!(st.columns().len(), 2, "the hidden key is not sent");
        let mut got = Vec::new();
        while let Some(r) = st.next().await.unwrap() {
            got.push(r.len());
            got.push(r[0].as_deref().unwrap()[0] as usize);
        }
        assert_eq!(
            got,
            vec![2, b'4' as usize, 2, b'3' as usize, 2, b'2' as usize]
        );
        st.finish(&mut fake).await.answer.unwrap();
    }

    #[tokio::test]
    async fn relay_sends_shard_after_shard() {
        let mut fake = two_shards();
        let t = t2();
        let spec = MergeSpec {
            visible_columns: 1,
            ..MergeSpec::default()
        };
        let mut st = open(&mut fake, &t, &spec, LIMITS).await.ok().unwrap();
        assert!(fake.log.lock().unwrap().rows_read.is_empty());
        let (got, e) = drain(&mut st).await;
        assert!(e.is_none());
        assert_eq!(got, vec!["1", "4", "5", "2", "3"]);
        st.finish(&mut fake).await.answer.unwrap();
    }

    #[tokio::test]
    async fn a_limit_stops_the_merge_and_the_rest_is_read_before_giving_back() {
        let mut fake = two_shards();
        let t = t2();
        let spec = MergeSpec {
            offset: 1,
            limit: Some(2),
            ..ordered()
        };
        let mut st = open(&mut fake, &t, &spec, LIMITS).await.ok().unwrap();
        let (got, _) = drain(&mut st).await;
        assert_eq!(got, vec!["2", "3"]);
        let done = st.finish(&mut fake).await;
        assert_eq!(done.diagnostics.unwrap().found_rows, FoundRows::Known(2));
        let log = fake.log.lock().unwrap();
        assert_eq!(log.given_back, vec!["s1", "s2"]);
        assert!(log.lost.is_empty());
    }

    #[tokio::test]
    async fn a_server_error_after_rows_ends_the_result_and_keeps_the_connections() {
        let mut fake = two_shards();
        fake.fail_after_rows.insert(
            "s2".into(),
            ErrInfo::new((1317, "70100"), "Query execution was interrupted"),
        );
        let t = t2();
        let spec = MergeSpec {
            visible_columns: 1,
            ..MergeSpec::default()
        };
        let mut st = open(&mut fake, &t, &spec, LIMITS).await.ok().unwrap();
        let (got, e) = drain(&mut st).await;
        assert_eq!(got, vec!["1", "4", "5", "2", "3"]);
        let e = e.expect("the error after the rows");
        assert_eq!(e.code, 1317);
        assert_eq!(e.message, "Query execution was interrupted (on shard s2)");
        let done = st.finish(&mut fake).await;
        assert_eq!(done.answer.unwrap_err().code, 1317);
        assert_eq!(fake.log.lock().unwrap().given_back, vec!["s1", "s2"]);
    }

    #[tokio::test]
    async fn an_error_in_the_middle_of_an_ordered_merge_drains_the_other_shard() {
        let mut fake = two_shards();
        fake.fail_after_rows.insert(
            "s2".into(),
            ErrInfo::new((1317, "70100"), "Query execution was interrupted"),
        );
        let t = t2();
        let mut st = open(&mut fake, &t, &ordered(), LIMITS).await.ok().unwrap();
        let (got, e) = drain(&mut st).await;
        // s2's end (its error) is read when its last row, 3, is taken.
        assert_eq!(got, vec!["1", "2"]);
        assert_eq!(e.unwrap().code, 1317);
        st.finish(&mut fake).await;
        let log = fake.log.lock().unwrap();
        assert_eq!(log.given_back, vec!["s1", "s2"]);
        // s1 was read to its end (3 rows and the end) before going back.
        assert_eq!(log.rows_read.iter().filter(|s| *s == "s1").count(), 4);
    }

    #[tokio::test]
    async fn an_abandoned_stream_drops_the_connections_in_the_middle_of_an_answer() {
        let mut fake = two_shards();
        let t = t2();
        let mut st = open(&mut fake, &t, &ordered(), LIMITS).await.ok().unwrap();
        st.next().await.unwrap();
        st.abandon(&mut fake);
        let log = fake.log.lock().unwrap();
        assert_eq!(log.lost, vec!["s1", "s2"]);
        assert!(log.given_back.is_empty());
    }

    #[tokio::test]
    async fn a_failure_before_the_header_is_the_whole_answer() {
        let mut fake = Fake::new(vec![("s1", broken_shard()), ("s2", rows_shard(&[2], 0))]);
        let t = t2();
        let Err(done) = open(&mut fake, &t, &ordered(), LIMITS).await else {
            panic!("a broken leg fails the read");
        };
        assert_eq!(done.answer.unwrap_err().code, err::ER_NET_READ_ERROR.0);
        let log = fake.log.lock().unwrap();
        assert_eq!(log.lost, vec!["s1"]);
        assert_eq!(log.given_back, vec!["s2"]);
    }

    #[tokio::test]
    async fn warnings_are_collected_in_shard_order() {
        let mut fake = Fake::new(vec![
            ("s1", rows_shard(&[1], 1)),
            ("s2", rows_shard(&[2], 0)),
            ("s3", rows_shard(&[3], 2)),
        ]);
        let t = targets(&[("s1", "SELECT 1"), ("s2", "SELECT 2"), ("s3", "SELECT 3")]);
        let mut st = open(&mut fake, &t, &ordered(), LIMITS).await.ok().unwrap();
        drain(&mut st).await;
        let done = st.finish(&mut fake).await;
        assert_eq!(done.answer.unwrap(), 3);
        let d = done.diagnostics.unwrap();
        let messages: Vec<&str> = d.conditions.iter().map(|c| c.message.as_str()).collect();
        assert_eq!(messages, vec!["warned on 1", "warned on 3"]);
    }

    #[tokio::test]
    async fn an_in_memory_merge_past_max_groups_is_refused() {
        let mut fake = two_shards();
        let t = t2();
        let spec = MergeSpec {
            visible_columns: 1,
            distinct: true,
            ..MergeSpec::default()
        };
        let Err(done) = open(&mut fake, &t, &spec, Limits { max_groups: 4 }).await else {
            panic!("5 rows held is past the bound of 4");
        };
        let e = done.answer.unwrap_err();
        assert_eq!((e.code, e.sqlstate.as_str()), (1038, "HY001"));
        assert!(e.message.contains("merge.max_groups"), "{}", e.message);
        assert_eq!(fake.log.lock().unwrap().given_back, vec!["s1", "s2"]);
        // Within the bound, the same merge answers.
        let mut fake = two_shards();
        let mut st = open(&mut fake, &t, &spec, Limits { max_groups: 5 })
            .await
            .ok()
            .unwrap();
        let (got, _) = drain(&mut st).await;
        assert_eq!(got, vec!["1", "4", "5", "2", "3"]);
    }
}

// ---------------------------------------------------------------------------------------------
// Two-phase commit and its recovery
// ---------------------------------------------------------------------------------------------

/// The state of a fake XA participant shared by its connections: prepared legs, decision
/// rows (with the home leg's uncommitted one), and the failures to inject.
#[derive(Default)]
struct XaState {
    /// `(gtrid, bqual)` of prepared legs.
    prepared: Vec<(String, String)>,
    /// Durable decision rows: gtrid → `commit` | `abort`.
    decisions: HashMap<String, String>,
    /// The decision row inserted by the open home transaction (durable at COMMIT).
    pending: Option<(String, String)>,
    /// `XA PREPARE` answers with this server error.
    fail_prepare: bool,
    /// `XA COMMIT` breaks the connection (once).
    lose_commit: bool,
}

/// The strings quoted in `sql`, in order (`'a','b'` → a, b).
fn quoted(sql: &str) -> Vec<String> {
    sql.split('\'')
        .enumerate()
        .filter(|(i, _)| i % 2 == 1)
        .map(|(_, s)| s.to_string())
        .collect()
}

fn ok() -> Result<QueryResult, BackendError> {
    Ok(QueryResult::Ok(OkInfo {
        affected_rows: 1,
        ..OkInfo::default()
    }))
}

fn text_rows(columns: &[&str], rows: Vec<Vec<String>>) -> Result<QueryResult, BackendError> {
    Ok(QueryResult::Rows(ResultSet {
        columns: columns.iter().map(|c| ColumnDef::text(c)).collect(),
        rows: rows
            .into_iter()
            .map(|r| r.into_iter().map(|v| Some(Bytes::from(v))).collect())
            .collect(),
        warnings: 0,
    }))
}

/// A fake shard that speaks enough XA and decision-log SQL for the protocol.
fn xa_shard(state: Arc<Mutex<XaState>>) -> Answer {
    Arc::new(move |sql: &str| {
        let mut st = state.lock().unwrap();
        let q = quoted(sql);
        if sql.starts_with("XA PREPARE") {
            if st.fail_prepare {
                return Err(BackendError::Server(ErrInfo::new(
                    (1402, "XA100"),
                    "XA_RBROLLBACK: Transaction branch was rolled back",
                )));
            }
            st.prepared.push((q[0].clone(), q[1].clone()));
            ok()
        } else if sql.starts_with("XA COMMIT") || sql.starts_with("XA ROLLBACK") {
            if sql.starts_with("XA COMMIT") && std::mem::take(&mut st.lose_commit) {
                return Err(BackendError::Lost {
                    addr: "127.0.0.1:1".into(),
                    reason: "connection reset".into(),
                });
            }
            let before = st.prepared.len();
            st.prepared.retain(|(g, b)| !(g == &q[0] && b == &q[1]));
            if st.prepared.len() == before && sql.starts_with("XA COMMIT") {
                return Err(BackendError::Server(ErrInfo::new(
                    (1397, "XAE04"),
                    "XAER_NOTA: Unknown XID",
                )));
            }
            ok()
        } else if sql == "XA RECOVER" {
            let rows = st
                .prepared
                .iter()
                .map(|(g, b)| {
                    vec![
                        super::twopc::FORMAT_ID.to_string(),
                        g.len().to_string(),
                        b.len().to_string(),
                        format!("{g}{b}"),
                    ]
                })
                .collect();
            text_rows(&["formatID", "gtrid_length", "bqual_length", "data"], rows)
        } else if sql.starts_with("INSERT INTO shardproxy.xa_decisions") {
            st.pending = Some((q[0].clone(), q[1].clone()));
            ok()
        } else if sql.contains("INSERT IGNORE INTO shardproxy.xa_decisions") {
            st.decisions.entry(q[0].clone()).or_insert(q[1].clone());
            ok()
        } else if sql.starts_with("SELECT decision") {
            let rows = st
                .decisions
                .get(&q[0])
                .map(|d| vec![vec![d.clone()]])
                .unwrap_or_default();
            text_rows(&["decision"], rows)
        } else if sql == "COMMIT" {
            if let Some((g, d)) = st.pending.take() {
                st.decisions.insert(g, d);
            }
            ok()
        } else if sql == "ROLLBACK" {
            st.pending = None;
            ok()
        } else if sql.starts_with("SELECT xid") {
            text_rows(&["xid"], Vec::new())
        } else {
            ok()
        }
    })
}

fn xa_fake() -> (Fake, Arc<Mutex<XaState>>, Arc<Mutex<XaState>>) {
    let (a, b) = (Arc::default(), Arc::default());
    let fake = Fake::new(vec![
        ("s1", xa_shard(Arc::clone(&a))),
        ("s2", xa_shard(Arc::clone(&b))),
    ]);
    (fake, a, b)
}

fn ran_on(fake: &Fake, shard: &str) -> Vec<String> {
    fake.ran()
        .into_iter()
        .filter(|(s, _)| s == shard)
        .map(|(_, q)| q.split(' ').take(2).collect::<Vec<_>>().join(" "))
        .collect()
}

#[tokio::test]
async fn two_phase_write_prepares_then_commits_home_with_its_decision_then_the_legs() {
    let (mut fake, s1, s2) = xa_fake();
    let t = targets(&[("s1", "UPDATE a SET v = 1"), ("s2", "UPDATE a SET v = 2")]);
    let done = write(&mut fake, &t, MultiKind::Write, Commit::TwoPhase).await;
    assert_eq!(done.answer.unwrap().affected_rows, 2);
    assert_eq!(
        ran_on(&fake, "s1"),
        ["BEGIN", "UPDATE a", "INSERT INTO", "COMMIT"]
    );
    assert_eq!(
        ran_on(&fake, "s2"),
        ["XA START", "UPDATE a", "XA END", "XA PREPARE", "XA COMMIT"]
    );
    assert_eq!(
        s1.lock().unwrap().decisions.len(),
        1,
        "the decision is durable"
    );
    assert!(s2.lock().unwrap().prepared.is_empty());
    assert_eq!(fake.log.lock().unwrap().given_back, ["s1", "s2"]);
}

/// The session's commit: `decide` makes the decision durable and leaves the XA legs
/// prepared (their `XA COMMIT` runs after the client's OK), `finish` commits them.
#[tokio::test]
async fn decide_commits_the_home_leg_and_leaves_the_others_prepared_for_finish() {
    use super::twopc::{decide, finish, Xid};
    let (mut fake, s1, s2) = xa_fake();
    let xid = Xid::new("s1");
    let home = fake.lease("s1", Access::Write).await.ok().unwrap();
    let mut leg = fake.lease("s2", Access::Write).await.ok().unwrap();
    leg.query(&format!("XA START {}", xid.sql("s2")))
        .await
        .unwrap();
    let mut home = Some(home);
    let mut legs = vec![super::Leg {
        shard: "s2".to_string(),
        conn: Some(leg),
    }];
    assert_eq!(decide(&xid, &mut home, &mut legs).await, Ok(()));
    assert_eq!(ran_on(&fake, "s1"), ["INSERT INTO", "COMMIT"]);
    assert_eq!(ran_on(&fake, "s2"), ["XA START", "XA END", "XA PREPARE"]);
    assert_eq!(
        s1.lock().unwrap().decisions.len(),
        1,
        "the decision is durable"
    );
    assert_eq!(
        s2.lock().unwrap().prepared.len(),
        1,
        "prepared, not committed yet"
    );
    assert!(finish(&xid, &mut legs).await.is_empty());
    assert!(s2.lock().unwrap().prepared.is_empty());
    assert!(
        legs[0].conn.is_some(),
        "the leg's connection is still usable"
    );
}

#[tokio::test]
async fn a_failed_prepare_rolls_every_leg_back_and_the_client_gets_an_error() {
    let (mut fake, s1, s2) = xa_fake();
    s2.lock().unwrap().fail_prepare = true;
    let t = targets(&[("s1", "UPDATE a SET v = 1"), ("s2", "UPDATE a SET v = 2")]);
    let done = write(&mut fake, &t, MultiKind::Write, Commit::TwoPhase).await;
    let e = done.answer.unwrap_err();
    assert_eq!(e.code, 1180, "{}", e.message);
    assert!(
        e.message.contains("XA PREPARE failed on shard s2"),
        "{}",
        e.message
    );
    let on_s1 = ran_on(&fake, "s1");
    assert_eq!(
        on_s1.last().map(String::as_str),
        Some("ROLLBACK"),
        "{on_s1:?}"
    );
    assert!(!on_s1.contains(&"COMMIT".to_string()), "{on_s1:?}");
    assert!(ran_on(&fake, "s2").contains(&"XA ROLLBACK".to_string()));
    assert!(s1.lock().unwrap().decisions.is_empty(), "no decision");
}

#[tokio::test]
async fn a_leg_lost_after_the_decision_is_committed_and_recovery_finishes_it() {
    let (mut fake, _s1, s2) = xa_fake();
    s2.lock().unwrap().lose_commit = true;
    let t = targets(&[("s1", "UPDATE a SET v = 1"), ("s2", "UPDATE a SET v = 2")]);
    let done = write(&mut fake, &t, MultiKind::Write, Commit::TwoPhase).await;
    assert!(
        done.answer.is_ok(),
        "committed once the decision is durable"
    );
    assert_eq!(s2.lock().unwrap().prepared.len(), 1, "left prepared");
    let names = vec!["s1".to_string(), "s2".to_string()];
    let round = super::recovery::recover_round(
        &mut fake,
        &names,
        std::time::Duration::from_secs(3600),
        &Default::default(),
        false,
    )
    .await;
    assert!(s2.lock().unwrap().prepared.is_empty(), "{round:?}");
    assert_eq!(round.prepared[0].action, super::recovery::Action::Committed);
    // A second proxy's round finds nothing left to do.
    let again = super::recovery::recover_round(
        &mut fake,
        &names,
        std::time::Duration::ZERO,
        &Default::default(),
        false,
    )
    .await;
    assert!(again.prepared.is_empty(), "{again:?}");
}

#[tokio::test]
async fn a_prepared_leg_without_a_decision_is_fenced_and_rolled_back_after_the_timeout() {
    let (mut fake, s1, s2) = xa_fake();
    let gtrid = "00000001-1000-7@s1".to_string();
    s2.lock()
        .unwrap()
        .prepared
        .push((gtrid.clone(), "s2".to_string()));
    let names = vec!["s1".to_string(), "s2".to_string()];
    // Younger than the timeout: left alone.
    let young = gtrid.replace("-1000-", &format!("-{}-", u64::MAX / 2));
    s2.lock()
        .unwrap()
        .prepared
        .push((young.clone(), "s2".to_string()));
    let round = super::recovery::recover_round(
        &mut fake,
        &names,
        std::time::Duration::from_secs(30),
        &Default::default(),
        false,
    )
    .await;
    assert_eq!(
        s1.lock().unwrap().decisions.get(&gtrid).map(String::as_str),
        Some("abort")
    );
    assert_eq!(
        s2.lock().unwrap().prepared,
        [(young, "s2".to_string())],
        "{round:?}"
    );
    assert!(ran_on(&fake, "s2").contains(&"XA ROLLBACK".to_string()));
}

mod join;
