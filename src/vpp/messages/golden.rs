//! The worked byte examples of the spec (encoded by vpp-papi 2.4.2 from the v26.06 JSON), both ways:
//! our encoder must produce exactly these bytes, and our decoder must read them back to the same value.
//! Also: hostile bytes never panic any decoder.

use std::net::IpAddr;

use proptest::prelude::*;

use super::*;
use crate::vpp::codec::{DecodeError, Header, Message, decode_message, encode_message};
use crate::vpp::types::*;

const CLIENT: u32 = 0x8000_0001;

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// Encodes, compares with `expected`, decodes back and compares with `msg`.
fn four_ways<M: Message + PartialEq + std::fmt::Debug>(
    msg: M,
    msg_id: u16,
    context: u32,
    expected: &str,
) {
    let expected = hex(expected);
    let header = Header {
        msg_id,
        client_index: CLIENT,
        context,
    };
    let mut out = Vec::new();
    encode_message(header, &msg, &mut out).unwrap();
    assert_eq!(out, expected, "{} encodes differently", M::name());
    let (decoded_header, decoded) = decode_message::<M>(&expected).unwrap();
    assert_eq!(decoded, msg);
    assert_eq!(decoded_header.msg_id, msg_id);
    assert_eq!(decoded_header.context, context);
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn sockclnt_create() {
    let msg = SockclntCreate {
        name: "raw-client".into(),
    };
    let expected = "000f00c0ffee7261772d636c69656e74".to_owned() + &"00".repeat(54);
    four_ways(msg, 15, 0x00c0_ffee, &expected);
}

#[test]
fn control_ping() {
    four_ways(ControlPing, 23, 3, "00178000000100000003");
}

#[test]
fn sw_interface_dump_by_name() {
    four_ways(
        SwInterfaceDump::by_name("loop42"),
        156,
        3,
        "009c8000000100000003ffffffff01000000066c6f6f703432",
    );
}

#[test]
fn memif_socket_filename_add() {
    let msg = MemifSocketFilenameAddDelV2 {
        is_add: true,
        socket_id: 3,
        socket_filename: "/var/run/wggo-vpp/home.sock".into(),
    };
    four_ways(
        msg,
        91,
        1,
        "005b800000010000000101000000030000001b2f7661722f72756e2f7767676f 2d7670702f686f6d652e736f636b",
    );
}

#[test]
fn memif_create_v2() {
    let msg = MemifCreateV2 {
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
        hw_addr: "a4:77:33:00:00:03".parse().unwrap(),
        secret: "s3cr3t".into(),
    };
    four_ways(
        msg,
        95,
        2,
        "005f800000010000000200000001000000000101000000030000000300000400
         08000100a4773300000373336372337400000000000000000000000000000000 0000",
    );
}

#[test]
fn sw_interface_set_flags() {
    let msg = SwInterfaceSetFlags {
        sw_if_index: 2,
        flags: IfStatusFlags::ADMIN_UP,
    };
    four_ways(msg, 142, 3, "008e80000001000000030000000200000001");
}

#[test]
fn sw_interface_set_l2_bridge() {
    let msg = SwInterfaceSetL2Bridge {
        rx_sw_if_index: 2,
        bd_id: 4242,
        port_type: L2PortType::Normal,
        shg: 0,
        enable: true,
    };
    four_ways(
        msg,
        275,
        4,
        "011380000001000000040000000200001092000000000001",
    );
}

#[test]
fn ip_route_add_del_host_route() {
    let msg = IpRouteAddDel {
        is_add: true,
        is_multipath: true,
        route: IpRoute {
            table_id: 0,
            stats_index: 0,
            prefix: Prefix::host(ip("172.22.77.33")),
            paths: vec![FibPath::via_interface(1, ip("172.22.77.33"))],
        },
    };
    four_ways(
        msg,
        377,
        5,
        &("017980000001000000050101000000000000000000ac164d2100000000000000
          0000000000200100000001000000000000000001010000000000000000000000
          00ac164d21"
            .to_owned()
            + &"00".repeat(206 - 69)),
    );
}

#[test]
fn ip_neighbor_add_del_v4_and_v6() {
    let mac = "98:d2:93:00:00:03".parse().unwrap();
    let v4 = IpNeighborAddDel {
        is_add: true,
        neighbor: IpNeighbor {
            sw_if_index: 1,
            flags: IpNeighborFlags::STATIC,
            mac_address: mac,
            ip_address: ip("172.22.77.33"),
        },
    };
    four_ways(
        v4,
        467,
        6,
        "01d3800000010000000601000000010198d29300000300ac164d210000000000 00000000000000",
    );
    let v6 = IpNeighborAddDel {
        is_add: true,
        neighbor: IpNeighbor {
            sw_if_index: 1,
            flags: IpNeighborFlags::STATIC,
            mac_address: mac,
            ip_address: ip("fd28:cb8f:4c92::33"),
        },
    };
    four_ways(
        v6,
        467,
        6,
        "01d3800000010000000601000000010198d29300000301fd28cb8f4c92000000 00000000000033",
    );
}

#[test]
fn l2fib_add_del() {
    let msg = L2fibAddDel {
        mac: "98:d2:93:00:00:03".parse().unwrap(),
        bd_id: 4242,
        sw_if_index: 2,
        is_add: true,
        static_mac: false,
        filter_mac: false,
        bvi_mac: false,
    };
    four_ways(
        msg,
        300,
        7,
        "012c800000010000000798d293000003000010920000000201000000",
    );
}

#[test]
fn memif_create_v2_reply_decodes() {
    let (header, reply) =
        decode_message::<MemifCreateV2Reply>(&hex("0060000000020000000000000002")).unwrap();
    assert_eq!(header.msg_id, 96);
    assert_eq!(header.context, 2);
    assert_eq!(
        reply,
        MemifCreateV2Reply {
            retval: 0,
            sw_if_index: 2
        }
    );
}

#[test]
fn a_secret_longer_than_23_bytes_is_refused_not_truncated() {
    let mut msg = MemifCreateV2 {
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
        hw_addr: MacAddr::default(),
        secret: "x".repeat(24),
    };
    let mut out = Vec::new();
    assert!(encode_message(Header::default(), &msg, &mut out).is_err());
    msg.secret.pop();
    out.clear();
    assert!(encode_message(Header::default(), &msg, &mut out).is_ok());
}

#[test]
fn a_truncated_reply_names_message_and_field() {
    let err = decode_message::<MemifCreateV2Reply>(&hex("00600000000200000000")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "memif_create_v2_reply.sw_if_index: truncated: needs 4 bytes, 0 left"
    );
}

fn decode_any(bytes: &[u8]) -> Vec<Result<(), DecodeError>> {
    fn one<M: Message>(b: &[u8]) -> Result<(), DecodeError> {
        decode_message::<M>(b).map(drop)
    }
    vec![
        one::<SockclntCreate>(bytes),
        one::<SockclntCreateReply>(bytes),
        one::<SockclntDeleteReply>(bytes),
        one::<ControlPingReply>(bytes),
        one::<ShowVersionReply>(bytes),
        one::<SwInterfaceDump>(bytes),
        one::<SwInterfaceDetails>(bytes),
        one::<SwInterfaceEvent>(bytes),
        one::<MemifSocketFilenameAddDelV2>(bytes),
        one::<MemifSocketFilenameAddDelV2Reply>(bytes),
        one::<MemifCreateV2Reply>(bytes),
        one::<MemifDetails>(bytes),
        one::<MemifSocketFilenameDetails>(bytes),
        one::<IpRouteAddDel>(bytes),
        one::<IpRouteAddDelReply>(bytes),
        one::<IpNeighborAddDel>(bytes),
        one::<IpNeighborAddDelReply>(bytes),
        one::<L2fibAddDel>(bytes),
        one::<SwInterfaceSetL2BridgeReply>(bytes),
    ]
}

proptest! {
    #[test]
    fn hostile_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = decode_any(&bytes);
    }

    #[test]
    fn hostile_counts_never_panic(count in any::<u16>(), tail in proptest::collection::vec(any::<u8>(), 0..300)) {
        // sockclnt_create_reply with an arbitrary table count and too few entries.
        let mut body = hex("0010 00000000 00000001 00000000 80000001");
        body.extend_from_slice(&count.to_be_bytes());
        body.extend_from_slice(&tail);
        let _ = decode_message::<SockclntCreateReply>(&body);
        // ip_route_add_del with an arbitrary n_paths.
        let mut route = hex("0179 80000001 00000005 01 01 00000000 00000000 00 ac164d21 000000000000000000000000 20");
        route.push(count as u8);
        route.extend_from_slice(&tail);
        let _ = decode_message::<IpRouteAddDel>(&route);
    }

    #[test]
    fn neighbour_round_trips(v6 in any::<[u8; 16]>(), mac in any::<[u8; 6]>(), flags in 0u8..4, is_v4 in any::<bool>()) {
        let ip_address = if is_v4 { IpAddr::from([v6[0], v6[1], v6[2], v6[3]]) } else { IpAddr::from(v6) };
        let msg = IpNeighborAddDel {
            is_add: true,
            neighbor: IpNeighbor { sw_if_index: 9, flags: IpNeighborFlags(flags), mac_address: MacAddr(mac), ip_address },
        };
        let mut out = Vec::new();
        encode_message(Header::default(), &msg, &mut out).unwrap();
        prop_assert_eq!(decode_message::<IpNeighborAddDel>(&out).unwrap().1, msg);
    }
}

fn fib_path() -> impl Strategy<Value = FibPath> {
    (
        (
            any::<u32>(),
            any::<u32>(),
            any::<u32>(),
            any::<u8>(),
            any::<u8>(),
            0u32..12,
            any::<u32>(),
            0u32..6,
        ),
        (
            any::<[u8; 16]>(),
            any::<u32>(),
            any::<u32>(),
            any::<u32>(),
            any::<u8>(),
        ),
        proptest::collection::vec((any::<u8>(), any::<u32>(), any::<u8>(), any::<u8>()), 16),
    )
        .prop_map(
            |(
                (sw, table, rpf, weight, pref, ty, flags, proto),
                (nh, via, obj, cls, n_labels),
                labels,
            )| {
                let mut label_stack = [FibMplsLabel::default(); FIB_PATH_LABELS];
                for (slot, (is_uniform, label, ttl, exp)) in label_stack.iter_mut().zip(labels) {
                    *slot = FibMplsLabel {
                        is_uniform,
                        label,
                        ttl,
                        exp,
                    };
                }
                FibPath {
                    sw_if_index: sw,
                    table_id: table,
                    rpf_id: rpf,
                    weight,
                    preference: pref,
                    path_type: ty.into(),
                    flags,
                    proto: proto.into(),
                    nh: FibPathNh {
                        address: AddressUnion(nh),
                        via_label: via,
                        obj_id: obj,
                        classify_table_index: cls,
                    },
                    n_labels,
                    label_stack,
                }
            },
        )
}

fn round_trip<M: Message + PartialEq + std::fmt::Debug>(msg: &M) -> Result<(), TestCaseError> {
    let header = Header {
        msg_id: 7,
        client_index: 9,
        context: 11,
    };
    let mut out = Vec::new();
    encode_message(header, msg, &mut out).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let (decoded_header, decoded) =
        decode_message::<M>(&out).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(&decoded, msg);
    prop_assert_eq!(decoded_header.msg_id, 7);
    Ok(())
}

proptest! {
    #[test]
    fn routes_round_trip(
        paths in proptest::collection::vec(fib_path(), 0..4),
        v6 in any::<[u8; 16]>(),
        len in any::<u8>(),
        flags in any::<(bool, bool, u32, u32)>(),
    ) {
        let (is_add, is_multipath, table_id, stats_index) = flags;
        let prefix = Prefix { address: IpAddr::from(v6), len };
        round_trip(&IpRouteAddDel { is_add, is_multipath, route: IpRoute { table_id, stats_index, prefix, paths } })?;
    }

    #[test]
    fn strings_round_trip(
        name in "[ -~]{0,63}",
        tag in "[ -~]{0,63}",
        filename in "[ -~]{0,300}",
        secret in "[ -~]{0,23}",
    ) {
        let mut details = SwInterfaceDetails::named(5, &name);
        details.tag = tag;
        round_trip(&details)?;
        round_trip(&MemifSocketFilenameAddDelV2 { is_add: true, socket_id: 5, socket_filename: filename.clone() })?;
        round_trip(&SwInterfaceDump::by_name(&filename))?;
        round_trip(&MemifCreateV2 {
            role: MemifRole::Slave,
            mode: MemifMode::Ip,
            rx_queues: 2,
            tx_queues: 3,
            id: 5,
            socket_id: 6,
            ring_size: 2048,
            buffer_size: 4096,
            no_zero_copy: false,
            use_dma: true,
            hw_addr: MacAddr([2, 0, 0, 0, 0, 5]),
            secret,
        })?;
    }
}
