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

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::broadcast;

use super::codec::{Dump, Request};
use super::error::VppError;
use super::messages::{
    ControlPing, ShowVersion, SockclntDelete, SwInterfaceEvent, WantInterfaceEvents,
};
pub use super::session::ClientOptions;
use super::session::Session;

/// The default API socket (VPP's `socksvr default`, and the default of govpp and vpp-papi).
pub const DEFAULT_SOCKET_PATH: &str = "/run/vpp/api.sock";

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
        let mut closed = self.session().closed_watch();
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

    /// Checks that VPP answers (`control_ping`), e.g. for a readiness probe.
    pub async fn ping(&self) -> Result<(), VppError> {
        self.request(&ControlPing).await.map(drop)
    }

    /// VPP's version string, e.g. "26.06-release".
    pub async fn version(&self) -> Result<String, VppError> {
        Ok(self.request(&ShowVersion).await?.version)
    }

    /// Subscribes to `sw_interface_event` (link up/down, deletion) for this process; the subscription is
    /// renewed after each reconnect. A connection lost meanwhile is no error: the reconnect subscribes.
    pub async fn interface_events(
        &self,
    ) -> Result<broadcast::Receiver<SwInterfaceEvent>, VppError> {
        let rx = self.inner.events.subscribe();
        self.inner.events_wanted.store(true, Ordering::Release);
        match self.want_interface_events().await {
            Err(err) if !err.is_connection_lost() => Err(err),
            _ => Ok(rx),
        }
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
