//! placeholder: filled by the vpp work.
