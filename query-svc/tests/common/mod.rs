//! Helpers shared by the read side's in-process tests.

use std::time::Duration;

/// Waits (at most 10 s) until the read side reports an error, and returns it;
/// fails the test saying `what` was expected otherwise.
pub async fn wait_read_error(state: &query_svc::QueryState, what: &str) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(error) = state.error() {
            return error;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no read error within 10 s: {what} (applied seq {})",
            state.applied_seq()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
