//! # gateway
//!
//! One listener for the whole API. In combined mode (the default) it runs the write
//! side and the read side in this process: command-svc's writer appends to the log,
//! query-svc's tailer follows the same file exactly as it would from another process,
//! and their routes share one warp server. `/health` merges both sides' fields.
//! In proxy mode ([`proxy`]) it fronts separately running services instead. In
//! both modes `GET /` is the web UI ([`index`], the page in `index.html`).
//!
//! The gateway is the front door only: the simulation (`sim/`), the benchmark
//! (`bench/`) and the test helpers (`test-support/`) are crates of their own.

pub mod proxy;

use command_svc::CommandHandle;
use query_svc::QueryState;
use shared_events::auth::AuthTable;
use std::sync::{Arc, LazyLock};
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;

/// `# HELP` text of the gateway's own metrics (proxy mode).
pub fn describe_metrics() {
    metrics::describe_counter!(
        "foldbook_upstream_errors_total",
        "Proxied requests that got no answer from their upstream, by kind (timeout, unreachable)."
    );
}

/// The web UI: one HTML page with its CSS and JS inline, no build step.
pub const PAGE: &str = include_str!("index.html");

/// The page's Content-Security-Policy: it may load and connect to this origin only
/// (it needs nothing else, and machines may be offline, so a stylesheet, font or
/// script from elsewhere is refused by the browser), and run only its own inline
/// script and style, named by their SHA-256, so injected markup could run nothing.
/// Built once, from the page itself.
pub fn page_csp() -> &'static str {
    static CSP: LazyLock<String> = LazyLock::new(|| {
        format!(
            "default-src 'none'; script-src {}; style-src {}; connect-src 'self'; \
             img-src data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
            inline_hash("script"),
            inline_hash("style")
        )
    });
    &CSP
}

/// `'sha256-…'` of the text inside the page's one `<tag>` element.
fn inline_hash(tag: &str) -> String {
    use base64::Engine;
    use sha2::Digest;
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    assert_eq!(PAGE.matches(&open).count(), 1, "index.html has one {open}");
    let start = PAGE.find(&open).expect("checked") + open.len();
    let end = start + PAGE[start..].find(&close).expect("a closing tag");
    let digest = sha2::Sha256::digest(&PAGE.as_bytes()[start..end]);
    format!(
        "'sha256-{}'",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

/// `GET /`: the web UI (live ladder, order form, trades, event feed, time travel).
/// The route list is in its footer; `/openapi.json` describes every route.
pub fn index() -> BoxedFilter<(Response,)> {
    warp::path::end()
        .and(warp::get())
        .map(|| {
            warp::http::Response::builder()
                .header("content-type", "text/html; charset=utf-8")
                .header("content-security-policy", page_csp())
                .header("x-content-type-options", "nosniff")
                .header("referrer-policy", "no-referrer")
                .header("cache-control", "no-cache")
                .body(PAGE.into())
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
    // Reads first: they are most of the traffic, and a request tried against a
    // filter that does not match costs a rejection.
    query_svc::http::api(query, read_auth)
        .or(command_svc::http::api(command, auth))
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

/// The combined gateway's API: [`combined_routes`], with the hot routes of both
/// sides (the book's reads, placing and cancelling orders) answered ahead of them.
pub fn combined_api(
    command: CommandHandle,
    query: Arc<QueryState>,
    auth: Option<Arc<AuthTable>>,
    auth_reads: bool,
) -> plumbing::serve::Api {
    let routes = combined_routes(command.clone(), query.clone(), auth.clone(), auth_reads);
    let writes = command_svc::http::hot(command, auth);
    let hot: plumbing::serve::HotRoutes = match query_svc::http::hot(query, auth_reads) {
        Some(reads) => Arc::new(move |head| reads(head).or_else(|| writes(head))),
        None => writes,
    };
    plumbing::serve::Api::new(
        routes,
        shared_events::openapi::ROUTE_LABELS,
        shared_events::openapi::allowed_methods,
    )
    .with_hot(hot)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_names_the_pages_own_script_and_style() {
        let csp = page_csp();
        assert!(!csp.contains("unsafe"), "{csp}");
        for tag in ["script", "style"] {
            let hash = inline_hash(tag);
            assert!(hash.len() == "'sha256-'".len() + 44, "{hash}");
            assert!(csp.contains(&format!("{tag}-src {hash};")), "{csp}");
        }
    }
}
