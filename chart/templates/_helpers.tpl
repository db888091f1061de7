{{/* Common labels of every object of the release. */}}
{{- define "sc.labels" -}}
app.kubernetes.io/name: sc-extension
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Selector labels of a component: include "sc.selectorLabels" (list . "agent") */}}
{{- define "sc.selectorLabels" -}}
{{- $top := index . 0 -}}
app.kubernetes.io/name: sc-extension
app.kubernetes.io/instance: {{ $top.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{/* A value given as a boolean or as the string "true"/"false" (Arc passes strings). */}}
{{- define "sc.true" -}}
{{- if eq (toString . | lower) "true" }}true{{ end -}}
{{- end }}

{{/* Image reference of a component (agent or job): include "sc.image" (list . "agent").
     registry/repository@digest when a digest is set, else registry/repository:tag. */}}
{{- define "sc.image" -}}
{{- $top := index . 0 -}}
{{- $img := index $top.Values.image (index . 1) | default dict -}}
{{- $repo := $img.repository | default (printf "sc-%s" (index . 1)) -}}
{{- if $top.Values.image.registry -}}
{{- $repo = printf "%s/%s" (trimSuffix "/" $top.Values.image.registry) $repo -}}
{{- end -}}
{{- if $img.digest -}}
{{ printf "%s@%s" $repo $img.digest }}
{{- else -}}
{{ printf "%s:%s" $repo (toString ($img.tag | default $top.Values.image.tag | default $top.Chart.AppVersion)) }}
{{- end -}}
{{- end }}

{{/* imagePullSecrets as a list of {name: ...}, from names or objects. */}}
{{- define "sc.imagePullSecrets" -}}
{{- range .Values.imagePullSecrets }}
- name: {{ if kindIs "string" . }}{{ . }}{{ else }}{{ .name }}{{ end }}
{{- end }}
{{- end }}

{{/* Pod placement shared by every pod of the release. */}}
{{- define "sc.placement" -}}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with (include "sc.placementButTolerations" . | trim) }}
{{ . }}
{{- end }}
{{- end }}

{{/* Pod placement without the tolerations (the wait hook adds its own to them). */}}
{{- define "sc.placementButTolerations" -}}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- if .Values.imagePullSecrets }}
imagePullSecrets:
  {{- include "sc.imagePullSecrets" . | nindent 2 }}
{{- end }}
{{- end }}

{{/* Pod security context (podSecurityContext; restricted by default). */}}
{{- define "sc.podSecurityContext" -}}
{{- toYaml .Values.podSecurityContext }}
{{- end }}

{{/* Container security context (securityContext; restricted by default). */}}
{{- define "sc.containerSecurityContext" -}}
{{- toYaml .Values.securityContext }}
{{- end }}

{{/* The connections split into shards of at most requests.shardBytes bytes of JSON each, as
     a JSON list of maps (the first shard is the named object, shard i its "-i" sibling):
     include "sc.shards" (list . "public") or (list . "protected"). A connection is never
     split; one larger than the budget gets a shard of its own (the API server then names
     the object that is too large). */}}
{{- define "sc.shards" -}}
{{- $top := index . 0 -}}
{{- $kind := index . 1 -}}
{{- $budget := int ((($top.Values.requests | default dict).shardBytes) | default 900000) -}}
{{- $shards := list (dict) -}}
{{- $size := 0 -}}
{{- range $name, $conn := $top.Values.connections -}}
{{- $c := $conn | default dict -}}
{{- $entry := omit $c "secrets" -}}
{{- if eq $kind "protected" -}}
{{- $entry = dict "secrets" $c.secrets -}}
{{- end -}}
{{- if or (eq $kind "public") $c.secrets -}}
{{- $n := add (len (toJson $entry)) (len $name) 4 -}}
{{- if and (gt $size 0) (gt (add $size $n) $budget) -}}
{{- $shards = append $shards (dict) -}}
{{- $size = 0 -}}
{{- end -}}
{{- $_ := set (last $shards) $name $entry -}}
{{- $size = add $size $n -}}
{{- end -}}
{{- end -}}
{{- toJson $shards -}}
{{- end }}

{{/* The name of shard i of object base: base, base-1, base-2, ... */}}
{{- define "sc.shardName" -}}
{{- $base := index . 0 -}}
{{- $i := index . 1 -}}
{{- if eq (int $i) 0 }}{{ $base }}{{ else }}{{ printf "%s-%d" $base (int $i) }}{{ end -}}
{{- end }}

{{/* The names of the protected Secret's shards, as a YAML list. */}}
{{- define "sc.protectedNames" -}}
{{- range $i, $_ := include "sc.shards" (list . "protected") | fromJsonArray }}
- {{ include "sc.shardName" (list "sc-protected" $i) }}
{{- end }}
{{- end }}

{{/* What the chart records about the cluster on sc-requests (see contract/src/cluster.rs):
     the Azure values Arc passes and workloadIdentity.oidcIssuerUrl, each when set. */}}
{{- define "sc.clusterAnnotations" -}}
{{- $c := dig "Cluster" dict (.Values.Azure | default dict) -}}
{{- $wi := .Values.workloadIdentity | default dict -}}
{{- range $key, $ann := dict "ResourceId" "azure-cluster-resource-id" "Region" "azure-cluster-region" "Cloud" "azure-cluster-cloud" "Distribution" "azure-cluster-distribution" }}
{{- with index $c $key }}
sc-extension.io/{{ $ann }}: {{ toString . | quote }}
{{- end }}
{{- end }}
{{- with $wi.oidcIssuerUrl }}
sc-extension.io/oidc-issuer-url: {{ toString . | quote }}
{{- end }}
{{- end }}

{{- /* Refuses (fails the render) every connection to a guarded namespace: kube-system,
       kube-public, kube-node-lease and the release namespace, unless security.allowedNamespaces
       or rbac.namespaces names it. One line per connection, naming its namespace key; sc-agent
       and sc-job refuse the same connections in the cluster (sc_model::NamespaceGuard). */ -}}
{{- define "sc.guardNamespaces" -}}
{{- $allowed := concat ((.Values.security | default dict).allowedNamespaces | default list) ((.Values.rbac | default dict).namespaces | default list) -}}
{{- $guarded := list "kube-system" "kube-public" "kube-node-lease" .Release.Namespace -}}
{{- $errors := list -}}
{{- range $name, $c := (.Values.connections | default dict) -}}
{{- if kindIs "map" $c -}}
{{- $ns := toString ($c.namespace | default "default") -}}
{{- if and (has $ns $guarded) (not (has $ns $allowed)) -}}
{{- $what := ternary "the namespace of this release" "a namespace of the cluster's own components" (eq $ns $.Release.Namespace) -}}
{{- $errors = append $errors (printf "connections.%s.namespace: namespace %q is guarded: it is %s, and a connection may not target it (nor patch workloads there); choose another namespace, or name %q in the chart value security.allowedNamespaces (or rbac.namespaces) to allow it explicitly" $name $ns $what $ns) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if $errors -}}
{{- fail (join "\n" $errors) -}}
{{- end -}}
{{- end -}}
