//! Read-write transactions: [`Store::transact`] runs a closure that reads and writes, and
//! commits it only if nothing it read changed meanwhile, else runs it again.
//!
//! A [`ReadWriteTransaction`] buffers its writes (its reads see them) and remembers the version
//! and value id of every key it read (`None`: absent) and the keys, versions and value ids of
//! every range it scanned. At commit each read becomes a `WriteOp::Check`, each scan a
//! `WriteOp::CheckRange` (so a key inserted into a scanned range conflicts: no phantoms), and
//! each write of a key read carries the version and value read as its condition (the version
//! alone is not enough: a key deleted and created again starts again at version 1), all in
//! one batch: the engine checks them in the same database transaction as the writes (on
//! SQLite inside the group commit; on PostgreSQL at SERIALIZABLE), so a committed transaction
//! is serializable. A check that fails is `Error::Conflict`, and the closure runs again after
//! a jittered pause.
//!
//! While its commit waits for the engine, a transaction stages what it read and wrote
//! (`crate::staged`), and a transaction of the same store reading such a key reads the staged
//! value, checked like any read. Hot keys thus chain in one group commit.
//!
//! **Invariant:** nothing a closure writes reaches the database unless every key it read
//! still holds the version and the value it saw and every range it scanned still holds the
//! keys, versions and values it saw; a closure that fails or panics writes nothing.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use crate::backend::{RangeRow, ScanRange, WriteOp};
use crate::blob::{BlobId, EncodedBlob};
use crate::clock::now_ms;
use crate::error::{Error, Result};
use crate::name::{validate_collection, validate_key};
use crate::record::{Expect, Expiry, Version};
use crate::staged::{StagedRead, StagedValue};
use crate::store::Store;
use crate::telemetry::Operation;

mod read;
#[cfg(test)]
mod tests;

/// A (collection, key) pair.
type Key = (String, String);

/// A range a transaction scanned: its collection, the range with the limit it was read with,
/// and the rows read.
type RangeRead = (String, ScanRange, Vec<RangeRow>);

/// A write waiting for the commit.
#[derive(Debug)]
enum Pending {
    /// The new value, encoded.
    Put {
        /// The value's blob.
        blob: EncodedBlob,
        /// Its format tag.
        format: u8,
        /// When it expires (`None`: never).
        expires_at_ms: Option<i64>,
    },
    /// A delete.
    Delete,
}

impl Pending {
    /// The value written and its format tag (`None`: a delete).
    fn written(&self) -> Option<(&EncodedBlob, u8)> {
        match self {
            Pending::Put { blob, format, .. } => Some((blob, *format)),
            Pending::Delete => None,
        }
    }
}

/// The handle a [`Store::transact`] closure reads and writes through.
///
/// Reads return committed data, or this transaction's own earlier writes; writes are kept until
/// the closure returns `Ok`, and then committed together with the check of every read.
#[derive(Debug)]
pub struct ReadWriteTransaction {
    store: Store,
    /// What each key held when first read: its version and value id (`None`: absent). The
    /// commit checks both, since a key deleted and created again starts again at version 1.
    reads: BTreeMap<Key, Option<(Version, BlobId)>>,
    /// The last write of each key, with the order keys were first written in.
    writes: BTreeMap<Key, (usize, Pending)>,
    /// Each range scanned.
    ranges: Vec<RangeRead>,
    /// The keys first read from another transaction's staged write (`crate::staged`), with
    /// what was read: later reads repeat it, and the commit checks the value too.
    staged_reads: BTreeMap<Key, StagedRead>,
}

impl ReadWriteTransaction {
    /// A transaction that has read and written nothing yet.
    pub(crate) fn new(store: Store) -> Self {
        ReadWriteTransaction {
            store,
            reads: BTreeMap::new(),
            writes: BTreeMap::new(),
            ranges: Vec::new(),
            staged_reads: BTreeMap::new(),
        }
    }

    /// Writes `value` under `key` when the transaction commits.
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
        self.put_with(collection, key, value, Expiry::Never)
    }

    /// Writes `value` under `key` when the transaction commits, expiring as `expiry` says (a
    /// time to live counts from this call). Reads later in this transaction see the value
    /// whatever its expiry.
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
        let (blob, format) = self.store.encode_value(collection, key, value)?;
        let expires_at_ms = expiry.instant_ms(now_ms());
        let pending = Pending::Put {
            blob,
            format,
            expires_at_ms,
        };
        self.stage(collection, key, pending);
        Ok(())
    }

    /// Deletes `key` when the transaction commits.
    ///
    /// # Errors
    /// `Error::InvalidName`, at the call.
    pub fn delete(&mut self, collection: &str, key: &str) -> Result<()> {
        validate_collection(collection)?;
        validate_key(key)?;
        self.stage(collection, key, Pending::Delete);
        Ok(())
    }

    fn stage(&mut self, collection: &str, key: &str, pending: Pending) {
        let order = self.writes.len();
        match self.writes.entry((collection.to_owned(), key.to_owned())) {
            std::collections::btree_map::Entry::Occupied(mut written) => {
                written.get_mut().1 = pending
            }
            std::collections::btree_map::Entry::Vacant(new) => {
                new.insert((order, pending));
            }
        }
    }

    /// What this transaction's commit stages for the transactions reading after it: each key
    /// it read and then wrote, with the version the write gives it (one more than the
    /// version read; the first for a key read absent). A write with an expiry, or of a key not
    /// read, is not staged: its version or its lifetime is not known in advance.
    fn stageable(&self) -> Vec<(Key, StagedValue)> {
        if !self.store.staged().is_on() {
            return Vec::new();
        }
        self.writes
            .iter()
            .filter_map(|(name, (_, pending))| {
                let read = self.reads.get(name)?;
                let value = match pending {
                    Pending::Delete => StagedValue::Absent,
                    Pending::Put {
                        blob,
                        format,
                        expires_at_ms: None,
                    } => StagedValue::Put {
                        version: read.map_or(Version::FIRST, |(version, _)| version.next()),
                        blob: std::sync::Arc::new(blob.clone()),
                        format: *format,
                    },
                    Pending::Put { .. } => return None,
                };
                Some((name.clone(), value))
            })
            .collect()
    }

    /// The batch that commits this transaction: a check of every range scanned, then of every
    /// key read and not written, then the writes in the order their keys were first written.
    /// A key read is checked, or written, on the version and the value read; a key written
    /// without being read, on nothing.
    fn into_ops(self) -> Vec<WriteOp> {
        let expect_of = |read: Option<&Option<(Version, BlobId)>>| match read {
            None => (Expect::Any, None),
            Some(None) => (Expect::Absent, None),
            Some(Some((version, blob_id))) => (Expect::Version(*version), Some(*blob_id)),
        };
        let ranges = self
            .ranges
            .into_iter()
            .map(|(collection, range, seen)| WriteOp::CheckRange {
                collection,
                range,
                seen,
            });
        let mut ops: Vec<WriteOp> = ranges.collect();
        ops.extend(
            self.reads
                .iter()
                .filter(|(name, _)| !self.writes.contains_key(*name))
                .map(|(name, read)| {
                    let (expect, expect_value) = expect_of(Some(read));
                    WriteOp::Check {
                        collection: name.0.clone(),
                        key: name.1.clone(),
                        expect,
                        expect_value,
                    }
                }),
        );
        let mut writes: Vec<(Key, (usize, Pending))> = self.writes.into_iter().collect();
        writes.sort_by_key(|(_, (order, _))| *order);
        for ((collection, key), (_, pending)) in writes {
            let (expect, expect_value) =
                expect_of(self.reads.get(&(collection.clone(), key.clone())));
            ops.push(match pending {
                Pending::Put {
                    blob,
                    format,
                    expires_at_ms,
                } => WriteOp::Put {
                    collection,
                    key,
                    blob,
                    format,
                    expect,
                    expect_value,
                    expires_at_ms,
                },
                Pending::Delete => WriteOp::Delete {
                    collection,
                    key,
                    expect,
                    expect_value,
                },
            });
        }
        ops
    }
}

impl Store {
    /// Runs `body` as a serializable read-write transaction and returns what it returned.
    ///
    /// Every key `body` read, and every range it scanned, is checked at commit (version and
    /// value), in the same database transaction as its writes; if any changed (a key inserted
    /// into a scanned range, or deleted and created again, included), nothing is written and
    /// `body` runs again (up to
    /// [`Config::transact_attempts`](crate::Config::transact_attempts) times, after a short
    /// jittered pause). An `Err` from `body` writes nothing and is returned without a retry
    /// (once its reads are checked, if it read a value another transaction of this store was
    /// committing: were that one to fail, `body` runs again instead). A key that such a
    /// transaction is committing reads as it will be, so transactions on a hot key follow
    /// each other in one group commit rather than conflict. A `body` that only reads writes
    /// nothing: its reads are checked together, and it runs again if they were torn by a
    /// concurrent commit, so what it returns comes from one consistent state. Reach for this whenever a write depends on what was read;
    /// [`Store::store`] and [`Store::transaction`] remain for blind writes.
    ///
    /// Inside `tokio::spawn`, a closure that uses local variables is written `async move |tx|`
    /// (it then owns them and lends them to each run): today's compiler cannot prove a
    /// borrowing closure's future `Send` for every lifetime of `tx`.
    ///
    /// # Errors
    /// `Error::Conflict` when the reads kept changing through every attempt, `body`'s own
    /// error, and the errors of the reads and writes it made.
    ///
    /// # Cancel safety
    /// Not cancel safe: once the commit is queued, it may land even if the future is dropped.
    ///
    /// # Examples
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> strongbox::Result<()> {
    /// # let dir = tempfile::tempdir().map_err(|e| strongbox::Error::Io { action: "tmp".into(), source: e })?;
    /// let store = strongbox::Store::open(strongbox::Config::new(dir.path().join("t.db"))).await?;
    /// store.store("balances", "alice", &100u64).await?;
    /// let moved = store
    ///     .transact(async |tx| {
    ///         let from: u64 = tx.get("balances", "alice").await?.unwrap_or_default();
    ///         let to: u64 = tx.get("balances", "bob").await?.unwrap_or_default();
    ///         if from < 30 {
    ///             return Ok(false);
    ///         }
    ///         tx.put("balances", "alice", &(from - 30))?;
    ///         tx.put("balances", "bob", &(to + 30))?;
    ///         Ok(true)
    ///     })
    ///     .await?;
    /// assert!(moved);
    /// assert_eq!(store.retrieve::<u64>("balances", "bob").await?, Some(30));
    /// # store.close().await
    /// # }
    /// ```
    pub async fn transact<T, F>(&self, mut body: F) -> Result<T>
    where
        F: AsyncFnMut(&mut ReadWriteTransaction) -> Result<T>,
    {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut tx = ReadWriteTransaction::new(self.clone());
            let value = match body(&mut tx).await {
                Ok(value) => value,
                Err(error) => {
                    tokio::time::sleep(tx.after_error(attempt, error).await?).await;
                    continue;
                }
            };
            match tx.commit().await {
                Ok(()) => return Ok(value),
                Err(error) => match self.retry_pause(attempt, error) {
                    Ok(pause) => tokio::time::sleep(pause).await,
                    Err(error) => return Err(error),
                },
            }
        }
    }

    /// What follows a failed commit of attempt `attempt`: the pause before the next attempt
    /// when `error` is a conflict and attempts remain, else `error` itself.
    pub(crate) fn retry_pause(&self, attempt: u32, error: Error) -> Result<Duration> {
        match error {
            Error::Conflict { .. } if attempt < self.config().transact_attempts => {
                Ok(backoff(attempt))
            }
            error => Err(error),
        }
    }
}

impl ReadWriteTransaction {
    /// Commits what the transaction wrote together with the check of everything it read; a
    /// transaction that read and wrote nothing commits nothing.
    ///
    /// # Errors
    /// `Error::Conflict` when something it read changed, and the errors of a write.
    pub(crate) async fn commit(self) -> Result<()> {
        let store = self.store.clone();
        if let Some(conflict) = self.doomed() {
            return Err(conflict);
        }
        let staged = self.stageable();
        let ops = self.into_ops();
        if ops.is_empty() {
            return Ok(());
        }
        let started = std::time::Instant::now();
        // Withdrawn when the commit is decided, or dropped.
        let staging = store.staged().stage(staged);
        let committed = store.apply(ops).await;
        if committed.is_ok() {
            staging.committed();
        } else {
            drop(staging);
        }
        store
            .recorder()
            .finish(Operation::Commit, started.elapsed(), &committed);
        committed.map(drop)
    }

    /// The conflict of a transaction that read a staged write whose commit is known to have
    /// failed: its check would fail, so it is not sent.
    fn doomed(&self) -> Option<Error> {
        self.staged_reads
            .iter()
            .find(|(_, read)| read.outcome.has_failed())
            .map(|((collection, key), read)| Error::Conflict {
                collection: collection.clone(),
                key: key.clone(),
                expected: read.value.version().map_or(Expect::Absent, Expect::Version),
                actual: None,
            })
    }
}

impl ReadWriteTransaction {
    /// What follows attempt `attempt` when its closure returned `error`: the pause before
    /// the next attempt, or the error to return. An error stands at once, unless the closure
    /// read a staged write (`crate::staged`): what it failed on may then never have been
    /// committed, so its reads are checked first, and if they do not hold it runs again (or,
    /// its attempts spent, the conflict is returned).
    ///
    /// # Errors
    /// `error`, or the conflict or engine error of the check.
    pub(crate) async fn after_error(mut self, attempt: u32, error: Error) -> Result<Duration> {
        if self.staged_reads.is_empty() {
            return Err(error);
        }
        let store = self.store.clone();
        self.writes.clear();
        match self.commit().await {
            Ok(()) => Err(error),
            Err(conflict) => store.retry_pause(attempt, conflict),
        }
    }
}

/// A pause before attempt `attempt + 1`: up to 2^attempt × 50 µs (at most about 50 ms),
/// jittered so that transactions that collided do not collide again in step.
fn backoff(attempt: u32) -> Duration {
    let ceiling_micros = 50u64 << attempt.min(10);
    let jitter = std::hash::BuildHasher::hash_one(
        &std::hash::RandomState::new(),
        (attempt, std::time::Instant::now()),
    );
    Duration::from_micros(jitter % ceiling_micros.max(1))
}
