//! The storage engines and the plain data they trade in.
//!
//! **Boundary:** only this module speaks SQL. Everything above it hands over validated names,
//! encoded blobs and conditions, and gets back rows as plain data; no engine type leaves it.
//! Collection names and keys are always bound as parameters, never formatted into SQL text.
//!
//! - [`contract`]: what an engine does, as traits ([`Reads`], [`Writes`], [`Snapshots`],
//!   [`Checks`], [`Upkeep`], [`DictionaryStorage`], [`Feed`], and [`Engine`] for the rest); each means
//!   the same on both engines.
//! - [`types`]: the plain data of that contract.
//! - [`plan`]: the write rule (condition, next version, metadata, seal, which blob to reference
//!   and release), a pure function both engines execute; [`range`]: the same for a range a
//!   transaction scanned (phantoms included).
//! - [`dispatch`]: [`Backend`], the enum that picks the engine a store runs on.
//! - `sqlite/` and `postgres/`: the engines, one file per room (read, write, verify, ...).
//!
//! Both engines are held to the same behaviour by the conformance suite
//! (`tests/it/behaviour/`), which runs every behaviour against each.

mod contract;
mod dispatch;
mod plan;
#[cfg(feature = "postgres")]
mod postgres;
mod range;
mod sqlite;
mod types;

pub use contract::{Checks, DictionaryStorage, Engine, Feed, Reads, Snapshots, Upkeep, Writes};
pub(crate) use contract::{dictionary_clash, inconsistent_store};
pub use dispatch::Backend;
pub(crate) use range::RangeRow;
/// An embedded database file's companions and whether it is in use (SQLite's: a PostgreSQL
/// store has no files of its own).
pub use sqlite::{COMPANION_SUFFIXES, database_files, is_in_use};
pub use types::{
    AccessUpdate, BlobCursor, ChangedRecords, Checkpoint, FeedPage, FeedTrim, Invalidation,
    KeyRange, Measurement, OrphanSweep, RecordCheck, RefcountMismatch, ReplicaTotals, ScanRange,
    SnapshotItem, SnapshotRecord, StorageTotals, StoredDictionary, StoredRecord, WriteOp,
    WriteOutcome,
};
