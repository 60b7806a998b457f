//! The config loader through its public API, on real folders: the example files, both layouts, the
//! spec's config-error and conflict scenarios (7 and 8), and hostile file contents.
//!
//! No peer is needed: the loader reads plain files, which these tests write into temporary folders.

use std::path::{Path, PathBuf};

use proptest::prelude::*;
use wireguard_vpp::config::{self, ConfigError, ConfigWarning, Env, InstallMethod, Loaded};

const HOME_IF: &str = r#"{"uid": 3, "secret": "s3cr3t",
 "IPv4ArpResponseRanges": ["172.22.77.33/32"],
 "IPv6NdpNeighAdvRanges": ["fd28:cb8f:4c92::33/128", "fe80::42:1817:1/128"],
 "IPv4ArpLearningRanges": ["10.127.111.0/24"],
 "IPv6NdpLearningRanges": ["fd10:127:e00f::/64"],
 "VppBridgeID": 4242}"#;

const HOME_GW: &str = r#"{"GatewayMacAddr": "42:42:42:42:42:42", "WgIfMacaddrPrefix": "98:D2:93", "VppIfMacaddrPrefix": "A4:77:33",
 "VppBridgeLoop_InstallMethod": "api", "VppBridgeLoop_SwIfIndex": 1, "VppBridgeLoop_SwIfName": "loop42",
 "VppBridgeLoop_InstallNeighbor": {"IPv4": true, "IPv6": true, "IPv6 link-local": true},
 "VppBridgeLoop_InstallNeighbor_Flag": {"static": true},
 "VppBridgeLoop_InstallRoutes": {"IPv4": true, "IPv6": false, "IPv6 link-local": true}}"#;

/// A temporary config folder.
struct ConfigDir(tempfile::TempDir);

impl ConfigDir {
    fn new() -> ConfigDir {
        ConfigDir(tempfile::tempdir().expect("temporary folder"))
    }

    fn path(&self) -> &Path {
        self.0.path()
    }

    fn write(&self, relative: &str, text: &str) -> PathBuf {
        let path = self.path().join(relative);
        std::fs::create_dir_all(path.parent().expect("a file has a parent"))
            .expect("create folder");
        std::fs::write(&path, text).expect("write file");
        // Owner-only, as a file holding a memif secret should be (a readable one is warned about).
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .expect("chmod");
        path
    }

    /// The spec fixture in the current layout.
    fn home() -> ConfigDir {
        let dir = ConfigDir::new();
        dir.write("if/home.json", HOME_IF);
        dir.write("gw/4242.json", HOME_GW);
        dir
    }

    /// The spec fixture with the conflict check on, scanning this folder.
    fn home_checking_conflicts() -> ConfigDir {
        let dir = ConfigDir::new();
        dir.write("if/home.json", HOME_IF);
        let gw = HOME_GW.replacen(
            '{',
            &format!(
                r#"{{"VppBridgeLoop_CheckRouteConflict": true, "VppBridgeLoop_CheckRouteConfigPaths": [{}],"#,
                json_string(&dir.path().display().to_string())
            ),
            1,
        );
        dir.write("gw/4242.json", &gw);
        dir
    }

    fn load(&self, name: &str) -> Result<Loaded, ConfigError> {
        config::load_with_warnings(self.path(), name, &Env::default())
    }
}

fn peer_if(bridge: u32, v4: &str) -> String {
    format!(r#"{{"uid": 4, "IPv4ArpResponseRanges": ["{v4}"], "VppBridgeID": {bridge}}}"#)
}

#[test]
fn the_example_config_loads() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/etc");
    let Loaded {
        config: c,
        warnings,
    } = config::load_with_warnings(&dir, "example", &Env::default()).unwrap();
    assert_eq!(warnings, []);
    assert_eq!((c.name.as_str(), c.uid, c.bridge_id), ("example", 3, 4242));
    assert_eq!(c.interface_file, dir.join("if/example.json"));
    assert_eq!(c.gateway_file, dir.join("gw/4242.json"));
    assert_eq!(c.self_mac.to_string(), "98:d2:93:00:00:03");
    assert_eq!(c.vpp_memif_mac.to_string(), "a4:77:33:00:00:03");
    assert_eq!(c.gateway_mac.to_string(), "42:42:42:42:42:42");
    assert_eq!(c.install.method, InstallMethod::None);
    assert!(!c.install.routes.any() && !c.install.neighbours.any());
    let v6: Vec<String> = c
        .ranges
        .ipv6_response
        .iter()
        .map(|n| n.to_string())
        .collect();
    assert_eq!(v6, ["fd28:cb8f:4c92::33/128", "fe80::42:1817:1/128"]);
    assert_eq!(c.ranges.ipv4_response.len(), 1);
    assert_eq!(
        c.memif_socket,
        Path::new(config::DEFAULT_MEMIF_SOCKET_DIR).join("example.sock")
    );
    // "random": 20 characters drawn at each load, for VPP and for our memif side alike.
    let secret = c.secret.as_ref().expect("a secret").expose().to_owned();
    assert!(
        secret.len() == 20 && secret.bytes().all(|b| b.is_ascii_alphanumeric()),
        "{secret}"
    );
    // `load` is the same with the warnings logged (and another secret drawn).
    let again = config::load(&dir, "example", &Env::default()).unwrap();
    assert_ne!(again.secret, c.secret);
    assert_eq!(
        config::TunnelConfig {
            secret: c.secret.clone(),
            ..again
        },
        c
    );
}

#[test]
fn the_example_files_survive_a_write_back() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/etc");
    let copy = ConfigDir::new();
    let original = config::load(&dir, "example", &Env::default()).unwrap();
    // Read each file into its model (with the original's rules), write it back, and load the result.
    let interface: config::InterfaceFile = read_model(&dir.join("if/example.json"));
    copy.write("if/example.json", &interface.to_json());
    let gateway: config::GatewayFile = read_model(&dir.join("gw/4242.json"));
    copy.write("gw/4242.json", &gateway.to_json());
    let reloaded = config::load(copy.path(), "example", &Env::default()).unwrap();
    assert_eq!(reloaded.ranges, original.ranges);
    assert_eq!(
        (reloaded.uid, reloaded.self_mac, reloaded.install),
        (original.uid, original.self_mac, original.install)
    );
}

/// The file models implement `Deserialize` with the original's rules, so a renderer can read them too.
fn read_model<T: serde::de::DeserializeOwned>(path: &Path) -> T {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[test]
fn both_layouts_load_and_the_sub_directory_one_wins() {
    let flat = ConfigDir::new();
    flat.write("if.home.json", HOME_IF);
    flat.write("gw.4242.json", HOME_GW);
    let loaded = flat.load("home").unwrap();
    assert_eq!(loaded.warnings, []);
    assert_eq!(
        loaded.config.interface_file,
        flat.path().join("if.home.json")
    );
    assert_eq!(loaded.config.gateway_file, flat.path().join("gw.4242.json"));

    // A mixed folder: the interface in the current layout, the gateway in the flat one.
    let mixed = ConfigDir::new();
    mixed.write("if/home.json", HOME_IF);
    mixed.write("gw.4242.json", HOME_GW);
    assert_eq!(
        mixed.load("home").unwrap().config.gateway_file,
        mixed.path().join("gw.4242.json")
    );

    // Both: the sub-directory file is used, with a warning naming the other.
    let both = ConfigDir::home();
    both.write("if.home.json", &HOME_IF.replace("\"uid\": 3", "\"uid\": 9"));
    let loaded = both.load("home").unwrap();
    assert_eq!(loaded.config.uid, 3);
    assert_eq!(
        loaded.warnings,
        [ConfigWarning::BothLayouts {
            used: both.path().join("if/home.json"),
            ignored: both.path().join("if.home.json")
        }]
    );
}

#[test]
fn the_name_is_sanitised_before_the_files_are_looked_for() {
    let dir = ConfigDir::home();
    let c = dir.load("ho.me").unwrap().config;
    assert_eq!(c.name, "home");
    assert!(c.memif_socket.ends_with("home.sock"));
    assert!(matches!(
        dir.load("..."),
        Err(ConfigError::EmptyName { .. })
    ));
}

#[test]
fn a_secret_readable_by_everyone_is_warned_about() {
    use std::os::unix::fs::PermissionsExt;
    let dir = ConfigDir::home();
    let file = dir.path().join("if/home.json");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let warnings = dir.load("home").unwrap().warnings;
    assert_eq!(
        warnings.iter().map(ToString::to_string).collect::<Vec<_>>(),
        [format!(
            "{}: the file holds the memif secret but every user can read it (mode 644); chmod o-r",
            file.display()
        )]
    );
    // No secret, or one drawn at start: nothing to protect.
    for secret in ["", "random"] {
        dir.write("if/home.json", &HOME_IF.replace("s3cr3t", secret));
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(dir.load("home").unwrap().warnings, [], "secret {secret:?}");
    }
}

#[test]
fn keys_in_any_case_duplicates_and_unknown_keys() {
    let dir = ConfigDir::new();
    dir.write(
        "if/home.json",
        r#"{"UID": 1, "uid": 3, "ipv4arpresponseranges": ["172.22.77.33/32"], "VPPBRIDGEID": 4242, "Colour": 1}"#,
    );
    dir.write("gw/4242.json", &HOME_GW.to_lowercase());
    let Loaded { config, warnings } = dir.load("home").unwrap();
    assert_eq!(config.uid, 3, "the last duplicate wins");
    assert_eq!(config.ranges.ipv4_response.len(), 1);
    assert_eq!(config.install.bvi_name, "loop42");
    assert_eq!(
        warnings,
        [ConfigWarning::UnknownKey {
            file: dir.path().join("if/home.json"),
            key: "Colour".into()
        }]
    );
}

#[test]
fn the_readme_vppctl_key_is_an_alias_and_a_wrong_type_there_is_only_a_warning() {
    let dir = ConfigDir::new();
    dir.write("if/home.json", HOME_IF);
    let gw = dir.write(
        "gw/4242.json",
        &HOME_GW.replacen(
            '{',
            r#"{"VppBridgeLoop_VppctlBin": "/opt/vpp/bin/vppctl","#,
            1,
        ),
    );
    let Loaded { config, warnings } = dir.load("home").unwrap();
    assert_eq!(config.install.vppctl_binary, "/opt/vpp/bin/vppctl");
    assert!(
        matches!(warnings.as_slice(), [ConfigWarning::VppctlBinAlias { file, .. }] if *file == gw),
        "{warnings:?}"
    );

    // The original ignored this key whatever its value, so a value of another type is not fatal.
    dir.write(
        "gw/4242.json",
        &HOME_GW.replacen('{', r#"{"VppBridgeLoop_VppctlBin": 7,"#, 1),
    );
    let Loaded { config, warnings } = dir.load("home").unwrap();
    assert_eq!(config.install.vppctl_binary, config::DEFAULT_VPPCTL_BINARY);
    assert_eq!(
        warnings.iter().map(ToString::to_string).collect::<Vec<_>>(),
        [format!(
            "{}: VppBridgeLoop_VppctlBin: ignored: expected a string, found a number 7",
            gw.display()
        )]
    );
}

/// Scenario 7: each of these stops the start before anything is created, naming file, key and value.
#[test]
fn config_errors_of_scenario_7() {
    let replace_gw = |from: &str, to: &str| HOME_GW.replace(from, to);
    let cases: Vec<(&str, String, String, &str)> = vec![
        // (what, if text, gw text, expected words)
        (
            "prefix of 1 octet",
            HOME_IF.into(),
            replace_gw("\"98:D2:93\"", "\"98\""),
            r#"WgIfMacaddrPrefix = "98": prefix length must be between 2 and 5 octets, this one has 1"#,
        ),
        (
            "odd first octet",
            HOME_IF.into(),
            replace_gw("\"98:D2:93\"", "\"99:D2:93\""),
            r#"WgIfMacaddrPrefix = "99:D2:93": can't use a multicast MAC address: the first octet (99) must be an even number"#,
        ),
        (
            "prefix lengths differ",
            HOME_IF.into(),
            replace_gw("\"A4:77:33\"", "\"A4:77\""),
            "Length of WgIfMacaddrPrefix and VppIfMacaddrPrefix must be same",
        ),
        (
            "uid too large",
            HOME_IF.replace("\"uid\": 3", "\"uid\": 16777216"),
            HOME_GW.into(),
            r#"uid = "16777216": UID can't be greater than 256^(6 - 3 prefix octets) - 1 = 16777215"#,
        ),
        (
            "bad CIDR",
            HOME_IF.replace("172.22.77.33/32", "172.22.77.33/33"),
            HOME_GW.into(),
            r#"IPv4ArpResponseRanges[0] = "172.22.77.33/33": invalid CIDR address"#,
        ),
        (
            "IPv6 in the IPv4 list",
            HOME_IF.replace("172.22.77.33/32", "fd00::1/128"),
            HOME_GW.into(),
            r#"IPv4ArpResponseRanges[0] = "fd00::1/128": Not a valid IPv4 CIDR"#,
        ),
        (
            "IPv4 in the IPv6 list",
            HOME_IF.replace("fd28:cb8f:4c92::33/128", "172.22.77.34/32"),
            HOME_GW.into(),
            r#"IPv6NdpNeighAdvRanges[0] = "172.22.77.34/32": Not a valid IPv6 CIDR"#,
        ),
        (
            "invalid GatewayMacAddr",
            HOME_IF.into(),
            replace_gw("\"42:42:42:42:42:42\"", "\"42:42:42:42:42\""),
            r#"GatewayMacAddr = "42:42:42:42:42": not a MAC address"#,
        ),
        (
            "wrong JSON type",
            HOME_IF.replace("\"uid\": 3", "\"uid\": \"3\""),
            HOME_GW.into(),
            r#"key "uid": expected an unsigned 32-bit integer, found a string "3""#,
        ),
        (
            "not JSON",
            "{\"uid\": 3,".into(),
            HOME_GW.into(),
            "not valid JSON",
        ),
    ];
    for (what, if_text, gw_text, words) in cases {
        let dir = ConfigDir::new();
        dir.write("if/home.json", &if_text);
        dir.write("gw/4242.json", &gw_text);
        let err = dir.load("home").expect_err(what).to_string();
        assert!(err.contains(words), "{what}: {err}");
        let file_named = err.starts_with(&dir.path().join("if/home.json").display().to_string())
            || err.starts_with(&dir.path().join("gw/4242.json").display().to_string());
        assert!(
            file_named,
            "{what}: the message starts with the file: {err}"
        );
    }
}

/// Loading reads and creates nothing: the folder is the same afterwards, whether it loaded or failed.
#[test]
fn loading_leaves_nothing_behind() {
    fn listing(dir: &Path) -> Vec<(PathBuf, u64)> {
        let mut all = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let meta = entry.metadata().unwrap();
            if meta.is_dir() {
                all.extend(listing(&entry.path()));
            }
            all.push((entry.path(), meta.len()));
        }
        all.sort();
        all
    }
    let dir = ConfigDir::home_checking_conflicts();
    let before = listing(dir.path());
    dir.load("home").unwrap();
    assert_eq!(listing(dir.path()), before);
    dir.write("if.peer.json", &peer_if(4242, "172.22.77.32/30"));
    let before = listing(dir.path());
    dir.load("home").unwrap_err();
    assert_eq!(listing(dir.path()), before);
}

#[test]
fn missing_files_name_both_layouts() {
    let dir = ConfigDir::new();
    let err = dir.load("home").unwrap_err().to_string();
    assert!(
        err.starts_with("interface config of home not found: neither "),
        "{err}"
    );
    assert!(
        err.contains("if/home.json nor ") && err.contains("if.home.json exists"),
        "{err}"
    );
    dir.write("if/home.json", HOME_IF);
    let err = dir.load("home").unwrap_err().to_string();
    assert!(
        err.starts_with("gateway config of bridge 4242 not found: neither "),
        "{err}"
    );
    assert!(
        err.contains("gw/4242.json nor ") && err.contains("gw.4242.json exists"),
        "{err}"
    );
}

#[test]
fn a_missing_bridge_id_is_reported_before_looking_for_gw_0() {
    let dir = ConfigDir::new();
    dir.write("if/home.json", r#"{"uid": 3}"#);
    let err = dir.load("home").unwrap_err().to_string();
    assert!(err.contains(r#"VppBridgeID = "0": missing or 0"#), "{err}");
}

/// Scenario 8, and B10: the check runs over both layouts, never against ourselves.
#[test]
fn conflict_check_of_scenario_8() {
    // The original's case: an old-style file of another interface on our bridge.
    let dir = ConfigDir::home_checking_conflicts();
    let peer = dir.write("if.peer.json", &peer_if(4242, "172.22.77.32/30"));
    let err = dir.load("home").unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "Network overlap detected at {} with network [172.22.77.33/32] and [172.22.77.32/30] (bridge 4242; \
             this interface's {} lists 172.22.77.33/32): two interfaces would answer ARP/NDP for the same addresses",
            peer.display(),
            dir.path().join("if/home.json").display()
        )
    );

    // The same file on another bridge: no conflict.
    dir.write("if.peer.json", &peer_if(4243, "172.22.77.32/30"));
    assert!(dir.load("home").is_ok());

    // The current layout is checked too (the original's check found nothing there).
    let peer = dir.write("sub/if/peer2.json", &peer_if(4242, "172.22.77.0/24"));
    match dir.load("home").unwrap_err() {
        ConfigError::Overlap { other_file, .. } => assert_eq!(other_file, peer),
        other => panic!("{other:?}"),
    }
    std::fs::remove_file(&peer).unwrap();

    // IPv6 ranges are compared too.
    let peer = dir.write(
        "if/peer3.json",
        r#"{"uid": 5, "IPv6NdpNeighAdvRanges": ["fe80::/64"], "VppBridgeID": 4242}"#,
    );
    match dir.load("home").unwrap_err() {
        ConfigError::Overlap {
            other_file,
            ours,
            theirs,
            ..
        } => {
            assert_eq!(
                (other_file, ours.to_string(), theirs.to_string()),
                (peer, "fe80::42:1817:1/128".into(), "fe80::/64".into())
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn conflict_check_never_compares_an_interface_with_itself() {
    let dir = ConfigDir::home_checking_conflicts();
    // Our own interface in the old layout too (the original failed here with a self-overlap).
    dir.write("if.home.json", HOME_IF);
    let loaded = dir.load("home").unwrap();
    assert!(
        matches!(
            loaded.warnings.as_slice(),
            [ConfigWarning::BothLayouts { .. }]
        ),
        "{:?}",
        loaded.warnings
    );

    // Our own file reached under another interface's name (a symlink) is still ours.
    std::os::unix::fs::symlink(
        dir.path().join("if/home.json"),
        dir.path().join("if/alias.json"),
    )
    .unwrap();
    assert!(dir.load("home").is_ok());

    // Another interface in both layouts: only its current file counts (the flat one is shadowed).
    dir.write("if.peer.json", &peer_if(4242, "172.22.77.33/32"));
    dir.write("if/peer.json", &peer_if(4242, "172.22.77.40/32"));
    assert!(dir.load("home").is_ok());
}

#[test]
fn conflict_check_skips_unreadable_unrelated_files_with_a_warning() {
    let dir = ConfigDir::home_checking_conflicts();
    let broken = dir.write("if/broken.json", "{not json");
    let typed = dir.write("if.typed.json", r#"{"VppBridgeID": "4242"}"#);
    let loaded = dir.load("home").unwrap();
    let skipped: Vec<&Path> = loaded
        .warnings
        .iter()
        .filter_map(|w| match w {
            ConfigWarning::ConflictSkipped { file, .. } => Some(file.as_path()),
            _ => None,
        })
        .collect();
    assert_eq!(
        skipped,
        [broken.as_path(), typed.as_path()],
        "in interface-name order"
    );

    // A file on our bridge whose ranges are invalid cannot be vouched for: that is an error naming it.
    let bad = dir.write("if/bad.json", &peer_if(4242, "172.22.77.0/33"));
    let err = dir.load("home").unwrap_err().to_string();
    assert!(
        err.starts_with(&format!(
            "{}: IPv4ArpResponseRanges[0] = \"172.22.77.0/33\"",
            bad.display()
        )),
        "{err}"
    );
    // The same invalid file on another bridge does not matter.
    dir.write("if/bad.json", &peer_if(1, "172.22.77.0/33"));
    assert!(dir.load("home").is_ok());
}

#[test]
fn conflict_check_runs_only_when_asked() {
    let dir = ConfigDir::home();
    dir.write("if.peer.json", &peer_if(4242, "172.22.77.32/30"));
    assert!(
        dir.load("home").unwrap().warnings.is_empty(),
        "flag off: no check"
    );

    // Paths without the flag: no check, and a warning saying so.
    let gw = HOME_GW.replacen(
        '{',
        r#"{"VppBridgeLoop_CheckRouteConfigPaths": ["/nonexistent"],"#,
        1,
    );
    dir.write("gw/4242.json", &gw);
    let warnings = dir.load("home").unwrap().warnings;
    assert!(
        warnings[0]
            .to_string()
            .contains("VppBridgeLoop_CheckRouteConflict is false"),
        "{warnings:?}"
    );

    // The flag without paths: the config folder itself is scanned.
    let gw = HOME_GW.replacen('{', r#"{"VppBridgeLoop_CheckRouteConflict": true,"#, 1);
    dir.write("gw/4242.json", &gw);
    assert!(matches!(dir.load("home"), Err(ConfigError::Overlap { .. })));

    // A listed folder that does not exist is an error, not a check that silently checks nothing.
    let gw = HOME_GW.replacen(
        '{',
        r#"{"VppBridgeLoop_CheckRouteConflict": true, "VppBridgeLoop_CheckRouteConfigPaths": ["/nonexistent/wggo"],"#,
        1,
    );
    dir.write("gw/4242.json", &gw);
    let err = dir.load("home").unwrap_err().to_string();
    assert!(
        err.contains("VppBridgeLoop_CheckRouteConfigPaths folder /nonexistent/wggo: No such file"),
        "{err}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]

    /// Hostile bytes in either file never panic the loader: they load or give an error.
    #[test]
    fn random_file_contents_never_panic(if_bytes in proptest::collection::vec(any::<u8>(), 0..256),
                                        gw_bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let dir = ConfigDir::home_checking_conflicts();
        std::fs::write(dir.path().join("if/home.json"), &if_bytes).unwrap();
        let _ = dir.load("home");
        dir.write("if/home.json", HOME_IF);
        std::fs::write(dir.path().join("gw/4242.json"), &gw_bytes).unwrap();
        let _ = dir.load("home");
        std::fs::write(dir.path().join("if.other.json"), &if_bytes).unwrap();
        let _ = dir.load("home");
    }

    /// JSON-shaped input with the real keys and values of any type never panics either.
    #[test]
    fn random_json_with_real_keys_never_panics(members in proptest::collection::vec((key(), value()), 0..12)) {
        let text = object(&members);
        let dir = ConfigDir::home_checking_conflicts();
        dir.write("if/home.json", &text);
        let _ = dir.load("home");
        dir.write("if/home.json", HOME_IF);
        dir.write("gw/4242.json", &text);
        let _ = dir.load("home");
    }
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("uid"),
        Just("secret"),
        Just("Macaddr"),
        Just("IPv4ArpResponseRanges"),
        Just("IPv6NdpNeighAdvRanges"),
        Just("IPv4ArpLearningRanges"),
        Just("IPv6NdpLearningRanges"),
        Just("GratuitousARPOnStartUP"),
        Just("VppBridgeID"),
        Just("GatewayMacAddr"),
        Just("WgIfMacaddrPrefix"),
        Just("VppIfMacaddrPrefix"),
        Just("VppBridgeLoop_InstallMethod"),
        Just("VppBridgeLoop_SwIfIndex"),
        Just("VppBridgeLoop_InstallRoutes"),
        Just("VppBridgeLoop_InstallNeighbor"),
        Just("VppBridgeLoop_CheckRouteConflict"),
        Just("vppbridgeid"),
    ]
    .prop_map(str::to_owned)
}

fn value() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just("null".to_owned()),
        any::<bool>().prop_map(|b| b.to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<u32>().prop_map(|n| n.to_string()),
        any::<f64>()
            .prop_filter("finite", |x| x.is_finite())
            .prop_map(|x| format!("{x:e}")),
        "[0-9a-fA-F:./-]{0,24}".prop_map(|s| json_string(&s)),
        any::<String>().prop_map(|s| json_string(&s)),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4)
                .prop_map(|v| format!("[{}]", v.join(", "))),
            proptest::collection::vec((key(), inner), 0..4).prop_map(|m| object(&m)),
        ]
    })
}

fn json_string(s: &str) -> String {
    serde_json::to_string(s).expect("a string serialises")
}

fn object(members: &[(String, String)]) -> String {
    let members: Vec<String> = members
        .iter()
        .map(|(k, v)| format!("{}: {v}", json_string(k)))
        .collect();
    format!("{{{}}}", members.join(", "))
}

/// The config reference (`examples/etc/README.md`) names every key the files have, no key they do
/// not have, and the defaults and limits the code uses.
#[test]
fn the_config_reference_matches_the_code() {
    let readme = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/etc/README.md"),
    )
    .unwrap();
    let section = |title: &str| -> Vec<String> {
        let start = readme
            .find(title)
            .unwrap_or_else(|| panic!("section {title}"));
        let rest = &readme[start + title.len()..];
        let end = rest.find("\n## ").unwrap_or(rest.len());
        // The backticked first cell of each table row.
        rest[..end]
            .lines()
            .filter_map(|line| line.strip_prefix("| `"))
            .filter_map(|cell| cell.split('`').next().map(str::to_owned))
            .collect()
    };
    let keys_of = |json: &str| -> Vec<String> {
        let value: serde_json::Value = serde_json::from_str(json).unwrap();
        value.as_object().unwrap().keys().cloned().collect()
    };
    let interface = config::InterfaceFile {
        macaddr: "x".into(),
        mtu: 1420,
        ..Default::default()
    };
    let mut documented = section("## `if/<name>.json`");
    let mut actual = keys_of(&interface.to_json());
    documented.sort();
    actual.sort();
    assert_eq!(documented, actual, "interface keys");
    let mut documented = section("## `gw/<VppBridgeID>.json`");
    let mut actual = keys_of(&config::GatewayFile::default().to_json());
    documented.sort();
    actual.sort();
    assert_eq!(documented, actual, "gateway keys");
    for nested in [
        "\"IPv4\", \"IPv6\", \"IPv6 link-local\"",
        "\"static\", \"no-fib-entry\"",
    ] {
        assert!(readme.contains(nested), "{nested}");
    }
    assert!(
        readme.contains("`VppBridgeLoop_VppctlBin`"),
        "the alias is documented"
    );

    let env_rows = [
        ("VPP_API_SOCKET_PATH", config::DEFAULT_VPP_API_SOCKET),
        ("VPP_MEMIF_SOCKET_DIR", config::DEFAULT_MEMIF_SOCKET_DIR),
        ("VPP_MEMIF_CONFIG_DIR", config::DEFAULT_CONFIG_DIR),
        ("LOG_LEVEL", "warn"),
    ];
    for (var, default) in env_rows {
        assert!(
            readme.contains(&format!("| `{var}` | `{default}` |")),
            "{var} = {default}"
        );
    }
    let mut documented = section("## Environment");
    documented.sort();
    let mut vars = config::VARIABLES;
    vars.sort();
    assert_eq!(documented, vars);
    // Every variable the reference lists is one the code reads: an unknown one would not fail, so
    // check that setting each to a bad value is noticed (an error or a warning).
    for var in vars.iter().filter(|v| !v.starts_with("VPP_")) {
        let outcome = Env::from_lookup(|name| (name == *var).then(|| "-x".to_owned()));
        assert!(
            outcome.map(|env| !env.warnings.is_empty()).unwrap_or(true),
            "{var} is read"
        );
    }

    let limits = [
        format!(
            "| `VppBridgeLoop_VppctlBinary` | string | `{}` |",
            config::DEFAULT_VPPCTL_BINARY
        ),
        format!("1 to {}", config::BRIDGE_ID_MAX),
        format!("at most {} bytes", config::MemifSecret::MAX_LEN),
        format!(
            "`{}` draws {} characters",
            config::RANDOM_SECRET,
            config::RANDOM_SECRET_LEN
        ),
        format!("at most {} bytes in all", config::SOCKET_PATH_MAX),
    ];
    for text in limits {
        assert!(readme.contains(&text), "the reference says {text:?}");
    }
}
