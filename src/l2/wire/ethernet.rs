//! Ethernet II frames. 802.1Q and 802.1ad tags are recognised by their EtherType (so they can be dropped
//! and counted by name) but not stripped: the bridge port a memif sits on carries untagged frames.

use super::{Error, MacAddr, Result, enum_with_unknown, read_array, read_u16, write_u16};

enum_with_unknown! {
    /// The EtherType field (IEEE 802.3 clause 3.2.6).
    pub enum EtherType(u16) {
        Ipv4 = 0x0800,
        Arp = 0x0806,
        /// An 802.1Q VLAN tag follows the source address.
        Vlan = 0x8100,
        Ipv6 = 0x86dd,
        /// An 802.1ad service tag (Q-in-Q) follows the source address.
        QinQ = 0x88a8,
    }
}

impl EtherType {
    /// True for the tag protocol identifiers of 802.1Q and 802.1ad.
    pub fn is_vlan_tag(self) -> bool {
        matches!(self, EtherType::Vlan | EtherType::QinQ)
    }
}

mod field {
    use core::ops::{Range, RangeFrom};
    pub const DESTINATION: Range<usize> = 0..6;
    pub const SOURCE: Range<usize> = 6..12;
    pub const ETHERTYPE: usize = 12;
    pub const PAYLOAD: RangeFrom<usize> = 14..;
}

/// Length of the Ethernet II header (no tags, no FCS: memif carries neither).
pub const HEADER_LEN: usize = field::PAYLOAD.start;

/// A view of an Ethernet II frame in any buffer.
#[derive(Debug, Clone)]
pub struct EthernetFrame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    /// Wraps a buffer without checking it (see the module contract).
    pub const fn new_unchecked(buffer: T) -> Self {
        EthernetFrame { buffer }
    }

    /// Wraps a buffer that is at least a whole header long.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let frame = Self::new_unchecked(buffer);
        frame.check_len()?;
        Ok(frame)
    }

    /// Checks that the header fits in the buffer.
    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            Err(Error::Truncated)
        } else {
            Ok(())
        }
    }

    /// Gives the buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The destination address.
    pub fn dst_addr(&self) -> MacAddr {
        MacAddr(read_array(self.buffer.as_ref(), field::DESTINATION.start))
    }

    /// The source address.
    pub fn src_addr(&self) -> MacAddr {
        MacAddr(read_array(self.buffer.as_ref(), field::SOURCE.start))
    }

    /// The EtherType.
    pub fn ethertype(&self) -> EtherType {
        EtherType::from(read_u16(self.buffer.as_ref(), field::ETHERTYPE))
    }

    /// Everything after the header, Ethernet padding included.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EthernetFrame<T> {
    /// Sets the destination address.
    pub fn set_dst_addr(&mut self, addr: MacAddr) {
        self.buffer.as_mut()[field::DESTINATION].copy_from_slice(&addr.0);
    }

    /// Sets the source address.
    pub fn set_src_addr(&mut self, addr: MacAddr) {
        self.buffer.as_mut()[field::SOURCE].copy_from_slice(&addr.0);
    }

    /// Sets the EtherType.
    pub fn set_ethertype(&mut self, ethertype: EtherType) {
        write_u16(self.buffer.as_mut(), field::ETHERTYPE, ethertype.into());
    }

    /// The payload, for writing.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::PAYLOAD]
    }
}

/// The header of an Ethernet II frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EthernetRepr {
    pub src_addr: MacAddr,
    pub dst_addr: MacAddr,
    pub ethertype: EtherType,
}

impl EthernetRepr {
    /// Reads the header of a checked frame.
    pub fn parse<T: AsRef<[u8]>>(frame: &EthernetFrame<T>) -> Result<Self> {
        frame.check_len()?;
        Ok(EthernetRepr {
            src_addr: frame.src_addr(),
            dst_addr: frame.dst_addr(),
            ethertype: frame.ethertype(),
        })
    }

    /// The header length: what [`EthernetRepr::emit`] writes.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header into the first [`HEADER_LEN`] bytes of the frame.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, frame: &mut EthernetFrame<T>) {
        frame.set_dst_addr(self.dst_addr);
        frame.set_src_addr(self.src_addr);
        frame.set_ethertype(self.ethertype);
    }

    /// The header as an array, for writing in front of a packet without a view.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut header = [0; HEADER_LEN];
        self.emit(&mut EthernetFrame::new_unchecked(&mut header[..]));
        header
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // An IPv4 frame header from the spec's scenario 21 followed by 4 payload bytes.
    static FRAME: [u8; 18] = [
        0x98, 0xd2, 0x93, 0x00, 0x00, 0x03, // dst
        0x42, 0x42, 0x42, 0x42, 0x42, 0x42, // src
        0x08, 0x00, // IPv4
        0xaa, 0xbb, 0xcc, 0xdd,
    ];
    const SELF: MacAddr = MacAddr([0x98, 0xd2, 0x93, 0, 0, 3]);
    const GATEWAY: MacAddr = MacAddr([0x42; 6]);

    fn repr() -> EthernetRepr {
        EthernetRepr {
            src_addr: GATEWAY,
            dst_addr: SELF,
            ethertype: EtherType::Ipv4,
        }
    }

    #[test]
    fn deconstruct() {
        let frame = EthernetFrame::new_checked(&FRAME[..]).unwrap();
        assert_eq!(frame.dst_addr(), SELF);
        assert_eq!(frame.src_addr(), GATEWAY);
        assert_eq!(frame.ethertype(), EtherType::Ipv4);
        assert_eq!(frame.payload(), &[0xaa, 0xbb, 0xcc, 0xdd]);
    }

    #[test]
    fn construct() {
        let mut bytes = [0xa5; 18];
        let mut frame = EthernetFrame::new_unchecked(&mut bytes[..]);
        frame.set_dst_addr(SELF);
        frame.set_src_addr(GATEWAY);
        frame.set_ethertype(EtherType::Ipv4);
        frame
            .payload_mut()
            .copy_from_slice(&[0xaa, 0xbb, 0xcc, 0xdd]);
        assert_eq!(bytes, FRAME);
    }

    #[test]
    fn parse() {
        let frame = EthernetFrame::new_checked(&FRAME[..]).unwrap();
        assert_eq!(EthernetRepr::parse(&frame).unwrap(), repr());
    }

    #[test]
    fn emit() {
        let mut bytes = [0xa5; 18];
        repr().emit(&mut EthernetFrame::new_unchecked(&mut bytes[..]));
        assert_eq!(bytes[..14], FRAME[..14]);
        assert_eq!(bytes[14..], [0xa5; 4]);
        assert_eq!(repr().to_bytes(), FRAME[..14]);
    }

    #[test]
    fn runts_are_rejected() {
        for len in 0..HEADER_LEN {
            assert_eq!(
                EthernetFrame::new_checked(&FRAME[..len]).unwrap_err(),
                Error::Truncated
            );
        }
    }

    #[test]
    fn tags_and_unknown_types_survive() {
        assert!(EtherType::from(0x8100).is_vlan_tag());
        assert!(EtherType::from(0x88a8).is_vlan_tag());
        assert_eq!(EtherType::from(0x88cc), EtherType::Unknown(0x88cc));
        assert_eq!(u16::from(EtherType::Unknown(0x88cc)), 0x88cc);
    }
}
