//! Loading the [`strongbox::Config`] a command opens its store with.
//!
//! Precedence for the database: `--db` (or `STRONGBOX_DB`), else the `path` (or `postgres_url`)
//! of the `--config` file (or `STRONGBOX_CONFIG`), else `./strongbox.db`. Every other setting
//! comes from the file, else from the library's defaults, with these exceptions:
//! - the commands that touch each record at most once ([`load_single_pass`]) turn the read
//!   cache off unless the file sets `cache_capacity_bytes`, since filling a cache nobody reads
//!   again only costs time;
//! - background maintenance is off unless the file sets `maintenance_interval_secs` (or
//!   `serve-metrics` is given `--maintenance-interval-secs`): a command never starts rebuilding
//!   a database by the library's hourly default;
//! - `--read-only` sets `read_only`, and the reading commands open a database file this process
//!   may not write read-only by themselves ([`for_reading`]).

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use strongbox::Config;

use crate::cli::GlobalOptions;

/// The database file used when neither `--db` nor a config file names one.
pub const DEFAULT_DB: &str = "./strongbox.db";

/// The settings the config file set itself, where the CLI's default differs from the library's.
#[derive(Debug, Default, Clone, Copy)]
struct FileSettings {
    has_cache_capacity: bool,
    has_maintenance_interval: bool,
}

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
    let (mut config, set) = load_with_origin(global)?;
    if !set.has_cache_capacity {
        config.cache_capacity_bytes = 0;
    }
    Ok(config)
}

/// The configuration with its database replaced by the file `path` (a PostgreSQL URL it named
/// is dropped, with its standbys: the demo's temporary file wins over `STRONGBOX_DB`).
pub fn with_path(mut config: Config, path: PathBuf) -> Config {
    config.path = path;
    config.postgres_url = None;
    config.postgres_replicas.clear();
    config
}

/// The configuration for a command that only reads: read-only as well when its database is a
/// file this process may not write (see [`is_unwritable_file`]).
pub fn for_reading(mut config: Config) -> Config {
    if !config.read_only && config.postgres_url.is_none() && is_unwritable_file(&config.path) {
        tracing::info!(
            database = %config.path.display(),
            "opening the database read-only: this user may not write it"
        );
        config.read_only = true;
    }
    config
}

/// Whether `path` is an existing file that this process may not write, as `access(2)` answers
/// for `W_OK`: its permissions do not let this user (or group) write, it is immutable, or it
/// sits on a read-only file system. Nothing is opened, so nothing can be created or changed.
/// A missing file, or any other answer, counts as writable (opening it then says what is wrong).
pub fn is_unwritable_file(path: &Path) -> bool {
    use rustix::io::Errno;
    match rustix::fs::access(path, rustix::fs::Access::WRITE_OK) {
        Ok(()) => false,
        Err(errno) => matches!(errno, Errno::ACCESS | Errno::PERM | Errno::ROFS),
    }
}

/// The configuration of the global options, and which settings the file set.
fn load_with_origin(global: &GlobalOptions) -> anyhow::Result<(Config, FileSettings)> {
    let (mut config, set) = match &global.config {
        Some(file) => read_file(file)?,
        None => (Config::new(DEFAULT_DB), FileSettings::default()),
    };
    if let Some(db) = &global.db {
        db.apply_to(&mut config);
    }
    if global.read_only {
        config.read_only = true;
    }
    if !set.has_maintenance_interval {
        config.maintenance_interval_secs = 0;
    }
    Ok((config, set))
}

/// Deserializes a TOML file into a `Config`; fields it omits keep their defaults.
fn read_file(file: &Path) -> anyhow::Result<(Config, FileSettings)> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("read config file {}", file.display()))?;
    let table: toml::Table =
        toml::from_str(&text).with_context(|| format!("parse config file {}", file.display()))?;
    let set = FileSettings {
        has_cache_capacity: table.contains_key("cache_capacity_bytes"),
        has_maintenance_interval: table.contains_key("maintenance_interval_secs"),
    };
    let config: Config =
        toml::from_str(&text).with_context(|| format!("parse config file {}", file.display()))?;
    Ok((config, set))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::location::Location;

    fn options(db: Option<&str>, config: Option<PathBuf>) -> GlobalOptions {
        GlobalOptions {
            db: db.map(|db| Location::parse(db.as_ref()).unwrap()),
            config,
            read_only: false,
            verbose: 0,
            quiet: false,
            db_on_command_line: false,
        }
    }

    #[test]
    fn defaults_to_strongbox_db_in_the_working_directory_without_maintenance() {
        let config = load(&options(None, None)).unwrap();
        assert_eq!(config.path, PathBuf::from(DEFAULT_DB));
        let mut expected = Config::new(DEFAULT_DB);
        expected.maintenance_interval_secs = 0;
        assert_eq!(config, expected);
    }

    #[test]
    fn background_maintenance_runs_only_when_the_file_asks() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("maintained.toml");
        std::fs::write(&file, "maintenance_interval_secs = 600\n").unwrap();
        assert_eq!(
            load(&options(None, Some(file)))
                .unwrap()
                .maintenance_interval_secs,
            600
        );
    }

    #[test]
    fn read_only_comes_from_the_flag_or_an_unwritable_file() {
        let mut global = options(Some("postgres://app:s3cret@db/game"), None);
        global.read_only = true;
        let config = load(&global).unwrap();
        assert!(config.read_only);
        assert!(config.postgres_url.is_some());

        let dir = tempfile::tempdir().unwrap();
        let writable = dir.path().join("writable.db");
        std::fs::write(&writable, b"").unwrap();
        assert!(!is_unwritable_file(&writable));
        assert!(!for_reading(Config::new(&writable)).read_only);
        assert!(!is_unwritable_file(&dir.path().join("missing.db")));
        // A kernel setting: read-only for every user, root included.
        #[cfg(target_os = "linux")]
        {
            let unwritable = Path::new("/proc/sys/kernel/ostype");
            assert!(is_unwritable_file(unwritable));
            assert!(for_reading(Config::new(unwritable)).read_only);
        }
        // Without write permission (root may write anything the permissions forbid).
        use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
        let is_root = std::fs::metadata(&writable).unwrap().uid() == 0;
        std::fs::set_permissions(&writable, std::fs::Permissions::from_mode(0o444)).unwrap();
        assert_eq!(is_unwritable_file(&writable), !is_root);
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
    fn the_file_names_standbys_for_the_primary_db_names() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("replicas.toml");
        std::fs::write(
            &file,
            "postgres_replicas = [\"postgres://app@db2/game\", \"postgres://app@db3/game\"]\n\
             replica_wait_ms = 20\n",
        )
        .unwrap();
        let config = load(&options(Some("postgres://app@db1/game"), Some(file))).unwrap();
        assert!(config.postgres_url.is_some());
        assert_eq!(config.postgres_replicas.len(), 2);
        assert_eq!(config.replica_wait_ms, 20);
        assert!(config.validate().is_ok());
        let demo = with_path(config, "demo.db".into());
        assert!(demo.postgres_replicas.is_empty() && demo.validate().is_ok());
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
