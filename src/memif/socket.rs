//! The control channel's transport: Unix-domain `SOCK_SEQPACKET` sockets (one message per `recvmsg`),
//! with at most one file descriptor passed as `SCM_RIGHTS` alongside a message, driven by tokio.
//!
//! Addresses are filesystem paths, or Linux abstract names written `@name` (the address length then
//! counts exactly the name, as DPDK, VPP and libmemif do). This file knows nothing of message contents.
//!
//! The socket calls go through `nix`, except two kept by hand: `recvmsg`, because nix's control
//! message iterator refuses to walk a truncated control buffer (`MSG_CTRUNC`, which a peer causes by
//! sending more descriptors than we take), which would leave the descriptors that did arrive open
//! forever; and `poll`, whose nix module is not among the features this crate enables.

use std::ffi::OsStr;
use std::io::{self, IoSlice};
use std::mem::{size_of, zeroed};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::sys::socket::{
    AddressFamily, Backlog, ControlMessage, MsgFlags, SockFlag, SockType, UnixAddr, sockopt,
};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use super::msg::MSG_SIZE;

/// A socket address: a filesystem path or an abstract name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SocketAddr {
    /// A socket file.
    Path(PathBuf),
    /// A Linux abstract-namespace name (written `@name`).
    Abstract(Vec<u8>),
}

impl SocketAddr {
    /// `@name` is an abstract name; anything else a path.
    pub fn parse(s: impl AsRef<Path>) -> SocketAddr {
        let bytes = s.as_ref().as_os_str().as_bytes();
        match bytes.strip_prefix(b"@") {
            Some(name) => SocketAddr::Abstract(name.to_vec()),
            None => SocketAddr::Path(s.as_ref().to_path_buf()),
        }
    }

    /// The address as the kernel takes it. An empty name, a path containing NUL, or a name longer
    /// than `sun_path` holds is an error that names the address.
    fn to_unix(&self) -> io::Result<UnixAddr> {
        let invalid = || {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "socket address {self} is empty, contains NUL, or is longer than 107 bytes"
                ),
            )
        };
        match self {
            SocketAddr::Path(p) => {
                let bytes = p.as_os_str().as_bytes();
                if bytes.is_empty() || bytes.contains(&0) {
                    return Err(invalid());
                }
                UnixAddr::new(p.as_path()).map_err(|_| invalid())
            }
            SocketAddr::Abstract(name) if name.is_empty() => Err(invalid()),
            SocketAddr::Abstract(name) => UnixAddr::new_abstract(name).map_err(|_| invalid()),
        }
    }
}

impl std::fmt::Display for SocketAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SocketAddr::Path(p) => write!(f, "{}", p.display()),
            SocketAddr::Abstract(n) => write!(f, "@{}", OsStr::from_bytes(n).to_string_lossy()),
        }
    }
}

fn seqpacket_socket() -> io::Result<OwnedFd> {
    Ok(nix::sys::socket::socket(
        AddressFamily::Unix,
        SockType::SeqPacket,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )?)
}

/// Registers an fd we own with the tokio reactor (needs a runtime).
pub(crate) fn register(fd: OwnedFd, interest: Interest) -> io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: an `OwnedFd` is a valid open fd that stays open, and always returns the same number, for
    // as long as the `AsyncFd` owns it; nothing here replaces it.
    Ok(unsafe { AsyncFd::register_with_interest(fd, interest) }?)
}

/// A listening control socket. Dropping it removes its socket file (if it is still ours).
#[derive(Debug)]
pub struct ListenSocket {
    fd: AsyncFd<OwnedFd>,
    addr: SocketAddr,
    /// (device, inode) of the socket file we created, so drop never removes someone else's file.
    file_id: Option<(u64, u64)>,
}

impl ListenSocket {
    /// Binds and listens. A stale socket file (nobody listening) is replaced; a live one, or a file
    /// that is not a socket, is an error. The socket file gets `mode` (e.g. 0o600).
    pub fn bind(addr: &SocketAddr, mode: u32) -> io::Result<ListenSocket> {
        let unix = addr.to_unix()?;
        if let SocketAddr::Path(path) = addr {
            remove_stale_socket(path)?;
        }
        let fd = seqpacket_socket()?;
        nix::sys::socket::bind(fd.as_raw_fd(), &unix)?;
        let mut file_id = None;
        if let SocketAddr::Path(path) = addr {
            // Until this chmod, the umask's mode applies; a default umask grants no write (connect) right to others.
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
            let meta = std::fs::symlink_metadata(path)?;
            file_id = Some((meta.dev(), meta.ino()));
        }
        nix::sys::socket::setsockopt(&fd, sockopt::PassCred, &true)?;
        nix::sys::socket::listen(&fd, Backlog::new(8)?)?;
        Ok(ListenSocket {
            fd: register(fd, Interest::READABLE)?,
            addr: addr.clone(),
            file_id,
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> &SocketAddr {
        &self.addr
    }

    /// Accepts the next connection.
    pub async fn accept(&self) -> io::Result<ControlSocket> {
        loop {
            let mut guard = self.fd.readable().await?;
            let raw = match nix::sys::socket::accept4(
                self.fd.get_ref().as_raw_fd(),
                SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
            ) {
                Ok(raw) => raw,
                Err(Errno::EAGAIN) => {
                    guard.clear_ready();
                    continue;
                }
                // ECONNABORTED and similar concern one connection only.
                Err(Errno::ECONNABORTED | Errno::EPROTO | Errno::EINTR) => continue,
                Err(err) => return Err(err.into()),
            };
            // SAFETY: accept4 returned a fresh fd, owned by nobody else.
            let fd = unsafe { OwnedFd::from_raw_fd(raw) };
            return ControlSocket::new(fd);
        }
    }
}

impl Drop for ListenSocket {
    fn drop(&mut self) {
        if let (SocketAddr::Path(path), Some(id)) = (&self.addr, self.file_id)
            && let Ok(meta) = std::fs::symlink_metadata(path)
            && (meta.dev(), meta.ino()) == id
        {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Removes `path` if it is a socket file nobody listens on. A live socket or another kind of file is
/// an error that names the path.
fn remove_stale_socket(path: &Path) -> io::Result<()> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if !meta.file_type().is_socket() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!(
                "{} exists and is not a socket; remove it or choose another path",
                path.display()
            ),
        ));
    }
    let probe = seqpacket_socket()?;
    let unix = SocketAddr::Path(path.to_path_buf()).to_unix()?;
    if let Ok(()) | Err(Errno::EAGAIN) = nix::sys::socket::connect(probe.as_raw_fd(), &unix) {
        return Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!("another process is listening on {}", path.display()),
        ));
    }
    std::fs::remove_file(path)
}

/// A connected control channel.
#[derive(Debug)]
pub struct ControlSocket {
    fd: AsyncFd<OwnedFd>,
}

/// Room for one fd plus the `ucred` that SO_PASSCRED may add (and some slack for a sloppy peer).
const CMSG_BUF_LEN: usize = 256;

/// A control-message buffer with the alignment `cmsghdr` needs.
#[repr(C, align(8))]
struct CmsgBuf([u8; CMSG_BUF_LEN]);

impl ControlSocket {
    /// The connecting process's pid, uid and gid, as the kernel saw them at connect (SO_PEERCRED).
    pub fn peer_credentials(&self) -> io::Result<nix::sys::socket::UnixCredentials> {
        nix::sys::socket::getsockopt(
            self.fd.get_ref(),
            nix::sys::socket::sockopt::PeerCredentials,
        )
        .map_err(io::Error::from)
    }

    fn new(fd: OwnedFd) -> io::Result<ControlSocket> {
        Ok(ControlSocket {
            fd: register(fd, Interest::READABLE | Interest::WRITABLE)?,
        })
    }

    /// Connects to a listening server.
    pub async fn connect(addr: &SocketAddr) -> io::Result<ControlSocket> {
        let fd = seqpacket_socket()?;
        let unix = addr.to_unix()?;
        if let Err(errno) = nix::sys::socket::connect(fd.as_raw_fd(), &unix) {
            // A Unix socket connects at once or fails; EAGAIN means the backlog is full.
            let err = io::Error::from(errno);
            return Err(io::Error::new(
                err.kind(),
                format!("connect to memif socket {addr}: {err}"),
            ));
        }
        ControlSocket::new(fd)
    }

    /// Sends one 128-byte message, with an fd when `fd` is given.
    pub async fn send(&self, frame: &[u8; MSG_SIZE], fd: Option<BorrowedFd<'_>>) -> io::Result<()> {
        self.send_bytes_with_fd(frame, fd).await
    }

    /// Sends a datagram of any size (tests use it to play a broken peer).
    #[cfg(test)]
    pub async fn send_bytes(&self, bytes: &[u8]) -> io::Result<()> {
        self.send_bytes_with_fd(bytes, None).await
    }

    async fn send_bytes_with_fd(&self, frame: &[u8], fd: Option<BorrowedFd<'_>>) -> io::Result<()> {
        loop {
            let mut guard = self.fd.writable().await?;
            match guard.try_io(|inner| send_raw(inner.get_ref().as_fd(), frame, fd)) {
                Ok(result) => return result,
                Err(_would_block) => continue,
            }
        }
    }

    /// Receives one message into `frame`; returns its length (0 = the peer closed) and the first fd
    /// that came with it. Any further fds are closed.
    pub async fn recv(&self, frame: &mut [u8; MSG_SIZE]) -> io::Result<(usize, Option<OwnedFd>)> {
        loop {
            let mut guard = self.fd.readable().await?;
            match guard.try_io(|inner| recv_raw(inner.get_ref().as_fd(), frame)) {
                Ok(result) => return result,
                Err(_would_block) => continue,
            }
        }
    }

    /// A duplicate of the socket, to ask later whether the peer hung up ([`peer_hung_up`]).
    pub fn try_clone_fd(&self) -> io::Result<OwnedFd> {
        self.fd.get_ref().try_clone()
    }

    /// The raw fd (for logging).
    pub fn raw_fd(&self) -> RawFd {
        self.fd.get_ref().as_raw_fd()
    }
}

/// True when the other end of a connected socket closed (or the socket failed), without reading it.
pub fn peer_hung_up(fd: BorrowedFd<'_>) -> bool {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLRDHUP,
        revents: 0,
    };
    // SAFETY: one valid pollfd, timeout 0: the call only writes `revents`.
    let n = unsafe { libc::poll(&mut pfd, 1, 0) };
    n > 0 && pfd.revents & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0
}

fn send_raw(sock: BorrowedFd<'_>, frame: &[u8], fd: Option<BorrowedFd<'_>>) -> io::Result<()> {
    let raw = fd.map(|fd| [fd.as_raw_fd()]);
    let cmsg = raw.as_ref().map(|raw| ControlMessage::ScmRights(raw));
    let n = nix::sys::socket::sendmsg::<()>(
        sock.as_raw_fd(),
        &[IoSlice::new(frame)],
        cmsg.as_slice(),
        MsgFlags::MSG_NOSIGNAL,
        None,
    )?;
    if n != frame.len() {
        return Err(io::Error::new(
            io::ErrorKind::WriteZero,
            "short write of a control message",
        ));
    }
    Ok(())
}

/// `recvmsg` by hand (see the module documentation): every descriptor that arrived becomes an
/// `OwnedFd`, also when the control buffer was truncated, so none is left open.
fn recv_raw(
    sock: BorrowedFd<'_>,
    frame: &mut [u8; MSG_SIZE],
) -> io::Result<(usize, Option<OwnedFd>)> {
    // Read one byte more than a message can hold, so an oversized one shows as a wrong size.
    let mut buf = [0u8; MSG_SIZE + 1];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let mut cbuf = CmsgBuf([0; CMSG_BUF_LEN]);
    // SAFETY: msghdr is plain data; all-zero is valid.
    let mut mh: libc::msghdr = unsafe { zeroed() };
    mh.msg_iov = &mut iov;
    mh.msg_iovlen = 1;
    mh.msg_control = cbuf.0.as_mut_ptr().cast();
    mh.msg_controllen = CMSG_BUF_LEN as _;
    // SAFETY: `mh` points to live, writable buffers of the stated sizes.
    let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut mh, libc::MSG_CMSG_CLOEXEC) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut first: Option<OwnedFd> = None;
    // SAFETY: the kernel filled `msg_controllen` bytes of our buffer with well-formed headers; the CMSG
    // macros walk only within it, and each SCM_RIGHTS payload holds whole fds that are now ours.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&mh);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(cmsg);
                let payload = (*cmsg).cmsg_len as usize - (data as usize - cmsg as usize);
                for i in 0..payload / size_of::<RawFd>() {
                    let raw = std::ptr::read_unaligned(data.cast::<RawFd>().add(i));
                    let owned = OwnedFd::from_raw_fd(raw);
                    // Keep only the first fd; dropping the rest closes them, so nothing leaks.
                    if first.is_none() {
                        first = Some(owned);
                    }
                }
            }
            cmsg = libc::CMSG_NXTHDR(&mh, cmsg);
        }
    }
    let n = n as usize;
    let copied = n.min(MSG_SIZE);
    frame[..copied].copy_from_slice(&buf[..copied]);
    // A truncated datagram is reported with its (too large) size so that the caller refuses it.
    let len = if mh.msg_flags & libc::MSG_TRUNC != 0 {
        MSG_SIZE + 1
    } else {
        n
    };
    Ok((len, first))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Any name, path or abstract, either converts to an address of the right length or is refused.
        #[test]
        fn any_address_converts_or_is_refused(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let name = std::ffi::OsStr::from_bytes(&bytes);
            let addr = SocketAddr::parse(name);
            if let Ok(unix) = addr.to_unix() {
                use nix::sys::socket::SockaddrLike;
                let base = size_of::<libc::sa_family_t>();
                let len = unix.len() as usize;
                match &addr {
                    SocketAddr::Path(p) => prop_assert_eq!(len, base + p.as_os_str().len()),
                    SocketAddr::Abstract(n) => prop_assert_eq!(len, base + 1 + n.len()),
                }
            }
        }
    }

    #[tokio::test]
    async fn messages_and_fds_travel_and_stale_sockets_are_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let addr = SocketAddr::parse(&path);
        drop(ListenSocket::bind(&addr, 0o600).unwrap());
        assert!(!path.exists(), "drop removes the socket file");
        // A stale file (a socket nobody listens on) is replaced.
        let stale = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        drop(stale);
        let listener = ListenSocket::bind(&addr, 0o600).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let client = ControlSocket::connect(&addr).await.unwrap();
        let server = listener.accept().await.unwrap();
        let memfd = crate::memif::region::Region::create("t", 4096).unwrap();
        let mut frame = [7u8; MSG_SIZE];
        client.send(&frame, memfd.fd()).await.unwrap();
        frame = [0; MSG_SIZE];
        let (n, fd) = server.recv(&mut frame).await.unwrap();
        assert_eq!(n, MSG_SIZE);
        assert_eq!(frame, [7u8; MSG_SIZE]);
        assert!(fd.is_some());
        drop(client);
        let (n, fd) = server.recv(&mut frame).await.unwrap();
        assert_eq!((n, fd.is_none()), (0, true));
        // A live socket is never replaced.
        let err = ListenSocket::bind(&addr, 0o600).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
    }

    #[tokio::test]
    async fn abstract_names_and_bad_addresses() {
        let name = format!("@wgvpp-test-{}", std::process::id());
        let addr = SocketAddr::parse(&name);
        assert!(matches!(addr, SocketAddr::Abstract(_)));
        let listener = ListenSocket::bind(&addr, 0o600).unwrap();
        let client = ControlSocket::connect(&addr).await.unwrap();
        let _server = listener.accept().await.unwrap();
        drop(client);
        let long = SocketAddr::parse("/".repeat(200));
        assert!(
            ListenSocket::bind(&long, 0o600)
                .unwrap_err()
                .to_string()
                .contains("longer than 107")
        );
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("regular");
        std::fs::write(&file, b"x").unwrap();
        let err = ListenSocket::bind(&SocketAddr::parse(&file), 0o600).unwrap_err();
        assert!(err.to_string().contains("is not a socket"), "{err}");
        assert!(file.exists(), "a regular file is never removed");
    }
}
