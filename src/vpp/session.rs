//! One registered connection to VPP's API socket, below [`super::Client`]: the `sockclnt_create`
//! handshake and the check of every used `name_crc` against VPP's message table, requests and dumps
//! matched by context, and the reader task that routes each incoming message (events by id, everything
//! else by context) to whoever waits for it. When the socket closes, every waiter is woken with
//! [`VppError::Disconnected`].

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;
use tokio::net::unix::OwnedWriteHalf;
use tokio::sync::{broadcast, oneshot, watch};
use tokio::task::JoinHandle;

use super::codec::{self, Dump, Header, Message, Reply, Request, split_name_crc};
use super::error::{ApiError, MessageMismatch, VppError};
use super::frame::{self, FrameReader};
use super::messages::{self, *};

/// How to reach VPP.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// The API socket (`VPP_API_SOCKET_PATH`).
    pub socket_path: PathBuf,
    /// The name VPP shows for this client (at most 63 bytes).
    pub client_name: String,
    /// The longest wait for any one answer.
    pub call_timeout: Duration,
    /// How long to keep retrying the first connection (VPP may start after us); zero tries once.
    pub connect_deadline: Duration,
}

impl ClientOptions {
    /// Options for `socket_path` with a 5 s call timeout and a 60 s connect deadline.
    pub fn new(socket_path: impl Into<PathBuf>) -> Self {
        Self {
            socket_path: socket_path.into(),
            client_name: "wireguard-vpp".to_owned(),
            call_timeout: Duration::from_secs(5),
            connect_deadline: Duration::from_secs(60),
        }
    }
}

/// Most details one dump may bring, and their most bytes: VPP's answers are bounded like any peer's.
const MAX_DUMP_DETAILS: usize = 1 << 16;
const MAX_DUMP_BYTES: usize = 64 << 20;
const DUMP_LIMIT: &str = "65536 details or 64 MiB";

/// What a caller waits for, by context.
enum Pending {
    Reply(oneshot::Sender<Vec<u8>>),
    Dump {
        details: Vec<Vec<u8>>,
        bytes: usize,
        /// The details, or `None` when they went past the limits.
        done: oneshot::Sender<Option<Vec<Vec<u8>>>>,
    },
}

/// One registered connection.
pub(crate) struct Session {
    pub(crate) client_index: u32,
    ids: HashMap<&'static str, u16>,
    writer: tokio::sync::Mutex<OwnedWriteHalf>,
    pending: Arc<Mutex<HashMap<u32, Pending>>>,
    next_context: AtomicU32,
    closed: watch::Sender<bool>,
    reader: JoinHandle<()>,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl Session {
    /// Connects and registers, retrying with backoff until `connect_deadline` while VPP is not up yet (no
    /// socket, connection refused, or a connection dropped during the handshake). Other failures, such as
    /// a permission problem or an incompatible message table, are returned at once.
    pub(crate) async fn connect_with_retry(
        options: &ClientOptions,
        events: broadcast::Sender<SwInterfaceEvent>,
    ) -> Result<Self, VppError> {
        let deadline = tokio::time::Instant::now() + options.connect_deadline;
        let mut backoff = Duration::from_millis(100);
        let mut attempts = 0;
        loop {
            attempts += 1;
            let error = match UnixStream::connect(&options.socket_path).await {
                Ok(stream) => match Self::register(stream, options, events.clone()).await {
                    Err(e @ (VppError::Disconnected | VppError::Io { .. })) => e,
                    done => return done,
                },
                Err(source) if not_up_yet(&source) => VppError::Connect {
                    path: options.socket_path.clone(),
                    attempts,
                    source,
                },
                Err(source) => {
                    return Err(VppError::Connect {
                        path: options.socket_path.clone(),
                        attempts,
                        source,
                    });
                }
            };
            if tokio::time::Instant::now() + backoff > deadline {
                return Err(error);
            }
            if attempts == 1 {
                // Said at once and at the default level: a wait in silence looks like a hang.
                tracing::warn!(
                    path = %options.socket_path.display(),
                    %error,
                    wait_seconds = options.connect_deadline.as_secs_f64(),
                    "VPP's API socket does not answer yet; waiting for VPP"
                );
            } else {
                tracing::debug!(path = %options.socket_path.display(), %error, "VPP API not ready, retrying");
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    }

    /// The `sockclnt_create` handshake, then the message-table check, then the reader task.
    async fn register(
        stream: UnixStream,
        options: &ClientOptions,
        events: broadcast::Sender<SwInterfaceEvent>,
    ) -> Result<Self, VppError> {
        let (read_half, mut write_half) = stream.into_split();
        let mut reader = FrameReader::new(read_half);
        let header = Header {
            msg_id: SOCKCLNT_CREATE_ID,
            client_index: 0,
            context: 1,
        };
        let create = SockclntCreate {
            name: options.client_name.clone(),
        };
        write_message(&mut write_half, header, &create).await?;

        let wait = async {
            loop {
                let Some(body) = reader.read_body().await? else {
                    return Err(VppError::Disconnected);
                };
                if codec::peek_msg_id(&body) == Some(SOCKCLNT_CREATE_REPLY_ID) {
                    return Ok(codec::decode_message::<SockclntCreateReply>(&body)?.1);
                }
            }
        };
        let reply = tokio::time::timeout(options.call_timeout, wait)
            .await
            .map_err(|_| VppError::Timeout {
                message: SockclntCreate::name(),
                after: options.call_timeout,
            })??;
        if reply.response != 0 {
            return Err(VppError::Handshake {
                response: reply.response,
            });
        }
        let ids = check_message_table(&reply.message_table)?;
        tracing::debug!(
            client_index = reply.index,
            messages = reply.message_table.len(),
            "registered with VPP"
        );

        let pending = Arc::new(Mutex::new(HashMap::new()));
        let (closed, _) = watch::channel(false);
        let id = |name_crc| {
            ids.get(name_crc)
                .copied()
                .ok_or(VppError::UnknownMessage { name_crc })
        };
        let routes = Routes {
            control_ping_reply: id(ControlPingReply::NAME_CRC)?,
            sw_interface_event: id(SwInterfaceEvent::NAME_CRC)?,
            pending: Arc::clone(&pending),
            events,
            closed: closed.clone(),
        };
        let reader = tokio::spawn(routes.run(reader));
        Ok(Self {
            client_index: reply.index,
            ids,
            writer: tokio::sync::Mutex::new(write_half),
            pending,
            next_context: AtomicU32::new(2),
            closed,
            reader,
        })
    }

    /// Follows whether the connection has closed.
    pub(crate) fn closed_watch(&self) -> watch::Receiver<bool> {
        self.closed.subscribe()
    }

    pub(crate) fn is_closed(&self) -> bool {
        *self.closed.borrow()
    }

    fn id<M: Message>(&self) -> Result<u16, VppError> {
        self.ids
            .get(M::NAME_CRC)
            .copied()
            .ok_or(VppError::UnknownMessage {
                name_crc: M::NAME_CRC,
            })
    }

    fn context(&self) -> u32 {
        loop {
            let c = self.next_context.fetch_add(1, Ordering::Relaxed);
            if c != 0 {
                return c;
            }
        }
    }

    fn register_pending(&self, context: u32, pending: Pending) -> Result<(), VppError> {
        let mut map = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        // Checked under the lock the reader takes to drain the map when it stops, so no waiter is left behind.
        if self.is_closed() {
            return Err(VppError::Disconnected);
        }
        map.insert(context, pending);
        Ok(())
    }

    fn forget(&self, context: u32) {
        self.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&context);
    }

    pub(crate) async fn request<R: Request>(
        &self,
        req: &R,
        timeout: Duration,
    ) -> Result<R::Reply, VppError> {
        let id = self.id::<R>()?;
        let reply_id = self.id::<R::Reply>()?;
        let context = self.context();
        let mut frame = Vec::new();
        encode_framed(
            Header {
                msg_id: id,
                client_index: self.client_index,
                context,
            },
            req,
            &mut frame,
        )?;
        let (tx, rx) = oneshot::channel();
        self.register_pending(context, Pending::Reply(tx))?;
        let result = tokio::time::timeout(timeout, async {
            self.write(&frame).await?;
            rx.await.map_err(|_| VppError::Disconnected)
        })
        .await;
        let body = match result {
            Ok(Ok(body)) => body,
            Ok(Err(e)) => {
                self.forget(context);
                return Err(e);
            }
            Err(_) => {
                self.forget(context);
                return Err(VppError::Timeout {
                    message: R::name(),
                    after: timeout,
                });
            }
        };
        let got_id = codec::peek_msg_id(&body).unwrap_or(0);
        if got_id != reply_id {
            return Err(VppError::UnexpectedReply {
                request: R::name(),
                expected: R::Reply::name(),
                got_id,
            });
        }
        let (_, reply) = codec::decode_message::<R::Reply>(&body)?;
        if reply.retval() < 0 {
            return Err(VppError::Api {
                message: R::name(),
                error: ApiError {
                    retval: reply.retval(),
                },
            });
        }
        Ok(reply)
    }

    pub(crate) async fn dump<D: Dump>(
        &self,
        req: &D,
        timeout: Duration,
    ) -> Result<Vec<D::Details>, VppError> {
        let header = Header {
            msg_id: self.id::<D>()?,
            client_index: self.client_index,
            context: self.context(),
        };
        let details_id = self.id::<D::Details>()?;
        let mut frames = Vec::new();
        encode_framed(header, req, &mut frames)?;
        encode_framed(
            Header {
                msg_id: self.id::<ControlPing>()?,
                ..header
            },
            &ControlPing,
            &mut frames,
        )?;
        let (done, rx) = oneshot::channel();
        self.register_pending(
            header.context,
            Pending::Dump {
                details: Vec::new(),
                bytes: 0,
                done,
            },
        )?;
        let result = tokio::time::timeout(timeout, async {
            self.write(&frames).await?;
            rx.await.map_err(|_| VppError::Disconnected)
        })
        .await;
        let bodies = match result {
            Ok(Ok(Some(bodies))) => bodies,
            Ok(Ok(None)) => {
                return Err(VppError::DumpTooLarge {
                    request: D::name(),
                    limit: DUMP_LIMIT,
                });
            }
            Ok(Err(e)) => {
                self.forget(header.context);
                return Err(e);
            }
            Err(_) => {
                self.forget(header.context);
                return Err(VppError::Timeout {
                    message: D::name(),
                    after: timeout,
                });
            }
        };
        bodies
            .iter()
            .map(|body| {
                let got_id = codec::peek_msg_id(body).unwrap_or(0);
                if got_id != details_id {
                    return Err(VppError::UnexpectedReply {
                        request: D::name(),
                        expected: D::Details::name(),
                        got_id,
                    });
                }
                Ok(codec::decode_message::<D::Details>(body)?.1)
            })
            .collect()
    }

    async fn write(&self, bytes: &[u8]) -> Result<(), VppError> {
        let mut writer = self.writer.lock().await;
        writer
            .write_all(bytes)
            .await
            .map_err(|source| VppError::Io {
                doing: "writing",
                source,
            })
    }

    pub(crate) async fn shutdown(&self) {
        // Closing our write half ends VPP's side of the registration too; errors here change nothing.
        let _ = self.writer.lock().await.shutdown().await;
        self.reader.abort();
        close_all(&self.pending, &self.closed);
    }
}

/// True for the errors of a socket whose VPP has not started (yet), or cannot take one more client this
/// instant: VPP listens with a backlog of 5, so a non-blocking connect fails with `EAGAIN` while more
/// clients connect at once than its main loop has accepted (hundreds of tunnels starting together).
fn not_up_yet(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::NotFound
            | std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::WouldBlock
    )
}

/// Checks every message we use against VPP's table, and returns their ids.
fn check_message_table(
    table: &[MessageTableEntry],
) -> Result<HashMap<&'static str, u16>, VppError> {
    let by_name_crc: HashMap<&str, u16> =
        table.iter().map(|e| (e.name.as_str(), e.index)).collect();
    let mut ids = HashMap::new();
    let mut mismatches = Vec::new();
    for &name_crc in messages::USED {
        if let Some(&id) = by_name_crc.get(name_crc) {
            ids.insert(name_crc, id);
            continue;
        }
        let (name, crc) = split_name_crc(name_crc).unwrap_or((name_crc, ""));
        let vpp_crc = table.iter().find_map(|e| {
            split_name_crc(&e.name)
                .filter(|(n, _)| *n == name)
                .map(|(_, c)| c.to_owned())
        });
        mismatches.push(MessageMismatch {
            name: name.to_owned(),
            expected_crc: crc.to_owned(),
            vpp_crc,
        });
    }
    if mismatches.is_empty() {
        Ok(ids)
    } else {
        Err(VppError::Incompatible(mismatches))
    }
}

fn encode_framed<M: Message>(header: Header, msg: &M, out: &mut Vec<u8>) -> Result<(), VppError> {
    let mut body = Vec::new();
    codec::encode_message(header, msg, &mut body)?;
    frame::encode_frame(&body, out);
    Ok(())
}

async fn write_message<M: Message>(
    w: &mut OwnedWriteHalf,
    header: Header,
    msg: &M,
) -> Result<(), VppError> {
    let mut frame = Vec::new();
    encode_framed(header, msg, &mut frame)?;
    w.write_all(&frame).await.map_err(|source| VppError::Io {
        doing: "writing",
        source,
    })
}

fn close_all(pending: &Mutex<HashMap<u32, Pending>>, closed: &watch::Sender<bool>) {
    let mut map = pending.lock().unwrap_or_else(PoisonError::into_inner);
    closed.send_replace(true);
    // Dropping the senders wakes every waiter with "disconnected".
    map.clear();
}

/// The reader task's routing state.
struct Routes {
    control_ping_reply: u16,
    sw_interface_event: u16,
    pending: Arc<Mutex<HashMap<u32, Pending>>>,
    events: broadcast::Sender<SwInterfaceEvent>,
    closed: watch::Sender<bool>,
}

/// However the reader task ends (end of stream, error, abort, or a panic), the session is closed and
/// every waiter is woken.
impl Drop for Routes {
    fn drop(&mut self) {
        close_all(&self.pending, &self.closed);
    }
}

impl Routes {
    async fn run(self, mut reader: FrameReader<tokio::net::unix::OwnedReadHalf>) {
        loop {
            match reader.read_body().await {
                Ok(Some(body)) => self.route(body),
                Ok(None) => {
                    tracing::warn!("VPP closed the API connection");
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "VPP API connection failed");
                    break;
                }
            }
        }
        // Dropping `self` closes the session.
    }

    /// Dispatches by message id first (events have no context), then by context.
    fn route(&self, body: Vec<u8>) {
        let Some(id) = codec::peek_msg_id(&body) else {
            return;
        };
        if id == self.sw_interface_event {
            match codec::decode_message::<SwInterfaceEvent>(&body) {
                // No subscriber is fine: nobody asked.
                Ok((_, event)) => drop(self.events.send(event)),
                Err(e) => tracing::warn!(error = %e, "undecodable interface event from VPP"),
            }
            return;
        }
        let Some(context) = body
            .get(2..6)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        else {
            return;
        };
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        match pending.remove(&context) {
            Some(Pending::Reply(tx)) => drop(tx.send(body)),
            Some(Pending::Dump { details, done, .. }) if id == self.control_ping_reply => {
                drop(done.send(Some(details)))
            }
            Some(Pending::Dump {
                mut details,
                bytes,
                done,
            }) => {
                let bytes = bytes + body.len();
                if details.len() == MAX_DUMP_DETAILS || bytes > MAX_DUMP_BYTES {
                    // The rest of this dump finds nobody waiting and is dropped as it comes.
                    drop(done.send(None));
                    return;
                }
                details.push(body);
                pending.insert(
                    context,
                    Pending::Dump {
                        details,
                        bytes,
                        done,
                    },
                );
            }
            None => tracing::debug!(id, context, "ignoring a VPP message nobody waits for"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(entries: &[&str]) -> Vec<MessageTableEntry> {
        entries
            .iter()
            .enumerate()
            .map(|(i, n)| MessageTableEntry {
                index: i as u16 + 21,
                name: (*n).to_owned(),
            })
            .collect()
    }

    #[test]
    fn every_used_message_must_be_in_the_table() {
        let ids = check_message_table(&table(messages::USED)).unwrap();
        assert_eq!(ids.len(), messages::USED.len());
        assert_eq!(
            ids[MemifCreateV2::NAME_CRC],
            21 + messages::USED
                .iter()
                .position(|n| *n == MemifCreateV2::NAME_CRC)
                .unwrap() as u16
        );
    }

    #[test]
    fn a_changed_crc_names_the_message_and_both_crcs() {
        let mut names: Vec<&str> = messages::USED
            .iter()
            .copied()
            .filter(|n| *n != MemifCreateV2::NAME_CRC)
            .collect();
        names.push("memif_create_v2_deadbeef");
        let Err(VppError::Incompatible(m)) = check_message_table(&table(&names)) else {
            panic!("accepted")
        };
        assert_eq!(
            m,
            vec![MessageMismatch {
                name: "memif_create_v2".into(),
                expected_crc: "8c7de5f7".into(),
                vpp_crc: Some("deadbeef".into())
            }]
        );
    }

    #[test]
    fn a_missing_message_is_reported_without_a_vpp_crc() {
        let names: Vec<&str> = messages::USED
            .iter()
            .copied()
            .filter(|n| *n != IpNeighborAddDel::NAME_CRC)
            .collect();
        let Err(VppError::Incompatible(m)) = check_message_table(&table(&names)) else {
            panic!("accepted")
        };
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].name, "ip_neighbor_add_del");
        assert_eq!(m[0].vpp_crc, None);
    }
}

/// Hostile bytes from the socket: whatever VPP (or something pretending to be VPP) sends after the
/// handshake, the reader never panics, waiters get an answer or an error, and the end of the stream closes
/// the session.
#[cfg(test)]
mod hostile {
    use proptest::prelude::*;
    use tokio::io::AsyncWriteExt;
    use tokio::net::UnixStream;

    use super::*;

    /// The ids the fake table gives: message `i` of [`messages::USED`] gets `100 + i`.
    fn id_of(name_crc: &str) -> u16 {
        100 + messages::USED
            .iter()
            .position(|n| *n == name_crc)
            .unwrap_or(0) as u16
    }

    /// A stand-in VPP on a socket pair: it answers the registration, reads the first request, then sends
    /// `bodies` framed and `tail` as raw bytes, and closes. Returns our end.
    fn fake_vpp(bodies: Vec<Vec<u8>>, tail: Vec<u8>) -> (UnixStream, tokio::task::JoinHandle<()>) {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let server = tokio::spawn(async move {
            let (read, mut write) = theirs.into_split();
            let mut reader = FrameReader::new(read);
            let _create = reader.read_body().await;
            let table = messages::USED
                .iter()
                .map(|n| MessageTableEntry {
                    index: id_of(n),
                    name: (*n).to_owned(),
                })
                .collect();
            let reply = SockclntCreateReply {
                response: 0,
                index: 0x8000_0001,
                message_table: table,
            };
            let mut out = Vec::new();
            encode_framed(
                Header {
                    msg_id: SOCKCLNT_CREATE_REPLY_ID,
                    client_index: 0,
                    context: 1,
                },
                &reply,
                &mut out,
            )
            .unwrap();
            write.write_all(&out).await.unwrap();
            let _request = reader.read_body().await;
            let mut out = Vec::new();
            for body in &bodies {
                frame::encode_frame(body, &mut out);
            }
            out.extend_from_slice(&tail);
            // The client may already have given up; a failed write is part of the game.
            let _ = write.write_all(&out).await;
        });
        (ours, server)
    }

    async fn exchange(bodies: Vec<Vec<u8>>, tail: Vec<u8>) {
        let (ours, server) = fake_vpp(bodies, tail);
        let (events, _) = broadcast::channel(4);
        let options = ClientOptions::new("unused");
        let mut session = Session::register(ours, &options, events).await.unwrap();
        let _ = session
            .request(&ShowVersion, Duration::from_millis(200))
            .await;
        server.await.unwrap();
        let reader = std::mem::replace(&mut session.reader, tokio::spawn(async {}));
        let ended = tokio::time::timeout(Duration::from_secs(1), reader).await;
        let ended = ended.expect("the reader must stop at the end of the stream");
        assert!(ended.is_ok(), "the reader task panicked: {ended:?}");
        assert!(session.is_closed());
    }

    /// A dump that goes on past the limits is an error, not unbounded memory.
    #[tokio::test]
    async fn a_dump_past_its_limits_is_an_error() {
        let mut detail = id_of(MemifSocketFilenameDetails::NAME_CRC)
            .to_be_bytes()
            .to_vec();
        detail.extend_from_slice(&2u32.to_be_bytes());
        detail.extend_from_slice(&[0u8; 112]);
        let (ours, _server) = fake_vpp(vec![detail; MAX_DUMP_DETAILS + 1], Vec::new());
        let (events, _) = broadcast::channel(4);
        let session = Session::register(ours, &ClientOptions::new("unused"), events)
            .await
            .unwrap();
        let error = session
            .dump(&MemifSocketFilenameDump, Duration::from_secs(20))
            .await
            .unwrap_err();
        assert!(matches!(error, VppError::DumpTooLarge { .. }), "{error}");
    }

    /// Bodies that look like replies to our first request (context 2), events, or anything.
    fn body() -> impl Strategy<Value = Vec<u8>> {
        let ids = prop_oneof![
            Just(id_of(ShowVersionReply::NAME_CRC)),
            Just(id_of(SwInterfaceEvent::NAME_CRC)),
            Just(id_of(ControlPingReply::NAME_CRC)),
            any::<u16>(),
        ];
        (
            ids,
            any::<bool>(),
            proptest::collection::vec(any::<u8>(), 0..400),
        )
            .prop_map(|(id, ours, rest)| {
                let mut body = id.to_be_bytes().to_vec();
                if ours {
                    body.extend_from_slice(&2u32.to_be_bytes());
                }
                body.extend_from_slice(&rest);
                body
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        #[test]
        fn the_reader_survives_hostile_frames(
            bodies in proptest::collection::vec(body(), 0..6),
            tail in proptest::collection::vec(any::<u8>(), 0..40),
        ) {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(exchange(bodies, tail));
        }
    }
}
