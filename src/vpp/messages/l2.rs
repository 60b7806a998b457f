//! `l2`: putting an interface into a bridge domain (VPP creates the domain if needed) and static l2fib
//! entries.

use serde::Serialize;

use super::retval_reply;
use crate::vpp::codec::{DecodeError, Decoder, EncodeError, Encoder, HeaderKind, Message, Request};
use crate::vpp::types::{L2PortType, MacAddr, MacCodec};

/// `sw_interface_set_l2_bridge`: add (`enable`) or remove an interface from bridge domain `bd_id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SwInterfaceSetL2Bridge {
    pub rx_sw_if_index: u32,
    /// At most 2^24 - 1.
    pub bd_id: u32,
    pub port_type: L2PortType,
    /// Split-horizon group.
    pub shg: u8,
    pub enable: bool,
}

impl Message for SwInterfaceSetL2Bridge {
    const NAME_CRC: &'static str = "sw_interface_set_l2_bridge_d0678b13";
    const HEADER: HeaderKind = HeaderKind::ClientAndContext;
    fn encode_fields(&self, e: &mut Encoder<'_>) -> Result<(), EncodeError> {
        e.u32(self.rx_sw_if_index);
        e.u32(self.bd_id);
        e.u32(self.port_type.into());
        e.u8(self.shg);
        e.bool(self.enable);
        Ok(())
    }
    fn decode_fields(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            rx_sw_if_index: d.u32("rx_sw_if_index")?,
            bd_id: d.u32("bd_id")?,
            port_type: d.u32("port_type")?.into(),
            shg: d.u8("shg")?,
            enable: d.bool("enable")?,
        })
    }
}

impl Request for SwInterfaceSetL2Bridge {
    type Reply = SwInterfaceSetL2BridgeReply;
}

retval_reply!(
    /// `sw_interface_set_l2_bridge_reply`.
    SwInterfaceSetL2BridgeReply,
    "sw_interface_set_l2_bridge_reply_e8d4e804"
);

/// `l2fib_add_del`: add or delete the l2fib entry `mac` → `sw_if_index` in bridge domain `bd_id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct L2fibAddDel {
    pub mac: MacAddr,
    pub bd_id: u32,
    pub sw_if_index: u32,
    pub is_add: bool,
    pub static_mac: bool,
    pub filter_mac: bool,
    pub bvi_mac: bool,
}

impl Message for L2fibAddDel {
    const NAME_CRC: &'static str = "l2fib_add_del_eddda487";
    const HEADER: HeaderKind = HeaderKind::ClientAndContext;
    fn encode_fields(&self, e: &mut Encoder<'_>) -> Result<(), EncodeError> {
        self.mac.encode(e);
        e.u32(self.bd_id);
        e.u32(self.sw_if_index);
        e.bool(self.is_add);
        e.bool(self.static_mac);
        e.bool(self.filter_mac);
        e.bool(self.bvi_mac);
        Ok(())
    }
    fn decode_fields(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            mac: MacAddr::decode(d, "mac")?,
            bd_id: d.u32("bd_id")?,
            sw_if_index: d.u32("sw_if_index")?,
            is_add: d.bool("is_add")?,
            static_mac: d.bool("static_mac")?,
            filter_mac: d.bool("filter_mac")?,
            bvi_mac: d.bool("bvi_mac")?,
        })
    }
}

impl Request for L2fibAddDel {
    type Reply = L2fibAddDelReply;
}

retval_reply!(
    /// `l2fib_add_del_reply`.
    L2fibAddDelReply,
    "l2fib_add_del_reply_e8d4e804"
);
