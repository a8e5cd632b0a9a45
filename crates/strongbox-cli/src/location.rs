//! [`Location`]: where a command's database lives, as `--db`, `--from`, `--to` and
//! `STRONGBOX_DB` name it: a file path, or a `postgres://` (`postgresql://`) URL.
//!
//! Any other `scheme://` is refused as a usage error naming the supported forms, instead of being
//! taken for a file path; a file whose name looks like a URL is written with a directory in
//! front (`./mysql://x`). **Invariant:** a URL's password never leaves this type in text: its
//! `Display` and `Debug` forms are redacted, and a refused value is never repeated in the error.

use std::ffi::OsStr;
use std::fmt;
use std::path::PathBuf;

use clap::builder::TypedValueParser;
use clap::error::ErrorKind;
use strongbox::{Config, PostgresUrl};

/// A database: a file, or a PostgreSQL database by URL.
#[derive(Clone, PartialEq, Eq)]
pub enum Location {
    /// A SQLite database file.
    File(PathBuf),
    /// A PostgreSQL database.
    Postgres(PostgresUrl),
}

impl Location {
    /// Reads a `--db`-like argument.
    ///
    /// # Errors
    /// A `scheme://` other than `postgres://` and `postgresql://`, with the supported forms;
    /// the message names the scheme only, never the whole value (it may hold a password).
    pub fn parse(text: &OsStr) -> Result<Self, String> {
        let Some(text) = text.to_str() else {
            // Not UTF-8, so not a URL.
            return Ok(Location::File(PathBuf::from(text)));
        };
        if PostgresUrl::is_postgres(text) {
            return Ok(Location::Postgres(PostgresUrl::new(text)));
        }
        match url_scheme(text) {
            Some(scheme) => Err(format!(
                "unsupported database URL scheme `{scheme}://`: a database is a file path, a \
                 postgres:// URL or a postgresql:// URL (to use a file whose name starts like a \
                 URL, put a directory in front: ./{scheme}://...)"
            )),
            None => Ok(Location::File(PathBuf::from(text))),
        }
    }

    /// Points `config` at this database.
    pub fn apply_to(&self, config: &mut Config) {
        match self {
            Location::File(path) => {
                config.path.clone_from(path);
                config.postgres_url = None;
            }
            Location::Postgres(url) => config.postgres_url = Some(url.clone()),
        }
    }
}

/// The scheme of `text` when it starts like a URL (`letter (letter | digit | + | - | .)* ://`).
fn url_scheme(text: &str) -> Option<&str> {
    let (scheme, _) = text.split_once("://")?;
    let mut chars = scheme.chars();
    let starts_with_letter = chars
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic());
    let is_scheme = starts_with_letter
        && chars.all(|next| next.is_ascii_alphanumeric() || matches!(next, '+' | '-' | '.'));
    is_scheme.then_some(scheme)
}

/// The file path, or the URL with its password replaced by `***`.
impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::File(path) => write!(f, "{}", path.display()),
            Location::Postgres(url) => f.write_str(&url.redacted()),
        }
    }
}

/// As `Display`: a debug print of the command line shows no password either.
impl fmt::Debug for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Location({self})")
    }
}

/// clap's parser for [`Location`] arguments: a refused value is a usage error (exit code 2)
/// whose message does not repeat the value.
#[derive(Debug, Clone, Copy)]
pub struct LocationParser;

impl TypedValueParser for LocationParser {
    type Value = Location;

    fn parse_ref(
        &self,
        command: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &OsStr,
    ) -> Result<Location, clap::Error> {
        Location::parse(value).map_err(|message| {
            let name = arg.map_or_else(|| "the database".to_owned(), ToString::to_string);
            clap::Error::raw(ErrorKind::ValueValidation, format!("{name}: {message}\n"))
                .with_cmd(command)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Location, String> {
        Location::parse(OsStr::new(text))
    }

    #[test]
    fn paths_and_postgres_urls_are_told_apart() {
        assert_eq!(
            parse("game.db"),
            Ok(Location::File(PathBuf::from("game.db")))
        );
        assert_eq!(
            parse("./mysql://x"),
            Ok(Location::File(PathBuf::from("./mysql://x")))
        );
        assert_eq!(
            parse("/data/a://b"),
            Ok(Location::File(PathBuf::from("/data/a://b")))
        );
        for url in ["postgres://app@db/game", "postgresql://db/game"] {
            assert_eq!(parse(url), Ok(Location::Postgres(PostgresUrl::new(url))));
        }
    }

    #[test]
    fn other_schemes_are_refused_without_repeating_the_value() {
        for (text, scheme) in [
            ("mysql://app:s3cret@db/game", "mysql"),
            ("sqlite://game.db", "sqlite"),
            ("file:///tmp/game.db", "file"),
            ("Postgres+tls://app:s3cret@db", "Postgres+tls"),
        ] {
            let message = parse(text).unwrap_err();
            assert!(message.contains(&format!("`{scheme}://`")), "{message}");
            assert!(message.contains("postgresql://"), "{message}");
            assert!(!message.contains("s3cret"), "{message}");
        }
    }

    #[test]
    fn passwords_never_show_in_display_or_debug() {
        let location = parse("postgres://app:s3cret@db:5432/game").unwrap();
        assert_eq!(location.to_string(), "postgres://app:***@db:5432/game");
        assert!(!format!("{location:?}").contains("s3cret"));
    }
}
