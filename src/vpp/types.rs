//! The VPP API types shared by several messages: MAC addresses, IP addresses and prefixes (`address`,
//! `prefix`, the 16-byte `address_union`), `fib_path` with its always-full label stack, `ip_route`,
//! `ip_neighbor`, and the enums and flag sets, each with the width VPP gives it.
//!
//! Every type serialises (serde) with VPP's field names and vpp-papi's textual forms (a MAC as
//! `"aa:bb:cc:dd:ee:ff"`, an address as `"192.0.2.1"`, a prefix as `"192.0.2.0/24"`, enums as numbers),
//! which is what the conformance tests compare and what debug logs show.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::{Serialize, Serializer};

use super::codec::{DecodeError, DecodeErrorKind, Decoder, EncodeError, Encoder};

/// Declares a VPP enum of a given width with an `Unknown(raw)` arm, so every wire value survives a round trip.
macro_rules! vpp_enum {
    ($(#[$meta:meta])* pub enum $name:ident: $raw:ty { $($(#[$vmeta:meta])* $variant:ident = $value:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
            /// A value this build does not name.
            Unknown($raw),
        }
        impl From<$raw> for $name {
            fn from(v: $raw) -> Self {
                match v {
                    $($value => Self::$variant,)+
                    other => Self::Unknown(other),
                }
            }
        }
        impl From<$name> for $raw {
            fn from(v: $name) -> Self {
                match v {
                    $($name::$variant => $value,)+
                    $name::Unknown(other) => other,
                }
            }
        }
        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                <$raw>::from(*self).serialize(s)
            }
        }
    };
}

vpp_enum! {
    /// `memif_role` (u32).
    pub enum MemifRole: u32 { Master = 0, Slave = 1, }
}
vpp_enum! {
    /// `memif_mode` (u32).
    pub enum MemifMode: u32 { Ethernet = 0, Ip = 1, PuntInject = 2, }
}
vpp_enum! {
    /// `l2_port_type` (u32).
    pub enum L2PortType: u32 { Normal = 0, Bvi = 1, UuFwd = 2, }
}
vpp_enum! {
    /// `if_type` (u32).
    pub enum IfType: u32 { Hardware = 0, Sub = 1, P2p = 2, Pipe = 3, }
}
vpp_enum! {
    /// `link_duplex` (u32).
    pub enum LinkDuplex: u32 { Unspecified = 0, Half = 1, Full = 2, }
}
vpp_enum! {
    /// `fib_path_type` (u32).
    pub enum FibPathType: u32 {
        Normal = 0, Local = 1, Drop = 2, UdpEncap = 3, BierImp = 4, IcmpUnreach = 5, IcmpProhibit = 6,
        SourceLookup = 7, Dvr = 8, InterfaceRx = 9, Classify = 10,
    }
}
vpp_enum! {
    /// `fib_path_nh_proto` (u32).
    pub enum FibPathNhProto: u32 { Ip4 = 0, Ip6 = 1, Mpls = 2, Ethernet = 3, Bier = 4, }
}

/// `if_status_flags` (u32 flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
pub struct IfStatusFlags(pub u32);

impl IfStatusFlags {
    /// Administratively up (the only flag a client sets).
    pub const ADMIN_UP: Self = Self(1);
    /// The link is up (reported by VPP).
    pub const LINK_UP: Self = Self(2);

    /// True when every bit of `other` is set.
    pub fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }
}

/// `ip_neighbor_flags` (u8 flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
pub struct IpNeighborFlags(pub u8);

impl IpNeighborFlags {
    /// No flags.
    pub const NONE: Self = Self(0);
    /// A static entry (never aged out).
    pub const STATIC: Self = Self(1);
    /// Do not install a /32 or /128 FIB entry for the neighbour.
    pub const NO_FIB_ENTRY: Self = Self(2);

    /// True when every bit of `other` is set.
    pub fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }
}

impl std::ops::BitOr for IpNeighborFlags {
    type Output = Self;
    fn bitor(self, rhs: Self) -> Self {
        Self(self.0 | rhs.0)
    }
}

pub use crate::mac::MacAddr;

/// `mac_address` on the wire: the six bytes as they are.
pub(crate) trait MacCodec: Sized {
    fn encode(&self, e: &mut Encoder<'_>);
    fn decode(d: &mut Decoder<'_>, field: &'static str) -> Result<Self, DecodeError>;
}

impl MacCodec for MacAddr {
    fn encode(&self, e: &mut Encoder<'_>) {
        e.bytes(&self.0);
    }
    fn decode(d: &mut Decoder<'_>, field: &'static str) -> Result<Self, DecodeError> {
        Ok(MacAddr(d.array(field)?))
    }
}

/// `address`: a u8 family (0 IPv4, 1 IPv6) and a 16-byte union (17 bytes).
pub(crate) fn encode_address(e: &mut Encoder<'_>, a: &IpAddr) {
    match a {
        IpAddr::V4(v4) => {
            e.u8(0);
            e.bytes(&AddressUnion::from(IpAddr::V4(*v4)).0);
        }
        IpAddr::V6(v6) => {
            e.u8(1);
            e.bytes(&v6.octets());
        }
    }
}

pub(crate) fn decode_address(
    d: &mut Decoder<'_>,
    field: &'static str,
) -> Result<IpAddr, DecodeError> {
    let af = d.u8(field)?;
    let un: [u8; 16] = d.array(field)?;
    match af {
        0 => Ok(IpAddr::V4(Ipv4Addr::new(un[0], un[1], un[2], un[3]))),
        1 => Ok(IpAddr::V6(Ipv6Addr::from(un))),
        other => Err(d.error(field, DecodeErrorKind::BadAddressFamily(other))),
    }
}

/// `prefix`: an `address` and a u8 length (18 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Prefix {
    /// The network address (send it masked: VPP's route handler does not mask host bits).
    pub address: IpAddr,
    /// The prefix length.
    pub len: u8,
}

impl Prefix {
    /// The host prefix of `ip`: /32 for IPv4, /128 for IPv6.
    pub fn host(ip: IpAddr) -> Self {
        Self {
            address: ip,
            len: if ip.is_ipv4() { 32 } else { 128 },
        }
    }

    pub(crate) fn encode(&self, e: &mut Encoder<'_>) {
        encode_address(e, &self.address);
        e.u8(self.len);
    }
    pub(crate) fn decode(d: &mut Decoder<'_>, field: &'static str) -> Result<Self, DecodeError> {
        Ok(Self {
            address: decode_address(d, field)?,
            len: d.u8(field)?,
        })
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.address, self.len)
    }
}

impl Serialize for Prefix {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// `address_union`: 16 bytes holding an IPv4 address (first 4 bytes, rest zero) or an IPv6 address; which
/// one is said elsewhere (for `fib_path`, by `proto`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct AddressUnion(pub [u8; 16]);

impl From<IpAddr> for AddressUnion {
    fn from(ip: IpAddr) -> Self {
        let mut un = [0u8; 16];
        match ip {
            IpAddr::V4(v4) => un[..4].copy_from_slice(&v4.octets()),
            IpAddr::V6(v6) => un = v6.octets(),
        }
        Self(un)
    }
}

impl Serialize for AddressUnion {
    /// As vpp-papi's widest member: `{"ip6": "<the 16 bytes as an IPv6 address>"}`.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(1))?;
        m.serialize_entry("ip6", &Ipv6Addr::from(self.0))?;
        m.end()
    }
}

/// `fib_mpls_label` (7 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
pub struct FibMplsLabel {
    /// 1 for the uniform mode (TTL and EXP copied from the inner header), 0 for pipe.
    pub is_uniform: u8,
    /// The 20-bit label value.
    pub label: u32,
    /// Time to live.
    pub ttl: u8,
    /// Experimental (traffic class) bits.
    pub exp: u8,
}

/// `fib_path_nh` (28 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
pub struct FibPathNh {
    /// The next-hop address; `FibPath::proto` says which family.
    pub address: AddressUnion,
    /// For MPLS next hops.
    pub via_label: u32,
    /// A VPP object (e.g. a UDP encap) for paths of that type.
    pub obj_id: u32,
    /// For classify paths.
    pub classify_table_index: u32,
}

/// Labels in a `fib_path`, always all present on the wire.
pub const FIB_PATH_LABELS: usize = 16;

/// `fib_path` (167 bytes, whatever `n_labels` says: the 16 labels are always encoded).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct FibPath {
    /// The outgoing interface (~0 for a recursive path).
    pub sw_if_index: u32,
    /// The table in which to resolve the next hop.
    pub table_id: u32,
    /// RPF id for paths that pop to multicast (0 or ~0 when unused).
    pub rpf_id: u32,
    /// Weight among the route's paths (UCMP).
    pub weight: u8,
    /// Lower is preferred.
    pub preference: u8,
    /// `type` in VPP.
    #[serde(rename = "type")]
    pub path_type: FibPathType,
    /// `fib_path_flags` bits (RESOLVE_VIA_ATTACHED = 1, RESOLVE_VIA_HOST = 2, POP_PW_CW = 4).
    pub flags: u32,
    /// The family of `nh.address`.
    pub proto: FibPathNhProto,
    /// The next hop.
    pub nh: FibPathNh,
    /// How many of `label_stack` are used.
    pub n_labels: u8,
    /// Always all 16 on the wire.
    pub label_stack: [FibMplsLabel; FIB_PATH_LABELS],
}

impl FibPath {
    /// Encoded size of one path.
    pub const SIZE: usize = 167;

    /// A path straight out of `sw_if_index` with no next hop, for `family`'s address family (`via loop42`,
    /// the same as `via 0.0.0.0 loop42`): VPP marks the route *attached*, resolves the destination itself by
    /// ARP/ND on the interface, and accepts ARP replies from it.
    pub fn attached(sw_if_index: u32, family: IpAddr) -> Self {
        let unspecified = match family {
            IpAddr::V4(_) => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
            IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
        };
        Self::via_interface(sw_if_index, unspecified)
    }

    /// A path out of `sw_if_index` towards `next_hop`, with weight 1 and preference 1 (the original's
    /// values), in table 0, no labels.
    pub fn via_interface(sw_if_index: u32, next_hop: IpAddr) -> Self {
        Self {
            sw_if_index,
            table_id: 0,
            rpf_id: 0,
            weight: 1,
            preference: 1,
            path_type: FibPathType::Normal,
            flags: 0,
            proto: if next_hop.is_ipv4() {
                FibPathNhProto::Ip4
            } else {
                FibPathNhProto::Ip6
            },
            nh: FibPathNh {
                address: next_hop.into(),
                ..FibPathNh::default()
            },
            n_labels: 0,
            label_stack: [FibMplsLabel::default(); FIB_PATH_LABELS],
        }
    }

    pub(crate) fn encode(&self, e: &mut Encoder<'_>) {
        e.u32(self.sw_if_index);
        e.u32(self.table_id);
        e.u32(self.rpf_id);
        e.u8(self.weight);
        e.u8(self.preference);
        e.u32(self.path_type.into());
        e.u32(self.flags);
        e.u32(self.proto.into());
        e.bytes(&self.nh.address.0);
        e.u32(self.nh.via_label);
        e.u32(self.nh.obj_id);
        e.u32(self.nh.classify_table_index);
        e.u8(self.n_labels);
        for label in &self.label_stack {
            e.u8(label.is_uniform);
            e.u32(label.label);
            e.u8(label.ttl);
            e.u8(label.exp);
        }
    }

    pub(crate) fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        let sw_if_index = d.u32("paths.sw_if_index")?;
        let table_id = d.u32("paths.table_id")?;
        let rpf_id = d.u32("paths.rpf_id")?;
        let weight = d.u8("paths.weight")?;
        let preference = d.u8("paths.preference")?;
        let path_type = d.u32("paths.type")?.into();
        let flags = d.u32("paths.flags")?;
        let proto = d.u32("paths.proto")?.into();
        let nh = FibPathNh {
            address: AddressUnion(d.array("paths.nh.address")?),
            via_label: d.u32("paths.nh.via_label")?,
            obj_id: d.u32("paths.nh.obj_id")?,
            classify_table_index: d.u32("paths.nh.classify_table_index")?,
        };
        let n_labels = d.u8("paths.n_labels")?;
        let mut label_stack = [FibMplsLabel::default(); FIB_PATH_LABELS];
        for label in &mut label_stack {
            *label = FibMplsLabel {
                is_uniform: d.u8("paths.label_stack")?,
                label: d.u32("paths.label_stack")?,
                ttl: d.u8("paths.label_stack")?,
                exp: d.u8("paths.label_stack")?,
            };
        }
        Ok(Self {
            sw_if_index,
            table_id,
            rpf_id,
            weight,
            preference,
            path_type,
            flags,
            proto,
            nh,
            n_labels,
            label_stack,
        })
    }
}

/// `ip_route` (27 bytes plus 167 per path).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IpRoute {
    /// The VRF (0 = default).
    pub table_id: u32,
    /// Set by VPP in replies; 0 in requests.
    pub stats_index: u32,
    /// The destination.
    pub prefix: Prefix,
    /// The paths; `n_paths` on the wire is their number.
    pub paths: Vec<FibPath>,
}

impl IpRoute {
    pub(crate) fn encode(&self, e: &mut Encoder<'_>) -> Result<(), EncodeError> {
        let n_paths = e.count("route.paths", self.paths.len(), u8::MAX.into())?;
        e.u32(self.table_id);
        e.u32(self.stats_index);
        self.prefix.encode(e);
        e.u8(n_paths as u8);
        for path in &self.paths {
            path.encode(e);
        }
        Ok(())
    }

    pub(crate) fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        let table_id = d.u32("route.table_id")?;
        let stats_index = d.u32("route.stats_index")?;
        let prefix = Prefix::decode(d, "route.prefix")?;
        let n_paths = d.u8("route.n_paths")?.into();
        let n_paths = d.check_count("route.paths", n_paths, FibPath::SIZE)?;
        let paths = (0..n_paths)
            .map(|_| FibPath::decode(d))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            table_id,
            stats_index,
            prefix,
            paths,
        })
    }
}

impl Serialize for IpRoute {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("ip_route", 5)?;
        st.serialize_field("table_id", &self.table_id)?;
        st.serialize_field("stats_index", &self.stats_index)?;
        st.serialize_field("prefix", &self.prefix)?;
        st.serialize_field("n_paths", &self.paths.len())?;
        st.serialize_field("paths", &self.paths)?;
        st.end()
    }
}

/// `ip_neighbor` (28 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct IpNeighbor {
    /// The interface the neighbour is on (the BVI).
    pub sw_if_index: u32,
    /// STATIC and/or NO_FIB_ENTRY.
    pub flags: IpNeighborFlags,
    /// The neighbour's MAC.
    pub mac_address: MacAddr,
    /// The neighbour's address.
    pub ip_address: IpAddr,
}

impl IpNeighbor {
    pub(crate) fn encode(&self, e: &mut Encoder<'_>) {
        e.u32(self.sw_if_index);
        e.u8(self.flags.0);
        self.mac_address.encode(e);
        encode_address(e, &self.ip_address);
    }

    pub(crate) fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            sw_if_index: d.u32("neighbor.sw_if_index")?,
            flags: IpNeighborFlags(d.u8("neighbor.flags")?),
            mac_address: MacAddr::decode(d, "neighbor.mac_address")?,
            ip_address: decode_address(d, "neighbor.ip_address")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_parses_and_prints_lowercase() {
        let mac: MacAddr = "A4:77:33:00:00:03".parse().unwrap();
        assert_eq!(mac.0, [0xa4, 0x77, 0x33, 0, 0, 3]);
        assert_eq!(mac.to_string(), "a4:77:33:00:00:03");
        assert!("a4:77:33:00:00".parse::<MacAddr>().is_err());
        assert!("a4:77:33:00:00:03:01".parse::<MacAddr>().is_err());
        assert!("a4:77:33:00:00:0g".parse::<MacAddr>().is_err());
    }

    proptest::proptest! {
        #[test]
        fn mac_parsing_never_panics_and_round_trips(text in ".{0,24}", bytes in proptest::prelude::any::<[u8; 6]>()) {
            let _ = text.parse::<MacAddr>();
            let mac = MacAddr(bytes);
            proptest::prop_assert_eq!(mac.to_string().parse::<MacAddr>(), Ok(mac));
        }
    }

    #[test]
    fn ipv4_address_fills_the_first_four_union_bytes() {
        let mut out = Vec::new();
        encode_address(
            &mut Encoder::new(&mut out, "t"),
            &"172.22.77.33".parse().unwrap(),
        );
        assert_eq!(out.len(), 17);
        assert_eq!(&out[..5], &[0, 0xac, 0x16, 0x4d, 0x21]);
        assert!(out[5..].iter().all(|&b| b == 0));
    }

    #[test]
    fn fib_path_always_carries_sixteen_labels() {
        let mut out = Vec::new();
        FibPath::via_interface(1, "10.0.0.1".parse().unwrap())
            .encode(&mut Encoder::new(&mut out, "t"));
        assert_eq!(out.len(), FibPath::SIZE);
    }

    #[test]
    fn unknown_address_family_is_an_error() {
        let mut body = [0u8; 17];
        body[0] = 7;
        let err = decode_address(&mut Decoder::new(&body, "t"), "ip").unwrap_err();
        assert_eq!(err.kind, DecodeErrorKind::BadAddressFamily(7));
    }

    #[test]
    fn enums_keep_unknown_values() {
        assert_eq!(MemifRole::from(1), MemifRole::Slave);
        assert_eq!(u32::from(MemifRole::from(9)), 9);
    }
}
