{{/*
The services and the contract topics each one consumes: services/<name>/worker.py
SUBSCRIPTIONS (topic names from shared/topics.py). tests/test_helm.py keeps them equal.
*/}}
{{- define "rapport.catalog" -}}
profiles:
  topics: [crm.complaints, crm.notifications, crm.purchases]
complaints:
  topics: [crm.customers, crm.insights]
notifications:
  topics: [crm.complaints, crm.customers, crm.insights, crm.purchases]
analytics:
  topics: [crm.complaints, crm.customers, crm.insights, crm.notifications, crm.purchases]
{{- end }}

{{/* Every topic of the contract (shared/topics.py CONTRACT_PARTITIONS). */}}
{{- define "rapport.contractTopics" -}}
[crm.customers, crm.purchases, crm.complaints, crm.notifications, crm.insights]
{{- end }}

{{- define "rapport.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The release's full name; the release name alone when it already contains the chart's.
Service names append "-<service>" (at most "-notifications", 14 characters).
*/}}
{{- define "rapport.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 49 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 49 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 49 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "rapport.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "rapport.selectorLabels" -}}
app.kubernetes.io/name: {{ include "rapport.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "rapport.labels" -}}
helm.sh/chart: {{ include "rapport.chart" . }}
{{ include "rapport.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: rapport
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Labels of one service's objects: (dict "root" $ "service" "profiles"). */}}
{{- define "rapport.serviceLabels" -}}
{{ include "rapport.labels" .root }}
app.kubernetes.io/component: {{ .service }}
{{- end }}

{{- define "rapport.serviceSelectorLabels" -}}
{{ include "rapport.selectorLabels" .root }}
app.kubernetes.io/component: {{ .service }}
{{- end }}

{{- define "rapport.serviceFullname" -}}
{{ include "rapport.fullname" .root }}-{{ .service }}
{{- end }}

{{- define "rapport.configName" -}}
{{ include "rapport.fullname" . }}-config
{{- end }}

{{- define "rapport.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "rapport.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "rapport.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{- define "rapport.existingSecret" -}}
{{- if not .Values.existingSecret }}
{{- fail "existingSecret is required: name an existing Secret holding RAPPORT_AUTH_SECRET and RAPPORT_MONGODB_URI (this chart never creates one; see docs/kubernetes.md)" }}
{{- end }}
{{- .Values.existingSecret }}
{{- end }}

{{- define "rapport.kafkaBootstrap" -}}
{{- if not .Values.kafka.bootstrapServers }}
{{- fail "kafka.bootstrapServers is required: host:port[,host:port...] of the Kafka brokers" }}
{{- end }}
{{- .Values.kafka.bootstrapServers }}
{{- end }}

{{/* A topic's name under the deployment's prefix. */}}
{{- define "rapport.topic" -}}
{{ .root.Values.topics.prefix }}{{ .topic }}
{{- end }}

{{/* The consumer group of a service (shared/settings.py ServiceSettings.consumer_group). */}}
{{- define "rapport.consumerGroup" -}}
{{ .root.Values.topics.prefix }}rapport-{{ .service }}
{{- end }}

{{/* A setting as an environment variable's value: maps and lists as JSON. */}}
{{- define "rapport.settingValue" -}}
{{- if or (kindIs "map" .) (kindIs "slice" .) }}
{{- toJson . }}
{{- else if kindIs "float64" . }}
{{- if eq (floor .) . }}{{ int64 . }}{{ else }}{{ . }}{{ end }}
{{- else }}
{{- toString . }}
{{- end }}
{{- end }}

{{/*
How many replicas a service may get: its fixed count, or the maximum of whatever
scales it. (dict "root" $ "service" "profiles")
*/}}
{{- define "rapport.maxReplicas" -}}
{{- $values := .root.Values }}
{{- $own := index $values.services .service }}
{{- if $values.keda.enabled }}
{{- default $values.keda.maxReplicaCount $own.maxReplicas }}
{{- else if $values.autoscaling.enabled }}
{{- default $values.autoscaling.maxReplicas $own.maxReplicas }}
{{- else }}
{{- default $values.replicaCount $own.replicaCount }}
{{- end }}
{{- end }}

{{- define "rapport.minReplicas" -}}
{{- $values := .root.Values }}
{{- $own := index $values.services .service }}
{{- if $values.keda.enabled }}
{{- default $values.keda.minReplicaCount $own.minReplicas }}
{{- else }}
{{- default $values.autoscaling.minReplicas $own.minReplicas }}
{{- end }}
{{- end }}

{{/*
Refuses values that would deploy something broken; included once, by the ConfigMap.
*/}}
{{- define "rapport.validate" -}}
{{- $_ := include "rapport.existingSecret" . }}
{{- $_ = include "rapport.kafkaBootstrap" . }}
{{- if and .Values.keda.enabled .Values.autoscaling.enabled }}
{{- fail "keda.enabled and autoscaling.enabled are exclusive: a KEDA ScaledObject makes its own HorizontalPodAutoscaler" }}
{{- end }}
{{- if and .Values.strimzi.enabled (not .Values.strimzi.clusterName) }}
{{- fail "strimzi.clusterName is required when strimzi.enabled: the name of the Kafka resource the topics belong to" }}
{{- end }}
{{- $partitions := int .Values.topics.partitions }}
{{- range $service := keys (include "rapport.catalog" . | fromYaml) | sortAlpha }}
{{- $scope := dict "root" $ "service" $service }}
{{- $max := int (include "rapport.maxReplicas" $scope) }}
{{- if gt $max $partitions }}
{{- fail (printf "%s: %d replicas allowed but its topics have %d partitions (topics.partitions): a consumer group never has more busy members than partitions" $service $max $partitions) }}
{{- end }}
{{- if or $.Values.keda.enabled $.Values.autoscaling.enabled }}
{{- $min := int (include "rapport.minReplicas" $scope) }}
{{- if gt $min $max }}
{{- fail (printf "%s: minimum replicas %d above its maximum %d" $service $min $max) }}
{{- end }}
{{- end }}
{{- end }}
{{- $needed := add (int .Values.preStopSleepSeconds) 45 }}
{{- if lt (int .Values.terminationGracePeriodSeconds) $needed }}
{{- fail (printf "terminationGracePeriodSeconds must be at least %d: preStopSleepSeconds + 10 s for HTTP requests + 30 s for the stream worker's batch in hand + a margin" $needed) }}
{{- end }}
{{- end }}

{{/*
A service's public base URL for the customer portal: portal.publicUrls.<service>, else
http(s)://<ingress.hosts.<service>> when the Ingress is enabled (https when a TLS entry
lists the host), else empty. (dict "root" $ "service" "profiles")
*/}}
{{- define "rapport.publicUrl" -}}
{{- $values := .root.Values }}
{{- $explicit := index $values.portal.publicUrls .service }}
{{- $host := index $values.ingress.hosts .service }}
{{- if $explicit }}
{{- trimSuffix "/" $explicit }}
{{- else if and $values.ingress.enabled $host (index $values.services .service).enabled }}
{{- $scheme := "http" }}
{{- range $values.ingress.tls }}
{{- if has $host (.hosts | default list) }}
{{- $scheme = "https" }}
{{- end }}
{{- end }}
{{- printf "%s://%s" $scheme $host }}
{{- end }}
{{- end }}

{{/*
The portal's settings derived from the public URLs (values.yaml `portal`), as YAML:
`platform` (RAPPORT_<NAME>) and `profiles` (RAPPORT_PROFILES_<NAME>). Only what is
known; settings of the same name in values win (the ConfigMap merges these under them).
*/}}
{{- define "rapport.portalSettings" -}}
{{- $profiles := include "rapport.publicUrl" (dict "root" . "service" "profiles") }}
{{- $complaints := include "rapport.publicUrl" (dict "root" . "service" "complaints") }}
{{- $notifications := include "rapport.publicUrl" (dict "root" . "service" "notifications") }}
{{- $platform := dict }}
{{- $origins := list }}
{{- if $profiles }}
{{- $_ := set $platform "portal_url" (printf "%s/portal" $profiles) }}
{{- $origins = append $origins $profiles }}
{{- end }}
{{- $origins = concat $origins .Values.portal.extraOrigins | uniq }}
{{- if $origins }}
{{- $_ := set $platform "portal_origins" $origins }}
{{- end }}
{{- $own := dict }}
{{- with $complaints }}
{{- $_ := set $own "portal_complaints_url" . }}
{{- end }}
{{- with $notifications }}
{{- $_ := set $own "portal_notifications_url" . }}
{{- end }}
{{- toYaml (dict "platform" $platform "profiles" $own) }}
{{- end }}
