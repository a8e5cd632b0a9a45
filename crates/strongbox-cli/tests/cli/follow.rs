//! `strongbox backup follow`, `backup restore --at` and `backup copy`, with their bad input.

use serde_json::{Value, json};

use super::{assert_exit, assert_ok, run, stderr, stdout};

fn put(db: &std::path::Path, key: &str, chips: u64) {
    assert_ok(&run(
        db,
        &[
            "put",
            "players",
            key,
            &json!({ "chips": chips }).to_string(),
        ],
    ));
}

/// `backup follow --once --json`: the step's report.
fn follow_once(db: &std::path::Path, repo: &str) -> Value {
    let output = run(
        db,
        &["backup", "follow", "--once", "--repo", repo, "--json"],
    );
    assert_ok(&output);
    serde_json::from_str(stdout(&output).trim()).unwrap()
}

fn chips_of(db: &std::path::Path, key: &str) -> Value {
    let output = run(db, &["get", "players", key]);
    assert_ok(&output);
    serde_json::from_str::<Value>(stdout(&output).trim()).unwrap()["chips"].clone()
}

#[test]
fn follow_ships_changes_and_restore_at_an_instant_gives_that_state() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("game.db");
    let repo = dir.path().join("repo").to_str().unwrap().to_owned();
    put(&db, "alice", 10);
    let first = follow_once(&db, &repo);
    assert_eq!(first["is_full"], true, "{first}");
    let idle = follow_once(&db, &repo);
    assert!(idle["backup"].is_null(), "{idle}");

    put(&db, "alice", 20);
    let second = follow_once(&db, &repo);
    assert_eq!(second["is_full"], false, "{second}");
    assert_eq!(second["changes"], 1, "{second}");
    std::thread::sleep(std::time::Duration::from_millis(1_100));
    let between = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
    std::thread::sleep(std::time::Duration::from_millis(1_100));
    put(&db, "alice", 30);
    follow_once(&db, &repo);

    let at = dir.path().join("at.db");
    let restored = run(
        &db,
        &[
            "backup",
            "restore",
            "--at",
            &between,
            "--to",
            at.to_str().unwrap(),
            "--repo",
            &repo,
        ],
    );
    assert_ok(&restored);
    assert_eq!(chips_of(&at, "alice"), 20);
    let latest = dir.path().join("latest.db");
    assert_ok(&run(
        &db,
        &[
            "backup",
            "restore",
            "latest",
            "--to",
            latest.to_str().unwrap(),
            "--repo",
            &repo,
        ],
    ));
    assert_eq!(chips_of(&latest, "alice"), 30);

    let early = run(
        &db,
        &[
            "backup",
            "restore",
            "--at",
            "2001-01-01T00:00:00Z",
            "--to",
            dir.path().join("early.db").to_str().unwrap(),
            "--repo",
            &repo,
        ],
    );
    assert!(
        stderr(&early).contains("at or before"),
        "{}",
        stderr(&early)
    );
    let bad = run(
        &db,
        &[
            "backup",
            "restore",
            "--at",
            "yesterday",
            "--to",
            "x.db",
            "--repo",
            &repo,
        ],
    );
    assert_exit(&bad, 2);
    let both = run(
        &db,
        &[
            "backup", "restore", "latest", "--at", &between, "--to", "x.db", "--repo", &repo,
        ],
    );
    assert_exit(&both, 2);
    let interval = run(
        &db,
        &["backup", "follow", "--interval", "1ms", "--repo", &repo],
    );
    assert_exit(&interval, 2);
}

#[test]
fn copy_writes_only_what_the_destination_lacks() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("game.db");
    let repo = dir.path().join("repo").to_str().unwrap().to_owned();
    let offsite = dir.path().join("offsite").to_str().unwrap().to_owned();
    put(&db, "alice", 10);
    assert_ok(&run(&db, &["backup", "create", "--repo", &repo]));
    let copy = |json: bool| {
        let mut args = vec!["backup", "copy", "--repo", &repo, "--to", &offsite];
        if json {
            args.push("--json");
        }
        run(&db, &args)
    };
    let first = copy(true);
    assert_ok(&first);
    let first: Value = serde_json::from_str(&stdout(&first)).unwrap();
    assert_eq!(first["backups_copied"], 1, "{first}");
    let again = copy(false);
    assert_ok(&again);
    assert!(
        stdout(&again).contains("copied 0 files"),
        "{}",
        stdout(&again)
    );
    let restored = dir.path().join("restored.db");
    assert_ok(&run(
        &db,
        &[
            "backup",
            "restore",
            "latest",
            "--to",
            restored.to_str().unwrap(),
            "--repo",
            &offsite,
        ],
    ));
    assert_eq!(chips_of(&restored, "alice"), 10);
    let nowhere = run(
        &db,
        &[
            "backup",
            "copy",
            "--repo",
            dir.path().join("none").to_str().unwrap(),
            "--to",
            &offsite,
        ],
    );
    assert!(!nowhere.status.success());
    assert!(
        stderr(&nowhere).contains("not a Strongbox backup repository"),
        "{}",
        stderr(&nowhere)
    );
}
