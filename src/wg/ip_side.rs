//! The IP side of a device, as its engine uses it.
//!
//! [`IpRecv`] is gotatun's: `recv` returns a burst of whole IPv4/IPv6 packets (trimmed to their IP
//! length), and `mtu()` the tunnel MTU, up to which packets are padded before encryption.
//! [`IpSend`] is ours: it takes the decrypted packets of one burst one by one and is flushed once
//! after the burst, so a sink that batches (memif: one ring publish and at most one interrupt per
//! burst) can.

use std::future::Future;
use std::io;

use gotatun::packet::{Ip, Packet};
pub use gotatun::tun::{IpRecv, MtuWatcher};

/// Packets moved per burst, on either side: read from the IP side, sent in one `send_many_to`,
/// framed before one flush.
pub const BURST: usize = 64;

/// The sink of decrypted packets whose source address belongs to the peer that sent them.
pub trait IpSend: Send + Sync + 'static {
    /// Takes one packet; it may be held until [`flush`](Self::flush).
    fn send(&mut self, packet: Packet<Ip>) -> impl Future<Output = io::Result<()>> + Send;

    /// Sends what [`send`](Self::send) held back; called after each burst.
    fn flush(&mut self) -> impl Future<Output = io::Result<()>> + Send {
        async { Ok(()) }
    }
}
