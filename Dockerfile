# The wireguard-vpp image: the agent binary, built in release mode from the locked dependency set, on a
# Debian slim base with wireguard-tools (so `kubectl exec ... wg show` works). It runs as an unprivileged
# user and needs no shell. Both base images can be overridden (e.g. with locally made images):
#   docker build --build-arg RUST_IMAGE=... --build-arg RUNTIME_IMAGE=... -t wireguard-vpp .

ARG RUST_IMAGE=rust:1.95-slim-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

FROM ${RUST_IMAGE} AS build
WORKDIR /src
# ring (used by gotatun and the TLS stack) needs a C compiler, which the slim Rust image may lack.
RUN if ! command -v cc >/dev/null; then \
      apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev && rm -rf /var/lib/apt/lists/*; \
    fi
# For an offline build from a builder image whose CARGO_HOME already holds the crates: --build-arg CARGO_NET_OFFLINE=true
ARG CARGO_NET_OFFLINE
COPY . .
RUN cargo build --release --locked --bin wireguard-vpp \
 && install -D -m 0755 "${CARGO_TARGET_DIR:-target}/release/wireguard-vpp" /out/wireguard-vpp
# The release profile keeps line tables for local debugging; the image keeps symbol names only (98 MB -> 18 MB).
RUN strip --strip-debug /out/wireguard-vpp

FROM ${RUNTIME_IMAGE}
LABEL org.opencontainers.image.title="wireguard-vpp" \
      org.opencontainers.image.description="Userspace WireGuard endpoint attached to the FD.io VPP router over memif" \
      org.opencontainers.image.licenses="MIT OR Apache-2.0"
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends wireguard-tools ca-certificates \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt /var/log/dpkg.log \
 && groupadd --gid 65532 wireguard-vpp \
 && useradd --no-log-init --uid 65532 --gid 65532 --home-dir /nonexistent --no-create-home \
      --shell /usr/sbin/nologin wireguard-vpp \
 && install -d -o 65532 -g 65532 -m 0750 /var/run/wireguard /var/run/wggo-vpp /etc/wggo-vpp
COPY --from=build /out/wireguard-vpp /usr/local/bin/wireguard-vpp
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/wireguard-vpp"]
CMD ["controller"]
