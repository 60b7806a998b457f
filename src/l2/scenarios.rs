//! The frame-level acceptance scenarios of the spec (section 12, numbers 12 to 29) on the spec's common
//! fixture, as tables. A name ending in `_deviation_bN` marks an intended difference from the original,
//! fixed as section 11's entry BN asks.
//!
//! The rows of the decision tables (spec 6.2 and 6.3) map onto them as follows: A1 `s12b`, A2 `s12`,
//! A3 `s13`, A4 `s16_broadcast_gratuitous_arp_reply`, A5 `s21_ipv4_broadcast`, B1
//! `s19_ns_for_a_learned_neighbour`, B2 `s17`, B3 `s19_ns_for_unclaimed_target`, B4 the other `s19`
//! cases, C1 `s16_unicast_arp_reply`, C2 `s12_unicast_arp_request`, C3 `s20`, C4 `s21`/`s22` (data,
//! unicast NS, VLAN, padding), C5 `s22_runt`, D `s21_ipv4_data_to_another_mac`; TX: `s24` (gateway and
//! multicast), `s25` (learning-range miss), `s26`/`s27` (learned).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::frames::{self, MAX_CONTROL_FRAME_LEN};
use super::wire::ipv6::next_header;
use super::wire::{
    ArpOperation, ArpRepr, EtherType, EthernetFrame, EthernetRepr, Icmpv6Packet, Ipv4Packet,
    Ipv4Repr, Ipv6Packet, Ipv6Repr, MacAddr, NdiscRepr, NeighbourFlags, checksum,
};
use super::*;

const SELF: MacAddr = MacAddr([0x98, 0xd2, 0x93, 0, 0, 3]);
const GATEWAY: MacAddr = MacAddr([0x42; 6]);
const STRANGER: MacAddr = MacAddr([2, 0, 0, 0, 0, 9]);
const NEIGHBOUR_A: MacAddr = MacAddr([2, 0, 0, 0, 0, 0x0a]);
const NEIGHBOUR_B: MacAddr = MacAddr([2, 0, 0, 0, 0, 0x0b]);

fn v4(text: &str) -> Ipv4Addr {
    text.parse().unwrap()
}

fn v6(text: &str) -> Ipv6Addr {
    text.parse().unwrap()
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

/// The spec's common fixture (`if/home.json` and `gw/4242.json`), as the tunnel runtime would fill it.
pub(super) fn fixture() -> L2Config {
    let mut config = L2Config::new(SELF, GATEWAY);
    config.arp_respond = vec!["172.22.77.33/32".parse().unwrap()];
    config.ndp_respond = vec![
        "fd28:cb8f:4c92::33/128".parse().unwrap(),
        "fe80::42:1817:1/128".parse().unwrap(),
    ];
    config.arp_learn = vec!["10.127.111.0/24".parse().unwrap()];
    config.ndp_learn = vec!["fd10:127:e00f::/64".parse().unwrap()];
    config.install = NeighbourInstall {
        ipv4: true,
        ipv6: true,
        ipv6_link_local: true,
    };
    config
}

// Scenario 12, literally (cross-checked with scapy in tests/l2_frames.rs).
static ARP_REQUEST_12: [u8; 42] = [
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x08, 0x06, //
    0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, //
    0x0a, 0x7f, 0x6f, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xac, 0x16, 0x4d, 0x21,
];
static ARP_REPLY_12: [u8; 42] = [
    0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x98, 0xd2, 0x93, 0x00, 0x00, 0x03, 0x08, 0x06, //
    0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x02, 0x98, 0xd2, 0x93, 0x00, 0x00, 0x03, //
    0xac, 0x16, 0x4d, 0x21, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x0a, 0x7f, 0x6f, 0x01,
];
// Scenario 17, literally.
static NS_17: [u8; 86] = [
    0x33, 0x33, 0xff, 0x00, 0x00, 0x33, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x86, 0xdd, //
    0x60, 0x00, 0x00, 0x00, 0x00, 0x20, 0x3a, 0xff, 0xfd, 0x10, 0x01, 0x27, 0xe0, 0x0f, //
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0xff, 0x02, 0x00, 0x00, //
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0xff, 0x00, 0x00, 0x33, 0x87, 0x00, //
    0xbe, 0xde, 0x00, 0x00, 0x00, 0x00, 0xfd, 0x28, 0xcb, 0x8f, 0x4c, 0x92, 0x00, 0x00, //
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x33, 0x01, 0x01, 0x42, 0x42, 0x42, 0x42, //
    0x42, 0x42,
];
static NA_17: [u8; 86] = [
    0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x98, 0xd2, 0x93, 0x00, 0x00, 0x03, 0x86, 0xdd, //
    0x60, 0x00, 0x00, 0x00, 0x00, 0x20, 0x3a, 0xff, 0xfd, 0x28, 0xcb, 0x8f, 0x4c, 0x92, //
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x33, 0xfd, 0x10, 0x01, 0x27, //
    0xe0, 0x0f, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x88, 0x00, //
    0xe0, 0x88, 0x60, 0x00, 0x00, 0x00, 0xfd, 0x28, 0xcb, 0x8f, 0x4c, 0x92, 0x00, 0x00, //
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x33, 0x02, 0x01, 0x98, 0xd2, 0x93, 0x00, //
    0x00, 0x03,
];

// ---- frame builders for the tables (the literal frames above pin the builders down) ----

pub(super) fn arp(
    eth_dst: MacAddr,
    eth_src: MacAddr,
    op: ArpOperation,
    spa: &str,
    tha: MacAddr,
    tpa: &str,
) -> Vec<u8> {
    let repr = ArpRepr {
        operation: op,
        source_hardware_addr: eth_src,
        source_protocol_addr: v4(spa),
        target_hardware_addr: tha,
        target_protocol_addr: v4(tpa),
    };
    let mut out = vec![0; frames::ARP_FRAME_LEN];
    frames::arp_frame(&mut out, eth_dst, eth_src, &repr).unwrap();
    out
}

pub(super) fn ndisc(
    eth_dst: MacAddr,
    eth_src: MacAddr,
    src: &str,
    dst: &str,
    repr: NdiscRepr,
) -> Vec<u8> {
    let mut out = vec![0; MAX_CONTROL_FRAME_LEN];
    let len = frames::ndisc_frame(&mut out, eth_dst, eth_src, v6(src), v6(dst), &repr).unwrap();
    out.truncate(len);
    out
}

fn ns(eth_dst: MacAddr, src: &str, dst: &str, target: &str, slla: Option<MacAddr>) -> Vec<u8> {
    ndisc(
        eth_dst,
        GATEWAY,
        src,
        dst,
        NdiscRepr::NeighbourSolicit {
            target_addr: v6(target),
            source_lladdr: slla,
        },
    )
}

fn na(
    eth_dst: MacAddr,
    eth_src: MacAddr,
    src: &str,
    dst: &str,
    flags: u8,
    tlla: Option<MacAddr>,
) -> Vec<u8> {
    let repr = NdiscRepr::NeighbourAdvert {
        flags: NeighbourFlags(flags),
        target_addr: v6(src),
        target_lladdr: tlla,
    };
    ndisc(eth_dst, eth_src, src, dst, repr)
}

/// An IPv4 packet (UDP protocol number, `payload` bytes) without Ethernet header.
pub(super) fn ipv4_packet(src: &str, dst: &str, protocol: u8, payload: &[u8]) -> Vec<u8> {
    let repr = Ipv4Repr {
        src_addr: v4(src),
        dst_addr: v4(dst),
        protocol,
        ttl: 64,
        payload_len: payload.len(),
    };
    let mut packet = vec![0; 20 + payload.len()];
    repr.emit(&mut Ipv4Packet::new_unchecked(&mut packet[..]));
    packet[20..].copy_from_slice(payload);
    packet
}

/// An IPv6 packet (`next` header, `payload` bytes) without Ethernet header.
pub(super) fn ipv6_packet(src: &str, dst: &str, next: u8, payload: &[u8]) -> Vec<u8> {
    let repr = Ipv6Repr {
        src_addr: v6(src),
        dst_addr: v6(dst),
        next_header: next,
        hop_limit: 64,
        payload_len: payload.len(),
    };
    let mut packet = vec![0; 40 + payload.len()];
    repr.emit(&mut Ipv6Packet::new_unchecked(&mut packet[..]));
    packet[40..].copy_from_slice(payload);
    packet
}

/// `packet` in an Ethernet frame, with `padding` zero bytes after it.
pub(super) fn ethernet(
    dst: MacAddr,
    src: MacAddr,
    ethertype: EtherType,
    packet: &[u8],
    padding: usize,
) -> Vec<u8> {
    let mut frame = EthernetRepr {
        src_addr: src,
        dst_addr: dst,
        ethertype,
    }
    .to_bytes()
    .to_vec();
    frame.extend_from_slice(packet);
    frame.resize(frame.len() + padding, 0);
    frame
}

/// An ICMPv6 message of `kind` (8 bytes, correct checksum) from `src` to `dst`, hop limit 255.
fn icmpv6(src: &str, dst: &str, kind: u8) -> Vec<u8> {
    let mut message = [kind, 0, 0, 0, 0, 0, 0, 0];
    Icmpv6Packet::new_unchecked(&mut message[..]).fill_checksum(&v6(src), &v6(dst));
    let mut packet = ipv6_packet(src, dst, next_header::ICMPV6, &message);
    packet[7] = 255;
    packet
}

// ---- RX table ----

/// What a frame must lead to.
enum Expect {
    /// This reply frame.
    Answer(Vec<u8>),
    /// Delivery of exactly these bytes.
    Deliver(Vec<u8>),
    Consumed,
    Dropped(DropReason),
}

struct RxCase {
    name: &'static str,
    /// Neighbours known before the frame (as learned from earlier scenarios).
    known: &'static [(&'static str, MacAddr)],
    frame: Vec<u8>,
    expect: Expect,
    learned: Option<(&'static str, MacAddr)>,
    install: Option<&'static str>,
}

fn case(name: &'static str, frame: Vec<u8>, expect: Expect) -> RxCase {
    RxCase {
        name,
        known: &[],
        frame,
        expect,
        learned: None,
        install: None,
    }
}

fn rx_cases() -> Vec<RxCase> {
    use ArpOperation::{Reply, Request};
    use Expect::*;
    let bcast = MacAddr::BROADCAST;
    let zero = MacAddr::ZERO;
    let data_v4 = ipv4_packet("10.127.111.1", "172.22.77.33", 17, b"hello over the tunnel");
    let data_v6 = ipv6_packet(
        "fd10:127:e00f::1",
        "fd28:cb8f:4c92::33",
        17,
        b"hello over the tunnel",
    );
    // Reassembled by memif from a chain of 2048-byte buffers (scenario 23).
    let big_v6 = ipv6_packet("fd10:127:e00f::1", "fd28:cb8f:4c92::33", 17, &[0x5a; 4000]);
    let na_20 = na(
        SELF,
        NEIGHBOUR_B,
        "fd10:127:e00f::5",
        "fd28:cb8f:4c92::33",
        0x60,
        Some(NEIGHBOUR_B),
    );
    vec![
        RxCase {
            learned: Some(("10.127.111.1", GATEWAY)),
            install: Some("172.22.77.33"),
            ..case(
                "s12_arp_request_for_claimed_ip_is_answered",
                ARP_REQUEST_12.to_vec(),
                Answer(ARP_REPLY_12.to_vec()),
            )
        },
        RxCase {
            known: &[("10.127.111.1", GATEWAY)],
            ..case(
                "s12b_learned_neighbour_is_not_answered_deviation_b4",
                arp(
                    bcast,
                    STRANGER,
                    Request,
                    "10.127.111.9",
                    zero,
                    "10.127.111.1",
                ),
                Dropped(DropReason::NotClaimed),
            )
        },
        case(
            "s13_arp_request_for_unclaimed_ip_is_ignored",
            arp(
                bcast,
                GATEWAY,
                Request,
                "10.127.111.1",
                zero,
                "172.22.77.34",
            ),
            Dropped(DropReason::NotClaimed),
        ),
        case(
            "s14_arp_request_from_non_gateway_is_answered_without_install",
            arp(bcast, STRANGER, Request, "192.0.2.9", zero, "172.22.77.33"),
            Answer(arp(
                STRANGER,
                SELF,
                Reply,
                "172.22.77.33",
                STRANGER,
                "192.0.2.9",
            )),
        ),
        case(
            "s15_arp_probe_is_answered_with_the_claimed_ip_as_target",
            arp(bcast, STRANGER, Request, "0.0.0.0", zero, "172.22.77.33"),
            Answer(arp(
                STRANGER,
                SELF,
                Reply,
                "172.22.77.33",
                STRANGER,
                "172.22.77.33",
            )),
        ),
        RxCase {
            learned: Some(("10.127.111.7", NEIGHBOUR_A)),
            ..case(
                "s16_unicast_arp_reply_is_learned",
                arp(
                    SELF,
                    NEIGHBOUR_A,
                    Reply,
                    "10.127.111.7",
                    SELF,
                    "172.22.77.33",
                ),
                Consumed,
            )
        },
        case(
            "s16_arp_reply_outside_learning_range_is_not_learned",
            arp(
                SELF,
                NEIGHBOUR_A,
                Reply,
                "10.127.112.7",
                SELF,
                "172.22.77.33",
            ),
            Dropped(DropReason::OutsideLearningRange),
        ),
        RxCase {
            learned: Some(("10.127.111.8", NEIGHBOUR_A)),
            ..case(
                "s16_broadcast_gratuitous_arp_reply_is_learned_by_sender_deviation_b6",
                arp(
                    bcast,
                    NEIGHBOUR_A,
                    Reply,
                    "10.127.111.8",
                    bcast,
                    "10.127.111.8",
                ),
                Consumed,
            )
        },
        RxCase {
            learned: Some(("10.127.111.8", NEIGHBOUR_A)),
            ..case(
                "s16_gratuitous_arp_request_is_learned",
                arp(
                    bcast,
                    NEIGHBOUR_A,
                    Request,
                    "10.127.111.8",
                    zero,
                    "10.127.111.8",
                ),
                Consumed,
            )
        },
        RxCase {
            learned: Some(("10.127.111.1", GATEWAY)),
            install: Some("172.22.77.33"),
            ..case(
                "s12_unicast_arp_request_to_self_is_answered_deviation_b5",
                arp(SELF, GATEWAY, Request, "10.127.111.1", zero, "172.22.77.33"),
                Answer(ARP_REPLY_12.to_vec()),
            )
        },
        RxCase {
            learned: Some(("fd10:127:e00f::1", GATEWAY)),
            install: Some("fd28:cb8f:4c92::33"),
            ..case(
                "s17_ns_for_claimed_global_ip_is_answered",
                NS_17.to_vec(),
                Answer(NA_17.to_vec()),
            )
        },
        RxCase {
            install: Some("fe80::42:1817:1"),
            ..case(
                "s18_ns_for_claimed_link_local_ip_is_answered",
                ns(
                    MacAddr([0x33, 0x33, 0xff, 0x17, 0, 1]),
                    "fe80::aa:1111:1",
                    "ff02::1:ff17:1",
                    "fe80::42:1817:1",
                    Some(GATEWAY),
                ),
                Answer(na(
                    GATEWAY,
                    SELF,
                    "fe80::42:1817:1",
                    "fe80::aa:1111:1",
                    0x60,
                    Some(SELF),
                )),
            )
        },
        RxCase {
            learned: Some(("fd10:127:e00f::1", GATEWAY)),
            install: Some("fd28:cb8f:4c92::33"),
            ..case(
                "s22_unicast_ns_to_self_is_answered_not_tunnelled_deviation_b5",
                ns(
                    SELF,
                    "fd10:127:e00f::1",
                    "fd28:cb8f:4c92::33",
                    "fd28:cb8f:4c92::33",
                    Some(GATEWAY),
                ),
                Answer(NA_17.to_vec()),
            )
        },
        RxCase {
            install: Some("fd28:cb8f:4c92::33"),
            ..case(
                "s17_dad_ns_is_answered_to_all_nodes_without_s_flag_deviation_b6",
                ns(
                    MacAddr([0x33, 0x33, 0xff, 0, 0, 0x33]),
                    "::",
                    "ff02::1:ff00:33",
                    "fd28:cb8f:4c92::33",
                    None,
                ),
                Answer(ndisc(
                    MacAddr::IPV6_ALL_NODES,
                    SELF,
                    "fd28:cb8f:4c92::33",
                    "ff02::1",
                    NdiscRepr::NeighbourAdvert {
                        flags: NeighbourFlags::OVERRIDE,
                        target_addr: v6("fd28:cb8f:4c92::33"),
                        target_lladdr: Some(SELF),
                    },
                )),
            )
        },
        case(
            "s17_ns_to_the_wrong_solicited_node_group_is_dropped_deviation_b6",
            ns(
                MacAddr([0x33, 0x33, 0xff, 0, 0, 0x34]),
                "fd10:127:e00f::1",
                "ff02::1:ff00:34",
                "fd28:cb8f:4c92::33",
                Some(GATEWAY),
            ),
            Dropped(DropReason::InvalidNeighbourDiscovery),
        ),
        case(
            "s17_ns_with_hop_limit_below_255_is_dropped_deviation_b6",
            {
                let mut frame = NS_17.to_vec();
                frame[21] = 64;
                frame
            },
            Dropped(DropReason::InvalidNeighbourDiscovery),
        ),
        case(
            "s17_ns_with_bad_checksum_is_dropped_deviation_b6",
            {
                let mut frame = NS_17.to_vec();
                frame[57] ^= 0xff;
                frame
            },
            Dropped(DropReason::BadChecksum),
        ),
        case(
            "s17_dad_ns_with_source_link_layer_option_is_dropped_deviation_b6",
            ns(
                MacAddr([0x33, 0x33, 0xff, 0, 0, 0x33]),
                "::",
                "ff02::1:ff00:33",
                "fd28:cb8f:4c92::33",
                Some(GATEWAY),
            ),
            Dropped(DropReason::InvalidNeighbourDiscovery),
        ),
        RxCase {
            known: &[("fd10:127:e00f::1", GATEWAY)],
            ..case(
                "s19_ns_for_a_learned_neighbour_is_not_answered_deviation_b4",
                ns(
                    MacAddr([0x33, 0x33, 0xff, 0, 0, 1]),
                    "fd10:127:e00f::9",
                    "ff02::1:ff00:1",
                    "fd10:127:e00f::1",
                    Some(GATEWAY),
                ),
                Dropped(DropReason::NotClaimed),
            )
        },
        case(
            "s19_ns_for_unclaimed_target_is_ignored",
            ns(
                MacAddr([0x33, 0x33, 0xff, 0, 0, 0x34]),
                "fd10:127:e00f::1",
                "ff02::1:ff00:34",
                "fd28:cb8f:4c92::34",
                Some(GATEWAY),
            ),
            Dropped(DropReason::NotClaimed),
        ),
        case(
            "s19_router_solicitation_is_never_delivered",
            ethernet(
                MacAddr([0x33, 0x33, 0, 0, 0, 2]),
                GATEWAY,
                EtherType::Ipv6,
                &icmpv6("fe80::aa:1111:1", "ff02::2", 133),
                0,
            ),
            Dropped(DropReason::LinkLocalControl),
        ),
        case(
            "s19_mld_report_behind_hop_by_hop_is_never_delivered",
            {
                let mut message = vec![143, 0, 0, 0, 0, 0, 0, 0];
                Icmpv6Packet::new_unchecked(&mut message[..])
                    .fill_checksum(&v6("fe80::aa:1111:1"), &v6("ff02::16"));
                let mut payload = vec![next_header::ICMPV6, 0, 5, 2, 0, 0, 1, 0];
                payload.extend_from_slice(&message);
                let packet = ipv6_packet(
                    "fe80::aa:1111:1",
                    "ff02::16",
                    next_header::HOP_BY_HOP,
                    &payload,
                );
                ethernet(
                    MacAddr([0x33, 0x33, 0, 0, 0, 0x16]),
                    GATEWAY,
                    EtherType::Ipv6,
                    &packet,
                    0,
                )
            },
            Dropped(DropReason::LinkLocalControl),
        ),
        case(
            "s19_ospfv3_multicast_is_delivered_deviation_b7",
            ethernet(
                MacAddr([0x33, 0x33, 0, 0, 0, 5]),
                GATEWAY,
                EtherType::Ipv6,
                &ipv6_packet("fe80::aa:1111:1", "ff02::5", 89, b"ospf"),
                0,
            ),
            Deliver(ipv6_packet("fe80::aa:1111:1", "ff02::5", 89, b"ospf")),
        ),
        case(
            "s19_dhcpv6_multicast_is_delivered_deviation_b7",
            ethernet(
                MacAddr([0x33, 0x33, 0, 1, 0, 2]),
                GATEWAY,
                EtherType::Ipv6,
                &ipv6_packet("fe80::aa:1111:1", "ff02::1:2", 17, b"dhcp"),
                0,
            ),
            Deliver(ipv6_packet("fe80::aa:1111:1", "ff02::1:2", 17, b"dhcp")),
        ),
        case(
            "s19_ipv4_ospf_multicast_is_delivered_deviation_b7",
            ethernet(
                MacAddr([1, 0, 0x5e, 0, 0, 5]),
                GATEWAY,
                EtherType::Ipv4,
                &ipv4_packet("10.127.111.1", "224.0.0.5", 89, b"ospf"),
                0,
            ),
            Deliver(ipv4_packet("10.127.111.1", "224.0.0.5", 89, b"ospf")),
        ),
        case(
            "s19_igmp_is_never_delivered",
            ethernet(
                MacAddr([1, 0, 0x5e, 0, 0, 0x16]),
                GATEWAY,
                EtherType::Ipv4,
                &ipv4_packet("10.127.111.1", "224.0.0.22", 2, b"igmp"),
                0,
            ),
            Dropped(DropReason::LinkLocalControl),
        ),
        case(
            "s19_multicast_to_a_mismatched_group_mac_is_dropped",
            ethernet(
                MacAddr([0x33, 0x33, 0, 0, 0, 6]),
                GATEWAY,
                EtherType::Ipv6,
                &ipv6_packet("fe80::aa:1111:1", "ff02::5", 89, b"ospf"),
                0,
            ),
            Dropped(DropReason::MulticastMismatch),
        ),
        RxCase {
            learned: Some(("fd10:127:e00f::5", NEIGHBOUR_B)),
            ..case("s20_86_byte_na_to_self_is_learned", na_20.clone(), Consumed)
        },
        RxCase {
            learned: Some(("fd10:127:e00f::5", NEIGHBOUR_B)),
            ..case(
                "s20_na_without_tlla_is_learned_from_ethernet_source_deviation_b5",
                na(
                    SELF,
                    NEIGHBOUR_B,
                    "fd10:127:e00f::5",
                    "fd28:cb8f:4c92::33",
                    0x60,
                    None,
                ),
                Consumed,
            )
        },
        RxCase {
            learned: Some(("fd10:127:e00f::5", NEIGHBOUR_B)),
            ..case(
                "s20_padded_na_is_learned_deviation_b5",
                {
                    let mut frame = na_20.clone();
                    frame.extend_from_slice(&[0; 10]);
                    frame
                },
                Consumed,
            )
        },
        RxCase {
            learned: Some(("fd10:127:e00f::6", NEIGHBOUR_A)),
            ..case(
                "s20_unsolicited_na_without_s_flag_is_learned",
                na(
                    MacAddr::IPV6_ALL_NODES,
                    NEIGHBOUR_A,
                    "fd10:127:e00f::6",
                    "ff02::1",
                    0x20,
                    Some(NEIGHBOUR_A),
                ),
                Consumed,
            )
        },
        RxCase {
            known: &[("fd10:127:e00f::5", NEIGHBOUR_A)],
            ..case(
                "s20_na_without_override_flag_does_not_move_a_known_neighbour",
                na(
                    SELF,
                    NEIGHBOUR_B,
                    "fd10:127:e00f::5",
                    "fd28:cb8f:4c92::33",
                    0x40,
                    Some(NEIGHBOUR_B),
                ),
                Consumed,
            )
        },
        case(
            "s13_arp_to_a_non_broadcast_group_is_dropped",
            arp(
                MacAddr([1, 0, 0x5e, 0, 0, 1]),
                GATEWAY,
                Request,
                "10.127.111.1",
                zero,
                "172.22.77.33",
            ),
            Dropped(DropReason::UnsupportedGroup),
        ),
        case(
            "s20_multicast_na_with_s_flag_is_invalid",
            na(
                MacAddr::IPV6_ALL_NODES,
                NEIGHBOUR_A,
                "fd10:127:e00f::6",
                "ff02::1",
                0x60,
                Some(NEIGHBOUR_A),
            ),
            Dropped(DropReason::InvalidNeighbourDiscovery),
        ),
        case(
            "s20_na_outside_learning_range_is_not_learned",
            na(
                SELF,
                NEIGHBOUR_B,
                "fd10:127:e010::5",
                "fd28:cb8f:4c92::33",
                0x60,
                Some(NEIGHBOUR_B),
            ),
            Dropped(DropReason::OutsideLearningRange),
        ),
        case(
            "s21_ipv4_data_to_self_is_delivered",
            ethernet(SELF, GATEWAY, EtherType::Ipv4, &data_v4, 0),
            Deliver(data_v4.clone()),
        ),
        case(
            "s21_ipv4_data_with_ethernet_padding_is_trimmed_deviation_b20",
            ethernet(
                SELF,
                GATEWAY,
                EtherType::Ipv4,
                &ipv4_packet("10.127.111.1", "172.22.77.33", 17, b"x"),
                25,
            ),
            Deliver(ipv4_packet("10.127.111.1", "172.22.77.33", 17, b"x")),
        ),
        case(
            "s21_ipv4_data_to_another_mac_is_dropped",
            ethernet(
                MacAddr([2, 0, 0, 0, 0, 0x99]),
                GATEWAY,
                EtherType::Ipv4,
                &data_v4,
                0,
            ),
            Dropped(DropReason::NotForUs),
        ),
        case(
            "s21_ipv4_broadcast_is_dropped",
            ethernet(
                MacAddr::BROADCAST,
                GATEWAY,
                EtherType::Ipv4,
                &ipv4_packet("10.127.111.1", "255.255.255.255", 17, b"x"),
                0,
            ),
            Dropped(DropReason::UnsupportedGroup),
        ),
        case(
            "s21_ipv4_bad_header_checksum_is_dropped",
            {
                let mut frame = ethernet(SELF, GATEWAY, EtherType::Ipv4, &data_v4, 0);
                frame[24] ^= 0xff;
                frame
            },
            Dropped(DropReason::BadChecksum),
        ),
        case(
            "s21_truncated_ipv4_is_dropped",
            ethernet(
                SELF,
                GATEWAY,
                EtherType::Ipv4,
                &data_v4[..data_v4.len() - 1],
                0,
            ),
            Dropped(DropReason::MalformedIp),
        ),
        case(
            "s23_frame_larger_than_a_memif_buffer_is_delivered_whole",
            ethernet(SELF, GATEWAY, EtherType::Ipv6, &big_v6, 0),
            Deliver(big_v6.clone()),
        ),
        case(
            "s22_ipv6_data_to_self_is_delivered_unchanged",
            ethernet(SELF, GATEWAY, EtherType::Ipv6, &data_v6, 0),
            Deliver(data_v6.clone()),
        ),
        case(
            "s22_ipv6_data_with_padding_is_trimmed_deviation_b20",
            ethernet(SELF, GATEWAY, EtherType::Ipv6, &data_v6, 7),
            Deliver(data_v6.clone()),
        ),
        case(
            "s22_vlan_tagged_frame_is_dropped_deviation_b20",
            {
                let mut tagged = vec![0, 42, 0x08, 0x00];
                tagged.extend_from_slice(&data_v4);
                ethernet(SELF, GATEWAY, EtherType::Vlan, &tagged, 0)
            },
            Dropped(DropReason::VlanTagged),
        ),
        case(
            "s22_arp_to_self_never_leaks_to_wireguard_deviation_b5",
            arp(SELF, GATEWAY, Request, "10.127.111.1", zero, "10.127.111.2"),
            Dropped(DropReason::NotClaimed),
        ),
        case(
            "s22_runt_frame_is_dropped_not_a_crash_deviation_b19",
            SELF.0.to_vec(),
            Dropped(DropReason::Runt),
        ),
        case(
            "s22_short_arp_is_dropped_deviation_b19",
            ARP_REQUEST_12[..41].to_vec(),
            Dropped(DropReason::MalformedArp),
        ),
        case(
            "s22_unknown_ethertype_is_dropped_deviation_b20",
            ethernet(SELF, GATEWAY, EtherType::Unknown(0x88cc), b"lldp", 0),
            Dropped(DropReason::UnsupportedEtherType),
        ),
        case(
            "s22_frame_from_our_own_mac_is_dropped",
            ethernet(SELF, SELF, EtherType::Ipv4, &data_v4, 0),
            Dropped(DropReason::Looped),
        ),
        case(
            "s22_frame_from_a_group_mac_is_dropped",
            ethernet(SELF, MacAddr::BROADCAST, EtherType::Ipv4, &data_v4, 0),
            Dropped(DropReason::InvalidSourceMac),
        ),
    ]
}

#[test]
fn rx_scenarios() {
    for case in rx_cases() {
        let now = Instant::now();
        let adapter = Adapter::new(fixture());
        // The spec's frames include jumbo ones; the MTU's own rules are tested on their own.
        adapter.set_mtu(9000);
        for (ip, mac) in case.known {
            adapter.lock_cache().learn(self::ip(ip), *mac, true, now);
        }
        let mut reply = [0xa5; 128];
        let outcome = adapter.on_frame(&case.frame, now, &mut reply);
        let name = case.name;
        match (&case.expect, &outcome.action) {
            (Expect::Answer(want), RxAction::Reply(len)) => {
                assert_eq!(&reply[..*len], &want[..], "{name}: reply bytes");
            }
            (Expect::Deliver(want), RxAction::Deliver(range)) => {
                assert_eq!(
                    &case.frame[range.clone()],
                    &want[..],
                    "{name}: delivered bytes"
                );
            }
            (Expect::Consumed, RxAction::Consumed) => {}
            (Expect::Dropped(want), RxAction::Dropped(reason)) => {
                assert_eq!(reason, want, "{name}: drop reason")
            }
            (_, action) => panic!("{name}: unexpected action {action:?}"),
        }
        let learned = case.learned.map(|(ip, mac)| Neighbour {
            ip: self::ip(ip),
            mac,
        });
        assert_eq!(outcome.learned, learned, "{name}: learned");
        assert_eq!(outcome.install, case.install.map(ip), "{name}: install");
        if let Some(Neighbour { ip, mac }) = learned {
            assert_eq!(
                adapter.lock_cache().get(&ip),
                Some(mac),
                "{name}: in the table"
            );
        }
        for (ip, mac) in case.known {
            if learned.is_none_or(|learned| learned.ip != self::ip(ip)) {
                assert_eq!(
                    adapter.lock_cache().get(&self::ip(ip)),
                    Some(*mac),
                    "{name}: {ip} unchanged"
                );
            }
        }
        // Every outcome is counted exactly once.
        let counters = adapter.counters();
        let drops: u64 = counters.drops().map(|(_, n)| n).sum();
        assert_eq!(
            drops,
            u64::from(matches!(outcome.action, RxAction::Dropped(_))),
            "{name}: drop counted"
        );
        let count = |events: &[Event]| events.iter().map(|e| counters.count(*e)).sum::<u64>();
        let answered = count(&[Event::ArpReplied, Event::NeighbourAdvertised]);
        let neighbour_events = count(&[Event::Learned, Event::Confirmed, Event::OverrideRefused]);
        match outcome.action {
            RxAction::Reply(_) => assert_eq!(answered, 1, "{name}: answer counted"),
            RxAction::Deliver(_) => assert_eq!(
                counters.count(Event::Delivered),
                1,
                "{name}: delivery counted"
            ),
            RxAction::Consumed => {
                assert_eq!(neighbour_events, 1, "{name}: neighbour event counted")
            }
            RxAction::Dropped(_) => {
                assert_eq!(answered + counters.count(Event::Delivered), 0, "{name}")
            }
        }
    }
}

#[test]
fn s12b_original_would_spoof_but_an_answer_needs_a_claim_deviation_b4() {
    // After scenario 12 the BVI's address is learned; a request for it is still not ours to answer.
    let adapter = Adapter::new(fixture());
    let now = Instant::now();
    let mut reply = [0; 128];
    assert!(matches!(
        adapter.on_frame(&ARP_REQUEST_12, now, &mut reply).action,
        RxAction::Reply(_)
    ));
    let request = arp(
        MacAddr::BROADCAST,
        STRANGER,
        ArpOperation::Request,
        "10.127.111.9",
        MacAddr::ZERO,
        "10.127.111.1",
    );
    assert_eq!(
        adapter.on_frame(&request, now, &mut reply).action,
        RxAction::Dropped(DropReason::NotClaimed)
    );
}

#[test]
fn install_follows_the_per_family_flags() {
    let mut config = fixture();
    config.install = NeighbourInstall {
        ipv4: false,
        ipv6: false,
        ipv6_link_local: true,
    };
    let adapter = Adapter::new(config);
    let mut reply = [0; 128];
    let now = Instant::now();
    assert_eq!(
        adapter.on_frame(&ARP_REQUEST_12, now, &mut reply).install,
        None
    );
    assert_eq!(adapter.on_frame(&NS_17, now, &mut reply).install, None);
    let link_local = ns(
        MacAddr([0x33, 0x33, 0xff, 0x17, 0, 1]),
        "fe80::aa:1111:1",
        "ff02::1:ff17:1",
        "fe80::42:1817:1",
        Some(GATEWAY),
    );
    assert_eq!(
        adapter.on_frame(&link_local, now, &mut reply).install,
        Some(ip("fe80::42:1817:1"))
    );
}

#[test]
fn multicast_delivery_can_be_turned_off() {
    let mut config = fixture();
    config.deliver_multicast = false;
    let adapter = Adapter::new(config);
    let frame = ethernet(
        MacAddr([0x33, 0x33, 0, 0, 0, 5]),
        GATEWAY,
        EtherType::Ipv6,
        &ipv6_packet("fe80::aa:1111:1", "ff02::5", 89, b"ospf"),
        0,
    );
    let mut reply = [0; 128];
    assert_eq!(
        adapter.on_frame(&frame, Instant::now(), &mut reply).action,
        RxAction::Dropped(DropReason::MulticastDisabled)
    );
}

#[test]
fn too_small_reply_buffer_is_a_counted_drop() {
    let adapter = Adapter::new(fixture());
    let mut reply = [0; 41];
    let outcome = adapter.on_frame(&ARP_REQUEST_12, Instant::now(), &mut reply);
    assert_eq!(
        outcome.action,
        RxAction::Dropped(DropReason::ReplyBufferTooSmall)
    );
    assert_eq!(
        adapter.counters().dropped(DropReason::ReplyBufferTooSmall),
        1
    );
}

/// Above the tunnel MTU: DF IPv4 and any IPv6 to our MAC are answered with ICMP "too big" naming the MTU,
/// from the destination back to the source; IPv4 without DF is carried; ICMP errors, multicast and later
/// fragments get no answer (RFC 1122, RFC 4443 §2.4). Every one is counted.
#[test]
fn packets_above_the_mtu_get_icmp_too_big_when_allowed() {
    let adapter = Adapter::new(fixture());
    adapter.set_mtu(1280);
    let now = Instant::now();
    let mut reply = [0; MAX_CONTROL_FRAME_LEN];
    let big = vec![0u8; 1300];
    let with_df = |mut packet: Vec<u8>, offset: u16| {
        packet[6..8].copy_from_slice(&(0x4000 | offset).to_be_bytes());
        packet[10..12].fill(0);
        let sum = checksum::checksum(&packet[..20]);
        packet[10..12].copy_from_slice(&sum.to_be_bytes());
        packet
    };

    let packet4 = with_df(ipv4_packet("10.127.111.2", "172.22.77.33", 17, &big), 0);
    let frame = ethernet(SELF, GATEWAY, EtherType::Ipv4, &packet4, 0);
    let RxAction::Reply(len) = adapter.on_frame(&frame, now, &mut reply).action else {
        panic!("no ICMP for a DF packet above the MTU");
    };
    let eth = EthernetFrame::new_checked(&reply[..len]).unwrap();
    assert_eq!((eth.dst_addr(), eth.src_addr()), (GATEWAY, SELF));
    let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
    assert!(ip.verify_checksum());
    assert_eq!(
        (ip.src_addr(), ip.dst_addr(), ip.protocol()),
        (v4("172.22.77.33"), v4("10.127.111.2"), 1)
    );
    let icmp = ip.payload();
    assert_eq!(
        (icmp[0], icmp[1], &icmp[6..8]),
        (3, 4, &1280u16.to_be_bytes()[..])
    );
    assert_eq!(checksum::checksum(icmp), 0);
    assert_eq!(
        &icmp[8..28],
        &packet4[..20],
        "the original header is quoted"
    );

    let packet6 = ipv6_packet("fd00:4242::2", "fd28:cb8f:4c92::33", 17, &big);
    let frame = ethernet(SELF, GATEWAY, EtherType::Ipv6, &packet6, 0);
    let RxAction::Reply(len) = adapter.on_frame(&frame, now, &mut reply).action else {
        panic!("no ICMPv6 for an IPv6 packet above the MTU");
    };
    let eth = EthernetFrame::new_checked(&reply[..len]).unwrap();
    let ip = Ipv6Packet::new_checked(eth.payload()).unwrap();
    assert_eq!(
        (ip.src_addr(), ip.dst_addr()),
        (v6("fd28:cb8f:4c92::33"), v6("fd00:4242::2"))
    );
    let icmp = Icmpv6Packet::new_checked(ip.payload()).unwrap();
    assert!(icmp.verify_checksum(&ip.src_addr(), &ip.dst_addr()));
    assert_eq!(
        (icmp.msg_type(), &ip.payload()[4..8]),
        (2, &1280u32.to_be_bytes()[..])
    );

    // Without DF, IPv4 is carried (its UDP datagram is fragmented on the way).
    let plain = ipv4_packet("10.127.111.2", "172.22.77.33", 17, &big);
    let frame = ethernet(SELF, GATEWAY, EtherType::Ipv4, &plain, 0);
    assert!(matches!(
        adapter.on_frame(&frame, now, &mut reply).action,
        RxAction::Deliver(_)
    ));

    // No error about an ICMP error, a later fragment, or a packet to a group.
    let mut unreachable = vec![3u8, 1, 0, 0, 0, 0, 0, 0];
    unreachable.extend_from_slice(&big);
    let silent = [
        ethernet(
            SELF,
            GATEWAY,
            EtherType::Ipv4,
            &with_df(
                ipv4_packet("10.127.111.2", "172.22.77.33", 1, &unreachable),
                0,
            ),
            0,
        ),
        ethernet(
            SELF,
            GATEWAY,
            EtherType::Ipv4,
            &with_df(ipv4_packet("10.127.111.2", "172.22.77.33", 17, &big), 185),
            0,
        ),
        ethernet(
            MacAddr([0x33, 0x33, 0, 0, 0, 5]),
            GATEWAY,
            EtherType::Ipv6,
            &ipv6_packet("fe80::aa:1111:1", "ff02::5", 89, &big),
            0,
        ),
    ];
    for frame in silent {
        assert_eq!(
            adapter.on_frame(&frame, now, &mut reply).action,
            RxAction::Consumed
        );
    }
    assert_eq!(adapter.counters().dropped(DropReason::TooBig), 5);
}

// ---- TX ----

fn header(dst: MacAddr, ethertype: EtherType) -> [u8; 14] {
    EthernetRepr {
        src_addr: SELF,
        dst_addr: dst,
        ethertype,
    }
    .to_bytes()
}

#[test]
fn s24_default_gateway_frames() {
    let adapter = Adapter::new(fixture());
    let now = Instant::now();
    let v4 = ipv4_packet("172.22.77.33", "8.8.8.8", 17, b"x");
    assert_eq!(
        adapter.on_packet(&v4, now),
        TxAction::Send(header(GATEWAY, EtherType::Ipv4))
    );
    let v6 = ipv6_packet("fd28:cb8f:4c92::33", "2001:db8::1", 17, b"x");
    assert_eq!(
        adapter.on_packet(&v6, now),
        TxAction::Send(header(GATEWAY, EtherType::Ipv6))
    );
    assert_eq!(adapter.counters().count(Event::Framed), 2);
}

#[test]
fn s24_multicast_destinations_use_their_group_macs_deviation_b7() {
    let adapter = Adapter::new(fixture());
    let now = Instant::now();
    let cases = [
        (
            ipv4_packet("172.22.77.33", "224.0.0.5", 89, b"x"),
            header(MacAddr([1, 0, 0x5e, 0, 0, 5]), EtherType::Ipv4),
        ),
        (
            ipv4_packet("172.22.77.33", "255.255.255.255", 17, b"x"),
            header(MacAddr::BROADCAST, EtherType::Ipv4),
        ),
        (
            ipv6_packet("fe80::42:1817:1", "ff02::5", 89, b"x"),
            header(MacAddr([0x33, 0x33, 0, 0, 0, 5]), EtherType::Ipv6),
        ),
        (
            ipv6_packet("fe80::42:1817:1", "ff02::1:2", 17, b"x"),
            header(MacAddr([0x33, 0x33, 0, 1, 0, 2]), EtherType::Ipv6),
        ),
    ];
    for (packet, want) in cases {
        assert_eq!(adapter.on_packet(&packet, now), TxAction::Send(want));
    }
}

#[test]
fn s25_learning_range_miss_queues_and_solicits_once_per_second_deviation_b8() {
    let adapter = Adapter::new(fixture());
    let t0 = Instant::now();
    let packet = ipv4_packet("172.22.77.33", "10.127.111.7", 17, b"first");
    assert_eq!(adapter.on_packet(&packet, t0), TxAction::Queued);
    let mut out = [0xa5; 2048];
    let request = adapter.poll_transmit(t0, &mut out).unwrap();
    assert_eq!(request.kind, TransmitKind::Solicitation);
    let want = arp(
        MacAddr::BROADCAST,
        SELF,
        ArpOperation::Request,
        "172.22.77.33",
        MacAddr::ZERO,
        "10.127.111.7",
    );
    assert_eq!(
        &out[..request.len],
        &want[..],
        "the spec's 42-byte ARP request"
    );
    assert_eq!(adapter.poll_transmit(t0, &mut out), None);
    // A second packet within the second: queued, no second request.
    assert_eq!(
        adapter.on_packet(&packet, t0 + Duration::from_millis(500)),
        TxAction::Queued
    );
    assert_eq!(
        adapter.poll_transmit(t0 + Duration::from_millis(999), &mut out),
        None
    );
    // After a second: the retransmission.
    assert_eq!(adapter.poll_at(t0), Some(t0 + Duration::from_secs(1)));
    assert_eq!(
        adapter
            .poll_transmit(t0 + Duration::from_secs(1), &mut out)
            .unwrap()
            .kind,
        TransmitKind::Solicitation
    );
    // A packet from a source we do not claim still solicits from our claimed address.
    let adapter = Adapter::new(fixture());
    let routed = ipv4_packet("192.0.2.1", "10.127.111.7", 17, b"routed");
    assert_eq!(adapter.on_packet(&routed, t0), TxAction::Queued);
    let request = adapter.poll_transmit(t0, &mut out).unwrap();
    assert_eq!(&out[..request.len], &want[..]);
}

#[test]
fn s25_unanswered_destination_drops_its_queue_and_counts() {
    let adapter = Adapter::new(fixture());
    let t0 = Instant::now();
    let packet = ipv4_packet("172.22.77.33", "10.127.111.7", 17, b"lost");
    for _ in 0..6 {
        adapter.on_packet(&packet, t0);
    }
    let mut out = [0; 2048];
    let mut requests = 0;
    for tenth in 0..60 {
        while let Some(transmit) =
            adapter.poll_transmit(t0 + Duration::from_millis(100 * tenth), &mut out)
        {
            assert_eq!(transmit.kind, TransmitKind::Solicitation);
            requests += 1;
        }
    }
    assert_eq!(requests, 3);
    let counters = adapter.counters();
    assert_eq!(
        counters.dropped(DropReason::Unresolved),
        4,
        "the queue held the last four"
    );
    assert_eq!(
        counters.dropped(DropReason::QueueOverflow),
        2,
        "the first two were replaced"
    );
    assert_eq!(counters.count(Event::Queued), 6);
    assert!(adapter.neighbours(t0).is_empty());
}

#[test]
fn s26_learning_range_hit_after_s16_flushes_the_queue() {
    let adapter = Adapter::new(fixture());
    let t0 = Instant::now();
    let packet = ipv4_packet("172.22.77.33", "10.127.111.7", 17, b"queued");
    assert_eq!(adapter.on_packet(&packet, t0), TxAction::Queued);
    let mut out = [0; 2048];
    adapter.poll_transmit(t0, &mut out).unwrap();
    // Scenario 16: the reply arrives.
    let mut reply = [0; 128];
    let reply_frame = arp(
        SELF,
        NEIGHBOUR_A,
        ArpOperation::Reply,
        "10.127.111.7",
        SELF,
        "172.22.77.33",
    );
    let outcome = adapter.on_frame(&reply_frame, t0 + Duration::from_millis(3), &mut reply);
    assert_eq!(
        outcome.learned,
        Some(Neighbour {
            ip: ip("10.127.111.7"),
            mac: NEIGHBOUR_A
        })
    );
    let flushed = adapter
        .poll_transmit(t0 + Duration::from_millis(3), &mut out)
        .unwrap();
    assert_eq!(flushed.kind, TransmitKind::Flushed);
    assert_eq!(
        &out[..flushed.len],
        &ethernet(NEIGHBOUR_A, SELF, EtherType::Ipv4, &packet, 0)[..]
    );
    assert_eq!(
        adapter.poll_transmit(t0 + Duration::from_millis(3), &mut out),
        None
    );
    // From now on the packet goes straight out.
    assert_eq!(
        adapter.on_packet(&packet, t0 + Duration::from_millis(4)),
        TxAction::Send(header(NEIGHBOUR_A, EtherType::Ipv4))
    );
    let status = adapter.neighbours(t0 + Duration::from_millis(4));
    assert_eq!(status.len(), 1);
    assert_eq!(
        (status[0].mac, status[0].state),
        (Some(NEIGHBOUR_A), NeighbourState::Reachable)
    );
}

#[test]
fn s27_ipv6_learning_miss_solicits_then_s20_resolves() {
    let adapter = Adapter::new(fixture());
    let t0 = Instant::now();
    let packet = ipv6_packet("fd28:cb8f:4c92::33", "fd10:127:e00f::5", 17, b"v6");
    assert_eq!(adapter.on_packet(&packet, t0), TxAction::Queued);
    let mut out = [0; 2048];
    let ns_out = adapter.poll_transmit(t0, &mut out).unwrap();
    let want = ndisc(
        MacAddr([0x33, 0x33, 0xff, 0, 0, 5]),
        SELF,
        "fd28:cb8f:4c92::33",
        "ff02::1:ff00:5",
        NdiscRepr::NeighbourSolicit {
            target_addr: v6("fd10:127:e00f::5"),
            source_lladdr: Some(SELF),
        },
    );
    assert_eq!(ns_out.len, 86);
    assert_eq!(&out[..86], &want[..]);
    let icmp = &out[54..86];
    assert!(
        Icmpv6Packet::new_checked(icmp)
            .unwrap()
            .verify_checksum(&v6("fd28:cb8f:4c92::33"), &v6("ff02::1:ff00:5"))
    );
    // Scenario 20's NA resolves it.
    let na_frame = na(
        SELF,
        NEIGHBOUR_B,
        "fd10:127:e00f::5",
        "fd28:cb8f:4c92::33",
        0x60,
        Some(NEIGHBOUR_B),
    );
    let mut reply = [0; 128];
    adapter.on_frame(&na_frame, t0, &mut reply);
    let flushed = adapter.poll_transmit(t0, &mut out).unwrap();
    assert_eq!(
        &out[..flushed.len],
        &ethernet(NEIGHBOUR_B, SELF, EtherType::Ipv6, &packet, 0)[..]
    );
    assert_eq!(
        adapter.on_packet(&packet, t0),
        TxAction::Send(header(NEIGHBOUR_B, EtherType::Ipv6))
    );
}

#[test]
fn stale_neighbour_is_reprobed_by_unicast_and_ages_out() {
    let mut config = fixture();
    config.neighbours.reachable_time = Duration::from_secs(30);
    let adapter = Adapter::new(config);
    let t0 = Instant::now();
    let mut reply = [0; 128];
    adapter.on_frame(
        &arp(
            SELF,
            NEIGHBOUR_A,
            ArpOperation::Reply,
            "10.127.111.7",
            SELF,
            "172.22.77.33",
        ),
        t0,
        &mut reply,
    );
    let packet = ipv4_packet("172.22.77.33", "10.127.111.7", 17, b"x");
    let later = t0 + Duration::from_secs(31);
    assert_eq!(
        adapter.on_packet(&packet, later),
        TxAction::Send(header(NEIGHBOUR_A, EtherType::Ipv4))
    );
    let mut out = [0; 2048];
    let probe = adapter.poll_transmit(later, &mut out).unwrap();
    assert_eq!(probe.kind, TransmitKind::Probe);
    let want = arp(
        NEIGHBOUR_A,
        SELF,
        ArpOperation::Request,
        "172.22.77.33",
        MacAddr::ZERO,
        "10.127.111.7",
    );
    assert_eq!(
        &out[..probe.len],
        &want[..],
        "a unicast ARP request to the known MAC"
    );
    // No answer: two more probes a second apart, then the neighbour is forgotten.
    let mut probes = 1;
    for second in 1..5 {
        while let Some(t) = adapter.poll_transmit(later + Duration::from_secs(second), &mut out) {
            assert_eq!(t.kind, TransmitKind::Probe);
            probes += 1;
        }
    }
    assert_eq!(probes, 3);
    assert!(adapter.neighbours(later).is_empty());
    assert_eq!(adapter.counters().count(Event::Forgotten), 1);
}

#[test]
fn tx_malformed_packets_are_dropped() {
    let adapter = Adapter::new(fixture());
    let now = Instant::now();
    for packet in [&[][..], &[0x45; 19][..], &[0x60; 39][..], &[0x00; 60][..]] {
        assert_eq!(
            adapter.on_packet(packet, now),
            TxAction::Dropped(DropReason::MalformedPacket)
        );
    }
}

#[test]
fn s28_concurrent_peers_and_rx_share_the_adapter_safely_deviation_b2() {
    // Several TX threads (one per "peer") and one RX thread hammer one adapter. Every frame must be
    // well formed and every packet accounted for.
    let adapter = Arc::new(Adapter::new(fixture()));
    let t0 = Instant::now();
    let peers = 4;
    let per_peer = 2_000u32;
    std::thread::scope(|scope| {
        for peer in 0..peers {
            let adapter = Arc::clone(&adapter);
            scope.spawn(move || {
                let mut out = [0; 2048];
                for i in 0..per_peer {
                    let now = t0 + Duration::from_millis(u64::from(i));
                    let dst = if i % 2 == 0 {
                        format!("10.127.111.{}", 10 + (i % 50))
                    } else {
                        "8.8.8.8".to_owned()
                    };
                    let packet = ipv4_packet("172.22.77.33", &dst, 17, &[peer as u8; 32]);
                    match adapter.on_packet(&packet, now) {
                        TxAction::Send(header) => {
                            let eth = EthernetFrame::new_checked(&header[..]).unwrap();
                            assert_eq!(eth.src_addr(), SELF);
                            assert_eq!(eth.ethertype(), EtherType::Ipv4);
                            assert!(eth.dst_addr().is_unicast());
                        }
                        TxAction::Queued => {}
                        TxAction::Dropped(reason) => {
                            assert!(matches!(reason, DropReason::QueueFull), "{reason:?}")
                        }
                    }
                    while let Some(transmit) = adapter.poll_transmit(now, &mut out) {
                        let frame = &out[..transmit.len];
                        let eth = EthernetFrame::new_checked(frame).unwrap();
                        assert_eq!(eth.src_addr(), SELF);
                        if transmit.kind == TransmitKind::Flushed {
                            let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
                            assert!(ip.verify_checksum(), "a flushed packet is intact");
                            assert_eq!(ip.payload().len(), 32);
                            assert!(
                                ip.payload().iter().all(|b| *b == ip.payload()[0]),
                                "no mixed-up bytes"
                            );
                        }
                    }
                }
            });
        }
        let adapter = Arc::clone(&adapter);
        scope.spawn(move || {
            let mut reply = [0; 128];
            for i in 0..per_peer {
                let now = t0 + Duration::from_millis(u64::from(i));
                let spa = format!("10.127.111.{}", 10 + (i % 50));
                let mac = MacAddr([2, 0, 0, 0, 1, (i % 50) as u8]);
                let frame = arp(SELF, mac, ArpOperation::Reply, &spa, SELF, "172.22.77.33");
                assert_eq!(
                    adapter.on_frame(&frame, now, &mut reply).action,
                    RxAction::Consumed
                );
                let answered = adapter.on_frame(&ARP_REQUEST_12, now, &mut reply);
                assert!(matches!(answered.action, RxAction::Reply(42)));
                assert_eq!(&reply[..42], &ARP_REPLY_12[..]);
            }
        });
    });
    let counters = adapter.counters();
    let tx_total = counters.count(Event::Framed)
        + counters.count(Event::Queued)
        + counters.dropped(DropReason::QueueFull);
    assert_eq!(
        tx_total,
        u64::from(per_peer) * peers as u64,
        "every packet accounted for"
    );
}

#[test]
fn s29_startup_announcement_is_bounded_deviation_b9() {
    let mut config = fixture();
    config.arp_respond = vec!["172.22.77.32/30".parse().unwrap()];
    config.ndp_respond = vec![
        "fe80::42:1817:1/128".parse().unwrap(),
        "fd28:cb8f:4c92::/64".parse().unwrap(),
    ];
    config.announce_per_range = 8;
    let adapter = Adapter::new(config);
    let addresses: Vec<IpAddr> = adapter.announcements().collect();
    let mut want: Vec<IpAddr> = [
        "172.22.77.32",
        "172.22.77.33",
        "172.22.77.34",
        "172.22.77.35",
        "fe80::42:1817:1",
    ]
    .map(ip)
    .to_vec();
    want.extend((0..8).map(|i| IpAddr::V6(Ipv6Addr::from(u128::from(v6("fd28:cb8f:4c92::")) + i))));
    assert_eq!(
        addresses, want,
        "a /30 whole, a /128, and only the first 8 of a /64"
    );

    let mut out = [0xa5; 128];
    let garp = adapter
        .write_announcement(ip("172.22.77.34"), &mut out)
        .unwrap();
    let want = arp(
        MacAddr::BROADCAST,
        SELF,
        ArpOperation::Reply,
        "172.22.77.34",
        MacAddr::BROADCAST,
        "172.22.77.34",
    );
    assert_eq!(&out[..garp.len], &want[..]);
    assert_eq!(garp.install, Some(ip("172.22.77.34")));

    let na_out = adapter
        .write_announcement(ip("fe80::42:1817:1"), &mut out)
        .unwrap();
    let want = na(
        MacAddr::IPV6_ALL_NODES,
        SELF,
        "fe80::42:1817:1",
        "ff02::1",
        0x20,
        Some(SELF),
    );
    assert_eq!(
        &out[..na_out.len],
        &want[..],
        "flags 0x20, not the original's 0x60"
    );
    assert_eq!(na_out.install, Some(ip("fe80::42:1817:1")));
    assert_eq!(adapter.counters().count(Event::Announced), 2);
}

#[test]
fn s29_ranges_at_the_top_of_the_address_space_do_not_wrap_deviation_b9() {
    let mut config = fixture();
    config.arp_respond = vec![
        "255.255.255.252/30".parse().unwrap(),
        "0.0.0.0/0".parse().unwrap(),
    ];
    config.ndp_respond = vec![
        "::/0".parse().unwrap(),
        "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe/127"
            .parse()
            .unwrap(),
    ];
    let adapter = Adapter::new(config);
    let addresses: Vec<IpAddr> = adapter.announcements().collect();
    assert_eq!(addresses.len(), 4 + 16 + 16 + 2);
    assert_eq!(addresses[3], ip("255.255.255.255"));
    assert_eq!(
        addresses.last(),
        Some(&ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"))
    );
}

#[test]
fn checksum_of_emitted_replies_is_valid() {
    // Independent of the literal above: the IPv6 checksum verifies over the whole reply.
    let mut sum =
        checksum::ipv6_pseudo_header(&v6("fd28:cb8f:4c92::33"), &v6("fd10:127:e00f::1"), 58, 32);
    sum = checksum::accumulate(sum, &NA_17[54..]);
    assert_eq!(checksum::fold(sum), 0);
}
