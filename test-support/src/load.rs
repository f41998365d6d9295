//! Concurrent clients placing orders, for the tests that restart, kill or fence a
//! writer while orders flow: each client is a task that records what it was
//! acknowledged in one shared record; a test waits (bounded) for enough
//! acknowledgements, stops the clients or lets them finish, and takes the record.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Pause between two looks at the record while waiting for acknowledgements.
const ACKS_POLL: Duration = Duration::from_millis(1);

/// A record of acknowledgements that can say how many it holds.
pub trait Acks {
    /// Acknowledgements so far (what a test waits for before a kill).
    fn count(&self) -> usize;
}

/// Running clients: their shared record of acknowledgements, the flag that stops
/// them, their tasks.
pub struct Load<T> {
    acked: Arc<Mutex<T>>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl<T: Default + Send + 'static> Load<T> {
    /// Starts `clients` tasks: client `c` runs `client(c, record, stop)`, records each
    /// acknowledgement in `record`, and ends when it placed its share or `stop` is set
    /// (or as it decides, e.g. when its server goes away).
    pub fn start<F, Fut>(clients: usize, client: F) -> Load<T>
    where
        F: Fn(usize, Arc<Mutex<T>>, Arc<AtomicBool>) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let acked = Arc::new(Mutex::new(T::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = (0..clients)
            .map(|c| tokio::spawn(client(c, acked.clone(), stop.clone())))
            .collect();
        Load { acked, stop, tasks }
    }

    /// The record as it is now (the clients wait while it is held).
    pub fn acked(&self) -> MutexGuard<'_, T> {
        self.acked.lock().unwrap()
    }

    /// Waits for every client to end by itself (its share placed, or its server
    /// gone); a client that failed an assertion fails the test. Returns the record.
    pub async fn finish(self) -> T {
        for task in self.tasks {
            task.await.expect("a client saw a wrong answer");
        }
        std::mem::take(&mut *self.acked.lock().unwrap())
    }

    /// Sets the stop flag, then [`Load::finish`].
    pub async fn stop(self) -> T {
        self.stop.store(true, Ordering::Relaxed);
        self.finish().await
    }
}

impl<T: Acks> Load<T> {
    /// Waits (bounded by `timeout`) until the record holds at least `n`
    /// acknowledgements; panics saying `what` and how many came.
    pub async fn acks_reach(&self, n: usize, timeout: Duration, what: &str) {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.acked.lock().unwrap().count();
            if got >= n {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: {got} of {n} acknowledgements within {timeout:?}"
            );
            tokio::time::sleep(ACKS_POLL).await;
        }
    }
}
