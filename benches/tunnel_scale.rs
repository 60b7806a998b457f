//! Memory per tunnel and idle CPU: 1, 16 and 64 tunnels in one process (as the controller runs them),
//! each with its memif connected to a client in a second process (standing in for VPP, so that the
//! client's shared memory is not counted here; its pages we touch are, as with VPP) and its WireGuard
//! device up, then left idle.
//!
//! `cargo bench --bench tunnel_scale` prints a table; the figures go to BENCHMARKS.md.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use wireguard_vpp::config::{self, Env};
use wireguard_vpp::memif::{ClientConfig, Connection};
use wireguard_vpp::tunnel::{Phase, RunOptions, Tunnel, VppAccess};

const COUNTS: [usize; 3] = [1, 16, 64];
const IDLE_WINDOW: Duration = Duration::from_secs(5);

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|a| a == "--memif-clients") {
        let dir = PathBuf::from(&args[at + 1]);
        let count: usize = args[at + 2].parse().expect("a count");
        return run_clients(&dir, count);
    }
    if let Some(at) = args.iter().position(|a| a == "--one-size") {
        return one_size(args[at + 1].parse().expect("a count"));
    }
    println!("| tunnels | RSS added (MiB) | RSS per tunnel (KiB) | idle CPU (% of one core) |");
    println!("|---|---|---|---|");
    for count in COUNTS {
        let exe = std::env::current_exe().expect("own path");
        let out = Command::new(exe)
            .args(["--one-size", &count.to_string()])
            .output()
            .expect("runs");
        if !out.status.success() {
            eprintln!("{}", String::from_utf8_lossy(&out.stderr));
            std::process::exit(1);
        }
        print!("{}", String::from_utf8_lossy(&out.stdout));
    }
}

/// Connected memif clients, one per tunnel, idle until killed.
fn run_clients(dir: &Path, count: usize) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let mut connections = Vec::new();
        for i in 0..count {
            let cfg = ClientConfig {
                id: uid(i),
                ..ClientConfig::default()
            };
            let socket = dir.join(format!("run/t{i}.sock"));
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                match Connection::connect(&socket, &cfg).await {
                    Ok(connection) => break connections.push(connection),
                    Err(_) if Instant::now() < deadline => {
                        tokio::time::sleep(Duration::from_millis(20)).await
                    }
                    Err(err) => panic!("memif client {i}: {err}"),
                }
            }
        }
        std::future::pending::<()>().await;
    });
}

fn uid(i: usize) -> u32 {
    u32::try_from(i).expect("small") + 1
}

fn write_configs(dir: &Path, count: usize) {
    std::fs::create_dir_all(dir.join("if")).expect("dir");
    std::fs::create_dir_all(dir.join("gw")).expect("dir");
    std::fs::write(
        dir.join("gw/4242.json"),
        r#"{"GatewayMacAddr": "42:42:42:42:42:42", "WgIfMacaddrPrefix": "98:D2:93", "VppIfMacaddrPrefix": "A4:77:33"}"#,
    )
    .expect("gw file");
    for i in 0..count {
        let json = format!(
            r#"{{"uid": {}, "IPv4ArpResponseRanges": ["172.22.{}.{}/32"], "IPv6NdpNeighAdvRanges": ["fd28::{:x}/128"], "VppBridgeID": 4242}}"#,
            uid(i),
            i / 200,
            i % 200 + 1,
            i + 1
        );
        std::fs::write(dir.join(format!("if/t{i}.json")), json).expect("if file");
    }
}

/// Resident set size of this process, in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// CPU time (user + system) of this process, in clock ticks.
fn cpu_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("proc stat");
    let after_name = &stat[stat.rfind(')').expect("stat format") + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime")
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn one_size(count: usize) {
    let dir = tempfile::tempdir().expect("temp dir");
    write_configs(&dir.path().join("etc"), count);
    let env = Env::from_lookup(|key| match key {
        "VPP_MEMIF_SOCKET_DIR" => Some(dir.path().join("run").display().to_string()),
        _ => None,
    })
    .expect("env");
    let before = rss_kib();
    let mut tunnels = Vec::new();
    for i in 0..count {
        let cfg = config::load(&dir.path().join("etc"), &format!("t{i}"), &env).expect("config");
        let mut options = RunOptions::new(Path::new("unused"));
        options.vpp = VppAccess::Off;
        options.uapi_dir = dir.path().join("uapi");
        tunnels.push(Tunnel::start(cfg, options).await.expect("tunnel starts"));
    }
    let mut clients: Child = Command::new(std::env::current_exe().expect("own path"))
        .arg("--memif-clients")
        .arg(dir.path())
        .arg(count.to_string())
        .spawn()
        .expect("clients");
    for tunnel in &tunnels {
        let mut status = tunnel.status();
        tokio::time::timeout(
            Duration::from_secs(60),
            status.wait_for(|s| s.phase == Phase::Running),
        )
        .await
        .expect("tunnel running in time")
        .expect("status");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let added = rss_kib().saturating_sub(before);
    let ticks_before = cpu_ticks();
    tokio::time::sleep(IDLE_WINDOW).await;
    let ticks = cpu_ticks() - ticks_before;
    let ticks_per_second = 100.0; // USER_HZ on Linux
    let idle_percent = ticks as f64 / ticks_per_second / IDLE_WINDOW.as_secs_f64() * 100.0;
    println!(
        "| {count} | {:.1} | {} | {idle_percent:.2} |",
        added as f64 / 1024.0,
        added / count as u64
    );
    for tunnel in tunnels {
        tunnel.stop().await.expect("clean stop");
    }
    let _ = clients.kill();
    let _ = clients.wait();
}
