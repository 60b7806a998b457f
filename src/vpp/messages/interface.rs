//! `interface`: finding an interface by name (`sw_interface_dump`), admin up/down, and link/deletion events.

use serde::Serialize;

use super::retval_reply;
use crate::vpp::codec::{
    DecodeError, Decoder, Dump, EncodeError, Encoder, HeaderKind, Message, Request,
};
use crate::vpp::types::{IfStatusFlags, IfType, LinkDuplex, MacAddr, MacCodec};

/// `sw_interface_dump`. With `name_filter_valid`, VPP returns every interface whose name *contains* the
/// filter, case-insensitively: callers must compare names exactly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SwInterfaceDump {
    /// ~0 for all interfaces (the default).
    pub sw_if_index: u32,
    pub name_filter_valid: bool,
    pub name_filter: String,
}

impl SwInterfaceDump {
    /// Interfaces whose name contains `name` (case-insensitively: VPP uses `strcasestr`).
    pub fn by_name(name: &str) -> Self {
        Self {
            sw_if_index: u32::MAX,
            name_filter_valid: true,
            name_filter: name.to_owned(),
        }
    }
}

impl Default for SwInterfaceDump {
    fn default() -> Self {
        Self {
            sw_if_index: u32::MAX,
            name_filter_valid: false,
            name_filter: String::new(),
        }
    }
}

impl Message for SwInterfaceDump {
    const NAME_CRC: &'static str = "sw_interface_dump_aa610c27";
    const HEADER: HeaderKind = HeaderKind::ClientAndContext;
    fn encode_fields(&self, e: &mut Encoder<'_>) -> Result<(), EncodeError> {
        e.u32(self.sw_if_index);
        e.bool(self.name_filter_valid);
        e.var_string("name_filter", &self.name_filter)
    }
    fn decode_fields(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            sw_if_index: d.u32("sw_if_index")?,
            name_filter_valid: d.bool("name_filter_valid")?,
            name_filter: d.var_string("name_filter")?,
        })
    }
}

impl Dump for SwInterfaceDump {
    type Details = SwInterfaceDetails;
}

/// `sw_interface_details`: one interface of a dump (295 bytes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SwInterfaceDetails {
    pub sw_if_index: u32,
    pub sup_sw_if_index: u32,
    pub l2_address: MacAddr,
    pub flags: IfStatusFlags,
    #[serde(rename = "type")]
    pub if_type: IfType,
    pub link_duplex: LinkDuplex,
    pub link_speed: u32,
    pub link_mtu: u16,
    pub mtu: [u32; 4],
    pub sub_id: u32,
    pub sub_number_of_tags: u8,
    pub sub_outer_vlan_id: u16,
    pub sub_inner_vlan_id: u16,
    pub sub_if_flags: u32,
    pub vtr_op: u32,
    pub vtr_push_dot1q: u32,
    pub vtr_tag1: u32,
    pub vtr_tag2: u32,
    pub outer_tag: u16,
    pub b_dmac: MacAddr,
    pub b_smac: MacAddr,
    pub b_vlanid: u16,
    pub i_sid: u32,
    pub interface_name: String,
    pub interface_dev_type: String,
    pub tag: String,
}

impl SwInterfaceDetails {
    /// An interface with this index and name and every other field zero (for tests and fake servers).
    pub fn named(sw_if_index: u32, name: &str) -> Self {
        Self {
            sw_if_index,
            sup_sw_if_index: sw_if_index,
            l2_address: MacAddr::default(),
            flags: IfStatusFlags::default(),
            if_type: IfType::Hardware,
            link_duplex: LinkDuplex::Unspecified,
            link_speed: 0,
            link_mtu: 0,
            mtu: [0; 4],
            sub_id: 0,
            sub_number_of_tags: 0,
            sub_outer_vlan_id: 0,
            sub_inner_vlan_id: 0,
            sub_if_flags: 0,
            vtr_op: 0,
            vtr_push_dot1q: 0,
            vtr_tag1: 0,
            vtr_tag2: 0,
            outer_tag: 0,
            b_dmac: MacAddr::default(),
            b_smac: MacAddr::default(),
            b_vlanid: 0,
            i_sid: 0,
            interface_name: name.to_owned(),
            interface_dev_type: String::new(),
            tag: String::new(),
        }
    }
}

impl Message for SwInterfaceDetails {
    const NAME_CRC: &'static str = "sw_interface_details_6c221fc7";
    const HEADER: HeaderKind = HeaderKind::Context;
    fn encode_fields(&self, e: &mut Encoder<'_>) -> Result<(), EncodeError> {
        e.u32(self.sw_if_index);
        e.u32(self.sup_sw_if_index);
        self.l2_address.encode(e);
        e.u32(self.flags.0);
        e.u32(self.if_type.into());
        e.u32(self.link_duplex.into());
        e.u32(self.link_speed);
        e.u16(self.link_mtu);
        for mtu in self.mtu {
            e.u32(mtu);
        }
        e.u32(self.sub_id);
        e.u8(self.sub_number_of_tags);
        e.u16(self.sub_outer_vlan_id);
        e.u16(self.sub_inner_vlan_id);
        e.u32(self.sub_if_flags);
        e.u32(self.vtr_op);
        e.u32(self.vtr_push_dot1q);
        e.u32(self.vtr_tag1);
        e.u32(self.vtr_tag2);
        e.u16(self.outer_tag);
        self.b_dmac.encode(e);
        self.b_smac.encode(e);
        e.u16(self.b_vlanid);
        e.u32(self.i_sid);
        e.fixed_string("interface_name", &self.interface_name, 64)?;
        e.fixed_string("interface_dev_type", &self.interface_dev_type, 64)?;
        e.fixed_string("tag", &self.tag, 64)
    }
    fn decode_fields(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            sw_if_index: d.u32("sw_if_index")?,
            sup_sw_if_index: d.u32("sup_sw_if_index")?,
            l2_address: MacAddr::decode(d, "l2_address")?,
            flags: IfStatusFlags(d.u32("flags")?),
            if_type: d.u32("type")?.into(),
            link_duplex: d.u32("link_duplex")?.into(),
            link_speed: d.u32("link_speed")?,
            link_mtu: d.u16("link_mtu")?,
            mtu: [d.u32("mtu")?, d.u32("mtu")?, d.u32("mtu")?, d.u32("mtu")?],
            sub_id: d.u32("sub_id")?,
            sub_number_of_tags: d.u8("sub_number_of_tags")?,
            sub_outer_vlan_id: d.u16("sub_outer_vlan_id")?,
            sub_inner_vlan_id: d.u16("sub_inner_vlan_id")?,
            sub_if_flags: d.u32("sub_if_flags")?,
            vtr_op: d.u32("vtr_op")?,
            vtr_push_dot1q: d.u32("vtr_push_dot1q")?,
            vtr_tag1: d.u32("vtr_tag1")?,
            vtr_tag2: d.u32("vtr_tag2")?,
            outer_tag: d.u16("outer_tag")?,
            b_dmac: MacAddr::decode(d, "b_dmac")?,
            b_smac: MacAddr::decode(d, "b_smac")?,
            b_vlanid: d.u16("b_vlanid")?,
            i_sid: d.u32("i_sid")?,
            interface_name: d.fixed_string("interface_name", 64)?,
            interface_dev_type: d.fixed_string("interface_dev_type", 64)?,
            tag: d.fixed_string("tag", 64)?,
        })
    }
}

/// `sw_interface_set_flags`: `ADMIN_UP` brings an interface up, no flags bring it down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct SwInterfaceSetFlags {
    pub sw_if_index: u32,
    pub flags: IfStatusFlags,
}

impl Message for SwInterfaceSetFlags {
    const NAME_CRC: &'static str = "sw_interface_set_flags_f5aec1b8";
    const HEADER: HeaderKind = HeaderKind::ClientAndContext;
    fn encode_fields(&self, e: &mut Encoder<'_>) -> Result<(), EncodeError> {
        e.u32(self.sw_if_index);
        e.u32(self.flags.0);
        Ok(())
    }
    fn decode_fields(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            sw_if_index: d.u32("sw_if_index")?,
            flags: IfStatusFlags(d.u32("flags")?),
        })
    }
}

impl Request for SwInterfaceSetFlags {
    type Reply = SwInterfaceSetFlagsReply;
}

retval_reply!(
    /// `sw_interface_set_flags_reply`.
    SwInterfaceSetFlagsReply,
    "sw_interface_set_flags_reply_e8d4e804"
);

/// `want_interface_events`: (un)subscribe this client to [`SwInterfaceEvent`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct WantInterfaceEvents {
    /// 1 to subscribe, 0 to cancel.
    pub enable_disable: u32,
    /// Our process id.
    pub pid: u32,
}

impl Message for WantInterfaceEvents {
    const NAME_CRC: &'static str = "want_interface_events_476f5a08";
    const HEADER: HeaderKind = HeaderKind::ClientAndContext;
    fn encode_fields(&self, e: &mut Encoder<'_>) -> Result<(), EncodeError> {
        e.u32(self.enable_disable);
        e.u32(self.pid);
        Ok(())
    }
    fn decode_fields(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            enable_disable: d.u32("enable_disable")?,
            pid: d.u32("pid")?,
        })
    }
}

impl Request for WantInterfaceEvents {
    type Reply = WantInterfaceEventsReply;
}

retval_reply!(
    /// `want_interface_events_reply`.
    WantInterfaceEventsReply,
    "want_interface_events_reply_e8d4e804"
);

/// `sw_interface_event`: an interface's flags changed or it was deleted. Events have no context.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct SwInterfaceEvent {
    pub pid: u32,
    pub sw_if_index: u32,
    pub flags: IfStatusFlags,
    pub deleted: bool,
}

impl Message for SwInterfaceEvent {
    const NAME_CRC: &'static str = "sw_interface_event_2d3d95a7";
    const HEADER: HeaderKind = HeaderKind::Client;
    fn encode_fields(&self, e: &mut Encoder<'_>) -> Result<(), EncodeError> {
        e.u32(self.pid);
        e.u32(self.sw_if_index);
        e.u32(self.flags.0);
        e.bool(self.deleted);
        Ok(())
    }
    fn decode_fields(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            pid: d.u32("pid")?,
            sw_if_index: d.u32("sw_if_index")?,
            flags: IfStatusFlags(d.u32("flags")?),
            deleted: d.bool("deleted")?,
        })
    }
}
