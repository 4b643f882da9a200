//! The audit log: who did what, one JSON line per session start, session end and statement
//! (`audit.path` in the config; see docs/operations.md for the fields).
//!
//! Written off the statement path so a slow or full disk never slows a statement: a session
//! hands each record to a bounded queue with `try_send` and goes on; one writer thread turns
//! records into JSON lines and writes them through a buffer, flushed whenever the queue runs
//! empty. When the queue is full the record is dropped and counted ([`Audit::dropped`], logged
//! by the writer and shown as `dropped` in the next line it writes), never waited for.
//!
//! Log rotation: on SIGHUP (`server.rs`) [`Audit::reopen`] asks the writer to close and reopen
//! the file by its path, so `mv audit.log audit.log.1; kill -HUP <pid>` rotates it.
//!
//! What a statement record holds is chosen by `audit.statements`: `digest` (the text with
//! literals replaced by `?`: [`digest`]), `text` (as sent), or `none`.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::config::{AuditConfig, AuditStatements};
use crate::lex::{tokenize, TokenKind};

/// One audit record, as the session hands it over (owned: the writer thread serializes it).
#[derive(Debug, Clone, Serialize)]
pub struct Record {
    /// RFC 3339 UTC time, milliseconds.
    pub time: String,
    /// `connect`, `statement` or `disconnect`.
    pub event: &'static str,
    /// The proxy's connection id (the one `CONNECTION_ID()` and `KILL` use).
    pub session: u32,
    pub user: String,
    /// The client's address and port.
    pub client: String,
    /// The session's database when the record was made.
    pub db: Option<String>,
    /// The protocol command of a statement: `query`, `execute`, `prepare`, `init_db` …
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<&'static str>,
    /// The statement's digest or text (per `audit.statements`); absent for `none`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub statement: Option<String>,
    /// The shards the statement ran on (empty: answered by the proxy itself).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shards: Option<Vec<String>>,
    /// 0 for success, else the MariaDB error code the client got.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<u16>,
    /// Rows sent (a result set) or affected (a write).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
    /// Microseconds the statement took (for `disconnect`: the session's length).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_us: Option<u64>,
    /// Records dropped since the previous line because the queue was full.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dropped: Option<u64>,
}

impl Record {
    /// A record of `event` with only the session's identity filled in.
    pub fn new(
        event: &'static str,
        session: u32,
        user: &str,
        client: &str,
        db: Option<&str>,
    ) -> Record {
        Record {
            time: now_rfc3339(),
            event,
            session,
            user: user.to_string(),
            client: client.to_string(),
            db: db.map(str::to_string),
            command: None,
            statement: None,
            shards: None,
            code: None,
            rows: None,
            duration_us: None,
            dropped: None,
        }
    }
}

/// What a session notes about the statement it is running, for its audit record (filled on
/// the paths that know: the shard relay, the executor, the error and result-set senders).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Note {
    pub shards: Vec<String>,
    pub code: u16,
    pub rows: u64,
}

/// The audit log of a running proxy: the queue's sending side and the writer's controls.
pub struct Audit {
    tx: SyncSender<Record>,
    statements: AuditStatements,
    /// Records dropped because the queue was full (since start).
    dropped: Arc<AtomicU64>,
    reopen: Arc<AtomicBool>,
}

impl Audit {
    /// Opens the log file and starts its writer thread; `None` when `audit.path` is not set.
    pub fn start(config: &AuditConfig) -> std::io::Result<Option<Audit>> {
        let Some(path) = config.path.clone() else {
            return Ok(None);
        };
        let path = PathBuf::from(path);
        let file = open(&path)?;
        let (tx, rx) = sync_channel(config.queue.max(1));
        let dropped = Arc::new(AtomicU64::new(0));
        let reopen = Arc::new(AtomicBool::new(false));
        let (d, r) = (dropped.clone(), reopen.clone());
        std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || writer(rx, path, file, d, r))?;
        Ok(Some(Audit {
            tx,
            statements: config.statements,
            dropped,
            reopen,
        }))
    }

    /// Hands a record to the writer; never waits (a full queue drops it and counts it).
    pub fn record(&self, r: Record) {
        match self.tx.try_send(r) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// The statement as the audit log shows it, per `audit.statements`.
    pub fn statement_text(&self, sql: &str) -> Option<String> {
        match self.statements {
            AuditStatements::Digest => Some(digest(sql)),
            AuditStatements::Text => Some(sql.to_string()),
            AuditStatements::None => None,
        }
    }

    /// Records dropped since start because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Asks the writer to reopen the file by its path (log rotation; SIGHUP).
    pub fn reopen(&self) {
        self.reopen.store(true, Ordering::SeqCst);
    }
}

fn open(path: &std::path::Path) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// The writer thread: one JSON line per record, flushed when the queue is empty; reopens the
/// file when asked; ends when every sender is gone.
fn writer(
    rx: Receiver<Record>,
    path: PathBuf,
    file: File,
    dropped: Arc<AtomicU64>,
    reopen: Arc<AtomicBool>,
) {
    let mut out = BufWriter::new(file);
    let mut reported_drops = 0u64;
    loop {
        if reopen.swap(false, Ordering::SeqCst) {
            let _ = out.flush();
            match open(&path) {
                Ok(f) => out = BufWriter::new(f),
                Err(e) => tracing::error!(path = %path.display(), "audit log: cannot reopen: {e}"),
            }
        }
        let first = match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(r) => r,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => break,
        };
        // Everything queued is written, then flushed once.
        let mut next = Some(first);
        while let Some(mut r) = next {
            let total = dropped.load(Ordering::Relaxed);
            if total > reported_drops {
                tracing::warn!(
                    dropped = total - reported_drops,
                    "audit log: queue full, records dropped"
                );
                r.dropped = Some(total - reported_drops);
                reported_drops = total;
            }
            let line = serde_json::to_string(&r).unwrap_or_default();
            if let Err(e) = writeln!(out, "{line}") {
                tracing::error!(path = %path.display(), "audit log: write failed: {e}");
            }
            next = rx.try_recv().ok();
        }
        let _ = out.flush();
    }
    let _ = out.flush();
}

/// The statement with its literals (strings, numbers) replaced by `?`, whitespace and comments
/// collapsed: the same shape for every execution of one statement, without the data.
pub fn digest(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len().min(1024));
    let mut last_end = 0usize;
    for t in tokenize(sql) {
        let gap = sql.get(last_end..t.start).unwrap_or("");
        if !out.is_empty() && !gap.is_empty() {
            out.push(' ');
        }
        match &t.kind {
            TokenKind::Str | TokenKind::Number => out.push('?'),
            _ => out.push_str(sql.get(t.start..t.end).unwrap_or("")),
        }
        last_end = t.end;
    }
    out
}

/// The current time as RFC 3339 UTC with milliseconds (`2026-12-02T00:41:07.123Z`).
pub fn now_rfc3339() -> String {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    rfc3339(d.as_secs() as i64, d.subsec_millis())
}

fn rfc3339(secs: i64, millis: u32) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_hide_literals() {
        assert_eq!(
            digest("SELECT * FROM t WHERE id = 42 AND name = 'bob'  -- x"),
            "SELECT * FROM t WHERE id = ? AND name = ?"
        );
        assert_eq!(
            digest("INSERT INTO t VALUES (1,'a'),(2, \"b\")"),
            "INSERT INTO t VALUES (?,?),(?, ?)"
        );
    }

    #[test]
    fn times() {
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_796_172_067, 5), "2026-12-02T00:41:07.005Z");
        assert_eq!(rfc3339(951_782_400, 0), "2000-02-29T00:00:00.000Z");
    }
}
