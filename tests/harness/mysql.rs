//! mysql_async helpers for async tests.

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, OptsBuilder, Row};

/// A connection from a `mysql://` URL with mysql_async's defaults (so, like a default client,
/// it moves to the server's Unix socket when `SELECT @@socket` names one); panics on failure.
pub async fn connect(url: &str) -> Conn {
    Conn::new(Opts::from_url(url).unwrap())
        .await
        .unwrap_or_else(|e| panic!("connect {url}: {e}"))
}

/// Options for `127.0.0.1:port` as `user`, staying on TCP.
pub fn tcp_opts(port: u16, user: &str, password: &str) -> OptsBuilder {
    OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(port)
        .user(Some(user))
        .pass(Some(password))
        .prefer_socket(false)
}

/// Column names and rows as text (NULL → None) of a text-protocol query; panics on an error.
pub async fn text_rows(conn: &mut Conn, sql: &str) -> (Vec<String>, Vec<Vec<Option<String>>>) {
    let rows: Vec<Row> = conn
        .query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let cols = rows
        .first()
        .map(|r| {
            r.columns_ref()
                .iter()
                .map(|c| c.name_str().into_owned())
                .collect()
        })
        .unwrap_or_default();
    let rows = rows
        .into_iter()
        .map(|r| {
            (0..r.len())
                .map(|i| r.get::<Option<String>, _>(i).unwrap())
                .collect()
        })
        .collect();
    (cols, rows)
}
