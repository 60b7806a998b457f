//! The live state of peers as the tunnel reports it (status, metrics, UAPI `get`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use crate::wg::key::Key;

/// A peer's live state, for status and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerStatus {
    /// The peer's public key.
    pub public_key: Key,
    /// Where packets to the peer go now (the configured endpoint, or where it roamed to).
    pub endpoint: Option<SocketAddr>,
    /// Bytes received from the peer.
    pub rx_bytes: u64,
    /// Bytes sent to the peer.
    pub tx_bytes: u64,
    /// Wall-clock time of the last completed handshake.
    pub last_handshake: Option<SystemTime>,
}

/// Turns gotatun's "time since the last handshake" into a stable wall-clock time.
///
/// The age is measured against a clock sampled a moment apart from ours, so `now - age` jitters
/// by microseconds from one read to the next. A value within [`Self::TOLERANCE`] of the one
/// reported before is the same handshake and is reported unchanged, so `get` and the status stay
/// exact across reads.
#[derive(Default)]
pub(crate) struct HandshakeClock {
    reported: std::sync::Mutex<HashMap<Key, SystemTime>>,
}

impl HandshakeClock {
    const TOLERANCE: Duration = Duration::from_millis(50);

    pub(crate) fn forget_all_but(&self, keep: impl Fn(&Key) -> bool) {
        let mut reported = self
            .reported
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        reported.retain(|key, _| keep(key));
    }

    pub(crate) fn wall_clock(
        &self,
        peer: Key,
        now: SystemTime,
        age: Option<Duration>,
    ) -> Option<SystemTime> {
        let mut reported = self
            .reported
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(at) = age.and_then(|age| now.checked_sub(age)) else {
            reported.remove(&peer);
            return None;
        };
        let previous = reported.get(&peer).copied();
        let same = previous.is_some_and(|p| {
            let gap = at
                .duration_since(p)
                .or_else(|_| p.duration_since(at))
                .unwrap_or_default();
            gap < Self::TOLERANCE
        });
        match previous {
            Some(previous) if same => Some(previous),
            _ => {
                reported.insert(peer, at);
                Some(at)
            }
        }
    }
}
