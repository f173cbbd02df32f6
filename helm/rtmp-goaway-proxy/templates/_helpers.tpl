{{/* Names and labels. */}}
{{- define "rtmp-goaway-proxy.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "rtmp-goaway-proxy.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "rtmp-goaway-proxy.selectorLabels" -}}
app.kubernetes.io/name: {{ include "rtmp-goaway-proxy.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: {{ .Values.mode }}
{{- end -}}

{{- define "rtmp-goaway-proxy.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "rtmp-goaway-proxy.selectorLabels" . }}
app.kubernetes.io/part-of: rtmp-goaway-proxy
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "rtmp-goaway-proxy.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/*
A setting's environment variable: its path (redis.url) becomes RTMP_GOAWAY_ + its camelCase words
in UPPER_SNAKE (RTMP_GOAWAY_REDIS_URL), the rule of src/config.ts. Only the settings that come
from Secrets or the pod itself are passed this way; the rest is the config file.
*/}}
{{- define "rtmp-goaway-proxy.envName" -}}
{{- $words := list -}}
{{- range splitList "." . -}}
{{- $words = append $words (snakecase .) -}}
{{- end -}}
{{- printf "RTMP_GOAWAY_%s" (join "_" $words | upper) -}}
{{- end -}}

{{/* A scalar as the proxy reads it: YAML numbers arrive as float64, printed without exponent. */}}
{{- define "rtmp-goaway-proxy.scalar" -}}
{{- if and (kindIs "float64" .) (eq (float64 (int64 .)) .) -}}
{{- int64 . -}}
{{- else -}}
{{- toString . -}}
{{- end -}}
{{- end -}}

{{/* backends as the env form: name=host:port,… (mappings or name=host:port strings). */}}
{{- define "rtmp-goaway-proxy.backendList" -}}
{{- $out := list -}}
{{- range . -}}
{{- if kindIs "string" . -}}
{{- $out = append $out . -}}
{{- else -}}
{{- $host := required "config.backends[].host is required" .host -}}
{{- if and (contains ":" $host) (not (hasPrefix "[" $host)) -}}
{{- $host = printf "[%s]" $host -}}
{{- end -}}
{{- $out = append $out (printf "%s=%s:%s" (required "config.backends[].name is required" .name) $host (include "rtmp-goaway-proxy.scalar" (required "config.backends[].port is required" .port))) -}}
{{- end -}}
{{- end -}}
{{- join "," $out -}}
{{- end -}}

{{/*
The proxy's configuration file (YAML, the keys of docs/configuration.md): `config` with what the
chart derives (the sidecar's local backend, the ingest pool's discovery name, the TLS Secret's
paths). Secrets are not in it: the Redis URL and the admin token reach the proxy from Secrets.
*/}}
{{- define "rtmp-goaway-proxy.configFile" -}}
{{- $config := deepCopy .Values.config -}}
{{- if eq .Values.mode "sidecar" -}}
{{- if .Values.ingestPool.enabled -}}
{{- fail "ingestPool is for mode l4 (in sidecar mode nginx runs in every proxy pod)" -}}
{{- end -}}
{{- if not $config.backends -}}
{{- $_ := set $config "backends" (list (printf "%s=127.0.0.1:%d" .Values.ingest.backendName (int .Values.ingest.port))) -}}
{{- end -}}
{{- else -}}
{{- if and .Values.ingestPool.enabled (not (dig "discovery" "dnsName" "" $config)) -}}
{{- $discovery := default (dict) $config.discovery -}}
{{- $_ := set $discovery "dnsName" (include "rtmp-goaway-proxy.ingestPoolSrvName" .) -}}
{{- $_ := set $config "discovery" $discovery -}}
{{- end -}}
{{- if and (not $config.backends) (not (dig "discovery" "dnsName" "" $config)) -}}
{{- fail "mode l4 needs ingest servers: config.backends, config.discovery.dnsName, or ingestPool.enabled" -}}
{{- end -}}
{{- end -}}
{{- if kindIs "string" $config.routing -}}
{{- $_ := set $config "routing" (fromJson $config.routing) -}}
{{- end -}}
{{- if and .Values.redis.existingSecret (dig "redis" "url" "" $config) -}}
{{- fail "set either redis.existingSecret or config.redis.url, not both" -}}
{{- end -}}
{{- if .Values.tls.secretName -}}
{{- $tls := default (dict) $config.tls -}}
{{- if not $tls.listen -}}
{{- fail "tls.secretName is set but config.tls.listen is empty: give the RTMPS listener an address, e.g. 0.0.0.0:1443" -}}
{{- end -}}
{{- $_ := set $tls "cert" (default (printf "%s/tls.crt" .Values.tls.mountPath) $tls.cert) -}}
{{- $_ := set $tls "key" (default (printf "%s/tls.key" .Values.tls.mountPath) $tls.key) -}}
{{- $_ := set $config "tls" $tls -}}
{{- end -}}
{{- if .Values.proxyProtocol.serviceAnnotations -}}
{{- if not (has (toString $config.acceptProxyProtocol) (list "optional" "required")) -}}
{{- fail "proxyProtocol.serviceAnnotations make the load balancer send PROXY protocol, but config.acceptProxyProtocol is not optional or required: every publisher's handshake would fail" -}}
{{- end -}}
{{- end -}}
{{- toYaml $config -}}
{{- end -}}

{{/* Checksum of the settings a running proxy cannot take from its watched file: changing one rolls the pods. */}}
{{- define "rtmp-goaway-proxy.restartConfigChecksum" -}}
{{- $config := include "rtmp-goaway-proxy.configFile" . | fromYaml -}}
{{- range .Values.hotReloadedSettings -}}
{{- $_ := unset $config . -}}
{{- end -}}
{{- toJson $config | sha256sum -}}
{{- end -}}

{{- define "rtmp-goaway-proxy.configDir" -}}/etc/rtmp-goaway-proxy/config{{- end -}}

{{- define "rtmp-goaway-proxy.adminTokenSecret" -}}
{{- default (printf "%s-admin-token" (include "rtmp-goaway-proxy.fullname" .)) .Values.adminToken.existingSecret -}}
{{- end -}}

{{/* A Kubernetes quantity (256Mi, 1Gi, 512M, 268435456) in MiB. */}}
{{- define "rtmp-goaway-proxy.quantityMiB" -}}
{{- $q := toString . | trim -}}
{{- if not (regexMatch "^[0-9]+(\\.[0-9]+)?(Ki|Mi|Gi|Ti|k|M|G|T)?$" $q) -}}
{{- fail (printf "cannot read the memory quantity %q" $q) -}}
{{- end -}}
{{- $n := regexFind "^[0-9]+(\\.[0-9]+)?" $q | float64 -}}
{{- $unit := regexReplaceAll "^[0-9]+(\\.[0-9]+)?" $q "" -}}
{{- $bytes := get (dict "" 1.0 "Ki" 1024.0 "Mi" 1048576.0 "Gi" 1073741824.0 "Ti" 1099511627776.0 "k" 1000.0 "M" 1000000.0 "G" 1000000000.0 "T" 1000000000000.0) $unit -}}
{{- divf (mulf $n $bytes) 1048576 | floor | int64 -}}
{{- end -}}

{{/*
NODE_OPTIONS of the proxy: one place to set them (the entry point adds the runtime settings that
are missing, src/runtime-tuning.ts), and the old generation below the memory limit (the heap is
not all of the process: socket buffers and code live outside it).
*/}}
{{- define "rtmp-goaway-proxy.nodeOptions" -}}
{{- range .Values.extraEnv -}}
{{- if eq .name "NODE_OPTIONS" -}}
{{- fail "NODE_OPTIONS in extraEnv: set nodeOptions instead (the chart checks the heap against the memory limit there)" -}}
{{- end -}}
{{- end -}}
{{- $opts := .Values.nodeOptions -}}
{{- $heap := regexFind "--max-old-space-size=[0-9]+" $opts -}}
{{- $limit := dig "limits" "memory" "" .Values.resources -}}
{{- if and $heap $limit -}}
{{- $heapMiB := trimPrefix "--max-old-space-size=" $heap | int64 -}}
{{- $limitMiB := include "rtmp-goaway-proxy.quantityMiB" $limit | int64 -}}
{{- if gt (mul $heapMiB 4) (mul $limitMiB 3) -}}
{{- fail (printf "nodeOptions --max-old-space-size=%d (MiB) does not fit resources.limits.memory %s: keep the heap at most 75%% of the limit (%d MiB), or the kernel kills the proxy before V8 collects" $heapMiB $limit (div (mul $limitMiB 3) 4)) -}}
{{- end -}}
{{- end -}}
{{- $opts -}}
{{- end -}}

{{/* The environment of the proxy container: secrets and per-pod values only (settings are in the config file). */}}
{{- define "rtmp-goaway-proxy.env" -}}
{{- if .Values.redis.existingSecret }}
- name: {{ include "rtmp-goaway-proxy.envName" "redis.url" }}
  valueFrom:
    secretKeyRef:
      name: {{ .Values.redis.existingSecret }}
      key: {{ .Values.redis.secretKey }}
{{- end }}
{{- if not (hasKey .Values.config "replicaId") }}
- name: {{ include "rtmp-goaway-proxy.envName" "replicaId" }}
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
{{- end }}
- name: {{ include "rtmp-goaway-proxy.envName" "adminTokenFile" }}
  value: {{ printf "%s/%s" .Values.adminToken.mountPath .Values.adminToken.secretKey | quote }}
- name: NODE_OPTIONS
  value: {{ include "rtmp-goaway-proxy.nodeOptions" . | quote }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "rtmp-goaway-proxy.port" -}}
{{- $hp := required (printf "config.%s is required" .name) .value -}}
{{- regexFind "[0-9]+$" $hp | int -}}
{{- end -}}

{{/* A duration setting in milliseconds: 25000, "25s", "1.5s", "2m", "500ms", "1h". */}}
{{- define "rtmp-goaway-proxy.durationMs" -}}
{{- $s := include "rtmp-goaway-proxy.scalar" . | trim | lower -}}
{{- if not (regexMatch "^[0-9]+(\\.[0-9]+)?\\s*(ms|s|m|h)?$" $s) -}}
{{- fail (printf "cannot read the duration %q (expected e.g. 25000, 25s, 2m)" $s) -}}
{{- end -}}
{{- $n := regexFind "^[0-9]+(\\.[0-9]+)?" $s | float64 -}}
{{- $unit := regexReplaceAll "^[0-9]+(\\.[0-9]+)?\\s*" $s "" -}}
{{- $mult := get (dict "" 1 "ms" 1 "s" 1000 "m" 60000 "h" 3600000) $unit -}}
{{- mulf $n $mult | int64 -}}
{{- end -}}

{{/* ceil(config.sidecar.gracePeriodMs / 1000) */}}
{{- define "rtmp-goaway-proxy.graceSeconds" -}}
{{- $ms := include "rtmp-goaway-proxy.durationMs" (required "config.sidecar.gracePeriodMs is required (the shutdown timing is derived from it)" (dig "sidecar" "gracePeriodMs" "" .Values.config)) | float64 -}}
{{- divf $ms 1000 | ceil | int -}}
{{- end -}}

{{/* How long nginx (sidecar mode) keeps serving after the pod starts terminating: the proxy's preStop + drain + 5 s. */}}
{{- define "rtmp-goaway-proxy.ingestWaitSeconds" -}}
{{- add (int .Values.shutdown.preStopSleepSeconds) (include "rtmp-goaway-proxy.graceSeconds" . | int) 5 -}}
{{- end -}}

{{- define "rtmp-goaway-proxy.terminationGracePeriodSeconds" -}}
{{- $need := add (int .Values.shutdown.preStopSleepSeconds) (include "rtmp-goaway-proxy.graceSeconds" . | int) 10 -}}
{{- if eq .Values.mode "sidecar" -}}
{{- $need = add $need 5 -}}
{{- end -}}
{{- $set := int .Values.shutdown.terminationGracePeriodSeconds -}}
{{- if eq $set 0 -}}
{{- $need -}}
{{- else if lt $set $need -}}
{{- fail (printf "shutdown.terminationGracePeriodSeconds %d is too short: preStop + config.sidecar.gracePeriodMs + margin need %d" $set $need) -}}
{{- else -}}
{{- $set -}}
{{- end -}}
{{- end -}}


{{- define "rtmp-goaway-proxy.ingestPoolName" -}}
{{- printf "%s-ingest" (include "rtmp-goaway-proxy.fullname" .) | trunc 52 | trimSuffix "-" -}}
{{- end -}}

{{/* The SRV name of the pool's headless Service (port "rtmp"): targets are the pods' own names. */}}
{{- define "rtmp-goaway-proxy.ingestPoolSrvName" -}}
{{- printf "_rtmp._tcp.%s.%s.svc.%s" (include "rtmp-goaway-proxy.ingestPoolName" .) .Release.Namespace .Values.ingestPool.clusterDomain -}}
{{- end -}}

{{/* ceil(ingestPool.drainDeadline / 1000) */}}
{{- define "rtmp-goaway-proxy.ingestDrainSeconds" -}}
{{- $ms := include "rtmp-goaway-proxy.durationMs" .Values.ingestPool.drainDeadline | float64 -}}
{{- divf $ms 1000 | ceil | int -}}
{{- end -}}

{{/*
An ingest pod's termination budget: its preStop drain waits up to the deadline (plus the time
the drain command needs to reach the proxies and see the last session leave: 20 s), then nginx
gets SIGTERM and stops (10 s).
*/}}
{{- define "rtmp-goaway-proxy.ingestPoolTerminationGracePeriodSeconds" -}}
{{- $need := add (include "rtmp-goaway-proxy.ingestDrainSeconds" . | int) 30 -}}
{{- $set := int .Values.ingestPool.terminationGracePeriodSeconds -}}
{{- if eq $set 0 -}}
{{- $need -}}
{{- else if lt $set $need -}}
{{- fail (printf "ingestPool.terminationGracePeriodSeconds %d is too short: ingestPool.drainDeadline + margin need %d" $set $need) -}}
{{- else -}}
{{- $set -}}
{{- end -}}
{{- end -}}
