//! The change feed's workloads: what recording every write costs, and how long a subscriber
//! takes to receive a write.
//!
//! - Cost (`feed_write_off`, `feed_write_on`): the concurrent durable updates of the `write`
//!   workload (`--concurrency` tasks; a random key gets another value of its collection)
//!   through a handle opened with the feed off (`Config::with_change_feed(false)`: no change
//!   row per write) and through one with it on, on the same database, in turns (off, on, on,
//!   off, each for half of `--duration`), so that the drift of a shared machine falls on both
//!   alike.
//! - Lag (`feed_lag`, `feed_lag_polled`): the same updates for `--duration` through the
//!   bench's handle, while two subscribers read the feed from its newest change on: one on that
//!   handle (`Store::subscribe`, woken by the handle's own commits), and one on a second handle
//!   of the same database, which hears of those commits only by polling every `FEED_POLL`
//!   (20 ms), as a subscriber in another process or on another server does. A change's lag is
//!   the time from its write's acknowledgement (the `store` call returning) to the subscriber
//!   receiving it, 0 when it arrives first. Each subscriber must receive every acknowledged
//!   write once, in order, and nothing else, or the bench fails.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures_util::StreamExt as _;
use futures_util::stream::BoxStream;
use serde::Serialize;
use strongbox::{Change, ChangeFilter, Config, Store};

use crate::dataset::Dataset;
use crate::ours::timed_updates;
use crate::workload::{Latencies, Measured, time_tasks};

/// How long the subscribers may take, once the writes stopped, to receive the last of them.
const CATCH_UP: Duration = Duration::from_secs(30);

/// How long a subscriber waits for a change before it looks again whether it has them all.
const LOOK_AGAIN: Duration = Duration::from_millis(20);

/// Changes read at a time when looking for the newest.
const PAGE: usize = 10_000;

/// The change feed's figures.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct FeedFigures {
    /// Concurrent updates through a handle with the feed off.
    pub write_off: Measured,
    /// The same through a handle with the feed on.
    pub write_on: Measured,
    /// The subscriber on the writing handle: `ops` changes received, `ops_per_s` their rate
    /// over the run, and the percentiles of their lag, in microseconds.
    pub lag: Measured,
    /// The same for the subscriber on another handle, which polls.
    pub lag_polled: Measured,
}

/// A write as the feed names it: collection, key, version.
type WriteId = (String, String, u64);

/// The writes acknowledged during the lag run, with when.
type Acknowledged = Arc<Mutex<HashMap<WriteId, Instant>>>;

/// Runs the cost comparison on two new handles of `config`'s database, then the lag run on
/// `store` (a handle of the same database, with the feed on).
///
/// # Errors
/// When a handle cannot be opened, a write or a read of the feed fails, or a subscriber
/// misses, repeats or invents a write.
pub async fn run(
    config: &Config,
    store: &Store,
    dataset: &Arc<Dataset>,
    tasks: usize,
    duration: Duration,
) -> anyhow::Result<FeedFigures> {
    let off = Store::open(config.clone().with_change_feed(false))
        .await
        .context("open a handle with the change feed off")?;
    let on = Store::open(config.clone().with_change_feed(true))
        .await
        .context("open a handle with the change feed on")?;
    let (mut write_off, mut write_on) = (Latencies::default(), Latencies::default());
    for is_on in [false, true, true, false] {
        let (handle, figures) = if is_on {
            (&on, &mut write_on)
        } else {
            (&off, &mut write_off)
        };
        let run = timed_updates(handle, dataset, tasks, duration / 2).await?;
        *figures = std::mem::take(figures).merge(run);
    }
    off.close().await?;
    on.close().await?;
    let (lag, lag_polled) = lag(config, store, dataset, tasks, duration).await?;
    Ok(FeedFigures {
        write_off: write_off.measured(),
        write_on: write_on.measured(),
        lag,
        lag_polled,
    })
}

/// Updates through `store` for `duration` while a subscriber on it and one on a second
/// handle receive them; the lag of each.
async fn lag(
    config: &Config,
    store: &Store,
    dataset: &Arc<Dataset>,
    tasks: usize,
    duration: Duration,
) -> anyhow::Result<(Measured, Measured)> {
    let start = newest_seq(store, 0).await?;
    let polling = Store::open(config.clone())
        .await
        .context("open a second handle for the polling subscriber")?;
    // The newest change of the run, once the writes stopped.
    let end = Arc::new(AtomicU64::new(u64::MAX));
    let receivers = [store, &polling].map(|handle| {
        tokio::spawn(receive(
            handle.subscribe(start, ChangeFilter::all()),
            start,
            Arc::clone(&end),
        ))
    });
    let acknowledged = Acknowledged::default();
    let writes = time_tasks(
        tasks,
        duration,
        (
            store.clone(),
            Arc::clone(dataset),
            Arc::clone(&acknowledged),
        ),
        |(store, dataset, acknowledged), mut rng| async move {
            let (collection, key, value) = dataset.update(&mut rng);
            let version = store.store(collection, key, value).await?;
            let at = Instant::now();
            acknowledged
                .lock()
                .map_err(|_| anyhow::anyhow!("a writer panicked"))?
                .insert((collection.to_owned(), key.to_owned(), version.get()), at);
            Ok(())
        },
    )
    .await?;
    end.store(newest_seq(store, start).await?, Ordering::Release);
    let [same, polled] = receivers;
    let same = same.await??;
    let polled = polled.await??;
    polling.close().await?;
    let acknowledged = acknowledged
        .lock()
        .map_err(|_| anyhow::anyhow!("a writer panicked"))?;
    Ok((
        lags(&acknowledged, same, writes.elapsed).context("the subscriber on the same handle")?,
        lags(&acknowledged, polled, writes.elapsed).context("the polling subscriber")?,
    ))
}

/// Receives changes, each with the moment it arrived, until it has the one numbered `end`
/// (once the writes stopped and `end` is known).
async fn receive(
    mut changes: BoxStream<'static, strongbox::Result<Change>>,
    start: u64,
    end: Arc<AtomicU64>,
) -> anyhow::Result<Vec<(WriteId, Instant)>> {
    let mut received = Vec::new();
    let mut last_seq = start;
    let mut deadline = None;
    loop {
        let end_seq = end.load(Ordering::Acquire);
        if last_seq >= end_seq {
            return Ok(received);
        }
        if end_seq != u64::MAX {
            let deadline = *deadline.get_or_insert_with(|| Instant::now() + CATCH_UP);
            anyhow::ensure!(
                Instant::now() < deadline,
                "no change {end_seq} {} s after the writes stopped (the last received: {last_seq})",
                CATCH_UP.as_secs()
            );
        }
        // Dropping `next()` at the timeout loses nothing: the stream keeps its place.
        let Ok(next) = tokio::time::timeout(LOOK_AGAIN, changes.next()).await else {
            continue;
        };
        let change = next.context("the subscription ended")??;
        let arrived = Instant::now();
        anyhow::ensure!(
            change.seq > last_seq,
            "change {} came after change {last_seq}",
            change.seq
        );
        last_seq = change.seq;
        received.push((
            (change.collection, change.key, change.version.get()),
            arrived,
        ));
    }
}

/// The lag of each received write after its acknowledgement; every acknowledged write must
/// have been received, and nothing else.
fn lags(
    acknowledged: &HashMap<WriteId, Instant>,
    received: Vec<(WriteId, Instant)>,
    elapsed: Duration,
) -> anyhow::Result<Measured> {
    let mut micros = Vec::with_capacity(received.len());
    let mut seen = HashSet::with_capacity(received.len());
    for (write, arrived) in received {
        let at = acknowledged
            .get(&write)
            .with_context(|| format!("received {write:?}, which no writer acknowledged"))?;
        let lag = arrived.saturating_duration_since(*at);
        micros.push(u64::try_from(lag.as_micros()).unwrap_or(u64::MAX));
        anyhow::ensure!(seen.insert(write), "received a write twice");
    }
    anyhow::ensure!(
        micros.len() == acknowledged.len(),
        "received {} of the {} acknowledged writes",
        micros.len(),
        acknowledged.len()
    );
    Ok(Measured::from_latencies(micros, elapsed))
}

/// The newest change's number, reading the feed after `since` (a change already read; from
/// the oldest change held when maintenance trimmed the feed past it).
async fn newest_seq(store: &Store, since: u64) -> anyhow::Result<u64> {
    let mut newest = since;
    loop {
        let page = match store.changes(newest, PAGE).await {
            Err(strongbox::Error::ChangesTrimmed { oldest, .. }) => {
                newest = oldest.saturating_sub(1);
                continue;
            }
            page => page.context("read the change feed")?,
        };
        match page.last() {
            Some(change) => newest = change.seq,
            None => return Ok(newest),
        }
    }
}
