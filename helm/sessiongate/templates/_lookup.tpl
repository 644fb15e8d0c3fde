{{/*
The Secret named (index . 1) in the release namespace, as JSON; {} when it
does not exist, and always under `helm template` and `helm lint` (no
cluster). Arg: (list $ NAME). Alone in this file so .ci/k8s-check can swap
in fixed Secrets and test what checksum/restart makes of their content.
*/}}
{{- define "sessiongate.lookupSecret" -}}
{{- $root := index . 0 }}
{{- toJson (lookup "v1" "Secret" $root.Release.Namespace (index . 1) | default dict) }}
{{- end }}
