//! How a body is kept in `blobs.data` (migration 0025): `blobs.data_codec`
//! says which codec wrote it.
//!
//! - [`RAW`] (0): the body's bytes as they are (every body stored before
//!   the migration, and bodies compression would not make smaller);
//! - [`LZ4`] (1): an LZ4 block (`lz4_flex::block`, no frame, no size
//!   prefix); its original size is `blobs.size`. Bodies up to [`CHUNK`]
//!   bytes are written so;
//! - [`LZ4_CHUNKS`] (2): a larger body cut in [`CHUNK`]-byte pieces, each
//!   its own LZ4 block, after a table of their compressed lengths:
//!   `n` (u32, little endian), `n` lengths (u32 LE), then the `n` blocks;
//!   every piece but the last is [`CHUNK`] bytes, and `n` follows from
//!   `blobs.size`. A range of the body (the header of an 18 MB message,
//!   a POP3 TOP, a partial FETCH) reads and decompresses only the pieces
//!   it covers, not the whole body: [`stored_prefix_sql`] and
//!   [`decode_range`].
//!
//! The store compresses a body once when it is received, so the database
//! keeps, and sends over its connection (TLS in production), the
//! compressed bytes; the store decompresses after receiving. PostgreSQL
//! does not compress the column again (`STORAGE EXTERNAL`). A body's id,
//! its size, quotas and dedup all stay those of the raw bytes.

use crate::error::{Result, StoreError};

/// `blobs.data_codec` of a body kept as it is.
pub const RAW: i16 = 0;
/// `blobs.data_codec` of a body kept as an LZ4 block of `blobs.size` bytes.
pub const LZ4: i16 = 1;
/// `blobs.data_codec` of a body kept as LZ4 blocks of [`CHUNK`] bytes
/// each, after a table of their lengths (see the module's doc).
pub const LZ4_CHUNKS: i16 = 2;

/// The size of a piece of an [`LZ4_CHUNKS`] body, and the largest body
/// kept as one [`LZ4`] block. LZ4 looks back 64 KiB at most, so pieces of
/// this size compress as well as one block; a range read decompresses at
/// most this much more than it returns at each end.
pub const CHUNK: usize = 256 * 1024;

/// The most one piece's block may take: LZ4 expands incompressible input
/// by well under 1% (a piece whose block would exceed this keeps the whole
/// body [`RAW`]). Range reads fetch the table and then this much per piece
/// they need, so it must never be exceeded.
const BLOCK_BOUND: usize = CHUNK + CHUNK / 8;

/// Bodies smaller than this are kept raw: a few hundred bytes gain little
/// and cost a decompression on every read.
const MIN_COMPRESS: usize = 512;

/// The LZ4 block format cannot expand more than about 255 times (a match
/// is at most 255 bytes per length byte): a `blobs.size` far above that
/// is not this block's and is refused before anything is allocated.
const MAX_RATIO: usize = 256;

/// The compressed form of a body, and its codec ([`LZ4`] up to [`CHUNK`]
/// bytes, [`LZ4_CHUNKS`] above), when compression saves at least a
/// sixteenth of it; `None` keeps it [`RAW`]: a body of attachments already
/// compressed (base64 of a zip or a PDF) saves next to nothing and would
/// cost a decompression per read.
pub fn compress(data: &[u8]) -> Option<(Vec<u8>, i16)> {
    if data.len() < MIN_COMPRESS {
        return None;
    }
    let worth = |packed: &[u8]| packed.len() <= data.len() - data.len() / 16;
    if data.len() <= CHUNK {
        let packed = lz4_flex::block::compress(data);
        return worth(&packed).then_some((packed, LZ4));
    }
    let blocks: Vec<Vec<u8>> = data.chunks(CHUNK).map(lz4_flex::block::compress).collect();
    if blocks.iter().any(|b| b.len() > BLOCK_BOUND) {
        return None;
    }
    let table = 4 + 4 * blocks.len();
    let mut packed = Vec::with_capacity(table + blocks.iter().map(Vec::len).sum::<usize>());
    packed.extend_from_slice(&(blocks.len() as u32).to_le_bytes());
    for b in &blocks {
        packed.extend_from_slice(&(b.len() as u32).to_le_bytes());
    }
    for b in &blocks {
        packed.extend_from_slice(b);
    }
    worth(&packed).then_some((packed, LZ4_CHUNKS))
}

fn corrupt(what: String) -> StoreError {
    StoreError::Internal(format!("stored body: {what}"))
}

/// One LZ4 block that must decompress to exactly `size` bytes.
fn block(stored: &[u8], size: usize) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    block_into(stored, size, &mut out)?;
    Ok(out)
}

/// [`block`] appended to `out`.
fn block_into(stored: &[u8], size: usize, out: &mut Vec<u8>) -> Result<()> {
    if size > stored.len().saturating_mul(MAX_RATIO) {
        return Err(corrupt(format!(
            "an lz4 block of {} bytes cannot hold {size} bytes",
            stored.len()
        )));
    }
    let at = out.len();
    out.resize(at + size, 0);
    match lz4_flex::block::decompress_into(stored, &mut out[at..]) {
        Ok(n) if n == size => Ok(()),
        Ok(n) => Err(corrupt(format!(
            "the lz4 block holds {n} bytes, {size} expected"
        ))),
        Err(e) => Err(corrupt(format!("corrupted lz4 block: {e}"))),
    }
}

/// The raw bytes of a body read from `blobs.data` with its codec and
/// `blobs.size`. Raw data is returned as it is; compressed data must
/// decompress to exactly `size` bytes, and anything else (an unknown
/// codec, a corrupted block, a size that does not match) is an internal
/// error, never a panic nor an allocation beyond what the blocks can hold.
pub fn decode(codec: i16, stored: Vec<u8>, size: i64) -> Result<Vec<u8>> {
    decode_range(codec, stored, size, 0, 0, 0)
}

/// `length` bytes of a body from `offset` (to the end for 0), as [`slice`]
/// cuts them, from what `blobs.data` keeps with its codec and
/// `blobs.size`: for [`LZ4_CHUNKS`] the pieces the range covers are all
/// that is decompressed, and `stored` may be cut after them (as
/// [`stored_prefix_sql`] reads it), or the pieces before the range's may
/// be left out after the table: `gap` bytes of them ([`missing_span`]).
pub fn decode_range(
    codec: i16,
    stored: Vec<u8>,
    size: i64,
    offset: i64,
    length: i64,
    gap: usize,
) -> Result<Vec<u8>> {
    match codec {
        RAW => Ok(slice(stored, offset, length)),
        LZ4 | LZ4_CHUNKS => {
            let size =
                usize::try_from(size).map_err(|_| corrupt(format!("a negative size {size}")))?;
            if codec == LZ4 {
                return Ok(slice(block(&stored, size)?, offset, length));
            }
            let (table, lens) = piece_table(&stored, size)?;
            let (start, end) = range(size, offset, length);
            if start == end {
                return Ok(Vec::new());
            }
            let (first, last) = (start / CHUNK, (end - 1) / CHUNK);
            let mut at = (table + lens[..first].iter().sum::<usize>())
                .checked_sub(gap)
                .filter(|&a| a >= table)
                .ok_or_else(|| corrupt(format!("{gap} bytes left out of a smaller table")))?;
            let n = lens.len();
            // A corrupted table cannot make this allocate more than the
            // blocks after it can hold.
            let mut out = Vec::with_capacity(
                (end - start)
                    .min((last - first + 1) * CHUNK)
                    .min((stored.len() - table).saturating_mul(MAX_RATIO)),
            );
            for (k, &len) in lens.iter().enumerate().take(last + 1).skip(first) {
                let piece = stored
                    .get(at..at + len)
                    .ok_or_else(|| corrupt(format!("piece {k} of {n} is cut short")))?;
                let want = CHUNK.min(size - k * CHUNK);
                let from = start.saturating_sub(k * CHUNK);
                let to = (end - k * CHUNK).min(want);
                if from == 0 && to == want {
                    // A whole piece: straight into the output.
                    block_into(piece, want, &mut out)?;
                } else {
                    let raw = block(piece, want)?;
                    out.extend_from_slice(&raw[from..to]);
                }
                at += len;
            }
            Ok(out)
        }
        other => Err(corrupt(format!("unknown data_codec {other}"))),
    }
}

/// The table of an [`LZ4_CHUNKS`] body of `size` bytes at the start of
/// `stored`: its length in bytes, and each piece's block length.
fn piece_table(stored: &[u8], size: usize) -> Result<(usize, Vec<usize>)> {
    let n = size.div_ceil(CHUNK);
    let table = 4 + 4 * n;
    let head = stored
        .get(..table)
        .ok_or_else(|| corrupt(format!("no table of {n} pieces")))?;
    let mut lens: Vec<usize> = head
        .chunks_exact(4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .collect();
    if lens[0] != n {
        return Err(corrupt(format!(
            "a table of {} pieces for {size} bytes",
            lens[0]
        )));
    }
    lens.remove(0);
    Ok((table, lens))
}

/// A read's (start, end) in a body of `size` bytes, as [`slice`] cuts.
fn range(size: usize, offset: i64, length: i64) -> (usize, usize) {
    let start = usize::try_from(offset).unwrap_or(0).min(size);
    let end = match usize::try_from(length) {
        Ok(l) if l > 0 => start.saturating_add(l).min(size),
        _ => size,
    };
    (start, end)
}

/// For an [`LZ4_CHUNKS`] body read as [`stored_prefix_sql`] reads it: the
/// bytes of `blobs.data` (from, length; from 0) holding the pieces the
/// range covers, when `stored` (the table, for a range past the first
/// piece) does not hold them yet. Read them, put them after the table and
/// decode with `gap` = `from` - the table's length.
pub fn missing_span(
    codec: i16,
    stored: &[u8],
    size: i64,
    offset: i64,
    length: i64,
) -> Result<Option<(usize, usize)>> {
    if codec != LZ4_CHUNKS {
        return Ok(None);
    }
    let size = usize::try_from(size).map_err(|_| corrupt(format!("a negative size {size}")))?;
    let (table, lens) = piece_table(stored, size)?;
    let (start, end) = range(size, offset, length);
    if start == end {
        return Ok(None);
    }
    let (first, last) = (start / CHUNK, (end - 1) / CHUNK);
    let from = table + lens[..first].iter().sum::<usize>();
    let to = from + lens[first..=last].iter().sum::<usize>();
    Ok((stored.len() < to).then_some((from, to - from)))
}

/// An SQL expression for as much of `blobs.data` as a read of `length`
/// bytes from `offset` needs (to the end for a length of 0), given as the
/// SQL expressions `offset` and `length`; `b` is the `blobs` row: the
/// range itself of a raw body, the table and the pieces up to the range's
/// end of an [`LZ4_CHUNKS`] body (the whole of it, at most), the whole
/// block of an [`LZ4`] one. Decode it with [`decode_range`] for the same
/// range (a raw body's range is then given whole: offset 0, length 0).
/// Both backends' `substr` count from 1 and stop at the end.
pub fn stored_prefix_sql(offset: &str, length: &str) -> String {
    // The range's end, clamped to the body.
    let end = format!(
        "(CASE WHEN {length} > 0 AND {offset} + {length} < b.size \
           THEN {offset} + {length} ELSE b.size END)"
    );
    let chunk = CHUNK;
    let bound = BLOCK_BOUND;
    // The table, and the pieces up to the range's end when it starts in
    // the first piece (a header, the first chunk); the table alone past
    // it (the pieces are then read by `missing_span`) or past the end;
    // capped where PostgreSQL's INTEGER ends (a body of
    // more than 1.7 GiB: its compressed bytes are less than that anyway).
    let prefix = format!(
        "4 + 4 * ((b.size + {chunk} - 1) / {chunk}) \
         + (CASE WHEN {offset} < {chunk} AND {offset} < b.size \
             THEN ({end} - 1) / {chunk} + 1 ELSE 0 END) * {bound}"
    );
    format!(
        "CASE b.data_codec \
           WHEN {RAW} THEN substr(b.data, \
             CAST(CASE WHEN {offset} < b.size THEN {offset} ELSE b.size END + 1 AS INTEGER), \
             CAST(CASE WHEN {length} > 0 AND {length} < b.size THEN {length} ELSE b.size END \
               AS INTEGER)) \
           WHEN {LZ4_CHUNKS} THEN substr(b.data, 1, \
             CAST(CASE WHEN {prefix} < 2147483647 THEN {prefix} ELSE 2147483647 END AS INTEGER)) \
           ELSE b.data END"
    )
}

/// `decode` for a row whose data may be absent (a query that did not ask
/// for it).
pub fn decode_opt(codec: i16, stored: Option<Vec<u8>>, size: i64) -> Result<Option<Vec<u8>>> {
    stored.map(|s| decode(codec, s, size)).transpose()
}

/// `length` bytes of a whole body from `offset` (to the end for 0 or a
/// length past it), as `substr` cuts them in SQL for a raw body.
pub fn slice(mut data: Vec<u8>, offset: i64, length: i64) -> Vec<u8> {
    let start = usize::try_from(offset).unwrap_or(0).min(data.len());
    let end = match usize::try_from(length) {
        Ok(n) if n > 0 => start.saturating_add(n).min(data.len()),
        _ => data.len(),
    };
    data.truncate(end);
    data.drain(..start);
    data
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` bytes that do not compress (xorshift).
    fn noise(n: usize) -> Vec<u8> {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[test]
    fn round_trip_and_small_or_incompressible_raw() {
        let body = b"Subject: x\r\n\r\n".repeat(200);
        let (packed, codec) = compress(&body).expect("compressible");
        assert_eq!(codec, LZ4);
        assert!(packed.len() < body.len());
        assert_eq!(
            decode(LZ4, packed, body.len() as i64).expect("decodes"),
            body
        );
        assert!(compress(b"short").is_none());
        assert!(compress(&noise(4096)).is_none(), "noise kept raw");
        assert_eq!(decode(RAW, b"abc".to_vec(), 99).expect("raw"), b"abc");
    }

    #[test]
    fn bad_blocks_are_errors() {
        let body = b"0123456789abcdef".repeat(100);
        let (packed, _) = compress(&body).expect("compressible");
        let n = body.len() as i64;
        assert!(decode(LZ4, packed.clone(), n + 1).is_err());
        assert!(decode(LZ4, packed.clone(), n - 1).is_err());
        assert!(decode(LZ4, packed.clone(), -1).is_err());
        assert!(decode(LZ4, packed.clone(), i64::MAX).is_err());
        assert!(decode(3, packed.clone(), n).is_err());
        assert!(decode(LZ4_CHUNKS, packed.clone(), n).is_err());
        assert!(decode(LZ4, packed[..packed.len() / 2].to_vec(), n).is_err());
        assert!(decode(LZ4, vec![0xff; 64], n).is_err());
        assert!(decode(LZ4, Vec::new(), n).is_err());
    }

    /// A body of `n` bytes: compressible lines with a counter, so every
    /// piece differs and a piece decoded in the wrong place shows.
    fn lines(n: usize) -> Vec<u8> {
        let mut b = Vec::with_capacity(n + 64);
        let mut i = 0u64;
        while b.len() < n {
            b.extend_from_slice(format!("line {i:08} of a large body\r\n").as_bytes());
            i += 1;
        }
        b.truncate(n);
        b
    }

    #[test]
    fn large_bodies_are_pieces_and_ranges_decode_only_theirs() {
        for n in [CHUNK + 1, 2 * CHUNK, 3 * CHUNK + 17] {
            let body = lines(n);
            let (packed, codec) = compress(&body).expect("compressible");
            assert_eq!(codec, LZ4_CHUNKS);
            assert!(packed.len() < body.len() / 2);
            assert_eq!(
                decode(codec, packed.clone(), n as i64).expect("whole"),
                body
            );
            let ranges = [
                (0, 0),
                (0, 100),
                (0, CHUNK),
                (CHUNK - 5, 10),
                (CHUNK, CHUNK),
                (CHUNK + 3, 0),
                (n - 1, 0),
                (n - 1, 5),
                (n, 0),
                (n + 9, 4),
                (7, n * 2),
            ];
            for (offset, length) in ranges {
                let want = slice(body.clone(), offset as i64, length as i64);
                let got = decode_range(
                    codec,
                    packed.clone(),
                    n as i64,
                    offset as i64,
                    length as i64,
                    0,
                )
                .expect("range");
                assert_eq!(got, want, "{n} bytes, range {offset}+{length}");
                // What `stored_prefix_sql` reads: the table, and the
                // pieces up to the range's end (each at most
                // BLOCK_BOUND) when it starts in the first piece; then
                // the span `missing_span` names, read after the table.
                let end = if length > 0 && offset + length < n {
                    offset + length
                } else {
                    n
                };
                let table = 4 + 4 * n.div_ceil(CHUNK);
                let pieces = if offset < CHUNK && offset < n {
                    (end - 1) / CHUNK + 1
                } else {
                    0
                };
                let prefix = table + pieces * BLOCK_BOUND;
                let (o, l) = (offset as i64, length as i64);
                let mut read = packed[..prefix.min(packed.len())].to_vec();
                let mut gap = 0;
                if let Some((from, len)) =
                    missing_span(codec, &read, n as i64, o, l).expect("table")
                {
                    assert!(offset >= CHUNK, "{n} bytes, range {offset}+{length}");
                    let keep = from.min(read.len());
                    read.truncate(keep);
                    gap = from - keep;
                    read.extend_from_slice(&packed[from..from + len]);
                }
                let got = decode_range(codec, read, n as i64, o, l, gap)
                    .expect("range from what is read");
                assert_eq!(got, want, "{n} bytes, range {offset}+{length} as read");
            }
        }
        // Up to CHUNK: one block, as before.
        let (_, codec) = compress(&lines(CHUNK)).expect("compressible");
        assert_eq!(codec, LZ4);
    }

    #[test]
    fn bad_piece_tables_are_errors() {
        let n = 2 * CHUNK + 10;
        let body = lines(n);
        let (packed, codec) = compress(&body).expect("compressible");
        let n = n as i64;
        // A size another number of pieces would have, or not its own.
        assert!(decode(codec, packed.clone(), n + CHUNK as i64).is_err());
        assert!(decode(codec, packed.clone(), n - 1).is_err());
        assert!(decode(codec, packed.clone(), -1).is_err());
        assert!(decode(codec, packed.clone(), i64::MAX).is_err());
        // Cut short, in the table or in a piece.
        assert!(decode(codec, packed[..6].to_vec(), n).is_err());
        assert!(decode(codec, packed[..packed.len() - 1].to_vec(), n).is_err());
        // A piece length that lies.
        let mut bad = packed.clone();
        bad[4] = bad[4].wrapping_add(1);
        assert!(decode(codec, bad, n).is_err());
        let mut bad = packed.clone();
        bad[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode(codec, bad, n).is_err());
        // Nothing but a table of empty pieces.
        assert!(
            decode(
                codec,
                vec![3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                n
            )
            .is_err()
        );
    }

    #[test]
    fn incompressible_large_bodies_stay_raw() {
        assert!(compress(&noise(3 * CHUNK)).is_none());
    }

    #[test]
    fn slices_as_substr() {
        let d = b"0123456789".to_vec();
        assert_eq!(slice(d.clone(), 0, 0), d);
        assert_eq!(slice(d.clone(), 3, 4), b"3456");
        assert_eq!(slice(d.clone(), 8, 5), b"89");
        assert_eq!(slice(d.clone(), 10, 5), b"");
        assert_eq!(slice(d.clone(), 99, 0), b"");
        assert_eq!(slice(d.clone(), 2, 0), b"23456789");
    }
}
