//! Teardown as data: every VPP object a tunnel creates is recorded as an [`Undo`] entry, and
//! [`undo_all`] removes them in reverse order, carrying on past failures (each is logged and returned),
//! so that a partial setup, a graceful exit and a restart all leave VPP as it was.

use std::net::IpAddr;

use super::client::Client;
use super::error::VppError;
use super::install::Installer;
use super::messages::{L2fibAddDel, MemifDelete, MemifSocketFilenameAddDelV2};
use super::types::{IpNeighborFlags, MacAddr};

/// How to remove one object that was created in VPP.
#[derive(Debug, Clone)]
pub enum Undo {
    /// `memif_socket_filename_add_del_v2(is_add=0)`.
    MemifSocket { socket_id: u32, filename: String },
    /// `memif_delete` (which also takes the memif out of its bridge domain).
    Memif { sw_if_index: u32 },
    /// Remove a host route, by the method that added it.
    HostRoute { ip: IpAddr, installer: Installer },
    /// `l2fib_add_del(is_add=0)`.
    L2fib {
        mac: MacAddr,
        bd_id: u32,
        sw_if_index: u32,
    },
    /// Remove a neighbour entry, by the method that added it.
    Neighbour {
        ip: IpAddr,
        mac: MacAddr,
        flags: IpNeighborFlags,
        installer: Installer,
    },
}

impl Undo {
    /// Removes the object.
    pub async fn apply(&self, client: &Client) -> Result<(), VppError> {
        match self {
            Self::MemifSocket {
                socket_id,
                filename,
            } => client
                .request(&MemifSocketFilenameAddDelV2 {
                    is_add: false,
                    socket_id: *socket_id,
                    socket_filename: filename.clone(),
                })
                .await
                .map(drop),
            Self::Memif { sw_if_index } => client
                .request(&MemifDelete {
                    sw_if_index: *sw_if_index,
                })
                .await
                .map(drop),
            Self::HostRoute { ip, installer } => installer.host_route(client, false, *ip).await,
            Self::L2fib {
                mac,
                bd_id,
                sw_if_index,
            } => client
                .request(&L2fibAddDel {
                    mac: *mac,
                    bd_id: *bd_id,
                    sw_if_index: *sw_if_index,
                    is_add: false,
                    static_mac: false,
                    filter_mac: false,
                    bvi_mac: false,
                })
                .await
                .map(drop),
            Self::Neighbour {
                ip,
                mac,
                flags,
                installer,
            } => installer.neighbour(client, false, *ip, *mac, *flags).await,
        }
    }
}

impl std::fmt::Display for Undo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::MemifSocket {
                socket_id,
                filename,
            } => write!(f, "remove memif socket id {socket_id} ({filename})"),
            Self::Memif { sw_if_index } => write!(f, "delete memif sw_if_index {sw_if_index}"),
            Self::HostRoute { ip, .. } => write!(f, "delete host route {ip}"),
            Self::L2fib { mac, bd_id, .. } => {
                write!(f, "delete l2fib entry {mac} in bridge {bd_id}")
            }
            Self::Neighbour { ip, mac, .. } => write!(f, "delete neighbour {ip} -> {mac}"),
        }
    }
}

/// An undo step that failed.
#[derive(Debug)]
pub struct UndoFailure {
    /// What was to be removed.
    pub undo: Undo,
    /// Why it failed.
    pub error: VppError,
}

impl std::fmt::Display for UndoFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.undo, self.error)
    }
}

/// Applies `entries` in reverse order (the last created is removed first), continuing after failures.
/// Each failure is logged and returned; an object VPP no longer has (e.g. after a restart) fails quietly
/// in the same way and changes nothing.
pub async fn undo_all(client: &Client, entries: Vec<Undo>) -> Vec<UndoFailure> {
    let mut failures = Vec::new();
    for undo in entries.into_iter().rev() {
        match undo.apply(client).await {
            Ok(()) => tracing::debug!(%undo, "undone"),
            Err(error) => {
                tracing::warn!(%undo, %error, "could not undo");
                failures.push(UndoFailure { undo, error });
            }
        }
    }
    failures
}
