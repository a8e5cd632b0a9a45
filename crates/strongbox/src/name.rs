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

/// The smallest string greater than every string starting with `prefix`, as valid UTF-8 (what
/// a key range's end must be; UTF-8 orders bytes as it orders code points): the prefix with its last character incremented. `None` when
/// there is no such bound (empty prefix, or only `char::MAX`).
pub(crate) fn prefix_successor(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let next = match u32::from(last) + 1 {
            0xD800 => Some('\u{E000}'),
            code => char::from_u32(code),
        };
        if let Some(next) = next {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_bounds_are_valid_utf8_and_tight() {
        assert_eq!(prefix_successor("a/").as_deref(), Some("a0"));
        assert_eq!(prefix_successor("é").as_deref(), Some("ê"));
        assert_eq!(prefix_successor("a\u{D7FF}").as_deref(), Some("a\u{E000}"));
        assert_eq!(prefix_successor("a\u{10FFFF}").as_deref(), Some("b"));
        assert_eq!(prefix_successor(""), None);
        assert_eq!(prefix_successor("\u{10FFFF}"), None);
    }

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
