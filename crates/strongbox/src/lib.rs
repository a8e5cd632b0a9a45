//! Strongbox: typed, durable, compressed and deduplicated storage for Rust applications.
//!
//! Keep any serde value in a named collection by key. Strongbox serializes it, stores each
//! unique value once (content-addressed by BLAKE3), compresses it when that helps, commits it
//! durably to an embedded SQLite file, and verifies it against its hash on every read.
//!
//! ```
//! use serde::{Deserialize, Serialize};
//! use strongbox::{Config, Expect, ListOptions, Store};
//!
//! #[derive(Debug, PartialEq, Serialize, Deserialize)]
//! struct Player {
//!     name: String,
//!     chips: u64,
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> strongbox::Result<()> {
//! # let dir = tempfile::tempdir().map_err(|e| strongbox::Error::Io { action: "tempdir".into(), source: e })?;
//! let store = Store::open(Config::new(dir.path().join("game.db"))).await?;
//!
//! let alice = Player { name: "alice".into(), chips: 1000 };
//! let version = store.store("players", "alice", &alice).await?;
//! assert_eq!(store.retrieve::<Player>("players", "alice").await?, Some(alice));
//!
//! // Optimistic concurrency: this write only lands if nobody changed alice meanwhile.
//! let richer = Player { name: "alice".into(), chips: 1500 };
//! store.store_if("players", "alice", &richer, Expect::Version(version)).await?;
//!
//! // Several writes, across collections, commit together or not at all.
//! let mut tx = store.transaction();
//! tx.store("players", "bob", &Player { name: "bob".into(), chips: 500 })?;
//! tx.store("ledger", "0001", &("alice", "bob", 500))?;
//! tx.commit().await?;
//!
//! assert_eq!(store.list("players", ListOptions::all()).await?, ["alice", "bob"]);
//! assert!(store.verify().await?.is_clean());
//! store.close().await?;
//! # Ok(())
//! # }
//! ```
//!
//! Synchronous code that runs no tokio runtime (a game loop, a command-line tool) uses the
//! same API without `async` from [`blocking`].
//!
//! The map of the code is `ARCHITECTURE.md` at the root of the repository.

#![deny(clippy::unwrap_used)]
#![warn(clippy::expect_used)]

mod access;
mod backend;
pub mod backup;
pub mod blob;
pub mod blocking;
mod cache;
mod change;
mod clock;
pub mod codec;
mod coherence;
mod collection;
mod config;
mod dictionaries;
mod error;
mod expiry;
mod feed;
mod maintenance;
mod migrate;
pub mod name;
mod open;
mod record;
mod staged;
mod stats;
mod store;
mod tasks;
mod telemetry;
mod training;
mod training_trigger;
mod transact;
mod transaction;
mod verify;

pub use cache::CacheStats;
pub use change::{Change, ChangeKind};
pub use collection::{Collection, DELETE_BATCH, Entry, SCAN_PAGE, Scan};
pub use config::{CacheMode, Config, Durability, PostgresUrl};
pub use error::{BoxError, Error, ErrorKind, KeyProblem, Result};
pub use expiry::EXPIRY_BATCH;
pub use feed::{ChangeFilter, FEED_PAGE, FEED_POLL};
pub use maintenance::{MaintenanceOptions, MaintenanceReport, StepReport};
pub use migrate::CopySummary;
pub use record::{Expect, Expiry, PutOptions, Record, RecordMeta, Version};
pub use stats::{ReplicaStats, StatsSnapshot, StorageStats};
pub use store::{ListOptions, Store};
pub use telemetry::{OpStats, WriteStats, describe_metrics};
pub use training::{CollectionCompression, CompressionReport};
pub use transact::ReadWriteTransaction;
pub use transaction::Transaction;
pub use verify::{Problem, VerifyReport};
