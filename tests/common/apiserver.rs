//! The real Kubernetes API server of the k8s tests: `crd-apiserver`, the upstream apiextensions server with
//! an embedded etcd that also serves core v1 Secrets, Namespaces and Events (and `events.k8s.io/v1`) with
//! the upstream generic storage. Built from Debian's Go sources by `scripts/k8s/build-crd-apiserver.sh`
//! (see `scripts/k8s/README.md`). Each test starts its own server on free ports of 127.0.0.1 in a
//! temporary directory; it is killed (by PID) when the [`ApiServer`] drops.
//!
//! Included by the k8s test crates with `#[path = "common/apiserver.rs"] mod apiserver;` (it needs the
//! `k8s` feature, which the other test crates do not).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::PostParams;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Api, Client, CustomResourceExt};
use wireguard_vpp::k8s::{WireGuardVppTunnel, crd_yaml};

use crate::common;

/// How long the server's own steps (CRD established, endpoint served) may take.
const TIMEOUT: Duration = Duration::from_secs(30);

/// A running `crd-apiserver`; killed by PID (and its directory removed) on drop.
pub struct ApiServer {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ApiServer {
    /// The server's log (stdout and stderr).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// The admin kubeconfig the server wrote (server `https://127.0.0.1:<port>`, client certificates).
    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig")
    }

    /// The HTTPS port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Freezes the server (SIGSTOP, by its PID): connections stay open and new ones are accepted by
    /// the kernel, but nothing is answered, as with a hung server or a dead network path.
    pub fn pause(&self) {
        self.signal("STOP");
    }

    /// Lets a paused server run again (SIGCONT).
    pub fn resume(&self) {
        self.signal("CONT");
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{signal} crd-apiserver");
    }
}

fn server_binary() -> PathBuf {
    std::env::var_os("CRD_APISERVER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| common::project_root().join("target/crd-apiserver"))
}

/// Three consecutive free ports (API, etcd client, etcd peer).
pub fn free_ports() -> u16 {
    for _ in 0..50 {
        let Ok(listener) = std::net::TcpListener::bind("127.0.0.1:0") else {
            continue;
        };
        let Ok(addr) = listener.local_addr() else {
            continue;
        };
        let port = addr.port();
        if port > 65000 {
            continue;
        }
        let others: Vec<_> = (1..=2)
            .filter_map(|i| std::net::TcpListener::bind(("127.0.0.1", port + i)).ok())
            .collect();
        if others.len() == 2 {
            return port;
        }
    }
    panic!("no three consecutive free ports on 127.0.0.1");
}

/// Starts the server, or returns `None` (skip) when its binary is missing outside CI.
pub async fn start_server() -> Option<(ApiServer, Client)> {
    let binary = server_binary();
    let purpose =
        "the real Kubernetes API server; build it with scripts/k8s/build-crd-apiserver.sh";
    if !common::require(binary.to_str().expect("UTF-8 path"), purpose) {
        return None;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_ports();
    let log = std::fs::File::create(dir.path().join("server.log")).expect("log file");
    let child = Command::new(&binary)
        .args([
            "--data-dir",
            dir.path().to_str().expect("UTF-8 path"),
            "--port",
            &port.to_string(),
        ])
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log file"))
        .stderr(log)
        .spawn()
        .expect("start crd-apiserver");
    let server = ApiServer { child, dir, port };
    let kubeconfig = server.kubeconfig();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(
            Instant::now() < deadline,
            "crd-apiserver not ready within 60 s; log:\n{}",
            server.log()
        );
        if kubeconfig.exists()
            && let Ok(client) = client_for(&kubeconfig).await
            && let Ok(text) = client
                .request_text(
                    http::Request::get("/readyz")
                        .body(Vec::new())
                        .expect("request"),
                )
                .await
            && text == "ok"
        {
            return Some((server, client));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A client from a kubeconfig file.
pub async fn client_for(kubeconfig: &Path) -> Result<Client, Box<dyn std::error::Error>> {
    let config = kube::Config::from_custom_kubeconfig(
        Kubeconfig::read_from(kubeconfig)?,
        &KubeConfigOptions::default(),
    )
    .await?;
    Ok(Client::try_from(config)?)
}

/// Sends a raw request; returns the status, the `Warning` headers and the body.
pub async fn send(
    client: &Client,
    request: http::Request<Vec<u8>>,
) -> (u16, Vec<String>, serde_json::Value) {
    let response = client
        .send(request.map(kube::client::Body::from))
        .await
        .expect("request sent");
    let status = response.status().as_u16();
    let warnings = response
        .headers()
        .get_all("warning")
        .iter()
        .map(|v| v.to_str().unwrap_or("<binary>").to_string())
        .collect();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (
        status,
        warnings,
        serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
    )
}

/// Creates namespace `name`: the server refuses Secrets and Events in a namespace that does not exist, as
/// a cluster's NamespaceLifecycle admission does.
pub async fn create_namespace(client: &Client, name: &str) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let namespace: Namespace =
        serde_json::from_value(serde_json::json!({"metadata": {"name": name}})).expect("namespace");
    namespaces
        .create(&PostParams::default(), &namespace)
        .await
        .expect("namespace created");
}

/// Creates the CRD from `crd/` (the checked-in file) and waits until it is Established and served;
/// asserts that the server sent no warnings.
pub async fn install_crd(client: &Client) {
    let crd: CustomResourceDefinition = serde_saphyr::from_str(&crd_yaml()).expect("CRD YAML");
    let request = http::Request::post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions")
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&crd).expect("CRD JSON"))
        .expect("request");
    let (status, warnings, body) = send(client, request).await;
    assert_eq!(status, 201, "CRD not created: {body}");
    assert!(
        warnings.is_empty(),
        "the API server warned about the CRD: {warnings:?}"
    );
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let name = WireGuardVppTunnel::crd_name();
    tokio::time::timeout(
        TIMEOUT,
        await_condition(crds, name, conditions::is_crd_established()),
    )
    .await
    .expect("CRD established in time")
    .expect("watch CRD");
    // The CRD's REST endpoint comes up just after Established.
    let api: Api<WireGuardVppTunnel> = Api::all(client.clone());
    let deadline = Instant::now() + TIMEOUT;
    while api.list(&Default::default()).await.is_err() {
        assert!(Instant::now() < deadline, "wireguardvpptunnels not served");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Creates or updates (server-side apply) key `key` of Secret `namespace/name`.
pub async fn put_secret(client: &Client, namespace: &str, name: &str, key: &str, value: &[u8]) {
    use k8s_openapi::ByteString;
    use k8s_openapi::api::core::v1::Secret;
    use kube::api::{Api, Patch, PatchParams};
    let secret = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            namespace: Some(namespace.into()),
            ..Default::default()
        },
        data: Some([(key.to_string(), ByteString(value.to_vec()))].into()),
        ..Default::default()
    };
    let mut object = serde_json::to_value(&secret).expect("Secret JSON");
    object["apiVersion"] = "v1".into();
    object["kind"] = "Secret".into();
    Api::<Secret>::namespaced(client.clone(), namespace)
        .patch(
            name,
            &PatchParams::apply("e2e-test"),
            &Patch::Apply(&object),
        )
        .await
        .expect("Secret applied");
}
