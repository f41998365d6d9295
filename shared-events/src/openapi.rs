//! The HTTP API's description: one OpenAPI 3 document, `shared-events/openapi.json`,
//! written by hand and kept true by tests (the gateway's `openapi` test checks it
//! against the routes and the Rust bounds, its `schemathesis` test against a running
//! gateway). It lives here, as data, because every binary serves it at
//! `GET /openapi.json` and command-svc and query-svc may share only this crate:
//! the gateway serves all of it, each service the part it answers ([`for_tags`]).
//! The document also says which methods each route serves, which is what a 405's
//! `Allow` header lists ([`allowed_methods`]).

use serde_json::Value;
use std::sync::OnceLock;

/// The whole document, as written.
pub const DOCUMENT: &str = include_str!("../openapi.json");

/// Tag of the write routes (command-svc).
pub const TAG_WRITES: &str = "writes";
/// Tag of the read routes (query-svc).
pub const TAG_READS: &str = "reads";
/// Tag of `/health`, `/metrics` and `/openapi.json` (every binary).
pub const TAG_OPERATIONS: &str = "operations";

/// The HTTP methods an OpenAPI path item may describe, in the order `Allow` lists them.
const METHODS: &[&str] = &[
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// The document, parsed once.
pub fn document() -> &'static Value {
    static PARSED: OnceLock<Value> = OnceLock::new();
    PARSED.get_or_init(|| serde_json::from_str(DOCUMENT).expect("openapi.json is valid JSON"))
}

/// The document with only the operations tagged with one of `tags` (and only the
/// paths that keep an operation): what a service that serves those routes shows.
pub fn for_tags(tags: &[&str]) -> Value {
    let mut doc = document().clone();
    let tagged = |op: &Value| {
        op["tags"]
            .as_array()
            .is_some_and(|t| t.iter().any(|t| tags.contains(&t.as_str().unwrap_or(""))))
    };
    let paths = doc["paths"].as_object_mut().expect("paths is an object");
    paths.retain(|_, item| {
        let item = item.as_object_mut().expect("a path item is an object");
        item.retain(|key, op| !METHODS.contains(&key.as_str()) || tagged(op));
        item.keys().any(|key| METHODS.contains(&key.as_str()))
    });
    if let Some(list) = doc["tags"].as_array_mut() {
        list.retain(|t| tags.contains(&t["name"].as_str().unwrap_or("")));
    }
    doc
}

/// One route of the document: its path template, its segments and its methods.
struct Route {
    template: String,
    /// `None` for a `{parameter}` segment, which matches any non-empty segment.
    segments: Vec<Option<String>>,
    /// The `Allow` value: `GET, POST`.
    allow: String,
}

fn segments(path: &str) -> impl Iterator<Item = &str> {
    let path = path.trim_start_matches('/');
    path.split('/').filter(move |_| !path.is_empty())
}

fn routes() -> &'static [Route] {
    static ROUTES: OnceLock<Vec<Route>> = OnceLock::new();
    ROUTES.get_or_init(|| {
        let paths = document()["paths"].as_object().expect("paths is an object");
        paths
            .iter()
            .map(|(template, item)| Route {
                template: template.clone(),
                segments: segments(template)
                    .map(|s| (!s.starts_with('{')).then(|| s.to_owned()))
                    .collect(),
                allow: METHODS
                    .iter()
                    .filter(|m| item.get(**m).is_some())
                    .map(|m| m.to_ascii_uppercase())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
            .collect()
    })
}

/// The document's route that `path` (a request path, without the query) falls on.
fn route_of(path: &str) -> Option<&'static Route> {
    let actual: Vec<&str> = segments(path).collect();
    routes().iter().find(|route| {
        route.segments.len() == actual.len()
            && route.segments.iter().zip(&actual).all(|(want, got)| {
                want.as_deref()
                    .map_or(!got.is_empty(), |literal| literal == *got)
            })
    })
}

/// The path template (`/orders/{id}`) of the route that `path` falls on.
pub fn template(path: &str) -> Option<&'static str> {
    route_of(path).map(|route| route.template.as_str())
}

/// The first path segments of every route any binary serves (besides `/`): the
/// `route` labels of `foldbook_http_requests_total` (a test checks them against the
/// document's paths).
pub const ROUTE_LABELS: &[&str] = &[
    "buy",
    "sell",
    "cancel",
    "deposit",
    "withdraw",
    "amend",
    "cancel-all",
    "markets",
    "orderbook",
    "orders",
    "users",
    "trades",
    "assets",
    "events",
    "health",
    "metrics",
    "openapi.json",
];

/// The methods the document gives the route that `path` (a request path, without
/// the query) falls on, as an `Allow` header value; `None` when it is no route.
pub fn allowed_methods(path: &str) -> Option<&'static str> {
    route_of(path).map(|route| route.allow.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_is_openapi_3() {
        assert_eq!(document()["openapi"], "3.0.3");
        assert!(document()["paths"].as_object().unwrap().len() > 10);
    }

    #[test]
    fn allow_lists_the_documented_methods() {
        assert_eq!(allowed_methods("/buy/alice/100"), Some("GET, POST"));
        assert_eq!(allowed_methods("/cancel/alice/3"), Some("POST"));
        assert_eq!(allowed_methods("/orderbook"), Some("GET"));
        assert_eq!(allowed_methods("/users/a.b/orders"), Some("GET"));
        assert_eq!(allowed_methods("/"), Some("GET"));
        assert_eq!(allowed_methods(""), Some("GET"));
        assert_eq!(allowed_methods("/buy/alice"), None);
        assert_eq!(allowed_methods("/buy//100"), None);
        assert_eq!(allowed_methods("/nope"), None);
        assert_eq!(template("/orders/7"), Some("/orders/{id}"));
    }

    #[test]
    fn a_service_sees_only_its_routes() {
        let paths = |doc: &Value| -> Vec<String> {
            doc["paths"].as_object().unwrap().keys().cloned().collect()
        };
        let writes = for_tags(&[TAG_WRITES, TAG_OPERATIONS]);
        assert_eq!(
            paths(&writes),
            [
                "/buy/{user}/{price}",
                "/buy/{user}/market",
                "/sell/{user}/{price}",
                "/sell/{user}/market",
                "/cancel/{user}/{order_id}",
                "/amend/{user}/{order_id}",
                "/cancel-all/{user}",
                "/deposit/{user}/{asset}/{amount}",
                "/withdraw/{user}/{asset}/{amount}",
                "/markets/{symbol}/buy/{user}/{price}",
                "/markets/{symbol}/buy/{user}/market",
                "/markets/{symbol}/sell/{user}/{price}",
                "/markets/{symbol}/sell/{user}/market",
                "/health",
                "/metrics",
                "/openapi.json"
            ]
        );
        let reads = for_tags(&[TAG_READS, TAG_OPERATIONS]);
        assert_eq!(
            paths(&reads),
            [
                "/markets",
                "/orderbook",
                "/markets/{symbol}/orderbook",
                "/orders/{id}",
                "/users/{user}/orders",
                "/users/{user}/balances",
                "/assets",
                "/trades",
                "/markets/{symbol}/trades",
                "/events",
                "/health",
                "/metrics",
                "/openapi.json"
            ]
        );
        assert_eq!(reads["tags"].as_array().unwrap().len(), 2);
        assert_eq!(reads["components"], document()["components"]);
    }
}
