//! From one validated [`TunnelConfig`] to the settings of each part: the l2 adapter, the VPP setup, the
//! memif server and the WireGuard device. Pure mapping; each part keeps its own small settings type so
//! that it knows nothing of the configuration files.

use std::time::Duration;

use crate::config::{InstallMethod, TunnelConfig};
use crate::l2::{L2Config, NeighbourInstall};
use crate::memif::{ClientConfig, ServerConfig};
use crate::vpp;
use crate::wg::DeviceSettings;

/// memif ring size the VPP side creates (entries), as the original.
pub const MEMIF_RING_SIZE: u32 = 1024;
/// memif buffer size the VPP side creates (bytes), as the original. Larger frames arrive chained.
pub const MEMIF_BUFFER_SIZE: u16 = 2048;

/// What WireGuard adds to each packet over an IPv6 path: IPv6 and UDP headers, its own header and tag.
pub const WIREGUARD_OVERHEAD: u16 = 80;

/// The tunnel MTU: the interface file's `Mtu`, else the BVI's MTU less [`WIREGUARD_OVERHEAD`] (at least
/// IPv6's 1280), else [`crate::l2::DEFAULT_MTU`].
pub fn tunnel_mtu(cfg: &TunnelConfig, bvi_mtu: Option<u16>) -> u16 {
    cfg.mtu.unwrap_or_else(|| {
        bvi_mtu.map_or(crate::l2::DEFAULT_MTU, |bvi| {
            bvi.saturating_sub(WIREGUARD_OVERHEAD).max(1280)
        })
    })
}

/// The l2 adapter's settings: our MAC, the gateway's, the four range lists and the neighbour installs.
pub fn l2_config(cfg: &TunnelConfig) -> L2Config {
    let mut l2 = L2Config::new(cfg.self_mac, cfg.gateway_mac);
    l2.arp_respond = cfg.ranges.ipv4_response.clone();
    l2.arp_learn = cfg.ranges.ipv4_learning.clone();
    l2.ndp_respond = cfg.ranges.ipv6_response.clone();
    l2.ndp_learn = cfg.ranges.ipv6_learning.clone();
    let neighbours = &cfg.install.neighbours;
    l2.install = NeighbourInstall {
        ipv4: neighbours.ipv4,
        ipv6: neighbours.ipv6,
        ipv6_link_local: neighbours.ipv6_link_local,
    };
    l2
}

/// What VPP's side of the tunnel needs: the memif (VPP connects to our socket, or listens on it when
/// `vpp_listens`), the bridge port, host routes and the install method for routes and neighbours.
pub fn vpp_setup(cfg: &TunnelConfig, vpp_listens: bool) -> vpp::TunnelSetup {
    let mut setup = vpp::TunnelSetup::new(
        cfg.uid,
        cfg.memif_socket.to_string_lossy().into_owned(),
        cfg.bridge_id,
        cfg.vpp_memif_mac,
    );
    setup.secret = cfg
        .secret
        .as_ref()
        .map(|s| s.expose().to_owned())
        .unwrap_or_default();
    setup.ring_size = MEMIF_RING_SIZE;
    setup.buffer_size = MEMIF_BUFFER_SIZE;
    setup.bvi = vpp::Bvi {
        sw_if_index: cfg.install.bvi_sw_if_index.unwrap_or(0),
        name: cfg.install.bvi_name.clone(),
    };
    setup.install = install_method(cfg);
    let responses: Vec<ipnet::IpNet> = (cfg.ranges.ipv4_response.iter().copied().map(Into::into))
        .chain(cfg.ranges.ipv6_response.iter().copied().map(Into::into))
        .collect();
    let routes = &cfg.install.routes;
    setup.host_routes = vpp::host_routes(
        &responses,
        vpp::RouteFamilies {
            ipv4: routes.ipv4,
            ipv6: routes.ipv6,
            ipv6_link_local: routes.ipv6_link_local,
        },
    );
    setup.installs_neighbours = cfg.install.neighbours.any();
    setup.vpp_listens = vpp_listens;
    setup
}

/// The neighbour flags of `VppBridgeLoop_InstallNeighbor_Flag`.
pub fn neighbour_flags(cfg: &TunnelConfig) -> vpp::IpNeighborFlags {
    vpp::IpNeighborFlags(cfg.install.neighbour_flags.bits())
}

fn install_method(cfg: &TunnelConfig) -> vpp::InstallMethod {
    match cfg.install.method {
        InstallMethod::None => vpp::InstallMethod::None,
        InstallMethod::Api => vpp::InstallMethod::Api,
        InstallMethod::Vppctl => vpp::InstallMethod::Vppctl {
            binary: cfg.install.vppctl_binary.clone().into(),
        },
    }
}

/// The memif client (slave) that connects to VPP's socket when VPP is the memif server.
pub fn memif_client(cfg: &TunnelConfig, handshake_timeout: Duration) -> ClientConfig {
    ClientConfig {
        id: cfg.uid,
        secret: cfg.secret.as_ref().map(|s| s.expose().to_owned()),
        app_name: format!("wireguard-vpp {}", env!("CARGO_PKG_VERSION")),
        if_name: cfg.name.clone(),
        handshake_timeout,
        ..ClientConfig::default()
    }
}

/// The memif server (master) that VPP connects to: interface id = uid, the secret, our names.
pub fn memif_server(cfg: &TunnelConfig, handshake_timeout: Duration) -> ServerConfig {
    ServerConfig {
        id: cfg.uid,
        secret: cfg.secret.as_ref().map(|s| s.expose().to_owned()),
        app_name: format!("wireguard-vpp {}", env!("CARGO_PKG_VERSION")),
        if_name: cfg.name.clone(),
        handshake_timeout,
        peer_uid: cfg.memif_peer_uid,
        ..ServerConfig::default()
    }
}

/// The WireGuard device starts with no key and a random port; `wg setconf` (or the reconf file) sets
/// them, as with wireguard-go.
pub fn device(cfg: &TunnelConfig) -> DeviceSettings {
    DeviceSettings {
        name: cfg.name.clone(),
        ..DeviceSettings::default()
    }
}
