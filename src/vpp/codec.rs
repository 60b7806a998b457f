//! The binary encoding of VPP API messages: big-endian integers, packed structs, NUL-padded fixed strings,
//! length-prefixed variable strings, and the three header shapes that precede a message's own fields.
//!
//! This file knows nothing of sockets or of particular messages: `messages/` describes each message with
//! [`Message`], and `frame` and `client` move the encoded bodies. Decoding never panics: every read is a
//! split of the remaining bytes, and every length from the wire is checked against what is left before it is
//! used (a `DecodeError` names the message, the field and the sizes).

use std::fmt;

/// What comes between `_vl_msg_id` and a message's own fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderKind {
    /// `u32 client_index, u32 context`: requests (and, oddly, `sockclnt_create_reply`).
    ClientAndContext,
    /// `u32 context`: replies and details (and `sockclnt_create`, sent before there is a client index).
    Context,
    /// `u32 client_index`: events, which have no context.
    Client,
}

/// The header values of one encoded message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Header {
    /// The message id from VPP's message table.
    pub msg_id: u16,
    /// The client index (0 when the shape has none).
    pub client_index: u32,
    /// The context (0 when the shape has none).
    pub context: u32,
}

/// A VPP API message with a fixed layout, identified by its `name_crc`.
pub trait Message: Sized {
    /// `"<name>_<crc as 8 lowercase hex digits>"`, exactly as in VPP's message table.
    const NAME_CRC: &'static str;
    /// The header fields that precede [`Message::encode_fields`].
    const HEADER: HeaderKind;

    /// Appends the message's own fields (after the header).
    fn encode_fields(&self, e: &mut Encoder<'_>) -> Result<(), EncodeError>;
    /// Reads the message's own fields (after the header).
    fn decode_fields(d: &mut Decoder<'_>) -> Result<Self, DecodeError>;

    /// The message name without its CRC suffix.
    fn name() -> &'static str {
        split_name_crc(Self::NAME_CRC).map_or(Self::NAME_CRC, |(name, _)| name)
    }
}

/// A request answered by exactly one reply.
pub trait Request: Message {
    /// The reply VPP sends back.
    type Reply: Reply;
}

/// A reply with a return value (`retval`, or `response` for the memclnt messages).
pub trait Reply: Message {
    /// VPP's return value: 0 is success, negative values are API errors.
    fn retval(&self) -> i32;
}

/// A dump request answered by a stream of details, ended by a `control_ping_reply`.
pub trait Dump: Message {
    /// One element of the stream.
    type Details: Message;
}

/// Splits `"memif_create_v2_8c7de5f7"` into `("memif_create_v2", "8c7de5f7")`.
pub fn split_name_crc(name_crc: &str) -> Option<(&str, &str)> {
    let (name, crc) = name_crc.rsplit_once('_')?;
    (crc.len() == 8 && crc.bytes().all(|b| b.is_ascii_hexdigit())).then_some((name, crc))
}

/// Encodes `msg` as a whole message body (id, header, fields) appended to `out`.
pub fn encode_message<M: Message>(
    header: Header,
    msg: &M,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    let mut e = Encoder::new(out, M::name());
    e.u16(header.msg_id);
    match M::HEADER {
        HeaderKind::ClientAndContext => {
            e.u32(header.client_index);
            e.u32(header.context);
        }
        HeaderKind::Context => e.u32(header.context),
        HeaderKind::Client => e.u32(header.client_index),
    }
    msg.encode_fields(&mut e)
}

/// Decodes a whole message body. Trailing bytes are an error: with matching CRCs the layout is exact, so
/// extra bytes mean a mis-encoding that must not pass silently.
pub fn decode_message<M: Message>(body: &[u8]) -> Result<(Header, M), DecodeError> {
    let mut d = Decoder::new(body, M::name());
    let mut header = Header {
        msg_id: d.u16("_vl_msg_id")?,
        ..Header::default()
    };
    match M::HEADER {
        HeaderKind::ClientAndContext => {
            header.client_index = d.u32("client_index")?;
            header.context = d.u32("context")?;
        }
        HeaderKind::Context => header.context = d.u32("context")?,
        HeaderKind::Client => header.client_index = d.u32("client_index")?,
    }
    let msg = M::decode_fields(&mut d)?;
    d.finish()?;
    Ok((header, msg))
}

/// The message id at the start of a body, if the body has one.
pub fn peek_msg_id(body: &[u8]) -> Option<u16> {
    body.get(..2).map(|b| u16::from_be_bytes([b[0], b[1]]))
}

/// Why a message could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// A string does not fit its fixed-size field (which also needs room for the NUL).
    #[error("{message}.{field}: {len} bytes do not fit (at most {max}); shorten the value")]
    StringTooLong {
        message: &'static str,
        field: &'static str,
        len: usize,
        max: usize,
    },
    /// A string contains a NUL byte, which VPP would treat as its end.
    #[error("{message}.{field}: the value contains a NUL byte")]
    StringHasNul {
        message: &'static str,
        field: &'static str,
    },
    /// A variable array has more elements than its count field can say.
    #[error("{message}.{field}: {len} elements do not fit the count field (at most {max})")]
    TooManyElements {
        message: &'static str,
        field: &'static str,
        len: usize,
        max: usize,
    },
}

/// Why bytes could not be decoded as a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}.{field}: {kind}")]
pub struct DecodeError {
    /// The message being decoded.
    pub message: &'static str,
    /// The field being read.
    pub field: &'static str,
    /// What was wrong.
    pub kind: DecodeErrorKind,
}

/// The reason inside a [`DecodeError`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeErrorKind {
    /// The body ended inside the field.
    Truncated { needed: usize, remaining: usize },
    /// The body has bytes after the last field.
    TrailingBytes { len: usize },
    /// An `address_family` value other than 0 (IPv4) or 1 (IPv6).
    BadAddressFamily(u8),
}

impl fmt::Display for DecodeErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated { needed, remaining } => {
                write!(f, "truncated: needs {needed} bytes, {remaining} left")
            }
            Self::TrailingBytes { len } => write!(f, "{len} unexpected bytes after the last field"),
            Self::BadAddressFamily(af) => {
                write!(f, "address family {af} is neither 0 (IPv4) nor 1 (IPv6)")
            }
        }
    }
}

/// Appends big-endian fields to a message body.
pub struct Encoder<'a> {
    out: &'a mut Vec<u8>,
    message: &'static str,
}

impl<'a> Encoder<'a> {
    /// An encoder appending to `out`; `message` names errors.
    pub fn new(out: &'a mut Vec<u8>, message: &'static str) -> Self {
        Self { out, message }
    }

    /// Appends a `u8`.
    pub fn u8(&mut self, v: u8) {
        self.out.push(v);
    }
    /// Appends a `bool` as one byte (0 or 1).
    pub fn bool(&mut self, v: bool) {
        self.out.push(u8::from(v));
    }
    /// Appends a big-endian `u16`.
    pub fn u16(&mut self, v: u16) {
        self.out.extend_from_slice(&v.to_be_bytes());
    }
    /// Appends a big-endian `u32`.
    pub fn u32(&mut self, v: u32) {
        self.out.extend_from_slice(&v.to_be_bytes());
    }
    /// Appends a big-endian `i32`.
    pub fn i32(&mut self, v: i32) {
        self.out.extend_from_slice(&v.to_be_bytes());
    }
    /// Appends raw bytes (MAC and IP addresses).
    pub fn bytes(&mut self, v: &[u8]) {
        self.out.extend_from_slice(v);
    }

    /// `string field[size]`: the bytes, NUL-padded to `size`; at most `size - 1` bytes fit.
    pub fn fixed_string(
        &mut self,
        field: &'static str,
        v: &str,
        size: usize,
    ) -> Result<(), EncodeError> {
        self.check_no_nul(field, v)?;
        let max = size.saturating_sub(1);
        if v.len() > max {
            return Err(EncodeError::StringTooLong {
                message: self.message,
                field,
                len: v.len(),
                max,
            });
        }
        self.out.extend_from_slice(v.as_bytes());
        self.out.resize(self.out.len() + size - v.len(), 0);
        Ok(())
    }

    /// `string field[]`: a u32 length, then the bytes with no NUL.
    pub fn var_string(&mut self, field: &'static str, v: &str) -> Result<(), EncodeError> {
        self.check_no_nul(field, v)?;
        let len = u32::try_from(v.len()).map_err(|_| EncodeError::StringTooLong {
            message: self.message,
            field,
            len: v.len(),
            max: u32::MAX as usize,
        })?;
        self.u32(len);
        self.out.extend_from_slice(v.as_bytes());
        Ok(())
    }

    /// The count of a variable array, checked against the width of its count field (`max`).
    pub fn count(
        &mut self,
        field: &'static str,
        len: usize,
        max: usize,
    ) -> Result<usize, EncodeError> {
        if len > max {
            return Err(EncodeError::TooManyElements {
                message: self.message,
                field,
                len,
                max,
            });
        }
        Ok(len)
    }

    fn check_no_nul(&self, field: &'static str, v: &str) -> Result<(), EncodeError> {
        if v.as_bytes().contains(&0) {
            return Err(EncodeError::StringHasNul {
                message: self.message,
                field,
            });
        }
        Ok(())
    }
}

/// Reads big-endian fields from a message body by splitting off the remaining bytes.
pub struct Decoder<'a> {
    rest: &'a [u8],
    message: &'static str,
}

impl<'a> Decoder<'a> {
    /// A decoder over `body`; `message` names errors.
    pub fn new(body: &'a [u8], message: &'static str) -> Self {
        Self {
            rest: body,
            message,
        }
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.rest.len()
    }

    /// An error about `field` of this message.
    pub fn error(&self, field: &'static str, kind: DecodeErrorKind) -> DecodeError {
        DecodeError {
            message: self.message,
            field,
            kind,
        }
    }

    /// The next `n` bytes.
    pub fn take(&mut self, field: &'static str, n: usize) -> Result<&'a [u8], DecodeError> {
        if n > self.rest.len() {
            return Err(self.error(
                field,
                DecodeErrorKind::Truncated {
                    needed: n,
                    remaining: self.rest.len(),
                },
            ));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    /// The next `N` bytes as an array.
    pub fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], DecodeError> {
        let mut a = [0; N];
        a.copy_from_slice(self.take(field, N)?);
        Ok(a)
    }

    /// Reads a `u8`.
    pub fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        Ok(self.array::<1>(field)?[0])
    }
    /// Any non-zero byte is true, as in VPP.
    pub fn bool(&mut self, field: &'static str) -> Result<bool, DecodeError> {
        Ok(self.u8(field)? != 0)
    }
    /// Reads a big-endian `u16`.
    pub fn u16(&mut self, field: &'static str) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array(field)?))
    }
    /// Reads a big-endian `u32`.
    pub fn u32(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array(field)?))
    }
    /// Reads a big-endian `i32`.
    pub fn i32(&mut self, field: &'static str) -> Result<i32, DecodeError> {
        Ok(i32::from_be_bytes(self.array(field)?))
    }

    /// `string field[size]`: up to the first NUL. Bytes that are not UTF-8 are replaced (names and tags
    /// are ASCII in practice, and a stray byte in an operator's tag must not make a whole dump fail).
    pub fn fixed_string(
        &mut self,
        field: &'static str,
        size: usize,
    ) -> Result<String, DecodeError> {
        let raw = self.take(field, size)?;
        let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
        Ok(String::from_utf8_lossy(&raw[..end]).into_owned())
    }

    /// `string field[]`: a u32 length, checked against the remaining bytes, then the bytes.
    pub fn var_string(&mut self, field: &'static str) -> Result<String, DecodeError> {
        let len = self.u32(field)? as usize;
        let raw = self.take(field, len)?;
        Ok(String::from_utf8_lossy(raw).into_owned())
    }

    /// Checks that `count` elements of `element_size` bytes can still follow, so that a hostile count never
    /// causes a large allocation.
    pub fn check_count(
        &self,
        field: &'static str,
        count: usize,
        element_size: usize,
    ) -> Result<usize, DecodeError> {
        let needed = count.saturating_mul(element_size);
        if needed > self.rest.len() {
            return Err(self.error(
                field,
                DecodeErrorKind::Truncated {
                    needed,
                    remaining: self.rest.len(),
                },
            ));
        }
        Ok(count)
    }

    /// Fails if bytes are left after the last field.
    pub fn finish(&self) -> Result<(), DecodeError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(self.error(
                "(end)",
                DecodeErrorKind::TrailingBytes {
                    len: self.rest.len(),
                },
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_string_needs_room_for_the_nul() {
        let mut out = Vec::new();
        let mut e = Encoder::new(&mut out, "m");
        assert!(e.fixed_string("s", "abc", 4).is_ok());
        assert_eq!(
            e.fixed_string("s", "abcd", 4),
            Err(EncodeError::StringTooLong {
                message: "m",
                field: "s",
                len: 4,
                max: 3
            })
        );
        assert_eq!(out, b"abc\0");
    }

    #[test]
    fn var_string_length_is_checked_before_use() {
        let body = [0xff, 0xff, 0xff, 0xff, b'a'];
        let err = Decoder::new(&body, "m").var_string("name").unwrap_err();
        assert_eq!(
            err.kind,
            DecodeErrorKind::Truncated {
                needed: 0xffff_ffff,
                remaining: 1
            }
        );
        assert_eq!(
            err.to_string(),
            "m.name: truncated: needs 4294967295 bytes, 1 left"
        );
    }

    #[test]
    fn split_name_crc_needs_eight_hex_digits() {
        assert_eq!(
            split_name_crc("memif_create_v2_8c7de5f7"),
            Some(("memif_create_v2", "8c7de5f7"))
        );
        assert_eq!(split_name_crc("memif_create_v2"), None);
        assert_eq!(split_name_crc("noseparator"), None);
    }
}
