//! One tunnel's WireGuard device: the engine (`engine.rs`) with a caller-supplied IP side, the UDP
//! socket kept by `udp.rs`, and the configuration kept by `config.rs`.
//!
//! Every change goes through [`WgDevice::set`]: the commands edit a copy of the configuration,
//! then the live device is brought in line with it by touching only what differs. A peer whose key
//! stays keeps its session, counters and live endpoint; `replace_peers` followed by the same peers
//! (what `wg setconf` sends) changes nothing live. The module knows nothing of memif, VPP or the
//! config files of the tunnel: the IP side is any [`IpSend`]/[`IpRecv`] pair.

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::Mutex;

use crate::wg::config::{ConfigEdit, DeviceConfig};
use crate::wg::engine::{Engine, PeerLive};
use crate::wg::ip_side::{IpRecv, IpSend};
use crate::wg::key::Key;
use crate::wg::status::{HandshakeClock, PeerStatus};
use crate::wg::uapi::{Command, EADDRINUSE, UapiError};
use crate::wg::udp::SocketSlot;

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
    /// The initial configuration was refused.
    #[error("tunnel {name}: initial WireGuard configuration refused: {source}")]
    Configure { name: String, source: UapiError },
}

/// A WireGuard device whose IP side is `Tx`/`Rx` (memif in production, channels in tests).
pub struct WgDevice<Tx: IpSend, Rx: IpRecv> {
    name: String,
    engine: Engine<Tx, Rx>,
    socket: SocketSlot,
    // INVARIANT: after every `set`, the engine's peers equal `config`'s (none while there is no
    // private key), with the same preshared keys, keepalives and allowed IPs.
    config: Mutex<DeviceConfig>,
    handshakes: HandshakeClock,
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
        // No key and no peers at build: the packet loops start when the first key is set.
        let engine = Engine::new(socket.clone(), ip_tx, ip_rx);
        let mut config = DeviceConfig::default();
        config.listen_port = listen_port;
        config.fwmark = fwmark;
        let device = WgDevice {
            name,
            engine,
            socket,
            config: Mutex::new(config),
            handshakes: HandshakeClock::default(),
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
                        let hint = if e.kind() == std::io::ErrorKind::PermissionDenied {
                            " (a socket mark needs CAP_NET_ADMIN)"
                        } else {
                            ""
                        };
                        UapiError::new(
                            EADDRINUSE,
                            format!("cannot set fwmark {mark}: {e}{hint}; the old mark stays"),
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
        self.engine.apply(&desired, edit.explicit_endpoints()).await;
        *config = desired;
        match failure {
            Some(error) => {
                tracing::warn!(tunnel = %self.name, error = %error, "configuration change refused");
                Err(error)
            }
            None => Ok(()),
        }
    }

    /// The live state of every configured peer, in configuration order.
    pub async fn peer_status(&self) -> Vec<PeerStatus> {
        let config = self.config.lock().await;
        self.peer_status_of(&config).await
    }

    async fn peer_status_of(&self, config: &DeviceConfig) -> Vec<PeerStatus> {
        let now = SystemTime::now();
        let live = self.engine.peers();
        self.handshakes
            .forget_all_but(|key| config.peer(key).is_some());
        config
            .peers()
            .into_iter()
            .map(|peer| {
                let live = live.get(&peer.public_key).copied().unwrap_or(PeerLive {
                    endpoint: peer.endpoint,
                    rx_bytes: 0,
                    tx_bytes: 0,
                    since_handshake: None,
                });
                PeerStatus {
                    public_key: peer.public_key,
                    endpoint: live.endpoint.or(peer.endpoint),
                    rx_bytes: live.rx_bytes,
                    tx_bytes: live.tx_bytes,
                    last_handshake: self.handshakes.wall_clock(
                        peer.public_key,
                        now,
                        live.since_handshake,
                    ),
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

    /// Stops the device: its packet loops have ended and its socket is closed when this returns.
    pub async fn stop(self) {
        self.engine.stop().await;
    }
}

#[cfg(test)]
mod tests {
    //! Two devices joined over loopback UDP, each with a channel IP side driven by the test.

    use super::*;
    use crate::wg::channel::{ChannelIpRecv, ChannelIpSend, IpChannelEnds, ip_channel};
    use std::net::{Ipv4Addr, SocketAddr};
    use std::time::Duration;

    type TestDevice = WgDevice<ChannelIpSend, ChannelIpRecv>;

    struct Side {
        device: TestDevice,
        ends: IpChannelEnds,
        key: Key,
        address: Ipv4Addr,
    }

    async fn side(name: &str, seed: u8, address: Ipv4Addr) -> Side {
        let (tx, rx, ends) = ip_channel(256, 1420);
        let key = Key([seed; 32]);
        let settings = DeviceSettings {
            name: name.into(),
            private_key: Some(key),
            ..DeviceSettings::default()
        };
        let device = WgDevice::new(settings, tx, rx)
            .await
            .expect("device starts");
        Side {
            device,
            ends,
            key,
            address,
        }
    }

    fn peer_commands(of: &Side, port: u16) -> Vec<Command> {
        vec![
            Command::Peer(of.key.public_key()),
            Command::Endpoint(SocketAddr::from((Ipv4Addr::LOCALHOST, port))),
            Command::ReplaceAllowedIps,
            Command::AllowedIp(ipnet::IpNet::from(std::net::IpAddr::V4(of.address))),
        ]
    }

    async fn joined() -> (Side, Side) {
        let a = side("wga", 1, Ipv4Addr::new(10, 0, 0, 1)).await;
        let b = side("wgb", 2, Ipv4Addr::new(10, 0, 0, 2)).await;
        a.device
            .set(&peer_commands(&b, b.device.listen_port()))
            .await
            .expect("peer b");
        b.device
            .set(&peer_commands(&a, a.device.listen_port()))
            .await
            .expect("peer a");
        (a, b)
    }

    fn ipv4_udp(src: Ipv4Addr, dst: Ipv4Addr, payload: &[u8]) -> Vec<u8> {
        let total = 28 + payload.len();
        let mut packet = vec![0u8; total];
        packet[0] = 0x45;
        packet[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        packet[8] = 64;
        packet[9] = 17;
        packet[12..16].copy_from_slice(&src.octets());
        packet[16..20].copy_from_slice(&dst.octets());
        let sum = packet[..20]
            .chunks(2)
            .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
            .sum::<u32>();
        let folded = (sum & 0xffff) + (sum >> 16);
        let checksum = !(((folded & 0xffff) + (folded >> 16)) as u16);
        packet[10..12].copy_from_slice(&checksum.to_be_bytes());
        packet[20..22].copy_from_slice(&4000u16.to_be_bytes());
        packet[22..24].copy_from_slice(&4001u16.to_be_bytes());
        packet[24..26].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        packet[28..].copy_from_slice(payload);
        packet
    }

    /// Sends one packet from `from` to `to` through the tunnel and checks it arrives unchanged.
    async fn carry(from: &Side, to: &mut Side, payload: &[u8]) {
        let packet = ipv4_udp(from.address, to.address, payload);
        from.ends
            .to_device
            .send(packet.clone())
            .await
            .expect("device reads packets");
        let received = tokio::time::timeout(Duration::from_secs(5), to.ends.from_device.recv())
            .await
            .expect("the packet crosses the tunnel within 5 s")
            .expect("device sends packets");
        assert_eq!(received, packet);
    }

    async fn status(side: &Side, peer: &Side) -> PeerStatus {
        let all = side.device.peer_status().await;
        all.into_iter()
            .find(|s| s.public_key == peer.key.public_key())
            .expect("peer configured")
    }

    #[tokio::test]
    async fn a_setconf_of_the_same_peers_keeps_the_session_and_counters() {
        let (a, mut b) = joined().await;
        carry(&a, &mut b, b"first").await;
        let before = status(&a, &b).await;
        assert!(before.last_handshake.is_some() && before.tx_bytes > 0);

        // What `wg setconf` sends: replace_peers, then every peer again.
        let mut commands = vec![
            Command::PrivateKey(Some(a.key)),
            Command::Fwmark(0),
            Command::ReplacePeers,
        ];
        commands.extend(peer_commands(&b, b.device.listen_port()));
        a.device.set(&commands).await.expect("setconf");
        carry(&a, &mut b, b"second").await;

        let after = status(&a, &b).await;
        assert_eq!(
            after.last_handshake, before.last_handshake,
            "no new handshake"
        );
        assert!(
            after.tx_bytes > before.tx_bytes,
            "counters kept and rising: {before:?} -> {after:?}"
        );
    }

    #[tokio::test]
    async fn a_failed_port_change_keeps_the_old_socket_and_reports_eaddrinuse() {
        let (mut a, mut b) = joined().await;
        let port = a.device.listen_port();
        let blocker = std::net::UdpSocket::bind("[::]:0").expect("bind a blocker");
        let taken = blocker.local_addr().expect("addr").port();
        let error = a
            .device
            .set(&[Command::ListenPort(taken)])
            .await
            .expect_err("port taken");
        assert_eq!(error.errno, EADDRINUSE);
        assert_eq!(a.device.listen_port(), port);
        assert!(
            a.device
                .uapi_get()
                .await
                .contains(&format!("listen_port={port}\n"))
        );
        carry(&a, &mut b, b"still up").await;
        carry(&b, &mut a, b"both ways").await;
    }

    #[tokio::test]
    async fn a_port_change_moves_the_traffic_to_the_new_socket() {
        let (mut a, mut b) = joined().await;
        carry(&a, &mut b, b"before").await;
        let handshake = status(&b, &a).await.last_handshake;
        a.device
            .set(&[Command::ListenPort(0)])
            .await
            .expect("rebind to a random port");
        let new_port = a.device.listen_port();
        carry(&a, &mut b, b"from the new port").await;
        assert_eq!(
            status(&b, &a).await.endpoint.map(|e| e.port()),
            Some(new_port),
            "b roams to a's new port"
        );
        carry(&b, &mut a, b"back to the new port").await;
        assert_eq!(
            status(&b, &a).await.last_handshake,
            handshake,
            "the session survives the rebind"
        );
    }

    #[tokio::test]
    async fn removing_the_private_key_stops_the_peers_and_setting_it_again_restores_them() {
        let (mut a, mut b) = joined().await;
        a.device
            .set(&[Command::PrivateKey(None)])
            .await
            .expect("remove key");
        let get = a.device.uapi_get().await;
        assert!(!get.contains("private_key="), "{get}");
        assert!(
            get.contains(&format!("public_key={}", b.key.public_key().to_hex())),
            "peers stay configured"
        );
        a.device
            .set(&[Command::PrivateKey(Some(a.key))])
            .await
            .expect("key back");
        carry(&a, &mut b, b"after the key came back").await;
        carry(&b, &mut a, b"and back").await;
    }

    #[tokio::test]
    async fn get_lists_device_keys_then_peers_in_wireguard_go_order() {
        let a = side("wgget", 3, Ipv4Addr::new(10, 0, 0, 3)).await;
        let peer = Key([9; 32]);
        let endpoint: SocketAddr = "[fd00::1]:51820".parse().expect("literal");
        a.device
            .set(&[
                Command::Peer(peer),
                Command::PresharedKey(Some(Key([5; 32]))),
                Command::Endpoint(endpoint),
                Command::PersistentKeepalive(25),
                Command::AllowedIp("fd10::/64".parse().expect("literal")),
                Command::AllowedIp("10.1.0.0/16".parse().expect("literal")),
            ])
            .await
            .expect("set");
        let get = a.device.uapi_get().await;
        let keys: Vec<&str> = get
            .lines()
            .map(|l| l.split('=').next().unwrap_or(""))
            .collect();
        assert_eq!(
            keys,
            [
                "private_key",
                "listen_port",
                "public_key",
                "preshared_key",
                "protocol_version",
                "endpoint",
                "last_handshake_time_sec",
                "last_handshake_time_nsec",
                "tx_bytes",
                "rx_bytes",
                "persistent_keepalive_interval",
                "allowed_ip",
                "allowed_ip"
            ]
        );
        assert!(
            get.contains("endpoint=[fd00::1]:51820\n")
                && get.contains("allowed_ip=fd10::/64\nallowed_ip=10.1.0.0/16\n"),
            "{get}"
        );
        assert!(get.contains(&format!("private_key={}\n", a.key.to_hex())));
    }
}
