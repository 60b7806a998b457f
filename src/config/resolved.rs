//! [`TunnelConfig`]: one tunnel's configuration after loading and validation, in the terms the rest
//! of the program works with (networks, MACs, an install method), not the files' strings.

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;

use ipnet::{Ipv4Net, Ipv6Net};

pub use super::file::{FamilySwitches, NeighborFlagSwitches};
use crate::mac::MacAddr;

/// A validated tunnel configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelConfig {
    /// The sanitised interface name (UAPI socket, memif socket file, log span).
    pub name: String,
    /// The interface file it came from (or what a renderer names as its source).
    pub interface_file: PathBuf,
    /// The gateway file it came from.
    pub gateway_file: PathBuf,
    /// memif socket id and memif interface id (VPP's `memif<uid>/<uid>`); 1 to the prefix's maximum.
    pub uid: u32,
    /// memif shared secret; `None` when empty.
    pub secret: Option<MemifSecret>,
    /// VPP bridge domain id, 1 to [`BRIDGE_ID_MAX`].
    pub bridge_id: u32,
    /// The WireGuard side's MAC: source of every frame sent to VPP (selfMAC).
    pub self_mac: MacAddr,
    /// The MAC given to VPP's memif interface (`memif_create.hw_addr`).
    pub vpp_memif_mac: MacAddr,
    /// The BVI's MAC: the default destination of frames sent to VPP (gwMAC).
    pub gateway_mac: MacAddr,
    /// Response and learning ranges, as networks (host bits cleared).
    pub ranges: Ranges,
    /// Which response ranges to announce on each memif connection. The interface file's one flag
    /// (`GratuitousARPOnStartUP`) sets both; a `WireGuardVppTunnel` sets each on its own.
    pub announce: Announce,
    /// The tunnel's MTU when the interface file sets one (`Mtu`); otherwise it is derived from the BVI.
    pub mtu: Option<u16>,
    /// What to install in VPP besides the memif.
    pub install: Install,
    /// `<VPP_MEMIF_SOCKET_DIR>/<name>.sock`; at most [`SOCKET_PATH_MAX`] bytes.
    pub memif_socket: PathBuf,
    /// `VPP_API_SOCKET_PATH`.
    pub vpp_api_socket: PathBuf,
    /// `WGVPP_MEMIF_PEER_UID`: the only uid allowed to connect to the memif socket.
    pub memif_peer_uid: Option<u32>,
}

/// The startup announcement, per family.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Announce {
    /// A gratuitous ARP for each address of the IPv4 response ranges.
    pub arp: bool,
    /// An unsolicited neighbour advertisement for each address of the IPv6 response ranges.
    pub ndp: bool,
}

/// The range of `Mtu`: IPv6's minimum link MTU up to a jumbo frame's.
pub const MTU_RANGE: std::ops::RangeInclusive<u16> = 1280..=9000;

/// The largest VPP bridge domain id (VPP keeps them in 24 bits).
pub const BRIDGE_ID_MAX: u32 = (1 << 24) - 1;

/// The longest memif socket path: `sun_path` and VPP's `socket_filename` hold 108 bytes with a NUL.
pub const SOCKET_PATH_MAX: usize = 107;

/// The four range lists of the interface file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ranges {
    /// `IPv4ArpResponseRanges`: addresses behind the tunnel, answered by ARP.
    pub ipv4_response: Vec<Ipv4Net>,
    /// `IPv6NdpNeighAdvRanges`: addresses behind the tunnel, answered by NDP.
    pub ipv6_response: Vec<Ipv6Net>,
    /// `IPv4ArpLearningRanges`: VPP-side destinations whose MAC is learned by ARP.
    pub ipv4_learning: Vec<Ipv4Net>,
    /// `IPv6NdpLearningRanges`: VPP-side destinations whose MAC is learned by NDP.
    pub ipv6_learning: Vec<Ipv6Net>,
}

/// How routes and neighbour entries are installed in VPP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InstallMethod {
    /// Nothing is installed (`none` or empty).
    #[default]
    None,
    /// The VPP binary API.
    Api,
    /// The `vppctl` program.
    Vppctl,
}

impl InstallMethod {
    /// The value as written in `VppBridgeLoop_InstallMethod`.
    pub fn as_str(self) -> &'static str {
        match self {
            InstallMethod::None => "none",
            InstallMethod::Api => "api",
            InstallMethod::Vppctl => "vppctl",
        }
    }
}

/// Routes and neighbours to install on the BVI. With [`InstallMethod::None`] every switch is off.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Install {
    pub method: InstallMethod,
    /// The vppctl program (used with [`InstallMethod::Vppctl`]).
    pub vppctl_binary: String,
    /// The BVI's name (e.g. `loop42`); may be empty when its index is given and the method is `api`.
    pub bvi_name: String,
    /// The BVI's sw_if_index; `None` means look it up by [`Install::bvi_name`] (exact match).
    pub bvi_sw_if_index: Option<u32>,
    /// Host routes for the /32 and /128 response ranges, by family.
    pub routes: FamilySwitches,
    /// Neighbour entries after each ARP reply or NA, by family.
    pub neighbours: FamilySwitches,
    /// Flags of the neighbour entries.
    pub neighbour_flags: NeighborFlagSwitches,
}

impl FamilySwitches {
    /// Whether the switch for `addr`'s family is on (IPv6 split at fe80::/10).
    pub fn covers(&self, addr: IpAddr) -> bool {
        match addr {
            IpAddr::V4(_) => self.ipv4,
            IpAddr::V6(v6) if is_link_local(v6) => self.ipv6_link_local,
            IpAddr::V6(_) => self.ipv6,
        }
    }

    /// Whether any switch is on.
    pub fn any(&self) -> bool {
        self.ipv4 || self.ipv6 || self.ipv6_link_local
    }
}

impl NeighborFlagSwitches {
    /// `ip_neighbor_flags` bits: static = 1, no-fib-entry = 2.
    pub fn bits(&self) -> u8 {
        u8::from(self.is_static) | (u8::from(self.no_fib_entry) << 1)
    }
}

/// True inside fe80::/10.
pub(crate) fn is_link_local(addr: std::net::Ipv6Addr) -> bool {
    addr.segments()[0] & 0xffc0 == 0xfe80
}

impl TunnelConfig {
    /// VPP's name of the memif interface, `memif<uid>/<uid>`.
    pub fn vpp_memif_name(&self) -> String {
        format!("memif{0}/{0}", self.uid)
    }
}

/// The memif shared secret (at most 23 bytes, no NUL). Its `Debug` form never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct MemifSecret(String);

impl MemifSecret {
    /// The most bytes VPP and memif keep (a 24-byte field with its NUL).
    pub const MAX_LEN: usize = 23;

    pub(crate) fn new(secret: String) -> MemifSecret {
        MemifSecret(secret)
    }

    /// The secret's text, for the memif INIT check and `memif_create`.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for MemifSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MemifSecret(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn family_switches_split_ipv6_at_fe80_10() {
        let only_ll = FamilySwitches {
            ipv4: false,
            ipv6: false,
            ipv6_link_local: true,
        };
        assert!(only_ll.covers("fe80::42:1817:1".parse().unwrap()));
        assert!(only_ll.covers("febf::1".parse().unwrap()));
        assert!(!only_ll.covers("fec0::1".parse().unwrap()));
        assert!(!only_ll.covers("fd28:cb8f:4c92::33".parse().unwrap()));
        assert!(!only_ll.covers("172.22.77.33".parse().unwrap()));
    }

    #[test]
    fn neighbour_flag_bits() {
        let flags = |is_static, no_fib_entry| {
            NeighborFlagSwitches {
                is_static,
                no_fib_entry,
            }
            .bits()
        };
        assert_eq!(
            [
                flags(false, false),
                flags(true, false),
                flags(false, true),
                flags(true, true)
            ],
            [0, 1, 2, 3]
        );
    }

    #[test]
    fn secret_debug_is_redacted() {
        assert_eq!(
            format!("{:?}", Some(MemifSecret::new("s3cr3t".into()))),
            "Some(MemifSecret(<redacted>))"
        );
    }
}
