//! The OpenAPI document (`shared-events/openapi.json`) checked against the code, so it
//! cannot drift from it:
//!
//! - its bounds are the Rust constants, and its patterns and ranges accept exactly
//!   what the Rust validators accept (property tests);
//! - its routes are the routes the binaries serve: every documented operation is
//!   served, every other method on a documented path is 405 with the documented
//!   methods in `Allow`, every route label of the binaries is documented, and each
//!   binary serves its own part of the document;
//! - real answers conform: a scripted session against the real binaries (combined,
//!   with auth, and split behind a proxying gateway) checks that each answer's status
//!   is documented for its operation, its content type is the documented one, the
//!   documented required headers are there and valid, and its body is valid against
//!   the documented schema.
//!
//! `schemathesis.rs` attacks the same document with generated input.

use proptest::prelude::*;
use serde_json::{Value, json};
use shared_events::domain;
use shared_events::openapi::{self, document};
use std::collections::BTreeSet;
use test_support::*;

/// The HTTP methods the document may describe.
const METHODS: &[&str] = &["get", "put", "post", "delete", "patch", "options", "trace"];

/// What `$ref` points at, followed until it is not a reference.
fn resolve(value: &Value) -> &Value {
    match value.get("$ref").and_then(Value::as_str) {
        Some(pointer) => resolve(
            document()
                .pointer(pointer.trim_start_matches('#'))
                .unwrap_or_else(|| panic!("dangling $ref {pointer}")),
        ),
        None => value,
    }
}

/// A validator for one schema of the document (its `$ref`s resolve in the document).
fn validator(schema: &Value) -> jsonschema::Validator {
    let root = json!({ "allOf": [schema], "components": document()["components"] });
    jsonschema::draft4::new(&root).unwrap_or_else(|e| panic!("bad schema {schema}: {e}"))
}

fn parameter(name: &str) -> &'static Value {
    let p = &document()["components"]["parameters"][name];
    assert!(p.is_object(), "no parameter {name}");
    p
}

fn parameter_schema(name: &str) -> &'static Value {
    resolve(&parameter(name)["schema"])
}

fn schema(name: &str) -> &'static Value {
    &document()["components"]["schemas"][name]
}

#[test]
// One scenario, read top to bottom: its steps build on each other's state,
// so it stays one function.
fn bounds_are_the_codes_constants() {
    use plumbing::serve;
    use query_svc::http as q;
    let doc = document();
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));

    let user = format!("^[A-Za-z0-9_.-]{{1,{}}}$", domain::USER_LEN_MAX);
    for s in [parameter_schema("User"), schema("User")] {
        assert_eq!(s["pattern"], user.as_str());
        assert_eq!(s["maxLength"], domain::USER_LEN_MAX);
    }
    for s in [parameter_schema("Price"), schema("Price")] {
        assert_eq!(
            (&s["minimum"], &s["maximum"]),
            (&json!(domain::PRICE_MIN), &json!(domain::PRICE_MAX))
        );
    }
    for s in [parameter_schema("Qty"), schema("Qty")] {
        assert_eq!(
            (&s["minimum"], &s["maximum"]),
            (&json!(domain::QTY_MIN), &json!(domain::QTY_MAX))
        );
    }
    assert_eq!(parameter_schema("Qty")["default"], 1);
    let key = parameter_schema("IdempotencyKey");
    assert_eq!(key["maxLength"], command_svc::idempotency::KEY_BYTES_MAX);
    assert_eq!(parameter("IdempotencyKey")["name"], "Idempotency-Key");
    assert_eq!(parameter("LastEventId")["name"], "Last-Event-ID");

    let range = |name: &str| {
        let s = parameter_schema(name);
        (
            s["minimum"].clone(),
            s["maximum"].clone(),
            s["default"].clone(),
        )
    };
    let trades = range("TradesLimit");
    assert_eq!(
        trades,
        (
            json!(1),
            json!(query_svc::projection::TRADES_KEPT),
            json!(q::TRADES_LIMIT_DEFAULT)
        )
    );
    let user_orders = range("UserOrdersLimit");
    assert_eq!(
        user_orders,
        (
            json!(1),
            json!(q::USER_ORDERS_LIMIT_MAX),
            json!(q::USER_ORDERS_LIMIT_DEFAULT)
        )
    );
    assert_eq!(range("Depth"), (json!(1), json!(q::DEPTH_MAX), Value::Null));
    let timeout = range("TimeoutMs");
    assert_eq!(
        timeout,
        (
            json!(0),
            json!(q::MIN_SEQ_TIMEOUT_MAX.as_millis() as u64),
            json!(q::MIN_SEQ_TIMEOUT_DEFAULT.as_millis() as u64)
        )
    );
    for name in ["MinSeq", "At", "From", "LastEventId"] {
        assert_eq!(
            range(name),
            (json!(0), json!(u64::MAX), Value::Null),
            "{name}"
        );
    }
    for name in ["OrderId", "CancelOrderId"] {
        assert_eq!(
            range(name),
            (json!(1), json!(u64::MAX), Value::Null),
            "{name}"
        );
    }
    assert_eq!(
        schema("Placed")["properties"]["fills"]["maxItems"],
        command_svc::book::FILLS_PER_EVENT_MAX
    );

    // The limits the description states are the defaults of the flags.
    let text = doc["info"]["description"].as_str().unwrap();
    for stated in [
        format!("longer than {} bytes is 414", serve::URI_BYTES_MAX),
        format!("longer than {} KiB is 413", serve::BODY_BYTES_MAX / 1024),
        format!("over {} KiB", serve::HEADER_BYTES_MAX / 1024),
        format!("more than {} headers is 431", serve::HEADERS_MAX),
    ] {
        assert!(
            text.contains(&stated),
            "the description does not say {stated:?}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn the_user_pattern_is_the_validator(user in "[ -~]{0,66}|[a-z.é_-]{0,4}|\\PC{0,3}") {
        for s in [parameter_schema("User"), schema("User")] {
            prop_assert_eq!(validator(s).is_valid(&json!(user)), domain::is_valid_user(&user), "{:?}", user);
        }
    }

    #[test]
    fn number_ranges_are_the_parsers(n in prop_oneof![any::<u64>(), 0..3u64, 999_998..1_000_003u64, 999_999_998..1_000_000_003u64]) {
        let raw = n.to_string();
        let valid = |name: &str| validator(parameter_schema(name)).is_valid(&json!(n));
        prop_assert_eq!(valid("Price"), domain::parse_price(&raw).is_ok());
        prop_assert_eq!(valid("Qty"), domain::parse_qty(&raw).is_ok());
        prop_assert_eq!(valid("OrderId"), domain::parse_order_id(&raw).is_ok());
        prop_assert!(valid("MinSeq"));
    }

    #[test]
    fn the_idempotency_key_pattern_is_the_parser(key in "[\\x00-\\x7f]{0,3}|[!-~]{0,130}|[ -~]{1,5}") {
        let valid = validator(parameter_schema("IdempotencyKey")).is_valid(&json!(key));
        prop_assert_eq!(valid, command_svc::idempotency::parse_key(key.as_bytes()).is_ok(), "{:?}", key);
    }
}

/// Every documented operation, as (template, method).
fn operations() -> Vec<(&'static str, &'static str)> {
    let mut ops = Vec::new();
    for (template, item) in document()["paths"].as_object().unwrap() {
        for method in METHODS {
            if item.get(*method).is_some() {
                ops.push((template.as_str(), *method));
            }
        }
    }
    ops
}

#[test]
fn every_route_label_is_documented_and_the_other_way_round() {
    let firsts: BTreeSet<&str> = document()["paths"]
        .as_object()
        .unwrap()
        .keys()
        .filter_map(|t| t.trim_start_matches('/').split('/').next())
        .filter(|s| !s.is_empty())
        .collect();
    let labels: BTreeSet<&str> = shared_events::openapi::ROUTE_LABELS
        .iter()
        .copied()
        .collect();
    assert_eq!(firsts, labels);
    assert!(
        document()["paths"].get("/").is_some(),
        "GET / is documented"
    );
    // Every operation has an id, a tag that says which binary serves it, and answers.
    let tags = [
        openapi::TAG_WRITES,
        openapi::TAG_READS,
        openapi::TAG_OPERATIONS,
        "gateway",
    ];
    for (template, method) in operations() {
        let op = &document()["paths"][template][method];
        assert!(op["operationId"].is_string(), "{method} {template}");
        assert!(
            op["tags"]
                .as_array()
                .unwrap()
                .iter()
                .all(|t| tags.contains(&t.as_str().unwrap()))
        );
        assert!(
            !op["responses"].as_object().unwrap().is_empty(),
            "{method} {template}"
        );
    }
}

/// One answer, read whole (an event stream: its first events).
#[derive(Debug)]
struct Answer {
    method: String,
    path: String,
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("{self:?}: {e}"))
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }
}

/// Sends one request (with a bearer token if given) and reads the answer; an event
/// stream is read until `events` events have come.
async fn call(base: &str, method: &str, path: &str, token: Option<&str>, events: usize) -> Answer {
    use futures_util::StreamExt;
    let mut req = client().request(method.parse().unwrap(), format!("{base}{path}"));
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    let res = req
        .send()
        .await
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let streamed = headers
        .get("content-type")
        .is_some_and(|v| v == "text/event-stream");
    let mut body = Vec::new();
    let mut stream = res.bytes_stream();
    // An event stream does not end: read it until enough events came, or for a while.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(3);
    while let Ok(Some(chunk)) = tokio::time::timeout_at(deadline, stream.next()).await {
        body.extend_from_slice(&chunk.unwrap());
        if streamed && String::from_utf8_lossy(&body).matches("\n\n").count() >= events {
            break;
        }
    }
    Answer {
        method: method.to_owned(),
        path: path.to_owned(),
        status,
        headers,
        body,
    }
}

/// The events of a `text/event-stream` body, as the document's event schema sees them.
fn events_of(body: &[u8]) -> Vec<Value> {
    let text = String::from_utf8(body.to_vec()).unwrap();
    // Only complete events: the stream may have been cut in the middle of one.
    let complete = &text[..text.rfind("\n\n").map_or(0, |end| end + 2)];
    complete
        .split("\n\n")
        .filter(|block| block.lines().any(|l| l.starts_with("data:")))
        .map(|block| {
            let mut event = serde_json::Map::new();
            for line in block.lines().filter(|l| !l.starts_with(':')) {
                let (field, value) = line.split_once(':').unwrap();
                event.insert(field.to_owned(), value.trim_start_matches(' ').into());
            }
            Value::Object(event)
        })
        .collect()
}

/// Checks `answer` against the document (see the module docs); returns it.
// One scenario, read top to bottom: its steps build on each other's state,
// so it stays one function.
fn conforms(answer: Answer) -> Answer {
    let what = format!("{} {} -> {}", answer.method, answer.path, answer.status);
    let path = answer.path.split('?').next().unwrap();
    let template = openapi::template(path).unwrap_or_else(|| panic!("{what}: no documented route"));
    let method = answer.method.to_ascii_lowercase();
    let op = &document()["paths"][template][method.as_str()];
    assert!(
        op.is_object(),
        "{what}: {method} {template} is not documented"
    );
    let documented = op["responses"]
        .get(answer.status.to_string())
        .unwrap_or_else(|| panic!("{what}: status not documented for {method} {template}"));
    let documented = resolve(documented);
    if let Some(headers) = documented["headers"].as_object() {
        for (name, header) in headers {
            let header = resolve(header);
            match answer.header(name) {
                None => assert!(header["required"] != true, "{what}: no {name} header"),
                Some(raw) => {
                    let schema = resolve(&header["schema"]);
                    let value = if schema["type"] == "integer" {
                        raw.parse::<u64>()
                            .map(Value::from)
                            .unwrap_or_else(|_| raw.into())
                    } else {
                        raw.into()
                    };
                    let valid = validator(schema).is_valid(&value);
                    assert!(
                        valid,
                        "{what}: header {name}: {raw:?} does not fit {schema}"
                    );
                }
            }
        }
    }
    let Some(content) = documented["content"].as_object() else {
        assert!(
            answer.body.is_empty(),
            "{what}: a body where none is documented"
        );
        return answer;
    };
    let content_type = answer
        .header("content-type")
        .unwrap_or_else(|| panic!("{what}: no content type"));
    let essence = content_type.split(';').next().unwrap().trim();
    let media = content
        .get(essence)
        .unwrap_or_else(|| panic!("{what}: content type {content_type} is not documented"));
    let schema = resolve(&media["schema"]);
    let instances = match essence {
        "application/json" => vec![answer.json()],
        "text/event-stream" => events_of(&answer.body),
        _ => vec![Value::String(
            String::from_utf8(answer.body.clone()).unwrap(),
        )],
    };
    for instance in instances {
        let errors: Vec<String> = validator(schema)
            .iter_errors(&instance)
            .map(|e| e.to_string())
            .collect();
        assert!(
            errors.is_empty(),
            "{what}: body does not fit the schema: {errors:?}\n{instance}"
        );
    }
    answer
}

/// Every method the document does not give a path is 405 with `Allow` the documented ones.
async fn other_methods_are_405(base: &str, path: &str) {
    let template = openapi::template(path.split('?').next().unwrap()).unwrap();
    let item = &document()["paths"][template];
    let documented: Vec<String> = METHODS
        .iter()
        .filter(|m| item.get(**m).is_some())
        .map(|m| m.to_ascii_uppercase())
        .collect();
    for method in METHODS.iter().map(|m| m.to_ascii_uppercase()) {
        if documented.contains(&method) {
            continue;
        }
        let answer = call(base, &method, path, None, 0).await;
        assert_eq!(answer.status, 405, "{method} {path}: {answer:?}");
        assert_eq!(
            answer.header("allow"),
            Some(documented.join(", ").as_str()),
            "{method} {path}"
        );
        assert_eq!(
            answer.json()["error"],
            "method not allowed for this route",
            "{method} {path}"
        );
    }
}

/// A sample request path for each documented route.
fn sample(template: &str) -> String {
    template
        .replace("{symbol}", "FOLD")
        .replace("{user}", "alice")
        .replace("{price}", "100")
        .replace("{order_id}", "2")
        .replace("{id}", "1")
        .replace("{asset}", "USD")
        .replace("{amount}", "5")
        .replace("/amend/alice/2", "/amend/alice/2?qty=1")
        .replace("/events", "/events?from=1")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// One scenario, read top to bottom: its steps build on each other's state,
// so it stays one function.
async fn answers_of_the_combined_gateway_conform() {
    let dir = workdir();
    let gw = Proc::start("gateway", dir.path(), &[]);
    let base = gw.url.as_str();
    let get = |path: &'static str| async move { conforms(call(base, "GET", path, None, 2).await) };
    let post =
        |path: &'static str| async move { conforms(call(base, "POST", path, None, 0).await) };

    // The whole document, as written.
    let doc = get("/openapi.json").await;
    assert_eq!(doc.json(), *document());
    assert_eq!(get("/").await.status, 200);
    assert_eq!(get("/health").await.status, 200);
    assert_eq!(get("/metrics").await.status, 200);

    // Writes: a buy that fills (erin's ask at 101) and rests, a GET-placed order, a
    // sell that fills a bid, idempotent retries and a reused key.
    let client = client();
    let keyed = |path: &'static str, key: &'static str| {
        let client = client.clone();
        async move {
            let res = client
                .post(format!("{base}{path}"))
                .header("idempotency-key", key)
                .send()
                .await
                .unwrap();
            let status = res.status().as_u16();
            let headers = res.headers().clone();
            let body = res.bytes().await.unwrap().to_vec();
            conforms(Answer {
                method: "POST".into(),
                path: path.into(),
                status,
                headers,
                body,
            })
        }
    };
    let placed = keyed("/buy/zed/101?qty=9", "k-1").await;
    assert_eq!(placed.status, 201);
    assert_eq!(
        placed.json()["fills"][0]["maker_user"],
        "erin",
        "{:?}",
        placed.json()
    );
    assert_eq!(
        keyed("/buy/zed/101?qty=9", "k-1").await.json(),
        placed.json()
    );
    assert_eq!(keyed("/buy/zed/100", "k-1").await.status, 409);
    assert_eq!(keyed("/buy/zed/100", "bad key").await.status, 400);
    assert_eq!(get("/sell/yan/97?qty=2").await.status, 201);
    assert_eq!(post("/cancel/alice/1").await.status, 200);
    assert_eq!(post("/cancel/alice/1").await.status, 404);
    assert_eq!(post("/cancel/alice/2").await.status, 403);
    for bad in [
        "/buy/zed/0",
        "/buy/zed/1?qty=1000001",
        "/buy/zed/1?qyt=5",
        "/sell/no%20one/5",
        "/cancel/zed/0",
    ] {
        assert_eq!(post(bad).await.status, 400, "{bad}");
    }
    assert_eq!(call(base, "POST", "/buy/zed", None, 0).await.status, 404);
    let seq: u64 = placed.header("x-event-seq").unwrap().parse().unwrap();

    // Reads, each shape and each refusal.
    assert_eq!(get("/orderbook").await.status, 200);
    let depth = get("/orderbook?depth=2&min_seq=3").await;
    assert_eq!(depth.json()["depth"], 2);
    let at = get("/orderbook?at=0").await;
    assert_eq!(at.header("x-book-seq"), Some("0"));
    assert_eq!(get("/orderbook?at=999").await.status, 400);
    let timeout = get("/orderbook?min_seq=999&timeout_ms=10").await;
    assert_eq!(timeout.status, 504);
    assert!(timeout.json()["seq"].as_u64().unwrap() >= seq);
    assert_eq!(get("/orderbook?depth=0").await.status, 400);
    assert_eq!(get("/orders/5").await.json()["user"], "zed");
    assert_eq!(get("/orders/999").await.status, 404);
    assert_eq!(get("/orders/x").await.status, 400);
    assert_eq!(
        get("/users/zed/orders?limit=1").await.json()["orders"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(get("/users/zed/orders?limit=0").await.status, 400);
    let trades = get("/trades?limit=5").await;
    assert!(!trades.json()["trades"].as_array().unwrap().is_empty());
    assert_eq!(get("/trades?limit=1001").await.status, 400);
    let events = get("/events?from=1").await;
    assert_eq!(events.status, 200);
    assert!(events_of(&events.body).len() >= 2, "{events:?}");
    // A stream that starts live says so at once, with the `caught-up` marker.
    let live = conforms(call(base, "GET", "/events", None, 1).await);
    assert_eq!(events_of(&live.body)[0]["event"], "caught-up", "{live:?}");
    assert_eq!(get("/events?from=x").await.status, 400);

    // Every documented operation is served (the samples are valid requests), and
    // every other method is 405 with Allow.
    for (template, method) in operations() {
        let path = sample(template);
        let answer = conforms(call(base, &method.to_ascii_uppercase(), &path, None, 1).await);
        assert!(
            // 409: an order that would change nothing (a cancel-all with none left).
            answer.status < 300 || [403, 404, 409].contains(&answer.status),
            "{method} {path}: {answer:?}"
        );
        other_methods_are_405(base, &path).await;
    }
    // Paths next to the documented ones are no routes.
    for path in [
        "/buy/alice",
        "/orders",
        "/users/alice",
        "/orderbook/1",
        "/nope",
        "/openapi",
    ] {
        assert_eq!(call(base, "GET", path, None, 0).await.status, 404, "{path}");
    }

    // The limits, on a documented route.
    let long = format!("/orderbook?{}", "x".repeat(plumbing::serve::URI_BYTES_MAX));
    let answer = call(base, "GET", &long, None, 0).await;
    assert_eq!(conforms(answer).status, 414);
    let res = client
        .get(format!("{base}/orderbook"))
        .header("x-big", "a".repeat(plumbing::serve::HEADER_BYTES_MAX))
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let body = res.bytes().await.unwrap().to_vec();
    assert_eq!(
        conforms(Answer {
            method: "GET".into(),
            path: "/orderbook".into(),
            status,
            headers,
            body
        })
        .status,
        431
    );
    let res = client
        .post(format!("{base}/buy/alice/1"))
        .body(vec![b'x'; plumbing::serve::BODY_BYTES_MAX as usize + 1])
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let body = res.bytes().await.unwrap().to_vec();
    assert_eq!(
        conforms(Answer {
            method: "POST".into(),
            path: "/buy/alice/1".into(),
            status,
            headers,
            body
        })
        .status,
        413
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_with_auth_conform() {
    let dir = workdir();
    std::fs::write(
        dir.path().join("tokens.txt"),
        "alice-token-alice-1 alice\nbob-token-bob-token-2 bob\n",
    )
    .unwrap();
    let gw = Proc::start(
        "gateway",
        dir.path(),
        &["--auth-file", "tokens.txt", "--auth-reads"],
    );
    let base = gw.url.as_str();
    let alice = Some("alice-token-alice-1");
    let bob = Some("bob-token-bob-token-2");
    let status = |method: &'static str, path: &'static str, token: Option<&'static str>| async move {
        conforms(call(base, method, path, token, 0).await).status
    };
    assert_eq!(status("POST", "/buy/alice/100", None).await, 401);
    assert_eq!(
        status("POST", "/buy/alice/100", Some("nobody-knows-this-one")).await,
        401
    );
    assert_eq!(status("POST", "/buy/alice/100", bob).await, 403);
    assert_eq!(status("POST", "/buy/alice/100", alice).await, 201);
    assert_eq!(status("POST", "/cancel/alice/1", bob).await, 403);
    assert_eq!(status("GET", "/orderbook", None).await, 401);
    assert_eq!(status("GET", "/orders/1", bob).await, 200);
    assert_eq!(status("GET", "/health", None).await, 200);
    assert_eq!(status("GET", "/openapi.json", None).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// One scenario, read top to bottom: its steps build on each other's state,
// so it stays one function.
async fn each_binary_serves_its_part_and_the_proxy_conforms() {
    let dir = workdir();
    let command = Proc::start("command-svc", dir.path(), &[]);
    let query = Proc::start("query-svc", dir.path(), &[]);
    let gw = Proc::start_proxy(dir.path(), &command, &[&query]);
    let paths = |doc: &Value| -> BTreeSet<String> {
        doc["paths"].as_object().unwrap().keys().cloned().collect()
    };
    let served = |doc: &Value| -> BTreeSet<String> {
        operations()
            .into_iter()
            .filter(|(t, _)| doc["paths"].get(*t).is_some())
            .map(|(t, _)| t.to_owned())
            .collect()
    };
    for (proc, tags) in [
        (&command, vec![openapi::TAG_WRITES, openapi::TAG_OPERATIONS]),
        (&query, vec![openapi::TAG_READS, openapi::TAG_OPERATIONS]),
    ] {
        let doc = conforms(call(&proc.url, "GET", "/openapi.json", None, 0).await).json();
        assert_eq!(doc, openapi::for_tags(&tags));
        assert!(paths(&doc).contains("/health"));
        // What the document leaves out, this binary does not serve.
        for (template, method) in operations() {
            let answer = call(
                &proc.url,
                &method.to_ascii_uppercase(),
                &sample(template),
                None,
                1,
            )
            .await;
            if served(&doc).contains(template) {
                conforms(answer);
            } else {
                assert_eq!(answer.status, 404, "{} {method} {template}", proc.url);
            }
        }
        other_methods_are_405(&proc.url, "/health").await;
    }
    let doc = conforms(call(&gw.url, "GET", "/openapi.json", None, 0).await).json();
    assert_eq!(doc, *document());
    let placed = conforms(call(&gw.url, "POST", "/buy/zed/101?qty=9", None, 0).await);
    assert_eq!(placed.status, 201);
    caught_up(&client(), &query.url).await;
    for (template, method) in operations() {
        conforms(
            call(
                &gw.url,
                &method.to_ascii_uppercase(),
                &sample(template),
                None,
                1,
            )
            .await,
        );
    }
    let book = conforms(call(&gw.url, "GET", "/orderbook?at=1", None, 0).await);
    assert_eq!(
        book.header("x-book-seq"),
        Some("1"),
        "passed through by the proxy"
    );
    for path in [
        "/health",
        "/",
        "/openapi.json",
        "/orderbook",
        "/buy/alice/1",
    ] {
        other_methods_are_405(&gw.url, path).await;
    }
}
