//! Test scaffolding: a store in a temporary directory.

use std::path::PathBuf;

use strongbox::{Config, Store};
use tempfile::TempDir;

/// A store on a fresh SQLite file, removed with the directory at the end of the test.
pub struct Harness {
    pub store: Store,
    pub dir: TempDir,
}

impl Harness {
    /// A store with the default configuration.
    pub async fn sqlite() -> Self {
        Self::sqlite_with(|_| {}).await
    }

    /// A store with a configuration adjusted by `adjust`.
    pub async fn sqlite_with(adjust: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::new(dir.path().join("test.db"));
        adjust(&mut config);
        let store = Store::open(config).await.unwrap();
        Harness { store, dir }
    }

    /// The database file.
    pub fn path(&self) -> PathBuf {
        self.store.config().path.clone()
    }

    /// Closes and reopens the store with the same configuration.
    pub async fn reopen(&mut self) {
        self.store.close().await.unwrap();
        self.store = Store::open(self.store.config().clone()).await.unwrap();
    }

    /// Closes the store, checking that it is still consistent.
    pub async fn finish(self) {
        let report = self.store.verify().await.unwrap();
        assert!(report.is_clean(), "{:?}", report.problems);
        self.store.close().await.unwrap();
    }
}
