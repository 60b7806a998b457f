//! UDP GSO on send, which gotatun does only on Windows: a run of datagrams to the same endpoint
//! with the same size (a burst of full-size packets to one peer) leaves in one `sendmsg` with a
//! `UDP_SEGMENT` control message, so the kernel walks its UDP/IP path once per run instead of once
//! per packet. Everything else goes out through gotatun's `sendmmsg`. Receiving is gotatun's own
//! (`recvmmsg` with UDP GRO). A kernel or device that refuses GSO turns it off for the socket.

use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use gotatun::packet::Packet;
use gotatun::udp::UdpSend;
use gotatun::udp::socket::UdpSocket;
use nix::sys::socket::{ControlMessage, MsgFlags, SockaddrStorage, sendmsg};
use tokio::io::Interest;

/// Most datagrams handed to one `send_many_to` (as gotatun's `sendmmsg` batch).
const MAX_BATCH: usize = 100;
/// Most segments in one GSO send (the kernel's limit is 64 on older kernels).
const MAX_SEGMENTS: usize = 64;
/// Most bytes in one GSO send: the payload of one (unsegmented) UDP datagram.
const MAX_GSO_BYTES: usize = 65_507;

/// gotatun's Linux UDP socket with GSO added on the send side.
#[derive(Clone)]
pub(crate) struct GsoSocket {
    inner: UdpSocket,
    gso: Arc<AtomicBool>,
}

/// Reused between `send_many_to` calls.
#[derive(Default)]
pub(crate) struct GsoSendBuf {
    fallback: Vec<(Packet, SocketAddr)>,
    inner: <UdpSocket as UdpSend>::SendManyBuf,
}

impl GsoSocket {
    pub(crate) fn new(inner: UdpSocket) -> GsoSocket {
        GsoSocket {
            inner,
            gso: Arc::new(AtomicBool::new(true)),
        }
    }

    /// Sends `run` (at least two datagrams, same destination, all but the last of the same size)
    /// in one `sendmsg`. `Ok(false)` means GSO is not available and nothing was sent.
    async fn send_segmented(&self, run: &[(Packet, SocketAddr)]) -> io::Result<bool> {
        let destination = SockaddrStorage::from(run[0].1);
        let segment = u16::try_from(run[0].0.len())
            .map_err(|_| io::Error::other("datagram too large for GSO"))?;
        let mut slices = [IoSlice::new(&[]); MAX_SEGMENTS];
        for (slice, (packet, _)) in slices.iter_mut().zip(run) {
            *slice = IoSlice::new(&packet[..]);
        }
        let slices = &slices[..run.len()];
        let socket = self.inner.socket();
        let fd = socket.as_raw_fd();
        let sent = socket
            .async_io(Interest::WRITABLE, || {
                let control = [ControlMessage::UdpGsoSegments(&segment)];
                sendmsg(fd, slices, &control, MsgFlags::empty(), Some(&destination))
                    .map_err(io::Error::from)
            })
            .await;
        match sent {
            Ok(_) => Ok(true),
            // Refused by the kernel or the outgoing device: never try again on this socket.
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EIO | libc::EINVAL | libc::EOPNOTSUPP | libc::ENOPROTOOPT)
                ) =>
            {
                tracing::info!(error = %e, "UDP GSO is not available; sending datagrams one by one");
                self.gso.store(false, Ordering::Relaxed);
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    async fn flush_fallback(&self, buf: &mut GsoSendBuf) -> io::Result<()> {
        if buf.fallback.is_empty() {
            return Ok(());
        }
        let result = self
            .inner
            .send_many_to(&mut buf.inner, &mut buf.fallback)
            .await;
        buf.fallback.clear();
        result
    }
}

/// Length of the GSO-able run at the start of `packets`: same destination, same size (the last
/// one may be shorter), within the kernel's limits.
fn run_length(packets: &[(Packet, SocketAddr)]) -> usize {
    let Some((first, destination)) = packets.first() else {
        return 0;
    };
    let size = first.len();
    let mut count = 1;
    let mut bytes = size;
    for (packet, to) in &packets[1..] {
        if to != destination
            || packet.len() > size
            || count == MAX_SEGMENTS
            || bytes + packet.len() > MAX_GSO_BYTES
        {
            break;
        }
        count += 1;
        bytes += packet.len();
        if packet.len() < size {
            break;
        }
    }
    count
}

impl UdpSend for GsoSocket {
    type SendManyBuf = GsoSendBuf;

    async fn send_to(&self, packet: Packet, destination: SocketAddr) -> io::Result<()> {
        self.inner.send_to(packet, destination).await
    }

    fn max_number_of_packets_to_send(&self) -> usize {
        MAX_BATCH
    }

    async fn send_many_to(
        &self,
        buf: &mut GsoSendBuf,
        packets: &mut Vec<(Packet, SocketAddr)>,
    ) -> io::Result<()> {
        if !self.gso.load(Ordering::Relaxed) {
            return self.inner.send_many_to(&mut buf.inner, packets).await;
        }
        // On an error the rest of the batch is dropped, as gotatun's `sendmmsg` path does.
        let mut start = 0;
        while start < packets.len() {
            let run = run_length(&packets[start..]);
            if run >= 2 && self.gso.load(Ordering::Relaxed) {
                // Keep the order: what waits for `sendmmsg` leaves before this run.
                self.flush_fallback(buf).await?;
                if self.send_segmented(&packets[start..start + run]).await? {
                    start += run;
                    continue;
                }
            }
            buf.fallback.extend(packets.drain(start..start + run));
        }
        packets.clear();
        self.flush_fallback(buf).await
    }

    fn local_addr(&self) -> io::Result<Option<SocketAddr>> {
        self.inner.local_addr().map(Some)
    }

    fn set_fwmark(&self, mark: u32) -> io::Result<()> {
        self.inner.set_fwmark(mark)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gotatun::udp::socket::SockOpt;
    use std::time::Duration;

    fn datagram(tag: u8, index: usize, len: usize) -> Packet {
        let mut bytes = vec![tag; len];
        bytes[..8].copy_from_slice(&(index as u64).to_be_bytes());
        Packet::copy_from(&bytes[..])
    }

    fn receive_all(socket: &std::net::UdpSocket, count: usize) -> Vec<Vec<u8>> {
        socket
            .set_read_timeout(Some(Duration::from_secs(3)))
            .expect("timeout");
        let mut out = Vec::new();
        let mut buf = vec![0u8; 65536];
        while out.len() < count {
            let n = socket.recv(&mut buf).expect("every datagram arrives");
            out.push(buf[..n].to_vec());
        }
        out
    }

    #[tokio::test]
    async fn runs_leave_segmented_and_arrive_as_separate_datagrams_in_order() {
        let options = SockOpt {
            only_v6: Some(false),
            ..SockOpt::default()
        };
        let sender = UdpSocket::bind("[::]:0".parse().expect("literal"), options).expect("bind");
        let socket = GsoSocket::new(sender);
        let a = std::net::UdpSocket::bind("127.0.0.1:0").expect("receiver a");
        let b = std::net::UdpSocket::bind("[::1]:0").expect("receiver b");
        let (to_a, to_b) = (a.local_addr().expect("addr"), b.local_addr().expect("addr"));

        // a run of 10 full-size datagrams plus a short tail to a, a lone one to b, 3 small to a,
        // then 70 full-size ones to b (more than one GSO send can carry).
        let mut batch = Vec::new();
        let mut expected_a = Vec::new();
        let mut expected_b = Vec::new();
        let mut push = |to: SocketAddr, len: usize| {
            let index = batch.len();
            let packet = datagram(if to == to_a { 0xa } else { 0xb }, index, len);
            if to == to_a {
                expected_a.push(packet.to_vec())
            } else {
                expected_b.push(packet.to_vec())
            }
            batch.push((packet, to));
        };
        (0..10).for_each(|_| push(to_a, 1452));
        push(to_a, 500);
        push(to_b, 1452);
        (0..3).for_each(|_| push(to_a, 100));
        (0..70).for_each(|_| push(to_b, 1452));
        let mut buf = GsoSendBuf::default();
        socket
            .send_many_to(&mut buf, &mut batch)
            .await
            .expect("sent");
        assert!(batch.is_empty());
        assert!(socket.gso.load(Ordering::Relaxed), "loopback takes GSO");

        assert_eq!(receive_all(&a, expected_a.len()), expected_a);
        assert_eq!(receive_all(&b, expected_b.len()), expected_b);
    }

    #[test]
    fn runs_respect_destination_size_and_kernel_limits() {
        let to: SocketAddr = "192.0.2.1:1".parse().expect("literal");
        let other: SocketAddr = "192.0.2.2:1".parse().expect("literal");
        let make = |sizes: &[(usize, SocketAddr)]| -> Vec<(Packet, SocketAddr)> {
            sizes
                .iter()
                .map(|&(len, to)| (Packet::copy_from(&vec![0u8; len][..]), to))
                .collect()
        };
        assert_eq!(run_length(&make(&[(100, to), (100, to), (100, other)])), 2);
        assert_eq!(
            run_length(&make(&[(100, to), (50, to), (50, to)])),
            2,
            "a shorter datagram ends the run"
        );
        assert_eq!(
            run_length(&make(&[(100, to), (200, to)])),
            1,
            "a longer one cannot follow"
        );
        assert_eq!(run_length(&make(&vec![(1452, to); 80])), 65_507 / 1452);
        assert_eq!(run_length(&make(&vec![(100, to); 80])), MAX_SEGMENTS);
        assert_eq!(run_length(&[]), 0);
    }
}
