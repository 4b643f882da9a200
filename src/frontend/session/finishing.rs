//! The last phase of a two-phase commit, run after the client has its OK.
//!
//! Once the home leg's `COMMIT` returned, the transaction is committed: the decision row is
//! durable with the home shard's changes (`crate::exec::twopc`). What remains, `XA COMMIT`
//! on every XA leg, changes nothing about the outcome, so the session answers the client
//! first and runs it behind the answer, as a task of its session thread
//! ([`Session::finish_later`]). That takes a round trip (and on a semi-sync primary, a
//! replica's acknowledgement) off every distributed commit's latency.
//!
//! What keeps this safe:
//! - **The session reads its own writes.** Before the session leases a connection to a
//!   shard whose leg is still finishing (a pooled one on the primary or a replica's), it
//!   waits for that `XA COMMIT` to end ([`Session::wait_finished`], called by
//!   `fresh_lease` and `replica_lease`); the commit's GTID then counts as the session's
//!   write there, so its replica reads wait for it too.
//! - **The leg's connection goes back to the pool only after its `XA COMMIT`** (the task
//!   owns it until then).
//! - **A failure leaves the leg prepared for recovery**: the task closes the connection, so
//!   recovery (which finds it with `XA RECOVER` and reads the `commit` decision) finishes it,
//!   as when the `XA COMMIT` failed inside the COMMIT before.
//! - **A client that disconnects does not cancel it**: the task belongs to the thread's
//!   runtime, not to the session.
//! - **A resharding cutover waits for it**: the task counts as a running statement until it
//!   ends (the count is taken while the COMMIT itself is still counted), so the cutover's
//!   gate never sees an idle proxy while a leg's changes are still being committed.
//!
//! Other sessions may see the home shard's changes before a leg's (already true before:
//! reads are not isolated across shards; docs/transactions.md).

use tokio::sync::oneshot;

use super::transaction::LeaseConn;
use super::Session;
use crate::exec::twopc::{self, XaLeg, Xid};
use crate::protocol::session_track::TrackedGtid;

/// The XA legs of one committed transaction whose `XA COMMIT` runs behind the client's OK.
pub(super) struct Finishing {
    /// The shards of those legs.
    shards: Vec<String>,
    /// Resolves when every leg's `XA COMMIT` ended, with the GTID each successful one
    /// reported (by shard); a failed one is left to recovery and reports none.
    done: oneshot::Receiver<Vec<(String, TrackedGtid)>>,
}

impl Session {
    /// Runs the `XA COMMIT` of `legs`, the prepared XA legs of the committed transaction
    /// `xid`, as a task of this session thread; the session's next lease on one of their
    /// shards waits for it ([`Self::wait_finished`]).
    pub(super) fn finish_later(&mut self, xid: &Xid, legs: Vec<XaLeg<LeaseConn>>) {
        self.forget_finished();
        let mut legs: Vec<XaLeg<LeaseConn>> =
            legs.into_iter().filter(|l| l.conn.is_some()).collect();
        if legs.is_empty() {
            return;
        }
        let (tx, rx) = oneshot::channel();
        self.finishing.push(Finishing {
            shards: legs.iter().map(|l| l.shard.clone()).collect(),
            done: rx,
        });
        let running = self.keep_running();
        let (xid, session) = (xid.clone(), self.id);
        tokio::spawn(async move {
            let _running = running;
            let unfinished = twopc::finish(&xid, &mut legs).await;
            if !unfinished.is_empty() {
                tracing::warn!(session, xid = %xid.gtrid, ?unfinished, "committed; recovery finishes the XA COMMIT of these legs");
            }
            let mut gtids = Vec::new();
            for leg in legs {
                if let Some(LeaseConn(mut lease)) = leg.conn {
                    if let Some(g) = lease.conn.last_gtid.take() {
                        gtids.push((leg.shard, g));
                    }
                    lease.pool.clone().put(lease);
                }
            }
            // The session may have ended meanwhile: nobody waits then.
            let _ = tx.send(gtids);
        });
    }

    /// Waits until no leg of the session's committed transactions is still finishing on
    /// `shard` (at once when none is: the usual case costs one check of an empty list).
    pub(super) async fn wait_finished(&mut self, shard: &str) {
        if self.finishing.is_empty() {
            return;
        }
        let mut i = 0;
        while i < self.finishing.len() {
            if !self.finishing[i].shards.iter().any(|s| s == shard) {
                i += 1;
                continue;
            }
            let f = self.finishing.swap_remove(i);
            // A task that ended without a word (its runtime shut down) finished nothing:
            // recovery does.
            if let Ok(gtids) = f.done.await {
                self.note_finished(gtids);
            }
        }
    }

    /// Drops the finished entries (their GTIDs noted), so a session whose later
    /// transactions avoid a shard does not keep them.
    fn forget_finished(&mut self) {
        let mut i = 0;
        while i < self.finishing.len() {
            match self.finishing[i].done.try_recv() {
                Err(oneshot::error::TryRecvError::Empty) => i += 1,
                done => {
                    self.finishing.swap_remove(i);
                    if let Ok(gtids) = done {
                        self.note_finished(gtids);
                    }
                }
            }
        }
    }

    /// The GTIDs of finished `XA COMMIT`s count as the session's writes on their shards:
    /// its reads there go to a replica only once it applied them (read-your-writes). They
    /// are not recorded as acknowledged commits for failover: a replica that lacks one but
    /// holds the prepared leg loses nothing, recovery commits the leg after a promotion.
    fn note_finished(&mut self, gtids: Vec<(String, TrackedGtid)>) {
        for (shard, g) in gtids {
            self.note_write(&shard, g);
        }
    }
}
