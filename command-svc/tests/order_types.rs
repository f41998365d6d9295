//! Order types on the write side, given/when/then: time in force (IOC, FOK),
//! post-only, market orders (with `max_cost`), self-trade prevention in each mode,
//! amends and cancel-all, with their edge cases; then property tests over random
//! mixes of all of them, with accounts on: the book never rests crossed, every
//! order's quantity adds up, an IOC, FOK or market order never rests, money is
//! conserved and held exactly by resting orders, and replay and snapshots agree.

use command_svc::book::Book;
use command_svc::command::{Command, OrderOptions, Rejection};
use proptest::prelude::*;
use shared_events::accounts::{Asset, Balance};
use shared_events::binary::{BodyReader, BodyWriter};
use shared_events::{BookState, Event, Side, Stp, Symbol, TimeInForce};

const FOLD: Symbol = Symbol::from_static("FOLD");
const ACME: Symbol = Symbol::from_static("ACME");
const USD: Asset = Symbol::from_static("USD");

/// Two markets; asks at 101 (id 1, bob, 5) and 102 (id 2, carol, 5), a bid at 99
/// (id 3, bob, 5); with accounts, everyone funded.
fn genesis(accounts: bool) -> BookState {
    let funds = r#", "accounts": {
        "alice": {"USD": 100000, "FOLD": 100, "ACME": 100},
        "bob": {"USD": 100000, "FOLD": 100, "ACME": 100},
        "carol": {"USD": 100000, "FOLD": 100, "ACME": 100}
    }"#;
    BookState::parse(&format!(
        r#"{{
        "markets": [
            {{"symbol": "FOLD", "base": "FOLD", "quote": "USD"}},
            {{"symbol": "ACME", "base": "ACME", "quote": "USD"}}
        ],
        "next_order_id": 4,
        "orders": [
            {{"id": 1, "market": "FOLD", "user": "bob", "side": "sell", "price": 101, "qty": 5}},
            {{"id": 2, "market": "FOLD", "user": "carol", "side": "sell", "price": 102, "qty": 5}},
            {{"id": 3, "market": "FOLD", "user": "bob", "side": "buy", "price": 99, "qty": 5}}
        ]{}
    }}"#,
        if accounts { funds } else { "" }
    ))
    .unwrap()
}

fn order(user: &str, side: Side, price: u64, qty: u64, options: OrderOptions) -> Command {
    Command::Place {
        market: FOLD,
        user: user.into(),
        side,
        price,
        qty,
        options,
        idempotency_key: None,
    }
}

fn tif(tif: TimeInForce) -> OrderOptions {
    OrderOptions {
        tif,
        ..OrderOptions::default()
    }
}

fn stp(stp: Stp) -> OrderOptions {
    OrderOptions {
        stp,
        ..OrderOptions::default()
    }
}

fn market_order(max_cost: Option<u64>) -> OrderOptions {
    OrderOptions {
        market: true,
        max_cost,
        ..OrderOptions::default()
    }
}

fn when(book: &mut Book, cmd: Command) -> Result<Event, Rejection> {
    let event = book.decide(&cmd)?;
    book.apply(&event).expect("a decided event fits");
    Ok(event)
}

/// A refusal that changes nothing: the book is as it was.
fn refused(book: &mut Book, cmd: Command) -> Rejection {
    let before = book.clone();
    let rejection = when(book, cmd).unwrap_err();
    assert!(*book == before, "a refused command changes nothing");
    rejection
}

/// (fills as (maker, qty), resting, unfilled, cancelled makers) of an OrderPlaced.
fn outcome(event: &Event) -> (Vec<(u64, u64)>, u64, u64, Vec<u64>) {
    let Event::OrderPlaced {
        fills,
        resting_qty,
        unfilled_qty,
        cancelled_makers,
        ..
    } = event
    else {
        panic!("not an OrderPlaced: {event:?}")
    };
    (
        fills.iter().map(|f| (f.maker_id, f.qty)).collect(),
        *resting_qty,
        *unfilled_qty,
        cancelled_makers.iter().map(|c| c.order_id).collect(),
    )
}

fn balance(book: &Book, user: &str, asset: Asset) -> Balance {
    book.accounts().unwrap().balance(user, asset)
}

#[test]
fn ioc_fills_what_it_can_and_cancels_the_rest_in_one_event() {
    let mut book = Book::from_state(&genesis(true));
    let e = when(
        &mut book,
        order("alice", Side::Buy, 101, 8, tif(TimeInForce::Ioc)),
    )
    .unwrap();
    assert_eq!(outcome(&e), (vec![(1, 5)], 0, 3, vec![]));
    assert_eq!(book.resting_qty(4), None, "an IOC never rests");
    // 808 held, 505 paid, the rest released at once.
    assert_eq!(
        balance(&book, "alice", USD),
        Balance {
            available: 100000 - 505,
            held: 0
        }
    );
    // An IOC that finds nothing: 409, nothing written.
    let r = refused(
        &mut book,
        order("alice", Side::Buy, 100, 1, tif(TimeInForce::Ioc)),
    );
    assert!(
        matches!(&r, Rejection::Unchanged(m) if m.contains("immediate-or-cancel")),
        "{r}"
    );
    assert_eq!(r.status(), 409);
}

#[test]
fn fok_fills_entirely_or_not_at_all() {
    let mut book = Book::from_state(&genesis(true));
    let r = refused(
        &mut book,
        order("alice", Side::Buy, 102, 11, tif(TimeInForce::Fok)),
    );
    assert!(
        matches!(&r, Rejection::Unchanged(m) if m.contains("could fill only 10")),
        "{r}"
    );
    // Exactly fillable: 5 at 101 and 5 at 102.
    let e = when(
        &mut book,
        order("alice", Side::Buy, 102, 10, tif(TimeInForce::Fok)),
    )
    .unwrap();
    assert_eq!(outcome(&e), (vec![(1, 5), (2, 5)], 0, 0, vec![]));
    assert_eq!(balance(&book, "alice", USD).held, 0);
}

#[test]
fn post_only_rests_or_is_refused_at_the_touch() {
    let mut book = Book::from_state(&genesis(false));
    let post = OrderOptions {
        post_only: true,
        ..OrderOptions::default()
    };
    let r = refused(&mut book, order("alice", Side::Buy, 101, 1, post));
    assert!(
        matches!(&r, Rejection::Unchanged(m) if m.contains("best ask is at 101")),
        "{r}"
    );
    let e = when(&mut book, order("alice", Side::Buy, 100, 2, post)).unwrap();
    assert_eq!(outcome(&e), (vec![], 2, 0, vec![]));
    let r = refused(&mut book, order("alice", Side::Sell, 99, 1, post));
    assert!(matches!(r, Rejection::Unchanged(_)));
}

#[test]
fn market_orders_take_any_price_never_rest_and_spend_at_most_max_cost() {
    let mut book = Book::from_state(&genesis(true));
    let needs = refused(
        &mut book,
        order("alice", Side::Buy, 1_000_000_000, 3, market_order(None)),
    );
    assert_eq!(needs, Rejection::MaxCostNeeded);
    // 12 wanted, 1000 to spend: 5 at 101 (505), then only 4 of the 5 at 102 fit
    // (408): 9 filled for 913, the other 3 cancelled.
    let e = when(
        &mut book,
        order(
            "alice",
            Side::Buy,
            1_000_000_000,
            12,
            market_order(Some(1000)),
        ),
    )
    .unwrap();
    assert_eq!(outcome(&e), (vec![(1, 5), (2, 4)], 0, 3, vec![]));
    assert_eq!(
        balance(&book, "alice", USD),
        Balance {
            available: 100000 - 913,
            held: 0
        },
        "what was not spent went back"
    );
    // A market sell takes the best bid; nothing left on that side is 409.
    let e = when(
        &mut book,
        order("carol", Side::Sell, 1, 7, market_order(None)),
    )
    .unwrap();
    assert_eq!(outcome(&e), (vec![(3, 5)], 0, 2, vec![]));
    let r = refused(
        &mut book,
        order("carol", Side::Sell, 1, 1, market_order(None)),
    );
    assert!(
        matches!(&r, Rejection::Unchanged(m) if m.contains("market order found nothing")),
        "{r}"
    );
}

#[test]
fn self_trade_prevention_in_each_mode() {
    // bob has the ask at 101 (id 1); carol's at 102 (id 2) comes after.
    let at = |mode| {
        let mut book = Book::from_state(&genesis(true));
        let e = when(&mut book, order("bob", Side::Buy, 102, 8, stp(mode)));
        (book, e)
    };
    let (_, none) = at(Stp::None);
    assert_eq!(
        outcome(&none.unwrap()),
        (vec![(1, 5), (2, 3)], 0, 0, vec![]),
        "self-trades allowed"
    );
    let (mut book, taker) = at(Stp::CancelTaker);
    // Nothing filled before bob's own ask, and nothing rests: refused.
    let r = taker.unwrap_err();
    assert!(
        matches!(&r, Rejection::Unchanged(m) if m.contains("self-trade prevention")),
        "{r}"
    );
    assert_eq!(book.resting_qty(1), Some(5));
    let (book2, maker) = at(Stp::CancelMaker);
    assert_eq!(
        outcome(&maker.unwrap()),
        (vec![(2, 5)], 3, 0, vec![1]),
        "bob's ask cancelled, matching went on"
    );
    assert_eq!(book2.resting_qty(1), None);
    assert_eq!(
        balance(&book2, "bob", Symbol::from_static("FOLD")).held,
        0,
        "its hold released"
    );
    let (_, both) = at(Stp::CancelBoth);
    assert_eq!(outcome(&both.unwrap()), (vec![], 0, 8, vec![1]));
    // Fills before the first self-match stand: carol takes bob's 5 at 101, then
    // meets her own ask at 102 and stops there.
    let e = when(
        &mut book,
        order("carol", Side::Buy, 102, 8, stp(Stp::CancelTaker)),
    )
    .unwrap();
    assert_eq!(outcome(&e), (vec![(1, 5)], 0, 3, vec![]));
    assert_eq!(book.resting_qty(2), Some(5), "her own ask stays");
}

#[test]
fn amends_keep_their_place_only_when_they_shrink() {
    let mut book = Book::from_state(&genesis(true));
    when(
        &mut book,
        order("alice", Side::Sell, 101, 4, OrderOptions::default()),
    )
    .unwrap(); // id 4, behind bob's 1
    let amend = |id, qty, price| Command::Amend {
        user: "bob".into(),
        order_id: id,
        qty,
        price,
        idempotency_key: None,
    };
    let same = refused(&mut book, amend(1, 5, Some(101)));
    assert!(matches!(same, Rejection::Unchanged(_)), "{same}");
    // Smaller: bob's ask stays first at 101.
    let e = when(&mut book, amend(1, 2, None)).unwrap();
    assert!(
        matches!(
            e,
            Event::OrderAmended {
                new_order_id: None,
                resting_qty: 2,
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(balance(&book, "bob", Symbol::from_static("FOLD")).held, 2);
    let e = when(
        &mut book,
        order("carol", Side::Buy, 101, 1, OrderOptions::default()),
    )
    .unwrap();
    assert_eq!(outcome(&e).0, vec![(1, 1)], "bob first still");
    // Larger: a new id behind alice.
    let e = when(&mut book, amend(1, 6, None)).unwrap();
    let Event::OrderAmended {
        new_order_id: Some(id),
        resting_qty: 6,
        ..
    } = e
    else {
        panic!("{e:?}")
    };
    assert_eq!(book.resting_qty(1), None);
    let e = when(
        &mut book,
        order("carol", Side::Buy, 101, 1, OrderOptions::default()),
    )
    .unwrap();
    assert_eq!(outcome(&e).0, vec![(4, 1)], "alice first now");
    // A new price that crosses: it matches at once.
    when(
        &mut book,
        order("carol", Side::Buy, 100, 3, OrderOptions::default()),
    )
    .unwrap();
    let e = when(&mut book, amend(id, 6, Some(100))).unwrap();
    let Event::OrderAmended {
        fills, resting_qty, ..
    } = e
    else {
        panic!()
    };
    assert_eq!((fills.len(), resting_qty), (1, 3));
    // Not resting, not the owner.
    assert_eq!(
        refused(&mut book, amend(999, 1, None)),
        Rejection::NotResting(999)
    );
    let alice = Command::Amend {
        user: "bob".into(),
        order_id: 4,
        qty: 1,
        price: None,
        idempotency_key: None,
    };
    assert_eq!(refused(&mut book, alice), Rejection::NotOwner(4));
}

#[test]
fn cancel_all_cancels_every_resting_order_and_releases_their_holds() {
    let mut book = Book::from_state(&genesis(true));
    let all = |market| Command::CancelAll {
        user: "bob".into(),
        market,
        idempotency_key: None,
    };
    when(
        &mut book,
        Command::Place {
            market: ACME,
            user: "bob".into(),
            side: Side::Sell,
            price: 50,
            qty: 2,
            options: OrderOptions::default(),
            idempotency_key: None,
        },
    )
    .unwrap();
    let e = when(&mut book, all(Some(ACME))).unwrap();
    let Event::OrdersCancelled { orders, .. } = &e else {
        panic!()
    };
    assert_eq!(orders.len(), 1, "only ACME's");
    let e = when(&mut book, all(None)).unwrap();
    let Event::OrdersCancelled { orders, .. } = &e else {
        panic!()
    };
    assert_eq!(
        orders.iter().map(|o| o.order_id).collect::<Vec<_>>(),
        vec![1, 3]
    );
    assert_eq!(balance(&book, "bob", USD).held, 0);
    assert_eq!(balance(&book, "bob", Symbol::from_static("FOLD")).held, 0);
    let nothing = refused(&mut book, all(None));
    assert!(
        matches!(&nothing, Rejection::Unchanged(m) if m.contains("no resting orders")),
        "{nothing}"
    );
}

/// One step of the random workload.
fn arb_command() -> impl Strategy<Value = Command> {
    let user = prop_oneof![Just("alice"), Just("bob"), Just("carol")].prop_map(String::from);
    let side = prop_oneof![Just(Side::Buy), Just(Side::Sell)];
    let tif = prop_oneof![3 => Just(TimeInForce::Gtc), 1 => Just(TimeInForce::Ioc), 1 => Just(TimeInForce::Fok)];
    let stp = prop_oneof![3 => Just(Stp::None), 1 => Just(Stp::CancelTaker), 1 => Just(Stp::CancelMaker), 1 => Just(Stp::CancelBoth)];
    let market = prop_oneof![Just(FOLD), Just(ACME)];
    prop_oneof![
        6 => (user.clone(), side, market.clone(), 95..106u64, 1..8u64, tif, stp, any::<bool>(), 0..10u32).prop_map(
            |(user, side, market, price, qty, tif, stp, post, kind)| {
                let (price, options) = match kind {
                    // A market order (a buy says what it may spend).
                    0 => (if side == Side::Buy { 1_000_000_000 } else { 1 }, OrderOptions {
                        market: true,
                        max_cost: (side == Side::Buy).then_some(100 * u64::from(1 + kind) * qty),
                        stp,
                        ..OrderOptions::default()
                    }),
                    _ => (price, OrderOptions { tif, stp, post_only: post && tif == TimeInForce::Gtc && kind < 3, ..OrderOptions::default() }),
                };
                Command::Place { market, user, side, price, qty, options, idempotency_key: None }
            }),
        2 => (user.clone(), 1..40u64).prop_map(|(user, order_id)| Command::Cancel { user, order_id, idempotency_key: None }),
        2 => (user.clone(), 1..40u64, 1..8u64, proptest::option::of(95..106u64)).prop_map(|(user, order_id, qty, price)| Command::Amend { user, order_id, qty, price, idempotency_key: None }),
        1 => (user.clone(), proptest::option::of(market)).prop_map(|(user, market)| Command::CancelAll { user, market, idempotency_key: None }),
        1 => (user, 1..5000u64).prop_map(|(user, amount)| Command::Deposit { user, asset: USD, amount, idempotency_key: None }),
    ]
}

/// The book's invariants: no market rests crossed; with accounts, every asset is
/// conserved and every user's held is what their resting orders hold.
fn check_book(book: &Book) -> Result<(), TestCaseError> {
    let state = book.to_state();
    for m in &state.markets {
        let best_bid = state
            .orders
            .iter()
            .filter(|o| o.market == m.symbol && o.side == Side::Buy)
            .map(|o| o.price)
            .max();
        let best_ask = state
            .orders
            .iter()
            .filter(|o| o.market == m.symbol && o.side == Side::Sell)
            .map(|o| o.price)
            .min();
        if let (Some(bid), Some(ask)) = (best_bid, best_ask) {
            prop_assert!(
                bid < ask,
                "market {} rests crossed: {} >= {}",
                m.symbol,
                bid,
                ask
            );
        }
    }
    // With accounts, every asset conserved and every hold a resting order's.
    prop_assert_eq!(book.check_accounts(), Ok(()));
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn every_order_type_keeps_the_book_and_the_money_right(accounts: bool, cmds in prop::collection::vec(arb_command(), 1..80)) {
        let genesis = genesis(accounts);
        let mut book = Book::from_state(&genesis);
        let mut events = Vec::new();
        for cmd in &cmds {
            let before = book.clone();
            match book.decide(cmd) {
                Ok(event) => {
                    book.apply(&event).expect("a decided event fits");
                    if let Event::OrderPlaced { order, resting_qty, tif, market_order, fills, unfilled_qty, .. } = &event {
                        // Quantity is conserved, and only a GTC limit order rests.
                        let filled: u64 = fills.iter().map(|f| f.qty).sum();
                        prop_assert_eq!(filled + resting_qty + unfilled_qty, order.qty);
                        if *tif != TimeInForce::Gtc || *market_order {
                            prop_assert_eq!(*resting_qty, 0);
                            prop_assert_eq!(book.resting_qty(order.id), None);
                        }
                        if *tif == TimeInForce::Fok {
                            prop_assert_eq!(filled, order.qty, "a FOK fills entirely");
                        }
                    }
                    events.push(event);
                }
                Err(rejection) => {
                    prop_assert!(book == before, "a refusal changes nothing ({})", rejection);
                    if !accounts {
                        let for_money = matches!(rejection, Rejection::InsufficientFunds { .. } | Rejection::MaxCostNeeded);
                        prop_assert!(!for_money, "no money is needed with accounts off: {}", rejection);
                    }
                }
            }
            check_book(&book)?;
        }
        let mut replayed = Book::from_state(&genesis);
        for e in &events {
            replayed.apply(e).unwrap();
        }
        prop_assert!(replayed == book, "replay equals the live book");
        prop_assert_eq!(replayed.digest(), book.digest());
        let mut w = BodyWriter::default();
        book.encode(&mut w);
        let body = w.finish();
        prop_assert!(Book::decode(&mut BodyReader::new(&body)).unwrap() == book, "a snapshot round trip");
        prop_assert!(Book::from_state(&book.to_state()) == book, "a state round trip");
    }
}
