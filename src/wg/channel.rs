//! An IP side made of two tokio channels: the caller pushes IP packets into the device and takes
//! the decrypted ones out. Used by the tests and the benchmark in place of memif; it shows the whole
//! contract a packet side has to meet (bursts in, one packet at a time out, a fixed MTU).

use std::io;

use gotatun::packet::{Ip, Packet, PacketBufPool};
use tokio::sync::mpsc;

use crate::wg::ip_side::{BURST, IpRecv, IpSend, MtuWatcher};

/// The device's receiving half: packets the caller sends into the tunnel.
pub struct ChannelIpRecv {
    packets: mpsc::Receiver<Vec<u8>>,
    burst: Vec<Vec<u8>>,
    mtu: u16,
}

/// The device's sending half: decrypted packets out of the tunnel.
pub struct ChannelIpSend {
    packets: mpsc::Sender<Vec<u8>>,
}

/// The caller's ends of an IP channel pair.
pub struct IpChannelEnds {
    /// Packets to encrypt and send to the peer that owns their destination.
    pub to_device: mpsc::Sender<Vec<u8>>,
    /// Packets the device decrypted.
    pub from_device: mpsc::Receiver<Vec<u8>>,
}

/// Creates a channel IP side with room for `capacity` packets each way and the given MTU.
pub fn ip_channel(capacity: usize, mtu: u16) -> (ChannelIpSend, ChannelIpRecv, IpChannelEnds) {
    let (to_device, device_rx) = mpsc::channel(capacity);
    let (device_tx, from_device) = mpsc::channel(capacity);
    (
        ChannelIpSend { packets: device_tx },
        ChannelIpRecv {
            packets: device_rx,
            burst: Vec::with_capacity(BURST),
            mtu,
        },
        IpChannelEnds {
            to_device,
            from_device,
        },
    )
}

impl IpSend for ChannelIpSend {
    async fn send(&mut self, packet: Packet<Ip>) -> io::Result<()> {
        let bytes = packet.into_bytes();
        self.packets
            .send(bytes.as_ref().to_vec())
            .await
            .map_err(|_| {
                io::Error::new(
                    io::ErrorKind::BrokenPipe,
                    "the receiver of decrypted packets is gone",
                )
            })
    }
}

impl IpRecv for ChannelIpRecv {
    async fn recv<'a>(
        &'a mut self,
        pool: &mut PacketBufPool,
    ) -> io::Result<impl Iterator<Item = Packet<Ip>> + Send + 'a> {
        self.burst.clear();
        if self.packets.recv_many(&mut self.burst, BURST).await == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the packet sender is gone",
            ));
        }
        let pool = pool.clone();
        Ok(self.burst.drain(..).filter_map(move |bytes| {
            let mut packet = pool.get();
            let buf = packet.buf_mut();
            buf.clear();
            buf.extend_from_slice(&bytes);
            packet.try_into_ip().ok()
        }))
    }

    fn mtu(&self) -> MtuWatcher {
        MtuWatcher::new(self.mtu)
    }
}
