{{/* Names */}}
{{- define "lifecycled.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "lifecycled.fullname" -}}
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

{{- define "lifecycled.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "lifecycled.selectorLabels" -}}
app.kubernetes.io/name: {{ include "lifecycled.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "lifecycled.labels" -}}
helm.sh/chart: {{ include "lifecycled.chart" . }}
{{ include "lifecycled.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: {{ ternary "daemonset" "controller" (eq .Values.mode "imds") }}
{{- end }}

{{- define "lifecycled.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "lifecycled.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "lifecycled.leaseName" -}}
{{- default (include "lifecycled.fullname" .) .Values.leaderElection.leaseName }}
{{- end }}

{{/*
AWS_REGION for botocore: aws.region, else the region in a queue URL of the standard form
(https://sqs.<region>.amazonaws.com/...). Empty: the environment must provide it (IRSA's
webhook injects AWS_REGION; in imds mode lifecycled reads its instance's own region).
*/}}
{{- define "lifecycled.region" -}}
{{- if .Values.aws.region }}
{{- .Values.aws.region }}
{{- else if eq .Values.mode "queue" }}
{{- regexFind "[a-z]{2}(-[a-z]+)+-[0-9]+" (regexFind "^https://sqs[.][a-z0-9-]+[.]amazonaws[.]com" .Values.queueUrl) }}
{{- end }}
{{- end }}

{{- define "lifecycled.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if .Values.image.digest }}
{{- printf "%s:%s@%s" .Values.image.repository $tag .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/*
Combinations the service would refuse, or that would do harm, fail at render time.
*/}}
{{- define "lifecycled.validate" -}}
{{- if and (eq .Values.mode "queue") (not .Values.queueUrl) }}
{{- fail "queueUrl is required in queue mode (the SQS queue the EventBridge rules feed; see deploy/cloudformation/queue.yaml)" }}
{{- end }}
{{- if and (eq .Values.mode "imds") (ne .Values.platform "kubernetes") }}
{{- fail "mode imds runs one pod per Kubernetes node: it needs platform kubernetes" }}
{{- end }}
{{- if and (eq .Values.mode "queue") (gt (int .Values.replicaCount) 1) (not .Values.leaderElection.enabled) }}
{{- fail "replicaCount > 1 needs leaderElection.enabled: replicas without a leader would all consume the queue" }}
{{- end }}
{{- if and (not .Values.jobs.requeue.enabled) .Values.jobs.requeue.namespaces }}
{{- fail "jobs.requeue.namespaces needs jobs.requeue.enabled: with requeueing off no namespace is requeued in" }}
{{- end }}
{{- if and (eq .Values.mode "imds") .Values.leaderElection.enabled }}
{{- fail "leaderElection is for queue mode: every DaemonSet pod handles its own node" }}
{{- end }}
{{- $grace := .Values.config.shutdown_grace_seconds | default 20 }}
{{- if ge (float64 $grace) (float64 .Values.terminationGracePeriodSeconds) }}
{{- fail (printf "terminationGracePeriodSeconds (%v) must exceed config.shutdown_grace_seconds (%v): in-flight messages need that long after SIGTERM" .Values.terminationGracePeriodSeconds $grace) }}
{{- end }}
{{- range $key, $_ := .Values.config }}
{{- if has $key (list "source" "platform" "queue_url" "metrics_address" "leader_election" "lease_name" "lease_namespace" "identity" "node_name" "requeue_enabled" "requeue_namespaces") }}
{{- fail (printf "config.%s is set by the chart (see values.yaml: mode, platform, queueUrl, metrics.port, leaderElection, jobs.requeue)" $key) }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The container's environment: the chart's own settings, the downward API, then config.
*/}}
{{- define "lifecycled.env" -}}
- name: LIFECYCLED_SOURCE
  value: {{ ternary "imds" "sqs" (eq .Values.mode "imds") | quote }}
- name: LIFECYCLED_PLATFORM
  value: {{ .Values.platform | quote }}
{{- if eq .Values.mode "queue" }}
- name: LIFECYCLED_QUEUE_URL
  value: {{ .Values.queueUrl | quote }}
{{- end }}
- name: LIFECYCLED_METRICS_ADDRESS
  value: {{ printf "0.0.0.0:%d" (int .Values.metrics.port) | quote }}
{{- if .Values.leaderElection.enabled }}
- name: LIFECYCLED_LEADER_ELECTION
  value: "true"
- name: LIFECYCLED_LEASE_NAME
  value: {{ include "lifecycled.leaseName" . | quote }}
{{- end }}
# Downward API: the Lease holder's identity and namespace, the pod a drain must never
# evict (its own), and in DaemonSet mode the node it handles.
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: POD_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
- name: NODE_NAME
  valueFrom:
    fieldRef:
      fieldPath: spec.nodeName
{{- if not .Values.jobs.requeue.enabled }}
- name: LIFECYCLED_REQUEUE_ENABLED
  value: "false"
{{- else if .Values.jobs.requeue.namespaces }}
- name: LIFECYCLED_REQUEUE_NAMESPACES
  value: {{ join "," .Values.jobs.requeue.namespaces | quote }}
{{- end }}
{{- with include "lifecycled.region" . }}
- name: AWS_REGION
  value: {{ . | quote }}
{{- end }}
{{- range $key, $value := .Values.config }}
- name: {{ printf "LIFECYCLED_%s" (upper $key) }}
  value: {{ ternary (join "," $value) (toString $value) (kindIs "slice" $value) | quote }}
{{- end }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
The pod spec shared by the Deployment and the DaemonSet.
*/}}
{{- define "lifecycled.podSpec" -}}
serviceAccountName: {{ include "lifecycled.serviceAccountName" . }}
automountServiceAccountToken: {{ .Values.serviceAccount.automountServiceAccountToken }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
terminationGracePeriodSeconds: {{ .Values.terminationGracePeriodSeconds }}
containers:
  - name: lifecycled
    image: {{ include "lifecycled.image" . | quote }}
    imagePullPolicy: {{ .Values.image.pullPolicy }}
    args: ["run"]
    env:
      {{- include "lifecycled.env" . | nindent 6 }}
    {{- with .Values.extraEnvFrom }}
    envFrom:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    ports:
      - name: metrics
        containerPort: {{ .Values.metrics.port }}
        protocol: TCP
    livenessProbe:
      {{- toYaml .Values.livenessProbe | nindent 6 }}
    readinessProbe:
      {{- toYaml .Values.readinessProbe | nindent 6 }}
    resources:
      {{- toYaml .Values.resources | nindent 6 }}
    securityContext:
      {{- toYaml .Values.securityContext | nindent 6 }}
    volumeMounts:
      - name: tmp
        mountPath: /tmp
volumes:
  # The root filesystem is read-only; a small scratch space for libraries that want one.
  - name: tmp
    emptyDir:
      sizeLimit: 16Mi
{{- $nodeSelector := deepCopy (.Values.nodeSelector | default dict) }}
{{- $affinity := deepCopy (.Values.affinity | default dict) }}
{{- if eq .Values.mode "imds" }}
{{- with .Values.daemonset.targetNodeOs }}
{{- $_ := set $nodeSelector "kubernetes.io/os" . }}
{{- end }}
{{- if .Values.daemonset.excludeFargate }}
{{- $affinity = include "lifecycled.withoutFargate" $affinity | fromYaml }}
{{- end }}
{{- end }}
{{- with $nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/*
An affinity (a dict) with eks.amazonaws.com/compute-type NotIn [fargate] added to every
required nodeSelectorTerm (terms are ORed: each needs it), or to a new one.
*/}}
{{- define "lifecycled.withoutFargate" -}}
{{- $affinity := . }}
{{- $away := dict "key" "eks.amazonaws.com/compute-type" "operator" "NotIn" "values" (list "fargate") }}
{{- $node := $affinity.nodeAffinity | default dict }}
{{- $required := $node.requiredDuringSchedulingIgnoredDuringExecution | default dict }}
{{- $terms := $required.nodeSelectorTerms | default (list (dict)) }}
{{- $out := list }}
{{- range $terms }}
{{- $term := deepCopy . }}
{{- $_ := set $term "matchExpressions" (append ($term.matchExpressions | default list) $away) }}
{{- $out = append $out $term }}
{{- end }}
{{- $_ := set $required "nodeSelectorTerms" $out }}
{{- $_ := set $node "requiredDuringSchedulingIgnoredDuringExecution" $required }}
{{- $_ := set $affinity "nodeAffinity" $node }}
{{- toYaml $affinity }}
{{- end }}

{{/*
A "something happened" alert expression over a counter (see prometheusrule.yaml).
*/}}
{{- define "lifecycled.happened" -}}
(sum by (namespace, {{ .by }}) (increase({{ .metric }}{{ "{" }}{{ .sel }}{{ "}" }}[{{ .w }}])) > 0)
or
(sum by (namespace, {{ .by }}) ({{ .metric }}{{ "{" }}{{ .sel }}{{ "}" }} unless {{ .metric }}{{ "{" }}{{ .sel }}{{ "}" }} offset {{ .w }}) > 0)
{{- end }}

{{/*
The rules only requeueing uses (lifecycled/platforms/kube_jobs.py's _JobTarget, _PodTarget).
*/}}
{{- define "lifecycled.requeueRules" -}}
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "create", "delete"]
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["patch", "create"]
{{- end }}
