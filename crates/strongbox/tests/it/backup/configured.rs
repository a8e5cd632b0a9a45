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

/// Without the `s3` feature, an `s3://` repository is a clear error of the backup step, never
/// a local directory named `s3:`.
#[cfg(not(feature = "s3"))]
#[tokio::test]
async fn without_s3_support_an_s3_backup_repository_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(config(dir.path()).with_backup_repository("s3://bucket/game"))
        .await
        .unwrap();
    store_players(&store, 3).await;
    let (is_ok, outcome) = backup_step(&store).await;
    assert!(!is_ok, "{outcome}");
    assert!(outcome.contains("no S3 support"), "{outcome}");
    assert!(!Path::new("s3:").exists());
    store.close().await.unwrap();
}

/// A store backing up to an `s3://` repository (the S3 server `.ci/run` starts), encrypted:
/// its scheduled backup and its follow task publish through the mirror in
/// `backup_cache_dir`, and another machine's mirror reads them back, equal; the backup-age
/// gauge's source sees the newest.
#[cfg(feature = "s3")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_and_continuous_backups_go_to_an_s3_repository() {
    use strongbox::backup::{Access, Offsite};
    let Some(bucket) = super::s3_bucket() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let url = super::offsite::fresh_url(&bucket, "configured");
    let key_file = dir.path().join("backups.key");
    std::fs::write(&key_file, [9u8; 32]).unwrap();
    let mut config = config(dir.path())
        .with_backup_repository(&url)
        .with_backup_repository_key_file(&key_file);
    config.backup_cache_dir = Some(dir.path().join("cache"));
    config.backup_follow_secs = 1;
    let store = Store::open(config).await.unwrap();
    store_players(&store, 30).await;
    let (is_ok, outcome) = backup_step(&store).await;
    assert!(is_ok, "{outcome}");

    let key = RepositoryKey::from_file(&key_file).unwrap();
    let elsewhere = Offsite::new(&url, dir.path().join("elsewhere")).unwrap();
    let newest_of = |records: u64| {
        let elsewhere = elsewhere.clone();
        let key = key.clone();
        async move {
            let session = elsewhere.open(Access::Read, |_| {}).await.unwrap();
            let repository = Repository::open_with_key(session.dir(), &key)
                .await
                .unwrap();
            let newest = repository.list().await.unwrap().last().map(|b| b.records);
            session.close().await.unwrap();
            newest == Some(records)
        }
    };
    assert!(newest_of(30).await);
    assert!(elsewhere.newest_backup_ms().await.unwrap().is_some());

    // The follow task ships later writes there too.
    store_players(&store, 45).await;
    let written = Instant::now();
    while !newest_of(45).await {
        assert!(
            written.elapsed() < Duration::from_secs(30),
            "the follow task shipped nothing to {url} in 30 s"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let session = elsewhere.open(Access::Read, |_| {}).await.unwrap();
    let repository = Repository::open_with_key(session.dir(), &key)
        .await
        .unwrap();
    assert!(repository.is_encrypted());
    restores_equal(&repository, &store, dir.path(), "restored.db").await;
    session.close().await.unwrap();
    store.close().await.unwrap();
}

/// A maintenance run with no backup due asks an `s3://` repository with one listing and takes
/// no session: another machine's exclusive lock on the repository (a live process's, here
/// this one's) does not hold it up, nor fail its backup step.
#[cfg(feature = "s3")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_not_due_on_s3_takes_no_lock() {
    let Some(bucket) = super::s3_bucket() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let url = super::offsite::fresh_url(&bucket, "not-due");
    let mut config = config(dir.path()).with_backup_repository(&url);
    config.backup_cache_dir = Some(dir.path().join("cache"));
    config.backup_interval_secs = 3_600;
    let store = Store::open(config).await.unwrap();
    store_players(&store, 10).await;
    let (is_ok, outcome) = backup_step(&store).await;
    assert!(is_ok && outcome.starts_with("backup "), "{outcome}");

    super::offsite::plant_lock(&url, std::process::id()).await;
    // A session would wait for the lock (a minute for a store's own work), then fail.
    let (is_ok, outcome) = tokio::time::timeout(Duration::from_secs(20), backup_step(&store))
        .await
        .expect("a maintenance run with no backup due waited for the repository's lock");
    assert!(is_ok, "{outcome}");
    assert_eq!(outcome, "not due yet");
    store.close().await.unwrap();
}
