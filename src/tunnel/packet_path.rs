//! The packet path of one tunnel: memif frames <-> the l2 adapter <-> gotatun's IP side.
//!
//! ```text
//! memif RX queue --rx_burst--> Adapter::on_frame --Deliver--> MemifIpRecv::recv --> device (encrypt)
//!                                   | Reply / learned / install          ^
//!                                   v                                    |
//! memif TX queue <--tx_burst-- Link::transmit <-- MemifIpSend::send <-- device (decrypt)
//! ```
//!
//! Ownership: the RX queue belongs to [`MemifIpRecv`] alone (gotatun calls it from one task); the TX
//! queue sits in [`Link`] behind a `Mutex`, because decrypted packets ([`MemifIpSend`]), ARP/NDP replies
//! (the RX path) and the neighbour timers all transmit. Each holds it for one burst, never across an
//! `.await`. On every memif (re)connection the runtime hands the new queues over with
//! [`Link::attach`]; while the memif is down, frames to send are dropped and counted, and the WireGuard
//! device with its sessions carries on.
//!
//! Per packet nothing is allocated: frames land in buffers reused from burst to burst, packets for the
//! device come from gotatun's pool, and frames to send are assembled in a reused scratch buffer.

use std::io;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use gotatun::packet::{Ip, Packet, PacketBufPool};
use gotatun::tun::{IpRecv, IpSend, MtuWatcher};
use tokio::sync::{mpsc, watch};

use crate::l2::{Adapter, RxAction, TxAction};
use crate::memif::{Frame, Interrupt, QueueCounters, RxQueue, TxQueue};
use crate::vpp;

/// Frames moved per memif burst.
pub const BURST: usize = 64;
/// The largest frame handled, chained or not (a 9000-byte jumbo IP packet plus headers).
pub const MAX_FRAME: usize = 9216;
/// Bursts the RX pump reads in a row before it yields its thread: one flooded tunnel must not starve the
/// others of the process (the controller runs them all on one runtime).
const BURSTS_PER_TURN: u32 = 16;
/// Packets waiting between the RX pump and the device (one memif ring's worth).
pub const DEVICE_QUEUE: usize = 1024;
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
    /// Packets for the device dropped because it was not reading (no private key yet, or overloaded).
    pub rx_device_busy: AtomicU64,
}

impl LinkCounters {
    /// Each drop counter with its metrics label.
    pub fn drops(&self) -> [(&'static str, u64); 4] {
        [
            ("not_sent", &self.tx_dropped),
            ("too_big", &self.tx_too_big),
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
        let send = MemifIpSend {
            link: Arc::clone(&link),
            frame: vec![0; MAX_FRAME],
        };
        let (to_device, packets) = mpsc::channel(DEVICE_QUEUE);
        let recv = MemifIpRecv {
            packets,
            batch: Vec::with_capacity(BURST),
            mtu: mtu_watch,
        };
        let pump = RxPump {
            link: Arc::clone(&link),
            queues: rx_queues,
            rx: None,
            frames: Frame::batch(BURST, MAX_FRAME),
            scratch: vec![0; MAX_FRAME],
            pool: PacketBufPool::new(DEVICE_QUEUE + BURST),
            to_device,
        };
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
        let sent = match self.lock_tx().as_mut() {
            Some(tx) => tx.tx_burst(&[frame]) == 1,
            None => false,
        };
        if !sent {
            self.counters.tx_dropped.fetch_add(1, Ordering::Relaxed);
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

    /// Sends the startup announcement (gratuitous ARP / unsolicited NA) for every claimed address.
    pub fn announce(&self) -> usize {
        let mut frame = [0u8; 128];
        let mut sent = 0;
        for addr in self.adapter.announcements() {
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

/// Drains the memif RX ring in its own task, so that ARP and NDP are answered whether or not the
/// WireGuard device reads (gotatun reads its IP side only once it has a private key): replies go out at
/// once, IP packets go to [`MemifIpRecv`] through a bounded channel (dropped and counted when full).
pub struct RxPump {
    link: Arc<Link>,
    queues: mpsc::Receiver<RxQueue>,
    rx: Option<(RxQueue, Interrupt)>,
    frames: Vec<Frame>,
    scratch: Vec<u8>,
    pool: PacketBufPool,
    to_device: mpsc::Sender<Packet<Ip>>,
}

impl RxPump {
    /// Runs until the link is dropped. Busy rings are drained burst after burst without sleeping; an
    /// empty ring waits on its interrupt eventfd, so an idle tunnel costs no CPU.
    pub async fn run(mut self) {
        let mut bursts = 0u32;
        loop {
            if !self.usable_queue().await {
                return;
            }
            let Some((queue, interrupt)) = self.rx.as_mut() else {
                continue;
            };
            let n = queue.rx_burst(&mut self.frames);
            if n == 0 {
                tokio::select! {
                    woken = interrupt.wait() => if woken.is_err() { self.rx = None },
                    next = self.queues.recv() => match next {
                        Some(queue) => self.rx = with_interrupt(queue),
                        None => return,
                    },
                }
                continue;
            }
            self.classify(n);
            bursts += 1;
            // Overload (the device queue is full): let the device, which may share this thread,
            // encrypt what it was given rather than classify and drop burst after burst ahead of it.
            if self.to_device.capacity() == 0 || bursts >= BURSTS_PER_TURN {
                bursts = 0;
                tokio::task::yield_now().await;
            }
        }
    }

    /// Waits for the next RX queue when none is usable; false once the link is gone for good.
    async fn usable_queue(&mut self) -> bool {
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

    /// Classifies `frames[..n]`: replies are sent, IP packets handed to the device.
    fn classify(&mut self, n: usize) {
        let now = Instant::now();
        let link = &self.link;
        let mut neighbour_work = false;
        for frame in &self.frames[..n] {
            let frame = frame.as_slice();
            let outcome = link.adapter.on_frame(frame, now, &mut self.scratch);
            match outcome.action {
                RxAction::Deliver(range) => {
                    // Room first: a packet the device has no room for is dropped before any copy, so
                    // that overload costs a classification per frame, not a copy and a pool round trip.
                    let Ok(room) = self.to_device.try_reserve() else {
                        link.counters.rx_device_busy.fetch_add(1, Ordering::Relaxed);
                        continue;
                    };
                    let mut packet = self.pool.get();
                    let buf = packet.buf_mut();
                    buf.clear();
                    buf.extend_from_slice(&frame[range]);
                    match packet.try_into_ip() {
                        Ok(ip) => room.send(ip),
                        Err(_) => {
                            link.counters.rx_not_ip.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
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
    }
}

/// The device's source of IP packets: what the [`RxPump`] delivered, in batches.
pub struct MemifIpRecv {
    packets: mpsc::Receiver<Packet<Ip>>,
    batch: Vec<Packet<Ip>>,
    mtu: watch::Receiver<u16>,
}

/// The queue with its interrupt waiter; `None` (the connection is dropped here, and the next one is
/// awaited) when the eventfd cannot be watched, since an error returned to the device would stop it.
fn with_interrupt(mut queue: RxQueue) -> Option<(RxQueue, Interrupt)> {
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
        if self.packets.recv_many(&mut self.batch, BURST).await == 0 {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the tunnel's memif link is closed",
            ));
        }
        Ok(self.batch.drain(..))
    }

    fn mtu(&self) -> MtuWatcher {
        MtuWatcher::from(self.mtu.clone())
    }
}

/// The device's sink of decrypted IP packets: framed by the adapter and sent to VPP.
pub struct MemifIpSend {
    link: Arc<Link>,
    frame: Vec<u8>,
}

impl IpSend for MemifIpSend {
    async fn send(&mut self, packet: Packet<Ip>) -> io::Result<()> {
        let packet = packet.into_bytes();
        let bytes: &[u8] = packet.as_ref();
        let now = Instant::now();
        let link = &self.link;
        match link.adapter.on_packet(bytes, now) {
            TxAction::Send(header) => {
                let len = ETHERNET_HEADER + bytes.len();
                if len > self.frame.len() {
                    link.counters.tx_too_big.fetch_add(1, Ordering::Relaxed);
                    return Ok(());
                }
                self.frame[..ETHERNET_HEADER].copy_from_slice(&header);
                self.frame[ETHERNET_HEADER..len].copy_from_slice(bytes);
                link.transmit(&self.frame[..len]);
            }
            TxAction::Queued => link.flush_neighbour_work(now, &mut self.frame),
            TxAction::Dropped(_) => {}
        }
        Ok(())
    }
}
