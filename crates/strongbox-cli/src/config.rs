//! Loading the [`strongbox::Config`] a command opens its store with.
//!
//! Precedence for the database file: `--db` (or `STRONGBOX_DB`), else the `path` of the
//! `--config` file (or `STRONGBOX_CONFIG`), else `./strongbox.db`. Every other setting comes
//! from the file, else from the library's defaults, with one exception: the commands that touch
//! each record at most once ([`load_single_pass`]) turn the read cache off unless the file sets
//! `cache_capacity_bytes`, since filling a cache nobody reads again only costs time.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use strongbox::Config;

use crate::cli::GlobalOptions;

/// The database file used when neither `--db` nor a config file names one.
pub const DEFAULT_DB: &str = "./strongbox.db";

/// The configuration of the global options, with the library's defaults for what they omit.
///
/// # Errors
/// When the config file cannot be read or is not a valid TOML `Config` (unknown fields are
/// rejected), naming the file.
pub fn load(global: &GlobalOptions) -> anyhow::Result<Config> {
    Ok(load_with_origin(global)?.0)
}

/// As [`load`], with the read cache off unless the config file sets `cache_capacity_bytes`:
/// for commands that read or write each record at most once (everything but `demo`).
///
/// # Errors
/// As [`load`].
pub fn load_single_pass(global: &GlobalOptions) -> anyhow::Result<Config> {
    let (mut config, cache_set) = load_with_origin(global)?;
    if !cache_set {
        config.cache_capacity_bytes = 0;
    }
    Ok(config)
}

/// The configuration with its database file replaced by `path`.
pub fn with_path(mut config: Config, path: PathBuf) -> Config {
    config.path = path;
    config
}

/// The configuration, and whether the file set the cache capacity.
fn load_with_origin(global: &GlobalOptions) -> anyhow::Result<(Config, bool)> {
    let (mut config, cache_set) = match &global.config {
        Some(file) => read_file(file)?,
        None => (Config::new(DEFAULT_DB), false),
    };
    if let Some(db) = &global.db {
        match db
            .to_str()
            .filter(|location| strongbox::PostgresUrl::is_postgres(location))
        {
            Some(url) => config.postgres_url = Some(strongbox::PostgresUrl::new(url)),
            None => {
                config.path.clone_from(db);
                config.postgres_url = None;
            }
        }
    }
    Ok((config, cache_set))
}

/// Deserializes a TOML file into a `Config`; fields it omits keep their defaults.
fn read_file(file: &Path) -> anyhow::Result<(Config, bool)> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("read config file {}", file.display()))?;
    let table: toml::Table =
        toml::from_str(&text).with_context(|| format!("parse config file {}", file.display()))?;
    let cache_set = table.contains_key("cache_capacity_bytes");
    let config: Config =
        toml::from_str(&text).with_context(|| format!("parse config file {}", file.display()))?;
    Ok((config, cache_set))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(db: Option<&str>, config: Option<PathBuf>) -> GlobalOptions {
        GlobalOptions {
            db: db.map(PathBuf::from),
            config,
            db_on_command_line: false,
        }
    }

    #[test]
    fn defaults_to_strongbox_db_in_the_working_directory() {
        let config = load(&options(None, None)).unwrap();
        assert_eq!(config.path, PathBuf::from(DEFAULT_DB));
        assert_eq!(config, Config::new(DEFAULT_DB));
    }

    #[test]
    fn db_overrides_the_path_of_the_config_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("strongbox.toml");
        std::fs::write(
            &file,
            "path = \"from-file.db\"\nbusy_timeout_ms = 1234\n[compression]\nlevel = \"maximum\"\n",
        )
        .unwrap();
        let from_file = load(&options(None, Some(file.clone()))).unwrap();
        assert_eq!(from_file.path, PathBuf::from("from-file.db"));
        assert_eq!(from_file.busy_timeout_ms, 1234);
        let overridden = load(&options(Some("cli.db"), Some(file))).unwrap();
        assert_eq!(overridden.path, PathBuf::from("cli.db"));
        assert_eq!(overridden.busy_timeout_ms, 1234);
    }

    #[test]
    fn single_pass_commands_turn_the_cache_off_unless_the_file_sets_it() {
        let default = Config::default().cache_capacity_bytes;
        assert!(default > 0);
        assert_eq!(
            load_single_pass(&options(None, None))
                .unwrap()
                .cache_capacity_bytes,
            0
        );
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("cache.toml");
        std::fs::write(&file, "cache_capacity_bytes = 1000\n").unwrap();
        let config = load_single_pass(&options(None, Some(file))).unwrap();
        assert_eq!(config.cache_capacity_bytes, 1000);
    }

    #[test]
    fn unknown_fields_are_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bad.toml");
        std::fs::write(&file, "no_such_setting = 1\n").unwrap();
        let error = load(&options(None, Some(file))).unwrap_err();
        assert!(format!("{error:#}").contains("bad.toml"), "{error:#}");
    }
}
