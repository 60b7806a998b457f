//! The typed VPP API messages wireguard-vpp uses, one file per API family, written by hand from VPP
//! v26.06's JSON definitions (`vpp-api/`). Each carries its `name_crc`; [`USED`] lists every one of them so
//! that the client can check them all against VPP's message table when it connects.
//!
//! Checked against VPP v26.06; the CRCs of these messages are the same since v24.10.

pub mod interface;
pub mod ip;
pub mod ip_neighbor;
pub mod l2;
pub mod memclnt;
pub mod memif;
pub mod vpe;

pub use interface::*;
pub use ip::*;
pub use ip_neighbor::*;
pub use l2::*;
pub use memclnt::*;
pub use memif::*;
pub use vpe::*;

use super::codec::Message;

/// Declares a reply whose only field is `i32 retval`.
macro_rules! retval_reply {
    ($(#[$meta:meta])* $name:ident, $name_crc:literal) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
        pub struct $name {
            /// VPP's return value (0 = success).
            pub retval: i32,
        }
        impl $crate::vpp::codec::Message for $name {
            const NAME_CRC: &'static str = $name_crc;
            const HEADER: $crate::vpp::codec::HeaderKind = $crate::vpp::codec::HeaderKind::Context;
            fn encode_fields(
                &self,
                e: &mut $crate::vpp::codec::Encoder<'_>,
            ) -> Result<(), $crate::vpp::codec::EncodeError> {
                e.i32(self.retval);
                Ok(())
            }
            fn decode_fields(
                d: &mut $crate::vpp::codec::Decoder<'_>,
            ) -> Result<Self, $crate::vpp::codec::DecodeError> {
                Ok(Self { retval: d.i32("retval")? })
            }
        }
        impl $crate::vpp::codec::Reply for $name {
            fn retval(&self) -> i32 {
                self.retval
            }
        }
    };
}

/// Declares a request with no fields of its own (only `client_index` and `context`).
macro_rules! empty_request {
    ($(#[$meta:meta])* $name:ident, $name_crc:literal) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
        pub struct $name;
        impl $crate::vpp::codec::Message for $name {
            const NAME_CRC: &'static str = $name_crc;
            const HEADER: $crate::vpp::codec::HeaderKind = $crate::vpp::codec::HeaderKind::ClientAndContext;
            fn encode_fields(
                &self,
                _: &mut $crate::vpp::codec::Encoder<'_>,
            ) -> Result<(), $crate::vpp::codec::EncodeError> {
                Ok(())
            }
            fn decode_fields(
                _: &mut $crate::vpp::codec::Decoder<'_>,
            ) -> Result<Self, $crate::vpp::codec::DecodeError> {
                Ok(Self)
            }
        }
    };
}

pub(crate) use empty_request;
pub(crate) use retval_reply;

/// Every `name_crc` the client uses after the handshake; all are checked against VPP's table at connect.
pub const USED: &[&str] = &[
    SockclntDelete::NAME_CRC,
    SockclntDeleteReply::NAME_CRC,
    ControlPing::NAME_CRC,
    ControlPingReply::NAME_CRC,
    ShowVersion::NAME_CRC,
    ShowVersionReply::NAME_CRC,
    SwInterfaceDump::NAME_CRC,
    SwInterfaceDetails::NAME_CRC,
    SwInterfaceSetFlags::NAME_CRC,
    SwInterfaceSetFlagsReply::NAME_CRC,
    WantInterfaceEvents::NAME_CRC,
    WantInterfaceEventsReply::NAME_CRC,
    SwInterfaceEvent::NAME_CRC,
    MemifSocketFilenameAddDelV2::NAME_CRC,
    MemifSocketFilenameAddDelV2Reply::NAME_CRC,
    MemifCreateV2::NAME_CRC,
    MemifCreateV2Reply::NAME_CRC,
    MemifDelete::NAME_CRC,
    MemifDeleteReply::NAME_CRC,
    MemifDump::NAME_CRC,
    MemifDetails::NAME_CRC,
    MemifSocketFilenameDump::NAME_CRC,
    MemifSocketFilenameDetails::NAME_CRC,
    SwInterfaceSetL2Bridge::NAME_CRC,
    SwInterfaceSetL2BridgeReply::NAME_CRC,
    L2fibAddDel::NAME_CRC,
    L2fibAddDelReply::NAME_CRC,
    IpRouteAddDel::NAME_CRC,
    IpRouteAddDelReply::NAME_CRC,
    IpNeighborAddDel::NAME_CRC,
    IpNeighborAddDelReply::NAME_CRC,
    IpNeighborDump::NAME_CRC,
    IpNeighborDetails::NAME_CRC,
];

#[cfg(test)]
mod golden;
