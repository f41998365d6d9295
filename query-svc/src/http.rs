//! HTTP routes of the read side. Every answer carries `X-Applied-Seq`, the seq of
//! the view it was read from, and every read route takes `?min_seq=N[&timeout_ms=T]`
//! (read-your-writes: wait until seq N is applied, else 504). Errors are JSON
//! `{"error": ...}`.
//!
//! The small warp helpers at the top (`json`, `error`, `recover`, `raw_query`) also
//! exist in command-svc: the two services must not depend on each other, and
//! shared-events carries no HTTP.

use crate::QueryState;
use crate::projection::{BookView, OrderView, TRADES_KEPT, TradeView};
use plumbing::serve::{Answer, Head, HotRoutes};
use serde::Serialize;
use shared_events::auth::{Access, AuthTable};
use shared_events::market::UnknownMarket;
use shared_events::state::{MarketSpec, market_index, symbols};
use shared_events::{Symbol, domain};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use warp::Filter;
use warp::Reply as _;
use warp::filters::BoxedFilter;
use warp::http::header::{HeaderName, HeaderValue};
use warp::http::{HeaderMap, StatusCode};
use warp::reply::Response;

/// Default and largest `limit` for `/users/{user}/orders`.
pub const USER_ORDERS_LIMIT_DEFAULT: usize = 100;
pub const USER_ORDERS_LIMIT_MAX: usize = 1_000;
/// Default `limit` for `/trades` (the largest is [`TRADES_KEPT`]).
pub const TRADES_LIMIT_DEFAULT: usize = 100;
/// Most price levels per side in `/orderbook?depth=N`.
pub const DEPTH_MAX: usize = 10_000;
/// Default and longest wait for `min_seq`.
pub const MIN_SEQ_TIMEOUT_DEFAULT: Duration = Duration::from_millis(1_000);
pub const MIN_SEQ_TIMEOUT_MAX: Duration = Duration::from_millis(10_000);

pub fn json<T: Serialize>(status: StatusCode, body: &T) -> Response {
    warp::reply::with_status(warp::reply::json(body), status).into_response()
}

pub fn error(status: StatusCode, message: impl std::fmt::Display) -> Response {
    json(status, &serde_json::json!({ "error": message.to_string() }))
}

/// Turns warp's rejections (no route, wrong method, ...) into JSON errors.
pub async fn recover(rejection: warp::Rejection) -> Result<Response, Infallible> {
    let (status, message) = if rejection.is_not_found() {
        (StatusCode::NOT_FOUND, "no such route".to_owned())
    } else if rejection.find::<warp::reject::MethodNotAllowed>().is_some() {
        (
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed for this route".to_owned(),
        )
    } else {
        (
            StatusCode::BAD_REQUEST,
            format!("bad request: {rejection:?}"),
        )
    };
    Ok(error(status, message))
}

pub fn raw_query() -> impl Filter<Extract = (String,), Error = Infallible> + Clone {
    warp::query::raw().or(warp::any().map(String::new)).unify()
}

fn with_applied_seq(mut response: Response, seq: u64) -> Response {
    response.headers_mut().insert(X_APPLIED_SEQ, seq.into());
    response
}

/// The read side's own headers, made once.
const X_APPLIED_SEQ: HeaderName = HeaderName::from_static("x-applied-seq");
const X_BOOK_SEQ: HeaderName = HeaderName::from_static("x-book-seq");

fn bad_request(e: impl std::fmt::Display) -> Response {
    error(StatusCode::BAD_REQUEST, e)
}

fn parse_limit(raw: &str, max: usize) -> Result<usize, String> {
    raw.parse::<usize>()
        .ok()
        .filter(|n| (1..=max).contains(n))
        .ok_or_else(|| format!("limit must be an integer 1..={max}, got {raw:?}"))
}

fn parse_seq(name: &str, raw: &str) -> Result<u64, String> {
    if raw.is_empty() || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "{name} must be a non-negative integer, got {raw:?}"
        ));
    }
    raw.parse()
        .map_err(|_| format!("{name} is too large: {raw:?}"))
}

/// A read route's query: `min_seq`/`timeout_ms` plus the route's own parameters.
struct ReadQuery {
    params: Vec<(String, String)>,
    min_seq: Option<u64>,
    timeout: Duration,
}

impl ReadQuery {
    fn parse(query: &str, own: &[&str]) -> Result<ReadQuery, String> {
        // Every read parses its query: the names on the stack, not in a new Vec.
        let mut allowed = ["min_seq", "timeout_ms", "", "", "", ""];
        let names = 2 + own.len();
        allowed[2..names].copy_from_slice(own);
        let params = domain::parse_query(query, &allowed[..names])?;
        let min_seq = domain::query_value(&params, "min_seq", None, |raw| {
            parse_seq("min_seq", raw).map(Some)
        })?;
        let max_ms = MIN_SEQ_TIMEOUT_MAX.as_millis() as u64;
        let timeout = domain::query_value(&params, "timeout_ms", MIN_SEQ_TIMEOUT_DEFAULT, |raw| {
            parse_seq("timeout_ms", raw)
                .ok()
                .filter(|ms| *ms <= max_ms)
                .map(Duration::from_millis)
                .ok_or_else(|| format!("timeout_ms must be an integer 0..={max_ms}, got {raw:?}"))
        })?;
        Ok(ReadQuery {
            params,
            min_seq,
            timeout,
        })
    }

    fn get<T>(
        &self,
        name: &str,
        default: T,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<T, String> {
        domain::query_value(&self.params, name, default, parse)
    }
}

/// Read-your-writes: waits until `min_seq` is applied; the 504 says how far it got.
async fn wait_min_seq(state: &QueryState, query: &ReadQuery) -> Result<(), Response> {
    let Some(min_seq) = query.min_seq else {
        return Ok(());
    };
    let mut applied = state.subscribe();
    let reached =
        tokio::time::timeout(query.timeout, applied.wait_for(|seq| *seq >= min_seq)).await;
    if matches!(reached, Ok(Ok(_))) {
        return Ok(());
    }
    let seq = state.applied_seq();
    let mut response = json(
        StatusCode::GATEWAY_TIMEOUT,
        &serde_json::json!({
            "error": format!("seq {min_seq} was not applied within {} ms (applied: {seq})", query.timeout.as_millis()),
            "seq": seq,
        }),
    );
    response.headers_mut().insert("x-applied-seq", seq.into());
    Err(response)
}

/// What every read handler does first: checks all of its input with `check`, and only
/// then waits for `min_seq`, so that invalid input is a 400 at once, never a wait and a
/// 504.
async fn prepare<T>(
    state: &QueryState,
    query: &str,
    own: &[&str],
    check: impl FnOnce(&ReadQuery) -> Result<T, String>,
) -> Result<T, Response> {
    let query = ReadQuery::parse(query, own).map_err(bad_request)?;
    let checked = check(&query).map_err(bad_request)?;
    wait_min_seq(state, &query).await?;
    Ok(checked)
}

fn book_response(body: bytes::Bytes, seq: u64, applied: u64) -> Response {
    let mut response = Response::new(body.into());
    let headers = response.headers_mut();
    headers.insert(
        warp::http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(X_BOOK_SEQ, seq.into());
    with_applied_seq(response, applied)
}

/// The markets this side holds, the default first (see `ReadModel::held`).
fn held(state: &QueryState) -> impl Iterator<Item = &MarketSpec> {
    (state.markets.iter().zip(state.held.iter()))
        .filter(|(_, held)| **held)
        .map(|(m, _)| m)
}

/// 404 for a market this replica does not hold (`query-svc --markets`).
fn market_not_held(state: &QueryState, symbol: Symbol) -> Response {
    error(
        StatusCode::NOT_FOUND,
        format!(
            "market {symbol} is not held by this read side (it holds {}; see --markets)",
            symbols(held(state))
        ),
    )
}

/// The market a route names: `None` (an unprefixed route) is the default market.
/// Its index in the state's markets and its symbol, or the 404 answer (a market not
/// traded here, or not held by this read side).
fn resolve_market(
    state: &QueryState,
    market: Option<&str>,
) -> Result<(usize, Symbol), Box<Response>> {
    let (at, symbol) = match market {
        None => (0, state.markets[0].symbol),
        Some(raw) => Symbol::parse(raw)
            .ok()
            .and_then(|symbol| Some((market_index(&state.markets, symbol)?.into(), symbol)))
            .ok_or_else(|| Box::new(error(StatusCode::NOT_FOUND, UnknownMarket::new(raw))))?,
    };
    if !state.held[at] {
        return Err(Box::new(market_not_held(state, symbol)));
    }
    Ok((at, symbol))
}

/// `GET /markets`: every market, the default first.
fn markets(state: &QueryState) -> Response {
    #[derive(Serialize)]
    struct Market {
        symbol: Symbol,
        base: Symbol,
        quote: Symbol,
        default: bool,
    }
    let markets: Vec<Market> = (state.markets.iter().enumerate())
        .map(|(i, m)| Market {
            symbol: m.symbol,
            base: m.base,
            quote: m.quote,
            default: i == 0,
        })
        .collect();
    json(StatusCode::OK, &serde_json::json!({ "markets": markets }))
}

async fn orderbook(
    state: Arc<QueryState>,
    market: Option<String>,
    query: String,
) -> Result<Response, Infallible> {
    Ok(orderbook_of(&state, market.as_deref(), &query).await)
}

/// `GET [/markets/{market}]/orderbook?{query}`.
async fn orderbook_of(state: &Arc<QueryState>, market: Option<&str>, query: &str) -> Response {
    let (market, _) = match resolve_market(state, market) {
        Ok(m) => m,
        Err(response) => return *response,
    };
    let prepared = prepare(state, query, &["at", "depth"], |query| {
        let at = query.get("at", None, |raw| parse_seq("at", raw).map(Some))?;
        let depth = query.get("depth", None, |raw| {
            parse_limit(raw, DEPTH_MAX)
                .map(Some)
                .map_err(|_| format!("depth must be an integer 1..={DEPTH_MAX}, got {raw:?}"))
        })?;
        Ok((at, depth))
    });
    let (at, depth) = match prepared.await {
        Ok(p) => p,
        Err(response) => return response,
    };
    let snap = state.view();
    let book = match at {
        None => snap.clone(),
        Some(at) if at > snap.seq => {
            return with_applied_seq(
                bad_request(format!(
                    "at={at} is beyond the applied head (seq {})",
                    snap.seq
                )),
                snap.seq,
            );
        }
        Some(at) => match time_travel(state, at).await {
            Ok(book) => book,
            Err(e) => {
                return with_applied_seq(error(StatusCode::INTERNAL_SERVER_ERROR, e), snap.seq);
            }
        },
    };
    let body = match depth {
        Some(n) => book.depth_json(market, n),
        None => book.json(market),
    };
    book_response(body, book.seq, snap.seq)
}

/// The book right after event `at`, from the cache or rebuilt off the request path.
async fn time_travel(state: &Arc<QueryState>, at: u64) -> Result<Arc<BookView>, String> {
    let cached = |state: &QueryState| {
        let cache = state.time_travel_cache.lock().expect("cache lock");
        cache.iter().find(|book| book.seq == at).cloned()
    };
    if let Some(book) = cached(state) {
        return Ok(book);
    }
    let _slot = state
        .time_travel
        .acquire()
        .await
        .map_err(|e| e.to_string())?;
    if let Some(book) = cached(state) {
        return Ok(book);
    }
    let worker = state.clone();
    let book = tokio::task::spawn_blocking(move || crate::history::book_at(&worker.archive, at))
        .await
        .map_err(|e| e.to_string())??;
    let book = Arc::new(book);
    let mut cache = state.time_travel_cache.lock().expect("cache lock");
    cache.push_front(book.clone());
    cache.truncate(crate::TIME_TRAVEL_CACHED);
    Ok(book)
}

async fn order(state: Arc<QueryState>, id: String, query: String) -> Result<Response, Infallible> {
    let prepared = prepare(&state, &query, &[], |_| {
        domain::parse_order_id(&id).map_err(|e| e.to_string())
    });
    let id = match prepared.await {
        Ok(id) => id,
        Err(response) => return Ok(response),
    };
    let seq = state.applied_seq();
    let found = state.orders.get(id, &state.markets);
    let response = match found {
        Some(view) => json(StatusCode::OK, &view),
        None => error(
            StatusCode::NOT_FOUND,
            format!(
                "order {id} does not exist, or finished too long ago to be kept (as of seq {seq}; the last {} finished orders are kept)",
                state.finished_kept()
            ),
        ),
    };
    Ok(with_applied_seq(response, seq))
}

async fn user_orders(
    state: Arc<QueryState>,
    user: String,
    query: String,
) -> Result<Response, Infallible> {
    let prepared = prepare(&state, &query, &["limit"], |query| {
        let user = domain::parse_user(&user).map_err(|e| e.to_string())?;
        let limit = query.get("limit", USER_ORDERS_LIMIT_DEFAULT, |raw| {
            parse_limit(raw, USER_ORDERS_LIMIT_MAX)
        })?;
        Ok((user, limit))
    });
    let (user, limit) = match prepared.await {
        Ok(p) => p,
        Err(response) => return Ok(response),
    };
    let seq = state.applied_seq();
    let ids: Vec<u64> = state
        .user_orders
        .get(user.as_str())
        .map(|ids| ids.iter().rev().take(limit).copied().collect())
        .unwrap_or_default();
    let orders: Vec<OrderView> = (ids.iter())
        .filter_map(|&id| state.orders.get(id, &state.markets))
        .collect();
    #[derive(Serialize)]
    struct UserOrders<'a> {
        seq: u64,
        user: &'a str,
        orders: Vec<OrderView>,
    }
    let body = UserOrders {
        seq,
        user: &user,
        orders,
    };
    Ok(with_applied_seq(json(StatusCode::OK, &body), seq))
}

async fn trades(
    state: Arc<QueryState>,
    market: Option<String>,
    query: String,
) -> Result<Response, Infallible> {
    let (_, market) = match resolve_market(&state, market.as_deref()) {
        Ok(m) => m,
        Err(response) => return Ok(*response),
    };
    let prepared = prepare(&state, &query, &["limit"], |query| {
        query.get("limit", TRADES_LIMIT_DEFAULT, |raw| {
            parse_limit(raw, TRADES_KEPT)
        })
    });
    let limit = match prepared.await {
        Ok(limit) => limit,
        Err(response) => return Ok(response),
    };
    let snap = state.view();
    // Trades recorded past the published snapshot are not shown yet: one consistent seq.
    let trades: Vec<TradeView> = {
        let kept = state.trades.read().expect("trades lock");
        kept.iter()
            .rev()
            .filter(|t| t.seq <= snap.seq && t.market == market)
            .take(limit)
            .cloned()
            .collect()
    };
    #[derive(Serialize)]
    struct Trades {
        seq: u64,
        market: Symbol,
        trades: Vec<TradeView>,
    }
    let body = Trades {
        seq: snap.seq,
        market,
        trades,
    };
    Ok(with_applied_seq(json(StatusCode::OK, &body), snap.seq))
}

/// Why this read side has no balances (a 404), if it has none.
fn no_accounts(state: &QueryState, view: &BookView) -> Option<Response> {
    if view.accounts.is_some() {
        return None;
    }
    let message = if state.archive.genesis.accounts.is_none() {
        "this deployment has no accounts (init.txt has no \"accounts\" section)".to_owned()
    } else {
        format!(
            "balances are kept by read sides holding every market; this one holds {} (see --markets)",
            symbols(held(state))
        )
    };
    Some(error(StatusCode::NOT_FOUND, message))
}

/// `GET /users/{user}/balances`: the user's balance of each asset they hold
/// (none: no account yet), at the applied seq or at `?at=N`. With `--auth-reads`,
/// a trader's token reads only its own user's; an operator's reads all.
async fn balances(
    state: Arc<QueryState>,
    auth: Option<Arc<AuthTable>>,
    user: String,
    query: String,
    headers: HeaderMap,
) -> Result<Response, Infallible> {
    let prepared = prepare(&state, &query, &["at"], |query| {
        let user = domain::parse_user(&user).map_err(|e| e.to_string())?;
        let at = query.get("at", None, |raw| parse_seq("at", raw).map(Some))?;
        Ok((user, at))
    });
    let (user, at) = match prepared.await {
        Ok(p) => p,
        Err(response) => return Ok(response),
    };
    if let Some(table) = &auth {
        match table.check(headers.get("authorization").map(|v| v.as_bytes())) {
            Access::Operator(_) => {}
            Access::User(own) if own == user => {}
            // The guard in front of the read routes answered 401 already.
            _ => {
                return Ok(error(
                    StatusCode::FORBIDDEN,
                    format!("this token may not read the balances of {user:?}"),
                ));
            }
        }
    }
    let view = match at_view(&state, at).await {
        Ok(view) => view,
        Err(response) => return Ok(response),
    };
    if let Some(response) = no_accounts(&state, &view) {
        return Ok(response);
    }
    let accounts = view.accounts.as_ref().expect("checked above");
    let mut balances = serde_json::Map::new();
    for (asset, b) in accounts.of(&user).map_or(&[][..], |f| &f[..]) {
        balances.insert(
            asset.to_string(),
            serde_json::json!({"available": b.available, "held": b.held}),
        );
    }
    let body = serde_json::json!({"seq": view.seq, "user": user, "balances": balances});
    Ok(with_applied_seq(
        json(StatusCode::OK, &body),
        state.applied_seq(),
    ))
}

/// `GET /assets`: each asset's totals: deposited and withdrawn since genesis,
/// available and held over all users.
async fn assets(state: Arc<QueryState>, query: String) -> Result<Response, Infallible> {
    if let Err(response) = prepare(&state, &query, &[], |_| Ok(())).await {
        return Ok(response);
    }
    let view = state.view();
    if let Some(response) = no_accounts(&state, &view) {
        return Ok(response);
    }
    let accounts = view.accounts.as_ref().expect("checked above");
    let assets: serde_json::Map<String, serde_json::Value> = (accounts.totals())
        .map(|(asset, t)| {
            (
                asset.to_string(),
                serde_json::to_value(t).expect("plain data"),
            )
        })
        .collect();
    let body = serde_json::json!({"seq": view.seq, "users": accounts.users(), "assets": assets});
    Ok(with_applied_seq(json(StatusCode::OK, &body), view.seq))
}

/// The view at the applied seq, or right after event `at` (time travel); 400 for
/// an `at` beyond the applied head.
async fn at_view(state: &Arc<QueryState>, at: Option<u64>) -> Result<Arc<BookView>, Response> {
    let snap = state.view();
    match at {
        None => Ok(snap),
        Some(at) if at > snap.seq => Err(with_applied_seq(
            bad_request(format!(
                "at={at} is beyond the applied head (seq {})",
                snap.seq
            )),
            snap.seq,
        )),
        Some(at) => time_travel(state, at)
            .await
            .map_err(|e| with_applied_seq(error(StatusCode::INTERNAL_SERVER_ERROR, e), snap.seq)),
    }
}

async fn events(
    state: Arc<QueryState>,
    query: String,
    headers: HeaderMap,
) -> Result<Response, Infallible> {
    let prepared = prepare(&state, &query, &["from", "market"], |query| {
        let resume = headers.get("last-event-id").map(|v| {
            v.to_str()
                .map_err(|_| "Last-Event-ID must be a seq".to_owned())
                .and_then(|raw| parse_seq("Last-Event-ID", raw.trim()))
                // Saturating: u64::MAX is a valid seq to resume after, and no later one exists.
                .map(|last| last.saturating_add(1))
        });
        let resume = resume.transpose()?;
        let from = query.get("from", None, |raw| parse_seq("from", raw).map(Some))?;
        let market = query.get("market", None, |raw| Ok(Some(raw.to_owned())))?;
        // A reconnecting client's Last-Event-ID wins over the URL it first used.
        Ok((resume.or(from), market))
    });
    let (from, market) = match prepared.await {
        Ok(p) => p,
        Err(response) => return Ok(response),
    };
    let market = match market {
        None => None,
        Some(raw) => match resolve_market(&state, Some(&raw)) {
            Ok((_, symbol)) => Some(symbol),
            Err(response) => return Ok(*response),
        },
    };
    let seq = state.applied_seq();
    let from = from.unwrap_or(seq + 1);
    let Ok(permit) = state.subscribers.clone().try_acquire_owned() else {
        let mut response = error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "too many event streams (at most {}); retry later",
                crate::SSE_SUBSCRIBERS_MAX
            ),
        );
        response.headers_mut().insert("retry-after", 5.into());
        return Ok(response);
    };
    let rx = crate::events::open(state, from, market, permit);
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
    let reply = warp::sse::reply(
        warp::sse::keep_alive()
            .interval(crate::events::KEEP_ALIVE)
            .stream(stream),
    );
    Ok(with_applied_seq(reply.into_response(), seq))
}

/// The read side's health fields.
pub fn health_fields(state: &QueryState) -> serde_json::Map<String, serde_json::Value> {
    let mut map = serde_json::Map::new();
    map.insert("durable_seq".into(), state.durable_seq().into());
    let snapshot = state.view();
    map.insert("applied_seq".into(), snapshot.seq.into());
    map.insert(
        "read_digest".into(),
        domain::digest_hex(snapshot.digest()).into(),
    );
    let per_market: serde_json::Map<String, serde_json::Value> = (snapshot.market_digests())
        .map(|(m, d)| (m.to_string(), domain::digest_hex(d).into()))
        .collect();
    map.insert("read_digests".into(), per_market.into());
    if let Some(accounts) = &snapshot.accounts {
        map.insert(
            "read_accounts_digest".into(),
            domain::digest_hex(accounts.digest()).into(),
        );
    }
    let held: Vec<serde_json::Value> = held(state).map(|m| m.symbol.as_str().into()).collect();
    map.insert("markets".into(), held.into());
    map.insert(
        "default_market".into(),
        state.markets[0].symbol.as_str().into(),
    );
    let behind = state.durable_seq().saturating_sub(snapshot.seq);
    map.insert("behind".into(), behind.into());
    map.insert(
        "last_lag_ms".into(),
        (state.last_lag_us() as f64 / 1000.0).into(),
    );
    map.insert("uptime_s".into(), state.uptime_s().into());
    if let Some(e) = state.error() {
        map.insert("read_error".into(), e.into());
    }
    map
}

/// With `--auth-reads`: a guard that answers 401 unless the request carries a known
/// bearer token (of any user), and otherwise lets the routes behind it answer.
fn read_guard(table: Arc<AuthTable>) -> BoxedFilter<(Response,)> {
    const READ_ROUTES: &[&str] = &[
        "orderbook",
        "orders",
        "users",
        "trades",
        "events",
        "markets",
        "assets",
    ];
    warp::path::full()
        .and(warp::header::headers_cloned())
        .and_then(move |path: warp::path::FullPath, headers: HeaderMap| {
            let table = table.clone();
            async move {
                let first = path
                    .as_str()
                    .trim_start_matches('/')
                    .split('/')
                    .next()
                    .unwrap_or("");
                if !READ_ROUTES.contains(&first) {
                    // Not a read route (health, metrics, writes): not ours to guard.
                    return Err(warp::reject::not_found());
                }
                let message = match table.check(headers.get("authorization").map(|v| v.as_bytes()))
                {
                    Access::User(_) | Access::Operator(_) => return Err(warp::reject::not_found()),
                    Access::Missing => "reads require `Authorization: Bearer <token>` here",
                    Access::Unknown => "unknown or malformed bearer token",
                };
                let mut response = error(StatusCode::UNAUTHORIZED, message);
                response.headers_mut().insert(
                    "www-authenticate",
                    warp::http::HeaderValue::from_static("Bearer"),
                );
                Ok(response)
            }
        })
        .boxed()
}

/// The hot read route, answered ahead of warp's filters (see
/// `plumbing::serve::HotRoutes`): `GET /orderbook` and
/// `GET /markets/{symbol}/orderbook`, by the same handler as [`api`]'s route. None
/// with `--auth-reads` (the guard in front of the read routes decides first), and
/// paths of another shape (a trailing slash, say) are left to warp.
pub fn hot(state: Arc<QueryState>, read_auth: bool) -> Option<HotRoutes> {
    if read_auth {
        return None;
    }
    Some(Arc::new(move |head: &Head<'_>| {
        if *head.method != warp::http::Method::GET {
            return None;
        }
        let mut segments = [""; 3];
        let market = match (head.segments(&mut segments)?, segments) {
            (1, ["orderbook", ..]) => None,
            (3, ["markets", symbol, "orderbook"]) => Some(symbol),
            _ => return None,
        };
        // Without `min_seq` or `at` (which may wait, the latter for a rebuild off
        // this thread) the answer is ready at once: polled here, on the stack, it
        // needs no allocation. Should one be pending after all (a parameter name
        // spelled in percent-escapes), it is dropped and made again to be awaited.
        let may_wait = head.query.contains("min_seq") || head.query.contains("at=");
        if !may_wait {
            let mut now = std::pin::pin!(orderbook_of(&state, market, head.query));
            let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
            if let std::task::Poll::Ready(response) = now.as_mut().poll(&mut cx) {
                return Some(Answer::Now(response));
            }
        }
        let state = state.clone();
        let (market, query) = (market.map(str::to_owned), head.query.to_owned());
        Some(Answer::Later(Box::pin(async move {
            orderbook_of(&state, market.as_deref(), &query).await
        })))
    }))
}

/// The read routes (without `/health`). With `read_auth`, each needs a known token.
pub fn api(state: Arc<QueryState>, read_auth: Option<Arc<AuthTable>>) -> BoxedFilter<(Response,)> {
    let routes = read_api(state, read_auth.clone());
    match read_auth {
        Some(table) => read_guard(table).or(routes).unify().boxed(),
        None => routes,
    }
}

fn read_api(state: Arc<QueryState>, auth: Option<Arc<AuthTable>>) -> BoxedFilter<(Response,)> {
    let with_state = warp::any().map(move || state.clone());
    let balances = warp::path!("users" / String / "balances")
        .and(warp::get())
        .and(with_state.clone())
        .and(warp::any().map(move || auth.clone()))
        .and(raw_query())
        .and(warp::header::headers_cloned())
        .and_then(|user, s, auth, q, headers| balances(s, auth, user, q, headers));
    let assets = warp::path("assets")
        .and(warp::path::end())
        .and(warp::get())
        .and(with_state.clone())
        .and(raw_query())
        .and_then(assets);
    // `/markets/{symbol}/NAME`, or `/NAME` for the default market.
    let in_market = |name: &'static str| {
        let prefixed = warp::path("markets")
            .and(warp::path::param::<String>())
            .and(warp::path(name))
            .map(Some);
        prefixed
            .or(warp::path(name).map(|| None))
            .unify()
            .and(warp::path::end())
            .and(warp::get())
    };
    let market_list = warp::path("markets")
        .and(warp::path::end())
        .and(warp::get())
        .and(with_state.clone())
        .and(raw_query())
        .map(
            |state: Arc<QueryState>, query: String| match domain::parse_query(&query, &[]) {
                Ok(_) => markets(&state),
                Err(e) => bad_request(e),
            },
        );
    let orderbook = in_market("orderbook")
        .and(with_state.clone())
        .and(raw_query())
        .and_then(|market, s, q| orderbook(s, market, q));
    let order = warp::path!("orders" / String)
        .and(warp::get())
        .and(with_state.clone())
        .and(raw_query())
        .and_then(|id, s, q| order(s, id, q));
    let user_orders = warp::path!("users" / String / "orders")
        .and(warp::get())
        .and(with_state.clone())
        .and(raw_query())
        .and_then(|user, s, q| user_orders(s, user, q));
    let trades = in_market("trades")
        .and(with_state.clone())
        .and(raw_query())
        .and_then(|market, s, q| trades(s, market, q));
    let events = warp::path("events")
        .and(warp::path::end())
        .and(warp::get())
        .and(with_state)
        .and(raw_query())
        .and(warp::header::headers_cloned())
        .and_then(events);
    market_list
        .or(orderbook)
        .unify()
        .or(order)
        .unify()
        .or(user_orders)
        .unify()
        .or(balances)
        .unify()
        .or(assets)
        .unify()
        .or(trades)
        .unify()
        .or(events)
        .unify()
        .boxed()
}

/// `GET /openapi.json`: the read side's part of the OpenAPI document (see
/// `shared_events::openapi`), serialized once.
fn openapi() -> BoxedFilter<(Response,)> {
    use shared_events::openapi::{TAG_OPERATIONS, TAG_READS, for_tags};
    let document: bytes::Bytes = serde_json::to_vec(&for_tags(&[TAG_READS, TAG_OPERATIONS]))
        .expect("serializing to memory cannot fail")
        .into();
    warp::path("openapi.json")
        .and(warp::path::end())
        .and(warp::get())
        .map(move || {
            warp::http::Response::builder()
                .header("content-type", "application/json")
                .body(document.clone().into())
                .expect("valid response")
        })
        .boxed()
}

/// All routes of a stand-alone query-svc: the API plus `/health` and
/// `/openapi.json`, errors as JSON.
pub fn routes(
    state: Arc<QueryState>,
    read_auth: Option<Arc<AuthTable>>,
) -> BoxedFilter<(Response,)> {
    let health_state = state.clone();
    let health = warp::path("health")
        .and(warp::path::end())
        .and(warp::get())
        .map(move || {
            let mut fields = health_fields(&health_state);
            let ok = !fields.contains_key("read_error");
            fields.insert("status".into(), if ok { "ok" } else { "error" }.into());
            fields.insert("seq".into(), fields["applied_seq"].clone());
            let seq = health_state.applied_seq();
            let status = if ok {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            with_applied_seq(json(status, &fields), seq)
        });
    api(state, read_auth)
        .or(health)
        .unify()
        .or(openapi())
        .unify()
        .recover(recover)
        .unify()
        .boxed()
}
