//! What tunnels that no longer exist left in VPP, found and removed when an agent starts.
//!
//! An agent killed with `kill -9` (or OOM-killed, or on a node that lost power) undoes nothing; its
//! successor sweeps the objects of the tunnels it starts again (their uid and MAC, see
//! `vpp::setup`), but a tunnel deleted while no agent ran is never started again. So the runtime
//! keeps, next to each tunnel's memif socket, a record of what that tunnel creates in VPP
//! (`<memif socket dir>/<name>.wgvpp.json`: uid, socket, MAC, host routes, install method; no
//! secret), written before anything is created and removed once the tunnel is stopped. At start,
//! before any tunnel runs, every record (and every memif socket id registered for a file of the
//! memif socket directory) whose interface belongs to none of the node's tunnels is an orphan:
//! its memifs and socket id, host routes and neighbour entries are removed from VPP, then its
//! socket file and record. A socket that a process still serves (the drop-in daemon running a
//! tunnel of that name, say) is never an orphan.
//!
//! The memif socket directory belongs to the agent (the chart's `vpp.memifSocketDir`).

use std::collections::{BTreeSet, HashSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{InstallMethod, TunnelConfig};
use crate::mac::MacAddr;
use crate::vpp::{self, Bvi, Client, ClientOptions, Installer};

/// The suffix of a record, after the interface name.
pub const RECORD_SUFFIX: &str = ".wgvpp.json";

/// How long the sweep waits for VPP's API at start: a VPP that is not up has nothing to sweep now.
const CONNECT_WAIT: Duration = Duration::from_secs(5);

/// What one tunnel creates in VPP, enough to remove it without its resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The interface name.
    pub name: String,
    /// memif socket id and interface id.
    pub uid: u32,
    /// The memif socket.
    pub socket: PathBuf,
    /// The bridge domain.
    pub bridge_id: u32,
    /// Our MAC: the neighbour entries and the l2fib entry VPP holds for the tunnel carry it.
    pub self_mac: String,
    /// Host routes on the BVI.
    pub host_routes: Vec<IpAddr>,
    /// `api`, `vppctl` or `none`.
    pub install: String,
    /// The vppctl program, for `vppctl`.
    pub vppctl: String,
    /// The BVI's name.
    pub bvi_name: String,
    /// The BVI's index, when configured.
    pub bvi_sw_if_index: Option<u32>,
}

impl Record {
    /// The record of the tunnel `cfg`.
    pub fn of(cfg: &TunnelConfig) -> Record {
        let setup = crate::tunnel::settings::vpp_setup(cfg, false);
        Record {
            name: cfg.name.clone(),
            uid: cfg.uid,
            socket: cfg.memif_socket.clone(),
            bridge_id: cfg.bridge_id,
            self_mac: cfg.self_mac.to_string(),
            host_routes: setup.host_routes,
            install: match cfg.install.method {
                InstallMethod::Api => "api",
                InstallMethod::Vppctl => "vppctl",
                InstallMethod::None => "none",
            }
            .into(),
            vppctl: cfg.install.vppctl_binary.clone(),
            bvi_name: cfg.install.bvi_name.clone(),
            bvi_sw_if_index: cfg.install.bvi_sw_if_index,
        }
    }

    /// Where the record of the tunnel with memif socket `socket` lives.
    pub fn path_for(socket: &Path) -> PathBuf {
        let name = socket
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        socket.with_file_name(format!("{name}{RECORD_SUFFIX}"))
    }

    /// Writes the record next to the memif socket (owner-only; it holds no secret, but no one else
    /// needs it).
    pub fn write(&self) -> std::io::Result<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let path = Record::path_for(&self.socket);
        let text = serde_json::to_vec(self).map_err(std::io::Error::other)?;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)?;
        file.write_all(&text)
    }

    /// Removes the record of the tunnel with memif socket `socket`; a missing one is fine.
    pub fn remove(socket: &Path) {
        let path = Record::path_for(socket);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => {
                tracing::warn!(record = %path.display(), %error, "cannot remove the tunnel's record")
            }
        }
    }

    fn installer_method(&self) -> vpp::InstallMethod {
        match self.install.as_str() {
            "api" => vpp::InstallMethod::Api,
            "vppctl" => vpp::InstallMethod::Vppctl {
                binary: self.vppctl.clone().into(),
            },
            _ => vpp::InstallMethod::None,
        }
    }
}

/// What a sweep removed, by orphan interface name.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// The orphans found (interface names).
    pub orphans: BTreeSet<String>,
    /// VPP objects removed (memifs, socket ids, routes, neighbour entries).
    pub removed: usize,
}

/// Removes the VPP objects, memif sockets and records of every tunnel of the memif socket directory
/// `memif_dir` whose interface name is not in `live` (the interface names of the node's tunnels).
/// Best effort: what fails is logged and left for the next start. Call it before any tunnel starts.
pub async fn sweep(api_socket: &Path, memif_dir: &Path, live: &HashSet<String>) -> SweepReport {
    let mut report = SweepReport::default();
    let records = read_records(memif_dir);
    let mut options = ClientOptions::new(api_socket);
    options.connect_deadline = Duration::ZERO;
    let connect = tokio::time::timeout(CONNECT_WAIT, Client::connect(options));
    let client = match connect.await {
        Ok(Ok(client)) => client,
        Ok(Err(error)) => {
            tracing::warn!(%error, "cannot reach VPP's API to look for what deleted tunnels left; looking again at the next start");
            return report;
        }
        Err(_) => {
            tracing::warn!(
                "VPP's API did not answer in time to look for what deleted tunnels left; looking again at the next start"
            );
            return report;
        }
    };
    // Routes that a live tunnel installs too stay (a tunnel deleted and created again under
    // another name, with the same addresses).
    let live_routes: HashSet<IpAddr> = records
        .iter()
        .filter(|r| live.contains(&r.name))
        .flat_map(|r| r.host_routes.iter().copied())
        .collect();
    let mut orphans: Vec<Record> = records
        .into_iter()
        .filter(|r| !live.contains(&r.name) && !served(&r.socket))
        .collect();
    // Socket ids of our directory without a record (an agent of an older version).
    match client.dump(&vpp::messages::MemifSocketFilenameDump).await {
        Ok(sockets) => {
            for socket in sockets {
                let path = PathBuf::from(&socket.socket_filename);
                let Some(name) = interface_of(memif_dir, &path) else {
                    continue;
                };
                if live.contains(&name) || orphans.iter().any(|o| o.socket == path) || served(&path)
                {
                    continue;
                }
                orphans.push(Record {
                    name,
                    uid: socket.socket_id,
                    socket: path,
                    bridge_id: 0,
                    self_mac: String::new(),
                    host_routes: Vec::new(),
                    install: "none".into(),
                    vppctl: String::new(),
                    bvi_name: String::new(),
                    bvi_sw_if_index: None,
                });
            }
        }
        Err(error) => {
            tracing::warn!(%error, "cannot list VPP's memif sockets");
        }
    }
    for orphan in orphans {
        report.removed += remove_orphan(&client, &orphan, &live_routes).await;
        report.orphans.insert(orphan.name);
    }
    let _ = client.close().await;
    report
}

/// Removes one orphan; returns how many VPP objects went.
async fn remove_orphan(client: &Client, orphan: &Record, live_routes: &HashSet<IpAddr>) -> usize {
    let name = orphan.name.as_str();
    tracing::info!(
        tunnel = name,
        uid = orphan.uid,
        "removing what a deleted tunnel left in VPP"
    );
    let mut removed = 0;
    let mut complete = true;
    // The bridge's entry for our MAC: removed while its memif exists (VPP keeps it, "Stale", after
    // the memif is gone, and then refuses to find it).
    if let (Ok(mac), Ok(memifs)) = (
        orphan.self_mac.parse::<MacAddr>(),
        client.dump(&vpp::messages::MemifDump).await,
    ) {
        for memif in memifs.iter().filter(|m| m.socket_id == orphan.uid) {
            let l2fib = vpp::messages::L2fibAddDel {
                mac,
                bd_id: orphan.bridge_id,
                sw_if_index: memif.sw_if_index,
                is_add: false,
                static_mac: false,
                filter_mac: false,
                bvi_mac: false,
            };
            match client.request(&l2fib).await {
                Ok(_) => removed += 1,
                Err(error) => tracing::debug!(tunnel = name, %error, "no l2fib entry removed"),
            }
        }
    }
    match vpp::sweep_stale(client, orphan.uid, &orphan.socket.to_string_lossy()).await {
        Ok(undone) => removed += undone.len(),
        // Another tunnel's socket has that id now: its memifs are not ours.
        Err(vpp::SetupError::UidInUse { .. }) => {}
        Err(error) => {
            complete = false;
            tracing::warn!(tunnel = name, %error, "cannot remove the deleted tunnel's memif");
        }
    }
    let routes: Vec<IpAddr> = orphan
        .host_routes
        .iter()
        .copied()
        .filter(|ip| !live_routes.contains(ip))
        .collect();
    if !routes.is_empty() {
        let bvi = Bvi {
            sw_if_index: orphan.bvi_sw_if_index.unwrap_or(0),
            name: orphan.bvi_name.clone(),
        };
        match Installer::resolve(client, &orphan.installer_method(), &bvi, true).await {
            Ok(installer) => {
                for ip in routes {
                    match installer.host_route(client, false, ip).await {
                        Ok(()) => removed += 1,
                        // Already gone (VPP restarted meanwhile, or removed by hand).
                        Err(error) => {
                            tracing::debug!(tunnel = name, %ip, %error, "host route not removed")
                        }
                    }
                }
            }
            Err(error) => {
                complete = false;
                tracing::warn!(tunnel = name, %error, "cannot find the BVI of the deleted tunnel's routes");
            }
        }
    }
    if let Ok(mac) = orphan.self_mac.parse::<MacAddr>() {
        match vpp::sweep_neighbours(client, mac).await {
            Ok(count) => removed += count,
            Err(error) => {
                complete = false;
                tracing::warn!(tunnel = name, %error, "cannot remove the deleted tunnel's neighbour entries");
            }
        }
    }
    if complete {
        match std::fs::remove_file(&orphan.socket) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => {
                tracing::warn!(tunnel = name, socket = %orphan.socket.display(), %error, "cannot remove the deleted tunnel's memif socket")
            }
        }
        Record::remove(&orphan.socket);
    }
    tracing::info!(
        tunnel = name,
        removed,
        complete,
        "swept what a deleted tunnel left"
    );
    removed
}

/// The records in `memif_dir`; unreadable ones are logged and skipped.
fn read_records(memif_dir: &Path) -> Vec<Record> {
    let Ok(entries) = std::fs::read_dir(memif_dir) else {
        return Vec::new();
    };
    let mut records = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if !path.to_string_lossy().ends_with(RECORD_SUFFIX) {
            continue;
        }
        match std::fs::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|bytes| serde_json::from_slice::<Record>(&bytes).map_err(|e| e.to_string()))
        {
            Ok(record) => records.push(record),
            Err(error) => {
                tracing::warn!(record = %path.display(), %error, "ignoring an unreadable tunnel record")
            }
        }
    }
    records
}

/// The interface name of memif socket `path` when it is a `<name>.sock` directly in `memif_dir`.
fn interface_of(memif_dir: &Path, path: &Path) -> Option<String> {
    if path.parent()? != memif_dir {
        return None;
    }
    let file = path.file_name()?.to_str()?;
    file.strip_suffix(".sock")
        .filter(|name| !name.is_empty())
        .map(str::to_owned)
}

/// Whether a process listens on the Unix socket `path` (a tunnel of that name runs somewhere).
fn served(path: &Path) -> bool {
    std::os::unix::net::UnixStream::connect(path).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_sockets_directly_in_the_directory_name_an_interface() {
        let dir = Path::new("/run/wggo-vpp");
        assert_eq!(
            interface_of(dir, Path::new("/run/wggo-vpp/home.sock")).as_deref(),
            Some("home")
        );
        assert_eq!(interface_of(dir, Path::new("/run/vpp/memif.sock")), None);
        assert_eq!(
            interface_of(dir, Path::new("/run/wggo-vpp/x/home.sock")),
            None
        );
        assert_eq!(interface_of(dir, Path::new("/run/wggo-vpp/.sock")), None);
        assert_eq!(
            Record::path_for(Path::new("/run/wggo-vpp/home.sock")),
            Path::new("/run/wggo-vpp/home.wgvpp.json")
        );
    }

    #[test]
    fn a_record_round_trips_and_is_read_back_from_the_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let record = Record {
            name: "home".into(),
            uid: 3,
            socket: dir.path().join("home.sock"),
            bridge_id: 4242,
            self_mac: "98:d2:93:00:00:03".into(),
            host_routes: vec!["172.22.77.33".parse().expect("ip")],
            install: "api".into(),
            vppctl: String::new(),
            bvi_name: "loop42".into(),
            bvi_sw_if_index: None,
        };
        record.write().expect("written");
        std::fs::write(dir.path().join("junk.wgvpp.json"), b"{").expect("junk");
        assert_eq!(read_records(dir.path()), std::slice::from_ref(&record));
        Record::remove(&record.socket);
        assert!(read_records(dir.path()).is_empty());
    }
}
