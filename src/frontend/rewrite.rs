//! Values the proxy must answer itself because the backend would answer about the wrong thing.
//!
//! A statement runs on a pooled backend connection, so whatever it asks about "this
//! connection" would be answered by that backend connection, not by the client's session:
//! - `CONNECTION_ID()` would return the backend's thread id. A client that reads it and later
//!   sends `KILL <id>` (another session, a DBA script) would then name the proxy session that
//!   happens to have the backend's number: somebody else's. The proxy's own connection id (the
//!   one in its handshake, the one `KILL` understands) is put in its place.
//! - `@@socket` would name the backend's Unix socket; clients that prefer sockets on localhost
//!   (mysql_async) would reconnect there and bypass the proxy. It reads as NULL here.
//!
//! - the proxy's own settings (`@@shardproxy_read_from` …: [`super::proxy_vars`]) are unknown
//!   to every backend; their session's (or, for `@@global.`, a new session's) value is put in.
//!
//! The rewrite splices the original text by token spans (the lexer skips strings and comments,
//! so `'CONNECTION_ID()'` stays a string). Where the value is a select item, it keeps the
//! column name the client would get from MariaDB (`CONNECTION_ID()` as written, `@@socket`).

use super::proxy_vars::{is_proxy_setting, ProxySettings};
use crate::lex::{tokenize, Token, TokenKind};

/// Rewrites what the proxy answers itself; `None` when the statement mentions none of it
/// (the common case, decided without tokenizing). `settings`: the session's own settings,
/// gathered only for a statement that reads one.
pub fn proxy_values(
    sql: &str,
    connection_id: u32,
    settings: impl FnOnce() -> ProxySettings,
) -> Option<String> {
    let mut settings = Some(settings);
    let mut gathered: Option<ProxySettings> = None;
    let maybe_socket = sql.contains("@@");
    let maybe_conn_id = contains_ignore_case(sql.as_bytes(), b"connection_id");
    if !maybe_socket && !maybe_conn_id {
        return None;
    }
    let tokens = tokenize(sql);
    // (first token, last token, replacement value) for each hit, in text order.
    let mut hits: Vec<(usize, usize, String)> = Vec::new();
    for (i, t) in tokens.iter().enumerate() {
        match &t.kind {
            TokenKind::SysVar(v) | TokenKind::GlobalVar(v) if v == "socket" => {
                hits.push((i, i, "NULL".to_string()))
            }
            TokenKind::SysVar(v) | TokenKind::GlobalVar(v) => {
                let global = matches!(t.kind, TokenKind::GlobalVar(_));
                if !is_proxy_setting(v) {
                    continue;
                }
                let all = gathered.get_or_insert_with(|| (settings.take().expect("once"))());
                if let Some(value) = all.value(v, global) {
                    hits.push((i, i, value.sql_literal()))
                }
            }
            TokenKind::Word(w)
                if w == "CONNECTION_ID"
                    && tokens.get(i + 1).is_some_and(|n| n.is_punct('('))
                    && tokens.get(i + 2).is_some_and(|n| n.is_punct(')')) =>
            {
                hits.push((i, i + 2, connection_id.to_string()))
            }
            _ => {}
        }
    }
    if hits.is_empty() {
        return None;
    }
    let mut out = String::with_capacity(sql.len() + 32);
    let mut last = 0;
    for (first, end, value) in hits {
        let (start, stop) = (tokens[first].start, tokens[end].end);
        out.push_str(&sql[last..start]);
        if is_select_item(&tokens, first, end) {
            let name = sql[start..stop].replace('`', "``");
            out.push_str(&format!("{value} AS `{name}`"));
        } else {
            out.push_str(&value);
        }
        last = stop;
    }
    out.push_str(&sql[last..]);
    Some(out)
}

/// Whether the statement reads one of the proxy's settings (`@@shardproxy_read_from` …): a
/// prepared statement must not, since its text is fixed at prepare and the session's value
/// may change before it runs.
pub fn reads_proxy_setting(sql: &str) -> bool {
    sql.contains("@@")
        && tokenize(sql).iter().any(|t| {
            matches!(&t.kind, TokenKind::SysVar(v) | TokenKind::GlobalVar(v) if is_proxy_setting(v))
        })
}

/// Whether tokens `first..=end` are a whole select item without an alias (`SELECT x, …`,
/// `…, x FROM`), where MariaDB names the column after the expression's text.
fn is_select_item(tokens: &[Token], first: usize, end: usize) -> bool {
    let before = first.checked_sub(1).map(|j| &tokens[j]);
    let after = tokens.get(end + 1);
    before.is_some_and(|b| b.is_word("SELECT") || b.is_punct(','))
        && after.is_none_or(|a| a.is_punct(',') || a.is_word("FROM") || a.is_punct(';'))
}

/// Checked on every text statement, bulk INSERTs of megabytes included: one comparison per
/// byte until the first letter matches.
fn contains_ignore_case(hay: &[u8], needle: &[u8]) -> bool {
    let Some(&first) = needle.first() else {
        return true;
    };
    let first = first.to_ascii_lowercase();
    hay.len() >= needle.len()
        && (0..=hay.len() - needle.len()).any(|i| {
            hay[i].to_ascii_lowercase() == first
                && hay[i..i + needle.len()].eq_ignore_ascii_case(needle)
        })
}

#[cfg(test)]
mod tests {
    use crate::frontend::proxy_vars::{ProxySettings, SettingValue};

    fn settings() -> ProxySettings {
        ProxySettings {
            session: [
                SettingValue::Switch(false),
                SettingValue::Text("replica"),
                SettingValue::Text("twopc"),
            ],
            global: [
                SettingValue::Switch(false),
                SettingValue::Text("primary"),
                SettingValue::Text("twopc"),
            ],
        }
    }

    fn proxy_values(sql: &str, id: u32) -> Option<String> {
        super::proxy_values(sql, id, settings)
    }

    #[test]
    fn proxy_settings_read_as_the_sessions_values() {
        assert_eq!(
            proxy_values("SELECT @@shardproxy_read_from", 7).as_deref(),
            Some("SELECT 'replica' AS `@@shardproxy_read_from`")
        );
        assert_eq!(
            proxy_values(
                "select @@SESSION.shardproxy_read_from, @@global.shardproxy_read_from x",
                7
            )
            .as_deref(),
            Some("select 'replica' AS `@@SESSION.shardproxy_read_from`, 'primary' x")
        );
        assert_eq!(
            proxy_values("SELECT @@shardproxy_allow_scatter_writes + 0", 7).as_deref(),
            Some("SELECT 0 + 0")
        );
        // Not the proxy's: left to the backend (and its 1193 for an unknown name).
        assert_eq!(proxy_values("SELECT @@shardproxy_nothing", 7), None);
        assert_eq!(proxy_values("SELECT @@sql_mode", 7), None);
        assert!(super::reads_proxy_setting(
            "SELECT @@local.shardproxy_transaction_mode"
        ));
        assert!(!super::reads_proxy_setting(
            "SELECT '@@shardproxy_read_from'"
        ));
    }

    #[test]
    fn socket_reads_become_null() {
        assert_eq!(
            proxy_values("SELECT @@max_allowed_packet,@@wait_timeout,@@socket", 7).as_deref(),
            Some("SELECT @@max_allowed_packet,@@wait_timeout,NULL AS `@@socket`")
        );
        assert_eq!(
            proxy_values("select 1 where @@global.socket is null", 7).as_deref(),
            Some("select 1 where NULL is null")
        );
        assert_eq!(proxy_values("SELECT '@@socket'", 7), None);
        assert_eq!(proxy_values("SELECT 1", 7), None);
    }

    #[test]
    fn connection_id_is_the_proxy_id() {
        assert_eq!(
            proxy_values("SELECT CONNECTION_ID()", 42).as_deref(),
            Some("SELECT 42 AS `CONNECTION_ID()`")
        );
        assert_eq!(
            proxy_values("select connection_id(), 1", 42).as_deref(),
            Some("select 42 AS `connection_id()`, 1")
        );
        assert_eq!(
            proxy_values("SELECT id FROM t WHERE owner = CONNECTION_ID ( )", 9).as_deref(),
            Some("SELECT id FROM t WHERE owner = 9")
        );
        assert_eq!(
            proxy_values("SELECT CONNECTION_ID() AS me", 9).as_deref(),
            Some("SELECT 9 AS me")
        );
        // Strings, comments and other names are left alone.
        assert_eq!(proxy_values("SELECT 'connection_id()'", 9), None);
        assert_eq!(proxy_values("SELECT my_connection_id FROM t", 9), None);
        assert_eq!(proxy_values("SELECT 1 /* CONNECTION_ID() */", 9), None);
        assert_eq!(proxy_values("SELECT 1 -- connection_i", 9), None);
        assert!(super::contains_ignore_case(
            b"x Connection_ID",
            b"connection_id"
        ));
        assert!(!super::contains_ignore_case(
            b"connection_i",
            b"connection_id"
        ));
    }
}
