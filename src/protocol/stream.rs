//! The byte stream under the packet codec: clear-text TCP or TLS (rustls), for client
//! connections (the proxy as the TLS server) and backend connections (the proxy as the TLS
//! client) alike.
//!
//! [`StreamRead`] and [`StreamWrite`] are enums rather than trait objects: the clear-text hot
//! path costs one well-predicted branch per system call, no virtual call, no allocation. A TLS
//! stream is split with `tokio::io::split` (a small lock between the halves; a connection uses
//! one half at a time, so it is never contended). MySQL switches to TLS in the middle of the
//! handshake, so a connection starts clear and [`reunite`]s its halves to upgrade.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf, ReadHalf, WriteHalf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio_rustls::TlsStream;

/// The read half of a connection (to a client or a backend).
pub enum StreamRead {
    /// Clear text (the hot path).
    Plain(OwnedReadHalf),
    /// After the TLS upgrade.
    Tls(ReadHalf<TlsStream<TcpStream>>),
    /// Only while the upgrade holds the socket; reads end at once.
    Detached,
}

/// The write half of a connection (to a client or a backend).
pub enum StreamWrite {
    /// Clear text (the hot path).
    Plain(OwnedWriteHalf),
    /// After the TLS upgrade.
    Tls(WriteHalf<TlsStream<TcpStream>>),
    /// Only while the upgrade holds the socket; writes fail.
    Detached,
}

impl StreamRead {
    /// Whether the connection is encrypted.
    pub fn is_tls(&self) -> bool {
        matches!(self, StreamRead::Tls(_))
    }
}

fn detached() -> io::Error {
    io::Error::new(
        io::ErrorKind::NotConnected,
        "client stream is being upgraded",
    )
}

impl AsyncRead for StreamRead {
    #[inline]
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            StreamRead::Plain(r) => Pin::new(r).poll_read(cx, buf),
            StreamRead::Tls(r) => Pin::new(r).poll_read(cx, buf),
            StreamRead::Detached => Poll::Ready(Ok(())),
        }
    }
}

impl AsyncWrite for StreamWrite {
    #[inline]
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            StreamWrite::Plain(w) => Pin::new(w).poll_write(cx, buf),
            StreamWrite::Tls(w) => Pin::new(w).poll_write(cx, buf),
            StreamWrite::Detached => Poll::Ready(Err(detached())),
        }
    }

    #[inline]
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            StreamWrite::Plain(w) => Pin::new(w).poll_flush(cx),
            StreamWrite::Tls(w) => Pin::new(w).poll_flush(cx),
            StreamWrite::Detached => Poll::Ready(Err(detached())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            StreamWrite::Plain(w) => Pin::new(w).poll_shutdown(cx),
            StreamWrite::Tls(w) => Pin::new(w).poll_shutdown(cx),
            StreamWrite::Detached => Poll::Ready(Ok(())),
        }
    }
}

/// The clear-text socket back from its two halves, to start TLS on it.
pub fn reunite(r: StreamRead, w: StreamWrite) -> io::Result<TcpStream> {
    let (StreamRead::Plain(r), StreamWrite::Plain(w)) = (r, w) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "TLS requested on a connection that is not clear text",
        ));
    };
    r.reunite(w)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))
}

/// The two halves of an established TLS stream.
pub fn split_tls(tls: TlsStream<TcpStream>) -> (StreamRead, StreamWrite) {
    let (r, w) = tokio::io::split(tls);
    (StreamRead::Tls(r), StreamWrite::Tls(w))
}
