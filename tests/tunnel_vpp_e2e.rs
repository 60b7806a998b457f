//! The drop-in daemon `wireguard-vpp -f NAME` against a real VPP (scripts/peers/vpp.sh: the bridge 4242 with
//! its BVI loop42 as an operator lays it out) and a Debian wireguard-go peer. Every assertion reads VPP's own
//! state (its `show` commands) or the peer's (`wg show`, ping), never a list of the calls we make.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::vpp::{VppBed, text};

/// Our memif in VPP: `memif<uid>/<uid>`, uid 3 in the bed's config.
const MEMIF: &str = "memif3/3";

#[test]
fn the_memif_sits_in_the_bridge_and_pings_cross_both_ways_in_every_family() {
    let Some(mut bed) = VppBed::up() else { return };
    bed.start_tunnel();

    let memif = bed.vppctl("show memif");
    assert!(
        memif.contains(MEMIF) && memif.contains("connected"),
        "{memif}"
    );
    let bridge = bed.vppctl("show bridge-domain 4242 detail");
    assert!(
        bridge.contains(MEMIF) && bridge.contains("loop42"),
        "{bridge}"
    );
    // Host routes are attached to the BVI found by its exact name (loop42, not the decoy loop420).
    for route in [
        "show ip fib 172.22.77.33/32",
        "show ip6 fib fd28:cb8f:4c92::33/128",
    ] {
        let fib = bed.vppctl(route);
        assert!(
            fib.contains("attached") && fib.contains("loop42") && !fib.contains("loop420"),
            "{route}: {fib}"
        );
    }

    // From the peer through the tunnel to the BVI: VPP answers, its replies reach the peer through ARP/NDP
    // that we answer for the peer's addresses.
    bed.ping_from_peer("10.127.111.1", 20);
    bed.ping_from_peer("fd00:4242::1", 20);
    bed.ping_from_peer(&format!("fe80::4242%{}-w", bed.name()), 20);
    // From VPP to the peer.
    for dst in ["172.22.77.33", "fd28:cb8f:4c92::33", "fe80::42:1817:1"] {
        assert_eq!(bed.ping_from_vpp(dst, 10), 10, "ping {dst} from VPP");
    }

    // VPP learned the peer's addresses from our ARP/NDP answers: our MAC on the BVI.
    let neighbours = bed.vppctl("show ip neighbors");
    for ip in ["172.22.77.33", "fd28:cb8f:4c92::33", "fe80::42:1817:1"] {
        let line = neighbours.lines().find(|l| l.contains(ip));
        assert!(
            line.is_some_and(|l| l.contains("loop42") && l.contains("98:d2:93:00:00:03")),
            "{ip}: {neighbours}"
        );
    }
    let errors = bed.vppctl("show errors");
    assert!(!errors.contains("not local to subnet"), "{errors}");
}

/// Before the device has a private key it reads nothing, and the memif is read for it: VPP resolves
/// the peer's addresses through our answers all the same, the IP packets behind them are dropped and
/// counted, and once the key is set the same pings cross.
#[test]
fn arp_and_ndp_are_answered_before_there_is_a_key() {
    let Some(mut bed) = VppBed::up() else { return };
    bed.spawn_daemon(&[], &[]);
    bed.wait_until_up();

    for dst in ["172.22.77.33", "fd28:cb8f:4c92::33"] {
        let out = bed.vppctl(&format!("ping {dst} source loop42 repeat 3 interval 0.05"));
        assert!(
            out.contains(" 0 received"),
            "no key, yet {dst} answered: {out}"
        );
    }
    let neighbours = bed.vppctl("show ip neighbors");
    for ip in ["172.22.77.33", "fd28:cb8f:4c92::33"] {
        let line = neighbours.lines().find(|l| l.contains(ip));
        assert!(
            line.is_some_and(|l| l.contains("98:d2:93:00:00:03")),
            "{ip} not resolved before the key: {neighbours}"
        );
    }

    bed.configure_wireguard();
    for dst in ["172.22.77.33", "fd28:cb8f:4c92::33"] {
        assert_eq!(bed.ping_from_vpp(dst, 10), 10, "ping {dst} from VPP");
    }
    assert!(bed.signal_daemon("TERM").success(), "{}", bed.daemon_log());
    let log = bed.daemon_log();
    let stopped = log.lines().find(|l| l.contains("tunnel stopped"));
    assert!(
        stopped.is_some_and(|l| l.contains("device_busy=")),
        "the pings before the key are not counted as dropped: {log}"
    );
}

/// The case of the issue: no host routes, and the operator's DN42-style route `via 0.0.0.0 loop42` (an
/// attached route covering the peer's range) is what makes VPP resolve the peer by ARP.
#[test]
fn ipv4_works_through_an_attached_operator_route_without_host_routes() {
    let Some(mut bed) = VppBed::up() else { return };
    let gw = std::fs::read_to_string(bed.gw_file()).expect("gw file");
    std::fs::write(
        bed.gw_file(),
        gw.replace(
            r#""IPv4": true, "IPv6": true, "IPv6 link-local": true"#,
            r#""IPv4": false"#,
        ),
    )
    .expect("gw file");
    bed.vppctl("ip route add 172.20.0.0/14 via 0.0.0.0 loop42");
    bed.start_tunnel();
    let fib = bed.vppctl("show ip fib 172.22.77.33/32");
    assert!(
        fib.contains("172.20.0.0/14"),
        "no host route expected: {fib}"
    );
    assert_eq!(bed.ping_from_vpp("172.22.77.33", 10), 10);
    bed.ping_from_peer("10.127.111.1", 20);
}

/// SIGTERM, SIGHUP and SIGQUIT each remove every object the run created (the original died on the last
/// two and left everything, B12): VPP's state after equals its state before. The UAPI socket is the
/// owner's only while it runs.
#[test]
fn sigterm_sighup_and_sigquit_leave_vpp_as_it_was() {
    use std::os::unix::fs::PermissionsExt;
    let Some(mut bed) = VppBed::up() else { return };
    let before = bed.objects();
    for signal in ["TERM", "HUP", "QUIT"] {
        bed.start_tunnel();
        let mode = std::fs::metadata(bed.uapi_socket())
            .expect("UAPI socket")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700, "UAPI socket mode {mode:o}");
        assert_eq!(bed.ping_from_vpp("172.22.77.33", 5), 5);
        bed.ping_from_peer("fd00:4242::1", 5);
        assert_ne!(bed.objects(), before, "the tunnel created nothing?");
        bed.stop_leaving(signal, &before);
        assert!(!bed.memif_socket().exists() && !bed.uapi_socket().exists());
    }
}

/// VPP may start after the daemon (B27): it says it waits, and sets up once VPP answers. A stop signal
/// during that wait ends it at once, with nothing left behind.
#[test]
fn a_vpp_starting_later_is_waited_for_and_a_signal_ends_the_wait() {
    let Some(mut bed) = VppBed::up() else { return };
    bed.stop_vpp();
    bed.spawn_daemon(&[], &[]);
    std::thread::sleep(Duration::from_millis(700));
    assert!(bed.daemon_is_running(), "{}", bed.daemon_log());
    assert!(
        bed.daemon_log().contains("waiting for VPP"),
        "{}",
        bed.daemon_log()
    );
    let started = std::time::Instant::now();
    let status = bed.signal_daemon("TERM");
    assert!(status.success(), "{status}:\n{}", bed.daemon_log());
    assert!(started.elapsed() < Duration::from_secs(3), "slow to stop");
    assert!(!bed.memif_socket().exists() && !bed.uapi_socket().exists());

    bed.spawn_daemon(&[], &[]);
    std::thread::sleep(Duration::from_millis(700));
    bed.start_vpp();
    bed.wait_until_up();
    bed.configure_wireguard();
    assert_eq!(bed.ping_from_vpp("172.22.77.33", 5), 5);
}

/// SIGTERM while VPP is away (crashed, not back): the daemon stops at once with exit 0; the next VPP has
/// none of its objects anyway.
#[test]
fn sigterm_while_vpp_is_away_stops_at_once() {
    let Some(mut bed) = VppBed::up() else { return };
    bed.start_tunnel();
    bed.stop_vpp();
    std::thread::sleep(Duration::from_millis(500));
    assert!(bed.daemon_is_running(), "{}", bed.daemon_log());
    let started = std::time::Instant::now();
    let status = bed.signal_daemon("TERM");
    assert!(status.success(), "{status}:\n{}", bed.daemon_log());
    assert!(started.elapsed() < Duration::from_secs(3), "slow to stop");
    assert!(!bed.memif_socket().exists() && !bed.uapi_socket().exists());
}

/// Scenario 3: a response range that is not a single host gets no route; and scenario 10: the secret
/// "random" reaches VPP's memif and ours alike (VPP connects with it).
#[test]
fn a_range_that_is_no_host_gets_no_route_and_a_random_secret_connects() {
    let Some(mut bed) = VppBed::up() else { return };
    let config = std::fs::read_to_string(bed.if_file()).expect("if file");
    std::fs::write(
        bed.if_file(),
        config
            .replace("\"172.22.77.33/32\"", "\"172.22.77.32/30\"")
            .replace("\"demo-secret\"", "\"random\""),
    )
    .expect("if file");
    bed.start_tunnel();
    let fib = bed.vppctl("show ip fib");
    assert!(!fib.contains("172.22.77.32/30"), "{fib}");
    assert!(
        bed.vppctl("show ip6 fib")
            .contains("fd28:cb8f:4c92::33/128")
    );
}

/// Background mode really detaches (the original's did not): the launcher exits 0 once VPP's memif is
/// connected and the UAPI socket is up; the detached daemon serves, and removing its UAPI socket stops it
/// with the full undo.
#[test]
fn background_mode_detaches_once_up_and_undoes_at_the_end() {
    let Some(mut bed) = VppBed::up() else { return };
    let before = bed.objects();
    bed.spawn(&[], &[]);
    let status = bed.wait_daemon(Duration::from_secs(20));
    assert!(status.success(), "launcher: {status}\n{}", bed.daemon_log());
    assert!(
        bed.uapi_socket().exists(),
        "the launcher returned before the UAPI socket"
    );
    assert!(bed.vppctl("show memif").contains("connected"));
    bed.configure_wireguard();
    assert_eq!(bed.ping_from_vpp("172.22.77.33", 5), 5);
    std::fs::remove_file(bed.uapi_socket()).expect("remove the UAPI socket");
    bed.wait_for("the detached daemon's undo", 15, || bed.objects() == before);
}

/// Removing the UAPI socket stops the tunnel as SIGTERM does (the original's way to stop it).
#[test]
fn removing_the_uapi_socket_leaves_vpp_as_it_was() {
    let Some(mut bed) = VppBed::up() else { return };
    let before = bed.objects();
    bed.start_tunnel();
    assert_eq!(bed.ping_from_vpp("fd28:cb8f:4c92::33", 3), 3);
    std::fs::remove_file(bed.uapi_socket()).expect("remove the UAPI socket");
    let status = bed.wait_daemon(Duration::from_secs(15));
    assert!(status.success(), "{status}:\n{}", bed.daemon_log());
    assert_eq!(bed.objects(), before, "{}", bed.daemon_log());
}

/// `kill -9` leaves the run's objects in VPP; the next start sweeps them, and its SIGTERM leaves VPP as it
/// was before the first run.
#[test]
fn a_start_after_kill_9_sweeps_what_the_dead_run_left() {
    let Some(mut bed) = VppBed::up() else { return };
    let before = bed.objects();
    bed.start_tunnel();
    assert_eq!(bed.ping_from_vpp("172.22.77.33", 3), 3);
    bed.signal_daemon("KILL");
    assert!(
        bed.vppctl("show memif").contains(MEMIF),
        "kill -9 undid something?"
    );

    bed.start_tunnel();
    assert_eq!(bed.ping_from_vpp("172.22.77.33", 5), 5);
    bed.ping_from_peer("10.127.111.1", 5);
    bed.stop_leaving("TERM", &before);
}

/// VPP crashes and comes back: the daemon lives on, creates its objects again, keeps its WireGuard session
/// (no new handshake is needed for traffic), and pings flow again.
#[test]
fn a_vpp_restart_is_survived_with_the_session_kept() {
    let Some(mut bed) = VppBed::up() else { return };
    bed.start_tunnel();
    bed.ping_from_peer("10.127.111.1", 5);
    let handshake = bed.peer_wg_show("latest-handshakes");

    bed.restart_vpp();
    bed.wait_for("the memif in the restarted VPP", 20, || {
        bed.vppctl("show memif").contains("connected")
    });
    bed.ping_from_peer("10.127.111.1", 5);
    assert_eq!(bed.ping_from_vpp("fd28:cb8f:4c92::33", 5), 5);
    assert_eq!(
        bed.peer_wg_show("latest-handshakes"),
        handshake,
        "the session was not kept"
    );
    let status = bed.signal_daemon("TERM");
    assert!(status.success(), "{status}:\n{}", bed.daemon_log());
    assert!(!bed.vppctl("show memif").contains(MEMIF));
}

/// A config error exits 1 naming the file and field, before anything exists in VPP.
#[test]
fn a_bad_config_exits_1_and_creates_nothing_in_vpp() {
    let Some(mut bed) = VppBed::up() else { return };
    let before = bed.objects();
    let config = std::fs::read_to_string(bed.if_file()).expect("if file");
    std::fs::write(
        bed.if_file(),
        config.replace("172.22.77.33/32", "172.22.77.33/33"),
    )
    .expect("if file");
    bed.spawn_daemon(&[], &[]);
    let status = bed.wait_daemon(Duration::from_secs(15));
    let log = bed.daemon_log();
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(
        log.contains("IPv4ArpResponseRanges") && log.contains("172.22.77.33/33"),
        "{log}"
    );
    assert_eq!(bed.objects(), before);
    assert!(!bed.memif_socket().exists());
}

/// A BVI name that VPP does not have: exit 1 naming it (and the similar names), nothing left in VPP.
#[test]
fn an_unknown_bvi_exits_1_naming_it_and_leaves_nothing() {
    let Some(mut bed) = VppBed::up() else { return };
    let before = bed.objects();
    let gw = std::fs::read_to_string(bed.gw_file()).expect("gw file");
    std::fs::write(bed.gw_file(), gw.replace("\"loop42\"", "\"loop4\"")).expect("gw file");
    bed.spawn_daemon(&[], &[]);
    let status = bed.wait_daemon(Duration::from_secs(15));
    let log = bed.daemon_log();
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(log.contains("`loop4`") && log.contains("loop42"), "{log}");
    assert_eq!(bed.objects(), before);
}

/// An API socket nobody listens on: the daemon says at once that it waits for VPP, gives up after
/// `WGVPP_API_CONNECT_TIMEOUT` with exit 1 and the socket's path, and VPP (at its real socket) got nothing.
#[test]
fn an_unreachable_api_socket_is_reported_at_once_and_ends_in_exit_1() {
    let Some(mut bed) = VppBed::up() else { return };
    let before = bed.objects();
    let nowhere = bed.dir().join("nowhere.sock");
    bed.spawn_daemon(
        &[],
        &[
            ("VPP_API_SOCKET_PATH", nowhere.to_str().expect("utf-8 path")),
            ("WGVPP_API_CONNECT_TIMEOUT", "2"),
            // The default level (empty counts as unset).
            ("LOG_LEVEL", ""),
        ],
    );
    std::thread::sleep(Duration::from_millis(700));
    assert!(
        bed.daemon_log().contains("waiting for VPP"),
        "silent while waiting: {}",
        bed.daemon_log()
    );
    let status = bed.wait_daemon(Duration::from_secs(10));
    let log = bed.daemon_log();
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(log.contains("nowhere.sock"), "{log}");
    assert_eq!(bed.objects(), before);
    assert!(!bed.memif_socket().exists(), "{log}");
}

/// Our end as memif client (`--memif-role client`): VPP listens (memif master) on the socket it creates.
#[test]
fn the_client_role_connects_to_a_listening_vpp() {
    let Some(mut bed) = VppBed::up() else { return };
    let before = bed.objects();
    bed.spawn_daemon(&["--memif-role", "client"], &[]);
    bed.wait_until_up();
    bed.configure_wireguard();
    // VPP listens on socket id 3 and its memif is no slave.
    let memif = bed.vppctl("show memif");
    assert!(
        memif
            .lines()
            .any(|l| l.trim_start().starts_with("3 ") && l.contains("yes")),
        "{memif}"
    );
    let flags = memif.lines().find(|l| l.trim_start().starts_with("flags"));
    assert!(
        flags.is_some_and(|f| f.contains("connected") && !f.contains("slave")),
        "{memif}"
    );
    assert_eq!(bed.ping_from_vpp("172.22.77.33", 5), 5);
    bed.ping_from_peer("fd00:4242::1", 5);
    bed.stop_leaving("TERM", &before);
}

/// The vppctl install method, with VPP's real vppctl on the BVI's name.
#[test]
fn the_vppctl_install_method_installs_and_removes_through_the_real_vppctl() {
    let Some(mut bed) = VppBed::up() else { return };
    let before = bed.objects();
    // A wrapper that points VPP's vppctl at this instance's CLI socket, as an operator's would.
    let wrapper = bed.dir().join("vppctl");
    let home = String::from_utf8(
        std::process::Command::new(common::project_root().join("scripts/peers/vpp.sh"))
            .arg("home")
            .output()
            .expect("vpp.sh home")
            .stdout,
    )
    .expect("utf-8");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexec {}/bin/vppctl -s {}/vpp/cli.sock \"$@\"\n",
            home.trim(),
            bed.dir().display()
        ),
    )
    .expect("wrapper");
    let chmod = std::process::Command::new("chmod")
        .arg("+x")
        .arg(&wrapper)
        .output()
        .expect("chmod");
    assert!(chmod.status.success(), "{}", text(&chmod));
    let gw = std::fs::read_to_string(bed.gw_file()).expect("gw file");
    std::fs::write(
        bed.gw_file(),
        gw.replace(
            r#""VppBridgeLoop_InstallMethod": "api""#,
            &format!(
                r#""VppBridgeLoop_InstallMethod": "vppctl", "VppBridgeLoop_VppctlBinary": "{}""#,
                wrapper.display()
            ),
        ),
    )
    .expect("gw file");
    bed.start_tunnel();
    let fib = bed.vppctl("show ip fib 172.22.77.33/32");
    assert!(fib.contains("attached") && fib.contains("loop42"), "{fib}");
    assert_eq!(bed.ping_from_vpp("172.22.77.33", 5), 5);
    bed.stop_leaving("TERM", &before);
}

/// `delete interface memif` in a VPP that stays up: noticed through VPP's interface events (not a wait for a memif
/// that will never come back), created again, and traffic flows again.
#[test]
fn a_memif_deleted_by_hand_is_created_again() {
    let Some(mut bed) = VppBed::up() else { return };
    let before = bed.objects();
    bed.start_tunnel();
    assert_eq!(bed.ping_from_vpp("172.22.77.33", 3), 3);
    bed.vppctl(&format!("delete interface memif {MEMIF}"));
    bed.wait_for("the memif created again", 15, || {
        bed.vppctl("show memif").contains("connected")
    });
    assert!(bed.daemon_log().contains("VPP deleted our memif"));
    assert!(bed.vppctl("show bridge-domain 4242 detail").contains(MEMIF));
    assert_eq!(bed.ping_from_vpp("172.22.77.33", 5), 5);
    bed.ping_from_peer("fd00:4242::1", 5);
    bed.stop_leaving("TERM", &before);
}

/// Neighbour installs (`VppBridgeLoop_InstallNeighbor`) with each flag combination: after our ARP/NDP
/// answers, VPP's neighbour table holds the peer's addresses with our MAC and the flags asked for; SIGTERM
/// removes them with everything else.
#[test]
fn neighbour_installs_carry_each_flag_combination_and_are_removed() {
    let Some(mut bed) = VppBed::up() else { return };
    let gw = std::fs::read_to_string(bed.gw_file()).expect("gw file");
    for (flags, shown) in [
        (r#"{}"#, ""),
        (r#"{"static": true}"#, "S"),
        (r#"{"no-fib-entry": true}"#, "N"),
        (r#"{"static": true, "no-fib-entry": true}"#, "SN"),
    ] {
        let before = bed.objects();
        std::fs::write(
            bed.gw_file(),
            gw.replace(
                r#""VppBridgeLoop_InstallRoutes""#,
                &format!(
                    r#""VppBridgeLoop_InstallNeighbor": {{"IPv4": true, "IPv6": true, "IPv6 link-local": true}},
                       "VppBridgeLoop_InstallNeighbor_Flag": {flags}, "VppBridgeLoop_InstallRoutes""#
                ),
            ),
        )
        .expect("gw file");
        bed.start_tunnel();
        for dst in ["172.22.77.33", "fd28:cb8f:4c92::33"] {
            assert_eq!(bed.ping_from_vpp(dst, 3), 3, "{flags}: ping {dst}");
        }
        // VPP reaches a link-local address only through its neighbour's FIB entry, which no-fib-entry
        // leaves out: that ping fails by design, but its neighbour solicitation is answered and installed.
        let link_local = bed.ping_from_vpp("fe80::42:1817:1", 3);
        assert!(
            shown.contains('N') || link_local == 3,
            "{flags}: ping fe80::42:1817:1"
        );
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let neighbours = bed.vppctl("show ip neighbors");
            let installed = ["172.22.77.33", "fd28:cb8f:4c92::33", "fe80::42:1817:1"]
                .iter()
                .all(|ip| {
                    neighbours.lines().any(|l| {
                        let cols: Vec<&str> = l.split_whitespace().collect();
                        cols.contains(ip)
                            && cols.contains(&"98:d2:93:00:00:03")
                            && cols.contains(&"loop42")
                            && flag_column(&cols) == shown
                    })
                });
            if installed {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{flags}: expected flags {shown:?}: {neighbours}\n{}",
                bed.daemon_log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        bed.stop_leaving("TERM", &before);
    }
}

/// The flags of a `show ip neighbors` row (`Time IP Flags Ethernet Interface`): the column before the
/// MAC, "D" (dynamic) shown as "".
fn flag_column(cols: &[&str]) -> String {
    let mac = cols
        .iter()
        .position(|c| c.matches(':').count() == 5 && c.len() == 17);
    match mac {
        Some(i) if i >= 1 && !cols[i - 1].contains(['.', ':']) => cols[i - 1].replace('D', ""),
        _ => String::new(),
    }
}

/// IPv6 multicast from VPP into the bridge (a ping to ff02::1 out of the BVI) is carried to the peer, whose
/// answer comes back: routing protocols over the tunnel work.
#[test]
fn ipv6_multicast_from_vpp_reaches_the_peer() {
    let Some(mut bed) = VppBed::up() else { return };
    bed.start_tunnel();
    bed.ping_from_peer("fd00:4242::1", 1);
    let answered = bed.ping_from_vpp("ff02::1", 3);
    assert!(answered >= 1, "no answer to ff02::1:\n{}", bed.daemon_log());
}

/// The tunnel MTU comes from the BVI's (1500 less WireGuard's 80 bytes). From a host on VPP's bridge: the
/// largest packet that fits (1420 bytes) crosses with DF set; one byte more is answered with ICMP
/// "fragmentation needed" / "packet too big" naming 1420, which the host's kernel takes as the path MTU;
/// without DF a larger IPv4 packet is still carried.
#[test]
fn the_tunnel_mtu_is_the_bvis_less_80_and_larger_packets_get_icmp_too_big() {
    let Some(mut bed) = VppBed::up() else { return };
    bed.add_lan_host();
    bed.start_tunnel();
    assert!(
        bed.daemon_log().contains("mtu=1420 bvi_mtu=1500"),
        "{}",
        bed.daemon_log()
    );
    let ping = |args: &[&str]| {
        let mut argv = vec!["ping", "-c", "3", "-i", "0.2", "-W", "2"];
        argv.extend_from_slice(args);
        bed.in_ns("lan", &argv)
    };
    // Resolve ARP/ND and the handshake first.
    for dst in ["172.22.77.33", "fd28:cb8f:4c92::33"] {
        let warm = bed.in_ns("lan", &["ping", "-c", "1", "-w", "10", dst]);
        assert!(warm.status.success(), "{}", text(&warm));
    }

    // IPv4: 1392 bytes of payload make a 1420-byte packet.
    let fits = ping(&["-4", "-M", "do", "-s", "1392", "172.22.77.33"]);
    assert!(fits.status.success(), "1420 bytes: {}", text(&fits));
    let too_big = ping(&["-4", "-M", "do", "-s", "1393", "172.22.77.33"]);
    let report = text(&too_big);
    assert!(!too_big.status.success(), "1421 bytes crossed: {report}");
    assert!(
        report.contains("mtu = 1420") || report.contains("mtu=1420"),
        "{report}"
    );
    let unfragmentable = ping(&["-4", "-M", "dont", "-s", "1472", "172.22.77.33"]);
    assert!(
        unfragmentable.status.success(),
        "1500 bytes without DF: {}",
        text(&unfragmentable)
    );

    // IPv6: 1372 bytes of payload make a 1420-byte packet; IPv6 is never fragmented on the way.
    let fits = ping(&["-6", "-M", "do", "-s", "1372", "fd28:cb8f:4c92::33"]);
    assert!(fits.status.success(), "1420 bytes: {}", text(&fits));
    let too_big = ping(&["-6", "-M", "do", "-s", "1373", "fd28:cb8f:4c92::33"]);
    let report = text(&too_big);
    assert!(!too_big.status.success(), "1421 bytes crossed: {report}");
    assert!(
        report.contains("mtu=1420") || report.contains("mtu = 1420"),
        "{report}"
    );
}

/// A flood from VPP's side, more than the tunnel can encrypt: VPP's ARP for a peer address it forgot is
/// still answered, its pings still cross, and the tunnel carries traffic again once the flood ends.
#[test]
fn arp_is_answered_and_pings_cross_during_a_flood_from_the_bridge() {
    let Some(mut bed) = VppBed::up() else { return };
    bed.add_lan_host();
    bed.start_tunnel();
    assert_eq!(bed.ping_from_vpp("172.22.77.33", 3), 3);
    let flood = std::process::Command::new("ip")
        .args(["netns", "exec", &format!("{}-lan", bed.name())])
        .args(["python3", "-c", FLOOD])
        .spawn()
        .expect("flood starts");
    std::thread::sleep(Duration::from_millis(1000));
    bed.vppctl("set ip neighbor del loop42 172.22.77.33 98:d2:93:00:00:03");
    let answered = bed.vppctl("ping 172.22.77.33 source loop42 repeat 20 interval 0.1");
    let neighbours = bed.vppctl("show ip neighbors");
    let flood = flood.wait_with_output().expect("flood ends");
    assert!(flood.status.success(), "{}", text(&flood));
    assert!(
        neighbours.contains("172.22.77.33"),
        "VPP's ARP was not answered during the flood: {neighbours}"
    );
    assert!(
        answered.contains(" received") && !answered.contains(" 0 received"),
        "no ping crossed during the flood: {answered}"
    );
    assert_eq!(bed.ping_from_vpp("172.22.77.33", 5), 5);
}

/// UDP to the peer through the tunnel, as fast as Python sends, for four seconds.
const FLOOD: &str = r#"
import socket, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
payload = bytes(1000)
end = time.monotonic() + 4
while time.monotonic() < end:
    for _ in range(1000):
        try:
            s.sendto(payload, ("172.22.77.33", 9))
        except OSError:
            pass
"#;

/// Neighbours in the learning ranges (10.127.111.0/24 and fd00:4242::/64 in the bed's file) are resolved
/// by our own ARP/NS and reached directly, not through the BVI: the host on VPP's bridge answers our
/// solicitations (and so holds the peer's address with our MAC), and the peer's pings to it cross.
#[test]
fn neighbours_in_the_learning_ranges_are_resolved_and_reached_directly() {
    let Some(mut bed) = VppBed::up() else { return };
    bed.add_lan_host();
    bed.start_tunnel();
    bed.ping_from_peer("10.127.111.2", 10);
    bed.ping_from_peer("fd00:4242::2", 10);
    let neighbours = text(&bed.in_ns("lan", &["ip", "neigh", "show"]));
    for ip in ["172.22.77.33 ", "fd28:cb8f:4c92::33 "] {
        let line = neighbours.lines().find(|l| l.starts_with(ip));
        assert!(
            line.is_some_and(|l| l.contains("98:d2:93:00:00:03")),
            "{ip}was not solicited by us: {neighbours}"
        );
    }
}

/// `WGVPP_MEMIF_PEER_UID`: VPP (root here) is logged with its credentials when it connects, and refused
/// when another uid is the only one allowed; the tunnel then never comes up and says why.
#[test]
fn the_memif_peer_is_logged_and_can_be_restricted_to_a_uid() {
    let Some(mut bed) = VppBed::up() else { return };
    let before = bed.objects();
    bed.spawn_daemon(
        &[],
        &[
            ("WGVPP_MEMIF_PEER_UID", "4242"),
            ("WGVPP_MEMIF_CONNECT_TIMEOUT", "4"),
        ],
    );
    let status = bed.wait_daemon(Duration::from_secs(20));
    let log = bed.daemon_log();
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(
        log.contains("uid=0") && log.contains("may not connect"),
        "{log}"
    );
    assert_eq!(bed.objects(), before);

    bed.spawn_daemon(&[], &[("WGVPP_MEMIF_PEER_UID", "0")]);
    bed.wait_until_up();
    assert!(bed.daemon_log().contains("memif: a peer connects"));
}

/// A TCP stream from a host on VPP's bridge to the peer, while our end forgets its session with the peer
/// and is given the peer back every second (over UAPI, as `wg set` does): each time our next packet starts
/// a new handshake, as a rekey does. Every byte arrives, in order, and the stream ends; the peer saw a new
/// handshake each time. (The other way round, the peer forgetting us, stalls the stream by design: a
/// sender whose packets go unanswered waits 15 s before it handshakes again, as WireGuard specifies.)
#[test]
fn a_tcp_stream_crosses_forced_rekeys_whole() {
    let Some(mut bed) = VppBed::up() else { return };
    bed.add_lan_host();
    bed.start_tunnel();
    assert_eq!(bed.ping_from_vpp("172.22.77.33", 3), 3);

    let receiver = Command::new("ip")
        .args(["netns", "exec", &format!("{}-peer", bed.name())])
        .args(["python3", "-c", common::TCP_RECEIVER])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 receiver");
    std::thread::sleep(Duration::from_millis(500));
    let sender = Command::new("ip")
        .args(["netns", "exec", &format!("{}-lan", bed.name())])
        .args(["python3", "-c", &common::tcp_sender(16, 0.06)])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 sender");

    let peer = std::fs::read_to_string(bed.dir().join("keys/peer.pub")).expect("the peer's key");
    let peer = peer.trim();
    let mut handshakes = std::collections::HashSet::new();
    for _ in 0..6 {
        std::thread::sleep(Duration::from_millis(1000));
        handshakes.insert(bed.peer_wg_show("latest-handshakes"));
        let removed = Command::new("wg")
            .args(["set", bed.name(), "peer", peer, "remove"])
            .status()
            .expect("wg runs");
        let added = Command::new("wg")
            .args([
                "set",
                bed.name(),
                "peer",
                peer,
                "endpoint",
                "10.99.77.2:51821",
            ])
            .args(["allowed-ips", "172.22.77.33/32,fd28:cb8f:4c92::33/128"])
            .status()
            .expect("wg runs");
        assert!(removed.success() && added.success(), "wg set on our end");
    }
    let sent = sender.wait_with_output().expect("sender ends");
    let received = receiver.wait_with_output().expect("receiver ends");
    let (sent, received) = (text(&sent), text(&received));
    assert!(
        sent.starts_with("16777216 "),
        "sender: {sent}\n{}",
        bed.daemon_log()
    );
    assert_eq!(
        sent.trim(),
        received.trim(),
        "the peer did not get the same bytes\n{}",
        bed.daemon_log()
    );
    handshakes.insert(bed.peer_wg_show("latest-handshakes"));
    assert!(
        handshakes.len() >= 4,
        "the peer saw no new handshakes: {handshakes:?}"
    );
}

/// One flow keeps its order through the whole path, both ways: numbered UDP datagrams from a host on
/// VPP's bridge to the peer (memif RX, our encrypting loop, UDP) and back (our decrypting loop, memif TX,
/// VPP's bridge), in bursts of 64. Datagrams may be lost under load; none may overtake another.
#[test]
fn one_flow_keeps_its_order_both_ways() {
    let Some(mut bed) = VppBed::up() else { return };
    bed.add_lan_host();
    bed.start_tunnel();
    assert_eq!(bed.ping_from_vpp("172.22.77.33", 3), 3);
    let run = |receiver_ns: &str, receiver: String, sender_ns: &str, sender: String| {
        let receiving = Command::new("ip")
            .args(["netns", "exec", &format!("{}-{receiver_ns}", bed.name())])
            .args(["python3", "-c", &receiver])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("python3 receiver");
        std::thread::sleep(Duration::from_millis(500));
        let sent = Command::new("ip")
            .args(["netns", "exec", &format!("{}-{sender_ns}", bed.name())])
            .args(["python3", "-c", &sender])
            .output()
            .expect("python3 sender");
        assert!(sent.status.success(), "sender: {}", text(&sent));
        let out = receiving.wait_with_output().expect("receiver ends");
        let counts: Vec<u32> = text(&out)
            .split_whitespace()
            .filter_map(|n| n.parse().ok())
            .collect();
        assert_eq!(counts.len(), 2, "receiver: {}", text(&out));
        (counts[0], counts[1])
    };
    const COUNT: u32 = 20_000;
    let to_peer = run(
        "peer",
        common::udp_sequence_receiver("172.22.77.33", 5301),
        "lan",
        common::udp_sequence_sender("172.22.77.33", 5301, COUNT),
    );
    let to_lan = run(
        "lan",
        common::udp_sequence_receiver("10.127.111.2", 5302),
        "peer",
        common::udp_sequence_sender("10.127.111.2", 5302, COUNT),
    );
    eprintln!("in order: to the peer {to_peer:?}, to the bridge {to_lan:?} (received, reordered)");
    for (way, (received, reordered)) in [("to the peer", to_peer), ("to the bridge", to_lan)] {
        assert!(
            received > COUNT / 2,
            "{way}: only {received} of {COUNT} arrived\n{}",
            bed.daemon_log()
        );
        assert_eq!(
            reordered, 0,
            "{way}: {reordered} of {received} came out of order"
        );
    }
}
