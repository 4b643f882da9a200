//! The SQL an online resharding runs on the shards themselves: its own connections, the
//! tables' columns and primary keys, the schema copied to a new shard, the change-log
//! triggers, and rows read and written in a form that keeps every byte.
//!
//! # How rows travel
//! Rows are read as `HEX(CAST(col AS BINARY))` and written back as `UNHEX('…')`: the bytes of
//! every value, whatever the column's character set (a latin1 text is not re-encoded, a BLOB
//! is not mistaken for text), and MariaDB converts the binary string to the column's type on
//! insert (`'12'` into an INT is 12, `'2026-12-02'` into a DATE). Known gap: BIT columns
//! (their text form is not their bytes) and generated columns (skipped: MariaDB computes them).
//! Primary-key values are also read as text, to page with `(pk) > ('…')` and to name rows,
//! compared under the column's own collation.
//!
//! # The change log
//! Before the copy's snapshot, every moving table of every source gets three triggers (after
//! insert, update, delete) that write the primary key of the changed row (old and new for an
//! update) as a JSON array into `shardproxy.reshard_changes` on that server, in the same
//! transaction as the change. See docs/resharding.md for why this misses no change.

use bytes::Bytes;

use crate::backend::conn::{BackendConn, ConnectParams, QueryResult};
use crate::config::Config;
use crate::protocol::constants::DEFAULT_COLLATION;

/// A server the move works on: its address and one connection of the backend login.
pub struct Db {
    /// Address, for messages.
    pub addr: String,
    /// The connection.
    conn: BackendConn,
}

/// One row as read: each value as its bytes (`None`: NULL).
pub type Row = Vec<Option<Bytes>>;

impl Db {
    /// Connects the backend login of `config` to `addr`.
    pub async fn connect(addr: &str, config: &Config) -> Result<Db, String> {
        let p = ConnectParams {
            addr: addr.to_string(),
            user: config.backend.user.clone(),
            password: config.backend.password.clone(),
            relay_caps: 0,
            collation: DEFAULT_COLLATION,
            connect_timeout: std::time::Duration::from_millis(config.backend.connect_timeout_ms),
            read_timeout: None,
            // Known gap, as for the failover's own connections: no backend TLS yet.
            tls: None,
        };
        let conn = BackendConn::connect(&p)
            .await
            .map_err(|e| format!("{addr}: {e}"))?;
        Ok(Db {
            addr: addr.to_string(),
            conn,
        })
    }

    /// Runs a statement; returns the affected rows.
    pub async fn exec(&mut self, sql: &str) -> Result<u64, String> {
        match self.conn.query(sql).await {
            Ok(QueryResult::Ok(ok)) => Ok(ok.affected_rows),
            Ok(QueryResult::Rows(_)) => Ok(0),
            Err(e) => Err(format!("{}: {e} (in: {})", self.addr, shorten(sql))),
        }
    }

    /// Runs a query; returns its rows.
    pub async fn rows(&mut self, sql: &str) -> Result<Vec<Row>, String> {
        match self.conn.query(sql).await {
            Ok(QueryResult::Rows(rs)) => Ok(rs.rows),
            Ok(QueryResult::Ok(_)) => Ok(Vec::new()),
            Err(e) => Err(format!("{}: {e} (in: {})", self.addr, shorten(sql))),
        }
    }

    /// The first column of the first row, as text.
    pub async fn value(&mut self, sql: &str) -> Result<Option<String>, String> {
        Ok(self
            .rows(sql)
            .await?
            .first()
            .and_then(|r| r.first().cloned().flatten())
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    /// Switches the connection's current database (for `SHOW CREATE TABLE`'s unqualified text).
    pub async fn use_db(&mut self, db: &str) -> Result<(), String> {
        self.conn
            .init_db(db)
            .await
            .map_err(|e| format!("{}: USE {db}: {e}", self.addr))
    }
}

/// At most 200 characters of a statement, for error messages.
fn shorten(sql: &str) -> String {
    if sql.len() <= 200 {
        sql.to_string()
    } else {
        let mut end = 200;
        while !sql.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}…", &sql[..end])
    }
}

/// `` `name` `` with backticks doubled.
pub fn ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// A string literal: `'it\'s'`, backslash, quote and NUL escaped.
pub fn literal(bytes: &[u8]) -> String {
    let mut v = Vec::with_capacity(bytes.len() + 2);
    v.push(b'\'');
    for &b in bytes {
        match b {
            b'\'' => v.extend_from_slice(b"\\'"),
            b'\\' => v.extend_from_slice(b"\\\\"),
            0 => v.extend_from_slice(b"\\0"),
            _ => v.push(b),
        }
    }
    v.push(b'\'');
    // Key values come from utf8mb4 text; other bytes would not survive a `&str` statement.
    String::from_utf8_lossy(&v).into_owned()
}

/// A value read as hex, written back: `UNHEX('…')` or `NULL`.
pub fn unhex(v: &Option<Bytes>) -> String {
    match v {
        None => "NULL".into(),
        Some(h) => format!("UNHEX('{}')", String::from_utf8_lossy(h)),
    }
}

/// What the move needs to know of one table on one server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableInfo {
    /// Its database.
    pub db: String,
    /// Its name.
    pub name: String,
    /// The columns the move copies (generated ones left out), in table order.
    pub columns: Vec<String>,
    /// The primary key's columns, in key order.
    pub pk: Vec<String>,
    /// The shard key column (`None` for a reference table).
    pub key: Option<String>,
}

impl TableInfo {
    /// `` `db`.`t` ``.
    pub fn qualified(&self) -> String {
        format!("{}.{}", ident(&self.db), ident(&self.name))
    }

    /// The select list every read uses: the primary key as text, the shard key as text (if
    /// any), then every column as hex. [`TableInfo::split`] takes a row of it apart.
    pub fn select_list(&self) -> String {
        let mut parts: Vec<String> = self.pk.iter().map(|c| ident(c)).collect();
        if let Some(k) = &self.key {
            parts.push(ident(k));
        }
        parts.extend(
            self.columns
                .iter()
                .map(|c| format!("HEX(CAST({} AS BINARY))", ident(c))),
        );
        parts.join(", ")
    }

    /// A row of [`TableInfo::select_list`] as (primary key values, shard key text, hex values).
    pub fn split<'a>(
        &self,
        row: &'a Row,
    ) -> (&'a [Option<Bytes>], Option<String>, &'a [Option<Bytes>]) {
        let n = self.pk.len();
        let (pk, rest) = row.split_at(n.min(row.len()));
        match &self.key {
            Some(_) => {
                let key = rest
                    .first()
                    .cloned()
                    .flatten()
                    .map(|b| String::from_utf8_lossy(&b).into_owned());
                (pk, key, rest.get(1..).unwrap_or(&[]))
            }
            None => (pk, None, rest),
        }
    }

    /// `(`a`, `b`)`: the primary key as a row constructor.
    pub fn pk_tuple(&self) -> String {
        let cols: Vec<String> = self.pk.iter().map(|c| ident(c)).collect();
        format!("({})", cols.join(", "))
    }

    /// `REPLACE INTO t (cols) VALUES (…), (…)` of rows' hex values.
    pub fn replace_sql(&self, rows: &[&[Option<Bytes>]]) -> String {
        let cols: Vec<String> = self.columns.iter().map(|c| ident(c)).collect();
        let values: Vec<String> = rows
            .iter()
            .map(|r| {
                let v: Vec<String> = r.iter().map(unhex).collect();
                format!("({})", v.join(", "))
            })
            .collect();
        format!(
            "REPLACE INTO {} ({}) VALUES {}",
            self.qualified(),
            cols.join(", "),
            values.join(", ")
        )
    }

    /// `DELETE FROM t WHERE (pk) IN ((…), …)` of primary keys given as SQL literals.
    pub fn delete_sql(&self, keys: &[Vec<String>]) -> String {
        let tuples: Vec<String> = keys.iter().map(|k| format!("({})", k.join(", "))).collect();
        format!(
            "DELETE FROM {} WHERE {} IN ({})",
            self.qualified(),
            self.pk_tuple(),
            tuples.join(", ")
        )
    }
}

/// The databases of the server holding a table named `name` (`db.t`, or `t` in any database
/// but the system ones).
pub async fn resolve(db: &mut Db, name: &str) -> Result<Vec<(String, String)>, String> {
    let (schema, table) = match name.split_once('.') {
        Some((d, t)) => (Some(d.to_string()), t.to_string()),
        None => (None, name.to_string()),
    };
    let mut sql = format!(
        "SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.TABLES WHERE TABLE_NAME = {} \
         AND TABLE_TYPE = 'BASE TABLE' AND TABLE_SCHEMA NOT IN \
         ('mysql', 'information_schema', 'performance_schema', 'sys', 'shardproxy')",
        literal(table.as_bytes())
    );
    if let Some(d) = &schema {
        sql += &format!(" AND TABLE_SCHEMA = {}", literal(d.as_bytes()));
    }
    sql += " ORDER BY TABLE_SCHEMA";
    Ok(db
        .rows(&sql)
        .await?
        .into_iter()
        .filter_map(|r| {
            let text = |i: usize| {
                r.get(i)
                    .cloned()
                    .flatten()
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
            };
            Some((text(0)?, text(1)?))
        })
        .collect())
}

/// Columns and primary key of `db.t` (an error for a table without a primary key: the copy
/// pages and the catch-up names rows by it).
pub async fn table_info(
    conn: &mut Db,
    db: &str,
    table: &str,
    key: Option<&str>,
) -> Result<TableInfo, String> {
    let (d, t) = (literal(db.as_bytes()), literal(table.as_bytes()));
    let text = |r: &Row| {
        r.first()
            .cloned()
            .flatten()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    };
    let columns: Vec<String> = conn
        .rows(&format!(
            "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = {d} AND \
             TABLE_NAME = {t} AND EXTRA NOT LIKE '%GENERATED%' ORDER BY ORDINAL_POSITION"
        ))
        .await?
        .iter()
        .map(text)
        .collect();
    let pk: Vec<String> = conn
        .rows(&format!(
            "SELECT COLUMN_NAME FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = {d} AND \
             TABLE_NAME = {t} AND INDEX_NAME = 'PRIMARY' ORDER BY SEQ_IN_INDEX"
        ))
        .await?
        .iter()
        .map(text)
        .collect();
    if pk.is_empty() {
        return Err(format!(
            "{}: table {db}.{table} has no primary key; resharding copies and names rows by it",
            conn.addr
        ));
    }
    let key = match key {
        Some(k) => Some(
            columns
                .iter()
                .find(|c| c.eq_ignore_ascii_case(k))
                .cloned()
                .ok_or_else(|| format!("{}: {db}.{table} has no key column {k}", conn.addr))?,
        ),
        None => None,
    };
    Ok(TableInfo {
        db: db.to_string(),
        name: table.to_string(),
        columns,
        pk,
        key,
    })
}

/// Creates `db.t` on `target` as `source` defines it (nothing if it exists already).
pub async fn copy_schema(
    source: &mut Db,
    target: &mut Db,
    db: &str,
    table: &str,
) -> Result<(), String> {
    let rows = source
        .rows(&format!("SHOW CREATE TABLE {}.{}", ident(db), ident(table)))
        .await?;
    let create = rows
        .first()
        .and_then(|r| r.get(1).cloned().flatten())
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .ok_or_else(|| format!("{}: no definition of {db}.{table}", source.addr))?;
    let create = create.replacen("CREATE TABLE", "CREATE TABLE IF NOT EXISTS", 1);
    target
        .exec(&format!("CREATE DATABASE IF NOT EXISTS {}", ident(db)))
        .await?;
    target.use_db(db).await?;
    target.exec(&create).await?;
    Ok(())
}

/// The change log and the state table, on every server the move uses.
pub async fn create_log(db: &mut Db) -> Result<(), String> {
    db.exec("CREATE DATABASE IF NOT EXISTS shardproxy").await?;
    db.exec(
        "CREATE TABLE IF NOT EXISTS shardproxy.reshard_changes (seq BIGINT UNSIGNED NOT NULL \
         AUTO_INCREMENT PRIMARY KEY, db_name VARCHAR(64) NOT NULL, table_name VARCHAR(64) NOT \
         NULL, pk LONGTEXT NOT NULL) ENGINE=InnoDB",
    )
    .await?;
    db.exec(
        "CREATE TABLE IF NOT EXISTS shardproxy.reshard (id INT NOT NULL PRIMARY KEY, state \
         LONGTEXT NOT NULL) ENGINE=InnoDB",
    )
    .await?;
    Ok(())
}

/// The three trigger names of a table.
fn trigger_names(t: &TableInfo) -> [(String, &'static str); 3] {
    let base = format!("shardproxy_rs_{}", t.name);
    [
        (format!("{base}_ai"), "INSERT"),
        (format!("{base}_au"), "UPDATE"),
        (format!("{base}_ad"), "DELETE"),
    ]
}

/// Creates the change-log triggers of `t` (kept if they exist: a resumed move reuses them).
/// `CREATE TRIGGER` waits for the transactions using the table, so every change committed
/// after it returns is logged.
pub async fn create_triggers(db: &mut Db, t: &TableInfo) -> Result<(), String> {
    let pk = |row: &str| {
        let cols: Vec<String> = t.pk.iter().map(|c| format!("{row}.{}", ident(c))).collect();
        format!("JSON_ARRAY({})", cols.join(", "))
    };
    let head = format!(
        "INSERT INTO shardproxy.reshard_changes (db_name, table_name, pk) VALUES ({}, {}, ",
        literal(t.db.as_bytes()),
        literal(t.name.as_bytes())
    );
    for (name, event) in trigger_names(t) {
        let body = match event {
            "INSERT" => format!("{head}{})", pk("NEW")),
            "DELETE" => format!("{head}{})", pk("OLD")),
            _ => format!(
                "{head}{}), ({}, {}, {})",
                pk("OLD"),
                literal(t.db.as_bytes()),
                literal(t.name.as_bytes()),
                pk("NEW")
            ),
        };
        db.exec(&format!(
            "CREATE TRIGGER IF NOT EXISTS {}.{} AFTER {event} ON {} FOR EACH ROW {body}",
            ident(&t.db),
            ident(&name),
            t.qualified()
        ))
        .await?;
    }
    Ok(())
}

/// Drops the change-log triggers of `t` (nothing if they are gone).
pub async fn drop_triggers(db: &mut Db, t: &TableInfo) -> Result<(), String> {
    for (name, _) in trigger_names(t) {
        db.exec(&format!(
            "DROP TRIGGER IF EXISTS {}.{}",
            ident(&t.db),
            ident(&name)
        ))
        .await?;
    }
    Ok(())
}

/// Reads the persisted state (`None`: no move was ever started here).
pub async fn load_state(db: &mut Db) -> Result<Option<String>, String> {
    let exists = db
        .value(
            "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'shardproxy' \
             AND TABLE_NAME = 'reshard'",
        )
        .await?;
    if exists.as_deref() != Some("1") {
        return Ok(None);
    }
    db.value("SELECT state FROM shardproxy.reshard WHERE id = 1")
        .await
}

/// Writes the persisted state.
pub async fn save_state(db: &mut Db, json: &str) -> Result<(), String> {
    db.exec(&format!(
        "REPLACE INTO shardproxy.reshard (id, state) VALUES (1, {})",
        literal(json.as_bytes())
    ))
    .await
    .map(|_| ())
}

/// Saves `json` (the state `done` of a cutover shared by several proxies) only if no proxy
/// fenced cutover `id` ([`fence_cutover`]): `Ok(false)` when one did. Both are one `UPDATE`
/// of the same row, which InnoDB runs one after the other: either the fence comes first (this
/// save changes nothing) or this save does (the fence then finds the phase past `cutover`).
pub async fn save_state_unfenced(db: &mut Db, json: &str, id: &str) -> Result<bool, String> {
    let n = db
        .exec(&format!(
            "UPDATE shardproxy.reshard SET state = {} WHERE id = 1 AND NOT \
             (JSON_VALUE(state, '$.fenced') <=> {})",
            literal(json.as_bytes()),
            literal(id.as_bytes())
        ))
        .await?;
    Ok(n == 1)
}

/// Fences cutover `id` while the persisted phase is `cutover_phase` (the stored text of the
/// cutover phase): the driver's [`save_state_unfenced`] of `done` for it fails from then on.
/// Returns the state as it is afterwards (its phase tells whether `done` came first).
pub async fn fence_cutover(
    db: &mut Db,
    id: &str,
    cutover_phase: &str,
) -> Result<Option<String>, String> {
    db.exec(&format!(
        "UPDATE shardproxy.reshard SET state = JSON_SET(state, '$.fenced', {}) WHERE id = 1 \
         AND JSON_VALUE(state, '$.phase') = {}",
        literal(id.as_bytes()),
        literal(cutover_phase.as_bytes())
    ))
    .await?;
    load_state(db).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> TableInfo {
        TableInfo {
            db: "fund".into(),
            name: "acc".into(),
            columns: vec!["id".into(), "v".into()],
            pk: vec!["id".into()],
            key: Some("id".into()),
        }
    }

    #[test]
    fn literals_and_statements() {
        assert_eq!(literal(b"it's\\"), "'it\\'s\\\\'");
        assert_eq!(literal(b"a\0b"), "'a\\0b'");
        assert_eq!(literal("é".as_bytes()), "'é'");
        assert_eq!(ident("a`b"), "`a``b`");
        let t = info();
        assert_eq!(
            t.select_list(),
            "`id`, `id`, HEX(CAST(`id` AS BINARY)), HEX(CAST(`v` AS BINARY))"
        );
        let row: Row = vec![
            Some(Bytes::from("7")),
            Some(Bytes::from("7")),
            Some(Bytes::from("37")),
            None,
        ];
        let (pk, key, values) = t.split(&row);
        assert_eq!(pk.len(), 1);
        assert_eq!(key.as_deref(), Some("7"));
        assert_eq!(
            t.replace_sql(&[values]),
            "REPLACE INTO `fund`.`acc` (`id`, `v`) VALUES (UNHEX('37'), NULL)"
        );
        assert_eq!(
            t.delete_sql(&[vec!["'7'".into()], vec!["'8'".into()]]),
            "DELETE FROM `fund`.`acc` WHERE (`id`) IN (('7'), ('8'))"
        );
    }
}
