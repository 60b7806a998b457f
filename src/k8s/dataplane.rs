//! The real [`TunnelRuntime`]: every tunnel a [`Tunnel`] in this process, as the CLI runs one.
//!
//! `state` is synchronous, so each tunnel has a small task that refreshes a snapshot of its state
//! (phase, VPP objects, per-peer counters, packet-path counters) every [`REFRESH`] and on every phase
//! change.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use super::render::WireGuardConfig;
use super::runtime::{PeerStats, Phase, RuntimeError, TunnelRuntime, TunnelSpec, TunnelState};
use crate::tunnel::dataplane::Link;
use crate::tunnel::{self, RunOptions, Tunnel, TunnelStatus, VppAccess};
use crate::wg::conf_file;

/// How often a running tunnel's snapshot is refreshed.
pub const REFRESH: Duration = Duration::from_secs(2);

/// Tunnels run in this process.
pub struct LocalTunnels {
    uapi_dir: PathBuf,
    vpp_api: bool,
    running: Mutex<HashMap<String, Running>>,
}

struct Running {
    tunnel: Tunnel,
    snapshot: Arc<Mutex<TunnelState>>,
    refresher: tokio::task::JoinHandle<()>,
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

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Running>> {
        self.running.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn device_of(&self, name: &str) -> Option<Arc<tunnel::MemifDevice>> {
        self.lock().get(name).map(|r| Arc::clone(r.tunnel.device()))
    }
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
        let memif_socket = spec.config.memif_socket.display().to_string();
        let tunnel = Tunnel::start(spec.config, options)
            .await
            .map_err(|e| RuntimeError {
                reason: "StartFailed",
                message: e.to_string(),
            })?;
        apply_wireguard(tunnel.device(), &name, &spec.wireguard).await?;
        let snapshot = Arc::new(Mutex::new(initial_state(&tunnel)));
        let refresher = tokio::spawn(refresh(
            tunnel.status(),
            Arc::clone(tunnel.device()),
            Arc::clone(tunnel.link()),
            memif_socket,
            Arc::clone(&snapshot),
        ));
        self.lock().insert(
            name,
            Running {
                tunnel,
                snapshot,
                refresher,
            },
        );
        Ok(())
    }

    async fn reconfigure(
        &self,
        name: &str,
        wireguard: WireGuardConfig,
    ) -> Result<(), RuntimeError> {
        let device = self.device_of(name).ok_or_else(|| RuntimeError {
            reason: "NotRunning",
            message: format!("tunnel {name} does not run"),
        })?;
        apply_wireguard(&device, name, &wireguard).await
    }

    async fn stop(&self, name: &str) -> Result<(), RuntimeError> {
        let Some(running) = self.lock().remove(name) else {
            return Ok(());
        };
        running.refresher.abort();
        running.tunnel.stop().await.map_err(|e| RuntimeError {
            reason: "StopFailed",
            message: e.to_string(),
        })
    }

    fn state(&self, name: &str) -> Option<TunnelState> {
        let running = self.lock();
        let snapshot = running
            .get(name)?
            .snapshot
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        Some(snapshot.clone())
    }
}

/// Applies the resource's WireGuard configuration as a diff (sessions of unchanged peers survive).
async fn apply_wireguard(
    device: &tunnel::MemifDevice,
    name: &str,
    wireguard: &WireGuardConfig,
) -> Result<(), RuntimeError> {
    let origin = Path::new(name);
    let file = conf_file::parse(origin, &wireguard.to_wg_conf()).map_err(|e| RuntimeError {
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

fn initial_state(tunnel: &Tunnel) -> TunnelState {
    let status = tunnel.status().borrow().clone();
    TunnelState {
        phase: Phase::Setup,
        vpp_configured: false,
        sw_if_index: None,
        memif_socket: String::new(),
        listen_port: Some(status.listen_port),
        error: None,
        peers: Vec::new(),
        counters: BTreeMap::new(),
    }
}

async fn refresh(
    mut status: tokio::sync::watch::Receiver<TunnelStatus>,
    device: Arc<tunnel::MemifDevice>,
    link: Arc<Link>,
    memif_socket: String,
    snapshot: Arc<Mutex<TunnelState>>,
) {
    loop {
        let current = status.borrow_and_update().clone();
        let peers = device
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
        let state = TunnelState {
            phase: phase_of(&current),
            vpp_configured: current.memif_sw_if_index.is_some(),
            sw_if_index: current.memif_sw_if_index,
            memif_socket: memif_socket.clone(),
            listen_port: Some(device.listen_port()),
            error: current.error.clone(),
            peers,
            counters: link.counter_map(),
        };
        *snapshot.lock().unwrap_or_else(PoisonError::into_inner) = state;
        if current.phase == tunnel::Phase::Stopped {
            return;
        }
        let _ = tokio::time::timeout(REFRESH, status.changed()).await;
    }
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
