//! The asynchronous VPP API client over the API unix socket: `sockclnt_create` handshake, message ids by
//! full `name_crc` (every message we use is checked when connecting), `client_index` on every request,
//! replies matched by context, dumps ended by `control_ping`, interface events, `sockclnt_delete` on close,
//! a timeout on every call, and reconnection after VPP restarts.
//!
//! One [`Client`] is shared (it is cheap to clone) by the tunnel's setup, its neighbour installer and its
//! teardown. A reader task owns the socket's read half and hands each message to whoever waits for its
//! context, so calls from several tasks may be in flight at once. The client never reconnects by itself:
//! after VPP restarts its objects are gone, so a call fails with [`VppError::Disconnected`] and the owner
//! decides to [`Client::reconnect`] and set up again ([`Client::generation`] tells the sessions apart).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
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

/// The default API socket (VPP's `socksvr default`, and the default of govpp and vpp-papi).
pub const DEFAULT_SOCKET_PATH: &str = "/run/vpp/api.sock";

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

/// A connection to VPP's binary API that survives VPP restarts through [`Client::reconnect`].
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    options: ClientOptions,
    session: Mutex<Arc<Session>>,
    reconnecting: tokio::sync::Mutex<()>,
    generation: AtomicU64,
    events: broadcast::Sender<SwInterfaceEvent>,
    events_wanted: AtomicBool,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("socket_path", &self.inner.options.socket_path)
            .field("generation", &self.generation())
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Connects, retrying with backoff until `connect_deadline` while the socket is absent or refuses, then
    /// registers and checks every message this crate uses against VPP's table.
    pub async fn connect(options: ClientOptions) -> Result<Self, VppError> {
        let (events, _) = broadcast::channel(64);
        let session = Session::connect_with_retry(&options, events.clone()).await?;
        Ok(Self {
            inner: Arc::new(Inner {
                options,
                session: Mutex::new(Arc::new(session)),
                reconnecting: tokio::sync::Mutex::new(()),
                generation: AtomicU64::new(1),
                events,
                events_wanted: AtomicBool::new(false),
            }),
        })
    }

    /// Counts connections: 1 for the first, +1 for each successful [`Client::reconnect`]. Objects created in
    /// VPP under an older generation may be gone.
    pub fn generation(&self) -> u64 {
        self.inner.generation.load(Ordering::Acquire)
    }

    /// True while the current connection is open.
    pub fn is_connected(&self) -> bool {
        !self.session().is_closed()
    }

    /// The client index VPP gave this connection.
    pub fn client_index(&self) -> u32 {
        self.session().client_index
    }

    /// Resolves when the current connection closes (VPP exited or restarted).
    pub async fn disconnected(&self) {
        let mut closed = self.session().closed.subscribe();
        // An error means the sender is gone, which also means closed.
        let _ = closed.wait_for(|c| *c).await;
    }

    /// Replaces a closed connection with a new one (retrying until the connect deadline), re-subscribes to
    /// interface events if they were wanted, and returns the new generation. Does nothing while the current
    /// connection is open, so concurrent callers reconnect only once.
    pub async fn reconnect(&self) -> Result<u64, VppError> {
        let _guard = self.inner.reconnecting.lock().await;
        if self.is_connected() {
            return Ok(self.generation());
        }
        let session =
            Session::connect_with_retry(&self.inner.options, self.inner.events.clone()).await?;
        *self
            .inner
            .session
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(session);
        let generation = self.inner.generation.fetch_add(1, Ordering::AcqRel) + 1;
        tracing::info!(generation, "reconnected to the VPP API");
        if self.inner.events_wanted.load(Ordering::Acquire) {
            self.want_interface_events().await?;
        }
        Ok(generation)
    }

    /// Sends `req` and waits for its reply; a negative `retval` is [`VppError::Api`].
    pub async fn request<R: Request>(&self, req: &R) -> Result<R::Reply, VppError> {
        self.session()
            .request(req, self.inner.options.call_timeout)
            .await
    }

    /// Sends the dump `req` followed by a `control_ping`, and collects the details until the ping's reply.
    pub async fn dump<D: Dump>(&self, req: &D) -> Result<Vec<D::Details>, VppError> {
        self.session()
            .dump(req, self.inner.options.call_timeout)
            .await
    }

    /// VPP's version string, e.g. "26.06-release".
    pub async fn version(&self) -> Result<String, VppError> {
        Ok(self.request(&ShowVersion).await?.version)
    }

    /// Subscribes to `sw_interface_event` (link up/down, deletion) for this process; the subscription is
    /// renewed after each reconnect.
    pub async fn interface_events(
        &self,
    ) -> Result<broadcast::Receiver<SwInterfaceEvent>, VppError> {
        let rx = self.inner.events.subscribe();
        self.inner.events_wanted.store(true, Ordering::Release);
        self.want_interface_events().await?;
        Ok(rx)
    }

    async fn want_interface_events(&self) -> Result<(), VppError> {
        self.request(&WantInterfaceEvents {
            enable_disable: 1,
            pid: std::process::id(),
        })
        .await?;
        Ok(())
    }

    /// Unregisters (`sockclnt_delete`) and closes the socket. Other clones see [`VppError::Disconnected`].
    pub async fn close(&self) -> Result<(), VppError> {
        let session = self.session();
        if session.is_closed() {
            return Ok(());
        }
        let result = session
            .request(
                &SockclntDelete {
                    index: session.client_index,
                },
                self.inner.options.call_timeout,
            )
            .await;
        session.shutdown().await;
        result.map(drop)
    }

    fn session(&self) -> Arc<Session> {
        Arc::clone(
            &self
                .inner
                .session
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        )
    }
}

/// What a caller waits for, by context.
enum Pending {
    Reply(oneshot::Sender<Vec<u8>>),
    Dump {
        details: Vec<Vec<u8>>,
        done: oneshot::Sender<Vec<Vec<u8>>>,
    },
}

/// One registered connection.
struct Session {
    client_index: u32,
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
    async fn connect_with_retry(
        options: &ClientOptions,
        events: broadcast::Sender<SwInterfaceEvent>,
    ) -> Result<Self, VppError> {
        let deadline = tokio::time::Instant::now() + options.connect_deadline;
        let mut backoff = Duration::from_millis(100);
        let mut attempts = 0;
        loop {
            attempts += 1;
            match UnixStream::connect(&options.socket_path).await {
                Ok(stream) => return Self::register(stream, options, events).await,
                Err(source) => {
                    let now = tokio::time::Instant::now();
                    if now + backoff > deadline {
                        return Err(VppError::Connect {
                            path: options.socket_path.clone(),
                            attempts,
                            source,
                        });
                    }
                    tracing::info!(path = %options.socket_path.display(), error = %source, "VPP API socket not ready, retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
            }
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
        let routes = Routes {
            control_ping_reply: ids[ControlPingReply::NAME_CRC],
            sw_interface_event: ids[SwInterfaceEvent::NAME_CRC],
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

    fn is_closed(&self) -> bool {
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

    async fn request<R: Request>(&self, req: &R, timeout: Duration) -> Result<R::Reply, VppError> {
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

    async fn dump<D: Dump>(&self, req: &D, timeout: Duration) -> Result<Vec<D::Details>, VppError> {
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
                done,
            },
        )?;
        let result = tokio::time::timeout(timeout, async {
            self.write(&frames).await?;
            rx.await.map_err(|_| VppError::Disconnected)
        })
        .await;
        let bodies = match result {
            Ok(Ok(bodies)) => bodies,
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

    async fn shutdown(&self) {
        // Closing our write half ends VPP's side of the registration too; errors here change nothing.
        let _ = self.writer.lock().await.shutdown().await;
        self.reader.abort();
        close_all(&self.pending, &self.closed);
    }
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
        close_all(&self.pending, &self.closed);
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
            Some(Pending::Dump { details, done }) if id == self.control_ping_reply => {
                drop(done.send(details))
            }
            Some(Pending::Dump { mut details, done }) => {
                details.push(body);
                pending.insert(context, Pending::Dump { details, done });
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
