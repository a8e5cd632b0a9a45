//! What a newcomer trips over first: a password shown by `--help`, a PostgreSQL database named
//! as `./strongbox.db`, a `mysql://` URL taken for a file, messages naming Rust calls, and a
//! database file they may only read.

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use super::{assert_exit, assert_ok, run, stderr, stdout, strongbox};

/// A password that must never be printed.
const SECRET: &str = "s3cret-pw";

/// `strongbox` with no database option and a clean environment.
fn bare() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_strongbox"));
    command
        .env_remove("STRONGBOX_DB")
        .env_remove("STRONGBOX_CONFIG")
        .env_remove("RUST_LOG");
    command
}

#[track_caller]
fn assert_no_secret(output: &Output) {
    for text in [stdout(output), stderr(output)] {
        assert!(!text.contains(SECRET), "the password leaked: {text}");
    }
}

#[test]
fn help_and_errors_never_show_the_database_password() {
    // Port 1: nothing listens, so the connection fails at once.
    let url = format!("postgres://app:{SECRET}@127.0.0.1:1/game");
    for args in [
        &["get", "--help"][..],
        &["--help"],
        &["serve-metrics", "--help"],
        &["backup", "restore", "--help"],
    ] {
        let output = bare()
            .env("STRONGBOX_DB", &url)
            .env("STRONGBOX_CONFIG", format!("/etc/{SECRET}.toml"))
            .args(args)
            .output()
            .unwrap();
        assert_ok(&output);
        assert!(
            stdout(&output).contains("STRONGBOX_DB"),
            "{}",
            stdout(&output)
        );
        assert_no_secret(&output);
    }
    let failed = bare()
        .env("STRONGBOX_DB", &url)
        .args(["-vv", "get", "players", "alice"])
        .output()
        .unwrap();
    assert_exit(&failed, 1);
    assert!(
        stderr(&failed).contains("postgres://app:***@127.0.0.1:1/game"),
        "{}",
        stderr(&failed)
    );
    assert_no_secret(&failed);
}

#[test]
fn other_url_schemes_are_a_usage_error_naming_the_supported_forms() {
    let dir = tempfile::tempdir().unwrap();
    let refused = [
        bare()
            .args([
                "--db",
                &format!("mysql://app:{SECRET}@db/game"),
                "get",
                "c",
                "k",
            ])
            .output()
            .unwrap(),
        bare()
            .env("STRONGBOX_DB", "sqlite://game.db")
            .args(["stats"])
            .output()
            .unwrap(),
        bare()
            .args(["migrate", "--from", "a.db", "--to", "mongodb://db/game"])
            .output()
            .unwrap(),
        bare()
            .args([
                "backup",
                "restore",
                "latest",
                "--repo",
                "r",
                "--to",
                "s3://bucket/x",
            ])
            .output()
            .unwrap(),
    ];
    for output in &refused {
        assert_exit(output, 2);
        let message = stderr(output);
        for form in ["file path", "postgres://", "postgresql://", "./"] {
            assert!(message.contains(form), "{form}: {message}");
        }
        assert_no_secret(output);
    }
    assert!(!Path::new("sqlite:").exists() && !Path::new("mysql:").exists());
    // A file whose name looks like a URL, written with a directory in front.
    std::fs::create_dir(dir.path().join("mysql:")).unwrap();
    let put = bare()
        .current_dir(dir.path())
        .args(["--db", "./mysql://odd.db", "put", "c", "k", "1"])
        .output()
        .unwrap();
    assert_ok(&put);
    assert!(dir.path().join("mysql:").join("odd.db").is_file());
}

/// A scratch PostgreSQL database made with `psql`, dropped at the end; `None` (after saying
/// so) when no server answers and `STRONGBOX_REQUIRE_POSTGRES` is not set.
struct ScratchDatabase {
    name: String,
}

/// The test server: `$STRONGBOX_TEST_POSTGRES`, a server URL without a database name.
fn postgres_server() -> String {
    std::env::var("STRONGBOX_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned())
}

fn psql(sql: &str) -> Option<Output> {
    Command::new("psql")
        .arg(format!("{}/postgres", postgres_server()))
        .args(["-v", "ON_ERROR_STOP=1", "-qc", sql])
        .output()
        .ok()
        .filter(|output| output.status.success())
}

impl ScratchDatabase {
    fn create() -> Option<Self> {
        let name = format!("strongbox_cli_test_{}", std::process::id());
        if psql(&format!("DROP DATABASE IF EXISTS {name}"))
            .and_then(|_| psql(&format!("CREATE DATABASE {name}")))
            .is_some()
        {
            return Some(ScratchDatabase { name });
        }
        let required = std::env::var_os("STRONGBOX_REQUIRE_POSTGRES")
            .is_some_and(|value| !value.is_empty() && value != "0");
        assert!(
            !required,
            "no PostgreSQL at {} (psql failed)",
            postgres_server()
        );
        eprintln!(
            "skipped: no PostgreSQL at {} (psql failed)",
            postgres_server()
        );
        None
    }

    /// The database's URL, with a password (trust authentication ignores it).
    fn url_with_password(&self) -> String {
        let server = postgres_server();
        let (scheme, rest) = server.split_once("://").unwrap();
        let rest = match rest.split_once('@') {
            Some((user, host)) if !user.contains(':') => format!("{user}:{SECRET}@{host}"),
            _ => rest.to_owned(),
        };
        format!("{scheme}://{rest}/{}", self.name)
    }
}

impl Drop for ScratchDatabase {
    fn drop(&mut self) {
        psql(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ));
    }
}

#[test]
fn a_postgres_database_is_named_by_its_redacted_url() {
    let Some(scratch) = ScratchDatabase::create() else {
        return;
    };
    let url = scratch.url_with_password();
    let db = PathBuf::from(&url);
    let redacted = url.replace(SECRET, "***");
    assert_ne!(redacted, url);
    let demo = run(
        &db,
        &["demo", "--players", "10", "--tables", "2", "--rounds", "2"],
    );
    assert_ok(&demo);
    assert_no_secret(&demo);
    assert!(
        stdout(&demo).contains(&format!("database  {redacted}\n")),
        "{}",
        stdout(&demo)
    );
    let stats = run(&db, &["stats"]);
    assert_ok(&stats);
    assert_no_secret(&stats);
    let first = stdout(&stats).lines().next().unwrap().to_owned();
    assert!(
        first.starts_with("database") && first.ends_with(&redacted),
        "{first}"
    );

    // Scans and reads of several keys work there too; a key asked twice is found twice.
    let banks = run(&db, &["scan", "balances", "--prefix", "bank-", "--json"]);
    assert_ok(&banks);
    assert_eq!(stdout(&banks).lines().count(), 2, "{}", stdout(&banks));
    let keys = ["bank-t00", "bank-t00", "bank-t99", "bank-t01"];
    let got = run(&db, &[&["get", "balances", "--json"][..], &keys].concat());
    assert_exit(&got, 3);
    let found: Vec<Value> = stdout(&got)
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap()["is_found"].clone())
        .collect();
    assert_eq!(found, [true, true, false, true]);
}

#[test]
fn messages_speak_of_commands_and_flags() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("m.db");
    assert_ok(&run(&db, &["put", "c", "k", "1"]));
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let listed = run(&db, &["backup", "list", "--repo", empty.to_str().unwrap()]);
    assert_exit(&listed, 1);
    assert!(
        stderr(&listed).contains("strongbox backup create --repo"),
        "{}",
        stderr(&listed)
    );

    let repo = dir.path().join("repo");
    let repo = repo.to_str().unwrap();
    assert_ok(&run(&db, &["backup", "create", "--repo", repo]));
    let existing = dir.path().join("existing.db");
    assert_ok(&run(&existing, &["put", "c", "k", "2"]));
    let to = existing.to_str().unwrap();
    let restore = run(
        &db,
        &["backup", "restore", "latest", "--repo", repo, "--to", to],
    );
    assert_exit(&restore, 1);
    assert!(stderr(&restore).contains("--force"), "{}", stderr(&restore));

    let keep_none = run(&db, &["backup", "prune", "--repo", repo, "--keep", "0"]);
    assert_exit(&keep_none, 2);
    assert!(
        stderr(&keep_none).contains("at least 1"),
        "{}",
        stderr(&keep_none)
    );

    for output in [&listed, &restore, &keep_none] {
        let message = stderr(output);
        for rust in ["open_or_create", "IfExists", "::", "read_only to"] {
            assert!(!message.contains(rust), "{rust}: {message}");
        }
    }
}

#[test]
fn a_write_on_a_read_only_open_fails_with_exit_1_naming_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ro.db");
    assert_ok(&run(&db, &["put", "players", "alice", "1"]));
    let refused = run(&db, &["--read-only", "put", "players", "alice", "2"]);
    assert_exit(&refused, 1);
    let message = stderr(&refused);
    assert!(
        message.contains("read-only") && message.contains("--read-only"),
        "{message}"
    );
    assert!(!message.contains("without read_only"), "{message}");
    let read = run(&db, &["--read-only", "get", "players", "alice"]);
    assert_ok(&read);
    assert_eq!(stdout(&read), "1\n");
}

/// `strongbox --db DB ARGS` as a user who may read `db` but not write it: `nobody` when the
/// tests run as root (root may write any file), else this user on a file without write
/// permission. The directory stays writable, as SQLite needs for a read-only WAL database.
fn as_reader(db: &Path, args: &[&str]) -> Output {
    let mut command = strongbox(db);
    command.args(args).env_remove("RUST_LOG");
    if std::fs::metadata(db).unwrap().uid() == 0 {
        command.uid(65534).gid(65534);
    }
    command.output().unwrap()
}

#[test]
fn reading_commands_open_a_file_they_may_not_write_read_only() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let db = dir.path().join("shared.db");
    for key in ["alice", "bob"] {
        assert_ok(&run(&db, &["put", "players", key, "7"]));
    }
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o444)).unwrap();
    let before = std::fs::read(&db).unwrap();

    let got = as_reader(&db, &["-v", "get", "players", "alice"]);
    assert_ok(&got);
    assert_eq!(stdout(&got), "7\n");
    assert!(
        stderr(&got).contains("opening the database read-only"),
        "{}",
        stderr(&got)
    );
    let mut quiet = strongbox(&db);
    quiet
        .args(["-q", "get", "players", "alice"])
        .env("RUST_LOG", "info");
    if std::fs::metadata(&db).unwrap().uid() == 0 {
        quiet.uid(65534).gid(65534);
    }
    let quiet = quiet.output().unwrap();
    assert_ok(&quiet);
    assert_eq!(stderr(&quiet), "", "-q wins over RUST_LOG");
    let repo = dir.path().join("repo");
    for args in [
        &["list", "players"][..],
        &["scan", "players"],
        &["get", "players", "alice", "bob"],
        &["collections", "--json"],
        &["export"],
        &["stats", "--json"],
        &["verify"],
        &["backup", "create", "--repo", repo.to_str().unwrap()],
    ] {
        let output = as_reader(&db, args);
        assert_ok(&output);
    }
    let exported = stdout(&as_reader(&db, &["export"]));
    assert_eq!(exported.lines().count(), 2);
    let stats: Value =
        serde_json::from_str(&stdout(&as_reader(&db, &["stats", "--json"]))).unwrap();
    assert_eq!(stats["records"], 2);

    let write = as_reader(&db, &["put", "players", "carol", "1"]);
    assert_exit(&write, 1);
    assert_eq!(std::fs::read(&db).unwrap(), before, "the file is unchanged");
}
