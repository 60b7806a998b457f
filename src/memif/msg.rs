//! memif control messages: the eight 128-byte messages of protocol version 2.0, parsed from and
//! emitted into fixed frames.
//!
//! Every message is exactly [`MSG_SIZE`] bytes: a `u16` type at byte 0, then a packed body in host byte
//! order, then zeros. [`Message::parse`] never panics on any input: wrong sizes and unknown types are
//! errors. [`Message::emit`] writes a whole frame (the unused tail zeroed), so a reused buffer never leaks
//! stale bytes. Which messages carry a file descriptor is the socket's business (`socket`), not this file's.

use std::fmt;

/// Size of every control message on the wire.
pub const MSG_SIZE: usize = 128;
/// Protocol version 2.0, the only one any current implementation speaks.
pub const VERSION: u16 = 0x0200;
/// Length of the name fields (application and interface names), NUL included.
pub const NAME_LEN: usize = 32;
/// Length of the secret field, NUL included: at most 23 usable bytes.
pub const SECRET_LEN: usize = 24;
/// Length of the DISCONNECT reason, NUL included.
pub const REASON_LEN: usize = 96;

/// Byte ranges of each message, from the start of the 128-byte frame.
mod field {
    use std::ops::Range;
    pub const TYPE: Range<usize> = 0..2;

    pub const HELLO_NAME: Range<usize> = 2..34;
    pub const HELLO_MIN_VERSION: Range<usize> = 34..36;
    pub const HELLO_MAX_VERSION: Range<usize> = 36..38;
    pub const HELLO_MAX_REGION: Range<usize> = 38..40;
    pub const HELLO_MAX_M2S_RING: Range<usize> = 40..42;
    pub const HELLO_MAX_S2M_RING: Range<usize> = 42..44;
    pub const HELLO_MAX_LOG2_RING_SIZE: usize = 44;

    pub const INIT_VERSION: Range<usize> = 2..4;
    pub const INIT_ID: Range<usize> = 4..8;
    pub const INIT_MODE: usize = 8;
    pub const INIT_SECRET: Range<usize> = 9..33;
    pub const INIT_NAME: Range<usize> = 33..65;

    pub const REGION_INDEX: Range<usize> = 2..4;
    pub const REGION_SIZE: Range<usize> = 4..12;

    pub const RING_FLAGS: Range<usize> = 2..4;
    pub const RING_INDEX: Range<usize> = 4..6;
    pub const RING_REGION: Range<usize> = 6..8;
    pub const RING_OFFSET: Range<usize> = 8..12;
    pub const RING_LOG2_SIZE: usize = 12;
    pub const RING_PRIVATE_HDR_SIZE: Range<usize> = 13..15;

    pub const CONNECT_IF_NAME: Range<usize> = 2..34;

    pub const DISCONNECT_CODE: Range<usize> = 2..6;
    pub const DISCONNECT_REASON: Range<usize> = 6..102;
}

/// The message type numbers (bytes 0–1).
pub mod kind {
    pub const ACK: u16 = 1;
    pub const HELLO: u16 = 2;
    pub const INIT: u16 = 3;
    pub const ADD_REGION: u16 = 4;
    pub const ADD_RING: u16 = 5;
    pub const CONNECT: u16 = 6;
    pub const CONNECTED: u16 = 7;
    pub const DISCONNECT: u16 = 8;
}

/// ADD_RING flag bit 0: the ring carries slave-to-master (client-to-server) traffic.
pub const RING_FLAG_S2M: u16 = 1;

/// Interface mode in INIT. Only Ethernet is supported by this implementation.
pub const MODE_ETHERNET: u8 = 0;

/// Why a 128-byte frame is not a valid message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MsgError {
    /// The socket delivered a message that is not exactly 128 bytes.
    #[error("invalid message size {0} (expected 128)")]
    Size(usize),
    /// The type number is not one of the eight known ones.
    #[error("unknown message type {0}")]
    UnknownType(u16),
}

/// A short string field (name, secret, reason), stored inline without allocation.
///
/// INVARIANT: `bytes[..len]` holds no NUL and `len < N`, so it always fits its wire field with a NUL.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct CStr<const N: usize> {
    bytes: [u8; N],
    len: usize,
}

impl<const N: usize> CStr<N> {
    /// Builds the field from `s`, cut at the first NUL and to `N - 1` bytes (at a UTF-8 boundary).
    pub fn new(s: &str) -> Self {
        let s = s.split('\0').next().unwrap_or("");
        let mut len = s.len().min(N - 1);
        while !s.is_char_boundary(len) {
            len -= 1;
        }
        let mut bytes = [0u8; N];
        bytes[..len].copy_from_slice(&s.as_bytes()[..len]);
        CStr { bytes, len }
    }

    /// Reads a NUL-terminated (or full-length) field from the wire.
    fn read(field: &[u8]) -> Self {
        let len = field
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(field.len())
            .min(N - 1);
        let mut bytes = [0u8; N];
        bytes[..len].copy_from_slice(&field[..len]);
        CStr { bytes, len }
    }

    /// The raw bytes, without the NUL.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    /// The text, with invalid UTF-8 replaced.
    pub fn to_string_lossy(&self) -> String {
        String::from_utf8_lossy(self.as_bytes()).into_owned()
    }

    /// True when the field is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl<const N: usize> Default for CStr<N> {
    fn default() -> Self {
        CStr {
            bytes: [0; N],
            len: 0,
        }
    }
}

impl<const N: usize> fmt::Debug for CStr<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(self.as_bytes()))
    }
}

impl<const N: usize> fmt::Display for CStr<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(self.as_bytes()))
    }
}

/// An application or interface name (at most 31 bytes).
pub type Name = CStr<NAME_LEN>;
/// A DISCONNECT reason (at most 95 bytes).
pub type Reason = CStr<REASON_LEN>;

/// The shared secret of an interface (at most 23 bytes). Its `Debug` never shows the value.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub struct Secret(CStr<SECRET_LEN>);

impl Secret {
    /// Builds a secret; `None` when it is longer than the 23 bytes the wire can carry.
    pub fn new(s: &str) -> Option<Self> {
        (s.len() < SECRET_LEN && !s.contains('\0')).then(|| Secret(CStr::new(s)))
    }

    /// True when no secret is set.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Compares in time independent of where the first difference is.
    pub fn matches(&self, other: &Secret) -> bool {
        self.0
            .bytes
            .iter()
            .zip(other.0.bytes.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.is_empty() {
            "Secret(none)"
        } else {
            "Secret(<redacted>)"
        })
    }
}

/// HELLO: the server's name and limits, sent right after accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hello {
    pub name: Name,
    pub min_version: u16,
    pub max_version: u16,
    /// Highest region index accepted.
    pub max_region: u16,
    /// Highest M2S ring index accepted (number of rings = value + 1).
    pub max_m2s_ring: u16,
    /// Highest S2M ring index accepted.
    pub max_s2m_ring: u16,
    pub max_log2_ring_size: u8,
}

/// INIT: the client names the interface it wants and proves it knows the secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Init {
    pub version: u16,
    pub id: u32,
    pub mode: u8,
    pub secret: Secret,
    pub name: Name,
}

/// ADD_REGION: a shared-memory region (its fd travels alongside).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddRegion {
    pub index: u16,
    pub size: u64,
}

/// ADD_RING: one ring of one direction (its eventfd travels alongside).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddRing {
    /// Bit 0 ([`RING_FLAG_S2M`]) set for a slave-to-master ring.
    pub flags: u16,
    pub index: u16,
    pub region: u16,
    pub offset: u32,
    pub log2_ring_size: u8,
    /// Must be 0.
    pub private_hdr_size: u16,
}

impl AddRing {
    /// True for a slave-to-master (client-to-server) ring.
    pub fn is_s2m(&self) -> bool {
        self.flags & RING_FLAG_S2M != 0
    }
}

/// DISCONNECT: the reason the sender is about to close the channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Disconnect {
    pub code: u32,
    pub reason: Reason,
}

/// One control message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message {
    Ack,
    Hello(Hello),
    Init(Init),
    AddRegion(AddRegion),
    AddRing(AddRing),
    /// CONNECT with the client's interface name.
    Connect(Name),
    /// CONNECTED with the server's interface name.
    Connected(Name),
    Disconnect(Disconnect),
}

impl Message {
    /// Builds a DISCONNECT with `reason` (cut to 95 bytes).
    pub fn disconnect(code: u32, reason: &str) -> Self {
        Message::Disconnect(Disconnect {
            code,
            reason: Reason::new(reason),
        })
    }

    /// The type number of this message.
    pub fn kind(&self) -> u16 {
        match self {
            Message::Ack => kind::ACK,
            Message::Hello(_) => kind::HELLO,
            Message::Init(_) => kind::INIT,
            Message::AddRegion(_) => kind::ADD_REGION,
            Message::AddRing(_) => kind::ADD_RING,
            Message::Connect(_) => kind::CONNECT,
            Message::Connected(_) => kind::CONNECTED,
            Message::Disconnect(_) => kind::DISCONNECT,
        }
    }

    /// The protocol's name for this message, for logs and errors.
    pub fn name(&self) -> &'static str {
        kind_name(self.kind())
    }

    /// Parses one message as received (`bytes` is everything one `recvmsg` returned).
    pub fn parse(bytes: &[u8]) -> Result<Message, MsgError> {
        let frame: &[u8; MSG_SIZE] = bytes.try_into().map_err(|_| MsgError::Size(bytes.len()))?;
        let u16_at =
            |r: std::ops::Range<usize>| u16::from_ne_bytes([frame[r.start], frame[r.start + 1]]);
        let u32_at = |r: std::ops::Range<usize>| {
            let mut b = [0u8; 4];
            b.copy_from_slice(&frame[r]);
            u32::from_ne_bytes(b)
        };
        let msg = match u16_at(field::TYPE) {
            kind::ACK => Message::Ack,
            kind::HELLO => Message::Hello(Hello {
                name: Name::read(&frame[field::HELLO_NAME]),
                min_version: u16_at(field::HELLO_MIN_VERSION),
                max_version: u16_at(field::HELLO_MAX_VERSION),
                max_region: u16_at(field::HELLO_MAX_REGION),
                max_m2s_ring: u16_at(field::HELLO_MAX_M2S_RING),
                max_s2m_ring: u16_at(field::HELLO_MAX_S2M_RING),
                max_log2_ring_size: frame[field::HELLO_MAX_LOG2_RING_SIZE],
            }),
            kind::INIT => Message::Init(Init {
                version: u16_at(field::INIT_VERSION),
                id: u32_at(field::INIT_ID),
                mode: frame[field::INIT_MODE],
                secret: Secret(CStr::read(&frame[field::INIT_SECRET])),
                name: Name::read(&frame[field::INIT_NAME]),
            }),
            kind::ADD_REGION => {
                let mut size = [0u8; 8];
                size.copy_from_slice(&frame[field::REGION_SIZE]);
                Message::AddRegion(AddRegion {
                    index: u16_at(field::REGION_INDEX),
                    size: u64::from_ne_bytes(size),
                })
            }
            kind::ADD_RING => Message::AddRing(AddRing {
                flags: u16_at(field::RING_FLAGS),
                index: u16_at(field::RING_INDEX),
                region: u16_at(field::RING_REGION),
                offset: u32_at(field::RING_OFFSET),
                log2_ring_size: frame[field::RING_LOG2_SIZE],
                private_hdr_size: u16_at(field::RING_PRIVATE_HDR_SIZE),
            }),
            kind::CONNECT => Message::Connect(Name::read(&frame[field::CONNECT_IF_NAME])),
            kind::CONNECTED => Message::Connected(Name::read(&frame[field::CONNECT_IF_NAME])),
            kind::DISCONNECT => Message::Disconnect(Disconnect {
                code: u32_at(field::DISCONNECT_CODE),
                reason: Reason::read(&frame[field::DISCONNECT_REASON]),
            }),
            other => return Err(MsgError::UnknownType(other)),
        };
        Ok(msg)
    }

    /// Writes the whole 128-byte frame of this message, zeroing every byte it does not use.
    pub fn emit(&self, frame: &mut [u8; MSG_SIZE]) {
        frame.fill(0);
        frame[field::TYPE].copy_from_slice(&self.kind().to_ne_bytes());
        match self {
            Message::Ack => {}
            Message::Hello(h) => {
                put_str(&mut frame[field::HELLO_NAME], h.name.as_bytes());
                frame[field::HELLO_MIN_VERSION].copy_from_slice(&h.min_version.to_ne_bytes());
                frame[field::HELLO_MAX_VERSION].copy_from_slice(&h.max_version.to_ne_bytes());
                frame[field::HELLO_MAX_REGION].copy_from_slice(&h.max_region.to_ne_bytes());
                frame[field::HELLO_MAX_M2S_RING].copy_from_slice(&h.max_m2s_ring.to_ne_bytes());
                frame[field::HELLO_MAX_S2M_RING].copy_from_slice(&h.max_s2m_ring.to_ne_bytes());
                frame[field::HELLO_MAX_LOG2_RING_SIZE] = h.max_log2_ring_size;
            }
            Message::Init(i) => {
                frame[field::INIT_VERSION].copy_from_slice(&i.version.to_ne_bytes());
                frame[field::INIT_ID].copy_from_slice(&i.id.to_ne_bytes());
                frame[field::INIT_MODE] = i.mode;
                put_str(&mut frame[field::INIT_SECRET], i.secret.0.as_bytes());
                put_str(&mut frame[field::INIT_NAME], i.name.as_bytes());
            }
            Message::AddRegion(r) => {
                frame[field::REGION_INDEX].copy_from_slice(&r.index.to_ne_bytes());
                frame[field::REGION_SIZE].copy_from_slice(&r.size.to_ne_bytes());
            }
            Message::AddRing(r) => {
                frame[field::RING_FLAGS].copy_from_slice(&r.flags.to_ne_bytes());
                frame[field::RING_INDEX].copy_from_slice(&r.index.to_ne_bytes());
                frame[field::RING_REGION].copy_from_slice(&r.region.to_ne_bytes());
                frame[field::RING_OFFSET].copy_from_slice(&r.offset.to_ne_bytes());
                frame[field::RING_LOG2_SIZE] = r.log2_ring_size;
                frame[field::RING_PRIVATE_HDR_SIZE]
                    .copy_from_slice(&r.private_hdr_size.to_ne_bytes());
            }
            Message::Connect(name) | Message::Connected(name) => {
                put_str(&mut frame[field::CONNECT_IF_NAME], name.as_bytes());
            }
            Message::Disconnect(d) => {
                frame[field::DISCONNECT_CODE].copy_from_slice(&d.code.to_ne_bytes());
                put_str(&mut frame[field::DISCONNECT_REASON], d.reason.as_bytes());
            }
        }
    }
}

/// The protocol's name of a message type number.
pub fn kind_name(kind: u16) -> &'static str {
    match kind {
        kind::ACK => "ACK",
        kind::HELLO => "HELLO",
        kind::INIT => "INIT",
        kind::ADD_REGION => "ADD_REGION",
        kind::ADD_RING => "ADD_RING",
        kind::CONNECT => "CONNECT",
        kind::CONNECTED => "CONNECTED",
        kind::DISCONNECT => "DISCONNECT",
        _ => "unknown",
    }
}

/// Copies a string (without NUL) into a zeroed field; the invariant of [`CStr`] keeps room for the NUL.
fn put_str(field: &mut [u8], s: &[u8]) {
    field[..s.len()].copy_from_slice(s);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A frame as DPDK 22.11 sends HELLO (values from the spec), little-endian.
    fn dpdk_hello() -> [u8; MSG_SIZE] {
        let mut f = [0u8; MSG_SIZE];
        f[0] = 2;
        f[2..15].copy_from_slice(b"DPDK 22.11.11");
        f[34..36].copy_from_slice(&0x0200u16.to_le_bytes());
        f[36..38].copy_from_slice(&0x0200u16.to_le_bytes());
        f[38..40].copy_from_slice(&255u16.to_le_bytes());
        f[40..42].copy_from_slice(&255u16.to_le_bytes());
        f[42..44].copy_from_slice(&255u16.to_le_bytes());
        f[44] = 14;
        f
    }

    fn roundtrip(msg: Message) -> [u8; MSG_SIZE] {
        let mut frame = [0xa5u8; MSG_SIZE];
        msg.emit(&mut frame);
        assert_eq!(Message::parse(&frame), Ok(msg));
        frame
    }

    #[test]
    fn hello_parse_and_emit_match_dpdk_bytes() {
        let bytes = dpdk_hello();
        let hello = Hello {
            name: Name::new("DPDK 22.11.11"),
            min_version: VERSION,
            max_version: VERSION,
            max_region: 255,
            max_m2s_ring: 255,
            max_s2m_ring: 255,
            max_log2_ring_size: 14,
        };
        assert_eq!(Message::parse(&bytes), Ok(Message::Hello(hello)));
        assert_eq!(roundtrip(Message::Hello(hello)), bytes);
    }

    #[test]
    fn init_layout_matches_spec_offsets() {
        let init = Init {
            version: VERSION,
            id: 0x0102_0304,
            mode: MODE_ETHERNET,
            secret: Secret::new("s3cret").unwrap(),
            name: Name::new("DPDK 22.11.11"),
        };
        let f = roundtrip(Message::Init(init));
        assert_eq!(&f[0..2], &3u16.to_ne_bytes());
        assert_eq!(&f[2..4], &0x0200u16.to_ne_bytes());
        assert_eq!(&f[4..8], &0x0102_0304u32.to_ne_bytes());
        assert_eq!(f[8], 0);
        assert_eq!(&f[9..16], b"s3cret\0");
        assert_eq!(&f[33..46], b"DPDK 22.11.11");
        assert!(
            f[65..].iter().all(|&b| b == 0),
            "the tail must be zeroed, not stale"
        );
    }

    #[test]
    fn region_ring_connect_disconnect_layouts() {
        let f = roundtrip(Message::AddRegion(AddRegion {
            index: 1,
            size: 4_227_328,
        }));
        assert_eq!(&f[2..4], &1u16.to_ne_bytes());
        assert_eq!(&f[4..12], &4_227_328u64.to_ne_bytes());

        let ring = AddRing {
            flags: 0,
            index: 0,
            region: 0,
            offset: 16_512,
            log2_ring_size: 10,
            private_hdr_size: 0,
        };
        let f = roundtrip(Message::AddRing(ring));
        assert_eq!(&f[0..2], &5u16.to_ne_bytes());
        assert_eq!(&f[8..12], &16_512u32.to_ne_bytes());
        assert_eq!(f[12], 10);

        let f = roundtrip(Message::Connected(Name::new("net_memif0")));
        assert_eq!(&f[0..2], &7u16.to_ne_bytes());
        assert_eq!(&f[2..13], b"net_memif0\0");

        let f = roundtrip(Message::disconnect(0, "Incorrect secret"));
        assert_eq!(&f[0..2], &8u16.to_ne_bytes());
        assert_eq!(&f[6..23], b"Incorrect secret\0");
        roundtrip(Message::Ack);
        roundtrip(Message::Connect(Name::new("memif0/0")));
    }

    #[test]
    fn strings_are_cut_to_fit_with_a_nul() {
        let long = "x".repeat(200);
        let f = roundtrip(Message::disconnect(7, &long));
        assert_eq!(f[6 + 95], 0);
        assert_eq!(Name::new(&long).as_bytes().len(), 31);
        // A full field without NUL from a sloppy peer is read as 31 bytes, never past the field.
        let mut f = [0u8; MSG_SIZE];
        f[0] = kind::CONNECT as u8;
        f[2..34].fill(b'a');
        let Ok(Message::Connect(name)) = Message::parse(&f) else {
            panic!("CONNECT expected")
        };
        assert_eq!(name.as_bytes().len(), 31);
        // Multi-byte characters are never split.
        assert_eq!(Name::new(&"é".repeat(20)).as_bytes().len(), 30);
    }

    #[test]
    fn secrets_longer_than_23_bytes_are_refused_and_never_printed() {
        assert!(Secret::new(&"k".repeat(23)).is_some());
        assert!(Secret::new(&"k".repeat(24)).is_none());
        let s = Secret::new("hunter2").unwrap();
        assert!(!format!("{s:?}").contains("hunter2"));
        assert!(s.matches(&Secret::new("hunter2").unwrap()));
        assert!(!s.matches(&Secret::new("hunter3").unwrap()));
        assert!(!s.matches(&Secret::default()));
    }

    #[test]
    fn wrong_size_and_unknown_type_are_errors() {
        assert_eq!(Message::parse(&[0u8; 127]), Err(MsgError::Size(127)));
        assert_eq!(Message::parse(&[0u8; 129]), Err(MsgError::Size(129)));
        assert_eq!(Message::parse(&[]), Err(MsgError::Size(0)));
        let mut f = [0u8; MSG_SIZE];
        assert_eq!(Message::parse(&f), Err(MsgError::UnknownType(0)));
        f[0] = 9;
        assert_eq!(Message::parse(&f), Err(MsgError::UnknownType(9)));
    }

    proptest! {
        #[test]
        fn parse_never_panics_and_reemits_what_it_read(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Ok(msg) = Message::parse(&bytes) {
                let mut frame = [0u8; MSG_SIZE];
                msg.emit(&mut frame);
                prop_assert_eq!(Message::parse(&frame), Ok(msg));
            }
        }

        #[test]
        fn any_well_typed_frame_parses(kind in 1u16..=8, body in proptest::collection::vec(any::<u8>(), 126)) {
            let mut frame = kind.to_ne_bytes().to_vec();
            frame.extend_from_slice(&body);
            prop_assert!(Message::parse(&frame).is_ok());
        }
    }
}
