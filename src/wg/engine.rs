//! The WireGuard engine of one device: gotatun's noise core ([`Tunn`]: handshakes, sessions, timers,
//! replay window, cookies) driven by three loops of our own, with no task or channel between the IP
//! side, the cipher and the UDP socket.
//!
//! ```text
//! IP side --recv (a burst)--> outgoing: route by destination, seal --send_many_to (GSO)--> UDP
//! UDP --recv_many_from (GRO)--> incoming: find the peer, open, check the source --send--> IP side
//!                               timers: every 250 ms, each peer's handshake and keepalive timers
//! ```
//!
//! Each loop is an [`OwnedTask`] of the [`Engine`] and handles a burst at a time. The peers sit in a
//! [`PeerTable`] that a configuration change replaces, never edits; a loop keeps its own `Arc` of the
//! current table and reads the shared one again only when its generation moved, so the packet path
//! takes no device-wide lock. A peer's state (its `Tunn` and live endpoint) has a mutex of its own,
//! held for one packet and never across an `.await`. Session indices lead to their peer through
//! `by_index`, written when a handshake message leaves and read by the incoming loop when its last
//! hit does not match.
//!
//! Behaviour kept from gotatun's device, which this replaces: a peer's endpoint follows any
//! authenticated packet (roaming), never a cookie reply; a decrypted packet is accepted only if its
//! source routes back to the peer that sent it; timers run only for peers with an endpoint; packets
//! wait in the peer's queue while a handshake is under way and leave when it completes.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::Duration;

use gotatun::noise::errors::WireGuardError;
use gotatun::noise::handshake::parse_handshake_anon;
use gotatun::noise::index_table::IndexTable;
use gotatun::noise::rate_limiter::RateLimiter;
use gotatun::noise::{Tunn, TunnResult};
use gotatun::packet::{Ip, Packet, PacketBufPool, WgKind};
use gotatun::udp::socket::UdpSocket;
use gotatun::udp::{UdpRecv, UdpSend};
use gotatun::x25519::{PublicKey, StaticSecret};
use ipnet::IpNet;

use crate::task::OwnedTask;
use crate::wg::config::{DeviceConfig, PeerConfig};
use crate::wg::gso::{GsoSendBuf, GsoSocket};
use crate::wg::ip_side::{BURST, IpRecv, IpSend, MtuWatcher};
use crate::wg::key::Key;
use crate::wg::udp::SocketSlot;

/// Handshake initiations per second above which the device asks for cookies (as gotatun).
const HANDSHAKE_RATE_LIMIT: u64 = 100;
/// How often each peer's timers are looked at (WireGuard's timer granularity).
const TIMER_TICK: Duration = Duration::from_millis(250);
/// Receive buffers kept for datagrams (and their decrypted packets) between bursts: one
/// `recvmmsg` (100 datagrams) and change. Allocated and zeroed up front: 512 KiB per tunnel.
const RECV_POOL: usize = 128;
/// How long the incoming loop rests after a failed receive, so a broken socket cannot spin.
const RECV_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// The live state of a peer, for status: endpoint, bytes received and sent, time since the last
/// handshake.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PeerLive {
    pub endpoint: Option<SocketAddr>,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub since_handshake: Option<Duration>,
}

/// The device's engine: the peer table and the three packet loops.
pub(crate) struct Engine<Tx: IpSend, Rx: IpRecv> {
    shared: Arc<Shared>,
    ip_tx: Arc<tokio::sync::Mutex<Tx>>,
    ip_rx: Arc<tokio::sync::Mutex<Rx>>,
    mtu: MtuWatcher,
    socket: SocketSlot,
    running: tokio::sync::Mutex<Option<Running>>,
}

/// The loops of the current socket.
struct Running {
    port: u16,
    loops: [OwnedTask<()>; 3],
}

/// What the loops share.
struct Shared {
    table: RwLock<Arc<PeerTable>>,
    /// Bumped after every new table, so a loop knows when to read `table` again.
    generation: AtomicU64,
    /// The session index of every handshake message sent, to the peer it belongs to.
    by_index: Mutex<HashMap<u32, Arc<PeerSlot>>>,
    /// Session indices in use (gotatun's, shared by every `Tunn` of the device).
    index_table: IndexTable,
}

/// The peers of one configuration, with what finds them.
#[derive(Default)]
struct PeerTable {
    /// The device's key pair and cookie state; `None` (and no peers) until a private key is set.
    keys: Option<Arc<DeviceKeys>>,
    peers: HashMap<Key, Arc<PeerSlot>>,
    routes: Routes,
}

struct DeviceKeys {
    private: StaticSecret,
    public: PublicKey,
    rate_limiter: Arc<RateLimiter>,
}

/// One peer: its noise state behind its own lock.
struct PeerSlot {
    state: Mutex<PeerState>,
    /// Set when a configuration drops the peer, so a loop still holding it lets it be.
    removed: AtomicBool,
}

struct PeerState {
    tunn: Tunn,
    /// Where packets to the peer go: the configured endpoint, or where it last spoke from.
    endpoint: Option<SocketAddr>,
}

impl PeerSlot {
    fn lock(&self) -> MutexGuard<'_, PeerState> {
        // The noise state is never left half-updated by a panic in our code (gotatun's calls
        // complete or return an error), so a poisoned lock still guards a usable state.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn live(&self) -> PeerLive {
        let state = self.lock();
        let (since_handshake, tx_bytes, rx_bytes, ..) = state.tunn.stats();
        PeerLive {
            endpoint: state.endpoint,
            rx_bytes: rx_bytes as u64,
            tx_bytes: tx_bytes as u64,
            since_handshake,
        }
    }
}

impl<Tx: IpSend, Rx: IpRecv> Engine<Tx, Rx> {
    /// An engine with no key and no peers; its loops start with the first private key.
    pub(crate) fn new(socket: SocketSlot, ip_tx: Tx, ip_rx: Rx) -> Self {
        Engine {
            shared: Arc::new(Shared {
                table: RwLock::new(Arc::default()),
                generation: AtomicU64::new(0),
                by_index: Mutex::default(),
                index_table: IndexTable::from_os_rng(),
            }),
            mtu: ip_rx.mtu(),
            ip_tx: Arc::new(tokio::sync::Mutex::new(ip_tx)),
            ip_rx: Arc::new(tokio::sync::Mutex::new(ip_rx)),
            socket,
            running: tokio::sync::Mutex::new(None),
        }
    }

    /// Makes the live peers match `desired`, touching only what differs: a peer that stays keeps
    /// its sessions, counters and roamed endpoint. `explicit_endpoints` are the peers whose
    /// endpoint the request set (pushed even when the configured value did not change, since the
    /// live one may have roamed). Loops on an old socket move to the one now in the slot.
    pub(crate) async fn apply(&self, desired: &DeviceConfig, explicit_endpoints: &HashSet<Key>) {
        let mut running = self.running.lock().await;
        {
            let mut table = self
                .shared
                .table
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            let next = next_table(&table, desired, explicit_endpoints, &self.shared);
            *table = Arc::new(next);
            self.shared.generation.fetch_add(1, Ordering::Release);
        }
        self.shared
            .lock_by_index()
            .retain(|_, peer| !peer.removed.load(Ordering::Relaxed));
        if desired.private_key.is_none() {
            // Without a key nothing is sent or accepted; loops already running carry on empty.
            return;
        }
        let port = self.socket.port();
        if running.as_ref().is_some_and(|r| r.port == port) {
            return;
        }
        if let Some(old) = running.take() {
            stop_loops(old).await;
        }
        *running = Some(self.start(port));
    }

    fn start(&self, port: u16) -> Running {
        let udp = self.socket.socket();
        let send = GsoSocket::new(udp.clone());
        let outgoing = {
            let (shared, ip_rx) = (Arc::clone(&self.shared), Arc::clone(&self.ip_rx));
            let (send, mtu) = (send.clone(), self.mtu.clone());
            move || {
                outgoing(
                    Arc::clone(&shared),
                    Arc::clone(&ip_rx),
                    send.clone(),
                    mtu.clone(),
                )
            }
        };
        let incoming = {
            let (shared, ip_tx) = (Arc::clone(&self.shared), Arc::clone(&self.ip_tx));
            let (send, mtu) = (send.clone(), self.mtu.clone());
            move || {
                let (shared, ip_tx) = (Arc::clone(&shared), Arc::clone(&ip_tx));
                incoming(shared, ip_tx, udp.clone(), send.clone(), mtu.clone())
            }
        };
        let timers = {
            let shared = Arc::clone(&self.shared);
            move || timers(Arc::clone(&shared), send.clone())
        };
        Running {
            port,
            loops: [
                OwnedTask::spawn("wg-outgoing", restarted_on_panic("wg-outgoing", outgoing)),
                OwnedTask::spawn("wg-incoming", restarted_on_panic("wg-incoming", incoming)),
                OwnedTask::spawn("wg-timers", restarted_on_panic("wg-timers", timers)),
            ],
        }
    }

    /// The live state of every peer with a slot (every configured peer while there is a key).
    pub(crate) fn peers(&self) -> HashMap<Key, PeerLive> {
        let table = self.shared.current();
        table
            .peers
            .iter()
            .map(|(key, slot)| (*key, slot.live()))
            .collect()
    }

    /// Stops the loops; when this returns they hold neither the socket nor the IP side.
    pub(crate) async fn stop(&self) {
        if let Some(old) = self.running.lock().await.take() {
            stop_loops(old).await;
        }
    }
}

/// How long a loop that panicked rests before it runs again.
const RESTART_PAUSE: Duration = Duration::from_secs(1);

/// Runs the loop `make` builds until it returns; a panic (a bug, never a packet's fault by design)
/// is logged and the loop runs again, so one bad moment does not leave the tunnel half dead.
async fn restarted_on_panic<F, Fut>(name: &'static str, make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    loop {
        let mut run = OwnedTask::spawn("run", make());
        match run.join().await {
            Err(e) if e.is_panic() => {
                tracing::error!(loop = name, "a WireGuard packet loop panicked; it runs again");
                tokio::time::sleep(RESTART_PAUSE).await;
            }
            _ => return,
        }
    }
}

async fn stop_loops(running: Running) {
    for task in running.loops {
        task.stop().await;
    }
}

impl Shared {
    fn current(&self) -> Arc<PeerTable> {
        Arc::clone(&self.table.read().unwrap_or_else(PoisonError::into_inner))
    }

    fn lock_by_index(&self) -> MutexGuard<'_, HashMap<u32, Arc<PeerSlot>>> {
        // Plain map of Arcs: a panic elsewhere cannot leave it inconsistent.
        self.by_index.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Remembers the sender index of a handshake message about to leave for `peer`.
    fn note_handshake(&self, packet: &WgKind, peer: &Arc<PeerSlot>) {
        let index = match packet {
            WgKind::HandshakeInit(p) => p.sender_idx.get(),
            WgKind::HandshakeResp(p) => p.sender_idx.get(),
            WgKind::CookieReply(_) | WgKind::Data(_) => return,
        };
        self.lock_by_index().insert(index, Arc::clone(peer));
    }

    fn peer_by_index(&self, index: u32) -> Option<Arc<PeerSlot>> {
        self.lock_by_index().get(&index).cloned()
    }
}

/// A loop's copy of the current table, read again only when a new one was published.
struct TableView {
    generation: u64,
    table: Arc<PeerTable>,
}

impl TableView {
    fn new(shared: &Shared) -> TableView {
        TableView {
            generation: shared.generation.load(Ordering::Acquire),
            table: shared.current(),
        }
    }

    /// True when the table changed since the last look.
    fn refresh(&mut self, shared: &Shared) -> bool {
        let generation = shared.generation.load(Ordering::Acquire);
        if generation == self.generation {
            return false;
        }
        self.generation = generation;
        self.table = shared.current();
        true
    }
}

/// The table for `desired`, reusing the slots of `old` for the peers that stay.
fn next_table(
    old: &PeerTable,
    desired: &DeviceConfig,
    explicit_endpoints: &HashSet<Key>,
    shared: &Shared,
) -> PeerTable {
    let Some(private_key) = desired.private_key else {
        // Without a key there are no live peers: nothing is sent, nothing accepted.
        for slot in old.peers.values() {
            slot.removed.store(true, Ordering::Relaxed);
        }
        return PeerTable::default();
    };
    let private = StaticSecret::from(private_key.0);
    let public = PublicKey::from(&private);
    let keys = match &old.keys {
        Some(keys) if keys.public == public => Arc::clone(keys),
        _ => Arc::new(DeviceKeys {
            rate_limiter: Arc::new(RateLimiter::new(&public, HANDSHAKE_RATE_LIMIT)),
            private,
            public,
        }),
    };
    let new_key = !old.keys.as_ref().is_some_and(|k| Arc::ptr_eq(k, &keys));
    let mut table = PeerTable {
        keys: Some(Arc::clone(&keys)),
        ..PeerTable::default()
    };
    for want in desired.peers() {
        let slot = match old.peers.get(&want.public_key) {
            Some(slot) => {
                let set_endpoint = explicit_endpoints.contains(&want.public_key);
                update_peer(
                    &mut slot.lock(),
                    want,
                    new_key.then_some(&*keys),
                    set_endpoint,
                );
                Arc::clone(slot)
            }
            None => new_peer(want, &keys, &shared.index_table),
        };
        for net in &want.allowed_ips {
            table.routes.insert(*net, &slot);
        }
        table.peers.insert(want.public_key, slot);
    }
    for (key, slot) in &old.peers {
        if !table.peers.contains_key(key) {
            slot.removed.store(true, Ordering::Relaxed);
        }
    }
    table
}

fn new_peer(want: &PeerConfig, keys: &DeviceKeys, index_table: &IndexTable) -> Arc<PeerSlot> {
    let tunn = Tunn::new(
        keys.private.clone(),
        PublicKey::from(want.public_key.0),
        want.preshared_key.map(|k| k.0),
        keepalive(want.persistent_keepalive),
        index_table.clone(),
        Arc::clone(&keys.rate_limiter),
    );
    Arc::new(PeerSlot {
        state: Mutex::new(PeerState {
            tunn,
            endpoint: want.endpoint,
        }),
        removed: AtomicBool::new(false),
    })
}

/// Brings a peer that stays in line with its configuration, field by field.
fn update_peer(
    state: &mut PeerState,
    want: &PeerConfig,
    new_keys: Option<&DeviceKeys>,
    set_endpoint: bool,
) {
    if let Some(keys) = new_keys {
        // A new private key ends the peer's sessions (gotatun clears them).
        state.tunn.set_static_private(
            keys.private.clone(),
            keys.public,
            Arc::clone(&keys.rate_limiter),
        );
    }
    let preshared_key = want.preshared_key.map(|k| k.0);
    if state.tunn.preshared_key() != preshared_key {
        state.tunn.set_preshared_key(preshared_key);
    }
    let keepalive = keepalive(want.persistent_keepalive);
    if state.tunn.persistent_keepalive().filter(|&s| s != 0) != keepalive {
        state.tunn.set_persistent_keepalive(keepalive);
    }
    if set_endpoint && want.endpoint.is_some() {
        state.endpoint = want.endpoint;
    }
}

fn keepalive(seconds: u16) -> Option<u16> {
    (seconds != 0).then_some(seconds)
}

/// Encrypts what the IP side reads: one burst in, one `send_many_to` out.
async fn outgoing<Rx: IpRecv>(
    shared: Arc<Shared>,
    ip_rx: Arc<tokio::sync::Mutex<Rx>>,
    udp: GsoSocket,
    mut mtu: MtuWatcher,
) {
    // Held for the loop's life; a loop started after this one was stopped takes it next.
    let mut ip_rx = ip_rx.lock_owned().await;
    // The IP side may take its packets from here (channels do; memif has its own).
    let mut pool = PacketBufPool::new(0);
    let mut view = TableView::new(&shared);
    let mut out: Vec<(Packet, SocketAddr)> = Vec::with_capacity(BURST);
    let mut send_buf = GsoSendBuf::default();
    loop {
        let packets = match ip_rx.recv(&mut pool).await {
            Ok(packets) => packets,
            Err(e) => {
                tracing::debug!(error = %e, "the IP side closed; no more packets to encrypt");
                return;
            }
        };
        view.refresh(&shared);
        for packet in packets {
            let Some(peer) = packet
                .destination()
                .and_then(|ip| view.table.routes.find(ip))
            else {
                continue;
            };
            let sealed = {
                let mut state = peer.lock();
                let Some(endpoint) = state.endpoint else {
                    continue;
                };
                // `None` while a handshake is under way: the packet waits in the peer's queue.
                let sealed = state
                    .tunn
                    .handle_outgoing_packet(packet.into(), Some(&mut mtu));
                sealed.map(|sealed| (sealed, endpoint))
            };
            let Some((sealed, endpoint)) = sealed else {
                continue;
            };
            shared.note_handshake(&sealed, peer);
            out.push((sealed.into(), endpoint));
            if out.len() == BURST {
                send(&udp, &mut send_buf, &mut out).await;
            }
        }
        send(&udp, &mut send_buf, &mut out).await;
    }
}

/// Sends and empties `out`; a failed send drops the rest of the batch, as the kernel would drop
/// datagrams it cannot route.
async fn send(udp: &GsoSocket, buf: &mut GsoSendBuf, out: &mut Vec<(Packet, SocketAddr)>) {
    if out.is_empty() {
        return;
    }
    if let Err(e) = udp.send_many_to(buf, out).await {
        tracing::debug!(error = %e, "sending UDP datagrams failed; the batch is dropped");
    }
    out.clear();
}

/// Decrypts what the UDP socket receives: one `recv_many_from` in, each packet to the IP side.
async fn incoming<Tx: IpSend>(
    shared: Arc<Shared>,
    ip_tx: Arc<tokio::sync::Mutex<Tx>>,
    mut udp_rx: UdpSocket,
    udp: GsoSocket,
    mut mtu: MtuWatcher,
) {
    let mut ip_tx = ip_tx.lock_owned().await;
    let mut pool = PacketBufPool::new(RECV_POOL);
    let mut recv_buf = <UdpSocket as UdpRecv>::RecvManyBuf::default();
    let mut received: Vec<(Packet, SocketAddr)> = Vec::new();
    let mut replies: Vec<(Packet, SocketAddr)> = Vec::with_capacity(BURST);
    let mut send_buf = GsoSendBuf::default();
    let mut view = TableView::new(&shared);
    // The session index of the last data packet and its peer: a burst is mostly one session.
    let mut last: Option<(u32, Arc<PeerSlot>)> = None;
    loop {
        if let Err(e) = udp_rx
            .recv_many_from(&mut recv_buf, &mut pool, &mut received)
            .await
        {
            tracing::warn!(error = %e, "receiving UDP datagrams failed");
            tokio::time::sleep(RECV_ERROR_PAUSE).await;
            continue;
        }
        if view.refresh(&shared) {
            last = None;
        }
        let table = Arc::clone(&view.table);
        let Some(keys) = table.keys.as_deref() else {
            received.clear();
            continue;
        };
        for (datagram, from) in received.drain(..) {
            let opened = open(
                &shared,
                &table,
                keys,
                &mut last,
                (datagram, from),
                &mut replies,
                &mut mtu,
            );
            if let Some(packet) = opened
                && let Err(e) = ip_tx.send(packet).await
            {
                tracing::debug!(error = %e, "the IP side closed; no more packets to deliver");
                return;
            }
            if replies.len() >= BURST {
                send(&udp, &mut send_buf, &mut replies).await;
            }
        }
        if let Err(e) = ip_tx.flush().await {
            tracing::debug!(error = %e, "the IP side closed; no more packets to deliver");
            return;
        }
        send(&udp, &mut send_buf, &mut replies).await;
    }
}

/// Handles one datagram: a handshake message or cookie is answered into `replies`, a data packet
/// is decrypted and returned if its source routes back to the peer that sent it.
fn open(
    shared: &Shared,
    table: &PeerTable,
    keys: &DeviceKeys,
    last: &mut Option<(u32, Arc<PeerSlot>)>,
    (datagram, from): (Packet, SocketAddr),
    replies: &mut Vec<(Packet, SocketAddr)>,
    mtu: &mut MtuWatcher,
) -> Option<Packet<Ip>> {
    let message = match keys.rate_limiter.verify_packet(from, datagram) {
        Ok(message) => message,
        Err(TunnResult::WriteToNetwork(cookie)) => {
            replies.push((cookie.into(), from));
            return None;
        }
        Err(_) => return None,
    };
    let peer = match &message {
        WgKind::HandshakeInit(p) => parse_handshake_anon(&keys.private, &keys.public, p)
            .ok()
            .and_then(|half| table.peers.get(&Key(half.peer_static_public)))
            .cloned(),
        WgKind::HandshakeResp(p) => shared.peer_by_index(p.receiver_idx.get()),
        WgKind::CookieReply(p) => shared.peer_by_index(p.receiver_idx.get()),
        WgKind::Data(p) => {
            let index = p.header.receiver_idx.get();
            match last {
                Some((at, peer)) if *at == index => Some(Arc::clone(peer)),
                _ => {
                    let found = shared.peer_by_index(index);
                    *last = found.as_ref().map(|peer| (index, Arc::clone(peer)));
                    found
                }
            }
        }
    };
    let peer = peer.filter(|p| !p.removed.load(Ordering::Relaxed))?;
    let is_cookie = matches!(message, WgKind::CookieReply(_));
    let mut state = peer.lock();
    let packet = match state.tunn.handle_incoming_packet(message) {
        TunnResult::Done | TunnResult::Err(_) => return None,
        TunnResult::WriteToNetwork(reply) => {
            // An authenticated handshake message: the peer is where it came from.
            if !is_cookie {
                state.endpoint = Some(from);
            }
            shared.note_handshake(&reply, &peer);
            replies.push((reply.into(), from));
            // Packets that waited for this handshake leave after its reply.
            for queued in state.tunn.get_queued_packets(mtu) {
                replies.push((queued.into(), from));
            }
            return None;
        }
        TunnResult::WriteToTunnel(packet) => {
            state.endpoint = Some(from);
            packet
        }
    };
    drop(state);
    // An empty packet is a keepalive.
    if packet.is_empty() {
        return None;
    }
    // Cut to the IP length, dropping the padding added before encryption.
    let (source, packet): (IpAddr, Packet<Ip>) = packet.try_into_ipvx().ok()?.either(
        |v4| (v4.header.source().into(), v4.into()),
        |v6| (v6.header.source().into(), v6.into()),
    );
    let owner = table.routes.find(source)?;
    Arc::ptr_eq(owner, &peer).then_some(packet)
}

/// Runs every peer's timers: handshake retries and rekeys, keepalives, session expiry.
async fn timers(shared: Arc<Shared>, udp: GsoSocket) {
    // On the process-wide grid: all tunnels' timers run in one wake-up.
    let mut tick = crate::task::shared_interval(TIMER_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let table = shared.current();
        // Indices of sessions gotatun has let go of lead nowhere any more.
        shared
            .lock_by_index()
            .retain(|index, _| shared.index_table.in_use(*index));
        if let Some(keys) = &table.keys {
            // Also when there are no peers, or the handshake counts would only ever grow.
            keys.rate_limiter.try_reset_count();
        }
        for peer in table.peers.values() {
            let (due, endpoint) = {
                let mut state = peer.lock();
                let Some(endpoint) = state.endpoint else {
                    continue;
                };
                (state.tunn.update_timers(), endpoint)
            };
            match due {
                Ok(Some(packet)) => {
                    shared.note_handshake(&packet, peer);
                    if let Err(e) = udp.send_to(packet.into(), endpoint).await {
                        tracing::debug!(error = %e, %endpoint, "sending a timer's packet failed");
                    }
                }
                Ok(None) | Err(WireGuardError::ConnectionExpired) => {}
                Err(e) => tracing::debug!(error = ?e, "a peer's timers failed"),
            }
        }
    }
}

/// Longest-prefix match of allowed IPs to their peer, one table per family.
#[derive(Default)]
struct Routes {
    v4: PrefixTable,
    v6: PrefixTable,
}

/// Prefixes of one family: a hash map per prefix length, looked up longest first.
#[derive(Default)]
struct PrefixTable {
    /// The prefix lengths present, longest first.
    lengths: Vec<u8>,
    entries: HashMap<(u8, u128), Arc<PeerSlot>, BuildHasherDefault<PrefixHasher>>,
}

/// A multiply-rotate hash of (length, prefix): a few cycles per lookup where SipHash took 2 % of the
/// encrypting loop. Only configured prefixes are inserted, so there is no flood of chosen keys to
/// resist; a packet's address is only looked up.
#[derive(Default)]
struct PrefixHasher(u64);

impl PrefixHasher {
    fn mix(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(26) ^ word).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

impl Hasher for PrefixHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.mix(u64::from_le_bytes(word));
        }
    }

    fn write_u8(&mut self, n: u8) {
        self.mix(u64::from(n));
    }

    fn write_u128(&mut self, n: u128) {
        self.mix(n as u64);
        self.mix((n >> 64) as u64);
    }
}

impl Routes {
    /// Adds `net` for `peer`; a prefix already present moves to `peer` (as in WireGuard, where
    /// an allowed IP belongs to the last peer given it).
    fn insert(&mut self, net: IpNet, peer: &Arc<PeerSlot>) {
        let (table, bits, width) = match net.addr() {
            IpAddr::V4(a) => (&mut self.v4, u128::from(u32::from(a)), 32),
            IpAddr::V6(a) => (&mut self.v6, u128::from(a), 128),
        };
        let len = net.prefix_len();
        if let Err(at) = table.lengths.binary_search_by(|l| len.cmp(l)) {
            table.lengths.insert(at, len);
        }
        table
            .entries
            .insert((len, masked(bits, len, width)), Arc::clone(peer));
    }

    fn find(&self, ip: IpAddr) -> Option<&Arc<PeerSlot>> {
        let (table, bits, width) = match ip {
            IpAddr::V4(a) => (&self.v4, u128::from(u32::from(a)), 32),
            IpAddr::V6(a) => (&self.v6, u128::from(a), 128),
        };
        table
            .lengths
            .iter()
            .find_map(|&len| table.entries.get(&(len, masked(bits, len, width))))
    }
}

/// `bits` (an address of `width` bits, right-aligned) with all but its first `len` bits cleared.
fn masked(bits: u128, len: u8, width: u8) -> u128 {
    let host = u32::from(width - len);
    bits.checked_shr(host)
        .and_then(|b| b.checked_shl(host))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot() -> Arc<PeerSlot> {
        let private = StaticSecret::from([7u8; 32]);
        let public = PublicKey::from(&private);
        let keys = DeviceKeys {
            rate_limiter: Arc::new(RateLimiter::new(&public, HANDSHAKE_RATE_LIMIT)),
            private,
            public,
        };
        let want = PeerConfig {
            public_key: Key([9u8; 32]),
            preshared_key: None,
            endpoint: None,
            persistent_keepalive: 0,
            allowed_ips: Vec::new(),
        };
        new_peer(&want, &keys, &IndexTable::from_os_rng())
    }

    #[test]
    fn routes_pick_the_longest_prefix_of_the_right_family() {
        let (wide, narrow, v6, default4) = (slot(), slot(), slot(), slot());
        let mut routes = Routes::default();
        routes.insert("10.0.0.0/8".parse().unwrap(), &wide);
        routes.insert("10.1.2.0/24".parse().unwrap(), &narrow);
        routes.insert("fd00::/8".parse().unwrap(), &v6);
        routes.insert("0.0.0.0/0".parse().unwrap(), &default4);
        let find = |routes: &Routes, ip: &str| routes.find(ip.parse().unwrap()).cloned();
        let is = |found: Option<Arc<PeerSlot>>, want: &Arc<PeerSlot>| {
            found.is_some_and(|f| Arc::ptr_eq(&f, want))
        };
        assert!(is(find(&routes, "10.1.2.3"), &narrow));
        assert!(is(find(&routes, "10.1.3.3"), &wide));
        assert!(is(find(&routes, "192.0.2.1"), &default4));
        assert!(is(find(&routes, "fd12::1"), &v6));
        assert!(
            find(&routes, "2001:db8::1").is_none(),
            "no IPv6 default route"
        );
        // A prefix given again belongs to the last peer given it.
        routes.insert("10.1.2.0/24".parse().unwrap(), &wide);
        assert!(is(find(&routes, "10.1.2.3"), &wide));
    }

    #[test]
    fn masking_keeps_the_prefix_bits_only() {
        assert_eq!(masked(0x0a01_0203, 8, 32), 0x0a00_0000);
        assert_eq!(masked(0x0a01_0203, 32, 32), 0x0a01_0203);
        assert_eq!(masked(0x0a01_0203, 0, 32), 0);
        assert_eq!(masked(u128::MAX, 0, 128), 0);
        assert_eq!(masked(u128::MAX, 128, 128), u128::MAX);
        assert_eq!(masked(u128::MAX, 64, 128), u128::MAX << 64);
    }
}
