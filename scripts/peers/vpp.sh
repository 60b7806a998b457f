#!/usr/bin/env bash
# A real VPP of its own for one test or benchmark, laid out as an operator would for wireguard-vpp.
#
# Finds VPP in $VPP_HOME (bin/vpp, bin/vppctl), else in ../shared/vpp beside the project, else `vpp` and
# `vppctl` on the PATH. Each instance is isolated: its own runtime directory DIR (API socket DIR/api.sock,
# CLI socket DIR/cli.sock, pid, log), its own shared-memory prefix, and the main core CORE (default 0).
#
# The bridge it lays out (`bridge`), the commands of docs/vpp-setup.md:
#   loop42   BVI of bridge domain 4242, MAC 42:42:42:42:42:42 (the gateway MAC of the tunnels' gw file),
#            MTU $VPP_BVI_MTU (default 1500), 10.127.111.1/24, fd00:4242::1/64, link-local fe80::4242
#   loop420  a decoy whose name extends the BVI's (a lookup by substring would find it), in no bridge
#
# Usage: vpp.sh start DIR [CORE]   start VPP, wait until its API answers, lay out the bridge
#        vpp.sh restart DIR        kill VPP (-9, as a crash) and start it again with the same bridge
#        vpp.sh bridge DIR         lay out the bridge (idempotent only on a fresh VPP)
#        vpp.sh ctl DIR ARGS...    run a CLI command on this instance
#        vpp.sh stop DIR           stop VPP by its PID and remove everything it left (sockets, shared memory)
#        vpp.sh home               print where VPP was found
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)

find_vpp() {
  if [ -n "${VPP_HOME:-}" ]; then
    VPP_BIN=$VPP_HOME/bin/vpp VPPCTL_BIN=$VPP_HOME/bin/vppctl
  elif [ -x "$root/../shared/vpp/bin/vpp" ]; then
    VPP_BIN=$(cd "$root/../shared/vpp" && pwd)/bin/vpp
    VPPCTL_BIN=${VPP_BIN%/vpp}/vppctl
  else
    VPP_BIN=$(command -v vpp || true) VPPCTL_BIN=$(command -v vppctl || true)
  fi
  if [ ! -x "${VPP_BIN:-}" ] || [ ! -x "${VPPCTL_BIN:-}" ]; then
    echo "vpp.sh: VPP not found: set VPP_HOME, or install vpp and vppctl on the PATH" >&2
    exit 3
  fi
}

ctl() { "$VPPCTL_BIN" -s "$DIR/cli.sock" "$@"; }

# Fails with the command and VPP's answer when the CLI reports an error (vppctl itself exits 0 then).
must() {
  local out
  out=$(ctl "$@" 2>&1) || { echo "vpp.sh: vppctl $*: $out" >&2; exit 1; }
  # VPP's CLI errors read "<command>: <reason>"; the commands used here print no colon otherwise.
  if printf '%s' "$out" | grep -qE '^[a-z][a-z0-9 -]*: '; then
    echo "vpp.sh: vppctl $*: $out" >&2
    exit 1
  fi
}

write_config() {
  local core=$1 prefix
  # The shared-memory prefix: unique per runtime directory, short (it names files in /dev/shm).
  prefix=vpp$(printf '%s' "$DIR" | cksum | cut -d' ' -f1)
  echo "$core" > "$DIR/core"
  cat > "$DIR/startup.conf" <<CONF
unix { nodaemon runtime-dir $DIR cli-listen $DIR/cli.sock pidfile $DIR/vpp.pid log $DIR/vpp.log poll-sleep-usec ${VPP_POLL_SLEEP_USEC:-100} }
api-segment { prefix $prefix }
socksvr { socket-name $DIR/api.sock }
memory { main-heap-size 512M main-heap-page-size 4k }
buffers { buffers-per-numa 16384 page-size 4k }
statseg { size 32M page-size 4k socket-name $DIR/stats.sock }
cpu { main-core $core }
plugins {
  plugin default { disable }
  plugin memif_plugin.so { enable }
  plugin wireguard_plugin.so { enable }
  plugin ping_plugin.so { enable }
  plugin af_packet_plugin.so { enable }
  plugin perfmon_plugin.so { enable }
}
CONF
  echo "$prefix" > "$DIR/prefix"
}

launch() {
  rm -f "$DIR/api.sock" "$DIR/cli.sock" "$DIR/stats.sock"
  "$VPP_BIN" -c "$DIR/startup.conf" >> "$DIR/stdout.log" 2>&1 &
  echo $! > "$DIR/vpp.pid.launched"
  local pid=$! i
  for i in $(seq 200); do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "vpp.sh: VPP exited at start; its output:" >&2
      tail -20 "$DIR/stdout.log" >&2
      exit 1
    fi
    if [ -S "$DIR/api.sock" ] && ctl show version >/dev/null 2>&1; then
      return 0
    fi
    sleep 0.05
  done
  echo "vpp.sh: VPP did not answer within 10 s; its output:" >&2
  tail -20 "$DIR/stdout.log" >&2
  exit 1
}

bridge() {
  must create loopback interface mac 42:42:42:42:42:42 instance 42
  must create loopback interface instance 420
  must create bridge-domain 4242
  must set interface l2 bridge loop42 4242 bvi
  must set interface mtu packet "${VPP_BVI_MTU:-1500}" loop42
  must set interface state loop42 up
  must set interface ip address loop42 10.127.111.1/24
  must set interface ip address loop42 fd00:4242::1/64
  must set interface ip address loop42 fe80::4242/128
}

stop() {
  local f pid
  for f in "$DIR/vpp.pid.launched" "$DIR/vpp.pid"; do
    [ -f "$f" ] || continue
    pid=$(cat "$f")
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
    kill -KILL "$pid" 2>/dev/null || true
    rm -f "$f"
  done
  [ -f "$DIR/prefix" ] && rm -f /dev/shm/"$(cat "$DIR/prefix")"-* 2>/dev/null
  rm -f "$DIR/api.sock" "$DIR/cli.sock" "$DIR/stats.sock"
}

cmd=${1:?usage: vpp.sh start|restart|bridge|ctl|stop DIR | vpp.sh home}
find_vpp
if [ "$cmd" = home ]; then
  dirname "$(dirname "$VPP_BIN")"
  exit 0
fi
DIR=${2:?runtime directory}
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
case "$cmd" in
  start)
    write_config "${3:-0}"
    trap 'stop' ERR
    launch
    bridge
    trap - ERR
    ;;
  restart)
    pid=$(cat "$DIR/vpp.pid.launched")
    kill -KILL "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
    rm -f "$DIR/vpp.pid" /dev/shm/"$(cat "$DIR/prefix")"-* 2>/dev/null || true
    launch
    bridge
    ;;
  bridge) bridge ;;
  ctl) shift 2; ctl "$@" ;;
  stop) stop ;;
  *) echo "vpp.sh: unknown command $cmd" >&2; exit 2 ;;
esac
