//! The drop-in daemon `wireguard-vpp -f NAME`, a real child process, against a stand-in for VPP, for the
//! cases a real VPP cannot make (each test says why): a step that fails on purpose, a memif that never
//! connects, the window before it connects, and proofs that no request was made at all. Everything a
//! real VPP can show is tested against one in `tunnel_vpp_e2e.rs`.
//!
//! `scripts/vpp/fake_vpp.py` plays VPP's API socket (vpp-papi's serializer, the message table of VPP
//! v26.06, answering as VPP does and recording every request), and the project's own memif client plays
//! VPP's memif slave, connecting to the daemon's memif socket with id = uid and the secret, as VPP would.

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use wireguard_vpp::memif::{ClientConfig, Connection, Control, Frame, RxQueue, TxQueue};

/// The VPP API stand-in as a child process, killed by PID when dropped (also when the test fails).
struct FakeVpp {
    child: Child,
    socket: PathBuf,
    record: PathBuf,
}

impl FakeVpp {
    /// Starts the stand-in with the BVI `loop42` (sw_if_index 1) and `args`; `None` (skip) without the venv.
    fn start(dir: &Path, args: &[&str]) -> Option<FakeVpp> {
        let socket = dir.join(format!("api-{}.sock", common::unique("")));
        let record = dir.join(format!("record-{}.jsonl", common::unique("")));
        FakeVpp::start_at(socket, record, args)
    }

    /// Starts the stand-in on `socket` (e.g. again, after a "restart"), recording into `record`.
    fn start_at(socket: PathBuf, record: PathBuf, args: &[&str]) -> Option<FakeVpp> {
        let python = common::venv_python()?;
        let root = common::project_root();
        let mut child = Command::new(python)
            .arg(root.join("scripts/vpp/fake_vpp.py"))
            .arg("--socket")
            .arg(&socket)
            .arg("--api-dir")
            .arg(root.join("vpp-api"))
            .arg("--record")
            .arg(&record)
            .args(["--interface", "1=loop42"])
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start fake_vpp.py");
        let mut ready = String::new();
        BufReader::new(child.stdout.take().expect("piped stdout"))
            .read_line(&mut ready)
            .expect("read READY");
        let vpp = FakeVpp {
            child,
            socket,
            record,
        };
        assert_eq!(ready.trim(), "READY", "fake_vpp.py did not start");
        Some(vpp)
    }

    /// The requests recorded so far, without the connection's own messages, the pings ending dumps, and
    /// the queries and subscription that change nothing in VPP (the neighbour sweep's dumps, the BVI's
    /// MTU, interface events): the sequences below list what changes VPP.
    fn calls(&self) -> Vec<Call> {
        std::fs::read_to_string(&self.record)
            .unwrap_or_default()
            .lines()
            .map(|line| {
                let v: Value = serde_json::from_str(line).expect("record line");
                (
                    v["name"].as_str().expect("name").to_owned(),
                    v["fields"].clone(),
                )
            })
            .filter(|(name, _)| {
                !matches!(
                    name.as_str(),
                    "sockclnt_create"
                        | "sockclnt_delete"
                        | "control_ping"
                        | "ip_neighbor_dump"
                        | "sw_interface_dump"
                        | "want_interface_events"
                )
            })
            .collect()
    }

    /// Waits until `done` holds for the recorded calls, and returns them.
    fn wait_for(&self, what: &str, done: impl Fn(&[Call]) -> bool) -> Vec<Call> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let calls = self.calls();
            if done(&calls) {
                return calls;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; recorded: {calls:#?}"
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for FakeVpp {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `if/<name>.json` of the spec's common fixture.
const FIXTURE_IF: &str = r#"{"uid": 3, "secret": "s3cr3t",
 "IPv4ArpResponseRanges": ["172.22.77.33/32"],
 "IPv6NdpNeighAdvRanges": ["fd28:cb8f:4c92::33/128", "fe80::42:1817:1/128"],
 "IPv4ArpLearningRanges": ["10.127.111.0/24"],
 "IPv6NdpLearningRanges": ["fd10:127:e00f::/64"],
 "VppBridgeID": 4242}"#;

/// `gw/4242.json` of the spec's common fixture.
const FIXTURE_GW: &str = r#"{"GatewayMacAddr": "42:42:42:42:42:42", "WgIfMacaddrPrefix": "98:D2:93", "VppIfMacaddrPrefix": "A4:77:33",
 "VppBridgeLoop_InstallMethod": "api", "VppBridgeLoop_SwIfIndex": 1, "VppBridgeLoop_SwIfName": "loop42",
 "VppBridgeLoop_InstallNeighbor": {"IPv4": true, "IPv6": true, "IPv6 link-local": true},
 "VppBridgeLoop_InstallNeighbor_Flag": {"static": true},
 "VppBridgeLoop_InstallRoutes": {"IPv4": true, "IPv6": false, "IPv6 link-local": true}}"#;

/// The daemon under test, `wireguard-vpp -f <name>` with the fixture's files in a temporary folder. Killed
/// by PID on drop (also when the test fails), and its UAPI socket file removed.
struct Daemon {
    name: String,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Daemon {
    /// Starts the daemon with the fixture against the API socket `api`, with extra environment variables.
    fn start(api: &Path, env: &[(&str, &str)]) -> Daemon {
        Daemon::start_with(api, FIXTURE_IF, Some(FIXTURE_GW), env)
    }

    /// Starts the daemon with these `if/<name>.json` and `gw/4242.json` (none: missing).
    fn start_with(
        api: &Path,
        if_json: &str,
        gw_json: Option<&str>,
        env: &[(&str, &str)],
    ) -> Daemon {
        Daemon::spawn(api, if_json, gw_json, env)
    }

    fn spawn(api: &Path, if_json: &str, gw_json: Option<&str>, env: &[(&str, &str)]) -> Daemon {
        let dir = tempfile::tempdir().expect("temp dir");
        let name = format!("tv{}", common::unique(""));
        let etc = dir.path().join("etc");
        std::fs::create_dir_all(etc.join("if")).expect("if folder");
        std::fs::create_dir_all(etc.join("gw")).expect("gw folder");
        std::fs::write(etc.join(format!("if/{name}.json")), if_json).expect("if file");
        if let Some(gw_json) = gw_json {
            std::fs::write(etc.join("gw/4242.json"), gw_json).expect("gw file");
        }
        let log = std::fs::File::create(dir.path().join("daemon.log")).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_wireguard-vpp"))
            .arg("-f")
            .arg(&name)
            .env_remove("WG_PROCESS_FOREGROUND")
            .env("VPP_API_SOCKET_PATH", api)
            .env("VPP_MEMIF_CONFIG_DIR", &etc)
            .env("VPP_MEMIF_SOCKET_DIR", dir.path().join("run"))
            .env("LOG_LEVEL", "debug")
            .env_remove("RUST_LOG")
            .envs(env.iter().copied())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("the daemon starts");
        Daemon {
            name,
            dir,
            child: Some(child),
        }
    }

    fn uapi_socket(&self) -> PathBuf {
        PathBuf::from(format!("/var/run/wireguard/{}.sock", self.name))
    }

    fn memif_socket(&self) -> PathBuf {
        self.dir.path().join(format!("run/{}.sock", self.name))
    }

    /// The memif socket path as the daemon gives it to VPP.
    fn memif_socket_name(&self) -> String {
        self.memif_socket().display().to_string()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("daemon.log")).unwrap_or_default()
    }

    fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        let sent = Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status()
            .expect("kill runs");
        assert!(sent.success(), "kill -{signal} {pid}");
    }

    /// Waits for the daemon to exit by itself within `within`.
    fn exit_status(&mut self, within: Duration) -> ExitStatus {
        let child = self.child.as_mut().expect("started");
        let deadline = Instant::now() + within;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the daemon did not exit within {within:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn wait_for_uapi_socket(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while !is_socket(&self.uapi_socket()) {
            assert!(self.is_running(), "the daemon exited:\n{}", self.log());
            assert!(Instant::now() < deadline, "no UAPI socket:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Gives the WireGuard device a private key through its UAPI socket, as `wg setconf` would right after
    /// start. gotatun reads the IP side (so the memif RX queue, and ARP/NDP there) only once a key is set.
    fn set_private_key(&self) {
        let key = Command::new("wg")
            .arg("genkey")
            .output()
            .expect("wg genkey");
        assert!(key.status.success(), "wg genkey failed");
        let file = self.dir.path().join("private.key");
        std::fs::write(&file, &key.stdout).expect("key file");
        let out = Command::new("wg")
            .args(["set", &self.name, "private-key"])
            .arg(&file)
            .output()
            .expect("wg set");
        assert!(
            out.status.success(),
            "wg set: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
    }

    /// Checks that the daemon is gone and left no socket file behind.
    fn assert_nothing_left(&self) {
        assert!(!self.uapi_socket().exists(), "UAPI socket left behind");
        assert!(!self.memif_socket().exists(), "memif socket left behind");
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_file(self.uapi_socket());
    }
}

fn is_socket(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.file_type().is_socket())
}

/// Whether the test can run: the daemon's UAPI socket lives in /var/run/wireguard (root), `wg` sets its
/// key, and the stand-in needs the project's virtualenv.
fn peers_available() -> bool {
    common::require_root("the daemon's UAPI socket in /var/run/wireguard")
        && common::require("wg", "UAPI client")
        && common::venv_python().is_some()
}

/// VPP's side of the memif: the project's memif client connecting as VPP's slave would.
struct VppMemif {
    control: Control,
    rx: RxQueue,
    tx: TxQueue,
    frames: Vec<Frame>,
}

/// The gateway's (VPP's BVI) MAC and the tunnel's own MAC of the fixture.
const GATEWAY_MAC: [u8; 6] = [0x42; 6];
const SELF_MAC: [u8; 6] = [0x98, 0xd2, 0x93, 0, 0, 3];

impl VppMemif {
    async fn connect(daemon: &Daemon) -> VppMemif {
        VppMemif::try_connect(daemon, "s3cr3t")
            .await
            .unwrap_or_else(|err| panic!("memif connect: {err}\n{}", daemon.log()))
    }

    async fn try_connect(
        daemon: &Daemon,
        secret: &str,
    ) -> Result<VppMemif, wireguard_vpp::memif::Error> {
        let config = ClientConfig {
            id: 3,
            secret: Some(secret.into()),
            app_name: "VPP stand-in".into(),
            if_name: "memif3/3".into(),
            ..ClientConfig::default()
        };
        let connection = Connection::connect(daemon.memif_socket(), &config).await?;
        let (control, rx, tx) = connection.split();
        Ok(VppMemif {
            control,
            rx: rx.into_iter().next().expect("one RX queue"),
            tx: tx.into_iter().next().expect("one TX queue"),
            frames: Frame::batch(8, 2048),
        })
    }

    /// Scenario 12: VPP's BVI asks for the claimed 172.22.77.33; the daemon answers with its own MAC.
    async fn arp_for_claimed_address(&mut self, daemon: &Daemon) {
        let mut request = Vec::with_capacity(42);
        request.extend_from_slice(&[0xff; 6]);
        request.extend_from_slice(&GATEWAY_MAC);
        request.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
        request.extend_from_slice(&GATEWAY_MAC);
        request.extend_from_slice(&[10, 127, 111, 1]);
        request.extend_from_slice(&[0; 6]);
        request.extend_from_slice(&[172, 22, 77, 33]);
        let mut reply = Vec::with_capacity(42);
        reply.extend_from_slice(&GATEWAY_MAC);
        reply.extend_from_slice(&SELF_MAC);
        reply.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 2]);
        reply.extend_from_slice(&SELF_MAC);
        reply.extend_from_slice(&[172, 22, 77, 33]);
        reply.extend_from_slice(&GATEWAY_MAC);
        reply.extend_from_slice(&[10, 127, 111, 1]);

        assert_eq!(self.tx.tx_burst(&[&request[..]]), 1, "ARP request sent");
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let n = self.rx.rx_burst(&mut self.frames);
            if let Some(frame) = self.frames[..n]
                .iter()
                .find(|f| f.as_slice().get(12..14) == Some(&[0x08, 0x06]))
            {
                assert_eq!(frame.as_slice(), &reply[..], "the ARP reply of scenario 12");
                return;
            }
            assert!(Instant::now() < deadline, "no ARP reply:\n{}", daemon.log());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn disconnect(self) {
        self.control.disconnect("the VPP stand-in goes away").await;
    }
}

type Call = (String, Value);

fn call(name: &str, fields: Value) -> Call {
    (name.to_owned(), fields)
}

fn route(is_add: bool, address: &str, proto: u32) -> Call {
    let label = json!({"is_uniform": 0, "label": 0, "ttl": 0, "exp": 0});
    let len = if proto == 0 { 32 } else { 128 };
    call(
        "ip_route_add_del",
        json!({"is_add": is_add, "is_multipath": true, "route": {
            "table_id": 0, "stats_index": 0, "prefix": format!("{address}/{len}"), "n_paths": 1,
            "paths": [{"sw_if_index": 1, "table_id": 0, "rpf_id": 0, "weight": 1, "preference": 1, "type": 0,
                       "flags": 0, "proto": proto,
                       "nh": {"address": {"ip6": "::"}, "via_label": 0, "obj_id": 0, "classify_table_index": 0},
                       "n_labels": 0, "label_stack": vec![label; 16]}]}}),
    )
}

/// The memif interface VPP creates for the tunnel (after loop42 = 1).
const MEMIF: u32 = 2;

/// Scenario 1 with the v2 messages, after the sweep for leftovers of an earlier run.
fn setup_sequence(socket: &str) -> Vec<Call> {
    vec![
        call("memif_socket_filename_dump", json!({})),
        call(
            "memif_socket_filename_add_del_v2",
            json!({"is_add": true, "socket_id": 3, "socket_filename": socket}),
        ),
        call(
            "memif_create_v2",
            json!({"role": 1, "mode": 0, "rx_queues": 1, "tx_queues": 1, "id": 3, "socket_id": 3, "ring_size": 1024,
                   "buffer_size": 2048, "no_zero_copy": true, "use_dma": false, "hw_addr": "a4:77:33:00:00:03",
                   "secret": "s3cr3t"}),
        ),
        call(
            "sw_interface_set_flags",
            json!({"sw_if_index": MEMIF, "flags": 1}),
        ),
        call(
            "sw_interface_set_l2_bridge",
            json!({"rx_sw_if_index": MEMIF, "bd_id": 4242, "port_type": 0, "shg": 0, "enable": true}),
        ),
        route(true, "172.22.77.33", 0),
        route(true, "fe80::42:1817:1", 1),
    ]
}

fn l2fib(is_add: bool) -> Call {
    call(
        "l2fib_add_del",
        json!({"mac": "98:d2:93:00:00:03", "bd_id": 4242, "sw_if_index": MEMIF, "is_add": is_add,
               "static_mac": false, "filter_mac": false, "bvi_mac": false}),
    )
}

fn neighbour(is_add: bool) -> Call {
    call(
        "ip_neighbor_add_del",
        json!({"is_add": is_add, "neighbor": {"sw_if_index": 1, "flags": 1, "mac_address": "98:d2:93:00:00:03",
                                              "ip_address": "172.22.77.33"}}),
    )
}

/// Scenario 4's undo of the setup sequence: routes, memif, socket id.
fn undo_of_setup(socket: &str) -> Vec<Call> {
    vec![
        route(false, "fe80::42:1817:1", 1),
        route(false, "172.22.77.33", 0),
        call("memif_delete", json!({"sw_if_index": MEMIF})),
        call(
            "memif_socket_filename_add_del_v2",
            json!({"is_add": false, "socket_id": 3, "socket_filename": socket}),
        ),
    ]
}

fn names(calls: &[Call]) -> Vec<&str> {
    calls.iter().map(|c| c.0.as_str()).collect()
}

/// Starts the stand-in and the daemon, waits for the setup sequence, connects VPP's memif and waits
/// for the UAPI socket: a running tunnel.
async fn running_tunnel(dir: &Path) -> (FakeVpp, Daemon, VppMemif) {
    let vpp = FakeVpp::start(dir, &[]).expect("checked by peers_available");
    let mut daemon = Daemon::start(&vpp.socket, &[]);
    let socket = daemon.memif_socket_name();
    vpp.wait_for("the setup sequence", |c| c.len() >= 7);
    let memif = VppMemif::connect(&daemon).await;
    daemon.wait_for_uapi_socket();
    daemon.set_private_key();
    let calls = vpp.wait_for("the l2fib entry", |c| c.len() >= 8);
    let mut expected = setup_sequence(&socket);
    expected.push(l2fib(true));
    assert_eq!(calls, expected, "{}", daemon.log());
    (vpp, daemon, memif)
}

/// Scenario 6: VPP's memif goes away and comes back; the daemon stays up and answers again, and its
/// shutdown removes the l2fib entry once although it was added on each connection.
/// Why the stand-in: the l2fib entry, added on every connection, must be removed exactly once; only a
/// record of the calls counts that (VPP's l2fib shows one entry either way).
#[tokio::test]
async fn a_memif_that_drops_is_waited_for_and_serves_again() {
    if !peers_available() {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let (vpp, mut daemon, mut memif) = running_tunnel(dir.path()).await;
    memif.arp_for_claimed_address(&daemon).await;
    memif.disconnect().await;
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        daemon.is_running(),
        "exited on a memif disconnect:\n{}",
        daemon.log()
    );
    assert!(is_socket(&daemon.uapi_socket()), "UAPI socket gone");

    let mut memif = VppMemif::connect(&daemon).await;
    memif.arp_for_claimed_address(&daemon).await;
    let calls = vpp.wait_for("the l2fib entry again", |c| {
        c.iter().filter(|&call| *call == l2fib(true)).count() == 2
    });
    assert_eq!(
        calls.iter().filter(|&c| *c == neighbour(true)).count(),
        1,
        "a neighbour is installed once: {calls:#?}"
    );

    daemon.signal("TERM");
    let status = daemon.exit_status(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "{}", daemon.log());
    let calls = vpp.calls();
    let removals = |wanted: &Call| calls.iter().filter(|&c| c == wanted).count();
    assert_eq!(removals(&l2fib(false)), 1, "{calls:#?}");
    assert_eq!(removals(&neighbour(false)), 1, "{calls:#?}");
    let socket = daemon.memif_socket_name();
    assert_eq!(calls[calls.len() - 4..], undo_of_setup(&socket)[..]);
    daemon.assert_nothing_left();
}

/// The memif never connects: after the configured first-connect timeout the daemon exits 1 with the
/// message saying what to check, and its VPP objects are undone.
/// Why the stand-in: a VPP that creates the memif but never connects it; a real VPP connects at once.
#[tokio::test]
async fn a_memif_that_never_connects_is_an_error_and_undone() {
    if !peers_available() {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let vpp = FakeVpp::start(dir.path(), &[]).expect("stand-in");
    let mut daemon = Daemon::start(&vpp.socket, &[("WGVPP_MEMIF_CONNECT_TIMEOUT", "1")]);
    let status = daemon.exit_status(Duration::from_secs(20));
    let log = daemon.log();
    assert_eq!(status.code(), Some(1), "{log}");
    let socket = daemon.memif_socket_name();
    assert!(
        log.contains(&format!(
            "VPP has not connected to {socket} after 1 s: check"
        )),
        "{log}"
    );
    let mut expected = setup_sequence(&socket);
    expected.extend(undo_of_setup(&socket));
    assert_eq!(vpp.calls(), expected, "{log}");
    daemon.assert_nothing_left();
}

/// SIGTERM before VPP's memif connected: the daemon stops at once (exit 0) and undoes its objects.
/// Why the stand-in: the window before VPP connects, which a real VPP closes in a millisecond.
#[tokio::test]
async fn sigterm_before_the_memif_connects_undoes_vpp() {
    if !peers_available() {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let vpp = FakeVpp::start(dir.path(), &[]).expect("stand-in");
    let mut daemon = Daemon::start(&vpp.socket, &[]);
    let socket = daemon.memif_socket_name();
    vpp.wait_for("the setup sequence", |c| c.len() >= 7);
    daemon.signal("TERM");
    let status = daemon.exit_status(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "{}", daemon.log());
    let mut expected = setup_sequence(&socket);
    expected.extend(undo_of_setup(&socket));
    assert_eq!(vpp.calls(), expected, "{}", daemon.log());
    daemon.assert_nothing_left();
}

/// A setup step VPP refuses: exit 1, the message names the step and VPP's error, the steps before it
/// are undone in reverse, and no socket file is left.
/// Why the stand-in: a setup step that fails on purpose.
#[tokio::test]
async fn a_failing_setup_step_is_named_and_rolled_back() {
    if !peers_available() {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let vpp =
        FakeVpp::start(dir.path(), &["--fail", "sw_interface_set_l2_bridge=-7"]).expect("stand-in");
    let mut daemon = Daemon::start(&vpp.socket, &[]);
    let status = daemon.exit_status(Duration::from_secs(20));
    let log = daemon.log();
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(
        log.contains("\"add the memif to the bridge domain\"")
            && log.contains("INVALID_VALUE (-7)"),
        "{log}"
    );
    let socket = daemon.memif_socket_name();
    let mut expected = setup_sequence(&socket)[..5].to_vec();
    expected.extend(undo_of_setup(&socket)[2..].iter().cloned());
    assert_eq!(vpp.calls(), expected, "{log}");
    assert_eq!(
        names(&expected)[5..],
        ["memif_delete", "memif_socket_filename_add_del_v2"]
    );
    daemon.assert_nothing_left();
}

/// A bad `WGVPP_MEMIF_CONNECT_TIMEOUT` is refused with a message naming it, before VPP is touched.
/// Why the stand-in: it records that not one request reached it, which a real VPP cannot show.
#[tokio::test]
async fn a_bad_connect_timeout_is_refused_before_vpp_is_touched() {
    if !peers_available() {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let vpp = FakeVpp::start(dir.path(), &[]).expect("stand-in");
    let mut daemon = Daemon::start(&vpp.socket, &[("WGVPP_MEMIF_CONNECT_TIMEOUT", "soon")]);
    let status = daemon.exit_status(Duration::from_secs(10));
    let log = daemon.log();
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(
        log.contains("WGVPP_MEMIF_CONNECT_TIMEOUT=\"soon\""),
        "{log}"
    );
    assert_eq!(vpp.calls(), Vec::<Call>::new());
    daemon.assert_nothing_left();
}

/// Scenario 7 (and 9, whose random uid is refused here): a bad configuration exits 1 with its message
/// before VPP is contacted, and leaves no socket file.
/// Why the stand-in: it records that not one request reached it, which a real VPP cannot show (the
/// real-VPP tests check that nothing was created).
#[tokio::test]
async fn config_errors_exit_1_before_vpp_is_contacted() {
    if !peers_available() {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let vpp = FakeVpp::start(dir.path(), &[]).expect("stand-in");
    let cases: [(&str, String, Option<String>, &str); 6] = [
        ("missing gw file", FIXTURE_IF.into(), None, "4242.json"),
        (
            "1-octet prefix",
            FIXTURE_IF.into(),
            Some(FIXTURE_GW.replace("\"98:D2:93\"", "\"98\"")),
            "WgIfMacaddrPrefix",
        ),
        (
            "odd first octet",
            FIXTURE_IF.into(),
            Some(FIXTURE_GW.replace("98:D2:93", "99:D2:93")),
            "99:D2:93",
        ),
        (
            "bad CIDR",
            FIXTURE_IF.replace("172.22.77.33/32", "172.22.77.33/33"),
            Some(FIXTURE_GW.into()),
            "172.22.77.33/33",
        ),
        (
            "IPv6 in the IPv4 list",
            FIXTURE_IF.replace("\"172.22.77.33/32\"", "\"fd00::1/128\""),
            Some(FIXTURE_GW.into()),
            "fd00::1/128",
        ),
        (
            "uid 0",
            FIXTURE_IF.replace("\"uid\": 3", "\"uid\": 0"),
            Some(FIXTURE_GW.into()),
            "uid",
        ),
    ];
    for (case, if_json, gw_json, named) in cases {
        let mut daemon = Daemon::start_with(&vpp.socket, &if_json, gw_json.as_deref(), &[]);
        let status = daemon.exit_status(Duration::from_secs(10));
        let log = daemon.log();
        assert_eq!(status.code(), Some(1), "{case}: {log}");
        assert!(
            log.contains(named),
            "{case}: the message names {named:?}: {log}"
        );
        daemon.assert_nothing_left();
    }
    let everything: Vec<String> = std::fs::read_to_string(&vpp.record)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect();
    assert!(everything.is_empty(), "VPP was contacted: {everything:?}");
}

/// A VPP that comes back but refuses a setup step: the daemon rolls the attempt back and retries with
/// backoff, without exiting; once a VPP accepts it, the tunnel is set up again. SIGTERM then undoes it.
/// Why the stand-in: a VPP that comes back and refuses a step on purpose.
#[tokio::test]
async fn a_refused_setup_after_a_vpp_restart_is_retried() {
    if !peers_available() {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let (mut vpp, mut daemon, memif) = running_tunnel(dir.path()).await;
    vpp.stop();
    memif.disconnect().await;

    let mut refusing = FakeVpp::start_at(
        vpp.socket.clone(),
        dir.path()
            .join(format!("refusing-{}.jsonl", common::unique(""))),
        &["--fail", "sw_interface_set_l2_bridge=-7"],
    )
    .expect("restart the stand-in");
    let socket = daemon.memif_socket_name();
    let attempts = |calls: &[Call]| calls.iter().filter(|c| c.0 == "memif_create_v2").count();
    let calls = refusing.wait_for("two attempts", |c| attempts(c) >= 2);
    // Each attempt is rolled back before the next one.
    let mut attempt = setup_sequence(&socket)[..5].to_vec();
    attempt.extend(undo_of_setup(&socket)[2..].iter().cloned());
    assert_eq!(calls[..attempt.len()], attempt[..], "{}", daemon.log());
    assert!(daemon.is_running(), "{}", daemon.log());
    refusing.stop();

    let accepting = FakeVpp::start_at(
        vpp.socket.clone(),
        dir.path()
            .join(format!("accepting-{}.jsonl", common::unique(""))),
        &[],
    )
    .expect("restart the stand-in");
    let calls = accepting.wait_for("the setup sequence", |c| c.len() >= 7);
    assert_eq!(calls[..7], setup_sequence(&socket)[..], "{}", daemon.log());
    let _memif = VppMemif::connect(&daemon).await;
    accepting.wait_for("the l2fib entry", |c| c.contains(&l2fib(true)));
    daemon.signal("TERM");
    let status = daemon.exit_status(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "{}", daemon.log());
    let calls = accepting.calls();
    let mut undo = vec![l2fib(false)];
    undo.extend(undo_of_setup(&socket));
    assert_eq!(calls[calls.len() - undo.len()..], undo[..], "{calls:#?}");
    daemon.assert_nothing_left();
}
