//! The controller's cost at scale on the real API server (`crd-apiserver`, see `scripts/k8s/README.md`):
//!
//! 1. how fast it brings many tunnels to `Ready`, side by side with a baseline measured in the same run
//!    (the same number of creates plus one server-side-applied status each, sent directly);
//! 2. the requests per second it sends to the API server, by verb and resource, while idle (every tunnel
//!    Ready, traffic flowing: counters and handshakes change) and during churn (a peer endpoint edited
//!    every 250 ms, a private key rotated every second). The figures are the API server's own
//!    `apiserver_request_total` counters, read from its `/metrics` before and after each phase, less the
//!    requests this program sent itself during the phase (its edits and the scrapes).
//!
//! The data plane is a stand-in that reports every tunnel as running at once, with one peer whose byte
//! counters grow at every look and whose latest handshake is always 5 s old. Secrets are real: the
//! controller generates each tunnel's private key into a Secret of the API server.
//!
//! ```sh
//! scripts/k8s/build-crd-apiserver.sh
//! cargo run --release --example k8s_scale -- 256 60 60    # tunnels, idle seconds, churn seconds
//! ```

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Api, Client, CustomResourceExt};
use wireguard_vpp::k8s::WireGuardVppTunnel;
use wireguard_vpp::k8s::controller::{self, ControllerOptions};
use wireguard_vpp::k8s::render::WireGuardConfig;
use wireguard_vpp::k8s::secrets::KubeSecrets;
use wireguard_vpp::k8s::tunnel_runtime::{
    PeerStats, Phase, RuntimeError, TunnelRuntime, TunnelSpec, TunnelState,
};
use wireguard_vpp::wg::Key;

type Error = Box<dyn std::error::Error>;

/// Stands in for the data plane: every started tunnel runs at once, its peer's counters grow at every
/// look and its latest handshake is always 5 s old (traffic flows).
#[derive(Default)]
struct InstantRuntime {
    running: Mutex<HashMap<String, u16>>,
    looks: std::sync::atomic::AtomicU64,
}

impl TunnelRuntime for InstantRuntime {
    async fn start(&self, tunnel: TunnelSpec) -> Result<(), RuntimeError> {
        let port = tunnel.wireguard.listen_port.unwrap_or_default();
        self.running
            .lock()
            .map_err(|_| poisoned())?
            .insert(tunnel.name().into(), port);
        Ok(())
    }

    async fn reconfigure(&self, _: &str, _: WireGuardConfig) -> Result<(), RuntimeError> {
        Ok(())
    }

    async fn stop(&self, name: &str) -> Result<(), RuntimeError> {
        self.running.lock().map_err(|_| poisoned())?.remove(name);
        Ok(())
    }

    async fn state(&self, name: &str) -> Option<TunnelState> {
        let port = *self.running.lock().ok()?.get(name)?;
        let looks = self
            .looks
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Some(TunnelState {
            phase: Phase::Running,
            vpp_configured: true,
            sw_if_index: Some(1),
            memif_socket: String::new(),
            listen_port: Some(port),
            error: None,
            peers: vec![PeerStats {
                public_key: PEER_KEY.into(),
                endpoint: Some("192.0.2.1:51820".into()),
                last_handshake: Some(std::time::SystemTime::now() - Duration::from_secs(5)),
                rx_bytes: 1000 * looks,
                tx_bytes: 2000 * looks,
            }],
            counters: Vec::new(),
        })
    }
}

fn poisoned() -> RuntimeError {
    RuntimeError {
        reason: "Poisoned",
        message: "lock poisoned".into(),
    }
}

/// The API server, killed on drop.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

const PEER_KEY: &str = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=";

fn tunnel(namespace: &str, i: usize) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "wgvpp.io/v1alpha1",
        "kind": "WireGuardVppTunnel",
        "metadata": {"name": format!("t{i}"), "namespace": namespace},
        "spec": {
            "nodeName": "node-a",
            "bridgeID": 4242,
            "arp": {"respond": [format!("10.{}.{}.1/32", i / 256, i % 256)]},
            "wireguard": {
                "privateKeySecretRef": {"name": format!("t{i}-key"), "key": "privateKey"},
                "listenPort": 20000 + i,
                "peers": [{"publicKey": PEER_KEY, "endpoint": "192.0.2.1:51820", "allowedIPs": ["0.0.0.0/0"]}]
            }
        }
    })
}

/// Three consecutive free ports (API, etcd client, etcd peer).
fn free_ports() -> Option<u16> {
    (0..50).find_map(|_| {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        let free = |p: u16| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok();
        (port < 65000 && free(port + 1) && free(port + 2)).then_some(port)
    })
}

fn ready_count(list: &[WireGuardVppTunnel]) -> usize {
    list.iter()
        .filter(|t| {
            t.status.as_ref().is_some_and(|s| {
                s.conditions
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.status == "True")
            })
        })
        .count()
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let arg = |n: usize, default: u64| -> Result<u64, Error> {
        Ok(std::env::args()
            .nth(n)
            .map(|a| a.parse())
            .transpose()?
            .unwrap_or(default))
    };
    let count = usize::try_from(arg(1, 256)?)?;
    let idle = Duration::from_secs(arg(2, 60)?);
    let churn = Duration::from_secs(arg(3, 60)?);
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let binary = std::env::var_os("CRD_APISERVER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target/crd-apiserver"));
    let dir = tempfile::tempdir()?;
    let port = free_ports().ok_or("no three consecutive free ports on 127.0.0.1")?;
    let child = Command::new(&binary)
        .args([
            "--data-dir",
            &dir.path().display().to_string(),
            "--port",
            &port.to_string(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| {
            format!(
                "{}: {e} (build it with scripts/k8s/build-crd-apiserver.sh)",
                binary.display()
            )
        })?;
    let _server = Server(child);
    let kubeconfig = dir.path().join("kubeconfig");
    let client = loop {
        if kubeconfig.exists() {
            let config = kube::Config::from_custom_kubeconfig(
                Kubeconfig::read_from(&kubeconfig)?,
                &KubeConfigOptions::default(),
            )
            .await?;
            let client = Client::try_from(config)?;
            if client.apiserver_version().await.is_ok() {
                break client;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        Api::all(client.clone());
    crds.patch(
        WireGuardVppTunnel::crd_name(),
        &PatchParams::apply("bench"),
        &Patch::Apply(WireGuardVppTunnel::crd()),
    )
    .await?;
    await_condition(
        crds,
        WireGuardVppTunnel::crd_name(),
        conditions::is_crd_established(),
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Baseline: the same creates plus one status write each, sent directly.
    let baseline_api: Api<WireGuardVppTunnel> = Api::namespaced(client.clone(), "baseline");
    let started = Instant::now();
    for i in 0..count {
        let object = tunnel("baseline", i);
        let name = format!("t{i}");
        baseline_api
            .patch(&name, &PatchParams::apply("bench"), &Patch::Apply(&object))
            .await?;
        let status = serde_json::json!({
            "apiVersion": "wgvpp.io/v1alpha1", "kind": "WireGuardVppTunnel",
            "status": {"conditions": [{"type": "Ready", "status": "True", "reason": "Running", "message": "",
                                       "lastTransitionTime": "2026-01-01T00:00:00Z"}]}
        });
        baseline_api
            .patch_status(
                &name,
                &PatchParams::apply("bench").force(),
                &Patch::Apply(&status),
            )
            .await?;
    }
    let baseline = started.elapsed();

    // The controller: the same creates, then wait until every tunnel is Ready.
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(serde_json::json!({"metadata": {"name": "scale"}}))?,
        )
        .await?;
    let options = ControllerOptions {
        node_name: "node-a".into(),
        namespace: Some("scale".into()),
        gateway_dir: root.join("examples/k8s/gateways"),
        env: wireguard_vpp::config::Env::default(),
        metrics_addr: None,
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let controller = tokio::spawn(controller::run_with(
        client.clone(),
        KubeSecrets::new(client.clone()),
        InstantRuntime::default(),
        options,
        async move {
            let _ = stopped.await;
        },
    ));
    let api: Api<WireGuardVppTunnel> = Api::namespaced(client.clone(), "scale");
    let started = Instant::now();
    for i in 0..count {
        api.patch(
            &format!("t{i}"),
            &PatchParams::apply("bench"),
            &Patch::Apply(&tunnel("scale", i)),
        )
        .await?;
    }
    let created = started.elapsed();
    loop {
        let list = api.list(&ListParams::default()).await?;
        if ready_count(&list.items) == count {
            break;
        }
        if started.elapsed() > Duration::from_secs(600) {
            return Err(format!(
                "only {} of {count} tunnels Ready after 600 s",
                ready_count(&list.items)
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let controlled = started.elapsed();

    // Idle: every tunnel Ready, traffic flowing; nothing is edited.
    let before = request_counts(&client).await?;
    tokio::time::sleep(idle).await;
    let after = request_counts(&client).await?;
    let own_scrapes = Counts::from([(("GET".into(), "(non-resource)".into()), 1)]);
    let idle_rates = rates(&before, &after, &own_scrapes, idle);

    // Churn: a peer endpoint edited every 250 ms (round robin), a private key rotated every second.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "scale");
    let mut own = Counts::from([(("GET".into(), "(non-resource)".into()), 1)]);
    let before = request_counts(&client).await?;
    let churn_started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let mut edits = 0usize;
    while churn_started.elapsed() < churn {
        tick.tick().await;
        let i = edits % count;
        let mut object = tunnel("scale", i);
        object["spec"]["wireguard"]["peers"][0]["endpoint"] =
            format!("192.0.2.{}:51820", 2 + (edits / count) % 250).into();
        api.patch(
            &format!("t{i}"),
            &PatchParams::apply("bench"),
            &Patch::Apply(&object),
        )
        .await?;
        *own.entry(("APPLY".into(), "wireguardvpptunnels".into()))
            .or_default() += 1;
        if edits.is_multiple_of(4) {
            let key = Key::generate_private().to_base64();
            let patch = serde_json::json!({"data": {"privateKey": ByteString(key.into_bytes())}});
            secrets
                .patch(
                    &format!("t{}-key", (edits / 4) % count),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await?;
            *own.entry(("PATCH".into(), "secrets".into())).or_default() += 1;
        }
        edits += 1;
    }
    let churn_elapsed = churn_started.elapsed();
    let after = request_counts(&client).await?;
    let churn_rates = rates(&before, &after, &own, churn_elapsed);
    let _ = stop.send(());
    let _ = controller.await;

    let per = |d: Duration| d.as_secs_f64() * 1000.0 / count as f64;
    println!("tunnels: {count}");
    println!("{:<58} {:>9} {:>13}", "", "total s", "per tunnel ms");
    println!(
        "{:<58} {:>9.2} {:>13.2}",
        "baseline: create + 1 status apply each, sent directly",
        baseline.as_secs_f64(),
        per(baseline)
    );
    println!(
        "{:<58} {:>9.2} {:>13.2}",
        "controller: creates sent",
        created.as_secs_f64(),
        per(created)
    );
    println!(
        "{:<58} {:>9.2} {:>13.2}",
        "controller: all Ready (from the first create)",
        controlled.as_secs_f64(),
        per(controlled)
    );
    println!();
    println!(
        "the controller's requests per second to the API server (apiserver_request_total, less this \
         program's own): idle {} s; churn {:.0} s with {edits} endpoint edits and {} key rotations",
        idle.as_secs(),
        churn_elapsed.as_secs_f64(),
        edits.div_ceil(4)
    );
    println!(
        "{:<8} {:<32} {:>10} {:>10}",
        "verb", "resource", "idle", "churn"
    );
    let mut keys: Vec<&(String, String)> = idle_rates.keys().chain(churn_rates.keys()).collect();
    keys.sort();
    keys.dedup();
    let (mut idle_total, mut churn_total) = (0.0, 0.0);
    for key in keys {
        let (i, c) = (
            idle_rates.get(key).copied().unwrap_or(0.0),
            churn_rates.get(key).copied().unwrap_or(0.0),
        );
        idle_total += i;
        churn_total += c;
        println!("{:<8} {:<32} {:>10.2} {:>10.2}", key.0, key.1, i, c);
    }
    println!(
        "{:<8} {:<32} {:>10.2} {:>10.2}",
        "all", "", idle_total, churn_total
    );
    Ok(())
}

/// Requests by (verb, resource[/subresource]).
type Counts = HashMap<(String, String), u64>;

/// The API server's `apiserver_request_total`, summed over codes and other labels.
async fn request_counts(client: &Client) -> Result<Counts, Error> {
    let text = client
        .request_text(http::Request::get("/metrics").body(Vec::new())?)
        .await?;
    let mut counts = Counts::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("apiserver_request_total{") else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once("} ") else {
            continue;
        };
        let label = |name: &str| {
            labels
                .split("\",")
                .find_map(|l| l.strip_prefix(&format!("{name}=\"")))
                .map(|v| v.trim_end_matches('"').to_string())
                .unwrap_or_default()
        };
        let resource = match (label("resource"), label("subresource")) {
            (r, _) if r.is_empty() => "(non-resource)".to_string(),
            (r, s) if s.is_empty() => r,
            (r, s) => format!("{r}/{s}"),
        };
        let value: f64 = value.trim().parse()?;
        *counts.entry((label("verb"), resource)).or_default() += value as u64;
    }
    Ok(counts)
}

/// Requests per second between two readings, less `own` (what this program sent).
fn rates(
    before: &Counts,
    after: &Counts,
    own: &Counts,
    elapsed: Duration,
) -> HashMap<(String, String), f64> {
    after
        .iter()
        .filter_map(|(key, n)| {
            let sent = n
                .saturating_sub(before.get(key).copied().unwrap_or(0))
                .saturating_sub(own.get(key).copied().unwrap_or(0));
            (sent > 0).then(|| (key.clone(), sent as f64 / elapsed.as_secs_f64()))
        })
        .collect()
}
