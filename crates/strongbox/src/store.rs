//! [`Store`]: the front door. Typed values in named collections, by key.
//!
//! **Boundary:** the public API speaks of collections, keys, values and versions. Validation,
//! serialization, hashing and compression happen here, on the caller's task, before anything is
//! handed to the backend; verification and decoding happen here after a read.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::backend::{AccessUpdate, Backend, KeyRange, StoredRecord, WriteOp, WriteOutcome};
use crate::blob::{self, EncodedBlob};
use crate::codec::Format;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::name::{validate_collection, validate_key};
use crate::record::{Expect, Record, Version};
use crate::transaction::Transaction;

/// Read counts are flushed to the database once this many distinct records were read.
const ACCESS_FLUSH_RECORDS: usize = 4096;

/// A handle to an open store. Cheap to clone; all clones share one database.
///
/// Dropping the last handle stops the writer after it committed what was queued; call
/// [`Store::close`] to also wait for that and to save pending read counts.
#[derive(Debug, Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: Config,
    backend: Backend,
    /// Reads since the last flush, by (collection, key): (count, last read time).
    access: Mutex<HashMap<(String, String), (u64, i64)>>,
}

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

impl Store {
    /// Opens the store the configuration names, creating the database if needed.
    ///
    /// # Errors
    /// `Error::InvalidConfig` for a bad setting or a database of a newer schema, `Error::Io` or
    /// `Error::Backend` when the file cannot be created or opened, `Error::Busy` when another
    /// process holds it locked for longer than the busy timeout.
    ///
    /// # Cancel safety
    /// Not cancel safe: a cancelled open may still create the file.
    pub async fn open(config: Config) -> Result<Self> {
        config.validate()?;
        let backend = Backend::open(&config).await?;
        Ok(Store {
            inner: Arc::new(Inner {
                config,
                backend,
                access: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The configuration the store was opened with.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    pub(crate) fn backend(&self) -> &Backend {
        &self.inner.backend
    }

    /// Stores `value` under `key`, creating or replacing it, and returns its new version.
    /// When this returns, the write is durable as `Config::durability` says.
    ///
    /// # Errors
    /// `Error::InvalidName`, `Error::ValueTooLarge`, `Error::Serialization`, `Error::Busy`,
    /// `Error::Backend`.
    ///
    /// # Cancel safety
    /// Not cancel safe: once queued, the write commits even if the future is dropped.
    pub async fn store<T: Serialize + ?Sized>(
        &self,
        collection: &str,
        key: &str,
        value: &T,
    ) -> Result<Version> {
        self.store_if(collection, key, value, Expect::Any).await
    }

    /// Stores `value` if the current record meets `expect`, and returns its new version.
    ///
    /// # Errors
    /// `Error::Conflict` (with the version found) when the condition fails, and the errors of
    /// [`Store::store`].
    ///
    /// # Cancel safety
    /// Not cancel safe, as [`Store::store`].
    pub async fn store_if<T: Serialize + ?Sized>(
        &self,
        collection: &str,
        key: &str,
        value: &T,
        expect: Expect,
    ) -> Result<Version> {
        let op = self.encode_put(collection, key, value, expect)?;
        match self.write_one(op).await? {
            WriteOutcome::Stored(version) => Ok(version),
            WriteOutcome::Deleted(_) => Err(unexpected_outcome()),
        }
    }

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
        validate_collection(collection)?;
        validate_key(key)?;
        let Some(stored) = self.inner.backend.get(collection, key).await? else {
            return Ok(None);
        };
        let value = self.decode(collection, key, &stored)?;
        self.note_access(collection, key);
        Ok(Some(Record {
            value,
            meta: stored.meta,
        }))
    }

    /// Deletes `key`; returns whether it existed.
    ///
    /// # Errors
    /// `Error::InvalidName`, `Error::Busy`, `Error::Backend`.
    ///
    /// # Cancel safety
    /// Not cancel safe: once queued, the delete commits even if the future is dropped.
    pub async fn delete(&self, collection: &str, key: &str) -> Result<bool> {
        self.delete_if(collection, key, Expect::Any).await
    }

    /// Deletes `key` if it meets `expect`; returns whether it existed.
    ///
    /// # Errors
    /// `Error::Conflict` when the condition fails, and the errors of [`Store::delete`].
    ///
    /// # Cancel safety
    /// Not cancel safe, as [`Store::delete`].
    pub async fn delete_if(&self, collection: &str, key: &str, expect: Expect) -> Result<bool> {
        let op = delete_op(collection, key, expect)?;
        match self.write_one(op).await? {
            WriteOutcome::Deleted(existed) => Ok(existed),
            WriteOutcome::Stored(_) => Err(unexpected_outcome()),
        }
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

    /// Starts a transaction: writes added to it commit together or not at all.
    pub fn transaction(&self) -> Transaction {
        Transaction::new(self.clone())
    }

    /// Saves pending read counts, commits what is queued and stops the writer. Every handle of
    /// this store then fails with `Error::Closed`.
    ///
    /// # Errors
    /// `Error::Backend` when the writer cannot be stopped cleanly.
    ///
    /// # Cancel safety
    /// Not cancel safe: a cancelled close may leave the store closed.
    pub async fn close(&self) -> Result<()> {
        let updates = self.take_access();
        if !updates.is_empty()
            && let Err(error) = self.inner.backend.record_access(updates).await
        {
            tracing::warn!(%error, "could not save read counts at close");
        }
        self.inner.backend.close().await
    }

    /// Serializes, hashes and encodes a value into a write.
    pub(crate) fn encode_put<T: Serialize + ?Sized>(
        &self,
        collection: &str,
        key: &str,
        value: &T,
        expect: Expect,
    ) -> Result<WriteOp> {
        validate_collection(collection)?;
        validate_key(key)?;
        let format = Format::default();
        let raw = format
            .serialize(value)
            .map_err(|source| Error::Serialization {
                action: "serialize",
                collection: collection.to_owned(),
                key: key.to_owned(),
                source: source.into(),
            })?;
        let max = self.inner.config.max_value_bytes;
        if raw.len() > max {
            return Err(Error::ValueTooLarge {
                collection: collection.to_owned(),
                key: key.to_owned(),
                size: raw.len(),
                max,
            });
        }
        Ok(WriteOp::Put {
            collection: collection.to_owned(),
            key: key.to_owned(),
            blob: EncodedBlob::encode(&raw, self.inner.config.compression),
            format: format.tag(),
            expect,
        })
    }

    /// Decodes, verifies and deserializes a fetched record.
    fn decode<T: DeserializeOwned>(
        &self,
        collection: &str,
        key: &str,
        stored: &StoredRecord,
    ) -> Result<T> {
        let bytes = stored.stored.as_deref().ok_or_else(|| {
            Error::corrupt_at(
                collection,
                key,
                format!("blob {} is missing", stored.blob_id),
            )
        })?;
        let raw = blob::decode_verified(&stored.blob_id, bytes, self.inner.config.max_value_bytes)
            .map_err(|error| Error::corrupt_at(collection, key, error.to_string()))?;
        let format = Format::from_tag(stored.format).ok_or_else(|| {
            Error::corrupt_at(
                collection,
                key,
                format!("unknown format tag {}", stored.format),
            )
        })?;
        format
            .deserialize(&raw)
            .map_err(|source| Error::Serialization {
                action: "deserialize",
                collection: collection.to_owned(),
                key: key.to_owned(),
                source: source.into(),
            })
    }

    async fn write_one(&self, op: WriteOp) -> Result<WriteOutcome> {
        self.inner
            .backend
            .write(vec![op])
            .await?
            .pop()
            .ok_or_else(unexpected_outcome)
    }

    /// Counts a read in memory; queues the counts for the writer once enough accumulated.
    fn note_access(&self, collection: &str, key: &str) {
        let now = now_ms();
        let full = {
            let Ok(mut access) = self.inner.access.lock() else {
                return;
            };
            let entry = access
                .entry((collection.to_owned(), key.to_owned()))
                .or_insert((0, 0));
            entry.0 += 1;
            entry.1 = now;
            access.len() >= ACCESS_FLUSH_RECORDS
        };
        if full {
            let updates = self.take_access();
            if let Err(error) = self.inner.backend.queue_access(updates) {
                tracing::debug!(%error, "read counts dropped");
            }
        }
    }

    fn take_access(&self) -> Vec<AccessUpdate> {
        let Ok(mut access) = self.inner.access.lock() else {
            return Vec::new();
        };
        access
            .drain()
            .map(
                |((collection, key), (reads, last_accessed_ms))| AccessUpdate {
                    collection,
                    key,
                    reads,
                    last_accessed_ms,
                },
            )
            .collect()
    }
}

/// Validates and builds a delete.
pub(crate) fn delete_op(collection: &str, key: &str, expect: Expect) -> Result<WriteOp> {
    validate_collection(collection)?;
    validate_key(key)?;
    Ok(WriteOp::Delete {
        collection: collection.to_owned(),
        key: key.to_owned(),
        expect,
    })
}

fn unexpected_outcome() -> Error {
    Error::backend(
        "apply a write",
        "the backend answered with another outcome than the write asked for",
    )
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)
        })
}
