#!/usr/bin/env bash
# Makes the Dockerfile's two base images locally, for machines that reach a Debian mirror but no container
# registry. Both are tagged with the names the Dockerfile's FROM lines use by default, so the Dockerfile builds
# unchanged:
#   debian:bookworm-slim      a debootstrap'ed Debian 12 (minbase), imported
#   rust:1.95-slim-bookworm   that image plus gcc and libc6-dev, this machine's Rust toolchain (rustc, cargo)
#                             and its crate cache (CARGO_HOME/registry), so the build can run offline
#                             (--build-arg CARGO_NET_OFFLINE=true)
#
# Usage: scripts/local-base-images.sh [MIRROR_URL]
#   MIRROR_URL defaults to the first Debian URI of this machine's apt sources.
# Needs root, debootstrap, rustc/cargo, and a Docker engine (DOCKER_HOST is honoured). Work files go to
# target/base-images.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNTIME_IMAGE=debian:bookworm-slim
RUST_IMAGE=rust:1.95-slim-bookworm
work="$PWD/target/base-images"

log() { printf '[base-images] %s\n' "$*"; }
fail() { printf '[base-images] FAIL: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || fail "debootstrap needs root"
command -v debootstrap >/dev/null || fail "debootstrap is not installed (apt-get install debootstrap)"
docker info >/dev/null 2>&1 || fail "no Docker engine answers (see scripts/image-check.sh --start-engine)"

mirror="${1:-}"
if [ -z "$mirror" ]; then
  mirror=$(grep -hoE '^URIs: *[^ ]+/debian/?$' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -1 | sed 's/^URIs: *//')
  [ -n "$mirror" ] || mirror=$(grep -hoE '^deb +[^ ]+/debian/? +bookworm' /etc/apt/sources.list 2>/dev/null | head -1 | awk '{print $2}')
  [ -n "$mirror" ] || fail "no Debian mirror found in the apt sources; pass one as MIRROR_URL"
fi

mkdir -p "$work"
rootfs="$work/rootfs"
if [ ! -f "$rootfs/.complete" ]; then
  log "debootstrap bookworm (minbase) from $mirror"
  rm -rf "$rootfs"
  debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 \
    || fail "debootstrap failed; see $work/debootstrap.log"
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  touch "$rootfs/.complete"
fi
log "importing $RUNTIME_IMAGE"
tar -C "$rootfs" --exclude=./.complete -c . | docker import --change 'CMD ["/bin/bash"]' - "$RUNTIME_IMAGE" >/dev/null

# The builder: a build context with the toolchain and the crate cache (hard links where possible).
context="$work/builder"
rm -rf "$context"
mkdir -p "$context/rust" "$context/cargo"
sysroot=$(rustc --print sysroot)
cp -al "$sysroot/bin" "$sysroot/lib" "$context/rust/" 2>/dev/null || cp -a "$sysroot/bin" "$sysroot/lib" "$context/rust/"
cargo_home="${CARGO_HOME:-$HOME/.cargo}"
if [ -d "$cargo_home/registry" ]; then
  cp -al "$cargo_home/registry" "$context/cargo/" 2>/dev/null || cp -a "$cargo_home/registry" "$context/cargo/"
fi
cp /etc/ssl/certs/ca-certificates.crt "$context/ca-certificates.crt"
cat >"$context/Dockerfile" <<EOF
FROM $RUNTIME_IMAGE
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev ca-certificates \\
 && rm -rf /var/lib/apt/lists/*
# This machine's trust store, for a crate registry reached through a TLS-inspecting proxy.
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY rust /usr/local/rust
COPY cargo /usr/local/cargo
ENV PATH=/usr/local/rust/bin:/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \\
    CARGO_HOME=/usr/local/cargo
EOF
log "building $RUST_IMAGE ($(du -sh "$context" | cut -f1) of context)"
DOCKER_BUILDKIT=0 docker build --network=host -q -t "$RUST_IMAGE" "$context" >/dev/null
docker run --rm --network=none "$RUST_IMAGE" cargo --version
log "done: $RUNTIME_IMAGE and $RUST_IMAGE"
