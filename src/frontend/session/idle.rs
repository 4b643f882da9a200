//! `wait_timeout` on the client connection: a session idle longer than its `wait_timeout`
//! (or `interactive_timeout` for a client that connected with CLIENT_INTERACTIVE, as MariaDB
//! initialises it) is disconnected, as by MariaDB: the connection is closed without an answer
//! (MariaDB 10.11 sends no error packet either; checked on mariadbd 10.11.19), so the client's
//! next statement fails with 2006/2013 as drivers expect, instead of the pooled backend
//! connection timing out under the session and the client getting 1158.
//!
//! Cost on the hot path: none per statement beyond the `Instant` the command loop already
//! takes. The timer is one `Sleep` for the whole session, armed at `last activity + timeout`;
//! when it fires early (the session was active meanwhile) it is re-armed from the last
//! activity, so it fires at most about once per timeout period, never once per statement.

use std::time::Duration;

use super::Session;
use crate::protocol::constants::cap;

impl Session {
    /// The idle limit a new session starts with: the configured `interactive_timeout` for an
    /// interactive client, else `wait_timeout`; `None` when it is 0 (no limit).
    pub(super) fn login_idle_timeout(&self) -> Option<Duration> {
        let f = &self.proxy.config().frontend;
        let s = if self.caps & cap::INTERACTIVE != 0 {
            f.interactive_timeout
        } else {
            f.wait_timeout
        };
        (s > 0).then(|| Duration::from_secs(s))
    }

    /// After a `SET … wait_timeout = …` the server accepted: the session's new idle limit.
    /// A literal number is read here; `DEFAULT` goes back to the login value; another
    /// expression keeps the previous limit (logged).
    pub(super) fn refresh_idle_timeout(&mut self) {
        let Some(assign) = self.vars.vars.get("wait_timeout") else {
            return;
        };
        let value = assign.rsplit('=').next().unwrap_or("").trim();
        if value.eq_ignore_ascii_case("DEFAULT") {
            self.idle_timeout = self.login_idle_timeout();
        } else if let Ok(n) = value.parse::<u64>() {
            // MariaDB's range is 1 ..= 31536000; it clamps out-of-range values.
            self.idle_timeout = Some(Duration::from_secs(n.clamp(1, 31_536_000)));
        } else {
            tracing::info!(
                session = self.id,
                value,
                "wait_timeout expression not read by the proxy: idle limit unchanged"
            );
        }
    }
}

/// Whether `timeout` has passed since `last_active`; else the deadline to re-arm the timer at.
pub(super) fn expired(
    last_active: tokio::time::Instant,
    timeout: Duration,
) -> Result<(), tokio::time::Instant> {
    let deadline = last_active + timeout;
    if tokio::time::Instant::now() >= deadline {
        Ok(())
    } else {
        Err(deadline)
    }
}
