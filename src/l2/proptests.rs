//! Property tests: hostile bytes never panic any parser or the adapter, and valid packets survive
//! emit(parse(x)) unchanged.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::scenarios::{arp, fixture, ipv4_packet, ipv6_packet};
use super::wire::{
    ArpOperation, ArpPacket, ArpRepr, EtherType, EthernetFrame, EthernetRepr, Icmpv6Packet,
    Ipv4Packet, Ipv4Repr, Ipv6Packet, Ipv6Repr, MacAddr, NdiscRepr, NeighbourFlags,
};
use super::{Adapter, DropReason, Event, RxAction, TxAction};

fn mac() -> impl Strategy<Value = MacAddr> {
    any::<[u8; 6]>().prop_map(MacAddr)
}

fn ipv4() -> impl Strategy<Value = Ipv4Addr> {
    any::<[u8; 4]>().prop_map(Ipv4Addr::from)
}

fn ipv6() -> impl Strategy<Value = Ipv6Addr> {
    any::<[u8; 16]>().prop_map(Ipv6Addr::from)
}

/// Valid frames of every kind the adapter handles, to be mutated.
fn seed_frames() -> Vec<Vec<u8>> {
    let self_mac = MacAddr([0x98, 0xd2, 0x93, 0, 0, 3]);
    let gateway = MacAddr([0x42; 6]);
    let mut ns = vec![0; 86];
    super::frames::neighbour_solicit(
        &mut ns,
        gateway,
        "fd10:127:e00f::1".parse().unwrap(),
        "fd28:cb8f:4c92::33".parse().unwrap(),
        None,
    )
    .unwrap();
    let mut na = vec![0; 86];
    super::frames::unsolicited_advert(
        &mut na,
        MacAddr([2, 0, 0, 0, 0, 5]),
        "fd10:127:e00f::5".parse().unwrap(),
    )
    .unwrap();
    let ether = |dst, ethertype, packet: &[u8]| {
        let mut frame = EthernetRepr {
            src_addr: gateway,
            dst_addr: dst,
            ethertype,
        }
        .to_bytes()
        .to_vec();
        frame.extend_from_slice(packet);
        frame
    };
    vec![
        arp(
            MacAddr::BROADCAST,
            gateway,
            ArpOperation::Request,
            "10.127.111.1",
            MacAddr::ZERO,
            "172.22.77.33",
        ),
        arp(
            self_mac,
            gateway,
            ArpOperation::Reply,
            "10.127.111.1",
            self_mac,
            "172.22.77.33",
        ),
        ns,
        na,
        ether(
            self_mac,
            EtherType::Ipv4,
            &ipv4_packet("10.127.111.1", "172.22.77.33", 17, b"data"),
        ),
        ether(
            self_mac,
            EtherType::Ipv6,
            &ipv6_packet("fd10:127:e00f::1", "fd28:cb8f:4c92::33", 17, b"data"),
        ),
        ether(
            MacAddr([0x33, 0x33, 0, 0, 0, 5]),
            EtherType::Ipv6,
            &ipv6_packet(
                "fe80::1",
                "ff02::5",
                0,
                &[58, 0, 5, 2, 0, 0, 1, 0, 143, 0, 0, 0],
            ),
        ),
    ]
}

/// A valid frame with some bytes overwritten and possibly cut short.
fn mutated_frame() -> impl Strategy<Value = Vec<u8>> {
    let seeds = seed_frames();
    (
        0..seeds.len(),
        proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
        any::<prop::sample::Index>(),
    )
        .prop_map(move |(seed, edits, cut)| {
            let mut frame = seeds[seed].clone();
            for (at, value) in edits {
                let at = at.index(frame.len());
                frame[at] = value;
            }
            let len = frame.len();
            frame.truncate(len - cut.index(len / 4 + 1));
            frame
        })
}

fn check_rx(frame: &[u8]) -> Result<(), TestCaseError> {
    let adapter = Adapter::new(fixture());
    let mut reply = [0; 128];
    let outcome = adapter.on_frame(frame, Instant::now(), &mut reply);
    match outcome.action {
        RxAction::Deliver(range) => {
            prop_assert!(range.start == 14 && range.end <= frame.len() && range.end > range.start);
            let version = frame[14] >> 4;
            prop_assert!(version == 4 || version == 6);
        }
        RxAction::Reply(len) => prop_assert!(len == 42 || len == 86),
        RxAction::Consumed | RxAction::Dropped(_) => {}
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

    #[test]
    fn parsers_never_panic_on_random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..160), src in ipv6(), dst in ipv6()) {
        if let Ok(frame) = EthernetFrame::new_checked(&bytes[..]) {
            let _ = (frame.dst_addr(), frame.src_addr(), frame.ethertype(), frame.payload());
            let _ = EthernetRepr::parse(&frame);
        }
        if let Ok(packet) = ArpPacket::new_checked(&bytes[..]) {
            let _ = (packet.hardware_type(), packet.protocol_type(), packet.operation());
            let _ = (packet.source_hardware_addr(), packet.source_protocol_addr());
            let _ = (packet.target_hardware_addr(), packet.target_protocol_addr());
            let _ = ArpRepr::parse(&packet);
        }
        if let Ok(packet) = Ipv4Packet::new_checked(&bytes[..]) {
            let _ = (packet.version(), packet.ttl(), packet.protocol(), packet.src_addr(), packet.dst_addr());
            let _ = (packet.verify_checksum(), packet.payload(), packet.checksum());
            let _ = Ipv4Repr::parse(&packet);
        }
        if let Ok(packet) = Ipv6Packet::new_checked(&bytes[..]) {
            let _ = (packet.version(), packet.hop_limit(), packet.src_addr(), packet.dst_addr(), packet.payload());
            let _ = packet.upper_layer();
            let _ = Ipv6Repr::parse(&packet);
        }
        if let Ok(packet) = Icmpv6Packet::new_checked(&bytes[..]) {
            let _ = (packet.msg_type(), packet.msg_code(), packet.checksum(), packet.verify_checksum(&src, &dst));
            let _ = NdiscRepr::parse(&packet, &src, &dst);
        }
    }

    #[test]
    fn adapter_never_panics_on_random_frames(bytes in proptest::collection::vec(any::<u8>(), 0..160)) {
        check_rx(&bytes)?;
    }

    #[test]
    fn adapter_never_panics_on_mutated_valid_frames(frame in mutated_frame()) {
        check_rx(&frame)?;
    }

    #[test]
    fn adapter_never_panics_on_random_packets(mut bytes in proptest::collection::vec(any::<u8>(), 0..80), version in prop::sample::select(vec![0x40u8, 0x60, 0x00])) {
        if let Some(first) = bytes.first_mut() {
            *first = version | (*first & 0x0f);
        }
        let adapter = Adapter::new(fixture());
        let now = Instant::now();
        let action = adapter.on_packet(&bytes, now);
        if let TxAction::Send(header) = action {
            prop_assert_eq!(EthernetFrame::new_checked(&header[..]).unwrap().src_addr(), fixture().self_mac);
        }
        let mut out = [0; 2048];
        while adapter.poll_transmit(now + Duration::from_secs(1), &mut out).is_some() {}
    }

    #[test]
    fn ethernet_round_trip(src in mac(), dst in mac(), ethertype in any::<u16>()) {
        let repr = EthernetRepr { src_addr: src, dst_addr: dst, ethertype: EtherType::from(ethertype) };
        let bytes = repr.to_bytes();
        let parsed = EthernetRepr::parse(&EthernetFrame::new_checked(&bytes[..]).unwrap()).unwrap();
        prop_assert_eq!(parsed, repr);
        prop_assert_eq!(parsed.to_bytes(), bytes);
    }

    #[test]
    fn arp_round_trip(op in any::<u16>(), sha in mac(), spa in ipv4(), tha in mac(), tpa in ipv4()) {
        let repr = ArpRepr {
            operation: ArpOperation::from(op),
            source_hardware_addr: sha,
            source_protocol_addr: spa,
            target_hardware_addr: tha,
            target_protocol_addr: tpa,
        };
        let mut bytes = [0xa5; 28];
        repr.emit(&mut ArpPacket::new_unchecked(&mut bytes[..]));
        let parsed = ArpRepr::parse(&ArpPacket::new_checked(&bytes[..]).unwrap()).unwrap();
        prop_assert_eq!(parsed, repr);
        let mut again = [0x5a; 28];
        parsed.emit(&mut ArpPacket::new_unchecked(&mut again[..]));
        prop_assert_eq!(again, bytes);
    }

    #[test]
    fn ipv4_round_trip(src in ipv4(), dst in ipv4(), protocol in any::<u8>(), ttl in any::<u8>(), payload in proptest::collection::vec(any::<u8>(), 0..40)) {
        let repr = Ipv4Repr { src_addr: src, dst_addr: dst, protocol, ttl, payload_len: payload.len() };
        let mut bytes = vec![0xa5; 20 + payload.len()];
        repr.emit(&mut Ipv4Packet::new_unchecked(&mut bytes[..]));
        bytes[20..].copy_from_slice(&payload);
        let parsed = Ipv4Repr::parse(&Ipv4Packet::new_checked(&bytes[..]).unwrap()).unwrap();
        prop_assert_eq!(parsed, repr);
        let mut again = bytes.clone();
        again[..20].fill(0x5a);
        parsed.emit(&mut Ipv4Packet::new_unchecked(&mut again[..]));
        prop_assert_eq!(again, bytes);
    }

    #[test]
    fn ipv6_round_trip(src in ipv6(), dst in ipv6(), next in any::<u8>(), hop in any::<u8>(), payload in proptest::collection::vec(any::<u8>(), 0..40)) {
        let repr = Ipv6Repr { src_addr: src, dst_addr: dst, next_header: next, hop_limit: hop, payload_len: payload.len() };
        let mut bytes = vec![0xa5; 40 + payload.len()];
        repr.emit(&mut Ipv6Packet::new_unchecked(&mut bytes[..]));
        bytes[40..].copy_from_slice(&payload);
        let parsed = Ipv6Repr::parse(&Ipv6Packet::new_checked(&bytes[..]).unwrap()).unwrap();
        prop_assert_eq!(parsed, repr);
        let mut again = bytes.clone();
        again[..40].fill(0x5a);
        parsed.emit(&mut Ipv6Packet::new_unchecked(&mut again[..]));
        prop_assert_eq!(again, bytes);
    }

    #[test]
    fn ndisc_round_trip(solicit in any::<bool>(), flags in any::<u8>(), target in ipv6(), lladdr in proptest::option::of(mac()), src in ipv6(), dst in ipv6()) {
        let repr = if solicit {
            NdiscRepr::NeighbourSolicit { target_addr: target, source_lladdr: lladdr }
        } else {
            NdiscRepr::NeighbourAdvert { flags: NeighbourFlags(flags & 0xe0), target_addr: target, target_lladdr: lladdr }
        };
        let mut bytes = vec![0xa5; repr.buffer_len()];
        repr.emit(&mut Icmpv6Packet::new_unchecked(&mut bytes[..]), &src, &dst);
        let parsed = NdiscRepr::parse(&Icmpv6Packet::new_checked(&bytes[..]).unwrap(), &src, &dst).unwrap();
        prop_assert_eq!(parsed, repr);
        let mut again = vec![0x5a; bytes.len()];
        parsed.emit(&mut Icmpv6Packet::new_unchecked(&mut again[..]), &src, &dst);
        prop_assert_eq!(again, bytes);
    }
}

/// One step of a random life of an adapter.
#[derive(Debug, Clone)]
enum Step {
    /// A packet from WireGuard to destination number `dst` (learning ranges, or the gateway).
    Packet { dst: usize, len: usize },
    /// An ARP reply or NA from the VPP side answering for destination `dst` from MAC number `mac`.
    Answer { dst: usize, mac: u8 },
    /// Time goes by.
    Wait { millis: u64 },
}

const DESTINATIONS: [&str; 9] = [
    "10.127.111.1",
    "10.127.111.2",
    "10.127.111.3",
    "10.127.111.4",
    "fd10:127:e00f::1",
    "fd10:127:e00f::2",
    "fd10:127:e00f::3",
    "8.8.8.8",
    "2001:db8::1",
];

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0..DESTINATIONS.len(), 40usize..1500).prop_map(|(dst, len)| Step::Packet { dst, len }),
        1 => (0..7usize, 1u8..4).prop_map(|(dst, mac)| Step::Answer { dst, mac }),
        2 => (0u64..2500).prop_map(|millis| Step::Wait { millis }),
    ]
}

fn packet_to(dst: &str, len: usize) -> Vec<u8> {
    if dst.contains(':') {
        ipv6_packet("fd28:cb8f:4c92::33", dst, 17, &vec![0x5a; len - 40])
    } else {
        ipv4_packet("172.22.77.33", dst, 17, &vec![0x5a; len - 20])
    }
}

fn answer_from(dst: &str, mac: MacAddr) -> Vec<u8> {
    let self_mac = fixture().self_mac;
    if dst.contains(':') {
        let mut frame = vec![0; super::frames::NDISC_FRAME_LEN];
        let repr = NdiscRepr::NeighbourAdvert {
            flags: NeighbourFlags::SOLICITED | NeighbourFlags::OVERRIDE,
            target_addr: dst.parse().unwrap(),
            target_lladdr: Some(mac),
        };
        let len = super::frames::ndisc_frame(
            &mut frame,
            self_mac,
            mac,
            dst.parse().unwrap(),
            "fd28:cb8f:4c92::33".parse().unwrap(),
            &repr,
        )
        .unwrap();
        frame.truncate(len);
        frame
    } else {
        arp(
            self_mac,
            mac,
            ArpOperation::Reply,
            dst,
            self_mac,
            "172.22.77.33",
        )
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Whatever happens, every queued packet is accounted for (flushed, replaced or dropped as
    /// unresolved), every flushed frame is well formed, and once time has passed every buffer is free.
    #[test]
    fn queued_packets_are_never_lost_or_leaked(steps in proptest::collection::vec(step(), 1..80)) {
        let mut config = fixture();
        config.neighbours.reachable_time = Duration::from_secs(5);
        config.neighbours.queued_packets = 6;
        config.neighbours.capacity = 4;
        let adapter = Adapter::new(config);
        let mut now = Instant::now();
        let mut out = vec![0u8; 2048];
        let mut reply = [0u8; 128];
        let mut flushed = 0u64;
        let mut drain = |adapter: &Adapter, now: Instant, flushed: &mut u64| -> Result<(), TestCaseError> {
            while let Some(transmit) = adapter.poll_transmit(now, &mut out) {
                let frame = EthernetFrame::new_checked(&out[..transmit.len]).unwrap();
                prop_assert_eq!(frame.src_addr(), fixture().self_mac);
                if transmit.kind == super::TransmitKind::Flushed {
                    *flushed += 1;
                    prop_assert!(frame.payload().iter().skip(40).all(|b| *b == 0x5a), "payload intact");
                }
            }
            Ok(())
        };
        for step in steps {
            match step {
                Step::Packet { dst, len } => {
                    let action = adapter.on_packet(&packet_to(DESTINATIONS[dst], len), now);
                    prop_assert!(!matches!(action, TxAction::Dropped(reason) if reason != DropReason::QueueFull));
                }
                Step::Answer { dst, mac } => {
                    let frame = answer_from(DESTINATIONS[dst], MacAddr([2, 0, 0, 0, 0, mac]));
                    prop_assert_eq!(adapter.on_frame(&frame, now, &mut reply).action, RxAction::Consumed);
                }
                Step::Wait { millis } => now += Duration::from_millis(millis),
            }
            drain(&adapter, now, &mut flushed)?;
        }
        // Long enough for every resolution to give up and every entry to age out.
        for _ in 0..4 {
            now += Duration::from_secs(3600);
            drain(&adapter, now, &mut flushed)?;
        }
        let counters = adapter.counters();
        prop_assert_eq!(counters.count(Event::Flushed), flushed);
        prop_assert_eq!(
            counters.count(Event::Queued),
            flushed + counters.dropped(DropReason::Unresolved) + counters.dropped(DropReason::QueueOverflow)
        );
        prop_assert!(adapter.lock_cache().is_idle(), "a packet buffer leaked or an entry never expired");
    }
}
