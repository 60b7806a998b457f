#!/usr/bin/env bash
# The local demo: one wireguard-vpp tunnel between a real Linux IP stack standing in for VPP's bridge
# (reached through dpdk-testpmd's memif <-> TAP forwarding) and a wireguard-go peer, all in network
# namespaces (see scripts/peers/topology.sh). It pings both ways over IPv4 and IPv6, runs a short
# iperf3 each way, shows `wg show` for both ends, and removes everything again. Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/install-deps.sh demo
cargo build --release --locked --no-default-features --bin wireguard-vpp
BIN=${CARGO_TARGET_DIR:-target}/release/wireguard-vpp

P=wgvd$$
P=${P:0:6}
DIR=$(mktemp -d)
cleanup() { scripts/peers/topology.sh down "$P" "$DIR"; rm -rf "$DIR"; }
trap cleanup EXIT

step() { printf '\n== %s\n' "$*"; }

step "namespaces, veth and the wireguard-go peer"
scripts/peers/topology.sh up "$P" "$DIR"

step "wireguard-vpp -f $P (memif server, VPP left alone: testpmd plays its part)"
ip netns exec "$P-wg" env VPP_MEMIF_CONFIG_DIR="$DIR/etc" VPP_MEMIF_SOCKET_DIR="$DIR/run" LOG_LEVEL=error \
  "$BIN" --foreground --no-vpp-api "$P" > "$DIR/daemon.log" 2>&1 &
echo $! > "$DIR/daemon.pid"
for _ in $(seq 100); do [ -S "$DIR/run/$P.sock" ] && break; sleep 0.05; done

step "dpdk-testpmd: memif client <-> TAP in the LAN namespace (172.22.77.1, fd28:cb8f:4c92::1)"
scripts/peers/topology.sh testpmd "$P" "$DIR"
for _ in $(seq 200); do [ -S /var/run/wireguard/$P.sock ] && break; sleep 0.05; done
[ -S /var/run/wireguard/$P.sock ] || { cat "$DIR/daemon.log"; exit 1; }

step "wg setconf "$P" (our side's key and peer)"
wg setconf "$P" "$DIR/ours.conf"

step "ping through the tunnel, both ways, IPv4 and IPv6"
ip netns exec "$P-lan" ping -c 5 -i 0.2 -W 2 172.22.77.33
ip netns exec "$P-lan" ping -6 -c 5 -i 0.2 -W 2 fd28:cb8f:4c92::33
ip netns exec "$P-peer" ping -c 5 -i 0.2 -W 2 172.22.77.1
ip netns exec "$P-peer" ping -6 -c 5 -i 0.2 -W 2 fd28:cb8f:4c92::1

step "iperf3 (TCP), LAN side -> peer, then peer -> LAN side"
ip netns exec "$P-peer" iperf3 -s -1 -B 172.22.77.33 -D
sleep 0.3
ip netns exec "$P-lan" iperf3 -c 172.22.77.33 -t 3 -f m | tail -3
ip netns exec "$P-peer" iperf3 -s -1 -B 172.22.77.33 -D
sleep 0.3
ip netns exec "$P-lan" iperf3 -c 172.22.77.33 -t 3 -f m -R | tail -3

step "wg show: our end"
wg show "$P"
step "wg show: the wireguard-go peer"
wg show "$P-w"

step "SIGTERM: the daemon removes its sockets"
kill -TERM "$(cat "$DIR/daemon.pid")"
for _ in $(seq 100); do kill -0 "$(cat "$DIR/daemon.pid")" 2>/dev/null || break; sleep 0.05; done
ls "$DIR/run" /var/run/wireguard/$P.sock 2>/dev/null || echo "no socket left behind"
echo "demo done"
