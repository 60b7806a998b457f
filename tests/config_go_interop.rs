//! Differential test against the real thing: the original decoded its config files with Go's
//! `encoding/json`, whose rules existing files rely on (case-insensitive keys with Go's folding, last
//! duplicate wins, duplicate objects merged, `null` ignored, strict integers). `tests/go/decode_config.go`
//! decodes the same documents with Go into structs with the original's keys; this test decodes them
//! with our file models and requires the same result, or an error on both sides.
//!
//! Peer: the `go` toolchain (Debian `golang-go`), which builds the decoder.

mod common;

use std::path::Path;
use std::process::Command;

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use serde_json::Value;
use wireguard_vpp::config::{GatewayFile, InterfaceFile};

/// Hand-written documents for the corners of Go's rules.
const IF_DOCS: &[&str] = &[
    r#"{"uid": 3, "secret": "s3cr3t", "IPv4ArpResponseRanges": ["172.22.77.33/32"], "VppBridgeID": 4242}"#,
    r#"{"UID": 3, "Uid": 4, "uID": 5}"#,
    r#"{"uid": 3, "uid": null}"#,
    r#"{"IPv4ArpResponseRanges": ["a"], "ipv4arpresponseranges": null}"#,
    r#"{"IPv4ArpResponseRanges": ["a", null, ""]}"#,
    r#"{"IPv4ArpResponseRanges": ["a"], "IPV4ARPRESPONSERANGES": ["b", "c"]}"#,
    "{\"\u{017F}ecret\": \"long s\", \"VPPBRIDGEID\": 1}",
    "{\"\u{212A}ey\": 1, \"gratuitousarpon\u{017F}tartup\": true}",
    "{\"uid\u{0}\": 1}",
    r#"{"\u0075ID": 7, "\u0073ecret": "escaped keys"}"#,
    r#"{"uid": 3.0}"#,
    r#"{"uid": 1e2}"#,
    r#"{"uid": -1}"#,
    r#"{"uid": -0}"#,
    r#"{"uid": 4294967295}"#,
    r#"{"uid": 4294967296}"#,
    r#"{"uid": 18446744073709551616}"#,
    r#"{"uid": "3"}"#,
    r#"{"uid": true}"#,
    r#"{"GratuitousARPOnStartUP": 1}"#,
    r#"{"secret": ["x"]}"#,
    r#"{"IPv6NdpLearningRanges": "fd00::/8"}"#,
    r#"{"IPv6NdpLearningRanges": [1]}"#,
    r#"{"Macaddr": "02:00:00:00:00:01", "macaddr": ""}"#,
    r#"{"secret": "\u00e9\ud83d\ude00\n\"", "unknown": {"deep": [1, {"x": null}]}}"#,
    "null",
    "[]",
    "\"x\"",
    "{}",
    "",
    "{",
    "{} {}",
    r#"{"uid": 1,}"#,
];

const GW_DOCS: &[&str] = &[
    r#"{"GatewayMacAddr": "42:42:42:42:42:42", "WgIfMacaddrPrefix": "98:D2:93", "VppIfMacaddrPrefix": "A4:77:33",
        "VppBridgeLoop_InstallMethod": "api", "VppBridgeLoop_SwIfIndex": 1, "VppBridgeLoop_SwIfName": "loop42",
        "VppBridgeLoop_InstallNeighbor": {"IPv4": true, "IPv6": true, "IPv6 link-local": true},
        "VppBridgeLoop_InstallNeighbor_Flag": {"static": true},
        "VppBridgeLoop_InstallRoutes": {"IPv4": true, "IPv6": false, "IPv6 link-local": true}}"#,
    r#"{"VppBridgeLoop_InstallRoutes": {"IPv4": true}, "vppbridgeloop_installroutes": {"ipv6": true}}"#,
    r#"{"VppBridgeLoop_InstallRoutes": {"IPv4": true}, "VppBridgeLoop_InstallRoutes": null}"#,
    r#"{"VppBridgeLoop_InstallRoutes": {"ipv6 LINK-LOCAL": true, "ipv6 link local": true}}"#,
    r#"{"VppBridgeLoop_InstallNeighbor_Flag": {"STATIC": true, "No-Fib-Entry": true}}"#,
    r#"{"VppBridgeLoop_InstallNeighbor_Flag": {"static": "yes"}}"#,
    r#"{"VppBridgeLoop_InstallRoutes": []}"#,
    r#"{"VppBridgeLoop_VppctlBin": "/opt/vppctl"}"#,
    r#"{"VppBridgeLoop_VppctlBinary": "/usr/bin/vppctl", "VppBridgeLoop_VppctlBin": "/opt/vppctl"}"#,
    r#"{"VppBridgeLoop_CheckRouteConfigPaths": ["/etc/wggo-vpp", null], "vppbridgeloop_checkrouteconflict": true}"#,
    r#"{"VppBridgeLoop_SwIfIndex": 4294967296}"#,
    "{\"VPPBRIDGELOOP_\u{017F}WIFNAME\": \"loop1\", \"gatewaymacaddr\": \"x\"}",
    "{\"VppBridgeLoop_Install\u{212A}\": 1}",
];

#[test]
fn decoding_matches_go_encoding_json() {
    if !common::require("go", "Go's encoding/json, the original's JSON decoder") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let decoder = build_decoder(work.path());

    let mut if_docs: Vec<String> = IF_DOCS.iter().map(|d| d.to_string()).collect();
    let mut gw_docs: Vec<String> = GW_DOCS.iter().map(|d| d.to_string()).collect();
    // What we write back (the Kubernetes renderer's output) must read the same in Go.
    if_docs.extend(
        IF_DOCS
            .iter()
            .filter_map(|d| serde_json::from_str::<InterfaceFile>(d).ok())
            .map(|f| f.to_json()),
    );
    gw_docs.extend(
        GW_DOCS
            .iter()
            .filter_map(|d| serde_json::from_str::<GatewayFile>(d).ok())
            .map(|f| f.to_json()),
    );
    if_docs.extend(generated(IF_FIELDS, 1000));
    gw_docs.extend(generated(GW_FIELDS, 1000));

    let mut mismatches = compare::<InterfaceFile>(&decoder, work.path(), "if", &if_docs);
    mismatches.extend(compare::<GatewayFile>(
        &decoder,
        work.path(),
        "gw",
        &gw_docs,
    ));
    assert!(
        mismatches.is_empty(),
        "{} documents decode differently:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}

/// Builds the Go decoder into `dir`, offline, with its build cache under Cargo's target folder.
fn build_decoder(dir: &Path) -> std::path::PathBuf {
    let binary = dir.join("decode_config");
    let source = common::project_root().join("tests/go/decode_config.go");
    let output = Command::new("go")
        .arg("build")
        .arg("-o")
        .arg(&binary)
        .arg(&source)
        .env(
            "GOCACHE",
            Path::new(env!("CARGO_TARGET_TMPDIR")).join("go-build-cache"),
        )
        .env("GOPROXY", "off")
        .env("GOTOOLCHAIN", "local")
        .env("GO111MODULE", "off")
        .output()
        .expect("run go build");
    assert!(
        output.status.success(),
        "go build failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    binary
}

/// Decodes `docs` with Go and with our model; returns a description of each difference.
fn compare<T: serde::de::DeserializeOwned + serde::Serialize>(
    decoder: &Path,
    dir: &Path,
    kind: &str,
    docs: &[String],
) -> Vec<String> {
    let paths: Vec<std::path::PathBuf> = docs
        .iter()
        .enumerate()
        .map(|(i, doc)| {
            let path = dir.join(format!("{kind}-{i}.json"));
            std::fs::write(&path, doc).unwrap();
            path
        })
        .collect();
    let output = Command::new(decoder)
        .arg(kind)
        .args(&paths)
        .output()
        .expect("run the Go decoder");
    assert!(
        output.status.success(),
        "decoder failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<Value> = output
        .stdout
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect();
    assert_eq!(lines.len(), docs.len(), "one line per document");

    let mut mismatches = Vec::new();
    for (doc, go) in docs.iter().zip(lines) {
        let ours = serde_json::from_str::<T>(doc).map(|file| serde_json::to_value(&file).unwrap());
        match (ours, go.get("ok")) {
            (Ok(ours), Some(theirs)) if &ours == theirs => {}
            (Err(_), None) => {}
            (ours, _) => mismatches.push(format!("{kind} {doc}\n  go:   {go}\n  ours: {ours:?}")),
        }
    }
    mismatches
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    U32,
    Bool,
    Str,
    List,
    Switches,
    Flags,
}

const IF_FIELDS: &[(&str, Kind)] = &[
    ("uid", Kind::U32),
    ("secret", Kind::Str),
    ("Macaddr", Kind::Str),
    ("IPv4ArpResponseRanges", Kind::List),
    ("IPv6NdpNeighAdvRanges", Kind::List),
    ("IPv4ArpLearningRanges", Kind::List),
    ("IPv6NdpLearningRanges", Kind::List),
    ("GratuitousARPOnStartUP", Kind::Bool),
    ("VppBridgeID", Kind::U32),
    ("Unknown", Kind::Str),
];

const GW_FIELDS: &[(&str, Kind)] = &[
    ("GatewayMacAddr", Kind::Str),
    ("WgIfMacaddrPrefix", Kind::Str),
    ("VppIfMacaddrPrefix", Kind::Str),
    ("VppBridgeLoop_InstallMethod", Kind::Str),
    ("VppBridgeLoop_VppctlBinary", Kind::Str),
    ("VppBridgeLoop_VppctlBin", Kind::Str),
    ("VppBridgeLoop_SwIfName", Kind::Str),
    ("VppBridgeLoop_SwIfIndex", Kind::U32),
    ("VppBridgeLoop_InstallNeighbor", Kind::Switches),
    ("VppBridgeLoop_InstallNeighbor_Flag", Kind::Flags),
    ("VppBridgeLoop_InstallRoutes", Kind::Switches),
    ("VppBridgeLoop_CheckRouteConflict", Kind::Bool),
    ("VppBridgeLoop_CheckRouteConfigPaths", Kind::List),
];

const SWITCH_FIELDS: &[(&str, Kind)] = &[
    ("IPv4", Kind::Bool),
    ("IPv6", Kind::Bool),
    ("IPv6 link-local", Kind::Bool),
];
const FLAG_FIELDS: &[(&str, Kind)] = &[("static", Kind::Bool), ("no-fib-entry", Kind::Bool)];

/// `count` documents of members drawn from `fields`, from a fixed seed.
fn generated(fields: &'static [(&'static str, Kind)], count: usize) -> Vec<String> {
    let mut runner = TestRunner::deterministic();
    let strategy = object(fields, 3);
    (0..count)
        .map(|_| {
            strategy
                .new_tree(&mut runner)
                .expect("generate a document")
                .current()
        })
        .collect()
}

/// An object whose keys are field names in random case, sometimes with Go's special folds (Kelvin
/// sign for k, long s for s), mostly with a value of the field's type, sometimes of another.
fn object(fields: &'static [(&'static str, Kind)], depth: u32) -> BoxedStrategy<String> {
    let member = (
        proptest::sample::select(fields),
        any::<u64>(),
        any::<u8>(),
        proptest::bool::weighted(0.85),
    )
        .prop_flat_map(move |((name, kind), case_bits, special, right_type)| {
            let key = mangle(name, case_bits, special);
            let value = if right_type {
                typed(kind, depth)
            } else {
                any_value()
            };
            (Just(key), value)
        });
    proptest::collection::vec(member, 0..8)
        .prop_map(|members| {
            let members: Vec<String> = members
                .iter()
                .map(|(k, v)| format!("{}: {v}", json_string(k)))
                .collect();
            format!("{{{}}}", members.join(", "))
        })
        .boxed()
}

fn mangle(name: &str, case_bits: u64, special: u8) -> String {
    name.chars()
        .enumerate()
        .map(|(i, c)| match c {
            'k' | 'K' if special.is_multiple_of(4) => '\u{212A}',
            's' | 'S' if special % 4 == 1 => '\u{017F}',
            c if case_bits >> (i % 64) & 1 == 1 => c.to_ascii_uppercase(),
            c => c.to_ascii_lowercase(),
        })
        .collect()
}

fn typed(kind: Kind, depth: u32) -> BoxedStrategy<String> {
    match kind {
        Kind::U32 => prop_oneof![
            4 => any::<u32>().prop_map(|n| n.to_string()),
            1 => prop_oneof![Just("null"), Just("0"), Just("-0"), Just("4294967296"), Just("-1"), Just("3.0"), Just("1e2")]
                .prop_map(str::to_owned),
        ]
        .boxed(),
        Kind::Bool => prop_oneof![Just("true"), Just("false"), Just("null")].prop_map(str::to_owned).boxed(),
        Kind::Str => prop_oneof![
            3 => "[0-9a-fA-F:./-]{0,20}".prop_map(|s| json_string(&s)),
            1 => any::<String>().prop_map(|s| json_string(&s)),
            1 => Just("null".to_owned()),
        ]
        .boxed(),
        Kind::List => prop_oneof![
            4 => proptest::collection::vec(typed(Kind::Str, depth), 0..4).prop_map(|v| format!("[{}]", v.join(", "))),
            1 => Just("null".to_owned()),
        ]
        .boxed(),
        Kind::Switches if depth > 0 => object(SWITCH_FIELDS, depth - 1),
        Kind::Flags if depth > 0 => object(FLAG_FIELDS, depth - 1),
        Kind::Switches | Kind::Flags => Just("{}".to_owned()).boxed(),
    }
}

fn any_value() -> BoxedStrategy<String> {
    prop_oneof![
        Just("null".to_owned()),
        any::<bool>().prop_map(|b| b.to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>()
            .prop_filter("finite", |x| x.is_finite())
            .prop_map(|x| x.to_string()),
        any::<String>().prop_map(|s| json_string(&s)),
        Just("[]".to_owned()),
        Just(r#"{"a": 1}"#.to_owned()),
    ]
    .boxed()
}

fn json_string(s: &str) -> String {
    serde_json::to_string(s).expect("a string serialises")
}
