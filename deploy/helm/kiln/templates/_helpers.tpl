{{/* Names and labels shared by every template. 50 characters leave room for the longest
suffix ("-batch-worker") within Kubernetes' 63. */}}
{{- define "kiln.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "kiln.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "kiln.selector" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "kiln.secretName" -}}
{{- if .Values.connection.existingSecret -}}
{{- .Values.connection.existingSecret -}}
{{- else -}}
{{- include "kiln.fullname" . }}-connection
{{- end -}}
{{- end -}}

{{/* Flags every role shares. */}}
{{- define "kiln.commonArgs" -}}
- --queue=$(KILN_QUEUE)
- --store=$(KILN_STORE)
- --models={{ .Values.models.mountPath | default "/opt/kiln/models" }}
- --log-level={{ .Values.logLevel }}
{{- with .Values.otlpEndpoint }}
- --otlp-endpoint={{ . }}
{{- end }}
{{- end -}}

{{- define "kiln.env" -}}
- name: KILN_QUEUE
  valueFrom:
    secretKeyRef: {name: {{ include "kiln.secretName" . }}, key: KILN_QUEUE}
- name: KILN_STORE
  valueFrom:
    secretKeyRef: {name: {{ include "kiln.secretName" . }}, key: KILN_STORE}
- name: AWS_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef: {name: {{ include "kiln.secretName" . }}, key: AWS_ACCESS_KEY_ID, optional: true}
- name: AWS_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef: {name: {{ include "kiln.secretName" . }}, key: AWS_SECRET_ACCESS_KEY, optional: true}
{{- end -}}

{{- define "kiln.modelsVolume" -}}
{{- if .Values.models.mountPath }}
volumes:
  - name: models
    {{- if not .Values.models.volume }}
    {{- fail "models.volume (a volume source) is required with models.mountPath" }}
    {{- end }}
    {{- toYaml .Values.models.volume | nindent 4 }}
{{- end }}
{{- end -}}

{{- define "kiln.modelsMount" -}}
{{- if .Values.models.mountPath }}
volumeMounts:
  - name: models
    mountPath: {{ .Values.models.mountPath }}
    readOnly: true
{{- end }}
{{- end -}}

{{/* The worker container, shared by the Deployment and the ScaledJob. */}}
{{- define "kiln.workerContainer" -}}
name: worker
image: "{{ .Values.image.repository }}:{{ .Values.image.tag }}"
imagePullPolicy: {{ .Values.image.pullPolicy }}
args:
  - worker
  {{- include "kiln.commonArgs" . | nindent 2 }}
  - --host=0.0.0.0
  - --port={{ .Values.worker.port }}
  - --device={{ .Values.worker.device }}
  - --worker-id=$(KILN_WORKER_ID)
  - --grace-seconds={{ .Values.worker.graceSeconds }}
  - --delivery-limit={{ .Values.worker.deliveryLimit }}
  - --max-attempts={{ .Values.worker.maxAttempts }}
  {{- if .Values.keda.scaledJob.enabled }}
  - --exit-when-idle={{ .Values.keda.scaledJob.idleExitSeconds }}
  {{- end }}
  {{- if gt (int .Values.worker.prefetch) 0 }}
  - --prefetch={{ .Values.worker.prefetch }}
  {{- end }}
  {{- range .Values.worker.extraArgs }}
  - {{ . | quote }}
  {{- end }}
env:
  {{- include "kiln.env" . | nindent 2 }}
  - name: KILN_WORKER_ID
    valueFrom:
      fieldRef: {fieldPath: metadata.name}
ports:
  - {name: http, containerPort: {{ .Values.worker.port }}}
livenessProbe:
  httpGet: {path: /healthz, port: http}
  periodSeconds: 10
  failureThreshold: 6
readinessProbe:
  httpGet: {path: /readyz, port: http}
  periodSeconds: 5
startupProbe:
  httpGet: {path: /healthz, port: http}
  periodSeconds: 5
  failureThreshold: 120
resources:
  {{- toYaml .Values.worker.resources | nindent 2 }}
{{- include "kiln.modelsMount" . }}
{{- end -}}

{{/* The KEDA trigger the ScaledObject and the ScaledJob share. */}}
{{- define "kiln.kedaTrigger" -}}
{{- if eq .Values.keda.trigger "metrics-api" }}
- type: metrics-api
  metadata:
    url: "http://{{ include "kiln.fullname" . }}-gateway.{{ .Release.Namespace }}.svc:{{ .Values.gateway.service.port }}/v1/autoscale"
    format: json
    {{- if .Values.keda.model }}
    valueLocation: {{ printf "models.#(model==%q).desired_replicas" .Values.keda.model | quote }}
    {{- else }}
    valueLocation: desired_replicas
    {{- end }}
    # The value is the replica count the policy asks for (GET /v1/autoscale).
    targetValue: "1"
    activationTargetValue: "0"
    {{- if .Values.keda.adminKey }}
    # With API keys, /v1/autoscale needs an admin key (KILN_ADMIN_KEY in the Secret).
    authModes: bearer
  authenticationRef:
    name: {{ include "kiln.fullname" . }}-autoscale
    {{- end }}
{{- else if eq .Values.keda.trigger "rabbitmq" }}
- type: rabbitmq
  authenticationRef:
    name: {{ include "kiln.fullname" . }}-rabbitmq
  metadata:
    protocol: amqp
    queueName: {{ printf "kiln.jobs.%s" (required "keda.rabbitmqModel (the model whose queue is read) is required with keda.trigger=rabbitmq" .Values.keda.rabbitmqModel) | quote }}
    mode: QueueLength
    value: {{ .Values.keda.queueLengthPerWorker | quote }}
{{- else }}
{{- fail "keda.trigger must be metrics-api or rabbitmq" }}
{{- end }}
{{- end -}}
