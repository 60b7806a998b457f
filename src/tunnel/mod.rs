//! One tunnel's whole life (setup, run, reconnect, teardown), shared by the command line and the
//! Kubernetes controller.
//!
//! - [`Tunnel`] and [`run`]: the lifecycle in a task of its own, publishing a [`TunnelStatus`].
//! - [`packet_path`]: memif <-> l2 adapter <-> WireGuard device, burst by burst.
//! - [`settings`]: the validated configuration mapped onto each part's own settings.

mod handle;
mod lifecycle;
mod memif_end;
pub mod packet_path;
pub mod settings;
mod status;
mod vpp_side;

use std::path::PathBuf;
use std::time::Duration;

pub use handle::{RunOptions, Tunnel, VppAccess, run};
pub use status::{Phase, TunnelStatus};

use crate::wg::WgDevice;

/// The WireGuard device of a tunnel, with memif packet I/O.
pub type MemifDevice = WgDevice<packet_path::MemifIpSend, packet_path::MemifIpRecv>;

/// The UAPI socket `wg` uses for tunnel `name`.
pub fn uapi_socket_path(name: &str) -> PathBuf {
    PathBuf::from(crate::wg::uapi::DEFAULT_SOCKET_DIR).join(format!("{name}.sock"))
}

/// Why a tunnel stopped with an error. Each message says what to check.
#[derive(Debug, thiserror::Error)]
pub enum TunnelError {
    /// The configuration files are invalid.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The WireGuard device could not be created.
    #[error(transparent)]
    Device(crate::wg::DeviceError),
    /// The memif socket could not be created.
    #[error("cannot listen on the memif socket {}: {source}; check that its directory is writable", path.display())]
    MemifSocket {
        path: PathBuf,
        source: crate::memif::Error,
    },
    /// VPP never connected to the memif socket.
    #[error(
        "VPP has not connected to {} after {} s: check that VPP sees the socket at the same path (a shared \
         directory), that its memif has id = uid and the same secret, and VPP's log (`show memif`)",
        socket.display(), waited.as_secs()
    )]
    MemifTimeout { socket: PathBuf, waited: Duration },
    /// The memif accept task ended.
    #[error("the memif listener stopped unexpectedly")]
    MemifTaskEnded,
    /// VPP's API could not be reached.
    #[error("cannot connect to VPP's API: {0}")]
    VppConnect(crate::vpp::VppError),
    /// VPP refused a setup step (everything created before it was undone).
    #[error("setting up VPP failed: {0}")]
    VppSetup(crate::vpp::SetupError),
    /// The UAPI socket could not be created.
    #[error("{0}")]
    Uapi(crate::wg::uapi::ServerError),
    /// The tunnel's task ended abnormally (a bug: it panicked or was aborted).
    #[error("the tunnel task failed: {0}")]
    TaskFailed(String),
    /// The UAPI socket stopped accepting connections.
    #[error("the UAPI socket failed: {0}")]
    UapiAccept(std::io::Error),
}
