#!/usr/bin/env bash
# A tunnel under traffic for a while (default 10 minutes) with rekeys, VPP restarts and peer edits on a
# schedule, against the real VPP of scripts/peers/vpp.sh and the wireguard-go peer of topology.sh. Our
# daemon's RSS, open fds and threads, and VPP's objects, are sampled once the tunnel is up and again
# after the schedule (when the tunnel is up again); one Markdown table is printed.
#
# The schedule, in seconds from the start (each event needs the tunnel to come back before the next):
#   every 30 s (at 15, 45, ...)   rekey: the peer forgets us and is given us back, so its next packet
#                                 starts a new handshake
#   every 20 s (at 10, 30, ...)   peer edits on our side over UAPI: a peer added with its own
#                                 allowed-ips, the previous one removed, the real peer's keepalive changed
#   every 150 s (at 75, 225, ...) VPP killed (-9, as a crash) and started again with the same bridge
# Traffic throughout: the peer pings VPP's BVI over IPv4 and IPv6, 100 per second each; what is lost is
# expected while VPP is away (a restart takes a few seconds), and nowhere else.
#
# Usage: scripts/soak.sh (root). Env: SOAK_SECONDS (default 600), WIREGUARD_VPP_BIN (a built daemon: no
# build), SOAK_KEEP=1 (keep the logs). With SOAK_SECONDS under 10 no event is due: the round trips then
# are those of lone pings (one in flight every 10 ms) across an idle tunnel.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${SOAK_SECONDS:-600}
TOPO=scripts/peers/topology.sh
VPPSH=scripts/peers/vpp.sh
P=sk$$; P=${P:0:6}
DIR=$(mktemp -d -t soak.XXXXXX)

[ "$(id -u)" -eq 0 ] || { echo "soak.sh: needs root (namespaces, VPP)" >&2; exit 1; }

cleanup() {
  set +e
  local f
  for f in "$DIR"/*.pid; do [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null; done
  "$TOPO" down "$P" "$DIR" > /dev/null 2>&1
  if [ -n "${SOAK_KEEP:-}" ]; then echo "soak.sh: logs kept in $DIR" >&2; else rm -rf "$DIR"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fail() { echo "soak.sh: $*" >&2; exit 1; }
vctl() { "$VPPSH" ctl "$DIR/vpp" "$@"; }
in_peer() { ip netns exec "$P-peer" "$@"; }
pid() { cat "$DIR/daemon.pid"; }

scripts/install-deps.sh demo >&2
if [ -n "${WIREGUARD_VPP_BIN:-}" ]; then
  BIN=$WIREGUARD_VPP_BIN
else
  cargo build --release --locked --no-default-features --bin wireguard-vpp >&2
  BIN=$(cd "${CARGO_TARGET_DIR:-target}" && pwd)/release/wireguard-vpp
fi

echo "soak.sh: VPP, the peer and the daemon" >&2
"$TOPO" up "$P" "$DIR"
"$TOPO" vpp "$P" "$DIR"
ip netns exec "$P-wg" env VPP_MEMIF_CONFIG_DIR="$DIR/etc" VPP_MEMIF_SOCKET_DIR="$DIR/run" \
  VPP_API_SOCKET_PATH="$DIR/vpp/api.sock" LOG_LEVEL=info "$BIN" --foreground "$P" > "$DIR/daemon.log" 2>&1 &
echo $! > "$DIR/daemon.pid"  # topology.sh down stops it

# Up: our memif connected in VPP and a ping from the peer to the BVI answered.
up() {
  local _
  for _ in $(seq 300); do
    kill -0 "$(pid)" 2>/dev/null || fail "the daemon exited: $(tail -3 "$DIR/daemon.log")"
    if grep -q connected <<<"$(vctl show memif 2>/dev/null)" \
      && in_peer ping -c 1 -W 1 10.127.111.1 > /dev/null 2>&1; then
      return 0
    fi
    sleep 0.1
  done
  fail "the tunnel did not come up within 30 s: $(tail -3 "$DIR/daemon.log")"
}
for _ in $(seq 200); do grep -q "tunnel up" "$DIR/daemon.log" && break; sleep 0.1; done
wg setconf "$P" "$DIR/ours.conf"
up

# What we measure: the daemon's resources, and VPP's objects (counted in its own dumps).
sample() {  # -> "rss_kib fds threads memifs fib4 fib6 neighbours l2fib"
  local rss fds threads memifs fib4 fib6 neigh l2
  rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$(pid)/status")
  fds=$(find "/proc/$(pid)/fd" -mindepth 1 | wc -l)
  threads=$(awk '/^Threads:/ {print $2}' "/proc/$(pid)/status")
  memifs=$(vctl show memif | grep -c '^interface memif' || true)
  fib4=$(vctl show ip fib | grep -cE '^[0-9.]+/[0-9]+' || true)
  fib6=$(vctl show ip6 fib | grep -cE '^[0-9a-f:]+/[0-9]+' || true)
  neigh=$(vctl show ip neighbors | grep -cE '^ *[0-9]+\.[0-9]+ ' || true)
  l2=$(vctl show l2fib | awk -F'[:/ ]+' '/L2FIB total\/learned entries/ {print $5}')
  echo "$rss $fds $threads $memifs $fib4 $fib6 $neigh ${l2:-0}"
}
sleep 5
before=$(sample)

echo "soak.sh: ${SECS} s of traffic with rekeys, peer edits and VPP restarts" >&2
count=$((SECS * 100))
in_peer ping -q -i 0.01 -c "$count" -W 1 10.127.111.1 > "$DIR/ping4.log" 2>&1 &
echo $! > "$DIR/ping4.pid"
in_peer ping -6 -q -i 0.01 -c "$count" -W 1 fd00:4242::1 > "$DIR/ping6.log" 2>&1 &
echo $! > "$DIR/ping6.pid"

ours=$(cat "$DIR/keys/ours.pub")
rekeys=0 edits=0 restarts=0 extra=""
t0=$(date +%s)
for t in $(seq 1 "$SECS"); do
  sleep $((t0 + t - $(date +%s) > 0 ? t0 + t - $(date +%s) : 0))
  kill -0 "$(pid)" 2>/dev/null || fail "the daemon exited at ${t} s: $(tail -3 "$DIR/daemon.log")"
  if [ $((t % 150)) -eq 75 ]; then
    "$VPPSH" restart "$DIR/vpp" > /dev/null
    restarts=$((restarts + 1))
    up
  elif [ $((t % 30)) -eq 15 ]; then
    wg set "$P-w" peer "$ours" remove
    wg set "$P-w" peer "$ours" endpoint 10.99.77.1:51820 persistent-keepalive 25 \
      allowed-ips 172.22.77.0/24,fd28:cb8f:4c92::/64,10.127.111.0/24,fd00:4242::/64,fe80::4242/128,224.0.0.0/4,ff00::/8
    rekeys=$((rekeys + 1))
  elif [ $((t % 20)) -eq 10 ]; then
    new=$(wg genkey | wg pubkey)
    wg set "$P" peer "$new" allowed-ips "10.250.$((edits % 250)).0/24"
    [ -z "$extra" ] || wg set "$P" peer "$extra" remove
    extra=$new
    wg set "$P" peer "$(cat "$DIR/keys/peer.pub")" persistent-keepalive $((20 + edits % 10))
    edits=$((edits + 1))
  fi
done
wait "$(cat "$DIR/ping4.pid")" "$(cat "$DIR/ping6.pid")" || true
[ -z "$extra" ] || wg set "$P" peer "$extra" remove
up
sleep 5
after=$(sample)

loss() { grep -oE '[0-9]+ packets transmitted, [0-9]+ received' "$1" | awk '{printf "%d of %d", $1 - $4, $1}'; }
rtt() { grep -oE 'rtt min/avg/max/mdev = [0-9./]+' "$1" | cut -d' ' -f4 | awk -F/ '{printf "%s/%s/%s ms", $1, $2, $3}'; }
echo "| soak, ${SECS} s | RSS KiB | fds | threads | VPP memifs | VPP ip4 fib | VPP ip6 fib | VPP neighbours | VPP l2fib |"
echo "|---|---|---|---|---|---|---|---|---|"
# shellcheck disable=SC2086
printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "up, before" $before "after" $after
echo
echo "Events: $rekeys rekeys, $edits peer edits, $restarts VPP restarts. Pings lost (the peer to the BVI):" \
  "IPv4 $(loss "$DIR/ping4.log"), IPv6 $(loss "$DIR/ping6.log"). Round trips (min/avg/max): IPv4" \
  "$(rtt "$DIR/ping4.log"), IPv6 $(rtt "$DIR/ping6.log")."
grep -q "tunnel stopped" "$DIR/daemon.log" && fail "the daemon stopped its tunnel during the soak"
true
