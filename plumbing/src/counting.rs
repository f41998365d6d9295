//! Request counts that cost next to nothing per request: each thread adds to cells
//! of its own (no cache line is shared between the threads that serve requests),
//! and every render of `/metrics` first adds the cells of all threads up into the
//! recorder's `foldbook_http_requests_total`, by route and status.
//!
//! A shared counter per label pair, looked up in a locked map per request, cost
//! about 5% of a small read's time (docs/performance.md); a shared atomic alone
//! still bounces its cache line between the cores at every request.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// A route label and a status: one series of `foldbook_http_requests_total`.
type Key = (&'static str, u16);

/// Every thread's cells, for the sum at render time. A thread's cells stay here
/// after it ends, so nothing it counted is lost.
static CELLS: Mutex<Vec<(Key, Arc<AtomicU64>)>> = Mutex::new(Vec::new());

thread_local! {
    /// This thread's cells: few (routes times the statuses they answer), so a
    /// linear search is quicker than hashing the label.
    static LOCAL: RefCell<Vec<(Key, Arc<AtomicU64>)>> = const { RefCell::new(Vec::new()) };
}

/// Counts one request answered on `route` with `status`.
pub fn count_request(route: &'static str, status: u16) {
    LOCAL.with(|local| {
        let mut local = local.borrow_mut();
        let found = local
            .iter()
            .find(|((r, s), _)| *s == status && (std::ptr::eq(*r, route) || *r == route));
        let cell = match found {
            Some((_, cell)) => cell.clone(),
            None => {
                let cell = Arc::new(AtomicU64::new(0));
                CELLS
                    .lock()
                    .expect("cells lock")
                    .push(((route, status), cell.clone()));
                local.push(((route, status), cell.clone()));
                cell
            }
        };
        // Only this thread writes its cell; the sum only reads it.
        cell.store(cell.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    });
}

/// Adds every thread's cells up into the recorder's counters (called before each
/// render of `/metrics`).
pub(crate) fn fold_into_recorder() {
    let mut sums: Vec<(Key, u64)> = Vec::new();
    for (key, cell) in CELLS.lock().expect("cells lock").iter() {
        let n = cell.load(Ordering::Relaxed);
        match sums.iter_mut().find(|(k, _)| k == key) {
            Some((_, sum)) => *sum += n,
            None => sums.push((*key, n)),
        }
    }
    for ((route, status), sum) in sums {
        // `absolute` keeps the larger of the two: the sums only grow.
        metrics::counter!(
            "foldbook_http_requests_total",
            "route" => route,
            "status" => status.to_string()
        )
        .absolute(sum);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rendered(route: &str, status: u16) -> Option<u64> {
        let text = crate::prometheus::render();
        let series =
            format!("foldbook_http_requests_total{{route=\"{route}\",status=\"{status}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&series))
            .map(|n| n.trim().parse().unwrap())
    }

    #[test]
    fn counts_of_every_thread_add_up_at_render() {
        static ROUTE: &str = "counting-test";
        count_request(ROUTE, 200);
        let threads: Vec<_> = (0..3)
            .map(|_| {
                std::thread::spawn(|| {
                    for _ in 0..10 {
                        count_request("counting-test", 200);
                    }
                    count_request(ROUTE, 404);
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(rendered(ROUTE, 200), Some(31));
        assert_eq!(rendered(ROUTE, 404), Some(3));
        count_request(ROUTE, 200);
        assert_eq!(rendered(ROUTE, 200), Some(32), "a later render sees more");
    }
}
