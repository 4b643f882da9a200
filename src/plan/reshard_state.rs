//! The state of an online resharding (`RESHARD START`): its phase and its progress, as the
//! driver (`admin::reshard_run`) persists it after every step and as `SHOW RESHARD STATUS`
//! shows it.
//!
//! The state is one JSON document kept in the table `shardproxy.reshard` on the running
//! config's default shard, written in the same place whatever the phase, so a proxy that
//! restarts finds it before it serves anything: before the cutover it keeps the old ring and
//! resumes the move; at [`Phase::Done`] and after it serves the new ring (the config named by
//! [`ReshardState::to_path`]). Everything here is pure: the driver does the I/O.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Where a move stands. The order of the variants is the order of the steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Phase {
    /// Creating the tables on the new shards and copying the reference tables whole.
    Schema,
    /// Creating the change-log triggers on every source's moving tables.
    Triggers,
    /// Copying the moving rows from a consistent snapshot of each source.
    Copy,
    /// Applying the logged changes to the targets.
    CatchUp,
    /// Comparing the moved rows on source and target.
    Verify,
    /// Writes to the involved shards pause, the last changes are applied, the ring switches.
    Cutover,
    /// The new ring serves; the moved rows are still on their old shards until cleanup.
    Done,
    /// `RESHARD CLEANUP` deleted the moved rows from their old shards.
    CleanedUp,
    /// `RESHARD CANCEL` (or a failed step) rolled back: the old ring serves, the copies and
    /// triggers are gone.
    Cancelled,
    /// A step failed (a verify mismatch, a server that cannot be reached): the old ring
    /// serves, the triggers keep logging, `RESHARD CANCEL` rolls back or `RESHARD START` of
    /// the same file tries again.
    Stopped,
}

impl Phase {
    /// The phase's name as shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Schema => "schema",
            Phase::Triggers => "triggers",
            Phase::Copy => "copy",
            Phase::CatchUp => "catch-up",
            Phase::Verify => "verify",
            Phase::Cutover => "cutover",
            Phase::Done => "done",
            Phase::CleanedUp => "cleaned-up",
            Phase::Cancelled => "cancelled",
            Phase::Stopped => "stopped",
        }
    }

    /// Whether the new ring serves (the cutover happened).
    pub fn after_cutover(self) -> bool {
        matches!(self, Phase::Done | Phase::CleanedUp)
    }

    /// Whether a move is under way (a driver should be running or be resumed).
    pub fn running(self) -> bool {
        self < Phase::Done
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Progress of one table between one source and one target shard.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PairProgress {
    /// The table as the config names it.
    pub table: String,
    /// Source shard (old ring).
    pub from: String,
    /// Target shard (new ring).
    pub to: String,
    /// Rows of the source read by the copy.
    pub scanned: u64,
    /// Moving rows written to the target by the copy.
    pub copied: u64,
    /// Copy rate, rows written per second.
    pub rows_per_s: f64,
    /// Logged changes applied to the target by the catch-up.
    pub applied: u64,
    /// Moving rows compared by the last verify (equal on both sides).
    pub verified: u64,
    /// Rows of the table on the source when its copy began (InnoDB's estimate): for the ETA.
    #[serde(default)]
    pub source_rows: u64,
}

impl PairProgress {
    /// Seconds until this pair's copy has read the whole source table, at its rate so far
    /// (`None` before a rate is known or after the table was read).
    pub fn eta_s(&self) -> Option<f64> {
        if self.copied == 0 || self.rows_per_s <= 0.0 || self.scanned >= self.source_rows {
            return None;
        }
        let scan_rate = self.rows_per_s * self.scanned as f64 / self.copied as f64;
        Some((self.source_rows - self.scanned) as f64 / scan_rate)
    }
}

/// The persisted state of one move.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReshardState {
    /// The config file the move goes to (re-read when resuming and at cutover).
    pub to_path: String,
    /// Where the move stands.
    pub phase: Phase,
    /// Per table and shard pair.
    pub pairs: Vec<PairProgress>,
    /// Logged changes not applied yet at the last look (the catch-up lag).
    pub pending_changes: u64,
    /// Cutovers abandoned because the pause would have been longer than the bound.
    pub cutover_attempts: u32,
    /// The write pause of the cutover that happened, in milliseconds.
    pub cutover_pause_ms: Option<u64>,
    /// Statements held at the cutover (they continued on the new ring).
    pub cutover_held: Option<u64>,
    /// What went wrong last, or what the operator should know.
    pub note: Option<String>,
    /// Unix time (seconds) the move started.
    pub started_unix: u64,
    /// The target config's text, read at `RESHARD START`: what a restarted proxy installs
    /// after the cutover even where the file `to_path` is not (another proxy's host).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_config: Option<String>,
}

impl ReshardState {
    /// A new move to `to_path`, at its first phase.
    pub fn new(to_path: &str, pairs: Vec<PairProgress>, started_unix: u64) -> ReshardState {
        ReshardState {
            to_path: to_path.to_string(),
            phase: Phase::Schema,
            pairs,
            pending_changes: 0,
            cutover_attempts: 0,
            cutover_pause_ms: None,
            cutover_held: None,
            note: None,
            started_unix,
            to_config: None,
        }
    }

    /// The state as stored.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The state from what was stored.
    pub fn from_json(text: &str) -> Result<ReshardState, String> {
        serde_json::from_str(text).map_err(|e| format!("unreadable resharding state: {e}"))
    }

    /// The progress of `table` from `from` to `to`.
    pub fn pair_mut(&mut self, table: &str, from: &str, to: &str) -> Option<&mut PairProgress> {
        self.pairs
            .iter_mut()
            .find(|p| p.table == table && p.from == from && p.to == to)
    }

    /// Rows copied per second over the whole copy: the pairs copy one after the other, so
    /// their times add up.
    pub fn copy_rate(&self) -> f64 {
        let copied: u64 = self.pairs.iter().map(|p| p.copied).sum();
        let secs: f64 = self
            .pairs
            .iter()
            .filter(|p| p.rows_per_s > 0.0)
            .map(|p| p.copied as f64 / p.rows_per_s)
            .sum();
        if secs > 0.0 {
            copied as f64 / secs
        } else {
            0.0
        }
    }

    /// Column names of [`ReshardState::rows`].
    pub const COLUMNS: [&'static str; 12] = [
        "phase",
        "table",
        "from_shard",
        "to_shard",
        "rows_scanned",
        "rows_copied",
        "rows_per_s",
        "changes_applied",
        "rows_verified",
        "catch_up_lag",
        "copy_eta_s",
        "note",
    ];

    /// `SHOW RESHARD STATUS`: one row per table and pair, then one summary row (table `*`)
    /// with the cutover's figures in `note`.
    pub fn rows(&self) -> Vec<Vec<String>> {
        let phase = self.phase.to_string();
        let mut out: Vec<Vec<String>> = self
            .pairs
            .iter()
            .map(|p| {
                vec![
                    phase.clone(),
                    p.table.clone(),
                    p.from.clone(),
                    p.to.clone(),
                    p.scanned.to_string(),
                    p.copied.to_string(),
                    format!("{:.0}", p.rows_per_s),
                    p.applied.to_string(),
                    p.verified.to_string(),
                    self.pending_changes.to_string(),
                    match (self.phase, p.eta_s()) {
                        (Phase::Copy, Some(eta)) => format!("{eta:.0}"),
                        _ => String::new(),
                    },
                    String::new(),
                ]
            })
            .collect();
        let mut note = format!("to {}", self.to_path);
        if let Some(ms) = self.cutover_pause_ms {
            note += &format!(
                "; cutover write pause {ms} ms, {} statements held",
                self.cutover_held.unwrap_or(0)
            );
        }
        if self.cutover_attempts > 0 {
            note += &format!("; {} cutover(s) abandoned", self.cutover_attempts);
        }
        if let Some(n) = &self.note {
            note += &format!("; {n}");
        }
        let total = |f: fn(&PairProgress) -> u64| self.pairs.iter().map(f).sum::<u64>().to_string();
        out.push(vec![
            phase,
            "*".into(),
            String::new(),
            String::new(),
            total(|p| p.scanned),
            total(|p| p.copied),
            format!("{:.0}", self.copy_rate()),
            total(|p| p.applied),
            total(|p| p.verified),
            self.pending_changes.to_string(),
            String::new(),
            note,
        ]);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_order_and_roundtrip() {
        assert!(Phase::Copy < Phase::CatchUp && Phase::Cutover < Phase::Done);
        assert!(Phase::Verify.running() && !Phase::Done.running() && !Phase::Stopped.running());
        assert!(Phase::Done.after_cutover() && !Phase::Cutover.after_cutover());
        let mut s = ReshardState::new(
            "/tmp/x.toml",
            vec![PairProgress {
                table: "t".into(),
                from: "s1".into(),
                to: "s3".into(),
                ..Default::default()
            }],
            1,
        );
        s.pair_mut("t", "s1", "s3").unwrap().copied = 7;
        s.phase = Phase::Done;
        s.cutover_pause_ms = Some(12);
        let back = ReshardState::from_json(&s.to_json()).unwrap();
        assert_eq!(back, s);
        let rows = back.rows();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0][0], "done");
        assert_eq!(rows[0][5], "7");
        assert!(
            rows[1][11].contains("cutover write pause 12 ms"),
            "{rows:?}"
        );
        let p = PairProgress {
            scanned: 100,
            copied: 50,
            rows_per_s: 25.0,
            source_rows: 400,
            ..Default::default()
        };
        // Reading 50 rows/s, 300 rows left: 6 s.
        assert_eq!(p.eta_s(), Some(6.0));
        assert!(ReshardState::from_json("{").is_err());
        // Pairs copy one after the other: 100 rows at 100/s then 100 at 50/s is 200 in 3 s.
        let mut two = back.clone();
        two.pairs = vec![
            PairProgress {
                copied: 100,
                rows_per_s: 100.0,
                ..Default::default()
            },
            PairProgress {
                copied: 100,
                rows_per_s: 50.0,
                ..Default::default()
            },
        ];
        assert!((two.copy_rate() - 200.0 / 3.0).abs() < 1e-9);
        assert_eq!(two.rows().last().unwrap()[6], "67");
    }
}
