//! `wireguard-vpp [-f] NAME`, as wireguard-go-vpp was run: the tunnel of `<VPP_MEMIF_CONFIG_DIR>/if/NAME.json`
//! until SIGTERM, SIGINT, SIGHUP, SIGQUIT or the removal of its UAPI socket.

use super::{RunOptions, TunnelError, VppAccess, run};
use crate::config::{self, Env};
use tokio::signal::unix::{SignalKind, signal};

/// Loads and validates the configuration (nothing is created before it passes), then runs the tunnel.
/// `vpp_api: false` leaves VPP alone (its side of the memif is configured elsewhere); `memif_role` says
/// which end of the memif we are.
pub async fn run_named(
    name: &str,
    env: Env,
    vpp_api: bool,
    memif_role: crate::memif::Role,
) -> Result<(), TunnelError> {
    let cfg = config::load(&env.config_dir, name, &env)?;
    let mut options = RunOptions::new(&cfg.vpp_api_socket);
    options.reconf = env.reconf.clone();
    options.memif_role = memif_role;
    if let Some(timeout) = env.memif_connect_timeout {
        options.first_connect_timeout = timeout;
    }
    if !vpp_api {
        options.vpp = VppAccess::Off;
    } else if let (VppAccess::Api(client), Some(timeout)) =
        (&mut options.vpp, env.api_connect_timeout)
    {
        client.connect_deadline = timeout;
    }
    run(cfg, options, terminated()).await
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
