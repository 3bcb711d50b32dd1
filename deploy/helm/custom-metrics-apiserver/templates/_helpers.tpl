{{/* The chart's name, at most 63 characters (a label value). */}}
{{- define "cma.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The objects' name: the release's, or <release>-<chart> when the release's does not contain the chart's. */}}
{{- define "cma.fullname" -}}
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

{{- define "cma.selectorLabels" -}}
app.kubernetes.io/name: {{ include "cma.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "cma.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "cma.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "cma.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "cma.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The adapter's ServiceAccount as an RBAC subject. */}}
{{- define "cma.subject" -}}
- kind: ServiceAccount
  name: {{ include "cma.serviceAccountName" . }}
  namespace: {{ .Release.Namespace }}
{{- end }}

{{/* The Secret holding the serving certificate (tls.crt, tls.key): mounted at cma.certDir, or, in the managed
mode, kept by the adapter itself. */}}
{{- define "cma.tlsSecretName" -}}
{{- if eq .Values.tls.mode "managed" }}
{{- printf "%s-certs" (include "cma.fullname" .) }}
{{- else if eq .Values.tls.mode "existingSecret" }}
{{- .Values.tls.existingSecret.name }}
{{- else }}
{{- printf "%s-tls" (include "cma.fullname" .) }}
{{- end }}
{{- end }}

{{- define "cma.certDir" -}}
/var/run/serving-cert
{{- end }}

{{/*
Refusals, with what to do instead: rendered by the Deployment's template, so that `helm template` and `helm install`
both stop on them.
*/}}
{{- define "cma.validate" -}}
{{- if not (has .Values.store.type (list "memory" "redis")) }}
{{- fail (printf "store.type: %q is not one of memory, redis" (toString .Values.store.type)) }}
{{- end }}
{{- if and (gt (int .Values.replicas) 1) (eq .Values.store.type "memory") }}
{{- fail (printf "replicas: %v is refused: the adapter keeps its metrics in memory, in each replica separately, so a value written to one replica would be missing from the others' answers. Use replicas: 1, or store.type: redis to share the values between replicas." .Values.replicas) }}
{{- end }}
{{- if eq .Values.store.type "redis" }}
{{- if not (regexMatch "^rediss?://" (toString .Values.store.redis.url)) }}
{{- fail (printf "store.type=redis needs store.redis.url: redis://[user@]host:port[/db] (got %q)" (toString .Values.store.redis.url)) }}
{{- end }}
{{- if regexMatch "^rediss?://[^/@]*:[^/@]*@" .Values.store.redis.url }}
{{- fail "store.redis.url holds a password, which would sit in the Deployment for anyone who may read it: put it in a Secret and name it in store.redis.passwordSecret" }}
{{- end }}
{{- end }}
{{- if lt (int .Values.replicas) 1 }}
{{- fail (printf "replicas: %v is refused: the metrics APIs need one adapter." .Values.replicas) }}
{{- end }}
{{- if not (has .Values.tls.mode (list "managed" "certManager" "existingSecret")) }}
{{- fail (printf "tls.mode: %q is not one of managed, certManager, existingSecret" .Values.tls.mode) }}
{{- end }}
{{- if eq .Values.tls.mode "existingSecret" }}
{{- if not .Values.tls.existingSecret.name }}
{{- fail "tls.mode=existingSecret needs tls.existingSecret.name: a kubernetes.io/tls Secret (tls.crt, tls.key) in the release's namespace" }}
{{- end }}
{{- if not (contains "-----BEGIN CERTIFICATE-----" .Values.tls.existingSecret.caBundle) }}
{{- fail "tls.mode=existingSecret needs tls.existingSecret.caBundle: the PEM of the CA that signed the Secret's certificate (--set-file tls.existingSecret.caBundle=ca.crt)" }}
{{- end }}
{{- end }}
{{- with .Values.forward }}
{{- range $flag, $url := dict "forward.customMetrics.url" .customMetrics.url "forward.externalMetrics.url" .externalMetrics.url }}
{{- if and $url (not (regexMatch "^https?://[^/?#@]+(/[^?#]*)?$" $url)) }}
{{- fail (printf "%s: %q is not an https:// (or http://) URL of the neighbour adapter's Service" $flag $url) }}
{{- end }}
{{- if and (hasPrefix "https://" (toString $url)) (not $.Values.forward.caConfigMap.name) }}
{{- fail (printf "%s is https: name the ConfigMap holding the neighbour's CA in forward.caConfigMap.name" $flag) }}
{{- end }}
{{- if and (hasPrefix "http://" (toString $url)) $.Values.forward.serviceAccountToken }}
{{- fail (printf "%s is plain http, which must not carry the ServiceAccount token: use https, or set forward.serviceAccountToken=false" $flag) }}
{{- end }}
{{- end }}
{{- end }}
{{- with .Values.podDisruptionBudget }}
{{- if and .enabled (eq (empty .minAvailable) (empty .maxUnavailable)) }}
{{- fail "podDisruptionBudget.enabled needs one of minAvailable and maxUnavailable (not both)" }}
{{- end }}
{{- end }}
{{- range $w := .Values.writers }}
{{- if not (regexMatch "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$" (toString $w.name)) }}
{{- fail (printf "writers: name %q must be a DNS label (lower-case letters, digits, '-'): it names the writer's Role and binding" (toString $w.name)) }}
{{- end }}
{{- if not $w.serviceAccounts }}
{{- fail (printf "writers[%s]: serviceAccounts is empty: name the ServiceAccounts that may write" $w.name) }}
{{- end }}
{{- range $w.serviceAccounts }}
{{- if not .name }}
{{- fail (printf "writers[%s]: a ServiceAccount without a name" $w.name) }}
{{- end }}
{{- end }}
{{- if not (or $w.custom $w.external) }}
{{- fail (printf "writers[%s]: neither custom nor external metrics: the writer may write nothing" $w.name) }}
{{- end }}
{{- range $w.custom }}
{{- if not (regexMatch "^([*]|metrics|[^/*]+/[^/]+|[*]/[^/]+)$" (toString .)) }}
{{- fail (printf "writers[%s]: custom %q is not <resource>/<metric> (e.g. pods/requests_per_second, deployments.apps/queue_length, pods/*), metrics (metrics of Namespace objects) or *" $w.name (toString .)) }}
{{- end }}
{{- end }}
{{- range $w.external }}
{{- if contains "/" (toString .) }}
{{- fail (printf "writers[%s]: external %q is not a metric name" $w.name (toString .)) }}
{{- end }}
{{- end }}
{{- range (default (list "create") $w.verbs) }}
{{- if not (has . (list "create" "delete")) }}
{{- fail (printf "writers[%s]: verb %q: writes are authorized as create (POST) and delete (DELETE) only" $w.name (toString .)) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Whether the adapter forwards to a neighbour adapter (README, "Coexisting with another adapter").
*/}}
{{- define "cma.forwarding" -}}
{{- if or .Values.forward.customMetrics.url .Values.forward.externalMetrics.url }}true{{ end }}
{{- end }}

{{/*
Where the neighbour's CA ConfigMap is mounted.
*/}}
{{- define "cma.forwardCaDir" -}}
/var/run/forward-ca
{{- end }}
