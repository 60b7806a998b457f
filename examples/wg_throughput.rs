//! Throughput of 1420-byte packets through the WireGuard device, next to the raw gotatun `Tunn`
//! rate measured in the same run.
//!
//! - baseline: one thread encrypts with one `Tunn` and decrypts with its peer (the engine's
//!   entry points `handle_outgoing_packet` / `handle_incoming_packet`), no I/O;
//! - device: two `WgDevice`s joined over loopback UDP (real sockets, `recvmmsg`/`sendmmsg`); the
//!   packets enter device A through its channel IP side and are counted out of device B, so the
//!   figure includes both devices' tasks, the UDP path and the channel copies.
//!
//! Run: `cargo run --release --example wg_throughput [seconds] [rounds]` (default 2 s, 3 rounds;
//! each round measures the baseline, then the device).
//! Gbit/s counts inner (IP packet) bytes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use gotatun::noise::index_table::IndexTable;
use gotatun::noise::rate_limiter::RateLimiter;
use gotatun::noise::{Tunn, TunnResult};
use gotatun::packet::{Packet, WgKind};
use gotatun::x25519::{PublicKey, StaticSecret};
use wireguard_vpp::wg::channel::ip_channel;
use wireguard_vpp::wg::uapi::Command;
use wireguard_vpp::wg::{DeviceSettings, Key, WgDevice};

const PACKET_LEN: usize = 1420;

fn main() {
    let seconds: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(2);
    let rounds: usize = std::env::args()
        .nth(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let duration = Duration::from_secs(seconds);
    let packet = ipv4_udp_packet(PACKET_LEN);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");

    println!(
        "wg_throughput: {PACKET_LEN}-byte IPv4 packets, {rounds} rounds of {seconds} s, \
         baseline and device alternating (the machine is shared: compare within a round)"
    );
    println!("{:<58} {:>12} {:>10}", "path", "packets/s", "Gbit/s");
    let mut raws = Vec::new();
    let mut devices = Vec::new();
    for round in 1..=rounds {
        let raw = raw_tunn(&packet, duration);
        let device = runtime.block_on(through_devices(&packet, duration));
        println!("round {round}");
        report(
            "  raw gotatun Tunn encrypt+decrypt, 1 thread, no I/O",
            raw,
            None,
        );
        report(
            "  WgDevice A -> UDP loopback -> WgDevice B",
            device.received_rate,
            Some(&device),
        );
        raws.push(raw);
        devices.push(device.received_rate);
    }
    let (raw, device) = (median(&mut raws), median(&mut devices));
    println!("median");
    report(
        "  raw gotatun Tunn encrypt+decrypt, 1 thread, no I/O",
        raw,
        None,
    );
    report("  WgDevice A -> UDP loopback -> WgDevice B", device, None);
    println!("device / raw: {:.2}", device / raw);
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

struct DeviceRun {
    received_rate: f64,
    sent: u64,
    received: u64,
}

fn report(name: &str, rate: f64, device: Option<&DeviceRun>) {
    let gbits = rate * (PACKET_LEN * 8) as f64 / 1e9;
    let extra = device.map_or(String::new(), |d| {
        let loss = 100.0 * d.sent.saturating_sub(d.received) as f64 / d.sent.max(1) as f64;
        format!(
            "  (sent {}, received {}, lost {loss:.1}% in UDP buffers)",
            d.sent, d.received
        )
    });
    println!("{name:<58} {rate:>12.0} {gbits:>10.2}{extra}");
}

/// Encrypt with A, decrypt with B, on one thread, for `duration`.
fn raw_tunn(template: &[u8], duration: Duration) -> f64 {
    let (key_a, key_b) = (StaticSecret::from([1u8; 32]), StaticSecret::from([2u8; 32]));
    let (pub_a, pub_b) = (PublicKey::from(&key_a), PublicKey::from(&key_b));
    let mut a = Tunn::new(
        key_a,
        pub_b,
        None,
        None,
        IndexTable::from_os_rng(),
        Arc::new(RateLimiter::new(&pub_a, 100)),
    );
    let mut b = Tunn::new(
        key_b,
        pub_a,
        None,
        None,
        IndexTable::from_os_rng(),
        Arc::new(RateLimiter::new(&pub_b, 100)),
    );

    let init = a.format_handshake_initiation(false).expect("initiation");
    let TunnResult::WriteToNetwork(response) = b.handle_incoming_packet(WgKind::from(init)) else {
        panic!("B did not answer the handshake");
    };
    let TunnResult::WriteToNetwork(keepalive) = a.handle_incoming_packet(response) else {
        panic!("A did not confirm the handshake");
    };
    let _ = b.handle_incoming_packet(keepalive);

    let mut count = 0u64;
    let start = Instant::now();
    while start.elapsed() < duration {
        for _ in 0..1024 {
            let Some(encrypted) = a.handle_outgoing_packet(Packet::copy_from(template), None)
            else {
                panic!("no session");
            };
            match b.handle_incoming_packet(encrypted) {
                TunnResult::WriteToTunnel(decrypted) => assert_eq!(decrypted.len(), PACKET_LEN),
                _ => panic!("decryption failed"),
            }
        }
        count += 1024;
    }
    count as f64 / start.elapsed().as_secs_f64()
}

async fn through_devices(template: &[u8], duration: Duration) -> DeviceRun {
    let (tx_a, rx_a, ends_a) = ip_channel(4096, 1500);
    let (tx_b, rx_b, mut ends_b) = ip_channel(4096, 1500);
    let (key_a, key_b) = (Key([3; 32]), Key([4; 32]));
    let settings = |name: &str, key| DeviceSettings {
        name: name.into(),
        private_key: Some(key),
        ..DeviceSettings::default()
    };
    let a = WgDevice::new(settings("bencha", key_a), tx_a, rx_a)
        .await
        .expect("device a");
    let b = WgDevice::new(settings("benchb", key_b), tx_b, rx_b)
        .await
        .expect("device b");
    let peer = |key: Key, port: u16, net: &str| {
        vec![
            Command::Peer(key.public_key()),
            Command::Endpoint(std::net::SocketAddr::from(([127, 0, 0, 1], port))),
            Command::AllowedIp(net.parse().expect("literal")),
        ]
    };
    a.set(&peer(key_b, b.listen_port(), "10.0.0.2/32"))
        .await
        .expect("a's peer");
    b.set(&peer(key_a, a.listen_port(), "10.0.0.1/32"))
        .await
        .expect("b's peer");

    // Handshake before measuring.
    ends_a
        .to_device
        .send(template.to_vec())
        .await
        .expect("send");
    tokio::time::timeout(Duration::from_secs(5), ends_b.from_device.recv())
        .await
        .expect("handshake within 5 s");

    let stop = Arc::new(AtomicBool::new(false));
    let sender = {
        let stop = Arc::clone(&stop);
        let to_device = ends_a.to_device.clone();
        let template = template.to_vec();
        tokio::spawn(async move {
            let mut sent = 0u64;
            while !stop.load(Ordering::Relaxed) {
                if to_device.send(template.clone()).await.is_err() {
                    break;
                }
                sent += 1;
            }
            sent
        })
    };
    let start = Instant::now();
    let mut received = 0u64;
    let mut burst = Vec::with_capacity(256);
    let counting = async {
        loop {
            burst.clear();
            if ends_b.from_device.recv_many(&mut burst, 256).await == 0 {
                break;
            }
            received += burst.len() as u64;
        }
    };
    let _ = tokio::time::timeout(duration, counting).await;
    let elapsed = start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let sent = sender.await.expect("sender task");
    a.stop().await;
    b.stop().await;
    DeviceRun {
        received_rate: received as f64 / elapsed,
        sent,
        received,
    }
}

/// A UDP-in-IPv4 packet of `len` bytes from 10.0.0.1 to 10.0.0.2.
fn ipv4_udp_packet(len: usize) -> Vec<u8> {
    let mut packet = vec![0u8; len];
    packet[0] = 0x45;
    packet[2..4].copy_from_slice(&(len as u16).to_be_bytes());
    packet[8] = 64;
    packet[9] = 17;
    packet[12..16].copy_from_slice(&[10, 0, 0, 1]);
    packet[16..20].copy_from_slice(&[10, 0, 0, 2]);
    let mut sum: u32 = packet[..20]
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    packet[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    packet[20..22].copy_from_slice(&9000u16.to_be_bytes());
    packet[22..24].copy_from_slice(&9001u16.to_be_bytes());
    packet[24..26].copy_from_slice(&((len - 20) as u16).to_be_bytes());
    packet
}
