//! Read counts (`RecordMeta::access_count`, `last_accessed_ms`): gathered in memory and handed to
//! the backend in batches, so that a read never becomes a write.
//!
//! **Invariant:** counting a read takes one short lock and no I/O; counts reach the database
//! when enough records were read, at every statistics report, and at `Store::close`. Counts
//! gathered since the last flush are lost if the process dies: they are statistics, not data.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::backend::AccessUpdate;

/// Reads are handed on once this many distinct records were read.
const FLUSH_RECORDS: usize = 65_536;

/// Reads since the last flush.
#[derive(Debug, Default)]
pub(crate) struct AccessLog {
    /// By `collection NUL key` (NUL cannot occur in names): (reads, last read time in ms).
    reads: Mutex<HashMap<String, (u64, i64)>>,
}

impl AccessLog {
    /// Counts a read; returns whether enough records were read that they should be flushed.
    pub fn note(&self, collection: &str, key: &str) -> bool {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| {
                i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)
            });
        let mut name = String::with_capacity(collection.len() + key.len() + 1);
        name.push_str(collection);
        name.push('\0');
        name.push_str(key);
        let Ok(mut reads) = self.reads.lock() else {
            return false;
        };
        let entry = reads.entry(name).or_insert((0, 0));
        entry.0 += 1;
        entry.1 = now;
        reads.len() >= FLUSH_RECORDS
    }

    /// The reads gathered so far, leaving none.
    pub fn take(&self) -> Vec<AccessUpdate> {
        let Ok(mut reads) = self.reads.lock() else {
            return Vec::new();
        };
        reads
            .drain()
            .filter_map(|(name, (reads, last_accessed_ms))| {
                let (collection, key) = name.split_once('\0')?;
                Some(AccessUpdate {
                    collection: collection.to_owned(),
                    key: key.to_owned(),
                    reads,
                    last_accessed_ms,
                })
            })
            .collect()
    }
}
