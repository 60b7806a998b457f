//! The `WireGuardVppTunnel` custom resource (group `wgvpp.io`, version `v1alpha1`, short name `wgvt`): its
//! spec and status, and the OpenAPI schema the API server validates them with.
//!
//! What the schema alone cannot say is written as CEL rules (`x-kubernetes-validations`): CIDR families,
//! link-local NDP entries as single addresses (/128), and the fields that are immutable while the
//! tunnel exists (`uid`, `bridgeID`, `nodeName`). Status conditions carry `metav1.Condition`'s own
//! constraints (type and reason patterns, the status enum, the message's length), which k8s-openapi's
//! schema lacks. Unsigned
//! integers get explicit `int32`/`int64` schemas because the API server warns about schemars' `uint16` and
//! `uint32` formats. `crd/wireguardvpptunnels.yaml` is this schema as YAML; a test fails when it is stale.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::config::MTU_RANGE;

/// The first WireGuard listen port allocated when the spec does not name one.
pub const DEFAULT_LISTEN_PORT: u16 = 51820;

/// The largest memif id the schema accepts; VPP reserves `u32::MAX` (~0).
pub const MAX_UID: u32 = u32::MAX - 1;

/// The largest VPP bridge domain id (VPP limits it to 24 bits).
pub const MAX_BRIDGE_ID: u32 = (1 << 24) - 1;

/// One WireGuard tunnel between a peer and the VPP bridge domain of one node.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "wgvpp.io",
    version = "v1alpha1",
    kind = "WireGuardVppTunnel",
    namespaced,
    shortname = "wgvt",
    status = "WireGuardVppTunnelStatus",
    derive = "PartialEq",
    doc = "A userspace WireGuard tunnel attached to a VPP bridge domain through memif.",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","description":"why the tunnel is (not) Ready","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Peers","type":"string","description":"peers with a recent handshake / all peers","jsonPath":".status.peersSummary"}"#,
    printcolumn = r#"{"name":"Handshake","type":"string","description":"how long ago the latest handshake of any peer was","jsonPath":".status.latestHandshake"}"#,
    printcolumn = r#"{"name":"Node","type":"string","jsonPath":".spec.nodeName"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    printcolumn = r#"{"name":"Public Key","type":"string","priority":1,"description":"the interface's public key, for the peer","jsonPath":".status.publicKey"}"#,
    printcolumn = r#"{"name":"Port","type":"integer","priority":1,"description":"the UDP port the tunnel listens on","jsonPath":".status.listenPort"}"#,
    selectable = ".spec.nodeName"
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "!has(oldSelf.uid) || (has(self.uid) && self.uid == oldSelf.uid)",
     "message": "uid is immutable once set: delete and re-create the tunnel to change it"},
    {"rule": "self.bridgeID == oldSelf.bridgeID",
     "message": "bridgeID is immutable: delete and re-create the tunnel to move it to another bridge"},
    {"rule": "self.nodeName == oldSelf.nodeName",
     "message": "nodeName is immutable: delete and re-create the tunnel to move it to another node"}
]))]
pub struct WireGuardVppTunnelSpec {
    /// The node whose VPP carries the tunnel; only that node's controller runs it.
    #[schemars(length(min = 1, max = 253))]
    pub node_name: String,

    /// Interface name: the UAPI socket (`wg show NAME`), the memif socket file and the log prefix.
    /// Default: the resource name, which must then be at most 15 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[A-Za-z0-9_-]{1,15}$"))]
    pub interface_name: Option<String>,

    /// The memif id and socket id, also the low bytes of both MAC addresses. Allocated (unique on the
    /// node, recorded in the status) when omitted. Immutable once set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "uid_schema")]
    pub uid: Option<u32>,

    /// The VPP bridge domain. Its gateway settings come from the gateway file `<bridgeID>.json`.
    #[serde(rename = "bridgeID")]
    #[schemars(schema_with = "bridge_id_schema")]
    pub bridge_id: u32,

    /// The memif shared secret (at most 23 bytes are used). No secret when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memif_secret_ref: Option<SecretKeyRef>,

    /// IPv4 neighbour handling (ARP).
    #[serde(default)]
    pub arp: ArpSpec,

    /// IPv6 neighbour handling (NDP).
    #[serde(default)]
    pub ndp: NdpSpec,

    /// The tunnel MTU (the largest inner IP packet), 1280 to 9000. Default: the BVI's IP MTU in VPP
    /// less WireGuard's 80 bytes. Larger packets from VPP are answered with ICMP "too big".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "mtu_schema")]
    pub mtu: Option<u16>,

    /// The WireGuard side.
    pub wireguard: WireGuardSpec,
}

/// A key in a Secret of the tunnel's namespace.
#[derive(
    Deserialize, Serialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, JsonSchema,
)]
pub struct SecretKeyRef {
    /// The Secret's name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// The key inside the Secret's data.
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// IPv4 addresses behind the tunnel and on the VPP side.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ArpSpec {
    /// Addresses behind this tunnel: ARP requests for them are answered and /32 host routes installed.
    #[serde(default)]
    #[schemars(schema_with = "ipv4_cidr_list")]
    pub respond: Vec<String>,
    /// VPP-side destinations whose MAC addresses are learned by ARP instead of using the gateway MAC.
    #[serde(default)]
    #[schemars(schema_with = "ipv4_cidr_list")]
    pub learn: Vec<String>,
    /// Send a gratuitous ARP for every address of `respond` when VPP connects (IPv4 only; see
    /// `ndp.announceOnStartup` for IPv6).
    #[serde(default)]
    pub announce_on_startup: bool,
}

/// IPv6 addresses behind the tunnel and on the VPP side.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NdpSpec {
    /// Addresses behind this tunnel: neighbour solicitations for them are answered. Link-local
    /// entries (fe80::/10) must be /128.
    #[serde(default)]
    #[schemars(schema_with = "ndp_respond_list")]
    pub respond: Vec<String>,
    /// VPP-side destinations whose MAC addresses are learned by NDP instead of using the gateway MAC.
    #[serde(default)]
    #[schemars(schema_with = "ipv6_cidr_list")]
    pub learn: Vec<String>,
    /// Send an unsolicited neighbour advertisement for every address of `respond` when VPP connects
    /// (IPv6 only; see `arp.announceOnStartup` for IPv4).
    #[serde(default)]
    pub announce_on_startup: bool,
}

/// The WireGuard interface and its peers.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WireGuardSpec {
    /// The interface's private key. Generated into this Secret (owned by the tunnel) when absent.
    pub private_key_secret_ref: SecretKeyRef,
    /// UDP port on the node (the pod uses the host network). Allocated when omitted: the lowest
    /// port from 51820 up that no other tunnel of the node uses, recorded in `status.listenPort`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "listen_port_schema")]
    pub listen_port: Option<u16>,
    /// How often peer endpoints given as DNS names are resolved again, as a duration (`90s`, `5m`,
    /// `1h`; `0s` never). The peer moves to a new address only when the name's address changed
    /// and it has no recent handshake. Default `2m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "duration_schema")]
    pub reresolve_interval: Option<String>,
    /// The firewall mark of the WireGuard UDP socket (`wg set ... fwmark`), for policy routing on the
    /// node. Needs CAP_NET_ADMIN: the chart's `netAdmin: true`. None when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "fwmark_schema")]
    pub fwmark: Option<u32>,
    /// The peers, keyed by public key.
    #[serde(default)]
    #[schemars(schema_with = "peer_list_schema")]
    pub peers: Vec<PeerSpec>,
}

/// One WireGuard peer.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PeerSpec {
    /// The peer's public key: 32 bytes in base64 (44 characters).
    #[schemars(regex(pattern = r"^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$"))]
    pub public_key: String,
    /// A name for people: the `friendly_name` label of the peer's metrics (as the common WireGuard
    /// exporter has it). 1 to 63 characters of `[A-Za-z0-9._-]`, starting with a letter or digit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    )]
    pub name: Option<String>,
    /// An optional preshared key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preshared_key_secret_ref: Option<SecretKeyRef>,
    /// `host:port` or `[ipv6]:port`; a name is resolved when the tunnel starts or the spec changes,
    /// and again every `reresolveInterval`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]{1,253}):[0-9]{1,5}$"))]
    pub endpoint: Option<String>,
    /// Addresses routed to this peer and accepted from it.
    #[serde(default, rename = "allowedIPs")]
    #[schemars(schema_with = "any_cidr_list")]
    pub allowed_ips: Vec<String>,
    /// Seconds between keepalives; none when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "keepalive_schema")]
    pub persistent_keepalive: Option<u16>,
}

/// What the controller last saw of the tunnel.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WireGuardVppTunnelStatus {
    /// The `metadata.generation` these conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `ConfigValid`, `NoConflict`, `VppConfigured`, `MemifConnected` and `Ready`.
    #[serde(default)]
    #[schemars(schema_with = "condition_list_schema")]
    pub conditions: Vec<Condition>,
    /// The memif id in use: `spec.uid`, or the one allocated when that is omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "status_u32_schema")]
    pub uid: Option<u32>,
    /// The interface's public key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
    /// The UDP port the tunnel listens on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "status_u32_schema")]
    pub listen_port: Option<u16>,
    /// The memif interface in VPP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memif: Option<MemifStatus>,
    /// Peers with a handshake in the last 3 minutes, over all peers (`1/2`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peers_summary: Option<String>,
    /// How long ago the latest handshake of any peer was, as a coarse bucket: `Never`, `Within3m`,
    /// `Within10m` or `Older` (exact times and byte counters are metrics, not status).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "handshake_age_schema")]
    pub latest_handshake: Option<String>,
    /// Per-peer state.
    #[serde(default)]
    pub peers: Vec<PeerStatus>,
}

/// The memif interface of a tunnel.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MemifStatus {
    /// The memif control socket (VPP connects to it).
    pub socket: String,
    /// VPP's index of the memif interface, once created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "status_u32_schema")]
    pub sw_if_index: Option<u32>,
}

/// One peer's state.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PeerStatus {
    /// The peer's public key.
    pub public_key: String,
    /// The endpoint in use (the latest source address of authenticated packets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// How long ago its latest handshake was: `Never`, `Within3m`, `Within10m` or `Older`. (Absent
    /// only in a status written by an older controller, until it is written again.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "handshake_age_schema")]
    pub handshake: Option<String>,
}

fn uid_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "integer", "format": "int64", "minimum": 1, "maximum": MAX_UID})
}

fn bridge_id_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "integer", "format": "int32", "minimum": 1, "maximum": MAX_BRIDGE_ID})
}

fn listen_port_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "integer", "format": "int32", "minimum": 1, "maximum": 65535})
}

fn duration_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "string", "maxLength": 32, "pattern": r"^([0-9]{1,9}(h|m|s))+$"})
}

fn mtu_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "integer", "format": "int32",
                  "minimum": MTU_RANGE.start(), "maximum": MTU_RANGE.end()})
}

fn fwmark_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "integer", "format": "int64", "minimum": 1, "maximum": u32::MAX})
}

fn keepalive_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "integer", "format": "int32", "minimum": 1, "maximum": 65535})
}

fn status_u32_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "integer", "format": "int64", "minimum": 0})
}

fn handshake_age_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "string", "enum": ["Never", "Within3m", "Within10m", "Older"]})
}

/// A list of CIDRs whose items must satisfy `family_rule` (a CEL expression over the item `self`).
fn cidr_list(family_rule: &str, message: &str) -> Schema {
    json_schema!({
        "type": "array",
        "maxItems": 256,
        "default": [],
        "items": {
            "type": "string",
            "maxLength": 64,
            "x-kubernetes-validations": [{"rule": family_rule, "message": message}]
        }
    })
}

fn ipv4_cidr_list(_: &mut SchemaGenerator) -> Schema {
    cidr_list(
        "isCIDR(self) && cidr(self).ip().family() == 4",
        "must be an IPv4 CIDR such as 172.22.77.33/32",
    )
}

fn ipv6_cidr_list(_: &mut SchemaGenerator) -> Schema {
    cidr_list(
        "isCIDR(self) && cidr(self).ip().family() == 6",
        "must be an IPv6 CIDR such as fd28:cb8f:4c92::33/128",
    )
}

/// IPv6 CIDRs, of which the link-local ones (fe80::/10) are single addresses: NDP answers for an
/// address, and VPP's neighbour and route for a link-local one name exactly one.
fn ndp_respond_list(generator: &mut SchemaGenerator) -> Schema {
    let mut schema = ipv6_cidr_list(generator);
    let rule = json!({
        "rule": "!isCIDR(self) || cidr(self).ip().family() != 6 \
                 || !cidr(self).ip().isLinkLocalUnicast() || cidr(self).prefixLength() == 128",
        "message": "a link-local entry must be a single address (/128), such as fe80::42:1817:1/128"
    });
    if let Some(rules) = schema
        .get_mut("items")
        .and_then(|items| items.get_mut("x-kubernetes-validations"))
        .and_then(|rules| rules.as_array_mut())
    {
        rules.push(rule);
    }
    schema
}

fn any_cidr_list(_: &mut SchemaGenerator) -> Schema {
    cidr_list(
        "isCIDR(self)",
        "must be a CIDR such as 0.0.0.0/0 or fd00::/8",
    )
}

fn peer_list_schema(generator: &mut SchemaGenerator) -> Schema {
    let mut schema = json_schema!({
        "type": "array",
        "maxItems": 1024,
        "default": [],
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["publicKey"]
    });
    schema.insert("items".into(), generator.subschema_for::<PeerSpec>().into());
    schema
}

fn condition_list_schema(generator: &mut SchemaGenerator) -> Schema {
    let mut schema = json_schema!({
        "type": "array",
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["type"]
    });
    let mut item = generator.subschema_for::<Condition>();
    // metav1.Condition's own validation (its kubebuilder markers), which k8s-openapi's schema lacks.
    let constraints = [
        (
            "type",
            json!({"maxLength": 316, "pattern": CONDITION_TYPE_PATTERN}),
        ),
        ("status", json!({"enum": ["True", "False", "Unknown"]})),
        (
            "reason",
            json!({"minLength": 1, "maxLength": 1024, "pattern": CONDITION_REASON_PATTERN}),
        ),
        ("message", json!({"maxLength": 32768})),
        ("lastTransitionTime", json!({"format": "date-time"})),
        ("observedGeneration", json!({"minimum": 0})),
    ];
    if let Some(properties) = item.get_mut("properties").and_then(|p| p.as_object_mut()) {
        for (name, extra) in constraints {
            if let (Some(property), Some(extra)) = (
                properties.get_mut(name).and_then(|p| p.as_object_mut()),
                extra.as_object(),
            ) {
                property.extend(extra.clone());
            }
        }
    }
    schema.insert("items".into(), item.into());
    schema
}

/// `metav1.Condition`'s type: a name, optionally prefixed by a DNS subdomain and `/`.
const CONDITION_TYPE_PATTERN: &str = r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$";

/// `metav1.Condition`'s reason: CamelCase, as the controller writes them.
const CONDITION_REASON_PATTERN: &str = r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$";
