//! The packet path of one tunnel: memif frames <-> the l2 adapter <-> gotatun's IP side.
//!
//! ```text
//! memif RX queue --rx_burst--> Adapter::on_frame --Deliver--> MemifIpRecv::recv --> device (encrypt)
//!                                   | Reply / learned / install          ^
//!                                   v                                    |
//! memif TX queue <--tx_burst-- Link::transmit <-- MemifIpSend::send <-- device (decrypt)
//! ```
//!
//! Ownership: the RX queue sits in [`RxShared`]; the device reads it itself in
//! [`MemifIpRecv::recv`], so a frame is received straight into the pool packet the device encrypts,
//! with no task or channel in between, and ARP/NDP are answered on the way. While the device does not
//! read (it has no private key yet), the [`RxPump`] reads it instead. The TX queue sits in [`Link`]
//! behind a `Mutex`, because decrypted packets ([`MemifIpSend`]), ARP/NDP replies and the neighbour
//! timers all transmit; each holds it for one burst, never across an `.await`. On every memif
//! (re)connection the runtime hands the new queues over with [`Link::attach`]; while the memif is down,
//! frames to send are dropped and counted, and the WireGuard device with its sessions carries on.
//!
//! Under overload the device reads no faster than it encrypts: the ring fills and VPP drops at its
//! memif output, which costs this process nothing.
//!
//! Per packet nothing is allocated while the pool has buffers: frames land in pool packets, and
//! frames to send are assembled in a reused scratch buffer.

use std::io;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use gotatun::packet::{Ip, Packet, PacketBufPool};
use tokio::sync::{Notify, mpsc, watch};

use crate::config::Announce;
use crate::l2::{Adapter, RxAction, TxAction};
use crate::memif::{Interrupt, QueueCounters, RxBuffer, RxQueue, TxQueue};
use crate::vpp;
use crate::wg::{BURST, IpRecv, IpSend, MtuWatcher};

/// The largest frame handled, chained or not (a 9000-byte jumbo IP packet plus headers).
pub const MAX_FRAME: usize = 9216;
/// Bursts the RX pump reads in a row before it yields its thread: one flooded tunnel must not starve the
/// others of the process (the controller runs them all on one runtime).
const BURSTS_PER_TURN: u32 = 16;
/// Packet buffers kept for frames from memif. The engine seals a burst before it reads the next, so
/// a burst's buffers are back before they are needed again; only packets waiting for a handshake (at
/// most 256 per peer, in gotatun's queue) are held longer, and then more are allocated. The pool is
/// allocated and zeroed up front, so it is resident: 256 × 9216 bytes, 2.3 MiB per tunnel.
const RX_POOL: usize = 256;
const ETHERNET_HEADER: usize = 14;

/// The tunnel's shared packet-path state: the adapter, the TX queue and the neighbour installer.
pub struct Link {
    adapter: Arc<Adapter>,
    tx: Mutex<Option<TxQueue>>,
    rx_handover: mpsc::Sender<RxQueue>,
    neighbours: Mutex<Option<vpp::NeighbourHandle>>,
    memif: Mutex<Option<MemifCounters>>,
    counters: LinkCounters,
    /// The tunnel MTU as the device sees it (gotatun caps its padding at it).
    mtu: watch::Sender<u16>,
}

/// The live counters of the current memif connection's queues.
#[derive(Debug, Clone)]
pub struct MemifCounters {
    /// Frames from VPP.
    pub rx: Arc<QueueCounters>,
    /// Frames to VPP.
    pub tx: Arc<QueueCounters>,
}

/// Counters of the packet path that neither memif nor the adapter keep.
#[derive(Debug, Default)]
pub struct LinkCounters {
    /// Frames not sent because the memif was down or its ring was full.
    pub tx_dropped: AtomicU64,
    /// Packets from the device larger than [`MAX_FRAME`] allows.
    pub tx_too_big: AtomicU64,
    /// Frames the adapter delivered that were not IPv4 or IPv6 after all.
    pub rx_not_ip: AtomicU64,
    /// Packets for the device dropped because it had not read for [`DEVICE_GRACE`] (no private key
    /// yet, or stalled).
    pub rx_device_busy: AtomicU64,
}

impl LinkCounters {
    /// Each drop counter with its metrics label.
    pub fn drops(&self) -> [(&'static str, u64); 4] {
        [
            ("not_sent", &self.tx_dropped),
            ("larger_than_a_frame", &self.tx_too_big),
            ("not_ip", &self.rx_not_ip),
            ("device_busy", &self.rx_device_busy),
        ]
        .map(|(reason, counter)| (reason, counter.load(Ordering::Relaxed)))
    }
}

impl Link {
    /// A link for `adapter`, with the device's two ends and the RX pump to spawn; attach memif queues
    /// with [`Link::attach`]. The pump runs until it is aborted.
    pub fn new(adapter: Arc<Adapter>) -> (Arc<Link>, MemifIpSend, MemifIpRecv, RxPump) {
        let (rx_handover, rx_queues) = mpsc::channel(2);
        let (mtu, mtu_watch) = watch::channel(adapter.mtu());
        let link = Arc::new(Link {
            adapter,
            tx: Mutex::new(None),
            rx_handover,
            neighbours: Mutex::new(None),
            memif: Mutex::new(None),
            counters: LinkCounters::default(),
            mtu,
        });
        let send = MemifIpSend::new(Arc::clone(&link));
        let pool = PacketBufPool::new(RX_POOL);
        let bufs = (0..BURST)
            .map(|_| RxBuf {
                packet: pool.get(),
                len: 0,
            })
            .collect();
        let shared = Arc::new(RxShared {
            side: tokio::sync::Mutex::new(RxSide {
                link: Arc::clone(&link),
                queues: rx_queues,
                rx: None,
                bufs,
                pool,
                scratch: vec![0; MAX_FRAME],
            }),
            device_wants: Notify::new(),
            device_read_at: AtomicU64::new(0),
            epoch: Instant::now(),
        });
        let recv = MemifIpRecv {
            shared: Arc::clone(&shared),
            batch: Vec::with_capacity(BURST),
            mtu: mtu_watch,
        };
        let pump = RxPump { shared };
        (link, send, recv, pump)
    }

    /// The l2 adapter (counters and neighbours for status).
    pub fn adapter(&self) -> &Adapter {
        &self.adapter
    }

    /// Sets the tunnel MTU, for the adapter (ICMP "too big" above it) and the device.
    pub fn set_mtu(&self, mtu: u16) {
        self.adapter.set_mtu(mtu);
        self.mtu.send_replace(mtu);
    }

    /// The packet path's own counters.
    pub fn counters(&self) -> &LinkCounters {
        &self.counters
    }

    /// Every nonzero drop count of the tunnel's life, as `reason=count` pairs (the l2 adapter's and
    /// the packet path's own), for the line logged when the tunnel stops; empty when nothing was lost.
    pub fn drop_summary(&self) -> String {
        let l2 = self.adapter.counters();
        l2.drops()
            .map(|(reason, count)| (reason.name(), count))
            .chain(self.counters.drops())
            .filter(|(_, count)| *count > 0)
            .map(|(reason, count)| format!("{reason}={count}"))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Takes the queues of a new memif connection into service (the first queue pair is used).
    pub async fn attach(&self, rx: RxQueue, tx: TxQueue) {
        *self.memif.lock().unwrap_or_else(PoisonError::into_inner) = Some(MemifCounters {
            rx: rx.counters(),
            tx: tx.counters(),
        });
        *self.lock_tx() = Some(tx);
        // The receiver only goes away with the device, when nothing is left to receive.
        let _ = self.rx_handover.send(rx).await;
    }

    /// The counters of the current (or last) memif connection's queues.
    pub fn memif_counters(&self) -> Option<MemifCounters> {
        self.memif
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Drops the TX queue of a connection that went down.
    pub fn detach(&self) {
        *self.lock_tx() = None;
    }

    /// Where neighbour installs go (`None` when VPP is not managed or installs nothing).
    pub fn set_neighbour_installer(&self, handle: Option<vpp::NeighbourHandle>) {
        *self
            .neighbours
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = handle;
    }

    /// Sends one frame; false when it was dropped (memif down or ring full), which is counted.
    pub fn transmit(&self, frame: &[u8]) -> bool {
        self.transmit_burst(&[frame]) == 1
    }

    /// Sends frames in one burst; those not taken (memif down or ring full) are dropped and counted.
    pub fn transmit_burst(&self, frames: &[&[u8]]) -> usize {
        let sent = match self.lock_tx().as_mut() {
            Some(tx) => tx.tx_burst(frames),
            None => 0,
        };
        let lost = (frames.len() - sent) as u64;
        if lost > 0 {
            self.counters.tx_dropped.fetch_add(lost, Ordering::Relaxed);
        }
        sent
    }

    /// Sends what the neighbour cache has due (flushed packets, solicitations, probes), using
    /// `scratch` to assemble each frame.
    pub fn flush_neighbour_work(&self, now: Instant, scratch: &mut [u8]) {
        while let Some(frame) = self.adapter.poll_transmit(now, scratch) {
            self.transmit(&scratch[..frame.len]);
        }
    }

    /// Free slots of the memif TX ring now; 0 while no memif is attached. VPP, the memif client, hands
    /// the ring's slots over only once it has filled its receive ring, which may be just after the
    /// connection is up.
    pub fn tx_free_slots(&self) -> u16 {
        self.lock_tx().as_ref().map_or(0, |tx| tx.free_slots())
    }

    /// Sends the startup announcement for every claimed address of the families `which` names:
    /// gratuitous ARP for IPv4, unsolicited NA for IPv6.
    pub fn announce(&self, which: Announce) -> usize {
        let mut frame = [0u8; 128];
        let mut sent = 0;
        let wanted = |addr: &IpAddr| match addr {
            IpAddr::V4(_) => which.arp,
            IpAddr::V6(_) => which.ndp,
        };
        for addr in self.adapter.announcements().filter(wanted) {
            if let Some(announcement) = self.adapter.write_announcement(addr, &mut frame) {
                sent += usize::from(self.transmit(&frame[..announcement.len]));
                if let Some(addr) = announcement.install {
                    self.install_neighbour(addr);
                }
            }
        }
        sent
    }

    fn install_neighbour(&self, addr: IpAddr) {
        let guard = self
            .neighbours
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(handle) = guard.as_ref() {
            handle.install(addr, self.adapter.config().self_mac);
        }
    }

    fn lock_tx(&self) -> std::sync::MutexGuard<'_, Option<TxQueue>> {
        self.tx.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The memif RX side of a link: the current queue with its interrupt, and the packet buffers frames
/// land in. Whoever holds it reads the ring: the device through [`MemifIpRecv`] while it reads, the
/// [`RxPump`] otherwise (see [`RxShared`]).
struct RxSide {
    link: Arc<Link>,
    queues: mpsc::Receiver<RxQueue>,
    rx: Option<(RxQueue, Interrupt)>,
    /// One burst of buffers from `pool`: a frame is received straight into the packet that the device
    /// then encrypts, so it is copied once, out of the ring.
    bufs: Vec<RxBuf>,
    pool: PacketBufPool<MAX_FRAME>,
    scratch: Vec<u8>,
}

/// A pool packet that memif receives a frame into.
struct RxBuf {
    packet: Packet,
    len: usize,
}

impl RxBuffer for RxBuf {
    fn rx_space(&mut self) -> &mut [u8] {
        self.packet.buf_mut()
    }
    fn set_rx_len(&mut self, len: usize) {
        self.len = len;
    }
}

impl RxSide {
    /// Waits for a usable queue; false once the link is gone for good.
    async fn usable(&mut self) -> bool {
        // A newer connection replaces the current one even before its loss was noticed here.
        if let Ok(queue) = self.queues.try_recv() {
            self.rx = with_interrupt(queue);
        }
        if self
            .rx
            .as_ref()
            .is_some_and(|(queue, _)| queue.is_connected())
        {
            return true;
        }
        self.rx = None;
        match self.queues.recv().await {
            Some(queue) => {
                self.rx = with_interrupt(queue);
                true
            }
            None => false,
        }
    }

    /// Waits until the ring signals, or a new connection is handed over (after an empty burst).
    async fn wait(&mut self) {
        let Some((_, interrupt)) = self.rx.as_mut() else {
            return;
        };
        tokio::select! {
            woken = interrupt.wait() => if woken.is_err() { self.rx = None },
            next = self.queues.recv() => if let Some(queue) = next { self.rx = with_interrupt(queue) },
        }
    }

    /// Reads one burst and classifies it: replies are sent at once; IP packets go to `device`, or are
    /// dropped and counted when it is `None` (the device is not reading). Returns the frames read.
    fn burst(&mut self, mut device: Option<&mut Vec<Packet<Ip>>>) -> usize {
        let Some((queue, _)) = self.rx.as_mut() else {
            return 0;
        };
        let n = queue.rx_burst(&mut self.bufs);
        let now = Instant::now();
        let link = &self.link;
        let mut neighbour_work = false;
        for buf in &mut self.bufs[..n] {
            let outcome = link
                .adapter
                .on_frame(&buf.packet[..buf.len], now, &mut self.scratch);
            match outcome.action {
                RxAction::Deliver(range) => match device.as_deref_mut() {
                    Some(device) => {
                        let fresh = RxBuf {
                            packet: self.pool.get(),
                            len: 0,
                        };
                        let mut packet = std::mem::replace(buf, fresh).packet;
                        // The IP packet in place: the frame's tail from the header on (the pool's
                        // buffers are shared, so splitting allocates nothing), cut to its length.
                        let bytes = packet.buf_mut();
                        let ip = bytes.split_off(range.start);
                        *bytes = ip;
                        packet.truncate(range.len());
                        match packet.try_into_ip() {
                            Ok(ip) => device.push(ip),
                            Err(_) => {
                                link.counters.rx_not_ip.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                    None => {
                        link.counters.rx_device_busy.fetch_add(1, Ordering::Relaxed);
                    }
                },
                RxAction::Reply(len) => {
                    link.transmit(&self.scratch[..len]);
                }
                RxAction::Consumed | RxAction::Dropped(_) => {}
            }
            neighbour_work |= outcome.learned.is_some();
            if let Some(addr) = outcome.install {
                link.install_neighbour(addr);
            }
        }
        if neighbour_work {
            link.flush_neighbour_work(now, &mut self.scratch);
        }
        n
    }
}

/// The RX side with what decides who reads it. The device reads the ring itself, so a frame goes
/// from memif into the device's packet with no task or channel in between; ARP and NDP are answered
/// on the way. While the device does not read (gotatun reads its IP side only once it has a private
/// key), the [`RxPump`] does, so that ARP and NDP are answered all the same.
struct RxShared {
    side: tokio::sync::Mutex<RxSide>,
    /// Signalled when the device wants the side: a pump holding it lets go at once.
    device_wants: Notify,
    /// When the device last read, in milliseconds since `epoch`.
    device_read_at: AtomicU64,
    epoch: Instant,
}

/// How long the ring must go unread by the device before the pump reads it.
const DEVICE_GRACE: Duration = Duration::from_millis(50);

impl RxShared {
    fn mark_device_read(&self) {
        let now = self.epoch.elapsed().as_millis() as u64;
        self.device_read_at.store(now, Ordering::Relaxed);
    }

    /// How long ago the device last read, if that is less than [`DEVICE_GRACE`].
    fn device_recently_read(&self) -> Option<Duration> {
        let at = Duration::from_millis(self.device_read_at.load(Ordering::Relaxed));
        let ago = self.epoch.elapsed().saturating_sub(at);
        (ago < DEVICE_GRACE).then_some(ago)
    }
}

/// Reads the memif RX ring while the WireGuard device does not, so that ARP and NDP are answered
/// before there is a key (IP packets are dropped and counted then). Idle, it waits on the ring's
/// interrupt or on the device's lock and costs no CPU.
pub struct RxPump {
    shared: Arc<RxShared>,
}

impl RxPump {
    /// Runs until the link is dropped.
    pub async fn run(self) {
        let shared = &self.shared;
        let mut bursts = 0u32;
        loop {
            if let Some(ago) = shared.device_recently_read() {
                tokio::time::sleep(DEVICE_GRACE - ago).await;
                continue;
            }
            let mut side = shared.side.lock().await;
            // Read only while the device leaves the ring alone; let go as soon as it wants it.
            while shared.device_recently_read().is_none() {
                if !side.usable().await {
                    return;
                }
                if side.burst(None) == 0 {
                    tokio::select! {
                        () = side.wait() => {}
                        () = shared.device_wants.notified() => break,
                    }
                } else {
                    bursts += 1;
                    if bursts >= BURSTS_PER_TURN {
                        bursts = 0;
                        tokio::task::yield_now().await;
                    }
                }
            }
        }
    }
}

/// The device's source of IP packets: it reads the memif RX ring itself, a burst at a time.
pub struct MemifIpRecv {
    shared: Arc<RxShared>,
    batch: Vec<Packet<Ip>>,
    mtu: watch::Receiver<u16>,
}

/// The queue with its interrupt waiter; `None` (the connection is dropped here, and the next one is
/// awaited) when the eventfd cannot be watched, since an error returned to the device would stop it.
fn with_interrupt(mut queue: RxQueue) -> Option<(RxQueue, Interrupt)> {
    // Never masked again: VPP reads the ring's flags after publishing with no fence between, so
    // unmasking while it sends can lose the signal for its last burst (a frame left in the ring
    // until the next one arrives). A signal that comes while we are busy is drained at our next wait.
    queue.set_interrupt_mode(true);
    match queue.interrupt() {
        Ok(interrupt) => Some((queue, interrupt)),
        Err(err) => {
            tracing::error!(error = %err, "memif: cannot watch the RX interrupt; waiting for the next connection");
            None
        }
    }
}

impl IpRecv for MemifIpRecv {
    async fn recv<'a>(
        &'a mut self,
        _pool: &mut PacketBufPool,
    ) -> io::Result<impl Iterator<Item = Packet<Ip>> + Send + 'a> {
        self.batch.clear();
        let shared = &self.shared;
        shared.mark_device_read();
        shared.device_wants.notify_one();
        let mut side = shared.side.lock().await;
        let mut bursts = 0u32;
        loop {
            shared.mark_device_read();
            if !side.usable().await {
                return Err(io::Error::new(
                    io::ErrorKind::BrokenPipe,
                    "the tunnel's memif link is closed",
                ));
            }
            if side.burst(Some(&mut self.batch)) == 0 {
                side.wait().await;
                continue;
            }
            if !self.batch.is_empty() {
                shared.mark_device_read();
                return Ok(self.batch.drain(..));
            }
            // Bursts of replies only (an ARP or NDP flood): other tunnels get their turn too.
            bursts += 1;
            if bursts >= BURSTS_PER_TURN {
                bursts = 0;
                tokio::task::yield_now().await;
            }
        }
    }

    fn mtu(&self) -> MtuWatcher {
        MtuWatcher::from(self.mtu.clone())
    }
}

/// The device's sink of decrypted IP packets: framed by the adapter straight into a burst of frames,
/// sent to VPP together on `flush` (one ring publish, at most one interrupt).
pub struct MemifIpSend {
    link: Arc<Link>,
    /// [`BURST`] frame buffers of [`MAX_FRAME`] bytes, back to back; one allocation, whose pages
    /// are touched only as far as frames reach.
    frames: Vec<u8>,
    lens: [usize; BURST],
    pending: usize,
    /// Where frames the neighbour cache releases are assembled.
    scratch: Vec<u8>,
}

impl MemifIpSend {
    fn new(link: Arc<Link>) -> MemifIpSend {
        MemifIpSend {
            link,
            frames: vec![0; BURST * MAX_FRAME],
            lens: [0; BURST],
            pending: 0,
            scratch: vec![0; MAX_FRAME],
        }
    }

    /// Sends the frames assembled so far, in one burst.
    fn send_pending(&mut self) {
        if self.pending == 0 {
            return;
        }
        let mut frames: [&[u8]; BURST] = [&[]; BURST];
        for (i, frame) in frames[..self.pending].iter_mut().enumerate() {
            let start = i * MAX_FRAME;
            *frame = &self.frames[start..start + self.lens[i]];
        }
        self.link.transmit_burst(&frames[..self.pending]);
        self.pending = 0;
    }
}

impl IpSend for MemifIpSend {
    async fn send(&mut self, packet: Packet<Ip>) -> io::Result<()> {
        let packet = packet.into_bytes();
        let bytes: &[u8] = packet.as_ref();
        let now = Instant::now();
        match self.link.adapter.on_packet(bytes, now) {
            TxAction::Send(header) => {
                let len = ETHERNET_HEADER + bytes.len();
                if len > MAX_FRAME {
                    self.link
                        .counters
                        .tx_too_big
                        .fetch_add(1, Ordering::Relaxed);
                    return Ok(());
                }
                let start = self.pending * MAX_FRAME;
                let frame = &mut self.frames[start..start + len];
                frame[..ETHERNET_HEADER].copy_from_slice(&header);
                frame[ETHERNET_HEADER..].copy_from_slice(bytes);
                self.lens[self.pending] = len;
                self.pending += 1;
                if self.pending == BURST {
                    self.send_pending();
                }
            }
            TxAction::Queued => {
                // What was framed before goes first, then whatever the neighbour cache releases.
                self.send_pending();
                self.link.flush_neighbour_work(now, &mut self.scratch);
            }
            TxAction::Dropped(_) => {}
        }
        Ok(())
    }

    async fn flush(&mut self) -> io::Result<()> {
        self.send_pending();
        Ok(())
    }
}
