//! What a running tunnel publishes about itself, for logs, the controller's status and metrics.

/// Where a tunnel is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Phase {
    /// Creating the device, the memif socket and VPP's objects.
    #[default]
    Setup,
    /// Waiting for VPP's first memif connection.
    WaitingForMemif,
    /// Passing packets.
    Running,
    /// The memif or VPP went away; waiting for them to come back (sessions are kept).
    Reconnecting,
    /// Removing everything it created.
    TearingDown,
    /// Done, as asked.
    Stopped,
    /// Ended without being asked to: set-up failed, an error, its task ended or panicked; the status's
    /// `error` says why. The command line exits; the controller clears what is left and starts it
    /// again later.
    Failed,
}

/// A tunnel's published state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TunnelStatus {
    /// The phase.
    pub phase: Phase,
    /// The WireGuard UDP port actually bound.
    pub listen_port: u16,
    /// VPP's sw_if_index of the tunnel's memif, when VPP is managed.
    pub memif_sw_if_index: Option<u32>,
    /// Why the tunnel stopped, when it stopped on an error.
    pub error: Option<String>,
}
