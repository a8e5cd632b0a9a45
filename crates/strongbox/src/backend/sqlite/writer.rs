//! The single writer: a dedicated thread that owns the read-write connection and commits
//! queued requests together (group commit).
//!
//! Each request is applied inside its own `SAVEPOINT`, so a request that fails (a conflict, a
//! bad row) is rolled back alone and its neighbours still commit. The whole group then commits
//! once, with one fsync, and only after that does any successful caller get its answer: a
//! returned write is durable. A lone writer never waits for a batch to fill; when the last
//! group held several requests (callers write concurrently), the writer waits up to
//! [`GATHER`] for as many to arrive before committing, so one fsync serves them all.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use rusqlite::{Connection, TransactionBehavior};
use tokio::sync::oneshot;

use super::SqliteBackend;
use super::apply::{apply_access, apply_ops};
use super::convert::map_err;
use crate::backend::{AccessUpdate, WriteOp, WriteOutcome, Writes};
use crate::error::{Error, Result};

/// The longest a group waits for more concurrent requests before it commits. Short: the
/// writer is the bottleneck under concurrency, and every microsecond it waits is one it does
/// not commit in. At 500 µs the writer was seen spending a fifth of its time waiting here
/// (4 December 2026); at 100 µs concurrent writes and transfers (`transact`) ran faster in
/// `strongbox-bench`, alternating builds (docs/benchmarks.md, "Transfers"); shorter still
/// (50 µs, none) measured about the same as 100 µs.
const GATHER: Duration = Duration::from_micros(100);

/// A message to the writer thread.
pub enum Request {
    /// Apply these operations atomically and answer once they are durable.
    Write {
        /// The operations, in order.
        ops: Vec<WriteOp>,
        /// Where the outcome goes.
        reply: oneshot::Sender<Result<Vec<WriteOutcome>>>,
    },
    /// Run a job on the writer connection, alone, between two group commits (maintenance).
    /// The job answers through its own channel.
    Exclusive(Box<dyn FnOnce(&mut Connection) + Send>),
    /// Add read counts; answered once committed.
    Access {
        /// The counts.
        updates: Vec<AccessUpdate>,
        /// Where the outcome goes.
        reply: oneshot::Sender<Result<()>>,
    },
}

impl Writes for SqliteBackend {
    async fn write(&self, ops: Vec<WriteOp>) -> Result<Vec<WriteOutcome>> {
        let (reply, answer) = oneshot::channel();
        self.send(Request::Write { ops, reply })?;
        answer
            .await
            .map_err(|_| Error::Closed)?
            .map_err(|error| error.busy_after(self.busy_timeout))
    }

    async fn record_access(&self, updates: Vec<AccessUpdate>) -> Result<()> {
        // Read counts are statistics: a read-only store keeps none, and its reads do not fail
        // for it.
        if self.read_only {
            return Ok(());
        }
        let (reply, answer) = oneshot::channel();
        self.send(Request::Access { updates, reply })?;
        answer
            .await
            .map_err(|_| Error::Closed)?
            .map_err(|error| error.busy_after(self.busy_timeout))
    }
}

/// Runs the writer until every sender is dropped.
pub fn run(mut conn: Connection, requests: mpsc::Receiver<Request>, max_batch_requests: usize) {
    let mut next = None;
    // Size of the last group: more than one means callers are writing concurrently.
    let mut previous_group = 1;
    loop {
        let first = match next.take() {
            Some(request) => request,
            None => match requests.recv() {
                Ok(request) => request,
                Err(_) => return,
            },
        };
        if let Request::Exclusive(job) = first {
            job(&mut conn);
            continue;
        }
        let mut group = vec![first];
        // Under concurrency, callers answered by the last commit are still encoding their next
        // write: wait a moment (never longer than GATHER, and only until as many requests as
        // last time are here) so that one fsync serves them all. A lone writer never waits.
        let deadline = Instant::now() + GATHER;
        let expected = previous_group.min(max_batch_requests);
        while group.len() < max_batch_requests {
            let received = if previous_group > 1 && group.len() < expected {
                requests
                    .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                    .ok()
            } else {
                requests.try_recv().ok()
            };
            match received {
                // An exclusive job waits for the group before it to commit.
                Some(request @ Request::Exclusive(_)) => {
                    next = Some(request);
                    break;
                }
                Some(request) => group.push(request),
                None => break,
            }
        }
        previous_group = group.len();
        commit_group(&mut conn, group);
    }
}

/// An answer held back until the group's commit.
enum Pending {
    Write(
        oneshot::Sender<Result<Vec<WriteOutcome>>>,
        Vec<WriteOutcome>,
    ),
    Access(oneshot::Sender<Result<()>>),
}

fn commit_group(conn: &mut Connection, group: Vec<Request>) {
    let tx = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
        Ok(tx) => tx,
        Err(error) => {
            let error = map_err("begin a write transaction")(error);
            for request in group {
                answer_error(request, &error);
            }
            return;
        }
    };
    let mut pending = Vec::with_capacity(group.len());
    for request in group {
        match request {
            Request::Write { ops, reply } => match in_savepoint(&tx, |conn| apply_ops(conn, ops)) {
                Ok(outcomes) => pending.push(Pending::Write(reply, outcomes)),
                // Rolled back to its savepoint: nothing of it will commit, so it can be told now.
                Err(error) => {
                    let _ = reply.send(Err(error));
                }
            },
            Request::Access { updates, reply } => {
                match in_savepoint(&tx, |conn| apply_access(conn, &updates)) {
                    Ok(()) => pending.push(Pending::Access(reply)),
                    Err(error) => answer_access(reply, Err(error)),
                }
            }
            // `run` never puts an exclusive job into a group; were one here, dropping it
            // tells its caller the store is closed rather than running it inside a transaction.
            Request::Exclusive(job) => drop(job),
        }
    }
    match tx.commit() {
        Ok(()) => {
            for answer in pending {
                match answer {
                    Pending::Write(reply, outcomes) => {
                        let _ = reply.send(Ok(outcomes));
                    }
                    Pending::Access(reply) => answer_access(reply, Ok(())),
                }
            }
        }
        Err(error) => {
            // The transaction is rolled back when `commit` fails; nobody's write happened.
            let error = map_err("commit a write transaction")(error);
            for answer in pending {
                match answer {
                    Pending::Write(reply, _) => {
                        let _ = reply.send(Err(error.duplicate()));
                    }
                    Pending::Access(reply) => answer_access(reply, Err(error.duplicate())),
                }
            }
        }
    }
}

fn answer_error(request: Request, error: &Error) {
    match request {
        Request::Write { reply, .. } => {
            let _ = reply.send(Err(error.duplicate()));
        }
        Request::Access { reply, .. } => answer_access(reply, Err(error.duplicate())),
        Request::Exclusive(job) => drop(job),
    }
}

/// Answers an access update (a caller gone away loses only statistics).
fn answer_access(reply: oneshot::Sender<Result<()>>, result: Result<()>) {
    let _ = reply.send(result);
}

/// Runs `body` inside a savepoint, rolling back to it on error.
fn in_savepoint<T>(conn: &Connection, body: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
    conn.execute_batch("SAVEPOINT request")
        .map_err(map_err("open a savepoint"))?;
    match body(conn) {
        Ok(value) => {
            conn.execute_batch("RELEASE request")
                .map_err(map_err("release a savepoint"))?;
            Ok(value)
        }
        Err(error) => {
            // If even the rollback fails, the outer transaction is in an unknown state; the
            // error of the rollback then fails the commit of the whole group.
            if let Err(rollback_error) = conn.execute_batch("ROLLBACK TO request; RELEASE request")
            {
                tracing::error!(error = %rollback_error, "cannot roll back a failed write request");
            }
            Err(error)
        }
    }
}
