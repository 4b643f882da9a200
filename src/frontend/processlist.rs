//! The process list one server would show: the proxy's client sessions, not the backend
//! connections.
//!
//! Through a proxy, `SHOW PROCESSLIST` sent to a backend lists the backend's threads (the
//! replication thread, pooled connections of every client) with the backend's thread ids, which
//! `KILL` through the proxy does not know, or worse, which name another proxy session. So the
//! proxy answers it itself, from the registry ([`crate::frontend::registry`]), with its own
//! connection ids: the ids `CONNECTION_ID()` answers and `KILL` takes.
//!
//! - `SHOW [FULL] PROCESSLIST`: the column definitions are taken from a backend's own answer to
//!   the same statement (so names, types, lengths and character set are exactly MariaDB's for
//!   this session's character set); the rows are the proxy's ([`show_rows`]).
//! - `SELECT … FROM information_schema.PROCESSLIST …` (any projection, WHERE, ORDER BY,
//!   COUNT(*) …): the proxy fills a temporary table of the same shape on a backend connection
//!   with its sessions ([`fill_statements`]), and runs the client's statement there with the
//!   table name replaced ([`rewrite_information_schema`]), so MariaDB evaluates the query.
//!
//! Who sees what: like MariaDB for a user without the PROCESS privilege, a user sees its own
//! sessions only ([`Visibility`]).

use std::fmt::Write as _;
use std::time::Instant;

use bytes::Bytes;

use crate::frontend::registry::{SessionHandle, SessionInfo};
use crate::lex::{tokenize, TokenKind};

/// Which process-list question a statement asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// `SHOW PROCESSLIST` (`full`: `SHOW FULL PROCESSLIST`, statements not cut at 100 chars).
    Show { full: bool },
    /// A statement that reads `information_schema.PROCESSLIST`.
    InformationSchema,
}

/// Which sessions a user may see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Visibility {
    /// Its own sessions only (MariaDB without PROCESS). The proxy grants no PROCESS privilege
    /// on the data port: the admin port's `SHOW SESSIONS` lists everyone.
    OwnSessions,
    /// Every session.
    All,
}

impl Visibility {
    pub fn sees(self, viewer: &str, h: &SessionHandle) -> bool {
        match self {
            Visibility::OwnSessions => h.user == viewer,
            Visibility::All => true,
        }
    }
}

/// The database the temporary table lives in on the backend (it need not exist: MariaDB
/// accepts temporary tables in any database name).
pub const TEMP_SCHEMA: &str = "shardproxy_processlist";

/// What the statement asks about the process list, if anything. Cheap for every other
/// statement: one byte scan for the word before any tokenizing.
pub fn request(sql: &str) -> Option<Request> {
    if !contains_word(sql.as_bytes(), b"processlist") {
        return None;
    }
    let tokens = tokenize(sql);
    let word = |i: usize| tokens.get(i).and_then(|t| t.word()).unwrap_or("");
    if word(0) == "SHOW" {
        let (full, at) = if word(1) == "FULL" {
            (true, 2)
        } else {
            (false, 1)
        };
        let end_ok = tokens
            .get(at + 1)
            .is_none_or(|t| t.is_punct(';') && tokens.len() == at + 2);
        return (word(at) == "PROCESSLIST" && end_ok).then_some(Request::Show { full });
    }
    information_schema_spans(sql)
        .next()
        .map(|_| Request::InformationSchema)
}

/// Byte ranges of `information_schema . PROCESSLIST` (any case, quoted or not) in `sql`.
fn information_schema_spans(sql: &str) -> impl Iterator<Item = (usize, usize)> {
    let tokens = tokenize(sql);
    let name = |i: usize| -> Option<String> {
        match &tokens.get(i)?.kind {
            TokenKind::Word(w) => Some(w.to_ascii_uppercase()),
            TokenKind::Quoted(q) if sql.as_bytes()[tokens[i].start] == b'`' => {
                Some(q.to_ascii_uppercase())
            }
            _ => None,
        }
    };
    let mut spans = Vec::new();
    for i in 0..tokens.len() {
        if name(i).as_deref() == Some("INFORMATION_SCHEMA")
            && tokens.get(i + 1).is_some_and(|t| t.is_punct('.'))
            && name(i + 2).as_deref() == Some("PROCESSLIST")
        {
            spans.push((tokens[i].start, tokens[i + 2].end));
        }
    }
    spans.into_iter()
}

/// The client's statement reading the proxy's temporary table in place of
/// `information_schema.PROCESSLIST` (same table name, so column metadata names it so).
pub fn rewrite_information_schema(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 32);
    let mut last = 0;
    for (start, end) in information_schema_spans(sql) {
        out.push_str(&sql[last..start]);
        let _ = write!(out, "`{TEMP_SCHEMA}`.`PROCESSLIST`");
        last = end;
    }
    out.push_str(&sql[last..]);
    out
}

/// One session as a process-list row, the session asking included.
#[derive(Debug, Clone, PartialEq)]
pub struct Process {
    pub id: u32,
    pub user: String,
    pub host: String,
    pub db: Option<String>,
    /// `Query` while a statement runs, `Sleep` between statements.
    pub command: &'static str,
    /// Seconds in the current command (or idle).
    pub time: u64,
    /// Milliseconds in the current command (information_schema's TIME_MS).
    pub time_ms: u128,
    pub state: &'static str,
    pub info: Option<String>,
}

/// The sessions `viewer` may see, by id. The viewer's own session (`asking`) is shown running
/// `statement`, as MariaDB shows the thread that runs SHOW PROCESSLIST.
pub fn processes(
    sessions: &[std::sync::Arc<SessionHandle>],
    viewer: &str,
    visibility: Visibility,
    asking: u32,
    statement: &str,
) -> Vec<Process> {
    let now = Instant::now();
    sessions
        .iter()
        .filter(|h| visibility.sees(viewer, h))
        .map(|h| {
            let i: SessionInfo = h.snapshot();
            let elapsed = i.since.map(|s| now.duration_since(s)).unwrap_or_default();
            let (command, state, info, elapsed) = if h.id == asking {
                (
                    "Query",
                    "starting",
                    Some(statement.to_string()),
                    Default::default(),
                )
            } else if i.state == "idle" {
                ("Sleep", "", None, elapsed)
            } else {
                let text = i.statement.as_deref().map(str::to_string);
                ("Query", "executing", text, elapsed)
            };
            Process {
                id: h.id,
                user: h.user.clone(),
                host: h.client.clone(),
                db: i.db.clone(),
                command,
                time: elapsed.as_secs(),
                time_ms: elapsed.as_millis(),
                state,
                info,
            }
        })
        .collect()
}

fn b(s: &str) -> Option<Bytes> {
    Some(Bytes::copy_from_slice(s.as_bytes()))
}

/// The rows of `SHOW [FULL] PROCESSLIST`: Id, User, Host, db, Command, Time, State, Info,
/// Progress. Without FULL, Info is cut at 100 characters, as MariaDB does.
pub fn show_rows(processes: &[Process], full: bool) -> Vec<Vec<Option<Bytes>>> {
    processes
        .iter()
        .map(|p| {
            let info = p.info.as_deref().map(|s| {
                if full {
                    s.to_string()
                } else {
                    s.chars().take(100).collect()
                }
            });
            vec![
                b(&p.id.to_string()),
                b(&p.user),
                b(&p.host),
                p.db.as_deref().and_then(b),
                b(p.command),
                b(&p.time.to_string()),
                b(p.state),
                info.as_deref().and_then(b),
                b("0.000"),
            ]
        })
        .collect()
}

/// A string literal that survives any sql_mode and character set: hex bytes with a utf8mb4
/// introducer (NULL for `None`).
fn literal(s: Option<&str>) -> String {
    match s {
        None => "NULL".to_string(),
        Some("") => "''".to_string(),
        Some(s) => {
            let mut out = String::with_capacity(s.len() * 2 + 12);
            out.push_str("_utf8mb4 X'");
            for byte in s.as_bytes() {
                let _ = write!(out, "{byte:02X}");
            }
            out.push('\'');
            out
        }
    }
}

/// The statements that create and fill the temporary table on a backend connection: the shape
/// of MariaDB's own `information_schema.PROCESSLIST`, the proxy's sessions as its rows.
pub fn fill_statements(processes: &[Process]) -> Vec<String> {
    let mut out = vec![
        format!("DROP TEMPORARY TABLE IF EXISTS `{TEMP_SCHEMA}`.`PROCESSLIST`"),
        format!(
            "CREATE TEMPORARY TABLE `{TEMP_SCHEMA}`.`PROCESSLIST` ENGINE=Aria \
             AS SELECT * FROM information_schema.PROCESSLIST LIMIT 0"
        ),
    ];
    if processes.is_empty() {
        return out;
    }
    let mut insert = format!(
        "INSERT INTO `{TEMP_SCHEMA}`.`PROCESSLIST` (ID, USER, HOST, DB, COMMAND, TIME, STATE, \
         INFO, TIME_MS, STAGE, MAX_STAGE, PROGRESS, MEMORY_USED, MAX_MEMORY_USED, EXAMINED_ROWS, \
         QUERY_ID, INFO_BINARY, TID) VALUES "
    );
    for (n, p) in processes.iter().enumerate() {
        if n > 0 {
            insert.push(',');
        }
        let info = literal(p.info.as_deref());
        let _ = write!(
            insert,
            "({}, {}, {}, {}, {}, {}, {}, {info}, {}.{:03}, 0, 0, 0, 0, 0, 0, 0, {info}, 0)",
            p.id,
            literal(Some(&p.user)),
            literal(Some(&p.host)),
            literal(p.db.as_deref()),
            literal(Some(p.command)),
            p.time,
            literal(Some(p.state)),
            p.time_ms / 1000,
            p.time_ms % 1000,
        );
    }
    out.push(insert);
    out
}

/// The statement that removes the temporary table once the answer is relayed.
pub fn drop_statement() -> String {
    format!("DROP TEMPORARY TABLE IF EXISTS `{TEMP_SCHEMA}`.`PROCESSLIST`")
}

/// Whether `hay` contains `needle` (lowercase ASCII), ignoring ASCII case.
fn contains_word(hay: &[u8], needle: &[u8]) -> bool {
    hay.len() >= needle.len()
        && hay
            .windows(needle.len())
            .any(|w| (w[0] | 0x20) == needle[0] && w.eq_ignore_ascii_case(needle))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests() {
        assert_eq!(
            request("SHOW PROCESSLIST"),
            Some(Request::Show { full: false })
        );
        assert_eq!(
            request("show full processlist;"),
            Some(Request::Show { full: true })
        );
        assert_eq!(
            request("SELECT ID FROM information_schema.PROCESSLIST WHERE ID = 3"),
            Some(Request::InformationSchema)
        );
        assert_eq!(
            request("select count(*) from `INFORMATION_SCHEMA`.`processlist`"),
            Some(Request::InformationSchema)
        );
        assert_eq!(request("SELECT 1"), None);
        assert_eq!(request("SELECT 'information_schema.processlist'"), None);
        assert_eq!(request("SELECT * FROM processlist_log"), None);
        assert_eq!(request("SHOW PROCESSLIST_X"), None);
    }

    #[test]
    fn rewrite_keeps_the_rest() {
        assert_eq!(
            rewrite_information_schema(
                "SELECT ID FROM information_schema.PROCESSLIST p WHERE INFO LIKE '%information_schema.PROCESSLIST%'"
            ),
            "SELECT ID FROM `shardproxy_processlist`.`PROCESSLIST` p WHERE INFO LIKE '%information_schema.PROCESSLIST%'"
        );
    }

    #[test]
    fn rows_and_literals() {
        let p = Process {
            id: 7,
            user: "app".into(),
            host: "127.0.0.1:5000".into(),
            db: None,
            command: "Query",
            time: 3,
            time_ms: 3042,
            state: "executing",
            info: Some("x".repeat(150)),
        };
        let short = show_rows(std::slice::from_ref(&p), false);
        assert_eq!(short[0][7].as_ref().unwrap().len(), 100);
        assert_eq!(short[0][3], None);
        let long = show_rows(std::slice::from_ref(&p), true);
        assert_eq!(long[0][7].as_ref().unwrap().len(), 150);
        assert_eq!(literal(Some("a'b")), "_utf8mb4 X'612762'");
        let fill = fill_statements(&[p]);
        assert!(fill[2].contains("(7, _utf8mb4 X'617070'"), "{}", fill[2]);
        assert!(fill[2].contains(", 3.042, "), "{}", fill[2]);
    }
}
