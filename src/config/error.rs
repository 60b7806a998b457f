//! What can go wrong with a tunnel's configuration ([`ConfigError`]), and what is worth a warning
//! without stopping it ([`ConfigWarning`]). Every message names the file (or variable), the key and the
//! value, and says what to do where that is not obvious.

use std::path::PathBuf;

use ipnet::IpNet;

/// A configuration that cannot be used. Nothing has been created when one of these is returned.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The interface name has no character left after sanitising (only `[A-Za-z0-9_-]` are kept).
    #[error("interface name {raw:?} has no usable character: use letters, digits, '_' or '-'")]
    EmptyName { raw: String },

    /// An environment variable has a value that cannot be used.
    #[error("environment variable {var}={value:?}: {reason}")]
    Env {
        var: &'static str,
        value: String,
        reason: String,
    },

    /// Neither layout has the file.
    #[error("{what} not found: neither {} nor {} exists", .tried[0].display(), .tried[1].display())]
    NotFound { what: String, tried: [PathBuf; 2] },

    /// The file exists but cannot be read.
    #[error("{}: cannot read: {source}", .file.display())]
    Read {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The file is not valid JSON.
    #[error("{}: not valid JSON: {source}", .file.display())]
    Syntax {
        file: PathBuf,
        #[source]
        source: serde_json::Error,
    },

    /// A value has the wrong JSON type or is out of range for its field (`"uid": "3"`).
    #[error("{}: key {key:?}: {reason}", .file.display())]
    Type {
        file: PathBuf,
        key: String,
        reason: String,
    },

    /// A value has the right type but cannot be used.
    #[error("{}: {field} = {value:?}: {reason}", .file.display())]
    Invalid {
        file: PathBuf,
        field: String,
        value: String,
        reason: String,
    },

    /// A folder of `VppBridgeLoop_CheckRouteConfigPaths` cannot be scanned.
    #[error("{}: VppBridgeLoop_CheckRouteConfigPaths folder {}: {source}", .file.display(), .folder.display())]
    ConflictFolder {
        file: PathBuf,
        folder: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A response range of this interface overlaps one of another interface on the same bridge.
    #[error(
        "Network overlap detected at {} with network [{ours}] and [{theirs}] \
         (bridge {bridge_id}; this interface's {} lists {ours}): two interfaces would answer ARP/NDP \
         for the same addresses",
        .other_file.display(), .our_file.display()
    )]
    Overlap {
        our_file: PathBuf,
        ours: IpNet,
        other_file: PathBuf,
        theirs: IpNet,
        bridge_id: u32,
    },
}

impl ConfigError {
    pub(crate) fn invalid(
        file: &std::path::Path,
        field: impl Into<String>,
        value: impl Into<String>,
        reason: impl Into<String>,
    ) -> ConfigError {
        ConfigError::Invalid {
            file: file.to_owned(),
            field: field.into(),
            value: value.into(),
            reason: reason.into(),
        }
    }
}

/// Something in the configuration that works but deserves the operator's attention.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigWarning {
    /// A key that matches no field (a typo, or a key of another version).
    #[error("{}: unknown key {key:?} ignored", .file.display())]
    UnknownKey { file: PathBuf, key: String },

    /// Both layouts have the file; the sub-directory one is used.
    #[error("both {} and {} exist; using {} (remove the other)", .used.display(), .ignored.display(), .used.display())]
    BothLayouts { used: PathBuf, ignored: PathBuf },

    /// `VppBridgeLoop_VppctlBin`, the key the original README documented, was accepted as an alias.
    #[error("{}: {message}", .file.display())]
    VppctlBinAlias { file: PathBuf, message: String },

    /// A setting that has no effect in this combination, or a value that was adjusted.
    #[error("{}: {field}: {message}", .file.display())]
    Ignored {
        file: PathBuf,
        field: String,
        message: String,
    },

    /// A file holding the memif secret can be read by every user.
    #[error(
        "{}: the file holds the memif secret but every user can read it (mode {mode:o}); chmod o-r",
        .file.display()
    )]
    ReadableSecret { file: PathBuf, mode: u32 },

    /// A file that the conflict check could not read or parse; it was skipped.
    #[error("conflict check skipped {}: {reason}", .file.display())]
    ConflictSkipped { file: PathBuf, reason: String },

    /// An environment variable whose value was not understood or has no effect.
    #[error("environment variable {var}={value:?}: {message}")]
    Env {
        var: &'static str,
        value: String,
        message: String,
    },
}
