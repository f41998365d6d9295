//! HTTP routes of the write side: `/buy`, `/sell`, `/cancel`, `/health`, `/openapi.json`. Handlers
//! validate everything before the writer sees it, and answer every failure with a
//! JSON `{"error": ...}` body; [`recover`] does the same for warp's own rejections.

use crate::command::{Command, OrderOptions};
use crate::writer::{CommandHandle, DispatchError, WriterStats};
use plumbing::serve::{Answer, Head, HotRoutes};
use serde::Serialize;
use shared_events::auth::{Access, AuthTable};
use shared_events::{Side, Stp, Symbol, TimeInForce, domain};
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::{HeaderMap, Method, StatusCode};
use warp::reply::Response;

/// A JSON answer with a status.
pub fn json<T: Serialize>(status: StatusCode, body: &T) -> Response {
    warp::reply::with_status(warp::reply::json(body), status).into_response()
}

/// A JSON error answer: `{"error": message}`.
pub fn error(status: StatusCode, message: impl std::fmt::Display) -> Response {
    json(status, &serde_json::json!({ "error": message.to_string() }))
}

use warp::Reply as _;

/// Turns warp's rejections (no route, wrong method, ...) into JSON errors.
pub async fn recover(rejection: warp::Rejection) -> Result<Response, Infallible> {
    let (status, message) = if rejection.is_not_found() {
        (StatusCode::NOT_FOUND, "no such route".to_owned())
    } else if rejection.find::<warp::reject::MethodNotAllowed>().is_some() {
        (
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed for this route".to_owned(),
        )
    } else if rejection.find::<warp::reject::PayloadTooLarge>().is_some() {
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            "request body too large".to_owned(),
        )
    } else {
        (
            StatusCode::BAD_REQUEST,
            format!("bad request: {rejection:?}"),
        )
    };
    Ok(error(status, message))
}

/// The raw query string, empty when there is none.
pub fn raw_query() -> impl Filter<Extract = (String,), Error = Infallible> + Clone {
    warp::query::raw().or(warp::any().map(String::new)).unify()
}

fn bad_request(e: impl std::fmt::Display) -> Response {
    error(StatusCode::BAD_REQUEST, e)
}

/// The `Idempotency-Key` header, checked, if there is one.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, String> {
    headers
        .get("idempotency-key")
        .map(|v| crate::idempotency::parse_key(v.as_bytes()))
        .transpose()
}

/// Validates a place request: `[/markets/{market}]/{side}/{user}/{price}?qty=N`
/// with `tif`, `post_only`, `stp`; `{price}` = `market` is a market order (with
/// `max_cost` for a buy). `market` is already resolved.
pub fn parse_place(
    market: Symbol,
    side: Side,
    user: &str,
    price: &str,
    query: &str,
    headers: &HeaderMap,
) -> Result<Command, String> {
    let is_market = price == "market";
    const NAMES: [&str; 5] = ["qty", "tif", "post_only", "stp", "max_cost"];
    let allowed = if is_market { &NAMES[..] } else { &NAMES[..4] };
    let params = domain::parse_query(query, allowed).map_err(|e| {
        if !is_market && query.contains("max_cost") {
            format!("{e}; max_cost is for market orders: /{side}/{{user}}/market?qty=N&max_cost=M")
        } else {
            e
        }
    })?;
    let user = domain::parse_user(user).map_err(|e| e.to_string())?;
    let price = if is_market {
        match side {
            Side::Buy => domain::PRICE_MAX,
            Side::Sell => domain::PRICE_MIN,
        }
    } else {
        domain::parse_price(price).map_err(|e| e.to_string())?
    };
    let qty = domain::query_value(&params, "qty", 1, |raw| {
        domain::parse_qty(raw).map_err(|e| e.to_string())
    })?;
    let tif = domain::query_value(&params, "tif", TimeInForce::Gtc, TimeInForce::parse)?;
    let post_only = domain::query_value(&params, "post_only", false, |raw| match raw {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(format!("post_only must be true or false, got {raw:?}")),
    })?;
    let stp = domain::query_value(&params, "stp", Stp::None, Stp::parse)?;
    let max_cost = domain::query_value(&params, "max_cost", None, |raw| {
        shared_events::accounts::parse_amount(raw)
            .map(Some)
            .map_err(|e| format!("max_cost: {e}"))
    })?;
    // Combinations that cannot do anything (a post-only IOC, say) are not refused
    // here: the writer answers them 409 with why, as any order that changes nothing.
    if max_cost.is_some() && side == Side::Sell {
        return Err("max_cost bounds what a market buy spends; a sell has its qty".into());
    }
    Ok(Command::Place {
        market,
        user,
        side,
        price,
        qty,
        options: OrderOptions {
            tif,
            post_only,
            stp,
            market: is_market,
            max_cost,
        },
        idempotency_key: idempotency_key(headers)?,
    })
}

/// Validates an amend: `/amend/{user}/{order_id}?qty=N[&price=P]`.
pub fn parse_amend(
    user: &str,
    order_id: &str,
    query: &str,
    headers: &HeaderMap,
) -> Result<Command, String> {
    let params = domain::parse_query(query, &["qty", "price"])?;
    let user = domain::parse_user(user).map_err(|e| e.to_string())?;
    let order_id = domain::parse_order_id(order_id).map_err(|e| e.to_string())?;
    let qty = domain::query_value(&params, "qty", None, |raw| {
        domain::parse_qty(raw).map(Some).map_err(|e| e.to_string())
    })?
    .ok_or("an amend needs qty: the quantity left to fill (and maybe price)")?;
    let price = domain::query_value(&params, "price", None, |raw| {
        domain::parse_price(raw)
            .map(Some)
            .map_err(|e| e.to_string())
    })?;
    Ok(Command::Amend {
        user,
        order_id,
        qty,
        price,
        idempotency_key: idempotency_key(headers)?,
    })
}

/// Validates a cancel request: `/cancel/{user}/{order_id}`.
pub fn parse_cancel(
    user: &str,
    order_id: &str,
    query: &str,
    headers: &HeaderMap,
) -> Result<Command, String> {
    domain::parse_query(query, &[])?;
    let user = domain::parse_user(user).map_err(|e| e.to_string())?;
    let order_id = domain::parse_order_id(order_id).map_err(|e| e.to_string())?;
    Ok(Command::Cancel {
        user,
        order_id,
        idempotency_key: idempotency_key(headers)?,
    })
}

/// Validates a transfer: `/deposit|withdraw/{user}/{asset}/{amount}`.
pub fn parse_transfer(
    deposit: bool,
    user: &str,
    asset: &str,
    amount: &str,
    query: &str,
    headers: &HeaderMap,
) -> Result<Command, String> {
    domain::parse_query(query, &[])?;
    let user = domain::parse_user(user).map_err(|e| e.to_string())?;
    let asset = Symbol::parse(asset).map_err(|e| format!("asset: {e}"))?;
    let amount = shared_events::accounts::parse_amount(amount).map_err(|e| e.to_string())?;
    let idempotency_key = idempotency_key(headers)?;
    Ok(if deposit {
        Command::Deposit {
            user,
            asset,
            amount,
            idempotency_key,
        }
    } else {
        Command::Withdraw {
            user,
            asset,
            amount,
            idempotency_key,
        }
    })
}

/// 401 with the challenge header.
fn unauthorized(message: &str) -> Response {
    let mut response = error(StatusCode::UNAUTHORIZED, message);
    response.headers_mut().insert(
        "www-authenticate",
        warp::http::HeaderValue::from_static("Bearer"),
    );
    response
}

/// With `--auth-file`: what the request's bearer token may do (`None`: no auth
/// table, anyone may act as anyone). `Err` is why it is 401 (missing or unknown
/// token).
fn authenticate<'a>(
    auth: Option<&'a AuthTable>,
    headers: &HeaderMap,
) -> Result<Option<Access<'a>>, &'static str> {
    let Some(table) = auth else { return Ok(None) };
    match table.check(headers.get("authorization").map(|v| v.as_bytes())) {
        access @ (Access::User(_) | Access::Operator(_)) => Ok(Some(access)),
        Access::Missing => Err("this server requires `Authorization: Bearer <token>`"),
        Access::Unknown => Err("unknown or malformed bearer token"),
    }
}

/// Why a write request is not dispatched: bad input (400) or an unknown market (404).
pub enum Invalid {
    Request(String),
    Market(String),
}

impl From<String> for Invalid {
    fn from(message: String) -> Invalid {
        Invalid::Request(message)
    }
}

/// What every write does before the writer sees it: the bearer token (401), the
/// command's own validity (400, or 404 for an unknown market), and whether the
/// token may act for the command's user (403). The command, or the answer.
fn admit(
    auth: Option<&AuthTable>,
    cmd: Result<Command, Invalid>,
    headers: &HeaderMap,
) -> Result<Command, Box<Response>> {
    let acting = authenticate(auth, headers).map_err(|why| Box::new(unauthorized(why)))?;
    let cmd = match cmd {
        Ok(cmd) => cmd,
        Err(Invalid::Request(message)) => return Err(Box::new(bad_request(message))),
        Err(Invalid::Market(named)) => {
            return Err(Box::new(error(
                StatusCode::NOT_FOUND,
                shared_events::market::UnknownMarket::new(&named),
            )));
        }
    };
    if let Some(access) = acting {
        let user = cmd.user();
        if cmd.is_transfer() {
            // Money moves only on an operator's word, never on the trader's own.
            if !matches!(access, Access::Operator(_)) {
                return Err(Box::new(error(
                    StatusCode::FORBIDDEN,
                    "deposits and withdrawals need an operator token (see --auth-file)",
                )));
            }
        } else if access.user() != Some(user) {
            return Err(Box::new(error(
                StatusCode::FORBIDDEN,
                format!("this token may not act as {user:?}"),
            )));
        }
    }
    Ok(cmd)
}

/// Sends an admitted command to the writer and turns its outcome into the answer.
async fn answer(handle: CommandHandle, cmd: Command) -> Response {
    let created = matches!(cmd, Command::Place { .. });
    match handle.dispatch(cmd).await {
        Ok(outcome) => {
            let status = if created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            let mut response = json(status, &outcome);
            const X_EVENT_SEQ: warp::http::HeaderName =
                warp::http::HeaderName::from_static("x-event-seq");
            response
                .headers_mut()
                .insert(X_EVENT_SEQ, outcome.seq().into());
            response
        }
        Err(DispatchError::Rejected(rejection)) => {
            let status = StatusCode::from_u16(rejection.status()).expect("valid status");
            match &rejection {
                // The amounts, for a client to act on without parsing the message.
                crate::command::Rejection::InsufficientFunds {
                    asset,
                    needed,
                    available,
                } => json(
                    status,
                    &serde_json::json!({
                        "error": rejection.to_string(),
                        "asset": asset,
                        "needed": needed,
                        "available": available,
                    }),
                ),
                _ => error(status, rejection),
            }
        }
        Err(e @ DispatchError::Unavailable(_)) => error(StatusCode::SERVICE_UNAVAILABLE, e),
        Err(e @ DispatchError::Busy) => {
            let mut response = error(StatusCode::SERVICE_UNAVAILABLE, e);
            response.headers_mut().insert("retry-after", 1.into());
            response
        }
    }
}

async fn dispatch(
    handle: CommandHandle,
    auth: Option<Arc<AuthTable>>,
    cmd: Result<Command, Invalid>,
    headers: HeaderMap,
) -> Result<Response, Infallible> {
    Ok(match admit(auth.as_deref(), cmd, &headers) {
        Ok(cmd) => answer(handle, cmd).await,
        Err(response) => *response,
    })
}

/// A place request's command: `market` is the `{symbol}` of `/markets/{symbol}/...`
/// (`None`: the default market).
fn place_command(
    stats: &WriterStats,
    market: Option<&str>,
    side: Side,
    user: &str,
    price: &str,
    query: &str,
    headers: &HeaderMap,
) -> Result<Command, Invalid> {
    let market = match market {
        None => stats.default_market(),
        Some(raw) => stats
            .market(raw)
            .ok_or_else(|| Invalid::Market(raw.to_owned()))?,
    };
    Ok(parse_place(market, side, user, price, query, headers)?)
}

/// The hot write routes, answered ahead of warp's filters (see
/// `plumbing::serve::HotRoutes`): placing an order (`GET` or `POST`
/// `[/markets/{symbol}]/{buy|sell}/{user}/{price}`) and `POST /cancel/{user}/{id}`,
/// with the same validation, authentication and answers as [`api`]'s routes.
/// Paths of another shape (a trailing slash, say) are left to those.
pub fn hot(handle: CommandHandle, auth: Option<Arc<AuthTable>>) -> HotRoutes {
    Arc::new(move |head: &Head<'_>| {
        let get_or_post = *head.method == Method::POST || *head.method == Method::GET;
        let mut segments = [""; 6];
        let n = head.segments(&mut segments)?;
        let place = |market, side: &str, user, price| {
            let side = if side == "buy" { Side::Buy } else { Side::Sell };
            let (query, headers) = (head.query, head.headers);
            place_command(&handle.stats, market, side, user, price, query, headers)
        };
        let cmd = match (n, segments) {
            (3, [side @ ("buy" | "sell"), user, price, ..]) if get_or_post => {
                place(None, side, user, price)
            }
            (5, ["markets", market, side @ ("buy" | "sell"), user, price, ..]) if get_or_post => {
                place(Some(market), side, user, price)
            }
            (3, ["cancel", user, id, ..]) if *head.method == Method::POST => {
                parse_cancel(user, id, head.query, head.headers).map_err(Invalid::Request)
            }
            _ => return None,
        };
        Some(match admit(auth.as_deref(), cmd, head.headers) {
            Ok(cmd) => Answer::Later(Box::pin(answer(handle.clone(), cmd))),
            Err(response) => Answer::Now(*response),
        })
    })
}

/// The write routes: place (in the default market, or in
/// `/markets/{symbol}/...`) and cancel. With an auth table, every write needs the
/// bearer token of the user in its path.
pub fn api(handle: CommandHandle, auth: Option<Arc<AuthTable>>) -> BoxedFilter<(Response,)> {
    let stats = handle.stats.clone();
    let cancel_stats = handle.stats.clone();
    let with_handle = warp::any().map(move || (handle.clone(), auth.clone()));
    let place = move |side: Side| {
        let stats = stats.clone();
        let in_market = warp::path("markets")
            .and(warp::path::param::<String>())
            .and(warp::path(side.as_str()))
            .map(Some);
        let default = warp::path(side.as_str()).map(|| None);
        in_market
            .or(default)
            .unify()
            .and(warp::path::param::<String>())
            .and(warp::path::param::<String>())
            .and(warp::path::end())
            .and(warp::post().or(warp::get()).unify())
            .and(raw_query())
            .and(warp::header::headers_cloned())
            .map(
                move |market: Option<String>,
                      user: String,
                      price: String,
                      query: String,
                      headers: HeaderMap| {
                    place_command(
                        &stats,
                        market.as_deref(),
                        side,
                        &user,
                        &price,
                        &query,
                        &headers,
                    )
                },
            )
    };
    let cancel = warp::path("cancel")
        .and(warp::path::param::<String>())
        .and(warp::path::param::<String>())
        .and(warp::path::end())
        .and(warp::post())
        .and(raw_query())
        .and(warp::header::headers_cloned())
        .map(
            |user: String, id: String, query: String, headers: HeaderMap| {
                parse_cancel(&user, &id, &query, &headers).map_err(Invalid::Request)
            },
        );
    let amend = warp::path("amend")
        .and(warp::path::param::<String>())
        .and(warp::path::param::<String>())
        .and(warp::path::end())
        .and(warp::post())
        .and(raw_query())
        .and(warp::header::headers_cloned())
        .map(
            |user: String, id: String, query: String, headers: HeaderMap| {
                parse_amend(&user, &id, &query, &headers).map_err(Invalid::Request)
            },
        );
    let cancel_all = warp::path("cancel-all")
        .and(warp::path::param::<String>())
        .and(warp::path::end())
        .and(warp::post())
        .and(raw_query())
        .and(warp::header::headers_cloned())
        .map(move |user: String, query: String, headers: HeaderMap| {
            let params = domain::parse_query(&query, &["market"])?;
            let user = domain::parse_user(&user).map_err(|e| e.to_string())?;
            let market = match params.iter().find(|(k, _)| k == "market") {
                None => None,
                Some((_, raw)) => Some(
                    cancel_stats
                        .market(raw)
                        .ok_or_else(|| Invalid::Market(raw.clone()))?,
                ),
            };
            Ok(Command::CancelAll {
                user,
                market,
                idempotency_key: idempotency_key(&headers)?,
            })
        });
    let transfer = |deposit: bool| {
        warp::path(if deposit { "deposit" } else { "withdraw" })
            .and(warp::path::param::<String>())
            .and(warp::path::param::<String>())
            .and(warp::path::param::<String>())
            .and(warp::path::end())
            .and(warp::post())
            .and(raw_query())
            .and(warp::header::headers_cloned())
            .map(
                move |user: String,
                      asset: String,
                      amount: String,
                      query: String,
                      headers: HeaderMap| {
                    parse_transfer(deposit, &user, &asset, &amount, &query, &headers)
                        .map_err(Invalid::Request)
                },
            )
    };
    with_handle
        .and(
            place(Side::Buy)
                .or(place(Side::Sell))
                .unify()
                .or(cancel)
                .unify()
                .or(transfer(true))
                .unify()
                .or(transfer(false))
                .unify()
                .or(amend)
                .unify()
                .or(cancel_all)
                .unify(),
        )
        .and(warp::header::headers_cloned())
        .and_then(|(handle, auth), cmd, headers| dispatch(handle, auth, cmd, headers))
        .boxed()
}

/// The write side's health fields.
pub fn health_fields(handle: &CommandHandle) -> serde_json::Map<String, serde_json::Value> {
    let stats = &handle.stats;
    let mut map = serde_json::Map::new();
    map.insert(
        "head_seq".into(),
        stats.head_seq.load(Ordering::Acquire).into(),
    );
    map.insert(
        "durable_seq".into(),
        stats.durable_seq.load(Ordering::Acquire).into(),
    );
    map.insert(
        "events_appended".into(),
        stats.events_appended.load(Ordering::Relaxed).into(),
    );
    map.insert("uptime_s".into(), stats.started.elapsed().as_secs().into());
    let (digest_seq, digests) = stats.digests.lock().expect("digest lock").clone();
    let digest = digests.iter().fold(0u64, |sum, d| sum.wrapping_add(*d));
    map.insert("write_digest".into(), domain::digest_hex(digest).into());
    if stats.accounts {
        // The accounts' digest comes after the markets' (see WriterStats::digests).
        let accounts = digests.get(stats.markets.len()).copied().unwrap_or(0);
        map.insert(
            "write_accounts_digest".into(),
            domain::digest_hex(accounts).into(),
        );
    }
    map.insert("write_digest_seq".into(), digest_seq.into());
    let per_market: serde_json::Map<String, serde_json::Value> =
        (stats.markets.iter().zip(&digests))
            .map(|(m, &d)| (m.symbol.to_string(), domain::digest_hex(d).into()))
            .collect();
    map.insert("write_digests".into(), per_market.into());
    map.insert(
        "fsync_batches".into(),
        stats.batches.load(Ordering::Relaxed).into(),
    );
    map
}

/// `GET /openapi.json`: `document`, the OpenAPI description of the routes served here
/// (see `shared_events::openapi`).
pub fn openapi(document: bytes::Bytes) -> BoxedFilter<(Response,)> {
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

/// The write side's part of the OpenAPI document, serialized.
pub fn openapi_document() -> bytes::Bytes {
    use shared_events::openapi::{TAG_OPERATIONS, TAG_WRITES, for_tags};
    serde_json::to_vec(&for_tags(&[TAG_WRITES, TAG_OPERATIONS]))
        .expect("serializing to memory cannot fail")
        .into()
}

/// All routes of a stand-alone command-svc: the API plus `/health` and
/// `/openapi.json`, errors as JSON.
pub fn routes(handle: CommandHandle, auth: Option<Arc<AuthTable>>) -> BoxedFilter<(Response,)> {
    let health_handle = handle.clone();
    let health = warp::path("health")
        .and(warp::path::end())
        .and(warp::get())
        .map(move || {
            let mut fields = health_fields(&health_handle);
            fields.insert("status".into(), "ok".into());
            fields.insert("seq".into(), fields["durable_seq"].clone());
            json(StatusCode::OK, &fields)
        });
    api(handle, auth)
        .or(health)
        .unify()
        .or(openapi(openapi_document()))
        .unify()
        .recover(recover)
        .unify()
        .boxed()
}
