//! Stopping a statement on a backend server: `KILL [QUERY] <thread>` on a connection of its own
//! (what the mysql CLI does on Ctrl-C). Used by the session (a client's `KILL`, a statement that
//! timed out) and by the admin port's `KILL`.

use super::conn::BackendConn;
use super::topology::Topology;
use crate::protocol::constants::DEFAULT_COLLATION;

/// Kills the statement (`query_only`) or the connection `thread_id` on the server at `addr`,
/// if `topology` still has a pool for that address. Failures are logged, not returned: the
/// statement may have ended meanwhile.
pub async fn kill_backend(topology: &Topology, addr: &str, thread_id: u32, query_only: bool) {
    let Some(pool) = topology.pools().find(|p| p.addr == addr).cloned() else {
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
