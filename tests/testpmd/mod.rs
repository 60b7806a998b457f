//! Starts DPDK's `dpdk-testpmd` with the net_memif driver as a real memif peer, and always cleans it up.
//!
//! The recipe follows what works with Debian's DPDK 22.11 (see the memif protocol notes): no hugepages,
//! no PCI, a unique `--file-prefix` per instance, `--no-flush-rx` (otherwise the first frames after
//! connect are swallowed), `--auto-start` with a stats period (otherwise testpmd waits for stdin), and
//! both of its lcores on one CPU so the other stays free for the code under test. testpmd's exit status
//! is never used as a verdict (it may crash on a peer's disconnect); it is stopped with one SIGINT, then
//! killed if it lingers, and its runtime directory is removed.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The line testpmd prints once its ports are started (a server accepts INIT only after it).
pub const READY_LINE: &str = "Checking link statuses";

/// What to start.
#[derive(Debug, Clone)]
pub struct TestpmdConfig {
    /// "server" or "client".
    pub role: &'static str,
    /// Socket file path.
    pub socket: PathBuf,
    /// Interface id.
    pub id: u32,
    /// Secret, if any.
    pub secret: Option<String>,
    /// testpmd forwarding mode: macswap, io, rxonly, txonly.
    pub forward_mode: &'static str,
    /// EAL `--lcores` value (main lcore, forwarding lcore).
    pub lcores: String,
    /// Extra testpmd application options (after `--`).
    pub extra: Vec<String>,
    /// Interactive (`-i`): commands come from [`Testpmd::command`]; no auto-start, no periodic stats.
    pub interactive: bool,
}

impl TestpmdConfig {
    /// A macswap echo peer on the given socket, with both lcores on CPU 0.
    pub fn macswap(role: &'static str, socket: &Path, id: u32) -> TestpmdConfig {
        TestpmdConfig {
            role,
            socket: socket.to_path_buf(),
            id,
            secret: None,
            forward_mode: "macswap",
            lcores: "0@0,1@0".into(),
            extra: Vec::new(),
            interactive: false,
        }
    }
}

/// A running testpmd. Dropping it stops it and removes its runtime directory.
pub struct Testpmd {
    child: Option<Child>,
    stdin: Option<std::process::ChildStdin>,
    prefix: String,
    log: PathBuf,
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

impl Testpmd {
    /// Starts testpmd; its output goes to a log file in `log_dir`.
    pub fn spawn(cfg: &TestpmdConfig, log_dir: &Path) -> std::io::Result<Testpmd> {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let prefix = format!("wgvpp-memif-{}-{n}", std::process::id());
        let log = log_dir.join(format!("{prefix}.log"));
        let mut vdev = format!(
            "net_memif0,role={},socket={},socket-abstract=no,id={}",
            cfg.role,
            cfg.socket.display(),
            cfg.id
        );
        if let Some(secret) = &cfg.secret {
            vdev.push_str(&format!(",secret={secret}"));
        }
        let out = std::fs::File::create(&log)?;
        let err = out.try_clone()?;
        let mut cmd = Command::new("dpdk-testpmd");
        cmd.arg(format!("--lcores={}", cfg.lcores))
            .args([
                "--no-huge",
                "-m",
                "256",
                "--no-pci",
                "--no-telemetry",
                "--log-level=pmd.net.memif:info",
            ])
            .arg(format!("--file-prefix={prefix}"))
            .arg(format!("--vdev={vdev}"))
            .arg("--")
            .arg(format!("--forward-mode={}", cfg.forward_mode))
            .args(["--no-flush-rx", "--total-num-mbufs=8192"]);
        if cfg.interactive {
            cmd.arg("-i").stdin(Stdio::piped());
        } else {
            cmd.args(["--auto-start", "--stats-period=1"])
                .stdin(Stdio::null());
        }
        let mut child = cmd.args(&cfg.extra).stdout(out).stderr(err).spawn()?;
        let stdin = child.stdin.take();
        Ok(Testpmd {
            child: Some(child),
            stdin,
            prefix,
            log,
        })
    }

    /// Sends one command line to an interactive testpmd.
    pub fn command(&mut self, line: &str) -> std::io::Result<()> {
        use std::io::Write;
        let stdin = self
            .stdin
            .as_mut()
            .ok_or(std::io::ErrorKind::NotConnected)?;
        writeln!(stdin, "{line}")?;
        stdin.flush()
    }

    /// Everything testpmd printed so far.
    pub fn log(&self) -> String {
        std::fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// Waits until `needle` appears in the log; false on timeout or when testpmd exited.
    pub fn wait_for(&mut self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.log().contains(needle) {
                return true;
            }
            if self
                .child
                .as_mut()
                .is_some_and(|c| matches!(c.try_wait(), Ok(Some(_))))
            {
                return self.log().contains(needle);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    /// Waits for the ready line (ports started).
    pub fn wait_ready(&mut self) -> bool {
        self.wait_for(READY_LINE, Duration::from_secs(20))
    }

    /// True while testpmd has not exited.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// True when testpmd exits (or already exited) within `timeout`; prints how it ended.
    pub fn exits_within(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                eprintln!("testpmd ended: {status}");
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// The process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills testpmd at once (SIGKILL), as a crash would.
    pub fn kill_hard(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops testpmd: one SIGINT, up to 5 s to exit, then SIGKILL. The exit status is ignored.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if matches!(child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// The last "Rx-pps" figure of port 0 from the periodic statistics (testpmd prints them each second).
    pub fn last_rx_pps(&self) -> Option<u64> {
        let log = self.log();
        let line = log.lines().rev().find(|l| l.contains("Rx-pps:"))?;
        line.split_whitespace()
            .skip_while(|w| *w != "Rx-pps:")
            .nth(1)?
            .parse()
            .ok()
    }
}

impl Drop for Testpmd {
    fn drop(&mut self) {
        self.stop();
        for dir in runtime_dirs(&self.prefix) {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Where EAL puts the runtime directory of `prefix`: under the system run directory as root, else under
/// `$XDG_RUNTIME_DIR` or the temporary directory.
fn runtime_dirs(prefix: &str) -> Vec<PathBuf> {
    let mut dirs = vec![Path::new("/var/run/dpdk").join(prefix)];
    if let Some(xdg) = std::env::var_os("XDG_RUNTIME_DIR") {
        dirs.push(Path::new(&xdg).join("dpdk").join(prefix));
    }
    dirs.push(std::env::temp_dir().join("dpdk").join(prefix));
    dirs
}
