//! The blocking [`Transaction`] (blind writes, all or nothing) and [`ReadWriteTransaction`],
//! the handle of a [`Store::transact`] closure.
//!
//! **Invariant:** both wrap the async types and add nothing to what reaches the database: a
//! `Transaction` writes only at `commit`, a `ReadWriteTransaction` only when its closure
//! returns `Ok` and every key it read is unchanged (see `crate::transact`).

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::Store;
use crate::collection::{Entry, Scan};
use crate::error::Result;
use crate::record::{Expect, Expiry, PutOptions, Version};

/// Writes that commit together or not at all, with their conditions checked at commit. As
/// [`crate::Transaction`], from [`Store::transaction`]; dropping it writes nothing.
#[derive(Debug)]
#[must_use = "a transaction writes nothing until it is committed"]
pub struct Transaction {
    inner: crate::Transaction,
    store: Store,
}

impl Transaction {
    /// A blocking transaction around `inner`, committed on `store`'s runtime.
    pub(super) fn new(inner: crate::Transaction, store: Store) -> Self {
        Transaction { inner, store }
    }

    /// Adds a store of `value` under `key`. As [`crate::Transaction::store`].
    ///
    /// # Errors
    /// `Error::InvalidName`, `Error::ValueTooLarge`, `Error::Serialization`; the transaction is
    /// unchanged then.
    pub fn store<T: Serialize + ?Sized>(
        &mut self,
        collection: &str,
        key: &str,
        value: &T,
    ) -> Result<&mut Self> {
        self.inner.store(collection, key, value)?;
        Ok(self)
    }

    /// Adds a conditional store, checked at commit. As [`crate::Transaction::store_if`].
    ///
    /// # Errors
    /// As [`Transaction::store`].
    pub fn store_if<T: Serialize + ?Sized>(
        &mut self,
        collection: &str,
        key: &str,
        value: &T,
        expect: Expect,
    ) -> Result<&mut Self> {
        self.inner.store_if(collection, key, value, expect)?;
        Ok(self)
    }

    /// Adds a store with `options` (a condition, an expiry). As
    /// [`crate::Transaction::store_with`].
    ///
    /// # Errors
    /// As [`Transaction::store`].
    pub fn store_with<T: Serialize + ?Sized>(
        &mut self,
        collection: &str,
        key: &str,
        value: &T,
        options: PutOptions,
    ) -> Result<&mut Self> {
        self.inner.store_with(collection, key, value, options)?;
        Ok(self)
    }

    /// Adds a delete of `key`. As [`crate::Transaction::delete`].
    ///
    /// # Errors
    /// `Error::InvalidName`.
    pub fn delete(&mut self, collection: &str, key: &str) -> Result<&mut Self> {
        self.inner.delete(collection, key)?;
        Ok(self)
    }

    /// Adds a conditional delete. As [`crate::Transaction::delete_if`].
    ///
    /// # Errors
    /// `Error::InvalidName`.
    pub fn delete_if(&mut self, collection: &str, key: &str, expect: Expect) -> Result<&mut Self> {
        self.inner.delete_if(collection, key, expect)?;
        Ok(self)
    }

    /// Number of writes added.
    pub fn len(&self) -> usize {
        self.inner.len()
    }

    /// Whether no write was added.
    pub fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }

    /// Applies every write atomically and durably; returns, for each write in order, the
    /// version it left (`None` for a delete). As [`crate::Transaction::commit`].
    ///
    /// # Errors
    /// As [`crate::Transaction::commit`]; `Error::BlockingInAsync` inside a tokio runtime
    /// (then nothing is written).
    pub fn commit(self) -> Result<Vec<Option<Version>>> {
        self.store.run("commit a transaction", self.inner.commit())
    }
}

/// The handle a [`Store::transact`] closure reads and writes through. As
/// [`crate::ReadWriteTransaction`]: reads see this transaction's own writes, and the version
/// of every key read is checked at commit.
#[derive(Debug)]
pub struct ReadWriteTransaction<'a> {
    inner: &'a mut crate::ReadWriteTransaction,
    store: &'a Store,
}

impl<'a> ReadWriteTransaction<'a> {
    /// A blocking handle on `inner`, whose reads wait on `store`'s runtime.
    pub(super) fn new(inner: &'a mut crate::ReadWriteTransaction, store: &'a Store) -> Self {
        ReadWriteTransaction { inner, store }
    }

    /// Reads the value under `key`: this transaction's own write if it made one, else the
    /// committed value. As [`crate::ReadWriteTransaction::get`].
    ///
    /// # Errors
    /// As [`crate::ReadWriteTransaction::get`]; `Error::BlockingInAsync` inside a tokio
    /// runtime.
    pub fn get<T: DeserializeOwned>(&mut self, collection: &str, key: &str) -> Result<Option<T>> {
        self.store
            .run("read in a transaction", self.inner.get(collection, key))
    }

    /// Reads the records `scan` selects, with this transaction's own writes in place; the
    /// whole range is checked at commit (phantoms included). As
    /// [`crate::ReadWriteTransaction::scan`].
    ///
    /// # Errors
    /// As [`crate::ReadWriteTransaction::scan`]; `Error::BlockingInAsync` inside a tokio
    /// runtime.
    pub fn scan<T: DeserializeOwned>(
        &mut self,
        collection: &str,
        scan: Scan,
    ) -> Result<Vec<Entry<T>>> {
        self.store
            .run("scan in a transaction", self.inner.scan(collection, scan))
    }

    /// Writes `value` under `key` when the transaction commits. As
    /// [`crate::ReadWriteTransaction::put`].
    ///
    /// # Errors
    /// `Error::InvalidName`, `Error::ValueTooLarge`, `Error::Serialization`: at the call, never
    /// at the commit.
    pub fn put<T: Serialize + ?Sized>(
        &mut self,
        collection: &str,
        key: &str,
        value: &T,
    ) -> Result<()> {
        self.inner.put(collection, key, value)
    }

    /// Writes `value` under `key` when the transaction commits, expiring as `expiry` says. As
    /// [`crate::ReadWriteTransaction::put_with`].
    ///
    /// # Errors
    /// As [`ReadWriteTransaction::put`].
    pub fn put_with<T: Serialize + ?Sized>(
        &mut self,
        collection: &str,
        key: &str,
        value: &T,
        expiry: Expiry,
    ) -> Result<()> {
        self.inner.put_with(collection, key, value, expiry)
    }

    /// Deletes `key` when the transaction commits. As [`crate::ReadWriteTransaction::delete`].
    ///
    /// # Errors
    /// `Error::InvalidName`, at the call.
    pub fn delete(&mut self, collection: &str, key: &str) -> Result<()> {
        self.inner.delete(collection, key)
    }
}
