//! The interface name as the original used it: sanitised once, then used for the UAPI socket, the
//! config file names, the memif socket file and the log prefix.

use super::ConfigError;

/// Removes every character outside `[A-Za-z0-9_-]`, as the original did (`wg.home` becomes `wghome`).
/// A name with nothing left is refused, where the original went on with an empty name.
pub fn sanitize_name(raw: &str) -> Result<String, ConfigError> {
    let name: String = raw
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
        .collect();
    if name.is_empty() {
        return Err(ConfigError::EmptyName {
            raw: raw.to_owned(),
        });
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_only_letters_digits_underscore_and_dash() {
        let cases = [
            ("home", "home"),
            ("wg.home", "wghome"),
            ("dn42_4242-x", "dn42_4242-x"),
            ("../../etc/passwd", "etcpasswd"),
            ("hé llo/", "hllo"),
            ("a\0b", "ab"),
        ];
        for (raw, want) in cases {
            assert_eq!(sanitize_name(raw).unwrap(), want, "{raw:?}");
        }
    }

    #[test]
    fn a_name_with_nothing_left_is_refused() {
        for raw in ["", "...", "/", "é"] {
            let err = sanitize_name(raw).unwrap_err();
            assert!(err.to_string().contains("has no usable character"), "{err}");
        }
    }

    proptest::proptest! {
        #[test]
        fn sanitised_names_are_safe_and_stable(raw in ".{0,40}") {
            if let Ok(name) = sanitize_name(&raw) {
                proptest::prop_assert!(name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'));
                proptest::prop_assert_eq!(sanitize_name(&name).unwrap(), name);
            }
        }
    }
}
