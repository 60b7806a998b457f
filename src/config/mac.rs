//! MAC addresses as the original's files write them: parsing Go's notations into the project's
//! [`MacAddr`] (the Ethernet side's type), and deriving the two per-tunnel MACs from a prefix and the uid
//! (spec 3.4).

use crate::mac::MacAddr;

/// Why a MAC address or prefix text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MacError {
    #[error(
        "not a MAC address: use six hex octets as 02:00:5e:00:53:01, 02-00-5e-00-53-01 or 0200.5e00.5301"
    )]
    Syntax,
    #[error("prefix length must be between 2 and 5 octets, this one has {0}")]
    PrefixLength(usize),
    #[error("octet {0:?} is not a hex byte (00 to ff)")]
    Octet(String),
    #[error(
        "can't use a multicast MAC address: the first octet ({0:02x}) must be an even number \
         (the low bit set means multicast)"
    )]
    Multicast(u8),
}

/// Parses the three EUI-48 forms of Go's `net.ParseMAC`, which the original used: `xx:xx:xx:xx:xx:xx`,
/// `xx-xx-xx-xx-xx-xx` and `xxxx.xxxx.xxxx` (Go's 8- and 20-octet forms cannot be an Ethernet address and
/// are refused).
pub fn parse_mac(text: &str) -> Result<MacAddr, MacError> {
    let hex_digits: String = match text.len() {
        17 => {
            let separator = text.as_bytes()[2];
            if separator != b':' && separator != b'-' {
                return Err(MacError::Syntax);
            }
            let groups: Vec<&str> = text.split(separator as char).collect();
            if groups.len() != 6 || groups.iter().any(|g| g.len() != 2) {
                return Err(MacError::Syntax);
            }
            groups.concat()
        }
        14 => {
            let groups: Vec<&str> = text.split('.').collect();
            if groups.len() != 3 || groups.iter().any(|g| g.len() != 4) {
                return Err(MacError::Syntax);
            }
            groups.concat()
        }
        _ => return Err(MacError::Syntax),
    };
    let mut octets = [0u8; 6];
    for (i, octet) in octets.iter_mut().enumerate() {
        let pair = hex_digits.get(2 * i..2 * i + 2).ok_or(MacError::Syntax)?;
        *octet = parse_hex_octet(pair).ok_or(MacError::Syntax)?;
    }
    Ok(MacAddr(octets))
}

/// One or two hex digits (no sign, no `0x`), as a byte.
fn parse_hex_octet(text: &str) -> Option<u8> {
    if text.is_empty() || text.len() > 2 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u8::from_str_radix(text, 16).ok()
}

/// The leading octets of a derived MAC (`WgIfMacaddrPrefix`, `VppIfMacaddrPrefix`): 2 to 5 hex octets
/// separated by `:`, the first one even (unicast).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MacPrefix {
    // INVARIANT: 2 to 5 octets, the first one even.
    octets: Vec<u8>,
}

impl MacPrefix {
    /// Parses a prefix. The original parsed each octet as a 16-bit number and kept its low byte
    /// (`193` became `93`); an octet beyond `ff` is refused here instead.
    pub fn parse(text: &str) -> Result<MacPrefix, MacError> {
        let parts: Vec<&str> = text.split(':').collect();
        if !(2..=5).contains(&parts.len()) {
            return Err(MacError::PrefixLength(parts.len()));
        }
        let octets = parts
            .iter()
            .map(|part| parse_hex_octet(part).ok_or_else(|| MacError::Octet((*part).to_owned())))
            .collect::<Result<Vec<u8>, MacError>>()?;
        if octets[0] & 1 == 1 {
            return Err(MacError::Multicast(octets[0]));
        }
        Ok(MacPrefix { octets })
    }

    /// The number of octets (2 to 5).
    pub fn len(&self) -> usize {
        self.octets.len()
    }

    /// Always false: a prefix has at least 2 octets.
    pub fn is_empty(&self) -> bool {
        self.octets.is_empty()
    }

    /// The largest uid whose bytes fit after the prefix: `256^(6 - len) - 1`.
    pub fn max_uid(&self) -> u64 {
        (1u64 << (8 * (6 - self.octets.len()))) - 1
    }

    /// The prefix followed by the low `6 - len` bytes of `uid`, big-endian. A uid above
    /// [`MacPrefix::max_uid`] loses its high bytes; validation refuses such a uid first.
    pub fn derive(&self, uid: u32) -> MacAddr {
        let uid_bytes = u64::from(uid).to_be_bytes();
        let mut mac = [0u8; 6];
        let n = self.octets.len();
        mac[..n].copy_from_slice(&self.octets);
        mac[n..].copy_from_slice(&uid_bytes[8 - (6 - n)..]);
        MacAddr(mac)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_go_forms() {
        let want = MacAddr([0x42, 0x42, 0x42, 0x0a, 0xbc, 0x01]);
        for text in ["42:42:42:0a:bc:01", "42-42-42-0A-BC-01", "4242.420a.bc01"] {
            assert_eq!(parse_mac(text), Ok(want), "{text}");
        }
        assert_eq!(want.to_string(), "42:42:42:0a:bc:01");
    }

    #[test]
    fn refuses_malformed_addresses() {
        for text in [
            "",
            "42:42:42:42:42",
            "42:42:42:42:42:4g",
            "42:42:42-42:42:42",
            "42:42:42:42:42:420",
            "4:42:42:42:42:422",
            "+2:42:42:42:42:42",
            "00:00:5e:00:53:01:00:00",
            "4242.4242.424",
            "42.42.42.42.42.42",
            "é2:42:42:42:42:4",
        ] {
            assert_eq!(parse_mac(text), Err(MacError::Syntax), "{text:?}");
        }
    }

    #[test]
    fn derives_self_and_vpp_macs_as_the_spec_example() {
        let wg = MacPrefix::parse("98:D2:93").unwrap();
        let vpp = MacPrefix::parse("A4:77:33").unwrap();
        assert_eq!(wg.derive(3).to_string(), "98:d2:93:00:00:03");
        assert_eq!(vpp.derive(3).to_string(), "a4:77:33:00:00:03");
        assert_eq!(wg.max_uid(), 16_777_215);
        assert_eq!(wg.derive(0x00ab_cdef).to_string(), "98:d2:93:ab:cd:ef");
        let two = MacPrefix::parse("02:00").unwrap();
        assert_eq!(two.max_uid(), u64::from(u32::MAX));
        assert_eq!(two.derive(0x0102_0304).to_string(), "02:00:01:02:03:04");
        let five = MacPrefix::parse("02:00:00:00:01").unwrap();
        assert_eq!(five.max_uid(), 255);
        assert_eq!(five.derive(7).to_string(), "02:00:00:00:01:07");
    }

    #[test]
    fn prefix_errors() {
        let cases = [
            ("98", MacError::PrefixLength(1)),
            ("", MacError::PrefixLength(1)),
            ("98:d2:93:00:00:00", MacError::PrefixLength(6)),
            ("99:D2:93", MacError::Multicast(0x99)),
            ("98:d2:193", MacError::Octet("193".into())),
            ("98::93", MacError::Octet("".into())),
            ("98:x2", MacError::Octet("x2".into())),
        ];
        for (text, want) in cases {
            assert_eq!(MacPrefix::parse(text), Err(want), "{text:?}");
        }
        assert!(
            MacError::Multicast(0x99)
                .to_string()
                .contains("first octet (99) must be an even number")
        );
    }

    proptest::proptest! {
        #[test]
        fn any_text_parses_or_fails_without_panic(text in ".{0,24}") {
            let _ = parse_mac(&text);
            let _ = MacPrefix::parse(&text);
        }

        #[test]
        fn every_address_survives_display_and_parse(octets in proptest::array::uniform6(0u8..)) {
            let mac = MacAddr(octets);
            proptest::prop_assert_eq!(parse_mac(&mac.to_string()), Ok(mac));
        }

        #[test]
        fn derived_macs_are_the_prefix_then_the_uid(prefix in proptest::collection::vec(0u8.., 2..=5), uid in 0u32..) {
            let mut prefix = prefix;
            prefix[0] &= 0xfe;
            let text: Vec<String> = prefix.iter().map(|o| format!("{o:02x}")).collect();
            let parsed = MacPrefix::parse(&text.join(":")).unwrap();
            let uid = (u64::from(uid) % (parsed.max_uid() + 1)) as u32;
            let mac = parsed.derive(uid).octets();
            proptest::prop_assert_eq!(&mac[..prefix.len()], &prefix[..]);
            let mut low = [0u8; 8];
            low[8 - (6 - prefix.len())..].copy_from_slice(&mac[prefix.len()..]);
            proptest::prop_assert_eq!(u64::from_be_bytes(low), u64::from(uid));
        }
    }
}
