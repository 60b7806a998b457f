//! Neighbour installs off the packet path. The l2 side calls [`NeighbourHandle::install`] after each ARP
//! reply or NA it sends; that never blocks (a bounded queue; when it is full the request is dropped and
//! counted). A control task drains the queue over the shared API connection, skips pairs already installed
//! (VPP re-ARPs often), retries failures with backoff, logs and counts them, never failing the tunnel, and
//! re-installs everything when the client has reconnected to a restarted VPP. At exit it hands back an
//! [`Undo`] for every entry it installed.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::client::Client;
use super::install::Installer;
use super::types::{IpNeighborFlags, MacAddr};
use super::undo::Undo;

/// Most entries installed at once: a flood of solicitations for every address of a large response range
/// must not fill VPP's neighbour table. Beyond it, requests are refused and counted.
pub const MAX_INSTALLED: usize = 4096;
/// Attempts per entry before giving up (until the next request for it).
const MAX_ATTEMPTS: u32 = 5;
/// Delay before the first retry; doubled for each later one.
const FIRST_RETRY: Duration = Duration::from_secs(1);
/// How often the task looks for a reconnect (a new client generation).
const RECONNECT_CHECK: Duration = Duration::from_millis(500);

/// Counters of the installer (monotonic).
#[derive(Debug, Default)]
pub struct NeighbourStats {
    requested: AtomicU64,
    installed: AtomicU64,
    duplicates: AtomicU64,
    failed: AtomicU64,
    queue_full: AtomicU64,
    over_limit: AtomicU64,
}

/// A snapshot of [`NeighbourStats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NeighbourCounts {
    /// Requests accepted into the queue.
    pub requested: u64,
    /// Entries installed in VPP (re-installs after a VPP restart included).
    pub installed: u64,
    /// Requests for a pair already installed.
    pub duplicates: u64,
    /// Failed attempts (each is logged).
    pub failed: u64,
    /// Requests dropped because the queue was full.
    pub queue_full: u64,
    /// Requests refused because [`MAX_INSTALLED`] entries were installed already.
    pub over_limit: u64,
}

impl NeighbourStats {
    fn snapshot(&self) -> NeighbourCounts {
        NeighbourCounts {
            requested: self.requested.load(Ordering::Relaxed),
            installed: self.installed.load(Ordering::Relaxed),
            duplicates: self.duplicates.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            queue_full: self.queue_full.load(Ordering::Relaxed),
            over_limit: self.over_limit.load(Ordering::Relaxed),
        }
    }
}

/// The packet path's side: cheap to clone, never blocks.
#[derive(Debug, Clone)]
pub struct NeighbourHandle {
    tx: mpsc::Sender<(IpAddr, MacAddr)>,
    stats: Arc<NeighbourStats>,
}

impl NeighbourHandle {
    /// Asks for `ip` → `mac` to be installed on the BVI. Returns false when the request was dropped
    /// (queue full or installer stopped); that is counted, and the next ARP/NA will ask again.
    pub fn install(&self, ip: IpAddr, mac: MacAddr) -> bool {
        match self.tx.try_send((ip, mac)) {
            Ok(()) => {
                self.stats.requested.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(_) => {
                self.stats.queue_full.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    /// The installer's counters.
    pub fn counts(&self) -> NeighbourCounts {
        self.stats.snapshot()
    }
}

/// The control task that installs neighbour entries.
#[derive(Debug)]
pub struct NeighbourInstaller {
    handle: NeighbourHandle,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Vec<Undo>>,
}

impl NeighbourInstaller {
    /// Starts the control task with a queue of `capacity` requests.
    pub fn spawn(
        client: Client,
        installer: Installer,
        flags: IpNeighborFlags,
        capacity: usize,
    ) -> Self {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let stats = Arc::new(NeighbourStats::default());
        let (stop, stopped) = oneshot::channel();
        let worker = Worker {
            generation: client.generation(),
            client,
            installer,
            flags,
            stats: Arc::clone(&stats),
            installed: HashMap::new(),
            retry: HashMap::new(),
        };
        let task = tokio::spawn(worker.run(rx, stopped));
        Self {
            handle: NeighbourHandle { tx, stats },
            stop,
            task,
        }
    }

    /// A handle for the packet path.
    pub fn handle(&self) -> NeighbourHandle {
        self.handle.clone()
    }

    /// Stops the task (requests still queued are dropped) and returns how to remove every entry it
    /// installed, for [`super::VppTunnel::record`].
    pub async fn stop(self) -> Vec<Undo> {
        // The task may already be gone; then there is nothing to stop.
        let _ = self.stop.send(());
        self.task.await.unwrap_or_else(|e| {
            tracing::error!(error = %e, "the neighbour installer task failed");
            Vec::new()
        })
    }
}

struct Retry {
    mac: MacAddr,
    attempts: u32,
    at: Instant,
}

struct Worker {
    client: Client,
    installer: Installer,
    flags: IpNeighborFlags,
    stats: Arc<NeighbourStats>,
    generation: u64,
    // INVARIANT: holds exactly the pairs VPP acknowledged under `generation`.
    installed: HashMap<IpAddr, MacAddr>,
    retry: HashMap<IpAddr, Retry>,
}

impl Worker {
    async fn run(
        mut self,
        mut rx: mpsc::Receiver<(IpAddr, MacAddr)>,
        mut stop: oneshot::Receiver<()>,
    ) -> Vec<Undo> {
        // Notices a reconnect to a restarted VPP even when no request comes in.
        let mut reconnect_check = tokio::time::interval(RECONNECT_CHECK);
        loop {
            let next_retry = self.retry.values().map(|r| r.at).min();
            tokio::select! {
                _ = &mut stop => break,
                request = rx.recv() => match request {
                    Some((ip, mac)) => self.request(ip, mac).await,
                    None => break,
                },
                () = sleep_until(next_retry) => self.retry_due().await,
                _ = reconnect_check.tick() => {
                    if self.notice_reconnect() {
                        self.retry_due().await;
                    }
                }
            }
        }
        let (installer, flags) = (self.installer, self.flags);
        self.installed
            .into_iter()
            .map(|(ip, mac)| Undo::Neighbour {
                ip,
                mac,
                flags,
                installer: installer.clone(),
            })
            .collect()
    }

    async fn request(&mut self, ip: IpAddr, mac: MacAddr) {
        if self.installer.is_none() {
            return;
        }
        self.notice_reconnect();
        if self.installed.get(&ip) == Some(&mac) {
            self.stats.duplicates.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if !self.installed.contains_key(&ip)
            && self.installed.len() + self.retry.len() >= MAX_INSTALLED
        {
            if self.stats.over_limit.fetch_add(1, Ordering::Relaxed) == 0 {
                tracing::warn!(limit = MAX_INSTALLED, %ip, "neighbour installs at their limit; more are refused");
            }
            return;
        }
        self.retry.remove(&ip);
        self.attempt(ip, mac, 0).await;
    }

    /// After a reconnect VPP may have restarted and lost every entry: install them all again. Returns
    /// true when there was a reconnect.
    fn notice_reconnect(&mut self) -> bool {
        let generation = self.client.generation();
        if generation == self.generation {
            return false;
        }
        self.generation = generation;
        let now = Instant::now();
        for (ip, mac) in self.installed.drain() {
            self.retry.insert(
                ip,
                Retry {
                    mac,
                    attempts: 0,
                    at: now,
                },
            );
        }
        tracing::info!(
            generation,
            entries = self.retry.len(),
            "VPP reconnected, re-installing neighbours"
        );
        true
    }

    async fn retry_due(&mut self) {
        self.notice_reconnect();
        let now = Instant::now();
        let due: Vec<(IpAddr, MacAddr, u32)> = self
            .retry
            .iter()
            .filter(|(_, r)| r.at <= now)
            .map(|(ip, r)| (*ip, r.mac, r.attempts))
            .collect();
        for (ip, mac, attempts) in due {
            self.retry.remove(&ip);
            self.attempt(ip, mac, attempts).await;
        }
    }

    async fn attempt(&mut self, ip: IpAddr, mac: MacAddr, previous_attempts: u32) {
        if self.flags.contains(IpNeighborFlags::NO_FIB_ENTRY) {
            // VPP applies no-fib-entry only when it creates an entry, and it has usually learned this one
            // (with its FIB entry) from the answer we just sent: replace it. A missing entry is no error.
            let _ = self
                .installer
                .neighbour(&self.client, false, ip, mac, IpNeighborFlags::NONE)
                .await;
        }
        match self
            .installer
            .neighbour(&self.client, true, ip, mac, self.flags)
            .await
        {
            Ok(()) => {
                self.stats.installed.fetch_add(1, Ordering::Relaxed);
                self.installed.insert(ip, mac);
                tracing::debug!(%ip, %mac, "neighbour installed in VPP");
            }
            Err(error) => {
                self.stats.failed.fetch_add(1, Ordering::Relaxed);
                let attempts = previous_attempts + 1;
                if attempts < MAX_ATTEMPTS {
                    let delay = FIRST_RETRY * 2u32.pow(attempts - 1);
                    tracing::warn!(%ip, %mac, %error, attempts, retry_in = ?delay, "neighbour install failed");
                    self.retry.insert(
                        ip,
                        Retry {
                            mac,
                            attempts,
                            at: Instant::now() + delay,
                        },
                    );
                } else {
                    tracing::warn!(%ip, %mac, %error, attempts, "neighbour install failed, giving up until asked again");
                }
            }
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_drops_and_counts() {
        let (tx, _rx) = mpsc::channel(1);
        let handle = NeighbourHandle {
            tx,
            stats: Arc::default(),
        };
        let ip: IpAddr = "172.22.77.33".parse().unwrap();
        assert!(handle.install(ip, MacAddr([2, 0, 0, 0, 0, 1])));
        assert!(!handle.install(ip, MacAddr([2, 0, 0, 0, 0, 1])));
        assert_eq!(
            handle.counts(),
            NeighbourCounts {
                requested: 1,
                queue_full: 1,
                ..NeighbourCounts::default()
            }
        );
    }
}
