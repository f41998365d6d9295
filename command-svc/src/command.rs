//! Commands (imperative: what a client asks for) and the reasons one is rejected.
//! A command reaching the writer is already well-formed; rejections here are about
//! the book's state, and each says which HTTP status it maps to.

use shared_events::accounts::Asset;
use shared_events::{Side, Stp, Symbol, TimeInForce};

/// How an order trades besides its price and quantity (the defaults: a plain
/// good-till-cancelled limit order).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OrderOptions {
    pub tif: TimeInForce,
    pub post_only: bool,
    pub stp: Stp,
    /// A market order: it matches at any price (its `price` is the bound: the
    /// highest for a buy, the lowest for a sell) and never rests.
    pub market: bool,
    /// A market buy's most it may spend, in the quote asset.
    pub max_cost: Option<u64>,
}

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
        options: OrderOptions,
        idempotency_key: Option<String>,
    },
    /// Changes a resting order's quantity (what is left to fill) and maybe price.
    Amend {
        user: String,
        order_id: u64,
        qty: u64,
        price: Option<u64>,
        idempotency_key: Option<String>,
    },
    /// Cancels every resting order of the user (in one market, if named).
    CancelAll {
        user: String,
        market: Option<Symbol>,
        idempotency_key: Option<String>,
    },
    Cancel {
        user: String,
        order_id: u64,
        idempotency_key: Option<String>,
    },
    /// Pays `amount` of `asset` in (accounts on).
    Deposit {
        user: String,
        asset: Asset,
        amount: u64,
        idempotency_key: Option<String>,
    },
    /// Pays `amount` of `asset` out of what is available (accounts on).
    Withdraw {
        user: String,
        asset: Asset,
        amount: u64,
        idempotency_key: Option<String>,
    },
}

impl Command {
    /// The user it acts for.
    pub fn user(&self) -> &str {
        match self {
            Command::Place { user, .. }
            | Command::Cancel { user, .. }
            | Command::Amend { user, .. }
            | Command::CancelAll { user, .. }
            | Command::Deposit { user, .. }
            | Command::Withdraw { user, .. } => user,
        }
    }

    /// The client's `Idempotency-Key`, if it sent one.
    pub fn idempotency_key(&self) -> Option<&str> {
        match self {
            Command::Place {
                idempotency_key, ..
            }
            | Command::Cancel {
                idempotency_key, ..
            }
            | Command::Deposit {
                idempotency_key, ..
            }
            | Command::Withdraw {
                idempotency_key, ..
            }
            | Command::Amend {
                idempotency_key, ..
            }
            | Command::CancelAll {
                idempotency_key, ..
            } => idempotency_key.as_deref(),
        }
    }

    /// Whether it moves money in or out (an operator's request, with `--auth-file`).
    pub fn is_transfer(&self) -> bool {
        matches!(self, Command::Deposit { .. } | Command::Withdraw { .. })
    }
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
    /// 422: the user's available balance does not cover what the command needs.
    #[error("insufficient funds: {needed} {asset} needed, {available} available")]
    InsufficientFunds {
        asset: Asset,
        needed: u64,
        available: u64,
    },
    /// 422: a balance or an asset's total would leave its bounds.
    #[error("refused: {0}")]
    OutOfBounds(String),
    /// 404: a transfer where accounts are off.
    #[error("this deployment has no accounts (init.txt has no \"accounts\" section)")]
    AccountsOff,
    /// 404: a transfer of an asset no market trades.
    #[error("asset {0} is not traded here (GET /assets lists them)")]
    UnknownAsset(Asset),
    /// 409: the command would change nothing (a fill-or-kill that cannot fill
    /// entirely, a post-only order that would take, an IOC or market order that
    /// finds nothing to match, an amend to the same values, a cancel-all with
    /// nothing resting); the message says which.
    #[error("{0}; nothing was written")]
    Unchanged(String),
    /// 422: with accounts on, a market buy must say what it may spend.
    #[error(
        "with accounts on, a market buy must say the most it may spend: ?max_cost=N (in the quote asset)"
    )]
    MaxCostNeeded,
    /// 422: the order would match more resting orders than one event may record.
    #[error("order would match more than {max} resting orders; place it in smaller parts", max = crate::book::FILLS_PER_EVENT_MAX)]
    TooManyFills,
}

impl Rejection {
    /// The HTTP status this rejection is answered with.
    pub fn status(&self) -> u16 {
        match self {
            Rejection::NotResting(_)
            | Rejection::UnknownMarket(_)
            | Rejection::AccountsOff
            | Rejection::UnknownAsset(_) => 404,
            Rejection::NotOwner(_) => 403,
            Rejection::TooManyFills
            | Rejection::InsufficientFunds { .. }
            | Rejection::OutOfBounds(_)
            | Rejection::MaxCostNeeded => 422,
            Rejection::KeyReused | Rejection::Unchanged(_) => 409,
        }
    }
}
