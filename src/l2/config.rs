//! The settings of one tunnel's Ethernet side. The tunnel runtime fills them from the configuration
//! module (which derives the MACs from the prefixes and the uid); nothing here reads files.

use std::net::IpAddr;
use std::time::Duration;

use ipnet::{Ipv4Net, Ipv6Net};

use super::wire::MacAddr;

/// How long a learned neighbour is trusted without a fresh confirmation before it turns stale and is
/// re-probed by unicast on its next use.
pub const DEFAULT_REACHABLE_TIME: Duration = Duration::from_secs(180);
/// The interval between solicitations or probes to one destination: at most one per second
/// (RFC 4861 RETRANS_TIMER).
pub const DEFAULT_RETRANS_TIME: Duration = Duration::from_secs(1);
/// Broadcast ARP requests or multicast NS sent before a destination counts as unreachable
/// (RFC 4861 MAX_MULTICAST_SOLICIT).
pub const DEFAULT_MAX_MULTICAST_SOLICIT: u8 = 3;
/// Unicast probes sent to a stale neighbour before it is forgotten (RFC 4861 MAX_UNICAST_SOLICIT).
pub const DEFAULT_MAX_UNICAST_SOLICIT: u8 = 3;
/// Learned neighbours kept at most; the one nearest expiry is evicted when a new one needs room.
pub const DEFAULT_NEIGHBOUR_CAPACITY: usize = 1024;
/// Packets queued per unresolved destination; a new arrival replaces the oldest (RFC 4861 §7.2.2).
pub const DEFAULT_QUEUE_PER_DESTINATION: usize = 4;
/// Packets queued for all unresolved destinations together (each buffer is [`QUEUED_PACKET_MAX`]).
pub const DEFAULT_QUEUED_PACKETS: usize = 64;
/// The largest IP packet that can wait in the resolution queue; larger ones are dropped while unresolved.
pub const QUEUED_PACKET_MAX: usize = 2048 - super::wire::ethernet::HEADER_LEN;
/// Upper bound of [`NeighbourSettings::queue_per_destination`].
pub const QUEUE_PER_DESTINATION_MAX: usize = 8;
/// Addresses announced per response range at startup; longer ranges are cut (never walked whole).
pub const DEFAULT_ANNOUNCE_PER_RANGE: u32 = 16;

/// Everything the Ethernet side needs to know about its tunnel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct L2Config {
    /// Our MAC: the source of every frame we send and the unicast address we accept.
    pub self_mac: MacAddr,
    /// The VPP BVI's MAC: where packets go unless the destination is learned or multicast.
    pub gateway_mac: MacAddr,
    /// IPv4 addresses we answer ARP for (IPv4ArpResponseRanges).
    pub arp_respond: Vec<Ipv4Net>,
    /// IPv4 destinations on the VPP side resolved by ARP instead of the gateway (IPv4ArpLearningRanges).
    pub arp_learn: Vec<Ipv4Net>,
    /// IPv6 addresses we answer NS for (IPv6NdpNeighAdvRanges).
    pub ndp_respond: Vec<Ipv6Net>,
    /// IPv6 destinations resolved by NS instead of the gateway (IPv6NdpLearningRanges).
    pub ndp_learn: Vec<Ipv6Net>,
    /// Deliver IP multicast from VPP (OSPF, Babel, DHCPv6, ...) into the tunnel. ARP, ND, MLD and IGMP
    /// never are.
    pub deliver_multicast: bool,
    /// Which answers ask for a VPP neighbour entry (spec section 8).
    pub install: NeighbourInstall,
    /// Neighbour cache timers and bounds.
    pub neighbours: NeighbourSettings,
    /// Addresses announced per response range at startup.
    pub announce_per_range: u32,
}

impl L2Config {
    /// A configuration with the given MACs, no ranges and the documented defaults.
    pub fn new(self_mac: MacAddr, gateway_mac: MacAddr) -> L2Config {
        L2Config {
            self_mac,
            gateway_mac,
            arp_respond: Vec::new(),
            arp_learn: Vec::new(),
            ndp_respond: Vec::new(),
            ndp_learn: Vec::new(),
            deliver_multicast: true,
            install: NeighbourInstall::default(),
            neighbours: NeighbourSettings::default(),
            announce_per_range: DEFAULT_ANNOUNCE_PER_RANGE,
        }
    }

    /// True when we answer ARP or NS for `addr`.
    pub fn claims(&self, addr: IpAddr) -> bool {
        match addr {
            IpAddr::V4(addr) => self.arp_respond.iter().any(|net| net.contains(&addr)),
            IpAddr::V6(addr) => self.ndp_respond.iter().any(|net| net.contains(&addr)),
        }
    }

    /// True when `addr` is resolved by ARP or NS rather than sent to the gateway.
    pub fn learns(&self, addr: IpAddr) -> bool {
        match addr {
            IpAddr::V4(addr) => self.arp_learn.iter().any(|net| net.contains(&addr)),
            IpAddr::V6(addr) => self.ndp_learn.iter().any(|net| net.contains(&addr)),
        }
    }
}

/// Which sent answers ask the VPP side for a neighbour entry (claimed address -> our MAC on the BVI),
/// as the original's `VppBridgeLoop_InstallNeighbor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NeighbourInstall {
    /// After ARP replies and gratuitous ARPs.
    pub ipv4: bool,
    /// After NAs for addresses outside fe80::/10.
    pub ipv6: bool,
    /// After NAs for link-local addresses.
    pub ipv6_link_local: bool,
}

/// Neighbour cache timers and bounds (RFC 4861 §10 names in the constants).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NeighbourSettings {
    /// See [`DEFAULT_REACHABLE_TIME`].
    pub reachable_time: Duration,
    /// See [`DEFAULT_RETRANS_TIME`].
    pub retrans_time: Duration,
    /// See [`DEFAULT_MAX_MULTICAST_SOLICIT`].
    pub max_multicast_solicit: u8,
    /// See [`DEFAULT_MAX_UNICAST_SOLICIT`].
    pub max_unicast_solicit: u8,
    /// See [`DEFAULT_NEIGHBOUR_CAPACITY`].
    pub capacity: usize,
    /// See [`DEFAULT_QUEUE_PER_DESTINATION`]; at most [`QUEUE_PER_DESTINATION_MAX`].
    pub queue_per_destination: usize,
    /// See [`DEFAULT_QUEUED_PACKETS`].
    pub queued_packets: usize,
}

impl Default for NeighbourSettings {
    fn default() -> Self {
        NeighbourSettings {
            reachable_time: DEFAULT_REACHABLE_TIME,
            retrans_time: DEFAULT_RETRANS_TIME,
            max_multicast_solicit: DEFAULT_MAX_MULTICAST_SOLICIT,
            max_unicast_solicit: DEFAULT_MAX_UNICAST_SOLICIT,
            capacity: DEFAULT_NEIGHBOUR_CAPACITY,
            queue_per_destination: DEFAULT_QUEUE_PER_DESTINATION,
            queued_packets: DEFAULT_QUEUED_PACKETS,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_and_learns_look_at_the_right_family_and_ranges() {
        let mut config = L2Config::new(MacAddr([2, 0, 0, 0, 0, 1]), MacAddr([2, 0, 0, 0, 0, 2]));
        config.arp_respond = vec!["172.22.77.32/30".parse().unwrap()];
        config.ndp_respond = vec!["fe80::42:1817:1/128".parse().unwrap()];
        config.arp_learn = vec!["10.127.111.0/24".parse().unwrap()];
        config.ndp_learn = vec!["fd10:127:e00f::/64".parse().unwrap()];
        let ip = |text: &str| text.parse::<IpAddr>().unwrap();
        assert!(config.claims(ip("172.22.77.35")));
        assert!(!config.claims(ip("172.22.77.36")));
        assert!(config.claims(ip("fe80::42:1817:1")));
        assert!(!config.claims(ip("fe80::42:1817:2")));
        assert!(config.learns(ip("10.127.111.255")));
        assert!(!config.learns(ip("10.127.112.0")));
        assert!(config.learns(ip("fd10:127:e00f::ffff")));
        assert!(
            !config.learns(ip("::ffff:10.127.111.1")),
            "a mapped IPv4 address is IPv6 here"
        );
        assert!(
            config.deliver_multicast,
            "multicast is carried by default (B7)"
        );
    }
}
