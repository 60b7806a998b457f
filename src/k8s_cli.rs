//! The Kubernetes subcommands: `controller` and `render`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use wireguard_vpp::config::Env;
use wireguard_vpp::k8s::controller::{self, ControllerOptions, ControllerTuning};
use wireguard_vpp::k8s::local_tunnels::LocalTunnels;
use wireguard_vpp::k8s::render_files;
use wireguard_vpp::k8s::status::scrub;

/// Arguments of `wireguard-vpp controller`.
#[derive(Args, Debug)]
pub struct ControllerArgs {
    /// This node's name (the downward API's spec.nodeName); only its tunnels are run.
    #[arg(long, env = "NODE_NAME")]
    node_name: String,
    /// Watch one namespace only (default: all).
    #[arg(long, env = "WATCH_NAMESPACE")]
    namespace: Option<String>,
    /// Directory of the bridges' gateway files, <bridgeID>.json [default: <VPP_MEMIF_CONFIG_DIR>/gw].
    #[arg(long)]
    gateway_dir: Option<PathBuf>,
    /// Where to serve /metrics, /healthz and /readyz. The default is the node's loopback only: probes
    /// and scrapes from elsewhere need an address they reach (the Helm chart sets one).
    #[arg(long, env = "WGVPP_METRICS_ADDR", default_value = "127.0.0.1:9477")]
    metrics_addr: SocketAddr,
    /// Seconds after a tunnel is first seen during which /readyz waits for it to be Running; after
    /// them, a tunnel whose status says why it is not Running no longer holds readiness back.
    #[arg(
        long,
        env = "WGVPP_STARTUP_GRACE",
        default_value_t = 60,
        value_name = "SECONDS"
    )]
    startup_grace: u64,
    /// /healthz fails when the watch of this node's tunnels delivered no event and no successful
    /// list for this many seconds (0: never).
    #[arg(
        long,
        env = "WGVPP_WATCH_STALL_TIMEOUT",
        default_value_t = 600,
        value_name = "SECONDS"
    )]
    watch_stall_timeout: u64,
    /// Directory of the tunnels' UAPI sockets (`wg` looks in /var/run/wireguard).
    #[arg(long, default_value = "/var/run/wireguard")]
    uapi_dir: PathBuf,
}

/// Arguments of `wireguard-vpp render`.
#[derive(Args, Debug)]
pub struct RenderArgs {
    /// A YAML file of WireGuardVppTunnel resources (and the Secrets they name, if any).
    #[arg(short = 'f', long = "file")]
    file: PathBuf,
    /// Directory of gateway files (<bridgeID>.json): with it the result is validated as the daemon would.
    #[arg(long)]
    gateway_dir: Option<PathBuf>,
    /// Where to write if/<name>.json, gw/<id>.json and <name>.conf.
    #[arg(long)]
    out: PathBuf,
}

pub fn controller(args: ControllerArgs) -> ExitCode {
    let env = match Env::from_process() {
        Ok(env) => env,
        Err(err) => {
            eprintln!("wireguard-vpp controller: {err}");
            return ExitCode::FAILURE;
        }
    };
    crate::daemon::init_logging(&env);
    log_panics_scrubbed();
    let options = ControllerOptions {
        node_name: args.node_name,
        namespace: args.namespace,
        gateway_dir: args
            .gateway_dir
            .unwrap_or_else(|| env.config_dir.join("gw")),
        env,
        metrics_addr: Some(args.metrics_addr),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("wireguard-vpp controller: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let tuning = ControllerTuning {
        startup_grace: Duration::from_secs(args.startup_grace),
        watch_stall: (args.watch_stall_timeout > 0)
            .then(|| Duration::from_secs(args.watch_stall_timeout)),
        ..ControllerTuning::default()
    };
    let tunnels = LocalTunnels::new(args.uapi_dir, true)
        .with_vpp_check(&options.env.vpp_api_socket)
        .with_orphan_sweep(&options.env.memif_socket_dir);
    match runtime.block_on(controller::run(
        options,
        tuning,
        tunnels,
        crate::daemon::terminated(),
    )) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!("{err}");
            eprintln!("wireguard-vpp controller: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Panics (which the controller contains: a tunnel's task, a reconcile) are logged as errors with their
/// location, and their text with anything shaped like a key cut out, instead of printed raw on stderr.
fn log_panics_scrubbed() {
    std::panic::set_hook(Box::new(|info| {
        let payload = info.payload();
        let text = payload
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
            .unwrap_or("(no message)");
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        tracing::error!(panic = %scrub(text), %location, "panicked");
    }));
}

pub fn render(args: &RenderArgs) -> ExitCode {
    let args = render_files::RenderArgs {
        file: args.file.clone(),
        gateway_dir: args.gateway_dir.clone(),
        out: args.out.clone(),
    };
    match render_files::run(&args) {
        Ok(written) => {
            for path in written {
                println!("{}", path.display());
            }
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("wireguard-vpp render: {err}");
            ExitCode::FAILURE
        }
    }
}
