//! The `wg` tool against our UAPI socket and against Debian's wireguard-go, side by side: the same
//! commands go to both, and what `wg` prints (and its exit status) must be the same. Only what is
//! random by nature is normalised: the interface name, the order of peers (wireguard-go keeps them
//! in a Go map) and of allowed IPs, and the traffic counters (wireguard-go counts handshake bytes).
//! Where we deliberately differ from that wireguard-go (a failed port change, `allowed_ip=-x`), the
//! test says so and checks our behaviour.

mod common;
mod wg_peer_support;

use std::io::{BufRead, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Output, Stdio};
use std::sync::Arc;

use wg_peer_support::*;
use wireguard_vpp::wg::channel::{IpChannelEnds, ip_channel};
use wireguard_vpp::wg::uapi::{DEFAULT_SOCKET_DIR, UapiListener};
use wireguard_vpp::wg::{DeviceSettings, Key, WgDevice};

/// Our device behind our UAPI socket, and wireguard-go in its own namespace.
struct SideBySide {
    ours: String,
    theirs: String,
    temp: tempfile::TempDir,
    _ends: IpChannelEnds,
    _serving: tokio::task::JoinHandle<wireguard_vpp::wg::uapi::ServeEnd>,
    _go: ProcessGuard,
    ns: Netns,
}

impl SideBySide {
    async fn new() -> SideBySide {
        let (pid, n) = unique();
        let ns = Netns::new(format!("wgt{pid}x{n}"));
        let theirs = format!("wgc{pid}x{n}");
        let ours = format!("wgd{pid}x{n}");
        let go = start_wireguard_go(&ns, &theirs);
        let (tx, rx, ends) = ip_channel(64, 1420);
        let settings = DeviceSettings {
            name: ours.clone(),
            ..DeviceSettings::default()
        };
        let device = Arc::new(WgDevice::new(settings, tx, rx).await.expect("our device"));
        let listener =
            UapiListener::bind(Path::new(DEFAULT_SOCKET_DIR), &ours).expect("our UAPI socket");
        let serving = tokio::spawn(listener.serve(device));
        SideBySide {
            ours,
            theirs,
            temp: tempfile::tempdir().expect("tempdir"),
            _ends: ends,
            _serving: serving,
            _go: go,
            ns,
        }
    }

    /// Runs `wg` with `IF` replaced by each interface name, off the async runtime.
    async fn wg_both(&self, args: &[&str]) -> (Output, Output) {
        let run_for = |name: String| {
            let args: Vec<String> = args
                .iter()
                .map(|a| {
                    if *a == "IF" {
                        name.clone()
                    } else {
                        (*a).to_owned()
                    }
                })
                .collect();
            tokio::task::spawn_blocking(move || {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                run("wg", &args)
            })
        };
        let (ours, theirs) = tokio::join!(run_for(self.ours.clone()), run_for(self.theirs.clone()));
        (ours.expect("wg ran"), theirs.expect("wg ran"))
    }

    /// Runs `wg args` against both and asserts the same status, stdout and stderr.
    async fn same(&self, args: &[&str]) -> String {
        let (ours, theirs) = self.wg_both(args).await;
        let show = |o: &Output, name: &str| {
            (
                o.status.code(),
                normalise(&String::from_utf8_lossy(&o.stdout), name),
                normalise(&String::from_utf8_lossy(&o.stderr), name),
            )
        };
        let (ours, theirs) = (show(&ours, &self.ours), show(&theirs, &self.theirs));
        assert_eq!(
            ours,
            theirs,
            "`wg {}` differs (left: ours, right: wireguard-go)",
            args.join(" ")
        );
        ours.1
    }

    /// Compares everything `wg` can show about the interface.
    async fn same_views(&self) {
        self.same(&["showconf", "IF"]).await;
        self.same(&["show", "IF"]).await;
        self.same(&["show", "IF", "dump"]).await;
        for field in [
            "public-key",
            "private-key",
            "listen-port",
            "fwmark",
            "peers",
            "preshared-keys",
            "endpoints",
            "allowed-ips",
            "persistent-keepalive",
        ] {
            self.same(&["show", "IF", field]).await;
        }
    }

    fn file(&self, name: &str, text: &str) -> String {
        let path = self.temp.path().join(name);
        std::fs::write(&path, text).expect("write file");
        path.to_str().expect("utf-8 path").to_owned()
    }

    /// Sends one raw request to a UAPI socket and reads the reply up to its blank line.
    fn raw(&self, name: &str, request: &str) -> String {
        let mut stream = UnixStream::connect(socket_path(name)).expect("connect");
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .expect("timeout");
        stream.write_all(request.as_bytes()).expect("write");
        let mut reader = std::io::BufReader::new(stream);
        let mut reply = String::new();
        loop {
            let mut line = String::new();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return reply,
                Ok(_) => {
                    reply.push_str(&line);
                    if line == "\n" {
                        return reply;
                    }
                }
            }
        }
    }
}

/// Replaces the interface name, drops the traffic counters and sorts what has no defined order.
fn normalise(text: &str, name: &str) -> String {
    let text = text.replace(name, "IF");
    if !text.contains("interface: ") && !text.contains("[Interface]") {
        // `dump` and the single-field views: one record per line.
        let mut lines: Vec<String> = text
            .lines()
            .map(|line| {
                let mut fields: Vec<String> = line.split('\t').map(sort_list).collect();
                if fields.len() == 8 {
                    // public-key preshared endpoint allowed-ips handshake rx tx keepalive
                    fields[4] = "-".into();
                    fields[5] = "-".into();
                    fields[6] = "-".into();
                }
                fields.join("\t")
            })
            .collect();
        let header = if lines.first().is_some_and(|l| l.split('\t').count() == 4) {
            Some(lines.remove(0))
        } else {
            None
        };
        lines.sort();
        return header
            .into_iter()
            .chain(lines)
            .collect::<Vec<_>>()
            .join("\n");
    }
    // `show` and `showconf`: blocks separated by blank lines; the first is the interface.
    let mut blocks: Vec<String> = text
        .split("\n\n")
        .map(|block| {
            block
                .lines()
                .filter(|l| !l.contains("latest handshake:") && !l.contains("transfer:"))
                .map(sort_list)
                .collect::<Vec<_>>()
                .join("\n")
        })
        .filter(|b| !b.trim().is_empty())
        .collect();
    if blocks.len() > 1 {
        blocks[1..].sort();
    }
    blocks.join("\n\n")
}

/// Sorts the items of a comma- or space-separated list of allowed IPs, leaving other text alone.
fn sort_list(line: &str) -> String {
    for (marker, separator) in [("allowed ips: ", ", "), ("AllowedIPs = ", ", ")] {
        if let Some((head, list)) = line.split_once(marker) {
            let mut items: Vec<&str> = list.split(separator).collect();
            items.sort_unstable();
            return format!("{head}{marker}{}", items.join(separator));
        }
    }
    // A dump field or single-field view: "a/8,b/16" or "a/8 b/16".
    if let Some(separator) = [',', ' '].into_iter().find(|&c| line.contains(c)) {
        let mut items: Vec<&str> = line.split(separator).collect();
        if items.iter().all(|item| item.contains('/')) {
            items.sort_unstable();
            return items.join(&separator.to_string());
        }
    }
    line.to_owned()
}

/// The fwmark the kernel has on the UDP socket bound to `port` in our namespace (from `ss -e`).
fn socket_fwmark(port: &str) -> Option<String> {
    let filter = format!("sport = :{port}");
    let out = run_ok("ss", &["-u", "-a", "-n", "-e", "-H", &filter]);
    assert!(!out.trim().is_empty(), "no UDP socket on port {port}");
    out.split_whitespace()
        .find_map(|field| field.strip_prefix("fwmark:").map(str::to_owned))
}

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("[::]:0")
        .and_then(|s| s.local_addr())
        .expect("a free port")
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wg_prints_the_same_for_our_socket_and_for_wireguard_go() {
    if !peers_available() {
        return;
    }
    let pair = SideBySide::new().await;
    let (private, own_public) = genkey();
    let (_, a) = genkey();
    let (_, b) = genkey();
    let (_, c) = genkey();
    let (psk, _) = genkey();
    let key = key_file(pair.temp.path(), "private.key", &private);
    let key = key.to_str().expect("utf-8");
    let psk = key_file(pair.temp.path(), "psk.key", &psk);
    let psk = psk.to_str().expect("utf-8");
    let (a, b, c) = (a.to_base64(), b.to_base64(), c.to_base64());
    let port = free_udp_port().to_string();

    // wg set with every option.
    pair.same(&[
        "set",
        "IF",
        "listen-port",
        &port,
        "fwmark",
        "0x10",
        "private-key",
        key,
        "peer",
        &a,
        "preshared-key",
        psk,
        "endpoint",
        "192.0.2.1:51820",
        "persistent-keepalive",
        "0",
        "allowed-ips",
        "10.1.0.0/16,fd01::/64",
        "peer",
        &b,
        "endpoint",
        "[2001:db8::1]:51821",
        "allowed-ips",
        "10.2.0.0/24,10.3.0.1/32",
    ])
    .await;
    pair.same_views().await;

    pair.same(&["set", "IF", "peer", &a, "persistent-keepalive", "25"])
        .await;
    pair.same(&["set", "IF", "fwmark", "off"]).await;
    // 10.2.0.0/24 moves from b to a.
    pair.same(&[
        "set",
        "IF",
        "peer",
        &a,
        "allowed-ips",
        "10.9.0.0/16,10.2.0.0/24",
    ])
    .await;
    pair.same_views().await;

    pair.same(&["set", "IF", "peer", &b, "remove"]).await;
    pair.same(&[
        "set",
        "IF",
        "peer",
        &c,
        "endpoint",
        "192.0.2.3:1",
        "allowed-ips",
        "0.0.0.0/0",
    ])
    .await;
    // A peer with the device's own public key is ignored by both.
    pair.same(&[
        "set",
        "IF",
        "peer",
        &own_public.to_base64(),
        "allowed-ips",
        "10.99.0.0/16",
    ])
    .await;
    pair.same_views().await;

    // setconf (replaces everything) and syncconf (a diff), from files.
    let private_b64 = private.to_base64();
    let setconf = pair.file(
        "set.conf",
        &format!(
            "[Interface]\nPrivateKey = {private_b64}\nListenPort = {port}\n\n[Peer]\nPublicKey = {a}\nAllowedIPs = 10.1.0.0/16\n\
             Endpoint = 192.0.2.9:9\n\n[Peer]\nPublicKey = {b}\nAllowedIPs = fd02::/64\nPersistentKeepalive = 5\n"
        ),
    );
    pair.same(&["setconf", "IF", &setconf]).await;
    pair.same_views().await;
    let syncconf =
        pair.file("sync.conf", &format!("[Interface]\nListenPort = {port}\nFwMark = 0x20\n\n[Peer]\nPublicKey = {c}\nAllowedIPs = 10.7.0.0/16\n"));
    pair.same(&["syncconf", "IF", &syncconf]).await;
    pair.same_views().await;
    assert_eq!(socket_fwmark(&port).as_deref(), Some("0x20"));
    pair.same(&["addconf", "IF", &setconf]).await;
    pair.same_views().await;

    // Values that wg itself refuses.
    for bad in [
        &["set", "IF", "listen-port", "abc"][..],
        &["set", "IF", "peer", "notakey"],
        &["set", "IF", "peer", &a, "allowed-ips", "10.0.0.0/33"],
        &["set", "IF", "peer", &a, "endpoint", "192.0.2.1"],
        &["set", "IF", "peer", &a, "persistent-keepalive", "65536"],
        &["set", "IF", "fwmark", "x"],
        &["set", "IF", "private-key", "/nonexistent/key"],
    ] {
        let out = pair.same(bad).await;
        assert!(out.is_empty(), "{bad:?} printed {out}");
    }
    let (ours, _) = pair.wg_both(&["set", "IF", "listen-port", "abc"]).await;
    assert!(!ours.status.success());

    // wg show interfaces lists our socket.
    let interfaces = run_ok("wg", &["show", "interfaces"]);
    assert!(
        interfaces.split_whitespace().any(|i| i == pair.ours),
        "{interfaces}"
    );

    pair.same(&["set", "IF", "peer", &a, "remove"]).await;
    pair.same_views().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_in_use_gives_the_same_error_and_we_keep_our_socket() {
    if !peers_available() {
        return;
    }
    let pair = SideBySide::new().await;
    let port = free_udp_port().to_string();
    pair.same(&["set", "IF", "listen-port", &port]).await;

    // The same port is taken on both sides: in the root namespace for us, in the peer's for it.
    let blocker = std::net::UdpSocket::bind("[::]:0").expect("blocker");
    let taken = blocker.local_addr().expect("addr").port().to_string();
    let script = format!(
        "import socket,sys,time\ns=socket.socket(socket.AF_INET6,socket.SOCK_DGRAM)\ns.setsockopt(socket.IPPROTO_IPV6,socket.IPV6_V6ONLY,0)\n\
         s.bind(('::',{taken}))\nprint('ready',flush=True)\ntime.sleep(60)\n"
    );
    let mut child = std::process::Command::new("ip")
        .args(["netns", "exec", &pair.ns.name, "python3", "-c", &script])
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 blocker");
    let mut ready = [0u8; 6];
    let mut blocker_output = child.stdout.take().expect("stdout");
    blocker_output
        .read_exact(&mut ready)
        .expect("blocker ready");
    let _blocker_in_ns = ProcessGuard {
        child,
        leaves_behind: None,
    };

    let err = pair.same(&["set", "IF", "listen-port", &taken]).await;
    assert!(err.is_empty());
    let (ours, _) = pair.wg_both(&["set", "IF", "listen-port", &taken]).await;
    assert_eq!(
        String::from_utf8_lossy(&ours.stderr).trim(),
        "Unable to modify interface: Address already in use"
    );
    // Deliberately better than wireguard-go, which is left without a socket (listen port 0):
    // we keep the old one and keep reporting it.
    let shown = run_ok("wg", &["show", &pair.ours, "listen-port"]);
    assert_eq!(shown.trim(), port);
    assert_eq!(
        socket_fwmark(&port),
        None,
        "the old socket is still bound (and unmarked)"
    );
    drop(blocker);
    drop(blocker_output);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_requests_get_the_same_replies_as_from_wireguard_go() {
    if !peers_available() {
        return;
    }
    let pair = SideBySide::new().await;
    let peer = Key([0x42; 32]).to_hex();
    let requests = [
        "set=1\nbogus_key=1\n\n".to_owned(),
        "set=1\nlisten_port=abc\n\n".to_owned(),
        "set=1\nnoequals\n\n".to_owned(),
        "set=1\nprotocol_version=2\n\n".to_owned(),
        format!("set=1\npublic_key={peer}\nprotocol_version=2\n\n"),
        format!(
            "set=1\npublic_key={}\nupdate_only=true\nallowed_ip=10.0.0.0/8\n\n",
            Key([0x43; 32]).to_hex()
        ),
        format!(
            "set=1\npublic_key={peer}\nreplace_allowed_ips=true\nallowed_ip=10.202.0.0/24\nendpoint=[fd00::1]:51820\n\n"
        ),
        format!("set=1\npublic_key={peer}\npersistent_keepalive_interval=65536\n\n"),
        format!("set=1\npublic_key={peer}\nremove=true\n\n"),
        "set=1\nreplace_peers=true\n\n".to_owned(),
        "get=1\nx\n".to_owned(),
    ];
    for request in &requests {
        let ours = pair.raw(&pair.ours, request);
        let theirs = pair.raw(&pair.theirs, request);
        assert_eq!(ours, theirs, "reply to {request:?}");
        assert!(ours.starts_with("errno="), "{request:?} -> {ours:?}");
    }
    // Both answer a get with the device keys first and errno=0 last.
    let ours = pair.raw(&pair.ours, "get=1\n\n");
    assert!(
        ours.starts_with("listen_port=") && ours.ends_with("errno=0\n\n"),
        "{ours:?}"
    );

    // Deliberate difference: we implement `allowed_ip=-prefix` (newer wireguard-go and wg do);
    // Debian's wireguard-go is too old and answers -EINVAL.
    let add =
        format!("set=1\npublic_key={peer}\nallowed_ip=10.202.0.0/24\nallowed_ip=10.203.0.0/24\n\n");
    assert_eq!(pair.raw(&pair.ours, &add), "errno=0\n\n");
    let remove = format!("set=1\npublic_key={peer}\nallowed_ip=-10.202.0.0/24\n\n");
    assert_eq!(pair.raw(&pair.ours, &remove), "errno=0\n\n");
    assert_eq!(pair.raw(&pair.theirs, &remove), "errno=-22\n\n");
    let get = pair.raw(&pair.ours, "get=1\n\n");
    assert!(
        get.contains("allowed_ip=10.203.0.0/24\n") && !get.contains("10.202.0.0"),
        "{get}"
    );

    // Several requests on one connection (the original served only one).
    let mut stream = UnixStream::connect(socket_path(&pair.ours)).expect("connect");
    stream
        .write_all(b"get=1\n\nset=1\nfwmark=0\n\nget=1\n\n")
        .expect("write");
    stream
        .shutdown(std::net::Shutdown::Write)
        .expect("shutdown");
    let mut all = String::new();
    stream.read_to_string(&mut all).expect("read");
    assert_eq!(all.matches("errno=0\n\n").count(), 3, "{all}");
}
