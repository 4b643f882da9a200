//! KILL [QUERY|CONNECTION] id (and COM_PROCESS_KILL): ids are the proxy's connection ids
//! ([`crate::frontend::registry`]). Killing a session marks it killed; a statement it is
//! running on a backend is stopped there too, through a separate connection, as the mysql
//! CLI does on Ctrl-C. Only the owner of a session may kill it.

use super::{Flow, Session};
use crate::backend::kill::kill_backend;
use crate::protocol::constants::err;
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
                // Only the statement, also for KILL CONNECTION: the session, marked killed,
                // closes its client connection as soon as the statement ends, so the client
                // gets MariaDB's 1317 for it rather than the proxy's "backend unavailable" for
                // a backend connection killed under it; that connection stays usable.
                kill_backend(&self.proxy.topology(), &addr, tid, true).await;
            }
        }
        if !query_only && target.id == self.id {
            return Ok(Flow::Close);
        }
        self.send_ok(1, self.local_ok()).await?;
        Ok(Flow::Continue)
    }
}
