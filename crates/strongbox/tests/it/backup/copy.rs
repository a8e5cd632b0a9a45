//! `backup::copy`: a repository copied to another directory or to a real S3-compatible server
//! (the one `.ci/run` starts) restores equal, a second copy writes only what is new, and
//! damage at the source stops the copy before any backup reaches the destination.

use std::path::Path;

use strongbox::Error;
use strongbox::backup::{BackupRef, copy};

#[cfg(feature = "s3")]
use super::s3_bucket;
use super::{contents, files_under, new_repository, restored, store_players, value};
use crate::common::Harness;

/// Two backups with a change between them.
async fn two_backups(harness: &Harness) -> strongbox::backup::Repository {
    let store = &harness.store;
    let repository = new_repository(harness).await;
    store_players(store, 200).await;
    repository.backup(store, |_| {}).await.unwrap();
    store.store("players", "p7", &value(7_000)).await.unwrap();
    repository.backup(store, |_| {}).await.unwrap();
    repository
}

async fn restores_equal(location: &str, harness: &Harness, name: &str) {
    let repository = strongbox::backup::Repository::open(location).await.unwrap();
    assert!(repository.verify(None, |_| {}).await.unwrap().is_clean());
    assert_eq!(
        restored(&repository, &BackupRef::Latest, harness.dir.path(), name).await,
        contents(&harness.store).await
    );
}

fn text(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_restores_equal_and_a_second_copy_writes_only_what_is_new() {
    let harness = Harness::sqlite().await;
    let repository = two_backups(&harness).await;
    let offsite = harness.dir.path().join("offsite");
    let first = copy(text(repository.dir()), text(&offsite), |_| {})
        .await
        .unwrap();
    assert_eq!(first.backups_copied, 2, "{first:?}");
    assert_eq!(first.objects_present, 0);
    restores_equal(text(&offsite), &harness, "from-copy.db").await;

    let again = copy(text(repository.dir()), text(&offsite), |_| {})
        .await
        .unwrap();
    assert_eq!(again.objects_copied, 0, "{again:?}");

    harness
        .store
        .store("players", "p8", &value(8_000))
        .await
        .unwrap();
    repository.backup(&harness.store, |_| {}).await.unwrap();
    let third = copy(text(repository.dir()), text(&offsite), |_| {})
        .await
        .unwrap();
    assert_eq!(third.backups_copied, 1, "{third:?}");
    assert!(
        third.bytes_copied * 5 < first.bytes_copied,
        "{third:?} after {first:?}"
    );
    restores_equal(text(&offsite), &harness, "from-copy-2.db").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damage_at_the_source_stops_the_copy_before_any_backup() {
    let harness = Harness::sqlite().await;
    let repository = two_backups(&harness).await;
    let pack = files_under(&repository.dir().join("packs"))
        .into_iter()
        .max_by_key(|path| std::fs::metadata(path).unwrap().len())
        .unwrap();
    let mut bytes = std::fs::read(&pack).unwrap();
    bytes[100] ^= 0x40;
    std::fs::write(&pack, bytes).unwrap();
    let offsite = harness.dir.path().join("offsite");
    let error = copy(text(repository.dir()), text(&offsite), |_| {})
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Corrupt { .. }), "{error:?}");
    assert!(error.to_string().contains("does not hash"), "{error}");
    let manifests = offsite.join("manifests");
    assert!(!manifests.exists() || files_under(&manifests).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_refuses_another_repository_and_a_non_repository() {
    let harness = Harness::sqlite().await;
    let repository = two_backups(&harness).await;
    let other = harness.dir.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(
        other.join("strongbox-backup.json"),
        br#"{"format": "strongbox-backup", "version": 1}"#,
    )
    .unwrap();
    let error = copy(text(repository.dir()), text(&other), |_| {})
        .await
        .unwrap_err();
    assert!(error.to_string().contains("another repository"), "{error}");
    let nothing = harness.dir.path().join("nothing");
    let error = copy(text(&nothing), text(&other), |_| {})
        .await
        .unwrap_err();
    assert!(
        matches!(error, Error::InvalidConfig(_) | Error::Io { .. }),
        "{error:?}"
    );
}

#[cfg(feature = "s3")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repository_copied_to_s3_and_back_restores_equal() {
    let Some(bucket) = s3_bucket() else {
        return;
    };
    let harness = Harness::sqlite().await;
    let repository = two_backups(&harness).await;
    let prefix = format!(
        "s3://{bucket}/copy-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let up = copy(text(repository.dir()), &prefix, |_| {}).await.unwrap();
    assert_eq!(up.backups_copied, 2, "{up:?}");
    let again = copy(text(repository.dir()), &prefix, |_| {}).await.unwrap();
    assert_eq!(again.objects_copied, 0, "{again:?}");
    let back = harness.dir.path().join("back");
    let down = copy(&prefix, text(&back), |_| {}).await.unwrap();
    assert_eq!(down.objects_copied, up.objects_copied, "{down:?}");
    restores_equal(text(&back), &harness, "from-s3.db").await;
}

#[tokio::test]
async fn an_s3_url_without_a_bucket_is_refused() {
    let error = copy("/nonexistent", "s3:///prefix", |_| {})
        .await
        .unwrap_err();
    assert!(matches!(error, Error::InvalidConfig(_)), "{error:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_encrypted_repository_is_copied_sealed_and_opens_with_its_key() {
    use strongbox::backup::{Repository, RepositoryKey};
    let harness = Harness::sqlite().await;
    let key = RepositoryKey::from_bytes([7; 32]);
    let sealed = harness.dir.path().join("sealed");
    let repository = Repository::create_encrypted(&sealed, &key).await.unwrap();
    store_players(&harness.store, 50).await;
    repository.backup(&harness.store, |_| {}).await.unwrap();
    let offsite = harness.dir.path().join("offsite");
    let report = copy(text(&sealed), text(&offsite), |_| {}).await.unwrap();
    assert_eq!(report.backups_copied, 1, "{report:?}");
    let error = Repository::open(&offsite).await.unwrap_err();
    assert!(matches!(error, Error::RepositoryKey { .. }), "{error:?}");
    let copied = Repository::open_with_key(&offsite, &key).await.unwrap();
    assert!(copied.verify(None, |_| {}).await.unwrap().is_clean());
    assert_eq!(
        restored(
            &copied,
            &BackupRef::Latest,
            harness.dir.path(),
            "from-sealed-copy.db"
        )
        .await,
        contents(&harness.store).await
    );
}

/// A TCP proxy in front of the S3 server that breaks connections: of each four it accepts,
/// one is closed at once, one has its requests cut after 64 KiB and one its answers after 64
/// bytes. Returns its port and the count of connections it broke.
#[cfg(feature = "s3")]
pub(super) async fn flaky_proxy(
    upstream: String,
) -> (u16, std::sync::Arc<std::sync::atomic::AtomicU64>) {
    use std::sync::atomic::{AtomicU64, Ordering};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let broken = std::sync::Arc::new(AtomicU64::new(0));
    let counted = std::sync::Arc::clone(&broken);
    tokio::spawn(async move {
        for n in 0u64.. {
            let Ok((mut client, _)) = listener.accept().await else {
                return;
            };
            let upstream = upstream.clone();
            let broken = std::sync::Arc::clone(&counted);
            tokio::spawn(async move {
                if n % 4 == 1 {
                    broken.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                let Ok(mut server) = tokio::net::TcpStream::connect(&upstream).await else {
                    return;
                };
                // One connection in four has its requests cut after 64 KiB, one its answers
                // after 64 bytes, and one passes whole (until the client closes it).
                let (up, down) = match n % 4 {
                    2 => (64 << 10, usize::MAX),
                    3 => (usize::MAX, 64),
                    _ => (usize::MAX, usize::MAX),
                };
                let (mut client_read, mut client_write) = client.split();
                let (mut server_read, mut server_write) = server.split();
                let is_cut = tokio::select! {
                    cut = relay(&mut client_read, &mut server_write, up) => cut,
                    cut = relay(&mut server_read, &mut client_write, down) => cut,
                };
                if is_cut {
                    broken.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
    });
    (port, broken)
}

/// Copies bytes until `budget` of them went through (`true`: cut there) or the stream ends.
#[cfg(feature = "s3")]
async fn relay(
    from: &mut (impl tokio::io::AsyncRead + Unpin),
    to: &mut (impl tokio::io::AsyncWrite + Unpin),
    budget: usize,
) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buffer = vec![0u8; 16 << 10];
    let mut sent = 0;
    while sent < budget {
        let room = buffer.len().min(budget - sent);
        match from.read(&mut buffer[..room]).await {
            Ok(0) | Err(_) => return false,
            Ok(read) => {
                if to.write_all(&buffer[..read]).await.is_err() {
                    return false;
                }
                sent += read;
            }
        }
    }
    true
}

#[cfg(feature = "s3")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_through_a_server_that_drops_connections_retries_and_restores_equal() {
    let Some(bucket) = s3_bucket() else {
        return;
    };
    let endpoint = std::env::var("AWS_ENDPOINT_URL").unwrap();
    let upstream = endpoint
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let (port, broken) = flaky_proxy(upstream).await;
    let harness = Harness::sqlite().await;
    let repository = two_backups(&harness).await;
    let prefix = format!(
        "s3://{bucket}/flaky-{}?endpoint=http://127.0.0.1:{port}",
        std::process::id()
    );
    let up = copy(text(repository.dir()), &prefix, |_| {}).await.unwrap();
    assert_eq!(up.backups_copied, 2, "{up:?}");
    let back = harness.dir.path().join("back");
    copy(&prefix, text(&back), |_| {}).await.unwrap();
    let broken = broken.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        broken > 0,
        "the proxy broke no connection: it tested nothing"
    );
    println!("flaky S3: {broken} connections broken, the copies retried through them");
    restores_equal(text(&back), &harness, "from-flaky-s3.db").await;
}
