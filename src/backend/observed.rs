//! What the last health check saw of one backend beyond up/down: its GTID positions, whether
//! it is read-only, semi-sync on a primary, and how many checks in a row failed. Failover reads
//! this to choose a replica; SHOW BACKENDS and SHOW SHARDS show it.

use std::time::Instant;

use super::gtid::GtidPos;

/// One backend as last observed (kept in its pool's stats).
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// `@@gtid_binlog_pos`: what the server wrote to its binlog.
    pub binlog_pos: GtidPos,
    /// `@@gtid_slave_pos`: what it applied as a replica.
    pub slave_pos: GtidPos,
    /// `@@gtid_current_pos`: binlog and applied positions together.
    pub current_pos: GtidPos,
    /// `Gtid_IO_Pos` of `SHOW SLAVE STATUS`: what a replica received (maybe not applied yet).
    pub received_pos: GtidPos,
    /// `@@read_only`.
    pub read_only: Option<bool>,
    /// `Rpl_semi_sync_master_status` (primaries): `Some(false)` when semi-sync fell back to
    /// asynchronous (acknowledged commits may be on the primary alone).
    pub semi_sync: Option<bool>,
    /// Replication threads running (`Slave_IO_Running` and `Slave_SQL_Running` both `Yes`).
    pub replicating: Option<bool>,
    /// Failed checks in a row.
    pub failed_checks: u32,
    /// When the current run of failed checks began (`None` while checks succeed).
    pub failing_since: Option<Instant>,
    /// Why the last check failed.
    pub last_error: String,
    /// When the last check finished.
    pub checked_at: Option<Instant>,
    /// A fenced former primary: the GTIDs it holds that the shard's primary lacks (what keeps
    /// it from rejoining as a replica: `failover::rejoin`); empty when none or not checked.
    pub extra_gtids: String,
}

impl Observed {
    /// The position that counts for "does it hold the acknowledged writes": everything the
    /// server has applied or written (`gtid_current_pos`, or the binlog position).
    pub fn holds(&self) -> GtidPos {
        let mut p = self.current_pos.clone();
        p.merge(&self.binlog_pos);
        p.merge(&self.slave_pos);
        p
    }
}
