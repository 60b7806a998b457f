//! Our end of the memif: the listening socket or the connecting client, the task that takes VPP's
//! connections one after the other, and the wait for the first one.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::packet_path::Link;
use super::settings;
use crate::config::TunnelConfig;
use crate::memif::{self, ClientConfig, Connection, Listener, Retry};

use super::TunnelError;
use super::handle::RunOptions;

/// What happened to the memif connection.
#[derive(Debug)]
pub(super) enum MemifEvent {
    Up(memif::ConnectionInfo),
    Down(memif::Disconnected),
}

pub(super) fn bind_memif(cfg: &TunnelConfig) -> Result<Listener, TunnelError> {
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
pub(super) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Our end of the memif: a listening socket, or what we connect with.
pub(super) enum MemifEnd {
    Listening(Listener),
    Connecting(ClientConfig),
}

impl MemifEnd {
    /// The next connection with VPP: accepted, or connected (retrying while VPP's socket is absent).
    pub(super) async fn next(&mut self, socket: &Path) -> Result<Connection, memif::Error> {
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
pub(super) async fn serve_memif(
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
pub(super) async fn wait_first_connection(
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
