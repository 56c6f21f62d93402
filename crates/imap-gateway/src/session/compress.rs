//! COMPRESS=DEFLATE (RFC 4978): once the tagged OK is sent, everything
//! each side sends is one raw DEFLATE stream (RFC 1951). Input is inflated
//! in bounded steps, so a small compressed burst cannot make the session
//! hold more than [`INFLATE_STEP`] of it at a time (the command limits
//! still apply to what comes out).
//!
//! The compressor's state is large (about 300 KiB); a session waiting for
//! its client (between commands, in IDLE) should not keep it. So the last
//! write before the session waits ends with a full flush, which makes the
//! rest of the stream independent of what came before, and the compressor
//! is dropped; the next response starts a new one, continuing the same
//! stream. Mid-response writes use a sync flush and keep it.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use super::*;

/// Inflated bytes handed to the framing at a time.
const INFLATE_STEP: usize = 64 * 1024;

/// The two DEFLATE streams of a compressed session, boxed in the session
/// (about 300 KiB with the window and hash tables: only sessions that ask
/// for it pay).
pub(super) struct Deflate {
    /// `None` while the session waits (see the module comment).
    out: Option<Compress>,
    inp: Decompress,
    /// Compressed bytes read and not inflated yet.
    pending: Vec<u8>,
    /// The last inflate filled its output: the inflater may hold more
    /// (decoded ahead into its window) even with no input pending.
    more: bool,
}

impl Deflate {
    fn new() -> Self {
        Self {
            // Level 1: a mail server's CPU is better spent elsewhere; the
            // text of IMAP responses compresses well at any level.
            out: None,
            inp: Decompress::new(false),
            pending: Vec::new(),
            more: false,
        }
    }

    /// `data` deflated and flushed: the client can inflate all of it now.
    /// `last`: the session waits for its client next, so a full flush, and
    /// the compressor goes.
    pub(super) fn deflate(&mut self, data: &[u8], last: bool) -> std::io::Result<Vec<u8>> {
        // Level 1: a mail server's CPU is better spent elsewhere; the
        // text of IMAP responses compresses well at any level.
        let z = self
            .out
            .get_or_insert_with(|| Compress::new(Compression::fast(), false));
        let flush = if last {
            FlushCompress::Full
        } else {
            FlushCompress::Sync
        };
        let mut out = Vec::with_capacity(data.len() / 2 + 64);
        let mut done = 0;
        loop {
            if out.capacity() - out.len() < 64 {
                out.reserve(out.capacity().max(4096));
            }
            let before = z.total_in();
            z.compress_vec(&data[done..], &mut out, flush)
                .map_err(std::io::Error::other)?;
            done += (z.total_in() - before) as usize;
            // The flush is complete once the output had room to spare.
            if done == data.len() && out.len() < out.capacity() {
                break;
            }
        }
        if last {
            self.out = None;
        }
        Ok(out)
    }

    /// Inflates up to INFLATE_STEP bytes of what is pending; empty when
    /// more input is needed.
    fn inflate_some(&mut self) -> std::io::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(INFLATE_STEP);
        let before = self.inp.total_in();
        let status = self
            .inp
            .decompress_vec(&self.pending, &mut out, FlushDecompress::None)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        let used = (self.inp.total_in() - before) as usize;
        self.pending.drain(..used);
        if status == Status::StreamEnd {
            // RFC 4978: the stream lasts as long as the connection; an end
            // of it is the end of the session (and nothing after it is
            // read, so nothing piles up).
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "the client ended its DEFLATE stream",
            ));
        }
        self.more = out.len() == out.capacity();
        Ok(out)
    }
}

impl Session {
    /// COMPRESS (RFC 4978 3): the OK goes out uncompressed, then both
    /// directions are compressed. Anything the client sent after the
    /// command before reading the OK is dropped (RFC 4978 3: it must wait).
    pub(super) async fn compress(&mut self, tag: &str) -> R {
        if self.deflate.is_some() {
            self.push(&format!(
                "{tag} NO [COMPRESSIONACTIVE] DEFLATE is already on"
            ));
            return Ok(());
        }
        self.push(&format!("{tag} OK DEFLATE active"));
        self.flush().await?;
        self.frag = Fragmentizer::new(self.max_message());
        self.deflate = Some(Box::new(Deflate::new()));
        Ok(())
    }

    /// The next bytes from the client, inflated once COMPRESS is on; empty
    /// at the end of the stream.
    pub(super) async fn read_input(
        &mut self,
        max: usize,
        timeout: Duration,
    ) -> Result<Vec<u8>, ReadError> {
        let Some(d) = self.deflate.as_mut() else {
            return self.conn.read_some(max, timeout).await;
        };
        loop {
            if !d.pending.is_empty() || d.more {
                let out = d.inflate_some()?;
                if !out.is_empty() {
                    return Ok(out);
                }
            }
            let b = self.conn.read_some(max, timeout).await?;
            if b.is_empty() {
                return Ok(b);
            }
            d.pending.extend_from_slice(&b);
        }
    }

    /// Writes `self.out` (deflated once COMPRESS is on) and empties it;
    /// `last`: the session waits for its client next.
    pub(super) async fn write_out(&mut self, last: bool) -> R {
        match self.deflate.as_mut() {
            Some(d) => {
                let z = d.deflate(&self.out, last)?;
                self.conn.write_all(&z).await?;
            }
            None => self.conn.write_all(&self.out).await?,
        }
        self.out.clear();
        // A large literal's buffer is not kept for the rest of the
        // session.
        if self.out.capacity() > 1 << 20 {
            self.out = Vec::new();
        }
        Ok(())
    }
}
