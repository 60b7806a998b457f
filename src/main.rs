//! The `wireguard-vpp` command: the drop-in daemon `wireguard-vpp [-f] NAME` of the original, plus the
//! Kubernetes subcommands.
//!
//! Exit codes: 0 normal shutdown; 1 a setup or runtime failure (the message says what to check);
//! 2 a usage error (the original printed its usage on stdout and exited 0: an intended deviation).

#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use wireguard_vpp::memif;

mod daemon;
#[cfg(feature = "k8s")]
mod k8s_cli;

/// A userspace WireGuard endpoint attached to the FD.io VPP router through memif.
#[derive(Parser, Debug)]
#[command(
    name = "wireguard-vpp",
    version,
    about,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true,
    after_help = "Without a subcommand, runs the tunnel NAME from <VPP_MEMIF_CONFIG_DIR>/if/NAME.json, \
                  as wireguard-go-vpp did. Without -f it detaches once the UAPI socket is up."
)]
struct Cli {
    /// Stay in the foreground (also when WG_PROCESS_FOREGROUND=1).
    #[arg(short = 'f', long = "foreground")]
    foreground: bool,

    /// Leave VPP alone: its side of the memif is configured elsewhere (a VPP startup config, or the
    /// local demo); only the memif socket is served.
    #[arg(long = "no-vpp-api")]
    no_vpp_api: bool,

    /// Our end of the memif: `server` listens and VPP connects (the original's way); `client` connects
    /// to a socket VPP listens on.
    #[arg(long = "memif-role", default_value = "server", value_parser = memif_role())]
    memif_role: memif::Role,

    /// The interface name; characters outside [A-Za-z0-9_-] are removed, as in the original.
    #[arg(value_name = "INTERFACE-NAME", required = true)]
    name: Option<String>,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    #[cfg(feature = "k8s")]
    /// Run the Kubernetes controller: one tunnel per WireGuardVppTunnel of this node.
    Controller(k8s_cli::ControllerArgs),
    #[cfg(feature = "k8s")]
    /// Write the if/<name>.json, gw/<id>.json and wg config equivalent to tunnel resources.
    Render(k8s_cli::RenderArgs),
    #[cfg(feature = "k8s")]
    /// Print the WireGuardVppTunnel CustomResourceDefinition (YAML).
    Crd,
}

/// `--memif-role`: `server` or `client`, listed in `--help` and checked by clap.
fn memif_role() -> impl clap::builder::TypedValueParser<Value = memif::Role> {
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(["server", "client"])
        .map(|role| role.parse().expect("one of the possible values"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match (cli.command, cli.name) {
        #[cfg(feature = "k8s")]
        (Some(Command::Controller(args)), _) => k8s_cli::controller(args),
        #[cfg(feature = "k8s")]
        (Some(Command::Render(args)), _) => k8s_cli::render(&args),
        #[cfg(feature = "k8s")]
        (Some(Command::Crd), _) => {
            print!("{}", wireguard_vpp::k8s::crd_yaml());
            ExitCode::SUCCESS
        }
        (None, Some(name)) => daemon::main(&name, cli.foreground, !cli.no_vpp_api, cli.memif_role),
        (None, None) => unreachable!("clap requires NAME without a subcommand"),
    }
}
