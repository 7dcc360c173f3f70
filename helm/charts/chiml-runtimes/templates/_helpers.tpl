{{- define "chiml-runtimes.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
app.kubernetes.io/part-of: chiml
{{- end -}}

{{/* probes shared by every runtime: KServe's V2 health routes */}}
{{- define "chiml-runtimes.probes" -}}
startupProbe:
  httpGet:
    path: /v2/health/live
    port: {{ .port }}
  periodSeconds: 5
  failureThreshold: 120
livenessProbe:
  httpGet:
    path: /v2/health/live
    port: {{ .port }}
  periodSeconds: 20
  timeoutSeconds: 5
readinessProbe:
  httpGet:
    path: /v2/health/ready
    port: {{ .port }}
  periodSeconds: 10
  timeoutSeconds: 5
{{- end -}}
