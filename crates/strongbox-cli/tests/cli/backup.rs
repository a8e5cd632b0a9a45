//! `strongbox backup ls|diff|dump|check`, restore of chosen keys, prune's retention flags and
//! dry run, `$STRONGBOX_REPO`, and the lock notice and timeout: each with its bad input.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::{Value, json};

use super::{assert_exit, assert_ok, run, stderr, stdout, strongbox};

/// A database with `players/p0..p2` and `tables/t0`, and a repository with one backup of it;
/// returns the database, the repository and the backup id.
fn backed_up(dir: &Path) -> (PathBuf, String, String) {
    let db = dir.join("game.db");
    for (collection, key, value) in [
        ("players", "p0", json!({"chips": 0})),
        ("players", "p1", json!({"chips": 10})),
        ("players", "p2", json!({"chips": 20})),
        ("tables", "t0", json!("open")),
    ] {
        assert_ok(&run(&db, &["put", collection, key, &value.to_string()]));
    }
    let repo = dir.join("repo").to_str().unwrap().to_owned();
    let id = create(&db, &repo);
    (db, repo, id)
}

/// `backup create`: the new backup's id.
fn create(db: &Path, repo: &str) -> String {
    let output = run(db, &["backup", "create", "--repo", repo, "--json"]);
    assert_ok(&output);
    let created: Value = serde_json::from_str(&stdout(&output)).unwrap();
    created["id"].as_str().unwrap().to_owned()
}

fn json_lines(output: &Output) -> Vec<Value> {
    assert_ok(output);
    stdout(output)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

#[track_caller]
fn assert_says(output: &Output, code: i32, words: &str) {
    assert_exit(output, code);
    assert!(stderr(output).contains(words), "{}", stderr(output));
}

#[test]
fn ls_diff_and_dump_read_a_backup_without_restoring_it() {
    let dir = tempfile::tempdir().unwrap();
    let (db, repo, first) = backed_up(dir.path());
    let repo = repo.as_str();
    let listed = json_lines(&run(
        &db,
        &["backup", "ls", &first, "--repo", repo, "--json"],
    ));
    let keys: Vec<&str> = listed.iter().map(|r| r["key"].as_str().unwrap()).collect();
    assert_eq!(keys, ["p0", "p1", "p2", "t0"]);
    assert_eq!(listed[0]["version"], 1);
    let tables = run(
        &db,
        &[
            "backup",
            "ls",
            "latest",
            "--repo",
            repo,
            "--collection",
            "tables",
        ],
    );
    assert_ok(&tables);
    assert_eq!(stdout(&tables).lines().count(), 1);
    assert!(
        stdout(&tables).starts_with("tables  t0  v1"),
        "{}",
        stdout(&tables)
    );

    assert_ok(&run(&db, &["delete", "players", "p0"]));
    assert_ok(&run(&db, &["put", "players", "p1", "11"]));
    assert_ok(&run(&db, &["put", "players", "p9", "9"]));
    let second = create(&db, repo);
    let diff = run(&db, &["backup", "diff", &first, &second, "--repo", repo]);
    assert_ok(&diff);
    let text = stdout(&diff);
    assert!(text.contains("-  players  p0  v1 -> -"), "{text}");
    assert!(text.contains("M  players  p1  v1 -> v2"), "{text}");
    assert!(text.contains("+  players  p9  - -> v1"), "{text}");
    assert!(text.ends_with("1 added, 1 removed, 1 changed\n"), "{text}");
    let as_json = json_lines(&run(
        &db,
        &["backup", "diff", &first, "latest", "--repo", repo, "--json"],
    ));
    let kinds: Vec<&str> = as_json
        .iter()
        .map(|d| d["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["removed", "changed", "added"]);

    let dumped = run(
        &db,
        &["backup", "dump", &first, "players", "p1", "--repo", repo],
    );
    assert_ok(&dumped);
    assert_eq!(
        serde_json::from_str::<Value>(&stdout(&dumped)).unwrap(),
        json!({"chips": 10})
    );
    let latest = run(
        &db,
        &["backup", "dump", "latest", "players", "p1", "--repo", repo],
    );
    assert_eq!(stdout(&latest).trim(), "11");
    let absent = run(
        &db,
        &["backup", "dump", "latest", "players", "p0", "--repo", repo],
    );
    assert_says(&absent, 3, "not found: players/p0");
    let unknown = run(
        &db,
        &["backup", "ls", "20200101T000000Z-00000000", "--repo", repo],
    );
    assert_says(&unknown, 1, "20200101T000000Z-00000000");
    let malformed = run(
        &db,
        &["backup", "diff", "yesterday", "latest", "--repo", repo],
    );
    assert_says(&malformed, 1, "not a backup id");
}

#[test]
fn restore_of_chosen_keys_writes_only_them() {
    let dir = tempfile::tempdir().unwrap();
    let (db, repo, id) = backed_up(dir.path());
    let repo = repo.as_str();
    let target = dir.path().join("two.db");
    let to = target.to_str().unwrap();
    let args = [
        "backup",
        "restore",
        &id,
        "--repo",
        repo,
        "--to",
        to,
        "--collection",
        "players",
    ];
    let restored = run(&db, &[&args[..], &["--key", "p0", "--key", "p2"]].concat());
    assert_ok(&restored);
    let exported = run(&target, &["export"]);
    assert_ok(&exported);
    let keys: Vec<String> = stdout(&exported)
        .lines()
        .map(|line| {
            serde_json::from_str::<Value>(line).unwrap()["key"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(keys, ["p0", "p2"]);

    let other = dir.path().join("other.db");
    let other = other.to_str().unwrap();
    let absent = run(
        &db,
        &[
            "backup",
            "restore",
            &id,
            "--repo",
            repo,
            "--to",
            other,
            "--collection",
            "players",
            "--key",
            "p7",
        ],
    );
    assert_says(&absent, 1, "players/p7");
    assert!(!Path::new(other).exists());
    let no_collection = run(
        &db,
        &[
            "backup", "restore", &id, "--repo", repo, "--to", other, "--key", "p0",
        ],
    );
    assert_exit(&no_collection, 2);
    let two = run(
        &db,
        &[
            "backup",
            "restore",
            &id,
            "--repo",
            repo,
            "--to",
            other,
            "--collection",
            "players",
            "--collection",
            "tables",
            "--key",
            "p0",
        ],
    );
    assert_says(&two, 1, "exactly one --collection");
}

#[test]
fn prune_keeps_by_policy_and_a_dry_run_deletes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (db, repo, first) = backed_up(dir.path());
    let repo = repo.as_str();
    let mut ids = vec![first];
    for round in 0..2 {
        assert_ok(&run(&db, &["put", "players", "p1", &round.to_string()]));
        ids.push(create(&db, repo));
    }
    let backups = || {
        json_lines(&run(&db, &["backup", "list", "--repo", repo, "--json"]))[0]
            .as_array()
            .unwrap()
            .len()
    };
    let plan = json_lines(&run(
        &db,
        &[
            "backup",
            "prune",
            "--repo",
            repo,
            "--keep-last",
            "1",
            "--dry-run",
            "--json",
        ],
    ));
    assert_eq!(plan[0]["removed"], json!(ids[..2]));
    assert_eq!(plan[0]["kept"], json!(ids[2..]));
    assert_eq!(backups(), 3, "a dry run deletes nothing");
    let text = run(
        &db,
        &[
            "backup",
            "prune",
            "--repo",
            repo,
            "--keep",
            "1",
            "--dry-run",
        ],
    );
    assert_ok(&text);
    assert!(
        stdout(&text).contains(&format!("remove  {}", ids[0])),
        "{}",
        stdout(&text)
    );
    assert!(
        stdout(&text).contains("nothing was deleted"),
        "{}",
        stdout(&text)
    );

    let within = json_lines(&run(
        &db,
        &[
            "backup",
            "prune",
            "--repo",
            repo,
            "--keep-within",
            "7d",
            "--json",
        ],
    ));
    assert_eq!(within[0]["removed"], json!([]));
    let policy = run(
        &db,
        &[
            "backup",
            "prune",
            "--repo",
            repo,
            "--keep-daily",
            "1",
            "--keep-weekly",
            "1",
        ],
    );
    assert_ok(&policy);
    assert_eq!(backups(), 1, "one day, one week: the newest");

    for (flag, value) in [
        ("--keep-within", "soon"),
        ("--keep-within", "0s"),
        ("--keep", "0"),
        ("--keep-daily", "many"),
    ] {
        let refused = run(&db, &["backup", "prune", "--repo", repo, flag, value]);
        assert_exit(&refused, 2);
        assert!(stderr(&refused).contains(flag), "{}", stderr(&refused));
    }
    assert_eq!(backups(), 1);
}

#[test]
fn check_reads_the_structure_or_the_data_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let (db, repo, id) = backed_up(dir.path());
    let repo = repo.as_str();
    let structure = json_lines(&run(&db, &["backup", "check", "--repo", repo, "--json"]));
    assert_eq!(structure[0]["blobs_located"], 4);
    assert_eq!(structure[0]["blobs_read"], 0);
    let all = json_lines(&run(
        &db,
        &[
            "backup",
            "check",
            &id,
            "--repo",
            repo,
            "--read-data",
            "--json",
        ],
    ));
    assert_eq!(all[0]["blobs_read"], 4);
    let subset = run(
        &db,
        &[
            "backup",
            "check",
            "--repo",
            repo,
            "--read-data-subset",
            "100%",
        ],
    );
    assert_ok(&subset);
    assert!(
        stdout(&subset).contains("0 problems"),
        "{}",
        stdout(&subset)
    );
    for bad in ["0%", "101%", "ten"] {
        let refused = run(
            &db,
            &["backup", "check", "--repo", repo, "--read-data-subset", bad],
        );
        assert_says(&refused, 2, "--read-data-subset");
    }
    let both = run(
        &db,
        &[
            "backup",
            "check",
            "--repo",
            repo,
            "--read-data",
            "--read-data-subset",
            "5%",
        ],
    );
    assert_exit(&both, 2);
    // A missing pack is found without reading any.
    let packs = dir.path().join("repo").join("packs");
    for shard in std::fs::read_dir(&packs).unwrap() {
        for pack in std::fs::read_dir(shard.unwrap().path()).unwrap() {
            std::fs::remove_file(pack.unwrap().path()).unwrap();
        }
    }
    let damaged = run(&db, &["backup", "check", "--repo", repo]);
    assert_exit(&damaged, 4);
}

#[test]
fn the_repository_comes_from_strongbox_repo_and_a_held_lock_is_told_then_given_up() {
    let dir = tempfile::tempdir().unwrap();
    let (db, repo, id) = backed_up(dir.path());
    let from_env = strongbox(&db)
        .env("STRONGBOX_REPO", &repo)
        .args(["backup", "list"])
        .output()
        .unwrap();
    assert_ok(&from_env);
    assert!(stdout(&from_env).contains(&id), "{}", stdout(&from_env));
    let unnamed = run(&db, &["backup", "list"]);
    assert_says(&unnamed, 1, "STRONGBOX_REPO");

    // Another process's prune, as far as the lock can tell.
    let holder = File::options()
        .read(true)
        .write(true)
        .open(Path::new(&repo).join("lock"))
        .unwrap();
    holder.lock().unwrap();
    let waited = run(
        &db,
        &[
            "backup",
            "ls",
            "latest",
            "--repo",
            &repo,
            "--lock-timeout",
            "1s",
        ],
    );
    assert_says(
        &waited,
        6,
        "waiting for the repository lock held by a running prune",
    );
    assert!(
        stderr(&waited).contains("stayed locked"),
        "{}",
        stderr(&waited)
    );
    let bad = run(
        &db,
        &[
            "backup",
            "list",
            "--repo",
            &repo,
            "--lock-timeout",
            "forever",
        ],
    );
    assert_says(&bad, 2, "--lock-timeout");
    drop(holder);
    assert_ok(&run(
        &db,
        &[
            "backup",
            "ls",
            "latest",
            "--repo",
            &repo,
            "--lock-timeout",
            "1s",
        ],
    ));
}
