{{/*
Name of every object: the release name, with "-logpump" unless it already
holds "logpump"; at most 63 characters (a label value).
*/}}
{{- define "logpump.fullname" -}}
{{- if contains "logpump" .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-logpump" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "logpump.selectorLabels" -}}
app.kubernetes.io/name: logpump
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: agent
{{- end -}}

{{- define "logpump.labels" -}}
{{ include "logpump.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* Mount point of the exporter's TLS Secret. */}}
{{- define "logpump.tlsDir" -}}/etc/logpump-tls{{- end -}}

{{/* Environment variable carrying the exporter's bearer token. */}}
{{- define "logpump.tokenEnv" -}}LOGPUMP_EXPORTER_TOKEN{{- end -}}

{{/*
Refuses value combinations the agent or the pod would reject later, or
that would weaken the deployment, naming the value to change.
*/}}
{{- define "logpump.check" -}}
{{- $v := .Values -}}
{{- $tls := $v.exporter.tls -}}
{{- if and $tls.secretName $tls.insecure -}}
{{- fail "exporter.tls.secretName is set: set exporter.tls.insecure to false (TLS with the Secret's certificates)" -}}
{{- end -}}
{{- if and $tls.secretName (ne (empty $tls.certKey) (empty $tls.keyKey)) -}}
{{- fail "exporter.tls.certKey and exporter.tls.keyKey: give both (mutual TLS) or neither" -}}
{{- end -}}
{{- if and $tls.secretName (not $tls.caKey) (not $tls.certKey) -}}
{{- fail "exporter.tls.secretName is set but exporter.tls.caKey, certKey and keyKey are all empty: nothing to mount" -}}
{{- end -}}
{{- if and $v.exporter.bearerToken.secretName $tls.insecure -}}
{{- fail "exporter.bearerToken.secretName is set: set exporter.tls.insecure to false, a token must not travel in plaintext" -}}
{{- end -}}
{{- $endpoints := $v.exporter.endpoints | default (list $v.exporter.endpoint) -}}
{{- if not (first $endpoints) -}}
{{- fail "exporter.endpoint or exporter.endpoints: no destination given" -}}
{{- end -}}
{{- if eq $v.exporter.protocol "http" -}}
{{- range $endpoints -}}
{{- if not (regexMatch "^https?://" .) -}}
{{- fail (printf "exporter endpoint %q: with protocol http, give a URL (http:// or https://)" .) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- range $k, $h := $v.exporter.headers -}}
{{- if eq (lower $k) "authorization" -}}
{{- fail "exporter.headers.authorization: the value would be written into the ConfigMap; put the token in a Secret and name it in exporter.bearerToken.secretName" -}}
{{- end -}}
{{- end -}}
{{- if lt (int $v.terminationGracePeriodSeconds) (add (int $v.shutdownTimeoutSeconds) 5 | int) -}}
{{- fail (printf "terminationGracePeriodSeconds %d: want at least shutdownTimeoutSeconds + 5 = %d, or the kubelet kills the agent before it saves its checkpoints" (int $v.terminationGracePeriodSeconds) (add (int $v.shutdownTimeoutSeconds) 5)) -}}
{{- end -}}
{{- range $kind := list "requests" "limits" -}}
{{- range $res := list "cpu" "memory" -}}
{{- if not (dig $kind $res "" $v.resources) -}}
{{- fail (printf "resources.%s.%s is required" $kind $res) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- range $name, $_ := $v.extraSources -}}
{{- if has $name (list "pods" "journal") -}}
{{- fail (printf "extraSources.%s: the name is the chart's own source; choose another" $name) -}}
{{- end -}}
{{- end -}}
{{- range $name, $_ := $v.extraProcessors -}}
{{- if has $name (list "container" "pod") -}}
{{- fail (printf "extraProcessors.%s: the name is the chart's own processor; choose another" $name) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
The agent's configuration, as a dict rendered with toYaml. Keys of the
logpump configuration are documented in docs/ of the logpump repository.
*/}}
{{- define "logpump.config" -}}
{{- $v := .Values -}}
{{- $fullname := include "logpump.fullname" . -}}
{{- $sources := dict "pods" (dict
    "type" "file"
    "include" (list "/var/log/pods/*/*/*.log")
    "exclude" (list (printf "/var/log/pods/%s_%s-*/*/*.log" .Release.Namespace $fullname))
    "start_at" $v.podLogs.startAt
    "include_file_path" true) -}}
{{- if $v.journal.enabled -}}
{{- $journal := dict "type" "journald" "directory" "/var/log/journal" -}}
{{- if $v.journal.reader -}}
{{- $_ := set $journal "reader" $v.journal.reader -}}
{{- end -}}
{{- $_ := set $sources "journal" $journal -}}
{{- end -}}
{{- range $name, $src := $v.extraSources -}}
{{- $_ := set $sources $name $src -}}
{{- end -}}
{{- $pod := dict "type" "kubernetes" "node_name" "${K8S_NODE_NAME}" -}}
{{- if $v.metadata.enabled -}}
{{- $meta := dict -}}
{{- with $v.metadata.labels -}}{{- $_ := set $meta "labels" . -}}{{- end -}}
{{- with $v.metadata.annotations -}}{{- $_ := set $meta "annotations" . -}}{{- end -}}
{{- $_ := set $pod "metadata" $meta -}}
{{- end -}}
{{- $processors := dict "container" (dict "type" "container") "pod" $pod -}}
{{- $extraProcessors := list -}}
{{- range $name, $p := $v.extraProcessors -}}
{{- $_ := set $processors $name $p -}}
{{- $extraProcessors = append $extraProcessors $name -}}
{{- end -}}
{{- $exp := dict "type" (printf "otlp_%s" $v.exporter.protocol) "compression" $v.exporter.compression -}}
{{- if $v.exporter.endpoints -}}
{{- $_ := set $exp "endpoints" $v.exporter.endpoints -}}
{{- $_ := set $exp "resolve_interval" $v.exporter.resolveInterval -}}
{{- else -}}
{{- $_ := set $exp "endpoint" $v.exporter.endpoint -}}
{{- end -}}
{{- $headers := deepCopy $v.exporter.headers -}}
{{- if $v.exporter.bearerToken.secretName -}}
{{- $_ := set $headers "authorization" (printf "Bearer ${%s:?unset (Secret %s, key %s)}" (include "logpump.tokenEnv" .) $v.exporter.bearerToken.secretName $v.exporter.bearerToken.key) -}}
{{- end -}}
{{- if $headers -}}
{{- $_ := set $exp "headers" $headers -}}
{{- end -}}
{{- $tls := $v.exporter.tls -}}
{{- $t := dict -}}
{{- if eq $v.exporter.protocol "grpc" -}}
{{- $_ := set $t "insecure" $tls.insecure -}}
{{- end -}}
{{- if $tls.secretName -}}
{{- $dir := include "logpump.tlsDir" . -}}
{{- with $tls.caKey -}}{{- $_ := set $t "ca_file" (printf "%s/%s" $dir .) -}}{{- end -}}
{{- if $tls.certKey -}}
{{- $_ := set $t "cert_file" (printf "%s/%s" $dir $tls.certKey) -}}
{{- $_ := set $t "key_file" (printf "%s/%s" $dir $tls.keyKey) -}}
{{- end -}}
{{- end -}}
{{- with $tls.serverName -}}{{- $_ := set $t "server_name" . -}}{{- end -}}
{{- if $t -}}
{{- $_ := set $exp "tls" $t -}}
{{- end -}}
{{- $pipelines := dict "pods" (dict
    "sources" (list "pods")
    "processors" (concat (list "container" "pod") $extraProcessors)
    "exporters" (list "otlp")) -}}
{{- if $v.journal.enabled -}}
{{- $_ := set $pipelines "journal" (dict "sources" (list "journal") "processors" $extraProcessors "exporters" (list "otlp")) -}}
{{- end -}}
{{- if $v.extraSources -}}
{{- $_ := set $pipelines "extra" (dict "sources" (keys $v.extraSources | sortAlpha) "processors" $extraProcessors "exporters" (list "otlp")) -}}
{{- end -}}
{{- $cfg := dict
    "state_dir" "/var/lib/logpump"
    "shutdown_timeout" (printf "%ds" (int $v.shutdownTimeoutSeconds))
    "log_level" $v.logLevel
    "resource" (dict "k8s.cluster.name" $v.clusterName)
    "admin" (dict "address" (printf "0.0.0.0:%d" (int $v.adminPort)))
    "sources" $sources
    "processors" $processors
    "exporters" (dict "otlp" $exp)
    "pipelines" $pipelines -}}
{{- range $key := list "state_dir" "shutdown_timeout" "log_level" "resource" "admin" "sources" "processors" "exporters" "pipelines" }}
{{ toYaml (dict $key (get $cfg $key)) }}
{{- end -}}
{{- end -}}
