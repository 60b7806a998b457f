//! The client (slave) role: connect, build the shared memory (one memfd region holding the rings and
//! the buffers, laid out as DPDK and VPP do), and walk the handshake in lock-step: one message, then
//! wait for its answer.
//!
//! Region layout: `[S2M rings][M2S rings][buffers]`; buffers follow in ring order, slot `j` of a ring
//! always owning the same buffer. Copy mode only (the buffers are ours, frames are copied).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::connection::{Channel, Connection, ConnectionInfo, Control, Role};
use super::error::{Error, ProtocolError};
use super::eventfd::EventFd;
use super::msg::{self, AddRegion, AddRing, Hello, Init, Message, Name, RING_FLAG_S2M};
use super::queue::{LinkState, OwnBuffers, RxQueue, TxQueue};
use super::region::Region;
use super::ring::{MAX_LOG2_RING_SIZE, Ring, ring_bytes};
use super::server::parse_secret;
use super::socket::{ControlSocket, SocketAddr};

/// Settings of a client (slave) interface. The defaults are VPP's: one queue each way, 1024 slots,
/// 2048-byte buffers.
#[derive(Clone)]
pub struct ClientConfig {
    /// The interface id to ask the server for.
    pub id: u32,
    /// The shared secret (at most 23 bytes), if the server wants one.
    pub secret: Option<String>,
    /// Our application name, sent in INIT.
    pub app_name: String,
    /// Our interface name, sent in CONNECT.
    pub if_name: String,
    /// Receive queues (M2S rings). The server's limit from HELLO caps it.
    pub rx_queues: u16,
    /// Transmit queues (S2M rings).
    pub tx_queues: u16,
    /// log2 of the slots per ring (at most 14).
    pub log2_ring_size: u8,
    /// Size of each buffer; longer frames are chained over several.
    pub buffer_size: u32,
    /// Time allowed for each handshake step.
    pub handshake_timeout: Duration,
    /// Start the receive queues in interrupt mode rather than polling.
    pub interrupt_mode: bool,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            id: 0,
            secret: None,
            app_name: format!("wireguard-vpp {}", env!("CARGO_PKG_VERSION")),
            if_name: "memif0".into(),
            rx_queues: 1,
            tx_queues: 1,
            log2_ring_size: 10,
            buffer_size: 2048,
            handshake_timeout: Duration::from_secs(5),
            interrupt_mode: true,
        }
    }
}

impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("id", &self.id)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("app_name", &self.app_name)
            .field("if_name", &self.if_name)
            .field("rx_queues", &self.rx_queues)
            .field("tx_queues", &self.tx_queues)
            .field("log2_ring_size", &self.log2_ring_size)
            .field("buffer_size", &self.buffer_size)
            .field("handshake_timeout", &self.handshake_timeout)
            .field("interrupt_mode", &self.interrupt_mode)
            .finish()
    }
}

impl ClientConfig {
    fn validate(&self) -> Result<(), Error> {
        let config = |field, reason: &str| {
            Err(Error::Config {
                field,
                reason: reason.into(),
            })
        };
        if self.rx_queues == 0 || self.tx_queues == 0 {
            return config("rx_queues/tx_queues", "need at least one queue each way");
        }
        if self.rx_queues > 256 || self.tx_queues > 256 {
            return config("rx_queues/tx_queues", "at most 256 queues each way");
        }
        if self.log2_ring_size > MAX_LOG2_RING_SIZE {
            return config("log2_ring_size", "must be at most 14 (16384 slots)");
        }
        if self.buffer_size == 0 || !self.buffer_size.is_multiple_of(8) || self.buffer_size > 65_536
        {
            return config("buffer_size", "must be a multiple of 8 between 8 and 65536");
        }
        if self.handshake_timeout.is_zero() {
            return config("handshake_timeout", "must be longer than 0");
        }
        parse_secret(self.secret.as_deref()).map(|_| ())
    }
}

/// How a client retries: exponential back-off between attempts, up to a deadline.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    /// Wait after the first failure.
    pub initial: Duration,
    /// Longest wait between attempts.
    pub max: Duration,
    /// Give up after this long (`None`: never).
    pub deadline: Option<Duration>,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(3),
            deadline: Some(Duration::from_secs(30)),
        }
    }
}

/// The geometry agreed after HELLO.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Layout {
    pub s2m: u16,
    pub m2s: u16,
    pub log2: u8,
    pub buffer_size: u32,
}

impl Layout {
    /// Our wishes, capped by the server's HELLO limits.
    pub fn negotiate(cfg: &ClientConfig, hello: &Hello) -> Result<Layout, ProtocolError> {
        if !(hello.min_version..=hello.max_version).contains(&msg::VERSION) {
            return Err(ProtocolError::VersionRange {
                min: hello.min_version,
                max: hello.max_version,
            });
        }
        let cap = |wish: u16, max_index: u16| wish.min(max_index.saturating_add(1));
        Ok(Layout {
            s2m: cap(cfg.tx_queues, hello.max_s2m_ring),
            m2s: cap(cfg.rx_queues, hello.max_m2s_ring),
            log2: cfg.log2_ring_size.min(hello.max_log2_ring_size),
            buffer_size: cfg.buffer_size,
        })
    }

    fn rings(&self) -> usize {
        usize::from(self.s2m) + usize::from(self.m2s)
    }

    /// Offset of ring `n` (S2M rings first, then M2S).
    pub fn ring_offset(&self, n: usize) -> usize {
        n * ring_bytes(self.log2)
    }

    /// Offset of the first buffer of ring `n`.
    pub fn buffers_offset(&self, n: usize) -> usize {
        self.ring_offset(self.rings()) + n * ((self.buffer_size as usize) << self.log2)
    }

    /// Total size of the region.
    pub fn region_size(&self) -> usize {
        self.buffers_offset(self.rings())
    }
}

/// The memory and eventfds a client builds before INIT.
struct Build {
    layout: Layout,
    regions: Arc<[Region]>,
    eventfds: Vec<EventFd>,
}

impl Build {
    fn new(layout: Layout, name: &str) -> Result<Build, Error> {
        if layout.region_size() > u32::MAX as usize {
            return Err(Error::Config {
                field: "buffer_size",
                reason: "the region would exceed 4 GiB".into(),
            });
        }
        let region = Region::create(name, layout.region_size()).map_err(Error::Memory)?;
        let regions: Arc<[Region]> = Arc::from(vec![region]);
        let mut eventfds = Vec::with_capacity(layout.rings());
        for n in 0..layout.rings() {
            Ring::new(
                regions.clone(),
                0,
                layout.ring_offset(n) as u32,
                layout.log2,
            )
            .expect("INVARIANT: the layout fits its region")
            .init();
            eventfds.push(EventFd::new().map_err(Error::Memory)?);
        }
        Ok(Build {
            layout,
            regions,
            eventfds,
        })
    }

    /// The ADD_RING of ring `n`.
    fn add_ring(&self, n: usize) -> AddRing {
        let s2m = n < usize::from(self.layout.s2m);
        let index = if s2m {
            n
        } else {
            n - usize::from(self.layout.s2m)
        };
        AddRing {
            flags: if s2m { RING_FLAG_S2M } else { 0 },
            index: index as u16,
            region: 0,
            offset: self.layout.ring_offset(n) as u32,
            log2_ring_size: self.layout.log2,
            private_hdr_size: 0,
        }
    }

    fn into_queues(
        self,
        link: &Arc<LinkState>,
        interrupt_mode: bool,
    ) -> (Vec<RxQueue>, Vec<TxQueue>) {
        let layout = self.layout;
        let mut tx = Vec::new();
        let mut rx = Vec::new();
        for (n, eventfd) in self.eventfds.into_iter().enumerate() {
            let ring = Ring::new(
                self.regions.clone(),
                0,
                layout.ring_offset(n) as u32,
                layout.log2,
            )
            .expect("INVARIANT: the layout fits its region");
            let own = OwnBuffers {
                region: 0,
                base: layout.buffers_offset(n),
                size: layout.buffer_size,
            };
            if n < usize::from(layout.s2m) {
                tx.push(TxQueue::new(
                    n as u16,
                    ring,
                    self.regions.clone(),
                    eventfd,
                    link.clone(),
                    Some(own),
                ));
            } else {
                let index = (n - usize::from(layout.s2m)) as u16;
                let mut q = RxQueue::new(
                    index,
                    ring,
                    self.regions.clone(),
                    eventfd,
                    link.clone(),
                    Some(own),
                );
                q.set_interrupt_mode(interrupt_mode);
                rx.push(q);
            }
        }
        (rx, tx)
    }
}

impl Connection {
    /// Connects as the client (slave) to the server at `addr` (a path, or `@name` for an abstract
    /// socket), builds the shared memory and completes the handshake. One attempt.
    pub async fn connect(addr: impl AsRef<Path>, cfg: &ClientConfig) -> Result<Connection, Error> {
        cfg.validate()?;
        let addr = SocketAddr::parse(addr);
        let sock = ControlSocket::connect(&addr)
            .await
            .map_err(|source| Error::Socket {
                addr: addr.to_string(),
                source,
            })?;
        let channel = Channel::new(sock, cfg.handshake_timeout);
        match handshake(&channel, cfg).await {
            Ok((info, build)) => {
                let link = Arc::new(LinkState::default());
                let (rx, tx) = build.into_queues(&link, cfg.interrupt_mode);
                tracing::info!(id = info.id, peer = %info.peer_app_name, rx = rx.len(), tx = tx.len(), "memif connected (client)");
                Ok(Connection {
                    info,
                    control: Control::new(channel, link),
                    rx,
                    tx,
                })
            }
            Err(e) => Err(channel.fail(e).await),
        }
    }

    /// Connects like [`Connection::connect`], retrying with back-off while the server is absent or
    /// refuses, until `retry.deadline`. Configuration errors are not retried.
    pub async fn connect_with_retry(
        addr: impl AsRef<Path>,
        cfg: &ClientConfig,
        retry: Retry,
    ) -> Result<Connection, Error> {
        let start = Instant::now();
        let mut wait = retry.initial;
        loop {
            match Connection::connect(addr.as_ref(), cfg).await {
                Ok(conn) => return Ok(conn),
                Err(e) if !e.is_transient() => return Err(e),
                Err(e) => {
                    let elapsed = start.elapsed();
                    if retry.deadline.is_some_and(|d| elapsed + wait > d) {
                        return Err(e);
                    }
                    tracing::debug!(error = %e, retry_in = ?wait, "memif: connect failed, retrying");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(retry.max);
                }
            }
        }
    }
}

/// Waits for `step`'s ACK (or the final CONNECTED); a DISCONNECT is the server's refusal.
async fn expect(
    channel: &Channel,
    step: &'static str,
    want_connected: bool,
) -> Result<Message, Error> {
    let (msg, _fd) = channel.recv_step(step).await?;
    match msg {
        Message::Ack if !want_connected => Ok(msg),
        Message::Connected(_) if want_connected => Ok(msg),
        Message::Disconnect(d) => Err(Error::Refused {
            code: d.code,
            reason: d.reason.to_string_lossy(),
        }),
        other => Err(ProtocolError::Unexpected {
            got: other.name(),
            expected: step,
        }
        .into()),
    }
}

async fn handshake(
    channel: &Channel,
    cfg: &ClientConfig,
) -> Result<(ConnectionInfo, Build), Error> {
    let hello = match channel.recv_step("HELLO").await?.0 {
        Message::Hello(hello) => hello,
        Message::Disconnect(d) => {
            return Err(Error::Refused {
                code: d.code,
                reason: d.reason.to_string_lossy(),
            });
        }
        other => {
            return Err(ProtocolError::Unexpected {
                got: other.name(),
                expected: "HELLO",
            }
            .into());
        }
    };
    let layout = Layout::negotiate(cfg, &hello)?;
    if layout.s2m < cfg.tx_queues || layout.m2s < cfg.rx_queues || layout.log2 < cfg.log2_ring_size
    {
        tracing::warn!(
            ?layout,
            "memif: the server's limits reduce the requested geometry"
        );
    }
    let build = Build::new(layout, &cfg.if_name)?;
    let init = Init {
        version: msg::VERSION,
        id: cfg.id,
        mode: msg::MODE_ETHERNET,
        secret: parse_secret(cfg.secret.as_deref())?,
        name: Name::new(&cfg.app_name),
    };
    channel.send(&Message::Init(init)).await?;
    expect(channel, "ACK of INIT", false).await?;
    let region = &build.regions[0];
    channel
        .send_with_fd(
            &Message::AddRegion(AddRegion {
                index: 0,
                size: region.len() as u64,
            }),
            region.fd(),
        )
        .await?;
    expect(channel, "ACK of ADD_REGION", false).await?;
    for (n, eventfd) in build.eventfds.iter().enumerate() {
        channel
            .send_with_fd(
                &Message::AddRing(build.add_ring(n)),
                Some(std::os::fd::AsFd::as_fd(eventfd)),
            )
            .await?;
        expect(channel, "ACK of ADD_RING", false).await?;
    }
    channel
        .send(&Message::Connect(Name::new(&cfg.if_name)))
        .await?;
    let Message::Connected(if_name) = expect(channel, "CONNECTED", true).await? else {
        unreachable!("expect returns CONNECTED when asked for it")
    };
    let info = ConnectionInfo {
        role: Role::Client,
        id: cfg.id,
        peer_app_name: hello.name.to_string_lossy(),
        peer_if_name: if_name.to_string_lossy(),
        regions: 1,
        log2_ring_size: layout.log2,
    };
    Ok((info, build))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_layout_matches_dpdk_and_vpp() {
        let hello = Hello {
            name: Name::new("DPDK 22.11.11"),
            min_version: msg::VERSION,
            max_version: msg::VERSION,
            max_region: 255,
            max_m2s_ring: 255,
            max_s2m_ring: 255,
            max_log2_ring_size: 14,
        };
        let layout = Layout::negotiate(&ClientConfig::default(), &hello).unwrap();
        assert_eq!(layout.region_size(), 4_227_328);
        assert_eq!(layout.ring_offset(1), 16_512);
        assert_eq!(layout.buffers_offset(0), 33_024);
        // Server limits cap the wishes.
        let small = Hello {
            max_m2s_ring: 0,
            max_s2m_ring: 1,
            max_log2_ring_size: 8,
            ..hello
        };
        let cfg = ClientConfig {
            rx_queues: 4,
            tx_queues: 4,
            ..ClientConfig::default()
        };
        let l = Layout::negotiate(&cfg, &small).unwrap();
        assert_eq!((l.m2s, l.s2m, l.log2), (1, 2, 8));
        let old = Hello {
            min_version: 0x100,
            max_version: 0x100,
            ..hello
        };
        assert!(Layout::negotiate(&cfg, &old).is_err());
    }

    #[test]
    fn bad_configs_are_refused_with_the_field_named() {
        let bad = [
            ClientConfig {
                secret: Some("x".repeat(24)),
                ..ClientConfig::default()
            },
            ClientConfig {
                rx_queues: 0,
                ..ClientConfig::default()
            },
            ClientConfig {
                log2_ring_size: 15,
                ..ClientConfig::default()
            },
            ClientConfig {
                buffer_size: 100,
                ..ClientConfig::default()
            },
        ];
        for cfg in bad {
            let err = cfg.validate().unwrap_err();
            assert!(matches!(err, Error::Config { .. }), "{err}");
            assert!(!err.is_transient());
        }
        let cfg = ClientConfig {
            secret: Some("x".repeat(24)),
            ..ClientConfig::default()
        };
        let text = cfg.validate().unwrap_err().to_string();
        assert!(text.contains("secret") && !text.contains("xxxx"), "{text}");
    }
}
