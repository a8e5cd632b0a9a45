//! Logging: the `tracing` events of the library and of the CLI, written to standard error.
//!
//! The level comes from `-q` (errors only) or `-v` (`-v` informational, `-vv` debugging, `-vvv`
//! everything); when neither is given, from `RUST_LOG` (for example `RUST_LOG=strongbox=debug`);
//! else warnings and errors. Background work (the statistics and maintenance tasks of
//! `serve-metrics`, the maintenance after an import) logs its failures here instead of losing
//! them. **Invariant:** events never carry a database URL's password: the CLI logs locations
//! through `Location`'s and `Config::location`'s redacted forms, as the library does.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::LevelFilter;

/// The level that `-v` and `-q` ask for, or `None` when neither was given.
pub fn level_of_flags(verbose: u8, quiet: bool) -> Option<LevelFilter> {
    match (quiet, verbose) {
        (true, _) => Some(LevelFilter::ERROR),
        (false, 0) => None,
        (false, 1) => Some(LevelFilter::INFO),
        (false, 2) => Some(LevelFilter::DEBUG),
        (false, _) => Some(LevelFilter::TRACE),
    }
}

/// Installs the subscriber for the whole process. Invalid `RUST_LOG` directives are reported
/// on standard error and ignored.
pub fn init(verbose: u8, quiet: bool) {
    let flags = level_of_flags(verbose, quiet);
    let builder =
        EnvFilter::builder().with_default_directive(flags.unwrap_or(LevelFilter::WARN).into());
    let filter = match flags {
        Some(_) => builder.parse_lossy(""),
        None => builder.from_env_lossy(),
    };
    // Fails only when a subscriber is already installed, which then keeps logging.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quiet_wins_and_each_v_adds_a_level() {
        assert_eq!(level_of_flags(0, false), None);
        assert_eq!(level_of_flags(0, true), Some(LevelFilter::ERROR));
        assert_eq!(level_of_flags(1, false), Some(LevelFilter::INFO));
        assert_eq!(level_of_flags(2, false), Some(LevelFilter::DEBUG));
        assert_eq!(level_of_flags(5, false), Some(LevelFilter::TRACE));
    }
}
