//! IP packets from WireGuard to Ethernet frames (memif TX): spec 6.3 with B7 and B8 applied. The
//! source MAC is ours; the destination is the IP multicast mapping for groups, the neighbour cache for
//! learning-range destinations (queueing while they are resolved), and the gateway otherwise.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Instant;

use super::DropReason;
use super::adapter::{Adapter, Transmit, TransmitKind, TxAction};
use super::counters::{Direction, Event};
use super::frames;
use super::neighbours::{Due, Resolution};
use super::wire::{EtherType, EthernetRepr, MacAddr, ethernet};

/// The addresses of an IP packet, read from its first bytes.
struct Addresses {
    ethertype: EtherType,
    src: IpAddr,
    dst: IpAddr,
}

/// Reads version and addresses; `None` for anything that is not a plausible IPv4 or IPv6 header.
fn addresses(packet: &[u8]) -> Option<Addresses> {
    match packet.first()? >> 4 {
        4 => {
            let src: [u8; 4] = packet.get(12..16)?.try_into().ok()?;
            let dst: [u8; 4] = packet.get(16..20)?.try_into().ok()?;
            Some(Addresses {
                ethertype: EtherType::Ipv4,
                src: Ipv4Addr::from(src).into(),
                dst: Ipv4Addr::from(dst).into(),
            })
        }
        6 => {
            let src: [u8; 16] = packet.get(8..24)?.try_into().ok()?;
            let dst: [u8; 16] = packet.get(24..40)?.try_into().ok()?;
            Some(Addresses {
                ethertype: EtherType::Ipv6,
                src: Ipv6Addr::from(src).into(),
                dst: Ipv6Addr::from(dst).into(),
            })
        }
        _ => None,
    }
}

/// The Ethernet group of an IP multicast (or IPv4 limited broadcast) destination, B7.
fn group_mac(dst: IpAddr) -> Option<MacAddr> {
    match dst {
        IpAddr::V4(addr) if addr.is_broadcast() => Some(MacAddr::BROADCAST),
        IpAddr::V4(addr) if addr.is_multicast() => Some(MacAddr::from_ipv4_multicast(addr)),
        IpAddr::V6(addr) if addr.is_multicast() => Some(MacAddr::from_ipv6_multicast(addr)),
        _ => None,
    }
}

impl Adapter {
    /// Frames one IP packet from WireGuard. Allocation-free; takes the neighbour-cache lock only for
    /// destinations in the learning ranges. Never panics, whatever the bytes.
    pub fn on_packet(&self, packet: &[u8], now: Instant) -> TxAction {
        let action = self.frame_packet(packet, now);
        match action {
            TxAction::Send(_) => self.counters.event(Direction::Tx, Event::Framed),
            TxAction::Queued => self.counters.event(Direction::Tx, Event::Queued),
            TxAction::Dropped(reason) => self.counters.drop(Direction::Tx, reason),
        }
        action
    }

    fn frame_packet(&self, packet: &[u8], now: Instant) -> TxAction {
        let Some(Addresses {
            ethertype,
            src,
            dst,
        }) = addresses(packet)
        else {
            return TxAction::Dropped(DropReason::MalformedPacket);
        };
        let header = |dst_addr| {
            EthernetRepr {
                src_addr: self.config.self_mac,
                dst_addr,
                ethertype,
            }
            .to_bytes()
        };
        if let Some(group) = group_mac(dst) {
            return TxAction::Send(header(group));
        }
        if !self.config.learns(dst) {
            return TxAction::Send(header(self.config.gateway_mac));
        }
        let source = self.solicitation_source(src);
        let (resolution, losses) = self.lock_cache().resolve(dst, source, packet, now);
        self.count_losses(Direction::Tx, losses);
        match resolution {
            Resolution::Found(mac) => TxAction::Send(header(mac)),
            Resolution::Queued { replaced_oldest } => {
                if replaced_oldest {
                    self.counters.drop(Direction::Tx, DropReason::QueueOverflow);
                }
                TxAction::Queued
            }
            Resolution::NoRoom => TxAction::Dropped(DropReason::QueueFull),
        }
    }

    /// Our address to solicit from: the packet's source when we claim it (RFC 4861 §7.2.2, spec 7.2),
    /// else the first claimed address of the family (VPP ignores ARP from senders outside its subnets),
    /// else the packet's source.
    fn solicitation_source(&self, packet_src: IpAddr) -> IpAddr {
        if self.config.claims(packet_src) {
            return packet_src;
        }
        let first = match packet_src {
            IpAddr::V4(_) => self
                .config
                .arp_respond
                .first()
                .map(|net| IpAddr::V4(net.network())),
            IpAddr::V6(_) => self
                .config
                .ndp_respond
                .first()
                .map(|net| IpAddr::V6(net.network())),
        };
        first.unwrap_or(packet_src)
    }

    /// Writes the next frame the neighbour cache wants sent into `out`: a queued packet whose
    /// destination is now known, a solicitation, or a probe. Call it in a loop until `None` after each
    /// burst that queued or learned something, and at [`Adapter::poll_at`]. `out` must hold a whole
    /// frame (14 bytes more than the largest packet).
    pub fn poll_transmit(&self, now: Instant, out: &mut [u8]) -> Option<Transmit> {
        let self_mac = self.config.self_mac;
        let mut cache = self.lock_cache();
        loop {
            let (due, losses) = cache.poll(now);
            self.count_losses(Direction::Tx, losses);
            let transmit = match due? {
                Due::Packet { mac, packet, slot } => {
                    let len = ethernet::HEADER_LEN + packet.len();
                    let written = match (addresses(packet), out.get_mut(..len)) {
                        (Some(addresses), Some(frame)) => {
                            let header = EthernetRepr {
                                src_addr: self_mac,
                                dst_addr: mac,
                                ethertype: addresses.ethertype,
                            };
                            frame[..ethernet::HEADER_LEN].copy_from_slice(&header.to_bytes());
                            frame[ethernet::HEADER_LEN..].copy_from_slice(packet);
                            true
                        }
                        _ => false,
                    };
                    cache.sent(slot);
                    if !written {
                        self.counters
                            .drop(Direction::Tx, DropReason::TransmitBufferTooSmall);
                        continue;
                    }
                    self.counters.event(Direction::Tx, Event::Flushed);
                    Transmit {
                        len,
                        kind: TransmitKind::Flushed,
                    }
                }
                Due::Solicit {
                    target,
                    source,
                    unicast_to,
                } => {
                    let len = match (target, source) {
                        (IpAddr::V4(target), IpAddr::V4(source)) => frames::arp_request(
                            out,
                            unicast_to.unwrap_or(MacAddr::BROADCAST),
                            self_mac,
                            source,
                            target,
                        ),
                        (IpAddr::V6(target), IpAddr::V6(source)) => {
                            frames::neighbour_solicit(out, self_mac, source, target, unicast_to)
                        }
                        _ => None,
                    };
                    let Some(len) = len else {
                        self.counters
                            .drop(Direction::Tx, DropReason::TransmitBufferTooSmall);
                        continue;
                    };
                    let (kind, event) = match unicast_to {
                        Some(_) => (TransmitKind::Probe, Event::Probed),
                        None => (TransmitKind::Solicitation, Event::Solicited),
                    };
                    self.counters.event(Direction::Tx, event);
                    Transmit { len, kind }
                }
            };
            return Some(transmit);
        }
    }
}
