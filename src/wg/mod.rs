//! placeholder: filled by the wg work.
