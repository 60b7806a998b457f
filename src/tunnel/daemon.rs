//! `wireguard-vpp [-f] NAME`, as wireguard-go-vpp was run: the tunnel of `<VPP_MEMIF_CONFIG_DIR>/if/NAME.json`
//! until SIGTERM, SIGINT or the removal of its UAPI socket.

use super::{RunOptions, TunnelError, VppAccess, run};
use crate::config::{self, Env};
use tokio::signal::unix::{SignalKind, signal};

/// Loads and validates the configuration (nothing is created before it passes), then runs the tunnel.
/// `vpp_api: false` leaves VPP alone (its side of the memif is configured elsewhere).
pub async fn run_named(name: &str, env: Env, vpp_api: bool) -> Result<(), TunnelError> {
    let cfg = config::load(&env.config_dir, name, &env)?;
    let mut options = RunOptions::new(&cfg.vpp_api_socket);
    options.reconf = env.reconf.clone();
    if !vpp_api {
        options.vpp = VppAccess::Off;
    }
    run(cfg, options, terminated()).await
}

/// Completes on the first SIGTERM or SIGINT.
pub async fn terminated() {
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot watch SIGTERM/SIGINT; stop the tunnel by removing its UAPI socket");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
