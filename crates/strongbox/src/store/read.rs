//! The read path of [`Store`]: cache, record, blob, decode, verify, deserialize; and the
//! queries that read no value (`exists`, `version`, `list`, `count`, `collections`).
//!
//! **Invariant:** a value is returned only after its record matched its seal and its decoded
//! bytes matched their id and the record's size: a damaged record or blob is `Error::Corrupt`,
//! never another value. A read never becomes a write (its count goes to `AccessLog`).

use std::time::Instant;

use serde::de::DeserializeOwned;

use super::Store;
use crate::backend::{KeyRange, Reads, StoredRecord};
use crate::blob::{self, BlobId, VerifyError};
use crate::cache::CachedValue;
use crate::clock::now_ms;
use crate::codec::{DecodeError, Format};
use crate::error::{Error, Result};
use crate::name::{validate_collection, validate_key};
use crate::record::{self, Record, RecordMeta, Version};
use crate::telemetry::Operation;

/// Which keys [`Store::list`] returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[must_use]
pub struct ListOptions {
    /// Only keys starting with this prefix.
    pub prefix: Option<String>,
    /// Only keys after this one: pass the last key of the previous page to get the next.
    pub start_after: Option<String>,
    /// At most this many keys (`None`: all).
    pub limit: Option<usize>,
}

impl ListOptions {
    /// Every key of the collection.
    pub fn all() -> Self {
        ListOptions::default()
    }

    /// Only keys starting with `prefix`.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = Some(prefix.into());
        self
    }

    /// Only keys after `key`.
    pub fn start_after(mut self, key: impl Into<String>) -> Self {
        self.start_after = Some(key.into());
        self
    }

    /// At most `limit` keys.
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = Some(limit);
        self
    }
}

/// Which server a read that misses the cache may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// Any server holding every write committed through this store: on PostgreSQL, a read
    /// replica that has replayed them, else the primary.
    AnyCurrent,
    /// The server that takes writes, for a read whose version becomes a write's condition.
    Primary,
}

impl Store {
    /// Reads the value under `key`, or `None` when there is none.
    ///
    /// # Errors
    /// `Error::Corrupt` when the stored value fails its hash check (never a wrong value),
    /// `Error::Serialization` when it is not a `T`, `Error::InvalidName`, `Error::Busy`,
    /// `Error::Backend`.
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn retrieve<T: DeserializeOwned>(
        &self,
        collection: &str,
        key: &str,
    ) -> Result<Option<T>> {
        Ok(self
            .retrieve_record(collection, key)
            .await?
            .map(|record| record.value))
    }

    /// Reads the value under `key` with its version and metadata.
    ///
    /// # Errors
    /// As [`Store::retrieve`].
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn retrieve_record<T: DeserializeOwned>(
        &self,
        collection: &str,
        key: &str,
    ) -> Result<Option<Record<T>>> {
        let found = self
            .retrieve_from(collection, key, Source::AnyCurrent)
            .await?;
        Ok(found.map(|(record, _)| record))
    }

    /// As [`Store::retrieve_record`], reading from `source` on a cache miss (see [`Source`]),
    /// with the id of the value read.
    pub(crate) async fn retrieve_from<T: DeserializeOwned>(
        &self,
        collection: &str,
        key: &str,
        source: Source,
    ) -> Result<Option<(Record<T>, BlobId)>> {
        let started = Instant::now();
        let result = self.retrieve_uncounted(collection, key, source).await;
        self.inner
            .recorder
            .finish(Operation::Retrieve, started.elapsed(), &result);
        result
    }

    async fn retrieve_uncounted<T: DeserializeOwned>(
        &self,
        collection: &str,
        key: &str,
        source: Source,
    ) -> Result<Option<(Record<T>, BlobId)>> {
        validate_collection(collection)?;
        validate_key(key)?;
        let cache = &self.inner.cache;
        let now = now_ms();
        if let Some(hit) = cache.get(collection, key) {
            // The cache holds the latest committed record; past its expiry it is absent.
            if hit.meta.is_expired_at(now) {
                return Ok(None);
            }
            let record = self
                .check_stored(
                    collection,
                    key,
                    &hit.blob_id,
                    &hit.stored,
                    hit.format,
                    &hit.meta,
                )
                .await?
                .deserialize(collection, key)?;
            self.note_access(collection, key);
            return Ok(Some((record, hit.blob_id)));
        }
        let ticket = cache.is_enabled().then(|| cache.ticket(collection, key));
        let fetched = match source {
            Source::AnyCurrent => self.inner.backend.get(collection, key).await?,
            Source::Primary => self.inner.backend.get_latest(collection, key).await?,
        };
        let Some(fetched) = fetched else {
            return Ok(None);
        };
        if has_expired(collection, key, &fetched, now)? {
            return Ok(None);
        }
        let record = self.decode_fetched::<T>(collection, key, &fetched).await?;
        let blob_id = fetched.blob_id;
        if let (Some(ticket), Some(stored)) = (ticket, fetched.stored) {
            let cached = CachedValue {
                blob_id: fetched.blob_id,
                stored,
                format: fetched.format,
                meta: fetched.meta,
            };
            cache.fill(ticket, collection, key, cached);
        }
        self.note_access(collection, key);
        Ok(Some((record, blob_id)))
    }

    /// Whether `key` exists.
    ///
    /// # Errors
    /// `Error::InvalidName`, `Error::Busy`, `Error::Backend`.
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn exists(&self, collection: &str, key: &str) -> Result<bool> {
        Ok(self.version(collection, key).await?.is_some())
    }

    /// The current version of `key`, or `None` when it does not exist.
    ///
    /// # Errors
    /// `Error::InvalidName`, `Error::Busy`, `Error::Backend`.
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn version(&self, collection: &str, key: &str) -> Result<Option<Version>> {
        validate_collection(collection)?;
        validate_key(key)?;
        self.inner.backend.version(collection, key).await
    }

    /// Keys of a collection in byte order (which is also Unicode code point order).
    ///
    /// # Errors
    /// `Error::InvalidName`, `Error::Busy`, `Error::Backend`.
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn list(&self, collection: &str, options: ListOptions) -> Result<Vec<String>> {
        validate_collection(collection)?;
        let range = KeyRange {
            prefix: options.prefix,
            start_after: options.start_after,
            limit: options.limit.unwrap_or(usize::MAX),
        };
        if range.limit == 0 {
            return Ok(Vec::new());
        }
        self.inner.backend.list(collection, range).await
    }

    /// Number of records in a collection.
    ///
    /// # Errors
    /// `Error::InvalidName`, `Error::Busy`, `Error::Backend`.
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn count(&self, collection: &str) -> Result<u64> {
        validate_collection(collection)?;
        self.inner.backend.count(collection).await
    }

    /// Names of the collections that hold at least one record, in byte order.
    ///
    /// # Errors
    /// `Error::Busy`, `Error::Backend`.
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn collections(&self) -> Result<Vec<String>> {
        self.inner.backend.collections().await
    }

    /// A fetched record, checked against its seal, decoded and deserialized.
    ///
    /// # Errors
    /// `Error::Corrupt` for a record that does not match its seal or whose value is missing or
    /// damaged, `Error::Serialization` when the value is not a `T`.
    pub(crate) async fn decode_fetched<T: DeserializeOwned>(
        &self,
        collection: &str,
        key: &str,
        fetched: &StoredRecord,
    ) -> Result<Record<T>> {
        self.check_fetched(collection, key, fetched)
            .await?
            .deserialize(collection, key)
    }

    /// A fetched record, checked against its seal and its value decoded and checked (see
    /// [`Checked`]): everything [`Store::decode_fetched`] does but the deserializing.
    ///
    /// # Errors
    /// `Error::Corrupt` for a record that does not match its seal or whose value is missing or
    /// damaged.
    pub(crate) async fn check_fetched(
        &self,
        collection: &str,
        key: &str,
        fetched: &StoredRecord,
    ) -> Result<Checked> {
        check_seal(collection, key, fetched)?;
        let stored = fetched.stored.as_deref().ok_or_else(|| {
            Error::corrupt_at(
                collection,
                key,
                format!("blob {} is missing", fetched.blob_id),
            )
        })?;
        self.check_stored(
            collection,
            key,
            &fetched.blob_id,
            stored,
            fetched.format,
            &fetched.meta,
        )
        .await
    }

    /// Decodes stored bytes and verifies them against their id. A value compressed with a
    /// dictionary this store has not loaded yet (another process trained it) loads the
    /// dictionaries once more before giving up.
    pub(crate) async fn decode_blob(
        &self,
        blob_id: &BlobId,
        stored: &[u8],
    ) -> std::result::Result<Vec<u8>, VerifyError> {
        let max = self.inner.config.max_value_bytes;
        let decoded = blob::decode_verified(blob_id, stored, max, &*self.inner.dictionaries.load());
        if let Err(VerifyError::Decode(DecodeError::MissingDictionary(_))) = &decoded {
            if let Err(error) = self.inner.dictionaries.reload(&self.inner.backend).await {
                tracing::warn!(%error, "could not reload the compression dictionaries");
                return decoded;
            }
            return blob::decode_verified(blob_id, stored, max, &*self.inner.dictionaries.load());
        }
        decoded
    }

    /// Decodes and verifies stored bytes, which must also have the size the record says and a
    /// known format; [`Checked::deserialize`] then makes the value.
    pub(crate) async fn check_stored(
        &self,
        collection: &str,
        key: &str,
        blob_id: &BlobId,
        stored: &[u8],
        format: u8,
        meta: &RecordMeta,
    ) -> Result<Checked> {
        let raw = self
            .decode_blob(blob_id, stored)
            .await
            .map_err(|error| Error::corrupt_at(collection, key, error.to_string()))?;
        if raw.len() as u64 != meta.size_bytes {
            return Err(Error::corrupt_at(
                collection,
                key,
                format!(
                    "the value is {} bytes long but the record says {}",
                    raw.len(),
                    meta.size_bytes
                ),
            ));
        }
        let format = Format::from_tag(format).ok_or_else(|| {
            Error::corrupt_at(collection, key, format!("unknown format tag {format}"))
        })?;
        Ok(Checked {
            raw,
            format,
            meta: *meta,
        })
    }
}

/// A record's value checked against its seal, its id and its size and decoded to its
/// serialized bytes: a read's work but the deserializing, which [`Checked::deserialize`] does
/// (a scan checks a page on one task and deserializes it on another).
pub(crate) struct Checked {
    raw: Vec<u8>,
    format: Format,
    meta: RecordMeta,
}

impl Checked {
    /// The record, its value deserialized into a `T`.
    ///
    /// # Errors
    /// `Error::Serialization` when the value is not a `T`.
    pub(crate) fn deserialize<T: DeserializeOwned>(
        self,
        collection: &str,
        key: &str,
    ) -> Result<Record<T>> {
        let value = self
            .format
            .deserialize(&self.raw)
            .map_err(|source| Error::Serialization {
                action: "deserialize",
                collection: collection.to_owned(),
                key: key.to_owned(),
                source: source.into(),
            })?;
        Ok(Record {
            value,
            meta: self.meta,
        })
    }
}

/// Whether a fetched record has expired at `now_ms`, once it matched its seal (so that a
/// damaged expiry instant is an error, never a record silently taken for absent). Point reads
/// fetch a record whatever its expiry and ask this; scans and listings leave expired records
/// out in their queries.
///
/// # Errors
/// `Error::Corrupt` for a record that does not match its seal.
pub(crate) fn has_expired(
    collection: &str,
    key: &str,
    fetched: &StoredRecord,
    now_ms: i64,
) -> Result<bool> {
    if !fetched.meta.is_expired_at(now_ms) {
        return Ok(false);
    }
    check_seal(collection, key, fetched)?;
    Ok(true)
}

/// Compares a fetched record with its seal (see `record::seal`): a damaged key, version or
/// value reference is an error, never another record's value.
fn check_seal(collection: &str, key: &str, fetched: &StoredRecord) -> Result<()> {
    let expected = record::seal(
        collection.as_bytes(),
        key.as_bytes(),
        &fetched.blob_id,
        fetched.format,
        &fetched.meta,
    );
    if expected == fetched.seal {
        return Ok(());
    }
    Err(Error::corrupt_at(
        collection,
        key,
        "the record does not match its seal: its key, version, metadata or value reference \
         was altered on disk",
    ))
}
