//! End-to-end tests of the `strongbox` binary: real processes on real database files.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::{Value, json};

#[path = "cli/backup.rs"]
mod backup;
#[path = "cli/encrypted.rs"]
mod encrypted;
#[path = "cli/exact.rs"]
mod exact;
#[path = "cli/follow.rs"]
mod follow;
#[path = "cli/interface.rs"]
mod interface;
#[path = "cli/offsite.rs"]
mod offsite;
#[path = "cli/robustness.rs"]
mod robustness;
#[path = "cli/safety.rs"]
mod safety;

/// The sample data; `shared/` sits beside the repository root, here and in CI.
const SAMPLE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/data/bitcraps-sample.jsonl"
);

/// A `strongbox` command on `db`, unaffected by the caller's environment.
fn strongbox(db: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_strongbox"));
    command
        .env_remove("STRONGBOX_DB")
        .env_remove("STRONGBOX_CONFIG")
        .env_remove("STRONGBOX_REPO")
        .env_remove("STRONGBOX_REPO_PASSWORD")
        .env_remove("STRONGBOX_CACHE_DIR")
        .arg("--db")
        .arg(db);
    command
}

/// Runs `strongbox --db DB ARGS...`.
fn run(db: &Path, args: &[&str]) -> Output {
    strongbox(db).args(args).output().unwrap()
}

/// Runs `strongbox --db DB ARGS...` with `input` on standard input.
fn run_with_stdin(db: &Path, args: &[&str], input: &str) -> Output {
    let mut child = strongbox(db)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).unwrap()
}

/// Asserts success, showing the command's standard error otherwise.
#[track_caller]
fn assert_ok(output: &Output) {
    assert!(
        output.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        output.status.code(),
        stdout(output),
        stderr(output)
    );
}

#[track_caller]
fn assert_exit(output: &Output, code: i32) {
    assert_eq!(
        output.status.code(),
        Some(code),
        "stdout: {}\nstderr: {}",
        stdout(output),
        stderr(output)
    );
}

fn stats(db: &Path) -> Value {
    let output = run(db, &["stats", "--json"]);
    assert_ok(&output);
    serde_json::from_str(&stdout(&output)).unwrap()
}

/// JSON lines as a map (collection, key) -> value; a later line for a key wins.
fn lines_to_map(text: &str) -> BTreeMap<(String, String), Value> {
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let record: Value = serde_json::from_str(line).unwrap();
            let collection = record["collection"].as_str().unwrap().to_owned();
            let key = record["key"].as_str().unwrap().to_owned();
            ((collection, key), record["value"].clone())
        })
        .collect()
}

fn line(collection: &str, key: &str, value: Value) -> String {
    json!({"collection": collection, "key": key, "value": value}).to_string()
}

fn write_file(dir: &Path, name: &str, lines: &[String]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    path
}

#[test]
fn import_then_export_of_the_sample_gives_equal_values() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("sample.db");
    let imported = run(&db, &["import", SAMPLE]);
    assert_ok(&imported);
    assert!(
        stdout(&imported).contains("20,000 lines"),
        "{}",
        stdout(&imported)
    );
    // The import ends with maintenance: every collection of the sample has enough values for a
    // dictionary, and the export below reads every recompressed value back.
    assert!(
        stdout(&imported).contains("trained 6 compression dictionaries"),
        "{}",
        stdout(&imported)
    );
    let after = stats(&db);
    assert_eq!(after["dictionary_collections"], json!(6));
    let (stored, logical) = (
        after["stored_bytes"].as_u64().unwrap(),
        after["logical_bytes"].as_u64().unwrap(),
    );
    assert!(stored * 4 < logical, "stored {stored} of {logical}");

    let exported_file = dir.path().join("export.jsonl");
    let exported = run(&db, &["export", "--out", exported_file.to_str().unwrap()]);
    assert_ok(&exported);

    let input = lines_to_map(&std::fs::read_to_string(SAMPLE).unwrap());
    let text = std::fs::read_to_string(&exported_file).unwrap();
    let output = lines_to_map(&text);
    assert_eq!(text.lines().count(), input.len(), "one line per record");
    assert_eq!(output.len(), input.len());
    for (record, value) in &input {
        assert_eq!(output.get(record), Some(value), "{record:?}");
    }
    let in_file_order: Vec<(String, String)> = text
        .lines()
        .map(|line| {
            let record: Value = serde_json::from_str(line).unwrap();
            (
                record["collection"].as_str().unwrap().to_owned(),
                record["key"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(
        in_file_order.windows(2).all(|pair| pair[0] < pair[1]),
        "collections and keys in order"
    );

    let stats = stats(&db);
    assert_eq!(stats["records"], json!(input.len()));
    assert_ok(&run(&db, &["verify"]));

    // One collection alone, to standard output.
    let chat = run(&db, &["export", "chat"]);
    assert_ok(&chat);
    let chat = lines_to_map(&stdout(&chat));
    let expected: BTreeMap<_, _> = input
        .into_iter()
        .filter(|((collection, _), _)| collection == "chat")
        .collect();
    assert_eq!(chat, expected);
}

#[test]
fn a_later_line_for_the_same_key_replaces_the_earlier_one() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("dup.db");
    let file = write_file(
        dir.path(),
        "dup.jsonl",
        &[
            line("c", "k", json!(1)),
            line("c", "other", json!("x")),
            line("c", "k", json!(2)),
            line("c", "k", json!({"final": true})),
        ],
    );
    // In one batch, and across batches.
    for batch_size in ["1000", "1"] {
        assert_ok(&run(
            &db,
            &["import", "--batch-size", batch_size, file.to_str().unwrap()],
        ));
        let got = run(&db, &["get", "c", "k"]);
        assert_ok(&got);
        assert_eq!(stdout(&got).trim(), r#"{"final":true}"#);
    }
    let exported = run(&db, &["export"]);
    assert_ok(&exported);
    assert_eq!(stdout(&exported).lines().count(), 2);
}

#[test]
fn get_of_an_absent_key_exits_3() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("absent.db");
    // A read of a database that is not there is an error, and creates nothing.
    let output = run(&db, &["get", "players", "nobody"]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("there is none"),
        "{}",
        stderr(&output)
    );
    assert!(!db.exists());
    assert_ok(&run(&db, &["put", "players", "somebody", "1"]));
    let output = run(&db, &["get", "players", "nobody"]);
    assert_exit(&output, 3);
    assert!(
        stderr(&output).contains("players/nobody"),
        "{}",
        stderr(&output)
    );
    assert!(stdout(&output).is_empty());
    assert_exit(&run(&db, &["delete", "players", "nobody"]), 3);
}

#[test]
fn put_then_get_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("roundtrip.db");
    let value = json!({"name": "alice", "chips": 1000, "tags": ["vip", "🎲"], "ratio": 0.1});
    let put = run(&db, &["put", "players", "alice", &value.to_string()]);
    assert_ok(&put);
    assert_eq!(stdout(&put).trim(), "1");

    let got = run(&db, &["get", "players", "alice"]);
    assert_ok(&got);
    assert_eq!(stdout(&got).lines().count(), 1, "compact: one line");
    let read: Value = serde_json::from_str(&stdout(&got)).unwrap();
    assert_eq!(read, value);

    // From standard input, replacing: version 2.
    let put = run_with_stdin(&db, &["put", "players", "alice"], "{\"chips\": 5}\n");
    assert_ok(&put);
    assert_eq!(stdout(&put).trim(), "2");
    let meta = run(&db, &["get", "--meta", "--json", "players", "alice"]);
    assert_ok(&meta);
    let meta: Value = serde_json::from_str(&stdout(&meta)).unwrap();
    assert_eq!(meta["value"], json!({"chips": 5}));
    assert_eq!(meta["version"], json!(2));
    assert!(meta["created_at_ms"].as_i64().unwrap() > 0);

    let listed = run(&db, &["list", "players", "--json"]);
    assert_ok(&listed);
    assert_eq!(stdout(&listed).trim(), r#"["alice"]"#);

    let deleted = run(&db, &["delete", "players", "alice"]);
    assert_ok(&deleted);
    assert_exit(&run(&db, &["get", "players", "alice"]), 3);
}

#[test]
fn a_conditional_put_with_a_stale_version_exits_5() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("conflict.db");
    assert_ok(&run(
        &db,
        &["put", "--if-absent", "balances", "alice", "100"],
    ));
    assert_ok(&run(
        &db,
        &["put", "--if-version", "1", "balances", "alice", "90"],
    ));

    let stale = run(
        &db,
        &["put", "--if-version", "1", "balances", "alice", "80"],
    );
    assert_exit(&stale, 5);
    assert!(stderr(&stale).contains("conflict"), "{}", stderr(&stale));
    assert_exit(
        &run(&db, &["put", "--if-absent", "balances", "alice", "0"]),
        5,
    );

    let got = run(&db, &["get", "balances", "alice"]);
    assert_eq!(
        stdout(&got).trim(),
        "90",
        "a failed condition writes nothing"
    );
}

#[test]
fn list_pages_and_collections_count() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("list.db");
    let lines: Vec<String> = (0..2500)
        .map(|i| line("keys", &format!("k{i:05}"), json!(i)))
        .chain([line("other", "x", json!(null))])
        .collect();
    let file = write_file(dir.path(), "list.jsonl", &lines);
    assert_ok(&run(&db, &["import", file.to_str().unwrap()]));

    let all = run(&db, &["list", "keys"]);
    assert_ok(&all);
    let text = stdout(&all);
    let keys: Vec<&str> = text.lines().collect();
    assert_eq!(keys.len(), 2500);
    assert_eq!(keys[0], "k00000");
    assert_eq!(keys[2499], "k02499");

    let page = run(
        &db,
        &[
            "list",
            "keys",
            "--start-after",
            "k01000",
            "--limit",
            "3",
            "--json",
        ],
    );
    assert_ok(&page);
    assert_eq!(stdout(&page).trim(), r#"["k01001","k01002","k01003"]"#);
    let prefixed = run(&db, &["list", "keys", "--prefix", "k0249"]);
    assert_eq!(stdout(&prefixed).lines().count(), 10);

    let collections = run(&db, &["collections", "--json"]);
    assert_ok(&collections);
    let collections: Value = serde_json::from_str(&stdout(&collections)).unwrap();
    assert_eq!(
        collections,
        json!([{"collection": "keys", "records": 2500}, {"collection": "other", "records": 1}])
    );
}

/// The lines of `scan --json` (appended to `args`), each parsed.
#[track_caller]
fn scan_json(db: &Path, args: &[&str]) -> Vec<Value> {
    let output = strongbox(db).args(args).arg("--json").output().unwrap();
    assert_ok(&output);
    stdout(&output)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

/// The keys `scan` prints for `args`, in the order printed.
#[track_caller]
fn scanned_keys(db: &Path, args: &[&str]) -> Vec<String> {
    scan_json(db, args)
        .iter()
        .map(|entry| entry["key"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn scan_selects_by_prefix_and_range_forwards_or_reversed_with_a_limit() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("scan.db");
    let keys = ["a", "ab", "abc", "b", "b1", "b2", "ba", "c"];
    let lines: Vec<String> = keys
        .iter()
        .rev()
        .map(|key| line("items", key, json!({ "name": key })))
        .chain([line("other", "b0", json!(0))])
        .collect();
    let file = write_file(dir.path(), "items.jsonl", &lines);
    assert_ok(&run(&db, &["import", file.to_str().unwrap()]));

    let cases: [(&[&str], &[&str]); 12] = [
        (&[], &keys),
        (&["--prefix", "b"], &["b", "b1", "b2", "ba"]),
        (&["--from", "ab", "--to", "b1"], &["ab", "abc", "b"]),
        (&["--from", "b2"], &["b2", "ba", "c"]),
        (&["--to", "ab"], &["a"]),
        (&["--prefix", "b", "--from", "b1"], &["b1", "b2", "ba"]),
        (&["--prefix", "b", "--to", "b2"], &["b", "b1"]),
        (
            &["--prefix", "a", "--from", "0", "--to", "z"],
            &["a", "ab", "abc"],
        ),
        (&["--reverse", "--limit", "3"], &["c", "ba", "b2"]),
        (
            &["--prefix", "b", "--reverse", "--limit", "2"],
            &["ba", "b2"],
        ),
        (
            &["--from", "ab", "--to", "b1", "--reverse"],
            &["b", "abc", "ab"],
        ),
        (&["--limit", "2"], &["a", "ab"]),
    ];
    for (options, expected) in cases {
        let args = [&["scan", "items"][..], options].concat();
        assert_eq!(scanned_keys(&db, &args), expected, "{options:?}");
    }

    // Empty ranges, and a collection that does not exist, print nothing and succeed.
    for options in [
        &["--prefix", "a", "--from", "b"][..],
        &["--prefix", "b", "--to", "b"],
        &["--from", "b", "--to", "b"],
        &["--prefix", "zz"],
    ] {
        let args = [&["scan", "items"][..], options].concat();
        let output = run(&db, &args);
        assert_ok(&output);
        assert_eq!(stdout(&output), "", "{options:?}");
    }
    let missing = run(&db, &["scan", "nothing-here"]);
    assert_ok(&missing);
    assert_eq!(stdout(&missing), "");

    // Without --json: one readable line a record.
    let plain = run(&db, &["scan", "items", "--prefix", "ab"]);
    assert_ok(&plain);
    assert_eq!(
        stdout(&plain),
        "ab  v1  {\"name\":\"ab\"}\nabc  v1  {\"name\":\"abc\"}\n"
    );
}

#[test]
fn scan_json_lines_carry_key_version_and_value() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("scan-json.db");
    for (key, value) in [
        ("alice", r#"{"chips":5}"#),
        ("alice", r#"{"chips":6,"tags":["vip","🎲"]}"#),
        ("bob", "[1,2.5,null]"),
        ("carol", r#""a \"quoted\" line""#),
    ] {
        assert_ok(&run(&db, &["put", "players", key, value]));
    }
    let output = run(&db, &["scan", "players", "--json"]);
    assert_ok(&output);
    let text = stdout(&output);
    let mut entries = Vec::new();
    for line in text.lines() {
        let entry: Value = serde_json::from_str(line).unwrap();
        let fields: Vec<&String> = entry.as_object().unwrap().keys().collect();
        assert_eq!(fields, ["key", "value", "version"], "{line}");
        assert!(
            entry["key"].is_string() && entry["version"].is_u64(),
            "{line}"
        );
        entries.push(entry);
    }
    assert_eq!(
        entries,
        [
            json!({"key": "alice", "version": 2, "value": {"chips": 6, "tags": ["vip", "🎲"]}}),
            json!({"key": "bob", "version": 1, "value": [1, 2.5, null]}),
            json!({"key": "carol", "version": 1, "value": "a \"quoted\" line"}),
        ]
    );
    // Each value as `get` prints it.
    for entry in &entries {
        let key = entry["key"].as_str().unwrap();
        let got = run(&db, &["get", "players", key]);
        let value: Value = serde_json::from_str(&stdout(&got)).unwrap();
        assert_eq!(value, entry["value"], "{key}");
    }
}

#[test]
fn scan_streams_more_than_a_page_in_key_order_without_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("scan-pages.db");
    // 700 keys, written in reverse: the library reads 256 a page.
    let keys: Vec<String> = (0..700).map(|i| format!("k{i:04}")).collect();
    let lines: Vec<String> = keys
        .iter()
        .rev()
        .map(|key| line("many", key, json!({ "key": key })))
        .collect();
    let file = write_file(dir.path(), "many.jsonl", &lines);
    assert_ok(&run(&db, &["import", file.to_str().unwrap()]));

    let entries = scan_json(&db, &["scan", "many"]);
    assert_eq!(entries.len(), 700);
    for (entry, key) in entries.iter().zip(&keys) {
        assert_eq!(entry["key"], json!(key));
        assert_eq!(entry["value"], json!({ "key": key }));
    }
    let reversed: Vec<String> = keys.iter().rev().cloned().collect();
    assert_eq!(scanned_keys(&db, &["scan", "many", "--reverse"]), reversed);
    // Limits and ranges whose ends fall inside a page, and pages that end inside a range.
    assert_eq!(
        scanned_keys(&db, &["scan", "many", "--from", "k0100", "--limit", "300"]),
        keys[100..400]
    );
    let down: Vec<String> = keys[250..520].iter().rev().cloned().collect();
    assert_eq!(
        scanned_keys(
            &db,
            &[
                "scan",
                "many",
                "--from",
                "k0250",
                "--to",
                "k0520",
                "--reverse"
            ]
        ),
        down
    );
    assert_eq!(
        scanned_keys(&db, &["scan", "many", "--prefix", "k05", "--limit", "257"]),
        keys[500..600]
    );
}

#[test]
fn get_of_several_keys_prints_each_in_order_and_exits_3_if_any_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("get-many.db");
    assert_ok(&run(&db, &["put", "players", "alice", r#"{"chips":5}"#]));
    assert_ok(&run(&db, &["put", "players", "bob", r#"{"chips":7}"#]));

    let all = run(&db, &["get", "players", "bob", "alice"]);
    assert_ok(&all);
    assert_eq!(stdout(&all), "bob    {\"chips\":7}\nalice  {\"chips\":5}\n");
    let some = run(&db, &["get", "players", "alice", "nobody", "bob"]);
    assert_exit(&some, 3);
    assert_eq!(
        stdout(&some),
        "alice   {\"chips\":5}\nnobody  (not found)\nbob     {\"chips\":7}\n"
    );
    assert!(
        stderr(&some).contains("not found: players/nobody"),
        "{}",
        stderr(&some)
    );

    // One JSON line a key, in the order given, a key asked twice printed twice.
    let json = run(
        &db,
        &[
            "get", "players", "nobody", "alice", "ghost", "nobody", "--json",
        ],
    );
    assert_exit(&json, 3);
    let lines: Vec<Value> = stdout(&json)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(
        lines,
        [
            json!({"key": "nobody", "is_found": false}),
            json!({"key": "alice", "is_found": true, "value": {"chips": 5}}),
            json!({"key": "ghost", "is_found": false}),
            json!({"key": "nobody", "is_found": false}),
        ]
    );
    assert!(
        stderr(&json).contains("not found: players/nobody, players/ghost\n"),
        "each missing key named once: {}",
        stderr(&json)
    );
    let found = run(&db, &["get", "players", "alice", "alice", "bob", "--json"]);
    assert_ok(&found);
    assert_eq!(stdout(&found).lines().count(), 3);

    // As with one key: an invalid key is an error (1) before anything is read or printed.
    for args in [
        &["get", "players", ""][..],
        &["get", "players", "alice", ""],
    ] {
        let invalid = run(&db, args);
        assert_exit(&invalid, 1);
        assert!(stdout(&invalid).is_empty());
        assert!(
            stderr(&invalid).contains("invalid key"),
            "{}",
            stderr(&invalid)
        );
    }
}

#[test]
fn scan_and_get_refuse_what_cannot_work_as_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("never-opened.db");
    for (args, says) in [
        (
            &["scan", "c", "--from", "m", "--to", "a"][..],
            "comes after --to",
        ),
        (&["scan", "c", "--limit", "0"], "at least 1"),
        (&["scan", "c", "--limit", "many"], "not a count"),
        (&["scan", ""], "invalid collection"),
        (&["scan", "bell\u{7}"], "control characters"),
        (&["get", "c", "a", "b", "--meta"], "--meta reads one key"),
        (&["get", "c"], "KEY"),
    ] {
        let output = run(&db, args);
        assert_exit(&output, 2);
        assert!(
            stderr(&output).contains(says),
            "{args:?}: {}",
            stderr(&output)
        );
        assert!(
            stderr(&output).starts_with("error: "),
            "{}",
            stderr(&output)
        );
    }
    assert!(!db.exists(), "a usage error opens nothing");
}

/// Five lines, the third bad in the way `bad` says.
fn lines_with_bad_third(bad: &str) -> Vec<String> {
    vec![
        line("items", "one", json!(1)),
        line("items", "two", json!(2)),
        bad.to_owned(),
        line("items", "four", json!(4)),
        line("items", "five", json!(5)),
    ]
}

#[test]
fn a_bad_line_fails_the_import_and_stores_nothing_of_its_batch() {
    let dir = tempfile::tempdir().unwrap();
    let bad_lines = [
        r#"{"collection":"items","key":"three","value":3"#, // unparseable JSON
        r#"{"collection":"items","key":"three"}"#,          // missing field
        r#"{"collection":"items","key":"","value":3}"#,     // invalid (empty) key
    ];
    for (n, bad) in bad_lines.into_iter().enumerate() {
        let file = write_file(
            dir.path(),
            &format!("bad{n}.jsonl"),
            &lines_with_bad_third(bad),
        );
        let db = dir.path().join(format!("bad{n}.db"));
        let output = run(&db, &["import", file.to_str().unwrap()]);
        assert!(!output.status.success(), "{bad}: {}", stdout(&output));
        assert!(
            stderr(&output).contains("line 3"),
            "{bad}: {}",
            stderr(&output)
        );
        assert_eq!(
            stats(&db)["records"],
            json!(0),
            "{bad}: nothing of the batch"
        );
        assert_exit(&run(&db, &["get", "items", "one"]), 3);

        // Batches before the bad line's stay committed; its own batch does not.
        let output = run(
            &db,
            &["import", "--batch-size", "2", file.to_str().unwrap()],
        );
        assert!(!output.status.success());
        assert!(stderr(&output).contains("line 3"), "{}", stderr(&output));
        assert!(
            stderr(&output).contains("(lines 1-2, 2 records) stays committed"),
            "{}",
            stderr(&output)
        );
        assert_ok(&run(&db, &["get", "items", "two"]));
        assert_exit(&run(&db, &["get", "items", "four"]), 3);
    }
}

#[test]
fn a_too_large_value_is_a_bad_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("small.toml");
    std::fs::write(&config, "max_value_bytes = 100\n").unwrap();
    let big = line("items", "three", json!("x".repeat(200)));
    let file = write_file(dir.path(), "big.jsonl", &lines_with_bad_third(&big));
    let db = dir.path().join("big.db");
    let config = config.to_str().unwrap();
    let output = run(&db, &["--config", config, "import", file.to_str().unwrap()]);
    assert!(!output.status.success());
    assert!(stderr(&output).contains("line 3"), "{}", stderr(&output));
    assert!(stderr(&output).contains("limit"), "{}", stderr(&output));
    let output = run(
        &db,
        &[
            "--config",
            config,
            "import",
            "--skip-invalid",
            file.to_str().unwrap(),
        ],
    );
    assert_ok(&output);
    assert_eq!(stats(&db)["records"], json!(4));
}

#[test]
fn skip_invalid_stores_the_good_lines_and_reports_the_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let mut lines = lines_with_bad_third("this is not JSON");
    lines.push(r#"{"collection":"items","value":6}"#.to_owned());
    let file = write_file(dir.path(), "skip.jsonl", &lines);
    let db = dir.path().join("skip.db");
    let output = run(
        &db,
        &[
            "import",
            "--skip-invalid",
            "--batch-size",
            "2",
            file.to_str().unwrap(),
        ],
    );
    assert_ok(&output);
    assert!(stdout(&output).contains("2 skipped"), "{}", stdout(&output));
    assert!(stderr(&output).contains("line 3"), "{}", stderr(&output));
    assert!(stderr(&output).contains("line 6"), "{}", stderr(&output));
    assert_eq!(stats(&db)["records"], json!(4));
    for key in ["one", "two", "four", "five"] {
        assert_ok(&run(&db, &["get", "items", key]));
    }

    // The same, with the summary as JSON and the lines from standard input.
    let db = dir.path().join("skip-stdin.db");
    let text = std::fs::read_to_string(&file).unwrap();
    let output = run_with_stdin(&db, &["import", "--skip-invalid", "--json", "-"], &text);
    assert_ok(&output);
    let summary: Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(summary["lines"], json!(6));
    assert_eq!(summary["records"], json!(4));
    assert_eq!(summary["skipped"], json!(2));
}

#[test]
fn two_processes_import_into_one_database_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("shared.db");
    let files: Vec<PathBuf> = ["a", "b"]
        .iter()
        .map(|side| {
            let lines: Vec<String> = (0..2000)
                .map(|i| {
                    line(
                        "race",
                        &format!("{side}-{i:05}"),
                        json!({"side": side, "i": i, "pad": "chips ".repeat(i % 50)}),
                    )
                })
                .collect();
            write_file(dir.path(), &format!("{side}.jsonl"), &lines)
        })
        .collect();
    let children: Vec<_> = files
        .iter()
        .map(|file| {
            strongbox(&db)
                .args(["import", "--batch-size", "20"])
                .arg(file)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let output = child.wait_with_output().unwrap();
        assert_ok(&output);
        assert!(
            stdout(&output).contains("2,000 records written"),
            "{}",
            stdout(&output)
        );
    }
    assert_eq!(stats(&db)["records"], json!(4000));
    let count = run(&db, &["collections", "--json"]);
    let count: Value = serde_json::from_str(&stdout(&count)).unwrap();
    assert_eq!(count, json!([{"collection": "race", "records": 4000}]));
    assert_ok(&run(&db, &["verify"]));
}

#[test]
fn verify_of_a_healthy_database_exits_0_and_stats_has_the_documented_fields() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("healthy.db");
    let shared = json!({"theme": "felt-green", "sound": true, "padding": "x".repeat(500)});
    for key in ["a", "b", "c"] {
        assert_ok(&run(&db, &["put", "settings", key, &shared.to_string()]));
    }

    let verified = run(&db, &["verify"]);
    assert_ok(&verified);
    assert!(
        stdout(&verified).contains("no problems"),
        "{}",
        stdout(&verified)
    );
    let verified = run(&db, &["verify", "--json"]);
    assert_ok(&verified);
    let report: Value = serde_json::from_str(&stdout(&verified)).unwrap();
    assert_eq!(report["is_clean"], json!(true));
    assert_eq!(report["problems"], json!([]));

    let stats = stats(&db);
    let fields: Vec<&str> = stats
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let mut documented = vec![
        "records",
        "expiring",
        "expired",
        "collections",
        "blobs",
        "logical_bytes",
        "unique_bytes",
        "stored_bytes",
        "file_bytes",
        "dedup_saved_bytes",
        "compression_saved_bytes",
        "dictionary_collections",
        "released_bytes",
    ];
    documented.sort_unstable();
    assert_eq!(fields, documented);
    assert_eq!(stats["records"], json!(3));
    assert_eq!(stats["blobs"], json!(1), "one shared value, stored once");
    assert!(stats["dedup_saved_bytes"].as_u64().unwrap() > 1000);

    let human = run(&db, &["stats"]);
    assert_ok(&human);
    for label in ["deduplication", "compression", "file size"] {
        assert!(stdout(&human).contains(label), "{}", stdout(&human));
    }
}

#[test]
fn the_demo_runs_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("demo.db");
    let tmp = dir.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    // Without --db on the command line (STRONGBOX_DB is ignored by the demo), it runs on a
    // temporary database and leaves nothing behind.
    let output = Command::new(env!("CARGO_BIN_EXE_strongbox"))
        .env_remove("STRONGBOX_CONFIG")
        .env("STRONGBOX_DB", &db)
        .env("TMPDIR", &tmp)
        .current_dir(dir.path())
        .args(["demo", "--players", "24", "--tables", "3", "--rounds", "4"])
        .output()
        .unwrap();
    assert_ok(&output);
    let text = stdout(&output);
    for expected in [
        "invariant holds",
        "rejected: conflict on balances/",
        "no problems",
        "deduplication",
    ] {
        assert!(text.contains(expected), "{expected}: {text}");
    }
    assert!(!db.exists());
    assert!(!dir.path().join("strongbox.db").exists());
    assert_eq!(
        std::fs::read_dir(&tmp).unwrap().count(),
        0,
        "temporary files removed"
    );

    // On a file named on the command line, which it then keeps; it refuses a non-empty one.
    let output = strongbox(&db)
        .args(["demo", "--players", "10", "--tables", "2", "--rounds", "2"])
        .output()
        .unwrap();
    assert_ok(&output);
    assert!(stats(&db)["records"].as_u64().unwrap() > 50);
    let again = run(&db, &["demo", "--players", "10", "--rounds", "1"]);
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("empty database"),
        "{}",
        stderr(&again)
    );
}

#[test]
fn backups_round_trip_and_damage_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("live.db");
    let repo = dir.path().join("repo");
    for i in 0..20 {
        assert_ok(&run(
            &db,
            &[
                "put",
                "players",
                &format!("p{i:02}"),
                &json!({"chips": i * 10}).to_string(),
            ],
        ));
    }
    assert_ok(&run(&db, &["put", "chat", "m1", "\"gg\""]));
    let created = run(
        &db,
        &[
            "backup",
            "create",
            "--repo",
            repo.to_str().unwrap(),
            "--json",
        ],
    );
    assert_ok(&created);
    let summary: Value = serde_json::from_str(&stdout(&created)).unwrap();
    assert_eq!(summary["records"], 21);
    let listed = run(
        &db,
        &["backup", "list", "--repo", repo.to_str().unwrap(), "--json"],
    );
    assert_eq!(
        serde_json::from_str::<Value>(&stdout(&listed))
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_ok(&run(
        &db,
        &["backup", "verify", "--repo", repo.to_str().unwrap()],
    ));

    let restored = dir.path().join("restored.db");
    let to = restored.to_str().unwrap();
    assert_ok(&run(
        &db,
        &[
            "backup",
            "restore",
            "latest",
            "--repo",
            repo.to_str().unwrap(),
            "--to",
            to,
        ],
    ));
    let live_export = stdout(&run(&db, &["export"]));
    assert_eq!(stdout(&run(&restored, &["export"])), live_export);
    // An existing target is refused and left as it was.
    let before = std::fs::read(&restored).unwrap();
    let again = run(
        &db,
        &[
            "backup",
            "restore",
            "latest",
            "--repo",
            repo.to_str().unwrap(),
            "--to",
            to,
        ],
    );
    assert_exit(&again, 1);
    assert!(stderr(&again).contains("exists"), "{}", stderr(&again));
    assert_eq!(std::fs::read(&restored).unwrap(), before);
    let chat_only = dir.path().join("chat.db");
    assert_ok(&run(
        &db,
        &[
            "backup",
            "restore",
            "latest",
            "--repo",
            repo.to_str().unwrap(),
            "--to",
            chat_only.to_str().unwrap(),
            "--collection",
            "chat",
        ],
    ));
    assert_eq!(stats(&chat_only)["records"], 1);

    // A flipped byte in a stored value is found, naming the backup.
    let blob = std::fs::read_dir(repo.join("packs"))
        .unwrap()
        .flat_map(|shard| std::fs::read_dir(shard.unwrap().path()).unwrap())
        .map(|entry| entry.unwrap().path())
        .next()
        .unwrap();
    let mut bytes = std::fs::read(&blob).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x20;
    std::fs::write(&blob, bytes).unwrap();
    let damaged = run(&db, &["backup", "verify", "--repo", repo.to_str().unwrap()]);
    assert_exit(&damaged, 4);
    assert!(
        stdout(&damaged).contains(summary["id"].as_str().unwrap()),
        "{}",
        stdout(&damaged)
    );
}

#[test]
fn maintenance_prints_its_report() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("m.db");
    assert_ok(&run(&db, &["put", "players", "alice", "1"]));
    let output = run(&db, &["maintenance", "--json"]);
    assert_ok(&output);
    let report: Value = serde_json::from_str(&stdout(&output)).unwrap();
    let steps: Vec<&str> = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|step| step["name"].as_str().unwrap())
        .collect();
    assert!(
        steps.contains(&"vacuum") && steps.contains(&"integrity_check"),
        "{steps:?}"
    );
    assert!(report["errors"].as_array().unwrap().is_empty());
}

/// GETs `/metrics` and parses the Prometheus text format.
fn scrape(port: u16) -> Option<prometheus_parse::Scrape> {
    use std::io::Read as _;
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    if !head.starts_with("HTTP/1.1 200") {
        return None;
    }
    prometheus_parse::Scrape::parse(body.lines().map(|line| Ok(line.to_owned()))).ok()
}

fn gauge(scrape: &prometheus_parse::Scrape, name: &str) -> Option<f64> {
    scrape
        .samples
        .iter()
        .find(|sample| sample.metric == name)
        .and_then(|sample| match sample.value {
            prometheus_parse::Value::Gauge(value) | prometheus_parse::Value::Untyped(value) => {
                Some(value)
            }
            _ => None,
        })
}

#[test]
fn the_metrics_endpoint_shows_the_counters_moving() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("metrics.db");
    assert_ok(&run(&db, &["put", "players", "alice", "1"]));
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = strongbox(&db)
        .args([
            "serve-metrics",
            "--addr",
            &format!("127.0.0.1:{port}"),
            "--interval-secs",
            "1",
        ])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let read_records = |at_least: f64| {
        for _ in 0..200 {
            if let Some(records) =
                scrape(port).and_then(|scrape| gauge(&scrape, "strongbox_records"))
                && records >= at_least
            {
                return records;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("strongbox_records never reached {at_least}");
    };
    assert_eq!(read_records(1.0), 1.0);
    // Another process writes; the served gauges follow.
    for key in ["bob", "carol", "dave"] {
        assert_ok(&run(&db, &["put", "players", key, "2"]));
    }
    assert_eq!(read_records(4.0), 4.0);
    let scraped = scrape(port).unwrap();
    assert!(gauge(&scraped, "strongbox_stored_bytes").unwrap() > 0.0);
    server.kill().unwrap();
    server.wait().unwrap();
}

#[test]
fn bench_says_where_the_benchmark_went() {
    let dir = tempfile::tempdir().unwrap();
    let output = run(
        &dir.path().join("unused.db"),
        &["bench", "--dataset", "data.jsonl", "--json"],
    );
    assert_exit(&output, 1);
    assert!(
        stderr(&output).contains("cargo run --release -p strongbox-bench"),
        "{}",
        stderr(&output)
    );
    assert!(!dir.path().join("unused.db").exists());
}

#[test]
fn migrate_copies_a_store_into_an_empty_one() {
    let dir = tempfile::tempdir().unwrap();
    let from = dir.path().join("from.db");
    let to = dir.path().join("to.db");
    for i in 0..50 {
        assert_ok(&run(
            &from,
            &[
                "put",
                "seats",
                &format!("s{i:02}"),
                &json!({"player": i % 7}).to_string(),
            ],
        ));
    }
    assert_ok(&run(&from, &["put", "seats", "s00", "\"taken\""]));
    let output = strongbox(&from)
        .args([
            "migrate",
            "--from",
            from.to_str().unwrap(),
            "--to",
            to.to_str().unwrap(),
            "--json",
        ])
        .output()
        .unwrap();
    assert_ok(&output);
    let summary: Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(summary["records"], 50);
    assert_eq!(
        stdout(&run(&to, &["export"])),
        stdout(&run(&from, &["export"]))
    );
    let meta = stdout(&run(&to, &["get", "seats", "s00", "--meta", "--json"]));
    assert!(meta.contains("\"version\":2"), "versions survive: {meta}");
    // Into a database that holds records: refused.
    let again = strongbox(&from)
        .args([
            "migrate",
            "--from",
            from.to_str().unwrap(),
            "--to",
            to.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_exit(&again, 1);
    assert!(
        stderr(&again).contains("already holds records"),
        "{}",
        stderr(&again)
    );
}

#[test]
fn stats_watch_refreshes_until_stopped() {
    use std::io::BufRead as _;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("watch.db");
    assert_ok(&run(&db, &["put", "players", "alice", "1"]));
    let mut watcher = strongbox(&db)
        .args(["stats", "--watch", "1", "--json"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(watcher.stdout.take().unwrap()).lines();
    let first: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(first["records"], 1);
    assert_ok(&run(&db, &["put", "players", "bob", "2"]));
    let mut seen = first;
    for _ in 0..10 {
        seen = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
        if seen["records"] == 2 {
            break;
        }
    }
    assert_eq!(seen["records"], 2);
    watcher.kill().unwrap();
    watcher.wait().unwrap();
}

#[test]
fn an_import_killed_midway_leaves_whole_batches_and_a_clean_database() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("killed.db");
    let lines: Vec<String> = (0..6000)
        .map(|i| {
            line(
                "bets",
                &format!("b{i:05}"),
                json!({"amount": i, "note": "pass line ".repeat(i % 20)}),
            )
        })
        .collect();
    let file = write_file(dir.path(), "bets.jsonl", &lines);
    for (round, wait_ms) in [150u64, 400, 900].into_iter().enumerate() {
        let mut import = strongbox(&db)
            .args(["import", file.to_str().unwrap(), "--batch-size", "100"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(wait_ms));
        import.kill().unwrap();
        import.wait().unwrap();
        assert_ok(&run(&db, &["verify"]));
        let records = stats(&db)["records"].as_u64().unwrap();
        assert_eq!(
            records % 100,
            0,
            "round {round}: only whole batches commit ({records})"
        );
        // What is there is exactly what the file says.
        let exported = lines_to_map(&stdout(&run(&db, &["export"])));
        let expected = lines_to_map(&lines.join("\n"));
        for (key, value) in &exported {
            assert_eq!(expected.get(key), Some(value), "{key:?}");
        }
    }
}
