//! The surface around the commands: shell completions and the manual page, times and JSON
//! style, progress bars that only a terminal sees, and logging (background work included).

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use serde_json::{Value, json};

use super::{assert_exit, assert_ok, line, run, stats, stderr, stdout, strongbox, write_file};

#[test]
fn completions_and_the_manual_page_name_the_commands() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("unused.db");
    for shell in ["bash", "zsh", "fish"] {
        let output = run(&db, &["completions", shell]);
        assert_ok(&output);
        let script = stdout(&output);
        for command in [
            "import",
            "export",
            "scan",
            "backup",
            "serve-metrics",
            "read-only",
            "changes",
            "watch",
        ] {
            assert!(script.contains(command), "{shell}: {command}");
        }
    }
    let man = run(&db, &["man"]);
    assert_ok(&man);
    let page = stdout(&man);
    assert!(
        page.starts_with(".ie") || page.contains(".TH strongbox"),
        "{page}"
    );
    for command in [
        "import",
        "verify",
        "scan",
        "backup",
        "completions",
        "Exit codes",
    ] {
        assert!(page.contains(command), "{command}");
    }
    assert!(!db.exists(), "neither opens a database");
    let unknown = run(&db, &["completions", "tcsh"]);
    assert_eq!(unknown.status.code(), Some(2));
}

/// The value of a `label  value` row of human output.
fn row<'a>(text: &'a str, label: &str) -> &'a str {
    text.lines()
        .find_map(|line| line.strip_prefix(label))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no {label} row in {text}"))
}

/// Milliseconds since the epoch of an RFC 3339 time.
fn ms_of(time: &str) -> i64 {
    let at = humantime::parse_rfc3339(time).unwrap_or_else(|error| panic!("{time}: {error}"));
    i64::try_from(at.duration_since(UNIX_EPOCH).unwrap().as_millis()).unwrap()
}

#[test]
fn get_meta_prints_times_in_rfc3339_and_json_keeps_milliseconds() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("times.db");
    assert_ok(&run(&db, &["put", "players", "alice", r#"{"chips":5}"#]));
    assert_ok(&run(&db, &["put", "players", "alice", r#"{"chips":6}"#]));
    let human = run(&db, &["get", "players", "alice", "--meta"]);
    assert_ok(&human);
    let text = stdout(&human);
    let json = run(&db, &["get", "players", "alice", "--meta", "--json"]);
    assert_ok(&json);
    let meta: Value = serde_json::from_str(&stdout(&json)).unwrap();
    for (label, field) in [("created", "created_at_ms"), ("updated", "updated_at_ms")] {
        let shown = row(&text, label);
        assert!(shown.ends_with('Z') && shown.contains('T'), "{shown}");
        assert_eq!(ms_of(shown), meta[field].as_i64().unwrap(), "{label}");
    }
    assert_eq!(row(&text, "version"), "2");
    assert_eq!(row(&text, "value"), r#"{"chips":6}"#);
    assert_eq!(meta["value"], json!({"chips": 6}));
    assert!(meta["size_bytes"].as_u64().unwrap() > 0);
}

/// Whether every key of `value`, at any depth, is snake_case.
fn snake_case_keys(value: &Value) -> bool {
    match value {
        Value::Object(object) => object.iter().all(|(key, inner)| {
            key.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
                && snake_case_keys(inner)
        }),
        Value::Array(items) => items.iter().all(snake_case_keys),
        _ => true,
    }
}

/// Runs a `--json` command and returns its one line of JSON.
#[track_caller]
fn json_of(db: &Path, args: &[&str]) -> Value {
    let output = run(db, args);
    assert_ok(&output);
    let text = stdout(&output);
    assert_eq!(text.lines().count(), 1, "{args:?}: one line: {text}");
    let value: Value = serde_json::from_str(&text).unwrap();
    assert!(snake_case_keys(&value), "{args:?}: {value}");
    value
}

#[test]
fn every_json_output_is_one_line_of_snake_case_fields() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("json.db");
    let lines: Vec<String> = (0..30)
        .map(|i| line("bets", &format!("b{i:02}"), json!({"amount": i})))
        .collect();
    let file = write_file(dir.path(), "bets.jsonl", &lines);
    let imported = json_of(&db, &["import", file.to_str().unwrap(), "--json"]);
    assert_eq!(imported["records"], 30);
    assert!(imported["elapsed_ms"].is_u64() && imported["records_per_s"].is_f64());
    let verified = json_of(&db, &["verify", "--json"]);
    assert_eq!(verified["is_clean"], true);
    assert_eq!(verified["records_checked"], 30);
    let maintained = json_of(&db, &["maintenance", "--json"]);
    assert!(maintained["elapsed_ms"].is_u64());
    let repo = dir.path().join("repo");
    let repo = repo.to_str().unwrap();
    let created = json_of(&db, &["backup", "create", "--repo", repo, "--json"]);
    assert!(created["elapsed_ms"].is_u64());
    let listed = json_of(&db, &["backup", "list", "--repo", repo, "--json"]);
    assert!(listed[0]["created_at_ms"].is_i64());
    json_of(&db, &["backup", "verify", "--repo", repo, "--json"]);
    json_of(
        &db,
        &["backup", "prune", "--repo", repo, "--keep", "1", "--json"],
    );
    let copy = dir.path().join("copy.db");
    let from = db.to_str().unwrap();
    json_of(
        &db,
        &[
            "migrate",
            "--from",
            from,
            "--to",
            copy.to_str().unwrap(),
            "--json",
        ],
    );
    for args in [
        &["stats", "--json"][..],
        &["collections", "--json"],
        &["list", "bets", "--json"],
        &["get", "bets", "b01", "--meta", "--json"],
    ] {
        json_of(&db, args);
    }
    // The commands that print a line a record: each line is one object of snake_case fields.
    for (args, lines, code) in [
        (&["scan", "bets", "--json"][..], 30, 0),
        (
            &["scan", "bets", "--json", "--reverse", "--limit", "3"],
            3,
            0,
        ),
        (&["get", "bets", "b01", "b02", "--json"], 2, 0),
        (&["get", "bets", "b01", "nope", "--json"], 2, 3),
    ] {
        let output = run(&db, args);
        assert_eq!(output.status.code(), Some(code), "{args:?}");
        let text = stdout(&output);
        assert_eq!(text.lines().count(), lines, "{args:?}: {text}");
        for line in text.lines() {
            let value: Value = serde_json::from_str(line).unwrap();
            assert!(
                value.is_object() && snake_case_keys(&value),
                "{args:?}: {line}"
            );
        }
    }
}

#[test]
fn progress_is_drawn_on_a_terminal_only() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("progress.db");
    let lines: Vec<String> = (0..50)
        .map(|i| line("chat", &format!("m{i:02}"), json!({"text": "gg"})))
        .collect();
    let file = write_file(dir.path(), "chat.jsonl", &lines);
    let out = dir.path().join("out.jsonl");
    for args in [
        &["import", file.to_str().unwrap()][..],
        &["export", "-o", out.to_str().unwrap()],
        &["verify"],
        &["maintenance"],
    ] {
        let output = run(&db, args);
        assert_ok(&output);
        assert_eq!(stderr(&output), "", "{args:?}: nothing on a pipe");
    }
    // On a terminal (script(1) gives the command one), the spinner names its step.
    let command = format!(
        "{} --db {} verify",
        env!("CARGO_BIN_EXE_strongbox"),
        db.display()
    );
    let Ok(on_terminal) = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env_remove("STRONGBOX_DB")
        .stdin(Stdio::null())
        .output()
    else {
        eprintln!("skipped: no script(1) to run a command on a terminal");
        return;
    };
    assert_ok(&on_terminal);
    assert!(
        stdout(&on_terminal).contains("verifying"),
        "{}",
        stdout(&on_terminal)
    );
}

/// Standard error of a child, line by line, as it comes.
fn stderr_lines(child: &mut Child) -> mpsc::Receiver<String> {
    let (sender, receiver) = mpsc::channel();
    let pipe = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    receiver
}

/// Reads lines until `count` of them contain `needle` (at most 60 seconds); returns all read.
fn wait_for(lines: &mpsc::Receiver<String>, needle: &str, count: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = Vec::new();
    while seen
        .iter()
        .filter(|line: &&String| line.contains(needle))
        .count()
        < count
    {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => seen.push(line),
            Err(_) => panic!("{count} lines with {needle:?} never came; got {seen:#?}"),
        }
    }
    seen
}

fn serve_metrics(db: &Path, extra: &[&str]) -> Command {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut command = strongbox(db);
    command
        .args(["serve-metrics", "--addr", &format!("127.0.0.1:{port}")])
        .args(["--interval-secs", "1"])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    command
}

#[test]
fn serve_metrics_runs_maintenance_only_when_asked_and_logs_background_work() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("served.db");
    assert_ok(&run(&db, &["put", "players", "alice", "1"]));

    // By default: statistics every second (logged at the info level of RUST_LOG), no maintenance.
    let mut server = serve_metrics(&db, &[])
        .env("RUST_LOG", "info")
        .spawn()
        .unwrap();
    let lines = stderr_lines(&mut server);
    let seen = wait_for(&lines, "storage statistics", 3);
    server.kill().unwrap();
    server.wait().unwrap();
    assert!(
        seen.iter().any(|line| line.contains("no maintenance")),
        "{seen:#?}"
    );
    assert!(
        !seen
            .iter()
            .any(|line| line.contains("background maintenance")),
        "{seen:#?}"
    );

    // Asked for: it runs, and -v shows it.
    let mut server = serve_metrics(&db, &["-v", "--maintenance-interval-secs", "1"])
        .spawn()
        .unwrap();
    let lines = stderr_lines(&mut server);
    wait_for(&lines, "background maintenance done", 1);
    server.kill().unwrap();
    server.wait().unwrap();
}

#[test]
fn quiet_still_reports_a_failure_and_conflicts_with_verbose() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("quiet.db");
    let missing = run(&db, &["-q", "get", "players", "nobody"]);
    assert_eq!(missing.status.code(), Some(1), "no database yet");
    assert!(
        stderr(&missing).contains("there is none"),
        "{}",
        stderr(&missing)
    );
    let both = run(&db, &["-q", "-v", "stats"]);
    assert_eq!(both.status.code(), Some(2));
}

#[test]
fn changes_and_watch_print_one_json_line_per_change() {
    use std::io::BufRead as _;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("feed.db");
    assert_ok(&run(&db, &["put", "players", "alice", "1"]));
    assert_ok(&run(&db, &["put", "players", "alice", "2"]));
    assert_ok(&run(&db, &["delete", "players", "alice"]));

    let output = run(&db, &["changes", "--since", "0", "--json"]);
    assert_ok(&output);
    let changes: Vec<Value> = stdout(&output)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let kinds: Vec<(&str, u64)> = changes
        .iter()
        .map(|change| {
            (
                change["kind"].as_str().unwrap(),
                change["version"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(kinds, [("put", 1), ("put", 2), ("delete", 2)]);
    let first = &changes[0];
    assert_eq!(first["seq"], 1);
    assert_eq!(
        (first["collection"].as_str(), first["key"].as_str()),
        (Some("players"), Some("alice"))
    );
    let at = first["at"].as_str().unwrap();
    assert!(humantime::parse_rfc3339(at).is_ok(), "{at}");
    assert_eq!(first["blob_id"].as_str().map(str::len), Some(64));
    assert!(changes[2].get("blob_id").is_none());
    let paged = run(&db, &["changes", "--since", "1", "--limit", "1", "--json"]);
    assert_eq!(stdout(&paged).lines().count(), 1);
    assert!(stdout(&paged).contains("\"seq\":2"));

    // `watch` prints what is there, then what another process writes, until Ctrl-C.
    let mut watcher = strongbox(&db)
        .args(["watch", "scores", "--from", "0", "--json"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(watcher.stdout.take().unwrap()).lines();
    assert_ok(&run(&db, &["put", "players", "bob", "3"]));
    assert_ok(&run(&db, &["put", "scores", "bob", "42"]));
    let seen: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(
        (seen["collection"].as_str(), seen["key"].as_str()),
        (Some("scores"), Some("bob"))
    );
    assert_eq!(seen["kind"], "put");
    let interrupted = std::process::Command::new("kill")
        .args(["-INT", &watcher.id().to_string()])
        .status()
        .unwrap();
    assert!(interrupted.success());
    let status = watcher.wait().unwrap();
    assert_eq!(status.code(), Some(0), "watch exits 0 on Ctrl-C");
}

#[test]
fn a_put_with_a_ttl_expires_and_is_swept_with_an_expired_change() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ttl.db");
    assert_ok(&run(
        &db,
        &["put", "sessions", "s1", "\"alice\"", "--ttl", "1s"],
    ));
    assert_ok(&run(&db, &["put", "sessions", "s2", "\"bob\""]));
    assert_ok(&run(&db, &["get", "sessions", "s1"]));
    assert_eq!(stats(&db)["expiring"], 1);
    let bad = run(&db, &["put", "sessions", "s3", "1", "--ttl", "soon"]);
    assert_exit(&bad, 2);

    std::thread::sleep(Duration::from_millis(1_100));
    assert_exit(&run(&db, &["get", "sessions", "s1"]), 3);
    let listed = run(&db, &["list", "sessions"]);
    assert_eq!(stdout(&listed).lines().collect::<Vec<_>>(), ["s2"]);
    assert_eq!(stats(&db)["expired"], 1);
    assert_ok(&run(&db, &["maintenance"]));
    assert_eq!(stats(&db)["expired"], 0);
    let output = run(&db, &["changes", "--since", "0", "--json"]);
    let last: Value = serde_json::from_str(stdout(&output).lines().last().unwrap()).unwrap();
    assert_eq!(
        (last["key"].as_str(), last["kind"].as_str()),
        (Some("s1"), Some("expired"))
    );
}
