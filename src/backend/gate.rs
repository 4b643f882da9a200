//! A shard's write gate: while its primary is down or being switched, statements for the shard
//! wait here instead of failing, and run on the new primary once it is promoted. The wait is
//! bounded in time (`failover.buffer_ms`) and in how many statements may wait
//! (`failover.buffer_max`); past either bound, or when the failover decides it must not
//! promote, the statement gets a clear error ([`GateRefusal`]).
//!
//! The open gate costs one atomic load per statement (the hot path); only a closed gate
//! touches the watch channel the waiters sleep on.

use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::watch;

/// What the gate does with a statement now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GateState {
    /// Statements pass.
    Open,
    /// Statements wait: a failover or switchover is under way (the reason is shown).
    Held(String),
    /// Statements get an error: the shard has no primary the proxy may use (the reason is
    /// in the error).
    Refused(String),
}

const OPEN: u8 = 0;
const HELD: u8 = 1;
const REFUSED: u8 = 2;

/// Why a statement did not pass the gate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GateRefusal {
    #[error("shard '{shard}' has no usable primary: {reason}")]
    Refused { shard: String, reason: String },
    #[error("shard '{shard}' is failing over ({reason}); no new primary within {waited_ms} ms")]
    TimedOut {
        shard: String,
        reason: String,
        waited_ms: u64,
    },
    #[error("shard '{shard}' is failing over and {max} statements already wait for it")]
    TooMany { shard: String, max: usize },
}

/// One shard's gate.
pub struct Gate {
    /// [`GateState`] as a byte, for the open fast path.
    fast: AtomicU8,
    /// The full state, which waiters watch.
    state: watch::Sender<GateState>,
    /// Statements waiting now.
    waiting: AtomicUsize,
}

impl Default for Gate {
    fn default() -> Self {
        Gate {
            fast: AtomicU8::new(OPEN),
            state: watch::Sender::new(GateState::Open),
            waiting: AtomicUsize::new(0),
        }
    }
}

impl Gate {
    /// Whether statements pass without waiting (the hot path).
    #[inline]
    pub fn is_open(&self) -> bool {
        self.fast.load(Ordering::Acquire) == OPEN
    }

    /// The state now.
    pub fn state(&self) -> GateState {
        self.state.borrow().clone()
    }

    /// Statements waiting now.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    /// Moves the gate to `s` and wakes the waiters.
    pub fn set(&self, s: GateState) {
        let b = match &s {
            GateState::Open => OPEN,
            GateState::Held(_) => HELD,
            GateState::Refused(_) => REFUSED,
        };
        self.state.send_replace(s);
        self.fast.store(b, Ordering::Release);
    }

    /// Waits until the gate opens (`Ok`), refuses, or `max_wait` passes; at most `max_waiting`
    /// statements wait at once.
    pub async fn pass(
        &self,
        shard: &str,
        max_wait: Duration,
        max_waiting: usize,
    ) -> Result<(), GateRefusal> {
        if self.is_open() {
            return Ok(());
        }
        let mut rx = self.state.subscribe();
        let now = rx.borrow_and_update().clone();
        match now {
            GateState::Open => return Ok(()),
            GateState::Refused(reason) => {
                return Err(GateRefusal::Refused {
                    shard: shard.to_string(),
                    reason,
                })
            }
            GateState::Held(_) => {}
        }
        if self.waiting.fetch_add(1, Ordering::AcqRel) >= max_waiting {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(GateRefusal::TooMany {
                shard: shard.to_string(),
                max: max_waiting,
            });
        }
        let r =
            tokio::time::timeout(max_wait, rx.wait_for(|s| !matches!(s, GateState::Held(_)))).await;
        self.waiting.fetch_sub(1, Ordering::AcqRel);
        let end = match r {
            Ok(Ok(s)) => s.clone(),
            Ok(Err(_)) => GateState::Open,
            Err(_) => {
                return Err(GateRefusal::TimedOut {
                    shard: shard.to_string(),
                    reason: match self.state() {
                        GateState::Held(r) | GateState::Refused(r) => r,
                        GateState::Open => String::new(),
                    },
                    waited_ms: max_wait.as_millis() as u64,
                })
            }
        };
        match end {
            GateState::Refused(reason) => Err(GateRefusal::Refused {
                shard: shard.to_string(),
                reason,
            }),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn held_statements_pass_when_opened_and_fail_when_refused_or_late() {
        let g = Arc::new(Gate::default());
        assert!(g.pass("s1", Duration::from_millis(10), 1).await.is_ok());
        g.set(GateState::Held("primary down".into()));
        let g2 = g.clone();
        let waiter = tokio::spawn(async move { g2.pass("s1", Duration::from_secs(5), 1).await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(g.waiting(), 1);
        // A second waiter is over the bound.
        assert!(matches!(
            g.pass("s1", Duration::from_secs(5), 1).await,
            Err(GateRefusal::TooMany { .. })
        ));
        g.set(GateState::Open);
        assert!(waiter.await.unwrap().is_ok());
        g.set(GateState::Held("switchover".into()));
        assert!(matches!(
            g.pass("s1", Duration::from_millis(20), 5).await,
            Err(GateRefusal::TimedOut { .. })
        ));
        g.set(GateState::Refused("no replica has 0-1-9".into()));
        let e = g
            .pass("s1", Duration::from_millis(20), 5)
            .await
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "shard 's1' has no usable primary: no replica has 0-1-9"
        );
        assert_eq!(g.waiting(), 0);
    }
}
