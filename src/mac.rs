//! The 48-bit Ethernet (MAC) address, the one type for it in every room (the Ethernet side, VPP's API,
//! the configuration), and the standard IP multicast mappings onto it.

use core::fmt;
use core::str::FromStr;
use std::net::{Ipv4Addr, Ipv6Addr};

/// A 48-bit Ethernet address.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// ff:ff:ff:ff:ff:ff.
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);
    /// 00:00:00:00:00:00, the unknown target hardware address of an ARP request.
    pub const ZERO: MacAddr = MacAddr([0; 6]);
    /// 33:33:00:00:00:01, the Ethernet group of the IPv6 all-nodes address ff02::1.
    pub const IPV6_ALL_NODES: MacAddr = MacAddr([0x33, 0x33, 0, 0, 0, 1]);

    /// The six bytes in wire order.
    pub const fn octets(self) -> [u8; 6] {
        self.0
    }

    /// True for ff:ff:ff:ff:ff:ff.
    pub fn is_broadcast(self) -> bool {
        self == Self::BROADCAST
    }

    /// True for group addresses (the I/G bit, the low bit of the first octet), broadcast included.
    pub fn is_multicast(self) -> bool {
        self.0[0] & 0x01 != 0
    }

    /// True for individual addresses other than 00:00:00:00:00:00: the only ones a neighbour can have.
    pub fn is_unicast(self) -> bool {
        !self.is_multicast() && self != Self::ZERO
    }

    /// True for the 33:33:xx:xx:xx:xx groups that carry IPv6 multicast (RFC 2464 §7).
    pub fn is_ipv6_multicast(self) -> bool {
        self.0[0] == 0x33 && self.0[1] == 0x33
    }

    /// True for the 01:00:5e:00:00:00/25 groups that carry IPv4 multicast (RFC 1112 §6.4).
    pub fn is_ipv4_multicast(self) -> bool {
        self.0[0] == 0x01 && self.0[1] == 0x00 && self.0[2] == 0x5e && self.0[3] & 0x80 == 0
    }

    /// The Ethernet group of an IPv6 multicast address: 33:33 and its low 32 bits (RFC 2464 §7).
    pub fn from_ipv6_multicast(group: Ipv6Addr) -> MacAddr {
        let o = group.octets();
        MacAddr([0x33, 0x33, o[12], o[13], o[14], o[15]])
    }

    /// The Ethernet group of an IPv4 multicast address: 01:00:5e and its low 23 bits (RFC 1112 §6.4).
    pub fn from_ipv4_multicast(group: Ipv4Addr) -> MacAddr {
        let o = group.octets();
        MacAddr([0x01, 0x00, 0x5e, o[1] & 0x7f, o[2], o[3]])
    }
}

impl From<[u8; 6]> for MacAddr {
    fn from(octets: [u8; 6]) -> Self {
        MacAddr(octets)
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

/// As its text (`98:d2:93:00:00:03`), as vpp-papi shows a `mac_address`.
impl serde::Serialize for MacAddr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Why a string is not a MAC address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{0}` is not a MAC address; write six hex octets separated by `:`, e.g. 02:00:00:00:00:01"
)]
pub struct ParseMacError(pub String);

impl FromStr for MacAddr {
    type Err = ParseMacError;

    /// Parses the canonical `aa:bb:cc:dd:ee:ff` form (either case). Accepting the other notations of the
    /// original's configuration files is the configuration's job.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let error = || ParseMacError(text.to_owned());
        let mut octets = [0u8; 6];
        let mut parts = text.split(':');
        for octet in &mut octets {
            let part = parts.next().ok_or_else(error)?;
            // from_str_radix alone would take a sign ("+f").
            if part.len() != 2 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(error());
            }
            *octet = u8::from_str_radix(part, 16).map_err(|_| error())?;
        }
        if parts.next().is_some() {
            return Err(error());
        }
        Ok(MacAddr(octets))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_the_canonical_form() {
        let mac: MacAddr = "98:D2:93:00:00:03".parse().unwrap();
        assert_eq!(mac.0, [0x98, 0xd2, 0x93, 0, 0, 3]);
        assert_eq!(mac.to_string(), "98:d2:93:00:00:03");
        for bad in [
            "",
            "98:d2:93:00:00",
            "98:d2:93:00:00:03:04",
            "98:d2:93:00:00:0g",
            "98-d2-93-00-00-03",
            "9:d2:93:00:00:003",
            "+1:d2:93:00:00:03",
        ] {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad}");
        }
    }

    proptest::proptest! {
        #[test]
        fn any_text_parses_without_panic_and_printing_round_trips(text in ".{0,24}", octets in proptest::prelude::any::<[u8; 6]>()) {
            let _ = text.parse::<MacAddr>();
            let mac = MacAddr(octets);
            proptest::prop_assert_eq!(mac.to_string().parse::<MacAddr>(), Ok(mac));
        }
    }

    #[test]
    fn classifies_groups() {
        assert!(MacAddr::BROADCAST.is_multicast() && MacAddr::BROADCAST.is_broadcast());
        assert!(!MacAddr::ZERO.is_unicast());
        assert!(MacAddr([0x02, 0, 0, 0, 0, 9]).is_unicast());
        assert!(MacAddr([0x33, 0x33, 0xff, 0, 0, 0x33]).is_ipv6_multicast());
        assert!(MacAddr([0x01, 0, 0x5e, 0, 0, 5]).is_ipv4_multicast());
        assert!(!MacAddr([0x01, 0, 0x5e, 0x80, 0, 5]).is_ipv4_multicast());
    }

    #[test]
    fn maps_ip_multicast_groups() {
        let ospf: Ipv4Addr = "224.0.0.5".parse().unwrap();
        assert_eq!(
            MacAddr::from_ipv4_multicast(ospf).to_string(),
            "01:00:5e:00:00:05"
        );
        // The high bit of the second octet is lost (32 groups share a MAC).
        let high: Ipv4Addr = "239.129.2.3".parse().unwrap();
        assert_eq!(
            MacAddr::from_ipv4_multicast(high).to_string(),
            "01:00:5e:01:02:03"
        );
        let ospf6: Ipv6Addr = "ff02::5".parse().unwrap();
        assert_eq!(
            MacAddr::from_ipv6_multicast(ospf6).to_string(),
            "33:33:00:00:00:05"
        );
        let solicited: Ipv6Addr = "ff02::1:ff00:33".parse().unwrap();
        assert_eq!(
            MacAddr::from_ipv6_multicast(solicited).to_string(),
            "33:33:ff:00:00:33"
        );
    }
}
