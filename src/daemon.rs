//! `wireguard-vpp [-f] NAME`: logging, background mode, and the tunnel run with its exit code.
//!
//! Background mode (no `-f`) really detaches, unlike the original's: the process starts itself again in
//! the foreground (in its own process group, with `WG_PROCESS_FOREGROUND=1`), waits until the child's
//! UAPI socket exists, so that `wg setconf` and `wg-quick` can follow at once, and exits 0. If the child
//! fails first, its exit code is passed on.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use tokio::signal::unix::{SignalKind, signal};
use wireguard_vpp::config::{self, Env};
use wireguard_vpp::{memif, tunnel};

/// How long the background launcher waits for the foreground child's UAPI socket.
const BACKGROUND_READY_TIMEOUT: Duration = Duration::from_secs(120);

pub fn main(raw_name: &str, foreground_flag: bool, vpp_api: bool, role: memif::Role) -> ExitCode {
    let env = match Env::from_process() {
        Ok(env) => env,
        Err(err) => {
            eprintln!("wireguard-vpp: {err}");
            return ExitCode::FAILURE;
        }
    };
    let name = match config::sanitize_name(raw_name) {
        Ok(name) => name,
        Err(err) => {
            eprintln!("wireguard-vpp: {err}");
            return ExitCode::from(2);
        }
    };
    init_logging(&env);
    let foreground =
        foreground_flag || std::env::var("WG_PROCESS_FOREGROUND").as_deref() == Ok("1");
    if foreground {
        return run_foreground(&name, env, vpp_api, role);
    }
    run_background(&name, vpp_api, role)
}

fn run_foreground(name: &str, env: Env, vpp_api: bool, role: memif::Role) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("wireguard-vpp: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run_named(name, env, vpp_api, role)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(tunnel = name, "{err}");
            eprintln!("wireguard-vpp: {name}: {err}");
            ExitCode::FAILURE
        }
    }
}

fn run_background(name: &str, vpp_api: bool, role: memif::Role) -> ExitCode {
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(err) => {
            eprintln!("wireguard-vpp: cannot find its own executable to detach: {err}");
            return ExitCode::FAILURE;
        }
    };
    let socket = tunnel::uapi_socket_path(name);
    let mut command = Command::new(exe);
    command.arg("--foreground");
    if !vpp_api {
        command.arg("--no-vpp-api");
    }
    command.args(["--memif-role", role.as_str()]);
    let mut child = match command
        .arg(name)
        .env("WG_PROCESS_FOREGROUND", "1")
        .stdin(Stdio::null())
        .process_group(0)
        .spawn()
    {
        Ok(child) => child,
        Err(err) => {
            eprintln!("wireguard-vpp: cannot start the background process: {err}");
            return ExitCode::FAILURE;
        }
    };
    let deadline = Instant::now() + BACKGROUND_READY_TIMEOUT;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                let code = status.code().unwrap_or(1).clamp(1, 255) as u8;
                return ExitCode::from(code);
            }
            Ok(None) if is_socket(&socket) => return ExitCode::SUCCESS,
            Ok(None) if Instant::now() >= deadline => {
                eprintln!(
                    "wireguard-vpp: {name} did not come up within {} s; it keeps running as pid {} \
                     (its log says why)",
                    BACKGROUND_READY_TIMEOUT.as_secs(),
                    child.id()
                );
                return ExitCode::FAILURE;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(err) => {
                eprintln!("wireguard-vpp: cannot watch the background process: {err}");
                return ExitCode::FAILURE;
            }
        }
    }
}

/// Loads and validates the configuration (nothing is created before it passes), then runs the tunnel.
/// `vpp_api: false` leaves VPP alone (its side of the memif is configured elsewhere); `memif_role` says
/// which end of the memif we are.
async fn run_named(
    name: &str,
    env: Env,
    vpp_api: bool,
    memif_role: memif::Role,
) -> Result<(), tunnel::TunnelError> {
    let cfg = config::load(&env.config_dir, name, &env)?;
    let mut options = tunnel::RunOptions::new(&cfg.vpp_api_socket);
    options.reconf = env.reconf.clone();
    options.memif_role = memif_role;
    if let Some(timeout) = env.memif_connect_timeout {
        options.first_connect_timeout = timeout;
    }
    if !vpp_api {
        options.vpp = tunnel::VppAccess::Off;
    } else if let (tunnel::VppAccess::Api(client), Some(timeout)) =
        (&mut options.vpp, env.api_connect_timeout)
    {
        client.connect_deadline = timeout;
    }
    tunnel::run(cfg, options, terminated()).await
}

/// Completes on the first SIGTERM, SIGINT, SIGHUP or SIGQUIT: each stops the tunnel with the full undo
/// (the original left VPP's objects behind on SIGHUP and SIGQUIT, B12).
pub async fn terminated() {
    let (Ok(mut term), Ok(mut int), Ok(mut hup), Ok(mut quit)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
        signal(SignalKind::quit()),
    ) else {
        tracing::error!(
            "cannot watch the stop signals; stop the tunnel by removing its UAPI socket"
        );
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
        _ = hup.recv() => {}
        _ = quit.recv() => {}
    }
}

fn is_socket(path: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::metadata(path).is_ok_and(|m| m.file_type().is_socket())
}

/// Logs to stderr (colours only on a terminal) at `LOG_LEVEL`; `RUST_LOG` overrides it when set.
pub fn init_logging(env: &Env) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        let level = env.log_level.level_filter();
        let filter = EnvFilter::default().add_directive(level.into());
        if level < tracing::level_filters::LevelFilter::DEBUG {
            // gotatun logs some per-packet conditions (a peer without an endpoint yet) at error level;
            // its real failures reach us as errors of our own.
            filter.add_directive("gotatun=off".parse().expect("a valid directive"))
        } else {
            filter
        }
    });
    use std::io::IsTerminal;
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stderr);
    if env.log_json {
        logs.json().init();
    } else {
        logs.with_ansi(std::io::stderr().is_terminal()).init();
    }
}
