//! `strongbox`: the command-line tool of Strongbox.
//!
//! Parses the command line, sets up logging and progress bars, builds a multi-thread tokio
//! runtime, runs the subcommand, prints its error in the CLI's terms ([`explain`]) and maps it
//! to an exit code ([`exit_code`]; the table is at the end of `strongbox --help`).

#![deny(clippy::unwrap_used, clippy::expect_used)]

mod cli;
mod commands;
mod config;
mod explain;
mod json;
mod limits;
mod lines;
mod location;
mod logging;
mod output;
mod progress;

use std::io::Write as _;
use std::process::ExitCode;

use anyhow::Context as _;
use strongbox::ErrorKind;

use crate::commands::Failure;

/// mimalloc instead of the system allocator: a read allocates and frees a decoded value and
/// the tree it deserializes into, and glibc's allocator spent a quarter of a cache hit's CPU.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = cli::parse();
    logging::init(cli.global.verbose, cli.global.quiet);
    progress::set_quiet(cli.global.quiet);
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
                let _ = writeln!(stderr, "strongbox: {}", explain::render(&error));
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
/// | 6 | `strongbox::Error` of kind `busy` or `lock_timeout` |
/// | 7 | `strongbox::Error` of kind `corrupt` (SQLite's "malformed" and "not a database" too) |
/// | 8 | `strongbox::Error` of kind `storage_full` |
fn exit_code(error: &anyhow::Error) -> u8 {
    for cause in error.chain() {
        if let Some(failure) = cause.downcast_ref::<Failure>() {
            return match failure {
                Failure::NotFound { .. } => 3,
                Failure::Problems { .. } => 4,
            };
        }
        if let Some(error) = cause.downcast_ref::<strongbox::Error>() {
            return match error.kind() {
                ErrorKind::Conflict => 5,
                ErrorKind::Busy | ErrorKind::LockTimeout => 6,
                ErrorKind::Corrupt => 7,
                ErrorKind::StorageFull => 8,
                _ => 1,
            };
        }
        if let Some(error) = cause.downcast_ref::<std::io::Error>()
            && error.kind() == std::io::ErrorKind::BrokenPipe
        {
            return 0;
        }
    }
    1
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
        let read_only = anyhow::Error::from(strongbox::Error::ReadOnly {
            action: "store c/k".into(),
        })
        .context("put c/k");
        assert_eq!(exit_code(&read_only), 1);
        let corrupt = anyhow::Error::from(strongbox::Error::Corrupt {
            collection: None,
            key: None,
            detail: "bad page".into(),
        })
        .context("read c/k")
        .context("export");
        assert_eq!(exit_code(&corrupt), 7);
    }

    #[test]
    fn cli_failures_have_their_codes() {
        let missing = anyhow::Error::from(Failure::NotFound {
            collection: "c".into(),
            keys: vec!["k".into()],
        });
        assert_eq!(exit_code(&missing), 3);
        assert_eq!(missing.to_string(), "not found: c/k");
        let keys = (0..12).map(|n| format!("k{n}")).collect();
        let many = Failure::NotFound {
            collection: "c".into(),
            keys,
        };
        assert_eq!(
            many.to_string(),
            "not found: c/k0, c/k1, c/k2, c/k3, c/k4, c/k5, c/k6, c/k7, c/k8, c/k9 and 2 more"
        );
        let problems = anyhow::Error::from(Failure::Problems { count: 2 }).context("demo");
        assert_eq!(exit_code(&problems), 4);
        assert_eq!(exit_code(&anyhow::anyhow!("anything else")), 1);
    }
}
