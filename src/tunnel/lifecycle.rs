//! The task of one tunnel, its whole life: set up, serve, survive memif and VPP restarts, and undo everything.
//!
//! Order (everything is validated before this runs, by the configuration module):
//! 1. the WireGuard device (UDP socket) and the memif listening socket, so VPP can connect at once;
//! 2. VPP's objects, as a transaction (stale objects of a crashed run are swept first);
//! 3. the first memif connection, within [`RunOptions::first_connect_timeout`];
//! 4. the l2fib entry and the startup announcement, on every (re)connection;
//! 5. the UAPI socket, so `wg` configures the device;
//! 6. serve until SIGTERM/SIGINT (the caller's `shutdown`), the UAPI socket's removal, or a fatal error;
//! 7. undo, in reverse: UAPI socket, memif, neighbour entries, l2fib, routes, memif in VPP, socket id.
//!
//! A memif that drops is waited for again (the device and its sessions stay); a VPP that restarts is
//! reconnected and the tunnel's objects are created again, also without touching the sessions, and also
//! when it restarts in the middle of our setup or before its first memif connection.
//! Every wait (for VPP's API, for the first memif connection, for a VPP that went away) ends on a stop
//! request; only a re-creation in progress is finished first, so that what it created is undone.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};

use super::packet_path::{Link, MAX_FRAME};
use super::settings;
use super::status::{Phase, TunnelStatus};
use crate::config::{Reconf, TunnelConfig};
use crate::memif::{self};
use crate::vpp::Client;
use crate::wg::uapi::{ServeEnd, UapiListener};

use super::handle::{RunOptions, VppAccess};
use super::memif_end::{MemifEnd, MemifEvent, serve_memif, wait_first_connection};
use super::vpp_side::{self, VppSide, VppTrouble};
use super::{MemifDevice, TunnelError};
use crate::task::OwnedTask;

/// The task of one tunnel.
pub(super) struct Lifecycle {
    pub(super) cfg: TunnelConfig,
    pub(super) options: RunOptions,
    pub(super) device: Arc<MemifDevice>,
    pub(super) link: Arc<Link>,
    pub(super) status: watch::Sender<TunnelStatus>,
}

impl Lifecycle {
    pub(super) async fn run(
        self,
        memif: MemifEnd,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), TunnelError> {
        let result = self.serve(memif, shutdown).await;
        self.status.send_modify(|s| {
            s.phase = match result {
                Ok(()) => Phase::Stopped,
                Err(_) => Phase::Failed,
            };
            s.error = result.as_ref().err().map(ToString::to_string);
        });
        result
    }

    pub(super) async fn serve(
        &self,
        memif: MemifEnd,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), TunnelError> {
        let Lifecycle {
            cfg,
            options,
            device,
            link,
            status,
        } = self;
        tokio::pin!(shutdown);
        let mut vpp = match &options.vpp {
            VppAccess::Api(client_options) => {
                // Nothing exists in VPP while connecting, so a signal can end the wait at once.
                let client = tokio::select! {
                    client = Client::connect(client_options.clone()) => client.map_err(TunnelError::VppConnect)?,
                    () = shutdown.as_mut() => {
                        tracing::info!(tunnel = %cfg.name, "stopping on signal while connecting to VPP");
                        return Ok(());
                    }
                };
                let params = settings::vpp_setup(cfg, options.memif_role == memif::Role::Client);
                let Some(mut side) = setup_vpp(cfg, client, params, shutdown.as_mut()).await?
                else {
                    return Ok(());
                };
                side.start_neighbours(cfg, link);
                side.apply_mtu(cfg, link).await;
                Some(side)
            }
            VppAccess::Off => None,
        };
        status.send_modify(|s| {
            s.phase = Phase::WaitingForMemif;
            s.memif_sw_if_index = vpp.as_ref().map(|v| v.tunnel.memif_sw_if_index);
        });

        let (memif_events, mut memif_rx) = mpsc::channel(4);
        let memif_task = OwnedTask::spawn(
            "memif",
            serve_memif(
                memif,
                cfg.memif_socket.clone(),
                Arc::clone(link),
                memif_events,
            ),
        );
        let result = async {
            if !first_connection(cfg, options, link, &mut vpp, status, &mut memif_rx, shutdown.as_mut()).await? {
                tracing::info!(tunnel = %cfg.name, "stopping on signal before VPP connected to the memif");
                return Ok(());
            }
            on_memif_up(cfg, link, vpp.as_mut()).await;
            status.send_modify(|s| s.phase = Phase::Running);
            let uapi =
                UapiListener::bind(&options.uapi_dir, &cfg.name).map_err(TunnelError::Uapi)?;
            tracing::info!(tunnel = %cfg.name, uapi = %uapi.path().display(), "tunnel up");
            // Runs while the tunnel serves; dropped (aborted) with this block.
            let _reconf = options
                .reconf
                .clone()
                .map(|reconf| OwnedTask::spawn("reconf", reapply(Arc::clone(device), reconf)));
            serve(
                cfg,
                link,
                &mut vpp,
                status,
                &mut memif_rx,
                uapi,
                device,
                shutdown.as_mut(),
            )
            .await
        }
        .await;

        status.send_modify(|s| s.phase = Phase::TearingDown);
        memif_task.stop().await;
        link.detach();
        if let Some(vpp) = vpp {
            vpp.teardown(cfg).await;
        }
        tracing::info!(tunnel = %cfg.name, dropped = %link.drop_summary(), "tunnel stopped");
        result
    }
}

/// Sets up the tunnel's objects in VPP. When VPP goes away in the middle (it restarted, and what was made
/// died with it; or only the connection dropped, and the next attempt's sweep removes what was made), waits
/// for VPP and sets up again: a VPP that restarts during our setup ends in a complete set of objects, as
/// one that restarts later does. `None` when `shutdown` came first (only the wait for VPP is raced: an
/// attempt in progress finishes, so that it rolls back whatever it made when it fails).
async fn setup_vpp(
    cfg: &TunnelConfig,
    client: Client,
    params: crate::vpp::TunnelSetup,
    mut shutdown: Pin<&mut impl Future<Output = ()>>,
) -> Result<Option<VppSide>, TunnelError> {
    let mut retry_after = None;
    loop {
        match VppSide::setup(cfg, &client, params.clone()).await {
            Ok(side) => return Ok(Some(side)),
            Err(TunnelError::VppSetup(err)) if err.is_connection_lost() => {
                tracing::warn!(tunnel = %cfg.name, error = %err, "lost VPP's API during setup; setting up again once VPP is back");
            }
            Err(err) => return Err(err),
        }
        tokio::select! {
            () = vpp_side::reconnect(&client, retry_after) => {}
            () = shutdown.as_mut() => {
                tracing::info!(tunnel = %cfg.name, "stopping on signal while VPP is away");
                return Ok(None);
            }
        }
        retry_after = Some(next_retry(retry_after));
    }
}

/// The back-off between attempts to create VPP's objects: 200 ms, doubling up to 5 s.
fn next_retry(last: Option<Duration>) -> Duration {
    last.map_or(Duration::from_millis(200), |d| {
        (d * 2).min(Duration::from_secs(5))
    })
}

/// Waits for VPP's first memif connection ([`wait_first_connection`]) while watching VPP: if it goes
/// away or deletes our memif meanwhile, the memif it was to connect is gone, so the objects are created
/// again (and the wait starts over) instead of waiting in vain until the timeout.
async fn first_connection(
    cfg: &TunnelConfig,
    options: &RunOptions,
    link: &Link,
    vpp: &mut Option<VppSide>,
    status: &watch::Sender<TunnelStatus>,
    memif_rx: &mut mpsc::Receiver<MemifEvent>,
    mut shutdown: Pin<&mut impl Future<Output = ()>>,
) -> Result<bool, TunnelError> {
    loop {
        let vpp_trouble = async {
            match vpp.as_mut() {
                Some(side) => side.trouble().await,
                None => std::future::pending().await,
            }
        };
        let trouble = tokio::select! {
            connected = wait_first_connection(cfg, options, memif_rx, shutdown.as_mut()) => return connected,
            trouble = vpp_trouble => trouble,
        };
        let Some(side) = vpp.as_mut() else { continue };
        let stop = async {
            shutdown.as_mut().await;
            tracing::info!(tunnel = %cfg.name, "stopping on signal while VPP is away");
        };
        tokio::pin!(stop);
        if recover(cfg, link, side, status, trouble, stop)
            .await
            .is_some()
        {
            return Ok(false);
        }
        status.send_modify(|s| s.phase = Phase::WaitingForMemif);
    }
}

/// After `trouble`: waits for VPP's API and creates the tunnel's objects again, retrying with back-off,
/// until that worked (`None`) or `stop` came first (its output). Only the waits are raced with `stop`: a
/// re-creation in progress finishes, so that whatever it creates is recorded for undo.
async fn recover<S: Future>(
    cfg: &TunnelConfig,
    link: &Link,
    side: &mut VppSide,
    status: &watch::Sender<TunnelStatus>,
    trouble: VppTrouble,
    mut stop: Pin<&mut S>,
) -> Option<S::Output> {
    status.send_modify(|s| s.phase = Phase::Reconnecting);
    match trouble {
        VppTrouble::ApiLost => {
            tracing::warn!(tunnel = %cfg.name, "lost VPP's API; waiting for VPP to come back")
        }
        VppTrouble::MemifDeleted => {
            tracing::warn!(tunnel = %cfg.name, memif = %cfg.vpp_memif_name(), "VPP deleted our memif; creating it again")
        }
    }
    let mut retry_after = None;
    loop {
        // VPP may stay away for long: a stop still ends the wait. (With the API still connected,
        // `reconnect` returns at once.)
        tokio::select! {
            () = side.reconnect(retry_after) => {}
            stopped = stop.as_mut() => return Some(stopped),
        }
        if side.recreate(cfg, link).await {
            break;
        }
        retry_after = Some(next_retry(retry_after));
    }
    status.send_modify(|s| s.memif_sw_if_index = Some(side.tunnel.memif_sw_if_index));
    None
}

/// How long the startup announcement waits for VPP to hand over TX ring slots after a connection.
const ANNOUNCE_SLOTS_WAIT: Duration = Duration::from_secs(1);

/// On every memif connection: the l2fib entry for our MAC (VPP would learn it too, so a failure is
/// only logged) and the startup announcement.
pub(super) async fn on_memif_up(cfg: &TunnelConfig, link: &Link, vpp: Option<&mut VppSide>) {
    if let Some(vpp) = vpp {
        vpp.add_l2fib(cfg).await;
    }
    if cfg.announce.arp || cfg.announce.ndp {
        // Frames sent before VPP has handed over ring slots would be lost: wait for them, briefly.
        let deadline = Instant::now() + ANNOUNCE_SLOTS_WAIT;
        while link.tx_free_slots() == 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let sent = link.announce(cfg.announce);
        tracing::info!(tunnel = %cfg.name, frames = sent, "announced our addresses");
    }
}

#[allow(clippy::too_many_arguments)]
pub(super) async fn serve(
    cfg: &TunnelConfig,
    link: &Arc<Link>,
    vpp: &mut Option<VppSide>,
    status: &watch::Sender<TunnelStatus>,
    memif_rx: &mut mpsc::Receiver<MemifEvent>,
    uapi: UapiListener,
    device: &Arc<MemifDevice>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), TunnelError> {
    let uapi_served = uapi.serve(Arc::clone(device));
    tokio::pin!(uapi_served, shutdown);
    let mut scratch = vec![0u8; MAX_FRAME];
    loop {
        let next_neighbour_work = link
            .adapter()
            .poll_at(Instant::now())
            // Idle, the loop looks again each second on the process-wide grid (one wake-up for all
            // tunnels).
            .unwrap_or_else(|| crate::task::next_shared_tick(Duration::from_secs(1)).into_std());
        let vpp_trouble = async {
            match vpp.as_mut() {
                Some(side) => side.trouble().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = &mut shutdown => {
                tracing::info!(tunnel = %cfg.name, "stopping on signal");
                return Ok(());
            }
            end = &mut uapi_served => return uapi_end(cfg, end),
            event = memif_rx.recv() => match event {
                Some(MemifEvent::Up(info)) => {
                    tracing::info!(tunnel = %cfg.name, peer = %info.peer_app_name, "memif reconnected");
                    on_memif_up(cfg, link, vpp.as_mut()).await;
                    status.send_modify(|s| s.phase = Phase::Running);
                }
                Some(MemifEvent::Down(down)) => {
                    tracing::warn!(tunnel = %cfg.name, reason = %down.reason, "memif disconnected; waiting for VPP to connect again");
                    status.send_modify(|s| s.phase = Phase::Reconnecting);
                }
                None => return Err(TunnelError::MemifTaskEnded),
            },
            trouble = vpp_trouble => {
                let Some(side) = vpp.as_mut() else { continue };
                // VPP may stay away for long: a signal or the UAPI socket's removal still stops the tunnel.
                let stop = async {
                    tokio::select! {
                        () = &mut shutdown => {
                            tracing::info!(tunnel = %cfg.name, "stopping on signal while VPP is away");
                            Ok(())
                        }
                        end = &mut uapi_served => uapi_end(cfg, end),
                    }
                };
                tokio::pin!(stop);
                if let Some(result) = recover(cfg, link, side, status, trouble, stop).await {
                    return result;
                }
            }
            () = tokio::time::sleep_until(next_neighbour_work.into()) => {
                link.flush_neighbour_work(Instant::now(), &mut scratch);
            }
        }
    }
}

/// Why serving the UAPI socket ended, as the tunnel's result.
pub(super) fn uapi_end(cfg: &TunnelConfig, end: ServeEnd) -> Result<(), TunnelError> {
    match end {
        ServeEnd::SocketRemoved => {
            tracing::info!(tunnel = %cfg.name, "UAPI socket removed; stopping");
            Ok(())
        }
        ServeEnd::AcceptFailed(source) => Err(TunnelError::UapiAccept(source)),
    }
}

/// Re-applies the wg(8) config file every interval, as a diff that keeps sessions (B25). The first run
/// is one second after start, as in the original.
pub(super) async fn reapply(device: Arc<MemifDevice>, reconf: Reconf) {
    tokio::time::sleep(Duration::from_secs(1)).await;
    loop {
        match device.apply_config_file(&reconf.path).await {
            Ok(report) => {
                tracing::debug!(file = %reconf.path.display(), commands = report.commands, "re-applied the WireGuard config");
                for (_, endpoint, error) in report.unresolved {
                    tracing::warn!(%endpoint, %error, "endpoint did not resolve; the peer keeps its current one");
                }
                tokio::time::sleep(reconf.interval).await;
            }
            Err(err) => {
                tracing::error!(error = %err, "re-applying the WireGuard config failed");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}
