//! Serving HTTP with limits: a connection cap, a header-read timeout (slowloris),
//! bounded heads, targets and bodies, hot routes answered ahead of warp's filter
//! chain, every request counted by route and status, `/metrics`, and a bounded
//! graceful shutdown. Routes come from the services; this module knows nothing of
//! what they mean.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::reply::Response;

/// Longest time in-flight requests get to finish after a stop signal.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// A request as a hot route sees it: its head, the body not read (no route takes
/// one; the limits were checked before).
pub struct Head<'a> {
    pub method: &'a warp::http::Method,
    /// The path, as sent (not percent-decoded).
    pub path: &'a str,
    /// The raw query string, empty when there is none.
    pub query: &'a str,
    pub headers: &'a warp::http::HeaderMap,
}

impl<'a> Head<'a> {
    /// Splits the path, `/a/b/c`, into its segments in `out`: how many, or `None`
    /// for a path of another shape (an empty segment, a trailing slash, more
    /// segments than `out` holds), which a hot route leaves to warp.
    pub fn segments(&self, out: &mut [&'a str]) -> Option<usize> {
        let mut n = 0;
        for segment in self.path.strip_prefix('/')?.split('/') {
            if segment.is_empty() || n == out.len() {
                return None;
            }
            out[n] = segment;
            n += 1;
        }
        Some(n)
    }
}

/// A hot route's answer: ready now, or once the future resolves.
pub enum Answer {
    Now(Response),
    Later(Pin<Box<dyn Future<Output = Response> + Send>>),
}

/// Routes answered ahead of warp's filter chain: the few that carry nearly all the
/// traffic (a trading API's order placement and book reads), matched by hand on
/// the request's head. `None` hands the request to the warp routes, which must
/// answer it exactly as the hot route would have: a hot route is a shortcut, never
/// a different answer. Every limit still applies (they are checked first), and the
/// request is counted as any other.
pub type HotRoutes = Arc<dyn Fn(&Head<'_>) -> Option<Answer> + Send + Sync>;

/// What a binary serves: its routes, and what counting and answering them needs
/// to know of them.
#[derive(Clone)]
pub struct Api {
    /// Every route, their errors already recovered into responses.
    pub routes: BoxedFilter<(Response,)>,
    /// The hot routes, tried first.
    pub hot: Option<HotRoutes>,
    /// The first path segments of the routes: the `route` labels of
    /// `foldbook_http_requests_total` (`/` counts as `index`, any other path as
    /// `other`, so the labels stay bounded).
    pub route_labels: &'static [&'static str],
    /// The methods a path allows, for the `Allow` header of a 405 (RFC 9110).
    pub allowed_methods: fn(&str) -> Option<&'static str>,
}

impl Api {
    /// `routes`, counted under `route_labels`, answering 405s with
    /// `allowed_methods`.
    pub fn new(
        routes: BoxedFilter<(Response,)>,
        route_labels: &'static [&'static str],
        allowed_methods: fn(&str) -> Option<&'static str>,
    ) -> Self {
        Api {
            routes,
            hot: None,
            route_labels,
            allowed_methods,
        }
    }

    /// The same API with `hot` routes tried before the others.
    pub fn with_hot(mut self, hot: HotRoutes) -> Self {
        self.hot = Some(hot);
        self
    }
}

/// A bounded label for a request path: its first segment if it is one of ours.
fn route_label(labels: &'static [&'static str], path: &str) -> &'static str {
    let first = path.trim_start_matches('/').split('/').next().unwrap_or("");
    if first.is_empty() {
        return "index";
    }
    labels
        .iter()
        .find(|r| **r == first)
        .copied()
        .unwrap_or("other")
}

/// `api`'s warp routes plus `GET /metrics`, every 405 carrying `Allow` with the
/// route's methods. (Counting is done around every answer in [`serve`], hot
/// routes' too.)
pub fn instrument(api: &Api) -> BoxedFilter<(Response,)> {
    let allowed_methods = api.allowed_methods;
    // `routes` answers every request (its errors already recovered into JSON), so this
    // route must answer another method itself, or `routes` would say 404.
    let metrics_route = warp::path("metrics")
        .and(warp::path::end())
        .and(warp::method())
        .map(move |method: warp::http::Method| {
            if method != warp::http::Method::GET {
                return json_error(
                    warp::http::StatusCode::METHOD_NOT_ALLOWED,
                    "method not allowed for this route".to_owned(),
                );
            }
            warp::http::Response::builder()
                .header("content-type", "text/plain; version=0.0.4")
                .body(crate::prometheus::render().into())
                .expect("valid response")
        });
    warp::path::full()
        .and(metrics_route.or(api.routes.clone()).unify())
        .map(move |path: warp::path::FullPath, mut response: Response| {
            let allow = warp::http::header::ALLOW;
            if response.status() == warp::http::StatusCode::METHOD_NOT_ALLOWED
                && !response.headers().contains_key(&allow)
                && let Some(methods) = allowed_methods(path.as_str())
            {
                response
                    .headers_mut()
                    .insert(allow, warp::http::HeaderValue::from_static(methods));
            }
            response
        })
        .boxed()
}

/// Default bounds on what one client may hold or send; each is a flag.
pub const CONNECTIONS_MAX: usize = 4096;
pub const HEADER_TIMEOUT_MS: u64 = 10_000;
pub const HEADER_BYTES_MAX: usize = 16 * 1024;
pub const HEADERS_MAX: usize = 64;
pub const URI_BYTES_MAX: usize = 4096;
pub const BODY_BYTES_MAX: u64 = 16 * 1024;

/// Bounds on connections and requests, so slow or greedy clients cannot starve the
/// others or grow memory. Shared by every binary.
#[derive(Debug, Clone, clap::Args)]
pub struct Limits {
    /// Most open connections; a connection beyond it is closed at once.
    #[arg(long, env = "FOLDBOOK_CONNECTIONS_MAX", default_value_t = CONNECTIONS_MAX)]
    pub connections_max: usize,
    /// A connection that has not sent a complete request head within this time,
    /// including an idle keep-alive connection between requests, is closed (slowloris).
    #[arg(long, env = "FOLDBOOK_HEADER_TIMEOUT_MS", default_value_t = HEADER_TIMEOUT_MS)]
    pub header_timeout_ms: u64,
    /// Largest request head (request line and headers); larger is 431.
    #[arg(long, env = "FOLDBOOK_HEADER_BYTES_MAX", default_value_t = HEADER_BYTES_MAX)]
    pub header_bytes_max: usize,
    /// Most request headers; more is 431.
    #[arg(long, env = "FOLDBOOK_HEADERS_MAX", default_value_t = HEADERS_MAX)]
    pub headers_max: usize,
    /// Longest request target (path and query); longer is 414.
    #[arg(long, env = "FOLDBOOK_URI_BYTES_MAX", default_value_t = URI_BYTES_MAX)]
    pub uri_bytes_max: usize,
    /// Largest request body (no route takes one); larger is 413.
    #[arg(long, env = "FOLDBOOK_BODY_BYTES_MAX", default_value_t = BODY_BYTES_MAX)]
    pub body_bytes_max: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            connections_max: CONNECTIONS_MAX,
            header_timeout_ms: HEADER_TIMEOUT_MS,
            header_bytes_max: HEADER_BYTES_MAX,
            headers_max: HEADERS_MAX,
            uri_bytes_max: URI_BYTES_MAX,
            body_bytes_max: BODY_BYTES_MAX,
        }
    }
}

fn json_error(status: warp::http::StatusCode, message: String) -> Response {
    use warp::Reply;
    warp::reply::with_status(
        warp::reply::json(&serde_json::json!({ "error": message })),
        status,
    )
    .into_response()
}

/// The most headers hyper parses when not told a bound (its `DEFAULT_MAX_HEADERS`);
/// more is its own 431.
const HYPER_HEADERS_MAX: usize = 100;

/// The answer for a request that breaks a bound checked before routing, if any;
/// the connection is closed after it, as hyper does after its own 431.
fn over_limit<B>(limits: &Limits, req: &warp::http::Request<B>) -> Option<Response> {
    let mut answer = over_limit_answer(limits, req)?;
    answer.headers_mut().insert(
        warp::http::header::CONNECTION,
        warp::http::HeaderValue::from_static("close"),
    );
    Some(answer)
}

fn over_limit_answer<B>(limits: &Limits, req: &warp::http::Request<B>) -> Option<Response> {
    use warp::http::StatusCode;
    if req.headers().len() > limits.headers_max {
        return Some(json_error(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            format!("more than {} request headers", limits.headers_max),
        ));
    }
    let target = req.uri().path_and_query().map_or(0, |pq| pq.as_str().len());
    if target > limits.uri_bytes_max {
        return Some(json_error(
            StatusCode::URI_TOO_LONG,
            format!("request target longer than {} bytes", limits.uri_bytes_max),
        ));
    }
    let length = req
        .headers()
        .get(warp::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if length.is_some_and(|n| n > limits.body_bytes_max) {
        return Some(json_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body larger than {} bytes", limits.body_bytes_max),
        ));
    }
    None
}

/// Serves `api` (plus `/metrics`) on `listener` within `limits` until a stop
/// signal or `fatal` resolves, then calls `on_stop` (to end long-lived answers such as
/// event streams), stops accepting and lets in-flight requests finish (at most
/// [`SHUTDOWN_GRACE`]). Logs `listening on http://ADDR` first, which scripts and
/// tests wait for.
///
/// The connections are served by hyper directly rather than through `warp::serve`,
/// which sets no header-read timeout and no connection cap; the header-read timeout
/// is kept per connection ([`crate::idle`]).
///
/// The accept loop and the graceful stop stay in one function: they share the
/// listener, the connection slots and the shutdown watcher.
pub async fn serve(
    listener: TcpListener,
    api: Api,
    limits: &Limits,
    fatal: impl Future<Output = ()> + Send + 'static,
    on_stop: impl FnOnce() + Send + 'static,
) -> std::io::Result<()> {
    use hyper::service::Service as _;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "listening on http://{addr}");
    let routes = hyper_util::service::TowerToHyperService::new(warp::service(instrument(&api)));
    let (hot, labels) = (api.hot.clone(), api.route_labels);
    let limits = std::sync::Arc::new(limits.clone());
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(limits.connections_max));
    let open = metrics::gauge!("foldbook_connections_open");
    let refused = metrics::counter!("foldbook_connections_refused_total");
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let header_timeout = Duration::from_millis(limits.header_timeout_ms);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        // The header-read timeout is kept per connection (`idle`), not by hyper.
        .header_read_timeout(None)
        .max_header_size(limits.header_bytes_max)
        .keep_alive(true);
    // Up to hyper's own bound (100 headers) the header count is checked in
    // `over_limit`: telling hyper a bound makes it fill a table of that many
    // entries before parsing every request, about 1% of a small read's time.
    if limits.headers_max > HYPER_HEADERS_MAX {
        builder.max_headers(limits.headers_max);
    }
    let stop = async move {
        tokio::select! {
            _ = crate::signal::stop_signal() => tracing::info!("stop signal: shutting down"),
            _ = fatal => tracing::error!("fatal error: shutting down"),
        }
    };
    tokio::pin!(stop);
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: wait a moment, go on.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut stop => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            refused.increment(1);
            tracing::debug!("connection refused: {} open", limits.connections_max);
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (routes, limits, open) = (routes.clone(), limits.clone(), open.clone());
        let hot = hot.clone();
        let idle = crate::idle::Idle::new();
        let connection = idle.clone();
        let service = hyper::service::service_fn(move |req: warp::http::Request<_>| {
            let in_service = idle.enter();
            let label = route_label(labels, req.uri().path());
            let answer = over_limit(&limits, &req).map(Answer::Now).or_else(|| {
                let head = Head {
                    method: req.method(),
                    path: req.uri().path(),
                    query: req.uri().query().unwrap_or(""),
                    headers: req.headers(),
                };
                hot.as_ref().and_then(|hot| hot(&head))
            });
            // Only a request for warp's routes takes their service along.
            let route = answer.ok_or_else(|| (routes.clone(), req));
            async move {
                let response = match route {
                    Ok(Answer::Now(response)) => response,
                    Ok(Answer::Later(future)) => future.await,
                    Err((routes, req)) => match routes.call(req).await {
                        Ok(response) => response,
                        Err(never) => match never {},
                    },
                };
                crate::counting::count_request(label, response.status().as_u16());
                Ok::<_, std::convert::Infallible>(in_service.finish(response))
            }
        });
        let conn =
            graceful.watch(builder.serve_connection(hyper_util::rt::TokioIo::new(stream), service));
        tokio::spawn(async move {
            open.increment(1.0);
            tokio::select! {
                ended = conn => if let Err(e) = ended {
                    tracing::debug!(error = %e, "connection ended with an error");
                },
                () = connection.overdue(header_timeout) => {
                    tracing::debug!("no complete request head within {header_timeout:?}: closing the connection");
                }
            }
            open.decrement(1.0);
            drop(slot);
        });
    }
    drop(listener);
    on_stop();
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after {SHUTDOWN_GRACE:?}; closing them");
    }
    Ok(())
}
