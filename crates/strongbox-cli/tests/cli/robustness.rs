//! Hostile conditions: a line too long to hold, too few file descriptors, outputs that are not
//! regular files, a damaged database file.

use std::io::{Read as _, Write as _};
use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::json;

use super::{assert_exit, assert_ok, line, run, stats, stderr, stdout, write_file};

/// A config file setting `max_value_bytes`.
fn small_values_config(dir: &Path, max_value_bytes: usize) -> String {
    let config = dir.join("small.toml");
    std::fs::write(&config, format!("max_value_bytes = {max_value_bytes}\n")).unwrap();
    config.to_str().unwrap().to_owned()
}

#[test]
fn a_line_over_the_limit_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = small_values_config(dir.path(), 1000);
    // Far over max_value_bytes plus the room for names (64 KiB).
    let long = line("items", "two", json!("x".repeat(200_000)));
    let lines = [
        line("items", "one", json!(1)),
        long,
        line("items", "three", json!(3)),
    ];
    let file = write_file(dir.path(), "long.jsonl", &lines);
    let db = dir.path().join("long.db");
    let output = run(
        &db,
        &["--config", &config, "import", file.to_str().unwrap()],
    );
    assert_exit(&output, 1);
    let message = stderr(&output);
    for expected in ["line 2", "longer than", "max_value_bytes"] {
        assert!(message.contains(expected), "{expected}: {message}");
    }
    let output = run(
        &db,
        &[
            "--config",
            &config,
            "import",
            "--skip-invalid",
            file.to_str().unwrap(),
        ],
    );
    assert_ok(&output);
    assert!(stdout(&output).contains("3 lines"), "{}", stdout(&output));
    assert_eq!(
        stats(&db)["records"],
        json!(2),
        "the lines around it are stored"
    );
}

/// Feeds `import -` one endless line, with the child's address space limited to 400 MB, and
/// counts what the child accepted before it gave up: the line is never held whole.
#[test]
fn an_endless_line_is_refused_after_reading_a_bounded_part_of_it() {
    const CHUNK: usize = 1 << 20;
    const OFFERED: usize = 1 << 30;
    let dir = tempfile::tempdir().unwrap();
    let config = small_values_config(dir.path(), 1000);
    let db = dir.path().join("endless.db");
    let mut child = limited("ulimit -v 400000", &db)
        .args(["--config", &config, "import", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        let mut written = 0usize;
        let chunk = vec![b'x'; CHUNK];
        if stdin
            .write_all(br#"{"collection":"c","key":"k","value":""#)
            .is_err()
        {
            return written;
        }
        while written < OFFERED {
            match stdin.write(&chunk) {
                Ok(n) => written += n,
                Err(_) => break, // The child stopped reading: a closed pipe.
            }
        }
        written
    });
    let output = child.wait_with_output().unwrap();
    let written = writer.join().unwrap();
    assert_exit(&output, 1);
    assert!(stderr(&output).contains("line 1"), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("longer than"),
        "{}",
        stderr(&output)
    );
    assert!(
        written < 16 * CHUNK,
        "the child read {written} bytes of a line it could not store"
    );
}

/// `strongbox --db DB`, run by `sh` after the shell command `limit` (a `ulimit`).
fn limited(limit: &str, db: &Path) -> Command {
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(format!("{limit} && exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_strongbox"))
        .env_remove("STRONGBOX_DB")
        .env_remove("STRONGBOX_CONFIG")
        .arg("--db")
        .arg(db);
    command
}

/// Runs `strongbox ARGS...` with at most `files` open file descriptors.
fn with_open_files(files: u32, db: &Path, args: &[&str]) -> std::process::Output {
    limited(&format!("ulimit -n {files}"), db)
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn too_few_file_descriptors_is_a_clear_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("fds.db");
    assert_ok(&run(&db, &["put", "c", "k", "1"]));
    let file = write_file(dir.path(), "one.jsonl", &[line("c", "j", json!(2))]);
    let commands: [&[&str]; 6] = [
        &["get", "c", "k"],
        &["put", "c", "k", "2"],
        &["list", "c"],
        &["export"],
        &["stats"],
        &["import", file.to_str().unwrap()],
    ];
    for args in commands {
        let output = with_open_files(7, &db, args);
        assert_exit(&output, 1);
        let message = stderr(&output);
        assert!(!message.contains("panicked"), "{args:?}: {message}");
        assert!(message.contains("ulimit -n"), "{args:?}: {message}");
    }
    // At every limit: success, or an error that says what to do; never a panic.
    for files in [4, 6, 8, 10, 12, 14, 16, 18, 20, 24, 32] {
        let output = with_open_files(files, &db, &["get", "c", "k"]);
        let message = stderr(&output);
        assert!(!message.contains("panicked"), "{files}: {message}");
        if !output.status.success() {
            assert_exit(&output, 1);
            assert!(message.contains("ulimit -n"), "{files}: {message}");
        }
    }
}

#[test]
fn export_writes_to_devices_and_fifos_and_creates_owner_only_files() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("out.db");
    for i in 0..50 {
        assert_ok(&run(
            &db,
            &["put", "c", &format!("k{i:02}"), &i.to_string()],
        ));
    }
    let expected = stdout(&run(&db, &["export"]));
    assert_eq!(expected.lines().count(), 50);

    assert_ok(&run(&db, &["export", "-o", "/dev/null"]));

    let fifo = dir.path().join("fifo");
    assert_ok(&Command::new("mkfifo").arg(&fifo).output().unwrap());
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || {
            let mut text = String::new();
            std::fs::File::open(fifo)
                .unwrap()
                .read_to_string(&mut text)
                .unwrap();
            text
        })
    };
    assert_ok(&run(&db, &["export", "--out", fifo.to_str().unwrap()]));
    assert_eq!(reader.join().unwrap(), expected);
    assert!(std::fs::metadata(&fifo).unwrap().file_type().is_fifo());

    // A new file, and an existing one (readable by all) replaced: owner-only, whole.
    let new = dir.path().join("new.jsonl");
    let existing = dir.path().join("existing.jsonl");
    std::fs::write(&existing, "old\n").unwrap();
    std::fs::set_permissions(&existing, std::fs::Permissions::from_mode(0o644)).unwrap();
    for file in [&new, &existing] {
        assert_ok(&run(&db, &["export", "-o", file.to_str().unwrap()]));
        assert_eq!(std::fs::read_to_string(file).unwrap(), expected);
        let mode = std::fs::metadata(file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{}: {mode:o}", file.display());
    }
    // A link to a file: the file is replaced, the link kept.
    let link = dir.path().join("link.jsonl");
    std::os::unix::fs::symlink(&existing, &link).unwrap();
    std::fs::write(&existing, "old\n").unwrap();
    assert_ok(&run(&db, &["export", "-o", link.to_str().unwrap()]));
    assert!(std::fs::symlink_metadata(&link).unwrap().is_symlink());
    assert_eq!(std::fs::read_to_string(&existing).unwrap(), expected);
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with(".strongbox-export"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// Overwrites `len` bytes at `offset` with 0xAB.
fn damage(file: &Path, offset: u64, len: usize) {
    use std::io::{Seek as _, SeekFrom};
    let mut opened = std::fs::OpenOptions::new().write(true).open(file).unwrap();
    opened.seek(SeekFrom::Start(offset)).unwrap();
    opened.write_all(&vec![0xAB; len]).unwrap();
    opened.sync_all().unwrap();
}

/// A store of a few hundred records, its WAL checkpointed into the file.
fn store_of_records(dir: &Path, name: &str) -> (std::path::PathBuf, Vec<String>) {
    let db = dir.join(name);
    let lines: Vec<String> = (0..400)
        .map(|i| {
            line(
                if i % 2 == 0 { "players" } else { "bets" },
                &format!("k{i:04}"),
                json!({"n": i, "note": format!("pass line {i} ").repeat(i % 7 + 1)}),
            )
        })
        .collect();
    let file = write_file(dir, &format!("{name}.jsonl"), &lines);
    assert_ok(&run(
        &db,
        &["import", "--no-maintenance", file.to_str().unwrap()],
    ));
    assert_ok(&run(&db, &["maintenance"]));
    let wal = dir.join(format!("{name}-wal"));
    let wal_bytes = std::fs::metadata(&wal).map(|wal| wal.len()).unwrap_or(0);
    assert_eq!(wal_bytes, 0, "the WAL is checkpointed");
    (db, lines)
}

/// A damaged page makes reads fail with exit code 7 ("corrupt"): never a success with wrong
/// output, never the generic code 1.
#[test]
fn a_damaged_database_exits_7() {
    let dir = tempfile::tempdir().unwrap();
    let (db, _) = store_of_records(dir.path(), "damaged.db");
    let good_export = stdout(&run(&db, &["export"]));
    let good_list = stdout(&run(&db, &["list", "players"]));
    damage(&db, 4096 * 2, 4096);

    let export = run(&db, &["export"]);
    assert_exit(&export, 7);
    let list = run(&db, &["list", "players"]);
    if list.status.success() {
        assert_eq!(
            stdout(&list),
            good_list,
            "a successful list is the right one"
        );
    } else {
        assert_exit(&list, 7);
    }
    let mut failed_gets = 0;
    for i in (0..400).step_by(37) {
        let collection = if i % 2 == 0 { "players" } else { "bets" };
        let key = format!("k{i:04}");
        let get = run(&db, &["get", collection, &key]);
        if get.status.success() {
            let expected = good_export
                .lines()
                .find(|line| line.contains(&format!(r#""key":"{key}""#)))
                .unwrap();
            let value: serde_json::Value = serde_json::from_str(expected).unwrap();
            let got: serde_json::Value = serde_json::from_str(&stdout(&get)).unwrap();
            assert_eq!(got, value["value"], "{collection}/{key}");
        } else {
            assert_exit(&get, 7);
            assert!(stderr(&get).contains("corrupt"), "{}", stderr(&get));
            failed_gets += 1;
        }
    }
    assert!(
        failed_gets > 0 || !list.status.success(),
        "the damage was seen"
    );

    // The file header itself damaged: "not a database".
    let (db, _) = store_of_records(dir.path(), "header.db");
    damage(&db, 0, 100);
    for args in [
        &["get", "players", "k0000"][..],
        &["get", "players", "k0000", "k0002"],
        &["list", "players"],
        &["scan", "players"],
        &["export"],
    ] {
        let output = run(&db, args);
        assert_exit(&output, 7);
    }
}
