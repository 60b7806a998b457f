//! Helpers for the tests against real WireGuard peers: Debian's `wireguard-go` in a network
//! namespace and the `wg` tool. Every namespace and process started here is removed by a guard's
//! `Drop`, also when the test fails; names carry the process id and a counter so parallel tests and
//! test binaries do not collide.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use wireguard_vpp::wg::Key;
use wireguard_vpp::wg::uapi::DEFAULT_SOCKET_DIR;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A short unique suffix: the process id and a counter (interface names fit in 15 bytes).
pub fn unique() -> (u32, u32) {
    (
        std::process::id() % 1_000_000,
        COUNTER.fetch_add(1, Ordering::Relaxed),
    )
}

/// True when every program these tests need is present and we are root (see `common`).
pub fn peers_available() -> bool {
    crate::common::require_root("WireGuard peer tests")
        && crate::common::require("wireguard-go", "WireGuard peer")
        && crate::common::require("wg", "WireGuard UAPI client")
        && crate::common::require("ip", "network namespaces")
}

/// Runs a program and returns its output (never fails: the caller asserts).
pub fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"))
}

/// Runs a program and panics with its stderr unless it succeeds; returns stdout.
pub fn run_ok(program: &str, args: &[&str]) -> String {
    let output = run(program, args);
    assert!(
        output.status.success(),
        "{program} {args:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A fresh key pair from `wg genkey` / `wg pubkey`, so the real tool vouches for our key handling.
pub fn genkey() -> (Key, Key) {
    let private = run_ok("wg", &["genkey"]);
    let mut child = Command::new("wg")
        .arg("pubkey")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("wg pubkey");
    use std::io::Write;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(private.as_bytes())
        .expect("write key");
    let public = child.wait_with_output().expect("wg pubkey output");
    let private = Key::from_base64(private.trim()).expect("wg genkey gives a key");
    let public = Key::from_base64(String::from_utf8_lossy(&public.stdout).trim())
        .expect("wg pubkey gives a key");
    assert_eq!(
        private.public_key(),
        public,
        "our public key derivation agrees with wg pubkey"
    );
    (private, public)
}

/// Writes a key in base64 to a file (for `wg set ... private-key FILE`).
pub fn key_file(dir: &Path, name: &str, key: &Key) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("{}\n", key.to_base64())).expect("write key file");
    path
}

/// A network namespace, deleted on drop (which also deletes the veth ends inside it).
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(name: String) -> Netns {
        let _ = run("ip", &["netns", "del", &name]);
        run_ok("ip", &["netns", "add", &name]);
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// `ip -n NS ...`.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut all = vec!["-n", &self.name];
        all.extend_from_slice(args);
        run_ok("ip", &all)
    }

    /// `ip netns exec NS program args...`.
    pub fn exec(&self, program: &str, args: &[&str]) -> Output {
        let mut all = vec!["netns", "exec", &self.name, program];
        all.extend_from_slice(args);
        run("ip", &all)
    }

    /// Starts a long-running program inside the namespace.
    pub fn spawn(&self, program: &str, args: &[&str]) -> Child {
        Command::new("ip")
            .args(["netns", "exec", &self.name, program])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {program} in {}: {e}", self.name))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = run("ip", &["netns", "del", &self.name]);
    }
}

/// A process killed (by its PID) and reaped on drop.
pub struct ProcessGuard {
    pub child: Child,
    /// A file the process would remove on a clean exit (its UAPI socket), removed here instead.
    pub leaves_behind: Option<PathBuf>,
}

impl Drop for ProcessGuard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(path) = &self.leaves_behind {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// The UAPI socket path of interface `name` where `wg` looks.
pub fn socket_path(name: &str) -> PathBuf {
    Path::new(DEFAULT_SOCKET_DIR).join(format!("{name}.sock"))
}

/// Starts Debian's wireguard-go as interface `name` inside `ns` and waits for its UAPI socket.
pub fn start_wireguard_go(ns: &Netns, name: &str) -> ProcessGuard {
    std::fs::create_dir_all(DEFAULT_SOCKET_DIR).expect("socket directory");
    let mut child = Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns.name,
            "env",
            "WG_PROCESS_FOREGROUND=1",
            "LOG_LEVEL=error",
            "wireguard-go",
            "-f",
            name,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start wireguard-go");
    let socket = socket_path(name);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !socket.exists() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("wireguard-go {name} exited early: {status}");
        }
        assert!(
            Instant::now() < deadline,
            "wireguard-go {name} did not create {}",
            socket.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    ProcessGuard {
        child,
        leaves_behind: Some(socket),
    }
}

/// Polls `check` every 50 ms until it returns `Some` or `timeout` passes.
pub async fn eventually<T>(
    timeout: Duration,
    mut check: impl AsyncFnMut() -> Option<T>,
) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return Some(value);
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One's-complement checksum over `chunks` (IPv4 header, ICMP, ICMPv6 with pseudo-header).
pub fn checksum(chunks: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    for chunk in chunks {
        let mut words = chunk.chunks_exact(2);
        for w in &mut words {
            sum += u32::from(u16::from_be_bytes([w[0], w[1]]));
        }
        if let [last] = words.remainder() {
            sum += u32::from(*last) << 8;
        }
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An ICMP echo (type 8 request or 0 reply) in IPv4.
pub fn icmpv4_echo(
    src: [u8; 4],
    dst: [u8; 4],
    kind: u8,
    id: u16,
    seq: u16,
    payload: &[u8],
) -> Vec<u8> {
    let mut icmp = vec![kind, 0, 0, 0];
    icmp.extend_from_slice(&id.to_be_bytes());
    icmp.extend_from_slice(&seq.to_be_bytes());
    icmp.extend_from_slice(payload);
    let sum = checksum(&[&icmp]);
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());
    let total = (20 + icmp.len()) as u16;
    let mut ip = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 1, 0, 0];
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    ip.extend_from_slice(&src);
    ip.extend_from_slice(&dst);
    let sum = checksum(&[&ip]);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    ip.extend_from_slice(&icmp);
    ip
}

/// An ICMPv6 echo (type 128 request or 129 reply) in IPv6.
pub fn icmpv6_echo(
    src: [u8; 16],
    dst: [u8; 16],
    kind: u8,
    id: u16,
    seq: u16,
    payload: &[u8],
) -> Vec<u8> {
    let mut icmp = vec![kind, 0, 0, 0];
    icmp.extend_from_slice(&id.to_be_bytes());
    icmp.extend_from_slice(&seq.to_be_bytes());
    icmp.extend_from_slice(payload);
    let len = (icmp.len() as u32).to_be_bytes();
    let sum = checksum(&[&src, &dst, &len, &[0, 0, 0, 58], &icmp]);
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());
    let mut ip = vec![0x60, 0, 0, 0];
    ip.extend_from_slice(&(icmp.len() as u16).to_be_bytes());
    ip.extend_from_slice(&[58, 64]);
    ip.extend_from_slice(&src);
    ip.extend_from_slice(&dst);
    ip.extend_from_slice(&icmp);
    ip
}

/// (type, id, seq) of an ICMP or ICMPv6 echo packet, or `None` for anything else.
pub fn echo_fields(packet: &[u8]) -> Option<(u8, u16, u16)> {
    let icmp = match packet.first()? >> 4 {
        4 if packet.get(9) == Some(&1) => packet.get(usize::from(packet[0] & 0xf) * 4..)?,
        6 if packet.get(6) == Some(&58) => packet.get(40..)?,
        _ => return None,
    };
    if icmp.len() < 8 {
        return None;
    }
    Some((
        icmp[0],
        u16::from_be_bytes([icmp[4], icmp[5]]),
        u16::from_be_bytes([icmp[6], icmp[7]]),
    ))
}
