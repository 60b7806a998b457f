//! The Ethernet side of a tunnel: everything between memif frames and IP packets, as pure code with no
//! I/O and no clock (time is an argument).
#![forbid(unsafe_code)]

pub mod wire;
