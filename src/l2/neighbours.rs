//! The neighbour cache for destinations in the learning ranges: learned MACs with ageing and unicast
//! re-probing, resolution with a small per-destination queue, and at most one solicitation per
//! destination per retransmission interval. A simplified RFC 4861 §7.3 state machine, used for ARP too.
//!
//! It is a plain data structure: no clock (every call takes `now`), no locking (the adapter owns it
//! behind its mutex), no I/O (frames to send are written into the caller's buffer by [`NeighbourCache::poll`]).

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::config::NeighbourSettings;
use super::pending::{PacketSlab, Slot, SlotQueue};
use super::wire::MacAddr;

/// How often at most the "destination unreachable" warning is logged.
const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// What the cache says about sending a packet to a destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Resolution {
    /// Send to this MAC.
    Found(MacAddr),
    /// The packet waits for resolution. `replaced_oldest` when it pushed the oldest queued packet out.
    Queued { replaced_oldest: bool },
    /// The packet could not be queued (no free buffer, or too large); resolution goes on.
    NoRoom,
}

/// What a learned (address, MAC) pair changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Learning {
    /// A new neighbour, or a resolved one; `flushable` queued packets are ready for `poll`.
    New { flushable: usize },
    /// A known neighbour moved to another MAC.
    Changed,
    /// A known neighbour confirmed at the same MAC.
    Confirmed,
    /// A different MAC without the override flag: kept the old one (RFC 4861 §7.2.5).
    Kept,
}

/// Something `poll` wants sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Due<'a> {
    /// A queued packet whose destination is now known.
    Packet {
        mac: MacAddr,
        packet: &'a [u8],
        slot: Slot,
    },
    /// A solicitation for `target` from `source`: broadcast/multicast, or unicast to `unicast_to`.
    Solicit {
        target: IpAddr,
        source: IpAddr,
        unicast_to: Option<MacAddr>,
    },
}

/// A neighbour as shown for status and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NeighbourEntry {
    /// The neighbour's address.
    pub ip: IpAddr,
    /// Its MAC, `None` while it is being resolved.
    pub mac: Option<MacAddr>,
    /// Its state.
    pub state: NeighbourState,
    /// Packets waiting for it.
    pub queued: usize,
}

/// The state of a neighbour entry (the RFC 4861 names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NeighbourState {
    /// Being resolved: solicitations are going out and packets wait.
    Incomplete,
    /// Confirmed within the reachable time.
    Reachable,
    /// Not confirmed lately; still used, and re-probed by unicast on use.
    Stale,
    /// Stale and being re-probed.
    Probe,
}

#[derive(Debug)]
struct Entry {
    /// `None` while incomplete.
    mac: Option<MacAddr>,
    /// Creation (incomplete) or the last confirmation.
    confirmed_at: Instant,
    last_used: Instant,
    /// When the next solicitation or probe is due; `None` when none is wanted.
    solicit_at: Option<Instant>,
    /// Solicitations or probes sent since the last confirmation.
    solicits: u8,
    /// Our address to solicit from.
    source: IpAddr,
    queue: SlotQueue,
}

impl Entry {
    fn is_stale(&self, now: Instant, reachable: Duration) -> bool {
        now >= self.confirmed_at + reachable
    }

    /// When this entry next needs attention from `poll`.
    fn deadline(&self, reachable: Duration) -> Instant {
        match self.solicit_at {
            Some(at) => at,
            // An idle stale entry is forgotten a reachable time after its last use.
            None => self.confirmed_at.max(self.last_used) + reachable,
        }
    }
}

/// The neighbour cache of one address family or both (keys are `IpAddr`).
pub(crate) struct NeighbourCache {
    settings: NeighbourSettings,
    // INVARIANT: entries.len() <= settings.capacity, and the map is allocated for twice that, so that
    // clearing the tombstones of removed entries is always done in place: it never allocates again.
    entries: HashMap<IpAddr, Entry>,
    slab: PacketSlab,
    // INVARIANT: holds at most slab.capacity() items (each slot is in one place), so it never grows.
    ready: VecDeque<(Slot, MacAddr)>,
    /// No entry needs `poll` before this; `None` when no entry needs it at all.
    next_deadline: Option<Instant>,
    /// Rate limit of the unreachable warning.
    log_after: Option<Instant>,
    log_suppressed: u64,
}

/// Counts for the adapter's counters, returned by the operations that drop or forget.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Losses {
    /// Queued packets dropped because their destination did not answer (or was evicted).
    pub unresolved: u64,
    /// Entries forgotten.
    pub forgotten: u64,
}

impl core::ops::AddAssign for Losses {
    fn add_assign(&mut self, other: Losses) {
        self.unresolved += other.unresolved;
        self.forgotten += other.forgotten;
    }
}

impl NeighbourCache {
    pub(crate) fn new(settings: NeighbourSettings) -> NeighbourCache {
        let capacity = settings.capacity.max(1);
        let slab = PacketSlab::new(settings.queued_packets);
        NeighbourCache {
            settings: NeighbourSettings {
                capacity,
                ..settings
            },
            entries: HashMap::with_capacity(capacity.saturating_mul(2)),
            ready: VecDeque::with_capacity(slab.capacity()),
            slab,
            next_deadline: None,
            log_after: None,
            log_suppressed: 0,
        }
    }

    fn wake_at(&mut self, at: Instant) {
        self.next_deadline = Some(self.next_deadline.map_or(at, |current| current.min(at)));
    }

    /// Resolves `dst` for a packet from `source` (our address to solicit from, chosen by the caller):
    /// found, or queued (a solicitation is then due at once unless one went out less than a retransmission
    /// interval ago). A stale neighbour is still used, and a unicast probe is scheduled.
    pub(crate) fn resolve(
        &mut self,
        dst: IpAddr,
        source: IpAddr,
        packet: &[u8],
        now: Instant,
    ) -> (Resolution, Losses) {
        let reachable = self.settings.reachable_time;
        // The common case first, with a single hash lookup: a known neighbour.
        if let Some(entry) = self.entries.get_mut(&dst)
            && let Some(mac) = entry.mac
        {
            entry.last_used = now;
            let probe =
                entry.is_stale(now, reachable) && entry.solicit_at.is_none() && entry.solicits == 0;
            if probe {
                entry.source = source;
                entry.solicit_at = Some(now);
                self.wake_at(now);
            }
            return (Resolution::Found(mac), Losses::default());
        }
        let mut losses = Losses::default();
        if !self.entries.contains_key(&dst) {
            losses = self.make_room(now);
            self.entries.insert(
                dst,
                Entry {
                    mac: None,
                    confirmed_at: now,
                    last_used: now,
                    solicit_at: Some(now),
                    solicits: 0,
                    source,
                    queue: SlotQueue::default(),
                },
            );
            self.wake_at(now);
        }
        let Some(entry) = self.entries.get_mut(&dst) else {
            return (Resolution::NoRoom, losses);
        };
        entry.last_used = now;
        let Some(slot) = self.slab.store(packet) else {
            return (Resolution::NoRoom, losses);
        };
        let replaced = entry.queue.push(slot, self.settings.queue_per_destination);
        if let Some(old) = replaced {
            self.slab.release(old);
        }
        (
            Resolution::Queued {
                replaced_oldest: replaced.is_some(),
            },
            losses,
        )
    }

    /// Records that `ip` is at `mac`. `override_existing` is false only for an NA without the O flag.
    /// Packets queued for `ip` become ready for [`NeighbourCache::poll`].
    pub(crate) fn learn(
        &mut self,
        ip: IpAddr,
        mac: MacAddr,
        override_existing: bool,
        now: Instant,
    ) -> (Learning, Losses) {
        let mut losses = Losses::default();
        if !self.entries.contains_key(&ip) {
            losses = self.make_room(now);
        }
        let entry = self.entries.entry(ip).or_insert(Entry {
            mac: None,
            confirmed_at: now,
            last_used: now,
            solicit_at: None,
            solicits: 0,
            source: ip,
            queue: SlotQueue::default(),
        });
        let learning = match entry.mac {
            None => {
                let queued = entry.queue.take();
                for slot in queued.as_slice() {
                    self.ready.push_back((*slot, mac));
                }
                Learning::New {
                    flushable: queued.len(),
                }
            }
            Some(old) if old == mac => Learning::Confirmed,
            Some(_) if !override_existing => return (Learning::Kept, losses),
            Some(_) => Learning::Changed,
        };
        entry.mac = Some(mac);
        entry.confirmed_at = now;
        entry.solicit_at = None;
        entry.solicits = 0;
        let idle_deadline = entry.deadline(self.settings.reachable_time);
        self.wake_at(idle_deadline);
        (learning, losses)
    }

    /// The MAC of `ip` if it is known (any state but incomplete), without touching the entry.
    pub(crate) fn get(&self, ip: &IpAddr) -> Option<MacAddr> {
        self.entries.get(ip).and_then(|entry| entry.mac)
    }

    /// The earliest time `poll` has something to do, `None` when nothing is pending. Ready packets make
    /// it "now" (any past instant).
    pub(crate) fn poll_at(&self) -> Option<Instant> {
        self.next_deadline
    }

    /// True when queued packets are ready to be sent.
    pub(crate) fn has_ready(&self) -> bool {
        !self.ready.is_empty()
    }

    /// Every packet buffer is free again and nothing is waiting: no slot leaked.
    #[cfg(test)]
    pub(crate) fn is_idle(&self) -> bool {
        self.ready.is_empty() && self.slab.free() == self.slab.capacity() && self.entries.is_empty()
    }

    /// The next thing to send: ready packets first, then due solicitations and probes. Expires what has
    /// run out of time on the way. Call [`NeighbourCache::sent`] after handling a `Due::Packet`.
    pub(crate) fn poll(&mut self, now: Instant) -> (Option<Due<'_>>, Losses) {
        let mut losses = Losses::default();
        if let Some(&(slot, mac)) = self.ready.front() {
            return (
                Some(Due::Packet {
                    mac,
                    packet: self.slab.get(slot),
                    slot,
                }),
                losses,
            );
        }
        // Expiring an entry is not something to send: scan again until something is due or nothing is.
        loop {
            if self.next_deadline.is_none_or(|at| now < at) {
                return (None, losses);
            }
            let (due, expired) = self.scan(now);
            match expired {
                Some(ip) => {
                    losses += self.forget(ip, now);
                    // Other entries may be due as well: look again at once.
                    self.next_deadline = Some(now);
                }
                None => return (due, losses),
            }
        }
    }

    /// One pass over the entries: takes the first due solicitation or probe (scheduling its successor),
    /// or names the first entry to forget; recomputes the next deadline.
    fn scan(&mut self, now: Instant) -> (Option<Due<'static>>, Option<IpAddr>) {
        let settings = self.settings;
        let mut next_deadline: Option<Instant> = None;
        let mut due = None;
        let mut expired: Option<IpAddr> = None;
        for (ip, entry) in self.entries.iter_mut() {
            let deadline = entry.deadline(settings.reachable_time);
            if now < deadline || due.is_some() || expired.is_some() {
                next_deadline = Some(next_deadline.map_or(deadline, |d| d.min(deadline)));
                continue;
            }
            let limit = if entry.mac.is_some() {
                settings.max_unicast_solicit
            } else {
                settings.max_multicast_solicit
            };
            if entry.solicit_at.is_none() || entry.solicits >= limit {
                // Idle and stale for a whole reachable time, or out of solicitations: forget it.
                expired = Some(*ip);
                continue;
            }
            entry.solicits += 1;
            let next = now + settings.retrans_time;
            entry.solicit_at = Some(next);
            next_deadline = Some(next_deadline.map_or(next, |d| d.min(next)));
            due = Some(Due::Solicit {
                target: *ip,
                source: entry.source,
                unicast_to: entry.mac,
            });
        }
        self.next_deadline = next_deadline;
        (due, expired)
    }

    /// Releases the ready packet `poll` returned.
    pub(crate) fn sent(&mut self, slot: Slot) {
        if self.ready.front().is_some_and(|(front, _)| *front == slot) {
            self.ready.pop_front();
            self.slab.release(slot);
        }
    }

    /// Every entry, for status.
    pub(crate) fn entries(&self, now: Instant) -> impl Iterator<Item = NeighbourEntry> + '_ {
        let reachable = self.settings.reachable_time;
        self.entries.iter().map(move |(ip, entry)| NeighbourEntry {
            ip: *ip,
            mac: entry.mac,
            state: match (entry.mac, entry.solicit_at) {
                (None, _) => NeighbourState::Incomplete,
                (Some(_), _) if !entry.is_stale(now, reachable) => NeighbourState::Reachable,
                (Some(_), Some(_)) => NeighbourState::Probe,
                (Some(_), None) => NeighbourState::Stale,
            },
            queued: entry.queue.len(),
        })
    }

    /// Removes `ip`, dropping its queue.
    fn forget(&mut self, ip: IpAddr, now: Instant) -> Losses {
        let Some(entry) = self.entries.remove(&ip) else {
            return Losses::default();
        };
        let dropped = entry.queue.len() as u64;
        for slot in entry.queue.as_slice() {
            self.slab.release(*slot);
        }
        if dropped > 0 || entry.mac.is_none() {
            self.log_unreachable(ip, dropped, now);
        }
        Losses {
            unresolved: dropped,
            forgotten: 1,
        }
    }

    /// Evicts the entry nearest expiry when the cache is full.
    fn make_room(&mut self, now: Instant) -> Losses {
        if self.entries.len() < self.settings.capacity {
            return Losses::default();
        }
        let victim = self
            .entries
            .iter()
            // Known entries go before ones being resolved, then the least recently confirmed or used.
            .min_by_key(|(_, entry)| (entry.mac.is_none(), entry.confirmed_at.max(entry.last_used)))
            .map(|(ip, _)| *ip);
        match victim {
            Some(ip) => self.forget(ip, now),
            None => Losses::default(),
        }
    }

    /// One warning line per [`LOG_INTERVAL`] at most, counting the ones held back.
    fn log_unreachable(&mut self, ip: IpAddr, dropped: u64, now: Instant) {
        if self.log_after.is_some_and(|after| now < after) {
            self.log_suppressed += 1;
            return;
        }
        tracing::warn!(
            neighbour = %ip,
            dropped_packets = dropped,
            similar_suppressed = self.log_suppressed,
            "neighbour did not answer ARP/NS; queued packets dropped"
        );
        self.log_after = Some(now + LOG_INTERVAL);
        self.log_suppressed = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 0x0a]);
    const OTHER_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 0x0b]);

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn settings() -> NeighbourSettings {
        NeighbourSettings {
            reachable_time: Duration::from_secs(30),
            capacity: 4,
            queue_per_destination: 2,
            queued_packets: 4,
            ..NeighbourSettings::default()
        }
    }

    fn source() -> IpAddr {
        ip("172.22.77.33")
    }

    /// Polls until nothing is due, collecting what went out.
    fn drain(cache: &mut NeighbourCache, now: Instant) -> Vec<String> {
        let mut out = Vec::new();
        loop {
            let (due, _) = cache.poll(now);
            match due {
                Some(Due::Packet { mac, packet, slot }) => {
                    out.push(format!("packet {packet:?} to {mac}"));
                    cache.sent(slot);
                }
                Some(Due::Solicit {
                    target,
                    unicast_to: Some(mac),
                    ..
                }) => out.push(format!("probe {target} at {mac}")),
                Some(Due::Solicit {
                    target,
                    unicast_to: None,
                    ..
                }) => out.push(format!("solicit {target}")),
                None => return out,
            }
        }
    }

    #[test]
    fn resolution_queues_solicits_and_flushes_in_order() {
        let t0 = Instant::now();
        let mut cache = NeighbourCache::new(settings());
        let dst = ip("10.127.111.7");
        assert_eq!(
            cache.resolve(dst, source(), &[1], t0).0,
            Resolution::Queued {
                replaced_oldest: false
            }
        );
        assert_eq!(
            cache.resolve(dst, source(), &[2], t0).0,
            Resolution::Queued {
                replaced_oldest: false
            }
        );
        assert_eq!(
            cache.resolve(dst, source(), &[3], t0).0,
            Resolution::Queued {
                replaced_oldest: true
            }
        );
        assert_eq!(drain(&mut cache, t0), ["solicit 10.127.111.7"]);
        // Within the retransmission interval: nothing more.
        assert_eq!(
            drain(&mut cache, t0 + Duration::from_millis(999)),
            Vec::<String>::new()
        );
        assert_eq!(
            cache
                .learn(dst, MAC, true, t0 + Duration::from_millis(1500))
                .0,
            Learning::New { flushable: 2 }
        );
        assert_eq!(
            drain(&mut cache, t0 + Duration::from_millis(1500)),
            [
                "packet [2] to 02:00:00:00:00:0a",
                "packet [3] to 02:00:00:00:00:0a"
            ]
        );
        assert_eq!(
            cache
                .resolve(dst, source(), &[4], t0 + Duration::from_secs(2))
                .0,
            Resolution::Found(MAC)
        );
    }

    #[test]
    fn unanswered_solicitations_give_up_after_the_limit_once_per_second() {
        let t0 = Instant::now();
        let mut cache = NeighbourCache::new(settings());
        let dst = ip("10.127.111.8");
        cache.resolve(dst, source(), &[1], t0);
        let mut sent = Vec::new();
        let mut unresolved = 0;
        for tenth in 0..50 {
            let now = t0 + Duration::from_millis(100 * tenth);
            let (due, losses) = cache.poll(now);
            unresolved += losses.unresolved;
            if let Some(Due::Solicit { .. }) = due {
                sent.push(tenth);
            }
            if tenth == 15 {
                // More traffic meanwhile does not speed solicitations up.
                cache.resolve(dst, source(), &[2], now);
            }
        }
        assert_eq!(sent, [0, 10, 20], "three solicitations one second apart");
        assert_eq!(unresolved, 2, "both queued packets dropped at the end");
        assert!(cache.entries(t0).next().is_none(), "the entry is gone");
        // A new packet starts over, never sooner than a second after the last solicitation.
        let later = t0 + Duration::from_secs(5);
        cache.resolve(dst, source(), &[3], later);
        assert_eq!(drain(&mut cache, later), ["solicit 10.127.111.8"]);
    }

    #[test]
    fn stale_entries_are_used_and_probed_by_unicast_then_forgotten() {
        let t0 = Instant::now();
        let mut cache = NeighbourCache::new(settings());
        let dst = ip("10.127.111.9");
        cache.learn(dst, MAC, true, t0);
        let stale = t0 + Duration::from_secs(31);
        assert_eq!(
            drain(&mut cache, t0 + Duration::from_secs(1)),
            Vec::<String>::new()
        );
        assert_eq!(
            cache.resolve(dst, source(), &[1], stale).0,
            Resolution::Found(MAC)
        );
        assert_eq!(
            drain(&mut cache, stale),
            ["probe 10.127.111.9 at 02:00:00:00:00:0a"]
        );
        assert_eq!(
            cache.entries(stale).next().unwrap().state,
            NeighbourState::Probe
        );
        // An answer confirms it: no more probes.
        cache.learn(dst, MAC, true, stale + Duration::from_millis(200));
        assert_eq!(
            drain(&mut cache, stale + Duration::from_secs(2)),
            Vec::<String>::new()
        );
        assert_eq!(
            cache.entries(stale).next().unwrap().state,
            NeighbourState::Reachable
        );
        // Later, stale again and silent: three probes, then it is forgotten.
        let stale2 = stale + Duration::from_secs(40);
        cache.resolve(dst, source(), &[2], stale2);
        let mut probes = 0;
        let mut forgotten = 0;
        for second in 0..5 {
            let (due, losses) = cache.poll(stale2 + Duration::from_secs(second));
            probes += u64::from(matches!(
                due,
                Some(Due::Solicit {
                    unicast_to: Some(_),
                    ..
                })
            ));
            forgotten += losses.forgotten;
        }
        assert_eq!((probes, forgotten), (3, 1));
        assert_eq!(cache.get(&dst), None);
    }

    #[test]
    fn idle_stale_entries_age_out() {
        let t0 = Instant::now();
        let mut cache = NeighbourCache::new(settings());
        let idle = ip("10.127.111.10");
        cache.learn(idle, MAC, true, t0);
        assert_eq!(cache.poll_at(), Some(t0 + Duration::from_secs(30)));
        cache.resolve(ip("10.127.111.11"), source(), &[1], t0);
        let mut forgotten = 0;
        for second in 0..30 {
            forgotten += cache.poll(t0 + Duration::from_secs(second)).1.forgotten;
        }
        assert_eq!(
            forgotten, 1,
            "only the unanswered resolution gave up so far"
        );
        assert_eq!(cache.get(&idle), Some(MAC));
        for second in 30..32 {
            forgotten += cache.poll(t0 + Duration::from_secs(second)).1.forgotten;
        }
        assert_eq!(forgotten, 2);
        assert_eq!(cache.get(&idle), None);
        assert_eq!(cache.poll_at(), None, "nothing left to wait for");
    }

    #[test]
    fn an_expiry_does_not_hide_another_due_solicitation() {
        // A gives up at t0+3 while B's second solicitation is due at the same moment: one poll loop
        // must both forget A and send B's, whatever the map's iteration order.
        for _ in 0..20 {
            let t0 = Instant::now();
            let mut cache = NeighbourCache::new(settings());
            cache.resolve(ip("10.0.0.1"), source(), &[1], t0);
            for second in 0..3 {
                drain(&mut cache, t0 + Duration::from_secs(second));
            }
            cache.resolve(ip("10.0.0.2"), source(), &[2], t0 + Duration::from_secs(2));
            drain(&mut cache, t0 + Duration::from_secs(2));
            assert_eq!(
                drain(&mut cache, t0 + Duration::from_secs(3)),
                ["solicit 10.0.0.2"]
            );
            assert_eq!(cache.entries(t0).count(), 1);
        }
    }

    #[test]
    fn override_flag_and_changes() {
        let t0 = Instant::now();
        let mut cache = NeighbourCache::new(settings());
        let dst = ip("fd10:127:e00f::5");
        assert_eq!(
            cache.learn(dst, MAC, true, t0).0,
            Learning::New { flushable: 0 }
        );
        assert_eq!(cache.learn(dst, MAC, false, t0).0, Learning::Confirmed);
        assert_eq!(cache.learn(dst, OTHER_MAC, false, t0).0, Learning::Kept);
        assert_eq!(cache.get(&dst), Some(MAC));
        assert_eq!(cache.learn(dst, OTHER_MAC, true, t0).0, Learning::Changed);
        assert_eq!(cache.get(&dst), Some(OTHER_MAC));
    }

    #[test]
    fn capacity_is_bounded_and_evicts_known_entries_first() {
        let t0 = Instant::now();
        let mut cache = NeighbourCache::new(settings());
        cache.resolve(ip("10.0.0.1"), source(), &[1], t0);
        for (i, last) in [2u8, 3, 4, 5, 6].iter().enumerate() {
            let at = t0 + Duration::from_secs(i as u64);
            cache.learn(IpAddr::from([10, 0, 0, *last]), MAC, true, at);
        }
        assert_eq!(cache.entries(t0).count(), 4);
        assert!(
            cache.entries(t0).any(|e| e.ip == ip("10.0.0.1")),
            "the pending one survives"
        );
        assert_eq!(
            cache.get(&ip("10.0.0.2")),
            None,
            "the oldest known one went first"
        );
        assert_eq!(cache.get(&ip("10.0.0.6")), Some(MAC));
    }

    #[test]
    fn full_buffers_refuse_to_queue_but_resolution_goes_on() {
        let t0 = Instant::now();
        let mut cache = NeighbourCache::new(NeighbourSettings {
            queued_packets: 1,
            ..settings()
        });
        assert!(matches!(
            cache.resolve(ip("10.0.0.1"), source(), &[1], t0).0,
            Resolution::Queued { .. }
        ));
        assert_eq!(
            cache.resolve(ip("10.0.0.2"), source(), &[2], t0).0,
            Resolution::NoRoom
        );
        assert_eq!(
            drain(&mut cache, t0).len(),
            2,
            "both destinations are solicited"
        );
    }
}
