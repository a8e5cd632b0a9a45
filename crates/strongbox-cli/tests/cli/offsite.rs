//! Every `strongbox backup` command on an `s3://` repository (the real S3-compatible server
//! `.ci/run` starts), through mirrors in two cache directories, as two machines would.

use serde_json::{Value, json};

use super::{assert_ok, run, stdout};

/// The bucket of the test server; `None` skips, unless `STRONGBOX_REQUIRE_S3` is set.
fn s3_bucket() -> Option<String> {
    match std::env::var("STRONGBOX_TEST_S3_BUCKET") {
        Ok(bucket) if !bucket.is_empty() => Some(bucket),
        _ => {
            assert!(
                std::env::var_os("STRONGBOX_REQUIRE_S3").is_none(),
                "STRONGBOX_REQUIRE_S3 is set but no S3 server is configured"
            );
            eprintln!("skipped: no S3-compatible server (STRONGBOX_TEST_S3_BUCKET is not set)");
            None
        }
    }
}

/// `strongbox --db DB backup ARGS --repo URL --cache-dir CACHE --json`, which must succeed.
fn backup(db: &std::path::Path, args: &[&str], url: &str, cache: &std::path::Path) -> Value {
    let cache = cache.to_str().unwrap();
    let mut all = vec!["backup"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--repo", url, "--cache-dir", cache, "--json"]);
    let output = run(db, &all);
    assert_ok(&output);
    let text = stdout(&output);
    serde_json::from_str(text.trim()).unwrap_or(Value::String(text))
}

#[test]
fn every_backup_command_works_on_an_s3_repository() {
    let Some(bucket) = s3_bucket() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("game.db");
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let url = format!("s3://{bucket}/cli-{nanos}");
    let (a, b, c) = (
        dir.path().join("a"),
        dir.path().join("b"),
        dir.path().join("c"),
    );
    let put = |chips: u64| {
        let value = json!({ "chips": chips }).to_string();
        assert_ok(&run(&db, &["put", "players", "alice", &value]));
    };
    put(10);
    let first = backup(&db, &["create"], &url, &a);
    assert_eq!(first["records"], 1, "{first}");
    // Two follow steps: the first holds its change on the created backup, the second (too
    // many changes to build on) is whole.
    for chips in [20, 30] {
        put(chips);
        let step = backup(&db, &["follow", "--once"], &url, &a);
        assert!(step["backup"].is_object(), "{step}");
    }

    // Machine B sees all three, restores the newest, and prunes to one.
    let listed = backup(&db, &["list"], &url, &b);
    assert_eq!(listed.as_array().map(Vec::len), Some(3), "{listed}");
    let restored = dir.path().join("restored.db");
    let to = restored.to_str().unwrap();
    backup(&db, &["restore", "latest", "--to", to], &url, &b);
    let got = run(&restored, &["get", "players", "alice"]);
    assert_ok(&got);
    let value: Value = serde_json::from_str(stdout(&got).trim()).unwrap();
    assert_eq!(value["chips"], 30, "{value}");
    let pruned = backup(&db, &["prune", "--keep-last", "1"], &url, &b);
    assert_eq!(
        pruned["removed"].as_array().map(Vec::len),
        Some(2),
        "{pruned}"
    );

    // Machine C, starting empty, sees what is left, whole.
    let listed = backup(&db, &["list"], &url, &c);
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    let checked = backup(&db, &["check", "--read-data"], &url, &c);
    assert!(
        checked["damage"].as_array().is_some_and(Vec::is_empty),
        "{checked}"
    );
    let dumped = backup(&db, &["dump", "latest", "players", "alice"], &url, &c);
    assert_eq!(dumped["chips"], 30, "{dumped}");
}
