//! Kubernetes: the `WireGuardVppTunnel` custom resource and the in-pod controller that runs one tunnel per
//! resource of its node.
//!
//! - [`crd`]: the resource's spec, status and schema; [`crd_yaml`] prints the CRD.
//! - [`render`]: a resource plus its keys and gateway file into the original's `if`/`gw` files and a wg(8)
//!   config, pure; `wireguard-vpp render` writes them.
//! - [`controller`]: the reconciler (finalizer, conflicts, uid allocation, status by server-side apply),
//!   with [`conflict`] (pure conflict checks and uid allocation), [`status`] (pure conditions),
//!   [`secrets`] (keys from Secrets), [`keys`], [`gateway`] (the bridge's gateway file), [`metrics`] (and
//!   the HTTP server of `/metrics`, `/healthz`, `/readyz`) and [`health`] (what those probes decide).
//!
//! The controller reaches the data plane only through the [`tunnel_runtime::TunnelRuntime`] trait;
//! [`local_tunnels::LocalTunnels`] implements it with the tunnel module's `Tunnel`, the same lifecycle the
//! command line runs, and [`orphans`] removes at its start what tunnels deleted while no agent ran
//! left in VPP.

pub mod conflict;
pub mod controller;
pub mod crd;
pub mod gateway;
pub mod health;
pub mod local_tunnels;
pub mod metrics;
pub mod orphans;
pub mod render;
pub mod render_files;
pub mod secrets;
pub mod status;
pub mod tunnel_runtime;

pub use crd::{WireGuardVppTunnel, WireGuardVppTunnelSpec, WireGuardVppTunnelStatus};

use kube::CustomResourceExt;

/// The CustomResourceDefinition of [`WireGuardVppTunnel`] as YAML, as `wireguard-vpp crd` prints it.
pub fn crd_yaml() -> String {
    // A CRD built from our own types always serialises; failure would be a bug in serde-saphyr.
    serde_saphyr::to_string(&WireGuardVppTunnel::crd())
        .expect("a CustomResourceDefinition serialises to YAML")
}

#[cfg(test)]
mod tests {
    use super::*;

    const CRD_FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/crd/wireguardvpptunnels.yaml");

    /// `crd/` holds the generated CRD; regenerate it with `UPDATE_CRD=1 cargo test --lib k8s::`.
    #[test]
    fn crd_file_is_up_to_date() {
        let generated = crd_yaml();
        if std::env::var_os("UPDATE_CRD").is_some() {
            std::fs::write(CRD_FILE, &generated).expect("write crd/wireguardvpptunnels.yaml");
        }
        let committed = std::fs::read_to_string(CRD_FILE).unwrap_or_default();
        assert!(
            committed == generated,
            "crd/wireguardvpptunnels.yaml is stale: run `UPDATE_CRD=1 cargo test --lib k8s::` and commit it"
        );
    }

    #[test]
    fn crd_has_no_unsigned_formats() {
        let yaml = crd_yaml();
        for format in ["uint8", "uint16", "uint32", "uint64", "uint"] {
            assert!(
                !yaml.contains(&format!("format: {format}\n")),
                "the CRD still has format {format}"
            );
        }
    }
}
