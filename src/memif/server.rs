//! The server (master) role: listen on the control socket, check the client's INIT, map the regions it
//! sends, check its rings, and answer each message in lock-step (HELLO, ACK…, CONNECTED).
//!
//! [`ServerHandshake`] is the protocol logic without I/O (fed messages and fds, it answers with the
//! reply or the refusal); [`Listener`] drives it over a socket, with a timeout on every step. A client
//! that fails or vanishes mid-handshake costs nothing: everything it sent is closed or unmapped when
//! the handshake is dropped, and the listener goes on to the next client.

use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::connection::{Channel, Connection, ConnectionInfo, Control, Role};
use super::error::{Error, ProtocolError};
use super::eventfd::EventFd;
use super::msg::{self, Hello, Init, Message, Name, Secret};
use super::queue::{LinkState, RxQueue, TxQueue};
use super::region::Region;
use super::ring::{COOKIE, MAX_LOG2_RING_SIZE, Ring, RingError, ring_bytes};
use super::socket::{ListenSocket, SocketAddr, peer_hung_up};

/// The default [`ServerConfig::max_memory`]: 2 GiB, room for VPP's largest copy-mode region (16 queue
/// pairs of 16384 slots of 2048 bytes, 1 GiB) or a zero-copy buffer pool next to its rings.
pub const DEFAULT_MAX_MEMORY: u64 = 2 << 30;

/// Settings of a server (master) interface.
#[derive(Clone)]
pub struct ServerConfig {
    /// The interface id the client must ask for in INIT.
    pub id: u32,
    /// The shared secret (at most 23 bytes); `None` accepts any client secret, as every implementation does.
    pub secret: Option<String>,
    /// Our application name, sent in HELLO.
    pub app_name: String,
    /// Our interface name, sent in CONNECTED.
    pub if_name: String,
    /// Most queues accepted per direction.
    pub max_queues: u16,
    /// Largest ring accepted (log2 of the slot count, at most 14).
    pub max_log2_ring_size: u8,
    /// Most regions accepted per connection (at most 256). A peer's regions cost a mapping each, and no
    /// descriptor (it is closed once mapped).
    pub max_regions: u16,
    /// Most bytes of shared memory accepted per connection, all regions together (each region is also
    /// at most 1 GiB). It bounds what a peer can make us map, and the pages of its memory that our
    /// reads and writes can make the kernel allocate and charge to this process.
    pub max_memory: u64,
    /// Accept regions that are not sealed against shrinking, or that live on hugetlbfs (zero-copy
    /// peers over hugepages: DPDK, or VPP with hugepage buffers). Such a peer can crash this process
    /// (SIGBUS) by truncating its file, so only a trusted one should be allowed; off by default, and
    /// every peer in copy mode (VPP, DPDK, libmemif) seals its regions.
    pub allow_unsealed_regions: bool,
    /// Time allowed for each handshake step.
    pub handshake_timeout: Duration,
    /// Mode of the socket file.
    pub socket_mode: u32,
    /// Start the receive queues in interrupt mode (the peer signals the eventfd) rather than polling.
    pub interrupt_mode: bool,
    /// The only uid allowed to connect (the kernel's SO_PEERCRED); `None` accepts anyone who may open the
    /// socket file.
    pub peer_uid: Option<u32>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            id: 0,
            secret: None,
            app_name: format!("wireguard-vpp {}", env!("CARGO_PKG_VERSION")),
            if_name: "memif0".into(),
            max_queues: 16,
            max_log2_ring_size: MAX_LOG2_RING_SIZE,
            max_regions: 256,
            max_memory: DEFAULT_MAX_MEMORY,
            allow_unsealed_regions: false,
            handshake_timeout: Duration::from_secs(5),
            socket_mode: 0o600,
            interrupt_mode: true,
            peer_uid: None,
        }
    }
}

impl std::fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConfig")
            .field("id", &self.id)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("app_name", &self.app_name)
            .field("if_name", &self.if_name)
            .field("max_queues", &self.max_queues)
            .field("max_log2_ring_size", &self.max_log2_ring_size)
            .field("max_regions", &self.max_regions)
            .field("max_memory", &self.max_memory)
            .field("allow_unsealed_regions", &self.allow_unsealed_regions)
            .field("handshake_timeout", &self.handshake_timeout)
            .field("interrupt_mode", &self.interrupt_mode)
            .finish()
    }
}

impl ServerConfig {
    fn validate(&self) -> Result<Secret, Error> {
        let config = |field, reason: &str| {
            Err(Error::Config {
                field,
                reason: reason.into(),
            })
        };
        if self.max_queues == 0 {
            return config("max_queues", "must be at least 1");
        }
        if self.max_log2_ring_size > MAX_LOG2_RING_SIZE {
            return config("max_log2_ring_size", "must be at most 14 (16384 slots)");
        }
        if self.max_regions == 0 || self.max_regions > 256 {
            return config("max_regions", "must be between 1 and 256");
        }
        if self.max_memory == 0 {
            return config("max_memory", "must be at least 1 byte");
        }
        if self.handshake_timeout.is_zero() {
            return config("handshake_timeout", "must be longer than 0");
        }
        parse_secret(self.secret.as_deref())
    }
}

pub(crate) fn parse_secret(secret: Option<&str>) -> Result<Secret, Error> {
    match secret {
        None => Ok(Secret::default()),
        Some(s) => Secret::new(s).ok_or_else(|| Error::Config {
            field: "secret",
            reason: format!(
                "is {} bytes long; memif carries at most 23 bytes without NUL",
                s.len()
            ),
        }),
    }
}

/// A ring announced by ADD_RING, checked against the regions received so far.
struct PendingRing {
    region: u16,
    offset: u32,
    log2: u8,
    eventfd: EventFd,
}

/// What the server answers to one message.
#[derive(Debug)]
pub(crate) enum Step {
    /// Send this reply and wait for the next message.
    Reply(Message),
    /// CONNECT was accepted: call [`ServerHandshake::finish`], then send CONNECTED.
    Connect,
}

/// The server's side of the handshake, without I/O.
pub(crate) struct ServerHandshake<'a> {
    cfg: &'a ServerConfig,
    secret: Secret,
    init: Option<Init>,
    regions: Vec<Region>,
    /// Bytes of all regions in `regions`.
    memory: u64,
    s2m: Vec<PendingRing>,
    m2s: Vec<PendingRing>,
    peer_if_name: Name,
}

const DIR_S2M: &str = "S2M";
const DIR_M2S: &str = "M2S";

impl<'a> ServerHandshake<'a> {
    pub fn new(cfg: &'a ServerConfig, secret: Secret) -> Self {
        ServerHandshake {
            cfg,
            secret,
            init: None,
            regions: Vec::new(),
            memory: 0,
            s2m: Vec::new(),
            m2s: Vec::new(),
            peer_if_name: Name::default(),
        }
    }

    /// The HELLO to send right after accept.
    pub fn hello(&self) -> Message {
        let max_ring = self.cfg.max_queues.saturating_sub(1);
        Message::Hello(Hello {
            name: Name::new(&self.cfg.app_name),
            min_version: msg::VERSION,
            max_version: msg::VERSION,
            max_region: self.cfg.max_regions.saturating_sub(1),
            max_m2s_ring: max_ring,
            max_s2m_ring: max_ring,
            max_log2_ring_size: self.cfg.max_log2_ring_size,
        })
    }

    /// Handles one message from the client. An error is the reason to refuse it with.
    pub fn on_message(&mut self, msg: Message, fd: Option<OwnedFd>) -> Result<Step, ProtocolError> {
        let Some(_) = self.init else {
            return match msg {
                Message::Init(init) => self.on_init(init),
                other => Err(ProtocolError::Unexpected {
                    got: other.name(),
                    expected: "INIT",
                }),
            };
        };
        match msg {
            Message::AddRegion(r) => {
                let expected = self.regions.len() as u16;
                if r.index != expected {
                    return Err(ProtocolError::RegionIndex {
                        index: r.index,
                        expected,
                    });
                }
                if r.index >= self.cfg.max_regions {
                    return Err(ProtocolError::TooManyRegions {
                        index: r.index,
                        max: self.cfg.max_regions,
                    });
                }
                let fd = fd.ok_or(ProtocolError::MissingRegionFd)?;
                let total = self.memory.saturating_add(r.size);
                if total > self.cfg.max_memory {
                    return Err(ProtocolError::RegionMemory {
                        index: r.index,
                        total,
                        max: self.cfg.max_memory,
                    });
                }
                let region =
                    Region::map(fd, r.size, self.cfg.allow_unsealed_regions).map_err(|e| {
                        ProtocolError::RegionMap {
                            index: r.index,
                            reason: e.to_string(),
                        }
                    })?;
                self.memory = total;
                self.regions.push(region);
                Ok(Step::Reply(Message::Ack))
            }
            Message::AddRing(r) => {
                let (direction, rings) = if r.is_s2m() {
                    (DIR_S2M, &self.s2m)
                } else {
                    (DIR_M2S, &self.m2s)
                };
                let expected = rings.len() as u16;
                if r.index != expected || r.index >= self.cfg.max_queues {
                    let max = self.cfg.max_queues - 1;
                    return Err(ProtocolError::RingIndex {
                        direction,
                        index: r.index,
                        expected,
                        max,
                    });
                }
                if r.log2_ring_size > self.cfg.max_log2_ring_size {
                    return Err(ProtocolError::RingSize {
                        got: r.log2_ring_size,
                        max: self.cfg.max_log2_ring_size,
                    });
                }
                if r.private_hdr_size != 0 {
                    return Err(ProtocolError::PrivateHeader(r.private_hdr_size));
                }
                let ring_err = |error| ProtocolError::Ring {
                    direction,
                    index: r.index,
                    error,
                };
                let region = self
                    .regions
                    .get(usize::from(r.region))
                    .ok_or(ring_err(RingError::NoSuchRegion(r.region)))?;
                let bytes = ring_bytes(r.log2_ring_size);
                if !region.contains(r.offset as usize, bytes) {
                    return Err(ring_err(RingError::OutOfRegion {
                        offset: r.offset,
                        bytes,
                        region_len: region.len(),
                    }));
                }
                let fd = fd.ok_or(ProtocolError::MissingInterruptFd)?;
                let eventfd = EventFd::from_peer(fd).map_err(|e| ProtocolError::InterruptFd {
                    direction,
                    index: r.index,
                    reason: e.to_string(),
                })?;
                let ring = PendingRing {
                    region: r.region,
                    offset: r.offset,
                    log2: r.log2_ring_size,
                    eventfd,
                };
                if r.is_s2m() {
                    self.s2m.push(ring)
                } else {
                    self.m2s.push(ring)
                }
                Ok(Step::Reply(Message::Ack))
            }
            Message::Connect(if_name) => {
                if self.s2m.is_empty() {
                    return Err(ProtocolError::NoRings(DIR_S2M));
                }
                if self.m2s.is_empty() {
                    return Err(ProtocolError::NoRings(DIR_M2S));
                }
                self.peer_if_name = if_name;
                Ok(Step::Connect)
            }
            other => Err(ProtocolError::Unexpected {
                got: other.name(),
                expected: "ADD_REGION, ADD_RING or CONNECT",
            }),
        }
    }

    fn on_init(&mut self, init: Init) -> Result<Step, ProtocolError> {
        if init.version != msg::VERSION {
            return Err(ProtocolError::Version(init.version));
        }
        if init.id != self.cfg.id {
            return Err(ProtocolError::UnknownId(init.id));
        }
        if init.mode != msg::MODE_ETHERNET {
            return Err(ProtocolError::Mode(init.mode));
        }
        if !self.secret.is_empty() {
            if init.secret.is_empty() {
                return Err(ProtocolError::SecretRequired);
            }
            if !self.secret.matches(&init.secret) {
                return Err(ProtocolError::IncorrectSecret);
            }
        }
        self.init = Some(init);
        Ok(Step::Reply(Message::Ack))
    }

    /// After CONNECT: checks every ring's cookie and builds the queues (RX on S2M, TX on M2S).
    pub fn finish(
        self,
        link: &Arc<LinkState>,
    ) -> Result<(ConnectionInfo, Vec<RxQueue>, Vec<TxQueue>), ProtocolError> {
        let regions: Arc<[Region]> = Arc::from(self.regions);
        let build = |direction, index: usize, p: &PendingRing| -> Result<Ring, ProtocolError> {
            let index = index as u16;
            let ring = Ring::new(regions.clone(), p.region, p.offset, p.log2).map_err(|error| {
                ProtocolError::Ring {
                    direction,
                    index,
                    error,
                }
            })?;
            match ring.cookie() {
                COOKIE => Ok(ring),
                found => Err(ProtocolError::Cookie {
                    direction,
                    index,
                    found,
                }),
            }
        };
        let mut rx = Vec::with_capacity(self.s2m.len());
        for (i, p) in self.s2m.into_iter().enumerate() {
            let ring = build(DIR_S2M, i, &p)?;
            let mut q = RxQueue::new(
                i as u16,
                ring,
                regions.clone(),
                p.eventfd,
                link.clone(),
                None,
            );
            q.set_interrupt_mode(self.cfg.interrupt_mode);
            rx.push(q);
        }
        let mut tx = Vec::with_capacity(self.m2s.len());
        for (i, p) in self.m2s.into_iter().enumerate() {
            let ring = build(DIR_M2S, i, &p)?;
            tx.push(TxQueue::new(
                i as u16,
                ring,
                regions.clone(),
                p.eventfd,
                link.clone(),
                None,
            ));
        }
        let init = self
            .init
            .expect("INVARIANT: finish follows an accepted INIT");
        let info = ConnectionInfo {
            role: Role::Server,
            id: init.id,
            peer_app_name: init.name.to_string_lossy(),
            peer_if_name: self.peer_if_name.to_string_lossy(),
            regions: regions.len(),
            log2_ring_size: rx
                .first()
                .map_or(0, |q| q.ring_size().trailing_zeros() as u8),
        };
        Ok((info, rx, tx))
    }
}

/// A listening server interface. Dropping it removes the socket file.
#[derive(Debug)]
pub struct Listener {
    sock: ListenSocket,
    cfg: ServerConfig,
    secret: Secret,
    /// The last connection's state and a duplicate of its control socket, to refuse a second client
    /// while the first is up, and to notice a first one that went away unobserved.
    current: Option<(Arc<LinkState>, OwnedFd)>,
}

impl Listener {
    /// Listens on `addr` (a path, or `@name` for an abstract socket). A stale socket file is replaced.
    pub fn bind(addr: impl AsRef<Path>, cfg: ServerConfig) -> Result<Listener, Error> {
        let secret = cfg.validate()?;
        let addr = SocketAddr::parse(addr);
        let sock = ListenSocket::bind(&addr, cfg.socket_mode).map_err(|source| Error::Socket {
            addr: addr.to_string(),
            source,
        })?;
        Ok(Listener {
            sock,
            cfg,
            secret,
            current: None,
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> &SocketAddr {
        self.sock.addr()
    }

    /// Waits for the next client that completes the handshake. Clients that fail it are refused
    /// (DISCONNECT with the reason), logged, and forgotten; only a failing listener is an error.
    pub async fn accept(&mut self) -> Result<Connection, Error> {
        loop {
            match self.accept_one().await {
                Ok(conn) => return Ok(conn),
                Err(err @ Error::Socket { .. }) => return Err(err),
                Err(err) => {
                    tracing::warn!(error = %err, "memif: handshake failed; waiting for the next client")
                }
            }
        }
    }

    /// Accepts one client and runs its handshake; returns its failure, if it fails.
    pub async fn accept_one(&mut self) -> Result<Connection, Error> {
        let sock = self.sock.accept().await.map_err(|source| Error::Socket {
            addr: self.sock.addr().to_string(),
            source,
        })?;
        let peer = sock.peer_credentials();
        let channel = Channel::new(sock, self.cfg.handshake_timeout);
        match peer {
            Ok(peer) => {
                tracing::info!(
                    pid = peer.pid(),
                    uid = peer.uid(),
                    gid = peer.gid(),
                    "memif: a peer connects"
                );
                if let Some(allowed) = self.cfg.peer_uid
                    && peer.uid() != allowed
                {
                    let refused = ProtocolError::PeerUid {
                        uid: peer.uid(),
                        allowed,
                    };
                    return Err(channel.fail(refused.into()).await);
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, "memif: the peer's credentials cannot be read")
            }
        }
        if let Some((link, control)) = &self.current
            && link.is_up()
        {
            if !peer_hung_up(control.as_fd()) {
                return Err(channel.fail(ProtocolError::AlreadyConnected.into()).await);
            }
            // Its peer left and nobody awaited `Control::closed`: its queues learn it now.
            link.set_down();
        }
        let mut handshake = ServerHandshake::new(&self.cfg, self.secret);
        if let Err(e) = channel.send(&handshake.hello()).await {
            return Err(channel.fail(e).await);
        }
        loop {
            let step = match channel
                .recv_step("the client's next handshake message")
                .await
            {
                Ok((msg, fd)) => handshake.on_message(msg, fd).map_err(Error::from),
                Err(e) => Err(e),
            };
            match step {
                Ok(Step::Reply(reply)) => {
                    if let Err(e) = channel.send(&reply).await {
                        return Err(channel.fail(e).await);
                    }
                }
                Ok(Step::Connect) => break,
                Err(e) => return Err(channel.fail(e).await),
            }
        }
        let link = Arc::new(LinkState::default());
        let (info, rx, tx) = match handshake.finish(&link) {
            Ok(parts) => parts,
            Err(e) => return Err(channel.fail(e.into()).await),
        };
        if let Err(e) = channel
            .send(&Message::Connected(Name::new(&self.cfg.if_name)))
            .await
        {
            return Err(channel.fail(e).await);
        }
        tracing::info!(id = info.id, peer = %info.peer_app_name, rx = rx.len(), tx = tx.len(), "memif connected (server)");
        let watch = channel.try_clone_fd().map_err(Error::Io)?;
        self.current = Some((link.clone(), watch));
        Ok(Connection {
            info,
            control: Control::new(channel, link),
            rx,
            tx,
        })
    }
}
