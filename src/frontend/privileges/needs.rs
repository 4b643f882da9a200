//! What a statement needs, read from its tokens (`crate::lex`): the privilege of its target
//! (INSERT's table, DROP's tables, CREATE DATABASE's database …), then SELECT on the tables it
//! reads (after `FROM` and `JOIN`, outside function calls such as `EXTRACT(YEAR FROM d)`).
//! Statements it does not recognise need a global privilege, so an unknown statement is
//! refused to a restricted user rather than let through.

use super::Need;
use crate::config::Privilege;
use crate::lex::{tokenize, Token, TokenKind};

/// What every statement of `sql` needs, in the order MariaDB checks them (the statement's
/// target first, then the tables it reads).
pub fn needs(sql: &str, current_db: Option<&str>) -> Vec<Need> {
    let tokens = tokenize(sql);
    let mut out = Vec::new();
    for stmt in tokens.split(|t| t.is_punct(';')) {
        if !stmt.is_empty() {
            statement_needs(
                &Stmt {
                    sql,
                    t: stmt,
                    db: current_db,
                },
                &mut out,
            );
        }
    }
    out
}

/// One statement's tokens with the text they point into.
struct Stmt<'a> {
    sql: &'a str,
    t: &'a [Token],
    db: Option<&'a str>,
}

impl Stmt<'_> {
    fn word(&self, i: usize) -> &str {
        self.t.get(i).and_then(|t| t.word()).unwrap_or("")
    }

    /// An identifier at `i` as written (a word's original spelling, a quoted name's content).
    fn ident(&self, i: usize) -> Option<String> {
        let t = self.t.get(i)?;
        match &t.kind {
            TokenKind::Word(_) => Some(self.sql[t.start..t.end].to_string()),
            TokenKind::Quoted(q) => Some(q.clone()),
            _ => None,
        }
    }

    /// A table reference `name` or `db.name` at `i`: (db, name, index after it).
    fn table_ref(&self, i: usize) -> Option<(Option<String>, String, usize)> {
        let first = self.ident(i)?;
        if self.t.get(i + 1).is_some_and(|t| t.is_punct('.')) {
            let second = self.ident(i + 2)?;
            return Some((Some(first), second, i + 3));
        }
        Some((self.db.map(str::to_string), first, i + 1))
    }

    /// Skips the words in `words` from `i`.
    fn skip(&self, mut i: usize, words: &[&str]) -> usize {
        while words.contains(&self.word(i)) {
            i += 1;
        }
        i
    }

    fn table_need(&self, privilege: Privilege, i: usize, out: &mut Vec<Need>) -> usize {
        match self.table_ref(i) {
            Some((db, table, next)) => {
                out.push(Need::Table {
                    privilege,
                    db,
                    table,
                });
                next
            }
            None => i,
        }
    }

    /// A comma-separated list of tables from `i` (DROP TABLE a, b), each needing `privilege`.
    fn table_list(&self, privilege: Privilege, mut i: usize, out: &mut Vec<Need>) {
        loop {
            let next = self.table_need(privilege, i, out);
            if next == i || !self.t.get(next).is_some_and(|t| t.is_punct(',')) {
                return;
            }
            i = next + 1;
        }
    }

    /// Tables read: after FROM or JOIN (and the comma-separated ones of a FROM list), outside
    /// function calls (`EXTRACT(YEAR FROM d)`), from `start` on.
    fn reads(&self, start: usize, out: &mut Vec<Need>) {
        // One entry per open parenthesis: whether it opened a subquery.
        let mut parens: Vec<bool> = Vec::new();
        let mut i = start;
        while i < self.t.len() {
            let t = &self.t[i];
            if t.is_punct('(') {
                parens.push(matches!(self.word(i + 1), "SELECT" | "WITH"));
            } else if t.is_punct(')') {
                parens.pop();
            } else if (t.is_word("FROM") || t.is_word("JOIN")) && parens.last() != Some(&false) {
                if self.t.get(i + 1).is_some_and(|n| n.is_punct('(')) {
                    i += 1;
                    continue;
                }
                let mut j = i + 1;
                while let Some((db, table, next)) = self.table_ref(j) {
                    if db
                        .as_deref()
                        .is_some_and(|d| d.eq_ignore_ascii_case("information_schema"))
                        || (db.is_none() && table.eq_ignore_ascii_case("DUAL"))
                    {
                        // Readable by everyone.
                    } else {
                        out.push(Need::Table {
                            privilege: Privilege::Select,
                            db,
                            table,
                        });
                    }
                    // An alias (`t AS a`, `t a`), then a comma continues a FROM list.
                    let mut k = next;
                    if self.word(k) == "AS" {
                        k += 1;
                    }
                    if self.ident(k).is_some() && !is_clause_word(self.word(k)) {
                        k += 1;
                    }
                    if t.is_word("FROM") && self.t.get(k).is_some_and(|n| n.is_punct(',')) {
                        j = k + 1;
                        continue;
                    }
                    break;
                }
            }
            i += 1;
        }
    }
}

/// Words that end a table reference rather than name its alias.
fn is_clause_word(w: &str) -> bool {
    matches!(
        w,
        "WHERE"
            | "GROUP"
            | "ORDER"
            | "LIMIT"
            | "HAVING"
            | "JOIN"
            | "INNER"
            | "LEFT"
            | "RIGHT"
            | "CROSS"
            | "STRAIGHT_JOIN"
            | "NATURAL"
            | "ON"
            | "USING"
            | "UNION"
            | "FOR"
            | "LOCK"
            | "INTO"
            | "SET"
            | "WINDOW"
            | "PARTITION"
            | "USE"
            | "FORCE"
            | "IGNORE"
            | "VALUES"
            | "SELECT"
            | "RETURNING"
            | "EXCEPT"
            | "INTERSECT"
    )
}

fn statement_needs(s: &Stmt, out: &mut Vec<Need>) {
    use Privilege::*;
    let w0 = s.word(0);
    match w0 {
        "SELECT" | "WITH" | "TABLE" | "VALUES" => {
            if w0 == "TABLE" {
                s.table_need(Select, 1, out);
            }
            s.reads(0, out);
        }
        "" if s.t.first().is_some_and(|t| t.is_punct('(')) => s.reads(0, out),
        "INSERT" | "REPLACE" => {
            let i = s.skip(
                1,
                &["LOW_PRIORITY", "DELAYED", "HIGH_PRIORITY", "IGNORE", "INTO"],
            );
            if w0 == "REPLACE" {
                if let Some((db, table, _)) = s.table_ref(i) {
                    out.push(Need::TableAll {
                        privileges: vec![Insert, Delete],
                        db,
                        table,
                    });
                }
            } else {
                s.table_need(Insert, i, out);
            }
            let upsert = s.t.windows(3).any(|w| {
                w[0].is_word("DUPLICATE") && w[1].is_word("KEY") && w[2].is_word("UPDATE")
            });
            if upsert {
                s.table_need(Update, i, out);
            }
            s.reads(i, out);
        }
        "UPDATE" => {
            let i = s.skip(1, &["LOW_PRIORITY", "IGNORE"]);
            s.table_need(Update, i, out);
            s.reads(i, out);
        }
        "DELETE" => {
            let i = s.skip(1, &["LOW_PRIORITY", "QUICK", "IGNORE"]);
            if s.word(i) == "FROM" {
                let next = s.table_need(Delete, i + 1, out);
                s.reads(next, out);
            } else {
                // DELETE t1 FROM t1 JOIN t2 …: the targets before FROM.
                s.table_list(Delete, i, out);
                s.reads(i, out);
            }
        }
        "TRUNCATE" => {
            let i = s.skip(1, &["TABLE"]);
            s.table_need(Drop, i, out);
        }
        "CREATE" | "ALTER" | "DROP" => ddl_needs(s, out),
        "RENAME" if s.word(1) == "TABLE" => {
            let mut i = 2;
            while let Some((db, table, next)) = s.table_ref(i) {
                out.push(Need::Table {
                    privilege: Alter,
                    db: db.clone(),
                    table: table.clone(),
                });
                out.push(Need::Table {
                    privilege: Drop,
                    db,
                    table,
                });
                if s.word(next) != "TO" {
                    break;
                }
                let after = s.table_need(Create, next + 1, out);
                s.table_need(Insert, next + 1, out);
                if !s.t.get(after).is_some_and(|t| t.is_punct(',')) {
                    break;
                }
                i = after + 1;
            }
        }
        "LOAD" => {
            // LOAD DATA [LOCAL] INFILE 'f' [REPLACE|IGNORE] INTO TABLE t
            if let Some(p) = s.t.iter().position(|t| t.is_word("INTO")) {
                s.table_need(Insert, s.skip(p + 1, &["TABLE"]), out);
            }
        }
        "CALL" => {
            if let Some((db, name, _)) = s.table_ref(1) {
                out.push(Need::Routine { db, name });
            }
        }
        "SET" => {
            let global =
                s.t.iter()
                    .any(|t| t.is_word("GLOBAL") || matches!(t.kind, TokenKind::GlobalVar(_)))
                    || s.word(1) == "PASSWORD" && s.word(2) == "FOR";
            if global {
                out.push(Need::Global { name: "SUPER" });
            }
        }
        "USE" => {
            if let Some(db) = s.ident(1) {
                out.push(Need::Database {
                    privilege: Select,
                    db,
                });
            }
        }
        "PREPARE" => {
            // PREPARE s FROM 'text' prepares text the check cannot see from here.
            out.push(Need::Global { name: "SUPER" });
        }
        // Reads and session statements any user may run.
        "SHOW" | "DESCRIBE" | "DESC" | "EXPLAIN" | "HELP" | "DO" | "BEGIN" | "START" | "COMMIT"
        | "ROLLBACK" | "SAVEPOINT" | "RELEASE" | "XA" | "KILL" | "PREVIEW" | "EXECUTE"
        | "DEALLOCATE" | "LOCK" | "UNLOCK" | "HANDLER" | "CHECKSUM" | "ANALYZE" | "CHECK" => {
            s.reads(0, out)
        }
        "GRANT" | "REVOKE" => out.push(Need::Global {
            name: "GRANT OPTION",
        }),
        _ => out.push(Need::Global { name: "SUPER" }),
    }
}

/// CREATE / ALTER / DROP of a table, index, view, database, routine, user …
fn ddl_needs(s: &Stmt, out: &mut Vec<Need>) {
    use Privilege::*;
    let verb = match s.word(0) {
        "CREATE" => Create,
        "ALTER" => Alter,
        _ => Drop,
    };
    let mut i = s.skip(1, &["OR", "REPLACE", "TEMPORARY", "ONLINE", "IGNORE"]);
    // CREATE [ALGORITHM=…] [DEFINER=…] [SQL SECURITY …] VIEW
    if s.word(i) == "ALGORITHM" || s.word(i) == "DEFINER" || s.word(i) == "SQL" {
        if let Some(p) = s.t[i..].iter().position(|t| t.is_word("VIEW")) {
            i += p;
        }
    }
    let if_exists = |j: usize| s.skip(j, &["IF", "NOT", "EXISTS"]);
    match s.word(i) {
        "TABLE" => {
            let j = if_exists(i + 1);
            if verb == Drop {
                s.table_list(Drop, j, out);
            } else {
                let next = s.table_need(verb, j, out);
                // CREATE TABLE … SELECT / LIKE reads its source.
                if s.word(next) == "LIKE" {
                    s.table_need(Select, next + 1, out);
                }
                s.reads(next, out);
            }
        }
        "VIEW" => {
            let j = if_exists(i + 1);
            let privilege = if verb == Drop { Drop } else { CreateView };
            let next = s.table_need(privilege, j, out);
            s.reads(next, out);
        }
        "UNIQUE" | "FULLTEXT" | "SPATIAL" | "INDEX" | "KEY" => {
            if let Some(p) = s.t[i..].iter().position(|t| t.is_word("ON")) {
                s.table_need(Index, i + p + 1, out);
            }
        }
        "DATABASE" | "SCHEMA" => {
            if let Some(db) = s.ident(if_exists(i + 1)) {
                out.push(Need::Database {
                    privilege: verb,
                    db,
                });
            }
        }
        "PROCEDURE" | "FUNCTION" | "EVENT" | "TRIGGER" | "SEQUENCE" => {
            // Routines, events, triggers and sequences belong to a database: the current one
            // unless named.
            let j = if_exists(i + 1);
            let db = match s.table_ref(j) {
                Some((Some(db), _, _)) => Some(db),
                _ => s.db.map(str::to_string),
            };
            if let Some(db) = db {
                out.push(Need::Database {
                    privilege: verb,
                    db,
                });
            } else {
                out.push(Need::Global { name: "SUPER" });
            }
        }
        "USER" | "ROLE" => out.push(Need::Global {
            name: "CREATE USER",
        }),
        _ => out.push(Need::Global { name: "SUPER" }),
    }
}
