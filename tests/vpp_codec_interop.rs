//! Codec conformance of `src/vpp/` against VPP's own Python serializer (vpp-papi, loading VPP v26.06's JSON
//! definitions from `vpp-api/`), for every message the tunnel uses, in both directions: bytes from our
//! encoder decode in vpp-papi to the same field values, and bytes vpp-papi encodes from those values are
//! byte-identical to ours and decode in Rust to the same message. Each message's `name_crc` is also checked
//! against the definitions.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::IpAddr;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use serde::Serialize;
use serde_json::{Value, json};
use wireguard_vpp::vpp::codec::{Header, HeaderKind, Message, decode_message, encode_message};
use wireguard_vpp::vpp::messages::*;
use wireguard_vpp::vpp::types::*;

/// vpp-papi's serializer as a child process; killed when dropped, also when a test fails.
struct Papi {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Papi {
    fn start() -> Option<Self> {
        let python = common::venv_python()?;
        let root = common::project_root();
        let mut child = Command::new(python)
            .arg(root.join("scripts/vpp/papi_codec.py"))
            .arg(root.join("vpp-api"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start papi_codec.py");
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut papi = Self {
            child,
            stdin,
            stdout,
        };
        assert_eq!(papi.read(), json!({"ready": true}));
        Some(papi)
    }

    fn read(&mut self) -> Value {
        let mut line = String::new();
        self.stdout
            .read_line(&mut line)
            .expect("read from papi_codec.py");
        serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("papi_codec.py answered {line:?}: {e}"))
    }

    fn call(&mut self, request: Value) -> Value {
        writeln!(self.stdin, "{request}").expect("write to papi_codec.py");
        let answer = self.read();
        if let Some(error) = answer.get("error") {
            panic!("vpp-papi failed on {request}: {error}");
        }
        answer
    }
}

impl Drop for Papi {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn from_hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

/// The header fields vpp-papi shows for a message of this shape.
fn papi_header<M: Message>(h: Header) -> Value {
    match M::HEADER {
        HeaderKind::ClientAndContext => {
            json!({"_vl_msg_id": h.msg_id, "client_index": h.client_index, "context": h.context})
        }
        HeaderKind::Context => json!({"_vl_msg_id": h.msg_id, "context": h.context}),
        HeaderKind::Client => json!({"_vl_msg_id": h.msg_id, "client_index": h.client_index}),
    }
}

/// Checks one message value both ways against vpp-papi.
fn conforms<M: Message + Serialize + PartialEq + std::fmt::Debug>(papi: &mut Papi, msg: &M) {
    let name = M::name();
    let header = Header {
        msg_id: 0x1234,
        client_index: 0x8000_0001,
        context: 0x00c0_ffee,
    };
    let fields = serde_json::to_value(msg).expect("serialise");
    let fields = if fields.is_null() { json!({}) } else { fields };

    let crc = papi.call(json!({"op": "crc", "name": name}));
    assert_eq!(
        crc["name_crc"],
        M::NAME_CRC,
        "{name}: the CRC differs from VPP's definition"
    );

    let mut ours = Vec::new();
    encode_message(header, msg, &mut ours).expect("encode");
    let decoded = papi.call(json!({"op": "unpack", "name": name, "hex": to_hex(&ours)}));
    assert_eq!(
        decoded["fields"], fields,
        "{name}: vpp-papi reads our bytes as other values"
    );
    assert_eq!(
        decoded["header"],
        papi_header::<M>(header),
        "{name}: header"
    );

    let packed = papi.call(
        json!({"op": "pack", "name": name, "header": papi_header::<M>(header), "fields": fields}),
    );
    let theirs = from_hex(packed["hex"].as_str().expect("hex string"));
    assert_eq!(
        to_hex(&theirs),
        to_hex(&ours),
        "{name}: vpp-papi encodes other bytes"
    );
    let (their_header, their_msg) = decode_message::<M>(&theirs).expect("decode vpp-papi's bytes");
    assert_eq!(
        &their_msg, msg,
        "{name}: we read vpp-papi's bytes as another message"
    );
    assert_eq!(their_header.msg_id, header.msg_id);
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("address")
}

fn mac(s: &str) -> MacAddr {
    s.parse().expect("MAC")
}

#[test]
fn memclnt_messages_conform() {
    let Some(mut papi) = Papi::start() else {
        return;
    };
    conforms(
        &mut papi,
        &SockclntCreate {
            name: "wireguard-vpp home".into(),
        },
    );
    conforms(
        &mut papi,
        &SockclntCreateReply {
            response: 0,
            index: 0x8000_0001,
            message_table: vec![
                MessageTableEntry {
                    index: 15,
                    name: "sockclnt_create_455fb9c4".into(),
                },
                MessageTableEntry {
                    index: 864,
                    name: "x".repeat(63),
                },
            ],
        },
    );
    conforms(&mut papi, &SockclntDelete { index: 0x8000_0001 });
    conforms(&mut papi, &SockclntDeleteReply { response: 1 });
    conforms(&mut papi, &ControlPing);
    conforms(
        &mut papi,
        &ControlPingReply {
            retval: 0,
            client_index: 0x8000_0001,
            vpe_pid: 4242,
        },
    );
    conforms(&mut papi, &ShowVersion);
    conforms(
        &mut papi,
        &ShowVersionReply {
            retval: 0,
            program: "vpe".into(),
            version: "26.06-release".into(),
            build_date: "2026-06-30T12:00:00".into(),
            build_directory: "/vpp/build-root".into(),
        },
    );
}

#[test]
fn interface_messages_conform() {
    let Some(mut papi) = Papi::start() else {
        return;
    };
    conforms(&mut papi, &SwInterfaceDump::by_name("loop42"));
    conforms(&mut papi, &SwInterfaceDump::default());
    let mut details = SwInterfaceDetails::named(3, "memif3/3");
    details.l2_address = mac("a4:77:33:00:00:03");
    details.flags = IfStatusFlags(3);
    details.if_type = IfType::Sub;
    details.link_duplex = LinkDuplex::Full;
    details.link_speed = 10_000_000;
    details.link_mtu = 9000;
    details.mtu = [9000, 1500, 1280, 0];
    details.sub_number_of_tags = 2;
    details.sub_outer_vlan_id = 100;
    details.b_dmac = mac("02:00:00:00:00:01");
    details.interface_dev_type = "memif".into();
    details.tag = "wireguard-vpp:home".into();
    conforms(&mut papi, &details);
    conforms(
        &mut papi,
        &SwInterfaceSetFlags {
            sw_if_index: 2,
            flags: IfStatusFlags::ADMIN_UP,
        },
    );
    conforms(&mut papi, &SwInterfaceSetFlagsReply { retval: -2 });
    conforms(
        &mut papi,
        &WantInterfaceEvents {
            enable_disable: 1,
            pid: 31337,
        },
    );
    conforms(&mut papi, &WantInterfaceEventsReply { retval: 0 });
    conforms(
        &mut papi,
        &SwInterfaceEvent {
            pid: 31337,
            sw_if_index: 2,
            flags: IfStatusFlags::LINK_UP,
            deleted: true,
        },
    );
}

#[test]
fn memif_messages_conform() {
    let Some(mut papi) = Papi::start() else {
        return;
    };
    conforms(
        &mut papi,
        &MemifSocketFilenameAddDelV2 {
            is_add: true,
            socket_id: 3,
            socket_filename: "/var/run/wggo-vpp/home.sock".into(),
        },
    );
    conforms(
        &mut papi,
        &MemifSocketFilenameAddDelV2 {
            is_add: false,
            socket_id: 3,
            socket_filename: String::new(),
        },
    );
    conforms(
        &mut papi,
        &MemifSocketFilenameAddDelV2Reply {
            retval: -116,
            socket_id: 3,
        },
    );
    let create = MemifCreateV2 {
        role: MemifRole::Slave,
        mode: MemifMode::Ethernet,
        rx_queues: 1,
        tx_queues: 1,
        id: 3,
        socket_id: 3,
        ring_size: 1024,
        buffer_size: 2048,
        no_zero_copy: true,
        use_dma: false,
        hw_addr: mac("a4:77:33:00:00:03"),
        secret: "s3cr3t-of-23-bytes-long".into(),
    };
    conforms(&mut papi, &create);
    conforms(
        &mut papi,
        &MemifCreateV2 {
            secret: String::new(),
            mode: MemifMode::Ip,
            ..create
        },
    );
    conforms(
        &mut papi,
        &MemifCreateV2Reply {
            retval: 0,
            sw_if_index: 2,
        },
    );
    conforms(&mut papi, &MemifDelete { sw_if_index: 2 });
    conforms(&mut papi, &MemifDeleteReply { retval: -2 });
    conforms(&mut papi, &MemifDump);
    conforms(
        &mut papi,
        &MemifDetails {
            sw_if_index: 2,
            hw_addr: mac("a4:77:33:00:00:03"),
            id: 3,
            role: MemifRole::Slave,
            mode: MemifMode::Ethernet,
            zero_copy: true,
            socket_id: 3,
            ring_size: 1024,
            buffer_size: 2048,
            flags: IfStatusFlags(3),
            if_name: "memif3/3".into(),
        },
    );
    conforms(&mut papi, &MemifSocketFilenameDump);
    conforms(
        &mut papi,
        &MemifSocketFilenameDetails {
            socket_id: 3,
            socket_filename: "/var/run/wggo-vpp/home.sock".into(),
        },
    );
}

#[test]
fn l2_messages_conform() {
    let Some(mut papi) = Papi::start() else {
        return;
    };
    conforms(
        &mut papi,
        &SwInterfaceSetL2Bridge {
            rx_sw_if_index: 2,
            bd_id: 4242,
            port_type: L2PortType::Normal,
            shg: 0,
            enable: true,
        },
    );
    conforms(
        &mut papi,
        &SwInterfaceSetL2Bridge {
            rx_sw_if_index: 1,
            bd_id: 16_777_215,
            port_type: L2PortType::Bvi,
            shg: 3,
            enable: false,
        },
    );
    conforms(&mut papi, &SwInterfaceSetL2BridgeReply { retval: -152 });
    conforms(
        &mut papi,
        &L2fibAddDel {
            mac: mac("98:d2:93:00:00:03"),
            bd_id: 4242,
            sw_if_index: 2,
            is_add: true,
            static_mac: false,
            filter_mac: true,
            bvi_mac: false,
        },
    );
    conforms(&mut papi, &L2fibAddDelReply { retval: 0 });
}

#[test]
fn ip_route_messages_conform_with_full_label_stacks() {
    let Some(mut papi) = Papi::start() else {
        return;
    };
    let host = IpRouteAddDel {
        is_add: true,
        is_multipath: true,
        route: IpRoute {
            table_id: 0,
            stats_index: 0,
            prefix: Prefix::host(ip("172.22.77.33")),
            paths: vec![FibPath::via_interface(1, ip("172.22.77.33"))],
        },
    };
    conforms(&mut papi, &host);
    let mut labelled = FibPath::via_interface(7, ip("fe80::42:1817:1"));
    labelled.n_labels = 3;
    for (i, label) in labelled.label_stack.iter_mut().enumerate() {
        *label = FibMplsLabel {
            is_uniform: (i % 2) as u8,
            label: 16 + i as u32 * 1000,
            ttl: 64,
            exp: (i % 8) as u8,
        };
    }
    labelled.path_type = FibPathType::Local;
    labelled.flags = 2;
    labelled.nh.via_label = 0xfffff;
    labelled.nh.obj_id = 9;
    labelled.nh.classify_table_index = u32::MAX;
    let multi = IpRouteAddDel {
        is_add: false,
        is_multipath: false,
        route: IpRoute {
            table_id: 42,
            stats_index: 12,
            prefix: Prefix {
                address: ip("fd28:cb8f:4c92::"),
                len: 48,
            },
            paths: vec![labelled, FibPath::via_interface(1, ip("fd10:127:e00f::1"))],
        },
    };
    conforms(&mut papi, &multi);
    conforms(
        &mut papi,
        &IpRouteAddDelReply {
            retval: -171,
            stats_index: 12,
        },
    );
}

#[test]
fn ip_neighbor_messages_conform() {
    let Some(mut papi) = Papi::start() else {
        return;
    };
    for (address, flags) in [
        ("172.22.77.33", IpNeighborFlags::STATIC),
        (
            "fd28:cb8f:4c92::33",
            IpNeighborFlags::STATIC | IpNeighborFlags::NO_FIB_ENTRY,
        ),
        ("fe80::42:1817:1", IpNeighborFlags::NONE),
    ] {
        let neighbor = IpNeighbor {
            sw_if_index: 1,
            flags,
            mac_address: mac("98:d2:93:00:00:03"),
            ip_address: ip(address),
        };
        conforms(
            &mut papi,
            &IpNeighborAddDel {
                is_add: true,
                neighbor,
            },
        );
        conforms(
            &mut papi,
            &IpNeighborAddDel {
                is_add: false,
                neighbor,
            },
        );
    }
    conforms(
        &mut papi,
        &IpNeighborAddDelReply {
            retval: 0,
            stats_index: 7,
        },
    );
}
