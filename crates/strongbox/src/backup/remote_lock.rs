//! The lock of a repository on object storage, where there is no `flock`: lock objects under
//! `locks/`, as restic does.
//!
//! A process that wants the lock writes `locks/<mode>-<32 random hex digits>` (`shared` for
//! backups, reads and restores; `exclusive` for prune), then lists `locks/`. It holds the lock
//! when no other fresh lock is in the way (for a shared lock: no exclusive one; for an
//! exclusive lock: none at all); otherwise it deletes its own object and tries again after a
//! jittered pause, telling the [`LockNotice`] once and failing with [`Error::LockTimeout`]
//! after the timeout. S3 lists what was written before the listing began (strong
//! read-after-write consistency), so of two processes that race, at least one sees the other:
//! both may back off, never both go ahead.
//!
//! A held lock is written again every [`REFRESH`]; one whose last write is more than
//! [`STALE_MS`] older than the newest lock in the same listing (times are the server's, so
//! clocks of the clients never matter) belongs to a killed process: it is ignored, and
//! deleted by whoever sees it. So is at once a lock in the way whose body names this machine
//! and a process that no longer runs here (as restic does).
//!
//! **Invariant:** while a process holds an exclusive lock, no other process holds any lock of
//! the same prefix, unless the holder stopped refreshing for [`STALE_MS`].

use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::id::random_u32;
use super::lock::{LockNotice, LockWait};
use super::remote::Remote;
use crate::error::{Error, Result};

/// How often a held lock is written again.
const REFRESH: Duration = Duration::from_secs(60);

/// A lock not written again for this long (5 minutes) is a killed process's.
const STALE_MS: i64 = 5 * 60 * 1000;

/// The first pause between two tries; each pause doubles up to [`MAX_PAUSE`], plus jitter.
const FIRST_PAUSE: Duration = Duration::from_millis(50);

/// The longest pause between two tries.
const MAX_PAUSE: Duration = Duration::from_secs(2);

/// A held lock on a remote repository: released by [`RemoteLock::release`] (or, when dropped,
/// by a task on the runtime; at worst it goes stale).
#[derive(Debug)]
pub(crate) struct RemoteLock {
    remote: Remote,
    name: String,
    refresh: Option<tokio::task::JoinHandle<()>>,
}

impl RemoteLock {
    /// Takes the lock of `remote`, shared or `exclusive`, waiting as `wait` says.
    ///
    /// # Errors
    /// `Error::LockTimeout` when other processes held it past the timeout; `Error::Io` when
    /// the server cannot be reached (after `object_store`'s retries).
    pub(crate) async fn acquire(remote: &Remote, exclusive: bool, wait: &LockWait) -> Result<Self> {
        let started = Instant::now();
        let mut pause = FIRST_PAUSE;
        let mut told = false;
        loop {
            let name = format!(
                "locks/{}-{:08x}{:08x}{:08x}{:08x}",
                if exclusive { "exclusive" } else { "shared" },
                random_u32(),
                random_u32(),
                random_u32(),
                random_u32()
            );
            remote.put(&name, lock_body(exclusive)).await?;
            let blocked = match blockers(remote, &name, exclusive).await {
                Ok(blocked) => blocked,
                Err(error) => {
                    let _ = remote.delete(&name).await;
                    return Err(error);
                }
            };
            if !blocked {
                let refresh = tokio::spawn(refresh(remote.clone(), name.clone(), exclusive));
                return Ok(RemoteLock {
                    remote: remote.clone(),
                    name,
                    refresh: Some(refresh),
                });
            }
            remote.delete(&name).await?;
            let holder = if exclusive {
                "running backups, restores or checks, or a prune"
            } else {
                "a running prune"
            };
            if !told {
                told = true;
                wait.tell(&LockNotice {
                    repository: PathBuf::from(remote.describe()),
                    holder,
                    timeout: wait.timeout(),
                });
            }
            let waited = started.elapsed();
            if wait.timeout().is_some_and(|timeout| waited >= timeout) {
                return Err(Error::LockTimeout {
                    repository: remote.describe(),
                    holder: holder.to_owned(),
                    waited_ms: u64::try_from(waited.as_millis()).unwrap_or(u64::MAX),
                });
            }
            let jitter = Duration::from_millis(u64::from(random_u32() % 100));
            tokio::time::sleep(pause + jitter).await;
            pause = (pause * 2).min(MAX_PAUSE);
        }
    }

    /// Gives the lock up: its object is deleted.
    ///
    /// # Errors
    /// `Error::Io` when the server cannot be reached (the lock then goes stale by itself).
    pub(crate) async fn release(mut self) -> Result<()> {
        if let Some(refresh) = self.refresh.take() {
            refresh.abort();
        }
        self.remote.delete(&self.name).await
    }
}

impl Drop for RemoteLock {
    fn drop(&mut self) {
        let Some(refresh) = self.refresh.take() else {
            return;
        };
        refresh.abort();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let (remote, name) = (self.remote.clone(), std::mem::take(&mut self.name));
            runtime.spawn(async move { remote.delete(&name).await });
        }
    }
}

/// What a lock object holds: who took it (for a person looking at the bucket, and for
/// [`is_dead_here`]).
fn lock_body(exclusive: bool) -> Vec<u8> {
    serde_json::json!({ "exclusive": exclusive, "pid": std::process::id(), "host": host_name() })
        .to_string()
        .into_bytes()
}

/// This machine's name (Linux's `/proc/sys/kernel/hostname`, else `$HOSTNAME`), empty when
/// unknown.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|name| name.trim().to_owned())
        .unwrap_or_default()
}

/// Whether the lock `name` was taken by a process of this machine that no longer runs (as
/// restic checks): it is then stale at once instead of after [`STALE_MS`]. Only where
/// `/proc` tells whether a process runs; a reused process id only makes it wait for the time.
async fn is_dead_here(remote: &Remote, name: &str) -> bool {
    let Ok(body) = remote.get(name).await else {
        return false;
    };
    let Ok(body) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return false;
    };
    let here = host_name();
    let pid = body.get("pid").and_then(serde_json::Value::as_u64);
    let host = body.get("host").and_then(serde_json::Value::as_str);
    match (pid, host) {
        (Some(pid), Some(host)) if !here.is_empty() && host == here => {
            std::path::Path::new("/proc/self").exists()
                && !std::path::Path::new("/proc").join(pid.to_string()).exists()
        }
        _ => false,
    }
}

/// Whether another fresh lock is in the way of `mine`; stale locks seen are deleted.
async fn blockers(remote: &Remote, mine: &str, exclusive: bool) -> Result<bool> {
    let locks = remote.list_times("locks/").await?;
    let Some(now) = locks.iter().map(|(_, time)| *time).max() else {
        return Err(Error::Io {
            action: format!("take the lock of {}", remote.describe()),
            source: std::io::Error::other("the lock just written is not listed"),
        });
    };
    let mut blocked = false;
    for (name, time) in &locks {
        if name == mine {
            continue;
        }
        let is_in_the_way = exclusive || name.starts_with("locks/exclusive-");
        if now - time > STALE_MS || (is_in_the_way && is_dead_here(remote, name).await) {
            let _ = remote.delete(name).await;
        } else if is_in_the_way {
            blocked = true;
        }
    }
    Ok(blocked)
}

/// Writes the lock again every [`REFRESH`] until aborted.
async fn refresh(remote: Remote, name: String, exclusive: bool) {
    loop {
        tokio::time::sleep(REFRESH).await;
        if let Err(error) = remote.put(&name, lock_body(exclusive)).await {
            tracing::warn!(%error, lock = %name, "could not refresh a repository lock");
        }
    }
}
