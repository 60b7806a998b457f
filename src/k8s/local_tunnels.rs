//! The real [`TunnelRuntime`]: every tunnel a [`Tunnel`] in this process, as the CLI runs one.
//!
//! A tunnel's task can end without being asked to: set up fails, it stops on an error, its UAPI socket
//! is removed, or it panics. [`LocalTunnels::state`] is where that is noticed: it looks at the task's
//! end (once, without waiting) and from then on reports the tunnel [`Phase::Failed`] with the reason,
//! until the controller stops it. A panic is contained by tokio in the task; its message is kept for
//! the status, with anything shaped like a key cut out.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::FutureExt;

use super::render::WireGuardConfig;
use super::status::scrub;
use super::tunnel_runtime::{
    CounterSample, PeerStats, Phase, RuntimeError, TunnelRuntime, TunnelSpec, TunnelState,
};
use crate::tunnel::packet_path::Link;
use crate::tunnel::{self, MemifDevice, RunOptions, Tunnel, TunnelError, TunnelStatus, VppAccess};
use crate::wg::conf_file;

/// How long the readiness check waits for VPP's API socket to accept a connection.
const VPP_CHECK_TIMEOUT: Duration = Duration::from_secs(1);

/// How long a stop waits for the tunnel's UDP port to be free again.
const PORT_RELEASE_WAIT: Duration = Duration::from_secs(2);

/// Tunnels run in this process.
pub struct LocalTunnels {
    uapi_dir: PathBuf,
    vpp_api: bool,
    vpp_api_socket: Option<PathBuf>,
    memif_wait: Option<Duration>,
    running: Mutex<HashMap<String, Entry>>,
}

/// A tunnel as the runtime holds it.
enum Entry {
    /// Its task runs, or ended and has not been looked at yet.
    Live(Tunnel),
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
        if let Entry::Live(tunnel) = entry
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
            Entry::Live(t) => Look::Live(Parts {
                device: Arc::clone(t.device()),
                link: Arc::clone(t.link()),
                status: t.status().borrow().clone(),
                memif_socket: t.memif_socket().display().to_string(),
            }),
        })
    }
}

/// One look at a tunnel, taken out of the lock before awaiting.
enum Look {
    Live(Parts),
    Ended(TunnelState),
}

/// What a state report of a live tunnel reads.
struct Parts {
    device: Arc<MemifDevice>,
    link: Arc<Link>,
    status: TunnelStatus,
    memif_socket: String,
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
        self.lock().insert(name, Entry::Live(tunnel));
        Ok(())
    }

    async fn reconfigure(
        &self,
        name: &str,
        wireguard: WireGuardConfig,
    ) -> Result<(), RuntimeError> {
        match self.look(name) {
            Some(Look::Live(parts)) => apply_wireguard(&parts.device, name, &wireguard).await,
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
            Some(Entry::Ended(_, device)) => {
                close(device).await;
                Ok(())
            }
            Some(Entry::Live(tunnel)) => {
                let device = Arc::clone(tunnel.device());
                let stopped = tunnel.stop().await.map_err(|e| RuntimeError {
                    reason: "StopFailed",
                    message: e.to_string(),
                });
                close(device).await;
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
            phase: phase_of(&parts.status),
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
