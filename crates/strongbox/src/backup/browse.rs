//! Reading a backup without restoring it: [`Repository::records`] (its records, streamed) and
//! [`Repository::value`] (one value, verified and decoded).
//!
//! **Invariants:** everything returned went through the manifest reader's checks, and a value
//! through the checks a restore makes ([`super::check`]: read within bounds, decoded, hashed,
//! its size compared with the record's). A stream holds the repository lock shared on its
//! thread until it ends or is dropped, and its memory is bounded: one manifest line and a
//! bounded channel of records.

use futures_util::stream::{self, BoxStream, StreamExt};
use serde_json::Value;
use tokio::sync::mpsc;

use super::check::load_entry_blob;
use super::files::blocking;
use super::id::BackupId;
use super::index::Packs;
use super::manifest::{Entry, ManifestReader};
use super::options::BackupRef;
use super::pack::PackReader;
use super::repository::{LockMode, Repository};
use crate::blob;
use crate::codec::Format;
use crate::error::{Error, Result};
use crate::name::{validate_collection, validate_key};

/// Records a stream's thread may read ahead of its consumer.
const STREAM_AHEAD: usize = 256;

/// One record of a backup, as its manifest lists it (without its value).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BackupRecord {
    /// The record's collection.
    pub collection: String,
    /// The record's key.
    pub key: String,
    /// The record's version when the backup was taken.
    pub version: u64,
    /// The size of its serialized value, in bytes.
    pub size_bytes: u64,
    /// When the record was last written, in milliseconds since the Unix epoch.
    pub updated_at_ms: i64,
    /// When it expires, if it does (milliseconds since the Unix epoch).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at_ms: Option<i64>,
    /// The id of its value (the BLAKE3 hash of the serialized bytes, 64 hex digits): two
    /// records with the same id hold the same value.
    pub blob_id: String,
}

impl BackupRecord {
    pub(super) fn of(entry: &Entry) -> Self {
        BackupRecord {
            collection: entry.collection.clone(),
            key: entry.key.clone(),
            version: entry.meta.version.get(),
            size_bytes: entry.meta.size_bytes,
            updated_at_ms: entry.meta.updated_at_ms,
            expires_at_ms: entry.meta.expires_at_ms,
            blob_id: entry.blob_id.to_hex(),
        }
    }
}

/// A record of a backup with its value, as [`Repository::value`] returns it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct BackupValue {
    /// The record.
    pub record: BackupRecord,
    /// Its value, decoded (from JSON, or the record's serialization format) as JSON.
    pub value: Value,
}

impl Repository {
    /// The records of a backup (an id, or the newest readable one), in (collection, key) byte
    /// order, only those of `collection` when it is given; without their values. The
    /// manifest is read as the stream is polled, on a blocking thread that holds the lock
    /// shared; a damaged manifest ends the stream with its error after the records before
    /// the damage.
    ///
    /// # Errors
    /// As items of the stream: `Error::Io` when the backup does not exist, `Error::InvalidName`
    /// for an invalid collection name, `Error::Corrupt` for a damaged manifest,
    /// `Error::LockTimeout` when a prune holds the lock too long.
    ///
    /// # Cancel safety
    /// Dropping the stream stops the reading thread at its next record and releases the lock.
    pub fn records(
        &self,
        backup: &BackupRef,
        collection: Option<&str>,
    ) -> BoxStream<'static, Result<BackupRecord>> {
        let backup = backup.clone();
        let collection = collection.map(str::to_owned);
        produce(self, move |repository, send| {
            if let Some(collection) = &collection {
                validate_collection(collection)?;
            }
            let id = repository.resolve(&backup)?;
            let mut reader = ManifestReader::open(repository, &id)?;
            while let Some(entry) = reader.next_entry()? {
                match &collection {
                    Some(wanted) if entry.collection.as_bytes() < wanted.as_bytes() => continue,
                    // Records are in collection order: none of it comes later.
                    Some(wanted) if entry.collection != *wanted => break,
                    _ => send(BackupRecord::of(&entry))?,
                }
            }
            Ok(())
        })
    }

    /// The value of `collection`/`key` in a backup, verified as a restore verifies it and
    /// decoded; `None` when the backup does not hold the key. The whole manifest is read (and
    /// its checksum checked) before the value is, so that a forged line never serves another
    /// record's value.
    ///
    /// # Errors
    /// `Error::InvalidName` for an invalid collection name or key, `Error::Io` when the backup
    /// does not exist, `Error::Corrupt` when its manifest or the value is damaged (naming the
    /// record), `Error::LockTimeout` when a prune holds the lock too long.
    ///
    /// # Cancel safety
    /// Cancel safe: it only reads (a dropped call finishes on its thread).
    pub async fn value(
        &self,
        backup: &BackupRef,
        collection: &str,
        key: &str,
    ) -> Result<Option<BackupValue>> {
        validate_collection(collection)?;
        validate_key(key)?;
        let repository = self.clone();
        let (backup, wanted) = (backup.clone(), (collection.to_owned(), key.to_owned()));
        blocking(move || {
            let _lock = repository.lock(LockMode::Shared)?;
            let id = repository.resolve(&backup)?;
            let mut reader = ManifestReader::open(&repository, &id)?;
            let wanted_bytes = (wanted.0.as_bytes(), wanted.1.as_bytes());
            let mut found = None;
            while let Some(entry) = reader.next_entry()? {
                if (entry.collection.as_bytes(), entry.key.as_bytes()) == wanted_bytes {
                    found = Some(entry);
                }
            }
            // Read to the end: only a manifest whose checksum matched vouches for its line.
            let refs = reader.header().dictionaries.clone();
            found
                .map(|entry| repository.read_value(&id, &refs, &entry))
                .transpose()
        })
        .await
    }

    /// The value of `entry`, read from its pack, verified and decoded as JSON.
    fn read_value(
        &self,
        id: &BackupId,
        refs: &[super::manifest::DictionaryRef],
        entry: &Entry,
    ) -> Result<BackupValue> {
        let (collection, key, blob_id) = (&entry.collection, &entry.key, entry.blob_id);
        let dictionaries = self.read_dictionaries(id, refs)?;
        let packs = Packs::load(self)?;
        let size_bytes = entry.meta.size_bytes;
        let (stored, _) = load_entry_blob(
            self,
            &mut PackReader::default(),
            &packs,
            entry,
            &dictionaries,
        )?;
        let limit = usize::try_from(size_bytes).unwrap_or(usize::MAX);
        let raw = blob::decode_verified(&blob_id, &stored, limit, &dictionaries)
            .map_err(|error| Error::corrupt_at(collection, key, error.to_string()))?;
        let format = Format::from_tag(entry.format).ok_or_else(|| {
            Error::corrupt_at(collection, key, format!("unknown format {}", entry.format))
        })?;
        let value = format
            .deserialize::<Value>(&raw)
            .map_err(|error| Error::Serialization {
                action: "deserialize",
                collection: collection.clone(),
                key: key.clone(),
                source: error.into(),
            })?;
        Ok(BackupValue {
            record: BackupRecord::of(entry),
            value,
        })
    }
}

/// A stream of what `work` sends, run on a blocking thread (started when the stream is first
/// polled) holding the repository lock shared. `work`'s error ends the stream; so does the
/// stream's drop, which makes `send` fail with `Error::Closed`.
pub(super) fn produce<T, F>(repository: &Repository, work: F) -> BoxStream<'static, Result<T>>
where
    T: Send + 'static,
    F: FnOnce(&Repository, &dyn Fn(T) -> Result<()>) -> Result<()> + Send + 'static,
{
    enum State<F, T> {
        Idle(Repository, F),
        Running(mpsc::Receiver<Result<T>>),
    }
    let start = State::Idle(repository.clone(), work);
    stream::unfold(start, |state| async move {
        let mut received = match state {
            State::Running(received) => received,
            State::Idle(repository, work) => {
                let (sender, received) = mpsc::channel(STREAM_AHEAD);
                tokio::task::spawn_blocking(move || {
                    let send = |item: T| sender.blocking_send(Ok(item)).map_err(|_| Error::Closed);
                    let done = repository
                        .lock(LockMode::Shared)
                        .and_then(|_lock| work(&repository, &send));
                    if let Err(error) = done
                        && !matches!(error, Error::Closed)
                    {
                        // The consumer may be gone; then nobody needs the error.
                        let _ = sender.blocking_send(Err(error));
                    }
                });
                received
            }
        };
        let item = received.recv().await?;
        Some((item, State::Running(received)))
    })
    .boxed()
}
