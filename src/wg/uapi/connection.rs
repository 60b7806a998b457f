//! One UAPI connection: reads `get=1` / `set=1` requests until the client closes, answers each one
//! with an `errno=` line, and never closes without a reply to a request it has started reading.
//!
//! Framing is by lines, bounded in length, so hostile input costs bounded memory. Every request ends
//! with a blank line; after a bad line in a `set` the rest of the request is read and dropped, so the
//! next request on the same connection starts in sync. An unknown operation, or garbage after
//! `get=1`, is answered and then the connection is closed, since where it ends cannot be known.

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};

use crate::wg::device::WgDevice;
use crate::wg::ip_side::{IpRecv, IpSend};
use crate::wg::uapi::command::{Command, EINVAL, EPROTO, SetParser, UapiError};

/// Longest line accepted; `wg` never sends more than about 100 bytes.
pub const MAX_LINE: usize = 4096;

/// Most lines in one `set` request: room for 65,536 peers with several allowed IPs each, while a
/// runaway client cannot make the server hold unbounded memory.
pub const MAX_SET_LINES: usize = 1 << 21;

enum Line {
    /// A whole line, without its newline.
    Text,
    /// A line longer than [`MAX_LINE`], read and dropped up to its newline.
    TooLong,
    /// End of input with nothing read.
    Eof,
    /// End of input in the middle of a line.
    Truncated,
}

/// Serves requests on `stream` until the client closes it or an I/O error occurs.
pub async fn serve_connection<S, Tx, Rx>(stream: S, device: &WgDevice<Tx, Rx>)
where
    S: AsyncRead + AsyncWrite + Unpin,
    Tx: IpSend,
    Rx: IpRecv,
{
    let (read, mut write) = tokio::io::split(stream);
    let mut reader = BufReader::new(read);
    let mut line = Vec::with_capacity(128);
    loop {
        let reply = match read_line(&mut reader, &mut line).await {
            Ok(Line::Eof) | Err(_) => return,
            Ok(Line::Truncated) => {
                Outcome::close(error_reply(&protocol_error("request cut short")))
            }
            Ok(Line::Text) if line == b"set=1" => serve_set(&mut reader, &mut line, device).await,
            Ok(Line::Text) if line == b"get=1" => serve_get(&mut reader, &mut line, device).await,
            // Where an unknown request ends cannot be known: answer, then close.
            Ok(Line::Text | Line::TooLong) => {
                let error =
                    UapiError::new(EINVAL, "invalid UAPI operation; expected get=1 or set=1");
                tracing::warn!(tunnel = %device.name(), %error, "UAPI request refused");
                Outcome::close(error_reply(&error))
            }
        };
        if write.write_all(reply.text.as_bytes()).await.is_err()
            || write.flush().await.is_err()
            || reply.close
        {
            return;
        }
    }
}

/// A reply and whether the connection ends after it.
struct Outcome {
    text: String,
    close: bool,
}

impl Outcome {
    fn reply(text: String) -> Outcome {
        Outcome { text, close: false }
    }

    fn close(text: String) -> Outcome {
        Outcome { text, close: true }
    }
}

async fn serve_set<R, Tx, Rx>(
    reader: &mut BufReader<R>,
    line: &mut Vec<u8>,
    device: &WgDevice<Tx, Rx>,
) -> Outcome
where
    R: AsyncRead + Unpin,
    Tx: IpSend,
    Rx: IpRecv,
{
    let mut parser = SetParser::default();
    let mut commands: Vec<Command> = Vec::new();
    let mut parse_error: Option<UapiError> = None;
    loop {
        match read_line(reader, line).await {
            Ok(Line::Text) if line.is_empty() => break,
            Ok(Line::Text) => {
                if parse_error.is_none() && commands.len() == MAX_SET_LINES {
                    parse_error = Some(UapiError::new(
                        EINVAL,
                        format!("more than {MAX_SET_LINES} lines in one set request"),
                    ));
                }
                if parse_error.is_none() {
                    match parser.parse_line(line) {
                        Ok(command) => commands.push(command),
                        Err(error) => parse_error = Some(error),
                    }
                }
            }
            Ok(Line::TooLong) => {
                parse_error.get_or_insert_with(|| {
                    UapiError::new(EINVAL, format!("line longer than {MAX_LINE} bytes"))
                });
            }
            // Nothing of a request cut short is applied.
            Ok(Line::Eof | Line::Truncated) => {
                return Outcome::close(error_reply(&protocol_error("set request cut short")));
            }
            Err(e) => {
                return Outcome::close(error_reply(&UapiError::new(
                    crate::wg::uapi::EIO,
                    e.to_string(),
                )));
            }
        }
    }
    // Lines before the first bad one are applied, as in wireguard-go.
    let result = device
        .set(&commands)
        .await
        .and(parse_error.map_or(Ok(()), Err));
    match result {
        Ok(()) => Outcome::reply("errno=0\n\n".to_owned()),
        Err(error) => {
            tracing::warn!(tunnel = %device.name(), %error, "UAPI set refused");
            Outcome::reply(error_reply(&error))
        }
    }
}

async fn serve_get<R, Tx, Rx>(
    reader: &mut BufReader<R>,
    line: &mut Vec<u8>,
    device: &WgDevice<Tx, Rx>,
) -> Outcome
where
    R: AsyncRead + Unpin,
    Tx: IpSend,
    Rx: IpRecv,
{
    match read_line(reader, line).await {
        Ok(Line::Text) if line.is_empty() => {
            let mut text = device.uapi_get().await;
            text.push_str("errno=0\n\n");
            Outcome::reply(text)
        }
        Ok(Line::Text | Line::TooLong) => {
            let error = UapiError::new(EINVAL, "trailing characters after get=1");
            tracing::warn!(tunnel = %device.name(), %error, "UAPI get refused");
            Outcome::close(error_reply(&error))
        }
        Ok(Line::Eof | Line::Truncated) | Err(_) => {
            Outcome::close(error_reply(&protocol_error("get request cut short")))
        }
    }
}

fn protocol_error(message: &str) -> UapiError {
    UapiError::new(EPROTO, message)
}

/// `errno=-N`: negative, which is what `wg` expects for errors (wireguard-go does the same).
fn error_reply(error: &UapiError) -> String {
    format!("errno=-{}\n\n", error.errno)
}

/// Reads one line into `line` (without the newline), keeping at most [`MAX_LINE`] bytes.
async fn read_line<R: AsyncRead + Unpin>(
    reader: &mut BufReader<R>,
    line: &mut Vec<u8>,
) -> std::io::Result<Line> {
    line.clear();
    let mut too_long = false;
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            return Ok(if line.is_empty() && !too_long {
                Line::Eof
            } else {
                Line::Truncated
            });
        }
        let (chunk, found_newline) = match available.iter().position(|&b| b == b'\n') {
            Some(end) => (&available[..end], true),
            None => (available, false),
        };
        if !too_long {
            if line.len() + chunk.len() > MAX_LINE {
                too_long = true;
                line.clear();
            } else {
                line.extend_from_slice(chunk);
            }
        }
        let consumed = chunk.len() + usize::from(found_newline);
        reader.consume(consumed);
        if found_newline {
            return Ok(if too_long { Line::TooLong } else { Line::Text });
        }
    }
}
