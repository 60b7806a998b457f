//! Prometheus metrics in the OpenMetrics text format (encoded by `prometheus-client`), and the small
//! HTTP server for `/metrics`, `/healthz` and `/readyz`.
//!
//! Per-peer metrics use the names and labels of the common WireGuard exporter
//! (`wireguard_sent_bytes_total{interface, public_key, allowed_ips}`, ...), so existing dashboards work;
//! a peer with a `name` in the spec also gets that exporter's `friendly_name` label.
//! Tunnel counters are read from the runtime at scrape time; reconcile counts and durations are kept here.
//! Labels are bounded: interface names, public keys, peer names (checked by the CRD's schema and by
//! rendering: at most 63 characters, no quoting needed), and static reason names only. A tunnel of the node
//! that does not run (failed, waiting to restart, invalid) is still exported, `wireguard_vpp_tunnel_up 0`.
//!
//! The server is small and bounded, since anything that reaches the port can talk to it: HTTP/1 only,
//! a client has [`ServerLimits::header_read_timeout`] to send a request head (also the longest a
//! kept-alive connection waits for the next one), a connection on which nothing moves for
//! [`ServerLimits::idle_timeout`] while no request is being answered is closed, and at most
//! [`ServerLimits::max_connections`] are served at once: one more is closed at once, so no task or
//! buffer is spent on it.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;

use super::health::Report;
use super::tunnel_runtime::{Phase, TunnelState};

/// Upper bounds of the reconcile duration histogram, in seconds.
const BUCKETS: [f64; 10] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

/// The labels of one sample, in the order they are written.
type Labels = Vec<(&'static str, String)>;

/// The controller's own metrics, and whether its first list of tunnels is in.
#[derive(Debug)]
pub struct Metrics {
    /// Reconciles by result.
    reconciles: Family<[(&'static str, &'static str); 1], Counter>,
    /// Reconcile durations, in seconds.
    durations: Histogram,
    listed: AtomicBool,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics {
            reconciles: Family::default(),
            durations: Histogram::new(BUCKETS),
            listed: AtomicBool::new(false),
        }
    }
}

/// The labels of one peer besides its interface and public key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerLabels {
    /// Allowed IPs, joined by commas.
    pub allowed_ips: String,
    /// `spec.wireguard.peers[].name`, exported as `friendly_name` when set.
    pub friendly_name: Option<String>,
}

/// One tunnel as the metrics see it: its interface name, state, and each peer's labels.
pub struct TunnelMetrics<'a> {
    /// The interface name.
    pub interface: &'a str,
    /// The runtime's state; `None` when the tunnel does not run (it failed and waits to be started
    /// again, or cannot run): it is exported as down, with no peers or counters.
    pub state: Option<&'a TunnelState>,
    /// Labels by peer public key.
    pub peers: &'a BTreeMap<String, PeerLabels>,
    /// How often its task died and the controller started it again.
    pub restarts: u64,
}

impl TunnelMetrics<'_> {
    fn peers(&self) -> &[super::tunnel_runtime::PeerStats] {
        self.state.map_or(&[], |s| s.peers.as_slice())
    }

    fn counters(&self) -> &[super::tunnel_runtime::CounterSample] {
        self.state.map_or(&[], |s| s.counters.as_slice())
    }
}

impl Metrics {
    /// Counts one reconcile: `result` is `"ok"` or an error kind.
    pub fn record_reconcile(&self, result: &'static str, duration: Duration) {
        self.reconciles.get_or_create(&[("result", result)]).inc();
        self.durations.observe(duration.as_secs_f64());
    }

    /// Marks the controller's first list of tunnels as in (or not).
    pub fn set_listed(&self, listed: bool) {
        self.listed.store(listed, Ordering::Relaxed);
    }

    /// True once the controller's first list of tunnels is in.
    pub fn is_listed(&self) -> bool {
        self.listed.load(Ordering::Relaxed)
    }

    /// The OpenMetrics text exposition (served as [`CONTENT_TYPE`]) of the controller's metrics and
    /// of `tunnels`. Counters are registered without `_total`: the encoder adds it to their samples.
    /// The library appends a full stop to every help text.
    pub fn render(&self, tunnels: &[TunnelMetrics<'_>]) -> String {
        let mut registry = Registry::default();

        let sent = Family::<Labels, Counter>::default();
        let received = Family::<Labels, Counter>::default();
        let handshake = Family::<Labels, Gauge>::default();
        let up = Family::<Labels, Gauge>::default();
        let restarts = Family::<Labels, Counter>::default();
        for t in tunnels {
            let interface = || vec![("interface", t.interface.to_string())];
            for p in t.peers() {
                let labels = peer_labels(t, &p.public_key);
                sent.get_or_create(&labels).inc_by(p.tx_bytes);
                received.get_or_create(&labels).inc_by(p.rx_bytes);
                let seconds = p
                    .last_handshake
                    .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
                    .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
                handshake.get_or_create(&labels).set(seconds);
            }
            let running = t.state.is_some_and(|s| s.phase == Phase::Running);
            up.get_or_create(&interface()).set(i64::from(running));
            restarts.get_or_create(&interface()).inc_by(t.restarts);
        }
        registry.register("wireguard_sent_bytes", "Bytes sent to the peer", sent);
        registry.register(
            "wireguard_received_bytes",
            "Bytes received from the peer",
            received,
        );
        registry.register(
            "wireguard_latest_handshake_seconds",
            "UNIX time of the latest handshake, 0 if none",
            handshake,
        );
        registry.register(
            "wireguard_vpp_tunnel_up",
            "1 when the tunnel forwards packets (memif connected); 0 for a tunnel of this node that does not",
            up,
        );
        registry.register(
            "wireguard_vpp_tunnel_restarts",
            "Times the tunnel's task ended without being stopped and was started again",
            restarts,
        );

        let mut families: Vec<&'static str> = tunnels
            .iter()
            .flat_map(|t| t.counters().iter().map(|c| c.family))
            .collect();
        families.sort_unstable();
        families.dedup();
        for name in families {
            let family = Family::<Labels, Counter>::default();
            for t in tunnels {
                for counter in t.counters().iter().filter(|c| c.family == name) {
                    let mut labels = vec![("interface", t.interface.to_string())];
                    if let Some((key, value)) = counter.label {
                        labels.push((key, value.to_string()));
                    }
                    family.get_or_create(&labels).inc_by(counter.value);
                }
            }
            registry.register(
                format!("wireguard_vpp_{}", sanitize(name)),
                "Data-plane counter (memif, ARP/NDP) reported by the tunnel",
                family,
            );
        }

        registry.register(
            "wireguard_vpp_reconcile",
            "Reconciles by result (ok or error kind)",
            self.reconciles.clone(),
        );
        registry.register(
            "wireguard_vpp_reconcile_duration_seconds",
            "Time spent in one reconcile",
            self.durations.clone(),
        );

        let mut out = String::new();
        if let Err(err) = prometheus_client::encoding::text::encode(&mut out, &registry) {
            tracing::warn!(error = %err, "metrics: encoding failed");
        }
        out
    }
}

/// The content type of [`Metrics::render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

fn peer_labels(tunnel: &TunnelMetrics<'_>, public_key: &str) -> Labels {
    let labels = tunnel.peers.get(public_key);
    let allowed = labels.map_or("", |l| l.allowed_ips.as_str());
    let mut out = vec![
        ("interface", tunnel.interface.to_string()),
        ("public_key", public_key.to_string()),
        ("allowed_ips", allowed.to_string()),
    ];
    if let Some(name) = labels.and_then(|l| l.friendly_name.as_deref()) {
        out.push(("friendly_name", name.to_string()));
    }
    out
}

/// A metric name from a data-plane counter family: lower-case ASCII letters, digits and `_`.
fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// What the HTTP server answers: `/metrics` from [`Endpoints::metrics_text`], `/healthz` (and
/// `/livez`) from [`Endpoints::health`], `/readyz` from [`Endpoints::readiness`]; 200 when the report
/// has no problem, 503 otherwise, with the report as the body.
pub trait Endpoints: Send + Sync + 'static {
    /// The metrics text.
    fn metrics_text(&self) -> impl Future<Output = String> + Send;
    /// Liveness: is the controller itself working.
    fn health(&self) -> impl Future<Output = Report> + Send;
    /// Readiness: are this node's tunnels up or reported.
    fn readiness(&self) -> impl Future<Output = Report> + Send;
}

/// The bounds of the HTTP server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    /// How long a client has to send a whole request head, from the connection's start or the end of
    /// the previous answer (so also how long an idle kept-alive connection stays open).
    pub header_read_timeout: Duration,
    /// A connection on which no byte moves either way for this long, while no request is being
    /// answered, is closed (a client that stops reading its answer, or sending its body).
    pub idle_timeout: Duration,
    /// Connections served at once; one more is closed as soon as it is accepted.
    pub max_connections: usize,
}

impl Default for ServerLimits {
    /// 5 s for a request head, 15 s idle, 32 connections: a probe or a scrape needs one connection and
    /// well under a second.
    fn default() -> ServerLimits {
        ServerLimits {
            header_read_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(15),
            max_connections: 32,
        }
    }
}

/// Serves `/metrics`, `/healthz` and `/readyz` on `listener` within `limits` until `shutdown` completes.
pub async fn serve<E: Endpoints>(
    listener: TcpListener,
    endpoints: Arc<E>,
    limits: ServerLimits,
    shutdown: impl Future<Output = ()>,
) {
    let open = Arc::new(AtomicUsize::new(0));
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    tracing::warn!(error = %err, "metrics server: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        // INVARIANT: `open` counts the connection tasks alive; each one holds a `Slot` that takes one
        // back when the task ends, however it ends.
        if open.fetch_add(1, Ordering::AcqRel) >= limits.max_connections {
            open.fetch_sub(1, Ordering::AcqRel);
            tracing::debug!(%peer, limit = limits.max_connections, "metrics server: too many connections; closing one");
            drop(stream);
            continue;
        }
        let slot = Slot(open.clone());
        let endpoints = endpoints.clone();
        tokio::spawn(async move {
            let _slot = slot;
            serve_connection(stream, endpoints, limits).await;
        });
    }
}

/// Gives a connection's place back when its task ends.
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

async fn serve_connection<E: Endpoints>(
    stream: tokio::net::TcpStream,
    endpoints: Arc<E>,
    limits: ServerLimits,
) {
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Watched {
        inner: stream,
        activity: activity.clone(),
    });
    let in_service = activity.clone();
    let service = service_fn(move |request: Request<hyper::body::Incoming>| {
        let endpoints = endpoints.clone();
        let activity = in_service.clone();
        async move {
            // Time spent answering is not the client's idleness.
            let _busy = activity.busy();
            Ok::<_, Infallible>(answer(&*endpoints, request.uri().path()).await)
        }
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(16 * 1024)
        .serve_connection(io, service);
    tokio::pin!(connection);
    loop {
        // While a request is answered the client is not idle: look again a whole timeout later.
        let wait = if activity.is_busy() {
            limits.idle_timeout
        } else {
            limits.idle_timeout.saturating_sub(activity.idle_for())
        };
        tokio::select! {
            result = &mut connection => {
                if let Err(err) = result {
                    tracing::debug!(error = %err, "metrics server: connection ended with an error");
                }
                return;
            }
            () = tokio::time::sleep(wait) => {
                if activity.idle_for() >= limits.idle_timeout && !activity.is_busy() {
                    tracing::debug!("metrics server: closing an idle connection");
                    return;
                }
            }
        }
    }
}

/// When a connection last moved a byte, and whether a request on it is being answered.
struct Activity {
    start: tokio::time::Instant,
    /// Milliseconds from `start` to the last read or write that moved a byte.
    last: AtomicU64,
    busy: AtomicUsize,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            start: tokio::time::Instant::now(),
            last: AtomicU64::new(0),
            busy: AtomicUsize::new(0),
        }
    }

    fn touch(&self) {
        let now = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(now, Ordering::Relaxed);
    }

    fn idle_for(&self) -> Duration {
        let last = Duration::from_millis(self.last.load(Ordering::Relaxed));
        self.start.elapsed().saturating_sub(last)
    }

    fn busy(self: &Arc<Self>) -> Busy {
        self.busy.fetch_add(1, Ordering::AcqRel);
        Busy(self.clone())
    }

    fn is_busy(&self) -> bool {
        self.busy.load(Ordering::Acquire) > 0
    }
}

/// A request being answered; the connection counts as active again when it is done.
struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.touch();
        self.0.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A stream that notes in [`Activity`] every read and write that moves a byte.
struct Watched<T> {
    inner: T,
    activity: Arc<Activity>,
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        result
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        result
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

async fn answer<E: Endpoints>(endpoints: &E, path: &str) -> Response<Full<Bytes>> {
    let report = |report: Report| {
        let status = if report.ok() {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        (status, "text/plain; charset=utf-8", report.body())
    };
    let (status, content_type, body) = match path {
        "/metrics" => (StatusCode::OK, CONTENT_TYPE, endpoints.metrics_text().await),
        "/healthz" | "/livez" => report(endpoints.health().await),
        "/readyz" => report(endpoints.readiness().await),
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found\n".to_string(),
        ),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if let Ok(value) = hyper::header::HeaderValue::from_str(content_type) {
        response
            .headers_mut()
            .insert(hyper::header::CONTENT_TYPE, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::k8s::tunnel_runtime::{CounterSample, PeerStats};

    /// A running tunnel's state with these peers (keys only; bytes as given) and no counters.
    fn running_with(peers: &[(&str, u64, u64)]) -> TunnelState {
        TunnelState {
            phase: Phase::Running,
            vpp_configured: true,
            sw_if_index: None,
            memif_socket: "s".into(),
            listen_port: None,
            error: None,
            peers: peers
                .iter()
                .map(|&(key, rx_bytes, tx_bytes)| PeerStats {
                    public_key: key.into(),
                    endpoint: None,
                    last_handshake: None,
                    rx_bytes,
                    tx_bytes,
                })
                .collect(),
            counters: Vec::new(),
        }
    }

    #[test]
    fn exposition_has_exporter_names_and_labels() {
        let state = TunnelState {
            phase: Phase::Running,
            vpp_configured: true,
            sw_if_index: Some(5),
            memif_socket: "s".into(),
            listen_port: Some(51820),
            error: None,
            peers: vec![PeerStats {
                public_key: "K=".into(),
                endpoint: None,
                last_handshake: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)),
                rx_bytes: 7,
                tx_bytes: 9,
            }],
            counters: vec![CounterSample {
                family: "l2_events",
                label: Some(("event", "arp_reply")),
                value: 3,
            }],
        };
        let peers = [(
            "K=".to_string(),
            PeerLabels {
                allowed_ips: "0.0.0.0/0,::/0".into(),
                friendly_name: None,
            },
        )]
        .into();
        let metrics = Metrics::default();
        metrics.record_reconcile("ok", Duration::from_millis(20));
        let text = metrics.render(&[TunnelMetrics {
            interface: "home",
            state: Some(&state),
            peers: &peers,
            restarts: 0,
        }]);
        let labels = r#"{interface="home",public_key="K=",allowed_ips="0.0.0.0/0,::/0"}"#;
        assert!(
            text.contains(&format!("wireguard_sent_bytes_total{labels} 9\n")),
            "{text}"
        );
        assert!(
            text.contains(&format!("wireguard_received_bytes_total{labels} 7\n")),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "wireguard_latest_handshake_seconds{labels} 1700000000\n"
            )),
            "{text}"
        );
        assert!(
            text.contains(
                "wireguard_vpp_l2_events_total{interface=\"home\",event=\"arp_reply\"} 3\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("wireguard_vpp_reconcile_total{result=\"ok\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("wireguard_vpp_reconcile_duration_seconds_bucket{le=\"0.025\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("wireguard_vpp_reconcile_duration_seconds_bucket{le=\"0.01\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("wireguard_vpp_reconcile_duration_seconds_bucket{le=\"+Inf\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("wireguard_vpp_reconcile_duration_seconds_count 1\n"),
            "{text}"
        );
        // The library's help texts end with one full stop, as ours did.
        assert!(
            text.contains("# HELP wireguard_sent_bytes Bytes sent to the peer.\n"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE wireguard_vpp_tunnel_up gauge\n"),
            "{text}"
        );
        assert!(
            text.contains("wireguard_vpp_tunnel_up{interface=\"home\"} 1\n"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn a_named_peer_gets_the_friendly_name_label() {
        let state = running_with(&[("A=", 1, 2), ("B=", 1, 2)]);
        let labels = |name: Option<&str>| PeerLabels {
            allowed_ips: "10.0.0.0/8".into(),
            friendly_name: name.map(String::from),
        };
        let peers = [
            ("A=".to_string(), labels(Some("office-gw"))),
            ("B=".to_string(), labels(None)),
        ]
        .into();
        let text = Metrics::default().render(&[TunnelMetrics {
            interface: "home",
            state: Some(&state),
            peers: &peers,
            restarts: 0,
        }]);
        assert!(
            text.contains(
                "wireguard_sent_bytes_total{interface=\"home\",public_key=\"A=\",allowed_ips=\"10.0.0.0/8\",friendly_name=\"office-gw\"} 2\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "wireguard_sent_bytes_total{interface=\"home\",public_key=\"B=\",allowed_ips=\"10.0.0.0/8\"} 2\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn label_values_are_escaped() {
        let peers = [(
            "K=".to_string(),
            PeerLabels {
                allowed_ips: "a\"b\\c\nd".into(),
                friendly_name: None,
            },
        )]
        .into();
        let state = running_with(&[("K=", 0, 0)]);
        let text = Metrics::default().render(&[TunnelMetrics {
            interface: "home",
            state: Some(&state),
            peers: &peers,
            restarts: 0,
        }]);
        assert!(text.contains(r#"allowed_ips="a\"b\\c\nd"}"#), "{text}");
    }

    #[test]
    fn a_tunnel_that_does_not_run_is_exported_down() {
        let metrics = Metrics::default();
        let text = metrics.render(&[TunnelMetrics {
            interface: "home",
            state: None,
            peers: &BTreeMap::new(),
            restarts: 3,
        }]);
        assert!(
            text.contains("wireguard_vpp_tunnel_up{interface=\"home\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("wireguard_vpp_tunnel_restarts_total{interface=\"home\"} 3\n"),
            "{text}"
        );
        assert!(!text.contains("wireguard_sent_bytes_total{"), "{text}");
    }

    // ---------------------------------------------------------------------------------------------
    // The server, on a real socket with raw HTTP from real TCP clients.

    use std::net::SocketAddr;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;
    use tokio::time::Instant;

    struct Fixed;

    impl Endpoints for Fixed {
        async fn metrics_text(&self) -> String {
            "up 1\n".into()
        }
        async fn health(&self) -> Report {
            Report::default()
        }
        async fn readiness(&self) -> Report {
            Report {
                problems: vec!["tunnel dn42/home: not Running yet".into()],
                notes: Vec::new(),
            }
        }
    }

    /// A server on 127.0.0.1 with `limits`; stopped when the sender drops.
    async fn server(limits: ServerLimits) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(serve(listener, Arc::new(Fixed), limits, async move {
            let _ = stopped.await;
        }));
        (addr, stop)
    }

    /// Reads until the server closes the connection (or `limit` passes); what it sent.
    async fn read_to_close(stream: &mut TcpStream, limit: Duration) -> Option<String> {
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        let deadline = Instant::now() + limit;
        loop {
            match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
                Ok(Ok(0) | Err(_)) => return Some(String::from_utf8_lossy(&out).into_owned()),
                Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
                Err(_) => return None,
            }
        }
    }

    async fn get(addr: SocketAddr, path: &str) -> String {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.expect("send");
        read_to_close(&mut stream, Duration::from_secs(5))
            .await
            .expect("an answer")
    }

    #[tokio::test]
    async fn probes_answer_with_their_report() {
        let (addr, _stop) = server(ServerLimits::default()).await;
        let ready = get(addr, "/readyz").await;
        assert!(ready.starts_with("HTTP/1.1 503"), "{ready}");
        assert!(
            ready.ends_with("failed\n- tunnel dn42/home: not Running yet\n"),
            "{ready}"
        );
        let health = get(addr, "/healthz").await;
        assert!(
            health.starts_with("HTTP/1.1 200") && health.ends_with("\r\n\r\nok\n"),
            "{health}"
        );
        let metrics = get(addr, "/metrics").await;
        assert!(metrics.ends_with("up 1\n"), "{metrics}");
        assert!(
            metrics.contains(&format!("content-type: {CONTENT_TYPE}\r\n")),
            "{metrics}"
        );
        assert!(get(addr, "/nope").await.starts_with("HTTP/1.1 404"));
    }

    /// A client that sends its request head a line at a time, never finishing, is cut off once the
    /// header timeout passes, and the server answers others meanwhile and after.
    #[tokio::test]
    async fn a_slowloris_client_is_cut_off_after_the_header_timeout() {
        let limits = ServerLimits {
            header_read_timeout: Duration::from_millis(600),
            idle_timeout: Duration::from_secs(30),
            max_connections: 4,
        };
        let (addr, _stop) = server(limits).await;
        let mut slow = TcpStream::connect(addr).await.expect("connect");
        let started = Instant::now();
        slow.write_all(b"GET /metrics HTTP/1.1\r\n")
            .await
            .expect("send");
        let mut cut_off = None;
        for i in 0..40 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if slow
                .write_all(format!("X-Slow-{i}: a\r\n").as_bytes())
                .await
                .is_err()
            {
                cut_off = Some(started.elapsed());
                break;
            }
            let mut byte = [0u8; 1];
            if let Ok(Ok(0) | Err(_)) =
                tokio::time::timeout(Duration::from_millis(1), slow.read(&mut byte)).await
            {
                cut_off = Some(started.elapsed());
                break;
            }
            if i == 2 {
                assert!(get(addr, "/healthz").await.starts_with("HTTP/1.1 200"));
            }
        }
        let cut_off = cut_off.expect("the slow client was never cut off (4 s)");
        assert!(
            cut_off >= Duration::from_millis(500) && cut_off < Duration::from_millis(2500),
            "cut off after {cut_off:?}"
        );
        assert!(get(addr, "/healthz").await.starts_with("HTTP/1.1 200"));
    }

    /// Answers `/metrics` with 32 MiB, more than the sockets buffer.
    struct Big;

    impl Endpoints for Big {
        async fn metrics_text(&self) -> String {
            "x".repeat(32 << 20)
        }
        async fn health(&self) -> Report {
            Report::default()
        }
        async fn readiness(&self) -> Report {
            Report::default()
        }
    }

    /// A client that stops reading its answer is cut off once nothing has moved for the idle timeout:
    /// it gets what the sockets buffered, then the end, not the whole answer.
    #[tokio::test]
    async fn a_client_that_stops_reading_is_cut_off_after_the_idle_timeout() {
        let limits = ServerLimits {
            header_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_millis(500),
            max_connections: 4,
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(serve(listener, Arc::new(Big), limits, async move {
            let _ = stopped.await;
        }));
        let mut stalled = TcpStream::connect(addr).await.expect("connect");
        stalled
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("send");
        tokio::time::sleep(Duration::from_secs(2)).await;
        let mut received = 0usize;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            match tokio::time::timeout(Duration::from_secs(5), stalled.read(&mut buf)).await {
                Ok(Ok(0) | Err(_)) => break,
                Ok(Ok(n)) => received += n,
                Err(_) => panic!("the stalled connection was not closed ({received} bytes read)"),
            }
        }
        assert!(received > 0 && received < 32 << 20, "read {received} bytes");
    }

    /// With every place taken (by clients that send nothing), one more connection is closed at once;
    /// the ones that hold a place are served; once they go, new ones are served again.
    #[tokio::test]
    async fn the_connection_limit_holds() {
        let limits = ServerLimits {
            header_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(30),
            max_connections: 3,
        };
        let (addr, _stop) = server(limits).await;
        let mut held = Vec::new();
        for _ in 0..3 {
            held.push(TcpStream::connect(addr).await.expect("connect"));
        }
        // Give the server time to accept them all.
        tokio::time::sleep(Duration::from_millis(200)).await;
        for _ in 0..5 {
            let mut extra = TcpStream::connect(addr).await.expect("connect");
            let _ = extra
                .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                .await;
            let answer = read_to_close(&mut extra, Duration::from_secs(1))
                .await
                .expect("an extra connection is closed at once");
            assert!(
                answer.is_empty(),
                "an extra connection was served: {answer}"
            );
        }
        // The held ones still get answers.
        let first = &mut held[0];
        first
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .expect("send");
        let answer = read_to_close(first, Duration::from_secs(5))
            .await
            .expect("answer");
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        drop(held);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let mut stream = TcpStream::connect(addr).await.expect("connect");
            let _ = stream
                .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .await;
            let answer = read_to_close(&mut stream, Duration::from_secs(2)).await;
            if answer
                .as_deref()
                .is_some_and(|a| a.starts_with("HTTP/1.1 200"))
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "places never came back: {answer:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
