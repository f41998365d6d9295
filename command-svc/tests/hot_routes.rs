//! The hot write routes (`http::hot`, answered ahead of warp's filters by
//! `plumbing::serve`) give exactly the warp routes' answers: for arbitrary requests
//! of the hot shapes and near them (methods, paths, queries, idempotency keys,
//! bearer tokens, with and without an auth table), either the hot route leaves the
//! request to warp, or both answer the same status, headers and body, each on a
//! fresh writer over the same genesis.

mod common;
use command_svc::http;
use command_svc::writer::FsyncMode;
use common::*;
use plumbing::serve::{Answer, Head};
use proptest::prelude::*;
use shared_events::auth::AuthTable;
use std::sync::Arc;
use warp::http::{HeaderMap, HeaderValue, Method};

const ALICE: &str = "alice-token-0123456789";
const OPERATOR: &str = "operator-token-0123456789";

fn auth() -> Arc<AuthTable> {
    Arc::new(AuthTable::parse(&format!("{ALICE} alice\n{OPERATOR} ops operator\n")).unwrap())
}

/// What a test compares of an answer.
#[derive(Debug, PartialEq)]
struct Seen {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

fn seen<B>(response: &warp::http::Response<B>, body: &[u8]) -> Seen {
    let mut headers: Vec<(String, String)> = (response.headers().iter())
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("?").to_owned()))
        .collect();
    headers.sort();
    Seen {
        status: response.status().as_u16(),
        headers,
        body: body.to_vec(),
    }
}

#[derive(Debug, Clone)]
struct Case {
    method: Method,
    path: String,
    query: String,
    headers: HeaderMap,
    with_auth: bool,
}

/// The hot route's answer to `case`, on a fresh writer, if it takes the request.
async fn hot(case: &Case) -> Option<Seen> {
    let disk = FakeDisk::default();
    let (handle, task) = spawn_on(&disk, FsyncMode::Always);
    let hot = http::hot(handle, case.with_auth.then(auth));
    let head = Head {
        method: &case.method,
        path: &case.path,
        query: &case.query,
        headers: &case.headers,
    };
    let answer = hot(&head);
    let response = match answer {
        None => None,
        Some(Answer::Now(response)) => Some(response),
        Some(Answer::Later(future)) => Some(future.await),
    };
    drop(hot);
    let out = match response {
        Some(response) => {
            use http_body_util::BodyExt as _;
            let (parts, body) = response.into_parts();
            let body = body.collect().await.unwrap().to_bytes();
            let head = warp::http::Response::from_parts(parts, ());
            Some(seen(&head, &body))
        }
        None => None,
    };
    task.shutdown().await.unwrap();
    out
}

/// The warp routes' answer to `case`, on a fresh writer.
async fn warp_answer(case: &Case) -> Seen {
    let disk = FakeDisk::default();
    let (handle, task) = spawn_on(&disk, FsyncMode::Always);
    let routes = http::routes(handle, case.with_auth.then(auth));
    let target = if case.query.is_empty() {
        case.path.clone()
    } else {
        format!("{}?{}", case.path, case.query)
    };
    let mut request = warp::test::request()
        .method(case.method.as_str())
        .path(&target);
    for (name, value) in &case.headers {
        request = request.header(name, value);
    }
    let response = request.reply(&routes).await;
    drop(routes);
    let out = seen(&response, response.body());
    task.shutdown().await.unwrap();
    out
}

fn segment() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "buy", "sell", "cancel", "markets", "FOLD", "NOPE", "alice", "bob", "dave", "a%20b", "101",
        "99", "0", "market", "1", "2", "x", "",
    ])
}

fn query() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "",
        "",
        "",
        "qty=3",
        "qty=3",
        "qty=0",
        "tif=ioc",
        "qty=2&tif=fok",
        "post_only=true",
        "bogus=1",
        "max_cost=100",
        "qty=1&qty=2",
        "stp=cancel_maker",
    ])
}

/// Paths of the hot shapes (filled with good and bad values) and near them.
fn segments() -> impl Strategy<Value = Vec<&'static str>> {
    let side = prop::sample::select(vec!["buy", "sell", "buy", "sell", "cancel", "amend"]);
    let user = prop::sample::select(vec!["alice", "bob", "dave", "a%20b", "x!", ""]);
    let price = prop::sample::select(vec![
        "101",
        "99",
        "1",
        "2",
        "0",
        "market",
        "1000000001",
        "x",
    ]);
    let market = prop::sample::select(vec!["FOLD", "NOPE", "fold"]);
    prop_oneof![
        3 => (side.clone(), user.clone(), price.clone()).prop_map(|(s, u, p)| vec![s, u, p]),
        2 => (market, side, user, price).prop_map(|(m, s, u, p)| vec!["markets", m, s, u, p]),
        1 => prop::collection::vec(segment(), 1..6),
    ]
}

fn case() -> impl Strategy<Value = Case> {
    (
        prop::sample::select(vec![Method::GET, Method::POST, Method::POST, Method::PUT]),
        segments(),
        prop::sample::select(vec![false, false, false, true]),
        query(),
        prop::sample::select(vec![None, Some("k-1"), Some("bad key with spaces")]),
        prop::sample::select(vec![None, None, Some(ALICE), Some(OPERATOR), Some("nope")]),
        prop::sample::select(vec![false, false, true]),
    )
        .prop_map(|(method, segments, slash, query, key, token, with_auth)| {
            let mut path = format!("/{}", segments.join("/"));
            if slash {
                path.push('/');
            }
            let mut headers = HeaderMap::new();
            if let Some(key) = key {
                headers.insert("idempotency-key", HeaderValue::from_static(key));
            }
            if let Some(token) = token {
                let value = format!("Bearer {token}");
                headers.insert("authorization", HeaderValue::from_str(&value).unwrap());
            }
            Case {
                method,
                path,
                query: query.to_owned(),
                headers,
                with_auth,
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn a_hot_route_answers_as_the_warp_route_would(case in case()) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            if let Some(hot) = hot(&case).await {
                let warp = warp_answer(&case).await;
                assert_eq!(
                    hot, warp,
                    "{} {}?{} (auth table: {})",
                    case.method, case.path, case.query, case.with_auth
                );
            }
        });
    }
}

/// The shapes the hot routes are for are taken by them (else the test above would
/// compare nothing).
#[tokio::test]
async fn the_hot_shapes_are_taken() {
    let case = |method: Method, path: &str| Case {
        method,
        path: path.to_owned(),
        query: String::new(),
        headers: HeaderMap::new(),
        with_auth: false,
    };
    for (method, path) in [
        (Method::POST, "/buy/alice/101"),
        (Method::GET, "/sell/bob/99"),
        (Method::POST, "/markets/FOLD/buy/dave/100"),
        (Method::POST, "/markets/NOPE/sell/dave/100"),
        (Method::POST, "/cancel/alice/1"),
    ] {
        assert!(
            hot(&case(method.clone(), path)).await.is_some(),
            "{method} {path}"
        );
    }
    for (method, path) in [
        (Method::POST, "/buy/alice/101/"),
        (Method::PUT, "/buy/alice/101"),
        (Method::GET, "/cancel/alice/1"),
        (Method::POST, "/deposit/alice/USD/5"),
        (Method::POST, "/buy//101"),
    ] {
        assert!(
            hot(&case(method.clone(), path)).await.is_none(),
            "{method} {path}"
        );
    }
}
