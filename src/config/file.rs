//! The two JSON files of the original, field for field, as written on disk: `if/<name>.json`
//! ([`InterfaceFile`]) and `gw/<bridge id>.json` ([`GatewayFile`]).
//!
//! These types hold the raw values (strings stay strings); [`super::validate()`] turns them into a
//! [`super::TunnelConfig`]. They read with the original's Go rules ([`super::json`]) and write back in the
//! original's format with its key names (the Kubernetes renderer writes these files).

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

use super::json::{
    DecodeError, Decoded, GoDecode, Json, Lenient, Secret, decode_document, decode_struct,
};

/// `if/<name>.json`: one tunnel interface. Its `Debug` form hides the secret.
#[derive(Clone, Default, PartialEq, Eq, Serialize)]
pub struct InterfaceFile {
    /// memif socket id and interface id, and the low bytes of both derived MACs.
    #[serde(rename = "uid")]
    pub uid: u32,
    /// memif shared secret; `"random"` asks for 20 random characters; empty means none.
    #[serde(rename = "secret")]
    pub secret: String,
    /// Overrides the derived MAC of the WireGuard side (dead in the original; honoured here).
    #[serde(rename = "Macaddr", skip_serializing_if = "String::is_empty")]
    pub macaddr: String,
    /// IPv4 networks behind the tunnel: ARP is answered and /32 routes installed for them.
    #[serde(rename = "IPv4ArpResponseRanges")]
    pub ipv4_arp_response_ranges: Vec<String>,
    /// IPv6 networks behind the tunnel: NS is answered and /128 routes installed for them.
    #[serde(rename = "IPv6NdpNeighAdvRanges")]
    pub ipv6_ndp_neigh_adv_ranges: Vec<String>,
    /// IPv4 destinations on the VPP side whose MACs are learned by ARP instead of using the gateway MAC.
    #[serde(rename = "IPv4ArpLearningRanges")]
    pub ipv4_arp_learning_ranges: Vec<String>,
    /// IPv6 destinations on the VPP side whose MACs are learned by NDP.
    #[serde(rename = "IPv6NdpLearningRanges")]
    pub ipv6_ndp_learning_ranges: Vec<String>,
    /// Announce the response ranges (gratuitous ARP, unsolicited NA) at startup.
    #[serde(rename = "GratuitousARPOnStartUP")]
    pub gratuitous_arp_on_startup: bool,
    /// The VPP bridge domain; also names the gateway file.
    #[serde(rename = "VppBridgeID")]
    pub vpp_bridge_id: u32,
    /// The tunnel's MTU (the largest inner IP packet); 0, the default, derives it from the BVI's MTU in
    /// VPP. Not in the original.
    #[serde(rename = "Mtu", skip_serializing_if = "is_zero")]
    pub mtu: u32,
}

fn is_zero(value: &u32) -> bool {
    *value == 0
}

impl fmt::Debug for InterfaceFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secret = if self.secret.is_empty() {
            ""
        } else {
            "<redacted>"
        };
        f.debug_struct("InterfaceFile")
            .field("uid", &self.uid)
            .field("secret", &secret)
            .field("macaddr", &self.macaddr)
            .field("ipv4_arp_response_ranges", &self.ipv4_arp_response_ranges)
            .field("ipv6_ndp_neigh_adv_ranges", &self.ipv6_ndp_neigh_adv_ranges)
            .field("ipv4_arp_learning_ranges", &self.ipv4_arp_learning_ranges)
            .field("ipv6_ndp_learning_ranges", &self.ipv6_ndp_learning_ranges)
            .field("gratuitous_arp_on_startup", &self.gratuitous_arp_on_startup)
            .field("vpp_bridge_id", &self.vpp_bridge_id)
            .finish()
    }
}

/// `gw/<bridge id>.json`: settings shared by every interface on one bridge domain.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct GatewayFile {
    /// MAC of the VPP BVI (loopback) in the bridge: the default destination of frames sent to VPP.
    #[serde(rename = "GatewayMacAddr")]
    pub gateway_mac_addr: String,
    /// Prefix of the WireGuard side's MAC (2 to 5 octets).
    #[serde(rename = "WgIfMacaddrPrefix")]
    pub wg_if_macaddr_prefix: String,
    /// Prefix of VPP's memif MAC; as many octets as `WgIfMacaddrPrefix`.
    #[serde(rename = "VppIfMacaddrPrefix")]
    pub vpp_if_macaddr_prefix: String,
    /// `api`, `vppctl`, or `none`/empty: how routes and neighbours are installed in VPP.
    #[serde(rename = "VppBridgeLoop_InstallMethod")]
    pub install_method: String,
    /// The vppctl program (default `vppctl`, looked up in `PATH`).
    #[serde(rename = "VppBridgeLoop_VppctlBinary")]
    pub vppctl_binary: String,
    /// `VppBridgeLoop_VppctlBin`: the key the original's README documented; read as an alias of
    /// `VppBridgeLoop_VppctlBinary` and never written.
    #[serde(skip)]
    pub vppctl_bin_alias: String,
    /// Name of the BVI, e.g. `loop42`.
    #[serde(rename = "VppBridgeLoop_SwIfName")]
    pub sw_if_name: String,
    /// sw_if_index of the BVI; 0 means look it up by name.
    #[serde(rename = "VppBridgeLoop_SwIfIndex")]
    pub sw_if_index: u32,
    /// Install a neighbour entry (claimed IP → our MAC) on the BVI after each ARP reply or NA.
    #[serde(rename = "VppBridgeLoop_InstallNeighbor")]
    pub install_neighbor: FamilySwitches,
    /// Flags of those neighbour entries.
    #[serde(rename = "VppBridgeLoop_InstallNeighbor_Flag")]
    pub install_neighbor_flag: NeighborFlagSwitches,
    /// Install a host route via the BVI for each /32 or /128 response range.
    #[serde(rename = "VppBridgeLoop_InstallRoutes")]
    pub install_routes: FamilySwitches,
    /// Refuse to start when a response range overlaps another interface's on the same bridge.
    #[serde(rename = "VppBridgeLoop_CheckRouteConflict")]
    pub check_route_conflict: bool,
    /// Folders scanned (recursively) for the other interfaces' files by the conflict check.
    #[serde(rename = "VppBridgeLoop_CheckRouteConfigPaths")]
    pub check_route_config_paths: Vec<String>,
}

/// `{"IPv4": .., "IPv6": .., "IPv6 link-local": ..}`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct FamilySwitches {
    #[serde(rename = "IPv4")]
    pub ipv4: bool,
    /// IPv6 outside fe80::/10.
    #[serde(rename = "IPv6")]
    pub ipv6: bool,
    /// IPv6 inside fe80::/10.
    #[serde(rename = "IPv6 link-local")]
    pub ipv6_link_local: bool,
}

/// `{"static": .., "no-fib-entry": ..}`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct NeighborFlagSwitches {
    #[serde(rename = "static")]
    pub is_static: bool,
    #[serde(rename = "no-fib-entry")]
    pub no_fib_entry: bool,
}

/// Why a file's bytes do not make a file model.
#[derive(Debug)]
pub(crate) enum FileDecodeError {
    Syntax(serde_json::Error),
    Type(DecodeError),
}

impl fmt::Display for FileDecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FileDecodeError::Syntax(err) => write!(f, "not valid JSON: {err}"),
            FileDecodeError::Type(err) => write!(f, "key {:?}: {}", err.key, err.reason),
        }
    }
}

/// A decoded file with the keys it did not know and the values it skipped.
#[derive(Debug)]
pub(crate) struct Parsed<T> {
    pub file: T,
    pub unknown_keys: Vec<String>,
    pub ignored: Vec<DecodeError>,
}

fn parse_file<T: GoDecode + Default>(bytes: &[u8]) -> Result<Parsed<T>, FileDecodeError> {
    let doc = Json::parse(bytes).map_err(FileDecodeError::Syntax)?;
    let mut file = T::default();
    let decoded = decode_document(&doc, &mut file).map_err(FileDecodeError::Type)?;
    Ok(Parsed {
        file,
        unknown_keys: decoded.unknown_keys,
        ignored: decoded.ignored,
    })
}

impl InterfaceFile {
    /// Reads the JSON text of an interface file with the original's rules.
    pub(crate) fn parse(bytes: &[u8]) -> Result<Parsed<InterfaceFile>, FileDecodeError> {
        parse_file(bytes)
    }

    /// The file's JSON text, with the original's key names.
    pub fn to_json(&self) -> String {
        to_json(self)
    }
}

impl GatewayFile {
    /// Reads the JSON text of a gateway file with the original's rules.
    pub(crate) fn parse(bytes: &[u8]) -> Result<Parsed<GatewayFile>, FileDecodeError> {
        parse_file(bytes)
    }

    /// The file's JSON text, with the original's key names. The alias `VppBridgeLoop_VppctlBin` is not
    /// written, but a value read from it is, under `VppBridgeLoop_VppctlBinary`, so that the written file
    /// names the same vppctl binary.
    pub fn to_json(&self) -> String {
        if self.vppctl_binary.is_empty() && !self.vppctl_bin_alias.is_empty() {
            let mut file = self.clone();
            file.vppctl_binary = std::mem::take(&mut file.vppctl_bin_alias);
            return to_json(&file);
        }
        to_json(self)
    }
}

/// `Deserialize` with the original's rules (case-insensitive keys, last duplicate wins, ...); unknown keys
/// are dropped. The loader uses `InterfaceFile::parse` instead, which also reports them.
impl<'de> Deserialize<'de> for InterfaceFile {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<InterfaceFile, D::Error> {
        deserialize_go(deserializer)
    }
}

/// `Deserialize` with the original's rules, like [`InterfaceFile`]'s.
impl<'de> Deserialize<'de> for GatewayFile {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<GatewayFile, D::Error> {
        deserialize_go(deserializer)
    }
}

fn deserialize_go<'de, D: Deserializer<'de>, T: GoDecode + Default>(
    deserializer: D,
) -> Result<T, D::Error> {
    let doc = Json::deserialize(deserializer)?;
    let mut file = T::default();
    decode_document(&doc, &mut file)
        .map_err(|e| serde::de::Error::custom(FileDecodeError::Type(e)))?;
    Ok(file)
}

fn to_json<T: Serialize>(value: &T) -> String {
    // Serialising these plain structs (strings, numbers, booleans) into a String cannot fail.
    let mut text = serde_json::to_string_pretty(value).expect("config files serialise to JSON");
    text.push('\n');
    text
}

impl GoDecode for InterfaceFile {
    fn decode_into(
        &mut self,
        value: &Json,
        key: &str,
        decoded: &mut Decoded,
    ) -> Result<(), DecodeError> {
        decode_struct(value, key, decoded, |m| {
            Ok(m.field("uid", &mut self.uid)?
                || m.field("secret", &mut Secret(&mut self.secret))?
                || m.field("Macaddr", &mut self.macaddr)?
                || m.field("IPv4ArpResponseRanges", &mut self.ipv4_arp_response_ranges)?
                || m.field("IPv6NdpNeighAdvRanges", &mut self.ipv6_ndp_neigh_adv_ranges)?
                || m.field("IPv4ArpLearningRanges", &mut self.ipv4_arp_learning_ranges)?
                || m.field("IPv6NdpLearningRanges", &mut self.ipv6_ndp_learning_ranges)?
                || m.field(
                    "GratuitousARPOnStartUP",
                    &mut self.gratuitous_arp_on_startup,
                )?
                || m.field("VppBridgeID", &mut self.vpp_bridge_id)?
                || m.field("Mtu", &mut self.mtu)?)
        })
    }
}

impl GoDecode for GatewayFile {
    fn decode_into(
        &mut self,
        value: &Json,
        key: &str,
        decoded: &mut Decoded,
    ) -> Result<(), DecodeError> {
        decode_struct(value, key, decoded, |m| {
            Ok(m.field("GatewayMacAddr", &mut self.gateway_mac_addr)?
                || m.field("WgIfMacaddrPrefix", &mut self.wg_if_macaddr_prefix)?
                || m.field("VppIfMacaddrPrefix", &mut self.vpp_if_macaddr_prefix)?
                || m.field("VppBridgeLoop_InstallMethod", &mut self.install_method)?
                || m.field("VppBridgeLoop_VppctlBinary", &mut self.vppctl_binary)?
                || m.field(
                    "VppBridgeLoop_VppctlBin",
                    &mut Lenient(&mut self.vppctl_bin_alias),
                )?
                || m.field("VppBridgeLoop_SwIfName", &mut self.sw_if_name)?
                || m.field("VppBridgeLoop_SwIfIndex", &mut self.sw_if_index)?
                || m.field("VppBridgeLoop_InstallNeighbor", &mut self.install_neighbor)?
                || m.field(
                    "VppBridgeLoop_InstallNeighbor_Flag",
                    &mut self.install_neighbor_flag,
                )?
                || m.field("VppBridgeLoop_InstallRoutes", &mut self.install_routes)?
                || m.field(
                    "VppBridgeLoop_CheckRouteConflict",
                    &mut self.check_route_conflict,
                )?
                || m.field(
                    "VppBridgeLoop_CheckRouteConfigPaths",
                    &mut self.check_route_config_paths,
                )?)
        })
    }
}

impl GoDecode for FamilySwitches {
    fn decode_into(
        &mut self,
        value: &Json,
        key: &str,
        decoded: &mut Decoded,
    ) -> Result<(), DecodeError> {
        decode_struct(value, key, decoded, |m| {
            Ok(m.field("IPv4", &mut self.ipv4)?
                || m.field("IPv6", &mut self.ipv6)?
                || m.field("IPv6 link-local", &mut self.ipv6_link_local)?)
        })
    }
}

impl GoDecode for NeighborFlagSwitches {
    fn decode_into(
        &mut self,
        value: &Json,
        key: &str,
        decoded: &mut Decoded,
    ) -> Result<(), DecodeError> {
        decode_struct(value, key, decoded, |m| {
            Ok(m.field("static", &mut self.is_static)?
                || m.field("no-fib-entry", &mut self.no_fib_entry)?)
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::super::fixtures::{HOME_GW, HOME_IF};
    use super::*;

    #[test]
    fn reads_the_spec_fixture() {
        let i = InterfaceFile::parse(HOME_IF.as_bytes()).unwrap();
        assert!(i.unknown_keys.is_empty());
        let i = i.file;
        assert_eq!(
            (i.uid, i.secret.as_str(), i.vpp_bridge_id),
            (3, "s3cr3t", 4242)
        );
        assert_eq!(
            i.ipv6_ndp_neigh_adv_ranges,
            ["fd28:cb8f:4c92::33/128", "fe80::42:1817:1/128"]
        );
        assert!(!i.gratuitous_arp_on_startup);

        let g = GatewayFile::parse(HOME_GW.as_bytes()).unwrap().file;
        assert_eq!(g.gateway_mac_addr, "42:42:42:42:42:42");
        assert_eq!(
            (
                g.install_method.as_str(),
                g.sw_if_index,
                g.sw_if_name.as_str()
            ),
            ("api", 1, "loop42")
        );
        assert_eq!(
            g.install_neighbor,
            FamilySwitches {
                ipv4: true,
                ipv6: true,
                ipv6_link_local: true
            }
        );
        assert_eq!(
            g.install_neighbor_flag,
            NeighborFlagSwitches {
                is_static: true,
                no_fib_entry: false
            }
        );
        assert_eq!(
            g.install_routes,
            FamilySwitches {
                ipv4: true,
                ipv6: false,
                ipv6_link_local: true
            }
        );
        assert_eq!(
            g.vppctl_binary, "",
            "the default is applied by validation, not by the file model"
        );
    }

    #[test]
    fn the_secret_is_never_shown() {
        let i = InterfaceFile::parse(HOME_IF.as_bytes()).unwrap().file;
        let text = format!("{i:?}");
        assert!(
            !text.contains("s3cr3t") && text.contains("secret: \"<redacted>\""),
            "{text}"
        );
        let err = InterfaceFile::parse(br#"{"SECRET": 42424242}"#).unwrap_err();
        assert!(!format!("{err:?}").contains("42424242"), "{err:?}");
    }

    #[test]
    fn missing_keys_are_zero() {
        assert_eq!(
            InterfaceFile::parse(b"{}").unwrap().file,
            InterfaceFile::default()
        );
        assert_eq!(
            GatewayFile::parse(b"{}").unwrap().file,
            GatewayFile::default()
        );
    }

    #[test]
    fn keys_of_every_field_match_in_any_case() {
        let text = r#"{"UID": 9, "SECRET": "x", "macADDR": "02:00:00:00:00:01",
            "ipv4arpresponseranges": ["10.0.0.1/32"], "ipv6ndpneighadvranges": ["fd00::1/128"],
            "IPV4ARPLEARNINGRANGES": ["10.1.0.0/16"], "Ipv6NdpLearningRanges": ["fd01::/64"],
            "gratuitousarponstartup": true, "vppbridgeid": 7}"#;
        let parsed = InterfaceFile::parse(text.as_bytes()).unwrap();
        assert!(parsed.unknown_keys.is_empty(), "{:?}", parsed.unknown_keys);
        let f = parsed.file;
        assert_eq!(
            (f.uid, f.secret.as_str(), f.macaddr.as_str()),
            (9, "x", "02:00:00:00:00:01")
        );
        assert_eq!(f.ipv4_arp_learning_ranges, ["10.1.0.0/16"]);
        assert_eq!(f.ipv6_ndp_learning_ranges, ["fd01::/64"]);
        assert!(f.gratuitous_arp_on_startup);
        assert_eq!(f.vpp_bridge_id, 7);

        let text = r#"{"gatewaymacaddr": "a", "WGIFMACADDRPREFIX": "b", "vppifmacaddrprefix": "c",
            "vppbridgeloop_installmethod": "vppctl", "VPPBRIDGELOOP_VPPCTLBINARY": "/usr/bin/vppctl",
            "vppbridgeloop_swifname": "loop1", "vppbridgeloop_swifindex": 4,
            "vppbridgeloop_installneighbor": {"ipv4": true, "IPV6": true, "ipv6 LINK-LOCAL": true},
            "vppbridgeloop_installneighbor_flag": {"STATIC": true, "No-Fib-Entry": true},
            "vppbridgeloop_installroutes": {"ipv6 link-local": true},
            "vppbridgeloop_checkrouteconflict": true, "vppbridgeloop_checkrouteconfigpaths": ["/etc/x"]}"#;
        let parsed = GatewayFile::parse(text.as_bytes()).unwrap();
        assert!(parsed.unknown_keys.is_empty(), "{:?}", parsed.unknown_keys);
        let g = parsed.file;
        assert_eq!(
            (g.gateway_mac_addr.as_str(), g.wg_if_macaddr_prefix.as_str()),
            ("a", "b")
        );
        assert_eq!(
            (g.vpp_if_macaddr_prefix.as_str(), g.install_method.as_str()),
            ("c", "vppctl")
        );
        assert_eq!(
            (
                g.vppctl_binary.as_str(),
                g.sw_if_name.as_str(),
                g.sw_if_index
            ),
            ("/usr/bin/vppctl", "loop1", 4)
        );
        assert_eq!(
            g.install_neighbor,
            FamilySwitches {
                ipv4: true,
                ipv6: true,
                ipv6_link_local: true
            }
        );
        assert_eq!(
            g.install_neighbor_flag,
            NeighborFlagSwitches {
                is_static: true,
                no_fib_entry: true
            }
        );
        assert_eq!(
            g.install_routes,
            FamilySwitches {
                ipv4: false,
                ipv6: false,
                ipv6_link_local: true
            }
        );
        assert!(g.check_route_conflict);
        assert_eq!(g.check_route_config_paths, ["/etc/x"]);
    }

    #[test]
    fn the_readme_vppctl_key_is_read_as_an_alias() {
        let g = GatewayFile::parse(br#"{"VppBridgeLoop_VppctlBin": "/opt/vppctl"}"#)
            .unwrap()
            .file;
        assert_eq!(
            (g.vppctl_bin_alias.as_str(), g.vppctl_binary.as_str()),
            ("/opt/vppctl", "")
        );
    }

    #[test]
    fn a_written_back_file_keeps_the_vppctl_binary_of_the_alias() {
        // Found by the config_json fuzz target: `render` wrote the gateway file without the aliased
        // binary, so the daemon reading it would have run plain `vppctl`.
        let g = GatewayFile::parse(br#"{"VppBridgeLoop_VppctlBin": "/opt/vppctl"}"#)
            .unwrap()
            .file;
        let text = g.to_json();
        assert!(
            !text.contains("VppctlBin\""),
            "the alias key is never written: {text}"
        );
        let back = GatewayFile::parse(text.as_bytes()).unwrap().file;
        assert_eq!(
            (back.vppctl_binary.as_str(), back.vppctl_bin_alias.as_str()),
            ("/opt/vppctl", "")
        );
        // With both keys the documented one wins, as in validation.
        let both = GatewayFile::parse(
            br#"{"VppBridgeLoop_VppctlBinary": "/usr/bin/vppctl", "VppBridgeLoop_VppctlBin": "/opt/vppctl"}"#,
        )
        .unwrap()
        .file;
        let back = GatewayFile::parse(both.to_json().as_bytes()).unwrap().file;
        assert_eq!(back.vppctl_binary, "/usr/bin/vppctl");
    }

    #[test]
    fn unknown_keys_are_collected() {
        let parsed = GatewayFile::parse(
            br#"{"GatewayMac": "x", "VppBridgeLoop_InstallRoutes": {"IPv5": true}}"#,
        )
        .unwrap();
        assert_eq!(
            parsed.unknown_keys,
            ["GatewayMac", "VppBridgeLoop_InstallRoutes.IPv5"]
        );
    }

    #[test]
    fn writes_back_the_original_format_and_reads_it_again() {
        let i = InterfaceFile::parse(HOME_IF.as_bytes()).unwrap().file;
        let text = i.to_json();
        assert!(text.contains("\"IPv6NdpNeighAdvRanges\": [\n"), "{text}");
        assert!(
            !text.contains("Macaddr"),
            "an empty override is not written: {text}"
        );
        assert_eq!(InterfaceFile::parse(text.as_bytes()).unwrap().file, i);

        let mut g = GatewayFile::parse(HOME_GW.as_bytes()).unwrap().file;
        g.vppctl_binary = "/usr/bin/vppctl".into();
        g.vppctl_bin_alias = "ignored on write".into();
        let text = g.to_json();
        assert!(text.contains("\"IPv6 link-local\": true"), "{text}");
        assert!(text.contains("\"no-fib-entry\": false"), "{text}");
        assert!(
            !text.contains("VppctlBin\""),
            "the alias is never written: {text}"
        );
        let back = GatewayFile::parse(text.as_bytes()).unwrap().file;
        g.vppctl_bin_alias.clear();
        assert_eq!(back, g);
    }

    fn text() -> impl proptest::strategy::Strategy<Value = String> {
        proptest::prop_oneof!["[0-9a-fA-F:./-]{0,20}", ".{0,12}"]
    }

    fn list() -> impl proptest::strategy::Strategy<Value = Vec<String>> {
        proptest::collection::vec(text(), 0..4)
    }

    fn switches() -> impl proptest::strategy::Strategy<Value = FamilySwitches> {
        use proptest::prelude::*;
        (any::<bool>(), any::<bool>(), any::<bool>()).prop_map(|(ipv4, ipv6, ipv6_link_local)| {
            FamilySwitches {
                ipv4,
                ipv6,
                ipv6_link_local,
            }
        })
    }

    /// Any interface file model.
    pub(crate) fn interface_file() -> impl proptest::strategy::Strategy<Value = InterfaceFile> {
        use proptest::prelude::*;
        (
            any::<u32>(),
            text(),
            text(),
            list(),
            list(),
            list(),
            list(),
            any::<bool>(),
            any::<u32>(),
        )
            .prop_map(
                |(uid, secret, macaddr, a, b, c, d, garp, bridge)| InterfaceFile {
                    uid,
                    secret,
                    macaddr,
                    ipv4_arp_response_ranges: a,
                    ipv6_ndp_neigh_adv_ranges: b,
                    ipv4_arp_learning_ranges: c,
                    ipv6_ndp_learning_ranges: d,
                    gratuitous_arp_on_startup: garp,
                    vpp_bridge_id: bridge,
                    mtu: 0,
                },
            )
    }

    /// Any gateway file model (the alias is never written, so it stays empty).
    pub(crate) fn gateway_file() -> impl proptest::strategy::Strategy<Value = GatewayFile> {
        use proptest::prelude::*;
        (
            (text(), text(), text(), text(), text(), text(), any::<u32>()),
            (
                switches(),
                any::<bool>(),
                any::<bool>(),
                switches(),
                any::<bool>(),
                list(),
            ),
        )
            .prop_map(
                |(
                    (gw, wg, vpp, method, vppctl, name, index),
                    (nb, st, nf, routes, check, paths),
                )| GatewayFile {
                    gateway_mac_addr: gw,
                    wg_if_macaddr_prefix: wg,
                    vpp_if_macaddr_prefix: vpp,
                    install_method: method,
                    vppctl_binary: vppctl,
                    vppctl_bin_alias: String::new(),
                    sw_if_name: name,
                    sw_if_index: index,
                    install_neighbor: nb,
                    install_neighbor_flag: NeighborFlagSwitches {
                        is_static: st,
                        no_fib_entry: nf,
                    },
                    install_routes: routes,
                    check_route_conflict: check,
                    check_route_config_paths: paths,
                },
            )
    }

    proptest::proptest! {
        #[test]
        fn hostile_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let _ = InterfaceFile::parse(&bytes);
            let _ = GatewayFile::parse(&bytes);
        }

        #[test]
        fn written_files_read_back_equal(i in interface_file(), g in gateway_file()) {
            proptest::prop_assert_eq!(InterfaceFile::parse(i.to_json().as_bytes()).unwrap().file, i);
            proptest::prop_assert_eq!(GatewayFile::parse(g.to_json().as_bytes()).unwrap().file, g);
        }
    }
}
