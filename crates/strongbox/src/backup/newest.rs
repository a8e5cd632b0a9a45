//! How old a repository's newest backup is, for the `strongbox_backup_age_seconds` gauge.
//!
//! Only the manifests' headers are read, newest first, so that refreshing the gauge costs one
//! small read however large the backups are (a whole read is `verify`'s job).

use super::Repository;
use super::files::blocking;
use super::manifest::ManifestReader;
use super::repository::LockMode;
use crate::error::Result;

impl Repository {
    /// When the newest backup whose manifest opens was taken, in milliseconds since the Unix
    /// epoch; `None` when the repository holds no such backup.
    ///
    /// # Errors
    /// `Error::Io` when the directory cannot be read, `Error::Corrupt` when its layout is
    /// damaged.
    pub(crate) async fn newest_backup_ms(&self) -> Result<Option<i64>> {
        let repository = self.clone();
        blocking(move || {
            let _lock = repository.lock(LockMode::Shared)?;
            let newest = repository
                .manifest_ids()?
                .iter()
                .rev()
                .find_map(|id| ManifestReader::open(&repository, id).ok())
                .map(|reader| reader.header().created_at_ms);
            Ok(newest)
        })
        .await
    }
}
