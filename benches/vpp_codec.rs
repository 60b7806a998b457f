//! Cost of the VPP API codec on the control path, next to a baseline measured in the same run: copying the
//! same number of bytes into a fresh buffer (what any encoder or decoder must at least do).
//!
//! Run: `cargo bench --bench vpp_codec`

use std::hint::black_box;
use std::time::{Duration, Instant};

use wireguard_vpp::vpp::codec::{Header, decode_message, encode_message};
use wireguard_vpp::vpp::frame::encode_frame;
use wireguard_vpp::vpp::messages::{
    IpRouteAddDel, MessageTableEntry, SockclntCreateReply, SwInterfaceDetails,
};
use wireguard_vpp::vpp::types::{FibPath, IpRoute, Prefix};

/// Runs `f` repeatedly for about `budget` and returns nanoseconds per call.
fn time_per_call(budget: Duration, mut f: impl FnMut()) -> f64 {
    for _ in 0..1000 {
        f();
    }
    let mut calls = 0u64;
    let start = Instant::now();
    while start.elapsed() < budget {
        for _ in 0..1000 {
            f();
        }
        calls += 1000;
    }
    start.elapsed().as_nanos() as f64 / calls as f64
}

/// Copies `bytes` into a new buffer: the baseline.
fn copy(bytes: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(bytes.len());
    v.extend_from_slice(bytes);
    v
}

fn row(name: &str, bytes: usize, ours: f64, baseline: f64) {
    println!(
        "{name:<46} {bytes:>7} B {ours:>10.1} ns {baseline:>10.1} ns {:>7.1}x",
        ours / baseline
    );
}

fn main() {
    let budget = Duration::from_millis(500);
    let header = Header {
        msg_id: 377,
        client_index: 0x8000_0001,
        context: 5,
    };
    println!(
        "{:<46} {:>9} {:>13} {:>13} {:>8}",
        "workload", "size", "ours/op", "copy/op", "ratio"
    );

    let ip = "172.22.77.33".parse().expect("address");
    let route = IpRouteAddDel {
        is_add: true,
        is_multipath: true,
        route: IpRoute {
            table_id: 0,
            stats_index: 0,
            prefix: Prefix::host(ip),
            paths: vec![FibPath::via_interface(1, ip)],
        },
    };
    let mut body = Vec::new();
    encode_message(header, &route, &mut body).expect("encode");
    let ours = time_per_call(budget, || {
        let mut out = Vec::with_capacity(256);
        let mut body = Vec::with_capacity(256);
        encode_message(header, black_box(&route), &mut body).expect("encode");
        encode_frame(&body, &mut out);
        black_box(out);
    });
    let base = time_per_call(budget, || drop(black_box(copy(black_box(&body)))));
    row(
        "encode + frame ip_route_add_del (host route)",
        body.len(),
        ours,
        base,
    );

    let mut details = SwInterfaceDetails::named(1, "loop42");
    details.tag = "bvi of bridge 4242".into();
    let mut body = Vec::new();
    encode_message(header, &details, &mut body).expect("encode");
    let ours = time_per_call(budget, || {
        black_box(decode_message::<SwInterfaceDetails>(black_box(&body)).expect("decode"));
    });
    let base = time_per_call(budget, || drop(black_box(copy(black_box(&body)))));
    row("decode sw_interface_details", body.len(), ours, base);

    // The handshake reply of the verified v26.06 build: 864 messages.
    let table = (0..864u16)
        .map(|i| MessageTableEntry {
            index: i + 1,
            name: format!("some_vpp_message_name_{i}_0123abcd"),
        })
        .collect();
    let reply = SockclntCreateReply {
        response: 0,
        index: 0x8000_0001,
        message_table: table,
    };
    let mut body = Vec::new();
    encode_message(header, &reply, &mut body).expect("encode");
    let ours = time_per_call(budget, || {
        black_box(decode_message::<SockclntCreateReply>(black_box(&body)).expect("decode"));
    });
    let base = time_per_call(budget, || drop(black_box(copy(black_box(&body)))));
    row(
        "decode sockclnt_create_reply (864 messages)",
        body.len(),
        ours,
        base,
    );
}
