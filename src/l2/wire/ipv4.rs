//! The IPv4 header (RFC 791), as much as the Ethernet side needs: addresses, lengths, protocol and the
//! header checksum. Options are skipped over, never interpreted.

use std::net::Ipv4Addr;

use super::{Error, Result, checksum, read_array, read_u16, write_u16};

mod field {
    use core::ops::Range;
    pub const VER_IHL: usize = 0;
    pub const DSCP_ECN: usize = 1;
    pub const LENGTH: usize = 2;
    pub const IDENT: Range<usize> = 4..6;
    pub const FLAGS_FRAG: Range<usize> = 6..8;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: usize = 10;
    pub const SRC: usize = 12;
    pub const DST: usize = 16;
}

/// Length of a header without options.
pub const HEADER_LEN: usize = 20;

/// The IP protocol number of IGMP, the IPv4 counterpart of MLD (never carried into the tunnel).
pub const PROTOCOL_IGMP: u8 = 2;

/// A view of an IPv4 packet in any buffer.
#[derive(Debug, Clone)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// Wraps a buffer without checking it (see the module contract).
    pub const fn new_unchecked(buffer: T) -> Self {
        Ipv4Packet { buffer }
    }

    /// Wraps a buffer that holds the whole header and the whole packet its total length declares (more
    /// bytes, such as Ethernet padding, may follow).
    pub fn new_checked(buffer: T) -> Result<Self> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks the header length and the total length against each other and against the buffer.
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        let header_len = self.header_len();
        let total_len = usize::from(self.total_len());
        if header_len < HEADER_LEN || total_len < header_len {
            return Err(Error::Malformed);
        }
        if len < total_len {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    /// The version nibble (4 for a valid packet).
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }

    /// The header length in bytes (from the IHL nibble).
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::VER_IHL] & 0x0f) * 4
    }

    /// The total length (header and payload), which excludes any link-layer padding.
    pub fn total_len(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::LENGTH)
    }

    /// The packet up to its total length (without the Ethernet padding after it).
    pub fn bytes(&self) -> &[u8] {
        let buffer = self.buffer.as_ref();
        &buffer[..usize::from(self.total_len()).min(buffer.len())]
    }

    /// The time to live.
    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }

    /// The Don't Fragment flag.
    pub fn dont_fragment(&self) -> bool {
        self.buffer.as_ref()[field::FLAGS_FRAG.start] & 0x40 != 0
    }

    /// The fragment offset (in 8-byte units); non-zero for every fragment but the first.
    pub fn fragment_offset(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::FLAGS_FRAG.start) & 0x1fff
    }

    /// The protocol of the payload.
    pub fn protocol(&self) -> u8 {
        self.buffer.as_ref()[field::PROTOCOL]
    }

    /// The header checksum field.
    pub fn checksum(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// The source address.
    pub fn src_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(read_array::<4>(self.buffer.as_ref(), field::SRC))
    }

    /// The destination address.
    pub fn dst_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(read_array::<4>(self.buffer.as_ref(), field::DST))
    }

    /// True when the header checksum is correct.
    pub fn verify_checksum(&self) -> bool {
        checksum::checksum(&self.buffer.as_ref()[..self.header_len()]) == 0
    }

    /// The payload, up to the total length (padding excluded).
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..usize::from(self.total_len())]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    /// Sets the version and the header length (in bytes, a multiple of 4).
    pub fn set_version_and_header_len(&mut self, version: u8, header_len: usize) {
        self.buffer.as_mut()[field::VER_IHL] = (version << 4) | ((header_len / 4) as u8 & 0x0f);
    }

    /// Sets the total length.
    pub fn set_total_len(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::LENGTH, value);
    }

    /// Sets the time to live.
    pub fn set_ttl(&mut self, value: u8) {
        self.buffer.as_mut()[field::TTL] = value;
    }

    /// Sets the protocol.
    pub fn set_protocol(&mut self, value: u8) {
        self.buffer.as_mut()[field::PROTOCOL] = value;
    }

    /// Sets the source address.
    pub fn set_src_addr(&mut self, value: Ipv4Addr) {
        self.buffer.as_mut()[field::SRC..field::SRC + 4].copy_from_slice(&value.octets());
    }

    /// Sets the destination address.
    pub fn set_dst_addr(&mut self, value: Ipv4Addr) {
        self.buffer.as_mut()[field::DST..field::DST + 4].copy_from_slice(&value.octets());
    }

    /// Computes and stores the header checksum.
    pub fn fill_checksum(&mut self) {
        write_u16(self.buffer.as_mut(), field::CHECKSUM, 0);
        let sum = checksum::checksum(&self.buffer.as_ref()[..self.header_len()]);
        write_u16(self.buffer.as_mut(), field::CHECKSUM, sum);
    }
}

/// An IPv4 header without options, with a correct checksum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Repr {
    pub src_addr: Ipv4Addr,
    pub dst_addr: Ipv4Addr,
    pub protocol: u8,
    pub ttl: u8,
    /// Length of the payload (total length minus the header).
    pub payload_len: usize,
}

impl Ipv4Repr {
    /// Reads a checked packet: version 4 and a correct checksum, or `Err`. Options are skipped; the
    /// identification, DSCP/ECN and fragment fields are not represented (emitted as zero).
    pub fn parse<T: AsRef<[u8]>>(packet: &Ipv4Packet<T>) -> Result<Self> {
        packet.check_len()?;
        if packet.version() != 4 {
            return Err(Error::Malformed);
        }
        if !packet.verify_checksum() {
            return Err(Error::Checksum);
        }
        Ok(Ipv4Repr {
            src_addr: packet.src_addr(),
            dst_addr: packet.dst_addr(),
            protocol: packet.protocol(),
            ttl: packet.ttl(),
            payload_len: usize::from(packet.total_len()) - packet.header_len(),
        })
    }

    /// The header length: what [`Ipv4Repr::emit`] writes.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes a 20-byte header (no options) with its checksum.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Ipv4Packet<T>) {
        packet.set_version_and_header_len(4, HEADER_LEN);
        let buffer = packet.buffer.as_mut();
        buffer[field::DSCP_ECN] = 0;
        buffer[field::IDENT].fill(0);
        buffer[field::FLAGS_FRAG].fill(0);
        let total = (HEADER_LEN + self.payload_len).min(usize::from(u16::MAX)) as u16;
        packet.set_total_len(total);
        packet.set_ttl(self.ttl);
        packet.set_protocol(self.protocol);
        packet.set_src_addr(self.src_addr);
        packet.set_dst_addr(self.dst_addr);
        packet.fill_checksum();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // 10.127.111.1 -> 172.22.77.33, UDP, TTL 64, 4 payload bytes, then 2 bytes of Ethernet padding.
    static PACKET: [u8; 26] = [
        0x45, 0x00, 0x00, 0x18, 0x00, 0x00, 0x00, 0x00, 0x40, 0x11, 0x00, 0x00, //
        10, 127, 111, 1, 172, 22, 77, 33, //
        0xde, 0xad, 0xbe, 0xef, 0x00, 0x00,
    ];

    fn packet_bytes() -> [u8; 26] {
        let mut bytes = PACKET;
        let sum = checksum::checksum(&bytes[..20]);
        bytes[10..12].copy_from_slice(&sum.to_be_bytes());
        bytes
    }

    fn repr() -> Ipv4Repr {
        Ipv4Repr {
            src_addr: Ipv4Addr::new(10, 127, 111, 1),
            dst_addr: Ipv4Addr::new(172, 22, 77, 33),
            protocol: 17,
            ttl: 64,
            payload_len: 4,
        }
    }

    #[test]
    fn deconstruct() {
        let bytes = packet_bytes();
        let packet = Ipv4Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(
            (packet.version(), packet.header_len(), packet.total_len()),
            (4, 20, 24)
        );
        assert_eq!((packet.ttl(), packet.protocol()), (64, 17));
        assert_eq!(packet.src_addr(), Ipv4Addr::new(10, 127, 111, 1));
        assert_eq!(packet.dst_addr(), Ipv4Addr::new(172, 22, 77, 33));
        assert!(packet.verify_checksum());
        assert_eq!(
            packet.payload(),
            &[0xde, 0xad, 0xbe, 0xef],
            "padding is not payload"
        );
    }

    #[test]
    fn construct() {
        let mut bytes = [0xa5; 26];
        bytes[20..].copy_from_slice(&PACKET[20..]);
        bytes[1] = 0;
        bytes[4..8].fill(0);
        let mut packet = Ipv4Packet::new_unchecked(&mut bytes[..]);
        packet.set_version_and_header_len(4, 20);
        packet.set_total_len(24);
        packet.set_ttl(64);
        packet.set_protocol(17);
        packet.set_src_addr(Ipv4Addr::new(10, 127, 111, 1));
        packet.set_dst_addr(Ipv4Addr::new(172, 22, 77, 33));
        packet.fill_checksum();
        assert_eq!(bytes, packet_bytes());
    }

    #[test]
    fn parse() {
        let bytes = packet_bytes();
        assert_eq!(
            Ipv4Repr::parse(&Ipv4Packet::new_checked(&bytes[..]).unwrap()).unwrap(),
            repr()
        );
    }

    #[test]
    fn emit() {
        let mut bytes = [0xa5; 26];
        bytes[20..].copy_from_slice(&PACKET[20..]);
        repr().emit(&mut Ipv4Packet::new_unchecked(&mut bytes[..]));
        assert_eq!(bytes, packet_bytes());
    }

    #[test]
    fn inconsistent_lengths_and_checksums_are_rejected() {
        let bytes = packet_bytes();
        assert_eq!(
            Ipv4Packet::new_checked(&bytes[..19]).unwrap_err(),
            Error::Truncated
        );
        assert_eq!(
            Ipv4Packet::new_checked(&bytes[..23]).unwrap_err(),
            Error::Truncated
        );
        let mut short_ihl = bytes;
        short_ihl[0] = 0x44;
        assert_eq!(
            Ipv4Packet::new_checked(&short_ihl[..]).unwrap_err(),
            Error::Malformed
        );
        let mut short_total = bytes;
        short_total[3] = 19;
        assert_eq!(
            Ipv4Packet::new_checked(&short_total[..]).unwrap_err(),
            Error::Malformed
        );
        let mut bad_sum = bytes;
        bad_sum[11] ^= 1;
        let packet = Ipv4Packet::new_checked(&bad_sum[..]).unwrap();
        assert_eq!(Ipv4Repr::parse(&packet), Err(Error::Checksum));
        let mut version6 = bytes;
        version6[0] = 0x65;
        assert_eq!(
            Ipv4Repr::parse(&Ipv4Packet::new_checked(&version6[..]).unwrap()),
            Err(Error::Malformed)
        );
    }
}
