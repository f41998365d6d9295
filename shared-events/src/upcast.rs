//! The upcaster chain: how a line of an older schema version is read by this build.
//!
//! A line keeps the bytes it was written with (its CRC covers them); a reader
//! meets an event of version N < [`SCHEMA_VERSION`] as JSON and passes it through
//! `upcast_vN_vN+1`, then the next, up to the current version, and only then
//! decodes it into an [`crate::Event`]. The envelope keeps the version the line was
//! written with (`v`), so `verify` can count them and `/events` can show it.
//!
//! Each upcaster is a small pure function of the event's JSON (`{"type", "data"}`):
//! no I/O, no clock, no state beyond what the line holds. To change an event's
//! shape: record a fixture with the build before the change (see
//! `gateway/tests/fixtures.rs`), raise [`SCHEMA_VERSION`], write `upcast_vN_vN+1`
//! here and add it to [`upcast`]'s chain, with a test that an event of version N
//! decodes as the new version says it means. Never change an upcaster once
//! released: logs of every version must keep meaning what they meant.

use crate::event::SCHEMA_VERSION;
use crate::market::DEFAULT_MARKET;
use serde_json::Value;

/// The oldest schema version this build reads.
pub const SCHEMA_VERSION_MIN: u32 = 1;

/// Brings `event`, written as schema version `from`, to [`SCHEMA_VERSION`].
pub fn upcast(from: u32, event: &mut Value) -> Result<(), String> {
    if !(SCHEMA_VERSION_MIN..=SCHEMA_VERSION).contains(&from) {
        return Err(format!(
            "schema version {from} is not one this build reads ({SCHEMA_VERSION_MIN}..={SCHEMA_VERSION})"
        ));
    }
    for version in from..SCHEMA_VERSION {
        match version {
            1 => upcast_v1_v2(event)?,
            2 => upcast_v2_v3(event)?,
            3 => upcast_v3_v4(event)?,
            _ => unreachable!("every version below SCHEMA_VERSION has an upcaster"),
        }
    }
    Ok(())
}

/// Version 1 → 2: events name their market. A version-1 log was written when a
/// deployment had one market, so every one of its events is in [`DEFAULT_MARKET`].
pub fn upcast_v1_v2(event: &mut Value) -> Result<(), String> {
    let data = event
        .get_mut("data")
        .and_then(Value::as_object_mut)
        .ok_or("a version 1 event without a \"data\" object")?;
    data.entry("market")
        .or_insert_with(|| Value::from(DEFAULT_MARKET.as_str()));
    Ok(())
}

/// Version 2 → 3: accounts. A version-2 log was written before accounts existed, so
/// its orders and cancels changed no balance (`balances` stays absent, which reads
/// as none) and it holds no transfer. The shape is otherwise the same.
pub fn upcast_v2_v3(event: &mut Value) -> Result<(), String> {
    let data = event
        .get_mut("data")
        .and_then(Value::as_object_mut)
        .ok_or("a version 2 event without a \"data\" object")?;
    let _ = data;
    Ok(())
}

/// Version 3 → 4: order types. A version-3 order was a good-till-cancelled limit
/// order without self-trade prevention that rested whatever it did not fill, and
/// amends and cancel-alls did not exist: every field version 4 adds is absent,
/// which reads as exactly that. The shape is otherwise the same.
pub fn upcast_v3_v4(event: &mut Value) -> Result<(), String> {
    event
        .get_mut("data")
        .and_then(Value::as_object_mut)
        .ok_or("a version 3 event without a \"data\" object")?;
    Ok(())
}

/// Whether a line of version `v` decodes straight into the current shape, without
/// the JSON detour of [`upcast`]: when every upcaster from `v` on changes nothing
/// in a well-formed event (2 → 3 and 3 → 4 only add what an older line cannot hold).
pub fn decodes_as_current(v: u32) -> bool {
    (2..=SCHEMA_VERSION).contains(&v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Event;

    #[test]
    fn a_v1_placed_order_is_in_the_default_market() {
        let mut event = serde_json::json!({"type": "OrderPlaced", "data": {
            "order": {"id": 9, "user": "zed", "side": "buy", "price": 101, "qty": 8},
            "fills": [], "resting_qty": 8}});
        upcast(1, &mut event).unwrap();
        let event: Event = serde_json::from_value(event).unwrap();
        assert_eq!(event.market(), Some(DEFAULT_MARKET));
    }

    #[test]
    fn a_v1_cancel_is_in_the_default_market() {
        let mut event = serde_json::json!({"type": "OrderCancelled", "data": {
            "order_id": 1, "user": "alice", "cancelled_qty": 9}});
        upcast(1, &mut event).unwrap();
        let event: Event = serde_json::from_value(event).unwrap();
        assert_eq!(event.market(), Some(DEFAULT_MARKET));
    }

    #[test]
    fn a_v2_order_changed_no_balance() {
        let mut event = serde_json::json!({"type": "OrderPlaced", "data": {
            "market": "ACME",
            "order": {"id": 9, "user": "zed", "side": "buy", "price": 101, "qty": 8},
            "fills": [], "resting_qty": 8}});
        let direct: Event = serde_json::from_value(event.clone()).unwrap();
        upcast(2, &mut event).unwrap();
        let event: Event = serde_json::from_value(event).unwrap();
        assert_eq!(
            event, direct,
            "a v2 line decodes straight as v3 says it means"
        );
        assert!(decodes_as_current(2) && !decodes_as_current(1));
        assert_eq!(event.balance_changes().count(), 0);
        assert!(upcast(2, &mut serde_json::json!({"type": "OrderPlaced"})).is_err());
    }

    #[test]
    fn the_current_version_passes_unchanged_and_others_are_refused() {
        let mut event = serde_json::json!({"type": "OrderCancelled", "data": {
            "market": "ABC", "order_id": 1, "user": "alice", "cancelled_qty": 9}});
        let before = event.clone();
        upcast(SCHEMA_VERSION, &mut event).unwrap();
        assert_eq!(event, before);
        assert!(upcast(0, &mut event).is_err());
        let newer = upcast(SCHEMA_VERSION + 1, &mut event).unwrap_err();
        assert!(newer.contains(&(SCHEMA_VERSION + 1).to_string()), "{newer}");
        let mut no_data = serde_json::json!({"type": "OrderCancelled"});
        assert!(upcast(1, &mut no_data).is_err());
    }
}
