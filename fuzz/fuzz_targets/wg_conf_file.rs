//! wg(8) config files (`wg::conf_file`, the `WGGO_RECONF_PATH` re-apply): parsing never panics; a
//! parsed file written out again in canonical form parses to the same file; and applying a file as
//! a diff is idempotent: once the planned commands are applied (to the state another file left),
//! planning the same file again changes nothing, and the configuration is the file's.
//!
//! Input: two config texts separated by a NUL: the one applied first (may be empty), then the one
//! checked. Without a NUL the whole input is the second.
#![no_main]

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;

use libfuzzer_sys::fuzz_target;
use wireguard_vpp::wg::conf_file::{ConfFile, parse, plan};
use wireguard_vpp::wg::{ConfigEdit, DeviceConfig, Key};

/// The file in wg(8) syntax, as `wg showconf` writes it.
fn render(file: &ConfFile) -> String {
    let mut text = String::from("[Interface]\n");
    if let Some(key) = file.private_key {
        let _ = writeln!(text, "PrivateKey = {}", key.to_base64());
    }
    if let Some(port) = file.listen_port {
        let _ = writeln!(text, "ListenPort = {port}");
    }
    if file.fwmark != 0 {
        let _ = writeln!(text, "FwMark = {:#x}", file.fwmark);
    }
    for peer in &file.peers {
        let _ = writeln!(
            text,
            "\n[Peer]\nPublicKey = {}",
            peer.public_key.to_base64()
        );
        if let Some(key) = peer.preshared_key {
            let _ = writeln!(text, "PresharedKey = {}", key.to_base64());
        }
        if let Some(endpoint) = &peer.endpoint {
            let _ = writeln!(text, "Endpoint = {endpoint}");
        }
        if peer.persistent_keepalive != 0 {
            let _ = writeln!(text, "PersistentKeepalive = {}", peer.persistent_keepalive);
        }
        if !peer.allowed_ips.is_empty() {
            let ips: Vec<String> = peer.allowed_ips.iter().map(ToString::to_string).collect();
            let _ = writeln!(text, "AllowedIPs = {}", ips.join(", "));
        }
    }
    text
}

/// The endpoints that need no DNS (what `apply_conf` would resolve them to).
fn resolved(file: &ConfFile) -> HashMap<Key, SocketAddr> {
    file.peers
        .iter()
        .filter_map(|p| Some((p.public_key, p.endpoint.as_deref()?.parse().ok()?)))
        .collect()
}

/// Plans `file` against `config` and applies the commands, as `WgDevice::apply_conf` does.
fn apply(config: &mut DeviceConfig, file: &ConfFile) -> usize {
    let commands = plan(config, file, &resolved(file));
    let mut edit = ConfigEdit::default();
    for command in &commands {
        edit.apply(config, command);
    }
    commands.len()
}

fn parse_text(bytes: &[u8]) -> Option<ConfFile> {
    let text = std::str::from_utf8(bytes).ok()?;
    let file = parse(Path::new("fuzz.conf"), text).ok()?;
    let written = render(&file);
    let back = parse(Path::new("written.conf"), &written)
        .unwrap_or_else(|e| panic!("the written file does not parse: {e}\n{written}"));
    assert_eq!(
        back, file,
        "the written file parses differently:\n{written}"
    );
    Some(file)
}

fuzz_target!(|data: &[u8]| {
    let (before, after) = match data.iter().position(|&b| b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (&[][..], data),
    };
    let mut config = DeviceConfig::default();
    if let Some(first) = parse_text(before) {
        apply(&mut config, &first);
    }
    let Some(file) = parse_text(after) else {
        return;
    };
    apply(&mut config, &file);
    let again = plan(&config, &file, &resolved(&file));
    assert!(again.is_empty(), "a second apply still changes {again:?}");

    if let Some(key) = file.private_key {
        assert_eq!(config.private_key, Some(key));
    }
    let own = config.private_key.map(|k| k.public_key());
    let wanted = file.peers.iter().filter(|p| Some(p.public_key) != own);
    assert_eq!(config.peer_count(), wanted.clone().count());
    for peer in wanted {
        let have = config
            .peer(&peer.public_key)
            .expect("every peer of the file");
        assert_eq!(have.preshared_key, peer.preshared_key);
        assert_eq!(have.persistent_keepalive, peer.persistent_keepalive);
    }
});
