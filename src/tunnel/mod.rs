//! placeholder: filled by the tunnel work.
