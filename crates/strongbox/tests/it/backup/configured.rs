//! A store whose configuration names an encrypted repository (`backup_repository` with
//! `backup_repository_key_file` or `backup_repository_password_file`): its scheduled backups
//! and its `follow` task create and write the repository encrypted, never in the clear; a
//! wrong key, or a plain repository under a configured key, is an error of the backup step
//! that writes nothing.

use std::path::Path;
use std::time::{Duration, Instant};

use strongbox::backup::{Repository, RepositoryKey};
use strongbox::{Config, Error, Store};

use super::{restores_equal, store_players};

/// A store over `dir/store.db` backing up to `dir/repository`, with maintenance and stats
/// left to the test.
fn config(dir: &Path) -> Config {
    let mut config = Config::new(dir.join("store.db"))
        .with_backup_repository(dir.join("repository"))
        .with_stats_interval(Duration::ZERO)
        .with_maintenance_interval(Duration::ZERO);
    config.backup_interval_secs = 1;
    config
}

/// The backup step of a maintenance run: (succeeded, outcome).
async fn backup_step(store: &Store) -> (bool, String) {
    let report = store.maintenance().await.unwrap();
    let step = report.steps.iter().find(|step| step.name == "backup");
    let step = step.expect("maintenance ran no backup step");
    (step.is_ok, step.outcome.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_key_file_encrypts_scheduled_and_continuous_backups() {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("backups.key");
    std::fs::write(&key_file, [7u8; 32]).unwrap();
    let mut config = config(dir.path()).with_backup_repository_key_file(&key_file);
    config.backup_follow_secs = 1;
    let store = Store::open(config).await.unwrap();
    store_players(&store, 30).await;
    let (is_ok, outcome) = backup_step(&store).await;
    assert!(is_ok, "{outcome}");

    // Created encrypted: refused without the key, read with it.
    let repository_dir = dir.path().join("repository");
    assert!(matches!(
        Repository::open(&repository_dir).await,
        Err(Error::RepositoryKey { .. })
    ));
    let key = RepositoryKey::from_file(&key_file).unwrap();
    let repository = Repository::open_with_key(&repository_dir, &key)
        .await
        .unwrap();
    assert!(repository.is_encrypted());
    assert_eq!(repository.list().await.unwrap().len(), 1);

    // The follow task ships later writes through the same key.
    store_players(&store, 45).await;
    let written = Instant::now();
    while repository.list().await.unwrap().last().unwrap().records != 45 {
        assert!(
            written.elapsed() < Duration::from_secs(30),
            "the follow task shipped nothing in 30 s"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    restores_equal(&repository, &store, dir.path(), "restored.db").await;
    store.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_passphrase_or_a_plain_repository_is_a_failed_step_that_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let repository_dir = dir.path().join("repository");
    let password_file = dir.path().join("password");
    std::fs::write(&password_file, "the wrong one\n").unwrap();
    Repository::create_encrypted(&repository_dir, &RepositoryKey::passphrase("the right one"))
        .await
        .unwrap();
    let store =
        Store::open(config(dir.path()).with_backup_repository_password_file(&password_file))
            .await
            .unwrap();
    store_players(&store, 10).await;
    let (is_ok, outcome) = backup_step(&store).await;
    assert!(!is_ok, "{outcome}");
    assert!(outcome.contains("not this repository's"), "{outcome}");
    store.close().await.unwrap();
    let repository =
        Repository::open_with_key(&repository_dir, &RepositoryKey::passphrase("the right one"))
            .await
            .unwrap();
    assert!(repository.list().await.unwrap().is_empty());

    // A plain repository is never written to under a configured key.
    std::fs::remove_dir_all(&repository_dir).unwrap();
    let plain = Repository::open_or_create(&repository_dir).await.unwrap();
    let store =
        Store::open(config(dir.path()).with_backup_repository_password_file(&password_file))
            .await
            .unwrap();
    let (is_ok, outcome) = backup_step(&store).await;
    assert!(!is_ok, "{outcome}");
    assert!(plain.list().await.unwrap().is_empty());

    // A password file that holds no passphrase is a clear error too.
    std::fs::write(&password_file, "\n").unwrap();
    let (is_ok, outcome) = backup_step(&store).await;
    assert!(!is_ok && outcome.contains("empty"), "{outcome}");
    store.close().await.unwrap();
}

#[tokio::test]
async fn an_s3_backup_repository_is_a_clear_error_of_the_backup_step_not_a_local_directory() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path()).with_backup_repository("s3://bucket/game");
    config.path = dir.path().join("store.db");
    let store = Store::open(config).await.unwrap();
    store_players(&store, 3).await;
    let (is_ok, outcome) = backup_step(&store).await;
    assert!(!is_ok, "{outcome}");
    assert!(outcome.contains("object storage"), "{outcome}");
    assert!(outcome.contains("backup copy"), "{outcome}");
    // Nothing was made of the URL on disk (no `s3:` directory beside the process).
    assert!(!Path::new("s3:").exists());
    store.close().await.unwrap();
}
