//! Read counts (`RecordMeta::access_count`, `last_accessed_ms`): gathered in memory and handed to
//! the backend in batches, so that a read never becomes a write.
//!
//! **Invariant:** counting a read takes one short lock (of 16) and no I/O; counts reach the database
//! when enough records were read, at every statistics report, and at `Store::close`. Counts
//! gathered since the last flush are lost if the process dies: they are statistics, not data.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::backend::AccessUpdate;
use crate::clock::now_ms;

/// Reads are handed on once this many distinct records were read.
const FLUSH_RECORDS: usize = 65_536;

/// Independent locks, so that concurrent readers rarely wait for each other.
const SHARDS: usize = 16;

/// Reads since the last flush: collection → key → (reads, last read time in ms).
type Reads = HashMap<String, HashMap<String, (u64, i64)>>;

/// Reads since the last flush.
#[derive(Debug, Default)]
pub(crate) struct AccessLog {
    /// Sharded by key; a record already read allocates nothing when read again.
    shards: [Mutex<Reads>; SHARDS],
    /// Distinct records counted since the last flush (approximate across shards).
    records: AtomicUsize,
}

impl AccessLog {
    /// Counts a read; returns whether enough records were read that they should be flushed.
    pub fn note(&self, collection: &str, key: &str) -> bool {
        let now = now_ms();
        let Some(Ok(mut reads)) = self.shards.get(shard_of(key)).map(Mutex::lock) else {
            return false;
        };
        let keys = match reads.get_mut(collection) {
            Some(keys) => keys,
            None => reads.entry(collection.to_owned()).or_default(),
        };
        match keys.get_mut(key) {
            Some(entry) => {
                entry.0 += 1;
                entry.1 = now;
                false
            }
            None => {
                keys.insert(key.to_owned(), (1, now));
                self.records.fetch_add(1, Ordering::Relaxed) + 1 >= FLUSH_RECORDS
            }
        }
    }

    /// The reads gathered so far, leaving none.
    pub fn take(&self) -> Vec<AccessUpdate> {
        let mut updates = Vec::new();
        for shard in &self.shards {
            let Ok(mut reads) = shard.lock() else {
                continue;
            };
            for (collection, keys) in reads.drain() {
                updates.extend(keys.into_iter().map(|(key, (reads, last_accessed_ms))| {
                    AccessUpdate {
                        collection: collection.clone(),
                        key,
                        reads,
                        last_accessed_ms,
                    }
                }));
            }
        }
        self.records.store(0, Ordering::Relaxed);
        updates
    }
}

/// FNV-1a of the key, to pick a shard: cheap, and keys spread well enough.
fn shard_of(key: &str) -> usize {
    let hash = key.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    });
    (hash % SHARDS as u64) as usize
}
