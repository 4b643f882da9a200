//! Session threads: each runs its own single-threaded tokio runtime, and a session lives on
//! one of them from its first packet to its last.
//!
//! A proxy's work per statement is small (read a packet, route it, relay a few packets back),
//! so what a work-stealing runtime adds to it shows: waking another thread to steal a task,
//! moving a session between cores halfway through a statement, its cache lines with it. Here
//! the listener hands each accepted connection to the next thread in turn and nothing moves
//! after that, the way HAProxy and NGINX run their threads: a session's socket, its backend
//! connections and its timers all belong to the runtime of its thread.
//!
//! Backend connections follow the same rule: a connection is registered with the runtime that
//! opened it, so each pool keeps one idle list per thread ([`current`] says which), and a
//! session only ever gets back connections its own thread opened. The thread that runs
//! everything else (listeners, admin port, HTTP, health checks: the "main" runtime) has list
//! 0; session threads are numbered from 1.

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::proxy::Proxy;

thread_local! {
    static INDEX: Cell<usize> = const { Cell::new(0) };
}

/// The idle-list index of the calling thread: 1..=n on session threads, 0 elsewhere.
pub fn current() -> usize {
    INDEX.with(|i| i.get())
}

/// How many idle lists a pool needs: one per session thread plus the main runtime's.
pub fn lists() -> usize {
    COUNT.load(Ordering::Relaxed) + 1
}

static COUNT: AtomicUsize = AtomicUsize::new(0);

/// A client connection on its way to a session thread.
type Handoff = (Arc<Proxy>, std::net::TcpStream);

/// The session threads, as the listener sees them.
pub struct Workers {
    senders: Vec<mpsc::UnboundedSender<Handoff>>,
    next: AtomicUsize,
}

impl Workers {
    /// Starts `n` session threads (at least one). Call before any pool is created, so that
    /// pools get one idle list per thread.
    pub fn start(n: usize) -> std::io::Result<Arc<Workers>> {
        let n = n.max(1);
        COUNT.store(n, Ordering::Relaxed);
        let mut senders = Vec::with_capacity(n);
        for i in 1..=n {
            let (tx, rx) = mpsc::unbounded_channel::<Handoff>();
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            std::thread::Builder::new()
                .name(format!("sessions-{i}"))
                .spawn(move || {
                    INDEX.with(|c| c.set(i));
                    rt.block_on(run(rx));
                })?;
            senders.push(tx);
        }
        Ok(Arc::new(Workers {
            senders,
            next: AtomicUsize::new(0),
        }))
    }

    /// Gives an accepted client connection to the next session thread (round robin).
    pub fn serve(&self, proxy: Arc<Proxy>, stream: tokio::net::TcpStream) {
        // Deregistered from this runtime here, registered with the session thread's there.
        let std_stream = match stream.into_std() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("cannot hand a connection to a session thread: {e}");
                return;
            }
        };
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.senders.len();
        if self.senders[i].send((proxy, std_stream)).is_err() {
            tracing::warn!("session thread {} is gone; connection dropped", i + 1);
        }
    }
}

/// One session thread: takes connections from the listener and serves each in its own task.
async fn run(mut rx: mpsc::UnboundedReceiver<Handoff>) {
    while let Some((proxy, std_stream)) = rx.recv().await {
        match tokio::net::TcpStream::from_std(std_stream) {
            Ok(stream) => {
                tokio::spawn(crate::frontend::session::serve(proxy, stream));
            }
            Err(e) => tracing::warn!("cannot register a client connection: {e}"),
        }
    }
}
