//! A real VPP with the bridge an operator lays out (scripts/peers/vpp.sh), a wireguard-go peer in its own
//! namespace, and our daemon in a third (scripts/peers/topology.sh `up` + `vpp`):
//!
//! ```text
//!  VPP (runtime dir DIR/vpp)             <P>-wg namespace               <P>-peer namespace
//!  loop42 BVI of bridge 4242   memif3/3  wireguard-vpp P (memif server)  wireguard-go <P>w
//!  10.127.111.1/24            <-------->  UDP 10.99.77.1:51820 <--veth--> 10.99.77.2:51821
//!  fd00:4242::1/64, fe80::4242                                           172.22.77.33, fd28:cb8f:4c92::33,
//!  loop420 (a decoy name)                                                fe80::42:1817:1
//! ```
//!
//! Everything is removed on drop, also when the test fails: the daemon, VPP (by PID), the peer, the
//! namespaces.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// Checks that a VPP can be found (`VPP_HOME`, `../shared/vpp`, or the PATH), with the peer rules of
/// [`super::require`].
pub fn require_vpp() -> bool {
    let found = Command::new(super::project_root().join("scripts/peers/vpp.sh"))
        .arg("home")
        .output()
        .is_ok_and(|o| o.status.success());
    found || super::missing("VPP is not found: set VPP_HOME or install vpp and vppctl on the PATH")
}

/// One test's VPP, peer and daemon.
pub struct VppBed {
    prefix: String,
    dir: tempfile::TempDir,
    daemon: Option<Child>,
}

impl VppBed {
    /// Starts VPP with its bridge and the wireguard-go peer, and writes the daemon's files; `None` (skip)
    /// when a peer is missing outside CI.
    pub fn up() -> Option<VppBed> {
        for (program, purpose) in [
            ("wireguard-go", "WireGuard peer"),
            ("wg", "UAPI client"),
            ("ip", "network namespaces"),
        ] {
            if !super::require(program, purpose) {
                return None;
            }
        }
        if !super::require_root("the real-VPP tests") || !require_vpp() {
            return None;
        }
        let bed = VppBed {
            prefix: super::unique("v"),
            dir: tempfile::tempdir().expect("temp dir"),
            daemon: None,
        };
        bed.topology("up");
        bed.topology("vpp");
        Some(bed)
    }

    fn topology(&self, command: &str) {
        let out = Command::new(super::project_root().join("scripts/peers/topology.sh"))
            .args([command, &self.prefix])
            .arg(self.dir.path())
            .output()
            .expect("topology.sh runs");
        assert!(
            out.status.success(),
            "topology.sh {command}: {}",
            text(&out)
        );
    }

    /// A host on VPP's bridge (topology.sh `lan`): namespace `<P>-lan`, 10.127.111.2/24 and
    /// fd00:4242::2/64 on an af_packet veth in bridge 4242, routing through the BVI.
    pub fn add_lan_host(&self) {
        self.topology("lan");
    }

    /// The tunnel's name (also the namespace prefix).
    pub fn name(&self) -> &str {
        &self.prefix
    }

    /// The test's directory: `etc/` (config files), `run/` (memif sockets), `vpp/` (VPP's runtime).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The daemon's interface config file.
    pub fn if_file(&self) -> PathBuf {
        self.dir().join(format!("etc/if/{}.json", self.prefix))
    }

    /// The bridge's gateway file.
    pub fn gw_file(&self) -> PathBuf {
        self.dir().join("etc/gw/4242.json")
    }

    /// VPP's API socket.
    pub fn api_socket(&self) -> PathBuf {
        self.dir().join("vpp/api.sock")
    }

    pub fn uapi_socket(&self) -> PathBuf {
        PathBuf::from(format!("/var/run/wireguard/{}.sock", self.prefix))
    }

    pub fn memif_socket(&self) -> PathBuf {
        self.dir().join(format!("run/{}.sock", self.prefix))
    }

    /// A CLI command on this VPP; its output.
    pub fn vppctl(&self, command: &str) -> String {
        let out = self.vpp_sh("ctl", command.split_whitespace());
        assert!(out.status.success(), "vppctl {command}: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn vpp_sh<'a>(&self, command: &str, args: impl IntoIterator<Item = &'a str>) -> Output {
        Command::new(super::project_root().join("scripts/peers/vpp.sh"))
            .arg(command)
            .arg(self.dir().join("vpp"))
            .args(args)
            .output()
            .expect("vpp.sh runs")
    }

    /// Stops VPP (by its PID) and removes what it left.
    pub fn stop_vpp(&self) {
        let out = self.vpp_sh("stop", []);
        assert!(out.status.success(), "vpp.sh stop: {}", text(&out));
    }

    /// Starts VPP again after [`VppBed::stop_vpp`], with the same bridge.
    pub fn start_vpp(&self) {
        let out = self.vpp_sh("start", []);
        assert!(out.status.success(), "vpp.sh start: {}", text(&out));
    }

    /// Kills VPP (-9, as a crash) and starts it again with the same bridge.
    pub fn restart_vpp(&self) {
        let out = self.vpp_sh("restart", []);
        assert!(out.status.success(), "vpp.sh restart: {}", text(&out));
    }

    /// VPP's objects that a tunnel may create, one text: memifs and their sockets, the bridge's ports,
    /// the l2fib, the FIBs and the neighbours. Compared before and after a run, not against a list of the
    /// calls we expect to make.
    pub fn objects(&self) -> String {
        [
            "show memif",
            "show bridge-domain 4242 detail",
            "show l2fib verbose",
            "show ip fib",
            "show ip6 fib",
            "show ip neighbors",
            "show interface",
        ]
        .iter()
        .map(|c| format!("== {c}\n{}", without_counters(c, &self.vppctl(c))))
        .collect()
    }

    /// Starts the daemon in the `<P>-wg` namespace with the API install method, in the foreground,
    /// without waiting.
    pub fn spawn_daemon(&mut self, args: &[&str], env: &[(&str, &str)]) {
        let mut argv = vec!["--foreground"];
        argv.extend_from_slice(args);
        self.spawn(&argv, env);
    }

    /// Starts the daemon with exactly `args` before its name (no `--foreground`), without waiting.
    pub fn spawn(&mut self, args: &[&str], env: &[(&str, &str)]) {
        let log = std::fs::File::create(self.dir().join("daemon.log")).expect("log file");
        let child = Command::new("ip")
            .args(["netns", "exec", &format!("{}-wg", self.prefix)])
            .arg(env!("CARGO_BIN_EXE_wireguard-vpp"))
            .args(args)
            .arg(&self.prefix)
            .env("VPP_MEMIF_CONFIG_DIR", self.dir().join("etc"))
            .env("VPP_MEMIF_SOCKET_DIR", self.dir().join("run"))
            .env("VPP_API_SOCKET_PATH", self.api_socket())
            .env("LOG_LEVEL", "debug")
            .envs(env.iter().copied())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("daemon starts");
        self.daemon = Some(child);
    }

    /// Starts the daemon, waits until VPP's memif is connected and the UAPI socket is up, and configures
    /// WireGuard with `wg setconf`.
    pub fn start_tunnel(&mut self) {
        self.spawn_daemon(&[], &[]);
        self.wait_until_up();
        self.configure_wireguard();
    }

    /// Waits until this run of the daemon says it is up (its UAPI socket is there) and VPP shows our memif
    /// connected.
    pub fn wait_until_up(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if self.daemon_log().contains("tunnel up")
                && self.vppctl("show memif").contains("connected")
            {
                return;
            }
            if let Some(status) = self
                .daemon
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("the daemon exited ({status}):\n{}", self.daemon_log());
            }
            assert!(
                Instant::now() < deadline,
                "the tunnel did not come up:\n{}\n{}",
                self.vppctl("show memif"),
                self.daemon_log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn configure_wireguard(&self) {
        let out = Command::new("wg")
            .args(["setconf", &self.prefix])
            .arg(self.dir().join("ours.conf"))
            .output()
            .expect("wg runs");
        assert!(out.status.success(), "wg setconf: {}", text(&out));
    }

    /// Runs a command in one of the namespaces (`wg` or `peer`).
    pub fn in_ns(&self, ns: &str, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &format!("{}-{ns}", self.prefix)])
            .args(args)
            .output()
            .expect("command runs")
    }

    /// The peer's `wg show <dump>` lines for its one peer (our end).
    pub fn peer_wg_show(&self, field: &str) -> String {
        let out = Command::new("wg")
            .args(["show", &format!("{}-w", self.prefix), field])
            .output()
            .expect("wg runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn daemon_log(&self) -> String {
        std::fs::read_to_string(self.dir().join("daemon.log")).unwrap_or_default()
    }

    pub fn daemon_is_running(&mut self) -> bool {
        self.daemon
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Stops the daemon with `signal` and requires a clean exit that left VPP's objects as `before`.
    pub fn stop_leaving(&mut self, signal: &str, before: &str) {
        let status = self.signal_daemon(signal);
        assert!(
            status.success(),
            "SIG{signal}: {status}:\n{}",
            self.daemon_log()
        );
        assert_eq!(self.objects(), before, "SIG{signal}: {}", self.daemon_log());
    }

    /// Waits up to `seconds` until `ready` holds, failing with `what`, VPP's memifs and the daemon's log.
    pub fn wait_for(&self, what: &str, seconds: u64, mut ready: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(seconds);
        while !ready() {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {}\n{}",
                self.vppctl("show memif"),
                self.daemon_log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Sends `signal` (a `kill` name such as TERM or KILL) and waits for the exit.
    pub fn signal_daemon(&mut self, signal: &str) -> ExitStatus {
        self.send_signal(signal);
        self.wait_daemon(Duration::from_secs(15))
    }

    /// Sends `signal` to the daemon without waiting.
    pub fn send_signal(&self, signal: &str) {
        let child = self.daemon.as_ref().expect("daemon started");
        let _ = Command::new("kill")
            .args([&format!("-{signal}"), &child.id().to_string()])
            .status();
    }

    /// Waits for the daemon's exit.
    pub fn wait_daemon(&mut self, limit: Duration) -> ExitStatus {
        let mut child = self.daemon.take().expect("daemon started");
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("the daemon did not exit:\n{}", self.daemon_log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Pings `dst` from the peer's namespace until one answer came back, then `count` more with no loss.
    pub fn ping_from_peer(&self, dst: &str, count: u32) {
        let family = if dst.contains(':') { "-6" } else { "-4" };
        let warm = self.in_ns("peer", &["ping", family, "-c", "1", "-w", "10", dst]);
        assert!(
            warm.status.success(),
            "no answer from {dst}: {}\n{}\n{}",
            text(&warm),
            self.vppctl("show errors"),
            self.daemon_log()
        );
        let count = count.to_string();
        let out = self.in_ns(
            "peer",
            &[
                "ping", family, "-q", "-c", &count, "-i", "0.01", "-W", "2", dst,
            ],
        );
        let report = text(&out);
        assert!(
            out.status.success() && report.contains(" 0% packet loss"),
            "ping {dst} from the peer: {report}"
        );
    }

    /// Pings `dst` from VPP (`source loop42`); returns how many of `count` answers came back once the path
    /// has settled (warm-up rounds of three until all three come back: ARP/ND and a handshake may cost the
    /// first echoes), or 0 when it never settled.
    pub fn ping_from_vpp(&self, dst: &str, count: u32) -> u32 {
        let warm_up = format!("ping {dst} source loop42 repeat 3 interval 0.05");
        // Long enough for one handshake retry (WireGuard's 5 s rekey timeout): a first initiation
        // lost on a loaded machine must not fail the test.
        for _ in 0..30 {
            if received(&self.vppctl(&warm_up)) == 3 {
                let command = format!("ping {dst} source loop42 repeat {count} interval 0.02");
                return received(&self.vppctl(&command));
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        0
    }
}

/// `N received` of VPP's ping statistics.
fn received(ping_output: &str) -> u32 {
    ping_output
        .split(',')
        .find_map(|part| part.trim().strip_suffix(" received"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

/// The output without what any traffic or time changes: `show interface`'s counter columns, the FIB's
/// `to:[packets:bytes]` and `via:[packets:bytes]`, the l2fib's last scan time.
fn without_counters(command: &str, output: &str) -> String {
    let output = output.split(" Last scan time:").next().unwrap_or_default();
    if command == "show interface" {
        return output
            .lines()
            .filter(|l| !l.starts_with(' '))
            .map(|l| l.split_whitespace().take(4).collect::<Vec<_>>().join(" "))
            .collect::<Vec<_>>()
            .join("\n");
    }
    let mut out = String::with_capacity(output.len());
    let mut rest = output;
    while let Some(at) = ["to:[", "via:["]
        .iter()
        .filter_map(|m| rest.find(m).map(|i| (i, m.len())))
        .min()
    {
        let (start, len) = at;
        out.push_str(&rest[..start + len]);
        rest = &rest[start + len..];
        let end = rest.find(']').unwrap_or(rest.len());
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

impl Drop for VppBed {
    fn drop(&mut self) {
        if let Some(mut child) = self.daemon.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // A daemon that detached (background mode) is no child of ours.
        let _ = Command::new("pkill")
            .args([
                "-KILL",
                "-f",
                &format!("wireguard-vpp( .*)? {}$", self.prefix),
            ])
            .status();
        self.topology("down");
        let _ = std::fs::remove_file(self.uapi_socket());
    }
}

/// stdout and stderr of a finished command.
pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A pass-through between the daemon and VPP's API socket that freezes the daemon at a chosen request, so
/// that a test can crash the daemon or VPP at an exact point of setup or teardown instead of after a
/// guessed delay. [`ApiGate::hold`] names a message (without its CRC, e.g. `memif_create_v2`) and which of
/// its next occurrences to stop at; that request and everything after it on the same connection are never
/// forwarded, so VPP has exactly the objects of the requests before it. The held connection is cut (the
/// held request dropped, VPP's side closed) once either end closes it: the daemon killed, VPP restarted.
/// Other connections pass freely; one hold stops one request.
pub struct ApiGate {
    path: PathBuf,
    shared: Arc<Gate>,
}

#[derive(Default)]
struct Gate {
    state: Mutex<GateState>,
    changed: Condvar,
}

#[derive(Default)]
struct GateState {
    /// The message to stop at, and how many of its occurrences to let through first.
    hold: Option<(String, u32)>,
    /// The message stopped at since the last `hold`.
    held: Option<String>,
    /// Every request forwarded to VPP, by name, in order.
    sent: Vec<String>,
    /// Both ends of every connection, to be cut when the gate goes.
    sockets: Vec<UnixStream>,
    /// New connections are closed at once, as by a VPP that is away.
    refusing: bool,
    closed: bool,
}

impl ApiGate {
    /// Listens on `path` and forwards each connection to VPP's API socket `upstream`.
    pub fn start(path: PathBuf, upstream: PathBuf) -> ApiGate {
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).expect("gate socket");
        let shared = Arc::new(Gate::default());
        let gate = Arc::clone(&shared);
        std::thread::spawn(move || {
            for down in listener.incoming() {
                if lock(&gate.state).closed {
                    return;
                }
                let Ok(down) = down else { continue };
                let gate = Arc::clone(&gate);
                let upstream = upstream.clone();
                std::thread::spawn(move || gate.forward(down, &upstream));
            }
        });
        ApiGate { path, shared }
    }

    /// The socket to give the daemon as `VPP_API_SOCKET_PATH`.
    pub fn path(&self) -> &str {
        self.path.to_str().expect("utf-8 path")
    }

    /// Stops at the `nth` (1 for the next) request named `message` from now on.
    pub fn hold(&self, message: &str, nth: u32) {
        assert!(nth >= 1);
        let mut state = lock(&self.shared.state);
        state.hold = Some((message.to_owned(), nth - 1));
        state.held = None;
    }

    /// Waits until the request of [`ApiGate::hold`] is held; fails with the requests forwarded so far.
    pub fn wait_held(&self, seconds: u64, log: impl Fn() -> String) {
        let deadline = Instant::now() + Duration::from_secs(seconds);
        let mut state = lock(&self.shared.state);
        while state.held.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "the gate never held {:?}; forwarded: {:?}\n{}",
                state.hold,
                state.sent,
                log()
            );
            state = self
                .shared
                .changed
                .wait_timeout(state, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// While `refuse` holds, new connections are closed at once, as VPP's socket does while VPP is away:
    /// e.g. until a restarted VPP has its bridge laid out again, which an operator's VPP does before it
    /// serves its API.
    pub fn refuse(&self, refuse: bool) {
        lock(&self.shared.state).refusing = refuse;
    }

    /// The requests forwarded to VPP so far, by name.
    pub fn sent(&self) -> Vec<String> {
        lock(&self.shared.state).sent.clone()
    }
}

impl Drop for ApiGate {
    fn drop(&mut self) {
        let mut state = lock(&self.shared.state);
        state.closed = true;
        for socket in state.sockets.drain(..) {
            let _ = socket.shutdown(std::net::Shutdown::Both);
        }
        drop(state);
        self.shared.changed.notify_all();
        // Wakes the accepting thread, which then sees `closed`.
        let _ = UnixStream::connect(&self.path);
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Gate {
    /// Carries one connection: VPP's messages back as they come (learning the message ids from
    /// `sockclnt_create_reply`), the daemon's requests to VPP until the one to hold.
    fn forward(self: Arc<Self>, down: UnixStream, upstream: &Path) {
        if lock(&self.state).refusing {
            let _ = down.shutdown(std::net::Shutdown::Both);
            return;
        }
        let Ok(up) = UnixStream::connect(upstream) else {
            // VPP is away: the daemon sees its connection close, as with VPP itself.
            let _ = down.shutdown(std::net::Shutdown::Both);
            return;
        };
        let cut = move |a: &UnixStream, b: &UnixStream| {
            let _ = a.shutdown(std::net::Shutdown::Both);
            let _ = b.shutdown(std::net::Shutdown::Both);
        };
        {
            let mut state = lock(&self.state);
            if state.closed {
                return cut(&up, &down);
            }
            state.sockets.extend([
                up.try_clone().expect("clone"),
                down.try_clone().expect("clone"),
            ]);
        }
        let names: Arc<Mutex<HashMap<u16, String>>> = Arc::default();
        let back = {
            let (mut from, mut to) = (
                up.try_clone().expect("clone"),
                down.try_clone().expect("clone"),
            );
            let names = Arc::clone(&names);
            let gate = Arc::clone(&self);
            std::thread::spawn(move || {
                while let Some(frame) = read_frame(&mut from) {
                    if msg_id(&frame) == Some(16) {
                        *lock(&names) = message_table(&frame[16..]);
                    }
                    if to.write_all(&frame).is_err() {
                        break;
                    }
                }
                cut(&from, &to);
                gate.changed.notify_all();
            })
        };
        let (mut from, mut to) = (
            down.try_clone().expect("clone"),
            up.try_clone().expect("clone"),
        );
        while let Some(frame) = read_frame(&mut from) {
            let name = match msg_id(&frame) {
                Some(15) => "sockclnt_create".to_owned(),
                Some(id) => lock(&names)
                    .get(&id)
                    .cloned()
                    .unwrap_or_else(|| format!("#{id}")),
                None => String::new(),
            };
            if self.stops_at(&name) {
                // Frozen: whatever the daemon sends now is dropped, until one end closes.
                let _ = from.set_read_timeout(Some(Duration::from_millis(50)));
                let mut sink = [0u8; 4096];
                loop {
                    match from.read(&mut sink) {
                        Ok(0) => break,
                        Ok(_) => {}
                        Err(e)
                            if matches!(
                                e.kind(),
                                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                            ) => {}
                        Err(_) => break,
                    }
                    if lock(&self.state).closed {
                        break;
                    }
                }
                break;
            }
            if to.write_all(&frame).is_err() {
                break;
            }
            lock(&self.state).sent.push(name);
        }
        cut(&from, &to);
        let _ = back.join();
    }

    /// Whether the request `name` is the one to hold (and then records it as held).
    fn stops_at(&self, name: &str) -> bool {
        let mut state = lock(&self.state);
        let stop = match state.hold.as_mut() {
            Some((message, skip)) if message == name => {
                if *skip == 0 {
                    true
                } else {
                    *skip -= 1;
                    false
                }
            }
            _ => false,
        };
        if stop {
            state.hold = None;
            state.held = Some(name.to_owned());
            drop(state);
            self.changed.notify_all();
        }
        stop
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One frame of VPP's API socket (16-byte header with the big-endian body length at 8..12, then the
/// body), header included; `None` at the end of the stream.
fn read_frame(from: &mut UnixStream) -> Option<Vec<u8>> {
    let mut frame = vec![0u8; 16];
    from.read_exact(&mut frame).ok()?;
    let len = u32::from_be_bytes([frame[8], frame[9], frame[10], frame[11]]) as usize;
    frame.resize(16 + len, 0);
    from.read_exact(&mut frame[16..]).ok()?;
    Some(frame)
}

fn msg_id(frame: &[u8]) -> Option<u16> {
    frame.get(16..18).map(|b| u16::from_be_bytes([b[0], b[1]]))
}

/// The names (CRC cut off) by message id, from the body of `sockclnt_create_reply`: id, client index,
/// context, response, index, a u16 count, then entries of a u16 id and a 64-byte name.
fn message_table(body: &[u8]) -> HashMap<u16, String> {
    let count = body
        .get(18..20)
        .map_or(0, |b| u16::from_be_bytes([b[0], b[1]]));
    body.get(20..)
        .unwrap_or_default()
        .chunks_exact(66)
        .take(count.into())
        .map(|entry| {
            let name = String::from_utf8_lossy(&entry[2..]);
            let name = name.trim_end_matches('\0');
            let name = name.rsplit_once('_').map_or(name, |(name, _crc)| name);
            (u16::from_be_bytes([entry[0], entry[1]]), name.to_owned())
        })
        .collect()
}
