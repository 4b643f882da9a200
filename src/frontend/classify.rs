//! What kind of statement a client sent, decided from its leading tokens, and the facts the
//! session needs before routing it: does it change movable session state (SET, USE), does it
//! tie the session to its backend connection (user variables, locks, temporary tables …), does
//! its answer depend on the previous statement's connection (SHOW WARNINGS, ROW_COUNT() …).
//!
//! Being wrong towards pinning only costs pooling efficiency; being wrong the other way would
//! leak or lose state, so every doubtful construct pins.

use crate::lex::{tokenize, Token, TokenKind};

/// The statement's kind, as far as the session cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// `SET …` of movable session state: assignments to replay (`name = value` text) keyed by
    /// normalised name; `names` for SET NAMES / CHARACTER SET.
    SetSession {
        vars: Vec<(String, String)>,
        names: Option<String>,
    },
    /// `USE db`.
    Use(String),
    Begin,
    Commit,
    Rollback,
    /// `KILL [QUERY|CONNECTION] n`.
    Kill {
        query_only: bool,
        id: u64,
    },
    /// `PREVIEW <statement>`: the plan, answered by the proxy.
    Preview(String),
    /// Reads without side effects (SELECT, SHOW, DESCRIBE, EXPLAIN …).
    Read,
    /// Anything else (DML, DDL, …).
    Other,
}

/// The classification of one statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classified {
    pub kind: Kind,
    /// Why this statement ties the session to its backend connection for good.
    pub pin: Option<&'static str>,
    /// The answer depends on the previous statement on the same connection.
    pub needs_previous: bool,
    /// Reads `LAST_INSERT_ID()`.
    pub uses_last_insert_id: bool,
    /// Why a replica must not answer this statement even outside a transaction (it locks
    /// rows, has side effects, or is not a plain SELECT); `None`: a replica may.
    pub replica_unsafe: Option<&'static str>,
}

impl Classified {
    /// A statement of this kind with no other fact: what the session uses for commands it
    /// classifies itself (COM_INIT_DB, PREPARE, EXECUTE).
    pub fn of_kind(kind: Kind) -> Classified {
        Classified {
            kind,
            pin: None,
            needs_previous: false,
            uses_last_insert_id: false,
            replica_unsafe: Some("is not a text read"),
        }
    }
}

fn word_at(t: &[Token], i: usize) -> &str {
    t.get(i).and_then(|t| t.word()).unwrap_or("")
}

/// Classifies one statement.
pub fn classify(sql: &str) -> Classified {
    let tokens = tokenize(sql);
    let mut c = Classified {
        kind: Kind::Other,
        pin: None,
        needs_previous: false,
        uses_last_insert_id: false,
        replica_unsafe: None,
    };
    scan_flags(&tokens, &mut c);
    let first = word_at(&tokens, 0);
    if !matches!(first, "SELECT" | "WITH" | "VALUES" | "TABLE")
        && !tokens.first().is_some_and(|t| t.is_punct('('))
    {
        c.replica_unsafe = c.replica_unsafe.or(Some("is not a plain SELECT"));
    }
    c.kind = match first {
        "SELECT" | "SHOW" | "DESCRIBE" | "DESC" | "EXPLAIN" | "WITH" | "VALUES" | "TABLE"
        | "HELP" | "DO" => Kind::Read,
        "BEGIN" => Kind::Begin,
        "START" if word_at(&tokens, 1) == "TRANSACTION" => Kind::Begin,
        "COMMIT" => Kind::Commit,
        "ROLLBACK" if word_at(&tokens, 1) != "TO" => Kind::Rollback,
        "USE" => match tokens.get(1).map(|t| &t.kind) {
            Some(TokenKind::Word(_)) => Kind::Use(sql[tokens[1].start..tokens[1].end].to_string()),
            Some(TokenKind::Quoted(q)) => Kind::Use(q.clone()),
            _ => Kind::Other,
        },
        "KILL" => parse_kill(&tokens, sql).unwrap_or(Kind::Other),
        "PREVIEW" => Kind::Preview(
            tokens
                .get(1)
                .map(|t| sql[t.start..].trim().trim_end_matches(';').to_string())
                .unwrap_or_default(),
        ),
        "SET" => match parse_set(&tokens, sql) {
            SetParse::Session { vars, names } => Kind::SetSession { vars, names },
            SetParse::Pin(why) => {
                c.pin = c.pin.or(Some(why));
                Kind::Other
            }
            SetParse::NoState => Kind::Other,
        },
        _ => Kind::Other,
    };
    if first == "SHOW" {
        let w1 = word_at(&tokens, 1);
        let counted = w1 == "COUNT"
            && tokens
                .iter()
                .any(|t| t.is_word("WARNINGS") || t.is_word("ERRORS"));
        if matches!(w1, "WARNINGS" | "ERRORS") || counted {
            c.needs_previous = true;
        }
    }
    c
}

/// Sets `pin`, `needs_previous` and `uses_last_insert_id` from tokens anywhere in the text.
fn scan_flags(tokens: &[Token], c: &mut Classified) {
    for (i, t) in tokens.iter().enumerate() {
        match &t.kind {
            // Several statements in one text: only the first is classified, so whatever the
            // others change stays where it happened.
            TokenKind::Punct(';') if i + 1 < tokens.len() => {
                c.pin = c.pin.or(Some("multi-statement text"))
            }
            TokenKind::UserVar => c.pin = c.pin.or(Some("user variable")),
            TokenKind::SysVar(v) if v == "warning_count" || v == "error_count" => {
                c.needs_previous = true
            }
            TokenKind::Word(w) => {
                let call = tokens.get(i + 1).is_some_and(|n| n.is_punct('('));
                if let Some(why) = replica_unsafe_word(tokens, i, w, call) {
                    c.replica_unsafe = c.replica_unsafe.or(Some(why));
                }
                match w.as_str() {
                    "GET_LOCK" | "RELEASE_LOCK" | "RELEASE_ALL_LOCKS" | "IS_USED_LOCK" if call => {
                        c.pin = c.pin.or(Some("named lock (GET_LOCK)"))
                    }
                    "LOCK"
                        if word_at(tokens, i + 1) == "TABLES"
                            || word_at(tokens, i + 1) == "TABLE" =>
                    {
                        c.pin = c.pin.or(Some("LOCK TABLES"))
                    }
                    "TEMPORARY" => c.pin = c.pin.or(Some("temporary table")),
                    "SQL_CALC_FOUND_ROWS" => c.pin = c.pin.or(Some("SQL_CALC_FOUND_ROWS")),
                    "PREPARE" | "DEALLOCATE" if i == 0 => c.pin = c.pin.or(Some("SQL PREPARE")),
                    "EXECUTE" if i == 0 => c.pin = c.pin.or(Some("SQL PREPARE")),
                    "HANDLER" if i == 0 => c.pin = c.pin.or(Some("HANDLER")),
                    "XA" if i == 0 => c.pin = c.pin.or(Some("XA transaction")),
                    "DECLARE" if i == 0 => c.pin = c.pin.or(Some("cursor")),
                    "FOUND_ROWS" | "ROW_COUNT" if call => c.needs_previous = true,
                    "LAST_INSERT_ID" if call => {
                        // LAST_INSERT_ID(expr) sets the value: the session keeps that
                        // connection; LAST_INSERT_ID() reads it: restored where needed.
                        if tokens.get(i + 2).is_some_and(|n| n.is_punct(')')) {
                            c.uses_last_insert_id = true;
                        } else {
                            c.pin = c.pin.or(Some("LAST_INSERT_ID(expr)"));
                        }
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }
}

/// Why the word at `i` keeps a read off replicas: row locks, writes to files, sequences,
/// waits on replication positions. (Functions that pin the session, GET_LOCK and
/// LAST_INSERT_ID(expr), keep it on its connection anyway.)
fn replica_unsafe_word(tokens: &[Token], i: usize, w: &str, call: bool) -> Option<&'static str> {
    match w {
        "FOR" if word_at(tokens, i + 1) == "UPDATE" => Some("locks rows (FOR UPDATE)"),
        "LOCK" if word_at(tokens, i + 1) == "IN" => Some("locks rows (LOCK IN SHARE MODE)"),
        "INTO" => Some("writes its result (SELECT … INTO)"),
        "NEXTVAL" | "LASTVAL" | "SETVAL" if call => Some("uses a sequence"),
        "NEXT" | "PREVIOUS"
            if word_at(tokens, i + 1) == "VALUE" && word_at(tokens, i + 2) == "FOR" =>
        {
            Some("uses a sequence")
        }
        "MASTER_GTID_WAIT" | "MASTER_POS_WAIT" if call => Some("waits for a replication position"),
        "GET_LOCK" | "RELEASE_LOCK" | "RELEASE_ALL_LOCKS" | "IS_USED_LOCK" | "IS_FREE_LOCK"
            if call =>
        {
            Some("uses a named lock")
        }
        "LAST_INSERT_ID" if call => Some("uses LAST_INSERT_ID()"),
        _ => None,
    }
}

fn parse_kill(tokens: &[Token], sql: &str) -> Option<Kind> {
    let mut i = 1;
    let mut query_only = false;
    if word_at(tokens, i) == "HARD" || word_at(tokens, i) == "SOFT" {
        i += 1;
    }
    match word_at(tokens, i) {
        "QUERY" => {
            query_only = true;
            i += 1;
        }
        "CONNECTION" => i += 1,
        _ => {}
    }
    let t = tokens.get(i)?;
    if t.kind != TokenKind::Number || tokens.len() > i + 2 {
        return None;
    }
    let id = sql[t.start..t.end].parse().ok()?;
    Some(Kind::Kill { query_only, id })
}

enum SetParse {
    Session {
        vars: Vec<(String, String)>,
        names: Option<String>,
    },
    /// The statement sets something that cannot be moved between connections.
    Pin(&'static str),
    /// Changes no session state the proxy must carry (SET GLOBAL, SET STATEMENT … FOR,
    /// SET PASSWORD).
    NoState,
}

/// Splits the assignments of a SET statement at top-level commas.
fn parse_set(tokens: &[Token], sql: &str) -> SetParse {
    let body = &tokens[1..];
    match word_at(body, 0) {
        "STATEMENT" | "PASSWORD" | "GLOBAL" => return SetParse::NoState,
        "ROLE" | "DEFAULT" => return SetParse::Pin("SET ROLE"),
        "TRANSACTION" => return SetParse::Pin("SET TRANSACTION (next transaction only)"),
        _ => {}
    }
    let mut vars = Vec::new();
    let mut names = None;
    let mut depth = 0i32;
    let mut start = 0usize;
    let mut parts: Vec<&[Token]> = Vec::new();
    // The end of the first statement: its `;` at depth 0 (one inside parentheses, where a
    // comma may follow, must not end it: found by fuzzing).
    let mut end = body.len();
    for (i, t) in body.iter().enumerate() {
        if t.is_punct('(') {
            depth += 1;
        } else if t.is_punct(')') {
            depth -= 1;
        } else if t.is_punct(',') && depth == 0 {
            parts.push(&body[start..i]);
            start = i + 1;
        } else if t.is_punct(';') && depth == 0 {
            end = i;
            break;
        }
    }
    parts.push(&body[start..end]);
    for p in parts {
        if p.is_empty() {
            return SetParse::NoState;
        }
        let text = sql[p[0].start..p[p.len() - 1].end].trim();
        let mut p = p;
        let mut scope_session = false;
        match p[0].word() {
            Some("SESSION") | Some("LOCAL") => {
                scope_session = true;
                p = &p[1..];
            }
            Some("GLOBAL") => return SetParse::NoState,
            _ => {}
        }
        let Some(first) = p.first() else {
            return SetParse::NoState;
        };
        match (&first.kind, first.word()) {
            (_, Some("NAMES")) | (_, Some("CHARSET")) => {
                names = Some(
                    sql[p.get(1).map_or(first.end, |t| t.start)..p[p.len() - 1].end].to_string(),
                );
                continue;
            }
            (_, Some("CHARACTER")) if word_at(p, 1) == "SET" => {
                // SET CHARACTER SET x is not SET NAMES x; carry it as its own assignment text.
                vars.push(("character set".to_string(), text.to_string()));
                continue;
            }
            (_, Some("TRANSACTION")) if scope_session => {
                match session_transaction(p) {
                    Some(a) => vars.extend(a),
                    None => return SetParse::Pin("SET SESSION TRANSACTION"),
                }
                continue;
            }
            (TokenKind::UserVar, _) => return SetParse::Pin("user variable"),
            (TokenKind::GlobalVar(_), _) => return SetParse::NoState,
            _ => {}
        }
        let name = match &first.kind {
            TokenKind::Word(_) => sql[first.start..first.end].to_ascii_lowercase(),
            TokenKind::SysVar(v) => v.clone(),
            TokenKind::Quoted(q) => q.to_ascii_lowercase(),
            _ => return SetParse::Pin("unrecognised SET"),
        };
        let Some(op) = p.get(1) else {
            return SetParse::Pin("unrecognised SET");
        };
        let value_start = if op.is_punct('=') {
            2
        } else if op.is_punct(':') && p.get(2).is_some_and(|t| t.is_punct('=')) {
            3
        } else {
            return SetParse::Pin("unrecognised SET");
        };
        let Some(v0) = p.get(value_start) else {
            return SetParse::Pin("unrecognised SET");
        };
        let value = &sql[v0.start..p[p.len() - 1].end];
        vars.push((name.clone(), format!("{name} = {value}")));
    }
    SetParse::Session { vars, names }
}

/// `SESSION TRANSACTION ISOLATION LEVEL …, READ ONLY|WRITE` as variable assignments.
fn session_transaction(p: &[Token]) -> Option<Vec<(String, String)>> {
    let words: Vec<&str> = p.iter().skip(1).filter_map(|t| t.word()).collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < words.len() {
        match (
            words[i],
            words.get(i + 1).copied(),
            words.get(i + 2).copied(),
            words.get(i + 3).copied(),
        ) {
            ("ISOLATION", Some("LEVEL"), Some(a), b) => {
                let level = match (a, b) {
                    ("READ", Some("UNCOMMITTED")) => "READ-UNCOMMITTED",
                    ("READ", Some("COMMITTED")) => "READ-COMMITTED",
                    ("REPEATABLE", Some("READ")) => "REPEATABLE-READ",
                    ("SERIALIZABLE", _) => "SERIALIZABLE",
                    _ => return None,
                };
                out.push((
                    "tx_isolation".to_string(),
                    format!("tx_isolation = '{level}'"),
                ));
                i += if level == "SERIALIZABLE" { 3 } else { 4 };
            }
            ("READ", Some("ONLY"), ..) => {
                out.push(("tx_read_only".to_string(), "tx_read_only = 1".to_string()));
                i += 2;
            }
            ("READ", Some("WRITE"), ..) => {
                out.push(("tx_read_only".to_string(), "tx_read_only = 0".to_string()));
                i += 2;
            }
            _ => return None,
        }
    }
    Some(out)
}

/// Whether a statement reads or writes no table (so any connection can answer it).
pub fn names_no_table(sql: &str) -> bool {
    let tokens = crate::lex::tokenize(sql);
    let first = tokens.first().and_then(|t| t.word()).unwrap_or("");
    match first {
        "SET" | "DO" | "COMMIT" | "ROLLBACK" | "BEGIN" | "START" | "SAVEPOINT" | "RELEASE" => true,
        "SHOW" => matches!(
            tokens.get(1).and_then(|t| t.word()),
            Some("WARNINGS" | "ERRORS" | "COUNT" | "VARIABLES" | "SESSION" | "STATUS")
        ),
        "SELECT" => !tokens.iter().any(|t| t.is_word("FROM")),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set_vars(sql: &str) -> Vec<(String, String)> {
        match classify(sql).kind {
            Kind::SetSession { vars, .. } => vars,
            k => panic!("{sql}: {k:?}"),
        }
    }

    #[test]
    fn session_assignments() {
        assert_eq!(
            set_vars("SET sql_mode = 'ANSI', @@session.time_zone='+00:00'"),
            vec![
                ("sql_mode".into(), "sql_mode = 'ANSI'".into()),
                ("time_zone".into(), "time_zone = '+00:00'".into())
            ]
        );
        assert_eq!(
            set_vars("SET SESSION autocommit=0"),
            vec![("autocommit".into(), "autocommit = 0".into())]
        );
        assert_eq!(
            set_vars("set session transaction isolation level read committed"),
            vec![(
                "tx_isolation".into(),
                "tx_isolation = 'READ-COMMITTED'".into()
            )]
        );
        assert_eq!(
            set_vars("SET x = CONCAT('a', ',', 'b')"),
            vec![("x".into(), "x = CONCAT('a', ',', 'b')".into())]
        );
    }

    #[test]
    fn names() {
        match classify("SET NAMES utf8mb4 COLLATE utf8mb4_bin").kind {
            Kind::SetSession { names, .. } => {
                assert_eq!(names.as_deref(), Some("utf8mb4 COLLATE utf8mb4_bin"))
            }
            k => panic!("{k:?}"),
        }
    }

    #[test]
    fn pins() {
        for sql in [
            "SET @a = 1",
            "SELECT @a := 1",
            "SELECT GET_LOCK('x', 1)",
            "LOCK TABLES t WRITE",
            "CREATE TEMPORARY TABLE t (a int)",
            "SELECT SQL_CALC_FOUND_ROWS * FROM t LIMIT 1",
            "PREPARE s FROM 'SELECT 1'",
            "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE",
            "XA START 'x'",
            "SELECT LAST_INSERT_ID(5)",
            "SELECT 1; SET sql_mode=''",
        ] {
            assert!(classify(sql).pin.is_some(), "{sql}");
        }
        for sql in [
            "SELECT 1",
            "SELECT 'GET_LOCK(' FROM t",
            "SET sql_mode=''",
            "SELECT a FROM lock_log",
            "SELECT 1;",
        ] {
            assert!(classify(sql).pin.is_none(), "{sql}");
        }
    }

    #[test]
    fn reads_a_replica_must_not_answer() {
        for sql in [
            "SELECT * FROM t WHERE id = 1 FOR UPDATE",
            "select * from t lock in share mode",
            "SELECT a INTO OUTFILE '/tmp/x' FROM t",
            "SELECT NEXTVAL(s)",
            "SELECT NEXT VALUE FOR s",
            "SELECT GET_LOCK('a', 1)",
            "SELECT IS_FREE_LOCK('a')",
            "SELECT LAST_INSERT_ID()",
            "SELECT MASTER_GTID_WAIT('0-1-1', 1)",
            "SHOW TABLES",
            "DESCRIBE t",
            "DO 1",
            "UPDATE t SET a = 1",
            "EXPLAIN SELECT 1",
        ] {
            assert!(classify(sql).replica_unsafe.is_some(), "{sql}");
        }
        for sql in [
            "SELECT * FROM t WHERE id = 1",
            "WITH x AS (SELECT 1) SELECT * FROM x",
            "(SELECT a FROM t) UNION (SELECT a FROM u)",
            "SELECT 'FOR UPDATE' FROM t",
            "SELECT a FROM t ORDER BY a LIMIT 5",
        ] {
            assert_eq!(classify(sql).replica_unsafe, None, "{sql}");
        }
    }

    #[test]
    fn previous_statement_dependencies() {
        for sql in [
            "SHOW WARNINGS",
            "show errors limit 1",
            "SHOW COUNT(*) WARNINGS",
            "SELECT @@warning_count",
            "SELECT ROW_COUNT()",
            "SELECT FOUND_ROWS()",
        ] {
            assert!(classify(sql).needs_previous, "{sql}");
        }
        assert!(classify("SELECT LAST_INSERT_ID()").uses_last_insert_id);
        assert!(!classify("SELECT 1").needs_previous);
    }

    #[test]
    fn kinds() {
        assert_eq!(classify("begin").kind, Kind::Begin);
        assert_eq!(
            classify("START TRANSACTION WITH CONSISTENT SNAPSHOT").kind,
            Kind::Begin
        );
        assert_eq!(classify("COMMIT").kind, Kind::Commit);
        assert_eq!(classify("ROLLBACK TO SAVEPOINT a").kind, Kind::Other);
        assert_eq!(classify("use `fund`").kind, Kind::Use("fund".into()));
        assert_eq!(
            classify("KILL QUERY 12").kind,
            Kind::Kill {
                query_only: true,
                id: 12
            }
        );
        assert_eq!(
            classify("kill 7").kind,
            Kind::Kill {
                query_only: false,
                id: 7
            }
        );
        assert_eq!(
            classify("PREVIEW SELECT 1;").kind,
            Kind::Preview("SELECT 1".into())
        );
        assert_eq!(classify("SET GLOBAL x=1").kind, Kind::Other);
    }
}
