//! The real [`TunnelRuntime`]: every tunnel a [`Tunnel`] in this process, as the CLI runs one.
//!
//! A tunnel's task can end without being asked to: set up fails, it stops on an error, its UAPI socket
//! is removed, or it panics. [`LocalTunnels::state`] is where that is noticed: it looks at the task's
//! end (once, without waiting) and from then on reports the tunnel [`Phase::Failed`] with the reason,
//! until the controller stops it. A panic is contained by tokio in the task; its message is kept for
//! the status, with anything shaped like a key cut out.
//!
//! The WireGuard configuration goes to the device as the one model it is rendered into
//! ([`WireGuardConfig`], the wg module's own), applied as a diff. A tunnel whose peers name their
//! endpoints by DNS has a task that resolves them again every [`TunnelSpec::reresolve_interval`]
//! (sooner while one does not resolve), and moves a peer only when its name's address changed
//! ([`WgDevice::reresolve`](crate::wg::WgDevice::reresolve)).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use futures::FutureExt;

use super::orphans::{self, Record};
use super::render::WireGuardConfig;
use super::status::scrub;
use super::tunnel_runtime::{
    CounterSample, PeerStats, Phase, RuntimeError, TunnelRuntime, TunnelSpec, TunnelState,
};
use crate::task::OwnedTask;
use crate::tunnel::packet_path::Link;
use crate::tunnel::{MemifDevice, RunOptions, Tunnel, TunnelError, TunnelStatus, VppAccess};
use crate::wg::conf_file::{Resolve, SystemResolver};

/// How long the readiness check waits for VPP's API socket to accept a connection.
const VPP_CHECK_TIMEOUT: Duration = Duration::from_secs(1);

/// How long a stop waits for the tunnel's UDP port to be free again.
const PORT_RELEASE_WAIT: Duration = Duration::from_secs(2);

/// The first retry of an endpoint name that did not resolve; doubled up to the tunnel's interval.
const UNRESOLVED_RETRY: Duration = Duration::from_secs(5);

/// The longest wait between retries of a name that does not resolve, with re-resolution off.
const UNRESOLVED_RETRY_MAX: Duration = Duration::from_secs(300);

/// Tunnels run in this process.
pub struct LocalTunnels {
    uapi_dir: PathBuf,
    vpp_api: bool,
    vpp_api_socket: Option<PathBuf>,
    memif_wait: Option<Duration>,
    resolver: Arc<dyn Resolve>,
    /// The memif socket directory whose orphans are swept at start (see [`super::orphans`]).
    memif_dir: Option<PathBuf>,
    running: Mutex<HashMap<String, Entry>>,
}

/// A tunnel as the runtime holds it.
enum Entry {
    /// Its task runs, or ended and has not been looked at yet.
    Live(Live),
    /// Its task ended without a stop (its end was observed, so the task's handle is spent): what is
    /// reported until the controller stops it, and its WireGuard device, closed then.
    Ended(TunnelState, Arc<MemifDevice>),
}

impl LocalTunnels {
    /// Tunnels whose UAPI sockets go to `uapi_dir` (`/var/run/wireguard` for `kubectl exec ... wg`);
    /// with `vpp_api: false` VPP is left alone (its side is configured elsewhere, as in tests).
    pub fn new(uapi_dir: impl Into<PathBuf>, vpp_api: bool) -> LocalTunnels {
        LocalTunnels {
            uapi_dir: uapi_dir.into(),
            vpp_api,
            vpp_api_socket: None,
            memif_wait: None,
            resolver: Arc::new(SystemResolver),
            memif_dir: None,
            running: Mutex::default(),
        }
    }

    /// Makes [`TunnelRuntime::sweep_orphans`] remove what tunnels of the memif socket directory
    /// `memif_dir` (`VPP_MEMIF_SOCKET_DIR`) that no longer exist left in VPP (reached at the socket
    /// of [`LocalTunnels::with_vpp_check`]).
    pub fn with_orphan_sweep(mut self, memif_dir: impl Into<PathBuf>) -> LocalTunnels {
        self.memif_dir = Some(memif_dir.into());
        self
    }

    /// Resolves endpoint names with `resolver` instead of the system's (tests).
    pub fn with_resolver(mut self, resolver: Arc<dyn Resolve>) -> LocalTunnels {
        self.resolver = resolver;
        self
    }

    /// How long a tunnel waits for VPP's first memif connection before it ends (undoing its VPP
    /// objects; the controller starts it again at its next retry). Default: [`RunOptions::new`]'s.
    /// A stop is observed only once the memif is up, so this also bounds how long such a stop takes.
    pub fn with_memif_wait(mut self, wait: Duration) -> LocalTunnels {
        self.memif_wait = Some(wait);
        self
    }

    /// Makes [`TunnelRuntime::check`] (readiness) connect to VPP's API socket at `path`, the
    /// `VPP_API_SOCKET_PATH` the tunnels use. Without it (or with `vpp_api: false`) there is nothing
    /// to check.
    pub fn with_vpp_check(mut self, path: impl Into<PathBuf>) -> LocalTunnels {
        self.vpp_api_socket = Some(path.into());
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.running.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// What a state report reads of tunnel `name`; notices (and records) a task that ended.
    fn look(&self, name: &str) -> Option<Look> {
        let mut running = self.lock();
        let entry = running.get_mut(name)?;
        if let Entry::Live(Live { tunnel, .. }) = entry
            && let Some(ended) = end_of(tunnel)
        {
            let device = Arc::clone(tunnel.device());
            tracing::warn!(
                tunnel = name,
                reason = ended.error.as_ref().map_or("", |e| e.reason),
                error = ended.error.as_ref().map_or("", |e| e.message.as_str()),
                "the tunnel's task ended without being stopped"
            );
            // Dropping the tunnel aborts what is left of it (its RX pump).
            *entry = Entry::Ended(ended, device);
        }
        Some(match entry {
            Entry::Ended(state, _) => Look::Ended(state.clone()),
            Entry::Live(live) => Look::Live(Parts {
                device: Arc::clone(live.tunnel.device()),
                link: Arc::clone(live.tunnel.link()),
                status: live.tunnel.status().borrow().clone(),
                memif_socket: live.tunnel.memif_socket().display().to_string(),
                wireguard: Arc::clone(&live.wireguard),
            }),
        })
    }
}

/// One look at a tunnel, taken out of the lock before awaiting.
enum Look {
    Live(Parts),
    Ended(TunnelState),
}

/// A tunnel whose task runs: the tunnel, the WireGuard configuration it was given last, and the task
/// that resolves its endpoint names again (aborted with it).
struct Live {
    tunnel: Tunnel,
    /// Held while the configuration is applied, so that a re-resolution never works on a stale one.
    wireguard: Arc<tokio::sync::Mutex<WireGuardConfig>>,
    reresolve: Option<OwnedTask<()>>,
}

/// What a state report of a live tunnel reads.
struct Parts {
    device: Arc<MemifDevice>,
    link: Arc<Link>,
    status: TunnelStatus,
    memif_socket: String,
    wireguard: Arc<tokio::sync::Mutex<WireGuardConfig>>,
}

/// Stops a tunnel's WireGuard device once the tunnel is gone, and waits (at most
/// [`PORT_RELEASE_WAIT`]) until its UDP port can be bound again: the device's socket closes a moment
/// after its stop returns, and a start of the same tunnel right after would find the port taken. A
/// state report that still holds the device just drops its share later.
async fn close(device: Arc<MemifDevice>) {
    let Ok(device) = Arc::try_unwrap(device) else {
        return;
    };
    let port = device.listen_port();
    device.stop().await;
    let deadline = tokio::time::Instant::now() + PORT_RELEASE_WAIT;
    // The device binds `[::]:port` (both families), or `0.0.0.0:port` without IPv6.
    let free = || {
        std::net::UdpSocket::bind((std::net::Ipv6Addr::UNSPECIFIED, port))
            .or_else(|_| std::net::UdpSocket::bind((std::net::Ipv4Addr::UNSPECIFIED, port)))
            .is_ok()
    };
    while port != 0 && !free() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The state of `tunnel` if its task has ended, looked at without waiting. The task's handle is spent
/// once this returns `Some`: the caller must not look again (it drops the tunnel).
fn end_of(tunnel: &mut Tunnel) -> Option<TunnelState> {
    let result = tunnel.finished().now_or_never()?;
    let error = ended_error(result);
    Some(TunnelState {
        phase: Phase::Failed,
        vpp_configured: false,
        sw_if_index: None,
        memif_socket: tunnel.memif_socket().display().to_string(),
        listen_port: None,
        error: Some(error),
        peers: Vec::new(),
        counters: counters(tunnel.link()),
    })
}

/// Why a tunnel's task ended, as the status says it.
fn ended_error(result: Result<(), TunnelError>) -> RuntimeError {
    match result {
        Ok(()) => RuntimeError {
            reason: "TaskEnded",
            message:
                "the tunnel stopped by itself without being asked to (its UAPI socket was removed?)"
                    .into(),
        },
        // `Tunnel` turns a task that did not return into this: it panicked (or the runtime shut down).
        Err(TunnelError::TaskFailed(why)) => RuntimeError {
            reason: if why.contains("panicked") {
                "TaskPanicked"
            } else {
                "TaskAborted"
            },
            message: format!("the tunnel's task failed: {}", scrub(&why)),
        },
        Err(error) => RuntimeError {
            reason: "TunnelFailed",
            message: error.to_string(),
        },
    }
}

impl TunnelRuntime for LocalTunnels {
    async fn start(&self, spec: TunnelSpec) -> Result<(), RuntimeError> {
        let name = spec.name().to_owned();
        let previous = {
            let mut running = self.lock();
            match running.get(&name) {
                Some(Entry::Live(_)) => None,
                _ => Some(running.remove(&name)),
            }
        };
        match previous {
            None => return self.reconfigure(&name, spec.wireguard).await,
            // What is left of an ended task goes first: its socket holds the port.
            Some(Some(Entry::Ended(_, device))) => close(device).await,
            Some(_) => {}
        }
        let mut options = RunOptions::new(&spec.config.vpp_api_socket);
        options.uapi_dir = self.uapi_dir.clone();
        // Bound before anything exists in VPP: a port in use fails here, with nothing to undo.
        options.listen_port = spec.wireguard.listen_port.unwrap_or(0);
        if let Some(wait) = self.memif_wait {
            options.first_connect_timeout = wait;
        }
        if !self.vpp_api {
            options.vpp = VppAccess::Off;
        } else if let Err(error) = Record::of(&spec.config).write() {
            // Without it, a deletion of this tunnel while no agent runs leaves its VPP objects.
            tracing::warn!(tunnel = %name, %error, "cannot write the tunnel's record next to its memif socket");
        }
        let memif_socket = spec.config.memif_socket.clone();
        let tunnel = match Tunnel::start(spec.config, options).await {
            Ok(tunnel) => tunnel,
            Err(error) => {
                Record::remove(&memif_socket);
                return Err(RuntimeError {
                    reason: "StartFailed",
                    message: error.to_string(),
                });
            }
        };
        let unresolved = match apply_wireguard(
            tunnel.device(),
            &name,
            &spec.wireguard,
            &*self.resolver,
        )
        .await
        {
            Ok(unresolved) => unresolved,
            Err(error) => {
                // Undo what the tunnel's task may have created already, and free the port.
                let device = Arc::clone(tunnel.device());
                if let Err(stop_error) = tunnel.stop().await {
                    tracing::debug!(tunnel = %name, error = %stop_error, "the tunnel that could not be configured stopped");
                }
                close(device).await;
                Record::remove(&memif_socket);
                return Err(error);
            }
        };
        let wireguard = Arc::new(tokio::sync::Mutex::new(spec.wireguard));
        let reresolve = (unresolved || !spec.reresolve_interval.is_zero()).then(|| {
            OwnedTask::spawn(
                "reresolve",
                reresolve(
                    Arc::downgrade(tunnel.device()),
                    Arc::clone(&wireguard),
                    Arc::clone(&self.resolver),
                    spec.reresolve_interval,
                    unresolved,
                ),
            )
        });
        let live = Live {
            tunnel,
            wireguard,
            reresolve,
        };
        self.lock().insert(name, Entry::Live(live));
        Ok(())
    }

    async fn reconfigure(
        &self,
        name: &str,
        wireguard: WireGuardConfig,
    ) -> Result<(), RuntimeError> {
        match self.look(name) {
            Some(Look::Live(parts)) => {
                let mut current = parts.wireguard.lock().await;
                apply_wireguard(&parts.device, name, &wireguard, &*self.resolver).await?;
                *current = wireguard;
                Ok(())
            }
            _ => Err(RuntimeError {
                reason: "NotRunning",
                message: format!("tunnel {name} does not run"),
            }),
        }
    }

    async fn stop(&self, name: &str) -> Result<(), RuntimeError> {
        let entry = self.lock().remove(name);
        match entry {
            None => Ok(()),
            Some(Entry::Ended(state, device)) => {
                close(device).await;
                // A task that ended undid its objects on the way out, unless it did not return.
                let undone = state
                    .error
                    .as_ref()
                    .is_none_or(|e| !matches!(e.reason, "TaskPanicked" | "TaskAborted"));
                if undone {
                    Record::remove(Path::new(&state.memif_socket));
                }
                Ok(())
            }
            Some(Entry::Live(Live {
                tunnel, reresolve, ..
            })) => {
                if let Some(task) = reresolve {
                    task.stop().await;
                }
                let device = Arc::clone(tunnel.device());
                let memif_socket = tunnel.memif_socket().to_path_buf();
                let stopped = tunnel.stop().await.map_err(|e| RuntimeError {
                    reason: "StopFailed",
                    message: e.to_string(),
                });
                close(device).await;
                Record::remove(&memif_socket);
                stopped
            }
        }
    }

    async fn state(&self, name: &str) -> Option<TunnelState> {
        let parts = match self.look(name)? {
            Look::Ended(state) => return Some(state),
            Look::Live(parts) => parts,
        };
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
            phase: parts.status.phase,
            vpp_configured: parts.status.memif_sw_if_index.is_some(),
            sw_if_index: parts.status.memif_sw_if_index,
            memif_socket: parts.memif_socket,
            listen_port: Some(parts.device.listen_port()),
            error: parts.status.error.as_ref().map(|message| RuntimeError {
                reason: "TunnelFailed",
                message: message.clone(),
            }),
            peers,
            counters: counters(&parts.link),
        })
    }

    async fn sweep_orphans(&self, live: Vec<String>) {
        let (Some(memif_dir), Some(api_socket)) = (&self.memif_dir, &self.vpp_api_socket) else {
            return;
        };
        if !self.vpp_api {
            return;
        }
        let live: std::collections::HashSet<String> = live.into_iter().collect();
        let report = orphans::sweep(api_socket, memif_dir, &live).await;
        if !report.orphans.is_empty() {
            tracing::info!(orphans = ?report.orphans, removed = report.removed, "removed what deleted tunnels left in VPP");
        }
    }

    async fn check(&self) -> Result<(), String> {
        let Some(path) = self.vpp_api_socket.as_ref().filter(|_| self.vpp_api) else {
            return Ok(());
        };
        let hint = "check that VPP runs (`socksvr { socket-name ... }`) and that the socket is \
                    writable for this process (vpp.apiSocketGroupId)";
        match tokio::time::timeout(VPP_CHECK_TIMEOUT, tokio::net::UnixStream::connect(path)).await {
            Ok(Ok(_connection)) => Ok(()),
            Ok(Err(error)) => Err(format!(
                "cannot connect to VPP's API socket {}: {error}; {hint}",
                path.display()
            )),
            Err(_) => Err(format!(
                "VPP's API socket {} did not accept a connection within {} s; {hint}",
                path.display(),
                VPP_CHECK_TIMEOUT.as_secs()
            )),
        }
    }
}

/// Applies the resource's WireGuard configuration as a diff (sessions of unchanged peers survive).
/// True when an endpoint did not resolve (it is tried again soon, see [`reresolve`]).
async fn apply_wireguard(
    device: &MemifDevice,
    name: &str,
    wireguard: &WireGuardConfig,
    resolver: &dyn Resolve,
) -> Result<bool, RuntimeError> {
    let report = device
        .apply_conf_with(wireguard, resolver)
        .await
        .map_err(|e| RuntimeError {
            reason: "WireGuardConfigRefused",
            message: format!("tunnel {name}: {e}"),
        })?;
    for (_, endpoint, error) in &report.unresolved {
        tracing::warn!(tunnel = name, %endpoint, %error, "peer endpoint does not resolve yet; trying again");
    }
    Ok(!report.unresolved.is_empty())
}

/// Resolves the tunnel's endpoint names again every `interval`, and after [`UNRESOLVED_RETRY`]
/// (doubling up to `interval`, or [`UNRESOLVED_RETRY_MAX`] when `interval` is zero) while one does
/// not resolve (`unresolved`: one did not at start). Ends when the device is gone, or, with a zero
/// `interval` (no re-resolution), once every name resolved.
async fn reresolve(
    device: Weak<MemifDevice>,
    wireguard: Arc<tokio::sync::Mutex<WireGuardConfig>>,
    resolver: Arc<dyn Resolve>,
    interval: Duration,
    unresolved: bool,
) {
    let retry_max = if interval.is_zero() {
        UNRESOLVED_RETRY_MAX
    } else {
        interval
    };
    let mut retry = UNRESOLVED_RETRY.min(retry_max);
    let mut wait = if unresolved { retry } else { interval };
    loop {
        tokio::time::sleep(wait).await;
        let config = wireguard.lock().await;
        let Some(device) = device.upgrade() else {
            return;
        };
        let report = device.reresolve(&config, &*resolver).await;
        drop(device);
        wait = match report {
            Ok(report) if report.unresolved.is_empty() => {
                if interval.is_zero() {
                    return;
                }
                retry = UNRESOLVED_RETRY.min(retry_max);
                interval
            }
            Ok(_) => {
                let now = retry;
                retry = (retry * 2).min(retry_max);
                now
            }
            Err(error) => {
                tracing::warn!(%error, "moving a peer to its endpoint's new address failed");
                interval
            }
        };
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
    use crate::wg::conf_file;

    const OTHER_PEER: &str = "TrMvSoP4jYQlY6RIzBgbssQqY3vxI2Pi+y71lOWWXX0=";

    fn spec(dir: &Path, port: u16) -> TunnelSpec {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(root.join("examples/k8s/tunnel.yaml")).expect("example");
        let documents: Vec<serde_json::Value> =
            serde_saphyr::from_multiple(&text).expect("example parses");
        let mut tunnel: WireGuardVppTunnel =
            serde_json::from_value(documents[0].clone()).expect("the example tunnel parses");
        tunnel.spec.memif_secret_ref = None;
        tunnel.spec.wireguard.listen_port = Some(port);
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

    /// A task that ends by itself (VPP never connects to the memif) is noticed at the next look: the
    /// tunnel is reported Failed with the tunnel's own error, until it is stopped; then it starts again.
    #[tokio::test]
    async fn a_task_that_ends_by_itself_is_reported_failed_until_stopped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let tunnels = LocalTunnels::new(dir.path().join("uapi"), false)
            .with_memif_wait(Duration::from_millis(300));
        let spec = spec(dir.path(), free_udp_port());
        tunnels.start(spec.clone()).await.expect("starts");
        let failed = wait_for_phase(&tunnels, Phase::Failed).await;
        let error = failed.error.expect("a reason");
        assert_eq!(error.reason, "TunnelFailed");
        assert!(
            error.message.contains("has not connected"),
            "{}",
            error.message
        );
        // Looked at again, it stays Failed (the task's end is kept, not looked for twice).
        let again = tunnels.state("home").await.expect("still reported");
        assert_eq!(again.phase, Phase::Failed);
        assert!(
            tunnels
                .reconfigure("home", spec.wireguard.clone())
                .await
                .is_err()
        );
        tunnels.stop("home").await.expect("clears the ended tunnel");
        assert!(tunnels.state("home").await.is_none());
        // Started again at once, on the same port, over what the ended task left.
        tunnels.start(spec).await.expect("starts again");
        wait_for_phase(&tunnels, Phase::WaitingForMemif).await;
        tunnels.stop("home").await.ok();
    }

    /// A resolver the test scripts: each name answers what the test last set, or fails.
    #[derive(Default)]
    struct ScriptedResolver(Mutex<HashMap<String, std::net::SocketAddr>>);

    impl ScriptedResolver {
        fn set(&self, host: &str, addr: &str) {
            let addr = addr.parse().expect("test address");
            self.0.lock().expect("lock").insert(host.into(), addr);
        }
    }

    impl Resolve for ScriptedResolver {
        fn resolve<'a>(&'a self, host: &'a str, _port: u16) -> conf_file::ResolveFuture<'a> {
            let answer = self.0.lock().expect("lock").get(host).copied();
            Box::pin(
                async move { answer.ok_or_else(|| format!("{host}: no such host (scripted)")) },
            )
        }
    }

    /// The peer's endpoint as the device reports it (what `wg show` and the UAPI dump read).
    async fn endpoint(tunnels: &LocalTunnels) -> Option<String> {
        let state = tunnels.state("home").await.expect("running");
        state.peers.first().and_then(|p| p.endpoint.clone())
    }

    async fn wait_for_endpoint(tunnels: &LocalTunnels, wanted: &str) {
        for _ in 0..400 {
            if endpoint(tunnels).await.as_deref() == Some(wanted) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "the endpoint never became {wanted}: {:?}",
            endpoint(tunnels).await
        );
    }

    /// Tunnels whose endpoint names go through a resolver the test scripts.
    fn resolving_tunnels(dir: &Path) -> (LocalTunnels, Arc<ScriptedResolver>) {
        let resolver = Arc::new(ScriptedResolver::default());
        let tunnels = LocalTunnels::new(dir.join("uapi"), false)
            .with_memif_wait(Duration::from_secs(30))
            .with_resolver(resolver.clone());
        (tunnels, resolver)
    }

    /// An endpoint given by name: a name that does not resolve at start does not fail the tunnel and
    /// is tried again until it resolves; a later change of its address reaches the device. The
    /// device keeps the endpoint of the name as long as it resolves the same.
    #[tokio::test]
    async fn endpoint_names_are_retried_and_followed_when_their_address_changes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (tunnels, resolver) = resolving_tunnels(dir.path());
        let mut spec = spec(dir.path(), free_udp_port());
        spec.wireguard.peers[0].endpoint = Some("peer.invalid:51820".into());
        spec.reresolve_interval = Duration::from_millis(200);

        tunnels
            .start(spec.clone())
            .await
            .expect("an unresolved name does not fail the start");
        wait_for_phase(&tunnels, Phase::WaitingForMemif).await;
        assert_eq!(endpoint(&tunnels).await, None);

        resolver.set("peer.invalid", "192.0.2.10:51820");
        wait_for_endpoint(&tunnels, "192.0.2.10:51820").await;
        resolver.set("peer.invalid", "192.0.2.11:51820");
        wait_for_endpoint(&tunnels, "192.0.2.11:51820").await;

        // A reconfigure with another name takes effect at once and is what is re-resolved from then.
        let mut wireguard = spec.wireguard.clone();
        wireguard.peers[0].endpoint = Some("other.invalid:4242".into());
        resolver.set("other.invalid", "[2001:db8::7]:4242");
        tunnels
            .reconfigure("home", wireguard)
            .await
            .expect("reconfigured");
        assert_eq!(
            endpoint(&tunnels).await.as_deref(),
            Some("[2001:db8::7]:4242")
        );
        resolver.set("other.invalid", "[2001:db8::8]:4242");
        wait_for_endpoint(&tunnels, "[2001:db8::8]:4242").await;
        tunnels.stop("home").await.ok();
    }

    /// With re-resolution off (`0s`), a name that does not resolve at start is still retried (from
    /// 5 s on) until it resolves.
    #[tokio::test]
    async fn an_unresolved_name_is_retried_even_without_re_resolution() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (tunnels, resolver) = resolving_tunnels(dir.path());
        let mut spec = spec(dir.path(), free_udp_port());
        spec.wireguard.peers[0].endpoint = Some("late.invalid:51820".into());
        spec.reresolve_interval = Duration::ZERO;
        tunnels.start(spec).await.expect("starts");
        resolver.set("late.invalid", "192.0.2.20:51820");
        wait_for_endpoint(&tunnels, "192.0.2.20:51820").await;
        tunnels.stop("home").await.ok();
    }

    /// A start whose WireGuard port is taken fails before anything is created, names the port, and
    /// leaves neither the memif socket nor a task behind.
    #[tokio::test]
    async fn a_start_on_a_taken_port_fails_and_leaves_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let tunnels = LocalTunnels::new(dir.path().join("uapi"), false);
        let blocker = std::net::UdpSocket::bind("[::]:0").expect("bind a blocker");
        let port = blocker.local_addr().expect("addr").port();
        let error = tunnels
            .start(spec(dir.path(), port))
            .await
            .expect_err("the port is taken");
        assert_eq!(error.reason, "StartFailed");
        assert!(
            error.message.contains(&port.to_string()),
            "{}",
            error.message
        );
        assert!(tunnels.state("home").await.is_none());
        assert!(!dir.path().join("home.sock").exists());
    }

    /// How a task's end reads in the status: a real panic's `JoinError`, as `Tunnel` passes it on.
    #[tokio::test]
    async fn a_panicked_task_reads_as_task_panicked_without_key_material() {
        let key = "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=";
        let join = tokio::spawn(async move {
            if !key.is_empty() {
                panic!("bad peer {key}");
            }
        })
        .await
        .expect_err("the task panics");
        let error = ended_error(Err(TunnelError::TaskFailed(join.to_string())));
        assert_eq!(error.reason, "TaskPanicked");
        assert!(
            error.message.contains("bad peer [redacted]"),
            "{}",
            error.message
        );
        assert!(!error.message.contains(key));
        assert_eq!(ended_error(Ok(())).reason, "TaskEnded");
    }

    /// Readiness' data-plane check connects to VPP's API socket.
    #[tokio::test]
    async fn the_vpp_check_connects_to_the_api_socket() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("api.sock");
        let tunnels = LocalTunnels::new(dir.path().join("uapi"), true).with_vpp_check(&path);
        let error = tunnels.check().await.expect_err("no socket yet");
        assert!(
            error.contains("cannot connect to VPP's API socket"),
            "{error}"
        );
        assert!(error.contains("api.sock"), "{error}");
        let _listener = tokio::net::UnixListener::bind(&path).expect("bind");
        tunnels.check().await.expect("the socket accepts");
        // Without the VPP API there is nothing to check.
        let off = LocalTunnels::new(dir.path().join("uapi"), false).with_vpp_check("/nonexistent");
        off.check().await.expect("nothing to check");
    }
}
