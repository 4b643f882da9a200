//! Live client sessions by connection id: what `KILL`, `SHOW SESSIONS` and shutdown act on.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::Notify;

/// What others may see of a session and do to it.
pub struct SessionHandle {
    pub id: u32,
    pub user: String,
    pub client: String,
    /// Set by `KILL CONNECTION`: the session closes at once.
    pub killed: AtomicBool,
    pub kill_notify: Notify,
    pub info: Mutex<SessionInfo>,
}

/// A snapshot for SHOW SESSIONS and for KILL to find the running backend work.
#[derive(Debug, Clone, Default)]
pub struct SessionInfo {
    pub db: Option<String>,
    pub state: &'static str,
    /// The running statement's text (shared, not copied: the session keeps its own).
    pub statement: Option<Arc<str>>,
    pub since: Option<Instant>,
    pub pinned: Option<&'static str>,
    /// The backend server and its connection id while a statement runs there.
    pub running_on: Option<(Arc<str>, u32)>,
}

impl SessionHandle {
    pub fn snapshot(&self) -> SessionInfo {
        self.info.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
    pub fn update(&self, f: impl FnOnce(&mut SessionInfo)) {
        f(&mut self.info.lock().unwrap_or_else(|e| e.into_inner()))
    }
    pub fn kill(&self) {
        self.killed.store(true, Ordering::SeqCst);
        self.kill_notify.notify_waiters();
        self.kill_notify.notify_one();
    }
    pub fn is_killed(&self) -> bool {
        self.killed.load(Ordering::SeqCst)
    }
}

#[derive(Default)]
pub struct Registry {
    sessions: Mutex<HashMap<u32, Arc<SessionHandle>>>,
}

impl Registry {
    pub fn register(&self, id: u32, user: &str, client: &str) -> Arc<SessionHandle> {
        let h = Arc::new(SessionHandle {
            id,
            user: user.to_string(),
            client: client.to_string(),
            killed: AtomicBool::new(false),
            kill_notify: Notify::new(),
            info: Mutex::new(SessionInfo {
                state: "idle",
                ..Default::default()
            }),
        });
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, h.clone());
        h
    }
    pub fn remove(&self, id: u32) {
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
    }
    pub fn get(&self, id: u32) -> Option<Arc<SessionHandle>> {
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
            .cloned()
    }
    pub fn all(&self) -> Vec<Arc<SessionHandle>> {
        let mut v: Vec<_> = self
            .sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        v.sort_by_key(|h| h.id);
        v
    }
    pub fn len(&self) -> usize {
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
