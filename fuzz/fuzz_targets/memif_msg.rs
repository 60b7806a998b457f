//! memif control messages as a hostile peer sends them (`memif::msg`): parsing never panics, and a
//! parsed message emits a canonical frame that parses back to the same message, whatever the buffer
//! held before.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wireguard_vpp::memif::msg::{MSG_SIZE, Message};

fuzz_target!(|data: &[u8]| {
    let Ok(msg) = Message::parse(data) else {
        return;
    };
    let mut canonical = [0xa5; MSG_SIZE];
    msg.emit(&mut canonical);
    assert_eq!(Message::parse(&canonical), Ok(msg));
    assert_eq!(&canonical[..2], &data[..2], "the type survives");

    let mut again = [0x5a; MSG_SIZE];
    msg.emit(&mut again);
    assert_eq!(again, canonical, "emit must not depend on stale bytes");

    // What the server and client log about a message.
    let _ = (msg.name(), format!("{msg:?}"));
});
