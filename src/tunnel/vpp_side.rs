//! The tunnel's objects in VPP and what keeps them: the API client, the neighbour installer, the watch
//! for trouble (VPP gone, our memif deleted), re-creation and teardown.

use std::time::Duration;

use tokio::sync::broadcast;

use super::packet_path::Link;
use super::settings;
use crate::config::TunnelConfig;
use crate::vpp::{self, Client, NeighbourInstaller, VppTunnel};

use super::TunnelError;

/// Why the tunnel's objects in VPP must be created again.
pub(super) enum VppTrouble {
    /// The API connection closed: VPP exited or restarted.
    ApiLost,
    /// Our memif was deleted in a VPP that stays up (`delete memif`, by hand or by a tool).
    MemifDeleted,
}

/// The tunnel's objects in VPP and what keeps them: the API client and the neighbour installer.
pub(super) struct VppSide {
    pub(super) client: Client,
    /// VPP's interface events (`None` when VPP refused the subscription: deletions go unnoticed then).
    pub(super) events: Option<broadcast::Receiver<vpp::messages::SwInterfaceEvent>>,
    /// An event said our memif may be gone; a dump has yet to confirm it.
    pub(super) memif_suspect: bool,
    /// What to create, again after a VPP restart.
    pub(super) params: vpp::TunnelSetup,
    pub(super) tunnel: VppTunnel,
    pub(super) neighbours: Option<NeighbourInstaller>,
    /// Whether `tunnel` has the l2fib entry in its undo record (it is added again on every memif
    /// connection, but must be removed once).
    l2fib_recorded: bool,
}

impl VppSide {
    /// Creates the tunnel's objects (one transaction, see [`vpp::setup`]). A failure because VPP went
    /// away is for the caller to retry once VPP is back ([`vpp::SetupError::is_connection_lost`]).
    pub(super) async fn setup(
        cfg: &TunnelConfig,
        client: &Client,
        params: vpp::TunnelSetup,
    ) -> Result<VppSide, TunnelError> {
        sweep_neighbours(cfg, client, "left by an earlier run").await;
        let tunnel = vpp::setup(client, &params)
            .await
            .map_err(TunnelError::VppSetup)?;
        tracing::info!(tunnel = %cfg.name, memif = %cfg.vpp_memif_name(), sw_if_index = tunnel.memif_sw_if_index, "VPP objects created");
        let events = match client.interface_events().await {
            Ok(events) => Some(events),
            Err(err) => {
                tracing::warn!(tunnel = %cfg.name, error = %err, "no interface events from VPP: a memif deleted by hand will not be noticed");
                None
            }
        };
        Ok(VppSide {
            client: client.clone(),
            events,
            memif_suspect: false,
            params,
            tunnel,
            neighbours: None,
            l2fib_recorded: false,
        })
    }

    /// Resolves when VPP's API connection closes, or when VPP reports our memif deleted and a dump
    /// confirms it (VPP reuses interface indexes, so an event about an older memif is checked).
    /// Cancel-safe: the serve loop drops it whenever another branch wins, so an event that is being
    /// checked is remembered in `memif_suspect` and checked again on the next call.
    pub(super) async fn trouble(&mut self) -> VppTrouble {
        loop {
            if self.memif_suspect {
                let exists = memif_exists(&self.client, self.tunnel.memif_sw_if_index).await;
                self.memif_suspect = false;
                if !exists {
                    return VppTrouble::MemifDeleted;
                }
            }
            let memif = self.tunnel.memif_sw_if_index;
            let event = async {
                match self.events.as_mut() {
                    Some(events) => events.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = self.client.disconnected() => return VppTrouble::ApiLost,
                event = event => match event {
                    Ok(event) => self.memif_suspect = event.deleted && event.sw_if_index == memif,
                    Err(broadcast::error::RecvError::Lagged(_)) => self.memif_suspect = true,
                    Err(broadcast::error::RecvError::Closed) => self.events = None,
                },
            }
        }
    }

    /// Sets the tunnel MTU from the interface file or the BVI's MTU in VPP (read again after each
    /// re-creation: VPP may have come back with another).
    pub(super) async fn apply_mtu(&self, cfg: &TunnelConfig, link: &Link) {
        let bvi_mtu = if cfg.mtu.is_some() {
            None
        } else {
            match vpp::bvi_mtu(&self.client, &self.params.bvi).await {
                Ok(mtu) => mtu,
                Err(err) => {
                    tracing::warn!(tunnel = %cfg.name, error = %err, "cannot read the BVI's MTU; the tunnel MTU stays at its default");
                    None
                }
            }
        };
        let mtu = settings::tunnel_mtu(cfg, bvi_mtu);
        link.set_mtu(mtu);
        match (cfg.mtu, bvi_mtu) {
            (Some(_), _) => {
                tracing::info!(tunnel = %cfg.name, mtu, "tunnel MTU from the interface file")
            }
            (None, Some(bvi)) => {
                tracing::info!(tunnel = %cfg.name, mtu, bvi_mtu = bvi, "tunnel MTU: the BVI's MTU less WireGuard's 80 bytes")
            }
            (None, None) => {
                tracing::info!(tunnel = %cfg.name, mtu, "tunnel MTU: the default (no BVI named)")
            }
        }
    }

    /// Adds the l2fib entry for our MAC, recording it for teardown the first time only.
    pub(super) async fn add_l2fib(&mut self, cfg: &TunnelConfig) {
        let mac = cfg.self_mac;
        let added = if self.l2fib_recorded {
            let entry = vpp::messages::L2fibAddDel {
                mac,
                bd_id: self.tunnel.bridge_id,
                sw_if_index: self.tunnel.memif_sw_if_index,
                is_add: true,
                static_mac: false,
                filter_mac: false,
                bvi_mac: false,
            };
            self.client.request(&entry).await.map(drop)
        } else {
            self.tunnel.add_l2fib(&self.client, mac).await
        };
        match added {
            Ok(()) => self.l2fib_recorded = true,
            Err(err) => {
                tracing::warn!(tunnel = %cfg.name, error = %err, "l2fib entry not added; VPP learns our MAC from traffic instead")
            }
        }
    }

    pub(super) fn start_neighbours(&mut self, cfg: &TunnelConfig, link: &Link) {
        if self.tunnel.installer.is_none() || !cfg.install.neighbours.any() {
            return;
        }
        let installer = NeighbourInstaller::spawn(
            self.client.clone(),
            self.tunnel.installer.clone(),
            settings::neighbour_flags(cfg),
            256,
        );
        link.set_neighbour_installer(Some(installer.handle()));
        self.neighbours = Some(installer);
    }

    /// Waits (after `delay`, if any) until the API client is connected to VPP again, retrying with
    /// backoff. Safe to cancel: nothing is created here.
    pub(super) async fn reconnect(&self, delay: Option<Duration>) {
        reconnect(&self.client, delay).await;
    }

    /// Creates the tunnel's objects again in a VPP that came back; false when that failed (logged; the
    /// transaction undid its steps). The old objects died with VPP; a VPP that did not restart gets them
    /// swept and re-created. The neighbour installer keeps running: it re-installs its entries once the
    /// client has reconnected (B24), unless the BVI it installs on changed.
    pub(super) async fn recreate(&mut self, cfg: &TunnelConfig, link: &Link) -> bool {
        let tunnel = match vpp::setup(&self.client, &self.params).await {
            Ok(tunnel) => tunnel,
            Err(err) => {
                tracing::error!(tunnel = %cfg.name, error = %err, "re-creating the VPP objects failed; retrying");
                return false;
            }
        };
        tracing::info!(tunnel = %cfg.name, sw_if_index = tunnel.memif_sw_if_index, "VPP is back; objects created again");
        self.apply_mtu(cfg, link).await;
        let same_bvi = same_target(&self.tunnel.installer, &tunnel.installer);
        self.tunnel = tunnel;
        self.l2fib_recorded = false;
        if !same_bvi {
            link.set_neighbour_installer(None);
            if let Some(installer) = self.neighbours.take() {
                drop(installer.stop().await);
            }
        }
        if self.neighbours.is_none() {
            self.start_neighbours(cfg, link);
        }
        true
    }

    pub(super) async fn teardown(mut self, cfg: &TunnelConfig) {
        if let Some(installer) = self.neighbours.take() {
            for undo in installer.stop().await {
                self.tunnel.record(undo);
            }
        }
        if !self.client.is_connected() {
            tracing::warn!(
                tunnel = %cfg.name,
                "VPP's API is gone: nothing removed (a restarted VPP has none of the tunnel's objects; \
                 those of a VPP that kept running are swept at the next start)"
            );
            return;
        }
        for failure in self.tunnel.teardown(&self.client).await {
            tracing::error!(tunnel = %cfg.name, "{failure}");
        }
        sweep_neighbours(cfg, &self.client, "learned by VPP from our answers").await;
        let _ = self.client.close().await;
    }
}

/// Waits (after `delay`, if any) until `client` is connected to VPP again, retrying with backoff. Safe to
/// cancel: nothing is created here.
pub(super) async fn reconnect(client: &Client, delay: Option<Duration>) {
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    let mut backoff = Duration::from_millis(200);
    while client.reconnect().await.is_err() {
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// Removes VPP's neighbour entries with our MAC (see [`vpp::sweep_neighbours`]); a failure is logged.
pub(super) async fn sweep_neighbours(cfg: &TunnelConfig, client: &Client, which: &str) {
    match vpp::sweep_neighbours(client, cfg.self_mac).await {
        Ok(0) => {}
        Ok(removed) => {
            tracing::info!(tunnel = %cfg.name, removed, "removed neighbour entries {which}")
        }
        Err(err) => {
            tracing::warn!(tunnel = %cfg.name, error = %err, "could not remove neighbour entries {which}")
        }
    }
}

/// Whether VPP still has the memif `sw_if_index`; true when the dump fails (the API's own loss is
/// noticed elsewhere).
pub(super) async fn memif_exists(client: &Client, sw_if_index: u32) -> bool {
    match client.dump(&vpp::messages::MemifDump).await {
        Ok(memifs) => memifs.iter().any(|m| m.sw_if_index == sw_if_index),
        Err(_) => true,
    }
}

/// Whether two resolved install methods install on the same BVI the same way.
pub(super) fn same_target(a: &vpp::Installer, b: &vpp::Installer) -> bool {
    use vpp::Installer::{Api, None, Vppctl};
    match (a, b) {
        (Api { bvi_sw_if_index: a }, Api { bvi_sw_if_index: b }) => a == b,
        (Vppctl { bvi_name: a, .. }, Vppctl { bvi_name: b, .. }) => a == b,
        (None, None) => true,
        _ => false,
    }
}
