//! WireGuard keys as they are kept in Secrets: 32 bytes written as 44 base64 characters, the way
//! `wg genkey` prints them. A [`Key`] never shows its bytes in `Debug` output, so it cannot leak into a log.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rand::RngCore;

/// A 32-byte WireGuard key (private, public or preshared).
#[derive(Clone, PartialEq, Eq)]
pub struct Key([u8; 32]);

/// Why some bytes are not a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Not valid base64 text.
    #[error("not base64 text (a key is 44 base64 characters, as `wg genkey` prints it)")]
    NotBase64,
    /// Base64, but not 32 bytes.
    #[error(
        "decodes to {0} bytes instead of 32 (a key is 44 base64 characters, as `wg genkey` prints it)"
    )]
    WrongLength(usize),
}

impl Key {
    /// Parses the base64 text form; surrounding whitespace (a trailing newline) is ignored.
    pub fn from_base64(text: &[u8]) -> Result<Key, KeyError> {
        let text = text.trim_ascii();
        let bytes = STANDARD.decode(text).map_err(|_| KeyError::NotBase64)?;
        let array: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| KeyError::WrongLength(bytes.len()))?;
        Ok(Key(array))
    }

    /// A new private key from the operating system's random source, clamped as X25519 requires.
    pub fn generate_private() -> Key {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        bytes[0] &= 248;
        bytes[31] = (bytes[31] & 127) | 64;
        Key(bytes)
    }

    /// The public key of this private key.
    pub fn public_key(&self) -> Key {
        let secret = x25519_dalek::StaticSecret::from(self.0);
        Key(*x25519_dalek::PublicKey::from(&secret).as_bytes())
    }

    /// The 44-character base64 text form.
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0)
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_key_matches_rfc7748_vector() {
        // RFC 7748 section 6.1: Alice's private and public key.
        let private = hex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a");
        let public = hex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a");
        assert_eq!(Key(private).public_key().as_bytes(), &public);
    }

    #[test]
    fn base64_round_trip_and_whitespace() {
        let key = Key::generate_private();
        let text = format!("{}\n", key.to_base64());
        assert_eq!(text.len(), 45);
        assert_eq!(Key::from_base64(text.as_bytes()), Ok(key));
    }

    #[test]
    fn bad_keys_are_refused() {
        assert_eq!(Key::from_base64(b"not base64!"), Err(KeyError::NotBase64));
        assert_eq!(Key::from_base64(b"AAAA"), Err(KeyError::WrongLength(3)));
    }

    #[test]
    fn debug_never_shows_the_key() {
        let key = Key::generate_private();
        let debug = format!("{key:?}");
        assert!(!debug.contains(&key.to_base64()));
    }

    fn hex(text: &str) -> [u8; 32] {
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).expect("test vector is hex");
        }
        out
    }

    proptest::proptest! {
        #[test]
        fn from_base64_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..100)) {
            let _ = Key::from_base64(&bytes);
        }
    }
}
