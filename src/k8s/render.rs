//! A `WireGuardVppTunnel` rendered into the original's configuration model: the interface file
//! (`if/<name>.json`, with the original's key names), the bridge's gateway file (`gw/<id>.json`) and a
//! wg(8) configuration. [`render`] is pure; the controller runs what it returns, and `wireguard-vpp render`
//! ([`run`]) writes it to files so that the mapping can be read and tested offline.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::crd::{SecretKeyRef, WireGuardVppTunnel};
use super::gateway::{GatewayError, GatewayFile};
use super::keys::{Key, KeyError};

/// Bytes of the memif secret that VPP and the memif protocol keep (a 24-byte field with its NUL).
pub const MAX_MEMIF_SECRET_LEN: usize = 23;

/// The longest interface name `wg` accepts (IFNAMSIZ - 1).
pub const MAX_INTERFACE_NAME_LEN: usize = 15;

/// The original's `if/<name>.json`, with its key names.
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq)]
pub struct InterfaceFile {
    /// memif id, socket id and the low bytes of the MAC addresses.
    pub uid: u32,
    /// memif shared secret; empty for none.
    pub secret: String,
    /// Addresses behind the tunnel answered by ARP (networks, host bits masked).
    #[serde(rename = "IPv4ArpResponseRanges")]
    pub ipv4_arp_response_ranges: Vec<String>,
    /// Addresses behind the tunnel answered by NDP.
    #[serde(rename = "IPv6NdpNeighAdvRanges")]
    pub ipv6_ndp_neigh_adv_ranges: Vec<String>,
    /// VPP-side destinations learned by ARP.
    #[serde(rename = "IPv4ArpLearningRanges")]
    pub ipv4_arp_learning_ranges: Vec<String>,
    /// VPP-side destinations learned by NDP.
    #[serde(rename = "IPv6NdpLearningRanges")]
    pub ipv6_ndp_learning_ranges: Vec<String>,
    /// Announce every response address at start.
    #[serde(rename = "GratuitousARPOnStartUP")]
    pub gratuitous_arp_on_startup: bool,
    /// The VPP bridge domain.
    #[serde(rename = "VppBridgeID")]
    pub vpp_bridge_id: u32,
}

impl std::fmt::Debug for InterfaceFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InterfaceFile")
            .field("uid", &self.uid)
            .field(
                "secret",
                &if self.secret.is_empty() {
                    ""
                } else {
                    "<redacted>"
                },
            )
            .field("ipv4_arp_response_ranges", &self.ipv4_arp_response_ranges)
            .field("ipv6_ndp_neigh_adv_ranges", &self.ipv6_ndp_neigh_adv_ranges)
            .field("ipv4_arp_learning_ranges", &self.ipv4_arp_learning_ranges)
            .field("ipv6_ndp_learning_ranges", &self.ipv6_ndp_learning_ranges)
            .field("gratuitous_arp_on_startup", &self.gratuitous_arp_on_startup)
            .field("vpp_bridge_id", &self.vpp_bridge_id)
            .finish()
    }
}

/// The WireGuard side of a tunnel, as a wg(8) configuration says it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireGuardConfig {
    /// The private key; `None` only when rendering offline without the Secret.
    pub private_key: Option<Key>,
    /// The UDP listen port.
    pub listen_port: u16,
    /// The peers, in spec order.
    pub peers: Vec<PeerConfig>,
}

/// One peer of a [`WireGuardConfig`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerConfig {
    /// The peer's public key.
    pub public_key: Key,
    /// The preshared key, if any.
    pub preshared_key: Option<Key>,
    /// `host:port`, resolved by the runtime.
    pub endpoint: Option<String>,
    /// Allowed source and destination networks.
    pub allowed_ips: Vec<IpNet>,
    /// Keepalive interval in seconds.
    pub persistent_keepalive: Option<u16>,
}

impl WireGuardConfig {
    /// The wg(8) configuration text (`wg setconf` reads it). It holds keys: write it owner-only.
    pub fn to_wg_conf(&self) -> String {
        let mut out = String::from("[Interface]\n");
        match &self.private_key {
            Some(key) => out.push_str(&format!("PrivateKey = {}\n", key.to_base64())),
            None => out.push_str("# PrivateKey: not rendered (its Secret was not in the input)\n"),
        }
        out.push_str(&format!("ListenPort = {}\n", self.listen_port));
        for peer in &self.peers {
            out.push_str(&format!(
                "\n[Peer]\nPublicKey = {}\n",
                peer.public_key.to_base64()
            ));
            if let Some(psk) = &peer.preshared_key {
                out.push_str(&format!("PresharedKey = {}\n", psk.to_base64()));
            }
            if let Some(endpoint) = &peer.endpoint {
                out.push_str(&format!("Endpoint = {endpoint}\n"));
            }
            if !peer.allowed_ips.is_empty() {
                let ips: Vec<String> = peer.allowed_ips.iter().map(ToString::to_string).collect();
                out.push_str(&format!("AllowedIPs = {}\n", ips.join(", ")));
            }
            if let Some(keepalive) = peer.persistent_keepalive {
                out.push_str(&format!("PersistentKeepalive = {keepalive}\n"));
            }
        }
        out
    }
}

/// Everything one tunnel needs, in the original's model.
#[derive(Debug, Clone, PartialEq)]
pub struct RenderedTunnel {
    /// The interface name (UAPI socket, memif socket file, log prefix).
    pub name: String,
    /// `if/<name>.json`.
    pub interface: InterfaceFile,
    /// `gw/<bridgeID>.json`; `None` only when rendering offline without a gateway directory.
    pub gateway: Option<GatewayFile>,
    /// The wg(8) side.
    pub wireguard: WireGuardConfig,
}

impl RenderedTunnel {
    /// True when going from `self` to `new` needs a restart (new VPP objects); otherwise only the
    /// WireGuard side changed and can be applied as a diff that keeps the sessions of unchanged peers.
    pub fn needs_restart(&self, new: &RenderedTunnel) -> bool {
        self.name != new.name || self.interface != new.interface || self.gateway != new.gateway
    }
}

/// The Secret values a tunnel refers to, fetched beforehand (so [`render`] stays pure).
#[derive(Default, Clone)]
pub struct SecretValues {
    values: BTreeMap<SecretKeyRef, Vec<u8>>,
}

impl SecretValues {
    /// Records the value of `reference`.
    pub fn insert(&mut self, reference: SecretKeyRef, value: Vec<u8>) {
        self.values.insert(reference, value);
    }

    /// The value of `reference`, if known.
    pub fn get(&self, reference: &SecretKeyRef) -> Option<&[u8]> {
        self.values.get(reference).map(Vec::as_slice)
    }
}

impl std::fmt::Debug for SecretValues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.values.keys()).finish()
    }
}

/// Why a tunnel cannot be rendered. Each variant names the field and says what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RenderError {
    /// The interface name is unusable.
    #[error("{reason}: set spec.interfaceName to 1 to 15 characters of [A-Za-z0-9_-]")]
    InterfaceName {
        /// What is wrong.
        reason: String,
    },
    /// No uid in the spec and none allocated.
    #[error(
        "spec.uid is not set and no uid was allocated (status.uid): set spec.uid to render offline"
    )]
    NoUid,
    /// The uid does not fit next to the gateway's MAC prefix.
    #[error(
        "spec.uid {uid} is larger than {max}, the largest the {octets}-octet MAC prefix of {path} leaves room for"
    )]
    UidTooLarge {
        /// The uid.
        uid: u32,
        /// The bound.
        max: u32,
        /// Octets of the MAC prefix.
        octets: usize,
        /// The gateway file.
        path: PathBuf,
    },
    /// A CIDR in the spec is invalid.
    #[error("{field}: {value:?} is not {expected}")]
    Cidr {
        /// The field, e.g. `spec.arp.respond[0]`.
        field: String,
        /// The value.
        value: String,
        /// What was expected.
        expected: &'static str,
    },
    /// A Secret or key is missing.
    #[error("{field}: Secret {secret:?} has no key {key:?} (create it, or fix the reference)")]
    MissingSecret {
        /// The spec field holding the reference.
        field: String,
        /// The Secret.
        secret: String,
        /// The key.
        key: String,
    },
    /// A key in a Secret or the spec is not a WireGuard key.
    #[error("{field} (Secret {secret:?} key {key:?}): {source}")]
    BadSecretKey {
        /// The spec field.
        field: String,
        /// The Secret.
        secret: String,
        /// The key.
        key: String,
        /// Why.
        #[source]
        source: KeyError,
    },
    /// A peer's public key is not a WireGuard key.
    #[error("{field}: {source}")]
    BadPublicKey {
        /// The spec field.
        field: String,
        /// Why.
        #[source]
        source: KeyError,
    },
    /// The memif secret is too long or not text.
    #[error("spec.memifSecretRef (Secret {secret:?} key {key:?}): {reason}")]
    MemifSecret {
        /// The Secret.
        secret: String,
        /// The key.
        key: String,
        /// Why.
        reason: String,
    },
    /// The gateway file is unusable.
    #[error(transparent)]
    Gateway(#[from] GatewayError),
    /// The input file of `render` is unusable.
    #[error("{path}: {reason}")]
    Input {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Writing an output file failed.
    #[error("writing {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

impl RenderError {
    /// A short, bounded name for metric labels and condition reasons.
    pub fn kind(&self) -> &'static str {
        match self {
            RenderError::InterfaceName { .. } => "InvalidInterfaceName",
            RenderError::NoUid => "NoUid",
            RenderError::UidTooLarge { .. } => "UidTooLarge",
            RenderError::Cidr { .. } => "InvalidCIDR",
            RenderError::MissingSecret { .. } => "SecretMissing",
            RenderError::BadSecretKey { .. } | RenderError::BadPublicKey { .. } => "InvalidKey",
            RenderError::MemifSecret { .. } => "InvalidMemifSecret",
            RenderError::Gateway(_) => "GatewayFileInvalid",
            RenderError::Input { .. } => "InvalidInput",
            RenderError::Write { .. } => "WriteFailed",
        }
    }
}

/// The interface name of a tunnel: `spec.interfaceName`, else the resource name.
pub fn interface_name(tunnel: &WireGuardVppTunnel) -> Result<String, RenderError> {
    let name = match &tunnel.spec.interface_name {
        Some(name) => name.clone(),
        None => tunnel.metadata.name.clone().unwrap_or_default(),
    };
    let valid_chars = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if name.is_empty() || name.len() > MAX_INTERFACE_NAME_LEN || !valid_chars {
        return Err(RenderError::InterfaceName {
            reason: format!(
                "the interface name {name:?} is not usable (wg accepts at most 15 characters)"
            ),
        });
    }
    Ok(name)
}

/// Which networks a CIDR list may hold.
#[derive(Clone, Copy)]
enum Family {
    V4,
    V6,
    Any,
}

/// Parses a CIDR list; `mask` stores networks (host bits cleared) as the original does.
fn cidrs(
    field: &str,
    values: &[String],
    family: Family,
    mask: bool,
) -> Result<Vec<IpNet>, RenderError> {
    let expected = match family {
        Family::V4 => "an IPv4 CIDR such as 172.22.77.33/32",
        Family::V6 => "an IPv6 CIDR such as fd28:cb8f:4c92::33/128",
        Family::Any => "a CIDR such as 0.0.0.0/0",
    };
    values
        .iter()
        .enumerate()
        .map(|(i, value)| {
            let error = || RenderError::Cidr {
                field: format!("{field}[{i}]"),
                value: value.clone(),
                expected,
            };
            let net: IpNet = value.parse().map_err(|_| error())?;
            match (family, net) {
                (Family::V4, IpNet::V6(_)) | (Family::V6, IpNet::V4(_)) => Err(error()),
                _ => Ok(if mask { net.trunc() } else { net }),
            }
        })
        .collect()
}

fn strings(nets: &[IpNet]) -> Vec<String> {
    nets.iter().map(ToString::to_string).collect()
}

/// The parsed response ranges of a tunnel (for the overlap check).
pub fn response_ranges(tunnel: &WireGuardVppTunnel) -> Result<Vec<IpNet>, RenderError> {
    let mut ranges = cidrs(
        "spec.arp.respond",
        &tunnel.spec.arp.respond,
        Family::V4,
        true,
    )?;
    ranges.extend(cidrs(
        "spec.ndp.respond",
        &tunnel.spec.ndp.respond,
        Family::V6,
        true,
    )?);
    Ok(ranges)
}

fn secret_key(
    secrets: &SecretValues,
    field: &str,
    reference: &SecretKeyRef,
) -> Result<Option<Key>, RenderError> {
    let Some(bytes) = secrets.get(reference) else {
        return Ok(None);
    };
    Key::from_base64(bytes)
        .map(Some)
        .map_err(|source| RenderError::BadSecretKey {
            field: field.to_string(),
            secret: reference.name.clone(),
            key: reference.key.clone(),
            source,
        })
}

fn missing(field: &str, reference: &SecretKeyRef) -> RenderError {
    RenderError::MissingSecret {
        field: field.to_string(),
        secret: reference.name.clone(),
        key: reference.key.clone(),
    }
}

/// Renders `tunnel` with memif id `uid` (the spec's, or the allocated one), its Secret values and its
/// bridge's gateway file. A missing private key is allowed only when `require_private_key` is false
/// (offline rendering); every other referenced Secret value must be present.
pub fn render(
    tunnel: &WireGuardVppTunnel,
    uid: u32,
    secrets: &SecretValues,
    gateway: Option<&GatewayFile>,
    require_private_key: bool,
) -> Result<RenderedTunnel, RenderError> {
    let spec = &tunnel.spec;
    let name = interface_name(tunnel)?;
    if let Some(gateway) = gateway
        && uid > gateway.max_uid()
    {
        return Err(RenderError::UidTooLarge {
            uid,
            max: gateway.max_uid(),
            octets: gateway.prefix_octets,
            path: gateway.path.clone(),
        });
    }
    let secret = match &spec.memif_secret_ref {
        None => String::new(),
        Some(reference) => {
            let bytes = secrets
                .get(reference)
                .ok_or_else(|| missing("spec.memifSecretRef", reference))?;
            let memif_error = |reason: String| RenderError::MemifSecret {
                secret: reference.name.clone(),
                key: reference.key.clone(),
                reason,
            };
            let text =
                std::str::from_utf8(bytes).map_err(|_| memif_error("not UTF-8 text".into()))?;
            let text = text.trim_end_matches(['\n', '\r']);
            if text.len() > MAX_MEMIF_SECRET_LEN {
                return Err(memif_error(format!(
                    "{} bytes long; memif keeps at most {MAX_MEMIF_SECRET_LEN}, use a shorter secret",
                    text.len()
                )));
            }
            text.to_string()
        }
    };
    let interface = InterfaceFile {
        uid,
        secret,
        ipv4_arp_response_ranges: strings(&cidrs(
            "spec.arp.respond",
            &spec.arp.respond,
            Family::V4,
            true,
        )?),
        ipv6_ndp_neigh_adv_ranges: strings(&cidrs(
            "spec.ndp.respond",
            &spec.ndp.respond,
            Family::V6,
            true,
        )?),
        ipv4_arp_learning_ranges: strings(&cidrs(
            "spec.arp.learn",
            &spec.arp.learn,
            Family::V4,
            true,
        )?),
        ipv6_ndp_learning_ranges: strings(&cidrs(
            "spec.ndp.learn",
            &spec.ndp.learn,
            Family::V6,
            true,
        )?),
        gratuitous_arp_on_startup: spec.arp.announce_on_startup || spec.ndp.announce_on_startup,
        vpp_bridge_id: spec.bridge_id,
    };

    let wg = &spec.wireguard;
    let private_field = "spec.wireguard.privateKeySecretRef";
    let private_key = secret_key(secrets, private_field, &wg.private_key_secret_ref)?;
    if private_key.is_none() && require_private_key {
        return Err(missing(private_field, &wg.private_key_secret_ref));
    }
    let mut peers = Vec::with_capacity(wg.peers.len());
    for (i, peer) in wg.peers.iter().enumerate() {
        let field = format!("spec.wireguard.peers[{i}]");
        let public_key = Key::from_base64(peer.public_key.as_bytes()).map_err(|source| {
            RenderError::BadPublicKey {
                field: format!("{field}.publicKey"),
                source,
            }
        })?;
        let preshared_key = match &peer.preshared_key_secret_ref {
            None => None,
            Some(reference) => {
                let psk_field = format!("{field}.presharedKeySecretRef");
                Some(
                    secret_key(secrets, &psk_field, reference)?
                        .ok_or_else(|| missing(&psk_field, reference))?,
                )
            }
        };
        peers.push(PeerConfig {
            public_key,
            preshared_key,
            endpoint: peer.endpoint.clone(),
            allowed_ips: cidrs(
                &format!("{field}.allowedIPs"),
                &peer.allowed_ips,
                Family::Any,
                false,
            )?,
            persistent_keepalive: peer.persistent_keepalive,
        });
    }
    Ok(RenderedTunnel {
        name,
        interface,
        gateway: gateway.cloned(),
        wireguard: WireGuardConfig {
            private_key,
            listen_port: wg.listen_port,
            peers,
        },
    })
}

/// The arguments of `wireguard-vpp render`.
#[derive(Debug, Clone)]
pub struct RenderArgs {
    /// A YAML file with one or more `WireGuardVppTunnel` documents and, optionally, the `v1` Secrets
    /// they refer to (`data` or `stringData`).
    pub file: PathBuf,
    /// The directory of gateway files (`<bridgeID>.json`); without it no `gw/` file is written.
    pub gateway_dir: Option<PathBuf>,
    /// Where to write `if/<name>.json`, `gw/<id>.json` and `<name>.conf`.
    pub out: PathBuf,
}

/// `wireguard-vpp render`: writes each tunnel of `args.file` in the original's layout under `args.out`,
/// and returns the paths written. Files holding keys or the memif secret are written owner-only.
pub fn run(args: &RenderArgs) -> Result<Vec<PathBuf>, RenderError> {
    let input_error = |reason: String| RenderError::Input {
        path: args.file.clone(),
        reason,
    };
    let text = std::fs::read_to_string(&args.file).map_err(|err| input_error(err.to_string()))?;
    let mut tunnels = Vec::new();
    let mut secrets = BTreeMap::<(String, String), SecretValues>::new();
    for (index, document) in serde_yaml::Deserializer::from_str(&text).enumerate() {
        let value = serde_yaml::Value::deserialize(document)
            .map_err(|err| input_error(format!("document {}: {err}", index + 1)))?;
        if value.is_null() {
            continue;
        }
        let kind = value
            .get("kind")
            .and_then(serde_yaml::Value::as_str)
            .unwrap_or_default();
        match kind {
            "WireGuardVppTunnel" => {
                let tunnel: WireGuardVppTunnel = serde_yaml::from_value(value)
                    .map_err(|err| input_error(format!("document {}: {err}", index + 1)))?;
                tunnels.push(tunnel);
            }
            "Secret" => {
                let secret = secret_document(&value).map_err(|reason| {
                    input_error(format!("document {} (Secret): {reason}", index + 1))
                })?;
                let values = secrets
                    .entry((secret.namespace, secret.name.clone()))
                    .or_default();
                for (key, bytes) in secret.data {
                    values.insert(
                        SecretKeyRef {
                            name: secret.name.clone(),
                            key,
                        },
                        bytes,
                    );
                }
            }
            other => {
                return Err(input_error(format!(
                    "document {}: unexpected kind {other:?}",
                    index + 1
                )));
            }
        }
    }
    if tunnels.is_empty() {
        return Err(input_error("no WireGuardVppTunnel document".into()));
    }
    let mut written = Vec::new();
    for tunnel in &tunnels {
        let namespace = tunnel
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let mut values = SecretValues::default();
        for ((ns, _), secret_values) in &secrets {
            if *ns == namespace {
                for (reference, bytes) in &secret_values.values {
                    values.insert(reference.clone(), bytes.clone());
                }
            }
        }
        let uid = tunnel
            .spec
            .uid
            .or_else(|| tunnel.status.as_ref().and_then(|s| s.uid))
            .ok_or(RenderError::NoUid)?;
        let gateway = match &args.gateway_dir {
            Some(dir) => Some(GatewayFile::load(dir, tunnel.spec.bridge_id)?),
            None => None,
        };
        let rendered = render(tunnel, uid, &values, gateway.as_ref(), false)?;
        written.extend(write_files(&rendered, &args.out)?);
    }
    Ok(written)
}

/// A `v1` Secret document of the `render` input.
struct SecretDocument {
    namespace: String,
    name: String,
    /// Key and decoded value.
    data: Vec<(String, Vec<u8>)>,
}

/// Reads a `v1` Secret document (`data` in base64, `stringData` as text).
fn secret_document(value: &serde_yaml::Value) -> Result<SecretDocument, String> {
    use base64::Engine;
    let metadata = value.get("metadata").ok_or("no metadata")?;
    let name = metadata
        .get("name")
        .and_then(serde_yaml::Value::as_str)
        .ok_or("no metadata.name")?;
    let namespace = metadata
        .get("namespace")
        .and_then(serde_yaml::Value::as_str)
        .unwrap_or("default");
    let mut data = Vec::new();
    if let Some(map) = value.get("data").and_then(serde_yaml::Value::as_mapping) {
        for (key, encoded) in map {
            let key = key.as_str().ok_or("a data key is not a string")?;
            let encoded = encoded
                .as_str()
                .ok_or_else(|| format!("data.{key} is not a string"))?;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .map_err(|_| format!("data.{key} is not base64"))?;
            data.push((key.to_string(), bytes));
        }
    }
    if let Some(map) = value
        .get("stringData")
        .and_then(serde_yaml::Value::as_mapping)
    {
        for (key, text) in map {
            let key = key.as_str().ok_or("a stringData key is not a string")?;
            let text = text
                .as_str()
                .ok_or_else(|| format!("stringData.{key} is not a string"))?;
            data.push((key.to_string(), text.as_bytes().to_vec()));
        }
    }
    Ok(SecretDocument {
        namespace: namespace.to_string(),
        name: name.to_string(),
        data,
    })
}

/// Writes `if/<name>.json`, `gw/<id>.json` (when the gateway is known) and `<name>.conf` under `out`.
pub fn write_files(rendered: &RenderedTunnel, out: &Path) -> Result<Vec<PathBuf>, RenderError> {
    let mut written = Vec::new();
    // Serialising a struct of strings and integers cannot fail.
    let interface =
        serde_json::to_string_pretty(&rendered.interface).expect("InterfaceFile serialises") + "\n";
    let if_path = out.join("if").join(format!("{}.json", rendered.name));
    write_file(&if_path, &interface, 0o600)?;
    written.push(if_path);
    if let Some(gateway) = &rendered.gateway {
        let gw_path = out
            .join("gw")
            .join(format!("{}.json", rendered.interface.vpp_bridge_id));
        write_file(&gw_path, &(gateway.to_json_pretty() + "\n"), 0o644)?;
        written.push(gw_path);
    }
    let conf_path = out.join(format!("{}.conf", rendered.name));
    write_file(&conf_path, &rendered.wireguard.to_wg_conf(), 0o600)?;
    written.push(conf_path);
    Ok(written)
}

fn write_file(path: &Path, contents: &str, mode: u32) -> Result<(), RenderError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let write_error = |source| RenderError::Write {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(write_error)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .map_err(write_error)?;
    // An existing file keeps its old mode on open; set it explicitly.
    file.set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(write_error)?;
    file.write_all(contents.as_bytes()).map_err(write_error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::k8s::crd::WireGuardVppTunnelSpec;

    const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/k8s/tunnel.yaml");
    const GATEWAYS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/k8s/gateways");

    fn example_tunnel() -> WireGuardVppTunnel {
        let text = std::fs::read_to_string(EXAMPLE).expect("example file");
        let first = serde_yaml::Deserializer::from_str(&text)
            .next()
            .expect("a document");
        WireGuardVppTunnel::deserialize(first).expect("the example tunnel parses")
    }

    fn secrets() -> SecretValues {
        let mut values = SecretValues::default();
        let put = |values: &mut SecretValues, name: &str, key: &str, value: &str| {
            values.insert(
                SecretKeyRef {
                    name: name.into(),
                    key: key.into(),
                },
                value.as_bytes().to_vec(),
            );
        };
        put(&mut values, "home-memif", "secret", "s3cr3t\n");
        put(
            &mut values,
            "home-key",
            "privateKey",
            "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=\n",
        );
        put(
            &mut values,
            "home-psk",
            "psk",
            "FpCyhws9cxwWoV4xELtfJvjJN+zQVRPISllRWgeopVE=",
        );
        values
    }

    fn gateway() -> GatewayFile {
        GatewayFile::load(Path::new(GATEWAYS), 4242).expect("example gateway")
    }

    #[test]
    fn interface_file_has_the_original_keys_and_values() {
        let rendered =
            render(&example_tunnel(), 3, &secrets(), Some(&gateway()), true).expect("renders");
        let json = serde_json::to_value(&rendered.interface).expect("serialises");
        let expected = serde_json::json!({
            "uid": 3, "secret": "s3cr3t",
            "IPv4ArpResponseRanges": ["172.22.77.33/32"],
            "IPv6NdpNeighAdvRanges": ["fd28:cb8f:4c92::33/128", "fe80::42:1817:1/128"],
            "IPv4ArpLearningRanges": ["10.127.111.0/24"],
            "IPv6NdpLearningRanges": ["fd10:127:e00f::/64"],
            "GratuitousARPOnStartUP": false,
            "VppBridgeID": 4242
        });
        assert_eq!(json, expected);
        assert_eq!(rendered.name, "home");
    }

    #[test]
    fn wg_config_lists_keys_and_peers() {
        let rendered =
            render(&example_tunnel(), 3, &secrets(), Some(&gateway()), true).expect("renders");
        let conf = rendered.wireguard.to_wg_conf();
        assert_eq!(
            conf,
            "[Interface]\nPrivateKey = yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=\nListenPort = 51820\n\n\
             [Peer]\nPublicKey = xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=\n\
             PresharedKey = FpCyhws9cxwWoV4xELtfJvjJN+zQVRPISllRWgeopVE=\nEndpoint = peer.example.net:51820\n\
             AllowedIPs = 0.0.0.0/0, ::/0\nPersistentKeepalive = 25\n"
        );
        // wg(8)'s example key pair: the public key of the example private key.
        let public = rendered
            .wireguard
            .private_key
            .as_ref()
            .map(|k| k.public_key().to_base64());
        assert_eq!(
            public.as_deref(),
            Some("HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=")
        );
    }

    #[test]
    fn host_bits_are_masked_like_the_original() {
        let mut tunnel = example_tunnel();
        tunnel.spec.arp.respond = vec!["172.22.77.33/30".into()];
        let rendered = render(&tunnel, 3, &secrets(), None, true).expect("renders");
        assert_eq!(
            rendered.interface.ipv4_arp_response_ranges,
            ["172.22.77.32/30"]
        );
    }

    #[test]
    fn errors_name_the_field_and_the_fix() {
        type Edit = fn(&mut WireGuardVppTunnelSpec);
        let cases: Vec<(Edit, &str)> = vec![
            (
                |s| s.arp.respond = vec!["fd00::/8".into()],
                "spec.arp.respond[0]: \"fd00::/8\" is not an IPv4 CIDR",
            ),
            (
                |s| s.ndp.learn = vec!["10.0.0.0/8".into()],
                "spec.ndp.learn[0]",
            ),
            (
                |s| s.wireguard.peers[0].public_key = "AAAA".into(),
                "spec.wireguard.peers[0].publicKey",
            ),
            (
                |s| s.wireguard.peers[0].allowed_ips = vec!["nope".into()],
                "spec.wireguard.peers[0].allowedIPs[0]",
            ),
            (
                |s| s.interface_name = Some("much-too-long-name".into()),
                "set spec.interfaceName",
            ),
            (
                |s| {
                    s.memif_secret_ref = Some(SecretKeyRef {
                        name: "absent".into(),
                        key: "k".into(),
                    })
                },
                "spec.memifSecretRef: Secret \"absent\" has no key \"k\"",
            ),
        ];
        for (edit, expected) in cases {
            let mut tunnel = example_tunnel();
            edit(&mut tunnel.spec);
            let error = render(&tunnel, 3, &secrets(), None, true).expect_err(expected);
            assert!(
                error.to_string().contains(expected),
                "{error} lacks {expected}"
            );
        }
    }

    #[test]
    fn uid_beyond_the_mac_prefix_is_refused() {
        let error = render(
            &example_tunnel(),
            1 << 24,
            &secrets(),
            Some(&gateway()),
            true,
        )
        .expect_err("too large");
        assert!(
            matches!(
                error,
                RenderError::UidTooLarge {
                    max: 16_777_215,
                    ..
                }
            ),
            "{error}"
        );
    }

    #[test]
    fn long_memif_secret_is_refused_not_truncated() {
        let mut values = secrets();
        values.insert(
            SecretKeyRef {
                name: "home-memif".into(),
                key: "secret".into(),
            },
            vec![b'x'; 24],
        );
        let error = render(&example_tunnel(), 3, &values, None, true).expect_err("too long");
        assert!(error.to_string().contains("at most 23"), "{error}");
    }

    #[test]
    fn missing_private_key_is_an_error_only_when_required() {
        let mut values = SecretValues::default();
        for (name, key, value) in [
            ("home-memif", "secret", "s"),
            (
                "home-psk",
                "psk",
                "FpCyhws9cxwWoV4xELtfJvjJN+zQVRPISllRWgeopVE=",
            ),
        ] {
            values.insert(
                SecretKeyRef {
                    name: name.into(),
                    key: key.into(),
                },
                value.into(),
            );
        }
        assert!(matches!(
            render(&example_tunnel(), 3, &values, None, true),
            Err(RenderError::MissingSecret { .. })
        ));
        let offline = render(&example_tunnel(), 3, &values, None, false).expect("renders offline");
        assert!(
            offline
                .wireguard
                .to_wg_conf()
                .contains("# PrivateKey: not rendered")
        );
    }

    #[test]
    fn peer_edit_does_not_need_a_restart_but_a_range_edit_does() {
        let old = render(&example_tunnel(), 3, &secrets(), None, true).expect("renders");
        let mut tunnel = example_tunnel();
        tunnel.spec.wireguard.peers[0].endpoint = Some("192.0.2.7:51820".into());
        let peer_edit = render(&tunnel, 3, &secrets(), None, true).expect("renders");
        assert!(!old.needs_restart(&peer_edit));
        tunnel.spec.arp.respond.push("172.22.77.40/32".into());
        let range_edit = render(&tunnel, 3, &secrets(), None, true).expect("renders");
        assert!(old.needs_restart(&range_edit));
    }

    #[test]
    fn run_writes_the_original_layout_with_tight_modes() {
        use std::os::unix::fs::PermissionsExt;
        let out = tempfile::tempdir().expect("tempdir");
        let args = RenderArgs {
            file: EXAMPLE.into(),
            gateway_dir: Some(GATEWAYS.into()),
            out: out.path().into(),
        };
        let written = run(&args).expect("render runs");
        let names: Vec<_> = written
            .iter()
            .map(|p| p.strip_prefix(out.path()).expect("under out"))
            .collect();
        assert_eq!(
            names,
            [
                Path::new("if/home.json"),
                Path::new("gw/4242.json"),
                Path::new("home.conf")
            ]
        );
        let mode = |p: &str| {
            std::fs::metadata(out.path().join(p))
                .expect("written")
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!(
            (
                mode("if/home.json"),
                mode("home.conf"),
                mode("gw/4242.json")
            ),
            (0o600, 0o600, 0o644)
        );
        let gw: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.path().join("gw/4242.json")).expect("gw"))
                .expect("json");
        assert_eq!(gw["VppBridgeLoop_SwIfName"], "loop42");
        let conf = std::fs::read_to_string(out.path().join("home.conf")).expect("conf");
        assert!(conf.contains("PresharedKey = FpCyhws9cxwWoV4xELtfJvjJN+zQVRPISllRWgeopVE="));
    }

    #[test]
    fn run_refuses_bad_input_and_writes_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let input = dir.path().join("t.yaml");
        std::fs::write(&input, "kind: ConfigMap\n").expect("write");
        let out = dir.path().join("out");
        let args = RenderArgs {
            file: input.clone(),
            gateway_dir: None,
            out: out.clone(),
        };
        let error = run(&args).expect_err("wrong kind");
        assert!(
            error.to_string().contains("t.yaml") && error.to_string().contains("ConfigMap"),
            "{error}"
        );
        assert!(!out.exists());
    }

    proptest::proptest! {
        #[test]
        fn run_never_panics_on_hostile_yaml(text in "\\PC{0,300}") {
            let dir = tempfile::tempdir().expect("tempdir");
            let input = dir.path().join("t.yaml");
            std::fs::write(&input, &text).expect("write");
            let args = RenderArgs { file: input, gateway_dir: None, out: dir.path().join("out") };
            let _ = run(&args);
        }
    }
}
