//! Zero-copy views and parsed representations of the frames the Ethernet side handles: Ethernet II
//! (802.1Q/802.1ad tags recognised), ARP for IPv4 over Ethernet, the IPv4 and IPv6 headers, and ICMPv6
//! neighbour discovery (NS/NA with options). It knows nothing of neighbour tables or configuration.
//!
//! Every format follows the same contract, so that hostile bytes can never panic:
//! - `Packet::new_unchecked(buffer)` wraps any buffer and does nothing else.
//! - `Packet::new_checked(buffer)` succeeds only when the buffer is long enough for every fixed field and
//!   for the lengths the header itself declares; after that **no getter panics**.
//! - `Repr::parse(&packet)` never panics on a checked packet; it returns `Err` for anything outside the
//!   valid subset the representation covers (wrong hardware type, bad checksum, ...).
//! - `Repr::emit(&mut packet)` never panics into a buffer of at least `Repr::buffer_len()` bytes, and writes
//!   every byte of the header it owns. Build the packet for emitting with `new_unchecked`: a reused
//!   buffer holds stale lengths that `new_checked` would wrongly trust.

pub mod arp;
pub mod checksum;
pub mod ethernet;
pub mod icmpv6;
pub mod ipv4;
pub mod ipv6;

pub use crate::mac::MacAddr;
pub use arp::{ArpOperation, ArpPacket, ArpRepr};
pub use ethernet::{EtherType, EthernetFrame, EthernetRepr};
pub use icmpv6::{Icmpv6Packet, NdiscRepr, NeighbourFlags};
pub use ipv4::{Ipv4Packet, Ipv4Repr};
pub use ipv6::{Ipv6Packet, Ipv6Repr};

/// Why bytes could not be read as a packet. Cheap and `Copy`: it is on the hot path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The buffer is shorter than the fixed header or than a length the header declares.
    #[error("packet truncated")]
    Truncated,
    /// A field holds a value outside the subset this representation covers.
    #[error("malformed packet")]
    Malformed,
    /// The checksum does not match the contents.
    #[error("bad checksum")]
    Checksum,
}

/// The result of parsing packet bytes.
pub type Result<T> = core::result::Result<T, Error>;

/// Reads a big-endian `u16` at `at`; callers have checked the length (contract above).
fn read_u16(data: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([data[at], data[at + 1]])
}

/// Writes a big-endian `u16` at `at`.
fn write_u16(data: &mut [u8], at: usize, value: u16) {
    data[at..at + 2].copy_from_slice(&value.to_be_bytes());
}

/// Copies a fixed-size array out of `data[at..at + N]`; callers have checked the length.
fn read_array<const N: usize>(data: &[u8], at: usize) -> [u8; N] {
    let mut out = [0; N];
    out.copy_from_slice(&data[at..at + N]);
    out
}

/// Declares a protocol-number enum with an `Unknown(raw)` arm so that every value survives a round trip.
macro_rules! enum_with_unknown {
    (
        $(#[$enum_attr:meta])*
        pub enum $name:ident($ty:ty) {
            $( $(#[$variant_attr:meta])* $variant:ident = $value:expr ),+ $(,)?
        }
    ) => {
        $(#[$enum_attr])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $( $(#[$variant_attr])* $variant, )+
            /// A value this module gives no name to.
            Unknown($ty),
        }

        impl From<$ty> for $name {
            fn from(value: $ty) -> Self {
                match value {
                    $( $value => $name::$variant, )+
                    other => $name::Unknown(other),
                }
            }
        }

        impl From<$name> for $ty {
            fn from(value: $name) -> Self {
                match value {
                    $( $name::$variant => $value, )+
                    $name::Unknown(other) => other,
                }
            }
        }
    };
}
pub(crate) use enum_with_unknown;
