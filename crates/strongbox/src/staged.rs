//! Writes of read-write transactions on their way to the engine, shown to the transactions of
//! this process that read the same keys meanwhile (see `transact`).
//!
//! A transaction that commits stages, for each key it read and then wrote, the value and the
//! version the key will have if its commit succeeds, and withdraws them once the commit is
//! decided (a guard does it, so a dropped commit withdraws too). A transaction that reads such
//! a key meanwhile reads the staged value and version instead of the committed ones. Without
//! this, every transaction that reads a hot key (a shared counter, a popular account) while a
//! write of it waits for its group commit reads the version being replaced and is bound to
//! conflict; with it, it is queued behind that write and commits in the same group.
//!
//! Only on an engine that applies a process's requests in the order they were sent (SQLite's
//! single writer): elsewhere a chained commit could reach the engine before the one it read
//! from, and would only conflict. There `Staged` is off and reads see committed data only.
//!
//! A failed commit dooms every staged write chained on it. Its withdrawal therefore removes
//! the key's staged value whatever commit staged it, if its version is at least the failed
//! one's, and a transaction whose staged source is known to have failed conflicts without
//! asking the engine (`Staged::has_failed`): chains of doomed values do not outlive the
//! commits in flight.
//!
//! **Invariant:** a staged value is a hint, never an answer. A transaction that read one
//! commits only if the engine finds the key at that version and pointing at that value, in
//! the same database transaction as its writes; the value is checked too because, if the
//! staging commit fails, another write may give the key the same version with another value.
//! A closure that fails after reading a staged value has its reads checked before its error
//! is returned (`transact`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::blob::{BlobId, EncodedBlob};
use crate::record::Version;

/// A (collection, key) pair.
type Key = (String, String);

/// A commit not decided yet.
const PENDING: u8 = 0;
/// A commit that succeeded.
const COMMITTED: u8 = 1;
/// A commit that failed (or was dropped).
const FAILED: u8 = 2;

/// What became of a staging commit, shared with the transactions that read its values.
#[derive(Debug)]
pub(crate) struct Outcome(AtomicU8);

impl Default for Outcome {
    fn default() -> Self {
        Outcome(AtomicU8::new(PENDING))
    }
}

impl Outcome {
    /// Whether the commit is known to have failed.
    pub(crate) fn has_failed(&self) -> bool {
        self.0.load(Ordering::Acquire) == FAILED
    }
}

/// What a staged write leaves under its key if it commits.
#[derive(Debug, Clone)]
pub(crate) enum StagedValue {
    /// A value (its blob and format tag) at this version.
    Put {
        /// The version the key will have.
        version: Version,
        /// The value, encoded as it will be stored.
        blob: Arc<EncodedBlob>,
        /// Its format tag.
        format: u8,
    },
    /// No record: the write deletes it.
    Absent,
}

impl StagedValue {
    /// The version a read of this value sees (`None`: absent).
    pub(crate) fn version(&self) -> Option<Version> {
        match self {
            StagedValue::Put { version, .. } => Some(*version),
            StagedValue::Absent => None,
        }
    }

    /// What a reader of it saw: its version and value id (`None`: absent).
    pub(crate) fn seen(&self) -> Option<(Version, BlobId)> {
        match self {
            StagedValue::Put { version, blob, .. } => Some((*version, blob.id)),
            StagedValue::Absent => None,
        }
    }

    /// The value and its format tag (`None`: absent).
    pub(crate) fn written(&self) -> Option<(&EncodedBlob, u8)> {
        match self {
            StagedValue::Put { blob, format, .. } => Some((blob, *format)),
            StagedValue::Absent => None,
        }
    }
}

/// A staged value as a reader gets it: the value, and the outcome of the commit staging it.
#[derive(Debug, Clone)]
pub(crate) struct StagedRead {
    /// The value.
    pub value: StagedValue,
    /// What became of the commit that staged it.
    pub outcome: Arc<Outcome>,
}

/// A key's staged value, with the commit that staged it.
#[derive(Debug)]
struct Entry {
    ticket: u64,
    read: StagedRead,
}

/// The staged writes of a store's transactions, newest per key.
#[derive(Debug)]
pub(crate) struct Staged {
    /// Whether writes are staged at all (see the module's documentation).
    is_on: bool,
    /// Each key's newest staged value.
    entries: Mutex<HashMap<Key, Entry>>,
    /// The next commit's ticket.
    next_ticket: AtomicU64,
}

impl Staged {
    /// Staged writes, on or off for good.
    pub(crate) fn new(is_on: bool) -> Self {
        Staged {
            is_on,
            entries: Mutex::default(),
            next_ticket: AtomicU64::new(0),
        }
    }

    /// Whether writes are staged in this store.
    pub(crate) fn is_on(&self) -> bool {
        self.is_on
    }

    /// The staged value of a key, if a commit in flight staged one.
    pub(crate) fn get(&self, collection: &str, key: &str) -> Option<StagedRead> {
        if !self.is_on {
            return None;
        }
        let entries = self.lock();
        if entries.is_empty() {
            return None;
        }
        entries
            .get(&(collection.to_owned(), key.to_owned()))
            .map(|entry| entry.read.clone())
    }

    /// Stages `writes` until the returned guard is settled or dropped (when their commit is
    /// decided).
    pub(crate) fn stage(&self, writes: Vec<(Key, StagedValue)>) -> Staging<'_> {
        let ticket = self.next_ticket.fetch_add(1, Ordering::Relaxed);
        let outcome = Arc::new(Outcome::default());
        let mut keys = Vec::new();
        if self.is_on && !writes.is_empty() {
            let mut entries = self.lock();
            for (key, value) in writes {
                let version = value.version();
                let read = StagedRead {
                    value,
                    outcome: Arc::clone(&outcome),
                };
                entries.insert(key.clone(), Entry { ticket, read });
                keys.push((key, version));
            }
        }
        Staging {
            staged: self,
            ticket,
            outcome,
            keys,
            is_committed: false,
        }
    }

    /// The map. A panic elsewhere while it was held left it whole: each change is one
    /// `insert` or `remove`.
    fn lock(&self) -> MutexGuard<'_, HashMap<Key, Entry>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Writes staged by one commit, withdrawn when it is dropped.
#[derive(Debug)]
pub(crate) struct Staging<'a> {
    staged: &'a Staged,
    ticket: u64,
    outcome: Arc<Outcome>,
    /// The keys staged, with the version each was staged at.
    keys: Vec<(Key, Option<Version>)>,
    is_committed: bool,
}

impl Staging<'_> {
    /// Records that the commit succeeded (else, when dropped, it counts as failed).
    pub(crate) fn committed(mut self) {
        self.is_committed = true;
    }
}

impl Drop for Staging<'_> {
    fn drop(&mut self) {
        let state = if self.is_committed { COMMITTED } else { FAILED };
        self.outcome.0.store(state, Ordering::Release);
        if self.keys.is_empty() {
            return;
        }
        let mut entries = self.staged.lock();
        for (key, version) in self.keys.drain(..) {
            let withdraw = entries.get(&key).is_some_and(|entry| {
                // After a failure, also what was staged on top of it (a later version).
                entry.ticket == self.ticket
                    || (!self.is_committed && entry.read.value.version() >= version)
            });
            if withdraw {
                entries.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests;
