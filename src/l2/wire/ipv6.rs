//! The IPv6 header (RFC 8200), its extension-header chain as far as finding the upper-layer protocol,
//! and the solicited-node multicast group (RFC 4291 §2.7.1).

use std::net::Ipv6Addr;

use super::{Error, Result, read_array, read_u16, write_u16};

mod field {
    pub const VER_TC_FLOW: usize = 0;
    pub const LENGTH: usize = 4;
    pub const NEXT_HEADER: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SRC: usize = 8;
    pub const DST: usize = 24;
}

/// Length of the fixed header.
pub const HEADER_LEN: usize = 40;

/// Next-header numbers this module walks over or names.
pub mod next_header {
    /// Hop-by-Hop Options (MLD messages carry the Router Alert option in one).
    pub const HOP_BY_HOP: u8 = 0;
    /// Routing header.
    pub const ROUTING: u8 = 43;
    /// Fragment header.
    pub const FRAGMENT: u8 = 44;
    /// ICMPv6.
    pub const ICMPV6: u8 = 58;
    /// Destination Options.
    pub const DESTINATION_OPTIONS: u8 = 60;
}

/// At most this many extension headers are walked before giving up; real packets carry one or two.
const MAX_EXTENSION_HEADERS: usize = 8;

/// The solicited-node multicast group of an address: ff02::1:ff00:0/104 and its low 24 bits.
pub fn solicited_node(addr: &Ipv6Addr) -> Ipv6Addr {
    let o = addr.octets();
    Ipv6Addr::from([
        0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0xff, o[13], o[14], o[15],
    ])
}

/// ff02::1, the all-nodes group.
pub const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

/// A view of an IPv6 packet in any buffer.
#[derive(Debug, Clone)]
pub struct Ipv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv6Packet<T> {
    /// Wraps a buffer without checking it (see the module contract).
    pub const fn new_unchecked(buffer: T) -> Self {
        Ipv6Packet { buffer }
    }

    /// Wraps a buffer that holds the fixed header and the payload length it declares (more bytes, such as
    /// Ethernet padding, may follow).
    pub fn new_checked(buffer: T) -> Result<Self> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks the fixed header and the payload length against the buffer.
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN || len < self.total_len() {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    /// The version nibble (6 for a valid packet).
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_TC_FLOW] >> 4
    }

    /// The payload length (extension headers included).
    pub fn payload_len(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::LENGTH)
    }

    /// The header and payload length, which excludes any link-layer padding.
    pub fn total_len(&self) -> usize {
        HEADER_LEN + usize::from(self.payload_len())
    }

    /// The packet up to its total length (without the Ethernet padding after it).
    pub fn bytes(&self) -> &[u8] {
        let buffer = self.buffer.as_ref();
        &buffer[..self.total_len().min(buffer.len())]
    }

    /// The next header after the fixed header.
    pub fn next_header(&self) -> u8 {
        self.buffer.as_ref()[field::NEXT_HEADER]
    }

    /// The hop limit.
    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[field::HOP_LIMIT]
    }

    /// The source address.
    pub fn src_addr(&self) -> Ipv6Addr {
        Ipv6Addr::from(read_array::<16>(self.buffer.as_ref(), field::SRC))
    }

    /// The destination address.
    pub fn dst_addr(&self) -> Ipv6Addr {
        Ipv6Addr::from(read_array::<16>(self.buffer.as_ref(), field::DST))
    }

    /// The payload, up to the declared length (padding excluded).
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..self.total_len()]
    }

    /// Walks the Hop-by-Hop, Routing, Destination Options and first-fragment headers and returns the
    /// upper-layer protocol and its bytes. `Err(Malformed)` when a header runs past the payload or the
    /// chain is longer than any sensible packet has; a non-first fragment reports the Fragment header.
    pub fn upper_layer(&self) -> Result<(u8, &[u8])> {
        let mut protocol = self.next_header();
        let mut rest = self.payload();
        for _ in 0..MAX_EXTENSION_HEADERS {
            let header_len = match protocol {
                next_header::HOP_BY_HOP
                | next_header::ROUTING
                | next_header::DESTINATION_OPTIONS => {
                    let [_, units, ..] = rest else {
                        return Err(Error::Malformed);
                    };
                    8 + usize::from(*units) * 8
                }
                next_header::FRAGMENT => {
                    let [_, _, offset_high, offset_low, ..] = rest else {
                        return Err(Error::Malformed);
                    };
                    if (u16::from_be_bytes([*offset_high, *offset_low]) >> 3) != 0 {
                        return Ok((protocol, rest));
                    }
                    8
                }
                _ => return Ok((protocol, rest)),
            };
            if rest.len() < header_len {
                return Err(Error::Malformed);
            }
            protocol = rest[0];
            rest = &rest[header_len..];
        }
        Err(Error::Malformed)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv6Packet<T> {
    /// Sets version 6 with traffic class and flow label zero.
    pub fn set_version6(&mut self) {
        self.buffer.as_mut()[field::VER_TC_FLOW..field::VER_TC_FLOW + 4]
            .copy_from_slice(&[0x60, 0, 0, 0]);
    }

    /// Sets the payload length.
    pub fn set_payload_len(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::LENGTH, value);
    }

    /// Sets the next header.
    pub fn set_next_header(&mut self, value: u8) {
        self.buffer.as_mut()[field::NEXT_HEADER] = value;
    }

    /// Sets the hop limit.
    pub fn set_hop_limit(&mut self, value: u8) {
        self.buffer.as_mut()[field::HOP_LIMIT] = value;
    }

    /// Sets the source address.
    pub fn set_src_addr(&mut self, value: Ipv6Addr) {
        self.buffer.as_mut()[field::SRC..field::SRC + 16].copy_from_slice(&value.octets());
    }

    /// Sets the destination address.
    pub fn set_dst_addr(&mut self, value: Ipv6Addr) {
        self.buffer.as_mut()[field::DST..field::DST + 16].copy_from_slice(&value.octets());
    }

    /// The bytes after the fixed header, for writing.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[HEADER_LEN..]
    }
}

/// An IPv6 fixed header with traffic class and flow label zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6Repr {
    pub src_addr: Ipv6Addr,
    pub dst_addr: Ipv6Addr,
    pub next_header: u8,
    pub hop_limit: u8,
    pub payload_len: usize,
}

impl Ipv6Repr {
    /// Reads a checked packet: version 6, or `Err(Malformed)`. Traffic class and flow label are not
    /// represented (emitted as zero).
    pub fn parse<T: AsRef<[u8]>>(packet: &Ipv6Packet<T>) -> Result<Self> {
        packet.check_len()?;
        if packet.version() != 6 {
            return Err(Error::Malformed);
        }
        Ok(Ipv6Repr {
            src_addr: packet.src_addr(),
            dst_addr: packet.dst_addr(),
            next_header: packet.next_header(),
            hop_limit: packet.hop_limit(),
            payload_len: usize::from(packet.payload_len()),
        })
    }

    /// The fixed header length: what [`Ipv6Repr::emit`] writes.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the 40-byte fixed header.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Ipv6Packet<T>) {
        packet.set_version6();
        packet.set_payload_len(self.payload_len.min(usize::from(u16::MAX)) as u16);
        packet.set_next_header(self.next_header);
        packet.set_hop_limit(self.hop_limit);
        packet.set_src_addr(self.src_addr);
        packet.set_dst_addr(self.dst_addr);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // fd10:127:e00f::1 -> fd28:cb8f:4c92::33, UDP, hop limit 64, 4 payload bytes and 2 bytes of padding.
    static PACKET: [u8; 46] = [
        0x60, 0x00, 0x00, 0x00, 0x00, 0x04, 17, 64, //
        0xfd, 0x10, 0x01, 0x27, 0xe0, 0x0f, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, //
        0xfd, 0x28, 0xcb, 0x8f, 0x4c, 0x92, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x33, //
        0xde, 0xad, 0xbe, 0xef, 0x00, 0x00,
    ];

    fn repr() -> Ipv6Repr {
        Ipv6Repr {
            src_addr: "fd10:127:e00f::1".parse().unwrap(),
            dst_addr: "fd28:cb8f:4c92::33".parse().unwrap(),
            next_header: 17,
            hop_limit: 64,
            payload_len: 4,
        }
    }

    #[test]
    fn deconstruct() {
        let packet = Ipv6Packet::new_checked(&PACKET[..]).unwrap();
        assert_eq!(
            (packet.version(), packet.payload_len(), packet.total_len()),
            (6, 4, 44)
        );
        assert_eq!((packet.next_header(), packet.hop_limit()), (17, 64));
        assert_eq!(packet.src_addr(), repr().src_addr);
        assert_eq!(packet.dst_addr(), repr().dst_addr);
        assert_eq!(packet.payload(), &[0xde, 0xad, 0xbe, 0xef]);
        assert_eq!(
            packet.upper_layer().unwrap(),
            (17, &[0xde, 0xad, 0xbe, 0xef][..])
        );
    }

    #[test]
    fn construct() {
        let mut bytes = [0xa5; 46];
        bytes[40..].copy_from_slice(&PACKET[40..]);
        let mut packet = Ipv6Packet::new_unchecked(&mut bytes[..]);
        packet.set_version6();
        packet.set_payload_len(4);
        packet.set_next_header(17);
        packet.set_hop_limit(64);
        packet.set_src_addr(repr().src_addr);
        packet.set_dst_addr(repr().dst_addr);
        assert_eq!(bytes, PACKET);
    }

    #[test]
    fn parse() {
        assert_eq!(
            Ipv6Repr::parse(&Ipv6Packet::new_checked(&PACKET[..]).unwrap()).unwrap(),
            repr()
        );
    }

    #[test]
    fn emit() {
        let mut bytes = [0xa5; 46];
        bytes[40..].copy_from_slice(&PACKET[40..]);
        repr().emit(&mut Ipv6Packet::new_unchecked(&mut bytes[..]));
        assert_eq!(bytes, PACKET);
    }

    #[test]
    fn truncated_packets_are_rejected() {
        assert_eq!(
            Ipv6Packet::new_checked(&PACKET[..39]).unwrap_err(),
            Error::Truncated
        );
        assert_eq!(
            Ipv6Packet::new_checked(&PACKET[..43]).unwrap_err(),
            Error::Truncated
        );
        let mut version4 = PACKET;
        version4[0] = 0x40;
        assert_eq!(
            Ipv6Repr::parse(&Ipv6Packet::new_checked(&version4[..]).unwrap()),
            Err(Error::Malformed)
        );
    }

    #[test]
    fn walks_extension_headers_to_the_upper_layer() {
        // An MLDv2 report: Hop-by-Hop (Router Alert) then ICMPv6 type 143.
        let mut bytes = [0u8; 40 + 8 + 8];
        let mut packet = Ipv6Packet::new_unchecked(&mut bytes[..]);
        packet.set_version6();
        packet.set_payload_len(16);
        packet.set_next_header(next_header::HOP_BY_HOP);
        packet.payload_mut()[..8].copy_from_slice(&[58, 0, 5, 2, 0, 0, 1, 0]);
        packet.payload_mut()[8] = 143;
        let packet = Ipv6Packet::new_checked(&bytes[..]).unwrap();
        let (protocol, upper) = packet.upper_layer().unwrap();
        assert_eq!((protocol, upper[0]), (next_header::ICMPV6, 143));

        // A Hop-by-Hop header that claims more bytes than the payload holds.
        bytes[41] = 3;
        assert_eq!(
            Ipv6Packet::new_checked(&bytes[..]).unwrap().upper_layer(),
            Err(Error::Malformed)
        );

        // A chain that loops through Destination Options headers forever is cut off.
        let mut looping = [0u8; 40 + 8 * 9];
        let mut packet = Ipv6Packet::new_unchecked(&mut looping[..]);
        packet.set_version6();
        packet.set_payload_len(72);
        packet.set_next_header(next_header::DESTINATION_OPTIONS);
        for header in packet.payload_mut().chunks_mut(8) {
            header[0] = next_header::DESTINATION_OPTIONS;
        }
        assert_eq!(
            Ipv6Packet::new_checked(&looping[..]).unwrap().upper_layer(),
            Err(Error::Malformed)
        );
    }

    #[test]
    fn solicited_node_group() {
        let target: Ipv6Addr = "fd28:cb8f:4c92::33".parse().unwrap();
        assert_eq!(
            solicited_node(&target),
            "ff02::1:ff00:33".parse::<Ipv6Addr>().unwrap()
        );
        let target: Ipv6Addr = "fe80::42:1817:1".parse().unwrap();
        assert_eq!(
            solicited_node(&target),
            "ff02::1:ff17:1".parse::<Ipv6Addr>().unwrap()
        );
    }
}
