//! The blocking API: the same [`Store`] and [`Collection`] without `async`, for code that runs
//! no tokio runtime of its own (a game loop, a Bevy system, a command-line tool, a test).
//!
//! A [`Store`] here owns a small tokio runtime (two worker threads, which keep the store's
//! background tasks running between calls) and an async [`crate::Store`]; each method waits,
//! on the caller's thread, for the async method of the same name. Reach for it when the
//! calling code is synchronous; in async code use [`crate::Store`], which never blocks a
//! thread.
//!
//! **Never call it from async code.** Waiting inside a tokio runtime would stall that
//! runtime's thread (tokio panics on it), so every method first checks that the calling
//! thread is outside any tokio runtime, and otherwise returns [`Error::BlockingInAsync`]
//! without doing anything. Code on tokio's own blocking threads (`spawn_blocking`) counts as
//! inside: use [`crate::Store`] with `Handle::block_on` there.
//!
//! - `store`: [`Store`] (open, close, the reads and writes, maintenance) and the runtime it
//!   owns.
//! - `collection`: [`Collection`], a typed handle, and [`ScanIter`], a scan as an iterator.
//! - `transaction`: [`Transaction`] (blind writes, all or nothing) and
//!   [`ReadWriteTransaction`], the handle a [`Store::transact`] closure reads and writes
//!   through.
//!
//! **Invariant:** no method blocks inside a tokio runtime or panics there: each checks first
//! and returns [`Error::BlockingInAsync`]; a `transact` closure runs on the caller's thread,
//! outside the runtime.
//!
//! [`Error::BlockingInAsync`]: crate::Error::BlockingInAsync

mod collection;
mod store;
mod transaction;

pub use collection::{Collection, ScanIter};
pub use store::Store;
pub use transaction::{ReadWriteTransaction, Transaction};
