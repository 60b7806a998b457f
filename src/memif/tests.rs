//! In-process tests of the two roles against each other (our client, our server, over a real socket and
//! real shared memory), and property tests that feed hostile control messages and descriptors.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use proptest::prelude::*;

use super::eventfd::EventFd;
use super::msg::{self, AddRegion, AddRing, Init, Message, Name, Secret};
use super::queue::{LinkState, OwnBuffers};
use super::region::Region;
use super::ring::{COOKIE, DESC_FLAG_NEXT, Desc, Ring, ring_bytes};
use super::server::{ServerHandshake, Step};
use super::socket::{ControlSocket, SocketAddr};
use super::*;

const TIMEOUT: Duration = Duration::from_secs(10);

fn server_cfg(id: u32) -> ServerConfig {
    ServerConfig {
        id,
        handshake_timeout: Duration::from_secs(2),
        ..ServerConfig::default()
    }
}

fn client_cfg(id: u32, queues: u16) -> ClientConfig {
    ClientConfig {
        id,
        rx_queues: queues,
        tx_queues: queues,
        handshake_timeout: Duration::from_secs(2),
        ..Default::default()
    }
}

/// A listener in a fresh directory, and its socket path.
fn listener(cfg: ServerConfig) -> (tempfile::TempDir, std::path::PathBuf, Listener) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("memif.sock");
    let l = Listener::bind(&path, cfg).unwrap();
    (dir, path, l)
}

/// Connects our client to our server; returns (server, client).
async fn pair(
    l: &mut Listener,
    path: &std::path::Path,
    cfg: &ClientConfig,
) -> (Connection, Connection) {
    let (s, c) = tokio::time::timeout(TIMEOUT, async {
        tokio::join!(l.accept_one(), Connection::connect(path, cfg))
    })
    .await
    .expect("handshake finishes");
    (s.unwrap(), c.unwrap())
}

/// A test frame: Ethernet-sized header and a payload that differs per frame and per byte.
fn frame(seq: usize, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (seq.wrapping_mul(31) ^ i.wrapping_mul(7) ^ (i >> 8)) as u8)
        .collect()
}

/// Sends every frame from `tx` and receives them on `rx` (same thread, alternating), checking
/// each arrives intact and in order.
fn transfer(tx: &mut TxQueue, rx: &mut RxQueue, frames: &[Vec<u8>]) {
    let mut bufs = Frame::batch(32, DEFAULT_FRAME_CAPACITY);
    let mut sent = 0;
    let mut got = 0;
    let mut idle = 0;
    while got < frames.len() {
        let end = (sent + 32).min(frames.len());
        sent += tx.tx_burst(&frames[sent..end]);
        let n = rx.rx_burst(&mut bufs);
        for b in &bufs[..n] {
            assert_eq!(
                b.as_slice(),
                &frames[got][..],
                "frame {got} of {} bytes",
                frames[got].len()
            );
            got += 1;
        }
        idle = if n == 0 { idle + 1 } else { 0 };
        assert!(
            idle < 1000,
            "stalled after {got} of {} frames",
            frames.len()
        );
    }
}

#[test]
fn queues_and_connections_can_move_to_other_threads() {
    fn send<T: Send>() {}
    send::<RxQueue>();
    send::<TxQueue>();
    send::<Connection>();
    send::<Control>();
    send::<Listener>();
}

#[tokio::test]
async fn client_and_server_exchange_frames_on_1_2_and_4_queues_with_chains_up_to_9000() {
    for queues in [1u16, 2, 4] {
        let (_dir, path, mut l) = listener(server_cfg(7));
        let (server, client) = pair(&mut l, &path, &client_cfg(7, queues)).await;
        assert_eq!(
            (server.rx_queue_count(), server.tx_queue_count()),
            (queues as usize, queues as usize)
        );
        assert_eq!(
            client.info().peer_app_name,
            ServerConfig::default().app_name
        );
        assert_eq!(server.info().peer_if_name, "memif0");
        let (_sc, mut srx, mut stx) = server.split();
        let (_cc, mut crx, mut ctx) = client.split();
        let sizes: Vec<usize> = (0..600)
            .map(|i| [60, 64, 1500, 2047, 2048, 2049, 4096, 9000][i % 8])
            .collect();
        for q in 0..usize::from(queues) {
            let frames: Vec<Vec<u8>> = sizes
                .iter()
                .enumerate()
                .map(|(i, &s)| frame(i + q, s))
                .collect();
            transfer(&mut ctx[q], &mut srx[q], &frames);
            transfer(&mut stx[q], &mut crx[q], &frames);
            let chained = sizes.iter().filter(|&&s| s > 2048).count() as u64;
            let bytes: u64 = sizes.iter().map(|&s| s as u64).sum();
            for stats in [
                ctx[q].stats(),
                srx[q].stats(),
                stx[q].stats(),
                crx[q].stats(),
            ] {
                assert_eq!(
                    (stats.packets, stats.bytes, stats.chained),
                    (600, bytes, chained),
                    "queue {q}: {stats:?}"
                );
                assert_eq!(
                    (stats.bad_descriptors, stats.too_long, stats.bad_index),
                    (0, 0, 0)
                );
            }
        }
    }
}

#[tokio::test]
async fn a_full_ring_refuses_the_rest_and_counts_it() {
    let (_dir, path, mut l) = listener(server_cfg(0));
    let cfg = ClientConfig {
        log2_ring_size: 4,
        ..client_cfg(0, 1)
    };
    let (server, client) = pair(&mut l, &path, &cfg).await;
    let (_s, mut srx, mut stx) = server.split();
    let (_c, mut crx, mut ctx) = client.split();
    let frames: Vec<Vec<u8>> = (0..20).map(|i| frame(i, 100)).collect();
    // Client TX: 16 slots.
    assert_eq!(ctx[0].tx_burst(&frames), 16);
    assert_eq!(ctx[0].stats().ring_full, 4);
    assert_eq!(ctx[0].free_slots(), 0);
    // Server TX into the 16 posted buffers: a 3-buffer chain takes 3 of them.
    let big = vec![frame(99, 5000)];
    assert_eq!(stx[0].tx_burst(&big), 1);
    assert_eq!(stx[0].tx_burst(&frames), 13);
    // A frame larger than the whole ring is taken and dropped, never sent.
    let mut bufs = Frame::batch(64, DEFAULT_FRAME_CAPACITY);
    assert_eq!(crx[0].rx_burst(&mut bufs), 14);
    assert_eq!(bufs[0].as_slice(), &big[0][..]);
    let huge = vec![vec![0u8; 2048 * 17]];
    assert_eq!(ctx[0].tx_burst(&huge), 1);
    assert_eq!(ctx[0].stats().too_long, 1);
    assert_eq!(srx[0].rx_burst(&mut bufs), 16);
    // A frame larger than the receiver's buffer is dropped and counted.
    assert_eq!(ctx[0].tx_burst(&[vec![1u8; 3000]]), 1);
    let mut small = Frame::batch(4, 1000);
    assert_eq!(srx[0].rx_burst(&mut small), 0);
    assert_eq!(srx[0].stats().too_long, 1);
}

#[tokio::test]
async fn interrupts_follow_the_mask_flag_both_ways() {
    let (_dir, path, mut l) = listener(server_cfg(0));
    let (server, client) = pair(&mut l, &path, &client_cfg(0, 1)).await;
    let (_s, mut srx, _stx) = server.split();
    let (_c, _crx, mut ctx) = client.split();
    let irq = srx[0].interrupt().unwrap();
    // Interrupt mode (the default): one signal per burst.
    assert!(ctx[0].peer_wants_interrupts());
    let waiter = tokio::spawn(async move { irq.wait().await.unwrap() });
    assert_eq!(ctx[0].tx_burst(&[frame(1, 60), frame(2, 60)]), 2);
    assert_eq!(
        tokio::time::timeout(TIMEOUT, waiter)
            .await
            .unwrap()
            .unwrap(),
        1
    );
    // Polling mode: the producer sees the mask and does not signal.
    srx[0].set_interrupt_mode(false);
    assert!(srx[0].has_pending());
    assert!(!ctx[0].peer_wants_interrupts());
    assert_eq!(ctx[0].tx_burst(&[frame(3, 60)]), 1);
    assert_eq!(srx[0].clear_interrupt().unwrap(), 0);
    let mut bufs = Frame::batch(8, 2048);
    assert_eq!(srx[0].rx_burst(&mut bufs), 3);
    assert!(!srx[0].has_pending());
    // Back to interrupts: nothing waiting, so it is safe to sleep on the eventfd.
    assert!(!srx[0].arm_interrupt());
    assert!(ctx[0].peer_wants_interrupts());
    // A frame published while we were still polling is reported by arm_interrupt.
    srx[0].set_interrupt_mode(false);
    assert_eq!(ctx[0].tx_burst(&[frame(4, 60)]), 1);
    assert!(
        srx[0].arm_interrupt(),
        "the frame sent unsignalled must not be missed"
    );
    assert_eq!(srx[0].rx_burst(&mut bufs), 1);
}

#[tokio::test]
async fn disconnect_reasons_travel_both_ways_and_the_server_accepts_the_next_client() {
    let (_dir, path, mut l) = listener(server_cfg(3));
    for round in 0..3 {
        let (server, client) = pair(&mut l, &path, &client_cfg(3, 1)).await;
        let (mut sc, srx, _) = server.split();
        let (mut cc, _, _) = client.split();
        match round {
            0 => {
                cc.disconnect("client leaves").await;
                let d = tokio::time::timeout(TIMEOUT, sc.closed()).await.unwrap();
                assert_eq!((d.by_peer, d.reason.as_str()), (true, "client leaves"));
            }
            1 => {
                sc.disconnect("server leaves").await;
                let d = tokio::time::timeout(TIMEOUT, cc.closed()).await.unwrap();
                assert_eq!((d.by_peer, d.reason.as_str()), (true, "server leaves"));
            }
            _ => {
                // The client vanishes without a word.
                drop(cc);
                let d = tokio::time::timeout(TIMEOUT, sc.closed()).await.unwrap();
                assert!(d.by_peer, "{d:?}");
            }
        }
        assert!(!srx[0].is_connected());
    }
}

#[tokio::test]
async fn wrong_secret_wrong_id_and_second_client_are_refused_with_reasons() {
    let cfg = ServerConfig {
        secret: Some("right".into()),
        ..server_cfg(5)
    };
    let (_dir, path, mut l) = listener(cfg);
    let cases: [(ClientConfig, &str); 3] = [
        (
            ClientConfig {
                secret: Some("wrong".into()),
                ..client_cfg(5, 1)
            },
            "Incorrect secret",
        ),
        (client_cfg(5, 1), "Secret required"),
        (
            ClientConfig {
                secret: Some("right".into()),
                ..client_cfg(6, 1)
            },
            "ID not found",
        ),
    ];
    for (ccfg, reason) in cases {
        let (s, c) = tokio::join!(l.accept_one(), Connection::connect(&path, &ccfg));
        let s = s.unwrap_err();
        assert!(s.to_string().contains(reason), "server: {s}");
        match c.unwrap_err() {
            Error::Refused { reason: r, .. } => assert!(r.starts_with(reason), "{r}"),
            other => panic!("client should be refused, got {other}"),
        }
    }
    let good = ClientConfig {
        secret: Some("right".into()),
        ..client_cfg(5, 1)
    };
    // A client that leaves while nobody watches its connection does not block the next one.
    let (server, client) = pair(&mut l, &path, &good).await;
    drop(client);
    let (server2, _client2) = pair(&mut l, &path, &good).await;
    let (_control, old_rx, _) = server.split();
    assert!(
        !old_rx[0].is_connected(),
        "the unwatched connection is marked down"
    );
    drop(server2);
    let (_server, _client) = pair(&mut l, &path, &good).await;
    let (s, c) = tokio::join!(l.accept_one(), Connection::connect(&path, &good));
    assert!(matches!(
        s,
        Err(Error::Protocol(ProtocolError::AlreadyConnected))
    ));
    assert!(matches!(c, Err(Error::Refused { .. })));
}

/// `peer_uid`: the kernel's SO_PEERCRED decides, before the handshake; a stranger hears why it is refused.
#[tokio::test]
async fn only_the_allowed_uid_may_connect() {
    let me = nix::unistd::geteuid().as_raw();
    let (_dir, path, mut l) = listener(ServerConfig {
        peer_uid: Some(me.wrapping_add(1)),
        ..server_cfg(5)
    });
    let client = client_cfg(5, 1);
    let (s, c) = tokio::join!(l.accept_one(), Connection::connect(&path, &client));
    assert!(
        matches!(s, Err(Error::Protocol(ProtocolError::PeerUid { uid, .. })) if uid == me),
        "{s:?}"
    );
    match c.unwrap_err() {
        Error::Refused { reason, .. } => assert!(reason.contains("may not connect"), "{reason}"),
        other => panic!("the client should be refused, got {other}"),
    }
    let (_dir, path, mut l) = listener(ServerConfig {
        peer_uid: Some(me),
        ..server_cfg(5)
    });
    let _connected = pair(&mut l, &path, &client_cfg(5, 1)).await;
}

#[tokio::test]
async fn client_retries_until_the_server_appears() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("late.sock");
    let retry = Retry {
        initial: Duration::from_millis(20),
        max: Duration::from_millis(100),
        deadline: Some(TIMEOUT),
    };
    let cfg = client_cfg(1, 1);
    let client = tokio::spawn({
        let path = path.clone();
        async move { Connection::connect_with_retry(&path, &cfg, retry).await }
    });
    tokio::time::sleep(Duration::from_millis(250)).await;
    let mut l = Listener::bind(&path, server_cfg(1)).unwrap();
    let server = tokio::time::timeout(TIMEOUT, l.accept())
        .await
        .unwrap()
        .unwrap();
    let client = client.await.unwrap().unwrap();
    assert_eq!(server.info().id, client.info().id);
    // With nobody listening and a short deadline, it gives up with the socket error.
    drop(l);
    let retry = Retry {
        deadline: Some(Duration::from_millis(200)),
        ..retry
    };
    let err = Connection::connect_with_retry(&path, &client_cfg(1, 1), retry)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Socket { .. }), "{err}");
}

/// Talks raw protocol bytes to our server, as a broken or hostile client would.
async fn raw_client(path: &std::path::Path) -> ControlSocket {
    let sock = ControlSocket::connect(&SocketAddr::parse(path))
        .await
        .unwrap();
    let mut frame = [0u8; msg::MSG_SIZE];
    let (n, _) = sock.recv(&mut frame).await.unwrap();
    assert!(matches!(Message::parse(&frame[..n]), Ok(Message::Hello(_))));
    sock
}

async fn send(sock: &ControlSocket, m: Message) {
    let mut frame = [0u8; msg::MSG_SIZE];
    m.emit(&mut frame);
    sock.send(&frame, None).await.unwrap();
}

async fn recv(sock: &ControlSocket) -> Option<Message> {
    let mut frame = [0u8; msg::MSG_SIZE];
    let (n, _) = tokio::time::timeout(TIMEOUT, sock.recv(&mut frame))
        .await
        .unwrap()
        .unwrap();
    (n > 0).then(|| Message::parse(&frame[..n]).unwrap())
}

#[tokio::test]
async fn malformed_messages_get_a_disconnect_naming_the_problem() {
    let (_dir, path, mut l) = listener(server_cfg(0));
    let init = Init {
        version: msg::VERSION,
        id: 0,
        mode: 0,
        secret: Secret::default(),
        name: Name::new("raw"),
    };
    type Script = Vec<Message>;
    let cases: Vec<(Script, &str)> = vec![
        (vec![Message::Ack], "Unexpected message ACK"),
        (
            vec![Message::Init(Init {
                version: 0x0100,
                ..init
            })],
            "Unsupported version",
        ),
        (
            vec![Message::Init(Init { mode: 1, ..init })],
            "Only ethernet mode supported",
        ),
        (
            vec![
                Message::Init(init),
                Message::AddRegion(AddRegion {
                    index: 0,
                    size: 4096,
                }),
            ],
            "Missing region fd",
        ),
        (
            vec![
                Message::Init(init),
                Message::AddRegion(AddRegion {
                    index: 1,
                    size: 4096,
                }),
            ],
            "Invalid region index 1",
        ),
        (
            vec![Message::Init(init), Message::Connect(Name::new("x"))],
            "No S2M ring",
        ),
        (
            vec![
                Message::Init(init),
                Message::AddRing(AddRing {
                    flags: 1,
                    index: 0,
                    region: 0,
                    offset: 0,
                    log2_ring_size: 10,
                    private_hdr_size: 0,
                }),
            ],
            "region index 0 out of range",
        ),
    ];
    for (script, reason) in cases {
        let server = tokio::spawn(async move {
            let r = l.accept_one().await;
            (l, r)
        });
        let sock = raw_client(&path).await;
        let mut answer = None;
        for m in script {
            send(&sock, m).await;
            answer = recv(&sock).await;
            if !matches!(answer, Some(Message::Ack)) {
                break;
            }
        }
        let Some(Message::Disconnect(d)) = answer else {
            panic!("{reason}: got {answer:?}")
        };
        assert!(
            d.reason.to_string_lossy().contains(reason),
            "{} does not say {reason}",
            d.reason
        );
        assert_eq!(
            recv(&sock).await,
            None,
            "the server closes after DISCONNECT"
        );
        let (back, r) = server.await.unwrap();
        l = back;
        assert!(matches!(r, Err(Error::Protocol(_))), "{r:?}");
    }
    // A wrong-sized message, and an unknown type.
    for (bytes, reason) in [
        (vec![0u8; 64], "Invalid message size 64"),
        (vec![9u8; 128], "Unknown message type"),
    ] {
        let server = tokio::spawn(async move {
            let r = l.accept_one().await;
            (l, r)
        });
        let sock = raw_client(&path).await;
        sock.send_bytes(&bytes).await.unwrap();
        let Some(Message::Disconnect(d)) = recv(&sock).await else {
            panic!("{reason}: no DISCONNECT")
        };
        assert!(d.reason.to_string_lossy().contains(reason), "{}", d.reason);
        let (back, r) = server.await.unwrap();
        l = back;
        assert!(r.is_err());
    }
    // A client that says nothing is timed out; one that vanishes mid-handshake is let go.
    let server = tokio::spawn(async move {
        let r = l.accept_one().await;
        (l, r)
    });
    let sock = raw_client(&path).await;
    assert!(matches!(recv(&sock).await, Some(Message::Disconnect(_))));
    let (mut l, r) = server.await.unwrap();
    assert!(matches!(r, Err(Error::Timeout(_))), "{r:?}");
    let server = tokio::spawn(async move { l.accept_one().await });
    let sock = raw_client(&path).await;
    send(&sock, Message::Init(init)).await;
    assert_eq!(recv(&sock).await, Some(Message::Ack));
    drop(sock);
    assert!(matches!(server.await.unwrap(), Err(Error::PeerClosed(_))));
}

// ---- property tests: hostile input never panics and never escapes a region ----

/// One random control message, with the fd the message kind would carry (sometimes left out).
fn arb_message() -> impl Strategy<Value = (Message, bool, u64)> {
    let small = prop_oneof![Just(0u16), Just(1u16), any::<u16>()];
    let init = (
        prop_oneof![Just(msg::VERSION), any::<u16>()],
        prop_oneof![Just(0u32), any::<u32>()],
        0u8..3,
    )
        .prop_map(|(version, id, mode)| {
            Message::Init(Init {
                version,
                id,
                mode,
                secret: Secret::default(),
                name: Name::new("p"),
            })
        });
    let region = (
        small.clone(),
        prop_oneof![
            Just(4096u64),
            Just(ring_bytes(4) as u64 * 2),
            0u64..100_000,
            any::<u64>()
        ],
    )
        .prop_map(|(index, size)| Message::AddRegion(AddRegion { index, size }));
    let ring = (
        0u16..2,
        small.clone(),
        small,
        prop_oneof![Just(0u32), any::<u32>(), 0u32..5000],
        0u8..16,
        prop_oneof![Just(0u16), any::<u16>()],
    )
        .prop_map(
            |(flags, index, region, offset, log2_ring_size, private_hdr_size)| {
                Message::AddRing(AddRing {
                    flags,
                    index,
                    region,
                    offset,
                    log2_ring_size,
                    private_hdr_size,
                })
            },
        );
    let msg = prop_oneof![
        Just(Message::Ack),
        init,
        region,
        ring,
        Just(Message::Connect(Name::new("x"))),
        Just(Message::Connected(Name::new("x"))),
        Just(Message::disconnect(1, "bye")),
    ];
    (msg, any::<bool>(), 0u64..20_000)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// Random message sequences (valid ones included) never panic the server; when a CONNECT is
    /// accepted, `finish` either refuses (cookies, bounds) or builds queues that work.
    #[test]
    fn server_handshake_survives_random_messages(script in proptest::collection::vec(arb_message(), 1..12)) {
        let cfg = ServerConfig::default();
        let mut hs = ServerHandshake::new(&cfg, Secret::default());
        let mut keep: Vec<Region> = Vec::new();
        for (m, with_fd, file_len) in script {
            let fd = match m {
                Message::AddRegion(_) if with_fd => {
                    let r = Region::create("prop", file_len.max(1) as usize).unwrap();
                    let fd = r.fd().unwrap().try_clone_to_owned().unwrap();
                    keep.push(r);
                    Some(fd)
                }
                Message::AddRing(_) if with_fd => Some(EventFd::new().unwrap().try_clone().unwrap()),
                _ => None,
            };
            match hs.on_message(m, fd) {
                Ok(Step::Reply(reply)) => prop_assert_eq!(reply, Message::Ack),
                Ok(Step::Connect) => {
                    let link = Arc::new(LinkState::default());
                    if let Ok((_, mut rx, mut tx)) = hs.finish(&link) {
                        let mut bufs = Frame::batch(8, 2048);
                        for q in &mut rx { q.rx_burst(&mut bufs); }
                        for q in &mut tx { q.tx_burst(&[[0u8; 64]]); }
                    }
                    return Ok(());
                }
                Err(e) => {
                    prop_assert!(!e.to_string().is_empty());
                    return Ok(());
                }
            }
        }
    }

    /// A hostile client writes random descriptors and a random head into an S2M ring: the server's
    /// rx_burst never panics, delivers only frames made of in-bounds bytes, and every slot it consumes
    /// is accounted for.
    #[test]
    fn server_rx_survives_random_descriptors(
        descs in proptest::collection::vec((0u16..4, 0u16..3, any::<u32>(), prop_oneof![0u32..70_000, any::<u32>()], 0u32..5000), 16),
        head in any::<u16>(),
    ) {
        let (regions, ring) = hostile_ring(4);
        for (slot, &(flags, region, length, offset, small_len)) in descs.iter().enumerate() {
            let length = if flags & 2 == 0 { small_len } else { length };
            ring.set_desc(slot as u16, Desc { flags: flags & DESC_FLAG_NEXT, region, length, offset });
        }
        ring.head().store(head, Ordering::Release);
        let mut q = RxQueue::new(0, ring.clone(), regions.clone(), EventFd::new().unwrap(), Arc::default(), None);
        let mut bufs = Frame::batch(64, 9216);
        let n = q.rx_burst(&mut bufs);
        let stats = q.stats();
        prop_assert_eq!(stats.packets as usize, n);
        prop_assert!(bufs[..n].iter().all(|b| !b.is_empty() && b.len() <= 9216));
        // Never more consumed than the ring holds.
        let consumed = ring.tail().load(Ordering::Acquire);
        prop_assert!(consumed <= 16);
    }

    /// A hostile server posts back random descriptors and a random tail on an M2S ring: the client's
    /// rx_burst never panics, and it re-posts its own buffers with flags 0 afterwards.
    #[test]
    fn client_rx_survives_random_descriptors(
        descs in proptest::collection::vec((0u16..2, 0u16..3, prop_oneof![0u32..3000, any::<u32>()], any::<u32>()), 16),
        tail in any::<u16>(),
    ) {
        let (regions, ring) = hostile_ring(4);
        let own = OwnBuffers { region: 0, base: 4096, size: 2048 };
        let mut q = RxQueue::new(0, ring.clone(), regions.clone(), EventFd::new().unwrap(), Arc::default(), Some(own));
        prop_assert_eq!(ring.head().load(Ordering::Acquire), 16, "the whole ring is posted");
        for (slot, &(flags, region, length, offset)) in descs.iter().enumerate() {
            ring.set_desc(slot as u16, Desc { flags, region, length, offset });
        }
        ring.tail().store(tail, Ordering::Release);
        let mut bufs = Frame::batch(64, 9216);
        let n = q.rx_burst(&mut bufs);
        prop_assert_eq!(q.stats().packets as usize, n);
        // Every consumed slot is posted again with our own buffer and flags 0 (the stale-NEXT fix).
        let consumed = ring.head().load(Ordering::Acquire).wrapping_sub(16);
        prop_assert!(consumed <= 16);
        for slot in 0..consumed {
            prop_assert_eq!(ring.desc(slot), Desc { flags: 0, region: 0, length: 2048, offset: 4096 + 2048 * u32::from(slot) });
        }
    }

    /// A hostile client posts random M2S descriptors: the server's tx_burst writes only inside the
    /// region (checked by a guard pattern outside every posted range) and never panics.
    #[test]
    fn server_tx_survives_random_posted_buffers(
        descs in proptest::collection::vec((0u16..2, prop_oneof![0u32..4000, any::<u32>()], prop_oneof![4096u32..60_000, any::<u32>()]), 16),
        head in any::<u16>(),
        sizes in proptest::collection::vec(1usize..5000, 1..20),
    ) {
        let (regions, ring) = hostile_ring(4);
        for (slot, &(region, length, offset)) in descs.iter().enumerate() {
            ring.set_desc(slot as u16, Desc { flags: 1, region, length, offset });
        }
        ring.head().store(head, Ordering::Release);
        let mut q = TxQueue::new(0, ring.clone(), regions.clone(), EventFd::new().unwrap(), Arc::default(), None);
        let frames: Vec<Vec<u8>> = sizes.iter().map(|&s| vec![0xee; s]).collect();
        let taken = q.tx_burst(&frames);
        prop_assert!(taken <= frames.len());
        // Region and offset of every descriptor stay what the client posted.
        for (slot, &(region, _, offset)) in descs.iter().enumerate() {
            let d = ring.desc(slot as u16);
            prop_assert_eq!((d.region, d.offset), (region, offset));
        }
    }
}

/// One 64 KiB region holding a 16-slot ring at offset 0 (cookie set), for the hostile-ring tests.
fn hostile_ring(log2: u8) -> (Arc<[Region]>, Ring) {
    let regions: Arc<[Region]> = Arc::from(vec![Region::create("hostile", 65_536).unwrap()]);
    let ring = Ring::new(regions.clone(), 0, 0, log2).unwrap();
    ring.init();
    assert_eq!(ring.cookie(), COOKIE);
    (regions, ring)
}

/// A client laid out as libmemif and VPP's zero-copy mode do: rings alone in region 0, buffers in
/// region 1 at offsets that are not multiples of the buffer size, posted with headroom and with stale
/// flags. The server must follow each descriptor's (region, offset, length) and assign every flag.
#[tokio::test]
async fn server_follows_descriptors_into_a_second_region_and_assigns_flags() {
    let (_dir, path, mut l) = listener(server_cfg(0));
    let server = tokio::spawn(async move { l.accept_one().await });
    let sock = raw_client(&path).await;
    let regions: Arc<[Region]> = Arc::from(vec![
        Region::create("rings", 2 * ring_bytes(4)).unwrap(),
        Region::create("buffers", 40 * 2048).unwrap(),
    ]);
    let s2m = Ring::new(regions.clone(), 0, 0, 4).unwrap();
    let m2s = Ring::new(regions.clone(), 0, ring_bytes(4) as u32, 4).unwrap();
    s2m.init();
    m2s.init();
    let (s2m_irq, m2s_irq) = (EventFd::new().unwrap(), EventFd::new().unwrap());
    let init = Init {
        version: msg::VERSION,
        id: 0,
        mode: 0,
        secret: Secret::default(),
        name: Name::new("libmemif-like"),
    };
    let ring_msg = |flags, offset| AddRing {
        flags,
        index: 0,
        region: 0,
        offset,
        log2_ring_size: 4,
        private_hdr_size: 0,
    };
    let steps: Vec<(Message, Option<std::os::fd::BorrowedFd<'_>>)> = vec![
        (Message::Init(init), None),
        (
            Message::AddRegion(AddRegion {
                index: 0,
                size: regions[0].len() as u64,
            }),
            regions[0].fd(),
        ),
        (
            Message::AddRegion(AddRegion {
                index: 1,
                size: regions[1].len() as u64,
            }),
            regions[1].fd(),
        ),
        (
            Message::AddRing(ring_msg(1, 0)),
            Some(std::os::fd::AsFd::as_fd(&s2m_irq)),
        ),
        (
            Message::AddRing(ring_msg(0, ring_bytes(4) as u32)),
            Some(std::os::fd::AsFd::as_fd(&m2s_irq)),
        ),
        (Message::Connect(Name::new("memif0/0")), None),
    ];
    for (i, (m, fd)) in steps.iter().enumerate() {
        let mut frame = [0u8; msg::MSG_SIZE];
        m.emit(&mut frame);
        sock.send(&frame, *fd).await.unwrap();
        let want = if i + 1 == steps.len() {
            "CONNECTED"
        } else {
            "ACK"
        };
        let got = recv(&sock).await.unwrap();
        assert_eq!(got.name(), want, "answer to {}: {got:?}", m.name());
    }
    let conn = server.await.unwrap().unwrap();
    assert_eq!(conn.info().regions, 2);
    assert_eq!(conn.info().peer_if_name, "memif0/0");
    let (_control, mut rx, mut tx) = conn.split();

    // Client -> server: a single frame and a two-descriptor chain, all in region 1 at odd offsets.
    let (a, b) = (frame(1, 300), frame(2, 3000));
    let place = |slot: u16, offset: u32, bytes: &[u8], flags: u16| {
        regions[1].write(offset as usize, bytes).unwrap();
        s2m.set_desc(
            slot,
            Desc {
                flags,
                region: 1,
                length: bytes.len() as u32,
                offset,
            },
        );
    };
    place(0, 100 + 128, &a, 0);
    place(1, 100 + 2048 + 128, &b[..1900], DESC_FLAG_NEXT);
    place(2, 100 + 2 * 2048 + 128, &b[1900..], 0);
    s2m.head().store(3, Ordering::Release);
    let mut bufs = Frame::batch(8, DEFAULT_FRAME_CAPACITY);
    assert_eq!(rx[0].rx_burst(&mut bufs), 2);
    assert_eq!((bufs[0].as_slice(), bufs[1].as_slice()), (&a[..], &b[..]));
    assert_eq!(
        s2m.tail().load(Ordering::Acquire),
        3,
        "the server releases what it read"
    );

    // Server -> client: buffers posted with 64 bytes of headroom, capacity 1000, and stale NEXT flags.
    for slot in 0..4u16 {
        let offset = 20 * 2048 + u32::from(slot) * 2048 + 64;
        m2s.set_desc(
            slot,
            Desc {
                flags: DESC_FLAG_NEXT,
                region: 1,
                length: 1000,
                offset,
            },
        );
    }
    m2s.head().store(4, Ordering::Release);
    let (c, d) = (frame(3, 1500), frame(4, 100));
    assert_eq!(tx[0].tx_burst(&[&c, &d]), 2);
    assert_eq!(m2s.tail().load(Ordering::Acquire), 3);
    let got: Vec<Desc> = (0..3).map(|s| m2s.desc(s)).collect();
    assert_eq!(
        got.iter().map(|d| (d.flags, d.length)).collect::<Vec<_>>(),
        [(1, 1000), (0, 500), (0, 100)]
    );
    let read = |d: &Desc| {
        assert_eq!(d.region, 1, "the server never moves a posted buffer");
        let mut v = vec![0u8; d.length as usize];
        regions[1].read(d.offset as usize, &mut v).unwrap();
        v
    };
    assert_eq!([read(&got[0]), read(&got[1])].concat(), c);
    assert_eq!(read(&got[2]), d);
    assert_eq!(
        m2s_irq.drain().unwrap(),
        1,
        "one signal per burst, the client did not mask"
    );
    assert_eq!(tx[0].stats().chained, 1);
}

/// Refusals that need real fds: a ring index beyond what was asked for, a ring outside its region, a
/// region the fd cannot back, and a ring whose cookie is wrong (checked at CONNECT).
#[tokio::test]
async fn rings_and_regions_that_do_not_add_up_are_refused() {
    let (_dir, path, mut l) = listener(ServerConfig {
        max_queues: 2,
        ..server_cfg(0)
    });
    let memfd = Region::create("zeroed", 2 * ring_bytes(4)).unwrap(); // no cookies written
    let irq = EventFd::new().unwrap();
    let init = Message::Init(Init {
        version: msg::VERSION,
        id: 0,
        mode: 0,
        secret: Secret::default(),
        name: Name::new("raw"),
    });
    let region = |size: u64| Message::AddRegion(AddRegion { index: 0, size });
    let ring = |flags, index, offset| {
        Message::AddRing(AddRing {
            flags,
            index,
            region: 0,
            offset,
            log2_ring_size: 4,
            private_hdr_size: 0,
        })
    };
    let size = memfd.len() as u64;
    let cases: Vec<(Vec<Message>, &str)> = vec![
        (
            vec![init, region(size), ring(1, 1, 0)],
            "Invalid ring index 1",
        ),
        (
            vec![
                init,
                region(size),
                ring(1, 0, 0),
                ring(1, 1, 0),
                ring(1, 2, 0),
            ],
            "Invalid ring index 2",
        ),
        (
            vec![init, region(size), ring(1, 0, ring_bytes(4) as u32 + 8)],
            "does not fit in its region",
        ),
        (vec![init, region(size * 4)], "fewer than the announced"),
        (
            vec![
                init,
                region(size),
                ring(1, 0, 0),
                ring(0, 0, ring_bytes(4) as u32),
                Message::Connect(Name::new("x")),
            ],
            "cookie",
        ),
        (
            vec![
                init,
                region(size),
                Message::AddRing(AddRing {
                    private_hdr_size: 8,
                    ..ring_fields(1)
                }),
            ],
            "Private header",
        ),
    ];
    for (script, reason) in cases {
        let server = tokio::spawn(async move {
            let r = l.accept_one().await;
            (l, r)
        });
        let sock = raw_client(&path).await;
        let mut answer = None;
        for m in script {
            let fd = match m {
                Message::AddRegion(_) => memfd.fd(),
                Message::AddRing(_) => Some(std::os::fd::AsFd::as_fd(&irq)),
                _ => None,
            };
            let mut frame = [0u8; msg::MSG_SIZE];
            m.emit(&mut frame);
            sock.send(&frame, fd).await.unwrap();
            answer = recv(&sock).await;
            if !matches!(answer, Some(Message::Ack)) {
                break;
            }
        }
        let Some(Message::Disconnect(d)) = answer else {
            panic!("{reason}: got {answer:?}")
        };
        assert!(
            d.reason.to_string_lossy().contains(reason),
            "{} does not say {reason}",
            d.reason
        );
        let (back, r) = server.await.unwrap();
        l = back;
        assert!(matches!(r, Err(Error::Protocol(_))), "{r:?}");
    }
}

fn ring_fields(flags: u16) -> AddRing {
    AddRing {
        flags,
        index: 0,
        region: 0,
        offset: 0,
        log2_ring_size: 4,
        private_hdr_size: 0,
    }
}
