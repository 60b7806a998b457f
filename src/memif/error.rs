//! Errors of the memif module: [`Error`] for callers, and [`ProtocolError`] for what a peer did wrong.
//! A `ProtocolError`'s text is exactly the reason sent to the peer in DISCONNECT.

use std::io;

use super::msg::MsgError;
use super::ring::RingError;

/// A peer broke the protocol; the connection is refused with this reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    #[error("Invalid message size {0}")]
    Size(usize),
    #[error("Unknown message type {0}")]
    UnknownType(u16),
    #[error("Unexpected message {got} (expected {expected})")]
    Unexpected {
        got: &'static str,
        expected: &'static str,
    },
    #[error("Unsupported version {0:#06x} (only 0x0200)")]
    Version(u16),
    #[error("Peer supports versions {min:#06x}..{max:#06x}, not 0x0200")]
    VersionRange { min: u16, max: u16 },
    #[error("ID not found ({0})")]
    UnknownId(u32),
    #[error("Only ethernet mode supported (got mode {0})")]
    Mode(u8),
    #[error("Secret required")]
    SecretRequired,
    #[error("Incorrect secret")]
    IncorrectSecret,
    #[error("Already connected")]
    AlreadyConnected,
    #[error("Peer uid {uid} may not connect (only uid {allowed})")]
    PeerUid { uid: u32, allowed: u32 },
    #[error("Missing region fd")]
    MissingRegionFd,
    #[error("Missing interrupt fd")]
    MissingInterruptFd,
    #[error("Invalid region index {index} (expected {expected})")]
    RegionIndex { index: u16, expected: u16 },
    #[error("Too many regions: region {index}, at most {max} accepted")]
    TooManyRegions { index: u16, max: u16 },
    #[error("Region {index} makes {total} bytes of regions, more than the {max} accepted")]
    RegionMemory { index: u16, total: u64, max: u64 },
    #[error("Cannot map region {index}: {reason}")]
    RegionMap { index: u16, reason: String },
    #[error("Invalid ring index {index} ({direction}, expected {expected}, at most {max})")]
    RingIndex {
        direction: &'static str,
        index: u16,
        expected: u16,
        max: u16,
    },
    #[error("Invalid ring {direction} {index}: {error}")]
    Ring {
        direction: &'static str,
        index: u16,
        error: RingError,
    },
    #[error("Invalid interrupt fd of ring {direction} {index}: {reason}")]
    InterruptFd {
        direction: &'static str,
        index: u16,
        reason: String,
    },
    #[error("Ring size 2^{got} larger than the allowed 2^{max}")]
    RingSize { got: u8, max: u8 },
    #[error("Private header size {0} not supported")]
    PrivateHeader(u16),
    #[error("Ring {direction} {index}: cookie {found:#010x} mismatch")]
    Cookie {
        direction: &'static str,
        index: u16,
        found: u32,
    },
    #[error("No {0} ring")]
    NoRings(&'static str),
}

impl From<MsgError> for ProtocolError {
    fn from(e: MsgError) -> Self {
        match e {
            MsgError::Size(n) => ProtocolError::Size(n),
            MsgError::UnknownType(t) => ProtocolError::UnknownType(t),
        }
    }
}

/// An error of the memif module.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration cannot work; nothing was created.
    #[error("invalid memif configuration: {field}: {reason}")]
    Config { field: &'static str, reason: String },
    /// The socket could not be created, bound or connected.
    #[error("memif socket {addr}: {source}")]
    Socket {
        addr: String,
        #[source]
        source: io::Error,
    },
    /// The peer sent DISCONNECT during the handshake.
    #[error("memif peer refused the connection: {reason} (code {code})")]
    Refused { code: u32, reason: String },
    /// The peer broke the protocol; we sent it DISCONNECT with this reason and closed.
    #[error("memif peer broke the protocol, connection refused: {0}")]
    Protocol(#[from] ProtocolError),
    /// A handshake step took too long; we sent DISCONNECT and closed.
    #[error("memif handshake timed out waiting for {0}")]
    Timeout(&'static str),
    /// The peer closed the control channel in the middle of the handshake.
    #[error("memif peer closed the control channel while we waited for {0}")]
    PeerClosed(&'static str),
    /// Creating the shared memory (client role) failed.
    #[error("memif shared memory: {0}")]
    Memory(#[source] io::Error),
    /// Reading or writing the control channel failed.
    #[error("memif control channel: {0}")]
    Io(#[from] io::Error),
}

impl Error {
    /// True when trying again later may succeed (the peer is absent, refused, or misbehaved once);
    /// false for configuration errors.
    pub fn is_transient(&self) -> bool {
        !matches!(self, Error::Config { .. })
    }
}
