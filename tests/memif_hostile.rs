//! Hostile memif clients against our server (issue 15): nothing a client sends may take the process or
//! another tunnel down.
//!
//! Each test plays one kind of client, written for the purpose: it speaks the control protocol over the
//! Unix socket itself (a raw SEQPACKET socket, descriptors as SCM_RIGHTS, messages from the crate's
//! public encoder), builds its shared memory through file writes (it never maps it, so the only mapping
//! is the server's), and then misbehaves: a region it truncates, too large, too many, of the wrong kind;
//! interrupt descriptors that are no eventfds; descriptors outside the region; ring indices that jump;
//! a chain that never ends; rings that do not fit their region.
//!
//! The server runs in this process, so a fault it takes (SIGBUS, SIGSEGV) or a loop it cannot leave
//! fails the test. After each attack the test checks that
//! - the refusal names the reason, in the DISCONNECT the client reads and in the listener's error; or,
//!   for a connected client, that its bad input was dropped and counted;
//! - nothing was left behind: the process holds the same number of descriptors, and no mapping of the
//!   client's memory;
//! - a second tunnel, connected before the attack, still exchanges frames both ways;
//! - the attacked listener accepts a well-behaved client (our own) that exchanges frames both ways.
//!
//! The tests of this binary run one at a time (a lock), since the descriptor counts are per process.
//! No outside peer is needed: the well-behaved peer is our own client (testpmd and VPP are covered by
//! `memif_interop` and `tunnel_vpp_e2e`).

use std::io::{IoSlice, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, SealFlag, fcntl};
use nix::sys::memfd::{MFdFlags, memfd_create};
use nix::sys::socket::{
    AddressFamily, ControlMessage, MsgFlags, SockFlag, SockType, UnixAddr, connect, recv, sendmsg,
    socket,
};
use nix::sys::uio::{pread, pwrite};
use nix::unistd::ftruncate;
use tokio::runtime::Runtime;
use tokio::task::JoinHandle;
use wireguard_vpp::memif::msg::{self, AddRegion, AddRing, Init, Message, Name, Secret};
use wireguard_vpp::memif::{
    ClientConfig, Connection, Control, Error, Frame, Listener, RxQueue, ServerConfig, TxQueue,
};

const WAIT: Duration = Duration::from_secs(10);

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

// The ring layout of the protocol (x86_64): tail one cache line after the cookie, descriptors two.
const COOKIE: u32 = 0x03E3_1F20;
const OFF_HEAD: usize = 6;
const OFF_TAIL: usize = 64;
const OFF_DESCS: usize = 128;
const NEXT: u16 = 1;

const fn ring_bytes(log2: u8) -> usize {
    OFF_DESCS + 16 * (1 << log2)
}

// The hostile client's memory: one region, the S2M ring at 0, the M2S ring after it, and 2048-byte
// buffers from offset 1024 (S2M slot j owns buffer j, M2S slot j owns buffer 16 + j).
const LOG2: u8 = 4;
const SLOTS: u16 = 1 << LOG2;
const S2M: usize = 0;
const M2S: usize = ring_bytes(LOG2);
const BUFFERS: usize = 1024;
const BUF: usize = 2048;
const REGION: usize = BUFFERS + 2 * SLOTS as usize * BUF;

// ---- the hostile client ----

/// A client's control socket, driven by hand.
struct Hostile {
    sock: OwnedFd,
}

impl Hostile {
    /// Connects and reads the server's HELLO.
    fn connect(path: &Path) -> Hostile {
        let sock = socket(
            AddressFamily::Unix,
            SockType::SeqPacket,
            SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
            None,
        )
        .expect("a SEQPACKET socket");
        connect(
            sock.as_raw_fd(),
            &UnixAddr::new(path).expect("a socket path"),
        )
        .expect("the listener accepts");
        let client = Hostile { sock };
        let hello = client.recv();
        assert!(matches!(hello, Some(Message::Hello(_))), "{hello:?}");
        client
    }

    /// Sends one message, with `fd` as SCM_RIGHTS.
    fn send(&self, m: &Message, fd: Option<BorrowedFd<'_>>) {
        let raw: Vec<RawFd> = fd.iter().map(AsRawFd::as_raw_fd).collect();
        self.send_fds(m, &raw);
    }

    /// Sends one message with any number of descriptors (none when `fds` is empty).
    fn send_fds(&self, m: &Message, fds: &[RawFd]) {
        let mut frame = [0u8; msg::MSG_SIZE];
        m.emit(&mut frame);
        let cmsgs: Vec<ControlMessage<'_>> = if fds.is_empty() {
            Vec::new()
        } else {
            vec![ControlMessage::ScmRights(fds)]
        };
        let deadline = Instant::now() + WAIT;
        loop {
            let iov = [IoSlice::new(&frame)];
            match sendmsg::<()>(
                self.sock.as_raw_fd(),
                &iov,
                &cmsgs,
                MsgFlags::MSG_NOSIGNAL,
                None,
            ) {
                Ok(n) => return assert_eq!(n, frame.len()),
                Err(Errno::EAGAIN) if Instant::now() < deadline => pause(),
                // The server already refused and closed: its DISCONNECT waits to be read.
                Err(Errno::EPIPE | Errno::ECONNRESET) => return,
                Err(e) => panic!("sendmsg: {e}"),
            }
        }
    }

    /// The next message, or `None` once the server closed.
    fn recv(&self) -> Option<Message> {
        let mut buf = [0u8; msg::MSG_SIZE];
        let deadline = Instant::now() + WAIT;
        loop {
            match recv(self.sock.as_raw_fd(), &mut buf, MsgFlags::empty()) {
                Ok(0) | Err(Errno::ECONNRESET) => return None,
                Ok(n) => {
                    return Some(
                        Message::parse(&buf[..n]).expect("the server sends valid messages"),
                    );
                }
                Err(Errno::EAGAIN) if Instant::now() < deadline => pause(),
                Err(e) => panic!("recv: {e}"),
            }
        }
    }

    /// Sends each message and reads its answer; returns the first answer that is not ACK.
    fn script(&self, steps: &[(Message, Option<BorrowedFd<'_>>)]) -> Option<Message> {
        for (m, fd) in steps {
            self.send(m, *fd);
            match self.recv() {
                Some(Message::Ack) => {}
                other => return other,
            }
        }
        Some(Message::Ack)
    }
}

fn pause() {
    std::thread::sleep(Duration::from_millis(2));
}

fn init() -> Message {
    Message::Init(Init {
        version: msg::VERSION,
        id: 0,
        mode: msg::MODE_ETHERNET,
        secret: Secret::default(),
        name: Name::new("hostile"),
    })
}

fn add_region(index: u16, size: usize) -> Message {
    Message::AddRegion(AddRegion {
        index,
        size: size as u64,
    })
}

fn add_ring(s2m: bool, offset: usize, log2: u8) -> Message {
    Message::AddRing(AddRing {
        flags: u16::from(s2m) * msg::RING_FLAG_S2M,
        index: 0,
        region: 0,
        offset: offset as u32,
        log2_ring_size: log2,
        private_hdr_size: 0,
    })
}

fn connect_msg() -> Message {
    Message::Connect(Name::new("hostile0"))
}

fn eventfd() -> OwnedFd {
    // SAFETY: a plain syscall; the result is checked before it is owned.
    let raw = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    assert!(raw >= 0, "eventfd: {}", std::io::Error::last_os_error());
    // SAFETY: a fresh descriptor that nothing else owns.
    unsafe { OwnedFd::from_raw_fd(raw) }
}

/// A descriptor of `kind` (as the server names it) that is no memfd, and what keeps it alive (the
/// other end of a socket or pipe, the directory).
fn not_a_file(kind: &str) -> (OwnedFd, Box<dyn std::any::Any>) {
    match kind {
        "a socket" => {
            let (socket, peer) = std::os::unix::net::UnixStream::pair().expect("a socket pair");
            (socket.into(), Box::new(peer))
        }
        "a pipe" => {
            let (reader, writer) = std::io::pipe().expect("a pipe");
            (reader.into(), Box::new(writer))
        }
        "a directory" => {
            let dir = tempfile::tempdir().expect("a directory");
            let fd = std::fs::File::open(dir.path()).expect("open a directory");
            (fd.into(), Box::new(dir))
        }
        "a character device" => {
            let fd = std::fs::File::open("/dev/null").expect("/dev/null");
            (fd.into(), Box::new(()))
        }
        "a regular file" => (Memory::memfd(4096, true).fd, Box::new(())),
        "an anonymous inode" => (eventfd(), Box::new(())),
        other => unreachable!("no descriptor of kind {other}"),
    }
}

/// The hostile client's memory: a file it writes through `pwrite` and never maps.
struct Memory {
    fd: OwnedFd,
}

impl Memory {
    /// A memfd of `len` bytes (named `hostile`, so that a mapping left behind shows in /proc/self/maps),
    /// sealed against shrinking when `sealed`.
    fn memfd(len: usize, sealed: bool) -> Memory {
        let fd = memfd_create(
            "hostile",
            MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING,
        )
        .expect("memfd_create");
        ftruncate(&fd, len as i64).expect("ftruncate");
        if sealed {
            fcntl(&fd, FcntlArg::F_ADD_SEALS(SealFlag::F_SEAL_SHRINK)).expect("F_ADD_SEALS");
        }
        Memory { fd }
    }

    /// The layout above: both rings with their cookies, the buffers, zeroed indices.
    fn rings(sealed: bool) -> Memory {
        let mem = Memory::memfd(REGION, sealed);
        mem.write(S2M, &COOKIE.to_ne_bytes());
        mem.write(M2S, &COOKIE.to_ne_bytes());
        mem
    }

    fn write(&self, offset: usize, bytes: &[u8]) {
        let n = pwrite(&self.fd, bytes, offset as i64).expect("pwrite");
        assert_eq!(n, bytes.len());
    }

    fn read(&self, offset: usize, len: usize) -> Vec<u8> {
        let mut buf = vec![0u8; len];
        let n = pread(&self.fd, &mut buf, offset as i64).expect("pread");
        buf.truncate(n);
        buf
    }

    fn desc(&self, ring: usize, slot: u16, flags: u16, region: u16, length: u32, offset: u32) {
        let mut d = [0u8; 16];
        d[0..2].copy_from_slice(&flags.to_ne_bytes());
        d[2..4].copy_from_slice(&region.to_ne_bytes());
        d[4..8].copy_from_slice(&length.to_ne_bytes());
        d[8..12].copy_from_slice(&offset.to_ne_bytes());
        self.write(ring + OFF_DESCS + 16 * usize::from(slot % SLOTS), &d);
    }

    /// (flags, length) of a descriptor.
    fn desc_flags_length(&self, ring: usize, slot: u16) -> (u16, u32) {
        let d = self.read(ring + OFF_DESCS + 16 * usize::from(slot % SLOTS), 16);
        (
            u16::from_ne_bytes([d[0], d[1]]),
            u32::from_ne_bytes([d[4], d[5], d[6], d[7]]),
        )
    }

    fn set_head(&self, ring: usize, head: u16) {
        self.write(ring + OFF_HEAD, &head.to_ne_bytes());
    }

    fn tail(&self, ring: usize) -> u16 {
        let b = self.read(ring + OFF_TAIL, 2);
        u16::from_ne_bytes([b[0], b[1]])
    }

    /// Offset of the buffer S2M slot `slot` owns.
    fn s2m_buffer(slot: u16) -> usize {
        BUFFERS + usize::from(slot % SLOTS) * BUF
    }

    /// Offset of the buffer M2S slot `slot` owns.
    fn m2s_buffer(slot: u16) -> usize {
        BUFFERS + (usize::from(SLOTS) + usize::from(slot % SLOTS)) * BUF
    }

    /// Writes `data` into S2M slot `slot`'s buffer and describes it (flags as given); head unchanged.
    fn put_frame(&self, slot: u16, data: &[u8], flags: u16) {
        let at = Memory::s2m_buffer(slot);
        self.write(at, data);
        self.desc(S2M, slot, flags, 0, data.len() as u32, at as u32);
    }

    /// Posts M2S slots `from..to` with their own empty buffers, and publishes head = `to`.
    fn post(&self, from: u16, to: u16) {
        for slot in from..to {
            self.desc(M2S, slot, 0, 0, BUF as u32, Memory::m2s_buffer(slot) as u32);
        }
        self.set_head(M2S, to);
    }
}

/// A client that completes the handshake with `mem` as its region (the layout above).
fn connected_client(path: &Path, mem: &Memory) -> (Hostile, Option<Message>) {
    let client = Hostile::connect(path);
    let (irq_s2m, irq_m2s) = (eventfd(), eventfd());
    let answer = client.script(&[
        (init(), None),
        (add_region(0, REGION), Some(mem.fd.as_fd())),
        (add_ring(true, S2M, LOG2), Some(irq_s2m.as_fd())),
        (add_ring(false, M2S, LOG2), Some(irq_m2s.as_fd())),
        (connect_msg(), None),
    ]);
    (client, answer)
}

fn test_frame(seq: u8, len: usize) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(7) ^ seq).collect()
}

// ---- the bed: the attacked listener, a second tunnel, and what the process holds ----

/// What the process holds that an attack could leak.
#[derive(Debug, PartialEq, Eq)]
struct Held {
    descriptors: usize,
    hostile_mappings: usize,
}

fn held() -> Held {
    let descriptors = std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .count();
    let maps = std::fs::read_to_string("/proc/self/maps").expect("/proc/self/maps");
    let hostile_mappings = maps.lines().filter(|l| l.contains("memfd:hostile")).count();
    Held {
        descriptors,
        hostile_mappings,
    }
}

/// Both ends of a connected pair of our own (server side first).
struct Pair {
    _server: Control,
    server_rx: RxQueue,
    server_tx: TxQueue,
    _client: Control,
    client_rx: RxQueue,
    client_tx: TxQueue,
}

impl Pair {
    fn new(server: Connection, client: Connection) -> Pair {
        let (server, mut srx, mut stx) = server.split();
        let (client, mut crx, mut ctx) = client.split();
        Pair {
            _server: server,
            server_rx: srx.remove(0),
            server_tx: stx.remove(0),
            _client: client,
            client_rx: crx.remove(0),
            client_tx: ctx.remove(0),
        }
    }

    /// One frame each way.
    fn exchange(&mut self, seq: u8) {
        send_and_receive(
            &mut self.client_tx,
            &mut self.server_rx,
            &test_frame(seq, 300),
        );
        send_and_receive(
            &mut self.server_tx,
            &mut self.client_rx,
            &test_frame(seq ^ 0x55, 1500),
        );
    }
}

fn send_and_receive(tx: &mut TxQueue, rx: &mut RxQueue, frame: &[u8]) {
    assert_eq!(tx.tx_burst(&[frame]), 1, "the frame is taken");
    let mut bufs = Frame::batch(4, 2048);
    let deadline = Instant::now() + WAIT;
    loop {
        let n = rx.rx_burst(&mut bufs);
        if n > 0 {
            assert_eq!(n, 1);
            assert_eq!(bufs[0].as_slice(), frame);
            return;
        }
        assert!(Instant::now() < deadline, "the frame did not arrive");
        pause();
    }
}

type Accepting = JoinHandle<(Listener, Result<Connection, Error>)>;

struct Bed {
    rt: Runtime,
    _dir: tempfile::TempDir,
    path: PathBuf,
    listener: Option<Listener>,
    /// A second tunnel (its own listener), connected before any attack.
    other: Pair,
    _other_listener: Listener,
    /// What the process held before the attack.
    before: Held,
    exchanges: u8,
    _one_at_a_time: MutexGuard<'static, ()>,
}

fn well_behaved(id: u32) -> ClientConfig {
    ClientConfig {
        id,
        handshake_timeout: Duration::from_secs(2),
        ..ClientConfig::default()
    }
}

impl Bed {
    fn new(cfg: ServerConfig) -> Bed {
        let lock = ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime");
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("attacked.sock");
        let other_path = dir.path().join("other.sock");
        let cfg = ServerConfig {
            id: 0,
            handshake_timeout: Duration::from_secs(2),
            ..cfg
        };
        let (listener, mut other_listener) = rt.block_on(async {
            let listener = Listener::bind(&path, cfg).expect("bind the attacked listener");
            let other = ServerConfig {
                id: 1,
                ..ServerConfig::default()
            };
            (
                listener,
                Listener::bind(&other_path, other).expect("bind the second listener"),
            )
        });
        let other = rt.block_on(async {
            let cfg = well_behaved(1);
            let (s, c) = tokio::join!(
                other_listener.accept_one(),
                Connection::connect(&other_path, &cfg)
            );
            Pair::new(
                s.expect("second tunnel, server"),
                c.expect("second tunnel, client"),
            )
        });
        let mut bed = Bed {
            rt,
            _dir: dir,
            path,
            listener: Some(listener),
            other,
            _other_listener: other_listener,
            before: held(),
            exchanges: 0,
            _one_at_a_time: lock,
        };
        // A first well-behaved connection, so that the listener's state is the same before and after
        // each attack (it keeps a watch on its last connection).
        bed.serves_a_well_behaved_client();
        bed.before = held();
        bed
    }

    fn accept(&mut self) -> Accepting {
        let mut listener = self.listener.take().expect("the listener is home");
        self.rt.spawn(async move {
            let result = listener.accept_one().await;
            (listener, result)
        })
    }

    fn outcome(&mut self, accepting: Accepting) -> Result<Connection, Error> {
        let (listener, result) = self
            .rt
            .block_on(async { tokio::time::timeout(WAIT, accepting).await })
            .expect("the handshake ends")
            .expect("the accept task does not panic");
        self.listener = Some(listener);
        result
    }

    /// Runs `attack` as a fresh client and checks it was refused with `reason`: in the DISCONNECT it
    /// got, and in the listener's error. The attack owns what it sends (its memory, its descriptors),
    /// so that whatever the process still holds afterwards is the server's. A server that accepts instead is used as a tunnel would use
    /// it (a burst each way), which is where a missing check shows as a crash.
    fn refused(&mut self, reason: &str, attack: impl FnOnce(&Hostile) -> Option<Message>) {
        let accepting = self.accept();
        let client = Hostile::connect(&self.path);
        let answer = attack(&client);
        let result = self.outcome(accepting);
        if let Ok(conn) = result {
            use_like_a_tunnel(conn);
            panic!("a client that should be refused ({reason}) was accepted; answer {answer:?}");
        }
        let Some(Message::Disconnect(d)) = answer else {
            panic!("{reason}: the client got {answer:?}, not DISCONNECT")
        };
        let sent = d.reason.to_string_lossy();
        assert!(
            sent.contains(reason),
            "DISCONNECT says {sent:?}, not {reason:?}"
        );
        assert_eq!(client.recv(), None, "the server closes after DISCONNECT");
        let err = result.expect_err("refused");
        assert!(matches!(err, Error::Protocol(_)), "{err}");
        assert!(err.to_string().contains(reason), "{err}");
        drop(client);
        self.unharmed();
    }

    /// Connects a hostile client that completes the handshake with `mem`; returns it and our end.
    fn connected(&mut self, mem: &Memory) -> (Hostile, Connection) {
        let accepting = self.accept();
        let (client, answer) = connected_client(&self.path, mem);
        assert!(matches!(answer, Some(Message::Connected(_))), "{answer:?}");
        let conn = self.outcome(accepting).expect("the handshake succeeds");
        (client, conn)
    }

    /// Nothing held beyond what was held before; the second tunnel exchanges frames; the attacked
    /// listener serves a well-behaved client.
    fn unharmed(&mut self) {
        assert_eq!(
            held(),
            self.before,
            "the attack left descriptors or mappings behind"
        );
        self.exchanges = self.exchanges.wrapping_add(1);
        self.other.exchange(self.exchanges);
        self.serves_a_well_behaved_client();
    }

    fn serves_a_well_behaved_client(&mut self) {
        let accepting = self.accept();
        let client = self
            .rt
            .block_on(Connection::connect(&self.path, &well_behaved(0)))
            .expect("a well-behaved client connects");
        let server = self.outcome(accepting).expect("the listener accepts it");
        let mut pair = Pair::new(server, client);
        self.exchanges = self.exchanges.wrapping_add(1);
        pair.exchange(self.exchanges);
    }
}

/// What a tunnel does with a connection: bursts on every queue.
fn use_like_a_tunnel(conn: Connection) {
    let (_control, mut rx, mut tx) = conn.split();
    let mut bufs = Frame::batch(32, 9216);
    for q in &mut rx {
        q.rx_burst(&mut bufs);
    }
    for q in &mut tx {
        q.tx_burst(&[[0u8; 64]]);
    }
}

/// `rx_burst` on another thread, failing the test if it does not return (a loop the peer made endless).
fn bounded_rx_burst(q: RxQueue, batch: usize) -> (RxQueue, Vec<Frame>, usize) {
    let (done, result) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut q = q;
        let mut bufs = Frame::batch(batch, 9216);
        let n = q.rx_burst(&mut bufs);
        let _ = done.send((q, bufs, n));
    });
    result
        .recv_timeout(WAIT)
        .expect("rx_burst returns (it must not follow the peer's descriptors forever)")
}

// ---- regions: the peer's memory, and SIGBUS ----

/// A client that truncates its region after we mapped it would crash the process with SIGBUS at the
/// next access. Its unsealed region is refused at ADD_REGION, so the truncation (attempted below when
/// the server accepts) never reaches a mapping of ours.
#[test]
fn an_unsealed_region_is_refused_so_a_truncating_client_cannot_crash_us() {
    let mut bed = Bed::new(ServerConfig::default());
    // A memfd without seals, and a file on disk (which cannot be sealed at all).
    for on_disk in [false, true] {
        let mem = if on_disk {
            let file = tempfile::tempfile().expect("a temp file");
            file.set_len(REGION as u64).expect("set_len");
            let disk = Memory { fd: file.into() };
            disk.write(S2M, &COOKIE.to_ne_bytes());
            disk.write(M2S, &COOKIE.to_ne_bytes());
            disk
        } else {
            Memory::rings(false)
        };
        mem.put_frame(0, &test_frame(1, 100), 0);
        mem.set_head(S2M, 1);
        mem.post(0, SLOTS);
        bed.refused("not sealed against shrinking", move |client| {
            let (irq_s2m, irq_m2s) = (eventfd(), eventfd());
            let answer = client.script(&[
                (init(), None),
                (add_region(0, REGION), Some(mem.fd.as_fd())),
                (add_ring(true, S2M, LOG2), Some(irq_s2m.as_fd())),
                (add_ring(false, M2S, LOG2), Some(irq_m2s.as_fd())),
                (connect_msg(), None),
            ]);
            if matches!(answer, Some(Message::Connected(_))) {
                // The attack: the memory under the server's mapping goes away.
                ftruncate(&mem.fd, 0).expect("an unsealed file can be truncated");
            }
            answer
        });
    }
}

/// A sealed region cannot shrink: the client's truncation fails, and the server keeps receiving and
/// sending on that connection. (Growing is allowed and harmless.)
#[test]
fn a_sealed_region_cannot_be_truncated_and_the_connection_keeps_working() {
    let mut bed = Bed::new(ServerConfig::default());
    let mem = Memory::rings(true);
    let (client, conn) = bed.connected(&mem);
    assert_eq!(
        ftruncate(&mem.fd, 0),
        Err(Errno::EPERM),
        "F_SEAL_SHRINK forbids it"
    );
    assert_eq!(ftruncate(&mem.fd, 4096), Err(Errno::EPERM));
    ftruncate(&mem.fd, REGION as i64 * 2).expect("growing is allowed");
    let (control, rx, mut tx) = conn.split();
    let frame = test_frame(9, 1200);
    mem.put_frame(0, &frame, 0);
    mem.set_head(S2M, 1);
    let (_rx, bufs, n) = bounded_rx_burst(rx.into_iter().next().expect("one RX queue"), 8);
    assert_eq!(n, 1);
    assert_eq!(bufs[0].as_slice(), &frame[..]);
    mem.post(0, 1);
    assert_eq!(tx[0].tx_burst(&[&frame[..]]), 1);
    assert_eq!(mem.read(Memory::m2s_buffer(0), frame.len()), frame);
    drop((client, control, tx, _rx, mem));
    bed.unharmed();
}

/// More regions than the configured limit: refused with the limit named, and the regions already
/// mapped are unmapped, their descriptors closed.
#[test]
fn too_many_regions_are_refused_naming_the_limit_and_leave_nothing_behind() {
    let mut bed = Bed::new(ServerConfig {
        max_regions: 3,
        ..ServerConfig::default()
    });
    bed.refused("Too many regions: region 3, at most 3 accepted", |client| {
        let regions: Vec<Memory> = (0..4).map(|_| Memory::memfd(65_536, true)).collect();
        let mut steps = vec![(init(), None)];
        for (i, mem) in regions.iter().enumerate() {
            steps.push((add_region(i as u16, 65_536), Some(mem.fd.as_fd())));
        }
        client.script(&steps)
    });
}

/// Regions whose sizes add up to more than `max_memory` (8 MiB here, room for our own client's 4 MiB):
/// refused with the limit named, and the regions already mapped are unmapped.
#[test]
fn regions_beyond_the_memory_cap_are_refused_and_unmapped() {
    let mut bed = Bed::new(ServerConfig {
        max_memory: 8 << 20,
        ..ServerConfig::default()
    });
    bed.refused(
        "Region 2 makes 9437184 bytes of regions, more than the 8388608 accepted",
        |client| {
            let regions: Vec<Memory> = (0..3).map(|_| Memory::memfd(3 << 20, true)).collect();
            let mut steps = vec![(init(), None)];
            for (i, mem) in regions.iter().enumerate() {
                steps.push((add_region(i as u16, 3 << 20), Some(mem.fd.as_fd())));
            }
            client.script(&steps)
        },
    );
}

/// A region above the 1 GiB a peer may share (a sparse memfd: it costs nothing here), and a region
/// announced larger than its file.
#[test]
fn an_oversized_region_or_one_larger_than_its_file_is_refused() {
    let mut bed = Bed::new(ServerConfig::default());
    let huge = (1usize << 30) + 4096;
    bed.refused("more than the 1073741824 accepted", |client| {
        let mem = Memory::memfd(huge, true);
        client.script(&[(init(), None), (add_region(0, huge), Some(mem.fd.as_fd()))])
    });
    bed.refused("fewer than the announced 8192", |client| {
        let mem = Memory::memfd(4096, true);
        client.script(&[(init(), None), (add_region(0, 8192), Some(mem.fd.as_fd()))])
    });
}

/// Region descriptors that are no file: a socket, a pipe, a directory, a character device, an eventfd.
#[test]
fn region_descriptors_of_the_wrong_kind_are_refused() {
    let mut bed = Bed::new(ServerConfig::default());
    for kind in [
        "a socket",
        "a pipe",
        "a directory",
        "a character device",
        "an anonymous inode",
    ] {
        bed.refused(
            &format!("not a regular file or memfd but {kind}"),
            |client| {
                let (fd, _other_end) = not_a_file(kind);
                client.script(&[(init(), None), (add_region(0, 4096), Some(fd.as_fd()))])
            },
        );
    }
}

/// Descriptors in bulk: 250 with INIT (which carries none) and 250 with ADD_REGION (which carries one),
/// more than the server's control buffer holds (the kernel then truncates the rest). The server keeps
/// the one descriptor a message may carry and closes every other that arrived, so a client cannot
/// exhaust our descriptors by sending them.
#[test]
fn descriptors_sent_in_bulk_are_all_closed() {
    let mut bed = Bed::new(ServerConfig::default());
    bed.refused("No S2M ring", |client| {
        let mem = Memory::memfd(4096, true);
        let copies: Vec<OwnedFd> = (0..250).map(|_| mem.fd.try_clone().expect("dup")).collect();
        let raw: Vec<RawFd> = copies.iter().map(AsRawFd::as_raw_fd).collect();
        client.send_fds(&init(), &raw);
        assert_eq!(client.recv(), Some(Message::Ack));
        client.send_fds(&add_region(0, 4096), &raw);
        assert_eq!(client.recv(), Some(Message::Ack));
        client.send(&connect_msg(), None);
        client.recv()
    });
}

/// Interrupt descriptors (ADD_RING) that are no eventfd: a pipe, a memfd, a directory, a socket. A
/// read or write on them could block a data-plane thread, or they could not be watched at all.
#[test]
fn interrupt_descriptors_that_are_not_eventfds_are_refused() {
    let mut bed = Bed::new(ServerConfig::default());
    for kind in ["a pipe", "a regular file", "a directory", "a socket"] {
        let reason = format!("Invalid interrupt fd of ring S2M 0: not an eventfd but {kind}");
        bed.refused(&reason, |client| {
            let mem = Memory::rings(true);
            let (fd, _other_end) = not_a_file(kind);
            client.script(&[
                (init(), None),
                (add_region(0, REGION), Some(mem.fd.as_fd())),
                (add_ring(true, S2M, LOG2), Some(fd.as_fd())),
            ])
        });
    }
}

/// Rings that do not fit their region (the region is smaller than the rings need), and a ring at an
/// offset atomics cannot use.
#[test]
fn a_region_smaller_than_its_rings_is_refused() {
    let mut bed = Bed::new(ServerConfig::default());
    bed.refused("does not fit in its region of 256 bytes", |client| {
        let small = Memory::memfd(256, true);
        let irq = eventfd();
        client.script(&[
            (init(), None),
            (add_region(0, 256), Some(small.fd.as_fd())),
            (add_ring(true, 0, LOG2), Some(irq.as_fd())),
        ])
    });
    // Room for the S2M ring, one byte short for the M2S ring after it.
    let short = 2 * ring_bytes(LOG2) - 1;
    bed.refused("does not fit in its region", |client| {
        let mem = Memory::memfd(short, true);
        let (irq_s2m, irq_m2s) = (eventfd(), eventfd());
        client.script(&[
            (init(), None),
            (add_region(0, short), Some(mem.fd.as_fd())),
            (add_ring(true, S2M, LOG2), Some(irq_s2m.as_fd())),
            (add_ring(false, M2S, LOG2), Some(irq_m2s.as_fd())),
        ])
    });
    bed.refused("not 8-byte aligned", |client| {
        let mem = Memory::rings(true);
        let (irq_s2m, irq_m2s) = (eventfd(), eventfd());
        client.script(&[
            (init(), None),
            (add_region(0, REGION), Some(mem.fd.as_fd())),
            (add_ring(true, S2M + 4, LOG2), Some(irq_s2m.as_fd())),
            (add_ring(false, M2S, LOG2), Some(irq_m2s.as_fd())),
            (connect_msg(), None),
        ])
    });
}

// ---- a connected client that breaks the ring rules ----

/// A `Write` into a shared buffer, to read what was logged.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<u8>>>);

impl Write for Log {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Log {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("log lock")).into_owned()
    }
}

/// S2M descriptors outside the region (past its end, across its end, in a region that does not exist,
/// with a length of 4 GiB) are dropped and counted, the good frame behind them arrives, and the first
/// such burst is logged once. M2S buffers posted outside the region are never written.
#[test]
fn descriptors_pointing_outside_the_region_are_dropped_counted_and_logged() {
    let mut bed = Bed::new(ServerConfig::default());
    let mem = Memory::rings(true);
    let (client, conn) = bed.connected(&mem);
    let (control, mut rx, mut tx) = conn.split();
    let far = 1u32 << 30;
    mem.desc(S2M, 0, 0, 0, 64, far);
    mem.desc(S2M, 1, 0, 0, 64, (REGION - 10) as u32);
    mem.desc(S2M, 2, 0, 7, 64, BUFFERS as u32);
    mem.desc(S2M, 3, 0, 0, u32::MAX, BUFFERS as u32);
    let good = test_frame(3, 500);
    mem.put_frame(4, &good, 0);
    mem.set_head(S2M, 5);

    let log = Log::default();
    let writer = log.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _logging = tracing::subscriber::set_default(subscriber);
    let mut bufs = Frame::batch(8, 9216);
    assert_eq!(rx[0].rx_burst(&mut bufs), 1);
    assert_eq!(bufs[0].as_slice(), &good[..]);
    assert_eq!(rx[0].stats().bad_descriptors, 4);
    assert_eq!(mem.tail(S2M), 5, "the bad slots are consumed too");
    // Again: counted, not logged again.
    mem.desc(S2M, 5, 0, 0, 64, far);
    mem.set_head(S2M, 6);
    assert_eq!(rx[0].rx_burst(&mut bufs), 0);
    assert_eq!(rx[0].stats().bad_descriptors, 5);
    let text = log.text();
    assert_eq!(
        text.matches("descriptors outside its regions").count(),
        1,
        "one warning per queue: {text}"
    );

    // M2S: the first posted buffer lies outside the region, the second is good.
    mem.desc(M2S, 0, 0, 0, BUF as u32, far);
    mem.desc(M2S, 1, 0, 0, BUF as u32, Memory::m2s_buffer(1) as u32);
    mem.set_head(M2S, 2);
    let frame = test_frame(4, 100);
    assert_eq!(tx[0].tx_burst(&[&frame[..]]), 1);
    assert_eq!(tx[0].stats().bad_descriptors, 1);
    assert_eq!(
        mem.desc_flags_length(M2S, 0),
        (NEXT, 0),
        "nothing written there"
    );
    assert_eq!(mem.desc_flags_length(M2S, 1), (0, 100));
    assert_eq!(mem.read(Memory::m2s_buffer(1), 100), frame);
    assert_eq!(mem.tail(M2S), 2);
    drop((client, control, rx, tx, mem));
    bed.unharmed();
}

/// The client's head jumps far beyond the ring, then backwards: the server never takes more than the
/// ring holds (in a burst bigger than the ring), on both rings, and counts it.
#[test]
fn ring_indices_that_jump_are_clamped_to_the_ring() {
    let mut bed = Bed::new(ServerConfig::default());
    let mem = Memory::rings(true);
    let (client, conn) = bed.connected(&mem);
    let (control, rx, mut tx) = conn.split();
    for slot in 0..SLOTS {
        mem.put_frame(slot, &test_frame(slot as u8, 60), 0);
    }
    // Far beyond: 40000 slots published in a 16-slot ring.
    mem.set_head(S2M, 40_000);
    let (q, _, n) = bounded_rx_burst(rx.into_iter().next().expect("one RX queue"), 64);
    assert_eq!(n, usize::from(SLOTS), "at most the ring");
    assert_eq!(mem.tail(S2M), SLOTS);
    assert_eq!(q.stats().bad_index, 1);
    // Backwards: head behind what was already consumed.
    mem.set_head(S2M, 3);
    let (q, _, n) = bounded_rx_burst(q, 64);
    assert!(n <= usize::from(SLOTS), "{n} frames");
    assert_eq!(mem.tail(S2M), 2 * SLOTS);
    assert_eq!(q.stats().bad_index, 2);

    // M2S: every buffer posted, head far beyond them.
    mem.post(0, SLOTS);
    mem.set_head(M2S, 50_000);
    let frames: Vec<Vec<u8>> = (0..64).map(|i| test_frame(i, 80)).collect();
    let taken = tx[0].tx_burst(&frames);
    assert_eq!(taken, usize::from(SLOTS), "at most the ring");
    assert_eq!(mem.tail(M2S), SLOTS);
    assert_eq!(tx[0].stats().bad_index, 1);
    drop((client, control, q, tx, mem));
    bed.unharmed();
}

/// Every slot says NEXT: while the chain's end may still come (fewer slots published than the ring
/// holds), the server waits; once the chain fills the ring, it is dropped and counted, and the frame
/// after it arrives.
#[test]
fn a_descriptor_chain_that_never_ends_is_dropped() {
    let mut bed = Bed::new(ServerConfig::default());
    let mem = Memory::rings(true);
    let (client, conn) = bed.connected(&mem);
    let (control, rx, tx) = conn.split();
    for slot in 0..SLOTS {
        mem.put_frame(slot, &test_frame(slot as u8, 100), NEXT);
    }
    mem.set_head(S2M, SLOTS / 2);
    let (q, _, n) = bounded_rx_burst(rx.into_iter().next().expect("one RX queue"), 8);
    assert_eq!(
        (n, mem.tail(S2M)),
        (0, 0),
        "half a chain: wait for the rest"
    );
    mem.set_head(S2M, SLOTS);
    let (q, _, n) = bounded_rx_burst(q, 8);
    assert_eq!(
        (n, mem.tail(S2M)),
        (0, SLOTS),
        "a chain as long as the ring is dropped"
    );
    assert_eq!(q.stats().bad_descriptors, 1);
    let good = test_frame(7, 700);
    mem.put_frame(SLOTS, &good, 0);
    mem.set_head(S2M, SLOTS + 1);
    let (q, bufs, n) = bounded_rx_burst(q, 8);
    assert_eq!(n, 1);
    assert_eq!(bufs[0].as_slice(), &good[..]);
    drop((client, control, q, tx, mem));
    bed.unharmed();
}
