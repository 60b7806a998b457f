//! Test fixtures: the spec's common acceptance fixture (interface `home` on bridge 4242) and a helper
//! that lays out a config folder.

use std::path::Path;

/// `if/home.json` of the spec's acceptance scenarios.
pub(crate) const HOME_IF: &str = r#"{"uid": 3, "secret": "s3cr3t",
 "IPv4ArpResponseRanges": ["172.22.77.33/32"],
 "IPv6NdpNeighAdvRanges": ["fd28:cb8f:4c92::33/128", "fe80::42:1817:1/128"],
 "IPv4ArpLearningRanges": ["10.127.111.0/24"],
 "IPv6NdpLearningRanges": ["fd10:127:e00f::/64"],
 "VppBridgeID": 4242}"#;

/// `gw/4242.json` of the spec's acceptance scenarios.
pub(crate) const HOME_GW: &str = r#"{"GatewayMacAddr": "42:42:42:42:42:42", "WgIfMacaddrPrefix": "98:D2:93", "VppIfMacaddrPrefix": "A4:77:33",
 "VppBridgeLoop_InstallMethod": "api", "VppBridgeLoop_SwIfIndex": 1, "VppBridgeLoop_SwIfName": "loop42",
 "VppBridgeLoop_InstallNeighbor": {"IPv4": true, "IPv6": true, "IPv6 link-local": true},
 "VppBridgeLoop_InstallNeighbor_Flag": {"static": true},
 "VppBridgeLoop_InstallRoutes": {"IPv4": true, "IPv6": false, "IPv6 link-local": true}}"#;

/// Writes `text` at `dir/relative`, creating the folders on the way.
pub(crate) fn write(dir: &Path, relative: &str, text: &str) {
    let path = dir.join(relative);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("create fixture folder");
    }
    std::fs::write(path, text).expect("write fixture file");
}
