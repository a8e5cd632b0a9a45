//! The in-memory read cache: moka, bounded in bytes, with TTL expiry, keyed by (collection, key).
//!
//! Entries hold values in their *stored* form (compressed), as the seed intended, so the cache
//! holds more; a hit costs a decompression, a BLAKE3 check and a deserialization, but no I/O
//! and no lock shared with other keys.
//!
//! **Invariant:** the cache never serves a value older than a write committed through this
//! process. Writes update (write-through) or remove (write-around) their keys only after the
//! commit, under a per-shard lock that also bumps the shard's sequence number; a read that
//! fetched from the database fills the cache only if its shard's sequence is unchanged since
//! before the fetch, so a slow read can never put back a value a write replaced meanwhile.
//! The same holds between writes: a write sets its key only if no other write touched the
//! shard between its sending and its commit (otherwise it drops the key), so racing writers
//! whose updates arrive in the other order than their commits never leave the older value.
//! Writes by other processes are seen after at most `cache_ttl_secs`.
//!
//! Hits, misses and evictions are counted for `Store::stats` and, as they happen, through the
//! `metrics` facade (`strongbox_cache_{hits,misses,evictions}_total`).

use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::blob::BlobId;
use crate::config::{CacheMode, Config};
use crate::record::RecordMeta;
use crate::telemetry::name;

/// Sequence-number shards: enough that unrelated keys rarely share one.
const SHARDS: usize = 64;

/// Bytes counted per entry besides its key and value: moka's node, the `Arc`, the metadata.
const ENTRY_OVERHEAD_BYTES: usize = 128;

/// A value as cached: the blob's stored bytes and the record's metadata.
#[derive(Debug)]
pub(crate) struct CachedValue {
    pub blob_id: BlobId,
    pub stored: Vec<u8>,
    pub format: u8,
    pub meta: RecordMeta,
}

/// A read's claim to fill the cache, taken before it queries the database.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FillTicket {
    shard: usize,
    sequence: u64,
}

/// Counters of the cache, as reported in `StatsSnapshot`.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct CacheStats {
    /// Reads served from the cache.
    pub hits: u64,
    /// Reads that went to the database.
    pub misses: u64,
    /// Entries removed because they expired or the byte bound was reached.
    pub evictions: u64,
    /// Entries now held.
    pub entries: u64,
    /// Weighted bytes now held.
    pub bytes: u64,
    /// The byte bound (`cache_capacity_bytes`).
    pub capacity_bytes: u64,
    /// `hits / (hits + misses)`, 0 before any read.
    pub hit_ratio: f64,
}

/// The cache of a store; a disabled cache (capacity 0) misses every time and holds nothing.
#[derive(Debug)]
pub(crate) struct Cache {
    entries: Option<moka::sync::Cache<String, Arc<CachedValue>>>,
    mode: CacheMode,
    capacity_bytes: u64,
    shards: Box<[Mutex<u64>]>,
    hasher: RandomState,
    hits: AtomicU64,
    misses: AtomicU64,
    evictions: Arc<AtomicU64>,
}

impl Cache {
    pub fn new(config: &Config) -> Self {
        let evictions = Arc::new(AtomicU64::new(0));
        let entries = (config.cache_capacity_bytes > 0).then(|| {
            let evictions = Arc::clone(&evictions);
            moka::sync::Cache::builder()
                .max_capacity(config.cache_capacity_bytes)
                .weigher(|key: &String, value: &Arc<CachedValue>| {
                    u32::try_from(key.len() + value.stored.len() + ENTRY_OVERHEAD_BYTES)
                        .unwrap_or(u32::MAX)
                })
                .time_to_live(Duration::from_secs(config.cache_ttl_secs))
                .eviction_listener(move |_key, _value, cause| {
                    if cause.was_evicted() {
                        evictions.fetch_add(1, Ordering::Relaxed);
                        metrics::counter!(name::CACHE_EVICTIONS).increment(1);
                    }
                })
                .build()
        });
        Cache {
            entries,
            mode: config.cache_mode,
            capacity_bytes: config.cache_capacity_bytes,
            shards: (0..SHARDS).map(|_| Mutex::new(0)).collect(),
            hasher: RandomState::new(),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            evictions,
        }
    }

    /// Whether the cache holds anything at all.
    pub fn is_enabled(&self) -> bool {
        self.entries.is_some()
    }

    /// Whether committed writes should put their values in the cache.
    pub fn is_write_through(&self) -> bool {
        self.is_enabled() && self.mode == CacheMode::WriteThrough
    }

    /// The cached value of a record, counting a hit or a miss.
    pub fn get(&self, collection: &str, key: &str) -> Option<Arc<CachedValue>> {
        let found = self
            .entries
            .as_ref()
            .and_then(|entries| entries.get(&cache_key(collection, key)));
        if found.is_some() {
            self.hits.fetch_add(1, Ordering::Relaxed);
            metrics::counter!(name::CACHE_HITS).increment(1);
        } else {
            self.misses.fetch_add(1, Ordering::Relaxed);
            metrics::counter!(name::CACHE_MISSES).increment(1);
        }
        found
    }

    /// Takes a ticket before fetching a record from the database.
    pub fn ticket(&self, collection: &str, key: &str) -> FillTicket {
        let shard = self.shard(collection, key);
        let sequence = self
            .shards
            .get(shard)
            .and_then(|lock| lock.lock().ok())
            .map_or(0, |sequence| *sequence);
        FillTicket { shard, sequence }
    }

    /// Caches a fetched record, unless a write touched its shard since the ticket was taken.
    pub fn fill(&self, ticket: FillTicket, collection: &str, key: &str, value: CachedValue) {
        let Some(entries) = &self.entries else { return };
        let Some(Ok(sequence)) = self.shards.get(ticket.shard).map(Mutex::lock) else {
            return;
        };
        if *sequence == ticket.sequence {
            entries.insert(cache_key(collection, key), Arc::new(value));
        }
    }

    /// Records a committed write: the new value (write-through) or its absence. `ticket` was
    /// taken before the write was sent; when another write touched the shard since, the two
    /// may have committed in either order while their updates arrive in the other, so the
    /// key is dropped rather than set (the next read fetches what committed last).
    pub fn written(
        &self,
        ticket: FillTicket,
        collection: &str,
        key: &str,
        value: Option<CachedValue>,
    ) {
        let Some(entries) = &self.entries else { return };
        let Some(Ok(mut sequence)) = self.shards.get(ticket.shard).map(Mutex::lock) else {
            // A poisoned shard cannot order fills; dropping everything keeps the invariant.
            entries.invalidate_all();
            return;
        };
        let is_alone = *sequence == ticket.sequence;
        *sequence = sequence.wrapping_add(1);
        let cache_key = cache_key(collection, key);
        match value.filter(|_| is_alone && self.mode == CacheMode::WriteThrough) {
            Some(value) => entries.insert(cache_key, Arc::new(value)),
            None => entries.invalidate(&cache_key),
        }
    }

    /// Drops a key: written here without its outcome known, or by another server.
    pub fn invalidate(&self, collection: &str, key: &str) {
        let Some(entries) = &self.entries else { return };
        let shard = self.shard(collection, key);
        let Some(Ok(mut sequence)) = self.shards.get(shard).map(Mutex::lock) else {
            entries.invalidate_all();
            return;
        };
        *sequence = sequence.wrapping_add(1);
        entries.invalidate(&cache_key(collection, key));
    }

    /// Drops every entry (writes by other servers may have been missed).
    pub fn clear(&self) {
        if let Some(entries) = &self.entries {
            for shard in self.shards.iter() {
                if let Ok(mut sequence) = shard.lock() {
                    *sequence = sequence.wrapping_add(1);
                }
            }
            entries.invalidate_all();
        }
    }

    /// Removes expired entries now and returns how many entries were evicted by it.
    pub fn sweep(&self) -> u64 {
        let Some(entries) = &self.entries else {
            return 0;
        };
        let before = self.evictions.load(Ordering::Relaxed);
        entries.run_pending_tasks();
        self.evictions
            .load(Ordering::Relaxed)
            .saturating_sub(before)
    }

    /// Current counters.
    pub fn stats(&self) -> CacheStats {
        let hits = self.hits.load(Ordering::Relaxed);
        let misses = self.misses.load(Ordering::Relaxed);
        // moka applies inserts and evictions lazily; settle them so the counts are current.
        let (entries, bytes) = self.entries.as_ref().map_or((0, 0), |entries| {
            entries.run_pending_tasks();
            (entries.entry_count(), entries.weighted_size())
        });
        CacheStats {
            hits,
            misses,
            evictions: self.evictions.load(Ordering::Relaxed),
            entries,
            bytes,
            capacity_bytes: self.capacity_bytes,
            hit_ratio: if hits + misses == 0 {
                0.0
            } else {
                hits as f64 / (hits + misses) as f64
            },
        }
    }

    fn shard(&self, collection: &str, key: &str) -> usize {
        let hash = self.hasher.hash_one((collection, key));
        usize::try_from(hash % SHARDS as u64).unwrap_or(0)
    }
}

/// NUL cannot occur in names, so it separates collection and key unambiguously.
fn cache_key(collection: &str, key: &str) -> String {
    let mut joined = String::with_capacity(collection.len() + key.len() + 1);
    joined.push_str(collection);
    joined.push('\0');
    joined.push_str(key);
    joined
}
