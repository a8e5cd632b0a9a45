//! zstd (the default) and gzip (the seed's format), with bounded decompression.

use std::cell::RefCell;
use std::io::Read;

use super::{Codec, DecodeError, damaged};

/// Which compressor new values are written with. Reading never depends on it: every blob
/// records its own codec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Algorithm {
    /// Store values uncompressed.
    None,
    /// zstd (default).
    #[default]
    Zstd,
    /// gzip, as the seed did; slower and larger than zstd, kept for compatibility.
    Gzip,
}

/// How hard the compressor works.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// zstd level 1, gzip level 1.
    Fast,
    /// zstd level 3, gzip level 6 (default).
    #[default]
    Balanced,
    /// zstd level 19, gzip level 9.
    Maximum,
}

impl Level {
    /// The zstd level: 1, 3 or 19.
    pub fn zstd_level(self) -> i32 {
        match self {
            Level::Fast => 1,
            Level::Balanced => 3,
            Level::Maximum => 19,
        }
    }
}

/// The compression settings for new writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Compression {
    /// Compressor; default `zstd`.
    pub algorithm: Algorithm,
    /// Effort; default `balanced`.
    pub level: Level,
}

/// Compresses `raw`, returning the codec and payload, or `None` when compression is off or failed
/// (the caller then stores the value raw).
pub(super) fn compress(raw: &[u8], compression: Compression) -> Option<(Codec, Vec<u8>)> {
    match compression.algorithm {
        Algorithm::None => None,
        Algorithm::Zstd => {
            zstd_compress(raw, compression.level.zstd_level()).map(|payload| (Codec::Zstd, payload))
        }
        Algorithm::Gzip => {
            let level = match compression.level {
                Level::Fast => flate2::Compression::fast(),
                Level::Balanced => flate2::Compression::default(),
                Level::Maximum => flate2::Compression::best(),
            };
            let mut encoder = flate2::read::GzEncoder::new(raw, level);
            let mut payload = Vec::with_capacity(raw.len() / 2);
            encoder
                .read_to_end(&mut payload)
                .ok()
                .map(|_| (Codec::Gzip, payload))
        }
    }
}

/// Decompresses a zstd frame of at most `max_raw_bytes`.
pub(super) fn zstd_decompress(
    payload: &[u8],
    max_raw_bytes: usize,
) -> Result<Vec<u8>, DecodeError> {
    // Frames written by `compress` carry their content size, which lets us allocate exactly
    // once and refuse a bomb before decompressing anything.
    if let Ok(Some(size)) = zstd::zstd_safe::get_frame_content_size(payload) {
        let size = usize::try_from(size).unwrap_or(usize::MAX);
        if size > max_raw_bytes {
            return Err(DecodeError::TooLarge { max_raw_bytes });
        }
        return zstd_decompress_exact(payload, size).map_err(|error| damaged(Codec::Zstd, &error));
    }
    let decoder =
        zstd::stream::read::Decoder::new(payload).map_err(|error| damaged(Codec::Zstd, &error))?;
    read_bounded(decoder, Codec::Zstd, max_raw_bytes)
}

thread_local! {
    /// One zstd compression context per thread and level: creating a context costs more than
    /// compressing a small value.
    static ZSTD_COMPRESSORS: RefCell<Vec<(i32, zstd::bulk::Compressor<'static>)>> = const { RefCell::new(Vec::new()) };
    /// One zstd decompression context per thread.
    static ZSTD_DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { RefCell::new(None) };
}

/// zstd at `level`, with this thread's context (or a fresh one if it is busy or missing).
fn zstd_compress(raw: &[u8], level: i32) -> Option<Vec<u8>> {
    ZSTD_COMPRESSORS
        .with(|compressors| {
            let mut compressors = compressors.try_borrow_mut().ok()?;
            if !compressors.iter().any(|(known, _)| *known == level) {
                compressors.push((level, zstd::bulk::Compressor::new(level).ok()?));
            }
            let (_, compressor) = compressors.iter_mut().find(|(known, _)| *known == level)?;
            compressor.compress(raw).ok()
        })
        .or_else(|| zstd::bulk::compress(raw, level).ok())
}

/// Decompresses a frame whose content size is `size`, with this thread's context.
fn zstd_decompress_exact(payload: &[u8], size: usize) -> std::io::Result<Vec<u8>> {
    let reused = ZSTD_DECOMPRESSOR.with(|decompressor| {
        let mut decompressor = decompressor.try_borrow_mut().ok()?;
        if decompressor.is_none() {
            *decompressor = zstd::bulk::Decompressor::new().ok();
        }
        decompressor
            .as_mut()
            .map(|decompressor| decompressor.decompress(payload, size))
    });
    match reused {
        Some(result) => result,
        None => zstd::bulk::decompress(payload, size),
    }
}

/// Decompresses a gzip member of at most `max_raw_bytes`.
pub(super) fn gzip_decompress(
    payload: &[u8],
    max_raw_bytes: usize,
) -> Result<Vec<u8>, DecodeError> {
    read_bounded(
        flate2::read::GzDecoder::new(payload),
        Codec::Gzip,
        max_raw_bytes,
    )
}

fn read_bounded(
    reader: impl Read,
    codec: Codec,
    max_raw_bytes: usize,
) -> Result<Vec<u8>, DecodeError> {
    let limit = u64::try_from(max_raw_bytes)
        .unwrap_or(u64::MAX)
        .saturating_add(1);
    let mut raw = Vec::new();
    reader
        .take(limit)
        .read_to_end(&mut raw)
        .map_err(|error| damaged(codec, &error))?;
    if raw.len() > max_raw_bytes {
        return Err(DecodeError::TooLarge { max_raw_bytes });
    }
    Ok(raw)
}
