//! Frames from VPP (memif RX) to actions: the decision table of spec 6.2, with every "must do better"
//! of section 11 applied (B4 to B7, B19, B20). Each frame is classified from a borrowed buffer with no
//! allocation; replies are written into the caller's buffer.

use std::net::{IpAddr, Ipv6Addr};
use std::time::Instant;

use super::DropReason;
use super::adapter::{Adapter, Neighbour, RxAction, RxOutcome};
use super::counters::{Direction, Event};
use super::frames;
use super::neighbours::Learning;
use super::wire::icmpv6::message;
use super::wire::ipv4::PROTOCOL_IGMP;
use super::wire::ipv6::{self, next_header};
use super::wire::{
    ArpOperation, ArpPacket, ArpRepr, Error, EtherType, EthernetFrame, Icmpv6Packet, Ipv4Packet,
    Ipv6Packet, MacAddr, NdiscRepr, NeighbourFlags, ethernet,
};

/// True for the ICMPv4 error messages (RFC 1122 §3.2.2: never answered with another error).
fn is_icmpv4_error(packet: &Ipv4Packet<&[u8]>) -> bool {
    const PROTOCOL_ICMP: u8 = 1;
    packet.protocol() == PROTOCOL_ICMP
        && matches!(packet.payload().first(), Some(3 | 4 | 5 | 11 | 12))
}

/// The Ethernet addresses of a received frame.
#[derive(Clone, Copy)]
struct FrameAddrs {
    src: MacAddr,
    dst: MacAddr,
    /// Addressed to our MAC (otherwise to a group).
    to_us: bool,
}

impl Adapter {
    /// Classifies one frame from VPP. `reply` must hold [`frames::MAX_CONTROL_FRAME_LEN`] bytes for an
    /// ARP reply or NA. Never panics, whatever the bytes; every outcome is counted.
    pub fn on_frame(&self, frame: &[u8], now: Instant, reply: &mut [u8]) -> RxOutcome {
        let outcome = self.classify(frame, now, reply);
        match outcome.action {
            RxAction::Deliver(_) => self.counters.event(Direction::Rx, Event::Delivered),
            RxAction::Dropped(reason) => self.counters.drop(Direction::Rx, reason),
            RxAction::Reply(_) | RxAction::Consumed => {}
        }
        outcome
    }

    fn classify(&self, frame: &[u8], now: Instant, reply: &mut [u8]) -> RxOutcome {
        let Ok(eth) = EthernetFrame::new_checked(frame) else {
            return RxOutcome::dropped(DropReason::Runt);
        };
        let link = FrameAddrs {
            src: eth.src_addr(),
            dst: eth.dst_addr(),
            to_us: eth.dst_addr() == self.config.self_mac,
        };
        if !link.to_us && !link.dst.is_multicast() {
            return RxOutcome::dropped(DropReason::NotForUs);
        }
        if link.src == self.config.self_mac {
            return RxOutcome::dropped(DropReason::Looped);
        }
        if !link.src.is_unicast() {
            return RxOutcome::dropped(DropReason::InvalidSourceMac);
        }
        match eth.ethertype() {
            EtherType::Arp => self.on_arp(link, eth.payload(), now, reply),
            EtherType::Ipv4 => self.on_ipv4(link, eth.payload(), reply),
            EtherType::Ipv6 => self.on_ipv6(link, eth.payload(), now, reply),
            EtherType::Vlan | EtherType::QinQ => RxOutcome::dropped(DropReason::VlanTagged),
            EtherType::Unknown(_) => RxOutcome::dropped(DropReason::UnsupportedEtherType),
        }
    }

    /// ARP: answer requests for claimed addresses only (B4), unicast ones too (B5); learn senders within
    /// the learning ranges from replies, gratuitous ARP and requests to us (B6).
    fn on_arp(
        &self,
        link: FrameAddrs,
        payload: &[u8],
        now: Instant,
        reply: &mut [u8],
    ) -> RxOutcome {
        if !link.to_us && !link.dst.is_broadcast() {
            return RxOutcome::dropped(DropReason::UnsupportedGroup);
        }
        let Ok(arp) = ArpPacket::new_checked(payload).and_then(|packet| ArpRepr::parse(&packet))
        else {
            return RxOutcome::dropped(DropReason::MalformedArp);
        };
        let sender = IpAddr::V4(arp.source_protocol_addr);
        let target = IpAddr::V4(arp.target_protocol_addr);
        let learnable = !arp.source_protocol_addr.is_unspecified()
            && arp.source_hardware_addr.is_unicast()
            && self.config.learns(sender);
        match arp.operation {
            ArpOperation::Reply => {
                if !learnable {
                    return RxOutcome::dropped(DropReason::OutsideLearningRange);
                }
                let learned = self.learn(sender, arp.source_hardware_addr, true, now);
                RxOutcome {
                    action: RxAction::Consumed,
                    learned,
                    install: None,
                }
            }
            ArpOperation::Request if self.config.claims(target) => {
                let learned = if learnable {
                    self.learn(sender, arp.source_hardware_addr, true, now)
                } else {
                    None
                };
                let answer = ArpRepr {
                    operation: ArpOperation::Reply,
                    source_hardware_addr: self.config.self_mac,
                    source_protocol_addr: arp.target_protocol_addr,
                    target_hardware_addr: arp.source_hardware_addr,
                    // An ARP probe (sender 0.0.0.0) is answered with the claimed address as target (spec 7.2).
                    target_protocol_addr: if arp.source_protocol_addr.is_unspecified() {
                        arp.target_protocol_addr
                    } else {
                        arp.source_protocol_addr
                    },
                };
                let Some(len) = frames::arp_frame(reply, link.src, self.config.self_mac, &answer)
                else {
                    return RxOutcome {
                        learned,
                        ..RxOutcome::dropped(DropReason::ReplyBufferTooSmall)
                    };
                };
                self.counters.event(Direction::Rx, Event::ArpReplied);
                let install = (self.config.install.ipv4 && self.goes_to_gateway_or_group(link.src))
                    .then_some(target);
                RxOutcome {
                    action: RxAction::Reply(len),
                    learned,
                    install,
                }
            }
            ArpOperation::Request => {
                // Not for us; still a sign of life: gratuitous ARP announces (sender == target), and known
                // neighbours are refreshed (RFC 826's merge step).
                let announces = arp.source_protocol_addr == arp.target_protocol_addr;
                if learnable && (announces || self.lock_cache().get(&sender).is_some()) {
                    let learned = self.learn(sender, arp.source_hardware_addr, true, now);
                    return RxOutcome {
                        action: RxAction::Consumed,
                        learned,
                        install: None,
                    };
                }
                RxOutcome::dropped(DropReason::NotClaimed)
            }
            ArpOperation::Unknown(_) => RxOutcome::dropped(DropReason::MalformedArp),
        }
    }

    /// IPv4: deliver what is addressed to our MAC, and IP multicast (not IGMP) when enabled (B7), trimmed
    /// to the total length (B20). Broadcast IP is dropped.
    fn on_ipv4(&self, link: FrameAddrs, payload: &[u8], reply: &mut [u8]) -> RxOutcome {
        let Ok(packet) = Ipv4Packet::new_checked(payload) else {
            return RxOutcome::dropped(DropReason::MalformedIp);
        };
        if packet.version() != 4 {
            return RxOutcome::dropped(DropReason::MalformedIp);
        }
        if !packet.verify_checksum() {
            return RxOutcome::dropped(DropReason::BadChecksum);
        }
        if !link.to_us {
            if !link.dst.is_ipv4_multicast() {
                return RxOutcome::dropped(DropReason::UnsupportedGroup);
            }
            let group = packet.dst_addr();
            if !group.is_multicast() || MacAddr::from_ipv4_multicast(group) != link.dst {
                return RxOutcome::dropped(DropReason::MulticastMismatch);
            }
            if packet.protocol() == PROTOCOL_IGMP {
                return RxOutcome::dropped(DropReason::LinkLocalControl);
            }
            if !self.config.deliver_multicast {
                return RxOutcome::dropped(DropReason::MulticastDisabled);
            }
        }
        if packet.total_len() > self.mtu() && packet.dont_fragment() {
            return self.too_big(link, reply, |out, mtu| {
                let src = packet.src_addr();
                let answerable = packet.fragment_offset() == 0
                    && !(src.is_unspecified() || src.is_multicast() || src.is_broadcast())
                    && !is_icmpv4_error(&packet);
                answerable
                    .then(|| {
                        frames::ipv4_too_big(out, link.src, self.config.self_mac, &packet, mtu)
                    })
                    .flatten()
            });
        }
        let start = ethernet::HEADER_LEN;
        RxOutcome::action(RxAction::Deliver(
            start..start + usize::from(packet.total_len()),
        ))
    }

    /// A packet above the tunnel MTU that may not be fragmented: counted, and when it came to our MAC
    /// (not to a group) answered with the ICMP error `write` builds, if any (none for ICMP errors,
    /// later fragments or unusable sources, as RFC 1122 and RFC 4443 §2.4 say).
    fn too_big(
        &self,
        link: FrameAddrs,
        reply: &mut [u8],
        write: impl FnOnce(&mut [u8], u16) -> Option<usize>,
    ) -> RxOutcome {
        self.counters.drop(Direction::Rx, DropReason::TooBig);
        match link.to_us.then(|| write(reply, self.mtu())).flatten() {
            Some(len) => RxOutcome::action(RxAction::Reply(len)),
            None => RxOutcome::action(RxAction::Consumed),
        }
    }

    /// IPv6: NS and NA are handled here and never delivered (B5); other ND and MLD are dropped; data to
    /// our MAC, and multicast when enabled (B7), is delivered trimmed to the payload length (B20).
    fn on_ipv6(
        &self,
        link: FrameAddrs,
        payload: &[u8],
        now: Instant,
        reply: &mut [u8],
    ) -> RxOutcome {
        let Ok(packet) = Ipv6Packet::new_checked(payload) else {
            return RxOutcome::dropped(DropReason::MalformedIp);
        };
        if packet.version() != 6 {
            return RxOutcome::dropped(DropReason::MalformedIp);
        }
        if !link.to_us {
            if !link.dst.is_ipv6_multicast() {
                return RxOutcome::dropped(DropReason::UnsupportedGroup);
            }
            let group = packet.dst_addr();
            if !group.is_multicast() || MacAddr::from_ipv6_multicast(group) != link.dst {
                return RxOutcome::dropped(DropReason::MulticastMismatch);
            }
        }
        let Ok((protocol, upper)) = packet.upper_layer() else {
            return RxOutcome::dropped(DropReason::MalformedIp);
        };
        if protocol == next_header::ICMPV6 {
            match upper.first().copied() {
                Some(message::NEIGHBOUR_SOLICIT | message::NEIGHBOUR_ADVERT) => {
                    return self.on_ndisc(link, &packet, upper, now, reply);
                }
                Some(kind)
                    if message::is_neighbour_discovery(kind)
                        || message::is_multicast_listener_discovery(kind) =>
                {
                    return RxOutcome::dropped(DropReason::LinkLocalControl);
                }
                _ => {}
            }
        }
        if !link.to_us && !self.config.deliver_multicast {
            return RxOutcome::dropped(DropReason::MulticastDisabled);
        }
        if packet.total_len() > usize::from(self.mtu()) {
            return self.too_big(link, reply, |out, mtu| {
                let src = packet.src_addr();
                let is_error =
                    protocol == next_header::ICMPV6 && upper.first().is_some_and(|t| *t < 128);
                let answerable = !(src.is_unspecified() || src.is_multicast() || is_error);
                answerable
                    .then(|| {
                        frames::ipv6_too_big(out, link.src, self.config.self_mac, &packet, mtu)
                    })
                    .flatten()
            });
        }
        let start = ethernet::HEADER_LEN;
        RxOutcome::action(RxAction::Deliver(start..start + packet.total_len()))
    }

    /// NS and NA, validated per RFC 4861 §7.1 (B6).
    fn on_ndisc(
        &self,
        link: FrameAddrs,
        packet: &Ipv6Packet<&[u8]>,
        icmp: &[u8],
        now: Instant,
        reply: &mut [u8],
    ) -> RxOutcome {
        let (src, dst) = (packet.src_addr(), packet.dst_addr());
        if packet.hop_limit() != 255 {
            return RxOutcome::dropped(DropReason::InvalidNeighbourDiscovery);
        }
        let repr = match Icmpv6Packet::new_checked(icmp)
            .and_then(|icmp| NdiscRepr::parse(&icmp, &src, &dst))
        {
            Ok(repr) => repr,
            Err(Error::Checksum) => return RxOutcome::dropped(DropReason::BadChecksum),
            Err(_) => return RxOutcome::dropped(DropReason::InvalidNeighbourDiscovery),
        };
        match repr {
            NdiscRepr::NeighbourSolicit {
                target_addr,
                source_lladdr,
            } => self.on_solicit(link, src, dst, target_addr, source_lladdr, now, reply),
            NdiscRepr::NeighbourAdvert {
                flags,
                target_addr,
                target_lladdr,
            } => {
                if target_addr.is_multicast()
                    || (dst.is_multicast() && flags.contains(NeighbourFlags::SOLICITED))
                {
                    return RxOutcome::dropped(DropReason::InvalidNeighbourDiscovery);
                }
                let target = IpAddr::V6(target_addr);
                if !self.config.learns(target) {
                    return RxOutcome::dropped(DropReason::OutsideLearningRange);
                }
                // Without the option, the frame's source is the best evidence (B5).
                let mac = target_lladdr.unwrap_or(link.src);
                if !mac.is_unicast() {
                    return RxOutcome::dropped(DropReason::InvalidNeighbourDiscovery);
                }
                let learned =
                    self.learn(target, mac, flags.contains(NeighbourFlags::OVERRIDE), now);
                RxOutcome {
                    action: RxAction::Consumed,
                    learned,
                    install: None,
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn on_solicit(
        &self,
        link: FrameAddrs,
        src: Ipv6Addr,
        dst: Ipv6Addr,
        target: Ipv6Addr,
        source_lladdr: Option<MacAddr>,
        now: Instant,
        reply: &mut [u8],
    ) -> RxOutcome {
        let dad = src.is_unspecified();
        let addressed_right = if dst.is_multicast() {
            dst == ipv6::solicited_node(&target)
        } else {
            dst == target
        };
        if target.is_multicast()
            || !addressed_right
            || (dad && (source_lladdr.is_some() || !dst.is_multicast()))
        {
            return RxOutcome::dropped(DropReason::InvalidNeighbourDiscovery);
        }
        if !self.config.claims(IpAddr::V6(target)) {
            return RxOutcome::dropped(DropReason::NotClaimed);
        }
        let sender = IpAddr::V6(src);
        let sender_mac = source_lladdr.unwrap_or(link.src);
        let learned = if !dad && sender_mac.is_unicast() && self.config.learns(sender) {
            self.learn(sender, sender_mac, true, now)
        } else {
            None
        };
        // A DAD probe is answered to all nodes without the S flag (RFC 4861 §7.2.4).
        let (eth_dst, ip_dst, flags) = if dad {
            (
                MacAddr::IPV6_ALL_NODES,
                ipv6::ALL_NODES,
                NeighbourFlags::OVERRIDE,
            )
        } else {
            (
                link.src,
                src,
                NeighbourFlags::SOLICITED | NeighbourFlags::OVERRIDE,
            )
        };
        let answer = NdiscRepr::NeighbourAdvert {
            flags,
            target_addr: target,
            target_lladdr: Some(self.config.self_mac),
        };
        let Some(len) = frames::ndisc_frame(
            reply,
            eth_dst,
            self.config.self_mac,
            target,
            ip_dst,
            &answer,
        ) else {
            return RxOutcome {
                learned,
                ..RxOutcome::dropped(DropReason::ReplyBufferTooSmall)
            };
        };
        self.counters
            .event(Direction::Rx, Event::NeighbourAdvertised);
        let install = (self.goes_to_gateway_or_group(eth_dst) && self.installs_ipv6(&target))
            .then_some(IpAddr::V6(target));
        RxOutcome {
            action: RxAction::Reply(len),
            learned,
            install,
        }
    }

    /// Learns `(ip, mac)`; returns it when it is new or changed, for the caller's event.
    fn learn(
        &self,
        ip: IpAddr,
        mac: MacAddr,
        override_existing: bool,
        now: Instant,
    ) -> Option<Neighbour> {
        let (learning, losses) = self.lock_cache().learn(ip, mac, override_existing, now);
        self.count_losses(Direction::Rx, losses);
        match learning {
            Learning::New { .. } | Learning::Changed => {
                self.counters.event(Direction::Rx, Event::Learned);
                Some(Neighbour { ip, mac })
            }
            Learning::Confirmed => {
                self.counters.event(Direction::Rx, Event::Confirmed);
                None
            }
            Learning::Kept => {
                self.counters.event(Direction::Rx, Event::OverrideRefused);
                None
            }
        }
    }

    /// Spec section 8: answers count for a VPP neighbour install only when they go to the gateway
    /// (the BVI) or to a group the BVI hears.
    pub(super) fn goes_to_gateway_or_group(&self, eth_dst: MacAddr) -> bool {
        eth_dst == self.config.gateway_mac || eth_dst.is_broadcast() || eth_dst.is_ipv6_multicast()
    }

    /// Spec section 8: which IPv6 flag applies to `target`.
    pub(super) fn installs_ipv6(&self, target: &Ipv6Addr) -> bool {
        if target.is_unicast_link_local() {
            self.config.install.ipv6_link_local
        } else {
            self.config.install.ipv6
        }
    }
}
