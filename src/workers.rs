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
//! opened it, so each pool keeps one idle list per thread, and a session only ever gets back
//! connections its own thread opened. Session thread `i` (numbered from 1) uses list `i`
//! ([`crate::backend::pool::use_idle_list`]); the thread that runs everything else (listeners,
//! admin port, HTTP, health checks: the "main" runtime) uses list 0.
//!
//! What a thread does with a connection is not decided here: [`Workers::start`] takes the
//! handler (the server passes `frontend::session::serve`), and each connection comes with a
//! context for it (the running proxy).

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc;

/// The session threads, as the listener sees them: each connection is handed over with a
/// context `C` for the handler.
pub struct Workers<C> {
    senders: Vec<mpsc::UnboundedSender<(C, std::net::TcpStream)>>,
    next: AtomicUsize,
}

impl<C: Send + 'static> Workers<C> {
    /// Starts `n` session threads (at least one); each serves every connection it is given
    /// as `handler(context, stream)`, in a task of its own.
    pub fn start<H, F>(n: usize, handler: H) -> std::io::Result<Arc<Workers<C>>>
    where
        H: Fn(C, tokio::net::TcpStream) -> F + Send + Sync + 'static,
        F: Future<Output = ()> + Send + 'static,
    {
        let n = n.max(1);
        let handler = Arc::new(handler);
        let mut senders = Vec::with_capacity(n);
        for i in 1..=n {
            let (tx, rx) = mpsc::unbounded_channel();
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let handler = handler.clone();
            std::thread::Builder::new()
                .name(format!("sessions-{i}"))
                .spawn(move || {
                    crate::backend::pool::use_idle_list(i);
                    rt.block_on(run(rx, handler));
                })?;
            senders.push(tx);
        }
        Ok(Arc::new(Workers {
            senders,
            next: AtomicUsize::new(0),
        }))
    }

    /// How many idle lists a pool needs: one per session thread plus list 0, which every other
    /// thread uses.
    pub fn pool_idle_lists(&self) -> usize {
        self.senders.len() + 1
    }

    /// Gives an accepted client connection to the next session thread (round robin).
    pub fn serve(&self, context: C, stream: tokio::net::TcpStream) {
        // Deregistered from this runtime here, registered with the session thread's there.
        let std_stream = match stream.into_std() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("cannot hand a connection to a session thread: {e}");
                return;
            }
        };
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.senders.len();
        if self.senders[i].send((context, std_stream)).is_err() {
            tracing::warn!("session thread {} is gone; connection dropped", i + 1);
        }
    }
}

/// One session thread: takes connections from the listener and serves each in its own task.
async fn run<C, H, F>(mut rx: mpsc::UnboundedReceiver<(C, std::net::TcpStream)>, handler: Arc<H>)
where
    H: Fn(C, tokio::net::TcpStream) -> F,
    F: Future<Output = ()> + Send + 'static,
{
    while let Some((context, std_stream)) = rx.recv().await {
        match tokio::net::TcpStream::from_std(std_stream) {
            Ok(stream) => {
                tokio::spawn(handler(context, stream));
            }
            Err(e) => tracing::warn!("cannot register a client connection: {e}"),
        }
    }
}
