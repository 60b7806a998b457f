//! The startup announcement (B9): a gratuitous ARP or unsolicited NA for the addresses we answer for,
//! bounded per range so that a /64 is never walked and no range wraps around. Pacing the burst and
//! sending it only once the data path is up is the caller's job; this only says what to send.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::adapter::Adapter;
use super::counters::{Direction, Event};
use super::frames;

/// One announcement frame written by [`Adapter::write_announcement`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Announcement {
    /// The frame's length in the caller's buffer.
    pub len: usize,
    /// The address to install as a VPP neighbour afterwards (spec section 8), if configured.
    pub install: Option<IpAddr>,
}

impl Adapter {
    /// The addresses to announce: the first `announce_per_range` addresses of each response range
    /// (network address included, as the original: a /30 gives four). A warning names every range
    /// that is cut. Lazy: nothing is collected.
    pub fn announcements(&self) -> impl Iterator<Item = IpAddr> + '_ {
        let cap = u128::from(self.config.announce_per_range);
        let v4 = self.config.arp_respond.iter().flat_map(move |net| {
            let size = 1u128 << (32 - u32::from(net.prefix_len()));
            if size > cap {
                tracing::warn!(range = %net, announced = cap, "response range too large to announce whole; announcing its first addresses");
            }
            let start = u32::from(net.network());
            // INVARIANT: offsets < size, so start + offset stays inside the range and never wraps.
            (0..size.min(cap)).map(move |offset| IpAddr::V4(Ipv4Addr::from(start + offset as u32)))
        });
        let v6 = self.config.ndp_respond.iter().flat_map(move |net| {
            let host_bits = 128 - u32::from(net.prefix_len());
            let size = if host_bits >= 127 { u128::MAX } else { 1u128 << host_bits };
            if size > cap {
                tracing::warn!(range = %net, announced = cap, "response range too large to announce whole; announcing its first addresses");
            }
            let start = u128::from(net.network());
            (0..size.min(cap)).map(move |offset| IpAddr::V6(Ipv6Addr::from(start + offset)))
        });
        v4.chain(v6)
    }

    /// Writes the gratuitous ARP (IPv4) or unsolicited NA with only the Override flag (IPv6, B6) that
    /// announces `addr`; `None` when `out` is shorter than [`frames::MAX_CONTROL_FRAME_LEN`].
    pub fn write_announcement(&self, addr: IpAddr, out: &mut [u8]) -> Option<Announcement> {
        let self_mac = self.config.self_mac;
        let (len, install) = match addr {
            IpAddr::V4(addr) => (
                frames::gratuitous_arp(out, self_mac, addr)?,
                self.config.install.ipv4,
            ),
            IpAddr::V6(addr) => (
                frames::unsolicited_advert(out, self_mac, addr)?,
                self.installs_ipv6(&addr),
            ),
        };
        self.counters.event(Direction::Tx, Event::Announced);
        // Both frames go to a group (broadcast, all-nodes), which the section 8 rule accepts.
        Some(Announcement {
            len,
            install: install.then_some(addr),
        })
    }
}
