//! [`Collection<T>`]: a typed handle on one collection, and [`Scan`], which records a scan reads.
//!
//! A handle checks its collection's name once, when made ([`Store::collection`]), and reads and
//! writes values of one type. Scans are streams, read in pages of [`SCAN_PAGE`] records, so
//! their memory stays bounded whatever the collection's size.
//!
//! **Invariant:** every entry a scan yields was checked against its seal and its hash, like a
//! `get`; each page is one consistent read, and later pages may reflect later commits (a key is
//! never yielded twice, since each page starts after the last key of the one before).

use std::cmp::Ordering;
use std::marker::PhantomData;
use std::ops::{Bound, RangeBounds};
use std::time::Duration;

use futures_util::stream::BoxStream;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::backend::{Reads, ScanRange, WriteOutcome};
use crate::clock::now_ms;
use crate::error::Result;
use crate::name::{prefix_successor, validate_collection, validate_key};
use crate::record::{Expect, PutOptions, Version};
use crate::store::{ListOptions, Store, delete_op, has_expired};

mod scan;

/// Records a scan reads per round trip.
pub const SCAN_PAGE: usize = 256;

/// Which records of a collection a scan reads, in key (byte) order: all, a prefix or a range,
/// forwards or reversed, with an optional limit.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct Scan {
    start: Bound<String>,
    end: Bound<String>,
    reverse: bool,
    limit: Option<usize>,
}

impl Scan {
    /// Every record.
    pub fn all() -> Self {
        Scan {
            start: Bound::Unbounded,
            end: Bound::Unbounded,
            reverse: false,
            limit: None,
        }
    }

    /// The records whose key starts with `prefix`.
    pub fn prefix(prefix: impl Into<String>) -> Self {
        let prefix = prefix.into();
        let end = prefix_successor(&prefix).map_or(Bound::Unbounded, Bound::Excluded);
        Scan {
            start: Bound::Included(prefix),
            end,
            ..Scan::all()
        }
    }

    /// The records whose key is in `range`, for example `"a".."m"` or `"k"..`.
    pub fn range<'a>(range: impl RangeBounds<&'a str>) -> Self {
        let owned = |bound: Bound<&&str>| match bound {
            Bound::Included(key) => Bound::Included((*key).to_owned()),
            Bound::Excluded(key) => Bound::Excluded((*key).to_owned()),
            Bound::Unbounded => Bound::Unbounded,
        };
        Scan {
            start: owned(range.start_bound()),
            end: owned(range.end_bound()),
            ..Scan::all()
        }
    }

    /// From the highest key down.
    pub fn reverse(mut self) -> Self {
        self.reverse = !self.reverse;
        self
    }

    /// At most `limit` records.
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = Some(limit);
        self
    }

    /// The range to read, with `limit` records at most per read, and the scan's own limit.
    pub(crate) fn into_range(self, limit: usize) -> (ScanRange, Option<usize>) {
        let range = ScanRange {
            start: self.start,
            end: self.end,
            reverse: self.reverse,
            limit,
        };
        (range, self.limit)
    }

    /// Narrows the scan to the keys that are also in `range`. An empty intersection reads
    /// nothing. For example, the keys starting with `t07-` from `t07-r0100` on:
    /// `Scan::prefix("t07-").within("t07-r0100"..)`.
    pub fn within<'a>(mut self, range: impl RangeBounds<&'a str>) -> Self {
        let other = Scan::range(range);
        self.start = tighter(self.start, other.start, Ordering::Greater);
        self.end = tighter(self.end, other.end, Ordering::Less);
        self
    }
}

/// The tighter of two bounds on the same side of a range: `inward` is how a bound nearer the
/// middle compares with one further out (`Greater` for starts, `Less` for ends); of two bounds
/// on one key, the excluding one.
fn tighter(a: Bound<String>, b: Bound<String>, inward: Ordering) -> Bound<String> {
    let order = match (&a, &b) {
        (Bound::Unbounded, _) => return b,
        (_, Bound::Unbounded) => return a,
        (Bound::Included(x) | Bound::Excluded(x), Bound::Included(y) | Bound::Excluded(y)) => {
            x.cmp(y)
        }
    };
    match order {
        Ordering::Equal if matches!(b, Bound::Excluded(_)) => b,
        Ordering::Equal => a,
        order if order == inward => a,
        _ => b,
    }
}

/// One record a scan yields.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry<T> {
    /// The record's key.
    pub key: String,
    /// Its version.
    pub version: Version,
    /// Its value.
    pub value: T,
}

/// A typed handle on one collection of a store (see [`Store::collection`]). Cheap to clone.
#[derive(Debug)]
pub struct Collection<T> {
    store: Store,
    name: String,
    values: PhantomData<fn() -> T>,
}

impl<T> Clone for Collection<T> {
    fn clone(&self) -> Self {
        Collection {
            store: self.store.clone(),
            name: self.name.clone(),
            values: PhantomData,
        }
    }
}

/// Keys deleted per transaction by [`Collection::delete_prefix`] and [`Store::drop_collection`].
pub const DELETE_BATCH: usize = 1_000;

impl Store {
    /// Deletes every record of `collection`; returns how many. As [`Collection::clear`].
    ///
    /// # Errors
    /// `Error::InvalidName`, and the errors of [`Store::delete`].
    ///
    /// # Cancel safety
    /// Not cancel safe: the batches committed before the future is dropped stay deleted.
    pub async fn drop_collection(&self, collection: &str) -> Result<u64> {
        validate_collection(collection)?;
        self.delete_prefix(collection, "").await
    }

    /// Deletes the records of `collection` whose key starts with `prefix` (every record for
    /// an empty prefix), in transactions of [`DELETE_BATCH`] keys, through the ordinary delete
    /// path, so reference counts stay exact; returns how many were deleted.
    async fn delete_prefix(&self, collection: &str, prefix: &str) -> Result<u64> {
        let mut deleted = 0;
        loop {
            let options = ListOptions::all().prefix(prefix).limit(DELETE_BATCH);
            let keys = self.list(collection, options).await?;
            if keys.is_empty() {
                return Ok(deleted);
            }
            let ops = keys
                .iter()
                .map(|key| delete_op(collection, key, Expect::Any))
                .collect::<Result<Vec<_>>>()?;
            let outcomes = self.apply(ops).await?;
            deleted += outcomes
                .iter()
                .filter(|outcome| matches!(outcome, WriteOutcome::Deleted(true)))
                .count() as u64;
            if keys.len() < DELETE_BATCH {
                return Ok(deleted);
            }
        }
    }

    /// A typed handle on the collection `name`, whose values are `T`s.
    ///
    /// # Errors
    /// `Error::InvalidName` for a name that is not a valid collection name.
    pub fn collection<T>(&self, name: &str) -> Result<Collection<T>> {
        validate_collection(name)?;
        Ok(Collection {
            store: self.clone(),
            name: name.to_owned(),
            values: PhantomData,
        })
    }
}

impl<T> Collection<T>
where
    T: Serialize + DeserializeOwned + Send + 'static,
{
    /// The collection's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Stores `value` under `key`; returns the record's new version. As [`Store::store`].
    ///
    /// # Errors
    /// As [`Store::store`].
    ///
    /// # Cancel safety
    /// As [`Store::store`].
    pub async fn put(&self, key: &str, value: &T) -> Result<Version> {
        self.store.store(&self.name, key, value).await
    }

    /// Stores `value` under `key` with `options` (a condition, an expiry). As
    /// [`Store::store_with`].
    ///
    /// # Errors
    /// As [`Store::store_if`].
    ///
    /// # Cancel safety
    /// As [`Store::store`].
    pub async fn put_with(&self, key: &str, value: &T, options: PutOptions) -> Result<Version> {
        self.store.store_with(&self.name, key, value, options).await
    }

    /// Stores `value` under `key`, to expire `ttl` from now: from then on it is absent for
    /// every read (see [`Expiry`](crate::Expiry)).
    ///
    /// # Errors
    /// As [`Store::store`].
    ///
    /// # Cancel safety
    /// As [`Store::store`].
    pub async fn put_with_ttl(&self, key: &str, value: &T, ttl: Duration) -> Result<Version> {
        self.put_with(key, value, PutOptions::new().ttl(ttl)).await
    }

    /// The value under `key`. As [`Store::retrieve`].
    ///
    /// # Errors
    /// As [`Store::retrieve`].
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn get(&self, key: &str) -> Result<Option<T>> {
        self.store.retrieve(&self.name, key).await
    }

    /// The values under several keys, in their order (`None` where there is none), read in one
    /// round trip and from one commit.
    ///
    /// # Errors
    /// `Error::InvalidName` for a bad key (before anything is read), and the errors of
    /// [`Store::retrieve`].
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn get_many<I, K>(&self, keys: I) -> Result<Vec<Option<T>>>
    where
        I: IntoIterator<Item = K>,
        K: AsRef<str>,
    {
        let keys: Vec<String> = keys
            .into_iter()
            .map(|key| {
                validate_key(key.as_ref())?;
                Ok(key.as_ref().to_owned())
            })
            .collect::<Result<_>>()?;
        let fetched = self
            .store
            .backend()
            .get_many(&self.name, keys.clone())
            .await?;
        let mut values = Vec::with_capacity(keys.len());
        let now = now_ms();
        for (key, fetched) in keys.iter().zip(fetched) {
            values.push(match fetched {
                Some(fetched) if has_expired(&self.name, key, &fetched, now)? => None,
                Some(fetched) => Some(
                    self.store
                        .decode_fetched::<T>(&self.name, key, &fetched)
                        .await?
                        .value,
                ),
                None => None,
            });
        }
        Ok(values)
    }

    /// Replaces the value under `key` with `change(current)` (`None` in: there is none; `None`
    /// out: delete it), atomically: `change` runs again if the value changed meanwhile (see
    /// [`Store::transact`]). Returns the value written. The record written does not expire,
    /// as with every write without an expiry (a transaction's `put_with` keeps one).
    ///
    /// # Errors
    /// As [`Store::transact`].
    ///
    /// # Cancel safety
    /// Not cancel safe, as [`Store::transact`].
    pub async fn update<F>(&self, key: &str, mut change: F) -> Result<Option<T>>
    where
        F: FnMut(Option<T>) -> Option<T>,
        T: Clone,
    {
        validate_key(key)?;
        let name = &self.name;
        self.store
            .transact(async |tx| {
                let current: Option<T> = tx.get(name, key).await?;
                let existed = current.is_some();
                let next = change(current);
                match &next {
                    Some(value) => tx.put(name, key, value)?,
                    None if existed => tx.delete(name, key)?,
                    None => {}
                }
                Ok(next)
            })
            .await
    }

    /// Deletes every record whose key starts with `prefix`; returns how many. The deletes run
    /// in transactions of [`DELETE_BATCH`] keys: a concurrent reader may see some batches
    /// done and others not yet, and a record written meanwhile under the prefix may survive.
    ///
    /// # Errors
    /// `Error::InvalidName` for a prefix longer than a key may be, and the errors of
    /// [`Store::delete`].
    ///
    /// # Cancel safety
    /// Not cancel safe, as [`Store::drop_collection`].
    pub async fn delete_prefix(&self, prefix: &str) -> Result<u64> {
        if !prefix.is_empty() {
            validate_key(prefix)?;
        }
        self.store.delete_prefix(&self.name, prefix).await
    }

    /// Deletes every record of the collection; returns how many. As [`Collection::delete_prefix`]
    /// with an empty prefix.
    ///
    /// # Errors
    /// As [`Store::delete`].
    ///
    /// # Cancel safety
    /// Not cancel safe, as [`Store::drop_collection`].
    pub async fn clear(&self) -> Result<u64> {
        self.store.delete_prefix(&self.name, "").await
    }

    /// Deletes `key`; returns whether it existed. As [`Store::delete`].
    ///
    /// # Errors
    /// As [`Store::delete`].
    ///
    /// # Cancel safety
    /// As [`Store::delete`].
    pub async fn delete(&self, key: &str) -> Result<bool> {
        self.store.delete(&self.name, key).await
    }

    /// The records `scan` selects, as a stream of entries in key order (or reversed), read in
    /// pages of [`SCAN_PAGE`]: while one page is yielded, the next is fetched, so memory stays
    /// bounded by three pages. Use `futures::TryStreamExt::try_next` to walk it; dropping it
    /// stops the reading.
    ///
    /// Each entry is checked like a `get`; an error ends the stream after it is yielded.
    ///
    /// # Panics
    /// When polled outside a tokio runtime (as every read of the store).
    pub fn scan(&self, scan: Scan) -> BoxStream<'static, Result<Entry<T>>> {
        scan::entries(self.clone(), scan)
    }
}

#[cfg(test)]
mod tests;
