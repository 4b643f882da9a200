//! `SHOW [FULL] PROCESSLIST` and `information_schema.PROCESSLIST` answered with the proxy's
//! sessions (see [`crate::frontend::processlist`] for why and how). Off the hot path: only
//! statements that name the process list come here.

use super::relay::{relay, RelayError};
use super::{Flow, Session};
use crate::backend::conn::QueryResult;
use crate::frontend::processlist::{self as pl, Request, Visibility};
use crate::protocol::constants::com;
use crate::protocol::packets::build_command;
use crate::protocol::response::ResponseKind;
use crate::protocol::resultset::{ResultSet, RowFormat};

impl Session {
    /// Answers a process-list statement; `sql` is the client's text.
    pub(super) async fn processlist(&mut self, req: Request, sql: &str) -> std::io::Result<Flow> {
        let sessions = self.proxy.registry.all();
        let procs = pl::processes(
            &sessions,
            &self.user,
            self.processlist_visibility(),
            self.id,
            sql,
        );
        let shard = self.proxy.config().sharding.default_shard.clone();
        let mut lease = match self.fresh_lease(&shard).await {
            Ok(l) => l,
            Err(e) => {
                self.send_err(1, &e).await?;
                return Ok(Flow::Continue);
            }
        };
        match req {
            Request::Show { full } => {
                // MariaDB's own column definitions for this session's character set; the
                // backend's rows (its threads) are dropped.
                let rs = match lease.conn.query(sql).await {
                    Ok(QueryResult::Rows(rs)) => rs,
                    Ok(QueryResult::Ok(_)) => ResultSet::default(),
                    Err(e) => {
                        self.send_err(1, &e.to_err_info()).await?;
                        return Ok(Flow::Continue);
                    }
                };
                lease.pool.clone().put(lease);
                let rs = ResultSet {
                    rows: pl::show_rows(&procs, full),
                    warnings: 0,
                    columns: rs.columns,
                };
                self.send_result_set(&rs, RowFormat::Text).await?;
                Ok(Flow::Continue)
            }
            Request::InformationSchema => {
                for stmt in pl::fill_statements(&procs) {
                    if let Err(e) = lease.conn.query(&stmt).await {
                        // The connection is dropped with whatever it created.
                        self.send_err(1, &e.to_err_info()).await?;
                        return Ok(Flow::Continue);
                    }
                }
                let text = pl::rewrite_information_schema(sql);
                let payload = build_command(com::QUERY, text.as_bytes());
                let r = relay(
                    &mut self.reader,
                    &mut self.writer,
                    &mut lease.conn,
                    &payload,
                    ResponseKind::Query,
                )
                .await;
                match r {
                    Ok(_) => {
                        if lease.conn.query(&pl::drop_statement()).await.is_ok() {
                            lease.pool.clone().put(lease);
                        }
                        Ok(Flow::Continue)
                    }
                    Err(RelayError::Client) => Ok(Flow::Close),
                    // The client has been told; the connection is dropped.
                    Err(RelayError::Backend(_)) => Ok(Flow::Continue),
                }
            }
        }
    }

    /// Which sessions this user sees. The data port grants no PROCESS privilege (yet): each
    /// user sees its own sessions, as `KILL` may end only those.
    fn processlist_visibility(&self) -> Visibility {
        Visibility::OwnSessions
    }

    /// Shows a statement the proxy runs on several shards as running in the process list
    /// (one-shard statements are marked by `single.rs`, with the backend connection KILL
    /// reaches); the command loop marks the session idle again after it.
    pub(super) fn mark_running(&self, sql: &str) {
        if let Some(h) = &self.handle {
            let text: std::sync::Arc<str> = std::sync::Arc::from(sql);
            h.update(|i| {
                i.state = "query";
                i.statement = Some(text);
                i.since = Some(std::time::Instant::now());
            });
        }
    }
}
