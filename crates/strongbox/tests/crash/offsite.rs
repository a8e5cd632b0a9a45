//! The crash harness's offsite part (with the `s3` feature and the S3 server `.ci/run`
//! starts): children work on an `s3://` repository through sessions on one shared mirror —
//! backups, follow steps and prunes, each published — and are killed in the middle of them,
//! leaving lock objects, half-written mirrors and half-published sessions. The parent then
//! reads the bucket through a fresh mirror: it must verify, and every backup it lists must
//! restore to a state the children committed.

use std::path::Path;

use strongbox::Store;
use strongbox::backup::{Access, Offsite, Repository, Retention};

/// The variable through which the parent gives its children the repository's URL.
pub const URL_VARIABLE: &str = "STRONGBOX_CRASH_S3_URL";

/// The URL of a fresh prefix of the test bucket (the parent gives it to its children in
/// [`URL_VARIABLE`]); `None` when there is no S3 server (skipped, said once), unless
/// `STRONGBOX_REQUIRE_S3` is set.
pub fn start() -> Option<String> {
    let bucket = std::env::var("STRONGBOX_TEST_S3_BUCKET")
        .ok()
        .filter(|bucket| !bucket.is_empty());
    let Some(bucket) = bucket else {
        assert!(
            std::env::var_os("STRONGBOX_REQUIRE_S3").is_none(),
            "STRONGBOX_REQUIRE_S3 is set but no S3 server is configured"
        );
        println!("crash harness: offsite sessions skipped (no S3 server)");
        return None;
    };
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    Some(format!("s3://{bucket}/crash-{nanos}"))
}

/// One session of a child, chosen by `pick` (0..6): a prune one time in three, else a backup
/// or a follow step; published, then closed. Returns what it did, or `None` when there was
/// nothing to prune yet.
pub async fn session(store: &Store, db: &Path, pick: u64) -> Option<&'static str> {
    let url = std::env::var(URL_VARIABLE).ok()?;
    let offsite = Offsite::new(&url, db.with_extension("mirror")).unwrap();
    let access = if pick.is_multiple_of(3) {
        Access::Prune
    } else {
        Access::Write
    };
    let session = offsite.open(access, |_| {}).await.unwrap();
    let done = if access == Access::Prune {
        let repository = match Repository::open(session.dir()).await {
            Ok(repository) => repository,
            // No repository yet: a prune waits for a first backup.
            Err(strongbox::Error::InvalidConfig(_)) => {
                session.close().await.unwrap();
                return None;
            }
            Err(error) => panic!("open the mirror of {url}: {error}"),
        };
        repository.prune(&Retention::last(2)).await.unwrap();
        "offsite prune"
    } else {
        let repository = Repository::open_or_create(session.dir()).await.unwrap();
        if pick.is_multiple_of(2) {
            repository.backup(store, |_| {}).await.unwrap();
            "offsite backup"
        } else {
            repository.follower(store).step().await.unwrap();
            "offsite follow"
        }
    };
    session.publish(|_| {}).await.unwrap();
    session.close().await.unwrap();
    Some(done)
}

/// Reads the bucket through a fresh mirror under `dir`: it verifies, then `check_backups`
/// restores every backup it lists. Returns how many it lists: nothing yet (no child got to
/// publish) is fine.
pub async fn check<F, Fut>(url: &str, dir: &Path, check_backups: F) -> usize
where
    F: FnOnce(Repository) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let cache = dir.join(format!("check-mirror-{}", std::process::id()));
    let offsite = Offsite::new(url, &cache).unwrap();
    let session = match offsite.open(Access::Read, |_| {}).await {
        Ok(session) => session,
        Err(strongbox::Error::InvalidConfig(_)) => return 0,
        Err(error) => panic!("open {url}: {error}"),
    };
    let repository = Repository::open(session.dir()).await.unwrap();
    let report = repository.verify(None, |_| {}).await.unwrap();
    assert!(report.is_clean(), "{url}: {:?}", report.damage);
    let listed = repository.list().await.unwrap().len();
    check_backups(repository).await;
    session.close().await.unwrap();
    listed
}
