//! Validation: the two file models in, a [`TunnelConfig`] out, with no I/O (randomness for the
//! `"random"` secret is passed in). The checks run in the original's order (spec 3.6), so that a file
//! with several mistakes reports the one the original reported first:
//!
//! secret → vppctl binary → install method and BVI → response ranges → GatewayMacAddr → MAC prefixes,
//! their lengths, uid, `Macaddr` → learning ranges → bridge id → memif socket path.
//!
//! Where the spec asks for better behaviour than the original's, the deviation is named at the check.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use rand::Rng;

use super::file::{GatewayFile, InterfaceFile};
use super::mac::parse_mac;
use super::resolved::{
    Announce, BRIDGE_ID_MAX, Install, InstallMethod, MTU_RANGE, Ranges, SOCKET_PATH_MAX,
};
use super::{ConfigError, ConfigWarning, Env, MacPrefix, MemifSecret, TunnelConfig};
use crate::mac::MacAddr;

/// The default of `VppBridgeLoop_VppctlBinary`.
pub const DEFAULT_VPPCTL_BINARY: &str = "vppctl";

/// The secret value that asks for a generated one.
pub const RANDOM_SECRET: &str = "random";

/// Length of a generated secret.
pub const RANDOM_SECRET_LEN: usize = 20;

/// The two files of one tunnel, already parsed, with where they came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Files {
    pub interface: InterfaceFile,
    /// Named in errors; a renderer may put its resource's name here.
    pub interface_path: PathBuf,
    pub gateway: GatewayFile,
    pub gateway_path: PathBuf,
}

/// A validated configuration and what was noticed on the way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loaded {
    pub config: TunnelConfig,
    pub warnings: Vec<ConfigWarning>,
}

/// Validates the files of interface `name` (already sanitised).
pub fn validate(
    name: &str,
    files: &Files,
    env: &Env,
    rng: &mut impl Rng,
) -> Result<Loaded, ConfigError> {
    let (iface, if_path) = (&files.interface, files.interface_path.as_path());
    let (gw, gw_path) = (&files.gateway, files.gateway_path.as_path());
    let mut warnings = Vec::new();

    let secret = resolve_secret(&iface.secret, if_path, rng)?;
    let install = resolve_install(gw, gw_path, &mut warnings)?;
    let ipv4_response = parse_list::<Ipv4Net>(
        if_path,
        "IPv4ArpResponseRanges",
        &iface.ipv4_arp_response_ranges,
        &mut warnings,
    )?;
    let ipv6_response = parse_list::<Ipv6Net>(
        if_path,
        "IPv6NdpNeighAdvRanges",
        &iface.ipv6_ndp_neigh_adv_ranges,
        &mut warnings,
    )?;
    let gateway_mac = parse_gateway_mac(gw, gw_path, iface.vpp_bridge_id)?;
    let (self_mac, vpp_memif_mac) = derive_macs(iface, if_path, gw, gw_path)?;
    let ipv4_learning = parse_list::<Ipv4Net>(
        if_path,
        "IPv4ArpLearningRanges",
        &iface.ipv4_arp_learning_ranges,
        &mut warnings,
    )?;
    // The original accepted an IPv4 network here; it can never match an IPv6 destination.
    let ipv6_learning = parse_list::<Ipv6Net>(
        if_path,
        "IPv6NdpLearningRanges",
        &iface.ipv6_ndp_learning_ranges,
        &mut warnings,
    )?;
    check_bridge_id(if_path, iface.vpp_bridge_id)?;
    let mtu = check_mtu(if_path, iface.mtu)?;
    let memif_socket = env.memif_socket_path(name);
    check_socket_path(&memif_socket)?;

    let ranges = Ranges {
        ipv4_response,
        ipv6_response,
        ipv4_learning,
        ipv6_learning,
    };
    warn_about_routes(&ranges, if_path, &install, &mut warnings);
    let config = TunnelConfig {
        name: name.to_owned(),
        interface_file: if_path.to_owned(),
        gateway_file: gw_path.to_owned(),
        uid: iface.uid,
        secret,
        bridge_id: iface.vpp_bridge_id,
        self_mac,
        vpp_memif_mac,
        gateway_mac,
        ranges,
        announce: Announce {
            arp: iface.gratuitous_arp_on_startup,
            ndp: iface.gratuitous_arp_on_startup,
        },
        mtu,
        install,
        memif_socket,
        vpp_api_socket: env.vpp_api_socket.clone(),
        memif_peer_uid: env.memif_peer_uid,
    };
    Ok(Loaded { config, warnings })
}

/// `"random"` becomes 20 characters of `[0-9A-Za-z]`. The original cut a secret longer than 23 bytes
/// on both ends without a word; that is an error here.
fn resolve_secret(
    secret: &str,
    file: &Path,
    rng: &mut impl Rng,
) -> Result<Option<MemifSecret>, ConfigError> {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    if secret.is_empty() {
        return Ok(None);
    }
    if secret == RANDOM_SECRET {
        let random = (0..RANDOM_SECRET_LEN)
            .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
            .collect();
        return Ok(Some(MemifSecret::new(random)));
    }
    // Secrets are never echoed in full: the error shows only the length.
    let shown = format!("<{} bytes>", secret.len());
    if secret.len() > MemifSecret::MAX_LEN {
        return Err(ConfigError::invalid(
            file,
            "secret",
            shown,
            format!(
                "longer than {} bytes, which VPP and memif would silently cut; shorten it",
                MemifSecret::MAX_LEN
            ),
        ));
    }
    if secret.contains('\0') {
        return Err(ConfigError::invalid(
            file,
            "secret",
            shown,
            "contains a NUL character, which would end it early",
        ));
    }
    Ok(Some(MemifSecret::new(secret.to_owned())))
}

/// The install method (validated, where the original treated any unknown value as "none"), the
/// vppctl binary (with the README's `VppBridgeLoop_VppctlBin` alias) and the BVI reference.
fn resolve_install(
    gw: &GatewayFile,
    file: &Path,
    warnings: &mut Vec<ConfigWarning>,
) -> Result<Install, ConfigError> {
    let vppctl_binary = match (gw.vppctl_binary.as_str(), gw.vppctl_bin_alias.as_str()) {
        (binary, "") if !binary.is_empty() => binary.to_owned(),
        ("", "") => DEFAULT_VPPCTL_BINARY.to_owned(),
        ("", alias) => {
            warnings.push(ConfigWarning::VppctlBinAlias {
                file: file.to_owned(),
                message: "VppBridgeLoop_VppctlBin is accepted as an alias; rename it to VppBridgeLoop_VppctlBinary"
                    .into(),
            });
            alias.to_owned()
        }
        (binary, _) => {
            warnings.push(ConfigWarning::VppctlBinAlias {
                file: file.to_owned(),
                message: "both VppBridgeLoop_VppctlBinary and its alias VppBridgeLoop_VppctlBin are set; \
                          using VppBridgeLoop_VppctlBinary"
                    .into(),
            });
            binary.to_owned()
        }
    };
    let method = match gw.install_method.as_str() {
        "" | "none" => InstallMethod::None,
        "api" => InstallMethod::Api,
        "vppctl" => InstallMethod::Vppctl,
        other => {
            return Err(ConfigError::invalid(
                file,
                "VppBridgeLoop_InstallMethod",
                other,
                "must be \"api\", \"vppctl\" or \"none\" (empty means none)",
            ));
        }
    };
    let mut install = Install {
        method,
        vppctl_binary,
        bvi_name: gw.sw_if_name.clone(),
        bvi_sw_if_index: (gw.sw_if_index != 0).then_some(gw.sw_if_index),
        routes: gw.install_routes,
        neighbours: gw.install_neighbor,
        neighbour_flags: gw.install_neighbor_flag,
    };
    let installs_something = install.routes.any() || install.neighbours.any();
    match method {
        InstallMethod::None => {
            if installs_something {
                warnings.push(ConfigWarning::Ignored {
                    file: file.to_owned(),
                    field: "VppBridgeLoop_InstallRoutes/VppBridgeLoop_InstallNeighbor".into(),
                    message:
                        "switched on, but VppBridgeLoop_InstallMethod is none: nothing is installed"
                            .into(),
                });
            }
            install.routes = Default::default();
            install.neighbours = Default::default();
        }
        // The original looked a zero index up by scraping vppctl and fell back to 0 (local0) when that
        // failed; without a name there is nothing to look up.
        InstallMethod::Api
            if installs_something
                && install.bvi_name.is_empty()
                && install.bvi_sw_if_index.is_none() =>
        {
            return Err(ConfigError::invalid(
                file,
                "VppBridgeLoop_SwIfName",
                "",
                "routes or neighbours are to be installed but the BVI is unknown: set VppBridgeLoop_SwIfName \
                 (e.g. loop42) or VppBridgeLoop_SwIfIndex",
            ));
        }
        InstallMethod::Vppctl if installs_something && install.bvi_name.is_empty() => {
            return Err(ConfigError::invalid(
                file,
                "VppBridgeLoop_SwIfName",
                "",
                "the vppctl method names the BVI in its commands: set VppBridgeLoop_SwIfName (e.g. loop42)",
            ));
        }
        InstallMethod::Api | InstallMethod::Vppctl => {}
    }
    Ok(install)
}

/// An IP network of one family, parsed from a range list.
pub(crate) trait RangeNet: Sized + Copy + std::fmt::Display + PartialEq {
    /// The family's name in the original's message ("Not a valid IPv4 CIDR").
    const FAMILY: &'static str;
    fn from_net(net: IpNet) -> Option<Self>;
    fn trunc(&self) -> Self;
}

impl RangeNet for Ipv4Net {
    const FAMILY: &'static str = "IPv4";
    fn from_net(net: IpNet) -> Option<Self> {
        match net {
            IpNet::V4(net) => Some(net),
            IpNet::V6(_) => None,
        }
    }
    fn trunc(&self) -> Self {
        Ipv4Net::trunc(self)
    }
}

impl RangeNet for Ipv6Net {
    const FAMILY: &'static str = "IPv6";
    fn from_net(net: IpNet) -> Option<Self> {
        match net {
            IpNet::V6(net) => Some(net),
            IpNet::V4(_) => None,
        }
    }
    fn trunc(&self) -> Self {
        Ipv6Net::trunc(self)
    }
}

/// Parses one range list: empty entries are skipped, each network is stored with its host bits
/// cleared (as the original did), with a warning when that changed it.
pub(crate) fn parse_list<N: RangeNet>(
    file: &Path,
    field: &str,
    entries: &[String],
    warnings: &mut Vec<ConfigWarning>,
) -> Result<Vec<N>, ConfigError> {
    let mut nets = Vec::with_capacity(entries.len());
    for (i, entry) in entries.iter().enumerate() {
        if entry.is_empty() {
            continue;
        }
        let field = format!("{field}[{i}]");
        let net = IpNet::from_str(entry).map_err(|_| {
            ConfigError::invalid(
                file,
                &field,
                entry,
                "invalid CIDR address: write an address and a prefix length, e.g. 172.22.77.33/32 or fd00::1/128",
            )
        })?;
        let net = N::from_net(net).ok_or_else(|| {
            ConfigError::invalid(
                file,
                &field,
                entry,
                format!("Not a valid {} CIDR (wrong address family)", N::FAMILY),
            )
        })?;
        let network = net.trunc();
        if network != net {
            warnings.push(ConfigWarning::Ignored {
                file: file.to_owned(),
                field,
                message: format!("{entry} has host bits set; using the network {network}"),
            });
        }
        nets.push(network);
    }
    Ok(nets)
}

/// `GatewayMacAddr`: required, one of Go's EUI-48 forms, unicast.
fn parse_gateway_mac(
    gw: &GatewayFile,
    file: &Path,
    bridge_id: u32,
) -> Result<MacAddr, ConfigError> {
    let text = gw.gateway_mac_addr.as_str();
    if text.is_empty() {
        return Err(ConfigError::invalid(
            file,
            "GatewayMacAddr",
            "",
            format!(
                "missing: set the MAC address of the BVI (the VPP loopback) of bridge {bridge_id}"
            ),
        ));
    }
    let mac = parse_mac(text)
        .map_err(|e| ConfigError::invalid(file, "GatewayMacAddr", text, format!("{e}")))?;
    if !mac.is_unicast() {
        return Err(ConfigError::invalid(
            file,
            "GatewayMacAddr",
            text,
            "must be a unicast address (the BVI's MAC; the first octet even, not all zero)",
        ));
    }
    Ok(mac)
}

/// The two prefixes, their equal length, the uid within the prefix's room, and the `Macaddr` override.
fn derive_macs(
    iface: &InterfaceFile,
    if_path: &Path,
    gw: &GatewayFile,
    gw_path: &Path,
) -> Result<(MacAddr, MacAddr), ConfigError> {
    let prefix = |field: &str, text: &str| {
        MacPrefix::parse(text)
            .map_err(|e| ConfigError::invalid(gw_path, field, text, format!("{e}")))
    };
    let wg = prefix("WgIfMacaddrPrefix", &gw.wg_if_macaddr_prefix)?;
    let vpp = prefix("VppIfMacaddrPrefix", &gw.vpp_if_macaddr_prefix)?;
    if wg.len() != vpp.len() {
        return Err(ConfigError::invalid(
            gw_path,
            "VppIfMacaddrPrefix",
            &gw.vpp_if_macaddr_prefix,
            format!(
                "Length of WgIfMacaddrPrefix and VppIfMacaddrPrefix must be same ({} and {} octets)",
                wg.len(),
                vpp.len()
            ),
        ));
    }
    check_uid(iface.uid, &wg, if_path)?;
    let self_mac = match iface.macaddr.as_str() {
        "" => wg.derive(iface.uid),
        text => {
            let mac = parse_mac(text)
                .map_err(|e| ConfigError::invalid(if_path, "Macaddr", text, format!("{e}")))?;
            if !mac.is_unicast() {
                return Err(ConfigError::invalid(
                    if_path,
                    "Macaddr",
                    text,
                    "must be a unicast address (first octet even, not all zero)",
                ));
            }
            mac
        }
    };
    Ok((self_mac, vpp.derive(iface.uid)))
}

/// The original replaced uid 0 by a random one on every start (a new MAC each time, stale static
/// neighbours in VPP, and sometimes 0 again, which VPP rejects); that is refused here.
fn check_uid(uid: u32, prefix: &MacPrefix, file: &Path) -> Result<(), ConfigError> {
    let max_uid = prefix.max_uid();
    if uid == 0 {
        return Err(ConfigError::invalid(
            file,
            "uid",
            "0",
            format!(
                "missing or 0: set a fixed uid from 1 to {max_uid} (the memif id, also the low bytes of the MACs); \
                 a random uid would change the MACs at every start"
            ),
        ));
    }
    if u64::from(uid) > max_uid {
        return Err(ConfigError::invalid(
            file,
            "uid",
            uid.to_string(),
            format!(
                "UID can't be greater than 256^(6 - {} prefix octets) - 1 = {max_uid}",
                prefix.len()
            ),
        ));
    }
    if uid == u32::MAX {
        return Err(ConfigError::invalid(
            file,
            "uid",
            uid.to_string(),
            "VPP reserves memif socket id 4294967295 (~0)",
        ));
    }
    Ok(())
}

/// `Mtu`: 0 (derive it from the BVI) or within [`MTU_RANGE`].
fn check_mtu(file: &Path, mtu: u32) -> Result<Option<u16>, ConfigError> {
    if mtu == 0 {
        return Ok(None);
    }
    match u16::try_from(mtu) {
        Ok(mtu) if MTU_RANGE.contains(&mtu) => Ok(Some(mtu)),
        _ => Err(ConfigError::invalid(
            file,
            "Mtu",
            mtu.to_string(),
            format!(
                "the tunnel MTU must be {} to {} (or 0 to derive it from the BVI's MTU)",
                MTU_RANGE.start(),
                MTU_RANGE.end()
            ),
        )),
    }
}

/// The bridge domain id: VPP keeps 24 bits, and bridge domain 0 is its default one, which cannot
/// carry a tunnel (a missing `VppBridgeID` reads as 0).
pub(crate) fn check_bridge_id(file: &Path, bridge_id: u32) -> Result<(), ConfigError> {
    let reason = match bridge_id {
        0 => {
            "missing or 0: bridge domain 0 is VPP's default bridge domain; set the bridge domain id of the BVI"
        }
        id if id > BRIDGE_ID_MAX => "VPP bridge domain ids are at most 16777215",
        _ => return Ok(()),
    };
    Err(ConfigError::invalid(
        file,
        "VppBridgeID",
        bridge_id.to_string(),
        reason,
    ))
}

/// The memif socket path must fit `sun_path` and VPP's 108-byte `socket_filename`.
fn check_socket_path(path: &Path) -> Result<(), ConfigError> {
    let len = path.as_os_str().len();
    if len > SOCKET_PATH_MAX {
        return Err(ConfigError::Env {
            var: "VPP_MEMIF_SOCKET_DIR",
            value: path.display().to_string(),
            reason: format!(
                "the memif socket path is {len} bytes, more than the {SOCKET_PATH_MAX} a unix socket path can hold; \
                 use a shorter folder or interface name"
            ),
        });
    }
    Ok(())
}

/// Scenario 3: a response range that is not a host prefix gets no route, silently in the original; a
/// warning says so here.
fn warn_about_routes(
    ranges: &Ranges,
    file: &Path,
    install: &Install,
    warnings: &mut Vec<ConfigWarning>,
) {
    let v4 = ranges
        .ipv4_response
        .iter()
        .map(|n| (IpNet::V4(*n), "IPv4ArpResponseRanges", 32));
    let v6 = ranges
        .ipv6_response
        .iter()
        .map(|n| (IpNet::V6(*n), "IPv6NdpNeighAdvRanges", 128));
    for (net, field, host_len) in v4.chain(v6) {
        if install.routes.covers(net.addr()) && net.prefix_len() != host_len {
            warnings.push(ConfigWarning::Ignored {
                file: file.to_owned(),
                field: field.to_owned(),
                message: format!("no route is installed for {net}: routes are installed only for /{host_len} entries"),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::strategy::Strategy as _;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::super::FamilySwitches;
    use super::super::fixtures::{HOME_GW, HOME_IF};
    use super::*;

    fn files(if_text: &str, gw_text: &str) -> Files {
        Files {
            interface: InterfaceFile::parse(if_text.as_bytes())
                .expect("test interface file")
                .file,
            interface_path: PathBuf::from("cfg/if/home.json"),
            gateway: GatewayFile::parse(gw_text.as_bytes())
                .expect("test gateway file")
                .file,
            gateway_path: PathBuf::from("cfg/gw/4242.json"),
        }
    }

    fn run(files: &Files) -> Result<Loaded, ConfigError> {
        validate(
            "home",
            files,
            &Env::default(),
            &mut StdRng::seed_from_u64(7),
        )
    }

    /// The fixture with `key` of the interface (`if`) or gateway (`gw`) file replaced by `value`
    /// (JSON text); the key is removed when `value` is `None`.
    fn with(which: &str, key: &str, value: Option<&str>) -> Files {
        let edit = |text: &str| {
            let mut map: serde_json::Map<String, serde_json::Value> =
                serde_json::from_str(text).unwrap();
            match value {
                Some(v) => map.insert(key.to_owned(), serde_json::from_str(v).unwrap()),
                None => map.remove(key),
            };
            serde_json::to_string(&map).unwrap()
        };
        match which {
            "if" => files(&edit(HOME_IF), HOME_GW),
            _ => files(HOME_IF, &edit(HOME_GW)),
        }
    }

    #[test]
    fn the_spec_fixture_resolves_as_the_spec_says() {
        let Loaded {
            config: c,
            warnings,
        } = run(&files(HOME_IF, HOME_GW)).unwrap();
        assert_eq!(warnings, []);
        assert_eq!((c.name.as_str(), c.uid, c.bridge_id), ("home", 3, 4242));
        assert_eq!(c.self_mac.to_string(), "98:d2:93:00:00:03");
        assert_eq!(c.vpp_memif_mac.to_string(), "a4:77:33:00:00:03");
        assert_eq!(c.gateway_mac.to_string(), "42:42:42:42:42:42");
        assert_eq!(c.secret.as_ref().map(MemifSecret::expose), Some("s3cr3t"));
        assert_eq!(c.vpp_memif_name(), "memif3/3");
        assert_eq!(c.memif_socket, Path::new("/var/run/wggo-vpp/home.sock"));
        assert_eq!(c.vpp_api_socket, Path::new("/run/vpp/api.sock"));
        assert_eq!(
            c.ranges.ipv4_response,
            ["172.22.77.33/32".parse::<Ipv4Net>().unwrap()]
        );
        assert_eq!(
            c.ranges.ipv6_learning,
            ["fd10:127:e00f::/64".parse::<Ipv6Net>().unwrap()]
        );
        let i = &c.install;
        assert_eq!(
            (
                i.method,
                i.vppctl_binary.as_str(),
                i.bvi_name.as_str(),
                i.bvi_sw_if_index
            ),
            (InstallMethod::Api, "vppctl", "loop42", Some(1))
        );
        assert_eq!(i.neighbour_flags.bits(), 1);
        // Scenario 1: routes for IPv4 and link-local IPv6 (fe80::42:1817:1/128), none for fd28:…::33.
        let routes = FamilySwitches {
            ipv4: true,
            ipv6: false,
            ipv6_link_local: true,
        };
        assert_eq!(i.routes, routes);
        assert_eq!(c.announce, Announce::default());
    }

    /// Every error case, with the field and the words of its message. Scenario 7 of the spec is
    /// the core of this table; the rest are the checks this reimplementation adds.
    #[test]
    fn error_cases() {
        #[rustfmt::skip]
        let cases: &[(&str, &str, Option<&str>, &str, &str)] = &[
            // (file, key, new value, field in the error, words of the reason)
            ("gw", "WgIfMacaddrPrefix", Some(r#""98""#), "WgIfMacaddrPrefix", "between 2 and 5 octets, this one has 1"),
            ("gw", "WgIfMacaddrPrefix", Some(r#""99:D2:93""#), "WgIfMacaddrPrefix", "first octet (99) must be an even number"),
            ("gw", "WgIfMacaddrPrefix", Some(r#""98:D2:193""#), "WgIfMacaddrPrefix", "not a hex byte"),
            ("gw", "WgIfMacaddrPrefix", None, "WgIfMacaddrPrefix", "between 2 and 5 octets"),
            ("gw", "VppIfMacaddrPrefix", Some(r#""A5:77:33""#), "VppIfMacaddrPrefix", "must be an even number"),
            ("gw", "VppIfMacaddrPrefix", Some(r#""A4:77""#), "VppIfMacaddrPrefix", "Length of WgIfMacaddrPrefix and VppIfMacaddrPrefix must be same (3 and 2 octets)"),
            ("if", "uid", Some("16777216"), "uid", "UID can't be greater than 256^(6 - 3 prefix octets) - 1 = 16777215"),
            ("if", "uid", Some("0"), "uid", "missing or 0: set a fixed uid from 1 to 16777215"),
            ("if", "uid", None, "uid", "missing or 0"),
            ("if", "IPv4ArpResponseRanges", Some(r#"["172.22.77.33"]"#), "IPv4ArpResponseRanges[0]", "invalid CIDR address"),
            ("if", "IPv4ArpResponseRanges", Some(r#"["", "172.22.77.333/32"]"#), "IPv4ArpResponseRanges[1]", "invalid CIDR address"),
            ("if", "IPv4ArpResponseRanges", Some(r#"["fd00::1/128"]"#), "IPv4ArpResponseRanges[0]", "Not a valid IPv4 CIDR"),
            ("if", "IPv6NdpNeighAdvRanges", Some(r#"["172.22.77.33/32"]"#), "IPv6NdpNeighAdvRanges[0]", "Not a valid IPv6 CIDR"),
            ("if", "IPv6NdpNeighAdvRanges", Some(r#"["fd00::1/129"]"#), "IPv6NdpNeighAdvRanges[0]", "invalid CIDR address"),
            ("if", "IPv4ArpLearningRanges", Some(r#"["::/0"]"#), "IPv4ArpLearningRanges[0]", "Not a valid IPv4 CIDR"),
            ("if", "IPv6NdpLearningRanges", Some(r#"["10.0.0.0/8"]"#), "IPv6NdpLearningRanges[0]", "Not a valid IPv6 CIDR"),
            ("gw", "GatewayMacAddr", Some(r#""42:42:42:42:42""#), "GatewayMacAddr", "not a MAC address"),
            ("gw", "GatewayMacAddr", None, "GatewayMacAddr", "missing: set the MAC address of the BVI (the VPP loopback) of bridge 4242"),
            ("gw", "GatewayMacAddr", Some(r#""ff:ff:ff:ff:ff:ff""#), "GatewayMacAddr", "must be a unicast address"),
            ("gw", "GatewayMacAddr", Some(r#""00:00:00:00:00:00""#), "GatewayMacAddr", "must be a unicast address"),
            ("if", "Macaddr", Some(r#""03:00:00:00:00:01""#), "Macaddr", "must be a unicast address"),
            ("if", "Macaddr", Some(r#""zz""#), "Macaddr", "not a MAC address"),
            ("if", "secret", Some(r#""012345678901234567890123""#), "secret", "longer than 23 bytes"),
            ("if", "secret", Some(r#""a\u0000b""#), "secret", "contains a NUL character"),
            ("gw", "VppBridgeLoop_InstallMethod", Some(r#""API""#), "VppBridgeLoop_InstallMethod", r#"must be "api", "vppctl" or "none""#),
            ("gw", "VppBridgeLoop_InstallMethod", Some(r#""netlink""#), "VppBridgeLoop_InstallMethod", "must be"),
            ("gw", "VppBridgeLoop_SwIfName", None, "VppBridgeLoop_SwIfName", ""),
            ("if", "VppBridgeID", Some("0"), "VppBridgeID", "bridge domain 0 is VPP's default bridge domain"),
            ("if", "VppBridgeID", Some("16777216"), "VppBridgeID", "at most 16777215"),
        ];
        for (which, key, value, field, reason) in cases {
            let mut input = with(which, key, *value);
            if *key == "VppBridgeLoop_SwIfName" {
                input.gateway.sw_if_index = 0;
            }
            let err = run(&input).expect_err(&format!("{which} {key} = {value:?}"));
            let text = err.to_string();
            let want_file = if *which == "if" {
                "cfg/if/home.json"
            } else {
                "cfg/gw/4242.json"
            };
            match &err {
                ConfigError::Invalid {
                    file,
                    field: f,
                    reason: r,
                    ..
                } => {
                    assert_eq!(
                        (file.to_str(), f.as_str()),
                        (Some(want_file), *field),
                        "{text}"
                    );
                    assert!(r.contains(reason), "{key}: {text}");
                }
                other => panic!("{key}: expected Invalid, got {other:?}"),
            }
            assert!(
                text.starts_with(&format!("{want_file}: {field} = ")),
                "{text}"
            );
        }
    }

    #[test]
    fn messages_name_file_field_and_value() {
        let err = run(&with(
            "if",
            "IPv4ArpResponseRanges",
            Some(r#"["fd00::1/128"]"#),
        ))
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"cfg/if/home.json: IPv4ArpResponseRanges[0] = "fd00::1/128": Not a valid IPv4 CIDR (wrong address family)"#
        );
        let err = run(&with("if", "uid", Some("16777216"))).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"cfg/if/home.json: uid = "16777216": UID can't be greater than 256^(6 - 3 prefix octets) - 1 = 16777215"#
        );
    }

    #[test]
    fn a_long_secret_is_not_echoed() {
        let err = run(&with(
            "if",
            "secret",
            Some(r#""this-is-a-very-long-secret-value""#),
        ))
        .unwrap_err();
        let text = err.to_string();
        assert!(!text.contains("very-long"), "{text}");
        assert!(text.contains("<32 bytes>"), "{text}");
    }

    #[test]
    fn errors_come_in_the_originals_order() {
        // A bad response range is reported before a bad GatewayMacAddr, which comes before the prefixes,
        // which come before the learning ranges.
        let mut input = with("if", "IPv4ArpResponseRanges", Some(r#"["x"]"#));
        input.gateway.gateway_mac_addr = "bad".into();
        input.gateway.wg_if_macaddr_prefix = "bad".into();
        input.interface.ipv4_arp_learning_ranges = vec!["y".into()];
        let field = |r: Result<Loaded, ConfigError>| match r {
            Err(ConfigError::Invalid { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        assert_eq!(field(run(&input)), "IPv4ArpResponseRanges[0]");
        input.interface.ipv4_arp_response_ranges.clear();
        assert_eq!(field(run(&input)), "GatewayMacAddr");
        input.gateway.gateway_mac_addr = "42:42:42:42:42:42".into();
        assert_eq!(field(run(&input)), "WgIfMacaddrPrefix");
        input.gateway.wg_if_macaddr_prefix = "98:d2:93".into();
        assert_eq!(field(run(&input)), "IPv4ArpLearningRanges[0]");
    }

    #[test]
    fn random_secret_is_20_alphanumerics() {
        let input = with("if", "secret", Some(r#""random""#));
        let a = run(&input).unwrap().config.secret.unwrap();
        assert_eq!(a.expose().len(), RANDOM_SECRET_LEN);
        assert!(
            a.expose().bytes().all(|b| b.is_ascii_alphanumeric()),
            "{}",
            a.expose()
        );
        let b = validate(
            "home",
            &input,
            &Env::default(),
            &mut StdRng::seed_from_u64(8),
        )
        .unwrap()
        .config
        .secret
        .unwrap();
        assert_ne!(a, b, "another draw gives another secret");
        assert_eq!(
            run(&with("if", "secret", Some(r#""""#)))
                .unwrap()
                .config
                .secret,
            None
        );
        let max = run(&with("if", "secret", Some(r#""01234567890123456789012""#)))
            .unwrap()
            .config
            .secret
            .unwrap();
        assert_eq!(max.expose().len(), 23);
    }

    #[test]
    fn uid_limits_follow_the_prefix_length() {
        let mut input = files(HOME_IF, HOME_GW);
        input.interface.uid = 16_777_215;
        assert_eq!(
            run(&input).unwrap().config.self_mac.to_string(),
            "98:d2:93:ff:ff:ff"
        );
        input.gateway.wg_if_macaddr_prefix = "02:00".into();
        input.gateway.vpp_if_macaddr_prefix = "02:01".into();
        input.interface.uid = 0xfffe_fffe;
        let c = run(&input).unwrap().config;
        assert_eq!(
            (c.self_mac.to_string(), c.vpp_memif_mac.to_string()),
            ("02:00:ff:fe:ff:fe".into(), "02:01:ff:fe:ff:fe".into())
        );
        input.interface.uid = u32::MAX;
        assert!(
            run(&input)
                .unwrap_err()
                .to_string()
                .contains("VPP reserves memif socket id")
        );
    }

    #[test]
    fn macaddr_overrides_the_derived_self_mac() {
        let c = run(&with("if", "Macaddr", Some(r#""02-00-00-00-00-2a""#)))
            .unwrap()
            .config;
        assert_eq!(c.self_mac.to_string(), "02:00:00:00:00:2a");
        assert_eq!(
            c.vpp_memif_mac.to_string(),
            "a4:77:33:00:00:03",
            "VPP's MAC stays derived"
        );
    }

    #[test]
    fn ranges_are_normalised_to_networks() {
        let input = with(
            "if",
            "IPv4ArpResponseRanges",
            Some(r#"["", "172.22.77.33/30", "10.0.0.0/8"]"#),
        );
        let Loaded { config, warnings } = run(&input).unwrap();
        let nets: Vec<String> = config
            .ranges
            .ipv4_response
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert_eq!(nets, ["172.22.77.32/30", "10.0.0.0/8"]);
        let texts: Vec<String> = warnings.iter().map(|w| w.to_string()).collect();
        assert!(texts.iter().any(|t| t.contains("IPv4ArpResponseRanges[1]: 172.22.77.33/30 has host bits set; using the network 172.22.77.32/30")), "{texts:?}");
        // Scenario 3: no route for a non-/32 range, now with a warning.
        assert!(
            texts
                .iter()
                .any(|t| t.contains("no route is installed for 172.22.77.32/30")),
            "{texts:?}"
        );
    }

    #[test]
    fn install_method_values() {
        for (value, method) in [
            (r#""""#, InstallMethod::None),
            (r#""none""#, InstallMethod::None),
            (r#""api""#, InstallMethod::Api),
            (r#""vppctl""#, InstallMethod::Vppctl),
        ] {
            let Loaded { config, warnings } =
                run(&with("gw", "VppBridgeLoop_InstallMethod", Some(value))).unwrap();
            assert_eq!(config.install.method, method, "{value}");
            if method == InstallMethod::None {
                assert!(!config.install.routes.any() && !config.install.neighbours.any());
                assert!(
                    warnings
                        .iter()
                        .any(|w| w.to_string().contains("nothing is installed")),
                    "{warnings:?}"
                );
            }
        }
        let c = run(&with("gw", "VppBridgeLoop_InstallMethod", None))
            .unwrap()
            .config;
        assert_eq!(c.install.method, InstallMethod::None);
    }

    #[test]
    fn bvi_reference_rules() {
        // api with a name and no index: looked up by name.
        let mut input = files(HOME_IF, HOME_GW);
        input.gateway.sw_if_index = 0;
        assert_eq!(run(&input).unwrap().config.install.bvi_sw_if_index, None);
        // api with an index and no name: fine.
        let mut input = files(HOME_IF, HOME_GW);
        input.gateway.sw_if_name.clear();
        assert_eq!(run(&input).unwrap().config.install.bvi_sw_if_index, Some(1));
        // vppctl needs the name even with an index.
        input.gateway.install_method = "vppctl".into();
        let err = run(&input).unwrap_err().to_string();
        assert!(err.contains("the vppctl method names the BVI"), "{err}");
        // Nothing to install: no BVI needed.
        input.gateway.sw_if_index = 0;
        input.gateway.install_routes = Default::default();
        input.gateway.install_neighbor = Default::default();
        assert!(run(&input).is_ok());
    }

    #[test]
    fn vppctl_binary_default_and_readme_alias() {
        let binary = |gw: &str| {
            let Loaded { config, warnings } = run(&files(HOME_IF, gw)).unwrap();
            (config.install.vppctl_binary, warnings.len())
        };
        assert_eq!(binary(HOME_GW), ("vppctl".to_owned(), 0));
        let with_key = |extra: &str| HOME_GW.replacen('{', &format!("{{{extra},"), 1);
        assert_eq!(
            binary(&with_key(
                r#""VppBridgeLoop_VppctlBinary": "/usr/bin/vppctl""#
            )),
            ("/usr/bin/vppctl".to_owned(), 0)
        );
        assert_eq!(
            binary(&with_key(r#""VppBridgeLoop_VppctlBin": "/opt/vppctl""#)),
            ("/opt/vppctl".to_owned(), 1)
        );
        assert_eq!(
            binary(&with_key(
                r#""VppBridgeLoop_VppctlBin": "/opt/vppctl", "vppbridgeloop_vppctlbinary": "/usr/bin/vppctl""#
            )),
            ("/usr/bin/vppctl".to_owned(), 1)
        );
    }

    #[test]
    fn socket_path_must_fit_a_unix_socket() {
        let env = Env {
            memif_socket_dir: PathBuf::from(format!("/{}", "d".repeat(100))),
            ..Env::default()
        };
        let err = validate(
            "home",
            &files(HOME_IF, HOME_GW),
            &env,
            &mut StdRng::seed_from_u64(1),
        )
        .unwrap_err();
        assert!(err.to_string().contains("VPP_MEMIF_SOCKET_DIR"), "{err}");
        assert!(err.to_string().contains("more than the 107"), "{err}");
    }

    /// Files near the fixture: each field mostly kept, else drawn from a pool of valid and invalid
    /// values, so that both outcomes are common.
    fn near_fixture() -> impl proptest::strategy::Strategy<Value = Files> {
        use proptest::prelude::*;
        use proptest::sample::select;
        fn or<T: Clone + std::fmt::Debug + 'static>(keep: T, pool: Vec<T>) -> BoxedStrategy<T> {
            prop_oneof![6 => Just(keep), 1 => select(pool)].boxed()
        }
        let cidr = select(vec![
            "172.22.77.33/32",
            "10.0.0.0/8",
            "10.1.2.3/24",
            "fd00::1/128",
            "fe80::/64",
            "",
            "x",
        ]);
        let cidrs =
            || prop_oneof![6 => Just(vec![]), 1 => proptest::collection::vec(cidr.clone(), 1..3)];
        let mac = or(
            "42:42:42:42:42:42",
            vec![
                "02-00-00-00-00-01",
                "0200.0000.0002",
                "ff:ff:ff:ff:ff:ff",
                "4",
            ],
        );
        let prefix = |keep| or(keep, vec!["02:00:00", "02:00:00:00:01", "98", "99:00:00"]);
        let method = or("api", vec!["", "none", "vppctl", "API"]);
        let uid = prop_oneof![6 => Just(3u32), 1 => select(vec![0, 255, 16_777_215, 16_777_216, u32::MAX])];
        let secret = or(
            "s3cr3t",
            vec!["", "random", "012345678901234567890123", "a\0b"],
        );
        let bridge = or(4242u32, vec![0, 1, 16_777_215, 16_777_216]);
        (
            (
                uid,
                secret,
                cidrs(),
                cidrs(),
                cidrs(),
                cidrs(),
                any::<bool>(),
                bridge,
            ),
            (
                mac,
                prefix("98:D2:93"),
                prefix("A4:77:33"),
                method,
                or("loop42", vec![""]),
                or(1u32, vec![0]),
            ),
        )
            .prop_map(
                |((uid, secret, a, b, c, d, garp, bridge), (mac, wg, vpp, method, name, index))| {
                    let owned = |v: Vec<&str>| v.into_iter().map(str::to_owned).collect::<Vec<_>>();
                    let mut f = files(HOME_IF, HOME_GW);
                    f.interface.uid = uid;
                    f.interface.secret = secret.to_owned();
                    f.interface.ipv4_arp_response_ranges.extend(owned(a));
                    f.interface.ipv6_ndp_neigh_adv_ranges.extend(owned(b));
                    f.interface.ipv4_arp_learning_ranges.extend(owned(c));
                    f.interface.ipv6_ndp_learning_ranges.extend(owned(d));
                    f.interface.gratuitous_arp_on_startup = garp;
                    f.interface.vpp_bridge_id = bridge;
                    f.gateway.gateway_mac_addr = mac.to_owned();
                    f.gateway.wg_if_macaddr_prefix = wg.to_owned();
                    f.gateway.vpp_if_macaddr_prefix = vpp.to_owned();
                    f.gateway.install_method = method.to_owned();
                    f.gateway.sw_if_name = name.to_owned();
                    f.gateway.sw_if_index = index;
                    f
                },
            )
    }

    proptest::proptest! {
        /// Any file contents validate or fail with an error, never a panic, and what validates keeps
        /// the invariants the rest of the program relies on.
        #[test]
        fn validation_never_panics_and_keeps_invariants(
            files in proptest::prop_oneof![
                near_fixture(),
                (super::super::file::tests::interface_file(), super::super::file::tests::gateway_file())
                    .prop_map(|(interface, gateway)| Files { interface, interface_path: "if.json".into(), gateway, gateway_path: "gw.json".into() }),
            ],
            seed in 0u64..,
        ) {
            if let Ok(Loaded { config: c, .. }) = validate("x", &files, &Env::default(), &mut StdRng::seed_from_u64(seed)) {
                let prefix_octets = files.gateway.wg_if_macaddr_prefix.split(':').count();
                proptest::prop_assert!(c.uid != 0 && c.uid != u32::MAX);
                proptest::prop_assert!(u64::from(c.uid) < 1u64 << (8 * (6 - prefix_octets)));
                proptest::prop_assert!((1..=BRIDGE_ID_MAX).contains(&c.bridge_id));
                proptest::prop_assert!(c.self_mac.is_unicast() && c.gateway_mac.is_unicast());
                proptest::prop_assert!(c.secret.as_ref().is_none_or(|s| s.expose().len() <= MemifSecret::MAX_LEN));
                proptest::prop_assert!(c.ranges.ipv4_response.iter().all(|n| *n == n.trunc()));
                proptest::prop_assert!(c.ranges.ipv6_learning.iter().all(|n| *n == n.trunc()));
                proptest::prop_assert!(c.install.method != InstallMethod::None || !c.install.routes.any());
            }
        }
    }

    #[test]
    fn the_near_fixture_strategy_yields_both_outcomes() {
        use proptest::strategy::{Strategy, ValueTree};
        let mut runner = proptest::test_runner::TestRunner::deterministic();
        let strategy = near_fixture();
        let outcomes: Vec<bool> = (0..300)
            .map(|_| run(&strategy.new_tree(&mut runner).unwrap().current()).is_ok())
            .collect();
        let valid = outcomes.iter().filter(|ok| **ok).count();
        assert!(
            valid > 5 && valid < 295,
            "{valid} of 300 valid: the property would test only one side"
        );
    }
}
