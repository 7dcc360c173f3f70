{{- define "jupyterlab.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "jupyterlab.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "jupyterlab.labels" -}}
{{ include "jupyterlab.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
app.kubernetes.io/part-of: chiml
{{- end -}}

{{- define "jupyterlab.claimName" -}}
{{- .Values.persistence.existingClaim | default (printf "%s-home" (include "jupyterlab.fullname" .)) -}}
{{- end -}}

{{/* The CPU notebooks image, or its CUDA build when gpu.enabled. */}}
{{- define "jupyterlab.image" -}}
{{- $tag := ternary .Values.gpu.image.tag .Values.image.tag .Values.gpu.enabled -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}
