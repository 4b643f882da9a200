//! How far behind its primary a replica is, in time, from GTID positions.
//!
//! `Seconds_Behind_Master` is whole seconds, and it is 0 while the SQL thread waits for events
//! it has not received. The proxy measures instead: the health check of a shard's primary
//! records the primary's binlog position and when it was seen ([`PrimaryMarks::mark`]); the
//! health check of a replica finds the newest mark its applied position holds. Holding the
//! primary's newest mark means the replica had everything the primary had when last seen: lag
//! 0. Otherwise the replica had what the primary had at that older mark, and nothing proves
//! more: its lag is the time since then ([`PrimaryMarks::lag_of`]). This errs towards a
//! larger lag, never a smaller one, by at most one health-check interval of the primary.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::gtid::GtidPos;

/// Marks kept: at the default 1 s interval, about a minute of the primary's history (a
/// replica further behind than the oldest mark gets the age of the oldest).
const MARKS: usize = 64;

/// The primary's positions as its health checks saw them, oldest first.
#[derive(Debug, Default)]
pub struct PrimaryMarks {
    /// (last time the primary was seen at this position, the position).
    marks: Mutex<VecDeque<(Instant, GtidPos)>>,
}

impl PrimaryMarks {
    /// The primary was seen at `pos` at `at`: a new mark if it moved, else the last mark's
    /// time moves forward (the replica that holds it had everything the primary had then).
    pub fn mark(&self, pos: &GtidPos, at: Instant) {
        let mut m = self.marks.lock().unwrap_or_else(|e| e.into_inner());
        match m.back_mut() {
            Some((t, p)) if p == pos => *t = at,
            _ => {
                if m.len() == MARKS {
                    m.pop_front();
                }
                m.push_back((at, pos.clone()));
            }
        }
    }

    /// Forgets the history (a new primary writes a new one).
    pub fn clear(&self) {
        self.marks.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// The lag of a replica that has applied `applied`, at `now`; `None` while the primary has
    /// not been seen yet.
    pub fn lag_of(&self, applied: &GtidPos, now: Instant) -> Option<Duration> {
        let m = self.marks.lock().unwrap_or_else(|e| e.into_inner());
        let newest = m.len().checked_sub(1)?;
        for (i, (t, p)) in m.iter().enumerate().rev() {
            if applied.contains(p) {
                return Some(if i == newest {
                    Duration::ZERO
                } else {
                    now.saturating_duration_since(*t)
                });
            }
        }
        // Behind even the oldest mark: at least that old.
        Some(now.saturating_duration_since(m[0].0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pos(s: &str) -> GtidPos {
        GtidPos::parse(s).unwrap()
    }

    #[test]
    fn lag_is_the_age_of_the_newest_primary_position_held() {
        let m = PrimaryMarks::default();
        let t0 = Instant::now();
        assert_eq!(m.lag_of(&pos("0-1-5"), t0), None);
        m.mark(&pos("0-1-5"), t0);
        m.mark(&pos("0-1-5"), t0 + Duration::from_millis(100));
        m.mark(&pos("0-1-9"), t0 + Duration::from_millis(200));
        let now = t0 + Duration::from_millis(500);
        // Holds the newest: caught up.
        assert_eq!(m.lag_of(&pos("0-1-9"), now), Some(Duration::ZERO));
        assert_eq!(m.lag_of(&pos("0-1-12"), now), Some(Duration::ZERO));
        // Holds what the primary had until +100 ms: 400 ms behind.
        assert_eq!(
            m.lag_of(&pos("0-1-7"), now),
            Some(Duration::from_millis(400))
        );
        // Holds none: at least as old as the oldest mark.
        assert_eq!(
            m.lag_of(&pos("0-1-2"), now),
            Some(Duration::from_millis(400))
        );
        assert_eq!(
            m.lag_of(&GtidPos::default(), now),
            Some(Duration::from_millis(400))
        );
        m.clear();
        assert_eq!(m.lag_of(&pos("0-1-9"), now), None);
    }

    #[test]
    fn marks_are_bounded() {
        let m = PrimaryMarks::default();
        let t0 = Instant::now();
        for i in 0..(MARKS as u64 + 10) {
            m.mark(&pos(&format!("0-1-{i}")), t0 + Duration::from_millis(i));
        }
        assert_eq!(m.marks.lock().unwrap().len(), MARKS);
    }
}
