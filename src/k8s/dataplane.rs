//! The real [`TunnelRuntime`]: every tunnel a [`Tunnel`] in this process, as the CLI runs one.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};

use super::render::WireGuardConfig;
use super::runtime::{
    CounterSample, PeerStats, Phase, RuntimeError, TunnelRuntime, TunnelSpec, TunnelState,
};
use crate::tunnel::dataplane::Link;
use crate::tunnel::{self, MemifDevice, RunOptions, Tunnel, TunnelStatus, VppAccess};
use crate::wg::conf_file;

/// Tunnels run in this process.
pub struct LocalTunnels {
    uapi_dir: PathBuf,
    vpp_api: bool,
    running: Mutex<HashMap<String, Tunnel>>,
}

impl LocalTunnels {
    /// Tunnels whose UAPI sockets go to `uapi_dir` (`/var/run/wireguard` for `kubectl exec ... wg`);
    /// with `vpp_api: false` VPP is left alone (its side is configured elsewhere, as in tests).
    pub fn new(uapi_dir: impl Into<PathBuf>, vpp_api: bool) -> LocalTunnels {
        LocalTunnels {
            uapi_dir: uapi_dir.into(),
            vpp_api,
            running: Mutex::default(),
        }
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
    let own = link.counters();
    for (reason, counter) in [
        ("link_down", &own.tx_dropped),
        ("too_big", &own.tx_too_big),
        ("not_ip", &own.rx_not_ip),
    ] {
        out.push(sample(
            "dataplane_dropped",
            Some(("reason", reason)),
            counter.load(Ordering::Relaxed),
        ));
    }
    out
}
