//! A client connection as the protocol services see it: plain TCP that can
//! be upgraded to TLS in place (STARTTLS/STLS), or TLS from the start
//! (implicit-TLS ports), with a bounded line reader over it.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// The byte stream under a session.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    /// Transitional state during a TLS upgrade; never read or written.
    Upgrading,
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Upgrading => Poll::Ready(Err(io::ErrorKind::NotConnected.into())),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Upgrading => Poll::Ready(Err(io::ErrorKind::NotConnected.into())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s).poll_flush(cx),
            Stream::Upgrading => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Upgrading => Poll::Ready(Ok(())),
        }
    }
}

/// What reading a line produced.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// A complete line, terminator (LF or CRLF) included.
    Complete(Vec<u8>),
    /// The line exceeded the limit; it was discarded up to and including
    /// its LF, so the session can answer and go on. `crlf`: it ended in CRLF.
    TooLong { crlf: bool },
    /// The peer closed the connection (possibly mid-line).
    Eof,
}

/// Why a read ended without data.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("timed out waiting for the client")]
    Timeout,
    #[error("i/o: {0}")]
    Io(#[from] io::Error),
}

/// A session's connection: the stream, a read buffer, and the peer.
pub struct Connection {
    stream: Stream,
    buf: BytesMut,
    pub peer: SocketAddr,
}

/// How much is read from the socket at a time.
const READ_CHUNK: usize = 16 * 1024;

impl Connection {
    pub fn new(stream: Stream, peer: SocketAddr) -> Self {
        Self {
            stream,
            buf: BytesMut::new(),
            peer,
        }
    }

    /// Accepts TLS on a fresh TCP connection (implicit-TLS ports), bounded
    /// by `timeout` so a handshake that never finishes holds nothing.
    pub async fn accept_tls(
        tcp: TcpStream,
        peer: SocketAddr,
        acceptor: &TlsAcceptor,
        timeout: Duration,
    ) -> io::Result<Self> {
        let tls = tokio::time::timeout(timeout, acceptor.accept(tcp))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))??;
        Ok(Self::new(Stream::Tls(Box::new(tls)), peer))
    }

    pub fn is_tls(&self) -> bool {
        matches!(self.stream, Stream::Tls(_))
    }

    /// The RFC 9266 `tls-exporter` channel binding of this connection (32
    /// bytes of keying material, label `EXPORTER-Channel-Binding`, no
    /// context): only on TLS 1.3, where it is unique to the connection
    /// (RFC 9266 3); none on plaintext or TLS 1.2.
    pub fn tls_exporter(&self) -> Option<[u8; 32]> {
        let Stream::Tls(s) = &self.stream else {
            return None;
        };
        let conn = s.get_ref().1;
        if conn.protocol_version() != Some(rustls::ProtocolVersion::TLSv1_3) {
            return None;
        }
        conn.export_keying_material([0u8; 32], b"EXPORTER-Channel-Binding", None)
            .ok()
    }

    /// Bytes the client sent that have not been consumed yet.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Upgrades a plain connection to TLS in place. The caller must have
    /// checked [`Connection::buffered`] is zero: plaintext pipelined after
    /// STARTTLS must never be executed inside TLS (CVE-2011-0411).
    pub async fn start_tls(&mut self, acceptor: &TlsAcceptor, timeout: Duration) -> io::Result<()> {
        if !self.buf.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "data pipelined after STARTTLS",
            ));
        }
        let Stream::Plain(tcp) = std::mem::replace(&mut self.stream, Stream::Upgrading) else {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "already TLS"));
        };
        let tls = tokio::time::timeout(timeout, acceptor.accept(tcp))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))??;
        self.stream = Stream::Tls(Box::new(tls));
        Ok(())
    }

    async fn fill(&mut self, timeout: Duration) -> Result<usize, ReadError> {
        match tokio::time::timeout(timeout, self.fill_now()).await {
            Ok(r) => Ok(r?),
            Err(_) => Err(ReadError::Timeout),
        }
    }

    async fn fill_now(&mut self) -> io::Result<usize> {
        if self.buf.is_empty()
            && let Stream::Plain(tcp) = &self.stream
        {
            // An idle plain connection holds no read buffer while it waits
            // (thousands of IDLE sessions would otherwise keep 64 KiB each);
            // one is taken once there is something to read.
            self.buf = BytesMut::new();
            loop {
                tcp.readable().await?;
                self.buf.reserve(READ_CHUNK);
                match tcp.try_read_buf(&mut self.buf) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    r => return r,
                }
            }
        }
        self.buf.reserve(READ_CHUNK);
        self.stream.read_buf(&mut self.buf).await
    }

    /// Reads one line of at most `max` bytes (terminator included).
    pub async fn read_line(&mut self, max: usize, timeout: Duration) -> Result<Line, ReadError> {
        let mut scanned = 0;
        let mut discarding = false;
        // The last byte dropped while discarding, to tell CRLF from LF.
        let mut dropped_last = 0u8;
        loop {
            if let Some(pos) = self.buf[scanned..].iter().position(|&b| b == b'\n') {
                let end = scanned + pos + 1;
                let line = self.buf.split_to(end);
                if discarding || end > max {
                    let before = if end >= 2 {
                        line[end - 2]
                    } else {
                        dropped_last
                    };
                    return Ok(Line::TooLong {
                        crlf: before == b'\r',
                    });
                }
                return Ok(Line::Complete(line.to_vec()));
            }
            if self.buf.len() > max {
                // Keep memory bounded: drop what we have, remember to
                // discard the rest of this line.
                dropped_last = self.buf.last().copied().unwrap_or(0);
                self.buf.clear();
                discarding = true;
            }
            scanned = self.buf.len();
            if self.fill(timeout).await? == 0 {
                return Ok(Line::Eof);
            }
        }
    }

    /// Reads up to `max` bytes that are available (at least one unless the
    /// peer closed), for length-delimited data such as BDAT or literals.
    pub async fn read_some(&mut self, max: usize, timeout: Duration) -> Result<Vec<u8>, ReadError> {
        if self.buf.is_empty() && self.fill(timeout).await? == 0 {
            return Ok(Vec::new());
        }
        let n = max.min(self.buf.len());
        Ok(self.buf.split_to(n).to_vec())
    }

    /// Discards up to `n` buffered-or-incoming bytes; returns how many.
    pub async fn skip(&mut self, n: usize, timeout: Duration) -> Result<usize, ReadError> {
        if self.buf.is_empty() && self.fill(timeout).await? == 0 {
            return Ok(0);
        }
        let k = n.min(self.buf.len());
        self.buf.advance(k);
        Ok(k)
    }

    pub async fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        self.stream.write_all(data).await
    }

    pub async fn flush(&mut self) -> io::Result<()> {
        self.stream.flush().await
    }

    pub async fn shutdown(&mut self) {
        let _ = self.stream.shutdown().await;
    }
}

/// A shared TLS acceptor built from a rustls server config.
pub fn acceptor(config: Arc<rustls::ServerConfig>) -> TlsAcceptor {
    TlsAcceptor::from(config)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    async fn pair() -> (Connection, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let client = TcpStream::connect(addr).await.unwrap();
        let (server, peer) = l.accept().await.unwrap();
        (Connection::new(Stream::Plain(server), peer), client)
    }

    #[tokio::test]
    async fn lines_are_bounded_and_resynchronise() {
        let (mut conn, mut client) = pair().await;
        // The data is written before each read: a guard against hanging.
        let t = Duration::from_secs(60);
        client
            .write_all(b"short\r\nthis line is far too long\r\nnext\n")
            .await
            .unwrap();
        assert_eq!(
            conn.read_line(10, t).await.unwrap(),
            Line::Complete(b"short\r\n".to_vec())
        );
        assert_eq!(
            conn.read_line(10, t).await.unwrap(),
            Line::TooLong { crlf: true }
        );
        assert_eq!(
            conn.read_line(10, t).await.unwrap(),
            Line::Complete(b"next\n".to_vec())
        );
        // A line longer than the limit arriving in pieces never grows the
        // buffer without bound.
        let long = vec![b'x'; 100_000];
        client.write_all(&long).await.unwrap();
        client.write_all(b"\nok\r\n").await.unwrap();
        assert_eq!(
            conn.read_line(64, t).await.unwrap(),
            Line::TooLong { crlf: false }
        );
        assert_eq!(
            conn.read_line(64, t).await.unwrap(),
            Line::Complete(b"ok\r\n".to_vec())
        );
        drop(client);
        assert_eq!(conn.read_line(64, t).await.unwrap(), Line::Eof);
    }

    #[tokio::test(start_paused = true)]
    async fn reads_time_out() {
        let (mut conn, _client) = pair().await;
        let r = conn.read_line(64, Duration::from_secs(300)).await;
        assert!(matches!(r, Err(ReadError::Timeout)));
    }
}
