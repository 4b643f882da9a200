//! Packet framing: a 3-byte little-endian length, a 1-byte sequence id, the payload.
//!
//! A payload of 16 MiB − 1 bytes or more is split into chunks of exactly 0xFFFFFF bytes and a
//! final shorter chunk (possibly empty). [`PacketReader::read`] joins the chunks into one
//! logical packet and [`PacketWriter::write`] splits them again the same way, so relaying a
//! logical packet reproduces the original bytes exactly.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Largest chunk payload.
pub const MAX_CHUNK: usize = 0xFF_FFFF;

/// Why reading a packet failed.
#[derive(Debug, thiserror::Error)]
pub enum PacketError {
    #[error("connection closed")]
    Closed,
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("packet of {0} bytes exceeds the limit of {1}")]
    TooLarge(usize, usize),
    #[error("packet sequence id {got}, expected {expected}")]
    OutOfOrder { got: u8, expected: u8 },
}

/// One logical packet: the sequence id of its first chunk, the number of chunks, the payload.
#[derive(Debug, Clone)]
pub struct Packet {
    pub seq: u8,
    pub chunks: u8,
    pub payload: Bytes,
}

impl Packet {
    /// The sequence id that follows this packet.
    pub fn next_seq(&self) -> u8 {
        self.seq.wrapping_add(self.chunks)
    }
    pub fn first(&self) -> Option<u8> {
        self.payload.first().copied()
    }
}

/// Reads logical packets from a byte stream.
pub struct PacketReader<R> {
    inner: R,
    buf: BytesMut,
    max_payload: usize,
}

impl<R: AsyncRead + Unpin> PacketReader<R> {
    pub fn new(inner: R, max_payload: usize) -> Self {
        PacketReader {
            inner,
            buf: BytesMut::with_capacity(16 * 1024),
            max_payload,
        }
    }

    /// Whether bytes of a next packet are already buffered (pipelining clients).
    pub fn has_buffered(&self) -> bool {
        !self.buf.is_empty()
    }

    async fn fill(&mut self, need: usize) -> Result<(), PacketError> {
        while self.buf.len() < need {
            self.buf.reserve(need - self.buf.len().min(need) + 8192);
            let n = self.inner.read_buf(&mut self.buf).await?;
            if n == 0 {
                return Err(PacketError::Closed);
            }
        }
        Ok(())
    }

    /// The frame (4-byte header and payload) of the next packet when it is wholly buffered and
    /// a single chunk, without taking it: the relay looks at the payload, copies the frame to
    /// the client as it is, then [`Self::consume`]s it, with no per-packet allocation.
    pub fn peek_frame(&self) -> Option<&[u8]> {
        if self.buf.len() < 4 {
            return None;
        }
        let len =
            (self.buf[0] as usize) | (self.buf[1] as usize) << 8 | (self.buf[2] as usize) << 16;
        if len >= MAX_CHUNK || len > self.max_payload || self.buf.len() < 4 + len {
            return None;
        }
        Some(&self.buf[..4 + len])
    }

    /// Drops `n` bytes from the front of the buffer (a frame [`Self::peek_frame`] returned).
    pub fn consume(&mut self, n: usize) {
        self.buf.advance(n.min(self.buf.len()));
    }

    /// The next packet when it is already wholly in the buffer: no I/O, no waiting. The
    /// packets of an answer usually arrive together, so a caller that guards reads with a
    /// timeout arms it only when it really has to wait. `None`: not buffered yet, a packet of
    /// several chunks, or one over the size limit ([`Self::read`] handles all three).
    pub fn try_buffered(&mut self) -> Option<Packet> {
        let frame_len = self.peek_frame()?.len();
        let seq = self.buf[3];
        self.buf.advance(4);
        Some(Packet {
            seq,
            chunks: 1,
            payload: self.buf.split_to(frame_len - 4).freeze(),
        })
    }

    /// Reads one logical packet, joining 16 MiB chunks.
    pub async fn read(&mut self) -> Result<Packet, PacketError> {
        let mut payload: Option<BytesMut> = None;
        let mut first_seq = 0u8;
        let mut chunks = 0u8;
        loop {
            self.fill(4).await?;
            let len =
                (self.buf[0] as usize) | (self.buf[1] as usize) << 8 | (self.buf[2] as usize) << 16;
            let seq = self.buf[3];
            if chunks == 0 {
                first_seq = seq;
            } else if seq != first_seq.wrapping_add(chunks) {
                return Err(PacketError::OutOfOrder {
                    got: seq,
                    expected: first_seq.wrapping_add(chunks),
                });
            }
            let so_far = payload.as_ref().map_or(0, |p| p.len());
            if so_far + len > self.max_payload {
                return Err(PacketError::TooLarge(so_far + len, self.max_payload));
            }
            self.fill(4 + len).await?;
            self.buf.advance(4);
            let chunk = self.buf.split_to(len);
            chunks = chunks.wrapping_add(1);
            if len < MAX_CHUNK && payload.is_none() {
                return Ok(Packet {
                    seq: first_seq,
                    chunks,
                    payload: chunk.freeze(),
                });
            }
            let p = payload.get_or_insert_with(BytesMut::new);
            p.extend_from_slice(&chunk);
            if len < MAX_CHUNK {
                return Ok(Packet {
                    seq: first_seq,
                    chunks,
                    payload: payload.take().unwrap_or_default().freeze(),
                });
            }
        }
    }

    pub fn get_mut(&mut self) -> &mut R {
        &mut self.inner
    }
}

/// Writes logical packets into a buffer that is flushed explicitly, so a whole answer leaves
/// in as few system calls as possible.
///
/// With a write timeout, a peer that stops reading (its receive window stays full) makes a
/// write fail with `TimedOut` after that long instead of blocking forever, as MariaDB's
/// `net_write_timeout` does: the session then ends and releases what it held.
pub struct PacketWriter<W> {
    inner: W,
    buf: BytesMut,
    write_timeout: Option<std::time::Duration>,
}

/// Past this many buffered bytes, writes go out without waiting for an explicit flush.
const FLUSH_THRESHOLD: usize = 64 * 1024;

impl<W: AsyncWrite + Unpin> PacketWriter<W> {
    pub fn new(inner: W) -> Self {
        PacketWriter {
            inner,
            buf: BytesMut::with_capacity(16 * 1024),
            write_timeout: None,
        }
    }

    /// Bounds how long one write may wait for the peer to make room (see the type's doc).
    pub fn set_write_timeout(&mut self, timeout: Option<std::time::Duration>) {
        self.write_timeout = timeout;
    }

    /// Sends the buffer. The first attempt goes without a timer: a socket with room in its
    /// send buffer takes a whole answer at once, which is the common case.
    async fn write_out(&mut self) -> std::io::Result<()> {
        let Some(limit) = self.write_timeout else {
            self.inner.write_all(&self.buf).await?;
            self.buf.clear();
            return Ok(());
        };
        let mut inner = std::pin::Pin::new(&mut self.inner);
        let first = std::future::poll_fn(|cx| match inner.as_mut().poll_write(cx, &self.buf) {
            std::task::Poll::Pending => std::task::Poll::Ready(Ok(0)),
            ready => ready,
        })
        .await?;
        if first < self.buf.len() {
            let rest = &self.buf[first..];
            match tokio::time::timeout(limit, self.inner.write_all(rest)).await {
                Ok(r) => r?,
                Err(_) => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("the peer read nothing for {limit:?}"),
                    ))
                }
            }
        }
        self.buf.clear();
        Ok(())
    }

    /// Queues a logical packet starting at sequence id `seq`; returns the next sequence id.
    pub async fn write(&mut self, seq: u8, payload: &[u8]) -> std::io::Result<u8> {
        let mut seq = seq;
        let mut rest = payload;
        loop {
            let n = rest.len().min(MAX_CHUNK);
            self.buf.reserve(4 + n);
            self.buf.put_uint_le(n as u64, 3);
            self.buf.put_u8(seq);
            self.buf.put_slice(&rest[..n]);
            seq = seq.wrapping_add(1);
            rest = &rest[n..];
            if self.buf.len() >= FLUSH_THRESHOLD {
                self.write_out().await?;
            }
            if n < MAX_CHUNK {
                return Ok(seq);
            }
        }
    }

    /// Queues one frame exactly as it came from a peer (header included): relaying a packet
    /// byte for byte, its sequence id untouched. Returns the next sequence id.
    pub async fn write_frame(&mut self, frame: &[u8]) -> std::io::Result<u8> {
        debug_assert!(frame.len() >= 4 && frame.len() < 4 + MAX_CHUNK);
        self.buf.extend_from_slice(frame);
        if self.buf.len() >= FLUSH_THRESHOLD {
            self.write_out().await?;
        }
        Ok(frame[3].wrapping_add(1))
    }

    /// Sends everything queued.
    pub async fn flush(&mut self) -> std::io::Result<()> {
        if !self.buf.is_empty() {
            self.write_out().await?;
        }
        self.inner.flush().await
    }

    pub fn get_mut(&mut self) -> &mut W {
        &mut self.inner
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn roundtrip(payload: Vec<u8>) -> (Packet, Vec<u8>) {
        let mut wire = Vec::new();
        {
            let mut w = PacketWriter::new(&mut wire);
            w.write(7, &payload).await.unwrap();
            w.flush().await.unwrap();
        }
        let mut r = PacketReader::new(&wire[..], 64 << 20);
        (r.read().await.unwrap(), wire)
    }

    #[tokio::test]
    async fn small_packet() {
        let (p, wire) = roundtrip(b"\x03SELECT 1".to_vec()).await;
        assert_eq!(&wire[..4], &[9, 0, 0, 7]);
        assert_eq!(p.seq, 7);
        assert_eq!(p.chunks, 1);
        assert_eq!(&p.payload[..], b"\x03SELECT 1");
        assert_eq!(p.next_seq(), 8);
    }

    #[tokio::test]
    async fn exactly_one_chunk_gets_empty_trailer() {
        let (p, wire) = roundtrip(vec![1u8; MAX_CHUNK]).await;
        assert_eq!(wire.len(), MAX_CHUNK + 8);
        assert_eq!(p.chunks, 2);
        assert_eq!(p.payload.len(), MAX_CHUNK);
    }

    #[tokio::test]
    async fn large_packet_roundtrips() {
        let data: Vec<u8> = (0..(MAX_CHUNK * 2 + 10)).map(|i| i as u8).collect();
        let (p, _) = roundtrip(data.clone()).await;
        assert_eq!(p.chunks, 3);
        assert_eq!(&p.payload[..], &data[..]);
        assert_eq!(p.next_seq(), 10);
    }

    #[tokio::test]
    async fn buffered_packets_come_without_io() {
        let mut wire = Vec::new();
        let mut w = PacketWriter::new(&mut wire);
        w.write(1, b"first").await.unwrap();
        w.write(2, b"second").await.unwrap();
        w.flush().await.unwrap();
        let mut r = PacketReader::new(&wire[..], 1 << 20);
        // Nothing read from the stream yet.
        assert!(r.try_buffered().is_none());
        assert_eq!(&r.read().await.unwrap().payload[..], b"first");
        // The second packet came in the same read.
        let p = r.try_buffered().unwrap();
        assert_eq!((p.seq, p.chunks, &p.payload[..]), (2, 1, &b"second"[..]));
        assert!(r.try_buffered().is_none());
        assert!(!r.has_buffered());
    }

    #[tokio::test]
    async fn frames_relay_byte_for_byte() {
        let mut wire = Vec::new();
        let mut w = PacketWriter::new(&mut wire);
        w.write(3, b"abc").await.unwrap();
        w.write(4, b"").await.unwrap();
        w.flush().await.unwrap();
        let mut r = PacketReader::new(&wire[..], 1 << 20);
        assert!(r.peek_frame().is_none());
        r.fill(4).await.unwrap();
        let mut out = Vec::new();
        {
            let mut w = PacketWriter::new(&mut out);
            for expected_next in [4u8, 5] {
                let frame = r.peek_frame().unwrap().to_vec();
                assert_eq!(w.write_frame(&frame).await.unwrap(), expected_next);
                r.consume(frame.len());
            }
            w.flush().await.unwrap();
        }
        assert!(r.peek_frame().is_none());
        assert_eq!(out, wire);
    }

    #[tokio::test]
    async fn a_peer_that_stops_reading_times_the_write_out() {
        // A pipe whose reader never reads: its buffer fills, then writes wait.
        let (near, _far) = tokio::io::duplex(1024);
        let mut w = PacketWriter::new(near);
        w.set_write_timeout(Some(std::time::Duration::from_millis(200)));
        let started = std::time::Instant::now();
        let mut result = Ok(());
        for _ in 0..10 {
            if let Err(e) = w.write(0, &[7u8; 100 * 1024]).await {
                result = Err(e);
                break;
            }
        }
        let e = result.expect_err("the write must time out");
        assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }

    #[tokio::test]
    async fn writes_with_a_timeout_arrive_whole() {
        let (near, mut far) = tokio::io::duplex(64);
        let mut w = PacketWriter::new(near);
        w.set_write_timeout(Some(std::time::Duration::from_secs(5)));
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            far.read_to_end(&mut got).await.unwrap();
            got
        });
        w.write(0, &[1u8; 1000]).await.unwrap();
        w.flush().await.unwrap();
        drop(w);
        let got = reader.await.unwrap();
        assert_eq!(got.len(), 1004);
        assert_eq!(&got[..4], &[0xe8, 0x03, 0, 0]);
    }

    #[tokio::test]
    async fn too_large_is_refused() {
        let mut wire = Vec::new();
        let mut w = PacketWriter::new(&mut wire);
        w.write(0, &[0u8; 100]).await.unwrap();
        w.flush().await.unwrap();
        let mut r = PacketReader::new(&wire[..], 50);
        assert!(matches!(r.read().await, Err(PacketError::TooLarge(..))));
    }

    #[tokio::test]
    async fn truncated_stream_is_closed() {
        let wire = [10u8, 0, 0, 0, 1, 2];
        let mut r = PacketReader::new(&wire[..], 1 << 20);
        assert!(matches!(r.read().await, Err(PacketError::Closed)));
    }

    proptest::proptest! {
        #[test]
        fn decoder_never_panics(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            rt.block_on(async {
                let mut r = PacketReader::new(&data[..], 1 << 10);
                while r.read().await.is_ok() {}
            });
        }
    }
}
