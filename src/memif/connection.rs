//! A connected memif interface: its queues, what we know of the peer, and the control channel that
//! stays open while it is up (to learn of, or announce, the disconnection).
//!
//! [`Connection::split`] hands the queues to the data plane (a dedicated thread or tasks) and keeps the
//! [`Control`] in async code, which awaits [`Control::closed`] or calls [`Control::disconnect`].

use std::os::fd::{BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

use super::error::{Error, ProtocolError};
use super::msg::{MSG_SIZE, Message};
use super::queue::{LinkState, RxQueue, TxQueue};
use super::socket::ControlSocket;

/// Which side of the protocol we are (the command line's `--memif-role`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Role {
    /// Master: listens, maps the client's memory. A tunnel's default: VPP connects (the original's way).
    #[default]
    Server,
    /// Slave: connects, builds the shared memory; a tunnel retries while VPP's socket is absent.
    Client,
}

impl Role {
    /// `server` or `client`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Server => "server",
            Role::Client => "client",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(value: &str) -> Result<Role, String> {
        match value {
            "server" => Ok(Role::Server),
            "client" => Ok(Role::Client),
            other => Err(format!("{other:?} is neither server nor client")),
        }
    }
}

/// What the handshake established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionInfo {
    pub role: Role,
    /// The interface id.
    pub id: u32,
    /// The peer's application name (HELLO or INIT).
    pub peer_app_name: String,
    /// The peer's interface name (CONNECT or CONNECTED).
    pub peer_if_name: String,
    /// Number of shared-memory regions.
    pub regions: usize,
    /// log2 of the ring size (of the first ring; a client may use others on other rings).
    pub log2_ring_size: u8,
}

/// How a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disconnected {
    /// True when the peer ended it (DISCONNECT or closing the socket).
    pub by_peer: bool,
    /// The code from the peer's DISCONNECT (0 when there was none).
    pub code: u32,
    /// The reason: the peer's DISCONNECT text, or what happened.
    pub reason: String,
}

/// A connected interface.
#[derive(Debug)]
pub struct Connection {
    pub(crate) info: ConnectionInfo,
    pub(crate) control: Control,
    pub(crate) rx: Vec<RxQueue>,
    pub(crate) tx: Vec<TxQueue>,
}

impl Connection {
    /// What the handshake established.
    pub fn info(&self) -> &ConnectionInfo {
        &self.info
    }

    /// Number of receive queues.
    pub fn rx_queue_count(&self) -> usize {
        self.rx.len()
    }

    /// Number of transmit queues.
    pub fn tx_queue_count(&self) -> usize {
        self.tx.len()
    }

    /// Splits into the control side (async) and the queues (data plane), indexed by queue number.
    pub fn split(self) -> (Control, Vec<RxQueue>, Vec<TxQueue>) {
        (self.control, self.rx, self.tx)
    }
}

/// The control channel of a live connection. Dropping it closes the channel (the peer sees the
/// connection go down) and marks the queues disconnected.
#[derive(Debug)]
pub struct Control {
    channel: Channel,
    link: Arc<LinkState>,
}

impl Control {
    pub(crate) fn new(channel: Channel, link: Arc<LinkState>) -> Control {
        Control { channel, link }
    }

    /// True until the connection went down.
    pub fn is_up(&self) -> bool {
        self.link.is_up()
    }

    /// Waits until the connection ends: the peer sends DISCONNECT or closes the socket, or sends
    /// something else (a protocol error, answered with DISCONNECT). Cancel-safe, for `select!`.
    pub async fn closed(&mut self) -> Disconnected {
        let result = match self.channel.recv().await {
            Ok(Message::Disconnect(d)) => Disconnected {
                by_peer: true,
                code: d.code,
                reason: d.reason.to_string_lossy(),
            },
            Ok(other) => {
                let err = ProtocolError::Unexpected {
                    got: other.name(),
                    expected: "nothing while connected",
                };
                self.channel.refuse(&err).await;
                Disconnected {
                    by_peer: false,
                    code: 0,
                    reason: err.to_string(),
                }
            }
            Err(Error::Protocol(err)) => {
                self.channel.refuse(&err).await;
                Disconnected {
                    by_peer: false,
                    code: 0,
                    reason: err.to_string(),
                }
            }
            Err(Error::PeerClosed(_)) => Disconnected {
                by_peer: true,
                code: 0,
                reason: "peer closed the control channel".into(),
            },
            Err(e) => Disconnected {
                by_peer: true,
                code: 0,
                reason: e.to_string(),
            },
        };
        self.link.set_down();
        result
    }

    /// Sends DISCONNECT with `reason` and closes the channel.
    pub async fn disconnect(self, reason: &str) {
        self.link.set_down();
        let _ = self.channel.send(&Message::disconnect(0, reason)).await;
    }
}

impl Drop for Control {
    fn drop(&mut self) {
        self.link.set_down();
    }
}

/// The control socket with message framing and per-step timeouts, used by both handshakes.
#[derive(Debug)]
pub(crate) struct Channel {
    sock: ControlSocket,
    timeout: Duration,
}

impl Channel {
    pub fn new(sock: ControlSocket, timeout: Duration) -> Channel {
        Channel { sock, timeout }
    }

    pub fn try_clone_fd(&self) -> std::io::Result<OwnedFd> {
        self.sock.try_clone_fd()
    }

    pub async fn send(&self, msg: &Message) -> Result<(), Error> {
        self.send_with_fd(msg, None).await
    }

    pub async fn send_with_fd(
        &self,
        msg: &Message,
        fd: Option<BorrowedFd<'_>>,
    ) -> Result<(), Error> {
        let mut frame = [0u8; MSG_SIZE];
        msg.emit(&mut frame);
        tracing::trace!(fd = self.sock.raw_fd(), msg = msg.name(), "memif send");
        Ok(self.sock.send(&frame, fd).await?)
    }

    /// Receives one message (any fd that came with it is closed).
    pub async fn recv(&self) -> Result<Message, Error> {
        Ok(self.recv_with_fd().await?.0)
    }

    /// Receives one message and the fd that came with it. A clean close is `PeerClosed`.
    pub async fn recv_with_fd(&self) -> Result<(Message, Option<OwnedFd>), Error> {
        let mut frame = [0u8; MSG_SIZE];
        let (len, fd) = self.sock.recv(&mut frame).await?;
        if len == 0 {
            return Err(Error::PeerClosed("a message"));
        }
        let msg = Message::parse(&frame[..len.min(MSG_SIZE)]).map_err(|e| match e {
            // Report the real size, even for an oversized (truncated) datagram.
            super::msg::MsgError::Size(_) => ProtocolError::Size(len),
            other => other.into(),
        });
        let msg = if len != MSG_SIZE {
            Err(ProtocolError::Size(len))
        } else {
            msg
        };
        tracing::trace!(fd = self.sock.raw_fd(), ?msg, "memif recv");
        Ok((msg?, fd))
    }

    /// Receives with the handshake timeout; `step` names what we wait for.
    pub async fn recv_step(&self, step: &'static str) -> Result<(Message, Option<OwnedFd>), Error> {
        match tokio::time::timeout(self.timeout, self.recv_with_fd()).await {
            Ok(Err(Error::PeerClosed(_))) => Err(Error::PeerClosed(step)),
            Ok(result) => result,
            Err(_) => Err(Error::Timeout(step)),
        }
    }

    /// Tells the peer why we refuse it (DISCONNECT), best effort, and logs it.
    pub async fn refuse(&self, err: &ProtocolError) {
        tracing::warn!(reason = %err, "memif: refusing peer");
        let _ = self.send(&Message::disconnect(0, &err.to_string())).await;
    }

    /// Ends a failed handshake: DISCONNECT for protocol errors and timeouts, then the socket closes
    /// when `self` drops.
    pub async fn fail(self, err: Error) -> Error {
        match &err {
            Error::Protocol(p) => self.refuse(p).await,
            Error::Timeout(step) => {
                tracing::warn!(step, "memif: handshake timed out");
                let _ = self
                    .send(&Message::disconnect(
                        0,
                        &format!("Timeout waiting for {step}"),
                    ))
                    .await;
            }
            _ => {}
        }
        err
    }
}
