//! [`RepositoryKey`]: what opens an encrypted repository, and the `encryption` member of its
//! format file, which holds the repository's master key wrapped under that key.
//!
//! A repository's master key is 32 random bytes, made once when the repository is created.
//! The format file keeps it sealed (XChaCha20-Poly1305) under a wrapping key: derived from a
//! passphrase with Argon2id (salt and parameters in the file), or taken from a 32-byte key
//! file. A wrong passphrase or key file fails the seal's authentication, which is
//! `Error::RepositoryKey` with [`KeyProblem::Wrong`].
//!
//! **Invariants:** no secret is printed: `Debug` of a key shows its kind only, and secrets are
//! wiped from memory when dropped (`zeroize`). The KDF parameters read from a format file are
//! bounded ([`MAX_MEMORY_KIB`], [`MAX_PASSES`], [`MAX_LANES`]) so that a planted file cannot
//! make an open take unbounded memory or time.

use std::path::Path;

use argon2::{Algorithm, Argon2, Params, Version};
use zeroize::Zeroizing;

use super::crypt::{Crypt, random_bytes};
use super::files::{io_error, read_regular};
use crate::error::{Error, KeyProblem, Result};

/// The format version of encrypted repositories: version 2 with every object sealed, and the
/// format file's `encryption` member.
pub const ENCRYPTED_FORMAT_VERSION: u32 = 3;

/// The format version of a repository with this encryption record (or none).
pub(crate) fn format_version(encryption: Option<&Encryption>) -> u32 {
    match encryption {
        Some(_) => ENCRYPTED_FORMAT_VERSION,
        None => super::repository::FORMAT_VERSION,
    }
}

/// The Argon2id memory cost of new repositories, in KiB (64 MiB: RFC 9106's second choice).
pub(crate) const MEMORY_KIB: u32 = 64 << 10;

/// The Argon2id passes of new repositories.
pub(crate) const PASSES: u32 = 3;

/// The Argon2id lanes of new repositories.
pub(crate) const LANES: u32 = 1;

/// The most memory a format file may ask the KDF for, in KiB (1 GiB).
const MAX_MEMORY_KIB: u32 = 1 << 20;

/// The most passes a format file may ask for.
const MAX_PASSES: u32 = 64;

/// The most lanes a format file may ask for.
const MAX_LANES: u32 = 16;

/// The `blake3::derive_key` context that turns a key file's bytes into a wrapping key.
const KEY_FILE_CONTEXT: &str = "strongbox-backup 2026-12 key file wrapping key";

/// The largest key file read: 32 bytes, or 64 hex digits and a line end.
const MAX_KEY_FILE_BYTES: u64 = 4 << 10;

/// What opens an encrypted backup repository: a passphrase (stretched with Argon2id) or the
/// 32 bytes of a key file. Its `Debug` output never shows the secret.
///
/// # Examples
///
/// ```no_run
/// # async fn run() -> strongbox::Result<()> {
/// use strongbox::backup::{Repository, RepositoryKey};
///
/// let key = RepositoryKey::passphrase("correct horse battery staple");
/// let repository = Repository::create_encrypted("/var/backups/game", &key).await?;
/// let again = Repository::open_with_key("/var/backups/game", &key).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RepositoryKey {
    secret: Secret,
}

#[derive(Clone)]
enum Secret {
    Passphrase(Zeroizing<Vec<u8>>),
    KeyFile(Zeroizing<[u8; 32]>),
}

impl std::fmt::Debug for RepositoryKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.secret {
            Secret::Passphrase(_) => f.write_str("RepositoryKey::Passphrase(<redacted>)"),
            Secret::KeyFile(_) => f.write_str("RepositoryKey::KeyFile(<redacted>)"),
        }
    }
}

impl RepositoryKey {
    /// A passphrase. Its bytes are used as they are (no trimming, no normalization), so the
    /// same passphrase must be given the same way every time.
    pub fn passphrase(passphrase: impl Into<String>) -> Self {
        RepositoryKey {
            secret: Secret::Passphrase(Zeroizing::new(passphrase.into().into_bytes())),
        }
    }

    /// A key of 32 bytes, as a key file holds it.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        RepositoryKey {
            secret: Secret::KeyFile(Zeroizing::new(bytes)),
        }
    }

    /// The key in a key file: 32 bytes (`head -c 32 /dev/urandom > key`), or 64 hex digits
    /// optionally followed by a line end.
    ///
    /// # Errors
    /// `Error::Io` when the file cannot be read, `Error::InvalidConfig` when it holds anything
    /// else.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = Zeroizing::new(
            read_regular(path, MAX_KEY_FILE_BYTES)
                .map_err(io_error(format!("read the key file {}", path.display())))?,
        );
        let key = parse_key_file(&bytes).ok_or_else(|| {
            Error::InvalidConfig(format!(
                "the key file {} holds {} bytes that are not a key: it must hold 32 bytes, or \
                 64 hex digits (make one with `head -c 32 /dev/urandom > FILE`)",
                path.display(),
                bytes.len()
            ))
        })?;
        Ok(RepositoryKey::from_bytes(*key))
    }

    /// The passphrase on the first line of a file (what `--password-file` and
    /// `backup_repository_password_file` name); the line end is not part of it.
    ///
    /// # Errors
    /// `Error::Io` when the file cannot be read, `Error::InvalidConfig` when its first line is
    /// empty or not UTF-8.
    pub fn from_password_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = Zeroizing::new(read_regular(path, MAX_KEY_FILE_BYTES).map_err(io_error(
            format!("read the password file {}", path.display()),
        ))?);
        let text = std::str::from_utf8(&bytes).map_err(|_| {
            Error::InvalidConfig(format!(
                "the password file {} is not UTF-8 text",
                path.display()
            ))
        })?;
        match text.lines().next() {
            Some(passphrase) if !passphrase.is_empty() => Ok(RepositoryKey::passphrase(passphrase)),
            _ => Err(Error::InvalidConfig(format!(
                "the password file {} is empty; write the passphrase on its first line",
                path.display()
            ))),
        }
    }

    /// What this key is, for messages: `"passphrase"` or `"key file"`.
    fn kind(&self) -> &'static str {
        match self.secret {
            Secret::Passphrase(_) => "passphrase",
            Secret::KeyFile(_) => "key file",
        }
    }
}

/// 32 raw bytes, or 64 hex digits with optional trailing white space.
fn parse_key_file(bytes: &[u8]) -> Option<Zeroizing<[u8; 32]>> {
    if let Ok(raw) = <[u8; 32]>::try_from(bytes) {
        return Some(Zeroizing::new(raw));
    }
    let text = std::str::from_utf8(bytes).ok()?.trim_end();
    if text.len() != 64 {
        return None;
    }
    let mut key = Zeroizing::new([0u8; 32]);
    for (byte, pair) in key.iter_mut().zip(text.as_bytes().chunks_exact(2)) {
        *byte = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    Some(key)
}

/// How the wrapping key is made, as the format file records it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kdf", rename_all = "kebab-case")]
pub(crate) enum KeySource {
    /// Argon2id (version 0x13) of the passphrase, 32 bytes of output.
    Argon2id {
        /// 16 random bytes, hex.
        salt: String,
        /// Memory, in KiB.
        memory_kib: u32,
        /// Passes over the memory.
        passes: u32,
        /// Lanes.
        lanes: u32,
    },
    /// `blake3::derive_key` of the key file's 32 bytes.
    KeyFile,
}

/// The `encryption` member of the format file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Encryption {
    /// Always `xchacha20-poly1305`.
    pub(crate) cipher: String,
    /// Always `blake3-keyed`: how object names are made.
    pub(crate) ids: String,
    /// How the wrapping key is made.
    pub(crate) key: KeySource,
    /// The master key sealed under the wrapping key: nonce, ciphertext and tag, in hex.
    pub(crate) master_key: String,
}

/// The `cipher` value.
pub(crate) const CIPHER: &str = "xchacha20-poly1305";

/// The `ids` value.
pub(crate) const IDS: &str = "blake3-keyed";

impl Encryption {
    /// A new master key, wrapped under `key`: the record for a new repository, and the
    /// repository's keys.
    pub(crate) fn create(key: &RepositoryKey) -> Result<(Self, Crypt)> {
        let master = Zeroizing::new(random_bytes::<32>()?);
        let source = match key.secret {
            Secret::Passphrase(_) => KeySource::Argon2id {
                salt: to_hex(&random_bytes::<16>()?),
                memory_kib: MEMORY_KIB,
                passes: PASSES,
                lanes: LANES,
            },
            Secret::KeyFile(_) => KeySource::KeyFile,
        };
        let wrapping_bytes = wrapping_key(key, &source)?;
        let wrapping = Crypt::wrapping(&wrapping_bytes);
        let sealed = wrapping.seal(master.as_slice())?;
        let encryption = Encryption {
            cipher: CIPHER.to_owned(),
            ids: IDS.to_owned(),
            key: source,
            master_key: to_hex(&sealed),
        };
        Ok((encryption, Crypt::new(&master)))
    }

    /// The repository's keys, unwrapped with `key`.
    ///
    /// # Errors
    /// `Error::RepositoryKey` when `key` is of the other kind or does not open the master key
    /// (naming `repository`), `Error::InvalidConfig` when the record is not one this code
    /// knows.
    pub(crate) fn open(&self, key: &RepositoryKey, repository: &Path) -> Result<Crypt> {
        let problem = |problem| Error::RepositoryKey {
            repository: repository.display().to_string(),
            problem,
        };
        let invalid = |what: &str| {
            Error::InvalidConfig(format!(
                "the backup repository {} has an encryption record this Strongbox does not \
                 understand ({what}); upgrade Strongbox",
                repository.display()
            ))
        };
        if self.cipher != CIPHER || self.ids != IDS {
            return Err(invalid("cipher or ids"));
        }
        let needs = match self.key {
            KeySource::Argon2id { .. } => "passphrase",
            KeySource::KeyFile => "key file",
        };
        if key.kind() != needs {
            return Err(problem(KeyProblem::OtherKind { needs }));
        }
        let sealed = from_hex(&self.master_key).ok_or_else(|| invalid("master_key"))?;
        let wrapping_bytes = wrapping_key(key, &self.key)?;
        let wrapping = Crypt::wrapping(&wrapping_bytes);
        let master = wrapping
            .open(&sealed)
            .ok()
            .and_then(|bytes| <[u8; 32]>::try_from(bytes.as_slice()).ok())
            .map(Zeroizing::new)
            .ok_or_else(|| problem(KeyProblem::Wrong))?;
        Ok(Crypt::new(&master))
    }
}

/// The key the master key is sealed under.
fn wrapping_key(key: &RepositoryKey, source: &KeySource) -> Result<Zeroizing<[u8; 32]>> {
    let mut wrapping = Zeroizing::new([0u8; 32]);
    match (&key.secret, source) {
        (Secret::KeyFile(bytes), KeySource::KeyFile) => {
            *wrapping = blake3::derive_key(KEY_FILE_CONTEXT, bytes.as_slice());
        }
        (
            Secret::Passphrase(passphrase),
            KeySource::Argon2id {
                salt,
                memory_kib,
                passes,
                lanes,
            },
        ) => {
            let invalid = |what: String| {
                Error::InvalidConfig(format!(
                    "the backup repository's key derivation parameters are invalid ({what})"
                ))
            };
            if *memory_kib > MAX_MEMORY_KIB || *passes > MAX_PASSES || *lanes > MAX_LANES {
                return Err(invalid(format!(
                    "at most {MAX_MEMORY_KIB} KiB, {MAX_PASSES} passes and {MAX_LANES} lanes"
                )));
            }
            let salt = from_hex(salt).ok_or_else(|| invalid("the salt is not hex".into()))?;
            let params = Params::new(*memory_kib, *passes, *lanes, Some(32))
                .map_err(|error| invalid(error.to_string()))?;
            Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
                .hash_password_into(passphrase, &salt, wrapping.as_mut_slice())
                .map_err(|error| invalid(error.to_string()))?;
        }
        _ => {
            return Err(Error::InvalidConfig(
                "the key is not of the kind the repository needs".into(),
            ));
        }
    }
    Ok(wrapping)
}

/// Lowercase hex.
pub(crate) fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// The bytes of lowercase or uppercase hex, if it is hex.
fn from_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    text.as_bytes()
        .chunks_exact(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_file_is_32_bytes_or_64_hex_digits() {
        let raw = [7u8; 32];
        assert_eq!(parse_key_file(&raw).map(|key| *key), Some(raw));
        let hex = format!("{}\n", to_hex(&raw));
        assert_eq!(parse_key_file(hex.as_bytes()).map(|key| *key), Some(raw));
        assert!(parse_key_file(b"short").is_none());
        assert!(parse_key_file(&[0u8; 33]).is_none());
        assert!(parse_key_file("zz".repeat(32).as_bytes()).is_none());
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let shown = format!("{:?}", RepositoryKey::passphrase("hunter2-secret"));
        assert!(!shown.contains("hunter2"), "{shown}");
        let shown = format!("{:?}", RepositoryKey::from_bytes([0xab; 32]));
        assert!(!shown.contains("ab"), "{shown}");
    }

    #[test]
    fn hex_round_trips() {
        let bytes = [0u8, 1, 0x7f, 0x80, 0xff];
        assert_eq!(from_hex(&to_hex(&bytes)), Some(bytes.to_vec()));
        assert_eq!(from_hex("abc"), None);
    }
}
