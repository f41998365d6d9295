//! # shared-events
//!
//! The one crate `command-svc` and `query-svc` share: the event vocabulary, the log
//! line codec, the book-state schema, and the two small files both sides agree on
//! (snapshots, the durable watermark), plus the API's OpenAPI document, which both
//! serve. It holds no I/O runtime and no HTTP code: types, pure functions, data, and
//! plain `std` file access.
//!
//! ## Layout
//!
//! - [`auth`]: the bearer-token table of `--auth-file`.
//! - [`domain`]: `Order`, `Side`, `Fill`, value bounds and validators.
//! - [`accounts`]: balances, holds, the balance changes events record.
//! - [`event`]: the events (`OrderPlaced`, `OrderCancelled`, `Deposited`, `Withdrawn`) and the [`Envelope`].
//! - [`codec`]: one envelope <-> one checksummed line; log scanning and recovery rules.
//! - [`state`]: the genesis (`init.txt`) / snapshot book state.
//! - [`snapshot`]: checkpoint files: format, atomic write, newest-valid load.
//! - [`interner`]: one shared copy of each user name, swept of unused ones.
//! - [`binary`]: the byte encoding of snapshot bodies (integers, strings, a user table).
//! - [`source`]: the read interface to a log ([`LogRead`]: length, bytes at an
//!   offset, where a line starts) and its file implementation.
//! - [`location`]: where the log is (`--log`): a file, or a NATS JetStream stream.
//! - [`watermark`]: the durable watermark side file (`<log>.durable`).
//! - [`openapi`]: the HTTP API's OpenAPI document (`openapi.json`), which every
//!   binary serves, as data.
//!
//! ## Log format (`log.txt`), schema version 4
//!
//! The log is [JSON Lines](https://jsonlines.org): UTF-8, one event envelope per line,
//! each line terminated by a single `\n` (0x0A). Lines are only ever appended.
//!
//! ```text
//! {"seq":1,"ts_us":1795333664700544,"v":4,"event":{"type":"OrderPlaced","data":{"market":"FOLD","order":{"id":16,"user":"zed","side":"buy","price":101,"qty":8},"fills":[{"maker_id":5,"maker_user":"erin","price":101,"qty":7},{"maker_id":8,"maker_user":"heidi","price":101,"qty":1}],"resting_qty":0}},"crc":"eb281727"}
//! {"seq":2,"ts_us":1795333664711391,"v":4,"event":{"type":"OrderPlaced","data":{"market":"FOLD","order":{"id":17,"user":"yan","side":"sell","price":99,"qty":1},"fills":[{"maker_id":1,"maker_user":"alice","price":99,"qty":1}],"resting_qty":0}},"crc":"1f18ed28"}
//! {"seq":3,"ts_us":1795333664720340,"v":4,"event":{"type":"OrderCancelled","data":{"market":"FOLD","order_id":1,"user":"alice","cancelled_qty":9}},"crc":"a5b630ce"}
//! ```
//!
//! Members, in this order (writers emit exactly this order; readers parse JSON):
//!
//! | member  | type   | meaning |
//! |---------|--------|---------|
//! | `seq`   | u64    | position in the log; the first line is 1, each next line is the previous + 1 |
//! | `ts_us` | u64    | commit time, microseconds since the Unix epoch, writer's clock |
//! | `v`     | u32    | the schema version the line was written with: this build writes `4` and reads `1` to `4` (see *Schema versions*) |
//! | `event` | object | `{"type": <name>, "data": <fields>}`, see below |
//! | `crc`   | string | CRC-32C (Castagnoli) of the line's bytes, always last |
//!
//! (Those three lines follow the shipped `init.txt`, in its default market `FOLD`: a
//! buy sweeping two asks, a sell hitting a bid, and a cancel. A test decodes them,
//! so this example stays valid.)
//!
//! `event.type` is `OrderPlaced` (`data`: `market`, the market's symbol; `order` {id,
//! user, side `buy`/`sell`, price, qty}, `fills` [{maker_id, maker_user, price, qty}] in
//! execution order, `resting_qty`, optional `idempotency_key`) or `OrderCancelled`
//! (`data`: `market`, `order_id`, `user`, `cancelled_qty`, optional `idempotency_key`).
//! An `OrderPlaced` holds the complete outcome of matching, so a reader applies
//! recorded facts and never re-runs matching.
//!
//! **With accounts on** ([`accounts`]), `OrderPlaced` and `OrderCancelled` also carry
//! `balances`: every balance the event changed, once per user and asset, as
//! `{user, asset, available, held}` with signed changes (an order's hold, each fill's
//! settlement at the trade price, a buyer's released difference; a cancel's release).
//! Two more events move money in and out: `Deposited` and `Withdrawn` (`data`:
//! `user`, `asset`, `amount`, optional `idempotency_key`; of no market). A deposit,
//! then a buy of 9 at 102 that takes 7 from erin at 101 and rests 2:
//!
//! ```text
//! {"seq":1,"ts_us":1795333664700544,"v":4,"event":{"type":"Deposited","data":{"user":"zed","asset":"USD","amount":5000,"idempotency_key":"top-up-1"}},"crc":"25f24904"}
//! {"seq":2,"ts_us":1795333664711391,"v":4,"event":{"type":"OrderPlaced","data":{"market":"FOLD","order":{"id":16,"user":"zed","side":"buy","price":102,"qty":9},"fills":[{"maker_id":5,"maker_user":"erin","price":101,"qty":7}],"resting_qty":2,"balances":[{"user":"zed","asset":"USD","available":-911,"held":204},{"user":"zed","asset":"FOLD","available":7,"held":0},{"user":"erin","asset":"FOLD","available":0,"held":-7},{"user":"erin","asset":"USD","available":707,"held":0}]}},"crc":"75c72396"}
//! ```
//!
//! (zed's USD: 9 × 102 = 918 held at first, 7 × 101 = 707 paid to erin, 7 × 1
//! released, 2 × 102 = 204 still held for the 2 resting.)
//!
//! **Order types** (version 4). `OrderPlaced` also records, each left out when it
//! has its default: `tif` (`gtc`, `ioc`, `fok`), `post_only`, `stp` (`none`,
//! `cancel_taker`, `cancel_maker`, `cancel_both`), `market_order` (its
//! `order.price` is then the bound it matched up to) with `max_cost`, `unfilled_qty`
//! (what was cancelled instead of resting; fills + `resting_qty` + `unfilled_qty` =
//! `order.qty`) and `cancelled_makers` [{order_id, user, qty}] (self-trade
//! prevention's). `OrderAmended` (`data`: `market`, `order_id`, `user`, `side`,
//! `price`, `qty` before, `new_price`, `new_qty`, `new_order_id` when the order lost
//! its place, `fills`, `resting_qty`, `balances`, `idempotency_key`) and
//! `OrdersCancelled` (`data`: `market` when one was named, `user`, `orders`
//! [{market, order_id, qty}], `balances`, `idempotency_key`) are the amend and the
//! cancel-all.
//!
//! **Checksum.** Every line ends with exactly the 18 bytes `,"crc":"XXXXXXXX"}` where
//! `XXXXXXXX` is 8 lowercase hex digits. They are the CRC-32C of all the bytes of the
//! line before that suffix (from the opening `{` up to, not including, `,"crc":`).
//! Uppercase hex, another position of `crc`, or a missing `crc` is invalid. With jq:
//! `jq -c '.event.type' log.txt` works, since the line is plain JSON.
//!
//! **Reading.** A reader splits on `\n`, verifies the suffix and CRC, parses the JSON,
//! checks `v`, and checks that `seq` is the expected next one. A line is at most
//! [`codec::LINE_BYTES_MAX`] bytes.
//!
//! **Torn tail vs corruption.** A crash during an append can leave a partial last line
//! (no `\n`) or, after a power loss, a last line with garbage. Such a tail was never
//! acknowledged (acknowledgement follows `fdatasync`), so recovery cuts it off and says
//! how many bytes it dropped. A bad line with anything after it cannot be the result
//! of a torn append: it is corruption, and recovery refuses to start, naming the line
//! number, byte offset and the seq it should have had. So is a bad last line that is
//! two valid lines (the expected seq and the next) joined by one byte where a newline
//! was: a torn append loses only the end of what it wrote, never a newline inside it.
//! Nothing is ever skipped.
//!
//! **On NATS JetStream** (`--log nats://HOST:PORT/STREAM`, see [`location`]) the log
//! is a stream whose message N is line N without its newline, byte for byte, and
//! whose stream sequence is the line's `seq`. Byte offsets are those the same lines
//! would have in a file (each line plus its newline, from seq 1), computed by the
//! reader; a message is stored whole or not at all, so a bad last message is
//! corruption, never a torn tail.
//!
//! ## Schema versions
//!
//! | `v` | what changed |
//! |-----|--------------|
//! | 1   | the first schema: one market, events do not name it |
//! | 2   | every event's `data` starts with `market` ([`market::Symbol`]) |
//! | 3   | accounts: `balances` on orders and cancels; `Deposited`, `Withdrawn` |
//! | 4   | order types: `tif`, `post_only`, `stp`, `market_order`, `max_cost`, `unfilled_qty`, `cancelled_makers` on `OrderPlaced`; `OrderAmended`, `OrdersCancelled` |
//!
//! A line is never rewritten: its CRC covers the bytes as written. A reader meets a
//! line of an older version through the chain of upcasters in [`upcast`] (each a
//! pure function from version N's event JSON to N+1's), applied when the line is
//! decoded; a line of a version newer than the build is refused, naming the version.
//! Version 1 lines are in [`market::DEFAULT_MARKET`] (`FOLD`); version 1 and 2 lines
//! changed no balance; a version 1 to 3 order was a good-till-cancelled limit order
//! without self-trade prevention. These three decode as the first example line
//! above says:
//!
//! ```text
//! {"seq":1,"ts_us":1795333664700544,"v":1,"event":{"type":"OrderPlaced","data":{"order":{"id":16,"user":"zed","side":"buy","price":101,"qty":8},"fills":[{"maker_id":5,"maker_user":"erin","price":101,"qty":7},{"maker_id":8,"maker_user":"heidi","price":101,"qty":1}],"resting_qty":0}},"crc":"1813a225"}
//! {"seq":1,"ts_us":1795333664700544,"v":2,"event":{"type":"OrderPlaced","data":{"market":"FOLD","order":{"id":16,"user":"zed","side":"buy","price":101,"qty":8},"fills":[{"maker_id":5,"maker_user":"erin","price":101,"qty":7},{"maker_id":8,"maker_user":"heidi","price":101,"qty":1}],"resting_qty":0}},"crc":"0362290f"}
//! {"seq":1,"ts_us":1795333664700544,"v":3,"event":{"type":"OrderPlaced","data":{"market":"FOLD","order":{"id":16,"user":"zed","side":"buy","price":101,"qty":8},"fills":[{"maker_id":5,"maker_user":"erin","price":101,"qty":7},{"maker_id":8,"maker_user":"heidi","price":101,"qty":1}],"resting_qty":0}},"crc":"d3daf1ac"}
//! ```
//!
//! **The rule for every later change:** record a fixture with the build before the
//! change (`gateway/tests/fixtures/`), raise [`SCHEMA_VERSION`], add the upcaster
//! from the previous version to the chain, and keep every older fixture passing. How
//! to write an upcaster: [`upcast`].
//!
//! ## Book state (`init.txt`, snapshots)
//!
//! A JSON object: `markets` (optional: each `symbol`, `base`, `quote`; the first is
//! the default market), `next_order_id` (u64, order ids are global across markets)
//! and `orders`, the resting orders in time-priority order, ids strictly increasing,
//! each naming its `market`; see [`state`].

pub mod accounts;
pub mod auth;
pub mod binary;
pub mod codec;
pub mod domain;
pub mod event;
pub mod interner;
pub mod location;
pub mod market;
pub mod openapi;
pub mod snapshot;
pub mod source;
pub mod state;
pub mod upcast;
pub mod watermark;

pub use codec::{
    BadLine, LineError, LineHead, LogCursor, ScanError, ScanReport, TornTail, decode_line, encode,
    encode_into, peek_head, scan, scan_until,
};
pub use domain::{CancelledOrder, Fill, InvalidValue, Order, Side, Stp, TimeInForce};
pub use event::{CANCELS_PER_EVENT_MAX, Envelope, Event, MarketOrder, SCHEMA_VERSION};
pub use location::{JetStreamUrl, LogLocation};
pub use market::{DEFAULT_MARKET, Symbol};
pub use source::{FileLog, LogRead};
pub use state::{BookState, StateError};
pub use watermark::Watermark;

#[cfg(test)]
mod spec_tests {
    /// The example lines in the crate docs above are real, valid log lines: the
    /// current version's are exactly what the writer emits, and the version 1 line
    /// decodes, through the upcasters, to the first of them.
    #[test]
    fn documented_example_lines_decode() {
        let docs = include_str!("lib.rs");
        let lines: Vec<String> = docs
            .lines()
            .filter_map(|l| l.strip_prefix("//! {\"seq\""))
            .map(|rest| format!("{{\"seq\"{rest}"))
            .collect();
        assert_eq!(lines.len(), 8);
        let (current, accounts, older) = (&lines[..3], &lines[3..5], &lines[5..]);
        for line in accounts {
            let env = crate::decode_line(line.as_bytes()).unwrap();
            assert_eq!(crate::encode(&env), format!("{line}\n").into_bytes());
            crate::accounts::conserves(match &env.event {
                crate::Event::OrderPlaced { balances, .. } => balances,
                _ => &[],
            })
            .unwrap();
        }
        let mut log = String::new();
        for line in current {
            let env = crate::decode_line(line.as_bytes()).unwrap();
            assert_eq!(env.v, crate::SCHEMA_VERSION);
            assert_eq!(crate::encode(&env), format!("{line}\n").into_bytes());
            log.push_str(line);
            log.push('\n');
        }
        let mut kinds = Vec::new();
        let report = crate::scan(log.as_bytes(), crate::LogCursor::start(), |e, _| {
            kinds.push(e.event.kind())
        })
        .unwrap();
        assert_eq!(report.torn, None);
        assert_eq!(kinds, ["OrderPlaced", "OrderPlaced", "OrderCancelled"]);
        let first = crate::decode_line(current[0].as_bytes()).unwrap();
        for (v, line) in (1..).zip(older) {
            let old = crate::decode_line(line.as_bytes()).unwrap();
            assert_eq!((old.v, &old.event), (v, &first.event));
            assert_eq!(old.event.market(), Some(crate::DEFAULT_MARKET));
        }
    }
}
