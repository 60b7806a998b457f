//! One tunnel's WireGuard device: gotatun's device with a caller-supplied IP side, the UDP socket
//! kept by `udp.rs`, and the configuration kept by `config.rs`.
//!
//! Every change goes through [`WgDevice::set`]: the commands edit a copy of the configuration,
//! then the live device is brought in line with it by touching only what differs. A peer whose key
//! stays keeps its session, counters and live endpoint; `replace_peers` followed by the same peers
//! (what `wg setconf` sends) changes nothing live. The module knows nothing of memif, VPP or the
//! config files of the tunnel: the IP side is any [`IpSend`]/[`IpRecv`] pair.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use gotatun::device::{Device, Peer};
use gotatun::tun::{IpRecv, IpSend};
use gotatun::x25519::{PublicKey, StaticSecret};
use ipnet::IpNet;
use ipnetwork::IpNetwork;
use tokio::sync::Mutex;

use crate::wg::config::{ConfigEdit, DeviceConfig, PeerConfig};
use crate::wg::key::Key;
use crate::wg::uapi::{Command, EADDRINUSE, EIO, UapiError};
use crate::wg::udp::{SocketFactory, SocketSlot};

/// What a device starts with. Everything else arrives through [`WgDevice::set`] (UAPI or a wg(8)
/// config file).
#[derive(Clone, Default)]
pub struct DeviceSettings {
    /// Interface name, for logs.
    pub name: String,
    /// Private key, if known at start.
    pub private_key: Option<Key>,
    /// UDP listen port; 0 picks a random one.
    pub listen_port: u16,
    /// fwmark of the UDP socket; 0 is none (setting one needs CAP_NET_ADMIN).
    pub fwmark: u32,
}

impl std::fmt::Debug for DeviceSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceSettings")
            .field("name", &self.name)
            .field("private_key", &self.private_key.map(|_| "<set>"))
            .field("listen_port", &self.listen_port)
            .field("fwmark", &self.fwmark)
            .finish()
    }
}

/// Why a device could not be created.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// The UDP socket could not be bound.
    #[error(
        "tunnel {name}: cannot bind the WireGuard UDP port {port} (fwmark {fwmark}): {source}; choose a free port or 0 for a random one"
    )]
    Bind {
        name: String,
        port: u16,
        fwmark: u32,
        source: std::io::Error,
    },
    /// gotatun refused to build the device.
    #[error("tunnel {name}: cannot start the WireGuard device: {source}")]
    Start {
        name: String,
        source: gotatun::device::Error,
    },
    /// The initial configuration was refused.
    #[error("tunnel {name}: initial WireGuard configuration refused: {source}")]
    Configure { name: String, source: UapiError },
}

/// A peer's live state, for status and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerStatus {
    /// The peer's public key.
    pub public_key: Key,
    /// Where packets to the peer go now (the configured endpoint, or where it roamed to).
    pub endpoint: Option<SocketAddr>,
    /// Bytes received from the peer.
    pub rx_bytes: u64,
    /// Bytes sent to the peer.
    pub tx_bytes: u64,
    /// Wall-clock time of the last completed handshake.
    pub last_handshake: Option<SystemTime>,
}

type Engine<Tx, Rx> = Device<(SocketFactory, Tx, Rx)>;

/// A WireGuard device whose IP side is `Tx`/`Rx` (memif in production, channels in tests).
pub struct WgDevice<Tx: IpSend, Rx: IpRecv> {
    name: String,
    engine: Engine<Tx, Rx>,
    socket: SocketSlot,
    // INVARIANT: after every `set`, the engine's peers equal `config`'s (none while there is no
    // private key), with the same preshared keys, keepalives and allowed IPs.
    config: Mutex<DeviceConfig>,
}

impl<Tx: IpSend, Rx: IpRecv> WgDevice<Tx, Rx> {
    /// Creates the device, binds its UDP socket and applies `settings`. Packets decrypted for the
    /// IP side go to `ip_tx`; packets read from `ip_rx` are encrypted to the peer owning their
    /// destination.
    pub async fn new(settings: DeviceSettings, ip_tx: Tx, ip_rx: Rx) -> Result<Self, DeviceError> {
        let DeviceSettings {
            name,
            private_key,
            listen_port,
            fwmark,
        } = settings;
        let socket = SocketSlot::bind(listen_port, fwmark).map_err(|source| DeviceError::Bind {
            name: name.clone(),
            port: listen_port,
            fwmark,
            source,
        })?;
        // No key and no peers at build: gotatun's connection comes up when the first key is set.
        let engine = gotatun::device::build()
            .with_udp(SocketFactory::new(socket.clone()))
            .with_ip_pair(ip_tx, ip_rx)
            .with_listen_port(socket.port())
            .build()
            .await
            .map_err(|source| DeviceError::Start {
                name: name.clone(),
                source,
            })?;
        let mut config = DeviceConfig::default();
        config.listen_port = listen_port;
        config.fwmark = fwmark;
        let device = WgDevice {
            name,
            engine,
            socket,
            config: Mutex::new(config),
        };
        if private_key.is_some() {
            device
                .set(&[Command::PrivateKey(private_key)])
                .await
                .map_err(|source| DeviceError::Configure {
                    name: device.name.clone(),
                    source,
                })?;
        }
        Ok(device)
    }

    /// The interface name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The UDP port the device listens on (never 0: a random port is reported as bound).
    pub fn listen_port(&self) -> u16 {
        self.socket.port()
    }

    /// A copy of the current configuration.
    pub async fn config(&self) -> DeviceConfig {
        self.config.lock().await.clone()
    }

    /// Applies the commands of one `set=1` request in order, stopping at the first that fails
    /// (those before it stay applied, as in wireguard-go). A failed port or fwmark change keeps
    /// the old socket and returns `EADDRINUSE`.
    pub async fn set(&self, commands: &[Command]) -> Result<(), UapiError> {
        self.set_planned(|_| commands.to_vec()).await
    }

    /// Like [`set`](Self::set), with the commands planned from the current configuration while
    /// no other change can slip in between (used to apply a config file as a diff).
    pub async fn set_planned(
        &self,
        plan: impl FnOnce(&DeviceConfig) -> Vec<Command>,
    ) -> Result<(), UapiError> {
        let mut config = self.config.lock().await;
        let commands = plan(&config);
        let mut desired = config.clone();
        let mut edit = ConfigEdit::default();
        let mut failure = None;
        for command in &commands {
            let step = match *command {
                Command::ListenPort(port) if port != self.socket.port() => {
                    self.socket.rebind(port).map(drop).map_err(|e| {
                        UapiError::new(
                            EADDRINUSE,
                            format!("cannot bind UDP port {port}: {e}; the old port stays in use"),
                        )
                    })
                }
                Command::Fwmark(mark) if mark != desired.fwmark => {
                    self.socket.set_fwmark(mark).map_err(|e| {
                        UapiError::new(
                            EADDRINUSE,
                            format!("cannot set fwmark {mark}: {e}; the old mark stays"),
                        )
                    })
                }
                _ => Ok(()),
            };
            if let Err(error) = step {
                failure = Some(error);
                break;
            }
            edit.apply(&mut desired, command);
        }
        let synced = self.sync_engine(&desired, edit.explicit_endpoints()).await;
        *config = desired;
        if let Err(e) = synced {
            tracing::error!(tunnel = %self.name, error = %e, "the WireGuard device did not take the new configuration");
            return Err(UapiError::new(
                EIO,
                format!("the device did not take the configuration: {e}"),
            ));
        }
        match failure {
            Some(error) => {
                tracing::warn!(tunnel = %self.name, error = %error, "configuration change refused");
                Err(error)
            }
            None => Ok(()),
        }
    }

    /// Brings the live device in line with `desired`, touching only what differs.
    async fn sync_engine(
        &self,
        desired: &DeviceConfig,
        explicit_endpoints: &HashSet<Key>,
    ) -> Result<(), gotatun::device::Error> {
        let port = self.socket.port();
        self.engine
            .write(async |live| {
                let Some(private_key) = desired.private_key else {
                    // Without a key there are no live peers: nothing is sent, nothing accepted.
                    for stats in live.peers().await {
                        live.remove_peer(&stats.peer.public_key).await;
                    }
                    return;
                };
                // A no-op (and no reconnect) when the key is unchanged.
                live.set_private_key(StaticSecret::from(private_key.0))
                    .await;
                let current: HashMap<Key, Peer> = live
                    .peers()
                    .await
                    .into_iter()
                    .map(|stats| (Key(stats.peer.public_key.to_bytes()), stats.peer))
                    .collect();
                for key in current.keys() {
                    if desired.peer(key).is_none() {
                        live.remove_peer(&PublicKey::from(key.0)).await;
                    }
                }
                for want in desired.peers() {
                    let public_key = PublicKey::from(want.public_key.0);
                    let set_endpoint = explicit_endpoints.contains(&want.public_key);
                    match current.get(&want.public_key) {
                        None => {
                            live.add_peer(new_peer(want));
                        }
                        Some(have) => {
                            let change = PeerChange::between(have, want, set_endpoint);
                            if change.is_some() {
                                live.modify_peer(&public_key, |peer| change.apply(want, peer))
                                    .await;
                            }
                        }
                    }
                }
                // Moves the live connection onto a socket bound by `rebind` (gotatun's "bind" hands
                // out the socket in the slot, so this never binds anything itself).
                if live.private_key().is_some() && live.listen_port() != port {
                    live.set_listen_port(port);
                }
            })
            .await
    }

    /// The live state of every configured peer, in configuration order.
    pub async fn peer_status(&self) -> Vec<PeerStatus> {
        let config = self.config.lock().await;
        self.peer_status_of(&config).await
    }

    async fn peer_status_of(&self, config: &DeviceConfig) -> Vec<PeerStatus> {
        let now = SystemTime::now();
        let live: HashMap<Key, (Option<SocketAddr>, usize, usize, Option<Duration>)> = self
            .engine
            .read(async |device| device.peers().await)
            .await
            .into_iter()
            .map(|s| {
                let key = Key(s.peer.public_key.to_bytes());
                (
                    key,
                    (
                        s.peer.endpoint,
                        s.stats.rx_bytes,
                        s.stats.tx_bytes,
                        s.stats.last_handshake,
                    ),
                )
            })
            .collect();
        config
            .peers()
            .into_iter()
            .map(|peer| {
                let (endpoint, rx, tx, since) =
                    live.get(&peer.public_key)
                        .copied()
                        .unwrap_or((peer.endpoint, 0, 0, None));
                PeerStatus {
                    public_key: peer.public_key,
                    endpoint: endpoint.or(peer.endpoint),
                    rx_bytes: rx as u64,
                    tx_bytes: tx as u64,
                    last_handshake: since.and_then(|d| now.checked_sub(d)),
                }
            })
            .collect()
    }

    /// The reply to `get=1` without the final `errno=0` line, in wireguard-go's order.
    pub async fn uapi_get(&self) -> String {
        let config = self.config.lock().await;
        let status = self.peer_status_of(&config).await;
        let mut out = String::with_capacity(256 + 400 * status.len());
        if let Some(key) = config.private_key {
            let _ = writeln!(out, "private_key={}", key.to_hex());
        }
        let _ = writeln!(out, "listen_port={}", self.socket.port());
        if config.fwmark != 0 {
            let _ = writeln!(out, "fwmark={}", config.fwmark);
        }
        for (peer, live) in config.peers().into_iter().zip(&status) {
            let _ = writeln!(out, "public_key={}", peer.public_key.to_hex());
            let _ = writeln!(
                out,
                "preshared_key={}",
                peer.preshared_key.unwrap_or(Key::ZERO).to_hex()
            );
            let _ = writeln!(out, "protocol_version=1");
            if let Some(endpoint) = live.endpoint {
                let _ = writeln!(out, "endpoint={endpoint}");
            }
            let since_epoch = live
                .last_handshake
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .unwrap_or_default();
            let _ = writeln!(out, "last_handshake_time_sec={}", since_epoch.as_secs());
            let _ = writeln!(
                out,
                "last_handshake_time_nsec={}",
                since_epoch.subsec_nanos()
            );
            let _ = writeln!(out, "tx_bytes={}", live.tx_bytes);
            let _ = writeln!(out, "rx_bytes={}", live.rx_bytes);
            let _ = writeln!(
                out,
                "persistent_keepalive_interval={}",
                peer.persistent_keepalive
            );
            for net in &peer.allowed_ips {
                let _ = writeln!(out, "allowed_ip={net}");
            }
        }
        out
    }

    /// Stops the device: its tasks end and its socket closes.
    pub async fn stop(self) {
        self.engine.stop().await;
    }
}

fn new_peer(config: &PeerConfig) -> Peer {
    let mut peer = Peer::new(PublicKey::from(config.public_key.0));
    peer.endpoint = config.endpoint;
    peer.allowed_ips = config.allowed_ips.iter().map(to_ipnetwork).collect();
    peer.preshared_key = config.preshared_key.map(|k| k.0);
    peer.keepalive = keepalive(config.persistent_keepalive);
    peer
}

fn keepalive(seconds: u16) -> Option<u16> {
    (seconds != 0).then_some(seconds)
}

fn to_ipnetwork(net: &IpNet) -> IpNetwork {
    // An IpNet's prefix length is always valid for its family, which is all `new` checks.
    IpNetwork::new(net.addr(), net.prefix_len()).expect("IpNet prefix lengths are valid")
}

fn sorted_networks(nets: impl IntoIterator<Item = IpNetwork>) -> Vec<IpNetwork> {
    let mut nets: Vec<IpNetwork> = nets.into_iter().collect();
    nets.sort_by_key(|n| (n.ip(), n.prefix()));
    nets
}

/// What differs between a live peer and its desired configuration.
#[derive(Debug, Default, PartialEq, Eq)]
struct PeerChange {
    preshared_key: bool,
    keepalive: bool,
    allowed_ips: bool,
    endpoint: bool,
}

impl PeerChange {
    fn between(live: &Peer, want: &PeerConfig, set_endpoint: bool) -> PeerChange {
        let want_ips = sorted_networks(want.allowed_ips.iter().map(to_ipnetwork));
        PeerChange {
            preshared_key: live.preshared_key != want.preshared_key.map(|k| k.0),
            keepalive: live.keepalive.filter(|&s| s != 0) != keepalive(want.persistent_keepalive),
            allowed_ips: sorted_networks(live.allowed_ips.iter().copied()) != want_ips,
            endpoint: set_endpoint && want.endpoint.is_some() && live.endpoint != want.endpoint,
        }
    }

    fn is_some(&self) -> bool {
        *self != PeerChange::default()
    }

    fn apply(&self, want: &PeerConfig, peer: &mut gotatun::device::configure::PeerMut) {
        if self.preshared_key {
            peer.set_preshared_key(want.preshared_key.map(|k| k.0));
        }
        if self.keepalive {
            peer.set_keepalive(keepalive(want.persistent_keepalive));
        }
        if self.allowed_ips {
            peer.clear_allowed_ips();
            peer.add_allowed_ips(want.allowed_ips.iter().map(to_ipnetwork));
        }
        if self.endpoint {
            peer.set_endpoint(want.endpoint);
        }
    }
}
