//! The real [`TunnelRuntime`]: every tunnel a [`Tunnel`] in this process, as the CLI runs one.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use super::render::WireGuardConfig;
use super::tunnel_runtime::{
    CounterSample, PeerStats, Phase, RuntimeError, TunnelRuntime, TunnelSpec, TunnelState,
};
use crate::tunnel::packet_path::Link;
use crate::tunnel::{self, MemifDevice, RunOptions, Tunnel, TunnelStatus, VppAccess};
use crate::wg::conf_file;

/// Tunnels run in this process.
pub struct LocalTunnels {
    uapi_dir: PathBuf,
    vpp_api: bool,
    memif_wait: Option<Duration>,
    running: Mutex<HashMap<String, Tunnel>>,
}

impl LocalTunnels {
    /// Tunnels whose UAPI sockets go to `uapi_dir` (`/var/run/wireguard` for `kubectl exec ... wg`);
    /// with `vpp_api: false` VPP is left alone (its side is configured elsewhere, as in tests).
    pub fn new(uapi_dir: impl Into<PathBuf>, vpp_api: bool) -> LocalTunnels {
        LocalTunnels {
            uapi_dir: uapi_dir.into(),
            vpp_api,
            memif_wait: None,
            running: Mutex::default(),
        }
    }

    /// How long a tunnel waits for VPP's first memif connection before it ends (undoing its VPP
    /// objects; the controller starts it again at its next retry). Default: [`RunOptions::new`]'s.
    /// A stop is observed only once the memif is up, so this also bounds how long such a stop takes.
    pub fn with_memif_wait(mut self, wait: Duration) -> LocalTunnels {
        self.memif_wait = Some(wait);
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Tunnel>> {
        self.running.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn parts(&self, name: &str) -> Option<Parts> {
        self.lock().get(name).map(|t| Parts {
            device: Arc::clone(t.device()),
            link: Arc::clone(t.link()),
            status: t.status().borrow().clone(),
            memif_socket: t.memif_socket().display().to_string(),
        })
    }
}

/// What a state report reads, taken out of the lock before awaiting.
struct Parts {
    device: Arc<MemifDevice>,
    link: Arc<Link>,
    status: TunnelStatus,
    memif_socket: String,
}

impl TunnelRuntime for LocalTunnels {
    async fn start(&self, spec: TunnelSpec) -> Result<(), RuntimeError> {
        let name = spec.name().to_owned();
        if self.lock().contains_key(&name) {
            return self.reconfigure(&name, spec.wireguard).await;
        }
        let mut options = RunOptions::new(&spec.config.vpp_api_socket);
        options.uapi_dir = self.uapi_dir.clone();
        if let Some(wait) = self.memif_wait {
            options.first_connect_timeout = wait;
        }
        if !self.vpp_api {
            options.vpp = VppAccess::Off;
        }
        let tunnel = Tunnel::start(spec.config, options)
            .await
            .map_err(|e| RuntimeError {
                reason: "StartFailed",
                message: e.to_string(),
            })?;
        apply_wireguard(tunnel.device(), &name, &spec.wireguard).await?;
        self.lock().insert(name, tunnel);
        Ok(())
    }

    async fn reconfigure(
        &self,
        name: &str,
        wireguard: WireGuardConfig,
    ) -> Result<(), RuntimeError> {
        let parts = self.parts(name).ok_or_else(|| RuntimeError {
            reason: "NotRunning",
            message: format!("tunnel {name} does not run"),
        })?;
        apply_wireguard(&parts.device, name, &wireguard).await
    }

    async fn stop(&self, name: &str) -> Result<(), RuntimeError> {
        let Some(tunnel) = self.lock().remove(name) else {
            return Ok(());
        };
        tunnel.stop().await.map_err(|e| RuntimeError {
            reason: "StopFailed",
            message: e.to_string(),
        })
    }

    async fn state(&self, name: &str) -> Option<TunnelState> {
        let parts = self.parts(name)?;
        let peers = parts
            .device
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
        Some(TunnelState {
            phase: phase_of(&parts.status),
            vpp_configured: parts.status.memif_sw_if_index.is_some(),
            sw_if_index: parts.status.memif_sw_if_index,
            memif_socket: parts.memif_socket,
            listen_port: Some(parts.device.listen_port()),
            error: parts.status.error.clone(),
            peers,
            counters: counters(&parts.link),
        })
    }
}

/// Applies the resource's WireGuard configuration as a diff (sessions of unchanged peers survive).
async fn apply_wireguard(
    device: &MemifDevice,
    name: &str,
    wireguard: &WireGuardConfig,
) -> Result<(), RuntimeError> {
    let file =
        conf_file::parse(Path::new(name), &wireguard.to_wg_conf()).map_err(|e| RuntimeError {
            reason: "WireGuardConfigInvalid",
            message: e.to_string(),
        })?;
    let report = device.apply_conf(&file).await.map_err(|e| RuntimeError {
        reason: "WireGuardConfigRefused",
        message: e.to_string(),
    })?;
    for (_, endpoint, error) in report.unresolved {
        tracing::warn!(tunnel = name, %endpoint, %error, "peer endpoint does not resolve yet");
    }
    Ok(())
}

fn phase_of(status: &TunnelStatus) -> Phase {
    match status.phase {
        tunnel::Phase::Setup => Phase::Setup,
        tunnel::Phase::WaitingForMemif => Phase::WaitingForMemif,
        tunnel::Phase::Running => Phase::Running,
        tunnel::Phase::Reconnecting | tunnel::Phase::TearingDown => Phase::Reconnecting,
        tunnel::Phase::Stopped => Phase::Failed,
    }
}

/// The packet path's counters as metric samples: memif queues, the adapter's events and drops by
/// reason, and the link's own drops.
fn counters(link: &Link) -> Vec<CounterSample> {
    let sample = |family, label, value| CounterSample {
        family,
        label,
        value,
    };
    let mut out = Vec::new();
    if let Some(memif) = link.memif_counters() {
        for (direction, stats) in [("rx", memif.rx.snapshot()), ("tx", memif.tx.snapshot())] {
            let label = Some(("direction", direction));
            out.push(sample("memif_packets", label, stats.packets));
            out.push(sample("memif_bytes", label, stats.bytes));
            out.push(sample("memif_chained", label, stats.chained));
            out.push(sample("memif_ring_full", label, stats.ring_full));
            out.push(sample(
                "memif_bad_descriptors",
                label,
                stats.bad_descriptors,
            ));
        }
    }
    let l2 = link.adapter().counters();
    for (event, count) in l2.events() {
        out.push(sample("l2_events", Some(("event", event.name())), count));
    }
    for (reason, count) in l2.drops() {
        out.push(sample("l2_dropped", Some(("reason", reason.name())), count));
    }
    for (reason, count) in link.counters().drops() {
        out.push(sample("dataplane_dropped", Some(("reason", reason)), count));
    }
    out
}

#[cfg(test)]
mod tests {
    //! The real tunnel lifecycle with VPP left alone and no memif peer: the tunnel waits for VPP's
    //! memif while its WireGuard device (a real UDP socket) is configured and edited as a diff.
    use super::*;
    use crate::config::Env;
    use crate::k8s::WireGuardVppTunnel;
    use crate::k8s::crd::SecretKeyRef;
    use crate::k8s::gateway::Gateway;
    use crate::k8s::render::{SecretValues, render};
    use crate::wg::Key;
    use serde::Deserialize;

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

    async fn wait_for_phase(tunnels: &LocalTunnels, phase: Phase) -> TunnelState {
        for _ in 0..100 {
            if let Some(state) = tunnels.state("home").await
                && state.phase == phase
            {
                return state;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "tunnel never reached {phase:?}: {:?}",
            tunnels.state("home").await
        );
    }

    #[tokio::test]
    async fn tunnel_runs_edits_peers_as_a_diff_and_stops() {
        let dir = tempfile::tempdir().expect("tempdir");
        // Short: a tunnel whose memif never connected observes the stop only when this wait ends.
        let tunnels = LocalTunnels::new(dir.path().join("uapi"), false)
            .with_memif_wait(Duration::from_secs(8));
        let port = free_udp_port();
        let spec = spec(dir.path(), port);

        tunnels.start(spec.clone()).await.expect("starts");
        let state = wait_for_phase(&tunnels, Phase::WaitingForMemif).await;
        assert_eq!(state.listen_port, Some(port));
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

        let mut wireguard = spec.wireguard.clone();
        let mut second = wireguard.peers[0].clone();
        second.public_key = Key::from_base64(OTHER_PEER).expect("key");
        second.allowed_ips = vec!["fd00::/64".parse().expect("net")];
        second.endpoint = None;
        wireguard.peers.push(second);
        tunnels
            .reconfigure("home", wireguard)
            .await
            .expect("reconfigured");
        let peers: Vec<String> = tunnels
            .state("home")
            .await
            .expect("running")
            .peers
            .into_iter()
            .map(|p| p.public_key)
            .collect();
        assert_eq!(peers.len(), 2, "{peers:?}");
        assert!(peers.contains(&OTHER_PEER.to_string()));

        // The memif never connects, so the tunnel ends with that error when the stop is observed.
        let _ = tunnels.stop("home").await;
        assert!(tunnels.state("home").await.is_none());
        tunnels
            .stop("home")
            .await
            .expect("stopping a stopped tunnel is fine");
    }
}
