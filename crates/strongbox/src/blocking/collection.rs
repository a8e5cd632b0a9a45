//! The blocking [`Collection<T>`], and [`ScanIter`], a scan as an iterator.
//!
//! **Invariant:** a scan holds one page of the async scan's stream at a time and waits for
//! one entry per `next`, so its memory stays bounded by `SCAN_PAGE` whatever the collection's
//! size; after it yields an error it yields nothing more.

use std::iter::FusedIterator;

use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::Store;
use crate::collection::{Entry, Scan};
use crate::error::Result;
use crate::record::{PutOptions, Version};

/// A typed handle on one collection of a blocking store (see [`Store::collection`]): the
/// methods of [`crate::Collection`], each waiting for its result. Cheap to clone.
#[derive(Debug)]
pub struct Collection<T> {
    inner: crate::Collection<T>,
    store: Store,
}

impl<T> Clone for Collection<T> {
    fn clone(&self) -> Self {
        Collection {
            inner: self.inner.clone(),
            store: self.store.clone(),
        }
    }
}

impl<T> Collection<T> {
    /// A blocking handle on the async handle `inner` of `store`.
    pub(super) fn new(inner: crate::Collection<T>, store: Store) -> Self {
        Collection { inner, store }
    }
}

impl<T> Collection<T>
where
    T: Serialize + DeserializeOwned + Send + 'static,
{
    /// The collection's name.
    pub fn name(&self) -> &str {
        self.inner.name()
    }

    /// The async handle inside, for what this API does not mirror.
    pub fn inner(&self) -> &crate::Collection<T> {
        &self.inner
    }

    /// Stores `value` under `key`; returns the record's new version. As
    /// [`crate::Collection::put`].
    ///
    /// # Errors
    /// As [`crate::Store::store`]; `Error::BlockingInAsync` inside a tokio runtime.
    pub fn put(&self, key: &str, value: &T) -> Result<Version> {
        self.store.run("store a value", self.inner.put(key, value))
    }

    /// Stores `value` under `key` with `options`. As [`crate::Collection::put_with`].
    ///
    /// # Errors
    /// As [`crate::Store::store_if`]; `Error::BlockingInAsync` inside a tokio runtime.
    pub fn put_with(&self, key: &str, value: &T, options: PutOptions) -> Result<Version> {
        self.store
            .run("store a value", self.inner.put_with(key, value, options))
    }

    /// Stores `value` under `key`, to expire `ttl` from now. As
    /// [`crate::Collection::put_with_ttl`].
    ///
    /// # Errors
    /// As [`crate::Store::store`]; `Error::BlockingInAsync` inside a tokio runtime.
    pub fn put_with_ttl(&self, key: &str, value: &T, ttl: std::time::Duration) -> Result<Version> {
        self.store
            .run("store a value", self.inner.put_with_ttl(key, value, ttl))
    }

    /// The value under `key`, or `None`. As [`crate::Collection::get`].
    ///
    /// # Errors
    /// As [`crate::Store::retrieve`]; `Error::BlockingInAsync` inside a tokio runtime.
    pub fn get(&self, key: &str) -> Result<Option<T>> {
        self.store.run("retrieve a value", self.inner.get(key))
    }

    /// The values under several keys, in their order, read in one round trip and from one
    /// commit. As [`crate::Collection::get_many`].
    ///
    /// # Errors
    /// As [`crate::Collection::get_many`]; `Error::BlockingInAsync` inside a tokio runtime.
    pub fn get_many<I, K>(&self, keys: I) -> Result<Vec<Option<T>>>
    where
        I: IntoIterator<Item = K>,
        K: AsRef<str>,
    {
        self.store.run("retrieve values", self.inner.get_many(keys))
    }

    /// Replaces the value under `key` with `change(current)` (`None` in: there is none;
    /// `None` out: delete it), atomically: `change` runs again if the value changed
    /// meanwhile. Returns the value written. As [`crate::Collection::update`]; `change` runs
    /// on the calling thread.
    ///
    /// # Errors
    /// As [`crate::Store::transact`]; `Error::BlockingInAsync` inside a tokio runtime (then
    /// `change` does not run).
    pub fn update<F>(&self, key: &str, change: F) -> Result<Option<T>>
    where
        F: FnMut(Option<T>) -> Option<T>,
        T: Clone,
    {
        self.store
            .run("update a value", self.inner.update(key, change))
    }

    /// Deletes `key`; returns whether it existed. As [`crate::Collection::delete`].
    ///
    /// # Errors
    /// As [`crate::Store::delete`]; `Error::BlockingInAsync` inside a tokio runtime.
    pub fn delete(&self, key: &str) -> Result<bool> {
        self.store.run("delete a key", self.inner.delete(key))
    }

    /// Deletes every record whose key starts with `prefix`; returns how many. As
    /// [`crate::Collection::delete_prefix`], in transactions of `DELETE_BATCH` keys.
    ///
    /// # Errors
    /// As [`crate::Collection::delete_prefix`]; `Error::BlockingInAsync` inside a tokio
    /// runtime.
    pub fn delete_prefix(&self, prefix: &str) -> Result<u64> {
        self.store
            .run("delete a prefix", self.inner.delete_prefix(prefix))
    }

    /// Deletes every record of the collection; returns how many. As
    /// [`crate::Collection::clear`].
    ///
    /// # Errors
    /// As [`crate::Store::delete`]; `Error::BlockingInAsync` inside a tokio runtime.
    pub fn clear(&self) -> Result<u64> {
        self.store.run("clear a collection", self.inner.clear())
    }

    /// The records `scan` selects, as an iterator of entries in key order (or reversed),
    /// read in pages of `SCAN_PAGE` as it is walked. As [`crate::Collection::scan`].
    ///
    /// Each entry is checked like a `get`; an error ends the iteration after it is yielded.
    /// Inside a tokio runtime the first item is `Error::BlockingInAsync`, and nothing is read.
    pub fn scan(&self, scan: Scan) -> ScanIter<T> {
        ScanIter {
            stream: self.inner.scan(scan),
            store: self.store.clone(),
            is_done: false,
        }
    }
}

/// The entries of a scan ([`Collection::scan`]), read a page at a time as it is walked.
#[must_use = "a scan reads nothing until it is iterated"]
pub struct ScanIter<T> {
    stream: BoxStream<'static, Result<Entry<T>>>,
    store: Store,
    /// Whether the scan ended, or yielded an error.
    is_done: bool,
}

impl<T> std::fmt::Debug for ScanIter<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScanIter")
            .field("is_done", &self.is_done)
            .finish_non_exhaustive()
    }
}

impl<T> Iterator for ScanIter<T> {
    type Item = Result<Entry<T>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.is_done {
            return None;
        }
        let stream = &mut self.stream;
        let next = self
            .store
            .run("read a scan", async { stream.next().await.transpose() })
            .transpose();
        if !matches!(next, Some(Ok(_))) {
            self.is_done = true;
        }
        next
    }
}

impl<T> FusedIterator for ScanIter<T> {}
