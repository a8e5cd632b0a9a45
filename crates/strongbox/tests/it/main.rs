//! The library's integration tests: one binary, real SQLite files in temporary directories.

mod backup;
mod behaviour;
mod blocking;
mod cache;
#[cfg(feature = "postgres")]
mod cluster;
#[cfg(feature = "postgres")]
mod coherence;
mod common;
mod concurrency;
mod corruption;
mod dictionaries;
mod exhaustion;
mod feed_processes;
mod files;
mod integrity;
mod maintenance;
mod metrics;
mod model;
#[cfg(feature = "postgres")]
mod postgres;
mod processes;
mod read_only;
mod scan_memory;
mod under_load;
