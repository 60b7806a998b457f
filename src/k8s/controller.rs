//! The in-pod controller: one per node, running the tunnels whose `spec.nodeName` is its node.
//!
//! Each reconcile goes through a finalizer (so deleting a resource stops its tunnel and undoes its VPP
//! objects before the resource goes), then [`Context::apply`]: read the keys (generating a missing private
//! key into its Secret), allocate a uid when the spec has none, render, check for conflicts with the older
//! tunnels of the node, then start, reconfigure (WireGuard-only changes, keeping sessions) or restart the
//! tunnel through the [`TunnelRuntime`], and write the status by server-side apply when it changed (it
//! holds no counters, see [`super::status`]: a tunnel whose state stands still costs no request).
//!
//! What triggers a reconcile: a change of the tunnel's spec, deletion or finalizers (not of its status:
//! our own status writes would trigger themselves), a change of a Secret it names (Secrets are read
//! from a reflector, [`SecretStore::changes`]), and a periodic look at each tunnel
//! ([`ControllerTuning::recheck`]) for the runtime's state. A reconcile that fails is retried after an
//! exponential backoff of its own ([`ControllerTuning::restart_backoff`] doubling up to
//! [`ControllerTuning::restart_backoff_max`], from the start again after a success).
//!
//! Supervision: a tunnel whose task ends without being stopped (it failed, ended by itself or panicked;
//! the runtime reports it [`Phase::Failed`]) is marked so in its status, cleared, and started again after
//! an exponential backoff ([`ControllerTuning::restart_backoff`] doubling up to
//! [`ControllerTuning::restart_backoff_max`], back to the start once it has run for
//! [`BACKOFF_RESET_AFTER`]). A reconcile that panics is caught: its tunnel's status says so, it is
//! retried with the same backoff, and every other tunnel is served as before.
//!
//! The watch is built from kube's parts rather than `Controller::new`, so that its progress can be seen
//! ([`super::health`]): `/healthz` fails when it delivered nothing for [`ControllerTuning::watch_stall`],
//! or when a dead tunnel task is not restarted in time; `/readyz` fails while VPP's API socket is
//! unreachable or a tunnel of the node is neither Running nor, after [`ControllerTuning::startup_grace`],
//! reported in its status.
//!
//! When the shutdown future completes (SIGTERM), the controller finishes the reconciles in flight, then
//! stops every tunnel it runs, undoing its VPP objects as the daemon does on SIGTERM, before [`run`]
//! returns; the next controller starts them again.

use std::any::Any;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use futures::{FutureExt, StreamExt, TryFutureExt};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::{
    Action, Config as ApplierConfig, ReconcileRequest, applier, trigger_self,
};
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::utils::CancelableJoinHandle;
use kube::runtime::{PredicateConfig, WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use tracing::{Instrument, debug, error, info, info_span, warn};

use super::conflict::{Claim, allocate_port, allocate_uid, find_conflict};
use super::crd::{
    DEFAULT_LISTEN_PORT, MAX_UID, SecretKeyRef, WireGuardVppTunnel, WireGuardVppTunnelStatus,
};
use super::gateway::Gateway;
use super::health::{
    Report, TunnelReadiness, WatchProgress, restart_delay, tunnel_readiness, watch_with_relists,
};
use super::metrics::{Endpoints, Metrics, PeerLabels, ServerLimits, TunnelMetrics};
use super::render::{RenderError, SecretValues, interface_name, render, response_ranges};
use super::secrets::{KubeSecrets, SecretError, SecretStore};
use super::status::{self, Observation, scrub, to_time};
use super::tunnel_runtime::{Phase, RuntimeError, TunnelRuntime, TunnelSpec, TunnelState};
use crate::config::Env;
use crate::wg::Key;

/// The finalizer that keeps a resource until its tunnel is stopped.
pub const FINALIZER: &str = "wgvpp.io/tunnel-cleanup";

/// The field manager of status writes.
pub const FIELD_MANAGER: &str = "wireguard-vpp-controller";

/// How often a running tunnel is looked at again by default ([`ControllerTuning::recheck`]): its
/// runtime state, the age of its handshakes, a dead task. Its status is written only when it changed.
pub const STATUS_INTERVAL: Duration = Duration::from_secs(10);

/// How soon a tunnel that cannot run (invalid config, conflict) is looked at again.
const RETRY_INTERVAL: Duration = Duration::from_secs(30);

/// A tunnel that has been Running this long starts its restart backoff from the beginning again.
pub const BACKOFF_RESET_AFTER: Duration = Duration::from_secs(600);

/// Timings and limits of a controller run. [`ControllerTuning::default`] holds the documented defaults;
/// the command line sets the first two.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControllerTuning {
    /// Readiness: for this long after the controller first saw a tunnel, the tunnel holds readiness back
    /// until it is Running; after it, a tunnel whose status reports why it is not Running no longer
    /// does. Default 60 s.
    pub startup_grace: Duration,
    /// Liveness: `/healthz` fails when the watch of this node's tunnels delivered no event and no
    /// successful list for this long (`None`: never). A quiet watch is replaced by a new list after a
    /// third of it, so a healthy one always shows progress in time. Default 600 s.
    pub watch_stall: Option<Duration>,
    /// The first restart delay of a tunnel whose task died, doubled for each further death; also the
    /// first retry delay of a tunnel whose reconcile failed, doubled for each further failure in a
    /// row. Default 1 s.
    pub restart_backoff: Duration,
    /// The longest restart or retry delay. Default 300 s.
    pub restart_backoff_max: Duration,
    /// How often a running tunnel is looked at again. Default [`STATUS_INTERVAL`].
    pub recheck: Duration,
    /// Liveness: `/healthz` fails when a dead tunnel task has not been taken down for its restart, or
    /// its restart is late, by this much. The controller looks at each running tunnel every
    /// [`ControllerTuning::recheck`], so this only happens when it is stuck. Default 30 s.
    pub restart_overdue: Duration,
    /// The bounds of the metrics and probe server.
    pub http: ServerLimits,
}

impl Default for ControllerTuning {
    fn default() -> ControllerTuning {
        ControllerTuning {
            startup_grace: Duration::from_secs(60),
            watch_stall: Some(Duration::from_secs(600)),
            restart_backoff: Duration::from_secs(1),
            restart_backoff_max: Duration::from_secs(300),
            recheck: STATUS_INTERVAL,
            restart_overdue: Duration::from_secs(30),
            http: ServerLimits::default(),
        }
    }
}

impl ControllerTuning {
    /// After how long a quiet watch is replaced by a new list.
    fn relist_after(&self) -> Duration {
        let stall = self.watch_stall.unwrap_or(Duration::from_secs(600));
        (stall / 3).max(Duration::from_millis(100))
    }

    fn restart_delay(&self, failures: u32) -> Duration {
        restart_delay(failures, self.restart_backoff, self.restart_backoff_max)
    }
}

/// How the controller is run.
#[derive(Debug, Clone)]
pub struct ControllerOptions {
    /// This node's name (from the downward API); only tunnels with this `spec.nodeName` are run.
    pub node_name: String,
    /// Watch only this namespace; all namespaces when `None`.
    pub namespace: Option<String>,
    /// The directory of gateway files, `<bridgeID>.json` (a ConfigMap in the chart).
    pub gateway_dir: PathBuf,
    /// The original's environment (`VPP_MEMIF_SOCKET_DIR`, `VPP_API_SOCKET_PATH`, ...), which tunnels
    /// use as the CLI does.
    pub env: Env,
    /// Where to serve `/metrics`, `/healthz` and `/readyz`; not served when `None`.
    pub metrics_addr: Option<SocketAddr>,
}

/// Errors of a reconcile.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The Kubernetes API refused or failed a request.
    #[error("{action}: {source}")]
    Kube {
        /// What was being done, e.g. "writing the status of dn42/home".
        action: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// A Secret could not be read or written.
    #[error(transparent)]
    Secret(#[from] SecretError),
    /// The finalizer helper failed.
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    /// The resource has no namespace (the CRD is namespaced, so this is a bug of the caller).
    #[error("the resource {0} has no namespace")]
    NoNamespace(String),
    /// Serving metrics failed to start.
    #[error("metrics address {addr}: {source}")]
    Metrics {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// No in-cluster or kubeconfig credentials.
    #[error("no Kubernetes client configuration: {0}")]
    Client(#[source] kube::Error),
    /// The reconcile panicked (a bug); it was caught, and the tunnel is retried with backoff.
    #[error("the reconcile of {tunnel} panicked: {message}")]
    Panicked {
        /// `namespace/name`.
        tunnel: String,
        /// The panic's message, with anything shaped like a key cut out.
        message: String,
    },
}

impl Error {
    /// A short, bounded name for metric labels.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Kube { .. } => "kube",
            Error::Secret(_) => "secret",
            Error::Finalizer(inner) => match inner.as_ref() {
                kube::runtime::finalizer::Error::ApplyFailed(e)
                | kube::runtime::finalizer::Error::CleanupFailed(e) => e.kind(),
                _ => "finalizer",
            },
            Error::NoNamespace(_) => "no_namespace",
            Error::Metrics { .. } => "metrics",
            Error::Client(_) => "client",
            Error::Panicked { .. } => "panicked",
        }
    }
}

/// What the controller remembers of one tunnel between reconciles.
#[derive(Default)]
struct TunnelRecord {
    /// The configuration the runtime runs, if it runs.
    running: Option<TunnelSpec>,
    /// The interface name, for metrics (also of a tunnel that does not run).
    interface: Option<String>,
    /// The status last written.
    written: Option<WireGuardVppTunnelStatus>,
    /// Metric labels (allowed IPs, friendly name) by peer public key.
    peer_labels: BTreeMap<String, PeerLabels>,
    /// Deaths of its task since it last ran for [`BACKOFF_RESET_AFTER`].
    failures: u32,
    /// Deaths of its task in all, for metrics.
    restarts: u64,
    /// Not started again before this, after its task died.
    restart_at: Option<Instant>,
    /// Why its task died last, as the status says it until it is started again.
    last_failure: Option<RuntimeError>,
    /// Since when the runtime reports it Running.
    running_since: Option<Instant>,
    /// INVARIANT: `Some` only while `running` is: since when the runtime reports the task dead (and
    /// why), until the controller takes it down.
    dead_since: Option<(Instant, &'static str)>,
    /// Failed (or panicked) reconciles in a row, for the retry backoff.
    reconcile_failures: u32,
    /// The runtime's phase of it that the last reconcile saw.
    seen_phase: Option<Phase>,
}

/// Everything a reconcile needs.
pub struct Context<R, S> {
    client: Client,
    runtime: R,
    secrets: S,
    options: ControllerOptions,
    recorder: Recorder,
    store: Store<WireGuardVppTunnel>,
    /// Tunnels by `namespace/name`.
    tunnels: Mutex<HashMap<String, TunnelRecord>>,
    /// uids allocated by this process, by `namespace/name`, kept until the tunnel is deleted: the
    /// store may not show a freshly written status yet, and a uid must never be handed out twice.
    allocated: Mutex<HashMap<String, u32>>,
    /// Listen ports allocated by this process, by `namespace/name`, kept as `allocated` is. Lock
    /// `allocated` first when both are needed.
    allocated_ports: Mutex<HashMap<String, u16>>,
    /// When this process first saw each tunnel, by `namespace/name` (readiness' startup grace).
    first_seen: Mutex<HashMap<String, Instant>>,
    metrics: Metrics,
    tuning: ControllerTuning,
    progress: Arc<WatchProgress>,
}

fn key_of(tunnel: &WireGuardVppTunnel) -> String {
    format!(
        "{}/{}",
        tunnel.namespace().unwrap_or_default(),
        tunnel.name_any()
    )
}

impl<R: TunnelRuntime, S: SecretStore> Context<R, S> {
    fn lock_tunnels(&self) -> std::sync::MutexGuard<'_, HashMap<String, TunnelRecord>> {
        self.tunnels
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The claims of every live tunnel of this node, with the uids known so far.
    fn claims(&self, allocated: &HashMap<String, u32>, ports: &HashMap<String, u16>) -> Vec<Claim> {
        self.store
            .state()
            .iter()
            .filter(|t| {
                t.spec.node_name == self.options.node_name
                    && t.metadata.deletion_timestamp.is_none()
            })
            .map(|t| {
                let key = key_of(t);
                Claim {
                    uid: t
                        .spec
                        .uid
                        .or_else(|| t.status.as_ref().and_then(|s| s.uid))
                        .or_else(|| allocated.get(&key).copied()),
                    tunnel: key,
                    created: t
                        .metadata
                        .creation_timestamp
                        .as_ref()
                        .map(|c| c.0.to_string())
                        .unwrap_or_default(),
                    interface: interface_name(t).unwrap_or_else(|_| t.name_any()),
                    listen_port: t
                        .spec
                        .wireguard
                        .listen_port
                        .or_else(|| t.status.as_ref().and_then(|s| s.listen_port))
                        .or_else(|| ports.get(&key_of(t)).copied()),
                    bridge_id: t.spec.bridge_id,
                    respond: response_ranges(t).unwrap_or_default(),
                }
            })
            .collect()
    }

    /// The uid of `tunnel`: the spec's, the status's, or a newly allocated one.
    fn uid_for(&self, tunnel: &WireGuardVppTunnel, max: u32) -> Option<u32> {
        if let Some(uid) = tunnel
            .spec
            .uid
            .or_else(|| tunnel.status.as_ref().and_then(|s| s.uid))
        {
            return Some(uid);
        }
        let key = key_of(tunnel);
        let mut allocated = self
            .allocated
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(uid) = allocated.get(&key) {
            return Some(*uid);
        }
        let ports = self
            .allocated_ports
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let claims: Vec<Claim> = self
            .claims(&allocated, &ports)
            .into_iter()
            .filter(|c| c.tunnel != key)
            .collect();
        let uid = allocate_uid(&claims, max)?;
        allocated.insert(key, uid);
        Some(uid)
    }

    /// The listen port of `tunnel`: the spec's, the status's, or a newly allocated one (the lowest
    /// free from [`DEFAULT_LISTEN_PORT`] up), so that tunnels without a port do not conflict.
    fn port_for(&self, tunnel: &WireGuardVppTunnel) -> Option<u16> {
        if let Some(port) = tunnel
            .spec
            .wireguard
            .listen_port
            .or_else(|| tunnel.status.as_ref().and_then(|s| s.listen_port))
        {
            return Some(port);
        }
        let key = key_of(tunnel);
        let allocated = self
            .allocated
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut ports = self
            .allocated_ports
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(port) = ports.get(&key) {
            return Some(*port);
        }
        let claims: Vec<Claim> = self
            .claims(&allocated, &ports)
            .into_iter()
            .filter(|c| c.tunnel != key)
            .collect();
        let port = allocate_port(&claims, DEFAULT_LISTEN_PORT)?;
        ports.insert(key, port);
        Some(port)
    }

    /// Reads every Secret value the tunnel refers to; generates the private key when it is missing.
    async fn secret_values(
        &self,
        tunnel: &WireGuardVppTunnel,
        namespace: &str,
    ) -> Result<SecretValues, Error> {
        let spec = &tunnel.spec;
        let references = secret_references(tunnel);
        let mut by_secret: BTreeMap<String, Option<super::secrets::SecretData>> = BTreeMap::new();
        for reference in &references {
            if !by_secret.contains_key(&reference.name) {
                let data = self.secrets.get(namespace, &reference.name).await?;
                by_secret.insert(reference.name.clone(), data);
            }
        }
        let mut values = SecretValues::default();
        for reference in &references {
            if let Some(bytes) = by_secret
                .get(&reference.name)
                .and_then(|d| d.as_ref())
                .and_then(|d| d.get(&reference.key))
            {
                values.insert(reference.clone(), bytes.clone());
            }
        }
        let private = &spec.wireguard.private_key_secret_ref;
        if values.get(private).is_none() {
            let key = Key::generate_private().to_base64();
            let owner = tunnel
                .controller_owner_ref(&())
                .ok_or_else(|| Error::NoNamespace(key_of(tunnel)))?;
            self.secrets
                .store_generated(
                    namespace,
                    &private.name,
                    &private.key,
                    key.as_bytes(),
                    owner,
                )
                .await?;
            info!(secret = %private.name, "generated a private key into its Secret");
            values.insert(private.clone(), key.into_bytes());
        }
        Ok(values)
    }

    /// Notes that this process has seen the tunnel `key` (the start of its readiness grace).
    fn mark_seen(&self, key: &str, now: Instant) {
        self.first_seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key.to_string())
            .or_insert(now);
    }

    /// Brings the tunnel to its spec and writes its status.
    async fn apply(&self, tunnel: Arc<WireGuardVppTunnel>) -> Result<Action, Error> {
        if tunnel.spec.node_name != self.options.node_name {
            return Ok(Action::await_change());
        }
        let key = key_of(&tunnel);
        let namespace = tunnel
            .namespace()
            .ok_or_else(|| Error::NoNamespace(key.clone()))?;
        self.mark_seen(&key, Instant::now());
        let mut observed = Observation {
            generation: tunnel.metadata.generation,
            config_error: None,
            conflict: None,
            runtime_error: None,
            state: None,
            uid: None,
            public_key: None,
            memif_socket: None,
            listen_port: tunnel.spec.wireguard.listen_port,
        };
        let rendered = self.render(&tunnel, &namespace, &mut observed).await?;
        if let Some(rendered) = &rendered {
            let claims = {
                let allocated = self.allocated.lock().unwrap_or_else(|p| p.into_inner());
                let ports = self
                    .allocated_ports
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                self.claims(&allocated, &ports)
            };
            observed.conflict = claims
                .iter()
                .find(|c| c.tunnel == key)
                .and_then(|me| find_conflict(me, &claims));
            observed.memif_socket = Some(rendered.config.memif_socket.display().to_string());
        }
        let (previous_running, restart_at, last_failure) = {
            let mut tunnels = self.lock_tunnels();
            let record = tunnels.entry(key.clone()).or_default();
            record.interface = rendered
                .as_ref()
                .or(record.running.as_ref())
                .map(|r| r.name().to_string())
                .or_else(|| interface_name(&tunnel).ok());
            (
                record.running.clone(),
                record.restart_at,
                record.last_failure.clone(),
            )
        };
        // A spec (or Secret, or gateway file) that stops rendering does not take a running tunnel
        // down: it keeps its last valid configuration, and the status says so. A conflict does stop it.
        let runnable = match (&rendered, &mut observed.config_error) {
            (None, Some((_, message))) if previous_running.is_some() => {
                message.push_str(" (the tunnel keeps running its last valid configuration)");
                previous_running.clone()
            }
            _ => rendered.filter(|_| observed.conflict.is_none()),
        };
        let now = Instant::now();
        let starting = previous_running.is_none() && runnable.is_some();
        // A tunnel whose task died waits out its restart delay; meanwhile its status keeps saying why.
        if starting && let Some(at) = restart_at.filter(|at| *at > now) {
            observed.runtime_error = last_failure;
            self.write_status(&tunnel, &namespace, &observed).await?;
            return Ok(Action::requeue(at - now));
        }
        if starting || runnable.is_none() {
            // Started again now, or nothing to start: the restart schedule is done with.
            if let Some(record) = self.lock_tunnels().get_mut(&key) {
                record.restart_at = None;
                record.last_failure = None;
            }
        }
        let outcome = self
            .converge(previous_running.as_ref(), runnable.as_ref())
            .await;
        let running_now = match outcome {
            Ok(running) => running,
            Err((running, error)) => {
                observed.runtime_error = Some(error);
                running
            }
        };
        if let Some(running) = &running_now {
            observed.state = self.runtime.state(running.name()).await;
        }
        // A tunnel whose task ended without being stopped (failed, ended by itself, panicked) is cleared
        // and started again after its backoff; meanwhile its status carries why.
        let died = observed
            .state
            .as_ref()
            .filter(|s| s.phase == Phase::Failed)
            .map(|s| {
                let mut error = s.error.clone().unwrap_or_else(|| RuntimeError {
                    reason: "TunnelFailed",
                    message: "the tunnel's task ended".into(),
                });
                // A panic's text is not ours: whatever looks like a key is cut out.
                if error.reason == "TaskPanicked" {
                    error.message = scrub(&error.message);
                }
                error
            });
        let mut restart_in = None;
        let running_now = match (running_now, died) {
            (Some(running), Some(error)) => {
                if let Err(stop_error) = self.runtime.stop(running.name()).await {
                    warn!(interface = %running.name(), error = %stop_error, "cleaning up the ended tunnel failed");
                }
                let (failures, delay) = {
                    let mut tunnels = self.lock_tunnels();
                    let record = tunnels.entry(key.clone()).or_default();
                    record.failures = record.failures.saturating_add(1);
                    record.restarts += 1;
                    let delay = self.tuning.restart_delay(record.failures);
                    record.restart_at = Some(now + delay);
                    (record.failures, delay)
                };
                warn!(
                    interface = %running.name(),
                    reason = error.reason,
                    error = %error.message,
                    delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                    failures,
                    "the tunnel's task ended without being stopped; starting it again after the delay"
                );
                let failure = RuntimeError {
                    reason: error.reason,
                    message: format!(
                        "{}; starting it again in {} (failure {failures} in a row)",
                        error.message,
                        say_duration(delay)
                    ),
                };
                if let Some(record) = self.lock_tunnels().get_mut(&key) {
                    record.last_failure = Some(failure.clone());
                }
                observed.runtime_error = Some(failure);
                observed.state = None;
                restart_in = Some(delay);
                None
            }
            (other, _) => other,
        };
        {
            let mut tunnels = self.lock_tunnels();
            let record = tunnels.entry(key.clone()).or_default();
            record.peer_labels = running_now
                .as_ref()
                .map(|r| {
                    r.wireguard
                        .peers
                        .iter()
                        .map(|p| {
                            let ips: Vec<String> =
                                p.allowed_ips.iter().map(ToString::to_string).collect();
                            let labels = PeerLabels {
                                allowed_ips: ips.join(","),
                                friendly_name: p.name.clone(),
                            };
                            (p.public_key.to_base64(), labels)
                        })
                        .collect()
                })
                .unwrap_or_default();
            record.running = running_now.clone();
            record.seen_phase = observed.state.as_ref().map(|s| s.phase);
            record.dead_since = None;
            if observed
                .state
                .as_ref()
                .is_some_and(|s| s.phase == Phase::Running)
            {
                let since = *record.running_since.get_or_insert(now);
                if now.saturating_duration_since(since) >= BACKOFF_RESET_AFTER {
                    record.failures = 0;
                }
            } else {
                record.running_since = None;
            }
        }
        self.write_status(&tunnel, &namespace, &observed).await?;
        if let Some(delay) = restart_in {
            return Ok(Action::requeue(delay));
        }
        Ok(
            match (
                &observed.config_error,
                &observed.conflict,
                &observed.runtime_error,
            ) {
                (None, None, None) => Action::requeue(self.tuning.recheck),
                _ => Action::requeue(RETRY_INTERVAL),
            },
        )
    }

    /// Renders the tunnel, recording why it cannot be rendered in `observed`.
    async fn render(
        &self,
        tunnel: &WireGuardVppTunnel,
        namespace: &str,
        observed: &mut Observation,
    ) -> Result<Option<TunnelSpec>, Error> {
        let config_error = |error: RenderError| Some((error.kind(), error.to_string()));
        let gateway = match Gateway::load(&self.options.gateway_dir, tunnel.spec.bridge_id) {
            Ok(gateway) => gateway,
            Err(error) => {
                observed.config_error = config_error(error.into());
                return Ok(None);
            }
        };
        let max_uid = gateway.max_uid().unwrap_or(MAX_UID).min(MAX_UID);
        let Some(uid) = self.uid_for(tunnel, max_uid) else {
            observed.config_error = Some((
                "NoFreeUid",
                format!("no free uid up to {max_uid} on this node: set spec.uid"),
            ));
            return Ok(None);
        };
        observed.uid = Some(uid);
        let secrets = match self.secret_values(tunnel, namespace).await {
            Ok(secrets) => secrets,
            // A race with another writer of the Secret: retried soon, with backoff.
            Err(Error::Secret(error)) if error.is_transient() => return Err(Error::Secret(error)),
            Err(Error::Secret(error)) => {
                observed.config_error = Some((error.reason(), error.to_string()));
                return Ok(None);
            }
            Err(error) => return Err(error),
        };
        let Some(port) = self.port_for(tunnel) else {
            observed.config_error = Some((
                "NoFreePort",
                "no free UDP port from 51820 up on this node: set spec.wireguard.listenPort".into(),
            ));
            return Ok(None);
        };
        observed.listen_port = Some(port);
        let spec = render(tunnel, uid, &secrets, Some(&gateway)).and_then(|mut rendered| {
            rendered.wireguard.listen_port = Some(port);
            rendered.to_spec(&self.options.env)
        });
        match spec {
            Ok(spec) => {
                observed.public_key = spec
                    .wireguard
                    .private_key
                    .as_ref()
                    .map(|k| k.public_key().to_base64());
                Ok(Some(spec))
            }
            Err(error) => {
                observed.config_error = config_error(error);
                Ok(None)
            }
        }
    }

    /// Moves the runtime from `running` to `wanted`; returns what runs afterwards (with the error that
    /// kept it from getting there).
    async fn converge(
        &self,
        running: Option<&TunnelSpec>,
        wanted: Option<&TunnelSpec>,
    ) -> Result<Option<TunnelSpec>, (Option<TunnelSpec>, RuntimeError)> {
        match (running, wanted) {
            (None, None) => Ok(None),
            (Some(old), None) => {
                info!(interface = %old.name(), "stopping the tunnel");
                self.runtime
                    .stop(old.name())
                    .await
                    .map_err(|e| (Some(old.clone()), e))?;
                Ok(None)
            }
            (Some(old), Some(new)) if old == new => Ok(Some(old.clone())),
            (Some(old), Some(new)) if !old.needs_restart(new) => {
                info!(interface = %new.name(), "applying a WireGuard change without restarting");
                self.runtime
                    .reconfigure(new.name(), new.wireguard.clone())
                    .await
                    .map_err(|e| (Some(old.clone()), e))?;
                Ok(Some(new.clone()))
            }
            (Some(old), Some(new)) => {
                info!(interface = %new.name(), "restarting the tunnel: its VPP side changed");
                self.runtime
                    .stop(old.name())
                    .await
                    .map_err(|e| (Some(old.clone()), e))?;
                self.runtime
                    .start(new.clone())
                    .await
                    .map_err(|e| (None, e))?;
                Ok(Some(new.clone()))
            }
            (None, Some(new)) => {
                info!(interface = %new.name(), "starting the tunnel");
                self.runtime
                    .start(new.clone())
                    .await
                    .map_err(|e| (None, e))?;
                Ok(Some(new.clone()))
            }
        }
    }

    /// Writes the status by server-side apply when it differs from the one last written (or, before
    /// the first write of this process, from the resource's); publishes an event when readiness
    /// changes.
    async fn write_status(
        &self,
        tunnel: &WireGuardVppTunnel,
        namespace: &str,
        observed: &Observation,
    ) -> Result<(), Error> {
        let key = key_of(tunnel);
        let previous = tunnel.status.as_ref();
        let new = status::build(previous, observed, SystemTime::now());
        let write = {
            let tunnels = self.lock_tunnels();
            match tunnels.get(&key).and_then(|r| r.written.as_ref()) {
                Some(last) => *last != new,
                None => previous != Some(&new),
            }
        };
        if !write {
            return Ok(());
        }
        self.patch_status(tunnel, namespace, &new).await?;
        self.publish_transition(tunnel, previous, &new).await;
        Ok(())
    }

    /// Writes `new` as the tunnel's whole status, by server-side apply.
    async fn patch_status(
        &self,
        tunnel: &WireGuardVppTunnel,
        namespace: &str,
        new: &WireGuardVppTunnelStatus,
    ) -> Result<(), Error> {
        let key = key_of(tunnel);
        let api: Api<WireGuardVppTunnel> = Api::namespaced(self.client.clone(), namespace);
        let patch = serde_json::json!({
            "apiVersion": "wgvpp.io/v1alpha1",
            "kind": "WireGuardVppTunnel",
            "status": new,
        });
        api.patch_status(
            &tunnel.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await
        .map_err(|source| Error::Kube {
            action: format!("writing the status of {key}"),
            source,
        })?;
        if let Some(record) = self.lock_tunnels().get_mut(&key) {
            record.written = Some(new.clone());
        }
        Ok(())
    }

    async fn publish_transition(
        &self,
        tunnel: &WireGuardVppTunnel,
        previous: Option<&WireGuardVppTunnelStatus>,
        new: &WireGuardVppTunnelStatus,
    ) {
        let ready = |s: &WireGuardVppTunnelStatus| {
            s.conditions
                .iter()
                .find(|c| c.type_ == "Ready")
                .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
        };
        let (Some(now), before) = (ready(new), previous.and_then(ready)) else {
            return;
        };
        if before
            .as_ref()
            .is_some_and(|b| b.0 == now.0 && b.1 == now.1)
        {
            return;
        }
        let event = KubeEvent {
            type_: if now.0 == "True" {
                EventType::Normal
            } else {
                EventType::Warning
            },
            reason: now.1.clone(),
            note: Some(now.2.clone()),
            action: "Reconcile".into(),
            secondary: None,
        };
        if let Err(err) = self.recorder.publish(&event, &tunnel.object_ref(&())).await {
            debug!(error = %err, "could not publish an event");
        }
    }

    /// Stops every running tunnel (undoing its VPP objects), all at once: the tunnels go with the
    /// process, as the daemon's do on SIGTERM, and the next controller starts them again. Without this
    /// the runtime's tunnels would only be dropped, which leaves their memifs, routes and neighbours in VPP
    /// until a successor sweeps them.
    async fn stop_all(&self) {
        let names: Vec<String> = self
            .lock_tunnels()
            .values_mut()
            .filter_map(|record| Some(record.running.take()?.name().to_string()))
            .collect();
        let stops = names.iter().map(|name| async move {
            info!(interface = %name, "shutting down: stopping the tunnel");
            if let Err(error) = self.runtime.stop(name).await {
                warn!(interface = %name, %error, "stopping the tunnel at shutdown failed");
            }
        });
        futures::future::join_all(stops).await;
    }

    /// Stops the tunnel (undoing its VPP objects) before the resource goes.
    async fn cleanup(&self, tunnel: Arc<WireGuardVppTunnel>) -> Result<Action, Error> {
        let key = key_of(&tunnel);
        let running = self
            .lock_tunnels()
            .get(&key)
            .and_then(|r| r.running.clone());
        let name = running
            .map(|r| r.name().to_string())
            .or_else(|| interface_name(&tunnel).ok());
        if let Some(name) = name
            && tunnel.spec.node_name == self.options.node_name
        {
            info!(interface = %name, "resource deleted: stopping the tunnel");
            if let Err(error) = self.runtime.stop(&name).await {
                warn!(interface = %name, error = %error, "stopping the tunnel failed; will retry");
                return Ok(Action::requeue(Duration::from_secs(5)));
            }
            let event = KubeEvent {
                type_: EventType::Normal,
                reason: "Stopped".into(),
                note: Some(format!("tunnel {name} stopped and its VPP objects removed")),
                action: "Cleanup".into(),
                secondary: None,
            };
            if let Err(err) = self.recorder.publish(&event, &tunnel.object_ref(&())).await {
                debug!(error = %err, "could not publish an event");
            }
        }
        self.lock_tunnels().remove(&key);
        // The Secrets of a namespace where no tunnel of the node is left are no longer watched.
        let namespaces: HashSet<String> = self
            .store
            .state()
            .iter()
            .filter(|t| t.metadata.deletion_timestamp.is_none())
            .filter_map(|t| t.namespace())
            .collect();
        self.secrets.retain_namespaces(&namespaces);
        self.allocated
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&key);
        self.allocated_ports
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&key);
        self.first_seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&key);
        Ok(Action::await_change())
    }

    /// The runtime's state of `name`, the tunnel of record `key`, noting in the record when the
    /// runtime reports its task dead (or no longer knows it) while the controller still counts it
    /// as running.
    async fn observe(&self, key: &str, name: &str) -> Option<TunnelState> {
        let state = self.runtime.state(name).await;
        let dead = match &state {
            None => Some("Gone"),
            Some(s) if s.phase == Phase::Failed => {
                Some(s.error.as_ref().map_or("TunnelFailed", |e| e.reason))
            }
            Some(_) => None,
        };
        let mut tunnels = self.lock_tunnels();
        if let Some(record) = tunnels.get_mut(key)
            && record.running.as_ref().is_some_and(|r| r.name() == name)
        {
            match dead {
                Some(reason) => {
                    record.dead_since.get_or_insert((Instant::now(), reason));
                }
                None => record.dead_since = None,
            }
        }
        state
    }

    /// `(key, interface)` of every tunnel the controller counts as running.
    fn running_names(&self) -> Vec<(String, String)> {
        let mut names: Vec<(String, String)> = self
            .lock_tunnels()
            .iter()
            .filter_map(|(key, r)| Some((key.clone(), r.running.as_ref()?.name().to_string())))
            .collect();
        names.sort();
        names
    }

    /// Best effort after a reconcile of `tunnel` panicked: its Ready condition says so (the rest of
    /// its status is kept), with an event.
    async fn report_reconcile_panic(&self, tunnel: &WireGuardVppTunnel, message: &str) {
        let Some(namespace) = tunnel.namespace() else {
            return;
        };
        let previous = tunnel.status.as_ref();
        let mut new = previous.cloned().unwrap_or_default();
        let now = to_time(SystemTime::now());
        let ready = Condition {
            type_: "Ready".into(),
            status: "False".into(),
            reason: "ReconcilePanicked".into(),
            message: format!(
                "the controller's reconcile of this tunnel panicked (a bug; it is retried with backoff, \
                 other tunnels are not affected): {message}"
            ),
            observed_generation: tunnel.metadata.generation,
            last_transition_time: previous
                .and_then(|p| p.conditions.iter().find(|c| c.type_ == "Ready"))
                .filter(|c| c.status == "False")
                .map_or(now, |c| c.last_transition_time.clone()),
        };
        new.conditions.retain(|c| c.type_ != "Ready");
        new.conditions.push(ready);
        if let Err(error) = self.patch_status(tunnel, &namespace, &new).await {
            warn!(tunnel = %key_of(tunnel), %error, "could not report the panic in the status");
            return;
        }
        self.publish_transition(tunnel, previous, &new).await;
    }
}

/// A delay as a person reads it: whole seconds, or milliseconds below one.
fn say_duration(delay: Duration) -> String {
    if delay < Duration::from_secs(1) {
        format!("{} ms", delay.as_millis())
    } else {
        format!("{} s", delay.as_secs())
    }
}

/// The message of a panic's payload (`panic!` with a literal or a format string), made fit for a
/// status: anything shaped like a key is cut out.
fn panic_message(payload: &(dyn Any + Send)) -> String {
    let text = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)");
    scrub(text)
}

impl<R: TunnelRuntime, S: SecretStore> Endpoints for Context<R, S> {
    async fn metrics_text(&self) -> String {
        // Copied out first: the tunnel table's lock is not held across the runtime's awaits.
        type Row = (
            String,
            String,
            Option<String>,
            BTreeMap<String, PeerLabels>,
            u64,
        );
        let mut rows: Vec<Row> = self
            .lock_tunnels()
            .iter()
            .filter_map(|(key, r)| {
                Some((
                    key.clone(),
                    r.interface.clone()?,
                    r.running.as_ref().map(|s| s.name().to_string()),
                    r.peer_labels.clone(),
                    r.restarts,
                ))
            })
            .collect();
        rows.sort_by(|a, b| a.1.cmp(&b.1));
        let mut states = Vec::with_capacity(rows.len());
        for (key, interface, running, peer_labels, restarts) in rows {
            let state = match &running {
                Some(name) => self.observe(&key, name).await,
                None => None,
            };
            states.push((interface, state, peer_labels, restarts));
        }
        let views: Vec<TunnelMetrics<'_>> = states
            .iter()
            .map(|(interface, state, peer_labels, restarts)| TunnelMetrics {
                interface,
                state: state.as_ref(),
                peers: peer_labels,
                restarts: *restarts,
            })
            .collect();
        self.metrics.render(&views)
    }

    async fn health(&self) -> Report {
        let mut report = Report::default();
        let now = Instant::now();
        if let Some(bound) = self.tuning.watch_stall {
            self.progress.check(now, bound, &mut report);
        }
        for (key, name) in self.running_names() {
            self.observe(&key, &name).await;
        }
        let overdue = self.tuning.restart_overdue;
        let tunnels = self.lock_tunnels();
        let mut keys: Vec<&String> = tunnels.keys().collect();
        keys.sort();
        for key in keys {
            let record = &tunnels[key];
            if let Some((since, reason)) = record.dead_since {
                let dead_for = now.saturating_duration_since(since);
                let line = format!(
                    "tunnel {key}: its task ended without being stopped ({reason}) {} s ago and the \
                     controller has not taken it down for a restart yet",
                    dead_for.as_secs()
                );
                if dead_for > overdue {
                    report.problems.push(line);
                } else {
                    report.notes.push(line);
                }
            }
            if record.running.is_none()
                && let Some(at) = record.restart_at
                && now.saturating_duration_since(at) > overdue
            {
                report.problems.push(format!(
                    "tunnel {key}: its task died and its restart is {} s overdue",
                    now.saturating_duration_since(at).as_secs()
                ));
            }
        }
        report
    }

    async fn readiness(&self) -> Report {
        let mut report = Report::default();
        if !self.metrics.is_listed() {
            report
                .problems
                .push("watch: this node's tunnels are not listed yet".into());
            return report;
        }
        if let Err(why) = self.runtime.check().await {
            report.problems.push(format!("vpp: {why}"));
        }
        let now = Instant::now();
        let mut tunnels: Vec<Arc<WireGuardVppTunnel>> = self
            .store
            .state()
            .into_iter()
            .filter(|t| {
                t.spec.node_name == self.options.node_name
                    && t.metadata.deletion_timestamp.is_none()
            })
            .collect();
        tunnels.sort_by_key(|t| key_of(t));
        let seen: HashMap<String, Instant> = {
            let keys: HashSet<String> = tunnels.iter().map(|t| key_of(t)).collect();
            let mut first_seen = self.first_seen.lock().unwrap_or_else(|p| p.into_inner());
            first_seen.retain(|key, _| keys.contains(key));
            for key in keys {
                first_seen.entry(key).or_insert(now);
            }
            first_seen.clone()
        };
        let running: HashMap<String, String> = self.running_names().into_iter().collect();
        let (mut up, mut reported) = (0, Vec::new());
        for tunnel in &tunnels {
            let key = key_of(tunnel);
            let phase = match running.get(&key) {
                Some(name) => self.observe(&key, name).await.map(|s| s.phase),
                None => None,
            };
            let seen_for = seen
                .get(&key)
                .map_or(Duration::ZERO, |at| now.saturating_duration_since(*at));
            let reason = reported_reason(tunnel);
            match tunnel_readiness(phase, reason, seen_for, self.tuning.startup_grace) {
                TunnelReadiness::Up => up += 1,
                TunnelReadiness::Reported(reason) => reported.push(format!("{key} ({reason})")),
                TunnelReadiness::Pending(why) => {
                    report.problems.push(format!("tunnel {key}: {why}"));
                }
            }
        }
        report.notes.push(format!(
            "{up} of {} tunnels of node {} Running",
            tunnels.len(),
            self.options.node_name
        ));
        if !reported.is_empty() {
            report.notes.push(format!(
                "not Running, reported in their status: {}",
                reported.join(", ")
            ));
        }
        report
    }
}

/// The reason of the tunnel's Ready=False condition, when its status is of its current generation.
fn reported_reason(tunnel: &WireGuardVppTunnel) -> Option<&str> {
    let status = tunnel.status.as_ref()?;
    if status.observed_generation != tunnel.metadata.generation {
        return None;
    }
    status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready" && c.status == "False")
        .map(|c| c.reason.as_str())
}

/// One reconcile, with a panic caught: the tunnel's status says so and the error policy retries it
/// with backoff, while every other tunnel is served as before.
async fn reconcile<R: TunnelRuntime, S: SecretStore>(
    tunnel: Arc<WireGuardVppTunnel>,
    ctx: Arc<Context<R, S>>,
) -> Result<Action, Error> {
    let started = Instant::now();
    let key = key_of(&tunnel);
    // Every lock the controller takes tolerates poisoning, so state left by a panic is usable.
    let outcome = AssertUnwindSafe(reconcile_once(tunnel.clone(), ctx.clone()))
        .catch_unwind()
        .await;
    let result = match outcome {
        Ok(result) => {
            if result.is_ok()
                && let Some(record) = ctx.lock_tunnels().get_mut(&key)
            {
                record.reconcile_failures = 0;
            }
            result
        }
        Err(payload) => {
            let message = panic_message(payload.as_ref());
            error!(tunnel = %key, panic = %message, "the reconcile panicked; other tunnels carry on");
            ctx.report_reconcile_panic(&tunnel, &message).await;
            Err(Error::Panicked {
                tunnel: key,
                message,
            })
        }
    };
    let label = match &result {
        Ok(_) => "ok",
        Err(error) => error.kind(),
    };
    ctx.metrics.record_reconcile(label, started.elapsed());
    result
}

async fn reconcile_once<R: TunnelRuntime, S: SecretStore>(
    tunnel: Arc<WireGuardVppTunnel>,
    ctx: Arc<Context<R, S>>,
) -> Result<Action, Error> {
    let key = key_of(&tunnel);
    let namespace = tunnel
        .namespace()
        .ok_or_else(|| Error::NoNamespace(key.clone()))?;
    let api: Api<WireGuardVppTunnel> = Api::namespaced(ctx.client.clone(), &namespace);
    finalizer(&api, FINALIZER, tunnel, |event| async {
        match event {
            FinalizerEvent::Apply(tunnel) => ctx.apply(tunnel).await,
            FinalizerEvent::Cleanup(tunnel) => ctx.cleanup(tunnel).await,
        }
    })
    .instrument(info_span!("reconcile", tunnel = %key))
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))
}

fn error_policy<R: TunnelRuntime, S: SecretStore>(
    tunnel: Arc<WireGuardVppTunnel>,
    error: &Error,
    ctx: Arc<Context<R, S>>,
) -> Action {
    let key = key_of(&tunnel);
    // Each tunnel backs off on its own: 1 s, 2 s, 4 s, ... up to 5 minutes by default, from the
    // start again after a success.
    let (failures, delay) = {
        let mut tunnels = ctx.lock_tunnels();
        let record = tunnels.entry(key.clone()).or_default();
        record.reconcile_failures = record.reconcile_failures.saturating_add(1);
        (
            record.reconcile_failures,
            ctx.tuning.restart_delay(record.reconcile_failures),
        )
    };
    warn!(tunnel = %key, error = %error, failures, delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX), "reconcile failed; retrying");
    Action::requeue(delay)
}

/// How often [`watch_phases`] looks at the runtime's tunnels.
const PHASE_POLL: Duration = Duration::from_secs(1);

/// Reconciles a running tunnel as soon as the runtime reports it in another phase than its last
/// reconcile saw (it came up, lost VPP, its task died), instead of at its next periodic look. Costs no
/// request: the runtime is local. Ends when `stop` says so.
async fn watch_phases<R: TunnelRuntime, S: SecretStore>(
    ctx: Arc<Context<R, S>>,
    changed: tokio::sync::mpsc::UnboundedSender<ObjectRef<WireGuardVppTunnel>>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(PHASE_POLL) => {}
            _ = stop.wait_for(|stopped| *stopped) => return,
        }
        for (key, name) in ctx.running_names() {
            let phase = ctx.observe(&key, &name).await.map(|s| s.phase);
            let seen = ctx.lock_tunnels().get(&key).and_then(|r| r.seen_phase);
            if phase == seen {
                continue;
            }
            let tunnel = ctx.store.state().into_iter().find(|t| key_of(t) == key);
            if let Some(tunnel) = tunnel
                && changed.send(ObjectRef::from_obj(tunnel.as_ref())).is_err()
            {
                return;
            }
        }
    }
}

/// The Secret keys `tunnel` refers to: its private key, memif secret and preshared keys.
fn secret_references(tunnel: &WireGuardVppTunnel) -> Vec<SecretKeyRef> {
    let spec = &tunnel.spec;
    let mut references = vec![spec.wireguard.private_key_secret_ref.clone()];
    references.extend(spec.memif_secret_ref.clone());
    references.extend(
        spec.wireguard
            .peers
            .iter()
            .filter_map(|p| p.preshared_key_secret_ref.clone()),
    );
    references
}

/// The predicate of watch events worth a reconcile: a change of the spec (`metadata.generation`), of
/// the deletion or of the finalizers (the finalizer helper waits for its own patch). A status write,
/// ours above all, is not one: the periodic look and Secret changes trigger everything else.
fn reconcile_worthy(tunnel: &WireGuardVppTunnel) -> Option<u64> {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let meta = &tunnel.metadata;
    let mut hasher = DefaultHasher::new();
    meta.generation.hash(&mut hasher);
    meta.deletion_timestamp.is_some().hash(&mut hasher);
    meta.finalizers.hash(&mut hasher);
    Some(hasher.finish())
}

/// Before any tunnel starts: lists this node's tunnels and lets the runtime remove what tunnels that
/// no longer exist, or are being deleted, left (deleted while no agent ran). Skipped, with a warning, when the list fails:
/// the next start looks again.
async fn sweep_orphans<R: TunnelRuntime>(
    api: &Api<WireGuardVppTunnel>,
    node_selector: &str,
    runtime: &R,
) {
    let params = kube::api::ListParams::default().fields(node_selector);
    let listed = tokio::time::timeout(Duration::from_secs(10), api.list(&params)).await;
    match listed {
        Ok(Ok(list)) => {
            // A tunnel deleted while no agent ran is swept too: its finalizer's cleanup finds
            // nothing running to stop.
            let live = list
                .items
                .iter()
                .filter(|t| t.metadata.deletion_timestamp.is_none())
                .map(|t| interface_name(t).unwrap_or_else(|_| t.name_any()))
                .collect();
            runtime.sweep_orphans(live).await;
        }
        Ok(Err(error)) => {
            warn!(%error, "cannot list this node's tunnels; not looking for what deleted tunnels left in VPP");
        }
        Err(_) => {
            warn!(
                "listing this node's tunnels took more than 10 s; not looking for what deleted tunnels left in VPP"
            );
        }
    }
}

/// Runs the controller in the cluster (in-cluster config or `KUBECONFIG`), with Secrets from the API,
/// until `shutdown` completes.
pub async fn run<R: TunnelRuntime>(
    options: ControllerOptions,
    tuning: ControllerTuning,
    runtime: R,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) -> Result<(), Error> {
    let client = Client::try_default().await.map_err(Error::Client)?;
    run_with_tuning(
        client.clone(),
        KubeSecrets::new(client),
        runtime,
        options,
        tuning,
        shutdown,
    )
    .await
}

/// Runs the controller with an explicit client and secret store, and the default
/// [`ControllerTuning`], until `shutdown` completes.
pub async fn run_with<R: TunnelRuntime, S: SecretStore>(
    client: Client,
    secrets: S,
    runtime: R,
    options: ControllerOptions,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) -> Result<(), Error> {
    run_with_tuning(
        client,
        secrets,
        runtime,
        options,
        ControllerTuning::default(),
        shutdown,
    )
    .await
}

/// Runs the controller with an explicit client, secret store and tuning until `shutdown` completes.
pub async fn run_with_tuning<R: TunnelRuntime, S: SecretStore>(
    client: Client,
    secrets: S,
    runtime: R,
    options: ControllerOptions,
    tuning: ControllerTuning,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) -> Result<(), Error> {
    let api: Api<WireGuardVppTunnel> = match &options.namespace {
        Some(namespace) => Api::namespaced(client.clone(), namespace),
        None => Api::all(client.clone()),
    };
    // `spec.nodeName` is a selectable field of the CRD: the API server sends only this node's tunnels.
    let node_selector = format!("spec.nodeName={}", options.node_name);
    sweep_orphans(&api, &node_selector, &runtime).await;
    let watch = watcher::Config::default().fields(&node_selector);
    let progress = Arc::new(WatchProgress::new(Instant::now()));
    // What `Controller::new` builds, with the watch's progress recorded and a quiet watch relisted.
    let (store, writer) = reflector::store::<WireGuardVppTunnel>();
    let new_watch = move || {
        watcher(api.clone(), watch.clone())
            .default_backoff()
            .boxed()
    };
    let events = watch_with_relists(new_watch, tuning.relist_after(), progress.clone());
    let own = trigger_self(
        reflector::reflector(writer, events)
            .applied_objects()
            .predicate_filter(reconcile_worthy, PredicateConfig::default()),
        (),
    );
    // A changed Secret reconciles the tunnels of its namespace that name it.
    let by_secret = secrets
        .changes()
        .unwrap_or_else(|| futures::stream::pending().boxed())
        .flat_map({
            let store = store.clone();
            move |(namespace, name)| {
                let requests: Vec<Result<ReconcileRequest<WireGuardVppTunnel>, watcher::Error>> =
                    store
                        .state()
                        .iter()
                        .filter(|t| t.namespace().as_deref() == Some(namespace.as_str()))
                        .filter(|t| secret_references(t).iter().any(|r| r.name == name))
                        .map(|t| Ok(ObjectRef::from_obj(t.as_ref()).into()))
                        .collect();
                futures::stream::iter(requests)
            }
        });
    // A tunnel whose phase changed in the runtime (it came up, lost VPP, its task died).
    let (phase_changed, phase_changes) = tokio::sync::mpsc::unbounded_channel();
    let by_phase = futures::stream::unfold(phase_changes, |mut changes| async move {
        let object: ObjectRef<WireGuardVppTunnel> = changes.recv().await?;
        Some((Ok(object.into()), changes))
    });
    let triggers = futures::stream::select(futures::stream::select(own, by_secret), by_phase);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let queue = triggers.take_until(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let reporter = Reporter {
        controller: "wireguard-vpp".into(),
        instance: Some(options.node_name.clone()),
    };
    let ctx = Arc::new(Context {
        recorder: Recorder::new(client.clone(), reporter),
        client,
        runtime,
        secrets,
        store: store.clone(),
        options: options.clone(),
        tunnels: Mutex::default(),
        allocated: Mutex::default(),
        allocated_ports: Mutex::default(),
        first_seen: Mutex::default(),
        metrics: Metrics::default(),
        tuning: tuning.clone(),
        progress,
    });
    tokio::spawn(watch_phases(ctx.clone(), phase_changed, stop_rx.clone()));
    let listed_ctx = ctx.clone();
    let stopped = stop_rx.clone();
    tokio::spawn(async move {
        // The store's readiness future keeps only the last poller's waker, and the applier polls it
        // too: poll again every half second instead of relying on a wake-up.
        while !*stopped.borrow() {
            let wait = listed_ctx.store.wait_until_ready();
            match tokio::time::timeout(Duration::from_millis(500), wait).await {
                Ok(Ok(())) => {
                    listed_ctx.metrics.set_listed(true);
                    break;
                }
                Ok(Err(_)) => break,
                Err(_) => {}
            }
        }
    });
    if let Some(addr) = options.metrics_addr {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| Error::Metrics { addr, source })?;
        let mut stop = stop_rx.clone();
        tokio::spawn(super::metrics::serve(
            listener,
            ctx.clone(),
            tuning.http,
            async move {
                let _ = stop.wait_for(|stopped| *stopped).await;
            },
        ));
    }
    info!(node = %options.node_name, "controller started");
    applier(
        |tunnel, ctx| {
            // Each reconcile in a task of its own, as `Controller::run` does; a panic is caught inside.
            CancelableJoinHandle::spawn(
                TryFutureExt::into_future(reconcile(tunnel, ctx)).in_current_span(),
                &tokio::runtime::Handle::current(),
            )
        },
        error_policy,
        ctx.clone(),
        store,
        queue,
        ApplierConfig::default(),
    )
    .for_each(|result| async move {
        if let Err(error) = result {
            debug!(error = %error, "controller event");
        }
    })
    .await;
    ctx.stop_all().await;
    info!("controller stopped");
    Ok(())
}
