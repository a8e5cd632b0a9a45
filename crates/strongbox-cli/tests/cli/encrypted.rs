//! `strongbox backup` on an encrypted repository: created with `--encrypt`, opened with
//! `--password-file`, `STRONGBOX_REPO_PASSWORD` or `--key-file`, and refused without its key.

use serde_json::{Value, json};

use super::{assert_ok, run, stderr, stdout, strongbox};

#[test]
fn an_encrypted_repository_backs_up_and_restores_with_a_password_file() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("live.db");
    let repo = dir.path().join("repo");
    let repo = repo.to_str().unwrap();
    let password_file = dir.path().join("password");
    std::fs::write(&password_file, "open sesame, please\n").unwrap();
    let password = password_file.to_str().unwrap();
    for i in 0..12 {
        let value = json!({"chips": i * 10, "note": "plaintext-marker"}).to_string();
        assert_ok(&run(&db, &["put", "players", &format!("p{i:02}"), &value]));
    }
    // A key given for a new repository without --encrypt is refused: nothing is created.
    let unasked = run(
        &db,
        &[
            "backup",
            "create",
            "--repo",
            repo,
            "--password-file",
            password,
        ],
    );
    assert!(!unasked.status.success());
    assert!(
        stderr(&unasked).contains("--encrypt"),
        "{}",
        stderr(&unasked)
    );
    let created = run(
        &db,
        &[
            "backup",
            "create",
            "--repo",
            repo,
            "--encrypt",
            "--password-file",
            password,
            "--json",
        ],
    );
    assert_ok(&created);
    let summary: Value = serde_json::from_str(&stdout(&created)).unwrap();
    assert_eq!(summary["records"], 12);

    // Without the key: a clear error naming the options that give it.
    let keyless = strongbox(&db)
        .env_remove("STRONGBOX_REPO_PASSWORD")
        .args(["backup", "list", "--repo", repo])
        .output()
        .unwrap();
    assert!(!keyless.status.success());
    assert!(
        stderr(&keyless).contains("--password-file"),
        "{}",
        stderr(&keyless)
    );
    // A wrong passphrase from the environment is refused too.
    let wrong = strongbox(&db)
        .env("STRONGBOX_REPO_PASSWORD", "open sesame")
        .args(["backup", "verify", "--repo", repo])
        .output()
        .unwrap();
    assert!(!wrong.status.success());
    assert!(
        stderr(&wrong).contains("not this repository's"),
        "{}",
        stderr(&wrong)
    );
    // The right one, from the environment.
    let verified = strongbox(&db)
        .env("STRONGBOX_REPO_PASSWORD", "open sesame, please")
        .args(["backup", "verify", "--repo", repo])
        .output()
        .unwrap();
    assert_ok(&verified);

    let restored = dir.path().join("restored.db");
    let to = restored.to_str().unwrap();
    assert_ok(&run(
        &db,
        &[
            "backup",
            "restore",
            "latest",
            "--repo",
            repo,
            "--password-file",
            password,
            "--to",
            to,
        ],
    ));
    assert_eq!(
        stdout(&run(&restored, &["export"])),
        stdout(&run(&db, &["export"]))
    );
    // Nothing in the repository shows a value.
    for path in walk(std::path::Path::new(repo)) {
        let bytes = std::fs::read(&path).unwrap();
        assert!(
            !bytes
                .windows(16)
                .any(|window| window == b"plaintext-marker"),
            "{}",
            path.display()
        );
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}
