//! The domain vocabulary both sides speak: orders, sides, fills, and the bounds
//! every value must respect. Validation lives here because both the HTTP layer
//! (untrusted input) and the genesis loader (a human-edited file) need the same rules.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Lowest accepted price, in ticks.
pub const PRICE_MIN: u64 = 1;
/// Highest accepted price, in ticks.
pub const PRICE_MAX: u64 = 1_000_000_000;
/// Lowest accepted quantity.
pub const QTY_MIN: u64 = 1;
/// Highest accepted quantity for one order.
pub const QTY_MAX: u64 = 1_000_000;
/// Longest accepted user name, in bytes (names are ASCII).
pub const USER_LEN_MAX: usize = 64;

/// Which side of the book an order is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    Buy,
    Sell,
}

impl Side {
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Buy => "buy",
            Side::Sell => "sell",
        }
    }

    pub fn opposite(self) -> Side {
        match self {
            Side::Buy => Side::Sell,
            Side::Sell => Side::Buy,
        }
    }
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An order as it was placed. `qty` is the quantity asked for; in a genesis or
/// snapshot state it is the quantity still resting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    /// Unique, never reused, increasing in time-priority order.
    pub id: u64,
    pub user: String,
    pub side: Side,
    /// Limit price in ticks.
    pub price: u64,
    pub qty: u64,
}

/// How long an order may stay: `gtc` rests until filled or cancelled (the
/// default); `ioc` fills what it can at once and cancels the rest; `fok` fills all
/// of it at once or nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TimeInForce {
    #[default]
    Gtc,
    Ioc,
    Fok,
}

impl TimeInForce {
    pub fn is_gtc(&self) -> bool {
        *self == TimeInForce::Gtc
    }

    pub fn parse(raw: &str) -> Result<TimeInForce, String> {
        match raw {
            "gtc" => Ok(TimeInForce::Gtc),
            "ioc" => Ok(TimeInForce::Ioc),
            "fok" => Ok(TimeInForce::Fok),
            _ => Err(format!("tif must be gtc, ioc or fok, got {:?}", echo(raw))),
        }
    }
}

/// Self-trade prevention: what happens when an order would trade with a resting
/// order of the same user. `none` (the default): it trades. `cancel_taker`: the
/// rest of the incoming order is cancelled; `cancel_maker`: that resting order is
/// cancelled and matching goes on; `cancel_both`: both.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stp {
    #[default]
    None,
    CancelTaker,
    CancelMaker,
    CancelBoth,
}

impl Stp {
    pub fn is_none(&self) -> bool {
        *self == Stp::None
    }

    pub fn parse(raw: &str) -> Result<Stp, String> {
        match raw {
            "none" => Ok(Stp::None),
            "cancel_taker" => Ok(Stp::CancelTaker),
            "cancel_maker" => Ok(Stp::CancelMaker),
            "cancel_both" => Ok(Stp::CancelBoth),
            _ => Err(format!(
                "stp must be none, cancel_taker, cancel_maker or cancel_both, got {:?}",
                echo(raw)
            )),
        }
    }
}

/// A resting order cancelled by an event other than its owner's cancel (self-trade
/// prevention, cancel-all), with what was left of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CancelledOrder {
    pub order_id: u64,
    pub user: String,
    /// The quantity it still had resting.
    pub qty: u64,
}

/// One match between an incoming (taker) order and a resting (maker) order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fill {
    pub maker_id: u64,
    pub maker_user: String,
    /// The maker's price: trades happen at the resting order's price.
    pub price: u64,
    pub qty: u64,
}

/// A 64-bit fingerprint of one resting order: a multiply-fold hash (as in wyhash)
/// over its id, owner, side, price and resting quantity, a word at a time. A book's
/// digest is the wrapping sum of its resting orders' fingerprints, so each side can
/// keep it up to date per event (subtract the old fingerprint, add the new) and the
/// write and read sides, which fold independently, can be compared at the same seq.
/// The hash is fixed (no per-process seed) so two processes agree; a snapshot of a
/// million orders computes a million of them, so it works on words, not bytes.
pub fn resting_fingerprint(id: u64, user: &str, side: Side, price: u64, qty: u64) -> u64 {
    const SECRET: [u64; 4] = [
        0xa076_1d64_78bd_642f,
        0xe703_7ed1_a0b4_28db,
        0x8ebc_6af0_9c88_c6e3,
        0x5899_65cc_7537_4cc3,
    ];
    /// The 128-bit product of `a` and `b`, its halves xored together.
    fn fold(a: u64, b: u64) -> u64 {
        let product = u128::from(a ^ SECRET[0]) * u128::from(b ^ SECRET[1]);
        (product as u64) ^ ((product >> 64) as u64)
    }
    let side_bit = match side {
        Side::Buy => 0,
        Side::Sell => 1 << 63,
    };
    // Prices and quantities are far below 2^63: the side takes price's top bit.
    let mut hash = fold(id, price | side_bit);
    hash = fold(hash ^ qty, user.len() as u64 ^ SECRET[2]);
    let mut words = user.as_bytes().chunks_exact(8);
    for word in &mut words {
        let word = u64::from_le_bytes(word.try_into().expect("8 bytes"));
        hash = fold(hash ^ word, SECRET[3]);
    }
    // The last bytes as one word, zero-padded (built in a register: a copy
    // through memory stalls on reading it back).
    let tail = words.remainder();
    if !tail.is_empty() {
        let word = (tail.iter().rev()).fold(0, |word, &b| word << 8 | u64::from(b));
        hash = fold(hash ^ word, SECRET[3]);
    }
    fold(hash, SECRET[2])
}

/// A digest as shown in `/health`: 16 lowercase hex digits.
pub fn digest_hex(digest: u64) -> String {
    format!("{digest:016x}")
}

/// Why a value is out of bounds; the message is shown to API clients as is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidValue {
    #[error("user must be 1..={USER_LEN_MAX} characters of [A-Za-z0-9_.-], got {0:?}")]
    User(String),
    #[error("price must be an integer {PRICE_MIN}..={PRICE_MAX}, got {0:?}")]
    Price(String),
    #[error("qty must be an integer {QTY_MIN}..={QTY_MAX}, got {0:?}")]
    Qty(String),
    #[error("order id must be a positive integer, got {0:?}")]
    OrderId(String),
    #[error("amount must be an integer 1..={max}, got {0:?}", max = crate::accounts::AMOUNT_MAX)]
    Amount(String),
}

/// Shortens what is echoed back in an error, so a huge input does not become a huge answer.
pub(crate) fn echo(raw: &str) -> String {
    const ECHO_CHARS_MAX: usize = 80;
    if raw.chars().count() <= ECHO_CHARS_MAX {
        raw.to_owned()
    } else {
        let cut: String = raw.chars().take(ECHO_CHARS_MAX).collect();
        format!("{cut}...")
    }
}

pub fn is_valid_user(user: &str) -> bool {
    (1..=USER_LEN_MAX).contains(&user.len())
        && user
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

pub fn parse_user(raw: &str) -> Result<String, InvalidValue> {
    if is_valid_user(raw) {
        Ok(raw.to_owned())
    } else {
        Err(InvalidValue::User(echo(raw)))
    }
}

/// Strict decimal: digits only (no sign, no spaces, no exponent), as `u64`.
pub(crate) fn parse_decimal(raw: &str) -> Option<u64> {
    if raw.is_empty() || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    raw.parse().ok()
}

pub fn parse_price(raw: &str) -> Result<u64, InvalidValue> {
    parse_decimal(raw)
        .filter(|p| (PRICE_MIN..=PRICE_MAX).contains(p))
        .ok_or_else(|| InvalidValue::Price(echo(raw)))
}

pub fn parse_qty(raw: &str) -> Result<u64, InvalidValue> {
    parse_decimal(raw)
        .filter(|q| (QTY_MIN..=QTY_MAX).contains(q))
        .ok_or_else(|| InvalidValue::Qty(echo(raw)))
}

pub fn parse_order_id(raw: &str) -> Result<u64, InvalidValue> {
    parse_decimal(raw)
        .filter(|id| *id >= 1)
        .ok_or_else(|| InvalidValue::OrderId(echo(raw)))
}

/// Parses a URL query string allowing only the parameter names in `allowed`, each at
/// most once. A typo like `?qyt=5` is an error rather than silently ignored.
pub fn parse_query(query: &str, allowed: &[&str]) -> Result<Vec<(String, String)>, String> {
    let mut seen: Vec<(String, String)> = Vec::new();
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        if !allowed.contains(&key.as_ref()) {
            let allowed = if allowed.is_empty() {
                "none".to_owned()
            } else {
                allowed.join(", ")
            };
            return Err(format!(
                "unknown query parameter {:?} (allowed: {allowed})",
                echo(&key)
            ));
        }
        if seen.iter().any(|(k, _)| *k == key) {
            return Err(format!("query parameter {key:?} given twice"));
        }
        seen.push((key.into_owned(), value.into_owned()));
    }
    Ok(seen)
}

/// The value of query parameter `name` parsed by `parse`, or `default` when absent.
pub fn query_value<T>(
    params: &[(String, String)],
    name: &str,
    default: T,
    parse: impl FnOnce(&str) -> Result<T, String>,
) -> Result<T, String> {
    match params.iter().find(|(k, _)| k == name) {
        Some((_, raw)) => parse(raw),
        None => Ok(default),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users() {
        assert!(is_valid_user("alice"));
        assert!(is_valid_user("A.b-c_9"));
        assert!(is_valid_user(&"x".repeat(64)));
        assert!(!is_valid_user(&"x".repeat(65)));
        assert!(!is_valid_user(""));
        assert!(!is_valid_user("al ice"));
        assert!(!is_valid_user("al%20ice"));
        assert!(!is_valid_user("élise"));
    }

    #[test]
    fn numbers() {
        assert_eq!(parse_price("1"), Ok(1));
        assert_eq!(parse_price("1000000000"), Ok(PRICE_MAX));
        assert!(parse_price("1000000001").is_err());
        assert!(parse_price("0").is_err());
        assert!(parse_price("-1").is_err());
        assert!(parse_price("+1").is_err());
        assert!(parse_price("1.5").is_err());
        assert!(parse_price("99999999999999999999999").is_err());
        assert_eq!(parse_qty("1000000"), Ok(QTY_MAX));
        assert!(parse_qty("1000001").is_err());
        assert!(parse_order_id("0").is_err());
        assert_eq!(parse_order_id("42"), Ok(42));
    }

    #[test]
    fn fingerprints_are_fixed_across_processes() {
        // Two processes (and two builds, in split mode) must agree: the value is pinned.
        assert_eq!(
            digest_hex(resting_fingerprint(1, "alice", Side::Buy, 100, 5)),
            PINNED_FINGERPRINT
        );
    }

    const PINNED_FINGERPRINT: &str = "ff671db6dc75f8b2";

    proptest::proptest! {
        /// Orders that differ in any one field (a name a byte longer or shorter,
        /// the side, a unit of price or quantity) get different fingerprints.
        #[test]
        fn fingerprints_tell_orders_apart(
            id in 1u64..1 << 40,
            user in "[a-z0-9]{1,64}",
            price in PRICE_MIN..PRICE_MAX,
            qty in QTY_MIN..QTY_MAX,
            sell: bool,
        ) {
            let side = if sell { Side::Sell } else { Side::Buy };
            let f = resting_fingerprint(id, &user, side, price, qty);
            let longer = format!("{user}0");
            let others = [
                resting_fingerprint(id + 1, &user, side, price, qty),
                resting_fingerprint(id, &longer, side, price, qty),
                resting_fingerprint(id, &user[1..], side, price, qty),
                resting_fingerprint(id, &user, side.opposite(), price, qty),
                resting_fingerprint(id, &user, side, price + 1, qty),
                resting_fingerprint(id, &user, side, price, qty + 1),
            ];
            for (i, other) in others.iter().enumerate() {
                proptest::prop_assert_ne!(f, *other, "variant {}", i);
            }
        }
    }

    #[test]
    fn query_strings() {
        assert_eq!(parse_query("", &["qty"]), Ok(vec![]));
        assert_eq!(
            parse_query("qty=5", &["qty"]),
            Ok(vec![("qty".into(), "5".into())])
        );
        assert!(
            parse_query("qyt=5", &["qty"])
                .unwrap_err()
                .contains("unknown query parameter")
        );
        assert!(
            parse_query("qty=5&qty=6", &["qty"])
                .unwrap_err()
                .contains("twice")
        );
        assert!(
            parse_query("x=1", &[])
                .unwrap_err()
                .contains("allowed: none")
        );
    }

    #[test]
    fn long_input_is_not_echoed_whole() {
        let msg = parse_user(&"!".repeat(10_000)).unwrap_err().to_string();
        assert!(msg.len() < 300, "{msg}");
    }
}
