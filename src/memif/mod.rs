//! placeholder: filled by the memif work.
