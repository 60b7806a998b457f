//! memif throughput, ours against DPDK's, measured in one run and printed side by side.
//!
//! Four one-way streams through one memif ring, for 64-byte frames (Mpps) and 1500-byte frames (Gbit/s):
//! - ours → ours: our client's `tx_burst` loop feeding our server's `rx_burst` loop (two threads);
//! - ours → testpmd: our client feeding a testpmd server in `rxonly` mode;
//! - testpmd → ours: a testpmd client in `txonly` mode feeding our server;
//! - testpmd → testpmd: the DPDK baseline, a `txonly` client feeding an `rxonly` server.
//!
//! Every figure is measured at the receiver (testpmd's own `Rx-pps`, or our count) over the same
//! window, bursts of 32, receive side polling (interrupts masked). Each figure also comes divided by
//! the CPU time the stream's processes got (from `/proc`), which takes out how much of a busy machine
//! the stream was given. A last row runs our tx and rx alternately on one thread: the cost of our code
//! without any cross-CPU traffic. The ratio compares ours → ours with testpmd → testpmd. Needs root and
//! `dpdk-testpmd`; run with `cargo run --release --example memif_bench -- [SECONDS] [ROUNDS]`
//! (defaults 3 and 3; each figure is the best of its rounds, the rounds interleaving the streams).

#[path = "../tests/testpmd/mod.rs"]
mod testpmd;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use testpmd::{Testpmd, TestpmdConfig};
use wireguard_vpp::memif::{
    ClientConfig, Connection, Frame, Listener, RxQueue, ServerConfig, TxQueue,
};

const BURST: usize = 32;
/// Frames circulating in the forwarding loops (testpmd's `--tx-first` injects one burst).
const LOOP_FRAMES: usize = BURST;

fn main() {
    let mut args = std::env::args().skip(1).map(|a| a.parse::<u64>().ok());
    let seconds = args.next().flatten().unwrap_or(3);
    let rounds = args.next().flatten().unwrap_or(3).max(1);
    let window = Duration::from_secs(seconds);
    let dir = tempfile::tempdir().expect("temporary directory");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let _guard = rt.enter();

    let scenarios: [(&str, Scenario); 8] = [
        ("ours -> ours", ours_to_ours),
        ("ours -> testpmd", ours_to_testpmd),
        ("testpmd -> ours", testpmd_to_ours),
        ("testpmd -> testpmd", testpmd_to_testpmd),
        ("loop ours, ours", loop_ours_ours),
        ("loop ours, testpmd", loop_ours_testpmd),
        ("loop testpmd, testpmd", loop_testpmd_testpmd),
        ("ours, one thread", one_thread),
    ];
    // Rounds interleave the scenarios, so that a busy moment of the machine hits all of them alike;
    // each figure is the best of its rounds.
    let mut best = [[Best::default(); 2]; 8];
    for round in 1..=rounds {
        eprintln!("round {round} of {rounds}, load average {}", load_average());
        for (k, (_, run)) in scenarios.iter().enumerate() {
            for (i, len) in [64, 1500].into_iter().enumerate() {
                if let Some(sample) = run(&rt, dir.path(), len, window) {
                    best[k][i].add(sample);
                }
            }
        }
    }
    println!(
        "memif one-way throughput, one ring of 1024 x 2048-byte buffers, bursts of {BURST}, \
         best of {rounds} rounds of {seconds} s, load average {}",
        load_average()
    );
    println!(
        "{:<20} {:>12} {:>14} {:>15} {:>17}",
        "stream", "64 B Mpps", "64 B Mpps/CPU", "1500 B Gbit/s", "1500 B Gbit/s/CPU"
    );
    for ((name, _), [small, large]) in scenarios.iter().zip(best) {
        println!(
            "{:<20} {:>12} {:>14} {:>15} {:>17}",
            name,
            fmt(small.pps.map(|pps| pps / 1e6)),
            fmt(small.per_cpu.map(|pps| pps / 1e6)),
            fmt(large.pps.map(|pps| gbps(pps, 1500))),
            fmt(large.per_cpu.map(|pps| gbps(pps, 1500))),
        );
    }
    let ratio = |a: Option<f64>, b: Option<f64>| fmt(a.zip(b).map(|(a, b)| a / b));
    for (label, ours, dpdk) in [
        ("ratio ours/DPDK", best[0], best[3]),
        ("loop ratio ours/DPDK", best[4], best[6]),
    ] {
        println!(
            "{:<20} {:>12} {:>14} {:>15} {:>17}",
            label,
            ratio(ours[0].pps, dpdk[0].pps),
            ratio(ours[0].per_cpu, dpdk[0].per_cpu),
            ratio(ours[1].pps, dpdk[1].pps),
            ratio(ours[1].per_cpu, dpdk[1].per_cpu),
        );
    }
    println!(
        "(loop: {LOOP_FRAMES} frames circulate between two io forwarders, counted on one side; \
         /CPU: the same figure divided by the CPU time all processes of the stream used per second, \
         which takes out how much of the machine the stream got; \"ours, one thread\": tx then rx \
         alternating on one thread, the cost of our code alone)"
    );
}

/// One measurement: frames per second, and CPUs (CPU-seconds per second) the stream's processes used.
#[derive(Debug, Clone, Copy)]
struct Sample {
    pps: f64,
    cpus: f64,
}

/// The best figures of a stream over the rounds.
#[derive(Debug, Clone, Copy, Default)]
struct Best {
    pps: Option<f64>,
    per_cpu: Option<f64>,
}

impl Best {
    fn add(&mut self, s: Sample) {
        let max = |a: Option<f64>, b: f64| Some(a.map_or(b, |a| a.max(b)));
        self.pps = max(self.pps, s.pps);
        if s.cpus > 0.05 {
            self.per_cpu = max(self.per_cpu, s.pps / s.cpus);
        }
    }
}

/// CPU time used by processes (`self` or pids), as a rate over a stretch of wall time.
struct CpuMeter {
    pids: Vec<String>,
    ticks: u64,
    t0: Instant,
}

impl CpuMeter {
    fn start(pids: Vec<String>) -> CpuMeter {
        let ticks = pids.iter().map(|p| cpu_ticks(p)).sum();
        CpuMeter {
            pids,
            ticks,
            t0: Instant::now(),
        }
    }

    /// CPU-seconds per second since `start`.
    fn cpus(&self) -> f64 {
        let now: u64 = self.pids.iter().map(|p| cpu_ticks(p)).sum();
        (now.saturating_sub(self.ticks)) as f64
            / clock_ticks_per_second()
            / self.t0.elapsed().as_secs_f64()
    }
}

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: &str) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces): state is field 3, utime 14, stime 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| {
        fields
            .get(n - 3)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    field(14) + field(15)
}

fn clock_ticks_per_second() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

fn pids(pmds: &[&Testpmd], with_self: bool) -> Vec<String> {
    let mut v: Vec<String> = pmds
        .iter()
        .filter_map(|p| p.pid())
        .map(|p| p.to_string())
        .collect();
    if with_self {
        v.push("self".into());
    }
    v
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

type Scenario = fn(&tokio::runtime::Runtime, &Path, usize, Duration) -> Option<Sample>;

fn fmt(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a".into(), |v| format!("{v:.2}"))
}

fn gbps(pps: f64, len: usize) -> f64 {
    pps * (len * 8) as f64 / 1e9
}

/// A UDP-like Ethernet frame of `len` bytes.
fn frames(len: usize) -> Vec<Vec<u8>> {
    (0..BURST)
        .map(|i| {
            let mut f = vec![0u8; len];
            f[..12].copy_from_slice(&[2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1]);
            f[12..14].copy_from_slice(&[0x08, 0x00]);
            f[14] = i as u8;
            f
        })
        .collect()
}

/// Sends until `stop`, as fast as the ring takes frames.
fn sender(mut tx: TxQueue, len: usize, stop: Arc<AtomicBool>) {
    let frames = frames(len);
    while !stop.load(Ordering::Relaxed) {
        tx.tx_burst(&frames);
    }
}

/// Receives until `stop`, counting frames in `count`.
fn receiver(mut rx: RxQueue, count: Arc<AtomicU64>, stop: Arc<AtomicBool>) {
    rx.set_interrupt_mode(false);
    let mut bufs = Frame::batch(BURST, 2048);
    let mut local = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let n = rx.rx_burst(&mut bufs) as u64;
        if n > 0 {
            local += n;
            count.store(local, Ordering::Relaxed);
        }
    }
}

/// Rate of `count` over `window`, after one second of warm-up, and the CPU the processes used.
fn measure(count: &AtomicU64, window: Duration, pids: Vec<String>) -> Sample {
    std::thread::sleep(Duration::from_secs(1));
    let meter = CpuMeter::start(pids);
    let (start, t0) = (count.load(Ordering::Relaxed), Instant::now());
    std::thread::sleep(window);
    let pps = (count.load(Ordering::Relaxed) - start) as f64 / t0.elapsed().as_secs_f64();
    Sample {
        pps,
        cpus: meter.cpus(),
    }
}

/// testpmd's mean Rx-pps over the last `window` seconds of its per-second statistics, and the CPU
/// the processes used meanwhile.
fn testpmd_rate(pmd: &Testpmd, window: Duration, pids: Vec<String>) -> Option<Sample> {
    std::thread::sleep(Duration::from_secs(1));
    let meter = CpuMeter::start(pids);
    std::thread::sleep(window + Duration::from_millis(200));
    let cpus = meter.cpus();
    let rates = rx_pps_figures(&pmd.log());
    let n = (window.as_secs() as usize).clamp(1, rates.len().max(1));
    let last = rates.get(rates.len().saturating_sub(n)..)?;
    (!last.is_empty()).then(|| Sample {
        pps: last.iter().sum::<f64>() / last.len() as f64,
        cpus,
    })
}

/// Every "Rx-pps:" figure in a testpmd log, in order.
fn rx_pps_figures(log: &str) -> Vec<f64> {
    log.lines()
        .filter_map(|l| {
            l.split_whitespace()
                .skip_while(|w| *w != "Rx-pps:")
                .nth(1)?
                .parse()
                .ok()
        })
        .collect()
}

fn socket(dir: &Path, name: &str, len: usize) -> std::path::PathBuf {
    dir.join(format!("{name}-{len}.sock"))
}

fn ours_to_ours(
    rt: &tokio::runtime::Runtime,
    dir: &Path,
    len: usize,
    window: Duration,
) -> Option<Sample> {
    let path = socket(dir, "ours", len);
    let mut listener = Listener::bind(&path, ServerConfig::default()).ok()?;
    let client_cfg = ClientConfig::default();
    let (server, client) = rt.block_on(async {
        tokio::join!(
            listener.accept_one(),
            Connection::connect(&path, &client_cfg)
        )
    });
    let (_sc, mut srx, _stx) = server.ok()?.split();
    let (_cc, _crx, mut ctx) = client.ok()?.split();
    let (stop, count) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicU64::new(0)),
    );
    let rx = std::thread::spawn({
        let (rxq, count, stop) = (srx.remove(0), count.clone(), stop.clone());
        move || receiver(rxq, count, stop)
    });
    let tx = std::thread::spawn({
        let (txq, stop) = (ctx.remove(0), stop.clone());
        move || sender(txq, len, stop)
    });
    let rate = measure(&count, window, pids(&[], true));
    stop.store(true, Ordering::Relaxed);
    let _ = (rx.join(), tx.join());
    Some(rate)
}

/// Our client's tx_burst and our server's rx_burst alternating on one thread: no cross-CPU traffic,
/// no scheduler in the way.
fn one_thread(
    rt: &tokio::runtime::Runtime,
    dir: &Path,
    len: usize,
    window: Duration,
) -> Option<Sample> {
    let path = socket(dir, "single", len);
    let mut listener = Listener::bind(&path, ServerConfig::default()).ok()?;
    let client_cfg = ClientConfig::default();
    let (server, client) = rt.block_on(async {
        tokio::join!(
            listener.accept_one(),
            Connection::connect(&path, &client_cfg)
        )
    });
    let (_sc, mut srx, _stx) = server.ok()?.split();
    let (_cc, _crx, mut ctx) = client.ok()?.split();
    srx[0].set_interrupt_mode(false);
    let frames = frames(len);
    let mut bufs = Frame::batch(BURST, 2048);
    let mut count = 0u64;
    let meter = CpuMeter::start(pids(&[], true));
    let start = Instant::now();
    while start.elapsed() < window {
        for _ in 0..1000 {
            ctx[0].tx_burst(&frames);
            count += srx[0].rx_burst(&mut bufs) as u64;
        }
    }
    let pps = count as f64 / start.elapsed().as_secs_f64();
    Some(Sample {
        pps,
        cpus: meter.cpus(),
    })
}

fn ours_to_testpmd(
    rt: &tokio::runtime::Runtime,
    dir: &Path,
    len: usize,
    window: Duration,
) -> Option<Sample> {
    let path = socket(dir, "pmd-server", len);
    let mut cfg = TestpmdConfig::macswap("server", &path, 0);
    cfg.forward_mode = "rxonly";
    let mut pmd = Testpmd::spawn(&cfg, dir).ok()?;
    if !pmd.wait_ready() {
        eprintln!("testpmd server did not start:\n{}", pmd.log());
        return None;
    }
    let conn = rt
        .block_on(Connection::connect(&path, &ClientConfig::default()))
        .ok()?;
    let (_control, _rx, mut tx) = conn.split();
    let stop = Arc::new(AtomicBool::new(false));
    let sender = std::thread::spawn({
        let (txq, stop) = (tx.remove(0), stop.clone());
        move || sender(txq, len, stop)
    });
    let rate = testpmd_rate(&pmd, window, pids(&[&pmd], true));
    stop.store(true, Ordering::Relaxed);
    let _ = sender.join();
    rate
}

/// A testpmd client in txonly mode sending `len`-byte frames, pinned to CPU `cpu`.
fn txonly_client(path: &Path, len: usize, cpu: u32, dir: &Path) -> Option<Testpmd> {
    let mut cfg = TestpmdConfig::macswap("client", path, 0);
    cfg.forward_mode = "txonly";
    cfg.lcores = format!("0@{cpu},1@{cpu}");
    cfg.extra = vec![format!("--txpkts={len}"), format!("--burst={BURST}")];
    Testpmd::spawn(&cfg, dir).ok()
}

fn testpmd_to_ours(
    rt: &tokio::runtime::Runtime,
    dir: &Path,
    len: usize,
    window: Duration,
) -> Option<Sample> {
    let path = socket(dir, "ours-server", len);
    let mut listener = Listener::bind(&path, ServerConfig::default()).ok()?;
    let pmd = txonly_client(&path, len, 0, dir)?;
    let conn = rt
        .block_on(tokio::time::timeout(
            Duration::from_secs(20),
            listener.accept_one(),
        ))
        .ok()?
        .ok()?;
    let (_control, mut rx, _tx) = conn.split();
    let (stop, count) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicU64::new(0)),
    );
    let receiver = std::thread::spawn({
        let (rxq, count, stop) = (rx.remove(0), count.clone(), stop.clone());
        move || receiver(rxq, count, stop)
    });
    let rate = measure(&count, window, pids(&[&pmd], true));
    stop.store(true, Ordering::Relaxed);
    let _ = receiver.join();
    Some(rate)
}

fn testpmd_to_testpmd(
    _rt: &tokio::runtime::Runtime,
    dir: &Path,
    len: usize,
    window: Duration,
) -> Option<Sample> {
    let path = socket(dir, "pmd-pmd", len);
    let mut cfg = TestpmdConfig::macswap("server", &path, 0);
    cfg.forward_mode = "rxonly";
    cfg.lcores = "0@1,1@1".into();
    let mut server = Testpmd::spawn(&cfg, dir).ok()?;
    if !server.wait_ready() {
        eprintln!("testpmd server did not start:\n{}", server.log());
        return None;
    }
    let client = txonly_client(&path, len, 0, dir)?;
    testpmd_rate(&server, window, pids(&[&server, &client], false))
}

/// An io forwarder: sends back everything it receives, counting it; optionally injects frames first.
fn forwarder(
    mut rx: RxQueue,
    mut tx: TxQueue,
    inject: Option<usize>,
    count: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) {
    rx.set_interrupt_mode(false);
    if let Some(len) = inject {
        tx.tx_burst(&frames(len)[..LOOP_FRAMES]);
    }
    let mut bufs = Frame::batch(BURST, 2048);
    let mut local = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let n = rx.rx_burst(&mut bufs);
        if n > 0 {
            // A frame the ring has no room for is lost, as with testpmd.
            tx.tx_burst(&bufs[..n]);
            local += n as u64;
            count.store(local, Ordering::Relaxed);
        }
    }
}

fn loop_ours_ours(
    rt: &tokio::runtime::Runtime,
    dir: &Path,
    len: usize,
    window: Duration,
) -> Option<Sample> {
    let path = socket(dir, "loop-ours", len);
    let mut listener = Listener::bind(&path, ServerConfig::default()).ok()?;
    let client_cfg = ClientConfig::default();
    let (server, client) = rt.block_on(async {
        tokio::join!(
            listener.accept_one(),
            Connection::connect(&path, &client_cfg)
        )
    });
    let (_sc, mut srx, mut stx) = server.ok()?.split();
    let (_cc, mut crx, mut ctx) = client.ok()?.split();
    let (stop, count) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicU64::new(0)),
    );
    let server = std::thread::spawn({
        let (rx, tx, stop) = (srx.remove(0), stx.remove(0), stop.clone());
        move || forwarder(rx, tx, None, Arc::default(), stop)
    });
    let client = std::thread::spawn({
        let (rx, tx, count, stop) = (crx.remove(0), ctx.remove(0), count.clone(), stop.clone());
        move || forwarder(rx, tx, Some(len), count, stop)
    });
    let rate = measure(&count, window, pids(&[], true));
    stop.store(true, Ordering::Relaxed);
    let _ = (server.join(), client.join());
    Some(rate)
}

fn loop_ours_testpmd(
    rt: &tokio::runtime::Runtime,
    dir: &Path,
    len: usize,
    window: Duration,
) -> Option<Sample> {
    let path = socket(dir, "loop-pmd-server", len);
    let mut cfg = TestpmdConfig::macswap("server", &path, 0);
    cfg.forward_mode = "io";
    cfg.extra = vec![format!("--burst={BURST}")];
    let mut pmd = Testpmd::spawn(&cfg, dir).ok()?;
    if !pmd.wait_ready() {
        eprintln!("testpmd server did not start:\n{}", pmd.log());
        return None;
    }
    let conn = rt
        .block_on(Connection::connect(&path, &ClientConfig::default()))
        .ok()?;
    let (_control, mut rx, mut tx) = conn.split();
    let (stop, count) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicU64::new(0)),
    );
    let client = std::thread::spawn({
        let (rx, tx, count, stop) = (rx.remove(0), tx.remove(0), count.clone(), stop.clone());
        move || forwarder(rx, tx, Some(len), count, stop)
    });
    let rate = measure(&count, window, pids(&[&pmd], true));
    stop.store(true, Ordering::Relaxed);
    let _ = client.join();
    Some(rate)
}

fn loop_testpmd_testpmd(
    _rt: &tokio::runtime::Runtime,
    dir: &Path,
    len: usize,
    window: Duration,
) -> Option<Sample> {
    let path = socket(dir, "loop-pmd-pmd", len);
    // The server is interactive: the first burst can go out only once the client has connected.
    let mut cfg = TestpmdConfig::macswap("server", &path, 0);
    cfg.forward_mode = "io";
    cfg.lcores = "0@1,1@1".into();
    cfg.interactive = true;
    cfg.extra = vec![format!("--txpkts={len}"), format!("--burst={BURST}")];
    let mut server = Testpmd::spawn(&cfg, dir).ok()?;
    if !server.wait_ready() {
        eprintln!("testpmd server did not start:\n{}", server.log());
        return None;
    }
    let mut cfg = TestpmdConfig::macswap("client", &path, 0);
    cfg.forward_mode = "io";
    cfg.lcores = "0@0,1@0".into();
    cfg.extra = vec![format!("--burst={BURST}")];
    let mut client = Testpmd::spawn(&cfg, dir).ok()?;
    if !client.wait_ready() {
        eprintln!("testpmd client did not start:\n{}", client.log());
        return None;
    }
    std::thread::sleep(Duration::from_millis(500));
    server.command("start tx_first").ok()?;
    // Interactive testpmd prints statistics on request: once a second, each since the previous one.
    std::thread::sleep(Duration::from_secs(1));
    server.command("show port stats 0").ok()?;
    let meter = CpuMeter::start(pids(&[&server, &client], false));
    for _ in 0..window.as_secs().max(1) {
        std::thread::sleep(Duration::from_secs(1));
        server.command("show port stats 0").ok()?;
    }
    let cpus = meter.cpus();
    // Interactive output to a file is flushed at exit only.
    server.command("quit").ok()?;
    server.exits_within(Duration::from_secs(10));
    let rates = rx_pps_figures(&server.log());
    let n = (window.as_secs() as usize).max(1);
    let last = rates.get(rates.len().checked_sub(n)?..)?;
    Some(Sample {
        pps: last.iter().sum::<f64>() / last.len() as f64,
        cpus,
    })
}
