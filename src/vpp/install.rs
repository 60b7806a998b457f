//! The three install methods of `VppBridgeLoop_InstallMethod` for host routes and neighbour entries:
//! `api` (binary API on the BVI's sw_if_index), `vppctl` (the original's CLI commands on the BVI's name) and
//! `none`; and finding the BVI's sw_if_index by its exact name through `sw_interface_dump`.

use std::net::IpAddr;
use std::path::PathBuf;

use super::client::Client;
use super::error::VppError;
use super::messages::{IpNeighborAddDel, IpRouteAddDel, SwInterfaceDetails, SwInterfaceDump};
use super::types::{FibPath, IpNeighbor, IpNeighborFlags, IpRoute, MacAddr, Prefix};
use super::vppctl::{self, Vppctl};

/// How routes and neighbour entries reach VPP (`VppBridgeLoop_InstallMethod`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstallMethod {
    /// The binary API (`"api"`).
    Api,
    /// The vppctl binary (`"vppctl"`, binary from `VppBridgeLoop_VppctlBinary`).
    Vppctl { binary: PathBuf },
    /// Install nothing (`"none"`, empty, or anything else).
    None,
}

/// The bridge's BVI loopback, which the operator creates.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Bvi {
    /// `VppBridgeLoop_SwIfIndex`; 0 means "look it up by name" (0 is `local0`, never a BVI).
    pub sw_if_index: u32,
    /// `VppBridgeLoop_SwIfName`, e.g. `loop42`.
    pub name: String,
}

/// An install method resolved against VPP: everything needed to add or remove an entry.
#[derive(Debug, Clone)]
pub enum Installer {
    /// Through the API, on the BVI's sw_if_index.
    Api { bvi_sw_if_index: u32 },
    /// Through vppctl, on the BVI's name.
    Vppctl { vppctl: Vppctl, bvi_name: String },
    /// Nothing is installed.
    None,
}

/// Why the BVI could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum BviError {
    /// Neither `VppBridgeLoop_SwIfIndex` nor `VppBridgeLoop_SwIfName` is set, but something must be installed.
    #[error(
        "set VppBridgeLoop_SwIfName (or VppBridgeLoop_SwIfIndex) in the gateway file: routes or neighbours are to be installed on the BVI"
    )]
    Unnamed,
    /// No interface has exactly that name.
    #[error("VPP has no interface named `{name}` (VppBridgeLoop_SwIfName){}", similar_names(.similar))]
    NotFound { name: String, similar: Vec<String> },
    /// Several interfaces have exactly that name (should not happen in VPP).
    #[error(
        "VPP has {count} interfaces named `{name}` (VppBridgeLoop_SwIfName); set VppBridgeLoop_SwIfIndex"
    )]
    Ambiguous { name: String, count: usize },
    /// The lookup itself failed.
    #[error("looking up the BVI `{name}`: {source}")]
    Lookup {
        name: String,
        #[source]
        source: VppError,
    },
}

fn similar_names(names: &[String]) -> String {
    if names.is_empty() {
        String::new()
    } else {
        format!("; similar names: {}", names.join(", "))
    }
}

/// Finds the interface named exactly `name`. VPP's name filter matches substrings case-insensitively
/// (`loop4` also returns `loop42` and `LOOP400`), so the answers are compared exactly here.
pub async fn find_interface(client: &Client, name: &str) -> Result<SwInterfaceDetails, BviError> {
    let found = client
        .dump(&SwInterfaceDump::by_name(name))
        .await
        .map_err(|source| BviError::Lookup {
            name: name.to_owned(),
            source,
        })?;
    let (mut exact, others): (Vec<_>, Vec<_>) =
        found.into_iter().partition(|d| d.interface_name == name);
    match exact.len() {
        1 => Ok(exact.remove(0)),
        0 => Err(BviError::NotFound {
            name: name.to_owned(),
            similar: others.into_iter().map(|d| d.interface_name).collect(),
        }),
        count => Err(BviError::Ambiguous {
            name: name.to_owned(),
            count,
        }),
    }
}

/// The BVI's IP MTU: the smaller of its IPv4 and IPv6 MTUs, each its L3 MTU when unset (0); `set
/// interface mtu packet 1500 loop42` sets the L3 one. `None` when the gateway file names no BVI.
pub async fn bvi_mtu(client: &Client, bvi: &Bvi) -> Result<Option<u16>, BviError> {
    let details = if bvi.sw_if_index != 0 {
        let dump = SwInterfaceDump {
            sw_if_index: bvi.sw_if_index,
            ..SwInterfaceDump::default()
        };
        let found = client
            .dump(&dump)
            .await
            .map_err(|source| BviError::Lookup {
                name: format!("sw_if_index {}", bvi.sw_if_index),
                source,
            })?;
        found.into_iter().next().ok_or_else(|| BviError::NotFound {
            name: format!("sw_if_index {}", bvi.sw_if_index),
            similar: Vec::new(),
        })?
    } else if !bvi.name.is_empty() {
        find_interface(client, &bvi.name).await?
    } else {
        return Ok(None);
    };
    let [l3, ip4, ip6, _mpls] = details.mtu;
    let l3 = if l3 == 0 {
        u32::from(details.link_mtu)
    } else {
        l3
    };
    let ip = |mtu: u32| if mtu == 0 { l3 } else { mtu };
    let mtu = ip(ip4).min(ip(ip6));
    Ok((mtu != 0).then(|| u16::try_from(mtu).unwrap_or(u16::MAX)))
}

impl Installer {
    /// Resolves `method` for `bvi`. With `api` and no index, the index is looked up by exact name; a BVI
    /// with neither is an error only when something is to be installed (`needed`).
    pub async fn resolve(
        client: &Client,
        method: &InstallMethod,
        bvi: &Bvi,
        needed: bool,
    ) -> Result<Self, BviError> {
        match method {
            InstallMethod::None => Ok(Self::None),
            _ if !needed => Ok(Self::None),
            InstallMethod::Api if bvi.sw_if_index != 0 => Ok(Self::Api {
                bvi_sw_if_index: bvi.sw_if_index,
            }),
            InstallMethod::Api if bvi.name.is_empty() => Err(BviError::Unnamed),
            InstallMethod::Api => {
                let details = find_interface(client, &bvi.name).await?;
                tracing::info!(bvi = %bvi.name, sw_if_index = details.sw_if_index, "found the BVI");
                Ok(Self::Api {
                    bvi_sw_if_index: details.sw_if_index,
                })
            }
            InstallMethod::Vppctl { .. } if bvi.name.is_empty() => Err(BviError::Unnamed),
            InstallMethod::Vppctl { binary } => Ok(Self::Vppctl {
                vppctl: Vppctl::new(binary.clone()),
                bvi_name: bvi.name.clone(),
            }),
        }
    }

    /// True for [`Installer::None`].
    pub fn is_none(&self) -> bool {
        matches!(self, Self::None)
    }

    /// Adds (or removes) the host route `ip`/32 or /128 attached to the BVI, so that VPP resolves `ip` by
    /// ARP/ND on the BVI and accepts our replies. (The original's `via <ip> <bvi>` is attached-nexthop: VPP's
    /// ARP input drops replies from such an address, "IP4 source address not local to subnet".)
    pub async fn host_route(
        &self,
        client: &Client,
        is_add: bool,
        ip: IpAddr,
    ) -> Result<(), VppError> {
        match self {
            Self::None => Ok(()),
            Self::Api { bvi_sw_if_index } => {
                let route = IpRoute {
                    table_id: 0,
                    stats_index: 0,
                    prefix: Prefix::host(ip),
                    paths: vec![FibPath::attached(*bvi_sw_if_index, ip)],
                };
                client
                    .request(&IpRouteAddDel {
                        is_add,
                        is_multipath: true,
                        route,
                    })
                    .await
                    .map(drop)
            }
            Self::Vppctl { vppctl, bvi_name } => Ok(vppctl
                .run(&vppctl::route_command(is_add, Prefix::host(ip), bvi_name))
                .await?),
        }
    }

    /// Adds (or removes) the neighbour entry `ip` → `mac` on the BVI.
    pub async fn neighbour(
        &self,
        client: &Client,
        is_add: bool,
        ip: IpAddr,
        mac: MacAddr,
        flags: IpNeighborFlags,
    ) -> Result<(), VppError> {
        match self {
            Self::None => Ok(()),
            Self::Api { bvi_sw_if_index } => {
                let neighbor = IpNeighbor {
                    sw_if_index: *bvi_sw_if_index,
                    flags,
                    mac_address: mac,
                    ip_address: ip,
                };
                client
                    .request(&IpNeighborAddDel { is_add, neighbor })
                    .await
                    .map(drop)
            }
            Self::Vppctl { vppctl, bvi_name } => Ok(vppctl
                .run(&vppctl::neighbour_command(is_add, bvi_name, ip, mac, flags))
                .await?),
        }
    }
}

/// Which response-range families get host routes (`VppBridgeLoop_InstallRoutes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RouteFamilies {
    /// `"IPv4"`: /32 entries.
    pub ipv4: bool,
    /// `"IPv6"`: /128 entries outside fe80::/10.
    pub ipv6: bool,
    /// `"IPv6 link-local"`: /128 entries inside fe80::/10.
    pub ipv6_link_local: bool,
}

/// The host routes to install for `ranges`: every /32 (IPv4) or /128 (IPv6) entry of an enabled family,
/// IPv6 split into link-local (fe80::/10) and the rest. Shorter prefixes get no route, as in the original.
pub fn host_routes(ranges: &[ipnet::IpNet], families: RouteFamilies) -> Vec<IpAddr> {
    ranges
        .iter()
        .filter(|net| net.prefix_len() == net.max_prefix_len())
        .map(ipnet::IpNet::addr)
        .filter(|ip| match ip {
            IpAddr::V4(_) => families.ipv4,
            IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80 => families.ipv6_link_local,
            IpAddr::V6(_) => families.ipv6,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_routes_follow_scenarios_1_and_3() {
        let ranges: Vec<ipnet::IpNet> = [
            "172.22.77.33/32",
            "172.22.77.32/30",
            "fd28:cb8f:4c92::33/128",
            "fe80::42:1817:1/128",
        ]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
        let routes = host_routes(
            &ranges,
            RouteFamilies {
                ipv4: true,
                ipv6: false,
                ipv6_link_local: true,
            },
        );
        assert_eq!(
            routes,
            vec![
                "172.22.77.33".parse::<IpAddr>().unwrap(),
                "fe80::42:1817:1".parse().unwrap()
            ]
        );
        assert!(host_routes(&ranges, RouteFamilies::default()).is_empty());
    }
}
