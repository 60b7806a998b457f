//! The Ethernet side (`l2::Adapter`) driven by a script of hostile frames from VPP, IP packets from
//! WireGuard, passing time and transmit polls, so that the neighbour cache and its queues live a whole
//! life. Nothing panics or loops; every frame the adapter writes is ours (our source MAC) and fits the
//! buffer; a delivered range is the whole IP packet and nothing more; a header matches the packet's
//! family; and once every resolution has given up, every queued packet is accounted for.
//!
//! Input: one settings byte (bit 0 a tiny neighbour cache, 1 no multicast delivery, 2 no neighbour
//! installs, 3 a 256-byte tunnel MTU), then records `[op][u16 little-endian n][n bytes]`. `op % 4`: 0 a
//! frame from VPP, 1 a packet from WireGuard, 2 time goes by (`n` × 10 ms, no bytes follow), 3 a poll.
#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use wireguard_vpp::l2::frames::MAX_CONTROL_FRAME_LEN;
use wireguard_vpp::l2::{
    Adapter, DropReason, Event, L2Config, MacAddr, NeighbourInstall, RxAction, TxAction,
};

const SELF: MacAddr = MacAddr([0x98, 0xd2, 0x93, 0, 0, 3]);
const GATEWAY: MacAddr = MacAddr([0x42; 6]);
/// Far more frames than one poll can owe (queued packets plus solicitations): more is a loop.
const MAX_POLLED: usize = 10_000;

/// The spec's common fixture (`if/home.json`, `gw/4242.json`), varied by the settings byte.
fn config(settings: u8) -> L2Config {
    let mut config = L2Config::new(SELF, GATEWAY);
    config.arp_respond = vec![net("172.22.77.33/32"), net("172.22.78.0/30")];
    config.ndp_respond = vec![net("fd28:cb8f:4c92::33/128"), net("fe80::42:1817:1/128")];
    config.arp_learn = vec![net("10.127.111.0/24")];
    config.ndp_learn = vec![net("fd10:127:e00f::/64")];
    let install = settings & 0b100 == 0;
    config.install = NeighbourInstall {
        ipv4: install,
        ipv6: install,
        ipv6_link_local: install,
    };
    config.deliver_multicast = settings & 0b10 == 0;
    if settings & 0b1 != 0 {
        // Small enough that eviction and queue overflow are a few records away.
        config.neighbours.capacity = 4;
        config.neighbours.queued_packets = 6;
        config.neighbours.queue_per_destination = 2;
        config.neighbours.reachable_time = Duration::from_secs(5);
    }
    config.announce_per_range = 4;
    config
}

fn net<T: std::str::FromStr<Err: std::fmt::Debug>>(text: &str) -> T {
    text.parse().expect("a literal prefix")
}

/// Drains `poll_transmit`, checking each frame; returns how many queued packets left.
fn drain(adapter: &Adapter, now: Instant, out: &mut [u8]) -> u64 {
    let mut flushed = 0;
    for _ in 0..MAX_POLLED {
        let Some(transmit) = adapter.poll_transmit(now, out) else {
            return flushed;
        };
        assert!(transmit.len >= 14 && transmit.len <= out.len());
        assert_eq!(&out[6..12], &SELF.octets(), "a polled frame is ours");
        if transmit.kind == wireguard_vpp::l2::TransmitKind::Flushed {
            flushed += 1;
        }
    }
    panic!("poll_transmit still has frames after {MAX_POLLED}");
}

/// The length an IP header claims for its packet.
fn ip_len(packet: &[u8]) -> usize {
    match packet[0] >> 4 {
        4 => usize::from(u16::from_be_bytes([packet[2], packet[3]])),
        6 => 40 + usize::from(u16::from_be_bytes([packet[4], packet[5]])),
        version => panic!("delivered a packet of IP version {version}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&settings, mut script)) = data.split_first() else {
        return;
    };
    let adapter = Adapter::new(config(settings));
    if settings & 0b1000 != 0 {
        adapter.set_mtu(256);
    }
    let mut now = Instant::now();
    let mut reply = [0u8; MAX_CONTROL_FRAME_LEN];
    let mut out = vec![0u8; 2048];
    let mut flushed = 0;

    for addr in adapter.announcements().collect::<Vec<_>>() {
        if let Some(announcement) = adapter.write_announcement(addr, &mut out) {
            assert_eq!(&out[6..12], &SELF.octets());
            assert!(announcement.len <= out.len());
        }
    }

    while let [op, lo, hi, rest @ ..] = script {
        let n = usize::from(u16::from_le_bytes([*lo, *hi]));
        if op % 4 == 2 {
            now += Duration::from_millis(10 * n as u64);
            script = rest;
            continue;
        }
        let (bytes, rest) = rest.split_at(n.min(rest.len()));
        script = rest;
        match op % 4 {
            0 => {
                let outcome = adapter.on_frame(bytes, now, &mut reply);
                match outcome.action {
                    RxAction::Deliver(range) => {
                        assert_eq!(range.start, 14, "an untagged Ethernet payload");
                        assert!(range.end <= bytes.len());
                        assert_eq!(range.len(), ip_len(&bytes[range.clone()]));
                    }
                    RxAction::Reply(len) => {
                        assert!(len >= 14 && len <= reply.len());
                        assert_eq!(&reply[6..12], &SELF.octets(), "a reply is ours");
                    }
                    RxAction::Consumed | RxAction::Dropped(_) => {}
                }
                if let Some(learned) = outcome.learned {
                    assert!(
                        adapter.config().learns(learned.ip),
                        "learned outside the ranges"
                    );
                }
            }
            1 => {
                if let TxAction::Send(header) = adapter.on_packet(bytes, now) {
                    assert_eq!(&header[6..12], &SELF.octets());
                    let ethertype = match bytes[0] >> 4 {
                        4 => [0x08, 0x00],
                        _ => [0x86, 0xdd],
                    };
                    assert_eq!(header[12..14], ethertype);
                }
            }
            _ => flushed += drain(&adapter, now, &mut out),
        }
        let _ = (adapter.poll_at(now), adapter.neighbours(now));
    }

    // Long enough for every resolution to give up and every entry to age out.
    for _ in 0..4 {
        now += Duration::from_secs(3600);
        flushed += drain(&adapter, now, &mut out);
    }
    let counters = adapter.counters();
    assert_eq!(counters.count(Event::Flushed), flushed);
    assert_eq!(
        counters.count(Event::Queued),
        flushed
            + counters.dropped(DropReason::Unresolved)
            + counters.dropped(DropReason::QueueOverflow),
        "a queued packet was neither sent nor counted as dropped"
    );
    assert_eq!(adapter.poll_at(now), None, "nothing left to do");
});
