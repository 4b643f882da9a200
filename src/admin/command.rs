//! The admin statement parser: text from the client → [`Command`].
//!
//! Keywords are case-insensitive, any run of whitespace separates words, and trailing `;` and
//! whitespace are ignored. Besides the admin statements it accepts what the mysql/mariadb CLI
//! and client libraries send on their own (`select @@version_comment limit 1`,
//! `SELECT DATABASE()`, `SET NAMES utf8mb4`, `USE x`, `SHOW WARNINGS`) so that they connect.

use super::ops::AdminError;

/// The admin statements: syntax and what it does. `HELP` prints this; a wrong statement gets
/// an error listing the syntaxes.
pub const STATEMENTS: &[(&str, &str)] = &[
    (
        "SHOW SHARDS",
        "shards: name, primary, replicas, weight, status",
    ),
    (
        "SHOW BACKENDS",
        "backend servers: role, health, lag, pool in use/idle, queries, errors",
    ),
    (
        "SHOW RING",
        "each shard's virtual nodes and share of the key space",
    ),
    (
        "SHOW SESSIONS",
        "client sessions: client, user, db, state, pinned, statement, time",
    ),
    (
        "SHOW PROXY STATUS",
        "uptime, connections, QPS, errors, plan cache",
    ),
    ("SHOW TABLE RULES", "how each table is placed"),
    (
        "SHOW RESHARD STATUS",
        "progress of a resharding: phase, rows copied per table and shard pair, rows/s, catch-up lag, cutover pause",
    ),
    (
        "RESHARD START '<config file>'",
        "move the rows online to the placement of that config (shards added/removed, weights, vnodes)",
    ),
    (
        "RESHARD CANCEL",
        "stop a resharding before its cutover: triggers and copies removed, the old placement serves",
    ),
    (
        "RESHARD CLEANUP",
        "after the cutover: delete the moved rows from their old shards",
    ),
    (
        "RESHARD PLAN '<config file>'",
        "what moving to that config would move: changes, ring shares, rows per table, steps",
    ),
    (
        "PREVIEW <statement>",
        "the plan of a statement without running it",
    ),
    ("WHERE IS <table> <key>", "the shard that holds that key"),
    (
        "RELOAD CONFIG",
        "re-read, validate and apply the config file; prints the changes",
    ),
    ("KILL <session id>", "end a client session"),
    (
        "KILL QUERY <session id>",
        "stop the statement a session is running",
    ),
    (
        "SWITCHOVER <shard> [TO <replica>]",
        "planned switch of the shard's primary: statements held, no client error; reports the write pause",
    ),
    (
        "FAILOVER <shard> [FORCE]",
        "promote a replica now; FORCE even if none holds every acknowledged write (may lose them: logged)",
    ),
    ("SHOW FAILOVERS", "past switches with their timings and reasons"),
    ("HELP", "this list (in the mysql CLI: help admin)"),
    (
        "SHOW TRANSACTIONS",
        "open multi-shard transactions and prepared XA legs awaiting recovery",
    ),
];

/// One parsed admin statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    ShowShards,
    ShowBackends,
    ShowRing,
    ShowSessions,
    ShowProxyStatus,
    ShowTableRules,
    ShowReshardStatus,
    Preview(String),
    WhereIs {
        table: String,
        key: String,
    },
    ReloadConfig,
    Kill {
        id: u64,
        query_only: bool,
    },
    Switchover(String),
    /// `RESHARD PLAN '<file>'`: the path of the config to move to.
    ReshardPlan(String),
    /// `RESHARD START '<file>'`: the path of the config to move to.
    ReshardStart(String),
    /// `RESHARD CANCEL`.
    ReshardCancel,
    /// `RESHARD CLEANUP`.
    ReshardCleanup,
    /// `SWITCHOVER <shard> TO <replica>`.
    SwitchoverTo {
        shard: String,
        target: String,
    },
    /// `FAILOVER <shard> [FORCE]`.
    Failover {
        shard: String,
        force: bool,
    },
    /// `SHOW FAILOVERS`.
    ShowFailovers,
    Help,
    /// Client housekeeping: `SELECT @@var, DATABASE(), …` answered with one row.
    Select(Vec<SelectItem>),
    /// `SET …`: accepted and ignored.
    Set,
    /// `USE db`: accepted and ignored.
    Use,
    /// `SHOW WARNINGS`: always empty.
    ShowWarnings,
    /// `SHOW TRANSACTIONS`: open distributed transactions and prepared XA legs.
    ShowTransactions,
}

/// One expression of a housekeeping `SELECT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectItem {
    /// The column name: the alias, or the expression as written.
    pub label: String,
    pub expr: SelectExpr,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SelectExpr {
    /// `@@name`, `@@session.name`, `@@global.name`: name in lower case without the scope.
    Variable(String),
    Database,
    User,
    ConnectionId,
    Version,
    /// A number or string literal, unquoted.
    Literal(String),
}

/// The error for a statement the admin port does not know: 1064, listing what exists.
pub fn unknown_statement(sql: &str) -> AdminError {
    let shown: String = if sql.chars().count() > 80 {
        let s: String = sql.chars().take(80).collect();
        format!("{s}…")
    } else {
        sql.to_string()
    };
    let list: Vec<&str> = STATEMENTS.iter().map(|(syntax, _)| *syntax).collect();
    AdminError::parse(format!(
        "Unknown admin statement '{shown}'. The admin port understands: {}",
        list.join(", ")
    ))
}

fn usage(syntax: &str) -> AdminError {
    AdminError::parse(format!("Syntax: {syntax}"))
}

/// Removes leading whitespace and comments (`/* … */`, `-- …`, `# …`), and trailing `;` and
/// whitespace.
pub fn strip(sql: &str) -> &str {
    let mut s = sql.trim_start();
    loop {
        if let Some(rest) = s.strip_prefix("/*") {
            match rest.find("*/") {
                Some(end) => s = rest[end + 2..].trim_start(),
                None => break,
            }
        } else if s.starts_with("-- ") || s.starts_with('#') {
            match s.find('\n') {
                Some(end) => s = s[end + 1..].trim_start(),
                None => s = "",
            }
        } else {
            break;
        }
    }
    s.trim_end_matches(|c: char| c == ';' || c.is_whitespace())
}

/// Parses one admin statement.
pub fn parse(sql: &str) -> Result<Command, AdminError> {
    let text = strip(sql);
    if text.is_empty() {
        return Err(AdminError::new(1065, "Query was empty"));
    }
    let words: Vec<&str> = text.split_whitespace().collect();
    let kw = |i: usize, k: &str| words.get(i).is_some_and(|w| w.eq_ignore_ascii_case(k));
    let first = words[0].to_ascii_uppercase();
    match first.as_str() {
        "SHOW" => {
            let rest: Vec<String> = words[1..].iter().map(|w| w.to_ascii_uppercase()).collect();
            let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
            match rest.as_slice() {
                ["SHARDS"] => Ok(Command::ShowShards),
                ["BACKENDS"] => Ok(Command::ShowBackends),
                ["FAILOVERS"] => Ok(Command::ShowFailovers),
                ["RING"] => Ok(Command::ShowRing),
                ["SESSIONS"] | ["PROCESSLIST"] | ["FULL", "PROCESSLIST"] => {
                    Ok(Command::ShowSessions)
                }
                ["PROXY", "STATUS"] => Ok(Command::ShowProxyStatus),
                ["TABLE", "RULES"] => Ok(Command::ShowTableRules),
                ["RESHARD", "STATUS"] => Ok(Command::ShowReshardStatus),
                ["WARNINGS"] => Ok(Command::ShowWarnings),
                ["TRANSACTIONS"] => Ok(Command::ShowTransactions),
                _ => Err(unknown_statement(text)),
            }
        }
        "PREVIEW" => {
            let rest = after_words(text, 1).trim();
            if rest.is_empty() {
                return Err(usage("PREVIEW <statement>"));
            }
            Ok(Command::Preview(rest.to_string()))
        }
        "WHERE" if kw(1, "IS") => parse_where_is(after_words(text, 2)),
        "RELOAD" if words.len() == 2 && kw(1, "CONFIG") => Ok(Command::ReloadConfig),
        "RELOAD" => Err(usage("RELOAD CONFIG")),
        "KILL" => {
            let (query_only, idx, syntax) = if kw(1, "QUERY") {
                (true, 2, "KILL QUERY <session id>")
            } else if kw(1, "CONNECTION") {
                (false, 2, "KILL CONNECTION <session id>")
            } else {
                (false, 1, "KILL <session id>")
            };
            if words.len() != idx + 1 {
                return Err(usage(syntax));
            }
            let id = words[idx].parse::<u64>().map_err(|_| {
                AdminError::parse(format!(
                    "Syntax: {syntax}; '{}' is not a session id",
                    words[idx]
                ))
            })?;
            Ok(Command::Kill { id, query_only })
        }
        "SWITCHOVER" => {
            if words.len() == 4 && words[2].eq_ignore_ascii_case("TO") {
                return Ok(Command::SwitchoverTo {
                    shard: unquote_ident(words[1]),
                    target: words[3]
                        .trim_matches(|c| c == '\'' || c == '"' || c == '`')
                        .to_string(),
                });
            }
            if words.len() != 2 {
                return Err(usage("SWITCHOVER <shard> [TO <replica>]"));
            }
            Ok(Command::Switchover(unquote_ident(words[1])))
        }
        "RESHARD" if kw(1, "PLAN") || kw(1, "START") => {
            let (syntax, make): (&str, fn(String) -> Command) = if kw(1, "PLAN") {
                ("RESHARD PLAN '<config file>'", Command::ReshardPlan)
            } else {
                ("RESHARD START '<config file>'", Command::ReshardStart)
            };
            let rest = after_words(text, 2).trim();
            match rest.chars().next() {
                Some(q @ ('\'' | '"')) => parse_quoted(rest, q)
                    .filter(|p| !p.is_empty())
                    .map(make)
                    .ok_or_else(|| usage(syntax)),
                _ => Err(usage(syntax)),
            }
        }
        "RESHARD" if words.len() == 2 && kw(1, "CANCEL") => Ok(Command::ReshardCancel),
        "RESHARD" if words.len() == 2 && kw(1, "CLEANUP") => Ok(Command::ReshardCleanup),
        "RESHARD" => Err(usage(
            "RESHARD PLAN '<config file>' | RESHARD START '<config file>' | RESHARD CANCEL | RESHARD CLEANUP",
        )),
        "FAILOVER" => match words.len() {
            2 => Ok(Command::Failover {
                shard: unquote_ident(words[1]),
                force: false,
            }),
            3 if words[2].eq_ignore_ascii_case("FORCE") => Ok(Command::Failover {
                shard: unquote_ident(words[1]),
                force: true,
            }),
            _ => Err(usage("FAILOVER <shard> [FORCE]")),
        },
        // The mysql CLI answers a bare `help` itself and sends `help 'topic'` to the server.
        "HELP" => Ok(Command::Help),
        "SET" => Ok(Command::Set),
        "USE" if words.len() == 2 => Ok(Command::Use),
        "SELECT" => parse_select(after_words(text, 1)).ok_or_else(|| unknown_statement(text)),
        _ => Err(unknown_statement(text)),
    }
}

/// The text after the first `n` whitespace-separated words, with original spacing.
fn after_words(text: &str, n: usize) -> &str {
    let mut rest = text;
    for _ in 0..n {
        rest = rest.trim_start();
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        rest = &rest[end..];
    }
    rest.trim_start()
}

/// `` `db`.`t` `` → `db.t`; `t` → `t`.
fn unquote_ident(s: &str) -> String {
    s.replace('`', "")
}

fn parse_where_is(rest: &str) -> Result<Command, AdminError> {
    const SYNTAX: &str = "WHERE IS <table> <key>";
    let rest = rest.trim();
    let end = rest
        .find(char::is_whitespace)
        .ok_or_else(|| usage(SYNTAX))?;
    let table = unquote_ident(&rest[..end]);
    let key_text = rest[end..].trim();
    if table.is_empty() || key_text.is_empty() {
        return Err(usage(SYNTAX));
    }
    let key = match key_text.chars().next() {
        Some(q @ ('\'' | '"')) => parse_quoted(key_text, q).ok_or_else(|| usage(SYNTAX))?,
        _ if key_text.split_whitespace().count() == 1 => key_text.to_string(),
        _ => return Err(usage(SYNTAX)),
    };
    Ok(Command::WhereIs { table, key })
}

/// A whole-string SQL literal quoted with `q`: `'it''s'` → `it's`, backslash escapes too.
fn parse_quoted(s: &str, q: char) -> Option<String> {
    let mut chars = s.chars();
    if chars.next()? != q {
        return None;
    }
    let mut out = String::new();
    loop {
        match chars.next()? {
            '\\' => out.push(chars.next()?),
            c if c == q => {
                let rest = chars.as_str();
                if let Some(after) = rest.strip_prefix(q) {
                    out.push(q);
                    chars = after.chars();
                } else if rest.trim().is_empty() {
                    return Some(out);
                } else {
                    return None;
                }
            }
            c => out.push(c),
        }
    }
}

/// `@@version_comment limit 1`, `DATABASE()`, `@@session.autocommit AS ac, 1` …
fn parse_select(list: &str) -> Option<Command> {
    let mut list = list.trim();
    // Strip a trailing LIMIT n.
    let lower = list.to_ascii_lowercase();
    if let Some(pos) = lower.rfind(" limit ") {
        if lower[pos + 7..].trim().chars().all(|c| c.is_ascii_digit()) {
            list = list[..pos].trim();
        }
    }
    if list.is_empty() {
        return None;
    }
    let mut items = Vec::new();
    for part in split_top_level(list) {
        let part = part.trim();
        let lower = part.to_ascii_lowercase();
        let (expr_text, label) = match lower.find(" as ") {
            Some(pos) => (
                part[..pos].trim(),
                Some(parse_label(part[pos + 4..].trim())?),
            ),
            None => (part, None),
        };
        let expr = parse_select_expr(expr_text)?;
        items.push(SelectItem {
            label: label.unwrap_or_else(|| expr_text.to_string()),
            expr,
        });
    }
    Some(Command::Select(items))
}

fn parse_label(s: &str) -> Option<String> {
    match s.chars().next()? {
        q @ ('\'' | '"') => parse_quoted(s, q),
        '`' => Some(s.trim_matches('`').to_string()),
        _ if s.chars().all(|c| c.is_alphanumeric() || c == '_') => Some(s.to_string()),
        _ => None,
    }
}

fn split_top_level(s: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0i32;
    let mut quote: Option<char> = None;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"' | '`') => quote = Some(c),
            (None, '(') => depth += 1,
            (None, ')') => depth -= 1,
            (None, ',') if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

fn parse_select_expr(e: &str) -> Option<SelectExpr> {
    if let Some(var) = e.strip_prefix("@@") {
        let var = var.to_ascii_lowercase();
        let name = var
            .strip_prefix("session.")
            .or_else(|| var.strip_prefix("global."))
            .or_else(|| var.strip_prefix("local."))
            .unwrap_or(&var);
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return None;
        }
        return Some(SelectExpr::Variable(name.to_string()));
    }
    let compact: String = e
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_ascii_uppercase();
    match compact.as_str() {
        "DATABASE()" | "SCHEMA()" => return Some(SelectExpr::Database),
        "USER()" | "CURRENT_USER()" | "CURRENT_USER" | "SESSION_USER()" | "SYSTEM_USER()" => {
            return Some(SelectExpr::User)
        }
        "CONNECTION_ID()" => return Some(SelectExpr::ConnectionId),
        "VERSION()" => return Some(SelectExpr::Version),
        _ => {}
    }
    if let Some(q @ ('\'' | '"')) = e.chars().next() {
        return parse_quoted(e, q).map(SelectExpr::Literal);
    }
    if !e.is_empty() && e.parse::<f64>().is_ok() {
        return Some(SelectExpr::Literal(e.to_string()));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(sql: &str) -> Command {
        parse(sql).unwrap_or_else(|e| panic!("{sql:?}: {e}"))
    }

    #[test]
    fn show_statements_any_case_spacing_and_semicolons() {
        assert_eq!(ok("SHOW SHARDS"), Command::ShowShards);
        assert_eq!(ok("  show   shards ;; "), Command::ShowShards);
        assert_eq!(ok("Show\tBackends;"), Command::ShowBackends);
        assert_eq!(ok("show ring"), Command::ShowRing);
        assert_eq!(ok("SHOW SESSIONS"), Command::ShowSessions);
        assert_eq!(ok("show full processlist"), Command::ShowSessions);
        assert_eq!(ok("show proxy\nstatus;"), Command::ShowProxyStatus);
        assert_eq!(ok("SHOW TABLE RULES"), Command::ShowTableRules);
        assert_eq!(ok("show reshard status"), Command::ShowReshardStatus);
        assert_eq!(ok("show warnings"), Command::ShowWarnings);
        assert_eq!(ok("help;"), Command::Help);
        assert_eq!(ok("reload config"), Command::ReloadConfig);
        assert_eq!(ok("/* from a script */ SHOW RING"), Command::ShowRing);
        assert_eq!(ok("-- note\n# other\nshow ring;"), Command::ShowRing);
        assert_eq!(parse("-- only a comment").unwrap_err().code, 1065);
    }

    #[test]
    fn preview_keeps_the_statement_text() {
        assert_eq!(
            ok("PREVIEW SELECT * FROM t WHERE id = 'a;b'  ;"),
            Command::Preview("SELECT * FROM t WHERE id = 'a;b'".into())
        );
        assert_eq!(
            ok("preview\n  select 1"),
            Command::Preview("select 1".into())
        );
        assert!(parse("PREVIEW ;")
            .unwrap_err()
            .message
            .contains("PREVIEW <statement>"));
    }

    #[test]
    fn where_is_takes_table_and_key() {
        assert_eq!(
            ok("WHERE IS accounts 42"),
            Command::WhereIs {
                table: "accounts".into(),
                key: "42".into()
            }
        );
        assert_eq!(
            ok("where is `fund`.`accounts` 'it''s me';"),
            Command::WhereIs {
                table: "fund.accounts".into(),
                key: "it's me".into()
            }
        );
        assert_eq!(
            ok("WHERE IS t \"a b\""),
            Command::WhereIs {
                table: "t".into(),
                key: "a b".into()
            }
        );
        for bad in [
            "WHERE IS",
            "WHERE IS t",
            "WHERE IS t a b",
            "WHERE IS t 'open",
        ] {
            let e = parse(bad).unwrap_err();
            assert_eq!(e.code, 1064);
            assert!(e.message.contains("WHERE IS <table> <key>"), "{bad}: {e}");
        }
    }

    #[test]
    fn kill_forms() {
        assert_eq!(
            ok("KILL 7"),
            Command::Kill {
                id: 7,
                query_only: false
            }
        );
        assert_eq!(
            ok("kill connection 7"),
            Command::Kill {
                id: 7,
                query_only: false
            }
        );
        assert_eq!(
            ok("kill query 12;"),
            Command::Kill {
                id: 12,
                query_only: true
            }
        );
        assert!(parse("KILL x")
            .unwrap_err()
            .message
            .contains("not a session id"));
        assert!(parse("KILL QUERY")
            .unwrap_err()
            .message
            .contains("KILL QUERY <session id>"));
        assert!(parse("KILL 1 2").is_err());
    }

    #[test]
    fn switchover_takes_a_shard() {
        assert_eq!(ok("switchover s1"), Command::Switchover("s1".into()));
        assert_eq!(
            ok("reshard plan '/tmp/new.toml';"),
            Command::ReshardPlan("/tmp/new.toml".into())
        );
        assert_eq!(
            ok("RESHARD PLAN \"it's.toml\""),
            Command::ReshardPlan("it's.toml".into())
        );
        assert!(parse("reshard plan /tmp/x.toml").is_err());
        assert_eq!(
            ok("reshard start '/tmp/x.toml'"),
            Command::ReshardStart("/tmp/x.toml".into())
        );
        assert!(parse("reshard start /tmp/x.toml").is_err());
        assert_eq!(ok("RESHARD cancel;"), Command::ReshardCancel);
        assert_eq!(ok("reshard CLEANUP"), Command::ReshardCleanup);
        assert!(parse("reshard cancel now").is_err());
        assert!(parse("reshard")
            .unwrap_err()
            .message
            .contains("RESHARD START '<config file>'"));
        assert_eq!(ok("SWITCHOVER `s1`;"), Command::Switchover("s1".into()));
        assert!(parse("SWITCHOVER").is_err());
        assert_eq!(
            ok("SWITCHOVER s1 TO '127.0.0.1:3312'"),
            Command::SwitchoverTo {
                shard: "s1".into(),
                target: "127.0.0.1:3312".into()
            }
        );
        assert_eq!(
            ok("failover s2 force"),
            Command::Failover {
                shard: "s2".into(),
                force: true
            }
        );
        assert_eq!(ok("SHOW FAILOVERS"), Command::ShowFailovers);
        assert!(parse("FAILOVER s1 NOW").is_err());
    }

    #[test]
    fn client_housekeeping() {
        assert_eq!(
            ok("select @@version_comment limit 1"),
            Command::Select(vec![SelectItem {
                label: "@@version_comment".into(),
                expr: SelectExpr::Variable("version_comment".into())
            }])
        );
        assert_eq!(
            ok("SELECT DATABASE(), @@session.autocommit AS ac, 1, 'x'"),
            Command::Select(vec![
                SelectItem {
                    label: "DATABASE()".into(),
                    expr: SelectExpr::Database
                },
                SelectItem {
                    label: "ac".into(),
                    expr: SelectExpr::Variable("autocommit".into())
                },
                SelectItem {
                    label: "1".into(),
                    expr: SelectExpr::Literal("1".into())
                },
                SelectItem {
                    label: "'x'".into(),
                    expr: SelectExpr::Literal("x".into())
                },
            ])
        );
        assert_eq!(ok("SET NAMES utf8mb4"), Command::Set);
        assert_eq!(ok("set autocommit=1"), Command::Set);
        assert_eq!(ok("Use fund"), Command::Use);
        assert!(parse("SELECT * FROM t").is_err());
    }

    #[test]
    fn unknown_statement_lists_what_exists() {
        assert_eq!(ok("help 'admin'"), Command::Help);
        for bad in [
            "SHOW TABLES",
            "DROP TABLE t",
            "SHOW",
            "frobnicate",
            "RELOAD",
        ] {
            let e = parse(bad).unwrap_err();
            assert_eq!(e.code, 1064, "{bad}");
            if !bad.starts_with("RELOAD") {
                for (syntax, _) in STATEMENTS {
                    assert!(e.message.contains(syntax), "{bad}: {}", e.message);
                }
            }
        }
        assert_eq!(parse(" ; ").unwrap_err().code, 1065);
    }
}
