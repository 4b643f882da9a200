//! The session's part of the audit log ([`crate::frontend::audit`]): its start and end, and
//! one record per command that carries a statement, made after the answer was sent from what
//! the paths noted in `audit_note` (shards, result code, rows). Nothing here runs when
//! `audit.path` is not set.

use std::time::Instant;

use bytes::Bytes;

use super::Session;
use crate::frontend::audit::Record;
use crate::protocol::constants::com;

impl Session {
    /// A `connect` or `disconnect` record (`since`: the session's start, for its length).
    pub(super) fn audit_session(&self, event: &'static str, since: Option<Instant>) {
        if let Some(a) = &self.proxy.audit {
            let mut r = Record::new(
                event,
                self.id,
                &self.user,
                &self.peer,
                self.vars.db.as_deref(),
            );
            r.duration_us = since.map(|s| s.elapsed().as_micros() as u64);
            a.record(r);
        }
    }

    /// The record of one command (`payload` as the client sent it, `started` when it was read).
    pub(super) fn audit_statement(&mut self, payload: &Bytes, started: Instant) {
        let Some(a) = &self.proxy.audit else {
            return;
        };
        let (command, text): (&'static str, Option<String>) = match payload.first().copied() {
            Some(com::QUERY) => (
                "query",
                Some(String::from_utf8_lossy(&payload[1..]).into_owned()),
            ),
            Some(com::INIT_DB) => (
                "init_db",
                Some(String::from_utf8_lossy(&payload[1..]).into_owned()),
            ),
            Some(com::STMT_PREPARE) => (
                "prepare",
                Some(String::from_utf8_lossy(&payload[1..]).into_owned()),
            ),
            Some(com::STMT_EXECUTE) => {
                let id = payload
                    .get(1..5)
                    .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
                let text = id
                    .and_then(|id| self.stmts.get(&id))
                    .map(|s| s.text.to_string());
                ("execute", text)
            }
            Some(com::PROCESS_KILL) => ("process_kill", None),
            Some(com::CHANGE_USER) => ("change_user", None),
            // PING, QUIT, STMT_CLOSE …: no statement, no record.
            _ => return,
        };
        let note = std::mem::take(&mut self.audit_note);
        let mut r = Record::new(
            "statement",
            self.id,
            &self.user,
            &self.peer,
            self.vars.db.as_deref(),
        );
        r.command = Some(command);
        r.statement = text.and_then(|t| a.statement_text(&t));
        r.shards = Some(note.shards);
        r.code = Some(note.code);
        r.rows = Some(note.rows);
        r.duration_us = Some(started.elapsed().as_micros() as u64);
        a.record(r);
    }

    /// Notes the shards a statement runs on, for its audit record (only when auditing).
    pub(super) fn audit_shards<'a>(&mut self, shards: impl Iterator<Item = &'a str>) {
        if self.proxy.audit.is_some() {
            for s in shards {
                if !self.audit_note.shards.iter().any(|x| x == s) {
                    self.audit_note.shards.push(s.to_string());
                }
            }
        }
    }
}
