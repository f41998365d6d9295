//! HTTP routes of the read side. Every answer carries `X-Applied-Seq`, the seq of
//! the view it was read from. Errors are JSON `{"error": ...}`.
//!
//! The small warp helpers at the top (`json`, `error`, `recover`, `raw_query`) also
//! exist in command-svc: the two services must not depend on each other, and
//! shared-events carries no HTTP.

use crate::QueryState;
use crate::projection::{OrderView, TRADES_KEPT, TradeView};
use serde::Serialize;
use shared_events::domain;
use std::convert::Infallible;
use std::sync::Arc;
use warp::Filter;
use warp::Reply as _;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;

/// Default and largest `limit` for `/users/{user}/orders`.
pub const USER_ORDERS_LIMIT_DEFAULT: usize = 100;
pub const USER_ORDERS_LIMIT_MAX: usize = 1_000;
/// Default `limit` for `/trades` (the largest is [`TRADES_KEPT`]).
pub const TRADES_LIMIT_DEFAULT: usize = 100;

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
    response.headers_mut().insert("x-applied-seq", seq.into());
    response
}

fn parse_limit(raw: &str, max: usize) -> Result<usize, String> {
    raw.parse::<usize>()
        .ok()
        .filter(|n| (1..=max).contains(n))
        .ok_or_else(|| format!("limit must be an integer 1..={max}, got {raw:?}"))
}

fn orderbook(state: &QueryState, query: &str) -> Response {
    if let Err(e) = domain::parse_query(query, &[]) {
        return error(StatusCode::BAD_REQUEST, e);
    }
    let snap = state.snapshot();
    let response = warp::http::Response::builder()
        .header("content-type", "application/json")
        .body(snap.book_json.clone().into())
        .expect("valid response");
    with_applied_seq(response, snap.seq)
}

fn order(state: &QueryState, id: &str, query: &str) -> Response {
    let seq = state.applied_seq();
    let id = match domain::parse_query(query, &[])
        .and_then(|_| domain::parse_order_id(id).map_err(|e| e.to_string()))
    {
        Ok(id) => id,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let found = state.orders.get(&id).map(|o| o.clone());
    let response = match found {
        Some(view) => json(StatusCode::OK, &view),
        None => error(
            StatusCode::NOT_FOUND,
            format!("order {id} does not exist (as of seq {seq})"),
        ),
    };
    with_applied_seq(response, seq)
}

fn user_orders(state: &QueryState, user: &str, query: &str) -> Response {
    let seq = state.applied_seq();
    let parsed = domain::parse_query(query, &["limit"]).and_then(|params| {
        let user = domain::parse_user(user).map_err(|e| e.to_string())?;
        let limit = domain::query_value(&params, "limit", USER_ORDERS_LIMIT_DEFAULT, |raw| {
            parse_limit(raw, USER_ORDERS_LIMIT_MAX)
        })?;
        Ok((user, limit))
    });
    let (user, limit) = match parsed {
        Ok(p) => p,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let ids: Vec<u64> = state
        .user_orders
        .get(&user)
        .map(|ids| ids.iter().rev().take(limit).copied().collect())
        .unwrap_or_default();
    let orders: Vec<OrderView> = ids
        .iter()
        .filter_map(|id| state.orders.get(id).map(|o| o.clone()))
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
    with_applied_seq(json(StatusCode::OK, &body), seq)
}

fn trades(state: &QueryState, query: &str) -> Response {
    let snap = state.snapshot();
    let limit = domain::parse_query(query, &["limit"]).and_then(|params| {
        domain::query_value(&params, "limit", TRADES_LIMIT_DEFAULT, |raw| {
            parse_limit(raw, TRADES_KEPT)
        })
    });
    let limit = match limit {
        Ok(l) => l,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    // Trades recorded past the published snapshot are not shown yet: one consistent seq.
    let trades: Vec<_> = {
        let kept = state.trades.read().expect("trades lock");
        kept.iter()
            .rev()
            .filter(|t| t.seq <= snap.seq)
            .take(limit)
            .cloned()
            .collect()
    };
    #[derive(Serialize)]
    struct Trades {
        seq: u64,
        trades: Vec<TradeView>,
    }
    let body = Trades {
        seq: snap.seq,
        trades,
    };
    with_applied_seq(json(StatusCode::OK, &body), snap.seq)
}

/// The read side's health fields.
pub fn health_fields(state: &QueryState) -> serde_json::Map<String, serde_json::Value> {
    let mut map = serde_json::Map::new();
    map.insert("durable_seq".into(), state.durable_seq().into());
    let snapshot = state.snapshot();
    map.insert("applied_seq".into(), snapshot.seq.into());
    map.insert(
        "read_digest".into(),
        domain::digest_hex(snapshot.digest).into(),
    );
    let behind = state.durable_seq().saturating_sub(state.applied_seq());
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

/// The read routes (without `/health`).
pub fn api(state: Arc<QueryState>) -> BoxedFilter<(Response,)> {
    let with_state = warp::any().map(move || state.clone());
    let get = || warp::get().and(raw_query());
    let orderbook = warp::path("orderbook")
        .and(warp::path::end())
        .and(with_state.clone())
        .and(get())
        .map(|s: Arc<QueryState>, q: String| orderbook(&s, &q));
    let order = warp::path!("orders" / String)
        .and(with_state.clone())
        .and(get())
        .map(|id: String, s: Arc<QueryState>, q: String| order(&s, &id, &q));
    let user_orders = warp::path!("users" / String / "orders")
        .and(with_state.clone())
        .and(get())
        .map(|user: String, s: Arc<QueryState>, q: String| user_orders(&s, &user, &q));
    let trades = warp::path("trades")
        .and(warp::path::end())
        .and(with_state)
        .and(get())
        .map(|s: Arc<QueryState>, q: String| trades(&s, &q));
    orderbook
        .or(order)
        .unify()
        .or(user_orders)
        .unify()
        .or(trades)
        .unify()
        .boxed()
}

/// All routes of a stand-alone query-svc: the API plus `/health`, errors as JSON.
pub fn routes(state: Arc<QueryState>) -> BoxedFilter<(Response,)> {
    let health_state = state.clone();
    let health = warp::path("health")
        .and(warp::path::end())
        .and(warp::get())
        .map(move || {
            let mut fields = health_fields(&health_state);
            let ok = !fields.contains_key("read_error");
            fields.insert("status".into(), if ok { "ok" } else { "error" }.into());
            fields.insert("seq".into(), fields["applied_seq"].clone());
            json(
                if ok {
                    StatusCode::OK
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                },
                &fields,
            )
        });
    api(state)
        .or(health)
        .unify()
        .recover(recover)
        .unify()
        .boxed()
}
