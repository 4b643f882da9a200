//! The mover of a resharding built from the running config and the target one: a connection
//! to every shard's primary, the change log on each, and the work (one per table and source).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::admin::reshard_copy::{Mover, Work};
use crate::admin::reshard_sql::{self as sql, Db};
use crate::config::Config;
use crate::plan::reshard_state::PairProgress;
use crate::proxy::Proxy;
use crate::ring::Ring;

/// Everything a driver needs, built from the running proxy and the target config.
pub(super) async fn build(
    proxy: &Proxy,
    old: &Config,
    new: &Config,
) -> Result<(Mover, Vec<String>), String> {
    let topology = proxy.topology();
    let mut dbs: HashMap<String, Db> = HashMap::new();
    for s in &old.shards {
        let addr = topology
            .shard(&s.name)
            .map(|p| p.primary.addr.clone())
            .unwrap_or_else(|| s.primary.clone());
        dbs.insert(s.name.clone(), Db::connect(&addr, old).await?);
    }
    let new_shards: Vec<String> = new
        .shards
        .iter()
        .filter(|s| !dbs.contains_key(&s.name))
        .map(|s| s.name.clone())
        .collect();
    for s in new.shards.iter().filter(|s| new_shards.contains(&s.name)) {
        dbs.insert(s.name.clone(), Db::connect(&s.primary, new).await?);
    }
    // The change log and the state table first: every later step writes to them.
    for db in dbs.values_mut() {
        sql::create_log(db).await?;
    }
    let (old_ring, new_ring) = (Ring::from_config(old), Ring::from_config(new));
    let mut targets: Vec<(String, Vec<String>)> = Vec::new();
    for m in old_ring.moves_to(&new_ring) {
        match targets.iter_mut().find(|(s, _)| *s == m.from) {
            Some((_, t)) => t.push(m.to.clone()),
            None => targets.push((m.from.clone(), vec![m.to.clone()])),
        }
    }
    let mut work = Vec::new();
    for t in &new.sharding.tables {
        let same =
            old.sharding.tables.iter().any(|o| {
                o.name.eq_ignore_ascii_case(&t.name) && o.key.eq_ignore_ascii_case(&t.key)
            });
        if !same {
            continue;
        }
        for (source, to) in &targets {
            let db = dbs.get_mut(source).ok_or("no connection")?;
            for (schema, name) in sql::resolve(db, &t.name).await? {
                let info = sql::table_info(db, &schema, &name, Some(&t.key)).await?;
                work.push(Work {
                    config_name: t.name.clone(),
                    info,
                    source: source.clone(),
                    targets: to.clone(),
                    reference: false,
                });
            }
        }
    }
    if !new_shards.is_empty() {
        let default = old.sharding.default_shard.clone();
        for r in &new.sharding.reference_tables {
            let db = dbs
                .get_mut(&default)
                .ok_or("no connection to the default shard")?;
            for (schema, name) in sql::resolve(db, r).await? {
                let info = sql::table_info(db, &schema, &name, None).await?;
                work.push(Work {
                    config_name: r.clone(),
                    info,
                    source: default.clone(),
                    targets: new_shards.clone(),
                    reference: true,
                });
            }
        }
    }
    let mover = Mover {
        old: Arc::new(old_ring),
        new: Arc::new(new_ring),
        dbs,
        work,
        batch_rows: new.reshard.batch_rows.max(1),
        batch_pause: Duration::from_millis(new.reshard.batch_pause_ms),
        progress: None,
    };
    Ok((mover, new_shards))
}

/// The progress rows of a move: one per table and shard pair.
pub(super) fn pairs_of(work: &[Work]) -> Vec<PairProgress> {
    let mut out: Vec<PairProgress> = Vec::new();
    for w in work {
        for t in &w.targets {
            if !out
                .iter()
                .any(|p| p.table == w.config_name && p.from == w.source && &p.to == t)
            {
                out.push(PairProgress {
                    table: w.config_name.clone(),
                    from: w.source.clone(),
                    to: t.clone(),
                    ..Default::default()
                });
            }
        }
    }
    out
}
