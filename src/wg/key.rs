//! WireGuard keys (32 bytes) in the two spellings in use: lowercase hex on the UAPI socket and base64
//! in wg(8) config files. Neither spelling ever reaches a log: `Debug` of a [`Key`] is redacted.

use std::fmt;

use gotatun::x25519;

/// Length of every WireGuard key (private, public, preshared) in bytes.
pub const KEY_LEN: usize = 32;

/// A 32-byte WireGuard key. Private and preshared keys use the same type as public keys; `Debug`
/// never prints the bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key(pub [u8; KEY_LEN]);

/// Why a key did not parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Wrong number of characters for the spelling.
    #[error("a key must be {expected} characters long, this one has {found}")]
    Length { expected: usize, found: usize },
    /// A character outside the alphabet of the spelling.
    #[error("a key may contain only {alphabet} characters")]
    Alphabet { alphabet: &'static str },
}

impl Key {
    /// The all-zero key, which the UAPI uses to mean "no key".
    pub const ZERO: Key = Key([0; KEY_LEN]);

    /// True for the all-zero key.
    pub fn is_zero(&self) -> bool {
        self.0 == [0; KEY_LEN]
    }

    /// Parses 64 hex digits (either case), the UAPI spelling.
    pub fn from_hex(text: &str) -> Result<Key, KeyError> {
        let bytes = text.as_bytes();
        if bytes.len() != 2 * KEY_LEN {
            return Err(KeyError::Length {
                expected: 2 * KEY_LEN,
                found: bytes.len(),
            });
        }
        let mut key = [0u8; KEY_LEN];
        for (out, pair) in key.iter_mut().zip(bytes.chunks_exact(2)) {
            let digit = |c: u8| {
                (c as char)
                    .to_digit(16)
                    .ok_or(KeyError::Alphabet { alphabet: "hex" })
            };
            *out = (digit(pair[0])? << 4 | digit(pair[1])?) as u8;
        }
        Ok(Key(key))
    }

    /// The UAPI spelling: 64 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        use fmt::Write;
        let mut text = String::with_capacity(2 * KEY_LEN);
        for byte in self.0 {
            let _ = write!(text, "{byte:02x}");
        }
        text
    }

    /// Parses the 44-character base64 spelling of wg(8) config files and `wg genkey`.
    pub fn from_base64(text: &str) -> Result<Key, KeyError> {
        let bytes = text.as_bytes();
        if bytes.len() != 44 {
            return Err(KeyError::Length {
                expected: 44,
                found: bytes.len(),
            });
        }
        if bytes[43] != b'=' {
            return Err(KeyError::Alphabet { alphabet: "base64" });
        }
        let mut sextets = [0u8; 43];
        for (out, &c) in sextets.iter_mut().zip(&bytes[..43]) {
            *out = base64_value(c).ok_or(KeyError::Alphabet { alphabet: "base64" })?;
        }
        // 43 sextets carry 258 bits: the last sextet's low 2 bits must be zero (canonical form).
        if sextets[42] & 0b11 != 0 {
            return Err(KeyError::Alphabet { alphabet: "base64" });
        }
        let mut key = [0u8; KEY_LEN];
        let mut bits: u32 = 0;
        let mut nbits = 0;
        let mut out = 0;
        for sextet in sextets {
            bits = bits << 6 | u32::from(sextet);
            nbits += 6;
            if nbits >= 8 {
                nbits -= 8;
                if out < KEY_LEN {
                    key[out] = (bits >> nbits) as u8;
                    out += 1;
                }
                bits &= (1 << nbits) - 1;
            }
        }
        Ok(Key(key))
    }

    /// The base64 spelling of wg(8).
    pub fn to_base64(&self) -> String {
        const ALPHABET: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut text = String::with_capacity(44);
        for chunk in self.0.chunks(3) {
            let b = [
                chunk[0],
                chunk.get(1).copied().unwrap_or(0),
                chunk.get(2).copied().unwrap_or(0),
            ];
            let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
            let sextets = chunk.len() + 1;
            for i in 0..4 {
                if i < sextets {
                    text.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
                } else {
                    text.push('=');
                }
            }
        }
        text
    }

    /// Parses the base64 spelling as a Secret or a file holds it: surrounding whitespace (a trailing
    /// newline) is ignored.
    pub fn from_base64_text(text: &[u8]) -> Result<Key, KeyError> {
        let text = std::str::from_utf8(text.trim_ascii())
            .map_err(|_| KeyError::Alphabet { alphabet: "base64" })?;
        Key::from_base64(text)
    }

    /// A new private key from the operating system's random source, clamped as X25519 requires.
    pub fn generate_private() -> Key {
        use rand::RngCore;
        let mut bytes = [0u8; KEY_LEN];
        rand::rng().fill_bytes(&mut bytes);
        bytes[0] &= 248;
        bytes[31] = (bytes[31] & 127) | 64;
        Key(bytes)
    }

    /// The public key belonging to this private key.
    pub fn public_key(&self) -> Key {
        Key(x25519::PublicKey::from(&x25519::StaticSecret::from(self.0)).to_bytes())
    }
}

fn base64_value(c: u8) -> Option<u8> {
    match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // A key pair made with `wg genkey` / `wg pubkey`.
    const PRIVATE_B64: &str = "MDmmtJTOa/VzfGeNAQIA+fyCgNSN7sVPPD9lDvMxSkc=";
    const PUBLIC_B64: &str = "t7vnvdFJ8nU+EL78KJqFde8SUwszxD6sP3HjjT2obzE=";

    #[test]
    fn base64_round_trips_and_derives_the_public_key() {
        let private = Key::from_base64(PRIVATE_B64).expect("valid key");
        assert_eq!(private.to_base64(), PRIVATE_B64);
        assert_eq!(private.public_key().to_base64(), PUBLIC_B64);
    }

    #[test]
    fn hex_is_lowercase_and_accepts_uppercase() {
        let key = Key([0xab; KEY_LEN]);
        assert_eq!(key.to_hex(), "ab".repeat(32));
        assert_eq!(Key::from_hex(&"AB".repeat(32)), Ok(key));
    }

    #[test]
    fn bad_keys_are_refused_with_the_reason() {
        assert_eq!(
            Key::from_hex("00"),
            Err(KeyError::Length {
                expected: 64,
                found: 2
            })
        );
        assert_eq!(
            Key::from_hex(&"zz".repeat(32)),
            Err(KeyError::Alphabet { alphabet: "hex" })
        );
        assert!(Key::from_base64("MDmmtJTOa/VzfGeNAQIA+fyCgNSN7sVPPD9lDvMxSkd=").is_err());
        assert!(Key::from_base64("short=").is_err());
    }

    #[test]
    fn generated_private_keys_are_clamped_and_secret_text_may_end_in_a_newline() {
        let key = Key::generate_private();
        assert_eq!(key.0[0] & 7, 0);
        assert_eq!(key.0[31] & 0xc0, 0x40);
        assert_ne!(key, Key::generate_private());
        let text = format!("{}\n", key.to_base64());
        assert_eq!(Key::from_base64_text(text.as_bytes()), Ok(key));
        assert!(Key::from_base64_text(b"\xff\xfe").is_err());
    }

    #[test]
    fn debug_never_shows_the_bytes() {
        assert_eq!(format!("{:?}", Key([7; KEY_LEN])), "Key(<redacted>)");
    }

    proptest! {
        #[test]
        fn both_spellings_round_trip(bytes in any::<[u8; KEY_LEN]>()) {
            let key = Key(bytes);
            prop_assert_eq!(Key::from_hex(&key.to_hex()), Ok(key));
            prop_assert_eq!(Key::from_base64(&key.to_base64()), Ok(key));
        }

        #[test]
        fn hostile_text_never_panics(text in ".{0,80}") {
            let _ = Key::from_hex(&text);
            let _ = Key::from_base64(&text);
        }
    }
}
