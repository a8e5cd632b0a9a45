//! [`Store`]: the front door. Typed values in named collections, by key.
//!
//! **Boundary:** the public API speaks of collections, keys, values and versions. Validation,
//! serialization, hashing and compression happen here, on the caller's task, before anything is
//! handed to the backend; verification and decoding happen here after a read.

use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::access::AccessLog;
use crate::backend::{
    Backend, Engine, KeyRange, Reads, StoredRecord, WriteOp, WriteOutcome, Writes,
};
use crate::blob::{self, BlobId, EncodedBlob, VerifyError};
use crate::cache::{Cache, CachedValue};
use crate::codec::{DecodeError, Format};
use crate::config::Config;
use crate::dictionaries::Dictionaries;
use crate::error::{Error, Result};
use crate::name::{validate_collection, validate_key};
use crate::record::{self, Expect, Record, RecordMeta, Version};
use crate::tasks::Tasks;
use crate::telemetry::{Operation, Recorder};
use crate::transaction::Transaction;

/// A handle to an open store. Cheap to clone; all clones share one database.
///
/// Dropping the last handle stops the writer after it committed what was queued; call
/// [`Store::close`] to also wait for that and to save pending read counts.
#[derive(Debug, Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    config: Config,
    backend: Backend,
    cache: Cache,
    dictionaries: Dictionaries,
    recorder: Recorder,
    access: AccessLog,
    /// Held while maintenance runs, so that it never runs twice at once.
    maintenance: tokio::sync::Mutex<()>,
    tasks: Tasks,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Background tasks hold only weak handles; this tells them to stop now.
        self.tasks.cancel();
    }
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
        let store = Store {
            inner: Arc::new(Inner {
                cache: Cache::new(&config),
                dictionaries: Dictionaries::new(config.compression),
                recorder: Recorder::new(),
                config,
                backend,
                access: AccessLog::default(),
                maintenance: tokio::sync::Mutex::new(()),
                tasks: Tasks::new(),
            }),
        };
        store
            .inner
            .dictionaries
            .reload(&store.inner.backend)
            .await?;
        store.inner.tasks.start(&store);
        Ok(store)
    }

    /// A handle from the shared state, for background tasks.
    pub(crate) fn from_inner(inner: Arc<Inner>) -> Self {
        Store { inner }
    }

    /// A handle that does not keep the store open.
    pub(crate) fn downgrade(&self) -> std::sync::Weak<Inner> {
        Arc::downgrade(&self.inner)
    }

    pub(crate) fn cache(&self) -> &Cache {
        &self.inner.cache
    }

    pub(crate) fn dictionaries(&self) -> &Dictionaries {
        &self.inner.dictionaries
    }

    pub(crate) fn recorder(&self) -> &Recorder {
        &self.inner.recorder
    }

    pub(crate) fn maintenance_lock(&self) -> &tokio::sync::Mutex<()> {
        &self.inner.maintenance
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
        let started = Instant::now();
        let result = match self.encode_put(collection, key, value, expect) {
            Ok(op) => match self.write_one(op).await {
                Ok(WriteOutcome::Stored { meta, .. }) => Ok(meta.version),
                Ok(WriteOutcome::Deleted(_)) => Err(unexpected_outcome()),
                Err(error) => Err(error),
            },
            Err(error) => Err(error),
        };
        self.inner
            .recorder
            .finish(Operation::Store, started.elapsed(), &result);
        result
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
        let started = Instant::now();
        let result = self.retrieve_uncounted(collection, key).await;
        self.inner
            .recorder
            .finish(Operation::Retrieve, started.elapsed(), &result);
        result
    }

    async fn retrieve_uncounted<T: DeserializeOwned>(
        &self,
        collection: &str,
        key: &str,
    ) -> Result<Option<Record<T>>> {
        validate_collection(collection)?;
        validate_key(key)?;
        let cache = &self.inner.cache;
        if let Some(hit) = cache.get(collection, key) {
            let value = self
                .decode(
                    collection,
                    key,
                    &hit.blob_id,
                    &hit.stored,
                    hit.format,
                    &hit.meta,
                )
                .await?;
            self.note_access(collection, key);
            return Ok(Some(Record {
                value,
                meta: hit.meta,
            }));
        }
        let ticket = cache.is_enabled().then(|| cache.ticket(collection, key));
        let Some(fetched) = self.inner.backend.get(collection, key).await? else {
            return Ok(None);
        };
        check_seal(collection, key, &fetched)?;
        let stored = fetched.stored.ok_or_else(|| {
            Error::corrupt_at(
                collection,
                key,
                format!("blob {} is missing", fetched.blob_id),
            )
        })?;
        let value = self
            .decode(
                collection,
                key,
                &fetched.blob_id,
                &stored,
                fetched.format,
                &fetched.meta,
            )
            .await?;
        if let Some(ticket) = ticket {
            let cached = CachedValue {
                blob_id: fetched.blob_id,
                stored,
                format: fetched.format,
                meta: fetched.meta,
            };
            cache.fill(ticket, collection, key, cached);
        }
        self.note_access(collection, key);
        Ok(Some(Record {
            value,
            meta: fetched.meta,
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
        let started = Instant::now();
        let result = match delete_op(collection, key, expect) {
            Ok(op) => match self.write_one(op).await {
                Ok(WriteOutcome::Deleted(existed)) => Ok(existed),
                Ok(WriteOutcome::Stored { .. }) => Err(unexpected_outcome()),
                Err(error) => Err(error),
            },
            Err(error) => Err(error),
        };
        self.inner
            .recorder
            .finish(Operation::Delete, started.elapsed(), &result);
        result
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

    /// Number of background tasks still running: 0 once `close` returned.
    pub fn running_tasks(&self) -> usize {
        self.inner.tasks.running()
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
        self.inner.tasks.stop().await;
        let updates = self.inner.access.take();
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
            blob: EncodedBlob::encode(
                &raw,
                self.inner.config.compression,
                self.inner.dictionaries.load().for_collection(collection),
            ),
            format: format.tag(),
            expect,
        })
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

    /// Decodes, verifies and deserializes stored bytes; the decoded value must also have the
    /// size the record says.
    async fn decode<T: DeserializeOwned>(
        &self,
        collection: &str,
        key: &str,
        blob_id: &BlobId,
        stored: &[u8],
        format: u8,
        meta: &RecordMeta,
    ) -> Result<T> {
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
        self.apply(vec![op])
            .await?
            .pop()
            .ok_or_else(unexpected_outcome)
    }

    /// Hands writes to the backend, then brings the cache in line with what committed.
    pub(crate) async fn apply(&self, ops: Vec<WriteOp>) -> Result<Vec<WriteOutcome>> {
        let write_through = self.inner.cache.is_write_through();
        // What each write means for the cache: (collection, key, new stored value if any).
        let touched: Vec<(String, String, Option<NewValue>)> = ops
            .iter()
            .map(|op| match op {
                WriteOp::Put {
                    collection,
                    key,
                    blob,
                    format,
                    ..
                } => {
                    self.inner
                        .recorder
                        .written(blob.raw_len, blob.stored.len() as u64);
                    let value = write_through.then(|| (blob.id, blob.stored.clone(), *format));
                    (collection.clone(), key.clone(), value)
                }
                WriteOp::Delete {
                    collection, key, ..
                }
                | WriteOp::Restore {
                    collection, key, ..
                } => (collection.clone(), key.clone(), None),
            })
            .collect();
        let result = self.inner.backend.write(ops).await;
        let cache = &self.inner.cache;
        match &result {
            Ok(outcomes) => {
                for ((collection, key, value), outcome) in touched.into_iter().zip(outcomes) {
                    let cached = match outcome {
                        WriteOutcome::Stored { meta, deduplicated } => {
                            if *deduplicated {
                                self.inner.recorder.deduplicated(meta.size_bytes);
                            }
                            value.map(|(blob_id, stored, format)| CachedValue {
                                blob_id,
                                stored,
                                format,
                                meta: *meta,
                            })
                        }
                        WriteOutcome::Deleted(_) => None,
                    };
                    cache.written(&collection, &key, cached);
                }
            }
            // Whether anything committed is unknown for some errors (a dead writer): forget
            // the keys rather than risk serving what was replaced.
            Err(_) => {
                for (collection, key, _) in touched {
                    cache.written(&collection, &key, None);
                }
            }
        }
        result
    }

    /// Counts a read in memory; hands the counts on once enough accumulated.
    fn note_access(&self, collection: &str, key: &str) {
        if self.inner.access.note(collection, key) {
            self.flush_access();
        }
    }

    /// Hands the read counts gathered so far to the backend, without waiting for them.
    pub(crate) fn flush_access(&self) {
        let updates = self.inner.access.take();
        if updates.is_empty() {
            return;
        }
        let store = self.clone();
        self.inner.tasks.spawn_once(async move {
            if let Err(error) = store.inner.backend.record_access(updates).await {
                tracing::debug!(%error, "read counts dropped");
            }
        });
    }
}

/// A written value as the cache keeps it: blob id, stored bytes, format tag.
type NewValue = (BlobId, Vec<u8>, u8);

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
