//! `memclnt`: the socket handshake (`sockclnt_create`, ids 15/16 fixed), disconnect, and `control_ping`,
//! which ends every dump.

use serde::Serialize;

use super::empty_request;
use crate::vpp::codec::{
    DecodeError, Decoder, EncodeError, Encoder, HeaderKind, Message, Reply, Request,
};

/// The fixed message id of `sockclnt_create` (memclnt is registered first, and vpp-papi hard-codes it too).
pub const SOCKCLNT_CREATE_ID: u16 = 15;
/// The fixed message id of `sockclnt_create_reply`.
pub const SOCKCLNT_CREATE_REPLY_ID: u16 = 16;

/// `sockclnt_create`: register a socket client; the first message on a connection.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct SockclntCreate {
    /// Free text naming the client (at most 63 bytes).
    pub name: String,
}

impl Message for SockclntCreate {
    const NAME_CRC: &'static str = "sockclnt_create_455fb9c4";
    const HEADER: HeaderKind = HeaderKind::Context;
    fn encode_fields(&self, e: &mut Encoder<'_>) -> Result<(), EncodeError> {
        e.fixed_string("name", &self.name, 64)
    }
    fn decode_fields(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            name: d.fixed_string("name", 64)?,
        })
    }
}

impl Request for SockclntCreate {
    type Reply = SockclntCreateReply;
}

/// One entry of VPP's message table: an id and `"<name>_<crc>"`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct MessageTableEntry {
    pub index: u16,
    pub name: String,
}

/// `sockclnt_create_reply`: the client index and the whole message table.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SockclntCreateReply {
    /// 0 = success.
    pub response: i32,
    /// The client index to put in every later request.
    pub index: u32,
    /// Every message VPP knows, with its id.
    pub message_table: Vec<MessageTableEntry>,
}

impl SockclntCreateReply {
    const ENTRY_SIZE: usize = 66;
}

impl Message for SockclntCreateReply {
    const NAME_CRC: &'static str = "sockclnt_create_reply_35166268";
    const HEADER: HeaderKind = HeaderKind::ClientAndContext;
    fn encode_fields(&self, e: &mut Encoder<'_>) -> Result<(), EncodeError> {
        let count = e.count("message_table", self.message_table.len(), u16::MAX.into())?;
        e.i32(self.response);
        e.u32(self.index);
        e.u16(count as u16);
        for entry in &self.message_table {
            e.u16(entry.index);
            e.fixed_string("message_table.name", &entry.name, 64)?;
        }
        Ok(())
    }
    fn decode_fields(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        let response = d.i32("response")?;
        let index = d.u32("index")?;
        let count = d.u16("count")?.into();
        let count = d.check_count("message_table", count, Self::ENTRY_SIZE)?;
        let mut message_table = Vec::with_capacity(count);
        for _ in 0..count {
            let index = d.u16("message_table.index")?;
            let name = d.fixed_string("message_table.name", 64)?;
            message_table.push(MessageTableEntry { index, name });
        }
        Ok(Self {
            response,
            index,
            message_table,
        })
    }
}

impl Reply for SockclntCreateReply {
    fn retval(&self) -> i32 {
        self.response
    }
}

impl Serialize for SockclntCreateReply {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("sockclnt_create_reply", 4)?;
        st.serialize_field("response", &self.response)?;
        st.serialize_field("index", &self.index)?;
        st.serialize_field("count", &self.message_table.len())?;
        st.serialize_field("message_table", &self.message_table)?;
        st.end()
    }
}

/// `sockclnt_delete`: unregister before closing the socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct SockclntDelete {
    /// The client index being deleted (our own).
    pub index: u32,
}

impl Message for SockclntDelete {
    const NAME_CRC: &'static str = "sockclnt_delete_8ac76db6";
    const HEADER: HeaderKind = HeaderKind::ClientAndContext;
    fn encode_fields(&self, e: &mut Encoder<'_>) -> Result<(), EncodeError> {
        e.u32(self.index);
        Ok(())
    }
    fn decode_fields(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            index: d.u32("index")?,
        })
    }
}

impl Request for SockclntDelete {
    type Reply = SockclntDeleteReply;
}

/// `sockclnt_delete_reply`: `response` is **1** on success (as VPP codes it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct SockclntDeleteReply {
    pub response: i32,
}

impl Message for SockclntDeleteReply {
    const NAME_CRC: &'static str = "sockclnt_delete_reply_8f38b1ee";
    const HEADER: HeaderKind = HeaderKind::Context;
    fn encode_fields(&self, e: &mut Encoder<'_>) -> Result<(), EncodeError> {
        e.i32(self.response);
        Ok(())
    }
    fn decode_fields(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            response: d.i32("response")?,
        })
    }
}

impl Reply for SockclntDeleteReply {
    /// Maps VPP's success value 1 to 0, so that the usual rule (negative = error) applies.
    fn retval(&self) -> i32 {
        if self.response == 1 { 0 } else { self.response }
    }
}

empty_request!(
    /// `control_ping`: ends a dump (same context) or checks liveness.
    ControlPing,
    "control_ping_51077d14"
);

impl Request for ControlPing {
    type Reply = ControlPingReply;
}

/// `control_ping_reply`: marks the end of a dump.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct ControlPingReply {
    pub retval: i32,
    pub client_index: u32,
    pub vpe_pid: u32,
}

impl Message for ControlPingReply {
    const NAME_CRC: &'static str = "control_ping_reply_f6b0b8ca";
    const HEADER: HeaderKind = HeaderKind::Context;
    fn encode_fields(&self, e: &mut Encoder<'_>) -> Result<(), EncodeError> {
        e.i32(self.retval);
        e.u32(self.client_index);
        e.u32(self.vpe_pid);
        Ok(())
    }
    fn decode_fields(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            retval: d.i32("retval")?,
            client_index: d.u32("client_index")?,
            vpe_pid: d.u32("vpe_pid")?,
        })
    }
}

impl Reply for ControlPingReply {
    fn retval(&self) -> i32 {
        self.retval
    }
}
