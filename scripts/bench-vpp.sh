#!/usr/bin/env bash
# Packets per CPU-second of the encrypting or decrypting process, side by side in one run, with a real VPP
# (scripts/peers/vpp.sh, polling on core 0) and our daemon on core 1 (taskset). IPv4 UDP packets of 64 and
# 1420 bytes (IP) from VPP's packet generator:
#   1. ours, encrypt: pg0 -> loop42 -> bridge 4242 -> memif -> wireguard-vpp -> UDP -> veth, offered at the
#      "sustained rate" (the most it delivered in a ramp of offered rates doubling from 25k/s)
#   2. VPP's wireguard plugin, encrypt: pg0 -> wg0 -> af_packet veth
#   3. decrypt: pg1 -> VPP's wg1 -> af_packet -> wireguard-vpp -> memif -> bridge (counted, then dropped);
#      pg0 -> bridge -> wireguard-vpp -> UDP -> af_packet -> VPP's wg1 (decrypts, drops)
#   4. ours, encrypt, offered 0.25x to 10x the sustained rate, and at pg's full rate
#   5. Debian wireguard-go on TUN (core 1): encrypt (a UDP flood in its namespace on core 0, before VPP
#      starts) and decrypt (VPP's wg0 sends)
# The encrypt rows' far end loses its address after the handshake (our side keeps a permanent ARP entry):
# the packets leave through the veth and the far kernel drops them at once.
# Columns: rates over the window; CPU-s/s is CPU-seconds per second (cores busy). Ours and wireguard-go:
# utime+stime from /proc/PID/stat. VPP polls (100 % of core 0): its CPU is the clocks `show runtime` gives
# for the nodes the measured packets pass (`show trace`), without pg-input and the af_packet I/O nodes (what
# a DPDK NIC replaces); on VPP's rows packets per CPU-second is its clock rate / clocks per packet on that path.
# Counts: ours sends with UDP GSO (several packets per skb), so its encrypted packets are counted from the
# veth's bytes ((bytes - 42 per skb) / (32 + packet padded to 16)); VPP's from its stats segment.
#
# Usage: scripts/bench-vpp.sh (root). Prints one Markdown table. Env: BENCH_SECONDS (window, default 5),
# BENCH_SIZES ("64 1420"), BENCH_SWEEP ("0.25 0.5 1 2 5 10"), WIREGUARD_VPP_BIN (a built daemon: no build),
# BENCH_KEEP=1 (keep the logs, VPP's runtime and trace files in the run's directory), BENCH_PROFILE=1 (perf
# samples our daemon with call graphs in its encrypt and decrypt windows; where its CPU went, by stage, is
# in the run's log, and with BENCH_KEEP in DIR/CELL.profile).
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${BENCH_SECONDS:-5}
WARM=2
SIZES=${BENCH_SIZES:-64 1420}
SWEEP=${BENCH_SWEEP:-0.25 0.5 1 2 5 10}
FULL=100000000  # a pg rate VPP cannot reach: as fast as it goes
EXCLUDE='^(pg-input|af-packet-input|host-.*-(output|tx))$'
VPPSH=scripts/peers/vpp.sh
TOPO=scripts/peers/topology.sh
P=bv$$; P=${P:0:6}
DIR=$(mktemp -d -t bench-vpp.XXXXXX)
mkdir -p "$DIR/pids" "$DIR/rows" "$DIR/failed" "$DIR/keys"

[ "$(id -u)" -eq 0 ] || { echo "bench-vpp.sh: needs root (namespaces, VPP)" >&2; exit 1; }

# ---- processes and cleanup

stop_pid() {
  kill -TERM "$1" 2>/dev/null || return 0
  for _ in $(seq 50); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
  kill -KILL "$1" 2>/dev/null || true
}
start_bg() {  # NAME CMD...: runs CMD in the background, its PID in $DIR/pids/NAME.pid
  local name=$1; shift
  "$@" > "$DIR/$name.log" 2>&1 &
  echo $! > "$DIR/pids/$name.pid"
}
pid_of() { cat "$DIR/pids/$1.pid"; }
cleanup() {
  set +e
  local f
  for f in "$DIR"/pids/*.pid; do [ -f "$f" ] && stop_pid "$(cat "$f")"; done
  "$TOPO" down "$P" "$DIR" > /dev/null 2>&1  # our daemon (daemon.pid), the peer, VPP, P-lan/-wg/-peer
  for ns in vg ga gb; do ip netns del "$P-$ns" 2>/dev/null; done
  ip link del "$P-u" 2>/dev/null; ip link del "$P-x" 2>/dev/null
  for s in "$P" "$P-vw" "$P-ta" "$P-tb" "$P-w"; do rm -f "/var/run/wireguard/$s.sock"; done
  if [ -n "${BENCH_KEEP:-}" ]; then echo "bench-vpp.sh: logs kept in $DIR" >&2; else rm -rf "$DIR"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- helpers

fail() { echo "$*" > "$DIR/reason"; echo "bench-vpp.sh: $*" >&2; exit 1; }
needs() {  # SETUP...: fails with the reason a setup failed
  local s; for s; do [ ! -f "$DIR/failed/$s" ] || fail "setup '$s' failed: $(cat "$DIR/failed/$s")"; done
}
vctl() { "$VPPSH" ctl "$DIR/vpp" "$@"; }
vdo() {  # a VPP CLI command that must succeed (vppctl exits 0 on CLI errors: read the answer)
  local out; out=$(vctl "$@" 2>&1)
  if grep -qiE 'unknown input|error|invalid|failed|not found|no such' <<<"$out"; then fail "vppctl $*: $out"; fi
  printf '%s\n' "$out"
}
vq() {  # a CLI command at any load. A loaded VPP answers vppctl's telnet negotiation late, and vppctl falls
  # into its interactive mode: the answer then comes after a banner and a prompt, which are cut off here.
  vctl "$@" 2>&1 | awk 'p {sub(/^vpp# /, ""); print; next} /vpp# / {p = 1; sub(/.*vpp# /, ""); print; next}
    {b = b $0 "\n"} END {if (!p) printf "%s", b}'
}
pg() {  # enable-stream NAME | disable-stream | configure NAME rate R, until `show packet-generator` agrees
  local show ok
  for _ in $(seq 10); do
    vq packet-generator "$@" > /dev/null
    show=$(vq show packet-generator)
    case $1 in
      enable-stream) ok=$(awk -v n="$2" '$1 == n && $2 == "Yes" {print "y"}' <<<"$show") ;;
      disable-stream) ok=$(awk '/^Name/ {h = 1} $2 == "Yes" {y = 1} END {if (h && !y) print "y"}' <<<"$show") ;;
      configure) ok=$(awk -v n="$2" -v r="$4" '$1 == n {for (i = 1; i < NF; i++) if ($i == "rate") x = $(i + 1)}
                        END {if (x > 0.99 * r && x < 1.01 * r) print "y"}' <<<"$show") ;;  # shown as 5.35e5
    esac
    [ -z "$ok" ] || return 0
    sleep 0.3
  done
  fail "packet-generator $*: VPP did not take it"
}
vcli() {  # FILE: scripts/bench/FILE with @X@ filled in, one command at a time
  sed -e "s#@P@#$P#g" -e "s#@VPP0_KEY@#$(cat "$DIR/keys/vpp0.key")#" -e "s#@VPP1_KEY@#$(cat "$DIR/keys/vpp1.key")#" \
      -e "s#@VPEER_PUB@#$(cat "$DIR/keys/vpeer.pub")#" -e "s#@OURS_PUB@#$(cat "$DIR/keys/ours.pub")#" \
      "scripts/bench/$1" | grep -vE '^(#|$)' > "$DIR/$1"
  local line; while read -r line; do vdo $line > /dev/null; done < "$DIR/$1"
}
key() { (umask 077; wg genkey > "$DIR/keys/$1.key"); wg pubkey < "$DIR/keys/$1.key" > "$DIR/keys/$1.pub"; }
pub() { cat "$DIR/keys/$1.pub"; }
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }  # utime + stime, clock ticks
link_ctr() {  # NS DEV rx|tx -> "packets bytes dropped"
  ip -n "$1" -s link show "$2" | awk -v d="${3^^}:" '$1 == d {getline; print $2, $1, $4}'
}
now() { date +%s.%N; }
delta() {  # "A1 A2 ..." "B1 B2 ..." -> "B1-A1 B2-A2 ..."
  awk -v a="$1" -v b="$2" 'BEGIN {n = split(a, x); split(b, y); for (i = 1; i <= n; i++) printf "%s ", y[i] - x[i]}'
}
segs() {  # PACKETS BYTES SIZE -> WireGuard data packets in the skbs a veth counted (GSO: several per skb)
  awk -v p="$1" -v b="$2" -v s="$3" 'BEGIN {printf "%d\n", (b - 42 * p) / (int((s + 15) / 16) * 16 + 32)}'
}
per() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.4f\n", (b > 0 ? a / b : 0)}'; }
cpu() { per "$1" "$(getconf CLK_TCK)"; }  # clock ticks -> seconds
stream() {  # NAME PG-IF SRC DST SIZE RATE: starts a pg stream of UDP packets of SIZE bytes (IP)
  local n
  vq packet-generator delete "$1" > /dev/null
  vctl packet-generator new "{ name $1 limit 0 rate $6 size $5-$5 interface $2 node ip4-input data {" \
    "UDP: $3 -> $4 UDP: 4321 -> 9 length $(($5 - 20)) checksum 0 incrementing 1 } }" > /dev/null
  grep -qE "^$1 .* size $5-$5," <<<"$(vq show packet-generator)" || fail "pg stream $1 not created"
  pg configure "$1" rate "$6"  # checked: a loaded VPP's CLI may garble a long command
  vq clear trace > /dev/null  # the first packets of every input, for the nodes on their path (vpp_cost)
  for n in pg-input memif-input af-packet-input; do vq trace add "$n" 20 > /dev/null; done
  pg enable-stream "$1"
}
warm() {  # CMD...: waits until the count CMD prints grows (handshakes done, traffic flows), then $WARM s
  local a b; a=$("$@")
  for _ in $(seq 50); do
    sleep 0.2; b=$("$@")
    if [ "$b" -gt "$a" ]; then sleep "$WARM"; return 0; fi
  done
  fail "no packets within 10 s ($*)"
}
first() { "$@" | awk '{print $1}'; }
vstat() {  # VPP-IF rx|tx -> packets so far, from VPP's stats segment (its CLI answers late under load)
  "$VPP_STATS" socket-name "$DIR/vpp/stats.sock" dump "^/interfaces/${1//\//_}/$2\$" \
    | awk '{n += $4} END {print n + 0}'
}
# window NAME PROBE: one measured window; prints its seconds and the changes of the numbers PROBE prints
# (kernel counters, /proc, VPP's stats segment). VPP's `show runtime` goes to $DIR/NAME.runtime (NAME: the
# cell's key when in a cell). A busy VPP reads its CLI socket rarely: a command may take seconds or be lost.
# `show runtime` states the span since `clear runtime` and VPP's figures are ratios within it (clocks per
# packet, CPU-s per s), so it need not match the kernel's window; a lost clear (a span longer than the calls
# around the window) is done again.
window() {
  local a b t0 try
  set -- "${CELL:-$1}" "$2"
  for try in 1 2 3 4; do
    [ "$try" -lt 4 ] || fail "window $1: VPP's 'clear runtime' was lost three times"
    t0=$(now)
    [ ! -S "$DIR/vpp/cli.sock" ] || vq clear runtime > /dev/null
    a="$(now) $($2)"
    sleep "$SECS"
    b="$(now) $($2)"
    [ -S "$DIR/vpp/cli.sock" ] || break
    vq show runtime > "$DIR/$1.runtime"
    awk -v s="$(per "$(delta "$t0" "$(now)")" 1)" '/^Time / {sub(",", "", $2); exit !($2 + 0 < s + 0.5)}' \
      "$DIR/$1.runtime" && break
    echo "window $1: VPP's runtime does not cover the window, again" >&2
  done
  delta "$a" "$b"
}
profile_start() {  # samples our daemon through the coming window (BENCH_PROFILE=1)
  [ -n "${BENCH_PROFILE:-}" ] || return 0
  start_bg perf perf record -e cpu-clock -F 997 --call-graph dwarf,16384 -p "$(cat "$DIR/daemon.pid")" \
    -o "$DIR/$CELL.perf" -- sleep "$SECS"
}
profile_end() {  # where our daemon's CPU went (scripts/bench/profile.py), to stderr and $DIR/CELL.profile
  [ -n "${BENCH_PROFILE:-}" ] || return 0
  wait "$(pid_of perf)" 2>/dev/null || true; rm -f "$DIR/pids/perf.pid"
  perf script -i "$DIR/$CELL.perf" -F ip,sym --no-inline 2>/dev/null | python3 scripts/bench/profile.py \
    > "$DIR/$CELL.profile" || true
  { echo "bench-vpp.sh: where our daemon's CPU went ($CELL):"; cat "$DIR/$CELL.profile"; } >&2
}
vpp_cost() {  # NAME FIRST:MUST... -> "CPU-s-per-s clocks-per-packet" (scripts/bench/vppcost.py); after the
  # stream stopped (the trace of its first packets is read then)
  local out t
  set -- "${CELL:-$1}" "${@:2}"
  vq show trace > "$DIR/$1.trace"
  out=$(python3 scripts/bench/vppcost.py "$DIR/$1.runtime" "$DIR/$1.trace" "$(cat "$DIR/hz")" "$EXCLUDE" "${@:2}") \
    || fail "VPP's cost: $(tail -1 "$DIR/log")"
  t=$(awk '/^Time / {sub(",", "", $2); print $2; exit}' "$DIR/$1.runtime")
  awk -v t="$t" '{printf "%.4f %s\n", $1 / t, $2}' <<<"$out"
}

sub() {  # OUT FUNC ARGS...: FUNC in a subshell that stops at its first error (call it with errexit off, not
  # in a condition), stdout to OUT, stderr to the log; `wait` lets a signal in (the EXIT trap stops it by PID)
  local out=$1; shift
  (set -e; "$@") >> "$out" 2>> "$DIR/log" &
  echo $! > "$DIR/pids/sub.pid"
  wait $!
}
# cell KEY LABEL SIZE FUNC ARGS...: FUNC prints "offered delivered cpu-ours cpu-vpp cpu-wggo per-cpu-second"
# (packets/s, CPU-s/s or -, packets per CPU-s); a row of the table, or the row with the reason it failed.
cell() {
  local key=$1 label=$2 size=$3 out rc; shift 3
  rm -f "$DIR/reason" "$DIR/out"; CELL=$key
  echo "== $label, $size B" >> "$DIR/log"; echo "bench-vpp.sh: $label, $size B" >&2
  set +e; sub "$DIR/out" "$@"; rc=$?; set -e; out=$(cat "$DIR/out")
  echo "result: $out" >> "$DIR/log"
  [ $rc -ne 0 ] || [ "$(wc -w <<<"$out")" -eq 6 ] || { echo "unexpected result: $out" > "$DIR/reason"; rc=1; }
  if [ $rc -eq 0 ]; then
    # shellcheck disable=SC2086
    set -- $out
    awk -v l="$label" -v s="$size" -v o="$1" -v d="$2" -v co="$3" -v cv="$4" -v cg="$5" -v pc="$6" \
      'function c(x) {return x == "-" ? "-" : sprintf("%.2f", x)}
       BEGIN {printf "| %s | %d | %.3f | %.3f | %.2f | %s | %s | %s | %.3f |\n", l, s, o / 1e6, d / 1e6,
              d * s * 8 / 1e9, c(co), c(cv), c(cg), pc / 1e6}' > "$DIR/rows/$key"
  else
    local why; why=$(cat "$DIR/reason" 2>/dev/null || tail -1 "$DIR/log")
    printf '| %s | %s | not measured: %s | | | | | | |\n' "$label" "$size" "${why//|/\/}" > "$DIR/rows/$key"
  fi
  [ ! -S "$DIR/vpp/cli.sock" ] || (pg disable-stream 2>> "$DIR/log") || true  # whatever the cell left running
}
step() {  # NAME FUNC ARGS...: a setup; when it fails the cells that need it print why
  rm -f "$DIR/reason"; echo "bench-vpp.sh: setup $1" >&2; echo "== setup $1" >> "$DIR/log"
  local rc; set +e; sub "$DIR/log" "${@:2}"; rc=$?; set -e
  [ $rc -eq 0 ] || cat "$DIR/reason" > "$DIR/failed/$1" 2>/dev/null || tail -1 "$DIR/log" > "$DIR/failed/$1"
}

# ---- 5a: wireguard-go <-> wireguard-go, A (core 1) encrypts a UDP flood (core 0); before VPP takes core 0

setup_wggo() {
  key ga; key gb
  ip netns add "$P-ga"; ip netns add "$P-gb"
  ip link add "$P-ea" type veth peer name "$P-eb"
  ip link set "$P-ea" netns "$P-ga"; ip link set "$P-eb" netns "$P-gb"
  ip -n "$P-ga" addr add 10.98.0.1/24 dev "$P-ea"; ip -n "$P-ga" link set "$P-ea" up
  ip -n "$P-gb" addr add 10.98.0.2/24 dev "$P-eb"; ip -n "$P-gb" link set "$P-eb" up
  start_bg wga ip netns exec "$P-ga" taskset -c 1 env WG_PROCESS_FOREGROUND=1 wireguard-go -f "$P-ta"
  start_bg wgb ip netns exec "$P-gb" taskset -c 0 env WG_PROCESS_FOREGROUND=1 wireguard-go -f "$P-tb"
  for _ in $(seq 100); do
    [ -S "/var/run/wireguard/$P-ta.sock" ] && [ -S "/var/run/wireguard/$P-tb.sock" ] && break; sleep 0.05
  done
  wg set "$P-ta" listen-port 51840 private-key "$DIR/keys/ga.key"
  wg set "$P-tb" listen-port 51841 private-key "$DIR/keys/gb.key" \
    peer "$(pub ga)" endpoint 10.98.0.1:51840 allowed-ips 10.97.0.0/24
  ip -n "$P-ga" addr add 10.97.0.1/24 dev "$P-ta"; ip -n "$P-ga" link set "$P-ta" mtu 1420 up
  ip -n "$P-gb" addr add 10.97.0.2/24 dev "$P-tb"; ip -n "$P-gb" link set "$P-tb" mtu 1420 up
  ip -n "$P-ga" neigh replace 10.98.0.2 lladdr "$(ip -n "$P-gb" -br link show "$P-eb" | awk '{print $3}')" \
    dev "$P-ea" nud permanent
}
fresh_wggo() {  # a new session (A initiates), then B's veth loses its address
  ip -n "$P-gb" addr replace 10.98.0.2/24 dev "$P-eb"
  wg set "$P-ta" peer "$(pub gb)" remove
  wg set "$P-ta" peer "$(pub gb)" endpoint 10.98.0.2:51841 allowed-ips 10.97.0.0/24
  ip netns exec "$P-ga" ping -c 1 -w 10 10.97.0.2 > /dev/null || fail "no handshake between the wireguard-go pair"
  ip -n "$P-gb" addr del 10.98.0.2/24 dev "$P-eb"
}
probe_wggo() { echo "$(link_ctr "$P-ga" "$P-ta" tx) $(link_ctr "$P-ga" "$P-ea" tx) $(ticks "$(pid_of wga)")"; }
enc_wggo() {  # SIZE: the flood's packets into the TUN (offered: sent and dropped), encrypted out of the veth
  needs wggo; local size=$1 k t tp td ep eb dt c
  fresh_wggo
  start_bg flood ip netns exec "$P-ga" taskset -c 0 python3 scripts/bench/udpflood.py 10.97.0.99 "$size" $((SECS + 15))
  warm first link_ctr "$P-ga" "$P-ea" tx
  k=$(window wggo probe_wggo)
  stop_pid "$(pid_of flood)"; rm -f "$DIR/pids/flood.pid"
  read -r t tp _ td ep eb _ dt <<<"$k"
  c=$(cpu "$dt")
  ep=$(segs "$ep" "$eb" "$size")
  echo "$(per $((tp + td)) "$t") $(per "$ep" "$t") - - $(per "$c" "$t") $(per "$ep" "$c")"
}

# ---- VPP, our daemon, VPP's own wireguard

setup_ours() {
  key vpp0; key vpp1; key vpeer
  "$TOPO" up "$P" "$DIR"
  VPP_POLL_SLEEP_USEC=0 VPP_CORE=0 "$TOPO" vpp "$P" "$DIR"
  vctl show clock verbose | awk '{for (i = 1; i < NF; i++) if ($i == "clocks/sec") {print $(i + 1) + 0; exit}}' > "$DIR/hz"
  [ -s "$DIR/hz" ] || fail "VPP's clock rate not found in 'show clock verbose'"
  ip netns exec "$P-wg" env VPP_MEMIF_CONFIG_DIR="$DIR/etc" VPP_MEMIF_SOCKET_DIR="$DIR/run" \
    VPP_API_SOCKET_PATH="$DIR/vpp/api.sock" LOG_LEVEL=info taskset -c 1 "$BIN" --foreground "$P" \
    > "$DIR/daemon.log" 2>&1 &
  echo $! > "$DIR/daemon.pid"  # topology.sh down stops it
  for _ in $(seq 200); do
    grep -q "tunnel up" "$DIR/daemon.log" && grep -q connected <<<"$(vctl show memif)" && break
    kill -0 "$(cat "$DIR/daemon.pid")" 2>/dev/null || fail "the daemon exited: $(tail -1 "$DIR/daemon.log")"
    sleep 0.1
  done
  grep -q connected <<<"$(vctl show memif)" || fail "the memif did not connect: $(tail -1 "$DIR/daemon.log")"
  wg setconf "$P" "$DIR/ours.conf"
  ip -n "$P-wg" neigh replace 10.99.77.2 lladdr "$(ip -n "$P-peer" -br link show "$P-b" | awk '{print $3}')" \
    dev "$P-a" nud permanent
}
setup_vppwg() {
  needs ours
  # wg0's peer: wireguard-go in P-vg (core 1 when it decrypts), behind the af_packet veth P-u/P-v.
  ip netns add "$P-vg"; ip -n "$P-vg" link set lo up
  ip link add "$P-u" type veth peer name "$P-v"; ip link set "$P-v" netns "$P-vg"; ip link set "$P-u" up
  ip -n "$P-vg" addr add 10.99.79.2/24 dev "$P-v"; ip -n "$P-vg" link set "$P-v" up
  start_bg vpeer ip netns exec "$P-vg" taskset -c 1 env WG_PROCESS_FOREGROUND=1 wireguard-go -f "$P-vw"
  for _ in $(seq 100); do [ -S "/var/run/wireguard/$P-vw.sock" ] && break; sleep 0.05; done
  wg set "$P-vw" listen-port 51831 private-key "$DIR/keys/vpeer.key"
  ip -n "$P-vg" addr add 172.23.0.33/32 dev "$P-vw"; ip -n "$P-vg" link set "$P-vw" mtu 1420 up
  ip -n "$P-vg" route add 172.23.0.0/24 dev "$P-vw"
  # wg1's peer: our daemon, through the veth P-x (VPP's af_packet) / P-y (P-wg). One packet per skb towards
  # VPP (af_packet takes no UDP GSO): the kernel segments in our daemon's send.
  ip link add "$P-x" type veth peer name "$P-y"; ip link set "$P-y" netns "$P-wg"; ip link set "$P-x" up
  ip -n "$P-wg" addr add 10.99.80.2/24 dev "$P-y"; ip -n "$P-wg" link set "$P-y" gso_max_segs 1 up
  vcli vpp-wg.cli
  wg set "$P" peer "$(pub vpp1)" endpoint 10.99.80.1:51823 allowed-ips 10.127.112.0/24
}
fresh_ours() {  # a new session (the wireguard-go peer initiates), then the peer's veth loses its address
  ip -n "$P-peer" addr replace 10.99.77.2/24 dev "$P-b"
  wg set "$P-w" peer "$(pub ours)" remove
  wg set "$P-w" peer "$(pub ours)" endpoint 10.99.77.1:51820 persistent-keepalive 25 \
    allowed-ips 172.22.77.0/24,fd28:cb8f:4c92::/64,10.127.111.0/24,fd00:4242::/64,fe80::4242/128,224.0.0.0/4,ff00::/8
  ip netns exec "$P-peer" ping -c 1 -w 10 10.127.111.1 > /dev/null || fail "no ping through our tunnel to VPP"
  ip -n "$P-peer" addr del 10.99.77.2/24 dev "$P-b"
}
fresh_vpeer() {  # a new session between VPP's wg0 and wireguard-go (wireguard-go initiates)
  ip -n "$P-vg" addr replace 10.99.79.2/24 dev "$P-v"
  wg set "$P-vw" peer "$(pub vpp0)" remove
  wg set "$P-vw" peer "$(pub vpp0)" endpoint 10.99.79.1:51822 allowed-ips 0.0.0.0/0
  ip netns exec "$P-vg" ping -c 1 -w 10 172.23.0.1 > /dev/null || fail "no handshake with VPP's wg0"
}

probe_ours() { ticks "$(cat "$DIR/daemon.pid")"; }
probe_enc_ours() { echo "$(vstat pg0 rx) $(link_ctr "$P-wg" "$P-a" tx) $(probe_ours)"; }
enc_ours() {  # SIZE RATE: rows 1 and 4
  needs ours vppwg; local size=$1 k t off dp db dt del c v
  fresh_ours
  stream enc pg0 10.200.0.2 172.22.77.33 "$size" "$2"
  warm first link_ctr "$P-wg" "$P-a" tx
  profile_start
  k=$(window enc probe_enc_ours); pg disable-stream
  profile_end
  read -r t off dp db _ dt <<<"$k"
  del=$(per "$(segs "$dp" "$db" "$size")" "$t"); c=$(per "$(cpu "$dt")" "$t")
  v=$(vpp_cost enc pg-input:memif3/3-output)
  echo "$(per "$off" "$t") $del $c ${v% *} - $(per "$del" "$c")"
}
sustained() {  # SIZE: the most our daemon delivers (encrypted) while VPP offers 25k/s, doubling up to 6.4M/s
  # or 8 times the best so far, 2 s each, one session; the "sustained rate" of rows 1, 3 and 4
  needs ours vppwg; local size=$1 r=25000 best=0 a b t dp db d
  fresh_ours
  stream enc pg0 10.200.0.2 172.22.77.33 "$size" "$r"
  warm first link_ctr "$P-wg" "$P-a" tx
  while [ "$r" -le 6400000 ] && [ "$r" -le $((8 * best + 100000)) ]; do
    pg configure enc rate "$r"; sleep 1
    a="$(now) $(link_ctr "$P-wg" "$P-a" tx)"; sleep 2; b="$(now) $(link_ctr "$P-wg" "$P-a" tx)"
    read -r t dp db _ <<<"$(delta "$a" "$b")"
    d=$(per "$(segs "$dp" "$db" "$size")" "$t"); echo "sustained $size B: offered $r/s, delivered $d/s" >&2
    best=$(awk -v a="$best" -v b="$d" 'BEGIN {printf "%.0f\n", (b > a ? b : a)}')
    r=$((r * 2))
  done
  pg disable-stream
  echo "$best" > "$DIR/sustained-$size"
}
enc_ours_at() {  # SIZE MULTIPLE|full: enc_ours at MULTIPLE times the sustained rate, or as fast as pg goes
  needs "sustained-$1"
  enc_ours "$1" "$(awk -v m="$2" -v r="$(cat "$DIR/sustained-$1")" -v f="$FULL" 'BEGIN {printf "%d", m == "full" ? f : m * r}')"
}
probe_enc_vpp() { echo "$(vstat pg0 rx) $(vstat "host-$P-u" tx)"; }
enc_vpp() {  # SIZE: pg0 -> wg0 -> host-P-u, whose far end has no address
  needs vppwg; local size=$1 k t off del v
  fresh_vpeer; ip -n "$P-vg" addr del 10.99.79.2/24 dev "$P-v"
  stream wenc pg0 10.200.0.2 172.23.0.99 "$size" "$FULL"
  warm vstat "host-$P-u" tx
  k=$(window wenc probe_enc_vpp); pg disable-stream
  read -r t off del <<<"$k"
  v=$(vpp_cost wenc pg-input:wg4-output-tun)
  echo "$(per "$off" "$t") $(per "$del" "$t") - ${v% *} - $(per "$(cat "$DIR/hz")" "${v#* }")"
}
probe_dec_wggo() { echo "$(vstat "host-$P-u" tx) $(link_ctr "$P-vg" "$P-vw" rx) $(ticks "$(pid_of vpeer)")"; }
dec_wggo() {  # SIZE: pg0 -> wg0 -> wireguard-go (core 1) -> TUN (the kernel drops: not a local address)
  needs vppwg; local size=$1 k t off del dt c v
  fresh_vpeer
  stream wdec pg0 10.200.0.2 172.23.0.99 "$size" "$FULL"
  warm first link_ctr "$P-vg" "$P-vw" rx
  k=$(window wdec probe_dec_wggo); pg disable-stream
  read -r t off del _ _ dt <<<"$k"
  del=$(per "$del" "$t"); c=$(per "$(cpu "$dt")" "$t"); v=$(vpp_cost wdec pg-input:wg4-output-tun)
  echo "$(per "$off" "$t") $del - ${v% *} $c $(per "$del" "$c")"
}
probe_dec_ours() { echo "$(vstat "host-$P-x" tx) $(vstat memif3/3 rx) $(probe_ours)"; }
dec_ours() {  # SIZE: pg1 -> wg1 -> host-P-x -> our daemon -> memif -> bridge, counted as memif3/3 rx
  needs vppwg; local size=$1 k t off del dt c v
  stream odec pg1 10.127.112.5 10.127.113.9 "$size" "$FULL"
  warm vstat memif3/3 rx
  profile_start
  k=$(window odec probe_dec_ours); pg disable-stream
  profile_end
  read -r t off del dt <<<"$k"
  del=$(per "$del" "$t"); c=$(per "$(cpu "$dt")" "$t")
  v=$(vpp_cost odec memif-input:ip4-lookup pg-input:wg4-output-tun)
  echo "$(per "$off" "$t") $del $c ${v% *} - $(per "$del" "$c")"
}
probe_dec_vpp() { echo "$(link_ctr "$P-wg" "$P-y" tx) $(vstat wg1 rx) $(probe_ours)"; }
dec_vpp() {  # SIZE: pg0 -> bridge -> our daemon -> UDP -> host-P-x -> wg1 (decrypts; table 7 drops)
  needs vppwg; local size=$1 k t dp db del dt v
  # At the rate our daemon sustains (sustained), so that it is not overloaded.
  stream vdec pg0 10.127.113.5 10.127.112.9 "$size" "$(cat "$DIR/sustained-$size" 2>/dev/null || echo "$FULL")"
  warm vstat wg1 rx
  k=$(window vdec probe_dec_vpp); pg disable-stream
  read -r t dp db _ del dt <<<"$k"
  v=$(vpp_cost vdec af-packet-input:wg4-input pg-input:memif3/3-output)
  echo "$(per "$(segs "$dp" "$db" "$size")" "$t") $(per "$del" "$t") $(per "$(cpu "$dt")" "$t") ${v% *} -" \
    "$(per "$(cat "$DIR/hz")" "${v#* }")"
}

# ---- the run

echo "bench-vpp.sh: peers, VPP, the daemon" >&2
scripts/install-deps.sh demo >&2
VPP_STATS=$("$VPPSH" home)/bin/vpp_get_stats
[ -x "$VPP_STATS" ] || { echo "bench-vpp.sh: VPP's vpp_get_stats not found at $VPP_STATS" >&2; exit 3; }
if [ -n "${WIREGUARD_VPP_BIN:-}" ]; then
  BIN=$WIREGUARD_VPP_BIN
else
  cargo build --release --locked --no-default-features --bin wireguard-vpp >&2
  BIN=$(cd "${CARGO_TARGET_DIR:-target}" && pwd)/release/wireguard-vpp
fi
[ -x "$BIN" ] || { echo "bench-vpp.sh: no daemon binary at $BIN" >&2; exit 1; }

step wggo setup_wggo
for s in $SIZES; do cell "5e-$s" "5. wireguard-go (TUN), encrypt (UDP flood)" "$s" enc_wggo "$s"; done
for f in "$DIR"/pids/wg[ab].pid; do stop_pid "$(cat "$f")"; rm -f "$f"; done

step ours setup_ours
step vppwg setup_vppwg
for s in $SIZES; do step "sustained-$s" sustained "$s"; done
for s in $SIZES; do cell "1-$s" "1. ours, encrypt, at the rate it sustains" "$s" enc_ours_at "$s" 1; done
for s in $SIZES; do cell "2-$s" "2. VPP wireguard plugin, encrypt" "$s" enc_vpp "$s"; done
for s in $SIZES; do cell "3o-$s" "3. ours, decrypt (VPP's wg1 sends)" "$s" dec_ours "$s"; done
for s in $SIZES; do cell "3v-$s" "3. VPP wireguard plugin, decrypt (ours sends)" "$s" dec_vpp "$s"; done
for s in $SIZES; do cell "5d-$s" "5. wireguard-go (TUN), decrypt (VPP's wg0 sends)" "$s" dec_wggo "$s"; done
for s in $SIZES; do
  for m in $SWEEP full; do
    label="offered ${m}x the sustained rate"; [ "$m" != full ] || label="VPP's pg at full rate"
    cell "4-$s-$m" "4. ours, encrypt, $label" "$s" enc_ours_at "$s" "$m"
  done
done

keys=()
for r in 1 2 5e 3o 3v 5d; do for s in $SIZES; do keys+=("$r-$s"); done; done
for s in $SIZES; do for m in $SWEEP full; do keys+=("4-$s-$m"); done; done
echo "| measurement | IP bytes | offered Mpps | delivered Mpps | delivered Gbit/s | ours CPU-s/s | VPP CPU-s/s" \
  "| wireguard-go CPU-s/s | M packets per CPU-second |"
echo "|---|---|---|---|---|---|---|---|---|"
for k in "${keys[@]}"; do cat "$DIR/rows/$k" 2>/dev/null || true; done
echo "bench-vpp.sh: ${SECS} s windows; VPP at $(cat "$DIR/hz" 2>/dev/null) clocks/s;" \
  "load average $(cut -d' ' -f1-3 /proc/loadavg)" >&2
