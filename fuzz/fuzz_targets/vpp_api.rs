//! VPP binary API messages as a hostile or broken VPP sends them (`vpp::codec`, `vpp::messages`,
//! `vpp::frame`): no decoder panics or allocates past what the body holds, and a decoded message
//! encodes to a canonical body that decodes to the same header and encodes to the same bytes again.
//!
//! Input: one byte choosing the message (its index in `dispatch`; new messages go at the end so the
//! corpus keeps its meaning), then the message body as the socket frame carries it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wireguard_vpp::vpp::codec::{Message, decode_message, encode_message, peek_msg_id};
use wireguard_vpp::vpp::frame::{self, HEADER_LEN};
use wireguard_vpp::vpp::messages::*;

fn round_trip<M: Message>(body: &[u8]) {
    let Ok((header, msg)) = decode_message::<M>(body) else {
        return;
    };
    assert_eq!(Some(header.msg_id), peek_msg_id(body));
    let mut canonical = Vec::new();
    if encode_message(header, &msg, &mut canonical).is_err() {
        // A string VPP sent without its NUL, or with bytes that are not UTF-8 (read with
        // replacements), cannot be sent back as it is: refused, never cut or panicked on.
        return;
    }
    let (again_header, again) = decode_message::<M>(&canonical).expect("a canonical body decodes");
    assert_eq!(again_header, header);
    let mut reencoded = Vec::new();
    encode_message(again_header, &again, &mut reencoded).expect("a canonical body re-encodes");
    assert_eq!(reencoded, canonical, "{} is not canonical", M::name());
}

/// Every message of `messages::USED` (and `sockclnt_create`), requests too: the codec is symmetric.
fn dispatch(selector: u8, body: &[u8]) {
    match selector % 35 {
        0 => round_trip::<SockclntCreate>(body),
        1 => round_trip::<SockclntCreateReply>(body),
        2 => round_trip::<SockclntDelete>(body),
        3 => round_trip::<SockclntDeleteReply>(body),
        4 => round_trip::<ControlPing>(body),
        5 => round_trip::<ControlPingReply>(body),
        6 => round_trip::<ShowVersion>(body),
        7 => round_trip::<ShowVersionReply>(body),
        8 => round_trip::<SwInterfaceDump>(body),
        9 => round_trip::<SwInterfaceDetails>(body),
        10 => round_trip::<SwInterfaceSetFlags>(body),
        11 => round_trip::<SwInterfaceSetFlagsReply>(body),
        12 => round_trip::<WantInterfaceEvents>(body),
        13 => round_trip::<WantInterfaceEventsReply>(body),
        14 => round_trip::<SwInterfaceEvent>(body),
        15 => round_trip::<MemifSocketFilenameAddDelV2>(body),
        16 => round_trip::<MemifSocketFilenameAddDelV2Reply>(body),
        17 => round_trip::<MemifCreateV2>(body),
        18 => round_trip::<MemifCreateV2Reply>(body),
        19 => round_trip::<MemifDelete>(body),
        20 => round_trip::<MemifDeleteReply>(body),
        21 => round_trip::<MemifDump>(body),
        22 => round_trip::<MemifDetails>(body),
        23 => round_trip::<MemifSocketFilenameDump>(body),
        24 => round_trip::<MemifSocketFilenameDetails>(body),
        25 => round_trip::<SwInterfaceSetL2Bridge>(body),
        26 => round_trip::<SwInterfaceSetL2BridgeReply>(body),
        27 => round_trip::<L2fibAddDel>(body),
        28 => round_trip::<L2fibAddDelReply>(body),
        29 => round_trip::<IpRouteAddDel>(body),
        30 => round_trip::<IpRouteAddDelReply>(body),
        31 => round_trip::<IpNeighborAddDel>(body),
        32 => round_trip::<IpNeighborAddDelReply>(body),
        33 => round_trip::<IpNeighborDump>(body),
        _ => round_trip::<IpNeighborDetails>(body),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    dispatch(selector, body);

    // The same bytes as a stream from the socket: a whole frame is never longer than what arrived.
    if let Ok(Some(total)) = frame::check(body) {
        assert!(total >= HEADER_LEN && total <= body.len());
    }
});
