//! `ip_neighbor`: neighbour entries (claimed IP → selfMAC on the BVI): added, and dumped to find those
//! that carry our MAC.

use serde::Serialize;

use crate::vpp::codec::{
    DecodeError, Decoder, Dump, EncodeError, Encoder, HeaderKind, Message, Reply, Request,
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

/// `ip_neighbor_dump`: the neighbours of one interface (~0: all) in one address family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct IpNeighborDump {
    pub sw_if_index: u32,
    /// `address_family`: false for IPv4, true for IPv6.
    pub ipv6: bool,
}

impl Message for IpNeighborDump {
    const NAME_CRC: &'static str = "ip_neighbor_dump_d817a484";
    const HEADER: HeaderKind = HeaderKind::ClientAndContext;
    fn encode_fields(&self, e: &mut Encoder<'_>) -> Result<(), EncodeError> {
        e.u32(self.sw_if_index);
        e.u8(u8::from(self.ipv6));
        Ok(())
    }
    fn decode_fields(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            sw_if_index: d.u32("sw_if_index")?,
            ipv6: d.bool("af")?,
        })
    }
}

impl Dump for IpNeighborDump {
    type Details = IpNeighborDetails;
}

/// `ip_neighbor_details`: one neighbour entry, learned or added.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct IpNeighborDetails {
    /// Seconds since the entry was last updated.
    pub age: f64,
    pub neighbor: IpNeighbor,
}

impl Message for IpNeighborDetails {
    const NAME_CRC: &'static str = "ip_neighbor_details_e29d79f0";
    const HEADER: HeaderKind = HeaderKind::Context;
    fn encode_fields(&self, e: &mut Encoder<'_>) -> Result<(), EncodeError> {
        e.bytes(&self.age.to_bits().to_be_bytes());
        self.neighbor.encode(e);
        Ok(())
    }
    fn decode_fields(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            age: f64::from_bits(u64::from_be_bytes(d.array("age")?)),
            neighbor: IpNeighbor::decode(d)?,
        })
    }
}
