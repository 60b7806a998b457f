//! The adapter: one tunnel's Ethernet side, shared by whoever runs its RX and TX paths.
//!
//! Ownership, chosen so that data races cannot be written (unlike the original, B2):
//! - the configuration is immutable after construction, so both paths read it without locking;
//! - the neighbour cache and its packet queue sit behind one `Mutex`, taken only by ARP/ND frames,
//!   packets to learning-range destinations, [`Adapter::poll_transmit`] and status reads. Frames and
//!   packets for the gateway, for multicast groups and for our own MAC never touch it;
//! - counters and the tunnel MTU are relaxed atomics, the counters one cache-line bank per direction.
//!
//! `Adapter` is therefore `Send + Sync`: put it in an `Arc` and call it from the RX and TX threads at once.
//! It never sends anything itself: every frame to send is written into a buffer the caller provides.

use std::net::IpAddr;
use std::ops::Range;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use super::DropReason;
use super::config::L2Config;
use super::counters::{Counters, CountersSnapshot, Direction, Event};
use super::neighbours::{Losses, NeighbourCache, NeighbourEntry};
use super::wire::MacAddr;

/// The Ethernet side of one tunnel. See the module documentation for who may call what.
pub struct Adapter {
    pub(super) config: L2Config,
    pub(super) cache: Mutex<NeighbourCache>,
    pub(super) counters: Counters,
    /// The tunnel MTU: known only once VPP's BVI has been read, so set after construction.
    mtu: AtomicU16,
}

/// The tunnel MTU until [`Adapter::set_mtu`]: WireGuard's usual 1420 (a 1500-byte path less 80 bytes).
pub const DEFAULT_MTU: u16 = 1420;

/// What to do with a frame from VPP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RxAction {
    /// Hand `frame[range]` to WireGuard: an IPv4 or IPv6 packet, Ethernet padding trimmed off.
    Deliver(Range<usize>),
    /// Send the reply frame written into `reply[..len]` back to VPP.
    Reply(usize),
    /// The frame was handled (e.g. a neighbour learned) and needs nothing more.
    Consumed,
    /// The frame was dropped and counted.
    Dropped(DropReason),
}

/// A neighbour's address and MAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Neighbour {
    /// The neighbour's address.
    pub ip: IpAddr,
    /// Its MAC.
    pub mac: MacAddr,
}

/// Everything one frame from VPP led to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RxOutcome {
    /// The frame's fate.
    pub action: RxAction,
    /// A neighbour learned or moved to a new MAC by this frame. Packets queued for it are ready: call
    /// [`Adapter::poll_transmit`].
    pub learned: Option<Neighbour>,
    /// A claimed address whose answer went to the gateway (or a group) and that the configuration asks
    /// to install as a VPP neighbour (claimed address -> our MAC on the BVI, spec section 8). Installing,
    /// and not re-installing an unchanged pair, is the caller's job, off the packet path.
    pub install: Option<IpAddr>,
}

impl RxOutcome {
    pub(super) fn action(action: RxAction) -> RxOutcome {
        RxOutcome {
            action,
            learned: None,
            install: None,
        }
    }

    pub(super) fn dropped(reason: DropReason) -> RxOutcome {
        RxOutcome::action(RxAction::Dropped(reason))
    }
}

/// What to do with an IP packet from WireGuard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxAction {
    /// Send this Ethernet header followed by the packet.
    Send([u8; super::wire::ethernet::HEADER_LEN]),
    /// The packet waits (copied) while its destination is resolved. A solicitation is due: call
    /// [`Adapter::poll_transmit`], which also returns the packet once the answer has arrived.
    Queued,
    /// The packet was dropped and counted.
    Dropped(DropReason),
}

/// A frame [`Adapter::poll_transmit`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transmit {
    /// Its length in the caller's buffer.
    pub len: usize,
    /// What it is.
    pub kind: TransmitKind,
}

/// The kinds of frames [`Adapter::poll_transmit`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransmitKind {
    /// A queued packet, now that its destination is known.
    Flushed,
    /// A broadcast ARP request or multicast NS for an unresolved destination.
    Solicitation,
    /// A unicast ARP request or NS re-checking a stale neighbour.
    Probe,
}

impl Adapter {
    /// An adapter for `config`. Allocates the neighbour cache and its packet buffers up front.
    pub fn new(config: L2Config) -> Adapter {
        let cache = NeighbourCache::new(config.neighbours);
        Adapter {
            config,
            cache: Mutex::new(cache),
            counters: Counters::default(),
            mtu: AtomicU16::new(DEFAULT_MTU),
        }
    }

    /// The tunnel MTU: the largest IP packet from VPP carried as it is. A larger one that may not be
    /// fragmented is answered with ICMP "too big" naming this MTU.
    pub fn mtu(&self) -> u16 {
        self.mtu.load(Ordering::Relaxed)
    }

    /// Sets the tunnel MTU (see [`Adapter::mtu`]).
    pub fn set_mtu(&self, mtu: u16) {
        self.mtu.store(mtu, Ordering::Relaxed);
    }

    /// The configuration.
    pub fn config(&self) -> &L2Config {
        &self.config
    }

    /// The counters at this moment.
    pub fn counters(&self) -> CountersSnapshot {
        self.counters.snapshot()
    }

    /// Every neighbour in the cache, for status and metrics.
    pub fn neighbours(&self, now: Instant) -> Vec<NeighbourEntry> {
        self.lock_cache().entries(now).collect()
    }

    /// When [`Adapter::poll_transmit`] next has something to do (a solicitation, a probe or an expiry);
    /// `now` when queued packets are ready, `None` when nothing is scheduled. Poll also after any burst
    /// that learned or queued something.
    pub fn poll_at(&self, now: Instant) -> Option<Instant> {
        let cache = self.lock_cache();
        if cache.has_ready() {
            return Some(now);
        }
        cache.poll_at()
    }

    /// The neighbour cache. A panic elsewhere while it was held leaves it consistent enough to go on
    /// (every operation leaves whole entries), so poisoning is ignored rather than spread to every thread.
    pub(super) fn lock_cache(&self) -> MutexGuard<'_, NeighbourCache> {
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn count_losses(&self, direction: Direction, losses: Losses) {
        if losses.unresolved > 0 {
            self.counters
                .drops(direction, DropReason::Unresolved, losses.unresolved);
        }
        for _ in 0..losses.forgotten {
            self.counters.event(direction, Event::Forgotten);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adapter_is_shareable_between_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Adapter>();
    }
}
