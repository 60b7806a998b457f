//! Tasks a tunnel or a WireGuard device spawns, each owned by one value and named by the tracing
//! span it runs in: dropping the owner aborts the task, so a tunnel that fails half way, or whose own
//! task is aborted, leaves no listener, pump, packet loop or timer running behind it.

use std::future::Future;

use tokio::task::{JoinError, JoinHandle};
use tracing::Instrument;

/// A spawned task, aborted when this is dropped.
#[derive(Debug)]
pub struct OwnedTask<T>(JoinHandle<T>);

impl<T: Send + 'static> OwnedTask<T> {
    /// Spawns `future` in a span `task` named `name`, a child of the caller's span (a tunnel's).
    pub fn spawn(name: &'static str, future: impl Future<Output = T> + Send + 'static) -> Self {
        let span = tracing::info_span!("task", name);
        OwnedTask(tokio::spawn(future.instrument(span)))
    }

    /// Waits for the task's end (a panic or an abort is the error).
    pub async fn join(&mut self) -> Result<T, JoinError> {
        (&mut self.0).await
    }

    /// Aborts the task and waits until it is gone.
    pub async fn stop(mut self) {
        self.0.abort();
        let _ = self.join().await;
    }
}

impl<T> Drop for OwnedTask<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}
