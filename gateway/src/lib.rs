//! # gateway
//!
//! One listener for the whole API. In combined mode (the default) it runs the write
//! side and the read side in this process: command-svc's writer appends to the log,
//! query-svc's tailer follows the same file exactly as it would from another process,
//! and their routes share one warp server. `/health` merges both sides' fields.
//! In proxy mode ([`proxy`]) it fronts separately running services instead.
//!
//! [`sim`] is the deterministic simulation of the storage path: both sides' real
//! code on a seeded, faulty, simulated disk (`scripts/sim.sh`).

pub mod proxy;
pub mod sim;

use command_svc::CommandHandle;
use query_svc::QueryState;
use shared_events::auth::AuthTable;
use std::sync::Arc;
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;

/// What `GET /` answers until the web UI exists: where to go next.
const INDEX: &str = "foldbook: an event-sourced order book\n\
\n\
  POST /buy/{user}/{price}[?qty=N]     place a buy order (GET works too)\n\
  POST /sell/{user}/{price}[?qty=N]    place a sell order (GET works too)\n\
  POST /cancel/{user}/{order_id}       cancel a resting order\n\
  GET  /orderbook                      bids and asks\n\
  GET  /orders/{id}                    one order\n\
  GET  /users/{user}/orders[?limit=N]  a user's orders, newest first\n\
  GET  /trades[?limit=N]               recent trades, newest first\n\
  GET  /orderbook?at=N                 the book right after event N\n\
  GET  /events[?from=N]                events as Server-Sent Events\n\
  any read route ?min_seq=N            wait until event N is visible\n\
  GET  /health                         sequence numbers and status\n";

/// `GET /`: what is here.
pub fn index() -> BoxedFilter<(Response,)> {
    warp::path::end()
        .and(warp::get())
        .map(|| {
            warp::http::Response::builder()
                .header("content-type", "text/plain; charset=utf-8")
                .body(INDEX.into())
                .expect("valid response")
        })
        .boxed()
}

/// `GET /openapi.json`: the whole OpenAPI document, as written.
pub fn openapi() -> BoxedFilter<(Response,)> {
    command_svc::http::openapi(bytes::Bytes::from_static(
        shared_events::openapi::DOCUMENT.as_bytes(),
    ))
}

/// Every route of the combined gateway, errors as JSON. `auth` (from `--auth-file`)
/// guards writes; with `auth_reads` it guards reads too.
pub fn combined_routes(
    command: CommandHandle,
    query: Arc<QueryState>,
    auth: Option<Arc<AuthTable>>,
    auth_reads: bool,
) -> BoxedFilter<(Response,)> {
    let health_command = command.clone();
    let health_query = query.clone();
    let health = warp::path("health")
        .and(warp::path::end())
        .and(warp::get())
        .map(move || {
            // The writer's own `durable_seq` wins over what the read side last saw of it.
            let mut fields = query_svc::http::health_fields(&health_query);
            fields.extend(command_svc::http::health_fields(&health_command));
            let ok = !fields.contains_key("read_error");
            fields.insert("status".into(), if ok { "ok" } else { "error" }.into());
            fields.insert("seq".into(), fields["applied_seq"].clone());
            let status = if ok {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            command_svc::http::json(status, &fields)
        });
    let read_auth = auth.clone().filter(|_| auth_reads);
    command_svc::http::api(command, auth)
        .or(query_svc::http::api(query, read_auth))
        .unify()
        .or(health)
        .unify()
        .or(index())
        .unify()
        .or(openapi())
        .unify()
        .recover(command_svc::http::recover)
        .unify()
        .boxed()
}
