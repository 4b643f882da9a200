//! Rendering: what the core reports ([`super::ops`]) → result sets the mysql CLI prints.
//!
//! Pure functions over values; the listener ([`super::server`]) writes the result sets.

use bytes::Bytes;

use super::command::{SelectExpr, SelectItem, STATEMENTS};
use super::ops::{BackendStatus, RingShare, SessionInfo, ShardStatus, TableRule};
use crate::protocol::resultset::{ColumnDef, ResultSet, TextRow};

/// What the admin port calls itself in `@@version_comment` and the handshake.
pub const VERSION_COMMENT: &str = "shardproxy admin port";

enum Col {
    Text(&'static str),
    Int(&'static str),
}

fn result(cols: &[Col], rows: Vec<Vec<Option<String>>>) -> ResultSet {
    ResultSet {
        columns: cols
            .iter()
            .map(|c| match c {
                Col::Text(n) => ColumnDef::text(n),
                Col::Int(n) => ColumnDef::bigint(n),
            })
            .collect(),
        rows: rows.into_iter().map(row).collect(),
        warnings: 0,
    }
}

fn row(values: Vec<Option<String>>) -> TextRow {
    values.into_iter().map(|v| v.map(Bytes::from)).collect()
}

fn s(v: impl ToString) -> Option<String> {
    Some(v.to_string())
}

/// `SHOW SHARDS`.
pub fn shards(shards: &[ShardStatus]) -> ResultSet {
    result(
        &[
            Col::Text("shard"),
            Col::Text("primary"),
            Col::Text("replicas"),
            Col::Int("weight"),
            Col::Text("status"),
        ],
        shards
            .iter()
            .map(|x| {
                vec![
                    s(&x.name),
                    s(&x.primary),
                    s(x.replicas.join(",")),
                    s(x.weight),
                    s(&x.status),
                ]
            })
            .collect(),
    )
}

/// `SHOW BACKENDS`.
pub fn backends(backends: &[BackendStatus]) -> ResultSet {
    result(
        &[
            Col::Text("address"),
            Col::Text("shard"),
            Col::Text("role"),
            Col::Text("health"),
            Col::Int("lag_seconds"),
            Col::Int("pool_in_use"),
            Col::Int("pool_idle"),
            Col::Int("queries"),
            Col::Int("errors"),
            Col::Text("gtid_position"),
            Col::Text("read_only"),
            Col::Int("lag_ms"),
            Col::Text("in_read_set"),
            Col::Int("reads"),
            Col::Text("extra_gtids"),
        ],
        backends
            .iter()
            .map(|b| {
                vec![
                    s(&b.address),
                    s(&b.shard),
                    s(b.role.as_str()),
                    s(b.health.as_str()),
                    b.lag_seconds.map(|l| l.to_string()),
                    s(b.pool_in_use),
                    s(b.pool_idle),
                    s(b.queries),
                    s(b.errors),
                    s(&b.gtid_position),
                    b.read_only
                        .map(|r| if r { "ON" } else { "OFF" }.to_string()),
                    b.lag_ms.map(|l| l.to_string()),
                    s(if b.in_read_set { "yes" } else { "no" }),
                    s(b.reads),
                    s(&b.extra_gtids),
                ]
            })
            .collect(),
    )
}

/// `SHOW RING`: share as a percentage with two decimals.
pub fn ring(ring: &[RingShare]) -> ResultSet {
    result(
        &[
            Col::Text("shard"),
            Col::Int("vnodes"),
            Col::Text("share_pct"),
        ],
        ring.iter()
            .map(|r| {
                vec![
                    s(&r.shard),
                    s(r.vnodes),
                    s(format!("{:.2}", r.share * 100.0)),
                ]
            })
            .collect(),
    )
}

/// `SHOW SESSIONS`: time in state in whole seconds, like `SHOW PROCESSLIST`.
pub fn sessions(sessions: &[SessionInfo]) -> ResultSet {
    result(
        &[
            Col::Int("id"),
            Col::Text("client"),
            Col::Text("user"),
            Col::Text("db"),
            Col::Text("state"),
            Col::Text("pinned"),
            Col::Text("statement"),
            Col::Int("time_s"),
        ],
        sessions
            .iter()
            .map(|x| {
                vec![
                    s(x.id),
                    s(&x.client),
                    s(&x.user),
                    x.db.clone(),
                    s(&x.state),
                    s(if x.pinned { "yes" } else { "no" }),
                    x.statement.clone(),
                    s(x.time_in_state.as_secs()),
                ]
            })
            .collect(),
    )
}

/// `SHOW PROXY STATUS`: columns named like `SHOW STATUS`.
pub fn proxy_status(pairs: &[(String, String)]) -> ResultSet {
    result(
        &[Col::Text("Variable_name"), Col::Text("Value")],
        pairs.iter().map(|(k, v)| vec![s(k), s(v)]).collect(),
    )
}

/// `SHOW TABLE RULES`.
pub fn table_rules(rules: &[TableRule]) -> ResultSet {
    result(
        &[
            Col::Text("table"),
            Col::Text("kind"),
            Col::Text("shard_key"),
            Col::Text("shards"),
        ],
        rules
            .iter()
            .map(|r| {
                vec![
                    s(&r.table),
                    s(r.kind.as_str()),
                    r.key.clone(),
                    s(r.shards.join(",")),
                ]
            })
            .collect(),
    )
}

/// `WHERE IS`.
pub fn where_is(table: &str, key: &str, shard: &str) -> ResultSet {
    result(
        &[Col::Text("table"), Col::Text("key"), Col::Text("shard")],
        vec![vec![s(table), s(key), s(shard)]],
    )
}

/// `RELOAD CONFIG`: one row per change, or one row saying there was none.
pub fn reload(changes: &[String]) -> ResultSet {
    let rows = if changes.is_empty() {
        vec![vec![s("no changes")]]
    } else {
        changes.iter().map(|c| vec![s(c)]).collect()
    };
    result(&[Col::Text("change")], rows)
}

/// `RESHARD PLAN`: one row per line of the plan.
pub fn reshard_plan(lines: &[(String, String)]) -> ResultSet {
    result(
        &[Col::Text("section"), Col::Text("detail")],
        lines.iter().map(|(a, b)| vec![s(a), s(b)]).collect(),
    )
}

/// `RESHARD START`, `RESHARD CANCEL`, `RESHARD CLEANUP`: what happened, one row per line.
pub fn reshard_outcome(lines: &[String]) -> ResultSet {
    result(
        &[Col::Text("outcome")],
        lines.iter().map(|l| vec![s(l)]).collect(),
    )
}

/// `SHOW RESHARD STATUS`: the rows of [`crate::plan::reshard_state::ReshardState::rows`]
/// (no row: no resharding known).
pub fn reshard_status(state: Option<&crate::plan::reshard_state::ReshardState>) -> ResultSet {
    use crate::plan::reshard_state::ReshardState;
    let cols: Vec<Col> = ReshardState::COLUMNS.iter().map(|c| Col::Text(c)).collect();
    let rows = state
        .map(|st| {
            st.rows()
                .iter()
                .map(|r| r.iter().map(|v| s(v.as_str())).collect())
                .collect()
        })
        .unwrap_or_default();
    result(&cols, rows)
}

/// `SWITCHOVER`.
pub fn switchover(shard: &str, outcome: &str) -> ResultSet {
    result(
        &[Col::Text("shard"), Col::Text("outcome")],
        vec![vec![s(shard), s(outcome)]],
    )
}

/// `HELP`.
pub fn help() -> ResultSet {
    result(
        &[Col::Text("statement"), Col::Text("description")],
        STATEMENTS
            .iter()
            .map(|(syntax, what)| vec![s(syntax), s(what)])
            .collect(),
    )
}

/// `SHOW WARNINGS`: always empty.
pub fn warnings() -> ResultSet {
    result(
        &[Col::Text("Level"), Col::Int("Code"), Col::Text("Message")],
        Vec::new(),
    )
}

/// Who is asking, for the housekeeping `SELECT`.
pub struct SessionFacts<'a> {
    pub user: &'a str,
    pub connection_id: u32,
    pub version: &'a str,
}

/// Housekeeping `SELECT @@var, DATABASE(), …`: one row. Variables the clients ask for get
/// plausible values, any other variable NULL.
pub fn select(items: &[SelectItem], facts: &SessionFacts<'_>) -> ResultSet {
    let mut columns = Vec::with_capacity(items.len());
    let mut values = Vec::with_capacity(items.len());
    for item in items {
        let (numeric, value) = match &item.expr {
            SelectExpr::Variable(name) => variable(name, facts),
            SelectExpr::Database => (false, None),
            SelectExpr::User => (false, s(format!("{}@%", facts.user))),
            SelectExpr::ConnectionId => (true, s(facts.connection_id)),
            SelectExpr::Version => (false, s(facts.version)),
            SelectExpr::Literal(v) => (v.parse::<i64>().is_ok(), s(v)),
        };
        columns.push(if numeric {
            ColumnDef::bigint(&item.label)
        } else {
            ColumnDef::text(&item.label)
        });
        values.push(value);
    }
    ResultSet {
        columns,
        rows: vec![row(values)],
        warnings: 0,
    }
}

fn variable(name: &str, facts: &SessionFacts<'_>) -> (bool, Option<String>) {
    match name {
        "version_comment" => (false, s(VERSION_COMMENT)),
        "version" => (false, s(facts.version)),
        "max_allowed_packet" => (true, s(67_108_864)),
        "wait_timeout" | "interactive_timeout" => (true, s(28_800)),
        "net_write_timeout" => (true, s(60)),
        "autocommit" => (true, s(1)),
        "auto_increment_increment" => (true, s(1)),
        "lower_case_table_names" => (true, s(0)),
        "character_set_client"
        | "character_set_connection"
        | "character_set_results"
        | "character_set_server"
        | "character_set_database" => (false, s("utf8mb4")),
        "collation_connection" | "collation_server" | "collation_database" => {
            (false, s("utf8mb4_general_ci"))
        }
        "sql_mode" => (false, s("")),
        "time_zone" | "system_time_zone" => (false, s("SYSTEM")),
        "tx_isolation" | "transaction_isolation" => (false, s("REPEATABLE-READ")),
        "tx_read_only" | "transaction_read_only" | "read_only" => (true, s(1)),
        _ => (false, None),
    }
}

/// `SHOW TRANSACTIONS`: this proxy's open distributed transactions (`state` active,
/// committing, rolling back), then the prepared XA legs of the proxy's transactions that the
/// last recovery round found on the shards (from any proxy), with what it did with each.
pub fn transactions() -> ResultSet {
    let mut rows = Vec::new();
    if let Ok(open) = crate::exec::twopc::open_transactions().lock() {
        for (xid, t) in open.iter() {
            rows.push(vec![
                s(xid),
                s(t.state),
                s(t.session),
                s(t.shards.join(",")),
                s(t.since.elapsed().as_secs()),
            ]);
        }
    }
    if let Ok(last) = crate::exec::recovery::last_round().lock() {
        for p in &last.prepared {
            rows.push(vec![
                s(&p.gtrid),
                s(p.action.name()),
                None,
                s(&p.shard),
                None,
            ]);
        }
    }
    result(
        &[
            Col::Text("xid"),
            Col::Text("state"),
            Col::Int("session"),
            Col::Text("shards"),
            Col::Int("time_s"),
        ],
        rows,
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::admin::ops::{Health, Role};

    fn cell(rs: &ResultSet, r: usize, c: usize) -> Option<String> {
        rs.rows[r][c]
            .as_ref()
            .map(|b| String::from_utf8(b.to_vec()).unwrap())
    }

    fn names(rs: &ResultSet) -> Vec<String> {
        rs.columns
            .iter()
            .map(|c| String::from_utf8(c.name.to_vec()).unwrap())
            .collect()
    }

    #[test]
    fn backends_render_lag_null_for_primary() {
        let rs = backends(&[BackendStatus {
            address: "127.0.0.1:3311".into(),
            shard: "s1".into(),
            role: Role::Primary,
            health: Health::Down,
            lag_seconds: None,
            pool_in_use: 3,
            pool_idle: 5,
            queries: 100,
            errors: 2,
            gtid_position: "0-1-5".into(),
            read_only: Some(false),
            lag_ms: None,
            in_read_set: false,
            reads: 7,
            extra_gtids: String::new(),
        }]);
        assert_eq!(names(&rs)[3], "health");
        assert_eq!(cell(&rs, 0, 3).as_deref(), Some("down"));
        assert_eq!(cell(&rs, 0, 4), None);
        assert_eq!(cell(&rs, 0, 5).as_deref(), Some("3"));
        assert!(rs.columns[5].is_numeric());
        assert_eq!(
            names(&rs)[11..],
            ["lag_ms", "in_read_set", "reads", "extra_gtids"]
        );
        assert_eq!(cell(&rs, 0, 11), None);
        assert_eq!(cell(&rs, 0, 12).as_deref(), Some("no"));
        assert_eq!(cell(&rs, 0, 13).as_deref(), Some("7"));
    }

    #[test]
    fn ring_share_is_a_percentage() {
        let rs = ring(&[RingShare {
            shard: "s1".into(),
            vnodes: 256,
            share: 1.0 / 3.0,
        }]);
        assert_eq!(cell(&rs, 0, 2).as_deref(), Some("33.33"));
    }

    #[test]
    fn sessions_time_in_whole_seconds() {
        let rs = sessions(&[SessionInfo {
            id: 9,
            client: "127.0.0.1:5000".into(),
            user: "app".into(),
            db: None,
            state: "idle".into(),
            pinned: true,
            statement: None,
            time_in_state: Duration::from_millis(2500),
        }]);
        assert_eq!(cell(&rs, 0, 5).as_deref(), Some("yes"));
        assert_eq!(cell(&rs, 0, 7).as_deref(), Some("2"));
        assert_eq!(cell(&rs, 0, 3), None);
    }

    #[test]
    fn reload_without_changes_says_so() {
        assert_eq!(cell(&reload(&[]), 0, 0).as_deref(), Some("no changes"));
    }

    #[test]
    fn help_lists_every_statement() {
        assert_eq!(help().rows.len(), STATEMENTS.len());
    }
}
