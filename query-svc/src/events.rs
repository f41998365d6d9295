//! `GET /events`: the log as Server-Sent Events. Each event has `id:` its seq,
//! `event:` its type and `data:` its envelope as JSON (the log line). A stream sends
//! history first (from `?from=N`, or after the `Last-Event-ID` a reconnecting client
//! sends), read from the log, then live events as they are applied; without either it
//! starts live. Keep-alive comments every [`KEEP_ALIVE`].
//!
//! ## History, live, and back
//!
//! A stream is always in one of two modes:
//!
//! - **history**: events are read from the log ([`history::read_events`], from the
//!   nearest position the seek index knows) up to the applied seq, and each waits
//!   until the connection takes it;
//! - **live**: events come from the tailer's applied batches ([`QueryState::live`]),
//!   and are handed to the connection without waiting.
//!
//! Each time a stream turns live it sends a [`CAUGHT_UP`] event whose data is the
//! applied seq it caught up at (`{"seq":N}`): everything up to N that the stream was
//! asked for has been sent, and what follows is live. It has no `id:`, so a
//! reconnecting client's `Last-Event-ID` stays the last log event it got. A stream
//! that starts live (no `from`, no `Last-Event-ID`) sends it at once.
//!
//! A live stream that falls behind (its buffer of [`STREAM_EVENTS_BUFFERED`] events
//! is full, or it is more than [`LIVE_BATCHES_BUFFERED`] batches behind the tailer) is
//! not cut off: it goes back to reading history from its next seq, and turns live
//! again (with a new `caught-up`) once it has reached the applied seq and has
//! [`LIVE_ROOM_EVENTS`] free in its buffer. The one cursor `next` (the seq of the
//! next event to send) is the whole hand-over: history sends from `next`, live skips
//! what is below `next` and falls back on anything above it, so every event is sent
//! exactly once, in seq order, across every switch.
//!
//! ## Memory
//!
//! Per stream: at most [`STREAM_EVENTS_BUFFERED`] events waiting for the connection,
//! plus, while reading history, one chunk of the log ([`history::HISTORY_CHUNK_BYTES`])
//! and its events. Shared by all streams: the last [`LIVE_BATCHES_BUFFERED`] applied
//! batches. A slow reader slows only its own history reading; it never grows the
//! server's memory.
//!
//! [`LIVE_BATCHES_BUFFERED`]: crate::LIVE_BATCHES_BUFFERED

use crate::QueryState;
use crate::history::{self, LineEvent};
use shared_events::{LogRead, Symbol};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::sync::{mpsc, watch};
use warp::sse::Event;

/// Interval of keep-alive comments on an idle stream.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// Events buffered per stream between the producer and the connection. A live
/// stream whose buffer is full has fallen behind and goes back to history.
pub const STREAM_EVENTS_BUFFERED: usize = 4096;
/// Free room a stream's buffer needs before the stream turns live, so that a reader
/// that has just caught up can take the next live batches instead of falling back
/// at the first one.
pub const LIVE_ROOM_EVENTS: usize = STREAM_EVENTS_BUFFERED / 2;
/// The SSE event type of the marker a stream sends when it turns live.
pub const CAUGHT_UP: &str = "caught-up";

/// What the connection reads.
type Sender = mpsc::Sender<Result<Event, Infallible>>;

fn sse_event(e: &LineEvent) -> Event {
    // The line is JSON from the log: UTF-8 without newlines.
    Event::default()
        .id(e.seq.to_string())
        .event(e.kind)
        .data(String::from_utf8_lossy(&e.line))
}

/// The marker that history (or nothing) is over and live events follow, after `seq`.
/// No `id:`: `Last-Event-ID` names log events only.
fn caught_up_event(seq: u64) -> Event {
    Event::default()
        .event(CAUGHT_UP)
        .data(format!("{{\"seq\":{seq}}}"))
}

/// Why a stream ended, for the log.
enum End {
    ClientGone,
    Closing,
    Failed(String),
}

/// Why a live stream went back to history, for the log.
#[derive(Debug, Clone, Copy)]
enum Behind {
    /// Its buffer was full: the client reads slower than events are applied.
    BufferFull,
    /// It was more than `LIVE_BATCHES_BUFFERED` batches behind the tailer.
    Lagged,
    /// A batch did not start at its next seq, or came without its lines (the tailer
    /// began it before the stream subscribed): the events are in the log.
    Gap,
}

/// Starts a stream of events from seq `from` (at least 1): returns the receiving end
/// the response reads. The producer holds `permit` (a stream slot) while it runs.
pub fn open(
    state: Arc<QueryState>,
    from: u64,
    market: Option<Symbol>,
    permit: tokio::sync::OwnedSemaphorePermit,
) -> mpsc::Receiver<Result<Event, Infallible>> {
    let (tx, rx) = mpsc::channel(STREAM_EVENTS_BUFFERED);
    let stream = Stream { tx, market };
    tokio::spawn(async move {
        match produce(&state, from, &stream).await {
            End::Failed(e) => tracing::warn!(from, error = %e, "event stream failed"),
            End::ClientGone | End::Closing => tracing::debug!(from, "event stream ended"),
        }
        drop(permit);
    });
    rx
}

/// One subscriber: where its events go, and the one market it wants (`None`: all).
struct Stream {
    tx: Sender,
    market: Option<Symbol>,
}

impl Stream {
    /// Whether the subscriber wants `e`: the cursor moves past the others unsent.
    fn wants(&self, e: &LineEvent) -> bool {
        self.market.is_none_or(|m| Some(m) == e.market)
    }
}

/// Feeds one `/events` subscriber: history from the log until it has reached the
/// applied seq, then live batches until it falls behind, then history again, and so
/// on. Returns only when the stream ends.
async fn produce(state: &Arc<QueryState>, from: u64, stream: &Stream) -> End {
    let tx = &stream.tx;
    let mut closing = state.closing();
    let mut next = from.max(1);
    // One reader for all the stream's history: it goes on where it was.
    let mut log: Option<Box<dyn LogRead + Send>> = None;
    loop {
        // Subscribe before reading the head: everything after it arrives live.
        let mut live = state.live.subscribe();
        let head = state.applied_seq();
        if next <= head {
            // Not read while history is sent: it would only lag.
            drop(live);
            let sent = send_history(state, &mut log, &mut next, head, stream, &mut closing).await;
            if let Err(end) = sent {
                return end;
            }
            continue;
        }
        if tx.capacity() < LIVE_ROOM_EVENTS {
            drop(live);
            tokio::select! {
                room = tx.reserve_many(LIVE_ROOM_EVENTS) => if room.is_err() { return End::ClientGone },
                _ = closing.changed() => return End::Closing,
            }
            // The head may have moved while the client read: look again.
            continue;
        }
        // This task is the only sender and saw the room: the marker fits.
        if tx.try_send(Ok(caught_up_event(head))).is_err() {
            return End::ClientGone;
        }
        match follow(state, &mut live, &mut next, stream, &mut closing).await {
            Ok(behind) => {
                tracing::debug!(next, ?behind, "event stream fell behind: reading history")
            }
            Err(end) => return end,
        }
    }
}

/// Sends the events from `*next` to `head` read from the log, each as soon as the
/// connection has room for it; `*next` follows what was sent.
async fn send_history(
    state: &QueryState,
    log: &mut Option<Box<dyn LogRead + Send>>,
    next: &mut u64,
    head: u64,
    stream: &Stream,
    closing: &mut watch::Receiver<bool>,
) -> Result<(), End> {
    let tx = &stream.tx;
    let mut cursor = state.seek.before(*next);
    loop {
        let mut reader = log.take().unwrap_or_else(|| state.archive.log.open());
        let first = *next;
        let read = tokio::task::spawn_blocking(move || {
            let read = history::read_events(&mut *reader, cursor, first, head);
            (reader, read)
        })
        .await;
        let (events, after, done) = match read {
            Ok((reader, Ok(r))) => {
                *log = Some(reader);
                r
            }
            Ok((_, Err(e))) => return Err(End::Failed(e)),
            Err(e) => return Err(End::Failed(e.to_string())),
        };
        for e in &events {
            if !stream.wants(e) {
                *next = e.seq + 1;
                continue;
            }
            tokio::select! {
                sent = tx.send(Ok(sse_event(e))) => if sent.is_err() { return Err(End::ClientGone) },
                _ = closing.changed() => return Err(End::Closing),
            }
            *next = e.seq + 1;
        }
        cursor = after;
        if done {
            break;
        }
    }
    if *next <= head {
        return Err(End::Failed(format!(
            "the log ended at seq {} before the applied seq {head}",
            *next - 1
        )));
    }
    Ok(())
}

/// Hands live batches to the connection without waiting, from `*next` on, until the
/// stream falls behind (returned) or ends (the error).
async fn follow(
    state: &QueryState,
    live: &mut broadcast::Receiver<Arc<Vec<LineEvent>>>,
    next: &mut u64,
    stream: &Stream,
    closing: &mut watch::Receiver<bool>,
) -> Result<Behind, End> {
    let tx = &stream.tx;
    loop {
        let batch = tokio::select! {
            batch = live.recv() => batch,
            _ = closing.changed() => return Err(End::Closing),
            _ = tx.closed() => return Err(End::ClientGone),
        };
        let batch = match batch {
            Ok(batch) => batch,
            Err(RecvError::Lagged(_)) => return Ok(Behind::Lagged),
            Err(RecvError::Closed) => return Err(End::Closing),
        };
        if batch.is_empty() {
            // Events applied without their lines: published before this batch was
            // sent, so the applied seq shows whether any of them are ours.
            if state.applied_seq() >= *next {
                return Ok(Behind::Gap);
            }
            continue;
        }
        for e in batch.iter() {
            if e.seq < *next {
                continue;
            }
            if e.seq > *next {
                return Ok(Behind::Gap);
            }
            if !stream.wants(e) {
                *next = e.seq + 1;
                continue;
            }
            match tx.try_send(Ok(sse_event(e))) {
                Ok(()) => *next = e.seq + 1,
                Err(mpsc::error::TrySendError::Full(_)) => return Ok(Behind::BufferFull),
                Err(mpsc::error::TrySendError::Closed(_)) => return Err(End::ClientGone),
            }
        }
    }
}
