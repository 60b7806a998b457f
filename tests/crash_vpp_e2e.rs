//! Crash and restart against a real VPP (issue 15): `kill -9` of the daemon at each step of its setup,
//! mid-traffic and at each step of its teardown, then a new start; and VPP killed at each step of our setup.
//! After each crash the next run sweeps what the dead one left, traffic flows again, and its SIGTERM leaves
//! VPP's own dumps as they were before the first run.
//!
//! The crash points are exact, not guessed delays: the daemon reaches VPP through an [`ApiGate`], which
//! stops the daemon's API connection at a named request (the setup and teardown steps are not each
//! logged, and a log line is seen only after the daemon has gone on). While it is held, VPP has exactly
//! the objects of the requests before it, which each case checks before crashing anything.

mod common;

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use common::vpp::{ApiGate, VppBed};

/// Our memif in VPP: `memif<uid>/<uid>`, uid 3 in the bed's config.
const MEMIF: &str = "memif3/3";
/// Our MAC (`WgIfMacaddrPrefix` + uid).
const OUR_MAC: &str = "98:d2:93:00:00:03";
/// The host routes of the bed's config, in the order they are added.
const ROUTES: [&str; 3] = [
    "172.22.77.33/32",
    "fd28:cb8f:4c92::33/128",
    "fe80::42:1817:1/128",
];
/// The peer's addresses behind the tunnel.
const PEER_IPS: [&str; 3] = ["172.22.77.33", "fd28:cb8f:4c92::33", "fe80::42:1817:1"];

/// What of the tunnel is in VPP, read from VPP's own dumps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Left {
    /// The memif socket id with our socket file.
    socket: bool,
    /// The memif interface.
    memif: bool,
    /// The memif admin up.
    up: bool,
    /// The memif a port of bridge 4242.
    in_bridge: bool,
    /// How many of [`ROUTES`] are in the FIB.
    routes: usize,
    /// The l2fib entry for our MAC.
    l2fib: bool,
    /// Neighbour entries with our MAC.
    neighbours: usize,
}

impl Left {
    fn read(bed: &VppBed) -> Left {
        let memif = bed.vppctl("show memif");
        let interfaces = bed.vppctl("show interface");
        let neighbours = bed.vppctl("show ip neighbors");
        Left {
            socket: memif.contains(&format!("/{}.sock", bed.name())),
            memif: memif.contains(MEMIF),
            up: interfaces.lines().any(|l| {
                let cols: Vec<&str> = l.split_whitespace().collect();
                cols.first() == Some(&MEMIF) && cols.get(2) == Some(&"up")
            }),
            in_bridge: bed.vppctl("show bridge-domain 4242 detail").contains(MEMIF),
            routes: ROUTES.iter().filter(|r| host_route(bed, r)).count(),
            l2fib: bed.vppctl("show l2fib verbose").contains(OUR_MAC),
            neighbours: neighbours.lines().filter(|l| l.contains(OUR_MAC)).count(),
        }
    }

    /// The complete set of a running tunnel (neighbours aside: they depend on traffic).
    fn complete(neighbours: usize) -> Left {
        Left {
            socket: true,
            memif: true,
            up: true,
            in_bridge: true,
            routes: ROUTES.len(),
            l2fib: true,
            neighbours,
        }
    }
}

/// Whether VPP's FIB has `prefix` from the API (a neighbour entry makes a FIB entry of the same prefix, as
/// the adjacency source).
fn host_route(bed: &VppBed, prefix: &str) -> bool {
    let family = if prefix.contains(':') { "ip6" } else { "ip" };
    let entry = bed.vppctl(&format!("show {family} fib {prefix}"));
    let head = format!("{prefix} fib:");
    entry.lines().any(|l| l.starts_with(&head)) && entry.contains("\n  API refs:")
}

/// A crash point: the request to hold, which of its occurrences, and what VPP then holds of the tunnel.
struct Point {
    what: &'static str,
    message: &'static str,
    nth: u32,
    left: Left,
}

const SOCKET: Left = Left {
    socket: true,
    memif: false,
    up: false,
    in_bridge: false,
    routes: 0,
    l2fib: false,
    neighbours: 0,
};
const MEMIF_DOWN: Left = Left {
    memif: true,
    ..SOCKET
};
const MEMIF_UP: Left = Left {
    up: true,
    ..MEMIF_DOWN
};
const IN_BRIDGE: Left = Left {
    in_bridge: true,
    ..MEMIF_UP
};
const fn with_routes(routes: usize) -> Left {
    Left {
        routes,
        ..IN_BRIDGE
    }
}

/// The steps of setup, each point right after one of them (the request of the next one held).
const SETUP_POINTS: [Point; 9] = [
    Point {
        what: "API connected, leftovers swept, BVI found",
        message: "memif_socket_filename_add_del_v2",
        nth: 1,
        left: Left {
            socket: false,
            ..SOCKET
        },
    },
    Point {
        what: "memif socket id registered",
        message: "memif_create_v2",
        nth: 1,
        left: SOCKET,
    },
    Point {
        what: "memif created",
        message: "sw_interface_set_flags",
        nth: 1,
        left: MEMIF_DOWN,
    },
    Point {
        what: "memif admin up",
        message: "sw_interface_set_l2_bridge",
        nth: 1,
        left: MEMIF_UP,
    },
    Point {
        what: "memif in the bridge",
        message: "ip_route_add_del",
        nth: 1,
        left: with_routes(0),
    },
    Point {
        what: "first host route",
        message: "ip_route_add_del",
        nth: 2,
        left: with_routes(1),
    },
    Point {
        what: "second host route",
        message: "ip_route_add_del",
        nth: 3,
        left: with_routes(2),
    },
    Point {
        what: "every host route",
        message: "want_interface_events",
        nth: 1,
        left: with_routes(3),
    },
    Point {
        what: "memif connected, before the l2fib entry",
        message: "l2fib_add_del",
        nth: 1,
        left: with_routes(3),
    },
];

/// Starts the daemon through `gate` (nothing held), waits until it is up and configures WireGuard.
fn start_through(bed: &mut VppBed, gate: &ApiGate) {
    bed.spawn_daemon(&[], &[("VPP_API_SOCKET_PATH", gate.path())]);
    bed.wait_until_up();
    bed.configure_wireguard();
}

/// Holds `point` (the daemon just started through `gate`, or running) and checks what VPP has then.
fn hold_at(bed: &VppBed, gate: &ApiGate, point: &Point) {
    gate.wait_held(20, || bed.daemon_log());
    assert_eq!(
        Left::read(bed),
        point.left,
        "held before {} #{} ({}): VPP has another state than expected\n{}",
        point.message,
        point.nth,
        point.what,
        bed.daemon_log()
    );
}

/// A new run after a crash: it comes up, traffic flows both ways, and its SIGTERM leaves VPP as `before`.
/// Before any traffic it has no neighbour entry with our MAC: those of the dead run are swept.
fn next_run_works_and_leaves(bed: &mut VppBed, gate: &ApiGate, before: &str, case: &str) {
    start_through(bed, gate);
    assert_eq!(
        Left::read(bed),
        Left::complete(0),
        "{case}: the new run's objects before any traffic\n{}",
        bed.daemon_log()
    );
    works_and_leaves(bed, before, case);
}

/// The run just started has the complete set of objects, traffic flows both ways, and its SIGTERM leaves
/// VPP as `before`.
fn works_and_leaves(bed: &mut VppBed, before: &str, case: &str) {
    let left = Left::read(bed);
    assert_eq!(
        left,
        Left::complete(left.neighbours),
        "{case}: the new run's objects\n{}",
        bed.daemon_log()
    );
    assert_eq!(bed.ping_from_vpp("172.22.77.33", 3), 3, "{case}");
    bed.ping_from_peer("fd00:4242::1", 3);
    let status = bed.signal_daemon("TERM");
    assert!(status.success(), "{case}: {status}\n{}", bed.daemon_log());
    // VPP's bridge counts learned MACs down in its l2fib scan, a moment after the memif is gone.
    let deadline = Instant::now() + Duration::from_secs(10);
    while bed.objects() != before && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(bed.objects(), before, "{case}: {}", bed.daemon_log());
}

/// Writes the gateway file with neighbour installs on: the daemon's own neighbour entries are then
/// among what a crash leaves.
fn install_neighbours(bed: &VppBed) {
    let gw = std::fs::read_to_string(bed.gw_file()).expect("gw file");
    std::fs::write(
        bed.gw_file(),
        gw.replace(
            r#""VppBridgeLoop_InstallRoutes""#,
            r#""VppBridgeLoop_InstallNeighbor": {"IPv4": true, "IPv6": true, "IPv6 link-local": true}, "VppBridgeLoop_InstallRoutes""#,
        ),
    )
    .expect("gw file");
}

/// `kill -9` right after each step of setup (with neighbour installs on, so that the daemon's own
/// neighbour entries are among the steps): the next start sweeps what the dead run left, traffic flows,
/// and its SIGTERM leaves VPP as before the first run.
#[test]
fn kill_9_after_each_setup_step_is_swept_by_the_next_start() {
    let Some(mut bed) = VppBed::up() else { return };
    install_neighbours(&bed);
    let gate = ApiGate::start(bed.dir().join("gate.sock"), bed.api_socket());
    let before = bed.objects();
    for point in &SETUP_POINTS {
        gate.hold(point.message, point.nth);
        bed.spawn_daemon(&[], &[("VPP_API_SOCKET_PATH", gate.path())]);
        hold_at(&bed, &gate, point);
        bed.signal_daemon("KILL");
        next_run_works_and_leaves(&mut bed, &gate, &before, point.what);
    }

    // The last steps: the neighbour installer has put in one of the peer's addresses (the second install
    // held), then the tunnel is up with the l2fib entry and every neighbour.
    start_through(&mut bed, &gate);
    gate.hold("ip_neighbor_add_del", 2);
    for dst in PEER_IPS {
        bed.vppctl(&format!("ping {dst} source loop42 repeat 1"));
    }
    gate.wait_held(20, || bed.daemon_log());
    let left = Left::read(&bed);
    assert!(left.l2fib && left.neighbours >= 1, "{left:?}");
    bed.signal_daemon("KILL");
    next_run_works_and_leaves(&mut bed, &gate, &before, "one neighbour installed");

    start_through(&mut bed, &gate);
    for dst in PEER_IPS {
        assert_eq!(bed.ping_from_vpp(dst, 3), 3, "ping {dst} from VPP");
    }
    bed.wait_for("every neighbour installed", 10, || {
        Left::read(&bed) == Left::complete(PEER_IPS.len())
    });
    bed.signal_daemon("KILL");
    assert_eq!(
        Left::read(&bed),
        Left::complete(PEER_IPS.len()),
        "kill -9 undid something?"
    );
    next_run_works_and_leaves(&mut bed, &gate, &before, "tunnel up, neighbours installed");
}

/// A ping flood through the tunnel (VPP's BVI answering the peer) while the daemon is killed; the flood
/// goes on while the next run starts.
#[test]
fn kill_9_mid_traffic_is_swept_by_the_next_start() {
    let Some(mut bed) = VppBed::up() else { return };
    let gate = ApiGate::start(bed.dir().join("gate.sock"), bed.api_socket());
    let before = bed.objects();
    start_through(&mut bed, &gate);
    bed.ping_from_peer("10.127.111.1", 3);
    let mut flood = Flood::start(&bed, "10.127.111.1");
    std::thread::sleep(Duration::from_millis(1000));
    // Traffic crosses the memif at the moment of the kill.
    let rx = memif_rx_packets(&bed);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        memif_rx_packets(&bed) > rx + 10,
        "no flood through the memif: {}",
        bed.vppctl(&format!("show interface {MEMIF}"))
    );
    bed.signal_daemon("KILL");
    let left = Left::read(&bed);
    assert!(
        left == Left::complete(left.neighbours) && left.neighbours >= 1,
        "kill -9 undid something? {left:?}"
    );

    // The next run starts into the flood, and carries it once it has a session again (our first packet
    // to the peer makes one).
    start_through(&mut bed, &gate);
    assert_eq!(bed.ping_from_vpp("172.22.77.33", 3), 3);
    let rx = memif_rx_packets(&bed);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        memif_rx_packets(&bed) > rx + 10,
        "the flood does not cross the new run's memif: {}\n{}",
        bed.vppctl(&format!("show interface {MEMIF}")),
        bed.daemon_log()
    );
    let report = flood.stop();
    assert!(report.contains(" received"), "{report}");
    works_and_leaves(&mut bed, &before, "mid-traffic");
}

/// The packets VPP has received on our memif.
fn memif_rx_packets(bed: &VppBed) -> u64 {
    bed.vppctl(&format!("show interface {MEMIF}"))
        .lines()
        .find(|l| l.contains("rx packets"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// `ping -f` in the peer's namespace, ours to stop.
struct Flood(Option<Child>);

impl Flood {
    fn start(bed: &VppBed, dst: &str) -> Flood {
        let child = Command::new("ip")
            .args(["netns", "exec", &format!("{}-peer", bed.name())])
            .args(["ping", "-f", "-q", "-w", "60", dst])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("ping -f starts");
        Flood(Some(child))
    }

    /// Interrupts the flood (SIGINT, so that it prints its statistics) and returns its output.
    fn stop(&mut self) -> String {
        let child = self.0.take().expect("flood running");
        let _ = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status();
        let out = child.wait_with_output().expect("flood ends");
        common::vpp::text(&out)
    }
}

impl Drop for Flood {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// SIGTERM, then `kill -9` right after each step of the teardown (the first one the l2fib entry, the last
/// the sweep of the neighbours VPP learned from our answers): the next start sweeps the rest.
#[test]
fn kill_9_mid_teardown_is_swept_by_the_next_start() {
    let Some(mut bed) = VppBed::up() else { return };
    let gate = ApiGate::start(bed.dir().join("gate.sock"), bed.api_socket());
    let before = bed.objects();
    let learned = Left::complete(PEER_IPS.len());
    let points = [
        Point {
            what: "l2fib entry removed",
            message: "ip_route_add_del",
            nth: 1,
            left: Left {
                l2fib: false,
                ..learned
            },
        },
        Point {
            what: "two host routes removed",
            message: "ip_route_add_del",
            nth: 3,
            left: Left {
                l2fib: false,
                routes: 1,
                ..learned
            },
        },
        Point {
            what: "every host route removed",
            message: "memif_delete",
            nth: 1,
            left: Left {
                l2fib: false,
                routes: 0,
                ..learned
            },
        },
        Point {
            what: "memif deleted",
            message: "memif_socket_filename_add_del_v2",
            nth: 1,
            left: Left {
                socket: true,
                neighbours: PEER_IPS.len(),
                ..Left::default()
            },
        },
        Point {
            what: "one learned neighbour removed",
            message: "ip_neighbor_add_del",
            nth: 2,
            left: Left {
                neighbours: PEER_IPS.len() - 1,
                ..Left::default()
            },
        },
    ];
    for point in &points {
        start_through(&mut bed, &gate);
        // VPP learns the peer's addresses from our answers: the neighbours the teardown sweeps at its end.
        for dst in PEER_IPS {
            assert_eq!(bed.ping_from_vpp(dst, 1), 1, "ping {dst} from VPP");
        }
        gate.hold(point.message, point.nth);
        bed.send_signal("TERM");
        hold_at(&bed, &gate, point);
        bed.signal_daemon("KILL");
        next_run_works_and_leaves(&mut bed, &gate, &before, point.what);
    }
}

/// VPP killed (and started again, as a crash) at each step of our setup, and once more in the middle of
/// re-creating the objects after a first restart: the daemon lives on and ends up with a complete, working
/// set of objects in the new VPP, never a half-made one; its SIGTERM then leaves VPP as before.
#[test]
fn vpp_killed_during_our_setup_ends_in_a_complete_tunnel() {
    let Some(mut bed) = VppBed::up() else { return };
    let gate = ApiGate::start(bed.dir().join("gate.sock"), bed.api_socket());
    let before = bed.objects();
    let points = [
        &SETUP_POINTS[0],
        &SETUP_POINTS[1],
        &SETUP_POINTS[3],
        &SETUP_POINTS[5],
        &SETUP_POINTS[7],
        &Point {
            what: "objects created, reading the BVI's MTU before the memif is served",
            message: "sw_interface_dump",
            nth: 2,
            left: with_routes(3),
        },
        &SETUP_POINTS[8],
    ];
    for point in points {
        gate.hold(point.message, point.nth);
        bed.spawn_daemon(&[], &[("VPP_API_SOCKET_PATH", gate.path())]);
        hold_at(&bed, &gate, point);
        restart_vpp(&bed, &gate);
        if point.message == "want_interface_events" {
            // VPP went away while we subscribed to its interface events: the subscription is renewed
            // with the reconnection, so a memif deleted by hand is still noticed and created again.
            bed.wait_until_up();
            bed.vppctl(&format!("delete interface memif {MEMIF}"));
            bed.wait_for("VPP deleted our memif", 10, || {
                bed.daemon_log().contains("VPP deleted our memif")
            });
        }
        survives_with_a_complete_tunnel(&mut bed, &before, point.what);
    }

    // A first restart while the tunnel runs, and VPP killed again while the daemon re-creates its objects.
    bed.spawn_daemon(&[], &[("VPP_API_SOCKET_PATH", gate.path())]);
    bed.wait_until_up();
    gate.hold("memif_create_v2", 1);
    restart_vpp(&bed, &gate);
    gate.wait_held(20, || bed.daemon_log());
    restart_vpp(&bed, &gate);
    survives_with_a_complete_tunnel(&mut bed, &before, "re-creating after a restart");
}

/// Kills VPP (-9) and starts it again with its bridge; the daemon reaches it only once the bridge is laid
/// out (VPP's API answers before `vpp.sh` has configured it, which an operator's VPP does at its start).
fn restart_vpp(bed: &VppBed, gate: &ApiGate) {
    gate.refuse(true);
    bed.restart_vpp();
    gate.refuse(false);
}

/// After VPP came back: the daemon still runs, VPP has the complete set (memif connected, in the bridge,
/// routes, l2fib), traffic flows both ways, and SIGTERM leaves VPP as `before`.
fn survives_with_a_complete_tunnel(bed: &mut VppBed, before: &str, case: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !bed.vppctl("show memif").contains("connected") {
        assert!(bed.daemon_is_running(), "{case}: {}", bed.daemon_log());
        assert!(
            Instant::now() < deadline,
            "{case}: no connected memif in the new VPP: {}\n{}",
            bed.vppctl("show memif"),
            bed.daemon_log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // VPP may have learned a neighbour with our MAC already, without traffic: when a re-creation's memif
    // connects before its routes are added (it connects at once, the memif being served), VPP's one
    // speculative ARP/NS for a new route's adjacency reaches us and is answered.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = Left::read(bed);
        if left == Left::complete(left.neighbours) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{case}: VPP has no complete set of objects: {left:?}\n{}\n{}",
            bed.vppctl("show l2fib verbose"),
            bed.daemon_log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    bed.wait_until_up();
    bed.configure_wireguard();
    assert_eq!(bed.ping_from_vpp("172.22.77.33", 3), 3, "{case}");
    bed.ping_from_peer("fd00:4242::1", 3);
    let status = bed.signal_daemon("TERM");
    assert!(status.success(), "{case}: {status}\n{}", bed.daemon_log());
    // VPP's bridge counts learned MACs down in its l2fib scan, a moment after the memif is gone.
    let deadline = Instant::now() + Duration::from_secs(10);
    while bed.objects() != before && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(bed.objects(), before, "{case}: {}", bed.daemon_log());
}
