//! Commands (imperative: what a client asks for) and the reasons one is rejected.
//! A command reaching the writer is already well-formed; rejections here are about
//! the book's state, and each says which HTTP status it maps to.

use shared_events::{Side, Symbol};

/// A validated request to change the book.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Place {
        /// The market to trade in (the HTTP layer checked that it exists).
        market: Symbol,
        user: String,
        side: Side,
        price: u64,
        qty: u64,
        idempotency_key: Option<String>,
    },
    Cancel {
        user: String,
        order_id: u64,
        idempotency_key: Option<String>,
    },
}

/// Why the book refuses a command. Nothing is written for a rejected command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// 404: the order is not resting (unknown, filled, or already cancelled).
    #[error("order {0} is not resting")]
    NotResting(u64),
    /// 403: only the order's owner may cancel it.
    #[error("order {0} belongs to another user")]
    NotOwner(u64),
    /// 404: no such market.
    #[error("market {0} is not traded here")]
    UnknownMarket(Symbol),
    /// 409: the Idempotency-Key was already used for a different request.
    #[error("this Idempotency-Key was already used for a different request")]
    KeyReused,
    /// 422: the order would match more resting orders than one event may record.
    #[error("order would match more than {max} resting orders; place it in smaller parts", max = crate::book::FILLS_PER_EVENT_MAX)]
    TooManyFills,
}

impl Rejection {
    /// The HTTP status this rejection is answered with.
    pub fn status(&self) -> u16 {
        match self {
            Rejection::NotResting(_) | Rejection::UnknownMarket(_) => 404,
            Rejection::NotOwner(_) => 403,
            Rejection::TooManyFills => 422,
            Rejection::KeyReused => 409,
        }
    }
}
