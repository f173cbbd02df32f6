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
Settings → environment: the one place where chart values become RTMP_GOAWAY_* variables.
A setting's path (health.intervalMs) becomes RTMP_GOAWAY_ + its camelCase words in UPPER_SNAKE
(RTMP_GOAWAY_HEALTH_INTERVAL_MS), the rule of src/config.ts; test/deploy/helm.test.ts renders
every setting of docs/configuration.md through it and compares the names.
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
{{- if hasKey . "maxSessions" -}}
{{- fail "config.backends[].maxSessions can only be set in a YAML config file (docs/configuration.md); the chart passes backends as RTMP_GOAWAY_BACKENDS" -}}
{{- end -}}
{{- $host := required "config.backends[].host is required" .host -}}
{{- if and (contains ":" $host) (not (hasPrefix "[" $host)) -}}
{{- $host = printf "[%s]" $host -}}
{{- end -}}
{{- $out = append $out (printf "%s=%s:%s" (required "config.backends[].name is required" .name) $host (include "rtmp-goaway-proxy.scalar" (required "config.backends[].port is required" .port))) -}}
{{- end -}}
{{- end -}}
{{- join "," $out -}}
{{- end -}}

{{/* Walks a mapping of settings; call with (dict "path" "" "values" $config). */}}
{{- define "rtmp-goaway-proxy.configEnvOf" -}}
{{- $path := .path -}}
{{- range $key, $value := .values }}
{{- $p := ternary $key (printf "%s.%s" $path $key) (eq $path "") }}
{{- if and (eq $p "routing") (not (kindIs "invalid" $value)) }}
{{- /* Routing rules are one setting: the proxy reads them as JSON from the environment. */}}
- name: {{ include "rtmp-goaway-proxy.envName" $p }}
  value: {{ ternary $value (toJson $value) (kindIs "string" $value) | quote }}
{{- else if kindIs "map" $value }}
{{- include "rtmp-goaway-proxy.configEnvOf" (dict "path" $p "values" $value) }}
{{- else if kindIs "slice" $value }}
{{- if $value }}
- name: {{ include "rtmp-goaway-proxy.envName" $p }}
  value: {{ include "rtmp-goaway-proxy.backendList" $value | quote }}
{{- end }}
{{- else if not (kindIs "invalid" $value) }}
- name: {{ include "rtmp-goaway-proxy.envName" $p }}
  value: {{ include "rtmp-goaway-proxy.scalar" $value | quote }}
{{- end }}
{{- end }}
{{- end -}}

{{/* The whole environment of the proxy container. */}}
{{- define "rtmp-goaway-proxy.env" -}}
{{- $config := deepCopy .Values.config -}}
{{- if eq .Values.mode "sidecar" -}}
{{- if not $config.backends -}}
{{- $_ := set $config "backends" (list (printf "%s=127.0.0.1:%d" .Values.ingest.backendName (int .Values.ingest.port))) -}}
{{- end -}}
{{- else if not $config.backends -}}
{{- fail "mode l4 needs config.backends: the ingest servers to proxy to" -}}
{{- end -}}
{{- if .Values.redis.existingSecret -}}
{{- if dig "redis" "url" "" $config -}}
{{- fail "set either redis.existingSecret or config.redis.url, not both" -}}
{{- end }}
- name: {{ include "rtmp-goaway-proxy.envName" "redis.url" }}
  valueFrom:
    secretKeyRef:
      name: {{ .Values.redis.existingSecret }}
      key: {{ .Values.redis.secretKey }}
{{- end }}
{{- if not (hasKey $config "replicaId") }}
- name: {{ include "rtmp-goaway-proxy.envName" "replicaId" }}
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
{{- end }}
{{- include "rtmp-goaway-proxy.configEnvOf" (dict "path" "" "values" $config) }}
{{- with .Values.proxyProtocol.env }}
{{ toYaml . }}
{{- end }}
{{- with .Values.tls.env }}
{{ toYaml . }}
{{- end }}
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
