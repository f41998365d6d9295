//! The book-state schema: what `init.txt` holds (the genesis state, before event 1) and
//! what snapshots of the book will hold. Both services read it and check it the same way.

use crate::domain::{Order, PRICE_MAX, PRICE_MIN, QTY_MAX, QTY_MIN, Side, is_valid_user};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Most resting orders a state file may hold.
pub const STATE_ORDERS_MAX: usize = 10_000_000;

/// Resting orders and the id counter: everything needed to continue from a point.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BookState {
    /// The id the next placed order gets; greater than every id in `orders`.
    pub next_order_id: u64,
    /// Resting orders in time-priority order (oldest first), so ids strictly
    /// increase down the list; `qty` is the quantity still resting.
    pub orders: Vec<Order>,
}

/// Why a state file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not a valid book state: {message}")]
    Invalid { path: String, message: String },
}

impl BookState {
    /// An empty book whose first order gets id 1.
    pub fn empty() -> Self {
        BookState {
            next_order_id: 1,
            orders: Vec::new(),
        }
    }

    /// Reads and validates a state file. `origin` names it in errors.
    pub fn load(path: &Path) -> Result<Self, StateError> {
        let text = std::fs::read_to_string(path).map_err(|source| StateError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text).map_err(|message| StateError::Invalid {
            path: path.display().to_string(),
            message,
        })
    }

    /// Parses and validates the JSON text of a state.
    pub fn parse(text: &str) -> Result<Self, String> {
        let state: BookState = serde_json::from_str(text).map_err(|e| e.to_string())?;
        state.validate()?;
        Ok(state)
    }

    /// Checks every rule a state must satisfy; the message names the offending order.
    pub fn validate(&self) -> Result<(), String> {
        if self.orders.len() > STATE_ORDERS_MAX {
            return Err(format!("more than {STATE_ORDERS_MAX} orders"));
        }
        let mut prev_id = 0;
        let (mut best_bid, mut best_ask) = (0u64, u64::MAX);
        for (i, o) in self.orders.iter().enumerate() {
            // Only formatted on failure: this loop runs over millions of orders.
            let at = || format!("orders[{i}] (id {})", o.id);
            if o.id <= prev_id {
                return Err(format!(
                    "{}: ids must be positive and strictly increase (time-priority order)",
                    at()
                ));
            }
            prev_id = o.id;
            if !is_valid_user(&o.user) {
                return Err(format!(
                    "{}: user must be 1..=64 characters of [A-Za-z0-9_.-]",
                    at()
                ));
            }
            if !(PRICE_MIN..=PRICE_MAX).contains(&o.price) {
                return Err(format!("{}: price must be {PRICE_MIN}..={PRICE_MAX}", at()));
            }
            if !(QTY_MIN..=QTY_MAX).contains(&o.qty) {
                return Err(format!("{}: qty must be {QTY_MIN}..={QTY_MAX}", at()));
            }
            match o.side {
                Side::Buy => best_bid = best_bid.max(o.price),
                Side::Sell => best_ask = best_ask.min(o.price),
            }
        }
        if self.next_order_id <= prev_id {
            return Err(format!(
                "next_order_id {} must be greater than every order id (max {prev_id})",
                self.next_order_id
            ));
        }
        if best_bid >= best_ask {
            return Err(format!(
                "the book is crossed: best bid {best_bid} >= best ask {best_ask}; such orders would have matched"
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn o(id: u64, side: Side, price: u64) -> Order {
        Order {
            id,
            user: "u".into(),
            side,
            price,
            qty: 1,
        }
    }

    #[test]
    fn shipped_init_txt_is_valid() {
        let text = include_str!("../../init.txt");
        let state = BookState::parse(text).unwrap();
        assert!(!state.orders.is_empty());
    }

    #[test]
    fn rules() {
        let ok = BookState {
            next_order_id: 3,
            orders: vec![o(1, Side::Buy, 99), o(2, Side::Sell, 101)],
        };
        assert_eq!(ok.validate(), Ok(()));
        let crossed = BookState {
            next_order_id: 3,
            orders: vec![o(1, Side::Buy, 101), o(2, Side::Sell, 101)],
        };
        assert!(crossed.validate().unwrap_err().contains("crossed"));
        let unordered = BookState {
            next_order_id: 3,
            orders: vec![o(2, Side::Buy, 99), o(1, Side::Sell, 101)],
        };
        assert!(
            unordered
                .validate()
                .unwrap_err()
                .contains("orders[1] (id 1)")
        );
        let low_next = BookState {
            next_order_id: 2,
            orders: vec![o(1, Side::Buy, 99), o(2, Side::Sell, 101)],
        };
        assert!(low_next.validate().unwrap_err().contains("next_order_id"));
        assert!(BookState::parse(r#"{"next_order_id":1,"orders":[],"extra":1}"#).is_err());
    }
}
