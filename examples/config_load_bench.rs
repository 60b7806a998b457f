//! How long loading a tunnel's configuration takes on a node with many tunnels, with the route-conflict
//! check (which reads every other interface file) and, as the baseline in the same run, without it.
//!
//! Run: `cargo run --release --example config_load_bench [OTHER_INTERFACES]` (default 1000).

use std::path::Path;
use std::time::Instant;

use wireguard_vpp::config::{self, Env};

const LOADS: u32 = 50;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let others: u32 = match std::env::args().nth(1) {
        Some(n) => n.parse()?,
        None => 1000,
    };
    let dir = tempfile::tempdir()?;
    write_interfaces(dir.path(), others)?;
    let mut figures = Vec::new();
    for check in [false, true] {
        let gateway = format!(
            r#"{{"GatewayMacAddr": "42:42:42:42:42:42", "WgIfMacaddrPrefix": "98:D2:93",
                "VppIfMacaddrPrefix": "A4:77:33", "VppBridgeLoop_CheckRouteConflict": {check}}}"#
        );
        std::fs::write(dir.path().join("gw/4242.json"), gateway)?;
        config::load_with_warnings(dir.path(), "home", &Env::default())?;
        let start = Instant::now();
        for _ in 0..LOADS {
            config::load_with_warnings(dir.path(), "home", &Env::default())?;
        }
        figures.push(start.elapsed() / LOADS);
    }
    let per_file = figures[1].saturating_sub(figures[0]) / others.max(1);
    println!("{others} other interfaces on the bridge, mean of {LOADS} loads:");
    println!(
        "  without the conflict check (baseline): {:>12?}",
        figures[0]
    );
    println!(
        "  with the conflict check:               {:>12?}",
        figures[1]
    );
    println!("  the check's cost per other interface:  {:>12?}", per_file);
    Ok(())
}

/// `home` plus `count` other interfaces on bridge 4242, none overlapping.
fn write_interfaces(dir: &Path, count: u32) -> std::io::Result<()> {
    std::fs::create_dir_all(dir.join("if"))?;
    std::fs::create_dir_all(dir.join("gw"))?;
    let home = r#"{"uid": 3, "IPv4ArpResponseRanges": ["172.22.77.33/32"],
                   "IPv6NdpNeighAdvRanges": ["fd28:cb8f:4c92::33/128"], "VppBridgeID": 4242}"#;
    std::fs::write(dir.join("if/home.json"), home)?;
    for i in 0..count {
        let other = format!(
            r#"{{"uid": {}, "IPv4ArpResponseRanges": ["10.{}.{}.1/32"],
                 "IPv6NdpNeighAdvRanges": ["fd00::{:x}/128"], "VppBridgeID": 4242}}"#,
            i + 10,
            (i / 256) % 256,
            i % 256,
            i
        );
        std::fs::write(dir.join(format!("if/peer{i}.json")), other)?;
    }
    Ok(())
}
