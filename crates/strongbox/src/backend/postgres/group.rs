//! Group commit on PostgreSQL: write requests queued from many tasks are applied in one
//! database transaction (see [`super::batch`]), with one commit and one WAL flush for the
//! group.
//!
//! [`WRITERS`] tasks take turns at the queue: each takes every request waiting (up to
//! [`MAX_GROUP_OPS`] operations) the moment it is free, so a lone writer is never delayed, and
//! while one group commits (its WAL flush) the next is gathered and planned. Only then does a
//! caller get its answer: a returned write is durable.
//!
//! - A request that fails its plan (a conflict) fails alone; the others commit.
//! - A race with another transaction (a key another server created meanwhile, a deadlock, a
//!   serialization failure) rolls the group back and runs it again, planned afresh, a bounded
//!   number of times.
//! - Any other error of the database splits the group: each request runs again alone, so the
//!   one that caused it fails alone. A lost server (`Error::Unavailable`) or a pool that gives
//!   no connection (`Error::Busy`) fails every request of the group: their outcome is unknown.
//! - A request with a condition runs alone, on its caller's task (see `write`): one that
//!   validates reads (a `transact` commit) SERIALIZABLE, any other at READ COMMITTED.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use deadpool_postgres::Pool;
use tokio::sync::{Mutex, mpsc, oneshot};
use tokio_postgres::IsolationLevel;

use super::batch::{self, Settings};
use super::convert::map_err;
use super::pooled;
use super::replicas::Replicas;
use super::write::{Failure, classify};
use crate::backend::{WriteOp, WriteOutcome};
use crate::error::{Error, Result};
use crate::record::Expect;

/// How many groups may be in flight at once.
pub(super) const WRITERS: usize = 2;

/// The most operations one group gathers (a larger request still runs, alone).
const MAX_GROUP_OPS: usize = 1024;

/// Attempts of a group that keeps losing races before its error is returned.
const MAX_ATTEMPTS: u32 = 12;

/// Attempts of a commit that validates reads before it is a conflict: its reads are then
/// likely stale, and `transact` runs its closure again (with its own backoff).
const SERIALIZABLE_ATTEMPTS: u32 = 3;

/// The action of the error of a transaction that kept losing races.
const RACES: &str = "commit a write transaction after repeated races";

/// The outcome of one request.
pub(super) type Outcome = Result<Vec<WriteOutcome>>;

/// A queued request and where its answer goes.
struct Request {
    ops: Vec<WriteOp>,
    reply: oneshot::Sender<Outcome>,
}

/// What the writers share: the pool and the settings of every write.
pub(super) struct Shared {
    /// The store's connections.
    pub pool: Pool,
    /// The longest wait for a connection.
    pub busy_timeout: Duration,
    /// The time callers spent waiting for connections, in microseconds.
    pub wait_micros: Arc<AtomicU64>,
    /// The standbys, told where each commit ends in the WAL (read-your-writes).
    pub replicas: Option<Arc<Replicas>>,
    /// What a write does besides its rows.
    pub settings: Settings,
}

/// The queue of a store's writes and its writer tasks (which end when it is dropped).
pub(super) struct GroupWriter {
    shared: Arc<Shared>,
    queue: mpsc::UnboundedSender<Request>,
}

impl GroupWriter {
    /// Starts the writer tasks on the current runtime.
    pub fn start(shared: Shared) -> Self {
        let shared = Arc::new(shared);
        let (queue, receiver) = mpsc::unbounded_channel();
        let receiver = Arc::new(Mutex::new(receiver));
        for _ in 0..WRITERS {
            tokio::spawn(work(Arc::clone(&shared), Arc::clone(&receiver)));
        }
        GroupWriter { shared, queue }
    }

    /// Queues a request and waits for its outcome, once committed.
    pub async fn write(&self, ops: Vec<WriteOp>) -> Outcome {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Request { ops, reply })
            .map_err(|_| Error::Closed)?;
        answer.await.map_err(|_| Error::Closed)?
    }

    /// Runs a request alone at `isolation`, on the caller's task. One that keeps failing on
    /// serialization failures is `Error::Conflict` (see [`stale_reads`]).
    pub async fn write_alone(&self, ops: Vec<WriteOp>, isolation: IsolationLevel) -> Outcome {
        let mut outcomes = self
            .shared
            .commit(&[ops.as_slice()], isolation)
            .await
            .map_err(|error| match error {
                Error::Backend { action, .. } if action == RACES => stale_reads(&ops),
                error => error,
            })?;
        outcomes
            .pop()
            .unwrap_or_else(|| Err(Error::backend("write", "a group answered no request")))
    }
}

/// The conflict of a commit whose reads kept failing serialization: a concurrent transaction
/// changed something it read, and its closure must run again on fresh reads. PostgreSQL does
/// not say which record; the error names the request's first condition.
fn stale_reads(ops: &[WriteOp]) -> Error {
    let condition = ops.iter().find_map(|op| match op {
        WriteOp::Check {
            collection,
            key,
            expect,
            ..
        }
        | WriteOp::Put {
            collection,
            key,
            expect,
            ..
        }
        | WriteOp::Delete {
            collection,
            key,
            expect,
            ..
        } => Some((collection.clone(), key.clone(), *expect)),
        WriteOp::CheckRange { collection, .. } => {
            Some((collection.clone(), String::new(), Expect::Any))
        }
        WriteOp::Restore { .. } => None,
    });
    let (collection, key, expected) = condition.unwrap_or_default();
    Error::Conflict {
        collection,
        key,
        expected,
        actual: None,
    }
}

/// One writer: takes the waiting requests, commits them, answers, again until the queue closes.
async fn work(shared: Arc<Shared>, queue: Arc<Mutex<mpsc::UnboundedReceiver<Request>>>) {
    loop {
        let group = {
            let mut queue = queue.lock().await;
            let Some(first) = queue.recv().await else {
                return;
            };
            let mut size = first.ops.len();
            let mut group = vec![first];
            while size < MAX_GROUP_OPS {
                match queue.try_recv() {
                    Ok(request) => {
                        size += request.ops.len();
                        group.push(request);
                    }
                    Err(_) => break,
                }
            }
            group
        };
        shared.answer(group).await;
    }
}

impl Shared {
    /// Commits a group and answers each caller; a group the database refused for a reason
    /// other than a lost server runs again one request at a time.
    async fn answer(&self, group: Vec<Request>) {
        let ops: Vec<&[WriteOp]> = group.iter().map(|request| request.ops.as_slice()).collect();
        let outcomes = match self.commit(&ops, IsolationLevel::ReadCommitted).await {
            Ok(outcomes) => outcomes,
            Err(error) if group.len() > 1 && !error.is_retryable() => {
                let mut outcomes = Vec::with_capacity(ops.len());
                for ops in &ops {
                    let mut alone = self.commit(&[ops], IsolationLevel::ReadCommitted).await;
                    outcomes.push(match &mut alone {
                        Ok(outcome) => outcome.pop().unwrap_or_else(|| Err(error.duplicate())),
                        Err(error) => Err(error.duplicate()),
                    });
                }
                outcomes
            }
            Err(error) => ops.iter().map(|_| Err(error.duplicate())).collect(),
        };
        for (request, outcome) in group.into_iter().zip(outcomes) {
            // A caller that stopped waiting no longer needs its answer.
            let _ = request.reply.send(outcome);
        }
    }

    /// Applies requests in one transaction at `isolation`, retrying races; the outcome of
    /// each, or the error that failed them all.
    async fn commit(
        &self,
        requests: &[&[WriteOp]],
        isolation: IsolationLevel,
    ) -> Result<Vec<Outcome>> {
        let mut client = pooled(&self.pool, self.busy_timeout, &self.wait_micros).await?;
        let attempts = if matches!(isolation, IsolationLevel::Serializable) {
            SERIALIZABLE_ATTEMPTS
        } else {
            MAX_ATTEMPTS
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            let tx = client
                .build_transaction()
                .isolation_level(isolation)
                .start()
                .await
                .map_err(map_err("begin a write transaction"))?;
            let result = match batch::apply(&tx, requests, self.settings).await {
                // Nothing written at READ COMMITTED (every request failed its condition): roll
                // back, which releases the row locks without a commit record to flush. A
                // SERIALIZABLE commit that only checked still commits, so that its reads count
                // among the serializable transactions.
                Ok((outcomes, false)) if !matches!(isolation, IsolationLevel::Serializable) => tx
                    .rollback()
                    .await
                    .map(|()| outcomes)
                    .map_err(classify("end a write transaction that wrote nothing")),
                Ok((outcomes, _)) => tx
                    .commit()
                    .await
                    .map(|()| outcomes)
                    .map_err(classify("commit a write transaction")),
                Err(failure) => {
                    // Dropping the transaction rolls it back; say so explicitly to free locks now.
                    let _ = tx.rollback().await;
                    Err(failure)
                }
            };
            match result {
                Ok(outcomes) => {
                    if let Some(replicas) = &self.replicas {
                        replicas.after_commit(&client).await;
                    }
                    return Ok(outcomes);
                }
                Err(Failure::Fatal(error)) => return Err(error),
                Err(Failure::Retry(error)) if attempt >= attempts => {
                    return Err(Error::backend(RACES, error));
                }
                Err(Failure::Retry(_)) => {
                    let jitter = u64::from(attempt) * 3 + (self.settings.instance_id % 7);
                    tokio::time::sleep(Duration::from_millis(jitter)).await;
                }
            }
        }
    }
}
