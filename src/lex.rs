//! A small SQL lexer for the decisions that must not wait for (or cannot rely on) the full
//! parser: the statement's leading keywords, session-state assignments, and the constructs that
//! tie a session to one backend connection. It skips comments and string literals, treats the
//! contents of `/*! … */` as code (MySQL executes them), and never fails: unknown bytes become
//! punctuation tokens.
//!
//! A base module: the frontend's statement facts (`frontend::classify`, `rewrite`, `diagnostics`,
//! `column_list`) and `protocol::binary::interpolate` build on it.

/// One token with its byte span in the statement text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub kind: TokenKind,
    pub start: usize,
    pub end: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenKind {
    /// A keyword or identifier, uppercased (backquoted identifiers are kept as written).
    Word(String),
    /// A quoted identifier.
    Quoted(String),
    /// `@name`: a user variable.
    UserVar,
    /// `@@name`, `@@session.name`: a system variable (lowercased name without scope).
    SysVar(String),
    /// `@@global.name`.
    GlobalVar(String),
    Str,
    Number,
    Punct(char),
}

impl Token {
    pub fn is_word(&self, w: &str) -> bool {
        matches!(&self.kind, TokenKind::Word(x) if x == w)
    }
    pub fn is_punct(&self, c: char) -> bool {
        self.kind == TokenKind::Punct(c)
    }
    pub fn word(&self) -> Option<&str> {
        match &self.kind {
            TokenKind::Word(w) => Some(w),
            _ => None,
        }
    }
}

/// Splits `sql` into tokens.
pub fn tokenize(sql: &str) -> Vec<Token> {
    let b = sql.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
        } else if c == b'#'
            || (c == b'-'
                && b.get(i + 1) == Some(&b'-')
                && b.get(i + 2).is_none_or(|c| c.is_ascii_whitespace()))
        {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if c == b'/' && b.get(i + 1) == Some(&b'*') {
            if b.get(i + 2) == Some(&b'!') {
                // Executable comment: its body is code. Skip the marker and version digits.
                i += 3;
                while i < b.len() && b[i].is_ascii_digit() {
                    i += 1;
                }
            } else {
                i += 2;
                while i < b.len() && !(b[i] == b'*' && b.get(i + 1) == Some(&b'/')) {
                    i += 1;
                }
                i = (i + 2).min(b.len());
            }
        } else if c == b'*' && b.get(i + 1) == Some(&b'/') {
            // End of an executable comment.
            i += 2;
        } else if c == b'\'' || c == b'"' {
            let start = i;
            i = skip_quoted(b, i, c);
            out.push(Token {
                kind: TokenKind::Str,
                start,
                end: i,
            });
        } else if c == b'`' {
            let start = i;
            i = skip_quoted(b, i, c);
            let inner = sql.get(start + 1..i.saturating_sub(1)).unwrap_or("");
            out.push(Token {
                kind: TokenKind::Quoted(inner.replace("``", "`")),
                start,
                end: i,
            });
        } else if c == b'@' {
            let start = i;
            if b.get(i + 1) == Some(&b'@') {
                i += 2;
                let name_start = i;
                i = variable_name_end(b, i);
                let name = sql[name_start..i].to_ascii_lowercase();
                let kind = if let Some(n) = name.strip_prefix("global.") {
                    TokenKind::GlobalVar(n.to_string())
                } else {
                    let n = name
                        .strip_prefix("session.")
                        .or_else(|| name.strip_prefix("local."))
                        .unwrap_or(&name);
                    TokenKind::SysVar(n.to_string())
                };
                out.push(Token {
                    kind,
                    start,
                    end: i,
                });
            } else {
                i += 1;
                if i < b.len() && (b[i] == b'\'' || b[i] == b'"' || b[i] == b'`') {
                    i = skip_quoted(b, i, b[i]);
                } else {
                    i = variable_name_end(b, i);
                }
                out.push(Token {
                    kind: TokenKind::UserVar,
                    start,
                    end: i,
                });
            }
        } else if c.is_ascii_digit() {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'.') {
                i += 1;
            }
            out.push(Token {
                kind: TokenKind::Number,
                start,
                end: i,
            });
        } else if c.is_ascii_alphabetic() || c == b'_' || c == b'$' || c >= 0x80 {
            let start = i;
            while i < b.len()
                && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b'$' || b[i] >= 0x80)
            {
                i += 1;
            }
            out.push(Token {
                kind: TokenKind::Word(sql[start..i].to_ascii_uppercase()),
                start,
                end: i,
            });
        } else {
            out.push(Token {
                kind: TokenKind::Punct(c as char),
                start: i,
                end: i + 1,
            });
            i += 1;
        }
    }
    out
}

/// End (exclusive) of an unquoted variable name starting at `i` (`@x`, `@@session.x`).
fn variable_name_end(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && (b[i].is_ascii_alphanumeric() || matches!(b[i], b'_' | b'.' | b'$')) {
        i += 1;
    }
    i
}

/// Index just past the closing quote (doubled quotes and backslash escapes stay inside).
fn skip_quoted(b: &[u8], start: usize, q: u8) -> usize {
    debug_assert_eq!(b[start], q);
    skip_string(b, start, q != b'`').0
}

/// End (exclusive) of the quoted text starting at `start` (its quote is `b[start]`), and
/// whether it holds a backslash. A doubled quote stays inside; so does a backslash escape when
/// `backslash_escapes` (not for backticks, nor under `NO_BACKSLASH_ESCAPES`).
pub fn skip_string(b: &[u8], start: usize, backslash_escapes: bool) -> (usize, bool) {
    let q = b[start];
    let mut i = start + 1;
    let mut backslash = false;
    while i < b.len() {
        if b[i] == b'\\' {
            backslash = true;
            if backslash_escapes {
                i += 2;
                continue;
            }
        }
        if b[i] == q {
            if b.get(i + 1) == Some(&q) {
                i += 2;
                continue;
            }
            return (i + 1, backslash);
        }
        i += 1;
    }
    (b.len(), backslash)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(sql: &str) -> Vec<String> {
        tokenize(sql)
            .into_iter()
            .filter_map(|t| t.word().map(str::to_string))
            .collect()
    }

    #[test]
    fn comments_and_strings_are_skipped() {
        assert_eq!(
            words("/* hi */ select 'FROM x' -- tail\n , a # more\n from t"),
            vec!["SELECT", "A", "FROM", "T"]
        );
    }

    #[test]
    fn executable_comments_are_code() {
        assert_eq!(
            words("/*!40101 SET NAMES utf8 */"),
            vec!["SET", "NAMES", "UTF8"]
        );
    }

    #[test]
    fn variables() {
        let t = tokenize("SELECT @a, @@session.sql_mode, @@GLOBAL.x, @'q r'");
        assert_eq!(t[1].kind, TokenKind::UserVar);
        assert_eq!(t[3].kind, TokenKind::SysVar("sql_mode".into()));
        assert_eq!(t[5].kind, TokenKind::GlobalVar("x".into()));
        assert_eq!(t[7].kind, TokenKind::UserVar);
    }

    #[test]
    fn unterminated_input_does_not_panic() {
        for s in ["'abc", "`x", "/* no end", "@", "@@", "\"\\"] {
            tokenize(s);
        }
    }

    proptest::proptest! {
        #[test]
        fn never_panics(s in ".{0,80}") {
            tokenize(&s);
        }
    }
}
