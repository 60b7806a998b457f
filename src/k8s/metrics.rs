//! Prometheus metrics in the text exposition format, and the small HTTP server for `/metrics`, `/healthz`
//! and `/readyz`.
//!
//! Per-peer metrics use the names and labels of the common WireGuard exporter
//! (`wireguard_sent_bytes_total{interface, public_key, allowed_ips}`, ...), so existing dashboards work.
//! Tunnel counters are read from the runtime at scrape time; reconcile counts and durations are kept here.
//! Labels are bounded: interface names, public keys, and static reason names only.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::fmt::Write as _;
use std::future::Future;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use super::tunnel_runtime::{Phase, TunnelState};

/// Upper bounds of the reconcile duration histogram, in seconds.
const BUCKETS: [f64; 10] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

/// The controller's own metrics and readiness.
#[derive(Default)]
pub struct Metrics {
    reconciles: Mutex<Reconciles>,
    ready: AtomicBool,
}

#[derive(Default)]
struct Reconciles {
    by_result: BTreeMap<&'static str, u64>,
    bucket_counts: [u64; BUCKETS.len()],
    count: u64,
    sum_seconds: f64,
}

/// One tunnel as the metrics see it: its interface name, state, and each peer's allowed IPs.
pub struct TunnelMetrics<'a> {
    /// The interface name.
    pub interface: &'a str,
    /// The runtime's state.
    pub state: &'a TunnelState,
    /// Allowed IPs by peer public key, joined by commas.
    pub allowed_ips: &'a BTreeMap<String, String>,
}

impl Metrics {
    /// Counts one reconcile: `result` is `"ok"` or an error kind.
    pub fn record_reconcile(&self, result: &'static str, duration: Duration) {
        let mut reconciles = self
            .reconciles
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *reconciles.by_result.entry(result).or_default() += 1;
        let seconds = duration.as_secs_f64();
        for (count, bound) in reconciles.bucket_counts.iter_mut().zip(BUCKETS) {
            if seconds <= bound {
                *count += 1;
            }
        }
        reconciles.count += 1;
        reconciles.sum_seconds += seconds;
    }

    /// Marks the controller ready (its first list of tunnels is in) or not.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    /// True once the controller is ready.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// The text exposition of the controller's metrics and of `tunnels`.
    pub fn render(&self, tunnels: &[TunnelMetrics<'_>]) -> String {
        let mut out = String::new();
        family(
            &mut out,
            "wireguard_sent_bytes_total",
            "counter",
            "Bytes sent to the peer.",
        );
        for t in tunnels {
            for p in &t.state.peers {
                sample(
                    &mut out,
                    "wireguard_sent_bytes_total",
                    &peer_labels(t, &p.public_key),
                    p.tx_bytes as f64,
                );
            }
        }
        family(
            &mut out,
            "wireguard_received_bytes_total",
            "counter",
            "Bytes received from the peer.",
        );
        for t in tunnels {
            for p in &t.state.peers {
                sample(
                    &mut out,
                    "wireguard_received_bytes_total",
                    &peer_labels(t, &p.public_key),
                    p.rx_bytes as f64,
                );
            }
        }
        family(
            &mut out,
            "wireguard_latest_handshake_seconds",
            "gauge",
            "UNIX time of the latest handshake, 0 if none.",
        );
        for t in tunnels {
            for p in &t.state.peers {
                let seconds = p
                    .last_handshake
                    .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
                    .map_or(0.0, |d| d.as_secs() as f64);
                sample(
                    &mut out,
                    "wireguard_latest_handshake_seconds",
                    &peer_labels(t, &p.public_key),
                    seconds,
                );
            }
        }
        family(
            &mut out,
            "wireguard_vpp_tunnel_up",
            "gauge",
            "1 when the tunnel forwards packets (memif connected).",
        );
        for t in tunnels {
            let up = if t.state.phase == Phase::Running {
                1.0
            } else {
                0.0
            };
            sample(
                &mut out,
                "wireguard_vpp_tunnel_up",
                &[("interface", t.interface)],
                up,
            );
        }
        let mut families: Vec<&'static str> = tunnels
            .iter()
            .flat_map(|t| t.state.counters.iter().map(|c| c.family))
            .collect();
        families.sort_unstable();
        families.dedup();
        for name in families {
            let metric = format!("wireguard_vpp_{}_total", sanitize(name));
            let help = "Data-plane counter (memif, ARP/NDP) reported by the tunnel.";
            family(&mut out, &metric, "counter", help);
            for t in tunnels {
                for counter in t.state.counters.iter().filter(|c| c.family == name) {
                    let value = counter.value as f64;
                    match counter.label {
                        Some(label) => sample(
                            &mut out,
                            &metric,
                            &[("interface", t.interface), label],
                            value,
                        ),
                        None => sample(&mut out, &metric, &[("interface", t.interface)], value),
                    }
                }
            }
        }

        let reconciles = self
            .reconciles
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        family(
            &mut out,
            "wireguard_vpp_reconcile_total",
            "counter",
            "Reconciles by result (ok or error kind).",
        );
        for (result, count) in &reconciles.by_result {
            sample(
                &mut out,
                "wireguard_vpp_reconcile_total",
                &[("result", result)],
                *count as f64,
            );
        }
        let histogram = "wireguard_vpp_reconcile_duration_seconds";
        family(
            &mut out,
            histogram,
            "histogram",
            "Time spent in one reconcile.",
        );
        for (bound, count) in BUCKETS.iter().zip(reconciles.bucket_counts) {
            sample(
                &mut out,
                &format!("{histogram}_bucket"),
                &[("le", &bound.to_string())],
                count as f64,
            );
        }
        sample(
            &mut out,
            &format!("{histogram}_bucket"),
            &[("le", "+Inf")],
            reconciles.count as f64,
        );
        sample(
            &mut out,
            &format!("{histogram}_sum"),
            &[],
            reconciles.sum_seconds,
        );
        sample(
            &mut out,
            &format!("{histogram}_count"),
            &[],
            reconciles.count as f64,
        );
        out
    }
}

fn peer_labels<'a>(
    tunnel: &'a TunnelMetrics<'a>,
    public_key: &'a str,
) -> [(&'static str, &'a str); 3] {
    let allowed = tunnel
        .allowed_ips
        .get(public_key)
        .map_or("", String::as_str);
    [
        ("interface", tunnel.interface),
        ("public_key", public_key),
        ("allowed_ips", allowed),
    ]
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: f64) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (key, value)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "{key}=\"{}\"", escape(value));
        }
        out.push('}');
    }
    let _ = writeln!(out, " {value}");
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

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

/// What the HTTP server answers: `/metrics` from `metrics_text`, `/healthz` always, `/readyz` when
/// `ready` says so.
pub trait Endpoints: Send + Sync + 'static {
    /// The metrics text.
    fn metrics_text(&self) -> impl Future<Output = String> + Send;
    /// Readiness.
    fn ready(&self) -> bool;
}

/// Serves `/metrics`, `/healthz` and `/readyz` on `listener` until `shutdown` completes.
pub async fn serve<E: Endpoints>(
    listener: TcpListener,
    endpoints: std::sync::Arc<E>,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            () = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(err) => {
                    tracing::warn!(error = %err, "metrics server: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let endpoints = endpoints.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                let endpoints = endpoints.clone();
                async move { Ok::<_, Infallible>(answer(&*endpoints, request.uri().path()).await) }
            });
            if let Err(err) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(error = %err, "metrics server: connection ended with an error");
            }
        });
    }
}

async fn answer<E: Endpoints>(endpoints: &E, path: &str) -> Response<Full<Bytes>> {
    let (status, content_type, body) = match path {
        "/metrics" => (
            StatusCode::OK,
            "text/plain; version=0.0.4",
            endpoints.metrics_text().await,
        ),
        "/healthz" | "/livez" => (StatusCode::OK, "text/plain", "ok\n".to_string()),
        "/readyz" if endpoints.ready() => (StatusCode::OK, "text/plain", "ok\n".to_string()),
        "/readyz" => (
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            "not ready: tunnels not listed yet\n".to_string(),
        ),
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
        let allowed = [("K=".to_string(), "0.0.0.0/0,::/0".to_string())].into();
        let metrics = Metrics::default();
        metrics.record_reconcile("ok", Duration::from_millis(20));
        let text = metrics.render(&[TunnelMetrics {
            interface: "home",
            state: &state,
            allowed_ips: &allowed,
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
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
