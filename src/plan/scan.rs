//! A cheap lexical pass over the client's SQL text, done before (and often instead of) parsing.
//!
//! Parsing costs microseconds; most statements name no sharded table at all and go to the
//! default shard, so the planner first scans the text once and only parses when it must. The
//! scan also finds what the parser throws away or cannot see:
//! - routing hints in comments (`/* shard=s2 */`, `-- shard=s2`);
//! - MySQL executable comments (`/*! … */`, `/*M! … */`), whose content MariaDB *runs* but the
//!   parser drops: their text is scanned as code, and the planner refuses to route statements
//!   that hide sharded tables in them;
//! - how many `SELECT`/`UNION` keywords there are (a subquery or UNION over a sharded table is
//!   refused, and counting keywords catches every place a subquery can hide);
//! - `?` placeholders in order (for prepared statements) and string literals with backslash
//!   escapes (which the AST re-renders differently, so rewriting them is refused).
//!
//! The scanner understands MariaDB's default lexical rules: `'…'` and `"…"` strings with
//! backslash escapes and doubled quotes, backtick identifiers, `#`, `-- ` and `/* */` comments.

use crate::lex::skip_string;

/// What one pass over the text found.
#[derive(Debug, Default, Clone)]
pub struct Scan {
    /// Identifiers and keywords, lowercased, with their byte offset. Backtick-quoted identifiers
    /// are included (unquoted); `quoted` tells them apart from keywords.
    pub words: Vec<Word>,
    /// Shard names from routing hints, in order.
    pub hints: Vec<String>,
    /// An executable comment (`/*!…*/`, `/*M!…*/`) is present.
    pub executable_comment: bool,
    /// Number of unquoted `select` keywords.
    pub selects: usize,
    /// An unquoted `union`, `intersect` or `except` keyword is present.
    pub set_operation: bool,
    /// Byte offsets of `?` placeholders, in order.
    pub placeholders: Vec<usize>,
    /// A string literal contains a backslash.
    pub backslash_in_string: bool,
    /// A `;` outside strings and comments that is followed by more text.
    pub multiple_statements: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Word {
    pub text: String,
    pub offset: usize,
    pub quoted: bool,
    /// The next significant character is `(` (a function call or a parenthesised list).
    pub call: bool,
}

impl Scan {
    /// Index (0-based) of the placeholder at byte `offset`.
    pub fn placeholder_index(&self, offset: usize) -> Option<usize> {
        self.placeholders.iter().position(|&p| p == offset)
    }

    /// Whether an unquoted keyword or function name appears.
    pub fn has_keyword(&self, kw: &str) -> bool {
        self.words.iter().any(|w| !w.quoted && w.text == kw)
    }

    /// Whether a function call `name(` appears (unquoted name).
    pub fn has_call(&self, name: &str) -> bool {
        self.words
            .iter()
            .any(|w| !w.quoted && w.call && w.text == name)
    }
}

/// Scans `sql` (see the module doc).
///
/// When a string literal holds a backslash, where the string ends depends on the session's
/// `NO_BACKSLASH_ESCAPES` mode, which the planner does not know: the text is scanned both ways
/// and the words, SELECT counts and flags of both readings are combined, so a table name hidden
/// by one reading is still seen.
pub fn scan(sql: &str) -> Scan {
    let mut s = scan_mode(sql, true);
    if s.backslash_in_string {
        let other = scan_mode(sql, false);
        for w in other.words {
            if !s
                .words
                .iter()
                .any(|x| x.text == w.text && x.quoted == w.quoted)
            {
                s.words.push(w);
            }
        }
        s.selects = s.selects.max(other.selects);
        s.set_operation |= other.set_operation;
        s.executable_comment |= other.executable_comment;
        s.multiple_statements |= other.multiple_statements;
    }
    s
}

fn scan_mode(sql: &str, backslash_escapes: bool) -> Scan {
    let b = sql.as_bytes();
    let mut s = Scan::default();
    let mut i = 0;
    let mut last_word: Option<usize> = None;
    let mut seen_semicolon = false;
    while i < b.len() {
        let c = b[i];
        match c {
            b' ' | b'\t' | b'\r' | b'\n' => {
                i += 1;
                continue;
            }
            b'\'' | b'"' => {
                let (end, backslash) = skip_string(b, i, backslash_escapes);
                s.backslash_in_string |= backslash;
                if c == b'"' {
                    // Under ANSI_QUOTES this is an identifier: keep it as a (quoted) word so a
                    // table named this way is still noticed.
                    // `get`: an unterminated string may end inside a multibyte character
                    // (found by fuzzing); such a statement is a syntax error anyway.
                    let inner = sql
                        .get(i + 1..end.saturating_sub(1).max(i + 1))
                        .unwrap_or("");
                    if !inner.is_empty() && inner.len() <= 64 {
                        s.words.push(Word {
                            text: inner.to_lowercase(),
                            offset: i,
                            quoted: true,
                            call: false,
                        });
                    }
                }
                i = end;
            }
            b'`' => {
                let start = i + 1;
                let mut j = start;
                let mut text = String::new();
                while j < b.len() {
                    if b[j] == b'`' {
                        if j + 1 < b.len() && b[j + 1] == b'`' {
                            text.push('`');
                            j += 2;
                            continue;
                        }
                        break;
                    }
                    let ch_len = utf8_len(b[j]);
                    text.push_str(&sql[j..(j + ch_len).min(b.len())]);
                    j += ch_len;
                }
                s.words.push(Word {
                    text: text.to_lowercase(),
                    offset: i,
                    quoted: true,
                    call: false,
                });
                last_word = Some(s.words.len() - 1);
                i = (j + 1).min(b.len());
                if seen_semicolon {
                    s.multiple_statements = true;
                }
                continue;
            }
            b'#' => {
                let end = line_end(b, i);
                hint(&sql[i + 1..end], &mut s.hints);
                i = end;
                continue;
            }
            b'-' if b.get(i + 1) == Some(&b'-')
                && matches!(b.get(i + 2), None | Some(b' ' | b'\t' | b'\r' | b'\n')) =>
            {
                let end = line_end(b, i);
                hint(&sql[i + 2..end], &mut s.hints);
                i = end;
                continue;
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let executable = b.get(i + 2) == Some(&b'!')
                    || (b.get(i + 2) == Some(&b'M') && b.get(i + 3) == Some(&b'!'));
                if executable {
                    // MariaDB runs this text: scan it as code (the closing `*/` is skipped
                    // below as punctuation).
                    s.executable_comment = true;
                    i += if b[i + 2] == b'!' { 3 } else { 4 };
                    continue;
                }
                let end = find(b, i + 2, b"*/").map(|e| e + 2).unwrap_or(b.len());
                // `get`: an unterminated comment may end inside a multibyte character
                // (found by fuzzing).
                let body = sql.get(i + 2..end.saturating_sub(2).max(i + 2));
                hint(body.unwrap_or(""), &mut s.hints);
                i = end;
                continue;
            }
            b'?' => {
                s.placeholders.push(i);
                i += 1;
            }
            b';' => {
                seen_semicolon = true;
                i += 1;
                continue;
            }
            b'(' => {
                if let Some(w) = last_word {
                    s.words[w].call = true;
                }
                i += 1;
            }
            c if c.is_ascii_alphabetic() || c == b'_' || c == b'$' || c >= 0x80 => {
                let start = i;
                while i < b.len()
                    && (b[i].is_ascii_alphanumeric()
                        || b[i] == b'_'
                        || b[i] == b'$'
                        || b[i] >= 0x80)
                {
                    i += 1;
                }
                let text = sql[start..i].to_lowercase();
                match text.as_str() {
                    "select" => s.selects += 1,
                    "union" | "intersect" | "except" => s.set_operation = true,
                    _ => {}
                }
                s.words.push(Word {
                    text,
                    offset: start,
                    quoted: false,
                    call: false,
                });
                last_word = Some(s.words.len() - 1);
                if seen_semicolon {
                    s.multiple_statements = true;
                }
                continue;
            }
            c if c.is_ascii_digit() => {
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'.' || b[i] == b'_')
                {
                    i += 1;
                }
            }
            _ => i += 1,
        }
        // Any token other than a word, whitespace or comment ends "word followed by (".
        last_word = None;
        if seen_semicolon {
            s.multiple_statements = true;
        }
    }
    s
}

fn line_end(b: &[u8], i: usize) -> usize {
    b[i..]
        .iter()
        .position(|&c| c == b'\n')
        .map(|p| i + p)
        .unwrap_or(b.len())
}

fn find(b: &[u8], from: usize, pat: &[u8]) -> Option<usize> {
    if from >= b.len() {
        return None;
    }
    b[from..]
        .windows(pat.len())
        .position(|w| w == pat)
        .map(|p| from + p)
}

fn utf8_len(first: u8) -> usize {
    match first {
        0x00..=0x7f => 1,
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        _ => 4,
    }
}

/// A comment body that is a routing hint: `shard=NAME` (spaces allowed around `=`, an optional
/// leading `+` as in optimizer-hint comments).
fn hint(body: &str, hints: &mut Vec<String>) {
    let body = body.trim().trim_start_matches('+').trim();
    let Some(rest) = body
        .get(..5)
        .filter(|p| p.eq_ignore_ascii_case("shard"))
        .map(|_| &body[5..])
    else {
        return;
    };
    let Some(rest) = rest.trim_start().strip_prefix('=') else {
        return;
    };
    let name: String = rest
        .trim_start()
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == '-' || *c == '.')
        .collect();
    if !name.is_empty() {
        hints.push(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(sql: &str) -> Vec<String> {
        scan(sql).words.into_iter().map(|w| w.text).collect()
    }

    #[test]
    fn words_skip_strings_and_comments() {
        assert_eq!(
            words("SELECT a FROM `Accounts` WHERE b = 'accounts' -- accounts\n # x\n /* t */"),
            ["select", "a", "from", "accounts", "where", "b"]
        );
        assert_eq!(words("SELECT 'a''b', 'c' FROM t"), ["select", "from", "t"]);
    }

    #[test]
    fn double_quoted_strings_count_as_possible_identifiers() {
        assert_eq!(
            words(r#"SELECT * FROM "Accounts""#),
            ["select", "from", "accounts"]
        );
    }

    #[test]
    fn both_backslash_readings_are_scanned() {
        // With NO_BACKSLASH_ESCAPES the string ends at the backslash and `accounts` is a table.
        let s = scan(r"SELECT 'x\' FROM accounts -- '");
        assert!(s.words.iter().any(|w| w.text == "accounts"));
        assert!(s.backslash_in_string);
    }

    #[test]
    fn hints_in_any_comment_style() {
        assert_eq!(scan("/* shard=s2 */ SELECT 1").hints, ["s2"]);
        assert_eq!(scan("SELECT 1 /*+ SHARD = s3 */").hints, ["s3"]);
        assert_eq!(scan("SELECT 1 -- shard=s1").hints, ["s1"]);
        assert_eq!(scan("SELECT 1 # shard=x_y").hints, ["x_y"]);
        assert!(scan("SELECT 'shard=s2'").hints.is_empty());
        assert!(scan("/* sharding is fun */ SELECT 1").hints.is_empty());
    }

    #[test]
    fn executable_comments_are_code() {
        let s = scan("SELECT 1 /*!50000 FROM accounts */");
        assert!(s.executable_comment);
        assert!(s.words.iter().any(|w| w.text == "accounts"));
        assert!(scan("/*M!100101 SET x=1 */").executable_comment);
    }

    #[test]
    fn counts_selects_and_set_operations() {
        let s = scan("SELECT * FROM a WHERE x IN (SELECT y FROM b)");
        assert_eq!(s.selects, 2);
        assert!(!s.set_operation);
        assert!(scan("SELECT 1 UNION SELECT 2").set_operation);
        assert_eq!(scan("SELECT `select` FROM t").selects, 1);
    }

    #[test]
    fn placeholders_outside_strings() {
        let sql = "SELECT '?' FROM t WHERE a = ? AND b = ?";
        let s = scan(sql);
        assert_eq!(s.placeholders.len(), 2);
        assert_eq!(s.placeholder_index(sql.rfind('?').unwrap()), Some(1));
    }

    #[test]
    fn calls_and_backslashes_and_multi_statements() {
        let s = scan("SELECT count (*), sum(x), y FROM t WHERE z = 'a\\'b'");
        assert!(s.has_call("count"));
        assert!(s.has_call("sum"));
        assert!(!s.has_call("y"));
        assert!(s.backslash_in_string);
        assert!(scan("SELECT 1; SELECT 2").multiple_statements);
        assert!(!scan("SELECT 1;  ").multiple_statements);
    }
}
