//! Burst receive and transmit over one ring: [`RxQueue::rx_burst`] and [`TxQueue::tx_burst`].
//!
//! A queue has one owner (`Send`, not `Sync`, methods take `&mut self`), so two producers can never
//! race on one ring. Frames are copied between shared memory and buffers the caller owns and reuses:
//! nothing is allocated per packet. Frames longer than one buffer travel as chains (NEXT flag) both ways.
//!
//! What each role does with a ring (the client writes head, the server writes tail):
//! - client TX (S2M): fills its own buffers, publishes head;
//! - server RX (S2M): reads descriptors up to head, publishes tail;
//! - server TX (M2S): fills the buffers the client posted (their length is the capacity), publishes tail;
//! - client RX (M2S): reads up to tail, then re-posts its buffers with flags 0 and publishes head.
//!
//! Everything read from shared memory is untrusted: counts are clamped to the ring, each descriptor is
//! copied once and bounds-checked against its region, and bad ones are dropped and counted.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::eventfd::{EventFd, Interrupt};
use super::region::Region;
use super::ring::{DESC_FLAG_NEXT, Desc, RING_FLAG_MASK_INT, Ring};

/// The largest frame a [`Frame`] holds by default: a 9000-byte jumbo frame plus headers.
pub const DEFAULT_FRAME_CAPACITY: usize = 9216;

/// A reusable frame buffer owned by the caller.
#[derive(Clone)]
pub struct Frame {
    data: Box<[u8]>,
    len: usize,
}

impl Frame {
    /// A frame buffer that can hold frames up to `capacity` bytes (allocated once, here).
    pub fn with_capacity(capacity: usize) -> Frame {
        Frame {
            data: vec![0u8; capacity].into_boxed_slice(),
            len: 0,
        }
    }

    /// A batch of `n` frame buffers of `capacity` bytes each.
    pub fn batch(n: usize, capacity: usize) -> Vec<Frame> {
        (0..n).map(|_| Frame::with_capacity(capacity)).collect()
    }

    /// The frame's bytes.
    pub fn as_slice(&self) -> &[u8] {
        &self.data[..self.len]
    }

    /// The frame's bytes, writable (for in-place edits such as a MAC swap).
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.data[..self.len]
    }

    /// Length of the frame.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True for an empty frame.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Maximum frame length.
    pub fn capacity(&self) -> usize {
        self.data.len()
    }

    /// Replaces the contents with `bytes`; `false` (unchanged) when they do not fit.
    pub fn set(&mut self, bytes: &[u8]) -> bool {
        let Some(dst) = self.data.get_mut(..bytes.len()) else {
            return false;
        };
        dst.copy_from_slice(bytes);
        self.len = bytes.len();
        true
    }
}

impl AsRef<[u8]> for Frame {
    fn as_ref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl std::fmt::Debug for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Frame")
            .field("len", &self.len)
            .field("capacity", &self.data.len())
            .finish()
    }
}

/// A buffer that [`RxQueue::rx_burst`] can receive a frame into. Implement it to receive straight into
/// your own packet buffers (for example with headroom in front).
pub trait RxBuffer {
    /// The writable space for the frame; frames longer than this are dropped and counted.
    fn rx_space(&mut self) -> &mut [u8];
    /// Called once a frame of `len` bytes has been written to the start of [`RxBuffer::rx_space`].
    fn set_rx_len(&mut self, len: usize);
}

impl RxBuffer for Frame {
    fn rx_space(&mut self) -> &mut [u8] {
        &mut self.data
    }
    fn set_rx_len(&mut self, len: usize) {
        self.len = len;
    }
}

/// Counters of one queue, as a snapshot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Frames received or sent.
    pub packets: u64,
    /// Bytes of those frames.
    pub bytes: u64,
    /// Of those frames, how many spanned more than one descriptor.
    pub chained: u64,
    /// TX: frames refused because the ring had no room (the caller may retry them).
    pub ring_full: u64,
    /// RX: frames dropped because a descriptor pointed outside its region (or a region that does not
    /// exist), or was empty. TX (server): posted buffers that were unusable.
    pub bad_descriptors: u64,
    /// Frames dropped because they were larger than the receive buffer, or than the ring can carry.
    pub too_long: u64,
    /// Times the peer published more than the ring can hold (a misbehaving peer); clamped.
    pub bad_index: u64,
}

/// The live counters, shared with monitoring code on other threads. Updated once per burst.
/// Aligned so that the counters of an RX queue and a TX queue on two threads never share a cache line.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct QueueCounters {
    packets: AtomicU64,
    bytes: AtomicU64,
    chained: AtomicU64,
    ring_full: AtomicU64,
    bad_descriptors: AtomicU64,
    too_long: AtomicU64,
    bad_index: AtomicU64,
}

impl QueueCounters {
    /// A snapshot of the counters.
    pub fn snapshot(&self) -> QueueStats {
        QueueStats {
            packets: self.packets.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            chained: self.chained.load(Ordering::Relaxed),
            ring_full: self.ring_full.load(Ordering::Relaxed),
            bad_descriptors: self.bad_descriptors.load(Ordering::Relaxed),
            too_long: self.too_long.load(Ordering::Relaxed),
            bad_index: self.bad_index.load(Ordering::Relaxed),
        }
    }

    /// Adds a burst's counts. Only the queue's owner writes (through `&mut` of its queue), so a
    /// plain load and store suffice: no locked read-modify-write per burst.
    fn add(&self, d: &QueueStats) {
        let add = |c: &AtomicU64, v: u64| {
            if v != 0 {
                c.store(c.load(Ordering::Relaxed).wrapping_add(v), Ordering::Relaxed);
            }
        };
        add(&self.packets, d.packets);
        add(&self.bytes, d.bytes);
        add(&self.chained, d.chained);
        add(&self.ring_full, d.ring_full);
        add(&self.bad_descriptors, d.bad_descriptors);
        add(&self.too_long, d.too_long);
        add(&self.bad_index, d.bad_index);
    }
}

/// Whether the connection a queue belongs to is still up (shared by its queues and its control side).
#[derive(Debug, Default)]
pub struct LinkState {
    down: AtomicBool,
}

impl LinkState {
    pub(crate) fn set_down(&self) {
        self.down.store(true, Ordering::Release);
    }

    /// True until the control channel closed.
    pub fn is_up(&self) -> bool {
        !self.down.load(Ordering::Acquire)
    }
}

/// The client's own buffers of one ring: slot `j` always owns the buffer at `base + j * size`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OwnBuffers {
    pub region: u16,
    pub base: usize,
    pub size: u32,
}

impl OwnBuffers {
    #[inline]
    fn offset(&self, slot: u16, mask: u16) -> usize {
        self.base + usize::from(slot & mask) * self.size as usize
    }
}

/// Parts shared by both queue kinds.
#[derive(Debug)]
struct QueueCore {
    index: u16,
    ring: Ring,
    regions: Arc<[Region]>,
    eventfd: EventFd,
    counters: Arc<QueueCounters>,
    link: Arc<LinkState>,
    /// Whether the peer's first misbehaviour on this queue was logged (once per queue: the counters
    /// keep the rest, and a hostile peer cannot flood the log).
    warned: bool,
}

/// The receive side of one queue pair.
#[derive(Debug)]
pub struct RxQueue {
    core: QueueCore,
    /// Next slot to read (a free-running counter).
    next: u16,
    /// Client role: where its buffers are, and the head it last published. `None` for a server.
    client: Option<(OwnBuffers, u16)>,
}

/// The transmit side of one queue pair.
#[derive(Debug)]
pub struct TxQueue {
    core: QueueCore,
    /// Our producer index (head for a client, tail for a server), a free-running counter.
    next: u16,
    /// Client role: where its buffers are. `None` for a server, which fills the client's posted buffers.
    own: Option<OwnBuffers>,
}

impl QueueCore {
    fn eventfd_of(&self) -> BorrowedFd<'_> {
        self.eventfd.as_fd()
    }

    /// Adds a burst's counts, and logs the first burst in which the peer broke the ring's rules.
    fn account(&mut self, stats: &QueueStats, direction: &'static str) {
        self.counters.add(stats);
        if (stats.bad_index != 0 || stats.bad_descriptors != 0) && !self.warned {
            self.warned = true;
            tracing::warn!(
                queue = self.index,
                direction,
                bad_index = stats.bad_index,
                bad_descriptors = stats.bad_descriptors,
                "memif: the peer published ring indices beyond the ring or descriptors outside its \
                 regions; they are dropped and counted in the queue's stats (logged once per queue)"
            );
        }
    }
}

macro_rules! common_queue_api {
    () => {
        /// The queue number within its direction.
        pub fn index(&self) -> u16 {
            self.core.index
        }

        /// Number of slots in the ring.
        pub fn ring_size(&self) -> u16 {
            self.core.ring.size()
        }

        /// A snapshot of this queue's counters.
        pub fn stats(&self) -> QueueStats {
            self.core.counters.snapshot()
        }

        /// The live counters, to read from another thread.
        pub fn counters(&self) -> Arc<QueueCounters> {
            self.core.counters.clone()
        }

        /// True until the connection went down. After that, bursts still work on the (still mapped)
        /// memory but nobody is at the other end: drop the queue.
        pub fn is_connected(&self) -> bool {
            self.core.link.is_up()
        }

        /// The ring's interrupt eventfd (for epoll or tokio `AsyncFd`).
        pub fn interrupt_fd(&self) -> BorrowedFd<'_> {
            self.core.eventfd_of()
        }
    };
}

impl RxQueue {
    pub(crate) fn new(
        index: u16,
        ring: Ring,
        regions: Arc<[Region]>,
        eventfd: EventFd,
        link: Arc<LinkState>,
        own: Option<OwnBuffers>,
    ) -> RxQueue {
        // The server starts reading where the client's ring says it is; a client builds fresh rings.
        let next = if own.is_some() {
            0
        } else {
            ring.tail().load(Ordering::Acquire)
        };
        let core = QueueCore {
            index,
            ring,
            regions,
            eventfd,
            counters: Arc::default(),
            link,
            warned: false,
        };
        let mut q = RxQueue {
            core,
            next,
            client: own.map(|b| (b, next)),
        };
        q.refill();
        q
    }

    common_queue_api!();

    /// Turns interrupts on (the peer signals the eventfd after each burst it publishes) or off (we
    /// poll; the peer skips the syscall). After turning them on, call `rx_burst` once more before
    /// waiting, so a frame published just before the switch is not left waiting.
    pub fn set_interrupt_mode(&mut self, on: bool) {
        let flags = if on { 0 } else { RING_FLAG_MASK_INT };
        self.core.ring.flags().store(flags, Ordering::Release);
    }

    /// True when the peer has published frames that `rx_burst` has not taken yet.
    pub fn has_pending(&self) -> bool {
        let ring = &self.core.ring;
        let produced = match self.client {
            None => ring.head().load(Ordering::Acquire),
            Some(_) => ring.tail().load(Ordering::Acquire),
        };
        produced != self.next
    }

    /// Switches from polling to interrupts without losing a wakeup: turns interrupts on, then looks
    /// once more. `true` means frames arrived meanwhile (no signal may come for them): burst again
    /// before waiting on the interrupt.
    pub fn arm_interrupt(&mut self) -> bool {
        self.set_interrupt_mode(true);
        // The flag store must be visible before we read the producer's index (a store-load order).
        std::sync::atomic::fence(Ordering::SeqCst);
        self.has_pending()
    }

    /// Clears a pending interrupt; returns how many signals were pending.
    pub fn clear_interrupt(&self) -> io::Result<u64> {
        self.core.eventfd.drain()
    }

    /// An async waiter for this queue's interrupts (needs a tokio runtime).
    pub fn interrupt(&self) -> io::Result<Interrupt> {
        Interrupt::new(self.core.eventfd.try_clone()?)
    }

    /// Receives up to `frames.len()` frames into the caller's buffers; returns how many were filled
    /// (`frames[..n]`). Chained frames arrive whole. Frames that do not fit their buffer, or whose
    /// descriptors are invalid, are dropped and counted; they never touch memory outside their region.
    pub fn rx_burst<B: RxBuffer>(&mut self, frames: &mut [B]) -> usize {
        if frames.is_empty() {
            return 0;
        }
        let ring = &self.core.ring;
        let size = ring.size();
        let mut stats = QueueStats::default();
        // The peer's producer index: head of S2M for a server, tail of M2S for a client.
        let produced = match self.client {
            None => ring.head().load(Ordering::Acquire),
            Some(_) => ring.tail().load(Ordering::Acquire),
        };
        // Never trust the count: at most the ring (server), at most what we posted (client).
        let limit = match self.client {
            None => size,
            Some((_, head)) => head.wrapping_sub(self.next),
        };
        let mut avail = produced.wrapping_sub(self.next);
        if avail > limit {
            stats.bad_index += 1;
            avail = limit;
        }
        let mut pos = self.next;
        let mut filled = 0;
        'frames: while filled < frames.len() && avail > 0 {
            let space = frames[filled].rx_space();
            let mut len = 0usize;
            let mut segs: u16 = 0;
            let mut bad = false;
            let mut too_long = false;
            loop {
                if segs == avail {
                    if avail < limit {
                        // The chain's end is not published yet: leave it for the next burst.
                        break 'frames;
                    }
                    // A chain as long as the ring never ends: drop all of it.
                    bad = true;
                    break;
                }
                let d = ring.desc(pos.wrapping_add(segs));
                segs += 1;
                let dlen = d.length as usize;
                match self.core.regions.get(usize::from(d.region)) {
                    Some(r) if r.contains(d.offset as usize, dlen) => {
                        if !bad && !too_long {
                            match space.get_mut(len..len + dlen) {
                                Some(dst) => {
                                    r.read(d.offset as usize, dst)
                                        .expect("range checked by contains");
                                    len += dlen;
                                }
                                None => too_long = true,
                            }
                        }
                    }
                    _ => bad = true,
                }
                if d.flags & DESC_FLAG_NEXT == 0 {
                    break;
                }
            }
            pos = pos.wrapping_add(segs);
            avail -= segs;
            if too_long && !bad {
                stats.too_long += 1;
            } else if bad || len == 0 {
                stats.bad_descriptors += 1;
            } else {
                frames[filled].set_rx_len(len);
                filled += 1;
                stats.packets += 1;
                stats.bytes += len as u64;
                stats.chained += u64::from(segs > 1);
            }
        }
        if pos != self.next {
            self.next = pos;
            match self.client {
                None => ring.tail().store(pos, Ordering::Release),
                Some(_) => self.refill(),
            }
        }
        self.core.account(&stats, "rx");
        filled
    }

    /// Client role: posts every free slot with its own empty buffer (flags 0, length = capacity) and
    /// publishes head.
    fn refill(&mut self) {
        let Some((own, head)) = self.client.as_mut() else {
            return;
        };
        let ring = &self.core.ring;
        let mask = ring.size() - 1;
        let target = self.next.wrapping_add(ring.size());
        if *head == target {
            return;
        }
        while *head != target {
            let offset = own.offset(*head, mask) as u32;
            ring.set_desc(
                *head,
                Desc {
                    flags: 0,
                    region: own.region,
                    length: own.size,
                    offset,
                },
            );
            *head = head.wrapping_add(1);
        }
        ring.head().store(*head, Ordering::Release);
    }
}

impl TxQueue {
    pub(crate) fn new(
        index: u16,
        ring: Ring,
        regions: Arc<[Region]>,
        eventfd: EventFd,
        link: Arc<LinkState>,
        own: Option<OwnBuffers>,
    ) -> TxQueue {
        let next = if own.is_some() {
            0
        } else {
            ring.tail().load(Ordering::Acquire)
        };
        let core = QueueCore {
            index,
            ring,
            regions,
            eventfd,
            counters: Arc::default(),
            link,
            warned: false,
        };
        TxQueue { core, next, own }
    }

    common_queue_api!();

    /// True when the peer asked to be signalled after each burst (its MASK_INT flag is clear).
    pub fn peer_wants_interrupts(&self) -> bool {
        self.core.ring.flags().load(Ordering::Relaxed) & RING_FLAG_MASK_INT == 0
    }

    /// Free slots right now (a frame may need several).
    pub fn free_slots(&self) -> u16 {
        let ring = &self.core.ring;
        let size = ring.size();
        match self.own {
            Some(_) => {
                size.saturating_sub(self.next.wrapping_sub(ring.tail().load(Ordering::Acquire)))
            }
            None => ring
                .head()
                .load(Ordering::Acquire)
                .wrapping_sub(self.next)
                .min(size),
        }
    }

    /// Sends frames from the front of `frames`; returns how many were taken. Frames after that did not
    /// fit in the ring (counted in `ring_full`); the caller may retry them later. A frame too large for
    /// the whole ring is taken, dropped and counted in `too_long`. Frames larger than one buffer are
    /// chained. The peer is signalled once per burst, unless it masked interrupts.
    pub fn tx_burst<B: AsRef<[u8]>>(&mut self, frames: &[B]) -> usize {
        let mut stats = QueueStats::default();
        let taken = match self.own {
            Some(own) => self.tx_client(frames, own, &mut stats),
            None => self.tx_server(frames, &mut stats),
        };
        if stats.packets > 0 && self.peer_wants_interrupts() {
            // A failed signal costs the peer latency only; it polls or gets the next one.
            let _ = self.core.eventfd.notify();
        }
        self.core.account(&stats, "tx");
        taken
    }

    /// Client (S2M): copy into our own buffers, one per slot, and publish head.
    fn tx_client<B: AsRef<[u8]>>(
        &mut self,
        frames: &[B],
        own: OwnBuffers,
        stats: &mut QueueStats,
    ) -> usize {
        let ring = &self.core.ring;
        let region = &self.core.regions[usize::from(own.region)];
        let size = ring.size();
        let mask = size - 1;
        let used = self.next.wrapping_sub(ring.tail().load(Ordering::Acquire));
        let mut free = if used > size {
            stats.bad_index += 1;
            0
        } else {
            size - used
        };
        let chunk = own.size as usize;
        let mut taken = 0;
        for frame in frames {
            let data = frame.as_ref();
            let segs = data.len().div_ceil(chunk).max(1);
            if segs > usize::from(size) {
                stats.too_long += 1;
                taken += 1;
                continue;
            }
            if segs > usize::from(free) {
                stats.ring_full += (frames.len() - taken) as u64;
                break;
            }
            let mut pieces = data.chunks(chunk);
            for s in 0..segs {
                let piece = pieces.next().unwrap_or(&[]);
                let offset = own.offset(self.next, mask);
                region
                    .write(offset, piece)
                    .expect("INVARIANT: own buffers lie inside the region");
                let flags = if s + 1 < segs { DESC_FLAG_NEXT } else { 0 };
                let desc = Desc {
                    flags,
                    region: own.region,
                    length: piece.len() as u32,
                    offset: offset as u32,
                };
                ring.set_desc(self.next, desc);
                self.next = self.next.wrapping_add(1);
            }
            free -= segs as u16;
            taken += 1;
            stats.packets += 1;
            stats.bytes += data.len() as u64;
            stats.chained += u64::from(segs > 1);
        }
        if stats.packets > 0 {
            ring.head().store(self.next, Ordering::Release);
        }
        taken
    }

    /// Server (M2S): fill the buffers the client posted, using each descriptor's length as its capacity,
    /// and publish tail. The client's region and offset are never changed.
    fn tx_server<B: AsRef<[u8]>>(&mut self, frames: &[B], stats: &mut QueueStats) -> usize {
        let ring = &self.core.ring;
        let regions = &self.core.regions;
        let size = ring.size();
        let mut avail = ring.head().load(Ordering::Acquire).wrapping_sub(self.next);
        if avail > size {
            stats.bad_index += 1;
            avail = size;
        }
        // A posted buffer is usable when its whole capacity lies inside its region.
        let capacity = |d: &Desc| match regions.get(usize::from(d.region)) {
            Some(r) if r.contains(d.offset as usize, d.length as usize) => Some(d.length as usize),
            _ => None,
        };
        let mut taken = 0;
        for frame in frames {
            let data = frame.as_ref();
            // Pass 1: how many posted slots does this frame need?
            let mut segs: u16 = 0;
            let mut room = 0usize;
            loop {
                if segs == avail {
                    break;
                }
                room += capacity(&ring.desc(self.next.wrapping_add(segs))).unwrap_or(0);
                segs += 1;
                if room >= data.len() {
                    break;
                }
            }
            if room < data.len() || segs == 0 {
                if segs == size {
                    // Even the whole ring cannot hold it.
                    stats.too_long += 1;
                    taken += 1;
                    continue;
                }
                stats.ring_full += (frames.len() - taken) as u64;
                break;
            }
            // Pass 2: copy. Descriptors are read (and checked) again, so a peer changing them in
            // between can only truncate the frame, never redirect a write.
            let mut rest = data;
            for s in 0..segs {
                let slot = self.next.wrapping_add(s);
                let d = ring.desc(slot);
                let n = match capacity(&d) {
                    Some(cap) => {
                        let n = cap.min(rest.len());
                        let r = &regions[usize::from(d.region)];
                        r.write(d.offset as usize, &rest[..n])
                            .expect("range checked by capacity");
                        n
                    }
                    None => {
                        stats.bad_descriptors += 1;
                        0
                    }
                };
                rest = &rest[n..];
                let flags = if s + 1 < segs { DESC_FLAG_NEXT } else { 0 };
                ring.set_desc_flags_length(slot, flags, n as u32);
            }
            self.next = self.next.wrapping_add(segs);
            avail -= segs;
            taken += 1;
            stats.packets += 1;
            stats.bytes += data.len() as u64;
            stats.chained += u64::from(segs > 1);
        }
        if stats.packets > 0 {
            ring.tail().store(self.next, Ordering::Release);
        }
        taken
    }
}
