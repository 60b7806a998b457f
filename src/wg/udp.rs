//! The device's UDP socket, kept here so that a port or fwmark change can never leave the device
//! without a socket.
//!
//! A new port is bound *before* the device lets go of the old socket: when the bind fails the old
//! socket stays in use and the caller reports the error. The engine's loops take the socket in the
//! slot when they start, and start again on the new one after a port change.
//! One dual-stack `[::]` socket serves both address families (IPv4 only where IPv6 is absent), with
//! `recvmmsg`/`sendmmsg` and UDP GRO from gotatun's Linux socket, and UDP GSO from `gso.rs`.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};

use gotatun::udp::socket::{SockOpt, UdpSocket};
use gotatun::udp::{UdpRecv, UdpSend};

/// Socket buffer size asked for on both directions (as wireguard-go); the kernel caps it at
/// `net.core.rmem_max` / `wmem_max`. Bursts of a fast link then queue instead of being dropped.
const SOCKET_BUFFER_BYTES: usize = 7 << 20;

/// The socket currently in use and its fwmark, shared between the device and its engine.
#[derive(Clone)]
pub(crate) struct SocketSlot {
    inner: Arc<Mutex<Bound>>,
}

struct Bound {
    socket: UdpSocket,
    port: u16,
    fwmark: u32,
}

impl SocketSlot {
    /// Binds the first socket.
    pub(crate) fn bind(port: u16, fwmark: u32) -> io::Result<SocketSlot> {
        let (socket, port) = bind_dual_stack(port, fwmark)?;
        Ok(SocketSlot {
            inner: Arc::new(Mutex::new(Bound {
                socket,
                port,
                fwmark,
            })),
        })
    }

    /// The socket now in use.
    pub(crate) fn socket(&self) -> UdpSocket {
        self.lock().socket.clone()
    }

    /// The port the socket is bound to (never 0).
    pub(crate) fn port(&self) -> u16 {
        self.lock().port
    }

    /// Binds `port` (0 = random) with the current fwmark, and makes it the socket handed out from
    /// now on. On failure the current socket stays. Returns the bound port.
    pub(crate) fn rebind(&self, port: u16) -> io::Result<u16> {
        let fwmark = self.lock().fwmark;
        let (socket, port) = bind_dual_stack(port, fwmark)?;
        let mut bound = self.lock();
        bound.socket = socket;
        bound.port = port;
        Ok(port)
    }

    /// Sets the fwmark on the current socket (and on later ones). On failure nothing changes.
    pub(crate) fn set_fwmark(&self, fwmark: u32) -> io::Result<()> {
        let mut bound = self.lock();
        bound.socket.set_fwmark(fwmark)?;
        bound.fwmark = fwmark;
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Bound> {
        // The lock guards plain values only, so a panic elsewhere cannot leave them inconsistent.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn bind_dual_stack(port: u16, fwmark: u32) -> io::Result<(UdpSocket, u16)> {
    let mut opts = SockOpt {
        only_v6: Some(false),
        recv_buffer_size: Some(SOCKET_BUFFER_BYTES),
        send_buffer_size: Some(SOCKET_BUFFER_BYTES),
        ..SockOpt::default()
    };
    if fwmark != 0 {
        opts.fwmark = Some(fwmark);
    }
    let any6 = SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port);
    let socket = match UdpSocket::bind(any6, opts) {
        Ok(socket) => socket,
        Err(e) if ipv6_unavailable(&e) => {
            tracing::warn!("IPv6 UDP sockets are unavailable; listening on IPv4 only");
            UdpSocket::bind(
                SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port),
                opts,
            )?
        }
        Err(e) => return Err(e),
    };
    if let Err(e) = socket.enable_udp_gro() {
        tracing::debug!(error = %e, "UDP GRO is not available");
    }
    let port = socket.local_addr()?.port();
    Ok((socket, port))
}

fn ipv6_unavailable(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::EAFNOSUPPORT | libc::EADDRNOTAVAIL | libc::EPROTONOSUPPORT)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_failed_rebind_keeps_the_old_socket() {
        let slot = SocketSlot::bind(0, 0).expect("bind a random port");
        let old_port = slot.port();
        assert_ne!(old_port, 0);
        let blocker = std::net::UdpSocket::bind("[::]:0").expect("bind a blocker");
        let taken = blocker.local_addr().expect("local addr").port();
        let error = slot.rebind(taken).expect_err("the port is taken");
        assert_eq!(error.kind(), io::ErrorKind::AddrInUse);
        assert_eq!(slot.port(), old_port);
        let socket = slot.socket();
        assert_eq!(socket.local_addr().expect("bound").port(), old_port);
    }

    #[tokio::test]
    async fn rebind_hands_out_the_new_socket() {
        let slot = SocketSlot::bind(0, 0).expect("bind a random port");
        let new_port = slot.rebind(0).expect("rebind to another random port");
        let socket = slot.socket();
        assert_eq!(socket.local_addr().expect("bound").port(), new_port);
    }
}
