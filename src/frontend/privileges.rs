//! What a proxy user may do: the databases it may use and the privileges its role gives
//! (`[[users]] databases`, `role`), checked before a statement is planned. A statement outside
//! the user's rights is answered with MariaDB's own error for it and never reaches a shard;
//! the session goes on.
//!
//! The proxy logs in to the backends as one user with broad rights, so this check is the only
//! thing standing between a restricted proxy user and the data: it errs towards refusing.
//! Every statement of a multi-statement text is checked. What the check reads from the text
//! (the statement's leading keywords and the tables after `FROM`, `JOIN`, `INTO`, `UPDATE`,
//! `TABLE` …) comes from the lexer (`crate::lex`), as the classifier's facts do; a statement it
//! does not recognise needs the `all` role.
//!
//! The decisions are types: a statement [`needs`] a list of [`Need`]s; [`Rights::check`]
//! returns the first one the user lacks as a [`Denied`], which renders MariaDB's code,
//! SQLSTATE and message for it:
//! - 1142 `SELECT command denied to user 'u'@'host' for table `db`.`t`` for a table,
//! - 1044 `Access denied for user 'u'@'%' to database 'db'` for a database,
//! - 1227 `Access denied; you need (at least one of) the SUPER privilege(s) for this
//!   operation` for a global privilege,
//! - 1370 `execute command denied to user 'u'@'host' for routine 'db.p'` for CALL.

use std::collections::HashSet;

use crate::config::{Privilege, Role, RoleSetting, User};
use crate::lex::{tokenize, Token, TokenKind};
use crate::protocol::packets::ErrInfo;

/// A user's rights, built from its `[[users]]` entry. `None` from [`Rights::of_user`] means
/// unrestricted: the check is skipped and costs nothing.
#[derive(Debug, Clone, PartialEq)]
pub struct Rights {
    /// Databases the user may use (lowercase); `None`: all.
    databases: Option<HashSet<String>>,
    /// Privileges the role gives.
    privileges: HashSet<Privilege>,
}

/// One thing a statement needs.
#[derive(Debug, Clone, PartialEq)]
pub enum Need {
    /// A privilege on a table (`db` is the current database for an unqualified name; `None`:
    /// no database selected, the server answers 1046 itself).
    Table {
        privilege: Privilege,
        db: Option<String>,
        table: String,
    },
    /// Several privileges on a table at once (REPLACE: INSERT and DELETE); MariaDB names
    /// those the user lacks together (`INSERT, DELETE command denied …`).
    TableAll {
        privileges: Vec<Privilege>,
        db: Option<String>,
        table: String,
    },
    /// A privilege on a database (USE, CREATE/DROP/ALTER DATABASE, CREATE PROCEDURE …).
    Database { privilege: Privilege, db: String },
    /// EXECUTE on a stored routine (CALL).
    Routine { db: Option<String>, name: String },
    /// A global privilege (GRANT, CREATE USER, SET GLOBAL, FLUSH, replication …), named as
    /// MariaDB names it in its message.
    Global { name: &'static str },
}

/// A refusal, with the identity MariaDB puts in its message.
#[derive(Debug, Clone, PartialEq)]
pub struct Denied {
    /// What was refused.
    pub need: Need,
    /// The proxy user.
    pub user: String,
    /// The client's host (IP address), as MariaDB shows it for table and routine refusals.
    pub host: String,
}

impl Denied {
    /// MariaDB's error code.
    pub fn code(&self) -> u16 {
        match self.need {
            Need::Table { .. } | Need::TableAll { .. } => 1142,
            Need::Database { .. } => 1044,
            Need::Routine { .. } => 1370,
            Need::Global { .. } => 1227,
        }
    }

    /// MariaDB's SQLSTATE (42000 for all four).
    pub fn sqlstate(&self) -> &'static str {
        "42000"
    }

    /// MariaDB's message text.
    pub fn message(&self) -> String {
        let (u, h) = (&self.user, &self.host);
        match &self.need {
            Need::Table {
                privilege,
                db,
                table,
            } => format!(
                "{} command denied to user '{u}'@'{h}' for table `{}`.`{table}`",
                privilege.sql_name(),
                db.as_deref().unwrap_or("")
            ),
            // MariaDB names the account's host here (the proxy's users have no host: '%').
            Need::TableAll {
                privileges,
                db,
                table,
            } => format!(
                "{} command denied to user '{u}'@'{h}' for table `{}`.`{table}`",
                privileges
                    .iter()
                    .map(|p| p.sql_name())
                    .collect::<Vec<_>>()
                    .join(", "),
                db.as_deref().unwrap_or("")
            ),
            Need::Database { db, .. } => {
                format!("Access denied for user '{u}'@'%' to database '{db}'")
            }
            Need::Routine { db, name } => format!(
                "execute command denied to user '{u}'@'{h}' for routine '{}.{name}'",
                db.as_deref().unwrap_or("")
            ),
            Need::Global { name } => format!(
                "Access denied; you need (at least one of) the {name} privilege(s) for this operation"
            ),
        }
    }

    /// The error packet's contents.
    pub fn to_err_info(&self) -> ErrInfo {
        ErrInfo {
            code: self.code(),
            sqlstate: self.sqlstate().to_string(),
            message: self.message(),
        }
    }
}

impl Role {
    /// The privileges a named role gives.
    pub fn privileges(self) -> HashSet<Privilege> {
        use Privilege::*;
        let read = [Select].as_slice();
        let write = [Select, Insert, Update, Delete, Execute].as_slice();
        let ddl = [
            Select, Insert, Update, Delete, Execute, Create, Drop, Alter, Index, CreateView,
            Trigger,
        ]
        .as_slice();
        match self {
            Role::ReadOnly => read.iter().copied().collect(),
            Role::ReadWrite => write.iter().copied().collect(),
            Role::Ddl => ddl.iter().copied().collect(),
            Role::All => Privilege::ALL.iter().copied().collect(),
        }
    }
}

impl Rights {
    /// The user's rights; `None` when the user may do everything (no `databases`, role `all`
    /// or none).
    pub fn of_user(u: &User) -> Option<Rights> {
        let privileges = match &u.role {
            None => Role::All.privileges(),
            Some(RoleSetting::Named(r)) => r.privileges(),
            Some(RoleSetting::Kinds(k)) => k.iter().copied().collect(),
        };
        let databases = u
            .databases
            .as_ref()
            .map(|d| d.iter().map(|d| d.to_ascii_lowercase()).collect());
        let all = privileges.len() == Privilege::ALL.len();
        if all && databases.is_none() {
            return None;
        }
        Some(Rights {
            databases,
            privileges,
        })
    }

    /// Whether the user may use database `db` at all (`information_schema` always).
    pub fn may_use(&self, db: &str) -> bool {
        let db = db.to_ascii_lowercase();
        db == "information_schema" || self.databases.as_ref().is_none_or(|set| set.contains(&db))
    }

    fn allows(&self, need: &Need) -> bool {
        match need {
            Need::Table { privilege, db, .. } => {
                // Reading information_schema needs no grant; writing it is refused by the
                // server itself.
                let db_ok = db.as_deref().is_none_or(|d| self.may_use(d));
                db_ok && self.privileges.contains(privilege)
            }
            Need::TableAll { privileges, db, .. } => {
                let db_ok = db.as_deref().is_none_or(|d| self.may_use(d));
                db_ok && privileges.iter().all(|p| self.privileges.contains(p))
            }
            Need::Database { privilege, db } => {
                self.may_use(db) && self.privileges.contains(privilege)
            }
            Need::Routine { db, .. } => {
                db.as_deref().is_none_or(|d| self.may_use(d))
                    && self.privileges.contains(&Privilege::Execute)
            }
            Need::Global { .. } => self.privileges.contains(&Privilege::Admin),
        }
    }

    /// The part of a refused need MariaDB names: of several table privileges, those lacking
    /// (all of them when the database itself is not the user's).
    fn lacking(&self, need: Need) -> Need {
        match need {
            Need::TableAll {
                privileges,
                db,
                table,
            } => {
                let db_ok = db.as_deref().is_none_or(|d| self.may_use(d));
                let mut missing: Vec<Privilege> = privileges
                    .into_iter()
                    .filter(|p| !db_ok || !self.privileges.contains(p))
                    .collect();
                match missing.len() {
                    1 => Need::Table {
                        privilege: missing.remove(0),
                        db,
                        table,
                    },
                    _ => Need::TableAll {
                        privileges: missing,
                        db,
                        table,
                    },
                }
            }
            other => other,
        }
    }

    /// The first need of `sql` the user lacks, as MariaDB would refuse it.
    pub fn check(
        &self,
        sql: &str,
        current_db: Option<&str>,
        user: &str,
        host: &str,
    ) -> Result<(), Denied> {
        for need in needs(sql, current_db) {
            if !self.allows(&need) {
                return Err(Denied {
                    need: self.lacking(need),
                    user: user.to_string(),
                    host: host.to_string(),
                });
            }
        }
        Ok(())
    }

    /// `USE db` / COM_INIT_DB / the database of the handshake.
    pub fn check_database(&self, db: &str, user: &str, host: &str) -> Result<(), Denied> {
        if self.may_use(db) {
            return Ok(());
        }
        Err(Denied {
            need: Need::Database {
                privilege: Privilege::Select,
                db: db.to_string(),
            },
            user: user.to_string(),
            host: host.to_string(),
        })
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    fn table(p: Privilege, db: &str, t: &str) -> Need {
        Need::Table {
            privilege: p,
            db: Some(db.into()),
            table: t.into(),
        }
    }

    fn rights(role: Role, dbs: Option<&[&str]>) -> Rights {
        Rights {
            databases: dbs.map(|d| d.iter().map(|s| s.to_string()).collect()),
            privileges: role.privileges(),
        }
    }

    #[test]
    fn needs_of_common_statements() {
        use Privilege::*;
        let n = |sql| needs(sql, Some("fund"));
        assert_eq!(n("SELECT 1"), vec![]);
        assert_eq!(
            n("SELECT * FROM accounts a JOIN other.t b ON a.id = b.id"),
            vec![
                table(Select, "fund", "accounts"),
                table(Select, "other", "t")
            ]
        );
        assert_eq!(
            n("select x from a, `b` where y = 1"),
            vec![table(Select, "fund", "a"), table(Select, "fund", "b")]
        );
        assert_eq!(
            n("SELECT EXTRACT(YEAR FROM t.d) FROM x"),
            vec![table(Select, "fund", "x")]
        );
        assert_eq!(
            n("INSERT INTO t (a) SELECT a FROM u"),
            vec![table(Insert, "fund", "t"), table(Select, "fund", "u")]
        );
        assert_eq!(
            n("UPDATE fund.t SET a = 1"),
            vec![table(Update, "fund", "t")]
        );
        assert_eq!(
            n("DELETE FROM t WHERE a = 1"),
            vec![table(Delete, "fund", "t")]
        );
        assert_eq!(
            n("DROP TABLE IF EXISTS a, b"),
            vec![table(Drop, "fund", "a"), table(Drop, "fund", "b")]
        );
        assert_eq!(
            n("CREATE TABLE t (a INT)"),
            vec![table(Create, "fund", "t")]
        );
        assert_eq!(
            n("ALTER TABLE t ADD COLUMN b INT"),
            vec![table(Alter, "fund", "t")]
        );
        assert_eq!(n("TRUNCATE TABLE t"), vec![table(Drop, "fund", "t")]);
        assert_eq!(
            n("CREATE INDEX i ON t (a)"),
            vec![table(Index, "fund", "t")]
        );
        assert_eq!(
            n("CREATE DATABASE x"),
            vec![Need::Database {
                privilege: Create,
                db: "x".into()
            }]
        );
        assert_eq!(
            n("GRANT ALL ON *.* TO u"),
            vec![Need::Global {
                name: "GRANT OPTION"
            }]
        );
        assert_eq!(
            n("CREATE USER u"),
            vec![Need::Global {
                name: "CREATE USER"
            }]
        );
        assert_eq!(
            n("SET GLOBAL max_connections = 10"),
            vec![Need::Global { name: "SUPER" }]
        );
        assert_eq!(n("SET autocommit = 0"), vec![]);
        // Every statement of a multi-statement text.
        assert_eq!(n("SELECT 1; DROP TABLE t"), vec![table(Drop, "fund", "t")]);
    }

    #[test]
    fn roles_and_databases() {
        let ro = rights(Role::ReadOnly, Some(&["fund"]));
        let host = "127.0.0.1";
        assert!(ro
            .check("SELECT * FROM accounts", Some("fund"), "ro", host)
            .is_ok());
        assert!(ro
            .check(
                "SELECT * FROM information_schema.TABLES",
                Some("fund"),
                "ro",
                host
            )
            .is_ok());
        let e = ro
            .check("INSERT INTO accounts VALUES (1)", Some("fund"), "ro", host)
            .unwrap_err();
        assert_eq!(e.code(), 1142);
        assert_eq!(
            e.message(),
            "INSERT command denied to user 'ro'@'127.0.0.1' for table `fund`.`accounts`"
        );
        let e = ro
            .check("SELECT * FROM other.t", Some("fund"), "ro", host)
            .unwrap_err();
        assert_eq!(
            e.message(),
            "SELECT command denied to user 'ro'@'127.0.0.1' for table `other`.`t`"
        );
        let e = ro.check_database("other", "ro", host).unwrap_err();
        assert_eq!((e.code(), e.sqlstate()), (1044, "42000"));
        assert_eq!(
            e.message(),
            "Access denied for user 'ro'@'%' to database 'other'"
        );
        let rw = rights(Role::ReadWrite, None);
        assert!(rw.check("DELETE FROM t", Some("x"), "rw", host).is_ok());
        assert_eq!(
            rw.check("DROP TABLE t", Some("x"), "rw", host)
                .unwrap_err()
                .code(),
            1142
        );
        let ddl = rights(Role::Ddl, None);
        assert!(ddl.check("DROP TABLE t", Some("x"), "d", host).is_ok());
        let e = ddl
            .check("CREATE USER x", Some("x"), "d", host)
            .unwrap_err();
        assert_eq!(e.code(), 1227);
    }
}
