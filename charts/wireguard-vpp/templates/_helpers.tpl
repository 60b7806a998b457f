{{/*
Names, labels and the pieces shared by the DaemonSet and the sidecar patch.
*/}}

{{- define "wireguard-vpp.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "wireguard-vpp.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "wireguard-vpp.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "wireguard-vpp.selectorLabels" -}}
app.kubernetes.io/name: {{ include "wireguard-vpp.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: agent
{{- end }}

{{- define "wireguard-vpp.labels" -}}
helm.sh/chart: {{ include "wireguard-vpp.chart" . }}
{{ include "wireguard-vpp.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "wireguard-vpp.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "wireguard-vpp.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "wireguard-vpp.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* The API group and resource of the custom resource; the chart test checks them against crds/. */}}
{{- define "wireguard-vpp.crdGroup" -}}wgvpp.io{{- end }}
{{- define "wireguard-vpp.crdPlural" -}}wireguardvpptunnels{{- end }}

{{/* Where the agent reads its gw/<bridgeID>.json files (VPP_MEMIF_CONFIG_DIR). */}}
{{- define "wireguard-vpp.configDir" -}}/etc/wggo-vpp{{- end }}
{{/* The WireGuard UAPI directory, fixed: `wg` looks there. */}}
{{- define "wireguard-vpp.uapiDir" -}}/var/run/wireguard{{- end }}

{{- define "wireguard-vpp.metricsAddr" -}}
{{- $host := .Values.metrics.bindAddress }}
{{- if contains ":" $host }}
{{- printf "[%s]:%d" $host (int .Values.metrics.port) }}
{{- else }}
{{- printf "%s:%d" $host (int .Values.metrics.port) }}
{{- end }}
{{- end }}

{{/* The gateway files, keyed by ConfigMap key (gw/<bridgeID>.json lives at <configDir>/gw/<bridgeID>.json). */}}
{{- define "wireguard-vpp.gatewayFiles" -}}
{{- $seen := dict }}
{{- range .Values.gateways }}
{{- $id := printf "%d" (int64 .bridgeID) }}
{{- if hasKey $seen $id }}
{{- fail (printf "gateways: bridgeID %s is listed twice; give each bridge domain one entry" $id) }}
{{- end }}
{{- $_ := set $seen $id true }}
{{- if ne (len (splitList ":" .wgIfMacaddrPrefix)) (len (splitList ":" .vppIfMacaddrPrefix)) }}
{{- fail (printf "gateways[bridgeID %s]: wgIfMacaddrPrefix %q and vppIfMacaddrPrefix %q must have the same number of octets" $id .wgIfMacaddrPrefix .vppIfMacaddrPrefix) }}
{{- end }}
{{- $neighbor := default dict .installNeighbor }}
{{- $flag := default dict .installNeighborFlag }}
{{- $routes := default dict .installRoutes }}
{{- $file := dict
  "GatewayMacAddr" .gatewayMacAddr
  "WgIfMacaddrPrefix" .wgIfMacaddrPrefix
  "VppIfMacaddrPrefix" .vppIfMacaddrPrefix
  "VppBridgeLoop_InstallMethod" (default "none" .installMethod)
  "VppBridgeLoop_SwIfName" (default "" .swIfName)
  "VppBridgeLoop_SwIfIndex" (int64 (default 0 .swIfIndex))
  "VppBridgeLoop_InstallNeighbor" (dict "IPv4" (default false $neighbor.ipv4) "IPv6" (default false $neighbor.ipv6) "IPv6 link-local" (default false $neighbor.ipv6LinkLocal))
  "VppBridgeLoop_InstallNeighbor_Flag" (dict "static" (default false $flag.static) "no-fib-entry" (default false $flag.noFibEntry))
  "VppBridgeLoop_InstallRoutes" (dict "IPv4" (default false $routes.ipv4) "IPv6" (default false $routes.ipv6) "IPv6 link-local" (default false $routes.ipv6LinkLocal))
}}
{{ printf "%s.json" $id | quote }}: |
  {{- toPrettyJson $file | nindent 2 }}
{{- end }}
{{- end }}

{{/*
The agent container. Context: dict with "root" (the chart's .), "apiVolume" and "memifVolume" (volume names).
*/}}
{{- define "wireguard-vpp.agentContainer" -}}
{{- $root := .root }}
{{- $v := $root.Values -}}
- name: wireguard-vpp
  image: {{ include "wireguard-vpp.image" $root | quote }}
  imagePullPolicy: {{ $v.image.pullPolicy }}
  args:
    - controller
    - --node-name
    - $(NODE_NAME)
    - --metrics-addr
    - {{ include "wireguard-vpp.metricsAddr" $root | quote }}
    {{- range $v.extraArgs }}
    - {{ . | quote }}
    {{- end }}
  env:
    - name: NODE_NAME
      valueFrom:
        fieldRef:
          fieldPath: spec.nodeName
    - name: VPP_API_SOCKET_PATH
      value: {{ $v.vpp.apiSocketPath | quote }}
    - name: VPP_MEMIF_SOCKET_DIR
      value: {{ $v.vpp.memifSocketDir | quote }}
    - name: VPP_MEMIF_CONFIG_DIR
      value: {{ include "wireguard-vpp.configDir" $root | quote }}
    - name: LOG_LEVEL
      value: {{ $v.logLevel | quote }}
    - name: WGVPP_STARTUP_GRACE
      value: {{ $v.probes.startupGraceSeconds | int | toString | quote }}
    - name: WGVPP_WATCH_STALL_TIMEOUT
      value: {{ $v.probes.watchStallSeconds | int | toString | quote }}
    {{- with $v.watchNamespace }}
    - name: WATCH_NAMESPACE
      value: {{ . | quote }}
    {{- end }}
    {{- with $v.extraEnv }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  ports:
    - name: metrics
      containerPort: {{ $v.metrics.port }}
      protocol: TCP
  # What /healthz and /readyz check: docs/kubernetes.md. The kubelet connects to the pod's IP, so
  # metrics.bindAddress must cover it (the binary alone binds 127.0.0.1).
  livenessProbe:
    httpGet:
      path: /healthz
      port: metrics
    initialDelaySeconds: {{ $v.probes.liveness.initialDelaySeconds }}
    periodSeconds: {{ $v.probes.liveness.periodSeconds }}
    timeoutSeconds: {{ $v.probes.liveness.timeoutSeconds | default 3 }}
    failureThreshold: {{ $v.probes.liveness.failureThreshold }}
  readinessProbe:
    httpGet:
      path: /readyz
      port: metrics
    initialDelaySeconds: {{ $v.probes.readiness.initialDelaySeconds }}
    periodSeconds: {{ $v.probes.readiness.periodSeconds }}
    timeoutSeconds: {{ $v.probes.readiness.timeoutSeconds | default 3 }}
    failureThreshold: {{ $v.probes.readiness.failureThreshold }}
  {{- with $v.resources }}
  resources:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    allowPrivilegeEscalation: false
    readOnlyRootFilesystem: true
    {{- if $v.netAdmin }}
    # fwmark: CAP_NET_ADMIN, which Kubernetes grants to uid 0 only.
    runAsUser: {{ include "wireguard-vpp.agentUser" $root }}
    runAsGroup: {{ include "wireguard-vpp.agentGroup" $root }}
    runAsNonRoot: false
    capabilities:
      drop: [ALL]
      add: [NET_ADMIN]
    {{- else }}
    runAsUser: {{ $v.runAsUser }}
    runAsGroup: {{ include "wireguard-vpp.agentGroup" $root }}
    runAsNonRoot: true
    capabilities:
      drop: [ALL]
    {{- end }}
  volumeMounts:
    - name: {{ .apiVolume }}
      mountPath: {{ dir $v.vpp.apiSocketPath }}
    - name: {{ .memifVolume }}
      mountPath: {{ $v.vpp.memifSocketDir }}
    - name: wgvpp-uapi
      mountPath: {{ include "wireguard-vpp.uapiDir" $root }}
    - name: wgvpp-config
      mountPath: {{ include "wireguard-vpp.configDir" $root }}
    - name: wgvpp-gateways
      mountPath: {{ include "wireguard-vpp.configDir" $root }}/gw
      readOnly: true
    # The root file system is read-only; this is the only scratch space.
    - name: wgvpp-tmp
      mountPath: /tmp
    {{- if eq $v.mode "sidecar" }}
    # The API credentials of the pod's (VPP's) ServiceAccount, for the agent alone, also where the VPP
    # pod sets automountServiceAccountToken: false.
    - name: wgvpp-sa-token
      mountPath: /var/run/secrets/kubernetes.io/serviceaccount
      readOnly: true
    {{- end }}
{{- end }}

{{/* Sidecar mode: what the kubelet mounts for a pod's ServiceAccount, as a volume of the agent's own. */}}
{{- define "wireguard-vpp.sidecarTokenVolume" -}}
- name: wgvpp-sa-token
  projected:
    sources:
      - serviceAccountToken:
          path: token
          expirationSeconds: 3607
      - configMap:
          name: kube-root-ca.crt
          items:
            - key: ca.crt
              path: ca.crt
      - downwardAPI:
          items:
            - path: namespace
              fieldRef:
                fieldPath: metadata.namespace
{{- end }}

{{/* The agent's user: uid 0 when it needs NET_ADMIN (see netAdmin in values.yaml). */}}
{{- define "wireguard-vpp.agentUser" -}}
{{- if .Values.netAdmin }}0{{ else }}{{ .Values.runAsUser }}{{ end }}
{{- end }}

{{/*
The agent's primary group. In sidecar mode the pod's supplementalGroups belong to VPP, so the agent takes the
API socket's group as its primary group instead.
*/}}
{{- define "wireguard-vpp.agentGroup" -}}
{{- if and (eq .Values.mode "sidecar") (not (kindIs "invalid" .Values.vpp.apiSocketGroupId)) }}
{{- .Values.vpp.apiSocketGroupId }}
{{- else }}
{{- .Values.runAsGroup }}
{{- end }}
{{- end }}

{{/* The group owning the memif socket directory: VPP's API socket group if given, so a non-root VPP can reach it. */}}
{{- define "wireguard-vpp.sharedGroup" -}}
{{- if kindIs "invalid" .Values.vpp.apiSocketGroupId }}
{{- include "wireguard-vpp.agentGroup" . }}
{{- else }}
{{- .Values.vpp.apiSocketGroupId }}
{{- end }}
{{- end }}

{{/* The init container that hands the host directories to the agent's user. Context as agentContainer. */}}
{{- define "wireguard-vpp.prepareContainer" -}}
{{- $root := .root }}
{{- $v := $root.Values -}}
- name: prepare-host-dirs
  image: {{ include "wireguard-vpp.image" $root | quote }}
  imagePullPolicy: {{ $v.image.pullPolicy }}
  # `install -d` creates the directories if needed and sets owner, group and mode; no shell involved.
  command:
    - install
    - -d
    - -o
    - {{ include "wireguard-vpp.agentUser" $root | quote }}
    - -g
    - {{ include "wireguard-vpp.sharedGroup" $root | quote }}
    - -m
    - "0750"
    - {{ $v.vpp.memifSocketDir }}
    - {{ include "wireguard-vpp.uapiDir" $root }}
  resources:
    requests:
      cpu: 10m
      memory: 16Mi
    limits:
      memory: 32Mi
  securityContext:
    allowPrivilegeEscalation: false
    readOnlyRootFilesystem: true
    runAsUser: 0
    runAsNonRoot: false
    capabilities:
      drop: [ALL]
      add: [CHOWN, FOWNER]
  volumeMounts:
    - name: {{ .memifVolume }}
      mountPath: {{ $v.vpp.memifSocketDir }}
    - name: wgvpp-uapi
      mountPath: {{ include "wireguard-vpp.uapiDir" $root }}
{{- end }}

{{/* The volumes the agent adds in both modes. */}}
{{- define "wireguard-vpp.agentVolumes" -}}
- name: wgvpp-uapi
  {{- if .Values.uapi.hostPath }}
  hostPath:
    path: {{ .Values.uapi.hostPath }}
    type: DirectoryOrCreate
  {{- else }}
  emptyDir: {}
  {{- end }}
- name: wgvpp-config
  emptyDir:
    sizeLimit: 16Mi
- name: wgvpp-gateways
  configMap:
    name: {{ include "wireguard-vpp.fullname" . }}-gateways
- name: wgvpp-tmp
  emptyDir:
    sizeLimit: 16Mi
{{- end }}

{{/* What the agent's controller does with its tunnels: watch them, and patch their finalizer (JSON patch)
and status (server-side apply). `update` on finalizers lets it set blockOwnerDeletion on the Secrets it
owns. Nothing else. */}}
{{- define "wireguard-vpp.tunnelRules" -}}
- apiGroups: [{{ include "wireguard-vpp.crdGroup" . | quote }}]
  resources: [{{ include "wireguard-vpp.crdPlural" . | quote }}]
  verbs: [get, list, watch, patch]
- apiGroups: [{{ include "wireguard-vpp.crdGroup" . | quote }}]
  resources: [{{ printf "%s/status" (include "wireguard-vpp.crdPlural" .) | quote }}]
  verbs: [patch]
- apiGroups: [{{ include "wireguard-vpp.crdGroup" . | quote }}]
  resources: [{{ printf "%s/finalizers" (include "wireguard-vpp.crdPlural" .) | quote }}]
  verbs: [update]
{{- end }}

{{/* What it does where its tunnels live: read the Secrets they name (get, and list and watch for its
Secret cache), create a missing key's Secret or add the key to an existing one (create, merge patch;
never update), and record events (events.k8s.io, created then patched as a series). */}}
{{- define "wireguard-vpp.secretRules" -}}
- apiGroups: [""]
  resources: [secrets]
  {{- if .Values.rbac.secretsWrite }}
  verbs: [get, list, watch, create, patch]
  {{- else }}
  verbs: [get, list, watch]
  {{- end }}
- apiGroups: [events.k8s.io]
  resources: [events]
  verbs: [create, patch]
{{- end }}

{{/* The RBAC subject: the chart's ServiceAccount, or in sidecar mode the VPP pods' own. */}}
{{- define "wireguard-vpp.rbacSubject" -}}
- kind: ServiceAccount
  {{- if eq .Values.mode "sidecar" }}
  name: {{ required "sidecar.serviceAccountName: name the VPP pods' ServiceAccount (\"default\" if they set none)" .Values.sidecar.serviceAccountName }}
  {{- else }}
  name: {{ include "wireguard-vpp.serviceAccountName" . }}
  {{- end }}
  namespace: {{ .Release.Namespace }}
{{- end }}
