//! memif, the shared-memory packet interface of VPP, DPDK and libmemif (protocol version 2.0, Ethernet
//! mode), in both roles. Self-contained: it knows nothing of the rest of the program.
//!
//! - Server (master): [`Listener::bind`] then [`Listener::accept`]: maps the regions the client sends.
//! - Client (slave): [`Connection::connect`] / [`Connection::connect_with_retry`]: builds the memory.
//!
//! Either gives a [`Connection`]; [`Connection::split`] yields the [`Control`] (await
//! [`Control::closed`], or [`Control::disconnect`] with a reason) and the queues: [`RxQueue::rx_burst`]
//! and [`TxQueue::tx_burst`] copy whole frames (chained as needed) between the rings and buffers the
//! caller owns, without allocating. Interrupts: [`RxQueue::set_interrupt_mode`] and
//! [`RxQueue::interrupt`] (a tokio waiter on the ring's eventfd).
//!
//! ```no_run
//! # async fn serve() -> Result<(), wireguard_vpp::memif::Error> {
//! use wireguard_vpp::memif::{Frame, Listener, ServerConfig};
//!
//! let mut listener = Listener::bind("home.sock", ServerConfig { id: 3, ..ServerConfig::default() })?;
//! let connection = listener.accept().await?; // VPP (the client) connected
//! let (mut control, mut rx, mut tx) = connection.split();
//! let mut frames = Frame::batch(32, 2048); // reused for every burst
//! let n = rx[0].rx_burst(&mut frames);
//! let echoed = tx[0].tx_burst(&frames[..n]);
//! let why = control.closed().await; // DISCONNECT, or the peer went away
//! # Ok(()) }
//! ```
//!
//! Not supported: several interface ids on one socket (one [`Listener`] serves one id), modes other
//! than Ethernet, and zero-copy as a client (a server accepts zero-copy clients: any number of regions,
//! any descriptor offsets).
//!
//! A server maps only memory the client cannot pull from under it: regions sealed against shrinking
//! (`F_SEAL_SHRINK`) and not on hugetlbfs, as VPP, DPDK and libmemif send in copy mode (`region`
//! tells what each really sends). Others, such as zero-copy clients' hugepage files, are refused
//! unless [`ServerConfig::allow_unsealed_regions`] trusts the client not to truncate them (which
//! would kill this process with SIGBUS). [`ServerConfig::max_regions`] and
//! [`ServerConfig::max_memory`] bound what one connection may map.
//!
//! The parts: [`msg`] (control messages), `socket` (SEQPACKET and fd passing), `region` (mappings;
//! the only place that touches shared memory), `ring` (ring header and descriptors), `queue` (bursts),
//! `server` and `client` (the two handshakes), `connection` (the connected state). The peer is never
//! trusted: bad messages are refused with a DISCONNECT naming the reason, and no descriptor can make
//! this code read or write outside a mapped region.
#![allow(unsafe_code)]
#![warn(clippy::undocumented_unsafe_blocks)]

mod client;
mod connection;
mod error;
mod eventfd;
pub mod msg;
mod queue;
mod region;
mod ring;
mod server;
mod socket;

#[cfg(test)]
mod tests;

pub use client::{ClientConfig, Retry};
pub use connection::{Connection, ConnectionInfo, Control, Disconnected, Role};
pub use error::{Error, ProtocolError};
pub use eventfd::Interrupt;
pub use queue::{
    DEFAULT_FRAME_CAPACITY, Frame, QueueCounters, QueueStats, RxBuffer, RxQueue, TxQueue,
};
pub use ring::{MAX_LOG2_RING_SIZE, RingError};
pub use server::{DEFAULT_MAX_MEMORY, Listener, ServerConfig};
pub use socket::SocketAddr;
