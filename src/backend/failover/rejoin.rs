//! A former primary that answers again: does it rejoin its shard as a replica?
//!
//! It may, only if its GTID history is a prefix of the current primary's: everything it ever
//! wrote, the new primary has. MariaDB's `@@gtid_binlog_state` lists, per domain and server id,
//! the last GTID a server's binlog holds; sequence numbers grow within a domain, so the former
//! primary holds a transaction the new one lacks exactly when, for some (domain, server), its
//! last sequence number is higher than the new primary's (or the new one has none from that
//! server). Those transactions are named ([`extra_gtids`]) in SHOW BACKENDS and the log, and
//! the server stays fenced (out of routing, `read_only`) until an operator repairs it.
//!
//! A server with no extra transaction is pointed at the primary (`[replication]` credentials),
//! starting from what it holds: its `gtid_slave_pos` is set to its `gtid_binlog_pos` first, or
//! it would ask the primary for transactions it wrote itself. Then the topology moves it from
//! the fenced servers to the replicas ([`Topology::rejoined`]), persisted like a promotion, and
//! it enters the read set once its health check finds it replicating and caught up.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::promote::{admin_conn, exec, host_port, value};
use super::Host;
use crate::backend::gtid::Gtid;

/// A server's `@@gtid_binlog_state`: the last sequence number per (domain, server id).
pub fn binlog_state(text: &str) -> BTreeMap<(u32, u32), u64> {
    text.split(',')
        .filter_map(|p| Gtid::parse(p.trim()))
        .map(|g| ((g.domain, g.server), g.seq))
        .collect()
}

/// The transactions `old` holds that `new` lacks, as GTID ranges (`0-1-101` or
/// `0-1-101..0-1-105`: the sequence numbers of that server after the new primary's last one;
/// some numbers of the range may belong to other servers); empty: `old` is a prefix of `new`.
pub fn extra_gtids(old: &str, new: &str) -> Vec<String> {
    let new = binlog_state(new);
    binlog_state(old)
        .into_iter()
        .filter_map(|((d, s), seq)| {
            let have = new.get(&(d, s)).copied().unwrap_or(0);
            (seq > have).then(|| {
                if seq == have + 1 {
                    format!("{d}-{s}-{seq}")
                } else {
                    format!("{d}-{s}-{}..{d}-{s}-{seq}", have + 1)
                }
            })
        })
        .collect()
}

/// Checks the fenced server `addr` of `shard` against its primary; rejoins it as a replica
/// when its history is a prefix, else records the extra GTIDs in its observed state.
/// `Ok(true)`: rejoined.
pub async fn try_rejoin(host: &dyn Host, shard: &str, addr: &str) -> Result<bool, String> {
    let config = host.config();
    let topo = host.topology();
    let s = topo
        .shard(shard)
        .ok_or_else(|| format!("unknown shard '{shard}'"))?;
    let fenced = s
        .fenced
        .iter()
        .find(|f| f.addr == addr)
        .ok_or_else(|| format!("{addr} is not fenced in {shard}"))?
        .clone();
    let primary = s.primary.addr.clone();
    let Some(repl) = config.replication.clone() else {
        return Err(
            "no [replication] credentials in the config: cannot point it at the primary".into(),
        );
    };
    let mut p = admin_conn(&primary, &config).await?;
    let new_state = value(&mut p, "SELECT @@gtid_binlog_state")
        .await?
        .unwrap_or_default();
    drop(p);
    let mut c = admin_conn(addr, &config).await?;
    let old_state = value(&mut c, "SELECT @@gtid_binlog_state")
        .await?
        .unwrap_or_default();
    let extra = extra_gtids(&old_state, &new_state);
    {
        let mut o = fenced
            .stats
            .observed
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        o.extra_gtids = extra.join(",");
    }
    if !extra.is_empty() {
        tracing::error!(shard, backend = %addr, primary = %primary, extra = %extra.join(","), "former primary holds transactions the primary lacks: stays fenced");
        return Ok(false);
    }
    let (h, port) = host_port(&primary);
    for sql in [
        "SET GLOBAL read_only=1".to_string(),
        "STOP SLAVE".to_string(),
        "SET GLOBAL gtid_slave_pos = @@gtid_binlog_pos".to_string(),
        format!(
            "CHANGE MASTER TO MASTER_HOST='{h}', MASTER_PORT={port}, MASTER_USER='{}', \
             MASTER_PASSWORD='{}', MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1",
            repl.user.replace('\'', "''"),
            repl.password.replace('\'', "''")
        ),
        "START SLAVE".to_string(),
    ] {
        exec(&mut c, &sql).await?;
    }
    drop(c);
    let next = topo.rejoined(shard, addr).map_err(|e| e.to_string())?;
    if let Some(path) = &config.failover.state_file {
        next.persisted().save(path).map_err(|e| e.to_string())?;
    }
    host.install(Arc::new(next));
    tracing::warn!(shard, backend = %addr, primary = %primary, "topology changed: former primary rejoined as a replica (its GTID history is a prefix of the primary's)");
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_rejoins_and_a_divergent_history_is_named() {
        // Old primary 1 wrote up to 100; the new primary 2 has all of it and wrote on.
        assert!(extra_gtids("0-1-100", "0-1-100,0-2-150").is_empty());
        // Nothing written by the old one at all.
        assert!(extra_gtids("", "0-2-3").is_empty());
        // Old primary wrote 101 and 102 that never reached the new primary.
        assert_eq!(
            extra_gtids("0-1-102", "0-1-100,0-2-150"),
            ["0-1-101..0-1-102"]
        );
        assert_eq!(extra_gtids("0-1-101,1-1-7", "0-1-100,1-1-7"), ["0-1-101"]);
        // A domain the new primary never saw.
        assert_eq!(extra_gtids("5-1-2", "0-1-100"), ["5-1-1..5-1-2"]);
    }
}
