//! The blocking [`Store`]: an async [`crate::Store`] and the runtime it runs on, shared by
//! every clone.
//!
//! **Invariant:** a method waits on the runtime only after `refuse_inside_runtime` found the
//! calling thread outside every tokio runtime; and the runtime is never dropped in a way that
//! blocks inside one (tokio panics on that), so the last handle may be dropped anywhere.

use std::future::Future;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::runtime::{Handle, Runtime};

use super::{Collection, ReadWriteTransaction, Transaction};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::maintenance::{MaintenanceOptions, MaintenanceReport};
use crate::record::{Expect, PutOptions, Record, Version};
use crate::stats::StatsSnapshot;
use crate::store::ListOptions;
use crate::verify::VerifyReport;

/// Worker threads of a blocking store's runtime. They run the store's background tasks
/// (statistics, maintenance, cache sweeps) and, on PostgreSQL, drive its connections; the
/// callers' own calls run on the callers' threads.
const WORKER_THREADS: usize = 2;

/// A handle to an open store for synchronous code: the methods of [`crate::Store`], each
/// waiting for its result on the calling thread.
///
/// Cheap to clone; clones share one store and one runtime, and may be used from several
/// threads at once. Every method returns [`Error::BlockingInAsync`] when called inside a
/// tokio runtime (see the [module docs](super)).
///
/// # Examples
/// ```
/// use strongbox::blocking::Store;
/// use strongbox::{Config, Scan};
///
/// # fn main() -> strongbox::Result<()> {
/// # let dir = tempfile::tempdir().map_err(|e| strongbox::Error::Io { action: "tempdir".into(), source: e })?;
/// let store = Store::open(Config::new(dir.path().join("game.db")))?;
/// store.store("chips", "alice", &1000u64)?;
/// assert_eq!(store.retrieve::<u64>("chips", "alice")?, Some(1000));
///
/// // Read, then write what depends on it: re-run if alice's chips changed meanwhile.
/// let paid = store.transact(|tx| {
///     let chips: u64 = tx.get("chips", "alice")?.unwrap_or(0);
///     if chips < 100 {
///         return Ok(false);
///     }
///     tx.put("chips", "alice", &(chips - 100))?;
///     Ok(true)
/// })?;
/// assert!(paid);
///
/// // A typed handle; a scan is an iterator, read in pages.
/// let chips = store.collection::<u64>("chips")?;
/// chips.update("bob", |bob| Some(bob.unwrap_or(0) + 100))?;
/// let mut total = 0;
/// for entry in chips.scan(Scan::all()) {
///     total += entry?.value;
/// }
/// assert_eq!(total, 1000);
/// store.close()
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Store {
    shared: Arc<Shared>,
}

/// What every clone of one blocking store shares. Fields drop in order: the store, then the
/// runtime its tasks ran on.
#[derive(Debug)]
struct Shared {
    store: crate::Store,
    runtime: OwnedRuntime,
}

/// The runtime, dropped without blocking when that happens inside another runtime.
#[derive(Debug)]
struct OwnedRuntime {
    handle: Handle,
    /// Taken only by `drop`.
    runtime: Option<Runtime>,
}

impl Drop for OwnedRuntime {
    fn drop(&mut self) {
        let Some(runtime) = self.runtime.take() else {
            return;
        };
        if Handle::try_current().is_ok() {
            // Waiting for the workers here would block an async thread, which tokio refuses
            // with a panic. Nothing acknowledged is lost: every call waited for its writes.
            runtime.shutdown_background();
        } else {
            drop(runtime);
        }
    }
}

/// `Error::BlockingInAsync` when the calling thread is inside a tokio runtime.
pub(super) fn refuse_inside_runtime(action: &'static str) -> Result<()> {
    if Handle::try_current().is_ok() {
        return Err(Error::BlockingInAsync { action });
    }
    Ok(())
}

impl Store {
    /// Starts a runtime and opens the store the configuration names on it, creating the
    /// database if needed. As [`crate::Store::open`].
    ///
    /// # Errors
    /// As [`crate::Store::open`]; `Error::Io` when the runtime's threads cannot be started;
    /// `Error::BlockingInAsync` inside a tokio runtime.
    pub fn open(config: Config) -> Result<Self> {
        refuse_inside_runtime("open a store")?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(WORKER_THREADS)
            .thread_name("strongbox-blocking")
            .enable_all()
            .build()
            .map_err(|source| Error::Io {
                action: "start the runtime of strongbox::blocking".to_owned(),
                source,
            })?;
        let store = runtime.block_on(crate::Store::open(config))?;
        Ok(Store {
            shared: Arc::new(Shared {
                store,
                runtime: OwnedRuntime {
                    handle: runtime.handle().clone(),
                    runtime: Some(runtime),
                },
            }),
        })
    }

    /// Saves pending read counts, commits what is queued and stops the writer, as
    /// [`crate::Store::close`]: the store is closed for every handle, clones included. The
    /// runtime stops with the last handle.
    ///
    /// # Errors
    /// As [`crate::Store::close`]; `Error::BlockingInAsync` inside a tokio runtime (the store
    /// is then left open).
    pub fn close(self) -> Result<()> {
        self.run("close the store", self.shared.store.close())
    }

    /// The async store inside, for what this API does not mirror; run its futures with
    /// [`Store::block_on`].
    pub fn inner(&self) -> &crate::Store {
        &self.shared.store
    }

    /// Waits for `future` on the calling thread, on the runtime the store runs on: for the
    /// async store's methods that this API does not mirror (backups, `copy_into`,
    /// `train_dictionaries`...), given [`Store::inner`].
    ///
    /// # Errors
    /// `future`'s error; `Error::BlockingInAsync` inside a tokio runtime (`future` is then
    /// dropped unpolled).
    pub fn block_on<T>(&self, future: impl Future<Output = Result<T>>) -> Result<T> {
        self.run("wait for a future", future)
    }

    /// Waits for `future` after checking that the calling thread is outside every runtime.
    pub(super) fn run<T>(
        &self,
        action: &'static str,
        future: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        refuse_inside_runtime(action)?;
        self.shared.runtime.handle.block_on(future)
    }

    /// The configuration the store was opened with.
    pub fn config(&self) -> &Config {
        self.shared.store.config()
    }

    /// Stores `value` under `key` and returns its new version. As [`crate::Store::store`].
    ///
    /// # Errors
    /// As [`crate::Store::store`]; `Error::BlockingInAsync` inside a tokio runtime.
    pub fn store<T: Serialize + ?Sized>(
        &self,
        collection: &str,
        key: &str,
        value: &T,
    ) -> Result<Version> {
        self.run(
            "store a value",
            self.shared.store.store(collection, key, value),
        )
    }

    /// Stores `value` if the current record meets `expect`. As [`crate::Store::store_if`].
    ///
    /// # Errors
    /// As [`crate::Store::store_if`]; `Error::BlockingInAsync` inside a tokio runtime.
    pub fn store_if<T: Serialize + ?Sized>(
        &self,
        collection: &str,
        key: &str,
        value: &T,
        expect: Expect,
    ) -> Result<Version> {
        self.run(
            "store a value",
            self.shared.store.store_if(collection, key, value, expect),
        )
    }

    /// Stores `value` with `options` (a condition, an expiry). As [`crate::Store::store_with`].
    ///
    /// # Errors
    /// As [`crate::Store::store_if`]; `Error::BlockingInAsync` inside a tokio runtime.
    pub fn store_with<T: Serialize + ?Sized>(
        &self,
        collection: &str,
        key: &str,
        value: &T,
        options: PutOptions,
    ) -> Result<Version> {
        self.run(
            "store a value",
            self.shared
                .store
                .store_with(collection, key, value, options),
        )
    }

    /// The value under `key`, or `None`. As [`crate::Store::retrieve`].
    ///
    /// # Errors
    /// As [`crate::Store::retrieve`]; `Error::BlockingInAsync` inside a tokio runtime.
    pub fn retrieve<T: DeserializeOwned>(&self, collection: &str, key: &str) -> Result<Option<T>> {
        self.run(
            "retrieve a value",
            self.shared.store.retrieve(collection, key),
        )
    }

    /// The value under `key` with its version and metadata. As
    /// [`crate::Store::retrieve_record`].
    ///
    /// # Errors
    /// As [`crate::Store::retrieve`]; `Error::BlockingInAsync` inside a tokio runtime.
    pub fn retrieve_record<T: DeserializeOwned>(
        &self,
        collection: &str,
        key: &str,
    ) -> Result<Option<Record<T>>> {
        self.run(
            "retrieve a record",
            self.shared.store.retrieve_record(collection, key),
        )
    }

    /// Deletes `key`; returns whether it existed. As [`crate::Store::delete`].
    ///
    /// # Errors
    /// As [`crate::Store::delete`]; `Error::BlockingInAsync` inside a tokio runtime.
    pub fn delete(&self, collection: &str, key: &str) -> Result<bool> {
        self.run("delete a key", self.shared.store.delete(collection, key))
    }

    /// Deletes `key` if it meets `expect`. As [`crate::Store::delete_if`].
    ///
    /// # Errors
    /// As [`crate::Store::delete_if`]; `Error::BlockingInAsync` inside a tokio runtime.
    pub fn delete_if(&self, collection: &str, key: &str, expect: Expect) -> Result<bool> {
        self.run(
            "delete a key",
            self.shared.store.delete_if(collection, key, expect),
        )
    }

    /// Whether `key` exists. As [`crate::Store::exists`].
    ///
    /// # Errors
    /// As [`crate::Store::exists`]; `Error::BlockingInAsync` inside a tokio runtime.
    pub fn exists(&self, collection: &str, key: &str) -> Result<bool> {
        self.run("look a key up", self.shared.store.exists(collection, key))
    }

    /// The current version of `key`, or `None`. As [`crate::Store::version`].
    ///
    /// # Errors
    /// As [`crate::Store::version`]; `Error::BlockingInAsync` inside a tokio runtime.
    pub fn version(&self, collection: &str, key: &str) -> Result<Option<Version>> {
        self.run("look a key up", self.shared.store.version(collection, key))
    }

    /// Keys of a collection in byte order. As [`crate::Store::list`].
    ///
    /// # Errors
    /// As [`crate::Store::list`]; `Error::BlockingInAsync` inside a tokio runtime.
    pub fn list(&self, collection: &str, options: ListOptions) -> Result<Vec<String>> {
        self.run("list keys", self.shared.store.list(collection, options))
    }

    /// Number of records in a collection. As [`crate::Store::count`].
    ///
    /// # Errors
    /// As [`crate::Store::count`]; `Error::BlockingInAsync` inside a tokio runtime.
    pub fn count(&self, collection: &str) -> Result<u64> {
        self.run("count records", self.shared.store.count(collection))
    }

    /// Names of the collections that hold a record. As [`crate::Store::collections`].
    ///
    /// # Errors
    /// As [`crate::Store::collections`]; `Error::BlockingInAsync` inside a tokio runtime.
    pub fn collections(&self) -> Result<Vec<String>> {
        self.run("list collections", self.shared.store.collections())
    }

    /// Deletes every record of `collection`; returns how many. As
    /// [`crate::Store::drop_collection`].
    ///
    /// # Errors
    /// As [`crate::Store::drop_collection`]; `Error::BlockingInAsync` inside a tokio runtime.
    pub fn drop_collection(&self, collection: &str) -> Result<u64> {
        self.run(
            "drop a collection",
            self.shared.store.drop_collection(collection),
        )
    }

    /// A typed handle on the collection `name`. As [`crate::Store::collection`].
    ///
    /// # Errors
    /// `Error::InvalidName` for a name that is not a valid collection name.
    pub fn collection<T>(&self, name: &str) -> Result<Collection<T>> {
        let inner = self.shared.store.collection(name)?;
        Ok(Collection::new(inner, self.clone()))
    }

    /// Starts a transaction of blind writes that commit together or not at all. As
    /// [`crate::Store::transaction`]; for writes that depend on reads, use
    /// [`Store::transact`].
    pub fn transaction(&self) -> Transaction {
        Transaction::new(self.shared.store.transaction(), self.clone())
    }

    /// Runs `body` as a serializable read-write transaction and returns what it returned. As
    /// [`crate::Store::transact`]: every key `body` read is checked at commit; if any changed,
    /// nothing is written and `body` runs again (up to `Config::transact_attempts` times,
    /// after a short jittered pause). An `Err` from `body` writes nothing and is returned
    /// without a retry (after its reads are checked, as there).
    ///
    /// `body` runs on the calling thread, outside the runtime, so it may do anything a
    /// synchronous function may, including other calls on this store.
    ///
    /// # Errors
    /// As [`crate::Store::transact`]; `Error::BlockingInAsync` inside a tokio runtime (then
    /// `body` does not run).
    pub fn transact<T, F>(&self, mut body: F) -> Result<T>
    where
        F: FnMut(&mut ReadWriteTransaction<'_>) -> Result<T>,
    {
        refuse_inside_runtime("run a transaction")?;
        let store = &self.shared.store;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut tx = crate::transact::ReadWriteTransaction::new(store.clone());
            let value = match body(&mut ReadWriteTransaction::new(&mut tx, self)) {
                Ok(value) => value,
                Err(error) => {
                    let pause = tx.after_error(attempt, error);
                    std::thread::sleep(self.run("check a transaction's reads", pause)?);
                    continue;
                }
            };
            match self.run("commit a transaction", tx.commit()) {
                Ok(()) => return Ok(value),
                Err(error) => std::thread::sleep(store.retry_pause(attempt, error)?),
            }
        }
    }

    /// A snapshot of the operation counters, latencies, cache and storage totals. As
    /// [`crate::Store::stats`].
    ///
    /// # Errors
    /// As [`crate::Store::stats`]; `Error::BlockingInAsync` inside a tokio runtime.
    pub fn stats(&self) -> Result<StatsSnapshot> {
        self.run("read statistics", self.shared.store.stats())
    }

    /// Runs the default maintenance. As [`crate::Store::maintenance`].
    ///
    /// # Errors
    /// As [`crate::Store::maintenance`]; `Error::BlockingInAsync` inside a tokio runtime.
    pub fn maintenance(&self) -> Result<MaintenanceReport> {
        self.run("run maintenance", self.shared.store.maintenance())
    }

    /// Runs maintenance with options. As [`crate::Store::maintenance_with`].
    ///
    /// # Errors
    /// As [`crate::Store::maintenance`]; `Error::BlockingInAsync` inside a tokio runtime.
    pub fn maintenance_with(&self, options: MaintenanceOptions) -> Result<MaintenanceReport> {
        self.run(
            "run maintenance",
            self.shared.store.maintenance_with(options),
        )
    }

    /// Checks the whole store (every blob against its hash, every record against its seal,
    /// every reference count) and reports what it found. As [`crate::Store::verify`].
    ///
    /// # Errors
    /// As [`crate::Store::verify`]; `Error::BlockingInAsync` inside a tokio runtime.
    pub fn verify(&self) -> Result<VerifyReport> {
        self.run("verify the store", self.shared.store.verify())
    }
}
