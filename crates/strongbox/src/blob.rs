//! Content addressing: [`BlobId`] (BLAKE3 of a value's serialized bytes) and the rules that
//! keep blobs honest.
//!
//! The reference-count rules, applied by every backend inside the transaction that writes a
//! record (see `backend`):
//! 1. Writing a record whose value hashes to `id` adds one reference to blob `id`, inserting the
//!    blob if it is new.
//! 2. A record that pointed at another blob releases one reference to it. A blob whose count
//!    reaches zero is left, unreferenced, for maintenance's orphan sweep (a write then touches
//!    no page of values), which deletes it once no change of the change feed names it (a put's
//!    value stays readable while its change is held); a write of the same value before the
//!    sweep takes it back.
//! 3. Rewriting a record with the same value changes no count.
//!
//! So `refcount` always equals the number of records pointing at the blob, and no record can
//! point at a missing blob.
//!
//! **Invariant:** nothing here does I/O, holds a lock or panics.

use std::fmt;

use crate::codec::{self, Compression, DecodeError, Dictionary, DictionaryLookup};

/// The identity of a unique value: the BLAKE3 hash of its serialized bytes.
///
/// The hash covers the serialized bytes, not the compressed ones, so the same value has the same
/// id whatever compression settings wrote it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlobId([u8; 32]);

impl BlobId {
    /// The id of serialized bytes.
    pub fn of(raw: &[u8]) -> Self {
        BlobId(*blake3::hash(raw).as_bytes())
    }

    /// The id of 32 hash bytes already computed (of a stream hashed as it was written).
    pub(crate) fn from_hash(hash: [u8; 32]) -> Self {
        BlobId(hash)
    }

    /// The id as 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// An id from stored bytes, if they are 32 long.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        <[u8; 32]>::try_from(bytes).ok().map(BlobId)
    }

    /// The id in lowercase hexadecimal (64 characters).
    pub fn to_hex(&self) -> String {
        blake3::Hash::from_bytes(self.0).to_hex().to_string()
    }

    /// Parses 64 hexadecimal characters.
    pub fn from_hex(hex: &str) -> Option<Self> {
        blake3::Hash::from_hex(hex)
            .ok()
            .map(|hash| BlobId(*hash.as_bytes()))
    }
}

impl fmt::Debug for BlobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlobId({})", self.to_hex())
    }
}

impl fmt::Display for BlobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// A value ready to be written: its id, its stored (encoded) bytes and its serialized size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedBlob {
    /// BLAKE3 of the serialized bytes.
    pub id: BlobId,
    /// Codec tag followed by the payload, as stored.
    pub stored: Vec<u8>,
    /// Length of the serialized bytes.
    pub raw_len: u64,
}

impl EncodedBlob {
    /// Hashes and encodes serialized bytes (with `dictionary`, when given and zstd is on).
    pub fn encode(raw: &[u8], compression: Compression, dictionary: Option<&Dictionary>) -> Self {
        EncodedBlob {
            id: BlobId::of(raw),
            stored: codec::encode(raw, compression, dictionary),
            raw_len: raw.len() as u64,
        }
    }
}

/// Why a stored blob failed verification.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The stored bytes could not be decoded.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The decoded bytes hash to another id than the blob's.
    #[error("content hash mismatch: expected {expected}, found {found}")]
    HashMismatch {
        /// The id the blob is stored under.
        expected: BlobId,
        /// The hash of what was decoded.
        found: BlobId,
    },
}

/// Decodes stored bytes (finding dictionaries in `dictionaries`) and checks them against the
/// id they are stored under.
///
/// # Errors
/// [`VerifyError`] when the bytes are undecodable or hash to another id.
pub fn decode_verified(
    id: &BlobId,
    stored: &[u8],
    max_raw_bytes: usize,
    dictionaries: &dyn DictionaryLookup,
) -> Result<Vec<u8>, VerifyError> {
    let raw = codec::decode(stored, max_raw_bytes, dictionaries)?;
    let found = BlobId::of(&raw);
    if found != *id {
        return Err(VerifyError::HashMismatch {
            expected: *id,
            found,
        });
    }
    Ok(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_id_does_not_depend_on_compression() {
        let raw = br#"{"chips":1000}"#.repeat(20);
        let zstd = EncodedBlob::encode(&raw, Compression::default(), None);
        let gzip = EncodedBlob::encode(
            &raw,
            Compression {
                algorithm: codec::Algorithm::Gzip,
                level: codec::Level::Fast,
            },
            None,
        );
        assert_eq!(zstd.id, gzip.id);
        assert_ne!(zstd.stored, gzip.stored);
    }

    #[test]
    fn a_flipped_byte_fails_verification() -> Result<(), VerifyError> {
        let blob = EncodedBlob::encode(b"{\"name\":\"alice\"}", Compression::default(), None);
        assert_eq!(
            decode_verified(&blob.id, &blob.stored, 1024, &codec::NoDictionaries)?,
            b"{\"name\":\"alice\"}"
        );
        let mut damaged = blob.stored.clone();
        if let Some(last) = damaged.last_mut() {
            *last ^= 1;
        }
        assert!(matches!(
            decode_verified(&blob.id, &damaged, 1024, &codec::NoDictionaries),
            Err(VerifyError::HashMismatch { .. })
        ));
        Ok(())
    }

    #[test]
    fn hex_round_trips() {
        let id = BlobId::of(b"x");
        assert_eq!(BlobId::from_hex(&id.to_hex()), Some(id));
        assert_eq!(BlobId::from_slice(id.as_bytes()), Some(id));
        assert_eq!(BlobId::from_slice(&[1, 2]), None);
    }
}
