//! How a body is kept in `blobs.data` (migration 0025): `blobs.data_codec`
//! says which codec wrote it.
//!
//! - [`RAW`] (0): the body's bytes as they are (every body stored before
//!   the migration, and bodies compression would not make smaller);
//! - [`LZ4`] (1): an LZ4 block (`lz4_flex::block`, no frame, no size
//!   prefix); its original size is `blobs.size`.
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

/// Bodies smaller than this are kept raw: a few hundred bytes gain little
/// and cost a decompression on every read.
const MIN_COMPRESS: usize = 512;

/// The LZ4 block format cannot expand more than about 255 times (a match
/// is at most 255 bytes per length byte): a `blobs.size` far above that
/// is not this block's and is refused before anything is allocated.
const MAX_RATIO: usize = 256;

/// The compressed form of a body when compression saves at least a
/// sixteenth of it (it is then kept with [`LZ4`]); `None` keeps it
/// [`RAW`]: a body of attachments already compressed (base64 of a zip or
/// a PDF) saves next to nothing and would cost a decompression per read.
pub fn compress(data: &[u8]) -> Option<Vec<u8>> {
    if data.len() < MIN_COMPRESS {
        return None;
    }
    let packed = lz4_flex::block::compress(data);
    (packed.len() <= data.len() - data.len() / 16).then_some(packed)
}

/// The raw bytes of a body read from `blobs.data` with its codec and
/// `blobs.size`. Raw data is returned as it is; an LZ4 block must
/// decompress to exactly `size` bytes, and anything else (an unknown
/// codec, a corrupted block, a size that does not match) is an internal
/// error, never a panic nor an allocation beyond what the block can hold.
pub fn decode(codec: i16, stored: Vec<u8>, size: i64) -> Result<Vec<u8>> {
    match codec {
        RAW => Ok(stored),
        LZ4 => {
            let size = usize::try_from(size)
                .ok()
                .filter(|&n| n <= stored.len().saturating_mul(MAX_RATIO))
                .ok_or_else(|| {
                    StoreError::Internal(format!(
                        "stored body: an lz4 block of {} bytes cannot hold {size} bytes",
                        stored.len()
                    ))
                })?;
            let mut out = vec![0u8; size];
            match lz4_flex::block::decompress_into(&stored, &mut out) {
                Ok(n) if n == size => Ok(out),
                Ok(n) => Err(StoreError::Internal(format!(
                    "stored body: the lz4 block holds {n} bytes, blobs.size says {size}"
                ))),
                Err(e) => Err(StoreError::Internal(format!(
                    "stored body: corrupted lz4 block: {e}"
                ))),
            }
        }
        other => Err(StoreError::Internal(format!(
            "stored body: unknown data_codec {other}"
        ))),
    }
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

    #[test]
    fn round_trip_and_small_or_incompressible_raw() {
        let body = b"Subject: x\r\n\r\n".repeat(200);
        let packed = compress(&body).expect("compressible");
        assert!(packed.len() < body.len());
        assert_eq!(
            decode(LZ4, packed, body.len() as i64).expect("decodes"),
            body
        );
        assert!(compress(b"short").is_none());
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let noise: Vec<u8> = (0..4096)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        assert!(compress(&noise).is_none(), "noise kept raw");
        assert_eq!(decode(RAW, b"abc".to_vec(), 99).expect("raw"), b"abc");
    }

    #[test]
    fn bad_blocks_are_errors() {
        let body = b"0123456789abcdef".repeat(100);
        let packed = compress(&body).expect("compressible");
        let n = body.len() as i64;
        assert!(decode(LZ4, packed.clone(), n + 1).is_err());
        assert!(decode(LZ4, packed.clone(), n - 1).is_err());
        assert!(decode(LZ4, packed.clone(), -1).is_err());
        assert!(decode(LZ4, packed.clone(), i64::MAX).is_err());
        assert!(decode(2, packed.clone(), n).is_err());
        assert!(decode(LZ4, packed[..packed.len() / 2].to_vec(), n).is_err());
        assert!(decode(LZ4, vec![0xff; 64], n).is_err());
        assert!(decode(LZ4, Vec::new(), n).is_err());
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
