//! Markets: a market is named by its [`Symbol`] (`[A-Z][A-Z0-9]{0,11}`), the same
//! shape as the names of its base and quote assets. Events of schema version 2 on
//! name the market they happened in. Until `init.txt` lists markets, a log has one
//! market, [`DEFAULT_MARKET`], and every event of an older version is in it (the
//! upcaster from version 1 says so).

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// Longest symbol, in bytes.
pub const SYMBOL_LEN_MAX: usize = 12;

/// The market of a deployment whose `init.txt` names none, and of every event
/// written before events named their market (schema version 1).
pub const DEFAULT_MARKET: Symbol = Symbol::from_static("FOLD");
/// The default market's base asset (what is bought and sold).
pub const DEFAULT_BASE: Symbol = Symbol::from_static("FOLD");
/// The default market's quote asset (what prices are in).
pub const DEFAULT_QUOTE: Symbol = Symbol::from_static("USD");

/// A market or asset symbol: 1..=12 of `[A-Z0-9]`, starting with a letter. Stored
/// inline (no allocation per decoded event), compared and hashed by its bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Symbol {
    len: u8,
    bytes: [u8; SYMBOL_LEN_MAX],
}

/// Why a string is not a symbol; shown to API clients as is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "a symbol is 1..={SYMBOL_LEN_MAX} characters of [A-Z0-9] starting with a letter, got {0:?}"
)]
pub struct InvalidSymbol(pub String);

/// A market a request names that is not traded here; shown to API clients as is.
/// The name is cut to twice a symbol's length, so a huge path is not echoed whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("market {0:?} is not traded here (GET /markets lists them)")]
pub struct UnknownMarket(String);

impl UnknownMarket {
    pub fn new(named: &str) -> UnknownMarket {
        UnknownMarket(named.chars().take(2 * SYMBOL_LEN_MAX).collect())
    }
}

impl Symbol {
    /// A symbol from a constant; panics (at compile time in a `const`) if invalid.
    pub const fn from_static(s: &str) -> Symbol {
        let b = s.as_bytes();
        assert!(
            !b.is_empty() && b.len() <= SYMBOL_LEN_MAX,
            "a symbol's length"
        );
        assert!(b[0].is_ascii_uppercase(), "a symbol starts with A-Z");
        let mut bytes = [0u8; SYMBOL_LEN_MAX];
        let mut i = 0;
        while i < b.len() {
            assert!(
                b[i].is_ascii_uppercase() || b[i].is_ascii_digit(),
                "a symbol is A-Z0-9"
            );
            bytes[i] = b[i];
            i += 1;
        }
        Symbol {
            len: b.len() as u8,
            bytes,
        }
    }

    /// Parses and checks a symbol.
    pub fn parse(s: &str) -> Result<Symbol, InvalidSymbol> {
        let b = s.as_bytes();
        let valid = !b.is_empty()
            && b.len() <= SYMBOL_LEN_MAX
            && b[0].is_ascii_uppercase()
            && b.iter()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
        if !valid {
            let shown: String = s.chars().take(2 * SYMBOL_LEN_MAX).collect();
            return Err(InvalidSymbol(shown));
        }
        let mut bytes = [0u8; SYMBOL_LEN_MAX];
        bytes[..b.len()].copy_from_slice(b);
        Ok(Symbol {
            len: b.len() as u8,
            bytes,
        })
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII is ever stored (checked by both constructors).
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).expect("a symbol is ASCII")
    }
}

impl fmt::Display for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

impl std::str::FromStr for Symbol {
    type Err = InvalidSymbol;
    fn from_str(s: &str) -> Result<Symbol, InvalidSymbol> {
        Symbol::parse(s)
    }
}

impl Serialize for Symbol {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Symbol {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Symbol, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Symbol;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a symbol: 1..=12 of [A-Z0-9], starting with a letter")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Symbol, E> {
                Symbol::parse(v).map_err(E::custom)
            }
        }
        d.deserialize_str(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn symbols_are_checked() {
        for good in ["A", "FOLD", "BTC2", "ABCDEFGHIJKL"] {
            assert_eq!(Symbol::parse(good).unwrap().as_str(), good);
        }
        for bad in ["", "fold", "1AB", "ABCDEFGHIJKLM", "AB-C", "ÄB", "A B"] {
            assert!(Symbol::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(DEFAULT_MARKET.as_str(), "FOLD");
    }

    #[test]
    fn a_symbol_is_a_json_string() {
        let json = serde_json::to_string(&DEFAULT_QUOTE).unwrap();
        assert_eq!(json, "\"USD\"");
        assert_eq!(
            serde_json::from_str::<Symbol>(&json).unwrap(),
            DEFAULT_QUOTE
        );
        assert!(serde_json::from_str::<Symbol>("\"usd\"").is_err());
    }

    proptest! {
        #[test]
        fn parse_accepts_exactly_the_pattern(s in "[A-Za-z0-9 .-]{0,14}") {
            let b = s.as_bytes();
            let fits = !b.is_empty() && b.len() <= SYMBOL_LEN_MAX && b[0].is_ascii_uppercase()
                && b.iter().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
            prop_assert_eq!(Symbol::parse(&s).is_ok(), fits);
            if let Ok(sym) = Symbol::parse(&s) {
                prop_assert_eq!(sym.as_str(), s.as_str());
            }
        }
    }
}
