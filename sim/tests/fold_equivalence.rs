//! The two folds agree. For random command sequences, the write side decides and
//! applies events and writes them as log lines; the read side folds the decoded log.
//! Then: the read side's book equals the write side's book, order statuses agree,
//! replaying the log from genesis rebuilds the write side's book exactly, and both
//! sides' incrementally kept digests agree with each other and with a fresh one.
//! And snapshots: both sides' models, encoded as snapshot bodies at a random point
//! and decoded, equal the originals and fold the rest of the log to the same state.

use command_svc::book::Book;
use command_svc::command::{Command, OrderOptions};
use command_svc::model::WriteModel;
use proptest::prelude::*;
use query_svc::projection::{ReadModel, Status};
use shared_events::{BookState, Envelope, LogCursor, SCHEMA_VERSION, Side, Stp, TimeInForce};

fn genesis() -> BookState {
    BookState::parse(include_str!("../../init.txt")).unwrap()
}

/// The shipped genesis with accounts on (`init-accounts.txt`).
fn funded_genesis() -> BookState {
    BookState::parse(include_str!("../../init-accounts.txt")).unwrap()
}

/// [`arb_command`], and deposits and withdrawals of every asset.
fn arb_funded_command() -> impl Strategy<Value = Command> {
    let user = prop_oneof![Just("alice"), Just("bob"), Just("zed")].prop_map(String::from);
    let assets = funded_genesis().assets();
    prop_oneof![
        6 => arb_command(),
        1 => (user, 0..assets.len(), 1u64..5_000, any::<bool>()).prop_map(move |(user, a, amount, deposit)| {
            let asset = assets[a];
            if deposit {
                Command::Deposit { user, asset, amount, idempotency_key: None }
            } else {
                Command::Withdraw { user, asset, amount, idempotency_key: None }
            }
        }),
    ]
}

/// Orders in each market of the shipped init.txt, priced around its book.
fn arb_command() -> impl Strategy<Value = Command> {
    let user = prop_oneof![Just("alice"), Just("bob"), Just("zed")].prop_map(String::from);
    let side = prop_oneof![Just(Side::Buy), Just(Side::Sell)];
    let markets = genesis().markets;
    assert_eq!(markets.len(), 3, "the shipped init.txt's markets");
    // Mid prices of the three books.
    const MIDS: [u64; 3] = [100, 250, 1200];
    let symbols: Vec<shared_events::Symbol> = markets.iter().map(|m| m.symbol).collect();
    // Every order type: time in force, post-only, market orders, self-trade prevention.
    let options = (0u8..12, 0u8..4).prop_map(|(kind, stp)| {
        let stp = [
            Stp::None,
            Stp::CancelTaker,
            Stp::CancelMaker,
            Stp::CancelBoth,
        ][usize::from(stp)];
        match kind {
            0 => OrderOptions {
                tif: TimeInForce::Ioc,
                stp,
                ..OrderOptions::default()
            },
            1 => OrderOptions {
                tif: TimeInForce::Fok,
                stp,
                ..OrderOptions::default()
            },
            2 => OrderOptions {
                post_only: true,
                ..OrderOptions::default()
            },
            3 => OrderOptions {
                market: true,
                max_cost: Some(20_000),
                stp,
                ..OrderOptions::default()
            },
            _ => OrderOptions {
                stp,
                ..OrderOptions::default()
            },
        }
    });
    prop_oneof![
        4 => (user.clone(), side, 0usize..3, 0u64..=11, 1u64..=25, options).prop_map(move |(user, side, m, offset, qty, options)| {
            let price = match (options.market, side) {
                (true, Side::Buy) => 1_000_000_000,
                (true, Side::Sell) => 1,
                _ => MIDS[m] - 5 + offset,
            };
            let options = OrderOptions { max_cost: options.max_cost.filter(|_| side == Side::Buy), ..options };
            Command::Place { market: markets[m].symbol, user, side, price, qty, options, idempotency_key: None }
        }),
        1 => (user.clone(), 1u64..=60).prop_map(|(user, order_id)| Command::Cancel { user, order_id, idempotency_key: None }),
        1 => (user.clone(), 1u64..=60, 1u64..=25, proptest::option::of(0usize..12)).prop_map(|(user, order_id, qty, offset)| Command::Amend {
            user, order_id, qty, price: offset.map(|o| 95 + o as u64), idempotency_key: None
        }),
        1 => (user, proptest::option::of(0usize..3)).prop_map(move |(user, m)| Command::CancelAll { user, market: m.map(|m| symbols[m]), idempotency_key: None }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn read_fold_of_the_log_equals_the_write_book(cmds in proptest::collection::vec(arb_command(), 0..120)) {
        folds_agree(genesis(), cmds)?;
    }

    /// The same with accounts on: balances, holds and settlements agree too.
    #[test]
    fn with_accounts_the_folds_agree_on_every_balance(cmds in proptest::collection::vec(arb_funded_command(), 0..120)) {
        folds_agree(funded_genesis(), cmds)?;
    }
}

fn folds_agree(genesis: BookState, cmds: Vec<Command>) -> Result<(), TestCaseError> {
    {
        let mut book = Book::from_state(&genesis);
        let mut log = Vec::new();
        let mut seq = 0;
        for cmd in &cmds {
            if let Ok(event) = book.decide(cmd) {
                book.apply(&event).unwrap();
                seq += 1;
                shared_events::encode_into(
                    &mut log,
                    &Envelope {
                        seq,
                        ts_us: seq,
                        v: SCHEMA_VERSION,
                        event,
                    },
                );
            }
        }

        let mut read = ReadModel::from_state(&genesis, 0);
        let mut replayed = Book::from_state(&genesis);
        let report = shared_events::scan(&log[..], LogCursor::start(), |env, _| {
            read.apply(&env).unwrap();
            replayed.apply(&env.event).unwrap();
        })
        .unwrap();
        prop_assert_eq!(report.cursor.next_seq, seq + 1);
        prop_assert_eq!(report.torn, None);

        let write_state = book.to_state();
        prop_assert_eq!(&read.to_state(book.next_order_id()), &write_state);
        prop_assert_eq!(&replayed, &book);
        prop_assert_eq!(read.digest(), book.digest(), "the two sides' digests agree");
        prop_assert!(
            read.market_digests().eq(book.market_digests()),
            "per market too"
        );
        let recomputed = Book::from_state(&write_state).digest();
        prop_assert_eq!(
            book.digest(),
            recomputed,
            "the incremental digest equals a fresh one"
        );
        for entry in read.orders.views(&read.markets) {
            let resting = book.resting_qty(entry.id);
            prop_assert_eq!(
                entry.status == Status::Resting,
                resting.is_some(),
                "order {}",
                entry.id
            );
            if let Some(qty) = resting {
                prop_assert_eq!(entry.qty - entry.filled_qty, qty, "order {}", entry.id);
            }
        }
        prop_assert_eq!(read.accounts.is_some(), book.accounts().is_some());
        if let (Some(read), Some(write)) = (&read.accounts, book.accounts()) {
            prop_assert_eq!(read.sorted(), write.sorted(), "every balance agrees");
            prop_assert_eq!(read.digest(), write.digest());
            for ((asset, r), (a, w)) in read.totals().zip(write.totals()) {
                prop_assert_eq!(asset, a);
                prop_assert_eq!((r.available, r.held), (w.available, w.held));
            }
        }
    }
    Ok(())
}

/// The read models agree: the same book, digest, orders, user lists and trades.
fn assert_same_read_model(a: &ReadModel, b: &ReadModel, next_order_id: u64) {
    assert_eq!(a.seq, b.seq);
    assert_eq!(a.digest(), b.digest());
    assert_eq!(a.to_state(next_order_id), b.to_state(next_order_id));
    assert_eq!(a.orders.views(&a.markets), b.orders.views(&b.markets));
    assert!(a.market_digests().eq(b.market_digests()));
    assert_eq!(a.user_orders.len(), b.user_orders.len());
    for entry in a.user_orders.iter() {
        assert_eq!(
            Some(entry.value()),
            b.user_orders.get(entry.key()).as_deref()
        );
    }
    assert_eq!(*a.trades.read().unwrap(), *b.trades.read().unwrap());
    // The accounts, their totals (deposited and withdrawn too) included.
    assert_eq!(a.accounts, b.accounts);
    let (va, vb) = (a.book_view(), b.book_view());
    for m in 0..a.markets.len() {
        assert_eq!(va.json(m), vb.json(m));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(100))]

    #[test]
    fn snapshots_round_trip_and_fold_on_alike(
        cmds in proptest::collection::vec(arb_funded_command(), 0..120),
        cut in any::<prop::sample::Index>(),
        kept in 0usize..8,
        funded in any::<bool>(),
    ) {
        // Both bodies with and without accounts.
        let genesis = if funded { funded_genesis() } else { genesis() };
        let mut book = Book::from_state(&genesis);
        let mut events = Vec::new();
        for cmd in &cmds {
            if let Ok(event) = book.decide(cmd) {
                book.apply(&event).unwrap();
                let seq = events.len() as u64 + 1;
                events.push(Envelope { seq, ts_us: seq, v: SCHEMA_VERSION, event });
            }
        }
        let cut = cut.index(events.len() + 1);
        let mut write = WriteModel { book: Book::from_state(&genesis), keys: command_svc::idempotency::IdempotencyIndex::new(10) };
        let mut read = ReadModel::from_state(&genesis, 0);
        read.keep_finished(kept);
        for env in &events[..cut] {
            write.apply(env).unwrap();
            read.apply(env).unwrap();
        }
        let mut write_loaded = command_svc::checkpoint::decode(&command_svc::checkpoint::encode(&write), 10).unwrap();
        // As the tailer encodes it, and as the snapshot writer puts it in id order.
        let mut body = read.encode();
        let mut read_loaded = ReadModel::decode(&body, cut as u64).unwrap();
        read_loaded.keep_finished(kept);
        ReadModel::sort_body(&mut body).unwrap();
        let mut read_sorted = ReadModel::decode(&body, cut as u64).unwrap();
        read_sorted.keep_finished(kept);
        assert_same_read_model(&read_sorted, &read, write.book.next_order_id());
        // Retention: every resting order, at most `kept` finished ones.
        let views = read.orders.views(&read.markets);
        let resting = views.iter().filter(|o| o.status == Status::Resting).count();
        prop_assert_eq!(resting, write.book.to_state().orders.len());
        prop_assert!(views.len() - resting <= kept);
        prop_assert_eq!(&write_loaded, &write);
        assert_same_read_model(&read_loaded, &read, write.book.next_order_id());
        for env in &events[cut..] {
            write.apply(env).unwrap();
            write_loaded.apply(env).unwrap();
            read.apply(env).unwrap();
            read_loaded.apply(env).unwrap();
        }
        prop_assert_eq!(&write_loaded.book, &book);
        prop_assert_eq!(&write_loaded, &write);
        assert_same_read_model(&read_loaded, &read, book.next_order_id());
    }

    /// A snapshot body with any one byte changed is refused or decodes to a model
    /// that still checks out; never a panic. (The file's CRC catches the change
    /// first in practice; this is the decoder's own defence.)
    #[test]
    fn damaged_snapshot_bodies_never_panic(
        cmds in proptest::collection::vec(arb_command(), 0..60),
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
    ) {
        let genesis = genesis();
        let mut write = WriteModel { book: Book::from_state(&genesis), keys: command_svc::idempotency::IdempotencyIndex::new(10) };
        let mut read = ReadModel::from_state(&genesis, 0);
        for cmd in &cmds {
            if let Ok(event) = write.book.decide(cmd) {
                let env = Envelope { seq: read.seq + 1, ts_us: 1, v: SCHEMA_VERSION, event };
                write.apply(&env).unwrap();
                read.apply(&env).unwrap();
            }
        }
        for mut body in [command_svc::checkpoint::encode(&write), read.encode()] {
            let i = at.index(body.len());
            body[i] = byte;
            let _ = command_svc::checkpoint::decode(&body, 10);
            let _ = ReadModel::decode(&body, read.seq);
            if ReadModel::sort_body(&mut body).is_ok() {
                let _ = ReadModel::decode(&body, read.seq);
            }
        }
    }
}
