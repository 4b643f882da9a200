//! KILL [QUERY|CONNECTION] id (and COM_PROCESS_KILL): ids are the proxy's connection ids
//! ([`crate::frontend::registry`]). Killing a session marks it killed; a statement it is
//! running on a backend is stopped there too, through a separate connection, as the mysql
//! CLI does on Ctrl-C. Only the owner of a session may kill it.

use super::{Flow, Session};
use crate::backend::conn::BackendConn;
use crate::protocol::constants::{err, DEFAULT_COLLATION};
use crate::protocol::packets::ErrInfo;

impl Session {
    pub(super) async fn kill(&mut self, id: u64, query_only: bool) -> std::io::Result<Flow> {
        let target = u32::try_from(id)
            .ok()
            .and_then(|i| self.proxy.registry.get(i));
        let Some(target) = target else {
            let e = ErrInfo::new(err::ER_NO_SUCH_THREAD, format!("Unknown thread id: {id}"));
            self.send_err(1, &e).await?;
            return Ok(Flow::Continue);
        };
        if target.user != self.user {
            let e = ErrInfo::new((1095, "HY000"), format!("You are not owner of thread {id}"));
            self.send_err(1, &e).await?;
            return Ok(Flow::Continue);
        }
        let running = target.snapshot().running_on;
        if !query_only {
            target.kill();
        }
        if let Some((addr, tid)) = running {
            // Still the same statement? (It may have ended and its connection been reused.)
            let still = target.snapshot().running_on == Some((addr.clone(), tid));
            if target.id != self.id && still {
                self.kill_backend(&addr, tid, query_only).await;
            }
        }
        if !query_only && target.id == self.id {
            return Ok(Flow::Close);
        }
        self.send_ok(1, self.local_ok()).await?;
        Ok(Flow::Continue)
    }

    /// Kills work on a backend through a separate connection, as the mysql CLI does on Ctrl-C.
    pub(super) async fn kill_backend(&self, addr: &str, thread_id: u32, query_only: bool) {
        let topo = self.proxy.topology();
        let Some(pool) = topo.pools().find(|p| p.addr == addr).cloned() else {
            return;
        };
        match BackendConn::connect(&pool.connect_params(0, DEFAULT_COLLATION)).await {
            Ok(mut c) => {
                let sql = if query_only {
                    format!("KILL QUERY {thread_id}")
                } else {
                    format!("KILL CONNECTION {thread_id}")
                };
                if let Err(e) = c.query(&sql).await {
                    tracing::debug!("{sql} on {addr}: {e}");
                }
            }
            Err(e) => tracing::warn!("cannot reach {addr} to kill {thread_id}: {e}"),
        }
    }
}
