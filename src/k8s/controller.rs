//! The in-pod controller: one per node, running the tunnels whose `spec.nodeName` is its node.
//!
//! Each reconcile goes through a finalizer (so deleting a resource stops its tunnel and undoes its VPP
//! objects before the resource goes), then [`Context::apply`]: read the keys (generating a missing private
//! key into its Secret), allocate a uid when the spec has none, render, check for conflicts with the older
//! tunnels of the node, then start, reconfigure (WireGuard-only changes, keeping sessions) or restart the
//! tunnel through the [`TunnelRuntime`], and write the status by server-side apply: at once when
//! something changed, and counters at most every [`STATUS_INTERVAL`].
//!
//! When the shutdown future completes (SIGTERM), the controller finishes the reconciles in flight, then
//! stops every tunnel it runs, undoing its VPP objects as the daemon does on SIGTERM, before [`run`]
//! returns; the next controller starts them again.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use futures::StreamExt;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};
use tracing::{Instrument, debug, info, info_span, warn};

use super::conflict::{Claim, allocate_uid, find_conflict};
use super::crd::{MAX_UID, WireGuardVppTunnel, WireGuardVppTunnelStatus};
use super::gateway::Gateway;
use super::metrics::{Endpoints, Metrics, TunnelMetrics};
use super::render::{RenderError, SecretValues, interface_name, render, response_ranges};
use super::secrets::{KubeSecrets, SecretError, SecretStore};
use super::status::{self, Observation};
use super::tunnel_runtime::{Phase, RuntimeError, TunnelRuntime, TunnelSpec};
use crate::config::Env;
use crate::wg::Key;

/// The finalizer that keeps a resource until its tunnel is stopped.
pub const FINALIZER: &str = "wgvpp.io/tunnel-cleanup";

/// The field manager of status writes.
pub const FIELD_MANAGER: &str = "wireguard-vpp-controller";

/// How often a running tunnel's counters are written to its status, at most.
pub const STATUS_INTERVAL: Duration = Duration::from_secs(10);

/// How soon a tunnel that cannot run (invalid config, conflict) is looked at again.
const RETRY_INTERVAL: Duration = Duration::from_secs(30);

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
        }
    }
}

/// What the controller remembers of one tunnel between reconciles.
#[derive(Default)]
struct TunnelRecord {
    /// The configuration the runtime runs, if it runs.
    running: Option<TunnelSpec>,
    /// The status last written, and when.
    written: Option<(WireGuardVppTunnelStatus, Instant)>,
    /// Allowed IPs by peer public key, for metric labels.
    allowed_ips: BTreeMap<String, String>,
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
    metrics: Metrics,
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
    fn claims(&self, allocated: &HashMap<String, u32>) -> Vec<Claim> {
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
                    listen_port: t.spec.wireguard.listen_port,
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
        let claims: Vec<Claim> = self
            .claims(&allocated)
            .into_iter()
            .filter(|c| c.tunnel != key)
            .collect();
        let uid = allocate_uid(&claims, max)?;
        allocated.insert(key, uid);
        Some(uid)
    }

    /// Reads every Secret value the tunnel refers to; generates the private key when it is missing.
    async fn secret_values(
        &self,
        tunnel: &WireGuardVppTunnel,
        namespace: &str,
    ) -> Result<SecretValues, Error> {
        let spec = &tunnel.spec;
        let mut references = vec![spec.wireguard.private_key_secret_ref.clone()];
        references.extend(spec.memif_secret_ref.clone());
        references.extend(
            spec.wireguard
                .peers
                .iter()
                .filter_map(|p| p.preshared_key_secret_ref.clone()),
        );
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

    /// Brings the tunnel to its spec and writes its status.
    async fn apply(&self, tunnel: Arc<WireGuardVppTunnel>) -> Result<Action, Error> {
        if tunnel.spec.node_name != self.options.node_name {
            return Ok(Action::await_change());
        }
        let key = key_of(&tunnel);
        let namespace = tunnel
            .namespace()
            .ok_or_else(|| Error::NoNamespace(key.clone()))?;
        let mut observed = Observation {
            generation: tunnel.metadata.generation,
            config_error: None,
            conflict: None,
            runtime_error: None,
            state: None,
            uid: None,
            public_key: None,
            memif_socket: None,
            listen_port: Some(tunnel.spec.wireguard.listen_port),
        };
        let rendered = self.render(&tunnel, &namespace, &mut observed).await?;
        if let Some(rendered) = &rendered {
            let claims = self.claims(&self.allocated.lock().unwrap_or_else(|p| p.into_inner()));
            observed.conflict = claims
                .iter()
                .find(|c| c.tunnel == key)
                .and_then(|me| find_conflict(me, &claims));
            observed.memif_socket = Some(rendered.config.memif_socket.display().to_string());
        }
        let previous_running = self
            .lock_tunnels()
            .entry(key.clone())
            .or_default()
            .running
            .clone();
        // A spec (or Secret, or gateway file) that stops rendering does not take a running tunnel
        // down: it keeps its last valid configuration, and the status says so. A conflict does stop it.
        let runnable = match (&rendered, &mut observed.config_error) {
            (None, Some((_, message))) if previous_running.is_some() => {
                message.push_str(" (the tunnel keeps running its last valid configuration)");
                previous_running.clone()
            }
            _ => rendered.filter(|_| observed.conflict.is_none()),
        };
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
        // A tunnel that ended by itself is started again at the next retry; meanwhile its status
        // carries the error.
        let failed = observed
            .state
            .as_ref()
            .is_some_and(|s| s.phase == Phase::Failed);
        let running_now = match running_now {
            Some(running) if failed => {
                warn!(interface = %running.name(), "the tunnel ended by itself; starting it again shortly");
                if let Err(error) = self.runtime.stop(running.name()).await {
                    warn!(interface = %running.name(), %error, "cleaning up the ended tunnel failed");
                }
                None
            }
            other => other,
        };
        {
            let mut tunnels = self.lock_tunnels();
            let record = tunnels.entry(key.clone()).or_default();
            record.allowed_ips = running_now
                .as_ref()
                .map(|r| {
                    r.wireguard
                        .peers
                        .iter()
                        .map(|p| {
                            let ips: Vec<String> =
                                p.allowed_ips.iter().map(ToString::to_string).collect();
                            (p.public_key.to_base64(), ips.join(","))
                        })
                        .collect()
                })
                .unwrap_or_default();
            record.running = running_now.clone();
        }
        self.write_status(&tunnel, &namespace, &observed).await?;
        Ok(
            match (
                &observed.config_error,
                &observed.conflict,
                &observed.runtime_error,
            ) {
                (None, None, None) if !failed => Action::requeue(STATUS_INTERVAL),
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
            Err(Error::Secret(error)) => {
                observed.config_error = Some(("SecretUnavailable", error.to_string()));
                return Ok(None);
            }
            Err(error) => return Err(error),
        };
        let spec = render(tunnel, uid, &secrets, Some(&gateway))
            .and_then(|rendered| rendered.to_spec(&self.options.env));
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

    /// Writes the status by server-side apply when it changed, or when only counters changed and the
    /// last write is older than [`STATUS_INTERVAL`]; publishes an event when readiness changes.
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
            let written = tunnels.get(&key).and_then(|r| r.written.as_ref());
            match (written, previous) {
                (Some((last, at)), _) => {
                    !status::stats_only_change(last, &new)
                        || (*last != new && at.elapsed() >= STATUS_INTERVAL)
                }
                (None, Some(previous)) => *previous != new,
                (None, None) => true,
            }
        };
        if !write {
            return Ok(());
        }
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
            record.written = Some((new.clone(), Instant::now()));
        }
        self.publish_transition(tunnel, previous, &new).await;
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
        self.allocated
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&key);
        Ok(Action::await_change())
    }
}

impl<R: TunnelRuntime, S: SecretStore> Endpoints for Context<R, S> {
    async fn metrics_text(&self) -> String {
        // Copied out first: the tunnel table's lock is not held across the runtime's awaits.
        let running: Vec<(String, BTreeMap<String, String>)> = self
            .lock_tunnels()
            .values()
            .filter_map(|r| {
                Some((
                    r.running.as_ref()?.name().to_string(),
                    r.allowed_ips.clone(),
                ))
            })
            .collect();
        let mut states = Vec::with_capacity(running.len());
        for (name, allowed_ips) in running {
            if let Some(state) = self.runtime.state(&name).await {
                states.push((name, state, allowed_ips));
            }
        }
        let views: Vec<TunnelMetrics<'_>> = states
            .iter()
            .map(|(interface, state, allowed_ips)| TunnelMetrics {
                interface,
                state,
                allowed_ips,
            })
            .collect();
        self.metrics.render(&views)
    }

    fn ready(&self) -> bool {
        self.metrics.is_ready()
    }
}

async fn reconcile<R: TunnelRuntime, S: SecretStore>(
    tunnel: Arc<WireGuardVppTunnel>,
    ctx: Arc<Context<R, S>>,
) -> Result<Action, Error> {
    let started = Instant::now();
    let key = key_of(&tunnel);
    let namespace = tunnel
        .namespace()
        .ok_or_else(|| Error::NoNamespace(key.clone()))?;
    let api: Api<WireGuardVppTunnel> = Api::namespaced(ctx.client.clone(), &namespace);
    let result = finalizer(&api, FINALIZER, tunnel, |event| async {
        match event {
            FinalizerEvent::Apply(tunnel) => ctx.apply(tunnel).await,
            FinalizerEvent::Cleanup(tunnel) => ctx.cleanup(tunnel).await,
        }
    })
    .instrument(info_span!("reconcile", tunnel = %key))
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)));
    let label = match &result {
        Ok(_) => "ok",
        Err(error) => error.kind(),
    };
    ctx.metrics.record_reconcile(label, started.elapsed());
    result
}

fn error_policy<R: TunnelRuntime, S: SecretStore>(
    tunnel: Arc<WireGuardVppTunnel>,
    error: &Error,
    _ctx: Arc<Context<R, S>>,
) -> Action {
    warn!(tunnel = %key_of(&tunnel), error = %error, "reconcile failed; retrying in 5 s");
    Action::requeue(Duration::from_secs(5))
}

/// Runs the controller in the cluster (in-cluster config or `KUBECONFIG`), with Secrets from the API,
/// until `shutdown` completes.
pub async fn run<R: TunnelRuntime>(
    options: ControllerOptions,
    runtime: R,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) -> Result<(), Error> {
    let client = Client::try_default().await.map_err(Error::Client)?;
    run_with(
        client.clone(),
        KubeSecrets::new(client),
        runtime,
        options,
        shutdown,
    )
    .await
}

/// Runs the controller with an explicit client and secret store until `shutdown` completes.
pub async fn run_with<R: TunnelRuntime, S: SecretStore>(
    client: Client,
    secrets: S,
    runtime: R,
    options: ControllerOptions,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) -> Result<(), Error> {
    let api: Api<WireGuardVppTunnel> = match &options.namespace {
        Some(namespace) => Api::namespaced(client.clone(), namespace),
        None => Api::all(client.clone()),
    };
    // `spec.nodeName` is a selectable field of the CRD: the API server sends only this node's tunnels.
    let watch = watcher::Config::default().fields(&format!("spec.nodeName={}", options.node_name));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let controller = Controller::new(api, watch).graceful_shutdown_on(async move {
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
        store: controller.store(),
        options: options.clone(),
        tunnels: Mutex::default(),
        allocated: Mutex::default(),
        metrics: Metrics::default(),
    });
    let ready_ctx = ctx.clone();
    let stopped = stop_rx.clone();
    tokio::spawn(async move {
        // The store's readiness future keeps only the last poller's waker, and the controller's runner
        // polls it too: poll again every half second instead of relying on a wake-up.
        while !*stopped.borrow() {
            let wait = ready_ctx.store.wait_until_ready();
            match tokio::time::timeout(Duration::from_millis(500), wait).await {
                Ok(Ok(())) => {
                    ready_ctx.metrics.set_ready(true);
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
        tokio::spawn(super::metrics::serve(listener, ctx.clone(), async move {
            let _ = stop.wait_for(|stopped| *stopped).await;
        }));
    }
    info!(node = %options.node_name, "controller started");
    controller
        .run(reconcile, error_policy, ctx.clone())
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
