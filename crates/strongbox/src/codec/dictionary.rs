//! zstd dictionaries: trained from samples of a collection's values, they let small values
//! that look alike compress together (the sample data's values go from about 0.45 of their
//! size to about 0.2).
//!
//! A blob compressed with a dictionary has the codec tag [`Codec::ZstdDictionary`] and is an
//! ordinary zstd frame whose header names the dictionary by its zstd dictionary id. That id is
//! derived from the dictionary's content by the zstd trainer, so the same dictionary has the same
//! id in every store and backup repository; a stored blob never needs to know which store wrote
//! it. Dictionaries are immutable and are never deleted from a store, so every blob ever written
//! stays readable.
//!
//! Decoding looks dictionaries up through [`DictionaryLookup`]: the codec itself holds no state
//! and does no I/O.

use std::cell::RefCell;
use std::num::NonZeroU32;

use super::{Codec, DecodeError, damaged};

/// The largest dictionary [`train`] produces, in bytes. 32 KiB does within 1% of 64 KiB on the
/// sample data, and a dictionary is loaded by every process that reads the store.
pub const MAX_DICTIONARY_BYTES: usize = 32 << 10;

/// A zstd dictionary, prepared for compressing and decompressing.
pub struct Dictionary {
    id: NonZeroU32,
    bytes: Vec<u8>,
    compress: zstd::zstd_safe::CDict<'static>,
    decompress: zstd::zstd_safe::DDict<'static>,
}

impl std::fmt::Debug for Dictionary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dictionary")
            .field("id", &self.id)
            .field("bytes", &self.bytes.len())
            .finish_non_exhaustive()
    }
}

/// Why bytes are not a usable dictionary.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DictionaryError {
    /// The bytes are not a zstd dictionary with an id (raw-content dictionaries are refused:
    /// blobs could not name them).
    #[error("not a zstd dictionary with an id")]
    NotADictionary,
    /// zstd refused to load it.
    #[error("zstd cannot load the dictionary")]
    Unloadable,
}

impl Dictionary {
    /// Prepares a dictionary; new values are compressed at zstd `level`.
    ///
    /// # Errors
    /// [`DictionaryError`] when the bytes are not a zstd dictionary with an id.
    pub fn new(bytes: Vec<u8>, level: i32) -> Result<Self, DictionaryError> {
        let id = zstd::zstd_safe::get_dict_id(&bytes).ok_or(DictionaryError::NotADictionary)?;
        let compress =
            zstd::zstd_safe::CDict::try_create(&bytes, level).ok_or(DictionaryError::Unloadable)?;
        let decompress =
            zstd::zstd_safe::DDict::try_create(&bytes).ok_or(DictionaryError::Unloadable)?;
        Ok(Dictionary {
            id,
            bytes,
            compress,
            decompress,
        })
    }

    /// The dictionary's id, as blobs compressed with it name it.
    pub fn id(&self) -> u32 {
        self.id.get()
    }

    /// The dictionary's bytes, as stored.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// zstd-compresses `raw` with this dictionary, with this thread's context.
    pub(super) fn compress(&self, raw: &[u8]) -> Option<Vec<u8>> {
        let bound = zstd::zstd_safe::compress_bound(raw.len());
        let mut payload = Vec::with_capacity(bound);
        COMPRESSION_CONTEXT
            .with(|context| {
                let mut context = context.try_borrow_mut().ok()?;
                let context = context.get_or_insert_with(zstd::zstd_safe::CCtx::create);
                context
                    .compress_using_cdict(&mut payload, raw, &self.compress)
                    .ok()
            })
            .or_else(|| {
                zstd::zstd_safe::CCtx::try_create()?
                    .compress_using_cdict(&mut payload, raw, &self.compress)
                    .ok()
            })?;
        Some(payload)
    }

    /// Decompresses a frame of exactly `size` bytes written with this dictionary.
    fn decompress(&self, payload: &[u8], size: usize) -> Result<Vec<u8>, DecodeError> {
        let mut raw = Vec::with_capacity(size);
        let result = DECOMPRESSION_CONTEXT
            .with(|context| {
                let mut context = context.try_borrow_mut().ok()?;
                let context = context.get_or_insert_with(zstd::zstd_safe::DCtx::create);
                Some(context.decompress_using_ddict(&mut raw, payload, &self.decompress))
            })
            .or_else(|| {
                zstd::zstd_safe::DCtx::try_create().map(|mut context| {
                    context.decompress_using_ddict(&mut raw, payload, &self.decompress)
                })
            })
            .ok_or_else(|| damaged(Codec::ZstdDictionary, &"no zstd context"))?;
        match result {
            Ok(written) if written == size => Ok(raw),
            Ok(written) => Err(damaged(
                Codec::ZstdDictionary,
                &format!("the frame holds {written} bytes where its header says {size}"),
            )),
            Err(code) => Err(damaged(
                Codec::ZstdDictionary,
                &zstd::zstd_safe::get_error_name(code),
            )),
        }
    }
}

thread_local! {
    /// One compression context per thread for dictionary compression (the dictionary is given
    /// per call, so one context serves every dictionary).
    static COMPRESSION_CONTEXT: RefCell<Option<zstd::zstd_safe::CCtx<'static>>> = const { RefCell::new(None) };
    /// One decompression context per thread, likewise.
    static DECOMPRESSION_CONTEXT: RefCell<Option<zstd::zstd_safe::DCtx<'static>>> = const { RefCell::new(None) };
}

/// Finds dictionaries by id, for decoding.
pub trait DictionaryLookup {
    /// The dictionary with this id, if known.
    fn dictionary(&self, id: u32) -> Option<&Dictionary>;
}

/// No dictionaries at all: blobs compressed with one fail to decode with
/// [`DecodeError::MissingDictionary`].
#[derive(Debug, Clone, Copy, Default)]
pub struct NoDictionaries;

impl DictionaryLookup for NoDictionaries {
    fn dictionary(&self, _id: u32) -> Option<&Dictionary> {
        None
    }
}

impl DictionaryLookup for std::collections::HashMap<u32, std::sync::Arc<Dictionary>> {
    fn dictionary(&self, id: u32) -> Option<&Dictionary> {
        self.get(&id).map(|dictionary| &**dictionary)
    }
}

/// Decodes the payload of a [`Codec::ZstdDictionary`] blob.
pub(super) fn decompress(
    payload: &[u8],
    max_raw_bytes: usize,
    dictionaries: &dyn DictionaryLookup,
) -> Result<Vec<u8>, DecodeError> {
    let id = zstd::zstd_safe::get_dict_id_from_frame(payload)
        .ok_or_else(|| damaged(Codec::ZstdDictionary, &"the frame names no dictionary"))?;
    let dictionary = dictionaries
        .dictionary(id.get())
        .ok_or(DecodeError::MissingDictionary(id.get()))?;
    // `Dictionary::compress` always records the content size: it bounds the output before
    // anything is decompressed.
    let size = match zstd::zstd_safe::get_frame_content_size(payload) {
        Ok(Some(size)) => usize::try_from(size).unwrap_or(usize::MAX),
        _ => {
            return Err(damaged(
                Codec::ZstdDictionary,
                &"the frame does not record its size",
            ));
        }
    };
    if size > max_raw_bytes {
        return Err(DecodeError::TooLarge { max_raw_bytes });
    }
    dictionary.decompress(payload, size)
}

/// Trains a dictionary from sample values, or `None` when zstd cannot (too few or too uniform
/// samples). Its size is a tenth of the samples' total (zstd's advice), at most
/// [`MAX_DICTIONARY_BYTES`], so that collections of small values get a small dictionary.
pub fn train<S: AsRef<[u8]>>(samples: &[S]) -> Option<Vec<u8>> {
    let total: usize = samples.iter().map(|sample| sample.as_ref().len()).sum();
    let size = (total / 10).min(MAX_DICTIONARY_BYTES);
    if size < MIN_DICTIONARY_BYTES {
        return None;
    }
    zstd::dict::from_samples(samples, size).ok()
}

/// Below this, samples are too few to train from.
const MIN_DICTIONARY_BYTES: usize = 1 << 10;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{Compression, codec_of, decode, encode};

    fn samples() -> Vec<Vec<u8>> {
        (0..400)
            .map(|i| {
                format!(
                    r#"{{"player":"p{i}","chips":{},"table":"classic","bets":[{{"kind":"Pass","amount":{}}}],"flags":{{"vip":{}}}}}"#,
                    i * 37 % 1000,
                    i % 50,
                    i % 3 == 0
                )
                .into_bytes()
            })
            .collect()
    }

    #[test]
    fn a_trained_dictionary_compresses_small_values_better()
    -> Result<(), Box<dyn std::error::Error>> {
        let samples = samples();
        let bytes = train(&samples).ok_or("training failed")?;
        let dictionary = Dictionary::new(bytes, 3)?;
        let value = samples.get(7).ok_or("no sample")?;
        let plain = encode(value, Compression::default(), None);
        let with = encode(value, Compression::default(), Some(&dictionary));
        assert_eq!(codec_of(&with), Some(Codec::ZstdDictionary));
        assert!(
            with.len() < plain.len(),
            "{} vs {}",
            with.len(),
            plain.len()
        );
        let mut known = std::collections::HashMap::new();
        known.insert(dictionary.id(), std::sync::Arc::new(dictionary));
        assert_eq!(&decode(&with, 1 << 20, &known)?, value);
        assert_eq!(
            decode(&with, 1 << 20, &NoDictionaries),
            Err(DecodeError::MissingDictionary(
                *known.keys().next().ok_or("no id")?
            ))
        );
        assert!(matches!(
            decode(&with, 10, &known),
            Err(DecodeError::TooLarge { .. })
        ));
        Ok(())
    }

    proptest::proptest! {
        #[test]
        fn damaged_dictionary_frames_never_panic_nor_expand_past_the_limit(
            flips in proptest::collection::vec((proptest::num::usize::ANY, 1u8..=255), 1..8),
            cut in proptest::num::usize::ANY,
        ) {
            let samples = samples();
            let Some(bytes) = train(&samples) else {
                return Err(proptest::test_runner::TestCaseError::fail("training failed"));
            };
            let Ok(dictionary) = Dictionary::new(bytes, 3) else {
                return Err(proptest::test_runner::TestCaseError::fail("unloadable"));
            };
            let mut known = std::collections::HashMap::new();
            known.insert(dictionary.id(), std::sync::Arc::new(dictionary));
            let Some(dictionary) = known.values().next() else {
                return Err(proptest::test_runner::TestCaseError::fail("no dictionary"));
            };
            let value = samples.concat();
            let mut stored = encode(&value, Compression::default(), Some(dictionary));
            for (at, mask) in flips {
                let len = stored.len();
                if let Some(byte) = stored.get_mut(1 + at % (len - 1)) {
                    *byte ^= mask;
                }
            }
            stored.truncate(1 + cut % stored.len());
            if let Ok(raw) = decode(&stored, 4096, &known) {
                proptest::prop_assert!(raw.len() <= 4096);
            }
        }
    }

    #[test]
    fn arbitrary_bytes_are_not_a_dictionary() {
        assert_eq!(
            Dictionary::new(b"hello".to_vec(), 3).map(|_| ()),
            Err(DictionaryError::NotADictionary)
        );
    }
}
