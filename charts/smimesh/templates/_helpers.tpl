{{/* The labels Helm adds to every object's metadata (never to selectors or Pod templates, so
that an upgrade never changes an immutable selector). */}}
{{- define "smimesh.helmLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end -}}

{{- define "smimesh.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "smimesh.replicas" -}}
{{ if .Values.ha }}{{ max 2 (int .Values.replicas) }}{{ else }}{{ int .Values.replicas }}{{ end }}
{{- end -}}
