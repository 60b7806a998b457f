//! The real [`TunnelRuntime`]: every tunnel is a [`Tunnel`] of the tunnel module, the same lifecycle
//! `wireguard-vpp NAME` runs (VPP objects swept and created, memif served, UAPI socket at
//! `/var/run/wireguard/<name>.sock` so `kubectl exec ... wg show` works, everything undone on stop).
//! Its WireGuard side is applied through the device's wg(8)-config diff, so a peer edit or a new key keeps
//! the sessions of unchanged peers.

use std::collections::HashMap;
use std::time::Duration;

use tokio::sync::Mutex;

use super::render::WireGuardConfig;
use super::runtime::{
    CounterSample, PeerStats, Phase, RuntimeError, TunnelRuntime, TunnelSpec, TunnelState,
};
use crate::config::Env;
use crate::tunnel::{self, RunOptions, Tunnel, TunnelError};
use crate::wg::conf_file::{ConfFile, ConfPeer};
use crate::wg::key::Key as WgKey;

/// How long a tunnel started by the controller waits for VPP's first memif connection before it ends
/// (undoing its VPP objects) and the controller starts it again at its next retry. It is also the
/// longest a stop can take while VPP has not connected yet: the tunnel observes a stop only once its
/// memif is up.
pub const CONTROLLER_MEMIF_WAIT: Duration = Duration::from_secs(60);

/// Runs the controller's tunnels in this process.
pub struct TunnelManager {
    options: RunOptions,
    tunnels: Mutex<HashMap<String, Managed>>,
}

struct Managed {
    spec: TunnelSpec,
    tunnel: Tunnel,
    /// Why the tunnel's task ended by itself, once it has.
    ended: Option<String>,
}

fn runtime_error(reason: &'static str, error: impl std::fmt::Display) -> RuntimeError {
    RuntimeError {
        reason,
        message: error.to_string(),
    }
}

/// A short, bounded reason for a tunnel error.
fn reason_of(error: &TunnelError) -> &'static str {
    match error {
        TunnelError::Config(_) => "ConfigInvalid",
        TunnelError::Device(_) => "WireGuardDeviceFailed",
        TunnelError::MemifSocket { .. } => "MemifSocketFailed",
        TunnelError::MemifTimeout { .. } => "WaitingForVpp",
        TunnelError::VppConnect(_) => "VppUnreachable",
        _ => "TunnelFailed",
    }
}

/// The wg(8) configuration the device applies as a diff.
fn conf_file(wireguard: &WireGuardConfig) -> ConfFile {
    ConfFile {
        private_key: wireguard.private_key.as_ref().map(|k| WgKey(*k.as_bytes())),
        listen_port: Some(wireguard.listen_port),
        fwmark: 0,
        peers: wireguard
            .peers
            .iter()
            .map(|p| ConfPeer {
                public_key: WgKey(*p.public_key.as_bytes()),
                preshared_key: p.preshared_key.as_ref().map(|k| WgKey(*k.as_bytes())),
                endpoint: p.endpoint.clone(),
                persistent_keepalive: p.persistent_keepalive.unwrap_or(0),
                allowed_ips: p.allowed_ips.iter().map(ipnet::IpNet::trunc).collect(),
            })
            .collect(),
    }
}

impl TunnelManager {
    /// A manager running tunnels with `options`.
    pub fn new(options: RunOptions) -> TunnelManager {
        TunnelManager {
            options,
            tunnels: Mutex::default(),
        }
    }

    /// The controller's settings: VPP through its API at `env`'s socket, `wg`'s socket directory, and
    /// a memif wait of [`CONTROLLER_MEMIF_WAIT`].
    pub fn for_controller(env: &Env) -> TunnelManager {
        let mut options = RunOptions::new(&env.vpp_api_socket);
        options.first_connect_timeout = CONTROLLER_MEMIF_WAIT;
        TunnelManager::new(options)
    }

    /// Stops every tunnel, undoing its VPP objects (when the pod stops).
    pub async fn stop_all(&self) {
        let tunnels: Vec<(String, Managed)> = self.tunnels.lock().await.drain().collect();
        for (name, managed) in tunnels {
            if let Err(error) = managed.tunnel.stop().await {
                tracing::warn!(tunnel = %name, %error, "stopping the tunnel failed");
            }
        }
    }
}

impl TunnelRuntime for TunnelManager {
    async fn start(&self, spec: TunnelSpec) -> Result<(), RuntimeError> {
        let mut tunnels = self.tunnels.lock().await;
        let name = spec.name().to_string();
        if let Some(existing) = tunnels.get(&name) {
            if existing.spec == spec && existing.ended.is_none() {
                return Ok(());
            }
            if let Some(existing) = tunnels.remove(&name)
                && let Err(error) = existing.tunnel.stop().await
            {
                tracing::warn!(tunnel = %name, %error, "stopping the previous instance failed");
            }
        }
        let tunnel = Tunnel::start(spec.config.clone(), self.options.clone())
            .await
            .map_err(|error| runtime_error(reason_of(&error), error))?;
        if let Err(error) = tunnel
            .device()
            .apply_conf(&conf_file(&spec.wireguard))
            .await
        {
            let _ = tunnel.stop().await;
            return Err(runtime_error("WireGuardConfigRefused", error));
        }
        tunnels.insert(
            name,
            Managed {
                spec,
                tunnel,
                ended: None,
            },
        );
        Ok(())
    }

    async fn reconfigure(
        &self,
        name: &str,
        wireguard: WireGuardConfig,
    ) -> Result<(), RuntimeError> {
        let mut tunnels = self.tunnels.lock().await;
        let managed = tunnels
            .get_mut(name)
            .ok_or_else(|| runtime_error("NotRunning", format!("tunnel {name} is not running")))?;
        managed
            .tunnel
            .device()
            .apply_conf(&conf_file(&wireguard))
            .await
            .map_err(|error| runtime_error("WireGuardConfigRefused", error))?;
        managed.spec.wireguard = wireguard;
        Ok(())
    }

    async fn stop(&self, name: &str) -> Result<(), RuntimeError> {
        let Some(managed) = self.tunnels.lock().await.remove(name) else {
            return Ok(());
        };
        if managed.ended.is_some() {
            return Ok(());
        }
        // The tunnel undoes what it created whatever ended it; an error here (VPP never connected, say)
        // is worth a log line, not a retry.
        if let Err(error) = managed.tunnel.stop().await {
            tracing::warn!(tunnel = %name, %error, "the tunnel reported an error while stopping");
        }
        Ok(())
    }

    async fn state(&self, name: &str) -> Option<TunnelState> {
        let mut tunnels = self.tunnels.lock().await;
        let managed = tunnels.get_mut(name)?;
        let status = managed.tunnel.status().borrow().clone();
        if status.phase == tunnel::Phase::Stopped && managed.ended.is_none() {
            // The task is done, so this does not wait; it must be awaited only once.
            managed.ended = Some(match managed.tunnel.finished().await {
                Ok(()) => "the tunnel stopped by itself (its UAPI socket was removed)".to_string(),
                Err(error) => error.to_string(),
            });
        }
        let phase = match (&managed.ended, status.phase) {
            (Some(_), _) => Phase::Failed,
            (None, tunnel::Phase::Setup) => Phase::Setup,
            (None, tunnel::Phase::WaitingForMemif) => Phase::WaitingForMemif,
            (None, tunnel::Phase::Running) => Phase::Running,
            (
                None,
                tunnel::Phase::Reconnecting | tunnel::Phase::TearingDown | tunnel::Phase::Stopped,
            ) => Phase::Reconnecting,
        };
        let peers = managed
            .tunnel
            .device()
            .peer_status()
            .await
            .into_iter()
            .map(|p| PeerStats {
                public_key: p.public_key.to_base64(),
                endpoint: p.endpoint.map(|e| e.to_string()),
                last_handshake: p.last_handshake,
                rx_bytes: p.rx_bytes,
                tx_bytes: p.tx_bytes,
            })
            .collect();
        let link = managed.tunnel.link();
        let l2 = link.adapter().counters();
        let mut counters: Vec<CounterSample> = l2
            .drops()
            .map(|(reason, value)| CounterSample {
                family: "l2_dropped",
                label: Some(("reason", reason.name())),
                value,
            })
            .chain(l2.events().map(|(event, value)| CounterSample {
                family: "l2_events",
                label: Some(("event", event.name())),
                value,
            }))
            .collect();
        let own = link.counters();
        use std::sync::atomic::Ordering::Relaxed;
        for (family, value) in [
            ("memif_tx_dropped", own.tx_dropped.load(Relaxed)),
            ("memif_tx_too_big", own.tx_too_big.load(Relaxed)),
            ("memif_rx_not_ip", own.rx_not_ip.load(Relaxed)),
        ] {
            counters.push(CounterSample {
                family,
                label: None,
                value,
            });
        }
        Some(TunnelState {
            phase,
            vpp_configured: matches!(
                phase,
                Phase::WaitingForMemif | Phase::Running | Phase::Reconnecting
            ),
            sw_if_index: status.memif_sw_if_index,
            memif_socket: managed.spec.config.memif_socket.display().to_string(),
            // The device's own port: the published status keeps the port bound before the config applied.
            listen_port: Some(managed.tunnel.device().listen_port()),
            error: managed.ended.clone(),
            peers,
            counters,
        })
    }
}

#[cfg(test)]
mod tests {
    //! The real tunnel lifecycle with VPP left alone (`VppAccess::Off`) and no memif peer: the tunnel
    //! waits for VPP's memif while its WireGuard device (a real UDP socket) is configured and edited.
    use super::*;
    use crate::k8s::WireGuardVppTunnel;
    use crate::k8s::crd::SecretKeyRef;
    use crate::k8s::gateway::Gateway;
    use crate::k8s::render::{SecretValues, render};
    use crate::tunnel::VppAccess;
    use serde::Deserialize;
    use std::path::Path;

    const OTHER_PEER: &str = "TrMvSoP4jYQlY6RIzBgbssQqY3vxI2Pi+y71lOWWXX0=";

    fn spec(dir: &Path, port: u16) -> TunnelSpec {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(root.join("examples/k8s/tunnel.yaml")).expect("example");
        let first = serde_yaml::Deserializer::from_str(&text)
            .next()
            .expect("a document");
        let mut tunnel = WireGuardVppTunnel::deserialize(first).expect("example parses");
        tunnel.spec.memif_secret_ref = None;
        tunnel.spec.wireguard.listen_port = port;
        tunnel.spec.wireguard.peers[0].preshared_key_secret_ref = None;
        tunnel.spec.wireguard.peers[0].endpoint = Some("192.0.2.1:51820".into());
        let mut secrets = SecretValues::default();
        secrets.insert(
            SecretKeyRef {
                name: "home-key".into(),
                key: "privateKey".into(),
            },
            b"yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=".to_vec(),
        );
        let gateway = Gateway::load(&root.join("examples/k8s/gateways"), 4242).expect("gateway");
        let env = Env {
            memif_socket_dir: dir.to_path_buf(),
            ..Env::default()
        };
        render(&tunnel, 3, &secrets, Some(&gateway))
            .and_then(|r| r.to_spec(&env))
            .expect("valid")
    }

    fn free_udp_port() -> u16 {
        let socket = std::net::UdpSocket::bind("0.0.0.0:0").expect("bind");
        socket.local_addr().expect("addr").port()
    }

    async fn wait_for_phase(manager: &TunnelManager, phase: Phase) -> TunnelState {
        for _ in 0..100 {
            if let Some(state) = manager.state("home").await
                && state.phase == phase
            {
                return state;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "tunnel never reached {phase:?}: {:?}",
            manager.state("home").await
        );
    }

    #[tokio::test]
    async fn tunnel_runs_edits_peers_as_a_diff_and_stops() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut options = RunOptions::new(&dir.path().join("no-vpp.sock"));
        options.vpp = VppAccess::Off;
        options.uapi_dir = dir.path().join("uapi");
        // Short: a tunnel whose memif never connected observes the stop only when this wait ends.
        options.first_connect_timeout = Duration::from_secs(8);
        let manager = TunnelManager::new(options);
        let port = free_udp_port();
        let spec = spec(dir.path(), port);

        manager.start(spec.clone()).await.expect("starts");
        let state = wait_for_phase(&manager, Phase::WaitingForMemif).await;
        assert_eq!(state.listen_port, Some(port));
        assert!(state.vpp_configured);
        assert_eq!(state.peers.len(), 1);
        assert!(
            state
                .counters
                .iter()
                .any(|c| c.family == "l2_dropped" && c.label == Some(("reason", "runt")))
        );
        assert!(
            dir.path().join("home.sock").exists(),
            "the memif socket is served"
        );

        // Starting the same spec again (a controller restart in the same process) changes nothing.
        manager.start(spec.clone()).await.expect("idempotent");

        let mut wireguard = spec.wireguard.clone();
        let mut second = wireguard.peers[0].clone();
        second.public_key = crate::k8s::keys::Key::from_base64(OTHER_PEER.as_bytes()).expect("key");
        second.allowed_ips = vec!["fd00::/64".parse().expect("net")];
        second.endpoint = None;
        wireguard.peers.push(second);
        manager
            .reconfigure("home", wireguard)
            .await
            .expect("reconfigured");
        let peers: Vec<String> = manager
            .state("home")
            .await
            .expect("running")
            .peers
            .into_iter()
            .map(|p| p.public_key)
            .collect();
        assert_eq!(peers.len(), 2, "{peers:?}");
        assert!(peers.contains(&OTHER_PEER.to_string()));

        manager.stop("home").await.expect("stops");
        assert!(manager.state("home").await.is_none());
        manager.stop("home").await.expect("stopping again is fine");
    }

    #[test]
    fn conf_file_carries_every_field() {
        let dir = tempfile::tempdir().expect("tempdir");
        let conf = conf_file(&spec(dir.path(), 51820).wireguard);
        assert_eq!(conf.listen_port, Some(51820));
        assert!(conf.private_key.is_some());
        assert_eq!(conf.peers[0].persistent_keepalive, 25);
        assert_eq!(conf.peers[0].endpoint.as_deref(), Some("192.0.2.1:51820"));
        assert_eq!(conf.peers[0].allowed_ips.len(), 2);
    }
}
