//! The Kubernetes subcommands: `controller` and `render`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use wireguard_vpp::config::Env;
use wireguard_vpp::k8s::controller::{self, ControllerOptions};
use wireguard_vpp::k8s::local_tunnels::LocalTunnels;
use wireguard_vpp::k8s::render;

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
    /// Where to serve /metrics, /healthz and /readyz.
    #[arg(long, default_value = "0.0.0.0:9090")]
    metrics_addr: SocketAddr,
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
    let tunnels = LocalTunnels::new(args.uapi_dir, true);
    match runtime.block_on(controller::run(
        options,
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

pub fn render(args: &RenderArgs) -> ExitCode {
    let args = render::RenderArgs {
        file: args.file.clone(),
        gateway_dir: args.gateway_dir.clone(),
        out: args.out.clone(),
    };
    match render::run(&args) {
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
