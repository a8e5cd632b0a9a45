//! How a scan reads: a task fetches the range a page at a time, one page ahead of the consumer,
//! and hands the pages over through a channel of one page; the stream checks and decodes each
//! record as it yields it, on the consumer's task.
//!
//! So the fetch of the next page overlaps the decoding of this one (on PostgreSQL, a round trip
//! to the server), and a scan's memory stays bounded by three pages (the one being yielded, one
//! waiting in the channel, one being fetched) whatever the collection's size. Dropping the
//! stream stops the task. Values are decoded where they are consumed, not on other threads:
//! tried on 3 December 2026, decoding pages on blocking threads over both cores of the bench
//! machine was no faster, as the values' allocations then cross threads.
//!
//! **Invariant:** the entries come in the range's order, each checked like a `get`; an error
//! is the last item.

use std::ops::Bound;

use futures_util::stream::{self, BoxStream, StreamExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;
use tokio_util::task::AbortOnDropHandle;

use super::{Collection, Entry, SCAN_PAGE, Scan};
use crate::backend::{Reads, ScanRange, StoredRecord};
use crate::error::Result;

/// A page of a scan, as fetched.
type Page = Vec<(String, StoredRecord)>;

/// The entries `scan` selects from `collection` (see [`Collection::scan`]).
pub(super) fn entries<T>(
    collection: Collection<T>,
    scan: Scan,
) -> BoxStream<'static, Result<Entry<T>>>
where
    T: Serialize + DeserializeOwned + Send + 'static,
{
    let (range, limit) = scan.into_range(SCAN_PAGE);
    let remaining = limit.unwrap_or(usize::MAX);
    // The task starts at the first poll, inside the runtime that polls the stream (a blocking
    // handle makes its stream outside one).
    stream::once(async move {
        let (sender, receiver) = mpsc::channel(1);
        let reader = AbortOnDropHandle::new(tokio::spawn(read_pages(
            collection.clone(),
            range,
            remaining,
            sender,
        )));
        let state = (receiver, reader, Vec::new().into_iter(), false);
        stream::unfold(
            state,
            move |(mut receiver, reader, mut page, has_failed)| {
                let collection = collection.clone();
                async move {
                    if has_failed {
                        return None;
                    }
                    let (key, fetched) = match page.next() {
                        Some(record) => record,
                        None => match receiver.recv().await? {
                            Ok(next) => {
                                page = next.into_iter();
                                page.next()?
                            }
                            Err(error) => {
                                return Some((Err(error), (receiver, reader, page, true)));
                            }
                        },
                    };
                    let decoded = collection
                        .store
                        .decode_fetched::<T>(&collection.name, &key, &fetched)
                        .await
                        .map(|record| Entry {
                            key,
                            version: record.meta.version,
                            value: record.value,
                        });
                    let has_failed = decoded.is_err();
                    Some((decoded, (receiver, reader, page, has_failed)))
                }
            },
        )
    })
    .flatten()
    .boxed()
}

/// Reads `range`, at most `remaining` records, into `pages`, a page ahead of the consumer;
/// stops after an error, at the end of the range, or when the stream is dropped.
async fn read_pages<T>(
    collection: Collection<T>,
    mut range: ScanRange,
    mut remaining: usize,
    pages: mpsc::Sender<Result<Page>>,
) {
    while remaining > 0 {
        let fetched = fetch(&collection, &mut range, &mut remaining).await;
        let is_last = match &fetched {
            Ok((page, is_last)) => page.is_empty() || *is_last,
            Err(_) => true,
        };
        if pages.send(fetched.map(|(page, _)| page)).await.is_err() || is_last {
            return;
        }
    }
}

/// Reads the next page of `range` (at most `remaining` records) and moves the range past it;
/// returns it and whether it is the last one.
async fn fetch<T>(
    collection: &Collection<T>,
    range: &mut ScanRange,
    remaining: &mut usize,
) -> Result<(Page, bool)> {
    let limit = SCAN_PAGE.min(*remaining);
    let mut page_range = range.clone();
    page_range.limit = limit;
    let page = collection
        .store
        .backend()
        .scan(&collection.name, page_range)
        .await?;
    if let Some((last, _)) = page.last() {
        let after = Bound::Excluded(last.clone());
        if range.reverse {
            range.end = after;
        } else {
            range.start = after;
        }
    }
    *remaining = remaining.saturating_sub(page.len());
    let is_last = page.len() < limit || *remaining == 0;
    Ok((page, is_last))
}
