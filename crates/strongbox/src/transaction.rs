//! [`Transaction`] and `Store::transaction`: several stores and deletes, across collections,
//! committed together.
//!
//! **Invariant:** a transaction holds only encoded writes; it reaches the backend once, at
//! `commit`, through the store's write path (so the cache is updated as for any write), and
//! dropping it writes nothing.

use std::time::Instant;

use serde::Serialize;

use crate::backend::{WriteOp, WriteOutcome};
use crate::error::Result;
use crate::record::{Expect, PutOptions, Version};
use crate::store::{Store, delete_op};
use crate::telemetry::Operation;

/// Writes that commit together or not at all, with their conditions checked at commit.
///
/// Values are validated and encoded when added, so a bad value fails at once. Nothing reaches
/// the database before [`Transaction::commit`]; dropping a transaction writes nothing.
///
/// ```no_run
/// # async fn transfer(store: &strongbox::Store) -> strongbox::Result<()> {
/// use strongbox::Expect;
/// let alice = store.retrieve_record::<i64>("balances", "alice").await?.expect("alice exists");
/// let bob = store.retrieve_record::<i64>("balances", "bob").await?.expect("bob exists");
/// let mut tx = store.transaction();
/// tx.store_if("balances", "alice", &(alice.value - 10), Expect::Version(alice.meta.version))?;
/// tx.store_if("balances", "bob", &(bob.value + 10), Expect::Version(bob.meta.version))?;
/// tx.commit().await?; // Error::Conflict if either balance changed meanwhile
/// # Ok(()) }
/// ```
#[derive(Debug)]
#[must_use = "a transaction writes nothing until it is committed"]
pub struct Transaction {
    store: Store,
    ops: Vec<WriteOp>,
}

impl Store {
    /// Starts a transaction: writes added to it commit together or not at all.
    pub fn transaction(&self) -> Transaction {
        Transaction::new(self.clone())
    }
}

impl Transaction {
    fn new(store: Store) -> Self {
        Transaction {
            store,
            ops: Vec::new(),
        }
    }

    /// Adds a store of `value` under `key`.
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
        self.store_if(collection, key, value, Expect::Any)
    }

    /// Adds a conditional store, checked at commit against the state left by the writes
    /// before it in this transaction.
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
        self.store_with(collection, key, value, PutOptions::new().expect(expect))
    }

    /// Adds a store with `options`: a condition, checked at commit as [`Transaction::store_if`]
    /// says, and an expiry (a time to live counts from this call).
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
        self.ops
            .push(self.store.encode_put(collection, key, value, options)?);
        Ok(self)
    }

    /// Adds a delete of `key` (nothing happens at commit when it is absent).
    ///
    /// # Errors
    /// `Error::InvalidName`.
    pub fn delete(&mut self, collection: &str, key: &str) -> Result<&mut Self> {
        self.delete_if(collection, key, Expect::Any)
    }

    /// Adds a conditional delete.
    ///
    /// # Errors
    /// `Error::InvalidName`.
    pub fn delete_if(&mut self, collection: &str, key: &str, expect: Expect) -> Result<&mut Self> {
        self.ops.push(delete_op(collection, key, expect)?);
        Ok(self)
    }

    /// Number of writes added.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Whether no write was added.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Applies every write atomically and durably. Returns, for each write in order, the
    /// version it left: the new version for a store, `None` for a delete.
    ///
    /// # Errors
    /// `Error::Conflict` for the first condition that failed (nothing is written), `Error::Busy`,
    /// `Error::Backend`.
    ///
    /// # Cancel safety
    /// Not cancel safe: once queued, the transaction commits even if the future is dropped.
    pub async fn commit(self) -> Result<Vec<Option<Version>>> {
        if self.ops.is_empty() {
            return Ok(Vec::new());
        }
        let started = Instant::now();
        let result = self.store.apply(self.ops).await.map(|outcomes| {
            outcomes
                .into_iter()
                .map(|outcome| match outcome {
                    WriteOutcome::Stored { meta, .. } => Some(meta.version),
                    WriteOutcome::Deleted(_) | WriteOutcome::Checked => None,
                })
                .collect()
        });
        self.store
            .recorder()
            .finish(Operation::Commit, started.elapsed(), &result);
        result
    }
}
