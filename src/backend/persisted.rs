//! The persisted topology: which server is each shard's primary and which are fenced, written
//! to `failover.state_file` at every change (by [`super::failover`]) and read when the proxy
//! starts and at a config reload ([`super::topology`]), so a promotion survives a restart
//! without the config being rewritten.
//!
//! The file is JSON, written to a temporary file and renamed over the old one, so a crash in
//! the middle leaves the previous topology, never half a file.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// One shard as persisted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersistedShard {
    /// Address of the current primary.
    pub primary: String,
    /// Former primaries, never routed to as primary again.
    #[serde(default)]
    pub fenced: Vec<String>,
}

/// Every shard's primary and fenced servers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersistedTopology {
    /// By shard name.
    pub shards: BTreeMap<String, PersistedShard>,
}

impl PersistedTopology {
    /// Reads the file; `Ok(None)` if it does not exist yet.
    pub fn load(path: &str) -> anyhow::Result<Option<PersistedTopology>> {
        match std::fs::read_to_string(path) {
            Ok(text) => Ok(Some(serde_json::from_str(&text)?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Writes the file atomically (temporary file, fsync, rename).
    pub fn save(&self, path: &str) -> anyhow::Result<()> {
        use std::io::Write;
        let tmp = format!("{path}.tmp");
        {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(serde_json::to_string_pretty(self)?.as_bytes())?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, path)?;
        if let Some(dir) = Path::new(path).parent() {
            if let Ok(d) = std::fs::File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    }
}
