//! `vpe`: `show_version`, to log VPP's version at connect.

use serde::Serialize;

use super::empty_request;
use crate::vpp::codec::{
    DecodeError, Decoder, EncodeError, Encoder, HeaderKind, Message, Reply, Request,
};

empty_request!(
    /// `show_version`: ask VPP for its program name and version.
    ShowVersion,
    "show_version_51077d14"
);

impl Request for ShowVersion {
    type Reply = ShowVersionReply;
}

/// `show_version_reply`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct ShowVersionReply {
    pub retval: i32,
    /// "vpe".
    pub program: String,
    /// e.g. "26.06-release".
    pub version: String,
    pub build_date: String,
    pub build_directory: String,
}

impl Message for ShowVersionReply {
    const NAME_CRC: &'static str = "show_version_reply_c919bde1";
    const HEADER: HeaderKind = HeaderKind::Context;
    fn encode_fields(&self, e: &mut Encoder<'_>) -> Result<(), EncodeError> {
        e.i32(self.retval);
        e.fixed_string("program", &self.program, 32)?;
        e.fixed_string("version", &self.version, 32)?;
        e.fixed_string("build_date", &self.build_date, 32)?;
        e.fixed_string("build_directory", &self.build_directory, 256)
    }
    fn decode_fields(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            retval: d.i32("retval")?,
            program: d.fixed_string("program", 32)?,
            version: d.fixed_string("version", 32)?,
            build_date: d.fixed_string("build_date", 32)?,
            build_directory: d.fixed_string("build_directory", 256)?,
        })
    }
}

impl Reply for ShowVersionReply {
    fn retval(&self) -> i32 {
        self.retval
    }
}
