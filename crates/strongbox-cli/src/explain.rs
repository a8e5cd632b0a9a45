//! A failed command's message, in the CLI's terms: library errors whose text speaks to a
//! program (a `Config` field to change, a Rust call to make) are told with the flag or the
//! config-file setting that does it instead.
//!
//! The error itself is unchanged, so `main::exit_code` still finds its kind; only the text of
//! the links of its chain that have a CLI wording is replaced. **Invariant:** no message of the
//! CLI names a Rust type, function or enum variant.

use std::fmt::Write as _;

/// The error's chain joined by `: ` (as anyhow's `{:#}`), each library error in the CLI's
/// words where they differ.
pub fn render(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for (at, cause) in error.chain().enumerate() {
        if at > 0 {
            text.push_str(": ");
        }
        match cause.downcast_ref::<strongbox::Error>().and_then(reword) {
            Some(words) => text.push_str(&words),
            None => {
                let _ = write!(text, "{cause}");
            }
        }
    }
    text
}

/// The CLI's wording of a library error whose own message names a setting or a call, or
/// `None` to keep the library's.
fn reword(error: &strongbox::Error) -> Option<String> {
    match error {
        strongbox::Error::ReadOnly { action } => Some(format!(
            "the database is open read-only (by --read-only, or read_only in the --config \
             file): cannot {action}; run the command without them to write"
        )),
        strongbox::Error::Busy { waited_ms } => Some(format!(
            "database busy: gave up after waiting {waited_ms} ms (raise busy_timeout_ms in the \
             --config file, or run fewer writers at once)"
        )),
        strongbox::Error::ValueTooLarge {
            collection,
            key,
            size,
            max,
        } => Some(format!(
            "the value for {collection}/{key} is {size} bytes, over the limit of {max} bytes \
             (raise max_value_bytes in the --config file, or split the value)"
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use anyhow::Context as _;

    use super::*;

    #[test]
    fn library_errors_are_told_with_flags_and_keep_their_kind() {
        let read_only = Err::<(), _>(strongbox::Error::ReadOnly {
            action: "store players/alice".into(),
        })
        .context("put players/alice")
        .unwrap_err();
        let text = render(&read_only);
        assert!(
            text.starts_with("put players/alice: the database is open read-only"),
            "{text}"
        );
        assert!(text.contains("--read-only") && text.contains("store players/alice"));
        assert!(!text.contains("without read_only"), "{text}");
        assert!(read_only.downcast_ref::<strongbox::Error>().is_some());

        let busy = anyhow::Error::from(strongbox::Error::Busy { waited_ms: 5000 });
        assert!(render(&busy).contains("busy_timeout_ms in the --config file"));
    }

    #[test]
    fn other_errors_read_as_anyhow_prints_them() {
        let error = Err::<(), _>(std::io::Error::other("disk on fire"))
            .context("write out.jsonl")
            .context("export")
            .unwrap_err();
        assert_eq!(render(&error), format!("{error:#}"));
    }
}
