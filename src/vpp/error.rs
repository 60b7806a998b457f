//! The errors of the VPP room: transport and handshake failures, message-table (CRC) mismatches, VPP's
//! negative `retval`s with their names, codec errors and vppctl failures. Each names the socket, message,
//! field or command involved.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use super::codec::{DecodeError, EncodeError};
use super::vppctl::VppctlError;

/// Anything that went wrong talking to VPP.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VppError {
    /// The API socket could not be connected (after retrying until the deadline).
    #[error(
        "cannot connect to the VPP API socket {path}: {source} (is VPP running with `socksvr`, and may we open the socket?)"
    )]
    Connect {
        path: PathBuf,
        attempts: u32,
        #[source]
        source: std::io::Error,
    },
    /// Reading or writing the socket failed.
    #[error("VPP API socket error while {doing}: {source}")]
    Io {
        doing: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// VPP closed the connection (for example, it restarted). Reconnect and set up again.
    #[error("the VPP API connection is closed (did VPP restart?)")]
    Disconnected,
    /// No answer within the call timeout.
    #[error("VPP did not answer {message} within {after:?}")]
    Timeout {
        message: &'static str,
        after: Duration,
    },
    /// `sockclnt_create_reply` refused the registration.
    #[error("VPP refused the API client registration (sockclnt_create response {response})")]
    Handshake { response: i32 },
    /// Messages we need are missing from VPP's table or have other CRCs: this VPP is incompatible.
    #[error("this VPP does not support the API messages wireguard-vpp needs (checked against VPP v24.10 to v26.06): {}", list(.0))]
    Incompatible(Vec<MessageMismatch>),
    /// A message is not in the table negotiated at connect (a bug: every used message is checked there).
    #[error("message {name_crc} is not in VPP's message table")]
    UnknownMessage { name_crc: &'static str },
    /// VPP answered with a negative `retval`.
    #[error("VPP refused {message}: {error}")]
    Api {
        message: &'static str,
        error: ApiError,
    },
    /// A reply had another message id than the expected reply.
    #[error("expected {expected} in answer to {request}, got message id {got_id}")]
    UnexpectedReply {
        request: &'static str,
        expected: &'static str,
        got_id: u16,
    },
    /// A dump answered with more than we hold.
    #[error("VPP answered {request} with more than {limit} (a VPP this large is not supported)")]
    DumpTooLarge {
        request: &'static str,
        limit: &'static str,
    },
    /// A frame announced a body larger than we accept.
    #[error("VPP sent a message of {len} bytes, more than the {max} bytes accepted")]
    FrameTooLarge { len: usize, max: usize },
    /// A message could not be encoded.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// A message from VPP could not be decoded.
    #[error("cannot decode a message from VPP: {0}")]
    Decode(#[from] DecodeError),
    /// The vppctl install method failed.
    #[error(transparent)]
    Vppctl(#[from] VppctlError),
}

impl VppError {
    /// The VPP API error, if VPP answered with a negative `retval`.
    pub fn api_error(&self) -> Option<ApiError> {
        match self {
            Self::Api { error, .. } => Some(*error),
            _ => None,
        }
    }

    /// True when the connection to VPP was lost (VPP exited or restarted): reconnect and set up again.
    pub fn is_connection_lost(&self) -> bool {
        matches!(self, Self::Disconnected | Self::Io { .. })
    }

    /// A short, bounded label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Connect { .. } => "connect",
            Self::Io { .. } => "io",
            Self::Disconnected => "disconnected",
            Self::Timeout { .. } => "timeout",
            Self::Handshake { .. } => "handshake",
            Self::Incompatible(_) => "incompatible",
            Self::UnknownMessage { .. } => "unknown_message",
            Self::Api { .. } => "api",
            Self::UnexpectedReply { .. } => "unexpected_reply",
            Self::FrameTooLarge { .. } => "frame_too_large",
            Self::DumpTooLarge { .. } => "dump_too_large",
            Self::Encode(_) => "encode",
            Self::Decode(_) => "decode",
            Self::Vppctl(_) => "vppctl",
        }
    }
}

fn list(mismatches: &[MessageMismatch]) -> String {
    mismatches
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// One message whose `name_crc` is not in VPP's table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageMismatch {
    /// The message name.
    pub name: String,
    /// The CRC this build encodes.
    pub expected_crc: String,
    /// The CRC VPP has for that name, if it has the name at all.
    pub vpp_crc: Option<String>,
}

impl fmt::Display for MessageMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.vpp_crc {
            Some(vpp) => write!(
                f,
                "{} has CRC {} in VPP but {} here (its layout changed)",
                self.name, vpp, self.expected_crc
            ),
            None => write!(
                f,
                "{} (CRC {}) is not known to VPP (is its plugin loaded?)",
                self.name, self.expected_crc
            ),
        }
    }
}

/// A negative `retval` from VPP, with its name from VPP's `vnet/error.h` when known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiError {
    /// The raw value.
    pub retval: i32,
}

impl ApiError {
    /// -2: no interface with that sw_if_index.
    pub const INVALID_SW_IF_INDEX: Self = Self { retval: -2 };
    /// -6: the entry to delete does not exist.
    pub const NO_SUCH_ENTRY: Self = Self { retval: -6 };
    /// -68: the memif id already exists on that socket (or the socket is used by the other role).
    pub const SUBIF_ALREADY_EXISTS: Self = Self { retval: -68 };
    /// -73: e.g. memif socket id 0, an unknown socket id, a ring size not a power of two.
    pub const INVALID_ARGUMENT: Self = Self { retval: -73 };
    /// -74: deleting a memif socket id that an interface still uses.
    pub const UNEXPECTED_INTF_STATE: Self = Self { retval: -74 };
    /// -105: the address overlaps one already configured.
    pub const ADDRESS_IN_USE: Self = Self { retval: -105 };
    /// -116: the memif socket id is registered with another filename.
    pub const ENTRY_ALREADY_EXISTS: Self = Self { retval: -116 };

    /// VPP's name for the value, e.g. `ADDRESS_IN_USE` for -105.
    pub fn name(self) -> Option<&'static str> {
        Some(match self.retval {
            -1 => "UNSPECIFIED",
            -2 => "INVALID_SW_IF_INDEX",
            -3 => "NO_SUCH_FIB",
            -4 => "NO_SUCH_INNER_FIB",
            -5 => "NO_SUCH_LABEL",
            -6 => "NO_SUCH_ENTRY",
            -7 => "INVALID_VALUE",
            -8 => "INVALID_VALUE_2",
            -9 => "UNIMPLEMENTED",
            -52 => "NO_PATHS_IN_ROUTE",
            -68 => "SUBIF_ALREADY_EXISTS",
            -71 => "INVALID_INTERFACE",
            -73 => "INVALID_ARGUMENT",
            -74 => "UNEXPECTED_INTF_STATE",
            -81 => "VALUE_EXIST",
            -105 => "ADDRESS_IN_USE",
            -106 => "ADDRESS_NOT_IN_USE",
            -116 => "ENTRY_ALREADY_EXISTS",
            -122 => "BD_ID_EXCEED_MAX",
            -126 => "UNSUPPORTED",
            -152 => "BD_ALREADY_HAS_BVI",
            -171 => "INVALID_PREFIX_LENGTH",
            _ => return None,
        })
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{name} ({})", self.retval),
            None => write!(f, "error {}", self.retval),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_errors_carry_vpp_names() {
        let err = VppError::Api {
            message: "sw_interface_add_del_address",
            error: ApiError { retval: -105 },
        };
        assert_eq!(
            err.to_string(),
            "VPP refused sw_interface_add_del_address: ADDRESS_IN_USE (-105)"
        );
        assert_eq!(ApiError { retval: -999 }.to_string(), "error -999");
    }

    #[test]
    fn mismatch_names_message_and_both_crcs() {
        let err = VppError::Incompatible(vec![MessageMismatch {
            name: "memif_create_v2".into(),
            expected_crc: "8c7de5f7".into(),
            vpp_crc: Some("deadbeef".into()),
        }]);
        let text = err.to_string();
        assert!(
            text.contains("memif_create_v2 has CRC deadbeef in VPP but 8c7de5f7 here"),
            "{text}"
        );
    }
}
