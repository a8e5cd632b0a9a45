//! Bytes in, bytes out: how a serialized value becomes the stored bytes of a blob and back.
//!
//! A stored blob is self-describing: its first byte is the codec tag ([`Codec`]), the rest is
//! the payload. Tags are part of the on-disk format and never change meaning.
//!
//! **Invariant:** nothing here does I/O, holds a lock or panics, whatever the input; a decoder
//! never produces more than the `max_raw_bytes` it is given (no decompression bomb).

#![deny(clippy::indexing_slicing)]

pub mod compress;
pub mod dictionary;
mod finite;
pub mod format;

pub use compress::{Algorithm, Compression, Level};
pub use dictionary::{Dictionary, DictionaryError, DictionaryLookup, NoDictionaries};
pub use format::Format;

/// The codec of a stored blob, written as its first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Codec {
    /// Stored as serialized, uncompressed.
    Raw = 0,
    /// A zstd frame.
    Zstd = 1,
    /// A gzip member (as the seed wrote).
    Gzip = 2,
    /// A zstd frame compressed with a dictionary, which the frame header names by id (see
    /// [`dictionary`]).
    ZstdDictionary = 3,
}

impl Codec {
    /// The codec of a tag byte, if known.
    pub fn from_tag(tag: u8) -> Option<Self> {
        match tag {
            0 => Some(Codec::Raw),
            1 => Some(Codec::Zstd),
            2 => Some(Codec::Gzip),
            3 => Some(Codec::ZstdDictionary),
            _ => None,
        }
    }

    /// A lowercase name, for reports.
    pub fn name(self) -> &'static str {
        match self {
            Codec::Raw => "raw",
            Codec::Zstd => "zstd",
            Codec::Gzip => "gzip",
            Codec::ZstdDictionary => "zstd with dictionary",
        }
    }
}

/// Why stored bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The blob is empty: not even a tag byte.
    #[error("stored blob is empty")]
    Empty,
    /// The tag byte names no known codec (written by a newer version, or damaged).
    #[error("unknown codec tag {0}")]
    UnknownCodec(u8),
    /// The payload expands beyond the allowed size.
    #[error("value expands beyond {max_raw_bytes} bytes")]
    TooLarge {
        /// The limit that was hit.
        max_raw_bytes: usize,
    },
    /// The blob was compressed with a dictionary the reader does not have.
    #[error("the value was compressed with zstd dictionary {0:08x}, which is missing")]
    MissingDictionary(u32),
    /// The compressed payload is damaged.
    #[error("{codec} payload is damaged: {detail}")]
    Damaged {
        /// Codec name.
        codec: &'static str,
        /// The decompressor's message.
        detail: String,
    },
}

/// Encodes serialized bytes for storage: compressed when that is smaller, raw otherwise.
///
/// With zstd and a `dictionary`, the value is compressed with the dictionary.
pub fn encode(raw: &[u8], compression: Compression, dictionary: Option<&Dictionary>) -> Vec<u8> {
    let compressed = match dictionary {
        Some(dictionary) if compression.algorithm == Algorithm::Zstd => dictionary
            .compress(raw)
            .map(|payload| (Codec::ZstdDictionary, payload)),
        _ => compress::compress(raw, compression),
    };
    if let Some((codec, payload)) = compressed
        && payload.len() < raw.len()
    {
        return with_tag(codec, &payload);
    }
    with_tag(Codec::Raw, raw)
}

/// Decodes stored bytes back to the serialized bytes, refusing to expand past `max_raw_bytes`.
///
/// Blobs compressed with a dictionary find it in `dictionaries`.
///
/// # Errors
/// A [`DecodeError`] for an empty blob, an unknown tag, a missing dictionary, a damaged payload
/// or a bomb.
pub fn decode(
    stored: &[u8],
    max_raw_bytes: usize,
    dictionaries: &dyn DictionaryLookup,
) -> Result<Vec<u8>, DecodeError> {
    let (&tag, payload) = stored.split_first().ok_or(DecodeError::Empty)?;
    match Codec::from_tag(tag).ok_or(DecodeError::UnknownCodec(tag))? {
        Codec::Raw if payload.len() > max_raw_bytes => Err(DecodeError::TooLarge { max_raw_bytes }),
        Codec::Raw => Ok(payload.to_vec()),
        Codec::Zstd => compress::zstd_decompress(payload, max_raw_bytes),
        Codec::Gzip => compress::gzip_decompress(payload, max_raw_bytes),
        Codec::ZstdDictionary => dictionary::decompress(payload, max_raw_bytes, dictionaries),
    }
}

/// The codec of stored bytes, if their tag is known.
pub fn codec_of(stored: &[u8]) -> Option<Codec> {
    stored.first().copied().and_then(Codec::from_tag)
}

/// The id of the dictionary a blob was compressed with, if it was.
pub fn dictionary_of(stored: &[u8]) -> Option<u32> {
    match stored.split_first() {
        Some((&tag, payload)) if tag == Codec::ZstdDictionary as u8 => {
            zstd::zstd_safe::get_dict_id_from_frame(payload).map(std::num::NonZeroU32::get)
        }
        _ => None,
    }
}

fn damaged(codec: Codec, error: &dyn std::fmt::Display) -> DecodeError {
    DecodeError::Damaged {
        codec: codec.name(),
        detail: error.to_string(),
    }
}

fn with_tag(codec: Codec, payload: &[u8]) -> Vec<u8> {
    let mut stored = Vec::with_capacity(payload.len() + 1);
    stored.push(codec as u8);
    stored.extend_from_slice(payload);
    stored
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 1 << 20;

    #[test]
    fn compressible_values_are_stored_compressed() -> Result<(), DecodeError> {
        let raw = br#"{"balance":0,"items":[],"flags":{}}"#.repeat(50);
        for algorithm in [Algorithm::Zstd, Algorithm::Gzip] {
            for level in [Level::Fast, Level::Balanced, Level::Maximum] {
                let stored = encode(&raw, Compression { algorithm, level }, None);
                assert!(stored.len() < raw.len() / 5, "{algorithm:?} {level:?}");
                assert_ne!(codec_of(&stored), Some(Codec::Raw));
                assert_eq!(decode(&stored, MAX, &NoDictionaries)?, raw);
            }
        }
        Ok(())
    }

    #[test]
    fn incompressible_values_stay_raw() -> Result<(), DecodeError> {
        let raw = b"{\"a\":1}".to_vec();
        let stored = encode(&raw, Compression::default(), None);
        assert_eq!(codec_of(&stored), Some(Codec::Raw));
        assert_eq!(stored.len(), raw.len() + 1);
        assert_eq!(decode(&stored, MAX, &NoDictionaries)?, raw);
        Ok(())
    }

    #[test]
    fn compression_can_be_switched_off() -> Result<(), DecodeError> {
        let raw = b"x".repeat(1000);
        let off = Compression {
            algorithm: Algorithm::None,
            level: Level::Balanced,
        };
        let stored = encode(&raw, off, None);
        assert_eq!(codec_of(&stored), Some(Codec::Raw));
        assert_eq!(decode(&stored, MAX, &NoDictionaries)?, raw);
        Ok(())
    }

    #[test]
    fn bombs_are_refused() {
        let raw = vec![0u8; 4 << 20];
        for algorithm in [Algorithm::Zstd, Algorithm::Gzip] {
            let stored = encode(
                &raw,
                Compression {
                    algorithm,
                    level: Level::Fast,
                },
                None,
            );
            assert!(stored.len() < 64 << 10);
            assert_eq!(
                decode(&stored, 1 << 20, &NoDictionaries),
                Err(DecodeError::TooLarge {
                    max_raw_bytes: 1 << 20
                })
            );
        }
        let raw_stored = encode(
            &raw,
            Compression {
                algorithm: Algorithm::None,
                level: Level::Fast,
            },
            None,
        );
        assert_eq!(
            decode(&raw_stored, 1 << 20, &NoDictionaries),
            Err(DecodeError::TooLarge {
                max_raw_bytes: 1 << 20
            })
        );
    }

    fn compression() -> impl proptest::strategy::Strategy<Value = Compression> {
        use proptest::prelude::*;
        (
            prop_oneof![
                Just(Algorithm::None),
                Just(Algorithm::Zstd),
                Just(Algorithm::Gzip)
            ],
            prop_oneof![
                Just(Level::Fast),
                Just(Level::Balanced),
                Just(Level::Maximum)
            ],
        )
            .prop_map(|(algorithm, level)| Compression { algorithm, level })
    }

    proptest::proptest! {
        #[test]
        fn every_encoding_round_trips(raw in proptest::collection::vec(0u8..4, 0..4096), compression in compression()) {
            let stored = encode(&raw, compression, None);
            proptest::prop_assert!(stored.len() <= raw.len() + 1);
            proptest::prop_assert_eq!(decode(&stored, raw.len(), &NoDictionaries), Ok(raw));
        }

        #[test]
        fn arbitrary_bytes_never_panic_nor_expand_past_the_limit(
            stored in proptest::collection::vec(proptest::num::u8::ANY, 0..2048),
            tag in 0u8..5,
        ) {
            let mut tagged = stored.clone();
            if let Some(first) = tagged.first_mut() {
                *first = tag;
            }
            for bytes in [&stored, &tagged] {
                if let Ok(raw) = decode(bytes, 512, &NoDictionaries) {
                    proptest::prop_assert!(raw.len() <= 512);
                }
            }
        }
    }

    #[test]
    fn damaged_input_is_an_error_not_a_panic() {
        assert_eq!(decode(&[], MAX, &NoDictionaries), Err(DecodeError::Empty));
        assert_eq!(
            decode(&[200, 1, 2], MAX, &NoDictionaries),
            Err(DecodeError::UnknownCodec(200))
        );
        let mut stored = encode(&b"hello world ".repeat(100), Compression::default(), None);
        for byte in stored.iter_mut().skip(1) {
            *byte ^= 0x5a;
        }
        assert!(matches!(
            decode(&stored, MAX, &NoDictionaries),
            Err(DecodeError::Damaged { .. })
        ));
        assert!(matches!(
            decode(&[2, 0x1f, 0x8b, 8], MAX, &NoDictionaries),
            Err(DecodeError::Damaged { .. })
        ));
    }
}
