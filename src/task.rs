//! Tasks a tunnel or a WireGuard device spawns, each owned by one value and named by the tracing
//! span it runs in: dropping the owner aborts the task, so a tunnel that fails half way, or whose own
//! task is aborted, leaves no listener, pump, packet loop or timer running behind it. Their periodic
//! ticks fall on one grid shared by the process, so that many tunnels cost one wake-up per tick.

use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::task::{JoinError, JoinHandle};
use tokio::time::{Instant, Interval};
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

/// An interval whose ticks fall on a grid of `period` that all tunnels of the process share (multiples of
/// `period` of the wall clock), its first tick on the next grid point. Tunnels' periodic tasks then tick
/// together and tokio wakes once for all of them instead of once for each: scattered ticks were most of
/// the idle CPU of 256 tunnels (BENCHMARKS.md, "256 tunnels on the real VPP").
pub fn shared_interval(period: Duration) -> Interval {
    tokio::time::interval_at(next_shared_tick(period), period)
}

/// The next point of the shared grid of `period` (see [`shared_interval`]).
pub fn next_shared_tick(period: Duration) -> Instant {
    let period_ns = period.as_nanos().max(1);
    let wall_ns = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let to_next = u64::try_from(period_ns - wall_ns % period_ns).unwrap_or(u64::MAX);
    Instant::now() + Duration::from_nanos(to_next)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two tunnels that start apart get the same grid point, or points one period apart when a grid
    /// point passed between them: never a phase of their own.
    #[tokio::test]
    async fn ticks_started_apart_fall_on_the_same_grid() {
        let period = Duration::from_millis(250);
        let first = next_shared_tick(period);
        tokio::time::sleep(Duration::from_millis(30)).await;
        let second = next_shared_tick(period);
        let apart = second - first;
        let slack = Duration::from_millis(2);
        assert!(
            apart < slack || apart.abs_diff(period) < slack,
            "{apart:?} apart"
        );
        assert!(second - Instant::now() <= period);
    }
}
