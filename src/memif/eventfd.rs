//! Interrupt eventfds: one per ring, created by the client and shared with the server through
//! ADD_RING. The producer of a ring writes to it after publishing work (unless the consumer masked
//! interrupts); the consumer reads it to clear it, or waits on it from tokio through [`Interrupt`].

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use tokio::io::unix::AsyncFd;

/// A non-blocking, non-semaphore eventfd.
#[derive(Debug)]
pub struct EventFd(OwnedFd);

impl EventFd {
    /// Creates a fresh eventfd (non-blocking, close-on-exec).
    pub fn new() -> io::Result<EventFd> {
        // SAFETY: plain syscall; the result is checked before use.
        let raw = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh fd that nothing else owns.
        Ok(EventFd(unsafe { OwnedFd::from_raw_fd(raw) }))
    }

    /// Wraps an eventfd received from the peer, after checking that it is one. Anything else is
    /// refused: a regular file or a directory cannot be watched (epoll refuses them), and a read or a
    /// write on a file of the peer's choosing (a FIFO, a FUSE file) could block a data-plane thread.
    pub fn from_peer(fd: OwnedFd) -> io::Result<EventFd> {
        let not_eventfd = |what: String| {
            Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("not an eventfd but {what}"),
            ))
        };
        // /proc names an eventfd `anon_inode:[eventfd]`; without /proc (a sandbox), any anonymous inode
        // (no file type bits) is taken on trust: none of them blocks a non-blocking read or write.
        let mode = super::region::fstat(fd.as_fd())?.st_mode & libc::S_IFMT;
        let kind = || match mode {
            0 => None,
            _ => Some(super::region::file_kind(mode).to_owned()),
        };
        match std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())) {
            Ok(target) if target.as_os_str() == "anon_inode:[eventfd]" => {}
            Ok(target) => {
                return not_eventfd(
                    kind().unwrap_or_else(|| target.to_string_lossy().into_owned()),
                );
            }
            Err(_) => {
                if let Some(kind) = kind() {
                    return not_eventfd(kind);
                }
            }
        }
        set_nonblocking(fd.as_fd())?;
        Ok(EventFd(fd))
    }

    /// Signals the other side (adds 1 to the counter). A full counter (EAGAIN) already means "signalled".
    pub fn notify(&self) -> io::Result<()> {
        let one = 1u64.to_ne_bytes();
        // SAFETY: writes 8 bytes from a valid local buffer to an fd we own.
        let n = unsafe { libc::write(self.0.as_raw_fd(), one.as_ptr().cast(), one.len()) };
        if n < 0 {
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::WouldBlock {
                return Err(err);
            }
        }
        Ok(())
    }

    /// Reads and clears the counter; returns how many signals were pending (0 when none).
    pub fn drain(&self) -> io::Result<u64> {
        drain_fd(self.0.as_fd())
    }

    /// A duplicate of the fd, for a waiter that lives apart from the queue.
    pub fn try_clone(&self) -> io::Result<OwnedFd> {
        self.0.try_clone()
    }
}

impl AsFd for EventFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

fn drain_fd(fd: BorrowedFd<'_>) -> io::Result<u64> {
    let mut buf = [0u8; 8];
    // SAFETY: reads at most 8 bytes into a valid local buffer.
    let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        let err = io::Error::last_os_error();
        return if err.kind() == io::ErrorKind::WouldBlock {
            Ok(0)
        } else {
            Err(err)
        };
    }
    Ok(u64::from_ne_bytes(buf))
}

pub(crate) fn set_nonblocking(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: F_GETFL on an open fd; no memory is passed.
    let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: F_SETFL on an open fd; no memory is passed.
    if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Waits for a ring's interrupts from async code (tokio `AsyncFd` over a duplicate of the eventfd).
///
/// Made by `RxQueue::interrupt`; it can live in a task while the queue itself is polled elsewhere.
#[derive(Debug)]
pub struct Interrupt(AsyncFd<OwnedFd>);

impl Interrupt {
    pub(crate) fn new(fd: OwnedFd) -> io::Result<Interrupt> {
        Ok(Interrupt(super::socket::register(
            fd,
            tokio::io::Interest::READABLE,
        )?))
    }

    /// Waits until the peer signals the ring, clears the signal and returns how many were pending.
    pub async fn wait(&self) -> io::Result<u64> {
        loop {
            let mut guard = self.0.readable().await?;
            match drain_fd(self.0.get_ref().as_fd())? {
                0 => guard.clear_ready(),
                n => return Ok(n),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notify_then_drain_counts_and_clears() {
        let e = EventFd::new().unwrap();
        assert_eq!(e.drain().unwrap(), 0);
        e.notify().unwrap();
        e.notify().unwrap();
        assert_eq!(e.drain().unwrap(), 2);
        assert_eq!(e.drain().unwrap(), 0);
    }

    #[tokio::test]
    async fn interrupt_wakes_an_async_waiter() {
        let e = EventFd::new().unwrap();
        let irq = Interrupt::new(e.try_clone().unwrap()).unwrap();
        let waiter = tokio::spawn(async move { irq.wait().await.unwrap() });
        tokio::task::yield_now().await;
        e.notify().unwrap();
        let n = tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(n, 1);
    }
}
