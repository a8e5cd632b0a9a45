//! A manifest file as it is stored: its zstd frame as it is in a plain repository, sealed
//! whole in an encrypted one. [`ManifestSink`] is what the manifest writer's encoder writes
//! into, [`ManifestSource`] what the reader's decoder reads from.
//!
//! **Invariants:** in an encrypted repository no manifest byte reaches the disk unsealed (the
//! frame is built in memory and sealed when the manifest is finished), and the reader sees no
//! byte of a manifest that failed authentication. A sealed manifest is read whole, so it is
//! bounded ([`MAX_SEALED_MANIFEST_BYTES`]); a version-3 manifest lists chunks, about 40 bytes
//! of frame for every 8 records, so that bound is tens of millions of records.

use std::fs::File;
use std::io::{self, BufWriter, Cursor, Read, Write};
use std::sync::Arc;

use super::crypt::Crypt;
use super::repository::Repository;

/// The largest sealed manifest read.
const MAX_SEALED_MANIFEST_BYTES: u64 = 1 << 30;

/// Where a manifest's frame goes.
pub(crate) enum ManifestSink {
    /// Straight to its file.
    Plain(BufWriter<File>),
    /// Into memory, sealed into its file when finished.
    Sealed {
        file: File,
        frame: Vec<u8>,
        crypt: Arc<Crypt>,
    },
}

impl ManifestSink {
    /// The sink for a new manifest file of `repository`.
    pub(crate) fn new(repository: &Repository, file: File) -> Self {
        match repository.crypt() {
            None => ManifestSink::Plain(BufWriter::new(file)),
            Some(crypt) => ManifestSink::Sealed {
                file,
                frame: Vec::with_capacity(64 << 10),
                crypt: Arc::clone(crypt),
            },
        }
    }

    /// Writes what is left (the sealed frame, in an encrypted repository) and returns the
    /// file, to be synced.
    ///
    /// # Errors
    /// The file's write errors.
    pub(crate) fn finish(self) -> io::Result<File> {
        match self {
            ManifestSink::Plain(buffered) => buffered.into_inner().map_err(|e| e.into_error()),
            ManifestSink::Sealed {
                mut file,
                frame,
                crypt,
            } => {
                let sealed = crypt.seal(&frame).map_err(io::Error::other)?;
                file.write_all(&sealed)?;
                Ok(file)
            }
        }
    }
}

impl Write for ManifestSink {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        match self {
            ManifestSink::Plain(buffered) => buffered.write(bytes),
            ManifestSink::Sealed { frame, .. } => {
                frame.extend_from_slice(bytes);
                Ok(bytes.len())
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            ManifestSink::Plain(buffered) => buffered.flush(),
            ManifestSink::Sealed { .. } => Ok(()),
        }
    }
}

/// Where a manifest's frame is read from.
pub(crate) enum ManifestSource {
    /// Its file, streamed.
    Plain(File),
    /// Its opened frame.
    Opened(Cursor<Vec<u8>>),
}

impl ManifestSource {
    /// The frame of the opened manifest `file` (a regular file, checked by the caller).
    ///
    /// # Errors
    /// `InvalidData` when a sealed manifest is too large or fails authentication; the file's
    /// read errors.
    pub(crate) fn new(repository: &Repository, file: File) -> io::Result<Self> {
        if repository.crypt().is_none() {
            return Ok(ManifestSource::Plain(file));
        }
        let mut sealed = Vec::new();
        file.take(MAX_SEALED_MANIFEST_BYTES + 1)
            .read_to_end(&mut sealed)?;
        if sealed.len() as u64 > MAX_SEALED_MANIFEST_BYTES {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("it is larger than the {MAX_SEALED_MANIFEST_BYTES} bytes it can be"),
            ));
        }
        let frame = repository
            .open_object(sealed)
            .map_err(|error| io::Error::new(io::ErrorKind::InvalidData, format!("it {error}")))?;
        Ok(ManifestSource::Opened(Cursor::new(frame)))
    }
}

impl Read for ManifestSource {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        match self {
            ManifestSource::Plain(file) => file.read(buffer),
            ManifestSource::Opened(frame) => frame.read(buffer),
        }
    }
}
