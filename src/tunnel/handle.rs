//! A running tunnel as its owner holds it: [`Tunnel`] (start, status, stop) and [`run`], with the
//! options of a run. Its life itself is in `lifecycle`.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{oneshot, watch};
use tracing::Instrument;

use crate::task::OwnedTask;

use super::packet_path::Link;
use super::settings;
use super::status::TunnelStatus;
use crate::config::{Reconf, TunnelConfig};
use crate::l2::Adapter;
use crate::memif::{self};
use crate::vpp::ClientOptions;
use crate::wg::WgDevice;

use super::lifecycle::Lifecycle;
use super::memif_end::{HANDSHAKE_TIMEOUT, MemifEnd, bind_memif};
use super::{MemifDevice, TunnelError};

/// How the tunnel reaches VPP.
#[derive(Debug, Clone)]
pub enum VppAccess {
    /// Create and remove the tunnel's objects through VPP's binary API at this socket.
    Api(ClientOptions),
    /// Do not touch VPP: its side of the memif is configured elsewhere (a VPP startup config, or a
    /// test peer). Only the memif socket is served.
    Off,
}

/// Settings of a run that do not come from the configuration files.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// How VPP is reached.
    pub vpp: VppAccess,
    /// Which end of the memif we are.
    pub memif_role: memif::Role,
    /// Directory of the UAPI socket (`/var/run/wireguard` for `wg`).
    pub uapi_dir: PathBuf,
    /// How long to wait for VPP's first memif connection before giving up.
    pub first_connect_timeout: Duration,
    /// The periodic re-application of a wg(8) config file (`WGGO_RECONF_*`).
    pub reconf: Option<Reconf>,
    /// The UDP port the WireGuard device binds before anything else is created, so that a port in
    /// use fails the start with nothing to undo; 0 (the default) binds a random one, which `wg`
    /// or the config file changes later.
    pub listen_port: u16,
}

impl RunOptions {
    /// Defaults: VPP through the API at `api_socket`, `wg`'s socket directory, 30 s for the memif.
    pub fn new(api_socket: &Path) -> RunOptions {
        RunOptions {
            vpp: VppAccess::Api(ClientOptions::new(api_socket)),
            memif_role: memif::Role::Server,
            uapi_dir: PathBuf::from(crate::wg::uapi::DEFAULT_SOCKET_DIR),
            first_connect_timeout: Duration::from_secs(30),
            reconf: None,
            listen_port: 0,
        }
    }
}

/// A running tunnel: its device and packet path for status and reconfiguration, and the task that
/// carries it through its life. Stop it with [`Tunnel::stop`]: dropping it aborts the task, which
/// leaves VPP objects behind.
pub struct Tunnel {
    name: String,
    memif_socket: PathBuf,
    device: Arc<MemifDevice>,
    link: Arc<Link>,
    status: watch::Receiver<TunnelStatus>,
    stop: Option<oneshot::Sender<()>>,
    task: OwnedTask<Result<(), TunnelError>>,
    _rx_pump: OwnedTask<()>,
}

impl Tunnel {
    /// Creates the tunnel's WireGuard device and memif socket, then sets up VPP and serves in a task of
    /// its own. Errors after this returns end the task: see [`Tunnel::finished`].
    pub async fn start(cfg: TunnelConfig, options: RunOptions) -> Result<Tunnel, TunnelError> {
        let span = tracing::info_span!("tunnel", name = %cfg.name);
        Tunnel::start_in(cfg, options).instrument(span).await
    }

    /// [`Tunnel::start`] in the tunnel's span, which its tasks inherit.
    async fn start_in(cfg: TunnelConfig, options: RunOptions) -> Result<Tunnel, TunnelError> {
        let adapter = Arc::new(Adapter::new(settings::l2_config(&cfg)));
        let (link, ip_send, ip_recv, rx_pump) = Link::new(adapter);
        link.set_mtu(settings::tunnel_mtu(&cfg, None));
        let mut device_settings = settings::device(&cfg);
        device_settings.listen_port = options.listen_port;
        let device = WgDevice::new(device_settings, ip_send, ip_recv)
            .await
            .map_err(TunnelError::Device)?;
        let device = Arc::new(device);
        let rx_pump = OwnedTask::spawn("rx pump", rx_pump.run());
        let memif = match options.memif_role {
            memif::Role::Server => MemifEnd::Listening(bind_memif(&cfg)?),
            memif::Role::Client => {
                MemifEnd::Connecting(settings::memif_client(&cfg, HANDSHAKE_TIMEOUT))
            }
        };
        let (status_tx, status) = watch::channel(TunnelStatus {
            listen_port: device.listen_port(),
            ..TunnelStatus::default()
        });
        let (stop, stopped) = oneshot::channel();
        let name = cfg.name.clone();
        let memif_socket = cfg.memif_socket.clone();
        let lifecycle = Lifecycle {
            cfg,
            options,
            device: Arc::clone(&device),
            link: Arc::clone(&link),
            status: status_tx,
        };
        let task = OwnedTask::spawn(
            "lifecycle",
            lifecycle.run(memif, async move {
                let _ = stopped.await;
            }),
        );
        Ok(Tunnel {
            name,
            memif_socket,
            device,
            link,
            status,
            stop: Some(stop),
            task,
            _rx_pump: rx_pump,
        })
    }

    /// The tunnel's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The memif socket VPP connects to.
    pub fn memif_socket(&self) -> &Path {
        &self.memif_socket
    }

    /// The WireGuard device (peers, statistics, configuration as a diff).
    pub fn device(&self) -> &Arc<MemifDevice> {
        &self.device
    }

    /// The packet path (l2 counters and neighbours, its own counters).
    pub fn link(&self) -> &Arc<Link> {
        &self.link
    }

    /// The published state.
    pub fn status(&self) -> watch::Receiver<TunnelStatus> {
        self.status.clone()
    }

    /// Waits until the tunnel ends by itself (the UAPI socket was removed, or a fatal error).
    pub async fn finished(&mut self) -> Result<(), TunnelError> {
        match self.task.join().await {
            Ok(result) => result,
            Err(join) => Err(TunnelError::TaskFailed(join.to_string())),
        }
    }

    /// Stops the tunnel and waits until everything it created is removed.
    pub async fn stop(mut self) -> Result<(), TunnelError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.finished().await
    }
}

/// Runs the tunnel `cfg` until `shutdown` completes or the tunnel ends by itself (its UAPI socket was
/// removed, or a fatal error). Everything created is removed again before this returns, also on error.
pub async fn run(
    cfg: TunnelConfig,
    options: RunOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<(), TunnelError> {
    let mut tunnel = Tunnel::start(cfg, options).await?;
    tokio::select! {
        result = tunnel.finished() => result,
        () = shutdown => tunnel.stop().await,
    }
}
