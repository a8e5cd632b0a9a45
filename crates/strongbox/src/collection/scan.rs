//! How a scan reads: a task fetches the range a page at a time, one page ahead of the consumer,
//! checks each record of the page (its seal, its value decoded and checked against its id and
//! size: [`Checked`]) and hands the page over through a channel of one page; the stream
//! deserializes each value as it yields it, on the consumer's task.
//!
//! So fetching and checking the next page (on PostgreSQL, a round trip to the server)
//! overlap deserializing this one, on another core when the runtime has one, and a scan's
//! memory stays bounded by three pages (the one being yielded, one waiting in the channel, one
//! being fetched) whatever the collection's size. Dropping the stream stops the task. The
//! values themselves are built where they are consumed: tried on 3 December 2026, decoding
//! whole pages into values on blocking threads was no faster, as the values' many small
//! allocations were then freed on another thread than the one that made them; a checked value
//! crosses threads as one buffer.
//!
//! **Invariant:** the entries come in the range's order, each checked like a `get`; an error
//! is the last item.

use std::ops::Bound;
use std::sync::Arc;

use futures_util::stream::{self, BoxStream, StreamExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;
use tokio_util::task::AbortOnDropHandle;

use super::{Collection, Entry, SCAN_PAGE, Scan};
use crate::backend::{Reads, ScanRange, StoredRecord};
use crate::error::Result;
use crate::store::Checked;

/// A page of a scan, as fetched.
type Page = Vec<(String, StoredRecord)>;

/// A page of a scan, checked: its records in order, the last one possibly a failed check.
type CheckedPage = Vec<(String, Result<Checked>)>;

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
    let name: Arc<str> = collection.name.as_str().into();
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
                let name = name.clone();
                async move {
                    if has_failed {
                        return None;
                    }
                    let (key, checked) = match page.next() {
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
                    let decoded = checked
                        .and_then(|checked| checked.deserialize::<T>(&name, &key))
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

/// Reads `range`, at most `remaining` records, into `pages`, checked, a page ahead of the
/// consumer; stops after an error, at the end of the range, or when the stream is dropped.
async fn read_pages<T>(
    collection: Collection<T>,
    mut range: ScanRange,
    mut remaining: usize,
    pages: mpsc::Sender<Result<CheckedPage>>,
) {
    while remaining > 0 {
        let (page, is_last) = match fetch(&collection, &mut range, &mut remaining).await {
            Ok((page, is_last)) => {
                let (page, has_failed) = check(&collection, page).await;
                (Ok(page), is_last || has_failed)
            }
            Err(error) => (Err(error), true),
        };
        let is_last = is_last || page.as_ref().is_ok_and(Vec::is_empty);
        if pages.send(page).await.is_err() || is_last {
            return;
        }
    }
}

/// Checks a fetched page's records in order, up to the first that fails (the page's last);
/// returns them and whether one failed.
async fn check<T>(collection: &Collection<T>, page: Page) -> (CheckedPage, bool) {
    let mut checked = Vec::with_capacity(page.len());
    for (key, fetched) in page {
        // A page's checks take a millisecond or so: let the runtime's other tasks in.
        tokio::task::consume_budget().await;
        let record = collection
            .store
            .check_fetched(&collection.name, &key, &fetched)
            .await;
        let has_failed = record.is_err();
        checked.push((key, record));
        if has_failed {
            return (checked, true);
        }
    }
    (checked, false)
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
