//! The write path of [`Store`]: validate, serialize, hash and encode on the caller's task, then
//! hand the writes to the backend and bring the cache in line with what committed.
//!
//! **Invariant:** nothing reaches the backend unvalidated or unencoded, and after every write,
//! committed or failed, the cache holds either the committed value or nothing for its key.

use std::time::Instant;

use serde::Serialize;

use super::Store;
use crate::backend::{WriteOp, WriteOutcome, Writes};
use crate::blob::{BlobId, EncodedBlob};
use crate::cache::{CachedValue, FillTicket};
use crate::clock::now_ms;
use crate::codec::{Codec, Format};
use crate::error::{Error, Result};
use crate::name::{validate_collection, validate_key};
use crate::record::{Expect, PutOptions, Version};
use crate::telemetry::Operation;

impl Store {
    /// Stores `value` under `key`, creating or replacing it, and returns its new version.
    /// When this returns, the write is durable as `Config::durability` says.
    ///
    /// # Errors
    /// `Error::InvalidName`, `Error::ValueTooLarge`, `Error::Serialization` (also for a NaN or
    /// infinite float anywhere in the value: JSON cannot hold one, so it could not be read back
    /// as it was), `Error::Busy`, `Error::Backend`.
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
        self.store_with(collection, key, value, PutOptions::new().expect(expect))
            .await
    }

    /// Stores `value` with `options`: a condition on the record replaced and an expiry (see
    /// [`Expiry`](crate::Expiry)); returns its new version.
    ///
    /// ```no_run
    /// # async fn login(store: &strongbox::Store) -> strongbox::Result<()> {
    /// use std::time::Duration;
    /// use strongbox::PutOptions;
    /// let ttl = PutOptions::new().ttl(Duration::from_secs(30 * 60));
    /// store.store_with("sessions", "s-81f2", &"alice", ttl).await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`Store::store_if`].
    ///
    /// # Cancel safety
    /// Not cancel safe, as [`Store::store`].
    pub async fn store_with<T: Serialize + ?Sized>(
        &self,
        collection: &str,
        key: &str,
        value: &T,
        options: PutOptions,
    ) -> Result<Version> {
        let started = Instant::now();
        let result = match self.encode_put(collection, key, value, options) {
            Ok(op) => match self.write_one(op).await {
                Ok(WriteOutcome::Stored { meta, .. }) => Ok(meta.version),
                Ok(WriteOutcome::Deleted(_) | WriteOutcome::Checked) => Err(unexpected_outcome()),
                Err(error) => Err(error),
            },
            Err(error) => Err(error),
        };
        self.inner
            .recorder
            .finish(Operation::Store, started.elapsed(), &result);
        result
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
                Ok(WriteOutcome::Stored { .. } | WriteOutcome::Checked) => {
                    Err(unexpected_outcome())
                }
                Err(error) => Err(error),
            },
            Err(error) => Err(error),
        };
        self.inner
            .recorder
            .finish(Operation::Delete, started.elapsed(), &result);
        result
    }

    /// Serializes, hashes and encodes a value into a write; a time to live counts from now.
    pub(crate) fn encode_put<T: Serialize + ?Sized>(
        &self,
        collection: &str,
        key: &str,
        value: &T,
        options: PutOptions,
    ) -> Result<WriteOp> {
        let (blob, format) = self.encode_value(collection, key, value)?;
        Ok(WriteOp::Put {
            collection: collection.to_owned(),
            key: key.to_owned(),
            blob,
            format,
            expect: options.expect,
            expect_value: None,
            expires_at_ms: options.expiry.instant_ms(now_ms()),
        })
    }

    /// Validates the names, serializes the value (within `max_value_bytes`), hashes and
    /// encodes it: the value's blob and its format tag.
    pub(crate) fn encode_value<T: Serialize + ?Sized>(
        &self,
        collection: &str,
        key: &str,
        value: &T,
    ) -> Result<(EncodedBlob, u8)> {
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
        let blob = EncodedBlob::encode(
            &raw,
            self.inner.config.compression,
            self.inner.dictionaries.load().for_collection(collection),
        );
        Ok((blob, format.tag()))
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
        // What each write means for the cache: (collection, key, new stored value if any);
        // `None` for a check, which writes nothing.
        let touched: Vec<Option<(String, String, Option<NewValue>)>> = ops
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
                    Some((collection.clone(), key.clone(), value))
                }
                WriteOp::Delete {
                    collection, key, ..
                }
                | WriteOp::Restore {
                    collection, key, ..
                } => Some((collection.clone(), key.clone(), None)),
                WriteOp::Check { .. } | WriteOp::CheckRange { .. } => None,
            })
            .collect();
        // Values stored without a dictionary count towards training one (`training_trigger`).
        let counts_plain = self.trains_while_writing();
        let plain: Vec<String> = ops
            .iter()
            .filter(|_| counts_plain)
            .filter_map(|op| match op {
                WriteOp::Put {
                    collection, blob, ..
                } if crate::codec::codec_of(&blob.stored) != Some(Codec::ZstdDictionary) => {
                    Some(collection.clone())
                }
                _ => None,
            })
            .collect();
        let cache = &self.inner.cache;
        let tickets = tickets(cache, &touched);
        let result = self.inner.backend.write(ops).await;
        match &result {
            Ok(outcomes) => {
                for collection in &plain {
                    self.note_plain_value(collection);
                }
                // Only a batch that changed a record adds to the change feed.
                let changed = outcomes.iter().any(|outcome| {
                    !matches!(
                        outcome,
                        WriteOutcome::Checked | WriteOutcome::Deleted(false)
                    )
                });
                if changed {
                    self.note_commit();
                }
                for ((touched, ticket), outcome) in touched.into_iter().zip(tickets).zip(outcomes) {
                    let (Some((collection, key, value)), Some(ticket)) = (touched, ticket) else {
                        continue;
                    };
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
                        WriteOutcome::Deleted(_) | WriteOutcome::Checked => None,
                    };
                    cache.written(ticket, &collection, &key, cached);
                }
            }
            // Whether anything committed is unknown for some errors (a dead writer): forget
            // the keys rather than risk serving what was replaced.
            Err(_) => {
                for (collection, key, _) in touched.into_iter().flatten() {
                    cache.invalidate(&collection, &key);
                }
            }
        }
        result
    }
}

/// A written value as the cache keeps it: blob id, stored bytes, format tag.
type NewValue = (BlobId, Vec<u8>, u8);

/// The cache tickets of the keys writes touch, taken before the writes are sent: a write
/// that commits meanwhile to the same shard may have committed before or after these, so
/// their keys are then dropped, not set (`Cache::written`).
fn tickets(
    cache: &crate::cache::Cache,
    touched: &[Option<(String, String, Option<NewValue>)>],
) -> Vec<Option<FillTicket>> {
    touched
        .iter()
        .map(|touched| {
            touched
                .as_ref()
                .map(|(collection, key, _)| cache.ticket(collection, key))
        })
        .collect()
}

/// Validates and builds a delete.
pub(crate) fn delete_op(collection: &str, key: &str, expect: Expect) -> Result<WriteOp> {
    validate_collection(collection)?;
    validate_key(key)?;
    Ok(WriteOp::Delete {
        collection: collection.to_owned(),
        key: key.to_owned(),
        expect,
        expect_value: None,
    })
}

fn unexpected_outcome() -> Error {
    Error::backend(
        "apply a write",
        "the backend answered with another outcome than the write asked for",
    )
}
