//! The configuration a device should have, as `wg` sees it, and how UAPI commands edit it.
//!
//! This is the source of truth for what `get` reports as configuration; the live device (gotatun)
//! is brought in line with it after each edit, touching only what differs (see `device.rs`). The
//! edit rules follow wireguard-go's `device/uapi.go`. Pure data: no sockets, no device.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;

use ipnet::IpNet;

use crate::wg::key::Key;
use crate::wg::uapi::Command;

/// One peer's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerConfig {
    /// The peer's public key.
    pub public_key: Key,
    /// Preshared key, if any.
    pub preshared_key: Option<Key>,
    /// The endpoint last configured (the live one may have roamed since).
    pub endpoint: Option<SocketAddr>,
    /// Persistent keepalive interval in seconds; 0 is off.
    pub persistent_keepalive: u16,
    /// Allowed IPs, masked to their networks, in the order they were added, without duplicates.
    pub allowed_ips: Vec<IpNet>,
}

impl PeerConfig {
    /// A peer with nothing but its key.
    pub fn new(public_key: Key) -> PeerConfig {
        PeerConfig {
            public_key,
            preshared_key: None,
            endpoint: None,
            persistent_keepalive: 0,
            allowed_ips: Vec::new(),
        }
    }
}

/// The whole device configuration. Peers keep the order in which they were added.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceConfig {
    /// The private key; `None` until one is set (or after it is removed).
    pub private_key: Option<Key>,
    /// The configured listen port; 0 means a random one.
    pub listen_port: u16,
    /// The fwmark of the UDP socket; 0 is none.
    pub fwmark: u32,
    // INVARIANT: every value's `.1.public_key` equals its map key; orders are unique.
    peers: HashMap<Key, (u64, PeerConfig)>,
    next_order: u64,
    // INVARIANT: `owners[net] == key` exactly when `net` is in the allowed IPs of peer `key`, so
    // moving an allowed IP between peers costs a lookup, not a scan of every peer.
    owners: HashMap<IpNet, Key>,
}

impl DeviceConfig {
    /// The peers in the order they were added.
    pub fn peers(&self) -> Vec<&PeerConfig> {
        let mut peers: Vec<&(u64, PeerConfig)> = self.peers.values().collect();
        peers.sort_by_key(|(order, _)| *order);
        peers.into_iter().map(|(_, peer)| peer).collect()
    }

    /// One peer by its public key.
    pub fn peer(&self, public_key: &Key) -> Option<&PeerConfig> {
        self.peers.get(public_key).map(|(_, peer)| peer)
    }

    /// Number of peers.
    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }

    fn peer_mut(&mut self, public_key: &Key) -> Option<&mut PeerConfig> {
        self.peers.get_mut(public_key).map(|(_, peer)| peer)
    }

    fn insert_peer(&mut self, public_key: Key) {
        let order = self.next_order;
        self.next_order += 1;
        self.peers
            .insert(public_key, (order, PeerConfig::new(public_key)));
    }

    fn remove_peer(&mut self, public_key: &Key) {
        self.clear_allowed_ips(public_key);
        self.peers.remove(public_key);
    }

    fn clear_peers(&mut self) {
        self.peers.clear();
        self.owners.clear();
    }

    /// Gives `net` to `peer`, taking it from whichever peer had it (an allowed IP has one owner).
    fn add_allowed_ip(&mut self, peer: Key, net: IpNet) {
        if self.peer(&peer).is_none() {
            return;
        }
        match self.owners.insert(net, peer) {
            Some(previous) if previous == peer => return,
            Some(previous) => {
                if let Some(other) = self.peer_mut(&previous) {
                    other.allowed_ips.retain(|n| *n != net);
                }
            }
            None => {}
        }
        if let Some(peer) = self.peer_mut(&peer) {
            peer.allowed_ips.push(net);
        }
    }

    fn remove_allowed_ip(&mut self, peer: Key, net: IpNet) {
        if self.owners.get(&net) == Some(&peer) {
            self.owners.remove(&net);
            if let Some(peer) = self.peer_mut(&peer) {
                peer.allowed_ips.retain(|n| *n != net);
            }
        }
    }

    fn clear_allowed_ips(&mut self, peer: &Key) {
        let Some((_, config)) = self.peers.get_mut(peer) else {
            return;
        };
        for net in config.allowed_ips.drain(..) {
            self.owners.remove(&net);
        }
    }
}

/// Which peer the following peer commands of a request apply to.
#[derive(Debug, Clone, Copy)]
enum Section {
    /// Device keys so far.
    Device,
    /// A peer; `created` when this request created it (so `update_only` can undo that).
    Peer { public_key: Key, created: bool },
    /// A removed peer, the device's own key, or `update_only` for an unknown peer: lines are ignored.
    Ignored,
}

/// Applies the peer and key commands of one `set` request to a [`DeviceConfig`], one at a time.
/// `listen_port` and `fwmark` touch the socket and are the caller's job.
#[derive(Debug)]
pub struct ConfigEdit {
    section: Section,
    explicit_endpoints: HashSet<Key>,
    // The device's (private, public) key pair last derived: a derivation is a scalar
    // multiplication, too slow to repeat for every `public_key=` line of a large `setconf`.
    own_keys: Option<(Key, Key)>,
}

impl Default for ConfigEdit {
    fn default() -> Self {
        ConfigEdit {
            section: Section::Device,
            explicit_endpoints: HashSet::new(),
            own_keys: None,
        }
    }
}

impl ConfigEdit {
    /// Peers whose endpoint this request set (the live device gets it even if the configured value
    /// did not change, since the live endpoint may have roamed, as wireguard-go does).
    pub fn explicit_endpoints(&self) -> &HashSet<Key> {
        &self.explicit_endpoints
    }

    /// Applies one command. `ListenPort` and `Fwmark` only record the value.
    pub fn apply(&mut self, config: &mut DeviceConfig, command: &Command) {
        match command {
            Command::PrivateKey(key) => {
                config.private_key = *key;
                if let Some(own) = self.own_public_key(config) {
                    config.remove_peer(&own);
                }
            }
            Command::ListenPort(port) => config.listen_port = *port,
            Command::Fwmark(mark) => config.fwmark = *mark,
            Command::ReplacePeers => config.clear_peers(),
            Command::Peer(public_key) => self.open_peer(config, *public_key),
            Command::UpdateOnly => {
                if let Section::Peer {
                    public_key,
                    created: true,
                } = self.section
                {
                    config.remove_peer(&public_key);
                    self.section = Section::Ignored;
                }
            }
            Command::Remove => {
                if let Section::Peer { public_key, .. } = self.section {
                    config.remove_peer(&public_key);
                    self.explicit_endpoints.remove(&public_key);
                }
                self.section = Section::Ignored;
            }
            Command::AllowedIp(net) => {
                if let Section::Peer { public_key, .. } = self.section {
                    config.add_allowed_ip(public_key, *net);
                }
            }
            Command::RemoveAllowedIp(net) => {
                if let Section::Peer { public_key, .. } = self.section {
                    config.remove_allowed_ip(public_key, *net);
                }
            }
            Command::ReplaceAllowedIps => {
                if let Section::Peer { public_key, .. } = self.section {
                    config.clear_allowed_ips(&public_key);
                }
            }
            Command::ProtocolVersion => {}
            peer_command => {
                let Section::Peer { public_key, .. } = self.section else {
                    return;
                };
                let Some(peer) = config.peer_mut(&public_key) else {
                    return;
                };
                match peer_command {
                    Command::PresharedKey(key) => peer.preshared_key = *key,
                    Command::Endpoint(addr) => {
                        peer.endpoint = Some(*addr);
                        self.explicit_endpoints.insert(public_key);
                    }
                    Command::PersistentKeepalive(seconds) => peer.persistent_keepalive = *seconds,
                    _ => {}
                }
            }
        }
    }

    fn own_public_key(&mut self, config: &DeviceConfig) -> Option<Key> {
        let private = config.private_key?;
        match self.own_keys {
            Some((known, public)) if known == private => Some(public),
            _ => {
                let public = private.public_key();
                self.own_keys = Some((private, public));
                Some(public)
            }
        }
    }

    fn open_peer(&mut self, config: &mut DeviceConfig, public_key: Key) {
        if self.own_public_key(config) == Some(public_key) {
            self.section = Section::Ignored;
            return;
        }
        let created = config.peer(&public_key).is_none();
        if created {
            config.insert_peer(public_key);
        }
        self.section = Section::Peer {
            public_key,
            created,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(text: &str) -> IpNet {
        text.parse().expect("literal prefix")
    }

    fn apply(config: &mut DeviceConfig, commands: &[Command]) -> ConfigEdit {
        let mut edit = ConfigEdit::default();
        for command in commands {
            edit.apply(config, command);
        }
        edit
    }

    const A: Key = Key([0xa; 32]);
    const B: Key = Key([0xb; 32]);

    #[test]
    fn an_allowed_ip_moves_to_the_peer_that_names_it_last() {
        let mut config = DeviceConfig::default();
        apply(
            &mut config,
            &[
                Command::Peer(A),
                Command::AllowedIp(net("10.0.0.0/24")),
                Command::AllowedIp(net("10.1.0.0/24")),
            ],
        );
        apply(
            &mut config,
            &[Command::Peer(B), Command::AllowedIp(net("10.0.0.0/24"))],
        );
        assert_eq!(
            config.peer(&A).map(|p| p.allowed_ips.clone()),
            Some(vec![net("10.1.0.0/24")])
        );
        assert_eq!(
            config.peer(&B).map(|p| p.allowed_ips.clone()),
            Some(vec![net("10.0.0.0/24")])
        );
    }

    #[test]
    fn update_only_does_not_create_but_updates_an_existing_peer() {
        let mut config = DeviceConfig::default();
        apply(
            &mut config,
            &[
                Command::Peer(A),
                Command::UpdateOnly,
                Command::PersistentKeepalive(5),
            ],
        );
        assert_eq!(config.peer_count(), 0);
        apply(&mut config, &[Command::Peer(A)]);
        apply(
            &mut config,
            &[
                Command::Peer(A),
                Command::UpdateOnly,
                Command::PersistentKeepalive(5),
            ],
        );
        assert_eq!(config.peer(&A).map(|p| p.persistent_keepalive), Some(5));
    }

    #[test]
    fn remove_ignores_the_rest_of_the_section() {
        let mut config = DeviceConfig::default();
        apply(
            &mut config,
            &[
                Command::Peer(A),
                Command::Remove,
                Command::AllowedIp(net("10.0.0.0/8")),
            ],
        );
        assert_eq!(config.peer_count(), 0);
    }

    #[test]
    fn the_device_own_key_is_never_a_peer() {
        let private = Key([0x42; 32]);
        let own = private.public_key();
        let mut config = DeviceConfig::default();
        apply(&mut config, &[Command::Peer(own), Command::Peer(A)]);
        assert_eq!(config.peer_count(), 2);
        apply(
            &mut config,
            &[Command::PrivateKey(Some(private)), Command::Peer(own)],
        );
        assert!(
            config.peer(&own).is_none(),
            "setting the key removes the peer with the same public key"
        );
        assert_eq!(config.peer_count(), 1);
    }

    #[test]
    fn replace_allowed_ips_and_removal_of_one_entry() {
        let mut config = DeviceConfig::default();
        apply(
            &mut config,
            &[
                Command::Peer(A),
                Command::AllowedIp(net("10.0.0.0/24")),
                Command::AllowedIp(net("fd00::/64")),
            ],
        );
        apply(
            &mut config,
            &[
                Command::Peer(A),
                Command::RemoveAllowedIp(net("10.0.0.0/24")),
            ],
        );
        assert_eq!(
            config.peer(&A).map(|p| p.allowed_ips.clone()),
            Some(vec![net("fd00::/64")])
        );
        apply(
            &mut config,
            &[
                Command::Peer(A),
                Command::ReplaceAllowedIps,
                Command::AllowedIp(net("10.9.0.0/16")),
            ],
        );
        assert_eq!(
            config.peer(&A).map(|p| p.allowed_ips.clone()),
            Some(vec![net("10.9.0.0/16")])
        );
    }

    #[test]
    fn allowed_ips_move_between_many_peers() {
        // 20,000 peers with two prefixes each, then every first prefix moved to the next peer
        // (an owner index keeps this linear; a scan of all peers per line would take minutes).
        let mut config = DeviceConfig::default();
        let key = |i: u32| {
            let mut bytes = [0u8; 32];
            bytes[..4].copy_from_slice(&i.to_be_bytes());
            Key(bytes)
        };
        let prefix = |i: u32| IpNet::from(std::net::IpAddr::from((0x0a00_0000 + i).to_be_bytes()));
        let mut commands = Vec::new();
        for i in 0..20_000 {
            commands.extend([
                Command::Peer(key(i)),
                Command::AllowedIp(prefix(2 * i)),
                Command::AllowedIp(prefix(2 * i + 1)),
            ]);
        }
        for i in 0..20_000 {
            commands.extend([
                Command::Peer(key((i + 1) % 20_000)),
                Command::AllowedIp(prefix(2 * i)),
            ]);
        }
        apply(&mut config, &commands);
        assert_eq!(
            config.peer(&key(1)).map(|p| p.allowed_ips.clone()),
            Some(vec![prefix(3), prefix(0)])
        );
    }

    #[test]
    fn replace_peers_keeps_order_of_re_added_peers_and_records_explicit_endpoints() {
        let mut config = DeviceConfig::default();
        apply(&mut config, &[Command::Peer(A), Command::Peer(B)]);
        let endpoint: SocketAddr = "192.0.2.1:51820".parse().expect("literal");
        let edit = apply(
            &mut config,
            &[
                Command::ReplacePeers,
                Command::Peer(B),
                Command::Endpoint(endpoint),
                Command::Peer(A),
            ],
        );
        let order: Vec<Key> = config.peers().iter().map(|p| p.public_key).collect();
        assert_eq!(order, vec![B, A]);
        assert!(edit.explicit_endpoints().contains(&B));
        assert!(!edit.explicit_endpoints().contains(&A));
    }
}
