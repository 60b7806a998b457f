//! Golden frames checked by an independent encoder/decoder (scapy, from the project's virtualenv):
//! frames scapy builds (odd ones included: VLAN-tagged, padded, options reordered, bad checksum,
//! truncated) give the expected action, and every frame the Ethernet side emits is decoded by scapy
//! with the expected fields and valid checksums.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::net::IpAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use serde_json::{Value, json};
use wireguard_vpp::l2::wire::{Ipv4Packet, Ipv4Repr, Ipv6Packet, Ipv6Repr};
use wireguard_vpp::l2::{
    Adapter, DropReason, L2Config, MacAddr, Neighbour, NeighbourInstall, RxAction, TransmitKind,
    TxAction,
};

const SELF: &str = "98:d2:93:00:00:03";
const GW: &str = "42:42:42:42:42:42";
const NEIGH: &str = "02:00:00:00:00:0b";
const OTHER: &str = "02:00:00:00:00:0c";

fn mac(text: &str) -> MacAddr {
    text.parse().unwrap()
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

/// The spec's acceptance fixture (section 12).
fn fixture() -> L2Config {
    let mut config = L2Config::new(mac(SELF), mac(GW));
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

fn script() -> &'static Path {
    Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/l2_frames/scapy_frames.py"
    ))
}

/// Runs the scapy helper with `command`, feeding `input` as JSON, and parses its JSON output.
fn scapy(python: &Path, command: &str, input: &Value) -> Value {
    let mut child = Command::new(python)
        .arg(script())
        .arg(command)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the scapy helper");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.to_string().as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "scapy helper failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("scapy helper prints JSON")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

/// What a scapy-built frame must give.
#[derive(Debug)]
enum Want {
    /// A reply (decoded by scapy afterwards), optionally learning a neighbour.
    Reply(Option<(&'static str, &'static str)>),
    /// Delivery of this many bytes from offset 14.
    Deliver(usize),
    /// Learned without a reply.
    Learn(&'static str, &'static str),
    Drop(DropReason),
}

fn expectations() -> BTreeMap<&'static str, Want> {
    use Want::*;
    BTreeMap::from([
        ("arp_request_broadcast", Reply(Some(("10.127.111.1", GW)))),
        (
            "arp_request_padded_to_60",
            Reply(Some(("10.127.111.1", GW))),
        ),
        ("arp_request_vlan_tagged", Drop(DropReason::VlanTagged)),
        ("arp_request_truncated", Drop(DropReason::MalformedArp)),
        ("arp_reply_unicast", Learn("10.127.111.7", NEIGH)),
        ("ipv4_udp_padded", Deliver(20 + 8 + 2)),
        ("ipv4_bad_checksum", Drop(DropReason::BadChecksum)),
        ("ipv4_ospf_multicast", Deliver(20 + 5)),
        ("ipv4_broadcast", Drop(DropReason::UnsupportedGroup)),
        ("ipv6_udp_to_self", Deliver(40 + 8 + 2)),
        ("ipv6_ospf_multicast", Deliver(40 + 5)),
        ("ns_multicast", Reply(Some(("fd10:127:e00f::1", GW)))),
        (
            "ns_options_reordered",
            Reply(Some(("fd10:127:e00f::1", OTHER))),
        ),
        ("ns_bad_checksum", Drop(DropReason::BadChecksum)),
        (
            "ns_hop_limit_64",
            Drop(DropReason::InvalidNeighbourDiscovery),
        ),
        ("ns_dad", Reply(None)),
        ("na_86_bytes", Learn("fd10:127:e00f::5", NEIGH)),
        ("na_without_option", Learn("fd10:127:e00f::5", NEIGH)),
        ("na_options_reordered", Learn("fd10:127:e00f::5", OTHER)),
        ("na_padded", Learn("fd10:127:e00f::5", NEIGH)),
        ("na_truncated", Drop(DropReason::MalformedIp)),
        ("mldv2_report", Drop(DropReason::LinkLocalControl)),
        ("router_advertisement", Drop(DropReason::LinkLocalControl)),
        ("runt", Drop(DropReason::Runt)),
    ])
}

/// Checks that `decoded` (scapy's view of a frame) has every field of `want`.
fn assert_fields(name: &str, decoded: &Value, want: Value) {
    for (field, value) in want.as_object().unwrap() {
        assert_eq!(
            &decoded[field], value,
            "{name}: field `{field}` (scapy saw {decoded})"
        );
    }
}

#[test]
fn frames_built_by_scapy_give_the_expected_action_and_replies_decode() {
    let Some(python) = common::venv_python() else {
        return;
    };
    let frames = scapy(&python, "build", &json!({}));
    let frames = frames.as_object().unwrap();
    let expectations = expectations();
    assert_eq!(
        frames.len(),
        expectations.len(),
        "every scapy frame has an expectation"
    );

    let mut replies = serde_json::Map::new();
    for (name, want) in &expectations {
        let frame = unhex(
            frames[*name]
                .as_str()
                .unwrap_or_else(|| panic!("{name} built")),
        );
        let adapter = Adapter::new(fixture());
        let mut reply = [0u8; 128];
        let outcome = adapter.on_frame(&frame, Instant::now(), &mut reply);
        let learned = |learn: Option<(&str, &str)>| {
            learn.map(|(addr, lladdr)| Neighbour {
                ip: ip(addr),
                mac: mac(lladdr),
            })
        };
        match (want, &outcome.action) {
            (Want::Reply(learn), RxAction::Reply(len)) => {
                assert_eq!(outcome.learned, learned(*learn), "{name}: learned");
                replies.insert((*name).to_owned(), json!(hex(&reply[..*len])));
            }
            (Want::Deliver(len), RxAction::Deliver(range)) => {
                assert_eq!(*range, 14..14 + len, "{name}: delivered range");
                assert_eq!(outcome.learned, None, "{name}: nothing learned");
            }
            (Want::Learn(addr, lladdr), RxAction::Consumed) => {
                assert_eq!(
                    outcome.learned,
                    learned(Some((addr, lladdr))),
                    "{name}: learned"
                );
            }
            (Want::Drop(reason), RxAction::Dropped(got)) => {
                assert_eq!(got, reason, "{name}: drop reason")
            }
            (want, got) => panic!("{name}: wanted {want:?}, got {got:?}"),
        }
    }

    let decoded = scapy(&python, "dissect", &Value::Object(replies));
    let arp_reply = json!({
        "len": 42, "dst": GW, "src": SELF, "type": 0x0806, "hwtype": 1, "ptype": 0x0800, "hwlen": 6, "plen": 4,
        "op": 2, "hwsrc": SELF, "psrc": "172.22.77.33", "hwdst": GW, "pdst": "10.127.111.1",
    });
    assert_fields(
        "reply to arp_request_broadcast",
        &decoded["arp_request_broadcast"],
        arp_reply.clone(),
    );
    assert_fields(
        "reply to arp_request_padded_to_60",
        &decoded["arp_request_padded_to_60"],
        arp_reply,
    );
    let na = json!({
        "len": 86, "dst": GW, "src": SELF, "type": 0x86dd, "ip_src": "fd28:cb8f:4c92::33",
        "ip_dst": "fd10:127:e00f::1", "hlim": 255, "plen": 32, "nh": 58, "icmp_type": 136, "code": 0,
        "R": 0, "S": 1, "O": 1, "tgt": "fd28:cb8f:4c92::33", "tlla": SELF, "cksum_ok": true,
    });
    assert_fields(
        "reply to ns_multicast",
        &decoded["ns_multicast"],
        na.clone(),
    );
    // Reordered options: the reply still goes to the frame's source.
    assert_fields(
        "reply to ns_options_reordered",
        &decoded["ns_options_reordered"],
        na,
    );
    assert_fields(
        "reply to ns_dad",
        &decoded["ns_dad"],
        json!({
            "len": 86, "dst": "33:33:00:00:00:01", "src": SELF, "ip_src": "fd28:cb8f:4c92::33", "ip_dst": "ff02::1",
            "hlim": 255, "icmp_type": 136, "R": 0, "S": 0, "O": 1, "tlla": SELF, "cksum_ok": true,
        }),
    );
}

/// Every kind of frame the Ethernet side sends, made through the public API on the spec's fixture.
fn emitted_frames() -> BTreeMap<&'static str, Vec<u8>> {
    let adapter = Adapter::new(fixture());
    let now = Instant::now();
    let mut frames = BTreeMap::new();
    let mut out = [0u8; 2048];

    // Scenario 24: a packet to the default gateway, framed with the header we return.
    let mut v4 = vec![0u8; 20 + 4];
    let v4_repr = Ipv4Repr {
        src_addr: "172.22.77.33".parse().unwrap(),
        dst_addr: "8.8.8.8".parse().unwrap(),
        protocol: 253, // RFC 3692 experimental: opaque payload
        ttl: 64,
        payload_len: 4,
    };
    v4_repr.emit(&mut Ipv4Packet::new_unchecked(&mut v4[..]));
    let TxAction::Send(header) = adapter.on_packet(&v4, now) else {
        panic!("gateway packets are sent at once")
    };
    frames.insert("gateway_data", ([&header[..], &v4[..]].concat()).to_vec());

    // Scenario 25: the ARP request for a learning-range miss.
    let mut miss = v4.clone();
    Ipv4Repr {
        dst_addr: "10.127.111.7".parse().unwrap(),
        ..v4_repr
    }
    .emit(&mut Ipv4Packet::new_unchecked(&mut miss[..]));
    assert_eq!(adapter.on_packet(&miss, now), TxAction::Queued);
    let request = adapter.poll_transmit(now, &mut out).unwrap();
    assert_eq!(request.kind, TransmitKind::Solicitation);
    frames.insert("arp_request", (out[..request.len]).to_vec());

    // Scenario 27: the NS for an IPv6 learning-range miss.
    let mut v6 = vec![0u8; 40 + 4];
    let v6_repr = Ipv6Repr {
        src_addr: "fd28:cb8f:4c92::33".parse().unwrap(),
        dst_addr: "fd10:127:e00f::5".parse().unwrap(),
        next_header: 253,
        hop_limit: 64,
        payload_len: 4,
    };
    v6_repr.emit(&mut Ipv6Packet::new_unchecked(&mut v6[..]));
    assert_eq!(adapter.on_packet(&v6, now), TxAction::Queued);
    let solicit = adapter.poll_transmit(now, &mut out).unwrap();
    frames.insert("neighbour_solicit", (out[..solicit.len]).to_vec());

    // The NA of scenario 20 resolves it: the queued packet goes out to the learned MAC.
    let mut na = [0u8; 86];
    wireguard_vpp::l2::frames::unsolicited_advert(
        &mut na,
        mac(NEIGH),
        "fd10:127:e00f::5".parse().unwrap(),
    )
    .unwrap();
    let mut reply = [0u8; 128];
    assert_eq!(
        adapter.on_frame(&na, now, &mut reply).action,
        RxAction::Consumed
    );
    let flushed = adapter.poll_transmit(now, &mut out).unwrap();
    assert_eq!(flushed.kind, TransmitKind::Flushed);
    frames.insert("flushed_v6", (out[..flushed.len]).to_vec());

    // Scenario 29: the startup announcement.
    let garp = adapter
        .write_announcement(ip("172.22.77.33"), &mut out)
        .unwrap();
    frames.insert("gratuitous_arp", (out[..garp.len]).to_vec());
    let unsolicited = adapter
        .write_announcement(ip("fe80::42:1817:1"), &mut out)
        .unwrap();
    frames.insert("unsolicited_na", (out[..unsolicited.len]).to_vec());

    // Answers: an ARP reply (scenario 12), a solicited NA (scenario 17) and a DAD answer.
    use wireguard_vpp::l2::frames;
    let mut request = [0u8; frames::ARP_FRAME_LEN];
    frames::arp_request(
        &mut request,
        MacAddr::BROADCAST,
        mac(GW),
        "10.127.111.1".parse().unwrap(),
        "172.22.77.33".parse().unwrap(),
    )
    .unwrap();
    let RxAction::Reply(len) = adapter.on_frame(&request, now, &mut reply).action else {
        panic!("ARP answered")
    };
    frames.insert("arp_reply", reply[..len].to_vec());
    let mut ns = [0u8; frames::NDISC_FRAME_LEN];
    frames::neighbour_solicit(
        &mut ns,
        mac(GW),
        "fd10:127:e00f::1".parse().unwrap(),
        "fd28:cb8f:4c92::33".parse().unwrap(),
        None,
    )
    .unwrap();
    let RxAction::Reply(len) = adapter.on_frame(&ns, now, &mut reply).action else {
        panic!("NS answered")
    };
    frames.insert("neighbour_advert", reply[..len].to_vec());
    frames
}

#[test]
fn frames_we_send_decode_in_scapy() {
    let Some(python) = common::venv_python() else {
        return;
    };
    let frames: serde_json::Map<String, Value> = emitted_frames()
        .into_iter()
        .map(|(name, frame)| (name.to_owned(), json!(hex(&frame))))
        .collect();
    let decoded = scapy(&python, "dissect", &Value::Object(frames));
    assert_fields(
        "gateway_data",
        &decoded["gateway_data"],
        json!({"len": 38, "dst": GW, "src": SELF, "type": 0x0800, "ip_src": "172.22.77.33", "ip_dst": "8.8.8.8", "ip_len": 24, "ip_chksum_ok": true}),
    );
    assert_fields(
        "arp_request",
        &decoded["arp_request"],
        json!({
            "len": 42, "dst": "ff:ff:ff:ff:ff:ff", "src": SELF, "type": 0x0806, "op": 1, "hwsrc": SELF,
            "psrc": "172.22.77.33", "hwdst": "00:00:00:00:00:00", "pdst": "10.127.111.7",
        }),
    );
    assert_fields(
        "neighbour_solicit",
        &decoded["neighbour_solicit"],
        json!({
            "len": 86, "dst": "33:33:ff:00:00:05", "src": SELF, "ip_src": "fd28:cb8f:4c92::33",
            "ip_dst": "ff02::1:ff00:5", "hlim": 255, "plen": 32, "nh": 58, "icmp_type": 135, "code": 0,
            "tgt": "fd10:127:e00f::5", "slla": SELF, "cksum_ok": true,
        }),
    );
    assert_fields(
        "flushed_v6",
        &decoded["flushed_v6"],
        json!({"len": 58, "dst": NEIGH, "src": SELF, "type": 0x86dd, "ip_src": "fd28:cb8f:4c92::33", "ip_dst": "fd10:127:e00f::5"}),
    );
    assert_fields(
        "gratuitous_arp",
        &decoded["gratuitous_arp"],
        json!({
            "len": 42, "dst": "ff:ff:ff:ff:ff:ff", "src": SELF, "op": 2, "hwsrc": SELF, "psrc": "172.22.77.33",
            "hwdst": "ff:ff:ff:ff:ff:ff", "pdst": "172.22.77.33",
        }),
    );
    assert_fields(
        "unsolicited_na",
        &decoded["unsolicited_na"],
        json!({
            "len": 86, "dst": "33:33:00:00:00:01", "src": SELF, "ip_src": "fe80::42:1817:1", "ip_dst": "ff02::1",
            "hlim": 255, "icmp_type": 136, "R": 0, "S": 0, "O": 1, "tgt": "fe80::42:1817:1", "tlla": SELF,
            "cksum_ok": true,
        }),
    );
}

/// Frames of every kind the packet path sees, built by our own builders (their bytes are checked
/// against scapy above).
fn packet_path_frames() -> Vec<Vec<u8>> {
    use wireguard_vpp::l2::frames;
    let gateway = mac(GW);
    let me = mac(SELF);
    let mut arp_request = vec![0; frames::ARP_FRAME_LEN];
    frames::arp_request(
        &mut arp_request,
        MacAddr::BROADCAST,
        gateway,
        "10.127.111.1".parse().unwrap(),
        "172.22.77.33".parse().unwrap(),
    )
    .unwrap();
    let mut ns = vec![0; frames::NDISC_FRAME_LEN];
    frames::neighbour_solicit(
        &mut ns,
        gateway,
        "fd10:127:e00f::1".parse().unwrap(),
        "fd28:cb8f:4c92::33".parse().unwrap(),
        None,
    )
    .unwrap();
    let mut na = vec![0; frames::NDISC_FRAME_LEN];
    frames::unsolicited_advert(&mut na, mac(NEIGH), "fd10:127:e00f::5".parse().unwrap()).unwrap();
    let mut data = [0u8; 14 + 40 + 8];
    data[..6].copy_from_slice(&me.0);
    data[6..12].copy_from_slice(&gateway.0);
    data[12..14].copy_from_slice(&[0x86, 0xdd]);
    Ipv6Repr {
        src_addr: "fd10:127:e00f::1".parse().unwrap(),
        dst_addr: "fd28:cb8f:4c92::33".parse().unwrap(),
        next_header: 17,
        hop_limit: 64,
        payload_len: 8,
    }
    .emit(&mut Ipv6Packet::new_unchecked(&mut data[14..]));
    vec![arp_request, ns, na, data.to_vec(), vec![0; 10]]
}

#[test]
fn the_packet_path_never_allocates() {
    // Measured with a counting global allocator (this test binary's only), on this thread.
    let adapter = Adapter::new(fixture());
    let now = Instant::now();
    let frames = packet_path_frames();
    let mut v4 = vec![0u8; 20 + 100];
    let repr = Ipv4Repr {
        src_addr: "172.22.77.33".parse().unwrap(),
        dst_addr: "8.8.8.8".parse().unwrap(),
        protocol: 17,
        ttl: 64,
        payload_len: 100,
    };
    repr.emit(&mut Ipv4Packet::new_unchecked(&mut v4[..]));
    let mut to_learning_range = v4.clone();
    Ipv4Repr {
        dst_addr: "10.127.111.7".parse().unwrap(),
        ..repr
    }
    .emit(&mut Ipv4Packet::new_unchecked(&mut to_learning_range[..]));
    let mut reply = [0u8; 128];
    let mut out = [0u8; 2048];

    let info = allocation_counter::measure(|| {
        for round in 0..100u64 {
            let now = now + std::time::Duration::from_millis(round * 100);
            for frame in &frames {
                std::hint::black_box(adapter.on_frame(frame, now, &mut reply));
            }
            std::hint::black_box(adapter.on_packet(&v4, now));
            // Unresolved, queued, solicited, given up on and started again, over the rounds.
            std::hint::black_box(adapter.on_packet(&to_learning_range, now));
            while adapter.poll_transmit(now, &mut out).is_some() {}
        }
    });
    assert_eq!(
        info.count_total, 0,
        "allocations on the packet path: {info:?}"
    );
    let counters = adapter.counters();
    assert!(
        counters.count(wireguard_vpp::l2::Event::Solicited) > 3,
        "the resolution path ran"
    );
    assert!(
        counters.dropped(DropReason::Unresolved) > 0,
        "and gave up at least once"
    );
}

/// Writes `frames` as a classic pcap file (Ethernet link type).
fn write_pcap<'a>(path: &Path, frames: impl Iterator<Item = &'a Vec<u8>>) {
    let mut bytes = Vec::new();
    for field in [0xa1b2_c3d4u32, 0x0004_0002, 0, 0, 65_535, 1] {
        bytes.extend_from_slice(&field.to_le_bytes());
    }
    for (second, frame) in frames.enumerate() {
        let len = frame.len() as u32;
        for field in [second as u32, 0, len, len] {
            bytes.extend_from_slice(&field.to_le_bytes());
        }
        bytes.extend_from_slice(frame);
    }
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn frames_we_send_pass_tshark_with_good_checksums() {
    if !common::require("tshark", "independent frame decoder") {
        return;
    }
    let frames = emitted_frames();
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("emitted.pcap");
    write_pcap(&pcap, frames.values());
    let fields = [
        "eth.src",
        "arp.opcode",
        "icmpv6.type",
        "icmpv6.checksum.status",
        "ip.checksum.status",
        "_ws.malformed",
        "_ws.expert.severity",
    ];
    let mut command = Command::new("tshark");
    command.arg("-r").arg(&pcap).args([
        "-o",
        "ip.check_checksum:TRUE",
        "-T",
        "fields",
        "-E",
        "separator=/t",
    ]);
    command.args(["-E", "aggregator=;", "-E", "occurrence=a"]);
    for field in fields {
        command.args(["-e", field]);
    }
    let output = command.output().expect("run tshark");
    assert!(
        output.status.success(),
        "tshark failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines.len(),
        frames.len(),
        "tshark read every frame:\n{text}"
    );
    const GOOD: &str = "1";
    for (name, line) in frames.keys().zip(lines) {
        let values: Vec<&str> = line.split('\t').collect();
        let field = |wanted: &str| values[fields.iter().position(|f| *f == wanted).unwrap()];
        assert_eq!(field("eth.src"), SELF, "{name}: {line}");
        assert_eq!(
            field("_ws.malformed"),
            "",
            "{name}: tshark finds it malformed: {line}"
        );
        // Expert infos of warning (0x600000) or error (0x800000) severity.
        for severity in field("_ws.expert.severity")
            .split(';')
            .filter(|s| !s.is_empty())
        {
            assert!(
                severity.parse::<u32>().unwrap() < 0x0060_0000,
                "{name}: tshark warns: {line}"
            );
        }
        let (arp, icmpv6) = match *name {
            "arp_request" => ("1", ""),
            "arp_reply" | "gratuitous_arp" => ("2", ""),
            "neighbour_solicit" => ("", "135"),
            "neighbour_advert" | "unsolicited_na" => ("", "136"),
            "gateway_data" => {
                assert_eq!(
                    field("ip.checksum.status"),
                    GOOD,
                    "{name}: IPv4 header checksum: {line}"
                );
                ("", "")
            }
            _ => ("", ""),
        };
        assert_eq!(field("arp.opcode"), arp, "{name}: {line}");
        assert_eq!(field("icmpv6.type"), icmpv6, "{name}: {line}");
        if !icmpv6.is_empty() {
            assert_eq!(
                field("icmpv6.checksum.status"),
                GOOD,
                "{name}: ICMPv6 checksum: {line}"
            );
        }
    }
}
