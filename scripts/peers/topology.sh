#!/usr/bin/env bash
# The local stand-in for VPP's bridge side, built from real parts, shared by scripts/demo.sh and the
# end-to-end test:
#
#   <P>-lan namespace                  <P>-wg namespace               <P>-peer namespace
#   kernel IP stack on TAP <P>t        wireguard-vpp (memif server)   wireguard-go <P>w
#   (MAC = the gateway MAC,  <-io->    UDP 10.99.77.1:51820  <--veth-->  10.99.77.2:51821
#    172.22.77.1/24,         testpmd   WireGuard + ARP/NDP            inner 172.22.77.33,
#    fd28:cb8f:4c92::1/64)   memif     (the memif socket file)        fd28:cb8f:4c92::33
#
# testpmd runs in the LAN namespace as the memif client, forwarding (io mode) between its net_memif port and
# a net_tap port whose TAP device lives in that namespace; so the Linux stack there is the real neighbour that
# answers ARP and NDP, ping and TCP, as VPP's BVI would.
#
# With a real VPP instead (`topology.sh vpp P DIR`, after `up`): scripts/peers/vpp.sh starts VPP with its
# runtime directory DIR/vpp and lays out bridge 4242 with the BVI loop42 (10.127.111.1/24, fd00:4242::1/64,
# fe80::4242); the daemon's files are rewritten for it (install method api on loop42, host routes for all
# three families), and the peer routes VPP's subnets into the tunnel. The peer also owns fe80::42:1817:1.
#
# Usage: topology.sh up P DIR      namespaces, veth, the wireguard-go peer, config files under DIR
#        topology.sh testpmd P DIR [client|server]
#                                  start testpmd as the memif client (default: the daemon P must listen on
#                                  DIR/run/P.sock first) or as the memif server (the daemon connects)
#        topology.sh vpp P DIR     start a real VPP for the daemon P (see above)
#        topology.sh lan P DIR     after `vpp`: a host on VPP's bridge, the <P>-lan namespace on an af_packet
#                                  veth in bridge 4242 (10.127.111.2/24, fd00:4242::2/64, routes via the BVI)
#        topology.sh down P DIR    kill every process started here (by PID) and delete the namespaces
# P is a short unique prefix (at most 6 characters, interface names are limited to 15).
set -euo pipefail

cmd=${1:?usage: topology.sh up|testpmd|vpp|lan|down PREFIX DIR}
P=${2:?prefix}
DIR=${3:?directory}
GW_MAC=42:42:42:42:42:42
LAN=$P-lan
WGNS=$P-wg
PEER=$P-peer

pidfile() { echo "$DIR/$1.pid"; }

kill_pidfile() {
  local f
  f=$(pidfile "$1")
  if [ -f "$f" ]; then
    kill -INT "$(cat "$f")" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$(cat "$f")" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$(cat "$f")" 2>/dev/null || true
    rm -f "$f"
  fi
}

up() {
  mkdir -p "$DIR/keys" "$DIR/etc/if" "$DIR/etc/gw" "$DIR/run"
  (cd "$DIR/keys" && umask 077 && for n in ours peer; do
     [ -f $n.key ] || wg genkey > $n.key; wg pubkey < $n.key > $n.pub; done)

  for ns in "$LAN" "$WGNS" "$PEER"; do ip netns add "$ns"; ip -n "$ns" link set lo up; done
  ip link add "$P-a" type veth peer name "$P-b"
  ip link set "$P-a" netns "$WGNS"; ip link set "$P-b" netns "$PEER"
  ip -n "$WGNS" addr add 10.99.77.1/24 dev "$P-a"; ip -n "$WGNS" link set "$P-a" up
  ip -n "$PEER" addr add 10.99.77.2/24 dev "$P-b"; ip -n "$PEER" link set "$P-b" up

  # The wireguard-go peer: the far end of the tunnel, owning 172.22.77.33 and fd28:cb8f:4c92::33.
  ip netns exec "$PEER" env WG_PROCESS_FOREGROUND=1 wireguard-go -f "$P-w" > "$DIR/peer.log" 2>&1 &
  echo $! > "$(pidfile peer)"
  for _ in $(seq 100); do [ -S "/var/run/wireguard/$P-w.sock" ] && break; sleep 0.05; done
  wg set "$P-w" listen-port 51821 private-key "$DIR/keys/peer.key" \
    peer "$(cat "$DIR/keys/ours.pub")" endpoint 10.99.77.1:51820 persistent-keepalive 25 \
    allowed-ips 172.22.77.0/24,fd28:cb8f:4c92::/64,10.127.111.0/24,fd00:4242::/64,fe80::4242/128,224.0.0.0/4,ff00::/8
  ip -n "$PEER" addr add 172.22.77.33/32 dev "$P-w"
  ip -n "$PEER" addr add fd28:cb8f:4c92::33/128 dev "$P-w"
  ip -n "$PEER" link set "$P-w" mtu 1420 up
  ip -n "$PEER" addr add fe80::42:1817:1/64 dev "$P-w" nodad
  ip -n "$PEER" route add 172.22.77.0/24 dev "$P-w"
  ip -n "$PEER" route add fd28:cb8f:4c92::/64 dev "$P-w"

  # Our side's configuration, in the original's file format.
  cat > "$DIR/etc/if/$P.json" <<JSON
{"uid": 3, "secret": "demo-secret",
 "IPv4ArpResponseRanges": ["172.22.77.33/32"],
 "IPv6NdpNeighAdvRanges": ["fd28:cb8f:4c92::33/128"],
 "IPv4ArpLearningRanges": ["172.22.77.0/24"],
 "IPv6NdpLearningRanges": ["fd28:cb8f:4c92::/64"],
 "VppBridgeID": 4242}
JSON
  cat > "$DIR/etc/gw/4242.json" <<JSON
{"GatewayMacAddr": "$GW_MAC", "WgIfMacaddrPrefix": "98:D2:93", "VppIfMacaddrPrefix": "A4:77:33",
 "VppBridgeLoop_InstallMethod": "none"}
JSON
  cat > "$DIR/ours.conf" <<CONF
[Interface]
PrivateKey = $(cat "$DIR/keys/ours.key")
ListenPort = 51820

[Peer]
PublicKey = $(cat "$DIR/keys/peer.pub")
Endpoint = 10.99.77.2:51821
AllowedIPs = 172.22.77.33/32, fd28:cb8f:4c92::33/128, 224.0.0.0/4, ff00::/8
CONF
}

start_vpp() {
  "$(dirname "$0")/vpp.sh" start "$DIR/vpp" "${VPP_CORE:-0}"
  ip -n "$PEER" route add 10.127.111.0/24 dev "$P-w"
  ip -n "$PEER" route add fd00:4242::/64 dev "$P-w"
  cat > "$DIR/etc/if/$P.json" <<JSON
{"uid": 3, "secret": "demo-secret",
 "IPv4ArpResponseRanges": ["172.22.77.33/32"],
 "IPv6NdpNeighAdvRanges": ["fd28:cb8f:4c92::33/128", "fe80::42:1817:1/128"],
 "IPv4ArpLearningRanges": ["10.127.111.0/24"],
 "IPv6NdpLearningRanges": ["fd00:4242::/64"],
 "VppBridgeID": 4242}
JSON
  cat > "$DIR/etc/gw/4242.json" <<JSON
{"GatewayMacAddr": "$GW_MAC", "WgIfMacaddrPrefix": "98:D2:93", "VppIfMacaddrPrefix": "A4:77:33",
 "VppBridgeLoop_InstallMethod": "api", "VppBridgeLoop_SwIfName": "loop42",
 "VppBridgeLoop_InstallRoutes": {"IPv4": true, "IPv6": true, "IPv6 link-local": true}}
JSON
  sed -i 's#^AllowedIPs = .*#AllowedIPs = 172.22.77.33/32, fd28:cb8f:4c92::33/128, fe80::42:1817:1/128, 224.0.0.0/4, ff00::/8#' \
    "$DIR/ours.conf"
}

start_lan() {
  ip link add "$P-h" type veth peer name "$P-l"
  ip link set "$P-l" netns "$LAN"
  ip link set "$P-h" up
  local vpp="$(dirname "$0")/vpp.sh"
  "$vpp" ctl "$DIR/vpp" create host-interface name "$P-h" > /dev/null
  "$vpp" ctl "$DIR/vpp" set interface l2 bridge "host-$P-h" 4242
  "$vpp" ctl "$DIR/vpp" set interface state "host-$P-h" up
  # The host finishes its checksums and segments itself, as frames arrive from a NIC. With offloads on,
  # VPP bridges the partial TCP/UDP checksums of af_packet into our memif, which cannot carry "checksum
  # not done yet", and the far end drops those segments (docs/vpp-setup.md).
  ip netns exec "$LAN" ethtool -K "$P-l" tx off tso off gso off > /dev/null
  ip -n "$LAN" addr add 10.127.111.2/24 dev "$P-l"
  ip -n "$LAN" addr add fd00:4242::2/64 dev "$P-l" nodad
  ip -n "$LAN" link set "$P-l" up
  ip -n "$LAN" route add default via 10.127.111.1
  ip -n "$LAN" -6 route add default via fd00:4242::1
}

start_testpmd() {
  local role=${1:-client}
  # The LAN namespace's TAP device comes from testpmd itself (net_tap), created inside that namespace.
  ip netns exec "$LAN" dpdk-testpmd --lcores='0@0,1@0' --no-huge -m 1024 --no-pci --file-prefix="$P" \
    --vdev="net_tap0,iface=$P-t" \
    --vdev="net_memif0,role=$role,socket=$DIR/run/$P.sock,socket-abstract=no,id=3,secret=demo-secret" \
    -- --forward-mode=io --auto-start --no-flush-rx --stats-period=60 --total-num-mbufs=8192 \
    > "$DIR/testpmd.log" 2>&1 &
  echo $! > "$(pidfile testpmd)"
  for _ in $(seq 200); do ip -n "$LAN" link show "$P-t" > /dev/null 2>&1 && break; sleep 0.05; done
  ip -n "$LAN" link set "$P-t" address "$GW_MAC" up
  ip -n "$LAN" addr replace 172.22.77.1/24 dev "$P-t"
  ip -n "$LAN" addr replace fd28:cb8f:4c92::1/64 dev "$P-t" nodad
  ip -n "$LAN" route replace 224.0.0.0/4 dev "$P-t"
}

down() {
  kill_pidfile testpmd
  kill_pidfile daemon
  kill_pidfile peer
  [ ! -d "$DIR/vpp" ] || "$(dirname "$0")/vpp.sh" stop "$DIR/vpp"
  for ns in "$LAN" "$WGNS" "$PEER"; do ip netns del "$ns" 2>/dev/null || true; done
  ip link del "$P-h" 2>/dev/null || true
  rm -rf "/var/run/dpdk/$P"
  rm -f "/var/run/wireguard/$P-w.sock"
}

case "$cmd" in
  up) up ;;
  testpmd) start_testpmd "${4:-client}" ;;
  vpp) start_vpp ;;
  lan) start_lan ;;
  down) down ;;
  *) echo "unknown command $cmd" >&2; exit 2 ;;
esac
