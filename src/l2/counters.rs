//! Counters for every action and drop reason of the Ethernet side, readable for status and metrics.
//!
//! The RX and TX paths may run on different threads, so each direction counts into its own cache line of
//! relaxed atomics: no lock, and no false sharing between the two paths.

use std::sync::atomic::{AtomicU64, Ordering};

/// Why a frame or packet was not passed on. `Copy`, and indexes the drop counters; [`DropReason::name`]
/// is a stable, bounded label for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DropReason {
    /// RX: shorter than an Ethernet header.
    Runt,
    /// RX: an 802.1Q or 802.1ad tagged frame (the bridge port is untagged).
    VlanTagged,
    /// RX: the source MAC is a group address or zero.
    InvalidSourceMac,
    /// RX: our own MAC as the source: a frame we sent came back.
    Looped,
    /// RX: unicast to another station (flooded by the bridge).
    NotForUs,
    /// RX: a group address that carries no IP multicast (e.g. STP, LLDP), or IP to broadcast.
    UnsupportedGroup,
    /// RX: an EtherType other than IPv4, IPv6 and ARP.
    UnsupportedEtherType,
    /// RX: an ARP packet that is truncated or not IPv4 over Ethernet, or has an unknown operation.
    MalformedArp,
    /// RX: an IP header that is truncated, has the wrong version or inconsistent lengths.
    MalformedIp,
    /// RX: a bad IPv4 header or ICMPv6 checksum.
    BadChecksum,
    /// RX: an NS or NA that fails the validation of RFC 4861 §7.1 (hop limit, code, options, target,
    /// addressing).
    InvalidNeighbourDiscovery,
    /// RX: an ARP request or NS for an address we do not claim (and nothing learned from it).
    NotClaimed,
    /// RX: an ARP reply or NA for an address outside the learning ranges.
    OutsideLearningRange,
    /// RX: router discovery, redirects, MLD or IGMP: link-local control that never enters the tunnel.
    LinkLocalControl,
    /// RX: IP multicast while multicast delivery is off.
    MulticastDisabled,
    /// RX: the Ethernet group does not match the IP multicast destination.
    MulticastMismatch,
    /// RX: the caller's reply buffer is too small for the answer.
    ReplyBufferTooSmall,
    /// TX: not an IPv4 or IPv6 packet, or shorter than its header.
    MalformedPacket,
    /// TX: the destination did not answer its solicitations; the packets queued for it are dropped.
    Unresolved,
    /// TX: the per-destination queue was full; the oldest packet made room for the new one.
    QueueOverflow,
    /// TX: no room to queue (all queue buffers in use, or the packet is larger than a queue buffer).
    QueueFull,
    /// TX: the caller's buffer is too small for the frame.
    TransmitBufferTooSmall,
    /// RX: a packet above the tunnel MTU that may not be fragmented; answered with ICMP "too big".
    TooBig,
}

impl DropReason {
    /// Every reason, in counter order.
    pub const ALL: [DropReason; 23] = [
        DropReason::Runt,
        DropReason::VlanTagged,
        DropReason::InvalidSourceMac,
        DropReason::Looped,
        DropReason::NotForUs,
        DropReason::UnsupportedGroup,
        DropReason::UnsupportedEtherType,
        DropReason::MalformedArp,
        DropReason::MalformedIp,
        DropReason::BadChecksum,
        DropReason::InvalidNeighbourDiscovery,
        DropReason::NotClaimed,
        DropReason::OutsideLearningRange,
        DropReason::LinkLocalControl,
        DropReason::MulticastDisabled,
        DropReason::MulticastMismatch,
        DropReason::ReplyBufferTooSmall,
        DropReason::MalformedPacket,
        DropReason::Unresolved,
        DropReason::QueueOverflow,
        DropReason::QueueFull,
        DropReason::TransmitBufferTooSmall,
        DropReason::TooBig,
    ];

    /// A stable snake_case label, for metrics and logs.
    pub fn name(self) -> &'static str {
        match self {
            DropReason::Runt => "runt",
            DropReason::VlanTagged => "vlan_tagged",
            DropReason::InvalidSourceMac => "invalid_source_mac",
            DropReason::Looped => "looped",
            DropReason::NotForUs => "not_for_us",
            DropReason::UnsupportedGroup => "unsupported_group",
            DropReason::UnsupportedEtherType => "unsupported_ethertype",
            DropReason::MalformedArp => "malformed_arp",
            DropReason::MalformedIp => "malformed_ip",
            DropReason::BadChecksum => "bad_checksum",
            DropReason::InvalidNeighbourDiscovery => "invalid_neighbour_discovery",
            DropReason::NotClaimed => "not_claimed",
            DropReason::OutsideLearningRange => "outside_learning_range",
            DropReason::LinkLocalControl => "link_local_control",
            DropReason::MulticastDisabled => "multicast_disabled",
            DropReason::MulticastMismatch => "multicast_mismatch",
            DropReason::ReplyBufferTooSmall => "reply_buffer_too_small",
            DropReason::MalformedPacket => "malformed_packet",
            DropReason::Unresolved => "unresolved",
            DropReason::QueueOverflow => "queue_overflow",
            DropReason::QueueFull => "queue_full",
            DropReason::TransmitBufferTooSmall => "transmit_buffer_too_small",
            DropReason::TooBig => "too_big",
        }
    }

    fn index(self) -> usize {
        // The enum is fieldless and ALL lists it in declaration order.
        self as usize
    }
}

/// What the adapter did, other than dropping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Event {
    /// RX: an IP packet handed to the tunnel.
    Delivered,
    /// RX: an ARP reply written.
    ArpReplied,
    /// RX: a Neighbour Advertisement written.
    NeighbourAdvertised,
    /// RX: a neighbour learned or its MAC changed.
    Learned,
    /// RX: a neighbour confirmed with the MAC it had.
    Confirmed,
    /// RX: an NA without the Override flag named another MAC; the known one was kept.
    OverrideRefused,
    /// TX: a frame header given for a packet.
    Framed,
    /// TX: a packet queued while its destination is resolved.
    Queued,
    /// TX: a queued packet sent after resolution.
    Flushed,
    /// TX: a broadcast ARP request or multicast NS sent to resolve a destination.
    Solicited,
    /// TX: a unicast ARP request or NS sent to re-check a stale neighbour.
    Probed,
    /// TX: a neighbour forgotten (unanswered probes, or evicted for room).
    Forgotten,
    /// Startup: a gratuitous ARP or unsolicited NA written.
    Announced,
}

impl Event {
    /// Every event, in counter order.
    pub const ALL: [Event; 13] = [
        Event::Delivered,
        Event::ArpReplied,
        Event::NeighbourAdvertised,
        Event::Learned,
        Event::Confirmed,
        Event::OverrideRefused,
        Event::Framed,
        Event::Queued,
        Event::Flushed,
        Event::Solicited,
        Event::Probed,
        Event::Forgotten,
        Event::Announced,
    ];

    /// A stable snake_case label, for metrics and logs.
    pub fn name(self) -> &'static str {
        match self {
            Event::Delivered => "delivered",
            Event::ArpReplied => "arp_replied",
            Event::NeighbourAdvertised => "neighbour_advertised",
            Event::Learned => "learned",
            Event::Confirmed => "confirmed",
            Event::OverrideRefused => "override_refused",
            Event::Framed => "framed",
            Event::Queued => "queued",
            Event::Flushed => "flushed",
            Event::Solicited => "solicited",
            Event::Probed => "probed",
            Event::Forgotten => "forgotten",
            Event::Announced => "announced",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// One direction's counters, alone on its cache line(s).
#[repr(align(64))]
#[derive(Default)]
struct Bank {
    drops: [AtomicU64; DropReason::ALL.len()],
    events: [AtomicU64; Event::ALL.len()],
}

/// The counters of one adapter. Which bank a count goes to is the caller's choice of direction, so
/// that the RX and TX threads never write the same cache line.
#[derive(Default)]
pub struct Counters {
    rx: Bank,
    tx: Bank,
}

/// The direction a count belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    Rx,
    Tx,
}

impl Counters {
    fn bank(&self, direction: Direction) -> &Bank {
        match direction {
            Direction::Rx => &self.rx,
            Direction::Tx => &self.tx,
        }
    }

    pub(crate) fn drop(&self, direction: Direction, reason: DropReason) {
        self.bank(direction).drops[reason.index()].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn drops(&self, direction: Direction, reason: DropReason, count: u64) {
        self.bank(direction).drops[reason.index()].fetch_add(count, Ordering::Relaxed);
    }

    pub(crate) fn event(&self, direction: Direction, event: Event) {
        self.bank(direction).events[event.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// A consistent-enough copy for status and metrics (each counter is read once, relaxed).
    pub fn snapshot(&self) -> CountersSnapshot {
        let mut snapshot = CountersSnapshot::default();
        for bank in [&self.rx, &self.tx] {
            for (total, counter) in snapshot.drops.iter_mut().zip(&bank.drops) {
                *total += counter.load(Ordering::Relaxed);
            }
            for (total, counter) in snapshot.events.iter_mut().zip(&bank.events) {
                *total += counter.load(Ordering::Relaxed);
            }
        }
        snapshot
    }
}

/// Counter values at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CountersSnapshot {
    drops: [u64; DropReason::ALL.len()],
    events: [u64; Event::ALL.len()],
}

impl CountersSnapshot {
    /// Frames or packets dropped for `reason`.
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.drops[reason.index()]
    }

    /// How often `event` happened.
    pub fn count(&self, event: Event) -> u64 {
        self.events[event.index()]
    }

    /// Every drop reason with its count, for metrics.
    pub fn drops(&self) -> impl Iterator<Item = (DropReason, u64)> + '_ {
        DropReason::ALL
            .iter()
            .map(|reason| (*reason, self.dropped(*reason)))
    }

    /// Every event with its count, for metrics.
    pub fn events(&self) -> impl Iterator<Item = (Event, u64)> + '_ {
        Event::ALL.iter().map(|event| (*event, self.count(*event)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes_follow_the_declaration_order() {
        for (index, reason) in DropReason::ALL.iter().enumerate() {
            assert_eq!(reason.index(), index, "{reason:?}");
        }
        for (index, event) in Event::ALL.iter().enumerate() {
            assert_eq!(event.index(), index, "{event:?}");
        }
        let names: std::collections::HashSet<_> =
            DropReason::ALL.iter().map(|r| r.name()).collect();
        assert_eq!(names.len(), DropReason::ALL.len(), "labels are unique");
    }

    #[test]
    fn both_directions_add_up() {
        let counters = Counters::default();
        counters.drop(Direction::Rx, DropReason::Runt);
        counters.drops(Direction::Tx, DropReason::Runt, 2);
        counters.event(Direction::Tx, Event::Framed);
        let snapshot = counters.snapshot();
        assert_eq!(snapshot.dropped(DropReason::Runt), 3);
        assert_eq!(snapshot.count(Event::Framed), 1);
        assert_eq!(snapshot.dropped(DropReason::Looped), 0);
        assert_eq!(snapshot.drops().map(|(_, n)| n).sum::<u64>(), 3);
    }
}
