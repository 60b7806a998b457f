//! The WireGuard side of a tunnel: gotatun's noise core in our own engine, with a caller-supplied
//! IP side (memif through the l2 adapter in production, channels in tests), our own UAPI server for
//! `wg(8)`, and the periodic re-application of a wg(8) config file.
//!
//! - [`WgDevice`] (`device`): the device; every change is applied as a diff so unchanged peers keep
//!   their sessions; per-peer status for the tunnel's status and metrics.
//! - `config`: the configuration as `wg` sees it and how UAPI commands edit it (pure).
//! - [`uapi`]: the protocol, the connection loop and the socket file.
//! - [`conf_file`]: wg(8) config files (`wg setconf` syntax) applied as a diff.
//! - `engine`: gotatun's noise core driven by our own packet loops (outgoing, incoming, timers) and
//!   peer table; `status`: per-peer state.
//! - `udp`: the UDP socket, rebound without ever leaving the device without one; `gso`: UDP GSO
//!   on send.
//! - [`channel`]: an IP side made of channels, for tests and benchmarks.
//! - [`key`]: keys in hex and base64, never printed.
//!
//! It knows nothing of memif, l2, VPP or the tunnel's own config files.
//!
//! The IP side, as the device uses it (`ip_side`): `IpRecv::recv` returns a burst of whole
//! IPv4/IPv6 packets (trimmed to their IP length; anything else is dropped), and `mtu()` the tunnel
//! MTU, up to which packets are padded before encryption; `IpSend::send` receives each decrypted
//! packet whose source address belongs to the peer that sent it, and `IpSend::flush` ends each
//! burst. An error from either ends the device's packet loops, so the IP side should absorb
//! transient conditions (a memif reconnect) itself.
//! [`channel`] is a complete example.

pub mod channel;
pub mod conf_file;
mod config;
mod device;
mod engine;
mod gso;
mod ip_side;
pub mod key;
mod status;
pub mod uapi;
mod udp;

pub use config::{ConfigEdit, DeviceConfig, PeerConfig};
pub use device::{DeviceError, DeviceSettings, WgDevice};
pub use ip_side::{BURST, IpRecv, IpSend, MtuWatcher};
pub use key::Key;
pub use status::PeerStatus;
