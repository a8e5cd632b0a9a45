//! [`Crypt`]: the keys of an encrypted repository, sealing and opening its objects, and the
//! keyed ids that name them; and the repository-level helpers every reader and writer calls,
//! which do nothing for a plain repository.
//!
//! Every object of an encrypted repository (each pack entry, index file, manifest, dictionary)
//! is sealed on its own with XChaCha20-Poly1305 under a subkey of the master key:
//! `nonce (24 random bytes) || ciphertext || tag (16 bytes)`. Names that a plain repository
//! takes from a BLAKE3 hash of content (packs, index files, dictionaries) are instead a BLAKE3
//! keyed hash under another subkey, so that no name can be matched against a known value.
//!
//! **Invariants:** only well-kept RustCrypto and BLAKE3 code does cryptography here; a nonce
//! is never chosen but drawn from the operating system for each seal (at 192 bits, random
//! nonces do not repeat); an object that fails authentication is damage of that object
//! (`Error::Corrupt` where it is read), never a panic; subkeys are wiped when dropped.

use std::sync::Arc;

use chacha20poly1305::aead::rand_core::RngCore;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use zeroize::Zeroizing;

use super::repository::Repository;
use crate::blob::BlobId;
use crate::error::{Error, Result};

/// The nonce before and the tag after each sealed object's ciphertext, in bytes.
pub(crate) const OVERHEAD_BYTES: u64 = 24 + 16;

/// The `blake3::derive_key` context of the subkey objects are sealed with.
const SEAL_CONTEXT: &str = "strongbox-backup 2026-12 object sealing key";

/// The `blake3::derive_key` context of the subkey object ids are hashed with.
const ID_CONTEXT: &str = "strongbox-backup 2026-12 object id key";

/// The keys of an encrypted repository.
pub(crate) struct Crypt {
    cipher: XChaCha20Poly1305,
    id_key: Zeroizing<[u8; 32]>,
    /// A keyed hash of a constant: tells two repositories' keys apart without showing them.
    fingerprint: [u8; 32],
}

impl std::fmt::Debug for Crypt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Crypt(<keys redacted>)")
    }
}

impl PartialEq for Crypt {
    fn eq(&self, other: &Self) -> bool {
        self.fingerprint == other.fingerprint
    }
}

impl Eq for Crypt {}

impl Crypt {
    /// The keys derived from a master key.
    pub(crate) fn new(master: &[u8; 32]) -> Self {
        let seal_key = Zeroizing::new(blake3::derive_key(SEAL_CONTEXT, master));
        let id_key = Zeroizing::new(blake3::derive_key(ID_CONTEXT, master));
        let fingerprint = *blake3::keyed_hash(&id_key, b"fingerprint").as_bytes();
        Crypt {
            cipher: XChaCha20Poly1305::new(seal_key.as_slice().into()),
            id_key,
            fingerprint,
        }
    }

    /// A cipher that seals with `key` itself: the master key's wrapping.
    pub(crate) fn wrapping(key: &[u8; 32]) -> Self {
        Crypt {
            cipher: XChaCha20Poly1305::new(key.into()),
            id_key: Zeroizing::new([0; 32]),
            fingerprint: [0; 32],
        }
    }

    /// `nonce || ciphertext || tag` of `plain`, with a fresh random nonce.
    ///
    /// # Errors
    /// `Error::Backend` when the cipher refuses (a message over 256 GiB).
    pub(crate) fn seal(&self, plain: &[u8]) -> Result<Vec<u8>> {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let ciphertext = self
            .cipher
            .encrypt(&nonce, plain)
            .map_err(|_| Error::backend("encrypt a backup object", "the cipher refused it"))?;
        let mut sealed = Vec::with_capacity(nonce.len() + ciphertext.len());
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&ciphertext);
        Ok(sealed)
    }

    /// The plaintext of a sealed object.
    ///
    /// # Errors
    /// A message for the reader's damage report when the object is too short or fails
    /// authentication (a changed byte anywhere, or another key).
    pub(crate) fn open(&self, sealed: &[u8]) -> std::result::Result<Vec<u8>, String> {
        let Some((nonce, ciphertext)) = sealed.split_at_checked(24) else {
            return Err("is too short to be an encrypted object".into());
        };
        self.cipher
            .decrypt(XNonce::from_slice(nonce), ciphertext)
            .map_err(|_| "fails authentication (it was damaged or edited)".into())
    }

    /// A hasher for keyed object ids.
    pub(crate) fn id_hasher(&self) -> blake3::Hasher {
        blake3::Hasher::new_keyed(&self.id_key)
    }
}

/// `N` random bytes from the operating system.
///
/// # Errors
/// `Error::Backend` when the operating system has no randomness to give.
pub(crate) fn random_bytes<const N: usize>() -> Result<[u8; N]> {
    let mut bytes = [0u8; N];
    OsRng
        .try_fill_bytes(&mut bytes)
        .map_err(|error| Error::backend("draw random bytes for a backup key", error.to_string()))?;
    Ok(bytes)
}

impl Repository {
    /// The keys, for an encrypted repository.
    pub(crate) fn crypt(&self) -> Option<&Arc<Crypt>> {
        self.crypt.as_ref()
    }

    /// A hasher for the names of objects: BLAKE3 for a plain repository, keyed BLAKE3 for
    /// an encrypted one.
    pub(crate) fn object_hasher(&self) -> blake3::Hasher {
        self.crypt()
            .map_or_else(blake3::Hasher::new, |crypt| crypt.id_hasher())
    }

    /// The name of an object of these bytes (see [`Repository::object_hasher`]).
    pub(crate) fn object_id(&self, bytes: &[u8]) -> BlobId {
        let mut hasher = self.object_hasher();
        hasher.update(bytes);
        BlobId::from_hash(*hasher.finalize().as_bytes())
    }

    /// What is stored for an object: its bytes, sealed in an encrypted repository.
    ///
    /// # Errors
    /// As [`Crypt::seal`].
    pub(crate) fn seal_object<'a>(&self, bytes: &'a [u8]) -> Result<std::borrow::Cow<'a, [u8]>> {
        match self.crypt() {
            None => Ok(std::borrow::Cow::Borrowed(bytes)),
            Some(crypt) => crypt.seal(bytes).map(std::borrow::Cow::Owned),
        }
    }

    /// An object's bytes from what is stored, opened in an encrypted repository.
    ///
    /// # Errors
    /// As [`Crypt::open`].
    pub(crate) fn open_object(&self, stored: Vec<u8>) -> std::result::Result<Vec<u8>, String> {
        match self.crypt() {
            None => Ok(stored),
            Some(crypt) => crypt.open(&stored),
        }
    }

    /// How many bytes sealing adds to an object: 0 for a plain repository.
    pub(crate) fn sealing_overhead(&self) -> u64 {
        if self.crypt.is_some() {
            OVERHEAD_BYTES
        } else {
            0
        }
    }

    /// The file name of dictionary `id`: its 8 hex digits, or in an encrypted repository the
    /// first 8 hex digits of its keyed hash (a zstd dictionary id is derived from content).
    pub(crate) fn dictionary_name(&self, id: u32) -> String {
        match self.crypt() {
            None => format!("{id:08x}"),
            Some(_) => {
                let mut hasher = self.object_hasher();
                hasher.update(b"dictionary");
                hasher.update(&id.to_le_bytes());
                hasher
                    .finalize()
                    .to_hex()
                    .as_str()
                    .get(..8)
                    .unwrap_or("00000000")
                    .to_owned()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_object_opens_and_any_changed_byte_is_refused() -> std::result::Result<(), String> {
        let crypt = Crypt::new(&[1; 32]);
        let plain = b"a value worth keeping".to_vec();
        let sealed = crypt.seal(&plain).map_err(|error| error.to_string())?;
        assert_eq!(sealed.len() as u64, plain.len() as u64 + OVERHEAD_BYTES);
        assert_eq!(crypt.open(&sealed)?, plain);
        for at in 0..sealed.len() {
            let mut tampered = sealed.clone();
            if let Some(byte) = tampered.get_mut(at) {
                *byte ^= 0x01;
            }
            assert!(crypt.open(&tampered).is_err(), "byte {at}");
        }
        assert!(Crypt::new(&[2; 32]).open(&sealed).is_err());
        assert!(crypt.open(&sealed[..10]).is_err());
        Ok(())
    }

    #[test]
    fn two_seals_of_the_same_bytes_differ() -> Result<()> {
        let crypt = Crypt::new(&[3; 32]);
        assert_ne!(crypt.seal(b"same")?, crypt.seal(b"same")?);
        Ok(())
    }
}
