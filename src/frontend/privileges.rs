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
use crate::protocol::packets::ErrInfo;

mod needs;
pub use needs::needs;

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
        let on = |p, t: &'static str| table(p, "fund", t);
        let global = |name| vec![Need::Global { name }];
        // (statement, what it needs), in the current database `fund`.
        let cases: Vec<(&str, Vec<Need>)> = vec![
            ("SELECT 1", vec![]),
            (
                "SELECT * FROM accounts a JOIN other.t b ON a.id = b.id",
                vec![on(Select, "accounts"), table(Select, "other", "t")],
            ),
            (
                "select x from a, `b` where y = 1",
                vec![on(Select, "a"), on(Select, "b")],
            ),
            (
                "SELECT EXTRACT(YEAR FROM t.d) FROM x",
                vec![on(Select, "x")],
            ),
            (
                "INSERT INTO t (a) SELECT a FROM u",
                vec![on(Insert, "t"), on(Select, "u")],
            ),
            ("UPDATE fund.t SET a = 1", vec![on(Update, "t")]),
            ("DELETE FROM t WHERE a = 1", vec![on(Delete, "t")]),
            (
                "DROP TABLE IF EXISTS a, b",
                vec![on(Drop, "a"), on(Drop, "b")],
            ),
            ("CREATE TABLE t (a INT)", vec![on(Create, "t")]),
            ("ALTER TABLE t ADD COLUMN b INT", vec![on(Alter, "t")]),
            ("TRUNCATE TABLE t", vec![on(Drop, "t")]),
            ("CREATE INDEX i ON t (a)", vec![on(Index, "t")]),
            (
                "CREATE DATABASE x",
                vec![Need::Database {
                    privilege: Create,
                    db: "x".into(),
                }],
            ),
            ("GRANT ALL ON *.* TO u", global("GRANT OPTION")),
            ("CREATE USER u", global("CREATE USER")),
            ("SET GLOBAL max_connections = 10", global("SUPER")),
            ("SET autocommit = 0", vec![]),
            // Every statement of a multi-statement text.
            ("SELECT 1; DROP TABLE t", vec![on(Drop, "t")]),
        ];
        for (sql, want) in cases {
            assert_eq!(needs(sql, Some("fund")), want, "{sql}");
        }
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
