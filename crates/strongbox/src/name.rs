//! Validation of collection names and keys. The limits live here.
//!
//! Names are parameters to every query and never reach SQL text, so any byte sequence that
//! passes these checks is safe; the checks exist to keep names printable and bounded.

use crate::error::{Error, Result};

/// Longest collection name, in bytes of UTF-8.
pub const MAX_COLLECTION_BYTES: usize = 255;

/// Longest key, in bytes of UTF-8.
pub const MAX_KEY_BYTES: usize = 1024;

/// Checks a collection name: 1 to [`MAX_COLLECTION_BYTES`] bytes, no control characters.
///
/// # Errors
/// [`Error::InvalidName`] naming the rule broken.
pub fn validate_collection(name: &str) -> Result<()> {
    validate("collection", name, MAX_COLLECTION_BYTES)
}

/// Checks a key: 1 to [`MAX_KEY_BYTES`] bytes, no NUL byte.
///
/// Keys may hold any other character, so that application identifiers (hashes, paths, user
/// names) can be used as they are.
///
/// # Errors
/// [`Error::InvalidName`] naming the rule broken.
pub fn validate_key(key: &str) -> Result<()> {
    validate("key", key, MAX_KEY_BYTES)
}

fn validate(what: &'static str, name: &str, max_bytes: usize) -> Result<()> {
    let reason = if name.is_empty() {
        Some("must not be empty")
    } else if name.len() > max_bytes {
        Some(if what == "key" {
            "is longer than 1024 bytes"
        } else {
            "is longer than 255 bytes"
        })
    } else if name.contains('\0') {
        Some("must not contain a NUL byte")
    } else if what == "collection" && name.chars().any(char::is_control) {
        Some("must not contain control characters")
    } else {
        None
    };
    match reason {
        None => Ok(()),
        Some(reason) => Err(Error::InvalidName {
            what,
            name: shorten(name),
            reason,
        }),
    }
}

/// The first 64 bytes of a name (cut at a character boundary), for error messages.
fn shorten(name: &str) -> String {
    let mut end = name.len().min(64);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    name.get(..end).unwrap_or_default().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_and_unusual_names() -> Result<()> {
        validate_collection("players")?;
        validate_collection("game sessions/2026 'x'; DROP TABLE records; --")?;
        validate_key("ключ-🎲")?;
        validate_key(&"k".repeat(MAX_KEY_BYTES))?;
        Ok(())
    }

    #[test]
    fn rejects_empty_long_and_nul_names() {
        for (result, reason) in [
            (validate_collection(""), "must not be empty"),
            (validate_key(""), "must not be empty"),
            (validate_key("a\0b"), "must not contain a NUL byte"),
            (
                validate_collection("a\nb"),
                "must not contain control characters",
            ),
            (
                validate_key(&"k".repeat(MAX_KEY_BYTES + 1)),
                "is longer than 1024 bytes",
            ),
            (
                validate_collection(&"c".repeat(256)),
                "is longer than 255 bytes",
            ),
        ] {
            assert!(
                matches!(result, Err(Error::InvalidName { reason: r, .. }) if r == reason),
                "{reason}"
            );
        }
    }

    #[test]
    fn shortening_keeps_character_boundaries() {
        let name = "é".repeat(100);
        let short = shorten(&name);
        assert!(short.len() <= 64);
        assert!(short.chars().all(|c| c == 'é'));
    }
}
