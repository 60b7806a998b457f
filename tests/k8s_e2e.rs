//! The CRD and the controller on a real Kubernetes API server: `crd-apiserver` (tests/common/apiserver.rs),
//! the upstream apiextensions server with an embedded etcd that also serves core v1 Secrets, Namespaces
//! and Events with the upstream generic storage, built from Debian's Go sources by
//! `scripts/k8s/build-crd-apiserver.sh` (see `scripts/k8s/README.md`). Each test starts its own server on
//! free ports in a temporary directory and kills it when done.
//!
//! The controller runs in the test process with its own Kubernetes parts: Secrets through its
//! [`KubeSecrets`] store (generated keys, owner references, changed keys are read from the real server),
//! events through kube's `Recorder` (read back as `events.k8s.io/v1` and core v1 Events, as `kubectl
//! describe` shows them). One stand-in remains, for the data plane: `RecordingRuntime` (see its doc
//! comment), and `TaskRuntime` beside it for supervision (a task per tunnel that can be made to panic).
//! The real data plane, the `controller` binary against a real VPP and a WireGuard peer, is tested in
//! `tests/k8s_vpp_e2e.rs`.

#[path = "common/apiserver.rs"]
mod apiserver;
mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use apiserver::{create_namespace, free_ports, install_crd, send, start_server};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::{Api, Client};
use wireguard_vpp::k8s::WireGuardVppTunnel;
use wireguard_vpp::k8s::controller::{self, ControllerOptions, ControllerTuning};
use wireguard_vpp::k8s::render::WireGuardConfig;
use wireguard_vpp::k8s::secrets::{KubeSecrets, SecretStore};
use wireguard_vpp::k8s::tunnel_runtime::{
    PeerStats, Phase, RuntimeError, TunnelRuntime, TunnelSpec, TunnelState,
};
use wireguard_vpp::wg::Key;

const PEER_KEY: &str = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=";
const OTHER_PEER_KEY: &str = "TrMvSoP4jYQlY6RIzBgbssQqY3vxI2Pi+y71lOWWXX0=";
const TIMEOUT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------------------
// Stand-ins.

#[derive(Debug, Clone, PartialEq)]
enum Call {
    Start {
        name: String,
        uid: u32,
        peers: usize,
    },
    Reconfigure {
        name: String,
        peers: usize,
    },
    Stop {
        name: String,
    },
}

/// Stands in for the data plane: records calls, and reports every started tunnel as running with a
/// fresh handshake on each peer and fixed counters.
///
/// Kept because these tests are about the controller's decisions, which a real data plane shows only
/// indirectly or cannot make at all: which runtime call each change leads to, exactly once (a WireGuard-only
/// edit is a `reconfigure`, a restart of the process one `start` and no `stop`, a conflicting tunnel no
/// `start` at all); a handshake and exact byte counters for peers that do not exist (192.0.2.1, made-up
/// keys), so that status, printer columns and metrics can be compared to fixed values; several tunnels
/// at once with no VPP, no root and no network namespaces, so they run wherever the API server does.
/// What the real data plane does with the same resources is tested by `tests/k8s_vpp_e2e.rs`.
#[derive(Default, Clone)]
struct RecordingRuntime {
    calls: Arc<Mutex<Vec<Call>>>,
    running: Arc<Mutex<HashMap<String, TunnelSpec>>>,
}

impl RecordingRuntime {
    fn calls(&self) -> Vec<Call> {
        self.calls.lock().expect("lock").clone()
    }
}

impl TunnelRuntime for RecordingRuntime {
    async fn start(&self, tunnel: TunnelSpec) -> Result<(), RuntimeError> {
        let mut running = self.running.lock().expect("lock");
        if running.get(tunnel.name()) == Some(&tunnel) {
            return Ok(());
        }
        self.calls.lock().expect("lock").push(Call::Start {
            name: tunnel.name().to_string(),
            uid: tunnel.config.uid,
            peers: tunnel.wireguard.peers.len(),
        });
        running.insert(tunnel.name().to_string(), tunnel);
        Ok(())
    }

    async fn reconfigure(
        &self,
        name: &str,
        wireguard: WireGuardConfig,
    ) -> Result<(), RuntimeError> {
        self.calls.lock().expect("lock").push(Call::Reconfigure {
            name: name.into(),
            peers: wireguard.peers.len(),
        });
        if let Some(tunnel) = self.running.lock().expect("lock").get_mut(name) {
            tunnel.wireguard = wireguard;
        }
        Ok(())
    }

    async fn stop(&self, name: &str) -> Result<(), RuntimeError> {
        self.calls
            .lock()
            .expect("lock")
            .push(Call::Stop { name: name.into() });
        self.running.lock().expect("lock").remove(name);
        Ok(())
    }

    async fn state(&self, name: &str) -> Option<TunnelState> {
        let running = self.running.lock().expect("lock");
        let tunnel = running.get(name)?;
        Some(TunnelState {
            phase: Phase::Running,
            vpp_configured: true,
            sw_if_index: Some(100 + tunnel.config.uid),
            memif_socket: format!("/run/wggo-vpp/{name}.sock"),
            listen_port: tunnel.wireguard.listen_port,
            error: None,
            peers: tunnel
                .wireguard
                .peers
                .iter()
                .map(|p| PeerStats {
                    public_key: p.public_key.to_base64(),
                    endpoint: p.endpoint.clone(),
                    last_handshake: Some(SystemTime::now() - Duration::from_secs(5)),
                    rx_bytes: 1000,
                    tx_bytes: 2000,
                })
                .collect(),
            counters: Vec::new(),
        })
    }
}

/// Stands in for the data plane where supervision is tested: each started tunnel is a real tokio task,
/// as in the real runtime, which the test can make panic, at once or as soon as it starts again. Its
/// `state` reports what the task's handle says, the way `LocalTunnels` does: Running while the task
/// runs, Failed with `TaskPanicked` and the panic's text (unscrubbed: the controller must not pass a
/// key on) once it panicked. It can also make `start` itself panic (a reconcile that panics), hold
/// `stop` (a controller that cannot take a dead task down), and keep a tunnel short of Running.
///
/// Kept because a real tunnel's task does not panic on purpose; everything the controller does with
/// what this reports is read back from the API server and the controller's HTTP answers.
#[derive(Default, Clone)]
struct TaskRuntime {
    inner: Arc<Mutex<Tasks>>,
    /// Stops of held tunnels wait for this.
    release: Arc<tokio::sync::Notify>,
}

#[derive(Default)]
struct Tasks {
    tunnels: HashMap<String, TaskTunnel>,
    /// When each tunnel was started, in order.
    starts: HashMap<String, Vec<Instant>>,
    /// How many more of a tunnel's tasks panic as soon as they start.
    panics_on_start: HashMap<String, u32>,
    /// How many more calls of `start` for a tunnel panic themselves.
    start_panics: HashMap<String, u32>,
    /// Tunnels whose `stop` waits for `release`.
    held_stops: Vec<String>,
    /// Tunnels reported WaitingForMemif for ever.
    never_up: Vec<String>,
}

struct TaskTunnel {
    spec: TunnelSpec,
    task: tokio::task::JoinHandle<()>,
    kill: Option<tokio::sync::oneshot::Sender<String>>,
    ended: Option<TunnelState>,
}

impl TaskRuntime {
    fn tasks(&self) -> std::sync::MutexGuard<'_, Tasks> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes the running task of `name` panic with a message carrying its private key.
    fn panic_now(&self, name: &str) {
        let mut tasks = self.tasks();
        let tunnel = tasks.tunnels.get_mut(name).expect("the tunnel runs");
        let message = panic_text(&tunnel.spec);
        if let Some(kill) = tunnel.kill.take() {
            let _ = kill.send(message);
        }
    }

    fn starts(&self, name: &str) -> Vec<Instant> {
        self.tasks().starts.get(name).cloned().unwrap_or_default()
    }
}

/// What a buggy tunnel task might panic with: its private key in the text.
fn panic_text(spec: &TunnelSpec) -> String {
    let key = spec
        .wireguard
        .private_key
        .as_ref()
        .map(|k| k.to_base64())
        .unwrap_or_default();
    format!("tunnel {} cannot use private key {key}", spec.name())
}

impl TunnelRuntime for TaskRuntime {
    async fn start(&self, tunnel: TunnelSpec) -> Result<(), RuntimeError> {
        let name = tunnel.name().to_string();
        let mut tasks = self.tasks();
        if let Some(left) = tasks.start_panics.get_mut(&name)
            && *left > 0
        {
            *left -= 1;
            let text = panic_text(&tunnel);
            drop(tasks);
            panic!("start: {text}");
        }
        if let Some(old) = tasks.tunnels.get(&name)
            && old.ended.is_none()
            && !old.task.is_finished()
        {
            return Ok(());
        }
        tasks
            .starts
            .entry(name.clone())
            .or_default()
            .push(Instant::now());
        let panic_at_once = match tasks.panics_on_start.get_mut(&name) {
            Some(left) if *left > 0 => {
                *left -= 1;
                Some(panic_text(&tunnel))
            }
            _ => None,
        };
        let (kill, killed) = tokio::sync::oneshot::channel::<String>();
        let task = tokio::spawn(async move {
            let message = match panic_at_once {
                Some(message) => message,
                None => match killed.await {
                    Ok(message) => message,
                    Err(_) => return,
                },
            };
            panic!("{message}");
        });
        tasks.tunnels.insert(
            name,
            TaskTunnel {
                spec: tunnel,
                task,
                kill: Some(kill),
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
        if let Some(tunnel) = self.tasks().tunnels.get_mut(name) {
            tunnel.spec.wireguard = wireguard;
        }
        Ok(())
    }

    async fn stop(&self, name: &str) -> Result<(), RuntimeError> {
        let held = self.tasks().held_stops.iter().any(|n| n == name);
        if held {
            self.release.notified().await;
        }
        if let Some(tunnel) = self.tasks().tunnels.remove(name) {
            tunnel.task.abort();
        }
        Ok(())
    }

    async fn state(&self, name: &str) -> Option<TunnelState> {
        use futures::FutureExt;
        let mut tasks = self.tasks();
        let never_up = tasks.never_up.iter().any(|n| n == name);
        let tunnel = tasks.tunnels.get_mut(name)?;
        if tunnel.ended.is_none()
            && tunnel.task.is_finished()
            && let Some(Err(join)) = (&mut tunnel.task).now_or_never()
        {
            tunnel.ended = Some(TunnelState {
                phase: Phase::Failed,
                vpp_configured: false,
                sw_if_index: None,
                memif_socket: format!("/run/wggo-vpp/{name}.sock"),
                listen_port: None,
                error: Some(RuntimeError {
                    reason: if join.is_panic() {
                        "TaskPanicked"
                    } else {
                        "TaskAborted"
                    },
                    message: format!("the tunnel's task failed: {join}"),
                }),
                peers: Vec::new(),
                counters: Vec::new(),
            });
        }
        if let Some(ended) = &tunnel.ended {
            return Some(ended.clone());
        }
        Some(TunnelState {
            phase: if never_up {
                Phase::WaitingForMemif
            } else {
                Phase::Running
            },
            vpp_configured: true,
            sw_if_index: Some(100 + tunnel.spec.config.uid),
            memif_socket: format!("/run/wggo-vpp/{name}.sock"),
            listen_port: tunnel.spec.wireguard.listen_port,
            error: None,
            peers: Vec::new(),
            counters: Vec::new(),
        })
    }
}

// ---------------------------------------------------------------------------------------------------
// The controller under test.

/// A running controller; stopped (by its shutdown signal, then aborted) on drop.
struct RunningController {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl RunningController {
    async fn shut_down(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = tokio::time::timeout(TIMEOUT, &mut self.task).await;
    }
}

impl Drop for RunningController {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts the controller as `controller::run` does, with Secrets from the API server.
fn start_controller(
    client: &Client,
    runtime: RecordingRuntime,
    gateways: &Path,
) -> RunningController {
    start_controller_with_metrics(client, runtime, gateways, None)
}

fn start_controller_with_metrics(
    client: &Client,
    runtime: RecordingRuntime,
    gateways: &Path,
    metrics_addr: Option<std::net::SocketAddr>,
) -> RunningController {
    let options = ControllerOptions {
        node_name: "node-a".into(),
        namespace: None,
        gateway_dir: gateways.to_path_buf(),
        env: wireguard_vpp::config::Env {
            memif_socket_dir: "/run/wggo-vpp".into(),
            ..Default::default()
        },
        metrics_addr,
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let client = client.clone();
    let task = tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.await;
        };
        let secrets = KubeSecrets::new(client.clone());
        controller::run_with(client, secrets, runtime, options, shutdown)
            .await
            .expect("controller runs");
    });
    RunningController {
        stop: Some(stop),
        task,
    }
}

/// Starts the controller with `runtime`, `tuning` and the metrics server on `metrics_addr`.
fn start_tuned_controller(
    client: &Client,
    runtime: impl TunnelRuntime,
    metrics_addr: std::net::SocketAddr,
    tuning: ControllerTuning,
) -> RunningController {
    let options = ControllerOptions {
        node_name: "node-a".into(),
        namespace: None,
        gateway_dir: gateway_dir(),
        env: wireguard_vpp::config::Env {
            memif_socket_dir: "/run/wggo-vpp".into(),
            ..Default::default()
        },
        metrics_addr: Some(metrics_addr),
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let client = client.clone();
    let task = tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.await;
        };
        let secrets = KubeSecrets::new(client.clone());
        controller::run_with_tuning(client, secrets, runtime, options, tuning, shutdown)
            .await
            .expect("controller runs");
    });
    RunningController {
        stop: Some(stop),
        task,
    }
}

/// A server with the CRD installed and the tests' namespace `dn42`; `None` (skip) when the server's binary
/// is missing outside CI.
async fn setup() -> Option<(apiserver::ApiServer, Client)> {
    let (server, client) = start_server().await?;
    install_crd(&client).await;
    create_namespace(&client, "dn42").await;
    Some((server, client))
}

/// Creates or updates (server-side apply) key `key` of Secret `dn42/name`.
async fn put_secret(client: &Client, name: &str, key: &str, value: &str) {
    apiserver::put_secret(client, "dn42", name, key, value.as_bytes()).await;
}

fn which(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

fn gateway_dir() -> PathBuf {
    common::project_root().join("examples/k8s/gateways")
}

/// A tunnel of node-a on bridge 4242 with one peer; `extra` is merged into its spec.
fn tunnel(name: &str, extra: serde_json::Value) -> serde_json::Value {
    let mut spec = serde_json::json!({
        "nodeName": "node-a",
        "bridgeID": 4242,
        "arp": {"respond": ["172.22.77.33/32"]},
        "wireguard": {
            "privateKeySecretRef": {"name": format!("{name}-key"), "key": "privateKey"},
            "peers": [{"publicKey": PEER_KEY, "endpoint": "192.0.2.1:51820", "allowedIPs": ["0.0.0.0/0"]}]
        }
    });
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            spec.insert(k.clone(), v.clone());
        }
    }
    serde_json::json!({
        "apiVersion": "wgvpp.io/v1alpha1",
        "kind": "WireGuardVppTunnel",
        "metadata": {"name": name, "namespace": "dn42"},
        "spec": spec
    })
}

async fn apply(
    api: &Api<WireGuardVppTunnel>,
    object: &serde_json::Value,
) -> Result<WireGuardVppTunnel, kube::Error> {
    let name = object["metadata"]["name"].as_str().expect("name");
    api.patch(name, &PatchParams::apply("e2e-test"), &Patch::Apply(object))
        .await
}

/// Waits until `check` holds for the tunnel, or fails with its last state.
async fn wait_for(
    api: &Api<WireGuardVppTunnel>,
    name: &str,
    what: &str,
    check: impl Fn(&WireGuardVppTunnel) -> bool,
) -> WireGuardVppTunnel {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let current = api.get_opt(name).await.expect("get tunnel");
        if let Some(tunnel) = &current
            && check(tunnel)
        {
            return tunnel.clone();
        }
        assert!(
            Instant::now() < deadline,
            "{name}: {what} not reached in time; last: {current:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn condition(tunnel: &WireGuardVppTunnel, kind: &str) -> Option<(String, String, String)> {
    let c = tunnel
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == kind)?;
    Some((c.status.clone(), c.reason.clone(), c.message.clone()))
}

fn is_ready(tunnel: &WireGuardVppTunnel) -> bool {
    condition(tunnel, "Ready").is_some_and(|c| c.0 == "True")
        && tunnel.status.as_ref().and_then(|s| s.observed_generation) == tunnel.metadata.generation
}

// ---------------------------------------------------------------------------------------------------
// Tests.

#[tokio::test]
async fn crd_applies_without_warnings_and_validates_samples() {
    let Some((_server, client)) = setup().await else {
        return;
    };
    let api: Api<WireGuardVppTunnel> = Api::namespaced(client.clone(), "dn42");

    let created = apply(&api, &tunnel("home", serde_json::json!({"uid": 3})))
        .await
        .expect("valid sample accepted");
    // Defaults come from the schema, applied by the server.
    // No default port in the schema: the controller allocates a free one on the node.
    assert_eq!(created.spec.wireguard.listen_port, None);
    assert!(created.spec.ndp.respond.is_empty());

    let refused = |object: serde_json::Value, expected: &'static str| {
        let api = api.clone();
        async move {
            let error = apply(&api, &object).await.expect_err(expected);
            let kube::Error::Api(status) = &error else {
                panic!("not an API error: {error}")
            };
            assert_eq!(status.code, 422, "{error}");
            assert!(
                status.message.contains(expected),
                "{:?} lacks {expected:?}",
                status.message
            );
        }
    };
    refused(
        tunnel(
            "bad-cidr",
            serde_json::json!({"arp": {"respond": ["172.22.77.333/32"]}}),
        ),
        "spec.arp.respond[0]: Invalid value: \"172.22.77.333/32\": must be an IPv4 CIDR",
    )
    .await;
    refused(
        tunnel(
            "bad-family",
            serde_json::json!({"ndp": {"respond": ["10.0.0.0/8"]}}),
        ),
        "must be an IPv6 CIDR",
    )
    .await;
    let mut bad_key = tunnel("bad-key", serde_json::json!({}));
    bad_key["spec"]["wireguard"]["peers"][0]["publicKey"] = "not-a-key".into();
    refused(
        bad_key,
        "spec.wireguard.peers[0].publicKey in body should match",
    )
    .await;
    refused(
        tunnel("bad-port", serde_json::json!({"uid": 0})),
        "spec.uid in body should be greater than or equal to 1",
    )
    .await;
    refused(
        tunnel("home", serde_json::json!({"uid": 4})),
        "uid is immutable once set: delete and re-create the tunnel to change it",
    )
    .await;
    refused(
        tunnel("home", serde_json::json!({"uid": 3, "bridgeID": 4243})),
        "bridgeID is immutable",
    )
    .await;
    let mut unknown = tunnel("unknown", serde_json::json!({}));
    unknown["spec"]["bogus"] = 1.into();
    // Typed clients drop unknown fields before sending; the server's strictness is checked raw.
    let request = http::Request::post(
        "/apis/wgvpp.io/v1alpha1/namespaces/dn42/wireguardvpptunnels?fieldValidation=Strict",
    )
    .header("content-type", "application/json")
    .body(serde_json::to_vec(&unknown).expect("json"))
    .expect("request");
    let (status, _, body) = send(&client, request).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("unknown field \"spec.bogus\""),
        "{body}"
    );
}

#[tokio::test]
async fn controller_reconciles_to_ready_and_kubectl_columns_show_it() {
    let Some((server, client)) = setup().await else {
        return;
    };
    let api: Api<WireGuardVppTunnel> = Api::namespaced(client.clone(), "dn42");
    let runtime = RecordingRuntime::default();
    let metrics_addr = std::net::SocketAddr::from(([127, 0, 0, 1], free_ports()));
    let controller =
        start_controller_with_metrics(&client, runtime.clone(), &gateway_dir(), Some(metrics_addr));

    apply(&api, &tunnel("home", serde_json::json!({})))
        .await
        .expect("created");
    // A tunnel of another node is not this controller's.
    apply(
        &api,
        &tunnel("elsewhere", serde_json::json!({"nodeName": "node-b"})),
    )
    .await
    .expect("created");
    let ready = wait_for(&api, "home", "Ready", is_ready).await;
    let status = ready.status.clone().expect("status");

    // uid allocated and recorded; private key generated into its Secret in the API server, owned by the
    // tunnel (the controller owner, by the resource's uid) and labelled as ours.
    assert_eq!(status.uid, Some(1));
    let secret = Api::<Secret>::namespaced(client.clone(), "dn42")
        .get("home-key")
        .await
        .expect("the generated Secret");
    let private = secret
        .data
        .as_ref()
        .and_then(|d| d.get("privateKey"))
        .map(|b| b.0.clone())
        .expect("generated private key");
    let owners = secret.metadata.owner_references.clone().unwrap_or_default();
    assert!(
        matches!(owners.as_slice(), [owner] if owner.kind == "WireGuardVppTunnel"
            && owner.name == "home"
            && owner.controller == Some(true)
            && Some(&owner.uid) == ready.metadata.uid.as_ref()),
        "{owners:#?}"
    );
    assert_eq!(
        secret
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("app.kubernetes.io/managed-by"))
            .map(String::as_str),
        Some("wireguard-vpp")
    );
    assert_eq!(secret.type_.as_deref(), Some("Opaque"));
    let public = Key::from_base64_text(&private)
        .expect("a key")
        .public_key()
        .to_base64();
    assert_eq!(status.public_key.as_deref(), Some(public.as_str()));
    let private_text = String::from_utf8_lossy(&private).trim().to_string();
    assert!(
        !serde_json::to_string(&ready)
            .expect("json")
            .contains(&private_text)
    );
    assert_eq!(status.listen_port, Some(51820));
    let memif = status.memif.clone().expect("memif status");
    assert_eq!(
        (memif.socket.as_str(), memif.sw_if_index),
        ("/run/wggo-vpp/home.sock", Some(101))
    );
    assert_eq!(status.peers.len(), 1);
    // Counters are metrics (below), not status; the handshake is a coarse age.
    assert_eq!(status.peers[0].handshake.as_deref(), Some("Within3m"));
    assert_eq!(status.latest_handshake.as_deref(), Some("Within3m"));
    assert_eq!(status.peers_summary.as_deref(), Some("1/1"));
    for kind in [
        "ConfigValid",
        "NoConflict",
        "VppConfigured",
        "MemifConnected",
        "Ready",
    ] {
        assert_eq!(
            condition(&ready, kind).map(|c| c.0),
            Some("True".into()),
            "{kind}"
        );
    }
    // The finalizer is on, and the status was written by server-side apply under our field manager.
    assert!(
        ready
            .metadata
            .finalizers
            .iter()
            .flatten()
            .any(|f| f == controller::FINALIZER)
    );
    let managed = ready.metadata.managed_fields.clone().unwrap_or_default();
    assert!(
        managed
            .iter()
            .any(|m| m.manager.as_deref() == Some(controller::FIELD_MANAGER)
                && m.operation.as_deref() == Some("Apply")
                && m.subresource.as_deref() == Some("status")),
        "{managed:#?}"
    );
    assert_eq!(
        runtime.calls(),
        [Call::Start {
            name: "home".into(),
            uid: 1,
            peers: 1
        }]
    );
    let elsewhere = api.get("elsewhere").await.expect("get");
    assert!(elsewhere.status.is_none() && elsewhere.metadata.finalizers.is_none());

    // What `kubectl get wgvt` prints: the server's Table with our printer columns.
    let request =
        http::Request::get("/apis/wgvpp.io/v1alpha1/namespaces/dn42/wireguardvpptunnels/home")
            .header("accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
            .body(Vec::new())
            .expect("request");
    let (code, _, table) = send(&client, request).await;
    assert_eq!(code, 200, "{table}");
    let columns: Vec<&str> = table["columnDefinitions"]
        .as_array()
        .expect("columns")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(
        columns,
        [
            "Name",
            "Ready",
            "Reason",
            "Peers",
            "Handshake",
            "Node",
            "Age",
            "Public Key",
            "Port"
        ]
    );
    // `-o wide` only: the public key and the port.
    let priorities: Vec<i64> = table["columnDefinitions"]
        .as_array()
        .expect("columns")
        .iter()
        .map(|c| c["priority"].as_i64().unwrap_or(0))
        .collect();
    assert_eq!(priorities, [0, 0, 0, 0, 0, 0, 0, 1, 1]);
    let cells = &table["rows"][0]["cells"];
    assert_eq!(
        (
            cells[0].as_str(),
            cells[1].as_str(),
            cells[2].as_str(),
            cells[3].as_str(),
            cells[5].as_str()
        ),
        (
            Some("home"),
            Some("True"),
            Some("Running"),
            Some("1/1"),
            Some("node-a")
        )
    );
    assert_eq!(cells[4].as_str(), Some("Within3m"), "handshake age");
    assert_eq!(
        (cells[7].as_str(), cells[8].as_i64()),
        (Some(public.as_str()), Some(51820))
    );

    // The same through kubectl itself, where the machine has it (the Table check above always runs).
    if which("kubectl") {
        let output = Command::new("kubectl")
            .args(["get", "wgvt", "-n", "dn42", "home"])
            .env("KUBECONFIG", server.kubeconfig())
            .output()
            .expect("run kubectl");
        let text = String::from_utf8_lossy(&output.stdout);
        println!("kubectl get wgvt -n dn42 home:\n{text}");
        let mut lines = text.lines();
        let header: Vec<&str> = lines
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .collect();
        assert_eq!(
            header,
            [
                "NAME",
                "READY",
                "REASON",
                "PEERS",
                "HANDSHAKE",
                "NODE",
                "AGE"
            ],
            "{text}"
        );
        let row: Vec<&str> = lines
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .collect();
        assert_eq!(&row[..4], ["home", "True", "Running", "1/1"], "{text}");
        assert_eq!(row[5], "node-a", "{text}");
        let wide = Command::new("kubectl")
            .args(["get", "wgvt", "-n", "dn42", "home", "-o", "wide"])
            .env("KUBECONFIG", server.kubeconfig())
            .output()
            .expect("run kubectl");
        let wide = String::from_utf8_lossy(&wide.stdout);
        let mut wide_lines = wide.lines();
        let wide_header = wide_lines.next().unwrap_or_default();
        assert!(
            wide_header.contains(" PUBLIC KEY ") && wide_header.ends_with(" PORT"),
            "{wide}"
        );
        let wide_row: Vec<&str> = wide_lines
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .collect();
        assert_eq!(
            wide_row[wide_row.len() - 2..],
            [public.as_str(), "51820"],
            "{wide}"
        );
    } else {
        println!("kubectl is not installed: printer columns checked through the Table API only");
    }

    // A transition event was published by the controller's recorder: an events.k8s.io/v1 Event about the
    // tunnel, which the core v1 API (what `kubectl describe` lists) shows too. No event carries the key.
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), "dn42");
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let list = events.list(&Default::default()).await.expect("events");
        if let Some(event) = list.items.iter().find(|e| {
            e.reason.as_deref() == Some("Running")
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("home")
        }) {
            assert_eq!(event.type_.as_deref(), Some("Normal"));
            assert_eq!(event.reporting_controller.as_deref(), Some("wireguard-vpp"));
            assert_eq!(event.reporting_instance.as_deref(), Some("node-a"));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no Running event: {:#?}",
            list.items
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let core_events: Api<k8s_openapi::api::core::v1::Event> =
        Api::namespaced(client.clone(), "dn42");
    let core = core_events
        .list(&Default::default())
        .await
        .expect("core events");
    assert!(
        core.items
            .iter()
            .any(|e| e.reason.as_deref() == Some("Running")
                && e.involved_object.name.as_deref() == Some("home")
                && e.involved_object.kind.as_deref() == Some("WireGuardVppTunnel")),
        "{:#?}",
        core.items
    );
    let all_events = serde_json::to_string(&core.items).expect("json");
    assert!(
        !all_events.contains(&private_text),
        "the key is in an event"
    );

    // Health, readiness and the exporter-compatible metrics.
    assert!(
        http_get(metrics_addr, "/healthz")
            .await
            .starts_with("HTTP/1.1 200")
    );
    // Readiness follows the first list of tunnels by up to half a second (the controller polls the
    // store's readiness), which can be later than the first reconcile.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut readyz = http_get(metrics_addr, "/readyz").await;
    while !readyz.starts_with("HTTP/1.1 200") && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        readyz = http_get(metrics_addr, "/readyz").await;
    }
    assert!(readyz.starts_with("HTTP/1.1 200"), "{readyz}");
    let metrics = http_get(metrics_addr, "/metrics").await;
    let labels = format!("interface=\"home\",public_key=\"{PEER_KEY}\",allowed_ips=\"0.0.0.0/0\"");
    assert!(
        metrics.contains(&format!("wireguard_sent_bytes_total{{{labels}}} 2000\n")),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!(
            "wireguard_received_bytes_total{{{labels}}} 1000\n"
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains("wireguard_latest_handshake_seconds{"),
        "{metrics}"
    );
    assert!(
        metrics.contains("wireguard_vpp_reconcile_total{result=\"ok\"}"),
        "{metrics}"
    );
    controller.shut_down().await;
}

/// A plain HTTP/1.1 GET; returns the whole response text.
async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect to the metrics port");
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("send request");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .await
        .expect("read response");
    response
}

#[tokio::test]
async fn deletion_stops_the_tunnel_through_the_finalizer() {
    let Some((_server, client)) = setup().await else {
        return;
    };
    let api: Api<WireGuardVppTunnel> = Api::namespaced(client.clone(), "dn42");
    let runtime = RecordingRuntime::default();
    let controller = start_controller(&client, runtime.clone(), &gateway_dir());
    apply(&api, &tunnel("home", serde_json::json!({"uid": 7})))
        .await
        .expect("created");
    wait_for(&api, "home", "Ready", is_ready).await;

    api.delete("home", &DeleteParams::default())
        .await
        .expect("delete");
    let deadline = Instant::now() + TIMEOUT;
    while api.get_opt("home").await.expect("get").is_some() {
        assert!(
            Instant::now() < deadline,
            "the resource was not released by the finalizer"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        runtime.calls(),
        [
            Call::Start {
                name: "home".into(),
                uid: 7,
                peers: 1
            },
            Call::Stop {
                name: "home".into()
            }
        ]
    );
    controller.shut_down().await;
}

#[tokio::test]
async fn conflicting_later_tunnel_is_reported_and_not_started() {
    let Some((_server, client)) = setup().await else {
        return;
    };
    let api: Api<WireGuardVppTunnel> = Api::namespaced(client.clone(), "dn42");
    let runtime = RecordingRuntime::default();
    let controller = start_controller(&client, runtime.clone(), &gateway_dir());
    apply(
        &api,
        &tunnel(
            "first",
            serde_json::json!({"arp": {"respond": ["172.22.77.32/30"]}}),
        ),
    )
    .await
    .expect("first");
    wait_for(&api, "first", "Ready", is_ready).await;
    // Creation times have a resolution of one second: make sure the second one is later.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let second = tunnel(
        "second",
        serde_json::json!({"wireguard": {
        "privateKeySecretRef": {"name": "second-key", "key": "privateKey"}, "listenPort": 51821}}),
    );
    apply(&api, &second).await.expect("second");
    let blocked = wait_for(&api, "second", "NoConflict=False", |t| {
        condition(t, "NoConflict").is_some_and(|c| c.0 == "False")
    })
    .await;
    let (_, reason, message) = condition(&blocked, "NoConflict").expect("condition");
    assert_eq!(reason, "Conflict");
    assert!(
        message.contains("dn42/first")
            && message.contains("172.22.77.33/32 overlaps 172.22.77.32/30"),
        "{message}"
    );
    assert_eq!(
        condition(&blocked, "Ready").map(|c| (c.0, c.1)),
        Some(("False".into(), "Conflict".into()))
    );
    assert_eq!(
        blocked.status.as_ref().and_then(|s| s.uid),
        Some(2),
        "uids stay unique on the node"
    );
    assert!(
        condition(&api.get("first").await.expect("first"), "Ready").is_some_and(|c| c.0 == "True")
    );
    assert!(
        runtime
            .calls()
            .iter()
            .all(|c| !matches!(c, Call::Start { name, .. } if name == "second"))
    );

    // Resolving the conflict starts the second tunnel.
    let mut fixed = second.clone();
    fixed["spec"]["arp"]["respond"] = serde_json::json!(["172.22.77.40/32"]);
    apply(&api, &fixed).await.expect("fixed");
    wait_for(&api, "second", "Ready", is_ready).await;
    controller.shut_down().await;
}

#[tokio::test]
async fn peer_edit_is_applied_without_restart_and_restart_adopts_state() {
    let Some((_server, client)) = setup().await else {
        return;
    };
    let api: Api<WireGuardVppTunnel> = Api::namespaced(client.clone(), "dn42");
    let runtime = RecordingRuntime::default();
    put_secret(
        &client,
        "home-key",
        "privateKey",
        "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=\n",
    )
    .await;
    let controller = start_controller(&client, runtime.clone(), &gateway_dir());
    apply(&api, &tunnel("home", serde_json::json!({})))
        .await
        .expect("created");
    let first = wait_for(&api, "home", "Ready", is_ready).await;
    assert_eq!(
        first.status.as_ref().and_then(|s| s.public_key.as_deref()),
        Some("HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=")
    );

    // A peer edit (new endpoint, second peer) reaches the runtime as a WireGuard diff: no stop, no start.
    let mut edited = tunnel("home", serde_json::json!({}));
    edited["spec"]["wireguard"]["peers"] = serde_json::json!([
        {"publicKey": PEER_KEY, "endpoint": "192.0.2.9:51820", "allowedIPs": ["0.0.0.0/0"]},
        {"publicKey": OTHER_PEER_KEY, "allowedIPs": ["fd00::/64"]}
    ]);
    apply(&api, &edited).await.expect("edited");
    let after_edit = wait_for(&api, "home", "Ready at generation 2", |t| {
        is_ready(t) && t.status.as_ref().is_some_and(|s| s.peers.len() == 2)
    })
    .await;
    assert_eq!(after_edit.metadata.generation, Some(2));
    assert_eq!(
        runtime.calls(),
        [
            Call::Start {
                name: "home".into(),
                uid: 1,
                peers: 1
            },
            Call::Reconfigure {
                name: "home".into(),
                peers: 2
            }
        ]
    );

    // A changed Secret is picked up, still without a restart (the private key is WireGuard-only).
    put_secret(
        &client,
        "home-key",
        "privateKey",
        &Key::generate_private().to_base64(),
    )
    .await;
    wait_for(&api, "home", "the new public key", |t| {
        t.status.as_ref().and_then(|s| s.public_key.as_deref())
            != Some("HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=")
    })
    .await;
    assert!(
        runtime
            .calls()
            .iter()
            .all(|c| !matches!(c, Call::Stop { .. }))
    );

    // A controller restart (new process: new runtime, same resources and Secrets) stops the tunnel on the
    // way out, starts it once, with the same uid, and leaves the status as it was.
    controller.shut_down().await;
    assert_eq!(
        runtime.calls().last(),
        Some(&Call::Stop {
            name: "home".into()
        }),
        "the tunnel was not stopped at shutdown"
    );
    let before = api.get("home").await.expect("get");
    let restarted_runtime = RecordingRuntime::default();
    let controller = start_controller(&client, restarted_runtime.clone(), &gateway_dir());
    let deadline = Instant::now() + TIMEOUT;
    while restarted_runtime.calls().is_empty() {
        assert!(
            Instant::now() < deadline,
            "the restarted controller did not start the tunnel"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        restarted_runtime.calls(),
        [Call::Start {
            name: "home".into(),
            uid: 1,
            peers: 2
        }]
    );
    let after = api.get("home").await.expect("get");
    assert_eq!(after.status.as_ref().and_then(|s| s.uid), Some(1));
    assert_eq!(
        after.status.as_ref().map(|s| &s.conditions),
        before.status.as_ref().map(|s| &s.conditions)
    );
    controller.shut_down().await;
}

#[tokio::test]
async fn config_errors_are_reported_and_concurrent_uids_stay_unique() {
    let Some((_server, client)) = setup().await else {
        return;
    };
    let api: Api<WireGuardVppTunnel> = Api::namespaced(client.clone(), "dn42");
    let runtime = RecordingRuntime::default();
    put_secret(
        &client,
        "long-memif",
        "secret",
        "a-secret-of-more-than-23-bytes",
    )
    .await;
    let controller = start_controller(&client, runtime.clone(), &gateway_dir());

    // Three tunnels at once, none with a uid: each gets its own.
    for (name, port, range) in [
        ("a", 51820, "172.22.77.1/32"),
        ("b", 51821, "172.22.77.2/32"),
        ("c", 51822, "172.22.77.3/32"),
    ] {
        let object = tunnel(
            name,
            serde_json::json!({
                "arp": {"respond": [range]},
                "wireguard": {"privateKeySecretRef": {"name": format!("{name}-key"), "key": "privateKey"},
                              "listenPort": port}
            }),
        );
        apply(&api, &object).await.expect("created");
    }
    let mut uids = Vec::new();
    for name in ["a", "b", "c"] {
        let ready = wait_for(&api, name, "Ready", is_ready).await;
        uids.push(ready.status.and_then(|s| s.uid).expect("uid"));
    }
    uids.sort_unstable();
    assert_eq!(uids, [1, 2, 3]);

    // A bridge without a gateway file, and a memif secret memif cannot hold: ConfigValid=False with
    // a message that says what to do, and nothing started.
    let mut nogw = tunnel("nogw", serde_json::json!({"bridgeID": 999}));
    nogw["spec"]["wireguard"]["listenPort"] = 51830.into();
    apply(&api, &nogw).await.expect("created");
    let nogw = wait_for(&api, "nogw", "ConfigValid=False", |t| {
        condition(t, "ConfigValid").is_some_and(|c| c.0 == "False")
    })
    .await;
    let (_, reason, message) = condition(&nogw, "ConfigValid").expect("condition");
    assert_eq!(reason, "GatewayFileInvalid");
    assert!(
        message.contains("999.json") && message.contains("every bridgeID needs a gateway file"),
        "{message}"
    );
    assert_eq!(
        condition(&nogw, "Ready").map(|c| (c.0, c.1)),
        Some(("False".into(), "GatewayFileInvalid".into()))
    );

    let mut long = tunnel(
        "long",
        serde_json::json!({"memifSecretRef": {"name": "long-memif", "key": "secret"}}),
    );
    long["spec"]["wireguard"]["listenPort"] = 51831.into();
    long["spec"]["arp"]["respond"] = serde_json::json!(["172.22.77.9/32"]);
    apply(&api, &long).await.expect("created");
    let long = wait_for(&api, "long", "ConfigValid=False", |t| {
        condition(t, "ConfigValid").is_some_and(|c| c.0 == "False")
    })
    .await;
    let (_, reason, message) = condition(&long, "ConfigValid").expect("condition");
    assert_eq!(reason, "InvalidMemifSecret");
    assert!(message.contains("at most 23"), "{message}");
    assert!(
        !message.contains("a-secret-of-more"),
        "the secret leaked into the status: {message}"
    );
    // A running tunnel whose edit stops rendering (a preshared key Secret that does not exist) keeps
    // running its last valid configuration; the status says why and that it still runs.
    let mut broken = tunnel(
        "a",
        serde_json::json!({
            "arp": {"respond": ["172.22.77.1/32"]},
            "wireguard": {"privateKeySecretRef": {"name": "a-key", "key": "privateKey"}, "listenPort": 51820}
        }),
    );
    broken["spec"]["wireguard"]["peers"] = serde_json::json!([{
        "publicKey": PEER_KEY, "allowedIPs": ["0.0.0.0/0"],
        "presharedKeySecretRef": {"name": "absent-psk", "key": "psk"}
    }]);
    apply(&api, &broken).await.expect("edited");
    let kept = wait_for(&api, "a", "ConfigValid=False", |t| {
        condition(t, "ConfigValid").is_some_and(|c| c.0 == "False")
    })
    .await;
    let (_, reason, message) = condition(&kept, "ConfigValid").expect("condition");
    assert_eq!(reason, "SecretMissing");
    assert!(
        message.contains("absent-psk")
            && message.contains("keeps running its last valid configuration"),
        "{message}"
    );
    assert_eq!(
        condition(&kept, "MemifConnected").map(|c| c.0),
        Some("True".into())
    );
    assert!(!runtime.calls().contains(&Call::Stop { name: "a".into() }));

    let started: Vec<String> = runtime
        .calls()
        .into_iter()
        .filter_map(|c| match c {
            Call::Start { name, .. } => Some(name),
            _ => None,
        })
        .collect();
    assert_eq!(started.len(), 3, "{started:?}");
    controller.shut_down().await;
}

/// The controller's Secret store ([`KubeSecrets`]) on the real server: reads `data` (also what was written
/// as `stringData`), maps a missing Secret to `None`, creates a generated key as a Secret owned by the
/// tunnel, adds a key to an existing Secret without touching its other keys or owners, and names the
/// Secret in errors.
#[tokio::test]
async fn the_secret_store_reads_and_writes_real_secrets() {
    let Some((_server, client)) = setup().await else {
        return;
    };
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "dn42");
    let store = KubeSecrets::new(client.clone());
    assert_eq!(store.get("dn42", "absent").await.expect("get"), None);
    assert_eq!(
        store.get("nowhere", "absent").await.expect("get"),
        None,
        "a namespace that does not exist has no Secrets"
    );

    put_secret(&client, "home-key", "privateKey", "key\n").await;
    // Read through the store's watch: there once the watch delivered it.
    let data = read_when_present(&store, "dn42", "home-key").await;
    assert_eq!(
        data.get("privateKey").map(Vec::as_slice),
        Some(&b"key\n"[..])
    );
    // `kubectl create secret --from-literal` and manifests with stringData: the server stores it in data.
    let string_data: Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "psk", "namespace": "dn42"},
        "stringData": {"psk": "text"}
    }))
    .expect("Secret");
    secrets
        .create(&Default::default(), &string_data)
        .await
        .expect("created");
    let data = read_when_present(&store, "dn42", "psk").await;
    assert_eq!(data.get("psk").map(Vec::as_slice), Some(&b"text"[..]));

    let owner = OwnerReference {
        api_version: "wgvpp.io/v1alpha1".into(),
        kind: "WireGuardVppTunnel".into(),
        name: "home".into(),
        uid: "0000-1111".into(),
        controller: Some(true),
        block_owner_deletion: None,
    };
    store
        .store_generated("dn42", "generated", "privateKey", b"key", owner.clone())
        .await
        .expect("created");
    let generated = secrets.get("generated").await.expect("the new Secret");
    assert_eq!(
        generated.data.as_ref().and_then(|d| d.get("privateKey")),
        Some(&ByteString(b"key".to_vec()))
    );
    assert_eq!(
        generated.metadata.owner_references.as_deref(),
        Some(&[owner.clone()][..])
    );
    assert_eq!(
        generated
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("app.kubernetes.io/managed-by"))
            .map(String::as_str),
        Some("wireguard-vpp")
    );

    // An existing Secret gets the key only when it carries our label (see
    // `generated_keys_go_only_into_our_secrets` for the unlabelled one).
    let labelled: Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "shared", "namespace": "dn42",
                     "labels": {"app.kubernetes.io/managed-by": "wireguard-vpp"}},
        "data": {"other": "a2VwdA=="}
    }))
    .expect("Secret");
    secrets
        .create(&Default::default(), &labelled)
        .await
        .expect("created");
    store
        .store_generated("dn42", "shared", "privateKey", b"key", owner.clone())
        .await
        .expect("key added");
    let shared = secrets.get("shared").await.expect("the Secret");
    let data = shared.data.clone().unwrap_or_default();
    assert_eq!(
        (data.get("other"), data.get("privateKey")),
        (
            Some(&ByteString(b"kept".to_vec())),
            Some(&ByteString(b"key".to_vec()))
        ),
        "{shared:#?}"
    );
    assert!(
        shared.metadata.owner_references.is_none(),
        "an existing Secret was taken over: {shared:#?}"
    );

    let error = store
        .store_generated("nowhere", "home-key", "privateKey", b"key", owner)
        .await
        .expect_err("no such namespace");
    assert!(
        error.to_string().starts_with("Secret nowhere/home-key: "),
        "{error}"
    );
    assert!(error.to_string().contains("not found"), "{error}");
}

// ---------------------------------------------------------------------------------------------------
// Supervision, probes and the metrics of tunnels that do not run.

/// A second tunnel of node-a that conflicts with `tunnel(..)` in nothing.
fn other_tunnel(name: &str, uid: u32, port: u16, respond: &str) -> serde_json::Value {
    let mut object = tunnel(
        name,
        serde_json::json!({"uid": uid, "arp": {"respond": [respond]}}),
    );
    object["spec"]["wireguard"]["listenPort"] = port.into();
    object
}

/// GETs `path` until `check` holds for the answer (or fails with the last one after `TIMEOUT`).
async fn http_until(
    addr: std::net::SocketAddr,
    path: &str,
    what: &str,
    check: impl Fn(&str) -> bool,
) -> String {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let answer = http_get(addr, path).await;
        if check(&answer) {
            return answer;
        }
        assert!(
            Instant::now() < deadline,
            "{path}: {what} not seen in time; last answer:\n{answer}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn ready_transition(tunnel: &WireGuardVppTunnel) -> String {
    tunnel
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
        .map(|c| format!("{:?}", c.last_transition_time))
        .unwrap_or_default()
}

/// A tunnel's task panics, and so do the next two it starts: each time the tunnel is marked Failed
/// (`TaskPanicked`, the panic's text without the key it carried), exported as down, and started again
/// after 1, 2, then 4 s; then it runs. The other tunnel of the node stays Ready throughout, and the
/// controller stays healthy and, past the startup grace, ready (the failure is reported).
#[tokio::test]
async fn a_panicking_tunnel_task_is_marked_failed_and_restarted_with_backoff() {
    let Some((_server, client)) = setup().await else {
        return;
    };
    let api: Api<WireGuardVppTunnel> = Api::namespaced(client.clone(), "dn42");
    let private = "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=";
    put_secret(&client, "home-key", "privateKey", private).await;
    let runtime = TaskRuntime::default();
    let metrics_addr = std::net::SocketAddr::from(([127, 0, 0, 1], free_ports()));
    let tuning = ControllerTuning {
        startup_grace: Duration::from_secs(1),
        ..ControllerTuning::default()
    };
    let controller = start_tuned_controller(&client, runtime.clone(), metrics_addr, tuning);
    apply(&api, &tunnel("home", serde_json::json!({"uid": 3})))
        .await
        .expect("created");
    apply(&api, &other_tunnel("work", 4, 51821, "172.22.77.44/32"))
        .await
        .expect("created");
    wait_for(&api, "home", "Ready", is_ready).await;
    let work = wait_for(&api, "work", "Ready", is_ready).await;
    let work_since = ready_transition(&work);

    runtime.tasks().panics_on_start.insert("home".into(), 2);
    runtime.panic_now("home");

    // Each death is in the status; the third one's delay (4 s) is long enough to look around.
    let third = wait_for(&api, "home", "the third death in the status", |t| {
        condition(t, "Ready").is_some_and(|(status, reason, message)| {
            status == "False" && reason == "TaskPanicked" && message.contains("failure 3 in a row")
        })
    })
    .await;
    let (_, _, message) = condition(&third, "Ready").expect("Ready");
    assert!(
        message.contains("panicked") && message.contains("tunnel home cannot use private key"),
        "{message}"
    );
    assert!(message.contains("starting it again in 4 s"), "{message}");
    assert!(
        !message.contains(private),
        "the key is in the status: {message}"
    );
    // Exported as down, with its restarts; the other tunnel is up.
    let metrics = http_until(metrics_addr, "/metrics", "home down", |m| {
        m.contains("wireguard_vpp_tunnel_up{interface=\"home\"} 0\n")
    })
    .await;
    assert!(
        metrics.contains("wireguard_vpp_tunnel_restarts_total{interface=\"home\"} 3\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("wireguard_vpp_tunnel_up{interface=\"work\"} 1\n"),
        "{metrics}"
    );
    // Past the 1 s startup grace a reported failure does not hold readiness back; health is fine.
    let ready = http_until(metrics_addr, "/readyz", "a reported failure", |r| {
        r.contains("dn42/home (TaskPanicked)")
    })
    .await;
    assert!(ready.starts_with("HTTP/1.1 200"), "{ready}");
    let health = http_get(metrics_addr, "/healthz").await;
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");

    // Then it runs again, started 1, 2 and 4 s after each death.
    wait_for(&api, "home", "Ready again", |t| {
        condition(t, "Ready").is_some_and(|c| c.0 == "True")
    })
    .await;
    let starts = runtime.starts("home");
    assert_eq!(starts.len(), 4, "{starts:?}");
    for (gap, at_least) in starts.windows(2).map(|w| w[1] - w[0]).zip([1, 2, 4]) {
        let at_least = Duration::from_secs(at_least);
        assert!(
            gap >= at_least && gap < at_least + Duration::from_secs(11),
            "a restart {gap:?} after a death, expected {at_least:?} (all: {starts:?})"
        );
    }
    http_until(metrics_addr, "/metrics", "home up", |m| {
        m.contains("wireguard_vpp_tunnel_up{interface=\"home\"} 1\n")
    })
    .await;

    // The other tunnel never left Ready and was never restarted.
    let work = api.get("work").await.expect("work");
    assert!(is_ready(&work));
    assert_eq!(ready_transition(&work), work_since);
    assert_eq!(runtime.starts("work").len(), 1);

    // The death is an event, without the key.
    let events: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(client.clone(), "dn42");
    let listed = events.list(&Default::default()).await.expect("events");
    assert!(
        listed
            .items
            .iter()
            .any(|e| e.reason.as_deref() == Some("TaskPanicked")
                && e.involved_object.name.as_deref() == Some("home")
                && e.type_.as_deref() == Some("Warning")),
        "{:#?}",
        listed.items
    );
    let text = serde_json::to_string(&listed.items).expect("json");
    assert!(!text.contains(private), "the key is in an event");
    assert!(!controller.task.is_finished(), "the controller ended");
    controller.shut_down().await;
}

/// A reconcile that panics (here in the runtime's `start`) is contained: that tunnel's status says so
/// (without the key the panic carried), it is retried with backoff until it works, and the controller
/// keeps serving the other tunnel, its probes and its metrics.
#[tokio::test]
async fn a_panicking_reconcile_is_contained_and_retried() {
    let Some((_server, client)) = setup().await else {
        return;
    };
    let api: Api<WireGuardVppTunnel> = Api::namespaced(client.clone(), "dn42");
    let private = "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=";
    put_secret(&client, "crash-key", "privateKey", private).await;
    let runtime = TaskRuntime::default();
    runtime.tasks().start_panics.insert("crash".into(), 2);
    let metrics_addr = std::net::SocketAddr::from(([127, 0, 0, 1], free_ports()));
    let controller = start_tuned_controller(
        &client,
        runtime.clone(),
        metrics_addr,
        ControllerTuning::default(),
    );
    apply(&api, &other_tunnel("crash", 5, 51822, "172.22.77.55/32"))
        .await
        .expect("created");
    let crashed = wait_for(&api, "crash", "the panic in the status", |t| {
        condition(t, "Ready").is_some_and(|c| c.0 == "False" && c.1 == "ReconcilePanicked")
    })
    .await;
    let (_, _, message) = condition(&crashed, "Ready").expect("Ready");
    assert!(
        message.contains("start: tunnel crash cannot use private key"),
        "{message}"
    );
    assert!(
        !message.contains(private),
        "the key is in the status: {message}"
    );

    // Meanwhile another tunnel is reconciled and runs.
    apply(&api, &tunnel("home", serde_json::json!({"uid": 3})))
        .await
        .expect("created");
    wait_for(&api, "home", "Ready", is_ready).await;
    let health = http_get(metrics_addr, "/healthz").await;
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    let metrics = http_get(metrics_addr, "/metrics").await;
    assert!(
        metrics.contains("wireguard_vpp_reconcile_total{result=\"panicked\"}"),
        "{metrics}"
    );

    // Retried with backoff until `start` stops panicking.
    wait_for(&api, "crash", "Ready after the panics", is_ready).await;
    assert_eq!(runtime.starts("crash").len(), 1);
    assert!(!controller.task.is_finished(), "the controller ended");
    controller.shut_down().await;
}

/// `/healthz` fails, naming the tunnel, when a dead tunnel task is not taken down for its restart in
/// time (here the runtime's `stop` hangs); once the controller gets through, it is healthy again.
#[tokio::test]
async fn healthz_fails_when_a_dead_task_is_not_restarted() {
    let Some((_server, client)) = setup().await else {
        return;
    };
    let api: Api<WireGuardVppTunnel> = Api::namespaced(client.clone(), "dn42");
    let runtime = TaskRuntime::default();
    let metrics_addr = std::net::SocketAddr::from(([127, 0, 0, 1], free_ports()));
    let tuning = ControllerTuning {
        restart_overdue: Duration::from_secs(2),
        ..ControllerTuning::default()
    };
    let controller = start_tuned_controller(&client, runtime.clone(), metrics_addr, tuning);
    apply(&api, &tunnel("home", serde_json::json!({"uid": 3})))
        .await
        .expect("created");
    wait_for(&api, "home", "Ready", is_ready).await;
    assert!(
        http_get(metrics_addr, "/healthz")
            .await
            .starts_with("HTTP/1.1 200")
    );

    runtime.tasks().held_stops.push("home".into());
    runtime.panic_now("home");
    let unhealthy = http_until(metrics_addr, "/healthz", "a failure", |h| {
        h.starts_with("HTTP/1.1 503")
    })
    .await;
    assert!(
        unhealthy
            .contains("- tunnel dn42/home: its task ended without being stopped (TaskPanicked)"),
        "{unhealthy}"
    );

    runtime.tasks().held_stops.clear();
    runtime.release.notify_waiters();
    wait_for(&api, "home", "Ready again", is_ready).await;
    http_until(metrics_addr, "/healthz", "healthy again", |h| {
        h.starts_with("HTTP/1.1 200")
    })
    .await;
    controller.shut_down().await;
}

/// `/readyz` holds back while a tunnel of the node is not Running within the startup grace, naming
/// it; after the grace, tunnels whose status says why they are not Running (one waiting for VPP, one
/// with no gateway for its bridge) no longer hold it back.
#[tokio::test]
async fn readyz_waits_out_the_startup_grace_then_takes_reports() {
    let Some((_server, client)) = setup().await else {
        return;
    };
    let api: Api<WireGuardVppTunnel> = Api::namespaced(client.clone(), "dn42");
    let runtime = TaskRuntime::default();
    runtime.tasks().never_up.push("slow".into());
    let metrics_addr = std::net::SocketAddr::from(([127, 0, 0, 1], free_ports()));
    let tuning = ControllerTuning {
        startup_grace: Duration::from_secs(8),
        ..ControllerTuning::default()
    };
    let controller = start_tuned_controller(&client, runtime.clone(), metrics_addr, tuning);
    apply(&api, &other_tunnel("slow", 5, 51822, "172.22.77.55/32"))
        .await
        .expect("created");
    let mut broken = other_tunnel("broken", 6, 51823, "172.22.77.66/32");
    broken["spec"]["bridgeID"] = 4243.into();
    apply(&api, &broken).await.expect("created");

    let waiting = http_until(metrics_addr, "/readyz", "the grace", |r| {
        r.contains("tunnel dn42/slow: not Running yet (WaitingForMemif)")
    })
    .await;
    assert!(waiting.starts_with("HTTP/1.1 503"), "{waiting}");
    assert!(waiting.contains("into the 8 s startup grace"), "{waiting}");

    let ready = http_until(metrics_addr, "/readyz", "ready", |r| {
        r.starts_with("HTTP/1.1 200")
    })
    .await;
    assert!(
        ready.contains("0 of 2 tunnels of node node-a Running"),
        "{ready}"
    );
    assert!(
        ready.contains("dn42/broken (") && ready.contains("dn42/slow (WaitingForVpp)"),
        "{ready}"
    );
    controller.shut_down().await;
}

/// `/healthz` fails when the watch of this node's tunnels delivers nothing for the bound: here the API
/// server is frozen (SIGSTOP), so the watch's connection and every new list hang. A quiet watch does
/// not fail it (a new list is made after a third of the bound), and it recovers once the server runs.
#[tokio::test]
async fn healthz_fails_while_the_watch_is_wedged_and_recovers() {
    let Some((server, client)) = setup().await else {
        return;
    };
    let api: Api<WireGuardVppTunnel> = Api::namespaced(client.clone(), "dn42");
    let metrics_addr = std::net::SocketAddr::from(([127, 0, 0, 1], free_ports()));
    let tuning = ControllerTuning {
        watch_stall: Some(Duration::from_secs(3)),
        ..ControllerTuning::default()
    };
    let controller =
        start_tuned_controller(&client, RecordingRuntime::default(), metrics_addr, tuning);
    apply(&api, &tunnel("home", serde_json::json!({"uid": 3})))
        .await
        .expect("created");
    wait_for(&api, "home", "Ready", is_ready).await;
    // Quiet for twice the bound: still healthy.
    let quiet_until = Instant::now() + Duration::from_secs(6);
    while Instant::now() < quiet_until {
        let health = http_get(metrics_addr, "/healthz").await;
        assert!(health.starts_with("HTTP/1.1 200"), "{health}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    server.pause();
    let wedged = http_until(metrics_addr, "/healthz", "a wedged watch", |h| {
        h.starts_with("HTTP/1.1 503")
    })
    .await;
    assert!(
        wedged
            .contains("- watch: no watch event and no successful list of this node's tunnels for"),
        "{wedged}"
    );
    server.resume();
    http_until(metrics_addr, "/healthz", "healthy again", |h| {
        h.starts_with("HTTP/1.1 200")
    })
    .await;
    controller.shut_down().await;
}

// ---------------------------------------------------------------------------------------------------
// The fields of issue 14: mtu, fwmark, peer names, per-family announcements, link-local /128, the
// condition schema. The API server checks each (schema and CEL); the controller carries each to the
// data plane.

/// Applies `object` and expects the API server to refuse it (422) with `expected` in its message.
async fn expect_refused(api: &Api<WireGuardVppTunnel>, object: serde_json::Value, expected: &str) {
    let error = apply(api, &object).await.expect_err(expected);
    let kube::Error::Api(status) = &error else {
        panic!("not an API error: {error}")
    };
    assert_eq!(status.code, 422, "{error}");
    assert!(
        status.message.contains(expected),
        "{:?} lacks {expected:?}",
        status.message
    );
}

#[tokio::test]
async fn new_fields_are_checked_by_the_api_server() {
    let Some((_server, client)) = setup().await else {
        return;
    };
    let api: Api<WireGuardVppTunnel> = Api::namespaced(client.clone(), "dn42");

    // Good values are kept as given.
    let mut good = tunnel(
        "fields",
        serde_json::json!({
            "mtu": 1400,
            "arp": {"respond": ["172.22.77.33/32"], "announceOnStartup": true},
            "ndp": {"respond": ["fd28:cb8f:4c92::/64", "fe80::42:1817:1/128"], "announceOnStartup": false}
        }),
    );
    good["spec"]["wireguard"]["fwmark"] = 0x4242.into();
    good["spec"]["wireguard"]["peers"][0]["name"] = "office-gw.v2_a".into();
    let created = apply(&api, &good).await.expect("good values accepted");
    assert_eq!(created.spec.mtu, Some(1400));
    assert_eq!(created.spec.wireguard.fwmark, Some(0x4242));
    assert_eq!(
        created.spec.wireguard.peers[0].name.as_deref(),
        Some("office-gw.v2_a")
    );
    assert!(created.spec.arp.announce_on_startup && !created.spec.ndp.announce_on_startup);
    for (mtu, expected) in [
        (
            1279,
            "spec.mtu in body should be greater than or equal to 1280",
        ),
        (
            9001,
            "spec.mtu in body should be less than or equal to 9000",
        ),
    ] {
        expect_refused(
            &api,
            tunnel("bad-mtu", serde_json::json!({"mtu": mtu})),
            expected,
        )
        .await;
    }
    for (mark, expected) in [
        (
            0_u64,
            "spec.wireguard.fwmark in body should be greater than or equal to 1",
        ),
        (
            1 << 32,
            "spec.wireguard.fwmark in body should be less than or equal to 4294967295",
        ),
    ] {
        let mut bad = tunnel("bad-mark", serde_json::json!({}));
        bad["spec"]["wireguard"]["fwmark"] = mark.into();
        expect_refused(&api, bad, expected).await;
    }
    for (name, expected) in [
        (
            "office gw",
            "spec.wireguard.peers[0].name in body should match",
        ),
        ("-gw", "spec.wireguard.peers[0].name in body should match"),
        ("x\"}", "spec.wireguard.peers[0].name in body should match"),
        (
            &"x".repeat(64) as &str,
            "spec.wireguard.peers[0].name: Too long: may not be",
        ),
        (
            "",
            "spec.wireguard.peers[0].name in body should be at least 1 chars long",
        ),
    ] {
        let mut bad = tunnel("bad-name", serde_json::json!({}));
        bad["spec"]["wireguard"]["peers"][0]["name"] = name.into();
        expect_refused(&api, bad, expected).await;
    }
    // CEL: a link-local entry is a single address; other IPv6 ranges may be wider.
    for entry in ["fe80::/64", "fe80::42:1817:1/127", "fe80::/10"] {
        expect_refused(
            &api,
            tunnel(
                "bad-link-local",
                serde_json::json!({"ndp": {"respond": ["fd00::/64", entry]}}),
            ),
            &format!(
                "spec.ndp.respond[1]: Invalid value: \"{entry}\": a link-local entry must be a single address (/128)"
            ),
        )
        .await;
    }

    // The status's conditions have metav1.Condition's constraints.
    let condition = |overrides: serde_json::Value| {
        let mut c = serde_json::json!({
            "type": "Ready", "status": "False", "reason": "WaitingForVpp",
            "message": "waiting", "lastTransitionTime": "2026-01-01T00:00:00Z"
        });
        for (k, v) in overrides.as_object().expect("object") {
            c[k] = v.clone();
        }
        serde_json::json!({"status": {"conditions": [c]}})
    };
    let patch_status = |status: serde_json::Value| {
        let api = api.clone();
        async move {
            api.patch_status("fields", &PatchParams::default(), &Patch::Merge(&status))
                .await
        }
    };
    patch_status(condition(serde_json::json!({})))
        .await
        .expect("a well-formed condition is accepted");
    let long = "m".repeat(32769);
    // (the change, the field and value the server names, what it says of the value)
    for (overrides, field, rule) in [
        (
            serde_json::json!({"status": "Maybe"}),
            "status.conditions[0].status: Unsupported value: \"Maybe\"",
            "supported values: \"True\", \"False\", \"Unknown\"",
        ),
        (
            serde_json::json!({"type": "Ready now"}),
            "status.conditions[0].type: Invalid value: \"Ready now\"",
            "should match",
        ),
        (
            serde_json::json!({"reason": "not camel case"}),
            "status.conditions[0].reason: Invalid value: \"not camel case\"",
            "should match",
        ),
        (
            serde_json::json!({"reason": ""}),
            "status.conditions[0].reason: Invalid value: \"\"",
            "should be at least 1 chars long",
        ),
        (
            serde_json::json!({"message": long}),
            "status.conditions[0].message: Too long",
            "32768",
        ),
        (
            serde_json::json!({"lastTransitionTime": "yesterday"}),
            "status.conditions[0].lastTransitionTime: Invalid value: \"yesterday\"",
            "date-time",
        ),
    ] {
        let error = patch_status(condition(overrides)).await.expect_err(field);
        let kube::Error::Api(status) = &error else {
            panic!("not an API error: {error}")
        };
        assert_eq!(status.code, 422, "{error}");
        assert!(
            status.message.contains(field) && status.message.contains(rule),
            "{:?} lacks {field:?} or {rule:?}",
            status.message
        );
    }
}

/// `mtu` and the announce flags reach the runtime in the tunnel's configuration: the MTU is the one
/// the daemon uses whatever the BVI's, an MTU edit restarts the tunnel (other VPP-side settings), and
/// a peer's name is a WireGuard-side edit that keeps it running and labels its metrics.
#[tokio::test]
async fn mtu_and_announcements_reach_the_runtime_and_names_label_metrics() {
    let Some((_server, client)) = setup().await else {
        return;
    };
    let api: Api<WireGuardVppTunnel> = Api::namespaced(client.clone(), "dn42");
    let runtime = RecordingRuntime::default();
    let metrics_addr = std::net::SocketAddr::from(([127, 0, 0, 1], free_ports()));
    let controller =
        start_controller_with_metrics(&client, runtime.clone(), &gateway_dir(), Some(metrics_addr));
    let spec = |mtu: u16, name: &str| {
        let mut object = tunnel(
            "home",
            serde_json::json!({
                "uid": 3,
                "mtu": mtu,
                "ndp": {"respond": ["fd28:cb8f:4c92::33/128"], "announceOnStartup": true}
            }),
        );
        object["spec"]["wireguard"]["peers"][0]["name"] = name.into();
        object
    };
    apply(&api, &spec(1400, "office-gw"))
        .await
        .expect("created");
    wait_for(&api, "home", "Ready", is_ready).await;
    let running = |runtime: &RecordingRuntime| {
        runtime
            .running
            .lock()
            .expect("lock")
            .get("home")
            .cloned()
            .expect("the tunnel runs")
    };
    let config = running(&runtime).config;
    assert_eq!(config.mtu, Some(1400));
    assert_eq!(
        wireguard_vpp::tunnel::settings::tunnel_mtu(&config, Some(9000)),
        1400,
        "the spec's MTU wins over the BVI's"
    );
    assert_eq!(
        config.announce,
        wireguard_vpp::config::Announce {
            arp: false,
            ndp: true
        },
        "each family's flag on its own"
    );
    let labels = format!(
        "interface=\"home\",public_key=\"{PEER_KEY}\",allowed_ips=\"0.0.0.0/0\",friendly_name=\"office-gw\""
    );
    let metrics = http_until(metrics_addr, "/metrics", "the friendly name", |m| {
        m.contains(&labels)
    })
    .await;
    assert!(
        metrics.contains(&format!("wireguard_sent_bytes_total{{{labels}}} 2000\n")),
        "{metrics}"
    );

    // A new name: reconfigured, not restarted, and the label follows.
    apply(&api, &spec(1400, "office-gw-2"))
        .await
        .expect("renamed");
    http_until(metrics_addr, "/metrics", "the new friendly name", |m| {
        m.contains("friendly_name=\"office-gw-2\"") && !m.contains("friendly_name=\"office-gw\"")
    })
    .await;
    assert!(
        !runtime
            .calls()
            .iter()
            .any(|c| matches!(c, Call::Stop { .. })),
        "{:?}",
        runtime.calls()
    );
    // A new MTU: the tunnel is started again with it.
    apply(&api, &spec(1380, "office-gw-2"))
        .await
        .expect("new MTU");
    let deadline = Instant::now() + TIMEOUT;
    while running(&runtime).config.mtu != Some(1380) {
        assert!(Instant::now() < deadline, "{:?}", runtime.calls());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let calls = runtime.calls();
    assert!(
        calls
            .iter()
            .filter(|c| matches!(c, Call::Start { .. }))
            .count()
            == 2,
        "{calls:?}"
    );
    controller.shut_down().await;
}

/// Starts the controller with `runtime` and the original's environment `env`.
fn start_controller_with_env(
    client: &Client,
    runtime: impl TunnelRuntime,
    env: wireguard_vpp::config::Env,
    metrics_addr: std::net::SocketAddr,
) -> RunningController {
    let options = ControllerOptions {
        node_name: "node-a".into(),
        namespace: None,
        gateway_dir: gateway_dir(),
        env,
        metrics_addr: Some(metrics_addr),
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let client = client.clone();
    let task = tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.await;
        };
        let secrets = KubeSecrets::new(client.clone());
        controller::run_with(client, secrets, runtime, options, shutdown)
            .await
            .expect("controller runs");
    });
    RunningController {
        stop: Some(stop),
        task,
    }
}

/// The device's own configuration as `wg show` reads it: the UAPI `get=1` dump of `socket`.
async fn uapi_dump(socket: &Path) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::UnixStream::connect(socket)
        .await
        .expect("connect to the UAPI socket");
    stream.write_all(b"get=1\n\n").await.expect("send get");
    let mut dump = Vec::new();
    let mut buf = [0u8; 4096];
    while !dump.ends_with(b"\n\n") {
        let n = tokio::time::timeout(TIMEOUT, stream.read(&mut buf))
            .await
            .expect("a UAPI answer in time")
            .expect("read");
        assert!(n > 0, "the UAPI socket closed early: {dump:?}");
        dump.extend_from_slice(&buf[..n]);
    }
    String::from_utf8(dump).expect("UTF-8")
}

/// An IPv4 packet of `total_len` bytes with DF set, from the BVI's 10.127.111.1 to 192.0.2.99 (routed
/// to the peer), in a frame from the gateway's MAC to the tunnel's `self_mac`.
fn df_frame(self_mac: [u8; 6], total_len: u16) -> Vec<u8> {
    let mut frame = Vec::with_capacity(14 + usize::from(total_len));
    frame.extend_from_slice(&self_mac);
    frame.extend_from_slice(&[0x42; 6]);
    frame.extend_from_slice(&[0x08, 0x00]);
    let mut ip = vec![0u8; usize::from(total_len)];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&total_len.to_be_bytes());
    ip[6] = 0x40; // DF
    ip[8] = 64;
    ip[9] = 17; // UDP
    ip[12..16].copy_from_slice(&[10, 127, 111, 1]);
    ip[16..20].copy_from_slice(&[192, 0, 2, 99]);
    let sum = ip[..20]
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum::<u32>();
    let folded = (sum & 0xffff) + (sum >> 16);
    let folded = (folded & 0xffff) + (folded >> 16);
    ip[10..12].copy_from_slice(&(!(folded as u16)).to_be_bytes());
    frame.extend_from_slice(&ip);
    frame
}

/// `fwmark`, `mtu`, the announce flags and a peer's name through the controller into the real runtime
/// (`LocalTunnels`, VPP's API off, this test playing VPP's memif client): on connection the tunnel
/// announces only the family whose flag is on; the WireGuard device's own UAPI dump shows the mark,
/// and an edit changes it on the running device; the tunnel answers a packet one byte above the
/// spec's MTU with ICMP "fragmentation needed" naming that MTU, and passes one of exactly the MTU; the
/// device's peer counters carry the name as `friendly_name`. Setting a mark needs CAP_NET_ADMIN.
#[tokio::test]
async fn fwmark_mtu_and_names_reach_the_data_plane() {
    use wireguard_vpp::memif::{ClientConfig, Connection, Frame};
    if !common::require_root("fwmark on the tunnel's UDP socket (CAP_NET_ADMIN)") {
        return;
    }
    let Some((_server, client)) = setup().await else {
        return;
    };
    let api: Api<WireGuardVppTunnel> = Api::namespaced(client.clone(), "dn42");
    let dir = tempfile::tempdir().expect("tempdir");
    let uapi_dir = dir.path().join("uapi");
    let runtime = wireguard_vpp::k8s::local_tunnels::LocalTunnels::new(&uapi_dir, false)
        .with_memif_wait(Duration::from_secs(300));
    let env = wireguard_vpp::config::Env {
        memif_socket_dir: dir.path().to_path_buf(),
        ..Default::default()
    };
    let metrics_addr = std::net::SocketAddr::from(([127, 0, 0, 1], free_ports()));
    let controller = start_controller_with_env(&client, runtime, env, metrics_addr);
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("a free UDP port")
        .port();
    let with_mark = |mark: u32| {
        let mut object = tunnel(
            "marked",
            serde_json::json!({
                "uid": 5,
                "mtu": 1400,
                "arp": {"respond": ["172.22.77.33/32"], "announceOnStartup": false},
                "ndp": {"respond": ["fd28:cb8f:4c92::33/128"], "announceOnStartup": true}
            }),
        );
        object["spec"]["wireguard"]["listenPort"] = port.into();
        object["spec"]["wireguard"]["fwmark"] = mark.into();
        object["spec"]["wireguard"]["peers"][0]["name"] = "office-gw".into();
        object
    };
    apply(&api, &with_mark(0x4242)).await.expect("created");

    // VPP's side: connect to the tunnel's memif socket as VPP would.
    let memif_socket = dir.path().join("marked.sock");
    let deadline = Instant::now() + TIMEOUT;
    let connection = loop {
        let config = ClientConfig {
            id: 5,
            app_name: "VPP stand-in".into(),
            if_name: "memif5/5".into(),
            ..ClientConfig::default()
        };
        match Connection::connect(&memif_socket, &config).await {
            Ok(connection) => break connection,
            Err(error) => assert!(
                Instant::now() < deadline,
                "no memif connection: {error}; tunnel: {:#?}",
                api.get("marked").await
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let (control, rx, tx) = connection.split();
    let (mut rx, mut tx) = (
        rx.into_iter().next().expect("one RX queue"),
        tx.into_iter().next().expect("one TX queue"),
    );
    // With VPP's API off, VPP's objects are never reported made: MemifConnected is as far as it goes.
    wait_for(&api, "marked", "MemifConnected", |t| {
        condition(t, "MemifConnected").is_some_and(|c| c.0 == "True")
    })
    .await;

    // The announcement on connection is NDP's only: an unsolicited NA for the IPv6 address, and no
    // gratuitous ARP for the IPv4 one (its flag is off).
    let mut frames = Frame::batch(8, 2048);
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !seen
        .iter()
        .any(|f: &Vec<u8>| f.get(12..14) == Some(&[0x86, 0xdd]) && f.get(54) == Some(&136))
    {
        assert!(
            Instant::now() < deadline,
            "no unsolicited NA; frames: {seen:?}"
        );
        let n = rx.rx_burst(&mut frames);
        seen.extend(frames[..n].iter().map(|f| f.as_slice().to_vec()));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let n = rx.rx_burst(&mut frames);
    seen.extend(frames[..n].iter().map(|f| f.as_slice().to_vec()));
    assert!(
        !seen.iter().any(|f| f.get(12..14) == Some(&[0x08, 0x06])),
        "a gratuitous ARP with arp.announceOnStartup false: {seen:?}"
    );

    let socket = uapi_dir.join("marked.sock");
    let dump = uapi_dump(&socket).await;
    assert!(dump.lines().any(|l| l == "fwmark=16962"), "{dump}");
    assert!(
        dump.lines().any(|l| l == format!("listen_port={port}")),
        "{dump}"
    );

    // The MTU as the data plane applies it: 1401 bytes get "fragmentation needed, MTU 1400".
    let self_mac = [0x98, 0xd2, 0x93, 0, 0, 5];
    for (len, answered) in [(1400, false), (1401, true)] {
        assert_eq!(tx.tx_burst(&[df_frame(self_mac, len)]), 1, "sent {len}");
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut icmp = None;
        while icmp.is_none() && Instant::now() < deadline {
            let n = rx.rx_burst(&mut frames);
            icmp = frames[..n]
                .iter()
                .map(|f| f.as_slice().to_vec())
                .find(|f| f.get(12..14) == Some(&[0x08, 0x00]) && f.get(23) == Some(&1));
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        match (answered, icmp) {
            (false, None) => {}
            (true, Some(icmp)) => {
                // Ethernet 14 + IPv4 20: type 3 code 4, next-hop MTU in bytes 6..8.
                assert_eq!((icmp[34], icmp[35]), (3, 4), "{icmp:?}");
                assert_eq!(u16::from_be_bytes([icmp[40], icmp[41]]), 1400, "{icmp:?}");
            }
            (answered, icmp) => panic!("{len} bytes: answer expected {answered}, got {icmp:?}"),
        }
    }

    // An edit of the mark reaches the running device (a WireGuard-side change).
    apply(&api, &with_mark(7)).await.expect("new mark");
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let dump = uapi_dump(&socket).await;
        if dump.lines().any(|l| l == "fwmark=7") {
            break;
        }
        assert!(Instant::now() < deadline, "no fwmark=7 in:\n{dump}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let labels = format!(
        "interface=\"marked\",public_key=\"{PEER_KEY}\",allowed_ips=\"0.0.0.0/0\",friendly_name=\"office-gw\""
    );
    http_until(
        metrics_addr,
        "/metrics",
        "the device's peer with its name",
        |m| m.contains(&format!("wireguard_sent_bytes_total{{{labels}}}")),
    )
    .await;

    api.delete("marked", &DeleteParams::default())
        .await
        .expect("deleted");
    let deadline = Instant::now() + TIMEOUT;
    while socket.exists() {
        assert!(Instant::now() < deadline, "the tunnel was not stopped");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    control.disconnect("the VPP stand-in goes away").await;
    controller.shut_down().await;
}

// ---------------------------------------------------------------------------------------------------
// Load and scale: what the controller costs the API server, read from the server's own counters.

/// A Secret read through [`KubeSecrets`], once its watch has delivered it.
async fn read_when_present(
    store: &KubeSecrets,
    namespace: &str,
    name: &str,
) -> std::collections::BTreeMap<String, Vec<u8>> {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if let Some(data) = store.get(namespace, name).await.expect("get") {
            return data;
        }
        assert!(
            Instant::now() < deadline,
            "Secret {namespace}/{name} not seen"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The API server's `apiserver_request_total` for `verb` on `resource` (`"secrets"`,
/// `"wireguardvpptunnels/status"`), summed over the other labels; only `scope` and `code` when not
/// empty.
async fn requests(client: &Client, verb: &str, resource: &str, scope: &str, code: &str) -> u64 {
    let text = client
        .request_text(
            http::Request::get("/metrics")
                .body(Vec::new())
                .expect("request"),
        )
        .await
        .expect("the API server's metrics");
    let (resource, subresource) = resource.split_once('/').unwrap_or((resource, ""));
    let mut total = 0.0;
    for line in text.lines() {
        let Some((labels, value)) = line
            .strip_prefix("apiserver_request_total{")
            .and_then(|rest| rest.rsplit_once("} "))
        else {
            continue;
        };
        let has = |name: &str, wanted: &str| {
            wanted.is_empty() || labels.contains(&format!("{name}=\"{wanted}\""))
        };
        if has("verb", verb)
            && labels.contains(&format!(",resource=\"{resource}\""))
            && labels.contains(&format!("subresource=\"{subresource}\""))
            && has("scope", scope)
            && has("code", code)
        {
            total += value.trim().parse::<f64>().expect("a number");
        }
    }
    total as u64
}

/// The controller's own count of successful reconciles, from its `/metrics` (0 before it serves).
async fn reconciles_ok(addr: std::net::SocketAddr) -> u64 {
    if tokio::net::TcpStream::connect(addr).await.is_err() {
        return 0;
    }
    let metrics = http_get(addr, "/metrics").await;
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("wireguard_vpp_reconcile_total{result=\"ok\"} "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

/// Waits until the controller has reconciled successfully `more` more times than `since`.
async fn wait_for_reconciles(addr: std::net::SocketAddr, since: u64, more: u64) {
    let deadline = Instant::now() + TIMEOUT;
    while reconciles_ok(addr).await < since + more {
        assert!(
            Instant::now() < deadline,
            "the controller did not reconcile"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// [`RecordingRuntime`] with traffic: every look at a tunnel's state sees its peers' counters grown;
/// the age of their latest handshake and their endpoint are set by the test, and `roaming` gives each
/// look a new endpoint (a peer that changes its address all the time).
#[derive(Default, Clone)]
struct TrafficRuntime {
    inner: RecordingRuntime,
    looks: Arc<std::sync::atomic::AtomicU64>,
    handshake_age: Arc<Mutex<Duration>>,
    endpoint: Arc<Mutex<Option<String>>>,
    roaming: Arc<std::sync::atomic::AtomicBool>,
}

impl TunnelRuntime for TrafficRuntime {
    async fn start(&self, tunnel: TunnelSpec) -> Result<(), RuntimeError> {
        self.inner.start(tunnel).await
    }

    async fn reconfigure(
        &self,
        name: &str,
        wireguard: WireGuardConfig,
    ) -> Result<(), RuntimeError> {
        self.inner.reconfigure(name, wireguard).await
    }

    async fn stop(&self, name: &str) -> Result<(), RuntimeError> {
        self.inner.stop(name).await
    }

    async fn state(&self, name: &str) -> Option<TunnelState> {
        use std::sync::atomic::Ordering;
        let mut state = self.inner.state(name).await?;
        let looks = self.looks.fetch_add(1, Ordering::Relaxed) + 1;
        let age = *self.handshake_age.lock().expect("lock");
        let endpoint = self.endpoint.lock().expect("lock").clone();
        for peer in &mut state.peers {
            peer.rx_bytes = 1000 * looks;
            peer.tx_bytes = 2000 * looks;
            peer.last_handshake = Some(SystemTime::now() - age);
            if self.roaming.load(Ordering::Relaxed) {
                peer.endpoint = Some(format!("192.0.2.{}:{}", 1 + looks % 200, 1024 + looks));
            } else if endpoint.is_some() {
                peer.endpoint = endpoint.clone();
            }
        }
        Some(state)
    }
}

/// Counters and handshakes that move within their age bucket are not written to the status (the
/// tunnel's resourceVersion and the server's count of status writes stay put over many reconciles,
/// while the controller's metrics show the counters growing); a handshake that ages into the next
/// bucket, and a peer that roams, are written.
#[tokio::test]
async fn status_is_written_only_when_a_condition_an_endpoint_or_a_handshake_bucket_changes() {
    let Some((_server, client)) = setup().await else {
        return;
    };
    let api: Api<WireGuardVppTunnel> = Api::namespaced(client.clone(), "dn42");
    let runtime = TrafficRuntime::default();
    *runtime.handshake_age.lock().expect("lock") = Duration::from_secs(5);
    let metrics_addr = std::net::SocketAddr::from(([127, 0, 0, 1], free_ports()));
    let tuning = ControllerTuning {
        recheck: Duration::from_millis(200),
        ..ControllerTuning::default()
    };
    let controller = start_tuned_controller(&client, runtime.clone(), metrics_addr, tuning);
    apply(&api, &tunnel("home", serde_json::json!({"uid": 3})))
        .await
        .expect("created");
    let ready = wait_for(&api, "home", "Ready with a recent handshake", |t| {
        is_ready(t)
            && t.status
                .as_ref()
                .and_then(|s| s.latest_handshake.as_deref())
                == Some("Within3m")
    })
    .await;
    let version = ready.metadata.resource_version.clone();
    let writes = requests(&client, "APPLY", "wireguardvpptunnels/status", "", "").await;
    let received = |metrics: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with("wireguard_received_bytes_total{interface=\"home\""))
            .map(str::to_string)
    };
    let counters_before = received(&http_get(metrics_addr, "/metrics").await);

    // Ten reconciles, each seeing more traffic and a fresh handshake.
    wait_for_reconciles(metrics_addr, reconciles_ok(metrics_addr).await, 10).await;
    let counters_after = received(&http_get(metrics_addr, "/metrics").await);
    assert!(
        counters_before.is_some() && counters_before != counters_after,
        "the metrics do not show the traffic: {counters_before:?} {counters_after:?}"
    );
    let still = api.get("home").await.expect("get");
    assert_eq!(
        still.metadata.resource_version, version,
        "the status was rewritten while only counters moved"
    );
    assert_eq!(
        requests(&client, "APPLY", "wireguardvpptunnels/status", "", "").await,
        writes
    );
    let text = serde_json::to_string(&still.status).expect("json");
    assert!(
        !text.contains("Bytes") && !text.contains("HandshakeTime"),
        "{text}"
    );

    // The handshake ages past 3 minutes: the bucket and the summary change, and are written.
    *runtime.handshake_age.lock().expect("lock") = Duration::from_secs(300);
    let stale = wait_for(&api, "home", "the Within10m bucket", |t| {
        t.status.as_ref().is_some_and(|s| {
            s.latest_handshake.as_deref() == Some("Within10m")
                && s.peers_summary.as_deref() == Some("0/1")
                && s.peers.first().and_then(|p| p.handshake.as_deref()) == Some("Within10m")
        })
    })
    .await;
    assert_ne!(stale.metadata.resource_version, version);
    // The peer roams: the new endpoint is written.
    *runtime.endpoint.lock().expect("lock") = Some("192.0.2.77:4500".into());
    wait_for(&api, "home", "the new endpoint", |t| {
        t.status
            .as_ref()
            .and_then(|s| s.peers.first()?.endpoint.clone())
            == Some("192.0.2.77:4500".into())
    })
    .await;
    controller.shut_down().await;
}

/// The controller's own status writes do not trigger reconciles. Here every look at the tunnel finds
/// its peer at a new address, so each reconcile writes the status: were a status write to trigger the
/// next reconcile, the resourceVersion would never settle. Periodic looks are off (one hour), so only
/// the spec, the finalizer and Secrets trigger; a spec edit still does.
#[tokio::test]
async fn our_own_status_writes_do_not_trigger_reconciles() {
    let Some((_server, client)) = setup().await else {
        return;
    };
    let api: Api<WireGuardVppTunnel> = Api::namespaced(client.clone(), "dn42");
    let runtime = TrafficRuntime::default();
    runtime
        .roaming
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let metrics_addr = std::net::SocketAddr::from(([127, 0, 0, 1], free_ports()));
    let tuning = ControllerTuning {
        recheck: Duration::from_secs(3600),
        ..ControllerTuning::default()
    };
    let controller = start_tuned_controller(&client, runtime.clone(), metrics_addr, tuning);
    apply(&api, &tunnel("home", serde_json::json!({"uid": 3})))
        .await
        .expect("created");
    let ready = wait_for(&api, "home", "Ready", is_ready).await;
    assert!(
        ready
            .status
            .as_ref()
            .is_some_and(|s| s.peers.first().is_some_and(|p| p.endpoint.is_some())),
        "{:?}",
        ready.status
    );

    // Settled: the last write did not lead to another one. (Without the predicate, the resourceVersion
    // changes many times a second here.)
    let settle = |api: Api<WireGuardVppTunnel>| async move {
        let mut last = api
            .get("home")
            .await
            .expect("get")
            .metadata
            .resource_version;
        loop {
            tokio::time::sleep(Duration::from_secs(3)).await;
            let now = api
                .get("home")
                .await
                .expect("get")
                .metadata
                .resource_version;
            if now == last {
                return now;
            }
            last = now;
        }
    };
    let settled = tokio::time::timeout(TIMEOUT, settle(api.clone()))
        .await
        .expect("the status keeps being rewritten: our own writes trigger reconciles");
    let writes = requests(&client, "APPLY", "wireguardvpptunnels/status", "", "").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        api.get("home")
            .await
            .expect("get")
            .metadata
            .resource_version,
        settled
    );
    assert_eq!(
        requests(&client, "APPLY", "wireguardvpptunnels/status", "", "").await,
        writes
    );

    // A spec edit (a new generation) is reconciled.
    let mut edited = tunnel("home", serde_json::json!({"uid": 3}));
    edited["spec"]["wireguard"]["peers"][0]["endpoint"] = "192.0.2.9:51820".into();
    apply(&api, &edited).await.expect("edited");
    let after = wait_for(&api, "home", "Ready at generation 2", is_ready).await;
    assert_eq!(after.metadata.generation, Some(2));
    controller.shut_down().await;
}

/// Secrets are read from a namespaced watch, not fetched at each reconcile: many reconciles make no
/// GET of a Secret at the API server (its own counters), the list and watch of Secrets are
/// namespace-scoped, and a changed key still reaches the tunnel at once (periodic looks off).
#[tokio::test]
async fn secrets_are_watched_per_namespace_and_a_change_reconciles_the_tunnel() {
    let Some((_server, client)) = setup().await else {
        return;
    };
    let api: Api<WireGuardVppTunnel> = Api::namespaced(client.clone(), "dn42");
    put_secret(
        &client,
        "home-key",
        "privateKey",
        "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=",
    )
    .await;
    let metrics_addr = std::net::SocketAddr::from(([127, 0, 0, 1], free_ports()));
    let fast = ControllerTuning {
        recheck: Duration::from_millis(200),
        ..ControllerTuning::default()
    };
    let controller = start_tuned_controller(&client, TrafficRuntime::default(), metrics_addr, fast);
    apply(&api, &tunnel("home", serde_json::json!({"uid": 3})))
        .await
        .expect("created");
    wait_for(&api, "home", "Ready", is_ready).await;
    let gets = requests(&client, "GET", "secrets", "", "").await;
    wait_for_reconciles(metrics_addr, reconciles_ok(metrics_addr).await, 10).await;
    assert_eq!(
        requests(&client, "GET", "secrets", "", "").await,
        gets,
        "Secrets were fetched at reconciles"
    );
    assert!(requests(&client, "LIST", "secrets", "namespace", "").await >= 1);
    assert_eq!(
        requests(&client, "LIST", "secrets", "cluster", "").await
            + requests(&client, "WATCH", "secrets", "cluster", "").await,
        0,
        "Secrets were listed or watched cluster-wide"
    );
    controller.shut_down().await;

    // With periodic looks off, only the Secret's change can reconcile the tunnel.
    let slow = ControllerTuning {
        recheck: Duration::from_secs(3600),
        ..ControllerTuning::default()
    };
    let metrics_addr = std::net::SocketAddr::from(([127, 0, 0, 1], free_ports()));
    let controller = start_tuned_controller(&client, TrafficRuntime::default(), metrics_addr, slow);
    wait_for_reconciles(metrics_addr, 0, 1).await;
    let rotated = Key::generate_private();
    put_secret(&client, "home-key", "privateKey", &rotated.to_base64()).await;
    let public = rotated.public_key().to_base64();
    wait_for(&api, "home", "the rotated key's public key", |t| {
        t.status.as_ref().and_then(|s| s.public_key.as_deref()) == Some(public.as_str())
    })
    .await;
    controller.shut_down().await;
}

/// Sets the x-kubernetes-validations of the CRD's status schema to `rules` (none when empty).
async fn set_status_rules(client: &Client, rules: serde_json::Value) {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let name = "wireguardvpptunnels.wgvpp.io";
    let mut crd = serde_json::to_value(crds.get(name).await.expect("the CRD")).expect("json");
    let status =
        &mut crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"];
    match rules.as_array() {
        Some(list) if !list.is_empty() => status["x-kubernetes-validations"] = rules.clone(),
        _ => {
            if let Some(object) = status.as_object_mut() {
                object.remove("x-kubernetes-validations");
            }
        }
    }
    let crd: CustomResourceDefinition = serde_json::from_value(crd).expect("CRD");
    crds.replace(name, &Default::default(), &crd)
        .await
        .expect("CRD replaced");
}

/// Status writes of tunnel `home` refused by the API server (422) so far.
async fn refused_status_writes(client: &Client) -> u64 {
    requests(client, "APPLY", "wireguardvpptunnels/status", "", "422").await
}

/// Edits the peer endpoint of tunnel `home` (a new generation, so a status write), waits for the
/// first refused status write, then returns how many were refused in the 10 s after it.
async fn refusals_after_an_edit(
    client: &Client,
    api: &Api<WireGuardVppTunnel>,
    endpoint: &str,
) -> u64 {
    let before = refused_status_writes(client).await;
    let mut edited = tunnel("home", serde_json::json!({"uid": 3}));
    edited["spec"]["wireguard"]["peers"][0]["endpoint"] = endpoint.into();
    apply(api, &edited).await.expect("edited");
    let deadline = Instant::now() + TIMEOUT;
    while refused_status_writes(client).await == before {
        assert!(Instant::now() < deadline, "no status write was refused");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_secs(10)).await;
    refused_status_writes(client).await - before
}

/// A reconcile that fails (here every status write is refused by a CEL rule added to the CRD) is
/// retried with a per-tunnel exponential backoff, counted at the API server: from a 200 ms start, the
/// 10 s after the first refusal hold the attempts at about 0, 0.2, 0.6, 1.4, 3 and 6.2 s (a fixed
/// interval gives far more, or at 5 s at most 3). After a success it starts from 200 ms again (without
/// the reset the next delays would be 12.8 s and more: at most 2 attempts).
#[tokio::test]
async fn failed_reconciles_back_off_exponentially_per_tunnel_and_reset_on_success() {
    let Some((_server, client)) = setup().await else {
        return;
    };
    let api: Api<WireGuardVppTunnel> = Api::namespaced(client.clone(), "dn42");
    let metrics_addr = std::net::SocketAddr::from(([127, 0, 0, 1], free_ports()));
    let tuning = ControllerTuning {
        restart_backoff: Duration::from_millis(200),
        restart_backoff_max: Duration::from_secs(60),
        recheck: Duration::from_secs(3600),
        ..ControllerTuning::default()
    };
    let controller =
        start_tuned_controller(&client, RecordingRuntime::default(), metrics_addr, tuning);
    apply(&api, &tunnel("home", serde_json::json!({"uid": 3})))
        .await
        .expect("created");
    wait_for(&api, "home", "Ready", is_ready).await;
    let refuse =
        serde_json::json!([{"rule": "!has(self.publicKey)", "message": "refused by the test"}]);

    set_status_rules(&client, refuse.clone()).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let attempts = refusals_after_an_edit(&client, &api, "192.0.2.2:51820").await;
    assert!(
        (4..=8).contains(&attempts),
        "{attempts} attempts in the 10 s after the first refusal"
    );

    // Writes accepted again: the retry succeeds, the tunnel is Ready at its generation.
    set_status_rules(&client, serde_json::json!([])).await;
    wait_for(&api, "home", "Ready after the refusals", is_ready).await;
    set_status_rules(&client, refuse).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let attempts = refusals_after_an_edit(&client, &api, "192.0.2.3:51820").await;
    assert!(
        (4..=8).contains(&attempts),
        "{attempts} attempts in the 10 s after the first refusal, after a success"
    );
    set_status_rules(&client, serde_json::json!([])).await;
    controller.shut_down().await;
}

/// A generated private key goes only into a Secret the controller creates or one labelled
/// `app.kubernetes.io/managed-by=wireguard-vpp`. An unlabelled Secret without the key is left as it
/// is; the tunnel is Ready=False `SecretNotManaged`, and the status and a Warning event name the Secret
/// and the label to add. Once labelled, the key is generated into it (the label's change triggers the
/// reconcile), and the Secret is not taken over (no owner reference).
#[tokio::test]
async fn generated_keys_go_only_into_our_secrets() {
    let Some((_server, client)) = setup().await else {
        return;
    };
    let api: Api<WireGuardVppTunnel> = Api::namespaced(client.clone(), "dn42");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "dn42");
    put_secret(&client, "foreign", "other", "kept").await;
    let version = secrets
        .get("foreign")
        .await
        .expect("get")
        .metadata
        .resource_version;
    let controller = start_controller(&client, RecordingRuntime::default(), &gateway_dir());
    let mut object = tunnel("home", serde_json::json!({"uid": 3}));
    object["spec"]["wireguard"]["privateKeySecretRef"] =
        serde_json::json!({"name": "foreign", "key": "privateKey"});
    apply(&api, &object).await.expect("created");
    let refused = wait_for(&api, "home", "Ready=False SecretNotManaged", |t| {
        condition(t, "Ready").is_some_and(|c| c.0 == "False" && c.1 == "SecretNotManaged")
    })
    .await;
    let (_, _, message) = condition(&refused, "ConfigValid").expect("ConfigValid");
    assert!(
        message.contains("Secret dn42/foreign")
            && message.contains("app.kubernetes.io/managed-by=wireguard-vpp"),
        "{message}"
    );
    let events: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(client.clone(), "dn42");
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let listed = events.list(&Default::default()).await.expect("events");
        if let Some(event) = listed.items.iter().find(|e| {
            e.reason.as_deref() == Some("SecretNotManaged")
                && e.involved_object.name.as_deref() == Some("home")
        }) {
            assert_eq!(event.type_.as_deref(), Some("Warning"));
            let note = event.message.clone().unwrap_or_default();
            assert!(
                note.contains("dn42/foreign")
                    && note.contains("app.kubernetes.io/managed-by=wireguard-vpp"),
                "{note}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "no SecretNotManaged event");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let untouched = secrets.get("foreign").await.expect("get");
    assert_eq!(untouched.metadata.resource_version, version);
    assert!(
        !untouched
            .data
            .unwrap_or_default()
            .contains_key("privateKey")
    );

    let label = serde_json::json!({"metadata": {"labels": {"app.kubernetes.io/managed-by": "wireguard-vpp"}}});
    secrets
        .patch("foreign", &PatchParams::default(), &Patch::Merge(&label))
        .await
        .expect("labelled");
    let ready = wait_for(&api, "home", "Ready", is_ready).await;
    let secret = secrets.get("foreign").await.expect("get");
    let data = secret.data.clone().unwrap_or_default();
    let private = data.get("privateKey").expect("the generated key");
    assert_eq!(data.get("other"), Some(&ByteString(b"kept".to_vec())));
    assert!(secret.metadata.owner_references.is_none(), "{secret:#?}");
    let public = Key::from_base64_text(&private.0)
        .expect("a key")
        .public_key()
        .to_base64();
    assert_eq!(
        ready.status.as_ref().and_then(|s| s.public_key.as_deref()),
        Some(public.as_str())
    );
    controller.shut_down().await;
}

/// Without CAP_NET_ADMIN (the chart's `netAdmin: false`) a tunnel with a fwmark does not start, and its
/// status says what it needs. The test runs itself again under `setpriv` with NET_ADMIN (and NET_RAW,
/// which also allows a mark) out of the bounding set, as the unprivileged agent lacks them.
#[tokio::test]
async fn a_fwmark_without_net_admin_fails_naming_the_capability() {
    const INNER: &str = "WGVPP_TEST_WITHOUT_NET_ADMIN";
    const NAME: &str = "a_fwmark_without_net_admin_fails_naming_the_capability";
    if std::env::var_os(INNER).is_none() {
        if !common::require_root("dropping CAP_NET_ADMIN with setpriv")
            || !common::require("setpriv", "running the test without CAP_NET_ADMIN")
        {
            return;
        }
        let output = Command::new("setpriv")
            // Linux lets CAP_NET_RAW set a mark too; the chart's agent has neither.
            .arg("--bounding-set=-net_admin,-net_raw")
            .arg(std::env::current_exe().expect("the test binary"))
            .args(["--exact", NAME, "--nocapture"])
            .env(INNER, "1")
            .output()
            .expect("setpriv runs");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(output.status.success(), "{text}");
        assert!(text.contains("test result: ok. 1 passed"), "{text}");
        return;
    }
    let Some((_server, client)) = setup().await else {
        return;
    };
    let api: Api<WireGuardVppTunnel> = Api::namespaced(client.clone(), "dn42");
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime =
        wireguard_vpp::k8s::local_tunnels::LocalTunnels::new(dir.path().join("uapi"), false);
    let env = wireguard_vpp::config::Env {
        memif_socket_dir: dir.path().to_path_buf(),
        ..Default::default()
    };
    let metrics_addr = std::net::SocketAddr::from(([127, 0, 0, 1], free_ports()));
    let controller = start_controller_with_env(&client, runtime, env, metrics_addr);
    let mut object = tunnel("denied", serde_json::json!({"uid": 6}));
    object["spec"]["wireguard"]["fwmark"] = 0x4242.into();
    apply(&api, &object).await.expect("created");
    let failed = wait_for(&api, "denied", "a failure naming CAP_NET_ADMIN", |t| {
        condition(t, "Ready").is_some_and(|c| c.0 == "False" && c.2.contains("CAP_NET_ADMIN"))
    })
    .await;
    let (_, reason, message) = condition(&failed, "Ready").expect("Ready");
    println!("Ready=False {reason}: {message}");
    assert!(message.contains("fwmark 16962"), "{message}");
    controller.shut_down().await;
}
