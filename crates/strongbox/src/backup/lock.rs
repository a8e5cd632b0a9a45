//! Waiting for the repository lock: a notice when another process holds it, and a timeout.
//!
//! The lock is an `flock` on the repository's `lock` file (see [`Repository::lock`]): shared
//! for backup, list, verify, check, restore and browsing, exclusive for prune. A call first
//! tries to take it without waiting; when another process holds it, the repository's
//! [`LockNotice`] callback is told once, then the call waits, blocking when there is no
//! timeout, else polling until the lock is free or the timeout has passed
//! ([`Error::LockTimeout`]).
//!
//! **Invariant:** a call that gives up holds nothing and has done nothing.

use std::fmt;
use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::files::io_error;
use super::repository::{LockMode, Repository};
use crate::error::{Error, Result};

/// The first pause between two tries while waiting with a timeout; each pause doubles, up to
/// [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(10);

/// The longest pause between two tries.
const MAX_PAUSE: Duration = Duration::from_millis(250);

/// Told once when a call finds the repository lock held and starts to wait.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockNotice {
    /// The repository's directory.
    pub repository: PathBuf,
    /// Who holds the lock, as far as the kind of lock tells: `"a running prune"` when a
    /// shared lock waits, `"running backups, restores or checks, or a prune"` when a prune
    /// waits.
    pub holder: &'static str,
    /// How long the call will wait before it fails with [`Error::LockTimeout`] (`None`: as
    /// long as it takes).
    pub timeout: Option<Duration>,
}

impl fmt::Display for LockNotice {
    /// `waiting for the repository lock held by a running prune (giving up after 60s)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "waiting for the repository lock held by {} ({})",
            self.holder,
            self.repository.display()
        )?;
        match self.timeout {
            Some(timeout) => write!(f, "; giving up after {}s", timeout.as_secs_f64()),
            None => Ok(()),
        }
    }
}

/// A callback told when a call starts to wait for the lock.
type NoticeFn = Arc<dyn Fn(&LockNotice) + Send + Sync>;

/// How a repository's calls wait for its lock; see [`Repository::with_lock_timeout`].
#[derive(Clone, Default)]
pub(crate) struct LockWait {
    timeout: Option<Duration>,
    notice: Option<NoticeFn>,
}

impl fmt::Debug for LockWait {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockWait")
            .field("timeout", &self.timeout)
            .field("has_notice", &self.notice.is_some())
            .finish()
    }
}

impl LockWait {
    /// How long to wait (`None`: as long as it takes).
    pub(crate) fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// This wait, with a timeout.
    pub(crate) fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// This wait, telling `notice`.
    pub(crate) fn with_notice(mut self, notice: NoticeFn) -> Self {
        self.notice = Some(notice);
        self
    }

    /// Tells the notice callback, if there is one.
    pub(crate) fn tell(&self, notice: &LockNotice) {
        if let Some(callback) = &self.notice {
            callback(notice);
        }
    }
}

/// Two repositories are equal when they are the same directory waiting as long; the notice
/// callbacks are not compared.
impl PartialEq for LockWait {
    fn eq(&self, other: &Self) -> bool {
        self.timeout == other.timeout
    }
}

impl Eq for LockWait {}

impl Repository {
    /// This repository, whose calls wait at most `timeout` for the repository lock, then fail
    /// with [`Error::LockTimeout`]. By default a call waits as long as it takes (a backup for
    /// a running prune, a prune for running backups).
    pub fn with_lock_timeout(mut self, timeout: Duration) -> Self {
        self.lock_wait = self.lock_wait.with_timeout(timeout);
        self
    }

    /// This repository, whose calls tell `notice` (once per call, from a blocking thread) when
    /// they find the lock held by another process and start to wait: a command line prints it,
    /// so that a wait is never silent. By default nothing is told.
    pub fn with_lock_notice(
        mut self,
        notice: impl Fn(&LockNotice) + Send + Sync + 'static,
    ) -> Self {
        self.lock_wait = self.lock_wait.with_notice(Arc::new(notice));
        self
    }

    /// How long calls wait for the lock (`None`: as long as it takes).
    pub fn lock_timeout(&self) -> Option<Duration> {
        self.lock_wait.timeout()
    }
}

/// Takes the lock on `file` in `mode`, as `wait` says: at once when it is free; else after
/// telling the notice, blocking or polling until the timeout.
///
/// # Errors
/// `Error::LockTimeout` once the timeout has passed, `Error::Io` when the lock call fails.
pub(crate) fn acquire(file: &File, mode: LockMode, wait: &LockWait, dir: &Path) -> Result<()> {
    let try_lock = || match mode {
        LockMode::Shared => file.try_lock_shared(),
        LockMode::Exclusive => file.try_lock(),
    };
    let failed = |error| io_error(format!("lock {}", dir.display()))(error);
    match try_lock() {
        Ok(()) => return Ok(()),
        Err(TryLockError::WouldBlock) => {}
        Err(TryLockError::Error(error)) => return Err(failed(error)),
    }
    let holder = match mode {
        LockMode::Shared => "a running prune",
        LockMode::Exclusive => "running backups, restores or checks, or a prune",
    };
    wait.tell(&LockNotice {
        repository: dir.to_owned(),
        holder,
        timeout: wait.timeout,
    });
    let Some(timeout) = wait.timeout else {
        let locked = match mode {
            LockMode::Shared => file.lock_shared(),
            LockMode::Exclusive => file.lock(),
        };
        return locked.map_err(failed);
    };
    let started = Instant::now();
    let mut pause = FIRST_PAUSE;
    loop {
        let waited = started.elapsed();
        let Some(left) = timeout.checked_sub(waited).filter(|left| !left.is_zero()) else {
            return Err(Error::LockTimeout {
                repository: dir.display().to_string(),
                holder: holder.to_owned(),
                waited_ms: u64::try_from(waited.as_millis()).unwrap_or(u64::MAX),
            });
        };
        std::thread::sleep(pause.min(left));
        pause = (pause * 2).min(MAX_PAUSE);
        match try_lock() {
            Ok(()) => return Ok(()),
            Err(TryLockError::WouldBlock) => {}
            Err(TryLockError::Error(error)) => return Err(failed(error)),
        }
    }
}
