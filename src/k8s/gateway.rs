//! The gateway file of a bridge domain (`<bridgeID>.json`, the original's `gw/<VppBridgeID>.json`), shared
//! by every tunnel on that bridge. In a cluster the chart mounts one per bridge into the gateway directory.
//! It is read with the config module's rules (the original's Go JSON decoding) into the same
//! [`GatewayFile`] model the CLI uses; validating it is left to [`crate::config::validate()`].

use std::path::{Path, PathBuf};

use crate::config::{GatewayFile, MacPrefix};

/// A gateway file and where it was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gateway {
    /// The file.
    pub path: PathBuf,
    /// Its contents.
    pub file: GatewayFile,
}

/// Why a gateway file cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The file is missing or unreadable.
    #[error("gateway file {}: {source} (every bridgeID needs a gateway file `<bridgeID>.json`)", .path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a gateway file.
    #[error("gateway file {}: {reason}", .path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// What the decoder said.
        reason: String,
    },
}

impl Gateway {
    /// Reads `<dir>/<bridge_id>.json`.
    pub fn load(dir: &Path, bridge_id: u32) -> Result<Gateway, GatewayError> {
        let path = dir.join(format!("{bridge_id}.json"));
        let bytes = std::fs::read(&path).map_err(|source| GatewayError::Read {
            path: path.clone(),
            source,
        })?;
        Gateway::parse(path, &bytes)
    }

    /// Decodes a gateway file's bytes.
    pub fn parse(path: PathBuf, bytes: &[u8]) -> Result<Gateway, GatewayError> {
        match serde_json::from_slice::<GatewayFile>(bytes) {
            Ok(file) => Ok(Gateway { path, file }),
            Err(err) => Err(GatewayError::Parse {
                path,
                reason: err.to_string(),
            }),
        }
    }

    /// The largest uid the MAC prefix leaves room for (capped at `u32::MAX - 1`), or `None` when the
    /// prefix is invalid (validation then names the problem).
    pub fn max_uid(&self) -> Option<u32> {
        let prefix = MacPrefix::parse(&self.file.wg_if_macaddr_prefix).ok()?;
        Some(prefix.max_uid().min(u64::from(u32::MAX - 1)) as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCENARIO: &str = r#"{"GatewayMacAddr": "42:42:42:42:42:42", "WgIfMacaddrPrefix": "98:D2:93",
        "VppIfMacaddrPrefix": "A4:77:33", "VppBridgeLoop_InstallMethod": "api", "VppBridgeLoop_SwIfIndex": 1}"#;

    fn parse(text: &str) -> Result<Gateway, GatewayError> {
        Gateway::parse(PathBuf::from("gw/4242.json"), text.as_bytes())
    }

    #[test]
    fn scenario_file_parses_into_the_config_model() {
        let gw = parse(SCENARIO).expect("valid");
        assert_eq!(gw.file.gateway_mac_addr, "42:42:42:42:42:42");
        assert_eq!(gw.file.sw_if_index, 1);
        assert_eq!(gw.max_uid(), Some(16_777_215));
    }

    #[test]
    fn keys_match_case_insensitively_as_in_go() {
        let gw = parse(&SCENARIO.replace("GatewayMacAddr", "gatewaymacaddr")).expect("valid");
        assert_eq!(gw.file.gateway_mac_addr, "42:42:42:42:42:42");
    }

    #[test]
    fn max_uid_follows_the_prefix_length() {
        let two = parse(&SCENARIO.replace("98:D2:93", "98:D2")).expect("valid");
        assert_eq!(two.max_uid(), Some(u32::MAX - 1));
        let bad = parse(&SCENARIO.replace("98:D2:93", "99:D2:93")).expect("decodes");
        assert_eq!(bad.max_uid(), None);
    }

    #[test]
    fn errors_name_the_file() {
        let error = parse("[1]").expect_err("not an object");
        assert!(
            error.to_string().starts_with("gateway file gw/4242.json: "),
            "{error}"
        );
        let error = parse(r#"{"VppBridgeLoop_SwIfIndex": "one"}"#).expect_err("wrong type");
        assert!(
            error.to_string().contains("VppBridgeLoop_SwIfIndex"),
            "{error}"
        );
        let missing = Gateway::load(Path::new("/nonexistent-dir"), 7).expect_err("missing");
        assert!(missing.to_string().contains("7.json"), "{missing}");
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let _ = Gateway::parse(PathBuf::from("x.json"), &bytes);
        }
    }
}
