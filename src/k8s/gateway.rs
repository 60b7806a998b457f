//! The gateway file of a bridge domain (`<bridgeID>.json`, the original's `gw/<VppBridgeID>.json`), shared
//! by every tunnel on that bridge. In a cluster the chart mounts one per bridge into the gateway directory.
//!
//! The file is kept as the operator wrote it, so the rendered `gw/<id>.json` is byte-for-byte the same
//! model; only the fields this module needs are checked here (the gateway MAC, and the MAC prefix length,
//! which bounds the uid). Keys match case-insensitively, as in the original's Go decoder.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

/// A parsed gateway file.
#[derive(Debug, Clone, PartialEq)]
pub struct GatewayFile {
    /// Where it was read from.
    pub path: PathBuf,
    /// The file's JSON object, unchanged.
    pub json: Map<String, Value>,
    /// Octets in `WgIfMacaddrPrefix` (2 to 5); the uid fills the other `6 - n` bytes of the MAC.
    pub prefix_octets: usize,
}

/// Why a gateway file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The file is missing or unreadable.
    #[error(
        "gateway file {path}: {source} (every bridgeID needs a gateway file `<bridgeID>.json`)"
    )]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a JSON object.
    #[error("gateway file {path}: not a JSON object: {reason}")]
    NotJson {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        reason: String,
    },
    /// A field is missing or wrong.
    #[error("gateway file {path}: field {field} {reason}")]
    Field {
        /// The file.
        path: PathBuf,
        /// The key, as the original spells it.
        field: &'static str,
        /// What is wrong and what is expected.
        reason: String,
    },
}

impl GatewayFile {
    /// Reads `<dir>/<bridge_id>.json`.
    pub fn load(dir: &Path, bridge_id: u32) -> Result<GatewayFile, GatewayError> {
        let path = dir.join(format!("{bridge_id}.json"));
        let text = std::fs::read(&path).map_err(|source| GatewayError::Read {
            path: path.clone(),
            source,
        })?;
        GatewayFile::parse(path, &text)
    }

    /// Parses a gateway file's bytes.
    pub fn parse(path: PathBuf, bytes: &[u8]) -> Result<GatewayFile, GatewayError> {
        let json = match serde_json::from_slice::<Value>(bytes) {
            Ok(Value::Object(map)) => map,
            Ok(_) => {
                return Err(GatewayError::NotJson {
                    path,
                    reason: "expected an object".into(),
                });
            }
            Err(err) => {
                return Err(GatewayError::NotJson {
                    path,
                    reason: err.to_string(),
                });
            }
        };
        let field_error = |field, reason: String| GatewayError::Field {
            path: path.clone(),
            field,
            reason,
        };
        let gateway_mac = string_field(&json, "GatewayMacAddr").ok_or_else(|| {
            field_error(
                "GatewayMacAddr",
                "is missing (the MAC of the bridge's BVI)".into(),
            )
        })?;
        if mac_octets(gateway_mac).is_none_or(|octets| octets.len() != 6) {
            return Err(field_error(
                "GatewayMacAddr",
                format!("{gateway_mac:?} is not a MAC address"),
            ));
        }
        let mut prefix_octets = 0;
        for field in ["WgIfMacaddrPrefix", "VppIfMacaddrPrefix"] {
            let prefix = string_field(&json, field).ok_or_else(|| {
                field_error(
                    field,
                    "is missing (2 to 5 hex octets such as 98:D2:93)".into(),
                )
            })?;
            let octets = mac_octets(prefix)
                .filter(|o| (2..=5).contains(&o.len()))
                .ok_or_else(|| {
                    field_error(
                        field,
                        format!("{prefix:?} is not 2 to 5 hex octets such as 98:D2:93"),
                    )
                })?;
            if octets[0] & 1 == 1 {
                return Err(field_error(
                    field,
                    format!("{prefix:?} starts with an odd (multicast) octet"),
                ));
            }
            if prefix_octets != 0 && prefix_octets != octets.len() {
                return Err(field_error(
                    field,
                    "must have as many octets as WgIfMacaddrPrefix".into(),
                ));
            }
            prefix_octets = octets.len();
        }
        Ok(GatewayFile {
            path,
            json,
            prefix_octets,
        })
    }

    /// The largest uid the MAC prefix leaves room for: `256^(6 - n) - 1`, capped at `u32::MAX - 1`.
    pub fn max_uid(&self) -> u32 {
        let bits = 8 * (6 - self.prefix_octets as u32);
        let max = (1u64 << bits) - 1;
        max.min(u64::from(u32::MAX - 1)) as u32
    }

    /// The file as pretty JSON, as `render` writes it.
    pub fn to_json_pretty(&self) -> String {
        // Serialising a `Map` of `Value`s cannot fail.
        serde_json::to_string_pretty(&self.json).expect("a JSON map serialises")
    }
}

/// The value of `key` (matched case-insensitively, the last match winning as in Go) if it is a string.
fn string_field<'a>(json: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    json.iter()
        .rfind(|(k, _)| k.eq_ignore_ascii_case(key))
        .and_then(|(_, v)| v.as_str())
}

/// Hex octets separated by `:` or `-`.
fn mac_octets(text: &str) -> Option<Vec<u8>> {
    text.split([':', '-'])
        .map(|octet| {
            if octet.len() == 2 {
                u8::from_str_radix(octet, 16).ok()
            } else {
                None
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCENARIO: &str = r#"{"GatewayMacAddr": "42:42:42:42:42:42", "WgIfMacaddrPrefix": "98:D2:93",
        "VppIfMacaddrPrefix": "A4:77:33", "VppBridgeLoop_InstallMethod": "api", "VppBridgeLoop_SwIfIndex": 1}"#;

    fn parse(text: &str) -> Result<GatewayFile, GatewayError> {
        GatewayFile::parse(PathBuf::from("gw/4242.json"), text.as_bytes())
    }

    #[test]
    fn scenario_file_parses_and_keeps_every_key() {
        let gw = parse(SCENARIO).expect("valid");
        assert_eq!(gw.prefix_octets, 3);
        assert_eq!(gw.max_uid(), 16_777_215);
        assert_eq!(gw.json["VppBridgeLoop_SwIfIndex"], 1);
    }

    #[test]
    fn keys_match_case_insensitively() {
        let text = SCENARIO.replace("GatewayMacAddr", "gatewaymacaddr");
        assert!(parse(&text).is_ok());
    }

    #[test]
    fn errors_name_the_field() {
        for (from, to, field) in [
            ("42:42:42:42:42:42", "42:42", "GatewayMacAddr"),
            ("98:D2:93", "98", "WgIfMacaddrPrefix"),
            ("98:D2:93", "99:D2:93", "WgIfMacaddrPrefix"),
            ("A4:77:33", "A4:77", "VppIfMacaddrPrefix"),
        ] {
            let err = parse(&SCENARIO.replace(from, to)).expect_err(to);
            assert!(err.to_string().contains(field), "{err}");
            assert!(err.to_string().contains("gw/4242.json"), "{err}");
        }
        assert!(matches!(parse("[]"), Err(GatewayError::NotJson { .. })));
    }

    #[test]
    fn max_uid_follows_the_prefix_length() {
        let two = parse(
            &SCENARIO
                .replace("98:D2:93", "98:D2")
                .replace("A4:77:33", "A4:77"),
        )
        .expect("valid");
        assert_eq!(two.max_uid(), u32::MAX - 1);
        let five = parse(
            &SCENARIO
                .replace("98:D2:93", "98:D2:93:00:01")
                .replace("A4:77:33", "A4:77:33:00:01"),
        )
        .expect("valid");
        assert_eq!(five.max_uid(), 255);
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let _ = GatewayFile::parse(PathBuf::from("x.json"), &bytes);
        }
    }
}
