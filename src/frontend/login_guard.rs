//! Handshake limits per client address, as MariaDB's `max_connect_errors`: an address whose
//! logins keep failing (wrong password, unknown user, a handshake not finished in time) is
//! refused for a while with MariaDB's error 1129, before any greeting, so guessing passwords
//! from one address stops after a few tries. A successful login clears the address's count.
//!
//! Unlike MariaDB, which blocks until `FLUSH HOSTS`, the block ends by itself after
//! `frontend.connect_error_block_ms`; the table is small (one entry per failing address) and
//! entries past their block are dropped as new failures arrive.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::protocol::packets::ErrInfo;

/// Failed logins per client address.
#[derive(Default)]
pub struct LoginGuard {
    /// By address (IP without port).
    hosts: Mutex<HashMap<String, HostState>>,
}

/// One address's record.
#[derive(Debug, Clone, Copy)]
struct HostState {
    /// Failed logins since the last success.
    failures: u32,
    /// Refused until then, once `failures` reached the limit.
    blocked_until: Option<Instant>,
}

/// A refused address: renders MariaDB's 1129.
#[derive(Debug, Clone, PartialEq)]
pub struct Blocked {
    /// The client's address.
    pub host: String,
}

impl Blocked {
    pub fn to_err_info(&self) -> ErrInfo {
        ErrInfo::new(
            (1129, "HY000"),
            format!(
                "Host '{}' is blocked because of many connection errors; unblock with 'mariadb-admin flush-hosts'",
                self.host
            ),
        )
    }
}

impl LoginGuard {
    /// `Err` while `host` is blocked.
    pub fn check(&self, host: &str) -> Result<(), Blocked> {
        let hosts = self.hosts.lock().unwrap_or_else(|e| e.into_inner());
        match hosts.get(host).and_then(|h| h.blocked_until) {
            Some(until) if Instant::now() < until => Err(Blocked {
                host: host.to_string(),
            }),
            _ => Ok(()),
        }
    }

    /// Records a failed login; blocks the address for `block` once it has `max` failures in a
    /// row (`max` 0: never). Returns whether this failure blocked it.
    pub fn failed(&self, host: &str, max: u32, block: Duration) -> bool {
        if max == 0 {
            return false;
        }
        let now = Instant::now();
        let mut hosts = self.hosts.lock().unwrap_or_else(|e| e.into_inner());
        if hosts.len() > 10_000 {
            hosts.retain(|_, h| h.blocked_until.is_some_and(|u| u > now));
        }
        let h = hosts.entry(host.to_string()).or_insert(HostState {
            failures: 0,
            blocked_until: None,
        });
        if h.blocked_until.is_some_and(|u| u <= now) {
            // The block is over: count afresh.
            *h = HostState {
                failures: 0,
                blocked_until: None,
            };
        }
        h.failures += 1;
        if h.failures >= max && h.blocked_until.is_none() {
            h.blocked_until = Some(now + block);
            return true;
        }
        false
    }

    /// A successful login clears the address's record.
    pub fn succeeded(&self, host: &str) {
        self.hosts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(host);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_after_max_failures_and_unblocks() {
        let g = LoginGuard::default();
        let block = Duration::from_millis(50);
        assert!(!g.failed("10.0.0.1", 3, block));
        assert!(!g.failed("10.0.0.1", 3, block));
        assert!(g.check("10.0.0.1").is_ok());
        assert!(g.failed("10.0.0.1", 3, block));
        let e = g.check("10.0.0.1").unwrap_err().to_err_info();
        assert_eq!((e.code, e.sqlstate.as_str()), (1129, "HY000"));
        assert!(g.check("10.0.0.2").is_ok());
        std::thread::sleep(block * 2);
        assert!(g.check("10.0.0.1").is_ok());
        g.failed("10.0.0.2", 3, block);
        g.succeeded("10.0.0.2");
        g.failed("10.0.0.2", 3, block);
        g.failed("10.0.0.2", 3, block);
        assert!(g.check("10.0.0.2").is_ok());
    }
}
