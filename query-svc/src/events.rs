//! `GET /events`: the log as Server-Sent Events. Each event has `id:` its seq,
//! `event:` its type and `data:` its envelope as JSON (the log line). A stream sends
//! history first (from `?from=N`, or after the `Last-Event-ID` a reconnecting client
//! sends), read from the log, then live events as they are applied; without either it
//! sends only live events. Keep-alive comments every [`KEEP_ALIVE`]. Each stream has
//! a bounded buffer ([`STREAM_EVENTS_BUFFERED`]): a client that does not keep up with
//! live events is disconnected (it may reconnect with `Last-Event-ID`), so a slow
//! reader never grows the server's memory.

use crate::QueryState;
use crate::history::{self, LineEvent};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;
use warp::sse::Event;

/// Interval of keep-alive comments on an idle stream.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// Events buffered per stream between the producer and the connection.
pub const STREAM_EVENTS_BUFFERED: usize = 4096;

fn sse_event(e: &LineEvent) -> Event {
    // The line is JSON from the log: UTF-8 without newlines.
    Event::default()
        .id(e.seq.to_string())
        .event(e.kind)
        .data(String::from_utf8_lossy(&e.line))
}

/// Why a stream ended, for the log.
enum End {
    ClientGone,
    TooSlow,
    Closing,
    Failed(String),
}

/// Starts a stream of events from seq `from` (at least 1): returns the receiving end
/// the response reads. The producer holds `permit` (a stream slot) while it runs.
pub fn open(
    state: Arc<QueryState>,
    from: u64,
    permit: tokio::sync::OwnedSemaphorePermit,
) -> mpsc::Receiver<Result<Event, Infallible>> {
    let (tx, rx) = mpsc::channel(STREAM_EVENTS_BUFFERED);
    tokio::spawn(async move {
        let end = produce(&state, from, &tx).await;
        match end {
            End::TooSlow => tracing::info!(from, "event stream cut: the client did not keep up"),
            End::Failed(e) => tracing::warn!(from, error = %e, "event stream failed"),
            End::ClientGone | End::Closing => tracing::debug!(from, "event stream ended"),
        }
        drop(permit);
    });
    rx
}

/// Feeds one `/events` subscriber: history from the log, then live batches. One
/// function: the hand-over from history to live shares the cursor and the
/// subscription, and splitting it would hide the one place where no event may be
/// lost or repeated.
async fn produce(
    state: &Arc<QueryState>,
    from: u64,
    tx: &mpsc::Sender<Result<Event, Infallible>>,
) -> End {
    // Subscribe before reading the head: everything after it arrives live.
    let mut live = state.live.subscribe();
    let mut closing = state.closing();
    let head = state.applied_seq();
    let mut next = from.max(1);
    if next <= head {
        let mut cursor = state.seek.before(next);
        // One reader for the whole history: a stream's reader goes on where it was.
        let mut log = Some(state.archive.log.open());
        loop {
            let mut reader = log.take().expect("the reader comes back after each chunk");
            let read = tokio::task::spawn_blocking(move || {
                let read = history::read_events(&mut *reader, cursor, next, head);
                (reader, read)
            })
            .await;
            let (events, after, done) = match read {
                Ok((reader, Ok(r))) => {
                    log = Some(reader);
                    r
                }
                Ok((_, Err(e))) => return End::Failed(e),
                Err(e) => return End::Failed(e.to_string()),
            };
            for e in &events {
                tokio::select! {
                    sent = tx.send(Ok(sse_event(e))) => if sent.is_err() { return End::ClientGone },
                    _ = closing.changed() => return End::Closing,
                }
                next = e.seq + 1;
            }
            cursor = after;
            if done {
                break;
            }
        }
        if next <= head {
            return End::Failed(format!(
                "the log ended at seq {} before the applied seq {head}",
                next - 1
            ));
        }
    }
    loop {
        tokio::select! {
            batch = live.recv() => match batch {
                Ok(batch) => {
                    for e in batch.iter() {
                        if e.seq < next {
                            continue;
                        }
                        match tx.try_send(Ok(sse_event(e))) {
                            Ok(()) => next = e.seq + 1,
                            Err(mpsc::error::TrySendError::Full(_)) => return End::TooSlow,
                            Err(mpsc::error::TrySendError::Closed(_)) => return End::ClientGone,
                        }
                    }
                }
                Err(RecvError::Lagged(_)) => return End::TooSlow,
                Err(RecvError::Closed) => return End::Closing,
            },
            _ = closing.changed() => return End::Closing,
            _ = tx.closed() => return End::ClientGone,
        }
    }
}
