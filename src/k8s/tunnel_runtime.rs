//! The seam between the controller and the data plane: [`TunnelRuntime`] starts, reconfigures and stops
//! tunnels from a [`TunnelSpec`] (the config module's [`TunnelConfig`], the same model the CLI loads from
//! files, plus the WireGuard configuration) and reports their state and counters. The tunnel module
//! provides the real implementation; the controller knows nothing of VPP, memif or WireGuard beyond this
//! trait.

use std::future::Future;
use std::time::SystemTime;

use super::render::WireGuardConfig;
use crate::config::TunnelConfig;

/// Everything the runtime needs to run one tunnel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelSpec {
    /// The validated tunnel configuration, as the CLI loads it from `if`/`gw` files.
    pub config: TunnelConfig,
    /// The WireGuard interface and peers, as `wg setconf` would set them.
    pub wireguard: WireGuardConfig,
    /// How often DNS names among the peers' endpoints are resolved again; zero is never.
    pub reresolve_interval: std::time::Duration,
}

impl TunnelSpec {
    /// The interface name.
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// True when going from `self` to `new` needs a restart (other VPP objects, or another
    /// re-resolution interval, which is rare); otherwise only the WireGuard side changed and can be
    /// applied as a diff that keeps the sessions of unchanged peers.
    pub fn needs_restart(&self, new: &TunnelSpec) -> bool {
        self.config != new.config || self.reresolve_interval != new.reresolve_interval
    }
}

/// Where a tunnel is in its life: the tunnel's own phase, as `tunnel::Tunnel` publishes it, with
/// [`Phase::Failed`] also for a task that ended or panicked.
pub use crate::tunnel::Phase;

/// What the runtime reports about one tunnel.
#[derive(Debug, Clone, PartialEq)]
pub struct TunnelState {
    /// The phase.
    pub phase: Phase,
    /// All VPP objects of the tunnel exist.
    pub vpp_configured: bool,
    /// VPP's index of the memif interface.
    pub sw_if_index: Option<u32>,
    /// The memif control socket path.
    pub memif_socket: String,
    /// The UDP port bound.
    pub listen_port: Option<u16>,
    /// Why the tunnel is [`Phase::Failed`]: a bounded reason (`TunnelFailed`, `TaskEnded`,
    /// `TaskPanicked`) and a message for people saying what failed and what to check. Never key material.
    pub error: Option<RuntimeError>,
    /// Per-peer counters, in any order.
    pub peers: Vec<PeerStats>,
    /// Data-plane counters (memif, ARP/NDP), exported as metrics.
    pub counters: Vec<CounterSample>,
}

/// One data-plane counter, exported as `wireguard_vpp_<family>_total{interface, <label>}`. Every name
/// is static, so the set of metrics and labels stays bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CounterSample {
    /// The metric family, e.g. `l2_dropped`.
    pub family: &'static str,
    /// One label, e.g. `("reason", "runt_frame")`.
    pub label: Option<(&'static str, &'static str)>,
    /// The count.
    pub value: u64,
}

/// One peer's counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerStats {
    /// The peer's public key (base64).
    pub public_key: String,
    /// The current endpoint.
    pub endpoint: Option<String>,
    /// The latest completed handshake.
    pub last_handshake: Option<SystemTime>,
    /// Bytes received from the peer.
    pub rx_bytes: u64,
    /// Bytes sent to the peer.
    pub tx_bytes: u64,
}

/// An error of the runtime, with a message a person can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct RuntimeError {
    /// A short, bounded reason (`VppUnreachable`, `PortInUse`, ...), used in conditions and metrics.
    pub reason: &'static str,
    /// What failed and what to check.
    pub message: String,
}

/// Runs tunnels. One implementation serves the whole controller; tunnels are named by
/// [`TunnelSpec::name`], which the controller keeps unique on the node.
///
/// Every call must be idempotent: the controller may call `start` for a tunnel the runtime already runs
/// (after a controller restart), and `stop` for one it does not. `start` must sweep stale VPP objects of
/// the same name and uid before creating new ones, so a restart never leaves two of anything.
pub trait TunnelRuntime: Send + Sync + 'static {
    /// Starts the tunnel in its own task and returns once that task is running (set up continues in
    /// the background; [`TunnelRuntime::state`] reports progress).
    fn start(&self, tunnel: TunnelSpec) -> impl Future<Output = Result<(), RuntimeError>> + Send;

    /// Applies a new WireGuard configuration to a running tunnel as a diff, like `wg syncconf`:
    /// unchanged peers keep their sessions, and the socket is rebound only if the port changed.
    fn reconfigure(
        &self,
        name: &str,
        wireguard: WireGuardConfig,
    ) -> impl Future<Output = Result<(), RuntimeError>> + Send;

    /// Stops the tunnel and undoes its VPP objects. Succeeds when no such tunnel runs.
    fn stop(&self, name: &str) -> impl Future<Output = Result<(), RuntimeError>> + Send;

    /// The tunnel's current state, or `None` when it does not run. A tunnel whose task ended without a
    /// [`TunnelRuntime::stop`] is reported [`Phase::Failed`] until it is stopped.
    fn state(&self, name: &str) -> impl Future<Output = Option<TunnelState>> + Send;

    /// Removes what tunnels that no longer exist left in the data plane (deleted while no agent ran),
    /// given the interface names of every tunnel of this node. Called once at start, before any
    /// tunnel starts; best effort. The default has nothing to remove.
    fn sweep_orphans(&self, live: Vec<String>) -> impl Future<Output = ()> + Send {
        let _ = live;
        async {}
    }

    /// Whether the data plane can run tunnels now, for readiness: `Err` says what is missing (VPP's API
    /// socket does not accept connections, say). Quick and side-effect free; the default has nothing
    /// to check.
    fn check(&self) -> impl Future<Output = Result<(), String>> + Send {
        async { Ok(()) }
    }
}
