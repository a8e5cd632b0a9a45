//! A read-write transaction's reads: point reads (its own writes first, then a staged write
//! of another transaction of this store, then the committed value) and scans.

use std::collections::BTreeMap;
use std::ops::RangeBounds;

use serde::de::DeserializeOwned;

use super::{Pending, ReadWriteTransaction};
use crate::backend::{RangeRow, Reads as _};
use crate::blob::EncodedBlob;
use crate::collection::{Entry, Scan};
use crate::error::Result;
use crate::name::{validate_collection, validate_key};
use crate::record::{RecordMeta, Version};
use crate::store::Source;

impl ReadWriteTransaction {
    /// Reads the value under `key`: this transaction's own write if it made one, else the
    /// committed value, or the value a transaction of this store is committing (it is checked
    /// at commit like any read, so this transaction commits only if that one did). The
    /// version read is checked at commit.
    ///
    /// # Errors
    /// `Error::InvalidName`, `Error::Serialization` when the value is not a `T`, and the errors
    /// of [`Store::retrieve`](crate::Store::retrieve).
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn get<T: DeserializeOwned>(
        &mut self,
        collection: &str,
        key: &str,
    ) -> Result<Option<T>> {
        validate_collection(collection)?;
        validate_key(key)?;
        let name = (collection.to_owned(), key.to_owned());
        if let Some((_, pending)) = self.writes.get(&name) {
            return self
                .decode_uncommitted(collection, key, pending.written())
                .await;
        }
        if let Some(staged) = self.staged_reads.get(&name) {
            return self
                .decode_uncommitted(collection, key, staged.value.written())
                .await;
        }
        // A key read once is read from the same place again: a staged value may never
        // commit, so it must not mix with the committed one in one run of the closure.
        if !self.reads.contains_key(&name)
            && let Some(staged) = self.store.staged().get(collection, key)
        {
            let value = self
                .decode_uncommitted(collection, key, staged.value.written())
                .await?;
            self.reads.insert(name.clone(), staged.value.seen());
            self.staged_reads.insert(name, staged);
            return Ok(value);
        }
        // Its version and value become conditions of the commit: read them where the commit
        // checks them.
        let found = self
            .store
            .retrieve_from::<T>(collection, key, Source::Primary)
            .await?;
        let seen = found
            .as_ref()
            .map(|(record, blob_id)| (record.meta.version, *blob_id));
        self.reads.entry(name).or_insert(seen);
        Ok(found.map(|(record, _)| record.value))
    }

    /// Reads the records `scan` selects in `collection`, in its order, with this transaction's
    /// own writes in place. The whole range is checked at commit: a key in it that another
    /// transaction changed, deleted or inserted meanwhile (a phantom) is a conflict, and the
    /// closure runs again.
    ///
    /// Unlike [`Collection::scan`](crate::Collection::scan), which streams, the entries come
    /// back together (a transaction holds what it read until it commits): give large ranges a
    /// limit.
    ///
    /// # Errors
    /// `Error::InvalidName`, `Error::Serialization` when a value is not a `T`, and the errors
    /// of a read.
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn scan<T: DeserializeOwned>(
        &mut self,
        collection: &str,
        scan: Scan,
    ) -> Result<Vec<Entry<T>>> {
        validate_collection(collection)?;
        let (mut range, limit) = scan.into_range(usize::MAX);
        let limit = limit.unwrap_or(usize::MAX);
        let own: Vec<(&String, &Pending)> = self
            .writes
            .iter()
            .filter(|((written, key), _)| {
                written == collection
                    && RangeBounds::<String>::contains(
                        &(range.start.as_ref(), range.end.as_ref()),
                        key,
                    )
            })
            .map(|((_, key), (_, pending))| (key, pending))
            .collect();
        // Each own delete can hide one committed record: read that many more, so that what
        // is left after the overlay still fills the limit.
        range.limit = limit.saturating_add(own.len());
        let committed = self
            .store
            .backend()
            .scan_latest(collection, range.clone())
            .await?;
        let mut entries = BTreeMap::new();
        for (key, fetched) in &committed {
            if self
                .writes
                .contains_key(&(collection.to_owned(), key.clone()))
            {
                continue;
            }
            let record = self
                .store
                .decode_fetched::<T>(collection, key, fetched)
                .await?;
            let version = record.meta.version;
            let value = record.value;
            entries.insert(key.clone(), (version, value));
        }
        let seen: Vec<RangeRow> = committed
            .into_iter()
            .map(|(key, fetched)| (key, fetched.meta.version, Some(fetched.blob_id)))
            .collect();
        for (key, pending) in own {
            if let Some(value) = self
                .decode_uncommitted(collection, key, pending.written())
                .await?
            {
                // The version the write will have when it commits.
                let version = seen
                    .iter()
                    .find(|(seen_key, ..)| seen_key == key)
                    .map_or(Version::FIRST, |(_, version, _)| version.next());
                entries.insert(key.clone(), (version, value));
            }
        }
        let reverse = range.reverse;
        self.ranges.push((collection.to_owned(), range, seen));
        let entries = entries.into_iter().map(|(key, (version, value))| Entry {
            key,
            version,
            value,
        });
        Ok(if reverse {
            entries.rev().take(limit).collect()
        } else {
            entries.take(limit).collect()
        })
    }

    /// The value an uncommitted write leaves (its own pending one, or another transaction's
    /// staged one): `None` for a delete, the value decoded for a put.
    async fn decode_uncommitted<T: DeserializeOwned>(
        &self,
        collection: &str,
        key: &str,
        written: Option<(&EncodedBlob, u8)>,
    ) -> Result<Option<T>> {
        match written {
            None => Ok(None),
            Some((blob, format)) => self
                .decode_blob(collection, key, blob, format)
                .await
                .map(Some),
        }
    }

    /// Decodes (and verifies) a value not yet committed.
    async fn decode_blob<T: DeserializeOwned>(
        &self,
        collection: &str,
        key: &str,
        blob: &EncodedBlob,
        format: u8,
    ) -> Result<T> {
        let meta = RecordMeta {
            version: Version::FIRST,
            created_at_ms: 0,
            updated_at_ms: 0,
            size_bytes: blob.raw_len,
            access_count: 0,
            last_accessed_ms: 0,
            expires_at_ms: None,
        };
        let checked = self
            .store
            .check_stored(collection, key, &blob.id, &blob.stored, format, &meta)
            .await?;
        Ok(checked.deserialize(collection, key)?.value)
    }
}
