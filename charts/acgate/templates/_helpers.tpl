{{/*
Chart name, truncated to 63 characters (a DNS label).
*/}}
{{- define "acgate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name "<release>-<chart>" (or fullnameOverride), leaving room for suffixes such as
"-mlflow" and "-pipeline".
*/}}
{{- define "acgate.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 45 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 45 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 45 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
"name-version" for the helm.sh/chart label.
*/}}
{{- define "acgate.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Selector labels; include with (dict "root" $ "component" "submit").
*/}}
{{- define "acgate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "acgate.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/*
Common labels; include with (dict "root" $ "component" "submit").
*/}}
{{- define "acgate.labels" -}}
helm.sh/chart: {{ include "acgate.chart" .root }}
{{ include "acgate.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: acgate
{{- end }}

{{/*
Name of the ServiceAccount the pods run as.
*/}}
{{- define "acgate.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "acgate.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
An image reference from (dict "repository" R "tag" T "digest" D "what" "image"):
"R@D" when a digest is given (the registry serves exactly those bytes; the tag is then only
documentation), else "R:T". Fails on a digest that is not "sha256:" and 64 hex characters.
*/}}
{{- define "acgate.imageRef" -}}
{{- if .digest }}
{{- if not (regexMatch "^sha256:[0-9a-f]{64}$" (toString .digest)) }}
{{- fail (printf "%s.digest %q must be \"sha256:\" followed by 64 lowercase hex characters (e.g. the output of 'crane digest IMAGE')" .what (toString .digest)) }}
{{- end }}
{{- printf "%s@%s" .repository .digest }}
{{- else }}
{{- printf "%s:%s" .repository (toString .tag) }}
{{- end }}
{{- end }}

{{/*
The acgate image: repository:tag (tag defaults to the chart's appVersion), or repository@digest.
*/}}
{{- define "acgate.image" -}}
{{- include "acgate.imageRef" (dict "repository" .Values.image.repository "tag" (default .Chart.AppVersion .Values.image.tag) "digest" .Values.image.digest "what" "image") }}
{{- end }}

{{/*
The MLflow server image: mlflow.image.*, falling back to the acgate image.
*/}}
{{- define "acgate.mlflow.image" -}}
{{- $image := .Values.mlflow.image }}
{{- if $image.repository }}
{{- if not (or $image.tag $image.digest) }}
{{- fail "mlflow.image.tag or mlflow.image.digest is required when mlflow.image.repository is set" }}
{{- end }}
{{- include "acgate.imageRef" (dict "repository" $image.repository "tag" $image.tag "digest" $image.digest "what" "mlflow.image") }}
{{- else }}
{{- include "acgate.image" . }}
{{- end }}
{{- end }}

{{/*
Pod security context: fixed, not configurable (a hard requirement of this chart).
*/}}
{{- define "acgate.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
fsGroupChangePolicy: OnRootMismatch
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/*
Container security context: fixed, not configurable.
*/}}
{{- define "acgate.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
privileged: false
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop:
    - ALL
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/*
Scheduling settings shared by every pod.
*/}}
{{- define "acgate.scheduling" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/*
MLflow Service name and in-cluster tracking URI.
*/}}
{{- define "acgate.mlflow.fullname" -}}
{{- printf "%s-mlflow" (include "acgate.fullname" .) }}
{{- end }}

{{- define "acgate.mlflow.trackingUri" -}}
{{- printf "http://%s.%s.svc.cluster.local:%v" (include "acgate.mlflow.fullname" .) .Release.Namespace .Values.mlflow.service.port }}
{{- end }}

{{/*
Pipeline arguments as a JSON object: null values dropped (the pipeline default applies);
mlflow_tracking_uri filled in with the chart's MLflow service when that is enabled and the
value is not set. Fails on an empty dataset_uri.
*/}}
{{- define "acgate.pipelineParameters" -}}
{{- $params := dict }}
{{- range $name, $value := .Values.pipeline.parameters }}
{{- if not (kindIs "invalid" $value) }}
{{- $_ := set $params $name $value }}
{{- end }}
{{- end }}
{{- if and (hasKey $params "dataset_uri") (eq (toString (get $params "dataset_uri")) "") }}
{{- fail "pipeline.parameters.dataset_uri is empty: set it (--set pipeline.parameters.dataset_uri=s3://...), or to null when the pipeline has no such input" }}
{{- end }}
{{- if and .Values.mlflow.enabled (not (hasKey $params "mlflow_tracking_uri")) }}
{{- $_ := set $params "mlflow_tracking_uri" (include "acgate.mlflow.trackingUri" .) }}
{{- end }}
{{- toJson $params }}
{{- end }}
