//! How fast the controller brings many tunnels to `Ready` on the real API server (`crd-apiserver`, see
//! `scripts/k8s/README.md`), side by side with a baseline measured in the same run: the same number of
//! creates plus one server-side-applied status each, sent directly. The difference is what the controller
//! adds per tunnel (watch, finalizer, Secrets, render and validation, conflict check, status).
//!
//! The data plane is a stand-in that reports every tunnel as running at once, and Secrets live in memory
//! (the server has no core API), so the figure is the controller's own cost.
//!
//! ```sh
//! scripts/k8s/build-crd-apiserver.sh
//! cargo run --release --example k8s_scale -- 200
//! ```

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{ListParams, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Api, Client, CustomResourceExt};
use wireguard_vpp::k8s::WireGuardVppTunnel;
use wireguard_vpp::k8s::controller::{self, ControllerOptions};
use wireguard_vpp::k8s::render::WireGuardConfig;
use wireguard_vpp::k8s::secrets::{SecretData, SecretError, SecretStore};
use wireguard_vpp::k8s::tunnel_runtime::{
    Phase, RuntimeError, TunnelRuntime, TunnelSpec, TunnelState,
};

type Error = Box<dyn std::error::Error>;

/// Stands in for the data plane: every started tunnel runs at once.
#[derive(Default)]
struct InstantRuntime {
    running: Mutex<HashMap<String, u16>>,
}

impl TunnelRuntime for InstantRuntime {
    async fn start(&self, tunnel: TunnelSpec) -> Result<(), RuntimeError> {
        let port = tunnel.wireguard.listen_port;
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
        Some(TunnelState {
            phase: Phase::Running,
            vpp_configured: true,
            sw_if_index: Some(1),
            memif_socket: String::new(),
            listen_port: Some(port),
            error: None,
            peers: Vec::new(),
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

/// Stands in for Secrets: generated keys are kept in memory.
#[derive(Default)]
struct MemorySecrets(Mutex<HashMap<(String, String), SecretData>>);

impl SecretStore for MemorySecrets {
    async fn get(&self, namespace: &str, name: &str) -> Result<Option<SecretData>, SecretError> {
        Ok(self
            .0
            .lock()
            .ok()
            .and_then(|m| m.get(&(namespace.into(), name.into())).cloned()))
    }

    async fn store_generated(
        &self,
        namespace: &str,
        name: &str,
        key: &str,
        value: &[u8],
        _: OwnerReference,
    ) -> Result<(), SecretError> {
        if let Ok(mut secrets) = self.0.lock() {
            secrets
                .entry((namespace.into(), name.into()))
                .or_default()
                .insert(key.into(), value.to_vec());
        }
        Ok(())
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
                "peers": [{"publicKey": "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=", "allowedIPs": ["0.0.0.0/0"]}]
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
    let count: usize = std::env::args()
        .nth(1)
        .map(|n| n.parse())
        .transpose()?
        .unwrap_or(200);
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
        MemorySecrets::default(),
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
    Ok(())
}
