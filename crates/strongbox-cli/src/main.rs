//! `strongbox`: the command-line tool of Strongbox.
//!
//! Parses the command line, builds a multi-thread tokio runtime, runs the subcommand and maps
//! its error to an exit code ([`exit_code`]; the table is at the end of `strongbox --help`).

#![deny(clippy::unwrap_used, clippy::expect_used)]

mod cli;
mod commands;
mod config;
mod json;
mod limits;
mod lines;
mod output;

use std::io::Write as _;
use std::process::ExitCode;

use anyhow::Context as _;

use crate::commands::Failure;

/// mimalloc instead of the system allocator: a read allocates and frees a decoded value and
/// the tree it deserializes into, and glibc's allocator spent a quarter of a cache hit's CPU.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = cli::parse();
    let result = limits::check_file_descriptors().and_then(|()| {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("start the async runtime")
            .and_then(|runtime| runtime.block_on(commands::run(cli)))
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            let code = exit_code(&error);
            if code != 0 {
                // Nothing sensible is left to do if standard error is gone too.
                let mut stderr = std::io::stderr().lock();
                let _ = writeln!(stderr, "strongbox: {error:#}");
                if let Some(hint) = limits::hint(&error) {
                    let _ = writeln!(stderr, "{hint}");
                }
            }
            ExitCode::from(code)
        }
    }
}

/// The exit code of a failed command: the first cause in the error chain that has its own code
/// decides; anything else is 1. (2, usage errors, is left to clap.)
///
/// | code | cause |
/// |------|-------|
/// | 0 | standard output was closed by the reader (`strongbox export \| head`) |
/// | 3 | [`Failure::NotFound`] |
/// | 4 | [`Failure::Problems`] |
/// | 5 | `strongbox::Error` of kind `conflict` |
/// | 6 | `strongbox::Error` of kind `busy` |
/// | 7 | `strongbox::Error` of kind `corrupt`, or SQLite's "malformed" or "not a database" |
/// | 8 | `strongbox::Error` of kind `storage_full` |
///
/// A `strongbox::Error` of kind `backend` does not decide: the engine's error below it may be
/// SQLite reporting a damaged file.
fn exit_code(error: &anyhow::Error) -> u8 {
    let mut below_backend = false;
    for cause in error.chain() {
        if let Some(failure) = cause.downcast_ref::<Failure>() {
            return match failure {
                Failure::NotFound { .. } => 3,
                Failure::Problems { .. } => 4,
            };
        }
        if let Some(error) = cause.downcast_ref::<strongbox::Error>() {
            match error.kind() {
                "conflict" => return 5,
                "busy" => return 6,
                "corrupt" => return 7,
                "storage_full" => return 8,
                "backend" => below_backend = true,
                _ => return 1,
            }
        } else if is_sqlite_corruption(cause, below_backend) {
            return 7;
        }
        if let Some(error) = cause.downcast_ref::<std::io::Error>()
            && error.kind() == std::io::ErrorKind::BrokenPipe
            && !below_backend
        {
            return 0;
        }
    }
    1
}

/// SQLite's `SQLITE_CORRUPT` or `SQLITE_NOTADB`, as a driver error or, below a `backend`
/// error (where a failure shared by several callers keeps only the engine's message), as
/// SQLite's fixed text for them. Elsewhere the text is not trusted: it may be user input.
fn is_sqlite_corruption(cause: &(dyn std::error::Error + 'static), below_backend: bool) -> bool {
    if let Some(rusqlite::Error::SqliteFailure(failure, _)) =
        cause.downcast_ref::<rusqlite::Error>()
    {
        return matches!(
            failure.code,
            rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase
        );
    }
    if !below_backend {
        return false;
    }
    let message = cause.to_string();
    message.contains("database disk image is malformed")
        || message.contains("file is not a database")
}

#[cfg(test)]
mod tests {
    use super::*;
    use strongbox::{Expect, Version};

    #[test]
    fn library_errors_keep_their_code_under_context() {
        let conflict = strongbox::Error::Conflict {
            collection: "c".into(),
            key: "k".into(),
            expected: Expect::Version(Version::new(1)),
            actual: Some(Version::new(2)),
        };
        let error = Err::<(), _>(conflict).context("put c/k").unwrap_err();
        assert_eq!(exit_code(&error), 5);
        let busy = anyhow::Error::from(strongbox::Error::Busy { waited_ms: 5 }).context("open");
        assert_eq!(exit_code(&busy), 6);
        let other = anyhow::Error::from(strongbox::Error::Closed);
        assert_eq!(exit_code(&other), 1);
        let corrupt = anyhow::Error::from(strongbox::Error::Corrupt {
            collection: None,
            key: None,
            detail: "bad page".into(),
        })
        .context("read c/k")
        .context("export");
        assert_eq!(exit_code(&corrupt), 7);
    }

    /// SQLite's own corruption codes under the library's `Backend` error, whether the engine's
    /// error is kept or only its message.
    #[test]
    fn sqlite_corruption_under_a_backend_error_exits_7() {
        for code in [rusqlite::ffi::SQLITE_CORRUPT, rusqlite::ffi::SQLITE_NOTADB] {
            let engine = rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), None);
            let message = engine.to_string();
            let backend = strongbox::Error::Backend {
                action: "read".into(),
                source: Box::new(engine),
            };
            let error = anyhow::Error::from(backend).context("list collection c");
            assert_eq!(exit_code(&error), 7, "{error:#}");
            let flattened = strongbox::Error::Backend {
                action: "commit".into(),
                source: message.into(),
            };
            assert_eq!(exit_code(&anyhow::Error::from(flattened)), 7);
        }
        let other = strongbox::Error::Backend {
            action: "read".into(),
            source: "disk I/O error".into(),
        };
        assert_eq!(exit_code(&anyhow::Error::from(other)), 1);
        // A name that happens to read like SQLite's message is no corruption.
        let missing = anyhow::Error::from(Failure::NotFound {
            collection: "file is not a database".into(),
            key: "k".into(),
        })
        .context("get file is not a database/k");
        assert_eq!(exit_code(&missing), 3);
    }

    #[test]
    fn cli_failures_have_their_codes() {
        let missing = anyhow::Error::from(Failure::NotFound {
            collection: "c".into(),
            key: "k".into(),
        });
        assert_eq!(exit_code(&missing), 3);
        let problems = anyhow::Error::from(Failure::Problems { count: 2 }).context("demo");
        assert_eq!(exit_code(&problems), 4);
        assert_eq!(exit_code(&anyhow::anyhow!("anything else")), 1);
    }
}
