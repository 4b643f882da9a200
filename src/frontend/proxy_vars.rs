//! The proxy's own session settings, read back the way MariaDB reads a system variable.
//!
//! A session changes how the proxy treats it with `SET shardproxy_read_from = …`,
//! `SET shardproxy_transaction_mode = …` and `SET shardproxy_allow_scatter_writes = …`. No
//! backend knows these names (a backend asked `SELECT @@shardproxy_read_from` answers 1193,
//! unknown system variable), so the proxy answers them itself, with the session's value:
//! - `@@shardproxy_x`, `@@session.shardproxy_x`, `@@local.shardproxy_x`: the session's value;
//!   `@@global.shardproxy_x`: the value a new session of this user starts with (the user's
//!   `read_from`, `transactions.transaction_mode`, scatter writes off). The value is put in
//!   the statement's text in place of the variable ([`super::rewrite`]), so a select item keeps
//!   the column name MariaDB gives it (the expression as written: `@@session.shardproxy_x`).
//!   Strings read as strings, the switch as 1 or 0, as MariaDB reads `@@autocommit`.
//! - `SHOW [SESSION | GLOBAL] VARIABLES LIKE 'shardproxy…'`: the proxy's settings that match,
//!   as `Variable_name`, `Value` rows (the switch as ON / OFF, as MariaDB shows it). Only a
//!   pattern that starts with `shardproxy` is answered here: no MariaDB variable has that
//!   prefix, so nothing the backend would list is left out; any other SHOW VARIABLES goes to
//!   the backend, which knows none of the proxy's names.
//!
//! An unknown `@@shardproxy_…` name is not the proxy's: it goes to the backend and gets its
//! 1193.

use crate::lex::{tokenize, TokenKind};
use crate::protocol::resultset::{ColumnDef, ResultSet};

/// The names of the proxy's session settings, in the order SHOW VARIABLES lists them.
pub const NAMES: [&str; 3] = [
    "shardproxy_allow_scatter_writes",
    "shardproxy_read_from",
    "shardproxy_transaction_mode",
];

/// One setting's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SettingValue {
    /// A named choice (`replica`, `twopc` …).
    Text(&'static str),
    /// A switch.
    Switch(bool),
}

impl SettingValue {
    /// The value as an SQL literal, for the text of a statement: what `SELECT @@x` returns.
    pub fn sql_literal(self) -> String {
        match self {
            SettingValue::Text(t) => format!("'{t}'"),
            SettingValue::Switch(on) => if on { "1" } else { "0" }.to_string(),
        }
    }

    /// The value as SHOW VARIABLES shows it.
    pub fn shown(self) -> &'static str {
        match self {
            SettingValue::Text(t) => t,
            SettingValue::Switch(true) => "ON",
            SettingValue::Switch(false) => "OFF",
        }
    }
}

/// A session's settings and those a new session of its user starts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxySettings {
    /// The session's values, in the order of [`NAMES`].
    pub session: [SettingValue; 3],
    /// The values a new session of this user starts with (`@@global.…`, SHOW GLOBAL).
    pub global: [SettingValue; 3],
}

impl Default for ProxySettings {
    /// A session of a user with nothing configured: reads on the primary, two-phase commit,
    /// scatter writes off.
    fn default() -> Self {
        let values = [
            SettingValue::Switch(false),
            SettingValue::Text(crate::config::ReadFrom::Primary.name()),
            SettingValue::Text(crate::config::TransactionMode::default().name()),
        ];
        ProxySettings {
            session: values,
            global: values,
        }
    }
}

impl ProxySettings {
    /// The value of `name` (lowercase, without scope), `global` for `@@global.name`; `None`
    /// when the name is not one of the proxy's.
    pub fn value(&self, name: &str, global: bool) -> Option<SettingValue> {
        let i = NAMES.iter().position(|n| *n == name)?;
        Some(if global {
            self.global[i]
        } else {
            self.session[i]
        })
    }

    /// The rows of `SHOW [GLOBAL] VARIABLES LIKE 'pattern'`.
    pub fn show(&self, q: &ShowVariables) -> ResultSet {
        let rows = NAMES
            .iter()
            .filter(|n| like(&q.pattern, n))
            .map(|n| {
                let v = self.value(n, q.global).expect("one of NAMES");
                vec![
                    Some(bytes::Bytes::from_static(n.as_bytes())),
                    Some(bytes::Bytes::from_static(v.shown().as_bytes())),
                ]
            })
            .collect();
        ResultSet {
            columns: vec![ColumnDef::text("Variable_name"), ColumnDef::text("Value")],
            rows,
            warnings: 0,
        }
    }
}

/// Whether `name` (lowercase, without scope) is one of the proxy's settings.
pub fn is_proxy_setting(name: &str) -> bool {
    NAMES.contains(&name)
}

/// A `SHOW VARIABLES LIKE` the proxy answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShowVariables {
    /// `SHOW GLOBAL VARIABLES`.
    pub global: bool,
    /// The LIKE pattern, lowercase.
    pub pattern: String,
}

/// `SHOW [GLOBAL | SESSION | LOCAL] VARIABLES LIKE 'shardproxy…'` (see the module doc);
/// `None` for any other statement.
pub fn show_variables(sql: &str) -> Option<ShowVariables> {
    let head = sql.trim_start().get(..4)?;
    if !head.eq_ignore_ascii_case("show") {
        return None;
    }
    let tokens = tokenize(sql);
    let mut t = tokens.iter().peekable();
    if !t.next()?.is_word("SHOW") {
        return None;
    }
    let global = match t.peek()?.word() {
        Some("GLOBAL") => {
            t.next();
            true
        }
        Some("SESSION" | "LOCAL") => {
            t.next();
            false
        }
        _ => false,
    };
    if !t.next()?.is_word("VARIABLES") || !t.next()?.is_word("LIKE") {
        return None;
    }
    let s = t.next()?;
    if s.kind != TokenKind::Str {
        return None;
    }
    let quoted = &sql[s.start..s.end];
    let pattern = quoted.get(1..quoted.len().checked_sub(1)?)?;
    // Escapes and doubled quotes are left to the backend: the pattern must be read plainly.
    if pattern.contains(['\\', '\'', '"']) {
        return None;
    }
    let pattern = pattern.to_ascii_lowercase();
    if !pattern.starts_with("shardproxy") {
        return None;
    }
    match t.next() {
        None => {}
        Some(x) if x.is_punct(';') && t.next().is_none() => {}
        _ => return None,
    }
    Some(ShowVariables { global, pattern })
}

/// SQL's LIKE on lowercase ASCII text: `%` any run, `_` one character.
fn like(pattern: &str, name: &str) -> bool {
    fn go(p: &[u8], n: &[u8]) -> bool {
        match p.split_first() {
            None => n.is_empty(),
            Some((b'%', rest)) => (0..=n.len()).any(|i| go(rest, &n[i..])),
            Some((b'_', rest)) => !n.is_empty() && go(rest, &n[1..]),
            Some((c, rest)) => n.first() == Some(c) && go(rest, &n[1..]),
        }
    }
    go(pattern.as_bytes(), name.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> ProxySettings {
        ProxySettings {
            session: [
                SettingValue::Switch(true),
                SettingValue::Text("replica"),
                SettingValue::Text("single"),
            ],
            global: [
                SettingValue::Switch(false),
                SettingValue::Text("primary"),
                SettingValue::Text("twopc"),
            ],
        }
    }

    #[test]
    fn values_by_scope() {
        let s = settings();
        assert_eq!(
            s.value("shardproxy_read_from", false)
                .unwrap()
                .sql_literal(),
            "'replica'"
        );
        assert_eq!(
            s.value("shardproxy_read_from", true).unwrap().sql_literal(),
            "'primary'"
        );
        assert_eq!(
            s.value("shardproxy_allow_scatter_writes", false)
                .unwrap()
                .sql_literal(),
            "1"
        );
        assert_eq!(s.value("shardproxy_nothing", false), None);
        assert!(is_proxy_setting("shardproxy_transaction_mode"));
        assert!(!is_proxy_setting("sql_mode"));
    }

    #[test]
    fn show_variables_like_the_proxys_prefix() {
        let q = show_variables("SHOW VARIABLES LIKE 'shardproxy%'").unwrap();
        assert_eq!(
            q,
            ShowVariables {
                global: false,
                pattern: "shardproxy%".into()
            }
        );
        let rows = settings().show(&q).rows;
        let shown: Vec<(String, String)> = rows
            .iter()
            .map(|r| {
                let s = |i: usize| String::from_utf8(r[i].clone().unwrap().to_vec()).unwrap();
                (s(0), s(1))
            })
            .collect();
        assert_eq!(
            shown,
            vec![
                ("shardproxy_allow_scatter_writes".into(), "ON".into()),
                ("shardproxy_read_from".into(), "replica".into()),
                ("shardproxy_transaction_mode".into(), "single".into()),
            ]
        );
        let q = show_variables("show global variables like 'SHARDPROXY_READ_FROM';").unwrap();
        assert!(q.global);
        let rows = settings().show(&q).rows;
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0][1].as_deref(), Some(b"primary".as_slice()));
        let q = show_variables("SHOW SESSION VARIABLES LIKE 'shardproxy_read_fro_'").unwrap();
        assert_eq!(settings().show(&q).rows.len(), 1);
        // Not the proxy's to answer: the backend's.
        assert_eq!(show_variables("SHOW VARIABLES LIKE 'sql_mode'"), None);
        assert_eq!(show_variables("SHOW VARIABLES LIKE '%read_from'"), None);
        assert_eq!(show_variables("SHOW VARIABLES"), None);
        assert_eq!(
            show_variables("SHOW VARIABLES LIKE 'shardproxy%' OR 1"),
            None
        );
        assert_eq!(show_variables("SELECT 1"), None);
    }

    #[test]
    fn like_matches_as_sql() {
        assert!(like("shardproxy%", "shardproxy_read_from"));
        assert!(like("%read%", "shardproxy_read_from"));
        assert!(like("shardproxy_read_fro_", "shardproxy_read_from"));
        assert!(!like("shardproxy_read", "shardproxy_read_from"));
        assert!(!like("shardproxy_read_from_", "shardproxy_read_from"));
    }
}
