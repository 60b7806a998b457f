//! A `WireGuardVppTunnel` rendered into the original's configuration model: the interface file
//! (`if/<name>.json`), the bridge's gateway file (`gw/<id>.json`) and a wg(8) configuration, using the
//! config module's types so that a resource and a pair of files mean exactly the same tunnel.
//!
//! Pure: [`render`] maps a resource and its Secrets' values; [`RenderedTunnel::to_spec`] validates the
//! files with [`config::validate()`] into the [`TunnelSpec`] the runtime runs. Reading a YAML file and
//! writing the files (`wireguard-vpp render`) is `render_files`' job.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;

use super::crd::{SecretKeyRef, WireGuardVppTunnel};
use super::gateway::{Gateway, GatewayError};
use super::tunnel_runtime::TunnelSpec;
use crate::config::{self, Announce, ConfigError, Env, InterfaceFile, MTU_RANGE};
use crate::wg::Key;
use crate::wg::key::KeyError;

/// Bytes of the memif secret that VPP and the memif protocol keep (a 24-byte field with its NUL).
pub const MAX_MEMIF_SECRET_LEN: usize = config::MemifSecret::MAX_LEN;

/// The longest interface name `wg` accepts (IFNAMSIZ - 1).
pub const MAX_INTERFACE_NAME_LEN: usize = 15;

/// The WireGuard side of a tunnel: the wg module's own model of a wg(8) configuration, which the
/// runtime hands to the device as it is (applied as a diff, with no text in between). Only the
/// `render` subcommand writes it as text ([`WireGuardConfig::to_wg_conf`]).
pub use crate::wg::conf_file::{ConfFile as WireGuardConfig, ConfPeer as PeerConfig};

/// A tunnel resource in the original's model: its files and its wg(8) configuration.
#[derive(Clone, PartialEq)]
pub struct RenderedTunnel {
    /// The interface name (UAPI socket, memif socket file, log prefix).
    pub name: String,
    /// `namespace/name` of the resource; named as the source in validation errors.
    pub source: String,
    /// `if/<name>.json`.
    pub interface: InterfaceFile,
    /// `gw/<bridgeID>.json`; `None` only when rendering offline without a gateway directory.
    pub gateway: Option<Gateway>,
    /// The wg(8) side.
    pub wireguard: WireGuardConfig,
    /// `spec.arp.announceOnStartup` and `spec.ndp.announceOnStartup`, each on its own; the interface
    /// file has one flag for both (`GratuitousARPOnStartUP`, set when either is).
    pub announce: Announce,
    /// How often DNS names among the peers' endpoints are resolved again; zero is never.
    pub reresolve_interval: Duration,
}

impl std::fmt::Debug for RenderedTunnel {
    // The derived form would print the memif secret; keys are redacted by `Key` itself.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RenderedTunnel")
            .field("name", &self.name)
            .field("source", &self.source)
            .field("uid", &self.interface.uid)
            .field("bridge_id", &self.interface.vpp_bridge_id)
            .field("gateway", &self.gateway.as_ref().map(|g| &g.path))
            .field("wireguard", &self.wireguard)
            .finish_non_exhaustive()
    }
}

impl RenderedTunnel {
    /// Validates the files with the config module, exactly as the CLI validates files on disk, into
    /// what the runtime runs. Needs the gateway file and the private key.
    pub fn to_spec(&self, env: &Env) -> Result<TunnelSpec, RenderError> {
        let gateway = self.gateway.as_ref().ok_or(RenderError::NoGateway)?;
        if self.wireguard.private_key.is_none() {
            return Err(RenderError::NoPrivateKey);
        }
        let files = config::Files {
            interface: self.interface.clone(),
            interface_path: PathBuf::from(format!("WireGuardVppTunnel {}", self.source)),
            gateway: gateway.file.clone(),
            gateway_path: gateway.path.clone(),
        };
        // The rng only serves a "random" memif secret, which `render` refuses for resources.
        let mut loaded = config::validate(&self.name, &files, env, &mut rand::rng())?;
        loaded.config.announce = self.announce;
        Ok(TunnelSpec {
            config: loaded.config,
            wireguard: self.wireguard.clone(),
            reresolve_interval: self.reresolve_interval,
        })
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
    /// A value is outside what the field accepts (the CRD's schema says the same to the API server;
    /// this catches files rendered offline).
    #[error("{field}: {value} is not accepted: {expected}")]
    Invalid {
        /// The field, e.g. `spec.mtu`.
        field: String,
        /// The value.
        value: String,
        /// What is accepted.
        expected: String,
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
    /// A key in a Secret is not a WireGuard key.
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
    /// The memif secret is unusable.
    #[error("spec.memifSecretRef (Secret {secret:?} key {key:?}): {reason}")]
    MemifSecret {
        /// The Secret.
        secret: String,
        /// The key.
        key: String,
        /// Why.
        reason: String,
    },
    /// The gateway file is unreadable.
    #[error(transparent)]
    Gateway(#[from] GatewayError),
    /// Validation of the rendered files failed (the same checks as for files on disk).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Validation needs the gateway file.
    #[error("the gateway file of the bridge is needed to validate the tunnel")]
    NoGateway,
    /// Running a tunnel needs its private key.
    #[error("spec.wireguard.privateKeySecretRef: the private key is missing")]
    NoPrivateKey,
    /// The input file of `render` is unusable.
    #[error("{}: {reason}", .path.display())]
    Input {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Writing an output file failed.
    #[error("writing {}: {source}", .path.display())]
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
            RenderError::Cidr { .. } => "InvalidCIDR",
            RenderError::Invalid { .. } => "InvalidField",
            RenderError::MissingSecret { .. } | RenderError::NoPrivateKey => "SecretMissing",
            RenderError::BadSecretKey { .. } | RenderError::BadPublicKey { .. } => "InvalidKey",
            RenderError::MemifSecret { .. } => "InvalidMemifSecret",
            RenderError::Gateway(_) | RenderError::NoGateway => "GatewayFileInvalid",
            RenderError::Config(_) => "ConfigInvalid",
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

/// The longest `spec.wireguard.peers[].name` (a metric label value; the CRD says the same).
pub const MAX_PEER_NAME_LEN: usize = 63;

/// A peer's name is a metric label: 1 to [`MAX_PEER_NAME_LEN`] of `[A-Za-z0-9._-]`, starting with a
/// letter or digit, so it needs no escaping and cannot blow up the label set's size.
fn check_peer_name(field: &str, name: &str) -> Result<(), RenderError> {
    let bytes = name.as_bytes();
    let valid = !bytes.is_empty()
        && bytes.len() <= MAX_PEER_NAME_LEN
        && bytes[0].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if valid {
        return Ok(());
    }
    Err(RenderError::Invalid {
        field: field.into(),
        value: format!("{name:?}"),
        expected: format!(
            "1 to {MAX_PEER_NAME_LEN} characters of [A-Za-z0-9._-], starting with a letter or digit"
        ),
    })
}

/// How often DNS names among the peers' endpoints are resolved again when
/// `spec.wireguard.reresolveInterval` is omitted.
pub const DEFAULT_RERESOLVE_INTERVAL: Duration = Duration::from_secs(120);

/// A duration as the CRD writes it: one or more `<number><h|m|s>` (`90s`, `1h30m`, `0s`).
pub fn parse_duration(text: &str) -> Option<Duration> {
    let mut total = Duration::ZERO;
    let mut rest = text;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit())?;
        let number: u64 = rest[..digits].parse().ok()?;
        let unit = match rest[digits..].chars().next()? {
            'h' => 3600,
            'm' => 60,
            's' => 1,
            _ => return None,
        };
        total = total.checked_add(Duration::from_secs(number.checked_mul(unit)?))?;
        rest = &rest[digits + 1..];
    }
    Some(total)
}

/// Which networks a CIDR list may hold.
#[derive(Clone, Copy)]
enum Family {
    V4,
    V6,
    Any,
}

/// Parses a CIDR list, naming the failing item.
fn cidrs(field: &str, values: &[String], family: Family) -> Result<Vec<IpNet>, RenderError> {
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
                _ => Ok(net),
            }
        })
        .collect()
}

/// The response ranges of a tunnel as networks (host bits cleared), for the overlap check.
pub fn response_ranges(tunnel: &WireGuardVppTunnel) -> Result<Vec<IpNet>, RenderError> {
    let mut ranges = cidrs("spec.arp.respond", &tunnel.spec.arp.respond, Family::V4)?;
    ranges.extend(cidrs(
        "spec.ndp.respond",
        &tunnel.spec.ndp.respond,
        Family::V6,
    )?);
    Ok(ranges.iter().map(IpNet::trunc).collect())
}

fn secret_key(
    secrets: &SecretValues,
    field: &str,
    reference: &SecretKeyRef,
) -> Result<Option<Key>, RenderError> {
    let Some(bytes) = secrets.get(reference) else {
        return Ok(None);
    };
    Key::from_base64_text(bytes)
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

fn memif_secret(secrets: &SecretValues, reference: &SecretKeyRef) -> Result<String, RenderError> {
    let bytes = secrets
        .get(reference)
        .ok_or_else(|| missing("spec.memifSecretRef", reference))?;
    let error = |reason: String| RenderError::MemifSecret {
        secret: reference.name.clone(),
        key: reference.key.clone(),
        reason,
    };
    let text = std::str::from_utf8(bytes).map_err(|_| error("not UTF-8 text".into()))?;
    let text = text.trim_end_matches(['\n', '\r']);
    if text.len() > MAX_MEMIF_SECRET_LEN {
        return Err(error(format!(
            "{} bytes long; memif keeps at most {MAX_MEMIF_SECRET_LEN}, use a shorter secret",
            text.len()
        )));
    }
    if text == config::RANDOM_SECRET {
        return Err(error(format!(
            "{:?} asks the CLI for a new random secret at each start; a resource needs a stable one: put the secret itself in the Secret",
            config::RANDOM_SECRET
        )));
    }
    Ok(text.to_string())
}

/// Renders `tunnel` with memif id `uid` (the spec's, or the allocated one), its Secret values and its
/// bridge's gateway file. A missing private key is allowed here (offline rendering) and refused by
/// [`RenderedTunnel::to_spec`]; every other referenced Secret value must be present.
pub fn render(
    tunnel: &WireGuardVppTunnel,
    uid: u32,
    secrets: &SecretValues,
    gateway: Option<&Gateway>,
) -> Result<RenderedTunnel, RenderError> {
    let spec = &tunnel.spec;
    let name = interface_name(tunnel)?;
    if let Some(mtu) = spec.mtu
        && !MTU_RANGE.contains(&mtu)
    {
        return Err(RenderError::Invalid {
            field: "spec.mtu".into(),
            value: mtu.to_string(),
            expected: format!(
                "the tunnel MTU must be {} to {}; omit it to derive it from the BVI's MTU",
                MTU_RANGE.start(),
                MTU_RANGE.end()
            ),
        });
    }
    let secret = match &spec.memif_secret_ref {
        None => String::new(),
        Some(reference) => memif_secret(secrets, reference)?,
    };
    // The CIDRs are checked here to name the resource's fields; the files keep the spec's text, and
    // validation turns them into networks exactly as it does for files on disk.
    cidrs("spec.arp.respond", &spec.arp.respond, Family::V4)?;
    cidrs("spec.ndp.respond", &spec.ndp.respond, Family::V6)?;
    cidrs("spec.arp.learn", &spec.arp.learn, Family::V4)?;
    cidrs("spec.ndp.learn", &spec.ndp.learn, Family::V6)?;
    let interface = InterfaceFile {
        uid,
        secret,
        macaddr: String::new(),
        ipv4_arp_response_ranges: spec.arp.respond.clone(),
        ipv6_ndp_neigh_adv_ranges: spec.ndp.respond.clone(),
        ipv4_arp_learning_ranges: spec.arp.learn.clone(),
        ipv6_ndp_learning_ranges: spec.ndp.learn.clone(),
        gratuitous_arp_on_startup: spec.arp.announce_on_startup || spec.ndp.announce_on_startup,
        vpp_bridge_id: spec.bridge_id,
        // 0 derives the MTU from the BVI; validation checks the range and names `Mtu`.
        mtu: spec.mtu.map_or(0, u32::from),
    };

    let wg = &spec.wireguard;
    let private_key = secret_key(
        secrets,
        "spec.wireguard.privateKeySecretRef",
        &wg.private_key_secret_ref,
    )?;
    let mut peers = Vec::with_capacity(wg.peers.len());
    for (i, peer) in wg.peers.iter().enumerate() {
        let field = format!("spec.wireguard.peers[{i}]");
        if let Some(name) = &peer.name {
            check_peer_name(&format!("{field}.name"), name)?;
        }
        let public_key = Key::from_base64_text(peer.public_key.as_bytes()).map_err(|source| {
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
        // As a wg(8) file reads them: masked to their networks, each once.
        let mut allowed_ips: Vec<IpNet> = Vec::with_capacity(peer.allowed_ips.len());
        for net in cidrs(
            &format!("{field}.allowedIPs"),
            &peer.allowed_ips,
            Family::Any,
        )? {
            let net = net.trunc();
            if !allowed_ips.contains(&net) {
                allowed_ips.push(net);
            }
        }
        peers.push(PeerConfig {
            public_key,
            name: peer.name.clone(),
            preshared_key,
            endpoint: peer.endpoint.clone(),
            allowed_ips,
            persistent_keepalive: peer.persistent_keepalive.unwrap_or(0),
        });
    }
    let source = format!(
        "{}/{}",
        tunnel.metadata.namespace.as_deref().unwrap_or("default"),
        tunnel.metadata.name.as_deref().unwrap_or_default()
    );
    let reresolve_interval = match &wg.reresolve_interval {
        None => DEFAULT_RERESOLVE_INTERVAL,
        Some(text) => parse_duration(text).ok_or_else(|| RenderError::Invalid {
            field: "spec.wireguard.reresolveInterval".into(),
            value: format!("{text:?}"),
            expected: "a duration such as 90s, 5m or 1h30m (0s: never)".into(),
        })?,
    };
    Ok(RenderedTunnel {
        name,
        source,
        interface,
        gateway: gateway.cloned(),
        announce: Announce {
            arp: spec.arp.announce_on_startup,
            ndp: spec.ndp.announce_on_startup,
        },
        reresolve_interval,
        wireguard: WireGuardConfig {
            private_key,
            // Omitted in the spec: the port allocated on the node, as the status records it.
            listen_port: wg
                .listen_port
                .or_else(|| tunnel.status.as_ref().and_then(|s| s.listen_port)),
            fwmark: wg.fwmark.unwrap_or(0),
            peers,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::k8s::crd::WireGuardVppTunnelSpec;
    use std::path::Path;

    const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/k8s/tunnel.yaml");
    const GATEWAYS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/k8s/gateways");

    fn example_tunnel() -> WireGuardVppTunnel {
        let text = std::fs::read_to_string(EXAMPLE).expect("example file");
        let documents: Vec<serde_json::Value> =
            serde_saphyr::from_multiple(&text).expect("the example file parses");
        serde_json::from_value(documents[0].clone()).expect("the example tunnel parses")
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

    fn gateway() -> Gateway {
        Gateway::load(Path::new(GATEWAYS), 4242).expect("example gateway")
    }

    #[test]
    fn interface_file_has_the_original_keys_and_values() {
        let rendered = render(&example_tunnel(), 3, &secrets(), Some(&gateway())).expect("renders");
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
        let rendered = render(&example_tunnel(), 3, &secrets(), Some(&gateway())).expect("renders");
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
    fn validation_gives_the_config_model_with_networks_and_macs() {
        let mut tunnel = example_tunnel();
        tunnel.spec.arp.respond = vec!["172.22.77.33/30".into()];
        let rendered = render(&tunnel, 3, &secrets(), Some(&gateway())).expect("renders");
        // The file keeps the spec's text, as a hand-written file would; validation masks the host bits.
        assert_eq!(
            rendered.interface.ipv4_arp_response_ranges,
            ["172.22.77.33/30"]
        );
        let spec = rendered.to_spec(&Env::default()).expect("valid");
        let config = &spec.config;
        assert_eq!(
            config.ranges.ipv4_response,
            ["172.22.77.32/30".parse().expect("net")]
        );
        assert_eq!(config.self_mac.to_string(), "98:d2:93:00:00:03");
        assert_eq!(config.vpp_memif_mac.to_string(), "a4:77:33:00:00:03");
        assert_eq!(
            config.memif_socket,
            Path::new("/var/run/wggo-vpp/home.sock")
        );
        assert_eq!(config.secret.as_ref().map(|s| s.expose()), Some("s3cr3t"));
        assert_eq!(spec.name(), "home");
    }

    /// Each family's announcement flag reaches the tunnel on its own (the original's file has one).
    #[test]
    fn arp_and_ndp_announcements_are_separate() {
        for (arp, ndp) in [(false, false), (true, false), (false, true), (true, true)] {
            let mut tunnel = example_tunnel();
            tunnel.spec.arp.announce_on_startup = arp;
            tunnel.spec.ndp.announce_on_startup = ndp;
            let rendered = render(&tunnel, 3, &secrets(), Some(&gateway())).expect("renders");
            assert_eq!(rendered.interface.gratuitous_arp_on_startup, arp || ndp);
            let spec = rendered.to_spec(&Env::default()).expect("valid");
            assert_eq!(spec.config.announce, Announce { arp, ndp });
        }
    }

    /// `mtu`, `fwmark` and a peer's `name` reach what the runtime runs: the tunnel MTU the daemon
    /// uses whatever the BVI's, the device's fwmark (also in the wg(8) text) and the metric label.
    #[test]
    fn mtu_fwmark_and_peer_name_reach_the_tunnel() {
        let mut tunnel = example_tunnel();
        tunnel.spec.mtu = Some(1380);
        tunnel.spec.wireguard.fwmark = Some(0x4242);
        tunnel.spec.wireguard.peers[0].name = Some("office-gw".into());
        let rendered = render(&tunnel, 3, &secrets(), Some(&gateway())).expect("renders");
        assert_eq!(rendered.interface.mtu, 1380);
        assert!(
            rendered.wireguard.to_wg_conf().contains("FwMark = 16962\n"),
            "{:?}",
            rendered.wireguard
        );
        let spec = rendered.to_spec(&Env::default()).expect("valid");
        assert_eq!(spec.config.mtu, Some(1380));
        assert_eq!(
            crate::tunnel::settings::tunnel_mtu(&spec.config, Some(9000)),
            1380
        );
        assert_eq!(spec.wireguard.fwmark, 0x4242);
        assert_eq!(spec.wireguard.peers[0].name.as_deref(), Some("office-gw"));

        // Omitted: the MTU comes from the BVI, and there is no mark.
        let plain = render(&example_tunnel(), 3, &secrets(), Some(&gateway()))
            .and_then(|r| r.to_spec(&Env::default()))
            .expect("valid");
        assert_eq!(plain.config.mtu, None);
        assert_eq!(
            crate::tunnel::settings::tunnel_mtu(&plain.config, Some(1500)),
            1420
        );
        assert_eq!(plain.wireguard.fwmark, 0);
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
                |s| s.mtu = Some(1000),
                "spec.mtu: 1000 is not accepted: the tunnel MTU must be 1280 to 9000",
            ),
            (
                |s| s.wireguard.peers[0].name = Some("office gw".into()),
                "spec.wireguard.peers[0].name: \"office gw\" is not accepted",
            ),
            (
                |s| s.wireguard.peers[0].name = Some("x".repeat(64)),
                "spec.wireguard.peers[0].name",
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
            let error = render(&tunnel, 3, &secrets(), None).expect_err(expected);
            assert!(
                error.to_string().contains(expected),
                "{error} lacks {expected}"
            );
        }
    }

    #[test]
    fn uid_beyond_the_mac_prefix_is_refused_by_validation() {
        let rendered =
            render(&example_tunnel(), 1 << 24, &secrets(), Some(&gateway())).expect("renders");
        let error = rendered.to_spec(&Env::default()).expect_err("too large");
        assert!(matches!(error, RenderError::Config(_)), "{error}");
        assert!(
            error.to_string().contains("WireGuardVppTunnel dn42/home"),
            "{error}"
        );
        assert!(error.to_string().contains("uid"), "{error}");
    }

    #[test]
    fn random_memif_secret_is_refused_for_resources() {
        let mut values = secrets();
        values.insert(
            SecretKeyRef {
                name: "home-memif".into(),
                key: "secret".into(),
            },
            b"random".to_vec(),
        );
        let error = render(&example_tunnel(), 3, &values, None).expect_err("random");
        assert!(error.to_string().contains("stable"), "{error}");
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
        let error = render(&example_tunnel(), 3, &values, None).expect_err("too long");
        assert!(error.to_string().contains("at most 23"), "{error}");
    }

    #[test]
    fn missing_private_key_renders_offline_but_does_not_run() {
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
        let offline =
            render(&example_tunnel(), 3, &values, Some(&gateway())).expect("renders offline");
        assert!(matches!(
            offline.to_spec(&Env::default()),
            Err(RenderError::NoPrivateKey)
        ));
        assert!(
            offline
                .wireguard
                .to_wg_conf()
                .contains("# PrivateKey: not rendered")
        );
    }

    #[test]
    fn peer_edit_does_not_need_a_restart_but_a_range_edit_does() {
        let spec = |tunnel: &WireGuardVppTunnel| {
            render(tunnel, 3, &secrets(), Some(&gateway()))
                .and_then(|r| r.to_spec(&Env::default()))
                .expect("valid")
        };
        let old = spec(&example_tunnel());
        let mut tunnel = example_tunnel();
        tunnel.spec.wireguard.peers[0].endpoint = Some("192.0.2.7:51820".into());
        let peer_edit = spec(&tunnel);
        assert!(!old.needs_restart(&peer_edit));
        assert_ne!(old, peer_edit);
        tunnel.spec.arp.respond.push("172.22.77.40/32".into());
        assert!(old.needs_restart(&spec(&tunnel)));
    }
}
