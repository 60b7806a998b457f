//! The configuration of a tunnel, compatible with the original's files and environment.
//!
//! - [`Env`] (`env.rs`): the environment variables, parsed once, with the original's defaults.
//! - [`InterfaceFile`] and [`GatewayFile`] (`file.rs`): `if/<name>.json` and `gw/<bridge id>.json` as
//!   on disk, read with Go's JSON rules (`json.rs`) and written back in the same format.
//! - [`validate()`] (`validate.rs`): a pure step from the two files to a [`TunnelConfig`]
//!   (`resolved.rs`), in the original's order.
//! - [`load()`]: finds and reads the files in either layout (`layout.rs`), validates them, and runs the
//!   route-conflict check ([`overlap`]).
//!
//! It knows nothing of VPP, memif or WireGuard beyond the values it hands over.

mod env;
mod error;
mod file;
#[cfg(test)]
mod fixtures;
mod json;
mod layout;
mod mac;
mod name;
pub mod overlap;
mod resolved;
mod validate;

use std::path::Path;

/// The type of [`TunnelConfig`]'s MACs: the Ethernet side's, re-exported for the configuration's users.
pub use env::{
    DEFAULT_CONFIG_DIR, DEFAULT_MEMIF_SOCKET_DIR, DEFAULT_VPP_API_SOCKET, Env, LogLevel, Reconf,
    VARIABLES,
};
pub use error::{ConfigError, ConfigWarning};
pub use file::{FamilySwitches, GatewayFile, InterfaceFile, NeighborFlagSwitches};
pub use mac::{MacError, MacPrefix, parse_mac};
pub use name::sanitize_name;
pub use resolved::{
    Announce, BRIDGE_ID_MAX, Install, InstallMethod, MTU_RANGE, MemifSecret, Ranges,
    SOCKET_PATH_MAX, TunnelConfig,
};
pub use validate::{
    DEFAULT_VPPCTL_BINARY, Files, Loaded, RANDOM_SECRET, RANDOM_SECRET_LEN, validate,
};

/// Loads the configuration of interface `name` (sanitised here) from `config_dir`, logging each
/// warning. See [`load_with_warnings`].
pub fn load(config_dir: &Path, name: &str, env: &Env) -> Result<TunnelConfig, ConfigError> {
    let Loaded { config, warnings } = load_with_warnings(config_dir, name, env)?;
    for warning in &warnings {
        tracing::warn!(tunnel = %config.name, "{warning}");
    }
    Ok(config)
}

/// Loads the configuration of interface `name` from `config_dir` (usually [`Env::config_dir`]): the
/// interface file, then the gateway file of its bridge (each in either layout), then validation, then
/// the route-conflict check when the gateway file asks for it. Reads files only; creates nothing.
pub fn load_with_warnings(config_dir: &Path, name: &str, env: &Env) -> Result<Loaded, ConfigError> {
    let name = sanitize_name(name)?;
    let mut warnings = Vec::new();
    let interface_path = layout::locate(
        config_dir,
        "if",
        &name,
        &format!("interface config of {name}"),
        &mut warnings,
    )?;
    let interface = layout::read_interface(&interface_path, &mut warnings)?;
    if !interface.secret.is_empty() && interface.secret != RANDOM_SECRET {
        layout::check_secret_file_mode(&interface_path, &mut warnings);
    }
    // The bridge id names the gateway file, so it is checked before that file is looked for.
    validate::check_bridge_id(&interface_path, interface.vpp_bridge_id)?;
    let bridge = interface.vpp_bridge_id.to_string();
    let gateway_path = layout::locate(
        config_dir,
        "gw",
        &bridge,
        &format!("gateway config of bridge {bridge}"),
        &mut warnings,
    )?;
    let gateway = layout::read_gateway(&gateway_path, &mut warnings)?;
    let files = Files {
        interface,
        interface_path,
        gateway,
        gateway_path,
    };
    let mut loaded = validate(&name, &files, env, &mut rand::rng())?;
    warnings.append(&mut loaded.warnings);
    overlap::check_conflicts(&loaded.config, &files.gateway, config_dir, &mut warnings)?;
    loaded.warnings = warnings;
    Ok(loaded)
}
