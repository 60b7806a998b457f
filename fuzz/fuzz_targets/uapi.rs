//! The UAPI server (`wg::uapi::serve_connection`) fed a hostile client's bytes, `get=1` and `set=1`
//! requests and garbage, over one connection, against a real device. It always ends; every reply is
//! `errno=0` or a negative errno from the protocol's set, after a blank-line-free body; and what `get`
//! then reports, sent back as a `set`, rebuilds the same configuration (`wg showconf | wg setconf`).
//!
//! Input: one byte for how many bytes each read returns (0: everything at once), then the client's
//! bytes. Lines setting `private_key` are dropped first: without a key the device has no live peers,
//! so nothing a fuzzed `endpoint=` names is ever sent a packet.
#![no_main]

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use ipnet::IpNet;
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::runtime::Runtime;
use wireguard_vpp::wg::channel::{ChannelIpRecv, ChannelIpSend, IpChannelEnds, ip_channel};
use wireguard_vpp::wg::uapi::{
    Command, EADDRINUSE, EINVAL, EIO, EPROTO, SetParser, serve_connection,
};
use wireguard_vpp::wg::{ConfigEdit, DeviceConfig, DeviceSettings, PeerConfig, WgDevice};

/// One device for the whole run (creating one binds a socket); reset before each input.
struct Harness {
    runtime: Runtime,
    device: WgDevice<ChannelIpSend, ChannelIpRecv>,
    _ends: IpChannelEnds,
}

impl Harness {
    fn new() -> Harness {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let (ip_tx, ip_rx, ends) = ip_channel(16, 1420);
        let settings = DeviceSettings {
            name: "fuzz".to_owned(),
            ..DeviceSettings::default()
        };
        let device = runtime
            .block_on(WgDevice::new(settings, ip_tx, ip_rx))
            .expect("a device on a random port");
        Harness {
            runtime,
            device,
            _ends: ends,
        }
    }
}

/// The client's side of the connection: reads come from the input in chunks, writes are kept.
struct Client<'a> {
    input: &'a [u8],
    chunk: usize,
    replies: Vec<u8>,
}

impl AsyncRead for Client<'_> {
    fn poll_read(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let n = this.chunk.min(this.input.len()).min(buf.remaining());
        let (head, tail) = this.input.split_at(n);
        buf.put_slice(head);
        this.input = tail;
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Client<'_> {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().replies.extend_from_slice(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Each reply: `key=value` lines (a `get`'s), then `errno=0` or `errno=-N` with a known N, then a
/// blank line.
fn check_replies(replies: &[u8]) {
    let text = std::str::from_utf8(replies).expect("replies are text");
    assert!(text.is_empty() || text.ends_with("\n\n"), "{text:?}");
    for reply in text.split_terminator("\n\n") {
        let mut lines: Vec<&str> = reply.split('\n').collect();
        let errno = lines.pop().and_then(|last| last.strip_prefix("errno="));
        match errno {
            Some("0") => {}
            Some(negative) => {
                let code: i32 = negative.parse().expect("a number");
                assert!(
                    [EINVAL, EPROTO, EADDRINUSE, EIO].contains(&-code),
                    "{reply:?}"
                );
                assert!(lines.is_empty(), "an error reply has no body: {reply:?}");
            }
            None => panic!("a reply without errno: {reply:?}"),
        }
        for line in lines {
            assert!(line.split_once('=').is_some(), "{line:?}");
        }
    }
}

/// The configuration a `get` reply describes, rebuilt by the `set` parser and editor.
fn rebuild(get: &str) -> DeviceConfig {
    const CONFIGURATION: [&str; 8] = [
        "private_key",
        "fwmark",
        "public_key",
        "preshared_key",
        "endpoint",
        "persistent_keepalive_interval",
        "allowed_ip",
        "protocol_version",
    ];
    let mut parser = SetParser::default();
    let mut edit = ConfigEdit::default();
    let mut config = DeviceConfig::default();
    for line in get.lines() {
        let key = line.split_once('=').map_or(line, |(key, _)| key);
        if !CONFIGURATION.contains(&key) {
            continue; // counters and handshake times; the live port
        }
        let command = parser
            .parse_line(line.as_bytes())
            .unwrap_or_else(|e| panic!("get wrote {line:?}, which set refuses: {e}"));
        edit.apply(&mut config, &command);
    }
    config
}

fn check_config(config: &DeviceConfig) {
    let mut seen: Vec<IpNet> = Vec::new();
    for peer in config.peers() {
        for net in &peer.allowed_ips {
            assert_eq!(*net, net.trunc(), "allowed IPs are stored masked");
            assert!(!seen.contains(net), "{net} belongs to two peers");
            seen.push(*net);
        }
    }
}

fn peers(config: &DeviceConfig) -> Vec<PeerConfig> {
    config.peers().into_iter().cloned().collect()
}

thread_local! {
    static HARNESS: Harness = Harness::new();
}

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, rest)) = data.split_first() else {
        return;
    };
    let request: Vec<u8> = rest
        .split_inclusive(|&b| b == b'\n')
        .filter(|line| !line.starts_with(b"private_key="))
        .flatten()
        .copied()
        .collect();
    let mut client = Client {
        input: &request,
        chunk: if chunk == 0 { usize::MAX } else { chunk.into() },
        replies: Vec::new(),
    };
    HARNESS.with(|h| {
        h.runtime.block_on(async {
            let device = &h.device;
            let mut reset = vec![Command::ReplacePeers, Command::Fwmark(0)];
            if device.config().await.listen_port != 0 {
                reset.push(Command::ListenPort(0));
            }
            device.set(&reset).await.expect("the reset applies");

            serve_connection(&mut client, device).await;
            check_replies(&client.replies);

            let config = device.config().await;
            check_config(&config);
            let rebuilt = rebuild(&device.uapi_get().await);
            assert_eq!(rebuilt.private_key, config.private_key);
            assert_eq!(rebuilt.fwmark, config.fwmark);
            assert_eq!(
                peers(&rebuilt),
                peers(&config),
                "get then set changes the peers"
            );
        })
    });
});
