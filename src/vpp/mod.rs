//! The VPP side of a tunnel: a client for VPP's binary API over its unix socket, and the transactional
//! setup and undo of the tunnel's VPP objects (memif socket and interface, bridge port, host routes, l2fib
//! entry, neighbour entries), by the API or by vppctl.
//!
//! - [`codec`], [`types`], [`messages`]: the wire encoding and the typed messages, each with its `name_crc`.
//! - [`frame`], `session`, [`client`]: the socket framing, one registered connection (handshake, CRC check
//!   at connect, request/reply by context, dumps, events), and the asynchronous [`Client`] over it
//!   (timeouts, reconnect).
//! - [`install`], [`vppctl`]: the `api`, `vppctl` and `none` install methods, and the BVI lookup by exact name.
//! - [`mod@setup`], [`undo`]: [`setup()`] as a transaction recording [`Undo`] entries, the stale-object sweep, and
//!   [`undo_all`].
//! - [`neighbour`]: neighbour installs off the packet path.
//!
//! Checked against VPP v26.06's API definitions (copied in `vpp-api/`); every message used has the same CRC
//! in v24.10, v25.06, v26.02 and v26.06, and a VPP with other CRCs is refused at connect with the message and
//! both CRCs named. This module knows nothing of the configuration files, memif or WireGuard.

pub mod client;
pub mod codec;
pub mod error;
pub mod frame;
pub mod install;
pub mod messages;
pub mod neighbour;
mod session;
pub mod setup;
pub mod types;
pub mod undo;
pub mod vppctl;

pub use client::{Client, ClientOptions, DEFAULT_SOCKET_PATH};
pub use error::{ApiError, MessageMismatch, VppError};
pub use install::{
    Bvi, BviError, InstallMethod, Installer, RouteFamilies, bvi_mtu, find_interface, host_routes,
};
pub use neighbour::{NeighbourCounts, NeighbourHandle, NeighbourInstaller};
pub use setup::{SetupError, TunnelSetup, VppTunnel, setup, sweep_neighbours, sweep_stale};
pub use types::IpNeighborFlags;
pub use undo::{Undo, UndoFailure, undo_all};
pub use vppctl::{Vppctl, VppctlError};
