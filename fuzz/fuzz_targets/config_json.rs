//! The original's JSON config files (`config`): an interface file and a gateway file, read with Go's
//! rules and validated. Nothing panics; a file written back (`to_json`, as `render` does) reads back
//! to the same text; the written-back files validate exactly as the originals did; and a valid
//! configuration maps onto settings that the VPP setup accepts.
//!
//! Input: the interface file's bytes, a NUL, the gateway file's bytes (JSON text holds no NUL).
#![no_main]

use std::path::PathBuf;

use libfuzzer_sys::fuzz_target;
use rand::SeedableRng;
use rand::rngs::StdRng;
use wireguard_vpp::config::{Env, Files, GatewayFile, InterfaceFile, validate};
use wireguard_vpp::l2::Adapter;
use wireguard_vpp::tunnel::settings;

/// `to_json` is canonical: what it writes reads back and is written again unchanged.
fn written_back<T: serde::de::DeserializeOwned>(text: &str, again: impl Fn(&T) -> String) -> T {
    let back: T = serde_json::from_str(text).expect("a written file reads back");
    assert_eq!(again(&back), text, "a written file reads back differently");
    back
}

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(2, |&b| b == 0);
    let interface = serde_json::from_slice::<InterfaceFile>(parts.next().unwrap_or_default());
    let gateway = parts.next().map(serde_json::from_slice::<GatewayFile>);
    let interface_back = interface
        .as_ref()
        .ok()
        .map(|i| written_back(&i.to_json(), InterfaceFile::to_json));
    let gateway_back = match &gateway {
        Some(Ok(g)) => Some(written_back(&g.to_json(), GatewayFile::to_json)),
        _ => None,
    };
    let (Ok(interface), Some(Ok(gateway)), Some(interface_back), Some(gateway_back)) =
        (interface, gateway, interface_back, gateway_back)
    else {
        return;
    };

    let env = Env::from_lookup(|_| None).expect("the default environment");
    let files = Files {
        interface,
        interface_path: PathBuf::from("if/fuzz.json"),
        gateway,
        gateway_path: PathBuf::from("gw/4242.json"),
    };
    let rewritten = Files {
        interface: interface_back,
        gateway: gateway_back,
        ..files.clone()
    };
    // The same seed for both, so that a `"random"` secret comes out the same.
    let first = validate("fuzz", &files, &env, &mut StdRng::seed_from_u64(7));
    let second = validate("fuzz", &rewritten, &env, &mut StdRng::seed_from_u64(7));
    let config = match (first, second) {
        (Ok(first), Ok(second)) => {
            assert_eq!(
                first.config, second.config,
                "the written-back files mean another tunnel"
            );
            first.config
        }
        (Err(first), Err(second)) => {
            assert_eq!(first.to_string(), second.to_string());
            return;
        }
        (first, second) => panic!("validation differs once written back: {first:?} / {second:?}"),
    };

    // What a tunnel builds from a valid configuration.
    if let Err(e) = settings::vpp_setup(&config, false).validate() {
        panic!("a validated configuration that VPP's setup refuses: {e}");
    }
    let _ = settings::memif_server(&config, std::time::Duration::from_secs(1));
    let _ = settings::tunnel_mtu(&config, Some(1500));
    let adapter = Adapter::new(settings::l2_config(&config));
    let mut frame = [0u8; 128];
    for addr in adapter.announcements().collect::<Vec<_>>() {
        let _ = adapter.write_announcement(addr, &mut frame);
    }
});
