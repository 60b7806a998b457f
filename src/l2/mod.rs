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
//!
//! The data plane's use, in short:
//! ```
//! use std::time::Instant;
//! use wireguard_vpp::l2::{frames, Adapter, L2Config, MacAddr, RxAction, TxAction};
//!
//! let mut config = L2Config::new("98:d2:93:00:00:03".parse()?, "42:42:42:42:42:42".parse()?);
//! config.arp_respond = vec!["172.22.77.33/32".parse()?];
//! let adapter = Adapter::new(config);
//! let now = Instant::now();
//!
//! // RX: VPP asks who has 172.22.77.33; the answer is written into `reply`.
//! let mut request = [0u8; frames::ARP_FRAME_LEN];
//! let gateway: MacAddr = "42:42:42:42:42:42".parse()?;
//! let (from, to) = ([10, 127, 111, 1].into(), [172, 22, 77, 33].into());
//! frames::arp_request(&mut request, MacAddr::BROADCAST, gateway, from, to)
//!     .ok_or("buffer too short")?;
//! let mut reply = [0u8; frames::MAX_CONTROL_FRAME_LEN];
//! let outcome = adapter.on_frame(&request, now, &mut reply);
//! assert_eq!(outcome.action, RxAction::Reply(42)); // send reply[..42] to VPP
//!
//! // TX: a packet from WireGuard gets a header (the gateway's MAC: no learning range covers 8.8.8.8).
//! let mut packet = [0u8; 20];
//! packet[0] = 0x45;
//! packet[16..20].copy_from_slice(&[8, 8, 8, 8]);
//! let TxAction::Send(header) = adapter.on_packet(&packet, now) else { unreachable!() };
//! assert_eq!(&header[..6], &gateway.octets());
//!
//! // After a burst that queued or learned something, and at `poll_at`: what the cache wants sent.
//! let mut frame = [0u8; 2048];
//! while let Some(transmit) = adapter.poll_transmit(now, &mut frame) {
//!     let _to_vpp = &frame[..transmit.len];
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
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

pub use adapter::{
    Adapter, DEFAULT_MTU, Neighbour, RxAction, RxOutcome, Transmit, TransmitKind, TxAction,
};
pub use announce::Announcement;
pub use config::{L2Config, NeighbourInstall, NeighbourSettings};
pub use counters::{CountersSnapshot, DropReason, Event};
pub use neighbours::{NeighbourEntry, NeighbourState};
pub use wire::MacAddr;
