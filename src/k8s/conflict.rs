//! Conflicts between the tunnels of one node, and uid allocation; pure functions over [`Claim`]s.
//!
//! On one node (one VPP, one host network) no two tunnels may share a uid (memif id and socket id), a
//! listen port or an interface name, and no two tunnels on the same bridge may answer for overlapping
//! ranges. When two tunnels conflict, the older one (by creation time, then namespace/name) keeps running
//! and the later one is not started, so the outcome does not depend on the order of events.

use ipnet::IpNet;

/// What one tunnel takes on its node.
#[derive(Debug, Clone, PartialEq)]
pub struct Claim {
    /// `namespace/name` of the resource.
    pub tunnel: String,
    /// Creation time as RFC 3339 text (sorts chronologically), empty when unknown.
    pub created: String,
    /// The interface name.
    pub interface: String,
    /// The uid in use, if known.
    pub uid: Option<u32>,
    /// The UDP listen port, if known (the spec's, the status's or the one allocated).
    pub listen_port: Option<u16>,
    /// The bridge domain.
    pub bridge_id: u32,
    /// The response ranges (IPv4 and IPv6).
    pub respond: Vec<IpNet>,
}

impl Claim {
    /// True when `self` was there before `other` (and so wins a conflict).
    fn precedes(&self, other: &Claim) -> bool {
        (&self.created, &self.tunnel) < (&other.created, &other.tunnel)
    }
}

/// A conflict with an earlier tunnel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// `namespace/name` of the earlier tunnel.
    pub other: String,
    /// What both claim, for people.
    pub message: String,
}

/// The first conflict of `me` with a tunnel in `others` that precedes it, if any. `others` may contain
/// `me` itself; it is skipped.
pub fn find_conflict(me: &Claim, others: &[Claim]) -> Option<Conflict> {
    others.iter().filter(|other| other.tunnel != me.tunnel && other.precedes(me)).find_map(|other| {
        let conflict = |message: String| Some(Conflict { other: other.tunnel.clone(), message });
        if other.interface == me.interface {
            return conflict(format!(
                "interface name {:?} is already used by tunnel {}: set spec.interfaceName",
                me.interface, other.tunnel
            ));
        }
        if let (Some(a), Some(b)) = (me.uid, other.uid)
            && a == b
        {
            return conflict(format!("uid {a} is already used by tunnel {} on this node: choose another spec.uid", other.tunnel));
        }
        if let (Some(a), Some(b)) = (me.listen_port, other.listen_port)
            && a == b
        {
            return conflict(format!(
                "listen port {a} is already used by tunnel {} on this node: choose another spec.wireguard.listenPort, or omit it to get a free one",
                other.tunnel
            ));
        }
        if other.bridge_id == me.bridge_id {
            for mine in &me.respond {
                if let Some(theirs) = other.respond.iter().find(|theirs| overlap(mine, theirs)) {
                    return conflict(format!(
                        "respond range {mine} overlaps {theirs} of tunnel {} on bridge {}",
                        other.tunnel, me.bridge_id
                    ));
                }
            }
        }
        None
    })
}

/// Two networks overlap when one contains the other's network address.
fn overlap(a: &IpNet, b: &IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// The smallest uid in `1..=max` that no claim uses.
pub fn allocate_uid(claims: &[Claim], max: u32) -> Option<u32> {
    let mut used: Vec<u32> = claims.iter().filter_map(|c| c.uid).collect();
    used.sort_unstable();
    used.dedup();
    let mut candidate = 1u32;
    for uid in used {
        if uid > candidate {
            break;
        }
        if uid == candidate {
            candidate = candidate.checked_add(1)?;
        }
    }
    (candidate <= max).then_some(candidate)
}

/// The lowest UDP port from `first` up that no claim uses; `None` when all up to 65535 are taken.
/// Ports used by other programs on the node are not known here: a tunnel given such a port fails
/// to start, and its status names the port (set `spec.wireguard.listenPort` then).
pub fn allocate_port(claims: &[Claim], first: u16) -> Option<u16> {
    let used: std::collections::HashSet<u16> =
        claims.iter().filter_map(|c| c.listen_port).collect();
    (first..=u16::MAX).find(|port| !used.contains(port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(
        name: &str,
        created: &str,
        uid: u32,
        port: u16,
        bridge: u32,
        respond: &[&str],
    ) -> Claim {
        Claim {
            tunnel: format!("dn42/{name}"),
            created: created.into(),
            interface: name.into(),
            uid: Some(uid),
            listen_port: Some(port),
            bridge_id: bridge,
            respond: respond
                .iter()
                .map(|r| r.parse().expect("test CIDR"))
                .collect(),
        }
    }

    #[test]
    fn later_tunnel_loses_and_names_the_other() {
        let a = claim(
            "a",
            "2026-01-01T00:00:00Z",
            1,
            51820,
            4242,
            &["172.22.77.32/30"],
        );
        let b = claim(
            "b",
            "2026-01-02T00:00:00Z",
            2,
            51821,
            4242,
            &["172.22.77.33/32"],
        );
        let all = [a.clone(), b.clone()];
        assert_eq!(find_conflict(&a, &all), None);
        let conflict = find_conflict(&b, &all).expect("b conflicts");
        assert_eq!(conflict.other, "dn42/a");
        assert!(
            conflict
                .message
                .contains("172.22.77.33/32 overlaps 172.22.77.32/30"),
            "{}",
            conflict.message
        );
    }

    #[test]
    fn table_of_conflicts() {
        let base = claim(
            "a",
            "1",
            1,
            51820,
            4242,
            &["172.22.77.33/32", "fd28::33/128"],
        );
        let cases: [(Claim, Option<&str>); 7] = [
            (claim("b", "2", 2, 51821, 4242, &["172.22.77.34/32"]), None),
            (claim("b", "2", 2, 51821, 4243, &["172.22.77.33/32"]), None),
            (
                claim("b", "2", 2, 51821, 4242, &["fd28::/64"]),
                Some("overlaps"),
            ),
            (claim("b", "2", 1, 51821, 4243, &[]), Some("uid 1")),
            (
                claim("b", "2", 2, 51820, 4243, &[]),
                Some("listen port 51820"),
            ),
            (
                Claim {
                    interface: "a".into(),
                    ..claim("b", "2", 2, 51821, 4243, &[])
                },
                Some("interface name"),
            ),
            // Same creation time: the name decides, so exactly one of the two loses.
            (claim("0", "1", 1, 51821, 4243, &[]), None),
        ];
        for (other, expected) in cases {
            let all = [base.clone(), other.clone()];
            let found = find_conflict(&other, &all);
            match expected {
                None => assert_eq!(found, None, "{other:?}"),
                Some(text) => {
                    let found = found.expect(text);
                    assert!(
                        found.message.contains(text),
                        "{} lacks {text}",
                        found.message
                    );
                }
            }
        }
    }

    #[test]
    fn uid_allocation_fills_gaps_and_respects_the_bound() {
        let claims = [claim("a", "1", 1, 1, 1, &[]), claim("b", "1", 3, 2, 1, &[])];
        assert_eq!(allocate_uid(&claims, 10), Some(2));
        assert_eq!(allocate_uid(&[], 10), Some(1));
        assert_eq!(allocate_uid(&claims[..1], 1), None);
    }

    #[test]
    fn port_allocation_takes_the_lowest_free_port_from_the_first() {
        let claims = [
            claim("a", "1", 1, 51820, 1, &[]),
            claim("b", "1", 2, 51822, 1, &[]),
            Claim {
                listen_port: None,
                ..claim("c", "1", 3, 0, 1, &[])
            },
        ];
        assert_eq!(allocate_port(&claims, 51820), Some(51821));
        assert_eq!(allocate_port(&claims[..1], 51820), Some(51821));
        assert_eq!(allocate_port(&[], 51820), Some(51820));
        assert_eq!(
            allocate_port(&[claim("a", "1", 1, 65535, 1, &[])], 65535),
            None
        );
        // A tunnel whose port is not known yet conflicts with nobody on ports.
        assert_eq!(find_conflict(&claims[2], &claims), None);
    }
}
