//! The change listener: a dedicated connection (`application_name` [`APPLICATION_NAME`] in
//! `pg_stat_activity`) that `LISTEN`s for the writes every server announces and passes them on
//! as [`Invalidation`]s, so each server can drop stale cache entries.
//!
//! **Nothing is missed for long.** Notifications sent while the connection is down are lost,
//! but every change is also in the change feed. So the listener sends
//! [`Invalidation::CatchUp`] when its connection is lost, after each failed attempt to
//! reconnect, and once it listens again (after `LISTEN`, so that every later commit is heard):
//! the store then invalidates the keys of the feed's changes after the last one it has
//! accounted for (`crate::coherence`).
//!
//! **Marks keep that catch-up short.** A listener that heard changes marks its place at most
//! once a [`MARK_INTERVAL`]: one statement reads the feed's newest number N and `NOTIFY`s it
//! on the channel, and when its own mark comes back the listener sends
//! [`Invalidation::HeardThrough`]`(N)`. Every change up to N committed before that statement
//! began (the feed's numbers follow commit order), each write announces its keys in its own
//! transaction, and PostgreSQL delivers notifications in commit order: so each change up to N
//! was heard before the mark, or committed while no connection listened, and then the
//! catch-up sent after that connection's loss or after this one's `LISTEN`, which comes before
//! anything this connection delivers, read it from the feed.
//!
//! The listener reconnects with a growing pause (up to five seconds). It stops when its token
//! is cancelled (by `Backend::close` or when the backend is dropped), or when nobody takes its
//! invalidations any more.

use std::future::poll_fn;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::future::{BoxFuture, FutureExt, TryFutureExt};
use tokio::sync::mpsc;
use tokio::time::MissedTickBehavior;
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres::types::ToSql;
use tokio_postgres::{AsyncMessage, Socket};
use tokio_util::sync::CancellationToken;

use super::write::CHANGES_CHANNEL;
use crate::backend::Invalidation;

/// The listener connection's `application_name`, by which an operator (or a test) finds it in
/// `pg_stat_activity`.
const APPLICATION_NAME: &str = "strongbox listener";

/// How often, at most, a listener that heard changes marks its place in the feed.
const MARK_INTERVAL: Duration = Duration::from_secs(1);

/// The pause before the first attempt to reconnect; it doubles after each failure.
const FIRST_PAUSE: Duration = Duration::from_millis(50);

/// The longest pause between attempts to reconnect.
const MAX_PAUSE: Duration = Duration::from_secs(5);

/// A mark, in one statement (one snapshot): the feed's newest number (as `Feed::changes_after`
/// reads it), notified on the channel `$1` as `[instance $2, "", newest]`.
const MARK: &str = "
    SELECT pg_notify($1, json_build_array($2::text, '', feed.newest::text)::text)
    FROM (SELECT GREATEST(m.value, coalesce((SELECT max(seq) FROM strongbox_changes), 0))
                 AS newest
          FROM strongbox_meta m WHERE m.name = 'changes_trimmed_through') AS feed";

/// Runs until cancelled, or until nobody takes the invalidations.
pub async fn listen<T>(
    mut config: tokio_postgres::Config,
    tls: T,
    instance_id: u64,
    invalidations: mpsc::UnboundedSender<Invalidation>,
    unknown_positions: Option<Arc<AtomicU64>>,
    cancel: CancellationToken,
) where
    T: MakeTlsConnect<Socket> + Clone + Send + Sync + 'static,
    T::Stream: Send + Sync + 'static,
    T::TlsConnect: Send,
    <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
{
    config.application_name(APPLICATION_NAME);
    let own_id = instance_id.to_string();
    let mut pause = FIRST_PAUSE;
    loop {
        let ended = tokio::select! {
            () = cancel.cancelled() => return,
            ended = session(&config, tls.clone(), &own_id, &invalidations, unknown_positions.as_deref(), &mut pause) => ended,
        };
        match ended {
            Ended::Unheard => return,
            Ended::Failed(why) => tracing::warn!("the change listener {why}"),
        }
        // What was announced while nobody listened is in the feed.
        if !pass_on(
            &invalidations,
            Invalidation::CatchUp,
            unknown_positions.as_deref(),
        ) {
            return;
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(pause) => {}
        }
        pause = (pause * 2).min(MAX_PAUSE);
    }
}

/// Why a connection's session ended.
enum Ended {
    /// Nobody takes the invalidations any more: the store is gone.
    Unheard,
    /// The connection failed, or a statement on it did: what happened, for the log.
    Failed(String),
}

/// One connection's life: connect, `LISTEN`, then pass on what it hears and mark its place,
/// until the connection fails. A successful `LISTEN` resets `pause`.
async fn session<T>(
    config: &tokio_postgres::Config,
    tls: T,
    own_id: &str,
    invalidations: &mpsc::UnboundedSender<Invalidation>,
    unknown_positions: Option<&AtomicU64>,
    pause: &mut Duration,
) -> Ended
where
    T: MakeTlsConnect<Socket> + Clone + Send + Sync + 'static,
    T::Stream: Send + Sync + 'static,
    T::TlsConnect: Send,
    <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
{
    let (client, mut connection) = match config.connect(tls).await {
        Ok(connected) => connected,
        Err(error) => return Ended::Failed(format!("cannot connect: {error}")),
    };
    let listen_sql = format!("LISTEN {CHANGES_CHANNEL}");
    let mark_params: [&(dyn ToSql + Sync); 2] = [&CHANGES_CHANNEL, &own_id];
    // The statement in flight on the connection: `LISTEN` first, then one mark at a time,
    // while the connection keeps delivering notifications.
    let mut request = Some(client.batch_execute(&listen_sql).boxed());
    let mut is_listening = false;
    let mut has_unmarked = false;
    let mut marks = tokio::time::interval(MARK_INTERVAL);
    marks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            result = finish(&mut request) => {
                request = None;
                if let Err(error) = result {
                    let doing = if is_listening { "cannot mark its place" } else { "cannot listen" };
                    return Ended::Failed(format!("{doing}: {error}"));
                }
                if !is_listening {
                    is_listening = true;
                    *pause = FIRST_PAUSE;
                    // Every commit from now on is heard; the feed holds those before.
                    if !pass_on(invalidations, Invalidation::CatchUp, unknown_positions) {
                        return Ended::Unheard;
                    }
                }
            }
            _ = marks.tick(), if has_unmarked && request.is_none() => {
                has_unmarked = false;
                request = Some(client.execute(MARK, &mark_params).map_ok(|_| ()).boxed());
            }
            message = poll_fn(|cx| connection.poll_message(cx)) => {
                let heard = match message {
                    Some(Ok(AsyncMessage::Notification(notification))) => {
                        parse(notification.payload(), own_id)
                    }
                    Some(Ok(_)) => continue,
                    Some(Err(error)) => {
                        return Ended::Failed(format!("lost its connection: {error}"));
                    }
                    None => return Ended::Failed("lost its connection".to_owned()),
                };
                let invalidation = match heard {
                    Heard::OwnChange => {
                        has_unmarked = true;
                        continue;
                    }
                    Heard::Change(invalidation) => {
                        has_unmarked = true;
                        invalidation
                    }
                    Heard::Mark(seq) => Invalidation::HeardThrough(seq),
                    Heard::OtherMark => continue,
                };
                if !pass_on(invalidations, invalidation, unknown_positions) {
                    return Ended::Unheard;
                }
            }
        }
    }
}

/// Hands an invalidation to the store; `false` when nobody takes them any more. Another
/// server's commit (or a catch-up, which may find some) first counts in `unknown_positions`, the read
/// replicas' count of commits whose WAL position is unknown (`replicas`): the next standby
/// read first reads the primary's position, which is past that commit, and waits for it, so
/// no read that follows the invalidation fills the cache from a standby that has not replayed
/// the commit.
fn pass_on(
    invalidations: &mpsc::UnboundedSender<Invalidation>,
    invalidation: Invalidation,
    unknown_positions: Option<&AtomicU64>,
) -> bool {
    if let Some(unknown_positions) = unknown_positions
        && !matches!(invalidation, Invalidation::HeardThrough(_))
    {
        unknown_positions.fetch_add(1, Ordering::AcqRel);
    }
    invalidations.send(invalidation).is_ok()
}

/// The result of the statement in flight; pending forever when there is none.
async fn finish(
    request: &mut Option<BoxFuture<'_, Result<(), tokio_postgres::Error>>>,
) -> Result<(), tokio_postgres::Error> {
    match request {
        Some(request) => request.await,
        None => std::future::pending().await,
    }
}

/// What one notification tells this listener.
#[derive(Debug, PartialEq, Eq)]
enum Heard {
    /// A change this server wrote: its own cache is up to date.
    OwnChange,
    /// A change another server wrote (`All` for a payload this version cannot read).
    Change(Invalidation),
    /// This listener's mark came back: every change up to this number is accounted for.
    Mark(u64),
    /// Another server's mark.
    OtherMark,
}

/// A notification's payload: `[instance, collection, key]` announces a change, and
/// `[instance, "", seq]` is a mark (no collection's name is empty).
fn parse(payload: &str, own_id: &str) -> Heard {
    match serde_json::from_str::<(String, String, String)>(payload) {
        Ok((instance, collection, seq)) if collection.is_empty() => match seq.parse() {
            Ok(seq) if instance == own_id => Heard::Mark(seq),
            _ => Heard::OtherMark,
        },
        Ok((instance, _, _)) if instance == own_id => Heard::OwnChange,
        Ok((_, collection, key)) => Heard::Change(Invalidation::Key { collection, key }),
        // Not ours to read: drop everything rather than risk a stale entry.
        Err(_) => Heard::Change(Invalidation::All),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_are_changes_or_marks() {
        assert_eq!(parse(r#"["7","players","alice"]"#, "7"), Heard::OwnChange);
        assert_eq!(
            parse(r#"["8","players","alice"]"#, "7"),
            Heard::Change(Invalidation::Key {
                collection: "players".into(),
                key: "alice".into()
            })
        );
        // As `json_build_array` writes it, with spaces.
        assert_eq!(parse(r#"["7", "", "42"]"#, "7"), Heard::Mark(42));
        assert_eq!(parse(r#"["8", "", "42"]"#, "7"), Heard::OtherMark);
        assert_eq!(parse(r#"["7", "", "x"]"#, "7"), Heard::OtherMark);
        assert_eq!(parse("not json", "7"), Heard::Change(Invalidation::All));
    }
}
