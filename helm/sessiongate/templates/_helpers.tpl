{{/*
Helpers for the sessiongate chart: names, labels, paths inside the pod, the
rendered sessiongate.yaml, the sessiongate container and the checks that
refuse unsafe or inconsistent values.
*/}}

{{/* Chart name, overridable. */}}
{{- define "sessiongate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full resource name: <release>-<chart>, or the release when it contains the chart name. */}}
{{- define "sessiongate.fullname" -}}
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

{{/* chart label value: name-version. */}}
{{- define "sessiongate.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Standard labels on every resource. */}}
{{- define "sessiongate.labels" -}}
helm.sh/chart: {{ include "sessiongate.chart" . }}
{{ include "sessiongate.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | trunc 63 | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: sessiongate
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Selector labels: immutable on a Deployment, keep them minimal. */}}
{{- define "sessiongate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sessiongate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "sessiongate.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "sessiongate.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* image reference: repository@digest, else repository:tag (tag defaults to appVersion). */}}
{{- define "sessiongate.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/* Paths inside the pod. The ConfigMap, keys and TLS are separate mounts so none nests in another. */}}
{{- define "sessiongate.configDir" -}}/etc/sessiongate/config{{- end }}
{{- define "sessiongate.configFile" -}}{{ include "sessiongate.configDir" . }}/sessiongate.yaml{{- end }}
{{- define "sessiongate.keysDir" -}}/etc/sessiongate/keys{{- end }}
{{- define "sessiongate.tlsDir" -}}/etc/sessiongate/tls{{- end }}
{{- define "sessiongate.redisTlsDir" -}}/etc/sessiongate/redis-tls{{- end }}

{{/* "true" when the Redis TLS Secret is mounted (store.backend redis, store.redis.tls.enabled), else "". */}}
{{- define "sessiongate.redisTls" -}}
{{- if and (eq .Values.store.backend "redis") (.Values.store.redis.tls | default dict).enabled }}true{{ end }}
{{- end }}

{{/*
The Redis TLS files: item of store.redis.tls.existingSecret -> file name in
the mount -> store.redis.tls key, as a list of [item, file, config key].
Fixed file names (cert-manager's), whatever the Secret's item names.
*/}}
{{- define "sessiongate.redisTlsFiles" -}}
{{- $t := .Values.store.redis.tls | default dict }}
{{- $files := list }}
{{- if $t.caKey }}{{ $files = append $files (list $t.caKey "ca.crt" "ca_file") }}{{ end }}
{{- if and $t.certKey $t.keyKey }}
{{- $files = append $files (list $t.certKey "tls.crt" "cert_file") }}
{{- $files = append $files (list $t.keyKey "tls.key" "key_file") }}
{{- end }}
{{- toJson $files }}
{{- end }}

{{/* Default of store.redis.url when it is "" and there is no Sentinel. */}}
{{- define "sessiongate.redisDefaultUrl" -}}redis://redis-master:6379/0{{- end }}

{{/* Name of the Secret holding the token keys. */}}
{{- define "sessiongate.keysSecretName" -}}
{{- .Values.tokens.existingSecret | default (printf "%s-keys" (include "sessiongate.fullname" .)) }}
{{- end }}

{{/* PersistentVolumeClaim of the SQLite folder: the existing one, else the chart's. */}}
{{- define "sessiongate.dataClaim" -}}
{{- .Values.store.sqlite.existingClaim | default (printf "%s-data" (include "sessiongate.fullname" .)) }}
{{- end }}

{{/*
Environment variable carrying an HS256 secret, named after its item of the
keys Secret (arg: secretKey), not its place in tokens.keys: reordering the
keys (promoting one) then changes only the config, which sessiongate reloads,
not the pod's env.
*/}}
{{- define "sessiongate.hsEnvName" -}}
{{- printf "SG_TOKEN_SECRET_%s" (regexReplaceAll "[^A-Za-z0-9_]" (toString .) "_") }}
{{- end }}

{{/*
A duration string (500ms, 10s, 15m, 2h, 7d, or a sum such as 1h30m) as whole
seconds, rounded up.
*/}}
{{- define "sessiongate.seconds" -}}
{{- $d := toString . }}
{{- if not (regexMatch "^([0-9]+(ms|s|m|h|d))+$" $d) }}
{{- fail (printf "duration %q: expected numbers followed by ms, s, m, h or d (e.g. 10s, 1h30m)" $d) }}
{{- end }}
{{- $ms := 0 }}
{{- range $part := regexFindAll "[0-9]+(ms|s|m|h|d)" $d -1 }}
{{- $num := regexFind "^[0-9]+" $part }}
{{- $n := $num | int }}
{{- $unit := trimPrefix $num $part }}
{{- $ms = add $ms (mul $n (get (dict "ms" 1 "s" 1000 "m" 60000 "h" 3600000 "d" 86400000) $unit)) }}
{{- end }}
{{- div (add $ms 999) 1000 }}
{{- end }}

{{/* preStop sleep seconds actually rendered (the native sleep action needs Kubernetes >= 1.30). */}}
{{- define "sessiongate.preStopSleep" -}}
{{- if and (gt (int .Values.lifecycle.preStopSleepSeconds) 0) (semverCompare ">=1.30-0" .Capabilities.KubeVersion.Version) }}
{{- int .Values.lifecycle.preStopSleepSeconds }}
{{- else }}0{{- end }}
{{- end }}

{{/*
preStop sleep of the app containers in sidecar mode (sidecar.preStopSleepSeconds,
null = the sessiongate one), rendered on the same Kubernetes versions. 0 in standalone mode.
*/}}
{{- define "sessiongate.appPreStopSleep" -}}
{{- $v := .Values }}
{{- $s := $v.sidecar.preStopSleepSeconds }}
{{- if kindIs "invalid" $s }}{{ $s = $v.lifecycle.preStopSleepSeconds }}{{ end }}
{{- if and (eq $v.mode "sidecar") (gt (int $s) 0) (semverCompare ">=1.30-0" .Capabilities.KubeVersion.Version) }}
{{- int $s }}
{{- else }}0{{- end }}
{{- end }}

{{/*
Seconds a pod may need to stop cleanly, before the store flush:
- sessiongate: its preStop sleep + server.shutdownGrace (in-flight requests);
- sidecar mode, the app: its preStop sleep + sidecar.drainSeconds. Regular
  containers stop in parallel (the larger of the two counts); a native
  sidecar stops only after the app has exited (the two add up).
*/}}
{{- define "sessiongate.shutdownSeconds" -}}
{{- $v := .Values }}
{{- $sg := add (include "sessiongate.seconds" $v.server.shutdownGrace | int) (include "sessiongate.preStopSleep" . | int) }}
{{- if eq $v.mode "sidecar" }}
{{- $app := add (include "sessiongate.appPreStopSleep" . | int) (int $v.sidecar.drainSeconds) }}
{{- if $v.sidecar.native }}{{ add $sg $app }}{{ else }}{{ max $sg $app }}{{ end }}
{{- else }}{{ $sg }}{{ end }}
{{- end }}

{{/* terminationGracePeriodSeconds: always above the shutdown time; by default it + the store flush allowance. */}}
{{- define "sessiongate.terminationGracePeriodSeconds" -}}
{{- $floor := include "sessiongate.shutdownSeconds" . | int }}
{{- if kindIs "invalid" .Values.terminationGracePeriodSeconds }}
{{- add $floor (int .Values.lifecycle.storeFlushSeconds) }}
{{- else if le (int .Values.terminationGracePeriodSeconds) $floor }}
{{- fail (printf "terminationGracePeriodSeconds (%d) must be larger than the pod's shutdown time (%d s: preStop sleep + server.shutdownGrace, and in sidecar mode the app's preStop sleep + sidecar.drainSeconds), or in-flight requests are killed" (int .Values.terminationGracePeriodSeconds) $floor) }}
{{- else }}
{{- int .Values.terminationGracePeriodSeconds }}
{{- end }}
{{- end }}

{{/*
Refuse values that would deploy something unsafe or broken. Included by the
Deployment so every render runs it.
*/}}
{{- define "sessiongate.validate" -}}
{{- $v := .Values }}
{{- if not (has $v.mode (list "standalone" "sidecar")) }}
{{- fail (printf "mode must be standalone or sidecar, not %q" $v.mode) }}
{{- end }}
{{- $url := $v.upstream.url | default "" }}
{{- if not (regexMatch "^https?://" $url) }}
{{- fail "upstream.url must be an http:// or https:// URL" }}
{{- end }}
{{- if eq $v.mode "sidecar" }}
{{- if not $v.sidecar.containers }}
{{- fail "mode=sidecar needs the legacy app's container(s) in sidecar.containers" }}
{{- end }}
{{- if not (regexMatch "^https?://(127\\.[0-9.]+|localhost|\\[::1\\])(:[0-9]+)?(/.*)?$" $url) }}
{{- fail "mode=sidecar: upstream.url must be a loopback address (http://127.0.0.1:<port>); the app must not be reachable from outside the pod" }}
{{- end }}
{{- if and $v.sidecar.native (not (semverCompare ">=1.29-0" .Capabilities.KubeVersion.Version)) }}
{{- fail "sidecar.native needs Kubernetes >= 1.29" }}
{{- end }}
{{- range $c := concat $v.sidecar.containers $v.sidecar.initContainers }}
{{- range $p := $c.ports | default list }}
{{- if has (int $p.containerPort) (list (int $v.server.port) (int $v.admin.port)) }}
{{- fail (printf "sidecar container %q uses port %d, which sessiongate listens on (server.port / admin.port)" $c.name (int $p.containerPort)) }}
{{- end }}
{{- end }}
{{- end }}
{{- else if or $v.sidecar.containers $v.sidecar.initContainers }}
{{- fail "sidecar.containers / sidecar.initContainers are only used with mode=sidecar" }}
{{- end }}
{{- if eq (int $v.server.port) (int $v.admin.port) }}
{{- fail "server.port and admin.port must differ" }}
{{- end }}
{{- if not (has $v.store.backend (list "sqlite" "redis")) }}
{{- fail (printf "store.backend must be sqlite or redis, not %q" $v.store.backend) }}
{{- end }}
{{- if eq $v.store.backend "sqlite" }}
{{- if or (gt (int $v.replicaCount) 1) $v.autoscaling.enabled }}
{{- fail "store.backend=sqlite keeps sessions inside one pod: more than one replica (replicaCount > 1 or autoscaling) needs store.backend=redis" }}
{{- end }}
{{- if and (not $v.store.sqlite.ephemeral) $v.strategy (ne ($v.strategy.type | default "RollingUpdate") "Recreate") }}
{{- fail "store.backend=sqlite on a volume needs strategy Recreate: a surge pod would open the same database beside the old one, or wait forever for its ReadWriteOnce volume" }}
{{- end }}
{{- else }}
{{- include "sessiongate.validateRedis" . }}
{{- end }}
{{- if not $v.tokens.keys }}
{{- fail "tokens.keys needs at least one key" }}
{{- end }}
{{- $kids := list }}
{{- $items := list }}
{{- $envs := dict }}
{{- range $k := $v.tokens.keys }}
{{- if eq $k.alg "HS256" }}
{{- $env := include "sessiongate.hsEnvName" $k.secretKey }}
{{- if and (hasKey $envs $env) (ne (get $envs $env) (toString $k.secretKey)) }}
{{- fail (printf "tokens.keys: HS256 secretKeys %q and %q both map to the environment variable %s: rename one" (get $envs $env) (toString $k.secretKey) $env) }}
{{- end }}
{{- $_ := set $envs $env (toString $k.secretKey) }}
{{- end }}
{{- if has $k.kid $kids }}
{{- fail (printf "tokens.keys: kid %q appears twice" $k.kid) }}
{{- end }}
{{- if has $k.secretKey $items }}
{{- fail (printf "tokens.keys: secretKey %q is used by two keys" $k.secretKey) }}
{{- end }}
{{- $kids = append $kids $k.kid }}
{{- $items = append $items $k.secretKey }}
{{- end }}
{{- if and $v.autoscaling.enabled (gt (int $v.autoscaling.minReplicas) (int $v.autoscaling.maxReplicas)) }}
{{- fail "autoscaling.minReplicas must not exceed autoscaling.maxReplicas" }}
{{- end }}
{{- if $v.podDisruptionBudget.enabled }}
{{- if eq (kindIs "invalid" $v.podDisruptionBudget.minAvailable) (kindIs "invalid" $v.podDisruptionBudget.maxUnavailable) }}
{{- fail "podDisruptionBudget: set exactly one of minAvailable / maxUnavailable (the other null)" }}
{{- end }}
{{- end }}
{{- if and $v.store.sqlite.existingClaim (eq $v.store.backend "redis") }}
{{- fail "store.sqlite.existingClaim is only used with store.backend=sqlite" }}
{{- end }}
{{- if and $v.store.sqlite.existingClaim $v.store.sqlite.ephemeral }}
{{- fail "store.sqlite.existingClaim and store.sqlite.ephemeral exclude each other" }}
{{- end }}
{{- if and $v.service.externalTrafficPolicy (eq $v.service.type "ClusterIP") }}
{{- fail "service.externalTrafficPolicy applies to service.type NodePort or LoadBalancer only" }}
{{- end }}
{{- if and $v.metrics.serviceMonitor.enabled $v.metrics.podMonitor.enabled }}
{{- fail "enable metrics.serviceMonitor or metrics.podMonitor, not both: every series would be scraped twice" }}
{{- end }}
{{- $_ := include "sessiongate.terminationGracePeriodSeconds" . }}
{{- end }}

{{/*
store.redis values (store.backend=redis): where Redis is (url, urlKey or
sentinel), where its passwords come from (never literal), TLS.
*/}}
{{- define "sessiongate.validateRedis" -}}
{{- $r := .Values.store.redis }}
{{- $sent := $r.sentinel | default dict }}
{{- $tls := $r.tls | default dict }}
{{- if and (or $r.passwordKey $r.urlKey $r.sentinelPasswordKey) (not $r.existingSecret) }}
{{- fail "store.redis.passwordKey / urlKey / sentinelPasswordKey need store.redis.existingSecret" }}
{{- end }}
{{- $what := "store.redis.url" }}
{{- $urls := list }}
{{- if $sent.masterName }}
{{- $what = "store.redis.sentinel.urls" }}
{{- if $r.url }}
{{- fail "store.redis.sentinel.masterName is set: leave store.redis.url empty (sessiongate takes url or sentinel, not both; the sentinels name the master)" }}
{{- end }}
{{- if $r.urlKey }}
{{- fail "store.redis.urlKey does not go with store.redis.sentinel: the sentinels name the master (put their addresses in store.redis.sentinel.urls)" }}
{{- end }}
{{- if not $sent.urls }}
{{- fail "store.redis.sentinel.masterName needs store.redis.sentinel.urls, e.g. [redis://redis-node-0.redis-headless:26379, ...]" }}
{{- end }}
{{- $urls = $sent.urls }}
{{- else }}
{{- if $sent.urls }}
{{- fail "store.redis.sentinel.urls needs store.redis.sentinel.masterName (the master set the sentinels monitor, e.g. mymaster)" }}
{{- end }}
{{- if $r.sentinelPasswordKey }}
{{- fail "store.redis.sentinelPasswordKey is only used with store.redis.sentinel (the data nodes' password is passwordKey)" }}
{{- end }}
{{- if not $r.urlKey }}
{{- $urls = kindIs "slice" $r.url | ternary $r.url (list ($r.url | default (include "sessiongate.redisDefaultUrl" .))) }}
{{- if not $urls }}
{{- fail "store.redis.url needs at least one url" }}
{{- end }}
{{- end }}
{{- end }}
{{- $tlsUrls := 0 }}
{{- range $u := $urls }}
{{- if not (regexMatch "^rediss?://" $u) }}
{{- fail (printf "%s must start with redis:// or rediss://" $what) }}
{{- end }}
{{- if hasPrefix "rediss://" $u }}{{ $tlsUrls = add1 $tlsUrls }}{{ end }}
{{- if regexMatch "^rediss?://[^/@]*:[^$/@][^/@]*@" $u }}
{{- if $sent.masterName }}
{{- fail "store.redis.sentinel.urls holds a literal password: put it in a Secret (store.redis.existingSecret + sentinelPasswordKey) and write ${SG_REDIS_SENTINEL_PASSWORD} in the url (or ${SG_REDIS_PASSWORD} when the sentinels share the data nodes' password)" }}
{{- end }}
{{- fail "store.redis.url holds a literal password: put it in a Secret (store.redis.existingSecret + passwordKey): the chart renders password: ${SG_REDIS_PASSWORD}" }}
{{- end }}
{{- if and (contains "${SG_REDIS_PASSWORD}" $u) (not $r.passwordKey) }}
{{- fail (printf "%s uses ${SG_REDIS_PASSWORD}: set store.redis.existingSecret and store.redis.passwordKey" $what) }}
{{- end }}
{{- if and (contains "${SG_REDIS_SENTINEL_PASSWORD}" $u) (not $r.sentinelPasswordKey) }}
{{- fail (printf "%s uses ${SG_REDIS_SENTINEL_PASSWORD}: set store.redis.existingSecret and store.redis.sentinelPasswordKey" $what) }}
{{- end }}
{{- end }}
{{- if and $r.sentinelPasswordKey (not (contains "${SG_REDIS_SENTINEL_PASSWORD}" (join " " $urls))) }}
{{- fail "store.redis.sentinelPasswordKey is set but no store.redis.sentinel.urls uses ${SG_REDIS_SENTINEL_PASSWORD}, e.g. redis://:${SG_REDIS_SENTINEL_PASSWORD}@redis-node-0.redis-headless:26379" }}
{{- end }}
{{- if and (gt $tlsUrls 0) (lt $tlsUrls (len $urls)) }}
{{- fail (printf "%s mixes redis:// and rediss://: use one scheme for all" $what) }}
{{- end }}
{{- if $tls.enabled }}
{{- if not $tls.existingSecret }}
{{- fail "store.redis.tls.enabled needs store.redis.tls.existingSecret (a Secret with ca.crt and/or tls.crt + tls.key, e.g. cert-manager's); a publicly trusted Redis certificate needs only rediss:// urls, not tls.enabled" }}
{{- end }}
{{- if ne (empty $tls.certKey) (empty $tls.keyKey) }}
{{- fail "store.redis.tls.certKey and store.redis.tls.keyKey go together (a client certificate and its key, for mTLS): set both or neither" }}
{{- end }}
{{- if and (not $tls.caKey) (not $tls.certKey) }}
{{- fail "store.redis.tls.enabled with neither caKey nor certKey/keyKey: nothing to mount" }}
{{- end }}
{{- if and $urls (lt $tlsUrls (len $urls)) }}
{{- fail (printf "store.redis.tls.enabled needs rediss:// urls (sessiongate refuses a tls section with redis:// ones): %s uses redis://" $what) }}
{{- end }}
{{- else if $tls.existingSecret }}
{{- fail "store.redis.tls.existingSecret is set but store.redis.tls.enabled is false: set enabled: true to use it" }}
{{- end }}
{{- end }}

{{/*
sessiongate.yaml: .Values.config plus the keys the chart owns (listeners,
shutdown grace, upstream url, token keys, store). Only SPEC section 2 keys.
*/}}
{{- define "sessiongate.config" -}}
{{- $v := .Values }}
{{- $cfg := deepCopy ($v.config | default dict) }}
{{- $server := get $cfg "server" | default dict }}
{{- $_ := set $server "listen" (printf "0.0.0.0:%d" (int $v.server.port)) }}
{{- $_ := set $server "admin_listen" (printf "0.0.0.0:%d" (int $v.admin.port)) }}
{{- $_ := set $server "shutdown_grace" $v.server.shutdownGrace }}
{{- if $v.server.tls.existingSecret }}
{{- $_ := set $server "tls" (dict "cert_file" (printf "%s/tls.crt" (include "sessiongate.tlsDir" .)) "key_file" (printf "%s/tls.key" (include "sessiongate.tlsDir" .))) }}
{{- end }}
{{- $_ := set $cfg "server" $server }}
{{- $upstream := get $cfg "upstream" | default dict }}
{{- $_ := set $upstream "url" $v.upstream.url }}
{{- $_ := set $cfg "upstream" $upstream }}
{{- $tokens := get $cfg "tokens" | default dict }}
{{- $keys := list }}
{{- range $i, $k := $v.tokens.keys }}
{{- if eq $k.alg "HS256" }}
{{- $keys = append $keys (dict "kid" $k.kid "alg" $k.alg "secret" (printf "${%s}" (include "sessiongate.hsEnvName" $k.secretKey))) }}
{{- else }}
{{- $keys = append $keys (dict "kid" $k.kid "alg" $k.alg "private_key_file" (printf "%s/%s" (include "sessiongate.keysDir" $) $k.secretKey)) }}
{{- end }}
{{- end }}
{{- $_ := set $tokens "keys" $keys }}
{{- $_ := set $cfg "tokens" $tokens }}
{{- if eq $v.store.backend "redis" }}
{{- $_ := set $cfg "store" (dict "backend" "redis" "redis" (include "sessiongate.redisConfig" . | fromYaml)) }}
{{- else }}
{{- $_ := set $cfg "store" (dict "backend" "sqlite" "sqlite" (dict "path" (printf "%s/sessiongate.db" (trimSuffix "/" $v.store.sqlite.dir)))) }}
{{- end }}
{{- toYaml $cfg }}
{{- end }}

{{/*
store.redis of sessiongate.yaml. The data nodes' password is rendered as
`password: ${SG_REDIS_PASSWORD}` (store.redis.passwordKey) unless every data
url already carries ${SG_REDIS_PASSWORD} (the older form, kept as it was so
an upgrade does not roll the pods).
*/}}
{{- define "sessiongate.redisConfig" -}}
{{- $r := .Values.store.redis }}
{{- $sent := $r.sentinel | default dict }}
{{- $out := dict "key_prefix" $r.keyPrefix }}
{{- $password := false }}
{{- if $sent.masterName }}
{{- $_ := set $out "sentinel" (dict "master_name" $sent.masterName "urls" $sent.urls) }}
{{- $password = true }}
{{- else if $r.urlKey }}
{{- $_ := set $out "url" "${SG_REDIS_URL}" }}
{{- $password = true }}
{{- else }}
{{- $url := $r.url | default (include "sessiongate.redisDefaultUrl" .) }}
{{- $_ := set $out "url" $url }}
{{- range $u := kindIs "slice" $url | ternary $url (list $url) }}
{{- if not (contains "${SG_REDIS_PASSWORD}" $u) }}{{ $password = true }}{{ end }}
{{- end }}
{{- end }}
{{- if and $r.passwordKey $password }}
{{- $_ := set $out "password" "${SG_REDIS_PASSWORD}" }}
{{- end }}
{{- if include "sessiongate.redisTls" . }}
{{- $tls := dict }}
{{- range $f := include "sessiongate.redisTlsFiles" . | fromJsonArray }}
{{- $_ := set $tls (index $f 2) (printf "%s/%s" (include "sessiongate.redisTlsDir" $) (index $f 1)) }}
{{- end }}
{{- $_ := set $out "tls" $tls }}
{{- end }}
{{- toYaml $out }}
{{- end }}

{{/* The sessiongate container, as a regular container or (sidecar.native) an init container. */}}
{{- define "sessiongate.container" -}}
{{- $v := .Values -}}
- name: sessiongate
  image: {{ include "sessiongate.image" . | quote }}
  imagePullPolicy: {{ $v.image.pullPolicy }}
  {{- if and (eq $v.mode "sidecar") $v.sidecar.native }}
  restartPolicy: Always
  {{- end }}
  args: ["run", "--config", {{ include "sessiongate.configFile" . | quote }}]
  ports:
    - name: http
      containerPort: {{ $v.server.port }}
      protocol: TCP
    - name: admin
      containerPort: {{ $v.admin.port }}
      protocol: TCP
  {{- $env := include "sessiongate.env" . }}
  {{- if trim $env }}
  env:
    {{- trim $env | nindent 4 }}
  {{- end }}
  {{- with $v.extraEnvFrom }}
  envFrom:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  startupProbe:
    httpGet:
      path: /healthz
      port: admin
    periodSeconds: {{ $v.probes.startup.periodSeconds }}
    timeoutSeconds: {{ $v.probes.startup.timeoutSeconds }}
    failureThreshold: {{ $v.probes.startup.failureThreshold }}
  livenessProbe:
    httpGet:
      path: /healthz
      port: admin
    initialDelaySeconds: {{ $v.probes.liveness.initialDelaySeconds }}
    periodSeconds: {{ $v.probes.liveness.periodSeconds }}
    timeoutSeconds: {{ $v.probes.liveness.timeoutSeconds }}
    failureThreshold: {{ $v.probes.liveness.failureThreshold }}
  readinessProbe:
    httpGet:
      path: /readyz
      port: admin
    initialDelaySeconds: {{ $v.probes.readiness.initialDelaySeconds }}
    periodSeconds: {{ $v.probes.readiness.periodSeconds }}
    timeoutSeconds: {{ $v.probes.readiness.timeoutSeconds }}
    failureThreshold: {{ $v.probes.readiness.failureThreshold }}
  {{- $sleep := include "sessiongate.preStopSleep" . | int }}
  {{- if gt $sleep 0 }}
  lifecycle:
    preStop:
      sleep:
        seconds: {{ $sleep }}
  {{- end }}
  securityContext:
    {{- toYaml $v.securityContext | nindent 4 }}
  resources:
    {{- toYaml $v.resources | nindent 4 }}
  volumeMounts:
    - name: config
      mountPath: {{ include "sessiongate.configDir" . }}
      readOnly: true
    - name: keys
      mountPath: {{ include "sessiongate.keysDir" . }}
      readOnly: true
    {{- if $v.server.tls.existingSecret }}
    - name: tls
      mountPath: {{ include "sessiongate.tlsDir" . }}
      readOnly: true
    {{- end }}
    {{- if include "sessiongate.redisTls" . }}
    - name: redis-tls
      mountPath: {{ include "sessiongate.redisTlsDir" . }}
      readOnly: true
    {{- end }}
    {{- if eq $v.store.backend "sqlite" }}
    - name: data
      mountPath: {{ $v.store.sqlite.dir }}
    {{- end }}
    - name: tmp
      mountPath: /tmp
    {{- with $v.extraVolumeMounts }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
{{- end }}

{{/* Environment of the sessiongate container: secrets referenced as ${VAR} in the config, then extraEnv. */}}
{{- define "sessiongate.env" -}}
{{- $v := .Values }}
{{- if eq $v.store.backend "redis" }}
{{- if $v.store.redis.passwordKey }}
- name: SG_REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $v.store.redis.existingSecret | quote }}
      key: {{ $v.store.redis.passwordKey | quote }}
{{- end }}
{{- if $v.store.redis.urlKey }}
- name: SG_REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ $v.store.redis.existingSecret | quote }}
      key: {{ $v.store.redis.urlKey | quote }}
{{- end }}
{{- if $v.store.redis.sentinelPasswordKey }}
- name: SG_REDIS_SENTINEL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $v.store.redis.existingSecret | quote }}
      key: {{ $v.store.redis.sentinelPasswordKey | quote }}
{{- end }}
{{- end }}
{{- range $k := $v.tokens.keys }}
{{- if eq $k.alg "HS256" }}
- name: {{ include "sessiongate.hsEnvName" $k.secretKey }}
  valueFrom:
    secretKeyRef:
      name: {{ include "sessiongate.keysSecretName" $ | quote }}
      key: {{ $k.secretKey | quote }}
{{- end }}
{{- end }}
{{- with $v.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
checksum/restart: sha256 over what sessiongate reads only at start (SPEC 1),
so the pods roll when, and only when, one of these changes:
- the rendered server.listen, server.admin_listen, server.threads, the store
  section and the revocation section (a reload keeps their start-up values);
- the content of Secret items that reach the config through env (${VAR} is
  expanded from the process environment, fixed at start): the Redis password
  / URL / sentinel password items of store.redis.existingSecret, and the
  HS256 items of an existing keys Secret (tokens.existingSecret);
- the content of the Redis TLS Secret's items (store.redis.tls: CA, client
  certificate and key), which the Redis client reads once at start although
  they arrive through a volume. A chart-created keys Secret
  keeps its items once generated (a new HS256 key adds an env entry, which
  rolls the pods anyway), so it is not looked up: looking it up would change
  the checksum between the first install (no Secret yet) and the next upgrade.
The Secrets are read with `lookup`, which finds nothing under `helm template`
and `helm lint` (no cluster: Argo CD and other GitOps renderers), so there a
change of their content alone does not roll the pods. Each item is hashed
with its Secret's uid so the annotation cannot be used to guess a weak
password offline by anyone who may read pods but not Secrets.
Everything else (keys, the server's TLS certificate, routes, limits, token and session
settings, ...) reaches the running pods through the ConfigMap and Secret
volumes (no subPath) and is reloaded, without a rollout.
*/}}
{{- define "sessiongate.restartChecksum" -}}
{{- $v := .Values }}
{{- $cfg := include "sessiongate.config" . | fromYaml }}
{{- $in := dict "server" (pick $cfg.server "listen" "admin_listen" "threads") "store" $cfg.store "revocation" (get $cfg "revocation") }}
{{- $items := dict }}
{{- $r := $v.store.redis }}
{{- if and (eq $v.store.backend "redis") $r.existingSecret }}
{{- $s := include "sessiongate.lookupSecret" (list . $r.existingSecret) | fromJson }}
{{- range $key := compact (list $r.passwordKey $r.urlKey $r.sentinelPasswordKey) }}
{{- $_ := set $items (printf "%s/%s" $r.existingSecret $key) (include "sessiongate.secretItemSum" (list $s $key)) }}
{{- end }}
{{- end }}
{{- if include "sessiongate.redisTls" . }}
{{- $name := $r.tls.existingSecret }}
{{- $s := include "sessiongate.lookupSecret" (list . $name) | fromJson }}
{{- range $f := include "sessiongate.redisTlsFiles" . | fromJsonArray }}
{{- $key := toString (index $f 0) }}
{{- $_ := set $items (printf "%s/%s" $name $key) (include "sessiongate.secretItemSum" (list $s $key)) }}
{{- end }}
{{- end }}
{{- with $v.tokens.existingSecret }}
{{- $name := . }}
{{- $s := include "sessiongate.lookupSecret" (list $ $name) | fromJson }}
{{- range $k := $v.tokens.keys }}
{{- if eq $k.alg "HS256" }}
{{- $_ := set $items (printf "%s/%s" $name (toString $k.secretKey)) (include "sessiongate.secretItemSum" (list $s (toString $k.secretKey))) }}
{{- end }}
{{- end }}
{{- end }}
{{- $_ := set $in "secrets" $items }}
{{- toJson $in | sha256sum }}
{{- end }}

{{/* sha256 of one item of a looked-up Secret, salted with its uid; "" when absent. Arg: (list SECRET KEY). */}}
{{- define "sessiongate.secretItemSum" -}}
{{- $s := index . 0 }}
{{- $data := $s.data | default dict }}
{{- $key := index . 1 }}
{{- if hasKey $data $key }}
{{- printf "%s/%s" (dig "metadata" "uid" "" $s) (get $data $key) | sha256sum }}
{{- end }}
{{- end }}

{{/* PromQL matchers selecting this release's series. */}}
{{- define "sessiongate.promSelector" -}}
{{- .Values.prometheusRule.selector | default (printf "namespace=%q, job=~%q" .Release.Namespace (printf ".*%s.*" (include "sessiongate.fullname" .))) }}
{{- end }}
