//! The session's side of `frontend::privileges`: the logged-in user's rights, the check of
//! each statement, database and prepared statement against them, and the per-user session
//! limit. A refused statement never reaches a shard; the session goes on.
//!
//! A user without restrictions has no [`Rights`] (`None`): the statement path then makes no
//! check at all, so the common case costs nothing.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::{Flow, Session};
use crate::exec::Diagnostics;
use crate::frontend::privileges::Denied;
use crate::protocol::packets::ErrInfo;
use crate::proxy::UserAuth;

/// One of a user's sessions, counted against its `max_connections` while it lives.
pub(super) struct UserSlot(Arc<UserAuth>);

impl Drop for UserSlot {
    fn drop(&mut self) {
        self.0.sessions.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Session {
    /// The client's host, as MariaDB names it in its messages.
    pub(super) fn client_host(&self) -> &str {
        self.peer
            .rsplit_once(':')
            .map_or(self.peer.as_str(), |(h, _)| h)
    }

    /// Takes the user's rights and a session slot at login (or COM_CHANGE_USER). `Err`: the
    /// user already has `max_connections` sessions (MariaDB's 1226).
    pub(super) fn take_user_rights(&mut self, auth: &Arc<UserAuth>) -> Result<(), ErrInfo> {
        self.user_slot = None;
        let n = auth.sessions.fetch_add(1, Ordering::Relaxed) + 1;
        let slot = UserSlot(auth.clone());
        if let Some(max) = auth.max_connections {
            if n > max {
                tracing::info!(session = self.id, client = %self.peer, user = %self.user, max, "login refused: max_connections of the user reached");
                return Err(ErrInfo::new(
                    (1226, "42000"),
                    format!(
                        "User '{}' has exceeded the 'max_user_connections' resource (current value: {max})",
                        self.user
                    ),
                ));
            }
        }
        self.user_slot = Some(slot);
        self.rights = auth.rights.clone();
        self.read_from = auth.read_from;
        Ok(())
    }

    /// The logged-in user's rights and session slot, and its initial database checked
    /// against them. `Some`: the login is refused with this error.
    pub(super) fn login_rights(&mut self, db: Option<&str>) -> Option<ErrInfo> {
        let Some(auth) = self.proxy.user(&self.user) else {
            return Some(ErrInfo::new(
                (1045, "28000"),
                format!("Access denied for user '{}'", self.user),
            ));
        };
        if let Err(e) = self.take_user_rights(&auth) {
            return Some(e);
        }
        db.filter(|d| !d.is_empty())
            .and_then(|d| self.database_denied(d))
    }

    /// MariaDB's refusal of a database the user may not use (login, COM_INIT_DB).
    pub(super) fn database_denied(&self, db: &str) -> Option<ErrInfo> {
        let rights = self.rights.as_ref()?;
        rights
            .check_database(db, &self.user, self.client_host())
            .err()
            .map(|d| d.to_err_info())
    }

    /// Whether the user may run `sql`; `Err` is MariaDB's refusal for the first thing the
    /// user lacks.
    fn statement_denied(&self, sql: &str) -> Result<(), Denied> {
        match &self.rights {
            None => Ok(()),
            Some(r) => r.check(sql, self.vars.db.as_deref(), &self.user, self.client_host()),
        }
    }

    /// Refuses `sql` when it is outside the user's rights: `Some(flow)` when the client has
    /// been answered, `None` to go on with the statement.
    pub(super) async fn refuse_outside_rights(
        &mut self,
        sql: &str,
    ) -> std::io::Result<Option<Flow>> {
        let Err(denied) = self.statement_denied(sql) else {
            return Ok(None);
        };
        tracing::info!(session = self.id, user = %self.user, code = denied.code(), "statement refused: outside the user's rights");
        let e = denied.to_err_info();
        self.diag = Some(Diagnostics::failed(Vec::new(), &e));
        self.send_err(1, &e).await?;
        Ok(Some(Flow::Continue))
    }
}
