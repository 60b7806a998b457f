//! Memory per tunnel and idle CPU of many tunnels in one process, as the controller runs them.
//!
//! `cargo bench --bench tunnel_scale`: 1, 16 and 64 tunnels, each with its memif connected to a client in
//! a second process (standing in for VPP, so that the client's shared memory is not counted here; its
//! pages we touch are, as with VPP) and its WireGuard device up, then left idle.
//!
//! `cargo bench --bench tunnel_scale -- --vpp [N...]` (root; default 1 64 256): against a real VPP of its
//! own per N (scripts/peers/vpp.sh, which finds VPP by `VPP_HOME`, `../shared/vpp`, then the PATH). Each
//! tunnel creates its memif in VPP's bridge 4242 over the binary API and gets a private key and one peer;
//! the run measures the time until every tunnel is Running and VPP's own memif dump shows every memif
//! connected, the RSS and idle CPU (10 s) that follow, threads and fds, then stops all tunnels and reads
//! what VPP has left.
//!
//! Each prints a Markdown table; the figures go to BENCHMARKS.md.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use wireguard_vpp::config::{self, Env};
use wireguard_vpp::memif::{ClientConfig, Connection};
use wireguard_vpp::tunnel::{Phase, RunOptions, Tunnel, VppAccess};
use wireguard_vpp::vpp::messages::{MemifDump, MemifSocketFilenameDump};
use wireguard_vpp::vpp::types::IfStatusFlags;
use wireguard_vpp::vpp::{Client, ClientOptions};
use wireguard_vpp::wg::Key;
use wireguard_vpp::wg::uapi::Command as Uapi;

const COUNTS: [usize; 3] = [1, 16, 64];
const VPP_COUNTS: [usize; 3] = [1, 64, 256];
const IDLE_WINDOW: Duration = Duration::from_secs(5);
const VPP_IDLE_WINDOW: Duration = Duration::from_secs(10);
/// How long the real-VPP run waits for all tunnels (the target is a minute).
const VPP_UP_LIMIT: Duration = Duration::from_secs(120);
/// USER_HZ on Linux: the unit of utime and stime in /proc.
const TICKS_PER_SECOND: f64 = 100.0;

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
    if let Some(at) = args.iter().position(|a| a == "--vpp-one-size") {
        let count = args[at + 1].parse().expect("a count");
        return vpp_one_size(count, Path::new(&args[at + 2]));
    }
    if let Some(at) = args.iter().position(|a| a == "--vpp") {
        // Counts follow until the next flag (cargo appends `--bench`).
        let counts: Vec<usize> = args[at + 1..]
            .iter()
            .map_while(|a| a.parse().ok())
            .collect();
        return vpp_sizes(if counts.is_empty() {
            &VPP_COUNTS
        } else {
            &counts
        });
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

/// The gateway file (`gw_extra` adds its install settings) and one interface file per tunnel, each
/// with its own uid (so its own MACs and memif), one IPv4 and one IPv6 address behind it.
fn write_configs(dir: &Path, count: usize, gw_extra: &str, if_extra: &str) {
    std::fs::create_dir_all(dir.join("if")).expect("dir");
    std::fs::create_dir_all(dir.join("gw")).expect("dir");
    std::fs::write(
        dir.join("gw/4242.json"),
        format!(
            r#"{{"GatewayMacAddr": "42:42:42:42:42:42", "WgIfMacaddrPrefix": "98:D2:93", "VppIfMacaddrPrefix": "A4:77:33"{gw_extra}}}"#
        ),
    )
    .expect("gw file");
    for i in 0..count {
        let json = format!(
            r#"{{"uid": {}, "IPv4ArpResponseRanges": ["172.22.{}.{}/32"], "IPv6NdpNeighAdvRanges": ["fd28::{:x}/128"], "VppBridgeID": 4242{if_extra}}}"#,
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
    proc_status_field("/proc/self/status", "VmRSS:")
}

/// A numeric field of a `/proc/.../status` file (`VmRSS:` in kB, `Threads:`, ...).
fn proc_status_field(path: &str, field: &str) -> u64 {
    let status = std::fs::read_to_string(path).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("status field")
}

/// CPU time (user + system) of this process, in clock ticks.
fn cpu_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("proc stat");
    let after_name = &stat[stat.rfind(')').expect("stat format") + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime")
}

/// Context switches (voluntary and not) of all this process's threads: each idle wakeup is one.
fn context_switches() -> u64 {
    std::fs::read_dir("/proc/self/task")
        .expect("proc tasks")
        .filter_map(Result::ok)
        .map(|task| {
            let path = task.path().join("status");
            let path = path.to_str().expect("utf-8 path");
            proc_status_field(path, "voluntary_ctxt_switches:")
                + proc_status_field(path, "nonvoluntary_ctxt_switches:")
        })
        .sum()
}

/// Time on a CPU of all this process's threads, in nanoseconds (`/proc/.../schedstat`: exact, where
/// utime+stime come in 10 ms ticks).
fn run_time_ns() -> u64 {
    std::fs::read_dir("/proc/self/task")
        .expect("proc tasks")
        .filter_map(Result::ok)
        .filter_map(|task| std::fs::read_to_string(task.path().join("schedstat")).ok())
        .filter_map(|stat| stat.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("proc fds")
        .count()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn one_size(count: usize) {
    let dir = tempfile::tempdir().expect("temp dir");
    write_configs(&dir.path().join("etc"), count, "", "");
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
    let idle_percent = ticks as f64 / TICKS_PER_SECOND / IDLE_WINDOW.as_secs_f64() * 100.0;
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

/// A VPP of its own (scripts/peers/vpp.sh) in `dir/vpp`, stopped on drop, also when the run fails.
struct Vpp {
    dir: PathBuf,
}

impl Vpp {
    fn start(dir: &Path) -> Vpp {
        let vpp = Vpp {
            dir: dir.join("vpp"),
        };
        let out = vpp.sh("start", &[]);
        assert!(
            out.status.success(),
            "vpp.sh start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        vpp
    }

    fn sh(&self, command: &str, args: &[&str]) -> std::process::Output {
        Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/peers/vpp.sh"))
            .arg(command)
            .arg(&self.dir)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("vpp.sh runs")
    }
}

impl Drop for Vpp {
    fn drop(&mut self) {
        let _ = self.sh("stop", &[]);
    }
}

/// One real VPP and one measuring process per count.
fn vpp_sizes(counts: &[usize]) {
    println!(
        "| tunnels | all Running (s) | all memifs connected in VPP (s) | RSS added (MiB) | RSS per tunnel (KiB) \
         | idle CPU (% of a core, 10 s: utime+stime / run time) | wakeups/s | threads | fds | stop all (s) | memifs / socket ids left in VPP |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for &count in counts {
        let dir = tempfile::tempdir().expect("temp dir");
        let vpp = Vpp::start(dir.path());
        let out = Command::new(std::env::current_exe().expect("own path"))
            .arg("--vpp-one-size")
            .arg(count.to_string())
            .arg(dir.path())
            .stderr(Stdio::inherit())
            .output()
            .expect("runs");
        print!("{}", String::from_utf8_lossy(&out.stdout));
        if !out.status.success() {
            // No `show memif` here: a VPP whose hundreds of API clients vanished at once may not answer
            // its CLI any more (see BENCHMARKS.md).
            eprintln!("{count} tunnels failed");
            // `exit` runs no destructors: VPP and the directory go first.
            drop(vpp);
            drop(dir);
            std::process::exit(1);
        }
        drop(vpp);
    }
}

/// `count` tunnels against the VPP in `dir/vpp`, measured; one table row on stdout.
#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn vpp_one_size(count: usize, dir: &Path) {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .try_init();
    let api_socket = dir.join("vpp/api.sock");
    // As the e2e tests' files: host routes on the BVI through the API, learning ranges on the bridge.
    write_configs(
        &dir.join("etc"),
        count,
        r#", "VppBridgeLoop_InstallMethod": "api", "VppBridgeLoop_SwIfName": "loop42",
            "VppBridgeLoop_InstallRoutes": {"IPv4": true, "IPv6": true, "IPv6 link-local": true}"#,
        r#", "IPv4ArpLearningRanges": ["10.127.111.0/24"], "IPv6NdpLearningRanges": ["fd00:4242::/64"]"#,
    );
    let env = Env::from_lookup(|key| match key {
        "VPP_MEMIF_SOCKET_DIR" => Some(dir.join("run").display().to_string()),
        "VPP_API_SOCKET_PATH" => Some(api_socket.display().to_string()),
        _ => None,
    })
    .expect("env");
    // The watcher's own connection is made before the baseline, so it is not counted per tunnel.
    let watcher = Client::connect(ClientOptions::new(&api_socket))
        .await
        .expect("VPP's API");
    let before = rss_kib();

    let started = Instant::now();
    let mut tunnels = Vec::with_capacity(count);
    for i in 0..count {
        let cfg = config::load(&dir.join("etc"), &format!("t{i}"), &env).expect("config");
        let mut options = RunOptions::new(&api_socket);
        options.uapi_dir = dir.join("uapi");
        options.listen_port = 0;
        let tunnel = Tunnel::start(cfg, options).await.expect("tunnel starts");
        // As the controller does after the start: a private key and one peer.
        let peer = Key::generate_private().public_key();
        tunnel
            .device()
            .set(&[
                Uapi::PrivateKey(Some(Key::generate_private())),
                Uapi::Peer(peer),
                Uapi::Endpoint(SocketAddr::from((Ipv4Addr::LOCALHOST, 9))),
                Uapi::AllowedIp(
                    format!("172.22.{}.{}/32", i / 200, i % 200 + 1)
                        .parse()
                        .expect("net"),
                ),
                Uapi::AllowedIp(format!("fd28::{:x}/128", i + 1).parse().expect("net")),
            ])
            .await
            .expect("WireGuard configuration");
        tunnels.push(tunnel);
    }

    let (mut running_at, mut connected_at) = (None, None);
    let mut last_dump = None;
    while running_at.is_none() || connected_at.is_none() {
        if running_at.is_none() {
            let mut all = true;
            for tunnel in &tunnels {
                let status = tunnel.status().borrow().clone();
                assert!(
                    status.phase != Phase::Stopped,
                    "{} stopped: {:?}",
                    tunnel.name(),
                    status.error
                );
                all &= status.phase == Phase::Running;
            }
            if all {
                running_at = Some(started.elapsed());
            }
        }
        if connected_at.is_none() {
            let up = IfStatusFlags(IfStatusFlags::ADMIN_UP.0 | IfStatusFlags::LINK_UP.0);
            let memifs = watcher.dump(&MemifDump).await.expect("memif dump");
            let connected = memifs.iter().filter(|m| m.flags.contains(up)).count();
            last_dump = Some((memifs.len(), connected));
            if connected == count {
                connected_at = Some(started.elapsed());
            }
        }
        assert!(
            started.elapsed() < VPP_UP_LIMIT,
            "not all up after {VPP_UP_LIMIT:?}: Running {running_at:?}, VPP's memifs (all, connected) {last_dump:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // VPP's CLI says the same as its dump.
    let show = Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/peers/vpp.sh"))
        .args(["ctl"])
        .arg(dir.join("vpp"))
        .args(["show", "memif"])
        .output()
        .expect("vpp.sh ctl");
    let show = String::from_utf8_lossy(&show.stdout);
    let connected = show
        .lines()
        .filter(|l| l.trim_start().starts_with("flags") && l.contains(" connected"))
        .count();
    assert_eq!(connected, count, "`show memif`:\n{show}");

    tokio::time::sleep(Duration::from_secs(1)).await;
    let added = rss_kib().saturating_sub(before);
    let threads = proc_status_field("/proc/self/status", "Threads:");
    let fds = open_fds();
    // For a profiler to attach to (`perf record -g -p PID`) while the tunnels idle.
    eprintln!(
        "tunnel_scale: {count} tunnels up; idle window of {VPP_IDLE_WINDOW:?} starts (pid {})",
        std::process::id()
    );
    let (ticks_before, run_before, switches_before) =
        (cpu_ticks(), run_time_ns(), context_switches());
    tokio::time::sleep(VPP_IDLE_WINDOW).await;
    let ticks = cpu_ticks() - ticks_before;
    let run_ns = run_time_ns() - run_before;
    let switches = context_switches() - switches_before;
    let window = VPP_IDLE_WINDOW.as_secs_f64();
    let idle_percent = ticks as f64 / TICKS_PER_SECOND / window * 100.0;
    let run_percent = run_ns as f64 / 1e9 / window * 100.0;

    let stopping = Instant::now();
    let mut stops = tokio::task::JoinSet::new();
    for tunnel in tunnels {
        stops.spawn(tunnel.stop());
    }
    while let Some(stopped) = stops.join_next().await {
        stopped.expect("stop task").expect("clean stop");
    }
    let stop_all = stopping.elapsed();
    let memifs_left = watcher.dump(&MemifDump).await.expect("memif dump").len();
    // Socket id 0 is VPP's default socket, always there.
    let sockets_left = watcher
        .dump(&MemifSocketFilenameDump)
        .await
        .expect("socket dump")
        .iter()
        .filter(|s| s.socket_id != 0)
        .count();
    let _ = watcher.close().await;

    let secs = |d: Option<Duration>| d.map_or(0.0, |d| d.as_secs_f64());
    println!(
        "| {count} | {:.1} | {:.1} | {:.1} | {} | {idle_percent:.1} / {run_percent:.2} | {:.0} | {threads} | {fds} | {:.1} | {memifs_left} / {sockets_left} |",
        secs(running_at),
        secs(connected_at),
        added as f64 / 1024.0,
        added / count as u64,
        switches as f64 / window,
        stop_all.as_secs_f64(),
    );
    assert_eq!(
        (memifs_left, sockets_left),
        (0, 0),
        "VPP kept memifs or socket ids"
    );
}
