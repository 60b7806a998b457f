#!/usr/bin/env bash
# Builds the container image from the Dockerfile and checks that it works: `wireguard-vpp --version` prints
# the package version, `wg --version` runs, and the image runs as its unprivileged user with no network, a
# read-only root and no capabilities.
#
# Usage: scripts/image-check.sh [--start-engine] [--local-base-images] [--no-build] [IMAGE]
#   IMAGE               defaults to wireguard-vpp:check
#   --start-engine      when no Docker engine answers, start Debian's dockerd privately (as root, data under
#                       target/dockerd, no iptables and no bridge) and stop it again at the end
#   --local-base-images make the Dockerfile's base images first with scripts/local-base-images.sh (for
#                       machines without a container registry) and build offline on the host network
#   --no-build          check an existing IMAGE only
# Environment: DOCKER_HOST (the engine), RUST_IMAGE and RUNTIME_IMAGE (passed as build args when set),
# DOCKER_BUILD_ARGS (extra `docker build` arguments, e.g. --network=host), REQUIRE_IMAGE=1 (fail instead of
# skipping when there is no engine).
set -euo pipefail
cd "$(dirname "$0")/.."

start_engine=0
local_base_images=0
build=1
image=wireguard-vpp:check
for arg in "$@"; do
  case "$arg" in
    --start-engine) start_engine=1 ;;
    --local-base-images) local_base_images=1 ;;
    --no-build) build=0 ;;
    -*) echo "image-check: unknown option $arg (see the header of $0)" >&2; exit 2 ;;
    *) image=$arg ;;
  esac
done

log() { printf '[image-check] %s\n' "$*"; }
fail() { printf '[image-check] FAIL: %s\n' "$*" >&2; exit 1; }
skip() {
  if [ "${REQUIRE_IMAGE:-}" = 1 ]; then fail "$* (REQUIRE_IMAGE=1)"; fi
  log "SKIP: $*; the image was not built"
  exit 0
}

command -v docker >/dev/null 2>&1 || skip "no docker client installed"

engine_pid=""
stop_engine() {
  if [ -n "$engine_pid" ]; then
    kill "$engine_pid" 2>/dev/null || true
    wait "$engine_pid" 2>/dev/null || true
  fi
}

if ! docker info >/dev/null 2>&1; then
  if [ "$start_engine" = 0 ]; then
    skip "no Docker engine answers (\`docker info\` failed; --start-engine starts one as root)"
  fi
  command -v dockerd >/dev/null 2>&1 || skip "no Docker engine answers and dockerd is not installed (Debian ships it as the Docker engine package)"
  [ "$(id -u)" = 0 ] || skip "starting dockerd needs root"
  state="$PWD/target/dockerd"
  mkdir -p "$state"
  export DOCKER_HOST="unix://$state/docker.sock"
  log "starting dockerd (log: $state/dockerd.log)"
  dockerd --data-root "$state/data" --exec-root "$state/exec" --pidfile "$state/dockerd.pid" \
    -H "$DOCKER_HOST" --iptables=false --ip6tables=false --bridge=none --storage-driver=overlay2 \
    >"$state/dockerd.log" 2>&1 &
  engine_pid=$!
  trap stop_engine EXIT
  for _ in $(seq 60); do
    docker info >/dev/null 2>&1 && break
    kill -0 "$engine_pid" 2>/dev/null || fail "dockerd exited; see $state/dockerd.log"
    sleep 1
  done
  docker info >/dev/null 2>&1 || fail "dockerd did not answer within 60 s; see $state/dockerd.log"
fi
log "engine: $(docker version --format 'server {{.Server.Version}}, API {{.Server.APIVersion}}')"

if [ "$local_base_images" = 1 ]; then
  scripts/local-base-images.sh
fi

if [ "$build" = 1 ]; then
  build_args=()
  if [ "$local_base_images" = 1 ]; then
    build_args+=(--network=host --build-arg CARGO_NET_OFFLINE=true)
  fi
  [ -n "${RUST_IMAGE:-}" ] && build_args+=(--build-arg "RUST_IMAGE=$RUST_IMAGE")
  [ -n "${RUNTIME_IMAGE:-}" ] && build_args+=(--build-arg "RUNTIME_IMAGE=$RUNTIME_IMAGE")
  # shellcheck disable=SC2206 # DOCKER_BUILD_ARGS is a list of words on purpose
  build_args+=(${DOCKER_BUILD_ARGS:-})
  # Without the buildx plugin, the Docker client needs the classic builder.
  docker buildx version >/dev/null 2>&1 || export DOCKER_BUILDKIT=0
  log "building $image"
  started=$SECONDS
  docker build "${build_args[@]}" -t "$image" .
  log "built in $((SECONDS - started)) s"
fi

# Every check runs the image the way the chart does: no network, read-only root, no capabilities.
run() { docker run --rm --network=none --read-only --cap-drop=ALL --security-opt=no-new-privileges "$@"; }

expected_version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
version_output=$(run "$image" --version) || fail "\`wireguard-vpp --version\` failed in $image"
log "wireguard-vpp --version: $version_output"
grep -qF "$expected_version" <<<"$version_output" \
  || fail "\`wireguard-vpp --version\` printed '$version_output', expected version $expected_version"

wg_output=$(run --entrypoint wg "$image" --version) || fail "\`wg --version\` failed in $image"
log "wg --version: $wg_output"
grep -q '^wireguard-tools v' <<<"$wg_output" || fail "\`wg --version\` printed '$wg_output'"

user=$(docker image inspect --format '{{.Config.User}}' "$image")
[ "$user" = "65532:65532" ] || fail "the image runs as '$user', expected 65532:65532"
entrypoint=$(docker image inspect --format '{{json .Config.Entrypoint}}' "$image")
[ "$entrypoint" = '["/usr/local/bin/wireguard-vpp"]' ] || fail "entrypoint is $entrypoint, expected the binary in exec form"

size=$(docker image inspect --format '{{.Size}}' "$image")
log "image $image: user $user, entrypoint $entrypoint, $((size / 1000000)) MB"
log "PASS"
