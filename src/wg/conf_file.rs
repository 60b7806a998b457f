//! wg(8) configuration files (the `wg setconf` syntax) and their application to a device as a
//! diff: the original's periodic re-apply (`WGGO_RECONF_PATH` every `WGGO_RECONF_INTERVAL`), done
//! without dropping any session.
//!
//! The file is the whole truth, like `wg syncconf`: peers missing from it are removed, and each
//! peer's preshared key, keepalive and allowed IPs become the file's. Only what differs is sent to
//! the device, so an unchanged file changes nothing. Endpoints are resolved (DNS) at each apply and
//! sent only when the resolved address differs from the one configured last time, so a peer that
//! roamed is not pulled back every interval; a name that does not resolve keeps the old endpoint.
//! The timer itself belongs to the caller.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use ipnet::IpNet;

use crate::wg::config::DeviceConfig;
use crate::wg::device::WgDevice;
use crate::wg::ip_side::{IpRecv, IpSend};
use crate::wg::key::Key;
use crate::wg::uapi::{Command, UapiError};

/// A parsed wg(8) config file; endpoints are not resolved yet.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfFile {
    /// `[Interface] PrivateKey`.
    pub private_key: Option<Key>,
    /// `[Interface] ListenPort`.
    pub listen_port: Option<u16>,
    /// `[Interface] FwMark` (0 when absent or `off`).
    pub fwmark: u32,
    /// The `[Peer]` sections in file order.
    pub peers: Vec<ConfPeer>,
}

/// One `[Peer]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfPeer {
    /// `PublicKey`.
    pub public_key: Key,
    /// A name for people (the `friendly_name` of metrics). wg(8) has no such key: never parsed,
    /// written or applied.
    pub name: Option<String>,
    /// `PresharedKey`.
    pub preshared_key: Option<Key>,
    /// `Endpoint` as written: `host:port` or `[IPv6]:port`.
    pub endpoint: Option<String>,
    /// `PersistentKeepalive` (0 when absent or `off`).
    pub persistent_keepalive: u16,
    /// `AllowedIPs`, masked to their networks.
    pub allowed_ips: Vec<IpNet>,
}

/// Why a config file could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum ConfFileError {
    /// The file could not be read.
    #[error("cannot read WireGuard config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A line is not valid wg(8) syntax.
    #[error("{path}:{line}: {message}")]
    Syntax {
        path: PathBuf,
        line: usize,
        message: String,
    },
    /// The device refused part of it (e.g. the port is in use).
    #[error("WireGuard config {path} was not fully applied: {source}")]
    Refused { path: PathBuf, source: UapiError },
}

/// What an apply did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ApplyReport {
    /// UAPI commands sent to the device (0 when nothing changed).
    pub commands: usize,
    /// Peers whose endpoint did not resolve (`public key`, endpoint text, error); they keep the
    /// endpoint they had.
    pub unresolved: Vec<(Key, String, String)>,
}

impl ConfFile {
    /// The wg(8) text of this configuration (what `wg showconf` writes and [`parse`] reads). It
    /// holds keys: write it owner-only. Without a private key, a comment says it was not rendered.
    pub fn to_wg_conf(&self) -> String {
        let mut out = String::from("[Interface]\n");
        match &self.private_key {
            Some(key) => out.push_str(&format!("PrivateKey = {}\n", key.to_base64())),
            None => out.push_str("# PrivateKey: not rendered (its Secret was not in the input)\n"),
        }
        if let Some(port) = self.listen_port {
            out.push_str(&format!("ListenPort = {port}\n"));
        }
        if self.fwmark != 0 {
            out.push_str(&format!("FwMark = {}\n", self.fwmark));
        }
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
            if peer.persistent_keepalive != 0 {
                out.push_str(&format!(
                    "PersistentKeepalive = {}\n",
                    peer.persistent_keepalive
                ));
            }
        }
        out
    }
}

/// Parses wg(8) config text. `path` only names the file in errors.
pub fn parse(path: &Path, text: &str) -> Result<ConfFile, ConfFileError> {
    #[derive(PartialEq)]
    enum Section {
        None,
        Interface,
        Peer,
    }
    let mut file = ConfFile::default();
    let mut section = Section::None;
    let mut peer: Option<(usize, PeerDraft)> = None;
    let mut seen = HashSet::new();
    for (index, raw) in text.lines().enumerate() {
        let number = index + 1;
        let error = |message: String| ConfFileError::Syntax {
            path: path.to_owned(),
            line: number,
            message,
        };
        // As wg(8): everything after '#' is a comment, and all whitespace is insignificant.
        let line: String = raw
            .split('#')
            .next()
            .unwrap_or("")
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        if line.is_empty() {
            continue;
        }
        if line.starts_with('[') {
            if let Some((start, draft)) = peer.take() {
                file.peers.push(draft.finish(path, start, &mut seen)?);
            }
            section = match line.to_ascii_lowercase().as_str() {
                "[interface]" => Section::Interface,
                "[peer]" => {
                    peer = Some((number, PeerDraft::default()));
                    Section::Peer
                }
                _ => {
                    return Err(error(format!(
                        "unknown section {line:?}; expected [Interface] or [Peer]"
                    )));
                }
            };
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(error(
                "this line is not `Key = Value` (it is not repeated here: it may hold a key)"
                    .to_owned(),
            ));
        };
        let field = key.to_ascii_lowercase();
        match (&section, peer.as_mut()) {
            (Section::Interface, _) => match field.as_str() {
                "privatekey" => {
                    file.private_key =
                        Some(parse_key(value).map_err(|m| error(format!("PrivateKey: {m}")))?)
                }
                "listenport" => {
                    file.listen_port =
                        Some(value.parse().map_err(|_| {
                            error(format!("ListenPort {value:?} is not a port number"))
                        })?)
                }
                "fwmark" => {
                    file.fwmark = parse_fwmark(value)
                        .ok_or_else(|| error(format!("FwMark {value:?} is not a number or off")))?
                }
                _ => return Err(error(unknown_key(key, "[Interface]"))),
            },
            (Section::Peer, Some((_, draft))) => match field.as_str() {
                "publickey" => {
                    draft.public_key =
                        Some(parse_key(value).map_err(|m| error(format!("PublicKey: {m}")))?)
                }
                "presharedkey" => {
                    let key = parse_key(value).map_err(|m| error(format!("PresharedKey: {m}")))?;
                    draft.preshared_key = (!key.is_zero()).then_some(key);
                }
                "endpoint" => {
                    split_endpoint(value).ok_or_else(|| {
                        error(format!(
                            "Endpoint {value:?} is not host:port or [IPv6]:port"
                        ))
                    })?;
                    draft.endpoint = Some(value.to_owned());
                }
                "persistentkeepalive" => {
                    draft.persistent_keepalive = if value.eq_ignore_ascii_case("off") {
                        0
                    } else {
                        value.parse().map_err(|_| {
                            error(format!(
                                "PersistentKeepalive {value:?} is not 0-65535 or off"
                            ))
                        })?
                    }
                }
                "allowedips" => {
                    for item in value.split(',').filter(|s| !s.is_empty()) {
                        let net = parse_allowed_ip(item).ok_or_else(|| {
                            error(format!("AllowedIPs entry {item:?} is not IP/cidr"))
                        })?;
                        if !draft.allowed_ips.contains(&net) {
                            draft.allowed_ips.push(net);
                        }
                    }
                }
                _ => return Err(error(unknown_key(key, "[Peer]"))),
            },
            _ => {
                return Err(error(format!(
                    "{key} is outside of an [Interface] or [Peer] section"
                )));
            }
        }
    }
    if let Some((start, draft)) = peer.take() {
        file.peers.push(draft.finish(path, start, &mut seen)?);
    }
    Ok(file)
}

#[derive(Default)]
struct PeerDraft {
    public_key: Option<Key>,
    preshared_key: Option<Key>,
    endpoint: Option<String>,
    persistent_keepalive: u16,
    allowed_ips: Vec<IpNet>,
}

impl PeerDraft {
    fn finish(
        self,
        path: &Path,
        line: usize,
        seen: &mut HashSet<Key>,
    ) -> Result<ConfPeer, ConfFileError> {
        let error = |message: &str| ConfFileError::Syntax {
            path: path.to_owned(),
            line,
            message: message.to_owned(),
        };
        let public_key = self
            .public_key
            .ok_or_else(|| error("this [Peer] has no PublicKey"))?;
        if !seen.insert(public_key) {
            return Err(error(
                "this [Peer] repeats the PublicKey of an earlier one; merge the two sections",
            ));
        }
        Ok(ConfPeer {
            public_key,
            name: None,
            preshared_key: self.preshared_key,
            endpoint: self.endpoint,
            persistent_keepalive: self.persistent_keepalive,
            allowed_ips: self.allowed_ips,
        })
    }
}

fn unknown_key(key: &str, section: &str) -> String {
    format!(
        "unknown key {key:?} in {section} (wg-quick keys such as Address, DNS or MTU do not belong here; strip them with `wg-quick strip`)"
    )
}

fn parse_key(value: &str) -> Result<Key, String> {
    // The value is secret: the message names the problem, never the text.
    Key::from_base64(value).map_err(|e| format!("not a base64 WireGuard key ({e})"))
}

fn parse_fwmark(value: &str) -> Option<u32> {
    if value.eq_ignore_ascii_case("off") {
        return Some(0);
    }
    match value
        .strip_prefix("0x")
        .or_else(|| value.strip_prefix("0X"))
    {
        Some(hex) => u32::from_str_radix(hex, 16).ok(),
        None => value.parse().ok(),
    }
}

fn parse_allowed_ip(item: &str) -> Option<IpNet> {
    if item.contains('/') {
        item.parse::<IpNet>().ok().map(|n| n.trunc())
    } else {
        item.parse::<std::net::IpAddr>().ok().map(IpNet::from)
    }
}

/// Splits `host:port` / `[v6]:port` into host and port.
fn split_endpoint(value: &str) -> Option<(&str, u16)> {
    let (host, port) = match value.strip_prefix('[') {
        Some(rest) => {
            let (host, after) = rest.split_once(']')?;
            (host, after.strip_prefix(':')?)
        }
        None => value.rsplit_once(':')?,
    };
    if host.is_empty() {
        return None;
    }
    Some((host, port.parse().ok()?))
}

/// Resolves an endpoint (IP literal or DNS name) to its first address, with the system's resolver.
pub async fn resolve_endpoint(endpoint: &str) -> Result<SocketAddr, String> {
    resolve_with(&SystemResolver, endpoint).await
}

/// Resolves an endpoint with `resolver`; IP literals are taken as they are.
async fn resolve_with(resolver: &dyn Resolve, endpoint: &str) -> Result<SocketAddr, String> {
    let (host, port) =
        split_endpoint(endpoint).ok_or_else(|| format!("{endpoint:?} is not host:port"))?;
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    resolver.resolve(host, port).await
}

/// Whether an endpoint names a host (DNS) rather than an address, so that it may resolve
/// differently later.
pub fn is_dns_name(endpoint: &str) -> bool {
    split_endpoint(endpoint).is_some_and(|(host, _)| host.parse::<std::net::IpAddr>().is_err())
}

/// A future of [`Resolve::resolve`].
pub type ResolveFuture<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<SocketAddr, String>> + Send + 'a>>;

/// Turns a host name into an address: the system's resolver ([`SystemResolver`]), or one a test
/// controls.
pub trait Resolve: Send + Sync {
    /// The first address of `host`, with `port`; the error says why there is none.
    fn resolve<'a>(&'a self, host: &'a str, port: u16) -> ResolveFuture<'a>;
}

/// The system's resolver (`getaddrinfo`: /etc/hosts, DNS).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemResolver;

impl Resolve for SystemResolver {
    fn resolve<'a>(&'a self, host: &'a str, port: u16) -> ResolveFuture<'a> {
        Box::pin(async move {
            let mut addrs = tokio::net::lookup_host((host, port))
                .await
                .map_err(|e| e.to_string())?;
            addrs.next().ok_or_else(|| format!("{host} has no address"))
        })
    }
}

/// A peer with a handshake this recent is left alone by [`WgDevice::reresolve`]: its session works,
/// and its live endpoint is where its packets come from. wg's `reresolve-dns.sh` uses the same bound
/// (REJECT_AFTER_TIME plus a margin).
pub const RERESOLVE_SKIP_AFTER_HANDSHAKE: std::time::Duration = std::time::Duration::from_secs(135);

/// The commands of a re-resolution: the endpoint of each peer of `current` whose name now resolves
/// to another address than the one configured, unless the peer has a recent handshake (`fresh`).
/// `UpdateOnly` keeps a peer removed meanwhile from coming back.
pub fn plan_reresolve(
    current: &DeviceConfig,
    resolved: &HashMap<Key, SocketAddr>,
    fresh: &HashSet<Key>,
) -> Vec<Command> {
    let mut commands = Vec::new();
    for peer in current.peers() {
        let Some(&addr) = resolved.get(&peer.public_key) else {
            continue;
        };
        if peer.endpoint != Some(addr) && !fresh.contains(&peer.public_key) {
            commands.extend([
                Command::Peer(peer.public_key),
                Command::UpdateOnly,
                Command::Endpoint(addr),
            ]);
        }
    }
    commands
}

/// The commands that turn `current` into what `file` describes, touching only what differs.
/// `resolved` holds the endpoint of each peer whose endpoint resolved.
pub fn plan(
    current: &DeviceConfig,
    file: &ConfFile,
    resolved: &HashMap<Key, SocketAddr>,
) -> Vec<Command> {
    let mut commands = Vec::new();
    if let Some(key) = file.private_key
        && current.private_key != Some(key)
    {
        commands.push(Command::PrivateKey(Some(key)));
    }
    if let Some(port) = file.listen_port
        && port != current.listen_port
    {
        commands.push(Command::ListenPort(port));
    }
    if file.fwmark != current.fwmark {
        commands.push(Command::Fwmark(file.fwmark));
    }
    let wanted: HashSet<Key> = file.peers.iter().map(|p| p.public_key).collect();
    for peer in current.peers() {
        if !wanted.contains(&peer.public_key) {
            commands.extend([Command::Peer(peer.public_key), Command::Remove]);
        }
    }
    let own = file
        .private_key
        .or(current.private_key)
        .map(|k| k.public_key());
    let peers: Vec<&ConfPeer> = file
        .peers
        .iter()
        .filter(|p| Some(p.public_key) != own)
        .collect();
    // An allowed IP that several peers list ends with the last of them, as after `wg setconf`.
    // Wanting it for the earlier ones too would move it back and forth at every apply.
    let owners: HashMap<IpNet, Key> = peers
        .iter()
        .flat_map(|p| p.allowed_ips.iter().map(|net| (*net, p.public_key)))
        .collect();
    for peer in peers {
        let allowed_ips: Vec<IpNet> = peer
            .allowed_ips
            .iter()
            .copied()
            .filter(|net| owners.get(net) == Some(&peer.public_key))
            .collect();
        let have = current.peer(&peer.public_key);
        let mut changes = Vec::new();
        if have.map(|h| h.preshared_key) != Some(peer.preshared_key) {
            changes.push(Command::PresharedKey(peer.preshared_key));
        }
        if let Some(&addr) = resolved.get(&peer.public_key)
            && have.and_then(|h| h.endpoint) != Some(addr)
        {
            changes.push(Command::Endpoint(addr));
        }
        if have.map(|h| h.persistent_keepalive) != Some(peer.persistent_keepalive) {
            changes.push(Command::PersistentKeepalive(peer.persistent_keepalive));
        }
        let same_ips = have.is_some_and(|h| {
            h.allowed_ips.len() == allowed_ips.len()
                && h.allowed_ips.iter().all(|n| allowed_ips.contains(n))
        });
        if !same_ips {
            changes.push(Command::ReplaceAllowedIps);
            changes.extend(allowed_ips.into_iter().map(Command::AllowedIp));
        }
        if have.is_none() || !changes.is_empty() {
            commands.push(Command::Peer(peer.public_key));
            commands.extend(changes);
        }
    }
    commands
}

impl<Tx: IpSend, Rx: IpRecv> WgDevice<Tx, Rx> {
    /// Reads the wg(8) config file at `path`, resolves its endpoints, and applies it as a diff
    /// (see the module documentation). Unchanged peers keep their sessions.
    pub async fn apply_config_file(&self, path: &Path) -> Result<ApplyReport, ConfFileError> {
        let text = tokio::fs::read_to_string(path)
            .await
            .map_err(|source| ConfFileError::Read {
                path: path.to_owned(),
                source,
            })?;
        let file = parse(path, &text)?;
        self.apply_conf(&file)
            .await
            .map_err(|source| ConfFileError::Refused {
                path: path.to_owned(),
                source,
            })
    }

    /// Applies a parsed wg(8) config as a diff: resolves its endpoints, then changes only what
    /// differs from the current configuration.
    pub async fn apply_conf(&self, file: &ConfFile) -> Result<ApplyReport, UapiError> {
        self.apply_conf_with(file, &SystemResolver).await
    }

    /// [`apply_conf`](Self::apply_conf) with the endpoints resolved by `resolver`.
    pub async fn apply_conf_with(
        &self,
        file: &ConfFile,
        resolver: &dyn Resolve,
    ) -> Result<ApplyReport, UapiError> {
        let mut report = ApplyReport::default();
        let resolved = self
            .resolve_peers(file, resolver, |_| true, &mut report)
            .await;
        let mut planned = 0;
        let result = self
            .set_planned(|current| {
                let commands = plan(current, file, &resolved);
                planned = commands.len();
                commands
            })
            .await;
        report.commands = planned;
        result.map(|()| report)
    }

    /// Re-resolves the DNS names among `file`'s endpoints and moves a peer to its new address only
    /// when the name now resolves to another address than the one configured last, and the peer has
    /// no handshake in the last [`RERESOLVE_SKIP_AFTER_HANDSHAKE`] (as wg's `reresolve-dns.sh`): a
    /// peer that roamed is never pulled back while the name stays the same. A name that did not
    /// resolve before and does now sets the endpoint; one that does not resolve keeps the old.
    /// Nothing but endpoints changes, so a stale `file` cannot undo a newer configuration.
    pub async fn reresolve(
        &self,
        file: &ConfFile,
        resolver: &dyn Resolve,
    ) -> Result<ApplyReport, UapiError> {
        let mut report = ApplyReport::default();
        let names = |peer: &ConfPeer| peer.endpoint.as_deref().is_some_and(is_dns_name);
        let resolved = self.resolve_peers(file, resolver, names, &mut report).await;
        if resolved.is_empty() {
            return Ok(report);
        }
        let now = std::time::SystemTime::now();
        let fresh: HashSet<Key> = self
            .peer_status()
            .await
            .into_iter()
            .filter(|p| {
                p.last_handshake.is_some_and(|at| {
                    now.duration_since(at)
                        .is_ok_and(|age| age < RERESOLVE_SKIP_AFTER_HANDSHAKE)
                })
            })
            .map(|p| p.public_key)
            .collect();
        let mut planned = 0;
        let result = self
            .set_planned(|current| {
                let commands = plan_reresolve(current, &resolved, &fresh);
                planned = commands.len();
                commands
            })
            .await;
        report.commands = planned;
        if planned > 0 {
            tracing::info!(tunnel = %self.name(), commands = planned, "a peer's endpoint name resolves to a new address; endpoint updated");
        }
        result.map(|()| report)
    }

    /// Resolves the endpoints of the peers of `file` that `which` selects; the failures go to
    /// `report` (and the log).
    async fn resolve_peers(
        &self,
        file: &ConfFile,
        resolver: &dyn Resolve,
        which: impl Fn(&ConfPeer) -> bool,
        report: &mut ApplyReport,
    ) -> HashMap<Key, SocketAddr> {
        let mut resolved = HashMap::new();
        for peer in file.peers.iter().filter(|p| which(p)) {
            let Some(endpoint) = &peer.endpoint else {
                continue;
            };
            match resolve_with(resolver, endpoint).await {
                Ok(addr) => {
                    resolved.insert(peer.public_key, addr);
                }
                Err(error) => {
                    tracing::warn!(tunnel = %self.name(), peer = %peer.public_key.to_base64(), %endpoint, %error, "endpoint does not resolve; keeping the previous one");
                    report
                        .unresolved
                        .push((peer.public_key, endpoint.clone(), error));
                }
            }
        }
        resolved
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wg::config::ConfigEdit;
    use proptest::prelude::*;

    const PRIVATE: &str = "MDmmtJTOa/VzfGeNAQIA+fyCgNSN7sVPPD9lDvMxSkc=";
    const PEER_A: &str = "t7vnvdFJ8nU+EL78KJqFde8SUwszxD6sP3HjjT2obzE=";
    const PEER_B: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

    fn key(b64: &str) -> Key {
        Key::from_base64(b64).expect("literal key")
    }

    fn sample() -> String {
        format!(
            "# managed by hand\n[Interface]\nPrivateKey = {PRIVATE}\nListenPort = 51820\nFwMark = 0x10\n\n\
             [Peer]\nPublicKey = {PEER_A}\nEndpoint = [fd00::1]:51821\nAllowedIPs = 10.0.0.1/24, fd10::/64\nAllowedIPs = 192.0.2.7\n\
             PersistentKeepalive = 25\n\n[peer]\npublickey={PEER_B}\nEndpoint = peer.example.net:4242 # a name\n"
        )
    }

    fn apply_plan(config: &mut DeviceConfig, commands: &[Command]) {
        let mut edit = ConfigEdit::default();
        for command in commands {
            edit.apply(config, command);
        }
    }

    #[test]
    fn reresolve_moves_only_peers_whose_name_changed_address_and_have_no_fresh_session() {
        let (a, b) = (key(PEER_A), key(PEER_B));
        let mut current = DeviceConfig::default();
        let old: SocketAddr = "192.0.2.1:51820".parse().expect("literal");
        let new: SocketAddr = "192.0.2.2:51820".parse().expect("literal");
        apply_plan(
            &mut current,
            &[
                Command::Peer(a),
                Command::Endpoint(old),
                Command::Peer(b),
                Command::Endpoint(old),
            ],
        );
        let none = HashSet::new();
        // The same address as configured: nothing, whatever the live endpoint roamed to.
        let same = HashMap::from([(a, old)]);
        assert!(plan_reresolve(&current, &same, &none).is_empty());
        // A new address: that peer only, and only as an update of an existing peer.
        let moved = HashMap::from([(a, new)]);
        assert_eq!(
            plan_reresolve(&current, &moved, &none),
            [
                Command::Peer(a),
                Command::UpdateOnly,
                Command::Endpoint(new)
            ]
        );
        // A peer with a recent handshake keeps its working endpoint.
        assert!(plan_reresolve(&current, &moved, &HashSet::from([a])).is_empty());
        // A peer removed meanwhile is not brought back.
        let gone = HashMap::from([(key(PRIVATE), new)]);
        assert!(plan_reresolve(&current, &gone, &none).is_empty());
    }

    /// Resolves every name to the address the test last set.
    struct OneAddress(std::sync::Mutex<SocketAddr>);

    impl Resolve for OneAddress {
        fn resolve<'a>(&'a self, _host: &'a str, _port: u16) -> ResolveFuture<'a> {
            let addr = *self.0.lock().expect("lock");
            Box::pin(async move { Ok(addr) })
        }
    }

    /// An IPv4/UDP packet from `src` to `dst` (checksummed header, empty payload).
    fn ipv4(src: [u8; 4], dst: [u8; 4]) -> Vec<u8> {
        let mut packet = vec![0u8; 28];
        packet[0] = 0x45;
        packet[3] = 28;
        packet[8] = 64;
        packet[9] = 17;
        packet[12..16].copy_from_slice(&src);
        packet[16..20].copy_from_slice(&dst);
        let sum: u32 = packet[..20]
            .chunks(2)
            .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
            .sum();
        let folded = (sum & 0xffff) + (sum >> 16);
        let checksum = !(((folded & 0xffff) + (folded >> 16)) as u16);
        packet[10..12].copy_from_slice(&checksum.to_be_bytes());
        packet[24..26].copy_from_slice(&8u16.to_be_bytes());
        packet
    }

    /// Two real devices over loopback. `a` knows `b` by a name; `b` moves to another port and `a`
    /// follows it (roaming). Re-resolving the name, which still gives the address configured, leaves
    /// the roamed endpoint alone; a new address is not forced on a peer with a fresh session either.
    #[tokio::test]
    async fn reresolve_leaves_a_roamed_peer_alone() {
        use crate::wg::DeviceSettings;
        use crate::wg::channel::ip_channel;
        use std::time::Duration;
        let device = |seed: u8| async move {
            let (tx, rx, ends) = ip_channel(64, 1420);
            let settings = DeviceSettings {
                name: format!("rr{seed}"),
                private_key: Some(Key([seed; 32])),
                ..DeviceSettings::default()
            };
            let device = WgDevice::new(settings, tx, rx).await.expect("device");
            (device, ends)
        };
        let ((a, a_ends), (b, mut b_ends)) = (device(1).await, device(2).await);
        let localhost = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
        let b_first = localhost(b.listen_port());
        let resolver = OneAddress(std::sync::Mutex::new(b_first));
        let file = ConfFile {
            peers: vec![ConfPeer {
                public_key: Key([2; 32]).public_key(),
                name: None,
                preshared_key: None,
                endpoint: Some(format!("b.invalid:{}", b_first.port())),
                persistent_keepalive: 0,
                allowed_ips: vec!["10.0.0.2/32".parse().expect("net")],
            }],
            ..ConfFile::default()
        };
        a.apply_conf_with(&file, &resolver).await.expect("applied");
        b.set(&[
            Command::Peer(Key([1; 32]).public_key()),
            Command::Endpoint(localhost(a.listen_port())),
            Command::AllowedIp("10.0.0.1/32".parse().expect("net")),
        ])
        .await
        .expect("b knows a");
        let carry = |ends: &crate::wg::channel::IpChannelEnds, packet: Vec<u8>| {
            let sender = ends.to_device.clone();
            async move { sender.send(packet).await.expect("device reads") }
        };
        carry(&a_ends, ipv4([10, 0, 0, 1], [10, 0, 0, 2])).await;
        tokio::time::timeout(Duration::from_secs(10), b_ends.from_device.recv())
            .await
            .expect("a reaches b")
            .expect("b's channel");
        // b moves to a new port and speaks first: a learns the new endpoint (roaming).
        b.set(&[Command::ListenPort(0)]).await.expect("b rebinds");
        let b_moved = localhost(b.listen_port());
        assert_ne!(b_moved, b_first);
        let (b_sender, mut a_receiver) = (b_ends.to_device.clone(), a_ends);
        b_sender
            .send(ipv4([10, 0, 0, 2], [10, 0, 0, 1]))
            .await
            .expect("device reads");
        tokio::time::timeout(Duration::from_secs(10), a_receiver.from_device.recv())
            .await
            .expect("b reaches a")
            .expect("a's channel");

        assert_eq!(a.peer_status().await[0].endpoint, Some(b_moved));

        // The name still resolves as configured: nothing is sent, the roamed endpoint stays.
        let report = a.reresolve(&file, &resolver).await.expect("re-resolved");
        assert_eq!(report.commands, 0);
        assert_eq!(a.peer_status().await[0].endpoint, Some(b_moved));
        // A new address, but the session is fresh: still left alone.
        *resolver.0.lock().expect("lock") = localhost(9);
        let report = a.reresolve(&file, &resolver).await.expect("re-resolved");
        assert_eq!(report.commands, 0);
        assert_eq!(a.peer_status().await[0].endpoint, Some(b_moved));
    }

    #[test]
    fn the_text_of_a_config_parses_back_to_it() {
        let mut file = parse(Path::new("wg0.conf"), &sample()).expect("valid file");
        file.peers[1].endpoint = None;
        let text = file.to_wg_conf();
        assert_eq!(parse(Path::new("again"), &text).expect("parses"), file);
        assert!(!is_dns_name("[fd00::1]:51821") && !is_dns_name("192.0.2.1:1"));
        assert!(is_dns_name("peer.example.net:4242"));
    }

    #[test]
    fn parses_what_wg_showconf_writes() {
        let file = parse(Path::new("wg0.conf"), &sample()).expect("valid file");
        assert_eq!(file.private_key, Some(key(PRIVATE)));
        assert_eq!(file.listen_port, Some(51820));
        assert_eq!(file.fwmark, 16);
        assert_eq!(file.peers.len(), 2);
        let a = &file.peers[0];
        assert_eq!(a.public_key, key(PEER_A));
        assert_eq!(a.endpoint.as_deref(), Some("[fd00::1]:51821"));
        let nets: Vec<String> = a.allowed_ips.iter().map(ToString::to_string).collect();
        assert_eq!(nets, ["10.0.0.0/24", "fd10::/64", "192.0.2.7/32"]);
        assert_eq!(a.persistent_keepalive, 25);
        assert_eq!(
            file.peers[1].endpoint.as_deref(),
            Some("peer.example.net:4242")
        );
    }

    #[test]
    fn errors_name_the_file_line_and_field_but_never_a_key() {
        let bad = format!("[Interface]\nPrivateKey = {}x\n", &PRIVATE[..43]);
        let message = parse(Path::new("/etc/wg/wg0.conf"), &bad)
            .expect_err("bad key")
            .to_string();
        assert!(
            message.starts_with("/etc/wg/wg0.conf:2: PrivateKey"),
            "{message}"
        );
        assert!(
            !message.contains(&PRIVATE[..20]),
            "the key leaked: {message}"
        );
        let message = parse(Path::new("f"), "[Interface]\nAddress = 10.0.0.1/24\n")
            .expect_err("wg-quick key")
            .to_string();
        assert!(
            message.contains("f:2")
                && message.contains("Address")
                && message.contains("wg-quick strip"),
            "{message}"
        );
        assert!(
            parse(Path::new("f"), "[Peer]\nEndpoint = 1.2.3.4:5\n").is_err(),
            "a peer without a key"
        );
        assert!(
            parse(Path::new("f"), "ListenPort = 1\n").is_err(),
            "outside a section"
        );
        let twice = format!("[Peer]\nPublicKey={PEER_A}\n[Peer]\nPublicKey={PEER_A}\n");
        assert!(parse(Path::new("f"), &twice).is_err(), "a repeated peer");
    }

    #[test]
    fn an_unchanged_file_plans_nothing() {
        let file = parse(Path::new("f"), &sample()).expect("valid");
        let mut resolved = HashMap::new();
        resolved.insert(key(PEER_A), "[fd00::1]:51821".parse().expect("literal"));
        resolved.insert(key(PEER_B), "192.0.2.99:4242".parse().expect("literal"));
        let mut config = DeviceConfig::default();
        let first = plan(&config, &file, &resolved);
        assert!(!first.is_empty());
        apply_plan(&mut config, &first);
        assert_eq!(plan(&config, &file, &resolved), Vec::<Command>::new());
    }

    #[test]
    fn a_new_dns_answer_changes_only_that_endpoint() {
        let file = parse(Path::new("f"), &sample()).expect("valid");
        let mut resolved = HashMap::new();
        resolved.insert(key(PEER_B), "192.0.2.99:4242".parse().expect("literal"));
        let mut config = DeviceConfig::default();
        let commands = plan(&config, &file, &resolved);
        apply_plan(&mut config, &commands);
        let moved: SocketAddr = "198.51.100.5:4242".parse().expect("literal");
        resolved.insert(key(PEER_B), moved);
        assert_eq!(
            plan(&config, &file, &resolved),
            vec![Command::Peer(key(PEER_B)), Command::Endpoint(moved)]
        );
        // A name that does not resolve this time leaves the endpoint alone.
        resolved.clear();
        assert_eq!(plan(&config, &file, &resolved), Vec::<Command>::new());
    }

    #[test]
    fn an_allowed_ip_in_two_peers_goes_to_the_last_and_stays() {
        // Found by the wg_conf_file fuzz target: the plan wanted the prefix for both peers, so every
        // re-apply moved it to the other one.
        let text = format!(
            "[Peer]\nPublicKey = {PEER_A}\nAllowedIPs = 10.0.0.0/24, 192.0.2.7\n\
             [Peer]\nPublicKey = {PEER_B}\nAllowedIPs = 10.0.0.0/24\n"
        );
        let file = parse(Path::new("f"), &text).expect("valid");
        let mut config = DeviceConfig::default();
        let commands = plan(&config, &file, &HashMap::new());
        apply_plan(&mut config, &commands);
        let nets = |peer: &str| {
            let peer = config.peer(&key(peer)).expect("configured");
            peer.allowed_ips
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
        };
        assert_eq!(nets(PEER_A), ["192.0.2.7/32"]);
        assert_eq!(nets(PEER_B), ["10.0.0.0/24"]);
        assert_eq!(plan(&config, &file, &HashMap::new()), Vec::<Command>::new());
    }

    #[test]
    fn peers_missing_from_the_file_are_removed() {
        let file = parse(Path::new("f"), &sample()).expect("valid");
        let mut config = DeviceConfig::default();
        let commands = plan(&config, &file, &HashMap::new());
        apply_plan(&mut config, &commands);
        let mut smaller = file.clone();
        smaller.peers.truncate(1);
        assert_eq!(
            plan(&config, &smaller, &HashMap::new()),
            vec![Command::Peer(key(PEER_B)), Command::Remove]
        );
    }

    #[tokio::test]
    async fn endpoints_resolve_literals_and_names() {
        assert_eq!(
            resolve_endpoint("[fd00::1]:7").await,
            Ok("[fd00::1]:7".parse().expect("literal"))
        );
        let local = resolve_endpoint("localhost:51820")
            .await
            .expect("localhost resolves");
        assert!(local.ip().is_loopback() && local.port() == 51820, "{local}");
        assert!(resolve_endpoint("no-such-host.invalid:1").await.is_err());
    }

    proptest! {
        #[test]
        fn hostile_files_never_panic(text in "(\\[(Interface|Peer|x)\\]\n|[A-Za-z]{0,12} ?= ?[-A-Za-z0-9+/=:.,\\[\\]# ]{0,60}\n|[^\n]{0,40}\n){0,12}") {
            let _ = parse(Path::new("f"), &text);
        }

        #[test]
        fn arbitrary_endpoints_never_panic(text in ".{0,60}") {
            let _ = split_endpoint(&text);
        }
    }
}
