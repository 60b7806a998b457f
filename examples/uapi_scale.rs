//! How long `wg` takes against our UAPI socket with many peers, next to Debian's wireguard-go
//! doing the same operations in the same run: `setconf` of N new peers, an unchanged `syncconf`,
//! `show dump`, and a `syncconf` that replaces every peer.
//!
//! Needs root, `wg`, `wireguard-go` and `ip` (wireguard-go runs in a throw-away network namespace;
//! both UAPI sockets live in /var/run/wireguard, where `wg` looks). Everything started is removed
//! at the end, also on a panic.
//!
//! Run: `cargo run --release --example uapi_scale [peers]` (default 2000).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use wireguard_vpp::wg::channel::ip_channel;
use wireguard_vpp::wg::uapi::{DEFAULT_SOCKET_DIR, UapiListener};
use wireguard_vpp::wg::{DeviceSettings, Key, WgDevice};

/// Kills wireguard-go by PID and deletes its namespace and socket on drop.
struct Peer {
    child: Child,
    ns: String,
    socket: PathBuf,
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
        let _ = std::fs::remove_file(&self.socket);
    }
}

fn main() {
    let peers: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(2000);
    let pid = std::process::id();
    let ours = format!("wgsc{}", pid % 1_000_000);
    let theirs = format!("wgsg{}", pid % 1_000_000);
    let temp = tempfile::tempdir().expect("tempdir");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");

    let peer = start_wireguard_go(&format!("wgscale{pid}"), &theirs);
    let _serving = runtime.block_on(async {
        let (tx, rx, ends) = ip_channel(64, 1420);
        let settings = DeviceSettings {
            name: ours.clone(),
            ..DeviceSettings::default()
        };
        let device = Arc::new(WgDevice::new(settings, tx, rx).await.expect("our device"));
        let listener =
            UapiListener::bind(Path::new(DEFAULT_SOCKET_DIR), &ours).expect("our UAPI socket");
        (tokio::spawn(listener.serve(device)), ends)
    });

    let first = write_config(temp.path(), "first.conf", peers);
    let second = write_config(temp.path(), "second.conf", peers);
    println!(
        "uapi_scale: {peers} peers, one allowed IP and an endpoint each; seconds per `wg` command"
    );
    println!("{:<40} {:>10} {:>14}", "operation", "ours", "wireguard-go");
    for (label, args) in [
        ("setconf (all peers new)", vec!["setconf", "IF", &first]),
        ("syncconf (unchanged)", vec!["syncconf", "IF", &first]),
        ("show dump", vec!["show", "IF", "dump"]),
        (
            "syncconf (every peer replaced)",
            vec!["syncconf", "IF", &second],
        ),
        ("show dump", vec!["show", "IF", "dump"]),
    ] {
        let ours_time = time_wg(&args, &ours);
        let theirs_time = time_wg(&args, &theirs);
        println!(
            "{label:<40} {:>10.3} {:>14.3}",
            ours_time.as_secs_f64(),
            theirs_time.as_secs_f64()
        );
    }
    let count = |name: &str| run_wg(&["show", name, "peers"]).lines().count();
    assert_eq!(
        (count(&ours), count(&theirs)),
        (peers, peers),
        "both ended with every peer"
    );
    drop(peer);
}

fn start_wireguard_go(ns: &str, name: &str) -> Peer {
    let ok = Command::new("ip")
        .args(["netns", "add", ns])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "cannot create namespace {ns} (run as root)");
    std::fs::create_dir_all(DEFAULT_SOCKET_DIR).expect("socket directory");
    let child = Command::new("ip")
        .args([
            "netns",
            "exec",
            ns,
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
    let socket = Path::new(DEFAULT_SOCKET_DIR).join(format!("{name}.sock"));
    let peer = Peer {
        child,
        ns: ns.to_owned(),
        socket,
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !peer.socket.exists() {
        assert!(Instant::now() < deadline, "wireguard-go did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    peer
}

fn write_config(dir: &Path, name: &str, peers: usize) -> String {
    let mut text = format!(
        "[Interface]\nPrivateKey = {}\n",
        Key(rand::random()).to_base64()
    );
    for i in 0..peers {
        text.push_str(&format!(
            "\n[Peer]\nPublicKey = {}\nAllowedIPs = 10.{}.{}.0/24\nEndpoint = 192.0.2.{}:{}\n",
            Key(rand::random()).public_key().to_base64(),
            100 + i / 256,
            i % 256,
            1 + i % 250,
            1024 + i
        ));
    }
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write config");
    path.to_str().expect("utf-8 path").to_owned()
}

fn time_wg(args: &[&str], name: &str) -> Duration {
    let args: Vec<&str> = args
        .iter()
        .map(|a| if *a == "IF" { name } else { a })
        .collect();
    let started = Instant::now();
    run_wg(&args);
    started.elapsed()
}

fn run_wg(args: &[&str]) -> String {
    let output = Command::new("wg").args(args).output().expect("run wg");
    assert!(
        output.status.success(),
        "wg {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}
