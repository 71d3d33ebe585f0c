{{/* Names and labels shared by every object of a release. */}}
{{- define "persona-stream.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "persona-stream.selector" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "persona-stream.labels" -}}
{{ include "persona-stream.selector" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* The persona-stream configuration file: what the chart sets, then .Values.config. */}}
{{- define "persona-stream.config" -}}
{{- $kafka := dict "bootstrap_servers" .Values.kafka.bootstrapServers
      "application_id" (include "persona-stream.fullname" .)
      "replication_factor" .Values.kafka.replicationFactor
      "partitions" .Values.kafka.partitions
      "retention_ms" .Values.kafka.retentionMs
      "security_protocol" .Values.kafka.securityProtocol -}}
{{- if .Values.kafka.saslMechanism }}{{ $_ := set $kafka "sasl_mechanism" .Values.kafka.saslMechanism }}{{ end -}}
{{- if .Values.kafka.tls.enabled }}
{{- $_ := set $kafka "ssl_cafile" "/etc/persona-stream-tls/ca.crt" -}}
{{- if .Values.kafka.tls.clientCertificate }}
{{- $_ := set $kafka "ssl_certfile" "/etc/persona-stream-tls/tls.crt" -}}
{{- $_ := set $kafka "ssl_keyfile" "/etc/persona-stream-tls/tls.key" -}}
{{- end }}
{{- end -}}
{{- $chart := dict "kafka" $kafka
      "state" (dict "store" "rocksdb" "directory" "/var/lib/persona-stream")
      "metrics" (dict "host" "0.0.0.0" "port" .Values.port)
      "admin" (dict "host" "127.0.0.1" "port" .Values.adminPort)
      "audiences" (dict "enabled" .Values.audiences.enabled "keys" .Values.audiences.keys) -}}
{{- toYaml (mergeOverwrite $chart (deepCopy .Values.config)) -}}
{{- end -}}
