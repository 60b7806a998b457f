//! Our device against a real WireGuard peer: Debian's wireguard-go in a network namespace,
//! configured by `wg`, reached over a veth pair. The IP side of our device is a pair of channels
//! driven by the test (in production it is memif): the test writes ICMP echo requests and answers
//! the peer's, so every packet crosses real WireGuard crypto in both directions.

mod common;
mod wg_peer_support;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use wg_peer_support::*;
use wireguard_vpp::wg::channel::{ChannelIpRecv, ChannelIpSend, IpChannelEnds, ip_channel};
use wireguard_vpp::wg::uapi::{Command, DEFAULT_SOCKET_DIR, UapiListener};
use wireguard_vpp::wg::{DeviceSettings, Key, PeerStatus, WgDevice};

type Device = WgDevice<ChannelIpSend, ChannelIpRecv>;

const OUR_V4: [u8; 4] = [10, 200, 0, 2];
const PEER_V4: [u8; 4] = [10, 200, 0, 1];
const OUR_V6: [u8; 16] = [0xfd, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
const PEER_V6: [u8; 16] = [0xfd, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
const PEER_PORT: u16 = 51820;

/// The address family of the veth pair that carries the encrypted packets.
#[derive(Clone, Copy)]
enum Underlay {
    V4,
    V6,
}

/// Our device and a wireguard-go peer in a namespace, joined by a veth pair.
struct Link {
    device: Arc<Device>,
    ends: IpChannelEnds,
    our_public: Key,
    peer_public: Key,
    /// wireguard-go's interface name (and UAPI socket name).
    peer_name: String,
    /// Our underlay address, as wireguard-go sees it.
    our_underlay: IpAddr,
    peer_underlay: IpAddr,
    temp: tempfile::TempDir,
    // Dropped in this order: the process, then the namespace (with the veth pair).
    _peer: ProcessGuard,
    ns: Netns,
}

impl Link {
    async fn new() -> Link {
        Link::over(Underlay::V4).await
    }

    async fn over(underlay: Underlay) -> Link {
        let (pid, n) = unique();
        let ns = Netns::new(format!("wgp{pid}x{n}"));
        let (root_veth, ns_veth) = (format!("wr{pid}x{n}"), format!("wn{pid}x{n}"));
        // A /30 (or /64) of benchmarking / unique-local space per test, away from real networks.
        let (our_underlay, peer_underlay, prefix_len): (IpAddr, IpAddr, u8) = match underlay {
            Underlay::V4 => {
                let (third, base) = ((pid % 200) as u8, ((n % 60) * 4) as u8);
                (
                    Ipv4Addr::new(198, 18, third, base + 1).into(),
                    Ipv4Addr::new(198, 18, third, base + 2).into(),
                    30,
                )
            }
            Underlay::V6 => {
                let (a, b) = ((pid % 65536) as u16, (n % 65536) as u16);
                (
                    Ipv6Addr::new(0xfd18, a, b, 0, 0, 0, 0, 1).into(),
                    Ipv6Addr::new(0xfd18, a, b, 0, 0, 0, 0, 2).into(),
                    64,
                )
            }
        };
        run_ok(
            "ip",
            &[
                "link", "add", &root_veth, "type", "veth", "peer", "name", &ns_veth, "netns",
                &ns.name,
            ],
        );
        let (ours, theirs) = (
            format!("{our_underlay}/{prefix_len}"),
            format!("{peer_underlay}/{prefix_len}"),
        );
        run_ok("ip", &["addr", "add", &ours, "dev", &root_veth, "nodad"]);
        run_ok("ip", &["link", "set", &root_veth, "up"]);
        ns.ip(&["addr", "add", &theirs, "dev", &ns_veth, "nodad"]);
        ns.ip(&["link", "set", &ns_veth, "up"]);

        let temp = tempfile::tempdir().expect("tempdir");
        let (our_private, our_public) = genkey();
        let (peer_private, peer_public) = genkey();
        let peer_name = format!("wgg{pid}x{n}");
        let peer = start_wireguard_go(&ns, &peer_name);

        let (tx, rx, ends) = ip_channel(1024, 1420);
        let settings = DeviceSettings {
            name: format!("wgo{pid}x{n}"),
            private_key: Some(our_private),
            ..DeviceSettings::default()
        };
        let device = Arc::new(
            WgDevice::new(settings, tx, rx)
                .await
                .expect("our device starts"),
        );
        let peer_endpoint: SocketAddr = SocketAddr::new(peer_underlay, PEER_PORT)
            .to_string()
            .parse()
            .expect("endpoint");
        device
            .set(&[
                Command::Peer(peer_public),
                Command::Endpoint(peer_endpoint),
                Command::AllowedIp("10.200.0.1/32".parse().expect("literal")),
                Command::AllowedIp("fd00:200::1/128".parse().expect("literal")),
            ])
            .await
            .expect("configure our peer");

        let key_path = key_file(temp.path(), "peer.key", &peer_private);
        let our_endpoint = SocketAddr::new(our_underlay, device.listen_port()).to_string();
        run_ok(
            "wg",
            &[
                "set",
                &peer_name,
                "listen-port",
                &PEER_PORT.to_string(),
                "private-key",
                key_path.to_str().expect("utf-8 path"),
                "peer",
                &our_public.to_base64(),
                "allowed-ips",
                "10.200.0.2/32,fd00:200::2/128",
                "endpoint",
                &our_endpoint,
            ],
        );
        ns.ip(&["addr", "add", "10.200.0.1/24", "dev", &peer_name]);
        ns.ip(&["addr", "add", "fd00:200::1/64", "dev", &peer_name, "nodad"]);
        ns.ip(&["link", "set", &peer_name, "mtu", "1420", "up"]);
        Link {
            device,
            ends,
            our_public,
            peer_public,
            peer_name,
            our_underlay,
            peer_underlay,
            temp,
            _peer: peer,
            ns,
        }
    }

    /// Sends an echo request from our side and waits for the peer kernel's reply.
    async fn ping_from_us(&mut self, v6: bool, seq: u16) {
        let id = 0x4242;
        let request = if v6 {
            icmpv6_echo(OUR_V6, PEER_V6, 128, id, seq, b"wireguard-vpp ping")
        } else {
            icmpv4_echo(OUR_V4, PEER_V4, 8, id, seq, b"wireguard-vpp ping")
        };
        let want = (if v6 { 129 } else { 0 }, id, seq);
        self.ends
            .to_device
            .send(request)
            .await
            .expect("device reads packets");
        let got = tokio::time::timeout(Duration::from_secs(8), async {
            loop {
                let packet = self
                    .ends
                    .from_device
                    .recv()
                    .await
                    .expect("device sends packets");
                if echo_fields(&packet) == Some(want) {
                    return packet;
                }
            }
        })
        .await;
        let reply = got
            .unwrap_or_else(|_| panic!("no echo reply (v6={v6}, seq={seq}) through wireguard-go"));
        let (src, dst) = if v6 {
            (&reply[8..24], &reply[24..40])
        } else {
            (&reply[12..16], &reply[16..20])
        };
        let (peer, us): (&[u8], &[u8]) = if v6 {
            (&PEER_V6, &OUR_V6)
        } else {
            (&PEER_V4, &OUR_V4)
        };
        assert_eq!(
            (src, dst),
            (peer, us),
            "the reply comes from the peer's address to ours"
        );
    }

    /// Runs `ping` inside the namespace towards us and answers its echo requests from the test.
    async fn ping_from_peer(&mut self, v6: bool) {
        let target = if v6 { "fd00:200::2" } else { "10.200.0.2" };
        let ns = self.ns.name.clone();
        let family = if v6 { "-6" } else { "-4" };
        let mut ping = tokio::process::Command::new("ip")
            .args([
                "netns", "exec", &ns, "ping", family, "-c", "2", "-i", "0.2", "-W", "5", target,
            ])
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start ping");
        let answering = async {
            loop {
                let Some(packet) = self.ends.from_device.recv().await else {
                    return;
                };
                let Some((kind, id, seq)) = echo_fields(&packet) else {
                    continue;
                };
                let reply = match kind {
                    8 => {
                        let src: [u8; 4] = packet[12..16].try_into().expect("4 bytes");
                        let dst: [u8; 4] = packet[16..20].try_into().expect("4 bytes");
                        icmpv4_echo(dst, src, 0, id, seq, &packet[28..])
                    }
                    128 => {
                        let src: [u8; 16] = packet[8..24].try_into().expect("16 bytes");
                        let dst: [u8; 16] = packet[24..40].try_into().expect("16 bytes");
                        icmpv6_echo(dst, src, 129, id, seq, &packet[48..])
                    }
                    _ => continue,
                };
                self.ends
                    .to_device
                    .send(reply)
                    .await
                    .expect("device reads packets");
            }
        };
        let status = tokio::select! {
            status = ping.wait() => status.expect("ping runs"),
            () = answering => panic!("the device's packet side closed"),
        };
        assert!(
            status.success(),
            "ping {target} from the wireguard-go namespace failed"
        );
    }

    async fn our_view(&self) -> PeerStatus {
        self.device
            .peer_status()
            .await
            .into_iter()
            .find(|s| s.public_key == self.peer_public)
            .expect("peer configured")
    }

    /// wireguard-go's `wg show IF dump` line for our peer: (endpoint, latest handshake, rx, tx).
    fn peer_view(&self) -> (String, u64, u64, u64) {
        let dump = run_ok("wg", &["show", &self.peer_name, "dump"]);
        let line = dump.lines().nth(1).expect("one peer line");
        let fields: Vec<&str> = line.split('\t').collect();
        let number = |i: usize| fields[i].parse::<u64>().expect("numeric field");
        (fields[2].to_owned(), number(4), number(5), number(6))
    }
}

fn runtime_ready() -> bool {
    peers_available()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_then_ipv4_and_ipv6_both_ways() {
    if !runtime_ready() {
        return;
    }
    let mut link = Link::new().await;
    link.ping_from_us(false, 1).await;
    link.ping_from_us(true, 2).await;
    link.ping_from_peer(false).await;
    link.ping_from_peer(true).await;

    let ours = link.our_view().await;
    assert!(ours.last_handshake.is_some(), "we saw the handshake");
    assert!(ours.rx_bytes > 0 && ours.tx_bytes > 0, "{ours:?}");
    let (endpoint, handshake, rx, tx) = link.peer_view();
    assert_eq!(
        endpoint,
        SocketAddr::new(link.our_underlay, link.device.listen_port()).to_string()
    );
    assert!(
        handshake > 0 && rx > 0 && tx > 0,
        "wireguard-go saw the session: {handshake} {rx} {tx}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_keepalives_reach_the_peer() {
    if !runtime_ready() {
        return;
    }
    let link = Link::new().await;
    // No data at all: only the keepalive timer brings the tunnel up and keeps it talking.
    link.device
        .set(&[
            Command::Peer(link.peer_public),
            Command::PersistentKeepalive(1),
        ])
        .await
        .expect("keepalive on");
    let first = eventually(Duration::from_secs(10), async || {
        let (_, handshake, rx, _) = link.peer_view();
        (handshake > 0 && rx > 0).then_some(rx)
    })
    .await
    .expect("the keepalive timer brought the session up");
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let (_, _, later, _) = link.peer_view();
    // A keepalive is an empty data packet: 32 bytes on the wire.
    assert!(
        later >= first + 2 * 32,
        "keepalives every second: rx {first} -> {later}"
    );
    assert_eq!(link.config_keepalive().await, 1);
}

impl Link {
    async fn config_keepalive(&self) -> u16 {
        self.device
            .config()
            .await
            .peer(&self.peer_public)
            .map(|p| p.persistent_keepalive)
            .unwrap_or_default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forced_new_handshake_rekeys_and_traffic_continues() {
    if !runtime_ready() {
        return;
    }
    let mut link = Link::new().await;
    link.ping_from_us(false, 1).await;
    let first = link
        .our_view()
        .await
        .last_handshake
        .expect("first handshake");
    tokio::time::sleep(Duration::from_millis(1100)).await;

    // wireguard-go forgets the peer and gets it back: its next packet needs a new handshake.
    let our_public = link.our_public.to_base64();
    run_ok(
        "wg",
        &["set", &link.peer_name, "peer", &our_public, "remove"],
    );
    let endpoint = SocketAddr::new(link.our_underlay, link.device.listen_port()).to_string();
    run_ok(
        "wg",
        &[
            "set",
            &link.peer_name,
            "peer",
            &our_public,
            "allowed-ips",
            "10.200.0.2/32,fd00:200::2/128",
            "endpoint",
            &endpoint,
        ],
    );
    link.ping_from_peer(false).await;
    link.ping_from_us(true, 2).await;
    let second = link
        .our_view()
        .await
        .last_handshake
        .expect("second handshake");
    assert!(
        second > first,
        "a new handshake happened: {first:?} -> {second:?}"
    );
    let (_, handshake, _, _) = link.peer_view();
    let peer_time = SystemTime::UNIX_EPOCH + Duration::from_secs(handshake);
    assert!(
        peer_time + Duration::from_secs(1) >= first,
        "wireguard-go also rekeyed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_endpoint_roams_when_the_peer_changes_port() {
    if !runtime_ready() {
        return;
    }
    let mut link = Link::new().await;
    link.ping_from_us(false, 1).await;
    let before = link.our_view().await.endpoint.expect("endpoint");
    assert_eq!(before.port(), PEER_PORT);

    let new_port = PEER_PORT + 7;
    run_ok(
        "wg",
        &["set", &link.peer_name, "listen-port", &new_port.to_string()],
    );
    // The peer speaks first from its new port; we follow it there.
    link.ping_from_peer(false).await;
    let after = link.our_view().await.endpoint.expect("endpoint");
    let expected: SocketAddr = SocketAddr::new(link.peer_underlay, new_port)
        .to_string()
        .parse()
        .expect("literal");
    assert_eq!(after, expected, "roamed to the new port");
    link.ping_from_us(true, 2).await;
    assert_eq!(
        link.our_view().await.endpoint.map(|e| e.ip()),
        Some(before.ip())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_session_survives_an_unchanged_syncconf_and_100_edits_of_other_peers() {
    if !runtime_ready() {
        return;
    }
    let mut link = Link::new().await;
    let (pid, n) = unique();
    let name = format!("wgs{pid}x{n}");
    let listener = UapiListener::bind(std::path::Path::new(DEFAULT_SOCKET_DIR), &name)
        .expect("our UAPI socket");
    let serving = tokio::spawn(listener.serve(Arc::clone(&link.device)));

    link.ping_from_us(false, 1).await;
    let before = link.our_view().await;
    let handshake = before.last_handshake.expect("handshake");

    let conf = link.temp.path().join("ours.conf");
    let showconf = run_ok("wg", &["showconf", &name]);
    std::fs::write(&conf, &showconf).expect("write config");
    run_ok("wg", &["syncconf", &name, conf.to_str().expect("utf-8")]);
    run_ok("wg", &["setconf", &name, conf.to_str().expect("utf-8")]);
    link.ping_from_us(false, 2).await;
    let after_sync = link.our_view().await;
    assert_eq!(
        after_sync.last_handshake,
        Some(handshake),
        "syncconf/setconf of the same config keep the session"
    );
    assert!(
        after_sync.tx_bytes > before.tx_bytes && after_sync.rx_bytes > before.rx_bytes,
        "{before:?} -> {after_sync:?}"
    );

    let mut others = Vec::new();
    for i in 0..100u32 {
        if i % 4 == 3 {
            let removed: Key = others.remove(0);
            run_ok(
                "wg",
                &["set", &name, "peer", &removed.to_base64(), "remove"],
            );
        } else {
            let (_, public) = genkey();
            let ips = format!("10.{}.{}.0/24", 201 + i / 250, i % 250);
            run_ok(
                "wg",
                &[
                    "set",
                    &name,
                    "peer",
                    &public.to_base64(),
                    "allowed-ips",
                    &ips,
                    "endpoint",
                    "192.0.2.1:51820",
                ],
            );
            others.push(public);
        }
        if i % 25 == 24 {
            link.ping_from_us(i % 50 == 49, 10 + i as u16).await;
        }
    }
    let after = link.our_view().await;
    assert_eq!(
        after.last_handshake,
        Some(handshake),
        "100 edits of other peers left the session alone"
    );
    assert!(
        after.tx_bytes > after_sync.tx_bytes && after.rx_bytes > after_sync.rx_bytes,
        "{after_sync:?} -> {after:?}"
    );
    assert_eq!(link.device.config().await.peer_count(), 1 + others.len());
    // Our configuration is what wg sees.
    let dump = run_ok("wg", &["show", &name, "dump"]);
    assert_eq!(dump.lines().count(), 2 + others.len(), "{dump}");
    serving.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reapplying_a_config_file_is_a_diff_that_keeps_the_session() {
    if !runtime_ready() {
        return;
    }
    let mut link = Link::new().await;
    link.ping_from_us(false, 1).await;
    let handshake = link.our_view().await.last_handshake.expect("handshake");
    let private = link.device.config().await.private_key.expect("our key");
    let (_, other) = genkey();
    let conf = link.temp.path().join("reconf.conf");
    let (peer_public, peer_underlay) = (link.peer_public, link.peer_underlay);
    let write = |keepalive: u16, with_other: bool| {
        let mut text = format!(
            "[Interface]\nPrivateKey = {}\n\n[Peer]\nPublicKey = {}\nEndpoint = {}\n\
             AllowedIPs = 10.200.0.1/32, fd00:200::1/128\nPersistentKeepalive = {keepalive}\n",
            private.to_base64(),
            peer_public.to_base64(),
            SocketAddr::new(peer_underlay, PEER_PORT)
        );
        if with_other {
            text.push_str(&format!(
                "\n[Peer]\nPublicKey = {}\nEndpoint = localhost:51999\nAllowedIPs = 10.77.0.0/16\n",
                other.to_base64()
            ));
        }
        std::fs::write(&conf, text).expect("write config");
    };

    // The file says what the device already has: nothing to do.
    write(0, false);
    let report = link.device.apply_config_file(&conf).await.expect("apply");
    assert_eq!(report.commands, 0, "{report:?}");

    // A new peer (endpoint by DNS name) and a changed keepalive: only those are touched.
    write(15, true);
    let report = link.device.apply_config_file(&conf).await.expect("apply");
    assert!(
        report.commands > 0 && report.unresolved.is_empty(),
        "{report:?}"
    );
    let config = link.device.config().await;
    assert_eq!(
        config
            .peer(&link.peer_public)
            .map(|p| p.persistent_keepalive),
        Some(15)
    );
    let endpoint = config
        .peer(&other)
        .and_then(|p| p.endpoint)
        .expect("resolved endpoint");
    assert!(
        endpoint.ip().is_loopback() && endpoint.port() == 51999,
        "{endpoint}"
    );
    link.ping_from_us(true, 2).await;

    // Applying the same file again changes nothing; dropping the peer from the file removes it.
    assert_eq!(
        link.device
            .apply_config_file(&conf)
            .await
            .expect("apply")
            .commands,
        0
    );
    write(15, false);
    link.device.apply_config_file(&conf).await.expect("apply");
    assert!(link.device.config().await.peer(&other).is_none());
    link.ping_from_us(false, 3).await;
    assert_eq!(
        link.our_view().await.last_handshake,
        Some(handshake),
        "the session survived every re-apply"
    );

    // A broken file is refused with its name and line, and changes nothing.
    std::fs::write(&conf, "[Interface]\nListenPort = many\n").expect("write");
    let error = link
        .device
        .apply_config_file(&conf)
        .await
        .expect_err("bad file")
        .to_string();
    assert!(
        error.contains("reconf.conf:2") && error.contains("ListenPort"),
        "{error}"
    );
    assert_eq!(link.device.config().await.peer_count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ipv6_underlay_carries_ipv4_and_ipv6_and_roams() {
    if !runtime_ready() {
        return;
    }
    let mut link = Link::over(Underlay::V6).await;
    link.ping_from_us(false, 1).await;
    link.ping_from_peer(true).await;
    let endpoint = link.our_view().await.endpoint.expect("endpoint");
    assert_eq!(endpoint, SocketAddr::new(link.peer_underlay, PEER_PORT));
    run_ok(
        "wg",
        &[
            "set",
            &link.peer_name,
            "listen-port",
            &(PEER_PORT + 3).to_string(),
        ],
    );
    link.ping_from_peer(false).await;
    assert_eq!(
        link.our_view().await.endpoint,
        Some(SocketAddr::new(link.peer_underlay, PEER_PORT + 3))
    );
    let (endpoint, _, _, _) = link.peer_view();
    assert_eq!(
        endpoint,
        SocketAddr::new(link.our_underlay, link.device.listen_port()).to_string()
    );
}

/// The RX packet counter of an interface inside the namespace.
fn rx_packets(ns: &Netns, interface: &str) -> u64 {
    let stats = ns.ip(&["-s", "-j", "link", "show", interface]);
    let at = stats.find("\"rx\":{").expect("rx statistics");
    let rest = &stats[at..];
    let packets = rest.find("\"packets\":").expect("packet counter") + "\"packets\":".len();
    rest[packets..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .expect("number")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bursts_of_full_size_packets_reach_the_peer_intact() {
    if !runtime_ready() {
        return;
    }
    let mut link = Link::new().await;
    link.ping_from_us(false, 1).await;
    let before = rx_packets(&link.ns, &link.peer_name);
    // Bursts of full-size packets to one peer leave as UDP GSO sends; wireguard-go must see
    // each as its own datagram and decrypt it.
    let (bursts, per_burst) = (25, 40);
    let payload = vec![0x5a; 1420 - 28];
    for burst in 0..bursts {
        for i in 0..per_burst {
            let seq = (burst * per_burst + i) as u16;
            let packet = icmpv4_echo(OUR_V4, PEER_V4, 8, 0x7777, seq, &payload);
            assert_eq!(packet.len(), 1420);
            link.ends
                .to_device
                .send(packet)
                .await
                .expect("device reads packets");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let sent = (bursts * per_burst) as u64;
    let arrived = eventually(Duration::from_secs(5), async || {
        let arrived = rx_packets(&link.ns, &link.peer_name) - before;
        (arrived >= sent).then_some(arrived)
    })
    .await
    .unwrap_or_else(|| rx_packets(&link.ns, &link.peer_name) - before);
    assert!(
        arrived * 100 >= sent * 98,
        "{arrived} of {sent} packets reached wireguard-go's interface"
    );
    // And the replies came back through the device.
    let mut replies = 0;
    while let Ok(Some(packet)) =
        tokio::time::timeout(Duration::from_millis(500), link.ends.from_device.recv()).await
    {
        if echo_fields(&packet).is_some_and(|(kind, id, _)| kind == 0 && id == 0x7777) {
            replies += 1;
        }
    }
    assert!(
        replies * 100 >= sent * 90,
        "{replies} of {sent} echo replies came back"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_preshared_key_on_both_sides_gives_a_working_session() {
    if !runtime_ready() {
        return;
    }
    let mut link = Link::new().await;
    // Before any traffic: the first handshake mixes in the key. Had either side ignored it, the
    // handshake would fail (the key enters the key derivation on both ends).
    let (psk, _) = genkey();
    let ours = psk;
    link.device
        .set(&[
            Command::Peer(link.peer_public),
            Command::PresharedKey(Some(ours)),
        ])
        .await
        .expect("our psk");
    let psk_file = key_file(link.temp.path(), "psk", &psk);
    run_ok(
        "wg",
        &[
            "set",
            &link.peer_name,
            "peer",
            &link.our_public.to_base64(),
            "preshared-key",
            psk_file.to_str().expect("utf-8"),
        ],
    );
    link.ping_from_us(false, 1).await;
    link.ping_from_peer(true).await;
    let shown = run_ok("wg", &["show", &link.peer_name, "preshared-keys"]);
    assert!(
        shown.contains(&psk.to_base64()),
        "wireguard-go uses the key: {shown}"
    );
}

/// Handshake initiations to `to` from `count` strangers (fresh keys each), with a valid mac1, as a
/// flood that makes the device "under load" would carry.
fn stranger_initiations(to: &Key, count: usize) -> Vec<Vec<u8>> {
    use gotatun::noise::Tunn;
    use gotatun::noise::index_table::IndexTable;
    use gotatun::noise::rate_limiter::RateLimiter;
    use gotatun::x25519::{PublicKey, StaticSecret};
    let index_table = IndexTable::from_os_rng();
    let target = PublicKey::from(to.0);
    (0..count)
        .map(|_| {
            let secret = StaticSecret::from(rand::random::<[u8; 32]>());
            let public = PublicKey::from(&secret);
            let limiter = Arc::new(RateLimiter::new(&public, 100));
            let mut tunn = Tunn::new(secret, target, None, None, index_table.clone(), limiter);
            let init = tunn
                .format_handshake_initiation(false)
                .expect("a first initiation is always formatted");
            let packet: gotatun::packet::Packet = init.into();
            packet.to_vec()
        })
        .collect()
}

/// Sends the handshake initiations in FILE (148 bytes each) to HOST PORT at 600 a second for SECONDS,
/// and prints how many cookie replies (type 3, 64 bytes) came back.
const FLOOD: &str = r#"
import socket, sys, time
data = open(sys.argv[1], "rb").read()
packets = [data[i:i + 148] for i in range(0, len(data), 148)]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setblocking(False)
cookies, sent, end = 0, 0, time.monotonic() + float(sys.argv[4])
while time.monotonic() < end:
    s.sendto(packets[sent % len(packets)], (sys.argv[2], int(sys.argv[3])))
    sent += 1
    try:
        while True:
            reply = s.recv(256)
            cookies += len(reply) == 64 and reply[0] == 3
    except BlockingIOError:
        pass
    time.sleep(1 / 600)
print(cookies)
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_a_handshake_flood_from_the_peers_address_the_peer_connects_through_cookies() {
    if !runtime_ready() {
        return;
    }
    let mut link = Link::new().await;
    // The flood comes from the peer's own address (as from behind the same NAT): that address is
    // then "under load", so every handshake message from it must carry a cookie's mac2.
    let initiations: Vec<u8> = stranger_initiations(&link.our_public, 600).concat();
    let file = link.temp.path().join("initiations");
    std::fs::write(&file, initiations).expect("write the initiations");
    let flood = tokio::process::Command::new("ip")
        .args(["netns", "exec", &link.ns.name, "python3", "-c", FLOOD])
        .arg(&file)
        .arg(link.our_underlay.to_string())
        .arg(link.device.listen_port().to_string())
        .arg("12")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the flood");
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Our initiation is answered by wireguard-go from the flooded address: the answer gets a cookie
    // reply instead of a session, and wireguard-go's answer to our retry carries the cookie's mac2.
    link.ping_from_us(false, 1).await;
    link.ping_from_peer(true).await;
    let (_, handshake, rx, tx) = link.peer_view();
    assert!(
        handshake > 0 && rx > 0 && tx > 0,
        "wireguard-go has a session with us despite the flood: {handshake} {rx} {tx}"
    );
    let out = flood.wait_with_output().await.expect("the flood ends");
    assert!(out.status.success(), "the flood script failed: {out:?}");
    let cookies: u64 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("the flood prints its cookie count");
    assert!(
        cookies > 100,
        "the flood got {cookies} cookie replies; a device under load answers initiations with cookies"
    );
}
