#!/usr/bin/env bash
# Builds `crd-apiserver`: the upstream Kubernetes apiextensions API server with an embedded etcd, the real
# API server the Kubernetes tests run against (CRDs, OpenAPI validation, CEL, defaulting, server-side apply,
# status subresource, finalizers, watch), which also serves core/v1 Secrets, Namespaces and Events (and the
# same Events as events.k8s.io/v1) with the upstream generic registry storage. It is not a full cluster:
# there are no other core resources, no RBAC, no admission plugins and no controllers besides the CRD ones.
#
# The Go sources and the Go toolchain come from Debian unstable's `golang-*` source packages, fetched with a
# private apt state (the system's apt configuration and installed packages are neither read nor changed),
# extracted and never installed or committed. Only the wrapper `main.go` next to this script is ours; the
# OpenAPI definitions of the core types it serves (k8s.io/kubernetes's generated ones are not packaged) are
# generated here with the packaged openapi-gen into the package `wgvpp.local/crd-apiserver/coreopenapi`.
#
# Usage: build-crd-apiserver.sh [CACHE_DIR] [OUTPUT]
#   CACHE_DIR  apt state, extracted sources and Go build cache (default: target/crd-apiserver-cache)
#   OUTPUT     the binary (default: target/crd-apiserver)
# Environment: DEBIAN_MIRROR overrides the Debian mirror (default: the first Debian URI in the system's
# apt sources).
#
# Cached: the download and extraction run once per cache directory; the binary is rebuilt only when the
# wrapper is newer than it.
set -euo pipefail
cd "$(dirname "$0")/../.."

CACHE="$(realpath -m "${1:-target/crd-apiserver-cache}")"
OUT="$(realpath -m "${2:-target/crd-apiserver}")"
WRAPPER="$(realpath scripts/k8s/main.go)"

if [ -x "$OUT" ] && [ "$OUT" -nt "$WRAPPER" ] && [ "$OUT" -nt "$0" ]; then
  echo "crd-apiserver: up to date ($OUT)"
  exit 0
fi

mirror() {
  if [ -n "${DEBIAN_MIRROR:-}" ]; then echo "$DEBIAN_MIRROR"; return; fi
  local uri
  uri=$(grep -hsE '^(URIs:|deb )' /etc/apt/sources.list /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list 2>/dev/null \
    | grep -oE '(https?)://[^ ]+/debian/?$' | head -n1 || true)
  if [ -z "$uri" ]; then
    echo "crd-apiserver: no Debian mirror found in the apt sources; set DEBIAN_MIRROR" >&2
    exit 1
  fi
  echo "$uri"
}

APT="$CACHE/apt"
EXTRACT="$CACHE/extract"
if [ ! -f "$CACHE/.extracted" ]; then
  rm -rf "$APT" "$EXTRACT" "$CACHE/debs"
  mkdir -p "$APT"/{lists/partial,cache/archives/partial,etc/sources.list.d,etc/preferences.d} "$CACHE/debs" "$EXTRACT"
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $(mirror) sid main" > "$APT/etc/sources.list"
  : > "$APT/status"
  APTO=(-o "Dir::Etc=$APT/etc" -o "Dir::Etc::SourceList=$APT/etc/sources.list"
        -o "Dir::Etc::SourceParts=$APT/etc/sources.list.d" -o "Dir::State::Lists=$APT/lists"
        -o "Dir::Cache=$APT/cache" -o "Dir::State::status=$APT/status"
        -o "Dir::Etc::PreferencesParts=$APT/etc/preferences.d" -o "APT::Install-Recommends=false"
        -o "APT::Sandbox::User=root")
  echo "crd-apiserver: resolving the Debian unstable Go sources"
  apt-get "${APTO[@]}" update -qq
  # Only the arch-independent Go sources and the Go toolchain are needed; the rest of the closure (libc,
  # protobuf, ...) is already on the machine or irrelevant to a pure-Go build.
  # golang-k8s-api-dev has the core/v1 and events/v1 types; kube-openapi, gengo and x/tools make openapi-gen.
  mapfile -t wanted < <(apt-get "${APTO[@]}" --print-uris -y -qq install golang-k8s-apiextensions-apiserver-dev \
      golang-k8s-api-dev golang-k8s-kube-openapi-dev golang-github-kubernetes-gengo-dev golang-golang-x-tools-dev golang-go \
    | awk '{print $2}' | grep '^golang-' \
    | python3 -c 'import sys, urllib.parse
for line in sys.stdin:
    name, version, _ = urllib.parse.unquote(line.strip()).split("_")
    print(f"{name}={version}")')
  if [ "${#wanted[@]}" -lt 100 ]; then
    echo "crd-apiserver: expected a few hundred golang-* packages, got ${#wanted[@]}" >&2
    exit 1
  fi
  echo "crd-apiserver: downloading ${#wanted[@]} packages"
  (cd "$CACHE/debs" && apt-get "${APTO[@]}" download -qq "${wanted[@]}")
  echo "crd-apiserver: extracting"
  for deb in "$CACHE"/debs/*.deb; do dpkg-deb -x "$deb" "$EXTRACT"; done
  touch "$CACHE/.extracted"
fi

GOROOT_DIR=$(ls -d "$EXTRACT"/usr/lib/go-1.* | sort -V | tail -n1)
GOPATH_DIR="$EXTRACT/usr/share/gocode"
K8S_VERSION=$(ls "$CACHE"/debs/golang-k8s-apiextensions-apiserver-dev_*.deb | sed -E 's/.*_([0-9]+\.[0-9]+\.[0-9]+)[^_]*_all\.deb$/\1/')
MINOR=$(echo "$K8S_VERSION" | cut -d. -f2)

SRC="$GOPATH_DIR/src/wgvpp.local/crd-apiserver"
mkdir -p "$SRC"
cp "$WRAPPER" "$SRC/main.go"
# A go.mod next to main.go turns on GOPATH mode's "minimal module compatibility", without which the
# `/v3/` import paths of etcd are not found.
printf 'module wgvpp.local/crd-apiserver\n\ngo 1.25\n' > "$SRC/go.mod"
GO=(env GOROOT="$GOROOT_DIR" GOPATH="$GOPATH_DIR" GO111MODULE=off GOTOOLCHAIN=local GOPROXY=off GOFLAGS=
    CGO_ENABLED=0 GOCACHE="$CACHE/gocache" PATH="$GOROOT_DIR/bin:$PATH")

# The OpenAPI definitions of core/v1 and events.k8s.io/v1 (server-side apply needs them), generated together
# with the apimachinery packages they refer to so that every reference uses the same model names.
OPENAPI_GEN="$CACHE/bin/openapi-gen"
if [ ! -x "$OPENAPI_GEN" ]; then
  echo "crd-apiserver: building openapi-gen"
  "${GO[@]}" go build -trimpath -o "$OPENAPI_GEN.tmp" k8s.io/kube-openapi/cmd/openapi-gen
  mv "$OPENAPI_GEN.tmp" "$OPENAPI_GEN"
fi
echo "crd-apiserver: generating the core OpenAPI definitions"
rm -rf "$SRC/coreopenapi"
"${GO[@]}" "$OPENAPI_GEN" --output-dir "$SRC/coreopenapi" --output-pkg wgvpp.local/crd-apiserver/coreopenapi \
  --output-file zz_generated.openapi.go --go-header-file /dev/null --report-filename /dev/null \
  k8s.io/api/core/v1 k8s.io/api/events/v1 k8s.io/apimachinery/pkg/apis/meta/v1 k8s.io/apimachinery/pkg/runtime \
  k8s.io/apimachinery/pkg/api/resource k8s.io/apimachinery/pkg/util/intstr k8s.io/apimachinery/pkg/version

echo "crd-apiserver: building Kubernetes v1.$MINOR (${K8S_VERSION}) with $(basename "$GOROOT_DIR")"
mkdir -p "$(dirname "$OUT")"
"${GO[@]}" go build -trimpath -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=v1.$MINOR.${K8S_VERSION##*.} \
    -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$MINOR" \
  -o "$OUT.tmp" wgvpp.local/crd-apiserver
mv "$OUT.tmp" "$OUT"
echo "crd-apiserver: built $OUT"
