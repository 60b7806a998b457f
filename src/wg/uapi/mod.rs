//! The cross-platform UAPI configuration protocol that `wg(8)` speaks, served by us rather than by
//! gotatun (whose server resets sessions on every `set` and answers errors with the wrong sign).
//!
//! - `command`: one `set=1` line into a [`Command`], with wireguard-go's errno for each bad line.
//! - `connection`: the request/reply loop on one connection (several requests each).
//! - `server`: the socket file: modes, stale and live sockets, deletion.

mod command;
mod connection;
mod server;

pub use command::{Command, EADDRINUSE, EINVAL, EIO, EPROTO, SetParser, UapiError};
pub use connection::{MAX_LINE, MAX_SET_LINES, serve_connection};
pub use server::{DEFAULT_SOCKET_DIR, MAX_NAME_LEN, ServeEnd, ServerError, UapiListener};
