//! Brings gotatun's live device in line with a desired [`DeviceConfig`], touching only what
//! differs: peers are added, removed or modified one field at a time (`modify_peer`), never
//! recreated, so a peer that stays keeps its session, counters and roamed endpoint.

use std::collections::{HashMap, HashSet};

use gotatun::device::{Device, DeviceTransports, Peer};
use gotatun::x25519::{PublicKey, StaticSecret};
use ipnet::IpNet;
use ipnetwork::IpNetwork;

use crate::wg::config::{DeviceConfig, PeerConfig};
use crate::wg::key::Key;

/// Makes `engine` match `desired`. `explicit_endpoints` are the peers whose endpoint the request
/// set (pushed even when the configured value did not change, since the live one may have roamed).
/// `port` is the port of the socket in the slot; a difference moves the live connection onto it.
pub(crate) async fn bring_in_line<T: DeviceTransports>(
    engine: &Device<T>,
    desired: &DeviceConfig,
    explicit_endpoints: &HashSet<Key>,
    port: u16,
) -> Result<(), gotatun::device::Error> {
    engine
        .write(async |live| {
            let Some(private_key) = desired.private_key else {
                // Without a key there are no live peers: nothing is sent, nothing accepted.
                for stats in live.peers().await {
                    live.remove_peer(&stats.peer.public_key).await;
                }
                return;
            };
            // A no-op (and no reconnect) when the key is unchanged.
            live.set_private_key(StaticSecret::from(private_key.0))
                .await;
            let current: HashMap<Key, Peer> = live
                .peers()
                .await
                .into_iter()
                .map(|stats| (Key(stats.peer.public_key.to_bytes()), stats.peer))
                .collect();
            for key in current.keys() {
                if desired.peer(key).is_none() {
                    live.remove_peer(&PublicKey::from(key.0)).await;
                }
            }
            for want in desired.peers() {
                let public_key = PublicKey::from(want.public_key.0);
                let set_endpoint = explicit_endpoints.contains(&want.public_key);
                match current.get(&want.public_key) {
                    None => {
                        live.add_peer(new_peer(want));
                    }
                    Some(have) => {
                        let change = PeerChange::between(have, want, set_endpoint);
                        if change.is_some() {
                            live.modify_peer(&public_key, |peer| change.apply(want, peer))
                                .await;
                        }
                    }
                }
            }
            // Moves the live connection onto a socket bound by `rebind` (gotatun's "bind" hands
            // out the socket in the slot, so this never binds anything itself).
            if live.private_key().is_some() && live.listen_port() != port {
                live.set_listen_port(port);
            }
        })
        .await
}

fn new_peer(config: &PeerConfig) -> Peer {
    let mut peer = Peer::new(PublicKey::from(config.public_key.0));
    peer.endpoint = config.endpoint;
    peer.allowed_ips = config.allowed_ips.iter().map(to_ipnetwork).collect();
    peer.preshared_key = config.preshared_key.map(|k| k.0);
    peer.keepalive = keepalive(config.persistent_keepalive);
    peer
}

fn keepalive(seconds: u16) -> Option<u16> {
    (seconds != 0).then_some(seconds)
}

fn to_ipnetwork(net: &IpNet) -> IpNetwork {
    // An IpNet's prefix length is always valid for its family, which is all `new` checks.
    IpNetwork::new(net.addr(), net.prefix_len()).expect("IpNet prefix lengths are valid")
}

fn sorted_networks(nets: impl IntoIterator<Item = IpNetwork>) -> Vec<IpNetwork> {
    let mut nets: Vec<IpNetwork> = nets.into_iter().collect();
    nets.sort_by_key(|n| (n.ip(), n.prefix()));
    nets
}

/// What differs between a live peer and its desired configuration.
#[derive(Debug, Default, PartialEq, Eq)]
struct PeerChange {
    preshared_key: bool,
    keepalive: bool,
    allowed_ips: bool,
    endpoint: bool,
}

impl PeerChange {
    fn between(live: &Peer, want: &PeerConfig, set_endpoint: bool) -> PeerChange {
        let want_ips = sorted_networks(want.allowed_ips.iter().map(to_ipnetwork));
        PeerChange {
            preshared_key: live.preshared_key != want.preshared_key.map(|k| k.0),
            keepalive: live.keepalive.filter(|&s| s != 0) != keepalive(want.persistent_keepalive),
            allowed_ips: sorted_networks(live.allowed_ips.iter().copied()) != want_ips,
            endpoint: set_endpoint && want.endpoint.is_some() && live.endpoint != want.endpoint,
        }
    }

    fn is_some(&self) -> bool {
        *self != PeerChange::default()
    }

    fn apply(&self, want: &PeerConfig, peer: &mut gotatun::device::configure::PeerMut) {
        if self.preshared_key {
            peer.set_preshared_key(want.preshared_key.map(|k| k.0));
        }
        if self.keepalive {
            peer.set_keepalive(keepalive(want.persistent_keepalive));
        }
        if self.allowed_ips {
            peer.clear_allowed_ips();
            peer.add_allowed_ips(want.allowed_ips.iter().map(to_ipnetwork));
        }
        if self.endpoint {
            peer.set_endpoint(want.endpoint);
        }
    }
}
