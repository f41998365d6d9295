//! The two folds agree. For random command sequences, the write side decides and
//! applies events and writes them as log lines; the read side folds the decoded log.
//! Then: the read side's book equals the write side's book, order statuses agree,
//! replaying the log from genesis rebuilds the write side's book exactly, and both
//! sides' incrementally kept digests agree with each other and with a fresh one.

use command_svc::book::Book;
use command_svc::command::Command;
use proptest::prelude::*;
use query_svc::projection::{ReadModel, Status};
use shared_events::{BookState, Envelope, LogCursor, SCHEMA_VERSION, Side};

fn genesis() -> BookState {
    BookState::parse(include_str!("../../init.txt")).unwrap()
}

fn arb_command() -> impl Strategy<Value = Command> {
    let user = prop_oneof![Just("alice"), Just("bob"), Just("zed")].prop_map(String::from);
    let side = prop_oneof![Just(Side::Buy), Just(Side::Sell)];
    prop_oneof![
        4 => (user.clone(), side, 95u64..=106, 1u64..=25).prop_map(|(user, side, price, qty)| Command::Place {
            user, side, price, qty, idempotency_key: None
        }),
        1 => (user, 1u64..=60).prop_map(|(user, order_id)| Command::Cancel { user, order_id, idempotency_key: None }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn read_fold_of_the_log_equals_the_write_book(cmds in proptest::collection::vec(arb_command(), 0..120)) {
        let genesis = genesis();
        let mut book = Book::from_state(&genesis);
        let mut log = Vec::new();
        let mut seq = 0;
        for cmd in &cmds {
            if let Ok(event) = book.decide(cmd) {
                book.apply(&event).unwrap();
                seq += 1;
                shared_events::encode_into(&mut log, &Envelope { seq, ts_us: seq, v: SCHEMA_VERSION, event });
            }
        }

        let mut read = ReadModel::from_state(&genesis, 0);
        let mut replayed = Book::from_state(&genesis);
        let report = shared_events::scan(&log[..], LogCursor::start(), |env, _| {
            read.apply(&env).unwrap();
            replayed.apply(&env.event).unwrap();
        }).unwrap();
        prop_assert_eq!(report.cursor.next_seq, seq + 1);
        prop_assert_eq!(report.torn, None);

        let write_state = book.to_state();
        prop_assert_eq!(&read.to_state(book.next_order_id()), &write_state);
        prop_assert_eq!(&replayed, &book);
        prop_assert_eq!(read.digest(), book.digest(), "the two sides' digests agree");
        let recomputed = Book::from_state(&write_state).digest();
        prop_assert_eq!(book.digest(), recomputed, "the incremental digest equals a fresh one");
        for entry in read.orders.iter() {
            let resting = book.resting_qty(entry.id);
            prop_assert_eq!(entry.status == Status::Resting, resting.is_some(), "order {}", entry.id);
            if let Some(qty) = resting {
                prop_assert_eq!(entry.qty - entry.filled_qty, qty, "order {}", entry.id);
            }
        }
    }
}
