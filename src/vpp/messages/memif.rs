//! `memif` plugin (API 3.1.0): the socket-id registry, creating and deleting VPP's memif interface (the v2
//! messages; the v1 ones are deprecated), and the dumps used to find leftovers of a crashed run.

use serde::Serialize;

use super::{empty_request, retval_reply};
use crate::vpp::codec::{
    DecodeError, Decoder, Dump, EncodeError, Encoder, HeaderKind, Message, Reply, Request,
};
use crate::vpp::types::{IfStatusFlags, MacAddr, MacCodec, MemifMode, MemifRole};

/// `memif_socket_filename_add_del_v2`: register (or remove) a socket file under a socket id.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct MemifSocketFilenameAddDelV2 {
    pub is_add: bool,
    /// Never 0 (VPP's default socket); ~0 with `is_add` lets VPP choose.
    pub socket_id: u32,
    /// Not needed when deleting.
    pub socket_filename: String,
}

impl Message for MemifSocketFilenameAddDelV2 {
    const NAME_CRC: &'static str = "memif_socket_filename_add_del_v2_34223bdf";
    const HEADER: HeaderKind = HeaderKind::ClientAndContext;
    fn encode_fields(&self, e: &mut Encoder<'_>) -> Result<(), EncodeError> {
        e.bool(self.is_add);
        e.u32(self.socket_id);
        e.var_string("socket_filename", &self.socket_filename)
    }
    fn decode_fields(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            is_add: d.bool("is_add")?,
            socket_id: d.u32("socket_id")?,
            socket_filename: d.var_string("socket_filename")?,
        })
    }
}

impl Request for MemifSocketFilenameAddDelV2 {
    type Reply = MemifSocketFilenameAddDelV2Reply;
}

/// `memif_socket_filename_add_del_v2_reply`: the socket id registered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct MemifSocketFilenameAddDelV2Reply {
    pub retval: i32,
    pub socket_id: u32,
}

impl Message for MemifSocketFilenameAddDelV2Reply {
    const NAME_CRC: &'static str = "memif_socket_filename_add_del_v2_reply_9f29bdb9";
    const HEADER: HeaderKind = HeaderKind::Context;
    fn encode_fields(&self, e: &mut Encoder<'_>) -> Result<(), EncodeError> {
        e.i32(self.retval);
        e.u32(self.socket_id);
        Ok(())
    }
    fn decode_fields(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            retval: d.i32("retval")?,
            socket_id: d.u32("socket_id")?,
        })
    }
}

impl Reply for MemifSocketFilenameAddDelV2Reply {
    fn retval(&self) -> i32 {
        self.retval
    }
}

/// `memif_create_v2`: create VPP's memif interface, named `memif<socket_id>/<id>`; it starts admin-down.
/// Its `Debug` output hides the secret.
#[derive(Clone, PartialEq, Eq, Serialize)]
pub struct MemifCreateV2 {
    pub role: MemifRole,
    pub mode: MemifMode,
    pub rx_queues: u8,
    pub tx_queues: u8,
    pub id: u32,
    pub socket_id: u32,
    /// A power of two; 0 means 1024.
    pub ring_size: u32,
    /// 0 means 2048.
    pub buffer_size: u16,
    pub no_zero_copy: bool,
    pub use_dma: bool,
    /// All zero means a random MAC.
    pub hw_addr: MacAddr,
    /// At most 23 bytes.
    pub secret: String,
}

impl std::fmt::Debug for MemifCreateV2 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemifCreateV2")
            .field("role", &self.role)
            .field("mode", &self.mode)
            .field("rx_queues", &self.rx_queues)
            .field("tx_queues", &self.tx_queues)
            .field("id", &self.id)
            .field("socket_id", &self.socket_id)
            .field("ring_size", &self.ring_size)
            .field("buffer_size", &self.buffer_size)
            .field("no_zero_copy", &self.no_zero_copy)
            .field("use_dma", &self.use_dma)
            .field("hw_addr", &self.hw_addr)
            .field("secret", &crate::vpp::setup::redacted(&self.secret))
            .finish()
    }
}

impl Message for MemifCreateV2 {
    const NAME_CRC: &'static str = "memif_create_v2_8c7de5f7";
    const HEADER: HeaderKind = HeaderKind::ClientAndContext;
    fn encode_fields(&self, e: &mut Encoder<'_>) -> Result<(), EncodeError> {
        e.u32(self.role.into());
        e.u32(self.mode.into());
        e.u8(self.rx_queues);
        e.u8(self.tx_queues);
        e.u32(self.id);
        e.u32(self.socket_id);
        e.u32(self.ring_size);
        e.u16(self.buffer_size);
        e.bool(self.no_zero_copy);
        e.bool(self.use_dma);
        self.hw_addr.encode(e);
        e.fixed_string("secret", &self.secret, 24)
    }
    fn decode_fields(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            role: d.u32("role")?.into(),
            mode: d.u32("mode")?.into(),
            rx_queues: d.u8("rx_queues")?,
            tx_queues: d.u8("tx_queues")?,
            id: d.u32("id")?,
            socket_id: d.u32("socket_id")?,
            ring_size: d.u32("ring_size")?,
            buffer_size: d.u16("buffer_size")?,
            no_zero_copy: d.bool("no_zero_copy")?,
            use_dma: d.bool("use_dma")?,
            hw_addr: MacAddr::decode(d, "hw_addr")?,
            secret: d.fixed_string("secret", 24)?,
        })
    }
}

impl Request for MemifCreateV2 {
    type Reply = MemifCreateV2Reply;
}

/// `memif_create_v2_reply`: the new interface's index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct MemifCreateV2Reply {
    pub retval: i32,
    pub sw_if_index: u32,
}

impl Message for MemifCreateV2Reply {
    const NAME_CRC: &'static str = "memif_create_v2_reply_5383d31f";
    const HEADER: HeaderKind = HeaderKind::Context;
    fn encode_fields(&self, e: &mut Encoder<'_>) -> Result<(), EncodeError> {
        e.i32(self.retval);
        e.u32(self.sw_if_index);
        Ok(())
    }
    fn decode_fields(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            retval: d.i32("retval")?,
            sw_if_index: d.u32("sw_if_index")?,
        })
    }
}

impl Reply for MemifCreateV2Reply {
    fn retval(&self) -> i32 {
        self.retval
    }
}

/// `memif_delete`: remove a memif interface (this also takes it out of its bridge domain).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct MemifDelete {
    pub sw_if_index: u32,
}

impl Message for MemifDelete {
    const NAME_CRC: &'static str = "memif_delete_f9e6675e";
    const HEADER: HeaderKind = HeaderKind::ClientAndContext;
    fn encode_fields(&self, e: &mut Encoder<'_>) -> Result<(), EncodeError> {
        e.u32(self.sw_if_index);
        Ok(())
    }
    fn decode_fields(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            sw_if_index: d.u32("sw_if_index")?,
        })
    }
}

impl Request for MemifDelete {
    type Reply = MemifDeleteReply;
}

retval_reply!(
    /// `memif_delete_reply`.
    MemifDeleteReply,
    "memif_delete_reply_e8d4e804"
);

empty_request!(
    /// `memif_dump`: every memif interface.
    MemifDump,
    "memif_dump_51077d14"
);

impl Dump for MemifDump {
    type Details = MemifDetails;
}

/// `memif_details`: one memif interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MemifDetails {
    pub sw_if_index: u32,
    pub hw_addr: MacAddr,
    pub id: u32,
    pub role: MemifRole,
    pub mode: MemifMode,
    pub zero_copy: bool,
    pub socket_id: u32,
    pub ring_size: u32,
    pub buffer_size: u16,
    pub flags: IfStatusFlags,
    pub if_name: String,
}

impl Message for MemifDetails {
    const NAME_CRC: &'static str = "memif_details_da34feb9";
    const HEADER: HeaderKind = HeaderKind::Context;
    fn encode_fields(&self, e: &mut Encoder<'_>) -> Result<(), EncodeError> {
        e.u32(self.sw_if_index);
        self.hw_addr.encode(e);
        e.u32(self.id);
        e.u32(self.role.into());
        e.u32(self.mode.into());
        e.bool(self.zero_copy);
        e.u32(self.socket_id);
        e.u32(self.ring_size);
        e.u16(self.buffer_size);
        e.u32(self.flags.0);
        e.fixed_string("if_name", &self.if_name, 64)
    }
    fn decode_fields(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            sw_if_index: d.u32("sw_if_index")?,
            hw_addr: MacAddr::decode(d, "hw_addr")?,
            id: d.u32("id")?,
            role: d.u32("role")?.into(),
            mode: d.u32("mode")?.into(),
            zero_copy: d.bool("zero_copy")?,
            socket_id: d.u32("socket_id")?,
            ring_size: d.u32("ring_size")?,
            buffer_size: d.u16("buffer_size")?,
            flags: IfStatusFlags(d.u32("flags")?),
            if_name: d.fixed_string("if_name", 64)?,
        })
    }
}

empty_request!(
    /// `memif_socket_filename_dump`: every registered socket id, including 0 (VPP's default socket).
    MemifSocketFilenameDump,
    "memif_socket_filename_dump_51077d14"
);

impl Dump for MemifSocketFilenameDump {
    type Details = MemifSocketFilenameDetails;
}

/// `memif_socket_filename_details`: one registered socket id.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct MemifSocketFilenameDetails {
    pub socket_id: u32,
    pub socket_filename: String,
}

impl Message for MemifSocketFilenameDetails {
    const NAME_CRC: &'static str = "memif_socket_filename_details_7ff326f7";
    const HEADER: HeaderKind = HeaderKind::Context;
    fn encode_fields(&self, e: &mut Encoder<'_>) -> Result<(), EncodeError> {
        e.u32(self.socket_id);
        e.fixed_string("socket_filename", &self.socket_filename, 108)
    }
    fn decode_fields(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            socket_id: d.u32("socket_id")?,
            socket_filename: d.fixed_string("socket_filename", 108)?,
        })
    }
}
