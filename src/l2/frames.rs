//! Builders for the control frames the Ethernet side sends (spec section 7): ARP requests and replies,
//! gratuitous ARP, Neighbour Solicitations and Advertisements, and the ICMP "too big" errors for packets
//! above the tunnel MTU. Each writes a whole frame into the caller's buffer and returns its length, or
//! `None` when the buffer is too small.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::wire::ethernet::HEADER_LEN;
use super::wire::ipv6::{self, next_header};
use super::wire::{
    ArpOperation, ArpPacket, ArpRepr, EtherType, EthernetFrame, EthernetRepr, Icmpv6Packet,
    Ipv4Packet, Ipv4Repr, Ipv6Packet, Ipv6Repr, MacAddr, NdiscRepr, arp, checksum, ipv4,
};

/// The length of every ARP frame we send.
pub const ARP_FRAME_LEN: usize = HEADER_LEN + arp::ETHERNET_IPV4_LEN;
/// The length of every NS and NA we send (with its link-layer address option).
pub const NDISC_FRAME_LEN: usize = HEADER_LEN + ipv6::HEADER_LEN + 32;
/// How much of an offending packet an ICMP "too big" error quotes: its headers and the start of its
/// payload (RFC 1191 asks for the IP header and 8 bytes; more lets tunnels and NATs find their flow).
pub const TOO_BIG_QUOTE: usize = 128;
/// The longest ICMP "too big" frame we send (over IPv6; the IPv4 one is 20 bytes shorter).
pub const TOO_BIG_FRAME_LEN: usize =
    HEADER_LEN + ipv6::HEADER_LEN + ICMP_ERROR_HEADER_LEN + TOO_BIG_QUOTE;
/// A buffer of this size holds any control frame the adapter writes.
pub const MAX_CONTROL_FRAME_LEN: usize = TOO_BIG_FRAME_LEN;

/// Type, code, checksum and the 4 bytes that carry the MTU, in ICMPv4 and ICMPv6 errors alike.
const ICMP_ERROR_HEADER_LEN: usize = 8;
/// ICMPv4 "destination unreachable" (RFC 792).
const ICMPV4_UNREACHABLE: u8 = 3;
/// Its code "fragmentation needed and DF set" (RFC 1191).
const ICMPV4_FRAGMENTATION_NEEDED: u8 = 4;
/// ICMPv6 "packet too big" (RFC 4443 §3.2).
const ICMPV6_PACKET_TOO_BIG: u8 = 2;
/// ICMP's protocol number in IPv4.
const PROTOCOL_ICMP: u8 = 1;
/// The TTL / hop limit of the errors we originate.
const ERROR_TTL: u8 = 64;

/// ICMPv4 "fragmentation needed" (type 3, code 4) with next-hop MTU `mtu`, answering `packet` (a whole
/// IPv4 packet) on behalf of its destination, which the tunnel carries: from there back to its source.
pub fn ipv4_too_big(
    out: &mut [u8],
    eth_dst: MacAddr,
    eth_src: MacAddr,
    packet: &Ipv4Packet<&[u8]>,
    mtu: u16,
) -> Option<usize> {
    let quote = too_big_quote(packet.bytes());
    let icmp_len = ICMP_ERROR_HEADER_LEN + quote.len();
    let len = HEADER_LEN + ipv4::HEADER_LEN + icmp_len;
    let ip = ethernet_frame(out.get_mut(..len)?, eth_dst, eth_src, EtherType::Ipv4);
    Ipv4Repr {
        src_addr: packet.dst_addr(),
        dst_addr: packet.src_addr(),
        protocol: PROTOCOL_ICMP,
        ttl: ERROR_TTL,
        payload_len: icmp_len,
    }
    .emit(&mut Ipv4Packet::new_unchecked(&mut ip[..]));
    let icmp = &mut ip[ipv4::HEADER_LEN..];
    too_big_message(
        icmp,
        ICMPV4_UNREACHABLE,
        ICMPV4_FRAGMENTATION_NEEDED,
        mtu,
        quote,
    );
    let sum = checksum::checksum(icmp);
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());
    Some(len)
}

/// ICMPv6 "packet too big" with MTU `mtu`, answering `packet` (a whole IPv6 packet) on behalf of its
/// destination, which the tunnel carries: from there back to its source.
pub fn ipv6_too_big(
    out: &mut [u8],
    eth_dst: MacAddr,
    eth_src: MacAddr,
    packet: &Ipv6Packet<&[u8]>,
    mtu: u16,
) -> Option<usize> {
    let quote = too_big_quote(packet.bytes());
    let (src, dst) = (packet.dst_addr(), packet.src_addr());
    let icmp_len = ICMP_ERROR_HEADER_LEN + quote.len();
    let (len, icmp) = icmpv6_frame(out, eth_dst, eth_src, src, dst, ERROR_TTL, icmp_len)?;
    too_big_message(icmp, ICMPV6_PACKET_TOO_BIG, 0, mtu, quote);
    Icmpv6Packet::new_unchecked(icmp).fill_checksum(&src, &dst);
    Some(len)
}

/// The start of the offending packet that a "too big" error quotes.
fn too_big_quote(packet: &[u8]) -> &[u8] {
    &packet[..packet.len().min(TOO_BIG_QUOTE)]
}

/// An ICMP error message of `kind`/`code` carrying `mtu` and `quote`, its checksum left zero.
fn too_big_message(icmp: &mut [u8], kind: u8, code: u8, mtu: u16, quote: &[u8]) {
    icmp[..ICMP_ERROR_HEADER_LEN].fill(0);
    icmp[0] = kind;
    icmp[1] = code;
    icmp[6..8].copy_from_slice(&mtu.to_be_bytes());
    icmp[ICMP_ERROR_HEADER_LEN..].copy_from_slice(quote);
}

/// Writes the Ethernet header at the start of `frame` (the whole frame); returns the payload's room.
fn ethernet_frame(
    frame: &mut [u8],
    eth_dst: MacAddr,
    eth_src: MacAddr,
    ethertype: EtherType,
) -> &mut [u8] {
    EthernetRepr {
        src_addr: eth_src,
        dst_addr: eth_dst,
        ethertype,
    }
    .emit(&mut EthernetFrame::new_unchecked(&mut frame[..]));
    &mut frame[HEADER_LEN..]
}

/// Writes the Ethernet and IPv6 headers of an ICMPv6 frame with a message of `message_len` bytes;
/// returns the frame's length and the message's room, or `None` when `out` is too small.
fn icmpv6_frame(
    out: &mut [u8],
    eth_dst: MacAddr,
    eth_src: MacAddr,
    ip_src: Ipv6Addr,
    ip_dst: Ipv6Addr,
    hop_limit: u8,
    message_len: usize,
) -> Option<(usize, &mut [u8])> {
    let len = HEADER_LEN + ipv6::HEADER_LEN + message_len;
    let ip = ethernet_frame(out.get_mut(..len)?, eth_dst, eth_src, EtherType::Ipv6);
    Ipv6Repr {
        src_addr: ip_src,
        dst_addr: ip_dst,
        next_header: next_header::ICMPV6,
        hop_limit,
        payload_len: message_len,
    }
    .emit(&mut Ipv6Packet::new_unchecked(&mut ip[..]));
    Some((len, &mut ip[ipv6::HEADER_LEN..]))
}

/// Writes an Ethernet + ARP frame.
pub fn arp_frame(
    out: &mut [u8],
    eth_dst: MacAddr,
    eth_src: MacAddr,
    repr: &ArpRepr,
) -> Option<usize> {
    let arp = ethernet_frame(
        out.get_mut(..ARP_FRAME_LEN)?,
        eth_dst,
        eth_src,
        EtherType::Arp,
    );
    repr.emit(&mut ArpPacket::new_unchecked(arp));
    Some(ARP_FRAME_LEN)
}

/// Writes an Ethernet + IPv6 + NS/NA frame with hop limit 255 and a correct checksum.
pub fn ndisc_frame(
    out: &mut [u8],
    eth_dst: MacAddr,
    eth_src: MacAddr,
    ip_src: Ipv6Addr,
    ip_dst: Ipv6Addr,
    repr: &NdiscRepr,
) -> Option<usize> {
    let (len, message) = icmpv6_frame(
        out,
        eth_dst,
        eth_src,
        ip_src,
        ip_dst,
        255,
        repr.buffer_len(),
    )?;
    repr.emit(&mut Icmpv6Packet::new_unchecked(message), &ip_src, &ip_dst);
    Some(len)
}

/// A broadcast ARP request for `target` from `(self_mac, sender)`, or a unicast probe when `eth_dst` is
/// the neighbour's MAC (RFC 1122 §2.3.2.1).
pub fn arp_request(
    out: &mut [u8],
    eth_dst: MacAddr,
    self_mac: MacAddr,
    sender: Ipv4Addr,
    target: Ipv4Addr,
) -> Option<usize> {
    let repr = ArpRepr {
        operation: ArpOperation::Request,
        source_hardware_addr: self_mac,
        source_protocol_addr: sender,
        target_hardware_addr: MacAddr::ZERO,
        target_protocol_addr: target,
    };
    arp_frame(out, eth_dst, self_mac, &repr)
}

/// A gratuitous ARP announcing `addr` at `self_mac` (spec 7.2).
pub fn gratuitous_arp(out: &mut [u8], self_mac: MacAddr, addr: Ipv4Addr) -> Option<usize> {
    let repr = ArpRepr {
        operation: ArpOperation::Reply,
        source_hardware_addr: self_mac,
        source_protocol_addr: addr,
        target_hardware_addr: MacAddr::BROADCAST,
        target_protocol_addr: addr,
    };
    arp_frame(out, MacAddr::BROADCAST, self_mac, &repr)
}

/// A Neighbour Solicitation for `target` from `sender`: to the target's solicited-node group, or a
/// unicast probe to `(neighbour_mac, target)` when `unicast_to` is given.
pub fn neighbour_solicit(
    out: &mut [u8],
    self_mac: MacAddr,
    sender: Ipv6Addr,
    target: Ipv6Addr,
    unicast_to: Option<MacAddr>,
) -> Option<usize> {
    let (eth_dst, ip_dst) = match unicast_to {
        Some(mac) => (mac, target),
        None => {
            let group = ipv6::solicited_node(&target);
            (MacAddr::from_ipv6_multicast(group), group)
        }
    };
    let repr = NdiscRepr::NeighbourSolicit {
        target_addr: target,
        source_lladdr: Some(self_mac),
    };
    ndisc_frame(out, eth_dst, self_mac, sender, ip_dst, &repr)
}

/// An unsolicited Neighbour Advertisement of `addr` to all nodes, with only the Override flag (0x20):
/// RFC 4861 §7.2.6.
pub fn unsolicited_advert(out: &mut [u8], self_mac: MacAddr, addr: Ipv6Addr) -> Option<usize> {
    let repr = NdiscRepr::NeighbourAdvert {
        flags: super::wire::NeighbourFlags::OVERRIDE,
        target_addr: addr,
        target_lladdr: Some(self_mac),
    };
    ndisc_frame(
        out,
        MacAddr::IPV6_ALL_NODES,
        self_mac,
        addr,
        ipv6::ALL_NODES,
        &repr,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_buffers_are_refused_and_exact_ones_suffice() {
        let mac = MacAddr([2, 0, 0, 0, 0, 1]);
        let v4 = Ipv4Addr::new(192, 0, 2, 1);
        let v6: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let mut buffer = [0u8; MAX_CONTROL_FRAME_LEN];
        assert_eq!(
            arp_request(
                &mut buffer[..ARP_FRAME_LEN - 1],
                MacAddr::BROADCAST,
                mac,
                v4,
                v4
            ),
            None
        );
        assert_eq!(
            gratuitous_arp(&mut buffer[..ARP_FRAME_LEN], mac, v4),
            Some(ARP_FRAME_LEN)
        );
        assert_eq!(
            neighbour_solicit(&mut buffer[..NDISC_FRAME_LEN - 1], mac, v6, v6, None),
            None
        );
        assert_eq!(
            unsolicited_advert(&mut buffer[..NDISC_FRAME_LEN], mac, v6),
            Some(NDISC_FRAME_LEN)
        );
    }

    #[test]
    fn a_unicast_probe_goes_to_the_neighbour_and_its_address() {
        let me = MacAddr([2, 0, 0, 0, 0, 1]);
        let neighbour = MacAddr([2, 0, 0, 0, 0, 2]);
        let source: Ipv6Addr = "fd28:cb8f:4c92::33".parse().unwrap();
        let target: Ipv6Addr = "fd10:127:e00f::5".parse().unwrap();
        let mut frame = [0u8; NDISC_FRAME_LEN];
        neighbour_solicit(&mut frame, me, source, target, Some(neighbour)).unwrap();
        let eth = EthernetFrame::new_checked(&frame[..]).unwrap();
        assert_eq!(eth.dst_addr(), neighbour);
        let ip = Ipv6Packet::new_checked(eth.payload()).unwrap();
        assert_eq!(
            (ip.src_addr(), ip.dst_addr(), ip.hop_limit()),
            (source, target, 255)
        );
        let icmp = Icmpv6Packet::new_checked(ip.payload()).unwrap();
        assert_eq!(
            NdiscRepr::parse(&icmp, &source, &target).unwrap(),
            NdiscRepr::NeighbourSolicit {
                target_addr: target,
                source_lladdr: Some(me)
            }
        );
    }
}
