//! The change listener: a dedicated connection that `LISTEN`s for writes committed by other
//! servers and passes them on as [`Change`]s, so each server can drop stale cache entries.
//!
//! When the connection drops, notifications may have been missed: the listener sends
//! [`Invalidation::All`] and reconnects with a growing pause (up to five seconds). It stops when its
//! token is cancelled (by `Backend::close` or when the backend is dropped).

use std::future::poll_fn;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres::{AsyncMessage, Socket};
use tokio_util::sync::CancellationToken;

use super::write::CHANGES_CHANNEL;
use crate::backend::Invalidation;

/// Runs until cancelled.
pub async fn listen<T>(
    config: tokio_postgres::Config,
    tls: T,
    instance_id: u64,
    changes: mpsc::UnboundedSender<Invalidation>,
    cancel: CancellationToken,
) where
    T: MakeTlsConnect<Socket> + Clone + Send + Sync + 'static,
    T::Stream: Send + Sync + 'static,
    T::TlsConnect: Send,
    <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
{
    let own_id = instance_id.to_string();
    let mut pause = Duration::from_millis(50);
    loop {
        let connected = tokio::select! {
            () = cancel.cancelled() => return,
                        connected = config.connect(tls.clone()) => connected,
        };
        match connected {
            Ok((client, mut connection)) => {
                let listen_sql = format!("LISTEN {CHANGES_CHANNEL}");
                let listen = client.batch_execute(&listen_sql);
                tokio::pin!(listen);
                let mut is_listening = false;
                loop {
                    tokio::select! {
                        () = cancel.cancelled() => return,
                        result = &mut listen, if !is_listening => match result {
                            Ok(()) => {
                                is_listening = true;
                                pause = Duration::from_millis(50);
                                // Writes may have committed while nobody listened.
                                if changes.send(Invalidation::All).is_err() {
                                    return;
                                }
                            }
                            Err(error) => {
                                tracing::warn!(%error, "cannot listen for changes");
                                break;
                            }
                        },
                        message = poll_fn(|cx| connection.poll_message(cx)) => match message {
                            Some(Ok(AsyncMessage::Notification(notification))) => {
                                if let Some(change) = parse(notification.payload(), &own_id)
                                    && changes.send(change).is_err()
                                {
                                    return;
                                }
                            }
                            Some(Ok(_)) => {}
                            Some(Err(error)) => {
                                tracing::warn!(%error, "the change listener lost its connection");
                                break;
                            }
                            None => break,
                        },
                    }
                }
            }
            Err(error) => tracing::warn!(%error, "the change listener cannot connect"),
        }
        if changes.send(Invalidation::All).is_err() {
            return;
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(pause) => {}
        }
        pause = (pause * 2).min(Duration::from_secs(5));
    }
}

/// A change from a notification payload `[instance, collection, key]`, unless it is our own.
fn parse(payload: &str, own_id: &str) -> Option<Invalidation> {
    match serde_json::from_str::<(String, String, String)>(payload) {
        Ok((instance, _, _)) if instance == own_id => None,
        Ok((_, collection, key)) => Some(Invalidation::Key { collection, key }),
        // Not ours to read: drop everything rather than risk a stale entry.
        Err(_) => Some(Invalidation::All),
    }
}
