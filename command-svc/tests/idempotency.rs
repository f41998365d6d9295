//! Idempotency keys through the routes: a retry gets its first answer, a conflicting
//! reuse 409, also after restarts and for concurrent duplicates.

mod common;
use command_svc::command::Command;
use command_svc::writer::FsyncMode;
use command_svc::{Config, http};
use common::*;
use shared_events::Side;

mod idempotency {
    use super::*;

    async fn send(
        routes: &warp::filters::BoxedFilter<(warp::reply::Response,)>,
        path: &str,
        key: &str,
    ) -> (u16, serde_json::Value) {
        let res = warp::test::request()
            .method("POST")
            .path(path)
            .header("idempotency-key", key)
            .reply(routes)
            .await;
        (
            res.status().as_u16(),
            serde_json::from_slice(res.body()).unwrap(),
        )
    }

    fn log_lines(config: &Config) -> usize {
        std::fs::read(config.log.file().unwrap())
            .unwrap()
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
    }

    #[tokio::test]
    async fn a_retry_gets_the_first_answer_also_after_a_restart() {
        let (_dir, config) = files();
        let (handle, task) = command_svc::start(&config).unwrap();
        let routes = http::routes(handle.clone(), None);
        let (status, first) = send(&routes, "/buy/dave/101?qty=7", "order-1").await;
        assert_eq!(status, 201, "{first}");
        let (status, again) = send(&routes, "/buy/dave/101?qty=7", "order-1").await;
        assert_eq!(
            (status, &again),
            (201, &first),
            "same seq, same order, same fills"
        );
        let (status, cancel) = send(&routes, "/cancel/dave/3", "cancel-1").await;
        assert_eq!(status, 200, "{cancel}");
        let (status, cancel_again) = send(&routes, "/cancel/dave/3", "cancel-1").await;
        assert_eq!(
            (status, &cancel_again),
            (200, &cancel),
            "not a 404: the first answer"
        );
        let (status, conflict) = send(&routes, "/buy/dave/102?qty=7", "order-1").await;
        assert_eq!(status, 409, "{conflict}");
        let (status, bad) = send(&routes, "/buy/dave/101", "has space").await;
        assert_eq!(status, 400, "{bad}");
        assert_eq!(log_lines(&config), 2, "retries and conflicts write nothing");
        drop((routes, handle));
        task.shutdown().await.unwrap();

        // After a restart, from the snapshot the clean stop wrote...
        let (handle, task) = command_svc::start(&config).unwrap();
        let routes = http::routes(handle.clone(), None);
        assert_eq!(
            send(&routes, "/buy/dave/101?qty=7", "order-1").await,
            (201, first.clone())
        );
        drop((routes, handle));
        task.shutdown().await.unwrap();
        // ...and from replaying the log alone.
        std::fs::remove_dir_all(config.snapshot_dir()).unwrap();
        let (handle, task) = command_svc::start(&config).unwrap();
        let routes = http::routes(handle.clone(), None);
        assert_eq!(
            send(&routes, "/buy/dave/101?qty=7", "order-1").await,
            (201, first)
        );
        assert_eq!(
            send(&routes, "/cancel/dave/3", "cancel-1").await,
            (200, cancel)
        );
        assert_eq!(log_lines(&config), 2);
        drop((routes, handle));
        task.shutdown().await.unwrap();
    }

    #[tokio::test]
    async fn concurrent_duplicates_write_once() {
        let disk = FakeDisk::default();
        let (handle, task) = spawn_on(&disk, FsyncMode::Always);
        let cmd = Command::Place {
            options: Default::default(),
            market: shared_events::DEFAULT_MARKET,
            user: "u".into(),
            side: Side::Buy,
            price: 90,
            qty: 1,
            idempotency_key: Some("same".into()),
        };
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let (h, c) = (handle.clone(), cmd.clone());
                tokio::spawn(async move { h.dispatch(c).await.unwrap() })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.unwrap().seq(), 1);
        }
        let lines: usize = disk
            .inner
            .lock()
            .unwrap()
            .appends
            .iter()
            .map(|a| a.iter().filter(|&&b| b == b'\n').count())
            .sum();
        assert_eq!(lines, 1);
        task.shutdown().await.unwrap();
    }
}
