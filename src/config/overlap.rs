//! The route-conflict check (spec 3.5, done right per B10): no two interfaces on one bridge may
//! answer ARP/NDP for overlapping response ranges.
//!
//! Decisions, where the original was broken:
//! - It runs only when `VppBridgeLoop_CheckRouteConflict` is true (the original ignored the flag). It
//!   scans the folders of `VppBridgeLoop_CheckRouteConfigPaths`, or the config folder when that list is
//!   empty (the original then checked nothing). A listed folder that cannot be read is an error: a
//!   check asked for must not silently check nothing.
//! - Both layouts are scanned: `if.<name>.json` anywhere, and `<name>.json` inside a folder named `if`.
//!   Files are grouped by interface name. Our own interface's files are never compared (the one loaded
//!   is ours; a shadowed copy in the other layout is already warned about). For another interface with
//!   files in both layouts, only the sub-directory ones count, as that is what it loads.
//! - Symlinked folders are not followed (as Go's `filepath.Walk`); symlinked files are read.
//! - A file that cannot be read or parsed cannot tell its bridge: it is reported as a warning and
//!   skipped. A file that parses and is on our bridge but has an invalid response range is an error
//!   naming that file, key and value, since the check cannot vouch for it.
//! - IPv4 and IPv6 response ranges are compared within their family; learning ranges are not checked.
//!   Two networks overlap when either contains the other's network address.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use super::file::{GatewayFile, InterfaceFile};
use super::layout::{Layout, read_bounded};
use super::validate::parse_list;
use super::{ConfigError, ConfigWarning, TunnelConfig};

/// Another interface's response ranges on our bridge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtherInterface {
    pub file: PathBuf,
    pub ipv4_response: Vec<Ipv4Net>,
    pub ipv6_response: Vec<Ipv6Net>,
}

/// The first overlap found: one of our networks and one of another interface's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overlap {
    pub ours: IpNet,
    pub other_file: PathBuf,
    pub theirs: IpNet,
}

/// Whether either network contains the other's network address.
pub fn networks_overlap(a: IpNet, b: IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// Compares our response ranges with each other interface's, IPv4 with IPv4 and IPv6 with IPv6, and
/// returns the first overlap in file order, then our order, then theirs.
pub fn find_overlap(
    ours_v4: &[Ipv4Net],
    ours_v6: &[Ipv6Net],
    others: &[OtherInterface],
) -> Option<Overlap> {
    let ours = ours_v4
        .iter()
        .map(|n| IpNet::V4(*n))
        .chain(ours_v6.iter().map(|n| IpNet::V6(*n)));
    let ours: Vec<IpNet> = ours.collect();
    others.iter().find_map(|other| {
        let theirs = other
            .ipv4_response
            .iter()
            .map(|n| IpNet::V4(*n))
            .chain(other.ipv6_response.iter().map(|n| IpNet::V6(*n)));
        let theirs: Vec<IpNet> = theirs.collect();
        ours.iter().find_map(|&mine| {
            theirs
                .iter()
                .find(|&&their| networks_overlap(mine, their))
                .map(|&theirs| Overlap {
                    ours: mine,
                    other_file: other.file.clone(),
                    theirs,
                })
        })
    })
}

/// Runs the check for a validated tunnel, whose gateway file is `gateway`.
pub(crate) fn check_conflicts(
    config: &TunnelConfig,
    gateway: &GatewayFile,
    config_dir: &Path,
    warnings: &mut Vec<ConfigWarning>,
) -> Result<(), ConfigError> {
    if !gateway.check_route_conflict {
        if !gateway.check_route_config_paths.is_empty() {
            warnings.push(ConfigWarning::Ignored {
                file: config.gateway_file.clone(),
                field: "VppBridgeLoop_CheckRouteConfigPaths".into(),
                message:
                    "set, but VppBridgeLoop_CheckRouteConflict is false: no conflict check is made"
                        .into(),
            });
        }
        return Ok(());
    }
    let folders: Vec<PathBuf> = if gateway.check_route_config_paths.is_empty() {
        vec![config_dir.to_owned()]
    } else {
        gateway
            .check_route_config_paths
            .iter()
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
            .collect()
    };
    let mut found = Vec::new();
    for folder in &folders {
        walk(folder, true, &mut found, warnings).map_err(|source| ConfigError::ConflictFolder {
            file: config.gateway_file.clone(),
            folder: folder.clone(),
            source,
        })?;
    }
    let others = read_others(config, select_files(&config.name, found), warnings)?;
    match find_overlap(
        &config.ranges.ipv4_response,
        &config.ranges.ipv6_response,
        &others,
    ) {
        None => Ok(()),
        Some(Overlap {
            ours,
            other_file,
            theirs,
        }) => Err(ConfigError::Overlap {
            our_file: config.interface_file.clone(),
            ours,
            other_file,
            theirs,
            bridge_id: config.bridge_id,
        }),
    }
}

/// An interface file found by the scan.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Found {
    path: PathBuf,
    name: String,
    layout: Layout,
}

/// Collects interface files under `folder`. Errors reading the top folder are returned; below it a
/// folder that cannot be read is skipped with a warning.
fn walk(
    folder: &Path,
    top: bool,
    found: &mut Vec<Found>,
    warnings: &mut Vec<ConfigWarning>,
) -> std::io::Result<()> {
    let entries = match std::fs::read_dir(folder) {
        Ok(entries) => entries,
        Err(err) if top => return Err(err),
        Err(err) => {
            warnings.push(ConfigWarning::ConflictSkipped {
                file: folder.to_owned(),
                reason: err.to_string(),
            });
            return Ok(());
        }
    };
    let mut paths: Vec<(PathBuf, std::fs::FileType)> = entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_type().ok().map(|t| (e.path(), t)))
        .collect();
    paths.sort_by(|a, b| a.0.cmp(&b.0));
    for (path, kind) in paths {
        if kind.is_dir() {
            walk(&path, false, found, warnings)?;
        } else if kind.is_file() || (kind.is_symlink() && path.is_file()) {
            found.extend(recognise(&path));
        }
    }
    Ok(())
}

/// `if.<name>.json`, or `<name>.json` in a folder named `if`.
fn recognise(path: &Path) -> Option<Found> {
    let file_name = path.file_name()?.to_str()?;
    let stem = file_name.strip_suffix(".json")?;
    if let Some(name) = stem.strip_prefix("if.").filter(|n| !n.is_empty()) {
        return Some(Found {
            path: path.to_owned(),
            name: name.to_owned(),
            layout: Layout::Flat,
        });
    }
    let in_if_folder = path.parent()?.file_name()? == "if";
    (in_if_folder && !stem.is_empty()).then(|| Found {
        path: path.to_owned(),
        name: stem.to_owned(),
        layout: Layout::SubDir,
    })
}

/// Drops our own interface's files and files found twice (nested or repeated folders), and for each
/// other interface keeps the files of its winning layout.
fn select_files(our_name: &str, found: Vec<Found>) -> Vec<Found> {
    let mut by_name: BTreeMap<String, Vec<Found>> = BTreeMap::new();
    for f in found.into_iter().filter(|f| f.name != our_name) {
        let files = by_name.entry(f.name.clone()).or_default();
        if !files.iter().any(|seen| seen.path == f.path) {
            files.push(f);
        }
    }
    by_name
        .into_values()
        .flat_map(|files| {
            let best = files.iter().map(|f| f.layout).min();
            files.into_iter().filter(move |f| Some(f.layout) == best)
        })
        .collect()
}

/// Reads the selected files and keeps those on our bridge.
fn read_others(
    config: &TunnelConfig,
    files: Vec<Found>,
    warnings: &mut Vec<ConfigWarning>,
) -> Result<Vec<OtherInterface>, ConfigError> {
    // A file reached under another name (a symlink to our own file) is still ours.
    let ours = std::fs::canonicalize(&config.interface_file).ok();
    let mut others = Vec::new();
    for Found { path, .. } in files {
        if ours.is_some() && std::fs::canonicalize(&path).ok() == ours {
            continue;
        }
        let parsed = read_bounded(&path)
            .map_err(|e| e.to_string())
            .and_then(|bytes| InterfaceFile::parse(&bytes).map_err(|e| e.to_string()));
        let file = match parsed {
            Ok(parsed) => parsed.file,
            Err(reason) => {
                warnings.push(ConfigWarning::ConflictSkipped { file: path, reason });
                continue;
            }
        };
        if file.vpp_bridge_id != config.bridge_id {
            continue;
        }
        // Their normalisation notes are theirs to hear, not ours.
        let mut ignored = Vec::new();
        let ipv4_response = parse_list(
            &path,
            "IPv4ArpResponseRanges",
            &file.ipv4_arp_response_ranges,
            &mut ignored,
        )?;
        let ipv6_response = parse_list(
            &path,
            "IPv6NdpNeighAdvRanges",
            &file.ipv6_ndp_neigh_adv_ranges,
            &mut ignored,
        )?;
        others.push(OtherInterface {
            file: path,
            ipv4_response,
            ipv6_response,
        });
    }
    Ok(others)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn other(file: &str, v4: &[&str], v6: &[&str]) -> OtherInterface {
        OtherInterface {
            file: PathBuf::from(file),
            ipv4_response: v4.iter().map(|s| s.parse().unwrap()).collect(),
            ipv6_response: v6.iter().map(|s| s.parse().unwrap()).collect(),
        }
    }

    #[test]
    fn overlap_table() {
        let cases: &[(&str, &str, bool)] = &[
            ("172.22.77.33/32", "172.22.77.32/30", true),
            ("172.22.77.32/30", "172.22.77.33/32", true),
            ("172.22.77.33/32", "172.22.77.33/32", true),
            ("172.22.77.33/32", "172.22.77.34/32", false),
            ("172.22.77.32/30", "172.22.77.36/30", false),
            ("10.0.0.0/8", "10.255.255.255/32", true),
            ("0.0.0.0/0", "192.0.2.1/32", true),
            ("fd28:cb8f:4c92::33/128", "fd28:cb8f:4c92::/64", true),
            ("fd28:cb8f:4c92::33/128", "fd28:cb8f:4c93::/64", false),
            ("fe80::42:1817:1/128", "fe80::/64", true),
            ("::/0", "2001:db8::1/128", true),
            // Different families never overlap, whatever their bits (::/0 and 0.0.0.0/0 included).
            ("0.0.0.0/0", "::/0", false),
            ("10.0.0.1/32", "::a00:1/128", false),
        ];
        for (a, b, want) in cases {
            let (a, b): (IpNet, IpNet) = (a.parse().unwrap(), b.parse().unwrap());
            assert_eq!(networks_overlap(a, b), *want, "{a} {b}");
            let (v4, v6) = match a {
                IpNet::V4(n) => (vec![n], vec![]),
                IpNet::V6(n) => (vec![], vec![n]),
            };
            let theirs = other("other.json", &[], &[]);
            let theirs = match b {
                IpNet::V4(n) => OtherInterface {
                    ipv4_response: vec![n],
                    ..theirs
                },
                IpNet::V6(n) => OtherInterface {
                    ipv6_response: vec![n],
                    ..theirs
                },
            };
            assert_eq!(
                find_overlap(&v4, &v6, &[theirs]).is_some(),
                *want,
                "find_overlap {a} {b}"
            );
        }
    }

    #[test]
    fn first_overlap_names_both_networks_and_the_file() {
        let ours_v4: Vec<Ipv4Net> = vec![
            "10.0.0.1/32".parse().unwrap(),
            "172.22.77.33/32".parse().unwrap(),
        ];
        let ours_v6: Vec<Ipv6Net> = vec!["fd00::1/128".parse().unwrap()];
        let others = [
            other("a.json", &["192.0.2.0/24"], &["fd01::/64"]),
            other("b.json", &["172.22.77.32/30"], &["fd00::/64"]),
        ];
        let hit = find_overlap(&ours_v4, &ours_v6, &others).unwrap();
        assert_eq!(
            hit,
            Overlap {
                ours: "172.22.77.33/32".parse().unwrap(),
                other_file: "b.json".into(),
                theirs: "172.22.77.32/30".parse().unwrap()
            }
        );
        assert_eq!(find_overlap(&ours_v4, &ours_v6, &others[..1]), None);
        assert_eq!(find_overlap(&[], &[], &others), None);
    }

    #[test]
    fn file_names_of_both_layouts_are_recognised() {
        let name = |p: &str| recognise(Path::new(p)).map(|f| (f.name, f.layout));
        assert_eq!(
            name("/etc/wggo-vpp/if.peer.json"),
            Some(("peer".into(), Layout::Flat))
        );
        assert_eq!(
            name("/etc/wggo-vpp/if/peer.json"),
            Some(("peer".into(), Layout::SubDir))
        );
        assert_eq!(
            name("/x/if/if.peer.json"),
            Some(("peer".into(), Layout::Flat))
        );
        assert_eq!(name("/etc/wggo-vpp/gw/4242.json"), None);
        assert_eq!(name("/etc/wggo-vpp/gw.4242.json"), None);
        assert_eq!(name("/etc/wggo-vpp/if.json"), None);
        assert_eq!(name("/etc/wggo-vpp/if/peer.json.bak"), None);
        assert_eq!(name("/etc/wggo-vpp/if/.json"), None);
    }

    #[test]
    fn selection_drops_ourselves_and_shadowed_flat_files() {
        let f = |path: &str, name: &str, layout| Found {
            path: path.into(),
            name: name.into(),
            layout,
        };
        let found = vec![
            f("c/if/home.json", "home", Layout::SubDir),
            f("c/if.home.json", "home", Layout::Flat),
            f("c/if.peer.json", "peer", Layout::Flat),
            f("c/if/peer.json", "peer", Layout::SubDir),
            f("c/if.old.json", "old", Layout::Flat),
            f("c/if/peer.json", "peer", Layout::SubDir),
        ];
        let kept: Vec<String> = select_files("home", found)
            .into_iter()
            .map(|f| f.path.display().to_string())
            .collect();
        assert_eq!(kept, ["c/if.old.json", "c/if/peer.json"]);
    }

    proptest::proptest! {
        /// Overlap means sharing at least one address: the ranges [network, broadcast] intersect.
        #[test]
        fn overlap_is_sharing_an_address(a in 0u32.., alen in 0u8..=32, b in 0u32.., blen in 0u8..=32) {
            let a = Ipv4Net::new(a.into(), alen).unwrap().trunc();
            let b = Ipv4Net::new(b.into(), blen).unwrap().trunc();
            let shared = a.network() <= b.broadcast() && b.network() <= a.broadcast();
            proptest::prop_assert_eq!(networks_overlap(IpNet::V4(a), IpNet::V4(b)), shared);
            proptest::prop_assert_eq!(networks_overlap(IpNet::V4(b), IpNet::V4(a)), shared);
        }
    }
}
