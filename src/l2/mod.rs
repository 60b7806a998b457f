//! placeholder: filled by the l2 work.
