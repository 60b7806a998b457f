//! The Ethernet side of a tunnel: everything between memif frames and IP packets, as pure code with no
//! I/O and no clock (time is an argument). It knows nothing of memif, VPP or WireGuard: the data plane
//! hands it borrowed frames and packets and gets back what to do with them.
//!
//! - [`wire`]: zero-copy views and parse/emit representations (Ethernet, ARP, IPv4, IPv6, ICMPv6 NDP).
//! - [`Adapter::on_frame`]: a frame from VPP -> deliver bytes `[a..b)` as an IP packet, send a reply
//!   (written into the caller's buffer), or drop it with a [`DropReason`]; plus learned neighbours and
//!   VPP neighbour installs as events.
//! - [`Adapter::on_packet`]: an IP packet from WireGuard -> the 14-byte header to put in front of it, or
//!   queued while its destination is resolved; [`Adapter::poll_transmit`] then yields solicitations,
//!   probes and the queued packets.
//! - [`Adapter::announcements`] / [`Adapter::write_announcement`]: the bounded startup announcement.
//! - [`L2Config`]: the settings, filled by the tunnel runtime from the configuration module (which also
//!   derives the MACs).
//!
//! Thread safety: see [`adapter`]. In short, `Adapter: Send + Sync`; RX and TX may run on different
//! threads and share it through an `Arc`.
#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod adapter;
mod announce;
pub mod config;
pub mod counters;
pub mod frames;
pub mod neighbours;
mod pending;
mod rx;
mod tx;
pub mod wire;

#[cfg(test)]
mod scenarios;

#[cfg(test)]
mod proptests;

pub use adapter::{Adapter, Neighbour, RxAction, RxOutcome, Transmit, TransmitKind, TxAction};
pub use announce::Announcement;
pub use config::{L2Config, NeighbourInstall, NeighbourSettings};
pub use counters::{CountersSnapshot, DropReason, Event};
pub use neighbours::{NeighbourEntry, NeighbourState};
pub use wire::MacAddr;
