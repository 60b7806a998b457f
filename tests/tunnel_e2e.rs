//! One tunnel end to end, with real parts only (the topology of scripts/peers/topology.sh):
//! a kernel IP stack on a TAP device stands in for VPP's bridge, joined to our memif by dpdk-testpmd
//! (memif client, io forwarding); our daemon runs with `--no-vpp-api` because VPP itself cannot run
//! here (its API side is covered by the vpp tests); a Debian wireguard-go is the far peer.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The namespaces, peers and daemon of one test; everything is removed on drop, also on failure.
struct Topology {
    prefix: String,
    dir: tempfile::TempDir,
    daemon: Option<Child>,
}

impl Topology {
    fn up() -> Option<Topology> {
        for (program, purpose) in [
            ("dpdk-testpmd", "memif peer"),
            ("wireguard-go", "WireGuard peer"),
            ("wg", "UAPI client"),
            ("iperf3", "TCP transfer"),
            ("ip", "network namespaces"),
        ] {
            if !common::require(program, purpose) {
                return None;
            }
        }
        if !common::require_root("the end-to-end tunnel test") {
            return None;
        }
        let prefix = common::unique("e");
        let topology = Topology {
            prefix,
            dir: tempfile::tempdir().expect("temp dir"),
            daemon: None,
        };
        topology.script("up", &[]);
        Some(topology)
    }

    fn script(&self, command: &str, extra: &[&str]) {
        let out = Command::new(common::project_root().join("scripts/peers/topology.sh"))
            .args([command, &self.prefix])
            .arg(self.dir.path())
            .args(extra)
            .output()
            .expect("topology.sh runs");
        assert!(
            out.status.success(),
            "topology.sh {command}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn name(&self) -> &str {
        &self.prefix
    }

    fn uapi_socket(&self) -> PathBuf {
        PathBuf::from(format!("/var/run/wireguard/{}.sock", self.name()))
    }

    fn memif_socket(&self) -> PathBuf {
        self.dir().join(format!("run/{}.sock", self.name()))
    }

    fn start_daemon(&mut self) {
        self.spawn_daemon(&[]);
        wait_for("the memif socket", || self.memif_socket().exists());
    }

    /// Starts the daemon with extra arguments, without waiting for anything.
    fn spawn_daemon(&mut self, extra: &[&str]) {
        let log = std::fs::File::create(self.dir().join("daemon.log")).expect("log file");
        let child = Command::new("ip")
            .args(["netns", "exec", &format!("{}-wg", self.prefix)])
            .arg(env!("CARGO_BIN_EXE_wireguard-vpp"))
            .args(["--foreground", "--no-vpp-api"])
            .args(extra)
            .arg(self.name())
            .env("VPP_MEMIF_CONFIG_DIR", self.dir().join("etc"))
            .env("VPP_MEMIF_SOCKET_DIR", self.dir().join("run"))
            .env("LOG_LEVEL", "debug")
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("daemon starts");
        self.daemon = Some(child);
    }

    fn start_testpmd(&self) {
        self.script("testpmd", &[]);
    }

    fn start_testpmd_as_server(&self) {
        self.script("testpmd", &["server"]);
    }

    fn stop_testpmd(&self) {
        let pid = std::fs::read_to_string(self.dir().join("testpmd.pid")).expect("testpmd pid");
        let _ = Command::new("kill").args(["-INT", pid.trim()]).status();
        wait_for("testpmd to exit", || {
            !Command::new("kill")
                .args(["-0", pid.trim()])
                .status()
                .is_ok_and(|s| s.success())
        });
        std::fs::remove_file(self.dir().join("testpmd.pid")).ok();
        let _ = std::fs::remove_dir_all(format!("/var/run/dpdk/{}", self.prefix));
    }

    fn configure_wireguard(&self) {
        wait_for("the UAPI socket", || self.uapi_socket().exists());
        let out = Command::new("wg")
            .args(["setconf", self.name()])
            .arg(self.dir().join("ours.conf"))
            .output()
            .expect("wg runs");
        assert!(
            out.status.success(),
            "wg setconf: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn in_ns(&self, ns: &str, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &format!("{}-{ns}", self.prefix)])
            .args(args)
            .output()
            .expect("command runs")
    }

    fn daemon_log(&self) -> String {
        std::fs::read_to_string(self.dir().join("daemon.log")).unwrap_or_default()
    }

    /// After a failure: stops the daemon and testpmd, whose logs then hold what each dropped.
    fn evidence(&mut self) -> String {
        if self.daemon_is_running() {
            self.terminate_daemon();
        }
        if self.dir().join("testpmd.pid").exists() {
            self.stop_testpmd();
        }
        let testpmd = std::fs::read_to_string(self.dir().join("testpmd.log")).unwrap_or_default();
        format!("daemon:\n{}\ntestpmd:\n{testpmd}", self.daemon_log())
    }

    fn daemon_is_running(&mut self) -> bool {
        self.daemon
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    fn terminate_daemon(&mut self) -> std::process::ExitStatus {
        let mut child = self.daemon.take().expect("daemon started");
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status;
            }
            assert!(Instant::now() < deadline, "daemon did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        if let Some(mut child) = self.daemon.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.script("down", &[]);
        let _ = std::fs::remove_file(self.uapi_socket());
    }
}

fn wait_for(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Pings until one answer came back (ARP/NDP and the handshake are resolved), then sends `count`
/// echoes and requires every one of them back.
fn ping_without_loss(t: &mut Topology, ns: &str, dst: &str, count: u32) {
    ping_losing_at_most(t, ns, dst, count, 0);
}

/// As [`ping_without_loss`], with up to `lost` echoes unanswered.
fn ping_losing_at_most(t: &mut Topology, ns: &str, dst: &str, count: u32, lost: u32) {
    let family = if dst.contains(':') { "-6" } else { "-4" };
    let warm = t.in_ns(ns, &["ping", family, "-c", "1", "-w", "10", dst]);
    assert!(
        warm.status.success(),
        "no answer from {dst} in {ns}: {}\n{}",
        text(&warm),
        t.daemon_log()
    );
    let out = t.in_ns(
        ns,
        &[
            "ping",
            family,
            "-q",
            "-c",
            &count.to_string(),
            "-i",
            "0.002",
            "-W",
            "2",
            dst,
        ],
    );
    let report = text(&out);
    let received = report
        .split(", ")
        .find_map(|part| part.strip_suffix(" received")?.parse::<u32>().ok())
        .unwrap_or(0);
    if received + lost < count {
        panic!("ping {dst} from {ns}: {report}\n{}", t.evidence());
    }
}

#[test]
fn ping_iperf_multicast_reconnect_and_clean_shutdown() {
    let Some(mut t) = Topology::up() else { return };
    t.start_daemon();
    t.start_testpmd();
    t.configure_wireguard();

    // 1000 echoes each way and each family, with no loss once resolved.
    ping_without_loss(&mut t, "lan", "172.22.77.33", 1000);
    ping_without_loss(&mut t, "lan", "fd28:cb8f:4c92::33", 1000);
    ping_without_loss(&mut t, "peer", "172.22.77.1", 1000);
    ping_without_loss(&mut t, "peer", "fd28:cb8f:4c92::1", 1000);

    // A TCP transfer of a known size arrives whole.
    tcp_transfer_arrives_whole(&t);

    // Multicast from the bridge side reaches the peer (routing protocols over the tunnel, B7).
    multicast_reaches_the_peer(&t);

    // testpmd (standing in for VPP's memif) dies and comes back: the daemon waits and recovers.
    t.stop_testpmd();
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        t.daemon_is_running(),
        "the daemon exited when the memif went away:\n{}",
        t.daemon_log()
    );
    t.start_testpmd();
    // This step checks that forwarding resumes; the 4000 echoes above check that it loses nothing.
    // One echo in a hundred was once lost here in CI, right after testpmd came back (not seen in
    // runs by hand): tolerated, and more than that fails with both ends' drop counters.
    ping_losing_at_most(&mut t, "lan", "172.22.77.33", 100, 1);
    assert!(
        t.daemon_log().contains("memif reconnected"),
        "{}",
        t.daemon_log()
    );

    // SIGTERM: exit 0 and no socket file left behind.
    let status = t.terminate_daemon();
    assert!(
        status.success(),
        "exit status {status:?}:\n{}",
        t.daemon_log()
    );
    assert!(!t.uapi_socket().exists(), "UAPI socket left behind");
    assert!(!t.memif_socket().exists(), "memif socket left behind");
}

fn tcp_transfer_arrives_whole(t: &Topology) {
    let receiver = Command::new("ip")
        .args(["netns", "exec", &format!("{}-peer", t.prefix)])
        .args(["python3", "-c", common::TCP_RECEIVER])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 receiver");
    std::thread::sleep(Duration::from_millis(500));
    let sender = t.in_ns("lan", &["python3", "-c", &common::tcp_sender(20, 0.0)]);
    let receiver = receiver.wait_with_output().expect("receiver ends");
    assert!(sender.status.success(), "sender: {}", text(&sender));
    let (sent, received) = (text(&sender), text(&receiver));
    assert!(sent.starts_with("20971520 "), "sender: {sent}");
    assert_eq!(
        sent.trim(),
        received.trim(),
        "the peer did not get the same bytes"
    );
}

fn multicast_reaches_the_peer(t: &Topology) {
    let receiver = Command::new("ip")
        .args(["netns", "exec", &format!("{}-peer", t.prefix)])
        .args(["python3", "-c", MULTICAST_RECEIVER])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 receiver");
    std::thread::sleep(Duration::from_millis(500));
    for _ in 0..5 {
        let sent = t.in_ns("lan", &["python3", "-c", MULTICAST_SENDER]);
        assert!(sent.status.success(), "{}", text(&sent));
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = receiver.wait_with_output().expect("receiver ends");
    assert!(
        text(&out).contains("got hello-ospf from 172.22.77.1"),
        "multicast: {}",
        text(&out)
    );
}

const MULTICAST_RECEIVER: &str = r#"
import socket, struct
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("224.0.0.5", 8089))
s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, struct.pack("4s4s", socket.inet_aton("224.0.0.5"), socket.inet_aton("172.22.77.33")))
s.settimeout(5)
data, src = s.recvfrom(100)
print("got", data.decode(), "from", src[0])
"#;

const MULTICAST_SENDER: &str = r#"
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("172.22.77.1"))
s.sendto(b"hello-ospf", ("224.0.0.5", 8089))
"#;

/// `--memif-role client`: testpmd listens (as VPP does when it is the memif master) and we connect,
/// retrying until its socket is there.
#[test]
fn our_end_as_memif_client_of_a_listening_peer() {
    let Some(mut t) = Topology::up() else { return };
    t.spawn_daemon(&["--memif-role", "client"]);
    std::thread::sleep(Duration::from_millis(300));
    t.start_testpmd_as_server();
    t.configure_wireguard();
    ping_without_loss(&mut t, "lan", "172.22.77.33", 200);
    ping_without_loss(&mut t, "peer", "fd28:cb8f:4c92::1", 200);
    let status = t.terminate_daemon();
    assert!(
        status.success(),
        "exit status {status:?}:\n{}",
        t.daemon_log()
    );
    assert!(!t.uapi_socket().exists(), "UAPI socket left behind");
}

#[test]
fn a_bad_config_exits_non_zero_before_anything_is_created() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir_all(dir.path().join("etc/if")).expect("dir");
    std::fs::create_dir_all(dir.path().join("etc/gw")).expect("dir");
    std::fs::write(
        dir.path().join("etc/if/bad.json"),
        r#"{"uid": 3, "IPv4ArpResponseRanges": ["172.22.77.33/33"], "VppBridgeID": 4242}"#,
    )
    .expect("write");
    std::fs::write(
        dir.path().join("etc/gw/4242.json"),
        r#"{"GatewayMacAddr": "42:42:42:42:42:42", "WgIfMacaddrPrefix": "98:D2:93", "VppIfMacaddrPrefix": "A4:77:33"}"#,
    )
    .expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_wireguard-vpp"))
        .args(["-f", "bad"])
        .env("VPP_MEMIF_CONFIG_DIR", dir.path().join("etc"))
        .env("VPP_MEMIF_SOCKET_DIR", dir.path().join("run"))
        .env("VPP_API_SOCKET_PATH", dir.path().join("api.sock"))
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let message = text(&out);
    assert!(
        message.contains("172.22.77.33/33") && message.contains("IPv4ArpResponseRanges"),
        "{message}"
    );
    assert!(!dir.path().join("run/bad.sock").exists());
    assert!(!Path::new("/var/run/wireguard/bad.sock").exists());
}
