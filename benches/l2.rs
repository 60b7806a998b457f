//! Per-packet cost of the Ethernet side: classifying frames from VPP and framing packets from WireGuard,
//! at 64- and 1420-byte IP packets, side by side with baselines measured in the same run:
//! - "original-style" classification: compare the destination MAC and strip 14 bytes, nothing else
//!   (what the Go original did for data frames);
//! - a copy of the packet (the data path copies every packet into or out of shared memory anyway).
//!
//! Run: `cargo bench --bench l2`. Prints a table; asserts nothing about time.

use std::hint::black_box;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use wireguard_vpp::l2::wire::{
    EtherType, EthernetRepr, Ipv4Packet, Ipv4Repr, Ipv6Packet, Ipv6Repr,
};
use wireguard_vpp::l2::{Adapter, L2Config, MacAddr, RxAction, TxAction, frames};

const SIZES: [usize; 2] = [64, 1420];
const BURST: usize = 32;
const SELF: MacAddr = MacAddr([0x98, 0xd2, 0x93, 0, 0, 3]);
const GATEWAY: MacAddr = MacAddr([0x42; 6]);
const NEIGHBOUR: MacAddr = MacAddr([2, 0, 0, 0, 0, 0x0a]);

fn config() -> L2Config {
    let mut config = L2Config::new(SELF, GATEWAY);
    config.arp_respond = vec!["172.22.77.33/32".parse().unwrap()];
    config.ndp_respond = vec!["fd28:cb8f:4c92::33/128".parse().unwrap()];
    config.arp_learn = vec!["10.127.111.0/24".parse().unwrap()];
    config.ndp_learn = vec!["fd10:127:e00f::/64".parse().unwrap()];
    config
}

fn ipv4_packet(size: usize, dst: &str) -> Vec<u8> {
    let mut packet = vec![0x5a; size];
    let repr = Ipv4Repr {
        src_addr: "172.22.77.33".parse().unwrap(),
        dst_addr: dst.parse().unwrap(),
        protocol: 17,
        ttl: 64,
        payload_len: size - 20,
    };
    repr.emit(&mut Ipv4Packet::new_unchecked(&mut packet[..]));
    packet
}

fn ipv6_packet(size: usize, src: &str, dst: &str) -> Vec<u8> {
    let mut packet = vec![0x5a; size];
    let repr = Ipv6Repr {
        src_addr: src.parse().unwrap(),
        dst_addr: dst.parse().unwrap(),
        next_header: 17,
        hop_limit: 64,
        payload_len: size - 40,
    };
    repr.emit(&mut Ipv6Packet::new_unchecked(&mut packet[..]));
    packet
}

fn frame(dst: MacAddr, ethertype: EtherType, packet: &[u8]) -> Vec<u8> {
    let mut frame = EthernetRepr {
        src_addr: GATEWAY,
        dst_addr: dst,
        ethertype,
    }
    .to_bytes()
    .to_vec();
    frame.extend_from_slice(packet);
    frame
}

/// Nanoseconds per packet of `burst` (which handles `BURST` packets): the fastest of 7 runs of ~50 ms,
/// since on a shared machine other work only ever adds time.
fn measure(mut burst: impl FnMut()) -> f64 {
    for _ in 0..1_000 {
        burst();
    }
    let mut iterations = 1u64;
    loop {
        let start = Instant::now();
        for _ in 0..iterations {
            burst();
        }
        if start.elapsed() > Duration::from_millis(50) {
            break;
        }
        iterations *= 2;
    }
    (0..7)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..iterations {
                burst();
            }
            start.elapsed().as_nanos() as f64 / (iterations as f64 * BURST as f64)
        })
        .fold(f64::INFINITY, f64::min)
}

/// One row: a case measured at each size.
fn row(name: &str, mut case: impl FnMut(usize) -> f64) {
    let figures: Vec<String> = SIZES
        .iter()
        .map(|size| format!("{:>10.1}", case(*size)))
        .collect();
    println!("{name:<62}{}", figures.join(""));
}

/// Classifies `frame` BURST times through the adapter.
fn rx_case(adapter: &Adapter, frame: &[u8]) -> f64 {
    let mut reply = [0u8; frames::MAX_CONTROL_FRAME_LEN];
    let now = Instant::now();
    measure(|| {
        for _ in 0..BURST {
            let outcome = adapter.on_frame(black_box(frame), now, &mut reply);
            black_box(&outcome);
        }
    })
}

/// Frames `packet` BURST times and writes header + packet into an output buffer, as the data path does.
fn tx_case(adapter: &Adapter, packet: &[u8]) -> f64 {
    let mut out = vec![0u8; 2048];
    let now = Instant::now();
    measure(|| {
        for _ in 0..BURST {
            if let TxAction::Send(header) = adapter.on_packet(black_box(packet), now) {
                out[..14].copy_from_slice(&header);
                out[14..14 + packet.len()].copy_from_slice(packet);
            }
            black_box(&out);
        }
    })
}

fn main() {
    let adapter = Adapter::new(config());
    let now = Instant::now();
    let mut reply = [0u8; frames::MAX_CONTROL_FRAME_LEN];
    // A learned neighbour for the learning-range rows.
    let learn = {
        let mut frame = vec![0u8; frames::ARP_FRAME_LEN];
        let repr = wireguard_vpp::l2::wire::ArpRepr {
            operation: wireguard_vpp::l2::wire::ArpOperation::Reply,
            source_hardware_addr: NEIGHBOUR,
            source_protocol_addr: Ipv4Addr::new(10, 127, 111, 7),
            target_hardware_addr: SELF,
            target_protocol_addr: Ipv4Addr::new(172, 22, 77, 33),
        };
        frames::arp_frame(&mut frame, SELF, NEIGHBOUR, &repr).unwrap();
        frame
    };
    assert_eq!(
        adapter.on_frame(&learn, now, &mut reply).action,
        RxAction::Consumed
    );

    println!("wireguard-vpp l2 benchmark: ns per packet (fastest of 7 runs, bursts of {BURST})");
    println!("{:<62}{:>10}{:>10}", "case", "64 B", "1420 B");

    println!("-- baselines");
    row("copy the packet (memcpy into a 2048-byte buffer)", |size| {
        let packet = ipv4_packet(size, "8.8.8.8");
        let mut out = vec![0u8; 2048];
        measure(|| {
            for _ in 0..BURST {
                out[..size].copy_from_slice(black_box(&packet));
                black_box(&out);
            }
        })
    });
    row(
        "original-style RX: dst MAC compare + strip 14 bytes",
        |size| {
            let frame = frame(SELF, EtherType::Ipv4, &ipv4_packet(size, "172.22.77.33"));
            measure(|| {
                for _ in 0..BURST {
                    let frame = black_box(&frame[..]);
                    let range = if frame.len() >= 14 && frame[..6] == SELF.0 {
                        Some(14..frame.len())
                    } else {
                        None
                    };
                    black_box(range);
                }
            })
        },
    );
    row("original-style TX: constant header + copy", |size| {
        let packet = ipv4_packet(size, "8.8.8.8");
        let header = EthernetRepr {
            src_addr: SELF,
            dst_addr: GATEWAY,
            ethertype: EtherType::Ipv4,
        }
        .to_bytes();
        let mut out = vec![0u8; 2048];
        measure(|| {
            for _ in 0..BURST {
                out[..14].copy_from_slice(black_box(&header));
                out[14..14 + size].copy_from_slice(black_box(&packet));
                black_box(&out);
            }
        })
    });

    println!("-- RX classification (Adapter::on_frame)");
    row("IPv4 data to our MAC (validated, trimmed)", |size| {
        rx_case(
            &adapter,
            &frame(SELF, EtherType::Ipv4, &ipv4_packet(size, "172.22.77.33")),
        )
    });
    row("IPv6 data to our MAC", |size| {
        rx_case(
            &adapter,
            &frame(
                SELF,
                EtherType::Ipv6,
                &ipv6_packet(size, "fd10:127:e00f::1", "fd28:cb8f:4c92::33"),
            ),
        )
    });
    row("IPv6 multicast (ff02::5) delivered", |size| {
        let mut packet = ipv6_packet(size, "fe80::1", "ff02::5");
        packet[6] = 89;
        rx_case(
            &adapter,
            &frame(MacAddr([0x33, 0x33, 0, 0, 0, 5]), EtherType::Ipv6, &packet),
        )
    });
    row("unicast to another MAC (dropped)", |size| {
        rx_case(
            &adapter,
            &frame(
                NEIGHBOUR,
                EtherType::Ipv4,
                &ipv4_packet(size, "10.127.111.9"),
            ),
        )
    });
    row("ARP request for a claimed address (reply written)", |_| {
        let mut request = vec![0u8; frames::ARP_FRAME_LEN];
        frames::arp_request(
            &mut request,
            MacAddr::BROADCAST,
            GATEWAY,
            Ipv4Addr::new(10, 127, 111, 1),
            Ipv4Addr::new(172, 22, 77, 33),
        )
        .unwrap();
        rx_case(&adapter, &request)
    });
    row("NS for a claimed address (NA written, checksums)", |_| {
        let mut ns = vec![0u8; frames::NDISC_FRAME_LEN];
        frames::neighbour_solicit(
            &mut ns,
            GATEWAY,
            "fd10:127:e00f::1".parse().unwrap(),
            "fd28:cb8f:4c92::33".parse().unwrap(),
            None,
        )
        .unwrap();
        rx_case(&adapter, &ns)
    });

    println!("-- TX framing (Adapter::on_packet + header and packet copied out)");
    row("IPv4 to the gateway", |size| {
        tx_case(&adapter, &ipv4_packet(size, "8.8.8.8"))
    });
    row("IPv6 to the gateway", |size| {
        tx_case(
            &adapter,
            &ipv6_packet(size, "fd28:cb8f:4c92::33", "2001:db8::1"),
        )
    });
    row(
        "IPv4 to a learned neighbour (cache lock + lookup)",
        |size| tx_case(&adapter, &ipv4_packet(size, "10.127.111.7")),
    );
    row("IPv4 multicast (224.0.0.5)", |size| {
        tx_case(&adapter, &ipv4_packet(size, "224.0.0.5"))
    });

    println!(
        "-- shared between threads (B2: one lock, taken only for ARP/ND and learning-range packets)"
    );
    for (name, dst) in [
        (
            "IPv4 to a learned neighbour, other thread learning",
            "10.127.111.7",
        ),
        ("IPv4 to the gateway, other thread learning", "8.8.8.8"),
    ] {
        row(name, |size| {
            let stop = AtomicBool::new(false);
            std::thread::scope(|scope| {
                scope.spawn(|| {
                    let mut reply = [0u8; frames::MAX_CONTROL_FRAME_LEN];
                    while !stop.load(Ordering::Relaxed) {
                        black_box(adapter.on_frame(&learn, Instant::now(), &mut reply));
                    }
                });
                let figure = tx_case(&adapter, &ipv4_packet(size, dst));
                stop.store(true, Ordering::Relaxed);
                figure
            })
        });
    }
}
