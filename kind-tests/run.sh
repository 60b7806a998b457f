#!/usr/bin/env bash
# The opt-in end-to-end suite on a kind cluster: VPP (no DPDK) as a DaemonSet, the wireguard-vpp chart with
# the image built from this tree, a wireguard-go peer pod, and one WireGuardVppTunnel. It asserts that the
# tunnel becomes Ready, that a ping from the peer crosses VPP to the BVI, that `wg show` in the agent shows a
# handshake, and that deleting the tunnel removes the memif from VPP.
#
# Needs Docker, kind, kubectl and helm, and registry access for the kind node, VPP and Debian images.
# Without them it skips (exit 0) with the reason, unless REQUIRE_E2E=1, which makes a skip a failure.
#
# Environment:
#   REQUIRE_E2E=1          fail instead of skipping when a tool or the Docker engine is missing
#   KEEP_CLUSTER=1         leave the cluster running afterwards (for debugging); delete it with
#                          `kind delete cluster --name <name>`
#   E2E_CLUSTER=NAME       cluster name (default: wgvpp-e2e-<pid>)
#   KIND_NODE_IMAGE=IMAGE  kind node image (default below: Kubernetes 1.34, which the chart accepts)
#   VPP_IMAGE=IMAGE        VPP image (default below: VPP 24.10, the oldest release whose API message CRCs
#                          equal those of v26.06, checked against a real v26.06 at connect in the tests)
#   E2E_TIMEOUT=SECONDS    how long each wait may take (default 180)
set -euo pipefail
cd "$(dirname "$0")/.."

VPP_IMAGE="${VPP_IMAGE:-ligato/vpp-base:24.10}"
KIND_NODE_IMAGE="${KIND_NODE_IMAGE:-kindest/node:v1.34.0}"
CLUSTER="${E2E_CLUSTER:-wgvpp-e2e-$$}"
TIMEOUT="${E2E_TIMEOUT:-180}"
AGENT_IMAGE=wireguard-vpp:e2e
PEER_IMAGE=wgvpp-e2e-peer:e2e
AGENT_NS=wgvpp
# helm and kubectl may come from the project's test virtualenv (scripts/install-deps.sh).
PATH="$PATH:$PWD/target/venv/bin"

log() { printf '[e2e] %s\n' "$*"; }
fail() { printf '[e2e] FAIL: %s\n' "$*" >&2; exit 1; }

skip() {
  if [ "${REQUIRE_E2E:-}" = 1 ]; then
    fail "$* (REQUIRE_E2E=1, so this is a failure)"
  fi
  printf '[e2e] SKIP: %s\n' "$*"
  exit 0
}

for tool in docker kind kubectl helm; do
  command -v "$tool" >/dev/null 2>&1 || skip "\`$tool\` is not installed; the kind suite needs docker, kind, kubectl and helm"
done
docker info >/dev/null 2>&1 || skip "no Docker engine answers (\`docker info\` failed)"

# Retries a command until it succeeds or TIMEOUT seconds pass.
wait_for() {
  local what=$1; shift
  local deadline=$((SECONDS + TIMEOUT))
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || fail "timed out after ${TIMEOUT}s waiting for $what"
    sleep 2
  done
}

cleanup() {
  local status=$?
  if [ "$status" -ne 0 ]; then
    log "collecting diagnostics"
    kubectl get pods -A -o wide || true
    kubectl -n "$AGENT_NS" logs -l app.kubernetes.io/name=wireguard-vpp --all-containers --tail=200 || true
    kubectl -n vpp logs -l app.kubernetes.io/name=vpp --tail=100 || true
    kubectl -n e2e get wireguardvpptunnels -o yaml || true
  fi
  if [ "${KEEP_CLUSTER:-}" = 1 ]; then
    log "keeping cluster $CLUSTER (kind delete cluster --name $CLUSTER)"
  else
    kind delete cluster --name "$CLUSTER" >/dev/null 2>&1 || true
  fi
  exit "$status"
}

log "creating kind cluster $CLUSTER"
kind_args=(--name "$CLUSTER" --config kind-tests/kind-config.yaml --wait "${TIMEOUT}s")
kind_args+=(--image "$KIND_NODE_IMAGE")
trap cleanup EXIT
kind create cluster "${kind_args[@]}"
kubectl config use-context "kind-$CLUSTER" >/dev/null

log "building and loading the images"
docker build -t "$AGENT_IMAGE" .
docker build -t "$PEER_IMAGE" kind-tests/peer
kind load docker-image --name "$CLUSTER" "$AGENT_IMAGE" "$PEER_IMAGE"

log "starting VPP ($VPP_IMAGE)"
sed "s|VPP_IMAGE|$VPP_IMAGE|" kind-tests/manifests/vpp.yaml | kubectl apply -f -
kubectl -n vpp rollout status daemonset/vpp --timeout "${TIMEOUT}s"
vpp_pod=$(kubectl -n vpp get pods -l app.kubernetes.io/name=vpp -o jsonpath='{.items[0].metadata.name}')
vppctl() { kubectl -n vpp exec "$vpp_pod" -- vppctl -s /run/vpp/cli.sock "$@"; }
wait_for "VPP's loop42 with 10.42.0.1/24 (setup.vpp)" \
  sh -c "kubectl -n vpp exec $vpp_pod -- vppctl -s /run/vpp/cli.sock show interface addr | grep -q 10.42.0.1/24"

log "installing the chart"
helm install wgvpp charts/wireguard-vpp --namespace "$AGENT_NS" --create-namespace \
  -f kind-tests/values.yaml \
  --set image.repository=wireguard-vpp --set image.tag=e2e --set image.pullPolicy=Never \
  --wait --timeout "${TIMEOUT}s"
agent_pod=$(kubectl -n "$AGENT_NS" get pods -l app.kubernetes.io/name=wireguard-vpp -o jsonpath='{.items[0].metadata.name}')
agent() { kubectl -n "$AGENT_NS" exec "$agent_pod" -c wireguard-vpp -- "$@"; }

log "starting the wireguard-go peer"
kubectl apply -f kind-tests/manifests/peer.yaml
kubectl -n e2e wait pod/wg-peer --for=condition=Ready --timeout "${TIMEOUT}s"
peer() { kubectl -n e2e exec wg-peer -- "$@"; }

node_name=$(kubectl get pod -n "$AGENT_NS" "$agent_pod" -o jsonpath='{.spec.nodeName}')
node_ip=$(kubectl get node "$node_name" -o jsonpath='{.status.addresses[?(@.type=="InternalIP")].address}')
peer_ip=$(kubectl -n e2e get pod wg-peer -o jsonpath='{.status.podIP}')

# Keys are made with wg in the peer pod; the agent's goes into the Secret the tunnel names.
pubkey() { kubectl -n e2e exec -i wg-peer -- wg pubkey; }
agent_private=$(peer wg genkey)
agent_public=$(printf '%s' "$agent_private" | pubkey)
peer_private=$(peer wg genkey)
peer_public=$(printf '%s' "$peer_private" | pubkey)
kubectl -n e2e create secret generic e2e-key --from-literal=privateKey="$agent_private"

printf '%s' "$peer_private" | kubectl -n e2e exec -i wg-peer -- sh -c 'cat > /run/peer.key && chmod 600 /run/peer.key'
peer wireguard-go wg0
peer wg set wg0 private-key /run/peer.key listen-port 51820 \
  peer "$agent_public" endpoint "$node_ip:51820" allowed-ips 10.42.0.0/24 persistent-keepalive 5
peer ip address add 10.42.0.2/24 dev wg0
peer ip link set wg0 up

log "applying the tunnel on node $node_name"
sed -e "s|NODE_NAME|$node_name|" -e "s|PEER_PUBLIC_KEY|$peer_public|" -e "s|PEER_ENDPOINT|$peer_ip:51820|" \
  kind-tests/manifests/tunnel.yaml | kubectl apply -f -

log "assert: the tunnel becomes Ready"
kubectl -n e2e wait wireguardvpptunnel/e2e --for=condition=Ready --timeout "${TIMEOUT}s"
status_key=$(kubectl -n e2e get wireguardvpptunnel/e2e -o jsonpath='{.status.publicKey}')
[ "$status_key" = "$agent_public" ] || fail "status.publicKey is '$status_key', expected the key from Secret e2e-key"

log "assert: the readiness change is an event of the tunnel"
events=$(kubectl -n e2e get events --field-selector involvedObject.kind=WireGuardVppTunnel,involvedObject.name=e2e -o name)
[ -n "$events" ] || fail "no event about wireguardvpptunnel/e2e"

log "assert: VPP has the memif in bridge 4242"
memifs=$(vppctl show memif)
grep -q 'memif7/7' <<<"$memifs" || fail "VPP shows no memif7/7: $memifs"
vppctl show bridge-domain 4242 detail | grep -q 'memif7/7' || fail "memif7/7 is not in bridge domain 4242"

log "assert: a ping from the peer crosses WireGuard, the agent and VPP to the BVI 10.42.0.1"
wait_for "a ping reply from 10.42.0.1" peer ping -c 1 -W 2 10.42.0.1
peer ping -c 5 -i 0.2 -W 2 10.42.0.1

log "assert: wg show in the agent shows a handshake"
handshakes=$(agent wg show all latest-handshakes)
awk '$3 > 0 { found = 1 } END { exit !found }' <<<"$handshakes" \
  || fail "no peer with a handshake in \`wg show all latest-handshakes\`: $handshakes"

log "assert: the metrics Service serves the tunnel's state"
metrics=$(kubectl get --raw "/api/v1/namespaces/$AGENT_NS/services/wgvpp-wireguard-vpp-metrics:metrics/proxy/metrics")
grep -q '^wireguard_vpp_tunnel_up{.*interface="e2e".*} 1' <<<"$metrics" \
  || fail "/metrics does not show tunnel e2e up: $(grep wireguard_vpp_tunnel_up <<<"$metrics")"

log "assert: deleting the tunnel removes the memif from VPP"
kubectl -n e2e delete wireguardvpptunnel/e2e --timeout "${TIMEOUT}s"
wait_for "memif7/7 to leave VPP" sh -c "! kubectl -n vpp exec $vpp_pod -- vppctl -s /run/vpp/cli.sock show memif | grep -q memif7/7"

log "PASS: all end-to-end assertions held"
