//! ICMPv6 (RFC 4443) as far as neighbour discovery needs it: the message header with its pseudo-header
//! checksum, and Neighbour Solicitation and Advertisement (RFC 4861 §4.3, §4.4) with their options.

use std::net::Ipv6Addr;

use super::{Error, MacAddr, Result, checksum, ipv6::next_header, read_array, read_u16, write_u16};

/// ICMPv6 message types the Ethernet side distinguishes.
pub mod message {
    /// MLD query (RFC 2710).
    pub const MLD_QUERY: u8 = 130;
    /// MLDv1 report.
    pub const MLD_REPORT: u8 = 131;
    /// MLDv1 done.
    pub const MLD_DONE: u8 = 132;
    /// Router Solicitation.
    pub const ROUTER_SOLICIT: u8 = 133;
    /// Neighbour Solicitation.
    pub const NEIGHBOUR_SOLICIT: u8 = 135;
    /// Neighbour Advertisement.
    pub const NEIGHBOUR_ADVERT: u8 = 136;
    /// Redirect.
    pub const REDIRECT: u8 = 137;
    /// MLDv2 report (RFC 3810).
    pub const MLDV2_REPORT: u8 = 143;

    /// True for the neighbour-discovery messages (133 to 137), which never leave the link.
    pub fn is_neighbour_discovery(kind: u8) -> bool {
        (ROUTER_SOLICIT..=REDIRECT).contains(&kind)
    }

    /// True for the multicast listener discovery messages, which never leave the link.
    pub fn is_multicast_listener_discovery(kind: u8) -> bool {
        matches!(kind, MLD_QUERY | MLD_REPORT | MLD_DONE | MLDV2_REPORT)
    }
}

mod field {
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: usize = 2;
    pub const HEADER_END: usize = 4;
    // Neighbour Solicitation and Advertisement.
    pub const FLAGS: usize = 4;
    pub const RESERVED: core::ops::Range<usize> = 5..8;
    pub const TARGET: usize = 8;
    pub const OPTIONS: usize = 24;
}

/// Length of an NS or NA without options.
pub const NEIGHBOUR_MESSAGE_LEN: usize = field::OPTIONS;

/// Option types of RFC 4861 §4.6 used here.
mod option {
    pub const SOURCE_LLADDR: u8 = 1;
    pub const TARGET_LLADDR: u8 = 2;
    /// A link-layer address option for Ethernet: type, length 1, six address bytes.
    pub const LLADDR_LEN: usize = 8;
}

/// A view of an ICMPv6 message (exactly the message: trim the IPv6 payload first) in any buffer.
#[derive(Debug, Clone)]
pub struct Icmpv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Icmpv6Packet<T> {
    /// Wraps a buffer without checking it (see the module contract).
    pub const fn new_unchecked(buffer: T) -> Self {
        Icmpv6Packet { buffer }
    }

    /// Wraps a buffer that holds at least the 4-byte message header.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks that the message header fits in the buffer.
    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < field::HEADER_END {
            Err(Error::Truncated)
        } else {
            Ok(())
        }
    }

    /// The message type.
    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[field::TYPE]
    }

    /// The message code.
    pub fn msg_code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }

    /// The checksum field.
    pub fn checksum(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// True when the checksum over the pseudo-header and the whole message is correct.
    pub fn verify_checksum(&self, src: &Ipv6Addr, dst: &Ipv6Addr) -> bool {
        let data = self.buffer.as_ref();
        let Ok(length) = u32::try_from(data.len()) else {
            return false;
        };
        let sum = checksum::ipv6_pseudo_header(src, dst, next_header::ICMPV6, length);
        checksum::fold(checksum::accumulate(sum, data)) == 0
    }

    /// The flags byte of an NA (reserved in an NS). Needs [`NEIGHBOUR_MESSAGE_LEN`] bytes.
    fn neighbour_flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }

    /// The target address of an NS or NA. Needs [`NEIGHBOUR_MESSAGE_LEN`] bytes.
    fn target_addr(&self) -> Ipv6Addr {
        Ipv6Addr::from(read_array::<16>(self.buffer.as_ref(), field::TARGET))
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Icmpv6Packet<T> {
    /// Sets the message type.
    pub fn set_msg_type(&mut self, value: u8) {
        self.buffer.as_mut()[field::TYPE] = value;
    }

    /// Sets the message code.
    pub fn set_msg_code(&mut self, value: u8) {
        self.buffer.as_mut()[field::CODE] = value;
    }

    /// Computes and stores the checksum over the pseudo-header and the whole buffer.
    pub fn fill_checksum(&mut self, src: &Ipv6Addr, dst: &Ipv6Addr) {
        write_u16(self.buffer.as_mut(), field::CHECKSUM, 0);
        let data = self.buffer.as_ref();
        let length = u32::try_from(data.len()).unwrap_or(u32::MAX);
        let sum = checksum::ipv6_pseudo_header(src, dst, next_header::ICMPV6, length);
        let value = checksum::fold(checksum::accumulate(sum, data));
        write_u16(self.buffer.as_mut(), field::CHECKSUM, value);
    }
}

/// The flags of a Neighbour Advertisement (RFC 4861 §4.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NeighbourFlags(pub u8);

impl NeighbourFlags {
    /// R: the sender is a router.
    pub const ROUTER: NeighbourFlags = NeighbourFlags(0x80);
    /// S: the advertisement answers a solicitation.
    pub const SOLICITED: NeighbourFlags = NeighbourFlags(0x40);
    /// O: the advertisement overrides a cached link-layer address.
    pub const OVERRIDE: NeighbourFlags = NeighbourFlags(0x20);

    /// True when every flag of `other` is set.
    pub fn contains(self, other: NeighbourFlags) -> bool {
        self.0 & other.0 == other.0
    }
}

impl core::ops::BitOr for NeighbourFlags {
    type Output = NeighbourFlags;
    fn bitor(self, other: NeighbourFlags) -> NeighbourFlags {
        NeighbourFlags(self.0 | other.0)
    }
}

/// A Neighbour Solicitation or Advertisement with its link-layer address option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NdiscRepr {
    /// Neighbour Solicitation: who has `target_addr`?
    NeighbourSolicit {
        target_addr: Ipv6Addr,
        source_lladdr: Option<MacAddr>,
    },
    /// Neighbour Advertisement: `target_addr` is at `target_lladdr` (or the frame's source when absent).
    NeighbourAdvert {
        flags: NeighbourFlags,
        target_addr: Ipv6Addr,
        target_lladdr: Option<MacAddr>,
    },
}

impl NdiscRepr {
    /// Reads an NS or NA sent from `src` to `dst`: the checksum must be correct (`Err(Checksum)`), the
    /// code 0, the message at least 24 bytes, and every option well formed (a zero-length or truncated
    /// option is `Err(Malformed)`, RFC 4861 §4.6). Options are taken in any order; unknown ones are
    /// skipped, and of repeated link-layer options the first counts. Hop limit, target and addressing
    /// rules are the caller's (they depend on the IPv6 header).
    pub fn parse<T: AsRef<[u8]>>(
        packet: &Icmpv6Packet<T>,
        src: &Ipv6Addr,
        dst: &Ipv6Addr,
    ) -> Result<Self> {
        packet.check_len()?;
        let kind = packet.msg_type();
        if kind != message::NEIGHBOUR_SOLICIT && kind != message::NEIGHBOUR_ADVERT {
            return Err(Error::Malformed);
        }
        if packet.buffer.as_ref().len() < NEIGHBOUR_MESSAGE_LEN {
            return Err(Error::Truncated);
        }
        if !packet.verify_checksum(src, dst) {
            return Err(Error::Checksum);
        }
        if packet.msg_code() != 0 {
            return Err(Error::Malformed);
        }
        let wanted = if kind == message::NEIGHBOUR_SOLICIT {
            option::SOURCE_LLADDR
        } else {
            option::TARGET_LLADDR
        };
        let lladdr = find_lladdr(&packet.buffer.as_ref()[field::OPTIONS..], wanted)?;
        let target_addr = packet.target_addr();
        Ok(if kind == message::NEIGHBOUR_SOLICIT {
            NdiscRepr::NeighbourSolicit {
                target_addr,
                source_lladdr: lladdr,
            }
        } else {
            NdiscRepr::NeighbourAdvert {
                flags: NeighbourFlags(packet.neighbour_flags() & 0xe0),
                target_addr,
                target_lladdr: lladdr,
            }
        })
    }

    /// The message length: what [`NdiscRepr::emit`] writes.
    pub fn buffer_len(&self) -> usize {
        let lladdr = match self {
            NdiscRepr::NeighbourSolicit { source_lladdr, .. } => source_lladdr,
            NdiscRepr::NeighbourAdvert { target_lladdr, .. } => target_lladdr,
        };
        NEIGHBOUR_MESSAGE_LEN
            + if lladdr.is_some() {
                option::LLADDR_LEN
            } else {
                0
            }
    }

    /// Writes the message into a buffer of exactly [`NdiscRepr::buffer_len`] bytes (the checksum covers
    /// the whole buffer) with the checksum for `src` to `dst`.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        packet: &mut Icmpv6Packet<T>,
        src: &Ipv6Addr,
        dst: &Ipv6Addr,
    ) {
        let (kind, flags, target, lladdr) = match *self {
            NdiscRepr::NeighbourSolicit {
                target_addr,
                source_lladdr,
            } => (
                message::NEIGHBOUR_SOLICIT,
                0,
                target_addr,
                source_lladdr.map(|mac| (option::SOURCE_LLADDR, mac)),
            ),
            NdiscRepr::NeighbourAdvert {
                flags,
                target_addr,
                target_lladdr,
            } => (
                message::NEIGHBOUR_ADVERT,
                flags.0,
                target_addr,
                target_lladdr.map(|mac| (option::TARGET_LLADDR, mac)),
            ),
        };
        packet.set_msg_type(kind);
        packet.set_msg_code(0);
        let buffer = packet.buffer.as_mut();
        buffer[field::FLAGS] = flags;
        buffer[field::RESERVED].fill(0);
        buffer[field::TARGET..field::OPTIONS].copy_from_slice(&target.octets());
        if let Some((option_type, mac)) = lladdr {
            buffer[field::OPTIONS] = option_type;
            buffer[field::OPTIONS + 1] = 1;
            buffer[field::OPTIONS + 2..field::OPTIONS + option::LLADDR_LEN].copy_from_slice(&mac.0);
        }
        packet.fill_checksum(src, dst);
    }
}

/// Walks the options (type, length in units of 8 bytes, data) and returns the first link-layer address
/// option of type `wanted`.
fn find_lladdr(mut options: &[u8], wanted: u8) -> Result<Option<MacAddr>> {
    let mut found = None;
    while !options.is_empty() {
        let [kind, units, ..] = options else {
            return Err(Error::Malformed);
        };
        let len = usize::from(*units) * 8;
        if len == 0 || len > options.len() {
            return Err(Error::Malformed);
        }
        if *kind == wanted && found.is_none() {
            found = Some(MacAddr(read_array(options, 2)));
        }
        options = &options[len..];
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(text: &str) -> Ipv6Addr {
        text.parse().unwrap()
    }

    // The ICMPv6 part of the spec's scenario 17 NS: fd10:127:e00f::1 -> ff02::1:ff00:33 for
    // fd28:cb8f:4c92::33 with source link-layer address 42:42:42:42:42:42. Checksum from scapy.
    static NS: [u8; 32] = [
        135, 0, 0xbe, 0xde, 0, 0, 0, 0, //
        0xfd, 0x28, 0xcb, 0x8f, 0x4c, 0x92, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x33, //
        1, 1, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42,
    ];

    fn ns_repr() -> NdiscRepr {
        NdiscRepr::NeighbourSolicit {
            target_addr: addr("fd28:cb8f:4c92::33"),
            source_lladdr: Some(MacAddr([0x42; 6])),
        }
    }

    fn ns_src() -> Ipv6Addr {
        addr("fd10:127:e00f::1")
    }

    fn ns_dst() -> Ipv6Addr {
        addr("ff02::1:ff00:33")
    }

    #[test]
    fn deconstruct() {
        let packet = Icmpv6Packet::new_checked(&NS[..]).unwrap();
        assert_eq!((packet.msg_type(), packet.msg_code()), (135, 0));
        assert!(packet.verify_checksum(&ns_src(), &ns_dst()));
        assert_eq!(packet.checksum(), 0xbede);
        assert_eq!(packet.target_addr(), addr("fd28:cb8f:4c92::33"));
    }

    #[test]
    fn construct() {
        let mut bytes = [0xa5; 32];
        bytes[4..].copy_from_slice(&NS[4..]);
        let mut packet = Icmpv6Packet::new_unchecked(&mut bytes[..]);
        packet.set_msg_type(135);
        packet.set_msg_code(0);
        packet.fill_checksum(&ns_src(), &ns_dst());
        assert_eq!(bytes, NS);
    }

    #[test]
    fn parse() {
        let packet = Icmpv6Packet::new_checked(&NS[..]).unwrap();
        assert_eq!(
            NdiscRepr::parse(&packet, &ns_src(), &ns_dst()).unwrap(),
            ns_repr()
        );
    }

    #[test]
    fn emit() {
        let mut bytes = [0xa5; 32];
        ns_repr().emit(
            &mut Icmpv6Packet::new_unchecked(&mut bytes[..]),
            &ns_src(),
            &ns_dst(),
        );
        assert_eq!(bytes, NS);
    }

    #[test]
    fn advertisement_round_trip_with_and_without_option() {
        let src = addr("fd10:127:e00f::5");
        let dst = addr("fd28:cb8f:4c92::33");
        for lladdr in [Some(MacAddr([2, 0, 0, 0, 0, 0x0b])), None] {
            let repr = NdiscRepr::NeighbourAdvert {
                flags: NeighbourFlags::SOLICITED | NeighbourFlags::OVERRIDE,
                target_addr: src,
                target_lladdr: lladdr,
            };
            let mut bytes = vec![0xa5; repr.buffer_len()];
            repr.emit(&mut Icmpv6Packet::new_unchecked(&mut bytes[..]), &src, &dst);
            assert_eq!(bytes[4], 0x60);
            let packet = Icmpv6Packet::new_checked(&bytes[..]).unwrap();
            assert_eq!(NdiscRepr::parse(&packet, &src, &dst).unwrap(), repr);
        }
    }

    #[test]
    fn options_in_any_order_and_unknown_ones_are_walked() {
        // NA with a nonce option (type 14, 8 bytes) before the target link-layer address.
        let src = addr("fd10:127:e00f::5");
        let dst = addr("ff02::1");
        let mut bytes = [0u8; 24 + 8 + 8];
        bytes[0] = 136;
        bytes[4] = 0x20;
        bytes[8..24].copy_from_slice(&src.octets());
        bytes[24..32].copy_from_slice(&[14, 1, 1, 2, 3, 4, 5, 6]);
        bytes[32..40].copy_from_slice(&[2, 1, 2, 0, 0, 0, 0, 0x0b]);
        Icmpv6Packet::new_unchecked(&mut bytes[..]).fill_checksum(&src, &dst);
        let parsed =
            NdiscRepr::parse(&Icmpv6Packet::new_checked(&bytes[..]).unwrap(), &src, &dst).unwrap();
        assert_eq!(
            parsed,
            NdiscRepr::NeighbourAdvert {
                flags: NeighbourFlags::OVERRIDE,
                target_addr: src,
                target_lladdr: Some(MacAddr([2, 0, 0, 0, 0, 0x0b]))
            }
        );
    }

    #[test]
    fn bad_messages_are_rejected() {
        let check = |bytes: &[u8]| {
            NdiscRepr::parse(
                &Icmpv6Packet::new_checked(bytes).unwrap(),
                &ns_src(),
                &ns_dst(),
            )
        };
        let mut bad_sum = NS;
        bad_sum[3] ^= 1;
        assert_eq!(check(&bad_sum), Err(Error::Checksum));
        assert_eq!(check(&NS[..20]), Err(Error::Truncated));
        let fix = |mutate: fn(&mut [u8; 32])| {
            let mut bytes = NS;
            mutate(&mut bytes);
            Icmpv6Packet::new_unchecked(&mut bytes[..]).fill_checksum(&ns_src(), &ns_dst());
            check(&bytes)
        };
        assert_eq!(fix(|b| b[1] = 1), Err(Error::Malformed), "code must be 0");
        assert_eq!(
            fix(|b| b[25] = 0),
            Err(Error::Malformed),
            "zero-length option"
        );
        assert_eq!(
            fix(|b| b[25] = 2),
            Err(Error::Malformed),
            "option past the end"
        );
        assert_eq!(
            fix(|b| b[0] = 134),
            Err(Error::Malformed),
            "not an NS or NA"
        );
        assert_eq!(
            Icmpv6Packet::new_checked(&NS[..3]).unwrap_err(),
            Error::Truncated
        );
    }
}
