//! The status of a tunnel from what the controller observed: the five conditions with reasons and
//! messages a person can act on, keys and ports, and each peer's endpoint and handshake age. Pure: the
//! time is an argument.
//!
//! The status changes only when something a person acts on changes, so that the controller can write it
//! only then: no byte counters and no exact handshake times (both are metrics), only the age of the
//! latest handshake as a coarse [`HandshakeAge`] bucket. A condition keeps its `lastTransitionTime` while
//! its status does not change.

use std::time::{Duration, SystemTime};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

use super::conflict::Conflict;
use super::crd::{MemifStatus, PeerStatus, WireGuardVppTunnelStatus};
use super::tunnel_runtime::{Phase, RuntimeError, TunnelState};

/// A peer counts as up in `peersSummary` when its latest handshake is this recent (WireGuard rekeys
/// every two minutes while traffic flows, and drops a session after three).
pub const RECENT_HANDSHAKE: Duration = Duration::from_secs(180);

/// The end of the [`HandshakeAge::Within10m`] bucket.
pub const STALE_HANDSHAKE: Duration = Duration::from_secs(600);

/// How long ago a handshake was, in the coarse buckets the status shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum HandshakeAge {
    /// No handshake yet.
    Never,
    /// Within [`RECENT_HANDSHAKE`]: a session is up.
    Within3m,
    /// Within [`STALE_HANDSHAKE`]: the session lapsed recently.
    Within10m,
    /// Longer ago.
    Older,
}

impl HandshakeAge {
    /// The bucket of a handshake at `at` (none yet: `None`), seen at `now`.
    pub fn of(at: Option<SystemTime>, now: SystemTime) -> HandshakeAge {
        let Some(at) = at else {
            return HandshakeAge::Never;
        };
        // A handshake stamped after `now` (clock steps) counts as just now.
        let age = now.duration_since(at).unwrap_or_default();
        if age <= RECENT_HANDSHAKE {
            HandshakeAge::Within3m
        } else if age <= STALE_HANDSHAKE {
            HandshakeAge::Within10m
        } else {
            HandshakeAge::Older
        }
    }

    /// The name the status uses.
    pub fn as_str(self) -> &'static str {
        match self {
            HandshakeAge::Never => "Never",
            HandshakeAge::Within3m => "Within3m",
            HandshakeAge::Within10m => "Within10m",
            HandshakeAge::Older => "Older",
        }
    }
}

/// Condition types, in the order they are written.
pub const CONDITION_TYPES: [&str; 5] = [
    "ConfigValid",
    "NoConflict",
    "VppConfigured",
    "MemifConnected",
    "Ready",
];

/// What one reconcile found.
#[derive(Debug, Clone)]
pub struct Observation {
    /// `metadata.generation` of the resource.
    pub generation: Option<i64>,
    /// Why the spec could not be rendered: (reason, message).
    pub config_error: Option<(&'static str, String)>,
    /// The conflict that keeps the tunnel from starting.
    pub conflict: Option<Conflict>,
    /// An error starting or reconfiguring the tunnel.
    pub runtime_error: Option<RuntimeError>,
    /// The runtime's state, when the tunnel runs.
    pub state: Option<TunnelState>,
    /// The uid in use.
    pub uid: Option<u32>,
    /// The public key.
    pub public_key: Option<String>,
    /// The memif socket path.
    pub memif_socket: Option<String>,
    /// The listen port from the spec.
    pub listen_port: Option<u16>,
}

/// One condition's status, reason and message.
struct Verdict {
    status: &'static str,
    reason: &'static str,
    message: String,
}

fn verdict(status: &'static str, reason: &'static str, message: impl Into<String>) -> Verdict {
    Verdict {
        status,
        reason,
        message: message.into(),
    }
}

/// Builds the status from `observed`, keeping transition times from `previous`.
pub fn build(
    previous: Option<&WireGuardVppTunnelStatus>,
    observed: &Observation,
    now: SystemTime,
) -> WireGuardVppTunnelStatus {
    let config = match &observed.config_error {
        None => verdict(
            "True",
            "Rendered",
            "the spec and its Secrets render into a valid configuration",
        ),
        Some((reason, message)) => verdict("False", reason, message.clone()),
    };
    let no_conflict = match (&observed.config_error, &observed.conflict) {
        (Some(_), _) => verdict(
            "Unknown",
            "ConfigInvalid",
            "not checked: the configuration is invalid",
        ),
        (None, Some(conflict)) => verdict("False", "Conflict", conflict.message.clone()),
        (None, None) => verdict(
            "True",
            "NoConflict",
            "no other tunnel on this node claims the same resources",
        ),
    };
    let not_started = |why: &str| {
        verdict(
            "False",
            "NotStarted",
            format!("the tunnel is not started: {why}"),
        )
    };
    let state = observed.state.as_ref();
    let vpp = if let Some(error) = &observed.runtime_error {
        verdict("False", error.reason, error.message.clone())
    } else {
        match state {
            // A tunnel that keeps running its last valid configuration still reports its VPP state.
            Some(s) if s.vpp_configured => verdict(
                "True",
                "Configured",
                "memif, bridge port and routes exist in VPP",
            ),
            Some(s) if s.phase == Phase::Failed => match &s.error {
                Some(error) => verdict("False", error.reason, error.message.clone()),
                None => verdict("False", "TunnelFailed", "the tunnel's task ended"),
            },
            Some(_) => verdict("False", "InProgress", "creating the VPP objects"),
            None if observed.config_error.is_some() => not_started("see ConfigValid"),
            None if observed.conflict.is_some() => not_started("see NoConflict"),
            None => not_started("the runtime does not report it yet"),
        }
    };
    let socket = observed.memif_socket.clone().unwrap_or_default();
    let memif = match state.map(|s| s.phase) {
        Some(Phase::Running) => {
            verdict("True", "Connected", format!("VPP is connected to {socket}"))
        }
        Some(Phase::Reconnecting) => verdict(
            "False",
            "Reconnecting",
            format!(
                "VPP dropped the memif connection on {socket}; WireGuard sessions are kept while it reconnects"
            ),
        ),
        Some(Phase::WaitingForMemif) => verdict(
            "False",
            "WaitingForVpp",
            format!(
                "VPP has not connected to {socket}: check that VPP mounts the memif socket directory at the same path"
            ),
        ),
        _ => verdict(
            "False",
            "NotConnected",
            "the memif interface is not connected",
        ),
    };
    let ready = [&config, &no_conflict, &vpp, &memif]
        .into_iter()
        .find(|v| v.status != "True")
        .map(|v| verdict("False", v.reason, v.message.clone()))
        .unwrap_or_else(|| verdict("True", "Running", "the tunnel forwards packets"));

    let now_time = to_time(now);
    let conditions = CONDITION_TYPES
        .iter()
        .zip([config, no_conflict, vpp, memif, ready])
        .map(|(kind, v)| {
            let old = previous.and_then(|p| p.conditions.iter().find(|c| c.type_ == *kind));
            let last_transition_time = match old {
                Some(old) if old.status == v.status => old.last_transition_time.clone(),
                _ => now_time.clone(),
            };
            Condition {
                type_: kind.to_string(),
                status: v.status.into(),
                reason: v.reason.into(),
                message: v.message,
                observed_generation: observed.generation,
                last_transition_time,
            }
        })
        .collect();

    let peers: Vec<PeerStatus> = state
        .map(|s| {
            let mut peers: Vec<PeerStatus> = s
                .peers
                .iter()
                .map(|p| PeerStatus {
                    public_key: p.public_key.clone(),
                    endpoint: p.endpoint.clone(),
                    handshake: Some(HandshakeAge::of(p.last_handshake, now).as_str().into()),
                })
                .collect();
            peers.sort_by(|a, b| a.public_key.cmp(&b.public_key));
            peers
        })
        .unwrap_or_default();
    let recent = state
        .map(|s| {
            s.peers
                .iter()
                .filter(|p| HandshakeAge::of(p.last_handshake, now) == HandshakeAge::Within3m)
                .count()
        })
        .unwrap_or(0);
    let latest = state.map(|s| {
        let latest = s.peers.iter().filter_map(|p| p.last_handshake).max();
        HandshakeAge::of(latest, now).as_str().to_string()
    });
    WireGuardVppTunnelStatus {
        observed_generation: observed.generation,
        conditions,
        uid: observed.uid,
        public_key: observed.public_key.clone(),
        listen_port: state.and_then(|s| s.listen_port).or(observed.listen_port),
        memif: observed.memif_socket.clone().map(|socket| MemifStatus {
            socket,
            sw_if_index: state.and_then(|s| s.sw_if_index),
        }),
        peers_summary: state.map(|s| format!("{recent}/{}", s.peers.len())),
        latest_handshake: latest,
        peers,
    }
}

/// The longest message [`scrub`] lets through, in bytes.
const MAX_MESSAGE: usize = 1024;

/// `message` made fit for a status, an event or a log line when it comes from somewhere that cannot be
/// trusted to leave secrets out (a panic's message): every run of 40 or more key-alphabet characters
/// (base64, base64url or hex: a WireGuard key is 44 base64 or 64 hex characters) is cut out, and the
/// whole is cut to [`MAX_MESSAGE`] bytes.
pub fn scrub(message: &str) -> String {
    const LONGEST_KEPT: usize = 39;
    let key_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '=' | '-' | '_');
    let mut out = String::with_capacity(message.len().min(MAX_MESSAGE));
    let mut run = String::new();
    let flush = |run: &mut String, out: &mut String| {
        if run.chars().count() > LONGEST_KEPT {
            out.push_str("[redacted]");
        } else {
            out.push_str(run);
        }
        run.clear();
    };
    for c in message.chars() {
        if key_char(c) {
            run.push(c);
        } else {
            flush(&mut run, &mut out);
            out.push(c);
        }
    }
    flush(&mut run, &mut out);
    if out.len() > MAX_MESSAGE {
        let mut end = MAX_MESSAGE;
        while !out.is_char_boundary(end) {
            end -= 1;
        }
        out.truncate(end);
        out.push_str("...");
    }
    out
}

/// A Kubernetes time from a system time (whole seconds, as the API stores them).
pub fn to_time(time: SystemTime) -> Time {
    let secs = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    Time(Timestamp::from_second(i64::try_from(secs).unwrap_or(0)).unwrap_or(Timestamp::UNIX_EPOCH))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::k8s::tunnel_runtime::PeerStats;

    fn observation(state: Option<TunnelState>) -> Observation {
        Observation {
            generation: Some(2),
            config_error: None,
            conflict: None,
            runtime_error: None,
            state,
            uid: Some(3),
            public_key: Some("pub".into()),
            memif_socket: Some("/run/wggo-vpp/home.sock".into()),
            listen_port: Some(51820),
        }
    }

    fn running(now: SystemTime) -> TunnelState {
        TunnelState {
            phase: Phase::Running,
            vpp_configured: true,
            sw_if_index: Some(5),
            memif_socket: "/run/wggo-vpp/home.sock".into(),
            listen_port: Some(51820),
            error: None,
            peers: vec![
                PeerStats {
                    public_key: "b".into(),
                    endpoint: Some("192.0.2.1:51820".into()),
                    last_handshake: Some(now - Duration::from_secs(10)),
                    rx_bytes: 100,
                    tx_bytes: 200,
                },
                PeerStats {
                    public_key: "a".into(),
                    endpoint: None,
                    last_handshake: None,
                    rx_bytes: 0,
                    tx_bytes: 0,
                },
            ],
            counters: Vec::new(),
        }
    }

    fn condition<'a>(status: &'a WireGuardVppTunnelStatus, kind: &str) -> &'a Condition {
        status
            .conditions
            .iter()
            .find(|c| c.type_ == kind)
            .expect("condition present")
    }

    #[test]
    fn running_tunnel_is_ready_with_peer_summary() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let status = build(None, &observation(Some(running(now))), now);
        assert_eq!(condition(&status, "Ready").status, "True");
        assert_eq!(status.peers_summary.as_deref(), Some("1/2"));
        assert_eq!(status.peers[0].public_key, "a");
        assert_eq!(status.memif.as_ref().and_then(|m| m.sw_if_index), Some(5));
        assert_eq!(status.latest_handshake.as_deref(), Some("Within3m"));
        assert_eq!(
            (
                status.peers[0].handshake.as_deref(),
                status.peers[1].handshake.as_deref()
            ),
            (Some("Never"), Some("Within3m"))
        );
        assert!(
            status
                .conditions
                .iter()
                .all(|c| c.observed_generation == Some(2))
        );
    }

    #[test]
    fn conflict_names_the_other_tunnel_and_blocks_ready() {
        let now = SystemTime::UNIX_EPOCH;
        let mut observed = observation(None);
        observed.conflict = Some(Conflict {
            other: "dn42/a".into(),
            message: "uid 3 is already used by tunnel dn42/a".into(),
        });
        let status = build(None, &observed, now);
        let no_conflict = condition(&status, "NoConflict");
        assert_eq!(
            (no_conflict.status.as_str(), no_conflict.reason.as_str()),
            ("False", "Conflict")
        );
        assert!(no_conflict.message.contains("dn42/a"));
        let ready = condition(&status, "Ready");
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("False", "Conflict")
        );
        assert_eq!(condition(&status, "VppConfigured").reason, "NotStarted");
    }

    #[test]
    fn transition_time_kept_while_status_unchanged() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let t1 = t0 + Duration::from_secs(60);
        let first = build(None, &observation(Some(running(t0))), t0);
        let second = build(Some(&first), &observation(Some(running(t0))), t1);
        assert_eq!(
            condition(&second, "Ready").last_transition_time,
            to_time(t0)
        );
        let mut waiting = running(t0);
        waiting.phase = Phase::WaitingForMemif;
        let third = build(Some(&second), &observation(Some(waiting)), t1);
        assert_eq!(
            condition(&third, "MemifConnected").last_transition_time,
            to_time(t1)
        );
        assert_eq!(condition(&third, "MemifConnected").reason, "WaitingForVpp");
        assert_eq!(
            condition(&third, "VppConfigured").last_transition_time,
            to_time(t0)
        );
    }

    #[test]
    fn a_failed_tunnel_reports_the_runtime_reason() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let mut failed = running(now);
        failed.phase = Phase::Failed;
        failed.vpp_configured = false;
        failed.error = Some(RuntimeError {
            reason: "TaskPanicked",
            message: "the tunnel's task failed: task 7 panicked with message \"boom\"".into(),
        });
        let status = build(None, &observation(Some(failed)), now);
        let ready = condition(&status, "Ready");
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("False", "TaskPanicked")
        );
        assert!(ready.message.contains("boom"), "{}", ready.message);
    }

    #[test]
    fn scrub_cuts_out_keys_and_long_messages() {
        let key = "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=";
        let hex = "c8a5a7f2f1c2a8a6e1d5d2c1b0a9f8e7d6c5b4a3928170605040302010f0e0d0";
        let scrubbed = scrub(&format!("bad key {key}, or {hex}: no"));
        assert_eq!(scrubbed, "bad key [redacted], or [redacted]: no");
        // Paths, names and short words stay.
        let kept = "cannot open /run/vpp/api.sock for tunnel dn42/home-0";
        assert_eq!(scrub(kept), kept);
        let long = "é".repeat(2000);
        let cut = scrub(&long);
        assert!(
            cut.len() <= MAX_MESSAGE + 3 && cut.ends_with("..."),
            "{}",
            cut.len()
        );
    }

    #[test]
    fn counters_and_handshakes_within_a_bucket_leave_the_status_as_it_is() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let a = build(None, &observation(Some(running(now))), now);
        // More traffic and a rekey 2 minutes later: the same status.
        let later = now + Duration::from_secs(120);
        let mut more = running(later);
        more.peers[0].rx_bytes += 1_000_000;
        more.peers[0].tx_bytes += 1;
        let b = build(Some(&a), &observation(Some(more)), later);
        assert_eq!(a, b);
        // The peer roams: written.
        let mut roamed = running(later);
        roamed.peers[0].endpoint = Some("192.0.2.7:4500".into());
        assert_ne!(a, build(Some(&a), &observation(Some(roamed)), later));
        // No handshake for 5 minutes: the bucket and the summary change.
        let quiet = now + Duration::from_secs(300);
        let c = build(Some(&a), &observation(Some(running(now))), quiet);
        assert_eq!(c.latest_handshake.as_deref(), Some("Within10m"));
        assert_eq!(c.peers_summary.as_deref(), Some("0/2"));
    }

    #[test]
    fn handshake_buckets() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let ago = |s: u64| Some(now - Duration::from_secs(s));
        assert_eq!(HandshakeAge::of(None, now), HandshakeAge::Never);
        assert_eq!(HandshakeAge::of(ago(0), now), HandshakeAge::Within3m);
        assert_eq!(HandshakeAge::of(ago(180), now), HandshakeAge::Within3m);
        assert_eq!(HandshakeAge::of(ago(181), now), HandshakeAge::Within10m);
        assert_eq!(HandshakeAge::of(ago(600), now), HandshakeAge::Within10m);
        assert_eq!(HandshakeAge::of(ago(601), now), HandshakeAge::Older);
        let future = Some(now + Duration::from_secs(5));
        assert_eq!(HandshakeAge::of(future, now), HandshakeAge::Within3m);
    }
}
