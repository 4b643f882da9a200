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
//! The rewrite splices the original text by token spans (the lexer skips strings and comments,
//! so `'CONNECTION_ID()'` stays a string). Where the value is a select item, it keeps the
//! column name the client would get from MariaDB (`CONNECTION_ID()` as written, `@@socket`).

use crate::lex::{tokenize, Token, TokenKind};

/// Rewrites what the proxy answers itself; `None` when the statement mentions none of it
/// (the common case, decided without tokenizing).
pub fn proxy_values(sql: &str, connection_id: u32) -> Option<String> {
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
    use super::proxy_values;

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
