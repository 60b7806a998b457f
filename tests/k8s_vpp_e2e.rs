//! The controller end to end without a cluster: the real `wireguard-vpp controller` binary, out of cluster
//! (`KUBECONFIG` of the test API server), against the real Kubernetes API server of the k8s tests
//! (`crd-apiserver`: CRDs, Secrets, Namespaces and Events; see tests/common/apiserver.rs), a real VPP and a
//! wireguard-go peer (tests/common/vpp.rs, scripts/peers/topology.sh `up` and `vpp`).
//!
//! ```text
//!  test process                  <P>-wg namespace                         <P>-peer namespace
//!  crd-apiserver 127.0.0.1:N     wireguard-vpp controller (node-a)        wireguard-go <P>w
//!    ^  relay: unix socket  -->  127.0.0.1:N (KUBECONFIG)                 10.99.77.2:51821
//!    |                           tunnel <P>: UDP 10.99.77.1:51820 <-veth->
//!    | kube client               memif server DIR/run/<P>.sock
//!  asserts on the API server,    ^
//!  VPP (`vppctl show ...`) and   | memif3/3 in bridge 4242 (BVI loop42 10.127.111.1/24, fd00:4242::1/64)
//!  the peer (`wg show`, ping)    VPP (runtime dir DIR/vpp)
//! ```
//!
//! The controller runs in the `<P>-wg` namespace so that its tunnel's UDP socket reaches the peer. The API
//! server listens on 127.0.0.1 of the test's namespace only (its certificate is for 127.0.0.1), which that
//! namespace cannot reach: a relay carries the controller's connections (a Python listener on 127.0.0.1:N
//! inside the namespace, a Unix socket, and a thread of the test connecting to the server), so the
//! controller's kubeconfig is the server's own, unchanged.
//!
//! Every assertion reads state the controller does not write itself: VPP's `show` commands, the peer's
//! `wg show` and pings, the objects in the API server. Everything is torn down on drop, also when a test
//! fails: the controller and the relay (by PID), the API server, VPP, the peer and the namespaces.

#[path = "common/apiserver.rs"]
mod apiserver;
mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use apiserver::{ApiServer, create_namespace, install_crd, start_server};
use common::vpp::{VppBed, text};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::{Api, Client};
use wireguard_vpp::k8s::WireGuardVppTunnel;
use wireguard_vpp::k8s::controller::FINALIZER;
use wireguard_vpp::wg::Key;

const NODE: &str = "node-a";
const NAMESPACE: &str = "dn42";
/// Our memif in VPP: `memif<uid>/<uid>`, uid 3 in the resource.
const MEMIF: &str = "memif3/3";
/// The controller's metrics address inside the `<P>-wg` namespace.
const METRICS: &str = "127.0.0.1:9477";
/// What the controller, VPP and a handshake may take.
const TIMEOUT: Duration = Duration::from_secs(60);
/// The peer's allowed IPs (scripts/peers/topology.sh `up`): VPP's subnets and multicast.
const PEER_ALLOWED_IPS: &str = "172.22.77.0/24,fd28:cb8f:4c92::/64,10.127.111.0/24,fd00:4242::/64,fe80::4242/128,224.0.0.0/4,ff00::/8";

// ---------------------------------------------------------------------------------------------------
// The relay into the namespace.

/// Listens on 127.0.0.1:`port` inside a network namespace and relays each connection to a Unix socket.
const RELAY_PY: &str = r#"
import socket, sys, threading
port, path = int(sys.argv[1]), sys.argv[2]
server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", port))
server.listen(64)
def pipe(src, dst):
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    try:
        dst.shutdown(socket.SHUT_WR)
    except OSError:
        pass
print("ready", flush=True)
while True:
    client, _ = server.accept()
    upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        upstream.connect(path)
    except OSError:
        client.close()
        continue
    threading.Thread(target=pipe, args=(client, upstream), daemon=True).start()
    threading.Thread(target=pipe, args=(upstream, client), daemon=True).start()
"#;

/// Makes the API server's 127.0.0.1:`port` reachable at the same address inside `<P>-wg`: the Python
/// listener there, a Unix socket between the namespaces, and this process connecting to the server.
struct NetnsRelay {
    python: Child,
    socket: PathBuf,
    stop: Arc<AtomicBool>,
    accept: Option<std::thread::JoinHandle<()>>,
}

impl NetnsRelay {
    fn start(bed: &VppBed, port: u16) -> NetnsRelay {
        let socket = bed.dir().join("apiserver.sock");
        let listener = UnixListener::bind(&socket).expect("relay socket");
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let accept = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopped.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(unix) = stream else { continue };
                let Ok(tcp) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
                    continue;
                };
                let (Ok(unix_reader), Ok(tcp_writer)) = (unix.try_clone(), tcp.try_clone()) else {
                    continue;
                };
                std::thread::spawn(move || {
                    let (mut from, mut to) = (unix_reader, tcp_writer);
                    let _ = std::io::copy(&mut from, &mut to);
                    let _ = to.shutdown(std::net::Shutdown::Write);
                });
                std::thread::spawn(move || {
                    let (mut from, mut to) = (tcp, unix);
                    let _ = std::io::copy(&mut from, &mut to);
                    let _ = to.shutdown(std::net::Shutdown::Write);
                });
            }
        });
        let mut python = Command::new("ip")
            .args([
                "netns",
                "exec",
                &format!("{}-wg", bed.name()),
                "python3",
                "-c",
            ])
            .arg(RELAY_PY)
            .arg(port.to_string())
            .arg(&socket)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the relay");
        let mut line = String::new();
        let stdout = python.stdout.take().expect("relay stdout");
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("relay output");
        assert_eq!(line.trim(), "ready", "the relay did not start");
        NetnsRelay {
            python,
            socket,
            stop,
            accept: Some(accept),
        }
    }
}

impl Drop for NetnsRelay {
    fn drop(&mut self) {
        let _ = self.python.kill();
        let _ = self.python.wait();
        self.stop.store(true, Ordering::Relaxed);
        // Wakes the accept loop, which then sees the flag.
        let _ = UnixStream::connect(&self.socket);
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

// ---------------------------------------------------------------------------------------------------
// The bed: VPP, peer, API server, relay, controller.

/// One test's VPP and peer, API server, relay and controller. Dropped in the order that keeps each part's
/// dependencies alive: the controller first (killed by PID), then the relay, the API server, and the VPP
/// bed with its namespaces last.
struct K8sBed {
    controller: Option<Child>,
    /// How many controller processes were started (each logs to its own file).
    runs: u32,
    /// Only kept alive (until the controller is gone).
    _relay: NetnsRelay,
    server: ApiServer,
    client: Client,
    bed: VppBed,
}

impl Drop for K8sBed {
    fn drop(&mut self) {
        if let Some(mut child) = self.controller.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl K8sBed {
    /// VPP with its bridge and the peer, the API server with the CRD and namespace `dn42`, the relay, and
    /// the bridge's gateway file; `None` (skip) when a peer is missing outside CI.
    async fn up() -> Option<K8sBed> {
        if !common::require("python3", "the API server relay into the namespace") {
            return None;
        }
        let bed = VppBed::up()?;
        let (server, client) = start_server().await?;
        install_crd(&client).await;
        create_namespace(&client, NAMESPACE).await;
        let relay = NetnsRelay::start(&bed, server.port());
        // The gateway file of bridge 4242 as the chart's ConfigMap would hold it: routes and neighbours
        // through VPP's API, on the BVI found by its name.
        let gateways = bed.dir().join("k8s-gw");
        std::fs::create_dir_all(&gateways).expect("gateway dir");
        std::fs::write(
            gateways.join("4242.json"),
            r#"{"GatewayMacAddr": "42:42:42:42:42:42", "WgIfMacaddrPrefix": "98:D2:93",
 "VppIfMacaddrPrefix": "A4:77:33", "VppBridgeLoop_InstallMethod": "api",
 "VppBridgeLoop_SwIfName": "loop42",
 "VppBridgeLoop_InstallRoutes": {"IPv4": true, "IPv6": true, "IPv6 link-local": true}}"#,
        )
        .expect("gateway file");
        Some(K8sBed {
            controller: None,
            runs: 0,
            _relay: relay,
            server,
            client,
            bed,
        })
    }

    /// The tunnel's name: the resource's, the interface's and the namespaces' prefix.
    fn name(&self) -> String {
        self.bed.name().to_string()
    }

    fn tunnels(&self) -> Api<WireGuardVppTunnel> {
        Api::namespaced(self.client.clone(), NAMESPACE)
    }

    fn secrets(&self) -> Api<Secret> {
        Api::namespaced(self.client.clone(), NAMESPACE)
    }

    fn controller_log_path(&self, run: u32) -> PathBuf {
        self.bed.dir().join(format!("controller-{run}.log"))
    }

    /// Every run's log, in order.
    fn controller_log(&self) -> String {
        (1..=self.runs)
            .map(|run| std::fs::read_to_string(self.controller_log_path(run)).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n---- restart ----\n")
    }

    /// Starts `wireguard-vpp controller` in the `<P>-wg` namespace, as the chart's agent runs (flags and
    /// environment of docs/kubernetes.md), with the API server's kubeconfig.
    fn start_controller(&mut self) {
        assert!(self.controller.is_none(), "a controller already runs");
        self.runs += 1;
        let log = std::fs::File::create(self.controller_log_path(self.runs)).expect("log file");
        let dir = self.bed.dir();
        let child = Command::new("ip")
            .args(["netns", "exec", &format!("{}-wg", self.bed.name())])
            .arg(env!("CARGO_BIN_EXE_wireguard-vpp"))
            .args(["controller", "--node-name", NODE, "--metrics-addr", METRICS])
            .arg("--gateway-dir")
            .arg(dir.join("k8s-gw"))
            .env("KUBECONFIG", self.server.kubeconfig())
            .env("VPP_API_SOCKET_PATH", self.bed.api_socket())
            .env("VPP_MEMIF_SOCKET_DIR", dir.join("run"))
            .env("VPP_MEMIF_CONFIG_DIR", dir.join("etc"))
            .env("LOG_LEVEL", "debug")
            .env_remove("NODE_NAME")
            .env_remove("WATCH_NAMESPACE")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("the controller starts");
        self.controller = Some(child);
    }

    /// Sends `signal` (TERM, KILL) to the controller and waits for its exit.
    fn signal_controller(&mut self, signal: &str) -> ExitStatus {
        let mut child = self.controller.take().expect("a controller runs");
        let out = Command::new("kill")
            .args([&format!("-{signal}"), &child.id().to_string()])
            .output()
            .expect("kill runs");
        assert!(out.status.success(), "kill: {}", text(&out));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "the controller did not exit after SIG{signal}:\n{}",
                    self.controller_log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Fails when the controller exited.
    fn assert_controller_runs(&mut self) {
        if let Some(status) = self
            .controller
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
        {
            panic!(
                "the controller exited ({status}):\n{}",
                self.controller_log()
            );
        }
    }

    /// Creates or updates key `key` of Secret `dn42/name` (server-side apply).
    async fn put_secret(&self, name: &str, key: &str, value: &[u8]) {
        apiserver::put_secret(&self.client, NAMESPACE, name, key, value).await;
    }

    /// Applies (server-side) the tunnel resource.
    async fn apply(&self, object: &serde_json::Value) -> WireGuardVppTunnel {
        self.tunnels()
            .patch(
                &self.name(),
                &PatchParams::apply("e2e-test"),
                &Patch::Apply(object),
            )
            .await
            .expect("tunnel applied")
    }

    /// Waits until `check` holds for the tunnel resource, or fails with its last state and the log.
    async fn wait_for(
        &mut self,
        what: &str,
        check: impl Fn(&WireGuardVppTunnel) -> bool,
    ) -> WireGuardVppTunnel {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let current = self.tunnels().get_opt(&self.name()).await.expect("get");
            if let Some(tunnel) = &current
                && check(tunnel)
            {
                return tunnel.clone();
            }
            self.assert_controller_runs();
            assert!(
                Instant::now() < deadline,
                "{what} not reached in time; last: {current:#?}\n{}\n{}",
                self.bed.vppctl("show memif"),
                self.controller_log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits until the resource is gone (its finalizer released).
    async fn wait_deleted(&mut self) {
        let deadline = Instant::now() + TIMEOUT;
        while self
            .tunnels()
            .get_opt(&self.name())
            .await
            .expect("get")
            .is_some()
        {
            self.assert_controller_runs();
            assert!(
                Instant::now() < deadline,
                "the finalizer was not released:\n{}",
                self.controller_log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Points the wireguard-go peer at our end with `public_key` (instead of DIR/keys/ours.pub).
    fn point_peer_at(&self, public_key: &str) {
        let ours = std::fs::read_to_string(self.bed.dir().join("keys/ours.pub")).expect("ours.pub");
        let out = Command::new("wg")
            .args(["set", &format!("{}-w", self.bed.name())])
            .args(["peer", ours.trim(), "remove"])
            .args(["peer", public_key])
            .args(["endpoint", "10.99.77.1:51820", "persistent-keepalive", "25"])
            .args(["allowed-ips", PEER_ALLOWED_IPS])
            .output()
            .expect("wg runs");
        assert!(out.status.success(), "wg set: {}", text(&out));
    }

    /// The peer's latest handshake with `public_key`, in seconds since the epoch (0: none).
    fn peer_handshake(&self, public_key: &str) -> u64 {
        let shown = self.bed.peer_wg_show("latest-handshakes");
        shown
            .lines()
            .find_map(|l| {
                let (key, time) = l.split_once('\t')?;
                (key == public_key).then(|| time.trim().parse().ok())?
            })
            .unwrap_or(0)
    }

    /// Waits for a handshake of the peer with `public_key` at `since` or later; returns its time.
    fn wait_for_handshake(&self, public_key: &str, since: u64) -> u64 {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let at = self.peer_handshake(public_key);
            if at != 0 && at >= since {
                return at;
            }
            assert!(
                Instant::now() < deadline,
                "no handshake: {}\n{}",
                self.bed.peer_wg_show("dump"),
                self.controller_log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Pings both ways through the tunnel: VPP to the peer's addresses (our side sends first, so a fresh
    /// tunnel starts the handshake itself), then the peer to VPP's BVI.
    fn pings_cross_both_ways(&self) {
        for dst in ["172.22.77.33", "fd28:cb8f:4c92::33"] {
            assert_eq!(
                self.bed.ping_from_vpp(dst, 10),
                10,
                "ping {dst} from VPP:\n{}",
                self.controller_log()
            );
        }
        self.bed.ping_from_peer("10.127.111.1", 10);
        self.bed.ping_from_peer("fd00:4242::1", 10);
    }

    /// VPP's sw_if_index of our memif (`show interface`), if it exists.
    fn memif_index(&self) -> Option<u32> {
        self.bed
            .vppctl("show interface")
            .lines()
            .find(|l| l.split_whitespace().next() == Some(MEMIF))
            .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
    }

    /// The packets VPP's memif received so far (`show interface`'s `rx packets`).
    fn memif_rx_packets(&self) -> u64 {
        self.bed
            .vppctl(&format!("show interface {MEMIF}"))
            .lines()
            .find_map(|l| {
                let cols: Vec<&str> = l.split_whitespace().collect();
                let at = cols.windows(2).position(|w| w == ["rx", "packets"])?;
                cols.get(at + 2)?.parse().ok()
            })
            .unwrap_or(0)
    }

    /// GETs `path` until `check` holds for the answer (status line, then body); fails with the last
    /// answer and the log after `TIMEOUT`.
    async fn http_until(&mut self, path: &str, what: &str, check: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let answer = self.http_get(path);
            if check(&answer) {
                return answer;
            }
            self.assert_controller_runs();
            assert!(
                Instant::now() < deadline,
                "{path}: {what} not seen in time; last answer:\n{answer}\n{}",
                self.controller_log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The controller's `/metrics` or `/readyz`, read inside its namespace.
    fn http_get(&self, path: &str) -> String {
        let script = format!(
            "import urllib.request, urllib.error\ntry:\n    r = urllib.request.urlopen('http://{METRICS}{path}', timeout=5)\n    print(r.status)\n    print(r.read().decode())\nexcept urllib.error.HTTPError as e:\n    print(e.code)\n    print(e.read().decode())\n"
        );
        let out = self.bed.in_ns("wg", &["python3", "-c", &script]);
        assert!(out.status.success(), "GET {path}: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// The tunnel resource of the bed: uid 3 on bridge 4242, the peer's addresses answered to VPP, VPP's
/// subnets learned, the memif secret and the private key from Secrets, the wireguard-go peer.
/// Whether `events` hold one of `reason` about the tunnel `name`.
fn has_event(events: &[k8s_openapi::api::events::v1::Event], reason: &str, name: &str) -> bool {
    events.iter().any(|e| {
        e.reason.as_deref() == Some(reason)
            && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name)
    })
}

fn tunnel_resource(name: &str, peer_public: &str) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "wgvpp.io/v1alpha1",
        "kind": "WireGuardVppTunnel",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "nodeName": NODE,
            "uid": 3,
            "bridgeID": 4242,
            "memifSecretRef": {"name": "memif", "key": "secret"},
            "arp": {"respond": ["172.22.77.33/32"], "learn": ["10.127.111.0/24"]},
            "ndp": {"respond": ["fd28:cb8f:4c92::33/128", "fe80::42:1817:1/128"],
                    "learn": ["fd00:4242::/64"]},
            "wireguard": {
                "privateKeySecretRef": {"name": format!("{name}-key"), "key": "privateKey"},
                "listenPort": 51820,
                "peers": [{
                    "publicKey": peer_public,
                    "endpoint": "10.99.77.2:51821",
                    "allowedIPs": ["172.22.77.33/32", "fd28:cb8f:4c92::33/128", "fe80::42:1817:1/128"]
                }]
            }
        }
    })
}

fn condition(tunnel: &WireGuardVppTunnel, kind: &str) -> Option<(String, String)> {
    let c = tunnel
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == kind)?;
    Some((c.status.clone(), c.reason.clone()))
}

/// Ready, for the current generation of the spec.
fn is_ready(tunnel: &WireGuardVppTunnel) -> bool {
    condition(tunnel, "Ready").is_some_and(|c| c.0 == "True")
        && tunnel.status.as_ref().and_then(|s| s.observed_generation) == tunnel.metadata.generation
}

/// The status says the latest handshake is recent (the status holds only its age bucket; the exact
/// time and the counters are metrics).
fn status_handshake_recent(tunnel: &WireGuardVppTunnel) -> bool {
    tunnel
        .status
        .as_ref()
        .and_then(|s| s.latest_handshake.as_deref())
        == Some("Within3m")
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

fn file_inode(path: &Path) -> u64 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .ino()
}

fn peer_public_key(bed: &VppBed) -> String {
    std::fs::read_to_string(bed.dir().join("keys/peer.pub"))
        .expect("peer.pub")
        .trim()
        .to_string()
}

// ---------------------------------------------------------------------------------------------------
// Tests.

/// A resource with no private key: the controller generates one into its Secret, runs the tunnel in
/// VPP's bridge, and the peer (given the public key from the status) completes a handshake and pings cross
/// both ways. A peer edit keeps the session and the memif; deleting the resource leaves VPP as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tunnel_resource_runs_on_real_vpp_with_a_generated_key() {
    let Some(mut k8s) = K8sBed::up().await else {
        return;
    };
    let name = k8s.name();
    let peer_public = peer_public_key(&k8s.bed);
    let before = k8s.bed.objects();
    k8s.put_secret("memif", "secret", b"demo-secret").await;
    k8s.start_controller();
    k8s.apply(&tunnel_resource(&name, &peer_public)).await;

    // Ready: the memif is connected in VPP's bridge, next to the BVI, with the index the status reports.
    let ready = k8s.wait_for("Ready", is_ready).await;
    let status = ready.status.clone().expect("status");
    assert_eq!(status.uid, Some(3));
    assert_eq!(status.listen_port, Some(51820));
    let memif = k8s.bed.vppctl("show memif");
    assert!(
        memif.contains(MEMIF) && memif.contains("connected"),
        "{memif}"
    );
    let bridge = k8s.bed.vppctl("show bridge-domain 4242 detail");
    assert!(
        bridge.contains(MEMIF) && bridge.contains("loop42"),
        "{bridge}"
    );
    let index = k8s.memif_index().expect("memif in show interface");
    let memif_status = status.memif.clone().expect("status.memif");
    assert_eq!(memif_status.sw_if_index, Some(index));
    assert_eq!(
        Path::new(&memif_status.socket),
        k8s.bed.memif_socket().as_path()
    );
    // Host routes for the peer's addresses, attached to the BVI named in the gateway file.
    let fib = k8s.bed.vppctl("show ip fib 172.22.77.33/32");
    assert!(fib.contains("attached") && fib.contains("loop42"), "{fib}");
    assert!(
        ready
            .metadata
            .finalizers
            .iter()
            .flatten()
            .any(|f| f == FINALIZER)
    );

    // The private key was generated into the Secret the spec names, in the API server, owned by the
    // tunnel; the status carries its public key.
    let secret = k8s
        .secrets()
        .get(&format!("{name}-key"))
        .await
        .expect("the generated Secret");
    let private = secret
        .data
        .as_ref()
        .and_then(|d| d.get("privateKey"))
        .map(|b| String::from_utf8_lossy(&b.0).trim().to_string())
        .expect("privateKey in the Secret");
    let public = Key::from_base64_text(private.as_bytes())
        .expect("a WireGuard key")
        .public_key()
        .to_base64();
    assert_eq!(status.public_key.as_deref(), Some(public.as_str()));
    let owners = secret.metadata.owner_references.clone().unwrap_or_default();
    assert!(
        matches!(owners.as_slice(), [o] if o.kind == "WireGuardVppTunnel" && o.name == name
            && Some(&o.uid) == ready.metadata.uid.as_ref() && o.controller == Some(true)),
        "{owners:#?}"
    );

    // The peer learns our public key from the status (as an operator would): handshake, pings both ways.
    k8s.point_peer_at(&public);
    let started = now_secs();
    k8s.pings_cross_both_ways();
    let handshake = k8s.wait_for_handshake(&public, started.saturating_sub(1));
    // The controller reports the handshake's age and the peer's endpoint (its counters and exact
    // handshake time are metrics).
    let reported = k8s
        .wait_for("the handshake in the status", |t| {
            status_handshake_recent(t)
                && t.status.as_ref().is_some_and(|s| {
                    s.peers_summary.as_deref() == Some("1/1")
                        && s.peers.len() == 1
                        && s.peers[0].public_key == peer_public
                        && s.peers[0].handshake.as_deref() == Some("Within3m")
                        && s.peers[0].endpoint.as_deref() == Some("10.99.77.2:51821")
                })
        })
        .await;
    let metrics = k8s.http_get("/metrics");
    assert!(
        metrics.starts_with("200")
            && metrics.contains(&format!(
                "wireguard_latest_handshake_seconds{{interface=\"{name}\",public_key=\"{peer_public}\""
            )),
        "{metrics}"
    );
    assert!(k8s.http_get("/readyz").starts_with("200"));

    // The private key is in its Secret only: not in the tunnel (spec, status), its events or the log.
    let events: Api<k8s_openapi::api::events::v1::Event> =
        Api::namespaced(k8s.client.clone(), NAMESPACE);
    let listed = events.list(&Default::default()).await.expect("events");
    assert!(
        has_event(&listed.items, "Running", &name),
        "no Running event: {:#?}",
        listed.items
    );
    let core_events: Api<k8s_openapi::api::core::v1::Event> =
        Api::namespaced(k8s.client.clone(), NAMESPACE);
    let core = core_events.list(&Default::default()).await.expect("events");
    for (what, json) in [
        (
            "the tunnel",
            serde_json::to_string(&reported).expect("json"),
        ),
        (
            "the events",
            serde_json::to_string(&listed.items).expect("json"),
        ),
        (
            "the core events",
            serde_json::to_string(&core.items).expect("json"),
        ),
        ("the controller's log", k8s.controller_log()),
    ] {
        assert!(!json.contains(&private), "the private key is in {what}");
    }

    // A peer edit (one more allowed IP, a keepalive) is applied without a restart: the WireGuard session
    // is kept (traffic flows with no new handshake), VPP keeps the memif (same index, counters not reset)
    // and the controller keeps its memif socket (same file).
    let socket_inode = file_inode(&k8s.bed.memif_socket());
    let rx_before = k8s.memif_rx_packets();
    let mut edited = tunnel_resource(&name, &peer_public);
    edited["spec"]["wireguard"]["peers"][0]["allowedIPs"] = serde_json::json!([
        "172.22.77.33/32",
        "fd28:cb8f:4c92::33/128",
        "fe80::42:1817:1/128",
        "172.22.77.34/32"
    ]);
    edited["spec"]["wireguard"]["peers"][0]["persistentKeepalive"] = 25.into();
    let applied = k8s.apply(&edited).await;
    assert_eq!(applied.metadata.generation, Some(2));
    k8s.wait_for("Ready at generation 2", is_ready).await;
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let allowed = Command::new("wg")
            .args(["show", &name, "allowed-ips"])
            .output()
            .expect("wg runs");
        let keepalive = Command::new("wg")
            .args(["show", &name, "persistent-keepalive"])
            .output()
            .expect("wg runs");
        if text(&allowed).contains("172.22.77.34/32") && text(&keepalive).contains("\t25") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the edit did not reach the tunnel: {}{}",
            text(&allowed),
            text(&keepalive)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    k8s.pings_cross_both_ways();
    assert_eq!(
        k8s.peer_handshake(&public),
        handshake,
        "a new handshake: the session was not kept"
    );
    assert_eq!(k8s.memif_index(), Some(index), "a new memif");
    assert!(
        k8s.memif_rx_packets() > rx_before,
        "the memif's counters were reset"
    );
    assert_eq!(
        file_inode(&k8s.bed.memif_socket()),
        socket_inode,
        "the memif socket was served anew"
    );

    // Deleting the resource stops the tunnel before the finalizer lets it go: VPP is as it was before.
    k8s.tunnels()
        .delete(&name, &DeleteParams::default())
        .await
        .expect("delete");
    k8s.wait_deleted().await;
    assert_eq!(k8s.bed.objects(), before, "{}", k8s.controller_log());
    assert!(!k8s.bed.memif_socket().exists());
    assert!(!k8s.bed.uapi_socket().exists());
    let listed = events.list(&Default::default()).await.expect("events");
    assert!(
        has_event(&listed.items, "Stopped", &name),
        "no Stopped event: {:#?}",
        listed.items
    );
    k8s.assert_controller_runs();
}

/// The agent restarts: SIGTERM stops the tunnel on the way out (VPP as it was), the next controller brings
/// it back Ready with a new handshake and traffic; after `kill -9` (VPP's objects left behind) the next one
/// sweeps them and brings it back too. The private key comes from a Secret the operator created.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_controller_brings_the_tunnel_back() {
    let Some(mut k8s) = K8sBed::up().await else {
        return;
    };
    let name = k8s.name();
    let peer_public = peer_public_key(&k8s.bed);
    let ours = std::fs::read(k8s.bed.dir().join("keys/ours.key")).expect("ours.key");
    let ours_public = std::fs::read_to_string(k8s.bed.dir().join("keys/ours.pub"))
        .expect("ours.pub")
        .trim()
        .to_string();
    let before = k8s.bed.objects();
    k8s.put_secret("memif", "secret", b"demo-secret").await;
    k8s.put_secret(&format!("{name}-key"), "privateKey", &ours)
        .await;
    k8s.start_controller();
    k8s.apply(&tunnel_resource(&name, &peer_public)).await;
    let ready = k8s.wait_for("Ready", is_ready).await;
    assert_eq!(
        ready.status.as_ref().and_then(|s| s.public_key.as_deref()),
        Some(ours_public.as_str())
    );
    // The peer knows this key already, so its keepalive may complete the handshake before any ping.
    k8s.pings_cross_both_ways();
    k8s.wait_for_handshake(&ours_public, 1);

    for signal in ["TERM", "KILL"] {
        let status = k8s.signal_controller(signal);
        if signal == "TERM" {
            // SIGTERM stops every tunnel, with the full undo, before the process exits.
            assert!(status.success(), "{status}:\n{}", k8s.controller_log());
            assert_eq!(
                k8s.bed.objects(),
                before,
                "SIGTERM left objects in VPP:\n{}",
                k8s.controller_log()
            );
        } else {
            // A killed controller undoes nothing.
            assert!(k8s.memif_index().is_some(), "kill -9 undid something?");
        }
        // The next controller starts the tunnel again (sweeping what a killed one left): Ready, a new
        // handshake reported in the status, traffic both ways, one memif in the bridge.
        let restarted = now_secs();
        k8s.start_controller();
        let deadline = Instant::now() + TIMEOUT;
        while !k8s.bed.vppctl("show memif").contains("connected") {
            k8s.assert_controller_runs();
            assert!(
                Instant::now() < deadline,
                "after SIG{signal}: the memif did not come back: {}\n{}",
                k8s.bed.vppctl("show memif"),
                k8s.controller_log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        k8s.pings_cross_both_ways();
        k8s.wait_for_handshake(&ours_public, restarted);
        k8s.wait_for("Ready with the new handshake", |t| {
            is_ready(t) && status_handshake_recent(t)
        })
        .await;
        let interfaces = k8s.bed.vppctl("show interface");
        assert_eq!(
            interfaces
                .lines()
                .filter(|l| l.starts_with("memif"))
                .count(),
            1,
            "after SIG{signal}: {interfaces}"
        );
        assert!(
            k8s.bed
                .vppctl("show bridge-domain 4242 detail")
                .contains(MEMIF)
        );
    }

    k8s.tunnels()
        .delete(&name, &DeleteParams::default())
        .await
        .expect("delete");
    k8s.wait_deleted().await;
    assert_eq!(k8s.bed.objects(), before, "{}", k8s.controller_log());
}

/// The real runtime's supervision and readiness on a real VPP. The tunnel's task ends by itself (its
/// UAPI socket is removed, which stops a tunnel as the original did): the controller reports it
/// (`TaskEnded`, an event, a restart counted in the metrics) and starts it again after its backoff,
/// Ready with its memif in VPP and traffic both ways. With VPP gone, `/readyz` fails naming VPP's API
/// socket while `/healthz` stays fine; with VPP back, the tunnel and readiness come back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ended_tunnel_is_restarted_and_readiness_follows_vpp() {
    let Some(mut k8s) = K8sBed::up().await else {
        return;
    };
    let name = k8s.name();
    let peer_public = peer_public_key(&k8s.bed);
    let ours = std::fs::read(k8s.bed.dir().join("keys/ours.key")).expect("ours.key");
    let ours_public = std::fs::read_to_string(k8s.bed.dir().join("keys/ours.pub"))
        .expect("ours.pub")
        .trim()
        .to_string();
    k8s.put_secret("memif", "secret", b"demo-secret").await;
    k8s.put_secret(&format!("{name}-key"), "privateKey", &ours)
        .await;
    k8s.start_controller();
    k8s.apply(&tunnel_resource(&name, &peer_public)).await;
    k8s.wait_for("Ready", is_ready).await;
    let ready = k8s
        .http_until("/readyz", "ready", |r| r.starts_with("200"))
        .await;
    assert!(
        ready.contains("1 of 1 tunnels of node node-a Running"),
        "{ready}"
    );
    assert!(k8s.http_get("/healthz").starts_with("200"));

    // The tunnel's task ends by itself, undoing its VPP objects; the controller starts it again.
    std::fs::remove_file(k8s.bed.uapi_socket()).expect("remove the UAPI socket");
    k8s.http_until("/metrics", "the restart counted", |m| {
        m.contains(&format!(
            "wireguard_vpp_tunnel_restarts_total{{interface=\"{name}\"}} 1\n"
        ))
    })
    .await;
    let events: Api<k8s_openapi::api::events::v1::Event> =
        Api::namespaced(k8s.client.clone(), NAMESPACE);
    let listed = events.list(&Default::default()).await.expect("events");
    assert!(
        has_event(&listed.items, "TaskEnded", &name),
        "no TaskEnded event: {:#?}",
        listed.items
    );
    let restarted = now_secs();
    k8s.wait_for("Ready again", is_ready).await;
    let deadline = Instant::now() + TIMEOUT;
    while !k8s.bed.vppctl("show memif").contains("connected") || !k8s.bed.uapi_socket().exists() {
        k8s.assert_controller_runs();
        assert!(
            Instant::now() < deadline,
            "the tunnel did not come back: {}\n{}",
            k8s.bed.vppctl("show memif"),
            k8s.controller_log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    k8s.pings_cross_both_ways();
    k8s.wait_for_handshake(&ours_public, restarted.saturating_sub(1));

    // VPP goes away: not ready, naming VPP's API socket; still healthy.
    k8s.bed.stop_vpp();
    let not_ready = k8s
        .http_until("/readyz", "VPP missed", |r| r.starts_with("503"))
        .await;
    assert!(
        not_ready.contains("- vpp: cannot connect to VPP's API socket")
            && not_ready.contains("api.sock"),
        "{not_ready}"
    );
    let health = k8s.http_get("/healthz");
    assert!(health.starts_with("200"), "{health}");
    k8s.bed.start_vpp();
    k8s.http_until("/readyz", "ready again", |r| r.starts_with("200"))
        .await;
    k8s.wait_for("Ready after VPP came back", is_ready).await;
    let deadline = Instant::now() + TIMEOUT;
    while !k8s.bed.vppctl("show memif").contains("connected") {
        k8s.assert_controller_runs();
        assert!(
            Instant::now() < deadline,
            "the memif did not come back: {}\n{}",
            k8s.bed.vppctl("show memif"),
            k8s.controller_log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    k8s.pings_cross_both_ways();
    let private = String::from_utf8_lossy(&ours).trim().to_string();
    assert!(
        !k8s.controller_log().contains(&private),
        "the private key is in the controller's log"
    );
}

/// A tunnel named `name` on the bed's node with no `listenPort` and no `uid` (both allocated), its own
/// response address `respond` on bridge 4242, and the bed's peer.
fn tunnel_without_port(name: &str, respond: &str, peer_public: &str) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "wgvpp.io/v1alpha1",
        "kind": "WireGuardVppTunnel",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "nodeName": NODE,
            "bridgeID": 4242,
            "memifSecretRef": {"name": "memif", "key": "secret"},
            "arp": {"respond": [respond]},
            "wireguard": {
                "privateKeySecretRef": {"name": format!("{name}-key"), "key": "privateKey"},
                "peers": [{"publicKey": peer_public, "allowedIPs": [respond]}]
            }
        }
    })
}

impl K8sBed {
    /// Applies (server-side) a tunnel resource of any name.
    async fn apply_named(&self, object: &serde_json::Value) {
        let name = object["metadata"]["name"].as_str().expect("a name");
        self.tunnels()
            .patch(name, &PatchParams::apply("e2e-test"), &Patch::Apply(object))
            .await
            .expect("tunnel applied");
    }

    /// Waits until `check` holds for tunnel `name`, or fails with its last state and the log.
    async fn wait_for_named(
        &mut self,
        name: &str,
        what: &str,
        check: impl Fn(&WireGuardVppTunnel) -> bool,
    ) -> WireGuardVppTunnel {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let current = self.tunnels().get_opt(name).await.expect("get");
            if let Some(tunnel) = &current
                && check(tunnel)
            {
                return tunnel.clone();
            }
            self.assert_controller_runs();
            assert!(
                Instant::now() < deadline,
                "{name}: {what} not reached in time; last: {current:#?}\n{}",
                self.controller_log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Deletes tunnel `name` and waits until it is gone.
    async fn delete_and_wait(&mut self, name: &str) {
        self.tunnels()
            .delete(name, &DeleteParams::default())
            .await
            .expect("delete");
        let deadline = Instant::now() + TIMEOUT;
        while self.tunnels().get_opt(name).await.expect("get").is_some() {
            self.assert_controller_runs();
            assert!(
                Instant::now() < deadline,
                "{name}: the finalizer was not released:\n{}",
                self.controller_log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// The UDP port tunnel `name` listens on, as `wg show` reads it over the tunnel's UAPI socket.
fn wg_listen_port(name: &str) -> u16 {
    let out = Command::new("wg")
        .args(["show", name, "listen-port"])
        .output()
        .expect("wg runs");
    assert!(out.status.success(), "wg show {name}: {}", text(&out));
    text(&out).trim().parse().expect("a port")
}

/// A UDP socket on `port` of every address, held by a process in the controller's namespace.
struct PortBlocker(Child);

impl PortBlocker {
    fn start(bed: &VppBed, port: u16) -> PortBlocker {
        let script = format!(
            "import socket, sys, time\ns = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)\n\
             s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)\ns.bind(('::', {port}))\n\
             print('ready', flush=True)\ntime.sleep(3600)\n"
        );
        let mut child = Command::new("ip")
            .args(["netns", "exec", &format!("{}-wg", bed.name())])
            .args(["python3", "-c", &script])
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("the blocker answers");
        assert_eq!(line.trim(), "ready", "the blocker did not bind port {port}");
        PortBlocker(child)
    }
}

impl Drop for PortBlocker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Listen ports and a start that fails half way, on the real runtime and VPP. A tunnel whose
/// `listenPort` is taken on the node fails to start, says so naming the port, and leaves VPP exactly
/// as it was (the port is bound before anything is created in VPP). Two tunnels without a
/// `listenPort` get free ports of their own (the taken one is claimed by the first tunnel's spec),
/// both run with their memifs connected, and `wg show` reads the ports their status reports.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ports_are_allocated_per_node_and_a_failed_start_leaves_vpp_as_it_was() {
    let Some(mut k8s) = K8sBed::up().await else {
        return;
    };
    let name = k8s.name();
    let peer_public = peer_public_key(&k8s.bed);
    let before = k8s.bed.objects();
    k8s.put_secret("memif", "secret", b"demo-secret").await;
    k8s.start_controller();

    // Port 51820 is taken in the controller's namespace: the tunnel that names it cannot start.
    let blocker = PortBlocker::start(&k8s.bed, 51820);
    k8s.apply(&tunnel_resource(&name, &peer_public)).await;
    let failed = k8s
        .wait_for("not Ready because the port is taken", |t| {
            condition(t, "Ready").is_some_and(|c| c.0 == "False" && c.1 == "StartFailed")
        })
        .await;
    let message = failed
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
        .map(|c| c.message.clone())
        .unwrap_or_default();
    assert!(message.contains("51820"), "{message}");
    assert_eq!(k8s.bed.objects(), before, "{}", k8s.controller_log());
    assert!(!k8s.bed.memif_socket().exists());

    // Two tunnels without a port (nor a uid): each gets a free one, and both run.
    let (second, third) = (format!("{name}b"), format!("{name}c"));
    for (tunnel, respond) in [(&second, "172.22.77.34/32"), (&third, "172.22.77.35/32")] {
        k8s.apply_named(&tunnel_without_port(tunnel, respond, &peer_public))
            .await;
    }
    let mut ports = Vec::new();
    for tunnel in [&second, &third] {
        let ready = k8s
            .wait_for_named(tunnel, "Ready", |t| {
                condition(t, "Ready").is_some_and(|c| c.0 == "True")
            })
            .await;
        let port = ready.status.as_ref().and_then(|s| s.listen_port);
        assert_eq!(port, Some(wg_listen_port(tunnel)), "{tunnel}");
        ports.extend(port);
    }
    // The lowest free ports, the one the first tunnel names skipped, in whichever order the two
    // tunnels were reconciled.
    ports.sort_unstable();
    assert_eq!(ports, [51821, 51822]);

    drop(blocker);
    for tunnel in [&name, &second, &third] {
        k8s.delete_and_wait(tunnel).await;
    }
    assert_eq!(k8s.bed.objects(), before, "{}", k8s.controller_log());
}

/// A tunnel deleted while no agent runs: the agent is killed (`kill -9`, nothing undone), the tunnel
/// is deleted (its finalizer keeps it, marked for deletion), and the next agent removes its memif,
/// socket id, host routes and neighbour entries from VPP before it starts anything, then lets the
/// resource go. A second tunnel, deleted and its finalizer removed by hand while no agent runs, is
/// swept too, from the record the first agent kept next to its memif socket. VPP's dumps then show
/// what they showed before any tunnel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_agent_sweeps_what_tunnels_deleted_meanwhile_left_in_vpp() {
    let Some(mut k8s) = K8sBed::up().await else {
        return;
    };
    let name = k8s.name();
    let peer_public = peer_public_key(&k8s.bed);
    let before = k8s.bed.objects();
    k8s.put_secret("memif", "secret", b"demo-secret").await;
    k8s.start_controller();
    k8s.apply(&tunnel_resource(&name, &peer_public)).await;
    let second = format!("{name}b");
    k8s.apply_named(&tunnel_without_port(
        &second,
        "172.22.77.34/32",
        &peer_public,
    ))
    .await;
    k8s.wait_for("Ready", is_ready).await;
    k8s.wait_for_named(&second, "Ready", |t| {
        condition(t, "Ready").is_some_and(|c| c.0 == "True")
    })
    .await;
    // Traffic, so that VPP holds neighbour entries learned from our answers too.
    k8s.point_peer_at(ready_public_key(&k8s.tunnels().get(&name).await.expect("get")).as_str());
    k8s.pings_cross_both_ways();
    let fib = k8s.bed.vppctl("show ip fib 172.22.77.34/32");
    assert!(
        fib.contains("loop42"),
        "the second tunnel's host route: {fib}"
    );

    let status = k8s.signal_controller("KILL");
    assert!(!status.success());
    assert!(k8s.memif_index().is_some(), "kill -9 undid something?");
    k8s.tunnels()
        .delete(&name, &DeleteParams::default())
        .await
        .expect("delete");
    k8s.tunnels()
        .delete(&second, &DeleteParams::default())
        .await
        .expect("delete");
    // The second one's finalizer goes by hand: the resource is gone before any agent sees it.
    k8s.tunnels()
        .patch(
            &second,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"metadata": {"finalizers": null}})),
        )
        .await
        .expect("finalizer removed");
    assert!(k8s.tunnels().get_opt(&second).await.expect("get").is_none());
    assert!(k8s.tunnels().get_opt(&name).await.expect("get").is_some());

    k8s.start_controller();
    k8s.wait_deleted().await;
    assert_eq!(k8s.bed.objects(), before, "{}", k8s.controller_log());
    let left: Vec<String> = std::fs::read_dir(k8s.bed.dir().join("run"))
        .expect("memif dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|f| f.starts_with(&name))
        .collect();
    assert!(left.is_empty(), "left in the memif directory: {left:?}");
    k8s.assert_controller_runs();
}

/// The public key a tunnel's status reports.
fn ready_public_key(tunnel: &WireGuardVppTunnel) -> String {
    tunnel
        .status
        .as_ref()
        .and_then(|s| s.public_key.clone())
        .expect("status.publicKey")
}
