//! The header-read timeout (slowloris) kept per connection instead of per request:
//! a connection that has waited `--header-timeout-ms` for a complete request head
//! (after it opened, or after its last answer, with no request in service and no
//! streamed answer still going out) is closed.
//!
//! hyper's own `header_read_timeout` arms a timer for every request head it starts
//! to read: an allocation, and an entry put into and taken out of the runtime's
//! timer wheel, about 5% of a small read's time. Here each connection has one timer,
//! `Idle::overdue`, which sleeps until the connection's deadline and only then
//! looks at it again; a request marks the connection busy and, when it is answered,
//! stamps the time it began to wait again: two atomic updates and a clock read.

use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Instant;

/// The clock the stamps count from (tokio's, which tests can pause).
fn base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

fn now_ms() -> u64 {
    base().elapsed().as_millis() as u64
}

/// One connection's waiting for request heads.
#[derive(Debug)]
pub(crate) struct Idle {
    /// Requests being served now (their head is complete).
    in_service: AtomicU32,
    /// Streamed answers still going out (an event stream, say).
    streams: AtomicU32,
    /// Since when the connection waits for a request head, ms on [`base`].
    waiting_since_ms: AtomicU64,
}

impl Idle {
    /// A connection that opened now.
    pub(crate) fn new() -> Arc<Idle> {
        Arc::new(Idle {
            in_service: AtomicU32::new(0),
            streams: AtomicU32::new(0),
            waiting_since_ms: AtomicU64::new(now_ms()),
        })
    }

    /// A request's head is complete: the connection is busy until the guard is
    /// finished (or dropped).
    pub(crate) fn enter(self: &Arc<Self>) -> InService {
        self.in_service.fetch_add(1, Ordering::Relaxed);
        InService(self.clone())
    }

    /// Resolves once the connection has waited `timeout` for a request head.
    pub(crate) async fn overdue(self: Arc<Self>, timeout: Duration) {
        let timeout_ms = timeout.as_millis() as u64;
        loop {
            let since = self.waiting_since_ms.load(Ordering::Relaxed);
            let busy = self.in_service.load(Ordering::Relaxed) > 0
                || self.streams.load(Ordering::Relaxed) > 0;
            let now = now_ms();
            // A request answered meanwhile moved the stamp: look again.
            let moved = self.waiting_since_ms.load(Ordering::Relaxed) != since;
            if !busy && !moved && now >= since.saturating_add(timeout_ms) {
                return;
            }
            let wake_ms = if busy || moved {
                now.saturating_add(timeout_ms)
            } else {
                since.saturating_add(timeout_ms)
            };
            tokio::time::sleep_until(base() + Duration::from_millis(wake_ms)).await;
        }
    }
}

/// A request in service on its connection.
#[derive(Debug)]
pub(crate) struct InService(Arc<Idle>);

impl InService {
    /// The request is answered with `response`: a streamed answer (no exact length)
    /// keeps the connection busy until its body is done, the others end the
    /// service here.
    pub(crate) fn finish<B: http_body::Body>(
        self,
        response: warp::http::Response<B>,
    ) -> warp::http::Response<Served<B>> {
        let streamed = response.body().size_hint().exact().is_none();
        let guard = streamed.then(|| {
            self.0.streams.fetch_add(1, Ordering::Relaxed);
            StreamGuard(self.0.clone())
        });
        drop(self);
        response.map(|body| Served {
            body,
            _streaming: guard,
        })
    }
}

impl Drop for InService {
    fn drop(&mut self) {
        self.0.waiting_since_ms.store(now_ms(), Ordering::Relaxed);
        self.0.in_service.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A streamed answer going out on its connection.
#[derive(Debug)]
struct StreamGuard(Arc<Idle>);

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.0.waiting_since_ms.store(now_ms(), Ordering::Relaxed);
        self.0.streams.fetch_sub(1, Ordering::Relaxed);
    }
}

/// An answer's body as served, with the guard of a streamed one.
#[derive(Debug)]
pub struct Served<B> {
    body: B,
    _streaming: Option<StreamGuard>,
}

impl<B: http_body::Body + Unpin> http_body::Body for Served<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUT: Duration = Duration::from_millis(300);

    /// Whether `overdue` resolves within `within`.
    async fn overdue_within(idle: &Arc<Idle>, within: Duration) -> bool {
        tokio::time::timeout(within, idle.clone().overdue(TIMEOUT))
            .await
            .is_ok()
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_waiting_too_long_for_a_head_is_overdue() {
        let idle = Idle::new();
        assert!(!overdue_within(&idle, TIMEOUT / 2).await);
        assert!(overdue_within(&idle, TIMEOUT).await);
    }

    #[tokio::test(start_paused = true)]
    async fn requests_in_service_and_streams_keep_it_busy_and_an_answer_restarts_the_wait() {
        let idle = Idle::new();
        let serving = idle.enter();
        assert!(!overdue_within(&idle, TIMEOUT * 3).await, "busy serving");
        let plain = serving.finish(warp::reply::Response::new(bytes::Bytes::from("x").into()));
        drop(plain);
        assert!(
            !overdue_within(&idle, TIMEOUT / 2).await,
            "the wait began anew"
        );
        assert!(overdue_within(&idle, TIMEOUT).await);

        let events =
            futures_util::stream::empty::<Result<warp::sse::Event, std::convert::Infallible>>();
        let sse = warp::reply::Reply::into_response(warp::sse::reply(events));
        let streaming = idle.enter().finish(sse);
        assert!(
            !overdue_within(&idle, TIMEOUT * 3).await,
            "a stream is going out"
        );
        drop(streaming);
        assert!(!overdue_within(&idle, TIMEOUT / 2).await);
        assert!(overdue_within(&idle, TIMEOUT).await);
    }
}
