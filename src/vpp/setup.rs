//! Setting up one tunnel's VPP objects as a transaction, on the v2 memif messages: first a sweep of
//! leftovers from a crashed earlier run (our memif socket id), then the original's sequence (memif socket,
//! memif slave interface, admin up, into the bridge domain, host routes). Every object created is recorded
//! as an [`Undo`]; a failure at any step undoes the steps before it, in reverse. After the memif connects,
//! the tunnel adds the l2fib entry for its own MAC (recorded too), and at exit it calls
//! [`VppTunnel::teardown`].
//!
//! The inputs are a small plain struct ([`TunnelSetup`]), not the configuration module's types: the tunnel
//! runtime maps one to the other.

use std::net::IpAddr;

use super::client::Client;
use super::error::VppError;
use super::install::{Bvi, BviError, InstallMethod, Installer};
use super::messages::{
    IpNeighborAddDel, IpNeighborDump, L2fibAddDel, MemifCreateV2, MemifDelete, MemifDump,
    MemifSocketFilenameAddDelV2, MemifSocketFilenameDump, SwInterfaceSetFlags,
    SwInterfaceSetL2Bridge,
};
use super::types::{IfStatusFlags, L2PortType, MacAddr, MemifMode, MemifRole};
use super::undo::{Undo, UndoFailure, undo_all};

/// The largest bridge domain id VPP accepts.
pub const MAX_BRIDGE_ID: u32 = (1 << 24) - 1;
/// The longest memif secret: VPP keeps 23 bytes and a NUL.
pub const MAX_SECRET_LEN: usize = 23;

/// What setting up a tunnel in VPP needs.
#[derive(Clone)]
pub struct TunnelSetup {
    /// The tunnel's uid: memif socket id and interface id (VPP names the interface `memif<uid>/<uid>`).
    pub uid: u32,
    /// The memif control socket, as VPP resolves it (we listen on it as memif master).
    pub socket_path: String,
    /// The memif shared secret (at most 23 bytes; empty for none).
    pub secret: String,
    /// The bridge domain (`VppBridgeID`).
    pub bridge_id: u32,
    /// MAC of VPP's memif interface (`VppIfMacaddrPrefix` + uid).
    pub vpp_memif_mac: MacAddr,
    /// The bridge's BVI, for routes and neighbours.
    pub bvi: Bvi,
    /// Host routes to install via the BVI (see [`super::host_routes`]).
    pub host_routes: Vec<IpAddr>,
    /// Whether neighbour entries will be installed later (then the BVI must resolve now).
    pub installs_neighbours: bool,
    /// How routes and neighbours are installed.
    pub install: InstallMethod,
    /// memif ring size (entries, a power of two).
    pub ring_size: u32,
    /// memif buffer size (bytes).
    pub buffer_size: u16,
    /// Copy mode (the original's choice); false lets VPP share its buffers (zero-copy).
    pub no_zero_copy: bool,
    /// VPP is the memif server (master) and listens on the socket; by default (false) VPP is the
    /// client (slave) and connects to ours, as in the original.
    pub vpp_listens: bool,
}

/// Shows everything but the memif secret.
impl std::fmt::Debug for TunnelSetup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TunnelSetup")
            .field("uid", &self.uid)
            .field("socket_path", &self.socket_path)
            .field("secret", &redacted(&self.secret))
            .field("bridge_id", &self.bridge_id)
            .field("vpp_memif_mac", &self.vpp_memif_mac)
            .field("bvi", &self.bvi)
            .field("host_routes", &self.host_routes)
            .field("installs_neighbours", &self.installs_neighbours)
            .field("install", &self.install)
            .field("ring_size", &self.ring_size)
            .field("buffer_size", &self.buffer_size)
            .field("no_zero_copy", &self.no_zero_copy)
            .field("vpp_listens", &self.vpp_listens)
            .finish()
    }
}

/// How a secret shows in `Debug` output: whether it is set, never its value.
pub(crate) fn redacted(secret: &str) -> &'static str {
    if secret.is_empty() {
        "(none)"
    } else {
        "(redacted)"
    }
}

impl TunnelSetup {
    /// The original's memif parameters: ring 1024, buffers 2048, copy mode; nothing to install.
    pub fn new(
        uid: u32,
        socket_path: impl Into<String>,
        bridge_id: u32,
        vpp_memif_mac: MacAddr,
    ) -> Self {
        Self {
            uid,
            socket_path: socket_path.into(),
            secret: String::new(),
            bridge_id,
            vpp_memif_mac,
            bvi: Bvi::default(),
            host_routes: Vec::new(),
            installs_neighbours: false,
            install: InstallMethod::None,
            ring_size: 1024,
            buffer_size: 2048,
            no_zero_copy: true,
            vpp_listens: false,
        }
    }

    /// Checks the values VPP would refuse (or silently change), before anything is created.
    pub fn validate(&self) -> Result<(), SetupError> {
        let invalid = |field, reason: String| Err(SetupError::Invalid { field, reason });
        if self.uid == 0 || self.uid == u32::MAX {
            return invalid(
                "uid",
                format!(
                    "{} cannot be a memif socket id (0 is VPP's default socket, ~0 is reserved)",
                    self.uid
                ),
            );
        }
        if self.socket_path.is_empty() || self.socket_path.contains('\0') {
            return invalid(
                "socket_path",
                format!("{:?} is empty or contains a NUL byte", self.socket_path),
            );
        }
        if self.secret.contains('\0') {
            return invalid("secret", "the memif secret contains a NUL byte".to_owned());
        }
        if self.secret.len() > MAX_SECRET_LEN {
            return invalid(
                "secret",
                format!(
                    "{} bytes, VPP keeps at most {MAX_SECRET_LEN}",
                    self.secret.len()
                ),
            );
        }
        if self.bridge_id > MAX_BRIDGE_ID {
            return invalid(
                "VppBridgeID",
                format!("{} is above VPP's limit {MAX_BRIDGE_ID}", self.bridge_id),
            );
        }
        if !self.ring_size.is_power_of_two() {
            return invalid(
                "ring_size",
                format!("{} is not a power of two", self.ring_size),
            );
        }
        Ok(())
    }

    fn memif_create(&self) -> MemifCreateV2 {
        MemifCreateV2 {
            role: if self.vpp_listens {
                MemifRole::Master
            } else {
                MemifRole::Slave
            },
            mode: MemifMode::Ethernet,
            rx_queues: 1,
            tx_queues: 1,
            id: self.uid,
            socket_id: self.uid,
            ring_size: self.ring_size,
            buffer_size: self.buffer_size,
            no_zero_copy: self.no_zero_copy,
            use_dma: false,
            hw_addr: self.vpp_memif_mac,
            secret: self.secret.clone(),
        }
    }
}

/// Why a tunnel could not be set up in VPP. Whatever had been created was undone (failures of that are in
/// `undo_failures`).
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// An input VPP would refuse; nothing was sent.
    #[error("invalid {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    /// The BVI could not be resolved.
    #[error(transparent)]
    Bvi(#[from] BviError),
    /// Our memif socket id is registered in VPP for another socket file: two tunnels share a uid.
    #[error(
        "memif socket id {uid} is registered in VPP for {filename}, not for this tunnel: is uid {uid} used by another tunnel on this VPP? Give each tunnel its own uid"
    )]
    UidInUse { uid: u32, filename: String },
    /// A step failed.
    #[error("VPP setup failed at \"{step}\": {source}{}", undo_note(.undo_failures))]
    Step {
        step: String,
        #[source]
        source: Box<VppError>,
        undo_failures: Vec<UndoFailure>,
    },
}

impl SetupError {
    /// True when a step failed because the connection to VPP was lost: VPP restarted (and what was made
    /// died with it) or only the connection dropped (and the next setup's sweep removes what was made).
    /// Setting up again once VPP answers is the remedy, not giving up.
    pub fn is_connection_lost(&self) -> bool {
        match self {
            Self::Step { source, .. } => source.is_connection_lost(),
            Self::Bvi(BviError::Lookup { source, .. }) => source.is_connection_lost(),
            _ => false,
        }
    }
}

fn undo_note(failures: &[UndoFailure]) -> String {
    if failures.is_empty() {
        String::new()
    } else {
        let list: Vec<String> = failures.iter().map(ToString::to_string).collect();
        format!(" (and rolling back failed: {})", list.join("; "))
    }
}

/// A tunnel's objects in VPP, with the record of how to remove them.
#[derive(Debug)]
pub struct VppTunnel {
    /// VPP's memif interface (`memif<uid>/<uid>`).
    pub memif_sw_if_index: u32,
    /// The bridge domain.
    pub bridge_id: u32,
    /// How routes and neighbours are installed (shared with the neighbour installer).
    pub installer: Installer,
    /// The client generation the objects were created under ([`Client::generation`]).
    pub generation: u64,
    undo: Vec<Undo>,
}

impl VppTunnel {
    /// Adds the l2fib entry `mac` → memif in the bridge (the original does this once the memif connects).
    /// Recorded for teardown on success; a failure is for the caller to log (VPP learns the MAC anyway).
    pub async fn add_l2fib(&mut self, client: &Client, mac: MacAddr) -> Result<(), VppError> {
        let entry = L2fibAddDel {
            mac,
            bd_id: self.bridge_id,
            sw_if_index: self.memif_sw_if_index,
            is_add: true,
            static_mac: false,
            filter_mac: false,
            bvi_mac: false,
        };
        client.request(&entry).await?;
        self.undo.push(Undo::L2fib {
            mac,
            bd_id: self.bridge_id,
            sw_if_index: self.memif_sw_if_index,
        });
        Ok(())
    }

    /// Records an object created elsewhere (e.g. the neighbour installer's entries) for teardown.
    pub fn record(&mut self, undo: Undo) {
        self.undo.push(undo);
    }

    /// Removes every recorded object, newest first; returns what could not be removed. After a reconnect
    /// (another client generation) VPP has restarted and the objects are already gone: nothing is sent.
    pub async fn teardown(self, client: &Client) -> Vec<UndoFailure> {
        if client.generation() != self.generation {
            tracing::info!(
                objects = self.undo.len(),
                "VPP restarted since setup: its objects are already gone, nothing to remove"
            );
            return Vec::new();
        }
        undo_all(client, self.undo).await
    }
}

/// Removes what a crashed earlier run of this tunnel left behind: the memifs on socket id `uid`, then the
/// socket id itself. Only when that socket id is registered for our own `socket_path` (or not at all): a
/// different file means another tunnel uses the same uid, and nothing is touched. Returns what was removed.
pub async fn sweep_stale(
    client: &Client,
    uid: u32,
    socket_path: &str,
) -> Result<Vec<Undo>, SetupError> {
    let failed = |source| SetupError::Step {
        step: "look for leftovers of an earlier run".to_owned(),
        source: Box::new(source),
        undo_failures: Vec::new(),
    };
    let sockets = client
        .dump(&MemifSocketFilenameDump)
        .await
        .map_err(failed)?;
    let Some(stale_socket) = sockets.into_iter().find(|s| s.socket_id == uid) else {
        return Ok(Vec::new());
    };
    if stale_socket.socket_filename != socket_path {
        return Err(SetupError::UidInUse {
            uid,
            filename: stale_socket.socket_filename,
        });
    }
    let mut removed = Vec::new();
    for memif in client.dump(&MemifDump).await.map_err(failed)? {
        if memif.socket_id == uid {
            tracing::warn!(interface = %memif.if_name, sw_if_index = memif.sw_if_index, "removing a stale memif from an earlier run");
            client
                .request(&MemifDelete {
                    sw_if_index: memif.sw_if_index,
                })
                .await
                .map_err(failed)?;
            removed.push(Undo::Memif {
                sw_if_index: memif.sw_if_index,
            });
        }
    }
    tracing::warn!(
        socket_id = uid,
        filename = socket_path,
        "removing a stale memif socket id from an earlier run"
    );
    let undo = Undo::MemifSocket {
        socket_id: uid,
        filename: stale_socket.socket_filename,
    };
    undo.apply(client).await.map_err(failed)?;
    removed.push(undo);
    Ok(removed)
}

/// Removes every neighbour entry in VPP that carries `mac`, the tunnel's own MAC: entries installed by a run
/// that died, and those VPP learned from our ARP/NDP answers, which would point at a MAC that is gone once
/// the tunnel stops (VPP does not age neighbours out unless configured to). Returns how many were removed.
pub async fn sweep_neighbours(client: &Client, mac: MacAddr) -> Result<usize, VppError> {
    let mut removed = 0;
    for ipv6 in [false, true] {
        let dump = IpNeighborDump {
            sw_if_index: u32::MAX,
            ipv6,
        };
        for entry in client.dump(&dump).await? {
            if entry.neighbor.mac_address != mac {
                continue;
            }
            let neighbor = entry.neighbor;
            client
                .request(&IpNeighborAddDel {
                    is_add: false,
                    neighbor,
                })
                .await?;
            tracing::debug!(ip = %neighbor.ip_address, sw_if_index = neighbor.sw_if_index, "removed a neighbour entry with our MAC");
            removed += 1;
        }
    }
    Ok(removed)
}

/// Creates the tunnel's objects in VPP: sweep, memif socket, memif, admin up, bridge port, host routes.
/// On failure, everything created so far is removed again, in reverse order.
pub async fn setup(client: &Client, params: &TunnelSetup) -> Result<VppTunnel, SetupError> {
    let generation = client.generation();
    params.validate()?;
    let needs_bvi = !params.host_routes.is_empty() || params.installs_neighbours;
    let installer = Installer::resolve(client, &params.install, &params.bvi, needs_bvi).await?;

    sweep_stale(client, params.uid, &params.socket_path).await?;

    let mut tx = Transaction {
        client,
        undo: Vec::new(),
    };

    let socket = MemifSocketFilenameAddDelV2 {
        is_add: true,
        socket_id: params.uid,
        socket_filename: params.socket_path.clone(),
    };
    tx.step("register the memif socket", client.request(&socket))
        .await?;
    tx.undo.push(Undo::MemifSocket {
        socket_id: params.uid,
        filename: params.socket_path.clone(),
    });

    let memif = tx
        .step(
            "create the memif interface",
            client.request(&params.memif_create()),
        )
        .await?;
    let sw_if_index = memif.sw_if_index;
    tx.undo.push(Undo::Memif { sw_if_index });

    let up = SwInterfaceSetFlags {
        sw_if_index,
        flags: IfStatusFlags::ADMIN_UP,
    };
    tx.step("set the memif admin up", client.request(&up))
        .await?;

    let port = SwInterfaceSetL2Bridge {
        rx_sw_if_index: sw_if_index,
        bd_id: params.bridge_id,
        port_type: L2PortType::Normal,
        shg: 0,
        enable: true,
    };
    tx.step("add the memif to the bridge domain", client.request(&port))
        .await?;

    for &ip in &params.host_routes {
        tx.step(
            &format!("add the host route {ip}"),
            installer.host_route(client, true, ip),
        )
        .await?;
        tx.undo.push(Undo::HostRoute {
            ip,
            installer: installer.clone(),
        });
    }

    tracing::info!(
        sw_if_index,
        uid = params.uid,
        bridge = params.bridge_id,
        "memif interface set up in VPP"
    );
    Ok(VppTunnel {
        memif_sw_if_index: sw_if_index,
        bridge_id: params.bridge_id,
        installer,
        generation,
        undo: tx.undo,
    })
}

/// The undo log of a setup in progress.
struct Transaction<'a> {
    client: &'a Client,
    undo: Vec<Undo>,
}

impl Transaction<'_> {
    /// Runs one step; on failure, undoes everything recorded so far and returns the error.
    async fn step<T>(
        &mut self,
        step: &str,
        action: impl Future<Output = Result<T, VppError>>,
    ) -> Result<T, SetupError> {
        match action.await {
            Ok(value) => Ok(value),
            Err(source) => {
                tracing::warn!(step, error = %source, undo = self.undo.len(), "VPP setup failed, rolling back");
                let undo_failures = undo_all(self.client, std::mem::take(&mut self.undo)).await;
                Err(SetupError::Step {
                    step: step.to_owned(),
                    source: Box::new(source),
                    undo_failures,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_hides_the_secret() {
        let mut setup = TunnelSetup::new(3, "/run/x.sock", 4242, MacAddr::default());
        setup.secret = "s3cr3t".into();
        let text = format!("{setup:?} {:?}", setup.memif_create());
        assert!(!text.contains("s3cr3t"), "{text}");
        assert!(text.contains("(redacted)"));
    }

    #[test]
    fn validation_names_the_field() {
        let mut setup = TunnelSetup::new(3, "/run/x.sock", 4242, MacAddr::default());
        setup.ring_size = 1000;
        let err = setup.validate().unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid ring_size: 1000 is not a power of two"
        );
    }
}
