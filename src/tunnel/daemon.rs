//! `wireguard-vpp [-f] NAME`, as wireguard-go-vpp was run: the tunnel of `<VPP_MEMIF_CONFIG_DIR>/if/NAME.json`
//! until SIGTERM, SIGINT, SIGHUP, SIGQUIT or the removal of its UAPI socket.

use std::time::Duration;

use super::{MemifRole, RunOptions, TunnelError, VppAccess, run};
use crate::config::{self, ConfigError, Env};
use tokio::signal::unix::{SignalKind, signal};

/// How long to wait for VPP's first memif connection, in seconds (default 30); not in the original.
pub const MEMIF_CONNECT_TIMEOUT_VAR: &str = "WGVPP_MEMIF_CONNECT_TIMEOUT";
/// How long to wait for VPP's API socket at start, in seconds (default 60); not in the original.
pub const API_CONNECT_TIMEOUT_VAR: &str = "WGVPP_API_CONNECT_TIMEOUT";

/// Loads and validates the configuration (nothing is created before it passes), then runs the tunnel.
/// `vpp_api: false` leaves VPP alone (its side of the memif is configured elsewhere); `memif_role` says
/// which end of the memif we are.
pub async fn run_named(
    name: &str,
    env: Env,
    vpp_api: bool,
    memif_role: MemifRole,
) -> Result<(), TunnelError> {
    let memif_timeout = timeout_var(MEMIF_CONNECT_TIMEOUT_VAR, "VPP's first memif connection")?;
    let api_timeout = timeout_var(API_CONNECT_TIMEOUT_VAR, "VPP's API socket")?;
    let cfg = config::load(&env.config_dir, name, &env)?;
    let mut options = RunOptions::new(&cfg.vpp_api_socket);
    options.reconf = env.reconf.clone();
    options.memif_role = memif_role;
    if let Some(timeout) = memif_timeout {
        options.first_connect_timeout = timeout;
    }
    if !vpp_api {
        options.vpp = VppAccess::Off;
    } else if let (VppAccess::Api(client), Some(timeout)) = (&mut options.vpp, api_timeout) {
        client.connect_deadline = timeout;
    }
    run(cfg, options, terminated()).await
}

fn timeout_var(var: &'static str, what: &str) -> Result<Option<Duration>, ConfigError> {
    parse_timeout(var, std::env::var(var).ok().as_deref(), what)
}

/// Parses the timeout variable `var` (seconds to wait for `what`, fractions allowed, above 0); empty
/// counts as unset.
pub fn parse_timeout(
    var: &'static str,
    value: Option<&str>,
    what: &str,
) -> Result<Option<Duration>, ConfigError> {
    let Some(value) = value.filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    match value.trim().parse::<f64>().map(Duration::try_from_secs_f64) {
        Ok(Ok(timeout)) if !timeout.is_zero() => Ok(Some(timeout)),
        _ => Err(ConfigError::Env {
            var,
            value: value.to_owned(),
            reason: format!("expected the seconds to wait for {what}, a number above 0"),
        }),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connect_timeouts_are_seconds_above_zero() {
        let parse = |value| parse_timeout(API_CONNECT_TIMEOUT_VAR, value, "VPP's API socket");
        assert_eq!(parse(None).ok(), Some(None));
        assert_eq!(parse(Some("")).ok(), Some(None));
        assert_eq!(
            parse(Some("2.5")).ok(),
            Some(Some(Duration::from_millis(2500)))
        );
        for bad in ["0", "-1", "ten", "NaN", "inf", "1e30"] {
            let err = parse(Some(bad)).expect_err(bad).to_string();
            assert!(err.contains(API_CONNECT_TIMEOUT_VAR), "{err}");
            assert!(err.contains("VPP's API socket"), "{err}");
        }
    }
}
