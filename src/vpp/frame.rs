//! The 16-byte framing of VPP's API socket: `u64 q` (ignored), `u32 data_len` (big-endian), `u32
//! gc_mark_timestamp` (ignored), then `data_len` bytes of message body. Reading follows check, parse,
//! advance: a partial frame is not an error, a clean end of stream between frames is `Ok(None)`.

use tokio::io::{AsyncRead, AsyncReadExt};

use super::error::VppError;

/// Length of the frame header.
pub const HEADER_LEN: usize = 16;
/// The largest body accepted from VPP. The biggest real message, the message table of
/// `sockclnt_create_reply`, is about 57 KB for 864 messages.
pub const MAX_BODY_LEN: usize = 4 << 20;

/// Appends a frame carrying `body` to `out`.
pub fn encode_frame(body: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&[0; 8]);
    // A body longer than u32::MAX cannot be built from our messages; saturating keeps this total.
    out.extend_from_slice(&u32::try_from(body.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(body);
}

/// Checks whether `buf` starts with a whole frame; returns its total length (header included), `None`
/// when more bytes are needed, or an error when the announced body is too large.
pub fn check(buf: &[u8]) -> Result<Option<usize>, VppError> {
    let Some(header) = buf.get(..HEADER_LEN) else {
        return Ok(None);
    };
    let len = u32::from_be_bytes([header[8], header[9], header[10], header[11]]) as usize;
    if len > MAX_BODY_LEN {
        return Err(VppError::FrameTooLarge {
            len,
            max: MAX_BODY_LEN,
        });
    }
    Ok((buf.len() >= HEADER_LEN + len).then_some(HEADER_LEN + len))
}

/// Reads whole message bodies from a byte stream.
pub struct FrameReader<R> {
    stream: R,
    buf: Vec<u8>,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// A reader over `stream`.
    pub fn new(stream: R) -> Self {
        Self {
            stream,
            buf: Vec::with_capacity(64 * 1024),
        }
    }

    /// The next message body; `Ok(None)` on a clean end of stream between frames.
    pub async fn read_body(&mut self) -> Result<Option<Vec<u8>>, VppError> {
        loop {
            if let Some(total) = check(&self.buf)? {
                let body = self.buf[HEADER_LEN..total].to_vec();
                self.buf.drain(..total);
                return Ok(Some(body));
            }
            let n = self
                .stream
                .read_buf(&mut self.buf)
                .await
                .map_err(|source| VppError::Io {
                    doing: "reading",
                    source,
                })?;
            if n == 0 {
                if self.buf.is_empty() {
                    return Ok(None);
                }
                return Err(VppError::Io {
                    doing: "reading",
                    source: std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        format!(
                            "the stream ended inside a frame ({} bytes pending)",
                            self.buf.len()
                        ),
                    ),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_is_q_then_big_endian_length_then_zero() {
        let mut out = Vec::new();
        encode_frame(&[0xaa; 70], &mut out);
        assert_eq!(
            &out[..16],
            &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x46, 0, 0, 0, 0]
        );
        assert_eq!(check(&out).unwrap(), Some(86));
        assert_eq!(check(&out[..85]).unwrap(), None);
    }

    #[test]
    fn garbage_in_q_is_ignored_and_huge_lengths_are_refused() {
        let mut frame = vec![
            0x80, 0xf2, 0x06, 0x30, 0x01, 0, 0, 0, 0, 0, 0, 2, 0xde, 0xad, 0, 0, 0, 16,
        ];
        assert_eq!(check(&frame).unwrap(), Some(18));
        frame[8] = 0xff;
        assert!(matches!(check(&frame), Err(VppError::FrameTooLarge { .. })));
    }

    proptest::proptest! {
        #[test]
        fn check_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64)) {
            if let Ok(Some(total)) = check(&bytes) {
                proptest::prop_assert!(total <= bytes.len());
            }
        }
    }

    #[tokio::test]
    async fn reads_frames_split_and_merged_across_reads() {
        let mut bytes = Vec::new();
        encode_frame(b"first", &mut bytes);
        encode_frame(b"second", &mut bytes);
        let (mut tx, rx) = tokio::io::duplex(7);
        let writer = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            for chunk in bytes.chunks(5) {
                tx.write_all(chunk).await.unwrap();
            }
        });
        let mut reader = FrameReader::new(rx);
        assert_eq!(reader.read_body().await.unwrap().unwrap(), b"first");
        assert_eq!(reader.read_body().await.unwrap().unwrap(), b"second");
        writer.await.unwrap();
        assert!(reader.read_body().await.unwrap().is_none());
    }
}
