//! `ip_neighbor`: static neighbour entries (claimed IP → selfMAC on the BVI).

use serde::Serialize;

use crate::vpp::codec::{
    DecodeError, Decoder, EncodeError, Encoder, HeaderKind, Message, Reply, Request,
};
use crate::vpp::types::IpNeighbor;

/// `ip_neighbor_add_del`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct IpNeighborAddDel {
    pub is_add: bool,
    pub neighbor: IpNeighbor,
}

impl Message for IpNeighborAddDel {
    const NAME_CRC: &'static str = "ip_neighbor_add_del_0607c257";
    const HEADER: HeaderKind = HeaderKind::ClientAndContext;
    fn encode_fields(&self, e: &mut Encoder<'_>) -> Result<(), EncodeError> {
        e.bool(self.is_add);
        self.neighbor.encode(e);
        Ok(())
    }
    fn decode_fields(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            is_add: d.bool("is_add")?,
            neighbor: IpNeighbor::decode(d)?,
        })
    }
}

impl Request for IpNeighborAddDel {
    type Reply = IpNeighborAddDelReply;
}

/// `ip_neighbor_add_del_reply`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct IpNeighborAddDelReply {
    pub retval: i32,
    pub stats_index: u32,
}

impl Message for IpNeighborAddDelReply {
    const NAME_CRC: &'static str = "ip_neighbor_add_del_reply_1992deab";
    const HEADER: HeaderKind = HeaderKind::Context;
    fn encode_fields(&self, e: &mut Encoder<'_>) -> Result<(), EncodeError> {
        e.i32(self.retval);
        e.u32(self.stats_index);
        Ok(())
    }
    fn decode_fields(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            retval: d.i32("retval")?,
            stats_index: d.u32("stats_index")?,
        })
    }
}

impl Reply for IpNeighborAddDelReply {
    fn retval(&self) -> i32 {
        self.retval
    }
}
