#!/usr/bin/env bash
# Throughput through one whole tunnel, side by side with a baseline measured in the same run:
#   ours:          LAN namespace (TAP) -> testpmd -> memif -> wireguard-vpp -> UDP -> wireguard-go peer
#   wireguard-go:  two Debian wireguard-go endpoints between two namespaces (what a user would run otherwise)
# Inner packets of 1420 and 64 bytes (iperf3 UDP, unlimited rate; the receiver's count is the figure) and TCP,
# both directions. Prints a Markdown table for BENCHMARKS.md. Needs root. On a 2-core machine testpmd polls
# one core at 100 %, so everything else shares the other: the figures are for this machine, not a limit.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_RUN=${SECONDS_PER_RUN:-5}

cargo build --release --locked --no-default-features --bin wireguard-vpp >&2
BIN=${CARGO_TARGET_DIR:-target}/release/wireguard-vpp
P=bt$$; P=${P:0:6}
B=bw$$; B=${B:0:6}
DIR=$(mktemp -d)
cleanup() {
  scripts/peers/topology.sh down "$P" "$DIR" >&2 || true
  [ -f "$DIR/wga.pid" ] && kill "$(cat "$DIR/wga.pid")" 2>/dev/null
  [ -f "$DIR/wgb.pid" ] && kill "$(cat "$DIR/wgb.pid")" 2>/dev/null
  ip netns del "$B-a" 2>/dev/null || true; ip netns del "$B-b" 2>/dev/null || true
  rm -f "/var/run/wireguard/$B-a.sock" "/var/run/wireguard/$B-b.sock"
  rm -rf "$DIR"
}
trap cleanup EXIT

# --- ours
scripts/peers/topology.sh up "$P" "$DIR" >&2
ip netns exec "$P-wg" env VPP_MEMIF_CONFIG_DIR="$DIR/etc" VPP_MEMIF_SOCKET_DIR="$DIR/run" LOG_LEVEL=error \
  "$BIN" --foreground --no-vpp-api "$P" > "$DIR/daemon.log" 2>&1 &
echo $! > "$DIR/daemon.pid"
for _ in $(seq 100); do [ -S "$DIR/run/$P.sock" ] && break; sleep 0.05; done
scripts/peers/topology.sh testpmd "$P" "$DIR" >&2
for _ in $(seq 200); do [ -S "/var/run/wireguard/$P.sock" ] && break; sleep 0.05; done
wg setconf "$P" "$DIR/ours.conf"
ip netns exec "$P-lan" ping -c 1 -w 10 172.22.77.33 > /dev/null

# --- baseline: wireguard-go <-> wireguard-go
ip netns add "$B-a"; ip netns add "$B-b"
ip link add "$B-va" type veth peer name "$B-vb"
ip link set "$B-va" netns "$B-a"; ip link set "$B-vb" netns "$B-b"
ip -n "$B-a" addr add 10.98.0.1/24 dev "$B-va"; ip -n "$B-a" link set "$B-va" up; ip -n "$B-a" link set lo up
ip -n "$B-b" addr add 10.98.0.2/24 dev "$B-vb"; ip -n "$B-b" link set "$B-vb" up; ip -n "$B-b" link set lo up
for side in a b; do
  ip netns exec "$B-$side" env WG_PROCESS_FOREGROUND=1 wireguard-go -f "$B-$side" > /dev/null 2>&1 &
  echo $! > "$DIR/wg$side.pid"
done
for _ in $(seq 100); do [ -S "/var/run/wireguard/$B-a.sock" ] && [ -S "/var/run/wireguard/$B-b.sock" ] && break; sleep 0.05; done
wg set "$B-a" listen-port 51830 private-key "$DIR/keys/ours.key" peer "$(cat "$DIR/keys/peer.pub")" \
  endpoint 10.98.0.2:51831 allowed-ips 10.97.0.2/32
wg set "$B-b" listen-port 51831 private-key "$DIR/keys/peer.key" peer "$(cat "$DIR/keys/ours.pub")" \
  endpoint 10.98.0.1:51830 allowed-ips 10.97.0.1/32
ip -n "$B-a" addr add 10.97.0.1/24 dev "$B-a"; ip -n "$B-a" link set "$B-a" mtu 1420 up
ip -n "$B-b" addr add 10.97.0.2/24 dev "$B-b"; ip -n "$B-b" link set "$B-b" mtu 1420 up
ip netns exec "$B-a" ping -c 1 -w 10 10.97.0.2 > /dev/null

# run SERVER_NS SERVER_IP CLIENT_NS KIND SIZE REVERSE -> "pps gbits"
measure() {
  local sns=$1 sip=$2 cns=$3 kind=$4 size=$5 reverse=$6 args=()
  ip netns exec "$sns" iperf3 -s -1 -B "$sip" -D
  sleep 0.3
  [ "$reverse" = yes ] && args+=(-R)
  if [ "$kind" = udp ]; then
    args+=(-u -b 0 -l $((size - 28)))
  fi
  ip netns exec "$cns" iperf3 -c "$sip" -t "$SECONDS_PER_RUN" -J "${args[@]}" 2>/dev/null | python3 -c '
import json, sys
r = json.load(sys.stdin)["end"]
size = int(sys.argv[1])
s = r.get("sum")
if s is not None and "packets" in s:
    got = s["packets"] - s["lost_packets"]
    print("%.1f %.3f" % (got / s["seconds"] / 1e3, got * size * 8 / s["seconds"] / 1e9))
else:
    s = r["sum_received"]
    print("- %.3f" % (s["bits_per_second"] / 1e9))
' "$size"
}

echo "| traffic | direction | wireguard-vpp kpps | wireguard-vpp Gbit/s | wireguard-go kpps | wireguard-go Gbit/s |"
echo "|---|---|---|---|---|---|"
for kind_size in "udp 1420" "udp 64" "tcp 1420"; do
  set -- $kind_size
  for dir in "bridge->peer no" "peer->bridge yes"; do
    set -- $kind_size $dir
    ours=$(measure "$P-peer" 172.22.77.33 "$P-lan" "$1" "$2" "$4")
    base=$(measure "$B-b" 10.97.0.2 "$B-a" "$1" "$2" "$4")
    echo "| $1 $2 B | $3 | ${ours% *} | ${ours#* } | ${base% *} | ${base#* } |"
  done
done

# (a) the crypto limit, measured in the same run: gotatun's Tunn, encrypt+decrypt of 1420-byte packets on
# one thread with no I/O (the device example's baseline row).
raw=$(cargo run --release --locked --no-default-features --example wg_throughput 2>/dev/null \
  | awk '/^median/{m=1} m && /raw gotatun/{print $(NF-1), $NF; exit}')
echo
echo "gotatun raw Tunn, encrypt+decrypt, 1420 B, one thread: ${raw% *} packets/s, ${raw#* } Gbit/s"
