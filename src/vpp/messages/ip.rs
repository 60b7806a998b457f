//! `ip`: adding and removing routes (`ip_route_add_del`).

use serde::Serialize;

use crate::vpp::codec::{
    DecodeError, Decoder, EncodeError, Encoder, HeaderKind, Message, Reply, Request,
};
use crate::vpp::types::IpRoute;

/// `ip_route_add_del`. With `is_multipath`, the given paths are added to or removed from the route; without
/// it, `is_add` replaces every path and a delete removes the whole route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IpRouteAddDel {
    pub is_add: bool,
    pub is_multipath: bool,
    pub route: IpRoute,
}

impl Message for IpRouteAddDel {
    const NAME_CRC: &'static str = "ip_route_add_del_b8ecfe0d";
    const HEADER: HeaderKind = HeaderKind::ClientAndContext;
    fn encode_fields(&self, e: &mut Encoder<'_>) -> Result<(), EncodeError> {
        e.bool(self.is_add);
        e.bool(self.is_multipath);
        self.route.encode(e)
    }
    fn decode_fields(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            is_add: d.bool("is_add")?,
            is_multipath: d.bool("is_multipath")?,
            route: IpRoute::decode(d)?,
        })
    }
}

impl Request for IpRouteAddDel {
    type Reply = IpRouteAddDelReply;
}

/// `ip_route_add_del_reply`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct IpRouteAddDelReply {
    pub retval: i32,
    pub stats_index: u32,
}

impl Message for IpRouteAddDelReply {
    const NAME_CRC: &'static str = "ip_route_add_del_reply_1992deab";
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

impl Reply for IpRouteAddDelReply {
    fn retval(&self) -> i32 {
        self.retval
    }
}
