//! The write routes without a socket (`warp::test`): answers, errors and headers;
//! and hostile input: arbitrary paths and queries get a JSON 4xx and write nothing.

mod common;
use command_svc::http;
use command_svc::idempotency::IdempotencyIndex;
use command_svc::model::WriteModel;
use command_svc::storage::Storage;
use command_svc::writer::{self, DispatchError, FsyncMode, WriterOptions};
use common::*;
use shared_events::{LogCursor, Watermark};
use std::io;
use std::sync::{Arc, Mutex};

mod routes {
    use super::*;
    use warp::http::StatusCode;

    async fn request(
        routes: &warp::filters::BoxedFilter<(warp::reply::Response,)>,
        method: &str,
        path: &str,
    ) -> (StatusCode, serde_json::Value, Option<String>) {
        let res = warp::test::request()
            .method(method)
            .path(path)
            .reply(routes)
            .await;
        let seq = res
            .headers()
            .get("x-event-seq")
            .map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(res.headers()["content-type"], "application/json", "{path}");
        let body = serde_json::from_slice(res.body())
            .unwrap_or_else(|e| panic!("{path}: {e}: {:?}", res.body()));
        (res.status(), body, seq)
    }

    #[tokio::test]
    // One scenario, read top to bottom: its steps build on each other's state,
    // so it stays one function.
    async fn place_cancel_and_errors() {
        let (_dir, config) = files();
        let (handle, task) = command_svc::start(&config).unwrap();
        let routes = http::routes(handle.clone(), None);

        let (status, body, seq) = request(&routes, "POST", "/buy/dave/101?qty=7").await;
        assert_eq!(status, StatusCode::CREATED);
        assert_eq!(seq.as_deref(), Some("1"));
        assert_eq!(
            body["order"],
            serde_json::json!({"id": 3, "user": "dave", "side": "buy", "price": 101, "qty": 7})
        );
        assert_eq!(
            body["fills"],
            serde_json::json!([{"maker_id": 2, "maker_user": "bob", "price": 101, "qty": 5}])
        );
        assert_eq!(
            (body["resting_qty"].as_u64(), body["durable"].as_bool()),
            (Some(2), Some(true))
        );

        let (status, body, _) = request(&routes, "GET", "/sell/erin/200").await;
        assert_eq!(
            (status, body["order"]["qty"].as_u64()),
            (StatusCode::CREATED, Some(1)),
            "GET works, qty defaults to 1"
        );

        let (status, body, seq) = request(&routes, "POST", "/cancel/dave/3").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            body,
            serde_json::json!({"seq": 3, "market": "FOLD", "order_id": 3, "cancelled_qty": 2})
        );
        assert_eq!(seq.as_deref(), Some("3"));
        assert_eq!(
            request(&routes, "POST", "/cancel/dave/3").await.0,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            request(&routes, "POST", "/cancel/dave/1").await.0,
            StatusCode::FORBIDDEN
        );

        for bad in [
            "/buy/dave/0",
            "/buy/dave/1000000001",
            "/buy/dave/abc",
            "/buy/dave/-5",
            "/buy/dave/1.5",
            "/buy/dave/100?qty=0",
            "/buy/dave/100?qty=1000001",
            "/buy/dave/100?qty=x",
            "/buy/dave/100?qty=1&qty=2",
            "/buy/dave/100?qyt=3",
            "/buy/da%20ve/100",
            "/cancel/dave/zero",
            "/cancel/dave/0",
        ] {
            let (status, body, seq) = request(&routes, "POST", bad).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
            assert!(
                body["error"].as_str().is_some_and(|e| !e.is_empty()),
                "{bad}: {body}"
            );
            assert_eq!(seq, None);
        }
        let long_user = format!("/buy/{}/100", "u".repeat(65));
        assert_eq!(
            request(&routes, "POST", &long_user).await.0,
            StatusCode::BAD_REQUEST
        );

        assert_eq!(
            request(&routes, "GET", "/cancel/dave/1").await.0,
            StatusCode::METHOD_NOT_ALLOWED
        );
        assert_eq!(
            request(&routes, "DELETE", "/buy/dave/100").await.0,
            StatusCode::METHOD_NOT_ALLOWED
        );
        assert_eq!(
            request(&routes, "GET", "/nope").await.0,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            request(&routes, "POST", "/buy/dave").await.0,
            StatusCode::NOT_FOUND
        );

        let (status, health, _) = request(&routes, "GET", "/health").await;
        assert_eq!(
            (status, health["status"].as_str(), health["seq"].as_u64()),
            (StatusCode::OK, Some("ok"), Some(3))
        );
        assert_eq!(
            handle
                .stats
                .head_seq
                .load(std::sync::atomic::Ordering::Acquire),
            3,
            "rejections wrote nothing"
        );

        drop((routes, handle));
        task.shutdown().await.unwrap();
    }
}

mod hostile {
    use super::*;
    use proptest::prelude::*;

    /// A storage whose sync waits until released: the writer's queue fills up.
    #[derive(Clone)]
    struct StuckDisk(Arc<(Mutex<bool>, std::sync::Condvar)>);

    impl Storage for StuckDisk {
        fn append(&mut self, _: &[u8]) -> io::Result<()> {
            Ok(())
        }
        fn sync(&mut self) -> io::Result<()> {
            let (lock, cvar) = &*self.0;
            let _released = cvar
                .wait_while(lock.lock().unwrap(), |released| !*released)
                .unwrap();
            Ok(())
        }
        fn publish_durable(&mut self, _: Watermark) -> io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_writer_queue_answers_busy_at_once() {
        let gate = Arc::new((Mutex::new(false), std::sync::Condvar::new()));
        let model = WriteModel {
            book: genesis_book(),
            keys: IdempotencyIndex::new(0),
        };
        let options = WriterOptions {
            fsync: FsyncMode::Always,
            snapshots: None,
        };
        let (handle, task) =
            writer::spawn(model, StuckDisk(gate.clone()), LogCursor::start(), options);
        let total = writer::QUEUE_COMMANDS_MAX + writer::BATCH_EVENTS_MAX + 500;
        let tasks: Vec<_> = (0..total)
            .map(|i| {
                let h = handle.clone();
                tokio::spawn(async move { h.dispatch(buy("u", 1 + (i % 50) as u64, 1)).await })
            })
            .collect();
        // While the disk is stuck nothing can succeed; the overflow is answered anyway.
        let overflow = total - writer::QUEUE_COMMANDS_MAX - writer::BATCH_EVENTS_MAX;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while tasks.iter().filter(|t| t.is_finished()).count() < overflow {
            assert!(
                std::time::Instant::now() < deadline,
                "refusals did not come while the disk was stuck"
            );
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        *gate.0.lock().unwrap() = true;
        gate.1.notify_all();
        let (mut ok, mut busy) = (0, 0);
        for t in tasks {
            match t.await.unwrap() {
                Ok(_) => ok += 1,
                Err(DispatchError::Busy) => busy += 1,
                Err(e) => panic!("unexpected {e:?}"),
            }
        }
        assert!(
            busy >= overflow,
            "at least the overflow is refused, got {busy} busy"
        );
        assert_eq!(ok + busy, total);
        assert!(
            ok >= writer::QUEUE_COMMANDS_MAX,
            "queued commands are all answered: {ok}"
        );
        drop(handle);
        task.shutdown().await.unwrap();
    }

    fn arb_segment() -> impl Strategy<Value = String> {
        // Arbitrary bytes, percent-encoded as a client would send them, plus the
        // raw characters validation must reject.
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..80)
                .prop_map(|b| b.iter().map(|c| format!("%{c:02X}")).collect::<String>()),
            "[A-Za-z0-9._~!$&'()*+,;=:@%-]{0,80}",
            "[0-9]{1,25}",
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// Whatever the path and query, the answer is a success or a 4xx with a JSON
        /// error, never a panic or a 5xx, and a 4xx writes nothing.
        #[test]
        fn arbitrary_requests_get_json_4xx_and_write_nothing(
            route in prop_oneof![Just("buy"), Just("sell"), Just("cancel")],
            user in arb_segment(),
            second in arb_segment(),
            query in "[A-Za-z0-9._~!$&'()*+,;=:@/?%-]{0,60}",
            method in prop_oneof![Just("POST"), Just("GET"), Just("PUT")],
        ) {
            let path = format!("/{route}/{user}/{second}?{query}");
            // What no HTTP client can send is not a request.
            prop_assume!(warp::http::Uri::try_from(path.as_str()).is_ok());
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                let (_dir, config) = files();
                let (handle, task) = command_svc::start(&config).unwrap();
                let routes = http::routes(handle.clone(), None);
                let res = warp::test::request().method(method).path(&path).reply(&routes).await;
                let status = res.status().as_u16();
                assert!(status < 500, "{method} {path}: {status}");
                if status >= 400 {
                    let body: serde_json::Value = serde_json::from_slice(res.body()).expect("a JSON error body");
                    assert!(body["error"].is_string(), "{body}");
                    assert_eq!(handle.stats.head_seq.load(std::sync::atomic::Ordering::Acquire), 0, "{path} wrote");
                }
                drop((routes, handle));
                task.shutdown().await.unwrap();
            });
        }
    }
}
