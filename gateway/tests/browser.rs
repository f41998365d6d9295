//! Black box in a real browser: the web UI (`GET /`, `gateway/src/index.html`) in
//! headless Chromium, driven over WebDriver by chromedriver, against the real
//! `gateway` binary on a free port, in combined mode and in proxy mode.
//!
//! The combined scenario: a page places an order with its form (typed keys, a real
//! click) and sees it in the ladder; a second browser session sees the event arrive
//! live over Server-Sent Events and its ladder follow; a sell fills it and both show
//! the trade; the time-travel slider, moved with the keyboard, shows older books (at
//! 0 without the new order) and the way back to live; rejected orders show the
//! server's error text; focus is visible on a control reached with Tab; a phone-sized
//! window has no horizontal scrolling; the page loads nothing from another origin.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`/usr/bin/chromium`,
//! `/usr/bin/chromedriver`, or `CHROMIUM` / `CHROMEDRIVER`); `scripts/test.sh` installs
//! them. Without them the tests fail, saying so: they never skip. Every wait is
//! bounded polling of a condition, and a failure names the condition and what the
//! page showed last. chromedriver runs in a process group of its own, killed at the
//! end with every browser it started.
//!
//! `cargo test -p gateway --test browser -- --ignored screenshot` rewrites
//! `docs/ui.png`, the README's picture.

use fantoccini::key::Key;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use test_support::*;

/// Longest wait for anything the page should show.
const WAIT: Duration = Duration::from_secs(20);
/// Pause between two looks at the page while waiting.
const POLL: Duration = Duration::from_millis(50);
/// Longest wait for chromedriver to answer `/status`.
const DRIVER_START_TIMEOUT: Duration = Duration::from_secs(20);
/// Tries at starting chromedriver (its port, picked free, may be taken meanwhile).
const DRIVER_START_TRIES: usize = 3;
/// Chromium's flags: headless, and no connection to anywhere (this machine refuses
/// outside connections, and a browser test must not depend on them).
const CHROMIUM_FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1280,1000",
];

fn program(env: &str, default: &str) -> PathBuf {
    let path = PathBuf::from(std::env::var(env).unwrap_or_else(|_| default.to_owned()));
    assert!(
        path.exists(),
        "{} is not installed: run scripts/test.sh, which installs Debian's chromium and \
         chromium-driver (or: apt-get install chromium chromium-driver; {env}=PATH picks another)",
        path.display()
    );
    path
}

/// A chromedriver in its own process group, on a free port.
struct Driver {
    /// chromedriver, the leader of its process group.
    child: Child,
    /// Where it answers WebDriver requests.
    url: String,
    /// Its log and the browsers' profiles.
    dir: tempfile::TempDir,
    /// The browser it starts.
    chromium: PathBuf,
    /// Sessions so far, naming each one's fresh profile directory.
    sessions: usize,
}

impl Driver {
    fn start() -> Driver {
        let chromium = program("CHROMIUM", "/usr/bin/chromium");
        let chromedriver = program("CHROMEDRIVER", "/usr/bin/chromedriver");
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("chromedriver.log");
        for _ in 0..DRIVER_START_TRIES {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let mut child = {
                use std::os::unix::process::CommandExt;
                Command::new(&chromedriver)
                    .arg(format!("--port={port}"))
                    .arg(format!("--log-path={}", log.display()))
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .process_group(0)
                    .spawn()
                    .unwrap_or_else(|e| panic!("starting {}: {e}", chromedriver.display()))
            };
            if ready(&mut child, port) {
                return Driver {
                    child,
                    url: format!("http://127.0.0.1:{port}"),
                    dir,
                    chromium,
                    sessions: 0,
                };
            }
        }
        panic!(
            "chromedriver did not start in {DRIVER_START_TRIES} tries; its log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    /// A new browser with a fresh profile.
    async fn session(&mut self) -> Client {
        self.sessions += 1;
        let profile = self.dir.path().join(format!("profile-{}", self.sessions));
        let mut args: Vec<String> = CHROMIUM_FLAGS.iter().map(|f| f.to_string()).collect();
        args.push(format!("--user-data-dir={}", profile.display()));
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": self.chromium, "args": args },
        });
        let caps = caps.as_object().unwrap().clone();
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&self.url)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "no browser session: {e}; chromedriver's log:\n{}",
                    self.log()
                )
            })
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("chromedriver.log")).unwrap_or_default()
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // The whole group: chromedriver and every browser process it started.
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.child.wait();
    }
}

/// Waits (bounded) until chromedriver answers 200 on `/status`; false when it
/// exited meanwhile (its port was taken), so another port can be tried.
fn ready(child: &mut Child, port: u16) -> bool {
    use std::io::{Read, Write};
    let deadline = Instant::now() + DRIVER_START_TIMEOUT;
    while Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        let answer = std::net::TcpStream::connect(("127.0.0.1", port)).and_then(|mut s| {
            s.set_read_timeout(Some(Duration::from_secs(2)))?;
            s.write_all(b"GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")?;
            // The status line is enough (chromedriver may keep the connection open).
            let mut answer = [0; 12];
            s.read_exact(&mut answer)?;
            Ok(answer)
        });
        if answer.is_ok_and(|a| &a == b"HTTP/1.1 200") {
            return true;
        }
        std::thread::sleep(POLL);
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("chromedriver did not answer on port {port} within {DRIVER_START_TIMEOUT:?}");
}

/// One browser session with a name for messages.
struct Page {
    /// Says which page a failure is about.
    name: &'static str,
    client: Client,
}

impl Page {
    async fn open(driver: &mut Driver, name: &'static str, url: &str) -> Page {
        let client = driver.session().await;
        client
            .goto(url)
            .await
            .unwrap_or_else(|e| panic!("{name}: opening {url}: {e}"));
        Page { name, client }
    }

    /// The value of a JavaScript expression on the page.
    async fn js(&self, expression: &str, args: Vec<Value>) -> Value {
        self.client
            .execute(&format!("return ({expression});"), args)
            .await
            .unwrap_or_else(|e| panic!("{}: {expression}: {e}", self.name))
    }

    /// The text of the first element that matches `selector`, or null.
    async fn text(&self, selector: &str) -> Value {
        self.js(
            "document.querySelector(arguments[0])?.textContent ?? null",
            vec![json!(selector)],
        )
        .await
    }

    /// Polls `expression` until `done` holds, at most [`WAIT`]; panics naming `what`
    /// and the last value.
    async fn wait_js(
        &self,
        what: &str,
        expression: &str,
        args: Vec<Value>,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let last = self.js(expression, args.clone()).await;
            if done(&last) {
                return last;
            }
            if Instant::now() > deadline {
                let caption = self.text("#book-caption").await;
                let result = self.text("#order-result").await;
                panic!(
                    "{}: {what}: not within {WAIT:?}; last value: {last}\n  book caption: {caption}\n  order result: {result}\n  ladder: {}",
                    self.name,
                    self.ladder().await
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits until the text of `selector` satisfies `done`; returns it.
    async fn wait_text(&self, what: &str, selector: &str, done: impl Fn(&str) -> bool) -> String {
        let value = self
            .wait_js(
                what,
                "document.querySelector(arguments[0])?.textContent ?? null",
                vec![json!(selector)],
                |v| v.as_str().is_some_and(&done),
            )
            .await;
        value.as_str().unwrap().to_owned()
    }

    /// The ladder as `side price: cells` lines, top to bottom.
    async fn ladder(&self) -> Value {
        self.js(
            "[...document.querySelectorAll('#ladder tr[data-side]')].map(r => \
             `${r.dataset.side} ${r.dataset.price}: ${[...r.cells].map(c => c.textContent).join(' ').trim()}`)",
            vec![],
        )
        .await
    }

    /// The cells' texts of the first row that matches `selector`, space-separated.
    async fn cells(&self, selector: &str) -> Value {
        self.js(
            "[...(document.querySelector(arguments[0])?.cells ?? [])].map(c => c.textContent).join(' ')",
            vec![json!(selector)],
        )
        .await
    }

    /// The ladder row of one price level, as `qty (orders)`, or null when absent.
    fn level(side: &str, price: u64) -> String {
        format!("#ladder tr[data-side=\"{side}\"][data-price=\"{price}\"] td.{side}qty")
    }

    /// Waits until the level at `price` on `side` shows `expected` (`"qty (orders)"`),
    /// or is absent when `expected` is None.
    async fn wait_level(&self, what: &str, side: &str, price: u64, expected: Option<&str>) {
        let selector = Page::level(side, price);
        self.wait_js(
            what,
            "document.querySelector(arguments[0])?.textContent ?? null",
            vec![json!(selector)],
            |v| v.as_str() == expected,
        )
        .await;
    }

    /// Waits until the page has its first book and an open event stream.
    async fn wait_loaded(&self) {
        self.wait_text("the ladder is loaded", "#book-caption", |t| {
            t.starts_with("Live")
        })
        .await;
        self.wait_js(
            "the event stream is open",
            "document.getElementById('conn').dataset.state",
            vec![],
            |v| v == "live",
        )
        .await;
    }

    async fn find(&self, selector: &str) -> fantoccini::elements::Element {
        self.client
            .find(Locator::Css(selector))
            .await
            .unwrap_or_else(|e| panic!("{}: no {selector}: {e}", self.name))
    }

    /// Replaces the text of an input by typing, as a person would.
    async fn type_into(&self, selector: &str, text: &str) {
        let input = self.find(selector).await;
        input.clear().await.unwrap();
        input.send_keys(text).await.unwrap();
    }

    /// Fills the order form and clicks Buy or Sell.
    async fn place(&self, side: &str, user: &str, price: &str, qty: &str) {
        self.type_into("#user", user).await;
        self.type_into("#price", price).await;
        self.type_into("#qty", qty).await;
        self.find(&format!("#{side}"))
            .await
            .click()
            .await
            .unwrap_or_else(|e| panic!("{}: clicking {side}: {e}", self.name));
    }

    /// Places an order the server rejects; checks the page shows the server's message.
    async fn rejected(&self, base: &str, (user, price, qty): (&str, &str, &str), path: &str) {
        let answer = client().post(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(answer.status(), 400, "{path}");
        let body: Value = answer.json().await.unwrap();
        let message = body["error"].as_str().unwrap().to_owned();
        assert!(!message.is_empty());
        self.place("buy", user, price, qty).await;
        let shown = self
            .wait_text(
                &format!("the server's error for {path}: {message:?}"),
                "#order-result",
                |t| t.contains(&message),
            )
            .await;
        assert!(shown.starts_with("Rejected (400)"), "{shown}");
        let class = self
            .find("#order-result")
            .await
            .attr("class")
            .await
            .unwrap();
        assert_eq!(class.as_deref(), Some("result error"), "{shown}");
    }

    async fn close(self) {
        self.client
            .close()
            .await
            .unwrap_or_else(|e| panic!("{}: closing: {e}", self.name));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// One scenario, read top to bottom: its steps build on each other's state,
// so it stays one function.
async fn the_web_ui_in_combined_mode() {
    let started = Instant::now();
    let dir = workdir();
    let gw = Proc::start("gateway", dir.path(), &[]);
    let base = gw.url.as_str();

    // The page as served: HTML, this origin only, the route list inside.
    let answer = client().get(base).send().await.unwrap();
    assert_eq!(answer.status(), 200);
    let header = |name: &str| answer.headers()[name].to_str().unwrap().to_owned();
    assert_eq!(header("content-type"), "text/html; charset=utf-8");
    assert!(header("content-security-policy").contains("default-src 'none'"));
    let html = answer.text().await.unwrap();
    assert!(html.contains("/orderbook?at=N") && html.contains("openapi.json"));

    let mut driver = Driver::start();
    let a = Page::open(&mut driver, "first page", base).await;
    let b = Page::open(&mut driver, "second page", base).await;
    for page in [&a, &b] {
        page.wait_loaded().await;
        // init.txt's book: bids 99 (10) and 98 (5), asks 101 (7) and 102 (12).
        page.wait_level("alice's bid from init.txt", "bid", 99, Some("10 (1)"))
            .await;
        page.wait_level("frank's ask from init.txt", "ask", 102, Some("12 (1)"))
            .await;
        page.wait_text("the applied seq from /health", "#stat-applied", |t| {
            t == "0"
        })
        .await;
        assert_eq!(page.js("document.title", vec![]).await, "foldbook");
        // The inline style ran too (the policy names its hash, as the script's).
        let display = page
            .js(
                "getComputedStyle(document.querySelector('main')).display",
                vec![],
            )
            .await;
        assert_eq!(display, "grid", "{}: the page's style applies", page.name);
    }
    let rows = a.ladder().await;
    assert_eq!(
        rows,
        json!([
            "ask 102: 102 12 (1)",
            "ask 101: 101 7 (1)",
            "bid 99: 10 (1) 99",
            "bid 98: 5 (1) 98"
        ]),
        "asks highest on top, the spread between best ask and best bid"
    );
    assert_eq!(a.text("#ladder tr.spread").await, "spread 2");

    // A buy placed with the form rests in the ladder, on both pages; the second one
    // learns of it from the event stream.
    a.place("buy", "uitest", "100", "3").await;
    a.wait_text("the order is placed", "#order-result", |t| {
        t.starts_with("Placed order 5 (event 1)")
    })
    .await;
    a.wait_level("the new bid in the ladder", "bid", 100, Some("3 (1)"))
        .await;
    let event = b
        .wait_text(
            "event 1 in the second page's feed",
            "#feed li[data-seq=\"1\"] summary",
            |t| !t.is_empty(),
        )
        .await;
    assert_eq!(
        event,
        "#1 OrderPlaced uitest buy 3 @ 100 (order 5): rests 3"
    );
    b.wait_level("the new bid on the second page", "bid", 100, Some("3 (1)"))
        .await;
    b.wait_text("the applied seq", "#stat-applied", |t| t == "1")
        .await;
    b.wait_text("the durable seq", "#stat-durable", |t| t == "1")
        .await;
    b.wait_text("the lag", "#stat-lag", |t| t.ends_with(" ms"))
        .await;
    let raw = b
        .text("#feed li[data-seq=\"1\"] pre")
        .await
        .as_str()
        .map(|t| serde_json::from_str::<Value>(t).unwrap());
    assert_eq!(raw.unwrap()["event"]["data"]["order"]["user"], "uitest");

    // A sell fills 2 of it: the trade shows on both pages, the bid shrinks.
    a.place("sell", "seller1", "99", "2").await;
    a.wait_text("the sell is placed", "#order-result", |t| {
        t.contains("filled 2, resting 0")
    })
    .await;
    for page in [&a, &b] {
        let row = "#trades tr[data-seq=\"2\"]";
        page.wait_text("the trade in recent trades", row, |t| !t.is_empty())
            .await;
        // seq, price (the resting bid's), qty, buyer, seller.
        assert_eq!(
            page.cells(row).await,
            "2 100 2 uitest seller1",
            "{}",
            page.name
        );
        page.wait_level("the bid after the fill", "bid", 100, Some("1 (1)"))
            .await;
    }
    b.wait_text("event 2 in the feed", "#feed li:first-child summary", |t| {
        t == "#2 OrderPlaced seller1 sell 2 @ 99 (order 6): filled 2 in 1 fill"
    })
    .await;

    // Time travel with the keyboard: Home is event 0, the right arrow one event on.
    let slider = a.find("#travel").await;
    assert_eq!(slider.prop("max").await.unwrap().as_deref(), Some("2"));
    slider.send_keys(&Key::Home).await.unwrap();
    a.wait_text("the book at seq 0", "#book-caption", |t| {
        t.starts_with("History: the book right after event 0")
    })
    .await;
    a.wait_level("no new bid at seq 0", "bid", 100, None).await;
    a.wait_level("init.txt's bid at seq 0", "bid", 99, Some("10 (1)"))
        .await;
    assert_eq!(a.text("#travel-out").await, "seq 0");
    let spoken = slider.attr("aria-valuetext").await.unwrap();
    assert_eq!(
        spoken.as_deref(),
        Some("seq 0"),
        "what a screen reader says"
    );
    slider.send_keys(&Key::Right).await.unwrap();
    a.wait_text("the book at seq 1", "#book-caption", |t| {
        t.starts_with("History: the book right after event 1")
    })
    .await;
    a.wait_level("the whole bid at seq 1", "bid", 100, Some("3 (1)"))
        .await;
    // An event while looking at history: the feed goes on, the book stays put.
    client()
        .post(format!("{base}/sell/late/150?qty=4"))
        .send()
        .await
        .unwrap();
    a.wait_text("event 3 in the feed", "#feed li:first-child", |t| {
        t.starts_with("#3 OrderPlaced late sell 4 @ 150")
    })
    .await;
    assert!(
        a.text("#book-caption")
            .await
            .as_str()
            .unwrap()
            .starts_with("History: the book right after event 1"),
        "history stays while events arrive"
    );
    assert_eq!(a.text(&Page::level("ask", 150)).await, Value::Null);
    // Tab reaches "Back to live", which shows where focus is; Enter goes live.
    slider.send_keys(&Key::Tab).await.unwrap();
    let focus = a
        .js(
            "(() => { const e = document.activeElement, s = getComputedStyle(e); \
             return [e.id, e.matches(':focus-visible'), s.outlineStyle, parseFloat(s.outlineWidth)]; })()",
            vec![],
        )
        .await;
    assert_eq!(focus[0], "live", "Tab from the slider: {focus}");
    assert_eq!(focus[1], true, "{focus}");
    assert_ne!(focus[2], "none", "a visible focus outline: {focus}");
    assert!(focus[3].as_f64().unwrap() >= 2.0, "{focus}");
    a.client
        .active_element()
        .await
        .unwrap()
        .send_keys(&Key::Enter)
        .await
        .unwrap();
    a.wait_text("live again", "#book-caption", |t| t.starts_with("Live"))
        .await;
    a.wait_level("the ask placed during history", "ask", 150, Some("4 (1)"))
        .await;
    a.wait_level("the bid, live", "bid", 100, Some("1 (1)"))
        .await;
    assert_eq!(a.text("#travel-out").await, "live");

    // Rejected orders show the server's message and change nothing.
    a.rejected(base, ("no one", "100", "1"), "/buy/no%20one/100")
        .await;
    a.rejected(base, ("uitest", "0", "1"), "/buy/uitest/0")
        .await;
    a.rejected(base, ("uitest", "100", "abc"), "/buy/uitest/100?qty=abc")
        .await;
    let health = get_json(&client(), &format!("{base}/health")).await;
    assert_eq!(
        health["durable_seq"], 3,
        "rejections wrote nothing: {health}"
    );

    // A phone-sized window: one column, nothing wider than the screen.
    a.client.set_window_size(390, 844).await.unwrap();
    let layout = a
        .wait_js(
            "a one-column layout without horizontal scrolling",
            "(() => { const r = (id) => document.getElementById(id).getBoundingClientRect(); \
             return [document.documentElement.scrollWidth, window.innerWidth, \
                     Math.round(r('book').left), Math.round(r('place').left), r('place').top > r('book').bottom - 1]; })()",
            vec![],
            |v| v[0].as_f64() <= v[1].as_f64() && v[2] == v[3] && v[4] == true,
        )
        .await;
    assert!(layout[1].as_f64().unwrap() <= 390.0, "{layout}");

    // Nothing came from another origin.
    let foreign = a
        .js(
            "performance.getEntriesByType('resource').map(e => e.name).filter(n => !n.startsWith(location.origin + '/'))",
            vec![],
        )
        .await;
    assert_eq!(foreign, json!([]), "resources from elsewhere");

    a.close().await;
    b.close().await;
    drop(driver);
    eprintln!("browser test (combined) took {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_ui_in_proxy_mode() {
    let started = Instant::now();
    let dir = workdir();
    let command = Proc::start("command-svc", dir.path(), &[]);
    let query = Proc::start("query-svc", dir.path(), &[]);
    let gw = Proc::start_proxy(dir.path(), &command, &[&query]);
    let mut driver = Driver::start();
    let page = Page::open(&mut driver, "proxied page", &gw.url).await;
    page.wait_loaded().await;
    page.wait_level("alice's bid from init.txt", "bid", 99, Some("10 (1)"))
        .await;

    page.place("buy", "viaproxy", "100", "2").await;
    page.wait_text("the order is placed", "#order-result", |t| {
        t.starts_with("Placed order 5 (event 1)")
    })
    .await;
    page.wait_level("the new bid", "bid", 100, Some("2 (1)"))
        .await;
    page.wait_text("event 1 in the feed", "#feed li[data-seq=\"1\"]", |t| {
        t.contains("viaproxy buy 2 @ 100")
    })
    .await;
    // Proxy mode's /health has command-svc's durable seq and no replica lag.
    page.wait_text("the durable seq", "#stat-durable", |t| t == "1")
        .await;
    page.wait_text("the applied seq", "#stat-applied", |t| t == "1")
        .await;
    assert_eq!(page.text("#stat-lag").await, "n/a");

    page.find("#travel")
        .await
        .send_keys(&Key::Home)
        .await
        .unwrap();
    page.wait_level("no new bid at seq 0", "bid", 100, None)
        .await;
    page.find("#live").await.click().await.unwrap();
    page.wait_level("the bid, live", "bid", 100, Some("2 (1)"))
        .await;
    page.rejected(&gw.url, ("viaproxy", "0", "1"), "/buy/viaproxy/0")
        .await;

    page.close().await;
    drop(driver);
    eprintln!("browser test (proxy) took {:?}", started.elapsed());
}

/// The market picker on the shipped init.txt (three markets): the URL remembers the
/// choice, the ladder, trades, chart and feed show the chosen market only, an order
/// placed from the page goes to it, and a live event of another market leaves the
/// page alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_ui_switches_markets() {
    let dir = workdir();
    std::fs::write(dir.path().join("init.txt"), include_str!("../../init.txt")).unwrap();
    let gw = Proc::start("gateway", dir.path(), &[]);
    let mut driver = Driver::start();
    let page = Page::open(
        &mut driver,
        "markets page",
        &format!("{}/?market=ACME", gw.url),
    )
    .await;
    page.wait_loaded().await;
    assert_eq!(
        page.js("document.getElementById('market').value", vec![])
            .await,
        "ACME",
        "the URL's market is chosen"
    );
    page.wait_level("mallory's ACME ask", "ask", 252, Some("5 (1)"))
        .await;
    assert_eq!(
        page.text(&Page::level("bid", 99)).await,
        Value::Null,
        "no FOLD level"
    );

    // An order from the page goes to the market on show, and trades there.
    page.place("buy", "zed", "252", "2").await;
    page.wait_text("the ACME order is placed", "#order-result", |t| {
        t.starts_with("Placed order 16 (event 1)")
    })
    .await;
    page.wait_level("mallory's ask, 2 taken", "ask", 252, Some("3 (1)"))
        .await;
    page.wait_text("the trade in the chart", "#chart-caption", |t| {
        t.contains("last 1 trade") && t.contains("last 252")
    })
    .await;
    page.wait_text("event 1 in the feed", "#feed li[data-seq=\"1\"]", |t| {
        t.contains("zed buy 2 @ 252")
    })
    .await;

    // A live event of another market changes nothing on this page.
    let other = post_json(&client(), &format!("{}/buy/ann/100", gw.url)).await;
    assert_eq!(other["market"], "FOLD");
    let bolt = post_json(&client(), &format!("{}/markets/ACME/sell/bob/260", gw.url)).await;
    page.wait_text("the ACME event after it", "#feed li[data-seq=\"3\"]", |t| {
        t.contains("bob sell 1 @ 260")
    })
    .await;
    assert_eq!(bolt["seq"], 3);
    assert_eq!(
        page.js("document.querySelector('#feed li[data-seq=\"2\"]')", vec![])
            .await,
        Value::Null,
        "the FOLD event is not in ACME's feed"
    );

    // Switching: the other market's book, trades and feed; the URL remembers it.
    page.js(
        "(() => { const s = document.getElementById('market'); s.value = 'FOLD'; s.dispatchEvent(new Event('change')); return true; })()",
        vec![],
    )
    .await;
    page.wait_level("alice's and dave's FOLD bids", "bid", 99, Some("13 (2)"))
        .await;
    page.wait_level("ann's FOLD bid", "bid", 100, Some("1 (1)"))
        .await;
    assert_eq!(page.text(&Page::level("ask", 252)).await, Value::Null);
    page.wait_text(
        "FOLD's event in the feed",
        "#feed li[data-seq=\"2\"]",
        |t| t.contains("ann buy 1 @ 100"),
    )
    .await;
    page.wait_text("FOLD has no trades", "#chart-caption", |t| {
        t.contains("no trades yet")
    })
    .await;
    assert_eq!(
        page.js("new URLSearchParams(location.search).get('market')", vec![])
            .await,
        "FOLD"
    );
    page.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// One scenario, read top to bottom: its steps build on each other's state,
// so it stays one function.
async fn the_web_ui_shows_your_balances_and_deposits() {
    let dir = workdir();
    std::fs::write(
        dir.path().join("init.txt"),
        include_str!("../../init-accounts.txt"),
    )
    .unwrap();
    let gw = Proc::start("gateway", dir.path(), &[]);
    let mut driver = Driver::start();
    let page = Page::open(
        &mut driver,
        "accounts page",
        &format!("{}/?user=zed", gw.url),
    )
    .await;
    page.wait_loaded().await;
    page.wait_text("zed has no account", "#account-caption", |t| {
        t.contains("zed has no account yet")
    })
    .await;
    assert_eq!(
        page.js("document.getElementById('user').value", vec![])
            .await,
        "zed",
        "the order form acts for you"
    );

    // Without money, the server's refusal is shown as it says it.
    page.place("buy", "zed", "101", "3").await;
    let shown = page
        .wait_text("the refusal", "#order-result", |t| {
            t.starts_with("Rejected")
        })
        .await;
    assert!(
        shown.contains("Rejected (422): insufficient funds: 303 USD needed, 0 available"),
        "{shown}"
    );

    // A deposit from the page opens the account.
    page.js(
        "(() => { const s = document.getElementById('deposit-asset'); s.value = 'USD'; return s.value; })()",
        vec![],
    )
    .await;
    page.type_into("#deposit-amount", "1000").await;
    page.find("#deposit").await.click().await.unwrap();
    page.wait_text("the deposit", "#deposit-result", |t| {
        t.starts_with("Deposited 1000 USD for zed (event 1)")
    })
    .await;
    page.wait_text("zed's USD", "#balances tr[data-asset=\"USD\"]", |t| {
        t.contains("1000") && t.ends_with('0')
    })
    .await;

    // An order holds and settles; a bid resting holds at its limit.
    page.place("buy", "zed", "101", "3").await;
    page.wait_text("the buy", "#order-result", |t| {
        t.starts_with("Placed order 16 (event 2)")
    })
    .await;
    page.place("buy", "zed", "100", "2").await;
    page.wait_text("the bid", "#order-result", |t| {
        t.starts_with("Placed order 17 (event 3)")
    })
    .await;
    let usd = page
        .wait_text(
            "zed's USD after both",
            "#balances tr[data-asset=\"USD\"]",
            |t| t.contains("497") && t.contains("200"),
        )
        .await;
    assert!(usd.starts_with("USD"), "{usd}");
    page.wait_text("zed's FOLD", "#balances tr[data-asset=\"FOLD\"]", |t| {
        t.contains('3')
    })
    .await;

    // A deposit made elsewhere (of no market, so not in this market's feed) shows
    // up in the balances as the applied seq moves on.
    let elsewhere = client()
        .post(format!("{}/deposit/zed/EUR/5", gw.url))
        .send()
        .await
        .unwrap();
    assert_eq!(elsewhere.status(), 200);
    page.wait_text("zed's EUR", "#balances tr[data-asset=\"EUR\"]", |t| {
        t.contains('5')
    })
    .await;
    page.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// One scenario, read top to bottom: its steps build on each other's state,
// so it stays one function.
async fn the_web_ui_places_every_order_type_and_amends_and_cancels_open_orders() {
    let dir = workdir();
    std::fs::write(dir.path().join("init.txt"), include_str!("../../init.txt")).unwrap();
    let gw = Proc::start("gateway", dir.path(), &[]);
    let mut driver = Driver::start();
    let page = Page::open(
        &mut driver,
        "order types page",
        &format!("{}/?user=zed", gw.url),
    )
    .await;
    page.wait_loaded().await;
    page.wait_text("zed has none", "#open-caption", |t| {
        t.contains("zed has no resting orders")
    })
    .await;
    let choose = |id: &'static str, value: &'static str| {
        format!(
            "(() => {{ const s = document.getElementById('{id}'); s.value = '{value}'; return s.value; }})()"
        )
    };

    // IOC: 9 fill at 101, 1 cancelled, nothing rests.
    page.js(&choose("tif", "ioc"), vec![]).await;
    page.place("buy", "zed", "101", "10").await;
    page.wait_text("the IOC", "#order-result", |t| {
        t.starts_with("Placed order 16 (event 1)") && t.contains("filled 9, resting 0, cancelled 1")
    })
    .await;
    // A post-only order at the touch is refused as the server says.
    page.js(&choose("tif", "gtc"), vec![]).await;
    page.find("#post-only").await.click().await.unwrap();
    page.place("buy", "zed", "102", "1").await;
    let shown = page
        .wait_text("the post-only refusal", "#order-result", |t| {
            t.starts_with("Rejected")
        })
        .await;
    assert!(
        shown.starts_with("Rejected (409)") && shown.contains("post-only"),
        "{shown}"
    );
    // ... and below it, it rests: one open order with Amend and Cancel.
    page.place("buy", "zed", "100", "4").await;
    page.wait_text("the post-only bid", "#order-result", |t| {
        t.starts_with("Placed order 17 (event 2)")
    })
    .await;
    page.find("#post-only").await.click().await.unwrap();
    page.wait_text(
        "zed's open order",
        "#open-orders tr[data-order=\"17\"]",
        |t| t.contains("100") && t.contains('4'),
    )
    .await;

    // A market order: takes any price, never rests.
    page.find("#market-order").await.click().await.unwrap();
    // The price field is disabled for a market order: only the quantity is typed.
    page.type_into("#qty", "3").await;
    page.find("#buy").await.click().await.unwrap();
    page.wait_text("the market buy", "#order-result", |t| {
        t.starts_with("Placed order 18 (event 3)")
            && t.contains("at market")
            && t.contains("filled 3")
    })
    .await;
    page.find("#market-order").await.click().await.unwrap();

    // Amend the open order from its row: a new price, a new id.
    let row = "#open-orders tr[data-order=\"17\"]";
    page.type_into(&format!("{row} .amend-qty"), "2").await;
    page.type_into(&format!("{row} .amend-price"), "98").await;
    page.find(&format!("{row} .amend"))
        .await
        .click()
        .await
        .unwrap();
    page.wait_text("the amend", "#open-result", |t| {
        t.starts_with("Amended order 17 (event 4), now order 19")
    })
    .await;
    let moved = "#open-orders tr[data-order=\"19\"]";
    page.wait_text("the amended order", moved, |t| {
        t.contains("98") && t.contains('2')
    })
    .await;
    page.wait_text("the amend in the feed", "#feed li[data-seq=\"4\"]", |t| {
        t.contains("zed amended order 17 to 2 @ 98 (now order 19)")
    })
    .await;
    // And cancel it.
    page.find(&format!("{moved} .cancel"))
        .await
        .click()
        .await
        .unwrap();
    page.wait_text("the cancel", "#open-result", |t| {
        t.starts_with("Cancelled order 19 (event 5)")
    })
    .await;
    page.wait_text("none open", "#open-caption", |t| {
        t.contains("zed has no resting orders")
    })
    .await;
    page.close().await;
}

/// Rewrites `docs/ui.png` (the README's picture): a book with some orders, trades
/// and events. Run on purpose: `cargo test -p gateway --test browser -- --ignored screenshot`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "writes docs/ui.png; run it on purpose"]
async fn screenshot() {
    let dir = workdir();
    let gw = Proc::start("gateway", dir.path(), &[]);
    let base = gw.url.as_str();
    let http = client();
    for path in [
        "/buy/carol/100?qty=4",
        "/sell/dave/103?qty=6",
        "/buy/zed/101?qty=3",
        "/sell/yan/99?qty=2",
        "/buy/alice/97?qty=8",
        "/sell/bob/104?qty=9",
        "/buy/erin/100?qty=5",
        "/sell/frank/105?qty=3",
        "/cancel/alice/1",
        "/buy/gus/102?qty=4",
        "/sell/hal/101?qty=2",
    ] {
        let answer = http.post(format!("{base}{path}")).send().await.unwrap();
        assert!(answer.status().is_success(), "{path}: {}", answer.status());
    }
    let mut driver = Driver::start();
    let page = Page::open(&mut driver, "screenshot page", base).await;
    page.client.set_window_size(1200, 1040).await.unwrap();
    page.wait_loaded().await;
    page.wait_js(
        "the feed shows the history",
        "document.querySelectorAll('#feed li').length",
        vec![],
        |v| v == 11,
    )
    .await;
    page.place("buy", "ivy", "103", "7").await;
    page.wait_text("the order is placed", "#order-result", |t| {
        t.starts_with("Placed")
    })
    .await;
    page.wait_text("the applied seq", "#stat-applied", |t| t == "12")
        .await;
    page.wait_text("the lag", "#stat-lag", |t| t.ends_with(" ms"))
        .await;
    let png = page.client.screenshot().await.unwrap();
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/ui.png");
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    std::fs::write(&out, &png).unwrap();
    assert!(png.len() < 300 * 1024, "{} bytes", png.len());
    page.close().await;
}
