//! The checks `verify` and `restore` share, so that `verify` reports whatever `restore` would
//! refuse (except a value over the target store's own `max_value_bytes`, which depends on the
//! target):
//! - on a manifest's records and header: [`check_record`] and [`check_dictionary_ref`], which
//!   every manifest reader applies to every line;
//! - on a record's blob: reading it from its pack (a regular file, in a real shard directory;
//!   no more than its value can be stored in), decoding it (no larger than the manifest says)
//!   and hashing it ([`load_blob`]), and comparing its size with the record's
//!   ([`check_size`]).

use std::collections::HashMap;
use std::io;
use std::sync::Arc;

use super::index::Packs;
use super::manifest::DictionaryRef;
use super::pack::{PackReader, ReadError};
use super::repository::Repository;
use crate::blob::{self, BlobId};
use crate::codec::{Dictionary, Format};
use crate::name::validate_collection;
use crate::record::RecordMeta;

/// The largest value any store accepts (`Config::max_value_bytes` at most): a record claiming
/// a larger value is damaged whatever store it came from.
pub(crate) const MAX_VALUE_BYTES: u64 = 1 << 30;

/// Why a blob cannot be used.
#[derive(Debug)]
pub(crate) enum BlobError {
    /// No index names it.
    Missing,
    /// Its pack is missing, not a regular file or too short, it is larger than its value can
    /// be stored in, does not decode,
    /// or is not the value its name says: the message says which.
    Damaged(String),
    /// It could not be read (permissions, I/O): not necessarily damage.
    Unreadable(io::Error),
}

/// The most bytes a value of `size_bytes` serialized bytes is stored in. A store keeps the
/// compressed form only when it is smaller than the value, so one tag byte more would do;
/// the slack (1/64 and 1 KiB, above zstd's and deflate's worst-case expansion) accepts any
/// encoder's output while keeping the read bounded by what the manifest says.
pub(crate) fn stored_bound(size_bytes: u64) -> u64 {
    size_bytes
        .saturating_add(size_bytes / 64)
        .saturating_add(1024)
}

/// A record's stored blob and its decoded length, loaded with [`load_blob`] and its size checked with
/// [`check_size`], each failure told as the error a restore or a read of the backup reports:
/// `Error::Corrupt` naming the record, or `Error::Io` when the pack cannot be read.
pub(super) fn load_entry_blob(
    repository: &Repository,
    reader: &mut PackReader,
    packs: &Packs,
    entry: &super::manifest::Entry,
    dictionaries: &HashMap<u32, Arc<Dictionary>>,
) -> crate::error::Result<(Vec<u8>, u64)> {
    use crate::error::Error;
    let (collection, key, blob_id) = (&entry.collection, &entry.key, entry.blob_id);
    let size_bytes = entry.meta.size_bytes;
    let (stored, raw_len) = load_blob(
        repository,
        reader,
        packs,
        &blob_id,
        size_bytes,
        dictionaries,
    )
    .map_err(|error| match error {
        BlobError::Missing => Error::corrupt_at(
            collection,
            key,
            format!(
                "blob {blob_id} is missing from the backup repository{}",
                packs.missing_hint()
            ),
        ),
        BlobError::Damaged(detail) => Error::corrupt_at(collection, key, detail),
        BlobError::Unreadable(error) => super::files::io_error(format!(
            "read blob {blob_id} in {}",
            repository.dir().display()
        ))(error),
    })?;
    check_size(&blob_id, raw_len, size_bytes)
        .map_err(|detail| Error::corrupt_at(collection, key, detail))?;
    Ok((stored, raw_len))
}

/// Reads blob `blob_id` from its pack and decodes it, expanding it to at most
/// `max_raw_bytes` (the size the manifest gives its value), and checks it against its id.
/// Returns the stored bytes and the decoded size; at most [`stored_bound`] of `max_raw_bytes`
/// is read, whatever the index says.
pub(crate) fn load_blob(
    repository: &Repository,
    reader: &mut PackReader,
    packs: &Packs,
    blob_id: &BlobId,
    max_raw_bytes: u64,
    dictionaries: &HashMap<u32, Arc<Dictionary>>,
) -> Result<(Vec<u8>, u64), BlobError> {
    let location = packs.blobs.get(blob_id).ok_or(BlobError::Missing)?;
    let stored = reader
        .read(repository, location, stored_bound(max_raw_bytes))
        .map_err(|error| match error {
            ReadError::Missing => BlobError::Damaged(format!(
                "blob {blob_id} cannot be read: its pack {} is missing",
                location.pack
            )),
            ReadError::Damaged(detail) => {
                BlobError::Damaged(format!("blob {blob_id} cannot be read: {detail}"))
            }
            ReadError::Unreadable(error) => BlobError::Unreadable(error),
        })?;
    let limit = usize::try_from(max_raw_bytes).unwrap_or(usize::MAX);
    let raw = blob::decode_verified(blob_id, &stored, limit, dictionaries)
        .map_err(|error| BlobError::Damaged(format!("blob {blob_id} is damaged: {error}")))?;
    Ok((stored, raw.len() as u64))
}

/// Checks that blob `blob_id`, whose value is `raw_len` bytes, has the size a record claims.
pub(crate) fn check_size(blob_id: &BlobId, raw_len: u64, size_bytes: u64) -> Result<(), String> {
    if raw_len == size_bytes {
        Ok(())
    } else {
        Err(format!(
            "blob {blob_id} holds {raw_len} bytes where the manifest says {size_bytes}"
        ))
    }
}

/// Checks that a record is one a restore can write as it is: a known serialization format,
/// a version a store can hold (1 to 2^63 - 1), a read count that fits the stores' signed
/// columns, and a value size no store accepts more than. Every manifest reader applies it, so
/// `verify` reports whatever `restore` would refuse.
///
/// # Errors
/// What is wrong, as the end of a sentence starting with the line number.
pub(crate) fn check_record(format: u8, meta: &RecordMeta) -> std::result::Result<(), String> {
    const MAX_SIGNED: u64 = i64::MAX as u64;
    if Format::from_tag(format).is_none() {
        return Err(format!(
            "has unknown format tag {format} (written by a newer Strongbox?)"
        ));
    }
    let version = meta.version.get();
    if version == 0 || version > MAX_SIGNED {
        return Err(format!("has version {version}, which no store can hold"));
    }
    if meta.access_count > MAX_SIGNED {
        return Err(format!(
            "has read count {}, which no store can hold",
            meta.access_count
        ));
    }
    if meta.size_bytes > MAX_VALUE_BYTES {
        return Err(format!(
            "has a value of {} bytes, more than any store accepts ({MAX_VALUE_BYTES})",
            meta.size_bytes
        ));
    }
    Ok(())
}

/// Checks a dictionary the header names: an id of 8 hex digits, a valid collection name and
/// a finite ratio (what a restore writes into the target store).
pub(crate) fn check_dictionary_ref(dictionary: &DictionaryRef) -> std::result::Result<(), String> {
    if dictionary.parse_id().is_none() {
        return Err(format!(
            "its header names a dictionary {:?}, not 8 hex digits",
            dictionary.id.chars().take(16).collect::<String>()
        ));
    }
    if validate_collection(&dictionary.collection).is_err() || !dictionary.ratio.is_finite() {
        return Err(format!(
            "its header describes dictionary {} with an invalid collection name or ratio",
            dictionary.id
        ));
    }
    Ok(())
}
