//! Transactions on one shard. BEGIN is held back until the first statement that picks a
//! shard, then sent there first; COMMIT and ROLLBACK go to the transaction's connection, or
//! are answered by the proxy when nothing ran since BEGIN. The transaction's connection is
//! held by the session until the server reports the transaction closed (see [`super::hold`]).

use std::sync::Arc;

use bytes::Bytes;

use super::hold::HoldWhy;
use super::{Flow, Session};
use crate::backend::pool::Lease;
use crate::frontend::classify::Classified;
use crate::protocol::constants::status;
use crate::protocol::packets::ErrInfo;
use crate::protocol::response::ResponseKind;

impl Session {
    /// BEGIN / START TRANSACTION: inside a transaction it goes to its connection (which
    /// commits implicitly, as on one server); otherwise it is held back until the first
    /// statement that picks a shard, and sent there first.
    pub(super) async fn begin(
        &mut self,
        payload: Bytes,
        sql: &str,
        c: &Classified,
    ) -> std::io::Result<Flow> {
        if let Some(h) = &self.held {
            if h.why == HoldWhy::Transaction || h.why == HoldWhy::Pinned {
                let shard = h.shard.clone();
                return self
                    .run_single(&shard, payload, &Arc::from(sql), c, ResponseKind::Query)
                    .await;
            }
        }
        self.pending_begin = Some(sql.to_string());
        self.status |= status::IN_TRANS;
        self.send_ok(1, self.local_ok()).await?;
        Ok(Flow::Continue)
    }

    /// COMMIT / ROLLBACK: to the transaction's connection; answered by the proxy when no
    /// statement ran since BEGIN (nothing to commit).
    pub(super) async fn end_transaction(
        &mut self,
        payload: Bytes,
        sql: &str,
        c: &Classified,
    ) -> std::io::Result<Flow> {
        self.pending_begin = None;
        if let Some(h) = &self.held {
            if h.lease.conn.status & status::IN_TRANS != 0 || h.why == HoldWhy::Pinned {
                let shard = h.shard.clone();
                return self
                    .run_single(&shard, payload, &Arc::from(sql), c, ResponseKind::Query)
                    .await;
            }
        }
        self.status &= !status::IN_TRANS;
        self.send_ok(1, self.local_ok()).await?;
        Ok(Flow::Continue)
    }

    /// Sends a held-back BEGIN on the connection that will run the transaction.
    pub(super) async fn start_pending_transaction(
        &mut self,
        lease: &mut Lease,
    ) -> Result<(), ErrInfo> {
        if let Some(begin) = self.pending_begin.take() {
            if lease.conn.status & status::IN_TRANS == 0 {
                if let Err(e) = lease.conn.query(&begin).await {
                    return Err(e.to_err_info());
                }
            }
        }
        Ok(())
    }

    /// The shard bound by an open (or pending) transaction, if any.
    pub(super) fn transaction_shard(&self) -> Option<&str> {
        match &self.held {
            Some(h)
                if h.why == HoldWhy::Transaction || h.lease.conn.status & status::IN_TRANS != 0 =>
            {
                Some(h.shard.as_str())
            }
            _ => None,
        }
    }
}
