//! Shared helpers for the integration tests.
//!
//! The peer convention: a test that needs a real peer (a program such as `dpdk-testpmd`, `wireguard-go`,
//! `wg`, or the Python virtualenv with vpp-papi and scapy) asks [`require`] first. When the peer is
//! missing, the test **fails** if the environment variable `CI` is set (`scripts/test.sh` sets it, since it
//! installs every peer), and otherwise skips with a printed reason, so a plain `cargo test` on a bare
//! machine still runs everything else.
#![allow(dead_code)]

pub mod vpp;

use std::path::{Path, PathBuf};
use std::process::Command;

static UNIQUE: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// `prefix` and a suffix unique on this machine while the test runs: the process id and a counter, short
/// enough for interface and namespace names (15 bytes).
pub fn unique(prefix: &str) -> String {
    let n = UNIQUE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{prefix}{}{n}", std::process::id() % 10_000)
}

/// True when missing peers must fail the test instead of skipping it.
pub fn peers_required() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty())
}

/// Checks that `program` can be run (found on `PATH` or an existing path). Returns `false` (skip) with a
/// printed reason when it is missing outside CI; panics when it is missing under `CI`.
pub fn require(program: &str, purpose: &str) -> bool {
    if program_exists(program) {
        return true;
    }
    missing(&format!(
        "`{program}` ({purpose}) is not installed; run scripts/install-deps.sh"
    ))
}

/// Checks that the test runs as root (network namespaces, TAP devices). Same rules as [`require`].
pub fn require_root(purpose: &str) -> bool {
    // Asked through `id` so that the tests need no `unsafe` (geteuid).
    let uid = Command::new("id")
        .arg("-u")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok());
    if uid.as_deref().map(str::trim) == Some("0") {
        return true;
    }
    missing(&format!("{purpose} needs root (network namespaces)"))
}

/// The project's Python virtualenv interpreter with vpp-papi and scapy, if it is installed.
pub fn venv_python() -> Option<PathBuf> {
    let python = project_root().join("target/venv/bin/python");
    if python.is_file() {
        return Some(python);
    }
    missing(
        "the Python virtualenv target/venv (vpp-papi, scapy) is missing; run scripts/install-deps.sh",
    );
    None
}

/// The root of the project (where Cargo.toml is).
pub fn project_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn program_exists(program: &str) -> bool {
    if program.contains('/') {
        return Path::new(program).exists();
    }
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
        .unwrap_or(false)
}

fn missing(reason: &str) -> bool {
    if peers_required() {
        panic!("required test peer missing under CI: {reason}");
    }
    eprintln!("SKIPPED: {reason}");
    false
}

/// A Python program that receives one TCP stream on the peer's 172.22.77.33:5201 and prints its length
/// and SHA-256.
pub const TCP_RECEIVER: &str = r#"
import hashlib, socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("172.22.77.33", 5201)); s.listen(1); s.settimeout(30)
c, _ = s.accept(); c.settimeout(30)
h, n = hashlib.sha256(), 0
while True:
    b = c.recv(1 << 16)
    if not b: break
    h.update(b); n += len(b)
print(n, h.hexdigest())
"#;

/// A Python program that receives numbered UDP datagrams (see [`udp_sequence_sender`]) on `addr`
/// `port` until none came for 3 s, then prints how many arrived and how many came after a higher
/// number (out of order).
pub fn udp_sequence_receiver(addr: &str, port: u16) -> String {
    format!(
        r#"
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 23)
s.bind(("{addr}", {port})); s.settimeout(10)
received, reordered, last = 0, 0, -1
try:
    while True:
        n = int.from_bytes(s.recv(2048)[:8], "big")
        received += 1
        if n < last: reordered += 1
        last = max(last, n)
        s.settimeout(3)
except socket.timeout:
    pass
print(received, reordered)
"#
    )
}

/// A Python program that sends `count` UDP datagrams of 1000 bytes to `addr` `port`, numbered from 0
/// in their first 8 bytes, in bursts of 64 back to back, 1 ms apart.
pub fn udp_sequence_sender(addr: &str, port: u16, count: u32) -> String {
    format!(
        r#"
import socket, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
pad = bytes(992)
for n in range({count}):
    s.sendto(n.to_bytes(8, "big") + pad, ("{addr}", {port}))
    if n % 64 == 63: time.sleep(0.001)
"#
    )
}

/// A Python program that sends `mib` MiB of random bytes to [`TCP_RECEIVER`], in writes of 128 KiB
/// `pause` seconds apart (0: as fast as TCP goes), then prints their length and SHA-256.
pub fn tcp_sender(mib: usize, pause: f64) -> String {
    format!(
        r#"
import hashlib, os, socket, time
data = os.urandom({mib} * 1024 * 1024)
s = socket.create_connection(("172.22.77.33", 5201), timeout=30)
for i in range(0, len(data), 1 << 17):
    s.sendall(data[i:i + (1 << 17)]); time.sleep({pause})
s.close()
print(len(data), hashlib.sha256(data).hexdigest())
"#
    )
}
