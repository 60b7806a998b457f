//! One tunnel's whole life: set up, serve, survive memif and VPP restarts, and undo everything.
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
//! reconnected and the tunnel's objects are created again, also without touching the sessions.
//! Every wait (for VPP's API, for the first memif connection, for a VPP that went away) ends on a stop
//! request; only a re-creation in progress is finished first, so that what it created is undone.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use super::dataplane::{Link, MAX_FRAME};
use super::settings;
use super::status::{Phase, TunnelStatus};
use crate::config::{Reconf, TunnelConfig};
use crate::l2::Adapter;
use crate::memif::{self, ClientConfig, Connection, Listener, Retry};
use crate::vpp::{self, Client, ClientOptions, NeighbourInstaller, VppTunnel};
use crate::wg::WgDevice;
use crate::wg::uapi::{ServeEnd, UapiListener};

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
    task: JoinHandle<Result<(), TunnelError>>,
    rx_pump: JoinHandle<()>,
}

impl Tunnel {
    /// Creates the tunnel's WireGuard device and memif socket, then sets up VPP and serves in a task of
    /// its own. Errors after this returns end the task: see [`Tunnel::finished`].
    pub async fn start(cfg: TunnelConfig, options: RunOptions) -> Result<Tunnel, TunnelError> {
        let adapter = Arc::new(Adapter::new(settings::l2_config(&cfg)));
        let (link, ip_send, ip_recv, rx_pump) = Link::new(adapter);
        link.set_mtu(settings::tunnel_mtu(&cfg, None));
        let device = WgDevice::new(settings::device(&cfg), ip_send, ip_recv)
            .await
            .map_err(TunnelError::Device)?;
        let device = Arc::new(device);
        let rx_pump = tokio::spawn(rx_pump.run());
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
        let task = tokio::spawn(lifecycle.run(memif, async move {
            let _ = stopped.await;
        }));
        Ok(Tunnel {
            name,
            memif_socket,
            device,
            link,
            status,
            stop: Some(stop),
            task,
            rx_pump,
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
        match (&mut self.task).await {
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

impl Drop for Tunnel {
    fn drop(&mut self) {
        self.task.abort();
        self.rx_pump.abort();
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

/// The task of one tunnel.
struct Lifecycle {
    cfg: TunnelConfig,
    options: RunOptions,
    device: Arc<MemifDevice>,
    link: Arc<Link>,
    status: watch::Sender<TunnelStatus>,
}

impl Lifecycle {
    async fn run(
        self,
        memif: MemifEnd,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), TunnelError> {
        let result = self.serve(memif, shutdown).await;
        self.status.send_modify(|s| {
            s.phase = Phase::Stopped;
            s.error = result.as_ref().err().map(ToString::to_string);
        });
        result
    }

    async fn serve(
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
                let mut side = VppSide::setup(cfg, client, params).await?;
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
        let memif_task = tokio::spawn(serve_memif(
            memif,
            cfg.memif_socket.clone(),
            Arc::clone(link),
            memif_events,
        ));
        let result = async {
            if !wait_first_connection(cfg, options, &mut memif_rx, shutdown.as_mut()).await? {
                tracing::info!(tunnel = %cfg.name, "stopping on signal before VPP connected to the memif");
                return Ok(());
            }
            on_memif_up(cfg, link, vpp.as_mut()).await;
            status.send_modify(|s| s.phase = Phase::Running);
            let uapi =
                UapiListener::bind(&options.uapi_dir, &cfg.name).map_err(TunnelError::Uapi)?;
            tracing::info!(tunnel = %cfg.name, uapi = %uapi.path().display(), "tunnel up");
            let reconf = options
                .reconf
                .clone()
                .map(|reconf| tokio::spawn(reapply(Arc::clone(device), reconf)));
            let served = serve(
                cfg,
                link,
                &mut vpp,
                status,
                &mut memif_rx,
                uapi,
                device,
                shutdown.as_mut(),
            )
            .await;
            if let Some(task) = reconf {
                task.abort();
            }
            served
        }
        .await;

        status.send_modify(|s| s.phase = Phase::TearingDown);
        memif_task.abort();
        let _ = memif_task.await;
        link.detach();
        if let Some(vpp) = vpp {
            vpp.teardown(cfg).await;
        }
        result
    }
}

/// What happened to the memif connection.
#[derive(Debug)]
enum MemifEvent {
    Up(memif::ConnectionInfo),
    Down(memif::Disconnected),
}

fn bind_memif(cfg: &TunnelConfig) -> Result<Listener, TunnelError> {
    if let Some(dir) = cfg.memif_socket.parent() {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(dir)
            .map_err(|source| TunnelError::MemifSocket {
                path: cfg.memif_socket.clone(),
                source: memif::Error::Socket {
                    addr: dir.display().to_string(),
                    source,
                },
            })?;
    }
    let server = settings::memif_server(cfg, HANDSHAKE_TIMEOUT);
    Listener::bind(&cfg.memif_socket, server).map_err(|source| TunnelError::MemifSocket {
        path: cfg.memif_socket.clone(),
        source,
    })
}

/// Time allowed for each step of a memif handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Our end of the memif: a listening socket, or what we connect with.
enum MemifEnd {
    Listening(Listener),
    Connecting(ClientConfig),
}

impl MemifEnd {
    /// The next connection with VPP: accepted, or connected (retrying while VPP's socket is absent).
    async fn next(&mut self, socket: &Path) -> Result<Connection, memif::Error> {
        match self {
            MemifEnd::Listening(listener) => listener.accept().await,
            MemifEnd::Connecting(client) => {
                Connection::connect_with_retry(
                    socket,
                    client,
                    Retry {
                        deadline: None,
                        ..Retry::default()
                    },
                )
                .await
            }
        }
    }
}

/// Takes VPP's memif connections one after the other, handing each one's queues to the packet path.
async fn serve_memif(
    mut end: MemifEnd,
    socket: PathBuf,
    link: Arc<Link>,
    events: mpsc::Sender<MemifEvent>,
) {
    loop {
        let connection = match end.next(&socket).await {
            Ok(connection) => connection,
            Err(err) => {
                tracing::error!(error = %err, "memif: no connection with VPP; retrying in 1 s");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let info = connection.info().clone();
        let (mut control, rx, tx) = connection.split();
        let (Some(rx), Some(tx)) = (rx.into_iter().next(), tx.into_iter().next()) else {
            control
                .disconnect("at least one queue each way is needed")
                .await;
            continue;
        };
        link.attach(rx, tx).await;
        let _ = events.send(MemifEvent::Up(info)).await;
        let down = control.closed().await;
        link.detach();
        let _ = events.send(MemifEvent::Down(down)).await;
    }
}

/// Waits for VPP's first memif connection: true once connected, false when `shutdown` came first.
async fn wait_first_connection(
    cfg: &TunnelConfig,
    options: &RunOptions,
    memif_rx: &mut mpsc::Receiver<MemifEvent>,
    mut shutdown: Pin<&mut impl Future<Output = ()>>,
) -> Result<bool, TunnelError> {
    let deadline = tokio::time::sleep(options.first_connect_timeout);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            () = shutdown.as_mut() => return Ok(false),
            event = memif_rx.recv() => match event {
                Some(MemifEvent::Up(info)) => {
                    tracing::info!(tunnel = %cfg.name, peer = %info.peer_app_name, "memif connected");
                    return Ok(true);
                }
                Some(MemifEvent::Down(_)) => {}
                None => return Err(TunnelError::MemifTimeout { socket: cfg.memif_socket.clone(), waited: Duration::ZERO }),
            },
            () = &mut deadline => return Err(TunnelError::MemifTimeout {
                socket: cfg.memif_socket.clone(),
                waited: options.first_connect_timeout,
            }),
        }
    }
}

/// On every memif connection: the l2fib entry for our MAC (VPP would learn it too, so a failure is
/// only logged) and the startup announcement.
async fn on_memif_up(cfg: &TunnelConfig, link: &Link, vpp: Option<&mut VppSide>) {
    if let Some(vpp) = vpp {
        vpp.add_l2fib(cfg).await;
    }
    if cfg.gratuitous_on_startup {
        let sent = link.announce();
        tracing::info!(tunnel = %cfg.name, frames = sent, "announced our addresses");
    }
}

#[allow(clippy::too_many_arguments)]
async fn serve(
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
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(1));
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
                status.send_modify(|s| s.phase = Phase::Reconnecting);
                let Some(side) = vpp.as_mut() else { continue };
                match trouble {
                    VppTrouble::ApiLost => tracing::warn!(tunnel = %cfg.name, "lost VPP's API; waiting for VPP to come back"),
                    VppTrouble::MemifDeleted => tracing::warn!(tunnel = %cfg.name, memif = %cfg.vpp_memif_name(), "VPP deleted our memif; creating it again"),
                }
                let mut retry_after = None;
                loop {
                    // VPP may stay away for long: a signal or the UAPI socket's removal still stops the
                    // tunnel. Re-creating is not raced, so that whatever it creates is recorded for undo.
                    // (With the API still connected, `reconnect` returns at once.)
                    tokio::select! {
                        () = side.reconnect(retry_after) => {}
                        () = &mut shutdown => {
                            tracing::info!(tunnel = %cfg.name, "stopping on signal while VPP is away");
                            return Ok(());
                        }
                        end = &mut uapi_served => return uapi_end(cfg, end),
                    }
                    if side.recreate(cfg, link).await {
                        break;
                    }
                    retry_after = Some(retry_after.map_or(Duration::from_millis(200), |d: Duration| (d * 2).min(Duration::from_secs(5))));
                }
                status.send_modify(|s| s.memif_sw_if_index = Some(side.tunnel.memif_sw_if_index));
            }
            () = tokio::time::sleep_until(next_neighbour_work.into()) => {
                link.flush_neighbour_work(Instant::now(), &mut scratch);
            }
        }
    }
}

/// Why serving the UAPI socket ended, as the tunnel's result.
fn uapi_end(cfg: &TunnelConfig, end: ServeEnd) -> Result<(), TunnelError> {
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
async fn reapply(device: Arc<MemifDevice>, reconf: Reconf) {
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

/// Why the tunnel's objects in VPP must be created again.
enum VppTrouble {
    /// The API connection closed: VPP exited or restarted.
    ApiLost,
    /// Our memif was deleted in a VPP that stays up (`delete memif`, by hand or by a tool).
    MemifDeleted,
}

/// The tunnel's objects in VPP and what keeps them: the API client and the neighbour installer.
struct VppSide {
    client: Client,
    /// VPP's interface events (`None` when VPP refused the subscription: deletions go unnoticed then).
    events: Option<broadcast::Receiver<vpp::messages::SwInterfaceEvent>>,
    /// An event said our memif may be gone; a dump has yet to confirm it.
    memif_suspect: bool,
    /// What to create, again after a VPP restart.
    params: vpp::TunnelSetup,
    tunnel: VppTunnel,
    neighbours: Option<NeighbourInstaller>,
    /// Whether `tunnel` has the l2fib entry in its undo record (it is added again on every memif
    /// connection, but must be removed once).
    l2fib_recorded: bool,
}

impl VppSide {
    async fn setup(
        cfg: &TunnelConfig,
        client: Client,
        params: vpp::TunnelSetup,
    ) -> Result<VppSide, TunnelError> {
        sweep_neighbours(cfg, &client, "left by an earlier run").await;
        let tunnel = vpp::setup(&client, &params)
            .await
            .map_err(TunnelError::VppSetup)?;
        tracing::info!(tunnel = %cfg.name, memif = %cfg.vpp_memif_name(), sw_if_index = tunnel.memif_sw_if_index, "VPP objects created");
        let events = match client.interface_events().await {
            Ok(events) => Some(events),
            Err(err) => {
                tracing::warn!(tunnel = %cfg.name, error = %err, "no interface events from VPP: a memif deleted by hand will not be noticed");
                None
            }
        };
        Ok(VppSide {
            client,
            events,
            memif_suspect: false,
            params,
            tunnel,
            neighbours: None,
            l2fib_recorded: false,
        })
    }

    /// Resolves when VPP's API connection closes, or when VPP reports our memif deleted and a dump
    /// confirms it (VPP reuses interface indexes, so an event about an older memif is checked).
    /// Cancel-safe: the serve loop drops it whenever another branch wins, so an event that is being
    /// checked is remembered in `memif_suspect` and checked again on the next call.
    async fn trouble(&mut self) -> VppTrouble {
        loop {
            if self.memif_suspect {
                let exists = memif_exists(&self.client, self.tunnel.memif_sw_if_index).await;
                self.memif_suspect = false;
                if !exists {
                    return VppTrouble::MemifDeleted;
                }
            }
            let memif = self.tunnel.memif_sw_if_index;
            let event = async {
                match self.events.as_mut() {
                    Some(events) => events.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = self.client.disconnected() => return VppTrouble::ApiLost,
                event = event => match event {
                    Ok(event) => self.memif_suspect = event.deleted && event.sw_if_index == memif,
                    Err(broadcast::error::RecvError::Lagged(_)) => self.memif_suspect = true,
                    Err(broadcast::error::RecvError::Closed) => self.events = None,
                },
            }
        }
    }

    /// Sets the tunnel MTU from the interface file or the BVI's MTU in VPP (read again after each
    /// re-creation: VPP may have come back with another).
    async fn apply_mtu(&self, cfg: &TunnelConfig, link: &Link) {
        let bvi_mtu = if cfg.mtu.is_some() {
            None
        } else {
            match vpp::bvi_mtu(&self.client, &self.params.bvi).await {
                Ok(mtu) => mtu,
                Err(err) => {
                    tracing::warn!(tunnel = %cfg.name, error = %err, "cannot read the BVI's MTU; the tunnel MTU stays at its default");
                    None
                }
            }
        };
        let mtu = settings::tunnel_mtu(cfg, bvi_mtu);
        link.set_mtu(mtu);
        match (cfg.mtu, bvi_mtu) {
            (Some(_), _) => {
                tracing::info!(tunnel = %cfg.name, mtu, "tunnel MTU from the interface file")
            }
            (None, Some(bvi)) => {
                tracing::info!(tunnel = %cfg.name, mtu, bvi_mtu = bvi, "tunnel MTU: the BVI's MTU less WireGuard's 80 bytes")
            }
            (None, None) => {
                tracing::info!(tunnel = %cfg.name, mtu, "tunnel MTU: the default (no BVI named)")
            }
        }
    }

    /// Adds the l2fib entry for our MAC, recording it for teardown the first time only.
    async fn add_l2fib(&mut self, cfg: &TunnelConfig) {
        let mac = cfg.self_mac;
        let added = if self.l2fib_recorded {
            let entry = vpp::messages::L2fibAddDel {
                mac,
                bd_id: self.tunnel.bridge_id,
                sw_if_index: self.tunnel.memif_sw_if_index,
                is_add: true,
                static_mac: false,
                filter_mac: false,
                bvi_mac: false,
            };
            self.client.request(&entry).await.map(drop)
        } else {
            self.tunnel.add_l2fib(&self.client, mac).await
        };
        match added {
            Ok(()) => self.l2fib_recorded = true,
            Err(err) => {
                tracing::warn!(tunnel = %cfg.name, error = %err, "l2fib entry not added; VPP learns our MAC from traffic instead")
            }
        }
    }

    fn start_neighbours(&mut self, cfg: &TunnelConfig, link: &Link) {
        if self.tunnel.installer.is_none() || !cfg.install.neighbours.any() {
            return;
        }
        let installer = NeighbourInstaller::spawn(
            self.client.clone(),
            self.tunnel.installer.clone(),
            settings::neighbour_flags(cfg),
            256,
        );
        link.set_neighbour_installer(Some(installer.handle()));
        self.neighbours = Some(installer);
    }

    /// Waits (after `delay`, if any) until the API client is connected to VPP again, retrying with
    /// backoff. Safe to cancel: nothing is created here.
    async fn reconnect(&self, delay: Option<Duration>) {
        if let Some(delay) = delay {
            tokio::time::sleep(delay).await;
        }
        let mut backoff = Duration::from_millis(200);
        while self.client.reconnect().await.is_err() {
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }

    /// Creates the tunnel's objects again in a VPP that came back; false when that failed (logged; the
    /// transaction undid its steps). The old objects died with VPP; a VPP that did not restart gets them
    /// swept and re-created. The neighbour installer keeps running: it re-installs its entries once the
    /// client has reconnected (B24), unless the BVI it installs on changed.
    async fn recreate(&mut self, cfg: &TunnelConfig, link: &Link) -> bool {
        let tunnel = match vpp::setup(&self.client, &self.params).await {
            Ok(tunnel) => tunnel,
            Err(err) => {
                tracing::error!(tunnel = %cfg.name, error = %err, "re-creating the VPP objects failed; retrying");
                return false;
            }
        };
        tracing::info!(tunnel = %cfg.name, sw_if_index = tunnel.memif_sw_if_index, "VPP is back; objects created again");
        self.apply_mtu(cfg, link).await;
        let same_bvi = same_target(&self.tunnel.installer, &tunnel.installer);
        self.tunnel = tunnel;
        self.l2fib_recorded = false;
        if !same_bvi {
            link.set_neighbour_installer(None);
            if let Some(installer) = self.neighbours.take() {
                drop(installer.stop().await);
            }
        }
        if self.neighbours.is_none() {
            self.start_neighbours(cfg, link);
        }
        true
    }

    async fn teardown(mut self, cfg: &TunnelConfig) {
        if let Some(installer) = self.neighbours.take() {
            for undo in installer.stop().await {
                self.tunnel.record(undo);
            }
        }
        if !self.client.is_connected() {
            tracing::warn!(
                tunnel = %cfg.name,
                "VPP's API is gone: nothing removed (a restarted VPP has none of the tunnel's objects; \
                 those of a VPP that kept running are swept at the next start)"
            );
            return;
        }
        for failure in self.tunnel.teardown(&self.client).await {
            tracing::error!(tunnel = %cfg.name, "{failure}");
        }
        sweep_neighbours(cfg, &self.client, "learned by VPP from our answers").await;
        let _ = self.client.close().await;
    }
}

/// Removes VPP's neighbour entries with our MAC (see [`vpp::sweep_neighbours`]); a failure is logged.
async fn sweep_neighbours(cfg: &TunnelConfig, client: &Client, which: &str) {
    match vpp::sweep_neighbours(client, cfg.self_mac).await {
        Ok(0) => {}
        Ok(removed) => {
            tracing::info!(tunnel = %cfg.name, removed, "removed neighbour entries {which}")
        }
        Err(err) => {
            tracing::warn!(tunnel = %cfg.name, error = %err, "could not remove neighbour entries {which}")
        }
    }
}

/// Whether VPP still has the memif `sw_if_index`; true when the dump fails (the API's own loss is
/// noticed elsewhere).
async fn memif_exists(client: &Client, sw_if_index: u32) -> bool {
    match client.dump(&vpp::messages::MemifDump).await {
        Ok(memifs) => memifs.iter().any(|m| m.sw_if_index == sw_if_index),
        Err(_) => true,
    }
}

/// Whether two resolved install methods install on the same BVI the same way.
fn same_target(a: &vpp::Installer, b: &vpp::Installer) -> bool {
    use vpp::Installer::{Api, None, Vppctl};
    match (a, b) {
        (Api { bvi_sw_if_index: a }, Api { bvi_sw_if_index: b }) => a == b,
        (Vppctl { bvi_name: a, .. }, Vppctl { bvi_name: b, .. }) => a == b,
        (None, None) => true,
        _ => false,
    }
}
