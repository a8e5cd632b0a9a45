//! `backup::Offsite`: a repository on the real S3-compatible server `.ci/run` starts, worked on
//! through local mirrors as two machines would (two cache directories): backups published
//! by one are listed, verified and restored by the other; a prune deletes on the server; an
//! unpublished session changes nothing there; the remote lock keeps a prune and other
//! sessions apart.

use std::path::Path;
use std::time::Duration;

use strongbox::Error;
use strongbox::backup::{Access, BackupRef, Offsite, Repository, Retention};

use super::{contents, restored, s3_bucket, store_players, value};
use crate::common::Harness;

/// A fresh prefix of the test bucket.
pub(super) fn fresh_url(bucket: &str, name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("s3://{bucket}/{name}-{nanos}")
}

/// Takes a backup of `harness`'s store through a write session of `url` mirrored in `cache`,
/// and publishes it.
async fn backup_offsite(harness: &Harness, url: &str, cache: &Path) {
    let offsite = Offsite::new(url, cache).unwrap();
    let session = offsite.open(Access::Write, |_| {}).await.unwrap();
    let repository = Repository::open_or_create(session.dir()).await.unwrap();
    repository.backup(&harness.store, |_| {}).await.unwrap();
    let report = session.publish(|_| {}).await.unwrap();
    assert_eq!(report.uploaded.backups_copied, 1, "{report:?}");
    session.close().await.unwrap();
}

/// A store of `players` players and a fresh prefix of the test bucket (`name-…`) holding one
/// backup of it, taken through a session mirrored in the harness's `a/`; `None` when there
/// is no S3 server.
async fn one_backup(name: &str, players: u64) -> Option<(Harness, String)> {
    let bucket = s3_bucket()?;
    let harness = Harness::sqlite().await;
    let url = fresh_url(&bucket, name);
    store_players(&harness.store, players).await;
    backup_offsite(&harness, &url, &harness.dir.path().join("a")).await;
    Some((harness, url))
}

/// The backups listed through a read session mirrored in `cache`.
async fn listed(url: &str, cache: &Path) -> usize {
    let session = Offsite::new(url, cache)
        .unwrap()
        .open(Access::Read, |_| {})
        .await
        .unwrap();
    let repository = Repository::open(session.dir()).await.unwrap();
    let count = repository.list().await.unwrap().len();
    session.close().await.unwrap();
    count
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backups_published_from_one_mirror_restore_equal_from_another() {
    let Some(bucket) = s3_bucket() else {
        return;
    };
    let harness = Harness::sqlite().await;
    let url = fresh_url(&bucket, "offsite");
    let (machine_a, machine_b) = (harness.dir.path().join("a"), harness.dir.path().join("b"));
    store_players(&harness.store, 200).await;
    backup_offsite(&harness, &url, &machine_a).await;
    // Half the records change twice: the second backup holds them as changes on the first,
    // too many to build on, so the third is whole and a prune to one backup deletes two.
    for round in 1..=2 {
        for i in 0..100 {
            let key = format!("p{i}");
            harness
                .store
                .store("players", &key, &value(round * 7_000 + i))
                .await
                .unwrap();
        }
        backup_offsite(&harness, &url, &machine_a).await;
    }

    let session = Offsite::new(&url, &machine_b)
        .unwrap()
        .open(Access::Read, |_| {})
        .await
        .unwrap();
    let repository = Repository::open(session.dir()).await.unwrap();
    assert_eq!(repository.list().await.unwrap().len(), 3);
    assert!(repository.verify(None, |_| {}).await.unwrap().is_clean());
    assert_eq!(
        restored(
            &repository,
            &BackupRef::Latest,
            harness.dir.path(),
            "from-b.db"
        )
        .await,
        contents(&harness.store).await
    );
    // A read session publishes nothing.
    let report = session.publish(|_| {}).await.unwrap();
    assert_eq!(report.uploaded.objects_copied, 0, "{report:?}");
    session.close().await.unwrap();

    // Machine B prunes to one backup; machine A's mirror then drops the pruned one.
    let session = Offsite::new(&url, &machine_b)
        .unwrap()
        .open(Access::Prune, |_| {})
        .await
        .unwrap();
    let repository = Repository::open(session.dir()).await.unwrap();
    let pruned = repository.prune(&Retention::last(1)).await.unwrap();
    assert_eq!(pruned.removed.len(), 2, "{pruned:?}");
    let report = session.publish(|_| {}).await.unwrap();
    assert!(report.objects_deleted >= 1, "{report:?}");
    session.close().await.unwrap();
    assert_eq!(listed(&url, &machine_a).await, 1);
    let fresh = harness.dir.path().join("c");
    assert_eq!(listed(&url, &fresh).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_that_is_not_published_changes_nothing_on_the_server() {
    let Some((harness, url)) = one_backup("unpublished", 50).await else {
        return;
    };
    let cache = harness.dir.path().join("a");
    {
        let session = Offsite::new(&url, &cache)
            .unwrap()
            .open(Access::Write, |_| {})
            .await
            .unwrap();
        let repository = Repository::open(session.dir()).await.unwrap();
        repository.backup(&harness.store, |_| {}).await.unwrap();
        assert_eq!(repository.list().await.unwrap().len(), 2);
        // Killed here: never published, the lock released.
        session.close().await.unwrap();
    }
    // The next session's mirror is the server's again: one backup.
    assert_eq!(listed(&url, &cache).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prune_waits_for_a_running_session_then_times_out_with_a_notice() {
    let Some((harness, url)) = one_backup("locked", 20).await else {
        return;
    };
    let reading = Offsite::new(&url, harness.dir.path().join("a"))
        .unwrap()
        .open(Access::Read, |_| {})
        .await
        .unwrap();
    // Another shared session goes ahead beside it.
    let other = Offsite::new(&url, harness.dir.path().join("b"))
        .unwrap()
        .open(Access::Read, |_| {})
        .await
        .unwrap();
    other.close().await.unwrap();
    let told = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let notices = std::sync::Arc::clone(&told);
    let prune = Offsite::new(&url, harness.dir.path().join("c"))
        .unwrap()
        .with_lock_timeout(Duration::from_millis(600))
        .with_lock_notice(move |notice| notices.lock().unwrap().push(notice.to_string()));
    let error = prune.open(Access::Prune, |_| {}).await.unwrap_err();
    assert!(matches!(error, Error::LockTimeout { .. }), "{error:?}");
    assert_eq!(told.lock().unwrap().len(), 1, "{told:?}");
    reading.close().await.unwrap();
    // Once the reader is gone, the prune goes ahead, and shuts readers out meanwhile.
    let pruning = prune.open(Access::Prune, |_| {}).await.unwrap();
    let reader = Offsite::new(&url, harness.dir.path().join("b"))
        .unwrap()
        .with_lock_timeout(Duration::from_millis(300));
    let error = reader.open(Access::Read, |_| {}).await.unwrap_err();
    assert!(matches!(error, Error::LockTimeout { .. }), "{error:?}");
    pruning.close().await.unwrap();
    reader
        .open(Access::Read, |_| {})
        .await
        .unwrap()
        .close()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reading_a_prefix_without_a_repository_is_a_clear_error() {
    let Some(bucket) = s3_bucket() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_url(&bucket, "empty");
    let error = Offsite::new(&url, dir.path())
        .unwrap()
        .open(Access::Read, |_| {})
        .await
        .unwrap_err();
    assert!(matches!(error, Error::InvalidConfig(_)), "{error:?}");
    assert!(
        error
            .to_string()
            .contains("not a Strongbox backup repository"),
        "{error}"
    );
    let error = Offsite::new("/not/a/url", dir.path()).unwrap_err();
    assert!(matches!(error, Error::InvalidConfig(_)), "{error:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_through_a_server_that_drops_connections_retry_and_restore_equal() {
    let Some(bucket) = s3_bucket() else {
        return;
    };
    let endpoint = std::env::var("AWS_ENDPOINT_URL").unwrap();
    let upstream = endpoint
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let (port, broken) = super::copy::flaky_proxy(upstream).await;
    let harness = Harness::sqlite().await;
    let url = format!(
        "{}?endpoint=http://127.0.0.1:{port}",
        fresh_url(&bucket, "flaky-offsite")
    );
    store_players(&harness.store, 200).await;
    backup_offsite(&harness, &url, &harness.dir.path().join("a")).await;
    harness
        .store
        .store("players", "p9", &value(9_000))
        .await
        .unwrap();
    backup_offsite(&harness, &url, &harness.dir.path().join("a")).await;
    let session = Offsite::new(&url, harness.dir.path().join("b"))
        .unwrap()
        .open(Access::Read, |_| {})
        .await
        .unwrap();
    let repository = Repository::open(session.dir()).await.unwrap();
    assert!(repository.verify(None, |_| {}).await.unwrap().is_clean());
    assert_eq!(
        restored(
            &repository,
            &BackupRef::Latest,
            harness.dir.path(),
            "from-flaky.db"
        )
        .await,
        contents(&harness.store).await
    );
    session.close().await.unwrap();
    let broken = broken.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        broken > 0,
        "the proxy broke no connection: it tested nothing"
    );
}

/// The bucket of `url` reached directly (to plant or damage objects), and the URL's prefix.
fn raw_bucket(url: &str) -> (object_store::aws::AmazonS3, String) {
    let (bucket, prefix) = url.trim_start_matches("s3://").split_once('/').unwrap();
    let store = object_store::aws::AmazonS3Builder::from_env()
        .with_bucket_name(bucket)
        .build()
        .unwrap();
    (store, prefix.to_owned())
}

/// Writes an exclusive lock object into `url`'s `locks/`, naming `pid` on this machine.
pub(super) async fn plant_lock(url: &str, pid: u32) {
    use object_store::ObjectStore as _;
    let (store, prefix) = raw_bucket(url);
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let body = serde_json::json!({ "exclusive": true, "pid": pid, "host": host.trim() });
    let name = format!("{prefix}/locks/exclusive-{pid:032x}");
    store
        .put(
            &object_store::path::Path::from(name),
            body.to_string().into_bytes().into(),
        )
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_of_a_process_gone_from_this_machine_is_stale_at_once() {
    let Some((harness, url)) = one_backup("dead-lock", 10).await else {
        return;
    };
    // A running process's lock (this one's) stays in the way until the timeout.
    plant_lock(&url, std::process::id()).await;
    let reader = Offsite::new(&url, harness.dir.path().join("b"))
        .unwrap()
        .with_lock_timeout(Duration::from_millis(300));
    let error = reader.open(Access::Read, |_| {}).await.unwrap_err();
    assert!(matches!(error, Error::LockTimeout { .. }), "{error:?}");
    // A killed process's lock is deleted by the next command, which goes ahead.
    let mut gone = std::process::Command::new("true").spawn().unwrap();
    let dead = gone.id();
    gone.wait().unwrap();
    // Only the dead process's lock is left once this process's is removed.
    delete_lock(&url, std::process::id()).await;
    plant_lock(&url, dead).await;
    let session = reader.open(Access::Read, |_| {}).await.unwrap();
    session.close().await.unwrap();
}

/// Deletes the lock [`plant_lock`] wrote for `pid`.
async fn delete_lock(url: &str, pid: u32) {
    use object_store::ObjectStore as _;
    let (store, prefix) = raw_bucket(url);
    let name = format!("{prefix}/locks/exclusive-{pid:032x}");
    store
        .delete(&object_store::path::Path::from(name))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_into_the_bucket_waits_for_a_running_prune() {
    let Some((harness, url)) = one_backup("copy-waits", 20).await else {
        return;
    };
    // A local copy of the same repository, with one more backup to copy up.
    let local_dir = harness.dir.path().join("local");
    strongbox::backup::copy(&url, local_dir.to_str().unwrap(), |_| {})
        .await
        .unwrap();
    let local = Repository::open(&local_dir).await.unwrap();
    local.backup(&harness.store, |_| {}).await.unwrap();
    let pruning = Offsite::new(&url, harness.dir.path().join("b"))
        .unwrap()
        .open(Access::Prune, |_| {})
        .await
        .unwrap();
    let from = local.dir().display().to_string();
    // With a lock timeout, the copy gives up, having told its wait once.
    let told = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let count = std::sync::Arc::clone(&told);
    let error = strongbox::backup::copy_with_lock_timeout(
        &from,
        &url,
        Duration::from_millis(300),
        move |_| {
            count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        },
        |_| {},
    )
    .await
    .unwrap_err();
    assert!(matches!(error, Error::LockTimeout { .. }), "{error:?}");
    assert_eq!(told.load(std::sync::atomic::Ordering::Relaxed), 1);
    // Without one, it waits for the prune to end.
    let copying = tokio::spawn({
        let url = url.clone();
        async move { strongbox::backup::copy(&from, &url, |_| {}).await }
    });
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(!copying.is_finished(), "the copy went ahead during a prune");
    pruning.close().await.unwrap();
    let report = tokio::time::timeout(Duration::from_secs(30), copying)
        .await
        .expect("the copy still waits after the prune ended")
        .unwrap()
        .unwrap();
    assert_eq!(report.backups_copied, 1, "{report:?}");
    assert_eq!(listed(&url, &harness.dir.path().join("c")).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_object_in_the_bucket_is_found_by_verify_through_a_mirror() {
    use futures_util::TryStreamExt as _;
    use object_store::ObjectStore as _;
    let Some((harness, url)) = one_backup("damaged", 100).await else {
        return;
    };
    // One byte of the largest pack changes in the bucket itself.
    let (store, prefix) = raw_bucket(&url);
    let packs = object_store::path::Path::from(format!("{prefix}/packs"));
    let objects: Vec<object_store::ObjectMeta> =
        store.list(Some(&packs)).try_collect().await.unwrap();
    let largest = objects.iter().max_by_key(|meta| meta.size).unwrap();
    let mut bytes = store
        .get(&largest.location)
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .to_vec();
    bytes[200] ^= 0x10;
    store.put(&largest.location, bytes.into()).await.unwrap();

    let session = Offsite::new(&url, harness.dir.path().join("b"))
        .unwrap()
        .open(Access::Read, |_| {})
        .await
        .unwrap();
    let repository = Repository::open(session.dir()).await.unwrap();
    let report = repository.verify(None, |_| {}).await.unwrap();
    assert!(!report.is_clean(), "{report:?}");
    let error = repository
        .restore(
            &BackupRef::Latest,
            &strongbox::Config::new(harness.dir.path().join("from-damaged.db")),
            &strongbox::backup::RestoreOptions::all(),
            |_| {},
        )
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Corrupt { .. }), "{error:?}");
    session.close().await.unwrap();
}
