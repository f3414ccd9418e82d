{{/*
Chart name, truncated to the 63 characters of a DNS label.
*/}}
{{- define "conductor.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name: "<release>-conductor", or the release name when it already contains the chart name.
Suffixes such as "-coordinator" are added to it, so it is kept to 48 characters (63 for a DNS label, less "-worker-metrics").
*/}}
{{- define "conductor.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 48 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 48 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 48 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "conductor.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels of every resource.
*/}}
{{- define "conductor.labels" -}}
helm.sh/chart: {{ include "conductor.chart" . }}
app.kubernetes.io/name: {{ include "conductor.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: conductor
{{- end }}

{{/*
Selector labels; pass a dict with "root" (the top context) and "component".
*/}}
{{- define "conductor.selectorLabels" -}}
app.kubernetes.io/name: {{ include "conductor.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "conductor.coordinatorName" -}}
{{- printf "%s-coordinator" (include "conductor.fullname" .) }}
{{- end }}

{{- define "conductor.uiName" -}}
{{- printf "%s-ui" (include "conductor.fullname" .) }}
{{- end }}

{{/*
Fails unless the dashboard has exactly one source of its login token (it listens beyond
loopback in its pod, so it refuses to start without one).
*/}}
{{- define "conductor.validateUI" -}}
{{- if and .Values.ui.loginToken .Values.ui.existingSecret }}
{{- fail "ui: set only one of ui.loginToken and ui.existingSecret" }}
{{- end }}
{{- if not (or .Values.ui.loginToken .Values.ui.existingSecret) }}
{{- fail "ui: set ui.loginToken or ui.existingSecret: the dashboard requires a login token when it listens beyond loopback (docs/dashboard.md)" }}
{{- end }}
{{- if and .Values.ui.loginToken (lt (len .Values.ui.loginToken) 16) }}
{{- fail "ui.loginToken: must be at least 16 characters" }}
{{- end }}
{{- end }}

{{- define "conductor.workerName" -}}
{{- printf "%s-worker" (include "conductor.fullname" .) }}
{{- end }}

{{- define "conductor.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "conductor.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Coordinator image.
*/}}
{{- define "conductor.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/*
Worker image: worker.image, falling back field by field to image.
*/}}
{{- define "conductor.workerImage" -}}
{{- $repository := default .Values.image.repository .Values.worker.image.repository }}
{{- $tag := default (default .Chart.AppVersion .Values.image.tag) .Values.worker.image.tag }}
{{- printf "%s:%s" $repository $tag }}
{{- end }}

{{- define "conductor.imagePullSecrets" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
{{- range . }}
  {{- if kindIs "string" . }}
  - name: {{ . }}
  {{- else }}
  - name: {{ .name }}
  {{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The Secret the chart creates for database.url and auth.token.
*/}}
{{- define "conductor.secretName" -}}
{{- include "conductor.fullname" . }}
{{- end }}

{{/*
Fails unless exactly one of database.url and database.existingSecret is set.
*/}}
{{- define "conductor.validateDatabase" -}}
{{- if and .Values.database.url .Values.database.existingSecret }}
{{- fail "database: set only one of database.url and database.existingSecret" }}
{{- end }}
{{- if not (or .Values.database.url .Values.database.existingSecret) }}
{{- fail "database: set database.url (the chart stores it in a Secret) or database.existingSecret (a Secret you manage, key database.existingSecretKey). Without it a coordinator would start an embedded PostgreSQL, which is for laptops only." }}
{{- end }}
{{- end }}

{{/*
Fails unless at most one of auth.token and auth.existingSecret is set.
*/}}
{{- define "conductor.validateAuth" -}}
{{- if and .Values.auth.token .Values.auth.existingSecret }}
{{- fail "auth: set only one of auth.token and auth.existingSecret" }}
{{- end }}
{{- end }}

{{/*
Whether a bearer token is configured: "true" or "".
*/}}
{{- define "conductor.authEnabled" -}}
{{- if or .Values.auth.token .Values.auth.existingSecret }}true{{ end }}
{{- end }}

{{/*
The CONDUCTOR_AUTH_TOKEN variable, when a token is configured.
*/}}
{{- define "conductor.authEnv" -}}
{{- if include "conductor.authEnabled" . }}
- name: CONDUCTOR_AUTH_TOKEN
  valueFrom:
    secretKeyRef:
      {{- if .Values.auth.existingSecret }}
      name: {{ .Values.auth.existingSecret }}
      key: {{ .Values.auth.existingSecretKey }}
      {{- else }}
      name: {{ include "conductor.secretName" . }}
      key: auth-token
      {{- end }}
{{- end }}
{{- end }}

{{/*
The coordinator address workers connect to.
*/}}
{{- define "conductor.serverAddress" -}}
{{- if .Values.worker.server }}
{{- .Values.worker.server }}
{{- else }}
{{- printf "%s:%d" (include "conductor.coordinatorName" .) (int .Values.coordinator.port) }}
{{- end }}
{{- end }}

{{/*
Worker terminationGracePeriodSeconds. On SIGTERM a worker drains for up to drainTimeout seconds,
then releases what is left and waits up to 10 s for the coordinator's acknowledgements before it
exits: Kubernetes must not SIGKILL it before (docs/concepts.md, "Running workers on Kubernetes").
0 means drainTimeout + 30; a set value must be at least drainTimeout + 15.
*/}}
{{- define "conductor.workerGracePeriod" -}}
{{- $drain := int .Values.worker.drainTimeout }}
{{- $grace := int .Values.worker.terminationGracePeriodSeconds }}
{{- if eq $grace 0 }}
{{- add $drain 30 }}
{{- else if lt $grace (add $drain 15) }}
{{- fail (printf "worker.terminationGracePeriodSeconds (%d) must be at least worker.drainTimeout + 15 (%d): Kubernetes would kill workers before they finish draining, and their executions would wait for lease expiry and count an attempt. Leave it at 0 for drainTimeout + 30." $grace (add $drain 15)) }}
{{- else }}
{{- $grace }}
{{- end }}
{{- end }}

{{/*
Mount path of TLS material in coordinator and worker pods.
*/}}
{{- define "conductor.tlsDir" -}}
/etc/conductor/tls
{{- end }}
